//! kube-vip's `manifest` command line, flag by flag, so that a command from kube-vip's
//! documentation renders a vipr manifest or says which flag vipr cannot honour: the global
//! flags of kube-vip v1.2.3 (`cmd/kube-vip.go`, `kubeVipCmd.PersistentFlags()`) and those of
//! its `manifest` commands (`cmd/kube-vip-manifests.go`), in [`FLAGS`].
//!
//! A flag of a setting vipr implements is a spelling of that setting ([`crate::config::keys`];
//! a test keeps it so). A flag of a kube-vip variable vipr does not implement
//! ([`crate::config::kubevip::UNSUPPORTED`]) is judged exactly as that variable in a kube-vip
//! manifest: refused (exit 2, naming the flag) when its value would change traffic; else
//! accepted with a warning (stderr and a header comment), and rendered into the manifest
//! only when the row is a warned one (the daemon then warns at each start, as for any kube-vip
//! manifest); a harmless value of a refused row asks for what vipr does anyway and is not
//! rendered. The few flags that set no variable (etcd leader election, `--role`) are
//! accepted only for the values that ask for what vipr does. Pure: no I/O.

use clap::{Arg, ArgAction, ArgMatches};

use crate::config::keys::{self, flag_name};
use crate::config::kubevip::{self as kv, Class, Ignored};
use crate::config::peers::parse_bool;

/// The kube-vip release whose command line [`FLAGS`] lists.
#[allow(dead_code)] // the table's test
pub const KUBE_VIP_VERSION: &str = "v1.2.3";

/// What a kube-vip flag does in `vipr manifest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Sets this kube-vip variable: a vipr setting (the flag is one of its spellings), or a
    /// row of [`kv::UNSUPPORTED`] (warned or refused as that row says).
    Env(&'static str),
    /// vipr's generator flag of the same name (`--inCluster`, `--image`, `--taint`).
    Generator,
    /// Sets no variable (kube-vip's generator renders nothing for it); only these values
    /// (or none) are accepted, they ask for what vipr does; the reason for the others.
    Only(&'static [&'static str], &'static str),
    /// `vipr manifest rbac` only: kube-vip's namespaced RBAC (`--role`, `--rolebinding`),
    /// accepted when vipr's rules need no cluster-wide access.
    NamespacedRbac,
}

/// One flag of kube-vip's `manifest` command.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// kube-vip's spelling.
    pub name: &'static str,
    /// What vipr does with it.
    pub handling: Handling,
}

const fn env(name: &'static str, var: &'static str) -> Flag {
    Flag {
        name,
        handling: Handling::Env(var),
    }
}

const ETCD: &str = "etcd leader election (--leaderElectionType=etcd) is not supported: vipr elects with Kubernetes Leases only";

use Handling::*;

