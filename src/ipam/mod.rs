//! Service addresses: which a Service may have, where new ones come from, and which are
//! refused. Pure: Services, claims and pools in, decisions and the writes that carry them
//! out. The Kubernetes shell (`kube/watch.rs`, `kube/writer.rs`) owns the API calls.
//!
//! - [`pools`]: address pools (`vipr_pools`) and the search for a free address;
//! - [`configmap`]: kube-vip-cloud-provider's ConfigMap as pools;
//! - [`plan`]: per Service, the addresses served, refused or pending, and the writes.
//!
//! Every node runs vipr and none is elected outside ARP mode, so the API server arbitrates:
//! an address belongs to the Service(s) named in its *claim*, a Lease named after the
//! address (`vipr-addr-<address>`) created atomically in one namespace (KEP-1880 does the
//! same for ClusterIPs with IPAddress objects, which Kubernetes < 1.33 lacks). The loser of
//! a race gets 409 and moves on. A Service's address is served only once its claim names
//! the Service (by UID), on every node alike.

pub mod configmap;
pub mod plan;
pub mod pools;
pub mod state;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// A Service holding a claim. Its strings are shared, not copied, by every record, decision
/// and write about the Service (one allocation each per Service: issue 14).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Holder {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// UID: a Service deleted and created again under the same name is another Service.
    pub uid: Arc<str>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One address claimed in the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The address.
    pub ip: IpAddr,
    /// The pool it was claimed from.
    pub pool: String,
    /// Who holds it (more than one when shared).
    pub holders: Vec<Holder>,
    /// The claim object's resourceVersion, for conditional updates.
    pub resource_version: String,
    /// When it was created (`None`: unknown).
    pub created: Option<std::time::SystemTime>,
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// The annotation or spec holds text that is not an address.
    NotAnAddress(String),
    /// `0.0.0.0` or `::` (kube-vip-cloud-provider writes `0.0.0.0` for DHCP).
    Unspecified,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// Multicast.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// An address of this node's own interfaces.
    NodeAddress(String),
    /// The address of a BGP peer.
    PeerAddress,
    /// The control-plane VIP.
    ControlPlaneVip,
    /// Not in a pool the Service's namespace may use.
    OutsidePools(String),
    /// Claimed by another Service that it may not share with.
    Taken(String),
    /// The pool that applies cannot be used (ConfigMap error, DHCP pool).
    BadPool(String),
}

impl Refusal {
    /// A stable name for Events and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::NotAnAddress(_) => "not_an_address",
            Refusal::Unspecified => "unspecified",
            Refusal::Loopback => "loopback",
            Refusal::LinkLocal => "link_local",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::NodeAddress(_) => "node_address",
            Refusal::PeerAddress => "peer_address",
            Refusal::ControlPlaneVip => "control_plane_vip",
            Refusal::OutsidePools(_) => "outside_pools",
            Refusal::Taken(_) => "taken",
            Refusal::BadPool(_) => "bad_pool",
        }
    }

    /// Whether the decision is this node's own (its addresses), not the cluster's.
    pub fn node_local(&self) -> bool {
        matches!(self, Refusal::NodeAddress(_))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAnAddress(t) => write!(f, "{t:?} is not an IP address"),
            Refusal::Unspecified => f.write_str(
                "the unspecified address (kube-vip-cloud-provider writes 0.0.0.0 for DHCP, which vipr does not do)",
            ),
            Refusal::Loopback => f.write_str("a loopback address"),
            Refusal::LinkLocal => f.write_str("a link-local address"),
            Refusal::Multicast => f.write_str("a multicast address"),
            Refusal::Broadcast => f.write_str("the broadcast address"),
            Refusal::NodeAddress(node) => write!(f, "an address of node {node}"),
            Refusal::PeerAddress => f.write_str("the address of a BGP peer"),
            Refusal::ControlPlaneVip => f.write_str("the control-plane VIP"),
            Refusal::OutsidePools(ns) => {
                write!(f, "not in an address pool that namespace {ns} may use")
            }
            Refusal::Taken(by) => write!(f, "already allocated to {by}, which does not share it"),
            Refusal::BadPool(why) => write!(f, "the pool cannot be used: {why}"),
        }
    }
}

/// Why a Service has no address (yet).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pending {
    /// Its claim is being written.
    Claiming,
    /// No pool serves its namespace (or none for the family it needs).
    NoPool(String),
    /// Every pool that may serve it is full.
    Exhausted(String),
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pending::Claiming => f.write_str("claiming its address"),
            Pending::NoPool(what) => write!(f, "no address pool for {what}"),
            Pending::Exhausted(what) => write!(f, "no free address: {what}"),
        }
    }
}

/// The cases of the always-refused addresses that need no context.
pub fn never_a_vip(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(a) if a.is_unspecified() => Some(Refusal::Unspecified),
        IpAddr::V6(a) if a.is_unspecified() => Some(Refusal::Unspecified),
        IpAddr::V4(a) if a.is_loopback() => Some(Refusal::Loopback),
        IpAddr::V6(a) if a.is_loopback() => Some(Refusal::Loopback),
        IpAddr::V4(a) if a.is_link_local() => Some(Refusal::LinkLocal),
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => Some(Refusal::LinkLocal),
        IpAddr::V4(a) if a.is_multicast() => Some(Refusal::Multicast),
        IpAddr::V6(a) if a.is_multicast() => Some(Refusal::Multicast),
        IpAddr::V4(a) if a.is_broadcast() => Some(Refusal::Broadcast),
        IpAddr::V6(a) => a
            .to_ipv4_mapped()
            .and_then(|v4| never_a_vip(IpAddr::V4(v4)))
            .or(None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_are_never_a_vip() {
        for (a, r) in [
            ("0.0.0.0", Some(Refusal::Unspecified)),
            ("::", Some(Refusal::Unspecified)),
            ("127.0.0.53", Some(Refusal::Loopback)),
            ("::1", Some(Refusal::Loopback)),
            ("169.254.10.1", Some(Refusal::LinkLocal)),
            ("fe80::1", Some(Refusal::LinkLocal)),
            ("224.0.0.5", Some(Refusal::Multicast)),
            ("ff02::1", Some(Refusal::Multicast)),
            ("255.255.255.255", Some(Refusal::Broadcast)),
            ("::ffff:127.0.0.1", Some(Refusal::Loopback)),
            ("198.51.100.10", None),
            ("2001:db8::10", None),
        ] {
            assert_eq!(never_a_vip(a.parse().unwrap()), r, "{a}");
        }
    }
}
