//! A hostile BGP peer against the real `vipr` binary, while a real BIRD 2 session stays
//! Established throughout.
//!
//! ```text
//!   router ns: BIRD 10.55.0.1 (passive) ──┐ br0
//!   node0 ns:  vipr 10.55.0.11 ───────────┤  peers: BIRD, and 10.55.0.12 (listening on :179)
//!   node1 ns:  raw peer 10.55.0.12 ───────┤  connects to vipr, sends what each case says
//!   node2 ns:  scanner 10.55.0.13 ────────┘  not a peer: hammers vipr's port 179
//! ```
//!
//! Each case opens a new connection to vipr's listener (vipr's own attempts go to port 1179
//! where nothing listens, so its reconnect backoff never delays a case) and checks the RFC
//! 4271 / RFC 7606 reaction: the NOTIFICATION (code, subcode) and the close, or
//! treat-as-withdraw with the session kept. A watcher thread checks BIRD's session state and
//! its "since" time every 50 ms; vipr's RSS is sampled after every case. Last, 2,000
//! connections from an address that is not a peer: vipr refuses each, and logs it once.

mod daemon_common;
mod raw_peer;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bgp::codec::Message;
use daemon_common::*;
use raw_peer::*;
use serde_json::Value;
use testbed::{wait_for, Bird, Lab};

const RAW: Ipv4Addr = Ipv4Addr::new(10, 55, 0, 12);
const RAW_AS: u32 = ROUTER_AS;

struct Ctx<'a> {
    lab: &'a Lab,
    vipr: &'a Vipr,
    node: SocketAddr,
    next_prefix: u32,
}

impl Ctx<'_> {
    /// A new connection, vipr's OPEN read.
    fn fresh(&self) -> RawPeer {
        let mut p = RawPeer::connect(&self.lab.nodes[1], self.node, Duration::from_secs(6));
        let o = p.read_open();
        assert_eq!(o.asn, NODE_AS);
        p
    }

    fn raw_status(&self) -> Value {
        let s = self.vipr.status().expect("vipr status");
        Vipr::peer(&s, &RAW.to_string())
    }

    /// A session in Established (vipr says so).
    fn established(&self) -> RawPeer {
        let mut p = self.fresh();
        assert!(p.send(&open(RAW_AS, 9, RAW)));
        assert!(p.send(&msg(4, &[])));
        self.vipr.wait_status("the raw peer Established", |s| {
            Vipr::peer(s, &RAW.to_string())["state"] == "Established"
        });
        p
    }

    /// Waits until vipr no longer has the raw peer Established (a new connection would
    /// collide with the old session otherwise).
    fn wait_down(&self) {
        self.vipr.wait_status("the raw peer's session closed", |s| {
            Vipr::peer(s, &RAW.to_string())["state"] != "Established"
        });
    }

    fn prefix(&mut self) -> Ipv4Addr {
        self.next_prefix += 1;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + self.next_prefix)
    }
}

/// What a case expects.
enum Want {
    /// This NOTIFICATION, then the connection closes.
    Notification(u8, u8),
    /// RFC 7606 treat-as-withdraw: the session stays up, the message's prefixes are not
    /// counted as received, a following valid UPDATE is.
    StaysUp,
    /// RFC 7606 attribute discard: the session stays up and the route counts (the bad
    /// attribute alone is dropped), as does a following valid UPDATE.
    Discarded,
}

/// One case: a name, what to send on which kind of connection, and the reaction.
struct Case {
    name: &'static str,
    established: bool,
    bytes: Vec<u8>,
    want: Want,
}

fn header(len: u16, t: u8) -> Vec<u8> {
    let mut h = vec![0xff; 16];
    h.extend_from_slice(&len.to_be_bytes());
    h.push(t);
    h
}

fn update(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    msg(2, &update_body(&[], attrs, nlri))
}

