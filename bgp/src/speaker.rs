//! The [`Speaker`] handle: the public API of the crate. One speaker task owns the peer
//! table (add, replace, remove without touching other sessions) and routes incoming
//! connections from the optional listener to their peer task. The desired routes live in
//! one `watch` channel that every peer task follows.
//!
//! ```text
//!  Speaker (clonable handle) ── SpeakerCmd mpsc(64) ──> speaker task ── PeerCmd mpsc ──> peer tasks
//!        │                                                  ^
//!        └── announce/withdraw: watch<Arc<RouteTable>> ─────┼──────────────────────────> peer tasks
//!                                       listener task ──────┘ (Incoming)
//!                                BFD hub task per UDP port ──> BFD session tasks ──> peer tasks
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::bfd::shell::Hub;
use crate::codec::notification::{cease, code};
use crate::codec::Notification;
use crate::config::{check_router_id, BfdConfig, ConfigError, Identity, PeerConfig, SpeakerConfig};
use crate::refusals::{self, Refusals};
use crate::session::{run_peer, PeerCmd, PeerLinks, PeerStatus};
use crate::socket;
use crate::stats::Stats;
use crate::types::{RouteAttrs, RouteTable};

/// Errors of the speaker API.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    /// The peer configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A peer with this address exists already.
    #[error("peer {0} already exists")]
    Exists(IpAddr),
    /// The listener could not be bound or configured.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The BFD receive port could not be bound.
    #[error("BFD receive port {port}: {source} (one BFD speaker per network namespace: is another vipr instance here running BFD?)")]
    Bfd {
        /// The UDP port.
        port: u16,
        /// The cause.
        source: std::io::Error,
    },
    /// No BGP Identifier yet: sessions start once [`Speaker::set_router_id`] gave one.
    #[error("no BGP router id yet")]
    NoRouterId,
    /// The router id is not a unicast IPv4 address.
    #[error("router id {0}: {1}")]
    BadRouterId(Ipv4Addr, &'static str),
    /// A peer on an interface whose neighbour's link-local address is not known yet
    /// ([`PeerConfig::awaits_neighbor`]).
    #[error("peer on interface {0}: its link-local address is not known yet")]
    AwaitsNeighbor(String),
    /// The speaker task has shut down.
    #[error("the speaker has shut down")]
    Gone,
}

/// How to shut the speaker down.
#[derive(Debug, Clone)]
pub struct ShutdownOptions {
    /// RFC 9003 shutdown communication sent with Cease / Administrative Shutdown.
    pub message: String,
    /// RFC 8326: first re-advertise everything with GRACEFUL_SHUTDOWN and wait this long.
    pub drain: Option<Duration>,
}

impl Default for ShutdownOptions {
    fn default() -> Self {
        ShutdownOptions {
            message: "vipr shutting down".to_string(),
            drain: None,
        }
    }
}

/// A snapshot of one peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Its configuration (the password is never formatted).
    pub config: Arc<PeerConfig>,
    /// State, uptime, last error, negotiated parameters.
    pub status: PeerStatus,
    /// Counters.
    pub stats: Stats,
}

enum SpeakerCmd {
    Set(PeerConfig, oneshot::Sender<Result<bool, SpeakerError>>),
    Add(PeerConfig, oneshot::Sender<Result<(), SpeakerError>>),
    Remove(IpAddr, oneshot::Sender<bool>),
    List(oneshot::Sender<Vec<PeerInfo>>),
    Watch(IpAddr, oneshot::Sender<Option<watch::Receiver<PeerStatus>>>),
    Incoming(TcpStream, SocketAddr),
    RouterId(Ipv4Addr, oneshot::Sender<Result<bool, SpeakerError>>),
    Listen(
        Option<SocketAddr>,
        oneshot::Sender<Result<Option<SocketAddr>, SpeakerError>>,
    ),
    Shutdown(ShutdownOptions, oneshot::Sender<()>),
    Abandon(oneshot::Sender<()>),
    Ping(oneshot::Sender<()>),
    Stall,
}

