//! The async shell of leader election: runs one [`Elector`] against a real Lease
//! (coordination.k8s.io/v1). API calls run in their own tasks with timeouts so the elector's
//! deadline check is never late; a watch on the Lease tells followers at once when it is
//! released. Leadership is published on a `watch<bool>`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::election::{Elector, Input, LeaseRecord, Output, Timing};

/// What this node knows of a Lease's holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Held {
    /// No holder seen yet, or the last one seen was this node (before it saw another).
    #[default]
    Unknown,
    /// This node holds it.
    Us,
    /// Another node was seen holding it (client-go's `OnNewLeader` with another identity).
    Other,
}

/// Which Lease, and who we are.
#[derive(Debug, Clone)]
pub struct LeaseId {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// Holder identity (the node name).
    pub identity: String,
    /// Labels the Lease carries (kept on every write).
    pub labels: BTreeMap<String, String>,
}

fn to_record(l: &Lease) -> LeaseRecord {
    let s = l.spec.clone().unwrap_or_default();
    LeaseRecord {
        holder: s.holder_identity,
        lease_duration_seconds: s.lease_duration_seconds.unwrap_or(0),
        acquire_time: s.acquire_time.map(|t| SystemTime::from(t.0)),
        renew_time: s.renew_time.map(|t| SystemTime::from(t.0)),
        transitions: s.lease_transitions.unwrap_or(0),
    }
}

fn micro(t: Option<SystemTime>) -> Option<MicroTime> {
    t.and_then(|t| Timestamp::try_from(t).ok()).map(MicroTime)
}

fn to_lease(id: &LeaseId, r: &LeaseRecord, rv: Option<String>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(id.name.clone()),
            namespace: Some(id.namespace.clone()),
            resource_version: rv,
            labels: (!id.labels.is_empty()).then(|| id.labels.clone()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: r.holder.clone(),
            lease_duration_seconds: Some(r.lease_duration_seconds),
            acquire_time: micro(r.acquire_time),
            renew_time: micro(r.renew_time),
            lease_transitions: Some(r.transitions),
            ..Default::default()
        }),
    }
}

/// Runs the election until `cancel`, then releases the Lease if held (so another node takes
/// over at once) and returns. `leader` is [`Held::Us`] while this node holds the Lease,
/// [`Held::Other`] once another holder is seen.
pub async fn run(
    api: Api<Lease>,
    id: LeaseId,
    timing: Timing,
    leader: watch::Sender<Held>,
    cancel: CancellationToken,
) {
    let mut elector = Elector::new(id.identity.clone(), timing);
    let mut leading = false;
    let (tx, mut rx) = mpsc::channel::<Input>(16);
    // Calls must finish well inside the renew deadline.
    let call_timeout = (timing.renew_deadline / 2).max(Duration::from_millis(500));
    let mut next_tick = Instant::now();
    // Errors back off in the stream itself: the loop below must never wait, or a leader's
    // step-down at its renew deadline would be late.
    let mut events = watcher(
        api.clone(),
        watcher::Config::default().fields(&format!("metadata.name={}", id.name)),
    )
    .backoff(super::WatchBackoff::new())
    .boxed();
    loop {
        let input = tokio::select! {
            _ = cancel.cancelled() => Input::Release,
            _ = tokio::time::sleep_until(next_tick) => { next_tick = Instant::now() + Duration::from_secs(3600); Input::Tick }
            Some(i) = rx.recv() => i,
            Some(ev) = events.next() => match ev {
                Ok(watcher::Event::Apply(l)) | Ok(watcher::Event::InitApply(l)) => {
                    let rv = l.metadata.resource_version.clone().unwrap_or_default();
                    Input::Watched(Some((to_record(&l), rv)))
                }
                Ok(watcher::Event::Delete(_)) => Input::Watched(None),
                Ok(_) => continue,
                Err(e) => {
                    warn!(lease = %id.name, error = %e, "lease watch failed; polling continues");
                    continue;
                }
            },
        };
        let releasing = matches!(input, Input::Release);
        let outs = elector.handle(input, std::time::Instant::now(), SystemTime::now());
        for o in outs {
            match o {
                Output::Read => {
                    let (api, name, tx) = (api.clone(), id.name.clone(), tx.clone());
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(call_timeout, api.get_opt(&name)).await;
                        let input = match r {
                            Ok(Ok(l)) => Input::Observed(l.map(|l| {
                                let rv = l.metadata.resource_version.clone().unwrap_or_default();
                                (to_record(&l), rv)
                            })),
                            _ => Input::ReadFailed,
                        };
                        let _ = tx.send(input).await;
                    });
                }
                Output::Create(r) | Output::Update(r, _) if releasing => {
                    // The release write is the last thing we do: wait for it (bounded).
                    let lease = to_lease(&id, &r, None);
                    let res = tokio::time::timeout(call_timeout, async {
                        let Some(cur) = api.get_opt(&id.name).await? else {
                            return Ok(false);
                        };
                        let mut l = lease;
                        l.metadata.resource_version = cur.metadata.resource_version;
                        api.replace(&id.name, &PostParams::default(), &l)
                            .await
                            .map(|_| true)
                    })
                    .await;
                    match res {
                        Ok(Ok(true)) => info!(lease = %id.name, "lease released"),
                        // Deleted with its Service: nothing to release.
                        Ok(Ok(false)) => info!(lease = %id.name, "lease gone: nothing to release"),
                        _ => {
                            warn!(lease = %id.name, "could not release the lease; it expires on its own")
                        }
                    }
                }
                Output::Create(r) => {
                    let (api, lease, tx) = (api.clone(), to_lease(&id, &r, None), tx.clone());
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(
                            call_timeout,
                            api.create(&PostParams::default(), &lease),
                        )
                        .await;
                        let _ = tx.send(written(r)).await;
                    });
                }
                Output::Update(r, rv) => {
                    let (api, lease, tx, name) = (
                        api.clone(),
                        to_lease(&id, &r, Some(rv)),
                        tx.clone(),
                        id.name.clone(),
                    );
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(
                            call_timeout,
                            api.replace(&name, &PostParams::default(), &lease),
                        )
                        .await;
                        let _ = tx.send(written(r)).await;
                    });
                }
                Output::TickAfter(d) => next_tick = Instant::now() + d,
                Output::BecameLeader => {
                    info!(lease = %id.name, identity = %id.identity, "acquired the lease: leading");
                    leading = true;
                }
                Output::LostLeadership => {
                    warn!(lease = %id.name, "not leading any more");
                    leading = false;
                }
            }
        }
        let held = match elector.holder() {
            _ if leading => Held::Us,
            Some(h) if h != id.identity => Held::Other,
            _ => Held::Unknown,
        };
        leader.send_if_modified(|cur| std::mem::replace(cur, held) != held);
        if releasing {
            return;
        }
    }
}

fn written(r: Result<Result<Lease, kube::Error>, tokio::time::error::Elapsed>) -> Input {
    match r {
        Ok(Ok(l)) => Input::Written(l.metadata.resource_version.unwrap_or_default()),
        _ => Input::WriteFailed,
    }
}
