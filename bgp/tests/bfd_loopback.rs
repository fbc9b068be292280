//! BFD timing through the whole speaker (BGP peer task + BFD tasks) against a BFD peer and
//! a BGP peer written by hand on 127.0.0.0/8, with tokio's paused clock so that intervals
//! and the Detection Time are exact: the three-way handshake and Poll Sequence, the
//! jittered transmission rate, RFC 5881 source ports and TTL 255, a detection timeout that
//! closes BGP with Cease / BFD Down (RFC 9384) at the Detection Time, the peer's AdminDown
//! that does not, and AdminDown at shutdown.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bgp::bfd::{BfdState, Diag, Packet};
use bgp::codec::{self, Message};
use bgp::{BfdConfig, PeerConfig, ShutdownOptions, Speaker, SpeakerConfig, State};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::Instant;

mod raw_peer;
use raw_peer::RawPeer;

const MS: Duration = Duration::from_millis(1);
const PEER_DISC: u32 = 0x5eed;

/// A free UDP port for the speaker's BFD receive socket (each test its own).
fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.local_addr().unwrap().port()
}

/// A BFD peer written by hand: one UDP socket on the peer's address, TTL 255.
struct RawBfd {
    sock: UdpSocket,
    /// The speaker's receive port.
    to: SocketAddr,
    /// The speaker's discriminator, once seen.
    theirs: u32,
}

