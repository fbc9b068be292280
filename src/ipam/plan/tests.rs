//! Synchronous tests of the allocator core.

use super::*;
use crate::ipam::pools::parse_pool;
use crate::ipam::state::Allocator;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn holder(name: &str) -> Holder {
    Holder {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}").into(),
    }
}

fn svc(name: &str, requested: &[&str]) -> Svc {
    Svc {
        holder: holder(name),
        load_balancer: true,
        selected: true,
        requested: requested
            .iter()
            .map(|r| r.parse::<IpAddr>().map_err(|_| r.to_string()))
            .collect(),
        families: Families::Single(None),
        ports: vec![("TCP".into(), 80)],
        sharing_key: None,
        backend_key: String::new(),
        allocated_from: None,
        created: String::new(),
    }
}

fn claim(a: &str, holders: &[&str]) -> Claim {
    Claim {
        ip: ip(a),
        pool: "web".into(),
        holders: holders.iter().map(|h| holder(h)).collect(),
        resource_version: "7".into(),
        created: None,
    }
}

fn pools(entries: &[&str]) -> Pools {
    Pools {
        configured: entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_pool(e, i + 1).unwrap())
            .collect(),
        ..Pools::default()
    }
}

fn local() -> Local {
    Local {
        node: "node0".into(),
        node_addrs: [ip("10.55.0.11")].into(),
        peers: [ip("10.55.0.1")].into(),
        control_plane: [ip("192.0.2.10")].into(),
    }
}

/// Everything one allocator run decided and wants written.
#[derive(Debug, Default)]
struct Plan {
    decisions: BTreeMap<String, Decision>,
    writes: Vec<Write>,
}

fn collect(r: crate::ipam::state::Replanned) -> Plan {
    let mut p = Plan::default();
    for (_, key, d, w) in r.services {
        if let Some(d) = d {
            p.decisions.insert(key, d);
        }
        p.writes.extend(w);
    }
    for (_, w) in r.claims {
        p.writes.extend(w);
    }
    p
}

fn allocator(services: &[Svc], cs: &[Claim], p: &Pools, watched: Option<&str>) -> Allocator {
    let mut a = Allocator::new(p.clone(), local(), watched.map(str::to_string));
    for s in services {
        a.set_service(&s.holder.uid, Some(std::sync::Arc::new(s.clone())));
    }
    for c in cs {
        a.set_claim(c.ip, Some(c.clone()));
    }
    a
}

fn run(services: &[Svc], cs: &[Claim], p: &Pools) -> Plan {
    collect(allocator(services, cs, p, None).plan(SystemTime::UNIX_EPOCH))
}

fn d<'a>(p: &'a Plan, name: &str) -> &'a Decision {
    &p.decisions[&format!("default/{name}")]
}

