//! Shared helpers of the daemon end-to-end tests (`tests/daemon_*.rs`): start the real `vipr`
//! binary inside a node namespace ([`Vipr`]), read its `/status` through `vipr status --json`,
//! look at the node's `lo`, write BIRD/FRR router configs for the lab, poll a peer for a
//! route, and a tiny HTTP health endpoint ([`HealthServer`]) living in a namespace.
//!
//! Everything is cleaned up on `Drop`, also when a test panics; a failing test prints the
//! daemon's log.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use testbed::{wait_for, Bird, Frr, Lab, Netns, Proc, TempDir};

/// The IPv4 control-plane VIP of every test.
pub const VIP4: &str = "192.0.2.10";
/// The IPv6 control-plane VIP.
pub const VIP6: &str = "2001:db8:ff::10";
/// vipr's AS.
pub const NODE_AS: u32 = 65001;
/// The router's AS.
pub const ROUTER_AS: u32 = 65000;
/// Long enough for any convergence in the lab (sessions come up in 1-3 s).
pub const CONVERGE: Duration = Duration::from_secs(20);
/// `prometheus_server` of every vipr (each namespace has its own loopback).
pub const HTTP: &str = "127.0.0.1:2112";

/// The binary under test.
pub fn vipr_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vipr")
}

/// The kube-vip environment of a BGP control-plane node peering with the lab's router:
/// both VIPs, AS 65001, fast timers, HTTP on 127.0.0.1:2112, state in `state_dir`.
pub fn base_env(state_dir: &Path) -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    for (k, v) in [
        ("bgp_enable", "true"),
        ("cp_enable", "true"),
        ("address", "192.0.2.10,2001:db8:ff::10"),
        ("bgp_as", "65001"),
        ("bgp_peers", "10.55.0.1:65000::false"),
        ("bgp_hold_time", "3"),
        ("bgp_keepalive_interval", "1"),
        ("prometheus_server", HTTP),
    ] {
        e.insert(k.to_string(), v.to_string());
    }
    e.insert(
        "vipr_state_dir".into(),
        state_dir.to_str().expect("utf-8 path").to_string(),
    );
    e
}

/// `vipr manager` running in a namespace, its stdout and stderr appended to a log file.
/// `Drop` kills it (SIGKILL) and, if the test is panicking, prints the log.
pub struct Vipr {
    proc: Option<Proc>,
    ns: String,
    log: PathBuf,
    label: String,
}

impl Vipr {
    /// Start `vipr manager ARGS` in `ns` with exactly `env` (plus PATH) as its
    /// environment; output goes to `log` (appended, so a restart keeps the earlier run).
    pub fn start(ns: &Netns, env: &BTreeMap<String, String>, args: &[&str], log: &Path) -> Vipr {
        let label = format!("vipr in {}", ns.name);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        // The marker is part of the log the tests search: passwords stay out of it too.
        let shown: BTreeMap<&String, &str> = env
            .iter()
            .map(|(k, v)| match k.as_str() {
                "bgp_peers" | "bgp_peerpass" => (k, "<secret>"),
                _ => (k, v.as_str()),
            })
            .collect();
        let _ = writeln!(&f, "===== {label}: start, env {shown:?} args {args:?}");
        let g = f.try_clone().expect("dup log fd");
        let mut argv = vec![vipr_bin(), "manager"];
        argv.extend_from_slice(args);
        let child = ns
            .command(&argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(
                std::env::var("VIPR_TEST_LOGLEVEL")
                    .ok()
                    .map(|l| ("vip_loglevel".to_string(), l)),
            )
            .envs(env)
            .stdout(f)
            .stderr(g)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        Vipr {
            proc: Some(Proc::new("vipr", child)),
            ns: ns.name.clone(),
            log: log.to_path_buf(),
            label,
        }
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("vipr process")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("vipr process").pid()
    }

    /// Send a signal (e.g. `libc::SIGHUP`).
    pub fn signal(&mut self, sig: i32) {
        self.proc().signal(sig);
    }

    /// `Some(status)` once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.proc().exited()
    }

