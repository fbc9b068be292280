//! Prometheus exposition (prometheus-client, OpenMetrics text): kube-vip v1.2.3's series
//! with its names, label names and label values, so that a dashboard or alert written for
//! kube-vip keeps working ([`register_kube_vip`]), plus `vipr_*` metrics (BGP sessions, BFD
//! sessions, VIPs). Rendered per scrape from the speaker's, the reconciler's, the
//! elections' and the writer's snapshots: nothing here holds state between scrapes (the
//! counters live where their events happen).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

use bgp::codec::MessageType;
use bgp::{BfdState, PeerInfo, State};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::kube::watch::Allocations;
use crate::model::{HeldBack, LeaseEntry, VipSource, VipState};

type Labels = Vec<(String, String)>;

fn l(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// What one scrape shows besides the speaker's peers.
#[derive(Clone, Copy)]
pub struct Scrape<'a> {
    /// This node's name (kube-vip's `node` label).
    pub node: &'a str,
    /// The reconciler's VIPs.
    pub vips: &'a [VipState],
    /// Services waiting for an address, pools' use.
    pub alloc: &'a Allocations,
    /// API writes, `(kind, result, count)`.
    pub writes: &'a [(&'a str, &'a str, u64)],
    /// Failed status writes, `(namespace, name, count)`.
    pub status_failures: &'a [(String, String, u64)],
    /// The Services' Leases contended (ARP mode), by name.
    pub leases: &'a [(String, LeaseEntry)],
    /// `[planned, derived, decided]`.
    pub work: [u64; 3],
    /// The control-plane health gate's result, when there is one.
    pub healthy: Option<bool>,
}

