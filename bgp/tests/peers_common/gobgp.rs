//! GoBGP side of the `peers_*` tests: a `gobgpd.toml` builder (passive neighbors) and
//! polling helpers over `gobgp ... -j`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use testbed::{wait_for, Gobgp};

use super::*;

/// gobgpd.toml: AS 65000, passive neighbors `(node, v6, node_as)`.
pub fn gobgp_conf(neighbors: &[(usize, bool, u32)]) -> String {
    let mut s = format!(
        "[global.config]\n  as = {PEER_AS}\n  router-id = \"10.55.0.1\"\n  \
         local-address-list = [\"10.55.0.1\", \"2001:db8:55::1\"]\n"
    );
    for (i, v6, asn) in neighbors {
        s += &format!(
            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {asn}\n  \
             [neighbors.timers.config]\n    hold-time = 3\n    keepalive-interval = 1\n    connect-retry = 1\n  \
             [neighbors.transport.config]\n    passive-mode = true\n",
            node_addr(*i, *v6)
        );
    }
    s
}

/// GoBGP's path for `prefix` from neighbor `from` in the global RIB, if any.
pub fn gobgp_path(g: &Gobgp, prefix: &IpNet, from: IpAddr) -> Option<Value> {
    let afi = if prefix.addr().is_ipv6() {
        "ipv6"
    } else {
        "ipv4"
    };
    let v = g.cli_json(&["global", "rib", "-a", afi]);
    v.get(prefix.to_string())?
        .as_array()?
        .iter()
        .find(|p| p["neighbor-ip"].as_str() == Some(&from.to_string()))
        .cloned()
}

/// Waits for GoBGP's path to `prefix` from `from`.
pub fn wait_gobgp_path(g: &Gobgp, prefix: &IpNet, from: IpAddr) -> Value {
    wait_for(CONVERGE, || gobgp_path(g, prefix, from)).unwrap_or_else(|| {
        panic!(
            "no path {prefix} from {from} in GoBGP:\n{}\n{}",
            g.cli(&["global", "rib", "-a", "ipv4"]) + &g.cli(&["global", "rib", "-a", "ipv6"]),
            g.log()
        )
    })
}

/// The attribute of type `t` of a GoBGP path.
pub fn gobgp_attr(p: &Value, t: u64) -> Value {
    p["attrs"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == t))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Checks one GoBGP path: next hop (NEXT_HOP or MP_REACH_NLRI), AS path, MED, LOCAL_PREF
/// (iBGP), communities and large communities.
pub fn check_gobgp_path(p: &Value, next_hop: IpAddr, as_path: &[u32], ibgp: bool) {
    let nh = if next_hop.is_ipv6() {
        gobgp_attr(p, 14)["nexthop"].clone()
    } else {
        gobgp_attr(p, 3)["nexthop"].clone()
    };
    assert_eq!(nh, next_hop.to_string(), "{p:#}");
    assert_eq!(gobgp_attr(p, 1)["value"], 0, "ORIGIN IGP: {p:#}");
    let asns: Vec<u64> = gobgp_attr(p, 2)["as_paths"]
        .as_array()
        .map(|segs| {
            segs.iter()
                .flat_map(|s| s["asns"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_u64())
                .collect()
        })
        .unwrap_or_default();
    let want: Vec<u64> = as_path.iter().map(|a| *a as u64).collect();
    assert_eq!(asns, want, "AS path: {p:#}");
    assert_eq!(gobgp_attr(p, 4)["metric"], MED, "{p:#}");
    if ibgp {
        assert_eq!(gobgp_attr(p, 5)["value"], LOCAL_PREF, "{p:#}");
    } else {
        assert!(gobgp_attr(p, 5).is_null(), "no LOCAL_PREF over eBGP: {p:#}");
    }
    let comms: Vec<u64> = communities().iter().map(|c| c.0 as u64).collect();
    assert_eq!(
        gobgp_attr(p, 8)["communities"],
        serde_json::json!(comms),
        "{p:#}"
    );
    let lc = &gobgp_attr(p, 32)["value"][0];
    assert_eq!(
        (&lc["ASN"], &lc["LocalData1"], &lc["LocalData2"]),
        (
            &serde_json::json!(EBGP_AS4),
            &serde_json::json!(1),
            &serde_json::json!(2)
        ),
        "{p:#}"
    );
}
