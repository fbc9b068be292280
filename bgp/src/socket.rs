//! Socket options for BGP sessions and the one place with `unsafe`: TCP MD5 signatures
//! (RFC 2385, Linux TCP_MD5SIG), TTL / hop limit for eBGP multihop, GTSM (RFC 5082,
//! IP_MINTTL / IPV6_MINHOPCOUNT, and the saved SYN's TTL of accepted connections),
//! TCP_USER_TIMEOUT, source binding, and the active connect and passive listener built
//! from them; for BFD (RFC 5881 §5) the TTL options of its UDP sockets and a
//! `recvmsg` that returns the received TTL / hop limit.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::config::PeerConfig;

/// Linux `TCP_MD5SIG_MAXKEYLEN`.
const MD5_MAX_KEY: usize = 80;

/// Linux `struct tcp_md5sig` (include/uapi/linux/tcp.h); libc does not define it.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: u32,
    key: [u8; MD5_MAX_KEY],
}

fn sockaddr_storage(ip: IpAddr) -> libc::sockaddr_storage {
    let sa: socket2::SockAddr = SocketAddr::new(ip, 0).into();
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = (sa.len() as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: both regions are at least `len` bytes and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(sa.as_ptr() as *const u8, &mut st as *mut _ as *mut u8, len);
    }
    st
}

/// Sets (or with `None`, removes) the RFC 2385 key for segments to/from `peer` on `fd`.
/// On an IPv6 socket, IPv4 peers are keyed by their v4-mapped address.
pub fn set_md5<S: AsRawFd>(
    sock: &S,
    socket_is_v6: bool,
    peer: IpAddr,
    key: Option<&str>,
) -> io::Result<()> {
    let key = key.unwrap_or("").as_bytes();
    if key.len() > MD5_MAX_KEY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 key longer than 80 bytes",
        ));
    }
    let peer = match (socket_is_v6, peer) {
        (true, IpAddr::V4(a)) => IpAddr::V6(a.to_ipv6_mapped()),
        _ => peer,
    };
    let mut sig = TcpMd5Sig {
        addr: sockaddr_storage(peer),
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; MD5_MAX_KEY],
    };
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: `sig` is a valid, fully initialised tcp_md5sig that outlives the call, and the
    // length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            &sig as *const TcpMd5Sig as *const libc::c_void,
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn set_int<S: AsRawFd>(
    sock: &S,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a c_int option value that lives across the call, with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The per-peer options of a session socket, set before connecting and on each accepted
/// connection (which inherits nothing per-peer from the shared listener). `v6` is the
/// family of the peer's address: the IPv4 options also apply to an IPv4 peer on an IPv6
/// (dual-stack) socket.
/// - TTL of our packets and, with GTSM (RFC 5082 §3), the minimum TTL we accept:
///   `256 - hops`, i.e. 255 for a directly connected peer.
/// - TCP_USER_TIMEOUT ([`PeerConfig::send_hold_time`]): a peer that stops reading (zero
///   window) costs a socket and a writer task only that long, whatever the session does.
pub fn set_peer_options<S: AsRawFd>(sock: &S, v6: bool, cfg: &PeerConfig) -> io::Result<()> {
    let ttl = cfg.effective_ttl() as libc::c_int;
    if v6 {
        set_int(sock, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, ttl)?;
    } else {
        set_int(sock, libc::IPPROTO_IP, libc::IP_TTL, ttl)?;
    }
    if let Some(min) = cfg.gtsm_min_ttl() {
        let min = min as libc::c_int;
        if v6 {
            set_int(sock, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, min)?;
        } else {
            set_int(sock, libc::IPPROTO_IP, libc::IP_MINTTL, min)?;
        }
    }
    let ms = cfg.send_hold_time().as_millis().min(i32::MAX as u128) as libc::c_int;
    set_int(sock, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms)
}

/// The TTL (IPv4) or hop limit (IPv6) that the SYN of an accepted connection arrived with,
/// from the headers its listener saved ([`listen`] sets TCP_SAVE_SYN; the kernel hands them
/// out once). `None` when nothing was saved. GTSM (RFC 5082 §3) checks it before the
/// connection is used: IP_MINTTL set after accept only drops later segments.
pub fn syn_ttl<S: AsRawFd>(sock: &S) -> io::Result<Option<u8>> {
    let mut buf = [0u8; 512];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `buf`, which outlives the call, and
    // stores the written length in `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_SAVED_SYN,
            buf.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let h = &buf[..(len as usize).min(buf.len())];
    // The saved headers start at the IP header: TTL at octet 8 (IPv4), hop limit at 7 (IPv6).
    Ok(match h.first().map(|b| b >> 4) {
        Some(4) if h.len() >= 20 => Some(h[8]),
        Some(6) if h.len() >= 40 => Some(h[7]),
        _ => None,
    })
}

/// The kernel's index of the interface `name` (`if_nametoindex`).
pub fn if_index(name: &str) -> io::Result<u32> {
    let c =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name}"),
        )),
        i => Ok(i),
    }
}

