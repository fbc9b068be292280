//! End-to-end graceful restart (RFC 4724, vipr the restarting speaker) with FRR in its
//! default helper mode, restart time 5 s. A sampler asks FRR for the VIP's route every
//! 50 ms the whole time.
//!
//! - Restart in place (SIGUSR2, then a new vipr): the route never disappears at FRR; the new
//!   process sends the Restart State bit, the route is refreshed (no longer stale) after
//!   End-of-RIB, the VIPs stayed on `lo` throughout. The same with BFD on (vipr sends BFD
//!   AdminDown, which FRR does not take for a failure), and through SIGTERM with an upgrade
//!   intent file.
//! - The same restart with graceful restart off: the route disappears, then comes back.
//! - kill -9 with graceful restart on: the route stays only until the restart time expires.
//! - SIGTERM with graceful restart on (a real shutdown): withdrawn at once.

mod daemon_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use daemon_common::*;
use testbed::{Frr, Lab};

const NODE: &str = "10.55.0.11";
const RESTART_TIME: u64 = 5;

fn v4() -> String {
    format!("{VIP4}/32")
}

fn env(state: &Path, gr: bool, bfd: bool) -> BTreeMap<String, String> {
    let mut e = base_env(state);
    if gr {
        e.insert("vipr_graceful_restart".into(), "true".into());
        e.insert(
            "vipr_graceful_restart_time".into(),
            RESTART_TIME.to_string(),
        );
    }
    if bfd {
        e.insert(
            "bgp_peers".into(),
            "10.55.0.1:65000::false:179::true;50;50;3".into(),
        );
    }
    e
}

fn frr(lab: &Lab, bfd: bool) -> Frr {
    let mut conf = frr_router_conf("10.55.0.1", &[NODE.to_string()]);
    if bfd {
        conf = conf.replace(
            &format!(" neighbor {NODE} passive\n"),
            &format!(" neighbor {NODE} passive\n neighbor {NODE} bfd profile fast\n"),
        );
        return Frr::start_with_bfdd(
            &lab.router,
            &conf,
            "bfd\n profile fast\n  receive-interval 50\n  transmit-interval 50\n  detect-multiplier 3\n !\n!\n",
        );
    }
    Frr::start(&lab.router, &conf)
}

