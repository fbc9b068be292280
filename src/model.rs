//! The daemon's shared vocabulary, pure data: where a VIP comes from, an address as it sits
//! on a node interface, the Services the Kubernetes watcher hands over, control-plane
//! health, the Leases held, and the one decision every shell asks — *is this VIP served on
//! this node, and if not, why* ([`Serving`], [`HeldBack`]). The reconciler (routes and
//! addresses), the status writer, the elections, `/status` and `vipr status` all use it;
//! the shells import this module, not each other.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::config::Mode;
use crate::ipam::Refusal;

/// Why a VIP is served. A VIP shared by several sources stays until the last one goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VipSource {
    /// `address` with `cp_enable`.
    ControlPlane,
    /// `vipr_static_vips`.
    Static,
    /// A Service of type LoadBalancer.
    Service {
        /// Namespace (the Service's own string, shared).
        #[serde(serialize_with = "shared_str")]
        namespace: Arc<str>,
        /// Name.
        #[serde(serialize_with = "shared_str")]
        name: Arc<str>,
    },
}

/// Serializes a shared string as the string (serde's `rc` feature is not enabled).
fn shared_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

impl fmt::Display for VipSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VipSource::ControlPlane => f.write_str("control-plane"),
            VipSource::Static => f.write_str("static"),
            VipSource::Service { namespace, name } => write!(f, "service/{namespace}/{name}"),
        }
    }
}

/// An address on an interface, as vipr puts it there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NodeAddr {
    /// The VIP.
    pub ip: IpAddr,
    /// Prefix length on the interface (`vip_subnet`).
    pub prefix_len: u8,
    /// Interface name.
    pub interface: String,
    /// Put there as a local route (`ip route add local IP/32 dev IF table local proto 86`)
    /// rather than an interface address: a VIP that only Services ask for in BGP mode. The
    /// kernel accepts and answers traffic to it alike, but inserts a route in logarithmic
    /// time where it inserts an address in time linear in the interface's addresses (10 000
    /// addresses on `lo` cost seconds of kernel time, 100 000 minutes; the routes 0.1 s and 1 s).
    pub route: bool,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.route {
            write!(
                f,
                "local {}/{} dev {} table local",
                self.ip, self.prefix_len, self.interface
            )
        } else {
            write!(f, "{}/{} dev {}", self.ip, self.prefix_len, self.interface)
        }
    }
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

/// Which Leases this node holds (ARP mode; BGP mode serves without election).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leadership {
    /// The control-plane Lease (`vip_leasename`).
    pub control_plane: bool,
    /// The Lease for all Services (`plndr-svcs-lock`).
    pub services: bool,
    /// Per-Service Leases held (`namespace/name`), with `svc_election`.
    pub per_service: BTreeSet<String>,
    /// Leases another node is seen holding (kube-vip's `OnNewLeader` with another identity):
    /// with `vip_preserve_on_leadership_loss` a lost IPv4 VIP stays on the node until then.
    pub taken: Taken,
}

/// Which Leases another node is seen holding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    /// The control-plane Lease.
    pub control_plane: bool,
    /// The Lease for all Services.
    pub services: bool,
    /// Per-Service Leases (`namespace/name`).
    pub per_service: BTreeSet<String>,
}

/// Where a Service's address came from (status is written only from the first two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    /// `kube-vip.io/loadbalancerIPs`.
    Annotation,
    /// `spec.loadBalancerIP`.
    Spec,
    /// `status.loadBalancer.ingress` written by another controller (vipr's own status only
    /// mirrors an annotation or spec, so it never outranks a change of those).
    Status,
    /// Allocated by vipr from an address pool.
    Allocated,
}

