//! End-to-end tests of Lease and API-server behaviour a kube-vip user relies on, against a
//! real kube-apiserver 1.20.2, vipr in ARP mode (lease 2 s / renew deadline 1 s /
//! retry 0.5 s) on the lab's node namespaces.
//!
//! - `first_kubeadm_node_*`: the kubeconfig's server is the control-plane VIP, which nobody
//!   holds yet (kubeadm's admin.conf on the first node); the API server is reachable on the
//!   node's loopback at `port` (socat in the node namespace forwards 127.0.0.1:16443 to the
//!   test API server, as a local kube-apiserver would listen). vipr reaches it, takes the
//!   Lease and adds the VIP, as kube-vip v1.2.3 does (`pkg/manager/manager.go`).
//! - `svc_leasename_*`: `svc_leasename=kube-vip-svcs` and a Lease of that name written and
//!   renewed as kube-vip writes it (holder `kube-vip-node`, 4 s): vipr does not serve the
//!   Service while it is renewed, takes the Lease once the renewals stop and it expired, and
//!   writes it as client-go reads it (holder, its own duration, a moving renewTime).
//! - `per_service_election_on_demand_*`: a Service annotated
//!   `kube-vip.io/forcePerServiceElection: "true"` gets its own Lease, the other one shares
//!   `plndr-svcs-lock`; deleting the annotated Service removes its VIP and its Lease.
//! - `preserve_on_leadership_loss_*`: the leader cut off from the API server keeps the IPv4
//!   VIP (no longer announced) while the other node takes Lease and VIP, and removes it once
//!   it sees the new holder.

mod daemon_common;
mod k8s_common;

use std::path::Path;
use std::time::{Duration, Instant};

use daemon_common::*;
use k8s_common::*;
use serde_json::{json, Value};
use testbed::{Lab, Netns};

const VIP: &str = "10.55.0.100";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";

fn holds(ns: &Netns, ip: &str) -> bool {
    let out = ns.run(&["ip", "-4", "addr", "show", "dev", "eth0"]);
    String::from_utf8_lossy(&out.stdout).contains(&format!("{ip}/"))
}

fn lease(api: &ApiServer, name: &str) -> Option<Value> {
    api.get(&format!("{LEASES}/{name}"))
}

/// Now as a Kubernetes MicroTime.
fn micro_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"])
        .output()
        .expect("date");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn first_kubeadm_node_reaches_the_local_api_server_when_the_kubeconfig_names_the_vip() {
    let lab = Lab::new(1);
    let api = ApiServer::start(&lab.router);
    let node = &lab.nodes[0];
    let dir = workdir();
    // The API server as the node's own: on its loopback at `port`.
    let _fwd = node.spawn(&[
        "socat",
        &format!("TCP-LISTEN:{API_PORT},bind=127.0.0.1,reuseaddr,fork"),
        &format!("TCP:{API_ADDR}:{API_PORT}"),
    ]);
    // kubeadm's admin.conf on the first node: the server is the VIP.
    let kc = dir.join("admin.conf");
    let text = std::fs::read_to_string(api.kubeconfig()).unwrap();
    let text = text.replace(
        &format!("https://{API_ADDR}:{API_PORT}"),
        &format!("https://{VIP}:{API_PORT}"),
    );
    assert!(text.contains(VIP));
    std::fs::write(&kc, text).unwrap();
    let mut env = arp_cp_env(&dir.join("state"), &kc, "node0", VIP);
    env.insert("port".into(), API_PORT.to_string());
    let v = Vipr::start(node, &env, &[], &dir.join("vipr.log"));
    let t0 = Instant::now();
    within(
        CONVERGE,
        "the Lease held by node0 and the VIP on its eth0",
        || format!("lease: {:?}\n{}", lease(&api, "plndr-cp-lock"), v.run_log()),
        || {
            let l = lease(&api, "plndr-cp-lock")?;
            (l["spec"]["holderIdentity"] == "node0" && holds(node, VIP)).then_some(())
        },
    );
    eprintln!(
        "MEASURED first node: Lease and VIP after {:?}",
        t0.elapsed()
    );
    assert!(
        v.log()
            .contains("talking to this API server instead of the kubeconfig's"),
        "{}",
        v.run_log()
    );
}

