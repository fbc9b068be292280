//! The Service watcher: reflector stores for Services and for EndpointSlices (v1) or, where
//! discovery.k8s.io/v1 is not served (Kubernetes < 1.21), core/v1 Endpoints. On every event
//! it recomputes the served Services from the stores (level-triggered: a lost delete event
//! cannot leave a stale route) and publishes them; the `status.loadBalancer.ingress` writes
//! for the Services this node serves go to the status writer (`status.rs`) as a list. When
//! the API server is unreachable the stores keep their last contents, so routes already
//! served stay.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::services::{
    service_vips, stale_status, status_patch, Filter, LocalEndpoints, ServiceVip,
};
use super::status::{self, StatusWrite};

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
    let (status_tx, status_rx) = watch::channel(Vec::new());
    if write_status {
        tokio::spawn(status::run(client.clone(), status_rx, cancel.clone()));
    }
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
        // Routes first: the status writes follow on their own task.
        let writes = write_status.then(|| status_writes(&vips, &svcs, &filter));
        tx.send_if_modified(|cur| {
            if **cur == vips {
                false
            } else {
                *cur = Arc::new(vips);
                true
            }
        });
        if let Some(w) = writes {
            status_tx.send_if_modified(|cur| {
                let changed = *cur != w;
                *cur = w;
                changed
            });
        }
    }
}

/// The status writes a snapshot calls for: the ingress of every Service served here whose
/// status differs, and an empty ingress where vipr's own status outlived the address.
fn status_writes(vips: &[ServiceVip], svcs: &[Arc<Service>], filter: &Filter) -> Vec<StatusWrite> {
    let version = |ns: &str, name: &str| {
        svcs.iter()
            .find(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata.name.as_deref() == Some(name)
            })
            .and_then(|s| s.metadata.resource_version.clone())
            .unwrap_or_default()
    };
    let write = |namespace: String, name: String, patch| StatusWrite {
        resource_version: version(&namespace, &name),
        namespace,
        name,
        patch,
    };
    let clear = serde_json::json!({ "status": { "loadBalancer": { "ingress": [] } } });
    let mut out: Vec<StatusWrite> = vips
        .iter()
        .filter(|v| v.served_here())
        .filter_map(|v| status_patch(v).map(|p| write(v.namespace.clone(), v.name.clone(), p)))
        .collect();
    out.extend(
        stale_status(svcs.iter().map(|a| a.as_ref()), filter)
            .into_iter()
            .map(|(ns, n)| write(ns, n, clear.clone())),
    );
    out
}
