//! IPVS generic netlink messages (family "IPVS", version 1), encoded and decoded on
//! `netlink-packet-generic`. Layout and numbers from `linux/ip_vs.h`; the kernel's parser is
//! `ip_vs_genl_parse_service` / `ip_vs_genl_parse_dest` in `net/netfilter/ipvs/ip_vs_ctl.c`.
//! No I/O here: [`super`] owns the socket.
//!
//! Attributes are written without `NLA_F_NESTED` on the nested ones, like libipvs (ipvsadm)
//! does; the IPVS family does not validate strictly, and the kernel masks the flag anyway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netlink_packet_core::{
    emit_u16, emit_u16_be, emit_u32, parse_string, parse_u16, parse_u16_be, parse_u32, DecodeError,
    DefaultNla, Emitable, Nla, NlaBuffer, NlasIterator, Parseable, ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use crate::lb::{FwdMethod, Scheduler};

/// The generic netlink family name.
pub const FAMILY: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const VERSION: u8 = 1;

#[path = "msg/uapi.rs"] // spelt out: the fuzz target includes this file by path
mod uapi;
pub use uapi::{cmd, cmd_attr, dest_attr, fwd, svc_attr};

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
const IPPROTO_TCP: u16 = libc::IPPROTO_TCP as u16;

/// The kernel's value of a forwarding method.
pub fn fwd_value(f: FwdMethod) -> u32 {
    match f {
        FwdMethod::Masquerade => fwd::MASQ,
        FwdMethod::Local => fwd::LOCALNODE,
        FwdMethod::Tunnel => fwd::TUNNEL,
        FwdMethod::DirectRoute => fwd::DROUTE,
    }
}

/// The forwarding method of a kernel value.
pub fn fwd_method(v: u32) -> Option<FwdMethod> {
    match v & fwd::MASK {
        fwd::MASQ => Some(FwdMethod::Masquerade),
        fwd::LOCALNODE => Some(FwdMethod::Local),
        fwd::TUNNEL => Some(FwdMethod::Tunnel),
        fwd::DROUTE => Some(FwdMethod::DirectRoute),
        _ => None,
    }
}

fn af(ip: &IpAddr) -> u16 {
    if ip.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

/// `union nf_inet_addr`: IPv4 in the first 4 bytes, the rest zero.
fn inet_addr(ip: &IpAddr) -> [u8; 16] {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(a) => b[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => b = a.octets(),
    }
    b
}

fn parse_inet_addr(af: u16, b: &[u8]) -> Option<IpAddr> {
    match af {
        AF_INET if b.len() >= 4 => Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()),
        AF_INET6 if b.len() >= 16 => {
            let o: [u8; 16] = b[..16].try_into().ok()?;
            Some(Ipv6Addr::from(o).into())
        }
        _ => None,
    }
}

/// An attribute inside `IPVS_CMD_ATTR_SERVICE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SvcAttr {
    /// Address family.
    Af(u16),
    /// IP protocol.
    Protocol(u16),
    /// Virtual address (16 bytes).
    Addr([u8; 16]),
    /// Virtual port.
    Port(u16),
    /// Firewall mark.
    Fwmark(u32),
    /// Scheduler.
    SchedName(String),
    /// `struct ip_vs_flags`.
    Flags {
        /// Flag values.
        flags: u32,
        /// Which flags to set.
        mask: u32,
    },
    /// Persistence timeout.
    Timeout(u32),
    /// Persistence netmask (IPv4: a mask; IPv6: a prefix length).
    Netmask(u32),
    /// Anything else (statistics...).
    Other(DefaultNla),
}

