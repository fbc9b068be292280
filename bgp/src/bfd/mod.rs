//! BFD: single-hop asynchronous Bidirectional Forwarding Detection (RFC 5880, RFC 5881) for
//! the peers of BGP sessions, IPv4 and IPv6. No Kubernetes, no netlink; no Demand mode of
//! our own, no Echo function, no authentication, no multihop (RFC 5883).
//!
//! Table of contents:
//! - [`packet`]: Control packet encode/decode (§4.1) with the packet-only checks of §6.8.6.
//! - [`fsm`]: the per-session state machine, sans-IO (`BfdSession::handle`), §6.8.
//! - [`shell`]: the tokio side — one receive task per UDP port shared by every session
//!   (demultiplexed by Your Discriminator or the peer's address, TTL 255 required) and one
//!   task per session owning its transmit socket and its two timers.
//!
//! A BGP peer task starts the BFD session of its peer when [`crate::BfdConfig`] is set and
//! follows its [`BfdStatus`]: a failure (Up → Down other than the peer's AdminDown) closes
//! the BGP session at once with Cease / BFD Down (RFC 9384).

pub mod fsm;
pub mod packet;
pub mod shell;

use std::time::{Duration, SystemTime};

pub use fsm::{BfdSession, BfdTimer, Input, Output};
pub use packet::{BfdState, DecodeError, Diag, Packet};

/// What one BFD session looks like from outside (status pages, metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdStatus {
    /// bfd.SessionState.
    pub state: BfdState,
    /// bfd.RemoteSessionState: the state the peer last reported.
    pub remote_state: BfdState,
    /// bfd.LocalDiscr.
    pub local_discriminator: u32,
    /// bfd.RemoteDiscr (0 while unknown).
    pub remote_discriminator: u32,
    /// bfd.LocalDiag: why our state last changed.
    pub local_diag: Diag,
    /// The peer's last diagnostic.
    pub remote_diag: Diag,
    /// Configured Desired Min TX.
    pub min_tx: Duration,
    /// Configured Required Min RX.
    pub min_rx: Duration,
    /// Configured Detect Mult.
    pub multiplier: u8,
    /// The transmission interval in use before jitter (`None`: no periodic packets).
    pub tx_interval: Option<Duration>,
    /// The Detection Time in use (`None` before the peer's first packet).
    pub detect_time: Option<Duration>,
    /// The peer's Required Min RX.
    pub remote_min_rx: Duration,
    /// The peer's Desired Min TX.
    pub remote_min_tx: Duration,
    /// The peer's Detect Mult (0 before its first packet).
    pub remote_multiplier: u8,
    /// When the current state was entered.
    pub since: SystemTime,
    /// Up → Down transitions.
    pub flaps: u64,
    /// Up → Down transitions that were failures (not the peer's AdminDown); each one closed
    /// the BGP session.
    pub failures: u64,
}

impl BfdStatus {
    /// A session that has not started.
    pub fn idle(min_tx: Duration, min_rx: Duration, multiplier: u8) -> BfdStatus {
        BfdStatus {
            state: BfdState::AdminDown,
            remote_state: BfdState::Down,
            local_discriminator: 0,
            remote_discriminator: 0,
            local_diag: Diag::None,
            remote_diag: Diag::None,
            min_tx,
            min_rx,
            multiplier,
            tx_interval: None,
            detect_time: None,
            remote_min_rx: Duration::ZERO,
            remote_min_tx: Duration::ZERO,
            remote_multiplier: 0,
            since: SystemTime::now(),
            flaps: 0,
            failures: 0,
        }
    }
}
