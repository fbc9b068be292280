//! Synchronous tests of the route attributes the reconciler core gives each VIP: per pool,
//! per Service annotation (only what the pool allows), per control-plane VIP, the global
//! ones for the rest, and a change of a pool's sets re-announcing its routes.

use std::collections::VecDeque;

use super::tests::{config, services, svc};
use super::*;

const SETS: &str = "base;communities=65000:1;prepend=2,backup;communities=65000:2;local-pref=50,\
                    cp;large-communities=65001:1:1;med=7,blackhole;communities=blackhole";

fn settings(base: &str) -> Settings {
    let sets = SETS.replace("base;communities=65000:1", base);
    config(&[
        ("svc_enable", "true"),
        ("vipr_static_vips", "203.0.113.9"),
        ("vipr_bgp_attribute_sets", &sets),
        ("vipr_control_plane_bgp_attributes", "cp"),
        (
            "vipr_pools",
            "198.51.100.0/24;name=web;bgp-attributes=base;bgp-allowed=backup",
        ),
    ])
}

/// Handles `input`, confirms every address asked for, and returns the last route table.
fn settle(r: &mut Reconciler, input: Input, table: &mut RouteTable) {
    let mut pending: VecDeque<Action> = r.handle(input).into();
    while let Some(a) = pending.pop_front() {
        match a {
            Action::Add(a) => pending.extend(r.handle(Input::Added {
                addr: a,
                owned: true,
            })),
            Action::Routes(t) => *table = t,
            _ => {}
        }
    }
}

fn attrs(t: &RouteTable, ip: &str) -> RouteAttrs {
    let ip: IpAddr = ip.parse().unwrap();
    (**t.get(&ipnet::IpNet::from(ip)).expect("advertised")).clone()
}

fn communities(a: &RouteAttrs) -> Vec<String> {
    a.communities.iter().map(|c| c.to_string()).collect()
}

#[test]
fn each_vip_carries_its_pools_its_services_or_its_own_attributes() {
    let mut r = Reconciler::new();
    let mut t = RouteTable::new();
    let asking = |n: &str, ip: &str, asked: Option<&str>| crate::model::ServiceVip {
        bgp_attributes: asked.and_then(crate::route_attrs::parse_annotation),
        ..svc(n, ip, false, false)
    };
    settle(
        &mut r,
        Input::Services(services(vec![
            asking("plain", "198.51.100.1", None),
            asking("chooser", "198.51.100.2", Some("backup")),
            asking("tenant", "198.51.100.3", Some("blackhole")),
            asking("outside", "10.9.9.9", Some("backup")),
        ])),
        &mut t,
    );
    settle(
        &mut r,
        Input::Settings(settings("base;communities=65000:1")),
        &mut t,
    );
    assert_eq!(t.len(), 6, "{t:?}");

    let plain = attrs(&t, "198.51.100.1");
    assert_eq!(communities(&plain), ["65000:1"], "the pool's set");
    assert_eq!(plain.as_path_prepend, 2);
    let chosen = attrs(&t, "198.51.100.2");
    assert_eq!(communities(&chosen), ["65000:2"], "a set the pool allows");
    assert_eq!((chosen.local_pref, chosen.as_path_prepend), (Some(50), 0));
    // A set the pool does not allow: advertised as if the Service had not asked.
    assert_eq!(attrs(&t, "198.51.100.3"), plain);
    // In no pool: nothing can be chosen, the global attributes.
    assert_eq!(communities(&attrs(&t, "10.9.9.9")), ["65000:100"]);
    let cp = attrs(&t, "192.0.2.10");
    assert_eq!(cp.large_communities[0].to_string(), "65001:1:1");
    assert_eq!((cp.med, cp.communities.len()), (Some(7), 0));
    assert_eq!(
        communities(&attrs(&t, "203.0.113.9")),
        ["65000:100"],
        "static"
    );
    let sets = |ip: &str| {
        r.status()[&ip.parse::<IpAddr>().unwrap()]
            .attribute_sets
            .clone()
    };
    assert_eq!(
        sets("198.51.100.3"),
        ["base"],
        "status: what the route carries"
    );
    assert_eq!(sets("198.51.100.2"), ["backup"]);
    assert_eq!(sets("192.0.2.10"), ["cp"]);
    assert!(sets("203.0.113.9").is_empty());

    // The pool's set changes (a reload): its routes carry the new one, nothing withdrawn.
    let before = t.clone();
    settle(
        &mut r,
        Input::Settings(settings("base;communities=65000:9")),
        &mut t,
    );
    let mut changed = Vec::new();
    RouteTable::diff(&before, &t, |p, was, now| {
        assert!(was.is_some() && now.is_some(), "{p} withdrawn or new");
        changed.push(p.to_string());
    });
    assert_eq!(changed, ["198.51.100.1/32", "198.51.100.3/32"]);
    assert_eq!(communities(&attrs(&t, "198.51.100.1")), ["65000:9"]);
}

#[test]
fn services_sharing_an_address_that_choose_differently_get_the_pools_sets() {
    let mut r = Reconciler::new();
    let mut t = RouteTable::new();
    let asking = |n: &str, asked: &str| crate::model::ServiceVip {
        bgp_attributes: crate::route_attrs::parse_annotation(asked),
        ..svc(n, "198.51.100.7", false, false)
    };
    settle(
        &mut r,
        Input::Settings(settings("base;communities=65000:1")),
        &mut t,
    );
    settle(
        &mut r,
        Input::Services(services(vec![asking("a", "backup"), asking("b", "base")])),
        &mut t,
    );
    assert_eq!(communities(&attrs(&t, "198.51.100.7")), ["65000:1"]);
    settle(
        &mut r,
        Input::Services(services(vec![asking("a", "backup"), asking("b", "backup")])),
        &mut t,
    );
    assert_eq!(communities(&attrs(&t, "198.51.100.7")), ["65000:2"]);
}
