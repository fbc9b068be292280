//! Prometheus exposition (prometheus-client): kube-vip's metric names for a familiar
//! dashboard plus `vipr_*` metrics (BGP sessions, BFD sessions, VIPs), rendered per scrape
//! from the speaker's and the reconciler's snapshots (nothing here holds state between
//! scrapes).

use std::sync::atomic::AtomicU64;

use bgp::codec::MessageType;
use bgp::{BfdState, PeerInfo, State};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::kube::watch::Allocations;
use crate::model::{HeldBack, VipState};

type Labels = Vec<(String, String)>;

fn l(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Renders every metric in the Prometheus text format.
pub fn render(
    peers: &[PeerInfo],
    vips: &[VipState],
    alloc: &Allocations,
    writes: &[(&str, &str, u64)],
    work: [u64; 3],
    healthy: Option<bool>,
) -> String {
    let mut reg = Registry::default();

    let session_info = Family::<Labels, Gauge>::default();
    let state = Family::<Labels, Gauge>::default();
    let routes = Family::<Labels, Gauge>::default();
    let unsendable = Family::<Labels, Gauge>::default();
    let updates = Family::<Labels, Counter>::default();
    let messages = Family::<Labels, Counter>::default();
    let flaps = Family::<Labels, Counter>::default();
    let notifications = Family::<Labels, Counter>::default();
    let received = Family::<Labels, Counter>::default();
    for p in peers {
        let peer = p.config.address.to_string();
        // kube-vip: one series per peer, labelled with the current state.
        session_info
            .get_or_create(&l(&[
                ("state", p.status.state.name().to_string()),
                ("peer", peer.clone()),
            ]))
            .set(1);
        let idx = State::ALL
            .iter()
            .position(|s| *s == p.status.state)
            .unwrap_or(0) as i64
            + 1;
        state.get_or_create(&l(&[("peer", peer.clone())])).set(idx);
        routes
            .get_or_create(&l(&[("peer", peer.clone())]))
            .set(p.stats.prefixes_advertised as i64);
        unsendable
            .get_or_create(&l(&[("peer", peer.clone())]))
            .set(p.stats.prefixes_unsendable as i64);
        updates
            .get_or_create(&l(&[("peer", peer.clone())]))
            .inc_by(p.stats.sent(MessageType::Update));
        flaps
            .get_or_create(&l(&[("peer", peer.clone())]))
            .inc_by(p.stats.flaps);
        received
            .get_or_create(&l(&[("peer", peer.clone())]))
            .inc_by(p.stats.prefixes_received);
        for t in MessageType::ALL {
            for (dir, v) in [("in", p.stats.received(t)), ("out", p.stats.sent(t))] {
                messages
                    .get_or_create(&l(&[
                        ("peer", peer.clone()),
                        ("direction", dir.into()),
                        ("type", t.name().into()),
                    ]))
                    .inc_by(v);
            }
        }
        for (dir, map) in [
            ("sent", &p.stats.notifications_sent),
            ("received", &p.stats.notifications_received),
        ] {
            for ((code, sub), n) in map {
                notifications
                    .get_or_create(&l(&[
                        ("peer", peer.clone()),
                        ("direction", dir.into()),
                        ("code", code.to_string()),
                        ("subcode", sub.to_string()),
                    ]))
                    .inc_by(*n);
            }
        }
    }
    reg.register(
        "kube_vip_manager_bgp_session_info",
        "BGP session per peer, labelled with its state",
        session_info,
    );
    reg.register(
        "vipr_bgp_session_state",
        "RFC 4271 state: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established",
        state,
    );
    reg.register(
        "vipr_bgp_routes_advertised",
        "Prefixes currently advertised to the peer",
        routes,
    );
    reg.register(
        "vipr_bgp_routes_unsendable",
        "Prefixes that cannot be sent to the peer (no usable next hop)",
        unsendable,
    );
    reg.register("vipr_bgp_updates_sent", "UPDATE messages sent", updates);
    reg.register(
        "vipr_bgp_messages",
        "BGP messages by direction and type",
        messages,
    );
    reg.register(
        "vipr_bgp_session_flaps",
        "Times an established session went down",
        flaps,
    );
    reg.register(
        "vipr_bgp_notifications",
        "NOTIFICATIONs by direction, code and subcode",
        notifications,
    );
    reg.register(
        "vipr_bgp_prefixes_received",
        "Prefixes announced by the peer (counted, not used)",
        received,
    );

    let on_node = Gauge::<i64>::default();
    on_node.set(vips.iter().filter(|v| v.interface.is_some()).count() as i64);
    reg.register(
        "vipr_vips_on_node",
        "VIP addresses vipr has on this node",
        on_node,
    );
    let advertised = Family::<Labels, Gauge>::default();
    for v in vips {
        advertised
            .get_or_create(&l(&[("address", v.address.to_string())]))
            .set(v.advertised as i64);
    }
    reg.register(
        "vipr_vip_advertised",
        "1 when the VIP is advertised from this node",
        advertised,
    );
    let leader = Gauge::<i64>::default();
    leader.set(vips.iter().any(|v| v.advertised) as i64);
    reg.register(
        "kube_vip_is_leader",
        "1 when this node serves at least one VIP",
        leader,
    );
    if let Some(h) = healthy {
        let g = Gauge::<i64>::default();
        g.set(h as i64);
        reg.register(
            "vipr_control_plane_healthy",
            "Result of the control-plane health gate",
            g,
        );
    }
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&l(&[("version", env!("CARGO_PKG_VERSION").to_string())]))
        .set(1);
    reg.register("vipr_build_info", "vipr version", info);

    register_bfd(&mut reg, peers);
    register_allocations(&mut reg, vips, alloc);
    let api_writes = Family::<Labels, Counter>::default();
    for (kind, result, n) in writes.iter().filter(|w| w.2 > 0) {
        api_writes
            .get_or_create(&l(&[
                ("kind", kind.to_string()),
                ("result", result.to_string()),
            ]))
            .inc_by(*n);
    }
    for (name, help, n) in [
        (
            "vipr_services_planned",
            "Services the allocator planned (work per event: follows what changed)",
            work[0],
        ),
        (
            "vipr_services_derived",
            "Services whose VIPs, status and writes were derived again",
            work[1],
        ),
        (
            "vipr_vips_decided",
            "VIPs the reconciler decided again",
            work[2],
        ),
    ] {
        let c = Counter::<u64>::default();
        c.inc_by(n);
        reg.register(name, help, c);
    }
    reg.register(
        "vipr_api_writes",
        "Writes to the Kubernetes API by kind (status, claim, holders, release, annotate, event) and result (ok, conflict: another node was first or the object is gone, failed, dropped: no longer needed before it was sent)",
        api_writes,
    );

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

/// Service addresses: refused (by reason), Services waiting for one, pools' use.
fn register_allocations(reg: &mut Registry, vips: &[VipState], alloc: &Allocations) {
    let refused = Family::<Labels, Gauge>::default();
    for v in vips {
        if let Some(HeldBack::Refused(r)) = &v.held_back {
            refused
                .get_or_create(&l(&[("reason", r.label().to_string())]))
                .inc();
        }
    }
    reg.register(
        "vipr_service_addresses_refused",
        "Service addresses refused on this node, by reason",
        refused,
    );
    let pending = Gauge::<i64>::default();
    pending.set(alloc.pending.len() as i64);
    reg.register(
        "vipr_services_pending",
        "LoadBalancer Services without an address",
        pending,
    );
    let size = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let used = Family::<Labels, Gauge>::default();
    for p in &alloc.pools {
        let pool = l(&[("pool", p.name.clone())]);
        size.get_or_create(&pool).set(p.size as f64);
        used.get_or_create(&pool).set(p.used as i64);
    }
    reg.register("vipr_pool_addresses", "Addresses in the pool", size);
    reg.register(
        "vipr_pool_addresses_in_use",
        "Addresses of the pool claimed by Services",
        used,
    );
}

/// BFD per peer (RFC 5880): state, intervals, flaps.
fn register_bfd(reg: &mut Registry, peers: &[PeerInfo]) {
    let state = Family::<Labels, Gauge>::default();
    let info = Family::<Labels, Gauge>::default();
    let tx = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let detect = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let flaps = Family::<Labels, Counter>::default();
    let failures = Family::<Labels, Counter>::default();
    for p in peers {
        let Some(b) = &p.status.bfd else { continue };
        let peer = p.config.address.to_string();
        let idx = BfdState::ALL
            .iter()
            .position(|s| *s == b.state)
            .unwrap_or(0) as i64
            + 1;
        state.get_or_create(&l(&[("peer", peer.clone())])).set(idx);
        // No discriminators: with one, a host on the link can forge a BFD Down.
        info.get_or_create(&l(&[
            ("peer", peer.clone()),
            ("state", b.state.name().to_string()),
        ]))
        .set(1);
        tx.get_or_create(&l(&[("peer", peer.clone())]))
            .set(b.tx_interval.map(|d| d.as_secs_f64()).unwrap_or(0.0));
        detect
            .get_or_create(&l(&[("peer", peer.clone())]))
            .set(b.detect_time.map(|d| d.as_secs_f64()).unwrap_or(0.0));
        flaps
            .get_or_create(&l(&[("peer", peer.clone())]))
            .inc_by(b.flaps);
        failures
            .get_or_create(&l(&[("peer", peer)]))
            .inc_by(b.failures);
    }
    reg.register(
        "vipr_bfd_session_state",
        "RFC 5880 BFD state: 1 AdminDown, 2 Down, 3 Init, 4 Up",
        state,
    );
    reg.register(
        "vipr_bfd_session_info",
        "BFD session per peer, labelled with its state",
        info,
    );
    reg.register(
        "vipr_bfd_tx_interval_seconds",
        "BFD transmission interval in use, before jitter",
        tx,
    );
    reg.register(
        "vipr_bfd_detect_time_seconds",
        "BFD Detection Time in use",
        detect,
    );
    reg.register(
        "vipr_bfd_session_flaps",
        "BFD Up to Down transitions",
        flaps,
    );
    reg.register(
        "vipr_bfd_session_failures",
        "BFD failures (Up to Down other than the peer's AdminDown); each closed the BGP session",
        failures,
    );
}
