//! Telling a rolling update of vipr's own DaemonSet from any other stop, at SIGTERM: during
//! a rolling update the next vipr starts on this node seconds later, so with graceful
//! restart on the routes and VIPs stay (a restart in place, [`crate::restart`]); at any
//! other stop (`kubectl delete pod` with the DaemonSet unchanged, the DaemonSet deleted,
//! the node shutting down) they are withdrawn at once.
//!
//! The DaemonSet controller's own test (Kubernetes `pkg/controller/daemon/util`
//! `IsPodUpdated`): a pod is of the current template when its `pod-template-generation`
//! label equals the DaemonSet's `deprecated.daemonset.template.generation` annotation,
//! which the API server raises on every change of the template and on nothing else. A pod
//! of an older template that is being stopped is being replaced by a rolling update (or
//! by hand, for `updateStrategy: OnDelete`): either way the next vipr of the new template
//! comes to this node. One GET of the DaemonSet by name (RBAC: `get` of that one name);
//! when the API server does not answer in time, it is a real shutdown.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::{Api, Client};

use crate::config::DaemonSetRef;

/// The DaemonSet's annotation with its template generation (Kubernetes
/// `apps/v1` `DeprecatedTemplateGeneration`).
pub const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// Whether this pod (of template generation `mine`) is outdated by `ds`: the DaemonSet is
/// not being deleted and its template generation is another.
pub fn outdated(ds: &DaemonSet, mine: &str) -> Option<String> {
    if ds.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let current = ds.metadata.annotations.as_ref()?.get(TEMPLATE_GENERATION)?;
    (current != mine).then(|| current.clone())
}

/// At SIGTERM: the DaemonSet's current template generation when this pod is being replaced
/// by a newer template; `None` for any other stop, or when the DaemonSet cannot be read
/// within `within` (said in the log: a real shutdown is the safe side).
pub async fn replaced_by(client: Client, ds: &DaemonSetRef, within: Duration) -> Option<String> {
    let api: Api<DaemonSet> = Api::namespaced(client, &ds.namespace);
    let why = match tokio::time::timeout(within, api.get_opt(&ds.name)).await {
        Ok(Ok(Some(d))) => return outdated(&d, &ds.template_generation),
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => format!("cannot read the DaemonSet: {e}"),
        Err(_) => "the DaemonSet was not read in time".to_string(),
    };
    tracing::warn!(daemonset = %format!("{}/{}", ds.namespace, ds.name),
        "SIGTERM: {why}; shutting down (no restart in place)");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(generation: Option<&str>, deleting: bool) -> DaemonSet {
        let mut v = serde_json::json!({"metadata": {"name": "vipr", "namespace": "kube-system"}});
        if let Some(g) = generation {
            v["metadata"]["annotations"] = serde_json::json!({ TEMPLATE_GENERATION: g });
        }
        if deleting {
            v["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z".into();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_a_pod_of_an_older_template_of_a_live_daemonset_is_being_replaced() {
        // A rolling update: the template moved on from this pod's.
        assert_eq!(outdated(&ds(Some("3"), false), "2"), Some("3".into()));
        // kubectl delete pod with the DaemonSet unchanged: a real stop.
        assert_eq!(outdated(&ds(Some("2"), false), "2"), None);
        // The DaemonSet being deleted: no vipr comes back.
        assert_eq!(outdated(&ds(Some("3"), true), "2"), None);
        // A DaemonSet without the annotation (not written by an API server): unknown.
        assert_eq!(outdated(&ds(None, false), "2"), None);
    }
}
