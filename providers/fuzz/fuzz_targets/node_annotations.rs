//! A Node's annotations (`providers::annotations::parse`): the input is `key=value` lines,
//! each key under the prefix `metal.equinix.com/` unless it starts with `/`. Oracle: no
//! panic; an error never contains a `bgp-pass` value.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use providers::annotations::parse;

const PREFIX: &str = "metal.equinix.com";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        let key = match k.strip_prefix('/') {
            Some(k) => k.to_string(),
            None => format!("{PREFIX}/{k}"),
        };
        map.insert(key, v.to_string());
    }
    if let Err(e) = parse(&map, PREFIX) {
        let msg = e.to_string();
        for (k, v) in &map {
            let pw = v.trim();
            // Only a value that appears nowhere else can be told apart in the message.
            let unique = map
                .iter()
                .all(|(k2, v2)| !k2.contains(pw) && (k2 == k || !v2.contains(pw)));
            if k.ends_with("bgp-pass") && pw.len() >= 8 && unique {
                assert!(!msg.contains(pw), "password in error: {msg}");
            }
        }
    }
});
