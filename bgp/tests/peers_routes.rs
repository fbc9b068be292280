//! The speaker's routes as real BIRD 2, FRR and GoBGP see them, read with each daemon's own
//! CLI: over iBGP and eBGP, an IPv4 /32 over an IPv4 session and an IPv6 /128 over an IPv6
//! session (next hop = the node's address), with MED, LOCAL_PREF (iBGP), communities and
//! large communities; a 4-octet local AS in the AS path (FRR, GoBGP, with FRR's default
//! enforce-first-as); an IPv6 /128 over an IPv4 session with `next_hop_v6` (BIRD, FRR).
//! Node 0 speaks iBGP (AS 65000), node 1 eBGP. Needs root; see `peers_common`.

mod peers_common;

use peers_common::*;
use testbed::{Bird, Frr, Gobgp, Lab};

#[test]
fn bird_receives_ibgp_and_ebgp_routes_of_both_families() {
    let lab = Lab::new(2);
    let v6_both = "ipv4 { import all; export none; }; ipv6 { import all; export none; };";
    let bird = Bird::start(
        &lab.router,
        &bird_conf(&[
            bird_proto("n0v4", 0, false, PEER_AS, ""),
            bird_proto("n0v6", 0, true, PEER_AS, ""),
            bird_proto_channels("n1v4", 1, false, EBGP_AS, "", v6_both),
            bird_proto("n1v6", 1, true, EBGP_AS, ""),
        ]),
    );
    let n0 = Node::start(&lab, 0);
    let n1 = Node::start(&lab, 1);
    for v6 in [false, true] {
        n0.add_peer(peer_cfg(router(v6), PEER_AS, PEER_AS));
        let mut c = peer_cfg(router(v6), PEER_AS, EBGP_AS);
        if !v6 {
            // IPv6 routes over the IPv4 session need an IPv6 next hop.
            c.next_hop_v6 = Some(Lab::node_v6(1));
        }
        n1.add_peer(c);
    }
    for p in ["n0v4", "n0v6", "n1v4", "n1v6"] {
        wait_bird_established(&bird, p);
    }

    // iBGP: empty AS path, our LOCAL_PREF.
    let r = wait_bird_route(&bird, &v4_prefix(0), "n0v4");
    check_bird_route(&r, node_addr(0, false), &[], true);
    assert_eq!(r.table, "master4");
    let r = wait_bird_route(&bird, &v6_prefix(0), "n0v6");
    check_bird_route(&r, node_addr(0, true), &[], true);
    assert_eq!(r.table, "master6");
    // iBGP over IPv4 without next_hop_v6: the IPv6 route is not sent there.
    assert!(bird
        .routes_for(&v6_prefix(0).to_string())
        .iter()
        .all(|r| r.from_protocol == "n0v6"));

    // eBGP: AS path [65001], no LOCAL_PREF on the wire (BIRD's default 100).
    let r = wait_bird_route(&bird, &v4_prefix(1), "n1v4");
    check_bird_route(&r, node_addr(1, false), &[EBGP_AS], false);
    let r = wait_bird_route(&bird, &v6_prefix(1), "n1v6");
    check_bird_route(&r, node_addr(1, true), &[EBGP_AS], false);
    // The IPv6 route over the IPv4 session, with the configured next hop.
    let r = wait_bird_route(&bird, &v6_prefix(1), "n1v4");
    check_bird_route(&r, node_addr(1, true), &[EBGP_AS], false);
    assert_eq!(r.table, "master6");

    // Withdraw one prefix: gone from every session, the other stays.
    n1.sp.withdraw([v6_prefix(1)]);
    wait_bird_no_route(&bird, &v6_prefix(1), "n1v6", CONVERGE);
    wait_bird_no_route(&bird, &v6_prefix(1), "n1v4", CONVERGE);
    assert!(!bird.routes_for(&v4_prefix(1).to_string()).is_empty());
    let info = n1.peer(router(false));
    assert_eq!(info.stats.prefixes_advertised, 1, "{info:?}");
}