/// Every flag of kube-vip v1.2.3's `manifest pod|daemonset|rbac`, in kube-vip's order, with
/// the variable each sets (`pkg/kubevip/config_envvar.go`). kube-vip's generator
/// (`pkg/kubevip/config_generator.go`, `generatePodSpec`) does not render every one of them
/// (`--bgpHoldTimer`, `--bgpKeepAliveInterval`, `--nodeName`, `--zebra*`, `--table*`,
/// `--instanceName`, `--egressWithNftables` ... are dropped); vipr renders every setting it
/// is given.
pub const FLAGS: &[Flag] = &[
    // cmd/kube-vip.go: basic flags.
    env("interface", "vip_interface"),
    env("serviceInterface", "vip_servicesinterface"),
    env("allowInterfaceNotUp", "vip_allow_interface_not_up"),
    env("vip", "address"),
    env("vipSubnet", "vip_subnet"),
    env("nodeName", "vip_nodename"),
    // VIP flags.
    env("address", "address"),
    env("port", "port"),
    env("arp", "vip_arp"),
    env("wireguard", "vip_wireguard"),
    env("table", "vip_routingtable"),
    env(
        "preserveVipOnLeadershipLoss",
        "vip_preserve_on_leadership_loss",
    ),
    env("loseLeadership", "vip_loseleadership"),
    env(
        "loseLeadershiptTimeoutSeconds",
        "vip_loseleadership_timeout_seconds",
    ),
    // Load balancer flags.
    env("enableLoadBalancer", "lb_enable"),
    env("lbPort", "lb_port"),
    env("lbForwardingMethod", "lb_fwdmethod"),
    env("ddns", "vip_ddns"),
    env("mirrorDestInterface", "mirror_dest_interface"),
    // Leader election.
    env("leaderElection", "vip_leaderelection"),
    Flag {
        name: "leaderElectionType",
        handling: Only(&["kubernetes"], ETCD),
    },
    env("leaseName", "vip_leasename"),
    env("leaseDuration", "vip_leaseduration"),
    env("leaseRenewDuration", "vip_renewdeadline"),
    env("leaseRetry", "vip_retryperiod"),
    // BGP.
    env("bgp", "bgp_enable"),
    env("bgpAttachIPToInterface", "bgp_attach_ip_to_interface"),
    env("bgpRouterID", "bgp_routerid"),
    env("sourceIF", "bgp_sourceif"),
    env("sourceIP", "bgp_sourceip"),
    env("localAS", "bgp_as"),
    env("bgpHoldTimer", "bgp_hold_time"),
    env("bgpKeepAliveInterval", "bgp_keepalive_interval"),
    env("peerAddress", "bgp_peeraddress"),
    env("peerAS", "bgp_peeras"),
    env("peerPass", "bgp_peerpass"),
    env("multihop", "bgp_multihop"),
    env("bgppeers", "bgp_peers"),
    env("annotations", "annotation"),
    env("zebra", "zebra_enable"),
    env("zebraUrl", "zebra_url"),
    env("zebraVersion", "zebra_version"),
    env("zebraSoftwareName", "zebra_software_name"),
    env(
        "controlPlaneHealthCheckAddress",
        "control_plane_health_check_address",
    ),
    env(
        "controlPlaneHealthCheckPeriodSeconds",
        "control_plane_health_check_period_seconds",
    ),
    env(
        "controlPlaneHealthCheckTimeoutSeconds",
        "control_plane_health_check_timeout_seconds",
    ),
    env(
        "controlPlaneHealthCheckFailureThreshold",
        "control_plane_health_check_failure_threshold",
    ),
    env(
        "controlPlaneHealthCheckCAPath",
        "control_plane_health_check_ca_path",
    ),
    // Namespace (also `-n`), logging.
    env("namespace", "cp_namespace"),
    env("log", "vip_loglevel"),
    // Routing table mode.
    env("tableID", "vip_routingtableid"),
    env("tableType", "vip_routingtabletype"),
    env("routingProtocol", "vip_routingprotocol"),
    env("cleanRoutingTable", "vip_cleanroutingtable"),
    // Behaviour.
    env("controlplane", "cp_enable"),
    env("autodetectcp", "cp_detect"),
    env("services", "svc_enable"),
    env("servicesElection", "svc_election"),
    env("lbClassOnly", "lb_class_only"),
    env("lbClassName", "lb_class_name"),
    env("lbClassNameLegacyHandling", "lb_class_legacy_handling"),
    env("onlyAllowTrafficServicePorts", "enable_service_security"),
    env("enableNodeLabeling", "enable_node_labeling"),
    env("servicesLeaseName", "svc_leasename"),
    env("dnsMode", "dns_mode"),
    env("dhcpMode", "dhcp_mode"),
    env("dhcpBackoffAttempts", "dhcp_backoff_attempts"),
    env("disableServiceUpdates", "disable_service_updates"),
    env("enableEndpoints", "enable_endpoints"),
    env("loInterfaceGlobalScope", "vip_interfaceloglobal"),
    env("healthCheckPort", "health_check_port"),
    env("debounceTime", "debounce_time"),
    env("prometheusHTTPServer", "prometheus_server"),
    // etcd (leader election backend).
    Flag {
        name: "etcdCACert",
        handling: Only(&[], ETCD),
    },
    Flag {
        name: "etcdCert",
        handling: Only(&[], ETCD),
    },
    Flag {
        name: "etcdKey",
        handling: Only(&[], ETCD),
    },
    Flag {
        name: "etcdEndpoints",
        handling: Only(&[], ETCD),
    },
    env("k8sConfigPath", "k8s_config_file"),
    env("config-file", "config_file"),
    env("instanceName", "instance_name"),
    env("egressWithNftables", "egress_withnftables"),
    env(
        "perServiceElectionOnDemand",
        "per_service_election_on_demand",
    ),
    // cmd/kube-vip-manifests.go.
    Flag {
        name: "inCluster",
        handling: Generator,
    },
    Flag {
        name: "image",
        handling: Generator,
    },
    Flag {
        name: "taint",
        handling: Generator,
    },
    Flag {
        name: "role",
        handling: NamespacedRbac,
    },
    Flag {
        name: "rolebinding",
        handling: NamespacedRbac,
    },
];

