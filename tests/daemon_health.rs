//! End-to-end test of the control-plane health gate (kube-vip's
//! `control_plane_health_check_*`): vipr in a node namespace checks a small HTTP server that
//! the test runs in the same namespace (200 or 500 at the test's command), period 1 s,
//! timeout 1 s, failure threshold 2, with a real BIRD peer in the router namespace.
//!
//! Asserts that:
//! - while the check has never succeeded, the session is Established but no route is
//!   advertised, no VIP is on `lo`, and `vipr status --json` shows each VIP held back
//!   waiting for the first successful check;
//! - the first 200 brings the routes to the peer and the VIPs to `lo`;
//! - after a switch to 500, one failure is not enough (threshold 2); after two the routes are
//!   withdrawn at the peer and the VIPs removed from `lo`, the status says the check is
//!   failing and `/metrics` reports the control plane unhealthy, while the BGP session stays
//!   up (no flap);
//! - back to 200, the routes and the VIPs return; SIGTERM still exits 0 with `lo` clean.

mod daemon_common;

use std::time::{Duration, Instant};

use daemon_common::*;
use serde_json::Value;
use testbed::{Bird, Lab};

fn present(bird: &Bird) -> bool {
    bird_route(bird, &format!("{VIP4}/32"), "n0").is_some()
        && bird_route(bird, &format!("{VIP6}/128"), "n0").is_some()
}

fn absent(bird: &Bird) -> bool {
    bird_route(bird, &format!("{VIP4}/32"), "n0").is_none()
        && bird_route(bird, &format!("{VIP6}/128"), "n0").is_none()
}

fn vips_on_lo(lab: &Lab) -> usize {
    lo_count(&lab.nodes[0], &format!("{VIP4}/32")) + lo_count(&lab.nodes[0], &format!("{VIP6}/128"))
}

/// Every VIP's `held_back` in the status, `None` for those advertised.
fn held_back(s: &Value) -> Vec<Option<String>> {
    [VIP4, VIP6]
        .iter()
        .map(|v| Vipr::vip(s, v)["held_back"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn control_plane_route_follows_the_health_check() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let health = HealthServer::start(node, false);
    let dir = workdir();
    let mut env = base_env(&dir.join("state"));
    env.insert(
        "control_plane_health_check_address".into(),
        health.url.clone(),
    );
    env.insert(
        "control_plane_health_check_period_seconds".into(),
        "1".into(),
    );
    env.insert(
        "control_plane_health_check_timeout_seconds".into(),
        "1".into(),
    );
    env.insert(
        "control_plane_health_check_failure_threshold".into(),
        "2".into(),
    );
    let log = dir.join("vipr.log");
    let mut vipr = Vipr::start(node, &env, &[], &log);
    let ctx = || {
        format!(
            "health hits {}\n{}\n{}",
            health.hits(),
            bird.birdc("show route all"),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    let peer = Lab::router_v4().to_string();

    // 1. Never healthy yet: session up, nothing advertised, nothing on lo.
    eventually("session Established at BIRD", ctx, || {
        (bird.protocol_state("n0") == "Established").then_some(())
    });
    eventually("two failed health checks", ctx, || {
        (health.hits() >= 2).then_some(())
    });
    let s = vipr.wait_status("the VIPs held back before the first success", |s| {
        Vipr::peer(s, &peer)["state"] == "Established" && held_back(s).iter().all(|h| h.is_some())
    });
    for h in held_back(&s) {
        let h = h.unwrap();
        assert!(
            h.contains("waiting for the first successful health check"),
            "{s:#}"
        );
    }
    for v in [VIP4, VIP6] {
        assert_eq!(
            Vipr::vip(&s, v)["advertised_to"],
            serde_json::json!([]),
            "{s:#}"
        );
        assert_eq!(Vipr::vip(&s, v)["interface"], Value::Null, "{s:#}");
    }
    assert_eq!(Vipr::peer(&s, &peer)["prefixes_sent"], 0, "{s:#}");
    assert!(
        absent(&bird),
        "advertised before any successful check:\n{}",
        ctx()
    );
    assert_eq!(vips_on_lo(&lab), 0, "{:?}", lo_addrs(node));

    // 2. First 200: advertised.
    let t = Instant::now();
    health.set_healthy(true);
    eventually("routes at BIRD after the first 200", ctx, || {
        present(&bird).then_some(())
    });
    eprintln!(
        "MEASURED health 500->200: routes at BIRD after {:?}",
        t.elapsed()
    );
    assert_eq!(vips_on_lo(&lab), 2, "{:?}", lo_addrs(node));
    vipr.wait_status("nothing held back", |s| {
        held_back(s).iter().all(|h| h.is_none())
    });

    // 3. Failing: one failure is not enough, two withdraw.
    let h0 = health.hits();
    let t = Instant::now();
    health.set_healthy(false);
    eventually("the first failing check", ctx, || {
        (health.hits() > h0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let still = present(&bird) && vips_on_lo(&lab) == 2;
    if health.hits() == h0 + 1 {
        // Only one failure has been answered so far: the gate must still be open.
        assert!(
            still,
            "withdrawn after a single failure (threshold 2):\n{}",
            ctx()
        );
    }
    eventually("routes withdrawn at BIRD after 2 failures", ctx, || {
        absent(&bird).then_some(())
    });
    let took = t.elapsed();
    assert!(
        health.hits() >= h0 + 2,
        "withdrawn before 2 failures:\n{}",
        ctx()
    );
    eprintln!("MEASURED health 200->500: routes withdrawn at BIRD after {took:?}");
    eventually("VIPs removed from lo", ctx, || {
        (vips_on_lo(&lab) == 0).then_some(())
    });
    let s = vipr.wait_status("the VIPs held back by the failing check", |s| {
        held_back(s).iter().all(|h| h.is_some())
    });
    for h in held_back(&s) {
        assert!(h.unwrap().contains("health check failing"), "{s:#}");
    }
    let p = Vipr::peer(&s, &peer);
    assert_eq!(p["state"], "Established", "the session must stay up: {p:#}");
    assert_eq!(p["flaps"], 0, "{p:#}");
    assert_eq!(p["prefixes_sent"], 0, "{p:#}");
    assert_eq!(bird.protocol_state("n0"), "Established");
    let (_, metrics) = http_get(node, HTTP, "/metrics").expect("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vipr_control_plane_healthy") && l.ends_with(" 0")),
        "{metrics}"
    );

    // 4. Healthy again: back.
    let t = Instant::now();
    health.set_healthy(true);
    eventually("routes back at BIRD", ctx, || present(&bird).then_some(()));
    eprintln!(
        "MEASURED health 500->200 again: routes at BIRD after {:?}",
        t.elapsed()
    );
    eventually("VIPs back on lo", ctx, || {
        (vips_on_lo(&lab) == 2).then_some(())
    });
    let s = vipr.wait_status("both VIPs advertised", |s| {
        [VIP4, VIP6]
            .iter()
            .all(|v| Vipr::vip(s, v)["advertised_to"] == serde_json::json!([peer]))
    });
    assert_eq!(Vipr::peer(&s, &peer)["flaps"], 0, "{s:#}");

    vipr.signal(libc::SIGTERM);
    let st = vipr.wait_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{st}");
    assert_eq!(vips_on_lo(&lab), 0, "{:?}", lo_addrs(node));
}
