//! Control-plane load balancing (`lb_enable`): the control-plane VIP on `lb_port` (TCP) is
//! spread over every API server, in the kernel, by IPVS where it exists and by nftables NAT
//! otherwise. In BGP mode every node programs it; in ARP mode only the leader.
//!
//! ```text
//!   config ─┐   leader ─┐   backends.rs (Node reflector | static list) ─┐
//!           v           v                                               v
//!   task.rs: run()  ── targets ──> health.rs (one TCP check task per backend)
//!           │   <── (backend, ok) ───────┘
//!           │ desired() ─> Table ──┐
//!           │ observe() ─> Table ──┴─> diff() ─> [Op] ─> LbBackend::apply
//!           v                                            ├── ipvs.rs (generic netlink "IPVS")
//!   cancel: remove_all() (exactly vipr's own objects)    └── nft.rs  (`nft -f -`, table inet vipr)
//! ```
//!
//! This file owns the vocabulary ([`Table`], [`Op`]), the [`LbBackend`] trait both data
//! planes implement, and the pure core: [`desired`] (what should be programmed) and [`diff`]
//! (what to change). No tokio, no I/O here. The rule that matters (kube-vip #745): a virtual
//! service vipr did not create is never changed, flushed or deleted; [`diff`] skips desired
//! services whose address is taken by someone else and reports them instead.

pub mod backends;
pub mod health;
pub mod ipvs;
mod kinds;
pub mod nft;
mod task;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};

pub use kinds::{FwdMethod, Kind, Scheduler};
pub use task::{run, Place};

use crate::error::LbError;

/// One virtual service as vipr wants it (or found it). Its key in a [`Table`] is the
/// virtual address `VIP:lb_port`; the protocol is always TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Scheduler.
    pub scheduler: Scheduler,
    /// Forwarding method of every destination.
    pub fwd: FwdMethod,
    /// Real servers (address and port), weight 1 each.
    pub dests: BTreeSet<SocketAddr>,
}

/// Virtual services by `VIP:port`.
pub type Table = BTreeMap<SocketAddr, Service>;

/// What a data plane found in the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// vipr's own services, as programmed.
    pub ours: Table,
    /// Addresses of TCP virtual services that someone else created: never touched.
    pub foreign: BTreeSet<SocketAddr>,
}

/// One change to a data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create a virtual service.
    AddService {
        /// VIP:port.
        key: SocketAddr,
        /// Its scheduler.
        scheduler: Scheduler,
    },
    /// Change the scheduler of one of vipr's services.
    SetService {
        /// VIP:port.
        key: SocketAddr,
        /// The new scheduler.
        scheduler: Scheduler,
    },
    /// Delete one of vipr's services (with its destinations).
    DelService {
        /// VIP:port.
        key: SocketAddr,
    },
    /// Add a real server.
    AddDest {
        /// VIP:port.
        key: SocketAddr,
        /// The real server.
        dest: SocketAddr,
        /// How packets reach it.
        fwd: FwdMethod,
    },
    /// Change the forwarding method of a real server.
    SetDest {
        /// VIP:port.
        key: SocketAddr,
        /// The real server.
        dest: SocketAddr,
        /// The new forwarding method.
        fwd: FwdMethod,
    },
    /// Remove a real server.
    DelDest {
        /// VIP:port.
        key: SocketAddr,
        /// The real server.
        dest: SocketAddr,
    },
}

impl Op {
    /// The service the change is about.
    pub fn key(&self) -> SocketAddr {
        match self {
            Op::AddService { key, .. }
            | Op::SetService { key, .. }
            | Op::DelService { key }
            | Op::AddDest { key, .. }
            | Op::SetDest { key, .. }
            | Op::DelDest { key, .. } => *key,
        }
    }
}

/// A data plane that can program virtual services. Implemented by [`ipvs::Ipvs`] and
/// [`nft::Nft`]; both pass the same tests.
pub trait LbBackend: Send {
    /// Which one this is.
    fn kind(&self) -> Kind;

    /// Reads the kernel: vipr's own services exactly as programmed, and the addresses of
    /// services owned by others.
    fn observe(&mut self) -> impl Future<Output = Result<Observed, LbError>> + Send;

