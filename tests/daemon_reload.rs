//! End-to-end test of SIGHUP: vipr reads a `--config` YAML file (lists allowed) with two
//! peers, a real BIRD on 10.55.0.1 (the lab's router namespace) and a real FRR on 10.55.0.2
//! (its own namespace on the same bridge), and on SIGHUP applies only the difference.
//!
//! Asserts that:
//! - a broken file is refused on SIGHUP (the running configuration stays, nothing resets);
//! - re-reading an unchanged file changes nothing;
//! - changing only the second peer (multihop, then an MD5 password that FRR gets too) resets
//!   only that session: FRR sees a new establishment each time, while BIRD's session never
//!   changes state (its `show protocols` "since" time stays the same), vipr's status keeps
//!   the first session Established with an uptime (`state_seconds`) that only grows, and
//!   BIRD keeps the VIP route throughout;
//! - removing the second peer closes that session and withdraws the route there, BIRD still
//!   untouched.

mod daemon_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon_common::*;
use testbed::{wait_for, Bird, Frr, Lab, Netns};

const P1: &str = "10.55.0.1";
const P2: &str = "10.55.0.2";

fn yaml(state: &Path, peer2: Option<&str>) -> String {
    let mut s = format!(
        "# vipr e2e: two peers\nbgp_enable: true\ncp_enable: true\naddress:\n  - {VIP4}\n  - {VIP6}\n\
         bgp_as: {NODE_AS}\nbgp_hold_time: 3\nbgp_keepalive_interval: 1\n\
         prometheus_server: {HTTP}\nvipr_state_dir: {}\nbgp_peers:\n  - {P1}:{ROUTER_AS}::false\n",
        state.display()
    );
    if let Some(p) = peer2 {
        s.push_str(&format!("  - {p}\n"));
    }
    s
}

/// BIRD's "since" column for protocol n0 (the time of its last state change) in ms of the
/// day, and its BGP state (the Info column).
fn bird_since(bird: &Bird) -> (u64, String) {
    let out = bird.birdc("show protocols n0");
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("n0 "))
        .unwrap_or_else(|| panic!("no n0 in:\n{out}"))
        .split_whitespace()
        .collect();
    (parse_since(row[4]), row.get(5).unwrap_or(&"").to_string())
}

/// `HH:MM:SS.mmm` as ms of the day.
fn parse_since(t: &str) -> u64 {
    let (hms, ms) = t.split_once('.').unwrap_or((t, "0"));
    let secs = hms
        .split(':')
        .map(|f| f.parse::<u64>().unwrap_or_else(|_| panic!("since {t:?}")))
        .fold(0, |acc, f| acc * 60 + f);
    secs * 1000 + ms.parse::<u64>().unwrap_or_else(|_| panic!("since {t:?}"))
}

/// FRR's (state, connections established) for the node.
fn frr_conn(frr: &Frr) -> (String, u64) {
    let v = frr.vtysh_json("show bgp neighbor 10.55.0.11 json");
    let n = &v["10.55.0.11"];
    (
        n["bgpState"].as_str().unwrap_or_default().to_string(),
        n["connectionsEstablished"].as_u64().unwrap_or(0),
    )
}

/// Watches the first session while something happens: every status sample must show it
/// Established with a non-decreasing uptime, and BIRD must keep the route and its "since".
struct FirstPeerWatch {
    since: u64,
    last_uptime: u64,
    started: Instant,
    uptime0: u64,
}

impl FirstPeerWatch {
    fn new(bird: &Bird, vipr: &Vipr) -> FirstPeerWatch {
        let s = vipr.status().expect("status");
        let up = Vipr::peer(&s, P1)["state_seconds"].as_u64().unwrap();
        FirstPeerWatch {
            since: bird_since(bird).0,
            last_uptime: up,
            started: Instant::now(),
            uptime0: up,
        }
    }