    /// Wait up to `timeout` for the process to exit; panics (with the log) if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let st = wait_for(timeout, || self.proc().exited());
        st.unwrap_or_else(|| panic!("{} did not exit within {timeout:?}", self.label))
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        self.proc().kill()
    }

    /// The whole log so far (every run written to this log file).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log of the current run only (after its start marker).
    pub fn run_log(&self) -> String {
        let all = self.log();
        let marker = format!("===== {}: start", self.label);
        match all.rfind(&marker) {
            Some(i) => all[i..].to_string(),
            None => all,
        }
    }

    /// Panics unless the process is still running, showing its log.
    pub fn assert_running(&mut self) {
        if let Some(st) = self.proc().exited() {
            panic!("{} exited unexpectedly ({st})", self.label);
        }
    }

    /// `vipr status --json --addr 127.0.0.1:2112` inside the namespace, parsed; `None` while
    /// the daemon does not answer.
    pub fn status(&self) -> Option<Value> {
        let out = ns_run(&self.ns, &[vipr_bin(), "status", "--json", "--addr", HTTP]);
        if !out.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "vipr status --json is not JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        }))
    }

    /// Poll the status until `f` accepts it; panics with the last status and the log.
    pub fn wait_status(&self, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
        let mut last = None;
        let got = wait_for(CONVERGE, || {
            let s = self.status()?;
            let ok = f(&s);
            last = Some(s.clone());
            ok.then_some(s)
        });
        got.unwrap_or_else(|| {
            panic!(
                "{}: status never showed {what}; last status:\n{last:#?}",
                self.label
            )
        })
    }

    /// Rewrites the `--config` file with `text`, sends SIGHUP and waits for the `n`th
    /// "configuration reloaded" line of this run.
    pub fn reload(&mut self, file: &Path, text: &str, n: usize) {
        std::fs::write(file, text).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        self.signal(libc::SIGHUP);
        wait_for(CONVERGE, || {
            (self
                .run_log()
                .matches("SIGHUP: configuration reloaded")
                .count()
                >= n)
                .then_some(())
        })
        .unwrap_or_else(|| panic!("{}: no reload #{n}:\n{}", self.label, self.log()));
    }

    /// Poll the status until the session with the router (10.55.0.1) is Established and its
    /// BFD session Up; that status.
    pub fn wait_bgp_and_bfd_up(&self) -> Value {
        self.wait_status("BGP Established and BFD Up", |s| {
            let p = Vipr::peer(s, "10.55.0.1");
            p["state"] == "Established" && p["bfd"]["state"] == "Up"
        })
    }

    /// The status entry of peer `addr`, or `Null` while there is none: `/status` answers
    /// from the first moment, before the configured peers are added, so a wait must read
    /// "not there yet" as "not yet", and an assertion on a field still fails plainly.
    pub fn peer(status: &Value, addr: &str) -> Value {
        entry(status, "peers", addr)
    }

    /// Why VIP `ip` is held back, per `/status` (`None`: served, unknown, or no status).
    pub fn held_back(&self, ip: &str) -> Option<String> {
        let st = self.status()?;
        Vipr::vip(&st, ip)["held_back"].as_str().map(str::to_string)
    }

    /// The status entry of VIP `addr`, or `Null` while there is none (as [`Vipr::peer`]).
    pub fn vip(status: &Value, addr: &str) -> Value {
        entry(status, "vips", addr)
    }
}

impl Drop for Vipr {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} ({}):\n{}\n-----",
                self.label,
                self.log.display(),
                self.log()
            );
        }
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }
}

/// `ip netns exec NS args...`, output whatever the exit status.
pub fn ns_run(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec {ns} {args:?}: {e}"))
}

/// The VIPs on `lo` of a namespace as `ADDR/LEN`: its addresses (`ip -j addr show dev lo`)
/// and vipr's local routes there (Service VIPs in BGP mode, [`local_routes`]).
pub fn lo_addrs(ns: &Netns) -> Vec<String> {
    let v = ip_json(&["-j", "-n", &ns.name, "addr", "show", "dev", "lo"]);
    let mut addrs = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if let (Some(l), Some(p)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
                addrs.push(format!("{l}/{p}"));
            }
        }
    }
    addrs.extend(local_routes(ns, "lo"));
    addrs
}

