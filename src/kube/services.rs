//! Which Services this node serves, pure: each Service object is read once, as it arrives,
//! into a compact [`SvcRecord`] (type LoadBalancer, filtered by namespace and
//! `loadBalancerClass`, its addresses: annotation `kube-vip.io/loadbalancerIPs`, then
//! `status.loadBalancer.ingress`, then `spec.loadBalancerIP`), and each endpoint object into
//! two bits ([`Ready`]): whether the Service has a ready endpoint in it at all, and whether
//! one is on this node (EndpointSlice discovery.k8s.io/v1, or core/v1 Endpoints where v1 is
//! not served). Nothing else of the objects is kept. No API calls here; `watch.rs` feeds it
//! the watch events.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// kube-vip's annotation with the Service's address(es), comma separated.
pub const ANNOTATION_IPS: &str = "kube-vip.io/loadbalancerIPs";
/// A Lease of its own for this Service with `per_service_election_on_demand`
/// (kube-vip v1.2.3 `pkg/kubevip/annotations.go` `ForcePerServiceElection`).
pub const ANNOTATION_FORCE_ELECTION: &str = "kube-vip.io/forcePerServiceElection";
/// kube-vip's per-Service interface (v1.2.3 `pkg/kubevip/annotations.go` `ServiceInterface`).
pub const ANNOTATION_INTERFACE: &str = "kube-vip.io/serviceInterface";
/// The field manager vipr writes Service status as; status written by it is not an address
/// source (it only mirrors the annotation or spec it came from).
pub const FIELD_MANAGER: &str = "vipr";
/// Kubernetes' well-known Node label (`k8s.io/api/core/v1` `LabelNodeExcludeBalancers`):
/// present, with any value, the node takes no part in external load balancers.
pub const LABEL_EXCLUDE_LB: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// EndpointSlice label naming the Service.
pub const SLICE_SERVICE_LABEL: &str = "kubernetes.io/service-name";

use super::annotations;
pub use super::cache::Ready;
pub use crate::config::ServiceFilter as Filter;
use crate::ipam::plan::{Decision, Families, Svc};
use crate::ipam::Holder;
pub use crate::model::{AddressSource, ServiceVip};

/// vipr's record that it allocated the addresses in `kube-vip.io/loadbalancerIPs` (the pool's
/// name): that annotation is then vipr's to remove.
pub const ANNOTATION_ALLOCATED: &str = "vipr.io/allocated-from";
/// MetalLB's sharing keys (`metallb.io/` wins over `metallb.universe.tf/`).
pub const ANNOTATIONS_SHARING: [&str; 2] = [
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
];

/// Each comma-separated item: an address, or the text that is not one.
fn parse_ips(s: &str) -> Vec<Result<IpAddr, String>> {
    let mut v: Vec<_> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().map_err(|_| p.to_string()))
        .collect();
    v.shrink_to_fit(); // kept for the Service's life (a filtered collect reserves four)
    v
}

/// Whether vipr's field manager owns the Service's status (it wrote the ingress list).
pub fn status_written_by_vipr(svc: &Service) -> bool {
    svc.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER)
            && m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.get("f:status").is_some())
    })
}

fn annotation<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// The addresses a Service asks for, in kube-vip's order of precedence: the annotation,
/// then the status (unless vipr wrote it), then `spec.loadBalancerIP`.
fn requested(svc: &Service) -> (Vec<Result<IpAddr, String>>, AddressSource) {
    if let Some(a) = annotation(svc, ANNOTATION_IPS) {
        let ips = if annotation(svc, ANNOTATION_ALLOCATED).is_some() {
            (parse_ips(a), AddressSource::Allocated)
        } else {
            (parse_ips(a), AddressSource::Annotation)
        };
        if !ips.0.is_empty() {
            return ips;
        }
    }
    let status = status_ips(svc);
    if !status.is_empty() && !status_written_by_vipr(svc) {
        return (status.into_iter().map(Ok).collect(), AddressSource::Status);
    }
    let spec = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .map(parse_ips)
        .unwrap_or_default();
    (spec, AddressSource::Spec)
}

