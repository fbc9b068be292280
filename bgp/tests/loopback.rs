//! The whole speaker (tokio shell + core) against scripted raw-TCP peers on 127.0.0.0/8,
//! with tokio's paused clock so that timer behaviour is exact and fast: hold timer expiry,
//! keepalive timing, connection collision, reconnect backoff, a malformed UPDATE that
//! resets only its own session, and message lengths with and without RFC 8654 extended
//! messages.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bgp::codec::{self, Message};
use bgp::{PeerConfig, RouteAttrs, ShutdownOptions, Speaker, SpeakerConfig, State};
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;

mod raw_peer;
use raw_peer::{open, open_with, RawPeer};

fn peer_cfg(addr: Ipv4Addr, port: u16, hold: u16) -> PeerConfig {
    let mut c = PeerConfig::new(IpAddr::V4(addr), 65000, 65001);
    c.port = port;
    c.hold_time = hold;
    c.ttl = Some(64);
    c
}

/// The speaker of these tests: router id 192.0.2.200, listening where asked.
fn speaker_cfg(listen: Option<std::net::SocketAddr>) -> SpeakerConfig {
    SpeakerConfig {
        listen,
        router_id: Some(Ipv4Addr::new(192, 0, 2, 200)),
        restarting: false,
    }
}

async fn listener(ip: Ipv4Addr) -> TcpListener {
    TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .await
        .unwrap()
}

async fn accept(l: &TcpListener) -> RawPeer {
    RawPeer {
        s: l.accept().await.unwrap().0,
    }
}

/// A speaker with one peer on 127.0.0.1 proposing `hold`, and that peer's end of the
/// connection the speaker opened (nothing read yet).
async fn one_peer(hold: u16) -> (Speaker, RawPeer) {
    let l = listener(Ipv4Addr::new(127, 0, 0, 1)).await;
    let sp = Speaker::start(speaker_cfg(None)).await.unwrap();
    sp.add_peer(peer_cfg(
        Ipv4Addr::new(127, 0, 0, 1),
        l.local_addr().unwrap().port(),
        hold,
    ))
    .await
    .unwrap();
    let p = accept(&l).await;
    (sp, p)
}

#[tokio::test(start_paused = true)]
async fn hold_timer_expiry_sends_notification_code_4_after_exactly_hold_time() {
    let (sp, mut p) = one_peer(3).await;
    p.handshake(65000, 3, Ipv4Addr::new(192, 0, 2, 1)).await;
    // Read our KEEPALIVE answer, then go silent.
    assert_eq!(p.read().await, Some(Message::Keepalive));
    let t0 = Instant::now();
    let n = p.until_notification().await.expect("NOTIFICATION");
    assert_eq!((n.code, n.subcode), (4, 0));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(2900) && waited <= Duration::from_millis(3100),
        "{waited:?}"
    );
    sp.shutdown(ShutdownOptions::default()).await;
}

#[tokio::test(start_paused = true)]
async fn keepalives_are_sent_every_third_of_the_hold_time() {
    let (sp, mut p) = one_peer(9).await;
    p.handshake(65000, 90, Ipv4Addr::new(192, 0, 2, 1)).await;
    let mut times = Vec::new();
    let t0 = Instant::now();
    while times.len() < 6 {
        match p.read().await.unwrap() {
            Message::Keepalive => {
                times.push(t0.elapsed());
                // Keep the speaker's hold timer happy.
                p.send(&codec::encode_keepalive()).await;
            }
            Message::Update(_) => {}
            m => panic!("unexpected {m:?}"),
        }
    }
    // The first KEEPALIVE answers our OPEN; then one every 3 s (9 / 3).
    for w in times[1..].windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(2990) && gap <= Duration::from_millis(3010),
            "{times:?}"
        );
    }
    sp.shutdown(ShutdownOptions::default()).await;
}

