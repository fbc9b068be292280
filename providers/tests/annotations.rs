//! Node-annotation parsing: kube-vip's plain form and Equinix CCM's numbered form, base64
//! passwords, absent / partial annotations and bad values (errors name the key, never the
//! password).

use std::collections::BTreeMap;
use std::net::IpAddr;

use providers::annotations::{parse, AnnotationError};

const P: &str = "metal.equinix.com";
/// `base64("Zq8-md5-not-in-logs")`.
const PW: &str = "Zq8-md5-not-in-logs";
const PW_B64: &str = "WnE4LW1kNS1ub3QtaW4tbG9ncw==";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (format!("{P}/{k}"), v.to_string()))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What Equinix's cloud controller writes for a node with two IPv4 peers.
fn ccm() -> Vec<(&'static str, &'static str)> {
    vec![
        ("bgp-peers-0-node-asn", "65000"),
        ("bgp-peers-0-peer-asn", "65530"),
        ("bgp-peers-0-peer-ip", "169.254.255.1"),
        ("bgp-peers-0-src-ip", "192.0.2.11"),
        ("bgp-peers-0-bgp-pass", PW_B64),
        ("bgp-peers-1-node-asn", "65000"),
        ("bgp-peers-1-peer-asn", "65530"),
        ("bgp-peers-1-peer-ip", "169.254.255.2"),
        ("bgp-peers-1-src-ip", "192.0.2.11"),
        ("bgp-peers-1-bgp-pass", PW_B64),
    ]
}

#[test]
fn absent_annotations_mean_wait() {
    assert_eq!(parse(&BTreeMap::new(), P).unwrap(), None);
    // Other annotations of the node, and unknown keys under the prefix, do not count.
    let mut m = map(&[
        ("network-4-private", "192.0.2.0/24"),
        ("bgp-peers-0-future", "x"),
    ]);
    m.insert("kube-vip.io/peer-ip".into(), "192.0.2.1".into());
    m.insert("node.alpha.kubernetes.io/ttl".into(), "0".into());
    m.insert(
        "other.example/bgp-peers-0-peer-ip".into(),
        "192.0.2.1".into(),
    );
    assert_eq!(parse(&m, P).unwrap(), None);
}

#[test]
fn plain_kube_vip_form() {
    let m = map(&[
        ("node-asn", "65000"),
        ("peer-asn", "65530"),
        ("peer-ip", "169.254.255.2, 169.254.255.1"),
        ("src-ip", "192.0.2.11"),
        ("bgp-pass", PW_B64),
        ("peer-multi-hop", "true"),
    ]);
    let d = parse(&m, P).unwrap().unwrap();
    assert_eq!(d.local_as(), Some(65000));
    assert_eq!(d.router_id, Some("192.0.2.11".parse().unwrap()));
    assert_eq!(d.source(), Some(ip("192.0.2.11")));
    assert_eq!(d.source_v6(), None);
    let addrs: Vec<_> = d.peers.iter().map(|p| p.address).collect();
    assert_eq!(addrs, [ip("169.254.255.1"), ip("169.254.255.2")]);
    for p in &d.peers {
        assert_eq!(p.remote_as, 65530);
        assert_eq!(p.password.as_ref().unwrap().expose(), PW);
        assert!(p.is_multihop());
        assert_eq!(p.port, 179);
    }
    assert!(!format!("{d:?}").contains(PW));
    // A trailing slash on the prefix is the same prefix.
    assert_eq!(parse(&m, "metal.equinix.com/").unwrap(), Some(d));
}

#[test]
fn numbered_equinix_form() {
    let d = parse(&map(&ccm()), P).unwrap().unwrap();
    assert_eq!(d.local_as(), Some(65000));
    assert_eq!(d.router_id, Some("192.0.2.11".parse().unwrap()));
    assert_eq!(d.peers.len(), 2);
    assert!(d
        .peers
        .iter()
        .all(|p| !p.is_multihop() && p.remote_as == 65530));
    assert!(d
        .peers
        .iter()
        .all(|p| p.password.as_ref().unwrap().expose() == PW));
}