/// vipr's local routes on `dev` (table local, protocol 86) as `ADDR/LEN`, both families:
/// where vipr puts a VIP that only Services ask for in BGP mode.
pub fn local_routes(ns: &Netns, dev: &str) -> Vec<String> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        let v = ip_json(&[
            "-j", fam, "-n", &ns.name, "route", "show", "table", "local", "dev", dev, "proto", "86",
        ]);
        for r in v.as_array().into_iter().flatten() {
            if let Some(d) = r["dst"].as_str() {
                let host = if fam == "-4" { "/32" } else { "/128" };
                out.push(if d.contains('/') {
                    d.to_string()
                } else {
                    format!("{d}{host}")
                });
            }
        }
    }
    out
}

/// How often `addr` (e.g. `"192.0.2.10/32"`) is on `lo`.
pub fn lo_count(ns: &Netns, addr: &str) -> usize {
    lo_addrs(ns).iter().filter(|a| *a == addr).count()
}

/// Poll until `f` returns `Some`, panicking with `what` and `context()` after [`CONVERGE`].
pub fn eventually<T>(what: &str, context: impl Fn() -> String, f: impl FnMut() -> Option<T>) -> T {
    wait_for(CONVERGE, f).unwrap_or_else(|| panic!("timed out waiting for {what}\n{}", context()))
}

/// Measure how long after `start` the predicate becomes true (polled every 20 ms), up to 10 s.
pub fn time_until(start: Instant, mut f: impl FnMut() -> bool) -> Option<Duration> {
    wait_for(Duration::from_secs(10), || f().then(|| start.elapsed()))
}

/// BIRD timers for quick convergence (see testbed::bird).
pub const BIRD_TIMERS: &str =
    "hold time 3; keepalive time 1; connect retry time 1; connect delay time 1; error wait time 1, 5;";

/// A BIRD config for the lab's router (10.55.0.1, AS 65000): one passive protocol `nI` per
/// node index, IPv4 and IPv6 channels over the IPv4 session, importing everything.
pub fn bird_router_conf(nodes: &[usize]) -> String {
    let mut c = format!(
        "router id {};\nlog stderr all;\nprotocol device {{}}\n",
        Lab::router_v4()
    );
    for &i in nodes {
        c.push_str(&format!(
            "protocol bgp n{i} {{\n  local {} as {ROUTER_AS}; neighbor {} as {NODE_AS}; passive on; {BIRD_TIMERS}\n  \
             ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; }};\n}}\n",
            Lab::router_v4(),
            Lab::node_v4(i),
        ));
    }
    c
}

/// [`bird_router_conf`] with BFD on every session at `ms` milliseconds x 3.
pub fn bird_bfd_conf(nodes: &[usize], ms: u32) -> String {
    bird_router_conf(nodes).replace("passive on;", "passive on; bfd on;")
        + &format!(
            "protocol bfd {{\n  interface \"*\" {{ min rx interval {ms} ms; min tx interval {ms} ms; multiplier 3; }};\n}}\n"
        )
}

/// [`base_env`] with BFD to the router at `ms` milliseconds x 3 (7th field of `bgp_peers`).
pub fn bfd_env(state_dir: &Path, ms: u32) -> BTreeMap<String, String> {
    let mut e = base_env(state_dir);
    e.insert(
        "bgp_peers".into(),
        format!("10.55.0.1:65000::false:179::true;{ms};{ms};3"),
    );
    e
}

/// An FRR bgpd config for a router at `router_id` (AS 65000) with passive IPv4 neighbours
/// (AS 65001) activated for IPv4 and IPv6 unicast, `maximum-paths 8` for ECMP.
pub fn frr_router_conf(router_id: &str, neighbors: &[String]) -> String {
    let mut c = format!(
        "hostname router\nlog stdout informational\nrouter bgp {ROUTER_AS}\n bgp router-id {router_id}\n \
         no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n"
    );
    for n in neighbors {
        c.push_str(&format!(
            " neighbor {n} remote-as {NODE_AS}\n neighbor {n} timers 1 3\n neighbor {n} timers connect 1\n neighbor {n} passive\n"
        ));
    }
    for af in ["ipv4", "ipv6"] {
        c.push_str(&format!(
            " address-family {af} unicast\n  maximum-paths 8\n"
        ));
        for n in neighbors {
            c.push_str(&format!("  neighbor {n} activate\n"));
        }
        c.push_str(" exit-address-family\n");
    }
    c.push_str("!\n");
    c
}

