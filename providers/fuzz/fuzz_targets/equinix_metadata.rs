//! The Equinix Metal metadata document (`providers::equinix_metal::parse`, the whole HTTP
//! body). Oracle: no panic; an accepted document yields peers with a non-zero AS, no
//! address twice, and errors that print.
#![no_main]

use libfuzzer_sys::fuzz_target;
use providers::equinix_metal::parse;

fuzz_target!(|body: &[u8]| {
    match parse(body) {
        Ok(d) => {
            for (i, p) in d.peers.iter().enumerate() {
                assert!(p.remote_as != 0);
                assert!(d.peers[..i].iter().all(|q| q.address != p.address));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
