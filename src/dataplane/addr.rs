//! VIP addresses on node interfaces over rtnetlink. Every address vipr adds carries its
//! instance's marker as address protocol (`IFA_PROTO`, 0x56 "V" for the default instance,
//! Linux ≥ 5.18) and is also listed in a state file (`/run/vipr/addresses`), so after a crash
//! the next start finds and removes exactly its own addresses. Where the kernel reports the
//! marker, the marker alone decides what is vipr's (another instance's addresses, or an entry
//! planted in the file, are never taken); the file decides only on older kernels. An address
//! that was already present is used but never marked or removed. IPv6 addresses are added
//! with NODAD so they are usable at once.
//!
//! The state is kept in memory and appended to the file by [`AddrManager::flush`] once per
//! batch of changes, one line per change (the marker covers the moment between), so adding
//! or removing one of 10 000 addresses costs one netlink request and one line, not a
//! rewrite of the file or a dump of the interface.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{AddressMessageBuilder, Handle, RouteMessageBuilder};
use tracing::warn;

use super::nl;
use crate::error::DataplaneError;
use crate::model::NodeAddr;

/// Adds, finds and removes vipr's addresses.
#[derive(Clone)]
pub struct AddrManager {
    handle: Handle,
    state_file: PathBuf,
    /// The IFA_PROTO value marking this instance's addresses.
    marker: u8,
    /// The kernel reports IFA_PROTO (Linux ≥ 5.18): the marker is the truth, the file only
    /// a journal.
    kernel_marks: bool,
    /// The kernel runs one dump at a time per netlink socket (EBUSY otherwise): the tasks
    /// sharing this manager take turns.
    dumping: Arc<tokio::sync::Mutex<()>>,
    /// vipr's addresses as recorded (loaded from the file once) and the changes not yet
    /// written.
    state: Arc<std::sync::Mutex<Recorded>>,
    /// Interface indexes by name, looked up once (forgotten when the kernel says the
    /// interface is gone, so a recreated one is found again).
    indexes: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
}

/// An address as the kernel reports it.
#[derive(Debug, Clone)]
struct KernelAddr {
    ip: IpAddr,
    prefix_len: u8,
    index: u32,
    ours: bool,
    msg: AddressMessage,
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

impl AddrManager {
    /// Opens a netlink connection (its driver runs as a tokio task); addresses are marked
    /// with `marker`.
    pub fn new(state_dir: &Path, marker: u8) -> io::Result<AddrManager> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(AddrManager {
            handle,
            state_file: state_dir.join("addresses"),
            marker,
            kernel_marks: kernel_at_least(5, 18),
            dumping: Arc::new(tokio::sync::Mutex::new(())),
            state: Arc::default(),
            indexes: Arc::default(),
        })
    }

    /// The index of an interface, from the cache or looked up.
    async fn index_of(&self, name: &str) -> Result<u32, DataplaneError> {
        if let Some(i) = self.lock_indexes().get(name) {
            return Ok(*i);
        }
        let i = self.link_index(name).await?;
        self.lock_indexes().insert(name.to_string(), i);
        Ok(i)
    }

