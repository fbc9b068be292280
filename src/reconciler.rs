//! The reconciler's pure core: the configuration sections it follows, control-plane health,
//! the Services and the Leases feed one desired VIP set; the core diffs it against the
//! addresses on the node and emits actions (add/remove address, new route table; in ARP
//! mode with `vip_preserve_on_leadership_loss`, quiet/announce again an address kept).
//! Level-triggered: every input is a whole state (a Services snapshot, the addresses found
//! at a resync), so a lost event is repaired by the next one or by the periodic resync; but
//! only the VIPs an input can touch are decided again (a Services snapshot is diffed against
//! the last in time proportional to what changed), so one Service's change costs its VIPs,
//! not the cluster's. Whether a VIP is served here is the
//! one decision of [`crate::model::Serving`]. No tokio, no netlink here; the shell is in
//! `reconciler/shell.rs`.

mod decide;
pub mod shell;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use bgp::{RouteAttrs, RouteTable};
use imbl::ordmap::{DiffItem, OrdMap};

use crate::config::{
    configured_vips, ArpSettings, Config, ControlPlane, Mode, ServiceSettings, VipSettings,
};
pub use crate::model::{Health, Leadership};
use crate::model::{HeldBack, NodeAddr, ServiceVip, Services, Serving, VipSource, VipState};
use crate::route_attrs::AttrSets;

/// The configuration the reconciler follows: the sections it reads, assembled by the shell
/// from their `watch`es.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// BGP or ARP (fixed).
    pub mode: Mode,
    /// Where VIPs go, static VIPs.
    pub vips: Arc<VipSettings>,
    /// The control-plane VIP.
    pub control_plane: Arc<ControlPlane>,
    /// Whether Services are served.
    pub services: Arc<ServiceSettings>,
    /// Lease election.
    pub arp: Arc<ArpSettings>,
    /// Attributes of every route without attribute sets of its own.
    pub attrs: RouteAttrs,
    /// Named attribute sets (pools, Services, the control-plane VIP).
    pub attr_sets: AttrSets,
}

impl From<&Config> for Settings {
    fn from(c: &Config) -> Settings {
        Settings {
            mode: c.node.mode,
            vips: Arc::new(c.vips.clone()),
            control_plane: Arc::new(c.control_plane.clone()),
            services: Arc::new(c.services.clone()),
            arp: Arc::new(c.arp.clone()),
            attrs: c.bgp.attrs.clone(),
            attr_sets: c.bgp.attr_sets.clone(),
        }
    }
}