#[tokio::test(start_paused = true)]
async fn reconnect_backoff_grows_exponentially_with_jitter() {
    let l = listener(Ipv4Addr::new(127, 0, 0, 1)).await;
    let sp = Speaker::start(speaker_cfg(None)).await.unwrap();
    sp.add_peer(peer_cfg(
        Ipv4Addr::new(127, 0, 0, 1),
        l.local_addr().unwrap().port(),
        9,
    ))
    .await
    .unwrap();
    let mut at = Vec::new();
    for _ in 0..5 {
        let (s, _) = l.accept().await.unwrap();
        at.push(Instant::now());
        drop(s); // refuse the session by closing at once
    }
    let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    for (i, g) in gaps.iter().enumerate() {
        let base = (1u64 << i) as f64;
        assert!(
            *g >= 0.75 * base - 0.01 && *g <= base + 0.05,
            "gap {i} = {g}, all {gaps:?}"
        );
    }
    sp.shutdown(ShutdownOptions::default()).await;
}

/// An UPDATE of `n` /32 routes from 10.200.0.0 (AS 65000, next hop 192.0.2.1), longer than
/// 4,096 octets from about 800 routes on.
fn long_update(n: u32) -> Vec<u8> {
    let attrs = [
        &[0x40, 1, 1, 0][..],
        &[0x50, 2, 0, 6, 2, 1, 0, 0, 0xfd, 0xe8],
        &[0x40, 3, 4, 192, 0, 2, 1],
    ]
    .concat();
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(&attrs);
    for i in 0..n {
        body.push(32);
        body.extend_from_slice(&(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i).to_be_bytes());
    }
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(2);
    m.extend_from_slice(&body);
    m
}

/// RFC 8654 §4 / RFC 4271 §6.1: without extended messages, a header declaring 5,044 octets
/// (followed by 64) is answered at once with Bad Message Length (its data: the length), not after the hold
/// time while waiting for a body that never comes. Paused clock: "at once" is exact.
#[tokio::test(start_paused = true)]
async fn a_long_header_without_extended_messages_is_bad_message_length_at_once() {
    let (sp, mut p) = one_peer(3).await;
    p.handshake(65000, 3, Ipv4Addr::new(192, 0, 2, 1)).await;
    assert_eq!(p.read().await, Some(Message::Keepalive));
    let t0 = Instant::now();
    let mut m = long_update(1000);
    let declared = [m[16], m[17]];
    assert_eq!(u16::from_be_bytes(declared), 5044);
    m.truncate(19 + 64);
    p.send(&m).await;
    let n = p.until_notification().await.expect("NOTIFICATION");
    assert_eq!((n.code, n.subcode), (1, 2), "{n}");
    assert_eq!(n.data, declared, "{n}");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    sp.shutdown(ShutdownOptions::default()).await;
}

