//! The sections of [`Config`] from the layers, one builder per section, each checking its
//! own settings and the conflicts between them. Defaults are kube-vip's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bgp::{Community, GracefulRestart, LargeCommunity, RouteAttrs};

use super::peers::{self, parse_asn, BfdSpec};
use super::reader::Reader;
use super::source::Layers;
use super::*;

mod routing;
use routing::{bgp, peer_source};

/// The whole configuration.
pub fn config(layers: &Layers, hostname: &str) -> Result<Config, ConfigError> {
    // kube-vip's settings that vipr cannot honour without changing traffic (the warnings
    // are the caller's: `Sources::load`).
    super::kubevip::check(layers)?;
    let r = Reader { layers };
    let node = node(&r, hostname)?;
    let control_plane = control_plane(&r)?;
    let vips = vips(&r)?;
    let services = services(&r)?;
    if !control_plane.enabled && !services.enabled && vips.static_vips.is_empty() {
        return Err(ConfigError::Conflict(
            "nothing to serve: set cp_enable=true, svc_enable=true or vipr_static_vips".into(),
        ));
    }
    let bgp = bgp(&r)?;
    for p in &services.pools {
        if let Some(n) = p
            .bgp
            .attributes
            .iter()
            .chain(&p.bgp.allowed)
            .find(|n| !bgp.attr_sets.sets.contains_key(*n))
        {
            return Err(r.err(
                "vipr_pools",
                format!(
                    "pool {}: attribute set {n:?} is not in vipr_bgp_attribute_sets",
                    p.name
                ),
            ));
        }
    }
    let peer_source = peer_source(&r)?;
    if node.mode == Mode::Bgp && bgp.peers.is_empty() && peer_source == PeerSource::Static {
        return Err(ConfigError::Conflict(
            "bgp_enable=true needs peers: bgp_peers, bgp_peeraddress, annotation or vipr_peers_from".into(),
        ));
    }
    if node.mode == Mode::Arp && r.raw("vip_interface").is_none() {
        return Err(ConfigError::Conflict(
            "vip_arp=true needs vip_interface: the interface facing the clients that must learn the VIP's MAC".into(),
        ));
    }
    let arp = arp(&r)?;
    if r.bool("vipr_bgp_leader_only", false)?
        && (node.mode != Mode::Bgp || !arp.election.as_ref().is_some_and(|e| e.control_plane))
    {
        return Err(r.err(
            "vipr_bgp_leader_only",
            "needs bgp_enable=true and vip_leaderelection=true (in ARP mode the Lease holder alone serves anyway)",
        ));
    }
    Ok(Config {
        node,
        vips,
        control_plane,
        services,
        bgp,
        peer_source,
        arp,
        lb: lb(&r)?,
        http: http(&r)?,
        log: LogSettings {
            level: r
                .parse("vip_loglevel", log_level)?
                .unwrap_or(LogLevel::Info),
        },
    })
}

/// An IP address (`Ok`) or a DNS name (`Err(name)`, lower case): RFC 1123 host name
/// labels of letters, digits and hyphens, 1..=63 each, 253 in all, not all digits.
fn ip_or_name(s: &str) -> Result<Result<IpAddr, String>, String> {
    let looks_numeric = s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match ip(s) {
        Ok(a) => return Ok(Ok(a)),
        // Digits and dots are meant as an IPv4 address: say what is wrong with it.
        Err(e) if looks_numeric || s.contains(':') => return Err(e),
        Err(_) => {}
    }
    let name = s.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() <= 253
        && name.split('.').all(label_ok)
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        Ok(Err(name))
    } else {
        Err("expected an IP address or a DNS name".into())
    }
}

/// A Linux interface name (1..=15 bytes, no `/`, space or `:`); kube-vip's `auto` is not
/// supported.
fn interface_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "auto" {
        return Err("auto (find the interface by the address's subnet) is not supported: name the interface".into());
    }
    if (1..=15).contains(&s.len()) && !s.contains(['/', ' ', ':']) && s != "." && s != ".." {
        Ok(s.to_string())
    } else {
        Err("expected an interface name (1 to 15 characters)".into())
    }
}

