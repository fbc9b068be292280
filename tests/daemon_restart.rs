//! End-to-end tests of vipr's ownership of node addresses across crashes, with a real BIRD
//! peer in the lab's router namespace and vipr in a node namespace:
//!
//! - `kill -9`: the VIPs stay on `lo` (nothing can remove them), the peer drops the routes
//!   (the kernel closes the socket); the restarted vipr adopts the addresses it finds (marked
//!   with IFA_PROTO 0x56 and listed in its state file): no second copy, no re-add, no error;
//!   the routes return; the final SIGTERM leaves nothing on `lo`. A second crash with the
//!   state file deleted shows the IFA_PROTO marker alone is enough.
//! - Addresses put on `lo` by hand before vipr starts (the VIP itself, and addresses that
//!   are no VIP at all) are used or ignored but never removed, at SIGTERM either, and never
//!   recorded as vipr's; they do not become the router id or a next hop.

mod daemon_common;

use std::path::Path;
use std::time::{Duration, Instant};

use daemon_common::*;
use testbed::{Bird, Lab};

fn v4() -> String {
    format!("{VIP4}/32")
}
fn v6() -> String {
    format!("{VIP6}/128")
}

fn routes_present(bird: &Bird) -> bool {
    bird_route(bird, &v4(), "n0").is_some() && bird_route(bird, &v6(), "n0").is_some()
}

fn routes_absent(bird: &Bird) -> bool {
    bird_route(bird, &v4(), "n0").is_none() && bird_route(bird, &v6(), "n0").is_none()
}

/// The addresses listed in vipr's state file.
fn state_file(state: &Path) -> String {
    std::fs::read_to_string(state.join("addresses")).unwrap_or_default()
}

