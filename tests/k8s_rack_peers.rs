//! Rack-aware peers (issue 17) against a real kube-apiserver and four real FRR ToRs: one
//! configuration for every node, each node peering only with its rack's ToRs by the labels
//! of its Node object, followed live.
//!
//! ```text
//!   rack r1: ToR 10.55.0.2, ToR 10.55.0.3 ─┐ br0 ├─ node0 10.55.0.11 (rack=r1)
//!   rack r2: ToR 10.55.0.4, ToR 10.55.0.5 ─┤     ├─ node1 10.55.0.12 (rack=r1)
//!   kube-apiserver 10.55.0.1 ──────────────┘     ├─ node2 10.55.0.13 (rack=r2)
//!                                                └─ node3 10.55.0.14 (rack=r2)
//! ```
//!
//! Every vipr runs the same YAML file (four peers, a `node_selector` per rack). Each ToR's
//! FRR lists all four nodes as passive neighbours, so a session at a ToR is vipr's choice.
//! - every node is Established with exactly its rack's two ToRs;
//! - relabelling node0 to rack r2 (a merge patch of its Node) moves its two sessions to
//!   r2's ToRs, and `vipr status` names the r1 ToRs as selected out by the label;
//! - no other session resets: FRR's `connectionsEstablished` and
//!   `bgpTimerUpEstablishedEpoch` of every other (ToR, node) pair are unchanged.
//!
//! And a peer's password from a Secret (`password_secret`): the peer waits, named in the
//! status, until the Secret exists; then the MD5-signed session comes up at FRR.
//!
//! Needs root; see `daemon_common`.

mod daemon_common;
mod k8s_common;

use std::collections::BTreeMap;

use daemon_common::*;
use k8s_common::*;
use serde_json::json;
use testbed::{Frr, Lab};

const NODES: usize = 4;
/// The ToRs' last octets, rack r1 first.
const TORS: [u8; 4] = [2, 3, 4, 5];

const CONFIG: &str = "bgp_enable: true
cp_enable: true
address: 192.0.2.10
bgp_as: 65001
bgp_hold_time: 3
bgp_keepalive_interval: 1
bgp_peers:
  - {address: 10.55.0.2, as: 65000, node_selector: {matchLabels: {rack: r1}}}
  - {address: 10.55.0.3, as: 65000, node_selector: {matchLabels: {rack: r1}}}
  - {address: 10.55.0.4, as: 65000, node_selector: {matchLabels: {rack: r2}}}
  - {address: 10.55.0.5, as: 65000, node_selector: {matchLabels: {rack: r2}}}
";

fn tor_addr(t: u8) -> String {
    format!("10.55.0.{t}")
}

fn rack_of_tor(t: u8) -> &'static str {
    if t <= 3 {
        "r1"
    } else {
        "r2"
    }
}

/// (ToR, node) → (connectionsEstablished, connectionsDropped, bgpTimerUpEstablishedEpoch)
/// of the Established sessions. FRR derives the epoch from the uptime at each call, so two
/// reads of one session may differ by a second; the counters are exact.
type Sessions = BTreeMap<(u8, usize), (u64, u64, u64)>;

/// The same session: the same counters, the up-epoch within FRR's one-second rounding.
fn same((c1, d1, e1): (u64, u64, u64), (c2, d2, e2): (u64, u64, u64)) -> bool {
    c1 == c2 && d1 == d2 && e1.abs_diff(e2) <= 1
}

fn sessions(frrs: &[Frr]) -> Sessions {
    let mut out = Sessions::new();
    for (t, frr) in TORS.iter().zip(frrs) {
        for n in 0..NODES {
            let v = frr_neighbor(frr, &Lab::node_v4(n).to_string());
            if v["bgpState"] == "Established" {
                let c = v["connectionsEstablished"].as_u64().unwrap_or(0);
                let d = v["connectionsDropped"].as_u64().unwrap_or(u64::MAX);
                let e = v["bgpTimerUpEstablishedEpoch"].as_u64().unwrap_or(0);
                // The witnesses of "never reset" must exist to prove anything.
                assert!(c >= 1 && d != u64::MAX && e > 0, "FRR's counters: {v:#}");
                out.insert((*t, n), (c, d, e));
            }
        }
    }
    out
}

/// The (ToR, node) pairs that should be up for these racks of the nodes.
fn expected(racks: &[&str; NODES]) -> Vec<(u8, usize)> {
    let mut v = Vec::new();
    for t in TORS {
        for (n, r) in racks.iter().enumerate() {
            if rack_of_tor(t) == *r {
                v.push((t, n));
            }
        }
    }
    v
}

