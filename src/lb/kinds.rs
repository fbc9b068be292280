//! The enumerations of the load balancer's settings, [`Scheduler`], [`FwdMethod`] and the
//! data plane [`Kind`], with their kernel and configuration names. Pure data and
//! self-contained (no `crate::` paths), so that the IPVS message codec
//! ([`super::ipvs::msg`]) and the configuration build on their own in the fuzz targets of
//! `tests/fuzz` as well.

/// IPVS schedulers (kube-vip's `lb_scheduler`, vipr's `vipr_lb_scheduler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheduler {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections.
    Wlc,
    /// Source hashing.
    Sh,
    /// Maglev hashing.
    Mh,
}

impl Scheduler {
    /// The kernel's name (`ip_vs_<name>` module, `IPVS_SVC_ATTR_SCHED_NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Sh => "sh",
            Scheduler::Mh => "mh",
        }
    }

    /// Parses a kernel name.
    pub fn parse(s: &str) -> Option<Scheduler> {
        [
            Scheduler::Rr,
            Scheduler::Wrr,
            Scheduler::Lc,
            Scheduler::Wlc,
            Scheduler::Sh,
            Scheduler::Mh,
        ]
        .into_iter()
        .find(|x| x.name() == s)
    }
}

/// IPVS forwarding methods (`lb_fwdmethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FwdMethod {
    /// `local`: deliver to the local stack (IP_VS_CONN_F_LOCALNODE), kube-vip's default.
    Local,
    /// `masquerade`: NAT (IP_VS_CONN_F_MASQ).
    Masquerade,
    /// `tunnel`: IP-in-IP (IP_VS_CONN_F_TUNNEL).
    Tunnel,
    /// `directroute`: direct routing (IP_VS_CONN_F_DROUTE).
    DirectRoute,
}

impl FwdMethod {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            FwdMethod::Local => "local",
            FwdMethod::Masquerade => "masquerade",
            FwdMethod::Tunnel => "tunnel",
            FwdMethod::DirectRoute => "directroute",
        }
    }

    /// Parses a configuration name.
    pub fn parse(s: &str) -> Option<FwdMethod> {
        [
            FwdMethod::Local,
            FwdMethod::Masquerade,
            FwdMethod::Tunnel,
            FwdMethod::DirectRoute,
        ]
        .into_iter()
        .find(|x| x.name() == s)
    }
}

/// Which data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Kernel IPVS over generic netlink.
    Ipvs,
    /// nftables NAT in vipr's own table.
    Nftables,
}

impl Kind {
    /// `ipvs` / `nftables` (the values of `vipr_lb_backend`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ipvs => "ipvs",
            Kind::Nftables => "nftables",
        }
    }
}
