//! The speaker's listener and per-peer socket options on it, against real BIRD 2 and FRR:
//! BIRD connecting to a dual-stack `[::]:179` listener over IPv4 and IPv6 with TCP MD5
//! keyed per peer (the IPv4 session's local address is plain IPv4, not `::ffff:a.b.c.d`,
//! so IPv4 routes get a next hop); GTSM (RFC 5082, `gtsm_hops = 1`) with BIRD `ttl security
//! on` and FRR `ttl-security hops 1`, the speaker connecting (node 0) and listening
//! (node 1). Needs root; see `peers_common`.

mod peers_common;

use bgp::{Secret, SpeakerConfig};
use peers_common::*;
use testbed::{Bird, Frr, Lab};

fn listening(lab: &Lab, i: usize) -> Node {
    Node::start_with(
        lab,
        i,
        SpeakerConfig {
            listen: Some("[::]:179".parse().unwrap()),
            ..SpeakerConfig::default()
        },
    )
}

#[test]
fn bird_connects_to_our_dual_stack_listener_with_md5() {
    const PASSWORD: &str = "listener-key";
    let lab = Lab::new(1);
    let pw = format!("password \"{PASSWORD}\";");
    let bird = Bird::start(
        &lab.router,
        &bird_conf(&[
            bird_proto_active("n0v4", 0, false, EBGP_AS, &pw),
            bird_proto_active("n0v6", 0, true, EBGP_AS, &pw),
        ]),
    );
    let n = listening(&lab, 0);
    for v6 in [false, true] {
        let mut c = peer_cfg(router(v6), PEER_AS, EBGP_AS);
        c.password = Some(Secret::new(PASSWORD));
        c.passive = true;
        n.add_peer(c);
    }
    for (p, v6) in [("n0v4", false), ("n0v6", true)] {
        wait_bird_established(&bird, p);
        n.wait_established(router(v6));
        let info = n.peer(router(v6));
        assert_eq!(info.stats.connect_attempts, 0, "passive: {info:?}");
        let local = info.status.local.expect("local address");
        assert_eq!(local.ip(), node_addr(0, v6), "{info:?}");
        assert_eq!(local.port(), 179, "{info:?}");
    }
    let r = wait_bird_route(&bird, &v4_prefix(0), "n0v4");
    check_bird_route(&r, node_addr(0, false), &[EBGP_AS], false);
    let r = wait_bird_route(&bird, &v6_prefix(0), "n0v6");
    check_bird_route(&r, node_addr(0, true), &[EBGP_AS], false);
    let info = n.peer(router(false));
    assert_eq!(
        (
            info.stats.prefixes_advertised,
            info.stats.prefixes_unsendable
        ),
        (1, 1),
        "the IPv4 route is sent, the IPv6 one has no IPv6 channel: {info:?}"
    );
}

/// Node 0 connects, node 1 listens; both with GTSM over IPv4 and IPv6.
fn gtsm_nodes(lab: &Lab) -> (Node, Node) {
    let n0 = Node::start(lab, 0);
    let n1 = listening(lab, 1);
    for v6 in [false, true] {
        let mut c = peer_cfg(router(v6), PEER_AS, EBGP_AS);
        c.gtsm_hops = Some(1);
        n0.add_peer(c);
        let mut c = peer_cfg(router(v6), PEER_AS, EBGP_AS);
        c.gtsm_hops = Some(1);
        c.passive = true;
        n1.add_peer(c);
    }
    (n0, n1)
}

#[test]
fn gtsm_with_bird_ttl_security_both_directions() {
    let lab = Lab::new(2);
    let ts = "ttl security on;";
    let bird = Bird::start(
        &lab.router,
        &bird_conf(&[
            bird_proto("n0v4", 0, false, EBGP_AS, ts),
            bird_proto("n0v6", 0, true, EBGP_AS, ts),
            bird_proto_active("n1v4", 1, false, EBGP_AS, ts),
            bird_proto_active("n1v6", 1, true, EBGP_AS, ts),
        ]),
    );
    let (_n0, _n1) = gtsm_nodes(&lab);
    for i in [0, 1] {
        let r = wait_bird_route(&bird, &v4_prefix(i), &format!("n{i}v4"));
        check_bird_route(&r, node_addr(i, false), &[EBGP_AS], false);
        let r = wait_bird_route(&bird, &v6_prefix(i), &format!("n{i}v6"));
        check_bird_route(&r, node_addr(i, true), &[EBGP_AS], false);
    }
}

#[test]
fn gtsm_with_frr_ttl_security_both_directions() {
    let lab = Lab::new(2);
    let ts = "ttl-security hops 1";
    let frr = Frr::start(
        &lab.router,
        &frr_conf_active(
            &[
                (0, false, EBGP_AS, ts),
                (0, true, EBGP_AS, ts),
                (1, false, EBGP_AS, ts),
                (1, true, EBGP_AS, ts),
            ],
            &[],
            &[1],
        ),
    );
    let (_n0, _n1) = gtsm_nodes(&lab);
    for i in [0, 1] {
        let p = wait_frr_path(&frr, &v4_prefix(i), node_addr(i, false));
        check_frr_path(&p, node_addr(i, false), &[EBGP_AS], false);
        let p = wait_frr_path(&frr, &v6_prefix(i), node_addr(i, true));
        check_frr_path(&p, node_addr(i, true), &[EBGP_AS], false);
    }
}
