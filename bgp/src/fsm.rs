//! The session core: RFC 4271 §8 finite state machine for one peer, sans-IO.
//! `Session::handle(Input) -> Vec<Output>`; no tokio, no sockets, no clocks. Timers are
//! armed and cancelled through outputs, connections are opened and closed through outputs,
//! and bytes arrive as complete frames. Up to two connections exist at once so that a
//! collision (§6.8) can be resolved. Events are named after RFC 4271 §8.1.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::adj_out::AdjRibOut;
use crate::backoff::Backoff;
use crate::codec::notification::{self as n, Notification};
use crate::codec::open::{Capabilities, GrCapability, Negotiated, Open};
use crate::codec::{self, DecodeCtx, EncodeCtx, Message, MessageType};
use crate::config::{Identity, PeerConfig};
use crate::stats::{State, Stats};
use crate::types::{Family, RouteAttrs, RouteTable};

/// Identifies one TCP connection of a session; never reused.
pub type ConnId = u64;

/// RFC 4271 §8.2.2 suggests a large hold timer while waiting for OPEN: 4 minutes.
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);
/// A session up this long resets the reconnect backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Timers the core arms through [`Output::SetTimer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// ConnectRetryTimer (Event 9), also used as the backoff after a failure.
    ConnectRetry,
    /// HoldTimer of one connection (Event 10).
    Hold(ConnId),
    /// KeepaliveTimer of one connection (Event 11).
    Keepalive(ConnId),
    /// Resets the backoff once a session stayed up for [`STABLE_AFTER`].
    Stable,
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We connected to the peer.
    Outgoing,
    /// The peer connected to us.
    Incoming,
}

/// What happens to a session.
#[derive(Debug, Clone)]
pub enum Input {
    /// Event 1/3 ManualStart / AutomaticStart (Event 4/5 when the peer is passive).
    Start,
    /// Event 2 ManualStop: withdraw everything, then send this Cease and close.
    Stop(Notification),
    /// A timer armed with [`Output::SetTimer`] fired.
    Timer(Timer),
    /// Event 16/17: our connection attempt completed.
    Connected {
        /// The connection asked for in [`Output::Connect`].
        conn: ConnId,
        /// Our end.
        local: SocketAddr,
    },
    /// Event 18: our connection attempt failed.
    ConnectFailed {
        /// The connection.
        conn: ConnId,
        /// Why, for status.
        error: String,
    },
    /// Event 14/15: the peer connected to us. The shell assigns `conn` from
    /// [`Session::allocate_conn`].
    Accepted {
        /// The new connection.
        conn: ConnId,
        /// Our end.
        local: SocketAddr,
    },
    /// Event 18 on an open connection: the peer closed it or I/O failed.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why, for status.
        error: String,
    },
    /// One complete message (header included) read from a connection.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The message bytes.
        frame: Bytes,
    },
    /// New desired routes.
    Routes(Arc<RouteTable>),
    /// The writer of `conn` has room for one more message.
    TxReady(ConnId),
    /// The peer's BFD session failed (Up → Down): close every connection at once with
    /// Cease / BFD Down (RFC 9384 §2) and reconnect with backoff. The text is for status.
    BfdDown(String),
    /// Restart in place (RFC 4724 §4.1): close every connection without a NOTIFICATION and
    /// without withdrawing anything, so that a graceful restart helper keeps our routes
    /// until we come back; then [`Output::Stopped`].
    Abandon,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open a TCP connection to the peer (socket options from the config).
    Connect(ConnId),
    /// Write these bytes on the connection, after everything sent before.
    Send(ConnId, Bytes),
    /// Flush what was sent, then close the connection.
    Close(ConnId),
    /// (Re)arm a timer.
    SetTimer(Timer, Duration),
    /// Disarm a timer.
    CancelTimer(Timer),
    /// The session's state changed.
    StateChanged {
        /// Before.
        from: State,
        /// After.
        to: State,
    },
    /// The session reached Established with these parameters.
    Established(Box<Negotiated>),
    /// A session or connection attempt ended.
    Down {
        /// Why.
        reason: DownReason,
        /// Whether it was an Established session (a flap), not a connection attempt.
        established: bool,
    },
    /// Stop finished: everything withdrawn, Cease sent, connections closed.
    Stopped,
}