/// What happens to the reconciler.
#[derive(Debug, Clone)]
pub enum Input {
    /// New settings.
    Settings(Settings),
    /// New control-plane health.
    Health(Health),
    /// The Services this node may serve (from the Kubernetes watcher).
    Services(Services),
    /// The Leases this node holds (ARP mode).
    Leadership(Leadership),
    /// The addresses found on the node that belong to vipr (resync and start-up).
    Observed(Vec<NodeAddr>),
    /// An address was put on the node; `owned` is false when it was there already (then
    /// vipr never removes it).
    Added {
        /// The address.
        addr: NodeAddr,
        /// Whether vipr added it.
        owned: bool,
    },
    /// An address was removed.
    Removed(NodeAddr),
    /// Adding failed (e.g. the interface does not exist yet); retried at the next resync.
    AddFailed(NodeAddr, String),
    /// Shutting down: nothing is desired any more.
    Shutdown,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Put an address on the node (marked as vipr's).
    Add(NodeAddr),
    /// Remove an address vipr added.
    Remove(NodeAddr),
    /// Advertise exactly these routes.
    Routes(RouteTable),
    /// Stop announcing (ARP/NDP) an address that stays on the node
    /// (`vip_preserve_on_leadership_loss`).
    Quiet(NodeAddr),
    /// Announce again an address kept quiet, whose Lease is back.
    Announce(NodeAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Present {
    owned: bool,
}

/// Which VIPs an input can affect.
enum Dirty {
    /// Every VIP (settings, health, Leases, a resync: rare).
    All,
    /// These.
    Some(BTreeSet<IpAddr>),
}

/// The VIPs as the status page and metrics show them, by address (a persistent map: the
/// shell publishes it as a cheap clone after every change).
pub type VipStates = OrdMap<IpAddr, Arc<VipState>>;

/// The reconciler core.
#[derive(Debug)]
pub struct Reconciler {
    settings: Option<Settings>,
    health: Health,
    services: Services,
    leadership: Leadership,
    shutting_down: bool,
    /// Every VIP of the configuration and the Services, with its sources (sorted; usually
    /// one, so a `Vec` and not a tree).
    candidates: BTreeMap<IpAddr, Vec<VipSource>>,
    /// Each VIP served here (its address on the node, `None` when only advertised) or why
    /// not.
    verdicts: BTreeMap<IpAddr, Result<Option<NodeAddr>, HeldBack>>,
    /// Addresses on the node that serve VIPs, with whether vipr owns them.
    present: BTreeMap<NodeAddr, Present>,
    /// Addresses asked for and not yet confirmed (avoid asking twice).
    pending: BTreeSet<NodeAddr>,
    /// Last add error per address, for status.
    errors: BTreeMap<IpAddr, String>,
    /// Addresses whose add failed: not retried until the next resync.
    failed: BTreeSet<NodeAddr>,
    /// Addresses kept on the node without announcements after their Lease was lost
    /// (`vip_preserve_on_leadership_loss`), until another holder is seen.
    quiet: BTreeSet<NodeAddr>,
    /// The attributes of each combination of attribute sets in use (the empty one: the
    /// global attributes), shared by its routes; emptied when the settings change.
    attrs: BTreeMap<Vec<String>, Arc<RouteAttrs>>,
    /// The routes, kept up to date VIP by VIP.
    table: RouteTable,
    /// The table changed since it was last emitted (or never was).
    table_dirty: bool,
    emitted: bool,
    states: VipStates,
    /// VIPs decided since start (the work-per-event counter).
    decided: u64,
}

impl Default for Reconciler {
    fn default() -> Self {
        Reconciler::new()
    }
}

impl Reconciler {
    /// An empty reconciler.
    pub fn new() -> Reconciler {
        Reconciler {
            settings: None,
            health: Health::NotChecked,
            services: Services::default(),
            leadership: Leadership::default(),
            shutting_down: false,
            candidates: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            present: BTreeMap::new(),
            pending: BTreeSet::new(),
            errors: BTreeMap::new(),
            failed: BTreeSet::new(),
            quiet: BTreeSet::new(),
            attrs: BTreeMap::new(),
            table: RouteTable::new(),
            table_dirty: false,
            emitted: false,
            states: VipStates::default(),
            decided: 0,
        }
    }

    /// Handles one input and returns the actions that bring the node to the desired state.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        let dirty = match input {
            Input::Settings(c) => {
                if c.control_plane.health.is_none() {
                    self.health = Health::NotChecked;
                } else if self.health == Health::NotChecked {
                    self.health = Health::Unknown;
                }
                // Every route is decided again below, with the attributes of these settings.
                self.attrs.clear();
                self.settings = Some(c);
                self.rebuild_candidates();
                Dirty::All
            }
            Input::Health(h) => {
                self.health = h;
                Dirty::All
            }
            Input::Services(s) => Dirty::Some(self.services_changed(s)),
            Input::Leadership(l) => {
                self.leadership = l;
                Dirty::All
            }
            Input::Observed(addrs) => {
                // Keep the not-owned entries we know of; replace the owned view. Only the
                // VIPs whose addresses differ (and those waiting or failed) are looked at.
                let was: BTreeSet<NodeAddr> = self
                    .present
                    .iter()
                    .filter(|(_, p)| p.owned)
                    .map(|(a, _)| a.clone())
                    .collect();
                let now: BTreeSet<NodeAddr> = addrs.into_iter().collect();
                let mut dirty: BTreeSet<IpAddr> =
                    was.symmetric_difference(&now).map(|a| a.ip).collect();
                dirty.extend(self.pending.iter().chain(self.failed.iter()).map(|a| a.ip));
                self.present.retain(|_, p| !p.owned);
                for a in now {
                    self.present.insert(a, Present { owned: true });
                }
                self.pending.clear();
                self.failed.clear();
                let present = &self.present;
                self.quiet.retain(|a| present.contains_key(a));
                Dirty::Some(dirty)
            }
            Input::Added { addr, owned } => {
                self.pending.remove(&addr);
                self.errors.remove(&addr.ip);
                let ip = addr.ip;
                self.present.insert(addr, Present { owned });
                Dirty::Some([ip].into())
            }
            Input::Removed(addr) => {
                self.pending.remove(&addr);
                self.quiet.remove(&addr);
                self.present.remove(&addr);
                Dirty::Some([addr.ip].into())
            }
            Input::AddFailed(addr, e) => {
                self.pending.remove(&addr);
                self.errors.insert(addr.ip, e);
                let ip = addr.ip;
                self.failed.insert(addr);
                Dirty::Some([ip].into())
            }
            Input::Shutdown => {
                self.shutting_down = true;
                Dirty::All
            }
        };
        self.actions(dirty)
    }

    /// VIPs decided since start: what the inputs so far cost.
    pub fn decided(&self) -> u64 {
        self.decided
    }

    /// The source of a Service's VIPs: its key's namespace and name, the Service's own
    /// strings (shared, not copied) when they match the key, as they do from the watcher.
    fn service_source(key: &str, v: &ServiceVip) -> VipSource {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        if *v.namespace == *namespace && *v.name == *name {
            return VipSource::Service {
                namespace: v.namespace.clone(),
                name: v.name.clone(),
            };
        }
        VipSource::Service {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The addresses of a Service that are candidates (served or refused: a refused one is
    /// shown with its reason).
    fn service_ips(s: &ServiceVip) -> impl Iterator<Item = IpAddr> + '_ {
        s.ips
            .iter()
            .chain(s.refused.iter().map(|(ip, _)| ip))
            .copied()
    }

    fn add_source(&mut self, ip: IpAddr, src: VipSource) {
        let set = self.candidates.entry(ip).or_default();
        if let Err(i) = set.binary_search(&src) {
            set.insert(i, src);
        }
    }

    fn remove_source(&mut self, ip: IpAddr, src: &VipSource) {
        if let Some(set) = self.candidates.get_mut(&ip) {
            if let Ok(i) = set.binary_search(src) {
                set.remove(i);
            }
            if set.is_empty() {
                self.candidates.remove(&ip);
            }
        }
    }

    /// Takes a new Services snapshot: only the Services that differ from the last one are
    /// looked at (the snapshots share everything else). Returns the VIPs they touch.
    fn services_changed(&mut self, new: Services) -> BTreeSet<IpAddr> {
        let old = std::mem::replace(&mut self.services, new.clone());
        let enabled = self.settings.as_ref().is_some_and(|c| c.services.enabled);
        let mut dirty = BTreeSet::new();
        for d in old.diff(&new) {
            let (key, was, now) = match d {
                DiffItem::Add(k, v) => (k, None, Some(v)),
                DiffItem::Remove(k, v) => (k, Some(v), None),
                DiffItem::Update {
                    old: (k, a),
                    new: (_, b),
                } => (k, Some(a), Some(b)),
            };
            let Some(src) = now.or(was).map(|v| Self::service_source(key, v)) else {
                continue;
            };
            let was: Vec<IpAddr> = was
                .map(|s| Self::service_ips(s).collect())
                .unwrap_or_default();
            let now: Vec<IpAddr> = now
                .map(|s| Self::service_ips(s).collect())
                .unwrap_or_default();
            for ip in &was {
                self.remove_source(*ip, &src);
            }
            if enabled {
                for ip in &now {
                    self.add_source(*ip, src.clone());
                }
            }
            dirty.extend(was);
            dirty.extend(now);
        }
        dirty
    }

    /// Every candidate again: the configuration's VIPs and the Services'.
    fn rebuild_candidates(&mut self) {
        self.candidates.clear();
        let Some(c) = self.settings.clone() else {
            return;
        };
        for (ip, s) in configured_vips(&c.control_plane, &c.vips) {
            self.add_source(ip, s);
        }
        if c.services.enabled {
            let all: Vec<(IpAddr, VipSource)> = self
                .services
                .iter()
                .flat_map(|(k, s)| {
                    let src = Self::service_source(k, s);
                    Self::service_ips(s).map(move |ip| (ip, src.clone()))
                })
                .collect();
            for (ip, src) in all {
                self.add_source(ip, src);
            }
        }
    }

    /// The serving decision's context.
    fn serving<'a>(&'a self, c: &Settings) -> Serving<'a> {
        Serving {
            mode: c.mode,
            election: c
                .arp
                .election
                .as_ref()
                .filter(|_| c.mode == Mode::Arp)
                .map(|e| e.per_service),
            on_demand: c.arp.election.as_ref().is_some_and(|e| e.on_demand),
            cp_leased: c
                .arp
                .election
                .as_ref()
                .is_some_and(|e| e.control_plane && (c.mode == Mode::Arp || e.bgp_leader_only)),
            health: self.health,
            leadership: &self.leadership,
        }
    }

    /// Whether `ip` is served here (by at least one of its sources), or why not: `None`
    /// when it is no VIP at all.
    fn verdict(&self, c: &Settings, ip: IpAddr) -> Option<Result<(), HeldBack>> {
        let sources = self.candidates.get(&ip)?;
        let serving = self.serving(c);
        let mut why = None;
        for s in sources {
            match serving.decide(s, ip, &self.services) {
                Ok(()) => return Some(Ok(())),
                Err(e) => {
                    why.get_or_insert(e);
                }
            }
        }
        why.map(Err)
    }

    /// The addresses on the node for `ip`.
    fn present_for(&self, ip: IpAddr) -> impl Iterator<Item = (&NodeAddr, &Present)> {
        let from = NodeAddr {
            ip,
            prefix_len: 0,
            interface: String::new(),
            route: false,
        };
        self.present
            .range(from..)
            .take_while(move |(a, _)| a.ip == ip)
    }

    fn actions(&mut self, dirty: Dirty) -> Vec<Action> {
        if self.settings.is_none() && !self.shutting_down {
            return Vec::new(); // nothing is known yet: do not touch the node
        }
        let ips: BTreeSet<IpAddr> = match dirty {
            Dirty::Some(s) => s,
            Dirty::All => self
                .candidates
                .keys()
                .chain(self.verdicts.keys())
                .copied()
                .chain(self.present.keys().map(|a| a.ip))
                .collect(),
        };
        let mut removing = Vec::new();
        let mut adding = Vec::new();
        let mut quiet = Vec::new();
        for ip in &ips {
            self.decide(*ip);
            let (served, want) = match self.verdicts.get(ip) {
                Some(Ok(a)) => (true, a.clone()),
                _ => (false, None),
            };
            let keep = want.is_none() && self.preserved(*ip);
            for (a, p) in self.present_for(*ip) {
                if p.owned && want.as_ref() != Some(a) && !self.pending.contains(a) {
                    if !keep {
                        removing.push(a.clone());
                    } else if !self.quiet.contains(a) {
                        quiet.push(Action::Quiet(a.clone()));
                    }
                }
            }
            if let Some(a) = want.as_ref().filter(|a| self.quiet.contains(*a)) {
                if self.present.contains_key(a) {
                    quiet.push(Action::Announce(a.clone()));
                }
            }
            if let Some(a) = &want {
                if !self.present.contains_key(a)
                    && !self.pending.contains(a)
                    && !self.failed.contains(a)
                {
                    adding.push(a.clone());
                }
            }
            self.route(*ip, served, want.as_ref());
        }
        let mut actions = Vec::new();
        // Withdraw routes before removing addresses.
        if !removing.is_empty() && (self.table_dirty || !self.emitted) {
            actions.push(self.emit());
        }
        for a in removing {
            self.pending.insert(a.clone());
            self.quiet.remove(&a);
            actions.push(Action::Remove(a));
        }
        for q in quiet {
            match &q {
                Action::Quiet(a) => self.quiet.insert(a.clone()),
                Action::Announce(a) => self.quiet.remove(a),
                _ => false,
            };
            actions.push(q);
        }
        for a in adding {
            self.pending.insert(a.clone());
            actions.push(Action::Add(a));
        }
        if self.table_dirty || !self.emitted {
            actions.push(self.emit());
        }
        for ip in ips {
            self.update_state(ip);
        }
        actions
    }

    /// Whether a VIP that lost its Lease stays on the node, quiet: ARP mode with
    /// `vip_preserve_on_leadership_loss`, IPv4 (an IPv6 VIP goes at once, or the new
    /// holder's duplicate address detection fails: kube-vip v1.2.3 `pkg/cluster/cluster.go`
    /// `cleanupVIPs`), held back only for the Lease, and no Lease of it seen held by
    /// another node (then it goes: `clusterLeaderElection.go` `OnNewLeader`).
    fn preserved(&self, ip: IpAddr) -> bool {
        let Some(c) = &self.settings else {
            return false;
        };
        if self.shutting_down
            || c.mode != Mode::Arp
            || !c.arp.preserve
            || !ip.is_ipv4()
            || !matches!(self.verdicts.get(&ip), Some(Err(HeldBack::NotLeader)))
        {
            return false;
        }
        let serving = self.serving(c);
        !self
            .candidates
            .get(&ip)
            .into_iter()
            .flatten()
            .any(|s| serving.taken(s, &self.services))
    }

    fn emit(&mut self) -> Action {
        self.table_dirty = false;
        self.emitted = true;
        Action::Routes(self.table.clone())
    }

    /// Whether the core wants `addr`'s IP on the node in another form (prefix length,
    /// interface, local route): removing `addr` then makes room for its replacement, rather
    /// than ending the IP's service here.
    pub fn replaced(&self, addr: &NodeAddr) -> bool {
        matches!(self.verdicts.get(&addr.ip), Some(Ok(Some(a))) if a != addr)
    }

    /// Whether the core wants `addr` on the node as it is: an address whose removal was
    /// asked for but not yet done (it lingers after its withdrawal, BGP mode) and that is
    /// served again stays.
    pub fn wanted(&self, addr: &NodeAddr) -> bool {
        matches!(self.verdicts.get(&addr.ip), Some(Ok(Some(a))) if a == addr)
    }

    /// Addresses vipr owns on the node (what must be removed at exit).
    pub fn owned(&self) -> Vec<NodeAddr> {
        self.present
            .iter()
            .filter(|(_, p)| p.owned)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// The status view of every VIP (a cheap clone).
    pub fn status(&self) -> VipStates {
        self.states.clone()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_attrs;
