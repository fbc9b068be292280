//! Migration from kube-vip, end to end: vipr runs the manifests kube-vip v1.2.3's generator
//! prints for its documented setups (`tests/fixtures/kube-vip`, whose README names each
//! command and page) with their container environment unchanged, against a real
//! kube-apiserver 1.20.2 and, for BGP, a real FRR; and it contends for the control-plane
//! Lease with client-go's own leader election configured as kube-vip configures it
//! (`labs/k8s/elector`), which is the code a node still running kube-vip runs.
//!
//! - `arp_static_pod_shares_the_lease_with_kube_vip` (the ARP static pod; the k3s DaemonSet
//!   carries the same environment, checked): while a kube-vip node holds `plndr-cp-lock`, no
//!   vipr node takes the VIP, for longer than the lease duration; after kill -9 of that node
//!   one vipr node takes it; a kube-vip node started then sees vipr's node as the leader and
//!   does not lead while vipr renews; when the vipr nodes stop (SIGTERM releases the Lease)
//!   the kube-vip node leads. At no sample do two nodes hold the VIP, nor a vipr node while
//!   kube-vip leads.
//! - `bgp_static_pod_announces_from_every_node`: the BGP static pod on three nodes gives the
//!   control-plane VIP and a Service's address three paths at FRR (iBGP, AS 65000, as
//!   documented).
//! - `services_election_daemonset_spreads_services`: the per-Service election DaemonSet puts
//!   each Service's address on exactly one node.
//!
//! Each run must warn once for each setting of the manifest vipr does not implement, and
//! for nothing else: for these manifests, nothing.

mod daemon_common;
mod k8s_common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use daemon_common::*;
use k8s_common::*;
use serde_json::{json, Value};
use testbed::{Frr, Lab, Netns, Proc, TempDir};

/// A kube-vip manifest of `tests/fixtures/kube-vip`.
fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/kube-vip/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The container environment the kubelet would give the manifest's container on `node`:
/// values as strings, an entry without a value as the empty string, the `spec.nodeName`
/// field reference as `node`.
fn container_env(m: &Value, node: &str) -> BTreeMap<String, String> {
    let spec = if m["kind"] == "DaemonSet" {
        &m["spec"]["template"]["spec"]
    } else {
        &m["spec"]
    };
    let mut env = BTreeMap::new();
    for e in spec["containers"][0]["env"].as_array().expect("env") {
        let name = e["name"].as_str().expect("env name").to_string();
        let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Value::String(s), _) => s.clone(),
            (Value::Null, Value::String(f)) if f == "spec.nodeName" => node.to_string(),
            (Value::Null, Value::Null) => String::new(),
            (v, f) => panic!("env {name}: unexpected value {v} / fieldRef {f}"),
        };
        env.insert(name, value);
    }
    env
}

/// [`container_env`] plus what the lab must add: the test's kubeconfig (the pods mount the
/// host's admin.conf or use the in-cluster token) and a state directory.
fn lab_env(m: &Value, node: &str, dir: &TempDir, kubeconfig: &Path) -> BTreeMap<String, String> {
    let mut env = container_env(m, node);
    env.insert("k8s_config_file".into(), path_str(kubeconfig));
    env.insert("vipr_state_dir".into(), path_str(&dir.join("state")));
    env
}

/// vipr on each node of `lab` with `m`'s environment (node names `node0`…), logging into
/// `dirs[i]/vipr.log`.
fn start_nodes(lab: &Lab, m: &Value, dirs: &[TempDir], kubeconfig: &Path) -> Vec<Vipr> {
    (0..lab.nodes.len())
        .map(|i| {
            let env = lab_env(m, &format!("node{i}"), &dirs[i], kubeconfig);
            Vipr::start(&lab.nodes[i], &env, &[], &dirs[i].join("vipr.log"))
        })
        .collect()
}

/// Every node's log so far.
fn logs(dirs: &[TempDir]) -> Vec<String> {
    dirs.iter()
        .map(|d| std::fs::read_to_string(d.join("vipr.log")).unwrap_or_default())
        .collect()
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// The settings vipr's log names as ignored (`NAME="value": reason; this setting is
/// ignored`), in order.
fn ignored_settings(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("this setting is ignored"))
        .filter_map(|l| {
            let eq = l.find("=\"")?;
            let start = l[..eq].rfind(' ').map_or(0, |i| i + 1);
            Some(l[start..eq].to_string())
        })
        .collect()
}

/// Every vipr run warned once for each of `want` (sorted) and for nothing else; each named
/// setting is one the manifest sets.
fn assert_warnings(logs: &[String], manifest_env: &BTreeMap<String, String>, want: &[&str]) {
    for log in logs {
        let mut got = ignored_settings(log);
        for n in &got {
            assert!(
                manifest_env.contains_key(n),
                "{n} is not in the manifest\n{log}"
            );
        }
        let before = got.len();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), before, "a setting named twice\n{log}");
        assert_eq!(got, want, "the ignored settings\n{log}");
    }
}

