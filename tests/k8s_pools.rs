//! End to end: Service addresses from pools, allocated by three vipr nodes at once without
//! an election, against a real kube-apiserver 1.20.2 (dual-stack enabled) and a real FRR
//! router (`maximum-paths 8`) in the lab's router namespace.
//!
//! - A burst of 300 Services created at once with no address: 300 distinct addresses, all
//!   in the pools, every one at FRR with three paths; one `IPAllocated` Event each (not one
//!   per node); deleted: routes and claims gone, the addresses handed out again.
//! - A tenant's requests: the router's address, the control-plane VIP, 8.8.8.8 (outside the
//!   pools) and 0.0.0.0 are on no node and not at FRR, each with a Warning Event saying why
//!   (one per decision); a request inside the pool is served; FRR's session never drops.
//! - kube-vip-cloud-provider's ConfigMap: an exhausted pool leaves the Service pending with
//!   a Warning; growing it (a ConfigMap edit) gives it an address without a restart; a
//!   namespace pool with `search-order: desc`; `allow-share` with and without a port clash;
//!   dual-stack (`RequireDualStack`) from `vipr_pools`.
//! - kill -9 of the vipr processes at random points while 100 Services are allocated, then
//!   a restart: every Service has exactly one address, no two share one, no claim leaked.

mod daemon_common;
mod k8s_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use daemon_common::*;
use k8s_common::*;
use serde_json::{json, Value};
use testbed::{Frr, Lab, TempDir};

/// The lab: FRR and the API server in the router namespace, vipr on three nodes.
struct Cluster {
    lab: Lab,
    api: ApiServer,
    frr: Frr,
    vipr: std::sync::Mutex<Vec<Option<Vipr>>>,
    dirs: Vec<TempDir>,
    env: BTreeMap<String, String>,
}

const POOLS: &str = "198.51.100.0/24;name=blue,203.0.113.0/25;name=green";

impl Cluster {
    fn start(extra: &[(&str, &str)]) -> Cluster {
        let lab = Lab::new(3);
        let api = ApiServer::start(&lab.router);
        let nodes: Vec<String> = (0..3).map(|i| Lab::node_v4(i).to_string()).collect();
        let frr = Frr::start(&lab.router, &frr_router_conf("10.55.0.1", &nodes));
        let mut env = BTreeMap::new();
        for (k, v) in [("vipr_pools", POOLS)].iter().chain(extra) {
            env.insert(k.to_string(), v.to_string());
        }
        let dirs: Vec<TempDir> = (0..3).map(|_| workdir()).collect();
        let c = Cluster {
            lab,
            api,
            frr,
            vipr: std::sync::Mutex::new(vec![None, None, None]),
            dirs,
            env,
        };
        for i in 0..3 {
            c.start_node(i);
        }
        for i in 0..3 {
            let log = || std::fs::read_to_string(c.dirs[i].join("vipr.log")).unwrap_or_default();
            eventually("Service caches synced", log, || {
                log()
                    .contains("Service and endpoint caches synced")
                    .then_some(())
            });
        }
        c
    }

    fn start_node(&self, i: usize) {
        let d = &self.dirs[i];
        let mut env = bgp_svc_env(
            &d.join("state"),
            &self.api.kubeconfig(),
            &format!("node{i}"),
        );
        env.extend(self.env.clone());
        self.vipr.lock().unwrap()[i] = Some(Vipr::start(
            &self.lab.nodes[i],
            &env,
            &[],
            &d.join("vipr.log"),
        ));
    }

    /// kill -9 of node `i`'s vipr, if running.
    fn kill9(&self, i: usize) {
        if let Some(mut v) = self.vipr.lock().unwrap()[i].take() {
            v.kill9();
        }
    }

    /// Starts the nodes whose vipr is not running.
    fn start_missing(&self) {
        for j in 0..3 {
            let missing = self.vipr.lock().unwrap()[j].is_none();
            if missing {
                self.start_node(j);
            }
        }
    }

