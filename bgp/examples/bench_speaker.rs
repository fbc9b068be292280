//! Benchmark driver for the `bgp` crate: connect to one peer, wait for Established, then
//! announce N distinct IPv4 /32s in one `Speaker::announce` call and report timings.
//! Used by `labs/bench-bgp.sh`, which measures when the receiving BIRD has all N routes.
//!
//! ```text
//! bench_speaker PEER REMOTE_AS LOCAL_AS ROUTER_ID N [--hold SECS] [--base A.B.C.D]
//!               [--port P] [--rss-after SECS] [--no-monitor] [--current-thread]
//!               [--wait-usr2] [--preload]
//! ```
//!
//! The announcement happens 200 ms after Established, or with `--wait-usr2` when the
//! process receives SIGUSR2 (so that a driver can take its baselines first). With
//! `--preload` the routes are announced before the peer is added, so that they go out as
//! the initial table dump when the session comes up (the driver then times from the
//! receiver's Established); `--preload --wait-usr2` adds the peer on SIGUSR2.
//!
//! Output (one `key=value` record per line on stdout, flushed at once):
//! - `ESTABLISHED realtime_us=.. mono_ns=..`
//! - `ANNOUNCE_T0 realtime_us=.. mono_ns=.. n=..` printed immediately before `announce()`
//!   (the prefixes are generated before it, so generation is not timed)
//! - `ANNOUNCE_RETURNED dt_us=..`: `announce()` itself (RouteTable insert + watch send)
//!   (with `--preload`, ENCODED and HANDED count from ESTABLISHED instead)
//! - `ENCODED dt_us=..`: the peer task has diffed and encoded all N (stats say
//!   `prefixes_advertised == N`)
//! - `HANDED dt_us=.. updates=..`: the last UPDATE was handed to the connection's writer
//!   channel (seen when the UPDATE counter stays still for 300 ms; `dt_us` is when it last
//!   changed)
//! - `RSS vmrss_kb=.. vmhwm_kb=.. utime_ms=.. stime_ms=..` at start, after Established, on
//!   SIGUSR1 and after `--rss-after` seconds
//!
//! SIGTERM or SIGINT: shut the speaker down (Cease) and exit 0. The monitor (the
//! ENCODED/HANDED lines) polls `Speaker::peers()` every 2 ms; `--no-monitor` turns it off.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bgp::{Family, PeerConfig, RouteAttrs, ShutdownOptions, Speaker, SpeakerConfig, State};
use ipnet::{IpNet, Ipv4Net};
use tokio::signal::unix::{signal, Signal, SignalKind};

struct Args {
    peer: IpAddr,
    remote_as: u32,
    local_as: u32,
    router_id: Ipv4Addr,
    n: u32,
    hold: u16,
    base: Ipv4Addr,
    port: u16,
    rss_after: Option<f64>,
    monitor: bool,
    current_thread: bool,
    wait_usr2: bool,
    preload: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_speaker PEER REMOTE_AS LOCAL_AS ROUTER_ID N [--hold SECS] [--base A.B.C.D] \
         [--port P] [--rss-after SECS] [--no-monitor] [--current-thread] [--wait-usr2] [--preload]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let mut a = Args {
        peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        remote_as: 0,
        local_as: 0,
        router_id: Ipv4Addr::UNSPECIFIED,
        n: 0,
        hold: 90,
        base: Ipv4Addr::new(10, 128, 0, 0),
        port: 179,
        rss_after: None,
        monitor: true,
        current_thread: false,
        wait_usr2: false,
        preload: false,
    };
    let mut it = argv.iter();
    while let Some(s) = it.next() {
        let mut val = |name: &str| -> String {
            it.next().cloned().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                usage()
            })
        };
        match s.as_str() {
            "--hold" => a.hold = val("--hold").parse().unwrap_or_else(|_| usage()),
            "--base" => a.base = val("--base").parse().unwrap_or_else(|_| usage()),
            "--port" => a.port = val("--port").parse().unwrap_or_else(|_| usage()),
            "--rss-after" => {
                a.rss_after = Some(val("--rss-after").parse().unwrap_or_else(|_| usage()))
            }
            "--no-monitor" => a.monitor = false,
            "--current-thread" => a.current_thread = true,
            "--wait-usr2" => a.wait_usr2 = true,
            "--preload" => a.preload = true,
            "-h" | "--help" => usage(),
            _ if s.starts_with("--") => usage(),
            _ => pos.push(s.clone()),
        }
    }
    if pos.len() != 5 {
        usage();
    }
    a.peer = pos[0].parse().unwrap_or_else(|_| usage());
    a.remote_as = pos[1].parse().unwrap_or_else(|_| usage());
    a.local_as = pos[2].parse().unwrap_or_else(|_| usage());
    a.router_id = pos[3].parse().unwrap_or_else(|_| usage());
    a.n = pos[4].parse().unwrap_or_else(|_| usage());
    a
}

/// Prints one line and flushes (stdout is a pipe or file under the bench script).
fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn clock_ns(clock: libc::clockid_t) -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn stamps() -> String {
    format!(
        "realtime_us={} mono_ns={}",
        clock_ns(libc::CLOCK_REALTIME) / 1000,
        clock_ns(libc::CLOCK_MONOTONIC)
    )
}

