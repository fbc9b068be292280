//! `enable_node_labeling`: this node's Node object carries kube-vip v1.2.3's labels for
//! the VIPs it serves (`pkg/kubevip/labels.go`):
//!
//! - `kube-vip.io/has-ip=<address>` while it serves the control-plane VIP (kube-vip adds it
//!   in `pkg/cluster/clusterLeaderElection.go` `OnStartedLeading`, removes it in
//!   `OnStoppedLeading`);
//! - `service-provided.kube-vip.io/<service>.<namespace>=<addresses>` while it serves that
//!   Service (`pkg/services/services.go`: added in `addService`, removed in
//!   `deleteService`; `generateLabelsFromService`).
//!
//! Values as kube-vip's `utils.SanitizeIPForLabel` writes an address: IPv4 as is, IPv6 as
//! the 32 hex digits of its 16 bytes. kube-vip joins several addresses with `,`, which the
//! API server refuses in a label value (so kube-vip's patch fails for a dual-stack Service);
//! vipr joins them with `_`. A label whose key or value Kubernetes would refuse (a name part
//! or value over 63 characters) is left out, said once. The labels follow the reconciler's
//! view of what is served (level-triggered: the labels vipr wrote are diffed against those
//! wanted); at shutdown, and at start for a previous run's leftovers, vipr removes its own.
//! The keys are fixed prefixes: a Service's name can never name another label.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::model::VipSource;
use crate::reconciler::VipStates;

/// kube-vip's label of the node that holds the control-plane VIP.
pub const HAS_IP: &str = "kube-vip.io/has-ip";
/// kube-vip's prefix of the labels of the Services a node serves.
pub const SERVICE_PROVIDED: &str = "service-provided.kube-vip.io";