    fn log(&self) -> String {
        self.dirs
            .iter()
            .map(|d| std::fs::read_to_string(d.join("vipr.log")).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every /32 and /128 at FRR with its number of paths.
    fn frr_routes(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for af in ["ipv4", "ipv6"] {
            let v = self.frr.vtysh_json(&format!("show bgp {af} unicast json"));
            for (prefix, paths) in v["routes"].as_object().into_iter().flatten() {
                out.insert(prefix.clone(), paths.as_array().map_or(0, Vec::len));
            }
        }
        out
    }

    /// The LoadBalancer Services of `ns`.
    fn services(&self, ns: &str) -> Vec<Value> {
        self.api
            .get(&format!("/api/v1/namespaces/{ns}/services"))
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["spec"]["type"] == "LoadBalancer")
            .collect()
    }

    fn claims(&self) -> Vec<Value> {
        self.api
            .get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?labelSelector=vipr.io%2Faddress-claim%3Dtrue")
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Events of `reason` on Service `ns/name`.
    fn events(&self, ns: &str, name: &str, reason: &str) -> Vec<Value> {
        self.api
            .get(&format!("/api/v1/namespaces/{ns}/events"))
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
            .collect()
    }

    fn create(&self, ns: &str, svc: &Value) {
        self.api
            .create(&format!("/api/v1/namespaces/{ns}/services"), svc);
    }
}

fn in_pools(ip: &str) -> bool {
    ip.starts_with("198.51.100.")
        || ip
            .strip_prefix("203.0.113.")
            .and_then(|l| l.parse::<u8>().ok())
            .is_some_and(|l| l < 128)
}

/// A LoadBalancer Service in `ns` with `port` and extra spec fields.
fn service(ns: &str, name: &str, port: u16, spec: Value, annotations: Value) -> Value {
    let mut s = lb_service(name, annotations, spec);
    s["metadata"]["namespace"] = json!(ns);
    s["spec"]["ports"] = json!([{"port": port, "protocol": "TCP"}]);
    s
}

fn lo_of(c: &Cluster) -> Vec<String> {
    c.lab.nodes.iter().flat_map(lo_addrs).collect()
}

#[test]
fn a_burst_of_services_gets_distinct_addresses_from_three_nodes() {
    let c = Cluster::start(&[]);
    let n = 300;
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..6 {
            let c = &c;
            s.spawn(move || {
                for i in (t..n).step_by(6) {
                    c.create(
                        "default",
                        &service("default", &format!("s{i}"), 80, json!({}), json!({})),
                    );
                }
            });
        }
    });
    eprintln!("MEASURED pools: {n} Services created in {:?}", t0.elapsed());
    let ctx = || {
        let svcs = c.services("default");
        let without: Vec<String> = svcs
            .iter()
            .filter(|s| ingress_of(s).is_empty())
            .map(|s| format!("{} {}", s["metadata"]["name"], s["metadata"]["annotations"]))
            .collect();
        format!(
            "{} Services, {} without ingress: {without:?}\nclaims: {}\n{}",
            svcs.len(),
            without.len(),
            c.claims().len(),
            c.log()
        )
    };
    let addrs: Vec<String> = within(
        Duration::from_secs(120),
        "every Service allocated",
        ctx,
        || {
            let svcs = c.services("default");
            let a: Vec<String> = svcs.iter().flat_map(ingress_of).collect();
            (svcs.len() == n && a.len() == n).then_some(a)
        },
    );
    eprintln!(
        "MEASURED pools: {n} Services allocated after {:?}",
        t0.elapsed()
    );
    let distinct: BTreeSet<&String> = addrs.iter().collect();
    assert_eq!(distinct.len(), n, "an address given twice");
    assert!(addrs.iter().all(|a| in_pools(a)), "{addrs:?}");
    let routes = within(
        Duration::from_secs(60),
        "three paths each at FRR",
        ctx,
        || {
            let r = c.frr_routes();
            addrs
                .iter()
                .all(|a| r.get(&format!("{a}/32")) == Some(&3))
                .then_some(r)
        },
    );
    eprintln!(
        "MEASURED pools: all {n} at FRR with 3 paths after {:?}",
        t0.elapsed()
    );
    assert_eq!(routes.len(), n, "only the Services' routes: {routes:?}");
    assert_eq!(c.claims().len(), n);
    // In BGP mode a Service's VIP is a local route on each node (table local, proto 86), not
    // an address of lo, and the router reaches it over its BGP route.
    for node in &c.lab.nodes {
        let routes = local_routes(node, "lo");
        let addrs_lo = ip_json(&["-j", "-n", &node.name, "addr", "show", "dev", "lo"]);
        for a in [&addrs[0], &addrs[n - 1]] {
            assert!(routes.contains(&format!("{a}/32")), "{a}: {routes:?}");
            assert!(
                !addrs_lo.to_string().contains(&format!("\"{a}\"")),
                "{addrs_lo}"
            );
        }
    }
    let ping = c
        .lab
        .router
        .run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &addrs[0]]);
    assert!(
        ping.status.success(),
        "router cannot ping {}: {ping:?}",
        addrs[0]
    );
    // One Event per allocation, whichever node wrote it.
    for i in [0, 150, 299] {
        let ev = c.events("default", &format!("s{i}"), "IPAllocated");
        assert_eq!(ev.len(), 1, "{ev:#?}");
    }
    // The annotation kube-vip's tools read.
    let s0 = c.api.get(&svc_path("s0")).unwrap();
    assert_eq!(
        s0["metadata"]["annotations"]["kube-vip.io/loadbalancerIPs"],
        ingress_of(&s0)[0]
    );

    // Delete them all: routes and claims go.
    std::thread::scope(|s| {
        for t in 0..6 {
            let c = &c;
            s.spawn(move || {
                for i in (t..n).step_by(6) {
                    c.api.delete_service(&format!("s{i}"));
                }
            });
        }
    });
    within(
        Duration::from_secs(60),
        "routes and claims gone",
        ctx,
        || (c.frr_routes().is_empty() && c.claims().is_empty()).then_some(()),
    );
    within(Duration::from_secs(60), "local routes gone", ctx, || {
        c.lab
            .nodes
            .iter()
            .all(|n| local_routes(n, "lo").is_empty())
            .then_some(())
    });
    // The addresses are handed out again, lowest first.
    c.create(
        "default",
        &service("default", "again", 80, json!({}), json!({})),
    );
    within(CONVERGE, "the lowest address again", ctx, || {
        (ingress_of(&c.api.get(&svc_path("again"))?) == ["198.51.100.0"]).then_some(())
    });
}