fn cases() -> Vec<Case> {
    let nh = RAW;
    let good = good_attrs(RAW_AS, nh);
    let nlri = [32, 198, 51, 100, 7];
    let with = |extra: &[u8]| [&good[..], extra].concat();
    let mut bad_marker = msg(4, &[]);
    bad_marker[3] = 0;
    let open_body = |version: u8, hold: u16, params: &[u8]| {
        let mut b = vec![version, 0xfd, 0xe8];
        b.extend_from_slice(&hold.to_be_bytes());
        b.extend_from_slice(&RAW.octets());
        b.push(params.len() as u8);
        b.extend_from_slice(params);
        msg(1, &b)
    };
    let mut attr_list_overrun = update(&good, &nlri);
    attr_list_overrun[22] = 0xff; // Total Path Attribute Length beyond the message
    let mut as_path_seg7 = good.clone();
    as_path_seg7[7] = 7;
    let mut origin_optional = good.clone();
    origin_optional[0] = 0xc0;
    let unreach = [0x80, 15, 3, 0, 2, 1];
    let mut big = update(&good, &nlri);
    big.resize(4097, 0); // the rest of the NLRI: /0 routes
    big[16..18].copy_from_slice(&4097u16.to_be_bytes());
    use Want::*;
    let c = |name, established, bytes, want| Case {
        name,
        established,
        bytes,
        want,
    };
    vec![
        c("bad marker", false, bad_marker, Notification(1, 1)),
        c("length 18 (< 19)", false, header(18, 4), Notification(1, 2)),
        c(
            "OPEN header of length 4097, no body",
            false,
            header(4097, 1),
            Notification(1, 2),
        ),
        c(
            "KEEPALIVE of length 20",
            false,
            msg(4, &[0]),
            Notification(1, 2),
        ),
        c("unknown type 9", false, msg(9, &[]), Notification(1, 3)),
        c(
            "OPEN version 3",
            false,
            open_body(3, 9, &[]),
            Notification(2, 1),
        ),
        c(
            "OPEN from the wrong AS",
            false,
            open(65099, 9, RAW),
            Notification(2, 2),
        ),
        c(
            "OPEN hold time 2",
            false,
            open_body(4, 2, &[]),
            Notification(2, 6),
        ),
        c(
            "OPEN optional parameter type 1",
            false,
            open_body(4, 9, &[1, 1, 0]),
            Notification(2, 4),
        ),
        c(
            "UPDATE of 4097 octets without extended messages",
            true,
            big,
            Notification(1, 2),
        ),
        c(
            "UPDATE header of 5000 octets, 64 sent, no extended messages",
            true,
            [header(5000, 2), vec![0; 64]].concat(),
            Notification(1, 2),
        ),
        c(
            "UPDATE attribute overrunning the list",
            true,
            update(&with(&[0xc0, 8, 8, 0, 0]), &nlri),
            StaysUp,
        ),
        c(
            "UPDATE attribute list beyond the message",
            true,
            attr_list_overrun,
            Notification(3, 1),
        ),
        c(
            "UPDATE duplicate ORIGIN",
            true,
            update(&with(&[0x40, 1, 1, 2]), &nlri),
            Discarded,
        ),
        c(
            "UPDATE duplicate MP_UNREACH_NLRI",
            true,
            update(&[unreach, unreach].concat(), &[]),
            Notification(3, 1),
        ),
        c(
            "UPDATE ORIGIN flagged optional",
            true,
            update(&origin_optional, &nlri),
            StaysUp,
        ),
        c(
            "UPDATE MP_UNREACH_NLRI flagged well-known",
            true,
            update(&[0x40, 15, 3, 0, 2, 1], &[]),
            Notification(3, 4),
        ),
        c(
            "UPDATE AS_PATH segment type 7",
            true,
            update(&as_path_seg7, &nlri),
            StaysUp,
        ),
        c(
            "UPDATE NEXT_HOP of 3 octets",
            true,
            update(&[&good[..13], &[0x40, 3, 3, 10, 55, 0][..]].concat(), &nlri),
            StaysUp,
        ),
        c(
            "UPDATE NLRI length 33",
            true,
            update(&good, &[33, 198, 51, 100, 7, 0]),
            Notification(3, 10),
        ),
        c(
            "UPDATE unrecognized well-known attribute",
            true,
            update(&with(&[0x40, 99, 1, 0]), &nlri),
            Notification(3, 2),
        ),
    ]
}