/// The nodes whose `eth0` carries `ip`.
fn holders_of(lab: &Lab, ip: &str) -> Vec<usize> {
    (0..lab.nodes.len())
        .filter(|&i| {
            let out = lab.nodes[i].run(&["ip", "-o", "addr", "show", "dev", "eth0"]);
            String::from_utf8_lossy(&out.stdout).contains(&format!(" {ip}/"))
        })
        .collect()
}

/// client-go's leader election for `plndr-cp-lock` as a kube-vip node named `identity` runs
/// it, with the fixture's timing (15 / 10 / 2 s), in the router namespace; its event lines
/// (`leading`, `stopped`, `leader ID`) go to a file.
struct KubeVipNode {
    proc: Proc,
    out: PathBuf,
}

impl KubeVipNode {
    fn start(ns: &Netns, kubeconfig: &Path, identity: &str, dir: &TempDir) -> KubeVipNode {
        let out = dir.join(&format!("elector-{identity}.out"));
        let f = std::fs::File::create(&out).expect("elector output");
        let bin = elector_bin();
        let child = ns
            .command(&[
                bin.to_str().unwrap(),
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--namespace",
                "kube-system",
                "--name",
                "plndr-cp-lock",
                "--identity",
                identity,
                "--lease-duration",
                "15",
                "--renew-deadline",
                "10",
                "--retry-period",
                "2",
            ])
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("spawn vipr-elector");
        KubeVipNode {
            proc: Proc::new(identity, child),
            out,
        }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::File::open(&self.out)
            .map(|f| {
                std::io::BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Leading now: its last `leading`/`stopped` line is `leading`.
    fn leading(&self) -> bool {
        self.lines()
            .iter()
            .rev()
            .find(|l| *l == "leading" || *l == "stopped")
            .is_some_and(|l| l == "leading")
    }

    /// The leaders it has observed (`leader ID` lines).
    fn seen_leaders(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("leader ").map(str::to_string))
            .collect()
    }
}

const ARP_VIP: &str = "10.55.0.100";
/// The fixtures' vip_leaseduration.
const LEASE: Duration = Duration::from_secs(15);

#[test]
fn arp_static_pod_shares_the_lease_with_kube_vip() {
    let pod = fixture("arp-static-pod.yaml");
    // The k3s DaemonSet is the same configuration: one run covers both.
    assert_eq!(
        container_env(&fixture("arp-daemonset-k3s.yaml"), "n"),
        container_env(&pod, "n")
    );
    let lab = Lab::new(3);
    let api = ApiServer::start(&lab.router);
    let kubeconfig = api.kubeconfig();
    let dir = workdir();
    let dirs: Vec<TempDir> = (0..3).map(|_| workdir()).collect();
    let lease =
        || api.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plndr-cp-lock");
    let ctx = || {
        format!(
            "Lease: {:#}\nholders: {:?}\n{}",
            lease().unwrap_or(Value::Null),
            holders_of(&lab, ARP_VIP),
            logs(&dirs).join("\n")
        )
    };

    // (a) A node still running kube-vip holds the Lease; vipr arrives on three others.
    let kv = KubeVipNode::start(&lab.router, &kubeconfig, "kube-vip-node", &dir);
    within(CONVERGE, "kube-vip leads", ctx, || {
        kv.leading().then_some(())
    });
    let mut vs: Vec<Vipr> = start_nodes(&lab, &pod, &dirs, &kubeconfig);
    // Well past one lease duration of vipr watching kube-vip renew: nobody takes the VIP.
    let t0 = Instant::now();
    while t0.elapsed() < LEASE + Duration::from_secs(5) {
        assert!(
            holders_of(&lab, ARP_VIP).is_empty(),
            "a vipr node took the VIP from a live kube-vip\n{}",
            ctx()
        );
        assert!(kv.leading(), "kube-vip lost the Lease\n{}", ctx());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(lease().unwrap()["spec"]["holderIdentity"], "kube-vip-node");

    // (b) kube-vip's node dies without releasing: one vipr node takes the VIP once the
    // Lease has expired (client-go's reading: a lease duration after the last renewal seen).
    let mut kv = kv;
    kv.proc.kill();
    let killed = Instant::now();
    let leader = within(
        LEASE * 3,
        "a vipr node takes the VIP after kube-vip died",
        ctx,
        || {
            let h = holders_of(&lab, ARP_VIP);
            assert!(h.len() <= 1, "two holders {h:?}\n{}", ctx());
            (h.len() == 1).then(|| h[0])
        },
    );
    eprintln!(
        "MEASURED vipr took the VIP {:?} after kube-vip's kill -9",
        killed.elapsed()
    );
    assert_eq!(
        lease().unwrap()["spec"]["holderIdentity"],
        format!("node{leader}")
    );

    // (c) A kube-vip node (re)starting now sees vipr's node as the leader and stays a
    // follower for well past a lease duration, while the VIP stays where it is.
    let kv2 = KubeVipNode::start(&lab.router, &kubeconfig, "kube-vip-node-2", &dir);
    within(CONVERGE, "kube-vip sees vipr's leader", ctx, || {
        kv2.seen_leaders()
            .contains(&format!("node{leader}"))
            .then_some(())
    });
    let t0 = Instant::now();
    while t0.elapsed() < LEASE + Duration::from_secs(5) {
        assert!(
            !kv2.leading(),
            "kube-vip took the Lease from a live vipr\n{}",
            ctx()
        );
        assert_eq!(holders_of(&lab, ARP_VIP), vec![leader], "{}", ctx());
        std::thread::sleep(Duration::from_millis(200));
    }

    // (d) The vipr nodes leave (followers first): SIGTERM releases the Lease and removes the
    // VIP, and kube-vip leads well before the lease would have expired.
    for i in (0..3).filter(|&i| i != leader).chain([leader]) {
        vs[i].signal(libc::SIGTERM);
        vs[i].wait_exit(Duration::from_secs(10));
    }
    let stopped = Instant::now();
    within(LEASE, "kube-vip leads after vipr released", ctx, || {
        kv2.leading().then_some(())
    });
    eprintln!(
        "MEASURED kube-vip led {:?} after the last vipr stopped",
        stopped.elapsed()
    );
    assert!(holders_of(&lab, ARP_VIP).is_empty(), "{}", ctx());

    assert_warnings(&logs(&dirs), &container_env(&pod, "n"), IGNORED);
}

/// What vipr names as ignored in these manifests: nothing, every setting they carry is
/// implemented (kube-vip's generator renders none of the variables vipr only warns about
/// for these commands).
const IGNORED: &[&str] = &[];

/// A Service with `ip` in kube-vip's annotation and one ready endpoint.
fn service_with_endpoint(api: &ApiServer, name: &str, ip: &str) {
    api.create_service(&annotated_service(name, ip, json!({})));
    api.create(
        "/api/v1/namespaces/default/endpoints",
        &endpoints(name, &["10.55.0.11"], &[]),
    );
}

#[test]
fn bgp_static_pod_announces_from_every_node() {
    let pod = fixture("bgp-static-pod.yaml");
    let lab = Lab::new(3);
    let api = ApiServer::start(&lab.router);
    let kubeconfig = api.kubeconfig();
    // The documented setup is iBGP: the nodes' AS is the router's, 65000.
    let nodes: Vec<String> = (0..3).map(|i| Lab::node_v4(i).to_string()).collect();
    let conf = frr_router_conf("10.55.0.1", &nodes).replace(
        &format!("remote-as {NODE_AS}"),
        &format!("remote-as {ROUTER_AS}"),
    );
    let frr = Frr::start(&lab.router, &conf);
    let dirs: Vec<TempDir> = (0..3).map(|_| workdir()).collect();
    let _vs: Vec<Vipr> = start_nodes(&lab, &pod, &dirs, &kubeconfig);
    let ctx = || {
        format!(
            "{}\n{}",
            frr.vtysh("show bgp ipv4 unicast"),
            logs(&dirs).join("\n")
        )
    };
    within(
        CONVERGE * 2,
        "the control-plane VIP over three paths",
        ctx,
        || (frr_paths(&frr, "192.0.2.40/32").len() == 3).then_some(()),
    );
    let svc = svc_vip(40);
    service_with_endpoint(&api, "web", &svc);
    within(
        CONVERGE,
        "the Service's address over three paths",
        ctx,
        || (frr_paths(&frr, &format!("{svc}/32")).len() == 3).then_some(()),
    );
    api.wait_ingress("web", &[&svc]);
    assert_warnings(&logs(&dirs), &container_env(&pod, "n"), IGNORED);
}

#[test]
fn services_election_daemonset_spreads_services() {
    let ds = fixture("arp-services-election-daemonset.yaml");
    let lab = Lab::new(3);
    let api = ApiServer::start(&lab.router);
    let kubeconfig = api.kubeconfig();
    let dirs: Vec<TempDir> = (0..3).map(|_| workdir()).collect();
    let _vs: Vec<Vipr> = start_nodes(&lab, &ds, &dirs, &kubeconfig);
    let ips = ["10.55.0.201", "10.55.0.202", "10.55.0.203"];
    for (n, ip) in ips.iter().enumerate() {
        service_with_endpoint(&api, &format!("svc{n}"), ip);
    }
    let ctx = || {
        let h: Vec<_> = ips.iter().map(|ip| holders_of(&lab, ip)).collect();
        format!("holders: {h:?}\n{}", logs(&dirs).join("\n"))
    };
    within(
        CONVERGE * 2,
        "each Service's address on exactly one node",
        ctx,
        || {
            ips.iter()
                .all(|ip| holders_of(&lab, ip).len() == 1)
                .then_some(())
        },
    );
    // Held steadily: never a second holder over a few retry periods.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        for ip in ips {
            assert_eq!(holders_of(&lab, ip).len(), 1, "{ip}\n{}", ctx());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let leases = api
        .get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases")
        .expect("leases");
    let names: Vec<&str> = leases["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["metadata"]["name"].as_str())
        .collect();
    for n in 0..ips.len() {
        let want = format!("kubevip-default.svc{n}");
        assert!(names.contains(&want.as_str()), "no Lease {want}: {names:?}");
    }
    assert_warnings(&logs(&dirs), &container_env(&ds, "n"), IGNORED);
}