impl RawBfd {
    async fn new(ip: Ipv4Addr, speaker_port: u16) -> RawBfd {
        let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .await
            .unwrap();
        sock.set_ttl(255).unwrap();
        RawBfd {
            sock,
            to: SocketAddr::from(([127, 0, 0, 1], speaker_port)),
            theirs: 0,
        }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    async fn recv(&mut self) -> (Packet, SocketAddr) {
        let mut b = [0u8; 64];
        let (n, from) = self.sock.recv_from(&mut b).await.unwrap();
        let p = Packet::decode(&b[..n]).expect("the speaker sends valid packets");
        self.theirs = p.my_disc;
        (p, from)
    }

    async fn recv_until(&mut self, f: impl Fn(&Packet) -> bool) -> Packet {
        loop {
            let (p, _) = self.recv().await;
            if f(&p) {
                return p;
            }
        }
    }

    async fn send(&self, state: BfdState, poll: bool, final_: bool, ms: u32) {
        let p = Packet {
            diag: if state == BfdState::AdminDown {
                Diag::AdminDown
            } else {
                Diag::None
            },
            state,
            poll,
            final_,
            cpi: false,
            auth: false,
            demand: false,
            detect_mult: 3,
            my_disc: PEER_DISC,
            your_disc: if state == BfdState::Down {
                0
            } else {
                self.theirs
            },
            desired_min_tx: ms * 1000,
            required_min_rx: ms * 1000,
            required_min_echo_rx: 0,
        };
        self.sock.send_to(&p.encode(), self.to).await.unwrap();
    }

    /// The three-way handshake (RFC 5880 §6.2) and the speaker's Poll Sequence to its fast
    /// rate, answered with a Final. Returns the speaker's first packet's source address.
    async fn bring_up(&mut self, ms: u32) -> SocketAddr {
        let (first, from) = self.recv().await;
        assert_eq!((first.state, first.your_disc), (BfdState::Down, 0));
        self.send(BfdState::Down, false, false, ms).await;
        self.recv_until(|p| p.state == BfdState::Init).await;
        self.send(BfdState::Up, false, false, ms).await;
        let p = self.recv_until(|p| p.state == BfdState::Up).await;
        assert!(p.poll, "going Up starts a Poll Sequence: {p:?}");
        self.send(BfdState::Up, false, true, ms).await;
        from
    }
}

fn bfd(ms: u64, local_port: u16, peer_port: u16) -> BfdConfig {
    BfdConfig {
        min_tx: MS * ms as u32,
        min_rx: MS * ms as u32,
        multiplier: 3,
        local_port,
        peer_port,
    }
}

fn peer_cfg(addr: Ipv4Addr, bgp_port: u16, b: BfdConfig) -> PeerConfig {
    let mut c = PeerConfig::new(IpAddr::V4(addr), 65000, 65001);
    c.port = bgp_port;
    c.hold_time = 90;
    c.ttl = Some(64);
    c.bfd = Some(b);
    c
}

/// A speaker with one peer at `ip` whose BGP side never answers (port 1: the session keeps
/// retrying, BFD runs regardless) and whose BFD side is a `RawBfd`, at `ms`.
async fn bfd_only(ip: Ipv4Addr, ms: u64) -> (Speaker, RawBfd) {
    let port = free_port();
    let peer = RawBfd::new(ip, port).await;
    let sp = Speaker::start(SpeakerConfig {
        router_id: Some(Ipv4Addr::new(192, 0, 2, 200)),
        ..SpeakerConfig::default()
    })
    .await
    .unwrap();
    sp.add_peer(peer_cfg(ip, 1, bfd(ms, port, peer.port())))
        .await
        .unwrap();
    (sp, peer)
}

/// A speaker with one peer at `ip` whose BGP side is a raw session on a listener of ours and
/// whose BFD side is `RawBfd` at `ms`: returns once BGP is Established and BFD Up.
struct Both {
    sp: Speaker,
    peer: RawBfd,
    bgp: RawPeer,
    l: TcpListener,
    bfd_port: u16,
}

impl Both {
    async fn up(ip: Ipv4Addr, ms: u64) -> Both {
        let bfd_port = free_port();
        let mut peer = RawBfd::new(ip, bfd_port).await;
        let l = TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .await
            .unwrap();
        let sp = Speaker::start(SpeakerConfig {
            router_id: Some(Ipv4Addr::new(192, 0, 2, 200)),
            ..SpeakerConfig::default()
        })
        .await
        .unwrap();
        sp.add_peer(peer_cfg(ip, Self::port(&l), bfd(ms, bfd_port, peer.port())))
            .await
            .unwrap();
        let mut bgp = RawPeer {
            s: l.accept().await.unwrap().0,
        };
        bgp.handshake(65000, 90, Ipv4Addr::new(192, 0, 2, 1)).await;
        wait_state(&sp, ip, |s| s.state == State::Established).await;
        peer.bring_up(ms as u32).await;
        wait_state(&sp, ip, |s| {
            s.bfd.as_ref().is_some_and(|b| b.state == BfdState::Up)
        })
        .await;
        Both {
            sp,
            peer,
            bgp,
            l,
            bfd_port,
        }
    }

