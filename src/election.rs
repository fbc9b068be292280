//! Lease-based leader election, pure core (coordination.k8s.io/v1 Lease with client-go's
//! leaderelection semantics). No tokio, no API calls: the shell feeds it the Lease as read
//! from the API server, write results and clock ticks; it answers with what to write and when
//! leadership starts or ends.
//!
//! Split-brain safety: the leader counts its renew deadline from the moment it *sent* its
//! last successful renewal, and steps down when `renew_deadline` has passed without another
//! one; a follower only takes over `lease_duration` after it *observed* the last change of
//! the Lease. Since `renew_deadline < lease_duration`, the old leader has dropped the VIP
//! before anyone else may acquire it, even when the API server is unreachable.

use std::time::{Duration, Instant, SystemTime};

/// The fields of a Lease that election uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseRecord {
    /// `spec.holderIdentity` (empty or absent: free).
    pub holder: Option<String>,
    /// `spec.leaseDurationSeconds`.
    pub lease_duration_seconds: i32,
    /// `spec.acquireTime`.
    pub acquire_time: Option<SystemTime>,
    /// `spec.renewTime`.
    pub renew_time: Option<SystemTime>,
    /// `spec.leaseTransitions`.
    pub transitions: i32,
}

pub use crate::config::Timing;

/// What happens to the elector.
#[derive(Debug, Clone)]
pub enum Input {
    /// Time passed (the shell calls this when the scheduled time comes).
    Tick,
    /// The Lease as currently stored (`None`: it does not exist), with its resourceVersion,
    /// as read after a [`Output::Read`]: a leader renews, a follower acquires if it may.
    Observed(Option<(LeaseRecord, String)>),
    /// The Lease as a watch event showed it. Only observed: a leader renews on its own
    /// schedule (renewing on every event, its own writes included, would write the Lease
    /// as fast as the API server answers) and steps down at once if someone else holds
    /// it; a follower acquires at once when it is released or expired.
    Watched(Option<(LeaseRecord, String)>),
    /// Reading the Lease failed (API server unreachable, …).
    ReadFailed,
    /// Our create or update succeeded; the new resourceVersion.
    Written(String),
    /// Our write lost a race (409 Conflict) or failed.
    WriteFailed,
    /// Shutting down: give the Lease up so another node takes over at once.
    Release,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Read the Lease and report [`Input::Observed`] or [`Input::ReadFailed`].
    Read,
    /// Create the Lease with this record.
    Create(LeaseRecord),
    /// Replace the Lease's spec, conditional on this resourceVersion.
    Update(LeaseRecord, String),
    /// Call [`Input::Tick`] after this long (replaces any earlier schedule).
    TickAfter(Duration),
    /// This node now leads: put the VIP up.
    BecameLeader,
    /// This node no longer leads: take the VIP down now.
    LostLeadership,
}

/// The election state of one Lease for one identity.
#[derive(Debug)]
pub struct Elector {
    identity: String,
    timing: Timing,
    /// The last record seen, its resourceVersion, and when it was first seen in that form.
    observed: Option<(LeaseRecord, String, Instant)>,
    leader: bool,
    /// When the last successful renewal was sent.
    renewed_at: Option<Instant>,
    /// A write in flight: when it was sent and what it writes.
    writing: Option<(Instant, LeaseRecord)>,
    released: bool,
}

impl Elector {
    /// A follower that has seen nothing yet.
    pub fn new(identity: impl Into<String>, timing: Timing) -> Elector {
        Elector {
            identity: identity.into(),
            timing,
            observed: None,
            leader: false,
            renewed_at: None,
            writing: None,
            released: false,
        }
    }

