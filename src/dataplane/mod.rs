//! The node data plane: VIP addresses and host routes to peers (rtnetlink), ARP/NDP
//! announcements (raw sockets). IPVS and nftables load balancing live in `lb/`.

pub mod addr;
pub mod announce;
pub mod garp;
pub mod routes;

use crate::error::DataplaneError;

/// Maps a netlink failure while doing `context` to [`DataplaneError::Netlink`], with the
/// kernel's errno text when the kernel refused.
pub(crate) fn nl(context: &str) -> impl Fn(rtnetlink::Error) -> DataplaneError + '_ {
    move |e| DataplaneError::Netlink {
        context: context.to_string(),
        reason: match &e {
            rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
            other => other.to_string(),
        },
    }
}
