//! A router that stops reading (TCP zero window) while the speaker has a big table to send.
//!
//! ```text
//!   router ns: a hand-written peer on 10.55.0.1:179 (tokio, raw_peer) — OPEN, KEEPALIVE,
//!              then never reads again; small TCP buffers (tcp_rmem/tcp_wmem 4K..64K)
//!   node0 ns:  the speaker 10.55.0.11, 100,000 /32 routes to announce, same small buffers
//! ```
//!
//! - Repeated flaps: each session ends with a Cease from the peer, whose socket stays open
//!   and unread. The speaker's closed connection cannot flush (its NOTIFICATION is stuck
//!   behind the table), so its writer must give up (STOP_TIMEOUT, 1.5 s) and reset the
//!   connection: after five flaps the speaker holds at most one socket to the peer and no
//!   more tasks than with one session. Without that, one writer task and one socket leak
//!   per flap.
//! - A peer that keeps sending KEEPALIVEs but never reads: the hold timer never fires, so
//!   only TCP_USER_TIMEOUT (twice the hold time, 6 s here) ends the session.
//!
//! Needs root; see `peers_common`.

mod peers_common;
mod raw_peer;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgp::codec::{self, notification, Notification};
use bgp::{Family, SpeakerConfig, State};
use ipnet::IpNet;
use peers_common::*;
use raw_peer::RawPeer;
use testbed::{wait_for, Lab, NsRuntime};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Routes the speaker announces: far more than the peer's receive buffer and the speaker's
/// send buffer hold together.
const ROUTES: u32 = 100_000;

/// The lab with small TCP buffers in both namespaces (a zero window within ~100 KiB).
fn small_buffer_lab() -> Lab {
    let lab = Lab::new(1);
    for ns in [&lab.router, &lab.nodes[0]] {
        ns.sh("sysctl -q -w net.ipv4.tcp_rmem='4096 16384 65536' net.ipv4.tcp_wmem='4096 16384 65536'");
    }
    lab
}

/// Node 0's speaker with [`ROUTES`] host routes and one IPv4 peer (the router) of this
/// hold time.
fn speaker(lab: &Lab, hold: u16) -> Node {
    let n = Node::start_with(lab, 0, SpeakerConfig::default());
    let base = u32::from(Ipv4Addr::new(10, 100, 0, 0));
    let routes: Vec<IpNet> = (0..ROUTES)
        .map(|i| IpNet::new(IpAddr::V4(Ipv4Addr::from(base + i)), 32).unwrap())
        .collect();
    n.sp.announce(routes, attrs());
    let mut c = peer_cfg(router(false), PEER_AS, EBGP_AS);
    c.families = vec![Family::Ipv4Unicast];
    c.hold_time = hold;
    n.add_peer(c);
    n
}

/// The speaker's TCP sockets to the router's port 179 as (state, send queue, local port),
/// TIME-WAIT left out (no socket or task behind it): `ss` in node 0's namespace.
fn speaker_sockets(lab: &Lab) -> Vec<(String, u64, u16)> {
    let out = lab.nodes[0].sh("ss -Htan state all dst 10.55.0.1:179");
    out.lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            let send_q = c.get(2)?.parse().ok()?;
            let port = c.get(3)?.rsplit(':').next()?.parse().ok()?;
            (c[0] != "TIME-WAIT").then(|| (c[0].to_string(), send_q, port))
        })
        .collect()
}

