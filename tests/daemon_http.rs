//! End to end: the HTTP endpoints on `prometheus_server` facing the network. vipr in node 0
//! (10.55.0.11) listens on every address (kube-vip's `:2112`) with BGP and BFD to BIRD in the
//! router namespace (10.55.0.1), which also plays Prometheus; node 1 (10.55.0.12) plays a
//! hostile client.
//!
//! - `/metrics`, `/healthz` and `/readyz` answer anyone; `/status` answers this host only
//!   (403 from the router) until `vipr_status_allow` names the router's network (SIGHUP);
//!   neither document carries BFD discriminators.
//! - A taken `prometheus_server` port: vipr exits 1 at once with one line naming the
//!   address. A SIGHUP to a taken address keeps serving on the old one and logs an error
//!   naming the new one; once the new address is free, vipr moves there by itself.
//! - 5,000 slow clients from node 1 (partial headers, 1 KiB a second each, reconnecting when
//!   cut): vipr's RSS stays bounded, a slow client on another address is cut at the header
//!   deadline, BIRD's BGP and BFD sessions do not flap, and scrapes from the router and
//!   `/healthz` from the node answer throughout.

mod daemon_common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use daemon_common::*;
use testbed::{wait_for, Bird, Lab, Netns};

/// Where vipr listens, as seen from the other namespaces.
const NODE_HTTP: &str = "10.55.0.11:2112";

fn yaml(state: &Path, extra: &str) -> String {
    format!(
        "bgp_enable: true\ncp_enable: true\naddress: {VIP4}\nbgp_as: {NODE_AS}\n\
         bgp_hold_time: 3\nbgp_keepalive_interval: 1\nvipr_state_dir: {}\n\
         bgp_peers:\n  - 10.55.0.1:{ROUTER_AS}::false:179::true;300;300;3\n{extra}",
        state.display()
    )
}

#[test]
fn status_is_for_this_host_and_no_document_carries_discriminators() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let _bird = Bird::start(&lab.router, &bird_bfd_conf(&[0], 300));
    let dir = workdir();
    let file = dir.join("vipr.yaml");
    let state = dir.join("state");
    std::fs::write(&file, yaml(&state, "prometheus_server: \":2112\"\n")).unwrap();
    let args = ["--config", file.to_str().unwrap()];
    let mut vipr = Vipr::start(node, &Default::default(), &args, &dir.join("vipr.log"));
    let s = vipr.wait_bgp_and_bfd_up();
    let doc = s.to_string();
    assert!(!doc.contains("discriminator"), "{s:#}");

    // Prometheus (the router) scrapes; it does not read the detailed document.
    let (code, metrics) = http_get(&lab.router, NODE_HTTP, "/metrics").expect("/metrics");
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics.contains("vipr_bfd_session_state{peer=\"10.55.0.1\"} 4"),
        "{metrics}"
    );
    assert!(!metrics.contains("discriminator"), "{metrics}");
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            http_get(&lab.router, NODE_HTTP, path).map(|r| r.0),
            Some(200),
            "{path}"
        );
    }
    let (code, body) = http_get(&lab.router, NODE_HTTP, "/status").expect("/status");
    assert_eq!(code, 403, "/status from the router: {body}");
    assert!(!body.contains("10.55.0.1"), "{body}");

    // This host reads it: over loopback (`vipr status`) and over its own address.
    let text = ns_run(&node.name, &[vipr_bin(), "status", "--addr", HTTP]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("BFD PEER") && !text.contains("LOCAL ID"),
        "{text}"
    );
    assert_eq!(
        http_get(node, NODE_HTTP, "/status").map(|r| r.0),
        Some(200),
        "/status from the node's own address"
    );

    // An explicit setting opens it to the router's network.
    let open = "prometheus_server: \":2112\"\nvipr_status_allow: 10.55.0.0/24\n";
    vipr.reload(&file, &yaml(&state, open), 1);
    let (code, body) = eventually(
        "/status for the router",
        || vipr.log(),
        || http_get(&lab.router, NODE_HTTP, "/status").filter(|r| r.0 == 200),
    );
    assert!(
        body.contains("\"peers\"") && !body.contains("discriminator"),
        "{code} {body}"
    );
    vipr.assert_running();
}

