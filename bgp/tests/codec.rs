//! Codec byte vectors, both ways: hand-assembled messages from the RFC layouts, and OPEN,
//! UPDATE and KEEPALIVE bytes captured from BIRD 2.0.12 and FRR 8.4.4
//! (bgp/tests/data, recorded by labs/capture/capture.sh).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use bgp::codec::notification::cease;
use bgp::codec::open::{Capabilities, Open};
use bgp::codec::update_in::{parse_update, AsSegment};
use bgp::codec::update_out::end_of_rib;
use bgp::codec::{self, decode, DecodeCtx, EncodeCtx, Message, Notification, ReceivedUpdate};
use bgp::{Community, Family, LargeCommunity, RouteAttrs};
use ipnet::IpNet;

mod fsm_common;
use fsm_common::hex;

const MARKER: &str = "ffffffffffffffffffffffffffffffff";

fn ebgp_ctx() -> EncodeCtx {
    EncodeCtx {
        ibgp: false,
        local_as: 65001,
        four_octet_as: true,
        max_len: 4096,
        next_hop_v4: Some(IpAddr::V4(Ipv4Addr::new(10, 55, 0, 11))),
        next_hop_v6: Some("2001:db8:55::11".parse().unwrap()),
        ipv4_over_ipv6_next_hop: false,
        next_hop_link_local: None,
        default_local_pref: 100,
    }
}

fn dctx(four: bool, ibgp: bool) -> DecodeCtx {
    DecodeCtx {
        four_octet_as: four,
        ibgp,
    }
}

#[test]
fn keepalive_notification_route_refresh_vectors() {
    let ka = hex(&format!("{MARKER} 0013 04"));
    assert_eq!(codec::encode_keepalive().to_vec(), ka);
    assert_eq!(
        decode(&ka, 4096, &dctx(true, false)).unwrap(),
        Message::Keepalive
    );

    // Cease / Administrative Shutdown with an RFC 9003 message "bye".
    let n = hex(&format!("{MARKER} 0019 03 06 02 03 627965"));
    let ours = Notification::cease_with_message(cease::ADMIN_SHUTDOWN, "bye");
    assert_eq!(codec::encode_notification(&ours).to_vec(), n);
    assert_eq!(
        decode(&n, 4096, &dctx(true, false)).unwrap(),
        Message::Notification(ours)
    );

    // RFC 2918 ROUTE-REFRESH for IPv4 unicast.
    let rr = hex(&format!("{MARKER} 0017 05 0001 00 01"));
    assert_eq!(
        codec::encode_route_refresh(Family::Ipv4Unicast).to_vec(),
        rr
    );
    assert_eq!(
        decode(&rr, 4096, &dctx(true, false)).unwrap(),
        Message::RouteRefresh {
            family: Some(Family::Ipv4Unicast),
            subtype: 0
        }
    );
}

#[test]
fn open_vector_both_ways() {
    // Version 4, AS 65001, hold 90, id 10.55.0.11, one Capabilities parameter holding
    // MP IPv4 unicast, MP IPv6 unicast, route refresh, 4-octet AS 65001, extended message.
    let bytes = hex(&format!(
        "{MARKER} 0035 01 04 fde9 005a 0a37000b 18 02 16 \
         01 04 0001 00 01  01 04 0002 00 01  02 00  41 04 0000fde9  06 00"
    ));
    let caps = Capabilities {
        families: Family::ALL.to_vec(),
        multiprotocol: true,
        route_refresh: true,
        four_octet_as: Some(65001),
        extended_message: true,
        ..Default::default()
    };
    let open = Open::new(65001, 90, Ipv4Addr::new(10, 55, 0, 11), caps);
    assert_eq!(codec::encode_open(&open).to_vec(), bytes);
    assert_eq!(
        decode(&bytes, 4096, &dctx(true, false)).unwrap(),
        Message::Open(open)
    );
}

