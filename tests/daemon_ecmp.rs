//! End-to-end test of anycast ECMP: three nodes each run their own `vipr manager` (same VIPs
//! 192.0.2.10 and 2001:db8:ff::10, eBGP AS 65001, router ids derived from the nodes'
//! addresses) and peer with one real FRR router (AS 65000, `maximum-paths 8`).
//!
//! Asserts that FRR holds three BGP paths for each VIP, one per node, all multipath, and
//! that zebra's RIB (`show ip route` / `show ipv6 route`) has three active next hops; that
//! the router reaches the VIP over them; and that after SIGTERM to one node's vipr the
//! route has exactly the two other next hops (the time is printed) while the other two
//! sessions are untouched.

mod daemon_common;

use std::time::{Duration, Instant};

use daemon_common::*;
use serde_json::Value;
use testbed::{Frr, Lab, TempDir};

const NODES: usize = 3;

fn v4() -> String {
    format!("{VIP4}/32")
}
fn v6() -> String {
    format!("{VIP6}/128")
}

/// The (sorted) node addresses that a path set or RIB entry should show.
fn node_set(family6: bool, nodes: &[usize]) -> Vec<String> {
    let mut v: Vec<String> = nodes
        .iter()
        .map(|&i| {
            if family6 {
                Lab::node_v6(i).to_string()
            } else {
                Lab::node_v4(i).to_string()
            }
        })
        .collect();
    v.sort();
    v
}

/// The peers FRR learnt `prefix` from (sorted), from `show bgp ... json`.
fn path_peers(frr: &Frr, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = frr_paths(frr, prefix)
        .iter()
        .filter_map(|p| p["peer"]["peerId"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// FRR's (connections established, uptime in ms) for a neighbour.
fn frr_session(frr: &Frr, n: &str) -> (u64, u64) {
    let v = frr.vtysh_json(&format!("show bgp neighbor {n} json"));
    (
        v[n]["connectionsEstablished"].as_u64().unwrap_or(0),
        v[n]["bgpTimerUpMsec"].as_u64().unwrap_or(0),
    )
}

#[test]
fn three_nodes_give_three_next_hops_and_a_stopped_one_leaves() {
    let lab = Lab::new(NODES);
    let neighbors: Vec<String> = (0..NODES).map(|i| Lab::node_v4(i).to_string()).collect();
    let frr = Frr::start(&lab.router, &frr_router_conf("10.55.0.1", &neighbors));
    let dirs: Vec<TempDir> = (0..NODES).map(|_| workdir()).collect();
    let mut vips: Vec<Vipr> = (0..NODES)
        .map(|i| {
            let d = &dirs[i];
            Vipr::start(
                &lab.nodes[i],
                &base_env(&d.join("state")),
                &[],
                &d.join("vipr.log"),
            )
        })
        .collect();
    let ctx = || {
        format!(
            "{}\n{}\n{}",
            frr.vtysh("show bgp ipv4 unicast"),
            frr.vtysh("show ip route"),
            frr.logs()
        )
    };

    let all = [0, 1, 2];
    for (prefix, six) in [(v4(), false), (v6(), true)] {
        eventually(&format!("3 paths for {prefix}"), ctx, || {
            (path_peers(&frr, &prefix) == neighbors).then_some(())
        });
        let want = node_set(six, &all);
        let got = eventually(&format!("3 next hops for {prefix} in zebra"), ctx, || {
            let nh = frr_rib_nexthops(&frr, &prefix);
            (nh == want).then_some(nh)
        });
        // Every path is used: the best one and the others as multipath.
        let paths = eventually(&format!("{prefix}: all paths multipath"), ctx, || {
            let paths = frr_paths(&frr, &prefix);
            let used = |p: &Value| p["multipath"] == true || p["bestpath"]["overall"] == true;
            (paths.len() == NODES && paths.iter().all(used)).then_some(paths)
        });
        for p in &paths {
            assert_eq!(p["aspath"]["string"], NODE_AS.to_string(), "{p:#}");
            assert_eq!(p["valid"], true, "{p:#}");
        }
        eprintln!("{prefix}: RIB next hops {got:?}");
    }
    // Distinct router ids were derived from the nodes' addresses.
    let summary = frr.vtysh_json("show bgp ipv4 unicast summary json");
    let ids: Vec<String> = neighbors
        .iter()
        .map(|n| {
            let v = frr.vtysh_json(&format!("show bgp neighbor {n} json"));
            v[n]["remoteRouterId"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(ids, neighbors, "router ids: {ids:?}\n{summary:#}");
    for v in &vips {
        let s = v.wait_status("advertised to the router", |s| {
            Vipr::vip(s, VIP4)["advertised_to"] == serde_json::json!(["10.55.0.1"])
        });
        assert_eq!(Vipr::peer(&s, "10.55.0.1")["state"], "Established");
    }
    let out = lab
        .router
        .run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", VIP4]);
    assert!(
        out.status.success(),
        "router cannot ping the anycast VIP: {out:?}"
    );

    // Stop node 1: its next hop goes, the other two stay. (Compare with a snapshot: under
    // load FRR itself may reset a session that came up while it was still applying its
    // config, "No AFI/SAFI activated for peer", long before this point.)
    let before: Vec<(u64, u64)> = [0, 2]
        .iter()
        .map(|&i| frr_session(&frr, &neighbors[i]))
        .collect();
    let t0 = Instant::now();
    vips[1].signal(libc::SIGTERM);
    let want4 = node_set(false, &[0, 2]);
    let want6 = node_set(true, &[0, 2]);
    let took = time_until(t0, || {
        frr_rib_nexthops(&frr, &v4()) == want4 && frr_rib_nexthops(&frr, &v6()) == want6
    });
    let st = vips[1].wait_exit(Duration::from_secs(5));
    let took = took.unwrap_or_else(|| panic!("next hops did not drop to 2:\n{}", ctx()));
    eprintln!("MEASURED FRR ECMP: SIGTERM on node 1 -> 2 next hops left after {took:?}");
    // Typically ~0.1 s; the bound leaves room for a loaded machine (each poll is a vtysh).
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(st.code(), Some(0), "{st}");
    let remaining = vec![neighbors[0].clone(), neighbors[2].clone()];
    assert_eq!(path_peers(&frr, &v4()), remaining);
    assert_eq!(path_peers(&frr, &v6()), remaining);
    // The other sessions did not flap.
    for (k, &i) in [0, 2].iter().enumerate() {
        let v: Value = frr.vtysh_json(&format!("show bgp neighbor {} json", neighbors[i]));
        let n = &v[&neighbors[i]];
        assert_eq!(n["bgpState"], "Established", "{n:#}");
        let (established, up) = frr_session(&frr, &neighbors[i]);
        assert_eq!(
            established, before[k].0,
            "session of node {i} was reset: {n:#}"
        );
        assert!(up >= before[k].1, "session of node {i} was reset: {n:#}");
        vips[i].assert_running();
    }
    let lo = lo_addrs(&lab.nodes[1]);
    assert!(!lo.iter().any(|a| a.starts_with(VIP4)), "node 1 lo: {lo:?}");
}
