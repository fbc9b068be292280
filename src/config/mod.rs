//! The daemon's typed configuration, built once from defaults, flags, the YAML file and the
//! environment (kube-vip's names and precedence) and validated before anything touches the
//! network. Every rejected value is named with its source and value (secrets redacted).

pub mod keys;
pub mod peers;
pub mod source;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bgp::{Community, LargeCommunity};
pub use peers::{BfdSpec, PeerSpec};
pub use source::{Layers, Origin};

use peers::{parse_asn, parse_bool, parse_peers};

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
    /// A key the file does not know.
    #[error("{origin}: unknown setting {key:?}")]
    UnknownKey {
        /// Where.
        origin: Origin,
        /// The key.
        key: String,
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

/// The control-plane health check that gates its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// URL to GET (http or https; certificates are not verified: it is the local API server).
    pub url: String,
    /// Time between checks.
    pub period: Duration,
    /// Per-check timeout.
    pub timeout: Duration,
    /// Consecutive failures before the route is withdrawn.
    pub failure_threshold: u32,
}

/// BGP settings shared by all sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpSettings {
    /// Router id, if set explicitly.
    pub router_id: Option<Ipv4Addr>,
    /// Interface to take the router id from.
    pub router_interface: Option<String>,
    /// Local AS.
    pub local_as: u32,
    /// Static peers.
    pub peers: Vec<PeerSpec>,
    /// Session source address.
    pub source_ip: Option<IpAddr>,
    /// Interface to take the source address from.
    pub source_if: Option<String>,
    /// Hold time.
    pub hold_time: u16,
    /// Keepalive interval.
    pub keepalive: u16,
    /// Passive listener.
    pub listen: Option<SocketAddr>,
    /// Communities on every route.
    pub communities: Vec<Community>,
    /// Large communities on every route.
    pub large_communities: Vec<LargeCommunity>,
    /// LOCAL_PREF for iBGP.
    pub local_pref: Option<u32>,
    /// MED.
    pub med: Option<u32>,
    /// Graceful restart time when enabled.
    pub graceful_restart: Option<u16>,
    /// RFC 8326 drain before withdrawing at shutdown.
    pub drain: Option<Duration>,
    /// `vipr_bfd`: BFD for peers without their own 7th field (multihop peers excepted).
    pub bfd: BfdSpec,
}

/// ARP mode and leader election settings (validated here, used by the ARP feature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpSettings {
    /// Gratuitous ARP refresh period.
    pub rate: Duration,
    /// Use a Lease.
    pub leader_election: bool,
    /// Control-plane Lease name.
    pub lease_name: String,
    /// Lease duration.
    pub lease_duration: Duration,
    /// Renew deadline.
    pub renew_deadline: Duration,
    /// Retry period.
    pub retry_period: Duration,
    /// Namespace of the Leases.
    pub namespace: String,
    /// One Lease per Service.
    pub svc_election: bool,
}

/// Service and load-balancer settings (validated here, used by later features).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    /// Only Services in this namespace.
    pub namespace: Option<String>,
    /// Only Services of `class_name`.
    pub class_only: bool,
    /// loadBalancerClass.
    pub class_name: String,
    /// IPVS control-plane load balancing.
    pub lb_enable: bool,
    /// Load balancer port.
    pub lb_port: u16,
    /// IPVS forwarding method.
    pub lb_fwdmethod: String,
    /// Backend health check interval.
    pub backend_health_check_interval: Duration,
    /// ipvs / nftables / auto.
    pub lb_backend: Option<String>,
    /// IPVS scheduler.
    pub lb_scheduler: String,
    /// Static backends.
    pub lb_backends: Vec<String>,
    /// Node annotation prefix for peers.
    pub annotation: Option<String>,
    /// Where peers come from.
    pub peers_from: String,
    /// Equinix metadata URL.
    pub metadata_url: String,
    /// Metadata poll interval.
    pub metadata_interval: Duration,
}