#[test]
fn svc_leasename_lease_held_by_kube_vip_keeps_vipr_off_until_it_expires() {
    let lab = Lab::new(1);
    let api = ApiServer::start(&lab.router);
    let node = &lab.nodes[0];
    let dir = workdir();
    let name = "kube-vip-svcs";
    // A live kube-vip holds the services Lease (client-go LeaseLock, 4 s).
    let kube_vip = |rv: Option<&str>| {
        let now = micro_now();
        let mut l = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"holderIdentity": "kube-vip-node", "leaseDurationSeconds": 4,
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
        });
        if let Some(rv) = rv {
            l["metadata"]["resourceVersion"] = json!(rv);
        }
        l
    };
    api.create(LEASES, &kube_vip(None));
    let ip = svc_vip(40);
    api.create_service(&annotated_service("web", &ip, json!({})));
    api.create(
        "/api/v1/namespaces/default/endpoints",
        &endpoints("web", &["node0"], &[]),
    );
    let mut env = arp_cp_env(&dir.join("state"), Path::new("/placeholder"), "node0", "");
    for k in ["cp_enable", "address"] {
        env.remove(k);
    }
    env.insert(
        "k8s_config_file".into(),
        api.kubeconfig().display().to_string(),
    );
    env.insert("svc_enable".into(), "true".into());
    env.insert("svc_leasename".into(), name.into());
    let v = Vipr::start(node, &env, &[], &dir.join("vipr.log"));
    // vipr sees the Service and holds it back: it does not hold the Lease.
    let st = v.wait_status("the Service VIP held back", |s| {
        Vipr::vip(s, &ip)["held_back"].is_string()
    });
    eprintln!("while kube-vip holds the Lease: {}", Vipr::vip(&st, &ip));
    // Renewed like kube-vip (every second): vipr never takes it or the VIP.
    let until = Instant::now() + Duration::from_secs(8);
    let mut last = Instant::now();
    while Instant::now() < until {
        let cur = lease(&api, name).expect("the Lease");
        assert_eq!(
            cur["spec"]["holderIdentity"],
            "kube-vip-node",
            "{}",
            v.run_log()
        );
        assert!(
            !holds(node, &ip),
            "VIP added while kube-vip holds the Lease"
        );
        let rv = cur["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        api.replace(&format!("{LEASES}/{name}"), &kube_vip(Some(&rv)));
        last = Instant::now();
        std::thread::sleep(Duration::from_millis(1000));
    }
    // kube-vip stops (killed, no release): vipr takes over once the Lease expired.
    within(
        CONVERGE,
        "vipr holding the services Lease and the VIP",
        || format!("lease: {:?}\n{}", lease(&api, name), v.run_log()),
        || {
            let l = lease(&api, name)?;
            (l["spec"]["holderIdentity"] == "node0" && holds(node, &ip)).then_some(())
        },
    );
    let took = last.elapsed();
    eprintln!(
        "MEASURED takeover of kube-vip's services Lease, after its last renewal: {took:?} (its lease 4 s, vipr's 2 s)"
    );
    // Its 4 s, not vipr's own 2 s (a margin of 1 s for when the renewal was seen).
    assert!(
        took >= Duration::from_secs(3),
        "taken before it expired: {took:?}"
    );
    // vipr's Lease as client-go reads it: its holder, its duration, renewed.
    let l = lease(&api, name).unwrap();
    assert_eq!(l["spec"]["leaseDurationSeconds"], 2);
    let first = l["spec"]["renewTime"].clone();
    eventually(
        "vipr renewing its Lease",
        || format!("{:?}", lease(&api, name)),
        || {
            let l = lease(&api, name)?;
            (l["spec"]["renewTime"] != first && l["spec"]["holderIdentity"] == "node0")
                .then_some(())
        },
    );
}

#[test]
fn per_service_election_on_demand_gives_annotated_services_a_lease_of_their_own() {
    let lab = Lab::new(1);
    let api = ApiServer::start(&lab.router);
    let node = &lab.nodes[0];
    let dir = workdir();
    let (ip_a, ip_b) = (svc_vip(41), svc_vip(42));
    let mut forced = annotated_service("a", &ip_a, json!({}));
    forced["metadata"]["annotations"]["kube-vip.io/forcePerServiceElection"] = json!("true");
    api.create_service(&forced);
    api.create_service(&annotated_service("b", &ip_b, json!({})));
    for n in ["a", "b"] {
        api.create(
            "/api/v1/namespaces/default/endpoints",
            &endpoints(n, &["node0"], &[]),
        );
    }
    let mut env = arp_cp_env(&dir.join("state"), &api.kubeconfig(), "node0", "");
    for k in ["cp_enable", "address"] {
        env.remove(k);
    }
    env.insert("svc_enable".into(), "true".into());
    env.insert("per_service_election_on_demand".into(), "true".into());
    let v = Vipr::start(node, &env, &[], &dir.join("vipr.log"));
    let held =
        |name: &str| lease(&api, name).is_some_and(|l| l["spec"]["holderIdentity"] == "node0");
    within(
        CONVERGE,
        "both VIPs, a under its own Lease, b under the services Lease",
        || {
            format!(
                "a: {:?}\nsvcs: {:?}\n{}",
                lease(&api, "kubevip-default.a"),
                lease(&api, "plndr-svcs-lock"),
                v.run_log()
            )
        },
        || {
            (holds(node, &ip_a)
                && holds(node, &ip_b)
                && held("kubevip-default.a")
                && held("plndr-svcs-lock"))
            .then_some(())
        },
    );
    assert!(
        lease(&api, "kubevip-default.b").is_none(),
        "b has no Lease of its own"
    );
    // a deleted: its own Lease goes with it (the sweep), b stays.
    api.delete_service("a");
    within(
        CONVERGE,
        "a's VIP and Lease gone",
        || format!("{:?}\n{}", lease(&api, "kubevip-default.a"), v.run_log()),
        || (!holds(node, &ip_a) && lease(&api, "kubevip-default.a").is_none()).then_some(()),
    );
    assert!(holds(node, &ip_b));
}

