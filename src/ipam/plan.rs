//! The allocator's pure core: for every Service of type LoadBalancer, the addresses served,
//! refused (and why) or still pending, and the writes that move the cluster towards that:
//! claims to create, join or release, the `kube-vip.io/loadbalancerIPs` annotation, Events.
//! Level-triggered: the same inputs give the same plan on every node, and a write that is
//! already done simply no longer appears.
//!
//! Rules, in order, for an address a Service asks for (annotation, `spec.loadBalancerIP`,
//! or another controller's status):
//! 1. never a VIP: unspecified, loopback, link-local, multicast, broadcast, this node's own
//!    addresses, a BGP peer's, the control-plane VIP;
//! 2. with pools (or `vipr_pools_required`): served once its claim names the Service; a new
//!    claim only inside a pool the namespace may use; claimed by another Service: shared
//!    when both allow it (the pool's `allow-share` with no port clash, or MetalLB's
//!    `allow-shared-ip` key), refused otherwise;
//! 3. without pools: served as requested (vipr before pools; a VIP shared by several
//!    Services stays until the last one goes).
//!
//! A Service that asks for nothing gets one address per family its `ipFamilyPolicy` needs,
//! from the first auto-assign pool of its namespace that has one free (ConfigMap pools after
//! `vipr_pools`). An address it holds stays its own while it exists and is a LoadBalancer,
//! even when no pool contains it any more (no surprise renumbering; an Event says so).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::configmap::ConfigMapPools;
use super::pools::Pool;
use super::{never_a_vip, Claim, Holder, Pending, Refusal};

mod allocate;

/// Which families a Service needs (`spec.ipFamilyPolicy`, `spec.ipFamilies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Families {
    /// One address: IPv4 (`Some(true)`), IPv6, or whichever a pool has (IPv4 first).
    Single(Option<bool>),
    /// Both where pools have them, the primary (`true`: IPv4) first.
    PreferDual(bool),
    /// Both, or none.
    RequireDual(bool),
}

/// A Service as the allocator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svc {
    /// Who it is.
    pub holder: Holder,
    /// `type: LoadBalancer`.
    pub load_balancer: bool,
    /// Served by this node's filter (namespace, loadBalancerClass).
    pub selected: bool,
    /// The addresses it asks for, in order (text that is not an address as `Err`).
    pub requested: Vec<Result<IpAddr, String>>,
    /// Families needed when it asks for none.
    pub families: Families,
    /// `(protocol, port)` of its ports.
    pub ports: Vec<(String, i32)>,
    /// MetalLB's `allow-shared-ip` key.
    pub sharing_key: Option<String>,
    /// MetalLB's backend key: "" for `externalTrafficPolicy: Cluster`, the selector for Local.
    pub backend_key: String,
    /// vipr allocated its address (`vipr.io/allocated-from`): the annotation is vipr's.
    pub allocated_from: Option<String>,
    /// `metadata.creationTimestamp` (RFC 3339): older Services get addresses first, in the
    /// same order on every node.
    pub created: String,
}

/// What this node knows that the cluster does not decide.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// This node's name.
    pub node: String,
    /// Its own addresses (not vipr's).
    pub node_addrs: BTreeSet<IpAddr>,
    /// Its BGP peers' addresses.
    pub peers: BTreeSet<IpAddr>,
    /// The control-plane VIPs.
    pub control_plane: BTreeSet<IpAddr>,
}

/// Where addresses come from.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    /// `vipr_pools`, in order.
    pub configured: Vec<Pool>,
    /// kube-vip-cloud-provider's ConfigMap, when there is one.
    pub configmap: Option<ConfigMapPools>,
    /// `vipr_pools_required`: refuse every request even with no pool at all.
    pub required: bool,
}

impl Pools {
    /// Whether addresses are managed (claims, pools) or requests served as given.
    pub fn managed(&self) -> bool {
        self.required
            || !self.configured.is_empty()
            || self.configmap.as_ref().is_some_and(|c| !c.is_empty())
    }