#[test]
fn requests_outside_the_grant_are_refused_and_say_why() {
    let c = Cluster::start(&[("cp_enable", "true"), ("address", "192.0.2.10")]);
    let bad = [
        ("router", "10.55.0.1", "BGP peer"),
        ("cpvip", "192.0.2.10", "control-plane VIP"),
        ("dns", "8.8.8.8", "not in an address pool"),
        ("dhcp", "0.0.0.0", "DHCP"),
    ];
    for (name, ip, _) in bad {
        c.create("default", &annotated_service(name, ip, json!({})));
    }
    c.create(
        "default",
        &annotated_service("good", "198.51.100.77", json!({})),
    );
    let ctx = || c.log();
    within(
        CONVERGE,
        "the granted request at FRR with three paths",
        ctx,
        || (c.frr_routes().get("198.51.100.77/32") == Some(&3)).then_some(()),
    );
    c.api.wait_ingress("good", &["198.51.100.77"]);
    for (name, ip, why) in bad {
        let ev = within(CONVERGE, "a Warning Event", ctx, || {
            let ev = c.events("default", name, "AddressRefused");
            (!ev.is_empty()).then_some(ev)
        });
        assert_eq!(ev.len(), 1, "one Event per decision, not per node: {ev:#?}");
        assert_eq!(ev[0]["type"], "Warning");
        let msg = ev[0]["message"].as_str().unwrap();
        assert!(msg.contains(why), "{name}: {msg}");
        assert!(c.api.ingress_ips(name).is_empty(), "{name} got a status");
        // (The control-plane VIP is at FRR for the control plane, not for the Service.)
        if name != "cpvip" {
            assert!(
                !c.frr_routes().contains_key(&format!("{ip}/32")),
                "{ip} at FRR"
            );
        }
    }
    // Nothing of theirs on any node (the control-plane VIP is there for the control plane).
    let lo = lo_of(&c);
    for a in ["10.55.0.1", "8.8.8.8", "0.0.0.0"] {
        assert!(
            !lo.iter().any(|l| l.starts_with(&format!("{a}/"))),
            "{a} on a node: {lo:?}"
        );
    }
    // vipr status names the refusal.
    let st = c.vipr.lock().unwrap()[0]
        .as_ref()
        .unwrap()
        .status()
        .unwrap();
    assert!(
        Vipr::vip(&st, "8.8.8.8")["held_back"]
            .as_str()
            .is_some_and(|h| h.contains("refused")),
        "{st:#}"
    );
    // The sessions never dropped.
    for i in 0..3 {
        assert_eq!(
            c.frr.neighbor_state(&Lab::node_v4(i).to_string()),
            "Established"
        );
    }
}

