//! BGP unnumbered peers in kube-vip v1.2.3's syntax (`unnumbered:IFACE:AS:…`,
//! `pkg/kubevip/config_bgp.go` `ParseBGPPeerConfig`): the fields after the interface read as
//! in an address entry; errors name the entry and the interface.

use super::*;

fn peers_of(v: &str) -> Vec<bgp::PeerConfig> {
    let mut env = base();
    env.insert("bgp_peers", v.to_string());
    build(&env).unwrap().bgp.peers
}

fn err_of(v: &str) -> String {
    let mut env = base();
    env.insert("bgp_peers", v.to_string());
    build(&env)
        .expect_err(&format!("{v:?} must be refused"))
        .to_string()
}

#[test]
fn unnumbered_entries_are_peers_on_interfaces() {
    let p = peers_of("unnumbered:eth1:65000,192.0.2.1:65001::false,unnumbered:eth2:65002::false:::true;100;100;3");
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].interface.as_deref(), Some("eth1"));
    assert!(p[0].awaits_neighbor());
    assert_eq!((p[0].remote_as, p[0].port, p[0].bfd), (65000, 179, None));
    assert_eq!(p[1].interface, None);
    let b = p[2].bfd.expect("the entry's BFD field");
    assert_eq!(
        (b.min_rx.as_millis(), b.min_tx.as_millis(), b.multiplier),
        (100, 100, 3)
    );
    assert_eq!(p[2].interface.as_deref(), Some("eth2"));
}

#[test]
fn unnumbered_errors_name_the_entry_and_the_interface() {
    for (v, says) in [
        (
            "unnumbered:eth0",
            "peer #1 (interface eth0): the router's AS is needed",
        ),
        (
            "unnumbered:eth1:65000::true",
            "peer #1 (interface eth1): multihop: an unnumbered peer is the router on the link",
        ),
        (
            "unnumbered:eth1:65000::false::mpbgp_nexthop=auto_sourceif",
            "peer #1 (interface eth1): MP-BGP next hop options",
        ),
        (
            "unnumbered:eth1:65000,unnumbered:eth1:65001",
            "peer #2 (interface eth1): listed twice",
        ),
        ("unnumbered:eth1:650x0", "peer #1 (interface eth1): AS"),
        (
            "unnumbered:eth1:65000::false:0",
            "peer #1 (interface eth1): port is not in 1..=65535",
        ),
        (
            "unnumbered:averyveryverylongname:65000",
            "peer #1: unnumbered: the interface name (not shown) is not a Linux interface name",
        ),
    ] {
        let e = err_of(v);
        assert!(e.contains(says), "{v}: {e}");
        assert!(e.starts_with("env bgp_peers"), "the setting is named: {e}");
    }
    // A password cut by ':' hints at it, and no piece of it is shown.
    let e = err_of("unnumbered:eth1:65000:Zq7:pw9X");
    assert!(
        e.contains("multihop is not true or false; does the password"),
        "{e}"
    );
    assert!(!e.contains("Zq7") && !e.contains("pw9X"), "{e}");
}
