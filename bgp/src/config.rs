//! Per-peer and per-speaker configuration of the BGP speaker, with validation. Plain data:
//! the daemon builds these from its own config; the session core reads them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use crate::types::Family;

/// A secret (MD5 password) whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The value, for the one place that needs it (the TCP_MD5SIG socket option).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// RFC 4724 graceful restart as the restarting speaker. Whether this process follows a
/// restart in place (the Restart State bit) is the speaker's, not the peer's:
/// [`SpeakerConfig::restarting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestart {
    /// Restart Time advertised in the capability (12 bits, at most 4095 s).
    pub restart_time: u16,
    /// Set the Forwarding State bit (F) for each family: the data plane survived.
    pub forwarding_preserved: bool,
}

/// RFC 5880 / 5881 single-hop BFD for a peer's BGP session: the intervals this side asks
/// for. Defaults are FRR's: 300 ms / 300 ms / 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BfdConfig {
    /// bfd.DesiredMinTxInterval once Up (RFC 5880 §6.8.1); 1 s while not Up (§6.8.3).
    pub min_tx: Duration,
    /// bfd.RequiredMinRxInterval: the fastest rate we accept packets at.
    pub min_rx: Duration,
    /// bfd.DetectMult: the peer declares us down after this many missed intervals.
    pub multiplier: u8,
    /// UDP port our BFD packets are received on (RFC 5881 §4: 3784; another value only
    /// for tests that cannot bind it).
    pub local_port: u16,
    /// UDP port of the peer's BFD (3784).
    pub peer_port: u16,
}

impl Default for BfdConfig {
    fn default() -> Self {
        BfdConfig {
            min_tx: Duration::from_millis(300),
            min_rx: Duration::from_millis(300),
            multiplier: 3,
            local_port: BFD_PORT,
            peer_port: BFD_PORT,
        }
    }
}

/// RFC 5881 §4: the destination port of single-hop BFD Control packets.
pub const BFD_PORT: u16 = 3784;
/// The shortest BFD interval vipr accepts.
pub const BFD_MIN_INTERVAL: Duration = Duration::from_millis(50);
/// The longest BFD interval vipr accepts.
pub const BFD_MAX_INTERVAL: Duration = Duration::from_secs(60);

