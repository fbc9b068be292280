//! BGP peers of the daemon: follows the BGP section (configured peers, defaults, router id,
//! source, listener), the control-plane and VIP sections (a VIP is never a router id) and
//! the provider's discovered peers (crate `providers`), and applies the resulting sessions
//! to the speaker, changing only what changed. Multihop peers from a provider are kept
//! reachable with a host route when only the default route covers them.
//!
//! Split in two: [`NodeFacts`] are read from the node's interfaces (async, netlink), and
//! [`plan`] turns the sections, the discovery and those facts into the router id and the
//! peers (pure).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bgp::{PeerConfig, Speaker};
use providers::Discovery;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{
    configured_vips, BgpSettings, ControlPlane, MpNextHop, MpNextHopMode, RouterId, SessionSource,
    VipSettings,
};
use crate::dataplane::addr::AddrManager;
use crate::dataplane::routes::RouteManager;
pub use crate::discovery::Discovered;
use crate::unnumbered::LinkRouters;

/// What the peers of this node are built from, besides the configuration: the node's
/// addresses as the kernel has them (vipr's own excluded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// Global addresses in kernel order, each with whether it is on a loopback interface.
    pub globals: Vec<(IpAddr, bool)>,
    /// The IPv4 address of `bgp_routerinterface`, when set.
    pub router_interface_v4: Option<Ipv4Addr>,
    /// The addresses of `bgp_sourceif`, when set.
    pub source_interface: Vec<IpAddr>,
    /// The addresses of the interface that holds `bgp_sourceip`, when set (for
    /// `mpbgp_nexthop=auto_sourceip`).
    pub source_ip_interface: Vec<IpAddr>,
    /// The router found on each interface of an unnumbered peer (`unnumbered.rs`).
    pub link_routers: Arc<LinkRouters>,
}

impl NodeFacts {
    /// Reads what the BGP section needs from the node.
    pub async fn read(bgp: &BgpSettings, addrs: &AddrManager) -> Result<NodeFacts, String> {
        let globals = addrs.global_addrs().await.map_err(|e| e.to_string())?;
        // Needed only when no provider names a router id: [`plan`] reports its absence.
        let router_interface_v4 = match &bgp.router_id {
            RouterId::Interface(iface) => addrs.ipv4_of(iface).await.ok().flatten(),
            _ => None,
        };
        let source_interface = match &bgp.source {
            Some(SessionSource::Interface(i)) => {
                addrs.addrs_of(i).await.map_err(|e| e.to_string())?
            }
            _ => Vec::new(),
        };
        let source_ip_interface = match &bgp.source {
            Some(SessionSource::Address(ip)) => {
                addrs.addrs_beside(*ip).await.map_err(|e| e.to_string())?
            }
            _ => Vec::new(),
        };
        Ok(NodeFacts {
            globals,
            router_interface_v4,
            source_interface,
            source_ip_interface,
            link_routers: Arc::default(),
        })
    }
}