/// Drop everything between `ns` and the API server, both ways (an open watch would
/// otherwise still deliver events), or lift the block.
fn block_api(ns: &Netns, on: bool) {
    if on {
        ns.sh(&format!(
            "nft add table inet viprtest && \
             nft add chain inet viprtest out '{{ type filter hook output priority 0; policy accept; }}' && \
             nft add rule inet viprtest out ip daddr {API_ADDR} tcp dport {API_PORT} drop && \
             nft add chain inet viprtest in '{{ type filter hook input priority 0; policy accept; }}' && \
             nft add rule inet viprtest in ip saddr {API_ADDR} tcp sport {API_PORT} drop"
        ));
    } else {
        ns.sh("nft delete table inet viprtest");
    }
}

/// `vip_preserve_on_leadership_loss=true` (kube-vip v1.2.3 `pkg/cluster/cluster.go`
/// `cleanupVIPs`, `clusterLeaderElection.go` `OnNewLeader`): the leader cut off from the
/// API server loses its Lease but keeps the IPv4 VIP on eth0 (no longer announced) while the
/// other node takes the Lease and the VIP; once it sees the new holder it removes the VIP.
#[test]
fn preserve_on_leadership_loss_keeps_the_vip_until_another_holder_is_seen() {
    let lab = Lab::new(2);
    let api = ApiServer::start(&lab.router);
    let dirs = [workdir(), workdir()];
    let vs: Vec<Vipr> = (0..2)
        .map(|i| {
            let mut env = arp_cp_env(
                &dirs[i].join("state"),
                &api.kubeconfig(),
                &format!("node{i}"),
                VIP,
            );
            env.insert("vip_preserve_on_leadership_loss".into(), "true".into());
            Vipr::start(&lab.nodes[i], &env, &[], &dirs[i].join("vipr.log"))
        })
        .collect();
    let ctx = || {
        let mut s = format!("lease: {:?}\n", lease(&api, "plndr-cp-lock"));
        for (i, v) in vs.iter().enumerate() {
            s.push_str(&format!("--- node{i}\n{}\n", v.run_log()));
        }
        s
    };
    let holders = || -> Vec<usize> { (0..2).filter(|&i| holds(&lab.nodes[i], VIP)).collect() };
    let leader = within(CONVERGE, "one holder", ctx, || match holders()[..] {
        [i] => Some(i),
        _ => None,
    });
    let other = 1 - leader;
    block_api(&lab.nodes[leader], true);
    within(
        CONVERGE,
        "the other node holding the Lease and the VIP, the old leader keeping it",
        ctx,
        || {
            let l = lease(&api, "plndr-cp-lock")?;
            (l["spec"]["holderIdentity"] == format!("node{other}").as_str()
                && holders() == vec![0, 1])
            .then_some(())
        },
    );
    let st = vs[leader].wait_status("the kept VIP held back", |s| {
        Vipr::vip(s, VIP)["held_back"].is_string()
    });
    eprintln!("old leader's view while cut off: {}", Vipr::vip(&st, VIP));
    assert!(
        vs[leader]
            .log()
            .contains("VIP kept on the node, no longer announced"),
        "{}",
        ctx()
    );
    let lifted = Instant::now();
    block_api(&lab.nodes[leader], false);
    within(
        CONVERGE,
        "the old leader removing the kept VIP once it sees the new holder",
        ctx,
        || (holders() == vec![other]).then_some(()),
    );
    eprintln!(
        "MEASURED kept VIP removed {:?} after the API server was reachable again",
        lifted.elapsed()
    );
}