/// One Service vipr may serve, as the Kubernetes watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceVip {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// Its VIPs: the addresses it may have (asked for and granted, or allocated).
    pub ips: Vec<IpAddr>,
    /// Addresses it asked for that are refused, and why.
    pub refused: Vec<(IpAddr, Refusal)>,
    /// Where the addresses came from.
    pub source: AddressSource,
    /// `externalTrafficPolicy: Local`: serve only with a local ready endpoint.
    pub local_only: bool,
    /// This node has a ready (or, during termination, serving) endpoint.
    pub local_endpoint: bool,
    /// Some node has a ready (or, during termination, serving) endpoint.
    pub endpoint_anywhere: bool,
    /// `kube-vip.io/allow-reconcile-without-endpoints: "true"` on an
    /// `externalTrafficPolicy: Cluster` Service: served without any endpoint.
    pub without_endpoints: bool,
    /// This node serves no Service VIP: labelled
    /// `node.kubernetes.io/exclude-from-external-load-balancers`, or cordoned.
    pub node_excluded: Option<Exclusion>,
    /// The ingress IPs currently in the Service's status.
    pub status_ips: Vec<IpAddr>,
    /// Annotated `kube-vip.io/forcePerServiceElection: "true"`: a Lease of its own with
    /// `per_service_election_on_demand` (ARP mode).
    pub force_election: bool,
    /// The interface its annotation `kube-vip.io/serviceInterface` names (tenant input:
    /// the reconciler puts the VIP there only if the configuration allows that interface).
    pub interface: Option<String>,
    /// The BGP attribute sets its annotation `vipr.io/bgp-attributes` names (tenant input:
    /// used only when its pool allows them, `crate::route_attrs::choose`).
    pub bgp_attributes: Option<Vec<String>>,
}

impl ServiceVip {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether it has a Lease of its own (`svc_election`, or on demand).
    pub fn own_lease(&self, per_service: bool, on_demand: bool) -> bool {
        per_service || (on_demand && self.force_election)
    }

    /// Whether this node may serve the Service at all, before any Lease: not on a node
    /// excluded from external load balancers, only while the Service has an endpoint
    /// ([`Self::has_endpoints`]), and with `externalTrafficPolicy: Local` only with a ready
    /// local endpoint. (In BGP mode this is the whole decision; in ARP mode only such nodes
    /// compete for a per-Service Lease.)
    pub fn eligible(&self) -> Result<(), HeldBack> {
        self.node_ok()?;
        self.backends()
    }

    /// [`Self::eligible`] but for this node's labels: whether the Service's status is this
    /// node's to write (an excluded node still writes it, as MetalLB's controller does for
    /// every Service whatever its speakers).
    pub fn backends(&self) -> Result<(), HeldBack> {
        if self.local_only && !self.local_endpoint {
            Err(HeldBack::NoLocalEndpoint)
        } else {
            self.has_endpoints()
        }
    }

    /// Kubernetes' `node.kubernetes.io/exclude-from-external-load-balancers` (any value, as
    /// MetalLB v0.16.1 `internal/k8s/nodes/nodes.go` `IsNodeExcludedFromBalancers` and the
    /// service controller read it), or a cordoned node (`vipr_withdraw_cordoned`): this
    /// node announces no Service VIP.
    pub fn node_ok(&self) -> Result<(), HeldBack> {
        match self.node_excluded {
            Some(x) => Err(HeldBack::NodeExcluded(x)),
            None => Ok(()),
        }
    }

    /// kube-vip v1.2.3 (`pkg/endpoints/endpoints.go`, `Processor.AddOrModify`) announces a
    /// Service only once it has an endpoint (for `externalTrafficPolicy: Cluster` anywhere
    /// in the cluster), and withdraws it when the last one goes; `Cluster` Services opt out
    /// with `kube-vip.io/allow-reconcile-without-endpoints: "true"`
    /// (`shouldAllowReconcileWithoutEndpoints`, which never applies to `Local`).
    pub fn has_endpoints(&self) -> Result<(), HeldBack> {
        if self.endpoint_anywhere || self.without_endpoints {
            Ok(())
        } else {
            Err(HeldBack::NoEndpoint)
        }
    }
}

/// What the Service watcher publishes: every Service this node may serve, by
/// `namespace/name`. A persistent map: publishing is a clone that shares every entry, and
/// a consumer diffs two snapshots in time proportional to what changed between them.
pub type Services = imbl::OrdMap<Arc<str>, Arc<ServiceVip>>;