/// Everything the daemon needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// BGP or ARP.
    pub mode: Mode,
    /// Control-plane VIPs (`address` / `vip_address`).
    pub vips: Vec<IpAddr>,
    /// Extra static VIPs (`vipr_static_vips`).
    pub static_vips: Vec<IpAddr>,
    /// Control-plane port.
    pub port: u16,
    /// Interface for VIPs.
    pub interface: String,
    /// Prefix length of IPv4 VIPs on the interface.
    pub subnet_v4: u8,
    /// Prefix length of IPv6 VIPs on the interface.
    pub subnet_v6: u8,
    /// Serve the control-plane VIP.
    pub cp_enable: bool,
    /// Serve Services.
    pub svc_enable: bool,
    /// This node.
    pub node_name: String,
    /// BGP.
    pub bgp: BgpSettings,
    /// Health gate of the control-plane route.
    pub health: Option<HealthCheck>,
    /// /metrics etc.
    pub http: Option<SocketAddr>,
    /// kubeconfig.
    pub kubeconfig: PathBuf,
    /// Log filter directive (tracing).
    pub log_level: String,
    /// json or text.
    pub log_json: bool,
    /// ARP settings.
    pub arp: ArpSettings,
    /// Service/LB settings.
    pub svc: ServiceSettings,
    /// Where owned addresses are recorded.
    pub state_dir: PathBuf,
}

/// Typed access to layered raw values with error reporting.
struct Reader<'a> {
    layers: &'a Layers,
}

impl Reader<'_> {
    fn raw(&self, key: &str) -> Option<(&str, &Origin)> {
        self.layers
            .get(key)
            .map(|r| (r.value.trim(), &r.origin))
            .filter(|(v, _)| !v.is_empty())
    }

    fn err(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        let (value, origin) = match self.layers.get(key) {
            Some(r) => (r.value.clone(), r.origin.clone()),
            None => (String::new(), Origin::Env(key.to_string())),
        };
        let secret = keys::find(key).is_some_and(|k| k.secret);
        ConfigError::Invalid {
            origin,
            key: key.to_string(),
            value: if secret { "<redacted>".into() } else { value },
            reason: reason.into(),
        }
    }

    /// `key="value" (origin)` for conflict messages (not for secrets).
    fn show(&self, key: &str) -> String {
        match self.layers.get(key) {
            Some(r) => format!("{key}={:?} ({})", r.value, r.origin),
            None => key.to_string(),
        }
    }

    fn parse<T>(
        &self,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some((v, _)) => f(v).map(Some).map_err(|e| self.err(key, e)),
        }
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self
            .parse(key, |v| {
                parse_bool(v).ok_or_else(|| "expected true or false".to_string())
            })?
            .unwrap_or(default))
    }

    fn num<T>(&self, key: &str, default: T, lo: T, hi: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        Ok(self
            .parse(key, |v| match v.parse::<T>() {
                Ok(n) if n >= lo && n <= hi => Ok(n),
                _ => Err(format!("expected a number in {lo}..={hi}")),
            })?
            .unwrap_or(default))
    }

    fn secs(&self, key: &str, default: u64, lo: u64, hi: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.num(key, default, lo, hi)?))
    }

    /// Seconds that may be fractional (`0.5`): a superset of kube-vip's integer values.
    fn secs_frac(
        &self,
        key: &str,
        default: f64,
        lo: f64,
        hi: f64,
    ) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs_f64(
            self.parse(key, |v| match v.parse::<f64>() {
                Ok(n) if n >= lo && n <= hi => Ok(n),
                _ => Err(format!(
                    "expected seconds in {lo}..={hi} (fractions allowed)"
                )),
            })?
            .unwrap_or(default),
        ))
    }

    fn string(&self, key: &str, default: &str) -> String {
        self.raw(key)
            .map(|(v, _)| v.to_string())
            .unwrap_or_else(|| default.to_string())
    }

    fn opt_string(&self, key: &str) -> Option<String> {
        self.raw(key).map(|(v, _)| v.to_string())
    }

    fn list<T>(
        &self,
        key: &str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        match self.raw(key) {
            None => Ok(Vec::new()),
            Some((v, _)) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| f(s).map_err(|e| self.err(key, format!("{s:?}: {e}"))))
                .collect(),
        }
    }
}

fn ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| "not an IP address".to_string())
}

fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    // kube-vip writes ":2112" for all addresses.
    let s = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    s.parse()
        .map_err(|_| "expected HOST:PORT, e.g. :2112 or 127.0.0.1:2112".to_string())
}

