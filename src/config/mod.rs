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
//! - `bgp_section`: the BGP section's types ([`BgpSettings`], [`PeerSource`]);
//! - [`peers`]: kube-vip's `bgp_peers` into [`bgp::PeerConfig`]s;
//! - [`peer_map`]: the file's `bgp_peers` items given as mappings (every option of a peer);
//! - [`peer_values`]: the YAML tree of those mappings and their nested values;
//! - [`selector`]: node selectors of peers and the node labels they match;
//! - [`sections`]: one `watch` per section, and what SIGHUP applies.

mod bgp_section;
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

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use bgp_section::{
    BgpSettings, MpNextHop, MpNextHopMode, PeerDefaults, PeerSource, RouterId, SessionSource,
};
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
    /// The static pod manifest this vipr runs from (`vipr_static_pod_manifest`, rendered by
    /// `vipr manifest pod`): a SIGTERM after it changed is a restart in place when graceful
    /// restart is on ([`crate::restart::StaticPodManifest`]).
    pub static_pod_manifest: Option<PathBuf>,
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
