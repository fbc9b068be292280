//! ARP/NDP announcements for ARP mode: when a node takes over a VIP it tells the segment
//! that the address now lives at its MAC, so clients and routers switch at once instead of
//! after their neighbour entries expire.
//!
//! - IPv4: a gratuitous ARP (RFC 826 request, sender IP = target IP, RFC 5227 "ARP
//!   announcement", like `arping -U`), an Ethernet broadcast from an `AF_PACKET` socket.
//! - IPv6: an unsolicited Neighbor Advertisement (RFC 4861 §4.4, §7.2.6) to ff02::1 with the
//!   Override flag and a Target Link-Layer Address option, from a raw ICMPv6 socket with hop
//!   limit 255 and the VIP as source (per packet, `IPV6_PKTINFO`). Linux fills in the
//!   ICMPv6 checksum of raw `IPPROTO_ICMPV6` sockets itself (`rawv6_init_sk` forces checksum
//!   offset 2), so [`na_message`] leaves it zero.
//!
//! What Linux receivers do with them (kernel 6.x): a gratuitous ARP updates an existing
//! neighbour entry at once (whatever its state and `locktime`) but creates one only with
//! `arp_accept=1` (or `=2` for senders in a local subnet). An unsolicited NA with the Override
//! flag replaces the MAC of an existing entry (state STALE); it creates an entry only on a
//! router (`forwarding=1`) with `accept_untracked_na=1`/`2` (RFC 9131).
//!
//! The sockets are opened by [`Announcer::new`] in the calling thread's network namespace and
//! stay there. They only send: the packet socket has protocol 0 (no receive hook) and the
//! ICMPv6 socket filters out every incoming message. Sends are single non-blocking datagrams.

use std::ffi::CString;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::DataplaneError;

/// EtherType of ARP.
const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv4 (the ARP protocol type).
const ETH_P_IP: u16 = 0x0800;
/// ARP hardware type Ethernet.
const ARP_HTYPE_ETHER: u16 = 1;
/// ARP operation "request".
const ARP_OP_REQUEST: u16 = 1;
/// The all-nodes multicast group, destination of unsolicited NAs.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ICMPv6 type Neighbor Advertisement.
const ND_NEIGHBOR_ADVERT: u8 = 136;
/// The Override flag (R = 0x80, S = 0x40, O = 0x20 in the first flags byte).
const NA_FLAG_OVERRIDE: u8 = 0x20;
/// ND option Target Link-Layer Address.
const ND_OPT_TARGET_LL_ADDR: u8 = 2;
/// `ICMPV6_FILTER` (linux/icmpv6.h), at level `SOL_ICMPV6`; not in the libc crate.
const ICMPV6_FILTER: libc::c_int = 1;
/// NDP packets must arrive with hop limit 255 (RFC 4861 §7.1.2).
const NDP_HOP_LIMIT: libc::c_int = 255;

/// Sends gratuitous ARPs and unsolicited NAs on one interface.
#[derive(Debug)]
pub struct Announcer {
    iface: String,
    ifindex: u32,
    mac: [u8; 6],
    /// `AF_PACKET`/`SOCK_RAW`, protocol 0, bound to `ifindex`.
    packet: OwnedFd,
    /// Raw ICMPv6 socket; the error when it could not be set up (e.g. IPv6 disabled), which
    /// IPv4-only use does not mind and IPv6 announcements return.
    icmp6: Result<OwnedFd, DataplaneError>,
}

impl Announcer {
    /// Opens the sockets for `iface` in the calling thread's network namespace. Needs
    /// CAP_NET_RAW. The interface must have an Ethernet address: loopback, tunnels and other
    /// interfaces without one are refused (ARP mode needs the interface facing the clients).
    /// The index and MAC are read now: if the interface is recreated or its MAC changes,
    /// create a new `Announcer`.
    pub fn new(iface: &str) -> Result<Announcer, DataplaneError> {
        let ifindex = ifindex(iface)?;
        let packet = socket(libc::AF_PACKET, 0, iface, "AF_PACKET socket")?;
        let mac = hw_addr(&packet, iface)?;
        bind_link(&packet, &link_addr(ifindex, 0, [0; 6]), iface)?;
        let icmp6 = icmp6_socket(iface, ifindex);
        Ok(Announcer {
            iface: iface.to_string(),
            ifindex,
            mac,
            packet,
            icmp6,
        })
    }

    /// Sends one announcement for `ip`: for IPv4 a gratuitous ARP (Ethernet broadcast, ARP
    /// request with sender IP = target IP = `ip` and sender MAC = the interface's MAC), for
    /// IPv6 an unsolicited Neighbor Advertisement to ff02::1 (Override set, Solicited and
    /// Router clear, target `ip`, Target Link-Layer Address option) from `ip`, which must
    /// already be configured on the node and not tentative (vipr adds VIPs with NODAD).
    pub fn announce(&self, ip: IpAddr) -> Result<(), DataplaneError> {
        match ip {
            IpAddr::V4(a) => self.send_arp(a),
            IpAddr::V6(a) => self.send_na(a),
        }
    }