/// Holds `addr` inside `ns` the way another daemon (kube-vip) would.
fn occupy(ns: &Netns, addr: &str) -> TcpListener {
    ns.enter(|| TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")))
}

#[test]
fn a_taken_port_fails_fast_and_a_reload_to_one_keeps_the_listener() {
    let ns = Netns::new("vn");
    let dir = workdir();
    let file = dir.join("vipr.yaml");
    let state = dir.join("state");

    // At start: exit 1 at once, one line naming the address.
    let taken = occupy(&ns, HTTP);
    std::fs::write(&file, yaml(&state, &format!("prometheus_server: {HTTP}\n"))).unwrap();
    let args = ["--config", file.to_str().unwrap()];
    let t = Instant::now();
    let mut vipr = Vipr::start(&ns, &Default::default(), &args, &dir.join("start.log"));
    let st = vipr.wait_exit(Duration::from_secs(10));
    eprintln!(
        "MEASURED taken port: vipr exited after {:?} ({st})",
        t.elapsed()
    );
    assert_eq!(st.code(), Some(1), "{}", vipr.log());
    let lines: Vec<String> = vipr
        .log()
        .lines()
        .filter(|l| l.starts_with("vipr: "))
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 1, "{}", vipr.log());
    assert!(
        lines[0].contains(HTTP) && lines[0].contains("prometheus_server"),
        "{lines:?}"
    );
    drop(taken);

    // While running: a SIGHUP to a taken address keeps the old listener.
    let mut vipr = Vipr::start(&ns, &Default::default(), &args, &dir.join("run.log"));
    eventually(
        "HTTP on the first address",
        || vipr.log(),
        || http_get(&ns, HTTP, "/healthz").filter(|r| r.0 == 200),
    );
    let other = "127.0.0.1:2113";
    let taken = occupy(&ns, other);
    vipr.reload(
        &file,
        &yaml(&state, &format!("prometheus_server: {other}\n")),
        1,
    );
    eventually(
        "an error naming the taken address",
        || vipr.run_log(),
        || {
            vipr.run_log()
                .lines()
                .any(|l| l.contains("ERROR") && l.contains(other))
                .then_some(())
        },
    );
    assert_eq!(
        http_get(&ns, HTTP, "/healthz").map(|r| r.0),
        Some(200),
        "the old listener must stay:\n{}",
        vipr.run_log()
    );
    vipr.assert_running();

    // Freed: vipr moves there without another SIGHUP.
    drop(taken);
    eventually(
        "HTTP on the second address once free",
        || vipr.run_log(),
        || http_get(&ns, other, "/healthz").filter(|r| r.0 == 200),
    );
    assert!(
        wait_for(Duration::from_secs(5), || http_get(&ns, HTTP, "/healthz")
            .is_none()
            .then_some(()))
        .is_some(),
        "the old address still answers"
    );
    vipr.signal(libc::SIGTERM);
    assert_eq!(vipr.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

/// `VmRSS` and `VmHWM` (peak) of a process, KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Raises this process's open-file limit (the clients' sockets; vipr inherits it too, so
/// before its connection cap it could hold every one of them).
fn raise_nofile(want: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    assert!(
        r.rlim_max >= want,
        "hard RLIMIT_NOFILE {} < {want}",
        r.rlim_max
    );
    if r.rlim_cur < want {
        r.rlim_cur = want;
        // SAFETY: as above.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
        assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    }
}

/// What the slow clients saw.
#[derive(Debug, Default)]
struct Attack {
    /// Connections established (first wave and reconnections).
    connected: u64,
    /// Connects that failed or timed out.
    failed: u64,
    /// Connections the server closed (noticed at the next round, so "at once" reads ~1 s).
    closed: u64,
    /// The longest a closed connection had lived.
    longest_closed: Duration,
    /// Still open when the attack ended.
    open_at_end: u64,
    /// The age of the oldest of those.
    oldest_open: Duration,
}

struct SlowConn {
    s: TcpStream,
    opened: Instant,
}

fn slow_connect(to: SocketAddr) -> Option<SlowConn> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(1)).ok()?;
    s.set_nonblocking(true).ok()?;
    let _ = s.write(format!("GET /metrics HTTP/1.1\r\nHost: {to}\r\n").as_bytes());
    Some(SlowConn {
        s,
        opened: Instant::now(),
    })
}