/// Waits until the speaker's socket with local port `port` has at least 16 KiB queued:
/// the peer's window is closed and the writer is blocked.
fn wait_window_closed(lab: &Lab, port: u16) {
    let ok = wait_for(CONVERGE, || {
        speaker_sockets(lab)
            .iter()
            .any(|(st, q, p)| *p == port && st == "ESTAB" && *q >= 16 * 1024)
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "the window never closed: {:?}",
        speaker_sockets(lab)
    );
}

/// One test's lab: the speaker in node 0 (proposing `hold`) and the router's listener on
/// 10.55.0.1:179. Fields drop in order: the speaker, the listener and its runtime, the lab.
struct Bed {
    n: Node,
    l: Arc<TcpListener>,
    peer_rt: NsRuntime,
    lab: Lab,
}

impl Bed {
    fn new(hold: u16) -> Bed {
        let lab = small_buffer_lab();
        let peer_rt = lab.router.runtime();
        let addr = format!("{}:179", Lab::router_v4());
        let l = peer_rt.block_on(async move { TcpListener::bind(addr).await.expect("bind :179") });
        let n = speaker(&lab, hold);
        Bed {
            n,
            l: Arc::new(l),
            peer_rt,
            lab,
        }
    }
}

/// Accepts the speaker's next connection and completes the handshake (hold `hold`).
fn accept_session(b: &Bed, hold: u16) -> RawPeer {
    let l = b.l.clone();
    b.peer_rt.block_on(async move {
        let (s, _) = tokio::time::timeout(CONVERGE, l.accept())
            .await
            .expect("the speaker connects")
            .expect("accept");
        let mut p = RawPeer { s };
        p.handshake(PEER_AS, hold, Lab::router_v4()).await;
        p
    })
}

#[test]
fn flaps_with_a_peer_that_stopped_reading_leak_no_socket_and_no_task() {
    // Hold 9 s: TCP_USER_TIMEOUT (18 s) is far beyond the checks below, which therefore
    // show the writer's own deadline at work.
    let b = Bed::new(9);
    let (lab, n, peer_rt) = (&b.lab, &b.n, &b.peer_rt);
    let mut kept: Vec<TcpStream> = Vec::new();
    let mut tasks_established = Vec::new();
    let mut reset_after = Vec::new();
    const FLAPS: usize = 5;
    for flap in 0..FLAPS {
        let mut p = accept_session(&b, 9);
        let port = p.s.peer_addr().expect("peer address").port();
        n.wait_established(router(false));
        tasks_established.push(n.alive_tasks());
        wait_window_closed(lab, port);
        let cease = codec::encode_notification(&Notification::new(
            notification::code::CEASE,
            notification::cease::ADMIN_RESET,
        ));
        let p = peer_rt.block_on(async move {
            p.send(&cease).await;
            p
        });
        let t0 = Instant::now();
        // The peer keeps its socket open and never reads: only the speaker can free its end.
        kept.push(p.s);
        let gone = wait_for(Duration::from_secs(10), || {
            (!speaker_sockets(lab).iter().any(|s| s.2 == port)).then(|| t0.elapsed())
        });
        let gone = gone.unwrap_or_else(|| {
            panic!(
                "flap {flap}: the closed connection (port {port}) was not freed within 10 s: {:?}",
                speaker_sockets(lab)
            )
        });
        reset_after.push(gone);
    }
    // The speaker reconnects: its next session is in the listener's backlog.
    let idle = wait_for(CONVERGE, || {
        (n.status(router(false)).state == State::OpenSent).then_some(())
    });
    assert!(idle.is_some(), "{:?}", n.peer(router(false)));
    let base = *tasks_established.iter().min().unwrap();
    let settled = wait_for(Duration::from_secs(10), || {
        let (socks, tasks) = (speaker_sockets(lab), n.alive_tasks());
        (socks.len() <= 1 && tasks <= base).then_some((socks, tasks))
    });
    let (socks, tasks) = (speaker_sockets(lab), n.alive_tasks());
    eprintln!(
        "after {FLAPS} flaps with a peer that never reads ({} sockets kept open by it): speaker \
         sockets {socks:?}; tasks when Established {tasks_established:?}, now {tasks}; closed \
         connections reset after {reset_after:?}",
        kept.len()
    );
    assert!(
        settled.is_some(),
        "sockets or tasks leaked: sockets {socks:?}, tasks {tasks} (with one session: {base})"
    );
    assert!(n.peer(router(false)).stats.flaps >= FLAPS as u64);
    drop(kept);
}

#[test]
fn a_peer_that_sends_keepalives_but_never_reads_is_dropped_by_the_user_timeout() {
    // Hold 3 s: TCP_USER_TIMEOUT 6 s.
    let b = Bed::new(3);
    let (lab, n, peer_rt) = (&b.lab, &b.n, &b.peer_rt);
    let p = accept_session(&b, 3);
    let port = p.s.peer_addr().expect("peer address").port();
    n.wait_established(router(false));
    wait_window_closed(lab, port);
    let t0 = Instant::now();
    // KEEPALIVEs every second keep the speaker's hold timer from firing.
    let keepalives = peer_rt.spawn(async move {
        let mut s = p.s;
        while s.write_all(&codec::encode_keepalive()).await.is_ok() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let down = wait_for(Duration::from_secs(60), || {
        let st = n.status(router(false));
        (st.state != State::Established).then(|| (t0.elapsed(), st.last_error))
    });
    keepalives.abort();
    let (took, why) = down.unwrap_or_else(|| {
        panic!(
            "a session whose peer never reads stayed Established for 60 s: {:?}",
            n.peer(router(false))
        )
    });
    eprintln!("window closed -> session down after {took:?}: {why:?}");
    // The kernel ends the connection at the user timeout and resets it. Whichever of the
    // speaker's tasks sees it first reports it: the writer ("timed out"), or the reader,
    // which after the writer took the socket error reads end of stream. Nothing else can
    // end this session: the peer's KEEPALIVEs keep the hold timer from firing and the peer
    // closes only once the reset reaches it.
    let why = why.unwrap_or_default();
    assert!(
        why.contains("timed out") || why.contains("peer closed the connection"),
        "{why}"
    );
}
