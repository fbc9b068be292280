//! End to end: BGP attribute sets per pool, per Service and per control-plane VIP, against a
//! real kube-apiserver 1.20.2 and a real FRR router in the lab's router namespace.
//!
//! ```text
//!   node0: vipr AS 65001 ──eBGP──┐
//!                                ├── br0 ── router: FRR AS 65000 + kube-apiserver
//!   node1: vipr AS 65000 ──iBGP──┘
//! ```
//!
//! Both nodes read one YAML file (but for `bgp_as` and the node name) with four named sets,
//! a pool `web` whose routes carry `base` and whose Services may choose `backup`, and the
//! control-plane VIP carrying `cp`. FRR must see:
//! - a Service without annotation: `base`'s communities (incl. no-export), large community,
//!   MED, AS path `65001 65001 65001` from the eBGP node (prepend 2), LOCAL_PREF 200 from the
//!   iBGP node (which never prepends);
//! - a Service choosing `backup`: its community, MED and LOCAL_PREF;
//! - a Service asking for `blackhole`, which its pool does not allow: a
//!   `BGPAttributesRefused` Warning Event on it, and its route with `base`, never 65535:666;
//! - the control-plane VIP with `cp`;
//! - after `base` is changed and SIGHUP: the new attributes on the routes of the pool, the
//!   chosen ones untouched, and FRR's sessions never dropped.

mod daemon_common;
mod k8s_common;

use std::path::Path;

use daemon_common::*;
use k8s_common::*;
use serde_json::{json, Value};
use testbed::{Frr, Lab};

const SETS_BASE: &str =
    "base;communities=65000:100|no-export;large-communities=65000:1:2;med=10;local-pref=200;prepend=2";
const SETS_BASE_CHANGED: &str =
    "base;communities=65000:111;large-communities=65000:1:3;med=11;local-pref=210;prepend=1";

fn yaml(node: usize, state: &Path, kubeconfig: &Path, base: &str) -> String {
    let local_as = if node == 0 { NODE_AS } else { ROUTER_AS };
    format!(
        "bgp_enable: true\nbgp_as: {local_as}\nbgp_peers: 10.55.0.1:{ROUTER_AS}::false\n\
         bgp_hold_time: 3\nbgp_keepalive_interval: 1\nprometheus_server: {HTTP}\n\
         vip_nodename: node{node}\nvipr_state_dir: {}\nk8s_config_file: {}\n\
         svc_enable: true\ncp_enable: true\naddress: {VIP4}\n\
         vipr_bgp_attribute_sets:\n  - \"{base}\"\n  - \"backup;communities=65000:200;med=20;local-pref=50\"\n\
         \x20 - \"blackhole;communities=blackhole\"\n\
         \x20 - \"cp;communities=65000:999;large-communities=65000:9:9;local-pref=300\"\n\
         vipr_control_plane_bgp_attributes: cp\n\
         vipr_pools:\n  - \"198.51.100.0/24;name=web;bgp-attributes=base;bgp-allowed=backup\"\n",
        state.display(),
        kubeconfig.display()
    )
}

/// FRR's path for `prefix` learnt from `peer`, if any.
fn path_from(frr: &Frr, prefix: &str, peer: &str) -> Option<Value> {
    frr_paths(frr, prefix)
        .into_iter()
        .find(|p| p["peer"]["peerId"] == peer)
}

fn text(v: &Value, a: &str, b: &str) -> String {
    v[a][b].as_str().unwrap_or_default().to_string()
}

/// The attributes of a path that the test compares (FRR prints an empty AS path as
/// `Local`).
#[derive(Debug, PartialEq)]
struct Seen {
    communities: String,
    large: String,
    as_path: String,
    med: Option<u64>,
    local_pref: Option<u64>,
}