    fn check(&mut self, bird: &Bird, vipr: &Vipr) {
        if let Some(s) = vipr.status() {
            let p = Vipr::peer(&s, P1);
            assert_eq!(
                p["state"], "Established",
                "first session not Established: {p:#}"
            );
            let up = p["state_seconds"].as_u64().unwrap();
            assert!(
                up >= self.last_uptime,
                "first session uptime went back: {p:#}"
            );
            assert_eq!(p["flaps"], 0, "{p:#}");
            self.last_uptime = up;
        }
        // BIRD prints a monotonic time converted to wall-clock time when asked, so the value
        // may wobble by a millisecond; a reset would move it by more than a second (it would
        // come after the reloads, which start over a second after the establishment).
        let (since, state) = bird_since(bird);
        assert_eq!(
            state, "Established",
            "BIRD's first session left Established"
        );
        assert!(
            since.abs_diff(self.since) < 100,
            "BIRD saw the first session change state: since {since} ms, was {} ms",
            self.since
        );
        assert!(
            bird_route(bird, &format!("{VIP4}/32"), "n0").is_some(),
            "BIRD lost the VIP route"
        );
    }

    /// The uptime grew by about the time watched: the session was never reset.
    fn finish(&mut self, bird: &Bird, vipr: &Vipr) {
        self.check(bird, vipr);
        let watched = self.started.elapsed().as_secs();
        assert!(
            self.last_uptime + 1 >= self.uptime0 + watched,
            "first session uptime {} after {watched} s watched from {}",
            self.last_uptime,
            self.uptime0
        );
    }
}

/// Send SIGHUP and wait for the `n`th log line `what` of this run, checking the first peer.
fn hup_and_wait(vipr: &mut Vipr, what: &str, n: usize, watch: &mut FirstPeerWatch, bird: &Bird) {
    vipr.signal(libc::SIGHUP);
    let seen = wait_for(CONVERGE, || {
        watch.check(bird, vipr);
        (vipr.run_log().matches(what).count() >= n).then_some(())
    });
    assert!(
        seen.is_some(),
        "no {what:?} #{n} in the log:\n{}",
        vipr.log()
    );
}