/// With extended messages negotiated, a 5,044-octet UPDATE sent in the same segment as the
/// KEEPALIVE that completes the handshake (before the speaker's peer task has seen the
/// session up) is read whole and counted.
#[tokio::test(start_paused = true)]
async fn a_long_update_right_after_the_handshake_is_read_when_negotiated() {
    let (sp, mut p) = one_peer(9).await;
    let Some(Message::Open(theirs)) = p.read().await else {
        panic!("expected OPEN")
    };
    assert!(theirs.caps.extended_message);
    let mut burst = open_with(65000, 9, Ipv4Addr::new(192, 0, 2, 1), true).to_vec();
    burst.extend_from_slice(&codec::encode_keepalive());
    burst.extend_from_slice(&long_update(1000));
    p.send(&burst).await;
    let mut w = sp
        .watch_peer(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await
        .unwrap()
        .unwrap();
    w.wait_for(|s| s.state == State::Established).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let info = sp.peers().await.unwrap().remove(0);
            if info.stats.prefixes_received >= 1000 {
                return info;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the 1000 routes are counted");
    assert_eq!(got.stats.prefixes_received, 1000);
    assert_eq!(got.status.state, State::Established);
    assert!(got.status.negotiated.unwrap().extended_messages);
    sp.shutdown(ShutdownOptions::default()).await;
}

/// Both sides connect at once. The side with the higher BGP Identifier keeps the connection
/// it opened; the other gets Cease / Connection Collision Resolution (RFC 4271 §6.8).
async fn collision(peer_id: Ipv4Addr, expect_outgoing_survives: bool) {
    let peer_ip = Ipv4Addr::new(127, 0, 0, 3);
    let l = listener(peer_ip).await;
    let sp = Speaker::start(speaker_cfg(Some("127.0.0.1:0".parse().unwrap())))
        .await
        .unwrap();
    let speaker_port = sp.listen_addr().unwrap().port();
    sp.add_peer(peer_cfg(peer_ip, l.local_addr().unwrap().port(), 9))
        .await
        .unwrap();
    // The speaker's connection to us…
    let mut outgoing = accept(&l).await;
    // …and ours to the speaker, from the peer's address.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(peer_ip), 0)).unwrap();
    let s = sock
        .connect(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            speaker_port,
        ))
        .await
        .unwrap();
    let mut incoming = RawPeer { s };
    let Some(Message::Open(_)) = outgoing.read().await else {
        panic!()
    };
    let Some(Message::Open(_)) = incoming.read().await else {
        panic!()
    };
    outgoing.send(&open(65000, 9, peer_id)).await;
    incoming.send(&open(65000, 9, peer_id)).await;
    let (loser, winner) = if expect_outgoing_survives {
        (&mut incoming, &mut outgoing)
    } else {
        (&mut outgoing, &mut incoming)
    };
    let n = loser
        .until_notification()
        .await
        .expect("loser gets a NOTIFICATION");
    assert_eq!((n.code, n.subcode), (6, 7));
    winner.send(&codec::encode_keepalive()).await;
    let mut w = sp.watch_peer(IpAddr::V4(peer_ip)).await.unwrap().unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        w.wait_for(|s| s.state == State::Established),
    )
    .await
    .expect("winner establishes")
    .unwrap();
    sp.shutdown(ShutdownOptions::default()).await;
}

#[tokio::test(start_paused = true)]
async fn collision_speaker_with_higher_id_keeps_its_own_connection() {
    collision(Ipv4Addr::new(192, 0, 2, 1), true).await;
}

#[tokio::test(start_paused = true)]
async fn collision_peer_with_higher_id_keeps_its_connection() {
    collision(Ipv4Addr::new(192, 0, 2, 250), false).await;
}

