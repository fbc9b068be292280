//! End to end: SIGHUP applies the settings an earlier vipr read only once at start, each
//! seen taking effect from outside, while the session to BIRD (10.55.0.1) stays up:
//!
//! - `prometheus_server`: the HTTP endpoints move to the new address, the old one closes;
//! - `vipr_bgp_listen`: the passive listener opens, and closes again;
//! - `vipr_peers_from` + `vipr_metadata_url`: peers come from a metadata service (FRR on
//!   10.55.0.2 in its own namespace gets a session); a new URL names another peer, the
//!   old service is no longer asked and FRR's session goes;
//! - `vip_loglevel`: debug lines appear;
//! - `vipr_state_dir` (fixed while running): one line names it, nothing else changes.
//!
//! (The Service filter and `svc_enable` follow SIGHUP the same way: `tests/k8s_reload.rs`.)

mod daemon_common;

use std::path::Path;
use std::time::Duration;

use daemon_common::*;
use testbed::{Bird, Frr, Lab, Netns};

const BIRD_PEER: &str = "10.55.0.1";
const FRR_PEER: &str = "10.55.0.2";

/// The YAML file: static BIRD peer, and whatever `extra` adds.
fn yaml(state: &Path, extra: &str) -> String {
    format!(
        "bgp_enable: true\ncp_enable: true\naddress: {VIP4}\nbgp_as: {NODE_AS}\n\
         bgp_hold_time: 3\nbgp_keepalive_interval: 1\nvipr_state_dir: {}\n\
         bgp_peers:\n  - {BIRD_PEER}:{ROUTER_AS}::false\n{extra}",
        state.display()
    )
}

fn metadata(peer: &str) -> Reply {
    Reply::new(
        "200 OK",
        "application/json",
        &format!(
            r#"{{"bgp_neighbors":[{{"address_family":4,"customer_as":{NODE_AS},"customer_ip":"10.55.0.11",
            "md5_enabled":false,"multihop":false,"peer_as":{ROUTER_AS},"peer_ips":["{peer}"],
            "routes_in":[],"routes_out":[]}}]}}"#
        ),
    )
}

fn listening(ns: &Netns, port: u16) -> bool {
    ns.sh("ss -ltnH")
        .lines()
        .any(|l| l.contains(&format!(":{port} ")))
}

fn frr_state(frr: &Frr) -> String {
    let v = frr.vtysh_json("show bgp neighbor 10.55.0.11 json");
    v["10.55.0.11"]["bgpState"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn sighup_applies_the_settings_read_once_before() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let p2 = Netns::new("vf");
    lab.router.sh(&format!(
        "ip link add vethf type veth peer name eth0 netns {} && ip link set vethf master br0 && ip link set vethf up",
        p2.name
    ));
    p2.sh("ip link set lo up && ip link set eth0 up && ip addr add 10.55.0.2/24 dev eth0");
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let frr = Frr::start(&p2, &frr_router_conf(FRR_PEER, &["10.55.0.11".to_string()]));
    let meta1 = HttpServer::start(node, metadata(FRR_PEER));
    let meta2 = HttpServer::start(node, metadata("10.55.0.3"));
    let dir = workdir();
    let state = dir.join("state");
    let file = dir.join("vipr.yaml");
    let http1 = "prometheus_server: 127.0.0.1:2112\n";
    std::fs::write(&file, yaml(&state, http1)).unwrap();
    let mut vipr = Vipr::start(
        node,
        &Default::default(),
        &["--config", file.to_str().unwrap()],
        &dir.join("vipr.log"),
    );
    let ctx = || bird.birdc("show protocols all n0");
    eventually("BIRD Established", ctx, || {
        (bird.protocol_state("n0") == "Established").then_some(())
    });
    let bird_since = bird_session(&bird);
    let mut n = 0;

    // The HTTP endpoints move.
    let http2 = "prometheus_server: 127.0.0.1:2113\n";
    n += 1;
    vipr.reload(&file, &yaml(&state, http2), n);
    eventually(
        "HTTP on the new address",
        || vipr.log(),
        || http_get(node, "127.0.0.1:2113", "/healthz").filter(|r| r.0 == 200),
    );
    assert!(
        http_get(node, "127.0.0.1:2112", "/healthz").is_none(),
        "the old address still answers"
    );

    // The passive listener opens and closes.
    n += 1;
    vipr.reload(
        &file,
        &yaml(&state, &format!("{http2}vipr_bgp_listen: 0.0.0.0:1179\n")),
        n,
    );
    eventually(
        "listening on 1179",
        || node.sh("ss -ltn"),
        || listening(node, 1179).then_some(()),
    );
    n += 1;
    vipr.reload(&file, &yaml(&state, http2), n);
    eventually(
        "no longer listening on 1179",
        || node.sh("ss -ltn"),
        || (!listening(node, 1179)).then_some(()),
    );

    // Peers from a metadata service, then from another URL.
    let metal = |url: &str| {
        format!(
            "{http2}vipr_peers_from: equinix-metal\nvipr_metadata_url: {url}/metadata\nvipr_metadata_interval: 1\n"
        )
    };
    n += 1;
    vipr.reload(&file, &yaml(&state, &metal(&meta1.base)), n);
    eventually(
        "FRR Established (peer from the metadata)",
        || frr.logs(),
        || (frr_state(&frr) == "Established").then_some(()),
    );
    n += 1;
    vipr.reload(&file, &yaml(&state, &metal(&meta2.base)), n);
    eventually(
        "FRR's session gone (the new URL names another peer)",
        || frr.logs(),
        || (frr_state(&frr) != "Established").then_some(()),
    );
    // (The status is on the moved HTTP address now.)
    let peers = |s: &serde_json::Value| -> Vec<String> {
        s["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["address"].as_str().map(str::to_string))
            .collect()
    };
    let s = eventually(
        "the new metadata's peer in /status",
        || vipr.log(),
        || {
            let (_, body) = http_get(node, "127.0.0.1:2113", "/status")?;
            let s: serde_json::Value = serde_json::from_str(&body).ok()?;
            peers(&s).contains(&"10.55.0.3".to_string()).then_some(s)
        },
    );
    assert!(!peers(&s).contains(&FRR_PEER.to_string()), "{s}");
    let hits = meta1.hits();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(meta1.hits(), hits, "the old metadata URL is still polled");
    assert!(meta2.hits() > 0);

    // The log level.
    let extra = format!("{}vip_loglevel: debug\n", metal(&meta2.base));
    n += 1;
    vipr.reload(&file, &yaml(&state, &extra), n);
    eventually(
        "debug lines",
        || vipr.log(),
        || vipr.run_log().contains("DEBUG").then_some(()),
    );

    // A node setting: named, not applied.
    let moved = yaml(&dir.join("elsewhere"), &extra);
    n += 1;
    vipr.reload(&file, &moved, n);
    eventually(
        "the restart line",
        || vipr.log(),
        || {
            vipr.run_log()
                .lines()
                .find(|l| {
                    l.contains("cannot change while vipr runs") && l.contains("vipr_state_dir")
                })
                .map(str::to_string)
        },
    );

    // BIRD's session never reset.
    assert_eq!(bird.protocol_state("n0"), "Established");
    let now = bird_session(&bird);
    assert!(
        same_session(&now, &bird_since),
        "BIRD's session changed: {bird_since:?} then {now:?}"
    );
    vipr.assert_running();
}
