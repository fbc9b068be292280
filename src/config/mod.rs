//! The daemon's typed configuration: one struct per section, each parsed once from defaults,
//! flags, the YAML file and the environment (kube-vip's names and precedence) into enums
//! and typed values, and validated before anything touches the network. Consumers never
//! re-parse a string. Every rejected value is named with its source and value (secrets
//! redacted). Each section travels to the tasks that follow it on its own `watch`
//! ([`sections`]).
//!
//! - [`keys`]: every setting, its section, flags and help;
//! - [`kubevip`]: kube-vip's variables vipr does not implement: warned, or refused;
//! - [`source`]: the layers (flags, file, environment), each value with its origin;
//! - [`reader`]: typed access to the layers, checking every layer's value;
//! - [`build`]: the sections from the layers;
//! - [`peers`]: kube-vip's `bgp_peers` into [`bgp::PeerConfig`]s;
//! - [`peer_map`]: the file's `bgp_peers` items given as mappings (every option of a peer);
//! - [`peer_values`]: the YAML tree of those mappings and their nested values;
//! - [`selector`]: node selectors of peers and the node labels they match;
//! - [`sections`]: one `watch` per section, and what SIGHUP applies.

pub mod build;
pub mod keys;
pub mod kubevip;
pub mod peer_map;
pub mod peer_values;
pub mod peers;
pub mod reader;
pub mod sections;
pub mod selector;
pub mod source;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bgp::{BfdConfig, GracefulRestart, PeerConfig, RouteAttrs};
pub use source::{Layers, Origin, Sources};

use crate::lb::{FwdMethod, Kind as LbKind, Scheduler};

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value does not parse or is out of range.
    #[error("{origin}: {key}={value:?}: {reason}")]
    Invalid {
        /// Where it came from.
        origin: Origin,
        /// The key.
        key: String,
        /// The value, `<redacted>` for secrets.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A key the file does not know, close to one it knows (a key far from every setting's
    /// name is not repeated: it may be a value on a line of its own).
    #[error("{origin}: unknown setting {key:?} (did you mean {known}?)")]
    UnknownKey {
        /// Where.
        origin: Origin,
        /// The key.
        key: String,
        /// The setting it is closest to.
        known: &'static str,
    },
    /// One setting given twice in one source (two spellings, or the same one repeated).
    #[error("{second} and {first} give the same setting: give it once")]
    Twice {
        /// The first spelling.
        first: Origin,
        /// The second.
        second: Origin,
    },
    /// The file cannot be read or is not YAML.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Settings that contradict each other or are missing.
    #[error("{0}")]
    Conflict(String),
}

/// How VIPs are announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every node advertises host routes over BGP.
    Bgp,
    /// The Lease holder answers ARP/NDP for the VIP.
    Arp,
}

impl Mode {
    /// `bgp` or `arp`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Bgp => "bgp",
            Mode::Arp => "arp",
        }
    }
}

/// Settings fixed for the life of the process: a change needs a restart (SIGHUP names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// BGP or ARP (`bgp_enable`, `vip_arp`).
    pub mode: Mode,
    /// This node (`vip_nodename`).
    pub name: String,
    /// Which vipr on the node this is (`vipr_instance`).
    pub instance: crate::instance::Instance,
    /// Where owned addresses are recorded (`vipr_state_dir`).
    pub state_dir: PathBuf,
    /// kubeconfig when not in a cluster (`k8s_config_file`).
    pub kubeconfig: PathBuf,
    /// The API server to talk to instead of the kubeconfig's server (`kubernetes_addr`,
    /// kube-vip v1.2.3 `pkg/manager/manager.go`: `host:port` or a URL).
    pub kubernetes_addr: Option<hyper::Uri>,
    /// Log as JSON lines (`vipr_log_format`).
    pub log_json: bool,
    /// Label this node's Node with the VIPs it serves (`enable_node_labeling`).
    pub node_labeling: bool,
    /// The DaemonSet this vipr runs in, `(namespace, name)`, and this pod's
    /// `pod-template-generation` label (`vipr_daemonset`, `vipr_pod_template_generation`,
    /// both rendered by `vipr manifest daemonset`): a SIGTERM during its rolling update is a
    /// restart in place when graceful restart is on ([`crate::kube::rollout`]).
    pub daemonset: Option<DaemonSetRef>,
}