    /// Applies `ops` (from [`diff`]); `target` is vipr's whole table once they are applied
    /// (a data plane that rewrites a changed service as a unit reads it from there).
    fn apply(
        &mut self,
        ops: &[Op],
        target: &Table,
    ) -> impl Future<Output = Result<(), LbError>> + Send;

    /// Removes every object vipr created, and nothing else.
    fn remove_all(&mut self) -> impl Future<Output = Result<(), LbError>> + Send;
}

/// What the load balancer should serve, from configuration and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The control-plane VIPs (empty unless `cp_enable`).
    pub vips: Vec<IpAddr>,
    /// `lb_port`.
    pub port: u16,
    /// Scheduler.
    pub scheduler: Scheduler,
    /// Forwarding method.
    pub fwd: FwdMethod,
    /// Whether this node programs the service (always in BGP mode; the leader in ARP mode).
    pub leader: bool,
}

/// The desired table: one service per VIP, with every healthy backend of the VIP's address
/// family (IPVS cannot forward across families except by tunnel; nftables NAT cannot at
/// all). A service with no healthy backend stays, empty: packets then reach whatever
/// listens on the node itself, and the service is ready the moment a backend recovers.
pub fn desired(intent: &Intent, healthy: &BTreeSet<SocketAddr>) -> Table {
    if !intent.leader {
        return Table::new();
    }
    intent
        .vips
        .iter()
        .map(|vip| {
            let dests = healthy
                .iter()
                .filter(|d| d.is_ipv4() == vip.is_ipv4())
                .copied()
                .collect();
            (
                SocketAddr::new(*vip, intent.port),
                Service {
                    scheduler: intent.scheduler,
                    fwd: intent.fwd,
                    dests,
                },
            )
        })
        .collect()
}

/// The changes that turn `applied` into `desired`, and the desired services that cannot be
/// created because their address belongs to someone else (`foreign`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In order: per service, creation before its destinations, new destinations before
    /// removed ones (a service never runs empty while it is being changed).
    pub ops: Vec<Op>,
    /// Desired services left alone: someone else's service has that address.
    pub blocked: Vec<SocketAddr>,
    /// vipr's table after the ops.
    pub target: Table,
}

/// The pure diff. Only services in `applied` (vipr's own) are ever changed or deleted; a
/// desired service whose address is in `foreign` is not created.
pub fn diff(applied: &Table, desired: &Table, foreign: &BTreeSet<SocketAddr>) -> Plan {
    let mut plan = Plan::default();
    for (key, want) in desired {
        if foreign.contains(key) && !applied.contains_key(key) {
            plan.blocked.push(*key);
            continue;
        }
        plan.target.insert(*key, want.clone());
        match applied.get(key) {
            None => {
                plan.ops.push(Op::AddService {
                    key: *key,
                    scheduler: want.scheduler,
                });
                for d in &want.dests {
                    plan.ops.push(Op::AddDest {
                        key: *key,
                        dest: *d,
                        fwd: want.fwd,
                    });
                }
            }
            Some(have) => {
                if have.scheduler != want.scheduler {
                    plan.ops.push(Op::SetService {
                        key: *key,
                        scheduler: want.scheduler,
                    });
                }
                for d in want.dests.difference(&have.dests) {
                    plan.ops.push(Op::AddDest {
                        key: *key,
                        dest: *d,
                        fwd: want.fwd,
                    });
                }
                if have.fwd != want.fwd {
                    for d in want.dests.intersection(&have.dests) {
                        plan.ops.push(Op::SetDest {
                            key: *key,
                            dest: *d,
                            fwd: want.fwd,
                        });
                    }
                }
                for d in have.dests.difference(&want.dests) {
                    plan.ops.push(Op::DelDest {
                        key: *key,
                        dest: *d,
                    });
                }
            }
        }
    }
    for key in applied.keys() {
        if !desired.contains_key(key) {
            plan.ops.push(Op::DelService { key: *key });
        }
    }
    plan
}

#[cfg(test)]
mod tests;
