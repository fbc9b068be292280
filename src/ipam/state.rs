//! The allocator's state between events, and what one event costs: Services, claims and
//! pools are fed in as they change, and only the Services a change can affect are planned
//! again. A new Service costs one plan; a claim that appears or goes costs the plans of its
//! holders, of the Services asking for its address, and (when an address frees up) of the
//! Services waiting for one. Pools or this node's facts changing replans everything (rare).
//! Pure: no I/O, no clock (the shell passes the time in).
//!
//! Indexes kept so that nothing scans the cluster: claims by holder, requesters by address,
//! proposals (addresses handed out and not yet claimed) by address and by Service.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::plan::{Decision, Inputs, Local, Pools, Proposals, Svc, Write};
use super::{Claim, Pending};

/// One Service planned: `(uid, namespace/name, decision, writes)`; the name is empty when
/// the Service is gone.
pub type Planned = (Arc<str>, String, Option<Decision>, Vec<Write>);

/// What one [`Allocator::plan`] produced: for each Service planned (by UID) its decision
/// (`None`: gone or none of this node's business) and writes, and for each claim looked at
/// its own writes (releases).
#[derive(Debug, Default)]
pub struct Replanned {
    /// `(uid, namespace/name, decision, writes)`, oldest Service first.
    pub services: Vec<Planned>,
    /// `(address, writes)`.
    pub claims: Vec<(IpAddr, Vec<Write>)>,
}

/// The allocator between events.
#[derive(Debug, Default)]
pub struct Allocator {
    services: HashMap<Arc<str>, Arc<Svc>>,
    claims: BTreeMap<IpAddr, Claim>,
    /// Claims by holder UID.
    held: HashMap<Arc<str>, BTreeSet<IpAddr>>,
    /// Requesters (UIDs) by address.
    requested: HashMap<IpAddr, Vec<Arc<str>>>,
    proposals: Proposals,
    /// Addresses proposed per UID (to drop them when it is planned again).
    proposed: HashMap<Arc<str>, Vec<IpAddr>>,
    /// Services waiting for an address to free up.
    waiting: HashSet<Arc<str>>,
    pools: Pools,
    local: Local,
    watched: Option<String>,
    dirty: HashSet<Arc<str>>,
    dirty_claims: BTreeSet<IpAddr>,
    /// Services planned since start (the work-per-event counter).
    planned: u64,
}

fn requests(s: &Arc<Svc>) -> BTreeSet<IpAddr> {
    s.requested.iter().flatten().copied().collect()
}

impl Allocator {
    /// An allocator for the Services of `watched` (`None`: every namespace).
    pub fn new(pools: Pools, local: Local, watched: Option<String>) -> Allocator {
        Allocator {
            pools,
            local,
            watched,
            ..Allocator::default()
        }
    }

    /// Services planned since start: what the events so far cost.
    pub fn planned(&self) -> u64 {
        self.planned
    }

    /// The pools.
    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    fn dirty_requesters(&mut self, ip: &IpAddr, except: &str) {
        if let Some(by) = self.requested.get(ip) {
            self.dirty
                .extend(by.iter().filter(|u| &***u != except).cloned());
        }
    }

    fn dirty_proposer(&mut self, ip: &IpAddr) {
        if let Some(u) = self.proposals.taken.get(ip) {
            self.dirty.insert(u.clone());
        }
    }

    /// A Service appeared, changed (`Some`) or went (`None`).
    pub fn set_service(&mut self, uid: &Arc<str>, svc: Option<Arc<Svc>>) {
        let old = match &svc {
            Some(s) => self.services.insert(uid.clone(), s.clone()),
            None => self.services.remove(uid),
        };
        if old.is_none() && svc.is_none() {
            return;
        }
        self.dirty.insert(uid.clone());
        let was = old.as_ref().map(requests).unwrap_or_default();
        let now = svc.as_ref().map(requests).unwrap_or_default();
        for ip in was.symmetric_difference(&now) {
            if now.contains(ip) {
                let by = self.requested.entry(*ip).or_default();
                if !by.iter().any(|u| u == uid) {
                    by.push(uid.clone());
                }
            } else if let Some(by) = self.requested.get_mut(ip) {
                by.retain(|u| u != uid);
                if by.is_empty() {
                    self.requested.remove(ip);
                }
            }
            if !now.contains(ip) {
                self.freed(*ip);
            }
            self.dirty_proposer(ip);
        }
        // Who shares its addresses decides with its ports and keys; its claims may be due
        // for release.
        let held: Vec<IpAddr> = self.held.get(uid).into_iter().flatten().copied().collect();
        for ip in held {
            self.dirty_requesters(&ip, uid);
            self.dirty_claims.insert(ip);
        }
        if svc.is_none() {
            self.drop_proposals(uid);
            self.waiting.remove(uid);
        }
    }

