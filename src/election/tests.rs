//! Synchronous tests of the election core: two electors share one simulated Lease store
//! (resourceVersion-checked like the API server) and a simulated clock.

use super::*;

const T: Timing = Timing {
    lease_duration: Duration::from_secs(15),
    renew_deadline: Duration::from_secs(10),
    retry_period: Duration::from_secs(2),
};

/// The API server's view of one Lease.
#[derive(Default)]
struct Store {
    lease: Option<(LeaseRecord, u64)>,
    reachable: bool,
}

impl Store {
    fn new() -> Store {
        Store {
            lease: None,
            reachable: true,
        }
    }

    /// Executes an elector's outputs against the store; returns follow-up inputs.
    fn exec(&mut self, outs: &[Output]) -> Vec<Input> {
        let mut next = Vec::new();
        for o in outs {
            match o {
                Output::Read if !self.reachable => next.push(Input::ReadFailed),
                Output::Read => next.push(Input::Observed(
                    self.lease.clone().map(|(r, v)| (r, v.to_string())),
                )),
                Output::Create(_) | Output::Update(..) if !self.reachable => {
                    next.push(Input::WriteFailed)
                }
                Output::Create(r) => match self.lease {
                    Some(_) => next.push(Input::WriteFailed),
                    None => {
                        self.lease = Some((r.clone(), 1));
                        next.push(Input::Written("1".into()));
                    }
                },
                Output::Update(r, rv) => match &self.lease {
                    Some((_, v)) if v.to_string() == *rv => {
                        let nv = v + 1;
                        self.lease = Some((r.clone(), nv));
                        next.push(Input::Written(nv.to_string()));
                    }
                    _ => next.push(Input::WriteFailed),
                },
                _ => {}
            }
        }
        next
    }
}

/// Feeds an input and every follow-up until quiet; returns all outputs.
fn run(e: &mut Elector, s: &mut Store, input: Input, now: Instant) -> Vec<Output> {
    let mut all = Vec::new();
    let mut queue = vec![input];
    while let Some(i) = queue.pop() {
        let outs = e.handle(i, now, SystemTime::now());
        queue.extend(s.exec(&outs));
        all.extend(outs);
    }
    all
}

fn next_tick(outs: &[Output]) -> Option<Duration> {
    outs.iter().rev().find_map(|o| match o {
        Output::TickAfter(d) => Some(*d),
        _ => None,
    })
}

#[test]
fn first_node_creates_the_lease_and_leads() {
    let mut s = Store::new();
    let mut a = Elector::new("a", T);
    let t0 = Instant::now();
    let outs = run(&mut a, &mut s, Input::Tick, t0);
    assert!(outs.contains(&Output::BecameLeader));
    assert_eq!(s.lease.as_ref().unwrap().0.holder.as_deref(), Some("a"));
    assert_eq!(s.lease.as_ref().unwrap().0.lease_duration_seconds, 15);
    assert_eq!(next_tick(&outs), Some(Duration::from_secs(2)));
}

#[test]
fn follower_waits_for_expiry_by_its_own_observation_clock() {
    let mut s = Store::new();
    let (mut a, mut b) = (Elector::new("a", T), Elector::new("b", T));
    let t0 = Instant::now();
    run(&mut a, &mut s, Input::Tick, t0);
    // b sees a's Lease at t0+1 and must not take it before t0+1+15.
    let outs = run(&mut b, &mut s, Input::Tick, t0 + Duration::from_secs(1));
    assert!(!outs.contains(&Output::BecameLeader));
    assert_eq!(b.holder(), Some("a"));
    // a dies (no more renewals). b keeps looking.
    for secs in [3, 5, 9, 13, 15] {
        let outs = run(&mut b, &mut s, Input::Tick, t0 + Duration::from_secs(secs));
        assert!(
            !outs.contains(&Output::BecameLeader),
            "took over at +{secs}s"
        );
    }
    let outs = run(&mut b, &mut s, Input::Tick, t0 + Duration::from_secs(16));
    assert!(outs.contains(&Output::BecameLeader));
    assert_eq!(s.lease.as_ref().unwrap().0.transitions, 1);
}