fn seen(p: &Value) -> Seen {
    Seen {
        communities: text(p, "community", "string"),
        large: text(p, "largeCommunity", "string"),
        as_path: text(p, "aspath", "string"),
        med: p["metric"].as_u64(),
        // FRR 8.4 names LOCAL_PREF `locPrf` and MED `metric` here.
        local_pref: p["locPrf"].as_u64(),
    }
}

fn seen_at(frr: &Frr, prefix: &str, peer: &str) -> Option<Seen> {
    path_from(frr, prefix, peer).map(|p| seen(&p))
}

/// FRR's count of sessions dropped with `peer`.
fn dropped(frr: &Frr, peer: &str) -> u64 {
    frr.vtysh_json(&format!("show bgp neighbor {peer} json"))[peer]["connectionsDropped"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

#[test]
fn pool_service_and_control_plane_attributes_reach_frr_and_follow_a_reload() {
    let lab = Lab::new(2);
    let api = ApiServer::start(&lab.router);
    let (n0, n1) = (Lab::node_v4(0).to_string(), Lab::node_v4(1).to_string());
    let conf = frr_router_conf("10.55.0.1", &[n0.clone(), n1.clone()]).replace(
        &format!("neighbor {n1} remote-as {NODE_AS}"),
        &format!("neighbor {n1} remote-as {ROUTER_AS}"),
    );
    let frr = Frr::start(&lab.router, &conf);
    let kc = api.kubeconfig();
    let dirs = [workdir(), workdir()];
    let files: Vec<_> = (0..2).map(|i| dirs[i].join("vipr.yaml")).collect();
    let mut vipr: Vec<Vipr> = (0..2)
        .map(|i| {
            let state = dirs[i].join("state");
            std::fs::write(&files[i], yaml(i, &state, &kc, SETS_BASE)).unwrap();
            Vipr::start(
                &lab.nodes[i],
                &Default::default(),
                &["--config", files[i].to_str().unwrap()],
                &dirs[i].join("vipr.log"),
            )
        })
        .collect();
    let ctx = || {
        dirs.iter()
            .map(|d| std::fs::read_to_string(d.join("vipr.log")).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };

    for (name, ip, asked) in [
        ("plain", "198.51.100.10", None),
        ("chooser", "198.51.100.11", Some("backup")),
        ("tenant", "198.51.100.12", Some("blackhole")),
    ] {
        let mut a = json!({"kube-vip.io/loadbalancerIPs": ip});
        if let Some(s) = asked {
            a["vipr.io/bgp-attributes"] = json!(s);
        }
        api.create_service(&lb_service(name, a, json!({})));
    }

    let base_ebgp = Seen {
        communities: "65000:100 no-export".into(),
        large: "65000:1:2".into(),
        as_path: "65001 65001 65001".into(),
        med: Some(10),
        local_pref: None,
    };
    let want = |prefix: &str, peer: &str, w: &dyn Fn(&Seen) -> bool| {
        eventually(&format!("{prefix} from {peer}"), ctx, || {
            seen_at(&frr, prefix, peer).filter(|s| w(s))
        })
    };
    // eBGP from node0: the pool's set for the Service without annotation and for the one
    // asking for what its pool does not allow.
    for ip in ["198.51.100.10/32", "198.51.100.12/32"] {
        let s = want(ip, &n0, &|s| !s.communities.is_empty());
        assert_eq!(
            Seen {
                local_pref: None,
                ..s
            },
            base_ebgp,
            "{ip}"
        );
    }
    let s = want("198.51.100.11/32", &n0, &|s| !s.communities.is_empty());
    assert_eq!(
        (
            s.communities.as_str(),
            s.med,
            s.as_path.as_str(),
            s.large.as_str()
        ),
        ("65000:200", Some(20), "65001", ""),
        "the set the Service chose"
    );
    // iBGP from node1: LOCAL_PREF, and an empty AS path whatever the prepend.
    let s = want("198.51.100.10/32", &n1, &|s| !s.communities.is_empty());
    assert_eq!((s.local_pref, s.as_path.as_str()), (Some(200), "Local"));
    let s = want("198.51.100.11/32", &n1, &|s| !s.communities.is_empty());
    assert_eq!(s.local_pref, Some(50));
    let s = want("198.51.100.12/32", &n1, &|s| !s.communities.is_empty());
    assert_eq!(
        (s.local_pref, s.communities.as_str()),
        (Some(200), "65000:100 no-export")
    );
    // The control-plane VIP.
    let cp = format!("{VIP4}/32");
    let s = want(&cp, &n1, &|s| !s.communities.is_empty());
    assert_eq!(
        (s.communities.as_str(), s.large.as_str(), s.local_pref),
        ("65000:999", "65000:9:9", Some(300))
    );
    let s = want(&cp, &n0, &|s| !s.communities.is_empty());
    assert_eq!((s.as_path.as_str(), s.local_pref), ("65001", None));

    // The refusal, as a Warning Event on the Service, and never the blackhole community.
    let ev = eventually("BGPAttributesRefused Event", ctx, || {
        api.get("/api/v1/namespaces/default/events")?["items"]
            .as_array()?
            .iter()
            .find(|e| {
                e["involvedObject"]["name"] == "tenant" && e["reason"] == "BGPAttributesRefused"
            })
            .cloned()
    });
    assert_eq!(ev["type"], "Warning");
    let msg = ev["message"].as_str().unwrap();
    assert!(
        msg.contains("blackhole") && msg.contains("pool web") && msg.contains("198.51.100.12"),
        "{msg}"
    );
    let events = api.get("/api/v1/namespaces/default/events").unwrap();
    for e in events["items"].as_array().unwrap() {
        if e["reason"] == "BGPAttributesRefused" {
            assert_eq!(e["involvedObject"]["name"], "tenant", "{e}");
        }
    }
    for peer in [&n0, &n1] {
        let s = seen_at(&frr, "198.51.100.12/32", peer).unwrap();
        assert!(
            !s.communities.contains("blackhole") && !s.communities.contains("65535:666"),
            "{s:?}"
        );
    }

    // /status names the sets each route carries.
    let st = vipr[0].wait_status("attribute sets in /status", |s| {
        Vipr::vip(s, "198.51.100.11")["bgp_attributes"] == json!(["backup"])
    });
    assert_eq!(
        Vipr::vip(&st, "198.51.100.12")["bgp_attributes"],
        json!(["base"])
    );
    assert_eq!(Vipr::vip(&st, VIP4)["bgp_attributes"], json!(["cp"]));

    // The pool's set changes: routes re-advertised with it, sessions untouched.
    let before = [dropped(&frr, &n0), dropped(&frr, &n1)];
    assert!(before.iter().all(|d| *d != u64::MAX), "{before:?}");
    for i in 0..2 {
        let state = dirs[i].join("state");
        vipr[i].reload(&files[i], &yaml(i, &state, &kc, SETS_BASE_CHANGED), 1);
    }
    for ip in ["198.51.100.10/32", "198.51.100.12/32"] {
        let s = want(ip, &n0, &|s| s.communities == "65000:111");
        assert_eq!(
            (s.large.as_str(), s.as_path.as_str(), s.med),
            ("65000:1:3", "65001 65001", Some(11)),
            "{ip}"
        );
        let s = want(ip, &n1, &|s| s.communities == "65000:111");
        assert_eq!(s.local_pref, Some(210), "{ip}");
    }
    assert_eq!(
        seen_at(&frr, "198.51.100.11/32", &n1).unwrap().local_pref,
        Some(50),
        "the chosen set is not the pool's"
    );
    assert_eq!(
        [dropped(&frr, &n0), dropped(&frr, &n1)],
        before,
        "a session was reset"
    );
    for v in &mut vipr {
        v.assert_running();
    }
}
