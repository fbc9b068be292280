//! `vipr manifest rbac`: the ServiceAccount and the least API access the enabled modes need,
//! derived from what the daemon really calls (`kube/`, `lb/`):
//!
//! | setting | calls | rule |
//! |---|---|---|
//! | `svc_enable` | Service reflector, GET of a claim's holder, merge patch of the allocation annotation; status merge patch; EndpointSlice v1 reflector, or core/v1 Endpoints where discovery.k8s.io/v1 is not served (< 1.21); Events; address claims; the pool ConfigMap; a watch on its own Node (`metadata.name=`, the exclude-from-external-load-balancers label, `spec.unschedulable`) | services get/list/watch/patch, services/status patch, endpointslices and endpoints list/watch, events create, leases get/list/watch/create/update/delete in `vipr_claims_namespace`, configmaps get/list/watch of `vipr_pool_configmap`, nodes get/list/watch |
//! | ARP + `vip_leaderelection` | per Lease: get, create, replace (update), a watch on `metadata.name=` (list/watch) | leases create; get/list/watch/update on the named Leases (`vip_leasename`, `svc_leasename`) in their namespace (`cp_namespace` unless the setting says `namespace/name`) |
//! | ... + `svc_election` or `per_service_election_on_demand` | the same per Service (`kubevip-<namespace>.<service>`, in `cp_namespace`); a labelled list and a conditional delete of the Leases of deleted Services | leases get/list/watch/create/update/delete in `cp_namespace` (names unknown in advance), nowhere else |
//! | BGP + `vip_leaderelection` + `vipr_bgp_leader_only` | the control-plane Lease as in ARP mode | leases create; get/list/watch/update on `vip_leasename` in its namespace |
//! | `annotation` (BGP) | a watch on its own Node (`metadata.name=`) | nodes get/list/watch |
//! | `lb_enable` without `vipr_lb_backends` | control-plane Node reflector | nodes get/list/watch |
//! | `bgp_peers` with a `node_selector` (BGP, no `vipr_node_labels`) | a watch on its own Node (`metadata.name=`), its labels | nodes get/list/watch |
//! | `bgp_peers` with a `password_secret` (BGP) | a watch on each Secret (`metadata.name=`) | secrets get/list/watch on those names, in `cp_namespace` |
//! | `enable_node_labeling` | GET of its own Node, merge patch of its labels | nodes get/patch |
//! | BGP + `vipr_graceful_restart` | at SIGTERM, a GET of its own DaemonSet (`vipr_daemonset`) and of its own Node (does the new template run here?) | daemonsets get on that name, in its namespace; nodes get/list/watch |
//!
//! Rules go into Roles in the namespace they concern where one exists (`cp_namespace`,
//! `svc_namespace`), into one ClusterRole otherwise. API discovery (`/apis/...`, used to tell
//! whether EndpointSlice v1 is served) needs no rule: Kubernetes' `system:discovery` grants it
//! to every authenticated user.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{yaml, ManifestError, Options, NAMESPACE};
use crate::config::Mode;

/// One rule and why the daemon needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `None`: cluster-wide (ClusterRole); else a Role in this namespace.
    pub namespace: Option<String>,
    /// API group ("" for core).
    pub group: &'static str,
    /// Resource (or resource/subresource).
    pub resource: &'static str,
    /// Only these objects (empty: all).
    pub names: Vec<String>,
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// The setting that needs it.
    pub why: String,
}

fn grant(
    ns: Option<&String>,
    group: &'static str,
    resource: &'static str,
    names: Vec<String>,
    verbs: &'static [&'static str],
    why: impl Into<String>,
) -> Grant {
    Grant {
        namespace: ns.cloned(),
        group,
        resource,
        names,
        verbs,
        why: why.into(),
    }
}

/// The election Leases `names` in `ns`: create (which cannot be limited by name: the object
/// has none yet), and get/list/watch/update on those names.
fn lease_grants(g: &mut Vec<Grant>, ns: &String, names: Vec<String>) {
    g.push(grant(
        Some(ns),
        "coordination.k8s.io",
        "leases",
        vec![],
        &["create"],
        "vip_leaderelection: create the Lease",
    ));
    g.push(grant(
        Some(ns),
        "coordination.k8s.io",
        "leases",
        names,
        &["get", "list", "watch", "update"],
        "vip_leaderelection: hold, renew, watch and release the Lease",
    ));
}