/// VmRSS and VmHWM (peak) from /proc/self/status, in kB, plus user and system CPU time.
fn rss_line(when: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    format!(
        "RSS when={when} vmrss_kb={} vmhwm_kb={} utime_ms={} stime_ms={}",
        field("VmRSS:"),
        field("VmHWM:"),
        ms(ru.ru_utime),
        ms(ru.ru_stime)
    )
}

/// `n` distinct /32s counting up from `base`.
fn prefixes(base: Ipv4Addr, n: u32) -> Vec<IpNet> {
    let b = u32::from(base);
    (0..n)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(b.wrapping_add(i)), 32).expect("/32")))
        .collect()
}

struct Signals {
    usr1: Signal,
    usr2: Signal,
    term: Signal,
    int: Signal,
}

/// Waits for SIGUSR2 (answering SIGUSR1 meanwhile); false on SIGTERM or SIGINT.
async fn wait_usr2(sig: &mut Signals) -> bool {
    say("WAITING for SIGUSR2".to_string());
    loop {
        tokio::select! {
            _ = sig.usr2.recv() => return true,
            _ = sig.usr1.recv() => say(rss_line("sigusr1")),
            _ = sig.term.recv() => return false,
            _ = sig.int.recv() => return false,
        }
    }
}

async fn run(a: Args) {
    say(rss_line("start"));
    let mut sig = Signals {
        usr1: signal(SignalKind::user_defined1()).expect("SIGUSR1 handler"),
        usr2: signal(SignalKind::user_defined2()).expect("SIGUSR2 handler"),
        term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
        int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
    };
    let speaker = Speaker::start(SpeakerConfig {
        router_id: Some(a.router_id),
        ..SpeakerConfig::default()
    })
    .await
    .expect("start speaker");
    let mut t0 = Instant::now();
    if a.preload {
        let routes = prefixes(a.base, a.n);
        t0 = Instant::now();
        say(format!("ANNOUNCE_T0 {} n={} preload", stamps(), a.n));
        speaker.announce(routes, RouteAttrs::default());
        say(format!(
            "ANNOUNCE_RETURNED dt_us={}",
            t0.elapsed().as_micros()
        ));
        say(rss_line("preloaded"));
        if a.wait_usr2 && !wait_usr2(&mut sig).await {
            return;
        }
    }
    let mut cfg = PeerConfig::new(a.peer, a.remote_as, a.local_as);
    cfg.port = a.port;
    cfg.hold_time = a.hold;
    cfg.families = vec![Family::Ipv4Unicast];
    speaker.add_peer(cfg).await.expect("add peer");
    let mut status = speaker
        .watch_peer(a.peer)
        .await
        .expect("speaker alive")
        .expect("peer just added");
    status
        .wait_for(|s| s.state == State::Established)
        .await
        .expect("peer task alive");
    say(format!("ESTABLISHED {}", stamps()));
    if a.preload {
        // Time the initial dump from Established instead.
        t0 = Instant::now();
    } else {
        // Let the initial End-of-RIB go out so that it is not part of the measurement.
        tokio::time::sleep(Duration::from_millis(200)).await;
        say(rss_line("established"));
    }
    if a.wait_usr2 && !a.preload && !wait_usr2(&mut sig).await {
        return;
    }

    if !a.preload {
        let routes = prefixes(a.base, a.n);
        t0 = Instant::now();
        say(format!("ANNOUNCE_T0 {} n={}", stamps(), a.n));
        speaker.announce(routes, RouteAttrs::default());
        say(format!(
            "ANNOUNCE_RETURNED dt_us={}",
            t0.elapsed().as_micros()
        ));
    }

    if a.monitor {
        let sp = speaker.clone();
        let n = a.n as u64;
        tokio::spawn(async move {
            let mut encoded = false;
            let mut last = (0u64, t0);
            loop {
                let Ok(peers) = sp.peers().await else { return };
                let Some(p) = peers.first() else { return };
                let now = Instant::now();
                if !encoded && p.stats.prefixes_advertised >= n {
                    encoded = true;
                    say(format!("ENCODED dt_us={}", (now - t0).as_micros()));
                }
                let updates = p.stats.sent(bgp::codec::MessageType::Update);
                if updates != last.0 {
                    last = (updates, now);
                } else if encoded && now - last.1 > Duration::from_millis(300) {
                    say(format!(
                        "HANDED dt_us={} updates={}",
                        (last.1 - t0).as_micros(),
                        updates
                    ));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    if let Some(secs) = a.rss_after {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            say(rss_line("after-delay"));
        });
    }

    loop {
        tokio::select! {
            _ = sig.usr1.recv() => say(rss_line("sigusr1")),
            _ = sig.term.recv() => break,
            _ = sig.int.recv() => break,
        }
    }
    say(rss_line("exit"));
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        speaker.shutdown(ShutdownOptions {
            message: "bench done".into(),
            drain: None,
        }),
    )
    .await;
}

fn main() {
    let a = parse_args();
    let mut rt = if a.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = rt.enable_all().build().expect("tokio runtime");
    rt.block_on(run(a));
}