#[tokio::test(start_paused = true)]
async fn malformed_update_resets_only_that_session_and_shutdown_withdraws() {
    let (a, b) = (Ipv4Addr::new(127, 0, 0, 4), Ipv4Addr::new(127, 0, 0, 5));
    let (la, lb) = (listener(a).await, listener(b).await);
    let sp = Speaker::start(speaker_cfg(None)).await.unwrap();
    sp.announce(["203.0.113.10/32".parse().unwrap()], RouteAttrs::default());
    sp.add_peer(peer_cfg(a, la.local_addr().unwrap().port(), 9))
        .await
        .unwrap();
    sp.add_peer(peer_cfg(b, lb.local_addr().unwrap().port(), 9))
        .await
        .unwrap();
    let (mut pa, mut pb) = (accept(&la).await, accept(&lb).await);
    pa.handshake(65000, 90, Ipv4Addr::new(192, 0, 2, 4)).await;
    pb.handshake(65000, 90, Ipv4Addr::new(192, 0, 2, 5)).await;
    for ip in [a, b] {
        let mut w = sp.watch_peer(IpAddr::V4(ip)).await.unwrap().unwrap();
        w.wait_for(|s| s.state == State::Established).await.unwrap();
    }
    // A's UPDATE carries an IPv4 NLRI of length 33.
    let body = [0u8, 0, 0, 0, 33, 1, 2, 3, 4, 5];
    let mut bad = vec![0xff; 16];
    bad.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    bad.push(2);
    bad.extend_from_slice(&body);
    pa.send(&bad).await;
    let n = pa.until_notification().await.unwrap();
    assert_eq!((n.code, n.subcode), (3, 10), "Invalid Network Field");
    // B is untouched.
    let peers = sp.peers().await.unwrap();
    let pb_info = peers
        .iter()
        .find(|p| p.config.address == IpAddr::V4(b))
        .unwrap();
    assert_eq!(pb_info.status.state, State::Established);
    assert_eq!(pb_info.stats.flaps, 0);
    // Shutdown: B sees the withdrawal, then Cease 6/2 with the message.
    let shut = tokio::spawn({
        let sp = sp.clone();
        async move {
            sp.shutdown(ShutdownOptions {
                message: "maintenance window".into(),
                drain: None,
            })
            .await
        }
    });
    let mut withdrawn = Vec::new();
    let n = loop {
        match pb.read().await.unwrap() {
            Message::Update(u) => withdrawn.extend(u.withdrawn),
            Message::Notification(n) => break n,
            _ => {}
        }
    };
    assert_eq!(
        withdrawn,
        vec!["203.0.113.10/32".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(n.shutdown_message().as_deref(), Some("maintenance window"));
    shut.await.unwrap();
    assert!(
        pb.read().await.is_none(),
        "connection closed after the Cease"
    );
}

/// A passive IPv4 peer arriving on a dual-stack `[::]` listener: our end of the connection
/// is `::ffff:127.0.0.1`, which must be used as the plain IPv4 next hop (it once made every
/// IPv4 route unsendable on such sessions).
#[tokio::test(start_paused = true)]
async fn ipv4_peer_on_a_dual_stack_listener_gets_a_plain_ipv4_next_hop() {
    let peer_ip = Ipv4Addr::new(127, 0, 0, 6);
    let sp = Speaker::start(speaker_cfg(Some("[::]:0".parse().unwrap())))
        .await
        .unwrap();
    sp.announce(["203.0.113.10/32".parse().unwrap()], RouteAttrs::default());
    let mut cfg = peer_cfg(peer_ip, 179, 9);
    cfg.passive = true;
    sp.add_peer(cfg).await.unwrap();
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(peer_ip), 0)).unwrap();
    let port = sp.listen_addr().unwrap().port();
    let s = sock
        .connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        .await
        .unwrap();
    let mut p = RawPeer { s };
    p.send(&open(65000, 9, Ipv4Addr::new(192, 0, 2, 6))).await;
    let Some(Message::Open(_)) = p.read().await else {
        panic!("expected OPEN")
    };
    p.send(&codec::encode_keepalive()).await;
    let u = loop {
        match p.read().await.expect("an UPDATE") {
            Message::Update(u) if !u.announced.is_empty() => break u,
            _ => {}
        }
    };
    assert_eq!(u.attrs.next_hop, Some(Ipv4Addr::LOCALHOST), "{u:?}");
    let info = sp.peers().await.unwrap().remove(0);
    assert_eq!(
        info.status.local.map(|l| l.ip()),
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
    );
    sp.shutdown(ShutdownOptions::default()).await;
}

