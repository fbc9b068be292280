//! The writer's queue, pure (the time is passed in): which writes are wanted, when each
//! is due (now, or after this node's turn), which run, which are done, which failed and
//! when they are retried. Fed by the difference between two snapshots of the wanted writes,
//! so its work follows what changed; started in priority order (claims first, Events last).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use imbl::ordmap::DiffItem;
use tokio::time::Instant;

use super::{kind_of, Job, Jobs, WriteCounts, CONCURRENCY, SPREAD};
use crate::ipam::plan::{Event, Write};
use crate::kube::members::{hash, Members};

/// Who writes a job: this node alone (a Warning about its own addresses), or each node
/// in turn, keyed by the Service.
pub fn turn_key(job: &Job) -> Option<String> {
    match job {
        Job::Plan(Write::Event(e)) if e.key.contains("(node ") => None,
        Job::Status(w) => Some(format!("{}/{}", w.namespace, w.name)),
        Job::Plan(
            Write::Claim { holder, .. }
            | Write::ReleaseIfGone { holder, .. }
            | Write::Annotate { holder, .. }
            | Write::Event(Event { holder, .. }),
        ) => Some(holder.uid.to_string()),
        Job::Plan(Write::Holders { ip, .. }) => Some(ip.to_string()),
    }
}

/// The order writes start in: claims first (routes wait for them), Events last.
fn priority(job: &Job) -> usize {
    match kind_of(job) {
        1..=3 => 0,
        0 => 1,
        4 => 2,
        _ => 3,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting: not before `at` (`backoff` after a failure).
    Due {
        at: Instant,
        id: u64,
        backoff: Option<Duration>,
    },
    Running {
        backoff: Option<Duration>,
    },
    Done,
    /// An Event left to the node whose turn it is.
    Deferred,
}

#[derive(Debug)]
struct Entry {
    state: State,
    /// How many keys want it (a claim's release may come from its holder and itself).
    refs: u32,
}

/// Every wanted write and where it stands.
#[derive(Debug, Default)]
pub struct Queue {
    /// One copy of each job, shared by the maps below (a sync of 10 000 Services wants
    /// 10 000 status writes at once).
    jobs: HashMap<Arc<Job>, Entry>,
    /// Per priority: `(due, id)`, and the job of each id.
    due: [BTreeSet<(Instant, u64)>; 4],
    ids: HashMap<u64, Arc<Job>>,
    next_id: u64,
    running: usize,
    deferred: HashSet<Arc<Job>>,
}

/// What deciding a job's turn needs.
pub struct Turns<'a> {
    /// This node.
    pub node: &'a str,
    /// The live members.
    pub members: &'a Members,
    /// Now, on the wall clock (member Leases expire by it).
    pub wall: SystemTime,
}

impl Queue {
    /// Takes the difference between the last snapshot of wanted writes and the new one.
    pub fn update(
        &mut self,
        old: &Jobs,
        new: &Jobs,
        t: &Turns,
        now: Instant,
        counts: &WriteCounts,
    ) {
        for d in old.diff(new) {
            let (was, is): (&[Job], &[Job]) = match &d {
                DiffItem::Add(_, v) => (&[], v),
                DiffItem::Remove(_, v) => (v, &[]),
                DiffItem::Update {
                    old: (_, a),
                    new: (_, b),
                } => (a, b),
            };
            for j in was.iter().filter(|j| !is.contains(j)) {
                self.unwant(j, counts);
            }
            for j in is.iter().filter(|j| !was.contains(j)) {
                self.want(j, t, now);
            }
        }
        self.compact();
    }

    /// Gives back the tables' room once a burst (a sync's 10 000 status writes) is mostly
    /// done: a HashMap otherwise keeps its largest size for good (issue 14).
    fn compact(&mut self) {
        // Over 64 slots and under a quarter full.
        let roomy = |len: usize, cap: usize| cap > 64 && len * 4 < cap;
        if roomy(self.jobs.len(), self.jobs.capacity()) {
            self.jobs.shrink_to_fit();
        }
        if roomy(self.ids.len(), self.ids.capacity()) {
            self.ids.shrink_to_fit();
        }
        if roomy(self.deferred.len(), self.deferred.capacity()) {
            self.deferred.shrink_to_fit();
        }
    }

    fn want(&mut self, job: &Job, t: &Turns, now: Instant) {
        if let Some(e) = self.jobs.get_mut(job) {
            e.refs += 1;
            return;
        }
        let job = Arc::new(job.clone());
        self.jobs.insert(
            job.clone(),
            Entry {
                state: State::Done,
                refs: 1,
            },
        );
        self.schedule(&job, t, now, None);
    }

