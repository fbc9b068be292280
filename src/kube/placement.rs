//! Whether a DaemonSet's pod template runs on a node, as the DaemonSet controller decides
//! (Kubernetes v1.20 `pkg/controller/daemon/daemon_controller.go` `Predicates`, on the pod
//! of `NewPod`): the pod's `nodeName` (if set) is the node; its `nodeSelector` and required
//! node affinity match the node (`component-helpers` `nodeaffinity`); and every taint of
//! effect `NoSchedule` or `NoExecute` on the node is tolerated, counting the tolerations the
//! controller adds to every daemon pod (`pkg/controller/daemon/util`
//! `AddOrUpdateDaemonPodTolerations`). Pure: no I/O.
//!
//! What is not understood (an operator Kubernetes does not define, a `Gt` value that is
//! no integer) does not match, as in Kubernetes: the answer errs towards "does not run
//! here", where vipr withdraws at once rather than leave routes for a restart that never
//! comes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, PodSpec, Taint, Toleration};

/// Whether the pod of `spec` (a DaemonSet's template) runs on `node`; otherwise why not.
pub fn runs_on(spec: &PodSpec, node: &Node) -> Result<(), String> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if let Some(n) = spec
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty() && *n != name)
    {
        return Err(format!("the template's nodeName is {n}"));
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    for (k, v) in spec.node_selector.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Err(format!(
                "the template's nodeSelector {k}={v} does not match"
            ));
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(r) = required {
        // The terms are ORed; a term's requirements are ANDed; a term with none matches
        // nothing (`nodeaffinity.NewNodeSelector`).
        let any = r.node_selector_terms.iter().any(|t| {
            let exprs = t.match_expressions.as_deref().unwrap_or_default();
            let fields = t.match_fields.as_deref().unwrap_or_default();
            (!exprs.is_empty() || !fields.is_empty())
                && exprs.iter().all(|e| matches(e, labels.get(&e.key)))
                && fields
                    .iter()
                    .all(|f| f.key == "metadata.name" && matches(f, Some(&name.to_string())))
        });
        if !any {
            return Err("the template's required node affinity does not match".into());
        }
    }
    let tolerations: Vec<&Toleration> = spec.tolerations.iter().flatten().collect();
    let host_network = spec.host_network == Some(true);
    for t in node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
    {
        if (t.effect == "NoSchedule" || t.effect == "NoExecute")
            && !daemon_tolerates(t, host_network)
            && !tolerations.iter().any(|tol| tolerates(tol, t))
        {
            return Err(format!(
                "the node's taint {}{}:{} is not tolerated",
                t.key,
                t.value
                    .as_deref()
                    .map(|v| format!("={v}"))
                    .unwrap_or_default(),
                t.effect
            ));
        }
    }
    Ok(())
}

