//! The table of every setting vipr reads: kube-vip's environment names (so a kube-vip
//! manifest works unchanged), vipr's own `vipr_*` names, kube-vip's flag spellings, which
//! values are secrets, and the one-line help. Env, flags, the YAML file, docs and the
//! table test all derive from this list.

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The environment / file name (kube-vip's spelling, case-sensitive as kube-vip reads it).
    pub name: &'static str,
    /// Extra long-flag spellings accepted by `vipr manager` (kube-vip's flag names).
    pub flags: &'static [&'static str],
    /// Never printed: errors show `<redacted>`.
    pub secret: bool,
    /// Help text.
    pub help: &'static str,
}

const fn k(name: &'static str, flags: &'static [&'static str], help: &'static str) -> Key {
    Key {
        name,
        flags,
        secret: false,
        help,
    }
}

const fn secret(name: &'static str, flags: &'static [&'static str], help: &'static str) -> Key {
    Key {
        name,
        flags,
        secret: true,
        help,
    }
}

/// Every key, in documentation order.
pub const KEYS: &[Key] = &[
    // Addresses and modes (kube-vip).
    k("address", &["vip"], "control-plane VIP(s), comma list for dual-stack"),
    k("vip_address", &[], "legacy name of `address`"),
    k("port", &[], "control-plane port (6443)"),
    k("vip_interface", &["interface"], "interface the VIPs are put on (lo)"),
    k("vip_subnet", &[], "mask of VIPs on the interface: 32, or 32,128 for v4,v6 (BGP advertises host routes)"),
    k("cp_enable", &["controlplane"], "serve the control-plane VIP"),
    k("svc_enable", &["services"], "serve Services of type LoadBalancer"),
    k("svc_namespace", &[], "only Services in this namespace (all when empty)"),
    k("vip_nodename", &["nodename"], "this node's name (defaults to the hostname)"),
    // BGP (kube-vip).
    k("bgp_enable", &["bgp"], "BGP mode"),
    k("bgp_routerid", &["bgpRouterID"], "BGP router id (unique per node)"),
    k("bgp_routerinterface", &[], "take the router id from this interface's IPv4"),
    k("bgp_as", &["localAS"], "local AS (65000)"),
    secret("bgp_peers", &["bgppeers"], "peers: address:AS:password:multihop[:port[::bfd]], IPv6 in [..]; bfd as in vipr_bfd"),
    k("bgp_peeraddress", &["peerAddress"], "a single legacy peer's address"),
    k("bgp_peeras", &["peerAS"], "the legacy peer's AS (65000)"),
    secret("bgp_peerpass", &["peerPass"], "the legacy peer's MD5 password"),
    k("bgp_multihop", &["multihop"], "the legacy peer is multihop"),
    k("bgp_sourceip", &["sourceIP"], "source address of BGP sessions"),
    k("bgp_sourceif", &["sourceIF"], "take the session source address from this interface"),
    k("bgp_hold_time", &[], "BGP hold time in seconds (30)"),
    k("bgp_keepalive_interval", &[], "BGP keepalive interval in seconds (10)"),
    k("annotation", &["annotations"], "take peers from node annotations with this prefix"),
    k("vip_packet", &[], "legacy: take peers from the Equinix Metal metadata service"),
    // Control-plane health (kube-vip).
    k("control_plane_health_check_address", &[], "advertise the control-plane VIP only while this URL answers 2xx"),
    k("control_plane_health_check_period_seconds", &[], "seconds between health checks (5)"),
    k("control_plane_health_check_timeout_seconds", &[], "health check timeout in seconds (3)"),
    k("control_plane_health_check_failure_threshold", &[], "consecutive failures before withdrawing (3)"),
    // ARP / leader election (kube-vip).
    k("vip_arp", &["arp"], "ARP/NDP mode"),
    k("vip_arpRate", &[], "gratuitous ARP refresh period in ms (3000)"),
    k("vip_leaderelection", &["leaderElection"], "use a Lease to elect the VIP holder"),
    k("vip_leasename", &["leaseName"], "control-plane Lease name (plndr-cp-lock)"),
    k("vip_leaseduration", &["leaseDuration"], "Lease duration in seconds (15)"),
    k("vip_renewdeadline", &["leaseRenewDuration"], "Lease renew deadline in seconds (10)"),
    k("vip_retryperiod", &["leaseRetry"], "Lease retry period in seconds (2)"),
    k("cp_namespace", &["namespace"], "namespace of the Leases (kube-system)"),
    k("svc_election", &["servicesElection"], "one Lease per Service (ARP mode)"),
    k("lb_class_only", &["lbClassOnly"], "only serve Services with lb_class_name"),
    k("lb_class_name", &["lbClassName"], "loadBalancerClass to serve (kube-vip.io/kube-vip-class)"),
    // IPVS control-plane load balancing (kube-vip).
    k("lb_enable", &["lbEnable"], "load-balance the control-plane VIP across API servers"),
    k("lb_port", &["lbPort"], "load balancer port (6443)"),
    k("lb_fwdmethod", &["lbForwardingMethod"], "local, masquerade, tunnel or directroute (local)"),
    k("backend_health_check_interval", &[], "backend health check interval in seconds (5)"),
    // Process (kube-vip).
    k("prometheus_server", &["prometheusHTTPServer"], "HTTP address for /metrics, /status, /healthz (:2112); empty disables"),
    k("k8s_config_file", &["k8sConfigPath"], "kubeconfig when not in a cluster (/etc/kubernetes/admin.conf)"),
    k("vip_loglevel", &["log"], "log level: 0-6 (kube-vip/logrus numbers) or error, warn, info, debug, trace"),
    // vipr's own.
    k("vipr_communities", &[], "standard communities on every route, e.g. 65000:100,65000:200"),
    k("vipr_large_communities", &[], "large communities on every route, e.g. 65000:1:2"),
    k("vipr_local_pref", &[], "LOCAL_PREF for iBGP peers (100)"),
    k("vipr_med", &[], "MULTI_EXIT_DISC on every route (unset)"),
    k("vipr_bgp_listen", &[], "listen for incoming BGP sessions on this address:port (off)"),
    k("vipr_graceful_restart", &[], "advertise graceful restart (false)"),
    k("vipr_graceful_restart_time", &[], "graceful restart time in seconds (120)"),
    k("vipr_bfd", &[], "BFD for peers without their own: enable;rx;tx;mult in ms, e.g. true;300;300;3 (false; single-hop peers only)"),
    k("vipr_static_vips", &[], "extra VIPs to serve, comma list"),
    k("vipr_drain_seconds", &[], "on shutdown, re-advertise with GRACEFUL_SHUTDOWN (RFC 8326) this long before withdrawing (0)"),
    k("vipr_state_dir", &[], "where vipr records the addresses it added (/run/vipr)"),
    k("vipr_log_format", &[], "text or json (text)"),
    k("vipr_peers_from", &[], "static, equinix-metal or annotations (static)"),
    k("vipr_metadata_url", &[], "Equinix Metal metadata URL"),
    k("vipr_metadata_interval", &[], "seconds between metadata polls (60)"),
    k("vipr_lb_backend", &[], "ipvs or nftables (chosen automatically)"),
    k("vipr_lb_scheduler", &[], "IPVS scheduler: rr, wrr, lc, wlc, sh, mh (rr)"),
    k("vipr_lb_backends", &[], "static control-plane backends (address[:port], comma list) without Kubernetes"),
];

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