fn status_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ing| {
            ing.iter()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn is_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// Whether the Service is one vipr serves at all: a LoadBalancer of this node's namespace
/// and class, not `kube-vip.io/ignore: "true"`.
pub fn selected(svc: &Service, f: &Filter) -> bool {
    let Some(spec) = &svc.spec else { return false };
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return false;
    }
    if annotations::ignored(svc.metadata.annotations.as_ref()) {
        return false;
    }
    if let Some(ns) = &f.namespace {
        if svc.metadata.namespace.as_deref() != Some(ns.as_str()) {
            return false;
        }
    }
    match spec.load_balancer_class.as_deref() {
        Some(c) => c == f.class_name,
        None => !f.class_only,
    }
}

/// The families a Service needs (`spec.ipFamilyPolicy`, `spec.ipFamilies`).
fn families(svc: &Service) -> Families {
    let spec = svc.spec.as_ref();
    let primary = spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .map(|f| f != "IPv6");
    match spec.and_then(|s| s.ip_family_policy.as_deref()) {
        Some("PreferDualStack") => Families::PreferDual(primary.unwrap_or(true)),
        Some("RequireDualStack") => Families::RequireDual(primary.unwrap_or(true)),
        _ => Families::Single(primary),
    }
}

/// What vipr keeps of a Service: the allocator's view and what serving it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcRecord {
    /// The allocator's view (who it is, what it asks for), shared with the allocator.
    pub svc: std::sync::Arc<Svc>,
    /// Where the addresses it asks for come from.
    pub source: AddressSource,
    /// `externalTrafficPolicy: Local`.
    pub local_only: bool,
    /// Announced without endpoints ([`annotations::ALLOW_WITHOUT_ENDPOINTS`], `Cluster` only).
    pub without_endpoints: bool,
    /// kube-vip annotations it carries that vipr does not implement ([`annotations::unsupported`]).
    pub unsupported: u64,
    /// The ingress addresses in its status.
    pub status_ips: Vec<IpAddr>,
    /// vipr wrote that status.
    pub status_by_vipr: bool,
    /// `kube-vip.io/forcePerServiceElection: "true"`.
    pub force_election: bool,
    /// Its resourceVersion (a status write names the version it was computed from).
    pub resource_version: String,
    /// `kube-vip.io/serviceInterface`, as written (checked by the reconciler).
    pub interface: Option<String>,
    /// `vipr.io/bgp-attributes`, as written (checked against its pool).
    pub bgp_attributes: Option<Vec<String>>,
}

/// What vipr keeps of a Service; `None` without a namespace, name and UID.
pub fn record(svc: &Service, f: &Filter) -> Option<SvcRecord> {
    let m = &svc.metadata;
    let holder = Holder {
        namespace: m.namespace.as_deref()?.into(),
        name: m.name.as_deref()?.into(),
        uid: m.uid.as_deref()?.into(),
    };
    let spec = svc.spec.as_ref();
    let local_only = spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
    let backend_key = if local_only {
        spec.and_then(|s| s.selector.as_ref())
            .map(|sel| {
                sel.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    } else {
        String::new()
    };
    let (requested, source) = requested(svc);
    let mut ports: Vec<(String, i32)> = spec
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
        .collect();
    ports.shrink_to_fit();
    Some(SvcRecord {
        svc: std::sync::Arc::new(Svc {
            holder,
            load_balancer: is_load_balancer(svc),
            selected: selected(svc, f),
            requested,
            families: families(svc),
            ports,
            sharing_key: ANNOTATIONS_SHARING
                .iter()
                .find_map(|k| annotation(svc, k))
                .map(str::to_string),
            backend_key,
            allocated_from: annotation(svc, ANNOTATION_ALLOCATED).map(str::to_string),
            created: m
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        }),
        source,
        local_only,
        without_endpoints: !local_only
            && annotations::allow_without_endpoints(svc.metadata.annotations.as_ref()),
        unsupported: annotations::unsupported(svc.metadata.annotations.as_ref()),
        status_ips: status_ips(svc),
        status_by_vipr: status_written_by_vipr(svc),
        // kube-vip v1.2.3 compares with "true" exactly (`pkg/services/processor.go` line 103).
        force_election: annotation(svc, ANNOTATION_FORCE_ELECTION) == Some("true"),
        resource_version: m.resource_version.clone().unwrap_or_default(),
        interface: annotation(svc, ANNOTATION_INTERFACE)
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_string),
        bgp_attributes: annotation(svc, crate::route_attrs::ANNOTATION)
            .and_then(crate::route_attrs::parse_annotation),
    })
}

/// What core/v1 Endpoints say: `None` without a ready address anywhere (`addresses`, as
/// kube-vip v1.2.3's `providers/endpoints.go` reads them; `notReadyAddresses` do not count).
pub fn endpoints_ready(ep: &Endpoints, node: &str) -> Option<Ready> {
    let mut ready = ep
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .peekable();
    ready.peek()?;
    let here = ready.any(|a| a.node_name.as_deref() == Some(node));
    let m = &ep.metadata;
    Some(Ready {
        service: format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default()
        )
        .into(),
        here,
    })
}

