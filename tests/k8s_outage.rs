//! End-to-end test of an API server outage: vipr (BGP mode, `svc_enable=true`) serves a
//! Service to a real BIRD peer; then kube-apiserver and etcd are killed (SIGKILL) for 30 s.
//!
//! Asserts: at every 100 ms sample during the outage BIRD still has the Service's route
//! from an Established session and vipr keeps running (it never takes routes away because
//! the API server is unreachable); after the API server is back (same etcd data), a new
//! Service is advertised and deleting the old one withdraws its route (the times from the
//! API server being ready again are printed).

mod daemon_common;
mod k8s_common;

use std::time::{Duration, Instant};

use daemon_common::*;
use k8s_common::*;
use serde_json::json;
use testbed::{Bird, Lab};

const OUTAGE: Duration = Duration::from_secs(30);
const SAMPLE: Duration = Duration::from_millis(100);

#[test]
fn routes_survive_an_api_server_outage_and_changes_apply_after_it() {
    let lab = Lab::new(1);
    let api = ApiServer::start(&lab.router);
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let d = workdir();
    let mut v = Vipr::start(
        &lab.nodes[0],
        &bgp_svc_env(&d.join("state"), &api.kubeconfig(), "node0"),
        &[],
        &d.join("vipr.log"),
    );
    let ctx = || format!("{}\n{}", bird.birdc("show route all"), bird.log());
    let (kept, added) = (svc_vip(40), svc_vip(41));
    let at_bird = |ip: &str| bird_route(&bird, &format!("{ip}/32"), "n0").is_some();

    within(CONVERGE, "Service caches synced", ctx, || {
        v.log()
            .contains("Service and endpoint caches synced")
            .then_some(())
    });
    api.create_service(&annotated_service("kept", &kept, json!({})));
    within(CONVERGE, "route of kept", ctx, || {
        at_bird(&kept).then_some(())
    });
    api.wait_ingress("kept", &[&kept]);

    api.kill();
    let t0 = Instant::now();
    let mut samples = 0;
    let mut next = t0;
    while t0.elapsed() < OUTAGE {
        assert!(
            at_bird(&kept) && bird.protocol_state("n0") == "Established",
            "route or session lost {:?} into the outage\n{}",
            t0.elapsed(),
            ctx()
        );
        v.assert_running();
        samples += 1;
        next += SAMPLE;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    eprintln!(
        "outage: {samples} samples over {:?}, route present in all",
        t0.elapsed()
    );
    assert!(
        samples >= 200,
        "too few samples ({samples}) to mean anything"
    );
    let log = v.log();
    assert!(
        log.contains("watch failed"),
        "vipr did not notice the outage:\n{log}"
    );

    api.restart();
    let back = Instant::now();
    api.create_service(&annotated_service("added", &added, json!({})));
    let took = within(
        Duration::from_secs(40),
        "the new Service advertised",
        ctx,
        || at_bird(&added).then(|| back.elapsed()),
    );
    eprintln!("MEASURED k8s: API server back -> new Service's route at BIRD after {took:?}");
    api.wait_ingress("added", &[&added]);
    api.delete_service("kept");
    let took = within(CONVERGE, "deleted Service withdrawn", ctx, || {
        (!at_bird(&kept)).then(|| back.elapsed())
    });
    eprintln!("MEASURED k8s: API server back -> deleted Service's route withdrawn after {took:?}");
    assert!(at_bird(&added), "{}", ctx());
    v.assert_running();
}