fn ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("not an IP address: {}", peers::why_not_ip(s)))
}

fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| match s.parse::<IpAddr>() {
        Ok(_) => "expected an IPv4 address, e.g. 192.0.2.1".to_string(),
        Err(_) => format!("not an IPv4 address: {}", peers::why_not_ip(s)),
    })
}

/// `HOST:PORT`, or kube-vip's `:PORT` for all addresses.
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    let s = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    s.parse()
        .map_err(|_| "expected HOST:PORT, e.g. :2112 or 127.0.0.1:2112".to_string())
}

/// kube-vip's `vip_loglevel` as kube-vip v1.2.3 reads it (since v0.8.10): a Go `slog`
/// level, records at or above it are logged (`cmd/kube-vip.go`: `log.Level(Logging)`;
/// DEBUG -4, INFO 0, WARN 4, ERROR 8). Below -4, where slog has nothing more, vipr logs
/// trace. Names are accepted too.
fn log_level(s: &str) -> Result<LogLevel, String> {
    let s = s.to_ascii_lowercase();
    if let Ok(n) = s.parse::<i32>() {
        return Ok(match n {
            i32::MIN..=-5 => LogLevel::Trace,
            -4 => LogLevel::Debug,
            -3..=0 => LogLevel::Info,
            1..=4 => LogLevel::Warn,
            _ => LogLevel::Error,
        });
    }
    Ok(match s.as_str() {
        "error" | "panic" | "fatal" => LogLevel::Error,
        "warn" | "warning" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        _ => {
            return Err(
                "expected a number (kube-vip's: -4 debug, 0 info, 4 warn, 8 error) or error, warn, info, debug, trace".into(),
            )
        }
    })
}

fn node(r: &Reader, hostname: &str) -> Result<NodeSettings, ConfigError> {
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
                "no mode: set bgp_enable=true (or vip_arp=true for the ARP/NDP fallback)".into(),
            ))
        }
    };
    let log_json = r
        .choice("vipr_log_format", &[("text", false), ("json", true)])?
        .unwrap_or(false);
    let instance = r
        .parse("vipr_instance", crate::instance::Instance::parse)?
        .unwrap_or_default();
    let state_dir = match r.opt_string("vipr_state_dir") {
        Some(d) => PathBuf::from(d),
        None => instance.default_state_dir(),
    };
    Ok(NodeSettings {
        mode,
        name: r.string("vip_nodename", hostname),
        instance,
        state_dir,
        kubeconfig: PathBuf::from(r.string("k8s_config_file", "/etc/kubernetes/admin.conf")),
        kubernetes_addr: r.parse("kubernetes_addr", |s| {
            let url = if s.contains("://") {
                s.to_string()
            } else {
                format!("https://{s}")
            };
            url.parse::<hyper::Uri>()
                .ok()
                .filter(|u| u.host().is_some_and(|h| !h.is_empty()))
                .filter(|u| matches!(u.scheme_str(), Some("https" | "http")))
                .ok_or_else(|| {
                    "expected host:port or https://host:port, e.g. 127.0.0.1:6443".to_string()
                })
        })?,
        log_json,
        node_labeling: r.bool("enable_node_labeling", false)?,
        daemonset: daemonset(r)?,
        static_pod_manifest: r.parse("vipr_static_pod_manifest", |v| {
            let p = PathBuf::from(v);
            if p.is_absolute() && p.file_name().is_some() {
                Ok(p)
            } else {
                Err("expected the manifest's absolute path, e.g. /etc/kubernetes/manifests/vipr.yaml".to_string())
            }
        })?,
    })
}