/// vipr's own DaemonSet and the template generation of this pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSetRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// This pod's `pod-template-generation` label.
    pub template_generation: String,
}

/// Where VIP addresses are put, and the VIPs served without a source of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipSettings {
    /// Interface for VIPs (`vip_interface`).
    pub interface: String,
    /// Prefix length of IPv4 VIPs on the interface (`vip_subnet`).
    pub subnet_v4: u8,
    /// Prefix length of IPv6 VIPs on the interface.
    pub subnet_v6: u8,
    /// Extra VIPs (`vipr_static_vips`).
    pub static_vips: Vec<IpAddr>,
    /// Interface for Service VIPs (`vip_servicesinterface`; `interface` when unset).
    pub services_interface: Option<String>,
    /// More interfaces a Service may name in `kube-vip.io/serviceInterface`
    /// (`vipr_service_interfaces`), besides `interface` and `services_interface`.
    pub service_interfaces: Vec<String>,
    /// BGP mode: put Service VIPs on the interface too (`bgp_attach_ip_to_interface`); when
    /// false they are only advertised (kube-vip v1.2.3 `pkg/cluster/service.go`
    /// `shouldAddServiceIP`). The control-plane and static VIPs are always put there.
    pub bgp_attach: bool,
}

/// The control-plane health check that gates its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// URL to GET (http or https; without [`HealthCheck::ca`] certificates are not verified:
    /// it is the local API server with its own CA).
    pub url: String,
    /// Time between checks.
    pub period: Duration,
    /// Per-check timeout.
    pub timeout: Duration,
    /// Consecutive failures before the route is withdrawn.
    pub failure_threshold: u32,
    /// The CA that must have signed the server's certificate
    /// (`control_plane_health_check_ca_path`), read when the configuration is loaded.
    pub ca: Option<HealthCa>,
}

/// A CA bundle for the health check (kube-vip v1.2.3 `pkg/cluster/cluster.go`
/// `newHealthCheckHTTPClient`).
#[derive(Clone, PartialEq, Eq)]
pub struct HealthCa {
    /// Where it was read from (for log lines).
    pub path: PathBuf,
    /// Its PEM text: at least one certificate.
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for HealthCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HealthCa({})", self.path.display())
    }
}

/// The control-plane VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    /// Serve it (`cp_enable`).
    pub enabled: bool,
    /// Its addresses (`address` / `vip_address`).
    pub vips: Vec<IpAddr>,
    /// The API server port (`port`).
    pub port: u16,
    /// The health gate of its route.
    pub health: Option<HealthCheck>,
    /// `address` given as a DNS name: `vips` are what it resolves to, filled and followed by
    /// the resolver task (`dns.rs`); empty in the configuration as read.
    pub dns: Option<DnsAddress>,
}

/// kube-vip's `dns_mode` (v1.2.3 `pkg/utils/dns.go` `LookupHost`): which of a name's
/// addresses are the VIPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// `first` (the default): the first address, then that family only.
    First,
    /// `ipv4`: the first IPv4 address.
    Ipv4,
    /// `ipv6`: the first IPv6 address.
    Ipv6,
    /// `dual`: the first of each family there is.
    Dual,
}

/// The control-plane VIP as a DNS name (`address`, `dns_mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAddress {
    /// The name.
    pub name: String,
    /// Which addresses.
    pub mode: DnsMode,
}

impl ControlPlane {
    /// The VIPs to serve: none unless enabled.
    pub fn served(&self) -> &[IpAddr] {
        if self.enabled {
            &self.vips
        } else {
            &[]
        }
    }
}

