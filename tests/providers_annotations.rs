//! End to end: BGP peers from this node's annotations (kube-vip's `annotation` setting, in
//! the numbered form Equinix's cloud controller writes: `metal.equinix.com/bgp-peers-N-*`),
//! against a real kube-apiserver 1.20.2 and real FRR (10.55.0.1, MD5) and BIRD (10.55.0.2).
//!
//! Asserts that:
//! - while the Node has no such annotations vipr starts no session and is not ready (it waits
//!   instead of starting without peers, kube-vip #1488);
//! - annotating the Node brings the session up with the annotated AS, source and base64
//!   password, the VIP arrives at FRR;
//! - adding a second numbered peer to the annotations adds that session without touching
//!   the first;
//! - the password is never shown in vipr's log or status.

mod daemon_common;
mod k8s_common;

use daemon_common::*;
use k8s_common::*;
use serde_json::json;
use testbed::{Bird, Frr, Lab, Netns};

const PREFIX: &str = "metal.equinix.com";
const PASSWORD: &str = "Annotated-s3cret";
const PASSWORD_B64: &str = "QW5ub3RhdGVkLXMzY3JldA==";

fn node_object() -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node0"}})
}

fn annotations(two: bool) -> serde_json::Value {
    let mut a = json!({
        format!("{PREFIX}/bgp-peers-0-node-asn"): "65001",
        format!("{PREFIX}/bgp-peers-0-peer-asn"): "65000",
        format!("{PREFIX}/bgp-peers-0-peer-ip"): "10.55.0.1",
        format!("{PREFIX}/bgp-peers-0-src-ip"): "10.55.0.11",
        format!("{PREFIX}/bgp-peers-0-bgp-pass"): PASSWORD_B64,
    });
    if two {
        let m = a.as_object_mut().unwrap();
        m.insert(format!("{PREFIX}/bgp-peers-1-node-asn"), json!("65001"));
        m.insert(format!("{PREFIX}/bgp-peers-1-peer-asn"), json!("65000"));
        m.insert(format!("{PREFIX}/bgp-peers-1-peer-ip"), json!("10.55.0.2"));
        m.insert(format!("{PREFIX}/bgp-peers-1-src-ip"), json!("10.55.0.11"));
    }
    a
}

#[test]
fn peers_follow_the_node_annotations() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let p2 = Netns::new("va");
    lab.router.sh(&format!(
        "ip link add vetha type veth peer name eth0 netns {} && ip link set vetha master br0 && ip link set vetha up",
        p2.name
    ));
    p2.sh("ip link set eth0 up && ip addr add 10.55.0.2/24 dev eth0");
    let api = ApiServer::start(&lab.router);
    api.create("/api/v1/nodes", &node_object());
    let frr_conf = frr_router_conf("10.55.0.1", &["10.55.0.11".to_string()]).replace(
        " neighbor 10.55.0.11 passive\n",
        &format!(" neighbor 10.55.0.11 passive\n neighbor 10.55.0.11 password {PASSWORD}\n"),
    );
    let frr = Frr::start(&lab.router, &frr_conf);
    let bird = Bird::start(
        &p2,
        &format!(
            "router id 10.55.0.2;\nprotocol device {{}}\nprotocol bgp n0 {{\n  local 10.55.0.2 as {ROUTER_AS}; \
             neighbor 10.55.0.11 as {NODE_AS}; passive on; {BIRD_TIMERS}\n  ipv4 {{ import all; export none; }};\n}}\n"
        ),
    );
    let dir = workdir();
    let mut env = base_env(&dir.join("state"));
    for k in ["bgp_peers", "bgp_as", "address"] {
        env.remove(k);
    }
    env.insert("address".into(), VIP4.into());
    env.insert("annotation".into(), PREFIX.into());
    env.insert("vip_nodename".into(), "node0".into());
    env.insert(
        "k8s_config_file".into(),
        api.kubeconfig().to_str().unwrap().into(),
    );
    let vipr = Vipr::start(node, &env, &[], &dir.join("vipr.log"));

    // Without the annotations: no session, not ready.
    let s = vipr.wait_status("status without annotations", |_| true);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let s2 = vipr.wait_status("still waiting", |_| true);
    for st in [&s, &s2] {
        assert_eq!(st["peers"].as_array().map(|p| p.len()), Some(0), "{st}");
        assert_eq!(st["ready"], false);
    }

    // Annotated: the session comes up as the annotations say, with the password.
    api.merge_patch(
        "/api/v1/nodes/node0",
        &json!({"metadata": {"annotations": annotations(false)}}),
    );
    let vip = format!("{VIP4}/32");
    within(
        CONVERGE,
        "route at FRR (annotated, MD5)",
        || frr.logs(),
        || frr_paths(&frr, &vip).into_iter().next(),
    );
    let st = vipr.wait_status("ready with one peer", |s| s["ready"] == true);
    assert_eq!(Vipr::peer(&st, "10.55.0.1")["local_as"], NODE_AS);
    assert_eq!(Vipr::peer(&st, "10.55.0.1")["local_address"], "10.55.0.11");
    let established = frr.vtysh_json("show bgp neighbor 10.55.0.11 json")["10.55.0.11"]
        ["connectionsEstablished"]
        .clone();

    // A second numbered peer: added, the first untouched.
    api.merge_patch(
        "/api/v1/nodes/node0",
        &json!({"metadata": {"annotations": annotations(true)}}),
    );
    within(
        CONVERGE,
        "route at BIRD (second annotated peer)",
        || bird.birdc("show protocols all n0"),
        || bird_route(&bird, &vip, "n0"),
    );
    let n = frr.vtysh_json("show bgp neighbor 10.55.0.11 json");
    assert_eq!(n["10.55.0.11"]["bgpState"], "Established");
    assert_eq!(
        n["10.55.0.11"]["connectionsEstablished"], established,
        "first session untouched"
    );

    for (what, text) in [
        ("log", vipr.log()),
        ("status", http_get(node, HTTP, "/status").unwrap().1),
    ] {
        assert!(
            !text.contains(PASSWORD) && !text.contains(PASSWORD_B64),
            "password in {what}"
        );
    }
}