    /// A claim appeared, changed (`Some`) or went (`None`).
    pub fn set_claim(&mut self, ip: IpAddr, claim: Option<Claim>) {
        let old = match &claim {
            Some(c) => self.claims.insert(ip, c.clone()),
            None => self.claims.remove(&ip),
        };
        let uids = |c: &Option<Claim>| -> BTreeSet<Arc<str>> {
            c.iter()
                .flat_map(|c| c.holders.iter().map(|h| h.uid.clone()))
                .collect()
        };
        let (was, now) = (uids(&old), uids(&claim));
        for u in was.difference(&now) {
            if let Some(set) = self.held.get_mut(u) {
                set.remove(&ip);
                if set.is_empty() {
                    self.held.remove(u);
                }
            }
        }
        for u in now.difference(&was) {
            self.held.entry(u.clone()).or_default().insert(ip);
        }
        self.dirty.extend(was.union(&now).cloned());
        self.dirty_requesters(&ip, "");
        self.dirty_proposer(&ip);
        if claim.is_none() {
            // An address freed up: whoever waits for one tries again.
            self.dirty.extend(self.waiting.iter().cloned());
            self.freed(ip);
        }
        self.dirty_claims.insert(ip);
    }

    /// New pools: every Service is planned again.
    pub fn set_pools(&mut self, pools: Pools) {
        self.pools = pools;
        self.all_dirty();
    }

    /// New facts about this node (its addresses, peers, control-plane VIPs): every Service
    /// is planned again, when they differ.
    pub fn set_local(&mut self, local: Local) {
        let same = self.local.node == local.node
            && self.local.node_addrs == local.node_addrs
            && self.local.peers == local.peers
            && self.local.control_plane == local.control_plane;
        if !same {
            self.local = local;
            self.all_dirty();
        }
    }

    fn all_dirty(&mut self) {
        self.dirty.extend(self.services.keys().cloned());
        self.dirty_claims.extend(self.claims.keys().copied());
    }

    fn drop_proposals(&mut self, uid: &str) {
        for ip in self.proposed.remove(uid).unwrap_or_default() {
            if self.proposals.taken.get(&ip).is_some_and(|u| **u == *uid) {
                self.proposals.taken.remove(&ip);
                self.freed(ip);
            }
        }
    }

    /// An address may be free again: searches of its family start over, so the next
    /// Service still gets the first free address (lowest, or highest in a descending pool).
    fn freed(&mut self, ip: IpAddr) {
        self.proposals
            .cursor
            .retain(|(_, v4), _| *v4 != ip.is_ipv4());
    }

    /// Plans the Services and claims that changes since the last call can affect, oldest
    /// Service first (the order every node uses, so that they mostly agree on who gets the
    /// next free address).
    pub fn plan(&mut self, now: SystemTime) -> Replanned {
        let mut out = Replanned::default();
        let mut dirty: Vec<Arc<str>> = self.dirty.drain().collect();
        let services = &self.services;
        dirty.sort_by(|a, b| {
            let key = |u: &Arc<str>| {
                services.get(u).map(|s| {
                    (
                        s.created.clone(),
                        s.holder.namespace.clone(),
                        s.holder.name.clone(),
                    )
                })
            };
            key(a).cmp(&key(b)).then_with(|| a.cmp(b))
        });
        for uid in dirty {
            self.drop_proposals(&uid);
            self.planned += 1;
            let Some(s) = self.services.get(&uid) else {
                out.services.push((uid, String::new(), None, Vec::new()));
                continue;
            };
            let mine: Vec<&Claim> = self
                .held
                .get(&uid)
                .into_iter()
                .flatten()
                .filter_map(|ip| self.claims.get(ip))
                .collect();
            let mut w = Vec::new();
            let inputs = Inputs {
                services: &self.services,
                claims: &self.claims,
                requested: &self.requested,
                pools: &self.pools,
                local: &self.local,
                watched: self.watched.as_deref(),
                now,
            };
            let d = inputs.service(s, &mine, &mut self.proposals, &mut w);
            let key = format!("{}/{}", s.holder.namespace, s.holder.name);
            let new = std::mem::take(&mut self.proposals.recent);
            if !new.is_empty() {
                self.proposed.insert(uid.clone(), new);
            }
            let waits = d.as_ref().is_some_and(|d| {
                d.served.is_empty() && matches!(d.pending, Some(Pending::Exhausted(_)))
            });
            if waits {
                self.waiting.insert(uid.clone());
            } else {
                self.waiting.remove(&uid);
            }
            out.services.push((uid, key, d, w));
        }
        let inputs = Inputs {
            services: &self.services,
            claims: &self.claims,
            requested: &self.requested,
            pools: &self.pools,
            local: &self.local,
            watched: self.watched.as_deref(),
            now,
        };
        for ip in std::mem::take(&mut self.dirty_claims) {
            let mut w = Vec::new();
            if let Some(c) = self.claims.get(&ip) {
                inputs.claim(c, &mut w);
            }
            out.claims.push((ip, w));
        }
        out
    }
}
