//! The watcher's state at a tenth of the benchmark's size: the work an event costs follows
//! the objects it touched (counted, not timed), and only what vipr reads is kept.

use std::time::SystemTime;

use super::*;
use crate::config::{ServiceFilter, ServiceSettings};
use crate::ipam::pools::parse_pool;

const N: usize = 1000;

fn settings(pools: &[&str]) -> ServiceSettings {
    ServiceSettings {
        enabled: true,
        filter: ServiceFilter {
            namespace: None,
            class_only: false,
            class_name: "kube-vip.io/kube-vip-class".into(),
        },
        pools: pools
            .iter()
            .enumerate()
            .map(|(i, p)| parse_pool(p, i + 1).unwrap())
            .collect(),
        pools_required: false,
        pool_configmap: None,
        claims_namespace: "kube-system".into(),
        status_updates: true,
        withdraw_cordoned: true,
    }
}

fn address(i: usize) -> String {
    format!("10.100.{}.{}", i / 250, i % 250 + 1)
}

fn service(i: usize, addr: Option<&str>) -> Service {
    let mut annotations = serde_json::json!({});
    if let Some(a) = addr {
        annotations = serde_json::json!({"kube-vip.io/loadbalancerIPs": a});
    }
    let mut spec = serde_json::json!({"type": "LoadBalancer", "ports": [{"port": 80}]});
    if i.is_multiple_of(10) {
        spec["externalTrafficPolicy"] = "Local".into();
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "default", "name": format!("s{i}"), "uid": format!("u{i}"),
                     "resourceVersion": "1", "creationTimestamp": format!("2026-01-01T00:{:02}:{:02}Z", i / 60 % 60, i % 60),
                     "annotations": annotations},
        "spec": spec,
    }))
    .unwrap()
}

fn endpoints(i: usize, on: &str) -> Endpoints {
    let addrs: Vec<serde_json::Value> = (0..10)
        .map(|k| {
            let node = if k == 0 {
                on.to_string()
            } else {
                format!("worker{k}")
            };
            serde_json::json!({"ip": format!("10.244.{}.{}", i % 250, k + 1), "nodeName": node})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "default", "name": format!("s{i}")},
        "subsets": [{"addresses": addrs}],
    }))
    .unwrap()
}

/// A node that has listed N annotated Services and their Endpoints (one of each Local
/// Service's ten endpoints on this node for even ones).
fn synced() -> Cluster {
    let mut c = Cluster::new("node-a", settings(&[]), Local::default());
    c.service(Event::Init);
    c.endpoints(Event::Init);
    for i in 0..N {
        c.service(Event::InitApply(service(i, Some(&address(i)))));
        let on = if i % 20 == 0 { "node-a" } else { "node-b" };
        c.endpoints(Event::InitApply(endpoints(i, on)));
    }
    c.service(Event::InitDone);
    c.endpoints(Event::InitDone);
    c.claim(Event::InitDone);
    assert!(!c.ready(), "this node's labels not read yet");
    c.node(Event::InitDone);
    assert!(c.ready());
    c.process(SystemTime::UNIX_EPOCH);
    c
}

fn cost(c: &mut Cluster, f: impl FnOnce(&mut Cluster)) -> (u64, u64, usize) {
    let before = c.work();
    let vips = c.vips().clone();
    f(c);
    c.process(SystemTime::UNIX_EPOCH);
    let after = c.work();
    (
        after.planned - before.planned,
        after.derived - before.derived,
        vips.diff(c.vips()).count(),
    )
}

#[test]
fn start_serves_every_service_and_keeps_two_bits_per_endpoint_object() {
    let c = synced();
    // 900 Cluster Services plus the 50 Local ones with an endpoint here.
    assert_eq!(c.vips().len(), N);
    let eligible = c.vips().values().filter(|v| v.eligible().is_ok()).count();
    assert_eq!(eligible, N - N / 10 + N / 20);
    let kept: HashMap<Kind, usize> = c.kept().into_iter().collect();
    assert_eq!(kept[&Kind::Services], N);
    assert_eq!(
        kept[&Kind::Endpoints],
        N,
        "every endpoint object with a ready endpoint, as its Service and one bit"
    );
    assert!(c.work().planned >= N as u64);
}

