//! The kernel's IPVS generic netlink answers: one received datagram through
//! `reply::parse_replies` (the code `Genl::exchange` runs), then every IPVS payload through
//! `msg::service_info` / `msg::dest_info` as the data plane reads them. The first four
//! octets are the sequence number the reply should answer. Oracle: no panic, no endless
//! loop (libFuzzer's timeout), and a decoded message re-encodes.
#![no_main]
#![allow(dead_code)]

#[path = "../../../src/lb/kinds.rs"]
mod kinds;
#[path = "../../../src/lb/ipvs/msg.rs"]
mod msg;
#[path = "../../../src/lb/ipvs/reply.rs"]
mod reply;

/// What `msg.rs` finds at `crate::lb` in the daemon.
mod lb {
    pub use crate::kinds::{FwdMethod, Scheduler};
}

use msg::{dest_info, family_of, fwd_method, is_tcp, service_info, IpvsMessage};
use reply::parse_replies;
use libfuzzer_sys::fuzz_target;
use netlink_packet_core::Emitable;
use netlink_packet_generic::GenlMessage;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let seq = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
    let mut out: Vec<GenlMessage<IpvsMessage>> = Vec::new();
    let _ = parse_replies(&data[4..], seq, &mut out);
    for g in &out {
        let m = &g.payload;
        if let Some(s) = service_info(m) {
            let _ = is_tcp(&s);
            if let Some(key) = s.key {
                let af = family_of(&key);
                if let Some((_, fwd)) = dest_info(m, af) {
                    let _ = fwd_method(fwd);
                }
            }
        }
        let _ = dest_info(m, libc::AF_INET as u16);
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
    }
});
