//! UPDATE bodies through `update_in::parse_update` (RFC 4271 §4.3 with the RFC 7606 error
//! handling). The first octet picks the context. Oracle: no panic; treat-as-withdraw never
//! leaves announced prefixes; every prefix is a valid network of its family.
#![no_main]

use bgp::codec::update_in::parse_update;
use bgp::codec::{self, DecodeCtx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let ctx = DecodeCtx {
        four_octet_as: mode & 1 != 0,
        ibgp: mode & 2 != 0,
    };
    match parse_update(body, &ctx) {
        Ok(u) => {
            if u.treat_as_withdraw.is_some() {
                assert!(u.announced.is_empty());
            }
            for p in u.announced.iter().chain(&u.withdrawn) {
                assert_eq!(*p, p.trunc(), "host bits set in {p}");
            }
        }
        Err(n) => {
            assert_eq!(n.code, 3, "UPDATE errors are code 3: {n:?}");
            assert!(codec::encode_notification(&n).len() >= codec::HEADER_LEN);
        }
    }
});
