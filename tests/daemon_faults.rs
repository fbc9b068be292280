//! Fault injection against the real `vipr` binary, a real BIRD 2 peer and the kernel's
//! nftables (control-plane load balancing on), in the lab's namespaces.
//!
//! ```text
//!   router ns: BIRD 10.55.0.1 (passive) ──┐ br0 ── veth0 (the node's cable)
//!   node0 ns:  vipr 10.55.0.11, VIPs on lo, nftables table inet vipr,
//!              backends b1 10.55.0.11:16001, b2 10.55.0.11:16002 (TCP)
//! ```
//!
//! - `kill -9` at random points (seeded, printed; `VIPR_FAULTS_SEED` replays): during
//!   startup, during a route change (SIGHUP to another VIP set and backend set) and during
//!   shutdown; then vipr starts again with one of the two configurations and the node's VIPs,
//!   the nftables backend map and BIRD's routes converge to exactly that configuration; a
//!   final SIGTERM leaves no VIP, no table, no route.
//! - The peering link down and up (the router's end of the veth): BIRD drops the session
//!   (hold time), the VIPs stay on the node, the routes come back when the cable does.
//! - The peer killed (SIGKILL) and restarted: vipr reconnects and re-advertises.
//! - The state file's filesystem full (a 64 KiB tmpfs filled up): vipr serves the VIPs,
//!   says it cannot record them, and a kill -9 + restart still adopts and finally removes
//!   them (the IFA_PROTO marker alone identifies them).
//!
//! The API server going down and up is `k8s_outage.rs`; hostile peers are `hostile_peer.rs`.

mod daemon_common;
mod lb_common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon_common::*;
use lb_common::{programmed, Backend, Dataplane};
use testbed::{Bird, Lab, Netns};

const B1: &str = "10.55.0.11:16001";
const B2: &str = "10.55.0.11:16002";

/// One of the two configurations the test switches between.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Conf {
    /// VIP 192.0.2.10 plus .11-.13, backends b1 and b2.
    A,
    /// VIP 192.0.2.10 plus .14-.16, backend b1 only.
    B,
}

impl Conf {
    fn extra(self) -> [&'static str; 3] {
        match self {
            Conf::A => ["192.0.2.11", "192.0.2.12", "192.0.2.13"],
            Conf::B => ["192.0.2.14", "192.0.2.15", "192.0.2.16"],
        }
    }
    fn backends(self) -> Vec<&'static str> {
        match self {
            Conf::A => vec![B1, B2],
            Conf::B => vec![B1],
        }
    }
    /// The /32s vipr must advertise and put on `lo`.
    fn prefixes(self) -> BTreeSet<String> {
        std::iter::once(VIP4)
            .chain(self.extra())
            .map(|a| format!("{a}/32"))
            .collect()
    }
    fn yaml(self, state: &Path) -> String {
        let list = |v: Vec<&str>| v.iter().map(|a| format!("  - {a}\n")).collect::<String>();
        format!(
            "bgp_enable: true\ncp_enable: true\naddress: {VIP4}\nbgp_as: {NODE_AS}\n\
             bgp_peers: 10.55.0.1:{ROUTER_AS}::false\nbgp_hold_time: 3\nbgp_keepalive_interval: 1\n\
             prometheus_server: {HTTP}\nvipr_state_dir: {}\nvipr_static_vips:\n{}\
             lb_enable: true\nlb_port: 6443\nlb_fwdmethod: masquerade\n\
             backend_health_check_interval: 1\nvipr_lb_backend: nftables\nvipr_lb_backends:\n{}",
            state.display(),
            list(self.extra().to_vec()),
            list(self.backends()),
        )
    }
}

/// A small xorshift generator: the test's random points, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The 192.0.2.0/24 addresses on the node's `lo`.
fn node_vips(node: &Netns) -> BTreeSet<String> {
    lo_addrs(node)
        .into_iter()
        .filter(|a| a.starts_with("192.0.2."))
        .collect()
}

