//! Unit tests of the peer plan: router id, sources, next hops, node selectors.

use super::*;
use crate::config::{Config, Layers};

fn bgp(extra: &[(&str, &str)]) -> BgpSettings {
    let mut env: std::collections::HashMap<String, String> = [
        ("bgp_enable", "true"),
        ("cp_enable", "true"),
        ("address", "192.0.2.10"),
        (
            "bgp_peers",
            "192.0.2.1:65000::false,[2001:db8::1]:65000::false",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let mut l = Layers::default();
    l.add_env(|n| env.get(n).cloned()).unwrap();
    Config::from_layers(&l, "n").unwrap().bgp
}

fn facts(globals: &[(&str, bool)]) -> NodeFacts {
    NodeFacts {
        globals: globals
            .iter()
            .map(|(a, lo)| (a.parse().unwrap(), *lo))
            .collect(),
        ..NodeFacts::default()
    }
}

#[test]
fn router_id_and_next_hops_come_from_the_node_but_never_from_a_vip() {
    let vip: IpAddr = "192.0.2.10".parse().unwrap();
    let f = facts(&[
        ("192.0.2.10", true),
        ("203.0.113.5", true),
        ("10.55.0.11", false),
        ("2001:db8:55::11", false),
    ]);
    let (id, peers) = plan(&bgp(&[]), &[vip], None, &f).unwrap();
    assert_eq!(id, "10.55.0.11".parse::<Ipv4Addr>().unwrap());
    assert_eq!(
        peers[0].next_hop_v6,
        Some("2001:db8:55::11".parse().unwrap())
    );
    assert_eq!(peers[0].next_hop_v4, None);
    assert_eq!(peers[1].next_hop_v4, Some("10.55.0.11".parse().unwrap()));
    // Only loopback addresses: the non-VIP one.
    let (id, _) = plan(
        &bgp(&[]),
        &[vip],
        None,
        &facts(&[("192.0.2.10", true), ("203.0.113.5", true)]),
    )
    .unwrap();
    assert_eq!(id, "203.0.113.5".parse::<Ipv4Addr>().unwrap());
    assert!(plan(&bgp(&[]), &[vip], None, &facts(&[("192.0.2.10", true)])).is_err());
    let (id, _) = plan(&bgp(&[("bgp_routerid", "192.0.2.99")]), &[vip], None, &f).unwrap();
    assert_eq!(id, "192.0.2.99".parse::<Ipv4Addr>().unwrap());
}

#[test]
fn configured_source_applies_per_family_and_static_peers_win() {
    let f = facts(&[("10.55.0.11", false)]);
    let b = bgp(&[("bgp_sourceip", "10.55.0.11")]);
    let mut d = Discovery {
        router_id: Some("192.0.2.77".parse().unwrap()),
        ..Discovery::default()
    };
    d.peers
        .push(PeerConfig::new("192.0.2.1".parse().unwrap(), 64999, 65100));
    d.peers.push(PeerConfig {
        ttl: Some(255),
        ..PeerConfig::new("169.254.255.1".parse().unwrap(), 65530, 65100)
    });
    let (id, peers) = plan(&b, &[], Some(&d), &f).unwrap();
    assert_eq!(
        id,
        "192.0.2.77".parse::<Ipv4Addr>().unwrap(),
        "the provider's router id"
    );
    let addrs: Vec<String> = peers.iter().map(|p| p.address.to_string()).collect();
    assert_eq!(addrs, ["192.0.2.1", "2001:db8::1", "169.254.255.1"]);
    assert_eq!(peers[0].remote_as, 65000, "the configured peer wins");
    assert_eq!(peers[0].source, Some("10.55.0.11".parse().unwrap()));
    assert_eq!(
        peers[1].source, None,
        "an IPv4 source is not for an IPv6 peer"
    );
    let m = &peers[2];
    assert_eq!(
        (m.local_as, m.hold_time, m.source),
        (65100, 30, Some("10.55.0.11".parse().unwrap()))
    );
}

/// Rack-aware peers: only the peers whose selector matches stay; the others are named
/// with the label that decided; unknown labels keep every selected peer out; a peer's
/// own source interface gives its source address.
#[test]
fn node_selectors_pick_the_racks_peers() {
    let yaml = "bgp_enable: true\ncp_enable: true\naddress: 192.0.2.10\nbgp_peers:
  - 198.51.100.1:65000::false
  - {address: 192.0.2.1, as: 65001, node_selector: {matchLabels: {rack: r1}}, source_interface: eth9}
  - {address: 192.0.2.2, as: 65002, node_selector: {matchLabels: {rack: r2}}}
";
    let mut l = Layers::default();
    l.add_yaml("f.yaml", yaml).unwrap();
    let b = Config::from_layers(&l, "n").unwrap().bgp;
    let labels = |s: &str| crate::config::selector::parse_labels(s).unwrap();
    let addrs = |b: &BgpSettings| {
        b.peers
            .iter()
            .map(|p| p.address.to_string())
            .collect::<Vec<_>>()
    };
    let (r1, out) = select(&b, Some(&labels("rack=r1")), &Default::default());
    assert_eq!(addrs(&r1), ["198.51.100.1", "192.0.2.1"]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].address.to_string(), "192.0.2.2");
    assert_eq!(out[0].reason, "label rack=r1, the peer wants rack=r2");
    let (r2, _) = select(&b, Some(&labels("rack=r2")), &Default::default());
    assert_eq!(addrs(&r2), ["198.51.100.1", "192.0.2.2"]);
    let (none, out) = select(&b, None, &Default::default());
    assert_eq!(addrs(&none), ["198.51.100.1"]);
    assert!(
        out.iter().all(|o| o.reason.contains("not known yet")),
        "{out:?}"
    );
    // vipr_node_labels wins over the Node's labels.
    let mut fixed = b.clone();
    fixed.node_labels = Some(labels("rack=r2"));
    let (r, _) = select(&fixed, Some(&labels("rack=r1")), &Default::default());
    assert_eq!(addrs(&r), ["198.51.100.1", "192.0.2.2"]);
    let mut f = facts(&[("10.55.0.11", false)]);
    f.peer_interfaces.insert(
        "eth9".into(),
        vec!["2001:db8::9".parse().unwrap(), "10.9.0.9".parse().unwrap()],
    );
    let (_, peers) = plan(&r1, &[], None, &f).unwrap();
    assert_eq!(peers[1].source, Some("10.9.0.9".parse().unwrap()));
    assert_eq!(peers[0].source, None);
}

/// kube-vip v1.2.3 `FindMpbgpAddresses`: the next hop of the other family per mode; the
/// session's own family is left to the session (its local address).
#[test]
fn mpbgp_next_hop_modes_pick_the_other_familys_next_hop() {
    let f = NodeFacts {
        source_interface: vec![
            "10.66.0.11".parse().unwrap(),
            "2001:db8:66::11".parse().unwrap(),
        ],
        source_ip_interface: vec![
            "10.77.0.11".parse().unwrap(),
            "2001:db8:77::11".parse().unwrap(),
        ],
        ..facts(&[("10.55.0.11", false), ("2001:db8:55::11", false)])
    };
    let nh = |extra: &[(&str, &str)], f: &NodeFacts| {
        let (_, p) = plan(&bgp(extra), &[], None, f).unwrap();
        (
            (p[0].next_hop_v4, p[0].next_hop_v6.map(|a| a.to_string())),
            (p[1].next_hop_v4.map(|a| a.to_string()), p[1].next_hop_v6),
        )
    };
    let v6 = |s: &str| Some(s.to_string());
    // Fixed: each family's own address; the session's family untouched.
    let fixed = [
        ("mpbgp_nexthop", "fixed"),
        ("mpbgp_ipv4", "198.51.100.4"),
        ("mpbgp_ipv6", "2001:db8:99::6"),
    ];
    assert_eq!(
        nh(&fixed, &f),
        ((None, v6("2001:db8:99::6")), (v6("198.51.100.4"), None))
    );
    // Fixed with one address: the other family falls back to vipr's own choice (the
    // source interface's address first).
    assert_eq!(
        nh(
            &[("mpbgp_nexthop", "fixed"), ("mpbgp_ipv6", "2001:db8:99::6")],
            &f
        )
        .1,
        (v6("10.66.0.11"), None)
    );
    // auto_sourceip: the interface holding bgp_sourceip.
    assert_eq!(
        nh(
            &[
                ("mpbgp_nexthop", "auto_sourceip"),
                ("bgp_sourceip", "10.77.0.11")
            ],
            &f
        ),
        ((None, v6("2001:db8:77::11")), (v6("10.77.0.11"), None))
    );
    // auto_sourceif: bgp_sourceif's; without an address of the family, none.
    let b = [("mpbgp_nexthop", "auto_sourceif"), ("bgp_sourceif", "eth1")];
    assert_eq!(
        nh(&b, &f),
        ((None, v6("2001:db8:66::11")), (v6("10.66.0.11"), None))
    );
    let only_v4 = NodeFacts {
        source_interface: vec!["10.66.0.11".parse().unwrap()],
        ..f.clone()
    };
    assert_eq!(nh(&b, &only_v4).0, (None, None));
    // A peer's own 6th field wins over the node's, part by part.
    let own = [
        ("mpbgp_nexthop", "fixed"),
        ("mpbgp_ipv4", "198.51.100.4"),
        ("mpbgp_ipv6", "2001:db8:99::6"),
        (
            "bgp_peers",
            "192.0.2.1:65000::false::mpbgp_ipv6=[2001:db8:98::6],[2001:db8::1]:65000::false",
        ),
    ];
    assert_eq!(
        nh(&own, &f),
        ((None, v6("2001:db8:98::6")), (v6("198.51.100.4"), None))
    );
}

/// A password from a Secret: the peer waits for it (the reason names the Secret and key),
/// then runs with it; the reason never carries a value.
#[test]
fn a_password_secret_holds_the_peer_until_read() {
    let yaml =
        "bgp_enable: true\ncp_enable: true\naddress: 192.0.2.10\ncp_namespace: infra\nbgp_peers:
  - {address: 192.0.2.1, as: 65001, password_secret: {name: bgp-auth, key: tor-a}}
  - {address: 192.0.2.2, as: 65001}
";
    let mut l = Layers::default();
    l.add_yaml("f.yaml", yaml).unwrap();
    let c = Config::from_layers(&l, "n").unwrap();
    assert!(c.needs_api());
    let b = c.bgp;
    let mut values = crate::kube::secret::Values::new();
    let (kept, out) = select(&b, None, &values);
    assert_eq!(kept.peers.len(), 1);
    assert_eq!(
        out[0].reason,
        "the password's Secret infra/bgp-auth key tor-a has not been read yet"
    );
    let id = ("infra".to_string(), "bgp-auth".to_string());
    values.insert(id.clone(), None);
    assert!(select(&b, None, &values).1[0]
        .reason
        .contains("no such Secret"));
    let keys = |k: &str, v: &str| {
        Some(std::sync::Arc::new(
            [(k.to_string(), bgp::Secret::new(v))].into_iter().collect(),
        ))
    };
    values.insert(id.clone(), keys("other", "pw-123"));
    let (_, out) = select(&b, None, &values);
    assert!(out[0].reason.contains("not in the Secret") && !out[0].reason.contains("pw-123"));
    values.insert(id, keys("tor-a", "pw-123"));
    let (kept, out) = select(&b, None, &values);
    assert!(out.is_empty());
    assert_eq!(
        kept.peers[0].password.as_ref().map(|p| p.expose()),
        Some("pw-123")
    );
    assert_eq!(kept.peers[1].password, None);
}

#[test]
fn unnumbered_peers_are_sessions_once_their_router_is_known() {
    let b = bgp(&[
        (
            "bgp_peers",
            "unnumbered:eth1:65000,unnumbered:eth2:65000,192.0.2.1:65000::false",
        ),
        ("bgp_sourceip", "10.55.0.11"),
    ]);
    let mut f = facts(&[("10.55.0.11", false), ("2001:db8::11", false)]);
    let (_, peers) = plan(&b, &[], None, &f).unwrap();
    let addrs: Vec<String> = peers.iter().map(|p| p.address.to_string()).collect();
    assert_eq!(addrs, ["192.0.2.1"], "no router known yet");
    f.link_routers = Arc::new([("eth1".to_string(), "fe80::1".parse().unwrap())].into());
    let (_, peers) = plan(&b, &[], None, &f).unwrap();
    let p = &peers[0];
    assert_eq!(p.address, "fe80::1".parse::<IpAddr>().unwrap());
    assert_eq!(p.interface.as_deref(), Some("eth1"));
    assert_eq!(
        (p.source, p.next_hop_v4, p.next_hop_v6),
        (None, None, None),
        "the session's own link-local address is the next hop of both families"
    );
    assert_eq!(peers.len(), 2);
    // The same router behind a second interface is one peer (the speaker keys by
    // address): the first interface keeps it.
    f.link_routers = Arc::new(
        [
            ("eth1".to_string(), "fe80::1".parse().unwrap()),
            ("eth2".to_string(), "fe80::1".parse().unwrap()),
        ]
        .into(),
    );
    let (_, peers) = plan(&b, &[], None, &f).unwrap();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0].interface.as_deref(), Some("eth1"));
}
