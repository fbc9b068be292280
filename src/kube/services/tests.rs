//! Service selection, address precedence and endpoint locality, on objects written as JSON
//! the way the API server returns them.

use super::*;
use crate::config::ServiceSettings;
use crate::ipam::plan::Local;
use crate::kube::cluster::Cluster;
use crate::kube::writer::Job;
use kube::runtime::watcher::Event;

fn settings(f: &Filter) -> ServiceSettings {
    ServiceSettings {
        enabled: true,
        filter: f.clone(),
        pools: Vec::new(),
        pools_required: false,
        pool_configmap: None,
        claims_namespace: "kube-system".into(),
        status_updates: true,
        withdraw_cordoned: true,
    }
}

/// The Services as a node serves them without pools: the objects through the whole pure
/// pipeline (records, allocator, derived views), in `namespace/name` order.
fn run<'a>(
    svcs: impl IntoIterator<Item = &'a Service>,
    eps: &[&Endpoints],
    node: &str,
    f: &Filter,
) -> Cluster {
    let mut c = Cluster::new(node, settings(f), Local::default());
    for s in svcs {
        let mut s = s.clone();
        let uid = format!("uid-{}", s.metadata.name.clone().unwrap_or_default());
        s.metadata.uid.get_or_insert(uid);
        c.service(Event::Apply(s));
    }
    for e in eps {
        c.endpoints(Event::Apply((*e).clone()));
    }
    c.process(std::time::SystemTime::UNIX_EPOCH);
    c
}

fn vips<'a>(svcs: impl IntoIterator<Item = &'a Service>, f: &Filter) -> Vec<ServiceVip> {
    vips_on(svcs, &[], "node-a", f)
}

fn vips_on<'a>(
    svcs: impl IntoIterator<Item = &'a Service>,
    eps: &[&Endpoints],
    node: &str,
    f: &Filter,
) -> Vec<ServiceVip> {
    run(svcs, eps, node, f)
        .vips()
        .values()
        .map(|v| (**v).clone())
        .collect()
}

/// The status patches the node would write, by Service name.
fn status_writes<'a>(
    svcs: impl IntoIterator<Item = &'a Service>,
    f: &Filter,
) -> Vec<(String, serde_json::Value)> {
    run(svcs, &[], "node-a", f)
        .jobs()
        .values()
        .flat_map(|j| j.iter().cloned())
        .filter_map(|j| match j {
            Job::Status(w) => Some((w.name.to_string(), serde_json::from_str(&w.patch).unwrap())),
            _ => None,
        })
        .collect()
}

fn svc(j: serde_json::Value) -> Service {
    serde_json::from_value(j).unwrap()
}

fn filter() -> Filter {
    Filter {
        namespace: None,
        class_only: false,
        class_name: "kube-vip.io/kube-vip-class".into(),
    }
}

fn lb(name: &str, extra_spec: serde_json::Value, annotations: serde_json::Value) -> Service {
    let mut spec = serde_json::json!({"type": "LoadBalancer", "ports": [{"port": 80}]});
    spec.as_object_mut()
        .unwrap()
        .extend(extra_spec.as_object().unwrap().clone());
    svc(serde_json::json!({
        "metadata": {"namespace": "default", "name": name, "annotations": annotations},
        "spec": spec
    }))
}

#[test]
fn address_precedence_annotation_status_spec() {
    let a = lb(
        "a",
        serde_json::json!({"loadBalancerIP": "192.0.2.3"}),
        serde_json::json!({ANNOTATION_IPS: "192.0.2.1, 2001:db8::1"}),
    );
    let mut b = lb(
        "b",
        serde_json::json!({"loadBalancerIP": "192.0.2.3"}),
        serde_json::json!({}),
    );
    b.status = Some(
        serde_json::from_value(
            serde_json::json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}]}}),
        )
        .unwrap(),
    );
    let c = lb(
        "c",
        serde_json::json!({"loadBalancerIP": "192.0.2.3"}),
        serde_json::json!({}),
    );
    let d = lb("d", serde_json::json!({}), serde_json::json!({}));
    let v = vips([&a, &b, &c, &d], &filter());
    assert_eq!(v.len(), 3, "no address, not served");
    assert_eq!(
        v[0].ips,
        vec![
            "192.0.2.1".parse::<IpAddr>().unwrap(),
            "2001:db8::1".parse().unwrap()
        ]
    );
    assert_eq!(v[0].source, AddressSource::Annotation);
    assert_eq!(
        (v[1].ips[0].to_string(), v[1].source),
        ("192.0.2.2".into(), AddressSource::Status)
    );
    assert_eq!(
        (v[2].ips[0].to_string(), v[2].source),
        ("192.0.2.3".into(), AddressSource::Spec)
    );
    // Status is written for annotation/spec addresses when it differs, never for status ones.
    assert!(status_patch(&v[0]).is_some());
    assert!(status_patch(&v[1]).is_none());
    let p = status_patch(&v[2]).unwrap();
    assert_eq!(p["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.3");
}