/// The 192.0.2.0/24 prefixes BIRD has from the node.
fn bird_prefixes(bird: &Bird) -> BTreeSet<String> {
    bird.routes()
        .into_iter()
        .filter(|r| r.prefix.starts_with("192.0.2.") && r.from_protocol == "n0")
        .map(|r| r.prefix)
        .collect()
}

struct Rig {
    lab: Lab,
    bird: Bird,
    dir: testbed::TempDir,
    _backends: Vec<Backend>,
}

impl Rig {
    fn new() -> Rig {
        let lab = Lab::new(1);
        let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
        let backends = vec![
            Backend::start(&lab.nodes[0], B1, "b1"),
            Backend::start(&lab.nodes[0], B2, "b2"),
        ];
        Rig {
            lab,
            bird,
            dir: workdir(),
            _backends: backends,
        }
    }
    fn node(&self) -> &Netns {
        &self.lab.nodes[0]
    }
    fn state(&self) -> std::path::PathBuf {
        self.dir.join("state")
    }
    fn log(&self) -> std::path::PathBuf {
        self.dir.join("vipr.log")
    }
    /// Writes `conf` to the config file and starts vipr with it.
    fn start(&self, conf: Conf) -> Vipr {
        self.write(conf);
        let file = self.dir.join("vipr.yaml");
        Vipr::start(
            self.node(),
            &Default::default(),
            &["--config", file.to_str().unwrap()],
            &self.log(),
        )
    }
    fn write(&self, conf: Conf) {
        self.dir.write("vipr.yaml", &conf.yaml(&self.state()));
    }
    fn ctx(&self) -> String {
        format!(
            "lo: {:?}\nBIRD: {:?}\nnft: {:?}\n{}\n{}",
            node_vips(self.node()),
            bird_prefixes(&self.bird),
            programmed(Dataplane::Nftables, self.node()),
            self.bird.birdc("show protocols"),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        )
    }
    /// This vipr's session is Established and the node's VIPs, BIRD's routes and the
    /// backend map are exactly `conf`'s.
    fn converged(&self, vipr: &Vipr, conf: Conf, what: &str) -> Duration {
        let t0 = Instant::now();
        let want_backends: BTreeSet<String> =
            conf.backends().iter().map(|b| b.to_string()).collect();
        eventually(
            what,
            || self.ctx(),
            || {
                let up = vipr
                    .status()
                    .is_some_and(|st| Vipr::peer(&st, "10.55.0.1")["state"] == "Established");
                (up && node_vips(self.node()) == conf.prefixes()
                    && bird_prefixes(&self.bird) == conf.prefixes()
                    && programmed(Dataplane::Nftables, self.node()) == Some(want_backends.clone()))
                .then_some(())
            },
        );
        t0.elapsed()
    }
    /// Nothing of vipr's is left: no VIP, no table, no route.
    fn clean(&self, what: &str) {
        eventually(
            what,
            || self.ctx(),
            || {
                (node_vips(self.node()).is_empty()
                    && bird_prefixes(&self.bird).is_empty()
                    && programmed(Dataplane::Nftables, self.node()).is_none())
                .then_some(())
            },
        );
    }
}

