//! FRR side of the `peers_*` tests: a `bgpd.conf` builder (neighbors passive by default)
//! and polling helpers over `vtysh ... json`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use testbed::{wait_for, Frr};

use super::*;

/// bgpd.conf: AS 65000, default enforce-first-as, one neighbor per `(node, v6, node_as,
/// extra neighbor lines)`, each activated only in its session's family (plus, for IPv4
/// sessions listed in `v6_over_v4`, in IPv6 unicast too). The neighbors are passive.
pub fn frr_conf(neighbors: &[(usize, bool, u32, &str)], v6_over_v4: &[usize]) -> String {
    frr_conf_active(neighbors, v6_over_v4, &[])
}

/// [`frr_conf`] where FRR connects actively to the nodes in `active` (their speakers
/// listen).
pub fn frr_conf_active(
    neighbors: &[(usize, bool, u32, &str)],
    v6_over_v4: &[usize],
    active: &[usize],
) -> String {
    let mut s = String::from(
        "hostname router\nlog stdout informational\nrouter bgp 65000\n bgp router-id 10.55.0.1\n \
         no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n no bgp network import-check\n",
    );
    for (i, v6, asn, extra) in neighbors {
        let a = node_addr(*i, *v6);
        s += &format!(
            " neighbor {a} remote-as {asn}\n neighbor {a} timers 1 3\n neighbor {a} timers connect 1\n"
        );
        if !active.contains(i) {
            s += &format!(" neighbor {a} passive\n");
        }
        for l in extra.lines().filter(|l| !l.trim().is_empty()) {
            s += &format!(" neighbor {a} {}\n", l.trim());
        }
    }
    for (afi, want_v6) in [("ipv4", false), ("ipv6", true)] {
        s += &format!(" address-family {afi} unicast\n");
        for (i, v6, _, _) in neighbors {
            if *v6 == want_v6 || (want_v6 && !*v6 && v6_over_v4.contains(i)) {
                s += &format!("  neighbor {} activate\n", node_addr(*i, *v6));
            }
        }
        s += " exit-address-family\n";
    }
    s + "!\n"
}

/// `show bgp neighbor X json` for one neighbor.
pub fn frr_neighbor(frr: &Frr, addr: IpAddr) -> Value {
    let v = frr.vtysh_json(&format!("show bgp neighbor {addr} json"));
    v.get(addr.to_string()).cloned().unwrap_or(Value::Null)
}

/// Waits until FRR's neighbor `addr` is Established.
pub fn wait_frr_established(frr: &Frr, addr: IpAddr) {
    let ok = wait_for(CONVERGE, || {
        (frr.neighbor_state(&addr.to_string()) == "Established").then_some(())
    });
    assert!(
        ok.is_some(),
        "FRR neighbor {addr}: {}\n{}",
        frr_neighbor(frr, addr),
        frr.logs()
    );
}

/// FRR's path for `prefix` learnt from `from` (`show bgp ipvX unicast P json`), if any.
pub fn frr_path(frr: &Frr, prefix: &IpNet, from: IpAddr) -> Option<Value> {
    let afi = if prefix.addr().is_ipv6() {
        "ipv6"
    } else {
        "ipv4"
    };
    let v = frr.vtysh_json(&format!("show bgp {afi} unicast {prefix} json"));
    v["paths"]
        .as_array()?
        .iter()
        .find(|p| p["peer"]["peerId"].as_str() == Some(&from.to_string()))
        .cloned()
}

/// Waits for FRR's path to `prefix` from `from`.
pub fn wait_frr_path(frr: &Frr, prefix: &IpNet, from: IpAddr) -> Value {
    wait_for(CONVERGE, || frr_path(frr, prefix, from)).unwrap_or_else(|| {
        let afi = if prefix.addr().is_ipv6() {
            "ipv6"
        } else {
            "ipv4"
        };
        panic!(
            "no path {prefix} from {from} in FRR:\n{}\n{}",
            frr.vtysh(&format!("show bgp {afi} unicast")),
            frr.vtysh("show bgp summary")
        )
    })
}

/// Checks one FRR path: valid, next hop, AS path, MED, LOCAL_PREF (iBGP), communities.
pub fn check_frr_path(p: &Value, next_hop: IpAddr, as_path: &[u32], ibgp: bool) {
    assert_eq!(p["valid"], true, "{p:#}");
    assert_eq!(p["nexthops"][0]["ip"], next_hop.to_string(), "{p:#}");
    assert_eq!(p["nexthops"][0]["accessible"], true, "{p:#}");
    let asns: Vec<u64> = p["aspath"]["segments"]
        .as_array()
        .map(|segs| {
            segs.iter()
                .flat_map(|s| s["list"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_u64())
                .collect()
        })
        .unwrap_or_default();
    let want: Vec<u64> = as_path.iter().map(|a| *a as u64).collect();
    assert_eq!(asns, want, "AS path: {p:#}");
    assert_eq!(p["origin"], "IGP", "{p:#}");
    assert_eq!(p["metric"], MED, "{p:#}");
    if ibgp {
        assert_eq!(p["locPrf"], LOCAL_PREF, "{p:#}");
    }
    assert_eq!(p["community"]["string"], "65010:100 65010:200", "{p:#}");
    assert_eq!(
        p["largeCommunity"]["string"],
        format!("{EBGP_AS4}:1:2"),
        "{p:#}"
    );
}