/// kube-vip's vip_loglevel is a logrus level number (0 panic … 5 debug, 6 trace).
fn log_level(s: &str) -> Result<String, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "0" | "1" | "2" | "error" | "panic" | "fatal" => "error",
        "3" | "warn" | "warning" => "warn",
        "4" | "info" => "info",
        "5" | "debug" => "debug",
        "6" | "trace" => "trace",
        _ => return Err("expected 0-6 or error, warn, info, debug, trace".into()),
    }
    .to_string())
}

impl Config {
    /// Builds and validates the configuration from layered raw values. `hostname` is the
    /// default node name.
    pub fn from_layers(layers: &Layers, hostname: &str) -> Result<Config, ConfigError> {
        let r = Reader { layers };
        let arp = r.bool("vip_arp", false)?;
        let bgp_enable = r.bool("bgp_enable", false)?;
        let mode = match (bgp_enable, arp) {
            (true, true) => {
                return Err(ConfigError::Conflict(format!(
                    "{} and {} are mutually exclusive: choose one mode",
                    r.show("vip_arp"),
                    r.show("bgp_enable")
                )))
            }
            (true, false) => Mode::Bgp,
            (false, true) => Mode::Arp,
            (false, false) => {
                return Err(ConfigError::Conflict(
                    "no mode: set bgp_enable=true (or vip_arp=true for the ARP/NDP fallback)"
                        .into(),
                ))
            }
        };
        let addr_key = if r.raw("address").is_some() {
            "address"
        } else {
            "vip_address"
        };
        let vips = r.list(addr_key, ip)?;
        let static_vips = r.list("vipr_static_vips", ip)?;
        let cp_enable = r.bool("cp_enable", false)?;
        let svc_enable = r.bool("svc_enable", false)?;
        if !cp_enable && !svc_enable && static_vips.is_empty() {
            return Err(ConfigError::Conflict(
                "nothing to serve: set cp_enable=true, svc_enable=true or vipr_static_vips".into(),
            ));
        }
        if cp_enable && vips.is_empty() {
            return Err(ConfigError::Conflict(
                "cp_enable=true needs address (the control-plane VIP)".into(),
            ));
        }
        let (subnet_v4, subnet_v6) = match r.raw("vip_subnet") {
            None => (32, 128),
            Some((v, _)) => {
                let parts: Vec<&str> = v.split(',').map(str::trim).collect();
                let v4 = parts[0].parse::<u8>().ok().filter(|n| (1..=32).contains(n));
                let v6 = parts
                    .get(1)
                    .map(|p| p.parse::<u8>().ok().filter(|n| (1..=128).contains(n)));
                match (v4, v6) {
                    (Some(a), None) => (a, 128),
                    (Some(a), Some(Some(b))) if parts.len() == 2 => (a, b),
                    _ => return Err(r.err("vip_subnet", "expected 1..=32 or 1..=32,1..=128")),
                }
            }
        };

        // BGP.
        let bfd = r
            .parse("vipr_bfd", |v| BfdSpec::parse(v, BfdSpec::default()))?
            .unwrap_or_default();
        let mut peers = match r.raw("bgp_peers") {
            Some((v, _)) => parse_peers(v, bfd).map_err(|e| r.err("bgp_peers", e))?,
            None => Vec::new(),
        };
        if let Some(addr) = r.parse("bgp_peeraddress", ip)? {
            let spec = PeerSpec {
                address: addr,
                remote_as: r.parse("bgp_peeras", parse_asn)?.unwrap_or(65000),
                password: r.opt_string("bgp_peerpass").map(bgp::Secret::new),
                multihop: r.bool("bgp_multihop", false)?,
                port: 179,
                extra: Vec::new(),
                bfd: None,
            };
            if peers.iter().any(|p| p.address == addr) {
                return Err(r.err("bgp_peeraddress", "this peer is also in bgp_peers"));
            }
            peers.push(spec);
        }
        let source_ip = r.parse("bgp_sourceip", ip)?;
        let source_if = r.opt_string("bgp_sourceif");
        if source_ip.is_some() && source_if.is_some() {
            return Err(ConfigError::Conflict(
                "bgp_sourceip and bgp_sourceif are mutually exclusive".into(),
            ));
        }
        let hold_time = r.num("bgp_hold_time", 30u16, 0, 65535)?;
        if hold_time == 1 || hold_time == 2 {
            return Err(r.err(
                "bgp_hold_time",
                "must be 0 or at least 3 seconds (RFC 4271)",
            ));
        }
        let keepalive = r.num("bgp_keepalive_interval", 10u16, 0, 21845)?;
        if hold_time > 0 && keepalive >= hold_time {
            return Err(r.err(
                "bgp_keepalive_interval",
                format!("must be less than bgp_hold_time ({hold_time})"),
            ));
        }
        let peers_from = r.string(
            "vipr_peers_from",
            if r.bool("vip_packet", false)? {
                "equinix-metal"
            } else {
                "static"
            },
        );
        if !["static", "equinix-metal", "annotations"].contains(&peers_from.as_str()) {
            return Err(r.err(
                "vipr_peers_from",
                "expected static, equinix-metal or annotations",
            ));
        }
        let annotation = r.opt_string("annotation");
        if peers_from == "annotations" && annotation.is_none() {
            return Err(r.err(
                "vipr_peers_from",
                "annotations needs annotation=<prefix>, e.g. metal.equinix.com",
            ));
        }
        if mode == Mode::Bgp && peers.is_empty() && peers_from == "static" && annotation.is_none() {
            return Err(ConfigError::Conflict(
                "bgp_enable=true needs peers: bgp_peers, bgp_peeraddress, annotation or vipr_peers_from".into(),
            ));
        }
        let bgp = BgpSettings {
            router_id: r.parse("bgp_routerid", |v| {
                v.parse::<Ipv4Addr>()
                    .map_err(|_| "not an IPv4 address".into())
            })?,
            router_interface: r.opt_string("bgp_routerinterface"),
            local_as: r.parse("bgp_as", parse_asn)?.unwrap_or(65000),
            peers,
            source_ip,
            source_if,
            hold_time,
            keepalive,
            listen: r.parse("vipr_bgp_listen", listen_addr)?,
            communities: r.list("vipr_communities", |s| {
                s.parse::<Community>().map_err(|e| e.to_string())
            })?,
            large_communities: r.list("vipr_large_communities", |s| {
                s.parse::<LargeCommunity>().map_err(|e| e.to_string())
            })?,
            local_pref: r.parse("vipr_local_pref", |v| {
                v.parse::<u32>()
                    .map_err(|_| "expected 0..=4294967295".into())
            })?,
            med: r.parse("vipr_med", |v| {
                v.parse::<u32>()
                    .map_err(|_| "expected 0..=4294967295".into())
            })?,
            graceful_restart: if r.bool("vipr_graceful_restart", false)? {
                Some(r.num("vipr_graceful_restart_time", 120u16, 1, 4095)?)
            } else {
                None
            },
            drain: Some(r.secs("vipr_drain_seconds", 0, 0, 3600)?).filter(|d| !d.is_zero()),
            bfd,
        };

        let health = match r.opt_string("control_plane_health_check_address") {
            None => None,
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(r.err(
                        "control_plane_health_check_address",
                        "expected an http:// or https:// URL",
                    ));
                }
                let period = r.secs("control_plane_health_check_period_seconds", 5, 1, 3600)?;
                let timeout = r.secs("control_plane_health_check_timeout_seconds", 3, 1, 3600)?;
                Some(HealthCheck {
                    url,
                    period,
                    timeout,
                    failure_threshold: r.num(
                        "control_plane_health_check_failure_threshold",
                        3u32,
                        1,
                        1000,
                    )?,
                })
            }
        };

        let lease_duration = r.secs_frac("vip_leaseduration", 15.0, 1.0, 3600.0)?;
        let renew_deadline = r.secs_frac("vip_renewdeadline", 10.0, 0.1, 3600.0)?;
        let retry_period = r.secs_frac("vip_retryperiod", 2.0, 0.1, 3600.0)?;
        // Blame the value the user set (both defaults are consistent).
        let blame = |a: &'static str, b: &'static str| if r.raw(a).is_some() { a } else { b };
        if renew_deadline >= lease_duration {
            let k = blame("vip_renewdeadline", "vip_leaseduration");
            return Err(r.err(
                k,
                format!("vip_renewdeadline ({renew_deadline:?}) must be less than vip_leaseduration ({lease_duration:?})"),
            ));
        }
        if retry_period >= renew_deadline {
            let k = blame("vip_retryperiod", "vip_renewdeadline");
            return Err(r.err(
                k,
                format!("vip_retryperiod ({retry_period:?}) must be less than vip_renewdeadline ({renew_deadline:?})"),
            ));
        }
        let arp_cfg = ArpSettings {
            rate: Duration::from_millis(r.num("vip_arpRate", 3000u64, 100, 3_600_000)?),
            leader_election: r.bool("vip_leaderelection", false)?,
            lease_name: r.string("vip_leasename", "plndr-cp-lock"),
            lease_duration,
            renew_deadline,
            retry_period,
            namespace: r.string("cp_namespace", "kube-system"),
            svc_election: r.bool("svc_election", false)?,
        };
        let fwd = r.string("lb_fwdmethod", "local");
        if !["local", "masquerade", "tunnel", "directroute"].contains(&fwd.as_str()) {
            return Err(r.err(
                "lb_fwdmethod",
                "expected local, masquerade, tunnel or directroute",
            ));
        }
        let lb_backend = r.opt_string("vipr_lb_backend");
        if let Some(b) = &lb_backend {
            if b != "ipvs" && b != "nftables" {
                return Err(r.err("vipr_lb_backend", "expected ipvs or nftables"));
            }
        }
        let sched = r.string("vipr_lb_scheduler", "rr");
        if !["rr", "wrr", "lc", "wlc", "sh", "mh"].contains(&sched.as_str()) {
            return Err(r.err("vipr_lb_scheduler", "expected rr, wrr, lc, wlc, sh or mh"));
        }
        let svc = ServiceSettings {
            namespace: r.opt_string("svc_namespace"),
            class_only: r.bool("lb_class_only", false)?,
            class_name: r.string("lb_class_name", "kube-vip.io/kube-vip-class"),
            lb_enable: r.bool("lb_enable", false)?,
            lb_port: r.num("lb_port", 6443u16, 1, 65535)?,
            lb_fwdmethod: fwd,
            backend_health_check_interval: r.secs("backend_health_check_interval", 5, 1, 3600)?,
            lb_backend,
            lb_scheduler: sched,
            lb_backends: r.list("vipr_lb_backends", |s| Ok(s.to_string()))?,
            annotation,
            peers_from,
            metadata_url: r.string(
                "vipr_metadata_url",
                "https://metadata.platformequinix.com/metadata",
            ),
            metadata_interval: r.secs("vipr_metadata_interval", 60, 1, 86400)?,
        };
        let log_format = r.string("vipr_log_format", "text");
        if log_format != "text" && log_format != "json" {
            return Err(r.err("vipr_log_format", "expected text or json"));
        }
        let http = match r.raw("prometheus_server") {
            Some(_) => r.parse("prometheus_server", listen_addr)?,
            None if layers.get("prometheus_server").is_some() => None, // set to "": disabled
            None => Some(SocketAddr::from(([0, 0, 0, 0], 2112))),
        };
        if mode == Mode::Arp && r.raw("vip_interface").is_none() {
            return Err(ConfigError::Conflict(
                "vip_arp=true needs vip_interface: the interface facing the clients that must learn the VIP's MAC".into(),
            ));
        }
        Ok(Config {
            mode,
            vips,
            static_vips,
            port: r.num("port", 6443u16, 1, 65535)?,
            interface: r.string("vip_interface", "lo"),
            subnet_v4,
            subnet_v6,
            cp_enable,
            svc_enable,
            node_name: r.string("vip_nodename", hostname),
            bgp,
            health,
            http,
            kubeconfig: PathBuf::from(r.string("k8s_config_file", "/etc/kubernetes/admin.conf")),
            log_level: r
                .parse("vip_loglevel", log_level)?
                .unwrap_or_else(|| "info".into()),
            log_json: log_format == "json",
            arp: arp_cfg,
            svc,
            state_dir: PathBuf::from(r.string("vipr_state_dir", "/run/vipr")),
        })
    }

    /// Every VIP this node serves from configuration (control plane first, then static).
    pub fn configured_vips(&self) -> impl Iterator<Item = (IpAddr, crate::vips::VipSource)> + '_ {
        let cp = self.cp_enable.then_some(&self.vips).into_iter().flatten();
        cp.map(|ip| (*ip, crate::vips::VipSource::ControlPlane))
            .chain(
                self.static_vips
                    .iter()
                    .map(|ip| (*ip, crate::vips::VipSource::Static)),
            )
    }
}

#[cfg(test)]
mod tests;