    fn port(l: &TcpListener) -> u16 {
        l.local_addr().unwrap().port()
    }
}

async fn wait_state(sp: &Speaker, ip: Ipv4Addr, f: impl Fn(&bgp::PeerStatus) -> bool) {
    let mut w = sp.watch_peer(IpAddr::V4(ip)).await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(30), w.wait_for(|s| f(s)))
        .await
        .expect("state reached")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn handshake_then_packets_at_the_negotiated_rate_from_an_rfc5881_source_port() {
    let ip = Ipv4Addr::new(127, 0, 0, 21);
    let (sp, mut peer) = bfd_only(ip, 50).await;
    let from = peer.bring_up(50).await;
    assert!((49152..=65535).contains(&from.port()), "source port {from}");
    wait_state(&sp, ip, |s| {
        s.bfd.as_ref().is_some_and(|b| b.state == BfdState::Up)
    })
    .await;
    // §6.8.7: every 37.5-50 ms (75-100 % of 50 ms), Poll ended.
    let mut last = Instant::now();
    let mut gaps = Vec::new();
    for _ in 0..40 {
        let (p, f) = peer.recv().await;
        assert_eq!(f, from, "one source port per session (RFC 5881 §4)");
        assert_eq!(
            (p.state, p.poll, p.your_disc),
            (BfdState::Up, false, PEER_DISC)
        );
        gaps.push(last.elapsed());
        last = Instant::now();
        peer.send(BfdState::Up, false, false, 50).await;
    }
    for g in &gaps[1..] {
        assert!(*g >= MS * 37 && *g <= MS * 50, "{gaps:?}");
    }
    let st = sp.peers().await.unwrap()[0].status.bfd.clone().unwrap();
    assert_eq!(
        (st.tx_interval, st.detect_time),
        (Some(MS * 50), Some(MS * 150))
    );
    assert_eq!(st.remote_discriminator, PEER_DISC);
    sp.shutdown(ShutdownOptions::default()).await;
}

#[tokio::test(start_paused = true)]
async fn a_poll_is_answered_at_once_with_final() {
    let ip = Ipv4Addr::new(127, 0, 0, 22);
    let (sp, mut peer) = bfd_only(ip, 300).await;
    peer.bring_up(300).await;
    peer.send(BfdState::Up, true, false, 100).await;
    let t0 = Instant::now();
    let p = peer.recv_until(|p| p.final_).await;
    assert!(!p.poll);
    assert!(t0.elapsed() < MS, "answered after {:?}", t0.elapsed());
    sp.shutdown(ShutdownOptions::default()).await;
}

/// RFC 5880 §6.8.4 + RFC 9384: the peer goes silent; at exactly the Detection Time
/// (3 × 50 ms) BFD goes Down and the BGP session is closed with Cease / BFD Down.
#[tokio::test(start_paused = true)]
async fn detection_timeout_closes_bgp_with_cease_bfd_down_at_the_detection_time() {
    let ip = Ipv4Addr::new(127, 0, 0, 23);
    let Both {
        sp,
        mut peer,
        mut bgp,
        l,
        ..
    } = Both::up(ip, 50).await;
    // A few packets both ways, then silence from the peer.
    for _ in 0..5 {
        peer.recv().await;
        peer.send(BfdState::Up, false, false, 50).await;
    }
    let silent_since = Instant::now();
    let n = bgp.until_notification().await.expect("NOTIFICATION");
    let after = silent_since.elapsed();
    assert_eq!((n.code, n.subcode), (6, 10), "Cease / BFD Down (RFC 9384)");
    assert!(
        after >= MS * 149 && after <= MS * 152,
        "closed after {after:?}"
    );
    let info = sp.peers().await.unwrap().remove(0);
    let b = info.status.bfd.unwrap();
    assert_eq!(
        (b.state, b.local_diag, b.failures),
        (BfdState::Down, Diag::DetectionTimeExpired, 1)
    );
    assert!(info.status.last_error.unwrap().contains("BFD down"));
    // The speaker reconnects with backoff (1-2 s).
    let t = Instant::now();
    let _again = l.accept().await.unwrap();
    assert!(
        t.elapsed() >= MS * 700 && t.elapsed() <= Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    sp.shutdown(ShutdownOptions::default()).await;
}

/// RFC 5882 §3.2: the peer's AdminDown is no failure; BGP stays up.
#[tokio::test(start_paused = true)]
async fn peer_admin_down_leaves_bgp_established() {
    let ip = Ipv4Addr::new(127, 0, 0, 24);
    let Both {
        sp, peer, mut bgp, ..
    } = Both::up(ip, 50).await;
    peer.send(BfdState::AdminDown, false, false, 50).await;
    wait_state(&sp, ip, |s| {
        s.bfd.as_ref().is_some_and(|b| b.state == BfdState::Down)
    })
    .await;
    // Keep BGP alive for a while; no NOTIFICATION comes.
    let r = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match bgp.read().await {
                Some(Message::Notification(n)) => return n,
                Some(_) => bgp.s.write_all(&codec::encode_keepalive()).await.unwrap(),
                None => panic!("closed"),
            }
        }
    })
    .await;
    assert!(r.is_err(), "BGP closed on the peer's AdminDown: {r:?}");
    let info = sp.peers().await.unwrap().remove(0);
    assert_eq!(info.status.state, State::Established);
    let b = info.status.bfd.unwrap();
    assert_eq!(
        (b.flaps, b.failures, b.remote_state),
        (1, 0, BfdState::AdminDown)
    );
    sp.shutdown(ShutdownOptions::default()).await;
}