struct PeerEntry {
    cfg: Arc<PeerConfig>,
    cmd: mpsc::Sender<PeerCmd>,
    status: watch::Receiver<PeerStatus>,
    stats: Arc<ArcSwap<Stats>>,
    task: JoinHandle<()>,
}

/// Handle to the speaker. Cheap to clone.
#[derive(Clone)]
pub struct Speaker {
    cmd: mpsc::Sender<SpeakerCmd>,
    routes: Arc<watch::Sender<Arc<RouteTable>>>,
    local_listen: Arc<std::sync::Mutex<Option<SocketAddr>>>,
}

impl Speaker {
    /// Starts the speaker task (and the listener when configured).
    pub async fn start(cfg: SpeakerConfig) -> Result<Speaker, SpeakerError> {
        if let Some(id) = cfg.router_id {
            check_router_id(id).map_err(|e| SpeakerError::BadRouterId(id, e))?;
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (routes_tx, _) = watch::channel(Arc::new(RouteTable::new()));
        let routes = Arc::new(routes_tx);
        let local_listen = Arc::new(std::sync::Mutex::new(None));
        let mut task = SpeakerTask {
            peers: HashMap::new(),
            routes: routes.clone(),
            listener: None,
            cmd: cmd_tx.downgrade(),
            local_listen: local_listen.clone(),
            router_id: cfg.router_id,
            restarting: cfg.restarting,
            bfd_hubs: HashMap::new(),
            refusals: Refusals::default(),
        };
        task.listen(cfg.listen)?;
        tokio::spawn(task.run(cmd_rx));
        Ok(Speaker {
            cmd: cmd_tx,
            routes,
            local_listen,
        })
    }

    /// The bound listener address, if listening.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        *self.local_listen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets our BGP Identifier. A change resets every session (it is in every OPEN);
    /// returns whether it changed.
    pub async fn set_router_id(&self, id: Ipv4Addr) -> Result<bool, SpeakerError> {
        self.call(|tx| SpeakerCmd::RouterId(id, tx)).await?
    }

    /// Listens on another address (or stops listening with `None`); sessions are untouched.
    /// Returns the bound address.
    pub async fn set_listen(
        &self,
        addr: Option<SocketAddr>,
    ) -> Result<Option<SocketAddr>, SpeakerError> {
        self.call(|tx| SpeakerCmd::Listen(addr, tx)).await?
    }

    async fn call<T>(
        &self,
        f: impl FnOnce(oneshot::Sender<T>) -> SpeakerCmd,
    ) -> Result<T, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(f(tx)).await.map_err(|_| SpeakerError::Gone)?;
        rx.await.map_err(|_| SpeakerError::Gone)
    }

    /// Adds a peer; fails if one with the same address exists.
    pub async fn add_peer(&self, cfg: PeerConfig) -> Result<(), SpeakerError> {
        self.call(|tx| SpeakerCmd::Add(cfg, tx)).await?
    }

    /// Adds the peer, or replaces it if its configuration changed (that session alone is
    /// reset with Cease / Other Configuration Change; a change of the BFD settings alone
    /// keeps the BGP session: a Poll Sequence for new intervals, or BFD started or
    /// stopped). Returns whether anything changed.
    pub async fn set_peer(&self, cfg: PeerConfig) -> Result<bool, SpeakerError> {
        self.call(|tx| SpeakerCmd::Set(cfg, tx)).await?
    }

    /// Removes a peer: its routes are withdrawn and Cease / Peer De-configured is sent.
    pub async fn remove_peer(&self, addr: IpAddr) -> Result<bool, SpeakerError> {
        self.call(|tx| SpeakerCmd::Remove(addr, tx)).await
    }