/// The router id and the sessions. Configured peers first, then the provider's (a
/// configured peer with the same address wins); the provider's peers take the node-wide
/// defaults; every peer without a source address takes the configured one of its family,
/// and the next hop of the other family is an address of the node.
pub fn plan(
    bgp: &BgpSettings,
    vips: &[IpAddr],
    discovered: Option<&Discovery>,
    facts: &NodeFacts,
) -> Result<(Ipv4Addr, Vec<PeerConfig>), String> {
    // A default router id or next hop is never a VIP (one can be on the node without vipr's
    // marker: put there by hand or by an earlier kube-vip), and comes from a loopback
    // interface only when no other has one: `lo` holds VIPs and service addresses, which a
    // directly connected peer cannot use as next hop and other nodes may share.
    let pick = |v4: bool| {
        let usable = |want_lo: bool| {
            facts
                .globals
                .iter()
                .find(|(ip, lo)| ip.is_ipv4() == v4 && *lo == want_lo && !vips.contains(ip))
                .map(|(ip, _)| *ip)
        };
        usable(false).or_else(|| usable(true))
    };
    let router_id = match (&bgp.router_id, discovered.and_then(|d| d.router_id)) {
        (RouterId::Fixed(id), _) => *id,
        (RouterId::Auto, Some(id)) | (RouterId::Interface(_), Some(id)) => id,
        (RouterId::Interface(iface), None) => facts
            .router_interface_v4
            .ok_or_else(|| format!("bgp_routerinterface {iface} has no IPv4 address"))?,
        (RouterId::Auto, None) => match pick(true) {
            Some(IpAddr::V4(a)) => a,
            _ => {
                return Err(
                    "no router id: set bgp_routerid (no IPv4 address found on the node)".into(),
                )
            }
        },
    };
    let configured_source = |v4: bool| match &bgp.source {
        Some(SessionSource::Address(ip)) => Some(*ip).filter(|ip| ip.is_ipv4() == v4),
        Some(SessionSource::Interface(_)) => facts
            .source_interface
            .iter()
            .copied()
            .find(|ip| ip.is_ipv4() == v4),
        None => None,
    };
    // Next hops for the other family than the session's (the session's own takes its local
    // address): kube-vip's mpbgp_nexthop, else a global address of the node (of the source
    // interface first). A mode that finds no address leaves that family without a next hop:
    // its routes are not sent to the peer (counted), as kube-vip does not add such a peer.
    let node_next_hop = |v4: bool| {
        facts
            .source_interface
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == v4)
            .or_else(|| pick(v4))
    };
    let other_next_hop = |mp: MpNextHop, v4: bool| -> Option<IpAddr> {
        let of = |addrs: &[IpAddr]| addrs.iter().copied().find(|a| a.is_ipv4() == v4);
        match mp.mode {
            None => node_next_hop(v4),
            Some(MpNextHopMode::Fixed) => match v4 {
                true => mp.v4.map(IpAddr::V4),
                false => mp.v6.map(IpAddr::V6),
            }
            .or_else(|| node_next_hop(v4)),
            Some(MpNextHopMode::AutoSourceIf) => of(&facts.source_interface),
            Some(MpNextHopMode::AutoSourceIp) => of(&facts.source_ip_interface),
        }
    };
    let provided = discovered
        .map(|d| d.peers.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|p| !bgp.peers.iter().any(|s| s.address == p.address))
        .map(|p| bgp.defaults.complete(p.clone()));
    let mut out: Vec<PeerConfig> = Vec::new();
    for p in bgp.peers.iter().cloned().chain(provided) {
        if let Some(iface) = &p.interface {
            // BGP unnumbered: a session once the router of the link is known (and not
            // already a peer through another interface: the speaker keys peers by
            // address). No source and no node next hop: the session's own link-local
            // address is the next hop of both families (RFC 8950, RFC 2545 §3).
            let Some(router) = facts.link_routers.get(iface) else {
                continue;
            };
            if out.iter().any(|q| q.address == IpAddr::V6(*router)) {
                warn!(interface = %iface, %router, "BGP unnumbered: this router is already a peer through another interface; not peering here");
                continue;
            }
            let p = p.with_neighbor(*router);
            p.validate().map_err(|e| e.to_string())?;
            out.push(p);
            continue;
        }
        let v4 = p.address.is_ipv4();
        let other = other_next_hop(bgp.mp_next_hop_of(p.address), !v4);
        let p = PeerConfig {
            source: p.source.or_else(|| configured_source(v4)),
            next_hop_v4: p.next_hop_v4.or(match other {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            }),
            next_hop_v6: p.next_hop_v6.or(match other {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            }),
            ..p
        };
        p.validate().map_err(|e| e.to_string())?;
        out.push(p);
    }
    Ok((router_id, out))
}

/// What the peers task follows.
pub struct Inputs {
    /// The BGP section.
    pub bgp: watch::Receiver<Arc<BgpSettings>>,
    /// The control-plane VIPs (never a router id).
    pub control_plane: watch::Receiver<Arc<ControlPlane>>,
    /// The static VIPs (never a router id).
    pub vips: watch::Receiver<Arc<VipSettings>>,
    /// The provider's peers.
    pub discovered: watch::Receiver<Discovered>,
    /// The routers of the unnumbered peers' interfaces.
    pub link_routers: watch::Receiver<Arc<LinkRouters>>,
}