/// Renders every metric in the OpenMetrics text format.
pub fn render(peers: &[PeerInfo], s: &Scrape) -> String {
    let Scrape {
        vips,
        alloc,
        writes,
        work,
        healthy,
        ..
    } = *s;
    let mut reg = Registry::default();
    register_kube_vip(&mut reg, peers, s);

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

/// GoBGP v4's names of the session states (`api.PeerState_SessionState`), which kube-vip
/// writes in `kube_vip_manager_bgp_session_info{state}`; `SESSION_STATE_UNSPECIFIED` is
/// written too, and is never 1.
const GOBGP_STATES: [(&str, Option<State>); 7] = [
    ("SESSION_STATE_UNSPECIFIED", None),
    ("SESSION_STATE_IDLE", Some(State::Idle)),
    ("SESSION_STATE_CONNECT", Some(State::Connect)),
    ("SESSION_STATE_ACTIVE", Some(State::Active)),
    ("SESSION_STATE_OPENSENT", Some(State::OpenSent)),
    ("SESSION_STATE_OPENCONFIRM", Some(State::OpenConfirm)),
    ("SESSION_STATE_ESTABLISHED", Some(State::Established)),
];

/// The `peer` label as kube-vip writes it: `net.JoinHostPort(address, "179")`, port 179
/// whatever port the session uses (`192.0.2.1:179`, `[2001:db8::1]:179`).
fn kube_vip_peer(p: &PeerInfo) -> String {
    SocketAddr::new(p.config.address, 179).to_string()
}

/// kube-vip v1.2.3's series (its `pkg/metrics/prometheus.go`), each with kube-vip's type,
/// label names and label values, and vipr's closest honest meaning. Labels are written in
/// name order, as kube-vip's Go client writes them. Series vipr has no source for are left
/// out rather than faked (see the README's metrics table).
fn register_kube_vip(reg: &mut Registry, peers: &[PeerInfo], s: &Scrape) {
    // One series per peer and state, 1 for the current state and 0 for the others.
    let session = Family::<Labels, Gauge>::default();
    for p in peers {
        let peer = kube_vip_peer(p);
        for (name, state) in GOBGP_STATES {
            session
                .get_or_create(&l(&[("peer", peer.clone()), ("state", name.into())]))
                .set(i64::from(state == Some(p.status.state)));
        }
    }
    reg.register(
        "kube_vip_manager_bgp_session_info",
        "Display state of session by setting metric for label value with current state to 1",
        session,
    );

    // The Services' Leases this node contends for; a Lease it has not won shows 0.
    let leader = Family::<Labels, Gauge>::default();
    let transitions = Family::<Labels, Counter>::default();
    let loops = Family::<Labels, Gauge>::default();
    for (lease, e) in s.leases {
        leader
            .get_or_create(&l(&[
                ("lease_name", lease.clone()),
                ("node", s.node.to_string()),
            ]))
            .set(i64::from(e.held));
        if e.won > 0 {
            transitions
                .get_or_create(&l(&[("lease_name", lease.clone())]))
                .inc_by(e.won);
        }
        if let Some((ns, name)) = &e.service {
            loops
                .get_or_create(&l(&[("name", name.clone()), ("namespace", ns.clone())]))
                .set(1);
        }
    }
    reg.register(
        "kube_vip_is_leader",
        "1 if this node currently holds the lease (the Services' Leases this node contends for)",
        leader,
    );
    reg.register(
        "kube_vip_leader_election_transitions",
        "Times this node became the holder of the lease",
        transitions,
    );
    reg.register(
        "kube_vip_service_election_loops",
        "Per-Service Lease elections this node runs (one per Service it may serve)",
        loops,
    );

    // Services whose addresses vipr handles on this node (served or held back), by
    // namespace; a namespace without one has no series.
    let mut per_ns: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for v in s.vips {
        for src in &v.sources {
            if let VipSource::Service { namespace, name } = src {
                per_ns.entry(namespace).or_default().insert(name);
            }
        }
    }
    let active = Family::<Labels, Gauge>::default();
    for (ns, names) in per_ns {
        active
            .get_or_create(&l(&[("namespace", ns.to_string())]))
            .set(names.len() as i64);
    }
    reg.register(
        "kube_vip_active_services",
        "How many LB services are currently managed",
        active,
    );

    let errors = Family::<Labels, Counter>::default();
    for (ns, name, n) in s.status_failures {
        errors
            .get_or_create(&l(&[
                ("name", name.clone()),
                ("namespace", ns.clone()),
                ("reason", "update_status".into()),
            ]))
            .inc_by(*n);
    }
    reg.register(
        "kube_vip_service_reconcile_errors",
        "Count reconcile failures (vipr: status writes that failed, reason update_status)",
        errors,
    );

    let build = Family::<Labels, Gauge>::default();
    build
        .get_or_create(&l(&[
            ("build", option_env!("VIPR_BUILD").unwrap_or("").to_string()),
            ("node", s.node.to_string()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ]))
        .set(1);
    reg.register(
        "kube_vip_build_info",
        "Constant 1; track version skew across nodes",
        build,
    );
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bgp::{PeerConfig, PeerStatus, Stats};

    use super::*;
    use crate::model::LeaseMetrics;

    fn peer(addr: &str, state: State) -> PeerInfo {
        let mut status = PeerStatus::idle();
        status.state = state;
        PeerInfo {
            config: Arc::new(PeerConfig::new(addr.parse().unwrap(), 65000, 65001)),
            status,
            stats: Stats::default(),
        }
    }

    fn vip(ip: &str, sources: Vec<VipSource>) -> VipState {
        VipState {
            address: ip.parse().unwrap(),
            sources,
            interface: None,
            advertised: false,
            attribute_sets: Vec::new(),
            held_back: None,
        }
    }

    fn svc(ns: &str, name: &str) -> VipSource {
        VipSource::Service {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn scrape<'a>(
        vips: &'a [VipState],
        alloc: &'a Allocations,
        failures: &'a [(String, String, u64)],
        leases: &'a [(String, LeaseEntry)],
    ) -> Scrape<'a> {
        Scrape {
            node: "node-1",
            vips,
            alloc,
            writes: &[],
            status_failures: failures,
            leases,
            work: [0; 3],
            healthy: None,
        }
    }

    /// Lines of the text that start with `name` followed by `{` or a space.
    fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
            })
            .collect()
    }

    #[test]
    fn bgp_session_info_is_one_series_per_gobgp_state_with_host_port_peers() {
        let peers = [
            peer("192.0.2.1", State::Established),
            peer("2001:db8::1", State::Active),
        ];
        let alloc = Allocations::default();
        let m = render(&peers, &scrape(&[], &alloc, &[], &[]));
        let s = series(&m, "kube_vip_manager_bgp_session_info");
        assert_eq!(s.len(), 14, "{m}");
        for line in [
            r#"kube_vip_manager_bgp_session_info{peer="192.0.2.1:179",state="SESSION_STATE_ESTABLISHED"} 1"#,
            r#"kube_vip_manager_bgp_session_info{peer="192.0.2.1:179",state="SESSION_STATE_UNSPECIFIED"} 0"#,
            r#"kube_vip_manager_bgp_session_info{peer="192.0.2.1:179",state="SESSION_STATE_IDLE"} 0"#,
            r#"kube_vip_manager_bgp_session_info{peer="192.0.2.1:179",state="SESSION_STATE_OPENCONFIRM"} 0"#,
            r#"kube_vip_manager_bgp_session_info{peer="[2001:db8::1]:179",state="SESSION_STATE_ACTIVE"} 1"#,
            r#"kube_vip_manager_bgp_session_info{peer="[2001:db8::1]:179",state="SESSION_STATE_ESTABLISHED"} 0"#,
            "# TYPE kube_vip_manager_bgp_session_info gauge",
        ] {
            assert!(m.lines().any(|l| l == line), "{line} missing from\n{m}");
        }
        // Exactly one state is 1 per peer.
        assert_eq!(s.iter().filter(|l| l.ends_with(" 1")).count(), 2, "{m}");
        check_exposition(&m);
    }

    #[test]
    fn lease_metrics_count_wins_and_forget_leases_no_longer_contended() {
        let l = LeaseMetrics::default();
        let ns = || Some(("default".to_string(), "web".to_string()));
        l.update([("kubevip-default.web".to_string(), ns(), false)]);
        l.update([("kubevip-default.web".to_string(), ns(), true)]);
        l.update([("kubevip-default.web".to_string(), ns(), true)]);
        l.update([("kubevip-default.web".to_string(), ns(), false)]);
        l.update([("kubevip-default.web".to_string(), ns(), true)]);
        let snap = l.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(
            snap[0].1,
            LeaseEntry {
                service: ns(),
                held: true,
                won: 2
            }
        );
        l.update([]);
        assert!(l.snapshot().is_empty());
    }

    #[test]
    fn is_leader_transitions_and_loops_carry_kube_vips_labels() {
        let leases = [
            (
                "plndr-svcs-lock".to_string(),
                LeaseEntry {
                    service: None,
                    held: true,
                    won: 3,
                },
            ),
            (
                "kubevip-shop.web".to_string(),
                LeaseEntry {
                    service: Some(("shop".into(), "web".into())),
                    held: false,
                    won: 0,
                },
            ),
        ];
        let alloc = Allocations::default();
        let m = render(&[], &scrape(&[], &alloc, &[], &leases));
        for line in [
            r#"kube_vip_is_leader{lease_name="plndr-svcs-lock",node="node-1"} 1"#,
            r#"kube_vip_is_leader{lease_name="kubevip-shop.web",node="node-1"} 0"#,
            r#"kube_vip_leader_election_transitions_total{lease_name="plndr-svcs-lock"} 3"#,
            r#"kube_vip_service_election_loops{name="web",namespace="shop"} 1"#,
            "# TYPE kube_vip_is_leader gauge",
            "# TYPE kube_vip_leader_election_transitions counter",
            "# TYPE kube_vip_service_election_loops gauge",
        ] {
            assert!(m.lines().any(|l| l == line), "{line} missing from\n{m}");
        }
        // A Lease never won has no transitions series (kube-vip creates it on a win).
        assert_eq!(
            series(&m, "kube_vip_leader_election_transitions_total").len(),
            1,
            "{m}"
        );
        // The old meaning (serving any VIP, no labels) is gone.
        assert!(
            !m.lines().any(|l| l.starts_with("kube_vip_is_leader ")),
            "{m}"
        );
        check_exposition(&m);
    }

    #[test]
    fn active_services_errors_and_build_info() {
        let vips = [
            vip("192.0.2.10", vec![svc("shop", "web"), svc("shop", "api")]),
            vip("192.0.2.11", vec![svc("shop", "web")]),
            vip("2001:db8::10", vec![svc("shop", "web")]),
            vip("192.0.2.12", vec![svc("infra", "dns")]),
            vip("192.0.2.13", vec![VipSource::ControlPlane]),
            vip("192.0.2.14", vec![VipSource::Static]),
        ];
        let failures = [("shop".to_string(), "web".to_string(), 4)];
        let alloc = Allocations::default();
        let m = render(&[], &scrape(&vips, &alloc, &failures, &[]));
        for line in [
            r#"kube_vip_active_services{namespace="shop"} 2"#,
            r#"kube_vip_active_services{namespace="infra"} 1"#,
            r#"kube_vip_service_reconcile_errors_total{name="web",namespace="shop",reason="update_status"} 4"#,
            "# TYPE kube_vip_service_reconcile_errors counter",
            "# TYPE kube_vip_build_info gauge",
            "# TYPE kube_vip_active_services gauge",
        ] {
            assert!(m.lines().any(|l| l == line), "{line} missing from\n{m}");
        }
        assert_eq!(series(&m, "kube_vip_active_services").len(), 2, "{m}");
        let build = series(&m, "kube_vip_build_info");
        assert_eq!(build.len(), 1, "{m}");
        assert!(build[0].contains(r#"node="node-1""#), "{m}");
        assert!(
            build[0].contains(&format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))),
            "{m}"
        );
        assert!(
            build[0].starts_with(r#"kube_vip_build_info{build=""#),
            "{m}"
        );
        assert!(build[0].ends_with(" 1"), "{m}");
        check_exposition(&m);
    }

    /// The whole output, with every kind of family filled, is valid OpenMetrics text.
    #[test]
    fn the_exposition_parses() {
        let peers = [
            crate::status::tests::peer_with_bfd(),
            peer("2001:db8::1", State::OpenSent),
        ];
        let vips = [vip("192.0.2.10", vec![svc("shop", "web\"x\\y")])];
        let failures = [("shop".to_string(), "web".to_string(), 1)];
        let leases = [(
            "plndr-svcs-lock".to_string(),
            LeaseEntry {
                service: None,
                held: true,
                won: 1,
            },
        )];
        let alloc = Allocations::default();
        let mut s = scrape(&vips, &alloc, &failures, &leases);
        s.writes = &[("status", "failed", 1)];
        s.healthy = Some(true);
        check_exposition(&render(&peers, &s));
    }

    fn is_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// Parses `{a="x",b="y"}` (escapes `\\`, `\"`, `\n`); returns the label names and the
    /// rest of the line.
    fn labels(s: &str) -> (Vec<String>, &str) {
        let Some(mut r) = s.strip_prefix('{') else {
            return (Vec::new(), s);
        };
        let mut names = Vec::new();
        loop {
            if let Some(rest) = r.strip_prefix('}') {
                return (names, rest);
            }
            let eq = r.find('=').expect("a label without =");
            let name = &r[..eq];
            assert!(
                is_name(name) && !name.starts_with("__"),
                "label name {name:?}"
            );
            names.push(name.to_string());
            r = r[eq + 1..]
                .strip_prefix('"')
                .expect("an unquoted label value");
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next().expect("an unterminated label value") {
                    (_, '\\') => {
                        let (_, e) = chars.next().expect("a dangling escape");
                        assert!(matches!(e, '\\' | '"' | 'n'), "escape \\{e}");
                    }
                    (i, '"') => break i,
                    (_, c) => assert!(c != '\n'),
                }
            };
            r = &r[end + 1..];
            r = r.strip_prefix(',').unwrap_or(r);
        }
    }

    /// A careful check of the OpenMetrics 1.0 text format as prometheus-client writes it:
    /// `# TYPE` and `# HELP` once per family, before its samples; sample names are the
    /// family's name (counters `_total`, info `_info`); labels well formed and not repeated;
    /// no series twice; values are numbers; `# EOF` last, once.
    fn check_exposition(text: &str) {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last(), Some(&"# EOF"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        let mut families: BTreeMap<String, String> = BTreeMap::new();
        let mut helped = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut current: Option<(String, String)> = None;
        for line in &lines[..lines.len() - 1] {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let kind = parts.next().unwrap();
                let name = parts.next().expect(line).to_string();
                assert!(is_name(&name), "{line}");
                match kind {
                    "TYPE" => {
                        let t = parts.next().expect(line).to_string();
                        assert!(
                            [
                                "counter",
                                "gauge",
                                "info",
                                "histogram",
                                "summary",
                                "unknown"
                            ]
                            .contains(&t.as_str()),
                            "{line}"
                        );
                        if t == "counter" {
                            assert!(!name.ends_with("_total"), "{line}");
                        }
                        assert!(
                            families.insert(name.clone(), t.clone()).is_none(),
                            "family twice: {line}"
                        );
                        current = Some((name, t));
                    }
                    "HELP" => {
                        assert!(helped.insert(name.clone()), "HELP twice: {line}");
                        assert!(!parts.next().unwrap_or("").contains('\n'));
                    }
                    "UNIT" => {}
                    _ => panic!("unknown comment {line}"),
                }
                continue;
            }
            let (family, t) = current.as_ref().expect("a sample before any # TYPE");
            let end = line.find(['{', ' ']).expect(line);
            let name = &line[..end];
            let want = match t.as_str() {
                "counter" => format!("{family}_total"),
                "info" => format!("{family}_info"),
                _ => family.clone(),
            };
            assert_eq!(name, want, "sample outside its family: {line}");
            let (names, rest) = labels(&line[end..]);
            let unique: BTreeSet<&String> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "label repeated: {line}");
            let value = rest.strip_prefix(' ').expect(line);
            let value = value.split(' ').next().unwrap();
            assert!(
                value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value),
                "value {value:?}: {line}"
            );
            if t == "counter" {
                assert!(value.parse::<f64>().unwrap() >= 0.0, "{line}");
            }
            let key = &line[..line.len() - rest.len()];
            assert!(seen.insert(key.to_string()), "series twice: {line}");
        }
        for f in families.keys() {
            assert!(helped.contains(f), "no HELP for {f}");
        }
    }
}
