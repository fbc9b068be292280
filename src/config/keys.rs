//! The table of every setting vipr reads: kube-vip's environment names (so a kube-vip
//! manifest works unchanged), vipr's own `vipr_*` names, kube-vip's flag spellings, which
//! values are secrets, which configuration section each belongs to (the task that follows
//! it), and the one-line help. Env, flags (with [`arg`]), the YAML file, docs and the table
//! tests all derive from this list.

use clap::{Arg, ArgAction};

/// The configuration section a setting belongs to: each section travels on its own `watch`
/// to the tasks that follow it ([`super::sections`]). [`Section::Node`] settings are fixed
/// for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// Mode, node name, state directory, kubeconfig, log format: need a restart.
    Node,
    /// Where VIPs are put (interface, masks) and the static VIPs.
    Vips,
    /// The control-plane VIP, its port and health check.
    ControlPlane,
    /// Services of type LoadBalancer: whether, and which.
    Services,
    /// BGP: AS, router id, peers and their defaults, listener, route attributes.
    Bgp,
    /// Where peers come from besides the configuration.
    PeerSource,
    /// ARP/NDP mode and Lease election.
    Arp,
    /// Control-plane load balancing.
    Lb,
    /// The HTTP endpoints.
    Http,
    /// Logging.
    Log,
}

impl Section {
    /// The heading of its flags in `--help`.
    pub fn heading(self) -> &'static str {
        match self {
            Section::Node => "Node (fixed while running)",
            Section::Vips => "VIP placement",
            Section::ControlPlane => "Control plane",
            Section::Services => "Services",
            Section::Bgp => "BGP",
            Section::PeerSource => "Peer source",
            Section::Arp => "ARP mode",
            Section::Lb => "Control-plane load balancing",
            Section::Http => "HTTP",
            Section::Log => "Logging",
        }
    }
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The environment / file name (kube-vip's spelling, case-sensitive as kube-vip reads it).
    pub name: &'static str,
    /// Extra long-flag spellings accepted by `vipr manager` (kube-vip's flag names).
    pub flags: &'static [&'static str],
    /// Never printed: errors show `<redacted>`.
    pub secret: bool,
    /// Another name of the same setting (`vip_address` of `address`): giving both in one
    /// source is an error.
    pub same_as: Option<&'static str>,
    /// Which section it belongs to.
    pub section: Section,
    /// Help text.
    pub help: &'static str,
}

const fn k(
    section: Section,
    name: &'static str,
    flags: &'static [&'static str],
    help: &'static str,
) -> Key {
    Key {
        name,
        flags,
        secret: false,
        same_as: None,
        section,
        help,
    }
}

const fn secret(
    section: Section,
    name: &'static str,
    flags: &'static [&'static str],
    help: &'static str,
) -> Key {
    Key {
        secret: true,
        ..k(section, name, flags, help)
    }
}

const fn alias(section: Section, name: &'static str, of: &'static str, help: &'static str) -> Key {
    Key {
        same_as: Some(of),
        ..k(section, name, &[], help)
    }
}

use Section::*;

