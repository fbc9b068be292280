//! BGP unnumbered on the wire: the Extended Next Hop Encoding capability (RFC 8950 §3,
//! code 5) both ways, MP_REACH_NLRI of IPv4 routes with an IPv6 next hop (RFC 8950 §4) and
//! of IPv6 routes with a link-local next hop (RFC 2545 §3) as byte vectors, and the session
//! core over link-local addresses: what it offers, what it sends, and what it refuses to
//! send when the peer does not offer the capability (with the reason in its status).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgp::codec::open::{Capabilities, Open};
use bgp::codec::{self, EncodeCtx, Message};
use bgp::fsm::{Input, Output, Session};
use bgp::{Family, PeerConfig, RouteAttrs, State};
use ipnet::IpNet;

mod fsm_common;
use fsm_common::*;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

const MARKER: &str = "ffffffffffffffffffffffffffffffff";
/// RFC 8950 §3 capability: code 5, length 6, NLRI AFI 1, NLRI SAFI 1, next hop AFI 2.
const ENH_CAP: &str = "05 06 0001 0001 0002";

#[test]
fn extended_next_hop_capability_encodes_and_decodes() {
    let caps = Capabilities {
        families: vec![Family::Ipv4Unicast],
        multiprotocol: true,
        extended_next_hop: vec![(Family::Ipv4Unicast, 2)],
        ..Default::default()
    };
    let b = codec::encode_open(&Open::new(65001, 90, Ipv4Addr::new(192, 0, 2, 1), caps));
    assert!(contains(&b, &hex(ENH_CAP)), "{b:02x?}");

    // An OPEN assembled by hand: AS 65000, hold 90, id 192.0.2.2, one Capabilities
    // parameter (type 2) with MP IPv4 unicast and the extended next hop capability.
    let body = hex(&format!(
        "04 fde8 005a c0000202 10 02 0e 01 04 0001 00 01 {ENH_CAP}"
    ));
    let frame = [hex(&format!("{MARKER} {:04x} 01", 19 + body.len())), body].concat();
    let Message::Open(o) = codec::decode(&frame, 4096, &dctx()).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(o.caps.extended_next_hop, vec![(Family::Ipv4Unicast, 2)]);
    assert_eq!(o.caps.families, vec![Family::Ipv4Unicast]);
}

fn dctx() -> codec::DecodeCtx {
    codec::DecodeCtx {
        four_octet_as: true,
        ibgp: false,
    }
}

fn ctx(next_hop: &str, link_local: Option<&str>) -> EncodeCtx {
    EncodeCtx {
        ibgp: false,
        local_as: 65001,
        four_octet_as: true,
        max_len: 4096,
        next_hop_v4: Some(next_hop.parse().unwrap()),
        next_hop_v6: match next_hop.parse().unwrap() {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        },
        ipv4_over_ipv6_next_hop: true,
        next_hop_link_local: link_local.map(|l| l.parse().unwrap()),
        default_local_pref: 100,
    }
}

/// ORIGIN IGP, AS_PATH [65001] (4-octet), then MP_REACH_NLRI: the bytes every vector below
/// shares before its next hop.
const HEAD_ATTRS: &str = "40 01 01 00  40 02 06 02 01 0000fde9";

#[test]
fn ipv4_route_with_a_link_local_next_hop_is_16_octets_in_mp_reach() {
    let p: IpNet = "192.0.2.10/32".parse().unwrap();
    let (m, _) = ctx("fe80::2", Some("fe80::2"))
        .announce(Family::Ipv4Unicast, &RouteAttrs::default(), &[p])
        .unwrap();
    // MP_REACH_NLRI (optional, type 14), 26 octets: AFI 1, SAFI 1, next hop length 16,
    // fe80::2, reserved 0, NLRI 192.0.2.10/32. No NEXT_HOP attribute, no IPv4 NLRI field.
    let want = hex(&format!(
        "{MARKER} 0041 02 0000 002a {HEAD_ATTRS}
         80 0e 1a 0001 01 10 fe800000000000000000000000000002 00 20 c000020a"
    ));
    assert_eq!(m[0].to_vec(), want);
}

#[test]
fn ipv4_route_with_global_and_link_local_next_hops_is_32_octets() {
    let p: IpNet = "192.0.2.10/32".parse().unwrap();
    let (m, _) = ctx("2001:db8::2", Some("fe80::2"))
        .announce(Family::Ipv4Unicast, &RouteAttrs::default(), &[p])
        .unwrap();
    let want = hex(&format!(
        "{MARKER} 0051 02 0000 003a {HEAD_ATTRS}
         80 0e 2a 0001 01 20 20010db8000000000000000000000002
         fe800000000000000000000000000002 00 20 c000020a"
    ));
    assert_eq!(m[0].to_vec(), want);
}

