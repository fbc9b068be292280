//! GTSM (RFC 5082) from vipr's configuration against real FRR: the global `vipr_bgp_gtsm`
//! and a peer's own 8th `bgp_peers` field.
//!
//! ```text
//!   router ns: FRR 10.55.0.1 ──┐ br0   neighbor .11: ttl-security hops 1 (passive)
//!                              │       neighbor .12: no GTSM, ebgp-multihop 2 (connects)
//!   node0 ns:  vipr 10.55.0.11 ┤  vipr_bgp_gtsm=1
//!   node1 ns:  vipr 10.55.0.12 ┘  bgp_peers=10.55.0.1:65000::false:179:::1, listening on :179
//! ```
//!
//! - node 0: the session comes up with GTSM on both sides (FRR drops anything below TTL 255,
//!   so vipr must send 255) and the VIP arrives.
//! - node 1: FRR connects with TTL 2; vipr refuses each connection as soon as it is
//!   accepted (the SYN's TTL is below 255), says so in its status and in its log (not a
//!   line per attempt), and neither side reaches Established.
//!
//! Needs root; see `daemon_common`.

mod daemon_common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use daemon_common::*;
use testbed::{Frr, Lab};

/// How long the refused session is watched.
const NEVER_UP_FOR: Duration = Duration::from_secs(5);

fn frr_conf() -> String {
    let (n0, n1) = (Lab::node_v4(0), Lab::node_v4(1));
    frr_router_conf("10.55.0.1", &[n0.to_string(), n1.to_string()])
        .replace(
            &format!(" neighbor {n0} passive\n"),
            &format!(" neighbor {n0} passive\n neighbor {n0} ttl-security hops 1\n"),
        )
        .replace(
            &format!(" neighbor {n1} passive\n"),
            &format!(" neighbor {n1} ebgp-multihop 2\n"),
        )
}

#[test]
fn gtsm_from_the_configuration_with_frr_ttl_security_and_a_low_ttl_refused() {
    let lab = Lab::new(2);
    let frr = Frr::start(&lab.router, &frr_conf());
    let dir = workdir();
    let mut env0 = base_env(&dir.join("state0"));
    env0.insert("vipr_bgp_gtsm".into(), "1".into());
    let vipr0 = Vipr::start(&lab.nodes[0], &env0, &[], &dir.join("vipr0.log"));
    let mut env1 = base_env(&dir.join("state1"));
    env1.insert(
        "bgp_peers".into(),
        format!("{}:{ROUTER_AS}::false:179:::1", Lab::router_v4()),
    );
    env1.insert("vipr_bgp_listen".into(), format!("{}:179", Lab::node_v4(1)));
    let vipr1 = Vipr::start(&lab.nodes[1], &env1, &[], &dir.join("vipr1.log"));
    let (n0, n1) = (Lab::node_v4(0).to_string(), Lab::node_v4(1).to_string());
    let router = Lab::router_v4().to_string();

    // Node 0: GTSM on both sides, the session and the route.
    let ctx = || format!("{}\n{}", frr.logs(), vipr0.log());
    let p = eventually("node 0's VIP at FRR", ctx, || {
        frr_paths(&frr, &format!("{VIP4}/32"))
            .into_iter()
            .find(|p| p["peer"]["peerId"] == n0.as_str())
    });
    assert_eq!(p["valid"], true, "{p:#}");
    let nb = &frr.vtysh_json(&format!("show bgp neighbor {n0} json"))[&n0];
    assert_eq!(nb["bgpState"], "Established", "{nb:#}");
    // FRR's side of GTSM: ttl-security hops 1 (it drops our segments below TTL 255).
    assert_eq!(nb["externalBgpNbrMaxHopsAway"], 1, "{nb:#}");
    vipr0.wait_status("node 0's session Established", |s| {
        Vipr::peer(s, &router)["state"] == "Established"
    });

    // Node 1: FRR's connections arrive with TTL 2 and are refused; the status says why.
    let st = vipr1.wait_status("the GTSM refusal in node 1's status", |s| {
        Vipr::peer(s, &router)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("GTSM needs at least 255"))
    });
    eprintln!(
        "node 1: {}",
        Vipr::peer(&st, &router)["last_error"]
            .as_str()
            .unwrap_or("")
    );
    let t0 = Instant::now();
    let mut frr_states = BTreeSet::new();
    while t0.elapsed() < NEVER_UP_FOR {
        let s = vipr1.status().expect("node 1's status");
        let p = Vipr::peer(&s, &router);
        assert_ne!(p["state"], "Established", "{p:#}");
        let st = frr.neighbor_state(&n1);
        assert_ne!(st, "Established");
        frr_states.insert(st);
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = vipr1.run_log();
    let refusals = log.matches("GTSM: refusing a connection").count();
    eprintln!(
        "node 1 never Established for {NEVER_UP_FOR:?}; FRR states seen {frr_states:?}; \
         {refusals} log line(s) about GTSM refusals"
    );
    assert!(log.contains("ttl=2 min=255"), "{log}");
    assert!(refusals >= 1, "{log}");
    assert!(frr_paths(&frr, &format!("{VIP4}/32"))
        .iter()
        .all(|p| p["peer"]["peerId"] != n1.as_str()));
}
