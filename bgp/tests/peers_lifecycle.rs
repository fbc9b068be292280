//! Session lifecycle against real daemons: `Speaker::shutdown` withdraws at BIRD and FRR
//! at once (Cease / Administrative Shutdown with the RFC 9003 message, which both show),
//! also when the runtime is dropped right after it returns, as when a daemon exits;
//! BIRD, FRR and GoBGP restarting → the speaker re-establishes and re-advertises;
//! `remove_peer` leaves the other session untouched, `set_peer` with an unchanged config
//! resets nothing, with a changed config resets only that session. Needs root; see
//! `peers_common`.

mod peers_common;

use std::time::{Duration, Instant};

use bgp::State;
use peers_common::*;
use testbed::{wait_for, Bird, Frr, Gobgp, Lab};

/// The most a shutdown may take to remove the routes at the peer.
const AT_ONCE: Duration = Duration::from_secs(1);

fn bird_two_sessions(lab: &Lab) -> Bird {
    Bird::start(
        &lab.router,
        &bird_conf(&[
            bird_proto("n0v4", 0, false, EBGP_AS, ""),
            bird_proto("n0v6", 0, true, EBGP_AS, ""),
        ]),
    )
}

/// Node 0's speaker peering eBGP with the router over IPv4 and IPv6.
fn node_two_sessions(lab: &Lab) -> Node {
    let n = Node::start(lab, 0);
    for v6 in [false, true] {
        n.add_peer(peer_cfg(router(v6), PEER_AS, EBGP_AS));
    }
    n
}

fn wait_bird_both(bird: &Bird) {
    wait_bird_established(bird, "n0v4");
    wait_bird_established(bird, "n0v6");
    wait_bird_route(bird, &v4_prefix(0), "n0v4");
    wait_bird_route(bird, &v6_prefix(0), "n0v6");
}

#[test]
fn shutdown_removes_routes_at_bird_at_once_with_the_message() {
    let lab = Lab::new(1);
    let bird = bird_two_sessions(&lab);
    let n = node_two_sessions(&lab);
    wait_bird_both(&bird);

    let t0 = Instant::now();
    n.shutdown("vipr maintenance: node drain");
    let returned = t0.elapsed();
    // Like a daemon returning from main: the runtime goes away right after shutdown().
    drop(n);
    wait_bird_no_route(&bird, &v4_prefix(0), "n0v4", AT_ONCE);
    wait_bird_no_route(&bird, &v6_prefix(0), "n0v6", AT_ONCE);
    let gone = t0.elapsed();
    eprintln!("shutdown returned after {returned:?}, routes gone from BIRD after {gone:?}");
    assert!(gone <= AT_ONCE, "{gone:?}");

    // BIRD got our Cease / Administrative Shutdown with the shutdown communication:
    // `Last error: Received: Administrative shutdown` and `Message: <text>`.
    for p in ["n0v4", "n0v6"] {
        let info = bird.birdc(&format!("show protocols all {p}"));
        assert_ne!(bird.protocol_state(p), "Established", "{info}");
        assert!(
            info.contains("Received: Administrative shutdown"),
            "{p}:\n{info}"
        );
        let msg = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("Message:"))
            .map(str::trim);
        assert_eq!(msg, Some("vipr maintenance: node drain"), "{p}:\n{info}");
    }
}

#[test]
fn shutdown_removes_routes_at_frr_at_once_with_the_message() {
    let lab = Lab::new(1);
    let frr = Frr::start(
        &lab.router,
        &frr_conf(&[(0, false, EBGP_AS, ""), (0, true, EBGP_AS, "")], &[]),
    );
    let n = node_two_sessions(&lab);
    wait_frr_path(&frr, &v4_prefix(0), node_addr(0, false));
    wait_frr_path(&frr, &v6_prefix(0), node_addr(0, true));

    let t0 = Instant::now();
    n.shutdown("vipr maintenance: node drain");
    let gone = wait_for(AT_ONCE, || {
        (frr_path(&frr, &v4_prefix(0), node_addr(0, false)).is_none()
            && frr_path(&frr, &v6_prefix(0), node_addr(0, true)).is_none())
        .then_some(())
    });
    eprintln!("routes gone from FRR after {:?}", t0.elapsed());
    assert!(gone.is_some(), "{}", frr.vtysh("show bgp ipv4 unicast"));
    let nb = frr_neighbor(&frr, node_addr(0, false));
    assert_ne!(nb["bgpState"], "Established", "{nb:#}");
    assert_eq!(
        nb["lastNotificationReason"], "Cease/Administrative Shutdown",
        "{nb:#}"
    );
    assert_eq!(
        nb["lastShutdownDescription"], "vipr maintenance: node drain",
        "{nb:#}"
    );
}

/// After a restart of the peer the speaker's session comes back on its own.
fn assert_reconnected(n: &Node, v6: bool, before: u64) {
    n.wait_established(router(v6));
    let info = n.peer(router(v6));
    assert!(info.stats.established > before, "{info:?}");
    assert!(info.stats.flaps >= 1, "{info:?}");
}