impl Nla for SvcAttr {
    fn value_len(&self) -> usize {
        match self {
            SvcAttr::Af(_) | SvcAttr::Protocol(_) | SvcAttr::Port(_) => 2,
            SvcAttr::Addr(_) => 16,
            SvcAttr::Fwmark(_) | SvcAttr::Timeout(_) | SvcAttr::Netmask(_) => 4,
            SvcAttr::SchedName(s) => s.len() + 1,
            SvcAttr::Flags { .. } => 8,
            SvcAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            SvcAttr::Af(_) => svc_attr::AF,
            SvcAttr::Protocol(_) => svc_attr::PROTOCOL,
            SvcAttr::Addr(_) => svc_attr::ADDR,
            SvcAttr::Port(_) => svc_attr::PORT,
            SvcAttr::Fwmark(_) => svc_attr::FWMARK,
            SvcAttr::SchedName(_) => svc_attr::SCHED_NAME,
            SvcAttr::Flags { .. } => svc_attr::FLAGS,
            SvcAttr::Timeout(_) => svc_attr::TIMEOUT,
            SvcAttr::Netmask(_) => svc_attr::NETMASK,
            SvcAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, b: &mut [u8]) {
        // The buffer is exactly value_len() long: the emitters cannot fail.
        match self {
            SvcAttr::Af(v) | SvcAttr::Protocol(v) => {
                let _ = emit_u16(b, *v);
            }
            SvcAttr::Port(v) => {
                let _ = emit_u16_be(b, *v);
            }
            SvcAttr::Addr(a) => b.copy_from_slice(a),
            SvcAttr::Fwmark(v) | SvcAttr::Timeout(v) | SvcAttr::Netmask(v) => {
                let _ = emit_u32(b, *v);
            }
            SvcAttr::SchedName(s) => {
                b[..s.len()].copy_from_slice(s.as_bytes());
                b[s.len()] = 0;
            }
            SvcAttr::Flags { flags, mask } => {
                let _ = emit_u32(&mut b[..4], *flags);
                let _ = emit_u32(&mut b[4..8], *mask);
            }
            SvcAttr::Other(n) => n.emit_value(b),
        }
    }
}

impl<T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&T>> for SvcAttr {
    fn parse(buf: &NlaBuffer<&T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            svc_attr::AF => SvcAttr::Af(parse_u16(v)?),
            svc_attr::PROTOCOL => SvcAttr::Protocol(parse_u16(v)?),
            svc_attr::ADDR if v.len() == 16 => {
                SvcAttr::Addr(v.try_into().map_err(|_| DecodeError::from("ADDR"))?)
            }
            svc_attr::PORT => SvcAttr::Port(parse_u16_be(v)?),
            svc_attr::FWMARK => SvcAttr::Fwmark(parse_u32(v)?),
            svc_attr::SCHED_NAME => SvcAttr::SchedName(parse_string(v)?),
            svc_attr::FLAGS if v.len() == 8 => SvcAttr::Flags {
                flags: parse_u32(&v[..4])?,
                mask: parse_u32(&v[4..])?,
            },
            svc_attr::TIMEOUT => SvcAttr::Timeout(parse_u32(v)?),
            svc_attr::NETMASK => SvcAttr::Netmask(parse_u32(v)?),
            _ => SvcAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// An attribute inside `IPVS_CMD_ATTR_DEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestAttr {
    /// Real server address (16 bytes).
    Addr([u8; 16]),
    /// Real server port.
    Port(u16),
    /// `IP_VS_CONN_F_*` method.
    FwdMethod(u32),
    /// Weight.
    Weight(u32),
    /// Upper threshold (0: none).
    UThresh(u32),
    /// Lower threshold (0: none).
    LThresh(u32),
    /// Active connections.
    ActiveConns(u32),
    /// Inactive connections.
    InactConns(u32),
    /// Address family of the real server.
    AddrFamily(u16),
    /// Anything else.
    Other(DefaultNla),
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            DestAttr::Addr(_) => 16,
            DestAttr::Port(_) | DestAttr::AddrFamily(_) => 2,
            DestAttr::FwdMethod(_)
            | DestAttr::Weight(_)
            | DestAttr::UThresh(_)
            | DestAttr::LThresh(_)
            | DestAttr::ActiveConns(_)
            | DestAttr::InactConns(_) => 4,
            DestAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DestAttr::Addr(_) => dest_attr::ADDR,
            DestAttr::Port(_) => dest_attr::PORT,
            DestAttr::FwdMethod(_) => dest_attr::FWD_METHOD,
            DestAttr::Weight(_) => dest_attr::WEIGHT,
            DestAttr::UThresh(_) => dest_attr::U_THRESH,
            DestAttr::LThresh(_) => dest_attr::L_THRESH,
            DestAttr::ActiveConns(_) => dest_attr::ACTIVE_CONNS,
            DestAttr::InactConns(_) => dest_attr::INACT_CONNS,
            DestAttr::AddrFamily(_) => dest_attr::ADDR_FAMILY,
            DestAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, b: &mut [u8]) {
        match self {
            DestAttr::Addr(a) => b.copy_from_slice(a),
            DestAttr::Port(v) => {
                let _ = emit_u16_be(b, *v);
            }
            DestAttr::AddrFamily(v) => {
                let _ = emit_u16(b, *v);
            }
            DestAttr::FwdMethod(v)
            | DestAttr::Weight(v)
            | DestAttr::UThresh(v)
            | DestAttr::LThresh(v)
            | DestAttr::ActiveConns(v)
            | DestAttr::InactConns(v) => {
                let _ = emit_u32(b, *v);
            }
            DestAttr::Other(n) => n.emit_value(b),
        }
    }
}

impl<T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&T>> for DestAttr {
    fn parse(buf: &NlaBuffer<&T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            dest_attr::ADDR if v.len() == 16 => {
                DestAttr::Addr(v.try_into().map_err(|_| DecodeError::from("ADDR"))?)
            }
            dest_attr::PORT => DestAttr::Port(parse_u16_be(v)?),
            dest_attr::FWD_METHOD => DestAttr::FwdMethod(parse_u32(v)?),
            dest_attr::WEIGHT => DestAttr::Weight(parse_u32(v)?),
            dest_attr::U_THRESH => DestAttr::UThresh(parse_u32(v)?),
            dest_attr::L_THRESH => DestAttr::LThresh(parse_u32(v)?),
            dest_attr::ACTIVE_CONNS => DestAttr::ActiveConns(parse_u32(v)?),
            dest_attr::INACT_CONNS => DestAttr::InactConns(parse_u32(v)?),
            dest_attr::ADDR_FAMILY => DestAttr::AddrFamily(parse_u16(v)?),
            _ => DestAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// A top-level attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdAttr {
    /// `IPVS_CMD_ATTR_SERVICE`.
    Service(Vec<SvcAttr>),
    /// `IPVS_CMD_ATTR_DEST`.
    Dest(Vec<DestAttr>),
    /// Anything else (daemon, timeouts).
    Other(DefaultNla),
}

impl Nla for CmdAttr {
    fn value_len(&self) -> usize {
        match self {
            CmdAttr::Service(a) => a.as_slice().buffer_len(),
            CmdAttr::Dest(a) => a.as_slice().buffer_len(),
            CmdAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            CmdAttr::Service(_) => cmd_attr::SERVICE,
            CmdAttr::Dest(_) => cmd_attr::DEST,
            CmdAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, b: &mut [u8]) {
        match self {
            CmdAttr::Service(a) => a.as_slice().emit(b),
            CmdAttr::Dest(a) => a.as_slice().emit(b),
            CmdAttr::Other(n) => n.emit_value(b),
        }
    }
}

fn parse_nested<A>(v: &[u8]) -> Result<Vec<A>, DecodeError>
where
    A: for<'a> Parseable<NlaBuffer<&'a [u8]>>,
{
    NlasIterator::new(v)
        .map(|n| n.and_then(|n| A::parse(&n)))
        .collect()
}

impl<T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&T>> for CmdAttr {
    fn parse(buf: &NlaBuffer<&T>) -> Result<Self, DecodeError> {
        Ok(match buf.kind() {
            cmd_attr::SERVICE => CmdAttr::Service(parse_nested(buf.value())?),
            cmd_attr::DEST => CmdAttr::Dest(parse_nested(buf.value())?),
            _ => CmdAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// The payload of an IPVS generic netlink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsMessage {
    /// `IPVS_CMD_*`.
    pub cmd: u8,
    /// Attributes.
    pub attrs: Vec<CmdAttr>,
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        FAMILY
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(IpvsMessage {
            cmd: header.cmd,
            attrs: parse_nested(buf)?,
        })
    }
}

/// The attributes that name a TCP virtual service.
fn svc_id(key: SocketAddr) -> Vec<SvcAttr> {
    vec![
        SvcAttr::Af(af(&key.ip())),
        SvcAttr::Protocol(IPPROTO_TCP),
        SvcAttr::Addr(inet_addr(&key.ip())),
        SvcAttr::Port(key.port()),
    ]
}

/// A full service entry: id, scheduler, no flags, no persistence.
fn svc_full(key: SocketAddr, scheduler: Scheduler) -> Vec<SvcAttr> {
    let mut a = svc_id(key);
    a.push(SvcAttr::SchedName(scheduler.name().to_string()));
    a.push(SvcAttr::Flags {
        flags: 0,
        mask: u32::MAX,
    });
    a.push(SvcAttr::Timeout(0));
    a.push(SvcAttr::Netmask(if key.is_ipv4() { u32::MAX } else { 128 }));
    a
}

/// `IPVS_CMD_NEW_SERVICE` for TCP `key`.
pub fn new_service(key: SocketAddr, scheduler: Scheduler) -> IpvsMessage {
    IpvsMessage {
        cmd: cmd::NEW_SERVICE,
        attrs: vec![CmdAttr::Service(svc_full(key, scheduler))],
    }
}

/// `IPVS_CMD_SET_SERVICE`: change the scheduler.
pub fn set_service(key: SocketAddr, scheduler: Scheduler) -> IpvsMessage {
    IpvsMessage {
        cmd: cmd::SET_SERVICE,
        attrs: vec![CmdAttr::Service(svc_full(key, scheduler))],
    }
}

/// `IPVS_CMD_DEL_SERVICE`.
pub fn del_service(key: SocketAddr) -> IpvsMessage {
    IpvsMessage {
        cmd: cmd::DEL_SERVICE,
        attrs: vec![CmdAttr::Service(svc_id(key))],
    }
}

/// `IPVS_CMD_GET_SERVICE` (sent as a dump).
pub fn get_services() -> IpvsMessage {
    IpvsMessage {
        cmd: cmd::GET_SERVICE,
        attrs: Vec::new(),
    }
}

fn dest_full(dest: SocketAddr, fwd: FwdMethod) -> Vec<DestAttr> {
    vec![
        DestAttr::Addr(inet_addr(&dest.ip())),
        DestAttr::Port(dest.port()),
        DestAttr::FwdMethod(fwd_value(fwd)),
        DestAttr::Weight(1),
        DestAttr::UThresh(0),
        DestAttr::LThresh(0),
        DestAttr::AddrFamily(af(&dest.ip())),
    ]
}

/// `IPVS_CMD_NEW_DEST`: real server `dest` (weight 1) in service `key`.
pub fn new_dest(key: SocketAddr, dest: SocketAddr, fwd: FwdMethod) -> IpvsMessage {
    IpvsMessage {
        cmd: cmd::NEW_DEST,
        attrs: vec![
            CmdAttr::Service(svc_id(key)),
            CmdAttr::Dest(dest_full(dest, fwd)),
        ],
    }
}

/// `IPVS_CMD_SET_DEST`.
pub fn set_dest(key: SocketAddr, dest: SocketAddr, fwd: FwdMethod) -> IpvsMessage {
    IpvsMessage {
        cmd: cmd::SET_DEST,
        attrs: vec![
            CmdAttr::Service(svc_id(key)),
            CmdAttr::Dest(dest_full(dest, fwd)),
        ],
    }
}

/// `IPVS_CMD_DEL_DEST`.
pub fn del_dest(key: SocketAddr, dest: SocketAddr) -> IpvsMessage {
    IpvsMessage {
        cmd: cmd::DEL_DEST,
        attrs: vec![
            CmdAttr::Service(svc_id(key)),
            CmdAttr::Dest(vec![
                DestAttr::Addr(inet_addr(&dest.ip())),
                DestAttr::Port(dest.port()),
            ]),
        ],
    }
}

/// `IPVS_CMD_GET_DEST` for service `key` (sent as a dump).
pub fn get_dests(key: SocketAddr) -> IpvsMessage {
    IpvsMessage {
        cmd: cmd::GET_DEST,
        attrs: vec![CmdAttr::Service(svc_id(key))],
    }
}

/// A virtual service as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `VIP:port`, `None` for firewall-mark services.
    pub key: Option<SocketAddr>,
    /// IP protocol.
    pub protocol: u16,
    /// Scheduler name.
    pub scheduler: String,
}

/// Reads a service out of a `GET_SERVICE` reply.
pub fn service_info(m: &IpvsMessage) -> Option<ServiceInfo> {
    let attrs = m.attrs.iter().find_map(|a| match a {
        CmdAttr::Service(s) => Some(s),
        _ => None,
    })?;
    let (mut family, mut proto, mut addr, mut port, mut sched) = (0, 0, None, None, String::new());
    for a in attrs {
        match a {
            SvcAttr::Af(v) => family = *v,
            SvcAttr::Protocol(v) => proto = *v,
            SvcAttr::Addr(v) => addr = Some(*v),
            SvcAttr::Port(v) => port = Some(*v),
            SvcAttr::SchedName(s) => sched = s.clone(),
            _ => {}
        }
    }
    let key = match (addr, port) {
        (Some(a), Some(p)) => parse_inet_addr(family, &a).map(|ip| SocketAddr::new(ip, p)),
        _ => None,
    };
    Some(ServiceInfo {
        key: key.filter(|_| proto != 0),
        protocol: proto,
        scheduler: sched,
    })
}

/// Whether a listed service is TCP.
pub fn is_tcp(s: &ServiceInfo) -> bool {
    s.protocol == IPPROTO_TCP
}

/// Reads a destination (address, forwarding method value) out of a `GET_DEST` reply.
pub fn dest_info(m: &IpvsMessage, service_af: u16) -> Option<(SocketAddr, u32)> {
    let attrs = m.attrs.iter().find_map(|a| match a {
        CmdAttr::Dest(d) => Some(d),
        _ => None,
    })?;
    let (mut addr, mut port, mut fwd, mut family) = (None, None, 0, service_af);
    for a in attrs {
        match a {
            DestAttr::Addr(v) => addr = Some(*v),
            DestAttr::Port(v) => port = Some(*v),
            DestAttr::FwdMethod(v) => fwd = *v,
            DestAttr::AddrFamily(v) => family = *v,
            _ => {}
        }
    }
    let ip = parse_inet_addr(family, &addr?)?;
    Some((SocketAddr::new(ip, port?), fwd))
}

/// The address family number of a service key (for [`dest_info`]).
pub fn family_of(key: &SocketAddr) -> u16 {
    af(&key.ip())
}

#[cfg(test)]
mod tests;