fn events(p: &Plan) -> Vec<(&'static str, String)> {
    p.writes
        .iter()
        .filter_map(|w| match w {
            Write::Event(e) => Some((e.reason, e.message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn without_pools_requests_are_served_but_never_what_is_never_a_vip() {
    let s = [
        svc("ok", &["198.51.100.10"]),
        svc("dhcp", &["0.0.0.0"]),
        svc("cp", &["192.0.2.10"]),
        svc("router", &["10.55.0.1"]),
        svc("node", &["10.55.0.11"]),
        svc("text", &["banana"]),
        svc("none", &[]),
    ];
    let p = run(&s, &[], &Pools::default());
    assert_eq!(d(&p, "ok").served, vec![ip("198.51.100.10")]);
    assert_eq!(
        d(&p, "dhcp").refused,
        vec![(ip("0.0.0.0"), Refusal::Unspecified)]
    );
    assert_eq!(d(&p, "cp").refused[0].1, Refusal::ControlPlaneVip);
    assert_eq!(d(&p, "router").refused[0].1, Refusal::PeerAddress);
    assert_eq!(
        d(&p, "node").refused[0].1,
        Refusal::NodeAddress("node0".into())
    );
    assert!(d(&p, "text").served.is_empty());
    assert!(matches!(d(&p, "none").pending, Some(Pending::NoPool(_))));
    let ev = events(&p);
    assert!(
        ev.iter()
            .any(|(r, m)| *r == "AddressRefused" && m.contains("DHCP")),
        "{ev:?}"
    );
    assert!(ev.iter().any(|(_, m)| m.contains("node node0")), "{ev:?}");
    assert!(ev.iter().any(|(r, _)| *r == "AllocationFailed"));
    assert!(
        !p.writes.iter().any(|w| matches!(w, Write::Claim { .. })),
        "no claims without pools"
    );
}

#[test]
fn a_request_inside_a_pool_is_claimed_then_served() {
    let p = pools(&["198.51.100.0/24;name=web"]);
    let s = [svc("web", &["198.51.100.10"])];
    let plan = run(&s, &[], &p);
    assert_eq!(d(&plan, "web").pending, Some(Pending::Claiming));
    assert!(
        d(&plan, "web").served.is_empty(),
        "not before its claim exists"
    );
    assert_eq!(
        plan.writes,
        vec![Write::Claim {
            ip: ip("198.51.100.10"),
            pool: "web".into(),
            holder: holder("web")
        }]
    );
    let plan = run(&s, &[claim("198.51.100.10", &["web"])], &p);
    assert_eq!(d(&plan, "web").served, vec![ip("198.51.100.10")]);
    assert_eq!(d(&plan, "web").pending, None);
    assert!(plan.writes.is_empty(), "{:?}", plan.writes);
}

#[test]
fn a_request_outside_every_pool_or_taken_is_refused_with_a_reason() {
    let p = pools(&["198.51.100.0/24;namespaces=apps"]);
    let plan = run(&[svc("web", &["198.51.100.10", "8.8.8.8"])], &[], &p);
    let r = &d(&plan, "web").refused;
    assert_eq!(r.len(), 2);
    assert!(r
        .iter()
        .all(|(_, r)| matches!(r, Refusal::OutsidePools(ns) if ns == "default")));
    let p = pools(&["198.51.100.0/24"]);
    let plan = run(
        &[svc("a", &[]), svc("b", &["198.51.100.10"])],
        &[claim("198.51.100.10", &["a"])],
        &p,
    );
    assert_eq!(
        d(&plan, "b").refused,
        vec![(ip("198.51.100.10"), Refusal::Taken("default/a".into()))]
    );
    let ev = events(&plan);
    assert!(
        ev.iter()
            .any(|(_, m)| m.contains("already allocated to default/a")),
        "{ev:?}"
    );
}

#[test]
fn sharing_by_pool_and_by_metallb_key_without_port_clash() {
    let c = [claim("198.51.100.10", &["a"])];
    let a = svc("a", &["198.51.100.10"]);
    let mut b = svc("b", &["198.51.100.10"]);
    b.ports = vec![("TCP".into(), 443)];
    // The pool allows sharing and the ports differ: b joins.
    let plan = run(
        &[a.clone(), b.clone()],
        &c,
        &pools(&["198.51.100.0/24;allow-share=true"]),
    );
    assert!(plan.writes.contains(&Write::Holders {
        ip: ip("198.51.100.10"),
        resource_version: "7".into(),
        holders: vec![holder("a"), holder("b")],
    }));
    // Same port: refused even though the pool allows sharing.
    let mut b80 = b.clone();
    b80.ports = vec![("TCP".into(), 80)];
    let plan = run(
        &[a.clone(), b80],
        &c,
        &pools(&["198.51.100.0/24;allow-share=true"]),
    );
    assert!(matches!(d(&plan, "b").refused[0].1, Refusal::Taken(_)));
    // MetalLB's key: same key and backend, no port clash, in a pool that does not share.
    let (mut ka, mut kb) = (a.clone(), b.clone());
    ka.sharing_key = Some("k".into());
    kb.sharing_key = Some("k".into());
    let plan = run(&[ka.clone(), kb.clone()], &c, &pools(&["198.51.100.0/24"]));
    assert!(plan
        .writes
        .iter()
        .any(|w| matches!(w, Write::Holders { holders, .. } if holders.len() == 2)));
    kb.backend_key = "app=x".into(); // Local with a selector: another backend
    let plan = run(&[ka, kb], &c, &pools(&["198.51.100.0/24"]));
    assert!(matches!(d(&plan, "b").refused[0].1, Refusal::Taken(_)));
    // Both holders are served once the claim names them.
    let shared = claim("198.51.100.10", &["a", "b"]);
    let plan = run(
        &[a, b],
        &[shared],
        &pools(&["198.51.100.0/24;allow-share=true"]),
    );
    assert_eq!(d(&plan, "a").served, d(&plan, "b").served);
}

#[test]
fn allocation_takes_the_first_free_address_and_says_so() {
    let p = pools(&["192.0.2.8/29;name=small", "198.51.100.0/24;name=big"]);
    let c = [claim("192.0.2.8", &["x"]), claim("192.0.2.9", &["y"])];
    let mut x = svc("x", &[]);
    x.holder.uid = "uid-x".into();
    let services = [
        svc("x", &["192.0.2.8"]),
        svc("y", &["192.0.2.9"]),
        svc("new", &[]),
        svc("req", &["192.0.2.11"]),
    ];
    let plan = run(&services, &c, &p);
    // 192.0.2.10 is the control-plane VIP, .11 is requested by another Service.
    assert!(
        plan.writes.contains(&Write::Claim {
            ip: ip("192.0.2.12"),
            pool: "small".into(),
            holder: holder("new")
        }),
        "{:?}",
        plan.writes
    );
    // Once claimed: served, annotated, and an Event.
    let mut c2 = c.to_vec();
    c2.push(Claim {
        pool: "small".into(),
        ..claim("192.0.2.12", &["new"])
    });
    let plan = run(&[svc("new", &[])], &c2, &p);
    assert_eq!(d(&plan, "new").served, vec![ip("192.0.2.12")]);
    assert!(d(&plan, "new").allocated);
    assert!(plan.writes.contains(&Write::Annotate {
        holder: holder("new"),
        allocation: Some((vec![ip("192.0.2.12")], "small".into())),
    }));
    assert!(events(&plan)
        .iter()
        .any(|(r, m)| *r == "IPAllocated" && m.contains("192.0.2.12 from pool small")));
}

#[test]
fn services_allocated_in_one_run_get_different_addresses_in_creation_order() {
    let p = pools(&["198.51.100.0/24"]);
    let mut s: Vec<Svc> = (0..5).map(|i| svc(&format!("s{i}"), &[])).collect();
    // Created in reverse order of their names: the oldest gets the first address.
    for (i, x) in s.iter_mut().enumerate() {
        x.created = format!("2026-12-02T07:00:0{}Z", 5 - i);
    }
    let plan = run(&s, &[], &p);
    let claimed: Vec<(String, IpAddr)> = plan
        .writes
        .iter()
        .filter_map(|w| match w {
            Write::Claim { ip, holder, .. } => Some((holder.name.to_string(), *ip)),
            _ => None,
        })
        .collect();
    assert_eq!(
        claimed,
        vec![
            ("s4".into(), ip("198.51.100.0")),
            ("s3".into(), ip("198.51.100.1")),
            ("s2".into(), ip("198.51.100.2")),
            ("s1".into(), ip("198.51.100.3")),
            ("s0".into(), ip("198.51.100.4")),
        ]
    );
}

#[test]
fn an_exhausted_pool_leaves_the_service_pending_with_a_warning() {
    let p = pools(&["198.51.100.1-198.51.100.2"]);
    let c = [claim("198.51.100.1", &["a"]), claim("198.51.100.2", &["b"])];
    let plan = run(
        &[
            svc("a", &["198.51.100.1"]),
            svc("b", &["198.51.100.2"]),
            svc("c", &[]),
        ],
        &c,
        &p,
    );
    assert!(matches!(d(&plan, "c").pending, Some(Pending::Exhausted(_))));
    assert!(events(&plan).iter().any(|(r, _)| *r == "AllocationFailed"));
    // A pool that auto-assigns nothing gives nothing either.
    let plan = run(
        &[svc("c", &[])],
        &[],
        &pools(&["198.51.100.0/24;auto-assign=false"]),
    );
    assert!(matches!(d(&plan, "c").pending, Some(Pending::NoPool(_))));
}

#[test]
fn dual_stack_follows_the_family_policy() {
    let p = pools(&["198.51.100.0/24", "2001:db8:5::/120"]);
    let mut s = svc("d", &[]);
    s.families = Families::RequireDual(false);
    let plan = run(&[s.clone()], &[], &p);
    let claimed: Vec<IpAddr> = plan
        .writes
        .iter()
        .filter_map(|w| match w {
            Write::Claim { ip, .. } => Some(*ip),
            _ => None,
        })
        .collect();
    assert_eq!(claimed, vec![ip("2001:db8:5::"), ip("198.51.100.0")]);
    let c = [claim("2001:db8:5::", &["d"]), claim("198.51.100.0", &["d"])];
    let plan = run(&[s.clone()], &c, &p);
    assert_eq!(
        d(&plan, "d").served,
        vec![ip("2001:db8:5::"), ip("198.51.100.0")],
        "the primary family first"
    );
    // Required but one family has no pool: nothing served.
    let v4only = pools(&["198.51.100.0/24"]);
    let plan = run(&[s.clone()], &[claim("198.51.100.0", &["d"])], &v4only);
    assert!(d(&plan, "d").served.is_empty());
    assert!(matches!(d(&plan, "d").pending, Some(Pending::NoPool(_))));
    // Preferred: the family there is.
    s.families = Families::PreferDual(true);
    let plan = run(&[s], &[claim("198.51.100.0", &["d"])], &v4only);
    assert_eq!(d(&plan, "d").served, vec![ip("198.51.100.0")]);
    // Single IPv6.
    let mut six = svc("six", &[]);
    six.families = Families::Single(Some(false));
    let plan = run(&[six], &[], &p);
    assert!(plan
        .writes
        .iter()
        .any(|w| matches!(w, Write::Claim { ip, .. } if ip.is_ipv6())));
}

#[test]
fn two_claims_for_one_service_keep_the_lowest() {
    let p = pools(&["198.51.100.0/24"]);
    let c = [claim("198.51.100.5", &["a"]), claim("198.51.100.3", &["a"])];
    let plan = run(&[svc("a", &[])], &c, &p);
    assert_eq!(d(&plan, "a").served, vec![ip("198.51.100.3")]);
    assert!(plan.writes.contains(&Write::Holders {
        ip: ip("198.51.100.5"),
        resource_version: "7".into(),
        holders: vec![],
    }));
}

#[test]
fn claims_of_gone_or_changed_services_are_released() {
    let p = pools(&["198.51.100.0/24"]);
    let c = [
        claim("198.51.100.1", &["gone"]),
        claim("198.51.100.2", &["cip"]),
        claim("198.51.100.3", &["moved"]),
    ];
    let mut cip = svc("cip", &["198.51.100.2"]);
    cip.load_balancer = false;
    cip.allocated_from = Some("pool1".into());
    let plan = run(&[cip, svc("moved", &["198.51.100.4"])], &c, &p);
    assert!(plan.writes.contains(&Write::ReleaseIfGone {
        ip: ip("198.51.100.1"),
        resource_version: "7".into(),
        holder: holder("gone"),
    }));
    assert!(plan.writes.contains(&Write::Holders {
        ip: ip("198.51.100.2"),
        resource_version: "7".into(),
        holders: vec![],
    }));
    assert!(plan.writes.contains(&Write::Annotate {
        holder: holder("cip"),
        allocation: None,
    }));
    assert!(plan.writes.contains(&Write::Holders {
        ip: ip("198.51.100.3"),
        resource_version: "7".into(),
        holders: vec![],
    }));
    // Not watched here: left alone.
    let plan = collect(allocator(&[], &c, &p, Some("elsewhere")).plan(SystemTime::UNIX_EPOCH));
    assert!(plan.writes.is_empty());
}

#[test]
fn an_address_no_pool_contains_any_more_stays_with_its_service() {
    let plan = run(
        &[svc("a", &["198.51.100.1"])],
        &[claim("198.51.100.1", &["a"])],
        &pools(&["203.0.113.0/24"]),
    );
    assert_eq!(d(&plan, "a").served, vec![ip("198.51.100.1")]);
    assert!(events(&plan)
        .iter()
        .any(|(r, _)| *r == "AddressOutsidePool"));
}

#[test]
fn the_configmap_pool_comes_after_vipr_pools_and_a_bad_one_is_named() {
    let mut p = pools(&["203.0.113.0/30;namespaces=apps"]);
    p.configmap = Some(ConfigMapPools::new(
        "kube-system/kubevip".into(),
        [("cidr-global".to_string(), "198.51.100.0/29".to_string())].into(),
    ));
    let plan = run(&[svc("a", &[])], &[], &p);
    assert!(
        plan.writes.iter().any(
            |w| matches!(w, Write::Claim { pool, .. } if pool == "kube-system/kubevip:cidr-global")
        ),
        "{:?}",
        plan.writes
    );
    // kube-vip-cloud-provider never hands out .0.
    assert!(plan
        .writes
        .iter()
        .any(|w| matches!(w, Write::Claim { ip: a, .. } if *a == ip("198.51.100.1"))));
    p.configmap = Some(ConfigMapPools::new(
        "kube-system/kubevip".into(),
        [("cidr-global".to_string(), "0.0.0.0/32".to_string())].into(),
    ));
    let plan = run(&[svc("a", &[]), svc("b", &["198.51.100.3"])], &[], &p);
    assert!(matches!(&d(&plan, "a").pending, Some(Pending::NoPool(e)) if e.contains("DHCP")));
    assert!(matches!(&d(&plan, "b").refused[0].1, Refusal::BadPool(e) if e.contains("DHCP")));
}

#[test]
fn required_pools_refuse_everything_without_a_pool() {
    let p = Pools {
        required: true,
        ..Pools::default()
    };
    let plan = run(&[svc("a", &["198.51.100.1"])], &[], &p);
    assert!(matches!(
        d(&plan, "a").refused[0].1,
        Refusal::OutsidePools(_)
    ));
}

#[test]
fn vipr_s_own_annotation_follows_the_claim_it_holds() {
    // Two nodes allocated from different views: the annotation names .34, the claim held is
    // .33, and .34 went to b meanwhile. a keeps .33 (its claim), never refused as taken.
    let p = pools(&["198.51.100.0/24"]);
    let mut a = svc("a", &["198.51.100.34"]);
    a.allocated_from = Some("web".into());
    let c = [
        claim("198.51.100.33", &["a"]),
        claim("198.51.100.34", &["b"]),
    ];
    let plan = run(&[a, svc("b", &[])], &c, &p);
    assert_eq!(d(&plan, "a").served, vec![ip("198.51.100.33")]);
    assert!(d(&plan, "a").refused.is_empty());
    assert!(plan.writes.contains(&Write::Annotate {
        holder: holder("a"),
        allocation: Some((vec![ip("198.51.100.33")], "web".into())),
    }));
    // In step: nothing to write for a.
    let mut a = svc("a", &["198.51.100.33"]);
    a.allocated_from = Some("web".into());
    let plan = run(&[a], &c[..1], &p);
    assert!(!plan
        .writes
        .iter()
        .any(|w| matches!(w, Write::Annotate { .. } | Write::Claim { .. })));
}

#[test]
fn a_lost_claim_is_taken_again_for_the_address_vipr_annotated() {
    let p = pools(&["198.51.100.0/24"]);
    let mut a = svc("a", &["198.51.100.77"]);
    a.allocated_from = Some("pool1".into());
    let plan = run(&[a.clone()], &[], &p);
    assert!(plan.writes.contains(&Write::Claim {
        ip: ip("198.51.100.77"),
        pool: "pool1".into(),
        holder: holder("a"),
    }));
    // Taken by another meanwhile: a new one, not a refusal.
    let plan = run(&[a], &[claim("198.51.100.77", &["b"])], &p);
    assert!(d(&plan, "a").refused.is_empty());
    assert!(plan.writes.iter().any(|w| matches!(w,
        Write::Claim { ip: c, .. } if *c != ip("198.51.100.77"))));
}