#[test]
fn one_service_change_costs_one_service() {
    let mut c = synced();
    // Moved to another address.
    let (planned, derived, changed) = cost(&mut c, |c| {
        c.service(Event::Apply(service(7, Some("10.150.0.1"))))
    });
    assert_eq!((planned, derived, changed), (1, 1, 1));
    // Written again unchanged (a status write's echo): nothing to plan.
    let (planned, _, changed) = cost(&mut c, |c| {
        c.service(Event::Apply(service(7, Some("10.150.0.1"))))
    });
    assert_eq!((planned, changed), (0, 0));
    // Deleted.
    let (planned, derived, changed) = cost(&mut c, |c| c.service(Event::Delete(service(8, None))));
    assert_eq!((planned, derived, changed), (1, 1, 1));
    assert!(c.vips().get("default/s8").is_none());
}

#[test]
fn an_endpoint_change_costs_its_service_and_no_plan() {
    let mut c = synced();
    // A Local Service's endpoint moves here: eligible now.
    assert!(c.vips()["default/s10"].eligible().is_err());
    let (planned, derived, changed) = cost(&mut c, |c| {
        c.endpoints(Event::Apply(endpoints(10, "node-a")))
    });
    assert_eq!((planned, derived, changed), (0, 1, 1));
    assert!(c.vips()["default/s10"].eligible().is_ok());
    // Endpoints elsewhere changing: nothing here.
    let (planned, derived, changed) = cost(&mut c, |c| {
        c.endpoints(Event::Apply(endpoints(11, "node-c")))
    });
    assert_eq!((planned, derived, changed), (0, 0, 0));
}

#[test]
fn a_relist_of_the_same_objects_costs_nothing_and_a_missed_delete_is_swept() {
    let mut c = synced();
    let (planned, derived, changed) = cost(&mut c, |c| {
        c.service(Event::Init);
        for i in 0..N {
            if i != 3 {
                c.service(Event::InitApply(service(i, Some(&address(i)))));
            }
        }
        c.service(Event::InitDone);
    });
    assert_eq!(
        (planned, derived, changed),
        (1, 1, 1),
        "only s3, deleted while unwatched"
    );
    assert!(c.vips().get("default/s3").is_none());
}

#[test]
fn allocation_from_a_pool_costs_the_new_service_and_its_claim() {
    let mut c = Cluster::new(
        "node-a",
        settings(&["198.51.100.0/24", "203.0.113.0/24"]),
        Local::default(),
    );
    c.service(Event::InitDone);
    c.endpoints(Event::InitDone);
    c.claim(Event::InitDone);
    for i in 0..300 {
        c.service(Event::Apply(service(1000 + i, None)));
    }
    c.process(SystemTime::UNIX_EPOCH);
    // 300 claims proposed, all different.
    let claims: Vec<IpAddr> = c
        .jobs()
        .values()
        .flat_map(|j| j.iter())
        .filter_map(|j| match j {
            Job::Plan(Write::Claim { ip, .. }) => Some(*ip),
            _ => None,
        })
        .collect();
    let distinct: std::collections::BTreeSet<IpAddr> = claims.iter().copied().collect();
    assert_eq!((claims.len(), distinct.len()), (300, 300));
    // The claims appear one by one: each costs its Service only.
    let before = c.work().planned;
    for (k, ip) in claims.iter().enumerate() {
        let holder = crate::ipam::Holder {
            namespace: "default".into(),
            name: format!("s{}", 1000 + k).into(),
            uid: format!("u{}", 1000 + k).into(),
        };
        let lease = claims::to_lease("kube-system", *ip, "pool1", &[holder], Some("5".into()));
        c.claim(Event::Apply(lease));
        c.process(SystemTime::UNIX_EPOCH);
    }
    assert!(
        c.work().planned - before <= 300,
        "{}",
        c.work().planned - before
    );
    assert_eq!(c.vips().len(), 300);
    // A new Service now: one plan.
    let (planned, _, changed) = cost(&mut c, |c| c.service(Event::Apply(service(2000, None))));
    assert_eq!(
        (planned, changed),
        (1, 0),
        "claiming first, served once the claim is seen"
    );
}

