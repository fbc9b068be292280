//! The labs users run, run here: `labs/run.sh up LAB`, a look at what it promises, and
//! `labs/run.sh down LAB`, for every namespace lab, with the binary under test
//! (`VIPR_BIN`). The labs use fixed `vlab-*` namespace names, so they run one after the
//! other inside one test.
//!
//! - bgp-ecmp: three paths to the control-plane VIP and to the Service VIP at FRR; SIGTERM
//!   to one node leaves two of each;
//! - arp-failover: the client reaches the VIP; SIGTERM to the holder moves the VIP and the
//!   client's neighbour entry to another node's MAC (gratuitous ARP) within seconds;
//! - equinix-metal: both multihop MD5 routers see three paths; the nodes route to the
//!   peers through host routes via the gateway;
//! - cluster: three Ready Nodes, the DaemonSet's pods, three paths to the control-plane VIP
//!   and to the Service's pooled address; `kubectl rollout restart ds/vipr` keeps all three
//!   paths at FRR (graceful restart), `kubectl drain` takes node2's Service path away and
//!   `kubectl uncordon` brings it back;
//! - after `down` no `vlab-*` namespace and no lab directory is left.
//!
//! The containerlab topologies (`labs/clab/*.clab.yml`) cannot run without Docker: they are
//! parsed, and every file they reference must exist.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use testbed::wait_for;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_lab(args: &[&str]) -> (bool, String) {
    let out = Command::new(root().join("labs/run.sh"))
        .args(args)
        .env("VIPR_BIN", env!("CARGO_BIN_EXE_vipr"))
        .output()
        .expect("run labs/run.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn lab_namespaces() -> Vec<String> {
    sh("ip netns list | awk '$1 ~ /^vlab-/ {print $1}'")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Tears the lab down on every exit, also when an assertion fails.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let _ = run_lab(&["down"]);
    }
}

fn vtysh_json(ns: &str, cmd: &str) -> Value {
    let out = sh(&format!(
        "ip netns exec {ns} vtysh --vty_socket /tmp/vipr-lab/frr-{ns} -c '{cmd}'"
    ));
    serde_json::from_str(&out).unwrap_or(Value::Null)
}

fn active_nexthops(ns: &str, prefix: &str) -> usize {
    read_nexthops(ns, prefix).unwrap_or(0)
}

/// Active next hops of `prefix` in FRR's RIB; `None` when vtysh gave no answer (a read
/// that failed is not a path lost: a route that is gone reads as `{}`, 0 paths).
fn read_nexthops(ns: &str, prefix: &str) -> Option<usize> {
    let v = vtysh_json(ns, &format!("show ip route {prefix} json"));
    if !v.is_object() {
        return None;
    }
    Some(
        v[prefix][0]["nexthops"]
            .as_array()
            .map(|a| a.iter().filter(|n| n["active"] == true).count())
            .unwrap_or(0),
    )
}

fn holder() -> Option<String> {
    (1..=3)
        .map(|i| format!("vlab-n{i}"))
        .find(|ns| sh(&format!("ip -n {ns} -4 addr show dev eth0")).contains("10.55.0.200/"))
}

fn mac(ns: &str) -> String {
    sh(&format!(
        "ip netns exec {ns} cat /sys/class/net/eth0/address"
    ))
}

fn up(lab: &str) -> String {
    let (ok, text) = run_lab(&["up", lab]);
    assert!(ok, "labs/run.sh up {lab} failed:\n{text}");
    assert!(text.contains(&format!("Lab {lab} is up.")), "{text}");
    assert!(text.contains("Things to look at"), "{text}");
    text
}

fn down(lab: &str) {
    let (ok, text) = run_lab(&["down", lab]);
    assert!(ok, "labs/run.sh down {lab}:\n{text}");
    assert_eq!(lab_namespaces(), Vec::<String>::new(), "after down {lab}");
    assert!(!Path::new("/tmp/vipr-lab").exists(), "lab directory left");
}