    /// Every peer with status and counters.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, SpeakerError> {
        self.call(SpeakerCmd::List).await
    }

    /// Follows one peer's status.
    pub async fn watch_peer(
        &self,
        addr: IpAddr,
    ) -> Result<Option<watch::Receiver<PeerStatus>>, SpeakerError> {
        self.call(|tx| SpeakerCmd::Watch(addr, tx)).await
    }

    /// Announces prefixes with one attribute set (replacing earlier attributes).
    pub fn announce(&self, prefixes: impl IntoIterator<Item = IpNet>, attrs: RouteAttrs) {
        let prefixes: Vec<IpNet> = prefixes.into_iter().collect();
        self.routes
            .send_if_modified(|t| Arc::make_mut(t).announce(prefixes, attrs) > 0);
    }

    /// Withdraws prefixes.
    pub fn withdraw(&self, prefixes: impl IntoIterator<Item = IpNet>) {
        let prefixes: Vec<IpNet> = prefixes.into_iter().collect();
        self.routes
            .send_if_modified(|t| Arc::make_mut(t).withdraw(prefixes) > 0);
    }

    /// Replaces the whole desired table (what a level-triggered reconciler does).
    pub fn set_routes(&self, table: RouteTable) {
        self.routes.send_if_modified(|t| {
            if **t == table {
                false
            } else {
                *t = Arc::new(table);
                true
            }
        });
    }

    /// The desired routes.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.borrow().clone()
    }

    /// Answers once the speaker task has handled every command sent before it: the task is
    /// turning over (a liveness probe).
    pub async fn ping(&self) -> Result<(), SpeakerError> {
        self.call(SpeakerCmd::Ping).await
    }

    /// Test hook: the speaker task stops handling commands for good (peer tasks go on).
    /// Lets a test see a liveness probe notice a stuck speaker; nothing else sends it.
    #[doc(hidden)]
    pub async fn stall(&self) {
        let _ = self.cmd.send(SpeakerCmd::Stall).await;
    }

    /// Withdraws everything from every peer (after an optional RFC 8326 drain), sends Cease
    /// / Administrative Shutdown with the message, closes all sessions and stops the task.
    pub async fn shutdown(&self, opts: ShutdownOptions) {
        let _ = self.call(|tx| SpeakerCmd::Shutdown(opts, tx)).await;
    }

    /// Restart in place (RFC 4724 §4.1, the restarting speaker): closes every session
    /// without a NOTIFICATION and without withdrawing anything, then stops the task. A peer
    /// doing graceful restart keeps our routes as stale for the advertised Restart Time; the
    /// next process must reconnect with the Restart State bit set
    /// ([`crate::GracefulRestart::restarting`]) and re-send everything before End-of-RIB.
    /// Without graceful restart at the peer this is a crash: the routes go at once.
    pub async fn restart_in_place(&self) {
        let _ = self.call(SpeakerCmd::Abandon).await;
    }
}