use std::net::IpAddr;

#[test]
fn a_service_without_a_ready_endpoint_anywhere_is_not_eligible_unless_allowed() {
    let mut c = synced();
    let cluster_svc = |c: &Cluster| c.vips()["default/s7"].eligible();
    assert!(cluster_svc(&c).is_ok(), "ten endpoints elsewhere");
    // Every endpoint becomes not ready: held back, at the cost of that Service alone.
    let mut ep = endpoints(7, "node-b");
    let sub = &mut ep.subsets.as_mut().unwrap()[0];
    sub.not_ready_addresses = sub.addresses.take();
    let (planned, derived, changed) = cost(&mut c, |c| c.endpoints(Event::Apply(ep.clone())));
    assert_eq!((planned, derived, changed), (0, 1, 1));
    assert_eq!(cluster_svc(&c), Err(crate::model::HeldBack::NoEndpoint));
    // kube-vip's opt-in, in any case: served without endpoints.
    let mut s = service(7, Some(&address(7)));
    s.metadata.annotations.as_mut().unwrap().insert(
        "kube-vip.io/allow-reconcile-without-endpoints".into(),
        "True".into(),
    );
    c.service(Event::Apply(s));
    c.process(SystemTime::UNIX_EPOCH);
    assert!(cluster_svc(&c).is_ok());
    // Never for a Local Service: its own endpoint decides.
    let mut s = service(20, Some(&address(20)));
    s.metadata.annotations.as_mut().unwrap().insert(
        "kube-vip.io/allow-reconcile-without-endpoints".into(),
        "true".into(),
    );
    c.service(Event::Apply(s));
    c.endpoints(Event::Delete(endpoints(20, "node-a")));
    c.process(SystemTime::UNIX_EPOCH);
    assert_eq!(
        c.vips()["default/s20"].eligible(),
        Err(crate::model::HeldBack::NoLocalEndpoint)
    );
    // Without the annotation again, then its endpoints come back: eligible again.
    c.service(Event::Apply(service(7, Some(&address(7)))));
    c.process(SystemTime::UNIX_EPOCH);
    assert_eq!(cluster_svc(&c), Err(crate::model::HeldBack::NoEndpoint));
    c.endpoints(Event::Apply(endpoints(7, "node-b")));
    c.process(SystemTime::UNIX_EPOCH);
    assert!(cluster_svc(&c).is_ok());
}

#[test]
fn no_status_is_written_before_a_ready_endpoint_exists() {
    let mut c = Cluster::new("node-a", settings(&[]), Local::default());
    for ev in [Event::Init, Event::InitDone] {
        c.endpoints(ev);
    }
    c.claim(Event::InitDone);
    c.service(Event::Apply(service(1, Some("10.100.0.9"))));
    c.process(SystemTime::UNIX_EPOCH);
    let status = |c: &Cluster| {
        c.jobs()
            .get("default/s1")
            .is_some_and(|j| j.iter().any(|j| matches!(j, Job::Status(_))))
    };
    assert!(
        !status(&c),
        "kube-vip writes status only once it has endpoints"
    );
    c.endpoints(Event::Apply(endpoints(1, "node-b")));
    c.process(SystemTime::UNIX_EPOCH);
    assert!(status(&c));
}