    fn lock_indexes(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u32>> {
        self.indexes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The index of an interface by name.
    pub async fn link_index(&self, name: &str) -> Result<u32, DataplaneError> {
        let _turn = self.dumping.lock().await;
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok(l.header.index),
            Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => {
                Err(DataplaneError::NoInterface(name.to_string()))
            }
            Err(e) => Err(nl("link lookup")(e)),
        }
    }

    /// Every link: index, name, whether it is a loopback.
    async fn links(&self) -> Result<Vec<Link>, DataplaneError> {
        let _turn = self.dumping.lock().await;
        let mut out = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(l) = links.try_next().await.map_err(nl("link dump"))? {
            let name = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            if let Some(name) = name {
                out.push(Link {
                    index: l.header.index,
                    name,
                    loopback: l.header.flags.contains(LinkFlags::Loopback),
                });
            }
        }
        Ok(out)
    }

    async fn dump(&self, index: Option<u32>) -> Result<Vec<KernelAddr>, DataplaneError> {
        let _turn = self.dumping.lock().await;
        let mut req = self.handle.address().get();
        if let Some(i) = index {
            req = req.set_link_index_filter(i);
        }
        let mut s = req.execute();
        let mut out = Vec::new();
        while let Some(m) = s.try_next().await.map_err(nl("address dump"))? {
            let mut ip = None;
            let mut ours = false;
            for a in &m.attributes {
                match a {
                    AddressAttribute::Address(a) if ip.is_none() => ip = Some(*a),
                    AddressAttribute::Local(a) => ip = Some(*a),
                    AddressAttribute::Protocol(AddressProtocol::Other(p)) => {
                        ours = *p == self.marker
                    }
                    _ => {}
                }
            }
            if let Some(ip) = ip {
                out.push(KernelAddr {
                    ip,
                    prefix_len: m.header.prefix_len,
                    index: m.header.index,
                    ours,
                    msg: m,
                });
            }
        }
        Ok(out)
    }

    /// One pass over the node's links and addresses (at start and at every resync): its
    /// global addresses (as [`AddrManager::global_addrs`]) and every address vipr put there
    /// (by marker or state file).
    pub async fn scan(&self) -> Result<(Vec<(IpAddr, bool)>, Vec<NodeAddr>), DataplaneError> {
        let links = self.links().await?;
        let dump = self.dump(None).await?;
        let routes = self.local_routes().await?;
        let mut owned = self.owned_of(&dump, &links);
        for (ip, prefix_len, index) in routes {
            if let Some(link) = links.iter().find(|l| l.index == index) {
                let a = NodeAddr {
                    ip,
                    prefix_len,
                    interface: link.name.clone(),
                    route: true,
                };
                self.record(&a, true);
                owned.push(a);
            }
        }
        Ok((globals_of(&dump, &links), owned))
    }

    /// vipr's addresses in a dump: marked, or recorded in the state file.
    fn owned_of(&self, dump: &[KernelAddr], links: &[Link]) -> Vec<NodeAddr> {
        let recorded = self.read_state();
        let mut out = Vec::new();
        for k in dump {
            let Some(link) = links.iter().find(|l| l.index == k.index) else {
                continue;
            };
            let a = NodeAddr {
                ip: k.ip,
                prefix_len: k.prefix_len,
                interface: link.name.clone(),
                route: false,
            };
            if k.ours || recorded.contains(&a) {
                out.push(a);
            }
        }
        // Found by their marker: recorded too, so removing them needs no dump.
        for a in &out {
            self.record(a, true);
        }
        out
    }

    /// Puts an address on its interface. Returns whether vipr owns it (false when it was
    /// already there without vipr's marker).
    pub async fn add(&self, a: &NodeAddr) -> Result<bool, DataplaneError> {
        match self.add_at(a, self.index_of(&a.interface).await?).await {
            // The interface was recreated under another index: look it up again.
            Err(DataplaneError::Netlink { .. }) | Err(DataplaneError::NoInterface(_))
                if self.lock_indexes().remove(&a.interface).is_some() =>
            {
                self.add_at(a, self.index_of(&a.interface).await?).await
            }
            r => r,
        }
    }

    async fn add_at(&self, a: &NodeAddr, index: u32) -> Result<bool, DataplaneError> {
        if a.route {
            return self.add_route_at(a, index).await;
        }
        let mut req = self.handle.address().add(index, a.ip, a.prefix_len);
        let m = req.message_mut();
        m.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(
                self.marker,
            )));
        if a.ip.is_ipv6() {
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => {
                self.record(a, true);
                Ok(true)
            }
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                let present = self.dump(Some(index)).await?;
                let ours =
                    present.iter().any(|k| k.ip == a.ip && k.ours) || self.read_state().contains(a);
                Ok(ours)
            }
            Err(e) => Err(nl("address add")(e)),
        }
    }

    /// The local route that stands for `a` (`local IP/LEN dev IF table local proto MARKER
    /// scope host`).
    fn local_route(&self, a: &NodeAddr, index: u32) -> Result<RouteMessage, DataplaneError> {
        Ok(RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(a.ip, a.prefix_len)
            .map_err(|e| DataplaneError::Netlink {
                context: format!("local route {a}"),
                reason: e.to_string(),
            })?
            .table_id(LOCAL_TABLE.into())
            .kind(RouteType::Local)
            .scope(RouteScope::Host)
            .protocol(RouteProtocol::Other(self.marker))
            .output_interface(index)
            .build())
    }

    async fn add_route_at(&self, a: &NodeAddr, index: u32) -> Result<bool, DataplaneError> {
        let msg = self.local_route(a, index)?;
        match self.handle.route().add(msg).execute().await {
            Ok(()) => {
                self.record(a, true);
                Ok(true)
            }
            // The address is local already (an address of some interface, or a route of
            // another instance): used, never taken.
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                let ours = self
                    .local_routes()
                    .await?
                    .iter()
                    .any(|(ip, len, i)| *ip == a.ip && *len == a.prefix_len && *i == index);
                Ok(ours || self.read_state().contains(a))
            }
            Err(e) => Err(nl("local route add")(e)),
        }
    }

    /// vipr's local routes (this instance's marker) of both families: address, prefix
    /// length, interface index.
    async fn local_routes(&self) -> Result<Vec<(IpAddr, u8, u32)>, DataplaneError> {
        let _turn = self.dumping.lock().await;
        let mut out = Vec::new();
        for msg in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut s = self.handle.route().get(msg).execute();
            while let Some(m) = s.try_next().await.map_err(nl("route dump"))? {
                if m.header.table != LOCAL_TABLE
                    || m.header.kind != RouteType::Local
                    || m.header.protocol != RouteProtocol::Other(self.marker)
                {
                    continue;
                }
                let mut dst = None;
                let mut oif = None;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(v)) => {
                            dst = Some(IpAddr::V4(*v))
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(v)) => {
                            dst = Some(IpAddr::V6(*v))
                        }
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                if let (Some(ip), Some(i)) = (dst, oif) {
                    out.push((ip, m.header.destination_prefix_length, i));
                }
            }
        }
        Ok(out)
    }

    /// Removes an address, but only if it is vipr's.
    pub async fn remove(&self, a: &NodeAddr) -> Result<(), DataplaneError> {
        let index = match self.index_of(&a.interface).await {
            Ok(i) => i,
            Err(DataplaneError::NoInterface(_)) => {
                self.record(a, false);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if a.route {
            // The kernel deletes only a route of this protocol: never another's.
            let msg = self.local_route(a, index)?;
            return match self.handle.route().del(msg).execute().await {
                Ok(()) => {
                    self.record(a, false);
                    Ok(())
                }
                Err(e) if matches!(errno(&e), Some(libc::ESRCH) | Some(libc::ENOENT)) => {
                    self.record(a, false);
                    Ok(())
                }
                Err(e) => Err(nl("local route delete")(e)),
            };
        }
        let del = |msg| async {
            match self.handle.address().del(msg).execute().await {
                Ok(()) => Ok(()),
                Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
                Err(e) => Err(nl("address delete")(e)),
            }
        };
        if self.with_state(|r| r.set().contains(a)) {
            // Recorded as vipr's (added by this process, found by marker, or on a kernel
            // without markers read from the file): deleted by address, without a dump.
            let msg = match a.ip {
                IpAddr::V4(ip) => AddressMessageBuilder::<Ipv4Addr>::new()
                    .index(index)
                    .address(ip, a.prefix_len)
                    .build(),
                IpAddr::V6(ip) => AddressMessageBuilder::<Ipv6Addr>::new()
                    .index(index)
                    .address(ip, a.prefix_len)
                    .build(),
            };
            del(msg).await?;
        } else {
            for k in self.dump(Some(index)).await? {
                if k.ip == a.ip && k.prefix_len == a.prefix_len && k.ours {
                    del(k.msg).await?;
                }
            }
        }
        self.record(a, false);
        Ok(())
    }

    /// The first IPv4 address of an interface (router id from `bgp_routerinterface`).
    pub async fn ipv4_of(&self, iface: &str) -> Result<Option<Ipv4Addr>, DataplaneError> {
        Ok(self
            .addrs_of(iface)
            .await?
            .into_iter()
            .find_map(|ip| match ip {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            }))
    }

    /// The addresses of an interface, without vipr's own, global scope first.
    pub async fn addrs_of(&self, iface: &str) -> Result<Vec<IpAddr>, DataplaneError> {
        let index = self.link_index(iface).await?;
        let mut v: Vec<IpAddr> = self
            .dump(Some(index))
            .await?
            .into_iter()
            .filter(|k| !k.ours)
            .map(|k| k.ip)
            .filter(|ip| !ip.is_loopback() && !is_link_local(ip))
            .collect();
        v.dedup();
        Ok(v)
    }

    /// The addresses (as [`AddrManager::addrs_of`]) of the interface that holds `ip`
    /// (kube-vip's `GetInterfaceByIP`), empty when no interface does.
    pub async fn addrs_beside(&self, ip: IpAddr) -> Result<Vec<IpAddr>, DataplaneError> {
        let dump = self.dump(None).await?;
        let Some(index) = dump.iter().find(|k| k.ip == ip).map(|k| k.index) else {
            return Ok(Vec::new());
        };
        let mut v: Vec<IpAddr> = dump
            .into_iter()
            .filter(|k| k.index == index && !k.ours)
            .map(|k| k.ip)
            .filter(|ip| !ip.is_loopback() && !is_link_local(ip))
            .collect();
        v.dedup();
        Ok(v)
    }

    /// The node's global addresses in kernel order, without vipr's own, each with whether it
    /// sits on a loopback interface. The caller picks a router id or next hop from them.
    pub async fn global_addrs(&self) -> Result<Vec<(IpAddr, bool)>, DataplaneError> {
        let links = self.links().await?;
        Ok(globals_of(&self.dump(None).await?, &links))
    }

    /// The recorded set, loaded (replayed) from the file the first time.
    fn with_state<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if g.set.is_none() {
            // Where the kernel marks addresses the file is not read: the marker is the truth.
            let text = if self.kernel_marks {
                String::new()
            } else {
                crate::statedir::read(&self.state_file).unwrap_or_default()
            };
            let mut set = BTreeSet::new();
            for l in text.lines() {
                match l.strip_prefix("- ") {
                    Some(gone) => parse_state_line(gone).map(|a| set.remove(&a)),
                    None => parse_state_line(l).map(|a| set.insert(a)),
                };
            }
            g.lines = text.lines().count();
            g.set = Some(set);
        }
        f(&mut g)
    }

    fn read_state(&self) -> BTreeSet<NodeAddr> {
        self.with_state(|r| r.set().clone())
    }

    /// Records or forgets an address (written out by the next [`AddrManager::flush`]).
    fn record(&self, a: &NodeAddr, present: bool) {
        self.with_state(|r| {
            let set = r.set();
            let changed = if present {
                set.insert(a.clone())
            } else {
                set.remove(a)
            };
            if changed {
                r.pending.push((present, a.clone()));
            }
        });
    }

    /// Writes what changed since the last flush to the state file: appended as one line per
    /// change (`- ` for a removal), so a change costs its own line whatever the number of
    /// addresses; the file is rewritten whole when the journal has grown to twice the set.
    /// A failure (read-only or full disk) is logged: the IFA_PROTO marker still identifies
    /// the addresses.
    pub fn flush(&self) {
        self.write_state(false);
    }

    /// Rewrites the state file whole (at shutdown: a clean exit leaves only what is left).
    pub fn compact(&self) {
        self.write_state(true);
    }

    fn write_state(&self, whole: bool) {
        let (text, append) = self.with_state(|r| {
            if r.pending.is_empty() && !whole {
                return (None, false);
            }
            let pending = std::mem::take(&mut r.pending);
            let line = |a: &NodeAddr| {
                let kind = if a.route { " route" } else { "" };
                format!("{} {}/{}{kind}\n", a.interface, a.ip, a.prefix_len)
            };
            let size = r.set().len();
            if whole || r.lines + pending.len() > 2 * size + 64 {
                r.lines = size;
                (Some(r.set().iter().map(line).collect::<String>()), false)
            } else {
                r.lines += pending.len();
                let text = pending
                    .iter()
                    .map(|(present, a)| {
                        if *present {
                            line(a)
                        } else {
                            format!("- {}", line(a))
                        }
                    })
                    .collect::<String>();
                (Some(text), true)
            }
        });
        let Some(text) = text else { return };
        let r = if append {
            crate::statedir::append(&self.state_file, &text)
        } else {
            crate::statedir::replace(&self.state_file, &text)
        };
        if let Err(e) = r {
            // The next flush rewrites the file whole.
            self.with_state(|r| r.lines = usize::MAX / 2);
            warn!(file = %self.state_file.display(), error = %e, "cannot record VIP addresses; relying on the IFA_PROTO marker");
        }
    }
}

