//! The tokio side of BFD: no protocol logic here, only sockets, timers and channels.
//!
//! ```text
//!                UDP :3784 (v4 and v6 sockets, TTL 255 required)
//!                          │ recvmsg + TTL
//!                          v
//!     ┌──────────── hub task (one per receive port) ────────────┐
//!     │ decode (§6.8.6), demultiplex: Your Discriminator,       │<── HubCmd mpsc (Register,
//!     │ else the source address                                 │    Unregister)
//!     └────┬─────────────────────────────┬──────────────────────┘
//!          │ Packet mpsc(32)             │
//!          v                             v
//!   session task (BfdSession core)   session task ...
//!   timers: Tx, Detect               own UDP socket: source port 49152-65535, TTL 255
//!          │ watch<BfdStatus>
//!          v
//!   BGP peer task (closes the BGP session on a failure)
//! ```
//!
//! After [`own_thread`], the hub and session tasks run on a runtime of their own, on a
//! thread of its own: a busy runtime elsewhere in the process (a daemon syncing ten
//! thousand objects) cannot delay a 50 ms Control packet past the peer's Detection Time.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::fsm::{BfdSession, BfdTimer, Input, Output};
use super::packet::{BfdState, Packet};
use super::BfdStatus;
use crate::config::BfdConfig;
use crate::socket;

/// RFC 5881 §4: source ports of BFD Control packets.
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// How long a stopping session may take to send its AdminDown.
const STOP_TIMEOUT: Duration = Duration::from_millis(200);

/// The BFD runtime, once [`own_thread`] has started it.
static OWN: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();

/// Runs every BFD hub and session started from now on on a single-threaded runtime on a
/// thread named `bfd`, apart from the caller's runtime. Without it they run on the
/// caller's runtime (what tests with paused time need).
pub fn own_thread() -> io::Result<()> {
    if OWN.get().is_some() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("bfd".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    let _ = OWN.set(handle);
    Ok(())
}

/// Answers once the runtime BFD tasks run on has run a task spawned now: that thread is
/// turning over (a liveness probe). `false` if that runtime is gone.
pub async fn ping() -> bool {
    runtime().spawn(async {}).await.is_ok()
}

/// Test hook: blocks the runtime BFD tasks run on for good, as a stuck thread would (with
/// [`own_thread`], the `bfd` thread; without, the caller's runtime). Lets a test see a
/// liveness probe notice it; nothing else calls it.
#[doc(hidden)]
pub fn stall() {
    warn!("BFD thread stalled by its test hook");
    runtime().spawn(async {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    });
}

/// The runtime BFD tasks and sockets belong to.
fn runtime() -> tokio::runtime::Handle {
    OWN.get()
        .cloned()
        .unwrap_or_else(tokio::runtime::Handle::current)
}

enum HubCmd {
    Register {
        peer: IpAddr,
        tx: mpsc::Sender<Packet>,
        reply: oneshot::Sender<u32>,
    },
    Unregister(u32),
}

/// Handle to the receive task of one UDP port; sessions register with it. The task ends
/// when every handle is gone.
#[derive(Clone, Debug)]
pub struct Hub {
    cmd: mpsc::Sender<HubCmd>,
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    t ^ (std::process::id() as u64) << 32
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn bind_rx(addr: SocketAddr) -> io::Result<UdpSocket> {
    let v6 = addr.is_ipv6();
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        sock.set_only_v6(true)?;
    }
    socket::set_bfd_ttl(&sock, v6, true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

impl Hub {
    /// Binds `0.0.0.0:port` and `[::]:port` (either may fail, not both) and starts the
    /// receive task.
    pub fn start(port: u16) -> io::Result<Hub> {
        let rt = runtime();
        // The sockets register with the reactor of the runtime that drives them.
        let _in = rt.enter();
        let v4 = bind_rx(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
        let v6 = bind_rx(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)));
        let (v4, v6) = match (v4, v6) {
            (Err(e), Err(_)) => return Err(e),
            (Err(e), Ok(s)) => {
                warn!(port, error = %e, "BFD: no IPv4 receive socket");
                (None, Some(s))
            }
            (Ok(s), Err(e)) => {
                warn!(port, error = %e, "BFD: no IPv6 receive socket");
                (Some(s), None)
            }
            (Ok(a), Ok(b)) => (Some(a), Some(b)),
        };
        let (tx, rx) = mpsc::channel(16);
        rt.spawn(run_hub(v4, v6, rx));
        Ok(Hub { cmd: tx })
    }

    async fn register(&self, peer: IpAddr, tx: mpsc::Sender<Packet>) -> Option<u32> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(HubCmd::Register { peer, tx, reply })
            .await
            .ok()?;
        rx.await.ok()
    }

    async fn unregister(&self, disc: u32) {
        let _ = self.cmd.send(HubCmd::Unregister(disc)).await;
    }
}

async fn recv(
    sock: &Option<UdpSocket>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<u8>)> {
    match sock {
        Some(s) => {
            s.async_io(Interest::READABLE, || socket::recv_with_ttl(s, buf))
                .await
        }
        None => std::future::pending().await,
    }
}

/// Sessions known to a hub.
#[derive(Default)]
struct Registry {
    by_disc: HashMap<u32, (IpAddr, mpsc::Sender<Packet>)>,
    by_peer: HashMap<IpAddr, u32>,
}

impl Registry {
    /// RFC 5880 §6.8.6 demultiplexing: by Your Discriminator when set (and the sender must
    /// be that session's peer), else by the source address (single-hop, §3 of RFC 5881).
    fn deliver(&self, from: IpAddr, p: Packet) {
        let disc = if p.your_disc != 0 {
            p.your_disc
        } else {
            match self.by_peer.get(&from) {
                Some(d) => *d,
                None => {
                    debug!(%from, "BFD packet from an unknown peer dropped");
                    return;
                }
            }
        };
        match self.by_disc.get(&disc) {
            Some((peer, tx)) if *peer == from => {
                if tx.try_send(p).is_err() {
                    debug!(%from, "BFD session busy; packet dropped");
                }
            }
            _ => debug!(%from, disc, "BFD packet for an unknown discriminator dropped"),
        }
    }
}

async fn run_hub(v4: Option<UdpSocket>, v6: Option<UdpSocket>, mut cmds: mpsc::Receiver<HubCmd>) {
    let mut reg = Registry::default();
    let mut rng = seed() | 1;
    let (mut b4, mut b6) = ([0u8; 512], [0u8; 512]);
    loop {
        let (r, buf) = tokio::select! {
            cmd = cmds.recv() => {
                match cmd {
                    None => return,
                    Some(HubCmd::Register { peer, tx, reply }) => {
                        let disc = loop {
                            let d = xorshift(&mut rng) as u32;
                            if d != 0 && !reg.by_disc.contains_key(&d) {
                                break d;
                            }
                        };
                        reg.by_disc.insert(disc, (peer, tx));
                        reg.by_peer.insert(peer, disc);
                        let _ = reply.send(disc);
                    }
                    Some(HubCmd::Unregister(disc)) => {
                        if let Some((peer, _)) = reg.by_disc.remove(&disc) {
                            if reg.by_peer.get(&peer) == Some(&disc) {
                                reg.by_peer.remove(&peer);
                            }
                        }
                    }
                }
                continue;
            }
            r = recv(&v4, &mut b4) => (r, &b4[..]),
            r = recv(&v6, &mut b6) => (r, &b6[..]),
        };
        let (n, from, ttl) = match r {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "BFD receive failed");
                continue;
            }
        };
        let from = from.ip().to_canonical();
        // RFC 5881 §5: single-hop packets must arrive with TTL / hop limit 255 (GTSM).
        if ttl != Some(255) {
            debug!(%from, ?ttl, "BFD packet with TTL other than 255 dropped");
            continue;
        }
        match Packet::decode(&buf[..n]) {
            Ok(p) => reg.deliver(from, p),
            Err(e) => debug!(%from, error = %e, "invalid BFD packet dropped"),
        }
    }
}