/// `vipr_daemonset` (`namespace/name`) with `vipr_pod_template_generation`: both or none
/// (an empty generation, as the downward API gives for a pod without the label, is none).
fn daemonset(r: &Reader) -> Result<Option<crate::config::DaemonSetRef>, ConfigError> {
    let ds = r.parse("vipr_daemonset", |v| match v.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err("expected namespace/name, e.g. kube-system/vipr".to_string()),
    })?;
    let generation = r
        .parse("vipr_pod_template_generation", |v| match v {
            "" => Ok(None),
            v => v.parse::<u64>().map(|_| Some(v.to_string())).map_err(|_| {
                "expected the pod's pod-template-generation label, a number".to_string()
            }),
        })?
        .flatten();
    Ok(match (ds, generation) {
        (Some((namespace, name)), Some(template_generation)) => Some(crate::config::DaemonSetRef {
            namespace,
            name,
            template_generation,
        }),
        _ => None,
    })
}

fn vips(r: &Reader) -> Result<VipSettings, ConfigError> {
    let (subnet_v4, subnet_v6) = r
        .parse("vip_subnet", |v| {
            let parts: Vec<&str> = v.split(',').map(str::trim).collect();
            let v4 = parts[0].parse::<u8>().ok().filter(|n| (1..=32).contains(n));
            let v6 = parts
                .get(1)
                .map(|p| p.parse::<u8>().ok().filter(|n| (1..=128).contains(n)));
            match (v4, v6) {
                (Some(a), None) => Ok((a, 128)),
                (Some(a), Some(Some(b))) if parts.len() == 2 => Ok((a, b)),
                _ => Err("expected 1..=32 or 1..=32,1..=128".to_string()),
            }
        })?
        .unwrap_or((32, 128));
    Ok(VipSettings {
        interface: r.string("vip_interface", "lo"),
        subnet_v4,
        subnet_v6,
        static_vips: r.list("vipr_static_vips", ip)?,
        // kube-vip v1.2.3 also takes `auto` (the interface whose subnet holds the address).
        services_interface: r.parse("vip_servicesinterface", interface_name)?,
        service_interfaces: r.list("vipr_service_interfaces", interface_name)?,
        // kube-vip's default is false; vipr's stays true (its behaviour before the setting
        // existed): a Service VIP on the node is served by kube-proxy either way.
        bgp_attach: r.bool("bgp_attach_ip_to_interface", true)?,
    })
}

fn control_plane(r: &Reader) -> Result<ControlPlane, ConfigError> {
    let addr_key = if r.raw("address").is_some() {
        "address"
    } else {
        "vip_address"
    };
    // Both names are checked: a bad legacy value is an error even next to `address`. An
    // address may be one DNS name instead (kube-vip v1.2.3 `pkg/vip/address.go` `NewConfig`).
    let entries = r.list(addr_key, ip_or_name)?;
    r.list("vip_address", ip_or_name)?;
    let names = entries.iter().filter(|e| e.is_err()).count();
    if names > 0 && entries.len() > 1 {
        return Err(r.err(
            addr_key,
            "a DNS name must be the only address (dns_mode=dual takes both families from it)",
        ));
    }
    let vips: Vec<IpAddr> = entries
        .iter()
        .filter_map(|e| e.as_ref().ok())
        .copied()
        .collect();
    // kube-vip compares lower-cased (`IPv4` works).
    let mode = r
        .parse("dns_mode", |v| {
            match v.trim().to_ascii_lowercase().as_str() {
                "first" => Ok(DnsMode::First),
                "ipv4" => Ok(DnsMode::Ipv4),
                "ipv6" => Ok(DnsMode::Ipv6),
                "dual" => Ok(DnsMode::Dual),
                _ => Err("expected first, ipv4, ipv6 or dual".to_string()),
            }
        })?
        .unwrap_or(DnsMode::First);
    let dns = entries
        .into_iter()
        .find_map(|e| e.err())
        .map(|name| DnsAddress { name, mode });
    let enabled = r.bool("cp_enable", false)?;
    if enabled && vips.is_empty() && dns.is_none() {
        return Err(ConfigError::Conflict(
            "cp_enable=true needs address (the control-plane VIP)".into(),
        ));
    }
    let period = r.secs("control_plane_health_check_period_seconds", 5, 1, 3600)?;
    let timeout = r.secs("control_plane_health_check_timeout_seconds", 3, 1, 3600)?;
    let failure_threshold = r.num(
        "control_plane_health_check_failure_threshold",
        3u32,
        1,
        1000,
    )?;
    let url = r.parse("control_plane_health_check_address", |url| {
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(url.to_string())
        } else {
            Err("expected an http:// or https:// URL".to_string())
        }
    })?;
    // Read here, so a missing or broken file is a configuration error (exit 2 at start,
    // the running configuration kept on SIGHUP) as kube-vip refuses to start with one;
    // `vipr manifest` renders for a node and only checks the path.
    let ca = r.parse("control_plane_health_check_ca_path", |p| {
        let path = PathBuf::from(p.trim());
        if r.layers.elsewhere {
            // A manifest for a node: the file is there, not here.
            return if path.is_absolute() {
                Ok(HealthCa {
                    path,
                    pem: Vec::new(),
                })
            } else {
                Err("expected an absolute path (the file is read on the node)".to_string())
            };
        }
        let pem = std::fs::read(&path).map_err(|e| format!("cannot read it: {e}"))?;
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => Ok(HealthCa { path, pem }),
            _ => Err("it contains no PEM certificate".to_string()),
        }
    })?;
    Ok(ControlPlane {
        enabled,
        vips,
        port: r.num("port", 6443u16, 1, 65535)?,
        health: url.map(|url| HealthCheck {
            url,
            period,
            timeout,
            failure_threshold,
            ca,
        }),
        dns,
    })
}

