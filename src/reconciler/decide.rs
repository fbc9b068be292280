//! One VIP's decision ([`Reconciler::decide`]): whether it is served here, on which
//! interface, as an address or a local route, and its host route with the attributes of
//! its sets; and the status view of it.

use std::net::IpAddr;
use std::sync::Arc;

use bgp::RouteAttrs;

use super::{Reconciler, Settings};
use crate::config::{Mode, VipSettings};
use crate::model::{HeldBack, NodeAddr, VipSource, VipState};
use crate::route_attrs;

impl Reconciler {
    /// Decides one VIP again.
    pub(super) fn decide(&mut self, ip: IpAddr) {
        self.decided += 1;
        let Some(c) = &self.settings else {
            self.verdicts.remove(&ip);
            return;
        };
        let v = if self.shutting_down {
            None
        } else {
            self.verdict(c, ip)
        };
        let v = v.map(|r| r.and_then(|()| self.interface(c, ip)));
        match v {
            Some(Ok(iface)) => {
                let route = self.as_route(c, ip);
                let a = self
                    .placed(c, ip)
                    .then(|| node_addr(&c.vips, ip, iface, route));
                self.verdicts.insert(ip, Ok(a));
            }
            Some(Err(e)) => {
                self.verdicts.insert(ip, Err(e));
            }
            None => {
                self.verdicts.remove(&ip);
            }
        }
    }

    /// The interface of a served VIP (kube-vip v1.2.3 `pkg/instance/instance.go`): the
    /// control-plane and static VIPs on `vip_interface`; a Service's on the interface its
    /// `kube-vip.io/serviceInterface` names, else `vip_servicesinterface`, else
    /// `vip_interface`. The annotation is tenant input: an interface the configuration does
    /// not allow for Services (kube-vip allows any) holds the VIP back.
    fn interface(&self, c: &Settings, ip: IpAddr) -> Result<String, HeldBack> {
        let v = &c.vips;
        let sources = self
            .candidates
            .get(&ip)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if sources
            .iter()
            .any(|s| !matches!(s, VipSource::Service { .. }))
        {
            return Ok(v.interface.clone());
        }
        let default = v.services_interface.as_ref().unwrap_or(&v.interface);
        let named = sources.iter().find_map(|s| match s {
            VipSource::Service { namespace, name } => self
                .services
                .get(format!("{namespace}/{name}").as_str())
                .and_then(|s| s.interface.clone()),
            _ => None,
        });
        match named {
            None => Ok(default.clone()),
            Some(i)
                if i == v.interface
                    || Some(&i) == v.services_interface.as_ref()
                    || v.service_interfaces.contains(&i) =>
            {
                Ok(i)
            }
            Some(i) => Err(HeldBack::InterfaceNotAllowed(i)),
        }
    }

    /// Whether a served VIP is put on the node: always but for one that only Services ask
    /// for in BGP mode with `bgp_attach_ip_to_interface=false` (kube-vip v1.2.3
    /// `pkg/cluster/service.go` `shouldAddServiceIP`; its control-plane VIP is always added,
    /// `StartVipService`).
    fn placed(&self, c: &Settings, ip: IpAddr) -> bool {
        c.mode != Mode::Bgp
            || c.vips.bgp_attach
            || self
                .candidates
                .get(&ip)
                .is_some_and(|s| s.iter().any(|s| !matches!(s, VipSource::Service { .. })))
    }

    /// Whether a placed VIP goes on the node as a local route rather than an address: in BGP
    /// mode, one that only Services ask for, with a host-length `vip_subnet` (the
    /// control-plane and configured VIPs stay addresses, where users look for them; an ARP
    /// VIP must be an address of its interface to be answered with `arp_ignore=1`).
    fn as_route(&self, c: &Settings, ip: IpAddr) -> bool {
        let host = if ip.is_ipv4() {
            c.vips.subnet_v4 == 32
        } else {
            c.vips.subnet_v6 == 128
        };
        c.mode == Mode::Bgp
            && host
            && self
                .candidates
                .get(&ip)
                .is_some_and(|s| s.iter().all(|s| matches!(s, VipSource::Service { .. })))
    }

    /// The host route of `ip`: announced while it is served and on the node (or served and
    /// not to be put on the node).
    pub(super) fn route(&mut self, ip: IpAddr, served: bool, want: Option<&NodeAddr>) {
        let announce = match want {
            Some(a) => self.present.contains_key(a),
            None => served,
        };
        let attrs = if announce { self.route_attrs(ip) } else { None };
        // A route whose attributes changed is simply announced again: the speaker sends it
        // with the new ones (an implicit withdraw, RFC 4271 §3.1), the session stays up.
        let changed = match attrs {
            Some(attrs) => self.table.announce_shared([ipnet::IpNet::from(ip)], attrs) > 0,
            None => self.table.withdraw([ipnet::IpNet::from(ip)]) > 0,
        };
        self.table_dirty |= changed;
    }

    /// The attributes of `ip`'s route, shared with every route of the same sets.
    fn route_attrs(&mut self, ip: IpAddr) -> Option<Arc<RouteAttrs>> {
        let c = self.settings.as_ref()?;
        let names = self.attr_names(c, ip);
        if let Some(a) = self.attrs.get(&names) {
            return Some(a.clone());
        }
        let a = Arc::new(c.attr_sets.merged(&names, &c.attrs));
        self.attrs.insert(names, a.clone());
        Some(a)
    }

    /// The attribute sets of `ip`'s route ([`route_attrs::sets_of`]).
    fn attr_names(&self, c: &Settings, ip: IpAddr) -> Vec<String> {
        let sources = self
            .candidates
            .get(&ip)
            .map(Vec::as_slice)
            .unwrap_or_default();
        route_attrs::sets_of(ip, sources, &self.services, &c.services.pools, &c.attr_sets)
    }

    pub(super) fn update_state(&mut self, ip: IpAddr) {
        let Some(sources) = self.candidates.get(&ip) else {
            self.states.remove(&ip);
            return;
        };
        let held_back = match self.verdicts.get(&ip) {
            Some(Err(e)) => Some(e.clone()),
            None => None,
            Some(Ok(None)) => None,
            Some(Ok(Some(_))) => self.errors.get(&ip).cloned().map(HeldBack::AddFailed),
        };
        let state = VipState {
            address: ip,
            sources: sources.clone(),
            interface: self
                .present_for(ip)
                .next()
                .map(|(a, _)| a.interface.clone()),
            advertised: self.table.get(&ipnet::IpNet::from(ip)).is_some(),
            attribute_sets: match &self.settings {
                Some(c) if self.table.get(&ipnet::IpNet::from(ip)).is_some() => {
                    self.attr_names(c, ip)
                }
                _ => Vec::new(),
            },
            held_back,
        };
        if self.states.get(&ip).is_none_or(|s| **s != state) {
            self.states.insert(ip, Arc::new(state));
        }
    }
}

fn node_addr(v: &VipSettings, ip: IpAddr, interface: String, route: bool) -> NodeAddr {
    NodeAddr {
        route,
        ip,
        prefix_len: if ip.is_ipv4() {
            v.subnet_v4
        } else {
            v.subnet_v6
        },
        interface,
    }
}
