//! Follows the peer-source section and runs the provider it names (crate `providers`),
//! publishing what it found as [`Discovered`]: this node's annotations (`annotation`), the
//! Equinix Metal metadata poller (`vipr_peers_from=equinix-metal`, `vip_packet`), or nothing
//! when the peers are static. A changed source (prefix, URL, interval) starts the new
//! provider; the last answer of the old one stays until the new one answers. Failures are
//! logged by the providers and retried; the last good answer stays in place.

use std::sync::Arc;
use std::time::Duration;

use providers::{annotations, equinix_metal, Discovery};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::PeerSource;

/// Where discovered peers stand: `Known(None)` when no provider is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovered {
    /// The provider has not answered yet (readiness is false meanwhile).
    Pending,
    /// The provider's current answer (`None`: no provider configured).
    Known(Option<Arc<Discovery>>),
}

/// Publishes discovered peers for the current peer source until cancelled.
pub async fn follow(
    source: watch::Receiver<Arc<PeerSource>>,
    client: Option<kube::Client>,
    node: String,
    tx: watch::Sender<Discovered>,
    cancel: CancellationToken,
) {
    crate::follow::follow(
        source,
        |s| (**s).clone(),
        |s, token| run(s, client.clone(), node.clone(), tx.clone(), token),
        cancel,
    )
    .await
}

async fn run(
    source: PeerSource,
    client: Option<kube::Client>,
    node: String,
    tx: watch::Sender<Discovered>,
    cancel: CancellationToken,
) {
    match source {
        PeerSource::Annotations { prefix } => {
            let Some(client) = client else {
                warn!("annotation is set but there is no Kubernetes client");
                return;
            };
            let (atx, mut arx) = watch::channel(None);
            tokio::spawn(crate::kube::node::annotations(
                client,
                node.clone(),
                atx,
                cancel.clone(),
            ));
            tx.send_replace(Discovered::Pending);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = arx.changed() => if r.is_err() { return },
                }
                let Some(map) = arx.borrow_and_update().clone() else {
                    continue;
                };
                match annotations::parse(&map, &prefix) {
                    Ok(Some(d)) => publish(&tx, d),
                    // kube-vip #1488: wait for the annotations instead of starting without peers.
                    Ok(None) => {}
                    Err(e) => {
                        warn!(%node, error = %e, "ignoring the node's BGP annotations until they are fixed")
                    }
                }
            }
        }
        PeerSource::EquinixMetal { url, interval } => {
            let client = match reqwest::Client::builder().build() {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "cannot build the metadata client");
                    return;
                }
            };
            tx.send_replace(Discovered::Pending);
            let (mtx, mut mrx) = watch::channel(None);
            tokio::spawn(equinix_metal::poll(
                client,
                url,
                interval.max(Duration::from_secs(1)),
                mtx,
                cancel.clone(),
            ));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = mrx.changed() => if r.is_err() { return },
                }
                if let Some(d) = mrx.borrow_and_update().clone() {
                    publish(&tx, d);
                }
            }
        }
        PeerSource::Static => {
            tx.send_replace(Discovered::Known(None));
        }
    }
}

fn publish(tx: &watch::Sender<Discovered>, d: Discovery) {
    let new = Discovered::Known(Some(Arc::new(d)));
    tx.send_if_modified(|cur| {
        let changed = *cur != new;
        *cur = new;
        changed
    });
}