fn services(r: &Reader) -> Result<ServiceSettings, ConfigError> {
    let pools = r
        .parse("vipr_pools", |v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .enumerate()
                .map(|(i, e)| {
                    crate::ipam::pools::parse_pool(e, i + 1)
                        .map_err(|why| format!("pool #{}: {why}", i + 1))
                })
                .collect::<Result<Vec<_>, String>>()
        })?
        .unwrap_or_default();
    let mut names = std::collections::BTreeSet::new();
    for p in &pools {
        if !names.insert(&p.name) {
            return Err(r.err("vipr_pools", format!("two pools named {:?}", p.name)));
        }
    }
    let configmap = if r.present("vipr_pool_configmap") && r.raw("vipr_pool_configmap").is_none() {
        None // set to "": no ConfigMap
    } else {
        Some(
            r.parse("vipr_pool_configmap", |v| match v.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                    Ok((ns.to_string(), name.to_string()))
                }
                _ => Err("expected namespace/name, e.g. kube-system/kubevip".to_string()),
            })?
            .unwrap_or(("kube-system".into(), "kubevip".into())),
        )
    };
    Ok(ServiceSettings {
        enabled: r.bool("svc_enable", false)?,
        filter: ServiceFilter {
            namespace: r.opt_string("svc_namespace"),
            class_only: r.bool("lb_class_only", false)?,
            class_name: r.string("lb_class_name", "kube-vip.io/kube-vip-class"),
        },
        pools,
        pools_required: r.bool("vipr_pools_required", false)?,
        pool_configmap: configmap,
        claims_namespace: r.string("vipr_claims_namespace", "kube-system"),
        status_updates: !r.bool("disable_service_updates", false)?,
        withdraw_cordoned: r.bool("vipr_withdraw_cordoned", true)?,
    })
}

/// kube-vip's Lease for all Services (`cmd/kube-vip.go` line 146, `--servicesLeaseName`).
pub const SERVICES_LEASE: &str = "plndr-svcs-lock";

/// A Lease setting as kube-vip v1.2.3 reads it (`pkg/lease/lease.go` `NamespaceName`):
/// `name`, or `namespace/name`; without a namespace, `cp_namespace`. (kube-vip first tries
/// the namespace of its pod's service account; vipr's manifests run in `cp_namespace`.)
fn lease_ref(
    r: &Reader,
    key: &str,
    default: &str,
    cp_namespace: &str,
) -> Result<(String, String), ConfigError> {
    let v = r.string(key, default);
    let (ns, name) = match v.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (cp_namespace, v.as_str()),
    };
    let dns = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !dns(ns) || !dns(name) {
        return Err(r.err(
            key,
            "expected a Lease name or namespace/name (lower-case letters, digits, '-', '.')",
        ));
    }
    Ok((ns.to_string(), name.to_string()))
}

