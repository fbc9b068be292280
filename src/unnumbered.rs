//! BGP unnumbered: finds the router at the other end of each interface a peer is given as
//! (`unnumbered:IFACE` in `bgp_peers`) from its IPv6 Router Advertisements (RFC 4861 §6.1.2:
//! ICMPv6 type 134, hop limit 255, link-local source), which FRR sends on every interface
//! with a `neighbor IFACE interface`. A Router Solicitation (§6.3.7) asks for one at once
//! when a listener starts and every 4 s while nothing is heard. vipr advertises too (every
//! 10 s, Router Lifetime 0): FRR learns its neighbour's link-local address only from RAs.
//!
//! Owns the map interface → router link-local address, published on a watch channel that
//! the peers task (`peers.rs`) follows: a new or changed address is a new session (the
//! speaker keys peers by address), level-triggered through the same reconcile as every
//! other peer change.
//!
//! ```text
//!  raw ICMPv6 socket per interface (SO_BINDTODEVICE, filter: type 134)
//!      │ (interface, source, hop limit, bytes)      ──> RS to ff02::2, RA to ff02::1
//!      v
//!  follow task: router_of() checks, Routers core ──watch<Arc<LinkRouters>>──> peers task
//! ```

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::BgpSettings;

/// The router found on each interface of an unnumbered peer.
pub type LinkRouters = BTreeMap<String, Ipv6Addr>;

/// RFC 4861 §4.2 Router Advertisement.
const ROUTER_ADVERTISEMENT: u8 = 134;
/// RFC 4861 §4.1 Router Solicitation.
const ROUTER_SOLICITATION: u8 = 133;
/// RFC 4861 §10 RTR_SOLICITATION_INTERVAL: between solicitations while nothing is heard.
const SOLICIT_EVERY: Duration = Duration::from_secs(4);
/// Between our own Router Advertisements: FRR's interval on interfaces with unnumbered
/// neighbours (10 s).
const ADVERTISE_EVERY: Duration = Duration::from_secs(10);
/// Routers heard within this long count as present: three of FRR's 10 s RA intervals.
pub const WINDOW: Duration = Duration::from_secs(30);
/// Linux `ICMP6_FILTER` (include/uapi/linux/icmpv6.h); libc does not define it.
const ICMP6_FILTER: libc::c_int = 1;

/// The router that sent an ICMPv6 message, if it is a valid Router Advertisement (RFC 4861
/// §6.1.2: hop limit 255, code 0, at least 16 octets, link-local source; the kernel checked
/// the checksum).
pub fn router_of(from: Ipv6Addr, hop_limit: Option<u8>, icmp: &[u8]) -> Option<Ipv6Addr> {
    let ok = icmp.len() >= 16
        && icmp[0] == ROUTER_ADVERTISEMENT
        && icmp[1] == 0
        && hop_limit == Some(255)
        && from.is_unicast_link_local();
    ok.then_some(from)
}

/// What changed the routers known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A Router Advertisement from `router` on `interface`.
    Heard {
        /// The interface.
        interface: String,
        /// Its link-local source.
        router: Ipv6Addr,
        /// When.
        at: Instant,
    },
    /// Time passed (routers not heard within [`WINDOW`] stop counting).
    Tick(Instant),
    /// No peer is on this interface any more.
    Forget(String),
}

/// What the owner reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The router of an interface is now this one (or none).
    Chosen {
        /// The interface.
        interface: String,
        /// The router's link-local address.
        router: Option<Ipv6Addr>,
    },
    /// Several routers are heard on one interface (unnumbered wants a point-to-point link):
    /// the lowest address is taken.
    Several {
        /// The interface.
        interface: String,
        /// Every router heard within the window.
        routers: Vec<Ipv6Addr>,
    },
}

/// Which router each interface peers with: the lowest address among the routers heard
/// within [`WINDOW`] (one on a point-to-point link; stable, not the last speaker, when
/// there are several), else the last one chosen (a router whose advertisements stopped
/// keeps its session until another is heard: BGP and BFD tell whether it is alive). A
/// router whose link-local address changes is followed once the old address has been
/// silent for the window, or at once when the new address is lower.
#[derive(Debug, Default)]
pub struct Routers {
    heard: BTreeMap<String, BTreeMap<Ipv6Addr, Instant>>,
    chosen: LinkRouters,
}