/// Why this node serves no Service VIP at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    /// Labelled `node.kubernetes.io/exclude-from-external-load-balancers`.
    Label,
    /// Cordoned: `spec.unschedulable` (`kubectl cordon`, the first step of `kubectl
    /// drain`), while `vipr_withdraw_cordoned` is on. The routes go before the pods are
    /// evicted, so traffic moves to the other nodes while this one still answers.
    Cordoned,
}

/// Why a VIP is not served (or not advertised) on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldBack {
    /// The control-plane health check has not passed yet.
    HealthUnknown,
    /// The control-plane health check is failing.
    HealthDown,
    /// ARP mode: another node holds the Lease.
    NotLeader,
    /// `externalTrafficPolicy: Local` and no ready endpoint on this node.
    NoLocalEndpoint,
    /// No ready endpoint anywhere, and not `kube-vip.io/allow-reconcile-without-endpoints`.
    NoEndpoint,
    /// This node serves no Service VIP (labelled, or cordoned).
    NodeExcluded(Exclusion),
    /// The address could not be put on the interface (retried at the next resync).
    AddFailed(String),
    /// The Service may not have this address.
    Refused(Refusal),
    /// The Service's `kube-vip.io/serviceInterface` names an interface the configuration
    /// does not allow for Services.
    InterfaceNotAllowed(String),
}

impl fmt::Display for HeldBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeldBack::HealthUnknown => f.write_str("waiting for the first successful health check"),
            HeldBack::HealthDown => f.write_str("control-plane health check failing"),
            HeldBack::NotLeader => f.write_str("another node holds the lease"),
            HeldBack::NoLocalEndpoint => {
                f.write_str("externalTrafficPolicy: Local and no ready endpoint on this node")
            }
            HeldBack::NoEndpoint => f.write_str(
                "no ready endpoint in the cluster (kube-vip.io/allow-reconcile-without-endpoints is not \"true\")",
            ),
            HeldBack::NodeExcluded(Exclusion::Label) => f.write_str(
                "this node is labelled node.kubernetes.io/exclude-from-external-load-balancers",
            ),
            HeldBack::NodeExcluded(Exclusion::Cordoned) => f.write_str(
                "this node is cordoned (spec.unschedulable: kubectl cordon or drain; vipr_withdraw_cordoned)",
            ),
            HeldBack::AddFailed(e) => write!(f, "cannot add address: {e}"),
            HeldBack::Refused(r) => write!(f, "refused: {r}"),
            HeldBack::InterfaceNotAllowed(i) => write!(
                f,
                "kube-vip.io/serviceInterface names {i:?}, not an interface allowed for Services (vip_interface, vip_servicesinterface, vipr_service_interfaces)"
            ),
        }
    }
}

/// Everything the serving decision depends on besides the VIP itself.
#[derive(Debug, Clone, Copy)]
pub struct Serving<'a> {
    /// BGP or ARP.
    pub mode: Mode,
    /// ARP mode with Lease election: `Some(per_service)`; `None` without election.
    pub election: Option<bool>,
    /// `per_service_election_on_demand`: Services with `force_election` have a Lease of
    /// their own without `svc_election`.
    pub on_demand: bool,
    /// The control-plane VIP follows its Lease: ARP mode with election, or BGP mode with
    /// `vipr_bgp_leader_only`.
    pub cp_leased: bool,
    /// Control-plane health.
    pub health: Health,
    /// The Leases held.
    pub leadership: &'a Leadership,
}

