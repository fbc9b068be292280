//! What this node knows of the cluster's Services, and what it derives from them, kept up
//! to date one event at a time: watch events go into compact caches ([`super::cache`]),
//! the allocator ([`crate::ipam::state`]) replans the Services a change can affect, and
//! only the Services that changed get their [`ServiceVip`], status write and jobs derived
//! again. The outputs are persistent maps (`imbl::OrdMap`): publishing one is a clone that
//! shares every unchanged entry, and a consumer diffs two snapshots in time proportional to
//! what changed. So an event costs the objects it touched, not the cluster.
//!
//! Besides the Services and their endpoints (a Service is served only while it has a ready
//! endpoint, kube-vip's rule), this node's own Node says whether it is excluded from
//! external load balancers, and the Services' kube-vip annotations vipr does not implement
//! are said once ([`Cluster::take_notices`]) and get one Event each.
//!
//! Pure: events and the time in, snapshots out. `watch.rs` is the async shell.

use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::Arc;
use std::time::SystemTime;

use imbl::OrdMap;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;

use super::annotations;
use super::cache::{Cache, Change, Ready, ReadyCount};
use super::claims;
use super::members::Members;
use super::services::{
    endpoints_ready, record, service_vip, slice_ready, status_change, SvcRecord, LABEL_EXCLUDE_LB,
};
use super::writer::{Job, StatusWrite};
use crate::config::ServiceSettings;
use crate::ipam::configmap::ConfigMapPools;
use crate::ipam::plan::{Decision, Event as PlanEvent, Local, Pools, Write};
use crate::ipam::pools::Pool;
use crate::ipam::state::Allocator;
use crate::ipam::{Claim, Pending};
use crate::model::{Exclusion, Services};
use crate::route_attrs;

/// The writes for each Service (`namespace/name`) or claim (`claim/<address>`).
pub type Jobs = OrdMap<Arc<str>, Arc<Vec<Job>>>;

/// One pool's use, for `/status` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUse {
    /// Its name.
    pub name: String,
    /// How many addresses it has.
    pub size: u128,
    /// How many are claimed.
    pub used: usize,
}

/// What the allocator reports besides the Services it serves: the Services waiting for an
/// address (and why) and the pools' use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocations {
    /// `namespace/name` and why it has no address yet.
    pub pending: OrdMap<Arc<str>, Pending>,
    /// Every pool.
    pub pools: Vec<PoolUse>,
}

/// The kinds watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Services.
    Services,
    /// EndpointSlices or Endpoints.
    Endpoints,
    /// Address claims.
    Claims,
    /// kube-vip-cloud-provider's ConfigMap.
    ConfigMap,
    /// Member Leases.
    Members,
    /// This node's Node object (its labels).
    Node,
}

/// What one [`Cluster::process`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The Services this node may serve.
    pub services: bool,
    /// The writes.
    pub jobs: bool,
    /// Pending Services or pool use.
    pub allocations: bool,
}

/// The work done so far, for `/metrics` and the tests that keep it proportional.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// Services planned by the allocator.
    pub planned: u64,
    /// Services whose outputs were derived again.
    pub derived: u64,
}

