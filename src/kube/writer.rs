//! The API writer: owns every write vipr makes to Services, claims and Events. The watcher
//! hands it, through a `watch`, the writes its latest snapshot calls for, per Service (a
//! persistent map: the writer looks only at the Services that changed since the last
//! snapshot, [`queue`]); the writer carries them out a few at a time, off the watcher's
//! path, so routes never wait for the API server.
//!
//! - A write that succeeded is not sent again while the snapshot still asks for it (until
//!   the watcher has seen its effect, the snapshot keeps asking); one that failed is retried
//!   with backoff.
//! - Writes every node would make alike are made first by one node per Service, chosen
//!   among the live members ([`super::members`]); the others wait their turn
//!   ([`super::members::BACKUP`] each) and drop the write if the snapshot no longer asks for it
//!   meanwhile. Events, whose effect the watcher cannot see, are left to the first node
//!   while it lives. Without member Leases every node waits a short time that differs per
//!   node (up to [`SPREAD`]) instead.
//! - Claims and claim changes go first, then status, annotations and Events.
//! - Claims are created atomically and changed only conditionally on their
//!   resourceVersion: a 409 means another node was first, which is fine.
//! - Events are named after the decision (`<service>.vipr-<hash>`): every node creating the
//!   same one makes one object, so a decision gives one Event, not one per node and resync.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event as K8sEvent, EventSource, ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Client;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod queue;

use queue::{Queue, Turns};

use super::claims;
pub use super::cluster::Jobs;
use super::members::{hash, Members};
use super::services::{ANNOTATION_ALLOCATED, ANNOTATION_IPS, FIELD_MANAGER};
use crate::ipam::plan::{Event, Write};
use crate::ipam::Holder;

/// A write that takes longer is abandoned (and retried).
const TIMEOUT: Duration = Duration::from_secs(5);
/// Writes in flight at once (most of them wait out their spread).
pub(crate) const CONCURRENCY: usize = 64;
/// The longest a write every node would make waits before it is made.
pub const SPREAD: Duration = Duration::from_millis(50);

/// One status write: the Service, the resourceVersion it was computed from, the merge patch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatusWrite {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub resource_version: String,
    pub patch: String,
}

/// Any write.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Job {
    /// `status.loadBalancer.ingress`.
    Status(StatusWrite),
    /// The allocator's.
    Plan(Write),
}

/// Where the writer writes, and as whom.
#[derive(Clone)]
pub struct Ctx {
    /// The API.
    pub client: Client,
    /// This node (Event source, spread).
    pub node: String,
    /// Where claims live.
    pub claims_namespace: String,
    /// The counters.
    pub counts: Arc<WriteCounts>,
    /// The live members, for whose turn it is.
    pub members: watch::Receiver<Members>,
}

/// The kinds of write, for the counters.
pub const KINDS: [&str; 7] = [
    "status", "claim", "holders", "release", "annotate", "event", "member",
];
/// What a write that was sent came to, for the counters.
pub const RESULTS: [&str; 4] = ["ok", "conflict", "failed", "dropped"];

/// Writes made since start, by kind and result (`vipr_api_writes_total`): what vipr costs
/// the API server; and the status writes that failed, by Service
/// (`kube_vip_service_reconcile_errors_total{reason="update_status"}`).
#[derive(Default, Debug)]
pub struct WriteCounts(
    [[AtomicU64; RESULTS.len()]; KINDS.len()],
    Mutex<BTreeMap<(String, String), u64>>,
);

impl WriteCounts {
    /// Counts one write of `KINDS[kind]` with outcome `RESULTS[result]`.
    pub fn add(&self, kind: usize, result: usize) {
        self.0[kind][result].fetch_add(1, Ordering::Relaxed);
    }

    /// `(kind, result, count)` for every pair.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for (k, kind) in KINDS.iter().enumerate() {
            for (r, result) in RESULTS.iter().enumerate() {
                out.push((*kind, *result, self.0[k][r].load(Ordering::Relaxed)));
            }
        }
        out
    }

    /// Counts one failed (or timed-out) status write of Service `namespace/name`.
    pub fn status_failed(&self, namespace: &str, name: &str) {
        let mut m = self.1.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((namespace.to_string(), name.to_string()))
            .or_default() += 1;
    }

    /// `(namespace, name, failed status writes)` of every Service that had one since start.
    pub fn status_failures(&self) -> Vec<(String, String, u64)> {
        let m = self.1.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .map(|((ns, name), n)| (ns.clone(), name.clone(), *n))
            .collect()
    }
}

pub(crate) fn kind_of(job: &Job) -> usize {
    match job {
        Job::Status(_) => 0,
        Job::Plan(Write::Claim { .. }) => 1,
        Job::Plan(Write::Holders { .. }) => 2,
        Job::Plan(Write::ReleaseIfGone { .. }) => 3,
        Job::Plan(Write::Annotate { .. }) => 4,
        Job::Plan(Write::Event(_)) => 5,
    }
}

