//! End-to-end tests of `vipr manager` against real routers: FRR (zebra + bgpd) and BIRD 2 in
//! the lab's router namespace, vipr in a node namespace with kube-vip's environment and both
//! VIPs (`address=192.0.2.10,2001:db8:ff::10`, one IPv4 session carrying both families).
//!
//! Each test asserts that:
//! - the /32 and /128 host routes arrive at the router with next hop = the node's address
//!   (10.55.0.11 / 2001:db8:55::11) and AS path [65001]; with FRR, zebra installs them and
//!   the router pings the VIPs over them;
//! - `ip -n NODE addr show dev lo` holds both VIPs;
//! - after SIGTERM both routes are gone at the peer within 1 s (the time is measured and
//!   printed), the peer got a Cease with vipr's shutdown message, the VIPs are gone from
//!   `lo` and vipr exits with status 0; its log (a file, no terminal) has no colour codes.
//!
//! The BIRD test also checks what vipr reports about itself: `vipr status --json` (peer
//! Established with its AS numbers, hold time, families, local address and prefixes_sent;
//! each VIP on interface lo, advertised_to the peer, not held back), the human
//! `vipr status` table, and the HTTP endpoints `/healthz`, `/readyz`, `/metrics`.

mod daemon_common;

use std::time::{Duration, Instant};

use daemon_common::*;
use serde_json::Value;
use testbed::{Bird, Frr, Lab};

/// The node's addresses as text.
fn node4() -> String {
    Lab::node_v4(0).to_string()
}
fn node6() -> String {
    Lab::node_v6(0).to_string()
}

fn assert_vips_on_lo(lab: &Lab) {
    let lo = lo_addrs(&lab.nodes[0]);
    assert_eq!(
        lo_count(&lab.nodes[0], &format!("{VIP4}/32")),
        1,
        "lo: {lo:?}"
    );
    assert_eq!(
        lo_count(&lab.nodes[0], &format!("{VIP6}/128")),
        1,
        "lo: {lo:?}"
    );
}

fn assert_no_vips_on_lo(lab: &Lab) {
    let lo = lo_addrs(&lab.nodes[0]);
    assert!(
        !lo.iter()
            .any(|a| a.starts_with(VIP4) || a.starts_with(VIP6)),
        "VIPs left on lo: {lo:?}"
    );
    assert!(
        lo.contains(&"127.0.0.1/8".to_string()),
        "lo lost 127.0.0.1: {lo:?}"
    );
}

/// SIGTERM, then the time until `gone()` holds; asserts < 1 s, exit status 0, clean lo.
fn sigterm_and_measure(vipr: &mut Vipr, lab: &Lab, peer: &str, gone: impl FnMut() -> bool) {
    let t0 = Instant::now();
    vipr.signal(libc::SIGTERM);
    let took = time_until(t0, gone);
    let st = vipr.wait_exit(Duration::from_secs(5));
    let took = took.unwrap_or_else(|| panic!("{peer}: routes still there 10 s after SIGTERM"));
    eprintln!("MEASURED {peer}: SIGTERM -> both VIP routes gone at the peer in {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "{peer}: routes took {took:?} to go"
    );
    assert_eq!(st.code(), Some(0), "vipr exit status after SIGTERM: {st}");
    assert_no_vips_on_lo(lab);
    let log = vipr.run_log();
    assert!(
        log.contains("all routes withdrawn and VIP addresses removed"),
        "{log}"
    );
    assert!(
        !log.contains('\x1b'),
        "colour codes in a log that is no terminal:\n{log:?}"
    );
}

