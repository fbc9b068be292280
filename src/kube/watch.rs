//! The Service watcher: reflector stores for Services and for EndpointSlices (v1) or, where
//! discovery.k8s.io/v1 is not served (Kubernetes < 1.21), core/v1 Endpoints. On every event
//! it recomputes the served Services from the stores (level-triggered: a lost delete event
//! cannot leave a stale route) and publishes them; it writes `status.loadBalancer.ingress`
//! for the Services this node serves. When the API server is unreachable the stores keep
//! their last contents, so routes already served stay.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::services::{
    service_vips, stale_status, status_patch, Filter, LocalEndpoints, ServiceVip, FIELD_MANAGER,
};

/// A status write that takes longer is abandoned (and retried at the next event).
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the watcher publishes.
pub type Services = Arc<Vec<ServiceVip>>;

enum EndpointStore {
    Slices(Store<EndpointSlice>),
    Legacy(Store<Endpoints>),
}

/// Whether the API server serves discovery.k8s.io/v1 EndpointSlices (retries until it answers).
/// Asked through API discovery, which every authenticated user may read: listing the slices
/// themselves is refused (403, not 404) to a service account without that permission, which
/// would hide whether v1 exists at all.
async fn slices_served(client: &Client, cancel: &CancellationToken) -> Option<bool> {
    let mut delay = Duration::from_millis(500);
    loop {
        match client.list_api_group_resources("discovery.k8s.io/v1").await {
            Ok(list) => return Some(list.resources.iter().any(|r| r.name == "endpointslices")),
            Err(kube::Error::Api(s)) if s.code == 404 => return Some(false),
            Err(e) => warn!(error = %e, retry_in = ?delay, "API discovery failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

fn reflect<K>(api: Api<K>, cfg: watcher::Config) -> (Store<K>, impl Stream<Item = ()> + Send)
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&Default::default()).to_string();
    let stream = reflector::reflector(writer, watcher(api, cfg).backoff(super::WatchBackoff::new())).filter_map(move |ev| {
        let kind = kind.clone();
        async move {
            match ev {
                Ok(_) => Some(()),
                Err(e) => {
                    warn!(%kind, error = %e, "watch failed; retrying with backoff (serving the last known state)");
                    None
                }
            }
        }
    });
    (store, stream)
}

/// Runs until cancelled, publishing the Services this node may serve.
pub async fn run(
    client: Client,
    filter: Filter,
    node: String,
    write_status: bool,
    tx: watch::Sender<Services>,
    cancel: CancellationToken,
) {
    let Some(use_slices) = slices_served(&client, &cancel).await else {
        return;
    };
    let svc_api: Api<Service> = match &filter.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (svc_store, svc_events) = reflect(svc_api, watcher::Config::default());
    let (eps, ep_events) = if use_slices {
        let api: Api<EndpointSlice> = match &filter.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (s, e) = reflect(api, watcher::Config::default());
        (EndpointStore::Slices(s), e.boxed())
    } else {
        info!("discovery.k8s.io/v1 not served: using core/v1 Endpoints");
        let api: Api<Endpoints> = match &filter.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (s, e) = reflect(api, watcher::Config::default());
        (EndpointStore::Legacy(s), e.boxed())
    };
    let mut events = futures::stream::select(svc_events.boxed(), ep_events);
    let mut ready = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.next() => if ev.is_none() { return },
        }
        // Coalesce bursts: drain whatever else is already there.
        while let Some(Some(())) = events.next().now_or_never() {}
        if !ready {
            // The stores fill only while the streams are polled: check without waiting.
            let done = |r: Option<Result<(), _>>| matches!(r, Some(Ok(())));
            let eps_ready = match &eps {
                EndpointStore::Slices(s) => done(s.wait_until_ready().now_or_never()),
                EndpointStore::Legacy(s) => done(s.wait_until_ready().now_or_never()),
            };
            if !eps_ready || !done(svc_store.wait_until_ready().now_or_never()) {
                continue;
            }
            ready = true;
            info!("Service and endpoint caches synced");
        }
        let local = match &eps {
            EndpointStore::Slices(s) => {
                LocalEndpoints::from_slices(s.state().iter().map(|a| a.as_ref()), &node)
            }
            EndpointStore::Legacy(s) => {
                LocalEndpoints::from_endpoints(s.state().iter().map(|a| a.as_ref()), &node)
            }
        };
        let svcs = svc_store.state();
        let vips = service_vips(svcs.iter().map(|a| a.as_ref()), &local, &filter);
        if write_status {
            let mut writes: Vec<(String, String, serde_json::Value)> = vips
                .iter()
                .filter(|v| v.served_here())
                .filter_map(|v| status_patch(v).map(|p| (v.namespace.clone(), v.name.clone(), p)))
                .collect();
            let clear = serde_json::json!({ "status": { "loadBalancer": { "ingress": [] } } });
            writes.extend(
                stale_status(svcs.iter().map(|a| a.as_ref()), &filter)
                    .into_iter()
                    .map(|(ns, n)| (ns, n, clear.clone())),
            );
            for (ns, name, patch) in writes {
                let api: Api<Service> = Api::namespaced(client.clone(), &ns);
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_string()),
                    ..Default::default()
                };
                let merge = Patch::Merge(&patch);
                let call = api.patch_status(&name, &params, &merge);
                match tokio::time::timeout(STATUS_TIMEOUT, call).await {
                    Ok(Ok(_)) => {
                        debug!(service = %format!("{ns}/{name}"), "status.loadBalancer.ingress written")
                    }
                    Ok(Err(e)) => {
                        warn!(service = %format!("{ns}/{name}"), error = %e, "cannot write Service status")
                    }
                    Err(_) => {
                        warn!(service = %format!("{ns}/{name}"), "writing Service status timed out")
                    }
                }
            }
        }
        tx.send_if_modified(|cur| {
            if **cur == vips {
                false
            } else {
                *cur = Arc::new(vips);
                true
            }
        });
    }
}
