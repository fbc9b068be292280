//! bgp: vipr's announce-only BGP speaker. No Kubernetes, no netlink.
//!
//! It advertises a set of routes (host routes for VIPs, but any unicast prefix works) to
//! each configured peer and withdraws them; what peers send is decoded, validated (RFC 7606),
//! counted and dropped. There is no RIB, no best path and no policy.
//!
//! Table of contents:
//! - [`speaker`]: the [`Speaker`] handle — add/replace/remove peers, announce/withdraw,
//!   status and counters, shutdown. Start here.
//! - [`types`]: families, communities, route attributes, the shared [`RouteTable`].
//! - [`config`]: per-peer and speaker configuration, validated.
//! - [`fsm`]: the RFC 4271 session state machine, sans-IO (`Session::handle`).
//! - [`adj_out`]: per-session outbound routes and UPDATE packing, sans-IO.
//! - [`codec`]: wire format (netgauze-bgp-pkt behind bgp's own types), RFC 7606 checks.
//! - [`session`]: the tokio shell around one `Session` (sockets, timers); `conn`: the
//!   reader and writer tasks of one TCP connection.
//! - [`socket`]: TCP MD5, TTL, GTSM, connect and listen.
//! - [`backoff`], [`stats`]: reconnect backoff; counters and states.
//! - [`refusals`]: the rate limit of the log about connections from unconfigured addresses.
//! - [`bfd`]: RFC 5880/5881 single-hop BFD per peer, sans-IO core plus its own tasks; a BFD
//!   failure closes the BGP session at once (RFC 9384).

pub mod adj_out;
pub mod backoff;
pub mod bfd;
pub mod codec;
pub mod config;
mod conn;
pub mod fsm;
pub mod refusals;
pub mod session;
pub mod socket;
pub mod speaker;
pub mod stats;
pub mod types;

pub use bfd::{BfdState, BfdStatus};
pub use codec::notification::Notification;
pub use config::{
    BfdConfig, ConfigError, GracefulRestart, Identity, PeerConfig, Secret, SpeakerConfig,
};
pub use fsm::DownReason;
pub use session::{NegotiatedInfo, PeerStatus};
pub use speaker::{PeerInfo, ShutdownOptions, Speaker, SpeakerError};
pub use stats::{State, Stats};
pub use types::{Community, Family, LargeCommunity, RouteAttrs, RouteTable};