/// Every grant the settings need, in a stable order.
pub fn grants(o: &Options) -> Vec<Grant> {
    let c = &o.cfg;
    let mut g = Vec::new();
    let svc_ns = c.services.filter.namespace.as_ref();
    if c.services.enabled {
        g.push(grant(
            svc_ns,
            "",
            "services",
            vec![],
            &["get", "list", "watch", "patch"],
            "svc_enable: Services of type LoadBalancer; the kube-vip.io/loadbalancerIPs annotation of the addresses vipr allocates; get: is the holder of a claim really gone",
        ));
        g.push(grant(
            svc_ns,
            "",
            "services/status",
            vec![],
            &["patch"],
            "svc_enable: status.loadBalancer.ingress of the Services served",
        ));
        g.push(grant(
            svc_ns,
            "discovery.k8s.io",
            "endpointslices",
            vec![],
            &["list", "watch"],
            "svc_enable: ready endpoints (a Service is announced only with one; externalTrafficPolicy: Local, on this node), Kubernetes 1.21+",
        ));
        g.push(grant(
            svc_ns,
            "",
            "endpoints",
            vec![],
            &["list", "watch"],
            "svc_enable: ready endpoints on servers without EndpointSlice v1 (< 1.21)",
        ));
        g.push(grant(
            svc_ns,
            "",
            "events",
            vec![],
            &["create"],
            "svc_enable: Events on Services (address allocated, refused, pending)",
        ));
        let claims_ns = Some(&c.services.claims_namespace);
        g.push(grant(
            claims_ns,
            "coordination.k8s.io",
            "leases",
            vec![],
            &["get", "list", "watch", "create", "update", "delete"],
            "svc_enable: address claims (Leases vipr-addr-*), the API server's arbitration between nodes allocating at once, and member Leases (vipr-node-*) that share writes out among the nodes",
        ));
        if let Some((ns, name)) = &c.services.pool_configmap {
            g.push(grant(
                Some(ns),
                "",
                "configmaps",
                vec![name.clone()],
                &["get", "list", "watch"],
                "vipr_pool_configmap: kube-vip-cloud-provider's address pools",
            ));
        }
    }
    if let (Mode::Bgp, Some(e)) = (c.node.mode, &c.arp.election) {
        if e.bgp_leader_only && c.control_plane.enabled {
            lease_grants(&mut g, &e.lease_namespace, vec![e.lease_name.clone()]);
        }
    }
    if let (Mode::Arp, Some(e)) = (c.node.mode, &c.arp.election) {
        let cp_ns = Some(&e.namespace);
        // The named Leases by namespace (`vip_leasename`, `svc_leasename` may name one).
        let mut named: BTreeMap<&String, Vec<String>> = BTreeMap::new();
        if c.control_plane.enabled && e.control_plane {
            named
                .entry(&e.lease_namespace)
                .or_default()
                .push(e.lease_name.clone());
        }
        if c.services.enabled && !e.per_service {
            named
                .entry(&e.services_lease_namespace)
                .or_default()
                .push(e.services_lease_name.clone());
        }
        if c.services.enabled && (e.per_service || e.on_demand) {
            // Per-Service Leases have names only known at run time: every Lease of the one
            // namespace, which then covers the named Leases there too.
            named.remove(&e.namespace);
            g.push(grant(
                cp_ns,
                "coordination.k8s.io",
                "leases",
                vec![],
                &["get", "list", "watch", "create", "update", "delete"],
                "svc_election / per_service_election_on_demand: one Lease per Service (kubevip-<namespace>.<service>), here beside the control-plane Lease, deleted with its Service",
            ));
        }
        for (ns, names) in named {
            lease_grants(&mut g, ns, names);
        }
    }
    let annotations = c.node.mode == Mode::Bgp
        && matches!(c.peer_source, crate::config::PeerSource::Annotations { .. });
    let lb_nodes = c.lb.enabled && c.lb.backends.is_empty();
    let why: Vec<&'static str> = [
        (
            c.services.enabled,
            "svc_enable: this node's label node.kubernetes.io/exclude-from-external-load-balancers and whether it is cordoned",
        ),
        (
            annotations,
            "annotation: BGP peers from this node's annotations",
        ),
        (
            lb_nodes,
            "lb_enable: control-plane Nodes as load-balancer backends",
        ),
        (
            c.node.mode == Mode::Bgp && c.bgp.node_labels.is_none() && c.bgp.has_selectors(),
            "bgp_peers node_selector: this node's labels",
        ),
        (
            c.node.mode == Mode::Bgp && c.bgp.graceful_restart(),
            "vipr_graceful_restart: at SIGTERM, whether the DaemonSet's new template still runs on this node (labels, taints)",
        ),
    ]
    .into_iter()
    .filter_map(|(on, why)| on.then_some(why))
    .collect();
    if !why.is_empty() {
        g.push(grant(
            None,
            "",
            "nodes",
            vec![],
            &["get", "list", "watch"],
            why.join("; "),
        ));
    }
    // Peers' passwords in Secrets: only those Secrets, by name, in their namespace.
    let mut secrets: BTreeMap<&String, Vec<String>> = BTreeMap::new();
    if c.node.mode == Mode::Bgp {
        for r in c.bgp.password_secrets() {
            let names = secrets.entry(&r.namespace).or_default();
            if !names.contains(&r.name) {
                names.push(r.name.clone());
            }
        }
    }
    for (ns, names) in secrets {
        g.push(grant(
            Some(ns),
            "",
            "secrets",
            names,
            &["get", "list", "watch"],
            "bgp_peers password_secret: the Secrets holding peers' TCP MD5 passwords (a watch on metadata.name=)",
        ));
    }
    if c.node.mode == Mode::Bgp && c.bgp.graceful_restart() {
        g.push(grant(
            Some(&NAMESPACE.to_string()),
            "apps",
            "daemonsets",
            vec![o.flags.name.clone()],
            &["get"],
            "vipr_graceful_restart: at SIGTERM, its own DaemonSet's template generation (a rolling update restarts in place)",
        ));
    }
    if c.node.node_labeling {
        g.push(grant(
            None,
            "",
            "nodes",
            vec![],
            &["get", "patch"],
            "enable_node_labeling: kube-vip's labels (kube-vip.io/has-ip, service-provided.kube-vip.io/*) on this node's Node",
        ));
    }
    g
}