/// Every key, in documentation order.
pub const KEYS: &[Key] = &[
    // Addresses and modes (kube-vip).
    k(ControlPlane, "address", &["vip"], "control-plane VIP(s), comma list for dual-stack, or one DNS name (resolved every 3 s, followed)"),
    k(ControlPlane, "dns_mode", &["dnsMode"], "which addresses of a DNS name in address: first (default), ipv4, ipv6 or dual"),
    alias(ControlPlane, "vip_address", "address", "legacy name of `address`"),
    k(ControlPlane, "port", &[], "control-plane port (6443)"),
    k(Vips, "vip_interface", &["interface"], "interface the VIPs are put on (lo)"),
    k(Vips, "vip_subnet", &["vipSubnet"], "mask of VIPs on the interface: 32, or 32,128 for v4,v6 (BGP advertises host routes)"),
    k(ControlPlane, "cp_enable", &["controlplane"], "serve the control-plane VIP"),
    k(Services, "svc_enable", &["services"], "serve Services of type LoadBalancer"),
    k(Services, "svc_namespace", &[], "only Services in this namespace (all when empty)"),
    k(Node, "vip_nodename", &["nodename", "nodeName"], "this node's name (defaults to the hostname)"),
    k(Node, "enable_node_labeling", &["enableNodeLabeling"], "label this node with the VIPs it serves: kube-vip.io/has-ip (control plane), service-provided.kube-vip.io/<service>.<namespace> (false)"),
    // BGP (kube-vip).
    k(Node, "bgp_enable", &["bgp"], "BGP mode"),
    k(Bgp, "bgp_routerid", &["bgpRouterID"], "BGP router id (unique per node)"),
    k(Bgp, "bgp_routerinterface", &[], "take the router id from this interface's IPv4"),
    k(Bgp, "bgp_as", &["localAS"], "local AS (65000)"),
    secret(Bgp, "bgp_peers", &["bgppeers"], "peers: address:AS:password:multihop[:port[:mpbgp[:bfd[:gtsm]]]], IPv6 in [..]; mpbgp as kube-vip (mpbgp_nexthop=fixed;mpbgp_ipv6=[..]), bfd as in vipr_bfd, gtsm as in vipr_bgp_gtsm; in the YAML file an item may also be a mapping with every option of a peer and a node_selector (README: Peers per rack)"),
    k(Bgp, "bgp_peeraddress", &["peerAddress"], "a single legacy peer's address"),
    k(Bgp, "bgp_peeras", &["peerAS"], "the legacy peer's AS (65000)"),
    secret(Bgp, "bgp_peerpass", &["peerPass"], "the legacy peer's MD5 password"),
    k(Bgp, "bgp_multihop", &["multihop"], "the legacy peer is multihop"),
    k(Bgp, "bgp_sourceip", &["sourceIP"], "source address of BGP sessions"),
    k(Bgp, "bgp_sourceif", &["sourceIF"], "take the session source address from this interface"),
    k(Bgp, "bgp_hold_time", &["bgpHoldTimer"], "BGP hold time in seconds (30)"),
    k(Bgp, "bgp_keepalive_interval", &["bgpKeepAliveInterval"], "BGP keepalive interval in seconds (10)"),
    k(PeerSource, "annotation", &["annotations"], "take peers from node annotations with this prefix"),
    k(PeerSource, "vip_packet", &[], "legacy: take peers from the Equinix Metal metadata service"),
    // Control-plane health (kube-vip).
    k(ControlPlane, "control_plane_health_check_address", &["controlPlaneHealthCheckAddress"], "advertise the control-plane VIP only while this URL answers 2xx"),
    k(ControlPlane, "control_plane_health_check_period_seconds", &["controlPlaneHealthCheckPeriodSeconds"], "seconds between health checks (5)"),
    k(ControlPlane, "control_plane_health_check_timeout_seconds", &["controlPlaneHealthCheckTimeoutSeconds"], "health check timeout in seconds (3)"),
    k(ControlPlane, "control_plane_health_check_failure_threshold", &["controlPlaneHealthCheckFailureThreshold"], "consecutive failures before withdrawing (3)"),
    k(Bgp, "mpbgp_nexthop", &[], "next hop of the other family's routes: fixed (mpbgp_ipv4/mpbgp_ipv6), auto_sourceip or auto_sourceif (an address of that interface)"),
    k(Bgp, "mpbgp_ipv4", &[], "with mpbgp_nexthop=fixed: next hop of IPv4 routes over IPv6 sessions"),
    k(Bgp, "mpbgp_ipv6", &[], "with mpbgp_nexthop=fixed: next hop of IPv6 routes over IPv4 sessions"),
    k(Vips, "vip_servicesinterface", &["serviceInterface"], "interface for Service VIPs (vip_interface when unset)"),
    k(Vips, "vipr_service_interfaces", &[], "more interfaces a Service may name in kube-vip.io/serviceInterface, comma list (vip_interface and vip_servicesinterface always may)"),
    k(Vips, "bgp_attach_ip_to_interface", &["bgpAttachIPToInterface"], "BGP mode: put Service VIPs on vip_interface too, as local routes (table local, proto 86) (true); false: only advertise them (kube-vip's default)"),
    k(ControlPlane, "control_plane_health_check_ca_path", &["controlPlaneHealthCheckCAPath"], "verify an https health URL's certificate against this CA (PEM); unset: not verified"),
    // ARP / leader election (kube-vip).
    k(Node, "vip_arp", &["arp"], "ARP/NDP mode"),
    k(Arp, "vip_arpRate", &[], "gratuitous ARP refresh period in ms (3000)"),
    k(Arp, "vip_leaderelection", &["leaderElection"], "use a Lease to elect the VIP holder"),
    k(Arp, "vip_preserve_on_leadership_loss", &["preserveVipOnLeadershipLoss"], "ARP mode: an IPv4 VIP whose Lease is lost stays on the interface, no longer announced (the node still answers ARP requests for it), until another holder is seen; IPv6 VIPs go at once (false)"),
    k(Arp, "vip_leasename", &["leaseName"], "control-plane Lease name (plndr-cp-lock), or namespace/name"),
    k(Arp, "vip_leaseduration", &["leaseDuration"], "Lease duration in seconds (15)"),
    k(Arp, "vip_renewdeadline", &["leaseRenewDuration"], "Lease renew deadline in seconds (10)"),
    k(Arp, "vip_retryperiod", &["leaseRetry"], "Lease retry period in seconds (2)"),
    k(Arp, "cp_namespace", &["namespace"], "namespace of the Leases (kube-system)"),
    k(Arp, "svc_election", &["servicesElection"], "one Lease per Service (ARP mode)"),
    k(Arp, "vipr_bgp_leader_only", &[], "BGP mode with vip_leaderelection: only the holder of the control-plane Lease advertises the control-plane VIP, as kube-vip does (false: every node advertises it)"),
    k(Arp, "per_service_election_on_demand", &["perServiceElectionOnDemand"], "without svc_election: Services annotated kube-vip.io/forcePerServiceElection=\"true\" get a Lease of their own (ARP mode)"),
    k(Arp, "svc_leasename", &["servicesLeaseName"], "the Lease for all Services without svc_election (plndr-svcs-lock), or namespace/name"),
    k(Services, "lb_class_only", &["lbClassOnly"], "only serve Services with lb_class_name"),
    k(Services, "lb_class_name", &["lbClassName"], "loadBalancerClass to serve (kube-vip.io/kube-vip-class)"),
    k(Services, "disable_service_updates", &["disableServiceUpdates"], "serve Services without writing their status.loadBalancer.ingress (false)"),
    // IPVS control-plane load balancing (kube-vip).
    k(Lb, "lb_enable", &["lbEnable", "enableLoadBalancer"], "load-balance the control-plane VIP across API servers"),
    k(Lb, "lb_port", &["lbPort"], "load balancer port (6443)"),
    k(Lb, "lb_fwdmethod", &["lbForwardingMethod"], "local, masquerade, tunnel or directroute (local)"),
    k(Lb, "backend_health_check_interval", &[], "backend health check interval in seconds (5)"),
    // Process (kube-vip).
    k(Http, "prometheus_server", &["prometheusHTTPServer"], "HTTP address for /metrics, /healthz, /readyz and /status (:2112); empty disables; taken at start: vipr exits"),
    k(Node, "k8s_config_file", &["k8sConfigPath"], "kubeconfig when not in a cluster (/etc/kubernetes/admin.conf); with cp_enable, admin.conf, super-admin.conf or one naming the control-plane VIP is used with the local API server (127.0.0.1:port) until kubernetes_addr says otherwise"),
    k(Node, "kubernetes_addr", &[], "the API server to reach instead of k8s_config_file's server, host:port or a URL (e.g. 127.0.0.1:6443)"),
    k(Log, "vip_loglevel", &["log"], "log level: a number as kube-vip v1.2.3 reads it (a Go slog level: -4 debug, 0 info, 4 warn, 8 error; below -4 trace) or error, warn, info, debug, trace"),
    // vipr's own.
    k(Bgp, "vipr_communities", &[], "standard communities on every route without attribute sets of its own, e.g. 65000:100,65000:200 (well-known names such as no-export allowed)"),
    k(Bgp, "vipr_large_communities", &[], "large communities on every route without attribute sets of its own, e.g. 65000:1:2"),
    k(Bgp, "vipr_local_pref", &[], "LOCAL_PREF for iBGP peers on every route without attribute sets of its own (100)"),
    k(Bgp, "vipr_med", &[], "MULTI_EXIT_DISC on every route without attribute sets of its own (unset)"),
    k(Bgp, "vipr_bgp_attribute_sets", &[], "named BGP attribute sets for pools, Services and the control-plane VIP, comma list (a YAML list in the file): NAME[;communities=65000:100|no-export][;large-communities=65000:1:2][;local-pref=N][;med=N][;prepend=N (0-10, eBGP only)]"),
    k(Bgp, "vipr_control_plane_bgp_attributes", &[], "attribute sets (of vipr_bgp_attribute_sets) the control-plane VIP's route carries, comma list (unset: the global vipr_communities etc.)"),
    k(Bgp, "vipr_bgp_listen", &[], "listen for incoming BGP sessions on this address:port (off)"),
    k(Bgp, "vipr_bgp_gtsm", &[], "GTSM (RFC 5082) for peers without their own 8th field, as FRR's ttl-security hops N: hops 1..=254 (true = 1); TTL 255 sent, at least 256-hops required, also of incoming connections (false; not for multihop peers)"),
    k(Bgp, "vipr_graceful_restart", &[], "advertise graceful restart (false)"),
    k(Bgp, "vipr_graceful_restart_time", &[], "graceful restart time in seconds (120)"),
    k(Bgp, "vipr_node_labels", &[], "this node's labels for the node_selector of peers, e.g. rack=r1,zone=a (a mapping in the YAML file); when unset, the labels of this node's Node object, followed live"),
    k(Bgp, "vipr_bfd", &[], "BFD for peers without their own: enable;rx;tx;mult in ms, e.g. true;300;300;3 (false; single-hop peers only)"),
    k(Vips, "vipr_static_vips", &[], "extra VIPs to serve, comma list"),
    k(Bgp, "vipr_drain_seconds", &[], "on shutdown, re-advertise with GRACEFUL_SHUTDOWN (RFC 8326) this long before withdrawing (0)"),
    k(Node, "vipr_instance", &[], "name of this vipr when several run on one node, e.g. control-plane and services: each has its own address marker, state directory, nftables table and Lease identity (empty: the default instance)"),
    k(Node, "vipr_daemonset", &[], "namespace/name of the DaemonSet this vipr runs in (rendered by vipr manifest daemonset with graceful restart): with vipr_graceful_restart, a SIGTERM during its rolling update is a restart in place"),
    k(Node, "vipr_static_pod_manifest", &[], "the static pod manifest this vipr runs from, as the container sees it (rendered by vipr manifest pod with graceful restart, /etc/kubernetes/manifests mounted read-only): with vipr_graceful_restart, a SIGTERM after the manifest changed (an upgrade: the kubelet replaces the pod) is a restart in place"),
    k(Node, "vipr_pod_template_generation", &[], "this pod's pod-template-generation label (rendered from the downward API with vipr_daemonset)"),
    k(Node, "vipr_state_dir", &[], "where vipr records the addresses it added (/run/vipr; /run/vipr/<vipr_instance> for a named instance)"),
    k(Node, "vipr_log_format", &[], "text or json (text)"),
    k(PeerSource, "vipr_peers_from", &[], "static, equinix-metal or annotations (static)"),
    k(PeerSource, "vipr_metadata_url", &[], "Equinix Metal metadata URL"),
    k(PeerSource, "vipr_metadata_interval", &[], "seconds between metadata polls (60)"),
    k(Lb, "vipr_lb_backend", &[], "ipvs or nftables (chosen automatically)"),
    k(Lb, "vipr_lb_scheduler", &[], "IPVS scheduler: rr, wrr, lc, wlc, sh, mh (rr)"),
    k(Lb, "vipr_lb_backends", &[], "static control-plane backends (address[:port], comma list) without Kubernetes"),
    k(Services, "vipr_pools", &[], "address pools for Services, comma list (a YAML list in the file): CIDR or a-b range [|more blocks][;name=N][;namespaces=a|b][;auto-assign=false][;allow-share=true][;bgp-attributes=SET|SET][;bgp-allowed=SET|SET]"),
    k(Services, "vipr_pools_required", &[], "refuse every Service address when no pool is defined (false: without pools, addresses are served as requested)"),
    k(Services, "vipr_pool_configmap", &[], "kube-vip-cloud-provider's ConfigMap of pools, namespace/name (kube-system/kubevip); empty: none"),
    k(Http, "vipr_status_allow", &[], "networks whose clients may read /status besides this host, comma list of CIDRs (empty: this host only; 0.0.0.0/0,::/0: anyone)"),
    k(Services, "vipr_withdraw_cordoned", &[], "a cordoned node (kubectl cordon, kubectl drain) announces no Service VIP (true; false: only the exclude-from-external-load-balancers label withdraws, as MetalLB and kube-vip)"),
    k(Services, "vipr_claims_namespace", &[], "namespace of the address claims (Leases named vipr-addr-*) (kube-system)"),
];

