//! Control-plane load balancing with backends from Kubernetes Nodes, end to end against a
//! real kube-apiserver 1.20.2 and the kernel's nftables.
//!
//! ```text
//!   router ns: kube-apiserver + etcd 10.55.0.1 ──┐ br0
//!   node0 ns:  vipr 10.55.0.11 (lb_enable, no static backends), VIP 192.0.2.10:6443,
//!              "API servers" listening on 10.80.0.1-3:17443 (addresses on lo)
//! ```
//!
//! The test creates the Node objects (no kubelet runs): Ready control-plane Nodes become
//! backends (InternalIP, port `port`), a worker never does; a Node added, made NotReady,
//! Ready again, deleted, or losing its label changes the backend map; every change is timed
//! from the API call to the map in the kernel. At SIGTERM vipr's table is gone.

mod daemon_common;
mod k8s_common;
mod lb_common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use daemon_common::*;
use k8s_common::*;
use lb_common::{programmed, Backend, Dataplane};
use serde_json::json;
use testbed::{wait_for, Lab, Netns};

const PORT: u16 = 17443;

fn node_obj(name: &str, ip: &str, control_plane: bool, ready: bool) -> serde_json::Value {
    let mut labels = json!({"kubernetes.io/hostname": name});
    if control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
    }
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                            "reason": "Test", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]
        }
    })
}

fn set(ips: &[&str]) -> BTreeSet<String> {
    ips.iter().map(|ip| format!("{ip}:{PORT}")).collect()
}

/// Waits until the backend map is `want`; returns how long it took since `t0`.
fn until_map(
    node: &Netns,
    want: &BTreeSet<String>,
    t0: Instant,
    what: &str,
    log: &dyn Fn() -> String,
) -> Duration {
    let got = wait_for(CONVERGE, || {
        (programmed(Dataplane::Nftables, node).as_ref() == Some(want)).then(|| t0.elapsed())
    });
    got.unwrap_or_else(|| {
        panic!(
            "{what}: backend map {:?}, want {want:?}\n{}",
            programmed(Dataplane::Nftables, node),
            log()
        )
    })
}

#[test]
fn backends_follow_the_control_plane_nodes() {
    let lab = Lab::new(1);
    let api = ApiServer::start(&lab.router);
    let node = &lab.nodes[0];
    let ips = ["10.80.0.1", "10.80.0.2", "10.80.0.3"];
    for ip in ips {
        node.sh(&format!("ip addr add {ip}/32 dev lo"));
    }
    let _servers: Vec<Backend> = ips
        .iter()
        .map(|ip| Backend::start(node, &format!("{ip}:{PORT}"), ip))
        .collect();
    let dir = workdir();
    let mut env = lb_common::lb_env(Dataplane::Nftables, &dir.join("state"));
    env.insert("bgp_peers".into(), "10.55.0.1:65000::false".into());
    env.insert("port".into(), PORT.to_string());
    env.insert("vip_nodename".into(), "node0".into());
    env.insert(
        "k8s_config_file".into(),
        api.kubeconfig().display().to_string(),
    );
    let nodes = "/api/v1/nodes";
    api.create(nodes, &node_obj("cp1", ips[0], true, true));
    api.create(nodes, &node_obj("cp2", ips[1], true, true));
    api.create(nodes, &node_obj("w1", ips[2], false, true));
    let mut vipr = Vipr::start(node, &env, &[], &dir.join("vipr.log"));
    let log = || vipr_log(&dir);
    until_map(
        node,
        &set(&ips[..2]),
        Instant::now(),
        "the two control-plane Nodes",
        &log,
    );

    let mut times = Vec::new();
    // A third control-plane Node joins.
    let t0 = Instant::now();
    api.create(nodes, &node_obj("cp3", ips[2], true, true));
    api.delete("/api/v1/nodes/w1");
    times.push((
        "Node added",
        until_map(node, &set(&ips), t0, "cp3 added", &log),
    ));
    // cp2 turns NotReady, then Ready again.
    let ready = |ok: bool| {
        json!({"status": {"conditions": [{"type": "Ready", "status": if ok { "True" } else { "False" },
            "reason": "Test", "lastHeartbeatTime": "2026-01-01T00:00:01Z",
            "lastTransitionTime": "2026-01-01T00:00:01Z"}]}})
    };
    let t0 = Instant::now();
    api.merge_patch("/api/v1/nodes/cp2/status", &ready(false));
    times.push((
        "Node NotReady",
        until_map(node, &set(&[ips[0], ips[2]]), t0, "cp2 NotReady", &log),
    ));
    let t0 = Instant::now();
    api.merge_patch("/api/v1/nodes/cp2/status", &ready(true));
    times.push((
        "Node Ready again",
        until_map(node, &set(&ips), t0, "cp2 Ready", &log),
    ));
    // cp3 loses its control-plane label; cp1 is deleted.
    let t0 = Instant::now();
    api.merge_patch(
        "/api/v1/nodes/cp3",
        &json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": null}}}),
    );
    times.push((
        "label removed",
        until_map(node, &set(&ips[..2]), t0, "cp3 unlabelled", &log),
    ));
    let t0 = Instant::now();
    api.delete("/api/v1/nodes/cp1");
    times.push((
        "Node deleted",
        until_map(node, &set(&[ips[1]]), t0, "cp1 deleted", &log),
    ));
    for (what, t) in &times {
        eprintln!("MEASURED lb nodes: {what} -> backend map updated in {t:?}");
    }

    vipr.signal(libc::SIGTERM);
    assert!(vipr.wait_exit(Duration::from_secs(10)).success());
    assert_eq!(
        programmed(Dataplane::Nftables, node),
        None,
        "vipr's table is gone"
    );
}

fn vipr_log(dir: &testbed::TempDir) -> String {
    std::fs::read_to_string(dir.join("vipr.log")).unwrap_or_default()
}
