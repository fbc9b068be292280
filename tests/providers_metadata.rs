//! End to end: BGP peers from an Equinix Metal-format metadata service served by a local
//! HTTP server in the node's namespace. Two real peers: FRR on 10.55.0.1 (MD5, as the
//! metadata says) and BIRD on 10.55.0.2 (its own namespace on the lab bridge).
//!
//! Asserts that:
//! - before the metadata answers (it returns 500), vipr has no peers and `/readyz` is 503;
//! - with the metadata, both sessions come up with the AS, router id and password it gives,
//!   the VIP arrives at both peers, `/readyz` turns 200;
//! - the metadata changes one peer (BIRD's entry becomes multihop) → only that session
//!   resets, FRR's session is untouched;
//! - the metadata returns 500s and then a truncated body for a while → both sessions stay up;
//! - the MD5 password never appears in vipr's log, `/status` or `/metrics`.

mod daemon_common;

use std::time::Duration;

use daemon_common::*;
use testbed::{wait_for, Bird, Frr, Lab, Netns};

const FRR_PEER: &str = "10.55.0.1";
const BIRD_PEER: &str = "10.55.0.2";
const PASSWORD: &str = "Metal-s3cret-pw";

fn metadata(bird_multihop: bool) -> String {
    format!(
        r#"{{"id":"a1b2","hostname":"node0","facility":"test","bgp_neighbors":[
  {{"address_family":4,"customer_as":{NODE_AS},"customer_ip":"10.55.0.11","md5_enabled":true,
    "md5_password":"{PASSWORD}","multihop":false,"peer_as":{ROUTER_AS},"peer_ips":["{FRR_PEER}"],
    "routes_in":[{{"route":"192.0.2.0/24","exact":false}}],"routes_out":[]}},
  {{"address_family":4,"customer_as":{NODE_AS},"customer_ip":"10.55.0.11","md5_enabled":false,
    "md5_password":null,"multihop":{bird_multihop},"peer_as":{ROUTER_AS},"peer_ips":["{BIRD_PEER}"],
    "routes_in":[],"routes_out":[]}}
]}}"#
    )
}

fn json(body: &str) -> Reply {
    Reply::new("200 OK", "application/json", body)
}

/// FRR's (state, connections established) for the node.
fn frr_conn(frr: &Frr) -> (String, u64) {
    let v = frr.vtysh_json("show bgp neighbor 10.55.0.11 json");
    let n = &v["10.55.0.11"];
    (
        n["bgpState"].as_str().unwrap_or_default().to_string(),
        n["connectionsEstablished"].as_u64().unwrap_or(0),
    )
}

/// BIRD's BGP state and the time of its last state change for protocol n0.
fn bird_state(bird: &Bird) -> (String, String) {
    let out = bird.birdc("show protocols n0");
    let row: Vec<String> = out
        .lines()
        .find(|l| l.starts_with("n0 "))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    (
        row.get(5).cloned().unwrap_or_default(),
        row.get(4).cloned().unwrap_or_default(),
    )
}