/// vipr's addresses as recorded, and the state file's journal.
#[derive(Debug, Default)]
struct Recorded {
    /// Loaded from the file on first use.
    set: Option<BTreeSet<NodeAddr>>,
    /// Changes not yet written, in order (added, address).
    pending: Vec<(bool, NodeAddr)>,
    /// Lines in the file.
    lines: usize,
}

impl Recorded {
    fn set(&mut self) -> &mut BTreeSet<NodeAddr> {
        self.set.get_or_insert_with(BTreeSet::new)
    }
}

/// A link as the kernel reports it.
struct Link {
    index: u32,
    name: String,
    loopback: bool,
}

/// The node's global addresses in a dump, without vipr's own, each with whether it sits on a
/// loopback interface.
fn globals_of(dump: &[KernelAddr], links: &[Link]) -> Vec<(IpAddr, bool)> {
    dump.iter()
        .filter(|k| !k.ours && !k.ip.is_loopback() && !is_link_local(&k.ip))
        .map(|k| {
            let lo = links.iter().any(|l| l.index == k.index && l.loopback);
            (k.ip, lo)
        })
        .collect()
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Whether the running kernel is at least `major.minor` (from `uname -r`).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy();
    let mut n = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (n.next().unwrap_or(0), n.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// The kernel's local routing table (`RT_TABLE_LOCAL`).
const LOCAL_TABLE: u8 = 255;

/// A state file line: `IFACE IP/LEN`, with ` route` for a local route.
fn parse_state_line(l: &str) -> Option<NodeAddr> {
    let mut w = l.split_whitespace();
    let (iface, net) = (w.next()?, w.next()?);
    let route = match w.next() {
        None => false,
        Some("route") => true,
        Some(_) => return None,
    };
    let (ip, len) = net.split_once('/')?;
    Some(NodeAddr {
        ip: ip.parse().ok()?,
        prefix_len: len.parse().ok()?,
        interface: iface.to_string(),
        route,
    })
}
