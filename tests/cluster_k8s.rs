//! vipr as its users run it: a real Kubernetes 1.20.2 cluster on this machine
//! (`labs/k8s/cluster.sh`): kube-apiserver, kube-controller-manager and kube-scheduler in the
//! lab's router namespace beside FRR, and three node namespaces each running containerd 1.6
//! (runc) and a kubelet registered as a Node. vipr runs from its OCI image (built from the
//! static binary with umoci, `labs/image-rootfs.sh` as the Dockerfile), deployed exactly as
//! `vipr manifest` renders it:
//!
//! - the kubeadm-style static pod on every node (BGP, health check on the node's own API
//!   endpoint 127.0.0.1:6443): the control-plane VIP reaches FRR over three paths; node1's
//!   endpoint gone, node1's path goes and comes back with it; removing the manifests
//!   withdraws the VIP;
//! - `vipr manifest rbac` + `vipr manifest daemonset` with Services: the DaemonSet controller
//!   places a pod on each node, the pods run under their ServiceAccount (in-cluster config
//!   through the `kubernetes` Service), pass their probes, log the one-line start (read
//!   through the API, as `kubectl logs` does); a LoadBalancer Service gets its address from
//!   the pool and three paths at FRR, and answers pings;
//! - `kubectl delete pod` of one node's vipr: that node's path goes at once (SIGTERM
//!   withdraws), the VIP keeps answering (a 10 ms ping from the router), the DaemonSet brings
//!   the pod and the path back;
//! - a rolling update of the DaemonSet to a new image tag under the same ping;
//! - ARP mode as a static pod on every node: one holder of the VIP (Lease through admin.conf
//!   and the node's API endpoint), the router reaches it; the holder's static pod removed,
//!   another node takes over.
//!
//! ```text
//!   router ns: FRR AS 65000, kube-apiserver + etcd, controller-manager, scheduler (10.55.0.1)
//!       |            |            |
//!   node0 ns      node1 ns     node2 ns     containerd + kubelet each (10.55.0.11-13)
//! ```
//!
//! The cluster and its helpers are `tests/cluster_common`. Everything is stopped and removed
//! on every exit (the nodes' processes and cgroups, then the namespaces), also when an
//! assertion fails.

mod cluster_common;
mod daemon_common;
mod k8s_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster_common::*;
use daemon_common::*;
use k8s_common::*;
use serde_json::json;
use testbed::{wait_for, Lab};

