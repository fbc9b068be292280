//! Churn soak: Services created, re-annotated and deleted against a real kube-apiserver
//! 1.20.2 while BGP sessions flap, then proof that nothing is left behind.
//!
//! ```text
//!   router ns: kube-apiserver + etcd 10.55.0.1, FRR 10.55.0.1 (active, AS 65000) ─┐ br0
//!   node0 ns:  vipr 10.55.0.11 (svc_enable, listening on :179) ────────────────────┤
//!   node1 ns:  raw peer 10.55.0.12: connect, OPEN, read the table, Cease, again ───┘
//! ```
//!
//! `VIPR_SOAK_OPS` Service operations (create → annotate with a new address → delete, per
//! name, from 4 threads; default 1,000) and `VIPR_SOAK_FLAPS` session flaps (default 100):
//! the raw peer's sessions, plus `clear bgp` of FRR's session every 50th flap. After a
//! warm-up the test records vipr's RSS, threads and sockets; afterwards it checks that the
//! routes at FRR are exactly the Services that exist, that the node's `lo` has exactly their
//! addresses, that no thread or socket leaked (connections to the API server are the HTTP
//! client's pool, counted apart and bounded), and that RSS is within 5% of the warm-up
//! value. RSS is sampled every second and printed (`VIPR_SOAK_REPORT` also writes the
//! series to a file); labs/soak.sh runs the long version.

mod daemon_common;
mod k8s_common;
mod raw_peer;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use daemon_common::*;
use k8s_common::*;
use raw_peer::*;
use serde_json::json;
use testbed::{wait_for, Frr, Lab};

const RAW: Ipv4Addr = Ipv4Addr::new(10, 55, 0, 12);
const THREADS: usize = 4;
/// Service names per thread: each name cycles create → annotate → delete.
const NAMES: usize = 12;

/// Connections to the API server a healthy vipr may hold: its six watches (Services,
/// endpoints, address claims, member Leases, its Node, the pool ConfigMap), the writer's
/// writes in flight (`CONCURRENCY` in src/kube/writer.rs: 64; HTTP/1.1, and the client's
/// pool keeps idle connections for 90 s after a burst), plus one being replaced. A leak
/// grows past any bound; the other sockets are counted apart, without slack.
const API_CONNS: usize = 6 + 64 + 1;

