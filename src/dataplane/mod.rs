//! The node data plane: addresses (rtnetlink); later ARP/NDP and IPVS.

pub mod addr;