/// What the API server made of a write.
enum Sent {
    /// Made.
    Made,
    /// Not needed any more: 409 (another node or Service was first), 404 (gone), or
    /// nothing to change.
    Moot,
}

/// What a write came to.
enum Outcome {
    /// Done (or done by someone else, or no longer needed).
    Done,
    /// Failed; retry later.
    Failed,
}

/// Applies the latest set of writes whenever it changes, until `cancel`.
pub async fn run(ctx: Ctx, mut rx: watch::Receiver<Jobs>, cancel: CancellationToken) {
    let mut q = Queue::default();
    let (res_tx, mut res_rx) = mpsc::unbounded_channel::<(Job, Outcome)>();
    let mut members_rx = ctx.members.clone();
    let mut wanted = Jobs::default();
    loop {
        let members = members_rx.borrow_and_update().clone();
        let t = Turns {
            node: &ctx.node,
            members: &members,
            wall: SystemTime::now(),
        };
        let now = Instant::now();
        let new = rx.borrow_and_update().clone();
        q.update(&wanted, &new, &t, now, &ctx.counts);
        wanted = new;
        for job in q.start(now) {
            let (ctx, tx) = (ctx.clone(), res_tx.clone());
            tokio::spawn(async move {
                let out = execute(&ctx, &job).await;
                let _ = tx.send((job, out));
            });
        }
        let far = now + Duration::from_secs(3600);
        let due = q.next_due().unwrap_or(far);
        // A member that stops counting hands its turns on.
        let expiry = members
            .next_expiry(t.wall)
            .and_then(|e| e.duration_since(t.wall).ok())
            .map_or(far, |d| now + d);
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
            r = members_rx.changed() => {
                if r.is_err() { return }
                let m = members_rx.borrow().clone();
                q.members_changed(&Turns { node: &ctx.node, members: &m, wall: SystemTime::now() }, Instant::now());
            }
            _ = tokio::time::sleep_until(expiry) => {
                q.members_changed(&t, Instant::now());
            }
            Some((job, out)) = res_rx.recv() => {
                q.finished(&job, matches!(out, Outcome::Done), &t, Instant::now());
            }
            _ = tokio::time::sleep_until(due) => {}
        }
    }
}

async fn execute(ctx: &Ctx, job: &Job) -> Outcome {
    let kind = kind_of(job);
    let r = tokio::time::timeout(TIMEOUT, async {
        match job {
            Job::Status(w) => status(ctx, w).await,
            Job::Plan(Write::Claim { ip, pool, holder }) => {
                let l = claims::to_lease(
                    &ctx.claims_namespace,
                    *ip,
                    pool,
                    std::slice::from_ref(holder),
                    None,
                );
                let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.claims_namespace);
                match api.create(&PostParams::default(), &l).await {
                    Ok(_) => {
                        info!(address = %ip, service = %holder, %pool, "address claimed");
                        Ok(Sent::Made)
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        debug!(address = %ip, "address claimed by another node or Service first");
                        Ok(Sent::Moot)
                    }
                    Err(e) => Err(e),
                }
            }
            Job::Plan(Write::Holders {
                ip,
                resource_version,
                holders,
            }) => set_holders(ctx, *ip, resource_version, holders).await,
            Job::Plan(Write::ReleaseIfGone {
                ip,
                resource_version,
                holder,
            }) => release_if_gone(ctx, *ip, resource_version, holder).await,
            Job::Plan(Write::Annotate { holder, allocation }) => {
                annotate(ctx, holder, allocation).await
            }
            Job::Plan(Write::Event(e)) => event(ctx, e).await,
        }
    })
    .await;
    match r {
        Ok(Ok(sent)) => {
            ctx.counts
                .add(kind, if matches!(sent, Sent::Made) { 0 } else { 1 });
            Outcome::Done
        }
        Ok(Err(e)) => {
            failed(ctx, job, kind);
            warn!(write = ?job, error = %e, "API write failed; retrying");
            Outcome::Failed
        }
        Err(_) => {
            failed(ctx, job, kind);
            warn!(write = ?job, "API write timed out; retrying");
            Outcome::Failed
        }
    }
}

/// Counts a failed write; a status write also against its Service.
fn failed(ctx: &Ctx, job: &Job, kind: usize) {
    ctx.counts.add(kind, 2);
    if let Job::Status(w) = job {
        ctx.counts.status_failed(&w.namespace, &w.name);
    }
}

/// Gone is fine: the object no longer needs the write.
fn gone_is_fine(r: Result<(), kube::Error>) -> Result<Sent, kube::Error> {
    match r {
        Ok(()) => Ok(Sent::Made),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Sent::Moot),
        Err(e) => Err(e),
    }
}

async fn status(ctx: &Ctx, w: &StatusWrite) -> Result<Sent, kube::Error> {
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &w.namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let patch: serde_json::Value = serde_json::from_str(&w.patch).unwrap_or_default();
    match api
        .patch_status(&w.name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            debug!(service = %format!("{}/{}", w.namespace, w.name), "status.loadBalancer.ingress written");
            Ok(Sent::Made)
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {
            debug!(service = %format!("{}/{}", w.namespace, w.name), "Service gone before its status was written");
            Ok(Sent::Moot)
        }
        Err(e) => Err(e),
    }
}