    /// The interface's MAC address, as announced.
    #[allow(dead_code)] // API for callers' logs; the tests use it
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn send_arp(&self, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        let frame = arp_frame(self.mac, ip);
        let to = link_addr(self.ifindex, ETH_P_ARP, [0xff; 6]);
        // SAFETY: `frame` and `to` are live for the call and the lengths are their sizes.
        let sent = unsafe {
            libc::sendto(
                self.packet.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(os_err(&self.iface, &format!("gratuitous ARP for {ip}")));
        }
        check_len(&self.iface, "gratuitous ARP", sent, frame.len())
    }

    fn send_na(&self, ip: Ipv6Addr) -> Result<(), DataplaneError> {
        let fd = self.icmp6.as_ref().map_err(Clone::clone)?;
        let body = na_message(self.mac, ip);
        let to = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: 0,
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr {
                s6_addr: ALL_NODES.octets(),
            },
            sin6_scope_id: self.ifindex,
        };
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: ip.octets(),
            },
            ipi6_ifindex: self.ifindex,
        };
        let mut iov = libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        };
        // Room for one cmsghdr + in6_pktinfo, 8-byte aligned (CMSG_SPACE(20) is 40 on 64-bit).
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data (all-zero is valid). Every pointer in it (`to`, `iov`
        // and through it `body`, `control`) refers to a local that outlives sendmsg; the
        // control length CMSG_SPACE(sizeof in6_pktinfo) fits in `control` (64 bytes), so
        // CMSG_FIRSTHDR is non-null and the header and data written through it stay inside
        // `control`; the data is written unaligned.
        let sent = unsafe {
            let mut msg: libc::msghdr = mem::zeroed();
            msg.msg_name = (&to as *const libc::sockaddr_in6).cast_mut().cast();
            msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            let info_len = mem::size_of::<libc::in6_pktinfo>() as libc::c_uint;
            debug_assert!(libc::CMSG_SPACE(info_len) as usize <= mem::size_of_val(&control));
            msg.msg_controllen = libc::CMSG_SPACE(info_len) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
            (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
            (*cmsg).cmsg_len = libc::CMSG_LEN(info_len) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in6_pktinfo>(), info);
            libc::sendmsg(fd.as_raw_fd(), &msg, 0)
        };
        if sent < 0 {
            let e = io::Error::last_os_error();
            let mut reason = e.to_string();
            if e.raw_os_error() == Some(libc::EINVAL) {
                reason.push_str(" (the address must be configured on the node and not tentative)");
            }
            return Err(DataplaneError::Announce {
                iface: self.iface.clone(),
                context: format!("neighbour advertisement for {ip}"),
                reason,
            });
        }
        check_len(&self.iface, "neighbour advertisement", sent, body.len())
    }
}

/// The gratuitous ARP frame for `ip` at `mac` (RFC 826 layout; RFC 5227 §3 announcement):
/// Ethernet broadcast from `mac`, EtherType ARP; hardware Ethernet, protocol IPv4, lengths 6
/// and 4, operation request; sender `mac`/`ip`, target MAC zero, target IP `ip`.
pub fn arp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&ARP_HTYPE_ETHER.to_be_bytes());
    f[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&ARP_OP_REQUEST.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // f[32..38]: target hardware address, zero.
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// The ICMPv6 body of an unsolicited Neighbor Advertisement for `target` at `mac` (RFC 4861
/// §4.4): type 136, code 0, checksum zero (the kernel fills it in), flags R=0 S=0 O=1,
/// target address, then a Target Link-Layer Address option (type 2, length 1 = 8 bytes).
pub fn na_message(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&[ND_NEIGHBOR_ADVERT, 0, 0, 0]);
    m.extend_from_slice(&[NA_FLAG_OVERRIDE, 0, 0, 0]);
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[ND_OPT_TARGET_LL_ADDR, 1]);
    m.extend_from_slice(&mac);
    m
}

/// The index of `iface` in the calling thread's namespace.
fn ifindex(iface: &str) -> Result<u32, DataplaneError> {
    let missing = || DataplaneError::NoInterface(iface.to_string());
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(missing());
    }
    let name = CString::new(iface).map_err(|_| missing())?;
    // SAFETY: `name` is a valid NUL-terminated string that lives across the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(missing());
    }
    Ok(index)
}