/// Which Services vipr serves (`svc_namespace`, `lb_class_only`, `lb_class_name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFilter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only Services whose loadBalancerClass is `class_name`.
    pub class_only: bool,
    /// vipr's loadBalancerClass.
    pub class_name: String,
}

/// Services of type LoadBalancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    /// Serve them (`svc_enable`).
    pub enabled: bool,
    /// Which.
    pub filter: ServiceFilter,
    /// Address pools (`vipr_pools`), in order.
    pub pools: Vec<crate::ipam::pools::Pool>,
    /// Refuse every address when there is no pool (`vipr_pools_required`).
    pub pools_required: bool,
    /// kube-vip-cloud-provider's ConfigMap, `(namespace, name)` (`vipr_pool_configmap`).
    pub pool_configmap: Option<(String, String)>,
    /// Where address claims live (`vipr_claims_namespace`).
    pub claims_namespace: String,
    /// Write `status.loadBalancer.ingress` of the Services served (not
    /// `disable_service_updates`, kube-vip v1.2.3 `pkg/services/services.go`
    /// `configureService`: `if !DisableServiceUpdates { updateStatus }`).
    pub status_updates: bool,
    /// A cordoned node (`spec.unschedulable`) serves no Service VIP
    /// (`vipr_withdraw_cordoned`).
    pub withdraw_cordoned: bool,
}

/// Where the BGP Identifier comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterId {
    /// The peer provider's, else an IPv4 address of the node (`bgp_routerid` unset).
    Auto,
    /// `bgp_routerid`.
    Fixed(Ipv4Addr),
    /// The first IPv4 address of this interface (`bgp_routerinterface`).
    Interface(String),
}

/// Where sessions take their source address from (`bgp_sourceip`, `bgp_sourceif`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSource {
    /// This address (for peers of its family).
    Address(IpAddr),
    /// An address of this interface (of the peer's family).
    Interface(String),
}

/// kube-vip's `mpbgp_nexthop` (v1.2.3 `pkg/kubevip/config_bgp.go`, `FindMpbgpAddresses`):
/// where the next hop of the routes of the other address family than a session's comes
/// from (IPv6 routes over an IPv4 session, IPv4 routes over an IPv6 one). The session's own
/// family always takes the session's local address (kube-vip's GoBGP: next-hop-self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpNextHopMode {
    /// `fixed`: `mpbgp_ipv4` / `mpbgp_ipv6`.
    Fixed,
    /// `auto_sourceip`: an address of the interface that holds `bgp_sourceip`.
    AutoSourceIp,
    /// `auto_sourceif`: an address of `bgp_sourceif`.
    AutoSourceIf,
}

/// The MP-BGP next hop settings, node-wide or a peer's own (6th `bgp_peers` field, each
/// part falling back to the node-wide one as kube-vip's `SetMpbgpOptions` does). No mode:
/// vipr's own choice (an address of `bgp_sourceif`, else a global address of the node).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MpNextHop {
    /// `mpbgp_nexthop`.
    pub mode: Option<MpNextHopMode>,
    /// `mpbgp_ipv4`: for IPv4 routes over IPv6 sessions (mode fixed).
    pub v4: Option<Ipv4Addr>,
    /// `mpbgp_ipv6`: for IPv6 routes over IPv4 sessions (mode fixed).
    pub v6: Option<Ipv6Addr>,
}

impl MpNextHop {
    /// Each part from `self`, else from `node` (kube-vip's `SetMpbgpOptions`).
    pub fn or(self, node: MpNextHop) -> MpNextHop {
        MpNextHop {
            mode: self.mode.or(node.mode),
            v4: self.v4.or(node.v4),
            v6: self.v6.or(node.v6),
        }
    }
}

