//! BFD against real peers in namespaces: FRR's bfdd (sessions registered by bgpd's
//! `neighbor X bfd profile fast`) and BIRD's `protocol bfd` with `bfd on` in the BGP
//! protocol. Sessions come up over IPv4 and IPv6 with 50 ms × 3 on both sides; the node's
//! traffic blackholed with nftables → the peer withdraws the route within the Detection
//! Time + 100 ms; the peer's BFD stopped (bfdd frozen, or BIRD's BFD packets dropped) → the
//! speaker closes BGP with Cease / BFD Down within the Detection Time. Needs root; see
//! `peers_common`.

mod peers_common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bgp::{BfdConfig, BfdState, PeerConfig, State};
use peers_common::*;
use serde_json::Value;
use testbed::{wait_for, Bird, Frr, Lab, Netns};

const MS: Duration = Duration::from_millis(1);
/// 50 ms × 3 on both sides.
const DETECT: Duration = Duration::from_millis(150);
/// What proves that BFD, not BGP, took the session or the route down: half the negotiated
/// hold time (3 s), ten times the Detection Time. The figures themselves are measured by
/// `labs/bench-bfd.sh`; here a busy machine must not fail the test.
const WELL_BEFORE_HOLD: Duration = Duration::from_millis(1500);

const BFDD_CONF: &str = "bfd\n profile fast\n  receive-interval 50\n  transmit-interval 50\n  \
     detect-multiplier 3\n !\n!\n";

const BIRD_BFD: &str = "protocol bfd {\n  interface \"*\" { min rx interval 50 ms; \
     min tx interval 50 ms; multiplier 3; };\n}\n";

fn with_bfd(mut c: PeerConfig) -> PeerConfig {
    c.bfd = Some(BfdConfig {
        min_tx: MS * 50,
        min_rx: MS * 50,
        ..BfdConfig::default()
    });
    c
}

fn frr_with_bfd(lab: &Lab, v6: &[bool]) -> Frr {
    let neighbors: Vec<(usize, bool, u32, &str)> = v6
        .iter()
        .map(|v| (0, *v, EBGP_AS, "bfd profile fast"))
        .collect();
    Frr::start_with_bfdd(&lab.router, &frr_conf(&neighbors, &[]), BFDD_CONF)
}

fn bird_with_bfd(lab: &Lab) -> Bird {
    let mut conf = bird_conf(&[
        bird_proto("n0v4", 0, false, EBGP_AS, "bfd on;"),
        bird_proto("n0v6", 0, true, EBGP_AS, "bfd on;"),
    ]);
    conf.push_str(BIRD_BFD);
    Bird::start(&lab.router, &conf)
}

/// FRR's `show bfd peers json` entry for `peer`.
fn frr_bfd_peer(frr: &Frr, peer: IpAddr) -> Option<Value> {
    let v = frr.vtysh_json("show bfd peers json");
    v.as_array()?
        .iter()
        .find(|p| p["peer"] == peer.to_string())
        .cloned()
}

/// The state column of BIRD's `show bfd sessions` for `peer` (`Up`, `Down`, `Init`).
fn bird_bfd_state(bird: &Bird, peer: IpAddr) -> Option<String> {
    let out = bird.birdc("show bfd sessions");
    out.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.first() == Some(&peer.to_string().as_str()) && cols.len() >= 3)
            .then(|| cols[2].to_string())
    })
}

fn wait_speaker_bfd_up(n: &Node, peer: IpAddr) {
    let ok = wait_for(CONVERGE, || {
        (n.status(peer).bfd.map(|b| b.state) == Some(BfdState::Up)).then_some(())
    });
    assert!(
        ok.is_some(),
        "speaker's BFD to {peer}: {:?}",
        n.status(peer).bfd
    );
}

/// Drops every packet into and out of `ns` (the node's cable cut, its process alive).
fn blackhole(ns: &Netns) {
    ns.sh(
        "nft -f - <<'EOF'\ntable inet vipr_bh {\n chain i { type filter hook input priority -300; policy drop; }\n \
         chain o { type filter hook output priority -300; policy drop; }\n}\nEOF",
    );
}

/// Whether the router's kernel has the node's IPv4 route (zebra installs FRR's best path):
/// 2-3 ms per look, where vtysh takes ~40 ms.
fn kernel_route(ns: &Netns) -> bool {
    let out = ns.run(&["ip", "route", "show", &v4_prefix(0).to_string()]);
    !out.stdout.is_empty()
}

fn bird_has_route(bird: &Bird, v6: bool) -> bool {
    let (p, proto) = if v6 {
        (v6_prefix(0), "n0v6")
    } else {
        (v4_prefix(0), "n0v4")
    };
    bird.routes_for(&p.to_string())
        .iter()
        .any(|r| r.from_protocol == proto)
}

