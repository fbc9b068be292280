//! `bgp_peers` items given as mappings in the YAML file: every option lands in the one
//! `PeerConfig`, node selectors and labels are read, and errors name the file, the line,
//! the peer and the key, never a password.

use super::*;

const HEAD: &str = "bgp_enable: true\ncp_enable: true\naddress: 192.0.2.10\nbgp_as: 65001\n";

fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut l = Layers::default();
    l.add_yaml("/etc/vipr.yaml", &format!("{HEAD}{yaml}"))?;
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.add_env(|n| env.get(n).cloned())?;
    Config::from_layers(&l, "node-a")
}

fn err(yaml: &str) -> String {
    load(yaml, &[]).unwrap_err().to_string()
}

const TWO_RACKS: &str = "bgp_peers:
  - 192.0.2.9:65009::false
  - address: 192.0.2.1
    as: external
    hold_time: 9
    keepalive: 3
    password: s3cret-pw
    node_selector:
      matchLabels:
        rack: r1
  - address: 2001:db8::2
    as: internal
    port: 1179
    local_as: 65100
    source: 2001:db8::10
    passive: true
    graceful_restart: 300
    families: [ipv6-unicast]
    bfd: {rx: 100, tx: 200, multiplier: 5}
    node_selector:
      matchExpressions:
        - {key: rack, operator: In, values: [r2, r3]}
        - {key: spine, operator: DoesNotExist}
  - address: 192.0.2.3
    as: 65003
    multihop: 4
    source_interface: eth1
";

