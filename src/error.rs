//! The daemon's error types (thiserror); `anyhow` is used only in `main.rs`.

/// Errors of the node data plane (addresses, interfaces).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataplaneError {
    /// The interface does not exist (yet).
    #[error("no interface {0:?}")]
    NoInterface(String),
    /// The kernel refused a netlink request.
    #[error("{context}: {reason}")]
    Netlink {
        /// What was being done.
        context: String,
        /// The kernel's answer.
        reason: String,
    },
    /// The interface cannot carry ARP/NDP announcements (loopback, no Ethernet address).
    #[error("interface {iface:?} cannot announce VIPs: {reason}")]
    NotEthernet {
        /// The interface.
        iface: String,
        /// Why not.
        reason: String,
    },
    /// A socket call for ARP/NDP announcements failed.
    #[error("{context} on {iface:?}: {reason}")]
    Announce {
        /// The interface.
        iface: String,
        /// What was being done.
        context: String,
        /// The kernel's answer.
        reason: String,
    },
}

/// Errors of the control-plane load balancer (IPVS, nftables, its state file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LbError {
    /// The kernel has no IPVS (module missing or not loadable).
    #[error("IPVS is not available: {0}")]
    IpvsUnavailable(String),
    /// An IPVS request failed.
    #[error("IPVS: {context}: {reason}")]
    Ipvs {
        /// What was being done.
        context: String,
        /// The kernel's answer.
        reason: String,
        /// The errno, when the kernel gave one.
        errno: Option<i32>,
    },
    /// `nft` failed or is missing.
    #[error("nftables: {context}: {reason}")]
    Nft {
        /// What was being done.
        context: String,
        /// nft's message.
        reason: String,
    },
    /// vipr's record of the IPVS services it owns cannot be read or written.
    #[error("{path}: {reason}")]
    State {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Why `vipr manager` could not start (or run).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The Kubernetes client cannot be built: a configuration error (exit status 2).
    #[error(transparent)]
    Kube(#[from] crate::kube::KubeError),
    /// The BGP speaker could not start (e.g. `vipr_bgp_listen` cannot be bound).
    #[error("BGP speaker: {0}")]
    Speaker(#[from] bgp::SpeakerError),
    /// A system resource could not be opened.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    /// Another process is this instance already (or shares its marker).
    #[error(transparent)]
    Instance(#[from] crate::instance::InstanceError),
    /// The state directory is not safe to trust.
    #[error("{0}")]
    StateDir(String),
    /// An address to listen on is taken (or not ours).
    #[error("cannot listen on {addr} ({setting}): {source}")]
    Listen {
        /// The setting that names it.
        setting: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}