impl Serving<'_> {
    /// Is `ip`, from this source, served here, and if not, why.
    pub fn decide(
        &self,
        source: &VipSource,
        ip: IpAddr,
        services: &Services,
    ) -> Result<(), HeldBack> {
        match source {
            VipSource::ControlPlane => self.control_plane(),
            VipSource::Static => Ok(()),
            VipSource::Service { namespace, name } => services
                .get(format!("{namespace}/{name}").as_str())
                .map_or(Ok(()), |s| match s.refused.iter().find(|(a, _)| *a == ip) {
                    Some((_, r)) => Err(HeldBack::Refused(r.clone())),
                    None => self.service(s),
                }),
        }
    }

    /// The control-plane VIP: health gate, then (ARP with election) the Lease.
    pub fn control_plane(&self) -> Result<(), HeldBack> {
        match self.health {
            Health::NotChecked | Health::Up => {}
            Health::Unknown => return Err(HeldBack::HealthUnknown),
            Health::Down => return Err(HeldBack::HealthDown),
        }
        if self.cp_leased && !self.leadership.control_plane {
            return Err(HeldBack::NotLeader);
        }
        Ok(())
    }

    /// Whether the Lease `source` follows is seen held by another node (ARP mode), so a VIP
    /// kept by `vip_preserve_on_leadership_loss` must go.
    pub fn taken(&self, source: &VipSource, services: &Services) -> bool {
        let t = &self.leadership.taken;
        match source {
            VipSource::ControlPlane => t.control_plane,
            VipSource::Static => false,
            VipSource::Service { namespace, name } => {
                let key = format!("{namespace}/{name}");
                match (self.election, services.get(key.as_str())) {
                    (Some(per_service), Some(s)) if s.own_lease(per_service, self.on_demand) => {
                        t.per_service.contains(&key)
                    }
                    _ => t.services,
                }
            }
        }
    }

    /// A Service's VIP: in BGP mode its eligibility; in ARP mode, once it has endpoints,
    /// the Lease (the Services Lease, or the Service's own with `svc_election`), everywhere
    /// without election. A node excluded from external load balancers serves none, except
    /// as the holder of the one Services Lease: it contends for that Lease like any node,
    /// and a holder that served nothing would leave every Service unserved.
    pub fn service(&self, s: &ServiceVip) -> Result<(), HeldBack> {
        match (self.mode, self.election) {
            (Mode::Bgp, _) => s.eligible(),
            (Mode::Arp, None) => s.node_ok().and_then(|()| s.has_endpoints()),
            (Mode::Arp, Some(per_service)) => {
                if s.own_lease(per_service, self.on_demand) {
                    s.node_ok()?;
                }
                s.has_endpoints()?;
                let held = if s.own_lease(per_service, self.on_demand) {
                    self.leadership.per_service.contains(&s.key())
                } else {
                    self.leadership.services
                };
                if held {
                    Ok(())
                } else {
                    Err(HeldBack::NotLeader)
                }
            }
        }
    }
}

/// Counters of the work done per event (`vipr_services_planned_total`,
/// `vipr_services_derived_total`, `vipr_vips_decided_total`): they must follow what
/// changed, not the size of the cluster.
#[derive(Debug, Default)]
pub struct WorkCounts {
    /// Services planned by the allocator.
    pub planned: std::sync::atomic::AtomicU64,
    /// Services whose outputs the watcher derived again.
    pub derived: std::sync::atomic::AtomicU64,
    /// VIPs the reconciler decided again.
    pub decided: std::sync::atomic::AtomicU64,
}

impl WorkCounts {
    /// `[planned, derived, decided]`.
    pub fn snapshot(&self) -> [u64; 3] {
        use std::sync::atomic::Ordering::Relaxed;
        [
            self.planned.load(Relaxed),
            self.derived.load(Relaxed),
            self.decided.load(Relaxed),
        ]
    }
}

/// A Lease for Services that this node contends for (ARP mode), as `/metrics` shows it the
/// way kube-vip does (`kube_vip_is_leader`, `kube_vip_leader_election_transitions_total`,
/// `kube_vip_service_election_loops`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEntry {
    /// With `svc_election`, the Service (`namespace`, `name`) the Lease is for; `None` for
    /// the Lease of all Services (`plndr-svcs-lock`).
    pub service: Option<(String, String)>,
    /// This node holds it now.
    pub held: bool,
    /// Times this node became its holder while it contended for it.
    pub won: u64,
}

/// A Lease contended now: its name, its Service (see [`LeaseEntry::service`]), held.
pub type LeaseSeen = (String, Option<(String, String)>, bool);

/// The Services' Leases contended for, by Lease name: written by the elections task on
/// every change it sees, read per scrape. The control-plane Lease is not among them:
/// kube-vip reports only its Services' Leases.
#[derive(Debug, Default)]
pub struct LeaseMetrics(std::sync::Mutex<std::collections::BTreeMap<String, LeaseEntry>>);