/// Everything that defines one BGP session with one neighbour: the one peer type, from the
/// daemon's configuration or a peer provider to the session. Two sessions with equal
/// configs are the same session; a changed config resets only that session. What is the
/// same for every session of the speaker (the BGP Identifier, the Restart State bit) is in
/// [`SpeakerConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerConfig {
    /// The neighbour's address; also the key of the peer in the speaker. For a peer on an
    /// interface ([`PeerConfig::on_interface`]) the router's IPv6 link-local address, or
    /// `::` while it is not known yet (such a config is not a session: see
    /// [`PeerConfig::awaits_neighbor`]).
    pub address: IpAddr,
    /// BGP unnumbered: the neighbour is the router at the other end of this interface,
    /// reached over IPv6 link-local addresses (the interface is the addresses' scope; TCP
    /// and BFD sockets are bound to it). IPv4 routes then go with an IPv6 next hop
    /// (RFC 8950), as with FRR's `neighbor IFNAME interface`.
    pub interface: Option<String>,
    /// TCP port of the neighbour (default 179). Honoured for active connects.
    pub port: u16,
    /// The neighbour's AS; an OPEN from another AS is refused with Bad Peer AS.
    pub remote_as: u32,
    /// FRR's `remote-as external`: accept the AS the OPEN carries when it is not `local_as`
    /// (an OPEN with `local_as` is refused with Bad Peer AS, RFC 4271 §6.2); `remote_as` is
    /// then not used. (`remote-as internal` is `remote_as == local_as`.)
    pub remote_as_external: bool,
    /// Our AS on this session (4-octet allowed, RFC 6793).
    pub local_as: u32,
    /// TCP MD5 signature password (RFC 2385).
    pub password: Option<Secret>,
    /// IP TTL / hop limit of our packets; `None`: 1 for eBGP, 64 for iBGP.
    pub ttl: Option<u8>,
    /// GTSM (RFC 5082): send TTL 255 and require at least `255 - (hops - 1)` on receipt.
    /// The value is the number of hops the peer may be away (1 = directly connected).
    pub gtsm_hops: Option<u8>,
    /// Source address to bind for active connects.
    pub source: Option<IpAddr>,
    /// Hold time we propose (0 disables keepalives and the hold timer).
    pub hold_time: u16,
    /// Keepalive interval; `None` means a third of the negotiated hold time.
    pub keepalive: Option<u16>,
    /// Do not initiate connections; wait for the peer (needs the speaker's listener).
    pub passive: bool,
    /// Families offered in OPEN (RFC 4760 capabilities).
    pub families: Vec<Family>,
    /// Next hop for IPv4 routes instead of the session's local address.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes instead of the session's local address (needed to send IPv6
    /// routes over an IPv4 session).
    pub next_hop_v6: Option<std::net::Ipv6Addr>,
    /// Advertise graceful restart (RFC 4724).
    pub graceful_restart: Option<GracefulRestart>,
    /// Offer RFC 8654 extended messages (65535-octet UPDATEs).
    pub extended_messages: bool,
    /// Run a single-hop BFD session with the peer; its failure closes the BGP session at
    /// once with Cease / BFD Down (RFC 9384).
    pub bfd: Option<BfdConfig>,
    /// First reconnect delay of the jittered exponential backoff.
    pub connect_retry_min: Duration,
    /// Largest reconnect delay.
    pub connect_retry_max: Duration,
}

impl PeerConfig {
    /// A config with vipr's defaults: port 179, hold 90 s (30 s when used by the daemon with
    /// kube-vip defaults), both families, extended messages on, backoff 1 s to 60 s.
    pub fn new(address: IpAddr, remote_as: u32, local_as: u32) -> PeerConfig {
        PeerConfig {
            address,
            interface: None,
            port: 179,
            remote_as,
            remote_as_external: false,
            local_as,
            password: None,
            ttl: None,
            gtsm_hops: None,
            source: None,
            hold_time: 90,
            keepalive: None,
            passive: false,
            families: Family::ALL.to_vec(),
            next_hop_v4: None,
            next_hop_v6: None,
            graceful_restart: None,
            extended_messages: true,
            bfd: None,
            connect_retry_min: Duration::from_secs(1),
            connect_retry_max: Duration::from_secs(60),
        }
    }

