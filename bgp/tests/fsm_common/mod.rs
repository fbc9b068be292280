//! Shared pieces of the synchronous session-core tests (`fsm.rs`, `fsm_restart_bfd.rs`):
//! the peer configuration, route tables, the peer's OPEN, and decoding what the core sent.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::Ipv4Addr;
use std::sync::Arc;

use bgp::codec::open::{Capabilities, Open};
use bgp::codec::{self, decode, DecodeCtx, Message, Notification};
use bgp::fsm::{Input, Output};
use bgp::{Family, Identity, PeerConfig, RouteAttrs, RouteTable};
use bytes::Bytes;
use ipnet::IpNet;

pub const LOCAL: &str = "10.55.0.11:40000";

pub fn cfg() -> PeerConfig {
    let mut c = PeerConfig::new("10.55.0.1".parse().unwrap(), 65000, 65001);
    c.hold_time = 9;
    c
}

/// The speaker's identity in these tests: router id 10.55.0.11, not restarting.
pub fn ident() -> Identity {
    Identity::new(Ipv4Addr::new(10, 55, 0, 11))
}

pub fn table(prefixes: &[&str]) -> Arc<RouteTable> {
    let mut t = RouteTable::new();
    t.announce(
        prefixes.iter().map(|p| p.parse::<IpNet>().unwrap()),
        RouteAttrs::default(),
    );
    Arc::new(t)
}

pub fn peer_open(asn: u32, hold: u16, id: [u8; 4]) -> Bytes {
    let caps = Capabilities {
        families: Family::ALL.to_vec(),
        multiprotocol: true,
        route_refresh: true,
        four_octet_as: Some(asn),
        ..Default::default()
    };
    codec::encode_open(&Open::new(asn, hold, Ipv4Addr::from(id), caps))
}

/// Decodes what the core sent.
pub fn sent(outs: &[Output]) -> Vec<Message> {
    let ctx = DecodeCtx {
        four_octet_as: true,
        ibgp: false,
    };
    outs.iter()
        .filter_map(|o| match o {
            Output::Send(_, b) => Some(decode(b, 65535, &ctx).expect("core sends valid messages")),
            _ => None,
        })
        .collect()
}

pub fn notification(outs: &[Output]) -> Option<Notification> {
    sent(outs).into_iter().find_map(|m| match m {
        Message::Notification(n) => Some(n),
        _ => None,
    })
}

pub fn frame(conn: u64, b: Bytes) -> Input {
    Input::Frame { conn, frame: b }
}

/// Bytes from hex text (whitespace ignored): the byte vectors of the codec tests.
pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