/// Polls `present` as fast as it can run until it is false; how long after `t0`.
fn gone_after(
    t0: Instant,
    within: Duration,
    mut present: impl FnMut() -> bool,
) -> Option<Duration> {
    while t0.elapsed() < within {
        if !present() {
            return Some(t0.elapsed());
        }
    }
    None
}

#[test]
fn frr_bfdd_sessions_come_up_over_ipv4_and_ipv6() {
    let lab = Lab::new(1);
    let frr = frr_with_bfd(&lab, &[false, true]);
    let n = Node::start(&lab, 0);
    for v6 in [false, true] {
        n.add_peer(with_bfd(peer_cfg(router(v6), PEER_AS, EBGP_AS)));
    }
    for v6 in [false, true] {
        n.wait_established(router(v6));
        wait_speaker_bfd_up(&n, router(v6));
        let node = node_addr(0, v6);
        let p = wait_for(CONVERGE, || {
            frr_bfd_peer(&frr, node).filter(|p| p["status"] == "up")
        })
        .unwrap_or_else(|| {
            panic!(
                "FRR BFD {node}: {}\n{}",
                frr.vtysh("show bfd peers"),
                frr.logs()
            )
        });
        let ours = n.status(router(v6)).bfd.unwrap();
        assert_eq!(
            p["remote-id"].as_u64(),
            Some(ours.local_discriminator as u64),
            "{p:#}"
        );
        assert_eq!(
            p["id"].as_u64(),
            Some(ours.remote_discriminator as u64),
            "{p:#}"
        );
        assert_eq!(p["remote-receive-interval"], 50, "{p:#}");
        assert_eq!(p["remote-transmit-interval"], 50, "{p:#}");
        assert_eq!(p["remote-detect-multiplier"], 3, "{p:#}");
        assert_eq!(
            (ours.tx_interval, ours.detect_time),
            (Some(MS * 50), Some(DETECT))
        );
        // bgpd sees the session up too.
        let nb = frr_neighbor(&frr, node);
        assert_eq!(nb["peerBfdInfo"]["status"], "Up", "{nb:#}");
    }
}

#[test]
fn bird_bfd_sessions_come_up_over_ipv4_and_ipv6() {
    let lab = Lab::new(1);
    let bird = bird_with_bfd(&lab);
    let n = Node::start(&lab, 0);
    for v6 in [false, true] {
        n.add_peer(with_bfd(peer_cfg(router(v6), PEER_AS, EBGP_AS)));
    }
    for v6 in [false, true] {
        n.wait_established(router(v6));
        wait_speaker_bfd_up(&n, router(v6));
        let node = node_addr(0, v6);
        let st = wait_for(CONVERGE, || {
            bird_bfd_state(&bird, node).filter(|s| s == "Up")
        });
        assert!(
            st.is_some(),
            "BIRD BFD {node}:\n{}",
            bird.birdc("show bfd sessions")
        );
        let ours = n.status(router(v6)).bfd.unwrap();
        assert_eq!((ours.remote_min_rx, ours.remote_min_tx), (MS * 50, MS * 50));
        assert_eq!(ours.detect_time, Some(DETECT));
    }
}

#[test]
fn node_blackholed_frr_withdraws_within_the_detection_time() {
    let lab = Lab::new(1);
    let frr = frr_with_bfd(&lab, &[false]);
    let n = Node::start(&lab, 0);
    n.add_peer(with_bfd(peer_cfg(router(false), PEER_AS, EBGP_AS)));
    n.wait_established(router(false));
    wait_speaker_bfd_up(&n, router(false));
    wait_frr_path(&frr, &v4_prefix(0), node_addr(0, false));
    wait_for(CONVERGE, || {
        frr_bfd_peer(&frr, node_addr(0, false)).filter(|p| p["status"] == "up")
    })
    .expect("FRR BFD up");
    wait_for(CONVERGE, || kernel_route(&lab.router).then_some(())).expect("route in the kernel");
    let t0 = Instant::now();
    blackhole(&lab.nodes[0]);
    let gone = gone_after(t0, Duration::from_secs(3), || kernel_route(&lab.router));
    eprintln!("MEASURED FRR: blackhole -> route gone from the router's kernel in {gone:?} (BFD 50 ms x 3)");
    let gone = gone.unwrap_or_else(|| panic!("route still at FRR:\n{}", frr.logs()));
    assert!(gone < WELL_BEFORE_HOLD, "{gone:?}");
}