    /// BGP unnumbered: a peer on `interface` whose IPv6 link-local address is found on the
    /// link (router advertisements, neighbour discovery) and filled in with
    /// [`PeerConfig::with_neighbor`]. Defaults as [`PeerConfig::new`].
    pub fn on_interface(interface: impl Into<String>, remote_as: u32, local_as: u32) -> PeerConfig {
        PeerConfig {
            interface: Some(interface.into()),
            ..PeerConfig::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), remote_as, local_as)
        }
    }

    /// A peer on an interface whose neighbour's link-local address is not known yet: no
    /// session can start until [`PeerConfig::with_neighbor`] fills it in.
    pub fn awaits_neighbor(&self) -> bool {
        self.interface.is_some() && self.address.is_unspecified()
    }

    /// This peer on an interface with the neighbour found at `link_local`.
    pub fn with_neighbor(&self, link_local: Ipv6Addr) -> PeerConfig {
        PeerConfig {
            address: IpAddr::V6(link_local),
            ..self.clone()
        }
    }

    /// The kernel's index of [`PeerConfig::interface`] (the scope of the link-local
    /// addresses), looked up now: an interface can be renamed or recreated.
    pub fn scope_id(&self) -> std::io::Result<u32> {
        match &self.interface {
            Some(name) => crate::socket::if_index(name),
            None => Ok(0),
        }
    }

    /// eBGP multihop: a TTL above 1 was asked for (the peer is not directly connected).
    pub fn is_multihop(&self) -> bool {
        self.ttl.is_some_and(|t| t > 1)
    }

    /// iBGP when both ends are in the same AS.
    pub fn is_ibgp(&self) -> bool {
        !self.remote_as_external && self.local_as == self.remote_as
    }

    /// Whether an OPEN may carry `asn` (RFC 4271 §6.2: otherwise Bad Peer AS).
    pub fn accepts_as(&self, asn: u32) -> bool {
        match self.remote_as_external {
            true => asn != self.local_as,
            false => asn == self.remote_as,
        }
    }

    /// The socket address to connect to: with an interface, a link-local address scoped
    /// to it (RFC 4007 §6).
    pub fn remote(&self) -> std::io::Result<SocketAddr> {
        match (self.address, &self.interface) {
            (IpAddr::V6(a), Some(_)) => Ok(SocketAddr::V6(SocketAddrV6::new(
                a,
                self.port,
                0,
                self.scope_id()?,
            ))),
            (a, _) => Ok(SocketAddr::new(a, self.port)),
        }
    }

    /// The TTL to send with: GTSM forces 255, otherwise the configured value or the default
    /// for the session type.
    pub fn effective_ttl(&self) -> u8 {
        if self.gtsm_hops.is_some() {
            255
        } else {
            self.ttl.unwrap_or(if self.is_ibgp() { 64 } else { 1 })
        }
    }

    /// GTSM (RFC 5082 §3): the lowest TTL (hop limit) accepted from the peer, `256 - hops`.
    pub fn gtsm_min_ttl(&self) -> Option<u8> {
        self.gtsm_hops.map(|h| (256 - u16::from(h.max(1))) as u8)
    }

    /// How long data we sent may stay unacknowledged (a peer that stopped reading: zero
    /// window) before the kernel drops the connection (TCP_USER_TIMEOUT): twice the hold
    /// time we propose, the default of BIRD's and FRR's send hold timer (RFC 9687), or 8
    /// minutes with the hold timer off. The session then goes down as on any lost
    /// connection and reconnects.
    pub fn send_hold_time(&self) -> Duration {
        match self.hold_time {
            0 => Duration::from_secs(480),
            h => Duration::from_secs(2 * u64::from(h)),
        }
    }

    /// Checks what the session core relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, reason: &str| ConfigError {
            peer: self.address,
            interface: self.interface.clone(),
            field,
            reason: reason.to_string(),
        };
        if self.hold_time == 1 || self.hold_time == 2 {
            return Err(bad(
                "hold_time",
                "must be 0 or at least 3 seconds (RFC 4271 §4.2)",
            ));
        }
        if let Some(k) = self.keepalive {
            if k == 0 && self.hold_time != 0 {
                return Err(bad(
                    "keepalive",
                    "must be at least 1 second when hold time is not 0",
                ));
            }
        }
        if self.local_as == 0 || (self.remote_as == 0 && !self.remote_as_external) {
            return Err(bad("as", "AS 0 is reserved (RFC 7607)"));
        }
        if self.families.is_empty() {
            return Err(bad("families", "at least one address family is needed"));
        }
        if let Some(p) = &self.password {
            if p.expose().is_empty() || p.expose().len() > 80 {
                return Err(bad("password", "TCP MD5 keys are 1 to 80 bytes"));
            }
        }
        if let Some(h) = self.gtsm_hops {
            if h == 0 {
                return Err(bad("gtsm_hops", "must be at least 1"));
            }
        }
        if let Some(gr) = self.graceful_restart {
            if gr.restart_time > 4095 {
                return Err(bad(
                    "graceful_restart.restart_time",
                    "at most 4095 seconds (12 bits)",
                ));
            }
        }
        if let Some(b) = self.bfd {
            for (field, v) in [("bfd.min_tx", b.min_tx), ("bfd.min_rx", b.min_rx)] {
                if v < BFD_MIN_INTERVAL || v > BFD_MAX_INTERVAL {
                    return Err(bad(field, "must be between 50 ms and 60 s"));
                }
            }
            if b.multiplier == 0 {
                return Err(bad("bfd.multiplier", "must be at least 1"));
            }
            if b.local_port == 0 || b.peer_port == 0 {
                return Err(bad("bfd.port", "must not be 0"));
            }
        }
        if self.connect_retry_min.is_zero() || self.connect_retry_max < self.connect_retry_min {
            return Err(bad("connect_retry", "need 0 < min <= max"));
        }
        if let Some(name) = &self.interface {
            // Linux IFNAMSIZ is 16 with the NUL; '/' and blanks are never in a name.
            if name.is_empty() || name.len() > 15 || name.contains(['/', ':', ' ', '\t', '\0']) {
                return Err(bad("interface", "not a Linux interface name"));
            }
            match self.address {
                IpAddr::V6(a) if a.is_unspecified() || a.is_unicast_link_local() => {}
                _ => {
                    return Err(bad(
                        "interface",
                        "a peer on an interface is reached at its IPv6 link-local address",
                    ))
                }
            }
        } else if matches!(self.address, IpAddr::V6(a) if a.is_unicast_link_local()) {
            return Err(bad(
                "interface",
                "a link-local address needs the interface it is on",
            ));
        }
        if let Some(src) = self.source {
            if src.is_ipv4() != self.address.is_ipv4() {
                return Err(bad(
                    "source",
                    "source and peer address must be of the same family",
                ));
            }
        }
        Ok(())
    }
}

