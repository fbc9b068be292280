//! Service VIPs on another interface than the control-plane VIP in ARP mode
//! (`vip_servicesinterface`, annotation `kube-vip.io/serviceInterface`; kube-vip v1.2.3
//! `pkg/instance/instance.go`), against a real kube-apiserver in the lab's router namespace.
//!
//! ```text
//!  node ns: vipr ── eth0 10.55.0.11 ── br0 ── router ns: kube-apiserver 10.55.0.1
//!                └─ svc0 10.66.0.11 ──────── svcr 10.66.0.1 (arp_accept=1)
//! ```
//!
//! Asserts that a Service's VIP (10.66.0.100) goes on `svc0`, not on `vip_interface`
//! (`eth0`), and is announced there: the router learns the node's `svc0` MAC for it from
//! vipr's gratuitous ARP alone (no ping); a Service whose annotation names an interface the
//! configuration does not allow (tenant input) is held back, on no interface, with the
//! reason in `/status`.

mod daemon_common;
mod k8s_common;

use std::collections::BTreeMap;

use daemon_common::*;
use k8s_common::*;
use serde_json::{json, Value};
use testbed::{Lab, Netns};

/// The addresses on `dev` in `ns`, and vipr's local routes there (a Service's VIP in BGP
/// mode), without prefix lengths.
fn addrs_on(ns: &Netns, dev: &str) -> Vec<String> {
    let v = ip_json(&["-j", "-n", &ns.name, "addr", "show", "dev", dev]);
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str().map(str::to_string))
        .chain(
            local_routes(ns, dev)
                .into_iter()
                .filter_map(|r| r.split_once('/').map(|(a, _)| a.to_string())),
        )
        .collect()
}

fn mac(ns: &Netns, dev: &str) -> String {
    let v = ip_json(&["-j", "-n", &ns.name, "link", "show", "dev", dev]);
    v[0]["address"].as_str().expect("MAC").to_string()
}

/// The router's neighbour MAC for `ip` on `svcr`.
fn router_neigh(lab: &Lab, ip: &str) -> Option<String> {
    let v = ip_json(&[
        "-j",
        "-n",
        &lab.router.name,
        "neigh",
        "show",
        ip,
        "dev",
        "svcr",
    ]);
    v.as_array()?.first()?["lladdr"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn service_vips_are_put_and_announced_on_the_services_interface() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    lab.router.sh(&format!(
        "ip link add svcr type veth peer name svc0 netns {} && ip addr add 10.66.0.1/24 dev svcr && \
         sysctl -qw net.ipv4.conf.svcr.arp_accept=1 && ip link set svcr up",
        node.name
    ));
    node.sh("ip addr add 10.66.0.11/24 dev svc0 && ip link set svc0 up");
    let api = ApiServer::start(&lab.router);
    let tmp = workdir();
    let log = tmp.join("vipr.log");
    let mut env = BTreeMap::new();
    for (k, v) in [
        ("vip_arp", "true"),
        ("vip_interface", "eth0"),
        ("svc_enable", "true"),
        ("vip_servicesinterface", "svc0"),
        ("prometheus_server", HTTP),
        ("vip_nodename", "node0"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    env.insert(
        "vipr_state_dir".into(),
        tmp.join("state").to_str().unwrap().into(),
    );
    env.insert(
        "k8s_config_file".into(),
        api.kubeconfig().to_str().unwrap().into(),
    );
    let vipr = Vipr::start(node, &env, &[], &log);
    let ctx = || {
        format!(
            "svc0 {:?} eth0 {:?}\n{}",
            addrs_on(node, "svc0"),
            addrs_on(node, "eth0"),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    api.create_service(&annotated_service("web", "10.66.0.100", json!({})));
    let mut tenant = annotated_service("tenant", "10.66.0.101", json!({}));
    tenant["metadata"]["annotations"]["kube-vip.io/serviceInterface"] = json!("svc9");
    api.create_service(&tenant);

    eventually("the Service's VIP on svc0", ctx, || {
        addrs_on(node, "svc0")
            .contains(&"10.66.0.100".to_string())
            .then_some(())
    });
    assert!(
        !addrs_on(node, "eth0").contains(&"10.66.0.100".to_string()),
        "{}",
        ctx()
    );
    // Announced on svc0: the router's entry comes from vipr's gratuitous ARP (no ping).
    let want = mac(node, "svc0");
    let got = eventually("the router's neighbour entry for the VIP", ctx, || {
        router_neigh(&lab, "10.66.0.100")
    });
    assert_eq!(got, want, "{}", ctx());

    // The tenant's interface is not allowed: held back, on no interface.
    let s = vipr.wait_status("the tenant's VIP held back", |s| {
        Vipr::vip(s, "10.66.0.101")["held_back"]
            .as_str()
            .is_some_and(|h| h.contains("kube-vip.io/serviceInterface names \"svc9\""))
    });
    assert_eq!(
        Vipr::vip(&s, "10.66.0.101")["interface"],
        Value::Null,
        "{s:#}"
    );
    for dev in ["svc0", "eth0", "lo"] {
        assert!(
            !addrs_on(node, dev).contains(&"10.66.0.101".to_string()),
            "{}",
            ctx()
        );
    }
}
