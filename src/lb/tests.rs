//! The pure core: desired state and the diff, including the rule that services vipr did not
//! create are never touched.

use super::*;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn svc(dests: &[&str]) -> Service {
    Service {
        scheduler: Scheduler::Rr,
        fwd: FwdMethod::Masquerade,
        dests: dests.iter().map(|d| a(d)).collect(),
    }
}

fn table(entries: &[(&str, Service)]) -> Table {
    entries.iter().map(|(k, s)| (a(k), s.clone())).collect()
}

/// What a data plane does with the ops: the reference semantics both backends implement.
fn simulate(mut t: Table, ops: &[Op], foreign: &BTreeSet<SocketAddr>) -> Table {
    for op in ops {
        assert!(
            !foreign.contains(&op.key()),
            "touched a foreign service: {op:?}"
        );
        match op {
            Op::AddService { key, scheduler } => {
                assert!(t
                    .insert(
                        *key,
                        Service {
                            scheduler: *scheduler,
                            fwd: FwdMethod::Local,
                            dests: BTreeSet::new()
                        }
                    )
                    .is_none());
            }
            Op::SetService { key, scheduler } => t.get_mut(key).unwrap().scheduler = *scheduler,
            Op::DelService { key } => assert!(t.remove(key).is_some()),
            Op::AddDest { key, dest, fwd } | Op::SetDest { key, dest, fwd } => {
                let s = t.get_mut(key).unwrap();
                s.dests.insert(*dest);
                s.fwd = *fwd;
            }
            Op::DelDest { key, dest } => assert!(t.get_mut(key).unwrap().dests.remove(dest)),
        }
    }
    // fwd of a service without dests is not observable; normalise.
    t
}

fn intent(vips: &[&str], leader: bool) -> Intent {
    Intent {
        vips: vips.iter().map(|v| v.parse().unwrap()).collect(),
        port: 6443,
        scheduler: Scheduler::Rr,
        fwd: FwdMethod::Masquerade,
        leader,
    }
}

#[test]
fn desired_has_one_service_per_vip_with_healthy_backends_of_its_family() {
    let healthy: BTreeSet<_> = [
        a("10.0.0.1:6443"),
        a("[2001:db8::1]:6443"),
        a("10.0.0.2:6443"),
    ]
    .into();
    let t = desired(&intent(&["192.0.2.10", "2001:db8:ff::10"], true), &healthy);
    assert_eq!(t.len(), 2);
    assert_eq!(
        t[&a("192.0.2.10:6443")].dests,
        [a("10.0.0.1:6443"), a("10.0.0.2:6443")].into()
    );
    assert_eq!(
        t[&a("[2001:db8:ff::10]:6443")].dests,
        [a("[2001:db8::1]:6443")].into()
    );
    assert!(
        desired(&intent(&["192.0.2.10"], false), &healthy).is_empty(),
        "not the leader"
    );
    let empty = desired(&intent(&["192.0.2.10"], true), &BTreeSet::new());
    assert!(
        empty[&a("192.0.2.10:6443")].dests.is_empty(),
        "an empty service stays"
    );
}

#[test]
fn new_service_is_created_before_its_destinations() {
    let want = table(&[("192.0.2.10:6443", svc(&["10.0.0.1:6443", "10.0.0.2:6443"]))]);
    let p = diff(&Table::new(), &want, &BTreeSet::new());
    assert_eq!(
        p.ops,
        vec![
            Op::AddService {
                key: a("192.0.2.10:6443"),
                scheduler: Scheduler::Rr
            },
            Op::AddDest {
                key: a("192.0.2.10:6443"),
                dest: a("10.0.0.1:6443"),
                fwd: FwdMethod::Masquerade
            },
            Op::AddDest {
                key: a("192.0.2.10:6443"),
                dest: a("10.0.0.2:6443"),
                fwd: FwdMethod::Masquerade
            },
        ]
    );
    assert_eq!(p.target, want);
    assert!(
        diff(&want, &want, &BTreeSet::new()).ops.is_empty(),
        "nothing to do"
    );
}