/// Speaker-wide settings: the same for every session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// Listen for incoming sessions here (off by default; port 179 needs CAP_NET_BIND_SERVICE).
    /// Changed at runtime with [`crate::Speaker::set_listen`].
    pub listen: Option<SocketAddr>,
    /// Our BGP Identifier (RFC 4271 §4.2: one per speaker). Sessions start once it is known;
    /// changed at runtime with [`crate::Speaker::set_router_id`] (every session resets).
    pub router_id: Option<Ipv4Addr>,
    /// This process follows a restart in place (RFC 4724 §4.1): the first OPEN of each
    /// session sets the Restart State bit, and a session waits briefly for the first routes
    /// before connecting.
    pub restarting: bool,
}

/// What a session takes from its speaker: our BGP Identifier and whether this process
/// follows a restart in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Set the Restart State bit in the first OPEN (RFC 4724 §4.1).
    pub restarting: bool,
}

impl Identity {
    /// An identity with this router id, not restarting.
    pub fn new(router_id: Ipv4Addr) -> Identity {
        Identity {
            router_id,
            restarting: false,
        }
    }
}

/// Checks a BGP Identifier: a unicast IPv4 address (RFC 6286 §2.1 only asks for a non-zero
/// 32-bit value; vipr also refuses multicast and broadcast, which are always a mistake).
pub fn check_router_id(id: Ipv4Addr) -> Result<(), &'static str> {
    if id.is_unspecified() || id.is_multicast() || id.is_broadcast() {
        Err("must be a unicast IPv4 address")
    } else {
        Ok(())
    }
}

/// A peer configuration that cannot work, naming the peer and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer {}: {field}: {reason}", peer_name(*peer, interface.as_deref()))]
pub struct ConfigError {
    /// The peer's address.
    pub peer: IpAddr,
    /// The peer's interface (BGP unnumbered).
    pub interface: Option<String>,
    /// The offending field.
    pub field: &'static str,
    /// Why it is rejected.
    pub reason: String,
}

