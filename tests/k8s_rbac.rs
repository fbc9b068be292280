//! End-to-end test of vipr under RBAC, against a real kube-apiserver 1.20.2
//! (`--authorization-mode RBAC`): both vipr processes use the token of user "vipr", which
//! has no permissions until the test binds it. node0 runs BGP mode with `svc_enable=true`
//! (peering with a real BIRD), node1 ARP mode with a Lease-elected control-plane VIP.
//!
//! Asserts: without a binding both log permission errors (`forbidden`), keep retrying (more
//! of them over time), advertise no route, write no Service status and hold no VIP. After
//! the test creates the minimal ClusterRole/Role below and binds them to "vipr", without any
//! restart: the Service is advertised and its status written, node1 wins the Lease and puts
//! the VIP on eth0, and neither logs a permission error any more.
//!
//! The rules (what a vipr manifest needs): services list/watch, services/status
//! patch/update, endpoints list/watch, nodes list/watch (its own Node's
//! exclude-from-external-load-balancers label) (cluster-wide); leases get/list/watch/create/update
//! in `cp_namespace` (kube-system). `list` on leases is needed by the Lease watch (a list
//! restricted to one name by a field selector, then a watch).

mod daemon_common;
mod k8s_common;

use std::time::{Duration, Instant};

use daemon_common::*;
use k8s_common::*;
use serde_json::{json, Value};
use testbed::{Bird, Lab};

const VIP: &str = "10.55.0.100";

fn forbidden(log: &str) -> usize {
    log.lines().filter(|l| l.contains("forbidden")).count()
}

fn rules() -> (Value, Value) {
    let cluster = json!([
        {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["services/status"], "verbs": ["patch", "update"]},
        {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
    ]);
    let leases = json!([
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "list", "watch", "create", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kubevip"],
         "verbs": ["get", "list", "watch"]},
    ]);
    (cluster, leases)
}

fn bind(api: &ApiServer) {
    let (cluster, leases) = rules();
    let subject =
        json!([{"kind": "User", "name": "vipr", "apiGroup": "rbac.authorization.k8s.io"}]);
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    api.create(
        &format!("{rbac}/clusterroles"),
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "vipr"}, "rules": cluster}),
    );
    api.create(
        &format!("{rbac}/clusterrolebindings"),
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "vipr"}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "vipr"}}),
    );
    api.create(
        &format!("{rbac}/namespaces/kube-system/roles"),
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "vipr-leases", "namespace": "kube-system"}, "rules": leases}),
    );
    api.create(
        &format!("{rbac}/namespaces/kube-system/rolebindings"),
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "vipr-leases", "namespace": "kube-system"}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "vipr-leases"}}),
    );
}

fn holds_vip(lab: &Lab) -> bool {
    let out = lab.nodes[1].run(&["ip", "-4", "addr", "show", "dev", "eth0"]);
    String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
}

/// The log after the first line containing `marker`.
fn after(log: &str, marker: &str) -> String {
    log.find(marker)
        .map(|i| log[i..].to_string())
        .unwrap_or_default()
}

#[test]
fn vipr_needs_its_rbac_and_recovers_when_bound() {
    let lab = Lab::new(2);
    let api = ApiServer::start(&lab.router);
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let svc = svc_vip(50);
    api.create_service(&annotated_service("web", &svc, json!({})));
    let (d0, d1) = (workdir(), workdir());
    let kc = api.kubeconfig_vipr();
    let v0 = Vipr::start(
        &lab.nodes[0],
        &bgp_svc_env(&d0.join("state"), &kc, "node0"),
        &[],
        &d0.join("vipr.log"),
    );
    let v1 = Vipr::start(
        &lab.nodes[1],
        &arp_cp_env(&d1.join("state"), &kc, "node1", VIP),
        &[],
        &d1.join("vipr.log"),
    );
    let ctx = || {
        format!(
            "{}\n--- node0\n{}\n--- node1\n{}",
            bird.birdc("show route all"),
            v0.log(),
            v1.log()
        )
    };
    let at_bird = || bird_route(&bird, &format!("{svc}/32"), "n0").is_some();

    // Unbound: permission errors, again and again, and nothing served.
    within(CONVERGE, "BGP session", ctx, || {
        (bird.protocol_state("n0") == "Established").then_some(())
    });
    let first: Vec<usize> = [&v0, &v1]
        .iter()
        .map(|v| {
            within(CONVERGE, "a permission error", ctx, || {
                Some(forbidden(&v.log())).filter(|&n| n > 0)
            })
        })
        .collect();
    for (k, v) in [&v0, &v1].iter().enumerate() {
        within(CONVERGE, "more permission errors (retrying)", ctx, || {
            (forbidden(&v.log()) > first[k]).then_some(())
        });
    }
    assert!(!at_bird(), "advertised without permissions\n{}", ctx());
    assert!(
        api.ingress_ips("web").is_empty(),
        "status written without permissions"
    );
    assert!(!holds_vip(&lab), "VIP held without a Lease\n{}", ctx());
    assert!(
        v0.log()
            .lines()
            .any(|l| l.contains("forbidden") && l.contains("services")),
        "{}",
        ctx()
    );
    let lease_errors = v1.log();
    assert!(
        lease_errors
            .lines()
            .any(|l| l.contains("forbidden") && l.contains("leases")),
        "{}",
        ctx()
    );
    assert!(api
        .get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plndr-cp-lock")
        .is_none());

    // Bound: everything works without a restart.
    let t0 = Instant::now();
    bind(&api);
    let took = within(
        Duration::from_secs(40),
        "Service advertised once bound",
        ctx,
        || at_bird().then(|| t0.elapsed()),
    );
    eprintln!("MEASURED k8s RBAC: bound -> Service route at BIRD after {took:?}");
    api.wait_ingress("web", &[&svc]);
    let took = within(
        Duration::from_secs(20),
        "node1 holds the VIP once bound",
        ctx,
        || holds_vip(&lab).then(|| t0.elapsed()),
    );
    eprintln!("MEASURED k8s RBAC: bound -> Lease won, VIP on node1 after {took:?}");
    let lease = api
        .get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plndr-cp-lock")
        .expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "node1", "{lease:#}");

    // Still working: a second Service goes through the live watch, and no permission
    // error was logged since each daemon started working.
    let svc2 = svc_vip(51);
    api.create_service(&annotated_service("web2", &svc2, json!({})));
    within(CONVERGE, "second Service advertised", ctx, || {
        bird_route(&bird, &format!("{svc2}/32"), "n0").map(|_| ())
    });
    api.wait_ingress("web2", &[&svc2]);
    let since0 = after(&v0.log(), "Service and endpoint caches synced");
    assert!(!since0.is_empty(), "{}", ctx());
    assert_eq!(forbidden(&since0), 0, "node0 after sync:\n{since0}");
    let since1 = after(&v1.log(), "acquired the lease");
    assert!(!since1.is_empty(), "{}", ctx());
    assert_eq!(forbidden(&since1), 0, "node1 after winning:\n{since1}");
}