/// Whether the server has closed the connection (EOF or reset), else one more header line
/// (a part of it is as good: the head never ends anyway).
#[allow(clippy::unused_io_amount)]
fn slow_step(c: &mut SlowConn, pad: &[u8]) -> bool {
    let mut b = [0u8; 512];
    match c.s.read(&mut b) {
        Ok(0) => return true,
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(_) => return true,
    }
    match c.s.write(pad) {
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// `n` slow clients to `to` for `how_long`: every second each open one sends another 1 KiB
/// header line, never ending the head; those cut are reconnected (up to 1,000 a second).
fn slow_clients(to: SocketAddr, n: usize, how_long: Duration) -> Attack {
    let mut a = Attack::default();
    let mut conns: Vec<Option<SlowConn>> = Vec::with_capacity(n);
    let pad = format!("X-Pad: {}\r\n", "a".repeat(1016));
    let start = Instant::now();
    for _ in 0..n {
        let c = slow_connect(to);
        a.connected += c.is_some() as u64;
        a.failed += c.is_none() as u64;
        conns.push(c);
    }
    eprintln!("slow clients: first wave of {n} in {:?}", start.elapsed());
    while start.elapsed() < how_long {
        let round = Instant::now();
        let mut budget = 1000;
        for slot in conns.iter_mut() {
            if let Some(c) = slot {
                if slow_step(c, pad.as_bytes()) {
                    a.closed += 1;
                    a.longest_closed = a.longest_closed.max(c.opened.elapsed());
                    *slot = None;
                }
            } else if budget > 0 {
                budget -= 1;
                *slot = slow_connect(to);
                a.connected += slot.is_some() as u64;
                a.failed += slot.is_none() as u64;
            }
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(round.elapsed()));
    }
    for c in conns.iter().flatten() {
        a.open_at_end += 1;
        a.oldest_open = a.oldest_open.max(c.opened.elapsed());
    }
    a
}

/// One slow client alone on its address: how long until the server cuts it (`None`: never
/// within `limit`).
fn cut_after(to: SocketAddr, limit: Duration) -> Option<Duration> {
    let mut c = slow_connect(to)?;
    while c.opened.elapsed() < limit {
        if slow_step(&mut c, b"X") {
            return Some(c.opened.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn five_thousand_slow_clients_leave_memory_sessions_and_scrapes_alone() {
    const CLIENTS: usize = 5000;
    const ATTACK: Duration = Duration::from_secs(30);
    raise_nofile(CLIENTS as u64 + 2000);
    let lab = Lab::new(2);
    let (node, hostile) = (&lab.nodes[0], &lab.nodes[1]);
    let bird = Bird::start(&lab.router, &bird_bfd_conf(&[0], 300));
    let dir = workdir();
    let mut env = bfd_env(&dir.join("state"), 300);
    env.insert("prometheus_server".into(), ":2112".into());
    let vipr = Vipr::start(node, &env, &[], &dir.join("vipr.log"));
    let before = vipr.wait_bgp_and_bfd_up();
    let bird_before = bird_session(&bird);
    for _ in 0..3 {
        // Warm up what a scrape allocates.
        http_get(&lab.router, NODE_HTTP, "/metrics").expect("/metrics before");
    }
    let (rss0, _) = rss_kib(vipr.pid());
    let to: SocketAddr = NODE_HTTP.parse().unwrap();

    let t0 = Instant::now();
    let (attack, scrapes, healthz, lone, peak_rss) = std::thread::scope(|s| {
        let attack = s.spawn(|| hostile.enter(|| slow_clients(to, CLIENTS, ATTACK)));
        let lone = s.spawn(|| lab.router.enter(|| cut_after(to, ATTACK)));
        let healthz = s.spawn(|| {
            let mut seen = Vec::new();
            while t0.elapsed() < ATTACK {
                seen.push(http_get(node, HTTP, "/healthz").map(|r| r.0));
                std::thread::sleep(Duration::from_millis(500));
            }
            seen
        });
        let mut scrapes = Vec::new();
        let mut peak = 0;
        while t0.elapsed() < ATTACK {
            let t = Instant::now();
            let r = http_get(&lab.router, NODE_HTTP, "/metrics");
            let ok = r.is_some_and(|(c, b)| c == 200 && b.contains("vipr_build_info"));
            scrapes.push((ok, t.elapsed()));
            peak = peak.max(rss_kib(vipr.pid()).0);
            std::thread::sleep(Duration::from_millis(1000));
        }
        (
            attack.join().expect("slow clients"),
            scrapes,
            healthz.join().expect("healthz"),
            lone.join().expect("lone slow client"),
            peak,
        )
    });
    let (_, hwm) = rss_kib(vipr.pid());
    let slowest = scrapes.iter().map(|s| s.1).max().unwrap_or_default();
    let failed_scrapes = scrapes.iter().filter(|s| !s.0).count();
    eprintln!(
        "MEASURED slow clients: {attack:?}; RSS {rss0} KiB before, {peak_rss} KiB peak sampled, \
         VmHWM {hwm} KiB; {} scrapes from the router, {failed_scrapes} failed, slowest {slowest:?}; \
         lone slow client cut after {lone:?}; /healthz {:?}",
        scrapes.len(),
        healthz.iter().filter(|c| **c != Some(200)).count()
    );
    let ctx = || format!("{attack:?}\n{}", vipr.log());
    assert!(attack.connected >= CLIENTS as u64, "{}", ctx());
    // Each hostile connection is refused at once or cut at the header deadline (10 s).
    assert!(
        attack.longest_closed <= Duration::from_secs(25)
            && attack.oldest_open <= Duration::from_secs(25),
        "{}",
        ctx()
    );
    assert!(
        hwm.saturating_sub(rss0) < 24 * 1024,
        "RSS grew from {rss0} KiB to a peak of {hwm} KiB"
    );
    assert_eq!(failed_scrapes, 0, "{scrapes:?}");
    assert!(healthz.iter().all(|c| *c == Some(200)), "{healthz:?}");
    let lone = lone.unwrap_or_else(|| panic!("a slow client was never cut\n{}", ctx()));
    assert!(
        lone >= Duration::from_secs(8) && lone <= Duration::from_secs(25),
        "lone slow client cut after {lone:?} (header deadline 10 s)"
    );
    let after = vipr.status().expect("status after");
    for s in [&before, &after] {
        let p = Vipr::peer(s, "10.55.0.1");
        assert_eq!(
            (p["flaps"].as_u64(), p["bfd"]["flaps"].as_u64()),
            (Some(0), Some(0)),
            "{p:#}"
        );
    }
    let after = bird_session(&bird);
    assert!(
        same_session(&after, &bird_before),
        "BIRD's session flapped: {bird_before:?} then {after:?}"
    );
    assert!(
        bird.birdc("show bfd sessions").contains("Up"),
        "{}",
        bird.birdc("show bfd sessions")
    );
}