/// What every peer takes from the node-wide BGP settings unless it says otherwise (a
/// peer's own `bgp_peers` BFD field; a provider's AS and source address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDefaults {
    /// `bgp_hold_time`.
    pub hold_time: u16,
    /// `bgp_keepalive_interval` (`None`: a third of the negotiated hold time).
    pub keepalive: Option<u16>,
    /// `vipr_bfd` (single-hop peers only).
    pub bfd: Option<BfdConfig>,
    /// `vipr_graceful_restart`, `vipr_graceful_restart_time`.
    pub graceful_restart: Option<GracefulRestart>,
    /// `vipr_bgp_gtsm`: GTSM hops for peers that are not multihop and have no setting of
    /// their own.
    pub gtsm_hops: Option<u8>,
}

impl PeerDefaults {
    /// A discovered peer (provider) with the node-wide settings the provider does not give.
    pub fn complete(&self, p: PeerConfig) -> PeerConfig {
        PeerConfig {
            hold_time: self.hold_time,
            keepalive: self.keepalive,
            // BFD here is single-hop (RFC 5881): not for multihop peers.
            bfd: if p.is_multihop() { None } else { self.bfd },
            graceful_restart: self.graceful_restart,
            gtsm_hops: match p.gtsm_hops {
                Some(h) => Some(h),
                None if p.is_multihop() => None,
                None => self.gtsm_hops,
            },
            ..p
        }
    }
}

/// BGP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpSettings {
    /// Local AS (`bgp_as`).
    pub local_as: u32,
    /// Router id.
    pub router_id: RouterId,
    /// Session source address, where neither the peer nor its provider names one.
    pub source: Option<SessionSource>,
    /// Peers from the configuration (`bgp_peers`, `bgp_peeraddress`), complete but for a
    /// source address taken from an interface.
    pub peers: Vec<PeerConfig>,
    /// What discovered peers take from the node's settings.
    pub defaults: PeerDefaults,
    /// Passive listener (`vipr_bgp_listen`).
    pub listen: Option<SocketAddr>,
    /// Attributes of every route (`vipr_communities`, `vipr_large_communities`,
    /// `vipr_local_pref`, `vipr_med`).
    pub attrs: RouteAttrs,
    /// Named attribute sets for pools, Services and the control-plane VIP
    /// (`vipr_bgp_attribute_sets`, `vipr_control_plane_bgp_attributes`).
    pub attr_sets: crate::route_attrs::AttrSets,
    /// RFC 8326 drain before withdrawing at shutdown (`vipr_drain_seconds`).
    pub drain: Option<Duration>,
    /// Node-wide MP-BGP next hop (`mpbgp_nexthop`, `mpbgp_ipv4`, `mpbgp_ipv6`).
    pub mp_next_hop: MpNextHop,
    /// Configured peers' own MP-BGP next hop settings (6th `bgp_peers` field), unmerged.
    pub peer_mp_next_hop: Vec<(IpAddr, MpNextHop)>,
    /// What configured peers given as mappings in the file have besides their session
    /// (node selector, source interface), by address.
    pub peer_extras: std::collections::BTreeMap<IpAddr, peer_map::PeerExtras>,
    /// This node's labels from the configuration (`vipr_node_labels`): when set, node
    /// selectors match these instead of the Node object's.
    pub node_labels: Option<selector::Labels>,
}

impl BgpSettings {
    /// Whether graceful restart is advertised, to every peer or to a configured one: then a
    /// rolling update of vipr's DaemonSet is a restart in place.
    pub fn graceful_restart(&self) -> bool {
        self.defaults.graceful_restart.is_some()
            || self.peers.iter().any(|p| p.graceful_restart.is_some())
    }

    /// Whether a configured peer has a node selector.
    pub fn has_selectors(&self) -> bool {
        self.peer_extras.values().any(|e| e.node_selector.is_some())
    }

    /// The Secrets configured peers take their password from.
    pub fn password_secrets(&self) -> std::collections::BTreeSet<&peer_map::SecretRef> {
        self.peer_extras
            .values()
            .filter_map(|e| e.password_secret.as_ref())
            .collect()
    }

