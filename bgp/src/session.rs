//! The async shell around one [`Session`] core: owns the peer's sockets, reader and writer
//! tasks (`crate::conn`) and timers, feeds events into `Session::handle` and executes its
//! outputs. It holds no protocol logic. Publishes state through a `watch` and counters
//! through an `ArcSwap` snapshot. With BFD configured it starts the peer's BFD session task
//! and turns a BFD failure into [`Input::BfdDown`].
//!
//! ```text
//!   routes watch ──┐     cmd mpsc (Stop, Abandon, Incoming) ──┐
//!                  v                                           v
//!            ┌───────────── peer task (Session core) ──────────────┐ <── watch<BfdStatus>
//!            │ timers: HashMap<Timer, Instant>                      │     BFD session task
//!            └──┬──────────────▲──────────────────┬─────────────────┘     (bfd::shell)
//!      Connect  │   ConnEvent  │ mpsc(64)          │ Bytes mpsc(32) per connection
//!               v              │                   v
//!         connect task    reader task(s)     writer task(s) ──> TCP
//!                    (a header over 4096 octets: ConnEvent::LongHeader, answered by oneshot)
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::bfd::shell::{spawn_session, BfdHandle, Hub};
use crate::bfd::BfdStatus;
use crate::codec::{self, Negotiated, Notification};
use crate::config::{BfdConfig, Identity, PeerConfig};
use crate::conn::{ConnEvent, ConnIo};
use crate::fsm::{ConnId, Input, Output, Session, Timer};
use crate::socket;
use crate::stats::{State, Stats};
use crate::types::{Family, RouteTable};

/// How long an active connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop may take to flush withdrawals and the Cease before connections are cut.
pub const STOP_TIMEOUT: Duration = Duration::from_millis(1500);
/// After a restart in place (Restart State bit set), how long a session waits for the
/// caller's first routes before connecting: the End-of-RIB that follows the initial table
/// makes a graceful restart helper drop every stale route not in it (RFC 4724 §4.2).
pub const RESTART_ROUTES_WAIT: Duration = Duration::from_secs(3);

/// Commands to a peer task.
#[derive(Debug)]
pub enum PeerCmd {
    /// Withdraw everything, send this Cease, close, and end the task.
    Stop(Notification),
    /// Restart in place: close without NOTIFICATION or withdrawals, and end the task.
    Abandon,
    /// The peer's BFD settings changed (nothing else did): new intervals go to the running
    /// BFD session as a Poll Sequence, or BFD starts or stops; BGP is left alone. The hub
    /// is the receive task for the new settings' port.
    SetBfd(Option<BfdConfig>, Option<Hub>),
    /// An incoming connection from this peer's address (passive side).
    Incoming(TcpStream),
}

/// What one peer looks like from outside, published on every state change.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    /// Session state.
    pub state: State,
    /// When the current state was entered (uptime when Established).
    pub since: SystemTime,
    /// The last error: NOTIFICATION sent or received, connect failure, close.
    pub last_error: Option<String>,
    /// Parameters of the current Established session.
    pub negotiated: Option<NegotiatedInfo>,
    /// Our end of the current session.
    pub local: Option<SocketAddr>,
    /// The peer's BFD session, when configured.
    pub bfd: Option<BfdStatus>,
}

/// The parts of [`Negotiated`] worth showing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedInfo {
    /// Negotiated hold time.
    pub hold_time: u16,
    /// Keepalive interval.
    pub keepalive: u16,
    /// Families both sides speak.
    pub families: Vec<Family>,
    /// The peer's BGP Identifier.
    pub peer_id: std::net::Ipv4Addr,
    /// The peer's hostname capability.
    pub peer_hostname: Option<String>,
    /// RFC 8654 extended messages in use.
    pub extended_messages: bool,
    /// Graceful restart families in effect.
    pub graceful_restart: Vec<Family>,
    /// Negotiated families whose routes are not sent for want of a next hop, with why.
    pub without_next_hop: Vec<(Family, &'static str)>,
}

impl From<&Negotiated> for NegotiatedInfo {
    fn from(n: &Negotiated) -> Self {
        NegotiatedInfo {
            hold_time: n.hold_time,
            keepalive: n.keepalive,
            families: n.families.clone(),
            peer_id: n.peer_id,
            peer_hostname: n.peer_hostname.clone(),
            extended_messages: n.max_update_len > codec::MAX_LEN,
            graceful_restart: n.graceful_restart_families.clone(),
            without_next_hop: n.without_next_hop.clone(),
        }
    }
}