/// Runs one case; returns how long the reaction took.
fn run_case(cx: &mut Ctx, case: &Case) -> Duration {
    let mut p = if case.established {
        cx.established()
    } else {
        cx.fresh()
    };
    let before = cx.raw_status()["prefixes_received"].as_u64().unwrap_or(0);
    let t0 = Instant::now();
    assert!(p.send(&case.bytes), "{}: send", case.name);
    match case.want {
        Want::Notification(code, sub) => {
            let n = p
                .until_notification()
                .unwrap_or_else(|| panic!("{}: no NOTIFICATION", case.name));
            assert_eq!((n.code, n.subcode), (code, sub), "{}: {n}", case.name);
            assert!(
                p.closed_within(Duration::from_secs(3)),
                "{}: not closed",
                case.name
            );
        }
        Want::StaysUp | Want::Discarded => {
            let counted = before + 1 + matches!(case.want, Want::Discarded) as u64;
            let good = announce(RAW_AS, RAW, cx.prefix());
            assert!(p.send(&good), "{}: send the valid UPDATE", case.name);
            let got = wait_for(CONVERGE, || {
                let n = cx.raw_status()["prefixes_received"].as_u64()?;
                (n >= counted).then_some(n)
            });
            std::thread::sleep(Duration::from_millis(100));
            let got = got.and(cx.raw_status()["prefixes_received"].as_u64());
            assert_eq!(
                got,
                Some(counted),
                "{}: prefixes counted (before {before})",
                case.name
            );
            let st = cx.raw_status();
            assert_eq!(st["state"], "Established", "{}: {st:#}", case.name);
            assert!(p.send(&msg(3, &[6, 2])), "{}: Cease", case.name);
            cx.wait_down();
        }
    }
    t0.elapsed()
}