    /// The pools a namespace may use, in order (an unusable ConfigMap pool as `Err`).
    pub fn for_namespace(&self, ns: &str) -> Vec<Result<Pool, String>> {
        let mut out: Vec<Result<Pool, String>> = self
            .configured
            .iter()
            .filter(|p| p.serves(ns))
            .cloned()
            .map(Ok)
            .collect();
        if let Some(c) = &self.configmap {
            match c.pool_for(ns) {
                Ok(Some(p)) => out.push(Ok(p)),
                Ok(None) => {}
                Err(e) => out.push(Err(e)),
            }
        }
        out
    }
}

/// A write the shell carries out (each idempotent: the plan asks again until it is seen).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Write {
    /// Create the claim of `ip` for these holders (409 means someone was first).
    Claim {
        /// The address.
        ip: IpAddr,
        /// The pool.
        pool: String,
        /// Its holder.
        holder: Holder,
    },
    /// Replace the holders of a claim (join a shared address, or leave one).
    Holders {
        /// The address.
        ip: IpAddr,
        /// The claim's resourceVersion it was computed from.
        resource_version: String,
        /// The new holders (empty: delete the claim).
        holders: Vec<Holder>,
    },
    /// Release `holder`'s share of `ip` if the Service is really gone (the shell asks the
    /// API server, not its cache).
    ReleaseIfGone {
        /// The address.
        ip: IpAddr,
        /// The claim's resourceVersion.
        resource_version: String,
        /// The holder that looks gone.
        holder: Holder,
    },
    /// Write the allocation to the Service: `kube-vip.io/loadbalancerIPs` and
    /// `vipr.io/allocated-from` (`None`: remove both, vipr's allocation ended).
    Annotate {
        /// The Service.
        holder: Holder,
        /// The addresses and their pool.
        allocation: Option<(Vec<IpAddr>, String)>,
    },
    /// An Event on the Service.
    Event(Event),
}

/// An Event, named after the decision so that every node writing it makes one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Event {
    /// The Service.
    pub holder: Holder,
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// `IPAllocated`, `AddressRefused`, `AllocationFailed`, `AddressOutsidePool`, and the
    /// watcher's `AnnotationIgnored` (`kube/annotations.rs`).
    pub reason: &'static str,
    /// The text `kubectl describe` shows.
    pub message: String,
    /// What identifies the decision (with the Service's UID): the same key, one Event.
    pub key: String,
}

/// What one Service gets on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Addresses to serve.
    pub served: Vec<IpAddr>,
    /// Addresses asked for and refused.
    pub refused: Vec<(IpAddr, Refusal)>,
    /// Why it has no address (yet), when it has none.
    pub pending: Option<Pending>,
    /// vipr allocated the served addresses (not asked for).
    pub allocated: bool,
}

/// Every input of the plan: the allocator's state ([`super::state::Allocator`]) as seen
/// while it replans the Services that changed.
pub(crate) struct Inputs<'a> {
    /// Every Service in the namespaces this node watches, by UID.
    pub services: &'a HashMap<std::sync::Arc<str>, std::sync::Arc<Svc>>,
    /// Every claim, by address.
    pub claims: &'a BTreeMap<IpAddr, Claim>,
    /// Who asks for each address (UIDs).
    pub requested: &'a HashMap<IpAddr, Vec<std::sync::Arc<str>>>,
    /// The pools.
    pub pools: &'a Pools,
    /// This node's facts.
    pub local: &'a Local,
    /// The namespace this node watches (`None`: all); it releases claims only there.
    pub watched: Option<&'a str>,
    /// The time, for how old a claim is.
    pub now: SystemTime,
}

fn event(
    holder: &Holder,
    warning: bool,
    reason: &'static str,
    message: String,
    key: String,
) -> Write {
    Write::Event(Event {
        holder: holder.clone(),
        warning,
        reason,
        message,
        key,
    })
}

/// Addresses handed out and not yet seen claimed, so that Services planned one after the
/// other do not all get the same address: by address, the UID it went to; and per pool and
/// family where the search stopped.
#[derive(Debug, Default)]
pub(crate) struct Proposals {
    pub taken: HashMap<IpAddr, std::sync::Arc<str>>,
    pub cursor: BTreeMap<(String, bool), IpAddr>,
    /// Taken since the caller last emptied it.
    pub recent: Vec<IpAddr>,
}

impl Proposals {
    fn take(&mut self, ip: IpAddr, uid: &std::sync::Arc<str>) {
        self.taken.insert(ip, uid.clone());
        self.recent.push(ip);
    }