#[test]
fn an_ignored_service_gets_no_address_no_status_and_no_write() {
    let mut c = Cluster::new("node-a", settings(&["198.51.100.0/24"]), Local::default());
    c.service(Event::InitDone);
    c.endpoints(Event::InitDone);
    c.claim(Event::InitDone);
    let ignored = |i: usize, value: &str| {
        let mut s = service(i, None);
        s.metadata.annotations = Some(
            [("kube-vip.io/ignore".to_string(), value.to_string())]
                .into_iter()
                .collect(),
        );
        s
    };
    c.service(Event::Apply(ignored(1, "true")));
    // kube-vip compares with == "true": any other value is not ignored.
    c.service(Event::Apply(ignored(2, "True")));
    c.process(SystemTime::UNIX_EPOCH);
    assert!(c.jobs().get("default/s1").is_none(), "{:?}", c.jobs());
    assert!(c.allocations().pending.get("default/s1").is_none());
    assert!(c.vips().get("default/s1").is_none());
    let s2 = c
        .jobs()
        .get("default/s2")
        .expect("s2 is allocated an address");
    assert!(s2
        .iter()
        .any(|j| matches!(j, Job::Plan(Write::Claim { .. }))));
}

fn node(labels: serde_json::Value) -> Node {
    cordoned(false, labels)
}

/// This node's Node with these labels, cordoned or not.
fn cordoned(unschedulable: bool, labels: serde_json::Value) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "node-a", "labels": labels},
        "spec": {"unschedulable": unschedulable},
    }))
    .unwrap()
}

/// How many Services this node may serve.
fn eligible(c: &Cluster) -> usize {
    c.vips().values().filter(|v| v.eligible().is_ok()).count()
}

#[test]
fn a_node_excluded_from_external_load_balancers_serves_no_service_but_writes_status() {
    let mut c = synced();
    let before = eligible(&c);
    assert!(before > 0);
    // Any value, also empty, as MetalLB v0.16.1 and the service controller read it.
    c.node(Event::Apply(node(serde_json::json!({
        "node.kubernetes.io/exclude-from-external-load-balancers": ""
    }))));
    c.process(SystemTime::UNIX_EPOCH);
    assert_eq!(eligible(&c), 0);
    assert_eq!(
        c.vips()["default/s7"].eligible(),
        Err(crate::model::HeldBack::NodeExcluded(Exclusion::Label))
    );
    assert!(
        c.vips()["default/s7"].backends().is_ok(),
        "status is still this node's to write"
    );
    // Another label change: nothing to do.
    let (planned, derived, changed) = cost(&mut c, |c| {
        c.node(Event::Apply(node(serde_json::json!({
            "node.kubernetes.io/exclude-from-external-load-balancers": "true",
            "other": "x"
        }))))
    });
    assert_eq!((planned, derived, changed), (0, 0, 0));
    // Unlabelled: every Service back.
    c.node(Event::Apply(node(serde_json::json!({"other": "x"}))));
    c.process(SystemTime::UNIX_EPOCH);
    assert_eq!(eligible(&c), before);
}

#[test]
fn a_cordoned_node_serves_no_service_unless_told_otherwise() {
    let mut c = synced();
    let before = eligible(&c);
    assert!(before > 0);
    // kubectl cordon (the first step of kubectl drain): every Service withdrawn here.
    c.node(Event::Apply(cordoned(true, serde_json::json!({}))));
    c.process(SystemTime::UNIX_EPOCH);
    assert_eq!(eligible(&c), 0);
    let why = c.vips()["default/s7"].eligible().unwrap_err();
    assert_eq!(
        why,
        crate::model::HeldBack::NodeExcluded(Exclusion::Cordoned)
    );
    assert!(why.to_string().contains("cordoned"), "{why}");
    assert!(
        c.vips()["default/s7"].backends().is_ok(),
        "status still written"
    );
    // Labelled as well: the label is the reason said.
    c.node(Event::Apply(cordoned(
        true,
        serde_json::json!({"node.kubernetes.io/exclude-from-external-load-balancers": ""}),
    )));
    c.process(SystemTime::UNIX_EPOCH);
    assert_eq!(
        c.vips()["default/s7"].eligible(),
        Err(crate::model::HeldBack::NodeExcluded(Exclusion::Label))
    );
    // Uncordoned and unlabelled: every Service back.
    c.node(Event::Apply(cordoned(false, serde_json::json!({}))));
    c.process(SystemTime::UNIX_EPOCH);
    assert_eq!(eligible(&c), before);

    // vipr_withdraw_cordoned=false: a cordoned node keeps serving, as MetalLB v0.16.1 and
    // kube-vip v1.2.3 do.
    let mut s = settings(&[]);
    s.withdraw_cordoned = false;
    let mut c = Cluster::new("node-a", s, Local::default());
    for i in 0..N {
        c.service(Event::Apply(service(i, Some(&address(i)))));
    }
    c.service(Event::InitDone);
    c.endpoints(Event::InitDone);
    c.claim(Event::InitDone);
    c.node(Event::Apply(cordoned(true, serde_json::json!({}))));
    c.node(Event::InitDone);
    c.process(SystemTime::UNIX_EPOCH);
    assert_eq!(c.excluded(), None);
    assert!(c.vips().values().all(|v| v.node_ok().is_ok()));
}

