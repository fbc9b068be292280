//! Synchronous tests of the reconciler core.

use std::collections::HashMap;

use super::*;
use crate::config::Layers;

pub(super) fn config(extra: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = [
        ("bgp_enable", "true"),
        ("cp_enable", "true"),
        ("address", "192.0.2.10"),
        ("bgp_peers", "192.0.2.1:65000::false"),
        ("vipr_communities", "65000:100"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let mut l = Layers::default();
    l.add_env(|n| env.get(n).cloned()).unwrap();
    Settings::from(&Config::from_layers(&l, "n").unwrap())
}

pub(super) fn addr(ip: &str) -> NodeAddr {
    let ip: IpAddr = ip.parse().unwrap();
    NodeAddr {
        ip,
        prefix_len: if ip.is_ipv4() { 32 } else { 128 },
        interface: "lo".into(),
        route: false,
    }
}

fn routes(actions: &[Action]) -> Option<Vec<String>> {
    actions.iter().rev().find_map(|a| match a {
        Action::Routes(t) => Some(t.iter().map(|(p, _)| p.to_string()).collect()),
        _ => None,
    })
}

#[test]
fn vip_is_added_then_advertised_with_configured_communities() {
    let mut r = Reconciler::new();
    let a = r.handle(Input::Settings(config(&[])));
    assert_eq!(a[0], Action::Add(addr("192.0.2.10")));
    assert_eq!(
        routes(&a),
        Some(vec![]),
        "nothing advertised before the address is on the node"
    );
    let a = r.handle(Input::Added {
        addr: addr("192.0.2.10"),
        owned: true,
    });
    assert_eq!(routes(&a), Some(vec!["192.0.2.10/32".to_string()]));
    let Action::Routes(t) = &a[0] else { panic!() };
    let (_, attrs) = t.iter().next().unwrap();
    assert_eq!(attrs.communities, vec!["65000:100".parse().unwrap()]);
    // Nothing changes on a repeated input.
    assert!(r.handle(Input::Settings(config(&[]))).is_empty());
}

#[test]
fn health_gates_the_control_plane_route() {
    let mut r = Reconciler::new();
    let c = config(&[(
        "control_plane_health_check_address",
        "http://127.0.0.1:6443/livez",
    )]);
    assert!(
        r.handle(Input::Settings(c))
            .iter()
            .all(|a| !matches!(a, Action::Add(_))),
        "not before the first success"
    );
    let a = r.handle(Input::Health(Health::Up));
    assert_eq!(a, vec![Action::Add(addr("192.0.2.10"))]);
    r.handle(Input::Added {
        addr: addr("192.0.2.10"),
        owned: true,
    });
    let a = r.handle(Input::Health(Health::Down));
    // Withdraw first, then remove the address.
    assert_eq!(a[0], Action::Routes(RouteTable::new()));
    assert_eq!(a[1], Action::Remove(addr("192.0.2.10")));
    assert!(!r.replaced(&addr("192.0.2.10")), "no longer served here");
    assert!(r
        .status()
        .values()
        .next()
        .unwrap()
        .held_back
        .as_ref()
        .unwrap()
        .to_string()
        .contains("health"));
}

#[test]
fn an_address_served_again_before_its_removal_stays() {
    let mut r = Reconciler::new();
    let c = config(&[(
        "control_plane_health_check_address",
        "http://127.0.0.1:6443/livez",
    )]);
    r.handle(Input::Settings(c));
    r.handle(Input::Health(Health::Up));
    r.handle(Input::Added {
        addr: addr("192.0.2.10"),
        owned: true,
    });
    let a = r.handle(Input::Health(Health::Down));
    assert!(a.contains(&Action::Remove(addr("192.0.2.10"))));
    assert!(!r.wanted(&addr("192.0.2.10")));
    // Up again while the address lingers (the shell has not removed it): announced again,
    // nothing to add, and the pending removal is not wanted any more.
    let a = r.handle(Input::Health(Health::Up));
    assert!(!a.iter().any(|x| matches!(x, Action::Add(_))), "{a:?}");
    assert_eq!(routes(&a), Some(vec!["192.0.2.10/32".to_string()]));
    assert!(r.wanted(&addr("192.0.2.10")));
    assert!(!r.wanted(&NodeAddr {
        prefix_len: 24,
        ..addr("192.0.2.10")
    }));
}

#[test]
fn addresses_not_added_by_vipr_are_never_removed() {
    let mut r = Reconciler::new();
    r.handle(Input::Settings(config(&[])));
    let a = r.handle(Input::Added {
        addr: addr("192.0.2.10"),
        owned: false,
    });
    assert_eq!(routes(&a), Some(vec!["192.0.2.10/32".to_string()]));
    let a = r.handle(Input::Shutdown);
    assert_eq!(a, vec![Action::Routes(RouteTable::new())]);
    assert!(r.owned().is_empty());
}

#[test]
fn stale_addresses_from_an_earlier_run_are_removed_and_wanted_ones_kept() {
    let mut r = Reconciler::new();
    r.handle(Input::Observed(vec![
        addr("192.0.2.10"),
        addr("198.51.100.9"),
    ]));
    let a = r.handle(Input::Settings(config(&[])));
    assert!(a.contains(&Action::Remove(addr("198.51.100.9"))));
    assert!(!r.replaced(&addr("198.51.100.9")), "not served at all");
    assert!(
        !a.iter().any(|x| matches!(x, Action::Add(_))),
        "192.0.2.10 is already there: {a:?}"
    );
    assert_eq!(routes(&a), Some(vec!["192.0.2.10/32".to_string()]));
}

#[test]
fn an_address_in_another_form_of_a_served_ip_is_replaced() {
    let mut r = Reconciler::new();
    let other = NodeAddr {
        prefix_len: 24,
        ..addr("192.0.2.10")
    };
    r.handle(Input::Observed(vec![other.clone()]));
    let a = r.handle(Input::Settings(config(&[])));
    assert!(a.contains(&Action::Remove(other.clone())), "{a:?}");
    assert!(a.contains(&Action::Add(addr("192.0.2.10"))), "{a:?}");
    assert!(r.replaced(&other), "the /32 takes its place");
    assert!(!r.replaced(&addr("192.0.2.10")), "the wanted form itself");
}

#[test]
fn static_and_dual_stack_vips_with_subnet() {
    let mut r = Reconciler::new();
    let c = config(&[
        ("address", "192.0.2.10,2001:db8::10"),
        ("vipr_static_vips", "198.51.100.5"),
        ("vip_subnet", "24,64"),
        ("vip_interface", "eth0"),
    ]);
    let a = r.handle(Input::Settings(c));
    let adds: Vec<String> = a
        .iter()
        .filter_map(|x| match x {
            Action::Add(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        adds,
        vec![
            "192.0.2.10/24 dev eth0",
            "198.51.100.5/24 dev eth0",
            "2001:db8::10/64 dev eth0"
        ]
    );
    for n in ["192.0.2.10", "198.51.100.5", "2001:db8::10"] {
        let ip: IpAddr = n.parse().unwrap();
        r.handle(Input::Added {
            addr: NodeAddr {
                ip,
                prefix_len: if ip.is_ipv4() { 24 } else { 64 },
                interface: "eth0".into(),
                route: false,
            },
            owned: true,
        });
    }
    // Routes are host routes regardless of the on-interface mask.
    let st = r.status();
    assert!(st.values().all(|v| v.advertised), "{st:?}");
    assert_eq!(r.table.len(), 3);
    assert!(r.table.get(&"2001:db8::10/128".parse().unwrap()).is_some());
}

#[test]
fn failed_add_is_retried_on_resync() {
    let mut r = Reconciler::new();
    r.handle(Input::Settings(config(&[("vip_interface", "eth9")])));
    let mut a = addr("192.0.2.10");
    a.interface = "eth9".into();
    assert!(r
        .handle(Input::AddFailed(a.clone(), "no such interface".into()))
        .is_empty());
    assert!(r
        .status()
        .values()
        .next()
        .unwrap()
        .held_back
        .as_ref()
        .unwrap()
        .to_string()
        .contains("no such interface"));
    let again = r.handle(Input::Observed(vec![]));
    assert_eq!(again, vec![Action::Add(a)]);
}

pub(super) fn svc(
    name: &str,
    ip: &str,
    local_only: bool,
    local_endpoint: bool,
) -> crate::model::ServiceVip {
    crate::model::ServiceVip {
        force_election: false,
        namespace: "default".into(),
        name: name.into(),
        ips: vec![ip.parse().unwrap()],
        refused: vec![],
        source: crate::model::AddressSource::Annotation,
        local_only,
        local_endpoint,
        endpoint_anywhere: true,
        without_endpoints: false,
        node_excluded: None,
        status_ips: vec![],
        interface: None,
        bgp_attributes: None,
    }
}

pub(super) fn services(v: Vec<crate::model::ServiceVip>) -> Services {
    v.into_iter().map(|s| (s.key(), Arc::new(s))).collect()
}

fn adds(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Add(n) => Some(n.ip.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn service_vips_follow_external_traffic_policy_and_are_shared() {
    let mut r = Reconciler::new();
    r.handle(Input::Settings(config(&[("svc_enable", "true")])));
    let a = r.handle(Input::Services(services(vec![
        svc("a", "198.51.100.1", false, false),
        svc("b", "198.51.100.2", true, false),
        svc("c", "198.51.100.1", false, false),
    ])));
    assert_eq!(
        adds(&a),
        vec!["198.51.100.1"],
        "ETP Local without a local endpoint is not served"
    );
    r.handle(Input::Added {
        addr: svc_on("198.51.100.1", "lo"),
        owned: true,
    });
    // One of the two Services sharing the VIP goes: the VIP stays.
    let a = r.handle(Input::Services(services(vec![svc(
        "c",
        "198.51.100.1",
        false,
        false,
    )])));
    assert!(a.is_empty(), "{a:?}");
    // The last one goes: withdrawn, then removed.
    let a = r.handle(Input::Services(services(vec![])));
    assert_eq!(
        a,
        vec![
            Action::Routes(RouteTable::new()),
            Action::Remove(svc_on("198.51.100.1", "lo"))
        ]
    );
    // A local endpoint appears for the ETP Local Service.
    let a = r.handle(Input::Services(services(vec![svc(
        "b",
        "198.51.100.2",
        true,
        true,
    )])));
    assert_eq!(adds(&a), vec!["198.51.100.2"]);
    let st = r.status();
    assert!(st.values().any(|v| v
        .sources
        .iter()
        .any(|s| s.to_string() == "service/default/b")));
}

#[test]
fn arp_mode_serves_only_with_the_lease() {
    let mut r = Reconciler::new();
    let c = config(&[
        ("bgp_enable", "false"),
        ("bgp_peers", ""),
        ("vip_arp", "true"),
        ("vip_leaderelection", "true"),
        ("vip_interface", "eth0"),
        ("svc_enable", "true"),
        ("svc_election", "true"),
    ]);
    assert!(
        adds(&r.handle(Input::Settings(c))).is_empty(),
        "followers never hold the VIP"
    );
    r.handle(Input::Services(services(vec![
        svc("a", "198.51.100.1", false, false),
        svc("b", "198.51.100.2", false, false),
    ])));
    let a = r.handle(Input::Leadership(Leadership {
        control_plane: true,
        services: false,
        per_service: ["default/b".to_string()].into_iter().collect(),
        ..Leadership::default()
    }));
    assert_eq!(adds(&a), vec!["192.0.2.10", "198.51.100.2"]);
    for ip in ["192.0.2.10", "198.51.100.2"] {
        let mut n = addr(ip);
        n.interface = "eth0".into();
        r.handle(Input::Added {
            addr: n,
            owned: true,
        });
    }
    let a = r.handle(Input::Leadership(Leadership::default()));
    let removed: Vec<String> = a
        .iter()
        .filter_map(|x| match x {
            Action::Remove(n) => Some(n.ip.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, vec!["192.0.2.10", "198.51.100.2"]);
    assert!(r
        .status()
        .values()
        .all(|v| v.held_back == Some(HeldBack::NotLeader)));
}

/// BGP mode with `vip_leaderelection=true`: every node serves the control-plane VIP (and
/// its Services without any Lease) unless `vipr_bgp_leader_only`, which makes the
/// control-plane VIP follow its Lease as in ARP mode (kube-vip v1.2.3
/// `pkg/manager/worker/bgp.go` `StartControlPlane`); Services stay on every node.
#[test]
fn bgp_mode_follows_the_lease_only_when_asked() {
    let mut r = Reconciler::new();
    let every = config(&[("vip_leaderelection", "true"), ("svc_enable", "true")]);
    assert_eq!(adds(&r.handle(Input::Settings(every))), vec!["192.0.2.10"]);
    let mut r = Reconciler::new();
    let leader_only = config(&[
        ("vip_leaderelection", "true"),
        ("vipr_bgp_leader_only", "true"),
        ("svc_enable", "true"),
    ]);
    assert!(adds(&r.handle(Input::Settings(leader_only))).is_empty());
    let a = r.handle(Input::Services(services(vec![svc(
        "a",
        "198.51.100.1",
        false,
        false,
    )])));
    assert_eq!(adds(&a), vec!["198.51.100.1"], "Services need no Lease");
    let a = r.handle(Input::Leadership(Leadership {
        control_plane: true,
        ..Leadership::default()
    }));
    assert_eq!(adds(&a), vec!["192.0.2.10"]);
}

/// `per_service_election_on_demand` (kube-vip v1.2.3 `pkg/manager/worker/common.go`
/// `GlobalLeader`): a Service annotated `kube-vip.io/forcePerServiceElection: "true"` follows
/// its own Lease, the others the services Lease.
#[test]
fn on_demand_services_follow_their_own_lease_the_others_the_shared_one() {
    let mut r = Reconciler::new();
    let c = config(&[
        ("bgp_enable", "false"),
        ("bgp_peers", ""),
        ("cp_enable", "false"),
        ("vip_arp", "true"),
        ("vip_leaderelection", "true"),
        ("vip_interface", "eth0"),
        ("svc_enable", "true"),
        ("per_service_election_on_demand", "true"),
    ]);
    r.handle(Input::Settings(c));
    let mut forced = svc("a", "198.51.100.1", false, false);
    forced.force_election = true;
    r.handle(Input::Services(services(vec![
        forced,
        svc("b", "198.51.100.2", false, false),
    ])));
    let a = r.handle(Input::Leadership(Leadership {
        services: true,
        ..Leadership::default()
    }));
    assert_eq!(
        adds(&a),
        vec!["198.51.100.2"],
        "the shared Lease covers b only"
    );
    let a = r.handle(Input::Leadership(Leadership {
        services: true,
        per_service: ["default/a".to_string()].into_iter().collect(),
        ..Leadership::default()
    }));
    assert_eq!(adds(&a), vec!["198.51.100.1"]);
}

/// `vip_preserve_on_leadership_loss` (kube-vip v1.2.3 `pkg/cluster/cluster.go`
/// `cleanupVIPs`, `clusterLeaderElection.go` `OnNewLeader`): on losing the Lease an IPv4 VIP
/// stays on the interface and is no longer announced, an IPv6 VIP goes at once; the kept
/// one is announced again when the Lease comes back, and removed once another node is seen
/// holding the Lease.
#[test]
fn preserved_vips_stay_quiet_until_another_holder_is_seen() {
    let mut r = Reconciler::new();
    let c = config(&[
        ("bgp_enable", "false"),
        ("bgp_peers", ""),
        ("vip_arp", "true"),
        ("vip_leaderelection", "true"),
        ("vip_interface", "eth0"),
        ("address", "192.0.2.10,2001:db8::10"),
        ("vip_preserve_on_leadership_loss", "true"),
    ]);
    r.handle(Input::Settings(c));
    let lead = Leadership {
        control_plane: true,
        ..Leadership::default()
    };
    r.handle(Input::Leadership(lead.clone()));
    let (v4, v6) = (
        NodeAddr {
            interface: "eth0".into(),
            ..addr("192.0.2.10")
        },
        NodeAddr {
            interface: "eth0".into(),
            ..addr("2001:db8::10")
        },
    );
    for a in [&v4, &v6] {
        r.handle(Input::Added {
            addr: a.clone(),
            owned: true,
        });
    }
    // Lost, nobody else seen: v4 kept quiet, v6 removed.
    let a = r.handle(Input::Leadership(Leadership::default()));
    assert!(a.contains(&Action::Quiet(v4.clone())), "{a:?}");
    assert!(a.contains(&Action::Remove(v6.clone())), "{a:?}");
    assert!(!a.contains(&Action::Remove(v4.clone())), "{a:?}");
    r.handle(Input::Removed(v6.clone()));
    // Back: announced again (no second add), v6 added again.
    let a = r.handle(Input::Leadership(lead));
    assert!(a.contains(&Action::Announce(v4.clone())), "{a:?}");
    assert!(a.contains(&Action::Add(v6.clone())), "{a:?}");
    assert!(!a.contains(&Action::Add(v4.clone())), "{a:?}");
    r.handle(Input::Added {
        addr: v6.clone(),
        owned: true,
    });
    // Lost again, and another node is seen holding the Lease: both go.
    r.handle(Input::Leadership(Leadership::default()));
    let mut taken = Leadership::default();
    taken.taken.control_plane = true;
    let a = r.handle(Input::Leadership(taken));
    assert!(a.contains(&Action::Remove(v4.clone())), "{a:?}");
    // Without the setting the IPv4 VIP goes at once.
    let mut r = Reconciler::new();
    r.handle(Input::Settings(config(&[
        ("bgp_enable", "false"),
        ("bgp_peers", ""),
        ("vip_arp", "true"),
        ("vip_leaderelection", "true"),
        ("vip_interface", "eth0"),
    ])));
    r.handle(Input::Leadership(Leadership {
        control_plane: true,
        ..Leadership::default()
    }));
    r.handle(Input::Added {
        addr: v4.clone(),
        owned: true,
    });
    let a = r.handle(Input::Leadership(Leadership::default()));
    assert!(a.contains(&Action::Remove(v4)), "{a:?}");
}

/// kube-vip v1.2.3 `shouldAddServiceIP`: in BGP mode with `bgp_attach_ip_to_interface=false`
/// a Service VIP is advertised without being put on the node; the control-plane VIP (and a
/// Service sharing it) still is. Switching the setting on a running node removes the
/// addresses vipr put there and keeps the routes.
#[test]
fn bgp_service_vips_are_only_advertised_without_bgp_attach() {
    let mut r = Reconciler::new();
    let c = config(&[
        ("svc_enable", "true"),
        ("bgp_attach_ip_to_interface", "false"),
    ]);
    r.handle(Input::Settings(c.clone()));
    r.handle(Input::Added {
        addr: addr("192.0.2.10"),
        owned: true,
    });
    let a = r.handle(Input::Services(services(vec![
        svc("a", "198.51.100.1", false, false),
        svc("cp", "192.0.2.10", false, false),
    ])));
    assert!(adds(&a).is_empty(), "{a:?}");
    assert_eq!(
        routes(&a),
        Some(vec![
            "192.0.2.10/32".to_string(),
            "198.51.100.1/32".to_string()
        ])
    );
    let st = r.status();
    let v = st.get(&"198.51.100.1".parse::<IpAddr>().unwrap()).unwrap();
    assert_eq!(
        (v.interface.as_deref(), v.advertised, &v.held_back),
        (None, true, &None)
    );
    // Switched on: put on the node, the route withdrawn until it is there.
    let on = config(&[("svc_enable", "true")]);
    let a = r.handle(Input::Settings(on.clone()));
    assert_eq!(adds(&a), vec!["198.51.100.1"]);
    r.handle(Input::Added {
        addr: svc_on("198.51.100.1", "lo"),
        owned: true,
    });
    // Switched off again: the address vipr put there goes, the route stays.
    let a = r.handle(Input::Settings(c));
    assert_eq!(a, vec![Action::Remove(svc_on("198.51.100.1", "lo"))]);
    r.handle(Input::Removed(svc_on("198.51.100.1", "lo")));
    assert_eq!(r.owned(), vec![addr("192.0.2.10")]);
    // The Service goes: its route is withdrawn.
    let a = r.handle(Input::Services(services(vec![svc(
        "cp",
        "192.0.2.10",
        false,
        false,
    )])));
    assert_eq!(routes(&a), Some(vec!["192.0.2.10/32".to_string()]));
    // ARP mode ignores the setting.
    let mut r = Reconciler::new();
    r.handle(Input::Settings(config(&[
        ("bgp_enable", "false"),
        ("bgp_peers", ""),
        ("vip_arp", "true"),
        ("vip_interface", "lo"),
        ("svc_enable", "true"),
        ("bgp_attach_ip_to_interface", "false"),
    ])));
    // (ARP Services are elected: this node holds the services Lease.)
    r.handle(Input::Leadership(Leadership {
        services: true,
        ..Leadership::default()
    }));
    let a = r.handle(Input::Services(services(vec![svc(
        "a",
        "198.51.100.1",
        false,
        false,
    )])));
    assert_eq!(adds(&a), vec!["198.51.100.1"]);
}

fn on(ip: &str, iface: &str) -> NodeAddr {
    NodeAddr {
        interface: iface.into(),
        ..addr(ip)
    }
}

/// A Service's VIP in BGP mode: a local route on `iface`.
fn svc_on(ip: &str, iface: &str) -> NodeAddr {
    NodeAddr {
        route: true,
        ..on(ip, iface)
    }
}

/// kube-vip v1.2.3 `pkg/instance/instance.go`: a Service's VIP goes on the interface of its
/// `kube-vip.io/serviceInterface`, else `vip_servicesinterface`, else `vip_interface`; the
/// control-plane VIP stays on `vip_interface`. vipr allows the annotation only the
/// interfaces the configuration names.
#[test]
fn service_vips_go_on_the_services_interface_or_an_allowed_annotated_one() {
    let mut r = Reconciler::new();
    let a = r.handle(Input::Settings(config(&[
        ("svc_enable", "true"),
        ("vip_servicesinterface", "svc0"),
        ("vipr_service_interfaces", "svc1"),
    ])));
    assert_eq!(
        a[0],
        Action::Add(addr("192.0.2.10")),
        "control plane on vip_interface"
    );
    let named = |n: &str, ip: &str, iface: Option<&str>| crate::model::ServiceVip {
        interface: iface.map(str::to_string),
        ..svc(n, ip, false, false)
    };
    let a = r.handle(Input::Services(services(vec![
        named("plain", "198.51.100.1", None),
        named("allowed", "198.51.100.2", Some("svc1")),
        named("lo", "198.51.100.3", Some("lo")),
        named("tenant", "198.51.100.4", Some("eth9")),
    ])));
    let added: Vec<NodeAddr> = a
        .iter()
        .filter_map(|a| match a {
            Action::Add(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        added,
        vec![
            svc_on("198.51.100.1", "svc0"),
            svc_on("198.51.100.2", "svc1"),
            svc_on("198.51.100.3", "lo"),
        ]
    );
    let st = r.status();
    let held = st
        .get(&"198.51.100.4".parse::<IpAddr>().unwrap())
        .unwrap()
        .held_back
        .clone();
    assert_eq!(held, Some(HeldBack::InterfaceNotAllowed("eth9".into())));
    // The annotation changes: the address moves.
    r.handle(Input::Added {
        addr: svc_on("198.51.100.1", "svc0"),
        owned: true,
    });
    let a = r.handle(Input::Services(services(vec![
        named("plain", "198.51.100.1", Some("svc1")),
        named("allowed", "198.51.100.2", Some("svc1")),
        named("lo", "198.51.100.3", Some("lo")),
        named("tenant", "198.51.100.4", Some("eth9")),
    ])));
    assert!(
        a.contains(&Action::Remove(svc_on("198.51.100.1", "svc0"))),
        "{a:?}"
    );
    assert!(
        a.contains(&Action::Add(svc_on("198.51.100.1", "svc1"))),
        "{a:?}"
    );
}

/// In BGP mode a VIP only Services ask for is a local route (the kernel inserts routes in
/// log time, addresses in time linear in the interface's); the control-plane VIP, a VIP a
/// Service shares with it, a `vip_subnet` wider than a host, and every ARP VIP stay
/// addresses.
#[test]
fn only_bgp_service_vips_with_host_prefixes_become_local_routes() {
    let routes_of = |extra: &[(&str, &str)]| {
        let mut r = Reconciler::new();
        let mut c = vec![("svc_enable", "true")];
        c.extend_from_slice(extra);
        let mut a = r.handle(Input::Settings(config(&c)));
        a.extend(r.handle(Input::Services(services(vec![
            svc("web", "198.51.100.1", false, false),
            svc("cp", "192.0.2.10", false, false),
        ]))));
        let mut v: Vec<(String, bool)> = a
            .iter()
            .filter_map(|a| match a {
                Action::Add(n) => Some((n.ip.to_string(), n.route)),
                _ => None,
            })
            .collect();
        v.sort();
        v
    };
    let s = |ip: &str, route| (ip.to_string(), route);
    assert_eq!(
        routes_of(&[]),
        vec![s("192.0.2.10", false), s("198.51.100.1", true)]
    );
    assert_eq!(
        routes_of(&[("vip_subnet", "24")]),
        vec![s("192.0.2.10", false), s("198.51.100.1", false)]
    );
    let arp = routes_of(&[
        ("bgp_enable", "false"),
        ("vip_arp", "true"),
        ("vip_interface", "eth0"),
        ("vip_leaderelection", "false"),
    ]);
    assert!(arp.contains(&s("192.0.2.10", false)), "{arp:?}");
    assert!(arp.iter().all(|(_, route)| !route), "{arp:?}");
}
