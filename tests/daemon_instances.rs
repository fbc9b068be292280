//! Two vipr processes on one node, and what a node-local user or a closed log pipe can do to
//! one (issue 15), with the real binary, a real BIRD peer and the node's real kernel state:
//!
//! - **Two instances, one node namespace**: the default instance in BGP mode (control-plane
//!   VIP on `lo`, route at BIRD) beside `vipr_instance=services` in ARP mode (its VIP on
//!   `eth0`), each with its own state directory. Over three resyncs neither removes the
//!   other's VIP; stopping one leaves the other's VIP and route in place.
//! - **The same instance twice**: a second default instance in the same namespace refuses to
//!   start, naming the first by pid, and changes nothing.
//! - **A state directory others can write to** (mode 1777) is refused at start with the reason.
//! - **A planted state file entry** (the node's own address listed as vipr's) is not taken
//!   for vipr's: the kernel's marker decides, and the address survives vipr's exit.
//! - **The log pipe closed** (`vipr manager 2>&1 | head -1`): vipr keeps running and
//!   logging into the void, and SIGTERM still withdraws and exits 0.
//! - **The log reader stalled** (a collector that stopped reading; a one-page pipe): the
//!   BGP session stays up, a flap is answered, SIGTERM withdraws and exits 0. Before the log
//!   got its own writer thread, the first full pipe froze the whole daemon.

mod daemon_common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use daemon_common::*;
use testbed::{Bird, Lab, Netns};

/// The default instance: base_env, VIPs 192.0.2.10 and 2001:db8:ff::10 on `lo`.
fn default_env(dir: &testbed::TempDir) -> BTreeMap<String, String> {
    base_env(&dir.join("state-default"))
}

/// A second instance in ARP mode without Kubernetes: VIP 192.0.2.20 on `eth0`.
fn services_env(dir: &testbed::TempDir) -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    for (k, v) in [
        ("vip_arp", "true"),
        ("vip_leaderelection", "false"),
        ("cp_enable", "true"),
        ("address", "192.0.2.20"),
        ("vip_interface", "eth0"),
        ("prometheus_server", "127.0.0.1:2113"),
        ("vipr_instance", "services"),
    ] {
        e.insert(k.to_string(), v.to_string());
    }
    e.insert(
        "vipr_state_dir".into(),
        dir.join("state-services").display().to_string(),
    );
    e
}

/// Runs `vipr manager` with `env` to its exit (killed after a minute): exit code and stderr.
fn run_to_exit(
    ns: &Netns,
    env: &BTreeMap<String, String>,
    dir: &testbed::TempDir,
) -> (Option<i32>, String) {
    let err = dir.join("once.err");
    let f = std::fs::File::create(&err).expect("stderr file");
    let child = ns
        .command(&[vipr_bin(), "manager"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .expect("spawn vipr");
    let mut p = testbed::Proc::new("vipr (once)", child);
    let st = testbed::wait_for(Duration::from_secs(60), || p.exited());
    let text = std::fs::read_to_string(&err).unwrap_or_default();
    let st = st.unwrap_or_else(|| panic!("still running after a minute: {text}"));
    (st.code(), text)
}

fn has(ns: &Netns, dev: &str, cidr: &str) -> bool {
    ns.sh(&format!("ip -o addr show dev {dev}"))
        .split_whitespace()
        .any(|w| w == cidr)
}

#[test]
fn two_instances_on_one_node_keep_each_others_vips() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let dir = workdir();
    let log_a = dir.join("default.log");
    let log_b = dir.join("services.log");
    let mut a = Vipr::start(node, &default_env(&dir), &[], &log_a);
    let mut b = Vipr::start(node, &services_env(&dir), &[], &log_b);
    let ctx = || {
        format!(
            "{}\n{}\n--- default\n{}\n--- services\n{}",
            node.sh("ip -d addr"),
            bird.birdc("show route"),
            std::fs::read_to_string(&log_a).unwrap_or_default(),
            std::fs::read_to_string(&log_b).unwrap_or_default()
        )
    };
    let both = || {
        has(node, "lo", "192.0.2.10/32")
            && has(node, "eth0", "192.0.2.20/32")
            && bird_route(&bird, "192.0.2.10/32", "n0").is_some()
    };
    eventually("both instances' VIPs in place", ctx, || {
        both().then_some(())
    });
    // Three resyncs (every 10 s): before instances were separate, each one's resync removed
    // the other's VIP within 15 s.
    let until = std::time::Instant::now() + Duration::from_secs(32);
    while std::time::Instant::now() < until {
        assert!(both(), "a VIP went missing while both ran:\n{}", ctx());
        a.assert_running();
        b.assert_running();
        std::thread::sleep(Duration::from_millis(500));
    }

    // The same instance twice: refused, naming the first, and nothing changes.
    let mut env = default_env(&dir);
    env.insert("prometheus_server".into(), "127.0.0.1:2114".into());
    let (code, err) = run_to_exit(node, &env, &dir);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("pid {}", a.pid())) && err.contains("the default instance"),
        "the refusal must name the running instance: {err}"
    );
    assert!(both(), "the refused process changed something:\n{}", ctx());

    // The services instance stops: its VIP goes, the default instance's stays and is routed.
    b.signal(libc::SIGTERM);
    assert!(b.wait_exit(CONVERGE).success(), "{}", ctx());
    assert!(!has(node, "eth0", "192.0.2.20/32"), "{}", ctx());
    std::thread::sleep(Duration::from_secs(11)); // one more resync of the default instance
    assert!(
        has(node, "lo", "192.0.2.10/32") && bird_route(&bird, "192.0.2.10/32", "n0").is_some(),
        "{}",
        ctx()
    );
    a.signal(libc::SIGTERM);
    assert!(a.wait_exit(CONVERGE).success(), "{}", ctx());
    assert!(!has(node, "lo", "192.0.2.10/32"), "{}", ctx());
}

