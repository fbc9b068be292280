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
//! Everything is stopped and removed on every exit (the nodes' processes and cgroups, then
//! the namespaces), also when an assertion fails.

mod daemon_common;
mod k8s_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use daemon_common::*;
use k8s_common::*;
use serde_json::{json, Value};
use testbed::{wait_for, Frr, Lab, TempDir};

const CP_VIP: &str = "192.0.2.10";
const ARP_VIP: &str = "10.55.0.200";
const POOL: &str = "198.51.100.32/29";
const IMAGE: &str = "docker.io/library/vipr:1";
/// Pods start in seconds; the first start of a node (containerd, kubelet, Node Ready) in
/// tens of seconds on a busy machine: wide margins, polled.
const SLOW: Duration = Duration::from_secs(120);

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/labs/k8s/cluster.sh")
}

fn run(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .expect("run labs/k8s/cluster.sh");
    assert!(
        out.status.success(),
        "cluster.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The static vipr of the image: the test binary's own vipr, linked statically the way
/// `labs/image-check.sh --fast` does it, unless `VIPR_IMAGE_BIN` names one.
fn static_vipr(dir: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("VIPR_IMAGE_BIN") {
        return PathBuf::from(p);
    }
    let relink = |static_: bool| {
        let mut c = Command::new(env!("CARGO"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["rustc", "--locked", "-q", "-p", "vipr", "--bin", "vipr"]);
        if static_ {
            c.args(["--", "-C", "target-feature=+crt-static"]);
        }
        let st = c.status().expect("cargo rustc");
        assert!(st.success(), "cargo rustc (static: {static_}) failed");
    };
    relink(true);
    // Without symbols, as the release profile builds it (strip = "symbols").
    let p = dir.join("vipr-static");
    let st = Command::new("strip")
        .args(["-o", p.to_str().unwrap(), vipr_bin()])
        .status()
        .expect("strip");
    assert!(st.success(), "strip the static vipr");
    relink(false); // leave target/debug/vipr as the other tests expect it
    p
}

/// The cluster. Fields drop in order after `Drop::drop` stopped the nodes: the API server,
/// FRR, the directory, then the namespaces.
struct Cluster {
    api: ApiServer,
    frr: Frr,
    dir: TempDir,
    lab: Lab,
}

impl Cluster {
    fn start(images: &[PathBuf]) -> Cluster {
        let t0 = Instant::now();
        let lab = Lab::new(3);
        let peers: Vec<String> = (0..3).map(|i| Lab::node_v4(i).to_string()).collect();
        let frr = Frr::start(&lab.router, &frr_router_conf("10.55.0.1", &peers));
        let api = ApiServer::start(&lab.router);
        let dir = TempDir::new("cluster");
        let c = Cluster { api, frr, dir, lab };
        let api_dir = c.api.kubeconfig().parent().unwrap().to_path_buf();
        run(&["control", api_dir.to_str().unwrap(), &c.lab.router.name]);
        for i in 0..3 {
            let d = c.node_dir(i);
            run(&[
                "node",
                api_dir.to_str().unwrap(),
                d.to_str().unwrap(),
                &c.lab.nodes[i].name,
                &format!("node{i}"),
                &Lab::node_v4(i).to_string(),
            ]);
            for img in images {
                run(&["load", d.to_str().unwrap(), img.to_str().unwrap()]);
            }
        }
        let ok = wait_for(SLOW, || (c.ready_nodes().len() == 3).then_some(()));
        assert!(
            ok.is_some(),
            "3 Ready nodes: {:?}\n{}",
            c.ready_nodes(),
            c.logs()
        );
        for i in 0..3 {
            c.api.merge_patch(
                &format!("/api/v1/nodes/node{i}"),
                &json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": ""}}}),
            );
        }
        eprintln!("cluster: 3 Ready nodes after {:?}", t0.elapsed());
        c
    }

    /// (Re)start node `i`'s API endpoint 127.0.0.1:6443.
    fn relay(&self, i: usize) {
        let api_dir = self.api.kubeconfig().parent().unwrap().to_path_buf();
        run(&[
            "api-relay",
            api_dir.to_str().unwrap(),
            self.node_dir(i).to_str().unwrap(),
            &self.lab.nodes[i].name,
        ]);
    }

    /// The nodes whose eth0 holds `ip`.
    fn holders(&self, ip: &str) -> Vec<usize> {
        (0..3)
            .filter(|&i| {
                self.lab.nodes[i]
                    .sh("ip -4 -o addr show dev eth0")
                    .contains(&format!(" {ip}/"))
            })
            .collect()
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(&format!("node{i}"))
    }

    fn ready_nodes(&self) -> Vec<String> {
        let list = self.api.get("/api/v1/nodes").unwrap_or(Value::Null);
        let mut out = Vec::new();
        for n in list["items"].as_array().into_iter().flatten() {
            let ready = n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if ready {
                out.push(n["metadata"]["name"].as_str().unwrap_or("").to_string());
            }
        }
        out
    }

    /// The pods in kube-system with label app.kubernetes.io/name=vipr.
    fn vipr_pods(&self) -> Vec<Value> {
        self.api
            .get(
                "/api/v1/namespaces/kube-system/pods?labelSelector=app.kubernetes.io%2Fname%3Dvipr",
            )
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// (node name, pod name) of the vipr pods that are Running and Ready.
    fn ready_vipr_pods(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .vipr_pods()
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["phase"] == "Running"
                    && p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .map(|p| {
                (
                    p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                    p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn paths(&self, prefix: &str) -> Vec<String> {
        frr_rib_nexthops(&self.frr, prefix)
    }

    fn wait_paths(&self, prefix: &str, n: usize, within: Duration) {
        let ok = wait_for(within, || (self.paths(prefix).len() == n).then_some(()));
        assert!(
            ok.is_some(),
            "{n} paths to {prefix} at FRR, have {:?}\n{}",
            self.paths(prefix),
            self.logs()
        );
    }

    /// `kubectl apply -f -` of `yaml` as admin.
    fn apply(&self, name: &str, yaml: &str) {
        let f = self.dir.write(name, yaml);
        let (ok, out) = kubectl(
            &self.lab.router,
            &self.api,
            &["apply", "-f", f.to_str().unwrap()],
        );
        assert!(ok, "kubectl apply {name}: {out}");
    }

    /// What went wrong, for a failed assertion: pods, kubelet and containerd log tails.
    fn logs(&self) -> String {
        let mut s = format!(
            "pods: {:#}\n",
            json!(self
                .vipr_pods()
                .iter()
                .map(|p| json!([
                    p["metadata"]["name"],
                    p["spec"]["nodeName"],
                    p["status"]["phase"],
                    p["status"]["containerStatuses"]
                ]))
                .collect::<Vec<_>>())
        );
        for i in 0..3 {
            let pods = self.node_dir(i).join("fs/pods");
            let mut files = vec!["kubelet.log".to_string(), "containerd.log".to_string()];
            for d in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
                for f in std::fs::read_dir(d.path().join("vipr"))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    files.push(f.path().display().to_string());
                }
            }
            for f in &files {
                let text = std::fs::read_to_string(self.node_dir(i).join(f)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let head = lines.len().min(4);
                let tail = lines[..head].join("\n")
                    + "\n...\n"
                    + &lines[lines.len().saturating_sub(12).max(head)..].join("\n");
                s.push_str(&format!("--- node{i} {f}\n{tail}\n"));
            }
        }
        s
    }

    /// One ping from the router to `ip`, answered within a second.
    fn ping_once(&self, ip: &str) -> bool {
        let out = self.lab.router.run(&["ping", "-c", "1", "-W", "1", ip]);
        out.status.success()
    }

    /// Pings from the router to `ip` every 10 ms until `stop` is set; (sent, received).
    fn ping(&self, ip: &str, stop: &AtomicBool) -> (u32, u32) {
        let child = self
            .lab
            .router
            .command(&["ping", "-i", "0.01", "-W", "1", "-w", "600", "-q", ip])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("ping");
        let pid = child.id() as i32;
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: plain kill(2) of our own child; SIGINT makes ping print its summary.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let text =
            String::from_utf8_lossy(&child.wait_with_output().expect("ping").stdout).into_owned();
        let nums: Vec<u32> = text
            .lines()
            .find(|l| l.contains("transmitted"))
            .map(|l| {
                l.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|w| w.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        (
            nums.first().copied().unwrap_or(0),
            nums.get(1).copied().unwrap_or(0),
        )
    }
}

/// Sets the flag when dropped, so a pinger thread ends also when an assertion fails.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for i in 0..3 {
            let d = self.node_dir(i);
            let _ = Command::new(script())
                .args(["stop-node", d.to_str().unwrap(), &self.lab.nodes[i].name])
                .output();
        }
    }
}

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
