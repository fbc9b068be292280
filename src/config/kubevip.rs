//! kube-vip's environment variables that vipr does not implement, each with the reason, so
//! that a kube-vip manifest never loses a setting silently. kube-vip v1.2.3 (its latest
//! release) reads the 95 names of `pkg/kubevip/config_envvar.go` and `vip_configmap`
//! (`cmd/kube-vip.go`); [`KUBE_VIP_ENV`] lists them, and every one is either a setting of
//! [`super::keys::KEYS`] or a row of [`UNSUPPORTED`] (a test keeps it so).
//!
//! A row is either harmless (a warning line at start and on SIGHUP naming the variable and
//! the reason) or refused when its value asks for something vipr does not do that would
//! change traffic (a mode it does not have): a [`ConfigError`], exit 2 at start, the
//! running configuration kept on SIGHUP. A refused variable set to a value that asks for
//! nothing (`false`, kube-vip's default) only warns. Values are read by the layers like
//! vipr's own ([`super::source::Layers`]): the environment (exact name or upper case) and
//! the `--config` file, and `vipr manifest`'s kube-vip flags of them (`--wireguard`,
//! [`crate::manifest`]); `vipr manager` does not take those flags. No I/O here.

use std::fmt;

use super::peers::parse_bool;
use super::source::{Layers, Origin};
use super::ConfigError;

/// The kube-vip release the table was checked against.
#[allow(dead_code)] // the table's test
pub const KUBE_VIP_VERSION: &str = "v1.2.3";

/// Every environment variable kube-vip v1.2.3 reads as a setting: the constants of
/// `pkg/kubevip/config_envvar.go` in file order (`debounce_time` is among them although
/// kube-vip reads it only as its `--debounceTime` flag), then `vip_configmap` from
/// `cmd/kube-vip.go`. kube-vip also takes `INSTANCE_NAME` and `EGRESS_CLEAN` in upper case
/// (vipr accepts every name in upper case); `HOME` and `KUBERNETES_SERVICE_HOST`/`_PORT_HTTPS`
/// are the process's environment, not settings.
#[allow(dead_code)] // the table's test: every name implemented or in [`UNSUPPORTED`]
pub const KUBE_VIP_ENV: &[&str] = &[
    "vip_arp",
    "vip_arpRate",
    "vip_preserve_on_leadership_loss",
    "vip_leaderelection",
    "vip_leasename",
    "vip_leaseduration",
    "vip_renewdeadline",
    "vip_retryperiod",
    "vip_leaseannotations",
    "vip_loglevel",
    "instance_name",
    "vip_interface",
    "vip_loseleadership",
    "vip_loseleadership_timeout_seconds",
    "vip_interfaceloglobal",
    "vip_servicesinterface",
    "vip_allow_interface_not_up",
    "vip_subnet",
    "egress_podcidr",
    "egress_servicecidr",
    "egress_withnftables",
    "per_service_election_on_demand",
    "egress_enableinternalsnat",
    "vip_address",
    "address",
    "port",
    "annotation",
    "vip_ddns",
    "vip_nodename",
    "vip_singlenode",
    "vip_startleader",
    "bgp_enable",
    "bgp_attach_ip_to_interface",
    "bgp_routerid",
    "bgp_routerinterface",
    "bgp_as",
    "bgp_peeraddress",
    "bgp_peers",
    "bgp_peeras",
    "bgp_peerpass",
    "bgp_multihop",
    "bgp_sourceif",
    "bgp_sourceip",
    "bgp_hold_time",
    "bgp_keepalive_interval",
    "control_plane_health_check_address",
    "control_plane_health_check_period_seconds",
    "control_plane_health_check_timeout_seconds",
    "control_plane_health_check_failure_threshold",
    "control_plane_health_check_ca_path",
    "zebra_enable",
    "zebra_url",
    "zebra_version",
    "zebra_software_name",
    "mpbgp_nexthop",
    "mpbgp_ipv4",
    "mpbgp_ipv6",
    "vip_wireguard",
    "vip_routingtable",
    "vip_routingtableid",
    "vip_routingtabletype",
    "vip_routingprotocol",
    "vip_cleanroutingtable",
    "vip_skipdad",
    "cp_namespace",
    "cp_enable",
    "cp_detect",
    "kubernetes_addr",
    "svc_enable",
    "svc_namespace",
    "svc_election",
    "svc_leasename",
    "lb_class_only",
    "lb_class_name",
    "lb_class_legacy_handling",
    "lb_enable",
    "lb_port",
    "lb_fwdmethod",
    "enable_service_security",
    "enable_node_labeling",
    "prometheus_server",
    "k8s_config_file",
    "dns_mode",
    "dhcp_mode",
    "dhcp_backoff_attempts",
    "disable_service_updates",
    "enable_endpoints",
    "mirror_dest_interface",
    "iptables_backend",
    "backend_health_check_interval",
    "health_check_port",
    "enable_upnp",
    "egress_clean",
    "config_file",
    "debounce_time",
    // cmd/kube-vip.go, os.Getenv.
    "vip_configmap",
];