#[test]
fn only_load_balancers_of_our_class_and_namespace() {
    let cluster_ip = svc(
        serde_json::json!({"metadata": {"namespace": "default", "name": "x"}, "spec": {"type": "ClusterIP", "loadBalancerIP": "192.0.2.9"}}),
    );
    let other_class = lb(
        "o",
        serde_json::json!({"loadBalancerClass": "metallb", "loadBalancerIP": "192.0.2.8"}),
        serde_json::json!({}),
    );
    let ours = lb(
        "k",
        serde_json::json!({"loadBalancerClass": "kube-vip.io/kube-vip-class", "loadBalancerIP": "192.0.2.7"}),
        serde_json::json!({}),
    );
    let classless = lb(
        "n",
        serde_json::json!({"loadBalancerIP": "192.0.2.6"}),
        serde_json::json!({}),
    );
    let names = |f: &Filter| -> Vec<String> {
        vips([&cluster_ip, &other_class, &ours, &classless], f)
            .into_iter()
            .map(|v| v.name.to_string())
            .collect()
    };
    assert_eq!(names(&filter()), vec!["k", "n"]);
    let mut f = filter();
    f.class_only = true;
    assert_eq!(names(&f), vec!["k"]);
    f.namespace = Some("apps".into());
    assert!(names(&f).is_empty());
}

#[test]
fn external_traffic_policy_local_needs_a_local_ready_endpoint() {
    let s = lb(
        "web",
        serde_json::json!({"externalTrafficPolicy": "Local", "loadBalancerIP": "192.0.2.5"}),
        serde_json::json!({}),
    );
    let ep: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "default", "name": "web"},
        "subsets": [{"addresses": [{"ip": "10.1.0.5", "nodeName": "node-b"}],
                     "notReadyAddresses": [{"ip": "10.1.0.6", "nodeName": "node-a"}]}]
    }))
    .unwrap();
    let on_a = vips_on([&s], &[&ep], "node-a", &filter());
    let on_b = vips_on([&s], &[&ep], "node-b", &filter());
    assert!(
        on_a[0].eligible().is_err(),
        "only a not-ready endpoint on node-a"
    );
    assert!(on_b[0].eligible().is_ok());
}

#[test]
fn endpoint_slices_count_ready_and_terminating_serving_endpoints() {
    let slice = |ready: Option<bool>, serving: bool, terminating: bool| -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "default", "name": "web-abc", "labels": {SLICE_SERVICE_LABEL: "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.5"], "nodeName": "node-a",
                           "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}]
        }))
        .unwrap()
    };
    let ready = |here| {
        Some(Ready {
            service: "default/web".into(),
            here,
        })
    };
    let has = |s: &EndpointSlice| slice_ready(s, "node-a") == ready(true);
    assert!(has(&slice(Some(true), true, false)));
    assert!(has(&slice(None, true, false)), "absent ready means ready");
    assert!(!has(&slice(Some(false), false, false)));
    assert_eq!(
        slice_ready(&slice(Some(false), false, false), "node-b"),
        None,
        "a slice of unready endpoints is not kept at all"
    );
    assert!(
        has(&slice(Some(false), true, true)),
        "rolling update: still serving while terminating"
    );
    assert_eq!(
        slice_ready(&slice(Some(true), true, false), "node-b"),
        ready(false),
        "ready elsewhere"
    );
}

#[test]
fn vipr_written_status_never_shadows_spec_or_annotation() {
    let mut s = lb(
        "a",
        serde_json::json!({"loadBalancerIP": "192.0.2.4"}),
        serde_json::json!({}),
    );
    s.status = Some(
        serde_json::from_value(
            serde_json::json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.3"}]}}),
        )
        .unwrap(),
    );
    // Written by another controller: status wins over spec (kube-vip's order).
    let v = vips([&s], &filter());
    assert_eq!(v[0].ips[0].to_string(), "192.0.2.3");
    // Written by vipr (it mirrors an older spec): the spec wins, and the status is rewritten.
    s.metadata.managed_fields = Some(vec![serde_json::from_value(serde_json::json!({
        "manager": FIELD_MANAGER, "operation": "Update", "apiVersion": "v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:loadBalancer": {"f:ingress": {}}}}
    }))
    .unwrap()]);
    let v = vips([&s], &filter());
    assert_eq!(
        (v[0].ips[0].to_string(), v[0].source),
        ("192.0.2.4".into(), AddressSource::Spec)
    );
    assert!(status_patch(&v[0]).is_some());
    // The spec goes away too: nothing is served and vipr's stale status is cleared.
    s.spec.as_mut().unwrap().load_balancer_ip = None;
    assert!(vips([&s], &filter()).is_empty());
    let w = status_writes([&s], &filter());
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].0, "a");
    assert_eq!(
        w[0].1["status"]["loadBalancer"]["ingress"],
        serde_json::json!([])
    );
}

/// `kube-vip.io/forcePerServiceElection` is read as kube-vip v1.2.3 reads it: exactly
/// `"true"` (`pkg/services/processor.go` line 103).
#[test]
fn force_per_service_election_is_exactly_true() {
    let ann = |v: &str| {
        serde_json::json!({
            "kube-vip.io/loadbalancerIPs": "198.51.100.7",
            "kube-vip.io/forcePerServiceElection": v,
        })
    };
    for (v, want) in [("true", true), ("True", false), ("yes", false), ("", false)] {
        let s = lb("web", serde_json::json!({}), ann(v));
        let got = vips([&s], &filter());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].force_election, want, "{v:?}");
    }
}
