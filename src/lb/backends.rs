//! Where the API servers are: the Ready Nodes labelled `node-role.kubernetes.io/control-plane`
//! (each InternalIP, port `port`), followed with a reflector as Nodes come, go and change
//! readiness; or, for clusters run without Kubernetes, the static list `vipr_lb_backends`
//! (`address[:port]`). Level-triggered like the Service watcher: every event recomputes the
//! set from the store, and the last set stays while the API server is unreachable (watch
//! retried with [`crate::kube::WatchBackoff`], at most 5 s apart).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The label that marks control-plane nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// The control-plane nodes' addresses; `None` until the Node cache has synced.
pub type NodeAddrs = Option<Arc<BTreeSet<IpAddr>>>;

/// The InternalIPs of the Ready control-plane nodes among `nodes`.
pub fn control_plane_addrs<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    for n in nodes {
        let labelled = n
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(CONTROL_PLANE_LABEL));
        if !labelled || n.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(status) = &n.status else { continue };
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if !ready {
            continue;
        }
        out.extend(
            status
                .addresses
                .iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP")
                .filter_map(|a| a.address.parse::<IpAddr>().ok()),
        );
    }
    out
}

/// Watches the control-plane Nodes until cancelled and publishes their addresses.
pub async fn watch_nodes(client: Client, tx: watch::Sender<NodeAddrs>, cancel: CancellationToken) {
    let api: Api<Node> = Api::all(client);
    let cfg = watcher::Config::default().labels(CONTROL_PLANE_LABEL);
    let (store, writer): (Store<Node>, _) = reflector::store();
    let mut events = reflector::reflector(
        writer,
        watcher(api, cfg).backoff(crate::kube::WatchBackoff::new()),
    )
    .boxed();
    let mut synced = false;
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.next() => match ev { Some(e) => e, None => return },
        };
        if let Err(e) = ev {
            warn!(error = %e, "control-plane Node watch failed; retrying (keeping the last backends)");
            continue;
        }
        // Coalesce a burst (the initial list arrives as one event per Node).
        while let Some(Some(_)) = events.next().now_or_never() {}
        if !synced {
            if !matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
                continue;
            }
            synced = true;
            info!("control-plane Node cache synced");
        }
        let addrs = control_plane_addrs(store.state().iter().map(|n| n.as_ref()));
        tx.send_if_modified(|cur| {
            if cur.as_deref() == Some(&addrs) {
                return false;
            }
            *cur = Some(Arc::new(addrs));
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition, NodeStatus};
    use kube::api::ObjectMeta;

    fn node(name: &str, cp: bool, ready: &str, ips: &[&str]) -> Node {
        let mut labels = std::collections::BTreeMap::new();
        if cp {
            labels.insert(CONTROL_PLANE_LABEL.to_string(), String::new());
        }
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                addresses: Some(
                    ips.iter()
                        .map(|a| NodeAddress {
                            type_: "InternalIP".into(),
                            address: a.to_string(),
                        })
                        .chain(std::iter::once(NodeAddress {
                            type_: "Hostname".into(),
                            address: name.into(),
                        }))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_labelled_nodes_give_their_internal_ips() {
        let nodes = [
            node("cp1", true, "True", &["10.0.0.1", "2001:db8::1"]),
            node("cp2", true, "False", &["10.0.0.2"]),
            node("cp3", true, "Unknown", &["10.0.0.3"]),
            node("w1", false, "True", &["10.0.0.4"]),
            node("cp4", true, "True", &["10.0.0.5"]),
        ];
        let got = control_plane_addrs(nodes.iter());
        let want: BTreeSet<IpAddr> = ["10.0.0.1", "2001:db8::1", "10.0.0.5"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
    }
}
