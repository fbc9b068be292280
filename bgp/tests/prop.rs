//! Property tests: random prefix sets and attributes survive encode → decode on every
//! session shape (iBGP/eBGP, 2- or 4-octet AS, 4096 or 65535 octets); random and mutated
//! bytes never panic the decoder or the session core.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgp::codec::open::{Capabilities, Open};
use bgp::codec::update_in::{parse_update, AsSegment};
use bgp::codec::{self, decode, DecodeCtx, EncodeCtx};
use bgp::fsm::{Input, Session};
use bgp::{Community, Family, Identity, LargeCommunity, PeerConfig, RouteAttrs, RouteTable};
use bytes::Bytes;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

fn prefix() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| {
            // Keep to unicast space: netgauze (rightly) refuses multicast prefixes.
            let a = (a % 0xdf00_0000).max(1);
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l.max(8)).unwrap().trunc())
        }),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| {
            let a = (a & !(0xffu128 << 120)) | (0x20u128 << 120); // 2000::/8
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l.max(8)).unwrap().trunc())
        }),
    ]
}

fn attrs() -> impl Strategy<Value = RouteAttrs> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(any::<u32>().prop_map(Community), 0..8),
        proptest::collection::vec(
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(g, a, b)| LargeCommunity {
                global: g,
                local1: a,
                local2: b,
            }),
            0..4,
        ),
    )
        .prop_map(
            |(med, local_pref, communities, large_communities)| RouteAttrs {
                med,
                local_pref,
                communities,
                large_communities,
                next_hop: None,
                as_path_prepend: 0,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn announce_and_withdraw_round_trip(
        prefixes in proptest::collection::btree_set(prefix(), 1..600),
        a in attrs(),
        ibgp in any::<bool>(),
        four in any::<bool>(),
        local_as in prop_oneof![1u32..65535, 65536u32..4_294_967_295],
        extended in any::<bool>(),
    ) {
        let ctx = EncodeCtx {
            ibgp,
            local_as,
            four_octet_as: four,
            max_len: if extended { 65535 } else { 4096 },
            next_hop_v4: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            next_hop_v6: Some("2001:db8::1".parse().unwrap()),
            ipv4_over_ipv6_next_hop: false,
            next_hop_link_local: None,
            default_local_pref: 100,
        };
        let dctx = DecodeCtx { four_octet_as: four, ibgp };
        for f in Family::ALL {
            let ps: Vec<IpNet> = prefixes.iter().copied().filter(|p| Family::of(p) == f).collect();
            if ps.is_empty() { continue; }
            let (msgs, skipped) = ctx.announce(f, &a, &ps).unwrap();
            prop_assert_eq!(skipped, 0);
            let mut got = BTreeSet::new();
            for m in &msgs {
                prop_assert!(m.len() <= ctx.max_len);
                let codec::Message::Update(u) = decode(m, ctx.max_len, &dctx).unwrap() else { panic!() };
                prop_assert_eq!(u.treat_as_withdraw, None);
                prop_assert_eq!(&u.attrs.med, &a.med);
                prop_assert_eq!(&u.attrs.communities, &a.communities);
                prop_assert_eq!(&u.attrs.large_communities, &a.large_communities);
                prop_assert_eq!(u.attrs.local_pref, if ibgp { Some(a.local_pref.unwrap_or(100)) } else { None });
                let path = u.attrs.as_path.clone().unwrap();
                if ibgp {
                    prop_assert!(path.is_empty());
                } else if four || local_as <= 65535 {
                    prop_assert_eq!(path, vec![AsSegment { kind: 2, asns: vec![local_as] }]);
                } else {
                    prop_assert_eq!(path, vec![AsSegment { kind: 2, asns: vec![23456] }]);
                    prop_assert_eq!(u.attrs.as4_path.clone().unwrap(), vec![AsSegment { kind: 2, asns: vec![local_as] }]);
                }
                got.extend(u.announced);
            }
            prop_assert_eq!(got, ps.iter().copied().collect::<BTreeSet<_>>());
            // Packing is tight: fewer messages would not have fitted.
            let per_msg: usize = ps.iter().map(|p| 1 + (p.prefix_len() as usize).div_ceil(8)).sum();
            prop_assert!(msgs.len() <= 1 + per_msg / (ctx.max_len / 2));

            let mut withdrawn = BTreeSet::new();
            for m in ctx.withdraw(f, &ps) {
                prop_assert!(m.len() <= ctx.max_len);
                let u = parse_update(&m[19..], &dctx).unwrap();
                withdrawn.extend(u.withdrawn);
            }
            prop_assert_eq!(withdrawn, ps.iter().copied().collect::<BTreeSet<_>>());
        }
    }
}

/// A few valid messages to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let ctx = EncodeCtx {
        ibgp: false,
        local_as: 65001,
        four_octet_as: true,
        max_len: 4096,
        next_hop_v4: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        next_hop_v6: Some("2001:db8::1".parse().unwrap()),
        ipv4_over_ipv6_next_hop: false,
        next_hop_link_local: None,
        default_local_pref: 100,
    };
    let a = RouteAttrs {
        med: Some(5),
        local_pref: None,
        communities: vec![Community::new(65001, 1)],
        large_communities: vec![LargeCommunity {
            global: 1,
            local1: 2,
            local2: 3,
        }],
        next_hop: None,
        as_path_prepend: 0,
    };
    let mut v: Vec<Vec<u8>> = Vec::new();
    for (f, p) in [
        (Family::Ipv4Unicast, "203.0.113.0/24"),
        (Family::Ipv6Unicast, "2001:db8:1::/48"),
    ] {
        let p: IpNet = p.parse().unwrap();
        v.extend(
            ctx.announce(f, &a, &[p])
                .unwrap()
                .0
                .into_iter()
                .map(|b| b.to_vec()),
        );
        v.extend(ctx.withdraw(f, &[p]).into_iter().map(|b| b.to_vec()));
    }
    let caps = Capabilities {
        families: Family::ALL.to_vec(),
        multiprotocol: true,
        route_refresh: true,
        four_octet_as: Some(65000),
        extended_message: true,
        ..Default::default()
    };
    v.push(codec::encode_open(&Open::new(65000, 9, Ipv4Addr::new(192, 0, 2, 9), caps)).to_vec());
    v.push(codec::encode_keepalive().to_vec());
    v.push(codec::encode_notification(&bgp::Notification::cease_with_message(2, "x")).to_vec());
    v.push(codec::encode_route_refresh(Family::Ipv6Unicast).to_vec());
    // Captured BIRD and FRR messages too.
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for d in std::fs::read_dir(data).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|x| x == "hex") {
                let s = std::fs::read_to_string(&p).unwrap();
                let s = s.trim();
                v.push(
                    (0..s.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                        .collect(),
                );
            }
        }
    }
    v
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    SetLen(u16),
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        match *m {
            Mutation::Flip(i, x) if !b.is_empty() => {
                let i = i % b.len();
                b[i] ^= x;
            }
            Mutation::Truncate(n) => b.truncate(n % (b.len() + 1)),
            Mutation::Insert(i, x) => {
                let i = i % (b.len() + 1);
                b.insert(i, x);
            }
            Mutation::SetLen(l) if b.len() >= 18 => b[16..18].copy_from_slice(&l.to_be_bytes()),
            _ => {}
        }
    }
    b
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
        1 => any::<u16>().prop_map(Mutation::SetLen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_messages_never_panic_the_decoder(
        seed in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..6),
        four in any::<bool>(),
        ibgp in any::<bool>(),
    ) {
        let all = seeds();
        let b = apply(all[seed.index(all.len())].clone(), &muts);
        let _ = decode(&b, 65535, &DecodeCtx { four_octet_as: four, ibgp });
        let _ = decode(&b, 4096, &DecodeCtx { four_octet_as: four, ibgp });
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(body in proptest::collection::vec(any::<u8>(), 0..300), t in 0u8..8) {
        let mut b = vec![0xff; 16];
        b.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        b.push(t);
        b.extend_from_slice(&body);
        let _ = decode(&b, 65535, &DecodeCtx { four_octet_as: true, ibgp: false });
        let _ = decode(&body, 65535, &DecodeCtx { four_octet_as: false, ibgp: true });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// The whole session core fed mutated frames in every state never panics and always
    /// ends in a consistent state.
    #[test]
    fn session_core_survives_mutated_frames(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), proptest::collection::vec(mutation(), 0..3)), 1..12),
    ) {
        let all = seeds();
        let mut c = PeerConfig::new("192.0.2.9".parse().unwrap(), 65000, 65001);
        c.hold_time = 9;
        let mut t = RouteTable::new();
        t.announce(["203.0.113.1/32".parse().unwrap()], RouteAttrs::default());
        let mut s = Session::new(Arc::new(c), Identity::new(Ipv4Addr::new(192, 0, 2, 1)), Arc::new(t), 3);
        s.handle(Input::Start);
        s.handle(Input::Connected { conn: 1, local: "192.0.2.1:5000".parse().unwrap() });
        for (i, muts) in picks {
            let b = apply(all[i.index(all.len())].clone(), &muts);
            if s.state() == bgp::State::Active {
                // Reconnect after an error, as the shell would.
                for o in s.handle(Input::Timer(bgp::fsm::Timer::ConnectRetry)) {
                    if let bgp::fsm::Output::Connect(id) = o {
                        s.handle(Input::Connected { conn: id, local: "192.0.2.1:5001".parse().unwrap() });
                    }
                }
            }
            for id in 1..6 {
                s.handle(Input::Frame { conn: id, frame: Bytes::from(b.clone()) });
                if let Some(c) = s.wants_tx() {
                    s.handle(Input::TxReady(c));
                }
            }
        }
    }
}