impl LeaseMetrics {
    /// The Leases contended now, `(name, service, held)`. One held now that was not held at
    /// the last update counts a win; one no longer contended is dropped with its count.
    pub fn update(&self, now: impl IntoIterator<Item = LeaseSeen>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = std::collections::BTreeMap::new();
        for (name, service, held) in now {
            let before = m.remove(&name);
            let was_held = before.as_ref().is_some_and(|e| e.held);
            let won = before.map_or(0, |e| e.won) + u64::from(held && !was_held);
            next.insert(name, LeaseEntry { service, held, won });
        }
        *m = next;
    }

    /// Every Lease contended, by name.
    pub fn snapshot(&self) -> Vec<(String, LeaseEntry)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// One VIP as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipState {
    /// The address.
    pub address: IpAddr,
    /// Why it is served.
    pub sources: Vec<VipSource>,
    /// Interface it is on, if it is on the node.
    pub interface: Option<String>,
    /// Advertised over BGP.
    pub advertised: bool,
    /// The attribute sets its route carries (`crate::route_attrs`; empty: the global
    /// attributes, or not advertised).
    pub attribute_sets: Vec<String>,
    /// Held back, and why (e.g. the health check failing).
    pub held_back: Option<HeldBack>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(local_only: bool, local: bool, anywhere: bool, allowed: bool) -> ServiceVip {
        ServiceVip {
            namespace: "default".into(),
            name: "web".into(),
            ips: vec!["198.51.100.1".parse().unwrap()],
            refused: vec![],
            source: AddressSource::Annotation,
            local_only,
            local_endpoint: local,
            endpoint_anywhere: anywhere,
            without_endpoints: allowed,
            node_excluded: None,
            status_ips: vec![],
            force_election: false,
            interface: None,
            bgp_attributes: None,
        }
    }

    #[test]
    fn no_mode_serves_a_service_without_a_ready_endpoint_unless_allowed() {
        let all = Leadership {
            control_plane: true,
            services: true,
            per_service: ["default/web".to_string()].into_iter().collect(),
            ..Leadership::default()
        };
        for (mode, election) in [
            (Mode::Bgp, None),
            (Mode::Arp, None),
            (Mode::Arp, Some(false)),
            (Mode::Arp, Some(true)),
        ] {
            let s = Serving {
                mode,
                election,
                health: Health::NotChecked,
                leadership: &all,
                on_demand: false,
                cp_leased: election.is_some(),
            };
            let why = format!("{mode:?} {election:?}");
            assert_eq!(
                s.service(&svc(false, false, false, false)),
                Err(HeldBack::NoEndpoint),
                "{why}"
            );
            assert_eq!(s.service(&svc(false, false, true, false)), Ok(()), "{why}");
            assert_eq!(s.service(&svc(false, false, false, true)), Ok(()), "{why}");
        }
        // Excluded from external load balancers: no Service VIP, except as the holder of
        // the one Services Lease.
        let mut x = svc(false, false, true, false);
        x.node_excluded = Some(Exclusion::Label);
        for (mode, election, want) in [
            (
                Mode::Bgp,
                None,
                Err(HeldBack::NodeExcluded(Exclusion::Label)),
            ),
            (
                Mode::Arp,
                None,
                Err(HeldBack::NodeExcluded(Exclusion::Label)),
            ),
            (
                Mode::Arp,
                Some(true),
                Err(HeldBack::NodeExcluded(Exclusion::Label)),
            ),
            (Mode::Arp, Some(false), Ok(())),
        ] {
            let s = Serving {
                mode,
                election,
                health: Health::NotChecked,
                leadership: &all,
                on_demand: false,
                cp_leased: election.is_some(),
            };
            assert_eq!(s.service(&x), want, "{mode:?} {election:?}");
        }
        assert_eq!(x.backends(), Ok(()), "its status is still written");
        // Local: the local endpoint decides first (BGP, and who contends in ARP).
        assert_eq!(
            svc(true, false, false, false).eligible(),
            Err(HeldBack::NoLocalEndpoint)
        );
        assert_eq!(
            svc(true, false, true, false).eligible(),
            Err(HeldBack::NoLocalEndpoint)
        );
        assert_eq!(svc(true, true, true, false).eligible(), Ok(()));
    }
}