/// Opens the active connection of a session with every per-peer option applied before the
/// SYN (MD5 must be set before connecting).
pub async fn connect(cfg: &PeerConfig, timeout: Duration) -> io::Result<TcpStream> {
    let remote = cfg.remote()?;
    let v6 = remote.is_ipv6();
    let sock = Socket::new(
        Domain::for_address(remote),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    if let Some(pw) = &cfg.password {
        set_md5(&sock, v6, cfg.address, Some(pw.expose()))?;
    }
    set_peer_options(&sock, v6, cfg)?;
    if let Some(iface) = &cfg.interface {
        // BGP unnumbered: the session stays on its link whatever the routing table says.
        sock.bind_device(Some(iface.as_bytes()))?;
    }
    if let Some(src) = cfg.source {
        sock.bind(&SocketAddr::new(src, 0).into())?;
    }
    let tsock = TcpSocket::from_std_stream(sock.into());
    match tokio::time::timeout(timeout, tsock.connect(remote)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// Binds the passive listener (SO_REUSEADDR; dual-stack when bound to `[::]`; TTL 255; SYN
/// headers saved for GTSM).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(false)?;
    }
    sock.set_nonblocking(true)?;
    // The SYN-ACK leaves before a connection is matched to its peer: send it with TTL 255
    // so that GTSM peers (RFC 5082) accept it. Each accepted connection then gets its own
    // peer's TTL and minimum TTL (`set_peer_options`), and the TTL its SYN came with is
    // checked against that minimum (`syn_ttl`). IP_TTL also covers IPv4 peers of a
    // dual-stack socket.
    set_int(&sock, libc::IPPROTO_IP, libc::IP_TTL, 255)?;
    if addr.is_ipv6() {
        set_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)?;
    }
    set_int(&sock, libc::IPPROTO_TCP, libc::TCP_SAVE_SYN, 1)?;
    sock.bind(&addr.into())?;
    sock.listen(128)?;
    TcpListener::from_std(sock.into())
}

/// RFC 5881 §5 for a BFD socket of family `v6`: send with TTL / hop limit 255 and, on a
/// receive socket (`receive`), report each datagram's TTL / hop limit (IP_RECVTTL /
/// IPV6_RECVHOPLIMIT) and ask for at least 255 (IP_MINTTL / IPV6_MINHOPCOUNT). Linux does not
/// enforce the minimum on UDP (checked on 6.18), so the receiver also checks the reported
/// value: see [`recv_with_ttl`].
pub fn set_bfd_ttl<S: AsRawFd>(sock: &S, v6: bool, receive: bool) -> io::Result<()> {
    if v6 {
        set_int(sock, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)?;
    } else {
        set_int(sock, libc::IPPROTO_IP, libc::IP_TTL, 255)?;
    }
    if receive {
        if v6 {
            set_int(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
            let _ = set_int(sock, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, 255);
        } else {
            set_int(sock, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
            let _ = set_int(sock, libc::IPPROTO_IP, libc::IP_MINTTL, 255);
        }
    }
    Ok(())
}

/// One datagram from a socket set up with [`set_bfd_ttl`] (`receive`): its length, the
/// sender, and the TTL / hop limit it arrived with (`None` if the kernel did not say).
/// Non-blocking: `WouldBlock` when nothing is queued.
pub fn recv_with_ttl<S: AsRawFd>(
    sock: &S,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<u8>)> {
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for one int-sized control message (u64 keeps it aligned for cmsghdr).
    let mut control = [0u64; 8];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut addr as *mut libc::sockaddr_storage as *mut libc::c_void;
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` refers to a live buffer of the stated size, all of which
    // outlive the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded by
    // msg_controllen; the data of IP_TTL and IPV6_HOPLIMIT is one int.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT)
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                ttl = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let from = match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into the storage,
            // which is larger and suitably aligned.
            let a =
                unsafe { &*(&addr as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            SocketAddr::new(
                std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into(),
                u16::from_be(a.sin_port),
            )
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let a =
                unsafe { &*(&addr as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            SocketAddr::new(
                std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).into(),
                u16::from_be(a.sin6_port),
            )
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an IP sender",
            ))
        }
    };
    Ok((n as usize, from, ttl))
}
