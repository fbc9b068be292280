//! Liveness: what `/healthz`, the pod's liveness probe, answers. Each long-lived task has a
//! heartbeat, the time it last turned over; `/healthz` fails (503, naming the task) when one
//! has not within [`BOUND`]:
//!
//! ```text
//!  prober ──Speaker::ping()────────> speaker task (peer table, commands)  ─┐ watch<Instant>
//!  prober ──bfd::shell::ping()─────> BFD thread (hubs, sessions)          ├──────────────> /healthz
//!  reconciler: after every event, and at least every RESYNC (10 s) ───────┘
//! ```
//!
//! The main runtime's own liveness is `/healthz` being answered at all: the kubelet counts a
//! probe that times out as a failure. The Kubernetes watchers have no heartbeat: a watch
//! legitimately sits idle for minutes, and kube-rs restarts a broken one itself.
//!
//! [`stale`] is the pure decision. [`stall_hook`] is a test hook, off unless the environment
//! asks for it: it makes one task stop turning over so that a test can see `/healthz` fail.

use std::future::Future;
use std::time::Duration;

use bgp::Speaker;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long a task may go without turning over before `/healthz` fails. Generous: the
/// reconciler turns over at least every 10 s, probes answer in microseconds; only a task
/// that is stuck misses it. With the rendered probe (every 10 s, 3 failures) the kubelet
/// restarts a stuck vipr within about a minute.
pub const BOUND: Duration = Duration::from_secs(30);

/// How often the probers ask.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The environment variable of [`stall_hook`].
const STALL_VAR: &str = "VIPR_TEST_STALL";

/// The sending side of a heartbeat, owned by the task (or by its prober).
#[derive(Debug)]
pub struct Beat(watch::Sender<Instant>);

impl Beat {
    /// The task has turned over now.
    pub fn now(&self) {
        self.0.send_replace(Instant::now());
    }
}

/// The reading side of a heartbeat, for `/healthz`.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// The task's name, as `/healthz` reports it.
    pub task: &'static str,
    last: watch::Receiver<Instant>,
}

impl Heartbeat {
    /// When the task last turned over.
    pub fn last(&self) -> Instant {
        *self.last.borrow()
    }
}

/// A heartbeat for `task`, starting now.
pub fn heartbeat(task: &'static str) -> (Beat, Heartbeat) {
    let (tx, rx) = watch::channel(Instant::now());
    (Beat(tx), Heartbeat { task, last: rx })
}

/// The tasks whose last turn-over is more than `bound` before `now`, with how long ago.
pub fn stale(
    now: Instant,
    last: impl IntoIterator<Item = (&'static str, Instant)>,
    bound: Duration,
) -> Vec<(&'static str, Duration)> {
    last.into_iter()
        .map(|(task, t)| (task, now.saturating_duration_since(t)))
        .filter(|(_, age)| *age > bound)
        .collect()
}

/// `/healthz`'s text for the stale tasks: `None` when every task is turning over.
pub fn verdict(beats: &[Heartbeat]) -> Option<String> {
    let stuck = stale(
        Instant::now(),
        beats.iter().map(|b| (b.task, b.last())),
        BOUND,
    );
    (!stuck.is_empty()).then(|| {
        stuck
            .iter()
            .map(|(task, age)| format!("{task} has not turned over for {}s\n", age.as_secs()))
            .collect()
    })
}

/// Asks `task` for a round trip every [`PROBE_EVERY`] and beats after each answer, until
/// cancelled. One that takes longer than [`BOUND`] is logged once (and again when it ends).
pub async fn probe<F, Fut>(task: &'static str, beat: Beat, mut ask: F, cancel: CancellationToken)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        let answer = ask();
        tokio::pin!(answer);
        let answered = tokio::select! {
            _ = cancel.cancelled() => return,
            a = &mut answer => Some(a),
            _ = tokio::time::sleep(BOUND) => None,
        };
        let ok = match answered {
            Some(ok) => ok,
            None => {
                warn!(task, bound = ?BOUND, "task not turning over: /healthz fails until it does");
                let ok = tokio::select! {
                    _ = cancel.cancelled() => return,
                    a = answer => a,
                };
                info!(task, "task turning over again");
                ok
            }
        };
        if ok {
            beat.now();
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

/// Starts the probers of the speaker task and of the BFD thread; their heartbeats.
pub fn probe_speaker_and_bfd(
    speaker: &Speaker,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> [Heartbeat; 2] {
    let (beat, speaker_hb) = heartbeat("speaker");
    let s = speaker.clone();
    tasks.spawn(probe(
        "speaker",
        beat,
        move || {
            let s = s.clone();
            async move { s.ping().await.is_ok() }
        },
        cancel.clone(),
    ));
    let (beat, bfd_hb) = heartbeat("BFD thread");
    tasks.spawn(probe(
        "BFD thread",
        beat,
        bgp::bfd::shell::ping,
        cancel.clone(),
    ));
    [speaker_hb, bfd_hb]
}

/// Test hook, off unless `VIPR_TEST_STALL` is `speaker` or `bfd`: then SIGUSR1 makes that
/// task stop turning over for good (the speaker's command loop waits forever; the BFD
/// thread blocks). Without the variable SIGUSR1 is not handled at all. Not a setting.
pub async fn stall_hook(speaker: Speaker, cancel: CancellationToken) {
    let Ok(what) = std::env::var(STALL_VAR) else {
        return;
    };
    if what != "speaker" && what != "bfd" {
        warn!(variable = STALL_VAR, value = %what, "unknown task to stall (speaker, bfd): ignored");
        return;
    }
    let Ok(mut usr1) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
    else {
        return;
    };
    warn!(variable = STALL_VAR, task = %what, "test hook armed: SIGUSR1 stalls this task");
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = usr1.recv() => {}
    }
    match what.as_str() {
        "speaker" => speaker.stall().await,
        _ => bgp::bfd::shell::stall(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn stale_names_only_the_tasks_past_the_bound() {
        let now = Instant::now() + Duration::from_secs(100);
        let s = stale(
            now,
            [
                ("speaker", now - Duration::from_secs(31)),
                ("BFD thread", now - Duration::from_secs(30)),
                ("reconciler", now),
                ("late clock", now + Duration::from_secs(5)),
            ],
            BOUND,
        );
        assert_eq!(s, vec![("speaker", Duration::from_secs(31))]);
    }

    /// A task that stops answering stops beating: `/healthz` turns 503 once the bound has
    /// passed since its last answer, and ok again once it answers.
    #[tokio::test(start_paused = true)]
    async fn a_task_that_stops_answering_goes_stale_then_recovers() {
        let (beat, hb) = heartbeat("speaker");
        let hbs = [hb];
        let stuck = Arc::new(AtomicBool::new(false));
        let s = stuck.clone();
        let cancel = CancellationToken::new();
        let prober = tokio::spawn(probe(
            "speaker",
            beat,
            move || {
                let s = s.clone();
                async move {
                    while s.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    true
                }
            },
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(verdict(&hbs), None);
        stuck.store(true, Ordering::SeqCst);
        let t0 = Instant::now();
        while verdict(&hbs).is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = t0.elapsed();
        assert!(
            took > BOUND - PROBE_EVERY && took <= BOUND + PROBE_EVERY,
            "{took:?}"
        );
        assert!(verdict(&hbs)
            .unwrap()
            .starts_with("speaker has not turned over for 3"));
        stuck.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(verdict(&hbs), None);
        cancel.cancel();
        prober.await.unwrap();
    }
}
