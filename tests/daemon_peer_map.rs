//! Peers given as YAML mappings (issue 17) against real FRR, without Kubernetes: node labels
//! from the configuration select peers, per-peer hold time and keepalive, and `as:
//! external` / `as: internal` (FRR's `remote-as external|internal`).
//!
//! ```text
//!   ToR A 10.55.0.2 FRR AS 65000 ──┐ br0   vipr: as external, hold 9 / keepalive 3, rack=r1
//!   ToR B 10.55.0.3 FRR AS 65001 ──┤       vipr: as internal, hold 30 / keepalive 10, all
//!   ToR C 10.55.0.4 FRR AS 65000 ──┤       vipr: as internal (wrong: FRR is 65000), rack=r2
//!   node0 10.55.0.11 vipr (AS 65001, vipr_node_labels rack=r1) ──┤
//!   node1 10.55.0.12 vipr (AS 65001, vipr_node_labels rack=r2) ──┘
//! ```
//!
//! Both nodes run the same YAML file; only their labels differ. FRR proposes its default
//! 180 s / 60 s, so the negotiated timers are vipr's per-peer ones.
//!
//! Needs root; see `daemon_common`.

mod daemon_common;

use daemon_common::*;
use serde_json::Value;
use testbed::{Frr, Lab};

const A: &str = "10.55.0.2";
const B: &str = "10.55.0.3";
const C: &str = "10.55.0.4";

const CONFIG: &str = "bgp_enable: true
cp_enable: true
address: 192.0.2.10
bgp_as: 65001
bgp_hold_time: 3
bgp_keepalive_interval: 1
bgp_peers:
  - address: 10.55.0.2
    as: external
    hold_time: 9
    keepalive: 3
    node_selector:
      matchLabels: {rack: r1}
  - address: 10.55.0.3
    as: internal
    hold_time: 30
    keepalive: 10
  - address: 10.55.0.4
    as: internal
    node_selector:
      matchExpressions:
        - {key: rack, operator: In, values: [r2]}
";

/// A ToR's FRR: AS `asn`, passive neighbours node0 and node1 with FRR's default timers.
fn tor(ns: &testbed::Netns, id: &str, asn: u32) -> Frr {
    let (n0, n1) = (Lab::node_v4(0).to_string(), Lab::node_v4(1).to_string());
    let mut conf = frr_router_conf(id, &[n0.clone(), n1.clone()]).replace(
        &format!("router bgp {ROUTER_AS}\n"),
        &format!("router bgp {asn}\n bgp log-neighbor-changes\n"),
    );
    for n in [&n0, &n1] {
        conf = conf.replace(&format!(" neighbor {n} timers 1 3\n"), "");
    }
    Frr::start(ns, &conf)
}

fn established(frr: &Frr, peer: &str) -> bool {
    frr_neighbor(frr, peer)["bgpState"] == "Established"
}

#[test]
fn node_labels_from_the_configuration_select_peers_with_their_own_timers_and_as() {
    let lab = Lab::new(2);
    let (tor_a, tor_b, tor_c) = (lab_tor(&lab, 2), lab_tor(&lab, 3), lab_tor(&lab, 4));
    let fa = tor(&tor_a, A, 65000);
    let fb = tor(&tor_b, B, 65001);
    let fc = tor(&tor_c, C, 65000);
    let dir = workdir();
    let file = dir.join("vipr.yaml");
    std::fs::write(&file, CONFIG).unwrap();
    let start = |i: usize, rack: &str| {
        let mut env = base_env(&dir.join(&format!("state{i}")));
        env.remove("bgp_peers");
        env.remove("address");
        env.insert("vipr_node_labels".into(), format!("rack={rack}"));
        Vipr::start(
            &lab.nodes[i],
            &env,
            &["--config", file.to_str().unwrap()],
            &dir.join(&format!("vipr{i}.log")),
        )
    };
    let v0 = start(0, "r1");
    let v1 = start(1, "r2");
    let (n0, n1) = (Lab::node_v4(0).to_string(), Lab::node_v4(1).to_string());
    let ctx = || format!("{}\n{}\n{}", fa.logs(), v0.log(), v1.log());

    // node0 (rack r1): A (as external: FRR's 65000 accepted) and B (as internal: iBGP).
    eventually("node0 Established with A and B", ctx, || {
        (established(&fa, &n0) && established(&fb, &n0)).then_some(())
    });
    // node1 (rack r2): B; A is selected out, C refused.
    eventually("node1 Established with B", ctx, || {
        established(&fb, &n1).then_some(())
    });

    // Per-peer timers, as FRR negotiated them with node0.
    let a0 = frr_neighbor(&fa, &n0);
    let b0 = frr_neighbor(&fb, &n0);
    let timers = |v: &Value| {
        (
            v["bgpTimerHoldTimeMsecs"].as_u64(),
            v["bgpTimerKeepAliveIntervalMsecs"].as_u64(),
        )
    };
    assert_eq!(timers(&a0), (Some(9000), Some(3000)), "{a0:#}");
    assert_eq!(timers(&b0), (Some(30000), Some(10000)), "{b0:#}");
    assert_eq!(a0["remoteAs"], 65001);
    assert_eq!(b0["nbrInternalLink"], true, "{b0:#}");
    let s0 = v0.wait_status("node0's sessions", |s| {
        Vipr::peer(s, A)["state"] == "Established" && Vipr::peer(s, B)["state"] == "Established"
    });
    assert_eq!(Vipr::peer(&s0, A)["hold_time"], 9);
    assert_eq!(Vipr::peer(&s0, B)["hold_time"], 30);
    assert_eq!(Vipr::peer(&s0, C), Value::Null, "C is rack r2's");

    // node1: A selected out (status says why), C refused with Bad Peer AS.
    let s1 = v1.wait_status("A selected out and C refused", |s| {
        s["selected_out"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["address"] == A))
            && Vipr::peer(s, C)["last_error"]
                .as_str()
                .is_some_and(|e| e.to_ascii_lowercase().contains("bad peer as"))
    });
    let out = &s1["selected_out"][0];
    assert_eq!(
        out["reason"], "label rack=r2, the peer wants rack=r1",
        "{s1:#}"
    );
    assert_eq!(Vipr::peer(&s1, A), Value::Null);
    // FRR's log of the connection it accepted (a passive neighbour's OPEN exchange runs on
    // a second peer structure whose counters die with it).
    let line = eventually(
        "FRR C told Bad Peer AS",
        || fc.logs(),
        || {
            fc.logs()
                .lines()
                .find(|l| l.contains(&n1) && l.contains("received") && l.contains("Bad Peer AS"))
                .map(str::to_string)
        },
    );
    assert!(line.contains("NOTIFICATION"), "{line}");
    assert_ne!(frr_neighbor(&fc, &n1)["bgpState"], "Established");
    assert_ne!(frr_neighbor(&fa, &n1)["bgpState"], "Established");
    // Passwords and selectors aside, A never saw node1 connect.
    assert_eq!(
        frr_neighbor(&fa, &n1)["connectionsEstablished"]
            .as_u64()
            .unwrap_or(0),
        0
    );
}

