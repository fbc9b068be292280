//! The control-plane load-balancing scenario, run by the real `vipr` binary against both data
//! planes: nftables on this host (`tests/lb_nft.rs`) and IPVS inside a QEMU guest booted on
//! Debian's kernel (`tests/lb_ipvs_vm.rs`, which runs this same code in the guest).
//!
//! ```text
//!   client ns 10.70.3.2 ──veth── VIP ns: vipr (BGP mode), VIP 192.0.2.10 on lo, ip_forward=1
//!                                  ├──veth── backend ns b1 10.70.1.2:8080 (HTTP, answers "b1")
//!                                  └──veth── backend ns b2 10.70.2.2:8080 (HTTP, answers "b2")
//! ```
//! Requests go to 192.0.2.10:6443 from the VIP namespace itself (NAT output path) and from the
//! client namespace (prerouting/forward path). Everything is torn down on `Drop`.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use testbed::{wait_for, Netns};

use crate::daemon_common::Vipr;

/// The VIP and `lb_port`.
pub const VIP: &str = "192.0.2.10:6443";
/// The backends.
pub const B1: &str = "10.70.1.2:8080";
/// The second backend.
pub const B2: &str = "10.70.2.2:8080";

/// Which data plane the scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataplane {
    /// nftables (this host).
    Nftables,
    /// IPVS (the guest).
    Ipvs,
}

impl Dataplane {
    /// The `vipr_lb_backend` value.
    pub fn name(self) -> &'static str {
        match self {
            Dataplane::Nftables => "nftables",
            Dataplane::Ipvs => "ipvs",
        }
    }
}