impl PeerStatus {
    /// A peer that has not started.
    pub fn idle() -> PeerStatus {
        PeerStatus {
            state: State::Idle,
            since: SystemTime::now(),
            last_error: None,
            negotiated: None,
            local: None,
            bfd: None,
        }
    }
}

/// One peer's task: the session core and everything around it, with one method per input
/// (a command, a connection event, a BFD status, new routes, writer room, a timer). The
/// loop in [`run_peer`] only waits for the next input and dispatches it.
struct PeerTask {
    core: Session,
    cfg: Arc<PeerConfig>,
    events: mpsc::Sender<ConnEvent>,
    conns: HashMap<ConnId, ConnIo>,
    connecting: HashMap<ConnId, JoinHandle<()>>,
    timers: HashMap<Timer, Instant>,
    /// Writer tasks of closed connections still flushing (a NOTIFICATION, a Cease).
    flushing: Vec<JoinHandle<()>>,
    status: watch::Sender<PeerStatus>,
    stats: Arc<ArcSwap<Stats>>,
    /// The peer's BFD session, with the settings it runs with.
    bfd: Option<(BfdHandle, BfdConfig)>,
    /// BFD failures seen so far (a new one closes the BGP session).
    bfd_failures: u64,
    /// After a Stop: when connections are cut even if the Cease is not out yet.
    stop_deadline: Option<Instant>,
    /// The speaker still holds our command channel.
    cmds_open: bool,
    stopped: bool,
}

/// The channels between the speaker and one peer task.
pub(crate) struct PeerLinks {
    /// The desired routes (shared by every peer).
    pub routes: watch::Receiver<Arc<RouteTable>>,
    /// Commands from the speaker.
    pub cmds: mpsc::Receiver<PeerCmd>,
    /// The peer's status, for the speaker's readers.
    pub status: watch::Sender<PeerStatus>,
    /// The session's counters, published after each change.
    pub stats: Arc<ArcSwap<Stats>>,
}

/// Runs one peer until it is stopped. `gate` (a previous task for the same address) is
/// awaited first so that a replaced session's Cease goes out before the new one connects.
pub(crate) async fn run_peer(
    cfg: Arc<PeerConfig>,
    identity: Identity,
    links: PeerLinks,
    gate: Option<JoinHandle<()>>,
    bfd_hub: Option<Hub>,
) {
    let PeerLinks {
        mut routes,
        mut cmds,
        status,
        stats,
    } = links;
    if let Some(g) = gate {
        let _ = tokio::time::timeout(STOP_TIMEOUT * 2, g).await;
    }
    if identity.restarting && cfg.graceful_restart.is_some() && routes.borrow().is_empty() {
        let _ = tokio::time::timeout(RESTART_ROUTES_WAIT, routes.changed()).await;
    }
    let bfd = match (cfg.bfd, bfd_hub) {
        (Some(b), Some(hub)) => Some((
            spawn_session(cfg.address, cfg.source, cfg.interface.clone(), b, hub),
            b,
        )),
        _ => None,
    };
    let seed = u64::from(u32::from(identity.router_id)) ^ (cfg.port as u64) << 32 ^ addr_seed(&cfg);
    let core = Session::new(
        cfg.clone(),
        identity,
        routes.borrow_and_update().clone(),
        seed,
    );
    let (ev_tx, mut ev_rx) = mpsc::channel(64);
    let mut t = PeerTask {
        core,
        cfg,
        events: ev_tx,
        conns: HashMap::new(),
        connecting: HashMap::new(),
        timers: HashMap::new(),
        flushing: Vec::new(),
        status,
        stats,
        bfd,
        bfd_failures: 0,
        stop_deadline: None,
        cmds_open: true,
        stopped: false,
    };
    t.input(Input::Start);

    while !t.stopped {
        let next_timer = t.timers.values().min().copied();
        let writer = t.writer();
        let bfd_open = t.bfd.is_some();
        tokio::select! {
            biased;
            cmd = cmds.recv(), if t.cmds_open => t.on_command(cmd).await,
            Some(ev) = ev_rx.recv() => t.on_conn_event(ev),
            st = bfd_changed(&mut t.bfd), if bfd_open => t.on_bfd(st),
            Ok(()) = routes.changed() => {
                let table = routes.borrow_and_update().clone();
                t.input(Input::Routes(table));
            }
            permit = async { writer.as_ref().expect("guarded").1.clone().reserve_owned().await }, if writer.is_some() => {
                if let (Some((id, _)), Ok(permit)) = (writer, permit) {
                    t.on_writer_room(id, permit);
                }
            }
            _ = sleep_until_opt(next_timer) => t.on_timers(),
            _ = sleep_until_opt(t.stop_deadline) => {
                warn!(peer = %t.cfg.address, "stop timed out; closing connections");
                break;
            }
        }
    }
    t.finish().await;
}