/// What an EndpointSlice says: its Service (`namespace/name`), `None` without an endpoint
/// that is ready (absent means ready) or — so a rolling update never withdraws while a
/// terminating pod still serves (kube-vip #1397) — serving while terminating, the
/// endpoints kube-proxy sends traffic to. kube-vip v1.2.3 counts, for `Cluster`, every
/// address of the slice it saw last per family whatever its conditions
/// (`providers/endpointslices.go`, `GetAllEndpoints`), and for `Local` the serving ones on
/// its node (`GetLocalEndpoints`); vipr counts serving endpoints of every slice for both,
/// so a Service whose pods are all unready is not announced to black-hole traffic.
pub fn slice_ready(s: &EndpointSlice, node: &str) -> Option<Ready> {
    let svc = s.metadata.labels.as_ref()?.get(SLICE_SERVICE_LABEL)?;
    let serving = |e: &&k8s_openapi::api::discovery::v1::Endpoint| {
        let c = e.conditions.as_ref();
        let ready = c.and_then(|c| c.ready).unwrap_or(true);
        let serving = c.and_then(|c| c.serving).unwrap_or(false);
        let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
        ready || (serving && terminating)
    };
    let mut ready = s.endpoints.iter().filter(serving).peekable();
    ready.peek()?;
    let here = ready.any(|e| e.node_name.as_deref() == Some(node));
    Some(Ready {
        service: format!(
            "{}/{}",
            s.metadata.namespace.as_deref().unwrap_or_default(),
            svc
        )
        .into(),
        here,
    })
}

/// The Service as this node may serve it, as the allocator decided: `None` when it has no
/// address served or refused.
pub fn service_vip(
    r: &SvcRecord,
    d: &Decision,
    local_endpoint: bool,
    endpoint_anywhere: bool,
    node_excluded: Option<crate::model::Exclusion>,
) -> Option<ServiceVip> {
    if d.served.is_empty() && d.refused.is_empty() {
        return None;
    }
    Some(ServiceVip {
        namespace: r.svc.holder.namespace.clone(),
        name: r.svc.holder.name.clone(),
        ips: d.served.clone(),
        refused: d.refused.clone(),
        source: if d.allocated {
            AddressSource::Allocated
        } else {
            r.source
        },
        local_only: r.local_only,
        local_endpoint,
        endpoint_anywhere,
        without_endpoints: r.without_endpoints,
        node_excluded,
        status_ips: r.status_ips.clone(),
        force_election: r.force_election,
        interface: r.interface.clone(),
        bgp_attributes: r.bgp_attributes.clone(),
    })
}

/// The status patch a Service calls for, if any: its served addresses where they differ
/// (and this node may serve it), or an empty ingress list where vipr's own status outlived
/// the address (the annotation or spec was removed, or the address refused).
pub fn status_change(
    r: &SvcRecord,
    vip: Option<&ServiceVip>,
    d: Option<&Decision>,
) -> Option<serde_json::Value> {
    if let Some(p) = vip.filter(|v| v.backends().is_ok()).and_then(status_patch) {
        return Some(p);
    }
    let served = d.is_some_and(|d| !d.served.is_empty());
    (r.svc.selected && r.status_by_vipr && !r.status_ips.is_empty() && !served)
        .then(|| serde_json::json!({ "status": { "loadBalancer": { "ingress": [] } } }))
}

/// The `status.loadBalancer.ingress` vipr should write, when it differs from what is there:
/// for addresses requested by annotation or spec, or allocated by vipr (never for another
/// controller's status).
pub fn status_patch(v: &ServiceVip) -> Option<serde_json::Value> {
    if v.source == AddressSource::Status || v.status_ips == v.ips {
        return None;
    }
    let ingress: Vec<serde_json::Value> = v
        .ips
        .iter()
        .map(|ip| serde_json::json!({ "ip": ip.to_string() }))
        .collect();
    Some(serde_json::json!({ "status": { "loadBalancer": { "ingress": ingress } } }))
}

#[cfg(test)]
mod tests;