#[test]
fn node_blackholed_bird_withdraws_within_the_detection_time() {
    let lab = Lab::new(1);
    let bird = bird_with_bfd(&lab);
    let n = Node::start(&lab, 0);
    n.add_peer(with_bfd(peer_cfg(router(false), PEER_AS, EBGP_AS)));
    n.wait_established(router(false));
    wait_speaker_bfd_up(&n, router(false));
    wait_bird_route(&bird, &v4_prefix(0), "n0v4");
    wait_for(CONVERGE, || {
        bird_bfd_state(&bird, node_addr(0, false)).filter(|s| s == "Up")
    })
    .expect("BIRD BFD up");
    let t0 = Instant::now();
    blackhole(&lab.nodes[0]);
    let gone = gone_after(t0, Duration::from_secs(3), || bird_has_route(&bird, false));
    eprintln!("MEASURED BIRD: blackhole -> route gone in {gone:?} (BFD 50 ms x 3)");
    let gone = gone.unwrap_or_else(|| panic!("route still at BIRD:\n{}", bird.log()));
    assert!(gone < WELL_BEFORE_HOLD, "{gone:?}");
}

/// Waits until the speaker's session to `peer` leaves Established; how long after `t0`.
fn speaker_down_after(n: &Node, peer: IpAddr, t0: Instant) -> Duration {
    loop {
        if n.status(peer).state != State::Established {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "BGP still up: {:?}",
            n.peer(peer)
        );
        std::thread::sleep(MS);
    }
}

#[test]
fn frr_bfdd_frozen_speaker_closes_bgp_with_bfd_down_in_the_detection_time() {
    let lab = Lab::new(1);
    let mut frr = frr_with_bfd(&lab, &[false]);
    let n = Node::start(&lab, 0);
    n.add_peer(with_bfd(peer_cfg(router(false), PEER_AS, EBGP_AS)));
    n.wait_established(router(false));
    wait_speaker_bfd_up(&n, router(false));
    let t0 = Instant::now();
    frr.bfdd_process().expect("bfdd").signal(libc::SIGSTOP);
    let down = speaker_down_after(&n, router(false), t0);
    eprintln!("MEASURED: FRR bfdd frozen -> speaker closed BGP in {down:?} (detect {DETECT:?})");
    frr.bfdd_process().expect("bfdd").signal(libc::SIGCONT);
    // Up to one interval passed between the peer's last packet and the freeze.
    assert!(down < WELL_BEFORE_HOLD, "{down:?}");
    let info = n.peer(router(false));
    let bfd = info.status.bfd.unwrap();
    assert_eq!(bfd.failures, 1, "{bfd:?}");
    assert_eq!(
        info.stats.notifications_sent.get(&(6, 10)),
        Some(&1),
        "{:?}",
        info.stats
    );
    // FRR got the Cease / BFD Down (RFC 9384 subcode 10).
    let nb = wait_for(CONVERGE, || {
        let nb = frr_neighbor(&frr, node_addr(0, false));
        nb["lastNotificationReason"].is_string().then_some(nb)
    });
    eprintln!(
        "FRR neighbor after the BFD Down: {:?}",
        nb.map(|v| v["lastNotificationReason"].clone())
    );
    // BFD comes back with bfdd, and BGP with it.
    n.wait_established(router(false));
}

#[test]
fn bird_bfd_silenced_speaker_closes_bgp_with_bfd_down_in_the_detection_time() {
    let lab = Lab::new(1);
    let bird = bird_with_bfd(&lab);
    let n = Node::start(&lab, 0);
    n.add_peer(with_bfd(peer_cfg(router(false), PEER_AS, EBGP_AS)));
    n.wait_established(router(false));
    wait_speaker_bfd_up(&n, router(false));
    let t0 = Instant::now();
    // BIRD's BFD packets stop leaving the router; its BGP keeps running.
    lab.router.sh(
        "nft -f - <<'EOF'\ntable inet vipr_bfd {\n chain o { type filter hook output priority -300; \
         policy accept; udp dport 3784 drop; }\n}\nEOF",
    );
    let down = speaker_down_after(&n, router(false), t0);
    eprintln!("MEASURED: BIRD BFD silenced -> speaker closed BGP in {down:?} (detect {DETECT:?})");
    assert!(down < WELL_BEFORE_HOLD, "{down:?}");
    // Our BFD declared the failure. Usually we close BGP with Cease / BFD Down; on a busy
    // machine BIRD may get there first, its own BFD taking our Down packets for a failure,
    // and close with a Cease of its own: BFD took the session down either way.
    let info = n.peer(router(false));
    assert_eq!(info.status.bfd.as_ref().map(|b| b.failures), Some(1));
    let ours = info.stats.notifications_sent.get(&(6, 10)) == Some(&1);
    let birds = info
        .stats
        .notifications_received
        .keys()
        .any(|(c, _)| *c == 6);
    assert!(ours || birds, "{:?}", info.stats);
    let proto = bird.birdc("show protocols all n0v4");
    assert_ne!(bird.protocol_state("n0v4"), "Established", "{proto}");
}