#[test]
fn an_unsupported_kube_vip_annotation_is_said_once_and_gets_one_event() {
    let mut c = synced();
    let with = |a: &[(&str, &str)]| {
        let mut s = service(5, Some(&address(5)));
        let m = s.metadata.annotations.as_mut().unwrap();
        for (k, v) in a {
            m.insert(k.to_string(), v.to_string());
        }
        s
    };
    let events = |c: &Cluster| -> Vec<String> {
        c.jobs()
            .get("default/s5")
            .into_iter()
            .flat_map(|j| j.iter())
            .filter_map(|j| match j {
                Job::Plan(Write::Event(e)) if e.reason == "AnnotationIgnored" => {
                    Some(e.key.clone())
                }
                _ => None,
            })
            .collect()
    };
    c.service(Event::Apply(with(&[("kube-vip.io/egress", "true")])));
    c.process(SystemTime::UNIX_EPOCH);
    let said: Vec<(String, &str)> = c
        .take_notices()
        .into_iter()
        .map(|(k, r)| (k.to_string(), r.name))
        .collect();
    assert_eq!(said, [("default/s5".to_string(), "kube-vip.io/egress")]);
    assert_eq!(events(&c), ["annotation/kube-vip.io/egress"]);
    // Seen again (a relist, another change): not said again; a new one is.
    c.service(Event::Apply(with(&[
        ("kube-vip.io/egress", "true"),
        ("kube-vip.io/rp_filter", "2"),
    ])));
    c.process(SystemTime::UNIX_EPOCH);
    let said: Vec<&str> = c.take_notices().into_iter().map(|(_, r)| r.name).collect();
    assert_eq!(said, ["kube-vip.io/rp_filter"]);
    assert_eq!(events(&c).len(), 2);
    // Ignored by kube-vip.io/ignore: nothing said, no Event.
    let mut s = with(&[
        ("kube-vip.io/forwardUPNP", "true"),
        ("kube-vip.io/ignore", "true"),
    ]);
    s.metadata.name = Some("s6".into());
    s.metadata.uid = Some("u6".into());
    c.service(Event::Apply(s));
    c.process(SystemTime::UNIX_EPOCH);
    assert!(c.take_notices().is_empty());
    assert!(c.jobs().get("default/s6").is_none());
}

#[test]
fn disable_service_updates_writes_no_status_at_all() {
    let mut s = settings(&[]);
    s.status_updates = false;
    let mut c = Cluster::new("node-a", s, Local::default());
    for ev in [Event::Init, Event::InitDone] {
        c.endpoints(ev);
    }
    c.claim(Event::InitDone);
    c.node(Event::InitDone);
    c.service(Event::Apply(service(1, Some("10.100.0.9"))));
    c.endpoints(Event::Apply(endpoints(1, "node-b")));
    // A status vipr wrote earlier, for an address since removed: not cleared either.
    let mut stale = service(2, None);
    stale.status = Some(
        serde_json::from_value(
            serde_json::json!({"loadBalancer": {"ingress": [{"ip": "10.100.0.10"}]}}),
        )
        .unwrap(),
    );
    stale.metadata.managed_fields = Some(vec![serde_json::from_value(serde_json::json!({
        "manager": "vipr", "operation": "Update", "apiVersion": "v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:loadBalancer": {}}}
    }))
    .unwrap()]);
    c.service(Event::Apply(stale));
    c.process(SystemTime::UNIX_EPOCH);
    assert!(c.vips()["default/s1"].eligible().is_ok(), "served");
    let statuses = c
        .jobs()
        .values()
        .flat_map(|j| j.iter())
        .filter(|j| matches!(j, Job::Status(_)))
        .count();
    assert_eq!(statuses, 0, "{:?}", c.jobs());
}