/// Whether a label key is one of kube-vip's (vipr's to remove).
pub fn is_kube_vip_label(key: &str) -> bool {
    key == HAS_IP
        || key
            .strip_prefix(SERVICE_PROVIDED)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// An address as kube-vip's `utils.SanitizeIPForLabel` writes it.
pub fn sanitize(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6.octets().iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Kubernetes' rule for a label value, and for the name part of a key: at most 63
/// characters of `[A-Za-z0-9_.-]`, alphanumeric at both ends (empty allowed for a value).
fn valid_label_text(s: &str, empty_ok: bool) -> bool {
    if s.is_empty() {
        return empty_ok;
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && alnum(s.chars().next())
        && alnum(s.chars().last())
}

/// The labels wanted for what the reconciler serves (a VIP on the node, not held back),
/// and the ones left out because Kubernetes would refuse them.
pub fn desired(states: &VipStates) -> (BTreeMap<String, String>, Vec<String>) {
    let mut by_key: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    for (ip, st) in states.iter() {
        if st.held_back.is_some() || st.interface.is_none() {
            continue;
        }
        for src in &st.sources {
            let key = match src {
                VipSource::ControlPlane => HAS_IP.to_string(),
                VipSource::Service { namespace, name } => {
                    format!("{SERVICE_PROVIDED}/{name}.{namespace}")
                }
                VipSource::Static => continue,
            };
            by_key.entry(key).or_default().insert(*ip);
        }
    }
    let mut out = BTreeMap::new();
    let mut refused = Vec::new();
    for (key, ips) in by_key {
        let value = ips.into_iter().map(sanitize).collect::<Vec<_>>().join("_");
        let name = key.rsplit_once('/').map_or(key.as_str(), |(_, n)| n);
        if valid_label_text(name, false) && valid_label_text(&value, true) {
            out.insert(key, value);
        } else {
            refused.push(key);
        }
    }
    (out, refused)
}

/// The merge patch from the labels vipr wrote to those wanted (`None`: nothing to do).
pub fn patch(
    applied: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Option<serde_json::Value> {
    let mut labels = serde_json::Map::new();
    for (k, v) in want {
        if applied.get(k) != Some(v) {
            labels.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    for k in applied.keys().filter(|k| !want.contains_key(*k)) {
        labels.insert(k.clone(), serde_json::Value::Null);
    }
    (!labels.is_empty()).then(|| serde_json::json!({"metadata": {"labels": labels}}))
}

/// How long a failed patch waits before it is tried again.
const RETRY: Duration = Duration::from_secs(5);
/// How long the removal at shutdown may take.
const SHUTDOWN: Duration = Duration::from_secs(2);

async fn send(api: &Api<Node>, node: &str, p: &serde_json::Value) -> Result<(), kube::Error> {
    let params = PatchParams {
        field_manager: Some(super::services::FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    api.patch(node, &params, &Patch::Merge(p)).await.map(|_| ())
}

/// Keeps Node `node`'s kube-vip labels equal to what `vips` says is served, until
/// cancelled; then removes them.
pub async fn run(
    client: Client,
    node: String,
    mut vips: watch::Receiver<VipStates>,
    cancel: CancellationToken,
) {
    let api: Api<Node> = Api::all(client);
    // What is on the Node: kube-vip's labels from an earlier run count as vipr's, so that
    // those no longer wanted go.
    let mut applied: BTreeMap<String, String> = loop {
        match api.get_opt(&node).await {
            Ok(Some(n)) => {
                break n
                    .metadata
                    .labels
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| is_kube_vip_label(k))
                    .collect()
            }
            Ok(None) => {
                warn!(%node, "enable_node_labeling: no Node of this name; retrying");
            }
            Err(e) => {
                warn!(%node, error = %e, "enable_node_labeling: cannot read the Node; retrying")
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    };
    let mut said: BTreeSet<String> = BTreeSet::new();
    loop {
        let (want, refused) = desired(&vips.borrow_and_update());
        for k in refused {
            if said.insert(k.clone()) {
                warn!(label = %k, "enable_node_labeling: Kubernetes would refuse this label (over 63 characters); left out");
            }
        }
        let mut retry = false;
        if let Some(p) = patch(&applied, &want) {
            match send(&api, &node, &p).await {
                Ok(()) => {
                    debug!(%node, patch = %p, "node labels written");
                    applied = want;
                }
                Err(e) => {
                    warn!(%node, error = %e, "enable_node_labeling: patching the Node failed; retrying");
                    retry = true;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = vips.changed() => if r.is_err() { break },
            _ = tokio::time::sleep(RETRY), if retry => {}
        }
    }
    if let Some(p) = patch(&applied, &BTreeMap::new()) {
        match tokio::time::timeout(SHUTDOWN, send(&api, &node, &p)).await {
            Ok(Ok(())) => info!(%node, "node labels removed"),
            Ok(Err(e)) => {
                warn!(%node, error = %e, "enable_node_labeling: removing the labels failed")
            }
            Err(_) => warn!(%node, "enable_node_labeling: removing the labels timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HeldBack, VipState};
    use std::sync::Arc;

    fn st(ip: &str, sources: Vec<VipSource>, on: bool, held: bool) -> (IpAddr, Arc<VipState>) {
        let address: IpAddr = ip.parse().unwrap();
        (
            address,
            Arc::new(VipState {
                address,
                sources,
                interface: on.then(|| "lo".to_string()),
                advertised: on,
                attribute_sets: Vec::new(),
                held_back: held.then_some(HeldBack::NoEndpoint),
            }),
        )
    }

    fn svc(ns: &str, name: &str) -> VipSource {
        VipSource::Service {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn labels_name_what_is_served_as_kube_vip_writes_them() {
        let states: VipStates = [
            st("192.0.2.10", vec![VipSource::ControlPlane], true, false),
            st("198.51.100.1", vec![svc("default", "web")], true, false),
            st("2001:db8::1", vec![svc("default", "web")], true, false),
            st("198.51.100.2", vec![svc("apps", "held")], true, true),
            st("198.51.100.3", vec![svc("apps", "notyet")], false, false),
            st("198.51.100.4", vec![VipSource::Static], true, false),
            st(
                "198.51.100.5",
                vec![svc("default", &"x".repeat(60))],
                true,
                false,
            ),
        ]
        .into_iter()
        .collect();
        let (want, refused) = desired(&states);
        let want: Vec<(&str, &str)> = want.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            want,
            [
                ("kube-vip.io/has-ip", "192.0.2.10"),
                (
                    "service-provided.kube-vip.io/web.default",
                    "198.51.100.1_20010db8000000000000000000000001"
                ),
            ]
        );
        assert_eq!(refused.len(), 1, "{refused:?}");
    }

    #[test]
    fn the_patch_sets_what_changed_and_removes_what_went() {
        let m = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(patch(&m(&[("a", "1")]), &m(&[("a", "1")])), None);
        assert_eq!(
            patch(&m(&[("a", "1"), ("b", "2")]), &m(&[("a", "3"), ("c", "4")])),
            Some(serde_json::json!({"metadata": {"labels": {"a": "3", "b": null, "c": "4"}}}))
        );
        assert!(is_kube_vip_label(
            "service-provided.kube-vip.io/web.default"
        ));
        assert!(is_kube_vip_label(HAS_IP));
        assert!(!is_kube_vip_label("service-provided.kube-vip.iox/a"));
        assert!(!is_kube_vip_label(
            "node.kubernetes.io/exclude-from-external-load-balancers"
        ));
    }
}