/// Follows the sections and the provider and applies the resulting peer set, router id and
/// listener to the speaker. `known` tells readiness whether the peer source has answered;
/// `peer_addrs` gets the peers' addresses (never a Service's VIP).
/// At cancellation the host routes vipr added are removed.
pub async fn run(
    mut i: Inputs,
    addrs: AddrManager,
    routes: RouteManager,
    speaker: Speaker,
    known: watch::Sender<bool>,
    peer_addrs: watch::Sender<Arc<BTreeSet<IpAddr>>>,
    cancel: CancellationToken,
) {
    let mut added_routes: BTreeSet<IpAddr> = BTreeSet::new();
    'outer: loop {
        let bgp = i.bgp.borrow_and_update().clone();
        let vips: Vec<IpAddr> = configured_vips(
            &i.control_plane.borrow_and_update(),
            &i.vips.borrow_and_update(),
        )
        .map(|(ip, _)| ip)
        .collect();
        let d = i.discovered.borrow_and_update().clone();
        if let Err(e) = speaker.set_listen(bgp.listen).await {
            warn!(error = %e, "cannot listen for BGP connections");
        }
        match &d {
            Discovered::Pending => {
                known.send_replace(false);
            }
            Discovered::Known(disc) => {
                let mut retry = Duration::from_secs(1);
                loop {
                    let link_routers = i.link_routers.borrow_and_update().clone();
                    for p in bgp.peers.iter().filter_map(|p| p.interface.as_ref()) {
                        if !link_routers.contains_key(p) {
                            info!(interface = %p, "BGP unnumbered: waiting for a router advertisement on the interface");
                        }
                    }
                    let planned = match NodeFacts::read(&bgp, &addrs).await {
                        Ok(facts) => plan(
                            &bgp,
                            &vips,
                            disc.as_deref(),
                            &NodeFacts {
                                link_routers,
                                ..facts
                            },
                        ),
                        Err(e) => Err(e),
                    };
                    match planned {
                        Ok((router_id, want)) => {
                            let addrs: BTreeSet<IpAddr> = want.iter().map(|p| p.address).collect();
                            peer_addrs.send_if_modified(|cur| {
                                let changed = **cur != addrs;
                                if changed {
                                    *cur = Arc::new(addrs);
                                }
                                changed
                            });
                            sync_routes(&routes, disc.as_deref(), &mut added_routes).await;
                            if let Err(e) = speaker.set_router_id(router_id).await {
                                warn!(error = %e, "cannot set the router id");
                            }
                            apply_peers(&speaker, want).await;
                            known.send_replace(true);
                            break;
                        }
                        Err(e) => {
                            warn!(error = %e, retry_in = ?retry, "cannot configure BGP peers");
                            tokio::select! {
                                _ = cancel.cancelled() => break 'outer,
                                _ = tokio::time::sleep(retry) => {}
                                Ok(()) = i.bgp.changed() => continue 'outer,
                                Ok(()) = i.control_plane.changed() => continue 'outer,
                                Ok(()) = i.vips.changed() => continue 'outer,
                                Ok(()) = i.discovered.changed() => continue 'outer,
                                Ok(()) = i.link_routers.changed() => continue 'outer,
                            }
                            retry = (retry * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = i.bgp.changed() => if r.is_err() { break },
            Ok(()) = i.control_plane.changed() => {}
            Ok(()) = i.vips.changed() => {}
            // A provider that has stopped leaves its last answer in place.
            Ok(()) = i.discovered.changed() => {}
            Ok(()) = i.link_routers.changed() => {}
        }
    }
    for peer in added_routes {
        if let Err(e) = routes.remove_peer_route(peer).await {
            warn!(%peer, error = %e, "cannot remove the host route to a peer");
        }
    }
}

/// Multihop peers from a provider get a host route when only the default route reaches them;
/// routes to peers that went away are removed.
async fn sync_routes(routes: &RouteManager, d: Option<&Discovery>, added: &mut BTreeSet<IpAddr>) {
    let want: BTreeSet<IpAddr> = d
        .map(|d| {
            d.peers
                .iter()
                .filter(|p| p.is_multihop())
                .map(|p| p.address)
                .collect()
        })
        .unwrap_or_default();
    for gone in added.difference(&want).copied().collect::<Vec<_>>() {
        match routes.remove_peer_route(gone).await {
            Ok(()) => {
                added.remove(&gone);
            }
            Err(e) => warn!(peer = %gone, error = %e, "cannot remove the host route to a peer"),
        }
    }
    for peer in want {
        if added.contains(&peer) {
            continue;
        }
        match routes.ensure_peer_route(peer).await {
            Ok(true) => {
                info!(%peer, "added a host route to the multihop peer via the default gateway");
                added.insert(peer);
            }
            Ok(false) => {}
            Err(e) => warn!(%peer, error = %e, "multihop peer may be unreachable"),
        }
    }
}

async fn apply_peers(speaker: &Speaker, want: Vec<PeerConfig>) {
    let current = speaker.peers().await.unwrap_or_default();
    for p in &current {
        if !want.iter().any(|w| w.address == p.config.address) {
            info!(peer = %p.config.address, "peer removed from the configuration");
            let _ = speaker.remove_peer(p.config.address).await;
        }
    }
    for w in want {
        let addr = w.address;
        let existed = current.iter().any(|p| p.config.address == addr);
        match speaker.set_peer(w).await {
            Ok(true) if existed => info!(peer = %addr, "peer configuration changed: session reset"),
            Ok(_) => {}
            Err(e) => warn!(peer = %addr, error = %e, "cannot add peer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Layers};

    fn bgp(extra: &[(&str, &str)]) -> BgpSettings {
        let mut env: std::collections::HashMap<String, String> = [
            ("bgp_enable", "true"),
            ("cp_enable", "true"),
            ("address", "192.0.2.10"),
            (
                "bgp_peers",
                "192.0.2.1:65000::false,[2001:db8::1]:65000::false",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let mut l = Layers::default();
        l.add_env(|n| env.get(n).cloned()).unwrap();
        Config::from_layers(&l, "n").unwrap().bgp
    }

    fn facts(globals: &[(&str, bool)]) -> NodeFacts {
        NodeFacts {
            globals: globals
                .iter()
                .map(|(a, lo)| (a.parse().unwrap(), *lo))
                .collect(),
            ..NodeFacts::default()
        }
    }

    #[test]
    fn unnumbered_peers_are_sessions_once_their_router_is_known() {
        let b = bgp(&[
            (
                "bgp_peers",
                "unnumbered:eth1:65000,unnumbered:eth2:65000,192.0.2.1:65000::false",
            ),
            ("bgp_sourceip", "10.55.0.11"),
        ]);
        let mut f = facts(&[("10.55.0.11", false), ("2001:db8::11", false)]);
        let (_, peers) = plan(&b, &[], None, &f).unwrap();
        let addrs: Vec<String> = peers.iter().map(|p| p.address.to_string()).collect();
        assert_eq!(addrs, ["192.0.2.1"], "no router known yet");
        f.link_routers = Arc::new([("eth1".to_string(), "fe80::1".parse().unwrap())].into());
        let (_, peers) = plan(&b, &[], None, &f).unwrap();
        let p = &peers[0];
        assert_eq!(p.address, "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!(p.interface.as_deref(), Some("eth1"));
        assert_eq!(
            (p.source, p.next_hop_v4, p.next_hop_v6),
            (None, None, None),
            "the session's own link-local address is the next hop of both families"
        );
        assert_eq!(peers.len(), 2);
        // The same router behind a second interface is one peer (the speaker keys by
        // address): the first interface keeps it.
        f.link_routers = Arc::new(
            [
                ("eth1".to_string(), "fe80::1".parse().unwrap()),
                ("eth2".to_string(), "fe80::1".parse().unwrap()),
            ]
            .into(),
        );
        let (_, peers) = plan(&b, &[], None, &f).unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].interface.as_deref(), Some("eth1"));
    }

    #[test]
    fn router_id_and_next_hops_come_from_the_node_but_never_from_a_vip() {
        let vip: IpAddr = "192.0.2.10".parse().unwrap();
        let f = facts(&[
            ("192.0.2.10", true),
            ("203.0.113.5", true),
            ("10.55.0.11", false),
            ("2001:db8:55::11", false),
        ]);
        let (id, peers) = plan(&bgp(&[]), &[vip], None, &f).unwrap();
        assert_eq!(id, "10.55.0.11".parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            peers[0].next_hop_v6,
            Some("2001:db8:55::11".parse().unwrap())
        );
        assert_eq!(peers[0].next_hop_v4, None);
        assert_eq!(peers[1].next_hop_v4, Some("10.55.0.11".parse().unwrap()));
        // Only loopback addresses: the non-VIP one.
        let (id, _) = plan(
            &bgp(&[]),
            &[vip],
            None,
            &facts(&[("192.0.2.10", true), ("203.0.113.5", true)]),
        )
        .unwrap();
        assert_eq!(id, "203.0.113.5".parse::<Ipv4Addr>().unwrap());
        assert!(plan(&bgp(&[]), &[vip], None, &facts(&[("192.0.2.10", true)])).is_err());
        let (id, _) = plan(&bgp(&[("bgp_routerid", "192.0.2.99")]), &[vip], None, &f).unwrap();
        assert_eq!(id, "192.0.2.99".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn configured_source_applies_per_family_and_static_peers_win() {
        let f = facts(&[("10.55.0.11", false)]);
        let b = bgp(&[("bgp_sourceip", "10.55.0.11")]);
        let mut d = Discovery {
            router_id: Some("192.0.2.77".parse().unwrap()),
            ..Discovery::default()
        };
        d.peers
            .push(PeerConfig::new("192.0.2.1".parse().unwrap(), 64999, 65100));
        d.peers.push(PeerConfig {
            ttl: Some(255),
            ..PeerConfig::new("169.254.255.1".parse().unwrap(), 65530, 65100)
        });
        let (id, peers) = plan(&b, &[], Some(&d), &f).unwrap();
        assert_eq!(
            id,
            "192.0.2.77".parse::<Ipv4Addr>().unwrap(),
            "the provider's router id"
        );
        let addrs: Vec<String> = peers.iter().map(|p| p.address.to_string()).collect();
        assert_eq!(addrs, ["192.0.2.1", "2001:db8::1", "169.254.255.1"]);
        assert_eq!(peers[0].remote_as, 65000, "the configured peer wins");
        assert_eq!(peers[0].source, Some("10.55.0.11".parse().unwrap()));
        assert_eq!(
            peers[1].source, None,
            "an IPv4 source is not for an IPv6 peer"
        );
        let m = &peers[2];
        assert_eq!(
            (m.local_as, m.hold_time, m.source),
            (65100, 30, Some("10.55.0.11".parse().unwrap()))
        );
    }

    /// kube-vip v1.2.3 `FindMpbgpAddresses`: the next hop of the other family per mode; the
    /// session's own family is left to the session (its local address).
    #[test]
    fn mpbgp_next_hop_modes_pick_the_other_familys_next_hop() {
        let f = NodeFacts {
            source_interface: vec![
                "10.66.0.11".parse().unwrap(),
                "2001:db8:66::11".parse().unwrap(),
            ],
            source_ip_interface: vec![
                "10.77.0.11".parse().unwrap(),
                "2001:db8:77::11".parse().unwrap(),
            ],
            ..facts(&[("10.55.0.11", false), ("2001:db8:55::11", false)])
        };
        let nh = |extra: &[(&str, &str)], f: &NodeFacts| {
            let (_, p) = plan(&bgp(extra), &[], None, f).unwrap();
            (
                (p[0].next_hop_v4, p[0].next_hop_v6.map(|a| a.to_string())),
                (p[1].next_hop_v4.map(|a| a.to_string()), p[1].next_hop_v6),
            )
        };
        let v6 = |s: &str| Some(s.to_string());
        // Fixed: each family's own address; the session's family untouched.
        let fixed = [
            ("mpbgp_nexthop", "fixed"),
            ("mpbgp_ipv4", "198.51.100.4"),
            ("mpbgp_ipv6", "2001:db8:99::6"),
        ];
        assert_eq!(
            nh(&fixed, &f),
            ((None, v6("2001:db8:99::6")), (v6("198.51.100.4"), None))
        );
        // Fixed with one address: the other family falls back to vipr's own choice (the
        // source interface's address first).
        assert_eq!(
            nh(
                &[("mpbgp_nexthop", "fixed"), ("mpbgp_ipv6", "2001:db8:99::6")],
                &f
            )
            .1,
            (v6("10.66.0.11"), None)
        );
        // auto_sourceip: the interface holding bgp_sourceip.
        assert_eq!(
            nh(
                &[
                    ("mpbgp_nexthop", "auto_sourceip"),
                    ("bgp_sourceip", "10.77.0.11")
                ],
                &f
            ),
            ((None, v6("2001:db8:77::11")), (v6("10.77.0.11"), None))
        );
        // auto_sourceif: bgp_sourceif's; without an address of the family, none.
        let b = [("mpbgp_nexthop", "auto_sourceif"), ("bgp_sourceif", "eth1")];
        assert_eq!(
            nh(&b, &f),
            ((None, v6("2001:db8:66::11")), (v6("10.66.0.11"), None))
        );
        let only_v4 = NodeFacts {
            source_interface: vec!["10.66.0.11".parse().unwrap()],
            ..f.clone()
        };
        assert_eq!(nh(&b, &only_v4).0, (None, None));
        // A peer's own 6th field wins over the node's, part by part.
        let own = [
            ("mpbgp_nexthop", "fixed"),
            ("mpbgp_ipv4", "198.51.100.4"),
            ("mpbgp_ipv6", "2001:db8:99::6"),
            (
                "bgp_peers",
                "192.0.2.1:65000::false::mpbgp_ipv6=[2001:db8:98::6],[2001:db8::1]:65000::false",
            ),
        ];
        assert_eq!(
            nh(&own, &f),
            ((None, v6("2001:db8:98::6")), (v6("198.51.100.4"), None))
        );
    }
}