/// A bad peer mapping stops `vipr manager` with exit status 2 and a message naming the
/// file, the line, the peer and the key, never the password.
#[test]
fn a_bad_peer_mapping_exits_2_naming_file_line_peer_and_key() {
    let dir = workdir();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "bgp_enable: true\ncp_enable: true\naddress: 192.0.2.10\nbgp_peers:\n\
         \x20 - 10.55.0.9:65000::false\n\
         \x20 - address: 10.55.0.2\n    as: 65000\n    password: Zq7-secret\n    keepalive: 40\n",
    )
    .unwrap();
    let out = std::process::Command::new(vipr_bin())
        .args(["manager", "--config", file.to_str().unwrap()])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = format!(
        "config file {}: line 9: bgp_peers: peer #2 (10.55.0.2): keepalive: 40 must be less than the hold time (30)",
        file.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("Zq7"), "{err}");
}

/// Without Kubernetes a relabel is a reload: `vipr_node_labels` changed in the file and
/// SIGHUP moves the node from rack r1's ToR (A) to rack r2's (C, here as a plain eBGP peer)
/// while the session with B (no selector) is not reset.
#[test]
fn a_reload_with_new_node_labels_moves_only_the_selected_sessions() {
    let lab = Lab::new(1);
    let (tor_a, tor_b, tor_c) = (lab_tor(&lab, 2), lab_tor(&lab, 3), lab_tor(&lab, 4));
    let fa = tor(&tor_a, A, 65000);
    let fb = tor(&tor_b, B, 65000);
    let fc = tor(&tor_c, C, 65000);
    let conf = |rack: &str| {
        format!(
            "bgp_enable: true\ncp_enable: true\naddress: 192.0.2.10\nbgp_as: 65001\n\
             vipr_node_labels: {{rack: {rack}}}\nbgp_peers:\n\
             \x20 - {{address: {A}, as: 65000, node_selector: {{matchLabels: {{rack: r1}}}}}}\n\
             \x20 - {{address: {B}, as: 65000}}\n\
             \x20 - {{address: {C}, as: 65000, node_selector: {{matchLabels: {{rack: r2}}}}}}\n"
        )
    };
    let dir = workdir();
    let file = dir.join("vipr.yaml");
    std::fs::write(&file, conf("r1")).unwrap();
    let mut env = base_env(&dir.join("state"));
    env.remove("bgp_peers");
    env.remove("address");
    let mut v = Vipr::start(
        &lab.nodes[0],
        &env,
        &["--config", file.to_str().unwrap()],
        &dir.join("vipr.log"),
    );
    let n0 = Lab::node_v4(0).to_string();
    let ctx = || v.log();
    eventually("A and B Established", ctx, || {
        (established(&fa, &n0) && established(&fb, &n0)).then_some(())
    });
    assert!(!established(&fc, &n0));
    let b_before = frr_neighbor(&fb, &n0);
    assert!(
        b_before["bgpTimerUpEstablishedEpoch"]
            .as_u64()
            .is_some_and(|e| e > 0)
            && b_before["connectionsEstablished"].as_u64() == Some(1),
        "{b_before:#}"
    );
    v.reload(&file, &conf("r2"), 1);
    let ctx = || v.log();
    eventually("C Established, A down", ctx, || {
        (established(&fc, &n0) && !established(&fa, &n0)).then_some(())
    });
    let b_after = frr_neighbor(&fb, &n0);
    // The counters are exact; FRR derives the up-epoch from the uptime at each call
    // (within a second).
    for k in ["connectionsEstablished", "connectionsDropped"] {
        assert_eq!(b_before[k], b_after[k], "B's session was reset ({k})");
    }
    let epoch = |v: &Value| v["bgpTimerUpEstablishedEpoch"].as_u64().unwrap_or(0);
    assert!(
        epoch(&b_before).abs_diff(epoch(&b_after)) <= 1,
        "B's session was reset: {b_before:#} then {b_after:#}"
    );
    assert_eq!(b_after["bgpState"], "Established");
}