impl Routers {
    /// The routers chosen now.
    pub fn chosen(&self) -> &LinkRouters {
        &self.chosen
    }

    /// Applies one input.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Heard {
                interface,
                router,
                at,
            } => {
                let h = self.heard.entry(interface.clone()).or_default();
                let new = !h.contains_key(&router);
                h.insert(router, at);
                if new && h.len() > 1 {
                    out.push(Output::Several {
                        interface: interface.clone(),
                        routers: h.keys().copied().collect(),
                    });
                }
                self.expire(at);
                self.choose(&interface, &mut out);
            }
            Input::Tick(now) => {
                self.expire(now);
                let ifaces: Vec<String> = self.heard.keys().cloned().collect();
                for i in ifaces {
                    self.choose(&i, &mut out);
                }
            }
            Input::Forget(interface) => {
                self.heard.remove(&interface);
                if self.chosen.remove(&interface).is_some() {
                    out.push(Output::Chosen {
                        interface,
                        router: None,
                    });
                }
            }
        }
        out
    }

    fn expire(&mut self, now: Instant) {
        for h in self.heard.values_mut() {
            h.retain(|_, at| now.saturating_duration_since(*at) < WINDOW);
        }
    }

    fn choose(&mut self, interface: &str, out: &mut Vec<Output>) {
        let Some(best) = self
            .heard
            .get(interface)
            .and_then(|h| h.keys().next().copied())
        else {
            return;
        };
        if self.chosen.get(interface) != Some(&best) {
            self.chosen.insert(interface.to_string(), best);
            out.push(Output::Chosen {
                interface: interface.to_string(),
                router: Some(best),
            });
        }
    }
}

