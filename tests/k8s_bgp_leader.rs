//! End-to-end test of `vipr_bgp_leader_only` (kube-vip's BGP behaviour with
//! `vip_leaderelection=true`: only the holder of the control-plane Lease advertises the
//! control-plane VIP) with a real kube-apiserver 1.20.2 and a real FRR router
//! (`maximum-paths 8`, so two advertisers would show as two paths).
//!
//! Two nodes run `vipr manager` in BGP mode with `cp_enable`, `vip_leaderelection=true`,
//! `vipr_bgp_leader_only=true`, lease 2 s / renew deadline 1 s / retry 0.5 s.
//!
//! Asserts: FRR never holds more than one path for the VIP (sampled every 100 ms while
//! the nodes start and for 5 s after), the one path comes from the holder of
//! `kube-system/plndr-cp-lock`; after `kill -9` of that node the other one takes the Lease
//! and FRR's one path is from it. The takeover time is printed (`MEASURED`).

mod daemon_common;
mod k8s_common;

use std::time::{Duration, Instant};

use daemon_common::*;
use k8s_common::*;
use testbed::{Frr, Lab, TempDir};

const VIP: &str = "203.0.113.10";
const PREFIX: &str = "203.0.113.10/32";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plndr-cp-lock";

/// The peers FRR holds a path for the VIP from.
fn path_peers(frr: &Frr) -> Vec<String> {
    let mut v: Vec<String> = frr_paths(frr, PREFIX)
        .iter()
        .filter_map(|p| p["peer"]["peerId"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

fn holder(api: &ApiServer) -> Option<String> {
    api.get(LEASE)?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn only_the_lease_holder_advertises_the_control_plane_vip() {
    let lab = Lab::new(2);
    let api = ApiServer::start(&lab.router);
    let addrs: Vec<String> = (0..2).map(|i| Lab::node_v4(i).to_string()).collect();
    let frr = Frr::start(&lab.router, &frr_router_conf("10.55.0.1", &addrs));
    let dirs: Vec<TempDir> = (0..2).map(|_| workdir()).collect();
    let start = |i: usize| {
        let mut env = bgp_svc_env(
            &dirs[i].join("state"),
            &api.kubeconfig(),
            &format!("node{i}"),
        );
        env.remove("svc_enable");
        for (k, v) in [
            ("cp_enable", "true"),
            ("address", VIP),
            ("vip_leaderelection", "true"),
            ("vipr_bgp_leader_only", "true"),
            ("vip_leaseduration", "2"),
            ("vip_renewdeadline", "1"),
            ("vip_retryperiod", "0.5"),
        ] {
            env.insert(k.into(), v.into());
        }
        Vipr::start(&lab.nodes[i], &env, &[], &dirs[i].join("vipr.log"))
    };
    let mut vs = vec![start(0), start(1)];
    let ctx = |vs: &[daemon_common::Vipr]| {
        let mut s = format!(
            "paths: {:?}, holder: {:?}\n{}",
            path_peers(&frr),
            holder(&api),
            frr.vtysh("show bgp ipv4 unicast")
        );
        for (i, v) in vs.iter().enumerate() {
            s.push_str(&format!("--- node{i}\n{}\n", v.run_log()));
        }
        s
    };

    // One advertiser from the start: never two paths, then exactly the holder's.
    let t0 = Instant::now();
    let leader = loop {
        let peers = path_peers(&frr);
        assert!(peers.len() <= 1, "two advertisers: {}", ctx(&vs));
        if peers.len() == 1 {
            let h = holder(&api).expect("a path but no Lease holder");
            let i = addrs.iter().position(|a| *a == peers[0]).unwrap();
            assert_eq!(h, format!("node{i}"), "the path is not the holder's");
            break i;
        }
        assert!(t0.elapsed() < CONVERGE, "no path: {}", ctx(&vs));
        std::thread::sleep(Duration::from_millis(100));
    };
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(
            path_peers(&frr),
            vec![addrs[leader].clone()],
            "{}",
            ctx(&vs)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The follower says why it does not advertise.
    let other = 1 - leader;
    let st = vs[other].wait_status("the VIP held back", |s| {
        Vipr::vip(s, VIP)["held_back"].is_string()
    });
    eprintln!("follower's view of the VIP: {}", Vipr::vip(&st, VIP));

    // The leader dies: the other takes the Lease and advertises alone.
    let killed = Instant::now();
    vs[leader].kill9();
    within(
        CONVERGE,
        "the other node holding the Lease and advertising alone",
        || ctx(&vs),
        || {
            (holder(&api).as_deref() == Some(&format!("node{other}"))
                && path_peers(&frr) == vec![addrs[other].clone()])
            .then_some(())
        },
    );
    eprintln!(
        "MEASURED bgp leader-only takeover after kill -9: {:?} (lease 2 s)",
        killed.elapsed()
    );
    vs[other].assert_running();
}
