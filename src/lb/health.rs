//! Backend health checks: a TCP connect to each backend every
//! `backend_health_check_interval` (kube-vip's check). A backend is served only after a
//! connect succeeded; one failed connect takes it out, the next success puts it back.
//!
//! [`Book`] is the pure core (which backends are checked, what each one's state is);
//! [`Checkers`] is the shell: one small task per backend that connects, reports
//! `(backend, ok)` on a channel and sleeps. The load-balancer task owns both.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A backend's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not checked yet: not served.
    Unknown,
    /// The last connect succeeded.
    Up,
    /// The last connect failed.
    Down,
}

/// A change of a backend's state, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The backend.
    pub backend: SocketAddr,
    /// Before.
    pub from: State,
    /// After.
    pub to: State,
}

/// The pure core: the checked backends and their states.
#[derive(Debug, Clone, Default)]
pub struct Book {
    states: BTreeMap<SocketAddr, State>,
}

/// What [`Book::set_targets`] asks the shell to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetChange {
    /// Start checking these.
    pub start: Vec<SocketAddr>,
    /// Stop checking these (and forget them).
    pub stop: Vec<SocketAddr>,
}

impl Book {
    /// An empty book.
    pub fn new() -> Book {
        Book::default()
    }

    /// Makes `targets` the checked set: new ones start Unknown, dropped ones are forgotten.
    pub fn set_targets(&mut self, targets: &BTreeSet<SocketAddr>) -> TargetChange {
        let mut ch = TargetChange::default();
        self.states.retain(|b, _| {
            let keep = targets.contains(b);
            if !keep {
                ch.stop.push(*b);
            }
            keep
        });
        for t in targets {
            if !self.states.contains_key(t) {
                self.states.insert(*t, State::Unknown);
                ch.start.push(*t);
            }
        }
        ch
    }

    /// Records one check result; `Some` when the state changed. Results for backends no
    /// longer checked (a late report) are ignored.
    pub fn observe(&mut self, backend: SocketAddr, ok: bool) -> Option<Transition> {
        let st = self.states.get_mut(&backend)?;
        let to = if ok { State::Up } else { State::Down };
        if *st == to {
            return None;
        }
        let from = std::mem::replace(st, to);
        Some(Transition { backend, from, to })
    }

    /// The backends to serve.
    pub fn healthy(&self) -> BTreeSet<SocketAddr> {
        self.states
            .iter()
            .filter(|(_, s)| **s == State::Up)
            .map(|(b, _)| *b)
            .collect()
    }

    /// A backend's state, if it is checked.
    pub fn state(&self, backend: &SocketAddr) -> Option<State> {
        self.states.get(backend).copied()
    }
}

/// The per-connect timeout: the interval, at most 3 s.
pub fn connect_timeout(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(3))
}

/// One TCP connect (closed again at once).
pub async fn check(backend: SocketAddr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(backend)).await,
        Ok(Ok(_))
    )
}

/// The shell: one checking task per backend, each reporting on `tx`.
pub struct Checkers {
    tasks: BTreeMap<SocketAddr, JoinHandle<()>>,
    tx: mpsc::Sender<(SocketAddr, bool)>,
    interval: Duration,
}

impl Checkers {
    /// No tasks yet; results go to `tx`.
    pub fn new(tx: mpsc::Sender<(SocketAddr, bool)>, interval: Duration) -> Checkers {
        Checkers {
            tasks: BTreeMap::new(),
            tx,
            interval,
        }
    }

    /// Starts and stops tasks as the book says. The first check runs at once.
    pub fn apply(&mut self, ch: &TargetChange) {
        for b in &ch.stop {
            if let Some(t) = self.tasks.remove(b) {
                t.abort();
            }
        }
        for b in &ch.start {
            let (tx, interval, b) = (self.tx.clone(), self.interval, *b);
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let ok = check(b, connect_timeout(interval)).await;
                    if tx.send((b, ok)).await.is_err() {
                        return;
                    }
                }
            });
            if let Some(old) = self.tasks.insert(b, task) {
                old.abort();
            }
        }
    }

    /// The check interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Stops every task.
    pub fn stop_all(&mut self) {
        for (_, t) in std::mem::take(&mut self.tasks) {
            t.abort();
        }
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn served_only_after_a_success_out_on_failure_back_on_recovery() {
        let mut b = Book::new();
        let t: BTreeSet<_> = [a("10.0.0.1:6443"), a("10.0.0.2:6443")].into();
        let ch = b.set_targets(&t);
        assert_eq!(ch.start.len(), 2);
        assert!(b.healthy().is_empty(), "unknown backends are not served");
        assert_eq!(
            b.observe(a("10.0.0.1:6443"), true),
            Some(Transition {
                backend: a("10.0.0.1:6443"),
                from: State::Unknown,
                to: State::Up
            })
        );
        assert_eq!(b.observe(a("10.0.0.1:6443"), true), None, "no change");
        assert_eq!(
            b.observe(a("10.0.0.2:6443"), false).unwrap().to,
            State::Down
        );
        assert_eq!(b.healthy(), [a("10.0.0.1:6443")].into());
        assert_eq!(
            b.observe(a("10.0.0.1:6443"), false).unwrap().to,
            State::Down
        );
        assert!(b.healthy().is_empty());
        assert_eq!(
            b.observe(a("10.0.0.1:6443"), true).unwrap().from,
            State::Down
        );
        assert_eq!(b.healthy(), [a("10.0.0.1:6443")].into());
    }

    #[test]
    fn targets_come_and_go_and_late_results_are_ignored() {
        let mut b = Book::new();
        b.set_targets(&[a("10.0.0.1:1"), a("10.0.0.2:1")].into());
        b.observe(a("10.0.0.1:1"), true);
        let ch = b.set_targets(&[a("10.0.0.2:1"), a("10.0.0.3:1")].into());
        assert_eq!(ch.stop, vec![a("10.0.0.1:1")]);
        assert_eq!(ch.start, vec![a("10.0.0.3:1")]);
        assert_eq!(b.observe(a("10.0.0.1:1"), true), None, "forgotten");
        assert!(b.healthy().is_empty());
        // Re-adding starts from Unknown again.
        b.set_targets(&[a("10.0.0.1:1")].into());
        assert_eq!(b.state(&a("10.0.0.1:1")), Some(State::Unknown));
    }

    #[test]
    fn timeout_is_the_interval_capped_at_three_seconds() {
        assert_eq!(
            connect_timeout(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            connect_timeout(Duration::from_secs(5)),
            Duration::from_secs(3)
        );
    }

    #[tokio::test]
    async fn checkers_report_up_and_down() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = l.local_addr().unwrap();
        let down = {
            let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l2.local_addr().unwrap()
        };
        let (tx, mut rx) = mpsc::channel(8);
        let mut c = Checkers::new(tx, Duration::from_secs(1));
        c.apply(&TargetChange {
            start: vec![up, down],
            stop: vec![],
        });
        let mut got = BTreeMap::new();
        while got.len() < 2 {
            let (b, ok) = rx.recv().await.unwrap();
            got.insert(b, ok);
        }
        assert!(got[&up]);
        assert!(!got[&down]);
        c.stop_all();
    }
}