#[test]
fn peers_follow_the_metadata_service() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let p2 = Netns::new("vm");
    lab.router.sh(&format!(
        "ip link add vethm type veth peer name eth0 netns {} && ip link set vethm master br0 && ip link set vethm up",
        p2.name
    ));
    p2.sh("ip link set eth0 up && ip addr add 10.55.0.2/24 dev eth0");
    let frr_conf = frr_router_conf(FRR_PEER, &["10.55.0.11".to_string()]).replace(
        " neighbor 10.55.0.11 passive\n",
        &format!(" neighbor 10.55.0.11 passive\n neighbor 10.55.0.11 password {PASSWORD}\n"),
    );
    let frr = Frr::start(&lab.router, &frr_conf);
    let bird = Bird::start(
        &p2,
        &format!(
            "router id {BIRD_PEER};\nprotocol device {{}}\nprotocol bgp n0 {{\n  local {BIRD_PEER} as {ROUTER_AS}; \
             neighbor 10.55.0.11 as {NODE_AS}; passive on; {BIRD_TIMERS}\n  ipv4 {{ import all; export none; }};\n}}\n"
        ),
    );
    let meta = HttpServer::start(
        node,
        Reply::new("500 Internal Server Error", "text/plain", "not yet\n"),
    );
    let dir = workdir();
    let mut env = base_env(&dir.join("state"));
    env.remove("bgp_peers");
    env.remove("bgp_as");
    env.remove("address");
    env.insert("address".into(), VIP4.into());
    env.insert("vipr_peers_from".into(), "equinix-metal".into());
    env.insert(
        "vipr_metadata_url".into(),
        format!("{}/metadata", meta.base),
    );
    env.insert("vipr_metadata_interval".into(), "1".into());
    let vipr = Vipr::start(node, &env, &[], &dir.join("vipr.log"));

    // Not ready and no peers while the metadata answers 500.
    wait_for(Duration::from_secs(10), || (meta.hits() >= 2).then_some(()))
        .expect("vipr polls the metadata");
    let s = vipr.wait_status("status before metadata", |_| true);
    assert_eq!(s["peers"].as_array().map(|p| p.len()), Some(0), "{s}");
    assert_eq!(s["ready"], false);
    assert_eq!(http_get(node, HTTP, "/readyz").map(|r| r.0), Some(503));

    // The metadata appears: both sessions with its AS, router id and password.
    meta.set(json(&metadata(false)));
    let vip = format!("{VIP4}/32");
    eventually(
        "route at FRR (MD5)",
        || frr.logs(),
        || frr_paths(&frr, &vip).into_iter().next(),
    );
    eventually(
        "route at BIRD",
        || bird.birdc("show protocols all n0"),
        || bird_route(&bird, &vip, "n0"),
    );
    let s = vipr.wait_status("both peers Established", |s| {
        [FRR_PEER, BIRD_PEER]
            .iter()
            .all(|p| Vipr::peer(s, p)["state"] == "Established")
            && s["ready"] == true
    });
    assert_eq!(Vipr::peer(&s, FRR_PEER)["local_as"], NODE_AS);
    assert_eq!(Vipr::peer(&s, FRR_PEER)["local_address"], "10.55.0.11");
    let frr_neighbor = frr.vtysh_json("show bgp neighbor 10.55.0.11 json");
    assert_eq!(
        frr_neighbor["10.55.0.11"]["remoteRouterId"], "10.55.0.11",
        "router id = customer_ip"
    );
    assert_eq!(http_get(node, HTTP, "/readyz").map(|r| r.0), Some(200));
    let (_, frr_established) = frr_conn(&frr);
    let bird_since = bird_state(&bird).1;

    // One peer changes (BIRD's entry becomes multihop): only that session resets.
    let resets = vipr.run_log().matches("session reset").count();
    meta.set(json(&metadata(true)));
    wait_for(CONVERGE, || {
        (vipr
            .run_log()
            .matches("peer configuration changed: session reset peer=10.55.0.2")
            .count()
            > 0)
        .then_some(())
    })
    .unwrap_or_else(|| panic!("BIRD's session was not reset:\n{}", vipr.log()));
    eventually(
        "BIRD re-established",
        || bird.birdc("show protocols all n0"),
        || {
            (bird_state(&bird).0 == "Established" && bird_state(&bird).1 != bird_since)
                .then_some(())
        },
    );
    assert_eq!(
        vipr.run_log().matches("session reset").count(),
        resets + 1,
        "only one session reset:\n{}",
        vipr.log()
    );
    assert_eq!(
        frr_conn(&frr),
        ("Established".to_string(), frr_established),
        "FRR untouched"
    );

    // The metadata service breaks for a while: nothing changes.
    let (frr_before, bird_before) = (frr_conn(&frr), bird_state(&bird));
    for broken in [
        Reply::new("500 Internal Server Error", "text/plain", "boom\n"),
        json(&metadata(true)[..60]),
        json("{\"bgp_neighbors\": \"nope\"}"),
    ] {
        let hits = meta.hits();
        meta.set(broken);
        wait_for(Duration::from_secs(10), || {
            (meta.hits() >= hits + 2).then_some(())
        })
        .expect("vipr keeps polling");
        assert_eq!(
            frr_conn(&frr),
            frr_before,
            "FRR session untouched by a broken metadata answer"
        );
        assert_eq!(
            bird_state(&bird),
            bird_before,
            "BIRD session untouched by a broken metadata answer"
        );
        assert!(frr_paths(&frr, &vip).into_iter().next().is_some());
    }
    let log = vipr.log();
    assert!(log.contains("metadata"), "failures are logged:\n{log}");

    // The password is never shown.
    for (what, text) in [
        ("log", log),
        ("status", http_get(node, HTTP, "/status").unwrap().1),
        ("metrics", http_get(node, HTTP, "/metrics").unwrap().1),
    ] {
        assert!(!text.contains(PASSWORD), "password in {what}");
    }
}