/// The watcher's state.
pub struct Cluster {
    node: String,
    settings: ServiceSettings,
    services: Cache<SvcRecord>,
    /// Endpoint objects with a ready endpoint: the Service they make ready, and whether on
    /// this node (two bits per object, not the object: issue 14).
    endpoints: Cache<Ready>,
    /// Services with a ready endpoint on this node.
    local: ReadyCount,
    /// Services with a ready endpoint anywhere (kube-vip announces none without one).
    anywhere: ReadyCount,
    claims: Cache<Claim>,
    configmap: Cache<BTreeMap<String, String>>,
    members: Cache<(String, SystemTime)>,
    /// This node's Node, kept only while it excludes this node from serving Services
    /// (labelled [`LABEL_EXCLUDE_LB`], or cordoned).
    node_obj: Cache<Exclusion>,
    alloc: Allocator,
    /// The Service key each UID has, and the UID that owns each key now. Keys and UIDs
    /// here are the caches' and records' own strings, shared (issue 14: a copy of each in
    /// every map cost megabytes at 10 000 Services).
    keys: HashMap<Arc<str>, Arc<str>>,
    owner: HashMap<Arc<str>, Arc<str>>,
    decisions: HashMap<Arc<str>, Decision>,
    plan_writes: HashMap<Arc<str>, Vec<Write>>,
    /// Services whose outputs must be derived again.
    dirty: HashSet<Arc<str>>,
    /// Unsupported kube-vip annotations newly seen on a served Service, to be said once.
    notices: Vec<(Arc<str>, u64)>,
    pool_counts: HashMap<String, usize>,
    vips: Services,
    jobs: Jobs,
    allocations: Allocations,
    derived: u64,
}

impl Cluster {
    /// An empty state for this node and these settings.
    pub fn new(node: &str, settings: ServiceSettings, local: Local) -> Cluster {
        let mut c = Cluster {
            node: node.to_string(),
            alloc: Allocator::new(Pools::default(), local, settings.filter.namespace.clone()),
            settings,
            services: Cache::default(),
            endpoints: Cache::default(),
            local: ReadyCount::default(),
            anywhere: ReadyCount::default(),
            claims: Cache::default(),
            configmap: Cache::default(),
            members: Cache::default(),
            node_obj: Cache::default(),
            keys: HashMap::new(),
            owner: HashMap::new(),
            decisions: HashMap::new(),
            plan_writes: HashMap::new(),
            dirty: HashSet::new(),
            notices: Vec::new(),
            pool_counts: HashMap::new(),
            vips: Services::default(),
            jobs: Jobs::default(),
            allocations: Allocations::default(),
            derived: 0,
        };
        if c.settings.pool_configmap.is_none() {
            c.configmap.assume_synced();
        }
        c.alloc.set_pools(c.pools());
        c
    }

    /// A Service event.
    pub fn service(&mut self, ev: Event<Service>) {
        let f = self.settings.filter.clone();
        for ch in self.services.apply(ev, |s| record(s, &f)) {
            let (old, new) = (ch.old.as_ref(), ch.new.as_ref());
            if let Some(o) =
                old.filter(|o| new.is_none_or(|n| n.svc.holder.uid != o.svc.holder.uid))
            {
                self.alloc.set_service(&o.svc.holder.uid, None);
            }
            if let Some(n) = new.filter(|n| n.svc.selected) {
                let before = old
                    .filter(|o| o.svc.selected && o.svc.holder.uid == n.svc.holder.uid)
                    .map_or(0, |o| o.unsupported);
                let fresh = n.unsupported & !before;
                if fresh != 0 {
                    self.notices.push((ch.key.clone(), fresh));
                }
            }
            if let Some(n) = new {
                self.keys.insert(n.svc.holder.uid.clone(), ch.key.clone());
                self.owner.insert(ch.key.clone(), n.svc.holder.uid.clone());
                self.alloc
                    .set_service(&n.svc.holder.uid, Some(n.svc.clone()));
            }
            self.dirty.insert(ch.key);
        }
    }

    fn endpoint_change(&mut self, changes: Vec<Change<Ready>>) {
        for ch in changes {
            let here = |r: &Option<Ready>| r.as_ref().filter(|r| r.here).map(|r| r.service.clone());
            let (old_here, new_here) = (here(&ch.old), here(&ch.new));
            self.dirty
                .extend(self.local.apply(old_here.as_ref(), new_here.as_ref()));
            let svc = |r: &Option<Ready>| r.as_ref().map(|r| r.service.clone());
            let (old, new) = (svc(&ch.old), svc(&ch.new));
            self.dirty
                .extend(self.anywhere.apply(old.as_ref(), new.as_ref()));
        }
    }

