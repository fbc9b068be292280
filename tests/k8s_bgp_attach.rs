//! `bgp_attach_ip_to_interface=false` (kube-vip v1.2.3 `pkg/cluster/service.go`
//! `shouldAddServiceIP`): in BGP mode a Service's VIP is advertised without being put on the
//! node, the control-plane VIP still is. Real kube-apiserver and BIRD in the lab's router
//! namespace, vipr in node0 with `--config` holding the setting, switched by SIGHUP.
//!
//! ```text
//!  node0 ns: vipr (cp 192.0.2.10, Services) ──BGP── router ns: BIRD, kube-apiserver
//! ```
//!
//! Asserts that with false the Service's route reaches BIRD and its address is never on
//! `lo` while the control-plane VIP is; switched to true the address comes to `lo`; back
//! to false it leaves `lo` while the route stays at BIRD; SIGTERM withdraws everything
//! and leaves `lo` clean.

mod daemon_common;
mod k8s_common;

use daemon_common::*;
use k8s_common::*;
use testbed::{Bird, Lab};

#[test]
fn service_vips_are_advertised_without_being_put_on_the_node() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let api = ApiServer::start(&lab.router);
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let tmp = workdir();
    let mut env = bgp_svc_env(&tmp.join("state"), &api.kubeconfig(), "node0");
    env.insert("cp_enable".into(), "true".into());
    env.insert("address".into(), VIP4.into());
    let file = tmp.join("vipr.yaml");
    let log = tmp.join("vipr.log");
    std::fs::write(&file, "bgp_attach_ip_to_interface: false\n").unwrap();
    let mut vipr = Vipr::start(node, &env, &["--config", file.to_str().unwrap()], &log);
    let ctx = || {
        format!(
            "{}\n{:?}\n{}",
            bird.birdc("show route all"),
            lo_addrs(node),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    let vip = svc_vip(30);
    let host = format!("{vip}/32");
    api.create_service(&annotated_service("web", &vip, serde_json::json!({})));

    eventually("the Service's route at BIRD", ctx, || {
        bird_route(&bird, &host, "n0")
    });
    eventually("the control-plane route at BIRD", ctx, || {
        bird_route(&bird, &format!("{VIP4}/32"), "n0")
    });
    api.wait_ingress("web", &[&vip]);
    assert_eq!(lo_count(node, &format!("{VIP4}/32")), 1, "{}", ctx());
    assert_eq!(lo_count(node, &host), 0, "{}", ctx());
    let s = vipr.status().expect("status");
    let v = Vipr::vip(&s, &vip);
    assert_eq!(v["interface"], serde_json::Value::Null, "{v:#}");
    assert_eq!(v["held_back"], serde_json::Value::Null, "{v:#}");

    // On: the address comes to lo.
    vipr.reload(&file, "bgp_attach_ip_to_interface: true\n", 1);
    eventually("the Service's address on lo", ctx, || {
        (lo_count(node, &host) == 1).then_some(())
    });
    eventually("the route back at BIRD", ctx, || {
        bird_route(&bird, &host, "n0")
    });
    // Off again: it leaves lo, the route stays.
    vipr.reload(&file, "bgp_attach_ip_to_interface: false\n", 2);
    eventually("the Service's address gone from lo", ctx, || {
        (lo_count(node, &host) == 0).then_some(())
    });
    assert!(bird_route(&bird, &host, "n0").is_some(), "{}", ctx());
    assert_eq!(lo_count(node, &format!("{VIP4}/32")), 1, "{}", ctx());

    // SIGTERM: withdrawn, lo clean, exit 0.
    vipr.signal(libc::SIGTERM);
    let status = vipr.wait_exit(CONVERGE);
    assert!(status.success(), "{status:?}\n{}", vipr.log());
    eventually("every route withdrawn", ctx, || {
        (bird_route(&bird, &host, "n0").is_none()
            && bird_route(&bird, &format!("{VIP4}/32"), "n0").is_none())
        .then_some(())
    });
    assert_eq!(lo_count(node, &format!("{VIP4}/32")), 0, "{}", ctx());
}
