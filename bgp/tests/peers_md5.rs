//! TCP MD5 signatures (RFC 2385, `PeerConfig::password`) against real BIRD 2 and FRR: with
//! the right password the sessions (IPv4 and IPv6) establish and the routes arrive; with a
//! wrong one the peer's kernel drops our segments, and for several seconds neither the
//! speaker nor the daemon ever reaches Established. Node 0 has the right password, node 1
//! a wrong one. (MD5 on the speaker's listener: `peers_passive`.) Needs root; see
//! `peers_common`.

mod peers_common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bgp::{Secret, State};
use peers_common::*;
use testbed::{Bird, Frr, Lab};

const PASSWORD: &str = "s3cret-vipr";
/// How long the wrong-password session is watched.
const NEVER_UP_FOR: Duration = Duration::from_secs(5);

/// Node 0 peers over IPv4 and IPv6 with the right password, node 1 over IPv4 with a wrong one.
fn start_nodes(lab: &Lab) -> (Node, Node) {
    let n0 = Node::start(lab, 0);
    let n1 = Node::start(lab, 1);
    for v6 in [false, true] {
        let mut c = peer_cfg(router(v6), PEER_AS, EBGP_AS);
        c.password = Some(Secret::new(PASSWORD));
        n0.add_peer(c);
    }
    let mut c = peer_cfg(router(false), PEER_AS, EBGP_AS);
    c.password = Some(Secret::new("not-the-password"));
    n1.add_peer(c);
    (n0, n1)
}

/// The router namespace's count of TCP segments dropped for a wrong MD5 signature.
fn md5_failures(lab: &Lab) -> u64 {
    let out = lab.router.sh("nstat -saz TcpExtTCPMD5Failure");
    out.lines()
        .find_map(|l| l.strip_prefix("TcpExtTCPMD5Failure"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no TcpExtTCPMD5Failure in:\n{out}"))
}

/// Polls for [`NEVER_UP_FOR`] that neither the speaker (state, `established` counter) nor
/// the daemon (`peer_state`) shows the wrong-password session Established, and that the
/// router's kernel dropped segments for their MD5 signature.
fn assert_never_established(lab: &Lab, n1: &Node, peer_state: impl Fn() -> String) {
    let t0 = Instant::now();
    let mut daemon_states = std::collections::BTreeSet::new();
    while t0.elapsed() < NEVER_UP_FOR {
        let info = n1.peer(router(false));
        assert_ne!(info.status.state, State::Established, "{info:?}");
        assert_eq!(info.stats.established, 0, "{info:?}");
        let st = peer_state();
        assert_ne!(st.to_ascii_lowercase(), "established");
        daemon_states.insert(st);
        std::thread::sleep(Duration::from_millis(100));
    }
    let info = n1.peer(router(false));
    assert!(info.stats.connect_attempts >= 1, "{info:?}");
    assert!(
        md5_failures(lab) > 0,
        "the router saw no segment with a bad MD5 signature"
    );
    assert_eq!(info.stats.established, 0, "{info:?}");
    eprintln!(
        "wrong password: speaker {} ({:?}), daemon states seen {daemon_states:?}",
        info.status.state, info.status.last_error
    );
}

#[test]
fn bird_md5_right_password_establishes_wrong_never_does() {
    let lab = Lab::new(2);
    let pw = format!("password \"{PASSWORD}\";");
    let bird = Bird::start(
        &lab.router,
        &bird_conf(&[
            bird_proto("n0v4", 0, false, EBGP_AS, &pw),
            bird_proto("n0v6", 0, true, EBGP_AS, &pw),
            bird_proto("n1v4", 1, false, EBGP_AS, &pw),
        ]),
    );
    let (n0, n1) = start_nodes(&lab);
    wait_bird_established(&bird, "n0v4");
    wait_bird_established(&bird, "n0v6");
    n0.wait_established(router(false));
    let r = wait_bird_route(&bird, &v4_prefix(0), "n0v4");
    check_bird_route(&r, node_addr(0, false), &[EBGP_AS], false);
    let r = wait_bird_route(&bird, &v6_prefix(0), "n0v6");
    check_bird_route(&r, node_addr(0, true), &[EBGP_AS], false);

    assert_never_established(&lab, &n1, || bird.protocol_state("n1v4"));
    assert!(bird.routes_for(&v4_prefix(1).to_string()).is_empty());
}

#[test]
fn frr_md5_right_password_establishes_wrong_never_does() {
    let lab = Lab::new(2);
    let pw = format!("password {PASSWORD}");
    let frr = Frr::start(
        &lab.router,
        &frr_conf(
            &[
                (0, false, EBGP_AS, &pw),
                (0, true, EBGP_AS, &pw),
                (1, false, EBGP_AS, &pw),
            ],
            &[],
        ),
    );
    let (n0, n1) = start_nodes(&lab);
    for v6 in [false, true] {
        wait_frr_established(&frr, node_addr(0, v6));
        n0.wait_established(router(v6));
    }
    let p = wait_frr_path(&frr, &v4_prefix(0), node_addr(0, false));
    check_frr_path(&p, node_addr(0, false), &[EBGP_AS], false);
    let p = wait_frr_path(&frr, &v6_prefix(0), node_addr(0, true));
    check_frr_path(&p, node_addr(0, true), &[EBGP_AS], false);

    let n1_addr: IpAddr = node_addr(1, false);
    assert_never_established(&lab, &n1, || frr.neighbor_state(&n1_addr.to_string()));
    assert!(frr_path(&frr, &v4_prefix(1), n1_addr).is_none());
}
