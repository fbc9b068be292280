//! The Service watcher's async shell: watch streams for Services, for EndpointSlices (v1)
//! or, where discovery.k8s.io/v1 is not served (Kubernetes < 1.21), core/v1 Endpoints, for
//! the address claims and member Leases, for this node's own Node (its
//! exclude-from-external-load-balancers label), and for kube-vip-cloud-provider's ConfigMap; each
//! event goes straight into [`Cluster`], which keeps only what vipr reads and derives only
//! what the event changed. At most once per [`BATCH`] it publishes the Services this node
//! may serve (level-triggered: a persistent map, so a lost event cannot leave a stale
//! route and a consumer's work follows the change), and hands the writes to the writer
//! (`writer.rs`). Initial lists are paginated (500 per page, from etcd), so a large cluster
//! never arrives as one response. When the API server is unreachable the caches keep their
//! last contents, so routes already served stay.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use std::collections::BTreeSet;
use std::net::IpAddr;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::claims;
pub use super::cluster::{Allocations, Jobs};
use super::cluster::{Cluster, Kind};
use super::members::{self, Members};
use super::writer;
use crate::config::{ControlPlane, ServiceSettings};
use crate::ipam::plan::Local;
use crate::model::{Services, WorkCounts};

/// The longest a change waits for others to be handled together.
const BATCH: Duration = Duration::from_millis(10);

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

/// How every watch is made: paginated initial lists (500 per page), and every watch ended by
/// the API server after [`WATCH_SECONDS`] and resumed from the last resourceVersion seen.
///
/// The short watch bounds how long a watch can go silent. Against Debian's kube-apiserver
/// 1.20.2, `labs/bench-scale.sh` at 100 changes/s often saw the API server's Service watch
/// cache stop for 20–50 s: every Service watcher went quiet at once (a plain curl watch
/// too, `apiserver_watch_events_total` stood still while PATCHes succeeded, the cacher's
/// reflector waited on etcd). Resuming from the last resourceVersion replays what was
/// missed (or relists on 410 Gone), so vipr loses nothing and a silent watch on its side
/// of the connection lasts at most this long. client-go re-watches every 5–10 minutes.
fn cfg() -> watcher::Config {
    watcher::Config::default()
        .page_size(500)
        .timeout(WATCH_SECONDS)
}

/// Server-side `timeoutSeconds` of every watch.
const WATCH_SECONDS: u32 = 60;

/// One watch event of any kind, or a kind the API server will not let vipr read. (Moved
/// once from a watch stream into the loop that applies it, never stored: boxing the large
/// Service event would add an allocation per event for nothing.)
#[allow(clippy::large_enum_variant)]
enum Ev {
    Service(Event<Service>),
    Endpoints(Event<Endpoints>),
    Slice(Event<EndpointSlice>),
    Claim(Event<Lease>),
    ConfigMap(Event<ConfigMap>),
    Member(Event<Lease>),
    Node(Event<Node>),
    Forbidden(Kind),
    /// Readable again after it was forbidden.
    Readable(Kind),
    /// An error the watcher retries by itself.
    Retrying,
}

/// A watch of one kind as [`Ev`]s: retried with backoff; a list refused with 403 becomes
/// [`Ev::Forbidden`] (said once), so optional kinds (claims, the ConfigMap) count as empty
/// instead of holding everything back.
fn events<K>(
    api: Api<K>,
    cfg: watcher::Config,
    kind: Kind,
    wrap: fn(Event<K>) -> Ev,
) -> BoxStream<'static, Ev>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let name = K::kind(&Default::default()).to_string();
    let mut forbidden = false;
    watcher::watcher(api, cfg)
        .backoff(super::WatchBackoff::new())
        .flat_map(move |ev| {
            let out: Vec<Ev> = match ev {
                Ok(e) => {
                    let mut v = Vec::new();
                    if std::mem::take(&mut forbidden) {
                        info!(kind = %name, "readable now");
                        v.push(Ev::Readable(kind));
                    }
                    v.push(wrap(e));
                    v
                }
                Err(watcher::Error::InitialListFailed(kube::Error::Api(e))) if e.code == 403 => {
                    if !std::mem::replace(&mut forbidden, true) {
                        warn!(kind = %name, error = %e.message, "not allowed to read; going on without (check vipr's RBAC)");
                    }
                    vec![Ev::Forbidden(kind)]
                }
                Err(e) => {
                    warn!(kind = %name, error = %e, "watch failed; retrying with backoff (serving the last known state)");
                    vec![Ev::Retrying]
                }
            };
            futures::stream::iter(out)
        })
        .boxed()
}

