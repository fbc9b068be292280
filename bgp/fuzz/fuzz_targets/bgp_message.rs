//! BGP message framing and every message type through `codec::decode`: the header checks of
//! RFC 4271 §6.1 and the per-type decoders behind them. The first octet picks the decoding
//! context (4-octet AS, iBGP) and the negotiated maximum (4096 or 65535); the rest is one
//! message. Oracle: no panic, and every error is a NOTIFICATION vipr can encode.
#![no_main]

use bgp::codec::{self, decode, DecodeCtx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, frame)) = data.split_first() else {
        return;
    };
    let ctx = DecodeCtx {
        four_octet_as: mode & 1 != 0,
        ibgp: mode & 2 != 0,
    };
    let max = if mode & 4 != 0 {
        codec::MAX_EXTENDED_LEN
    } else {
        codec::MAX_LEN
    };
    let _ = codec::check_header(frame, max);
    if let Err(n) = decode(frame, max, &ctx) {
        let wire = codec::encode_notification(&n);
        assert!(
            wire.len() >= codec::HEADER_LEN,
            "empty NOTIFICATION for {n:?}"
        );
    }
});
