//! NOTIFICATION bodies (RFC 4271 §4.5, RFC 9003 shutdown communication): parse, print (the
//! log line and metric labels) and re-encode. Oracle: no panic; what vipr decodes it can
//! write back and read again unchanged.
#![no_main]

use bgp::codec::{self, DecodeCtx, Message, Notification};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Some(n) = Notification::parse_body(body) else {
        return;
    };
    let _ = n.to_string();
    let _ = (n.code_name(), n.subcode_name(), n.shutdown_message());
    let wire = codec::encode_notification(&n);
    if wire.len() <= codec::MAX_LEN {
        let ctx = DecodeCtx {
            four_octet_as: true,
            ibgp: false,
        };
        assert_eq!(
            codec::decode(&wire, codec::MAX_LEN, &ctx),
            Ok(Message::Notification(n))
        );
    }
});