#[test]
fn a_state_directory_others_can_write_is_refused() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let dir = workdir();
    let state = dir.join("state-open");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (code, err) = run_to_exit(node, &base_env(&state), &dir);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("writable by group or others") && err.contains(&state.display().to_string()),
        "{err}"
    );
    assert!(!has(node, "lo", "192.0.2.10/32"), "nothing may be touched");
}

#[test]
fn a_planted_state_entry_does_not_make_an_address_vipr_s() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let dir = workdir();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    // The node's own address, written into vipr's file as if vipr had added it.
    node.sh("ip addr add 198.51.100.77/32 dev lo");
    std::fs::write(state.join("addresses"), "lo 198.51.100.77/32\n").unwrap();
    let log = dir.join("vipr.log");
    let mut v = Vipr::start(node, &base_env(&state), &[], &log);
    let ctx = || {
        format!(
            "{}\n{}",
            node.sh("ip addr show dev lo"),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    eventually("the VIP routed", ctx, || {
        bird_route(&bird, "192.0.2.10/32", "n0").map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(11)); // a resync
    v.signal(libc::SIGTERM);
    assert!(v.wait_exit(CONVERGE).success(), "{}", ctx());
    assert!(
        has(node, "lo", "198.51.100.77/32"),
        "the node's own address was removed because a file said so:\n{}",
        ctx()
    );
    assert!(!has(node, "lo", "192.0.2.10/32"), "{}", ctx());
}

/// `vipr manager` (BGP, base_env, log level `level`) with stdout and stderr one pipe whose
/// read end the test holds; `page` shrinks the pipe to one page.
fn start_piped(
    node: &Netns,
    dir: &testbed::TempDir,
    level: &str,
    page: bool,
) -> (testbed::Proc, std::io::PipeReader) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    if page {
        use std::os::fd::AsRawFd;
        let r = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
        assert!(r >= 4096, "F_SETPIPE_SZ");
    }
    let mut env = base_env(&dir.join("state"));
    env.insert("vip_loglevel".into(), level.into());
    let child = node
        .command(&[vipr_bin(), "manager"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().expect("dup"))
        .stderr(writer)
        .spawn()
        .expect("spawn vipr");
    (testbed::Proc::new("vipr", child), reader)
}

/// With the VIP routed and nobody reading the log: a session flap is answered, the process
/// still runs, and SIGTERM withdraws, cleans `lo` and exits 0.
fn flap_then_sigterm(node: &Netns, bird: &Bird, child: &mut testbed::Proc) {
    let routed = || bird_route(bird, "192.0.2.10/32", "n0").is_some();
    eventually(
        "the VIP routed with nobody reading the log",
        || bird.birdc("show route"),
        || routed().then_some(()),
    );
    bird.birdc("disable n0");
    bird.birdc("enable n0");
    eventually(
        "the route back after a flap",
        || bird.birdc("show route"),
        || routed().then_some(()),
    );
    assert!(
        child.exited().is_none(),
        "vipr died with its log pipe closed or stalled"
    );
    child.signal(libc::SIGTERM);
    let st = testbed::wait_for(CONVERGE, || child.exited()).expect("no exit after SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status {st} (134 is an abort)");
    assert!(!routed());
    assert!(!has(node, "lo", "192.0.2.10/32"));
}

#[test]
fn a_closed_log_pipe_does_not_take_the_daemon_down() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let dir = workdir();
    // `vipr manager 2>&1 | head -1`: one line read, then the pipe closed.
    let (mut child, reader) = start_piped(node, &dir, "debug", false);
    let mut first = String::new();
    BufReader::new(reader)
        .read_line(&mut first)
        .expect("read the first line");
    // The reader is dropped here: every later write meets EPIPE.
    assert!(first.contains("vipr starting"), "{first}");
    flap_then_sigterm(node, &bird, &mut child);
}

#[test]
fn a_stalled_log_reader_does_not_stall_the_daemon() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let dir = workdir();
    // A log collector that stopped reading: the pipe stays open with one page of buffer,
    // full after a few lines of trace; a write to it then blocks until someone reads.
    let (mut child, reader) = start_piped(node, &dir, "trace", true);
    let queued = || {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &mut n) };
        n
    };
    // Full (no room for another line): from here every write to it blocks.
    eventually(
        "the log pipe full",
        || format!("{} bytes queued", queued()),
        || (queued() >= 3584).then_some(()),
    );
    // Three hold times (3 s) of keepalives, then the flap and the shutdown.
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(
        bird.protocol_state("n0"),
        "Established",
        "the session dropped"
    );
    flap_then_sigterm(node, &bird, &mut child);
    drop(reader);
}