#[test]
fn ipv6_route_over_link_local_takes_the_link_local_next_hop() {
    let p: IpNet = "2001:db8:1::10/128".parse().unwrap();
    let (m, _) = ctx("fe80::2", Some("fe80::2"))
        .announce(Family::Ipv6Unicast, &RouteAttrs::default(), &[p])
        .unwrap();
    // AFI 2, SAFI 1, 16 octets fe80::2, reserved, 2001:db8:1::10/128 (17 octets).
    let want = hex(&format!(
        "{MARKER} 004d 02 0000 0036 {HEAD_ATTRS}
         80 0e 26 0002 01 10 fe800000000000000000000000000002 00
         80 20010db8000100000000000000000010"
    ));
    assert_eq!(m[0].to_vec(), want);
}

// ---- the session core over link-local addresses ----------------------------------------

fn unnumbered() -> PeerConfig {
    let mut c = PeerConfig::on_interface("eth1", 65000, 65001)
        .with_neighbor("fe80::1".parse::<Ipv6Addr>().unwrap());
    c.hold_time = 9;
    c
}

/// Drives a link-local session to Established with a peer whose OPEN offers (or not) the
/// extended next hop capability; returns the session and the Established parameters.
fn establish(enh: bool) -> (Session, Box<bgp::codec::Negotiated>, Vec<Output>) {
    let routes = table(&["192.0.2.10/32", "2001:db8:1::10/128"]);
    let mut s = Session::new(Arc::new(unnumbered()), ident(), routes, 7);
    s.handle(Input::Start);
    let outs = s.handle(Input::Connected {
        conn: 1,
        local: "[fe80::2]:40000".parse().unwrap(),
    });
    let ours = sent(&outs)
        .into_iter()
        .find_map(|m| match m {
            Message::Open(o) => Some(o),
            _ => None,
        })
        .expect("an OPEN");
    assert_eq!(
        ours.caps.extended_next_hop,
        vec![(Family::Ipv4Unicast, 2)],
        "a session over IPv6 offers IPv4 routes with IPv6 next hops"
    );
    let caps = Capabilities {
        families: Family::ALL.to_vec(),
        multiprotocol: true,
        four_octet_as: Some(65000),
        extended_next_hop: if enh {
            vec![(Family::Ipv4Unicast, 2)]
        } else {
            vec![]
        },
        ..Default::default()
    };
    let open = codec::encode_open(&Open::new(65000, 90, Ipv4Addr::new(192, 0, 2, 1), caps));
    s.handle(frame(1, open));
    let outs = s.handle(frame(1, codec::encode_keepalive()));
    let neg = outs
        .iter()
        .find_map(|o| match o {
            Output::Established(n) => Some(n.clone()),
            _ => None,
        })
        .expect("Established");
    assert_eq!(s.state(), State::Established);
    let mut all = Vec::new();
    while let Some(id) = s.wants_tx() {
        all.extend(s.handle(Input::TxReady(id)));
    }
    (s, neg, all)
}

fn announced(outs: &[Output]) -> Vec<(IpNet, Option<IpAddr>)> {
    sent(outs)
        .into_iter()
        .filter_map(|m| match m {
            Message::Update(u) => Some(u),
            _ => None,
        })
        .flat_map(|u| {
            let nh = u.attrs.mp_next_hop;
            u.announced.into_iter().map(move |p| (p, nh))
        })
        .collect()
}

#[test]
fn with_the_capability_ipv4_and_ipv6_routes_go_with_our_link_local_next_hop() {
    let (s, neg, outs) = establish(true);
    assert!(neg.ipv4_over_ipv6_next_hop);
    assert!(neg.without_next_hop.is_empty());
    let ll: IpAddr = "fe80::2".parse().unwrap();
    let mut got = announced(&outs);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("192.0.2.10/32".parse().unwrap(), Some(ll)),
            ("2001:db8:1::10/128".parse().unwrap(), Some(ll)),
        ]
    );
    assert_eq!(s.stats().prefixes_unsendable, 0);
}

#[test]
fn without_the_capability_ipv4_routes_are_not_sent_and_the_status_says_why() {
    let (s, neg, outs) = establish(false);
    assert!(!neg.ipv4_over_ipv6_next_hop);
    let got = announced(&outs);
    assert_eq!(
        got,
        vec![(
            "2001:db8:1::10/128".parse().unwrap(),
            Some("fe80::2".parse().unwrap())
        )],
        "only the IPv6 route"
    );
    assert_eq!(s.stats().prefixes_unsendable, 1);
    assert_eq!(neg.without_next_hop.len(), 1);
    let (f, why) = neg.without_next_hop[0];
    assert_eq!(f, Family::Ipv4Unicast);
    assert!(why.contains("RFC 8950"), "{why}");
    let info = bgp::NegotiatedInfo::from(neg.as_ref());
    assert_eq!(info.without_next_hop, neg.without_next_hop);
}