#[test]
fn one_configuration_every_node_peers_with_its_racks_tors_and_follows_a_relabel() {
    let lab = Lab::new(NODES);
    let api = ApiServer::start(&lab.router);
    let tors: Vec<_> = TORS.iter().map(|t| lab_tor(&lab, *t)).collect();
    let nodes: Vec<String> = (0..NODES).map(|n| Lab::node_v4(n).to_string()).collect();
    let frrs: Vec<Frr> = TORS
        .iter()
        .zip(&tors)
        .map(|(t, ns)| Frr::start(ns, &frr_router_conf(&tor_addr(*t), &nodes)))
        .collect();
    let mut racks = ["r1", "r1", "r2", "r2"];
    for (n, r) in racks.iter().enumerate() {
        api.create(
            "/api/v1/nodes",
            &json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": format!("node{n}"), "labels": {"rack": r}}}),
        );
    }
    let dir = workdir();
    let file = dir.join("vipr.yaml");
    std::fs::write(&file, CONFIG).unwrap();
    let vs: Vec<Vipr> = (0..NODES)
        .map(|n| {
            let mut env = base_env(&dir.join(&format!("state{n}")));
            env.remove("bgp_peers");
            env.remove("address");
            env.insert(
                "k8s_config_file".into(),
                api.kubeconfig().to_str().unwrap().to_string(),
            );
            env.insert("vip_nodename".into(), format!("node{n}"));
            Vipr::start(
                &lab.nodes[n],
                &env,
                &["--config", file.to_str().unwrap()],
                &dir.join(&format!("vipr{n}.log")),
            )
        })
        .collect();
    let ctx = || {
        format!(
            "sessions {:?}\n{}",
            sessions(&frrs),
            vs.iter().map(|v| v.log()).collect::<Vec<_>>().join("\n")
        )
    };
    let want = expected(&racks);
    let before = eventually("every node Established with its rack's ToRs", ctx, || {
        let s = sessions(&frrs);
        (s.keys().copied().collect::<Vec<_>>() == want).then_some(s)
    });

    // Relabel node0: r1 → r2.
    racks[0] = "r2";
    api.merge_patch(
        "/api/v1/nodes/node0",
        &json!({"metadata": {"labels": {"rack": "r2"}}}),
    );
    let want = expected(&racks);
    let after = eventually("node0's sessions moved to rack r2's ToRs", ctx, || {
        let s = sessions(&frrs);
        (s.keys().copied().collect::<Vec<_>>() == want).then_some(s)
    });
    // The other nodes' sessions never reset.
    for (pair, was) in &before {
        if pair.1 != 0 {
            let now = after.get(pair).copied();
            assert!(
                now.is_some_and(|now| same(*was, now)),
                "session {pair:?} was reset: {was:?} then {now:?}\n{}",
                ctx()
            );
        }
    }
    // node0's old sessions ended with a Cease from vipr (peer de-configured), not a
    // failure.
    for t in [2u8, 3] {
        let v = frr_neighbor(&frrs[(t - 2) as usize], &nodes[0]);
        assert_ne!(v["bgpState"], "Established", "{v:#}");
        let why = v["lastResetDueTo"].as_str().unwrap_or_default().to_string();
        assert!(
            why.contains("Notification received"),
            "ToR {t}: {why}\n{v:#}"
        );
        let code = v["lastNotificationReason"].as_str().unwrap_or_default();
        assert!(code.contains("Cease"), "ToR {t}: {code}\n{v:#}");
    }
    let st = vs[0].wait_status("the r1 ToRs selected out", |s| {
        s["selected_out"].as_array().is_some_and(|o| o.len() == 2)
    });
    for o in st["selected_out"].as_array().unwrap() {
        assert_eq!(
            o["reason"], "label rack=r2, the peer wants rack=r1",
            "{st:#}"
        );
    }
}

/// A peer's TCP MD5 password from a Secret key (`password_secret`): the peer waits, named
/// in `vipr status` with the Secret, until the Secret exists; then the session comes up with
/// FRR's `neighbor ... password`; the password is never in vipr's log or status.
#[test]
fn a_password_from_a_secret_brings_the_session_up_once_the_secret_exists() {
    const PW: &str = "pw-Zq7-rack";
    let lab = Lab::new(1);
    let api = ApiServer::start(&lab.router);
    let tor = lab_tor(&lab, 2);
    let node = Lab::node_v4(0).to_string();
    let conf = frr_router_conf("10.55.0.2", std::slice::from_ref(&node)).replace(
        &format!(" neighbor {node} passive\n"),
        &format!(" neighbor {node} passive\n neighbor {node} password {PW}\n"),
    );
    let frr = Frr::start(&tor, &conf);
    let dir = workdir();
    let file = dir.join("vipr.yaml");
    std::fs::write(
        &file,
        "bgp_enable: true\ncp_enable: true\naddress: 192.0.2.10\nbgp_as: 65001\n\
         bgp_hold_time: 3\nbgp_keepalive_interval: 1\nbgp_peers:\n\
         \x20 - {address: 10.55.0.2, as: 65000, password_secret: {name: tor-auth, key: tor1}}\n",
    )
    .unwrap();
    let mut env = base_env(&dir.join("state"));
    env.remove("bgp_peers");
    env.remove("address");
    env.insert(
        "k8s_config_file".into(),
        api.kubeconfig().to_str().unwrap().to_string(),
    );
    env.insert("vip_nodename".into(), "node0".into());
    let v = Vipr::start(
        &lab.nodes[0],
        &env,
        &["--config", file.to_str().unwrap()],
        &dir.join("vipr.log"),
    );
    let st = v.wait_status("the peer waiting for its Secret", |s| {
        s["selected_out"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Secret kube-system/tor-auth key tor1: no such Secret"))
    });
    assert_eq!(Vipr::peer(&st, "10.55.0.2"), serde_json::Value::Null);
    api.create(
        "/api/v1/namespaces/kube-system/secrets",
        &json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "tor-auth", "namespace": "kube-system"},
                "stringData": {"tor1": PW}}),
    );
    eventually(
        "the MD5-signed session at FRR",
        || v.log(),
        || (frr_neighbor(&frr, &node)["bgpState"] == "Established").then_some(()),
    );
    let st = v.wait_status("Established", |s| {
        Vipr::peer(s, "10.55.0.2")["state"] == "Established"
    });
    assert!(st["selected_out"].is_null(), "{st:#}");
    assert!(!st.to_string().contains(PW));
    assert!(!v.log().contains(PW), "the password is in the log");
}
