//! kube-vip's `bgp_peers` string (`address:AS:password:multihop[:port[::bfd]]`, comma list,
//! IPv6 in brackets) through the daemon's own typed configuration parse, exactly as
//! `vipr manager` reads it from the environment. Oracle: no panic; a secret never appears
//! in an error; accepted peers are distinct and have an AS.
#![no_main]
#![allow(dead_code, unused_imports)]

#[path = "../../../src/config/mod.rs"]
mod config;
#[path = "../../../src/lb/kinds.rs"]
mod lb;
#[path = "../../../src/model.rs"]
mod model;
#[path = "../../../src/ipam/mod.rs"]
mod ipam;
#[path = "../../../src/instance.rs"]
mod instance;
#[path = "../../../src/route_attrs.rs"]
mod route_attrs;

use config::{keys, Config, Layers, Origin};
use libfuzzer_sys::fuzz_target;

/// The third field of each IPv4 entry when it is a long alphanumeric word that appears
/// nowhere else in the string (so that finding it in a message means it was quoted).
fn passwords(s: &str) -> Vec<&str> {
    s.split(',')
        .filter_map(|e| e.trim().split(':').nth(2))
        .filter(|p| p.len() >= 8 && p.bytes().all(|b| b.is_ascii_alphanumeric()))
        .filter(|p| s.matches(*p).count() == 1)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(peers) = std::str::from_utf8(data) else {
        return;
    };
    match parse(peers) {
        Ok(c) => {
            for (i, p) in c.bgp.peers.iter().enumerate() {
                assert!(p.remote_as != 0, "{p:?}");
                assert!(c.bgp.peers[..i].iter().all(|q| q.address != p.address));
            }
        }
        Err(msg) => {
            for pw in passwords(peers) {
                if !msg.contains(pw) {
                    continue;
                }
                // The same input with another password of the same shape: if its error
                // still has the word, the word is the message's own ("addresse" in
                // "addresses"), not the password.
                let other = peers.replace(pw, &"Q".repeat(pw.len()));
                let own = parse(&other).err().is_some_and(|m| m.contains(pw));
                assert!(own, "a password in an error: {msg}");
            }
        }
    }
});

/// `vipr manager`'s configuration with these peers, or its error text.
fn parse(peers: &str) -> Result<Config, String> {
    let mut l = Layers::default();
    for (k, v) in [
        ("bgp_enable", "true"),
        ("cp_enable", "true"),
        ("address", "192.0.2.10"),
        ("bgp_as", "65001"),
        ("bgp_peers", peers),
    ] {
        let key = keys::find(k).expect("known key");
        l.set(key, v.to_string(), Origin::Env(k.to_string()));
    }
    Config::from_layers(&l, "node").map_err(|e| e.to_string())
}