#[test]
fn numbered_entries_are_independent() {
    let m = map(&[
        ("bgp-peers-0-node-asn", "65000"),
        ("bgp-peers-0-peer-asn", "65530"),
        ("bgp-peers-0-peer-ip", "169.254.255.1"),
        ("bgp-peers-0-src-ip", "192.0.2.11"),
        ("bgp-peers-0-peer-multi-hop", "true"),
        // A gap in N, a v6 entry, asdot AS, no password, padding-less base64 elsewhere.
        ("bgp-peers-2-node-asn", "65000"),
        ("bgp-peers-2-peer-asn", "1.10"),
        ("bgp-peers-2-peer-ip", "2001:db8:ffff::1,2001:db8:ffff::2"),
        ("bgp-peers-2-src-ip", "2001:db8:0:1::b"),
        ("bgp-peers-10-node-asn", "65000"),
        ("bgp-peers-10-peer-asn", "4200000001"),
        ("bgp-peers-10-peer-ip", "198.51.100.1"),
        ("bgp-peers-10-bgp-pass", "c2VjcmV0"),
        ("bgp-peers-10-peer-multi-hop", "FALSE"),
    ]);
    let d = parse(&m, P).unwrap().unwrap();
    assert_eq!(d.source(), Some(ip("192.0.2.11")));
    assert_eq!(d.source_v6(), Some(ip("2001:db8:0:1::b")));
    let view: Vec<(String, u32, bool, Option<&str>)> = d
        .peers
        .iter()
        .map(|p| {
            (
                p.address.to_string(),
                p.remote_as,
                p.is_multihop(),
                p.password.as_ref().map(|s| s.expose()),
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("169.254.255.1".to_string(), 65530, true, None),
            (
                "198.51.100.1".to_string(),
                4_200_000_001,
                false,
                Some("secret")
            ),
            ("2001:db8:ffff::1".to_string(), 65546, false, None),
            ("2001:db8:ffff::2".to_string(), 65546, false, None),
        ]
    );
    // Without padding ("secre" → "c2VjcmU=" / "c2VjcmU").
    let mut m2 = m.clone();
    m2.insert(format!("{P}/bgp-peers-10-bgp-pass"), "c2VjcmU".into());
    let d = parse(&m2, P).unwrap().unwrap();
    assert_eq!(
        d.peer(ip("198.51.100.1"))
            .unwrap()
            .password
            .as_ref()
            .unwrap()
            .expose(),
        "secre"
    );
}

#[test]
fn numbered_form_wins_over_stale_plain_keys() {
    let mut pairs = ccm();
    pairs.extend([
        ("node-asn", "64999"),
        ("peer-asn", "64998"),
        ("peer-ip", "203.0.113.1"),
        ("src-ip", "203.0.113.2"),
    ]);
    let d = parse(&map(&pairs), P).unwrap().unwrap();
    assert_eq!(d, parse(&map(&ccm()), P).unwrap().unwrap());
}

#[test]
fn optional_fields() {
    // No src-ip: the daemon uses its own router id / source.
    let d = parse(
        &map(&[
            ("node-asn", "65000"),
            ("peer-asn", "65530"),
            ("peer-ip", "192.0.2.1"),
        ]),
        P,
    )
    .unwrap()
    .unwrap();
    assert_eq!((d.router_id, d.source(), d.source_v6()), (None, None, None));
    let p = &d.peers[0];
    assert!(p.password.is_none() && !p.is_multihop());
    // Empty optional values count as absent.
    let d2 = parse(
        &map(&[
            ("node-asn", "65000"),
            ("peer-asn", "65530"),
            ("peer-ip", "192.0.2.1"),
            ("src-ip", ""),
            ("bgp-pass", ""),
            ("peer-multi-hop", " "),
        ]),
        P,
    )
    .unwrap()
    .unwrap();
    assert_eq!(d, d2);
}

#[test]
fn partial_annotations_name_the_missing_key() {
    for (drop, key) in [
        ("bgp-peers-1-node-asn", "bgp-peers-1-node-asn"),
        ("bgp-peers-0-peer-asn", "bgp-peers-0-peer-asn"),
        ("bgp-peers-1-peer-ip", "bgp-peers-1-peer-ip"),
    ] {
        let pairs: Vec<_> = ccm().into_iter().filter(|(k, _)| *k != drop).collect();
        let e = parse(&map(&pairs), P).unwrap_err();
        assert_eq!(
            e,
            AnnotationError::Missing {
                key: format!("{P}/{key}")
            },
            "dropping {drop}"
        );
        assert!(
            e.to_string().starts_with(&format!("{P}/{key}: missing")),
            "{e}"
        );
    }
    // Only a password so far.
    let e = parse(&map(&[("bgp-pass", PW_B64)]), P).unwrap_err();
    assert_eq!(
        e,
        AnnotationError::Missing {
            key: format!("{P}/node-asn")
        }
    );
    // Present but empty.
    let e = parse(
        &map(&[
            ("node-asn", "65000"),
            ("peer-asn", "65530"),
            ("peer-ip", " , "),
        ]),
        P,
    )
    .unwrap_err();
    assert_eq!(
        e,
        AnnotationError::Missing {
            key: format!("{P}/peer-ip")
        }
    );
    let e = parse(&map(&[("node-asn", ""), ("peer-asn", "65530")]), P).unwrap_err();
    assert_eq!(
        e,
        AnnotationError::Missing {
            key: format!("{P}/node-asn")
        }
    );
}

/// `ccm()` with one value replaced.
fn ccm_with(key: &str, value: &str) -> BTreeMap<String, String> {
    let mut m = map(&ccm());
    m.insert(format!("{P}/{key}"), value.to_string());
    m
}

#[test]
fn bad_values_name_the_key() {
    for (key, value, needle) in [
        ("bgp-peers-0-node-asn", "AS65000", "bgp-peers-0-node-asn: \"AS65000\" is not an AS number"),
        ("bgp-peers-0-node-asn", "0", "bgp-peers-0-node-asn: \"0\" is not an AS number"),
        ("bgp-peers-1-peer-asn", "4294967296", "bgp-peers-1-peer-asn: \"4294967296\""),
        ("bgp-peers-1-peer-asn", "-1", "bgp-peers-1-peer-asn"),
        ("bgp-peers-1-peer-asn", "1.65536", "bgp-peers-1-peer-asn"),
        ("bgp-peers-0-peer-ip", "169.254.255.1,bogus", "bgp-peers-0-peer-ip: \"bogus\" is not an IP address"),
        ("bgp-peers-0-src-ip", "192.0.2.300", "bgp-peers-0-src-ip: \"192.0.2.300\""),
        ("bgp-peers-0-peer-multi-hop", "yes", "bgp-peers-0-peer-multi-hop: \"yes\" is not \"true\" or \"false\""),
        ("bgp-peers-1-node-asn", "65001", "bgp-peers-1-node-asn is 65001 but metal.equinix.com/bgp-peers-0-node-asn is 65000"),
        ("bgp-peers-1-src-ip", "192.0.2.12", "bgp-peers-1-src-ip is 192.0.2.12 but metal.equinix.com/bgp-peers-0-src-ip is 192.0.2.11"),
    ] {
        let e = parse(&ccm_with(key, value), P).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&format!("{P}/{needle}")), "{key}={value}: {text}");
    }
    // The same peer in two entries with other settings.
    let mut m = ccm_with("bgp-peers-1-peer-ip", "169.254.255.1");
    m.insert(format!("{P}/bgp-peers-1-peer-asn"), "65531".into());
    let e = parse(&m, P).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{P}/bgp-peers-1-peer-ip: peer 169.254.255.1 is already listed with different settings"
        )
    );
    // The same peer in two entries with the same settings is one peer.
    let d = parse(
        &ccm_with("bgp-peers-1-peer-ip", "169.254.255.1,169.254.255.2"),
        P,
    )
    .unwrap()
    .unwrap();
    assert_eq!(d.peers.len(), 2);
    // An IPv6 src-ip next to an IPv4 one is not a conflict.
    let d = parse(&ccm_with("bgp-peers-1-src-ip", "2001:db8::b"), P)
        .unwrap()
        .unwrap();
    // (It would be the source of IPv6 peers; there are none here.)
    assert_eq!(d.source(), Some(ip("192.0.2.11")));
    assert_eq!(d.peers.len(), 2);
}