#[test]
fn bird_restart_the_speaker_reestablishes_and_readvertises() {
    let lab = Lab::new(1);
    let mut bird = bird_two_sessions(&lab);
    let n = node_two_sessions(&lab);
    wait_bird_both(&bird);
    let t0 = Instant::now();
    bird.restart();
    wait_bird_both(&bird);
    eprintln!("BIRD restart to routes back: {:?}", t0.elapsed());
    let r = wait_bird_route(&bird, &v4_prefix(0), "n0v4");
    check_bird_route(&r, node_addr(0, false), &[EBGP_AS], false);
    assert_reconnected(&n, false, 1);
    assert_reconnected(&n, true, 1);
}

#[test]
fn frr_restart_the_speaker_reestablishes_and_readvertises() {
    let lab = Lab::new(1);
    let mut frr = Frr::start(
        &lab.router,
        &frr_conf(&[(0, false, EBGP_AS, ""), (0, true, EBGP_AS, "")], &[]),
    );
    let n = node_two_sessions(&lab);
    wait_frr_path(&frr, &v4_prefix(0), node_addr(0, false));
    wait_frr_path(&frr, &v6_prefix(0), node_addr(0, true));
    let t0 = Instant::now();
    frr.restart();
    let p = wait_frr_path(&frr, &v4_prefix(0), node_addr(0, false));
    check_frr_path(&p, node_addr(0, false), &[EBGP_AS], false);
    let p = wait_frr_path(&frr, &v6_prefix(0), node_addr(0, true));
    check_frr_path(&p, node_addr(0, true), &[EBGP_AS], false);
    eprintln!("FRR restart to routes back: {:?}", t0.elapsed());
    assert_reconnected(&n, false, 1);
    assert_reconnected(&n, true, 1);
}

#[test]
fn gobgp_restart_the_speaker_reestablishes_and_readvertises() {
    let lab = Lab::new(1);
    let mut gobgp = Gobgp::start(&lab.router, &gobgp_conf(&[(0, false, EBGP_AS)]));
    let n = Node::start(&lab, 0);
    n.add_peer(peer_cfg(router(false), PEER_AS, EBGP_AS));
    wait_gobgp_path(&gobgp, &v4_prefix(0), node_addr(0, false));
    let t0 = Instant::now();
    gobgp.restart();
    let p = wait_gobgp_path(&gobgp, &v4_prefix(0), node_addr(0, false));
    check_gobgp_path(&p, node_addr(0, false), &[EBGP_AS], false);
    eprintln!("GoBGP restart to routes back: {:?}", t0.elapsed());
    assert_reconnected(&n, false, 1);
}

#[test]
fn remove_peer_and_set_peer_touch_only_their_own_session() {
    let lab = Lab::new(1);
    let bird = bird_two_sessions(&lab);
    let n = node_two_sessions(&lab);
    wait_bird_both(&bird);
    let since_v4 = bird_since(&bird, "n0v4");
    let status_v4 = n.status(router(false));

    // Remove the IPv6 peer: BIRD hears Cease / Peer De-configured and drops its route.
    assert!(n.remove_peer(router(true)));
    assert!(!n.remove_peer(router(true)), "already removed");
    wait_bird_no_route(&bird, &v6_prefix(0), "n0v6", CONVERGE);
    let info = bird.birdc("show protocols all n0v6");
    assert!(info.contains("Received: Peer de-configured"), "{info}");
    assert_eq!(
        n.call(|sp| async move { sp.peers().await }).unwrap().len(),
        1
    );

    // set_peer with the same config: nothing changes, for a few keepalive rounds.
    let cfg_v4 = peer_cfg(router(false), PEER_AS, EBGP_AS);
    assert!(
        !n.set_peer(cfg_v4.clone()),
        "unchanged config reported as a change"
    );
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        let now = bird_since(&bird, "n0v4");
        assert!(
            same_since(&now, &since_v4),
            "IPv4 session was reset: {now:?} {since_v4:?}"
        );
        assert_eq!(bird.protocol_state("n0v4"), "Established");
        assert_eq!(n.status(router(false)), status_v4);
        assert!(!bird.routes_for(&v4_prefix(0).to_string()).is_empty());
        std::thread::sleep(Duration::from_millis(100));
    }
    let info = n.peer(router(false));
    assert_eq!(
        (info.stats.established, info.stats.flaps),
        (1, 0),
        "{info:?}"
    );

    // A changed config resets that session alone (Cease / Other Configuration Change).
    let mut changed = cfg_v4.clone();
    changed.hold_time = 6;
    assert!(n.set_peer(changed));
    let reset = wait_for(CONVERGE, || {
        (!same_since(&bird_since(&bird, "n0v4"), &since_v4)).then_some(())
    });
    assert!(reset.is_some(), "changed config did not reset the session");
    wait_bird_established(&bird, "n0v4");
    wait_bird_route(&bird, &v4_prefix(0), "n0v4");
    n.wait_established(router(false));
    let info = n.peer(router(false));
    assert_eq!(info.config.hold_time, 6);
    assert_eq!(info.status.state, State::Established);

    // And the IPv6 peer comes back with set_peer.
    assert!(n.set_peer(peer_cfg(router(true), PEER_AS, EBGP_AS)));
    wait_bird_established(&bird, "n0v6");
    wait_bird_route(&bird, &v6_prefix(0), "n0v6");
}