/// Why a session or a connection attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// Our TCP connect failed (Event 18).
    ConnectFailed(String),
    /// The peer closed the connection or I/O failed (Event 18).
    Closed(String),
    /// No message within the hold time (Event 10); we sent the NOTIFICATION (RFC 4271 §6.5).
    HoldTimerExpired,
    /// We found an error and sent this NOTIFICATION (RFC 4271 §6).
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION (Event 24/25).
    NotificationReceived(Notification),
    /// The peer's BFD session failed with this diagnostic; we sent Cease / BFD Down
    /// (RFC 9384).
    BfdDown(String),
    /// A new connection from a graceful-restart peer replaced the old session (RFC 4724 §4.2).
    PeerRestarted,
    /// We stopped the session (Event 2) with this Cease.
    Stopped(Notification),
    /// Restart in place: closed without NOTIFICATION (RFC 4724 §4.1).
    RestartInPlace,
}

impl DownReason {
    /// A protocol error on either side (a NOTIFICATION other than our own Cease): worth a
    /// warning even when it ended a connection attempt rather than a session.
    pub fn is_protocol_error(&self) -> bool {
        matches!(
            self,
            DownReason::NotificationSent(_) | DownReason::NotificationReceived(_)
        )
    }
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            DownReason::Closed(e) => write!(f, "connection closed: {e}"),
            DownReason::HoldTimerExpired => f.write_str("hold timer expired"),
            DownReason::NotificationSent(n) => write!(f, "sent NOTIFICATION {n}"),
            DownReason::NotificationReceived(n) => write!(f, "received NOTIFICATION {n}"),
            DownReason::BfdDown(diag) => write!(
                f,
                "BFD down ({diag}): sent {}",
                Notification::new(n::code::CEASE, n::cease::BFD_DOWN)
            ),
            DownReason::PeerRestarted => f.write_str("peer restarted (graceful restart)"),
            DownReason::Stopped(cease) => write!(f, "stopped: sent {cease}"),
            DownReason::RestartInPlace => {
                f.write_str("restarting in place: closed without NOTIFICATION")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ConnState {
    Connecting,
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    dir: Direction,
    state: ConnState,
    local: Option<SocketAddr>,
    negotiated: Option<Negotiated>,
}

/// One peer's session.
#[derive(Debug)]
pub struct Session {
    cfg: Arc<PeerConfig>,
    identity: Identity,
    our_open: Open,
    conns: Vec<Conn>,
    next_conn: ConnId,
    started: bool,
    /// Set by Stop: the Cease to send once all withdrawals are out.
    stopping: Option<Notification>,
    desired: Arc<RouteTable>,
    rib: Option<AdjRibOut>,
    backoff: Backoff,
    state: State,
    stats: Stats,
    last_error: Option<String>,
}

impl Session {
    /// A session in Idle. `seed` feeds the reconnect jitter.
    pub fn new(
        cfg: Arc<PeerConfig>,
        identity: Identity,
        desired: Arc<RouteTable>,
        seed: u64,
    ) -> Session {
        let our_open = our_open(&cfg, identity);
        Session {
            backoff: Backoff::new(cfg.connect_retry_min, cfg.connect_retry_max, seed),
            cfg,
            identity,
            our_open,
            conns: Vec::new(),
            next_conn: 1,
            started: false,
            stopping: None,
            desired,
            rib: None,
            state: State::Idle,
            stats: Stats::default(),
            last_error: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The last error (NOTIFICATION, connect failure, close), for status.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The OPEN this session sends.
    pub fn our_open(&self) -> &Open {
        &self.our_open
    }

    /// The longest message the peer may send on `conn`: 65,535 octets once both OPENs
    /// advertised extended messages (RFC 8654 §4), else 4,096 (RFC 4271 §4). The shell
    /// checks a longer header against it before waiting for the body (§6.1: Bad Message
    /// Length at once, not a hold timer later).
    pub fn max_message_len(&self, conn: ConnId) -> usize {
        self.conn_index(conn)
            .and_then(|i| self.conns[i].negotiated.as_ref())
            .map_or(codec::MAX_LEN, |neg| neg.max_update_len)
    }

    /// A fresh connection id for an incoming connection.
    pub fn allocate_conn(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// The connection whose writer should be offered [`Input::TxReady`], if any.
    pub fn wants_tx(&self) -> Option<ConnId> {
        let rib = self.rib.as_ref()?;
        if !rib.has_work() {
            return None;
        }
        self.conns
            .iter()
            .find(|c| c.state == ConnState::Established)
            .map(|c| c.id)
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.start(&mut out),
            Input::Stop(cease) => self.stop(cease, &mut out),
            Input::Timer(t) => self.timer(t, &mut out),
            Input::Connected { conn, local } => self.connected(conn, local, &mut out),
            Input::ConnectFailed { conn, error } => {
                if self.conn_index(conn).is_some() {
                    self.drop_conn(conn, DownReason::ConnectFailed(error), &mut out);
                }
            }
            Input::Accepted { conn, local } => self.accepted(conn, local, &mut out),
            Input::Closed { conn, error } => {
                if self.conn_index(conn).is_some() {
                    self.drop_conn(conn, DownReason::Closed(error), &mut out);
                }
            }
            Input::Frame { conn, frame } => self.frame(conn, &frame, &mut out),
            Input::Routes(t) => {
                if self.stopping.is_none() {
                    self.desired = t.clone();
                    if let Some(rib) = &mut self.rib {
                        rib.set_desired(t);
                    }
                }
            }
            Input::TxReady(conn) => self.tx_ready(conn, &mut out),
            Input::BfdDown(reason) => self.bfd_down(reason, &mut out),
            Input::Abandon => self.abandon(&mut out),
        }
        self.update_state(&mut out);
        out
    }

    fn update_state(&mut self, out: &mut Vec<Output>) {
        let best = self.conns.iter().map(|c| c.state).max();
        let to = match best {
            Some(ConnState::Established) => State::Established,
            Some(ConnState::OpenConfirm) => State::OpenConfirm,
            Some(ConnState::OpenSent) => State::OpenSent,
            Some(ConnState::Connecting) => State::Connect,
            None if self.started => State::Active,
            None => State::Idle,
        };
        if let Some(rib) = &self.rib {
            self.stats.prefixes_advertised = rib.advertised() as u64;
            self.stats.prefixes_unsendable = rib.unsendable() as u64;
        } else {
            self.stats.prefixes_advertised = 0;
            self.stats.prefixes_unsendable = 0;
        }
        if to != self.state {
            out.push(Output::StateChanged {
                from: self.state,
                to,
            });
            self.state = to;
        }
    }

    fn conn_index(&self, id: ConnId) -> Option<usize> {
        self.conns.iter().position(|c| c.id == id)
    }

    /// Event 1/3.
    fn start(&mut self, out: &mut Vec<Output>) {
        if self.started || self.stopping.is_some() {
            return;
        }
        self.started = true;
        if !self.cfg.passive {
            self.connect(out);
        }
    }

    fn connect(&mut self, out: &mut Vec<Output>) {
        let id = self.allocate_conn();
        self.conns.push(Conn {
            id,
            dir: Direction::Outgoing,
            state: ConnState::Connecting,
            local: None,
            negotiated: None,
        });
        self.stats.connect_attempts += 1;
        out.push(Output::Connect(id));
    }

    /// Event 2 ManualStop.
    fn stop(&mut self, cease: Notification, out: &mut Vec<Output>) {
        if self.stopping.is_some() {
            return; // the first stop's Cease stands
        }
        if !self.started && self.conns.is_empty() {
            out.push(Output::Stopped);
            return;
        }
        self.started = false;
        out.push(Output::CancelTimer(Timer::ConnectRetry));
        out.push(Output::CancelTimer(Timer::Stable));
        let pending: Vec<(ConnId, ConnState)> =
            self.conns.iter().map(|c| (c.id, c.state)).collect();
        for (id, st) in pending {
            match st {
                ConnState::Established => {}
                ConnState::Connecting => self.remove_conn(id, out),
                ConnState::OpenSent | ConnState::OpenConfirm => {
                    self.send_notification(id, &cease, out);
                    self.remove_conn(id, out);
                }
            }
        }
        self.stopping = Some(cease);
        let empty = Arc::new(RouteTable::new());
        self.desired = empty.clone();
        if let Some(rib) = &mut self.rib {
            rib.set_desired(empty);
        }
        self.maybe_finish_stop(out);
    }

    /// After Stop: once every withdrawal is handed to the writer, send the Cease and close.
    fn maybe_finish_stop(&mut self, out: &mut Vec<Output>) {
        let Some(cease) = self.stopping.clone() else {
            return;
        };
        if self.rib.as_ref().is_some_and(|r| r.has_work()) {
            return;
        }
        if let Some(id) = self
            .conns
            .iter()
            .find(|c| c.state == ConnState::Established)
            .map(|c| c.id)
        {
            self.send_notification(id, &cease, out);
            self.remove_conn(id, out);
            self.rib = None;
            self.stats.flaps += 1;
            out.push(Output::Down {
                reason: DownReason::Stopped(cease),
                established: true,
            });
        }
        if self.conns.is_empty() {
            self.stopping = None;
            out.push(Output::Stopped);
        }
    }

    /// RFC 9384: BFD declared the peer unreachable; every connection goes at once.
    fn bfd_down(&mut self, reason: String, out: &mut Vec<Output>) {
        if self.stopping.is_some() {
            return;
        }
        let notif = Notification::new(n::code::CEASE, n::cease::BFD_DOWN);
        let conns: Vec<(ConnId, ConnState)> = self.conns.iter().map(|c| (c.id, c.state)).collect();
        for (id, st) in conns {
            if st != ConnState::Connecting {
                self.send_notification(id, &notif, out);
            }
            self.drop_conn(id, DownReason::BfdDown(reason.clone()), out);
        }
    }

    /// Restart in place: connections closed without NOTIFICATION, nothing withdrawn.
    fn abandon(&mut self, out: &mut Vec<Output>) {
        self.started = false;
        self.stopping = None;
        out.push(Output::CancelTimer(Timer::ConnectRetry));
        out.push(Output::CancelTimer(Timer::Stable));
        let ids: Vec<ConnId> = self.conns.iter().map(|c| c.id).collect();
        for id in ids {
            self.remove_conn(id, out);
        }
        self.rib = None;
        out.push(Output::Down {
            reason: DownReason::RestartInPlace,
            established: self.state == State::Established,
        });
        out.push(Output::Stopped);
    }

    fn timer(&mut self, t: Timer, out: &mut Vec<Output>) {
        match t {
            // Event 9
            Timer::ConnectRetry => {
                if self.started && self.conns.is_empty() && !self.cfg.passive {
                    self.connect(out);
                }
            }
            // Event 10: RFC 4271 §6.5
            Timer::Hold(id) => {
                if self.conn_index(id).is_some() {
                    let notif = Notification::hold_timer_expired();
                    self.send_notification(id, &notif, out);
                    self.drop_conn(id, DownReason::HoldTimerExpired, out);
                }
            }
            // Event 11
            Timer::Keepalive(id) => {
                if let Some(c) = self.conns.iter().find(|c| c.id == id) {
                    if matches!(c.state, ConnState::OpenConfirm | ConnState::Established) {
                        let ka = c.negotiated.as_ref().map(|n| n.keepalive).unwrap_or(0);
                        self.send(id, MessageType::Keepalive, codec::encode_keepalive(), out);
                        if ka > 0 {
                            out.push(Output::SetTimer(Timer::Keepalive(id), secs(ka)));
                        }
                    }
                }
            }
            Timer::Stable => self.backoff.reset(),
        }
    }

    /// Event 16/17 for our own connection: send OPEN (§8.2.2 Connect state).
    fn connected(&mut self, id: ConnId, local: SocketAddr, out: &mut Vec<Output>) {
        let Some(i) = self.conn_index(id) else {
            out.push(Output::Close(id));
            return;
        };
        if self.conns[i].state != ConnState::Connecting {
            return;
        }
        self.conns[i].local = Some(local);
        self.conns[i].state = ConnState::OpenSent;
        self.send_open(id, out);
    }

    /// Event 14/15: an incoming connection.
    fn accepted(&mut self, id: ConnId, local: SocketAddr, out: &mut Vec<Output>) {
        let established = self.conns.iter().any(|c| c.state == ConnState::Established);
        let peer_gr = self
            .conns
            .iter()
            .filter_map(|c| c.negotiated.as_ref())
            .any(|n| n.peer_graceful_restart.is_some());
        if !self.started
            || self.stopping.is_some()
            || (established && !peer_gr)
            || self.conns.len() >= 2
        {
            // §6.8: a connection colliding with an Established one is closed (unless the
            // peer does graceful restart: RFC 4724 §4.2 then treats the old one as dead).
            let sub = if established {
                n::cease::COLLISION
            } else {
                n::cease::CONNECTION_REJECTED
            };
            self.send_notification(id, &Notification::new(n::code::CEASE, sub), out);
            out.push(Output::Close(id));
            return;
        }
        self.conns.push(Conn {
            id,
            dir: Direction::Incoming,
            state: ConnState::OpenSent,
            local: Some(local),
            negotiated: None,
        });
        self.send_open(id, out);
    }

    fn send_open(&mut self, id: ConnId, out: &mut Vec<Output>) {
        self.send(
            id,
            MessageType::Open,
            codec::encode_open(&self.our_open),
            out,
        );
        out.push(Output::SetTimer(Timer::Hold(id), OPEN_HOLD_TIME));
    }

    fn send(&mut self, id: ConnId, t: MessageType, bytes: Bytes, out: &mut Vec<Output>) {
        self.stats.count_out(t);
        out.push(Output::Send(id, bytes));
    }

    fn send_notification(&mut self, id: ConnId, notif: &Notification, out: &mut Vec<Output>) {
        self.stats.notification_sent(notif);
        out.push(Output::Send(id, codec::encode_notification(notif)));
    }

    /// Removes a connection and its timers, closing it.
    fn remove_conn(&mut self, id: ConnId, out: &mut Vec<Output>) {
        if let Some(i) = self.conn_index(id) {
            self.conns.remove(i);
        }
        out.push(Output::CancelTimer(Timer::Hold(id)));
        out.push(Output::CancelTimer(Timer::Keepalive(id)));
        out.push(Output::Close(id));
    }

    /// A connection ended on an error: close it, account for it, and schedule a reconnect
    /// when nothing else is left (Idle with backoff, §8.1.1).
    fn drop_conn(&mut self, id: ConnId, reason: DownReason, out: &mut Vec<Output>) {
        let was_established = self
            .conns
            .iter()
            .any(|c| c.id == id && c.state == ConnState::Established);
        self.remove_conn(id, out);
        if was_established {
            self.rib = None;
            self.stats.flaps += 1;
            out.push(Output::CancelTimer(Timer::Stable));
        }
        self.last_error = Some(reason.to_string());
        out.push(Output::Down {
            reason,
            established: was_established,
        });
        if self.stopping.is_some() {
            self.maybe_finish_stop(out);
        } else if self.started && self.conns.is_empty() {
            out.push(Output::SetTimer(
                Timer::ConnectRetry,
                self.backoff.next_delay(),
            ));
        }
    }

    /// Sends a NOTIFICATION for an error and drops the connection.
    fn fail(&mut self, id: ConnId, notif: Notification, out: &mut Vec<Output>) {
        self.send_notification(id, &notif, out);
        self.drop_conn(id, DownReason::NotificationSent(notif), out);
    }

    fn frame(&mut self, id: ConnId, frame: &[u8], out: &mut Vec<Output>) {
        let Some(i) = self.conn_index(id) else { return };
        let max_len = self.max_message_len(id);
        let ctx = DecodeCtx {
            four_octet_as: self.conns[i]
                .negotiated
                .as_ref()
                .is_none_or(|neg| neg.four_octet_as),
            ibgp: self.cfg.is_ibgp(),
        };
        let msg = match codec::decode(frame, max_len, &ctx) {
            Ok(m) => m,
            Err(notif) => {
                // Count what arrived when the type octet is readable.
                if let Some(t) = frame.get(18).and_then(|c| MessageType::from_code(*c)) {
                    self.stats.count_in(t);
                }
                return self.fail(id, notif, out);
            }
        };
        self.stats.count_in(msg.kind());
        if let Message::Notification(notif) = &msg {
            // Event 24/25: the peer gives up; close without answering (§6.4).
            self.stats.notification_received(notif);
            return self.drop_conn(id, DownReason::NotificationReceived(notif.clone()), out);
        }
        match self.conns[i].state {
            ConnState::Connecting => {}
            ConnState::OpenSent => match msg {
                Message::Open(open) => self.open_received(id, open, out),
                // RFC 6608: unexpected message in OpenSent.
                _ => self.fail(
                    id,
                    Notification::new(n::code::FSM, n::fsm::IN_OPENSENT),
                    out,
                ),
            },
            ConnState::OpenConfirm => match msg {
                Message::Keepalive => self.established(id, out),
                _ => self.fail(
                    id,
                    Notification::new(n::code::FSM, n::fsm::IN_OPENCONFIRM),
                    out,
                ),
            },
            ConnState::Established => self.established_message(id, msg, out),
        }
    }

    /// Event 19 BGPOpen in OpenSent: check the OPEN against the config (§6.2), resolve a
    /// collision (§6.8), then send KEEPALIVE and go to OpenConfirm.
    fn open_received(&mut self, id: ConnId, open: Open, out: &mut Vec<Output>) {
        if !self.cfg.accepts_as(open.asn) {
            return self.fail(
                id,
                Notification::new(n::code::OPEN, n::open::BAD_PEER_AS),
                out,
            );
        }
        if self.cfg.is_ibgp() && open.router_id == self.identity.router_id {
            // RFC 6286 §2.2: the identifier must differ within an AS.
            return self.fail(
                id,
                Notification::new(n::code::OPEN, n::open::BAD_BGP_ID),
                out,
            );
        }
        let dir = self.conns[self.conn_index(id).unwrap_or(0)].dir;
        let other = self
            .conns
            .iter()
            .find(|c| c.id != id && c.state >= ConnState::OpenConfirm)
            .map(|c| (c.id, c.dir, c.state));
        if let Some((other_id, other_dir, other_state)) = other {
            if other_state == ConnState::Established {
                // Only reachable when the peer does graceful restart (see `accepted`):
                // RFC 4724 §4.2, the old session is dead, keep the new connection.
                self.drop_conn(other_id, DownReason::PeerRestarted, out);
            } else {
                // §6.8: the connection opened by the side with the higher BGP Identifier
                // survives (RFC 6286 §2.3: ties broken by AS number).
                let local = (u32::from(self.identity.router_id), self.cfg.local_as);
                let remote = (u32::from(open.router_id), open.asn);
                let keep_dir = if local > remote {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                };
                let loser = if dir == other_dir || dir != keep_dir {
                    id
                } else {
                    other_id
                };
                let cease = Notification::new(n::code::CEASE, n::cease::COLLISION);
                self.send_notification(loser, &cease, out);
                self.remove_conn(loser, out);
                if loser == id {
                    return;
                }
            }
        }
        let neg = Negotiated::new(&self.our_open, &open, self.cfg.keepalive);
        let (hold, ka) = (neg.hold_time, neg.keepalive);
        if let Some(i) = self.conn_index(id) {
            self.conns[i].negotiated = Some(neg);
            self.conns[i].state = ConnState::OpenConfirm;
        }
        self.send(id, MessageType::Keepalive, codec::encode_keepalive(), out);
        self.arm_hold(id, hold, out);
        if ka > 0 {
            out.push(Output::SetTimer(Timer::Keepalive(id), secs(ka)));
        }
    }

    fn arm_hold(&mut self, id: ConnId, hold: u16, out: &mut Vec<Output>) {
        if hold > 0 {
            out.push(Output::SetTimer(Timer::Hold(id), secs(hold)));
        } else {
            out.push(Output::CancelTimer(Timer::Hold(id)));
        }
    }

    /// Event 26 KeepAliveMsg in OpenConfirm: Established. Any other connection loses.
    fn established(&mut self, id: ConnId, out: &mut Vec<Output>) {
        let Some(i) = self.conn_index(id) else { return };
        self.conns[i].state = ConnState::Established;
        let Some(neg) = self.conns[i].negotiated.clone() else {
            return;
        };
        let local = self.conns[i].local;
        let others: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|c| c.id != id)
            .map(|c| c.id)
            .collect();
        for o in others {
            let cease = Notification::new(n::code::CEASE, n::cease::COLLISION);
            self.send_notification(o, &cease, out);
            self.remove_conn(o, out);
        }
        self.arm_hold(id, neg.hold_time, out);
        out.push(Output::CancelTimer(Timer::ConnectRetry));
        out.push(Output::SetTimer(Timer::Stable, STABLE_AFTER));
        let ctx = encode_ctx(&self.cfg, &neg, local.map(|l| l.ip()));
        let mut neg = neg;
        neg.without_next_hop = neg
            .families
            .iter()
            .filter(|f| ctx.next_hop(**f, &RouteAttrs::default()).is_err())
            .map(|f| (*f, no_next_hop_reason(*f, &neg)))
            .collect();
        self.rib = Some(AdjRibOut::new(
            ctx,
            neg.families.clone(),
            self.desired.clone(),
        ));
        self.stats.established += 1;
        self.last_error = None;
        // RFC 4724 §4.1: the Restart State bit belongs to the first session after the
        // restart; later OPENs of this process do not set it.
        if let Some(gr) = &mut self.our_open.caps.graceful_restart {
            gr.restarting = false;
        }
        out.push(Output::Established(Box::new(neg)));
        self.maybe_finish_stop(out);
    }

    fn established_message(&mut self, id: ConnId, msg: Message, out: &mut Vec<Output>) {
        let hold = self
            .conns
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.negotiated.as_ref())
            .map(|n| n.hold_time)
            .unwrap_or(0);
        match msg {
            // Event 26
            Message::Keepalive => self.arm_hold(id, hold, out),
            // Event 27: decoded, validated, counted, dropped.
            Message::Update(u) => {
                self.arm_hold(id, hold, out);
                self.stats.prefixes_received += u.announced.len() as u64;
                self.stats.prefixes_withdrawn_received += u.withdrawn.len() as u64;
                self.stats.treat_as_withdraw += u.treat_as_withdraw.is_some() as u64;
                self.stats.attributes_discarded += u.discarded.len() as u64;
            }
            // RFC 2918 §4: re-send the whole Adj-RIB-Out (subtype 0 = request).
            Message::RouteRefresh { family, subtype } => {
                self.arm_hold(id, hold, out);
                if subtype == 0 && family.is_some() {
                    if let Some(rib) = &mut self.rib {
                        rib.refresh();
                    }
                }
            }
            // RFC 6608: OPEN in Established.
            Message::Open(_) => self.fail(
                id,
                Notification::new(n::code::FSM, n::fsm::IN_ESTABLISHED),
                out,
            ),
            Message::Notification(_) => {}
        }
    }

    fn tx_ready(&mut self, id: ConnId, out: &mut Vec<Output>) {
        if !self
            .conns
            .iter()
            .any(|c| c.id == id && c.state == ConnState::Established)
        {
            return;
        }
        if let Some(msg) = self.rib.as_mut().and_then(|r| r.next_message()) {
            self.stats.prefix_updates_sent += 1;
            self.send(id, MessageType::Update, msg, out);
        }
        self.maybe_finish_stop(out);
    }
}

fn secs(s: u16) -> Duration {
    Duration::from_secs(s as u64)
}

/// The OPEN we send (RFC 4271 §4.2 with the capabilities of RFC 5492).
fn our_open(cfg: &PeerConfig, identity: Identity) -> Open {
    let over_v6 = cfg.address.is_ipv6();
    let caps = Capabilities {
        families: cfg.families.clone(),
        multiprotocol: true,
        route_refresh: true,
        four_octet_as: Some(cfg.local_as),
        graceful_restart: cfg.graceful_restart.map(|gr| GrCapability {
            restarting: identity.restarting,
            restart_time: gr.restart_time,
            // Only for families we also offer in MP capabilities (Cilium #30367).
            families: cfg
                .families
                .iter()
                .map(|f| (*f, gr.forwarding_preserved))
                .collect(),
        }),
        extended_message: cfg.extended_messages,
        // RFC 8950: IPv4 routes with an IPv6 next hop over an IPv6 session.
        extended_next_hop: if over_v6 && cfg.families.contains(&Family::Ipv4Unicast) {
            vec![(Family::Ipv4Unicast, 2)]
        } else {
            Vec::new()
        },
        ..Capabilities::default()
    };
    Open::new(cfg.local_as, cfg.hold_time, identity.router_id, caps)
}

/// Why a negotiated family has no next hop on this session (for the status).
fn no_next_hop_reason(f: Family, neg: &Negotiated) -> &'static str {
    match f {
        Family::Ipv4Unicast if !neg.ipv4_over_ipv6_next_hop => {
            "the session runs over IPv6 without an IPv4 next hop, and the peer did not offer \
             extended next hop encoding (RFC 8950, capability 5) for an IPv6 one"
        }
        Family::Ipv4Unicast => "no IPv4 or IPv6 next hop on this session",
        Family::Ipv6Unicast => "no IPv6 next hop on an IPv4 session: set an IPv6 next hop",
    }
}

/// How this session writes UPDATEs: next hops from config or the local address.
fn encode_ctx(cfg: &PeerConfig, neg: &Negotiated, local: Option<IpAddr>) -> EncodeCtx {
    let next_hop_v4 = cfg.next_hop_v4.map(IpAddr::V4).or(match local {
        Some(IpAddr::V4(a)) => Some(IpAddr::V4(a)),
        Some(IpAddr::V6(a)) if neg.ipv4_over_ipv6_next_hop => Some(IpAddr::V6(a)),
        _ => None,
    });
    let next_hop_v6 = cfg.next_hop_v6.or(match local {
        Some(IpAddr::V6(a)) => Some(a),
        _ => None,
    });
    EncodeCtx {
        ibgp: cfg.is_ibgp(),
        local_as: cfg.local_as,
        four_octet_as: neg.four_octet_as,
        max_len: neg.max_update_len,
        next_hop_v4,
        next_hop_v6,
        ipv4_over_ipv6_next_hop: neg.ipv4_over_ipv6_next_hop,
        next_hop_link_local: match local {
            Some(IpAddr::V6(a)) if a.is_unicast_link_local() => Some(a),
            _ => None,
        },
        default_local_pref: 100,
    }
}