/// What this node knows that the allocator needs: its own addresses, its BGP peers', and the
/// control-plane section.
pub struct LocalFacts {
    /// The node's own addresses (not vipr's), from the reconciler's resync.
    pub node_addrs: watch::Receiver<Arc<BTreeSet<IpAddr>>>,
    /// The BGP peers' addresses, from the peers task.
    pub peers: watch::Receiver<Arc<BTreeSet<IpAddr>>>,
    /// The control-plane VIPs.
    pub control_plane: watch::Receiver<Arc<ControlPlane>>,
}

impl LocalFacts {
    fn local(&mut self, node: &str) -> Local {
        Local {
            node: node.to_string(),
            node_addrs: (**self.node_addrs.borrow_and_update()).clone(),
            peers: (**self.peers.borrow_and_update()).clone(),
            control_plane: self
                .control_plane
                .borrow_and_update()
                .served()
                .iter()
                .copied()
                .collect(),
        }
    }
}

impl Clone for LocalFacts {
    fn clone(&self) -> Self {
        LocalFacts {
            node_addrs: self.node_addrs.clone(),
            peers: self.peers.clone(),
            control_plane: self.control_plane.clone(),
        }
    }
}

/// [`Allocations`] as published.
pub type PendingServices = Arc<Allocations>;

/// Where the watcher publishes.
#[derive(Clone)]
pub struct Outputs {
    /// The Services this node may serve.
    pub services: watch::Sender<Services>,
    /// The Services waiting for an address.
    pub pending: watch::Sender<PendingServices>,
    /// The writer's counters.
    pub writes: Arc<writer::WriteCounts>,
    /// The watcher's work counters.
    pub work: Arc<WorkCounts>,
}

/// Follows the Services section: while `svc_enable` is on, watches the Services its filter
/// selects and their addresses (a new filter or pool setting starts a new watch); while it
/// is off, publishes none. Until cancelled.
pub async fn follow(
    client: Client,
    settings: watch::Receiver<Arc<ServiceSettings>>,
    node: String,
    facts: LocalFacts,
    out: Outputs,
    cancel: CancellationToken,
) {
    crate::follow::follow(
        settings,
        |s| s.enabled.then(|| (**s).clone()),
        |s, token| {
            let (client, node, facts, out) =
                (client.clone(), node.clone(), facts.clone(), out.clone());
            async move {
                match s {
                    Some(s) => run(client, s, node, facts, out, token).await,
                    None => {
                        out.services.send_replace(Services::default());
                        out.pending.send_replace(PendingServices::default());
                    }
                }
            }
        },
        cancel,
    )
    .await
}

