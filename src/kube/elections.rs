//! The elections: which Leases this node competes for, one election task per Lease, and
//! the combined [`Leadership`] published to the reconciler.
//!
//! ARP mode: the control-plane Lease `vip_leasename`; one Lease for all Services
//! `svc_leasename`; with `svc_election` one per Service that this node may serve, and with
//! `per_service_election_on_demand` one per Service annotated
//! `kube-vip.io/forcePerServiceElection: "true"` (the others share `svc_leasename`). A
//! per-Service Lease is `kubevip-<namespace>.<service>` in `cp_namespace`, deleted with its
//! Service by [`service_leases::sweep`]. BGP mode: only the control-plane Lease, with
//! `vipr_bgp_leader_only`. The Services' Leases, held or not, also go to `/metrics`
//! ([`LeaseMetrics`]) as kube-vip reports them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lease::{self, Held, LeaseId};
use super::service_leases;
use crate::config::{ArpSettings, ControlPlane, Mode, ServiceSettings};
use crate::model::{Leadership, LeaseMetrics, LeaseSeen, Services};

/// What a Lease stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    ControlPlane,
    AllServices,
    Service(String),
}

struct Running {
    cancel: CancellationToken,
    leader: watch::Receiver<Held>,
    task: JoinHandle<()>,
}

/// The sections the elections follow.
pub struct Inputs {
    /// ARP or BGP (fixed): in BGP mode only the control-plane Lease, and only with
    /// `vipr_bgp_leader_only`.
    pub mode: Mode,
    /// Lease election settings.
    pub arp: watch::Receiver<Arc<ArpSettings>>,
    /// Whether the control-plane VIP is served.
    pub control_plane: watch::Receiver<Arc<ControlPlane>>,
    /// Whether Services are served.
    pub services_cfg: watch::Receiver<Arc<ServiceSettings>>,
    /// The Services.
    pub services: watch::Receiver<Services>,
}

/// A Lease: namespace, name, labels.
type LeaseAt = (String, String, BTreeMap<String, String>);

/// The Leases wanted for these settings and these Services: in ARP mode the control-plane
/// Lease and the Services' Leases; in BGP mode the control-plane Lease with
/// `vipr_bgp_leader_only`, nothing otherwise (every node advertises).
fn wanted(
    mode: Mode,
    arp: &ArpSettings,
    cp: &ControlPlane,
    svc: &ServiceSettings,
    services: &Services,
) -> BTreeMap<Scope, LeaseAt> {
    let mut w = BTreeMap::new();
    let Some(e) = &arp.election else { return w };
    if mode == Mode::Bgp {
        if cp.enabled && e.bgp_leader_only {
            w.insert(
                Scope::ControlPlane,
                (
                    e.lease_namespace.clone(),
                    e.lease_name.clone(),
                    BTreeMap::new(),
                ),
            );
        }
        return w;
    }
    if cp.enabled && e.control_plane {
        w.insert(
            Scope::ControlPlane,
            (
                e.lease_namespace.clone(),
                e.lease_name.clone(),
                BTreeMap::new(),
            ),
        );
    }
    if svc.enabled {
        // Services with a Lease of their own (all with svc_election, the annotated ones on
        // demand); only nodes that may serve one compete for it (externalTrafficPolicy: Local).
        for s in services
            .values()
            .filter(|s| s.own_lease(e.per_service, e.on_demand) && s.eligible().is_ok())
        {
            w.insert(
                Scope::Service(s.key()),
                (
                    e.namespace.clone(),
                    service_leases::lease_name(&s.namespace, &s.name),
                    service_leases::labels(&s.namespace, &s.name),
                ),
            );
        }
        // The others share the services Lease (kube-vip runs it even when every Service is
        // annotated: `pkg/manager/worker/common.go` `GlobalLeader`).
        if !e.per_service {
            w.insert(
                Scope::AllServices,
                (
                    e.services_lease_namespace.clone(),
                    e.services_lease_name.clone(),
                    BTreeMap::new(),
                ),
            );
        }
    }
    w
}

type Runs = BTreeMap<Scope, (Running, LeaseAt, crate::election::Timing)>;