#[test]
fn a_bgp_attribute_choice_its_pool_does_not_allow_gets_an_event() {
    let mut c = Cluster::new(
        "node-a",
        settings(&["10.100.0.0/16;name=web;bgp-attributes=base;bgp-allowed=gold"]),
        Local::default(),
    );
    c.service(Event::InitDone);
    c.endpoints(Event::InitDone);
    c.claim(Event::InitDone);
    for (i, asked) in [(1, "gold"), (2, "gold, blackhole"), (3, "base")] {
        let mut s = service(i, Some(&address(i)));
        s.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(crate::route_attrs::ANNOTATION.into(), asked.into());
        c.service(Event::Apply(s));
        let holder = crate::ipam::Holder {
            namespace: "default".into(),
            name: format!("s{i}").into(),
            uid: format!("u{i}").into(),
        };
        let ip: IpAddr = address(i).parse().unwrap();
        c.claim(Event::Apply(claims::to_lease(
            "kube-system",
            ip,
            "web",
            &[holder],
            Some("5".into()),
        )));
    }
    c.process(SystemTime::UNIX_EPOCH);
    let refused = |i: usize| -> Vec<String> {
        c.jobs()
            .get(format!("default/s{i}").as_str())
            .into_iter()
            .flat_map(|j| j.iter())
            .filter_map(|j| match j {
                Job::Plan(Write::Event(e)) if e.reason == "BGPAttributesRefused" => {
                    assert!(e.warning);
                    Some(e.message.clone())
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(c.vips().len(), 3, "served whatever they asked for");
    assert!(refused(1).is_empty() && refused(3).is_empty());
    let m = refused(2);
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].contains("blackhole not allowed by pool web")
            && m[0].contains("10.100.0.3")
            && m[0].contains("pool's attribute sets base"),
        "{}",
        m[0]
    );
}

#[test]
fn a_services_name_and_uid_are_one_string_shared_by_every_map() {
    let mut c = synced();
    // Also after an update: the cache keeps the key it stored first.
    c.service(Event::Apply(service(7, Some("10.150.0.1"))));
    c.process(SystemTime::UNIX_EPOCH);
    for i in [3, 7] {
        let key = format!("default/s{i}");
        let kept = c.services.key_of(&key).unwrap();
        let rec = c.services.get(&key).unwrap();
        let (k, v) = c.vips().get_key_value(key.as_str()).unwrap();
        let (jobs, _) = c.jobs().get_key_value(key.as_str()).unwrap();
        let (decided, _) = c.decisions.get_key_value(key.as_str()).unwrap();
        let (owned, uid) = c.owner.get_key_value(key.as_str()).unwrap();
        let ready = &c.endpoints.get(&key).unwrap().service;
        for (what, k) in [
            ("snapshot", k),
            ("jobs", jobs),
            ("decisions", decided),
            ("owner", owned),
            ("endpoints", ready),
        ] {
            assert!(Arc::ptr_eq(k, &kept), "{what} copies {key}");
        }
        assert!(Arc::ptr_eq(uid, &rec.svc.holder.uid));
        assert!(Arc::ptr_eq(&c.keys[uid], &kept));
        assert!(Arc::ptr_eq(&v.namespace, &rec.svc.holder.namespace));
        assert!(Arc::ptr_eq(&v.name, &rec.svc.holder.name));
    }
}