impl PeerTask {
    /// Feeds one input to the core and executes what it asks for.
    fn input(&mut self, input: Input) {
        let outs = self.core.handle(input);
        self.execute(outs);
    }

    /// A command from the speaker (`None`: the speaker dropped us, which is a stop).
    async fn on_command(&mut self, cmd: Option<PeerCmd>) {
        match cmd {
            Some(PeerCmd::Stop(cease)) => self.stop(cease),
            Some(PeerCmd::SetBfd(new, hub)) => self.set_bfd(new, hub).await,
            Some(PeerCmd::Abandon) => self.input(Input::Abandon),
            Some(PeerCmd::Incoming(stream)) => self.on_incoming(stream),
            None => {
                self.cmds_open = false;
                self.stop(Notification::new(
                    codec::notification::code::CEASE,
                    codec::notification::cease::PEER_DECONFIGURED,
                ));
            }
        }
    }

    /// Withdraw everything and send `cease` (a no-op after an earlier stop), cutting the
    /// connections after [`STOP_TIMEOUT`] at the latest.
    fn stop(&mut self, cease: Notification) {
        self.stop_deadline
            .get_or_insert(Instant::now() + STOP_TIMEOUT);
        self.input(Input::Stop(cease));
    }

    /// New BFD settings: a Poll Sequence when only the intervals changed on the same port,
    /// else the BFD session is stopped and, if still wanted, started anew. BGP is untouched.
    async fn set_bfd(&mut self, new: Option<BfdConfig>, hub: Option<Hub>) {
        match (&self.bfd, new) {
            (Some((h, old)), Some(n)) if old.local_port == n.local_port => {
                info!(peer = %self.cfg.address, "BFD intervals changed: Poll Sequence");
                h.reconfigure(n);
                self.bfd = self.bfd.take().map(|(h, _)| (h, n));
            }
            _ => {
                if let Some((h, _)) = self.bfd.take() {
                    h.stop(true).await;
                }
                self.bfd = match (new, hub) {
                    (Some(n), Some(hub)) => Some((
                        spawn_session(
                            self.cfg.address,
                            self.cfg.source,
                            self.cfg.interface.clone(),
                            n,
                            hub,
                        ),
                        n,
                    )),
                    _ => None,
                };
                self.bfd_failures = 0;
                if self.bfd.is_none() {
                    self.status.send_modify(|s| s.bfd = None);
                }
            }
        }
    }

    /// An incoming connection from this peer's address (passive side). With GTSM, one whose
    /// SYN arrived with a TTL below the minimum is closed at once (RFC 5082 §3); the status
    /// shows why, and the log says it once per distinct reason.
    fn on_incoming(&mut self, stream: TcpStream) {
        if let Some(min) = self.cfg.gtsm_min_ttl() {
            if let Ok(Some(ttl)) = socket::syn_ttl(&stream) {
                if ttl < min {
                    let why = format!(
                        "refused a connection that arrived with TTL {ttl}: GTSM needs at least {min}"
                    );
                    if self.status.borrow().last_error.as_deref() != Some(&why) {
                        warn!(peer = %self.cfg.address, ttl, min, "GTSM: refusing a connection with a low TTL");
                    }
                    self.status.send_modify(|s| s.last_error = Some(why));
                    return;
                }
            }
        }
        // Per-peer TTL, GTSM and user timeout: the shared listener cannot carry them.
        let v6 = self.cfg.address.is_ipv6();
        if let Err(e) = socket::set_peer_options(&stream, v6, &self.cfg) {
            warn!(peer = %self.cfg.address, error = %e, "cannot set TTL/GTSM on an incoming connection; closing it");
            return;
        }
        let id = self.core.allocate_conn();
        if let Some(local) = self.attach(id, stream) {
            self.input(Input::Accepted { conn: id, local });
        }
    }

