//! providers: where a node's BGP peers come from, as plain data the daemon turns into
//! `bgp::PeerConfig`s. Owns the provider model ([`Discovery`]) and the
//! rules shared by every provider (peer de-duplication, ordering). A discovered peer is the
//! speaker's own [`PeerConfig`]: one peer type from provider to session.
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

/// Everything one provider knows about this node's BGP setup: its peers, as the one peer
/// type of the speaker ([`PeerConfig`]) with what the provider knows (address, AS numbers,
/// password, multihop, source address) and the speaker's defaults elsewhere. The daemon
/// sets the rest from its own settings (hold time, keepalive, BFD, graceful restart), and
/// its configured source address where the provider names none.
///
/// `Debug` never shows a password ([`Secret`] redacts it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discovery {
    /// The peers, sorted by address (IPv4 before IPv6), each address once.
    pub peers: Vec<PeerConfig>,
    /// Our BGP identifier (the node's IPv4 address the provider names), if it names one.
    pub router_id: Option<Ipv4Addr>,
}

impl Discovery {
    /// Our AS as the provider gives it (the same on every peer).
    pub fn local_as(&self) -> Option<u32> {
        self.peers.first().map(|p| p.local_as)
    }

    /// The source address the provider names for sessions to IPv4 peers.
    pub fn source(&self) -> Option<IpAddr> {
        self.source_for(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// The source address the provider names for sessions to IPv6 peers.
    pub fn source_v6(&self) -> Option<IpAddr> {
        self.source_for(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))
    }

    /// The source address the provider names for a session to `peer` (its family's).
    pub fn source_for(&self, peer: IpAddr) -> Option<IpAddr> {
        self.peers
            .iter()
            .find(|p| p.address.is_ipv4() == peer.is_ipv4())
            .and_then(|p| p.source)
    }

    /// The peer with this address.
    pub fn peer(&self, address: IpAddr) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.address == address)
    }
}

/// What a provider found, collected the same way by every provider: peers de-duplicated and
/// in canonical order, node-wide facts applied to each, the router id taken from the IPv4
/// source address.
#[derive(Default)]
pub(crate) struct Collect {
    peers: Vec<PeerConfig>,
}

impl Collect {
    /// Adds a neighbour unless the same address is already there. An identical duplicate is
    /// dropped; a duplicate with other settings is refused (`Err(())`) and the caller names
    /// the source. `multihop`: not directly connected, TTL 255 (Equinix's 169.254.255.1/2
    /// are reached through the private gateway).
    pub fn add(
        &mut self,
        address: IpAddr,
        remote_as: u32,
        password: Option<Secret>,
        multihop: bool,
    ) -> Result<(), ()> {
        let peer = PeerConfig {
            port: BGP_PORT,
            password,
            ttl: multihop.then_some(255),
            ..PeerConfig::new(address, remote_as, 0)
        };
        match self.peers.iter().find(|p| p.address == peer.address) {
            Some(existing) if *existing == peer => Ok(()),
            Some(_) => Err(()),
            None => {
                self.peers.push(peer);
                Ok(())
            }
        }
    }

    /// The discovery: `local_as` and the source of each family applied to every peer.
    pub fn finish(
        mut self,
        local_as: u32,
        source: Option<IpAddr>,
        source_v6: Option<IpAddr>,
    ) -> Discovery {
        self.peers.sort_by_key(|p| p.address);
        for p in &mut self.peers {
            p.local_as = local_as;
            p.source = if p.address.is_ipv4() {
                source
            } else {
                source_v6
            };
        }
        Discovery {
            peers: self.peers,
            router_id: match source {
                Some(IpAddr::V4(ip)) => Some(ip),
                _ => None,
            },
        }
    }
}

/// TCP MD5 keys are 1 to 80 bytes (Linux `TCP_MD5SIG_MAXKEYLEN`).
pub(crate) const MAX_PASSWORD_LEN: usize = 80;

#[cfg(test)]
mod tests {
    use super::*;

    fn add(c: &mut Collect, addr: &str, asn: u32, pw: Option<&str>) -> Result<(), ()> {
        c.add(addr.parse().unwrap(), asn, pw.map(Secret::new), false)
    }

    #[test]
    fn debug_never_shows_the_password() {
        let mut c = Collect::default();
        add(&mut c, "192.0.2.1", 65530, Some("hunter2")).unwrap();
        let d = c.finish(65000, None, None);
        let dbg = format!("{d:?} {d:#?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("***"));
    }

    #[test]
    fn duplicates_order_and_node_facts() {
        let mut c = Collect::default();
        add(&mut c, "2001:db8::1", 65530, None).unwrap();
        add(&mut c, "192.0.2.2", 65530, None).unwrap();
        add(&mut c, "192.0.2.1", 65530, None).unwrap();
        add(&mut c, "192.0.2.1", 65530, None).unwrap();
        assert!(add(&mut c, "192.0.2.1", 65531, None).is_err());
        assert!(add(&mut c, "192.0.2.1", 65530, Some("x")).is_err());
        let d = c.finish(
            65000,
            Some("192.0.2.10".parse().unwrap()),
            Some("2001:db8::10".parse().unwrap()),
        );
        let order: Vec<String> = d.peers.iter().map(|p| p.address.to_string()).collect();
        assert_eq!(order, ["192.0.2.1", "192.0.2.2", "2001:db8::1"]);
        let v6 = d.peer("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(v6.source, Some("2001:db8::10".parse().unwrap()));
        let v4 = d.peer("192.0.2.2".parse().unwrap()).unwrap();
        assert_eq!(v4.source, Some("192.0.2.10".parse().unwrap()));
        assert!(d.peers.iter().all(|p| p.local_as == 65000));
        assert_eq!(d.router_id, Some("192.0.2.10".parse().unwrap()));
    }
}