#[test]
fn kill9_at_random_points_then_restart_converges() {
    let seed = std::env::var("VIPR_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("VIPR_FAULTS_SEED={seed}");
    let mut rng = Rng(seed);
    let rig = Rig::new();
    let rounds = 9;
    for round in 0..rounds {
        let first = if rng.below(2) == 0 { Conf::A } else { Conf::B };
        let other = if first == Conf::A { Conf::B } else { Conf::A };
        let phase = round % 3;
        let mut vipr = rig.start(first);
        let delay = match phase {
            // Startup: anywhere from before the first address to after the first UPDATE.
            0 => Duration::from_millis(rng.below(600)),
            // A route change: SIGHUP to the other VIP and backend set, killed mid-apply.
            1 => {
                rig.converged(&vipr, first, "first configuration");
                rig.write(other);
                vipr.signal(libc::SIGHUP);
                Duration::from_millis(rng.below(80))
            }
            // Shutdown: SIGTERM, killed while withdrawing and removing.
            _ => {
                rig.converged(&vipr, first, "first configuration");
                vipr.signal(libc::SIGTERM);
                Duration::from_millis(rng.below(20))
            }
        };
        std::thread::sleep(delay);
        vipr.kill9();
        let next = if rng.below(2) == 0 { Conf::A } else { Conf::B };
        eprintln!("round {round}: {first:?}, phase {phase}, kill -9 after {delay:?}, restart with {next:?}");
        let mut vipr = rig.start(next);
        let took = rig.converged(
            &vipr,
            next,
            &format!("round {round}: converged to {next:?}"),
        );
        eprintln!("round {round}: converged in {took:?}");
        if round == rounds - 1 {
            vipr.signal(libc::SIGTERM);
            assert!(vipr.wait_exit(Duration::from_secs(10)).success());
            rig.clean("nothing left after the final SIGTERM");
        } else {
            vipr.kill9();
        }
    }
    let log = std::fs::read_to_string(rig.log()).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn link_down_and_up_and_peer_restart() {
    let mut rig = Rig::new();
    let mut vipr = rig.start(Conf::A);
    rig.converged(&vipr, Conf::A, "routes at BIRD");

    // Cable out: BIRD's hold timer (3 s) drops the session and the routes; the VIPs stay.
    rig.lab.link_down(0);
    eventually(
        "BIRD drops the routes",
        || rig.ctx(),
        || bird_prefixes(&rig.bird).is_empty().then_some(()),
    );
    assert_eq!(node_vips(rig.node()), Conf::A.prefixes());
    std::thread::sleep(Duration::from_secs(4)); // vipr's hold timer expires too
    let t0 = Instant::now();
    rig.lab.link_up(0);
    let took = rig.converged(&vipr, Conf::A, "routes back after the link came up");
    eprintln!(
        "link up -> routes back at BIRD in {:?} ({took:?})",
        t0.elapsed()
    );
    vipr.assert_running();

    // The peer dies and comes back.
    rig.bird.process().expect("bird").kill();
    rig.bird.restart();
    let t0 = Instant::now();
    rig.converged(&vipr, Conf::A, "routes back after BIRD restarted");
    eprintln!("BIRD restarted -> routes back in {:?}", t0.elapsed());
    vipr.assert_running();

    vipr.signal(libc::SIGTERM);
    assert!(vipr.wait_exit(Duration::from_secs(10)).success());
    rig.clean("nothing left after SIGTERM");
}

/// A tmpfs mounted for the test, unmounted on drop (also when the test fails).
struct SmallFs(std::path::PathBuf);

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn full_disk_for_the_state_file() {
    let rig = Rig::new();
    let state = rig.state();
    std::fs::create_dir_all(&state).unwrap();
    let st = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=64k,mode=0700",
            "vipr-faults",
            state.to_str().unwrap(),
        ])
        .status()
        .expect("mount");
    assert!(st.success(), "mount tmpfs on {}", state.display());
    let _fs = SmallFs(state.clone());
    // Fill it: writes end with ENOSPC.
    let _ = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}/filler", state.display()),
            "bs=4k",
        ])
        .stderr(std::process::Stdio::null())
        .status();

    let mut vipr = rig.start(Conf::A);
    rig.converged(&vipr, Conf::A, "VIPs served with a full disk");
    let log = std::fs::read_to_string(rig.log()).unwrap_or_default();
    assert!(
        log.contains("cannot record VIP addresses"),
        "the full disk is reported:\n{log}"
    );
    let recorded = std::fs::read_to_string(state.join("addresses")).unwrap_or_default();
    assert!(
        recorded.is_empty(),
        "nothing could be recorded: {recorded:?}"
    );

    // Crash and restart with the other VIP set: A's extra VIPs are found by their marker
    // and removed, B's are added; the end is clean.
    vipr.kill9();
    let mut vipr = rig.start(Conf::B);
    rig.converged(&vipr, Conf::B, "converged to B with a full disk");
    vipr.signal(libc::SIGTERM);
    assert!(vipr.wait_exit(Duration::from_secs(10)).success());
    rig.clean("nothing left with a full disk");
}