/// The next-hop IPs of a path in FRR's JSON.
fn path_nexthops(p: &Value) -> Vec<String> {
    p["nexthops"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["ip"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn frr_receives_both_vips_and_loses_them_within_1s_of_sigterm() {
    let lab = Lab::new(1);
    let frr = Frr::start(&lab.router, &frr_router_conf("10.55.0.1", &[node4()]));
    let dir = workdir();
    let mut vipr = Vipr::start(
        &lab.nodes[0],
        &base_env(&dir.join("state")),
        &[],
        &dir.join("vipr.log"),
    );
    let ctx = || format!("{}\n{}", frr.logs(), vipr.log());

    for (vip, nh) in [
        (format!("{VIP4}/32"), node4()),
        (format!("{VIP6}/128"), node6()),
    ] {
        let p = eventually(&format!("{vip} at FRR"), ctx, || {
            frr_paths(&frr, &vip).into_iter().next()
        });
        assert!(
            path_nexthops(&p).contains(&nh),
            "{vip}: next hop {nh} expected in {p:#}"
        );
        assert_eq!(p["aspath"]["string"], NODE_AS.to_string(), "{vip}: {p:#}");
        assert_eq!(p["valid"], true, "{vip}: {p:#}");
        // zebra selects it and installs it into the router's kernel.
        let rib = eventually(&format!("{vip} in zebra's RIB"), ctx, || {
            let nhs = frr_rib_nexthops(&frr, &vip);
            (!nhs.is_empty()).then_some(nhs)
        });
        assert_eq!(rib, vec![nh.clone()], "{vip}");
    }
    assert_eq!(frr.neighbor_state(&node4()), "Established");
    assert_vips_on_lo(&lab);
    // Real traffic: the router reaches the VIPs over the BGP routes (the node answers on lo).
    for vip in [VIP4, VIP6] {
        let out = lab.router.run(&["ping", "-c", "1", "-W", "2", vip]);
        assert!(
            out.status.success(),
            "router cannot ping {vip}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    sigterm_and_measure(&mut vipr, &lab, "FRR", || {
        frr_paths(&frr, &format!("{VIP4}/32")).is_empty()
            && frr_paths(&frr, &format!("{VIP6}/128")).is_empty()
    });
    // FRR saw a Cease / Administrative Shutdown with vipr's RFC 9003 message, not a hold
    // timer expiry.
    let n = &frr.vtysh_json(&format!("show bgp neighbor {} json", node4()))[node4()];
    assert_eq!(
        n["lastNotificationReason"], "Cease/Administrative Shutdown",
        "{n:#}"
    );
    let msg = n["lastShutdownDescription"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("vipr on ") && msg.ends_with("shutting down"),
        "{n:#}"
    );
    assert!(frr_rib_nexthops(&frr, &format!("{VIP4}/32")).is_empty());
}

#[test]
fn bird_receives_both_vips_and_status_reflects_the_session() {
    let lab = Lab::new(1);
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let dir = workdir();
    let mut vipr = Vipr::start(
        &lab.nodes[0],
        &base_env(&dir.join("state")),
        &[],
        &dir.join("vipr.log"),
    );
    let ctx = || format!("{}\n{}", bird.birdc("show protocols all"), vipr.log());

    for (vip, nh) in [
        (format!("{VIP4}/32"), node4()),
        (format!("{VIP6}/128"), node6()),
    ] {
        let r = eventually(&format!("{vip} at BIRD"), ctx, || {
            bird_route(&bird, &vip, "n0")
        });
        assert_eq!(r.next_hop.as_deref(), Some(nh.as_str()), "{vip}: {r:#?}");
        assert_eq!(r.as_path, vec![NODE_AS], "{vip}: {r:#?}");
        assert_eq!(r.origin.as_deref(), Some("IGP"), "{vip}: {r:#?}");
        assert!(r.primary, "{vip}: {r:#?}");
    }
    assert_eq!(bird.protocol_state("n0"), "Established");
    assert_vips_on_lo(&lab);

    // What vipr says about it.
    let peer = Lab::router_v4().to_string();
    let s = vipr.wait_status("the session Established with 2 prefixes sent", |s| {
        let p = Vipr::peer(s, &peer);
        p["state"] == "Established"
            && p["prefixes_sent"] == 2
            && [VIP4, VIP6]
                .iter()
                .all(|v| Vipr::vip(s, v)["advertised_to"] == serde_json::json!([peer]))
    });
    assert_eq!(s["mode"], "bgp");
    assert_eq!(s["ready"], true);
    let p = Vipr::peer(&s, &peer);
    assert_eq!(p["remote_as"], ROUTER_AS, "{p:#}");
    assert_eq!(p["local_as"], NODE_AS, "{p:#}");
    assert_eq!(p["port"], 179, "{p:#}");
    assert_eq!(p["hold_time"], 3, "{p:#}");
    assert_eq!(p["flaps"], 0, "{p:#}");
    assert_eq!(p["last_error"], Value::Null, "{p:#}");
    assert_eq!(p["local_address"], node4(), "{p:#}");
    assert_eq!(
        p["families"],
        serde_json::json!(["ipv4-unicast", "ipv6-unicast"]),
        "{p:#}"
    );
    for v in [VIP4, VIP6] {
        let vv = Vipr::vip(&s, v);
        assert_eq!(vv["interface"], "lo", "{vv:#}");
        assert_eq!(
            vv["sources"],
            serde_json::json!(["control-plane"]),
            "{vv:#}"
        );
        assert_eq!(vv["held_back"], Value::Null, "{vv:#}");
    }
    // The human table.
    let out = ns_run(&lab.nodes[0].name, &[vipr_bin(), "status", "--addr", HTTP]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "vipr status: {out:?}");
    for want in ["Established", "10.55.0.1", VIP4, VIP6, "control-plane"] {
        assert!(table.contains(want), "vipr status lacks {want}:\n{table}");
    }
    // The HTTP endpoints.
    let node = &lab.nodes[0];
    assert_eq!(http_get(node, HTTP, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(http_get(node, HTTP, "/readyz").map(|r| r.0), Some(200));
    let (code, metrics) = http_get(node, HTTP, "/metrics").expect("/metrics");
    assert_eq!(code, 200);
    for want in [
        "vipr_bgp_session_state",
        "vipr_bgp_routes_advertised",
        "vipr_vip_advertised",
        "10.55.0.1",
        VIP4,
    ] {
        assert!(metrics.contains(want), "/metrics lacks {want}:\n{metrics}");
    }

    sigterm_and_measure(&mut vipr, &lab, "BIRD", || {
        bird_route(&bird, &format!("{VIP4}/32"), "n0").is_none()
            && bird_route(&bird, &format!("{VIP6}/128"), "n0").is_none()
    });
    // BIRD got a Cease with vipr's RFC 9003 shutdown message.
    let proto = bird.birdc("show protocols all n0");
    assert!(
        proto.contains("Administrative shutdown") && proto.contains("shutting down"),
        "BIRD did not get the shutdown message:\n{proto}"
    );
}
