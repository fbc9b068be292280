//! The Service status writer: owns every write of `status.loadBalancer.ingress`. The Service
//! watcher hands it, through a `watch` channel, the full list of writes the latest store
//! snapshot calls for; the writer applies them a few at a time, off the watcher's path, so
//! routes never wait for the API server and a burst of Service changes never backs the
//! watcher up behind HTTP round trips.
//!
//! A write is remembered by the Service's resourceVersion: until the watcher has seen the
//! Service change (our own write included), the same write is not sent again. Services
//! deleted meanwhile answer 404, which is expected under churn and logged at debug.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::services::FIELD_MANAGER;

/// A status write that takes longer is abandoned (and retried at the next snapshot).
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Writes in flight at once.
const CONCURRENCY: usize = 8;

/// One status write: the Service, the resourceVersion it was computed from, the merge patch.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusWrite {
    pub namespace: String,
    pub name: String,
    pub resource_version: String,
    pub patch: serde_json::Value,
}

impl StatusWrite {
    fn key(&self) -> (String, String, String, String) {
        (
            self.namespace.clone(),
            self.name.clone(),
            self.resource_version.clone(),
            self.patch.to_string(),
        )
    }
}

/// Applies the latest list of writes whenever it changes, until `cancel`.
pub async fn run(
    client: Client,
    mut rx: watch::Receiver<Vec<StatusWrite>>,
    cancel: CancellationToken,
) {
    let mut done: HashSet<(String, String, String, String)> = HashSet::new();
    // After a failed write: retry the latest list even if it does not change (1 s to 30 s).
    let mut retry: Option<Duration> = None;
    loop {
        let pause = retry.unwrap_or(Duration::MAX);
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(pause), if retry.is_some() => {}
        }
        let writes = rx.borrow_and_update().clone();
        // Forget what the snapshot no longer asks for; skip what was already sent for this
        // very version of the Service.
        let wanted: HashSet<_> = writes.iter().map(StatusWrite::key).collect();
        done.retain(|k| wanted.contains(k));
        let todo: Vec<StatusWrite> = writes
            .into_iter()
            .filter(|w| !done.contains(&w.key()))
            .collect();
        let results: Vec<(StatusWrite, bool)> = futures::stream::iter(todo)
            .map(|w| {
                let client = client.clone();
                async move {
                    let ok = write(client, &w).await;
                    (w, ok)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut failed = false;
        for (w, ok) in results {
            if ok {
                done.insert(w.key());
            } else {
                failed = true;
            }
        }
        retry = failed.then(|| {
            retry.map_or(Duration::from_secs(1), |d| {
                (d * 2).min(Duration::from_secs(30))
            })
        });
    }
}

/// One merge patch of the status subresource as field manager "vipr". Whether it is settled
/// (written, or the Service is gone).
async fn write(client: Client, w: &StatusWrite) -> bool {
    let api: Api<Service> = Api::namespaced(client, &w.namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let svc = format!("{}/{}", w.namespace, w.name);
    let patch = Patch::Merge(&w.patch);
    let call = api.patch_status(&w.name, &params, &patch);
    match tokio::time::timeout(STATUS_TIMEOUT, call).await {
        Ok(Ok(_)) => {
            debug!(service = %svc, "status.loadBalancer.ingress written");
            true
        }
        Ok(Err(kube::Error::Api(e))) if e.code == 404 => {
            debug!(service = %svc, "Service gone before its status was written");
            true
        }
        Ok(Err(e)) => {
            warn!(service = %svc, error = %e, "cannot write Service status");
            false
        }
        Err(_) => {
            warn!(service = %svc, "writing Service status timed out");
            false
        }
    }
}