/// Whether a flag is vipr's own: a spelling of a setting, or a generator flag. The others
/// get arguments of their own ([`args`]).
fn is_vipr_flag(f: &Flag) -> bool {
    match f.handling {
        Generator => true,
        Env(var) => keys::find(var).is_some(),
        Only(..) | NamespacedRbac => false,
    }
}

/// The clap argument id of a kube-vip-only flag.
fn id(f: &Flag) -> String {
    format!("kube-vip@{}", f.name)
}

/// The arguments of the kube-vip flags that are not vipr's own, for `vipr manifest KIND`
/// (`--role`/`--rolebinding` on `rbac` only, as kube-vip has them). Hidden from `--help`:
/// they are accepted so that kube-vip's commands work, and each use says what vipr does with
/// it. Like kube-vip's (cobra) booleans, a bare flag means `true`.
pub fn args(rbac: bool) -> Vec<Arg> {
    FLAGS
        .iter()
        .filter(|f| !is_vipr_flag(f))
        .filter(|f| rbac || f.handling != NamespacedRbac)
        .map(|f| {
            Arg::new(id(f))
                .long(f.name)
                .value_name("VALUE")
                .num_args(0..=1)
                .default_missing_value("true")
                .action(ArgAction::Append)
                .hide(true)
        })
        .collect()
}

/// The kube-vip-only flags given, in [`FLAGS`] order: `(spelling, value)`.
pub fn given(m: &ArgMatches) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for f in FLAGS.iter().filter(|f| !is_vipr_flag(f)) {
        if let Ok(Some(vals)) = m.try_get_many::<String>(&id(f)) {
            out.extend(vals.map(|v| (f.name, v.clone())));
        }
    }
    out
}

fn find(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

/// The given flags that set a kube-vip variable vipr does not implement:
/// `(variable, flag, value)`, for [`crate::config::Layers::add_unsupported_flags`].
pub fn unsupported(given: &[(&'static str, String)]) -> Vec<(&'static str, &'static str, String)> {
    given
        .iter()
        .filter_map(|(flag, v)| match find(flag)?.handling {
            Env(var) => kv::find(var).map(|u| (u.name, *flag, v.clone())),
            _ => None,
        })
        .collect()
}

/// Refuses a flag that sets no variable given a value that asks for something vipr does not
/// do ([`Handling::Only`]), naming the flag and the value.
pub fn check_only(given: &[(&'static str, String)]) -> Result<(), String> {
    for (flag, v) in given {
        let Some(Only(ok, reason)) = find(flag).map(|f| f.handling) else {
            continue;
        };
        let v = v.trim();
        if !v.is_empty() && !ok.contains(&v) {
            let accepted = match ok {
                [] => "leave it out".to_string(),
                _ => format!("only {} is accepted", crate::config::reader::one_of(ok)),
            };
            return Err(format!("--{flag}={v:?}: {reason} ({accepted})"));
        }
    }
    Ok(())
}

/// Whether kube-vip's `--role` or `--rolebinding` is given true: `Err` names a value that is
/// not a boolean.
pub fn namespaced_rbac(given: &[(&'static str, String)]) -> Result<Option<&'static str>, String> {
    let mut on = None;
    for (flag, v) in given {
        if find(flag).map(|f| f.handling) != Some(NamespacedRbac) {
            continue;
        }
        match parse_bool(v.trim()) {
            Some(true) => on = on.or(Some(*flag)),
            Some(false) => {}
            None => return Err(format!("--{flag}={v:?}: expected true or false")),
        }
    }
    Ok(on)
}

/// The variables a warned flag renders into the container's environment: the warned rows
/// ([`Class::Warn`]) among the ignored; a refused row given a harmless value is not
/// rendered (it asks for what vipr does anyway).
pub fn rendered(ignored: &[Ignored]) -> impl Iterator<Item = (&'static str, &str)> {
    ignored
        .iter()
        .filter(|i| kv::find(i.name).is_some_and(|u| u.class == Class::Warn))
        .map(|i| (i.name, i.value.as_str()))
}

/// One header line (and stderr warning) per ignored kube-vip flag.
pub fn note(i: &Ignored) -> String {
    let what = if kv::find(i.name).is_some_and(|u| u.class == Class::Warn) {
        "rendered, the daemon warns at start"
    } else {
        "not rendered: this value asks for what vipr does anyway"
    };
    format!("{i} ({what})")
}

/// `--flag` spellings of a vipr setting, for the error of a setting the manifest refuses.
pub fn spellings(var: &str) -> String {
    keys::find(var)
        .map(|k| {
            k.flags
                .iter()
                .map(|f| format!("--{f}"))
                .chain(std::iter::once(format!("--{}", flag_name(k))))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
