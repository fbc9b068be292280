//! The cluster of `tests/cluster_k8s.rs`: a real Kubernetes 1.20.2 cluster in the lab's
//! namespaces (`labs/k8s/cluster.sh`): FRR, kube-apiserver + etcd, controller-manager and
//! scheduler in the router namespace, containerd + kubelet in each node namespace, and
//! helpers to read it (Ready nodes, vipr's pods, FRR's paths, logs for a failed assertion,
//! pings from the router). `Drop` stops every node (processes and cgroups) before the API
//! server, FRR, the directory and the namespaces go, also when the test panics.

#![allow(dead_code)] // helpers for one test binary

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testbed::{wait_for, Frr, Lab, TempDir};

use crate::daemon_common::*;
use crate::k8s_common::*;

/// Pods start in seconds; the first start of a node (containerd, kubelet, Node Ready) in
/// tens of seconds on a busy machine: wide margins, polled.
pub const SLOW: Duration = Duration::from_secs(120);

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/labs/k8s/cluster.sh")
}

pub fn run(args: &[&str]) -> String {
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
pub fn static_vipr(dir: &Path) -> PathBuf {
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
pub struct Cluster {
    pub api: ApiServer,
    pub frr: Frr,
    pub dir: TempDir,
    pub lab: Lab,
}

impl Cluster {
    pub fn start(images: &[PathBuf]) -> Cluster {
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
    pub fn relay(&self, i: usize) {
        let api_dir = self.api.kubeconfig().parent().unwrap().to_path_buf();
        run(&[
            "api-relay",
            api_dir.to_str().unwrap(),
            self.node_dir(i).to_str().unwrap(),
            &self.lab.nodes[i].name,
        ]);
    }

    /// The nodes whose eth0 holds `ip`.
    pub fn holders(&self, ip: &str) -> Vec<usize> {
        (0..3)
            .filter(|&i| {
                self.lab.nodes[i]
                    .sh("ip -4 -o addr show dev eth0")
                    .contains(&format!(" {ip}/"))
            })
            .collect()
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(&format!("node{i}"))
    }

    pub fn ready_nodes(&self) -> Vec<String> {
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
    pub fn vipr_pods(&self) -> Vec<Value> {
        self.api
            .get(
                "/api/v1/namespaces/kube-system/pods?labelSelector=app.kubernetes.io%2Fname%3Dvipr",
            )
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// (node name, pod name) of the vipr pods that are Running and Ready.
    pub fn ready_vipr_pods(&self) -> Vec<(String, String)> {
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

    pub fn paths(&self, prefix: &str) -> Vec<String> {
        frr_rib_nexthops(&self.frr, prefix)
    }

    pub fn wait_paths(&self, prefix: &str, n: usize, within: Duration) {
        let ok = wait_for(within, || (self.paths(prefix).len() == n).then_some(()));
        assert!(
            ok.is_some(),
            "{n} paths to {prefix} at FRR, have {:?}\n{}",
            self.paths(prefix),
            self.logs()
        );
    }

    /// `kubectl apply -f -` of `yaml` as admin.
    pub fn apply(&self, name: &str, yaml: &str) {
        let f = self.dir.write(name, yaml);
        let (ok, out) = kubectl(
            &self.lab.router,
            &self.api,
            &["apply", "-f", f.to_str().unwrap()],
        );
        assert!(ok, "kubectl apply {name}: {out}");
    }

    /// What went wrong, for a failed assertion: pods, kubelet and containerd log tails.
    pub fn logs(&self) -> String {
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
    pub fn ping_once(&self, ip: &str) -> bool {
        let out = self.lab.router.run(&["ping", "-c", "1", "-W", "1", ip]);
        out.status.success()
    }

    /// Pings from the router to `ip` every 10 ms until `stop` is set: (sent, lost), where
    /// lost counts the requests without a reply up to the last one answered (the one in
    /// flight when ping is stopped is not a loss).
    pub fn ping(&self, ip: &str, stop: &AtomicBool) -> (u32, u32) {
        let child = self
            .lab
            .router
            .command(&["ping", "-n", "-i", "0.01", "-W", "1", "-w", "600", ip])
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
        let sent: u32 = text
            .lines()
            .find(|l| l.contains("transmitted"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let answered: std::collections::BTreeSet<u32> = text
            .lines()
            .filter(|l| l.contains("bytes from"))
            .filter_map(|l| {
                l.split("icmp_seq=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        let last = answered.iter().next_back().copied().unwrap_or(sent);
        (sent, last - answered.len() as u32)
    }

    /// Runs `f` while the router pings `ip` every 10 ms and FRR's paths to `ip/32` are
    /// sampled: what it returned, and what the ping and the samples saw.
    pub fn watched<T>(&self, ip: &str, f: impl FnOnce() -> T) -> (T, Watched) {
        let stop = AtomicBool::new(false);
        let prefix = format!("{ip}/32");
        std::thread::scope(|s| {
            let pinger = s.spawn(|| self.ping(ip, &stop));
            let sampler = s.spawn(|| {
                let mut fewest = usize::MAX;
                while !stop.load(Ordering::SeqCst) {
                    fewest = fewest.min(self.paths(&prefix).len());
                    std::thread::sleep(Duration::from_millis(50));
                }
                fewest
            });
            let _stop = StopOnDrop(&stop);
            let ok = wait_for(SLOW, || self.ping_once(ip).then_some(()));
            assert!(ok.is_some(), "{ip} does not answer pings\n{}", self.logs());
            let out = f();
            stop.store(true, Ordering::SeqCst);
            let (sent, lost) = pinger.join().expect("ping thread");
            let fewest_paths = sampler.join().expect("sampler thread");
            (
                out,
                Watched {
                    sent,
                    lost,
                    fewest_paths,
                },
            )
        })
    }

    /// After `what` with graceful restart on: every vipr now running followed a restart in
    /// place (its log says so), FRR kept all three paths and the ping lost nothing.
    pub fn assert_restarted_in_place(&self, what: &str, w: &Watched) {
        for (node, pod) in self.ready_vipr_pods() {
            let (ok, log) = kubectl(
                &self.lab.router,
                &self.api,
                &["-n", "kube-system", "logs", &pod],
            );
            assert!(ok, "kubectl logs {pod}: {log}");
            assert!(
                log.contains("restarted in place"),
                "{what}: {node}'s vipr did not follow a restart in place:\n{log}"
            );
        }
        assert!(w.sent > 50, "{what}: the pinger ran: {w:?}");
        assert_eq!(w.fewest_paths, 3, "{what}: FRR kept every path: {w:?}");
        assert_eq!(w.lost, 0, "{what}: the VIP lost nothing: {w:?}");
    }

    /// The one vipr pod of the DaemonSet on `node`.
    pub fn pod_on(&self, node: &str) -> String {
        self.ready_vipr_pods()
            .into_iter()
            .find(|(n, _)| n == node)
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("no ready vipr pod on {node}\n{}", self.logs()))
    }

    /// Waits until the DaemonSet's three pods are ready and all satisfy `new`.
    pub fn wait_rolled(&self, what: &str, new: impl Fn(&Value) -> bool) {
        let ok = wait_for(SLOW, || {
            let pods = self.vipr_pods();
            (pods.len() == 3 && pods.iter().all(&new) && self.ready_vipr_pods().len() == 3)
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "{what}: the rollout did not finish\n{}",
            self.logs()
        );
    }
}

/// What a 10 ms ping from the router and FRR's paths showed while something happened.
#[derive(Debug)]
pub struct Watched {
    /// Pings sent.
    pub sent: u32,
    /// Pings without a reply (before the last one answered).
    pub lost: u32,
    /// The fewest paths to the VIP FRR had in any sample (every 50 ms).
    pub fewest_paths: usize,
}

/// Sets the flag when dropped, so a pinger thread ends also when an assertion fails.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

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
