//! vipr as its users run it: a real Kubernetes 1.20.2 cluster on this machine
//! (`labs/k8s/cluster.sh`): kube-apiserver, kube-controller-manager and kube-scheduler in the
//! lab's router namespace beside FRR, and three node namespaces each running containerd 1.6
//! (runc) and a kubelet registered as a Node. vipr runs from its OCI image (built from the
//! static binary with umoci, `labs/image-rootfs.sh` as the Dockerfile), deployed exactly as
//! `vipr manifest` renders it:
//!
//! - the kubeadm-style static pod on every node (BGP, health check on the node's own API
//!   endpoint 127.0.0.1:6443): the control-plane VIP reaches FRR over three paths; node1's
//!   endpoint gone, node1's path goes and comes back with it; the static pod rendered with
//!   graceful restart and upgraded node by node (its manifest rewritten with a new image tag)
//!   under a 10 ms ping: every vipr restarts in place, FRR keeps three paths, nothing lost;
//!   removing the manifests withdraws the VIP at once;
//! - `vipr manifest rbac` + `vipr manifest daemonset` with Services: the DaemonSet controller
//!   places a pod on each node, the pods run under their ServiceAccount (in-cluster config
//!   through the `kubernetes` Service), pass their probes, log the one-line start (read
//!   through the API, as `kubectl logs` does); a LoadBalancer Service gets its address from
//!   the pool and three paths at FRR, and answers pings;
//! - `kubectl delete pod` of one node's vipr: that node's path goes at once (SIGTERM
//!   withdraws), the VIP keeps answering (a 10 ms ping from the router), the DaemonSet brings
//!   the pod and the path back;
//! - `kubectl drain` of node1 (the DaemonSet pod stays, the node is cordoned): node1's path
//!   goes at once, the VIP keeps answering; `kubectl uncordon` brings it back;
//! - a rolling update of the DaemonSet to a new image tag under the same ping, graceful
//!   restart off (each node withdraws first); the DaemonSet rendered with graceful restart
//!   applied; `kubectl delete pod` still withdraws at once; a rolling update with graceful
//!   restart on: every vipr restarts in place, FRR keeps all three paths, the ping loses
//!   nothing; a template change whose `nodeSelector` leaves node2 out: node2's vipr is not
//!   replaced, so it withdraws at once and leaves no VIP (no restart in place);
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

use std::time::{Duration, Instant};