#[test]
fn a_mapping_carries_every_option_into_the_one_peer_config() {
    let c = load(TWO_RACKS, &[]).unwrap();
    let p = &c.bgp.peers;
    assert_eq!(p.len(), 4);
    // A kube-vip string keeps working beside the mappings.
    assert_eq!(
        (p[0].address.to_string(), p[0].remote_as, p[0].hold_time),
        ("192.0.2.9".into(), 65009, 30)
    );
    let a = &p[1];
    assert!(a.remote_as_external && !a.is_ibgp());
    assert_eq!((a.hold_time, a.keepalive, a.local_as), (9, Some(3), 65001));
    assert_eq!(a.password.as_ref().map(|s| s.expose()), Some("s3cret-pw"));
    let b = &p[2];
    assert_eq!(
        (b.remote_as, b.local_as, b.port),
        (65100, 65100, 1179),
        "internal is our AS (local_as)"
    );
    assert!(b.is_ibgp() && b.passive);
    assert_eq!(b.source, Some("2001:db8::10".parse().unwrap()));
    assert_eq!(b.graceful_restart.map(|g| g.restart_time), Some(300));
    assert_eq!(b.families, vec![bgp::Family::Ipv6Unicast]);
    let bfd = b.bfd.unwrap();
    assert_eq!(
        (bfd.min_rx, bfd.min_tx, bfd.multiplier),
        (Duration::from_millis(100), Duration::from_millis(200), 5)
    );
    let m = &p[3];
    assert_eq!((m.ttl, m.bfd, m.gtsm_hops), (Some(4), None, None));
    // The node decides the rest.
    let sel = |a: &str| {
        c.bgp.peer_extras[&a.parse::<std::net::IpAddr>().unwrap()]
            .node_selector
            .clone()
            .unwrap()
    };
    let labels = |s: &str| selector::parse_labels(s).unwrap();
    assert_eq!(sel("192.0.2.1").mismatch(&labels("rack=r1")), None);
    assert!(sel("192.0.2.1").mismatch(&labels("rack=r2")).is_some());
    assert_eq!(sel("2001:db8::2").mismatch(&labels("rack=r3")), None);
    assert!(sel("2001:db8::2")
        .mismatch(&labels("rack=r3,spine=x"))
        .is_some());
    assert_eq!(
        c.bgp.peer_extras[&"192.0.2.3".parse().unwrap()]
            .source_interface
            .as_deref(),
        Some("eth1")
    );
    assert!(!c
        .bgp
        .peer_extras
        .contains_key(&"192.0.2.9".parse().unwrap()));
    // Node selectors need the Node's labels (the API) unless the labels are configured.
    assert!(c.needs_api());
    let c = load(
        &format!("{TWO_RACKS}vipr_node_labels:\n  rack: r1\n  zone: a\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.bgp.node_labels, Some(labels("rack=r1,zone=a")));
    assert!(!c.needs_api());
    let c = load(TWO_RACKS, &[("vipr_node_labels", "rack=r2")]).unwrap();
    assert_eq!(c.bgp.node_labels, Some(labels("rack=r2")));
}

#[test]
fn the_environment_overrides_the_files_peers_but_they_are_still_checked() {
    let c = load(TWO_RACKS, &[("bgp_peers", "192.0.2.7:65007::false")]).unwrap();
    assert_eq!(c.bgp.peers.len(), 1);
    assert!(c.bgp.peer_extras.is_empty());
    let bad = "bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n    hold_time: 2\n";
    let e = load(bad, &[("bgp_peers", "192.0.2.7:65007::false")]).unwrap_err();
    assert!(e.to_string().contains("hold_time"), "{e}");
}

#[test]
fn errors_name_file_line_peer_and_key_never_the_password() {
    let e = err("bgp_peers:\n  - 192.0.2.9:65009::false\n  - address: 192.0.2.1\n    as: 65000\n    hold_tme: 9\n");
    assert_eq!(
        e,
        "config file /etc/vipr.yaml: line 9: bgp_peers: peer #2 (192.0.2.1): unknown key: \"hold_tme\" (did you mean hold_time?); a peer takes address, interface, as, port, password, password_secret, multihop, gtsm, source, source_interface, local_as, hold_time, keepalive, passive, bfd, graceful_restart, families, node_selector"
    );
    let e = err("bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n    password: pw-xyz\n    hold_time: 2\n");
    assert_eq!(
        e,
        "config file /etc/vipr.yaml: line 9: bgp_peers: peer #1 (192.0.2.1): hold_time: \"2\": must be 0 or 3..=65535 seconds (RFC 4271 §4.2)"
    );
    for (yaml, want) in [
        ("    as: banana\n", "line 8: bgp_peers: peer #1 (192.0.2.1): as: \"banana\" is not an AS number"),
        ("    as: 65000\n    keepalive: 40\n", "line 9: bgp_peers: peer #1 (192.0.2.1): keepalive: 40 must be less than the hold time (30)"),
        ("    as: 65000\n    multihop: 2\n    bfd: true\n", "line 10: bgp_peers: peer #1 (192.0.2.1): bfd: BFD is single-hop"),
        ("    as: 65000\n    families: [ipv5]\n", "families: expected ipv4-unicast or ipv6-unicast"),
        ("    as: 65000\n    node_selector:\n      matchExpressions:\n        - {key: rack, operator: In}\n", "line 9: bgp_peers: peer #1 (192.0.2.1): node_selector: matchExpressions: In needs values"),
        ("    as: 65000\n    node_selector: {matchLabel: {rack: r1}}\n", "unknown key \"matchLabel\""),
        ("    as: 65000\n    source: 192.0.2.10\n    source_interface: eth0\n", "source and source_interface exclude each other"),
    ] {
        let e = err(&format!("bgp_peers:\n  - address: 192.0.2.1\n    password: pw-xyz\n{yaml}"));
        let e = e.replace("    password: pw-xyz\n", "");
        assert!(e.contains(want), "want {want:?} in {e}");
        assert!(!e.contains("pw-xyz"), "the password leaked: {e}");
    }
    let long = "pw-xyz".repeat(14);
    let e = err(&format!(
        "bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n    password: {long}\n"
    ));
    assert!(
        e.ends_with(
            "line 8: bgp_peers: peer #1 (192.0.2.1): password: TCP MD5 keys are 1 to 80 bytes"
        ),
        "{e}"
    );
    assert!(!e.contains("pw-xyz"), "{e}");
    let e = err("bgp_peers:\n  - as: 65000\n    password: pw-xyz\n");
    assert!(e.contains("peer #1: address: missing"), "{e}");
    let e = err("bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n  - address: 192.0.2.1\n    as: 65001\n");
    assert!(e.contains("peer #2 (192.0.2.1): listed twice"), "{e}");
    // A string item is numbered by its place in the list.
    let e = err("bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n  - 192.0.2.2:banana::false\n");
    assert!(
        e.contains("line 8: bgp_peers: peer #2 (192.0.2.2): AS"),
        "{e}"
    );
    // A password that is a mapping or list is named, not shown.
    let e = err("bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n    password: [pw-xyz]\n");
    assert!(
        e.contains("password: expected a value") && !e.contains("pw-xyz"),
        "{e}"
    );
    // A key far from every peer key may be a misplaced value: not repeated.
    let e = err("bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n    Zq7pw9X: 1\n");
    assert!(
        e.contains("unknown key: (not repeated here: it may be a value)") && !e.contains("Zq7pw9X"),
        "{e}"
    );
    // An unquoted number is not the text written: refused for a password, never shown.
    let e = err("bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n    password: 1.10\n");
    assert!(
        e.contains("line 8: bgp_peers: peer #1 (192.0.2.1): password: quote it")
            && !e.contains("1.1"),
        "{e}"
    );
    let c = load(
        "bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n    password: '1.10'\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        c.bgp.peers[0].password.as_ref().map(|p| p.expose()),
        Some("1.10")
    );
    // password_secret: exclusive with password, its fields checked.
    let e = err("bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n    password: pw-xyz\n    password_secret: {name: bgp, key: a}\n");
    assert!(e.contains("line 9: bgp_peers: peer #1 (192.0.2.1): password_secret: password and password_secret exclude each other") && !e.contains("pw-xyz"), "{e}");
    let e = err("bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n    password_secret: {name: Bad_Name, key: a}\n");
    assert!(
        e.contains("password_secret: name \"Bad_Name\" is not a Secret name"),
        "{e}"
    );
    let e = err(
        "bgp_peers:\n  - address: 192.0.2.1\n    as: 65000\n    password_secret: {name: bgp}\n",
    );
    assert!(e.contains("password_secret: key is missing"), "{e}");
    // vipr_node_labels names the bad label.
    let e = load("vipr_node_labels: {rack: -r1}\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("vipr_node_labels") && e.contains("label value"),
        "{e}"
    );
}

/// The README's "Peers per rack" example (notes/h17a.md) parses as it says.
#[test]
fn the_readme_two_rack_example_parses() {
    let yaml = "bgp_enable: true
svc_enable: true
bgp_as: 65001
vipr_pools: [203.0.113.0/24]
bgp_peers:
  - {address: 192.0.2.1, as: 65000, hold_time: 9, keepalive: 3, node_selector: {matchLabels: {rack: r1}}}
  - {address: 192.0.2.2, as: 65000, hold_time: 9, keepalive: 3, node_selector: {matchLabels: {rack: r1}}}
  - {address: 198.51.100.1, as: 65000, hold_time: 9, keepalive: 3, node_selector: {matchLabels: {rack: r2}}}
  - {address: 198.51.100.2, as: 65000, hold_time: 9, keepalive: 3, node_selector: {matchLabels: {rack: r2}}}
";
    let mut l = Layers::default();
    l.add_yaml("vipr.yaml", yaml).unwrap();
    let c = Config::from_layers(&l, "n").unwrap();
    assert_eq!(c.bgp.peers.len(), 4);
    assert!(c
        .bgp
        .peers
        .iter()
        .all(|p| p.hold_time == 9 && p.keepalive == Some(3)));
    assert_eq!(c.bgp.peer_extras.len(), 4);
    // The same with one group per rack.
    let groups = "bgp_enable: true
svc_enable: true
bgp_as: 65001
vipr_pools: [203.0.113.0/24]
bgp_peers:
  - node_selector: {matchLabels: {rack: r1}}
    as: 65000
    hold_time: 9
    keepalive: 3
    peers: [{address: 192.0.2.1}, {address: 192.0.2.2}]
  - node_selector: {matchLabels: {rack: r2}}
    as: 65000
    hold_time: 9
    keepalive: 3
    peers: [{address: 198.51.100.1}, {address: 198.51.100.2}]
";
    let mut l = Layers::default();
    l.add_yaml("vipr.yaml", groups).unwrap();
    let g = Config::from_layers(&l, "n").unwrap();
    assert_eq!(g.bgp.peers, c.bgp.peers);
    assert_eq!(g.bgp.peer_extras, c.bgp.peer_extras);
}

/// A group shares its keys (the rack's node selector, timers) with its peers; a member's own
/// key wins; errors name the member as `n.m`.
#[test]
fn a_group_shares_its_keys_with_its_peers() {
    let yaml = "bgp_peers:
  - peers:
      - {address: 192.0.2.1}
      - {address: 192.0.2.2, hold_time: 30}
    as: 65000
    hold_time: 9
    keepalive: 3
    node_selector: {matchLabels: {rack: r1}}
  - {address: 198.51.100.1, as: 65000}
";
    let c = load(yaml, &[]).unwrap();
    let p = &c.bgp.peers;
    assert_eq!(p.len(), 3);
    assert_eq!(
        (p[0].remote_as, p[0].hold_time, p[0].keepalive),
        (65000, 9, Some(3))
    );
    assert_eq!(p[1].hold_time, 30, "the member's own hold time");
    let sel = |a: &str| {
        c.bgp
            .peer_extras
            .get(&a.parse().unwrap())
            .and_then(|e| e.node_selector.clone())
    };
    assert_eq!(sel("192.0.2.1"), sel("192.0.2.2"));
    assert!(sel("192.0.2.1").is_some() && sel("198.51.100.1").is_none());
    let e = err("bgp_peers:\n  - peers:\n      - {address: 192.0.2.1}\n      - {address: 192.0.2.2, keepalive: 40}\n    as: 65000\n");
    assert!(
        e.contains("line 8: bgp_peers: peer #1.2 (192.0.2.2): keepalive: 40 must be less"),
        "{e}"
    );
    let e = err(
        "bgp_peers:\n  - peers: [{address: 192.0.2.1}]\n    address: 192.0.2.9\n    as: 65000\n",
    );
    assert!(e.contains("line 7: bgp_peers: group #1: address:"), "{e}");
    let e = err("bgp_peers:\n  - peers: [192.0.2.1:65000::false]\n    as: 65000\n");
    assert!(
        e.contains("group #1: peer #1.1: a group's peers are mappings"),
        "{e}"
    );
}

/// BGP unnumbered in a mapping: `interface` instead of `address`, the router's address
/// unknown (`::`) until its Router Advertisement is heard; the options that need an address
/// or a second hop are refused, as for kube-vip's `unnumbered:` entries.
#[test]
fn a_mapping_may_name_an_interface_instead_of_an_address() {
    let c = load(
        "bgp_peers:\n  - {interface: eth1, as: external, hold_time: 30, keepalive: 10, bfd: {rx: 100, tx: 100, multiplier: 3}}\n  - {interface: eth2, as: 65002}\n",
        &[],
    )
    .unwrap();
    let p = &c.bgp.peers;
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].interface.as_deref(), Some("eth1"));
    assert!(p[0].awaits_neighbor() && p[0].remote_as_external);
    assert_eq!((p[0].hold_time, p[0].keepalive), (30, Some(10)));
    assert!(p[0].bfd.is_some());
    assert_eq!(
        (p[1].interface.as_deref(), p[1].remote_as),
        (Some("eth2"), 65002)
    );
    for (yaml, want) in [
        (
            "bgp_peers:\n  - {interface: eth1, address: 192.0.2.1, as: 65000}\n",
            "line 6: bgp_peers: peer #1 (192.0.2.1): interface: address and interface exclude each other",
        ),
        (
            "bgp_peers:\n  - {interface: eth1, as: 65000, multihop: true}\n",
            "peer #1 (interface eth1): multihop: not for a peer on an interface",
        ),
        (
            "bgp_peers:\n  - {interface: eth1, as: 65000, node_selector: {matchLabels: {rack: r1}}}\n",
            "peer #1 (interface eth1): node_selector: not for a peer on an interface",
        ),
        (
            "bgp_peers:\n  - {interface: eth1/x, as: 65000}\n",
            "peer #1: interface: \"eth1/x\": expected an interface name",
        ),
        (
            "bgp_peers:\n  - {as: 65000}\n",
            "address: missing: every peer needs one (or an interface",
        ),
        (
            "bgp_peers:\n  - {interface: eth1, peers: [{as: 65000}]}\n",
            "group #1: interface: a group's interface is each member's",
        ),
    ] {
        let e = err(yaml);
        assert!(e.contains(want), "{yaml}: {e}");
    }
}
