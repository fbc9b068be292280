//! A Node's annotations (`providers::annotations::parse`): the input is `key=value` lines,
//! each key under the prefix `metal.equinix.com/` unless it starts with `/`. Oracle: no
//! panic; an error never contains a `bgp-pass` value. Only values that carry a character
//! no error template uses (`MARKS`) are checked: a value made of template text (e.g.
//! `.com/bgp-pass: not valid base6`, found by the first CI run) is in every message about
//! that key whether or not the value leaks.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use providers::annotations::parse;

const PREFIX: &str = "metal.equinix.com";
/// Characters that appear in no error template and that `{:?}` does not escape.
const MARKS: &[char] = &['!', '#', '$', '%', '&', '*', '+', '<', '>', '?', '@', '^', '|', '~'];

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
            if k.ends_with("bgp-pass") && pw.len() >= 8 && pw.contains(MARKS) && unique {
                assert!(!msg.contains(pw), "password in error: {msg}");
            }
        }
    }
});