#[test]
fn renewals_keep_the_leader_and_followers_off() {
    let mut s = Store::new();
    let (mut a, mut b) = (Elector::new("a", T), Elector::new("b", T));
    let t0 = Instant::now();
    run(&mut a, &mut s, Input::Tick, t0);
    for i in 1..30u64 {
        let now = t0 + Duration::from_secs(2 * i);
        let outs = run(&mut a, &mut s, Input::Tick, now);
        assert!(!outs.contains(&Output::LostLeadership));
        let outs = run(
            &mut b,
            &mut s,
            Input::Tick,
            now + Duration::from_millis(500),
        );
        assert!(!outs.contains(&Output::BecameLeader));
    }
    assert!(a.is_leader() && !b.is_leader());
}

#[test]
fn unreachable_api_server_makes_the_leader_step_down_before_anyone_can_take_over() {
    let mut s = Store::new();
    let (mut a, mut b) = (Elector::new("a", T), Elector::new("b", T));
    let t0 = Instant::now();
    run(&mut a, &mut s, Input::Tick, t0);
    run(&mut b, &mut s, Input::Tick, t0); // b observes a's renewal at t0
                                          // The leader loses the API server; b still reaches it (a partition).
    s.reachable = false;
    let mut stepped_down_at = None;
    let mut now = t0;
    // Follow the elector's own schedule, as the shell does.
    let mut next = Duration::from_secs(2);
    while now < t0 + Duration::from_secs(20) {
        now += next;
        let outs = run(&mut a, &mut s, Input::Tick, now);
        if outs.contains(&Output::LostLeadership) {
            stepped_down_at = Some(now - t0);
            break;
        }
        next = next_tick(&outs).unwrap();
    }
    let down = stepped_down_at.expect("leader stepped down");
    assert_eq!(
        down, T.renew_deadline,
        "steps down exactly at the renew deadline"
    );
    s.reachable = true;
    // b may only take over after lease_duration from its observation (t0): strictly later.
    let outs = run(&mut b, &mut s, Input::Tick, t0 + down);
    assert!(!outs.contains(&Output::BecameLeader));
    let outs = run(&mut b, &mut s, Input::Tick, t0 + T.lease_duration);
    assert!(outs.contains(&Output::BecameLeader));
}

#[test]
fn release_lets_a_follower_acquire_at_once() {
    let mut s = Store::new();
    let (mut a, mut b) = (Elector::new("a", T), Elector::new("b", T));
    let t0 = Instant::now();
    run(&mut a, &mut s, Input::Tick, t0);
    run(&mut b, &mut s, Input::Tick, t0);
    let outs = run(&mut a, &mut s, Input::Release, t0 + Duration::from_secs(1));
    assert!(outs.contains(&Output::LostLeadership));
    assert_eq!(s.lease.as_ref().unwrap().0.holder.as_deref(), Some(""));
    // b is told of the change (the shell watches the Lease) and acquires immediately.
    let lease = s.lease.clone().map(|(r, v)| (r, v.to_string()));
    let outs = run(
        &mut b,
        &mut s,
        Input::Observed(lease),
        t0 + Duration::from_millis(1100),
    );
    assert!(outs.contains(&Output::BecameLeader));
    assert!(
        a.handle(Input::Tick, t0 + Duration::from_secs(2), SystemTime::now())
            .is_empty(),
        "released electors are inert"
    );
}