/// The Ethernet address of `iface` (SIOCGIFHWADDR on `fd`, answered in `fd`'s namespace).
fn hw_addr(fd: &OwnedFd, iface: &str) -> Result<[u8; 6], DataplaneError> {
    // SAFETY: ifreq is plain data (all-zero is valid); the name copied in is shorter than
    // IFNAMSIZ (checked by `ifindex` before), so it stays NUL-terminated; SIOCGIFHWADDR
    // writes only inside `ifr`, and when it succeeds it has set `ifru_hwaddr`, the union
    // field read.
    let hw = unsafe {
        let mut ifr: libc::ifreq = mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(iface.bytes()) {
            *d = s as libc::c_char;
        }
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut ifr) == 0 {
            Some(ifr.ifr_ifru.ifru_hwaddr)
        } else {
            None
        }
    };
    let hw = hw.ok_or_else(|| os_err(iface, "reading the MAC address (SIOCGIFHWADDR)"))?;
    let (family, data) = (hw.sa_family, hw.sa_data);
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(data) {
        *d = s as u8;
    }
    let not_ethernet = |reason: String| DataplaneError::NotEthernet {
        iface: iface.to_string(),
        reason,
    };
    match family {
        libc::ARPHRD_ETHER => {}
        libc::ARPHRD_LOOPBACK => {
            return Err(not_ethernet(
                "loopback has no MAC address; ARP mode needs the interface on the clients' \
                 segment"
                    .to_string(),
            ))
        }
        other => {
            return Err(not_ethernet(format!(
                "hardware type {other} is not Ethernet; ARP mode needs an Ethernet interface"
            )))
        }
    }
    if mac == [0; 6] {
        return Err(not_ethernet("the MAC address is all zero".to_string()));
    }
    Ok(mac)
}

/// Opens and configures the raw ICMPv6 socket for unsolicited NAs on `ifindex`.
fn icmp6_socket(iface: &str, ifindex: u32) -> Result<OwnedFd, DataplaneError> {
    let fd = socket(
        libc::AF_INET6,
        libc::IPPROTO_ICMPV6,
        iface,
        "raw ICMPv6 socket",
    )?;
    let block_all = [u32::MAX; 8]; // struct icmp6_filter: a set bit blocks that type
    setsockopt(
        &fd,
        libc::SOL_ICMPV6,
        ICMPV6_FILTER,
        &block_all,
        iface,
        "ICMPV6_FILTER",
    )?;
    let hops = NDP_HOP_LIMIT;
    setsockopt(
        &fd,
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_HOPS,
        &hops,
        iface,
        "IPV6_MULTICAST_HOPS",
    )?;
    setsockopt(
        &fd,
        libc::IPPROTO_IPV6,
        libc::IPV6_UNICAST_HOPS,
        &hops,
        iface,
        "IPV6_UNICAST_HOPS",
    )?;
    let index = ifindex as libc::c_int;
    setsockopt(
        &fd,
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_IF,
        &index,
        iface,
        "IPV6_MULTICAST_IF",
    )?;
    let no_loop: libc::c_int = 0;
    setsockopt(
        &fd,
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_LOOP,
        &no_loop,
        iface,
        "IPV6_MULTICAST_LOOP",
    )?;
    Ok(fd)
}

/// A `SOCK_RAW` socket (non-blocking, close-on-exec) in the calling thread's namespace.
fn socket(
    domain: libc::c_int,
    protocol: libc::c_int,
    iface: &str,
    what: &str,
) -> Result<OwnedFd, DataplaneError> {
    let ty = libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(domain, ty, protocol) };
    if fd < 0 {
        return Err(os_err(
            iface,
            &format!("opening a {what} (needs CAP_NET_RAW)"),
        ));
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    iface: &str,
    what: &str,
) -> Result<(), DataplaneError> {
    // SAFETY: `value` points to a live `T` whose size is passed as the option length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os_err(iface, &format!("setting {what}")));
    }
    Ok(())
}

/// Binds an `AF_PACKET` socket to an interface (and protocol, 0 for none: send only).
fn bind_link(fd: &OwnedFd, sll: &libc::sockaddr_ll, iface: &str) -> Result<(), DataplaneError> {
    // SAFETY: `sll` is a valid sockaddr_ll that lives across the call; the length is its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (sll as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os_err(iface, "binding the AF_PACKET socket"));
    }
    Ok(())
}

/// A link-layer address on `ifindex` (`protocol` in host order, 0 for none).
fn link_addr(ifindex: u32, protocol: u16, mac: [u8; 6]) -> libc::sockaddr_ll {
    let mut addr = [0u8; 8];
    addr[..6].copy_from_slice(&mac);
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: protocol.to_be(),
        sll_ifindex: ifindex as libc::c_int,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: addr,
    }
}

fn check_len(iface: &str, what: &str, sent: isize, want: usize) -> Result<(), DataplaneError> {
    if sent as usize != want {
        return Err(DataplaneError::Announce {
            iface: iface.to_string(),
            context: what.to_string(),
            reason: format!("sent {sent} of {want} bytes"),
        });
    }
    Ok(())
}

/// The error of the last failed call (errno), read at once.
fn os_err(iface: &str, context: &str) -> DataplaneError {
    DataplaneError::Announce {
        iface: iface.to_string(),
        context: context.to_string(),
        reason: io::Error::last_os_error().to_string(),
    }
}

#[cfg(test)]
mod tests;