/// Header lines: what is granted and why, or that nothing is.
pub fn notes(o: &Options) -> Vec<String> {
    let g = grants(o);
    if g.is_empty() {
        return vec![
            "These settings need no Kubernetes API access: only the ServiceAccount.".into(),
        ];
    }
    let mut n = vec!["Least privilege for these settings:".to_string()];
    for x in g {
        let scope = x.namespace.as_deref().unwrap_or("cluster-wide");
        let group = if x.group.is_empty() { "core" } else { x.group };
        let names = if x.names.is_empty() {
            String::new()
        } else {
            format!(" {}", x.names.join(","))
        };
        n.push(format!(
            "  {} {}/{}{} ({scope}) - {}",
            x.verbs.join(","),
            group,
            x.resource,
            names,
            x.why
        ));
    }
    n
}

fn rules(grants: &[&Grant]) -> Vec<PolicyRule> {
    grants
        .iter()
        .map(|g| PolicyRule {
            api_groups: Some(vec![g.group.to_string()]),
            resources: Some(vec![g.resource.to_string()]),
            resource_names: (!g.names.is_empty()).then(|| g.names.clone()),
            verbs: g.verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        })
        .collect()
}

fn meta(o: &Options, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(o.flags.name.clone()),
        namespace: namespace.map(str::to_string),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            o.flags.name.clone(),
        )])),
        ..Default::default()
    }
}

fn subjects(o: &Options) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".into(),
        name: o.flags.name.clone(),
        namespace: Some(NAMESPACE.into()),
        ..Default::default()
    }]
}

/// The objects as YAML documents: ServiceAccount, then the ClusterRole and its binding (if
/// any rule is cluster-wide), then a Role and RoleBinding per namespace.
pub fn objects(o: &Options) -> Result<Vec<String>, ManifestError> {
    let all = grants(o);
    let mut docs = vec![yaml(&ServiceAccount {
        metadata: meta(o, Some(NAMESPACE)),
        ..Default::default()
    })?];
    let mut by_ns: BTreeMap<Option<&str>, Vec<&Grant>> = BTreeMap::new();
    for g in &all {
        by_ns.entry(g.namespace.as_deref()).or_default().push(g);
    }
    for (ns, grants) in by_ns {
        let role_ref = |kind: &str| RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: kind.into(),
            name: o.flags.name.clone(),
        };
        match ns {
            None => {
                docs.push(yaml(&ClusterRole {
                    metadata: meta(o, None),
                    rules: Some(rules(&grants)),
                    ..Default::default()
                })?);
                docs.push(yaml(&ClusterRoleBinding {
                    metadata: meta(o, None),
                    role_ref: role_ref("ClusterRole"),
                    subjects: Some(subjects(o)),
                })?);
            }
            Some(ns) => {
                docs.push(yaml(&Role {
                    metadata: meta(o, Some(ns)),
                    rules: Some(rules(&grants)),
                })?);
                docs.push(yaml(&RoleBinding {
                    metadata: meta(o, Some(ns)),
                    role_ref: role_ref("Role"),
                    subjects: Some(subjects(o)),
                })?);
            }
        }
    }
    Ok(docs)
}
