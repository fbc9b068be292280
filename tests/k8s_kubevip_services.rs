//! kube-vip v1.2.3's Service rules, end to end against a real kube-apiserver 1.20.2 (core/v1
//! Endpoints, written by the test: no endpoints controller runs) and a real BIRD peer; two
//! nodes (node0, node1) run `vipr manager` in BGP mode with `svc_enable=true`.
//!
//! Asserts, at BIRD and in the API:
//! - endpoints (`pkg/endpoints/endpoints.go`): an `externalTrafficPolicy: Cluster` Service
//!   with no ready endpoint is advertised by no node and gets no status; only not-ready
//!   addresses change nothing; one ready address on node1 brings the route from both nodes
//!   and the status; all addresses not ready again withdraws it everywhere (the status
//!   stays, as kube-vip leaves it); `kube-vip.io/allow-reconcile-without-endpoints: "true"`
//!   advertises without endpoints;
//! - `kube-vip.io/ignore: "true"` (`pkg/services/processor.go`): never advertised, no status;
//!   added to a served Service, its route is withdrawn and its status left alone.
//!
//! - `node.kubernetes.io/exclude-from-external-load-balancers` on a Node (any value, as
//!   MetalLB v0.16.1 reads it): that node withdraws its Service routes, keeps its
//!   control-plane VIP, and announces them again once the label is removed.
//!
//! - an annotation of `pkg/kubevip/annotations.go` vipr does not implement is named once
//!   per Service in each node's log and by one `AnnotationIgnored` Event.
//!
//! - `disable_service_updates=true`: served, status never written;
//! - `enable_node_labeling=true`: kube-vip's Node labels follow what each node serves.
//!
//! "Never" is proven against a witness: a Service created after the one that must not
//! appear is advertised and has its status, so the first one was seen and decided.

mod daemon_common;
mod k8s_common;

use daemon_common::*;
use k8s_common::*;
use serde_json::{json, Value};
use testbed::{Bird, Lab, TempDir};

const NODES: usize = 2;

struct Setup {
    lab: Lab,
    api: ApiServer,
    bird: Bird,
    vs: Vec<Vipr>,
    _dirs: Vec<TempDir>,
}

impl Setup {
    fn start() -> Setup {
        Setup::start_with(|_| {})
    }

    /// Both nodes with `bgp_svc_env`, changed by `more`.
    fn start_with(more: impl Fn(&mut std::collections::BTreeMap<String, String>)) -> Setup {
        let lab = Lab::new(NODES);
        let api = ApiServer::start(&lab.router);
        // The Node objects (no kubelet registers them); node0 with a kube-vip label left
        // over from an earlier run.
        for i in 0..NODES {
            let mut labels = json!({});
            if i == 0 {
                labels = json!({"service-provided.kube-vip.io/gone.default": "192.0.2.99"});
            }
            api.create(
                "/api/v1/nodes",
                &json!({"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": format!("node{i}"), "labels": labels}}),
            );
        }
        let bird = Bird::start(&lab.router, &bird_router_conf(&[0, 1]));
        let dirs: Vec<TempDir> = (0..NODES).map(|_| workdir()).collect();
        let vs: Vec<Vipr> = (0..NODES)
            .map(|i| {
                let mut env = bgp_svc_env(
                    &dirs[i].join("state"),
                    &api.kubeconfig(),
                    &format!("node{i}"),
                );
                more(&mut env);
                Vipr::start(&lab.nodes[i], &env, &[], &dirs[i].join("vipr.log"))
            })
            .collect();
        let s = Setup {
            lab,
            api,
            bird,
            vs,
            _dirs: dirs,
        };
        for v in &s.vs {
            within(
                CONVERGE,
                "Service caches synced",
                || s.ctx(),
                || {
                    v.log()
                        .contains("Service and endpoint caches synced")
                        .then_some(())
                },
            );
        }
        s
    }

    fn ctx(&self) -> String {
        let logs: Vec<String> = self.vs.iter().map(|v| v.log()).collect();
        format!(
            "{}\n{}\n{}",
            self.bird.birdc("show route all"),
            self.bird.log(),
            logs.join("\n----\n")
        )
    }

    /// The nodes BIRD has a route for `ip` from.
    fn from(&self, ip: &str) -> Vec<usize> {
        (0..NODES)
            .filter(|i| bird_route(&self.bird, &format!("{ip}/32"), &format!("n{i}")).is_some())
            .collect()
    }

    /// Creates an allowed witness Service and waits for its route and status: everything
    /// created before it has been seen and decided by both nodes.
    fn witness(&self, name: &str, ip: &str) {
        self.api
            .create_service(&annotated_service(name, ip, json!({})));
        within(
            CONVERGE,
            "witness advertised by both",
            || self.ctx(),
            || (self.from(ip) == [0, 1]).then_some(()),
        );
        self.api.wait_ingress(name, &[ip]);
    }
}