#[test]
fn ebgp_update_vector_both_ways_with_as_sequence_on_the_wire() {
    let bytes = hex(&format!(
        "{MARKER} 004d 02 0000 0031 \
         40 01 01 00 \
         40 02 06 02 01 0000fde9 \
         40 03 04 0a37000b \
         80 04 04 00000032 \
         c0 08 04 fde90064 \
         c0 20 0c 0000fde9 00000001 00000002 \
         20 cb00710a"
    ));
    let attrs = RouteAttrs {
        med: Some(50),
        communities: vec![Community::new(65001, 100)],
        large_communities: vec![LargeCommunity {
            global: 65001,
            local1: 1,
            local2: 2,
        }],
        ..Default::default()
    };
    let p: IpNet = "203.0.113.10/32".parse().unwrap();
    let (msgs, skipped) = ebgp_ctx()
        .announce(Family::Ipv4Unicast, &attrs, &[p])
        .unwrap();
    assert_eq!(skipped, 0);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].to_vec(), bytes);

    // The AS_PATH attribute: flags 0x40, type 2, length 6, then the segment type octet.
    // 2 is AS_SEQUENCE (RFC 4271 §4.3); zettabgp wrote 1 (AS_SET) here.
    let at = bytes
        .windows(3)
        .position(|w| w == [0x40, 0x02, 0x06])
        .unwrap();
    assert_eq!(bytes[at + 3], 2, "AS_PATH segment type must be AS_SEQUENCE");

    let Message::Update(u) = decode(&bytes, 4096, &dctx(true, false)).unwrap() else {
        panic!()
    };
    assert_eq!(u.announced, vec![p]);
    assert_eq!(
        u.attrs.as_path,
        Some(vec![AsSegment {
            kind: 2,
            asns: vec![65001]
        }])
    );
    assert_eq!(u.attrs.next_hop, Some(Ipv4Addr::new(10, 55, 0, 11)));
    assert_eq!(u.attrs.med, Some(50));
    assert_eq!(u.attrs.communities, attrs.communities);
    assert_eq!(u.attrs.large_communities, attrs.large_communities);
}

#[test]
fn ibgp_update_has_empty_as_path_and_local_pref() {
    let mut ctx = ebgp_ctx();
    ctx.ibgp = true;
    let attrs = RouteAttrs {
        local_pref: Some(200),
        ..Default::default()
    };
    let (msgs, _) = ctx
        .announce(
            Family::Ipv4Unicast,
            &attrs,
            &["203.0.113.10/32".parse().unwrap()],
        )
        .unwrap();
    let b = &msgs[0];
    // ORIGIN, then AS_PATH with length 0.
    assert_eq!(&b[23..30], &[0x40, 1, 1, 0, 0x40, 2, 0]);
    let u = parse_update(&b[19..], &dctx(true, true)).unwrap();
    assert_eq!(u.attrs.as_path, Some(vec![]));
    assert_eq!(u.attrs.local_pref, Some(200));
}

