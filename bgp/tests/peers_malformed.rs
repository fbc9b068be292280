//! A malformed UPDATE on one session resets that session only, with a real BIRD 2 watching
//! the other. The speaker in node 0 peers with BIRD (10.55.0.1) and with a scripted raw-TCP
//! peer on a second router address (10.55.0.2, written here with std sockets): the raw peer
//! completes OPEN/KEEPALIVE, sends an UPDATE with a malformed COMMUNITIES attribute (RFC
//! 7606 treat-as-withdraw: the session stays up), then one with an IPv4 NLRI of length 33
//! and gets NOTIFICATION 3/10 (UPDATE Message Error / Invalid Network Field) and a close.
//! Throughout, BIRD's session keeps its state and uptime and our routes. Needs root; see
//! `peers_common`.

mod peers_common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bgp::codec::open::{Capabilities, Open};
use bgp::codec::{self, decode, DecodeCtx, Message, Notification};
use bgp::{Family, State};
use peers_common::*;
use testbed::{wait_for, Bird, Lab};

/// The raw peer's address, added to the router's bridge.
const RAW: Ipv4Addr = Ipv4Addr::new(10, 55, 0, 2);

/// A BGP peer written by hand over a blocking socket.
struct RawPeer {
    s: TcpStream,
}

impl RawPeer {
    /// Accepts the speaker's connection within [`CONVERGE`].
    fn accept(l: &TcpListener) -> RawPeer {
        l.set_nonblocking(true).unwrap();
        let s = wait_for(CONVERGE, || l.accept().ok().map(|(s, _)| s))
            .expect("the speaker connects to the raw peer");
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(CONVERGE)).unwrap();
        RawPeer { s }
    }

    /// The next message, or `None` at EOF. Panics on a read timeout.
    fn read(&mut self) -> Option<Message> {
        let mut hdr = [0u8; 19];
        match self.s.read_exact(&mut hdr) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("raw peer read: {e}"),
        }
        let len = u16::from_be_bytes([hdr[16], hdr[17]]) as usize;
        let mut buf = hdr.to_vec();
        buf.resize(len, 0);
        self.s.read_exact(&mut buf[19..]).expect("message body");
        let ctx = DecodeCtx {
            four_octet_as: true,
            ibgp: false,
        };
        Some(decode(&buf, 65535, &ctx).expect("the speaker sends valid messages"))
    }

    fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("raw peer write");
    }

    /// Reads until a NOTIFICATION (skipping UPDATEs and KEEPALIVEs); `None` at EOF.
    fn until_notification(&mut self) -> Option<Notification> {
        loop {
            if let Message::Notification(n) = self.read()? {
                return Some(n);
            }
        }
    }
}

/// An UPDATE message around `body` (withdrawn routes, attributes, NLRI).
fn update(body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(2);
    m.extend_from_slice(body);
    m
}

/// 198.51.100.1/32 with ORIGIN, AS_PATH [65000], NEXT_HOP 10.55.0.2 and a COMMUNITIES
/// attribute of 3 octets (not a multiple of 4: RFC 7606 §7.8 treat-as-withdraw).
fn update_with_bad_communities() -> Vec<u8> {
    let attrs: &[u8] = &[
        0x40, 1, 1, 0, // ORIGIN IGP
        0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe8, // AS_PATH: AS_SEQUENCE [65000]
        0x40, 3, 4, 10, 55, 0, 2, // NEXT_HOP
        0xc0, 8, 3, 1, 2, 3, // COMMUNITIES, bad length
    ];
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(&[32, 198, 51, 100, 1]);
    update(&body)
}

/// No attributes and an IPv4 NLRI of length 33 (RFC 4271 §6.3: Invalid Network Field).
fn update_with_prefix_length_33() -> Vec<u8> {
    update(&[0, 0, 0, 0, 33, 1, 2, 3, 4, 5])
}

fn raw_open() -> Vec<u8> {
    let caps = Capabilities {
        families: vec![Family::Ipv4Unicast],
        multiprotocol: true,
        route_refresh: true,
        four_octet_as: Some(PEER_AS),
        ..Default::default()
    };
    codec::encode_open(&Open::new(PEER_AS, 9, RAW, caps)).to_vec()
}

