//! BGP peers of the daemon: turns the configuration's static peers and a provider's
//! discovered peers (Equinix Metal metadata or node annotations, crate `providers`) into
//! speaker sessions, changing only what changed, and keeps multihop peers reachable with a
//! host route when only the default route covers them. Per peer also BFD (the 7th field of
//! `bgp_peers`, else `vipr_bfd`) and graceful restart, with the Restart State bit when this
//! process follows a restart in place (see `restart`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bgp::{GracefulRestart, PeerConfig, Speaker};
use providers::Discovery;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{BfdSpec, Config, PeerSpec};
use crate::dataplane::addr::AddrManager;
use crate::dataplane::routes::RouteManager;

/// Where discovered peers stand: `Known(None)` when no provider is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovered {
    /// The provider has not answered yet (readiness is false meanwhile).
    Pending,
    /// The provider's current answer (`None`: no provider configured).
    Known(Option<Arc<Discovery>>),
}

/// Follows the config and the provider, and applies the resulting peer set to the speaker.
/// `known` tells readiness whether the peer source has answered. At cancellation the host
/// routes vipr added are removed.
pub async fn run(
    mut cfg: watch::Receiver<Arc<Config>>,
    mut discovered: watch::Receiver<Discovered>,
    addrs: AddrManager,
    routes: RouteManager,
    speaker: Speaker,
    known: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let mut added_routes: BTreeSet<IpAddr> = BTreeSet::new();
    // Latched once: a later reload must not flip the Restart State bit (that would be a
    // configuration change and reset every session).
    let restarting = {
        let c = cfg.borrow();
        let max_age = Duration::from_secs(c.bgp.graceful_restart.unwrap_or(0) as u64);
        let r = crate::restart::take_marker(&c.state_dir, max_age);
        if r {
            info!("restarted in place: sessions open with the Restart State bit (RFC 4724)");
        }
        r
    };
    'outer: loop {
        let c = cfg.borrow_and_update().clone();
        let d = discovered.borrow_and_update().clone();
        match &d {
            Discovered::Pending => {
                known.send_replace(false);
            }
            Discovered::Known(disc) => {
                let mut retry = Duration::from_secs(1);
                loop {
                    match resolve(&c, disc.as_deref(), &addrs, restarting).await {
                        Ok(want) => {
                            sync_routes(&routes, disc.as_deref(), &mut added_routes).await;
                            apply_peers(&speaker, want).await;
                            known.send_replace(true);
                            break;
                        }
                        Err(e) => {
                            warn!(error = %e, retry_in = ?retry, "cannot configure BGP peers");
                            tokio::select! {
                                _ = cancel.cancelled() => break 'outer,
                                _ = tokio::time::sleep(retry) => {}
                                Ok(()) = cfg.changed() => continue 'outer,
                                Ok(()) = discovered.changed() => continue 'outer,
                            }
                            retry = (retry * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = cfg.changed() => if r.is_err() { break },
            // A provider that has stopped leaves its last answer in place.
            Ok(()) = discovered.changed() => {}
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
                .filter(|p| p.multihop)
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

/// Builds the speaker's peer configs: router id, source addresses and next hops come from the
/// node's interfaces when not configured. `restarting`: this process follows a restart in
/// place (the Restart State bit of graceful restart).
pub async fn resolve(
    c: &Config,
    discovered: Option<&Discovery>,
    addrs: &AddrManager,
    restarting: bool,
) -> Result<Vec<PeerConfig>, String> {
    // A default router id or next hop is never a VIP (one can be on the node without vipr's
    // marker: put there by hand or by an earlier kube-vip), and comes from a loopback
    // interface only when no other has one: `lo` holds VIPs and service addresses, which a
    // directly connected peer cannot use as next hop and other nodes may share.
    let vips: Vec<IpAddr> = c.configured_vips().map(|(ip, _)| ip).collect();
    let globals = addrs.global_addrs().await.map_err(|e| e.to_string())?;
    let pick = |v4: bool| {
        let usable = |want_lo: bool| {
            globals
                .iter()
                .find(|(ip, lo)| ip.is_ipv4() == v4 && *lo == want_lo && !vips.contains(ip))
                .map(|(ip, _)| *ip)
        };
        usable(false).or_else(|| usable(true))
    };
    let router_id = match (c.bgp.router_id, &c.bgp.router_interface) {
        (Some(id), _) => id,
        (None, _) if discovered.and_then(|d| d.router_id).is_some() => discovered
            .and_then(|d| d.router_id)
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        (None, Some(iface)) => addrs
            .ipv4_of(iface)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("bgp_routerinterface {iface} has no IPv4 address"))?,
        (None, None) => match pick(true) {
            Some(IpAddr::V4(a)) => a,
            _ => {
                return Err(
                    "no router id: set bgp_routerid (no IPv4 address found on the node)".into(),
                )
            }
        },
    };
    let source_addrs: Vec<IpAddr> = match (&c.bgp.source_ip, &c.bgp.source_if) {
        (Some(ip), _) => vec![*ip],
        (None, Some(iface)) => addrs.addrs_of(iface).await.map_err(|e| e.to_string())?,
        (None, None) => Vec::new(),
    };
    // Next hops for the other family than the session's: a global address of the node.
    let nh_iface = c.bgp.source_if.clone();
    let node_addrs = match &nh_iface {
        Some(i) => addrs.addrs_of(i).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let any_v6 = match node_addrs.iter().find(|a| a.is_ipv6()) {
        Some(IpAddr::V6(a)) => Some(*a),
        _ => match pick(false) {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        },
    };
    let any_v4 = match node_addrs.iter().find(|a| a.is_ipv4()) {
        Some(IpAddr::V4(a)) => Some(*a),
        _ => match pick(true) {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        },
    };
    // Static peers, then the provider's (which bring their own AS, router id and source).
    let mut specs: Vec<(PeerSpec, u32, Option<IpAddr>)> = c
        .bgp
        .peers
        .iter()
        .map(|s| (s.clone(), c.bgp.local_as, None))
        .collect();
    if let Some(d) = discovered {
        for p in &d.peers {
            if specs.iter().any(|(s, _, _)| s.address == p.address) {
                continue; // a static peer with the same address wins
            }
            let spec = PeerSpec {
                address: p.address,
                remote_as: p.remote_as,
                password: p.password.clone(),
                multihop: p.multihop,
                port: p.port,
                extra: Vec::new(),
                bfd: None,
            };
            specs.push((
                spec,
                d.local_as.unwrap_or(c.bgp.local_as),
                d.source_for(p.address),
            ));
        }
    }
    let mut out = Vec::new();
    for (spec, local_as, provider_source) in &specs {
        let mut p = PeerConfig::new(spec.address, spec.remote_as, *local_as, router_id);
        p.port = spec.port;
        p.password = spec.password.clone();
        p.ttl = spec.multihop.then_some(255);
        p.hold_time = c.bgp.hold_time;
        p.keepalive = Some(c.bgp.keepalive).filter(|k| *k > 0);
        p.source = provider_source.or_else(|| {
            source_addrs
                .iter()
                .copied()
                .find(|s| s.is_ipv4() == spec.address.is_ipv4())
        });
        if spec.address.is_ipv4() {
            p.next_hop_v6 = any_v6;
        } else {
            p.next_hop_v4 = any_v4;
        }
        // F bit: the data plane (VIPs on the node, IPVS) survives a restart of vipr.
        p.graceful_restart = c.bgp.graceful_restart.map(|t| GracefulRestart {
            restart_time: t,
            restarting,
            forwarding_preserved: true,
        });
        // Single-hop BFD: the peer's own setting, else vipr_bfd unless multihop.
        let bfd = spec.bfd.unwrap_or(if spec.multihop {
            BfdSpec::default()
        } else {
            c.bgp.bfd
        });
        p.bfd = bfd.to_config();
        p.validate().map_err(|e| e.to_string())?;
        out.push(p);
    }
    Ok(out)
}
