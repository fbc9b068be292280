//! VIP types shared by the reconciler, the data plane and the status page: where a VIP
//! comes from, and an address as it sits on a node interface. Pure data.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

/// Why a VIP is served. A VIP shared by several sources stays until the last one goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VipSource {
    /// `address` with `cp_enable`.
    ControlPlane,
    /// `vipr_static_vips`.
    Static,
    /// A Service of type LoadBalancer.
    Service {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

impl fmt::Display for VipSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VipSource::ControlPlane => f.write_str("control-plane"),
            VipSource::Static => f.write_str("static"),
            VipSource::Service { namespace, name } => write!(f, "service/{namespace}/{name}"),
        }
    }
}

/// An address on an interface, as vipr puts it there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NodeAddr {
    /// The VIP.
    pub ip: IpAddr,
    /// Prefix length on the interface (`vip_subnet`).
    pub prefix_len: u8,
    /// Interface name.
    pub interface: String,
}

impl NodeAddr {
    /// The host route advertised for this VIP (/32 or /128), whatever its prefix length on the
    /// interface.
    pub fn host_route(&self) -> IpNet {
        IpNet::from(self.ip)
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} dev {}", self.ip, self.prefix_len, self.interface)
    }
}

/// One VIP as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VipState {
    /// The address.
    pub address: IpAddr,
    /// Why it is served.
    pub sources: BTreeSet<VipSource>,
    /// Interface it is on, if it is on the node.
    pub interface: Option<String>,
    /// Advertised over BGP.
    pub advertised: bool,
    /// Held back, and why (e.g. the health check failing).
    pub held_back: Option<String>,
}
