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
//! comes to this node, unless the new template no longer runs on it (a changed
//! `nodeSelector`, node affinity or tolerations, [`super::placement`]): then the controller
//! only deletes this pod, nothing comes back, and it is a real shutdown. One GET of the
//! DaemonSet by name (RBAC: `get` of that one name) and one of this node's Node; when the
//! API server does not answer in time, it is a real shutdown.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use tokio::time::{timeout_at, Instant};

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
/// by a newer template that runs on `node` too; `None` for any other stop, or when the
/// DaemonSet or the Node cannot be read within `within` (said in the log: a real shutdown
/// is the safe side).
pub async fn replaced_by(
    client: Client,
    ds: &DaemonSetRef,
    node: &str,
    within: Duration,
) -> Option<String> {
    let deadline = Instant::now() + within;
    let name = format!("{}/{}", ds.namespace, ds.name);
    let shutdown = |why: String| {
        tracing::warn!(daemonset = %name, "SIGTERM: {why}; shutting down (no restart in place)");
        None
    };
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), &ds.namespace);
    let d = match timeout_at(deadline, api.get_opt(&ds.name)).await {
        Ok(Ok(Some(d))) => d,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => return shutdown(format!("cannot read the DaemonSet: {e}")),
        Err(_) => return shutdown("the DaemonSet was not read in time".into()),
    };
    let generation = outdated(&d, &ds.template_generation)?;
    let n = match timeout_at(deadline, Api::<Node>::all(client).get(node)).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return shutdown(format!("cannot read Node {node}: {e}")),
        Err(_) => return shutdown(format!("Node {node} was not read in time")),
    };
    let Some(spec) = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return shutdown("the DaemonSet has no pod template".into());
    };
    match super::placement::runs_on(spec, &n) {
        Ok(()) => Some(generation),
        Err(why) => {
            tracing::info!(daemonset = %name, template_generation = %generation,
                "SIGTERM: the DaemonSet's new template does not run on this node ({why}); shutting down");
            None
        }
    }
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