#[test]
fn hostile_peers_get_the_right_notification_and_bird_stays_established() {
    let lab = Lab::new(3);
    let dir = workdir();
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let mut env = base_env(&dir.path);
    env.insert(
        "bgp_peers".into(),
        format!("10.55.0.1:{ROUTER_AS}::false,{RAW}:{RAW_AS}::false:1179"),
    );
    env.insert("vipr_bgp_listen".into(), format!("{}:179", Lab::node_v4(0)));
    let vipr = Vipr::start(&lab.nodes[0], &env, &[], &dir.join("vipr.log"));
    let pid = vipr.pid();
    eventually(
        "BIRD Established",
        || bird.log(),
        || (bird_session(&bird).0 == "up").then_some(()),
    );
    eventually(
        "the VIP at BIRD",
        || bird.log(),
        || bird_route(&bird, &format!("{VIP4}/32"), "n0"),
    );
    // The baseline once BIRD's protocol has settled: its "since" also moves when a second
    // channel (IPv6) comes up just after the first route.
    let since = eventually(
        "BIRD's protocol state settled",
        || bird.log(),
        || {
            let a = bird_session(&bird);
            std::thread::sleep(Duration::from_millis(500));
            same_session(&bird_session(&bird), &a).then_some(a)
        },
    );
    let mut cx = Ctx {
        lab: &lab,
        vipr: &vipr,
        node: SocketAddr::from((Lab::node_v4(0), 179)),
        next_prefix: 0,
    };
    // Warm-up: one clean session, then the RSS baseline.
    let mut p = cx.established();
    p.drain(Duration::from_millis(300));
    p.send(&msg(3, &[6, 2]));
    drop(p);
    cx.wait_down();
    let base_rss = rss_kib(pid);
    let mut peak = base_rss;

    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut polls = 0u32;
            while !done.load(Ordering::Relaxed) {
                let now = bird_session(&bird);
                if !same_session(&now, &since) {
                    return Err(format!("BIRD's session changed: {now:?}, was {since:?}"));
                }
                polls += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(polls)
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut passed = 0;
            for case in cases() {
                let took = run_case(&mut cx, &case);
                let rss = rss_kib(pid);
                peak = peak.max(rss);
                eprintln!(
                    "PASS {:<50} {:>6} ms  RSS {rss} KiB",
                    case.name,
                    took.as_millis()
                );
                passed += 1;
            }
            passed += timing_cases(&mut cx, pid, &mut peak);
            passed += scanner(&cx);
            passed
        }));
        done.store(true, Ordering::Relaxed);
        let watched = watcher.join().expect("watcher");
        let passed = match result {
            Ok(n) => n,
            Err(p) => std::panic::resume_unwind(p),
        };
        let polls = watched.unwrap_or_else(|e| panic!("{e}"));
        eprintln!("hostile cases passed: {passed}; BIRD watched {polls} times");
        assert!(polls >= 20);
    });

    // vipr's side of the BIRD session never reset either, and vipr is still running.
    let s = vipr.status().expect("status");
    let b = Vipr::peer(&s, "10.55.0.1");
    assert_eq!(
        (b["state"].as_str(), b["flaps"].as_u64()),
        (Some("Established"), Some(0)),
        "{b:#}"
    );
    let end = bird_session(&bird);
    assert!(same_session(&end, &since), "{end:?}, was {since:?}");
    let end_rss = rss_kib(pid);
    eprintln!("vipr RSS: baseline {base_rss} KiB, peak {peak} KiB, end {end_rss} KiB");
    assert!(
        peak <= base_rss + 8 * 1024,
        "RSS grew from {base_rss} to {peak} KiB"
    );
}