#[test]
fn sighup_resets_only_the_changed_peer() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let p2 = Netns::new("vp");
    lab.router.sh(&format!(
        "ip link add vethp type veth peer name eth0 netns {} && ip link set vethp master br0 && \
         ip link set vethp up",
        p2.name
    ));
    p2.sh("ip link set eth0 up && ip addr add 10.55.0.2/24 dev eth0 && ip addr add 2001:db8:55::2/64 dev eth0 nodad");
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let frr = Frr::start(&p2, &frr_router_conf(P2, &["10.55.0.11".to_string()]));
    let dir = workdir();
    let state = dir.join("state");
    let file = dir.write("vipr.yaml", &yaml(&state, Some("10.55.0.2:65000::false")));
    let mut vipr = Vipr::start(
        node,
        &BTreeMap::new(),
        &["--config", file.to_str().unwrap()],
        &dir.join("vipr.log"),
    );
    // (vipr's log is printed by its guard when the test fails.)
    let ctx = || format!("{}\n{}", bird.birdc("show protocols all n0"), frr.logs());
    let vip4 = format!("{VIP4}/32");

    eventually("route at BIRD", ctx, || bird_route(&bird, &vip4, "n0"));
    eventually("route at FRR", ctx, || {
        frr_paths(&frr, &vip4).into_iter().next()
    });
    let s = vipr.wait_status("both sessions Established", |s| {
        [P1, P2]
            .iter()
            .all(|p| Vipr::peer(s, p)["state"] == "Established")
    });
    assert_eq!(bird_since(&bird).1, "Established");
    eprintln!(
        "uptimes at start: {P1} {} s, {P2} {} s",
        Vipr::peer(&s, P1)["state_seconds"],
        Vipr::peer(&s, P2)["state_seconds"]
    );
    // Let the first session age a little so its uptime can visibly keep growing.
    std::thread::sleep(Duration::from_millis(1100));
    let mut watch = FirstPeerWatch::new(&bird, &vipr);
    // FRR's count so far (usually 1; under load FRR may itself have reset a session that came
    // up while it was still applying its config).
    let (st, n0) = frr_conn(&frr);
    assert_eq!(st, "Established");

    // 1. A broken file: refused, nothing changes.
    let broken = yaml(&state, Some("10.55.0.2:65000::false"))
        .replace(&format!("bgp_as: {NODE_AS}"), "bgp_as: abc");
    dir.write("vipr.yaml", &broken);
    hup_and_wait(
        &mut vipr,
        "SIGHUP: keeping the running configuration",
        1,
        &mut watch,
        &bird,
    );
    assert!(vipr.run_log().contains("bgp_as"), "{}", vipr.run_log());
    // 2. The same file again: nothing changes.
    dir.write("vipr.yaml", &yaml(&state, Some("10.55.0.2:65000::false")));
    hup_and_wait(
        &mut vipr,
        "SIGHUP: configuration reloaded",
        1,
        &mut watch,
        &bird,
    );
    std::thread::sleep(Duration::from_millis(300));
    watch.check(&bird, &vipr);
    assert_eq!(
        frr_conn(&frr),
        ("Established".to_string(), n0),
        "FRR session reset by a no-op reload"
    );
    assert!(
        !vipr.run_log().contains("session reset"),
        "{}",
        vipr.run_log()
    );

    // 3. Only the second peer changes (multihop): only its session resets.
    dir.write("vipr.yaml", &yaml(&state, Some("10.55.0.2:65000::true")));
    hup_and_wait(
        &mut vipr,
        "SIGHUP: configuration reloaded",
        2,
        &mut watch,
        &bird,
    );
    let t = Instant::now();
    eventually("FRR's second establishment", ctx, || {
        watch.check(&bird, &vipr);
        (frr_conn(&frr) == ("Established".to_string(), n0 + 1)).then_some(())
    });
    eprintln!(
        "second session re-established {:?} after the reload was applied",
        t.elapsed()
    );
    eventually("route back at FRR", ctx, || {
        watch.check(&bird, &vipr);
        frr_paths(&frr, &vip4).into_iter().next()
    });
    let run = vipr.run_log();
    assert!(
        run.contains("peer configuration changed: session reset peer=10.55.0.2"),
        "{run}"
    );
    assert!(!run.contains("session reset peer=10.55.0.1"), "{run}");

    // 4. A new MD5 password for the second peer, on both ends.
    frr.vtysh("conf t\nrouter bgp 65000\nneighbor 10.55.0.11 password Vipr-e2e-pw");
    dir.write(
        "vipr.yaml",
        &yaml(&state, Some("10.55.0.2:65000:Vipr-e2e-pw:true")),
    );
    hup_and_wait(
        &mut vipr,
        "SIGHUP: configuration reloaded",
        3,
        &mut watch,
        &bird,
    );
    eventually("FRR's establishment with MD5", ctx, || {
        watch.check(&bird, &vipr);
        let (st, n) = frr_conn(&frr);
        (st == "Established" && n >= n0 + 2).then_some(())
    });
    eventually("route back at FRR over MD5", ctx, || {
        watch.check(&bird, &vipr);
        frr_paths(&frr, &vip4).into_iter().next()
    });
    let s = vipr.wait_status("the second session Established again", |s| {
        Vipr::peer(s, P2)["state"] == "Established"
    });
    assert!(
        !vipr.log().contains("Vipr-e2e-pw"),
        "the password is in the log"
    );
    assert!(
        !serde_json::to_string(&s).unwrap().contains("Vipr-e2e-pw"),
        "the password is in the status"
    );

    // 5. The second peer removed: its session closes, the route goes there.
    dir.write("vipr.yaml", &yaml(&state, None));
    hup_and_wait(
        &mut vipr,
        "SIGHUP: configuration reloaded",
        4,
        &mut watch,
        &bird,
    );
    eventually("route withdrawn at FRR", ctx, || {
        watch.check(&bird, &vipr);
        frr_paths(&frr, &vip4).is_empty().then_some(())
    });
    let s = vipr.wait_status("one peer left", |s| {
        s["peers"].as_array().map(|a| a.len()) == Some(1)
    });
    assert_eq!(Vipr::peer(&s, P1)["state"], "Established");
    assert_ne!(frr_conn(&frr).0, "Established");
    watch.finish(&bird, &vipr);
    eprintln!(
        "first session uptime grew from {} s to {} s over the reloads",
        watch.uptime0, watch.last_uptime
    );

    vipr.signal(libc::SIGTERM);
    assert_eq!(vipr.wait_exit(Duration::from_secs(5)).code(), Some(0));
}