/// The namespaces and veths.
pub struct Topo {
    /// vipr's namespace (the load balancer).
    pub vip: Netns,
    /// A remote client.
    pub client: Netns,
    /// b1, b2.
    pub backends: Vec<Netns>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Topo {
    /// Builds the topology above.
    pub fn new() -> Topo {
        let vip = Netns::new("lbv");
        let client = Netns::new("lbc");
        let backends = vec![Netns::new("lbb"), Netns::new("lbb")];
        let peers: Vec<&Netns> = backends.iter().chain(std::iter::once(&client)).collect();
        for (i, ns) in peers.iter().enumerate() {
            let n = i + 1;
            let veth = format!("lbv{n}");
            ip(&[
                "-n", &vip.name, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "netns", &ns.name,
            ]);
            ip(&[
                "-n",
                &vip.name,
                "addr",
                "add",
                &format!("10.70.{n}.1/24"),
                "dev",
                &veth,
            ]);
            ip(&["-n", &vip.name, "link", "set", &veth, "up"]);
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("10.70.{n}.2/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns.name, "link", "set", "eth0", "up"]);
            ip(&[
                "-n",
                &ns.name,
                "route",
                "add",
                "default",
                "via",
                &format!("10.70.{n}.1"),
            ]);
        }
        let out = vip.run(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        assert!(out.status.success(), "{out:?}");
        Topo {
            vip,
            client,
            backends,
        }
    }
}

/// An HTTP server in a namespace answering every request with its name; `stop` closes the
/// listener, so connects are refused (RST) as with a dead API server.
pub struct Backend {
    stop: Arc<AtomicBool>,
    fd: i32,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Listen on `addr` inside `ns` (blocking accept, one connection at a time).
    pub fn start(ns: &Netns, addr: &str, name: &str) -> Backend {
        let listener = ns.enter(|| TcpListener::bind(addr).expect("bind backend"));
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let stop = Arc::new(AtomicBool::new(false));
        let (s, body) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((mut c, _)) = listener.accept() else {
                    continue;
                };
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut req = Vec::new();
                let mut buf = [0u8; 512];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Backend {
            stop,
            fd,
            thread: Some(thread),
        }
    }

    /// Close the listener: connects are refused from now on.
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            // SAFETY: the listener is alive until the thread (joined below) returns; shutdown
            // wakes its blocking accept, after which it sees `stop` and drops the listener.
            unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
            let _ = t.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One GET from the calling thread's namespace; the body, or the error.
pub fn get_here(addr: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .ok_or_else(|| format!("bad answer {buf:?}"))
}

/// One GET from inside `ns`; the body, or the error.
pub fn get(ns: &Netns, addr: &str) -> Result<String, String> {
    ns.enter(|| get_here(addr))
}

/// `n` requests through the VIP from `ns`: how many each backend answered; panics on any
/// failure.
pub fn spread(ns: &Netns, n: usize) -> BTreeMap<String, usize> {
    let mut got = BTreeMap::new();
    for i in 0..n {
        match get(ns, VIP) {
            Ok(b) => *got.entry(b).or_insert(0) += 1,
            Err(e) => panic!("request {i} through {VIP} from {} failed: {e}", ns.name),
        }
    }
    got
}

/// The backends programmed for the VIP, as the kernel shows them (`None`: no service).
pub fn programmed(dp: Dataplane, ns: &Netns) -> Option<BTreeSet<String>> {
    match dp {
        Dataplane::Nftables => {
            let out = ns.run(&["nft", "-j", "list", "table", "inet", "vipr"]);
            if !out.status.success() {
                return None;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let map = v["nftables"].as_array()?.iter().find_map(|i| {
                let m = i.get("map")?;
                (m["name"] == "b4_c000020a_192b").then(|| m.clone())
            })?;
            Some(
                map["elem"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| {
                        let c = e.get(1)?.get("concat")?;
                        Some(format!("{}:{}", c[0].as_str()?, c[1].as_u64()?))
                    })
                    .collect(),
            )
        }
        Dataplane::Ipvs => {
            let out = ns.run(&["ipvsadm", "-Ln", "-t", VIP]);
            if !out.status.success() {
                return None;
            }
            Some(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("-> "))
                    .filter_map(|l| l.split_whitespace().next())
                    .filter(|a| a.contains('.'))
                    .map(str::to_string)
                    .collect(),
            )
        }
    }
}

/// The whole state vipr must leave as it found it: the ruleset without counters, or the
/// IPVS table.
pub fn snapshot(dp: Dataplane, ns: &Netns) -> String {
    let out = match dp {
        Dataplane::Nftables => ns.run(&["nft", "-s", "list", "ruleset"]),
        Dataplane::Ipvs => ns.run(&["ipvsadm", "-Ln"]),
    };
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Someone else's configuration in the VIP namespace that vipr must not touch.
pub fn foreign_state(dp: Dataplane, ns: &Netns) {
    match dp {
        Dataplane::Nftables => ns.sh(
            "nft add table ip other && \
             nft add chain ip other pre '{ type nat hook prerouting priority -90; }' && \
             nft add rule ip other pre tcp dport 6443 counter",
        ),
        Dataplane::Ipvs => ns.sh(
            "ipvsadm -A -t 10.9.9.9:80 -s wlc && ipvsadm -a -t 10.9.9.9:80 -r 10.70.1.2:8080 -m -w 3",
        ),
    };
}

/// The environment of vipr: a BGP node (its peer never answers: not needed here) serving
/// the control-plane VIP with load balancing over the two static backends.
pub fn lb_env(dp: Dataplane, state_dir: &Path) -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    for (k, v) in [
        ("bgp_enable", "true"),
        ("cp_enable", "true"),
        ("address", "192.0.2.10"),
        ("bgp_as", "65001"),
        ("bgp_peers", "10.70.9.9:65000::false"),
        ("prometheus_server", "127.0.0.1:2112"),
        ("lb_enable", "true"),
        ("lb_port", "6443"),
        ("lb_fwdmethod", "masquerade"),
        ("backend_health_check_interval", "1"),
        ("vip_loglevel", "debug"),
    ] {
        e.insert(k.to_string(), v.to_string());
    }
    e.insert("vipr_lb_backend".into(), dp.name().into());
    e.insert("vipr_state_dir".into(), state_dir.display().to_string());
    e
}

/// Waits until the kernel shows exactly `want` as the VIP's backends; the time it took.
pub fn wait_programmed(dp: Dataplane, ns: &Netns, want: &[&str], vipr: &Vipr) -> Duration {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let t0 = Instant::now();
    let mut last = None;
    let ok = wait_for(Duration::from_secs(30), || {
        let got = programmed(dp, ns);
        let hit = got.as_ref() == Some(&want);
        last = got;
        hit.then_some(())
    });
    if ok.is_none() {
        panic!(
            "{}: backends never became {want:?}; last {last:?}\n{}\nvipr log:\n{}",
            dp.name(),
            snapshot(dp, ns),
            vipr.log()
        );
    }
    t0.elapsed()
}

/// Waits until the reconciler has put the VIP on `lo`.
pub fn wait_vip(ns: &Netns, vipr: &Vipr) {
    if wait_for(Duration::from_secs(30), || {
        (crate::daemon_common::lo_count(ns, "192.0.2.10/32") == 1).then_some(())
    })
    .is_none()
    {
        panic!("the VIP never appeared on lo\n{}", vipr.log());
    }
}

/// What the scenario measured.
#[derive(Debug, Default)]
pub struct Timings {
    /// Backend killed → removed from the data plane (detection by the 1 s check included).
    pub failure_to_removed: Duration,
    /// Backend back → in the data plane again.
    pub recovery_to_added: Duration,
}

/// The scenario: requests reach both backends; a killed backend is taken out by the health
/// check and every following request succeeds; it comes back and gets traffic again; vipr's
/// exit leaves the kernel exactly as before its start, and someone else's configuration
/// survives start, changes and exit untouched.
pub fn scenario(dp: Dataplane, env: BTreeMap<String, String>, log: &Path) -> Timings {
    let topo = Topo::new();
    let mut b1 = Backend::start(&topo.backends[0], B1, "b1");
    let mut b2 = Backend::start(&topo.backends[1], B2, "b2");
    foreign_state(dp, &topo.vip);
    let before = snapshot(dp, &topo.vip);
    let mut env = env;
    env.insert("vipr_lb_backends".into(), format!("{B1},{B2}"));
    let mut vipr = Vipr::start(&topo.vip, &env, &[], log);
    wait_programmed(dp, &topo.vip, &[B1, B2], &vipr);
    // The VIP on lo is the reconciler's part (routes to it need it), not the balancer's.
    wait_vip(&topo.vip, &vipr);
    for ns in [&topo.vip, &topo.client] {
        let got = spread(ns, 20);
        assert!(
            got.contains_key("b1") && got.contains_key("b2"),
            "from {}: {got:?}",
            ns.name
        );
        assert_eq!(got.values().sum::<usize>(), 20);
    }
    eprintln!(
        "{} with both backends up:\n{}",
        dp.name(),
        snapshot(dp, &topo.vip)
    );
    let foreign_line = |s: &str| {
        s.lines()
            .filter(|l| l.contains("10.9.9.9") || l.contains("table ip other"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        foreign_line(&snapshot(dp, &topo.vip)),
        foreign_line(&before),
        "foreign state changed at start"
    );

    // A backend dies: the health check takes it out; from then on every request succeeds.
    b2.stop();
    let failure_to_removed = wait_programmed(dp, &topo.vip, &[B1], &vipr);
    for ns in [&topo.vip, &topo.client] {
        assert_eq!(
            spread(ns, 20),
            BTreeMap::from([("b1".to_string(), 20)]),
            "from {}",
            ns.name
        );
    }
    // It comes back and gets traffic again.
    let _b2 = Backend::start(&topo.backends[1], B2, "b2");
    let recovery_to_added = wait_programmed(dp, &topo.vip, &[B1, B2], &vipr);
    for ns in [&topo.vip, &topo.client] {
        let got = spread(ns, 20);
        assert!(
            got.contains_key("b1") && got.contains_key("b2"),
            "from {}: {got:?}",
            ns.name
        );
    }
    assert_eq!(
        foreign_line(&snapshot(dp, &topo.vip)),
        foreign_line(&before),
        "foreign state changed"
    );

    // vipr stops: its services are gone, everything else is as it was.
    vipr.signal(libc::SIGTERM);
    let st = vipr.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "vipr exit {st}\n{}", vipr.log());
    assert_eq!(
        snapshot(dp, &topo.vip),
        before,
        "vipr left changes behind\n{}",
        vipr.log()
    );
    assert!(programmed(dp, &topo.vip).is_none());
    b1.stop();
    Timings {
        failure_to_removed,
        recovery_to_added,
    }
}
