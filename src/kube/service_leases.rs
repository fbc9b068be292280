//! `svc_election`'s per-Service Leases: where they live and when they go.
//!
//! Each Lease is in `cp_namespace` with the control-plane Lease (so vipr writes Leases in one
//! namespace, not in every namespace that has a Service), named `kubevip-<namespace>.<name>`
//! (neither part can contain a dot, so two Services never share a Lease) and labelled with
//! its Service's namespace and name.
//!
//! A Lease goes with its Service: [`sweep`] lists the labelled Leases, and deletes each one
//! whose Service is not in this node's view and, asked with a GET (not a cache), no longer
//! exists, conditionally on the resourceVersion it listed (a Lease renewed meanwhile stays).
//! Every node sweeps when Services leave its view, once its caches are synced (Leases of
//! Services deleted while vipr was down), and every [`PERIOD`]; a conflict retries soon.
//! [`stale`] is the pure part.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ArpSettings;
use crate::model::Services;

/// Label with the Service's namespace.
pub const LABEL_NAMESPACE: &str = "vipr.io/service-namespace";
/// Label with the Service's name (the sweep selects on it).
pub const LABEL_NAME: &str = "vipr.io/service-name";
/// Sweep at least this often (Services that left the view while the API server was away).
pub const PERIOD: Duration = Duration::from_secs(600);
/// Wait this long after Services leave the view, so their holders release first.
const SETTLE: Duration = Duration::from_secs(1);
/// Sweep again this soon after a conflict or an API error.
const RETRY: Duration = Duration::from_secs(3);

/// The Lease name of Service `namespace/name`.
pub fn lease_name(namespace: &str, name: &str) -> String {
    format!("kubevip-{namespace}.{name}")
}

/// The labels of that Lease.
pub fn labels(namespace: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            "vipr".to_string(),
        ),
        (LABEL_NAMESPACE.to_string(), namespace.to_string()),
        (LABEL_NAME.to_string(), name.to_string()),
    ])
}

/// A listed per-Service Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The Lease's name.
    pub lease: String,
    /// Its resourceVersion when listed.
    pub resource_version: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
}

impl Listed {
    fn from_meta(m: &ObjectMeta) -> Option<Listed> {
        let labels = m.labels.as_ref()?;
        Some(Listed {
            lease: m.name.clone()?,
            resource_version: m.resource_version.clone()?,
            namespace: labels.get(LABEL_NAMESPACE)?.clone(),
            name: labels.get(LABEL_NAME)?.clone(),
        })
    }
}

/// The Leases whose Service this node does not see: to be checked with a GET (the view has
/// only the Services vipr serves, and may lag).
pub fn stale<'a>(listed: &'a [Listed], view: &Services) -> Vec<&'a Listed> {
    listed
        .iter()
        .filter(|l| !view.contains_key(format!("{}/{}", l.namespace, l.name).as_str()))
        .collect()
}

/// One sweep of `namespace`; `true` when it should run again soon (a conflict or an error).
async fn sweep_once(client: &Client, namespace: &str, view: &Services) -> bool {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let listed = match leases
        .list_metadata(&ListParams::default().labels(LABEL_NAME))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            warn!(namespace, error = %e, "per-Service Leases: list failed; retrying");
            return true;
        }
    };
    let listed: Vec<Listed> = listed
        .items
        .iter()
        .filter_map(|m| Listed::from_meta(&m.metadata))
        .collect();
    let mut again = false;
    for l in stale(&listed, view) {
        let services: Api<Service> = Api::namespaced(client.clone(), &l.namespace);
        match services.get_opt(&l.name).await {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => {
                debug!(service = %format!("{}/{}", l.namespace, l.name), error = %e, "per-Service Lease kept: cannot tell whether its Service exists");
                continue;
            }
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(l.resource_version.clone()),
                uid: None,
            }),
            ..Default::default()
        };
        match leases.delete(&l.lease, &dp).await {
            Ok(_) => info!(lease = %l.lease, namespace, "Service gone: its Lease deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(kube::Error::Api(s)) if s.code == 409 => again = true,
            Err(e) => {
                warn!(lease = %l.lease, error = %e, "could not delete the Lease of a deleted Service; retrying");
                again = true;
            }
        }
    }
    again
}

/// Sweeps per-Service Leases while `svc_election` is on, until `cancel`.
pub async fn sweep(
    client: Client,
    mut arp: watch::Receiver<Arc<ArpSettings>>,
    mut services: watch::Receiver<Services>,
    cancel: CancellationToken,
) {
    // The first view arrives once the caches are synced.
    tokio::select! {
        _ = cancel.cancelled() => return,
        r = services.changed() => if r.is_err() { return },
    }
    let mut seen = services.borrow_and_update().clone();
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            Ok(()) = arp.changed() => {
                next = next.min(tokio::time::Instant::now());
                continue;
            }
            Ok(()) = services.changed() => {
                let now = services.borrow_and_update().clone();
                if seen.keys().any(|k| !now.contains_key(k)) {
                    next = next.min(tokio::time::Instant::now() + SETTLE);
                }
                seen = now;
                continue;
            }
        }
        let election = arp.borrow().election.clone();
        let view = services.borrow().clone();
        let again = match election.filter(|e| e.per_service || e.on_demand) {
            Some(e) => sweep_once(&client, &e.namespace, &view).await,
            None => false,
        };
        let wait = if again { RETRY } else { PERIOD };
        next = tokio::time::Instant::now() + wait;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AddressSource, ServiceVip};

    fn svc(ns: &str, name: &str) -> (String, Arc<ServiceVip>) {
        (
            format!("{ns}/{name}"),
            Arc::new(ServiceVip {
                namespace: ns.into(),
                name: name.into(),
                ips: vec![],
                refused: vec![],
                source: AddressSource::Annotation,
                local_only: false,
                local_endpoint: false,
                endpoint_anywhere: false,
                without_endpoints: false,
                node_excluded: None,
                status_ips: vec![],
                force_election: false,
                interface: None,
                bgp_attributes: None,
            }),
        )
    }

    fn listed(ns: &str, name: &str) -> Listed {
        let m = ObjectMeta {
            name: Some(lease_name(ns, name)),
            resource_version: Some("7".into()),
            labels: Some(labels(ns, name)),
            ..Default::default()
        };
        Listed::from_meta(&m).expect("a per-Service Lease")
    }

    #[test]
    fn names_never_collide_across_namespaces() {
        assert_eq!(lease_name("a-b", "c"), "kubevip-a-b.c");
        assert_ne!(lease_name("a-b", "c"), lease_name("a", "b-c"));
    }

    #[test]
    fn only_leases_of_services_out_of_view_are_checked() {
        let view: Services = [svc("default", "web")].into_iter().collect();
        let all = vec![listed("default", "web"), listed("apps", "web")];
        let s = stale(&all, &view);
        assert_eq!(s, vec![&all[1]]);
        assert_eq!(
            (s[0].lease.as_str(), s[0].resource_version.as_str()),
            ("kubevip-apps.web", "7")
        );
        // An unlabelled Lease (the control-plane one, kube-vip's) is never a candidate.
        let bare = ObjectMeta {
            name: Some("plndr-cp-lock".into()),
            resource_version: Some("1".into()),
            ..Default::default()
        };
        assert!(Listed::from_meta(&bare).is_none());
    }
}
