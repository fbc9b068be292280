//! The IPVS generic netlink numbers of `include/uapi/linux/ip_vs.h`: commands, attributes
//! of a command, a service and a destination, forwarding methods.

/// `IPVS_CMD_*`.
pub mod cmd {
    /// Add a service.
    pub const NEW_SERVICE: u8 = 1;
    /// Modify a service.
    pub const SET_SERVICE: u8 = 2;
    /// Delete a service.
    pub const DEL_SERVICE: u8 = 3;
    /// Get (dump) services.
    pub const GET_SERVICE: u8 = 4;
    /// Add a destination.
    pub const NEW_DEST: u8 = 5;
    /// Modify a destination.
    pub const SET_DEST: u8 = 6;
    /// Delete a destination.
    pub const DEL_DEST: u8 = 7;
    /// Get (dump) destinations of a service.
    pub const GET_DEST: u8 = 8;
    /// Version and connection table size.
    #[allow(dead_code)]
    pub const GET_INFO: u8 = 15;
    /// Delete every service: vipr never sends it (kube-vip #745).
    #[allow(dead_code)]
    pub const FLUSH: u8 = 17;
}

/// `IPVS_CMD_ATTR_*`.
pub mod cmd_attr {
    /// Nested service attributes.
    pub const SERVICE: u16 = 1;
    /// Nested destination attributes.
    pub const DEST: u16 = 2;
}

/// `IPVS_SVC_ATTR_*`.
pub mod svc_attr {
    /// Address family (u16).
    pub const AF: u16 = 1;
    /// Protocol (u16).
    pub const PROTOCOL: u16 = 2;
    /// Address (16 bytes, `union nf_inet_addr`).
    pub const ADDR: u16 = 3;
    /// Port (be16).
    pub const PORT: u16 = 4;
    /// Firewall mark (u32).
    pub const FWMARK: u16 = 5;
    /// Scheduler name (NUL-terminated).
    pub const SCHED_NAME: u16 = 6;
    /// `struct ip_vs_flags` (flags, mask: two u32).
    pub const FLAGS: u16 = 7;
    /// Persistence timeout (u32).
    pub const TIMEOUT: u16 = 8;
    /// Persistence netmask (u32).
    pub const NETMASK: u16 = 9;
    /// Nested statistics.
    #[allow(dead_code)]
    pub const STATS: u16 = 10;
}

/// `IPVS_DEST_ATTR_*`.
pub mod dest_attr {
    /// Address (16 bytes).
    pub const ADDR: u16 = 1;
    /// Port (be16).
    pub const PORT: u16 = 2;
    /// Forwarding method (u32, `IP_VS_CONN_F_*`).
    pub const FWD_METHOD: u16 = 3;
    /// Weight (u32).
    pub const WEIGHT: u16 = 4;
    /// Upper connection threshold (u32).
    pub const U_THRESH: u16 = 5;
    /// Lower connection threshold (u32).
    pub const L_THRESH: u16 = 6;
    /// Active connections (u32, read only).
    pub const ACTIVE_CONNS: u16 = 7;
    /// Inactive connections (u32, read only).
    pub const INACT_CONNS: u16 = 8;
    /// Address family of the destination (u16).
    pub const ADDR_FAMILY: u16 = 11;
}

/// `IP_VS_CONN_F_*` forwarding methods.
pub mod fwd {
    /// NAT.
    pub const MASQ: u32 = 0;
    /// Local node.
    pub const LOCALNODE: u32 = 1;
    /// IP-in-IP tunnel.
    pub const TUNNEL: u32 = 2;
    /// Direct routing.
    pub const DROUTE: u32 = 3;
    /// `IP_VS_CONN_F_FWD_MASK`.
    pub const MASK: u32 = 7;
}
