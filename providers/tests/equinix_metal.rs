//! The Equinix Metal metadata parser over recorded-format fixtures (tests/data/*.json):
//! the good shapes, and every broken variant with the error it must give (naming the field,
//! never the password).

use std::net::IpAddr;

use providers::equinix_metal::{parse, MetadataError};
use providers::{Discovery, PeerConfig};

/// The MD5 password used in the fixtures; no error may contain it.
const PW: &str = "Zq8-md5-not-in-logs";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addrs(d: &Discovery) -> Vec<String> {
    d.peers.iter().map(|p| p.address.to_string()).collect()
}

#[test]
fn v4_only() {
    let d = parse(&fixture("v4_only.json")).unwrap();
    assert_eq!(d.local_as(), Some(65000));
    assert_eq!(d.router_id, Some("192.0.2.11".parse().unwrap()));
    assert_eq!(d.source(), Some(ip("192.0.2.11")));
    assert_eq!(d.source_v6(), None);
    assert_eq!(
        d.peers,
        vec![
            PeerConfig {
                port: 179,
                password: None,
                ttl: Some(255),
                source: Some(ip("192.0.2.11")),
                ..PeerConfig::new(ip("169.254.255.1"), 65530, 65000)
            },
            PeerConfig {
                port: 179,
                password: None,
                ttl: Some(255),
                source: Some(ip("192.0.2.11")),
                ..PeerConfig::new(ip("169.254.255.2"), 65530, 65000)
            },
        ]
    );
}

#[test]
fn v4_and_v6() {
    let d = parse(&fixture("v4_v6.json")).unwrap();
    assert_eq!(
        addrs(&d),
        [
            "169.254.255.1",
            "169.254.255.2",
            "2001:db8:ffff::1",
            "2001:db8:ffff::2"
        ]
    );
    assert_eq!(d.local_as(), Some(65000));
    assert_eq!(d.router_id, Some("192.0.2.11".parse().unwrap()));
    assert_eq!(d.source(), Some(ip("192.0.2.11")));
    assert_eq!(d.source_v6(), Some(ip("2001:db8:0:1::b")));
    assert_eq!(d.source_for(ip("2001:db8:ffff::1")), d.source_v6());
    for p in &d.peers {
        assert_eq!(p.password.as_ref().unwrap().expose(), PW);
        assert!(p.is_multihop());
    }
    let dbg = format!("{d:?}");
    assert!(!dbg.contains(PW), "{dbg}");
}

#[test]
fn v6_only_has_no_router_id() {
    let d = parse(&fixture("v6_only.json")).unwrap();
    assert_eq!(d.local_as(), Some(4_200_000_001));
    assert_eq!(d.router_id, None);
    assert_eq!(d.source(), None);
    assert_eq!(d.source_v6(), Some(ip("2001:db8:0:1::b")));
    assert_eq!(addrs(&d), ["2001:db8:ffff::1", "2001:db8:ffff::2"]);
}

#[test]
fn md5_on_and_off() {
    let on = parse(&fixture("md5_on.json")).unwrap();
    assert!(on
        .peers
        .iter()
        .all(|p| p.password.as_ref().map(|s| s.expose()) == Some(PW)));
    // md5_enabled false: a leftover md5_password is not used.
    let off = parse(&fixture("md5_off_with_password.json")).unwrap();
    assert!(off.peers.iter().all(|p| p.password.is_none()));
    let off = parse(&fixture("v4_only.json")).unwrap();
    assert!(off.peers.iter().all(|p| p.password.is_none()));
}

#[test]
fn multihop_flag() {
    let d = parse(&fixture("not_multihop.json")).unwrap();
    assert_eq!(d.peers.len(), 1);
    assert!(!d.peers[0].is_multihop());
    assert_eq!(d.peers[0].remote_as, 65100);
    assert_eq!(d.source(), Some(ip("192.0.2.2")));
    assert!(parse(&fixture("v4_only.json")).unwrap().peers[0].is_multihop());
}