#[test]
fn configmap_pools_sharing_and_dual_stack() {
    let c = Cluster::start(&[(
        "vipr_pools",
        "2001:db8:5::/120;name=v6;namespaces=dual,198.51.100.0/28;name=dualv4;namespaces=dual",
    )]);
    let ctx = || c.log();
    let cm = |data: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "kubevip", "namespace": "kube-system"}, "data": data})
    };
    c.api.create(
        "/api/v1/namespaces/kube-system/configmaps",
        &cm(
            json!({"range-global": "203.0.113.10-203.0.113.11", "cidr-apps": "192.0.2.64/29",
                   "search-order": "desc", "allow-share-global": "true"}),
        ),
    );
    for ns in ["apps", "dual"] {
        c.api.create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
    }
    // Sharing (allow-share-global): a second Service on another port shares the first's
    // address; on the same port it gets the next one.
    c.create(
        "default",
        &service("default", "a", 80, json!({}), json!({})),
    );
    within(CONVERGE, "a allocated", ctx, || {
        (ingress_of(&c.api.get(&svc_path("a"))?).len() == 1).then_some(())
    });
    let a = ingress_of(&c.api.get(&svc_path("a")).unwrap())[0].clone();
    assert_eq!(a, "203.0.113.11", "search-order desc");
    c.create(
        "default",
        &service("default", "b", 443, json!({}), json!({})),
    );
    c.create(
        "default",
        &service("default", "c", 80, json!({}), json!({})),
    );
    within(CONVERGE, "b shares a's address, c does not", ctx, || {
        let b = ingress_of(&c.api.get(&svc_path("b"))?);
        let cc = ingress_of(&c.api.get(&svc_path("c"))?);
        (b == [a.clone()] && cc == ["203.0.113.10"]).then_some(())
    });
    // The pool is full for a fourth on port 80: pending, with a Warning.
    c.create(
        "default",
        &service("default", "d", 80, json!({}), json!({})),
    );
    within(CONVERGE, "AllocationFailed", ctx, || {
        (!c.events("default", "d", "AllocationFailed").is_empty()).then_some(())
    });
    assert!(c.api.ingress_ips("d").is_empty());
    // The ConfigMap grows: d gets an address without a restart.
    let mut m = c
        .api
        .get("/api/v1/namespaces/kube-system/configmaps/kubevip")
        .unwrap();
    m["data"]["range-global"] = json!("203.0.113.10-203.0.113.12");
    c.api
        .replace("/api/v1/namespaces/kube-system/configmaps/kubevip", &m);
    within(CONVERGE, "d allocated from the grown pool", ctx, || {
        (c.api.ingress_ips("d") == ["203.0.113.12"]).then_some(())
    });
    // A namespace's own pool (cidr-apps, highest first).
    c.create("apps", &service("apps", "web", 80, json!({}), json!({})));
    within(CONVERGE, "apps/web from cidr-apps", ctx, || {
        let s = c.api.get("/api/v1/namespaces/apps/services/web")?;
        (ingress_of(&s) == ["192.0.2.71"]).then_some(())
    });
    // Dual-stack from vipr_pools: IPv6 first as the Service asks.
    c.create(
        "dual",
        &service(
            "dual",
            "ds",
            80,
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}),
            json!({}),
        ),
    );
    within(CONVERGE, "dual/ds with both families", ctx, || {
        let s = c.api.get("/api/v1/namespaces/dual/services/ds")?;
        (ingress_of(&s) == ["2001:db8:5::", "198.51.100.0"]).then_some(())
    });
    within(CONVERGE, "both at FRR with three paths", ctx, || {
        let r = c.frr_routes();
        (r.get("2001:db8:5::/128") == Some(&3) && r.get("198.51.100.0/32") == Some(&3))
            .then_some(())
    });
}

#[test]
fn kill_9_while_allocating_leaves_one_address_each_and_no_leaked_claim() {
    let c = Cluster::start(&[]);
    let n = 100;
    let mut rng = 0x5eed_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let (cc, done) = (&c, &done);
        s.spawn(move || {
            for i in 0..n {
                cc.create(
                    "default",
                    &service("default", &format!("k{i}"), 80, json!({}), json!({})),
                );
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        // Meanwhile: kill -9 a node at a random point, now and then bring them back.
        let mut round = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || round < 6 {
            std::thread::sleep(Duration::from_millis(next() % 300));
            c.kill9((next() % 3) as usize);
            if round % 2 == 1 {
                c.start_missing();
            }
            round += 1;
        }
        eprintln!("kill -9 rounds during the allocation: {round}");
    });
    c.start_missing();
    let ctx = || c.log();
    let addrs = within(
        Duration::from_secs(120),
        "every Service with one address",
        ctx,
        || {
            let svcs = c.services("default");
            let a: Vec<Vec<String>> = svcs.iter().map(ingress_of).collect();
            (svcs.len() == n && a.iter().all(|x| x.len() == 1)).then_some(a)
        },
    );
    let flat: BTreeSet<String> = addrs.into_iter().flatten().collect();
    assert_eq!(flat.len(), n, "two Services share an address");
    within(CONVERGE, "exactly one claim per Service", ctx, || {
        let claims = c.claims();
        let ips: BTreeSet<String> = claims
            .iter()
            .filter_map(|l| {
                l["metadata"]["annotations"]["vipr.io/address"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        (claims.len() == n && ips == flat).then_some(())
    });
}
