//! OPEN bodies (RFC 4271 §4.2, capabilities RFC 5492) through `Open::parse_body`, then the
//! negotiation with vipr's own OPEN. Oracle: no panic; a decoded OPEN re-encodes and decodes
//! again to the same AS, hold time and identifier.
#![no_main]

use std::net::Ipv4Addr;

use bgp::codec::open::{Capabilities, GrCapability, Negotiated, Open};
use bgp::codec::{self, DecodeCtx, Message};
use bgp::Family;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(theirs) = Open::parse_body(body) else {
        return;
    };
    let caps = Capabilities {
        families: Family::ALL.to_vec(),
        multiprotocol: true,
        route_refresh: true,
        four_octet_as: Some(4_200_000_000),
        extended_message: true,
        extended_next_hop: vec![(Family::Ipv4Unicast, 2)],
        graceful_restart: Some(GrCapability {
            restarting: false,
            restart_time: 120,
            families: vec![(Family::Ipv4Unicast, true)],
        }),
        ..Default::default()
    };
    let ours = Open::new(4_200_000_000, 30, Ipv4Addr::new(192, 0, 2, 1), caps);
    let neg = Negotiated::new(&ours, &theirs, Some(10));
    assert!(neg.hold_time <= 30);
    assert!(neg.keepalive == 0 || neg.keepalive < neg.hold_time.max(1) || neg.hold_time < 3);
    // What we parsed, written by us, parses back to the same essentials.
    let again = codec::encode_open(&theirs);
    let ctx = DecodeCtx {
        four_octet_as: true,
        ibgp: false,
    };
    if let Ok(Message::Open(o)) = codec::decode(&again, codec::MAX_LEN, &ctx) {
        assert_eq!(
            (o.hold_time, o.router_id),
            (theirs.hold_time, theirs.router_id)
        );
    }
});