#[test]
fn several_peers_are_sorted() {
    let d = parse(&fixture("several_peers.json")).unwrap();
    assert_eq!(
        addrs(&d),
        [
            "169.254.255.1",
            "169.254.255.2",
            "198.51.100.1",
            "2001:db8:ffff::1",
            "2001:db8:ffff::2",
            "2001:db8:ffff::3"
        ]
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let d = parse(&fixture("unknown_fields.json")).unwrap();
    assert_eq!(d, parse(&fixture("v4_only.json")).unwrap());
}

#[test]
fn one_changed_peer_makes_a_different_discovery() {
    let a = parse(&fixture("v4_only.json")).unwrap();
    let b = parse(&fixture("v4_only_changed.json")).unwrap();
    assert_ne!(a, b);
    assert_eq!(addrs(&b), ["169.254.255.1", "198.51.100.2"]);
}

fn field_error(field: &str, expected: &'static str) -> MetadataError {
    MetadataError::WrongType {
        field: field.into(),
        expected,
    }
}

#[test]
fn broken_documents() {
    fn invalid(reason: &'static str) -> impl Fn(&MetadataError) -> bool {
        move |e| matches!(e, MetadataError::InvalidJson { reason: r, .. } if r.contains(reason))
    }
    type Check = Box<dyn Fn(&MetadataError) -> bool>;
    let cases: Vec<(&str, Check, &str)> = vec![
        (
            "invalid.json",
            Box::new(invalid("expected value")),
            "invalid JSON at line 1 column 1: expected value",
        ),
        (
            "truncated.json",
            Box::new(|e| matches!(e, MetadataError::Truncated { len } if *len > 100)),
            "truncated JSON",
        ),
        (
            "bad_peer_as_type.json",
            Box::new(|e| *e == field_error("bgp_neighbors[0].peer_as", "a number")),
            "bgp_neighbors[0].peer_as: expected a number",
        ),
        (
            "bad_multihop_type.json",
            Box::new(|e| *e == field_error("bgp_neighbors[0].multihop", "true or false")),
            "bgp_neighbors[0].multihop: expected true or false",
        ),
        (
            "bad_peer_ips_type.json",
            Box::new(|e| *e == field_error("bgp_neighbors[0].peer_ips", "a list of addresses")),
            "bgp_neighbors[0].peer_ips: expected a list",
        ),
        (
            "bad_peer_ip_item_type.json",
            Box::new(|e| *e == field_error("bgp_neighbors[0].peer_ips[1]", "an address string")),
            "bgp_neighbors[0].peer_ips[1]: expected an address string",
        ),
        (
            "bad_md5_password_type.json",
            Box::new(|e| *e == field_error("bgp_neighbors[0].md5_password", "a string")),
            "bgp_neighbors[0].md5_password: expected a string",
        ),
        (
            "bad_neighbors_type.json",
            Box::new(|e| *e == field_error("bgp_neighbors", "a list")),
            "bgp_neighbors: expected a list",
        ),
        (
            "bad_neighbor_entry_type.json",
            Box::new(|e| *e == field_error("bgp_neighbors[0]", "an object")),
            "bgp_neighbors[0]: expected an object",
        ),
        (
            "not_an_object.json",
            Box::new(|e| *e == field_error("metadata", "a JSON object")),
            "metadata: expected a JSON object",
        ),
        (
            "bad_customer_ip.json",
            Box::new(
                |e| matches!(e, MetadataError::InvalidValue { field, .. } if field == "bgp_neighbors[0].customer_ip"),
            ),
            "bgp_neighbors[0].customer_ip: \"not-an-address\" is not an IP address",
        ),
        (
            "bad_family.json",
            Box::new(
                |e| matches!(e, MetadataError::InvalidValue { field, .. } if field == "bgp_neighbors[0].address_family"),
            ),
            "bgp_neighbors[0].address_family: 5 is not an address family",
        ),
        (
            "family_mismatch.json",
            Box::new(
                |e| matches!(e, MetadataError::InvalidValue { field, .. } if field == "bgp_neighbors[0].peer_ips[1]"),
            ),
            "2001:db8:ffff::1 is not an IPv4 address (address_family 4)",
        ),
        (
            "missing_peer_as.json",
            Box::new(|e| {
                *e == MetadataError::MissingField {
                    field: "bgp_neighbors[0].peer_as".into(),
                }
            }),
            "bgp_neighbors[0].peer_as: missing",
        ),
        (
            "missing_neighbors.json",
            Box::new(|e| *e == MetadataError::MissingNeighbours),
            "no bgp_neighbors in the metadata",
        ),
        (
            "null_neighbors.json",
            Box::new(|e| *e == MetadataError::MissingNeighbours),
            "no bgp_neighbors",
        ),
        (
            "empty_neighbors.json",
            Box::new(|e| *e == MetadataError::NoNeighbours),
            "bgp_neighbors is empty",
        ),
        (
            "no_peers.json",
            Box::new(|e| *e == MetadataError::NoPeers { index: 0 }),
            "bgp_neighbors[0].peer_ips: no peers",
        ),
        (
            "conflicting_as.json",
            Box::new(|e| {
                *e == MetadataError::ConflictingLocalAs {
                    first_index: 0,
                    first: 65000,
                    index: 1,
                    value: 65001,
                }
            }),
            "bgp_neighbors[1].customer_as is 65001 but bgp_neighbors[0].customer_as is 65000",
        ),
        (
            "md5_without_password.json",
            Box::new(
                |e| matches!(e, MetadataError::InvalidValue { field, .. } if field == "bgp_neighbors[0].md5_password"),
            ),
            "md5_password: missing, but md5_enabled is true",
        ),
        (
            "duplicate_peer.json",
            Box::new(
                |e| matches!(e, MetadataError::DuplicatePeer { field, .. } if field == "bgp_neighbors[1].peer_ips[0]"),
            ),
            "peer 169.254.255.2 is listed twice with different settings",
        ),
    ];
    for (name, check, text) in cases {
        let e = parse(&fixture(name)).expect_err(name);
        let shown = format!("{e} {e:?}");
        assert!(check(&e), "{name}: unexpected error {e:?}");
        assert!(e.to_string().contains(text), "{name}: {e}");
        assert!(!shown.contains(PW), "{name}: password leaked: {shown}");
    }
}

#[test]
fn more_broken_bodies() {
    assert_eq!(parse(b"").unwrap_err(), MetadataError::Empty);
    assert_eq!(parse(b" \n").unwrap_err(), MetadataError::Empty);
    assert_eq!(
        parse(b"{").unwrap_err(),
        MetadataError::Truncated { len: 1 }
    );
    let e = parse(b"{} trailing").unwrap_err();
    assert!(matches!(e, MetadataError::InvalidJson { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "invalid JSON at line 1 column 4: trailing characters"
    );

    let neighbour = |fields: &str| {
        format!(
            r#"{{"bgp_neighbors":[{{"address_family":4,"customer_as":65000,"customer_ip":"192.0.2.11",
            "peer_as":65530,"peer_ips":["169.254.255.1"]{fields}}}]}}"#
        )
    };
    // Optional fields may be absent.
    let d = parse(neighbour("").as_bytes()).unwrap();
    assert!(!d.peers[0].is_multihop() && d.peers[0].password.is_none());
    for (fields, needle) in [
        (r#","customer_as":0"#, "customer_as: AS 0 is reserved"),
        (
            r#","peer_as":4294967296"#,
            "peer_as: 4294967296 is not an AS number",
        ),
        (
            r#","peer_as":-1"#,
            "peer_as: -1 is not a non-negative whole number",
        ),
        (
            r#","peer_as":65530.5"#,
            "peer_as: 65530.5 is not a non-negative whole number",
        ),
        (
            r#","address_family":"4""#,
            "address_family: expected a number",
        ),
        (r#","customer_ip":"2001:db8::1""#, "is not an IPv4 address"),
        (
            r#","customer_ip":192"#,
            "customer_ip: expected an address string",
        ),
        (
            r#","md5_enabled":"true""#,
            "md5_enabled: expected true or false",
        ),
        (
            r#","md5_enabled":true,"md5_password":"""#,
            "md5_password: empty",
        ),
        (
            r#","peer_ips":["169.254.255.999"]"#,
            "peer_ips[0]: \"169.254.255.999\" is not",
        ),
    ] {
        let e = parse(neighbour(fields).as_bytes()).unwrap_err();
        assert!(e.to_string().contains(needle), "{fields}: {e}");
    }
    let long = "x".repeat(81);
    let e = parse(neighbour(&format!(r#","md5_enabled":true,"md5_password":"{long}""#)).as_bytes())
        .unwrap_err();
    assert!(e.to_string().contains("81 bytes long"), "{e}");
    assert!(!e.to_string().contains(&long));
    // Two IPv4 entries naming different customer_ips.
    let body = r#"{"bgp_neighbors":[
        {"address_family":4,"customer_as":65000,"customer_ip":"192.0.2.11","peer_as":65530,"peer_ips":["169.254.255.1"]},
        {"address_family":4,"customer_as":65000,"customer_ip":"192.0.2.12","peer_as":65530,"peer_ips":["169.254.255.2"]}]}"#;
    let e = parse(body.as_bytes()).unwrap_err();
    assert!(
        matches!(e, MetadataError::ConflictingSource { index: 1, .. }),
        "{e:?}"
    );
    // The same peer twice with the same settings is fine.
    let body = r#"{"bgp_neighbors":[
        {"address_family":4,"customer_as":65000,"customer_ip":"192.0.2.11","peer_as":65530,"peer_ips":["169.254.255.1","169.254.255.1"]}]}"#;
    assert_eq!(parse(body.as_bytes()).unwrap().peers.len(), 1);
}
