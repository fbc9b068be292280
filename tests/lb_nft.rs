//! Control-plane load balancing on this host's kernel (no IPVS): the nftables data plane,
//! driven by the real `vipr` binary. The scenario is shared with the IPVS guest test
//! (`lb_common`); the benchmarks print their numbers (`--nocapture` shows them).

mod daemon_common;
mod lb_common;

use std::time::{Duration, Instant};

use daemon_common::{workdir, Vipr};
use lb_common::{
    get_here, lb_env, scenario, wait_programmed, Backend, Dataplane, Topo, B1, B2, VIP,
};

#[test]
fn nftables_balances_checks_and_cleans_up() {
    let dir = workdir();
    let t = scenario(
        Dataplane::Nftables,
        lb_env(Dataplane::Nftables, &dir.path),
        &dir.join("vipr.log"),
    );
    eprintln!(
        "lb_nft: backend killed -> removed {:?} (1 s check interval); back -> added {:?}",
        t.failure_to_removed, t.recovery_to_added
    );
}

/// The latency vipr itself adds, from the log: input arrived -> data plane updated.
fn latencies(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("load balancer updated"))
        .filter_map(|l| {
            l.split("latency_us=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn bench_nftables_change_latency_and_connection_rate() {
    let dir = workdir();
    let topo = Topo::new();
    let _b1 = Backend::start(&topo.backends[0], B1, "b1");
    let _b2 = Backend::start(&topo.backends[1], B2, "b2");
    // Backends from the config file, so that a SIGHUP changes them (a node added/removed).
    let file = dir.write("vipr.yaml", &format!("vipr_lb_backends: \"{B1}\"\n"));
    let env = lb_env(Dataplane::Nftables, &dir.path);
    let mut vipr = Vipr::start(
        &topo.vip,
        &env,
        &["--config", file.to_str().unwrap()],
        &dir.join("vipr.log"),
    );
    wait_programmed(Dataplane::Nftables, &topo.vip, &[B1], &vipr);
    lb_common::wait_vip(&topo.vip, &vipr);
    let mut add = Vec::new();
    let mut del = Vec::new();
    for _ in 0..5 {
        dir.write("vipr.yaml", &format!("vipr_lb_backends: \"{B1},{B2}\"\n"));
        let t0 = Instant::now();
        vipr.signal(libc::SIGHUP);
        wait_programmed(Dataplane::Nftables, &topo.vip, &[B1, B2], &vipr);
        add.push(t0.elapsed());
        dir.write("vipr.yaml", &format!("vipr_lb_backends: \"{B1}\"\n"));
        let t0 = Instant::now();
        vipr.signal(libc::SIGHUP);
        wait_programmed(Dataplane::Nftables, &topo.vip, &[B1], &vipr);
        del.push(t0.elapsed());
    }
    let lat = latencies(&vipr.log());
    eprintln!("lb bench (nftables): backend added (SIGHUP -> kernel, incl. first health check, 20 ms polling): {add:?}");
    eprintln!("lb bench (nftables): backend removed (SIGHUP -> kernel, 20 ms polling): {del:?}");
    eprintln!("lb bench (nftables): vipr's own input->applied latency per change (us): {lat:?}");

    // Connection rate: sequential HTTP requests (connect, GET, close) from the client
    // namespace, through the VIP and straight to a backend.
    dir.write("vipr.yaml", &format!("vipr_lb_backends: \"{B1},{B2}\"\n"));
    vipr.signal(libc::SIGHUP);
    wait_programmed(Dataplane::Nftables, &topo.vip, &[B1, B2], &vipr);
    let rate = |addr: &str| {
        let n = 3000;
        topo.client.enter(|| {
            let t0 = Instant::now();
            for i in 0..n {
                get_here(addr).unwrap_or_else(|e| panic!("request {i} to {addr}: {e}"));
            }
            n as f64 / t0.elapsed().as_secs_f64()
        })
    };
    let direct = rate(B1);
    let via = rate(VIP);
    let direct2 = rate(B1);
    eprintln!(
        "lb bench (nftables): connections/s direct {direct:.0} / {direct2:.0}, through the VIP {via:.0} ({:.0}%)",
        100.0 * via / direct.max(direct2)
    );
    assert!(
        via > 0.3 * direct.max(direct2),
        "the VIP path is far slower than direct"
    );
    vipr.signal(libc::SIGTERM);
    assert!(vipr.wait_exit(Duration::from_secs(10)).success());
}