    /// The MP-BGP next hop settings of the peer at `addr`: its own, else the node's.
    pub fn mp_next_hop_of(&self, addr: IpAddr) -> MpNextHop {
        self.peer_mp_next_hop
            .iter()
            .find(|(a, _)| *a == addr)
            .map_or(self.mp_next_hop, |(_, m)| m.or(self.mp_next_hop))
    }
}

/// Where peers come from besides the configuration's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSource {
    /// Only `bgp_peers` / `bgp_peeraddress`.
    Static,
    /// This node's annotations under a prefix (`annotation`).
    Annotations {
        /// e.g. `metal.equinix.com`.
        prefix: String,
    },
    /// An Equinix Metal-style metadata service (`vipr_peers_from=equinix-metal`, `vip_packet`).
    EquinixMetal {
        /// `vipr_metadata_url`.
        url: String,
        /// `vipr_metadata_interval`.
        interval: Duration,
    },
}

/// Timing of the election (kube-vip's `vip_leaseduration`, `vip_renewdeadline`,
/// `vip_retryperiod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a Lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry_period: Duration,
}

/// Lease election (ARP mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    /// `vip_leaderelection`: the control-plane VIP is elected too. Without it there is an
    /// election only for Services in ARP mode, which kube-vip v1.2.3 always elects
    /// (`pkg/manager/worker/arp.go` `StartServices`: one Lease per Service with
    /// `svc_election`, else the services Lease).
    pub control_plane: bool,
    /// Control-plane Lease name (`vip_leasename`, without its `namespace/`).
    pub lease_name: String,
    /// Namespace of the control-plane Lease: the `namespace/` of `vip_leasename`, else
    /// `cp_namespace` (kube-vip v1.2.3 `pkg/lease/lease.go` `NamespaceName`).
    pub lease_namespace: String,
    /// The Lease for all Services without `svc_election` (`svc_leasename`, default
    /// `plndr-svcs-lock`), without its `namespace/`.
    pub services_lease_name: String,
    /// Its namespace, read as for `vip_leasename`.
    pub services_lease_namespace: String,
    /// Namespace of the Leases (`cp_namespace`).
    pub namespace: String,
    /// Lease duration, renew deadline, retry period.
    pub timing: Timing,
    /// One Lease per Service (`svc_election`).
    pub per_service: bool,
    /// BGP mode: only the holder of the control-plane Lease advertises the control-plane
    /// VIP (`vipr_bgp_leader_only`, kube-vip's behaviour with `vip_leaderelection=true`,
    /// `pkg/manager/worker/bgp.go` `StartControlPlane`); otherwise every node advertises it.
    pub bgp_leader_only: bool,
    /// `per_service_election_on_demand`: without `svc_election`, Services annotated
    /// `kube-vip.io/forcePerServiceElection: "true"` have a Lease of their own (kube-vip
    /// v1.2.3 `pkg/manager/worker/common.go` `GlobalLeader`), the others share
    /// `svc_leasename`.
    pub on_demand: bool,
}

/// ARP/NDP mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpSettings {
    /// Gratuitous ARP refresh period (`vip_arpRate`).
    pub rate: Duration,
    /// Lease election (`vip_leaderelection`), `None` without.
    pub election: Option<Election>,
    /// `vip_preserve_on_leadership_loss`: a lost IPv4 VIP stays on the interface, no longer
    /// announced, until another holder of its Lease is seen (kube-vip v1.2.3
    /// `pkg/cluster/cluster.go` `cleanupVIPs`, `clusterLeaderElection.go` `OnNewLeader`).
    pub preserve: bool,
}

/// A static control-plane backend (`vipr_lb_backends`): the port defaults to `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbBackendAddr {
    /// The API server's address.
    pub ip: IpAddr,
    /// Its port, when given.
    pub port: Option<u16>,
}

