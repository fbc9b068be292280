//! BGP peers of the daemon: follows the BGP section (configured peers, defaults, router id,
//! source, listener), the control-plane and VIP sections (a VIP is never a router id) and
//! the provider's discovered peers (crate `providers`), and applies the resulting sessions
//! to the speaker, changing only what changed. Multihop peers from a provider are kept
//! reachable with a host route when only the default route covers them. Rack-aware peering:
//! configured peers with a node selector are kept only while this node's labels (its Node
//! object, followed here, or `vipr_node_labels`) match, and peers whose password is in a
//! Secret wait until it is read ([`select`]); a relabel is one more level-triggered pass.
//!
//! Split in three: [`select`] (pure) keeps the configured peers this node takes,
//! [`NodeFacts`] are read from the node's interfaces (async, netlink), and [`plan`] turns the
//! sections, the discovery and those facts into the router id and the peers (pure).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bgp::{PeerConfig, Speaker};
use providers::Discovery;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::selector::Labels;
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
    /// The addresses of the interfaces configured peers take their source from
    /// (`source_interface`), by name; a missing interface has none.
    pub peer_interfaces: BTreeMap<String, Vec<IpAddr>>,
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
        let mut peer_interfaces = BTreeMap::new();
        for i in bgp
            .peer_extras
            .values()
            .filter_map(|e| e.source_interface.as_ref())
        {
            let a = addrs.addrs_of(i).await.unwrap_or_default();
            peer_interfaces.insert(i.clone(), a);
        }
        Ok(NodeFacts {
            globals,
            router_interface_v4,
            source_interface,
            source_ip_interface,
            link_routers: Arc::default(),
            peer_interfaces,
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
        // A peer's own source interface, else the node-wide source.
        let own_if = bgp
            .peer_extras
            .get(&p.address)
            .and_then(|e| e.source_interface.as_ref())
            .and_then(|i| facts.peer_interfaces.get(i))
            .and_then(|a| a.iter().copied().find(|a| a.is_ipv4() == v4));
        let p = PeerConfig {
            source: p.source.or(own_if).or_else(|| configured_source(v4)),
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

/// A configured peer this node does not peer with, and why (`vipr status`; node labels
/// are not secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SelectedOut {
    /// The peer's address.
    pub address: IpAddr,
    /// Why: the label that does not match, or that the labels are not known.
    pub reason: String,
}

/// Rack-aware peering: the BGP section with only the configured peers whose node selector
/// matches this node's labels (`vipr_node_labels` when set, else `node`: the Node's labels,
/// `None` while not read) and whose `password_secret` has been read from `secrets` (the
/// password filled in); the others with the reason (never a password).
pub fn select(
    bgp: &BgpSettings,
    node: Option<&Labels>,
    secrets: &crate::kube::secret::Values,
) -> (BgpSettings, Vec<SelectedOut>) {
    let labels = bgp.node_labels.as_ref().or(node);
    let mut out = Vec::new();
    let mut kept = bgp.clone();
    kept.peers.retain_mut(|p| {
        let extras = bgp.peer_extras.get(&p.address);
        let why = match (extras.and_then(|e| e.node_selector.as_ref()), labels) {
            (None, _) => None,
            (Some(sel), Some(l)) => sel.mismatch(l),
            (Some(_), None) => Some(
                "this node's labels are not known yet (its Node object has not been read, or there is none)".into(),
            ),
        };
        let why = why.or_else(|| {
            let r = extras.and_then(|e| e.password_secret.as_ref())?;
            match secrets.get(&(r.namespace.clone(), r.name.clone())) {
                Some(Some(keys)) => match keys.get(&r.key) {
                    Some(v) => {
                        p.password = Some(v.clone());
                        None
                    }
                    None => Some(format!(
                        "the password's {r} is not in the Secret (or not text)"
                    )),
                },
                Some(None) => Some(format!("the password's {r}: no such Secret (yet)")),
                None => Some(format!("the password's {r} has not been read yet")),
            }
        });
        match why {
            None => true,
            Some(reason) => {
                out.push(SelectedOut {
                    address: p.address,
                    reason,
                });
                false
            }
        }
    });
    (kept, out)
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
    /// The API client, to follow this node's labels when a peer has a node selector and
    /// `vipr_node_labels` is not set.
    pub client: Option<::kube::Client>,
    /// This node's name.
    pub node: String,
}

/// Follows the sections and the provider and applies the resulting peer set, router id and
/// listener to the speaker. `known` tells readiness whether the peer source has answered;
/// `peer_addrs` gets the peers' addresses (never a Service's VIP).
/// At cancellation the host routes vipr added are removed.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut i: Inputs,
    addrs: AddrManager,
    routes: RouteManager,
    speaker: Speaker,
    known: watch::Sender<bool>,
    peer_addrs: watch::Sender<Arc<BTreeSet<IpAddr>>>,
    selected_out: watch::Sender<Arc<Vec<SelectedOut>>>,
    cancel: CancellationToken,
) {
    let mut added_routes: BTreeSet<IpAddr> = BTreeSet::new();
    // This node's labels, followed once a peer has a node selector.
    let (labels_tx, mut labels) = watch::channel::<crate::kube::node::Labels>(None);
    let mut following_labels = false;
    // The Secrets of peers' passwords, each followed once named.
    let (secrets_tx, mut secrets) = watch::channel(crate::kube::secret::Values::new());
    let mut followed: BTreeSet<(String, String)> = BTreeSet::new();
    'outer: loop {
        let bgp = i.bgp.borrow_and_update().clone();
        if bgp.has_selectors() && bgp.node_labels.is_none() && !following_labels {
            match &i.client {
                Some(c) => {
                    tokio::spawn(crate::kube::node::labels(
                        c.clone(),
                        i.node.clone(),
                        labels_tx.clone(),
                        cancel.child_token(),
                    ));
                    following_labels = true;
                }
                None => warn!("peers have a node_selector but there is no Kubernetes client: set vipr_node_labels"),
            }
        }
        for r in bgp.password_secrets() {
            let id = (r.namespace.clone(), r.name.clone());
            match (&i.client, followed.contains(&id)) {
                (_, true) => {}
                (Some(c), false) => {
                    tokio::spawn(crate::kube::secret::follow(
                        c.clone(),
                        id.0.clone(),
                        id.1.clone(),
                        secrets_tx.clone(),
                        cancel.child_token(),
                    ));
                    followed.insert(id);
                }
                (None, false) => {
                    warn!(secret = %r, "a peer's password is in a Secret but there is no Kubernetes client")
                }
            }
        }
        let node_labels = labels.borrow_and_update().clone();
        let values = secrets.borrow_and_update().clone();
        let (bgp, out) = select(&bgp, node_labels.as_deref(), &values);
        let bgp = Arc::new(bgp);
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
                        Ok((router_id, mut want)) => {
                            // A provider's peer at a selected-out address stays out too.
                            want.retain(|p| !out.iter().any(|o| o.address == p.address));
                            selected_out.send_if_modified(|cur| {
                                let changed = **cur != out;
                                if changed {
                                    for o in out.iter().filter(|o| !cur.contains(o)) {
                                        info!(peer = %o.address, reason = %o.reason, "peer not selected for this node");
                                    }
                                    *cur = Arc::new(out.clone());
                                }
                                changed
                            });
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
                                Ok(()) = labels.changed() => continue 'outer,
                                Ok(()) = secrets.changed() => continue 'outer,
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
            // Relabelled: level-triggered, only the peers whose selection changed move.
            Ok(()) = labels.changed() => {}
            // A password changed: that peer's session resets with it, no other.
            Ok(()) = secrets.changed() => {}
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
mod tests;
