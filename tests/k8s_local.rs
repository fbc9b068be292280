//! End-to-end test of `externalTrafficPolicy: Local` with a real kube-apiserver 1.20.2 and a
//! real FRR router (`maximum-paths 8`): three nodes (node0, node1, node2) each run
//! `vipr manager` in BGP mode with `svc_enable=true`. Kubernetes 1.20 serves no
//! discovery.k8s.io/v1, so vipr reads core/v1 Endpoints, which the test writes itself (no
//! kubelet or endpoints controller runs).
//!
//! Asserts: a `Cluster` Service is advertised by all three nodes (three next hops in
//! zebra); a `Local` Service whose Endpoints have one ready address on node1 (and a
//! `notReadyAddresses` entry on node2) has exactly node1's next hop, while node0 and node2
//! report it held back; moving the ready address to node2 (node1's becoming not ready)
//! moves the next hop to node2 alone (the time is printed); with no ready address left the
//! route is withdrawn everywhere.

mod daemon_common;
mod k8s_common;

use std::time::Instant;

use daemon_common::*;
use k8s_common::*;
use serde_json::json;
use testbed::{Frr, Lab, TempDir};

const NODES: usize = 3;

/// The peers FRR learnt `prefix` from, sorted.
fn path_peers(frr: &Frr, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = frr_paths(frr, prefix)
        .iter()
        .filter_map(|p| p["peer"]["peerId"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

fn addrs(nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|&i| Lab::node_v4(i).to_string()).collect()
}

/// Paths and zebra's next hops for `prefix` are exactly those of `nodes`.
fn exactly(frr: &Frr, prefix: &str, nodes: &[usize]) -> bool {
    let want = addrs(nodes);
    path_peers(frr, prefix) == want && frr_rib_nexthops(frr, prefix) == want
}

#[test]
fn local_traffic_policy_follows_the_ready_endpoint() {
    let lab = Lab::new(NODES);
    let api = ApiServer::start(&lab.router);
    let frr = Frr::start(
        &lab.router,
        &frr_router_conf("10.55.0.1", &addrs(&[0, 1, 2])),
    );
    let dirs: Vec<TempDir> = (0..NODES).map(|_| workdir()).collect();
    let vs: Vec<Vipr> = (0..NODES)
        .map(|i| {
            let env = bgp_svc_env(
                &dirs[i].join("state"),
                &api.kubeconfig(),
                &format!("node{i}"),
            );
            Vipr::start(&lab.nodes[i], &env, &[], &dirs[i].join("vipr.log"))
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
    let (cluster, local) = (svc_vip(30), svc_vip(31));
    let (pc, pl) = (format!("{cluster}/32"), format!("{local}/32"));

    for v in &vs {
        within(CONVERGE, "Service caches synced", ctx, || {
            v.log()
                .contains("Service and endpoint caches synced")
                .then_some(())
        });
    }
    // A Cluster Service: every node advertises it (the ECMP baseline).
    api.create_service(&annotated_service("cluster", &cluster, json!({})));
    within(CONVERGE, "3 next hops for the Cluster Service", ctx, || {
        exactly(&frr, &pc, &[0, 1, 2]).then_some(())
    });

    // Local: Endpoints first (ready on node1, not ready on node2), then the Service.
    let ep_path = "/api/v1/namespaces/default/endpoints/local";
    api.create(
        "/api/v1/namespaces/default/endpoints",
        &endpoints("local", &["node1"], &["node2"]),
    );
    api.create_service(&annotated_service(
        "local",
        &local,
        json!({"externalTrafficPolicy": "Local"}),
    ));
    within(CONVERGE, "only node1's next hop", ctx, || {
        exactly(&frr, &pl, &[1]).then_some(())
    });
    for i in [0, 2] {
        let why = within(
            CONVERGE,
            "Local Service held back on node0/node2",
            ctx,
            || vs[i].held_back(&local),
        );
        assert!(
            why.contains("externalTrafficPolicy: Local"),
            "node{i}: {why}"
        );
    }
    api.wait_ingress("local", &[&local]);
    assert!(exactly(&frr, &pl, &[1]), "{}", ctx());

    // The pod moves: ready on node2, node1's not ready any more.
    let t0 = Instant::now();
    api.replace(ep_path, &endpoints("local", &["node2"], &["node1"]));
    let took = time_until(t0, || exactly(&frr, &pl, &[2]))
        .unwrap_or_else(|| panic!("next hop did not move to node2\n{}", ctx()));
    eprintln!(
        "MEASURED k8s: ready endpoint moved node1 -> node2: FRR next hop moved after {took:?}"
    );
    within(CONVERGE, "Local Service held back on node1", ctx, || {
        vs[1].held_back(&local)
    });

    // Only not-ready addresses: nobody advertises it; the Cluster Service is untouched.
    api.replace(ep_path, &endpoints("local", &[], &["node1", "node2"]));
    within(CONVERGE, "Local Service withdrawn", ctx, || {
        path_peers(&frr, &pl).is_empty().then_some(())
    });
    assert!(exactly(&frr, &pc, &[0, 1, 2]), "{}", ctx());
}