/// The flags of setting `k`: vipr's own spelling (`--bgp-as`) and each of kube-vip's
/// (`--localAS`), one argument each (id `name` for the first, `name@spelling` for the
/// others) so that two spellings given together can be told apart and refused. A bare flag
/// means `true`. kube-vip's spellings are listed in `--help` when `visible` (`vipr
/// manifest`, whose flags are kube-vip's generator's), hidden otherwise.
pub fn args(k: &Key, visible: bool) -> Vec<Arg> {
    let one = |id: String, long: String, shown: bool| {
        Arg::new(id)
            .long(long)
            .value_name("VALUE")
            .num_args(0..=1)
            .default_missing_value("true")
            .action(ArgAction::Append)
            .help(k.help)
            .help_heading(k.section.heading())
            .hide(!shown)
    };
    let mut out = vec![one(k.name.to_string(), flag_name(k), true)];
    for f in k.flags {
        out.push(one(format!("{}@{f}", k.name), f.to_string(), visible));
    }
    out
}

/// The `(spelling, value)` pairs given for every setting in parsed matches of [`args`],
/// each value once per time its flag was given.
pub fn given(m: &clap::ArgMatches) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for k in KEYS {
        let spellings = std::iter::once((k.name.to_string(), flag_name(k))).chain(
            k.flags
                .iter()
                .map(|f| (format!("{}@{f}", k.name), f.to_string())),
        );
        for (id, spelling) in spellings {
            if let Ok(Some(vals)) = m.try_get_many::<String>(&id) {
                for v in vals {
                    out.push((spelling.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// Looks a key up by its exact name.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The long flag for a key: its name with `_` as `-`, e.g. `--bgp-as`.
pub fn flag_name(key: &Key) -> String {
    let mut s = String::new();
    for c in key.name.chars() {
        if c == '_' {
            s.push('-');
        } else if c.is_ascii_uppercase() {
            s.push('-');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_flags_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in KEYS {
            assert!(seen.insert(k.name.to_string()), "duplicate key {}", k.name);
        }
        let mut flags = std::collections::HashSet::new();
        for k in KEYS {
            assert!(
                flags.insert(flag_name(k)),
                "duplicate flag {}",
                flag_name(k)
            );
            for f in k.flags {
                assert!(flags.insert(f.to_string()), "duplicate flag {f}");
            }
        }
        assert_eq!(flag_name(find("vip_arpRate").unwrap()), "vip-arp-rate");
    }
}