fn leadership(running: &Runs) -> Leadership {
    let mut l = Leadership::default();
    for (scope, (r, _, _)) in running {
        let held = *r.leader.borrow();
        let (us, other) = (held == Held::Us, held == Held::Other);
        match scope {
            Scope::ControlPlane => {
                l.control_plane = us;
                l.taken.control_plane = other;
            }
            Scope::AllServices => {
                l.services = us;
                l.taken.services = other;
            }
            Scope::Service(k) => {
                if us {
                    l.per_service.insert(k.clone());
                }
                if other {
                    l.taken.per_service.insert(k.clone());
                }
            }
        }
    }
    l
}

/// The Services' Leases contended and whether each is held, for [`LeaseMetrics`].
fn service_leases(running: &Runs) -> Vec<LeaseSeen> {
    running
        .iter()
        .filter_map(|(scope, (r, (_, name, _), _))| {
            let service = match scope {
                Scope::ControlPlane => return None,
                Scope::AllServices => None,
                Scope::Service(k) => k
                    .split_once('/')
                    .map(|(ns, n)| (ns.to_string(), n.to_string())),
            };
            Some((name.clone(), service, *r.leader.borrow() == Held::Us))
        })
        .collect()
}

/// Runs the elections of node `identity` until `cancel`; then releases every Lease held and
/// returns. A Lease whose name, namespace or timing changes is released and contended anew.
pub async fn run(
    client: Client,
    identity: String,
    mut i: Inputs,
    tx: watch::Sender<Leadership>,
    leases: Arc<LeaseMetrics>,
    cancel: CancellationToken,
) {
    let mut running: Runs = BTreeMap::new();
    if i.mode == Mode::Arp {
        tokio::spawn(service_leases::sweep(
            client.clone(),
            i.arp.clone(),
            i.services.clone(),
            cancel.clone(),
        ));
    }
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::channel::<()>(64);
    loop {
        let arp = i.arp.borrow_and_update().clone();
        let want = wanted(
            i.mode,
            &arp,
            &i.control_plane.borrow_and_update(),
            &i.services_cfg.borrow_and_update(),
            &i.services.borrow_and_update(),
        );
        let Some(timing) = arp.election.as_ref().map(|e| e.timing) else {
            for (_, (r, _, _)) in std::mem::take(&mut running) {
                r.cancel.cancel();
            }
            tx.send_replace(Leadership::default());
            leases.update([]);
            tokio::select! {
                _ = cancel.cancelled() => break,
                Ok(()) = i.arp.changed() => {}
                Ok(()) = i.control_plane.changed() => {}
                Ok(()) = i.services_cfg.changed() => {}
            }
            continue;
        };
        running.retain(|scope, (r, lease, t)| {
            let keep = want.get(scope) == Some(lease) && *t == timing;
            if !keep {
                r.cancel.cancel();
            }
            keep
        });
        for (scope, (ns, name, labels)) in want {
            if running.contains_key(&scope) {
                continue;
            }
            let lease = (ns.clone(), name.clone(), labels.clone());
            let (ltx, lrx) = watch::channel(Held::Unknown);
            let child = CancellationToken::new();
            let id = LeaseId {
                namespace: ns.clone(),
                name,
                identity: identity.clone(),
                labels,
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
                (
                    Running {
                        cancel: child,
                        leader: lrx,
                        task,
                    },
                    lease,
                    timing,
                ),
            );
        }
        tx.send_if_modified(|cur| {
            let new = leadership(&running);
            let changed = *cur != new;
            *cur = new;
            changed
        });
        leases.update(service_leases(&running));
        tokio::select! {
            _ = cancel.cancelled() => break,
            Ok(()) = i.arp.changed() => {}
            Ok(()) = i.control_plane.changed() => {}
            Ok(()) = i.services_cfg.changed() => {}
            Ok(()) = i.services.changed() => {}
            Some(()) = changed_rx.recv() => {}
        }
    }
    // Release every Lease (each task gives up its Lease before returning).
    let tasks: Vec<JoinHandle<()>> = running
        .into_values()
        .map(|(r, _, _)| {
            r.cancel.cancel();
            r.task
        })
        .collect();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    tx.send_replace(Leadership::default());
    leases.update([]);
}
