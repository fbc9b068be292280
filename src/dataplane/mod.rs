//! The node data plane: addresses (rtnetlink), ARP/NDP announcements (raw sockets); later IPVS.

pub mod addr;
pub mod announce;
pub mod garp;
pub mod routes;