/// How logs and errors name a peer: its address, `fe80::1%eth1` on an interface, or
/// `interface eth1` while its neighbour is not known.
pub fn peer_name(address: IpAddr, interface: Option<&str>) -> String {
    match interface {
        Some(i) if address.is_unspecified() => format!("interface {i}"),
        Some(i) => format!("{address}%{i}"),
        None => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_never_formatted() {
        let mut c = PeerConfig::new("192.0.2.1".parse().unwrap(), 65000, 65001);
        c.password = Some(Secret::new("hunter2"));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("***"));
        assert_eq!(Secret::new("x").to_string(), "***");
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = PeerConfig::new("192.0.2.1".parse().unwrap(), 65000, 65001);
        assert!(c.validate().is_ok());
        c.hold_time = 2;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "hold_time");
        assert!(e.to_string().contains("192.0.2.1"));
        c.hold_time = 0;
        assert!(c.validate().is_ok());
        c.source = Some("2001:db8::1".parse().unwrap());
        assert_eq!(c.validate().unwrap_err().field, "source");
    }

    /// FRR's `remote-as external`: any AS but ours; the session is eBGP.
    #[test]
    fn external_accepts_any_as_but_ours() {
        let mut c = PeerConfig::new("192.0.2.1".parse().unwrap(), 65000, 65001);
        assert!(c.accepts_as(65000) && !c.accepts_as(65002));
        c.remote_as_external = true;
        c.remote_as = 0;
        assert!(c.validate().is_ok());
        assert!(c.accepts_as(65000) && c.accepts_as(4_200_000_000));
        assert!(!c.accepts_as(65001));
        assert!(!c.is_ibgp());
        assert_eq!(c.effective_ttl(), 1);
    }

    #[test]
    fn a_peer_on_an_interface_is_reached_at_a_link_local_address() {
        let c = PeerConfig::on_interface("eth1", 65000, 65001);
        assert!(c.awaits_neighbor());
        assert!(c.validate().is_ok());
        let r = c.with_neighbor("fe80::1".parse().unwrap());
        assert!(!r.awaits_neighbor());
        assert!(r.validate().is_ok());
        let mut g = r.clone();
        g.address = "2001:db8::1".parse().unwrap();
        let e = g.validate().unwrap_err();
        assert_eq!(e.field, "interface");
        assert!(e.to_string().contains("2001:db8::1%eth1"), "{e}");
        let mut n = c.clone();
        n.interface = Some("a/b".into());
        let e = n.validate().unwrap_err();
        assert!(
            e.to_string().starts_with("peer interface a/b: interface:"),
            "{e}"
        );
        let bare = PeerConfig::new("fe80::1".parse().unwrap(), 65000, 65001);
        assert_eq!(bare.validate().unwrap_err().field, "interface");
        // Scoped to the interface's index: `lo` always exists.
        let mut lo = r.clone();
        lo.interface = Some("lo".into());
        match lo.remote().unwrap() {
            SocketAddr::V6(a) => assert_eq!(a.scope_id(), lo.scope_id().unwrap()),
            a => panic!("{a}"),
        }
        lo.interface = Some("vipr-none0".into());
        assert!(lo.remote().is_err());
    }

    #[test]
    fn ttl_defaults() {
        let mut c = PeerConfig::new("192.0.2.1".parse().unwrap(), 65000, 65001);
        assert_eq!(c.effective_ttl(), 1);
        c.remote_as = 65001;
        assert_eq!(c.effective_ttl(), 64);
        c.gtsm_hops = Some(1);
        assert_eq!(c.effective_ttl(), 255);
        assert_eq!(c.gtsm_min_ttl(), Some(255));
        c.gtsm_hops = Some(3);
        assert_eq!(c.gtsm_min_ttl(), Some(253));
    }

    #[test]
    fn send_hold_time_is_twice_the_hold_time() {
        let mut c = PeerConfig::new("192.0.2.1".parse().unwrap(), 65000, 65001);
        c.hold_time = 3;
        assert_eq!(c.send_hold_time(), Duration::from_secs(6));
        c.hold_time = 0;
        assert_eq!(c.send_hold_time(), Duration::from_secs(480));
    }
}