use cluster_common::*;
use daemon_common::*;
use k8s_common::*;
use serde_json::{json, Value};
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
    let pod_flags = [
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
    ];
    let pod = vipr_manifest(&pod_flags);
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

    // (a2) The static pod rendered with graceful restart (it names its manifest and mounts
    // the manifest directory read-only), then upgraded one node at a time as kubeadm-style
    // upgrades do it (the manifest rewritten with a new image tag) while the router pings
    // the control-plane VIP every 10 ms: each vipr finds its manifest changed at SIGTERM and
    // restarts in place, FRR keeps every path, the ping loses nothing.
    let image2 = IMAGE.replace(":1", ":2");
    let pod_gr = |image: &str| {
        let args: Vec<&str> = pod_flags
            .iter()
            .map(|f| if *f == IMAGE { image } else { f })
            .chain(["--vipr-graceful-restart", "true"])
            .collect();
        vipr_manifest(&args)
    };
    let image = |p: &Value| {
        p["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let manifest = |i: usize| c.node_dir(i).join("manifests/vipr.yaml");
    let rolled_to = |tag: &str, upto: usize| {
        wait_for(SLOW, || {
            let pods = c.vipr_pods();
            let on = |p: &Value, i: usize| p["spec"]["nodeName"] == format!("node{i}").as_str();
            (pods.len() == 3
                && (0..upto).all(|i| pods.iter().any(|p| on(p, i) && image(p) == tag))
                && c.ready_vipr_pods().len() == 3)
                .then_some(())
        })
    };
    for i in 0..3 {
        std::fs::write(manifest(i), pod_gr(IMAGE)).unwrap();
    }
    let gr_env = |p: &Value| {
        p["spec"]["containers"][0]["env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v["name"] == "vipr_static_pod_manifest"))
    };
    let ok = wait_for(SLOW, || {
        let pods = c.vipr_pods();
        (pods.len() == 3 && pods.iter().all(gr_env) && c.ready_vipr_pods().len() == 3).then_some(())
    });
    assert!(
        ok.is_some(),
        "static pods with graceful restart\n{}",
        c.logs()
    );
    c.wait_paths(&format!("{CP_VIP}/32"), 3, SLOW);
    let (took, up) = c.watched(CP_VIP, || {
        let t = Instant::now();
        for i in 0..3 {
            std::fs::write(manifest(i), pod_gr(&image2)).unwrap();
            let ok = rolled_to(&image2, i + 1);
            assert!(ok.is_some(), "node{i}'s static pod upgraded\n{}", c.logs());
            c.wait_paths(&format!("{CP_VIP}/32"), 3, SLOW);
        }
        t.elapsed()
    });
    eprintln!("static pod upgrade to {image2}, graceful restart on: done in {took:?}; {up:?}");
    c.assert_restarted_in_place("the static pod upgrade", &up);

    // The manifests removed (the static pods taken away, not replaced): a real stop, each
    // path withdrawn at once rather than kept for the 120 s restart time.
    let t = Instant::now();
    for i in 0..3 {
        std::fs::remove_file(manifest(i)).unwrap();
    }
    c.wait_paths(&format!("{CP_VIP}/32"), 0, Duration::from_secs(30));
    eprintln!(
        "static pods removed: all paths gone after {:?}",
        t.elapsed()
    );
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

    let prefix = format!("{ip}/32");
    let n = |i: usize| Lab::node_v4(i).to_string();

    // (c) `kubectl delete pod` of node1's vipr while the router pings the Service every
    // 10 ms: node1's path goes at once (SIGTERM withdraws), the VIP keeps answering, and
    // the DaemonSet brings the pod and the path back.
    let pod1 = c.pod_on("node1");
    let (gone, w) = c.watched(&ip, || {
        let t = Instant::now();
        c.api
            .delete(&format!("/api/v1/namespaces/kube-system/pods/{pod1}"));
        let gone = wait_for(Duration::from_secs(10), || {
            (!c.paths(&prefix).contains(&n(1))).then(|| t.elapsed())
        });
        let back = wait_for(SLOW, || {
            let p = c.ready_vipr_pods();
            (p.len() == 3 && !p.iter().any(|(_, n)| *n == pod1)).then_some(())
        });
        assert!(
            back.is_some(),
            "the DaemonSet did not replace {pod1}\n{}",
            c.logs()
        );
        c.wait_paths(&prefix, 3, SLOW);
        (gone, t.elapsed())
    });
    let (gone, back) = gone;
    let gone = gone.unwrap_or_else(|| panic!("node1's path stayed after its pod was deleted"));
    eprintln!("delete pod: node1's path gone after {gone:?}, back (new pod, its route at FRR) after {back:?}; {w:?}");
    assert!(w.sent > 50, "the pinger ran: {w:?}");
    assert!(w.lost * 10 < w.sent, "the VIP kept answering: {w:?}");

    // (c2) `kubectl drain` of node1 (its vipr is a DaemonSet pod, which drain leaves): the
    // node is cordoned and its vipr withdraws at once (vipr_withdraw_cordoned); uncordoned,
    // the path comes back.
    let (gone, w) = c.watched(&ip, || {
        let t = Instant::now();
        let (ok, out) = kubectl(
            &c.lab.router,
            &c.api,
            &["drain", "node1", "--ignore-daemonsets", "--timeout=60s"],
        );
        assert!(ok, "kubectl drain node1: {out}");
        let gone = wait_for(Duration::from_secs(10), || {
            (!c.paths(&prefix).contains(&n(1))).then(|| t.elapsed())
        });
        assert_eq!(c.paths(&prefix).len(), 2, "the other nodes stay");
        let (ok, out) = kubectl(&c.lab.router, &c.api, &["uncordon", "node1"]);
        assert!(ok, "kubectl uncordon node1: {out}");
        c.wait_paths(&prefix, 3, SLOW);
        gone
    });
    let gone =
        gone.unwrap_or_else(|| panic!("node1's path stayed after kubectl drain\n{}", c.logs()));
    eprintln!("kubectl drain node1: its path gone after {gone:?}; {w:?}");
    assert!(w.lost * 10 < w.sent, "the VIP kept answering: {w:?}");

    // (d) A rolling update of the DaemonSet to a new image tag (one node at a time, as the
    // rendered DaemonSet's default strategy does it), graceful restart off: each node
    // withdraws before its vipr stops, the router moves to the other two.
    let ds = "/apis/apps/v1/namespaces/kube-system/daemonsets/vipr";
    let set_image = |tag: &str| {
        // A strategic merge patch, as `kubectl set image` sends: the container list is
        // merged by name (a JSON merge patch would replace it).
        let (code, v) = c.api.request(
            "PATCH",
            ds,
            Some(&json!({"spec": {"template": {"spec": {"containers": [{"name": "vipr", "image": tag}]}}}})),
            "application/strategic-merge-patch+json",
        );
        assert_eq!(code, 200, "PATCH {ds}: {v:#}");
    };
    let (took, off) = c.watched(&ip, || {
        let t = Instant::now();
        set_image(&image2);
        c.wait_rolled("to vipr:2", |p| image(p) == image2);
        let took = t.elapsed();
        c.wait_paths(&prefix, 3, SLOW);
        took
    });
    eprintln!("rolling update to {image2}, graceful restart off: done in {took:?}; {off:?}");
    assert!(off.sent > 50, "the pinger ran: {off:?}");
    assert!(
        off.lost * 10 < off.sent,
        "the VIP kept answering through the update: {off:?}"
    );

    // (d2) The same DaemonSet rendered with graceful restart (it names itself to its pods,
    // and may read itself): applied, it rolls out.
    let gr = [&flags[..], &["--vipr-graceful-restart", "true"]].concat();
    let gr_image: Vec<&str> = gr
        .iter()
        .map(|f| if *f == IMAGE { image2.as_str() } else { f })
        .collect();
    c.apply(
        "rbac-gr.yaml",
        &vipr_manifest(&[&["rbac"][..], &gr_image].concat()),
    );
    c.apply(
        "ds-gr.yaml",
        &vipr_manifest(&[&["daemonset"][..], &gr_image].concat()),
    );
    let has_gr = |p: &Value| {
        p["spec"]["containers"][0]["env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v["name"] == "vipr_daemonset"))
    };
    c.wait_rolled("to graceful restart", has_gr);
    c.wait_paths(&prefix, 3, SLOW);

    // (c3) With graceful restart on, `kubectl delete pod` is still a real stop (the
    // DaemonSet's template is this pod's): withdrawn at once.
    let pod2 = c.pod_on("node2");
    let t = Instant::now();
    c.api
        .delete(&format!("/api/v1/namespaces/kube-system/pods/{pod2}"));
    let gone = wait_for(Duration::from_secs(10), || {
        (!c.paths(&prefix).contains(&n(2))).then(|| t.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "graceful restart on: node2's path stayed after kubectl delete pod\n{}",
            c.logs()
        )
    });
    eprintln!("graceful restart on, delete pod: node2's path gone after {gone:?}");
    c.wait_rolled("node2's pod back", |p| {
        p["metadata"]["name"] != pod2.as_str()
    });
    c.wait_paths(&prefix, 3, SLOW);

    // (d3) A rolling update with graceful restart on: each vipr of the old template sees
    // its DaemonSet moved on and restarts in place; FRR keeps every path and the ping loses
    // nothing.
    let (took, on) = c.watched(&ip, || {
        let t = Instant::now();
        set_image(IMAGE);
        c.wait_rolled("back to vipr:1", |p| image(p) == IMAGE);
        let took = t.elapsed();
        c.wait_paths(&prefix, 3, SLOW);
        took
    });
    eprintln!("rolling update to {IMAGE}, graceful restart on: done in {took:?}; {on:?}");
    c.assert_restarted_in_place("the rolling update", &on);

    // (d4) A template change that also takes the DaemonSet off node2 (a nodeSelector only
    // node0 and node1 match): the controller deletes node2's pod and starts none there, so
    // node2's vipr sees its DaemonSet moved on *without it*, withdraws at once and removes
    // its VIP (a restart in place would leave its route at FRR for the 120 s restart time
    // and its VIP on the node); node0 and node1 restart in place.
    let node2_has_vip = || {
        let n2 = &c.lab.nodes[2];
        let local = n2.sh("ip -4 route show table local");
        let addrs = n2.sh("ip -4 -o addr show");
        local.contains(&format!(" {ip} ")) || addrs.contains(&format!(" {ip}/"))
    };
    assert!(node2_has_vip(), "node2 serves the Service before");
    for i in [0, 1] {
        c.api.merge_patch(
            &format!("/api/v1/nodes/node{i}"),
            &json!({"metadata": {"labels": {"vipr.test/keep": "yes"}}}),
        );
    }
    let t = Instant::now();
    let (code, v) = c.api.request(
        "PATCH",
        ds,
        Some(&json!({"spec": {"template": {"spec": {"nodeSelector": {"vipr.test/keep": "yes"}}}}})),
        "application/strategic-merge-patch+json",
    );
    assert_eq!(code, 200, "PATCH {ds}: {v:#}");
    let gone = wait_for(Duration::from_secs(30), || {
        (!c.paths(&prefix).contains(&n(2))).then(|| t.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "node2's path stayed after the DaemonSet left node2 (restart in place?)\n{}",
            c.logs()
        )
    });
    eprintln!("DaemonSet moved off node2: node2's path gone after {gone:?}");
    assert!(
        wait_for(Duration::from_secs(10), || (!node2_has_vip()).then_some(())).is_some(),
        "node2 kept the Service VIP after its vipr stopped\n{}",
        c.logs()
    );
    let rolled = wait_for(SLOW, || {
        let pods = c.vipr_pods();
        let ready = c.ready_vipr_pods();
        (pods.len() == 2
            && pods
                .iter()
                .all(|p| p["spec"]["nodeSelector"]["vipr.test/keep"] == "yes")
            && ready.iter().map(|(n, _)| n.as_str()).eq(["node0", "node1"]))
        .then_some(())
    });
    assert!(
        rolled.is_some(),
        "node0 and node1 did not roll\n{}",
        c.logs()
    );
    c.wait_paths(&prefix, 2, SLOW);

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
