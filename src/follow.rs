//! Running a task for the current value of a configuration section: [`follow`] starts it
//! with the part of the section it depends on, and restarts it (the old run cancelled and
//! awaited first) whenever that part changes. The tasks that own a resource bound to a
//! setting use it: the health checker, the peer provider, the Service watcher. (The HTTP
//! listener has its own loop: it binds the new address before letting go of the old.)

use std::future::Future;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Runs `start(part, token)` for `part = project(section)`, restarting it when the part
/// changes, until `cancel`; then cancels the run and waits for it.
pub async fn follow<S, P, Fut>(
    mut section: watch::Receiver<S>,
    project: impl Fn(&S) -> P,
    mut start: impl FnMut(P, CancellationToken) -> Fut,
    cancel: CancellationToken,
) where
    P: PartialEq + Clone,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let part = project(&section.borrow_and_update());
        let child = cancel.child_token();
        let task = tokio::spawn(start(part.clone(), child.clone()));
        let stop = loop {
            tokio::select! {
                _ = cancel.cancelled() => break true,
                r = section.changed() => {
                    if r.is_err() {
                        cancel.cancelled().await;
                        break true;
                    }
                    if project(&section.borrow_and_update()) != part {
                        break false;
                    }
                }
            }
        };
        child.cancel();
        let _ = task.await;
        if stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn restarts_only_when_the_part_changes() {
        let (tx, rx) = watch::channel((1, "a"));
        let runs = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let r = runs.clone();
        let f = tokio::spawn(follow(
            rx,
            |s: &(i32, &str)| s.0,
            move |p, token| {
                let r = r.clone();
                async move {
                    r.lock().unwrap().push(format!("start {p}"));
                    token.cancelled().await;
                    r.lock().unwrap().push(format!("stop {p}"));
                }
            },
            cancel.clone(),
        ));
        let settle = || tokio::time::sleep(std::time::Duration::from_millis(20));
        settle().await;
        tx.send_replace((1, "b")); // another part of the section: no restart
        settle().await;
        tx.send_replace((2, "b"));
        settle().await;
        cancel.cancel();
        f.await.unwrap();
        assert_eq!(
            *runs.lock().unwrap(),
            ["start 1", "stop 1", "start 2", "stop 2"]
        );
    }
}