#[test]
fn backend_changes_are_diffs_adds_before_removals() {
    let have = table(&[("192.0.2.10:6443", svc(&["10.0.0.1:6443", "10.0.0.2:6443"]))]);
    let want = table(&[("192.0.2.10:6443", svc(&["10.0.0.2:6443", "10.0.0.3:6443"]))]);
    let p = diff(&have, &want, &BTreeSet::new());
    assert_eq!(
        p.ops,
        vec![
            Op::AddDest {
                key: a("192.0.2.10:6443"),
                dest: a("10.0.0.3:6443"),
                fwd: FwdMethod::Masquerade
            },
            Op::DelDest {
                key: a("192.0.2.10:6443"),
                dest: a("10.0.0.1:6443")
            },
        ]
    );
}

#[test]
fn scheduler_and_forwarding_changes_are_edits_not_recreations() {
    let have = table(&[("192.0.2.10:6443", svc(&["10.0.0.1:6443"]))]);
    let mut s = svc(&["10.0.0.1:6443"]);
    s.scheduler = Scheduler::Wlc;
    s.fwd = FwdMethod::Tunnel;
    let want = table(&[("192.0.2.10:6443", s)]);
    let p = diff(&have, &want, &BTreeSet::new());
    assert_eq!(
        p.ops,
        vec![
            Op::SetService {
                key: a("192.0.2.10:6443"),
                scheduler: Scheduler::Wlc
            },
            Op::SetDest {
                key: a("192.0.2.10:6443"),
                dest: a("10.0.0.1:6443"),
                fwd: FwdMethod::Tunnel
            },
        ]
    );
}

#[test]
fn losing_leadership_deletes_only_our_services() {
    let have = table(&[("192.0.2.10:6443", svc(&["10.0.0.1:6443"]))]);
    let foreign: BTreeSet<_> = [a("10.96.0.1:443")].into();
    let p = diff(&have, &Table::new(), &foreign);
    assert_eq!(
        p.ops,
        vec![Op::DelService {
            key: a("192.0.2.10:6443")
        }]
    );
}

#[test]
fn a_foreign_service_on_our_address_is_left_alone_and_reported() {
    // kube-vip #745: kube-proxy (IPVS mode) owns 192.0.2.10:6443; vipr must not fight it.
    let foreign: BTreeSet<_> = [a("192.0.2.10:6443")].into();
    let want = table(&[
        ("192.0.2.10:6443", svc(&["10.0.0.1:6443"])),
        ("192.0.2.11:6443", svc(&["10.0.0.1:6443"])),
    ]);
    let p = diff(&Table::new(), &want, &foreign);
    assert_eq!(p.blocked, vec![a("192.0.2.10:6443")]);
    assert!(
        p.ops.iter().all(|o| o.key() == a("192.0.2.11:6443")),
        "{:?}",
        p.ops
    );
    assert!(!p.target.contains_key(&a("192.0.2.10:6443")));
}

/// A small deterministic generator (no extra dependency).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_table(r: &mut Rng, keys: &[SocketAddr]) -> Table {
    let dests: Vec<SocketAddr> = (1..=5).map(|i| a(&format!("10.0.0.{i}:6443"))).collect();
    let scheds = [Scheduler::Rr, Scheduler::Wrr, Scheduler::Sh];
    let fwds = [FwdMethod::Local, FwdMethod::Masquerade];
    let mut t = Table::new();
    for k in keys {
        if r.pick(3) == 0 {
            continue;
        }
        let s = Service {
            scheduler: scheds[r.pick(3) as usize],
            fwd: fwds[r.pick(2) as usize],
            dests: dests.iter().filter(|_| r.pick(2) == 0).copied().collect(),
        };
        t.insert(*k, s);
    }
    t
}