    /// Whether this node leads.
    #[cfg(test)]
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// The current holder as last observed.
    pub fn holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .and_then(|(r, _, _)| r.holder.as_deref())
            .filter(|h| !h.is_empty())
    }

    /// Handles one input at `now` (monotonic) / `wall` (for the Lease's timestamps).
    pub fn handle(&mut self, input: Input, now: Instant, wall: SystemTime) -> Vec<Output> {
        let mut out = Vec::new();
        if self.released {
            return out;
        }
        let watched = matches!(input, Input::Watched(_));
        self.step(input, now, wall, &mut out);
        // One schedule: the earliest asked for, and never later than a leader's renew
        // deadline, so that stepping down is never late.
        let mut next: Option<Duration> = None;
        out.retain(|o| match o {
            Output::TickAfter(d) => {
                next = Some(next.map_or(*d, |n| n.min(*d)));
                false
            }
            _ => true,
        });
        // A watch event that asked for nothing keeps the schedule, which an earlier call
        // already capped at the (unchanged) renew deadline.
        if self.leader && !(watched && next.is_none()) {
            let left = self
                .timing
                .renew_deadline
                .saturating_sub(now.duration_since(self.renewed_at.unwrap_or(now)));
            next = Some(next.map_or(left, |n| n.min(left)));
        }
        if let Some(d) = next {
            out.push(Output::TickAfter(d));
        }
        out
    }

    fn step(&mut self, input: Input, now: Instant, wall: SystemTime, out: &mut Vec<Output>) {
        match input {
            Input::Tick => {
                self.check_deadline(now, out);
                if self.writing.is_none() {
                    out.push(Output::Read);
                }
            }
            Input::Observed(lease) => {
                self.observe(lease, now);
                self.check_deadline(now, out);
                if self.writing.is_none() {
                    self.try_acquire_or_renew(now, wall, out);
                }
            }
            Input::Watched(lease) => {
                if self.is_stale(&lease) {
                    return;
                }
                self.observe(lease, now);
                self.check_deadline(now, out);
                let ours = self.holder() == Some(self.identity.as_str());
                if self.leader && !ours {
                    // Someone else wrote the Lease: we lost it (e.g. after a partition).
                    self.leader = false;
                    out.push(Output::LostLeadership);
                    out.push(Output::TickAfter(self.timing.retry_period));
                } else if !self.leader && self.writing.is_none() {
                    self.try_acquire_or_renew(now, wall, out);
                }
            }
            Input::ReadFailed => {
                self.check_deadline(now, out);
                out.push(Output::TickAfter(self.timing.retry_period));
            }
            Input::Written(rv) => {
                let Some((sent, rec)) = self.writing.take() else {
                    return;
                };
                self.observed = Some((rec, rv, now));
                self.renewed_at = Some(sent);
                if !self.leader && now.duration_since(sent) < self.timing.renew_deadline {
                    self.leader = true;
                    out.push(Output::BecameLeader);
                }
                out.push(Output::TickAfter(self.timing.retry_period));
            }
            Input::WriteFailed => {
                self.writing = None;
                self.check_deadline(now, out);
                out.push(Output::TickAfter(self.timing.retry_period));
            }
            Input::Release => {
                self.released = true;
                if self.leader {
                    self.leader = false;
                    out.push(Output::LostLeadership);
                    if let Some((rec, rv, _)) = &self.observed {
                        // client-go: empty holder and a 1 s duration, so a follower acquires at once.
                        let mut r = rec.clone();
                        r.holder = Some(String::new());
                        r.lease_duration_seconds = 1;
                        r.renew_time = Some(wall);
                        out.push(Output::Update(r, rv.clone()));
                    }
                }
            }
        }
    }

    /// A watch event older than what we already know (resourceVersions compared as the
    /// numbers etcd-backed API servers use; opaque ones are never called stale): a watch
    /// that lags behind our own write must not make us give up the Lease we just took.
    fn is_stale(&self, lease: &Option<(LeaseRecord, String)>) -> bool {
        let (Some((_, new)), Some((_, cur, _))) = (lease, &self.observed) else {
            return false;
        };
        matches!((new.parse::<u64>(), cur.parse::<u64>()), (Ok(n), Ok(c)) if n < c)
    }

    /// Records a fresh view of the Lease; the observation time moves only when it changed.
    fn observe(&mut self, lease: Option<(LeaseRecord, String)>, now: Instant) {
        self.observed = lease.map(|(rec, rv)| {
            let since = match &self.observed {
                Some((old, _, t)) if *old == rec => *t,
                _ => now,
            };
            (rec, rv, since)
        });
    }

    /// A leader whose last successful renewal is older than the renew deadline steps down.
    fn check_deadline(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.leader
            && now.duration_since(self.renewed_at.unwrap_or(now)) >= self.timing.renew_deadline
        {
            self.leader = false;
            out.push(Output::LostLeadership);
        }
    }

    /// The record to write now: ours, renewed at `wall`.
    fn next_record(&self, wall: SystemTime) -> LeaseRecord {
        let base = self
            .observed
            .as_ref()
            .map(|(r, _, _)| r.clone())
            .unwrap_or_default();
        let ours = base.holder.as_deref() == Some(self.identity.as_str());
        let had_holder =
            base.acquire_time.is_some() || !base.holder.as_deref().unwrap_or("").is_empty();
        LeaseRecord {
            holder: Some(self.identity.clone()),
            lease_duration_seconds: self.timing.lease_duration.as_secs_f64().ceil() as i32,
            acquire_time: if ours {
                base.acquire_time.or(Some(wall))
            } else {
                Some(wall)
            },
            renew_time: Some(wall),
            transitions: if ours || !had_holder {
                base.transitions
            } else {
                base.transitions + 1
            },
        }
    }

    /// client-go's tryAcquireOrRenew: create when absent, renew when ours, take over when the
    /// holder's Lease expired (by our own observation clock), otherwise wait for expiry.
    fn try_acquire_or_renew(&mut self, now: Instant, wall: SystemTime, out: &mut Vec<Output>) {
        let rec = self.next_record(wall);
        let write = match &self.observed {
            None => Output::Create(rec.clone()),
            Some((cur, rv, since)) => {
                let holder = cur.holder.as_deref().unwrap_or("");
                let duration = Duration::from_secs(cur.lease_duration_seconds.max(0) as u64);
                let expires = *since + duration;
                if holder == self.identity || holder.is_empty() || now >= expires {
                    Output::Update(rec.clone(), rv.clone())
                } else {
                    // Someone else leads: look again at expiry or the next retry, whichever first.
                    let wait = expires.duration_since(now).min(self.timing.retry_period);
                    out.push(Output::TickAfter(wait.max(Duration::from_millis(10))));
                    return;
                }
            }
        };
        self.writing = Some((now, rec));
        out.push(write);
    }
}

#[cfg(test)]
mod tests;