#[test]
fn passwords_never_appear_in_errors() {
    // Not base64: '-' is outside the standard alphabet; the message must not show where.
    let raw = "Zq8-md5-not-in-logs";
    let e = parse(&ccm_with("bgp-peers-0-bgp-pass", raw), P).unwrap_err();
    assert_eq!(
        e,
        AnnotationError::InvalidPassword {
            key: format!("{P}/bgp-peers-0-bgp-pass"),
            reason: "not valid base64".into()
        }
    );
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains(raw) && !shown.contains("45") && !shown.contains("offset"),
        "{shown}"
    );
    // A value made of the message's own text (the fuzzer's first finding, a false alarm of
    // its oracle): the error is the same as for any other invalid value.
    let text = ".com/bgp-pass: not valid base6";
    let e2 = parse(&ccm_with("bgp-peers-0-bgp-pass", text), P).unwrap_err();
    assert_eq!(e2, e);
    // Not UTF-8 (0xff 0xfe).
    let e = parse(&ccm_with("bgp-peers-0-bgp-pass", "//4="), P).unwrap_err();
    assert!(e.to_string().contains("not UTF-8"), "{e}");
    // Too long for TCP MD5.
    let long_b64 = "eHh4".repeat(27); // 81 × 'x'
    let e = parse(&ccm_with("bgp-peers-1-bgp-pass", &long_b64), P).unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("81 bytes"), "{shown}");
    assert!(
        !shown.contains("xxx") && !shown.contains(&long_b64),
        "{shown}"
    );
    // A good password never shows up in another entry's error either.
    let e = parse(&ccm_with("bgp-peers-1-peer-asn", "x"), P).unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(PW) && !shown.contains(PW_B64), "{shown}");
}

#[test]
fn ambiguous_numbering() {
    let mut m = map(&ccm());
    m.insert(format!("{P}/bgp-peers-01-peer-ip"), "198.51.100.1".into());
    let e = parse(&m, P).unwrap_err();
    assert!(matches!(e, AnnotationError::Ambiguous { .. }), "{e:?}");
    // Not a number: not one of ours, ignored.
    let mut m = map(&ccm());
    m.insert(format!("{P}/bgp-peers-x-peer-ip"), "198.51.100.1".into());
    m.insert(format!("{P}/bgp-peers--peer-ip"), "198.51.100.1".into());
    m.insert(format!("{P}/bgp-peers-+1-peer-ip"), "198.51.100.1".into());
    assert_eq!(parse(&m, P).unwrap().unwrap().peers.len(), 2);
}