#[test]
fn random_diffs_reach_the_target_and_never_touch_foreign_services() {
    let keys: Vec<SocketAddr> = (10..16).map(|i| a(&format!("192.0.2.{i}:6443"))).collect();
    let mut r = Rng(0x9e3779b97f4a7c15);
    for _ in 0..2000 {
        let mut have = random_table(&mut r, &keys);
        let want = random_table(&mut r, &keys);
        let foreign: BTreeSet<SocketAddr> = keys
            .iter()
            .filter(|k| !have.contains_key(k) && r.pick(4) == 0)
            .copied()
            .collect();
        // Empty services have no observable forwarding method.
        for s in have.values_mut() {
            if s.dests.is_empty() {
                s.fwd = FwdMethod::Local;
            }
        }
        let p = diff(&have, &want, &foreign);
        let mut got = simulate(have.clone(), &p.ops, &foreign);
        let mut expect: Table = want
            .iter()
            .filter(|(k, _)| !foreign.contains(k))
            .map(|(k, s)| (*k, s.clone()))
            .collect();
        for t in [&mut got, &mut expect] {
            for s in t.values_mut() {
                if s.dests.is_empty() {
                    s.fwd = FwdMethod::Local;
                }
            }
        }
        assert_eq!(
            got, expect,
            "have {have:?} want {want:?} foreign {foreign:?} ops {:?}",
            p.ops
        );
        let mut target = p.target.clone();
        for s in target.values_mut() {
            if s.dests.is_empty() {
                s.fwd = FwdMethod::Local;
            }
        }
        assert_eq!(target, expect);
    }
}

/// The trait contract every data plane meets, against the real kernel: what `observe`
/// returns after `apply` is exactly the plan's target, through creation, backend changes,
/// a scheduler change, an emptied service and a deletion; `remove_all` leaves nothing.
pub(crate) async fn conformance<B: LbBackend>(b: &mut B) {
    let k4 = a("192.0.2.10:6443");
    let k6 = a("[2001:db8:ff::10]:6443");
    let mut steps = vec![
        table(&[("192.0.2.10:6443", svc(&["10.0.0.1:6443", "10.0.0.2:6443"]))]),
        table(&[
            ("192.0.2.10:6443", svc(&["10.0.0.2:6443", "10.0.0.3:8443"])),
            ("[2001:db8:ff::10]:6443", svc(&["[2001:db8::1]:6443"])),
        ]),
    ];
    let mut sh = svc(&["10.0.0.2:6443"]);
    sh.scheduler = Scheduler::Sh;
    steps.push(table(&[
        ("192.0.2.10:6443", sh),
        ("[2001:db8:ff::10]:6443", svc(&[])),
    ]));
    steps.push(table(&[(
        "[2001:db8:ff::10]:6443",
        svc(&["[2001:db8::2]:6443"]),
    )]));
    steps.push(Table::new());
    let start = b.observe().await.expect("observe");
    assert!(start.ours.is_empty(), "{start:?}");
    let mut applied = start.ours;
    for want in steps {
        let p = diff(&applied, &want, &start.foreign);
        b.apply(&p.ops, &p.target)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", p.ops));
        let got = b.observe().await.expect("observe");
        let norm = |t: &Table| -> Table {
            t.iter()
                .map(|(k, s)| {
                    let mut s = s.clone();
                    if s.dests.is_empty() {
                        s.fwd = FwdMethod::Local;
                    }
                    (*k, s)
                })
                .collect()
        };
        assert_eq!(norm(&got.ours), norm(&p.target), "after {:?}", p.ops);
        applied = got.ours;
    }
    let p = diff(
        &applied,
        &table(&[("192.0.2.10:6443", svc(&["10.0.0.1:6443"]))]),
        &start.foreign,
    );
    b.apply(&p.ops, &p.target).await.expect("apply");
    b.remove_all().await.expect("remove_all");
    assert!(b.observe().await.expect("observe").ours.is_empty());
    let _ = (k4, k6);
}