/// Control-plane load balancing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbSettings {
    /// `lb_enable`.
    pub enabled: bool,
    /// `lb_port`.
    pub port: u16,
    /// `lb_fwdmethod`.
    pub fwd: FwdMethod,
    /// `vipr_lb_scheduler`.
    pub scheduler: Scheduler,
    /// `vipr_lb_backend` (`None`: IPVS where the kernel has it, else nftables).
    pub engine: Option<LbKind>,
    /// `vipr_lb_backends` (empty: the control-plane Nodes).
    pub backends: Vec<LbBackendAddr>,
    /// `backend_health_check_interval`.
    pub health_interval: Duration,
}

/// The HTTP endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `prometheus_server` (`None`: off).
    pub addr: Option<SocketAddr>,
    /// `vipr_status_allow`: networks whose clients may read `/status` besides this host's
    /// own (empty: this host only).
    pub status_allow: Vec<ipnet::IpNet>,
}

/// A log level (kube-vip's `vip_loglevel` is a logrus number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// error
    Error,
    /// warn
    Warn,
    /// info
    Info,
    /// debug
    Debug,
    /// trace
    Trace,
}

impl LogLevel {
    /// The tracing directive.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `vip_loglevel`.
    pub level: LogLevel,
}

/// Everything the daemon needs, by section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Fixed for the life of the process.
    pub node: NodeSettings,
    /// Where VIPs go.
    pub vips: VipSettings,
    /// The control-plane VIP.
    pub control_plane: ControlPlane,
    /// Services.
    pub services: ServiceSettings,
    /// BGP.
    pub bgp: BgpSettings,
    /// Peer provider.
    pub peer_source: PeerSource,
    /// ARP mode.
    pub arp: ArpSettings,
    /// Control-plane load balancing.
    pub lb: LbSettings,
    /// HTTP endpoints.
    pub http: HttpSettings,
    /// Logging.
    pub log: LogSettings,
}

impl Config {
    /// Builds and validates the configuration from layered raw values. `hostname` is the
    /// default node name.
    pub fn from_layers(layers: &Layers, hostname: &str) -> Result<Config, ConfigError> {
        build::config(layers, hostname)
    }

    /// Whether the daemon talks to the Kubernetes API with these settings: Services, Lease
    /// elections, peers from node annotations, or control-plane load balancing with
    /// backends from the Node list.
    pub fn needs_api(&self) -> bool {
        self.services.enabled
            || (self.node.mode == Mode::Arp && self.arp.election.is_some())
            || (self.node.mode == Mode::Bgp
                && self
                    .arp
                    .election
                    .as_ref()
                    .is_some_and(|e| e.bgp_leader_only))
            || matches!(self.peer_source, PeerSource::Annotations { .. })
            || (self.lb.enabled && self.lb.backends.is_empty())
            || self.node.node_labeling
            // Node selectors of peers match the Node's labels unless vipr_node_labels is set.
            || (self.node.mode == Mode::Bgp
                && self.bgp.node_labels.is_none()
                && self.bgp.has_selectors())
            || (self.node.mode == Mode::Bgp && !self.bgp.password_secrets().is_empty())
    }

    /// Every VIP this node serves from configuration (control plane first, then static).
    pub fn configured_vips(&self) -> impl Iterator<Item = (IpAddr, crate::model::VipSource)> + '_ {
        configured_vips(&self.control_plane, &self.vips)
    }
}

/// The VIPs of the configuration with their sources (control plane first, then static).
pub fn configured_vips<'a>(
    cp: &'a ControlPlane,
    vips: &'a VipSettings,
) -> impl Iterator<Item = (IpAddr, crate::model::VipSource)> + 'a {
    use crate::model::VipSource;
    cp.served()
        .iter()
        .map(|ip| (*ip, VipSource::ControlPlane))
        .chain(vips.static_vips.iter().map(|ip| (*ip, VipSource::Static)))
}

#[cfg(test)]
mod readme_table;
#[cfg(test)]
mod tests;