/// What vipr does with a kube-vip variable it does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Nothing: a warning names it.
    Warn,
    /// Refused unless the value is one that asks for nothing vipr lacks (then a warning).
    Refuse(Harmless),
}

/// The values of a refused variable that only warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Harmless {
    /// A boolean that is false (kube-vip's default).
    False,
    /// A boolean that is true (kube-vip's default, and vipr's behaviour).
    True,
    /// One of these (what vipr does anyway).
    #[allow(dead_code)] // no row takes it today
    OneOf(&'static [&'static str]),
    /// The same as the winning value of this setting.
    #[allow(dead_code)] // no row takes it today
    SameAs(&'static str),
    /// None: any value is refused.
    Never,
}

impl Harmless {
    fn accepts(self, value: &str, layers: &Layers) -> bool {
        match self {
            Harmless::False => parse_bool(value) == Some(false),
            Harmless::True => parse_bool(value) == Some(true),
            Harmless::OneOf(vs) => vs.contains(&value),
            Harmless::SameAs(k) => layers.get(k).is_some_and(|r| r.value.trim() == value),
            Harmless::Never => false,
        }
    }

    /// What is accepted, for the refusal.
    fn describe(self) -> String {
        match self {
            Harmless::False => "only false is accepted".into(),
            Harmless::True => "only true is accepted".into(),
            Harmless::OneOf(vs) => format!("only {} is accepted", super::reader::one_of(vs)),
            Harmless::SameAs(k) => format!("only the value of {k} is accepted"),
            Harmless::Never => "unset it".into(),
        }
    }
}

/// A kube-vip variable vipr does not implement.
#[derive(Debug, Clone, Copy)]
pub struct Unsupported {
    /// kube-vip's name.
    pub name: &'static str,
    /// Warned or refused.
    pub class: Class,
    /// Why vipr does not need it, or what it would do that vipr does not.
    pub reason: &'static str,
}

const fn warn(name: &'static str, reason: &'static str) -> Unsupported {
    Unsupported {
        name,
        class: Class::Warn,
        reason,
    }
}

const fn refuse(name: &'static str, ok: Harmless, reason: &'static str) -> Unsupported {
    Unsupported {
        name,
        class: Class::Refuse(ok),
        reason,
    }
}

use Harmless::*;

