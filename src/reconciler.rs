//! The reconciler's pure core: configuration, health and (later) Kubernetes state feed one
//! desired VIP set; the core diffs it against the addresses on the node and emits actions
//! (add/remove address, new route table). Level-triggered: every input recomputes the whole
//! desired state, so a lost event is repaired by the next one or by the periodic resync.
//! No tokio, no netlink here; the shell is in `run.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use bgp::{RouteAttrs, RouteTable};

use crate::config::{Config, Mode};
use crate::kube::watch::Services;
use crate::vips::{NodeAddr, VipSource, VipState};

/// Which Leases this node holds (ARP mode; BGP mode serves without election).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leadership {
    /// The control-plane Lease (`vip_leasename`).
    pub control_plane: bool,
    /// The Lease for all Services (`plndr-svcs-lock`).
    pub services: bool,
    /// Per-Service Leases held (`namespace/name`), with `svc_election`.
    pub per_service: BTreeSet<String>,
}

/// Health of the control plane as the checker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No check configured: always advertise.
    NotChecked,
    /// Configured, no result yet: do not advertise (advertise only after the first success).
    Unknown,
    /// Passing.
    Up,
    /// Failed `failure_threshold` times in a row.
    Down,
}

/// What happens to the reconciler.
#[derive(Debug, Clone)]
pub enum Input {
    /// New configuration.
    Config(Arc<Config>),
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Present {
    owned: bool,
}

/// The reconciler core.
#[derive(Debug)]
pub struct Reconciler {
    config: Option<Arc<Config>>,
    health: Health,
    services: Services,
    leadership: Leadership,
    shutting_down: bool,
    /// Addresses on the node that serve VIPs, with whether vipr owns them.
    present: BTreeMap<NodeAddr, Present>,
    /// Addresses asked for and not yet confirmed (avoid asking twice).
    pending: BTreeSet<NodeAddr>,
    /// Last add error per address, for status.
    errors: BTreeMap<IpAddr, String>,
    /// Addresses whose add failed: not retried until the next resync.
    failed: BTreeSet<NodeAddr>,
    /// The route table last emitted.
    routes: Option<RouteTable>,
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
            config: None,
            health: Health::NotChecked,
            services: Services::default(),
            leadership: Leadership::default(),
            shutting_down: false,
            present: BTreeMap::new(),
            pending: BTreeSet::new(),
            errors: BTreeMap::new(),
            failed: BTreeSet::new(),
            routes: None,
        }
    }

    /// Handles one input and returns the actions that bring the node to the desired state.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        match input {
            Input::Config(c) => {
                if c.health.is_none() {
                    self.health = Health::NotChecked;
                } else if self.health == Health::NotChecked {
                    self.health = Health::Unknown;
                }
                self.config = Some(c);
            }
            Input::Health(h) => self.health = h,
            Input::Services(s) => self.services = s,
            Input::Leadership(l) => self.leadership = l,
            Input::Observed(addrs) => {
                // Keep the not-owned entries we know of; replace the owned view.
                self.present.retain(|_, p| !p.owned);
                for a in addrs {
                    self.present.insert(a, Present { owned: true });
                }
                self.pending.clear();
                self.failed.clear();
            }
            Input::Added { addr, owned } => {
                self.pending.remove(&addr);
                self.errors.remove(&addr.ip);
                self.present.insert(addr, Present { owned });
            }
            Input::Removed(addr) => {
                self.pending.remove(&addr);
                self.present.remove(&addr);
            }
            Input::AddFailed(addr, e) => {
                self.pending.remove(&addr);
                self.errors.insert(addr.ip, e);
                self.failed.insert(addr);
            }
            Input::Shutdown => self.shutting_down = true,
        }
        self.actions()
    }

    /// The VIPs wanted on this node, with their sources.
    fn desired(&self) -> BTreeMap<NodeAddr, BTreeSet<VipSource>> {
        let mut out: BTreeMap<NodeAddr, BTreeSet<VipSource>> = BTreeMap::new();
        let Some(c) = &self.config else { return out };
        if self.shutting_down {
            return out;
        }
        // ARP mode: only the Lease holder serves (everyone, when election is off).
        let arp = c.mode == Mode::Arp;
        let elect = arp && c.arp.leader_election;
        for (ip, source) in c.configured_vips() {
            if source == VipSource::ControlPlane {
                if !matches!(self.health, Health::NotChecked | Health::Up) {
                    continue;
                }
                if elect && !self.leadership.control_plane {
                    continue;
                }
            }
            out.entry(node_addr(c, ip)).or_default().insert(source);
        }
        if c.svc_enable {
            for s in self.services.iter() {
                let serve = if arp {
                    !elect
                        || if c.arp.svc_election {
                            self.leadership.per_service.contains(&s.key())
                        } else {
                            self.leadership.services
                        }
                } else {
                    s.served_here()
                };
                if !serve {
                    continue;
                }
                for ip in &s.ips {
                    out.entry(node_addr(c, *ip))
                        .or_default()
                        .insert(VipSource::Service {
                            namespace: s.namespace.clone(),
                            name: s.name.clone(),
                        });
                }
            }
        }
        out
    }

    fn actions(&mut self) -> Vec<Action> {
        if self.config.is_none() && !self.shutting_down {
            return Vec::new(); // nothing is known yet: do not touch the node
        }
        let desired = self.desired();
        let mut actions = Vec::new();
        // Withdraw routes before removing addresses: compute the table first.
        let table = self.route_table(&desired);
        let routes_changed = self.routes.as_ref() != Some(&table);
        let removing: Vec<NodeAddr> = self
            .present
            .iter()
            .filter(|(a, p)| p.owned && !desired.contains_key(*a) && !self.pending.contains(*a))
            .map(|(a, _)| a.clone())
            .collect();
        if routes_changed && !removing.is_empty() {
            actions.push(Action::Routes(table.clone()));
            self.routes = Some(table.clone());
        }
        for a in removing {
            self.pending.insert(a.clone());
            actions.push(Action::Remove(a));
        }
        for a in desired.keys() {
            if !self.present.contains_key(a)
                && !self.pending.contains(a)
                && !self.failed.contains(a)
            {
                self.pending.insert(a.clone());
                actions.push(Action::Add(a.clone()));
            }
        }
        if self.routes.as_ref() != Some(&table) {
            actions.push(Action::Routes(table.clone()));
            self.routes = Some(table);
        }
        actions
    }

    /// Host routes for the desired VIPs that are on the node.
    fn route_table(&self, desired: &BTreeMap<NodeAddr, BTreeSet<VipSource>>) -> RouteTable {
        let mut t = RouteTable::new();
        let Some(c) = &self.config else { return t };
        let attrs = RouteAttrs {
            med: c.bgp.med,
            local_pref: c.bgp.local_pref,
            communities: c.bgp.communities.clone(),
            large_communities: c.bgp.large_communities.clone(),
            next_hop: None,
        };
        t.announce(
            desired
                .keys()
                .filter(|a| self.present.contains_key(*a))
                .map(NodeAddr::host_route),
            attrs,
        );
        t
    }

    /// Addresses vipr owns on the node (what must be removed at exit).
    pub fn owned(&self) -> Vec<NodeAddr> {
        self.present
            .iter()
            .filter(|(_, p)| p.owned)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// The status view of every VIP.
    pub fn status(&self) -> Vec<VipState> {
        let desired = self.desired();
        let routes = self.routes.clone().unwrap_or_default();
        let mut out = Vec::new();
        let Some(c) = &self.config else { return out };
        let mut all: BTreeMap<IpAddr, BTreeSet<VipSource>> = BTreeMap::new();
        for (ip, s) in c.configured_vips() {
            all.entry(ip).or_default().insert(s);
        }
        if c.svc_enable {
            for s in self.services.iter() {
                for ip in &s.ips {
                    all.entry(*ip).or_default().insert(VipSource::Service {
                        namespace: s.namespace.clone(),
                        name: s.name.clone(),
                    });
                }
            }
        }
        for (a, s) in &desired {
            all.entry(a.ip).or_default().extend(s.iter().cloned());
        }
        for (ip, sources) in all {
            let on_node = self.present.keys().find(|a| a.ip == ip);
            let held_back = if !desired.keys().any(|a| a.ip == ip) {
                Some(self.held_back_reason(c, ip))
            } else {
                self.errors
                    .get(&ip)
                    .map(|e| format!("cannot add address: {e}"))
            };
            out.push(VipState {
                address: ip,
                sources,
                interface: on_node.map(|a| a.interface.clone()),
                advertised: routes.get(&ipnet::IpNet::from(ip)).is_some(),
                held_back,
            });
        }
        out
    }
}

impl Reconciler {
    /// Why a configured or Service VIP is not served here.
    fn held_back_reason(&self, c: &Config, ip: IpAddr) -> String {
        let cp = c.cp_enable && c.vips.contains(&ip);
        if cp && self.health == Health::Unknown {
            return "waiting for the first successful health check".into();
        }
        if cp && self.health == Health::Down {
            return "control-plane health check failing".into();
        }
        if c.mode == Mode::Arp && c.arp.leader_election {
            return "another node holds the lease".into();
        }
        if self
            .services
            .iter()
            .any(|s| s.ips.contains(&ip) && s.local_only && !s.local_endpoint)
        {
            return "externalTrafficPolicy: Local and no ready endpoint on this node".into();
        }
        "not desired".into()
    }
}

fn node_addr(c: &Config, ip: IpAddr) -> NodeAddr {
    NodeAddr {
        ip,
        prefix_len: if ip.is_ipv4() {
            c.subnet_v4
        } else {
            c.subnet_v6
        },
        interface: c.interface.clone(),
    }
}

#[cfg(test)]
mod tests;