/// vipr's TCP connections to the API server (its HTTP pool, bounded; counted apart from the
/// sockets that would reveal a leak).
fn api_conns(lab: &Lab, pid: u32) -> usize {
    let out = lab.nodes[0].run(&["ss", "-Htnp", "state", "established"]);
    let peer = format!("{API_ADDR}:{API_PORT}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&peer) && l.contains(&format!("pid={pid},")))
        .count()
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The address of Service `t`-`i` in generation `g` (create: even, annotate: odd).
fn svc_ip(t: usize, i: usize, g: u64) -> String {
    let net = if g.is_multiple_of(2) { 100 } else { 101 };
    format!("10.{net}.{t}.{}", i + 1)
}

/// The IPv4 /32 prefixes FRR has from vipr.
fn frr_prefixes(frr: &Frr) -> BTreeSet<String> {
    let v = frr.vtysh_json("show bgp ipv4 unicast json");
    v["routes"]
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| k.starts_with("10.10"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The Service addresses on node0's `lo`.
fn node_vips(lab: &Lab) -> BTreeSet<String> {
    lo_addrs(&lab.nodes[0])
        .into_iter()
        .filter(|a| a.starts_with("10.10"))
        .collect()
}

/// One flap of the raw peer: connect, OPEN, KEEPALIVE, read the table up to vipr's two
/// End-of-RIB markers, Cease. `false` if vipr did not take the session (it is still closing the
/// previous one): the caller retries.
fn raw_flap(lab: &Lab) -> bool {
    let to = SocketAddr::from((Lab::node_v4(0), 179));
    let mut p = RawPeer::connect(&lab.nodes[1], to, Duration::from_secs(2));
    let Got::Msg(bgp::codec::Message::Open(_)) = p.next() else {
        return false;
    };
    if !p.send(&open(ROUTER_AS, 9, RAW)) || !p.send(&msg(4, &[])) {
        return false;
    }
    let mut eor = BTreeSet::new();
    while eor.len() < 2 {
        match p.next() {
            Got::Msg(bgp::codec::Message::Update(u)) => {
                eor.extend(u.end_of_rib.map(|f| f.to_string()));
            }
            Got::Msg(bgp::codec::Message::Notification(_)) | Got::Closed | Got::Timeout => {
                return false
            }
            Got::Msg(_) => {}
        }
    }
    p.send(&msg(3, &[6, 2]));
    p.closed_within(Duration::from_secs(2));
    true
}

/// A merge patch, retried on 409 Conflict: vipr writes the same Service's status at the
/// same time, and the API server gives up on its own retries under load.
fn patch(api: &ApiServer, path: &str, body: &serde_json::Value) {
    for _ in 0..20 {
        let (code, v) = api.request("PATCH", path, Some(body), "application/merge-patch+json");
        match code {
            200 => return,
            409 => std::thread::sleep(Duration::from_millis(20)),
            _ => panic!("PATCH {path}: {code} {v:#}"),
        }
    }
    panic!("PATCH {path}: still 409 after 20 attempts");
}

#[test]
fn churn_soak_leaves_nothing_behind() {
    let ops = env_num("VIPR_SOAK_OPS", 1_000);
    let flaps = env_num("VIPR_SOAK_FLAPS", 100);
    let lab = Lab::new(2);
    let api = ApiServer::start(&lab.router);
    let node = Lab::node_v4(0).to_string();
    let conf = frr_router_conf(&Lab::router_v4().to_string(), std::slice::from_ref(&node))
        .replace(&format!(" neighbor {node} passive\n"), "");
    let frr = Frr::start(&lab.router, &conf);
    let dir = workdir();
    let mut env = bgp_svc_env(&dir.join("state"), &api.kubeconfig(), "node0");
    env.insert(
        "bgp_peers".into(),
        format!("10.55.0.1:{ROUTER_AS}::false,{RAW}:{ROUTER_AS}::false:1179"),
    );
    env.insert("vipr_bgp_listen".into(), format!("{node}:179"));
    let vipr = Vipr::start(&lab.nodes[0], &env, &[], &dir.join("vipr.log"));
    let pid = vipr.pid();
    let ctx = || format!("{}\n{}", frr.logs(), vipr.log());
    within(CONVERGE, "FRR Established", ctx, || {
        (frr.neighbor_state(&node) == "Established").then_some(())
    });
    within(CONVERGE, "Service caches synced", ctx, || {
        vipr.log()
            .contains("Service and endpoint caches synced")
            .then_some(())
    });

    // Warm-up: a round of every name, a few flaps; then the baseline.
    for t in 0..THREADS {
        for i in 0..NAMES {
            let name = format!("soak-{t}-{i}");
            api.create_service(&annotated_service(&name, &svc_ip(t, i, 0), json!({})));
        }
    }
    within(CONVERGE, "warm-up routes at FRR", ctx, || {
        (frr_prefixes(&frr).len() == THREADS * NAMES).then_some(())
    });
    for t in 0..THREADS {
        for i in 0..NAMES {
            api.delete_service(&format!("soak-{t}-{i}"));
        }
    }
    for _ in 0..5 {
        while !raw_flap(&lab) {}
    }
    within(CONVERGE, "warm-up routes withdrawn", ctx, || {
        frr_prefixes(&frr).is_empty().then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let own = |pid| sockets(pid) - api_conns(&lab, pid);
    let (rss0, threads0, sockets0) = (rss_kib(pid), threads(pid), own(pid));
    eprintln!(
        "after warm-up: RSS {rss0} KiB, {threads0} threads, {sockets0} sockets (+{} to the API server)",
        api_conns(&lab, pid)
    );

    // The churn.
    let t0 = Instant::now();
    let done_ops = AtomicU64::new(0);
    let done_flaps = AtomicU64::new(0);
    let frr_flaps = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let series = Mutex::new(Vec::<(u64, u64, u64, u64)>::new());
    let alive: Mutex<BTreeSet<(usize, usize, u64)>> = Mutex::new(BTreeSet::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let sample = (
                    t0.elapsed().as_secs(),
                    done_ops.load(Ordering::Relaxed),
                    done_flaps.load(Ordering::Relaxed),
                    rss_kib(pid),
                );
                series.lock().unwrap().push(sample);
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let flapper = s.spawn(|| {
            while done_flaps.load(Ordering::Relaxed) < flaps {
                let n = done_flaps.load(Ordering::Relaxed) + 1;
                if n.is_multiple_of(50) {
                    frr.vtysh(&format!("clear bgp {node}"));
                    frr_flaps.fetch_add(1, Ordering::Relaxed);
                    done_flaps.fetch_add(1, Ordering::Relaxed);
                } else if raw_flap(&lab) {
                    done_flaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let per_thread = ops / THREADS as u64;
        let mut workers = Vec::new();
        for t in 0..THREADS {
            let (api, done_ops, alive) = (&api, &done_ops, &alive);
            workers.push(s.spawn(move || {
                let mut gen = [0u64; NAMES];
                for k in 0..per_thread {
                    let i = (k as usize) % NAMES;
                    let round = k / NAMES as u64;
                    let name = format!("soak-{t}-{i}");
                    match round % 3 {
                        0 => {
                            gen[i] += 2;
                            let ip = svc_ip(t, i, gen[i]);
                            api.create_service(&annotated_service(&name, &ip, json!({})));
                            alive.lock().unwrap().insert((t, i, gen[i]));
                        }
                        1 => {
                            alive.lock().unwrap().remove(&(t, i, gen[i]));
                            gen[i] += 1;
                            let ip = svc_ip(t, i, gen[i]);
                            let a = json!({"metadata": {"annotations": {"kube-vip.io/loadbalancerIPs": ip}}});
                            patch(api, &svc_path(&name), &a);
                            alive.lock().unwrap().insert((t, i, gen[i]));
                        }
                        _ => {
                            api.delete_service(&name);
                            alive.lock().unwrap().remove(&(t, i, gen[i]));
                        }
                    }
                    done_ops.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        // Join the workers (a failed one ends the test), then the flapper; then stop the
        // sampler.
        let mut failure = None;
        for w in workers {
            if let Err(p) = w.join() {
                failure.get_or_insert(p);
            }
        }
        if failure.is_none() {
            failure = flapper.join().err();
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(p) = failure {
            std::panic::resume_unwind(p);
        }
    });
    let churn = t0.elapsed();
    let total_ops = done_ops.load(Ordering::Relaxed);
    eprintln!(
        "churn: {total_ops} Service operations, {} flaps ({} of FRR) in {churn:?}",
        done_flaps.load(Ordering::Relaxed),
        frr_flaps.load(Ordering::Relaxed)
    );

    // Converged: FRR and the node have exactly the Services that exist.
    let want: BTreeSet<String> = alive
        .lock()
        .unwrap()
        .iter()
        .map(|(t, i, g)| svc_ip(*t, *i, *g))
        .collect();
    let want_routes: BTreeSet<String> = want.iter().map(|ip| format!("{ip}/32")).collect();
    let diff = || {
        let have = frr_prefixes(&frr);
        format!(
            "missing at FRR: {:?}\nextra at FRR: {:?}\non lo: {:?}\n{}",
            want_routes.difference(&have).collect::<Vec<_>>(),
            have.difference(&want_routes).collect::<Vec<_>>(),
            node_vips(&lab),
            ctx()
        )
    };
    within(
        Duration::from_secs(60),
        "FRR's routes = the Services",
        diff,
        || {
            (frr.neighbor_state(&node) == "Established" && frr_prefixes(&frr) == want_routes)
                .then_some(())
        },
    );
    within(CONVERGE, "the node's VIPs = the Services", ctx, || {
        (node_vips(&lab) == want_routes).then_some(())
    });
    eprintln!("converged: {} Services at FRR and on lo", want.len());

    // Nothing leaked: threads and sockets as after the warm-up (the raw peer is gone, FRR
    // is connected again); RSS within 5%.
    let settled = wait_for(Duration::from_secs(30), || {
        let (th, so, api) = (threads(pid), own(pid), api_conns(&lab, pid));
        (th <= threads0 && so <= sockets0 && api <= API_CONNS).then_some((th, so))
    });
    let (threads1, sockets1, api1) = (threads(pid), own(pid), api_conns(&lab, pid));
    std::thread::sleep(Duration::from_secs(1));
    let rss1 = rss_kib(pid);
    let series = series.into_inner().unwrap();
    let mut report = String::new();
    report.push_str("seconds ops flaps rss_kib\n");
    for (s, o, f, r) in &series {
        report.push_str(&format!("{s} {o} {f} {r}\n"));
    }
    let peak = series.iter().map(|x| x.3).max().unwrap_or(rss1);
    report.push_str(&format!(
        "# ops {total_ops} flaps {} (FRR {}) in {:.0} s; RSS after warm-up {rss0} KiB, peak {peak} KiB, end {rss1} KiB ({:+.1}%); threads {threads0} -> {threads1}, sockets {sockets0} -> {sockets1}\n",
        done_flaps.load(Ordering::Relaxed),
        frr_flaps.load(Ordering::Relaxed),
        churn.as_secs_f64(),
        (rss1 as f64 / rss0 as f64 - 1.0) * 100.0
    ));
    eprint!("{report}");
    if let Ok(path) = std::env::var("VIPR_SOAK_REPORT") {
        std::fs::write(&path, &report).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    assert!(
        settled.is_some(),
        "threads {threads0} -> {threads1}, sockets {sockets0} -> {sockets1}, {api1} to the API server (at most {API_CONNS})"
    );
    assert!(
        rss1 as f64 <= rss0 as f64 * 1.05,
        "RSS {rss0} KiB after warm-up, {rss1} KiB at the end"
    );
}