/// A Service at `ip` without kube-vip's opt-in, with extra annotations.
fn strict(name: &str, ip: &str, extra: Value) -> Value {
    let mut a = json!({
        "kube-vip.io/loadbalancerIPs": ip,
        ALLOW_WITHOUT_ENDPOINTS: null,
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        a[k] = v;
    }
    lb_service(name, a, json!({}))
}

#[test]
fn services_without_endpoints_and_ignored_ones_are_not_advertised() {
    let s = Setup::start();
    let ctx = || s.ctx();
    let api = &s.api;

    // No endpoints at all: held back on both nodes, no route, no status.
    let noep = svc_vip(70);
    api.create_service(&strict("noep", &noep, json!({})));
    for v in &s.vs {
        let why = within(CONVERGE, "held back for want of endpoints", ctx, || {
            v.held_back(&noep)
        });
        assert!(why.contains("no ready endpoint"), "{why}");
    }
    // Ignored (with the opt-in, so only the ignore keeps it off).
    let ignored = svc_vip(71);
    api.create_service(&lb_service(
        "ignored",
        json!({"kube-vip.io/loadbalancerIPs": ignored, "kube-vip.io/ignore": "true"}),
        json!({}),
    ));
    s.witness("w1", &svc_vip(72));
    assert_eq!(s.from(&noep), Vec::<usize>::new(), "{}", ctx());
    assert_eq!(s.from(&ignored), Vec::<usize>::new(), "{}", ctx());
    assert_eq!(api.ingress_ips("noep"), Vec::<String>::new());
    assert_eq!(api.ingress_ips("ignored"), Vec::<String>::new());
    for v in &s.vs {
        let st = v.status().expect("status");
        assert_eq!(Vipr::vip(&st, &ignored), Value::Null, "{st:#}");
    }

    // Only a not-ready address: still nothing.
    let ep_path = "/api/v1/namespaces/default/endpoints/noep";
    api.create(
        "/api/v1/namespaces/default/endpoints",
        &endpoints("noep", &[], &["node1"]),
    );
    s.witness("w2", &svc_vip(73));
    assert_eq!(s.from(&noep), Vec::<usize>::new(), "{}", ctx());
    assert_eq!(api.ingress_ips("noep"), Vec::<String>::new());

    // One ready address on node1: a Cluster Service, so both nodes advertise it.
    api.replace(ep_path, &endpoints("noep", &["node1"], &[]));
    within(
        CONVERGE,
        "advertised by both once an endpoint is ready",
        ctx,
        || (s.from(&noep) == [0, 1]).then_some(()),
    );
    api.wait_ingress("noep", &[&noep]);

    // Not ready again: withdrawn everywhere; kube-vip leaves the status as it was.
    api.replace(ep_path, &endpoints("noep", &[], &["node1"]));
    within(CONVERGE, "withdrawn when no endpoint is ready", ctx, || {
        s.from(&noep).is_empty().then_some(())
    });
    assert_eq!(api.ingress_ips("noep"), vec![noep.clone()]);

    // kube-vip's opt-in: advertised without any endpoint.
    api.merge_patch(
        &svc_path("noep"),
        &json!({"metadata": {"annotations": {ALLOW_WITHOUT_ENDPOINTS: "true"}}}),
    );
    within(CONVERGE, "advertised with the opt-in", ctx, || {
        (s.from(&noep) == [0, 1]).then_some(())
    });

    // Ignore added to a served Service: withdrawn, status untouched.
    api.merge_patch(
        &svc_path("noep"),
        &json!({"metadata": {"annotations": {"kube-vip.io/ignore": "true"}}}),
    );
    within(CONVERGE, "withdrawn once ignored", ctx, || {
        s.from(&noep).is_empty().then_some(())
    });
    s.witness("w3", &svc_vip(74));
    assert_eq!(api.ingress_ips("noep"), vec![noep.clone()]);
    // Any other value is not kube-vip's "true": served again.
    api.merge_patch(
        &svc_path("noep"),
        &json!({"metadata": {"annotations": {"kube-vip.io/ignore": "yes"}}}),
    );
    within(CONVERGE, "served again when not \"true\"", ctx, || {
        (s.from(&noep) == [0, 1]).then_some(())
    });
    let _ = &s.lab;
}

fn label_node(api: &ApiServer, node: &str, value: Value) {
    api.merge_patch(
        &format!("/api/v1/nodes/{node}"),
        &json!({"metadata": {"labels": {"node.kubernetes.io/exclude-from-external-load-balancers": value}}}),
    );
}

/// MetalLB v0.16.1's and Kubernetes' `node.kubernetes.io/exclude-from-external-load-balancers`:
/// labelled (any value, also empty), node0 withdraws its Service routes and keeps its
/// control-plane VIP; unlabelled, they come back. node1 is never touched.
#[test]
fn a_node_labelled_exclude_from_external_load_balancers_withdraws_service_routes() {
    let s = Setup::start_with(|env| {
        env.insert("cp_enable".into(), "true".into());
        env.insert("address".into(), "192.0.2.10".into());
    });
    let ctx = || s.ctx();
    let api = &s.api;
    let svc = svc_vip(80);
    api.create_service(&annotated_service("web", &svc, json!({})));
    within(
        CONVERGE,
        "Service and control-plane VIP from both",
        ctx,
        || (s.from(&svc) == [0, 1] && s.from("192.0.2.10") == [0, 1]).then_some(()),
    );

    label_node(api, "node0", json!(""));
    within(CONVERGE, "node0's Service route withdrawn", ctx, || {
        (s.from(&svc) == [1]).then_some(())
    });
    let why = within(CONVERGE, "held back on node0", ctx, || {
        s.vs[0].held_back(&svc)
    });
    assert!(
        why.contains("exclude-from-external-load-balancers"),
        "{why}"
    );
    assert_eq!(
        s.from("192.0.2.10"),
        vec![0, 1],
        "control-plane VIP unaffected\n{}",
        ctx()
    );
    // A Service created while excluded: only node1, and its status is written.
    let svc2 = svc_vip(81);
    api.create_service(&annotated_service("web2", &svc2, json!({})));
    within(CONVERGE, "new Service from node1 only", ctx, || {
        (s.from(&svc2) == [1]).then_some(())
    });
    api.wait_ingress("web2", &[&svc2]);
    assert_eq!(s.from(&svc), vec![1]);

    // Removed: back on node0.
    api.merge_patch(
        "/api/v1/nodes/node0",
        &json!({"metadata": {"labels": {"node.kubernetes.io/exclude-from-external-load-balancers": null}}}),
    );
    within(CONVERGE, "node0's Service routes back", ctx, || {
        (s.from(&svc) == [0, 1] && s.from(&svc2) == [0, 1]).then_some(())
    });
    // Any value counts.
    label_node(api, "node0", json!("false"));
    within(CONVERGE, "withdrawn again for any value", ctx, || {
        (s.from(&svc) == [1] && s.from(&svc2) == [1]).then_some(())
    });
    assert_eq!(s.from("192.0.2.10"), vec![0, 1], "{}", ctx());
}

/// `pkg/kubevip/annotations.go`'s annotations vipr does not implement: named once per
/// Service and annotation in each node's log, and one Kubernetes Event on the Service
/// (reason `AnnotationIgnored`), however often the Service changes afterwards.
#[test]
fn an_unsupported_kube_vip_annotation_is_named_once_in_the_log_and_one_event() {
    let s = Setup::start();
    let ctx = || s.ctx();
    let api = &s.api;
    let svc = svc_vip(90);
    api.create_service(&annotated_service_with(
        "egress",
        &svc,
        json!({"kube-vip.io/egress": "true", "kube-vip.io/vipHost": "kube-vip-node"}),
    ));
    within(CONVERGE, "served anyway", ctx, || {
        (s.from(&svc) == [0, 1]).then_some(())
    });
    let said = |v: &Vipr| {
        v.log()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("annotation=\"kube-vip.io/egress\""))
            .count()
    };
    let events = || -> Vec<Value> {
        api.get("/api/v1/namespaces/default/events")
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["reason"] == "AnnotationIgnored")
            .collect()
    };
    for v in &s.vs {
        within(CONVERGE, "named in the log", ctx, || {
            (said(v) == 1).then_some(())
        });
    }
    let ev = within(CONVERGE, "the Event", ctx, || {
        let e = events();
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["involvedObject"]["name"], "egress");
    assert_eq!(ev[0]["type"], "Warning");
    assert!(
        ev[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("kube-vip.io/egress"),
        "{ev:#?}"
    );
    // kube-vip's own output (vipHost) is never named.
    for v in &s.vs {
        assert!(!v.log().contains("kube-vip.io/vipHost"), "{}", v.log());
    }
    // The Service changes (its address moves): not named again, still one Event.
    let svc2 = svc_vip(91);
    api.merge_patch(
        &svc_path("egress"),
        &json!({"metadata": {"annotations": {"kube-vip.io/loadbalancerIPs": svc2}}}),
    );
    within(CONVERGE, "moved", ctx, || {
        (s.from(&svc2) == [0, 1]).then_some(())
    });
    s.witness("w", &svc_vip(92));
    for v in &s.vs {
        assert_eq!(said(v), 1, "{}", v.log());
    }
    assert_eq!(events().len(), 1);
}

/// [`annotated_service`] with more annotations.
fn annotated_service_with(name: &str, ip: &str, more: Value) -> Value {
    let mut a = json!({"kube-vip.io/loadbalancerIPs": ip});
    for (k, v) in more.as_object().cloned().unwrap_or_default() {
        a[k] = v;
    }
    lb_service(name, a, json!({}))
}

/// `disable_service_updates=true` (kube-vip v1.2.3 `pkg/services/services.go`: no
/// `updateStatus`): Services are served, their status is never written. Proven against the
/// writer's later work on the same Service: its `AnnotationIgnored` Event (Events go after
/// status writes) exists, the status is still empty.
#[test]
fn disable_service_updates_serves_without_writing_status() {
    let s = Setup::start_with(|env| {
        env.insert("disable_service_updates".into(), "true".into());
    });
    let ctx = || s.ctx();
    let api = &s.api;
    let svc = svc_vip(95);
    api.create_service(&annotated_service_with(
        "quiet",
        &svc,
        json!({"kube-vip.io/flush-conntrack": "true"}),
    ));
    within(CONVERGE, "served by both", ctx, || {
        (s.from(&svc) == [0, 1]).then_some(())
    });
    within(CONVERGE, "the writer's Event on the Service", ctx, || {
        api.get("/api/v1/namespaces/default/events")?["items"]
            .as_array()?
            .iter()
            .any(|e| e["involvedObject"]["name"] == "quiet" && e["reason"] == "AnnotationIgnored")
            .then_some(())
    });
    assert_eq!(api.ingress_ips("quiet"), Vec::<String>::new(), "{}", ctx());
    for v in &s.vs {
        let warned = v
            .log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("disable_service_updates"));
        assert!(!warned, "not warned: implemented\n{}", v.log());
    }
}

