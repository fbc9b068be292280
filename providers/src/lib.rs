//! providers: where a node's BGP peers come from, as plain data the daemon turns into
//! `bgp::PeerConfig`s. Owns the provider model ([`Discovery`], [`DiscoveredPeer`]) and the
//! rules shared by every provider (peer de-duplication, ordering).
//!
//! Table of contents:
//! - this file: the model and the shared helpers;
//! - [`annotations`]: kube-vip's node annotations (`annotation` setting), both the plain
//!   `<prefix>/peer-ip` form and Equinix's numbered `<prefix>/bgp-peers-N-peer-ip` form;
//! - [`equinix_metal`]: the Equinix Metal metadata JSON parser and its poller
//!   (`equinix_metal/poller.rs`).
//!
//! Static peers (`bgp_peers`) stay in the daemon's config (`src/config/peers.rs`). This crate
//! has no netlink and no Kubernetes client: annotations arrive as a `BTreeMap` from the
//! daemon's Node watcher.

use std::net::{IpAddr, Ipv4Addr};

pub use bgp::{PeerConfig, Secret};

pub mod annotations;
pub mod equinix_metal;

/// The BGP port used for every discovered peer (neither source carries a port).
pub const BGP_PORT: u16 = 179;

/// One BGP neighbour as a provider describes it.
///
/// `Debug` never shows the password ([`Secret`] redacts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredPeer {
    /// Neighbour address.
    pub address: IpAddr,
    /// Neighbour AS.
    pub remote_as: u32,
    /// TCP MD5 password (RFC 2385), 1 to 80 bytes when present.
    pub password: Option<Secret>,
    /// eBGP multihop: the neighbour is not directly connected (Equinix's 169.254.255.1/2 are
    /// reached through the private gateway).
    pub multihop: bool,
    /// TCP port of the neighbour; always [`BGP_PORT`] from the current providers.
    pub port: u16,
}

/// Everything one provider knows about this node's BGP setup. Fields a provider does not
/// supply are `None`; the daemon falls back to its own config (`bgp_as`, `bgp_routerid`,
/// `bgp_sourceip`) for those.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discovery {
    /// The peers, sorted by address (IPv4 before IPv6), each address once.
    pub peers: Vec<DiscoveredPeer>,
    /// Our AS.
    pub local_as: Option<u32>,
    /// Our BGP identifier (the node's IPv4 address the provider names).
    pub router_id: Option<Ipv4Addr>,
    /// Source address for sessions to IPv4 peers (always an IPv4 address).
    pub source: Option<IpAddr>,
    /// Source address for sessions to IPv6 peers (always an IPv6 address).
    pub source_v6: Option<IpAddr>,
}

impl Discovery {
    /// The source address to bind for a session to `peer`: [`Discovery::source`] for an IPv4
    /// peer, [`Discovery::source_v6`] for an IPv6 one.
    pub fn source_for(&self, peer: IpAddr) -> Option<IpAddr> {
        if peer.is_ipv4() {
            self.source
        } else {
            self.source_v6
        }
    }

    /// The peer with this address.
    pub fn peer(&self, address: IpAddr) -> Option<&DiscoveredPeer> {
        self.peers.iter().find(|p| p.address == address)
    }
}

/// Adds `peer` unless the same address is already there. An identical duplicate is dropped;
/// a duplicate with other settings is refused (`Err(())`) and the caller names the source.
pub(crate) fn add_peer(peers: &mut Vec<DiscoveredPeer>, peer: DiscoveredPeer) -> Result<(), ()> {
    match peers.iter().find(|p| p.address == peer.address) {
        Some(existing) if *existing == peer => Ok(()),
        Some(_) => Err(()),
        None => {
            peers.push(peer);
            Ok(())
        }
    }
}

/// Puts the peers in their canonical order, so that two reads of the same data compare equal
/// whatever order the source listed them in.
pub(crate) fn sort_peers(peers: &mut [DiscoveredPeer]) {
    peers.sort_by_key(|p| p.address);
}

impl Discovery {
    /// What a provider found, finished the same way by every provider: the peers in their
    /// canonical order, the router id taken from the IPv4 source address.
    pub(crate) fn finish(
        mut self,
        local_as: Option<u32>,
        source: Option<IpAddr>,
        source_v6: Option<IpAddr>,
    ) -> Discovery {
        sort_peers(&mut self.peers);
        self.local_as = local_as;
        self.source = source;
        self.source_v6 = source_v6;
        self.router_id = match source {
            Some(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        };
        self
    }
}

/// TCP MD5 keys are 1 to 80 bytes (Linux `TCP_MD5SIG_MAXKEYLEN`).
pub(crate) const MAX_PASSWORD_LEN: usize = 80;

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, asn: u32, pw: Option<&str>) -> DiscoveredPeer {
        DiscoveredPeer {
            address: addr.parse().unwrap(),
            remote_as: asn,
            password: pw.map(Secret::new),
            multihop: false,
            port: BGP_PORT,
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let d = Discovery {
            peers: vec![peer("192.0.2.1", 65530, Some("hunter2"))],
            ..Discovery::default()
        };
        let dbg = format!("{d:?} {d:#?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("***"));
    }

    #[test]
    fn duplicates_and_order() {
        let mut v = Vec::new();
        add_peer(&mut v, peer("2001:db8::1", 65530, None)).unwrap();
        add_peer(&mut v, peer("192.0.2.2", 65530, None)).unwrap();
        add_peer(&mut v, peer("192.0.2.1", 65530, None)).unwrap();
        add_peer(&mut v, peer("192.0.2.1", 65530, None)).unwrap();
        assert!(add_peer(&mut v, peer("192.0.2.1", 65531, None)).is_err());
        assert!(add_peer(&mut v, peer("192.0.2.1", 65530, Some("x"))).is_err());
        sort_peers(&mut v);
        let order: Vec<String> = v.iter().map(|p| p.address.to_string()).collect();
        assert_eq!(order, ["192.0.2.1", "192.0.2.2", "2001:db8::1"]);
        let d = Discovery {
            peers: v,
            source: Some("192.0.2.10".parse().unwrap()),
            source_v6: Some("2001:db8::10".parse().unwrap()),
            ..Discovery::default()
        };
        assert_eq!(d.source_for("2001:db8::1".parse().unwrap()), d.source_v6);
        assert_eq!(d.source_for("192.0.2.1".parse().unwrap()), d.source);
        assert!(d.peer("192.0.2.2".parse().unwrap()).is_some());
    }
}