/// FRR (bgpd and bfdd) in `router` peering with `node` as [`frr_router_conf`] does, with BFD
/// at 50 ms × 3 on that session.
pub fn frr_bfd(router: &Netns, node: &str) -> Frr {
    let conf = frr_router_conf("10.55.0.1", &[node.to_string()]).replace(
        &format!(" neighbor {node} passive\n"),
        &format!(" neighbor {node} passive\n neighbor {node} bfd profile fast\n"),
    );
    Frr::start_with_bfdd(
        router,
        &conf,
        "bfd\n profile fast\n  receive-interval 50\n  transmit-interval 50\n  detect-multiplier 3\n !\n!\n",
    )
}

/// BIRD's route for `prefix` from protocol `proto`, if any.
pub fn bird_route(bird: &Bird, prefix: &str, proto: &str) -> Option<testbed::BirdRoute> {
    bird.routes_for(prefix)
        .into_iter()
        .find(|r| r.from_protocol == proto)
}

/// The BGP paths FRR holds for `prefix` (`ipv4`/`ipv6` from the prefix).
pub fn frr_paths(frr: &Frr, prefix: &str) -> Vec<Value> {
    let af = if prefix.contains(':') { "ipv6" } else { "ipv4" };
    let v = frr.vtysh_json(&format!("show bgp {af} unicast {prefix} json"));
    v["paths"].as_array().cloned().unwrap_or_default()
}

/// The next hops (IP text) of zebra's selected route for `prefix`.
pub fn frr_rib_nexthops(frr: &Frr, prefix: &str) -> Vec<String> {
    let cmd = if prefix.contains(':') {
        "show ipv6 route"
    } else {
        "show ip route"
    };
    let v = frr.vtysh_json(&format!("{cmd} {prefix} json"));
    let mut out = Vec::new();
    for r in v[prefix].as_array().into_iter().flatten() {
        if r["selected"] != true {
            continue;
        }
        for nh in r["nexthops"].as_array().into_iter().flatten() {
            if nh["active"] == true {
                if let Some(ip) = nh["ip"].as_str() {
                    out.push(ip.to_string());
                }
            }
        }
    }
    out.sort();
    out
}

/// One HTTP/1.1 GET to `addr` made from inside `ns`; returns (status code, body).
pub fn http_get(ns: &Netns, addr: &str, path: &str) -> Option<(u16, String)> {
    ns.enter(|| {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((code, body))
    })
}

/// A canned HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status line after `HTTP/1.1`, e.g. `200 OK`.
    pub status: String,
    /// Content-Type.
    pub content_type: String,
    /// Body.
    pub body: String,
}

impl Reply {
    /// A reply with this status and body.
    pub fn new(status: &str, content_type: &str, body: &str) -> Reply {
        Reply {
            status: status.into(),
            content_type: content_type.into(),
            body: body.into(),
        }
    }
}

/// A minimal HTTP server in a namespace answering every request with the current [`Reply`].
/// Stopped and joined on `Drop`.
pub struct HttpServer {
    /// `http://127.0.0.1:PORT`, reachable from inside the namespace.
    pub base: String,
    reply: Arc<Mutex<Reply>>,
    stop: Arc<AtomicBool>,
    hits: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Listen on 127.0.0.1 (an ephemeral port) inside `ns`.
    pub fn start(ns: &Netns, reply: Reply) -> HttpServer {
        let listener =
            ns.enter(|| TcpListener::bind("127.0.0.1:0").expect("bind test HTTP server"));
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let reply = Arc::new(Mutex::new(reply));
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicU32::new(0));
        let (r, s, n) = (reply.clone(), stop.clone(), hits.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        n.fetch_add(1, Ordering::SeqCst);
                        let current = r.lock().unwrap().clone();
                        answer(conn, &current);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("test HTTP server accept: {e}"),
                }
            }
        });
        HttpServer {
            base,
            reply,
            stop,
            hits,
            thread: Some(thread),
        }
    }

    /// Answer with `reply` from now on.
    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// Requests served so far.
    pub fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The control-plane health endpoint: 200 or 500 depending on [`HealthServer::set_healthy`].
