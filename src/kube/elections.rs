//! ARP mode's elections: which Leases this node competes for (the control-plane Lease
//! `vip_leasename`; one Lease for all Services `plndr-svcs-lock`, or with `svc_election` one
//! `kubevip-<service>` per Service that this node may serve), one election task per Lease,
//! and the combined [`Leadership`] published to the reconciler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lease::{self, LeaseId};
use super::watch::Services;
use crate::config::{Config, Mode};
use crate::election::Timing;
use crate::reconciler::Leadership;

/// kube-vip's Lease for all Services.
pub const SERVICES_LEASE: &str = "plndr-svcs-lock";

/// What a Lease stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    ControlPlane,
    AllServices,
    Service(String),
}

struct Running {
    cancel: CancellationToken,
    leader: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// The Leases wanted for this config and these Services.
fn wanted(c: &Config, services: &Services) -> BTreeMap<Scope, (String, String)> {
    let mut w = BTreeMap::new();
    if c.mode != Mode::Arp || !c.arp.leader_election {
        return w;
    }
    if c.cp_enable {
        w.insert(
            Scope::ControlPlane,
            (c.arp.namespace.clone(), c.arp.lease_name.clone()),
        );
    }
    if c.svc_enable {
        if c.arp.svc_election {
            // Only nodes that may serve a Service compete for it (externalTrafficPolicy: Local).
            for s in services.iter().filter(|s| s.served_here()) {
                w.insert(
                    Scope::Service(s.key()),
                    (s.namespace.clone(), format!("kubevip-{}", s.name)),
                );
            }
        } else {
            w.insert(
                Scope::AllServices,
                (c.arp.namespace.clone(), SERVICES_LEASE.to_string()),
            );
        }
    }
    w
}

fn leadership(running: &BTreeMap<Scope, Running>) -> Leadership {
    let mut l = Leadership::default();
    for (scope, r) in running {
        if !*r.leader.borrow() {
            continue;
        }
        match scope {
            Scope::ControlPlane => l.control_plane = true,
            Scope::AllServices => l.services = true,
            Scope::Service(k) => {
                l.per_service.insert(k.clone());
            }
        }
    }
    l
}

/// Runs the elections until `cancel`; then releases every Lease held and returns.
pub async fn run(
    client: Client,
    mut cfg: watch::Receiver<Arc<Config>>,
    mut services: watch::Receiver<Services>,
    tx: watch::Sender<Leadership>,
    cancel: CancellationToken,
) {
    let mut running: BTreeMap<Scope, Running> = BTreeMap::new();
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::channel::<()>(64);
    loop {
        let c = cfg.borrow_and_update().clone();
        let want = wanted(&c, &services.borrow_and_update());
        let timing = Timing {
            lease_duration: c.arp.lease_duration,
            renew_deadline: c.arp.renew_deadline,
            retry_period: c.arp.retry_period,
        };
        running.retain(|scope, r| {
            let keep = want.contains_key(scope);
            if !keep {
                r.cancel.cancel();
            }
            keep
        });
        for (scope, (ns, name)) in want {
            if running.contains_key(&scope) {
                continue;
            }
            let (ltx, lrx) = watch::channel(false);
            let child = CancellationToken::new();
            let id = LeaseId {
                namespace: ns.clone(),
                name,
                identity: c.node_name.clone(),
            };
            let api: Api<Lease> = Api::namespaced(client.clone(), &ns);
            let task = tokio::spawn(lease::run(api, id, timing, ltx, child.clone()));
            let mut watch_leader = lrx.clone();
            let notify = changed_tx.clone();
            tokio::spawn(async move {
                while watch_leader.changed().await.is_ok() {
                    if notify.send(()).await.is_err() {
                        return;
                    }
                }
            });
            running.insert(
                scope,
                Running {
                    cancel: child,
                    leader: lrx,
                    task,
                },
            );
        }
        tx.send_if_modified(|cur| {
            let new = leadership(&running);
            let changed = *cur != new;
            *cur = new;
            changed
        });
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = cfg.changed() => if r.is_err() { break },
            r = services.changed() => if r.is_err() { break },
            Some(()) = changed_rx.recv() => {}
        }
    }
    // Release every Lease (each task gives up its Lease before returning).
    let tasks: Vec<JoinHandle<()>> = running
        .into_values()
        .map(|r| {
            r.cancel.cancel();
            r.task
        })
        .collect();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    tx.send_replace(Leadership::default());
}
