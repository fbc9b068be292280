//! The BGP section of the configuration: the speaker's identity and session source, the
//! defaults every peer starts from, the MP-BGP next hops (RFC 4760 §3, RFC 8950), the
//! configured peers and where further peers come from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bgp::{BfdConfig, GracefulRestart, PeerConfig, RouteAttrs};

use super::{peer_map, selector};

/// Where the BGP Identifier comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterId {
    /// The peer provider's, else an IPv4 address of the node (`bgp_routerid` unset).
    Auto,
    /// `bgp_routerid`.
    Fixed(Ipv4Addr),
    /// The first IPv4 address of this interface (`bgp_routerinterface`).
    Interface(String),
}

/// Where sessions take their source address from (`bgp_sourceip`, `bgp_sourceif`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSource {
    /// This address (for peers of its family).
    Address(IpAddr),
    /// An address of this interface (of the peer's family).
    Interface(String),
}

/// kube-vip's `mpbgp_nexthop` (v1.2.3 `pkg/kubevip/config_bgp.go`, `FindMpbgpAddresses`):
/// where the next hop of the routes of the other address family than a session's comes
/// from (IPv6 routes over an IPv4 session, IPv4 routes over an IPv6 one). The session's own
/// family always takes the session's local address (kube-vip's GoBGP: next-hop-self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpNextHopMode {
    /// `fixed`: `mpbgp_ipv4` / `mpbgp_ipv6`.
    Fixed,
    /// `auto_sourceip`: an address of the interface that holds `bgp_sourceip`.
    AutoSourceIp,
    /// `auto_sourceif`: an address of `bgp_sourceif`.
    AutoSourceIf,
}

/// The MP-BGP next hop settings, node-wide or a peer's own (6th `bgp_peers` field, each
/// part falling back to the node-wide one as kube-vip's `SetMpbgpOptions` does). No mode:
/// vipr's own choice (an address of `bgp_sourceif`, else a global address of the node).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MpNextHop {
    /// `mpbgp_nexthop`.
    pub mode: Option<MpNextHopMode>,
    /// `mpbgp_ipv4`: for IPv4 routes over IPv6 sessions (mode fixed).
    pub v4: Option<Ipv4Addr>,
    /// `mpbgp_ipv6`: for IPv6 routes over IPv4 sessions (mode fixed).
    pub v6: Option<Ipv6Addr>,
}

impl MpNextHop {
    /// Each part from `self`, else from `node` (kube-vip's `SetMpbgpOptions`).
    pub fn or(self, node: MpNextHop) -> MpNextHop {
        MpNextHop {
            mode: self.mode.or(node.mode),
            v4: self.v4.or(node.v4),
            v6: self.v6.or(node.v6),
        }
    }
}

/// What every peer takes from the node-wide BGP settings unless it says otherwise (a
/// peer's own `bgp_peers` BFD field; a provider's AS and source address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDefaults {
    /// `bgp_hold_time`.
    pub hold_time: u16,
    /// `bgp_keepalive_interval` (`None`: a third of the negotiated hold time).
    pub keepalive: Option<u16>,
    /// `vipr_bfd` (single-hop peers only).
    pub bfd: Option<BfdConfig>,
    /// `vipr_graceful_restart`, `vipr_graceful_restart_time`.
    pub graceful_restart: Option<GracefulRestart>,
    /// `vipr_bgp_gtsm`: GTSM hops for peers that are not multihop and have no setting of
    /// their own.
    pub gtsm_hops: Option<u8>,
}

impl PeerDefaults {
    /// A discovered peer (provider) with the node-wide settings the provider does not give.
    pub fn complete(&self, p: PeerConfig) -> PeerConfig {
        PeerConfig {
            hold_time: self.hold_time,
            keepalive: self.keepalive,
            // BFD here is single-hop (RFC 5881): not for multihop peers.
            bfd: if p.is_multihop() { None } else { self.bfd },
            graceful_restart: self.graceful_restart,
            gtsm_hops: match p.gtsm_hops {
                Some(h) => Some(h),
                None if p.is_multihop() => None,
                None => self.gtsm_hops,
            },
            ..p
        }
    }
}

