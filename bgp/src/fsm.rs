//! The session core: RFC 4271 §8 finite state machine for one peer, sans-IO.
//! `Session::handle(Input) -> Vec<Output>`; no tokio, no sockets, no clocks. Timers are
//! armed and cancelled through outputs, connections are opened and closed through outputs,
//! and bytes arrive as complete frames. Up to two connections exist at once so that a
//! collision (§6.8) can be resolved. Events are named after RFC 4271 §8.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::adj_out::AdjRibOut;
use crate::backoff::Backoff;
use crate::codec::notification::{self as n, Notification};
use crate::codec::open::{Capabilities, GrCapability, Negotiated, Open};
use crate::codec::{self, MessageType};
use crate::config::{Identity, PeerConfig};
use crate::stats::{State, Stats};
use crate::types::{Family, RouteTable};

mod events;
mod receive;

pub use events::{Direction, DownReason, Input, Output, Timer};

/// Identifies one TCP connection of a session; never reused.
pub type ConnId = u64;

/// RFC 4271 §8.2.2 suggests a large hold timer while waiting for OPEN: 4 minutes.
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);
/// A session up this long resets the reconnect backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

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
