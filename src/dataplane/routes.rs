//! Host routes to multihop BGP peers that the node cannot reach otherwise (Equinix Metal's
//! 169.254.255.1/2 sit behind the gateway): when the best route to a peer is only the default
//! route, vipr adds `peer/32 via <default gateway>` (rtnetlink, protocol 0x56 so it is
//! recognisable as vipr's), and removes exactly the routes it added at exit.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

use super::nl;
use crate::error::DataplaneError;

/// A route as far as vipr cares: destination and gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    dst: IpNet,
    gateway: Option<IpAddr>,
    oif: Option<u32>,
    ours: bool,
}

fn addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn parse(m: &RouteMessage, marker: u8) -> Option<Route> {
    if m.header.table != RouteHeader::RT_TABLE_MAIN {
        return None;
    }
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = addr(d),
            RouteAttribute::Gateway(g) => gateway = addr(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    let dst = match (dst, m.header.address_family) {
        (Some(d), _) => IpNet::new(d, m.header.destination_prefix_length).ok()?,
        (None, AddressFamily::Inet) => "0.0.0.0/0".parse().ok()?,
        (None, AddressFamily::Inet6) => "::/0".parse().ok()?,
        _ => return None,
    };
    Some(Route {
        dst,
        gateway,
        oif,
        ours: m.header.protocol == RouteProtocol::Other(marker),
    })
}

/// Manages vipr's host routes to peers.
#[derive(Clone)]
pub struct RouteManager {
    handle: Handle,
    /// The route protocol marking this instance's routes (`ip route ... proto 86`).
    marker: u8,
}

impl RouteManager {
    /// Opens a netlink connection; routes are marked with `marker`.
    pub fn new(marker: u8) -> std::io::Result<RouteManager> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(RouteManager { handle, marker })
    }

    /// Every route of one family, as the kernel sends them.
    async fn dump(&self, v6: bool) -> Result<Vec<RouteMessage>, DataplaneError> {
        let msg = if v6 {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
        };
        self.handle
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .map_err(nl("route dump"))
    }

    async fn routes(&self, v6: bool) -> Result<Vec<Route>, DataplaneError> {
        Ok(self
            .dump(v6)
            .await?
            .iter()
            .filter_map(|m| parse(m, self.marker))
            .collect())
    }

    /// Makes `peer` reachable: if only the default route covers it, adds a host route via the
    /// default gateway. Returns whether a route was added (and must be removed at exit).
    pub async fn ensure_peer_route(&self, peer: IpAddr) -> Result<bool, DataplaneError> {
        let routes = self.routes(peer.is_ipv6()).await?;
        let best = routes
            .iter()
            .filter(|r| r.dst.contains(&peer))
            .max_by_key(|r| r.dst.prefix_len());
        let Some(best) = best else {
            return Err(DataplaneError::Netlink {
                context: format!("route to {peer}"),
                reason: "no route, not even a default route".into(),
            });
        };
        if best.dst.prefix_len() > 0 {
            return Ok(false); // on-link or routed already (or our own host route)
        }
        let Some(gw) = best.gateway else {
            return Ok(false);
        };
        let mut msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(peer, if peer.is_ipv4() { 32 } else { 128 })
            .and_then(|b| b.gateway(gw))
            .map_err(|e| DataplaneError::Netlink {
                context: format!("route to {peer}"),
                reason: e.to_string(),
            })?
            .protocol(RouteProtocol::Other(self.marker))
            .build();
        if let Some(oif) = best.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(nl(&format!("add route {peer} via {gw}")))?;
        Ok(true)
    }

    /// Removes vipr's host route to `peer`, if there is one.
    pub async fn remove_peer_route(&self, peer: IpAddr) -> Result<(), DataplaneError> {
        let host = IpNet::from(peer);
        let ours = self.dump(peer.is_ipv6()).await?.into_iter();
        for m in ours.filter(|m| parse(m, self.marker).is_some_and(|r| r.ours && r.dst == host)) {
            self.handle
                .route()
                .del(m)
                .execute()
                .await
                .map_err(nl(&format!("delete route {peer}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node whose only way out is a default route via 10.55.0.1: a multihop peer behind it
    /// gets a host route via that gateway, on-link and routed peers do not, and the route is
    /// removed again.
    #[test]
    fn host_route_to_a_peer_behind_the_default_gateway() {
        let lab = testbed::Lab::new(1);
        let node = &lab.nodes[0];
        node.sh("ip route add default via 10.55.0.1 && ip route add 198.51.100.0/24 via 10.55.0.1");
        let out = node.enter(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let m = RouteManager::new(crate::instance::DEFAULT_MARKER).unwrap();
                let peer: IpAddr = "169.254.255.1".parse().unwrap();
                let added = m.ensure_peer_route(peer).await.unwrap();
                let again = m.ensure_peer_route(peer).await.unwrap();
                let on_link = m
                    .ensure_peer_route("10.55.0.1".parse().unwrap())
                    .await
                    .unwrap();
                let routed = m
                    .ensure_peer_route("198.51.100.7".parse().unwrap())
                    .await
                    .unwrap();
                (added, again, on_link, routed)
            })
        });
        assert_eq!(out, (true, false, false, false));
        let shown = node.sh("ip route show 169.254.255.1");
        assert!(
            shown.contains("via 10.55.0.1") && shown.contains("proto 86"),
            "{shown}"
        );
        node.enter(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let m = RouteManager::new(crate::instance::DEFAULT_MARKER).unwrap();
                m.remove_peer_route("169.254.255.1".parse().unwrap())
                    .await
                    .unwrap();
            })
        });
        assert_eq!(node.sh("ip route show 169.254.255.1").trim(), "");
        assert!(
            node.sh("ip route show default").contains("via 10.55.0.1"),
            "the default route is not touched"
        );
    }
}