    /// Puts a job in line for its turn (or defers an Event that is not this node's).
    fn schedule(&mut self, job: &Arc<Job>, t: &Turns, now: Instant, backoff: Option<Duration>) {
        let wait = match (turn_key(job), backoff) {
            (_, Some(b)) => b,
            (None, None) => Duration::ZERO,
            (Some(_), None) if t.members.is_empty() => spread(t.node, job),
            (Some(key), None) => {
                let wait = t.members.delay(t.node, &key, t.wall);
                if !wait.is_zero() && matches!(**job, Job::Plan(Write::Event(_))) {
                    // Not observable: left to the first node while it lives.
                    self.set(job, State::Deferred);
                    self.deferred.insert(job.clone());
                    return;
                }
                wait
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let at = now + wait;
        self.due[priority(job)].insert((at, id));
        self.ids.insert(id, job.clone());
        self.set(job, State::Due { at, id, backoff });
    }

    fn set(&mut self, job: &Job, s: State) {
        if let Some(e) = self.jobs.get_mut(job) {
            e.state = s;
        }
    }

    fn unwant(&mut self, job: &Job, counts: &WriteCounts) {
        let Some(e) = self.jobs.get_mut(job) else {
            return;
        };
        e.refs -= 1;
        if e.refs > 0 {
            return;
        }
        let state = e.state;
        match state {
            State::Due { at, id, .. } => {
                self.due[priority(job)].remove(&(at, id));
                self.ids.remove(&id);
                counts.add(kind_of(job), 3);
                self.jobs.remove(job);
            }
            // Its result still comes back: forgotten then.
            State::Running { .. } => {}
            State::Done => {
                self.jobs.remove(job);
            }
            State::Deferred => {
                self.deferred.remove(job);
                self.jobs.remove(job);
            }
        }
    }

    /// The writes to start now, highest priority first, while there is room.
    pub fn start(&mut self, now: Instant) -> Vec<Job> {
        let mut out = Vec::new();
        for p in 0..self.due.len() {
            while self.running < CONCURRENCY {
                let Some(&(at, id)) = self.due[p].first() else {
                    break;
                };
                if at > now {
                    break;
                }
                self.due[p].pop_first();
                let Some(job) = self.ids.remove(&id) else {
                    continue;
                };
                let backoff = match self.jobs.get(&job).map(|e| e.state) {
                    Some(State::Due { backoff, .. }) => backoff,
                    _ => None,
                };
                self.set(&job, State::Running { backoff });
                self.running += 1;
                out.push(Job::clone(&job));
            }
        }
        out
    }

    /// A write came back: done, or failed (retried with backoff while still wanted).
    pub fn finished(&mut self, job: &Job, ok: bool, t: &Turns, now: Instant) {
        self.running = self.running.saturating_sub(1);
        let Some(e) = self.jobs.get(job) else { return };
        let backoff = match e.state {
            State::Running { backoff } => backoff,
            _ => None,
        };
        if e.refs == 0 {
            self.jobs.remove(job);
            self.compact();
        } else if ok {
            self.set(job, State::Done);
        } else {
            let b = backoff.map_or(Duration::from_secs(1), |b| {
                (b * 2).min(Duration::from_secs(30))
            });
            if let Some((shared, _)) = self.jobs.get_key_value(job) {
                let shared = shared.clone();
                self.schedule(&shared, t, now, Some(b));
            }
        }
    }

    /// The members changed (or one expired): the deferred Events are looked at again.
    pub fn members_changed(&mut self, t: &Turns, now: Instant) {
        for job in std::mem::take(&mut self.deferred) {
            self.schedule(&job, t, now, None);
        }
    }

    /// When the next write is due (`None`: none waits, or no room until one finishes).
    pub fn next_due(&self) -> Option<Instant> {
        if self.running >= CONCURRENCY {
            return None;
        }
        self.due
            .iter()
            .filter_map(|d| d.first().map(|(at, _)| *at))
            .min()
    }
}

/// The spread delay of a write on this node when no member Lease is known.
fn spread(node: &str, job: &Job) -> Duration {
    let key = format!("{job:?}");
    SPREAD.mul_f64((hash(&[node, &key]) % 1000) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ipam::Holder;
    use crate::kube::members::BACKUP;
    use crate::kube::writer::StatusWrite;

    fn holder(n: &str) -> Holder {
        Holder {
            namespace: "default".into(),
            name: n.into(),
            uid: format!("uid-{n}").into(),
        }
    }

    fn claim(n: &str) -> Job {
        Job::Plan(Write::Claim {
            ip: "198.51.100.1".parse().unwrap(),
            pool: "p".into(),
            holder: holder(n),
        })
    }

    fn status(n: &str) -> Job {
        Job::Status(StatusWrite {
            namespace: "default".into(),
            name: n.into(),
            resource_version: "1".into(),
            patch: "{}".into(),
        })
    }

    fn event(n: &str) -> Job {
        Job::Plan(Write::Event(Event {
            holder: holder(n),
            warning: false,
            reason: "IPAllocated",
            message: "m".into(),
            key: "k".into(),
        }))
    }

    fn jobs(v: &[(&str, Vec<Job>)]) -> Jobs {
        v.iter()
            .map(|(k, j)| (Arc::from(*k), Arc::new(j.clone())))
            .collect()
    }

    #[test]
    fn a_burst_done_gives_its_room_back() {
        let now = Instant::now();
        let alone = Members::default();
        let counts = WriteCounts::default();
        let t = Turns {
            node: "n1",
            members: &alone,
            wall: SystemTime::now(),
        };
        let mut q = Queue::default();
        let names: Vec<String> = (0..4000).map(|i| format!("s{i}")).collect();
        let all: Vec<(&str, Vec<Job>)> = names
            .iter()
            .map(|n| (n.as_str(), vec![status(n)]))
            .collect();
        let burst = jobs(&all);
        q.update(&Jobs::default(), &burst, &t, now, &counts);
        let big = q.jobs.capacity();
        assert!(big >= 4000 && q.ids.capacity() >= 4000);
        // All written: the Services' status changed, nothing is wanted any more.
        q.update(&burst, &jobs(&all[..10]), &t, now, &counts);
        assert_eq!(q.jobs.len(), 10);
        assert!(
            q.jobs.capacity() <= 64 && q.ids.capacity() <= 64,
            "{}",
            q.jobs.capacity()
        );
        // And it grows again as needed.
        q.update(&jobs(&all[..10]), &burst, &t, now, &counts);
        assert_eq!(q.jobs.len(), 4000);
    }

    #[test]
    fn first_turn_writes_now_claims_first_and_others_wait_or_defer() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let alone = Members::default();
        let counts = WriteCounts::default();
        let t = Turns {
            node: "n1",
            members: &alone,
            wall,
        };
        let mut q = Queue::default();
        let snap = jobs(&[("default/a", vec![event("a"), status("a"), claim("a")])]);
        q.update(&Jobs::default(), &snap, &t, now, &counts);
        // Alone: spread within SPREAD; claims before status before Events.
        let later = now + SPREAD;
        assert_eq!(q.start(later), vec![claim("a"), status("a"), event("a")]);
        q.finished(&claim("a"), true, &t, later);
        q.finished(&status("a"), false, &t, later);
        // The failed one comes back after its backoff, not before.
        assert!(q.start(later + Duration::from_millis(500)).is_empty());
        assert_eq!(q.start(later + Duration::from_secs(1)), vec![status("a")]);

        // With members: one node goes first per Service; a later turn waits, an Event is
        // deferred until the members change.
        let (members, key) = n1_second(wall);
        let t = Turns {
            node: "n1",
            members: &members,
            wall,
        };
        let mut q = Queue::default();
        let snap = jobs(&[(key.as_str(), vec![claim(&key), event(&key)])]);
        q.update(&Jobs::default(), &snap, &t, now, &counts);
        assert!(q.start(now).is_empty(), "n2 goes first");
        assert_eq!(q.start(now + BACKUP), vec![claim(&key)]);
        // n2 left: the deferred Event is this node's now.
        let gone = Members::from_entries(vec![("n1".into(), wall + Duration::from_secs(30))]);
        q.members_changed(
            &Turns {
                node: "n1",
                members: &gone,
                wall,
            },
            now,
        );
        assert_eq!(q.start(now), vec![event(&key)]);
    }

    /// Members n1 and n2, and a Service whose first turn is n2's (n1 comes second).
    fn n1_second(wall: SystemTime) -> (Members, String) {
        let members = Members::from_entries(vec![
            ("n1".into(), wall + Duration::from_secs(30)),
            ("n2".into(), wall + Duration::from_secs(30)),
        ]);
        let key = (0..100)
            .map(|i| format!("s{i}"))
            .find(|n| members.turn("n1", &format!("uid-{n}"), wall) == 1)
            .unwrap();
        (members, key)
    }

    #[test]
    fn a_write_no_longer_wanted_before_its_turn_is_dropped_and_counted() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let (members, key) = n1_second(wall);
        let t = Turns {
            node: "n1",
            members: &members,
            wall,
        };
        let counts = WriteCounts::default();
        let mut q = Queue::default();
        let a = jobs(&[(key.as_str(), vec![claim(&key)])]);
        q.update(&Jobs::default(), &a, &t, now, &counts);
        // The first node's claim is seen: the snapshot stops asking.
        q.update(&a, &Jobs::default(), &t, now, &counts);
        assert!(q.start(now + BACKUP).is_empty());
        assert!(counts.snapshot().contains(&("claim", "dropped", 1)));
        assert_eq!(q.next_due(), None);
    }
}
