//! End-to-end test of Services of type LoadBalancer over BGP against a real kube-apiserver
//! 1.20.2 (in the lab's router namespace) and a real BIRD peer: two nodes run `vipr manager`
//! with `svc_enable=true`, node0 with the defaults, node1 with `lb_class_only=true`.
//!
//! Asserts, at BIRD and in the API: a Service annotated `kube-vip.io/loadbalancerIPs` is
//! advertised (the latency from the POST is printed) and its `status.loadBalancer.ingress`
//! is written; changing the annotation moves the route and the status; a Service with only
//! `spec.loadBalancerIP` is served too; two Services sharing one VIP keep the route until
//! the last of them is deleted; deleting a Service withdraws its route. node1 serves
//! nothing at any point: Kubernetes 1.20 has no `spec.loadBalancerClass` (the API server
//! prunes it, which the test checks), so every Service is class-less, and a class-only
//! node must leave them alone.

mod daemon_common;
mod k8s_common;

use std::time::Instant;

use daemon_common::*;
use k8s_common::*;
use serde_json::{json, Value};
use testbed::{Bird, Lab};

const CLASS: &str = "vipr.example/lb";

fn host(ip: &str) -> String {
    format!("{ip}/32")
}

/// Routes BIRD learnt from node1 (must stay empty).
fn from_node1(bird: &Bird) -> Vec<String> {
    bird.routes()
        .into_iter()
        .filter(|r| r.from_protocol == "n1")
        .map(|r| r.prefix)
        .collect()
}