/// A running session: its status, how to change its intervals and how to stop it.
pub struct BfdHandle {
    stop: Option<oneshot::Sender<bool>>,
    reconfigure: mpsc::Sender<BfdConfig>,
    task: JoinHandle<()>,
    /// Follows the session's status.
    pub status: watch::Receiver<BfdStatus>,
}

impl BfdHandle {
    /// New intervals or multiplier for the running session: a Poll Sequence when Up
    /// (RFC 5880 §6.8.3), the session itself stays.
    pub fn reconfigure(&self, cfg: BfdConfig) {
        let _ = self.reconfigure.try_send(cfg);
    }

    /// Ends the session; with `admin_down`, first tells the peer AdminDown (§6.8.16).
    pub async fn stop(mut self, admin_down: bool) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(admin_down);
        }
        if tokio::time::timeout(STOP_TIMEOUT, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Starts the session with `peer` (sending from `source` when set; over `interface` when
/// set: a link-local peer of BGP unnumbered, RFC 5881 §4 single hop on that link) on `hub`.
pub fn spawn_session(
    peer: IpAddr,
    source: Option<IpAddr>,
    interface: Option<String>,
    cfg: BfdConfig,
    hub: Hub,
) -> BfdHandle {
    let (stop_tx, stop_rx) = oneshot::channel();
    let (cfg_tx, cfg_rx) = mpsc::channel(4);
    let (status_tx, status_rx) =
        watch::channel(BfdStatus::idle(cfg.min_tx, cfg.min_rx, cfg.multiplier));
    let task = runtime().spawn(run_session(
        peer, source, interface, cfg, hub, status_tx, stop_rx, cfg_rx,
    ));
    BfdHandle {
        stop: Some(stop_tx),
        reconfigure: cfg_tx,
        task,
        status: status_rx,
    }
}

/// The transmit socket: bound to a random source port in 49152-65535 (RFC 5881 §4), TTL 255.
fn tx_socket(peer: IpAddr, source: Option<IpAddr>, rng: &mut u64) -> io::Result<UdpSocket> {
    let v6 = peer.is_ipv6();
    let ip = source.filter(|s| s.is_ipv6() == v6).unwrap_or(if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    let span = (*SOURCE_PORTS.end() - *SOURCE_PORTS.start()) as u64 + 1;
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for _ in 0..64 {
        let port = *SOURCE_PORTS.start() + (xorshift(rng) % span) as u16;
        let addr = SocketAddr::new(ip, port);
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if v6 {
            sock.set_only_v6(true)?;
        }
        socket::set_bfd_ttl(&sock, v6, false)?;
        sock.set_nonblocking(true)?;
        match sock.bind(&addr.into()) {
            Ok(()) => return UdpSocket::from_std(sock.into()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

struct SessionShell {
    /// Where packets go; with an interface, scoped to it when the socket is made.
    peer: SocketAddr,
    source: Option<IpAddr>,
    interface: Option<String>,
    sock: Option<UdpSocket>,
    rng: u64,
    tx_at: Option<Instant>,
    detect_at: Option<Instant>,
    since: SystemTime,
    status: watch::Sender<BfdStatus>,
}

impl SessionShell {
    fn execute(&mut self, core: &BfdSession, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Send(p) => self.send(&p),
                Output::SetTimer(BfdTimer::Tx, d) => self.tx_at = Some(Instant::now() + d),
                Output::SetTimer(BfdTimer::Detect, d) => self.detect_at = Some(Instant::now() + d),
                Output::CancelTimer(BfdTimer::Tx) => self.tx_at = None,
                Output::CancelTimer(BfdTimer::Detect) => self.detect_at = None,
                Output::StateChanged { from, to, diag } => {
                    self.since = SystemTime::now();
                    let peer = self.peer.ip();
                    if to == BfdState::Up {
                        info!(%peer, "BFD session up");
                    } else if from == BfdState::Up {
                        warn!(%peer, %to, %diag, "BFD session down");
                    } else {
                        debug!(%peer, %from, %to, %diag, "BFD state");
                    }
                }
            }
        }
        let st = core.status(self.since);
        self.status.send_if_modified(|s| {
            if *s == st {
                false
            } else {
                *s = st;
                true
            }
        });
    }

    fn send(&mut self, p: &Packet) {
        if self.sock.is_none() {
            let made = tx_socket(self.peer.ip(), self.source, &mut self.rng).and_then(|s| {
                if let Some(i) = &self.interface {
                    // Single hop on this link (RFC 5881 §4): bound to it, the link-local
                    // destination scoped to it.
                    s.bind_device(Some(i.as_bytes()))?;
                    if let SocketAddr::V6(p) = &mut self.peer {
                        p.set_scope_id(socket::if_index(i)?);
                    }
                }
                Ok(s)
            });
            match made {
                Ok(s) => self.sock = Some(s),
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "BFD: no transmit socket yet");
                    return;
                }
            }
        }
        if let Some(s) = &self.sock {
            if let Err(e) = s.try_send_to(&p.encode(), self.peer) {
                debug!(peer = %self.peer, error = %e, "BFD send failed");
                if self.interface.is_some() && e.kind() != io::ErrorKind::WouldBlock {
                    // The interface may be gone or recreated: bind anew next time.
                    self.sock = None;
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_session(
    peer: IpAddr,
    source: Option<IpAddr>,
    interface: Option<String>,
    cfg: BfdConfig,
    hub: Hub,
    status: watch::Sender<BfdStatus>,
    mut stop: oneshot::Receiver<bool>,
    mut reconfigure: mpsc::Receiver<BfdConfig>,
) {
    let (tx, mut rx) = mpsc::channel(32);
    let Some(disc) = hub.register(peer, tx).await else {
        warn!(%peer, "BFD receive task gone; no BFD session");
        return;
    };
    let mut rng = seed() ^ disc as u64 | 1;
    let mut shell = SessionShell {
        peer: SocketAddr::new(peer, cfg.peer_port),
        source,
        interface,
        sock: None,
        rng: xorshift(&mut rng),
        tx_at: None,
        detect_at: None,
        since: SystemTime::now(),
        status,
    };
    let mut core = BfdSession::new(disc, cfg, rng);
    let outs = core.handle(Input::Start);
    shell.execute(&core, outs);
    loop {
        // A packet that is already queued counts before a timer due at the same moment.
        let input = tokio::select! {
            biased;
            admin = &mut stop => {
                if admin.unwrap_or(true) {
                    let outs = core.handle(Input::AdminDown);
                    shell.execute(&core, outs);
                }
                break;
            }
            Some(p) = rx.recv() => Input::Packet(p),
            Some(c) = reconfigure.recv() => {
                shell.peer.set_port(c.peer_port);
                Input::Reconfigure(c)
            }
            _ = sleep_until_opt(shell.detect_at) => {
                shell.detect_at = None;
                Input::Timer(BfdTimer::Detect)
            }
            _ = sleep_until_opt(shell.tx_at) => {
                shell.tx_at = None;
                Input::Timer(BfdTimer::Tx)
            }
        };
        let outs = core.handle(input);
        shell.execute(&core, outs);
    }
    hub.unregister(disc).await;
}