    /// A core/v1 Endpoints event.
    pub fn endpoints(&mut self, ev: Event<Endpoints>) {
        let (node, services) = (&self.node, &self.services);
        let ch = self
            .endpoints
            .apply(ev, |e| share_key(services, endpoints_ready(e, node)));
        self.endpoint_change(ch);
    }

    /// An EndpointSlice event.
    pub fn slice(&mut self, ev: Event<EndpointSlice>) {
        let (node, services) = (&self.node, &self.services);
        let ch = self
            .endpoints
            .apply(ev, |s| share_key(services, slice_ready(s, node)));
        self.endpoint_change(ch);
    }

    /// The unsupported kube-vip annotations seen on a served Service since the last call,
    /// by Service (`namespace/name`), each once: the shell logs them.
    pub fn take_notices(&mut self) -> Vec<(Arc<str>, &'static annotations::Row)> {
        std::mem::take(&mut self.notices)
            .into_iter()
            .flat_map(|(key, bits)| annotations::rows(bits).map(move |r| (key.clone(), r)))
            .collect()
    }

    /// An event of this node's Node: excluded from external load balancers, cordoned
    /// (with `vipr_withdraw_cordoned`), or neither (a change re-derives every Service; it
    /// is rare).
    pub fn node(&mut self, ev: Event<Node>) {
        let cordoned_withdraws = self.settings.withdraw_cordoned;
        let ch = self.node_obj.apply(ev, |n| {
            let labelled = n
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(LABEL_EXCLUDE_LB));
            let cordoned = n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
            if labelled {
                Some(Exclusion::Label)
            } else {
                (cordoned && cordoned_withdraws).then_some(Exclusion::Cordoned)
            }
        });
        if !ch.is_empty() {
            self.dirty.extend(self.owner.keys().cloned());
        }
    }

    /// Why this node serves no Service, if it serves none.
    pub fn excluded(&self) -> Option<Exclusion> {
        self.node_obj.values().next().copied()
    }

    /// A claim event.
    pub fn claim(&mut self, ev: Event<Lease>) {
        for ch in self.claims.apply(ev, claims::from_lease) {
            if let Some(o) = &ch.old {
                if let Some(n) = self.pool_counts.get_mut(&o.pool) {
                    *n = n.saturating_sub(1);
                }
                if ch.new.as_ref().is_none_or(|n| n.ip != o.ip) {
                    self.alloc.set_claim(o.ip, None);
                }
            }
            if let Some(n) = ch.new {
                *self.pool_counts.entry(n.pool.clone()).or_default() += 1;
                self.alloc.set_claim(n.ip, Some(n));
            }
        }
    }

    /// A pool ConfigMap event.
    pub fn configmap(&mut self, ev: Event<ConfigMap>) {
        if !self
            .configmap
            .apply(ev, |c| Some(c.data.clone().unwrap_or_default()))
            .is_empty()
        {
            let p = self.pools();
            self.alloc.set_pools(p);
        }
    }

    /// A member Lease event; true when the members changed.
    pub fn member(&mut self, ev: Event<Lease>) -> bool {
        !self
            .members
            .apply(ev, |l| {
                let m = Members::from_leases(std::iter::once(l));
                m.entries().first().cloned()
            })
            .is_empty()
    }

    /// The live members as last seen.
    pub fn members(&self) -> Members {
        Members::from_entries(self.members.values().cloned().collect())
    }

    /// The kind may not be read: go on without it.
    pub fn forbidden(&mut self, kind: Kind) {
        match kind {
            Kind::Claims => self.claims.assume_synced(),
            Kind::ConfigMap => self.configmap.assume_synced(),
            Kind::Members => self.members.assume_synced(),
            Kind::Node => self.node_obj.assume_synced(),
            Kind::Services | Kind::Endpoints => {}
        }
    }

    /// New facts about this node.
    pub fn set_local(&mut self, local: Local) {
        self.alloc.set_local(local);
    }

    /// Whether every cache needed has been listed.
    pub fn ready(&self) -> bool {
        self.services.synced()
            && self.endpoints.synced()
            && self.node_obj.synced()
            && self.claims.synced()
            && self.configmap.synced()
    }

    /// The pools: `vipr_pools`, then the ConfigMap's.
    fn pools(&self) -> Pools {
        let configmap = self
            .settings
            .pool_configmap
            .as_ref()
            .and_then(|(ns, name)| {
                self.configmap
                    .get(&format!("{ns}/{name}"))
                    .map(|d| ConfigMapPools::new(format!("{ns}/{name}"), d.clone()))
            });
        Pools {
            configured: self.settings.pools.clone(),
            configmap,
            required: self.settings.pools_required,
        }
    }

    /// Plans and derives what the events since the last call changed; says which outputs
    /// changed.
    pub fn process(&mut self, now: SystemTime) -> Published {
        let mut out = Published::default();
        let r = self.alloc.plan(now);
        for (uid, key, d, w) in r.services {
            let key: Arc<str> = if key.is_empty() {
                // Gone: its outputs go, unless its name already belongs to a new Service.
                match self.keys.remove(&uid) {
                    Some(k) if self.owner.get(&k) == Some(&uid) => {
                        self.owner.remove(&k);
                        k
                    }
                    _ => continue,
                }
            } else {
                match self.owner.get_key_value(key.as_str()) {
                    Some((k, _)) => k.clone(),
                    None => key.into(),
                }
            };
            match d {
                Some(d) => self.decisions.insert(key.clone(), d),
                None => self.decisions.remove(&key),
            };
            if w.is_empty() {
                self.plan_writes.remove(&key);
            } else {
                self.plan_writes.insert(key.clone(), w);
            }
            self.dirty.insert(key);
        }
        for (ip, w) in r.claims {
            let key: Arc<str> = format!("claim/{ip}").into();
            let jobs: Vec<Job> = w.into_iter().map(Job::Plan).collect();
            out.jobs |= set(
                &mut self.jobs,
                key,
                (!jobs.is_empty()).then(|| Arc::new(jobs)),
            );
        }
        for key in std::mem::take(&mut self.dirty) {
            let o = self.derive(&key);
            out.services |= o.services;
            out.jobs |= o.jobs;
            out.allocations |= o.allocations;
        }
        let pools = self.pool_use();
        if pools != self.allocations.pools {
            self.allocations.pools = pools;
            out.allocations = true;
        }
        out
    }

    /// The outputs of one Service, derived again.
    fn derive(&mut self, key: &Arc<str>) -> Published {
        self.derived += 1;
        let rec = self.services.get(key);
        let d = self.decisions.get(key);
        let vip = match (rec, d) {
            (Some(r), Some(d)) => service_vip(
                r,
                d,
                self.local.has(key),
                self.anywhere.has(key),
                self.excluded(),
            ),
            _ => None,
        };
        let mut jobs: Vec<Job> = Vec::new();
        if let Some(r) = rec.filter(|_| self.settings.status_updates) {
            if let Some(p) = status_change(r, vip.as_ref(), d) {
                jobs.push(Job::Status(StatusWrite {
                    namespace: r.svc.holder.namespace.clone(),
                    name: r.svc.holder.name.clone(),
                    resource_version: r.resource_version.clone(),
                    patch: p.to_string(),
                }));
            }
        }
        if rec.is_some() {
            if let Some(w) = self.plan_writes.get(key) {
                jobs.extend(w.iter().cloned().map(Job::Plan));
            }
        }
        if let Some(r) = rec.filter(|r| r.svc.selected) {
            jobs.extend(annotations::rows(r.unsupported).map(|row| {
                Job::Plan(Write::Event(PlanEvent {
                    holder: r.svc.holder.clone(),
                    warning: true,
                    reason: "AnnotationIgnored",
                    message: format!("{} ignored: {}", row.name, row.reason),
                    key: format!("annotation/{}", row.name),
                }))
            }));
        }
        if let (Some(r), Some(d)) = (rec.filter(|r| r.svc.selected), d) {
            jobs.extend(bgp_attributes_refused(r, d, &self.alloc.pools().configured));
        }
        let pending = d
            .filter(|d| d.served.is_empty())
            .and_then(|d| d.pending.clone());
        Published {
            services: set(&mut self.vips, key.clone(), vip.map(Arc::new)),
            jobs: set(
                &mut self.jobs,
                key.clone(),
                (!jobs.is_empty()).then(|| {
                    // Exact: a Service has one or two jobs, and the first push reserves four.
                    jobs.shrink_to_fit();
                    Arc::new(jobs)
                }),
            ),
            allocations: set(&mut self.allocations.pending, key.clone(), pending),
        }
    }

    fn pool_use(&self) -> Vec<PoolUse> {
        let p = self.alloc.pools();
        let mut all = p.configured.clone();
        if let Some(c) = &p.configmap {
            all.extend(c.pools().into_iter().filter_map(|(_, p)| p.ok()));
        }
        all.into_iter()
            .map(|p| PoolUse {
                used: self.pool_counts.get(&p.name).copied().unwrap_or(0),
                size: p.size(),
                name: p.name,
            })
            .collect()
    }

    /// The Services this node may serve.
    pub fn vips(&self) -> &Services {
        &self.vips
    }

    /// The writes.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Pending Services and pool use.
    pub fn allocations(&self) -> &Allocations {
        &self.allocations
    }

    /// The work done so far.
    pub fn work(&self) -> Work {
        Work {
            planned: self.alloc.planned(),
            derived: self.derived,
        }
    }

    /// How many objects of each kind are kept (the rest of the cluster is not).
    pub fn kept(&self) -> [(Kind, usize); 3] {
        [
            (Kind::Services, self.services.len()),
            (Kind::Endpoints, self.endpoints.len()),
            (Kind::Claims, self.claims.len()),
        ]
    }
}