#[test]
fn services_are_advertised_followed_shared_and_withdrawn() {
    let lab = Lab::new(2);
    let api = ApiServer::start(&lab.router);
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0, 1]));
    let d0 = workdir();
    let d1 = workdir();
    let v0 = Vipr::start(
        &lab.nodes[0],
        &bgp_svc_env(&d0.join("state"), &api.kubeconfig(), "node0"),
        &[],
        &d0.join("vipr.log"),
    );
    let mut env1 = bgp_svc_env(&d1.join("state"), &api.kubeconfig(), "node1");
    env1.insert("lb_class_only".into(), "true".into());
    env1.insert("lb_class_name".into(), CLASS.into());
    let v1 = Vipr::start(&lab.nodes[1], &env1, &[], &d1.join("vipr.log"));
    let ctx = || format!("{}\n{}", bird.birdc("show route all"), bird.log());
    let at_bird = |ip: &str| bird_route(&bird, &host(ip), "n0").is_some();

    within(CONVERGE, "both sessions Established", ctx, || {
        (bird.protocol_state("n0") == "Established" && bird.protocol_state("n1") == "Established")
            .then_some(())
    });
    for v in [&v0, &v1] {
        within(CONVERGE, "Service caches synced", ctx, || {
            v.log()
                .contains("Service and endpoint caches synced")
                .then_some(())
        });
        assert!(v.log().contains("using core/v1 Endpoints"), "{}", v.log());
    }

    // Annotated: advertised, status written.
    let (a, b) = (svc_vip(10), svc_vip(11));
    let t0 = Instant::now();
    let created = api.create_service(&annotated_service(
        "web",
        &a,
        json!({"loadBalancerClass": CLASS}),
    ));
    // 1.20 knows no loadBalancerClass: every Service here is class-less.
    assert_eq!(
        created["spec"]["loadBalancerClass"],
        Value::Null,
        "{created:#}"
    );
    let took = time_until(t0, || at_bird(&a))
        .unwrap_or_else(|| panic!("{a} never reached BIRD\n{}", ctx()));
    eprintln!("MEASURED k8s: Service created (annotated) -> route at BIRD after {took:?}");
    api.wait_ingress("web", &[&a]);
    let r = bird_route(&bird, &host(&a), "n0").unwrap();
    assert_eq!(r.next_hop.as_deref(), Some("10.55.0.11"), "{r:?}");

    // Annotation changed: the route and the status follow.
    let t0 = Instant::now();
    api.merge_patch(
        &svc_path("web"),
        &json!({"metadata": {"annotations": {"kube-vip.io/loadbalancerIPs": b}}}),
    );
    let took = time_until(t0, || at_bird(&b) && !at_bird(&a))
        .unwrap_or_else(|| panic!("route did not move {a} -> {b}\n{}", ctx()));
    eprintln!("MEASURED k8s: annotation changed -> route moved at BIRD after {took:?}");
    api.wait_ingress("web", &[&b]);

    // spec.loadBalancerIP only.
    let c = svc_vip(12);
    api.create_service(&lb_service(
        "byspec",
        json!({}),
        json!({"loadBalancerIP": c}),
    ));
    within(CONVERGE, "spec.loadBalancerIP advertised", ctx, || {
        at_bird(&c).then_some(())
    });
    api.wait_ingress("byspec", &[&c]);

    // vipr's own status never shadows the spec: changing spec.loadBalancerIP moves the route
    // and the status; a Service annotated over its spec, then un-annotated, falls back to it.
    let c2 = svc_vip(13);
    api.merge_patch(
        &svc_path("byspec"),
        &json!({"spec": {"loadBalancerIP": c2}}),
    );
    within(CONVERGE, "spec change followed", ctx, || {
        (at_bird(&c2) && !at_bird(&c)).then_some(())
    });
    api.wait_ingress("byspec", &[&c2]);
    let d = svc_vip(14);
    api.merge_patch(
        &svc_path("byspec"),
        &json!({"metadata": {"annotations": {"kube-vip.io/loadbalancerIPs": d}}}),
    );
    within(CONVERGE, "annotation over spec", ctx, || {
        (at_bird(&d) && !at_bird(&c2)).then_some(())
    });
    api.merge_patch(
        &svc_path("byspec"),
        &json!({"metadata": {"annotations": {"kube-vip.io/loadbalancerIPs": null}}}),
    );
    within(
        CONVERGE,
        "annotation removed: back to the spec",
        ctx,
        || (at_bird(&c2) && !at_bird(&d)).then_some(()),
    );
    api.wait_ingress("byspec", &[&c2]);
    let c = c2;

    // Two Services, one VIP: the route stays until the last one goes.
    let s = svc_vip(20);
    api.create_service(&annotated_service("shared-a", &s, json!({})));
    api.create_service(&annotated_service("shared-b", &s, json!({})));
    within(CONVERGE, "shared VIP advertised for both", ctx, || {
        let st = v0.status()?;
        let vip = Vipr::vip(&st, &s);
        (at_bird(&s) && vip["sources"].as_array()?.len() == 2).then_some(())
    });
    api.wait_ingress("shared-a", &[&s]);
    api.wait_ingress("shared-b", &[&s]);
    api.delete_service("shared-a");
    // Until vipr has seen the delete, and after, the route is there at every sample.
    within(CONVERGE, "shared VIP left with one source", ctx, || {
        assert!(
            at_bird(&s),
            "shared VIP withdrawn while shared-b exists\n{}",
            ctx()
        );
        let st = v0.status()?;
        (Vipr::vip(&st, &s)["sources"] == json!(["service/default/shared-b"])).then_some(())
    });
    assert!(
        at_bird(&s),
        "shared VIP withdrawn while shared-b exists\n{}",
        ctx()
    );
    api.delete_service("shared-b");
    within(CONVERGE, "shared VIP withdrawn", ctx, || {
        (!at_bird(&s)).then_some(())
    });

    // Deleting withdraws.
    let t0 = Instant::now();
    api.delete_service("web");
    let took =
        time_until(t0, || !at_bird(&b)).unwrap_or_else(|| panic!("{b} not withdrawn\n{}", ctx()));
    eprintln!("MEASURED k8s: Service deleted -> route withdrawn at BIRD after {took:?}");
    assert!(at_bird(&c), "byspec lost its route\n{}", ctx());
    api.delete_service("byspec");
    within(CONVERGE, "byspec withdrawn", ctx, || {
        (!at_bird(&c)).then_some(())
    });

    // The class-only node never served a class-less Service, nor wrote a status.
    assert_eq!(from_node1(&bird), Vec::<String>::new());
    let st = v1.status().expect("node1 status");
    assert_eq!(st["vips"], json!([]), "{st:#}");
    let log = v0.log();
    let trouble: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        // kube-rs says so for the lab's `insecure-skip-tls-verify: true`.
        .filter(|l| !l.contains("Server cert bypassed"))
        .collect();
    assert!(
        trouble.is_empty(),
        "node0 logged trouble:\n{}",
        trouble.join("\n")
    );
    let st = v0.status().unwrap();
    assert_eq!(Vipr::peer(&st, "10.55.0.1")["flaps"], 0, "{st:#}");
}