async fn accept_loop(l: Arc<TcpListener>, cmd: mpsc::WeakSender<SpeakerCmd>) {
    loop {
        match l.accept().await {
            Ok((s, remote)) => {
                let Some(cmd) = cmd.upgrade() else { return };
                if cmd.send(SpeakerCmd::Incoming(s, remote)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct SpeakerTask {
    peers: HashMap<IpAddr, PeerEntry>,
    routes: Arc<watch::Sender<Arc<RouteTable>>>,
    /// The passive listener and its accept task.
    listener: Option<(Arc<TcpListener>, JoinHandle<()>)>,
    /// For the accept task (weak: the speaker ends when every handle is dropped).
    cmd: mpsc::WeakSender<SpeakerCmd>,
    /// Shared with the handles: the bound listener address.
    local_listen: Arc<std::sync::Mutex<Option<SocketAddr>>>,
    router_id: Option<Ipv4Addr>,
    restarting: bool,
    /// BFD receive tasks by UDP port, started with the first peer that uses one.
    bfd_hubs: HashMap<u16, Hub>,
    /// Rate limit of the log lines about refused connections.
    refusals: Refusals,
}

impl SpeakerTask {
    async fn run(mut self, mut rx: mpsc::Receiver<SpeakerCmd>) {
        loop {
            let deadline = self.refusals.deadline().map(tokio::time::Instant::from_std);
            let cmd = tokio::select! {
                cmd = rx.recv() => cmd,
                () = crate::session::sleep_until_opt(deadline) => {
                    self.end_refusal_window();
                    continue;
                }
            };
            let Some(cmd) = cmd else { return };
            match cmd {
                SpeakerCmd::Add(cfg, reply) => {
                    let r = if self.peers.contains_key(&cfg.address) {
                        Err(SpeakerError::Exists(cfg.address))
                    } else {
                        self.spawn(cfg, None)
                    };
                    let _ = reply.send(r);
                }
                SpeakerCmd::Set(cfg, reply) => {
                    let only_bfd = self.peers.get(&cfg.address).is_some_and(|e| {
                        let mut same = (*e.cfg).clone();
                        same.bfd = cfg.bfd;
                        same == cfg && *e.cfg != cfg
                    });
                    let r = match self.peers.get(&cfg.address) {
                        Some(e) if *e.cfg == cfg => Ok(false),
                        Some(_) if only_bfd => self.set_bfd(cfg),
                        Some(_) => {
                            let old = self.stop(
                                cfg.address,
                                cease::OTHER_CONFIG_CHANGE,
                                "configuration changed",
                            );
                            self.spawn(cfg, old).map(|_| true)
                        }
                        None => self.spawn(cfg, None).map(|_| true),
                    };
                    let _ = reply.send(r);
                }
                SpeakerCmd::Remove(addr, reply) => {
                    let old = self.stop(addr, cease::PEER_DECONFIGURED, "peer removed");
                    let _ = reply.send(old.is_some());
                }
                SpeakerCmd::List(reply) => {
                    let list = self
                        .peers
                        .values()
                        .map(|e| PeerInfo {
                            config: e.cfg.clone(),
                            status: e.status.borrow().clone(),
                            stats: (**e.stats.load()).clone(),
                        })
                        .collect();
                    let _ = reply.send(list);
                }
                SpeakerCmd::Watch(addr, reply) => {
                    let _ = reply.send(self.peers.get(&addr).map(|e| e.status.clone()));
                }
                SpeakerCmd::Incoming(stream, remote) => self.incoming(stream, remote).await,
                SpeakerCmd::RouterId(id, reply) => {
                    let _ = reply.send(self.set_router_id(id));
                }
                SpeakerCmd::Listen(addr, reply) => {
                    let r = self.listen(addr).map(|()| {
                        self.listener
                            .as_ref()
                            .and_then(|(l, _)| l.local_addr().ok())
                    });
                    let _ = reply.send(r);
                }
                SpeakerCmd::Shutdown(opts, reply) => {
                    self.shutdown(opts).await;
                    let _ = reply.send(());
                    return;
                }
                SpeakerCmd::Ping(reply) => {
                    let _ = reply.send(());
                }
                SpeakerCmd::Stall => {
                    warn!("speaker task stalled by its test hook");
                    std::future::pending::<()>().await;
                }
                SpeakerCmd::Abandon(reply) => {
                    let mut tasks = Vec::new();
                    for (_, e) in self.peers.drain() {
                        let _ = e.cmd.try_send(PeerCmd::Abandon);
                        tasks.push(e.task);
                    }
                    for t in tasks {
                        let _ = tokio::time::timeout(crate::session::STOP_TIMEOUT * 2, t).await;
                    }
                    info!("BGP sessions closed for a restart in place; routes left at the peers");
                    let _ = reply.send(());
                    return;
                }
            }
        }
    }

    /// Listens on `addr` (nothing with `None`), replacing the current listener; the MD5 keys
    /// of every peer with a password are set on the new socket. Unchanged: nothing happens.
    fn listen(&mut self, addr: Option<SocketAddr>) -> Result<(), SpeakerError> {
        let current = self.listener.as_ref().map(|(l, _)| l.local_addr().ok());
        if current.flatten() == addr && addr.is_some_and(|a| a.port() != 0) {
            return Ok(());
        }
        if current.is_none() && addr.is_none() {
            return Ok(());
        }
        let new = match addr {
            Some(addr) => {
                let l =
                    socket::listen(addr).map_err(|source| SpeakerError::Listen { addr, source })?;
                let v6 = addr.is_ipv6();
                for e in self.peers.values() {
                    if let Some(pw) = &e.cfg.password {
                        socket::set_md5(&l, v6, e.cfg.address, Some(pw.expose()))
                            .map_err(|source| SpeakerError::Listen { addr, source })?;
                    }
                }
                Some(Arc::new(l))
            }
            None => None,
        };
        if let Some((_, task)) = self.listener.take() {
            task.abort();
        }
        *self.local_listen.lock().unwrap_or_else(|e| e.into_inner()) =
            new.as_ref().and_then(|l| l.local_addr().ok());
        self.listener = new.map(|l| {
            let task = tokio::spawn(accept_loop(l.clone(), self.cmd.clone()));
            if let Ok(a) = l.local_addr() {
                info!(addr = %a, "listening for BGP connections");
            }
            (l, task)
        });
        Ok(())
    }

    /// A new BGP Identifier: every session restarts with it.
    fn set_router_id(&mut self, id: Ipv4Addr) -> Result<bool, SpeakerError> {
        check_router_id(id).map_err(|e| SpeakerError::BadRouterId(id, e))?;
        if self.router_id == Some(id) {
            return Ok(false);
        }
        if let Some(old) = self.router_id {
            info!(%old, new = %id, "router id changed: every session restarts");
        }
        self.router_id = Some(id);
        let addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
        for a in addrs {
            let cfg = (*self.peers[&a].cfg).clone();
            let old = self.stop(a, cease::OTHER_CONFIG_CHANGE, "router id changed");
            self.spawn(cfg, old)?;
        }
        Ok(true)
    }

    /// The receive task for a BFD config's port, started on first use.
    fn bfd_hub(&mut self, bfd: Option<BfdConfig>) -> Result<Option<Hub>, SpeakerError> {
        let Some(b) = bfd else { return Ok(None) };
        if let Some(h) = self.bfd_hubs.get(&b.local_port) {
            return Ok(Some(h.clone()));
        }
        let h = Hub::start(b.local_port).map_err(|source| SpeakerError::Bfd {
            port: b.local_port,
            source,
        })?;
        self.bfd_hubs.insert(b.local_port, h.clone());
        Ok(Some(h))
    }

    /// Only the BFD settings of a peer changed: its BGP session is left alone.
    fn set_bfd(&mut self, cfg: PeerConfig) -> Result<bool, SpeakerError> {
        cfg.validate()?;
        let hub = self.bfd_hub(cfg.bfd)?;
        let Some(e) = self.peers.get_mut(&cfg.address) else {
            return Ok(false);
        };
        let _ = e.cmd.try_send(PeerCmd::SetBfd(cfg.bfd, hub));
        info!(peer = %cfg.address, bfd = ?cfg.bfd, "BFD settings changed; BGP session kept");
        e.cfg = Arc::new(cfg);
        Ok(true)
    }

    fn spawn(&mut self, cfg: PeerConfig, gate: Option<JoinHandle<()>>) -> Result<(), SpeakerError> {
        cfg.validate()?;
        if cfg.awaits_neighbor() {
            return Err(SpeakerError::AwaitsNeighbor(
                cfg.interface.clone().unwrap_or_default(),
            ));
        }
        let router_id = self.router_id.ok_or(SpeakerError::NoRouterId)?;
        if let (Some((l, _)), Some(pw)) = (&self.listener, &cfg.password) {
            let v6 = l.local_addr().map(|a| a.is_ipv6()).unwrap_or(false);
            socket::set_md5(&**l, v6, cfg.address, Some(pw.expose())).map_err(|source| {
                SpeakerError::Listen {
                    addr: l
                        .local_addr()
                        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
                    source,
                }
            })?;
        }
        let bfd_hub = self.bfd_hub(cfg.bfd)?;
        let cfg = Arc::new(cfg);
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (status_tx, status_rx) = watch::channel(PeerStatus::idle());
        let stats = Arc::new(ArcSwap::from_pointee(Stats::default()));
        let identity = Identity {
            router_id,
            restarting: self.restarting,
        };
        let task = tokio::spawn(run_peer(
            cfg.clone(),
            identity,
            PeerLinks {
                routes: self.routes.subscribe(),
                cmds: cmd_rx,
                status: status_tx,
                stats: stats.clone(),
            },
            gate,
            bfd_hub,
        ));
        info!(peer = %cfg.address, remote_as = cfg.remote_as, local_as = cfg.local_as, "BGP peer added");
        self.peers.insert(
            cfg.address,
            PeerEntry {
                cfg,
                cmd: cmd_tx,
                status: status_rx,
                stats,
                task,
            },
        );
        Ok(())
    }

    /// Stops one peer; returns its task so a replacement can wait for it.
    fn stop(&mut self, addr: IpAddr, subcode: u8, message: &str) -> Option<JoinHandle<()>> {
        let e = self.peers.remove(&addr)?;
        if let (Some((l, _)), true) = (&self.listener, e.cfg.password.is_some()) {
            let v6 = l.local_addr().map(|a| a.is_ipv6()).unwrap_or(false);
            let _ = socket::set_md5(&**l, v6, addr, None);
        }
        let notif = Notification::cease_with_message(subcode, message);
        let notif = if subcode == cease::ADMIN_SHUTDOWN || subcode == cease::ADMIN_RESET {
            notif
        } else {
            Notification::new(code::CEASE, subcode)
        };
        let _ = e.cmd.try_send(PeerCmd::Stop(notif));
        info!(peer = %addr, reason = message, "BGP peer stopping");
        Some(e.task)
    }

    async fn incoming(&mut self, stream: TcpStream, remote: SocketAddr) {
        let ip = remote.ip().to_canonical();
        // A link-local peer is that address on its own interface only (RFC 4007 §6): the
        // same address on another link is another router.
        let on_its_link = |cfg: &PeerConfig| match (remote, &cfg.interface) {
            (SocketAddr::V6(r), Some(_)) => cfg.scope_id().is_ok_and(|i| i == r.scope_id()),
            _ => true,
        };
        match self.peers.get(&ip).filter(|e| on_its_link(&e.cfg)) {
            Some(e) => {
                let _ = e.cmd.send(PeerCmd::Incoming(stream)).await;
            }
            None => {
                drop(stream);
                if self
                    .refusals
                    .refused(ip, tokio::time::Instant::now().into_std())
                {
                    info!(%remote, "refusing connection from an unconfigured address");
                }
            }
        }
    }

    /// The summary of the refusals that had no log line of their own.
    fn end_refusal_window(&mut self) {
        if let Some(s) = self
            .refusals
            .end_window(tokio::time::Instant::now().into_std())
        {
            info!(
                refused = s.refused,
                addresses = s.addresses,
                seconds = refusals::WINDOW.as_secs(),
                "refused more connections from unconfigured addresses (each address is logged once a window)"
            );
        }
    }

    async fn shutdown(&mut self, opts: ShutdownOptions) {
        if let Some(d) = opts.drain {
            let drained = self.routes.borrow().with_graceful_shutdown();
            self.routes.send_replace(Arc::new(drained));
            info!(
                seconds = d.as_secs_f64(),
                "draining with GRACEFUL_SHUTDOWN before withdrawing"
            );
            tokio::time::sleep(d).await;
        }
        let notif = Notification::cease_with_message(cease::ADMIN_SHUTDOWN, &opts.message);
        let mut tasks = Vec::new();
        for (_, e) in self.peers.drain() {
            let _ = e.cmd.try_send(PeerCmd::Stop(notif.clone()));
            tasks.push(e.task);
        }
        for t in tasks {
            let _ = tokio::time::timeout(crate::session::STOP_TIMEOUT * 2, t).await;
        }
    }
}