    fn free_for(&self, ip: &IpAddr, uid: &str) -> bool {
        self.taken.get(ip).is_none_or(|u| **u == *uid)
    }
}

fn ports_clash(a: &[(String, i32)], b: &[(String, i32)]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|p| b.contains(p))
}

/// How long an allocation counts as new: its `IPAllocated` Event is written while its claim
/// is younger (a restart does not repeat every Event of the cluster).
pub const FRESH: Duration = Duration::from_secs(600);

impl Inputs<'_> {
    /// The writes for a claim itself: release the shares of holders that are gone (if this
    /// node watches their namespace) or are no longer LoadBalancers.
    pub fn claim(&self, c: &Claim, w: &mut Vec<Write>) {
        for h in &c.holders {
            match self.services.get(&h.uid) {
                None if self.watched.is_none_or(|n| *n == *h.namespace) => {
                    w.push(Write::ReleaseIfGone {
                        ip: c.ip,
                        resource_version: c.resource_version.clone(),
                        holder: h.clone(),
                    })
                }
                Some(s) if !s.load_balancer => w.push(leave(c, h)),
                _ => {}
            }
        }
    }

    /// The decision for one Service (`None` when it is none of this node's business) and
    /// the writes it calls for; `mine` are the claims it holds.
    pub fn service(
        &self,
        s: &Svc,
        mine: &[&Claim],
        proposals: &mut Proposals,
        w: &mut Vec<Write>,
    ) -> Option<Decision> {
        if !s.load_balancer {
            if s.allocated_from.is_some() {
                w.push(Write::Annotate {
                    holder: s.holder.clone(),
                    allocation: None,
                });
            }
            return None;
        }
        if !s.selected {
            return None;
        }
        Some(if !self.pools.managed() {
            self.as_requested(s, w)
        } else if s.requested.is_empty() || s.allocated_from.is_some() {
            // vipr's own allocation: the claims it holds are the truth, the annotation
            // only their copy (two nodes may have annotated from different views).
            self.allocate(s, mine, proposals, w)
        } else {
            self.requested(s, mine, w)
        })
    }

    /// Rule 1: never a VIP, with what this node knows.
    fn never(&self, ip: IpAddr) -> Option<Refusal> {
        never_a_vip(ip).or_else(|| {
            if self.local.control_plane.contains(&ip) {
                Some(Refusal::ControlPlaneVip)
            } else if self.local.peers.contains(&ip) {
                Some(Refusal::PeerAddress)
            } else if self.local.node_addrs.contains(&ip) {
                Some(Refusal::NodeAddress(self.local.node.clone()))
            } else {
                None
            }
        })
    }

    fn refuse(&self, s: &Svc, ip: IpAddr, r: Refusal, d: &mut Decision, w: &mut Vec<Write>) {
        let node = if r.node_local() {
            format!(" (node {})", self.local.node)
        } else {
            String::new()
        };
        w.push(event(
            &s.holder,
            true,
            "AddressRefused",
            format!("{ip} is not served: it is {r}{node}"),
            format!("refused/{ip}/{}{node}", r.label()),
        ));
        d.refused.push((ip, r));
    }

    fn not_an_address(&self, s: &Svc, text: &str, w: &mut Vec<Write>) {
        let r = Refusal::NotAnAddress(text.to_string());
        w.push(event(
            &s.holder,
            true,
            "AddressRefused",
            r.to_string(),
            format!("refused/{}/{text}", r.label()),
        ));
    }

    /// Rule 3: no pools, requests served as given (after rule 1).
    fn as_requested(&self, s: &Svc, w: &mut Vec<Write>) -> Decision {
        let mut d = Decision::default();
        for r in &s.requested {
            match r {
                Err(text) => self.not_an_address(s, text, w),
                Ok(ip) => match self.never(*ip) {
                    Some(r) => self.refuse(s, *ip, r, &mut d, w),
                    None => d.served.push(*ip),
                },
            }
        }
        if s.requested.is_empty() {
            d.pending = Some(Pending::NoPool(format!("namespace {}", s.holder.namespace)));
            w.push(event(
                &s.holder,
                true,
                "AllocationFailed",
                "no address: vipr allocates only from address pools (vipr_pools or the kubevip ConfigMap), and none is defined".into(),
                "nopool".into(),
            ));
        }
        d
    }

    /// May `s` share `c` with its holders?
    fn may_share(&self, s: &Svc, c: &Claim, pool_allows: bool) -> bool {
        c.holders.iter().all(|h| {
            if h.uid == s.holder.uid {
                return true;
            }
            let Some(o) = self.services.get(&h.uid) else {
                return false; // unknown holder: never share with it
            };
            if ports_clash(&s.ports, &o.ports) {
                return false;
            }
            let metallb = s.sharing_key.is_some()
                && s.sharing_key == o.sharing_key
                && s.backend_key == o.backend_key;
            pool_allows || metallb
        })
    }

    /// The pool `ip` would be claimed from for `s`, or why there is none.
    fn pool_of(&self, s: &Svc, ip: IpAddr) -> Result<Pool, Refusal> {
        let mut bad = None;
        for p in self.pools.for_namespace(&s.holder.namespace) {
            match p {
                Ok(p) if p.contains(ip) => return Ok(p),
                Ok(_) => {}
                Err(e) => bad = Some(e),
            }
        }
        Err(match bad {
            Some(e) => Refusal::BadPool(e),
            None => Refusal::OutsidePools(s.holder.namespace.to_string()),
        })
    }

    /// Rule 2 for the addresses a Service asks for.
    fn requested(&self, s: &Svc, mine: &[&Claim], w: &mut Vec<Write>) -> Decision {
        let mut d = Decision {
            allocated: s.allocated_from.is_some(),
            ..Decision::default()
        };
        let mut wanted = BTreeSet::new();
        for r in &s.requested {
            let ip = match r {
                Err(text) => {
                    self.not_an_address(s, text, w);
                    continue;
                }
                Ok(ip) => *ip,
            };
            if let Some(r) = self.never(ip) {
                self.refuse(s, ip, r, &mut d, w);
                continue;
            }
            wanted.insert(ip);
            if mine.iter().any(|c| c.ip == ip) {
                d.served.push(ip);
                self.outside_pools(s, ip, w);
                continue;
            }
            match (self.pool_of(s, ip), self.claims.get(&ip)) {
                (Err(r), _) => self.refuse(s, ip, r, &mut d, w),
                (Ok(p), Some(c)) if self.may_share(s, c, p.allow_share) => {
                    w.push(join(c, &s.holder));
                    d.pending.get_or_insert(Pending::Claiming);
                }
                (Ok(_), Some(c)) => {
                    let by = c.holders.iter().map(|h| h.to_string()).collect::<Vec<_>>();
                    self.refuse(s, ip, Refusal::Taken(by.join(", ")), &mut d, w);
                }
                (Ok(p), None) => {
                    w.push(Write::Claim {
                        ip,
                        pool: p.name,
                        holder: s.holder.clone(),
                    });
                    d.pending.get_or_insert(Pending::Claiming);
                }
            }
        }
        // A changed request: the old claims go.
        for c in mine.iter().filter(|c| !wanted.contains(&c.ip)) {
            w.push(leave(c, &s.holder));
        }
        if !d.served.is_empty() {
            d.pending = None;
        }
        d
    }

    /// The Event that a held address is in no pool any more (it stays the Service's).
    fn outside_pools(&self, s: &Svc, ip: IpAddr, w: &mut Vec<Write>) {
        if self.pool_of(s, ip).is_err() {
            w.push(event(
                &s.holder,
                false,
                "AddressOutsidePool",
                format!(
                    "{ip} is in no address pool any more; the Service keeps it until it is deleted"
                ),
                format!("outside/{ip}"),
            ));
        }
    }
}

/// `holder` joins the claim.
fn join(c: &Claim, holder: &Holder) -> Write {
    let mut holders = c.holders.clone();
    holders.push(holder.clone());
    holders.sort();
    holders.dedup();
    Write::Holders {
        ip: c.ip,
        resource_version: c.resource_version.clone(),
        holders,
    }
}

/// `holder` leaves the claim (the last one deletes it).
fn leave(c: &Claim, holder: &Holder) -> Write {
    Write::Holders {
        ip: c.ip,
        resource_version: c.resource_version.clone(),
        holders: c.holders.iter().filter(|h| *h != holder).cloned().collect(),
    }
}

#[cfg(test)]
mod tests;
