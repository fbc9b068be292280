//! This node's own Node object: its annotations, for peers from node annotations (kube-vip's
//! `annotation` setting, Equinix's cloud controller writes `metal.equinix.com/bgp-peers-N-*`),
//! and its labels, for the node selectors of peers. Watched with backoff; the last value
//! stays published while the API server is away.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The node's annotations; `None` until the Node has been read (or when it does not exist).
pub type Annotations = Option<Arc<BTreeMap<String, String>>>;

/// The node's labels; `None` until the Node has been read (or when it does not exist).
pub type Labels = Option<Arc<BTreeMap<String, String>>>;

/// Follows the annotations of Node `name` until cancelled.
pub async fn annotations(
    client: Client,
    name: String,
    tx: watch::Sender<Annotations>,
    cancel: CancellationToken,
) {
    follow(client, name, tx, cancel, |n| n.metadata.annotations).await
}

/// Follows the labels of Node `name` until cancelled.
pub async fn labels(
    client: Client,
    name: String,
    tx: watch::Sender<Labels>,
    cancel: CancellationToken,
) {
    follow(client, name, tx, cancel, |n| n.metadata.labels).await
}

/// Follows one map of Node `name`'s metadata.
async fn follow(
    client: Client,
    name: String,
    tx: watch::Sender<Option<Arc<BTreeMap<String, String>>>>,
    cancel: CancellationToken,
    part: fn(Node) -> Option<BTreeMap<String, String>>,
) {
    let api: Api<Node> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, cfg).default_backoff().boxed();
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.next() => match ev { Some(e) => e, None => return },
        };
        let new = match ev {
            Ok(watcher::Event::Apply(n)) | Ok(watcher::Event::InitApply(n)) => {
                Some(Arc::new(part(n).unwrap_or_default()))
            }
            Ok(watcher::Event::Delete(_)) => None,
            Ok(_) => continue,
            Err(e) => {
                warn!(node = %name, error = %e, "Node watch failed; retrying (keeping the last value)");
                continue;
            }
        };
        tx.send_if_modified(|cur| {
            let changed = *cur != new;
            *cur = new;
            changed
        });
    }
}