    /// A connect finished, a frame arrived or a connection closed.
    fn on_conn_event(&mut self, ev: ConnEvent) {
        let input = match ev {
            ConnEvent::Connected(id, Ok(stream)) => {
                self.connecting.remove(&id);
                match self.attach(id, stream) {
                    Some(local) => Input::Connected { conn: id, local },
                    None => Input::ConnectFailed {
                        conn: id,
                        error: "socket has no local address".into(),
                    },
                }
            }
            ConnEvent::Connected(id, Err(e)) => {
                self.connecting.remove(&id);
                Input::ConnectFailed {
                    conn: id,
                    error: e.to_string(),
                }
            }
            ConnEvent::Frame(id, frame) => Input::Frame { conn: id, frame },
            ConnEvent::LongHeader(id, hdr, go_on) => {
                let fits = codec::check_header(&hdr, self.core.max_message_len(id)).is_ok();
                let _ = go_on.send(fits);
                if fits {
                    return;
                }
                // The core answers the bare header with NOTIFICATION 1/2 (§6.1).
                Input::Frame {
                    conn: id,
                    frame: Bytes::copy_from_slice(&hdr),
                }
            }
            ConnEvent::Closed(id, error) => Input::Closed { conn: id, error },
        };
        self.input(input);
    }

    /// The BFD session's status changed (`None`: its task is gone). A new failure closes
    /// the BGP session at once (RFC 9384).
    fn on_bfd(&mut self, st: Option<BfdStatus>) {
        let Some(st) = st else {
            self.bfd = None;
            return;
        };
        let failed = st.failures > self.bfd_failures;
        self.bfd_failures = st.failures;
        let diag = st.local_diag;
        self.status.send_modify(|s| s.bfd = Some(st));
        if failed {
            self.input(Input::BfdDown(diag.to_string()));
        }
    }

    /// The connection the writer arm should serve with its writer: one with pending bytes,
    /// else the one the core wants to send UPDATEs on.
    fn writer(&self) -> Option<(ConnId, mpsc::Sender<Bytes>)> {
        let id = self
            .conns
            .iter()
            .find(|(_, c)| !c.pending.is_empty())
            .map(|(id, _)| *id)
            .or_else(|| {
                self.core
                    .wants_tx()
                    .filter(|id| self.conns.contains_key(id))
            })?;
        self.conns.get(&id).map(|c| (id, c.writer.clone()))
    }

    /// The writer of `id` has room for one message: the oldest pending one, else the next
    /// UPDATE the core generates.
    fn on_writer_room(&mut self, id: ConnId, permit: mpsc::OwnedPermit<Bytes>) {
        if self.conns.get(&id).is_some_and(|c| c.pending.is_empty()) {
            self.input(Input::TxReady(id));
        }
        if let Some(msg) = self.conns.get_mut(&id).and_then(|c| c.pending.pop_front()) {
            permit.send(msg);
        }
    }

    /// Every timer that is due.
    fn on_timers(&mut self) {
        let now = Instant::now();
        let due: Vec<Timer> = self
            .timers
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            self.timers.remove(&t);
            self.input(Input::Timer(t));
        }
    }

    /// After the loop: BFD AdminDown, connections flushed and closed, final status.
    async fn finish(mut self) {
        if let Some((h, _)) = self.bfd.take() {
            // §6.8.16: tell the peer AdminDown, which it must not take for a failure
            // (RFC 5882 §3.2). Also when restarting in place: FRR then keeps the routes as
            // stale (graceful restart helper) instead of tearing the session down on a BFD
            // timeout.
            let mut st = h.status.clone();
            h.stop(true).await;
            let last = st.borrow_and_update().clone();
            self.status.send_modify(|s| s.bfd = Some(last));
        }
        for (_, c) in self.conns.drain() {
            c.reader.abort();
            // Dropping `c.writer` lets the writer flush what it has and shut down, within
            // STOP_TIMEOUT from now.
            c.closing.cancel();
            self.flushing.push(c.write_task);
        }
        for (_, h) in self.connecting.drain() {
            h.abort();
        }
        // Return only once the withdrawals and the Cease are on the wire or the writers gave
        // up (each at most STOP_TIMEOUT after its close) and reset their connections: a
        // caller may exit the process, and the runtime with it, right after.
        let deadline = Instant::now() + STOP_TIMEOUT + Duration::from_millis(100);
        for h in self.flushing.drain(..) {
            let _ = tokio::time::timeout_at(deadline, h).await;
        }
        self.publish_stats();
        self.status.send_modify(|s| {
            s.state = State::Idle;
            s.since = SystemTime::now();
            s.negotiated = None;
            s.local = None;
        });
    }
}