/// Every kube-vip variable vipr does not implement, by name.
pub const UNSUPPORTED: &[Unsupported] = &[
    // Modes and features that change where traffic goes: refused.
    refuse("vip_wireguard", False, "WireGuard mode is not supported"),
    refuse("vip_routingtable", False, "routing-table mode is not supported (vipr announces over BGP or ARP)"),
    refuse("zebra_enable", False, "the zebra integration (routes into the host's FRR) is not supported"),
    refuse("vip_ddns", False, "dynamic DNS (an address for `address` from DHCP with a dynamic DNS update) is not supported; give address as an IP address or a DNS name that resolves"),
    refuse("dhcp_mode", Never, "DHCP for Services (loadBalancerIP 0.0.0.0) is not supported: vipr asks no DHCP server, such Services get no address"),
    refuse("egress_podcidr", Never, "egress (pods of a kube-vip.io/egress Service leaving with the VIP as source) is not supported"),
    refuse("egress_servicecidr", Never, "egress (pods of a kube-vip.io/egress Service leaving with the VIP as source) is not supported"),
    refuse("egress_withnftables", False, "egress (pods of a kube-vip.io/egress Service leaving with the VIP as source) is not supported"),
    refuse("egress_enableinternalsnat", False, "egress (pods of a kube-vip.io/egress Service leaving with the VIP as source) is not supported"),
    refuse("egress_clean", False, "egress is not supported: vipr does not remove kube-vip's egress rules at start (remove them by hand)"),
    refuse("enable_service_security", False, "vipr does not restrict a VIP to its Services' ports"),
    refuse("enable_upnp", False, "UPnP port forwarding is not supported"),
    refuse("mirror_dest_interface", Never, "traffic mirroring is not supported"),
    refuse("lb_class_legacy_handling", True, "vipr serves Services without a loadBalancerClass unless lb_class_only (kube-vip's default legacy handling); the other handling is not supported"),
    refuse("vip_loseleadership", False, "giving up the Lease when the interface goes down is not supported"),
    refuse("config_file", Never, "kube-vip's own config file is not read, so its settings would be missing; give them as environment variables or in vipr's --config file (the same names)"),
    // Harmless: warned.
    warn("cp_detect", "vipr does not probe 127.0.0.1:6443's certificate for addresses; with cp_enable it reaches the local API server at 127.0.0.1:port when the kubeconfig is kubeadm's or names the VIP (set kubernetes_addr for another address)"),
    warn("debounce_time", "kube-vip itself reads it only as its --debounceTime flag; vipr recomputes from its caches on every change"),
    warn("dhcp_backoff_attempts", "vipr has no DHCP client (see dhcp_mode)"),
    warn("enable_endpoints", "vipr reads EndpointSlices, and core/v1 Endpoints only where EndpointSlice v1 is not served"),
    warn("health_check_port", "vipr serves /healthz and /readyz on prometheus_server's address; point probes there"),
    warn("instance_name", "it names kube-vip's egress nftables table, and egress is not supported; vipr_instance names a vipr instance"),
    warn("iptables_backend", "vipr writes no iptables rules (its load balancer uses IPVS or nftables)"),
    warn("vip_allow_interface_not_up", "vipr does not check that vip_interface is up (kube-vip's true)"),
    warn("vip_interfaceloglobal", "vipr adds VIPs with global scope (kube-vip's true)"),
    warn("vip_leaseannotations", "vipr's Leases carry no extra annotations"),
    warn("vip_loseleadership_timeout_seconds", "only for vip_loseleadership, which is not supported"),
    warn("vip_routingtableid", "only for routing-table mode (vip_routingtable), which is not supported"),
    warn("vip_routingtabletype", "only for routing-table mode (vip_routingtable), which is not supported"),
    warn("vip_routingprotocol", "only for routing-table mode (vip_routingtable), which is not supported"),
    warn("vip_cleanroutingtable", "only for routing-table mode (vip_routingtable), which is not supported"),
    warn("vip_singlenode", "kube-vip v1.2.3 reads it but does nothing with it"),
    warn("vip_startleader", "kube-vip v1.2.3 reads it but does nothing with it"),
    warn("vip_skipdad", "vipr always adds IPv6 VIPs without duplicate address detection (kube-vip's true)"),
    warn("zebra_url", "only for zebra_enable, which is not supported"),
    warn("zebra_version", "only for zebra_enable, which is not supported"),
    warn("zebra_software_name", "only for zebra_enable, which is not supported"),
    warn("vip_configmap", "kube-vip v1.2.3 keeps it but does nothing with it"),
];

/// Looks a variable up by its exact name.
pub fn find(name: &str) -> Option<&'static Unsupported> {
    UNSUPPORTED.iter().find(|u| u.name == name)
}