#[test]
fn ipv6_update_and_end_of_rib_vectors() {
    let (msgs, _) = ebgp_ctx()
        .announce(
            Family::Ipv6Unicast,
            &RouteAttrs::default(),
            &["2001:db8:ff::10/128".parse().unwrap()],
        )
        .unwrap();
    let u = parse_update(&msgs[0][19..], &dctx(true, false)).unwrap();
    assert_eq!(
        u.announced,
        vec!["2001:db8:ff::10/128".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        u.attrs.mp_next_hop,
        Some(IpAddr::V6("2001:db8:55::11".parse().unwrap()))
    );
    assert_eq!(
        u.attrs.next_hop, None,
        "no NEXT_HOP attribute with MP_REACH only"
    );
    assert_eq!(
        end_of_rib(Family::Ipv4Unicast).to_vec(),
        hex(&format!("{MARKER} 0017 02 0000 0000"))
    );
    assert_eq!(
        end_of_rib(Family::Ipv6Unicast).to_vec(),
        hex(&format!("{MARKER} 001d 02 0000 0006 80 0f 03 0002 01"))
    );
    let w = ebgp_ctx().withdraw(
        Family::Ipv6Unicast,
        &["2001:db8:ff::10/128".parse().unwrap()],
    );
    let u = parse_update(&w[0][19..], &dctx(true, false)).unwrap();
    assert_eq!(
        u.withdrawn,
        vec!["2001:db8:ff::10/128".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn ipv4_route_with_ipv6_next_hop_uses_mp_reach_when_rfc8950_is_negotiated() {
    let mut ctx = ebgp_ctx();
    ctx.next_hop_v4 = Some(IpAddr::V6("2001:db8:55::11".parse().unwrap()));
    let p: IpNet = "203.0.113.10/32".parse().unwrap();
    assert!(ctx
        .announce(Family::Ipv4Unicast, &RouteAttrs::default(), &[p])
        .is_err());
    ctx.ipv4_over_ipv6_next_hop = true;
    let (msgs, _) = ctx
        .announce(Family::Ipv4Unicast, &RouteAttrs::default(), &[p])
        .unwrap();
    let u = parse_update(&msgs[0][19..], &dctx(true, false)).unwrap();
    assert_eq!(u.announced, vec![p]);
    assert_eq!(
        u.attrs.mp_next_hop,
        Some(IpAddr::V6("2001:db8:55::11".parse().unwrap()))
    );
}

// ---- captured bytes -------------------------------------------------------------------

struct Capture {
    name: String,
    msgs: Vec<(String, Vec<u8>)>,
}

fn load(name: &str) -> Capture {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    files.sort();
    let msgs = files
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                hex(&std::fs::read_to_string(p).unwrap()),
            )
        })
        .collect();
    Capture {
        name: name.to_string(),
        msgs,
    }
}

/// What every capture scenario must decode to (the routers' configurations, see
/// labs/capture/capture.sh and each directory's expected.txt).
fn check_capture(name: &str, ibgp: bool, asn: u32) {
    let cap = load(name);
    let ctx = dctx(true, ibgp);
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut eors = Vec::new();
    let mut updates: Vec<ReceivedUpdate> = Vec::new();
    for (file, bytes) in &cap.msgs {
        let msg = decode(bytes, 4096, &ctx).unwrap_or_else(|n| panic!("{}/{file}: {n}", cap.name));
        match msg {
            Message::Open(o) => {
                assert_eq!(o.asn, asn, "{file}");
                if asn > 65535 {
                    assert_eq!(o.my_as_field, 23456, "AS_TRANS in {file}");
                }
                assert_eq!(o.router_id, Ipv4Addr::new(10, 77, 0, 1));
                assert_eq!(o.caps.four_octet_as, Some(asn));
                assert!(o.caps.families.contains(&Family::Ipv4Unicast));
                assert!(o.caps.route_refresh);
                assert!(o.caps.graceful_restart.is_some());
                if name.starts_with("frr") {
                    assert_eq!(o.caps.hostname.as_deref(), Some("vipr-frr"));
                    assert!(
                        o.caps.extended_message && o.caps.enhanced_route_refresh && o.caps.add_path
                    );
                }
                // Our OPEN type re-encodes to something that decodes the same.
                let again = codec::encode_open(&o);
                let Message::Open(o2) = decode(&again, 4096, &ctx).unwrap() else {
                    panic!()
                };
                assert_eq!(o2.caps.families, o.caps.families);
                assert_eq!(
                    (o2.asn, o2.hold_time, o2.router_id),
                    (o.asn, o.hold_time, o.router_id)
                );
            }
            Message::Keepalive => assert_eq!(bytes.as_slice(), &codec::encode_keepalive()[..]),
            Message::Update(u) => {
                if let Some(f) = u.end_of_rib {
                    // End-of-RIB bytes are identical to ours.
                    assert_eq!(bytes.as_slice(), &end_of_rib(f)[..], "{file}");
                    eors.push(f);
                    continue;
                }
                assert_eq!(u.treat_as_withdraw, None, "{file}");
                for p in &u.announced {
                    match p {
                        IpNet::V4(_) => v4.push(*p),
                        IpNet::V6(_) => v6.push(*p),
                    }
                }
                updates.push(u);
            }
            m => panic!("unexpected {m:?} in {file}"),
        }
    }
    let n = |s: &str| s.parse::<IpNet>().unwrap();
    v4.sort();
    if name.ends_with("as4") {
        assert_eq!(v4, vec![n("203.0.113.10/32")]);
        assert_eq!(eors, vec![Family::Ipv4Unicast]);
    } else {
        assert_eq!(v4, vec![n("203.0.113.10/32"), n("203.0.113.11/32")]);
        assert_eq!(v6, vec![n("2001:db8:ff::10/128")]);
        eors.sort();
        assert_eq!(eors, vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
    }
    for u in &updates {
        let a = &u.attrs;
        assert_eq!(a.origin, Some(0));
        let path = if ibgp {
            vec![]
        } else {
            vec![AsSegment {
                kind: 2,
                asns: vec![asn],
            }]
        };
        assert_eq!(a.as_path.as_ref(), Some(&path), "{}", cap.name);
        assert_eq!(a.med, Some(50));
        assert_eq!(a.local_pref, if ibgp { Some(200) } else { None });
        assert_eq!(a.communities, vec![Community::new(65010, 100)]);
        assert_eq!(
            a.large_communities,
            vec![LargeCommunity {
                global: 65010,
                local1: 1,
                local2: 2
            }]
        );
        if u.announced[0].addr().is_ipv4() {
            assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 77, 0, 1)));
        } else {
            assert_eq!(
                a.mp_next_hop,
                Some(IpAddr::V6("2001:db8:77::1".parse::<Ipv6Addr>().unwrap()))
            );
        }
        // The other way: our encoder, given the same route and attributes, produces an UPDATE
        // that decodes to the same attributes and prefixes.
        let fam = Family::of(&u.announced[0]);
        let ctx_out = EncodeCtx {
            ibgp,
            local_as: asn,
            four_octet_as: true,
            max_len: 4096,
            next_hop_v4: Some(IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1))),
            next_hop_v6: Some("2001:db8:77::1".parse().unwrap()),
            ipv4_over_ipv6_next_hop: false,
            next_hop_link_local: None,
            default_local_pref: 100,
        };
        let attrs = RouteAttrs {
            med: a.med,
            local_pref: a.local_pref,
            communities: a.communities.clone(),
            large_communities: a.large_communities.clone(),
            next_hop: None,
            as_path_prepend: 0,
        };
        let (ours, _) = ctx_out.announce(fam, &attrs, &u.announced).unwrap();
        let back = parse_update(&ours[0][19..], &dctx(true, ibgp)).unwrap();
        let mut expect = u.attrs.clone();
        expect.mp_next_hop = back.attrs.mp_next_hop; // they also send a link-local address
        assert_eq!(back.attrs, expect, "{}", cap.name);
        let mut got = back.announced.clone();
        got.sort();
        let mut want = u.announced.clone();
        want.sort();
        assert_eq!(got, want);
    }
}

#[test]
fn bird2_ebgp_capture() {
    check_capture("bird-ebgp", false, 65010);
}

#[test]
fn bird2_ibgp_capture() {
    check_capture("bird-ibgp", true, 65010);
}

#[test]
fn bird2_four_octet_as_capture() {
    check_capture("bird-as4", false, 4_200_000_001);
}

#[test]
fn frr_ebgp_capture() {
    check_capture("frr-ebgp", false, 65010);
}

#[test]
fn frr_ibgp_capture() {
    check_capture("frr-ibgp", true, 65010);
}

#[test]
fn frr_four_octet_as_capture() {
    check_capture("frr-as4", false, 4_200_000_001);
}