/// One node selector requirement against the label (or field) value, if any.
fn matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().ok();
    match (r.operator.as_str(), value) {
        ("In", Some(v)) => values.contains(v),
        ("In", None) => false,
        ("NotIn", Some(v)) => !values.contains(v),
        ("NotIn", None) => true,
        ("Exists", v) => v.is_some(),
        ("DoesNotExist", v) => v.is_none(),
        ("Gt", Some(v)) if values.len() == 1 => {
            matches!((int(v), int(&values[0])), (Some(a), Some(b)) if a > b)
        }
        ("Lt", Some(v)) if values.len() == 1 => {
            matches!((int(v), int(&values[0])), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// `Toleration.ToleratesTaint` (k8s.io/api `core/v1/toleration.go`): an empty effect
/// tolerates every effect; an empty key with `Exists` tolerates every key; `Equal` (the
/// default operator) needs the same value.
fn tolerates(tol: &Toleration, t: &Taint) -> bool {
    let effect = tol.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != t.effect {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != t.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && tol.value.as_deref().unwrap_or_default()
                    == t.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// The tolerations the DaemonSet controller gives every daemon pod (Kubernetes v1.20
/// `AddOrUpdateDaemonPodTolerations`; `network-unavailable` for host-network pods).
fn daemon_tolerates(t: &Taint, host_network: bool) -> bool {
    let no_execute = [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ];
    let no_schedule = [
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ];
    match t.effect.as_str() {
        "NoExecute" => no_execute.contains(&t.key.as_str()),
        "NoSchedule" => {
            no_schedule.contains(&t.key.as_str())
                || (host_network && t.key == "node.kubernetes.io/network-unavailable")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "node3", "labels": labels},
            "spec": {"taints": taints}
        }))
        .unwrap()
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([{"name": "vipr"}]);
        serde_json::from_value(v).unwrap()
    }

    fn affinity(terms: serde_json::Value) -> PodSpec {
        spec(json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
    }

    #[test]
    fn node_selector_and_node_name() {
        let n = node(
            json!({"rack": "r1", "kubernetes.io/hostname": "node3"}),
            json!([]),
        );
        assert_eq!(runs_on(&spec(json!({})), &n), Ok(()));
        assert_eq!(
            runs_on(&spec(json!({"nodeSelector": {"rack": "r1"}})), &n),
            Ok(())
        );
        let e = runs_on(&spec(json!({"nodeSelector": {"rack": "r2"}})), &n).unwrap_err();
        assert!(e.contains("rack=r2"), "{e}");
        assert!(runs_on(&spec(json!({"nodeSelector": {"zone": "a"}})), &n).is_err());
        assert_eq!(runs_on(&spec(json!({"nodeName": "node3"})), &n), Ok(()));
        assert!(runs_on(&spec(json!({"nodeName": "node1"})), &n).is_err());
    }

    #[test]
    fn required_node_affinity_terms_are_ored_and_requirements_anded() {
        let n = node(json!({"rack": "r1", "gen": "5"}), json!([]));
        let term = |e: serde_json::Value| json!([{"matchExpressions": e}]);
        let ok = |s: PodSpec| runs_on(&s, &n).is_ok();
        assert!(ok(affinity(term(
            json!([{"key": "rack", "operator": "In", "values": ["r1", "r2"]}])
        ))));
        assert!(!ok(affinity(term(
            json!([{"key": "rack", "operator": "NotIn", "values": ["r1"]}])
        ))));
        assert!(ok(affinity(term(
            json!([{"key": "zone", "operator": "NotIn", "values": ["a"]}])
        ))));
        assert!(ok(affinity(term(
            json!([{"key": "rack", "operator": "Exists"}])
        ))));
        assert!(!ok(affinity(term(
            json!([{"key": "rack", "operator": "DoesNotExist"}])
        ))));
        assert!(ok(affinity(term(
            json!([{"key": "gen", "operator": "Gt", "values": ["4"]}])
        ))));
        assert!(!ok(affinity(term(
            json!([{"key": "gen", "operator": "Lt", "values": ["5"]}])
        ))));
        assert!(!ok(affinity(term(
            json!([{"key": "gen", "operator": "Gt", "values": ["x"]}])
        ))));
        assert!(!ok(affinity(term(
            json!([{"key": "rack", "operator": "Near", "values": ["r1"]}])
        ))));
        // AND within a term.
        assert!(!ok(affinity(term(json!([
            {"key": "rack", "operator": "In", "values": ["r1"]},
            {"key": "gen", "operator": "In", "values": ["4"]}
        ])))));
        // OR between terms; an empty term matches nothing.
        assert!(ok(affinity(json!([
            {"matchExpressions": [{"key": "rack", "operator": "In", "values": ["r9"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node3"]}]}
        ]))));
        assert!(!ok(affinity(json!([{}]))));
        assert!(!ok(affinity(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node3"]}]}
        ]))));
    }

    #[test]
    fn taints_need_a_toleration_but_those_every_daemon_pod_has() {
        let tainted = |t: serde_json::Value| node(json!({}), json!([t]));
        let cp = tainted(
            json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}),
        );
        assert!(runs_on(&spec(json!({})), &cp)
            .unwrap_err()
            .contains("control-plane"));
        // vipr's manifests tolerate everything (operator Exists, no key).
        assert_eq!(
            runs_on(&spec(json!({"tolerations": [{"operator": "Exists"}]})), &cp),
            Ok(())
        );
        let by_key = json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]});
        assert_eq!(runs_on(&spec(by_key), &cp), Ok(()));
        let wrong_effect = json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoExecute"}]});
        assert!(runs_on(&spec(wrong_effect), &cp).is_err());
        let valued = tainted(json!({"key": "dedicated", "value": "edge", "effect": "NoExecute"}));
        let equal = |v: &str| spec(json!({"tolerations": [{"key": "dedicated", "value": v}]}));
        assert_eq!(runs_on(&equal("edge"), &valued), Ok(()));
        assert!(runs_on(&equal("core"), &valued).is_err());
        // PreferNoSchedule never keeps a pod away.
        let soft = tainted(json!({"key": "x", "effect": "PreferNoSchedule"}));
        assert_eq!(runs_on(&spec(json!({})), &soft), Ok(()));
        // What the DaemonSet controller tolerates for every daemon pod: a drained node
        // (unschedulable) keeps its daemon pods.
        for (k, e) in [
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ] {
            assert_eq!(
                runs_on(&spec(json!({})), &tainted(json!({"key": k, "effect": e}))),
                Ok(()),
                "{k}"
            );
        }
        let net = tainted(
            json!({"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}),
        );
        assert!(runs_on(&spec(json!({})), &net).is_err());
        assert_eq!(runs_on(&spec(json!({"hostNetwork": true})), &net), Ok(()));
    }
}