/// The interfaces of the configured unnumbered peers.
fn interfaces(bgp: &BgpSettings) -> Vec<String> {
    let mut v: Vec<String> = bgp
        .peers
        .iter()
        .filter_map(|p| p.interface.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Follows the BGP section's unnumbered peers: one listener per interface, the [`Routers`]
/// core, and the chosen routers published on `tx`.
pub async fn follow(
    mut bgp: watch::Receiver<Arc<BgpSettings>>,
    tx: watch::Sender<Arc<LinkRouters>>,
    cancel: CancellationToken,
) {
    let (heard_tx, mut heard_rx) = mpsc::channel::<(String, Ipv6Addr)>(64);
    let mut listeners: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
    let mut core = Routers::default();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        let want = interfaces(&bgp.borrow_and_update());
        let mut outs = Vec::new();
        for gone in listeners
            .keys()
            .filter(|i| !want.contains(i))
            .cloned()
            .collect::<Vec<_>>()
        {
            if let Some(h) = listeners.remove(&gone) {
                h.abort();
            }
            outs.extend(core.handle(Input::Forget(gone)));
        }
        for i in want {
            listeners
                .entry(i.clone())
                .or_insert_with(|| tokio::spawn(listen(i, heard_tx.clone())));
        }
        loop {
            publish(&core, outs.drain(..), &tx);
            tokio::select! {
                _ = cancel.cancelled() => {
                    for (_, h) in listeners {
                        h.abort();
                    }
                    return;
                }
                r = bgp.changed() => match r {
                    Ok(()) => break,
                    Err(_) => {
                        for (_, h) in listeners { h.abort(); }
                        return;
                    }
                },
                Some((interface, router)) = heard_rx.recv() => {
                    outs = core.handle(Input::Heard { interface, router, at: Instant::now() });
                }
                _ = tick.tick() => outs = core.handle(Input::Tick(Instant::now())),
            }
        }
    }
}

fn publish(
    core: &Routers,
    outs: impl Iterator<Item = Output>,
    tx: &watch::Sender<Arc<LinkRouters>>,
) {
    let mut changed = false;
    for o in outs {
        match o {
            Output::Chosen { interface, router } => {
                changed = true;
                match router {
                    Some(r) => info!(%interface, router = %r, "BGP unnumbered: router found"),
                    None => debug!(%interface, "BGP unnumbered: interface no longer used"),
                }
            }
            Output::Several { interface, routers } => warn!(
                %interface, ?routers,
                "BGP unnumbered: several routers advertise on this interface (a point-to-point link is expected); peering with the lowest address"
            ),
        }
    }
    if changed {
        tx.send_replace(Arc::new(core.chosen().clone()));
    }
}

/// Listens on one interface for as long as it runs: (re)opens the socket when the
/// interface is missing or fails, solicits while nothing is heard.
async fn listen(interface: String, heard: mpsc::Sender<(String, Ipv6Addr)>) {
    let mut reported = false;
    loop {
        match open(&interface) {
            Ok((sock, index)) => {
                reported = false;
                let e = receive(&interface, &sock, index, &heard).await;
                debug!(%interface, error = %e, "BGP unnumbered: listener restarts");
            }
            Err(e) if !reported => {
                warn!(%interface, error = %e, "BGP unnumbered: cannot listen for router advertisements (retrying)");
                reported = true;
            }
            Err(_) => {}
        }
        if heard.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A raw ICMPv6 socket on `interface` that receives Router Advertisements only, with their
/// hop limit, and sends with hop limit 255 (RFC 4861 §4.1).
fn open(interface: &str) -> io::Result<(AsyncFd<Socket>, u32)> {
    let index = bgp::socket::if_index(interface)?;
    let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    sock.bind_device(Some(interface.as_bytes()))?;
    // struct icmp6_filter: a set bit blocks its type.
    let mut filter = [u32::MAX; 8];
    let t = ROUTER_ADVERTISEMENT as usize;
    filter[t >> 5] &= !(1u32 << (t & 31));
    // SAFETY: `filter` is the 32-octet icmp6_filter, alive across the call.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr() as *const libc::c_void,
            std::mem::size_of_val(&filter) as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    bgp::socket::set_bfd_ttl(&sock, true, true)?;
    sock.set_multicast_hops_v6(255)?;
    // Our own advertisements must not come back as a router's.
    sock.set_multicast_loop_v6(false)?;
    sock.set_multicast_if_v6(index)?;
    sock.set_nonblocking(true)?;
    // SAFETY: a socket2 Socket owns its descriptor, keeps it open until dropped (with the
    // AsyncFd) and always returns that same descriptor.
    let fd = unsafe { AsyncFd::register(sock) }.map_err(io::Error::from)?;
    Ok((fd, index))
}

/// RFC 4861 §4.1 Router Solicitation to all routers (ff02::2): type 133, code 0,
/// checksum (the kernel fills it in), reserved.
fn solicit(sock: &Socket, index: u32) -> io::Result<()> {
    send(sock, index, 2, &[ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0])
}

/// RFC 4861 §4.2 Router Advertisement to all nodes (ff02::1) with Router Lifetime 0 (not
/// a default router, §6.2.3: nobody routes through it) and no options: how an FRR router
/// learns our link-local address for its `neighbor IFACE interface` (zebra passes the
/// source of RAs to bgpd, which accepts and opens sessions only with it), as two FRR
/// routers do with each other.
fn advertise(sock: &Socket, index: u32) -> io::Result<()> {
    let mut ra = [0u8; 16];
    ra[0] = ROUTER_ADVERTISEMENT;
    send(sock, index, 1, &ra)
}

fn send(sock: &Socket, index: u32, group: u16, icmp: &[u8]) -> io::Result<()> {
    let to = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, group), 0, 0, index);
    sock.send_to(icmp, &SocketAddr::V6(to).into()).map(|_| ())
}

async fn receive(
    interface: &str,
    sock: &AsyncFd<Socket>,
    index: u32,
    heard: &mpsc::Sender<(String, Ipv6Addr)>,
) -> io::Error {
    let mut buf = [0u8; 1500];
    let mut found = false;
    let mut next_solicit = Instant::now();
    let mut next_advert = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_advert {
            if let Err(e) = advertise(sock.get_ref(), index) {
                debug!(%interface, error = %e, "BGP unnumbered: router advertisement not sent");
            }
            next_advert = now + ADVERTISE_EVERY;
        }
        if !found && now >= next_solicit {
            if let Err(e) = solicit(sock.get_ref(), index) {
                debug!(%interface, error = %e, "BGP unnumbered: router solicitation not sent");
            }
            next_solicit = now + SOLICIT_EVERY;
        }
        let wake = if found {
            next_advert
        } else {
            next_advert.min(next_solicit)
        };
        let ready = tokio::select! {
            r = sock.readable() => r,
            _ = tokio::time::sleep_until(wake) => continue,
        };
        let mut guard = match ready {
            Ok(g) => g,
            Err(e) => return e,
        };
        match guard.try_io(|s| bgp::socket::recv_with_ttl(s.get_ref(), &mut buf)) {
            Ok(Ok((n, SocketAddr::V6(from), hops))) => {
                if let Some(r) = router_of(*from.ip(), hops, &buf[..n]) {
                    found = true;
                    if heard.send((interface.to_string(), r)).await.is_err() {
                        return io::Error::other("owner gone");
                    }
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return e,
            Err(_would_block) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ll(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A Router Advertisement as FRR sends it: type 134, code 0, checksum, hop limit 64,
    /// flags, lifetime 1800 s, reachable and retrans timers 0.
    const RA: [u8; 16] = [
        134, 0, 0x12, 0x34, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn only_valid_router_advertisements_name_a_router() {
        assert_eq!(
            router_of(ll("fe80::1"), Some(255), &RA),
            Some(ll("fe80::1"))
        );
        assert_eq!(router_of(ll("fe80::1"), Some(254), &RA), None, "hop limit");
        assert_eq!(
            router_of(ll("fe80::1"), None, &RA),
            None,
            "hop limit unknown"
        );
        assert_eq!(router_of(ll("2001:db8::1"), Some(255), &RA), None, "source");
        assert_eq!(
            router_of(ll("fe80::1"), Some(255), &RA[..15]),
            None,
            "short"
        );
        let mut rs = RA;
        rs[0] = ROUTER_SOLICITATION;
        assert_eq!(router_of(ll("fe80::1"), Some(255), &rs), None, "type");
        let mut code = RA;
        code[1] = 1;
        assert_eq!(router_of(ll("fe80::1"), Some(255), &code), None, "code");
    }

    fn heard(i: &str, r: &str, at: Instant) -> Input {
        Input::Heard {
            interface: i.into(),
            router: ll(r),
            at,
        }
    }

    fn chosen(i: &str, r: Option<&str>) -> Output {
        Output::Chosen {
            interface: i.into(),
            router: r.map(ll),
        }
    }

    #[test]
    fn the_router_of_each_interface_is_followed() {
        let t0 = Instant::now();
        let mut c = Routers::default();
        assert_eq!(
            c.handle(heard("eth1", "fe80::a", t0)),
            vec![chosen("eth1", Some("fe80::a"))]
        );
        assert_eq!(
            c.handle(heard("eth1", "fe80::a", t0 + Duration::from_secs(10))),
            vec![]
        );
        assert_eq!(
            c.handle(heard("eth2", "fe80::a", t0)),
            vec![chosen("eth2", Some("fe80::a"))]
        );
        // The router of eth1 comes back with a higher address: followed once the old one
        // has been silent for the window.
        let t1 = t0 + Duration::from_secs(20);
        let outs = c.handle(heard("eth1", "fe80::b", t1));
        assert!(matches!(&outs[..], [Output::Several { .. }]), "{outs:?}");
        assert_eq!(c.chosen()["eth1"], ll("fe80::a"));
        assert_eq!(c.handle(Input::Tick(t0 + Duration::from_secs(39))), vec![]);
        assert_eq!(
            c.handle(Input::Tick(t0 + Duration::from_secs(40))),
            vec![chosen("eth1", Some("fe80::b"))],
            "eth2's router is silent too, and stays"
        );
        // A lower address takes over at once.
        assert_eq!(
            c.handle(heard("eth1", "fe80::1", t0 + Duration::from_secs(41))),
            vec![
                Output::Several {
                    interface: "eth1".into(),
                    routers: vec![ll("fe80::1"), ll("fe80::b")]
                },
                chosen("eth1", Some("fe80::1"))
            ]
        );
        // Silence keeps the last choice; forgetting the interface drops it.
        assert_eq!(c.handle(Input::Tick(t0 + Duration::from_secs(600))), vec![]);
        assert_eq!(c.chosen()["eth1"], ll("fe80::1"));
        assert_eq!(
            c.handle(Input::Forget("eth1".into())),
            vec![chosen("eth1", None)]
        );
        assert_eq!(c.chosen().len(), 1);
    }
}
