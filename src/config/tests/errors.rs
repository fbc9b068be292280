//! Error messages: each names the setting and the bad value (a password never, not even a
//! piece of one), says what is expected, and never shows a parser library's words.

use super::*;

/// Words of Rust's parsers, the YAML parser and the OS that must never reach a user.
const INTERNALS: &[&str] = &[
    "invalid IP address syntax",
    "invalid digit",
    "ParseIntError",
    "AddrParseError",
    "number too large",
    "cannot parse integer",
    "invalid float literal",
    "string scalar",
    "mapping start",
    "duplicate mapping key",
    "DuplicateKeyPolicy",
    "os error",
    "Error {",
];

fn no_internals(e: &str) {
    for w in INTERNALS {
        assert!(!e.contains(w), "a parser's words ({w:?}): {e}");
    }
}

fn err_with(extra: &[(&'static str, &str)]) -> String {
    let mut env = base();
    for (k, v) in extra {
        env.insert(k, v.to_string());
    }
    let e = build(&env)
        .expect_err(&format!("{extra:?} must be refused"))
        .to_string();
    no_internals(&e);
    e
}

#[test]
fn a_bad_value_is_named_with_what_is_expected() {
    for (key, value, expected) in [
        (
            "address",
            "10.0.0.300",
            "not an IP address: 300 is not in 0..=255",
        ),
        (
            "address",
            "10.0.0.1.2",
            "an IPv4 address has 4 numbers, not 5",
        ),
        ("address", "010.0.0.1", "010: leading zeros are not allowed"),
        ("address", "2001:db8:::1", "IPv6 is hex groups"),
        (
            "address",
            "vip_example",
            "expected an IP address or a DNS name",
        ),
        ("bgp_routerid", "2001:db8::1", "expected an IPv4 address"),
        (
            "bgp_routerid",
            "192.0.2",
            "not an IPv4 address: an IPv4 address has 4 numbers",
        ),
        ("bgp_sourceip", "192.0.2.256", "256 is not in 0..=255"),
        (
            "vipr_static_vips",
            "192.0.2.1,192.0.2.999",
            "\"192.0.2.999\": not an IP address: 999",
        ),
        ("port", "6443x", "expected a number in 1..=65535"),
        ("bgp_as", "65000x", "\"65000x\" is not an AS number"),
        ("bgp_hold_time", "-1", "expected a number in 0..=65535"),
        ("vipr_communities", "65000:x", "expected ASN:VALUE"),
        ("prometheus_server", ":99999", "expected HOST:PORT"),
        ("vipr_bfd", "true;x", "rx must be 50..=60000 ms"),
        ("vip_subnet", "/33", "expected 1..=32"),
    ] {
        let e = err_with(&[(key, value)]);
        assert!(
            e.contains(&format!("env {key}: {key}={value:?}")),
            "{key}={value}: setting and value not named: {e}"
        );
        assert!(e.contains(expected), "{key}={value}: {e}");
    }
    // The single value is not repeated as a list item.
    let e = err_with(&[("vipr_static_vips", "192.0.2.999")]);
    assert_eq!(e.matches("192.0.2.999").count(), 1, "{e}");
}

#[test]
fn a_hold_time_below_the_default_keepalive_blames_the_hold_time() {
    let e = err_with(&[("bgp_hold_time", "9")]);
    assert!(
        e.starts_with("env bgp_hold_time: bgp_hold_time=\"9\": must be more than bgp_keepalive_interval (10 when unset)"),
        "{e}"
    );
    let e = err_with(&[("bgp_hold_time", "9"), ("bgp_keepalive_interval", "9")]);
    assert!(
        e.starts_with("env bgp_keepalive_interval: bgp_keepalive_interval=\"9\": must be less than bgp_hold_time (9)"),
        "{e}"
    );
    assert!(build(&{
        let mut env = base();
        env.insert("bgp_hold_time", "9".into());
        env.insert("bgp_keepalive_interval", "3".into());
        env
    })
    .is_ok());
}

/// kube-vip's `bgp_peers` (`pkg/kubevip/config_bgp.go` v1.2.3 splits on `,` then `:`): the
/// bad address is named, and a password with a separator is hinted at without a piece of it.
#[test]
fn bgp_peers_errors_name_the_address_and_hint_at_separators_in_passwords() {
    let e = err_with(&[("bgp_peers", "10.0.0.300:65000::false")]);
    assert!(e.contains("bgp_peers=\"<redacted>\""), "{e}");
    assert!(
        e.ends_with(
            "peer #1: the address \"10.0.0.300\" is not an IP address: 300 is not in 0..=255"
        ),
        "{e}"
    );
    let e = err_with(&[(
        "bgp_peers",
        "192.0.2.1:65000::false,192.0.2.300:65000::false",
    )]);
    assert!(e.contains("peer #2: the address \"192.0.2.300\""), "{e}");
    for (peers, says) in [
        (
            "2001:db8::1:65000::false",
            "IPv6 addresses go in [brackets]",
        ),
        (
            "192.0.2.1:65000::maybe",
            "multihop \"maybe\" is not true or false",
        ),
        (
            "192.0.2.1:65000::false:70000",
            "port \"70000\" is not in 1..=65535",
        ),
        ("192.0.2.1:6500O::false", "AS \"6500O\" is not an AS number"),
    ] {
        let e = err_with(&[("bgp_peers", peers)]);
        assert!(e.contains(says), "{peers}: {e}");
        assert!(
            !e.contains("password"),
            "{peers}: no password to hint at: {e}"
        );
    }
    // Zq7 and pw9X are the two pieces of a password cut by a separator.
    for (peers, says) in [
        ("192.0.2.1:65000:Zq7:pw9X:false", "peer #1 (192.0.2.1): multihop is not true or false; does the password contain ':' or ','?"),
        ("192.0.2.1:65000:Zq7:true:pw9X", "peer #1 (192.0.2.1): port is not in 1..=65535; does the password contain ':' or ','?"),
        ("192.0.2.1:65000:Zq7,pw9X:false", "peer #2: the address (not shown) is not an IP address; does peer #1's password contain ':' or ','?"),
        ("[2001:db8::1]:65000:Zq7,pw9X", "peer #2: the address (not shown)"),
        ("192.0.2.1:65000:Zq7:pw9X", "multihop is not true or false; does the password"),
    ] {
        let e = err_with(&[("bgp_peers", peers)]);
        assert!(e.contains(says), "{peers}: {e}");
        assert!(e.contains("kube-vip"), "{peers}: {e}");
        assert!(!e.contains("Zq7") && !e.contains("pw9X"), "{peers}: a password piece leaked: {e}");
    }
}

#[test]
fn file_errors_say_what_is_wrong_in_the_files_terms() {
    let err = |text: &str| {
        let e = Layers::default()
            .add_yaml("f.yaml", text)
            .unwrap_err()
            .to_string();
        no_internals(&e);
        e
    };
    assert_eq!(
        err("bgp_as: {a: 1}\n"),
        "config file f.yaml: line 1 column 9 (in bgp_as): expected a value (text or a number), not a mapping or a list"
    );
    // A mapping in bgp_peers is a peer with every option (`peer_map`): its keys are checked.
    let mut l = Layers::default();
    l.add_yaml(
        "f.yaml",
        "bgp_enable: true\nbgp_peers:\n  - 192.0.2.1:65000::false\n  - {a: 2}\nvipr_static_vips: 192.0.2.10\n",
    )
    .unwrap();
    let e = Config::from_layers(&l, "n").unwrap_err().to_string();
    assert!(
        e.starts_with("config file f.yaml: line 4: bgp_peers: peer #2: unknown key: \"a\""),
        "{e}"
    );
    assert_eq!(
        err("- bgp_as\n"),
        "config file f.yaml: line 1 column 1: expected settings as `name: value` lines"
    );
    let e = err("bgp_peers: 192.0.2.1:65000:Zq7:false\n  pw9X: indent\n");
    assert!(
        e.contains("(in bgp_peers)") && e.contains("check the indentation"),
        "{e}"
    );
    assert!(!e.contains("Zq7") && !e.contains("pw9X"), "{e}");
    // A repeated key that is no setting may be a value: not repeated.
    let e = err("bgp_as: 1\nZq7pw9X: 1\nZq7pw9X: 2\n");
    assert!(
        e.ends_with("a key is given twice (not repeated here: it may be a value)"),
        "{e}"
    );
    // A file that cannot be read: the reason without the OS error number.
    let e = Layers::default()
        .add_file(std::path::Path::new("/nonexistent-vipr/vipr.yaml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "config file /nonexistent-vipr/vipr.yaml: cannot read it: No such file or directory"
    );
}