const CP_VIP: &str = "192.0.2.10";
const ARP_VIP: &str = "10.55.0.200";
const POOL: &str = "198.51.100.32/29";
const IMAGE: &str = "docker.io/library/vipr:1";
#[test]
fn vipr_in_a_real_cluster() {
    let tmp = workdir();
    let t0 = Instant::now();
    let bin = static_vipr(tmp.path.as_path());
    let out = run(&[
        "image",
        bin.to_str().unwrap(),
        "1",
        tmp.path.to_str().unwrap(),
    ]);
    eprintln!("image: {} (built in {:?})", out.trim(), t0.elapsed());
    // The same binary under a second tag, for the rolling update.
    run(&[
        "image",
        bin.to_str().unwrap(),
        "2",
        tmp.path.to_str().unwrap(),
    ]);
    let c = Cluster::start(&[
        tmp.join("pause.tar"),
        tmp.join("vipr-1.tar"),
        tmp.join("vipr-2.tar"),
    ]);

    // (a) The kubeadm-style static pod on every node, rendered once, copied as is.
    let pod = vipr_manifest(&[
        "pod",
        "--vip",
        CP_VIP,
        "--controlplane",
        "--bgp",
        "--localAS",
        "65001",
        "--bgppeers",
        "10.55.0.1:65000::false",
        "--control-plane-health-check-address",
        "https://127.0.0.1:6443/livez",
        "--control-plane-health-check-period-seconds",
        "1",
        "--control-plane-health-check-failure-threshold",
        "2",
        "--image",
        IMAGE,
    ]);
    let t1 = Instant::now();
    for i in 0..3 {
        std::fs::write(c.node_dir(i).join("manifests/vipr.yaml"), &pod).unwrap();
    }
    c.wait_paths(&format!("{CP_VIP}/32"), 3, SLOW);
    eprintln!(
        "static pods: 3 paths to {CP_VIP} at FRR {:?} after the manifests",
        t1.elapsed()
    );
    let ok = wait_for(SLOW, || (c.ready_vipr_pods().len() == 3).then_some(()));
    assert!(ok.is_some(), "3 ready mirror pods\n{}", c.logs());
    // The health check gates each node on its own API endpoint (127.0.0.1:6443): node1's
    // goes, node1's path goes; it comes back, the path comes back.
    let t = Instant::now();
    run(&["api-relay-stop", c.node_dir(1).to_str().unwrap()]);
    let n1 = Lab::node_v4(1).to_string();
    let ok = wait_for(SLOW, || {
        (!c.paths(&format!("{CP_VIP}/32")).contains(&n1)).then(|| t.elapsed())
    });
    let took =
        ok.unwrap_or_else(|| panic!("node1's path stayed without its API endpoint\n{}", c.logs()));
    eprintln!("health check: node1's API endpoint gone, its path gone {took:?} later");
    assert_eq!(
        c.paths(&format!("{CP_VIP}/32")).len(),
        2,
        "the other nodes stay"
    );
    c.relay(1);
    c.wait_paths(&format!("{CP_VIP}/32"), 3, SLOW);
    for i in 0..3 {
        std::fs::remove_file(c.node_dir(i).join("manifests/vipr.yaml")).unwrap();
    }
    c.wait_paths(&format!("{CP_VIP}/32"), 0, SLOW);
    let ok = wait_for(SLOW, || c.vipr_pods().is_empty().then_some(()));
    assert!(ok.is_some(), "mirror pods gone\n{}", c.logs());

    // (b) RBAC + DaemonSet with Services, the Service address from a pool.
    let flags = [
        "--services",
        "--bgp",
        "--localAS",
        "65001",
        "--bgppeers",
        "10.55.0.1:65000::false",
        "--vipr-pools",
        POOL,
        "--image",
        IMAGE,
    ];
    c.apply(
        "rbac.yaml",
        &vipr_manifest(&[&["rbac"][..], &flags].concat()),
    );
    let t2 = Instant::now();
    c.apply(
        "ds.yaml",
        &vipr_manifest(&[&["daemonset"][..], &flags].concat()),
    );
    let ok = wait_for(SLOW, || (c.ready_vipr_pods().len() == 3).then_some(()));
    assert!(ok.is_some(), "3 ready DaemonSet pods\n{}", c.logs());
    eprintln!("DaemonSet: 3 ready pods after {:?}", t2.elapsed());
    let pods = c.ready_vipr_pods();
    let nodes: Vec<&str> = pods.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes, ["node0", "node1", "node2"], "one pod per node");
    for p in c.vipr_pods() {
        assert_eq!(p["spec"]["serviceAccountName"], "vipr", "{p:#}");
        let name = p["metadata"]["name"].as_str().unwrap();
        let (ok, log) = kubectl(&c.lab.router, &c.api, &["-n", "kube-system", "logs", name]);
        assert!(ok, "kubectl logs {name}: {log}");
        let first = log.lines().next().unwrap_or("");
        assert!(
            first.contains("vipr starting"),
            "{name}'s first line: {log}"
        );
        assert_eq!(forbidden(&log), 0, "{name} was refused by the API: {log}");
    }
    // The Service selects the vipr pods themselves (host network: the endpoints are the
    // nodes' addresses, ready while the pods pass their readiness probes).
    let svc = "/api/v1/namespaces/kube-system/services";
    c.api.create(
        svc,
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "kube-system"},
            "spec": {"type": "LoadBalancer", "selector": {"app.kubernetes.io/name": "vipr"},
                     "ports": [{"port": 2112}]},
        }),
    );
    let t3 = Instant::now();
    let ip = wait_for(SLOW, || {
        c.api
            .get(&format!("{svc}/web"))
            .and_then(|s| ingress_of(&s).first().cloned())
    })
    .unwrap_or_else(|| panic!("the Service got no address\n{}", c.logs()));
    let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        ip.starts_with("198.51.100.") && (32..40).contains(&last),
        "{ip} not from {POOL}"
    );
    c.wait_paths(&format!("{ip}/32"), 3, SLOW);
    eprintln!(
        "Service {ip}: 3 paths at FRR {:?} after it was created",
        t3.elapsed()
    );

    // (c) `kubectl delete pod` of node1's vipr while the router pings the Service every
    // 10 ms: node1's path goes at once (SIGTERM withdraws), the VIP keeps answering, and
    // the DaemonSet brings the pod and the path back.
    let stop = AtomicBool::new(false);
    let (sent, received, gone) = std::thread::scope(|s| {
        let pinger = s.spawn(|| c.ping(&ip, &stop));
        let _stop = StopOnDrop(&stop);
        let ok = wait_for(SLOW, || c.ping_once(&ip).then_some(()));
        assert!(ok.is_some(), "{ip} does not answer pings\n{}", c.logs());
        let (_, pod1) = pods.iter().find(|(n, _)| n == "node1").unwrap();
        let t = Instant::now();
        c.api
            .delete(&format!("/api/v1/namespaces/kube-system/pods/{pod1}"));
        let gone = wait_for(Duration::from_secs(10), || {
            (!c.paths(&format!("{ip}/32"))
                .contains(&Lab::node_v4(1).to_string()))
            .then(|| t.elapsed())
        });
        let back = wait_for(SLOW, || {
            let p = c.ready_vipr_pods();
            (p.len() == 3 && !p.iter().any(|(_, n)| n == pod1)).then_some(())
        });
        assert!(
            back.is_some(),
            "the DaemonSet did not replace {pod1}\n{}",
            c.logs()
        );
        c.wait_paths(&format!("{ip}/32"), 3, SLOW);
        assert!(c.ping_once(&ip), "{ip} answers after the pod came back");
        stop.store(true, Ordering::SeqCst);
        let (sent, received) = pinger.join().expect("ping thread");
        (sent, received, gone)
    });
    let gone = gone.unwrap_or_else(|| panic!("node1's path stayed after its pod was deleted"));
    eprintln!(
        "delete pod: node1's path gone after {gone:?}; ping every 10 ms: {sent} sent, {} lost",
        sent - received
    );
    assert!(sent > 50, "the pinger ran: {sent} sent");
    assert!(
        (sent - received) * 10 < sent,
        "the VIP kept answering: {received} of {sent} pings answered"
    );

    // (d) A rolling update of the DaemonSet to a new image tag (one node at a time, as the
    // rendered DaemonSet's default strategy does it) while the router pings every 10 ms.
    let ds = "/apis/apps/v1/namespaces/kube-system/daemonsets/vipr";
    let image2 = IMAGE.replace(":1", ":2");
    let stop = AtomicBool::new(false);
    let (sent, received, took) = std::thread::scope(|s| {
        let pinger = s.spawn(|| c.ping(&ip, &stop));
        let _stop = StopOnDrop(&stop);
        let t = Instant::now();
        // A strategic merge patch, as `kubectl set image` sends: the container list is
        // merged by name (a JSON merge patch would replace it).
        let (code, v) = c.api.request(
            "PATCH",
            ds,
            Some(&json!({"spec": {"template": {"spec": {"containers": [{"name": "vipr", "image": image2}]}}}})),
            "application/strategic-merge-patch+json",
        );
        assert_eq!(code, 200, "PATCH {ds}: {v:#}");
        let updated = wait_for(SLOW, || {
            let on_new = c
                .vipr_pods()
                .iter()
                .filter(|p| p["spec"]["containers"][0]["image"] == image2.as_str())
                .count();
            (on_new == 3 && c.ready_vipr_pods().len() == 3).then_some(())
        });
        assert!(
            updated.is_some(),
            "the rolling update did not finish\n{}",
            c.logs()
        );
        let took = t.elapsed();
        c.wait_paths(&format!("{ip}/32"), 3, SLOW);
        stop.store(true, Ordering::SeqCst);
        let (sent, received) = pinger.join().expect("ping thread");
        (sent, received, took)
    });
    eprintln!(
        "rolling update to {image2}: done in {took:?}; ping every 10 ms: {sent} sent, {} lost",
        sent - received
    );
    assert!(sent > 50, "the pinger ran: {sent} sent");
    assert!(
        (sent - received) * 10 < sent,
        "the VIP kept answering through the update: {received} of {sent} pings answered"
    );

    // (e) ARP mode as a static pod: the DaemonSet goes, the same pod manifest in ARP mode on
    // every node; one holder (Lease), the router reaches the VIP; the holder's static pod
    // removed (as kubeadm stops one), another node takes over.
    c.api.delete(ds);
    let ok = wait_for(SLOW, || c.vipr_pods().is_empty().then_some(()));
    assert!(ok.is_some(), "the DaemonSet's pods are gone\n{}", c.logs());
    let arp = vipr_manifest(&[
        "pod",
        "--vip",
        ARP_VIP,
        "--controlplane",
        "--arp",
        "--interface",
        "eth0",
        "--leaderElection",
        "--image",
        IMAGE,
    ]);
    for i in 0..3 {
        std::fs::write(c.node_dir(i).join("manifests/vipr.yaml"), &arp).unwrap();
    }
    let first = wait_for(SLOW, || match c.holders(ARP_VIP)[..] {
        [h] => c.ping_once(ARP_VIP).then_some(h),
        _ => None,
    })
    .unwrap_or_else(|| {
        panic!(
            "one holder of {ARP_VIP}: {:?}\n{}",
            c.holders(ARP_VIP),
            c.logs()
        )
    });
    let ok = wait_for(SLOW, || (c.ready_vipr_pods().len() == 3).then_some(()));
    assert!(ok.is_some(), "3 ready ARP pods\n{}", c.logs());
    assert_eq!(c.holders(ARP_VIP), [first], "still one holder");
    let t = Instant::now();
    std::fs::remove_file(c.node_dir(first).join("manifests/vipr.yaml")).unwrap();
    let next = wait_for(SLOW, || match c.holders(ARP_VIP)[..] {
        [h] if h != first => c.ping_once(ARP_VIP).then_some(h),
        _ => None,
    })
    .unwrap_or_else(|| {
        panic!(
            "no takeover from node{first}: {:?}\n{}",
            c.holders(ARP_VIP),
            c.logs()
        )
    });
    eprintln!(
        "ARP: node{first} held {ARP_VIP}; its static pod removed, node{next} holds it and answers {:?} later",
        t.elapsed()
    );
}