fn namespaced<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs until cancelled, publishing the Services this node may serve.
pub async fn run(
    client: Client,
    settings: ServiceSettings,
    node: String,
    mut facts: LocalFacts,
    out: Outputs,
    cancel: CancellationToken,
) {
    let Some(use_slices) = slices_served(&client, &cancel).await else {
        return;
    };
    let ns = &settings.filter.namespace;
    let claims_ns = settings.claims_namespace.clone();
    let labelled = |l: &str| cfg().labels(&format!("{l}=true"));
    let mut streams = vec![
        events(
            namespaced::<Service>(&client, ns),
            cfg(),
            Kind::Services,
            Ev::Service,
        ),
        if use_slices {
            events(
                namespaced::<EndpointSlice>(&client, ns),
                cfg(),
                Kind::Endpoints,
                Ev::Slice,
            )
        } else {
            info!("discovery.k8s.io/v1 not served: using core/v1 Endpoints");
            events(
                namespaced::<Endpoints>(&client, ns),
                cfg(),
                Kind::Endpoints,
                Ev::Endpoints,
            )
        },
        events(
            Api::<Lease>::namespaced(client.clone(), &claims_ns),
            labelled(claims::LABEL),
            Kind::Claims,
            Ev::Claim,
        ),
        events(
            Api::<Lease>::namespaced(client.clone(), &claims_ns),
            labelled(members::LABEL),
            Kind::Members,
            Ev::Member,
        ),
    ];
    // This node's labels: node.kubernetes.io/exclude-from-external-load-balancers.
    streams.push(events(
        Api::<Node>::all(client.clone()),
        cfg().fields(&format!("metadata.name={node}")),
        Kind::Node,
        Ev::Node,
    ));
    if let Some((cm_ns, name)) = &settings.pool_configmap {
        streams.push(events(
            Api::<ConfigMap>::namespaced(client.clone(), cm_ns),
            cfg().fields(&format!("metadata.name={name}")),
            Kind::ConfigMap,
            Ev::ConfigMap,
        ));
    }
    let mut events = futures::stream::select_all(streams);
    let (members_tx, members_rx) = watch::channel(Members::default());
    let counts = out.writes.clone();
    tokio::spawn(members::heartbeat(
        client.clone(),
        claims_ns.clone(),
        node.clone(),
        move |ok| counts.add(6, if ok { 0 } else { 2 }),
        cancel.clone(),
    ));
    let (jobs_tx, jobs_rx) = watch::channel(Jobs::default());
    tokio::spawn(writer::run(
        writer::Ctx {
            client: client.clone(),
            node: node.clone(),
            claims_namespace: claims_ns,
            counts: out.writes.clone(),
            members: members_rx,
        },
        jobs_rx,
        cancel.clone(),
    ));
    let mut cluster = Cluster::new(&node, settings, facts.local(&node));
    let mut forbidden: BTreeSet<Kind> = BTreeSet::new();
    let (mut ready, mut complete, mut synced_once) = (false, false, false);
    loop {
        let handle = |ev: Ev, c: &mut Cluster, forbidden: &mut BTreeSet<Kind>| match ev {
            Ev::Service(e) => c.service(e),
            Ev::Endpoints(e) => c.endpoints(e),
            Ev::Slice(e) => c.slice(e),
            Ev::Claim(e) => c.claim(e),
            Ev::ConfigMap(e) => c.configmap(e),
            Ev::Node(e) => c.node(e),
            Ev::Member(e) => {
                if c.member(e) {
                    members_tx.send_replace(c.members());
                }
            }
            Ev::Forbidden(k) => {
                forbidden.insert(k);
                c.forbidden(k);
            }
            Ev::Readable(k) => {
                forbidden.remove(&k);
            }
            Ev::Retrying => {}
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.next() => match ev {
                Some(ev) => handle(ev, &mut cluster, &mut forbidden),
                None => return,
            },
            Ok(()) = facts.node_addrs.changed() => cluster.set_local(facts.local(&node)),
            Ok(()) = facts.peers.changed() => cluster.set_local(facts.local(&node)),
            Ok(()) = facts.control_plane.changed() => cluster.set_local(facts.local(&node)),
        }
        // Coalesce bursts: everything that arrives within BATCH is handled in one go.
        if ready {
            let until = tokio::time::Instant::now() + BATCH;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    ev = events.next() => match ev {
                        Some(ev) => handle(ev, &mut cluster, &mut forbidden),
                        None => return,
                    },
                }
            }
        }
        while let Some(Some(ev)) = events.next().now_or_never() {
            handle(ev, &mut cluster, &mut forbidden);
        }
        if !cluster.ready() {
            continue;
        }
        if !ready || !complete {
            let without = without(&forbidden);
            if !ready && !without.is_empty() {
                warn!(without = %without, "Services and endpoints read; going on without what vipr may not read");
            }
            ready = true;
            if without.is_empty() {
                complete = true;
                info!(kept = ?cluster.kept(), "Service and endpoint caches synced");
            }
        }
        let first = !synced_once;
        synced_once = true;
        let p = cluster.process(SystemTime::now());
        for (service, row) in cluster.take_notices() {
            warn!(%service, annotation = row.name, reason = row.reason, "kube-vip annotation not supported by vipr; ignored");
        }
        if first {
            // The initial lists' pages are garbage now.
            crate::memory::release_free();
        }
        let w = cluster.work();
        out.work.planned.store(w.planned, Ordering::Relaxed);
        out.work.derived.store(w.derived, Ordering::Relaxed);
        // Routes first: the writes follow on their own task. The first view is published
        // even when empty: it tells its followers that the caches are synced.
        if p.services || first {
            out.services.send_replace(cluster.vips().clone());
        }
        if p.allocations {
            out.pending
                .send_replace(Arc::new(cluster.allocations().clone()));
        }
        if p.jobs {
            jobs_tx.send_replace(cluster.jobs().clone());
        }
    }
}

/// The optional kinds vipr goes on without, for the log.
fn without(forbidden: &BTreeSet<Kind>) -> String {
    forbidden
        .iter()
        .filter_map(|k| match k {
            Kind::Claims => Some("address claims (Leases)"),
            Kind::ConfigMap => Some("the pool ConfigMap"),
            Kind::Members => Some("member Leases"),
            Kind::Node => Some(
                "this Node's labels (node.kubernetes.io/exclude-from-external-load-balancers is not followed)",
            ),
            Kind::Services | Kind::Endpoints => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}