/// Lines of a run's log that report trouble with addresses, or any error.
fn address_trouble(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            l.contains("ERROR")
                || l.contains("cannot add")
                || l.contains("cannot remove")
                || l.contains("cannot list")
                || l.contains("resync failed")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn kill9_leaves_the_vips_and_a_restart_adopts_them() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let dir = workdir();
    let state = dir.join("state");
    let env = base_env(&state);
    let log = dir.join("vipr.log");
    let ctx = || {
        format!(
            "{}\n{}",
            bird.birdc("show route all"),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };

    let mut vipr = Vipr::start(node, &env, &[], &log);
    eventually("both routes at BIRD", ctx, || {
        routes_present(&bird).then_some(())
    });
    let recorded = state_file(&state);
    assert!(
        recorded.contains(&format!("lo {}", v4())) && recorded.contains(&format!("lo {}", v6())),
        "state file: {recorded:?}"
    );

    // Crash: the addresses stay, the routes go (the kernel sends FIN for the dead process).
    let t0 = Instant::now();
    let st = vipr.kill9();
    assert_eq!(st.code(), None, "killed by a signal: {st}");
    let gone = time_until(t0, || routes_absent(&bird)).expect("routes gone after kill -9");
    eprintln!("MEASURED BIRD: kill -9 -> routes gone in {gone:?}");
    assert_eq!(
        lo_count(node, &v4()),
        1,
        "after kill -9: {:?}",
        lo_addrs(node)
    );
    assert_eq!(
        lo_count(node, &v6()),
        1,
        "after kill -9: {:?}",
        lo_addrs(node)
    );

    // Restart: adopts them.
    let mut vipr = Vipr::start(node, &env, &[], &log);
    eventually("routes back at BIRD after the restart", ctx, || {
        routes_present(&bird).then_some(())
    });
    let s = vipr.wait_status("both VIPs advertised", |s| {
        [VIP4, VIP6].iter().all(|v| {
            Vipr::vip(s, v)["advertised_to"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
    });
    for v in [VIP4, VIP6] {
        assert_eq!(Vipr::vip(&s, v)["interface"], "lo");
    }
    assert_eq!(lo_count(node, &v4()), 1, "duplicate? {:?}", lo_addrs(node));
    assert_eq!(lo_count(node, &v6()), 1, "duplicate? {:?}", lo_addrs(node));
    let run = vipr.run_log();
    assert!(
        run.contains("found VIP addresses from an earlier run"),
        "{run}"
    );
    assert!(
        !run.contains("VIP on the node"),
        "the restarted vipr added the VIP again instead of adopting it:\n{run}"
    );
    assert!(
        address_trouble(&run).is_empty(),
        "{:?}",
        address_trouble(&run)
    );

    // A second crash, this time losing the state file: the IFA_PROTO marker is enough.
    vipr.kill9();
    eventually("routes gone after the second kill -9", ctx, || {
        routes_absent(&bird).then_some(())
    });
    std::fs::remove_dir_all(&state).expect("remove the state dir");
    let mut vipr = Vipr::start(node, &env, &[], &log);
    eventually("routes back after the second restart", ctx, || {
        routes_present(&bird).then_some(())
    });
    let run = vipr.run_log();
    assert!(
        run.contains("found VIP addresses from an earlier run"),
        "{run}"
    );
    assert!(
        address_trouble(&run).is_empty(),
        "{:?}",
        address_trouble(&run)
    );
    assert_eq!(lo_count(node, &v4()), 1, "{:?}", lo_addrs(node));

    // Final SIGTERM: nothing of vipr's is left.
    vipr.signal(libc::SIGTERM);
    let st = vipr.wait_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{st}");
    let lo = lo_addrs(node);
    assert_eq!(
        lo,
        vec!["127.0.0.1/8".to_string(), "::1/128".to_string()],
        "lo after SIGTERM"
    );
    assert!(routes_absent(&bird), "{}", bird.birdc("show route all"));
    assert!(
        !state_file(&state).contains(VIP4),
        "state file: {:?}",
        state_file(&state)
    );
}

#[test]
fn addresses_it_did_not_add_are_never_removed() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    // Before vipr starts: the IPv4 VIP itself, and addresses that are no VIP.
    let by_hand = [
        format!("{VIP4}/32"),
        "198.51.100.77/32".to_string(),
        "2001:db8:ee::77/128".to_string(),
    ];
    for a in &by_hand {
        node.sh(&format!("ip addr add {a} dev lo"));
    }
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let dir = workdir();
    let state = dir.join("state");
    let log = dir.join("vipr.log");
    let ctx = || {
        format!(
            "{}\n{}",
            bird.birdc("show route all"),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    let mut vipr = Vipr::start(node, &base_env(&state), &[], &log);

    // The hand-made VIP is used (advertised), vipr adds only the IPv6 one.
    let r4 = eventually("IPv4 VIP at BIRD", ctx, || bird_route(&bird, &v4(), "n0"));
    let r6 = eventually("IPv6 VIP at BIRD", ctx, || bird_route(&bird, &v6(), "n0"));
    assert_eq!(r4.next_hop.as_deref(), Some("10.55.0.11"), "{r4:#?}");
    assert_eq!(
        r6.next_hop.as_deref(),
        Some("2001:db8:55::11"),
        "IPv6 next hop must be the node's address, not one from lo: {r6:#?}"
    );
    assert!(r6.primary, "the IPv6 route must be usable: {r6:#?}");
    let proto = bird.birdc("show protocols all n0");
    let id = proto
        .lines()
        .find_map(|l| l.trim().strip_prefix("Neighbor ID:"))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    assert_ne!(id, VIP4, "the router id must not be a VIP:\n{proto}");
    for a in &by_hand {
        assert_eq!(lo_count(node, a), 1, "{a}: {:?}", lo_addrs(node));
    }
    assert_eq!(lo_count(node, &v6()), 1, "{:?}", lo_addrs(node));
    let recorded = state_file(&state);
    assert!(recorded.contains(VIP6), "state file: {recorded:?}");
    assert!(
        !recorded.contains(VIP4)
            && !recorded.contains("198.51.100.77")
            && !recorded.contains("ee::77"),
        "vipr recorded addresses it did not add: {recorded:?}"
    );
    let s = vipr.wait_status("the IPv4 VIP on lo", |s| {
        Vipr::vip(s, VIP4)["interface"] == "lo"
    });
    assert_eq!(Vipr::vip(&s, VIP4)["held_back"], serde_json::Value::Null);

    vipr.signal(libc::SIGTERM);
    let st = vipr.wait_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{st}");
    // Its own address is gone, the others all stay.
    let lo = lo_addrs(node);
    assert_eq!(lo_count(node, &v6()), 0, "vipr's IPv6 VIP left: {lo:?}");
    for a in &by_hand {
        assert_eq!(
            lo_count(node, a),
            1,
            "vipr removed {a} it did not add: {lo:?}"
        );
    }
    // Still withdrawn at the peer, although the address stays on the node.
    eventually("routes withdrawn at BIRD", ctx, || {
        routes_absent(&bird).then_some(())
    });
    let run = vipr.run_log();
    assert!(
        address_trouble(&run).is_empty(),
        "{:?}",
        address_trouble(&run)
    );
}