/// kube-vip's labels on the Node (`kube-vip.io/has-ip`, `service-provided.kube-vip.io/…`).
fn kube_vip_labels(api: &ApiServer, node: &str) -> std::collections::BTreeMap<String, String> {
    api.get(&format!("/api/v1/nodes/{node}"))
        .and_then(|n| n["metadata"]["labels"].as_object().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            k == "kube-vip.io/has-ip" || k.starts_with("service-provided.kube-vip.io/")
        })
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// `enable_node_labeling=true` (kube-vip v1.2.3 `pkg/node/labeler`, `pkg/kubevip/labels.go`):
/// each node carries `kube-vip.io/has-ip=<control-plane VIP>` and
/// `service-provided.kube-vip.io/<service>.<namespace>=<VIP>` while it serves them; a label
/// left over from an earlier run goes at start; a node that stops serving a Service (it is
/// excluded from external load balancers) loses its label, and at SIGTERM a node removes
/// its own.
#[test]
fn enable_node_labeling_labels_the_nodes_serving_each_vip() {
    let mut s = Setup::start_with(|env| {
        env.insert("enable_node_labeling".into(), "true".into());
        env.insert("cp_enable".into(), "true".into());
        env.insert("address".into(), "192.0.2.10".into());
    });
    let ctx = || s.ctx();
    let api = &s.api;
    let svc = svc_vip(96);
    api.create_service(&annotated_service("web", &svc, json!({})));
    let want: std::collections::BTreeMap<String, String> = [
        ("kube-vip.io/has-ip".to_string(), "192.0.2.10".to_string()),
        (
            "service-provided.kube-vip.io/web.default".to_string(),
            svc.clone(),
        ),
    ]
    .into_iter()
    .collect();
    for node in ["node0", "node1"] {
        within(
            CONVERGE,
            "both labels on each node, the leftover gone",
            ctx,
            || (kube_vip_labels(api, node) == want).then_some(()),
        );
    }
    // node0 stops serving the Service: its Service label goes, has-ip stays.
    label_node(api, "node0", json!(""));
    within(CONVERGE, "node0's Service label removed", ctx, || {
        let l = kube_vip_labels(api, "node0");
        (l.len() == 1 && l.contains_key("kube-vip.io/has-ip")).then_some(())
    });
    assert_eq!(kube_vip_labels(api, "node1"), want);
    // The Service is deleted: node1's Service label goes.
    api.delete_service("web");
    within(CONVERGE, "node1's Service label removed", ctx, || {
        (kube_vip_labels(api, "node1").len() == 1).then_some(())
    });
    // SIGTERM: node1 removes its own labels on the way out.
    let log = s.ctx();
    let mut v1 = s.vs.pop().expect("node1");
    v1.signal(15);
    v1.wait_exit(std::time::Duration::from_secs(10));
    assert_eq!(
        kube_vip_labels(&s.api, "node1"),
        Default::default(),
        "{log}\n{}",
        v1.log()
    );
    assert_eq!(kube_vip_labels(&s.api, "node0").len(), 1);
}