/// A Warning Event per served address whose pool does not allow the attribute sets the
/// Service's `vipr.io/bgp-attributes` names (tenant input: `route_attrs::choose`, the same
/// decision the reconciler builds the route with).
fn bgp_attributes_refused(r: &SvcRecord, d: &Decision, pools: &[Pool]) -> Vec<Job> {
    let Some(asked) = &r.bgp_attributes else {
        return Vec::new();
    };
    d.served
        .iter()
        .filter_map(|ip| {
            let pool = route_attrs::pool_of(pools, *ip);
            let (used, why) = route_attrs::choose(pool, Some(asked));
            let why = why?;
            let with = if used.is_empty() {
                "the global attributes".to_string()
            } else {
                format!("the pool's attribute sets {}", used.join(", "))
            };
            Some(Job::Plan(Write::Event(PlanEvent {
                holder: r.svc.holder.clone(),
                warning: true,
                reason: "BGPAttributesRefused",
                message: format!("{why}; {ip} is advertised with {with}"),
                key: format!("bgp-attributes/{ip}/{}", asked.join(",")),
            })))
        })
        .collect()
}

/// The endpoint object's Service named by the Service cache's own key when it has the
/// Service (one string per Service, not one per map).
fn share_key(services: &Cache<SvcRecord>, r: Option<Ready>) -> Option<Ready> {
    r.map(|mut r| {
        if let Some(k) = services.key_of(&r.service) {
            r.service = k;
        }
        r
    })
}

/// Sets or removes one entry; true when it changed.
fn set<V: PartialEq + Clone>(m: &mut OrdMap<Arc<str>, V>, key: Arc<str>, v: Option<V>) -> bool {
    match v {
        Some(v) => {
            if m.get(&key) == Some(&v) {
                return false;
            }
            m.insert(key, v);
            true
        }
        None => m.remove(&key).is_some(),
    }
}

#[cfg(test)]
mod tests;