/// Replaces a claim's holders (empty: deletes it), conditionally on its resourceVersion.
async fn set_holders(
    ctx: &Ctx,
    ip: std::net::IpAddr,
    rv: &str,
    holders: &[Holder],
) -> Result<Sent, kube::Error> {
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.claims_namespace);
    let name = claims::name(ip);
    if holders.is_empty() {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(rv.to_string()),
                uid: None,
            }),
            ..Default::default()
        };
        let r = api.delete(&name, &dp).await.map(|_| ());
        if r.is_ok() {
            info!(address = %ip, "address released");
        }
        return gone_is_fine(r);
    }
    let current = match api.get_opt(&name).await? {
        Some(l) => l,
        None => return Ok(Sent::Moot),
    };
    let pool = claims::from_lease(&current)
        .map(|c| c.pool)
        .unwrap_or_default();
    let l = claims::to_lease(
        &ctx.claims_namespace,
        ip,
        &pool,
        holders,
        Some(rv.to_string()),
    );
    let r = api
        .replace(&name, &PostParams::default(), &l)
        .await
        .map(|_| ());
    if r.is_ok() {
        let names: Vec<String> = holders.iter().map(|h| h.to_string()).collect();
        info!(address = %ip, holders = %names.join(","), "address holders changed");
    }
    gone_is_fine(r)
}

/// Releases `holder`'s share of a claim if its Service is gone (asked of the API server).
async fn release_if_gone(
    ctx: &Ctx,
    ip: std::net::IpAddr,
    rv: &str,
    holder: &Holder,
) -> Result<Sent, kube::Error> {
    let svcs: Api<Service> = Api::namespaced(ctx.client.clone(), &holder.namespace);
    if let Some(s) = svcs.get_opt(&holder.name).await? {
        if s.metadata.uid.as_deref() == Some(&*holder.uid) {
            return Ok(Sent::Moot); // still there: the cache was behind
        }
    }
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.claims_namespace);
    let Some(l) = api.get_opt(&claims::name(ip)).await? else {
        return Ok(Sent::Moot);
    };
    let Some(c) = claims::from_lease(&l) else {
        return Ok(Sent::Moot);
    };
    if c.resource_version != rv {
        return Ok(Sent::Moot); // changed meanwhile: the next snapshot decides again
    }
    let rest: Vec<Holder> = c.holders.into_iter().filter(|h| h != holder).collect();
    info!(address = %ip, service = %holder, "the Service holding the address is gone");
    set_holders(ctx, ip, rv, &rest).await
}

/// Writes (or removes) vipr's allocation on the Service.
async fn annotate(
    ctx: &Ctx,
    holder: &Holder,
    allocation: &Option<(Vec<std::net::IpAddr>, String)>,
) -> Result<Sent, kube::Error> {
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &holder.namespace);
    let patch = match allocation {
        Some((ips, pool)) => {
            let list = ips
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",");
            serde_json::json!({"metadata": {
                "uid": &*holder.uid,
                "annotations": {ANNOTATION_IPS: list, ANNOTATION_ALLOCATED: pool},
                // kube-vip-cloud-provider counts only Services with this label as using
                // an address: kept so that going back to it never hands this one out twice.
                "labels": {"implementation": "kube-vip"},
            }})
        }
        None => serde_json::json!({"metadata": {
            "uid": &*holder.uid,
            "annotations": {ANNOTATION_IPS: null, ANNOTATION_ALLOCATED: null},
        }}),
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    gone_is_fine(
        api.patch(&holder.name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ()),
    )
}

/// The Event's object name: the Service and a hash of the decision.
pub fn event_name(e: &Event) -> String {
    let h = hash(&[&e.holder.uid, e.reason, &e.key]);
    let base: String = e.holder.name.chars().take(200).collect();
    format!("{base}.vipr-{h:016x}")
}

async fn event(ctx: &Ctx, e: &Event) -> Result<Sent, kube::Error> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let api: Api<K8sEvent> = Api::namespaced(ctx.client.clone(), &e.holder.namespace);
    let ev = K8sEvent {
        metadata: ObjectMeta {
            name: Some(event_name(e)),
            namespace: Some(e.holder.namespace.to_string()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(e.holder.namespace.to_string()),
            name: Some(e.holder.name.to_string()),
            uid: Some(e.holder.uid.to_string()),
            ..Default::default()
        },
        reason: Some(e.reason.to_string()),
        message: Some(e.message.clone()),
        type_: Some(if e.warning { "Warning" } else { "Normal" }.to_string()),
        source: Some(EventSource {
            component: Some("vipr".into()),
            host: Some(ctx.node.clone()),
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ev).await {
        Ok(_) => {
            info!(service = %e.holder, reason = e.reason, message = %e.message, "event");
            Ok(Sent::Made)
        }
        Err(kube::Error::Api(a)) if a.code == 409 || a.code == 404 => Ok(Sent::Moot),
        Err(err) => Err(err),
    }
}