/// §6.8.16: at shutdown the peer hears AdminDown (diagnostic 7) after the BGP Cease.
#[tokio::test(start_paused = true)]
async fn shutdown_sends_admin_down() {
    let ip = Ipv4Addr::new(127, 0, 0, 25);
    let (sp, mut peer) = bfd_only(ip, 300).await;
    peer.bring_up(300).await;
    let sp2 = sp.clone();
    let shut = tokio::spawn(async move { sp2.shutdown(ShutdownOptions::default()).await });
    let p = peer.recv_until(|p| p.state != BfdState::Up).await;
    assert_eq!((p.state, p.diag), (BfdState::AdminDown, Diag::AdminDown));
    shut.await.unwrap();
}

/// RFC 5881 §5: packets that did not arrive with TTL 255 are dropped: no session.
#[tokio::test(start_paused = true)]
async fn packets_with_ttl_below_255_are_ignored() {
    let ip = Ipv4Addr::new(127, 0, 0, 26);
    let (sp, mut peer) = bfd_only(ip, 300).await;
    peer.sock.set_ttl(254).unwrap();
    for _ in 0..5 {
        let (p, _) = peer.recv().await;
        assert_eq!((p.state, p.your_disc), (BfdState::Down, 0), "{p:?}");
        peer.send(BfdState::Down, false, false, 300).await;
    }
    sp.shutdown(ShutdownOptions::default()).await;
}

/// Only the BFD settings change: the running session gets a Poll Sequence to the new rate
/// (RFC 5880 §6.8.3), same discriminator, and the BGP session stays; BFD switched off
/// sends AdminDown, BGP still stays.
#[tokio::test(start_paused = true)]
async fn new_bfd_intervals_poll_without_touching_bgp() {
    let ip = Ipv4Addr::new(127, 0, 0, 27);
    let Both {
        sp,
        mut peer,
        bgp,
        l,
        bfd_port: port,
    } = Both::up(ip, 300).await;
    let bgp_port = Both::port(&l);
    let disc = peer.theirs;
    assert!(sp
        .set_peer(peer_cfg(ip, bgp_port, bfd(50, port, peer.port())))
        .await
        .unwrap());
    let p = peer
        .recv_until(|p| p.poll && p.desired_min_tx == 50_000)
        .await;
    assert_eq!((p.my_disc, p.state), (disc, BfdState::Up), "same session");
    peer.send(BfdState::Up, false, true, 50).await;
    let mut last = Instant::now();
    for i in 0..10 {
        let (p, _) = peer.recv().await;
        assert!(!p.poll, "{p:?}");
        if i > 0 {
            assert!(last.elapsed() <= MS * 50, "{:?}", last.elapsed());
        }
        last = Instant::now();
        peer.send(BfdState::Up, false, false, 50).await;
    }
    // BFD off: AdminDown to the peer, BGP untouched.
    let mut off = peer_cfg(ip, bgp_port, bfd(50, port, peer.port()));
    off.bfd = None;
    assert!(sp.set_peer(off).await.unwrap());
    let p = peer.recv_until(|p| p.state != BfdState::Up).await;
    assert_eq!(p.state, BfdState::AdminDown);
    let info = sp.peers().await.unwrap().remove(0);
    assert_eq!(
        (info.status.state, info.stats.flaps),
        (State::Established, 0)
    );
    assert!(info.status.bfd.is_none());
    drop(bgp);
    sp.shutdown(ShutdownOptions::default()).await;
}