#[test]
fn frr_receives_ibgp_and_four_octet_ebgp_routes_and_shows_our_capabilities() {
    let lab = Lab::new(2);
    let frr = Frr::start(
        &lab.router,
        &frr_conf(
            &[
                (0, false, PEER_AS, ""),
                (0, true, PEER_AS, ""),
                (1, false, EBGP_AS4, ""),
                (1, true, EBGP_AS4, ""),
            ],
            &[1],
        ),
    );
    let n0 = Node::start(&lab, 0);
    let n1 = Node::start(&lab, 1);
    for v6 in [false, true] {
        n0.add_peer(peer_cfg(router(v6), PEER_AS, PEER_AS));
        let mut c = peer_cfg(router(v6), PEER_AS, EBGP_AS4);
        if !v6 {
            c.next_hop_v6 = Some(Lab::node_v6(1));
        }
        n1.add_peer(c);
    }
    for (i, v6) in [(0, false), (0, true), (1, false), (1, true)] {
        wait_frr_established(&frr, node_addr(i, v6));
    }

    let p = wait_frr_path(&frr, &v4_prefix(0), node_addr(0, false));
    check_frr_path(&p, node_addr(0, false), &[], true);
    let p = wait_frr_path(&frr, &v6_prefix(0), node_addr(0, true));
    check_frr_path(&p, node_addr(0, true), &[], true);

    // eBGP from a 4-octet AS: FRR's enforce-first-as (default on) accepts the path.
    let as4 = [EBGP_AS4];
    let p = wait_frr_path(&frr, &v4_prefix(1), node_addr(1, false));
    check_frr_path(&p, node_addr(1, false), &as4, false);
    assert_eq!(p["bestpath"]["overall"], true, "{p:#}");
    let p = wait_frr_path(&frr, &v6_prefix(1), node_addr(1, true));
    check_frr_path(&p, node_addr(1, true), &as4, false);
    let p = wait_frr_path(&frr, &v6_prefix(1), node_addr(1, false));
    check_frr_path(&p, node_addr(1, true), &as4, false);

    // What FRR makes of our OPEN.
    let nb = frr_neighbor(&frr, node_addr(1, false));
    let caps = &nb["neighborCapabilities"];
    assert_eq!(nb["remoteAs"], EBGP_AS4, "{nb:#}");
    assert_eq!(nb["remoteRouterId"], "10.55.0.12", "{nb:#}");
    assert_eq!(caps["4byteAs"], "advertisedAndReceived", "{caps:#}");
    assert_eq!(caps["routeRefresh"], "advertisedAndReceivedNew", "{caps:#}");
    assert_eq!(caps["extendedMessage"], "advertisedAndReceived", "{caps:#}");
    // We do not offer graceful restart by default: FRR only advertises it.
    assert_eq!(caps["gracefulRestartCapability"], "advertised", "{caps:#}");
    for afi in ["ipv4Unicast", "ipv6Unicast"] {
        assert_eq!(
            caps["multiprotocolExtensions"][afi]["advertisedAndReceived"], true,
            "{caps:#}"
        );
    }
    assert_eq!(nb["bgpTimerHoldTimeMsecs"], 3000, "{nb:#}");
}

#[test]
fn gobgp_receives_ibgp_and_four_octet_ebgp_routes() {
    let lab = Lab::new(2);
    let gobgp = Gobgp::start(
        &lab.router,
        &gobgp_conf(&[
            (0, false, PEER_AS),
            (0, true, PEER_AS),
            (1, false, EBGP_AS4),
            (1, true, EBGP_AS4),
        ]),
    );
    let n0 = Node::start(&lab, 0);
    let n1 = Node::start(&lab, 1);
    for v6 in [false, true] {
        n0.add_peer(peer_cfg(router(v6), PEER_AS, PEER_AS));
        n1.add_peer(peer_cfg(router(v6), PEER_AS, EBGP_AS4));
    }
    for (n, v6) in [(&n0, false), (&n0, true), (&n1, false), (&n1, true)] {
        n.wait_established(router(v6));
        let a = node_addr(n.index, v6).to_string();
        let ok = testbed::wait_for(CONVERGE, || {
            (gobgp.neighbor_state(&a) == "established").then_some(())
        });
        assert!(
            ok.is_some(),
            "GoBGP neighbor {a}: {}",
            gobgp.cli(&["neighbor", &a])
        );
    }

    let p = wait_gobgp_path(&gobgp, &v4_prefix(0), node_addr(0, false));
    check_gobgp_path(&p, node_addr(0, false), &[], true);
    let p = wait_gobgp_path(&gobgp, &v6_prefix(0), node_addr(0, true));
    check_gobgp_path(&p, node_addr(0, true), &[], true);
    let p = wait_gobgp_path(&gobgp, &v4_prefix(1), node_addr(1, false));
    check_gobgp_path(&p, node_addr(1, false), &[EBGP_AS4], false);
    let p = wait_gobgp_path(&gobgp, &v6_prefix(1), node_addr(1, true));
    check_gobgp_path(&p, node_addr(1, true), &[EBGP_AS4], false);

    // GoBGP accepted our OPEN: our 4-octet AS and router id, 3 s hold, and our
    // capabilities (both multiprotocol families, route refresh, 4-octet AS; extended
    // messages, which GoBGP does not know, shows as an unknown capability).
    let nb = gobgp.cli_json(&["neighbor", &node_addr(1, false).to_string()]);
    let st = &nb["state"];
    assert_eq!(st["peer_asn"], EBGP_AS4, "{nb:#}");
    assert_eq!(st["router_id"], "10.55.0.12", "{nb:#}");
    assert_eq!(nb["timers"]["state"]["negotiated_hold_time"], 3, "{nb:#}");
    let caps: Vec<&str> = st["remote_cap"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["type_url"].as_str()).collect())
        .unwrap_or_default();
    let count = |name: &str| caps.iter().filter(|c| c.ends_with(name)).count();
    assert_eq!(count(".MultiProtocolCapability"), 2, "{caps:?}");
    assert_eq!(count(".RouteRefreshCapability"), 1, "{caps:?}");
    assert_eq!(count(".FourOctetASNCapability"), 1, "{caps:?}");
}