#[test]
fn every_namespace_lab_comes_up_and_goes_down() {
    assert!(
        lab_namespaces().is_empty(),
        "a lab is already running: {:?}",
        lab_namespaces()
    );
    let _guard = Down;
    let t = std::time::Instant::now();

    // bgp-ecmp
    let text = up("bgp-ecmp");
    assert!(text.contains("198.51.100.10"), "{text}");
    for p in ["192.0.2.10/32", "198.51.100.10/32"] {
        assert_eq!(active_nexthops("vlab-tor", p), 3, "{p}");
    }
    sh("ip netns pids vlab-n2 | xargs kill -TERM");
    let two = wait_for(Duration::from_secs(5), || {
        (active_nexthops("vlab-tor", "192.0.2.10/32") == 2
            && active_nexthops("vlab-tor", "198.51.100.10/32") == 2)
            .then_some(())
    });
    assert!(two.is_some(), "SIGTERM to node 2 did not leave two paths");
    down("bgp-ecmp");
    eprintln!("bgp-ecmp: {:?}", t.elapsed());

    // arp-failover
    let t = std::time::Instant::now();
    up("arp-failover");
    let first = holder().expect("a holder");
    assert!(sh("ip netns exec vlab-client ping -c1 -W1 10.55.0.200 >/dev/null && echo ok") == "ok");
    let old_mac = mac(&first);
    assert!(sh("ip -n vlab-client neigh show 10.55.0.200").contains(&old_mac));
    sh(&format!("ip netns pids {first} | xargs kill -TERM"));
    let moved = wait_for(Duration::from_secs(5), || {
        let h = holder().filter(|h| *h != first)?;
        let m = mac(&h);
        sh("ip -n vlab-client neigh show 10.55.0.200")
            .contains(&m)
            .then_some(h)
    });
    let second = moved.expect("VIP and the client's neighbour entry moved to another node");
    assert_ne!(second, first);
    down("arp-failover");
    eprintln!("arp-failover: {:?}", t.elapsed());

    // equinix-metal
    let t = std::time::Instant::now();
    up("equinix-metal");
    for r in ["vlab-r1", "vlab-r2"] {
        let v = vtysh_json(r, "show bgp ipv4 unicast 192.0.2.20/32 json");
        let paths = v["paths"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(paths, 3, "{r}: {v:#}");
        let n = vtysh_json(r, "show bgp neighbor 10.55.0.11 json");
        assert_eq!(n["10.55.0.11"]["bgpState"], "Established", "{r}");
    }
    for p in ["169.254.255.1", "169.254.255.2"] {
        let route = sh(&format!("ip -n vlab-n1 route show {p}"));
        assert!(
            route.contains("via 10.55.0.1"),
            "host route to {p}: {route:?}"
        );
    }
    down("equinix-metal");
    eprintln!("equinix-metal: {:?}", t.elapsed());

    // cluster: the lab users try first, with what its instructions promise.
    let t = std::time::Instant::now();
    let text = up("cluster");
    let svc = sh(&format!(
        "{KUBECTL} -n kube-system get svc demo -o jsonpath='{{.status.loadBalancer.ingress[0].ip}}'"
    ));
    assert!(
        svc.starts_with("198.51.100."),
        "the Service's address: {svc:?}\n{text}"
    );
    let svc = format!("{svc}/32");
    for p in ["192.0.2.10/32", svc.as_str()] {
        assert_eq!(active_nexthops("vlab-tor", p), 3, "{p}\n{text}");
    }
    // `kubectl rollout restart ds/vipr`: with graceful restart every vipr restarts in
    // place and FRR keeps all three paths throughout.
    let gen = || {
        sh(&format!("{KUBECTL} -n kube-system get ds vipr -o jsonpath='{{.status.updatedNumberScheduled}}/{{.metadata.generation}}/{{.status.observedGeneration}}'"))
    };
    let before = sh(&format!(
        "{KUBECTL} -n kube-system get pods -l app.kubernetes.io/name=vipr -o name"
    ));
    assert!(sh(&format!("{KUBECTL} -n kube-system rollout restart ds/vipr")).contains("restarted"));
    let mut fewest = 3;
    let rolled = wait_for(Duration::from_secs(180), || {
        if let Some(n) = read_nexthops("vlab-tor", &svc) {
            fewest = fewest.min(n);
        }
        let now = sh(&format!(
            "{KUBECTL} -n kube-system get pods -l app.kubernetes.io/name=vipr -o name"
        ));
        let ready = sh(&format!("{KUBECTL} -n kube-system get pods -l app.kubernetes.io/name=vipr --no-headers | grep -c ' 1/1 *Running'"));
        (ready == "3" && now.lines().all(|p| !before.contains(p))).then_some(())
    });
    assert!(
        rolled.is_some(),
        "rollout restart did not finish: {}",
        gen()
    );
    assert_eq!(fewest, 3, "FRR lost a path during the rollout restart");
    // `kubectl drain node2 --ignore-daemonsets`: cordoned, node2's Service path goes.
    let out = sh(&format!("{KUBECTL} drain node2 --ignore-daemonsets 2>&1"));
    assert!(out.contains("drained"), "{out}");
    let two = wait_for(Duration::from_secs(10), || {
        (active_nexthops("vlab-tor", &svc) == 2).then_some(())
    });
    assert!(two.is_some(), "node2's path stayed after kubectl drain");
    assert_eq!(
        active_nexthops("vlab-tor", "192.0.2.10/32"),
        3,
        "the control-plane VIP stays"
    );
    sh(&format!("{KUBECTL} uncordon node2"));
    let three = wait_for(Duration::from_secs(10), || {
        (active_nexthops("vlab-tor", &svc) == 3).then_some(())
    });
    assert!(
        three.is_some(),
        "node2's path did not come back after uncordon"
    );
    down("cluster");
    eprintln!("cluster: {:?}", t.elapsed());
}

/// kubectl of the cluster lab (`labs/run.sh up cluster`).
const KUBECTL: &str = "ip netns exec vlab-tor kubectl --kubeconfig /tmp/vipr-lab/k8s/kubeconfig";

/// Every `*.clab.yml` parses, names its nodes and links consistently, and every file it
/// references (startup-config, binds) exists, as do the configs those name.
#[test]
fn containerlab_topologies_parse_and_their_files_exist() {
    let dir = root().join("labs/clab");
    let mut found = 0;
    for e in std::fs::read_dir(&dir).expect("labs/clab") {
        let path = e.unwrap().path();
        if !path.to_string_lossy().ends_with(".clab.yml") {
            continue;
        }
        found += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(v["name"].is_string(), "{}: no name", path.display());
        let nodes = v["topology"]["nodes"].as_object().expect("topology.nodes");
        let base = path.parent().unwrap();
        for (name, n) in nodes {
            let kind = n["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no kind"));
            assert!(
                ["linux", "k8s-kind", "ext-container", "bridge"].contains(&kind),
                "{name}: kind {kind}"
            );
            if kind == "linux" {
                assert!(n["image"].is_string(), "{name}: no image");
            }
            let mut files: Vec<String> = n["binds"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| b.as_str().unwrap().split(':').next().unwrap().to_string())
                .collect();
            if let Some(s) = n["startup-config"].as_str() {
                files.push(s.to_string());
            }
            for f in files {
                let p = base.join(&f);
                assert!(
                    p.is_file(),
                    "{}: node {name} references {f}, which does not exist",
                    path.display()
                );
                if f.ends_with(".yaml") || f.ends_with(".yml") {
                    let t = std::fs::read_to_string(&p).unwrap();
                    let doc: Value =
                        serde_saphyr::from_str(&t).unwrap_or_else(|e| panic!("{f}: {e}"));
                    if kind == "k8s-kind" {
                        assert_eq!(doc["kind"], "Cluster", "{f}");
                        assert!(
                            doc["apiVersion"]
                                .as_str()
                                .unwrap()
                                .starts_with("kind.x-k8s.io/"),
                            "{f}"
                        );
                    }
                }
                if f.ends_with("frr.conf") {
                    let t = std::fs::read_to_string(&p).unwrap();
                    assert!(t.contains("router bgp"), "{f}");
                }
            }
        }
        for l in v["topology"]["links"].as_array().into_iter().flatten() {
            for ep in l["endpoints"].as_array().expect("endpoints") {
                let node = ep.as_str().unwrap().split(':').next().unwrap();
                assert!(
                    nodes.contains_key(node),
                    "{}: link to unknown node {node}",
                    path.display()
                );
            }
        }
        // Files named in the instructions at the top (kubectl apply -f ...) exist too.
        for word in text
            .split_whitespace()
            .filter(|w| w.starts_with("labs/clab/"))
        {
            assert!(
                root().join(word).exists(),
                "{}: mentions {word}, which does not exist",
                path.display()
            );
        }
    }
    assert!(found >= 1, "no containerlab topology in labs/clab");
}