/// Samples FRR's paths for the IPv4 VIP every 50 ms on a thread; records when it was absent
/// (ms since start) and whether the path was stale.
struct Sampler {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(u128, bool, bool)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(frr_dir: &Path) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, l, dir) = (stop.clone(), log.clone(), frr_dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            while !s.load(Ordering::SeqCst) {
                let next = Instant::now() + Duration::from_millis(50);
                let out = std::process::Command::new("vtysh")
                    .arg("--vty_socket")
                    .arg(&dir)
                    .args(["-c", &format!("show bgp ipv4 unicast {} json", v4())])
                    .output()
                    .expect("vtysh");
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                let paths = v["paths"].as_array().cloned().unwrap_or_default();
                let stale = paths.iter().any(|p| p["stale"] == true);
                l.lock()
                    .unwrap()
                    .push((t0.elapsed().as_millis(), !paths.is_empty(), stale));
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        Sampler {
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// (samples, samples without the route, samples with a stale route, first absence in ms)
    fn finish(mut self) -> (usize, usize, usize, Option<u128>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let log = self.log.lock().unwrap();
        let absent = log.iter().filter(|s| !s.1).count();
        let stale = log.iter().filter(|s| s.2).count();
        (
            log.len(),
            absent,
            stale,
            log.iter().find(|s| !s.1).map(|s| s.0),
        )
    }
}

fn route_at_frr(frr: &Frr) -> bool {
    !frr_paths(frr, &v4()).is_empty()
}

/// FRR's table and logs, for failure messages.
fn frr_ctx(frr: &Frr) -> String {
    format!("{}\n{}", frr.vtysh("show bgp ipv4 unicast"), frr.logs())
}

/// Starts vipr on the lab's node and waits until FRR has its route.
fn start_serving(lab: &Lab, frr: &Frr, env: &BTreeMap<String, String>, log: &Path) -> Vipr {
    let vipr = Vipr::start(&lab.nodes[0], env, &[], log);
    eventually(
        "route at FRR",
        || frr_ctx(frr),
        || route_at_frr(frr).then_some(()),
    );
    vipr
}

/// Starts vipr, waits for the route at FRR; runs `restart` on it (which must make the old
/// process exit), starts a new vipr 1 s later and waits until the route is fresh again.
/// Returns the sampler's verdict and the new process.
fn restart_cycle(
    lab: &Lab,
    frr: &Frr,
    env: &BTreeMap<String, String>,
    log: &Path,
    restart: impl FnOnce(&mut Vipr),
) -> ((usize, usize, usize, Option<u128>), Vipr) {
    let node = &lab.nodes[0];
    let ctx = || frr_ctx(frr);
    let mut vipr = start_serving(lab, frr, env, log);
    let sampler = Sampler::start(frr.dir());
    std::thread::sleep(Duration::from_millis(300));
    restart(&mut vipr);
    let st = vipr.wait_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{st}");
    assert_eq!(
        lo_count(node, &v4()),
        1,
        "the VIP stays on lo: {:?}",
        lo_addrs(node)
    );
    // A real upgrade takes a while (new binary, container restart): 1 s here.
    std::thread::sleep(Duration::from_secs(1));
    let new = Vipr::start(node, env, &[], log);
    eventually("session back", ctx, || {
        (frr.neighbor_state(NODE) == "Established").then_some(())
    });
    // After End-of-RIB the route is fresh (no longer stale).
    eventually("route fresh at FRR", ctx, || {
        let p = frr_paths(frr, &v4());
        (!p.is_empty() && p.iter().all(|p| p["stale"] != true)).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    (sampler.finish(), new)
}

fn restart_in_place_keeps_the_route(bfd: bool) {
    let lab = Lab::new(1);
    let frr = frr(&lab, bfd);
    let dir = workdir();
    let log = dir.join("vipr.log");
    let env = env(&dir.join("state"), true, bfd);
    let ((n, absent, stale, first), new) =
        restart_cycle(&lab, &frr, &env, &log, |v| v.signal(libc::SIGUSR2));
    eprintln!("MEASURED restart in place (bfd {bfd}): {n} samples at 50 ms, {absent} without the route, {stale} stale");
    assert_eq!(absent, 0, "the route disappeared at {first:?} ms");
    assert!(
        stale > 0,
        "FRR never marked the route stale: not a graceful restart?"
    );
    let old = new.log();
    assert!(old.contains("SIGUSR2: restarting in place"), "{old}");
    assert!(old.contains("routes left at the peers"), "{old}");
    let run = new.run_log();
    assert!(run.contains("Restart State bit"), "{run}");
    assert!(
        run.contains("found VIP addresses from an earlier run"),
        "{run}"
    );
    // FRR saw the Restart State bit.
    let nb = frr.vtysh(&format!("show bgp neighbor {NODE}"));
    assert!(nb.contains("R bit: True"), "{nb}");
}

#[test]
fn restart_in_place_keeps_the_route_at_frr() {
    restart_in_place_keeps_the_route(false);
}

#[test]
fn restart_in_place_with_bfd_keeps_the_route_at_frr() {
    restart_in_place_keeps_the_route(true);
}

#[test]
fn sigterm_with_an_upgrade_intent_restarts_in_place() {
    let lab = Lab::new(1);
    let frr = frr(&lab, false);
    let dir = workdir();
    let state = dir.join("state");
    let env = env(&state, true, false);
    let ((_, absent, stale, first), new) =
        restart_cycle(&lab, &frr, &env, &dir.join("vipr.log"), |v| {
            std::fs::write(state.join("upgrade-intent"), "").unwrap();
            v.signal(libc::SIGTERM);
        });
    assert_eq!(absent, 0, "the route disappeared at {first:?} ms");
    assert!(stale > 0);
    assert!(
        new.log().contains("SIGTERM with an upgrade intent"),
        "{}",
        new.log()
    );
    assert!(
        !state.join("upgrade-intent").exists(),
        "the intent is consumed"
    );
}

#[test]
fn restart_in_place_without_graceful_restart_loses_the_route() {
    let lab = Lab::new(1);
    let frr = frr(&lab, false);
    let dir = workdir();
    let env = env(&dir.join("state"), false, false);
    let ((n, absent, _, first), _new) =
        restart_cycle(&lab, &frr, &env, &dir.join("vipr.log"), |v| {
            v.signal(libc::SIGUSR2)
        });
    eprintln!("MEASURED restart in place without GR: {n} samples, {absent} without the route (first at {first:?} ms)");
    assert!(
        absent > 0,
        "the route never disappeared without graceful restart"
    );
}

#[test]
fn kill9_with_graceful_restart_keeps_the_route_only_for_the_restart_time() {
    let lab = Lab::new(1);
    let frr = frr(&lab, false);
    let dir = workdir();
    let env = env(&dir.join("state"), true, false);
    let mut vipr = start_serving(&lab, &frr, &env, &dir.join("vipr.log"));
    let t0 = Instant::now();
    vipr.kill9();
    let gone = time_until(t0, || !route_at_frr(&frr));
    eprintln!(
        "MEASURED kill -9 with GR (restart time {RESTART_TIME} s): route gone after {gone:?}"
    );
    let gone = gone.unwrap_or_else(|| panic!("route still there\n{}", frr_ctx(&frr)));
    assert!(
        gone >= Duration::from_secs(RESTART_TIME) - Duration::from_millis(500)
            && gone <= Duration::from_secs(RESTART_TIME * 2),
        "{gone:?}"
    );
}

#[test]
fn sigterm_with_graceful_restart_withdraws_at_once() {
    let lab = Lab::new(1);
    let frr = frr(&lab, false);
    let dir = workdir();
    let env = env(&dir.join("state"), true, false);
    let mut vipr = start_serving(&lab, &frr, &env, &dir.join("vipr.log"));
    let t0 = Instant::now();
    vipr.signal(libc::SIGTERM);
    let gone = time_until(t0, || !route_at_frr(&frr)).expect("route withdrawn");
    eprintln!("MEASURED SIGTERM with GR: route gone after {gone:?}");
    assert!(gone < Duration::from_secs(1), "{gone:?}");
    assert_eq!(vipr.wait_exit(Duration::from_secs(5)).code(), Some(0));
    assert_eq!(
        lo_count(&lab.nodes[0], &v4()),
        0,
        "VIP removed: {:?}",
        lo_addrs(&lab.nodes[0])
    );
    assert!(!dir.join("state").join("restarting").exists());
}