#[test]
fn malformed_update_resets_only_its_session_while_bird_stays_established() {
    let lab = Lab::new(1);
    lab.router.sh(&format!("ip addr add {RAW}/24 dev br0"));
    // `strict bind`: BIRD listens on 10.55.0.1:179 only, so the raw peer can have RAW:179.
    let bird = Bird::start(
        &lab.router,
        &bird_conf(&[bird_proto("n0v4", 0, false, EBGP_AS, "strict bind on;")]),
    );
    let listener = lab
        .router
        .enter(|| TcpListener::bind(SocketAddr::from((RAW, 179))).expect("bind raw peer"));
    let n = Node::start(&lab, 0);
    let bird_peer = router(false);
    let raw_peer = IpAddr::V4(RAW);
    n.add_peer(peer_cfg(bird_peer, PEER_AS, EBGP_AS));
    wait_bird_established(&bird, "n0v4");
    wait_bird_route(&bird, &v4_prefix(0), "n0v4");
    n.wait_established(bird_peer);
    let since = bird_since(&bird, "n0v4");

    // Watch BIRD's session and our route there while the raw peer misbehaves.
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut polls = 0u32;
            while !done.load(Ordering::Relaxed) {
                let state = bird.protocol_state("n0v4");
                let now = bird_since(&bird, "n0v4");
                let routes = bird.routes_for(&v4_prefix(0).to_string());
                if state != "Established" || !same_since(&now, &since) || routes.is_empty() {
                    return Err(format!(
                        "BIRD session disturbed: {state}, since {now:?} (was {since:?}), {routes:?}"
                    ));
                }
                polls += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(polls)
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            n.add_peer(peer_cfg(raw_peer, PEER_AS, EBGP_AS));
            let mut raw = RawPeer::accept(&listener);
            let Some(Message::Open(theirs)) = raw.read() else {
                panic!("expected the speaker's OPEN")
            };
            assert_eq!(theirs.asn, EBGP_AS);
            raw.send(&raw_open());
            raw.send(&codec::encode_keepalive());
            n.wait_established(raw_peer);

            // RFC 7606 treat-as-withdraw: counted, the session stays up.
            raw.send(&update_with_bad_communities());
            let counted = wait_for(CONVERGE, || {
                (n.peer(raw_peer).stats.treat_as_withdraw == 1).then_some(())
            });
            assert!(counted.is_some(), "{:?}", n.peer(raw_peer));
            assert_eq!(n.status(raw_peer).state, State::Established);

            // Invalid Network Field: NOTIFICATION 3/10, then the speaker closes.
            let t0 = Instant::now();
            raw.send(&update_with_prefix_length_33());
            let notif = raw.until_notification().expect("a NOTIFICATION before EOF");
            assert_eq!((notif.code, notif.subcode), (3, 10), "{notif:?}");
            assert!(
                raw.read().is_none(),
                "connection closed after the NOTIFICATION"
            );
            eprintln!("NOTIFICATION {notif} after {:?}", t0.elapsed());
            let info = n.peer(raw_peer);
            assert_ne!(info.status.state, State::Established, "{info:?}");
            assert_eq!(
                info.stats.notifications_sent.get(&(3, 10)),
                Some(&1),
                "{info:?}"
            );
            // Keep watching BIRD through the speaker's reconnect attempts to the raw peer.
            let t1 = Instant::now();
            while t1.elapsed() < Duration::from_secs(2) {
                assert_eq!(n.status(bird_peer).state, State::Established);
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
        done.store(true, Ordering::Relaxed);
        let watched = watcher.join().expect("watcher thread");
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
        let polls = watched.unwrap_or_else(|e| panic!("{e}"));
        assert!(polls >= 10, "BIRD watched only {polls} times");
    });

    // The speaker's side of the BIRD session: never reset.
    let info = n.peer(bird_peer);
    assert_eq!(info.status.state, State::Established, "{info:?}");
    assert_eq!(
        (info.stats.established, info.stats.flaps),
        (1, 0),
        "{info:?}"
    );
    let now = bird_since(&bird, "n0v4");
    assert!(same_since(&now, &since), "{now:?} {since:?}");
    let r = wait_bird_route(&bird, &v4_prefix(0), "n0v4");
    check_bird_route(&r, node_addr(0, false), &[EBGP_AS], false);
}
