//! Which Services this node serves, pure: Services of type LoadBalancer (filtered by
//! namespace and `loadBalancerClass`), their addresses (annotation
//! `kube-vip.io/loadbalancerIPs`, then `status.loadBalancer.ingress`, then
//! `spec.loadBalancerIP`), and for `externalTrafficPolicy: Local` whether this node has a
//! ready endpoint (EndpointSlice discovery.k8s.io/v1, or core/v1 Endpoints where v1 is not
//! served). No API calls here; `watch.rs` feeds it store snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// kube-vip's annotation with the Service's address(es), comma separated.
pub const ANNOTATION_IPS: &str = "kube-vip.io/loadbalancerIPs";
/// The field manager vipr writes Service status as; status written by it is not an address
/// source (it only mirrors the annotation or spec it came from).
pub const FIELD_MANAGER: &str = "vipr";
/// EndpointSlice label naming the Service.
pub const SLICE_SERVICE_LABEL: &str = "kubernetes.io/service-name";

/// Which Services vipr serves (`svc_namespace`, `lb_class_only`, `lb_class_name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only Services whose loadBalancerClass is `class_name`.
    pub class_only: bool,
    /// vipr's loadBalancerClass.
    pub class_name: String,
}

/// Where a Service's address came from (status is written only from the first two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    /// `kube-vip.io/loadbalancerIPs`.
    Annotation,
    /// `spec.loadBalancerIP`.
    Spec,
    /// `status.loadBalancer.ingress` written by another controller (vipr's own status only
    /// mirrors an annotation or spec, so it never outranks a change of those).
    Status,
}

/// One Service vipr may serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceVip {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its VIPs.
    pub ips: Vec<IpAddr>,
    /// Where the addresses came from.
    pub source: AddressSource,
    /// `externalTrafficPolicy: Local`: serve only with a local ready endpoint.
    pub local_only: bool,
    /// This node has a ready (or, during termination, serving) endpoint.
    pub local_endpoint: bool,
    /// The ingress IPs currently in the Service's status.
    pub status_ips: Vec<IpAddr>,
}

impl ServiceVip {
    /// Whether this node advertises the Service (BGP mode).
    pub fn served_here(&self) -> bool {
        !self.local_only || self.local_endpoint
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

fn parse_ips(s: &str) -> Vec<IpAddr> {
    s.split(',').filter_map(|p| p.trim().parse().ok()).collect()
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

/// The Service's addresses in kube-vip's order of precedence: the annotation, then the status
/// (unless vipr wrote it), then `spec.loadBalancerIP`.
fn addresses(svc: &Service) -> Option<(Vec<IpAddr>, AddressSource)> {
    if let Some(a) = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_IPS))
    {
        let ips = parse_ips(a);
        if !ips.is_empty() {
            return Some((ips, AddressSource::Annotation));
        }
    }
    let status = status_ips(svc);
    if !status.is_empty() && !status_written_by_vipr(svc) {
        return Some((status, AddressSource::Status));
    }
    let spec = svc
        .spec
        .as_ref()?
        .load_balancer_ip
        .as_deref()
        .map(parse_ips)
        .unwrap_or_default();
    (!spec.is_empty()).then_some((spec, AddressSource::Spec))
}

/// Selected Services whose status vipr wrote but that no longer have an address (the
/// annotation or spec was removed): their ingress list must be cleared.
pub fn stale_status<'a>(
    svcs: impl IntoIterator<Item = &'a Service>,
    f: &Filter,
) -> Vec<(String, String)> {
    svcs.into_iter()
        .filter(|s| {
            selected(s, f)
                && addresses(s).is_none()
                && status_written_by_vipr(s)
                && !status_ips(s).is_empty()
        })
        .map(|s| {
            (
                s.metadata.namespace.clone().unwrap_or_default(),
                s.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect()
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

/// Whether the Service is one vipr serves at all.
pub fn selected(svc: &Service, f: &Filter) -> bool {
    let Some(spec) = &svc.spec else { return false };
    if spec.type_.as_deref() != Some("LoadBalancer") {
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

/// Local readiness of each Service (`namespace/name`) on `node`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LocalEndpoints {
    ready: BTreeSet<String>,
}

impl LocalEndpoints {
    /// From core/v1 Endpoints: a ready address whose nodeName is this node.
    pub fn from_endpoints<'a>(
        eps: impl IntoIterator<Item = &'a Endpoints>,
        node: &str,
    ) -> LocalEndpoints {
        let mut ready = BTreeSet::new();
        for ep in eps {
            let local = ep.subsets.iter().flatten().any(|s| {
                s.addresses
                    .iter()
                    .flatten()
                    .any(|a| a.node_name.as_deref() == Some(node))
            });
            if local {
                ready.insert(format!(
                    "{}/{}",
                    ep.metadata.namespace.as_deref().unwrap_or_default(),
                    ep.metadata.name.as_deref().unwrap_or_default()
                ));
            }
        }
        LocalEndpoints { ready }
    }

    /// From EndpointSlices: an endpoint on this node that is ready (absent means ready), or
    /// — so a rolling update never withdraws while a terminating pod still serves
    /// (kube-vip #1397) — serving while terminating.
    pub fn from_slices<'a>(
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        node: &str,
    ) -> LocalEndpoints {
        let mut ready = BTreeSet::new();
        for s in slices {
            let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SLICE_SERVICE_LABEL))
            else {
                continue;
            };
            let local = s.endpoints.iter().any(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                e.node_name.as_deref() == Some(node)
                    && (c.ready.unwrap_or(true)
                        || (c.serving.unwrap_or(false) && c.terminating.unwrap_or(false)))
            });
            if local {
                ready.insert(format!(
                    "{}/{}",
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    svc
                ));
            }
        }
        LocalEndpoints { ready }
    }

    fn has(&self, key: &str) -> bool {
        self.ready.contains(key)
    }
}

/// Every selected Service with addresses, in `namespace/name` order.
pub fn service_vips<'a>(
    svcs: impl IntoIterator<Item = &'a Service>,
    local: &LocalEndpoints,
    f: &Filter,
) -> Vec<ServiceVip> {
    let mut out: BTreeMap<String, ServiceVip> = BTreeMap::new();
    for svc in svcs {
        if !selected(svc, f) {
            continue;
        }
        let Some((ips, source)) = addresses(svc) else {
            continue;
        };
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let key = format!("{namespace}/{name}");
        let local_only = svc
            .spec
            .as_ref()
            .and_then(|s| s.external_traffic_policy.as_deref())
            == Some("Local");
        out.insert(
            key.clone(),
            ServiceVip {
                local_endpoint: local.has(&key),
                namespace,
                name,
                ips,
                source,
                local_only,
                status_ips: status_ips(svc),
            },
        );
    }
    out.into_values().collect()
}

/// The `status.loadBalancer.ingress` vipr should write, when it differs from what is there:
/// only for addresses requested by annotation or spec (vipr does no IPAM).
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
