//! VIP addresses on node interfaces over rtnetlink. Every address vipr adds carries the
//! address protocol `IFA_PROTO = 0x56` ("V", Linux ≥ 5.18) and is also listed in a state file
//! (`/run/vipr/addresses`), so after a crash the next start finds and removes exactly its
//! own addresses. An address that was already present is used but never marked or removed.
//! IPv6 addresses are added with NODAD so they are usable at once.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::Handle;
use tracing::warn;

use super::nl;
use crate::error::DataplaneError;
use crate::vips::NodeAddr;

/// The IFA_PROTO value marking vipr's addresses.
pub const VIPR_PROTO: u8 = 0x56;

/// Adds, finds and removes vipr's addresses.
#[derive(Clone)]
pub struct AddrManager {
    handle: Handle,
    state_file: PathBuf,
    /// The kernel runs one dump at a time per netlink socket (EBUSY otherwise): the tasks
    /// sharing this manager take turns.
    dumping: Arc<tokio::sync::Mutex<()>>,
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
    /// Opens a netlink connection (its driver runs as a tokio task).
    pub fn new(state_dir: &Path) -> io::Result<AddrManager> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(AddrManager {
            handle,
            state_file: state_dir.join("addresses"),
            dumping: Arc::new(tokio::sync::Mutex::new(())),
        })
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

    async fn link_names(&self) -> Result<Vec<(u32, String)>, DataplaneError> {
        let _turn = self.dumping.lock().await;
        let mut out = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(l) = links.try_next().await.map_err(nl("link dump"))? {
            let name = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            if let Some(n) = name {
                out.push((l.header.index, n));
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
                        ours = *p == VIPR_PROTO
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
                    msg: m.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Every address on the node that vipr put there (by marker or state file).
    pub async fn owned(&self) -> Result<Vec<NodeAddr>, DataplaneError> {
        let recorded = self.read_state();
        let names = self.link_names().await?;
        let mut out = Vec::new();
        for k in self.dump(None).await? {
            let Some((_, iface)) = names.iter().find(|(i, _)| *i == k.index) else {
                continue;
            };
            let a = NodeAddr {
                ip: k.ip,
                prefix_len: k.prefix_len,
                interface: iface.clone(),
            };
            if k.ours || recorded.contains(&a) {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Puts an address on its interface. Returns whether vipr owns it (false when it was
    /// already there without vipr's marker).
    pub async fn add(&self, a: &NodeAddr) -> Result<bool, DataplaneError> {
        let index = self.link_index(&a.interface).await?;
        let mut req = self.handle.address().add(index, a.ip, a.prefix_len);
        let m = req.message_mut();
        m.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(
                VIPR_PROTO,
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

    /// Removes an address, but only if it is vipr's.
    pub async fn remove(&self, a: &NodeAddr) -> Result<(), DataplaneError> {
        let index = match self.link_index(&a.interface).await {
            Ok(i) => i,
            Err(DataplaneError::NoInterface(_)) => {
                self.record(a, false);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let recorded = self.read_state().contains(a);
        for k in self.dump(Some(index)).await? {
            if k.ip == a.ip && k.prefix_len == a.prefix_len && (k.ours || recorded) {
                match self.handle.address().del(k.msg).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
                    Err(e) => return Err(nl("address delete")(e)),
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

    /// The node's global addresses in kernel order, without vipr's own, each with whether it
    /// sits on a loopback interface. The caller picks a router id or next hop from them.
    pub async fn global_addrs(&self) -> Result<Vec<(IpAddr, bool)>, DataplaneError> {
        let loopbacks = self.loopback_links().await?;
        Ok(self
            .dump(None)
            .await?
            .into_iter()
            .filter(|k| !k.ours && !k.ip.is_loopback() && !is_link_local(&k.ip))
            .map(|k| (k.ip, loopbacks.contains(&k.index)))
            .collect())
    }

    async fn loopback_links(&self) -> Result<Vec<u32>, DataplaneError> {
        let _turn = self.dumping.lock().await;
        let mut out = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(l) = links.try_next().await.map_err(nl("link dump"))? {
            if l.header.flags.contains(LinkFlags::Loopback) {
                out.push(l.header.index);
            }
        }
        Ok(out)
    }

    fn read_state(&self) -> BTreeSet<NodeAddr> {
        let Ok(text) = std::fs::read_to_string(&self.state_file) else {
            return BTreeSet::new();
        };
        text.lines().filter_map(parse_state_line).collect()
    }

    /// Records or forgets an address in the state file. A failure (read-only or full disk)
    /// is logged: the IFA_PROTO marker still identifies the address.
    fn record(&self, a: &NodeAddr, present: bool) {
        let mut set = self.read_state();
        let changed = if present {
            set.insert(a.clone())
        } else {
            set.remove(a)
        };
        if !changed {
            return;
        }
        let text: String = set
            .iter()
            .map(|a| format!("{} {}/{}\n", a.interface, a.ip, a.prefix_len))
            .collect();
        let tmp = self.state_file.with_extension("tmp");
        let r = std::fs::create_dir_all(self.state_file.parent().unwrap_or(Path::new("/")))
            .and_then(|_| std::fs::write(&tmp, text))
            .and_then(|_| std::fs::rename(&tmp, &self.state_file));
        if let Err(e) = r {
            warn!(file = %self.state_file.display(), error = %e, "cannot record VIP addresses; relying on the IFA_PROTO marker");
        }
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn parse_state_line(l: &str) -> Option<NodeAddr> {
    let (iface, net) = l.trim().split_once(' ')?;
    let (ip, len) = net.split_once('/')?;
    Some(NodeAddr {
        ip: ip.parse().ok()?,
        prefix_len: len.parse().ok()?,
        interface: iface.to_string(),
    })
}
