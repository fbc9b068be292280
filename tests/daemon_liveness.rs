//! End to end: `/healthz` (the pod's liveness probe) means the daemon's tasks turn over, not
//! merely that the HTTP server answers. Two vipr nodes peer with BIRD (BGP and BFD at
//! 300 ms x 3); each gets the test hook `VIPR_TEST_STALL` and, on SIGUSR1, node 0's speaker
//! task and node 1's BFD thread stop turning over for good.
//!
//! - Before: `/healthz` answers 200 on both.
//! - After: `/healthz` answers 503 naming the stuck task, not before the 30 s bound has
//!   about passed and before twice that; vipr keeps running.
//! - With the speaker stuck, the BGP session itself stays Established (its own task) and
//!   `/metrics` answers 503 at once instead of hanging; with the BFD thread stuck, BIRD sees
//!   BFD go down.

mod daemon_common;

use std::time::{Duration, Instant};

use daemon_common::*;
use testbed::{Bird, Lab};

/// The daemon's liveness bound.
const BOUND: Duration = Duration::from_secs(30);

#[test]
fn healthz_fails_when_the_speaker_or_the_bfd_thread_is_stuck() {
    let lab = Lab::new(2);
    let bird = Bird::start(&lab.router, &bird_bfd_conf(&[0, 1], 300));
    let dir = workdir();
    let mut vipr: Vec<Vipr> = ["speaker", "bfd"]
        .iter()
        .enumerate()
        .map(|(i, what)| {
            let mut env = bfd_env(&dir.join(&format!("state{i}")), 300);
            env.insert("VIPR_TEST_STALL".into(), what.to_string());
            Vipr::start(&lab.nodes[i], &env, &[], &dir.join(&format!("vipr{i}.log")))
        })
        .collect();
    for v in &vipr {
        v.wait_bgp_and_bfd_up();
    }
    for (i, node) in lab.nodes.iter().enumerate() {
        assert_eq!(
            http_get(node, HTTP, "/healthz").map(|r| r.0),
            Some(200),
            "node {i}"
        );
    }

    let t0 = Instant::now();
    for v in vipr.iter_mut() {
        v.signal(libc::SIGUSR1);
    }
    let mut failed = [None, None];
    let mut bodies = [String::new(), String::new()];
    while failed.iter().any(Option::is_none) && t0.elapsed() < BOUND * 2 {
        for (i, node) in lab.nodes.iter().enumerate() {
            if failed[i].is_none() {
                if let Some((503, body)) = http_get(node, HTTP, "/healthz") {
                    failed[i] = Some(t0.elapsed());
                    bodies[i] = body;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("MEASURED stuck task -> /healthz 503 after {failed:?}: {bodies:?}");
    for (i, what) in ["speaker", "BFD"].iter().enumerate() {
        let after = failed[i].unwrap_or_else(|| {
            panic!(
                "/healthz never failed with the {what} stuck\n{}",
                vipr[i].log()
            )
        });
        // The last beat may precede the signal by the probe period and a busy machine's
        // delays: 10 s of slack below the bound, none of it above twice the bound.
        assert!(
            after >= BOUND - Duration::from_secs(10),
            "{what}: 503 after {after:?}, well before the {BOUND:?} bound"
        );
        assert!(bodies[i].contains(what), "{what}: {}", bodies[i]);
        vipr[i].assert_running();
    }

    // The speaker's task is stuck, its sessions' tasks are not.
    assert_eq!(bird.protocol_state("n0"), "Established");
    let t = Instant::now();
    let metrics = http_get(&lab.nodes[0], HTTP, "/metrics").map(|r| r.0);
    assert_eq!(
        metrics,
        Some(503),
        "/metrics with the speaker stuck ({:?})",
        t.elapsed()
    );
    // BFD thread stuck: no more BFD packets, so BIRD's BFD session is down.
    assert!(
        !bird
            .birdc("show bfd sessions")
            .lines()
            .any(|l| l.starts_with("10.55.0.12") && l.contains(" Up ")),
        "{}",
        bird.birdc("show bfd sessions")
    );
}