fn addr_seed(cfg: &PeerConfig) -> u64 {
    match cfg.address {
        std::net::IpAddr::V4(a) => u32::from(a) as u64,
        std::net::IpAddr::V6(a) => (u128::from(a) as u64) ^ ((u128::from(a) >> 64) as u64),
    }
}

/// The next BFD status, or `None` once the BFD task is gone.
async fn bfd_changed(h: &mut Option<(BfdHandle, BfdConfig)>) -> Option<BfdStatus> {
    let (h, _) = h.as_mut()?;
    h.status.changed().await.ok()?;
    let st = h.status.borrow_and_update().clone();
    Some(st)
}

pub(crate) async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl PeerTask {
    /// Starts the reader and writer tasks of a connected stream. Returns our end's address.
    fn attach(&mut self, id: ConnId, stream: TcpStream) -> Option<SocketAddr> {
        let c = ConnIo::spawn(id, stream, &self.events)?;
        let local = c.local;
        self.conns.insert(id, c);
        Some(local)
    }

    fn execute(&mut self, outs: Vec<Output>) {
        let addr = self.cfg.address;
        for o in outs {
            match o {
                Output::Connect(id) => {
                    let cfg = self.cfg.clone();
                    let ev = self.events.clone();
                    let h = tokio::spawn(async move {
                        let r = socket::connect(&cfg, CONNECT_TIMEOUT).await;
                        let _ = ev.send(ConnEvent::Connected(id, r)).await;
                    });
                    self.connecting.insert(id, h);
                }
                Output::Send(id, bytes) => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        if c.pending.is_empty() {
                            if let Err(mpsc::error::TrySendError::Full(b)) =
                                c.writer.try_send(bytes)
                            {
                                c.pending.push_back(b);
                            }
                        } else {
                            c.pending.push_back(bytes);
                        }
                    }
                }
                Output::Close(id) => {
                    if let Some(h) = self.connecting.remove(&id) {
                        h.abort();
                    }
                    if let Some(c) = self.conns.remove(&id) {
                        c.reader.abort();
                        // Hand what is left to the writer, then drop it: the writer flushes
                        // and shuts the socket down (FIN).
                        let ConnIo {
                            writer,
                            pending,
                            write_task,
                            closing,
                            ..
                        } = c;
                        closing.cancel();
                        self.flushing.retain(|h| !h.is_finished());
                        self.flushing.push(write_task);
                        tokio::spawn(async move {
                            for b in pending {
                                if tokio::time::timeout(STOP_TIMEOUT, writer.send(b))
                                    .await
                                    .is_err()
                                {
                                    break;
                                }
                            }
                        });
                    }
                }
                Output::SetTimer(t, d) => {
                    self.timers.insert(t, Instant::now() + d);
                }
                Output::CancelTimer(t) => {
                    self.timers.remove(&t);
                }
                Output::StateChanged { from, to } => {
                    debug!(peer = %addr, %from, %to, "BGP state");
                    let local = self.conns.values().next().map(|c| c.local);
                    let err = self.core.last_error().map(str::to_owned);
                    self.status.send_modify(|s| {
                        s.state = to;
                        s.since = SystemTime::now();
                        s.last_error = err;
                        if to != State::Established {
                            s.negotiated = None;
                        }
                        s.local = local;
                    });
                }
                Output::Established(neg) => {
                    info!(peer = %addr, hold = neg.hold_time, families = ?neg.families, "BGP session established");
                    for (family, why) in &neg.without_next_hop {
                        warn!(peer = %addr, %family, reason = why, "routes of this family are not sent to this peer");
                    }
                    let info = NegotiatedInfo::from(neg.as_ref());
                    self.status.send_modify(|s| s.negotiated = Some(info));
                }
                Output::Down {
                    reason,
                    established,
                } => {
                    if established || reason.is_protocol_error() {
                        warn!(peer = %addr, %reason, "BGP session down");
                    } else {
                        debug!(peer = %addr, %reason, "BGP connection attempt ended");
                    }
                    self.status
                        .send_modify(|s| s.last_error = Some(reason.to_string()));
                }
                Output::Stopped => self.stopped = true,
            }
        }
        self.publish_stats();
    }

    fn publish_stats(&self) {
        if **self.stats.load() != *self.core.stats() {
            self.stats.store(Arc::new(self.core.stats().clone()));
        }
    }
}