/// A kube-vip variable that is set and ignored: one warning line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// Where the winning value came from.
    pub origin: Origin,
    /// kube-vip's name.
    pub name: &'static str,
    /// The winning value.
    pub value: String,
    /// Why it is ignored.
    pub reason: &'static str,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}={:?}: {}; this setting is ignored",
            self.origin, self.name, self.value, self.reason
        )
    }
}

/// Every set (non-empty) kube-vip variable vipr does not implement: one [`Ignored`] each,
/// in table order, or the first refused value of any layer (a refused value is an error even
/// where a higher layer overrides it, as for vipr's own settings).
pub fn check(layers: &Layers) -> Result<Vec<Ignored>, ConfigError> {
    let mut out = Vec::new();
    for u in UNSUPPORTED {
        let given: Vec<_> = layers
            .unsupported(u.name)
            .iter()
            .filter(|r| !r.value.trim().is_empty())
            .collect();
        if let Class::Refuse(ok) = u.class {
            if let Some(r) = given.iter().find(|r| !ok.accepts(r.value.trim(), layers)) {
                return Err(ConfigError::Invalid {
                    origin: r.origin.clone(),
                    key: u.name.to_string(),
                    value: r.value.clone(),
                    reason: format!(
                        "{}; this value would change traffic ({})",
                        u.reason,
                        ok.describe()
                    ),
                });
            }
        }
        if let Some(r) = given.last() {
            out.push(Ignored {
                origin: r.origin.clone(),
                name: u.name,
                value: r.value.trim().to_string(),
                reason: u.reason,
            });
        }
    }
    out.extend(bgp_election(layers));
    out.extend(bgp_svc_election(layers));
    Ok(out)
}

/// Why `vip_leaderelection=true` is ignored in BGP mode unless `vipr_bgp_leader_only`.
pub const BGP_ELECTION: &str = "with bgp_enable=true kube-vip advertises the control-plane VIP from the Lease holder only, vipr from every node (each withdraws on its own when unhealthy); set vipr_bgp_leader_only=true for kube-vip's behaviour";

/// Why `svc_election=true` is ignored in BGP mode.
pub const BGP_SVC_ELECTION: &str = "with bgp_enable=true kube-vip advertises each Service from the holder of its own Lease only, vipr from every node that may serve it (per-Service Leases are for ARP mode)";

/// `svc_election=true` with `bgp_enable=true`: kube-vip v1.2.3 then advertises each Service
/// from its Lease holder (`pkg/manager/worker/bgp.go` `StartServices`); vipr advertises it
/// from every eligible node: one warning line.
fn bgp_svc_election(layers: &Layers) -> Option<Ignored> {
    let on = |k: &str| layers.get(k).and_then(|r| parse_bool(r.value.trim())) == Some(true);
    let r = layers.get("svc_election")?;
    (on("svc_election") && on("bgp_enable")).then(|| Ignored {
        origin: r.origin.clone(),
        name: "svc_election",
        value: r.value.trim().to_string(),
        reason: BGP_SVC_ELECTION,
    })
}

/// `vip_leaderelection=true` with `bgp_enable=true` and without `vipr_bgp_leader_only`:
/// kube-vip v1.2.3 then advertises the control-plane VIP from the Lease holder only
/// (`pkg/manager/worker/bgp.go` `StartControlPlane` → `StartCluster`); vipr advertises it
/// from every node, so the setting does nothing: one warning line.
fn bgp_election(layers: &Layers) -> Option<Ignored> {
    let on = |k: &str| layers.get(k).and_then(|r| parse_bool(r.value.trim())) == Some(true);
    let r = layers.get("vip_leaderelection")?;
    (on("vip_leaderelection") && on("bgp_enable") && !on("vipr_bgp_leader_only")).then(|| Ignored {
        origin: r.origin.clone(),
        name: "vip_leaderelection",
        value: r.value.trim().to_string(),
        reason: BGP_ELECTION,
    })
}