pub struct HealthServer {
    /// `http://127.0.0.1:PORT/livez`, reachable from inside the namespace.
    pub url: String,
    server: HttpServer,
}

fn health_reply(ok: bool) -> Reply {
    if ok {
        Reply::new("200 OK", "text/plain", "ok\n")
    } else {
        Reply::new("500 Internal Server Error", "text/plain", "failing\n")
    }
}

impl HealthServer {
    /// Listen on 127.0.0.1 (an ephemeral port) inside `ns`.
    pub fn start(ns: &Netns, healthy: bool) -> HealthServer {
        let server = HttpServer::start(ns, health_reply(healthy));
        HealthServer {
            url: format!("{}/livez", server.base),
            server,
        }
    }

    /// Answer 200 (true) or 500 (false) from now on.
    pub fn set_healthy(&self, ok: bool) {
        self.server.set(health_reply(ok));
    }

    /// Requests served so far.
    pub fn hits(&self) -> u32 {
        self.server.hits()
    }
}

fn answer(mut conn: TcpStream, r: &Reply) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let _ = write!(
        conn,
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        r.status,
        r.content_type,
        r.body.len(),
        r.body
    );
}

/// A per-test temporary directory for vipr's state and logs.
pub fn workdir() -> TempDir {
    TempDir::new("vt")
}

/// The entry of `status[list]` whose `address` is `addr`, `Null` when there is none.
fn entry(status: &Value, list: &str, addr: &str) -> Value {
    status[list]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["address"] == addr))
        .cloned()
        .unwrap_or(Value::Null)
}

/// `ip ARGS` (with `-j`) parsed as JSON; `Null` when it prints nothing usable.
pub fn ip_json(args: &[&str]) -> Value {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// BIRD's "since" column for protocol `n0`, and its state.
pub fn bird_session(bird: &Bird) -> (String, String) {
    let out = bird.birdc("show protocols n0");
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.first() == Some(&"n0") && c.len() >= 5)
        .map(|c| (c[3].to_string(), c[4].to_string()))
        .unwrap_or_default()
}

/// Whether two [`bird_session`] readings show the same session: the same state, and "since"
/// within 100 ms (BIRD prints the time from its monotonic clock plus an offset it keeps
/// re-reading: the same moment may show one millisecond apart; a reset moves it by seconds).
pub fn same_session(a: &(String, String), b: &(String, String)) -> bool {
    let ms = |t: &str| -> Option<i64> {
        let (hms, frac) = t.split_once('.').unwrap_or((t, "0"));
        let mut v = 0i64;
        for p in hms.split(':') {
            v = v * 60 + p.parse::<i64>().ok()?;
        }
        Some(v * 1000 + format!("{frac:0<3}")[..3].parse::<i64>().ok()?)
    };
    a.0 == b.0
        && match (ms(&a.1), ms(&b.1)) {
            (Some(x), Some(y)) => (x - y).abs() <= 100,
            _ => a.1 == b.1,
        }
}

/// Another router on the lab's bridge (a ToR switch): a namespace whose `eth0` is on `br0`
/// at `10.55.0.n/24` (`n` in 2..=10: between the lab router and the nodes). Its veth goes
/// with the namespace on `Drop`.
pub fn lab_tor(lab: &Lab, n: u8) -> Netns {
    assert!((2..=10).contains(&n), "ToR addresses are 10.55.0.2 to .10");
    let ns = Netns::new("vt");
    lab.router.sh(&format!(
        "ip link add tor{n} type veth peer name eth0 netns {} && \
         ip link set tor{n} master br0 && ip link set tor{n} up",
        ns.name
    ));
    ns.sh(&format!(
        "ip link set eth0 up && ip addr add 10.55.0.{n}/24 dev eth0"
    ));
    ns
}

/// FRR's `show bgp neighbors json` entry of `peer` (`Null` when unknown).
pub fn frr_neighbor(frr: &Frr, peer: &str) -> Value {
    frr.vtysh_json(&format!("show bgp neighbors {peer} json"))[peer].clone()
}
