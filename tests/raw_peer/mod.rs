//! A scripted BGP peer over a plain TCP socket for the daemon tests (`tests/hostile_peer.rs`
//! and the soak): it connects to vipr from a namespace of its own, reads what vipr sends
//! with bgp's own decoder, and writes whatever bytes a test wants, well-formed or not. Also
//! the message builders those tests share and a reader of a process's RSS, threads and fds.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bgp::codec::open::{Capabilities, Open};
use bgp::codec::{self, decode, DecodeCtx, Message, Notification};
use bgp::Family;
use testbed::Netns;

/// One BGP connection written by hand over a blocking socket.
pub struct RawPeer {
    /// The socket (blocking, with a read timeout).
    pub s: TcpStream,
}

/// What [`RawPeer::next`] saw (returned and matched at once, never stored).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Got {
    /// A whole message.
    Msg(Message),
    /// The connection ended (EOF or reset).
    Closed,
    /// Nothing within the read timeout.
    Timeout,
}

impl RawPeer {
    /// Connects from namespace `ns` to `to`, with `timeout` for reads.
    pub fn connect(ns: &Netns, to: SocketAddr, timeout: Duration) -> RawPeer {
        let s = ns.enter(|| {
            TcpStream::connect_timeout(&to, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("raw peer connect to {to}: {e}"))
        });
        s.set_read_timeout(Some(timeout)).unwrap();
        s.set_nodelay(true).unwrap();
        RawPeer { s }
    }

    /// The next message, EOF, or a timeout.
    pub fn next(&mut self) -> Got {
        let mut hdr = [0u8; 19];
        if let Err(e) = self.s.read_exact(&mut hdr) {
            return match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => Got::Timeout,
                _ => Got::Closed,
            };
        }
        let len = u16::from_be_bytes([hdr[16], hdr[17]]) as usize;
        let mut buf = hdr.to_vec();
        buf.resize(len.max(19), 0);
        if self.s.read_exact(&mut buf[19..]).is_err() {
            return Got::Closed;
        }
        let ctx = DecodeCtx {
            four_octet_as: true,
            ibgp: false,
        };
        match decode(&buf, 65535, &ctx) {
            Ok(m) => Got::Msg(m),
            Err(e) => panic!("vipr sent a message its own decoder rejects ({e}): {buf:02x?}"),
        }
    }

    /// Writes bytes; `false` once the connection is gone.
    pub fn send(&mut self, b: &[u8]) -> bool {
        self.s.write_all(b).is_ok()
    }

    /// Reads vipr's OPEN (it sends one first on an incoming connection).
    pub fn read_open(&mut self) -> Open {
        match self.next() {
            Got::Msg(Message::Open(o)) => o,
            other => panic!("expected vipr's OPEN, got {other:?}"),
        }
    }

    /// Reads until a NOTIFICATION, skipping everything else; `None` at EOF or timeout.
    pub fn until_notification(&mut self) -> Option<Notification> {
        loop {
            match self.next() {
                Got::Msg(Message::Notification(n)) => return Some(n),
                Got::Msg(_) => continue,
                Got::Closed | Got::Timeout => return None,
            }
        }
    }

    /// After a NOTIFICATION: true if vipr closes the connection within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            match self.next() {
                Got::Closed => return true,
                Got::Msg(_) | Got::Timeout => continue,
            }
        }
        false
    }

    /// Drains what vipr sent so far without blocking longer than `for_`.
    pub fn drain(&mut self, for_: Duration) {
        let old = self.s.read_timeout().ok().flatten();
        self.s
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let t0 = Instant::now();
        while t0.elapsed() < for_ {
            if matches!(self.next(), Got::Closed | Got::Timeout) {
                break;
            }
        }
        self.s.set_read_timeout(old).unwrap();
    }
}

/// A message with a valid marker: type `t` around `body`.
pub fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(t);
    m.extend_from_slice(body);
    m
}

/// An OPEN from `asn` with `hold` and identifier `id`: IPv4 and IPv6 unicast, route
/// refresh, 4-octet AS.
pub fn open(asn: u32, hold: u16, id: Ipv4Addr) -> Vec<u8> {
    let caps = Capabilities {
        families: Family::ALL.to_vec(),
        multiprotocol: true,
        route_refresh: true,
        four_octet_as: Some(asn),
        ..Default::default()
    };
    codec::encode_open(&Open::new(asn, hold, id, caps)).to_vec()
}

/// An UPDATE body from its three fields.
pub fn update_body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

/// ORIGIN IGP, AS_PATH [asn] (4-octet), NEXT_HOP `nh`.
pub fn good_attrs(asn: u32, nh: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0x40, 1, 1, 0, 0x40, 2, 6, 2, 1];
    a.extend_from_slice(&asn.to_be_bytes());
    a.extend_from_slice(&[0x40, 3, 4]);
    a.extend_from_slice(&nh.octets());
    a
}

/// A valid UPDATE announcing the /32 `p` from `asn` with next hop `nh`.
pub fn announce(asn: u32, nh: Ipv4Addr, p: Ipv4Addr) -> Vec<u8> {
    let mut nlri = vec![32];
    nlri.extend_from_slice(&p.octets());
    msg(2, &update_body(&[], &good_attrs(asn, nh), &nlri))
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:")
}

/// Thread count of a process.
pub fn threads(pid: u32) -> u64 {
    proc_status(pid, "Threads:")
}

/// Open file descriptors of a process.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Sockets among a process's file descriptors.
pub fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