/// BGP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpSettings {
    /// Local AS (`bgp_as`).
    pub local_as: u32,
    /// Router id.
    pub router_id: RouterId,
    /// Session source address, where neither the peer nor its provider names one.
    pub source: Option<SessionSource>,
    /// Peers from the configuration (`bgp_peers`, `bgp_peeraddress`), complete but for a
    /// source address taken from an interface.
    pub peers: Vec<PeerConfig>,
    /// What discovered peers take from the node's settings.
    pub defaults: PeerDefaults,
    /// Passive listener (`vipr_bgp_listen`).
    pub listen: Option<SocketAddr>,
    /// Attributes of every route (`vipr_communities`, `vipr_large_communities`,
    /// `vipr_local_pref`, `vipr_med`).
    pub attrs: RouteAttrs,
    /// Named attribute sets for pools, Services and the control-plane VIP
    /// (`vipr_bgp_attribute_sets`, `vipr_control_plane_bgp_attributes`).
    pub attr_sets: crate::route_attrs::AttrSets,
    /// RFC 8326 drain before withdrawing at shutdown (`vipr_drain_seconds`).
    pub drain: Option<Duration>,
    /// Node-wide MP-BGP next hop (`mpbgp_nexthop`, `mpbgp_ipv4`, `mpbgp_ipv6`).
    pub mp_next_hop: MpNextHop,
    /// Configured peers' own MP-BGP next hop settings (6th `bgp_peers` field), unmerged.
    pub peer_mp_next_hop: Vec<(IpAddr, MpNextHop)>,
    /// What configured peers given as mappings in the file have besides their session
    /// (node selector, source interface), by address.
    pub peer_extras: std::collections::BTreeMap<IpAddr, peer_map::PeerExtras>,
    /// This node's labels from the configuration (`vipr_node_labels`): when set, node
    /// selectors match these instead of the Node object's.
    pub node_labels: Option<selector::Labels>,
}

impl BgpSettings {
    /// Whether graceful restart is advertised, to every peer or to a configured one: then a
    /// rolling update of vipr's DaemonSet is a restart in place.
    pub fn graceful_restart(&self) -> bool {
        self.defaults.graceful_restart.is_some()
            || self.peers.iter().any(|p| p.graceful_restart.is_some())
    }

    /// Whether a configured peer has a node selector.
    pub fn has_selectors(&self) -> bool {
        self.peer_extras.values().any(|e| e.node_selector.is_some())
    }

    /// The Secrets configured peers take their password from.
    pub fn password_secrets(&self) -> std::collections::BTreeSet<&peer_map::SecretRef> {
        self.peer_extras
            .values()
            .filter_map(|e| e.password_secret.as_ref())
            .collect()
    }

    /// The MP-BGP next hop settings of the peer at `addr`: its own, else the node's.
    pub fn mp_next_hop_of(&self, addr: IpAddr) -> MpNextHop {
        self.peer_mp_next_hop
            .iter()
            .find(|(a, _)| *a == addr)
            .map_or(self.mp_next_hop, |(_, m)| m.or(self.mp_next_hop))
    }
}

/// Where peers come from besides the configuration's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSource {
    /// Only `bgp_peers` / `bgp_peeraddress`.
    Static,
    /// This node's annotations under a prefix (`annotation`).
    Annotations {
        /// e.g. `metal.equinix.com`.
        prefix: String,
    },
    /// An Equinix Metal-style metadata service (`vipr_peers_from=equinix-metal`, `vip_packet`).
    EquinixMetal {
        /// `vipr_metadata_url`.
        url: String,
        /// `vipr_metadata_interval`.
        interval: Duration,
    },
}