fn arp(r: &Reader) -> Result<ArpSettings, ConfigError> {
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
    let namespace = r.string("cp_namespace", "kube-system");
    let (lease_namespace, lease_name) = lease_ref(r, "vip_leasename", "plndr-cp-lock", &namespace)?;
    let (services_lease_namespace, services_lease_name) =
        lease_ref(r, "svc_leasename", SERVICES_LEASE, &namespace)?;
    let per_service = r.bool("svc_election", false)?;
    let bgp_leader_only = r.bool("vipr_bgp_leader_only", false)?;
    let on_demand = r.bool("per_service_election_on_demand", false)?;
    let control_plane = r.bool("vip_leaderelection", false)?;
    // ARP Services are always elected, as kube-vip v1.2.3 elects them (one node answers
    // ARP for a Service VIP); the control-plane VIP only with vip_leaderelection.
    let arp_services = r.bool("vip_arp", false)? && r.bool("svc_enable", false)?;
    Ok(ArpSettings {
        rate: Duration::from_millis(r.num("vip_arpRate", 3000u64, 100, 3_600_000)?),
        preserve: r.bool("vip_preserve_on_leadership_loss", false)?,
        election: (control_plane || arp_services).then_some(Election {
            control_plane,
            lease_name,
            lease_namespace,
            services_lease_name,
            services_lease_namespace,
            namespace,
            timing: Timing {
                lease_duration,
                renew_deadline,
                retry_period,
            },
            per_service,
            bgp_leader_only,
            on_demand,
        }),
    })
}

fn lb_backend(s: &str) -> Result<LbBackendAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(LbBackendAddr {
            ip: a.ip(),
            port: Some(a.port()),
        });
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| LbBackendAddr { ip, port: None })
        .map_err(|_| "not address[:port]".to_string())
}

fn lb(r: &Reader) -> Result<LbSettings, ConfigError> {
    use crate::lb::{FwdMethod, Kind, Scheduler};
    Ok(LbSettings {
        enabled: r.bool("lb_enable", false)?,
        port: r.num("lb_port", 6443u16, 1, 65535)?,
        fwd: r
            .choice(
                "lb_fwdmethod",
                &[
                    ("local", FwdMethod::Local),
                    ("masquerade", FwdMethod::Masquerade),
                    ("tunnel", FwdMethod::Tunnel),
                    ("directroute", FwdMethod::DirectRoute),
                ],
            )?
            .unwrap_or(FwdMethod::Local),
        scheduler: r
            .choice(
                "vipr_lb_scheduler",
                &[
                    ("rr", Scheduler::Rr),
                    ("wrr", Scheduler::Wrr),
                    ("lc", Scheduler::Lc),
                    ("wlc", Scheduler::Wlc),
                    ("sh", Scheduler::Sh),
                    ("mh", Scheduler::Mh),
                ],
            )?
            .unwrap_or(Scheduler::Rr),
        engine: r.choice(
            "vipr_lb_backend",
            &[("ipvs", Kind::Ipvs), ("nftables", Kind::Nftables)],
        )?,
        backends: r.list("vipr_lb_backends", lb_backend)?,
        health_interval: r.secs("backend_health_check_interval", 5, 1, 3600)?,
    })
}

fn http(r: &Reader) -> Result<HttpSettings, ConfigError> {
    let addr = match r.parse("prometheus_server", listen_addr)? {
        Some(a) => Some(a),
        None if r.present("prometheus_server") => None, // set to "": disabled
        None => Some(SocketAddr::from(([0, 0, 0, 0], 2112))),
    };
    let status_allow = r.list("vipr_status_allow", |s| {
        s.parse::<ipnet::IpNet>()
            .map(|n| n.trunc())
            .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| "expected a CIDR or an address, e.g. 10.0.0.0/8".to_string())
    })?;
    Ok(HttpSettings { addr, status_allow })
}
