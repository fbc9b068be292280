//! What goes into and comes out of the session core (RFC 4271 §8.1 events): [`Input`],
//! [`Output`], the [`Timer`]s it arms and why a session ended ([`DownReason`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::ConnId;
use crate::codec::notification::{self as n, Notification};
use crate::codec::open::Negotiated;
use crate::stats::State;
use crate::types::RouteTable;

/// Timers the core arms through [`Output::SetTimer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// ConnectRetryTimer (Event 9), also used as the backoff after a failure.
    ConnectRetry,
    /// HoldTimer of one connection (Event 10).
    Hold(ConnId),
    /// KeepaliveTimer of one connection (Event 11).
    Keepalive(ConnId),
    /// Resets the backoff once a session stayed up for [`STABLE_AFTER`](super::STABLE_AFTER).
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
