//! End-to-end test of `svc_election` (one Lease per Service, ARP mode) against a real
//! kube-apiserver 1.20.2 with RBAC: two nodes run `vipr manager` as the ServiceAccount of
//! the RBAC that `vipr manifest rbac` renders for their settings, applied unchanged.
//!
//! Asserts:
//! - the Service's VIP is on exactly one node's eth0, and its Lease is
//!   `kube-system/kubevip-default.web` (`cp_namespace`), held by that node and labelled with
//!   the Service; no Lease is written in the Service's namespace;
//! - deleting the Service takes the VIP off the node and deletes its Lease;
//! - a Lease whose Service was deleted while every vipr was down (kill -9) is deleted by the
//!   first vipr that starts again;
//! - no permission error in either log, and the ServiceAccount may write Leases in
//!   kube-system only (SelfSubjectAccessReviews).
//!
//! Times from the deletion to the Lease gone are printed (`MEASURED`).

mod daemon_common;
mod k8s_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use daemon_common::*;
use k8s_common::*;
use testbed::{Lab, Netns};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces";

fn env(state: &Path, node: &str) -> BTreeMap<String, String> {
    let mut e = arp_cp_env(state, Path::new("/placeholder"), node, "");
    for k in ["cp_enable", "address"] {
        e.remove(k);
    }
    e.insert("svc_enable".into(), "true".into());
    e.insert("svc_election".into(), "true".into());
    e
}

fn holds(ns: &Netns, ip: &str) -> bool {
    let out = ns.run(&["ip", "-4", "addr", "show", "dev", "eth0"]);
    String::from_utf8_lossy(&out.stdout).contains(&format!("{ip}/"))
}

fn holders(lab: &Lab, ip: &str) -> Vec<usize> {
    (0..lab.nodes.len())
        .filter(|&i| holds(&lab.nodes[i], ip))
        .collect()
}

#[test]
fn per_service_leases_live_in_cp_namespace_and_go_with_their_service() {
    let lab = Lab::new(2);
    let api = ApiServer::start(&lab.router);
    let dir = workdir();
    let (d0, d1) = (workdir(), workdir());
    let (kc, token) = apply_rbac_and_login(
        &lab,
        &api,
        &dir.path,
        "vipr-l2",
        &env(&d0.join("state"), "node0"),
    );
    let with_kc = |state: &Path, node: &str| {
        let mut e = env(state, node);
        e.insert("k8s_config_file".into(), kc.to_str().unwrap().into());
        e
    };
    let (e0, e1) = (
        with_kc(&d0.join("state"), "node0"),
        with_kc(&d1.join("state"), "node1"),
    );
    let web = svc_vip(70);
    api.create_service(&annotated_service("web", &web, serde_json::json!({})));
    let mut v0 = Vipr::start(&lab.nodes[0], &e0, &[], &d0.join("vipr.log"));
    let mut v1 = Vipr::start(&lab.nodes[1], &e1, &[], &d1.join("vipr.log"));
    let ctx = || format!("--- node0\n{}\n--- node1\n{}", v0.log(), v1.log());

    // One holder, its Lease in kube-system, none in default.
    let holder = within(
        CONVERGE,
        "one node holding the Service VIP",
        ctx,
        || match holders(&lab, &web)[..] {
            [one] => Some(one),
            _ => None,
        },
    );
    let lease_path = format!("{LEASES}/kube-system/leases/kubevip-default.web");
    let lease = within(CONVERGE, "the Lease held by the VIP's node", ctx, || {
        api.get(&lease_path)
            .filter(|l| l["spec"]["holderIdentity"] == format!("node{holder}"))
    });
    let labels = &lease["metadata"]["labels"];
    assert_eq!(labels["vipr.io/service-namespace"], "default", "{lease:#}");
    assert_eq!(labels["vipr.io/service-name"], "web", "{lease:#}");
    let in_default = api.get(&format!("{LEASES}/default/leases")).expect("list");
    assert_eq!(
        in_default["items"].as_array().map(Vec::len),
        Some(0),
        "a Lease in the Service's namespace: {in_default:#}"
    );

    // The Service goes: the VIP and the Lease go.
    let t0 = Instant::now();
    api.delete_service("web");
    within(CONVERGE, "the Lease deleted with its Service", ctx, || {
        api.get(&lease_path).is_none().then_some(())
    });
    eprintln!(
        "MEASURED svc_election: Service deleted -> its Lease deleted after {:?}",
        t0.elapsed()
    );
    within(CONVERGE, "the VIP off every node", ctx, || {
        holders(&lab, &web).is_empty().then_some(())
    });

    // Deleted while every vipr is down: the next one to start deletes the Lease.
    let web2 = svc_vip(71);
    api.create_service(&annotated_service("web2", &web2, serde_json::json!({})));
    let lease2 = format!("{LEASES}/kube-system/leases/kubevip-default.web2");
    within(CONVERGE, "the second Service's Lease", ctx, || {
        api.get(&lease2)
            .filter(|l| l["spec"]["holderIdentity"].is_string())
    });
    v0.kill9();
    v1.kill9();
    api.delete_service("web2");
    assert!(api.get(&lease2).is_some(), "nobody left to delete it");
    let t0 = Instant::now();
    let v0 = Vipr::start(&lab.nodes[0], &e0, &[], &d0.join("vipr.log"));
    let ctx = || v0.log();
    within(CONVERGE, "the orphaned Lease deleted at start", ctx, || {
        api.get(&lease2).is_none().then_some(())
    });
    eprintln!(
        "MEASURED svc_election: vipr started -> Lease of a Service deleted while it was down deleted after {:?}",
        t0.elapsed()
    );

    for (n, log) in [("node0", v0.log()), ("node1", v1.log())] {
        assert_eq!(forbidden(&log), 0, "{n} hit a permission error:\n{log}");
    }
    let coord = "coordination.k8s.io";
    check_access(
        &api,
        "vipr-l2 (ARP, svc_election)",
        &token,
        &[
            ("create", coord, "leases", "", "kube-system", ""),
            (
                "delete",
                coord,
                "leases",
                "",
                "kube-system",
                "kubevip-default.web",
            ),
            ("get", "", "services", "", "default", "web"),
        ],
        &[
            ("create", coord, "leases", "", "default", ""),
            ("update", coord, "leases", "", "default", "kubevip-web"),
            ("list", coord, "leases", "", "", ""),
            ("delete", "", "services", "", "default", "web"),
        ],
    );
}
