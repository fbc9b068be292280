//! Runs the configured peer provider (crate `providers`) and publishes what it found as
//! [`Discovered`]: the Equinix Metal metadata poller, or this node's annotations
//! (`annotation=<prefix>`), or nothing when the peers are static. Failures are logged by the
//! providers and retried; the last good answer stays in place.

use std::sync::Arc;

use providers::{annotations, equinix_metal, Discovery};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Config;
use crate::peers::Discovered;

/// Publishes discovered peers until cancelled.
pub async fn run(
    cfg: Arc<Config>,
    client: Option<kube::Client>,
    tx: watch::Sender<Discovered>,
    cancel: CancellationToken,
) {
    if let Some(prefix) = cfg.svc.annotation.clone() {
        let Some(client) = client else {
            warn!("annotation is set but there is no Kubernetes client");
            return;
        };
        let (atx, mut arx) = watch::channel(None);
        tokio::spawn(crate::kube::node::annotations(
            client,
            cfg.node_name.clone(),
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
                    warn!(node = %cfg.node_name, error = %e, "ignoring the node's BGP annotations until they are fixed")
                }
            }
        }
    } else if cfg.svc.peers_from == "equinix-metal" {
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
            cfg.svc.metadata_url.clone(),
            cfg.svc.metadata_interval,
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
    } else {
        tx.send_replace(Discovered::Known(None));
        // Keep the channel open: the peers task treats a closed channel as the end.
        cancel.cancelled().await;
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