/// RFC 8326: with a drain period, shutdown first re-advertises every route with
/// GRACEFUL_SHUTDOWN (65535:0), waits, then withdraws and sends the Cease.
#[tokio::test(start_paused = true)]
async fn drain_readvertises_with_graceful_shutdown_before_withdrawing() {
    let ip = Ipv4Addr::new(127, 0, 0, 6);
    let l = listener(ip).await;
    let sp = Speaker::start(speaker_cfg(None)).await.unwrap();
    let p: ipnet::IpNet = "203.0.113.20/32".parse().unwrap();
    sp.announce(
        [p],
        RouteAttrs {
            communities: vec!["65001:7".parse().unwrap()],
            ..Default::default()
        },
    );
    sp.add_peer(peer_cfg(ip, l.local_addr().unwrap().port(), 90))
        .await
        .unwrap();
    let mut peer = accept(&l).await;
    peer.handshake(65000, 90, Ipv4Addr::new(192, 0, 2, 6)).await;
    // Initial table: the route with its own community only.
    loop {
        if let Some(Message::Update(u)) = peer.read().await {
            if u.announced == vec![p] {
                assert_eq!(u.attrs.communities, vec!["65001:7".parse().unwrap()]);
                break;
            }
        }
    }
    let shut = tokio::spawn({
        let sp = sp.clone();
        async move {
            sp.shutdown(ShutdownOptions {
                message: "drain".into(),
                drain: Some(Duration::from_secs(5)),
            })
            .await
        }
    });
    let t0 = Instant::now();
    let (mut drained_at, mut withdrawn_at) = (None, None);
    while let Some(m) = peer.read().await {
        match m {
            Message::Update(u) if u.announced == vec![p] => {
                assert_eq!(
                    u.attrs.communities,
                    vec![
                        "65001:7".parse().unwrap(),
                        bgp::Community::GRACEFUL_SHUTDOWN
                    ]
                );
                drained_at = Some(t0.elapsed());
            }
            Message::Update(u) if u.withdrawn == vec![p] => withdrawn_at = Some(t0.elapsed()),
            Message::Notification(n) => {
                assert_eq!((n.code, n.subcode), (6, 2));
                break;
            }
            _ => {}
        }
    }
    let (d, w) = (
        drained_at.expect("re-advertised with 65535:0"),
        withdrawn_at.expect("withdrawn"),
    );
    assert!(d < Duration::from_millis(100), "{d:?}");
    assert!(
        w >= Duration::from_secs(5) && w < Duration::from_millis(5100),
        "{w:?}"
    );
    shut.await.unwrap();
}

/// The speaker-wide settings change at runtime: a new router id restarts the session (Cease
/// / Other Configuration Change, then an OPEN with the new identifier); the listener opens
/// and closes without touching the session; without a router id no session starts.
#[tokio::test(start_paused = true)]
async fn router_id_and_listener_change_at_runtime() {
    let l = listener(Ipv4Addr::new(127, 0, 0, 7)).await;
    let sp = Speaker::start(SpeakerConfig::default()).await.unwrap();
    let cfg = peer_cfg(
        Ipv4Addr::new(127, 0, 0, 7),
        l.local_addr().unwrap().port(),
        9,
    );
    assert!(matches!(
        sp.add_peer(cfg.clone()).await,
        Err(bgp::SpeakerError::NoRouterId)
    ));
    assert!(sp
        .set_router_id(Ipv4Addr::new(192, 0, 2, 200))
        .await
        .unwrap());
    assert!(!sp
        .set_router_id(Ipv4Addr::new(192, 0, 2, 200))
        .await
        .unwrap());
    assert!(sp.set_router_id(Ipv4Addr::UNSPECIFIED).await.is_err());
    sp.add_peer(cfg).await.unwrap();
    let mut p = accept(&l).await;
    let theirs = p.handshake(65000, 9, Ipv4Addr::new(192, 0, 2, 1)).await;
    assert_eq!(theirs.router_id, Ipv4Addr::new(192, 0, 2, 200));
    assert_eq!(p.read().await, Some(Message::Keepalive));

    // The listener: opened, reachable, closed; the session stays.
    assert_eq!(sp.listen_addr(), None);
    let bound = sp
        .set_listen(Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
        .expect("bound");
    assert_eq!(sp.listen_addr(), Some(bound));
    assert!(tokio::net::TcpStream::connect(bound).await.is_ok());
    assert_eq!(sp.set_listen(None).await.unwrap(), None);
    assert_eq!(sp.listen_addr(), None);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(tokio::net::TcpStream::connect(bound).await.is_err());
    assert_eq!(
        sp.peers().await.unwrap()[0].status.state,
        State::Established
    );

    // A new router id: Cease / Other Configuration Change, then a new OPEN with it.
    assert!(sp
        .set_router_id(Ipv4Addr::new(192, 0, 2, 201))
        .await
        .unwrap());
    let n = p.until_notification().await.expect("Cease");
    assert_eq!((n.code, n.subcode), (6, 6));
    let mut p = accept(&l).await;
    let theirs = p.handshake(65000, 9, Ipv4Addr::new(192, 0, 2, 1)).await;
    assert_eq!(theirs.router_id, Ipv4Addr::new(192, 0, 2, 201));
    sp.shutdown(ShutdownOptions::default()).await;
}
