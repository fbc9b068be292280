//! The session core (`fsm::Session`) fed a byte stream from a peer, cut into frames the way
//! the tokio shell's reader does (header, then the declared length; a length under 19 ends
//! the stream). The first octet picks iBGP/eBGP, extended messages, and whether a valid
//! OPEN + KEEPALIVE from the peer comes first (so the fuzzer reaches Established). Between
//! frames the writer asks for UPDATEs and timers fire. Oracle: no panic, and everything the
//! core sends is a non-empty message that vipr's own decoder accepts.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bgp::codec::open::{Capabilities, Open};
use bgp::codec::{self, DecodeCtx};
use bgp::fsm::{Input, Output, Session, Timer};
use bgp::{Family, Identity, PeerConfig, RouteAttrs, RouteTable};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const PEER_AS: u32 = 65000;

fn check(outs: &[Output], ext: bool) {
    let ctx = DecodeCtx {
        four_octet_as: true,
        ibgp: false,
    };
    let max = if ext {
        codec::MAX_EXTENDED_LEN
    } else {
        codec::MAX_LEN
    };
    for o in outs {
        if let Output::Send(_, b) = o {
            assert!(b.len() >= codec::HEADER_LEN, "empty message sent: {o:?}");
            if let Err(e) = codec::decode(b, max, &ctx) {
                panic!("sent a message vipr cannot decode ({e}): {b:02x?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut stream)) = data.split_first() else {
        return;
    };
    let ibgp = mode & 1 != 0;
    let ext = mode & 2 != 0;
    let local_as = if ibgp { PEER_AS } else { 65001 };
    let mut cfg = PeerConfig::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), PEER_AS, local_as);
    cfg.extended_messages = ext;
    let mut table = RouteTable::new();
    let prefixes = (0..40u8).map(|i| format!("198.51.100.{i}/32").parse().unwrap());
    table.announce(prefixes, RouteAttrs::default());
    table.announce(["2001:db8::10/128".parse().unwrap()], RouteAttrs::default());
    let mut s = Session::new(
        Arc::new(cfg),
        Identity::new(Ipv4Addr::new(192, 0, 2, 200)),
        Arc::new(table),
        7,
    );
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 40000);
    let feed = |s: &mut Session, i: Input| {
        let outs = s.handle(i);
        check(&outs, ext);
    };
    feed(&mut s, Input::Start);
    feed(&mut s, Input::Connected { conn: 1, local });
    if mode & 4 != 0 {
        let caps = Capabilities {
            families: Family::ALL.to_vec(),
            multiprotocol: true,
            route_refresh: true,
            four_octet_as: Some(PEER_AS),
            extended_message: ext,
            ..Default::default()
        };
        let open = Open::new(PEER_AS, 9, Ipv4Addr::new(10, 0, 0, 1), caps);
        feed(
            &mut s,
            Input::Frame {
                conn: 1,
                frame: codec::encode_open(&open),
            },
        );
        feed(
            &mut s,
            Input::Frame {
                conn: 1,
                frame: codec::encode_keepalive(),
            },
        );
    }
    let mut n = 0u32;
    while stream.len() >= codec::HEADER_LEN {
        let len = u16::from_be_bytes([stream[16], stream[17]]) as usize;
        if len < codec::HEADER_LEN {
            feed(
                &mut s,
                Input::Frame {
                    conn: 1,
                    frame: Bytes::copy_from_slice(&stream[..19]),
                },
            );
            break;
        }
        let take = len.min(stream.len());
        feed(
            &mut s,
            Input::Frame {
                conn: 1,
                frame: Bytes::copy_from_slice(&stream[..take]),
            },
        );
        stream = &stream[take..];
        for _ in 0..3 {
            feed(&mut s, Input::TxReady(1));
        }
        n += 1;
        if n % 4 == 0 {
            feed(&mut s, Input::Timer(Timer::Keepalive(1)));
        }
    }
    feed(&mut s, Input::Timer(Timer::Hold(1)));
    feed(
        &mut s,
        Input::Closed {
            conn: 1,
            error: "eof".into(),
        },
    );
});
