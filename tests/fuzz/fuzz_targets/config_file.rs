//! The YAML configuration file (`vipr manager --config FILE`, re-read on SIGHUP) through
//! `Layers::add_yaml` and the typed parse `Config::from_layers`. Oracle: no panic, and
//! every error prints.
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

use config::{Config, Layers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut l = Layers::default();
    match l.add_yaml("/etc/vipr.yaml", text) {
        Ok(()) => match Config::from_layers(&l, "node") {
            Ok(c) => {
                let _ = format!("{c:?}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        },
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
