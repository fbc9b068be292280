//! A 20,000-route table against real FRR and BIRD 2: FRR negotiates RFC 8654 extended
//! messages with us, so the table fits in a few 65535-octet UPDATEs that FRR accepts;
//! BIRD (extended messages off by default) gets 4096-octet UPDATEs. FRR's `clear bgp ...
//! soft in` sends a ROUTE-REFRESH that we answer with the whole table again;
//! `set_routes(empty)` withdraws everything. Needs root; see `peers_common`.

mod peers_common;

use std::net::Ipv4Addr;

use bgp::codec::MessageType;
use bgp::RouteTable;
use ipnet::{IpNet, Ipv4Net};
use peers_common::*;
use testbed::{wait_for, Bird, Frr, Lab};

const N: u32 = 20_000;

/// 10.200.0.0/32 onwards, `N` host routes.
fn table() -> Vec<IpNet> {
    (0..N)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0ac8_0000 + i), 32).unwrap()))
        .collect()
}

/// `pfxRcd` of FRR's neighbor in `show bgp ipv4 unicast summary json`.
fn frr_received(frr: &Frr, node: usize) -> Option<u64> {
    let v = frr.vtysh_json("show bgp ipv4 unicast summary json");
    v["peers"][node_addr(node, false).to_string()]["pfxRcd"].as_u64()
}

#[test]
fn frr_takes_a_large_table_in_extended_messages_and_refreshes_it() {
    let lab = Lab::new(1);
    let frr = Frr::start(&lab.router, &frr_conf(&[(0, false, EBGP_AS, "")], &[]));
    let n = Node::start(&lab, 0);
    n.sp.announce(table(), attrs());
    let total = N as u64 + 1; // plus the node's own IPv4 prefix
    n.add_peer(peer_cfg(router(false), PEER_AS, EBGP_AS));
    let got = wait_for(CONVERGE, || {
        (frr_received(&frr, 0) == Some(total)).then_some(())
    });
    assert!(
        got.is_some(),
        "FRR has {:?} of {total}",
        frr_received(&frr, 0)
    );
    let p = wait_frr_path(&frr, &table()[N as usize - 1], node_addr(0, false));
    check_frr_path(&p, node_addr(0, false), &[EBGP_AS], false);

    let info = n.peer(router(false));
    let neg = info.status.negotiated.clone().expect("established");
    assert!(neg.extended_messages, "{info:?}");
    // 5 octets per /32: about 100 kB, i.e. 2 full-size UPDATEs plus End-of-RIB.
    let updates = info.stats.sent(MessageType::Update);
    eprintln!("FRR: {total} routes in {updates} UPDATEs (End-of-RIB included)");
    assert!(updates <= 5, "{updates} UPDATEs: {info:?}");

    // ROUTE-REFRESH (RFC 2918): FRR asks, we send the table again.
    frr.vtysh(&format!(
        "clear bgp ipv4 unicast {} soft in",
        node_addr(0, false)
    ));
    let refreshed = wait_for(CONVERGE, || {
        let s = n.peer(router(false)).stats;
        (s.received(MessageType::RouteRefresh) == 1 && s.sent(MessageType::Update) >= updates + 2)
            .then_some(())
    });
    assert!(refreshed.is_some(), "{:?}", n.peer(router(false)));
    assert_eq!(frr_received(&frr, 0), Some(total));
    assert_eq!(n.peer(router(false)).stats.flaps, 0);

    // An empty desired table withdraws everything.
    n.sp.set_routes(RouteTable::new());
    let gone = wait_for(CONVERGE, || {
        (frr_received(&frr, 0) == Some(0)).then_some(())
    });
    assert!(gone.is_some(), "FRR still has {:?}", frr_received(&frr, 0));
}

#[test]
fn bird_takes_a_large_table_in_standard_size_updates() {
    let lab = Lab::new(1);
    let bird = Bird::start(
        &lab.router,
        &bird_conf(&[bird_proto("n0v4", 0, false, EBGP_AS, "")]),
    );
    let n = Node::start(&lab, 0);
    n.sp.announce(table(), attrs());
    n.add_peer(peer_cfg(router(false), PEER_AS, EBGP_AS));
    let total = N as u64 + 1;
    let count = || -> Option<u64> {
        // "Routes:         20001 imported, 0 exported, 20001 preferred"
        let out = bird.birdc("show protocols all n0v4");
        out.lines()
            .find_map(|l| l.trim().strip_prefix("Routes:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let got = wait_for(CONVERGE, || (count() == Some(total)).then_some(()));
    assert!(got.is_some(), "BIRD has {:?} of {total}", count());
    let r = wait_bird_route(&bird, &table()[0], "n0v4");
    check_bird_route(&r, node_addr(0, false), &[EBGP_AS], false);

    let info = n.peer(router(false));
    assert!(!info.status.negotiated.clone().unwrap().extended_messages);
    // At most about 810 /32s fit in 4096 octets.
    let updates = info.stats.sent(MessageType::Update);
    eprintln!("BIRD: {total} routes in {updates} UPDATEs (End-of-RIB included)");
    assert!(updates >= 25, "{updates} UPDATEs: {info:?}");

    n.sp.set_routes(RouteTable::new());
    let gone = wait_for(CONVERGE, || (count() == Some(0)).then_some(()));
    assert!(gone.is_some(), "BIRD still has {:?}", count());
}