#[test]
fn a_lost_race_is_a_write_failure_not_leadership() {
    let mut s = Store::new();
    let (mut a, mut b) = (Elector::new("a", T), Elector::new("b", T));
    let t0 = Instant::now();
    // Both read "no Lease"; a creates first, b's create conflicts.
    let oa = a.handle(Input::Observed(None), t0, SystemTime::now());
    let ob = b.handle(Input::Observed(None), t0, SystemTime::now());
    let ra = s.exec(&oa);
    let rb = s.exec(&ob);
    assert!(matches!(ra[0], Input::Written(_)));
    assert!(matches!(rb[0], Input::WriteFailed));
    assert!(a
        .handle(ra[0].clone(), t0, SystemTime::now())
        .contains(&Output::BecameLeader));
    assert!(!b
        .handle(rb[0].clone(), t0, SystemTime::now())
        .contains(&Output::BecameLeader));
}

/// A leader's own renewals come back as watch events: they are observed, never answered
/// with another write (that would renew as fast as the API server answers), and the
/// schedule stays (the next renewal one retry period after the last).
#[test]
fn a_leader_does_not_renew_on_its_own_watch_events() {
    let mut s = Store::new();
    let mut a = Elector::new("a", T);
    let t0 = Instant::now();
    run(&mut a, &mut s, Input::Tick, t0);
    assert!(a.is_leader());
    for i in 1..=5u32 {
        let ev = s.lease.clone().map(|(r, v)| (r, v.to_string()));
        let outs = a.handle(
            Input::Watched(ev),
            t0 + Duration::from_millis(i.into()),
            SystemTime::now(),
        );
        assert!(outs.is_empty(), "event {i}: {outs:?}");
    }
    assert_eq!(s.lease.as_ref().unwrap().1, 1, "no write after the first");
}

/// A follower acts on a watch event at once when the Lease is released; while someone
/// else holds it, it only reschedules.
#[test]
fn a_follower_acquires_at_once_when_a_watch_shows_the_release() {
    let mut s = Store::new();
    let (mut a, mut b) = (Elector::new("a", T), Elector::new("b", T));
    let t0 = Instant::now();
    run(&mut a, &mut s, Input::Tick, t0);
    let ev = s.lease.clone().map(|(r, v)| (r, v.to_string()));
    let outs = b.handle(Input::Watched(ev), t0, SystemTime::now());
    assert!(
        outs.iter().all(|o| matches!(o, Output::TickAfter(_))),
        "{outs:?}"
    );
    run(&mut a, &mut s, Input::Release, t0 + Duration::from_secs(1));
    let ev = s.lease.clone().map(|(r, v)| (r, v.to_string()));
    let outs = run(
        &mut b,
        &mut s,
        Input::Watched(ev),
        t0 + Duration::from_secs(1),
    );
    assert!(outs.contains(&Output::BecameLeader), "{outs:?}");
    assert_eq!(b.holder(), Some("b"));
}

/// A watch event showing another holder ends our leadership at once; an event older than
/// our own write (a lagging watch) does not.
#[test]
fn a_leader_steps_down_when_a_watch_shows_another_holder_but_not_for_a_stale_event() {
    let mut s = Store::new();
    let mut a = Elector::new("a", T);
    let t0 = Instant::now();
    run(&mut a, &mut s, Input::Tick, t0);
    run(&mut a, &mut s, Input::Tick, t0 + T.retry_period);
    let (mine, v) = s.lease.clone().unwrap();
    assert_eq!(v, 2);
    let mut theirs = mine.clone();
    theirs.holder = Some("b".into());
    let stale = a.handle(
        Input::Watched(Some((theirs.clone(), "1".into()))),
        t0 + T.retry_period,
        SystemTime::now(),
    );
    assert!(stale.is_empty() && a.is_leader(), "{stale:?}");
    let outs = a.handle(
        Input::Watched(Some((theirs, "3".into()))),
        t0 + T.retry_period,
        SystemTime::now(),
    );
    assert!(outs.contains(&Output::LostLeadership), "{outs:?}");
    assert!(!a.is_leader());
    assert_eq!(next_tick(&outs), Some(T.retry_period));
}

