//! BFD Control packets (RFC 5880 §4.1) through `Packet::decode` and, when accepted, into a
//! BFD session core, several per input (the input is cut into datagrams by a length
//! octet). Oracle: no panic; a decoded packet re-encodes to the same 24 octets; the core's
//! timers are never zero and never beyond Detect Mult × 2^32 µs.
#![no_main]

use std::time::Duration;

use bgp::bfd::{BfdSession, BfdTimer, Input, Output, Packet};
use bgp::BfdConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut s = BfdSession::new(0x1234_5678, BfdConfig::default(), 1);
    let mut outs = s.handle(Input::Start);
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize).min(tail.len());
        let (dgram, next) = tail.split_at(n);
        rest = next;
        if let Ok(p) = Packet::decode(dgram) {
            let enc = p.encode();
            assert_eq!(
                Packet::decode(&enc).ok(),
                Some(p.clone()).filter(|_| !p.auth)
            );
            outs.extend(s.handle(Input::Packet(p)));
        }
        if n % 3 == 0 {
            outs.extend(s.handle(Input::Timer(BfdTimer::Detect)));
        }
        outs.extend(s.handle(Input::Timer(BfdTimer::Tx)));
    }
    for o in outs {
        if let Output::SetTimer(_, d) = o {
            // RFC 5880 §6.8.4: at most Detect Mult (255) times the largest interval (2^32 µs).
            assert!(
                d > Duration::ZERO && d <= Duration::from_micros(255 * u32::MAX as u64),
                "timer {d:?}"
            );
        }
    }
});
