//! End to end against a real kube-apiserver 1.20.2 and BIRD: the Service filter and
//! `svc_enable` follow SIGHUP (an earlier vipr read them once at start). One node reads a
//! YAML file with `svc_namespace: other`; a Service in `default` is left alone until the
//! filter is removed, then advertised; `svc_enable: false` withdraws it again; the BGP
//! session never resets.

mod daemon_common;
mod k8s_common;

use std::path::Path;

use daemon_common::*;
use k8s_common::*;
use serde_json::json;
use testbed::{wait_for, Bird, Lab};

fn yaml(state: &Path, kubeconfig: &Path, extra: &str) -> String {
    format!(
        "bgp_enable: true\nbgp_as: {NODE_AS}\nbgp_peers: 10.55.0.1:{ROUTER_AS}::false\n\
         bgp_hold_time: 3\nbgp_keepalive_interval: 1\nprometheus_server: {HTTP}\n\
         vip_nodename: node0\nvipr_state_dir: {}\nk8s_config_file: {}\n\
         vipr_static_vips: 203.0.113.99\n{extra}",
        state.display(),
        kubeconfig.display()
    )
}

#[test]
fn service_filter_and_svc_enable_follow_sighup() {
    let lab = Lab::new(1);
    let api = ApiServer::start(&lab.router);
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let dir = workdir();
    let state = dir.join("state");
    let file = dir.join("vipr.yaml");
    let kc = api.kubeconfig();
    std::fs::write(
        &file,
        yaml(&state, &kc, "svc_enable: true\nsvc_namespace: other\n"),
    )
    .unwrap();
    let mut vipr = Vipr::start(
        &lab.nodes[0],
        &Default::default(),
        &["--config", file.to_str().unwrap()],
        &dir.join("vipr.log"),
    );
    let log = dir.join("vipr.log");
    let ctx = || {
        format!(
            "{}\n{}",
            bird.birdc("show route all"),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    within(CONVERGE, "session and caches", ctx, || {
        (bird.protocol_state("n0") == "Established"
            && std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Service and endpoint caches synced"))
        .then_some(())
    });
    let since = bird.birdc("show protocols n0");
    let vip = svc_vip(30);
    let at_bird = || bird_route(&bird, &format!("{vip}/32"), "n0").is_some();
    api.create_service(&annotated_service("web", &vip, json!({})));
    // Outside the filter: never served (the static VIP shows the node is advertising).
    within(CONVERGE, "static VIP at BIRD", ctx, || {
        bird_route(&bird, "203.0.113.99/32", "n0").map(|_| ())
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        !at_bird(),
        "a Service outside svc_namespace is served\n{}",
        ctx()
    );
    assert!(api.ingress_ips("web").is_empty());

    let hup = |vipr: &mut Vipr, extra: &str, n: usize| {
        std::fs::write(&file, yaml(&state, &kc, extra)).unwrap();
        vipr.signal(libc::SIGHUP);
        wait_for(CONVERGE, || {
            (vipr
                .run_log()
                .matches("SIGHUP: configuration reloaded")
                .count()
                >= n)
                .then_some(())
        })
        .expect("reloaded");
    };
    hup(&mut vipr, "svc_enable: true\n", 1);
    within(CONVERGE, "served once the filter allows it", ctx, || {
        at_bird().then_some(())
    });
    api.wait_ingress("web", &[&vip]);

    hup(&mut vipr, "svc_enable: false\n", 2);
    within(CONVERGE, "withdrawn with svc_enable off", ctx, || {
        (!at_bird()).then_some(())
    });
    assert!(bird_route(&bird, "203.0.113.99/32", "n0").is_some());
    assert_eq!(bird.birdc("show protocols n0"), since, "the session reset");
    vipr.assert_running();
}