/// A Lease as kube-vip v1.2.3 writes it (client-go's LeaseLock, `pkg/election/election.go`):
/// holder = its node name, `leaseDurationSeconds` = its `vip_leaseduration`.
fn kube_vip_lease(holder: Option<&str>, secs: i32) -> LeaseRecord {
    let t = SystemTime::now();
    LeaseRecord {
        holder: holder.map(str::to_string),
        lease_duration_seconds: secs,
        acquire_time: Some(t),
        renew_time: Some(t),
        transitions: 3,
    }
}

/// client-go's `isLeaseValid`: a Lease is valid for the `leaseDurationSeconds` written in
/// it (the holder's setting), counted from when the reader saw it change, not for the
/// reader's own `vip_leaseduration`. A vipr with a 2 s lease must not take a Lease a
/// kube-vip with the default 15 s holds until 15 s after its last change.
#[test]
fn a_lease_is_valid_for_the_duration_its_holder_wrote_not_ours() {
    let short = Timing {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(500),
    };
    let mut s = Store::new();
    s.lease = Some((kube_vip_lease(Some("kv-node"), 15), 7));
    let mut v = Elector::new("vipr-node", short);
    let t0 = Instant::now();
    run(&mut v, &mut s, Input::Tick, t0);
    for secs in [1, 3, 8, 14] {
        let outs = run(&mut v, &mut s, Input::Tick, t0 + Duration::from_secs(secs));
        assert!(
            !outs.contains(&Output::BecameLeader),
            "took kube-vip's Lease at +{secs}s"
        );
    }
    // A renewal by kube-vip (renewTime moves) restarts the clock.
    let mut renewed = kube_vip_lease(Some("kv-node"), 15);
    renewed.renew_time = Some(SystemTime::now() + Duration::from_secs(14));
    s.lease = Some((renewed, 8));
    run(&mut v, &mut s, Input::Tick, t0 + Duration::from_secs(14));
    let outs = run(&mut v, &mut s, Input::Tick, t0 + Duration::from_secs(16));
    assert!(!outs.contains(&Output::BecameLeader), "renewal ignored");
    assert_eq!(v.holder(), Some("kv-node"));
    // Expired 15 s after the renewal was seen: taken, as client-go would.
    let outs = run(&mut v, &mut s, Input::Tick, t0 + Duration::from_secs(30));
    assert!(outs.contains(&Output::BecameLeader));
    let (rec, _) = s.lease.clone().unwrap();
    assert_eq!(rec.holder.as_deref(), Some("vipr-node"));
    assert_eq!(rec.transitions, 4, "a takeover counts a transition");
    // The other way round: ours is written with our duration, so kube-vip waits for it.
    assert_eq!(rec.lease_duration_seconds, 2);
}

/// kube-vip's release on shutdown (client-go `release()`: holder "", duration 1 s) and a
/// Lease without a holder let vipr acquire at once, as client-go does.
#[test]
fn a_lease_released_by_kube_vip_or_without_holder_is_taken_at_once() {
    for holder in [Some(""), None] {
        let mut s = Store::new();
        s.lease = Some((kube_vip_lease(holder, 1), 9));
        let mut v = Elector::new("vipr-node", T);
        let outs = run(&mut v, &mut s, Input::Tick, Instant::now());
        assert!(outs.contains(&Output::BecameLeader), "holder {holder:?}");
    }
}

/// A Lease held under our own identity (written by the kube-vip this vipr replaces on the
/// same node, or by ourselves before a restart) is ours at once, as client-go's
/// `IsLeader()` (observed holder == identity) has it.
#[test]
fn a_lease_held_under_our_identity_is_renewed_at_once() {
    let mut s = Store::new();
    s.lease = Some((kube_vip_lease(Some("node-a"), 15), 4));
    let mut v = Elector::new("node-a", T);
    let outs = run(&mut v, &mut s, Input::Tick, Instant::now());
    assert!(outs.contains(&Output::BecameLeader));
    assert_eq!(s.lease.as_ref().unwrap().0.transitions, 3, "no transition");
}