/// The cases that take time: a flood of UPDATEs, a slow-loris peer, a peer that never sends
/// KEEPALIVE. Returns how many passed (all, or it panics).
fn timing_cases(cx: &mut Ctx, pid: u32, peak: &mut u64) -> usize {
    // A flood: 50,000 UPDATEs of one /32 each, as fast as TCP takes them; every one is
    // decoded and counted, nothing is kept, the session stays up.
    let mut p = cx.established();
    let before = cx.raw_status()["prefixes_received"].as_u64().unwrap_or(0);
    let t0 = Instant::now();
    let n = 50_000u32;
    let mut batch = Vec::new();
    for i in 0..n {
        let pfx = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i);
        batch.extend_from_slice(&announce(RAW_AS, RAW, pfx));
        if batch.len() > 64 * 1024 {
            assert!(p.send(&batch), "flood: vipr closed the connection");
            batch.clear();
            *peak = (*peak).max(rss_kib(pid));
        }
    }
    assert!(p.send(&batch));
    assert!(p.send(&msg(4, &[])));
    let got = wait_for(CONVERGE, || {
        let c = cx.raw_status()["prefixes_received"].as_u64()?;
        (c >= before + n as u64).then_some(c)
    });
    assert_eq!(
        got,
        Some(before + n as u64),
        "flood: every UPDATE counted once"
    );
    assert_eq!(cx.raw_status()["state"], "Established");
    let rss = rss_kib(pid);
    *peak = (*peak).max(rss);
    eprintln!(
        "PASS {:<50} {:>6} ms  RSS {rss} KiB",
        "flood of 50000 UPDATEs",
        t0.elapsed().as_millis()
    );
    p.send(&msg(3, &[6, 2]));
    drop(p);
    cx.wait_down();

    // Slow loris: an UPDATE that never completes, one octet every 400 ms. A partial message
    // does not refresh the hold timer: Hold Timer Expired after the negotiated 3 s.
    let mut p = cx.established();
    p.drain(Duration::from_millis(200));
    let u = announce(RAW_AS, RAW, cx.prefix());
    let t0 = Instant::now();
    let mut sent = 0;
    let notif = loop {
        if sent < u.len() - 1 {
            if !p.send(&u[sent..sent + 1]) {
                break None;
            }
            sent += 1;
        }
        p.s.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        match p.next() {
            Got::Msg(Message::Notification(n)) => break Some(n),
            Got::Closed => break None,
            _ if t0.elapsed() > Duration::from_secs(10) => break None,
            _ => {}
        }
    };
    let n = notif.expect("slow loris: a NOTIFICATION");
    assert_eq!((n.code, n.subcode), (4, 0), "slow loris: {n}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(10),
        "{took:?}"
    );
    eprintln!(
        "PASS {:<50} {:>6} ms  RSS {} KiB",
        "slow loris (1 octet / 400 ms)",
        took.as_millis(),
        rss_kib(pid)
    );

    // An OPEN but never a KEEPALIVE: OpenConfirm's hold timer (the negotiated 3 s).
    let mut p = cx.fresh();
    assert!(p.send(&open(RAW_AS, 9, RAW)));
    let t0 = Instant::now();
    p.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n = p
        .until_notification()
        .expect("no KEEPALIVE: a NOTIFICATION");
    assert_eq!((n.code, n.subcode), (4, 0), "no KEEPALIVE: {n}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(10),
        "{took:?}"
    );
    eprintln!(
        "PASS {:<50} {:>6} ms",
        "never a KEEPALIVE (OpenConfirm)",
        took.as_millis()
    );

    // Established, then silent: the same, after the last KEEPALIVE.
    let mut p = cx.established();
    let t0 = Instant::now();
    let n = p.until_notification().expect("silent peer: a NOTIFICATION");
    assert_eq!((n.code, n.subcode), (4, 0), "silent: {n}");
    eprintln!(
        "PASS {:<50} {:>6} ms",
        "silent after Established",
        t0.elapsed().as_millis()
    );
    *peak = (*peak).max(rss_kib(pid));
    4
}

/// A scanner (or a router not configured as a peer) hammering port 179: 2,000 connections
/// from 10.55.0.13 as fast as vipr takes them. Each is refused; the log names the address
/// once (a summary line follows when the rate limit's 60 s window ends). Returns 1.
fn scanner(cx: &Ctx) -> usize {
    const LINE: &str = "refusing connection from an unconfigured address";
    const N: usize = 2000;
    let before = cx.vipr.run_log().matches(LINE).count();
    let t0 = Instant::now();
    let (made, closed) = cx.lab.nodes[2].enter(|| {
        let (mut made, mut closed) = (0, 0);
        for _ in 0..N {
            if t0.elapsed() > Duration::from_secs(30) {
                break;
            }
            let Ok(mut s) = std::net::TcpStream::connect_timeout(&cx.node, Duration::from_secs(2))
            else {
                continue;
            };
            made += 1;
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            // vipr closes a refused connection at once: EOF (or a reset), no OPEN.
            let mut b = [0u8; 1];
            match std::io::Read::read(&mut s, &mut b) {
                Ok(0) => closed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
                _ => {}
            }
        }
        (made, closed)
    });
    let took = t0.elapsed();
    assert!(made >= N / 4, "only {made} of {N} connections in {took:?}");
    assert_eq!(closed, made, "every connection from a non-peer is closed");
    // Let vipr's log catch up with the last refusals, then count.
    std::thread::sleep(Duration::from_millis(500));
    let lines = cx.vipr.run_log().matches(LINE).count() - before;
    eprintln!(
        "PASS {:<50} {:>6} ms  {made} connections, {lines} log line(s)",
        "scanner hammering port 179",
        took.as_millis()
    );
    assert!(
        (1..=2).contains(&lines),
        "{lines} log lines for {made} refused connections from one address"
    );
    1
}
