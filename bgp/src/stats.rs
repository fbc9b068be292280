//! Per-session counters and the observable session state. Owned and updated by the pure
//! session core; the async shell publishes snapshots for status pages and metrics.

use std::collections::BTreeMap;
use std::fmt;

use crate::codec::{MessageType, Notification};

/// RFC 4271 §8.2.2 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Not started, or stopped.
    Idle,
    /// Waiting for our TCP connection to complete.
    Connect,
    /// Waiting for the reconnect timer or an incoming connection.
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for KEEPALIVE.
    OpenConfirm,
    /// Session up; routes flow.
    Established,
}

impl State {
    /// Every state, for metric label sets.
    pub const ALL: [State; 6] = [
        State::Idle,
        State::Connect,
        State::Active,
        State::OpenSent,
        State::OpenConfirm,
        State::Established,
    ];

    /// The name as BIRD and FRR print it.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters of one peer over the speaker's lifetime (they survive reconnects).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages received, indexed by [`MessageType::index`].
    pub msgs_in: [u64; 5],
    /// Messages sent, indexed by [`MessageType::index`].
    pub msgs_out: [u64; 5],
    /// Prefixes the peer announced to us (counted, then dropped: vipr keeps no RIB).
    pub prefixes_received: u64,
    /// Prefixes the peer withdrew.
    pub prefixes_withdrawn_received: u64,
    /// UPDATEs handled as treat-as-withdraw (RFC 7606).
    pub treat_as_withdraw: u64,
    /// Attributes discarded (RFC 7606 attribute discard, duplicates).
    pub attributes_discarded: u64,
    /// Prefixes currently advertised to the peer (gauge).
    pub prefixes_advertised: u64,
    /// Prefixes desired but not sendable on this session, e.g. no next hop (gauge).
    pub prefixes_unsendable: u64,
    /// Prefix announcements and withdrawals put on the wire.
    pub prefix_updates_sent: u64,
    /// Times the session reached Established.
    pub established: u64,
    /// Times an Established session went down.
    pub flaps: u64,
    /// TCP connection attempts.
    pub connect_attempts: u64,
    /// NOTIFICATIONs sent, by (code, subcode).
    pub notifications_sent: BTreeMap<(u8, u8), u64>,
    /// NOTIFICATIONs received, by (code, subcode).
    pub notifications_received: BTreeMap<(u8, u8), u64>,
}

impl Stats {
    pub(crate) fn count_in(&mut self, t: MessageType) {
        self.msgs_in[t.index()] += 1;
    }

    pub(crate) fn count_out(&mut self, t: MessageType) {
        self.msgs_out[t.index()] += 1;
    }

    pub(crate) fn notification_sent(&mut self, n: &Notification) {
        *self
            .notifications_sent
            .entry((n.code, n.subcode))
            .or_default() += 1;
        self.count_out(MessageType::Notification);
    }

    pub(crate) fn notification_received(&mut self, n: &Notification) {
        *self
            .notifications_received
            .entry((n.code, n.subcode))
            .or_default() += 1;
    }

    /// Messages received of one type.
    pub fn received(&self, t: MessageType) -> u64 {
        self.msgs_in[t.index()]
    }

    /// Messages sent of one type.
    pub fn sent(&self, t: MessageType) -> u64 {
        self.msgs_out[t.index()]
    }
}
