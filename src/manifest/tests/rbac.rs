//! RBAC per mode: exactly the rules each mode needs, scoped to the namespaces concerned,
//! each role bound to the ServiceAccount.

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::*;

/// `(namespace or "", api group, resource, names, verbs)`.
type Rule = (String, String, String, Vec<String>, Vec<String>);

/// Every rule of a rendering.
fn rbac_rules(args: &[&str]) -> Vec<Rule> {
    let mut a = vec!["rbac"];
    a.extend_from_slice(args);
    let d = docs(&render_args(&a));
    assert_eq!(d[0]["kind"], "ServiceAccount");
    assert_eq!(d[0]["metadata"]["namespace"], "kube-system");
    let mut out = Vec::new();
    for (i, doc) in d.iter().enumerate() {
        let kind = doc["kind"].as_str().unwrap();
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        // Each role is followed by its binding to the ServiceAccount.
        let b = &d[i + 1];
        assert_eq!(b["kind"], format!("{kind}Binding"));
        assert_eq!(b["roleRef"]["name"], doc["metadata"]["name"]);
        assert_eq!(b["subjects"][0]["kind"], "ServiceAccount");
        assert_eq!(b["subjects"][0]["name"], d[0]["metadata"]["name"]);
        assert_eq!(b["metadata"]["namespace"], doc["metadata"]["namespace"]);
        let ns = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let rules: Vec<PolicyRule> = serde_json::from_value(doc["rules"].clone()).unwrap();
        for r in rules {
            assert_eq!(r.api_groups.as_ref().map(Vec::len), Some(1));
            assert_eq!(r.resources.as_ref().map(Vec::len), Some(1));
            out.push((
                ns.clone(),
                r.api_groups.unwrap()[0].clone(),
                r.resources.unwrap()[0].clone(),
                r.resource_names.unwrap_or_default(),
                r.verbs,
            ));
        }
    }
    out
}

fn rule(
    ns: &str,
    g: &str,
    r: &str,
    names: &[&str],
    verbs: &[&str],
) -> (String, String, String, Vec<String>, Vec<String>) {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
    (ns.into(), g.into(), r.into(), s(names), s(verbs))
}

#[test]
fn rbac_is_least_privilege_for_each_mode() {
    let svc = vec![
        rule("", "", "services", &[], &["get", "list", "watch", "patch"]),
        rule("", "", "services/status", &[], &["patch"]),
        rule(
            "",
            "discovery.k8s.io",
            "endpointslices",
            &[],
            &["list", "watch"],
        ),
        rule("", "", "endpoints", &[], &["list", "watch"]),
        rule("", "", "events", &[], &["create"]),
        // This node's exclude-from-external-load-balancers label.
        rule("", "", "nodes", &[], &["get", "list", "watch"]),
        // Address claims, and kube-vip-cloud-provider's ConfigMap (that one object only).
        rule(
            "kube-system",
            "coordination.k8s.io",
            "leases",
            &[],
            &["get", "list", "watch", "create", "update", "delete"],
        ),
        rule(
            "kube-system",
            "",
            "configmaps",
            &["kubevip"],
            &["get", "list", "watch"],
        ),
    ];
    // BGP with static peers and the control-plane VIP: no API access at all.
    assert_eq!(rbac_rules(BGP_CP), vec![]);
    // BGP + Services: Services, their status and endpoints, its own Node; no Leases.
    assert_eq!(
        rbac_rules(&["--bgp", "--services", "--bgppeers", "10.0.0.1:65000::false"]),
        svc
    );
    // ARP + election, control plane only: its one Lease, in cp_namespace.
    let lease = |names: &[&str]| {
        vec![
            rule(
                "kube-system",
                "coordination.k8s.io",
                "leases",
                &[],
                &["create"],
            ),
            rule(
                "kube-system",
                "coordination.k8s.io",
                "leases",
                names,
                &["get", "list", "watch", "update"],
            ),
        ]
    };
    assert_eq!(rbac_rules(ARP_CP), lease(&["plndr-cp-lock"]));
    assert_eq!(
        rbac_rules(&[ARP_CP, &["--leaseName", "my-lock", "--namespace", "vip"]].concat()),
        vec![
            rule("vip", "coordination.k8s.io", "leases", &[], &["create"]),
            rule(
                "vip",
                "coordination.k8s.io",
                "leases",
                &["my-lock"],
                &["get", "list", "watch", "update"]
            ),
        ]
    );
    // BGP with the control-plane Lease (vipr_bgp_leader_only): that one Lease; with
    // vip_leaderelection alone no Lease (every node advertises).
    assert_eq!(
        rbac_rules(&[BGP_CP, &["--leaderElection", "--vipr-bgp-leader-only"]].concat()),
        lease(&["plndr-cp-lock"])
    );
    assert_eq!(
        rbac_rules(&[BGP_CP, &["--leaderElection"]].concat()),
        vec![]
    );
    // svc_leasename in another namespace: each Lease in its own.
    let mut want = svc.clone();
    want.extend(lease(&["plndr-cp-lock"]));
    want.extend([
        rule("infra", "coordination.k8s.io", "leases", &[], &["create"]),
        rule(
            "infra",
            "coordination.k8s.io",
            "leases",
            &["svcs"],
            &["get", "list", "watch", "update"],
        ),
    ]);
    let mut got =
        rbac_rules(&[ARP_CP, &["--services", "--servicesLeaseName", "infra/svcs"]].concat());
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // ARP without election: no Lease.
    assert_eq!(
        rbac_rules(&[
            "--vip",
            "10.0.0.100",
            "--interface",
            "eth0",
            "--controlplane",
            "--arp"
        ]),
        vec![]
    );
    // ARP + election + Services: both named Leases, and the Service rules.
    let mut want = svc.clone();
    want.extend(lease(&["plndr-cp-lock", "plndr-svcs-lock"]));
    assert_eq!(rbac_rules(&[ARP_CP, &["--services"]].concat()), want);
    // svc_election: a Lease per Service, names unknown in advance, in cp_namespace only
    // (never where the Services are), deleted with its Service.
    let per_service = |ns: &str| {
        rule(
            ns,
            "coordination.k8s.io",
            "leases",
            &[],
            &["get", "list", "watch", "create", "update", "delete"],
        )
    };
    let mut want = svc.clone();
    want.push(per_service("kube-system"));
    assert_eq!(
        rbac_rules(&[ARP_CP, &["--services", "--servicesElection"]].concat()),
        want
    );
    let got = rbac_rules(
        &[
            ARP_CP,
            &[
                "--services",
                "--servicesElection",
                "--namespace",
                "vip",
                "--svc-namespace",
                "web",
            ],
        ]
        .concat(),
    );
    let leases: Vec<_> = got.iter().filter(|r| r.2 == "leases").collect();
    assert_eq!(
        leases,
        vec![
            &rule(
                "kube-system",
                "coordination.k8s.io",
                "leases",
                &[],
                &["get", "list", "watch", "create", "update", "delete"]
            ),
            &per_service("vip"),
        ],
        "claims in kube-system, elections in cp_namespace, none in the Services' namespace"
    );
    // svc_namespace: the Service rules become a Role there.
    let got = rbac_rules(&[
        "--bgp",
        "--services",
        "--svc-namespace",
        "web",
        "--bgppeers",
        "10.0.0.1:65000::false",
    ]);
    // (Only the claims and the pool ConfigMap stay where they are, and the Node is
    // cluster-scoped.)
    let (web, other): (Vec<_>, Vec<_>) = got.iter().partition(|r| r.0 == "web");
    assert!(web.len() == 5 && other.len() == 3, "{got:?}");
    assert!(
        other
            .iter()
            .all(|r| r.0 == "kube-system" || (r.0.is_empty() && r.2 == "nodes")),
        "{got:?}"
    );
    // Peers from node annotations (BGP): read Nodes, nothing else.
    let nodes = vec![rule("", "", "nodes", &[], &["get", "list", "watch"])];
    assert_eq!(
        rbac_rules(&[
            "--bgp",
            "--controlplane",
            "--vip",
            "192.0.2.1",
            "--annotations",
            "metal.equinix.com"
        ]),
        nodes
    );
    // enable_node_labeling: get and patch Nodes (a Node's own name is not known when the
    // manifest is rendered for a DaemonSet), only when asked for.
    let mut want = svc.clone();
    want.insert(6, rule("", "", "nodes", &[], &["get", "patch"]));
    let got = rbac_rules(&[
        "--bgp",
        "--services",
        "--bgppeers",
        "10.0.0.1:65000::false",
        "--enableNodeLabeling",
    ]);
    assert_eq!(got, want);
    // IPVS/nftables backends from the control-plane Nodes; none with static backends.
    assert_eq!(rbac_rules(&[BGP_CP, &["--lbEnable"]].concat()), nodes);
    assert_eq!(
        rbac_rules(
            &[
                BGP_CP,
                &["--lbEnable", "--vipr-lb-backends", "10.0.0.11,10.0.0.12"]
            ]
            .concat()
        ),
        vec![]
    );
}

/// Peers from the YAML file: a node selector needs this node's Node (get/list/watch), a
/// `password_secret` exactly its Secrets by name in `cp_namespace`, nothing else.
#[test]
fn file_peers_with_selectors_and_secrets_get_only_their_objects() {
    let yaml = "bgp_enable: true\ncp_enable: true\naddress: 192.0.2.10\ncp_namespace: infra\nbgp_peers:
  - {address: 192.0.2.1, as: 65001, password_secret: {name: bgp-auth, key: a}, node_selector: {matchLabels: {rack: r1}}}
  - {address: 192.0.2.2, as: 65001, password_secret: {name: bgp-auth, key: b}}
";
    let mut l = Layers::default();
    l.add_yaml("f.yaml", yaml).unwrap();
    let cfg = Config::from_layers(&l, "n").unwrap();
    let o = Options {
        kind: Kind::Rbac,
        set: Vec::new(),
        cfg,
        flags: Generator::default(),
        ignored: Vec::new(),
    };
    type Grant<'a> = (Option<String>, &'a str, Vec<String>, Vec<&'a str>);
    let g: Vec<Grant> = crate::manifest::rbac::grants(&o)
        .into_iter()
        .map(|g| (g.namespace, g.resource, g.names, g.verbs.to_vec()))
        .collect();
    assert_eq!(
        g,
        vec![
            (None, "nodes", vec![], vec!["get", "list", "watch"]),
            (
                Some("infra".into()),
                "secrets",
                vec!["bgp-auth".into()],
                vec!["get", "list", "watch"]
            ),
        ]
    );
}

#[test]
fn a_daemonset_with_graceful_restart_names_itself_and_may_read_only_itself() {
    let gr = [
        "--bgp",
        "--localAS",
        "65001",
        "--bgppeers",
        "192.0.2.1:65000::false",
        "--vipr-graceful-restart",
        "true",
        "--vipr-static-vips",
        "198.51.100.1",
    ];
    let ds = daemonset(&gr);
    let spec = ds.spec.unwrap().template.spec.unwrap();
    let c = container(&spec);
    assert_eq!(env_map(c)["vipr_daemonset"], "kube-system/vipr");
    let gen = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "vipr_pod_template_generation")
        .expect("the template generation from the downward API");
    assert_eq!(
        gen.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.labels['pod-template-generation']"
    );
    // It reads itself at SIGTERM: the ServiceAccount is mounted even though nothing else
    // of these settings calls the API.
    assert_eq!(spec.automount_service_account_token, Some(true));
    assert!(rbac_rules(&gr).contains(&rule(
        "kube-system",
        "apps",
        "daemonsets",
        &["vipr"],
        &["get"]
    )));
    // Without graceful restart: neither.
    let plain = &gr[..5];
    let plain = [plain, &gr[7..]].concat();
    let ds = daemonset(&plain);
    let c = ds.spec.unwrap().template.spec.unwrap();
    assert!(!env_map(container(&c)).contains_key("vipr_daemonset"));
    assert!(!rbac_rules(&plain).iter().any(|r| r.2 == "daemonsets"));
    // Rendered, never given.
    let mut given = gr.to_vec();
    given.extend(["--vipr-daemonset", "kube-system/other"]);
    let e = opts(&[&["daemonset"][..], &given].concat()).unwrap_err();
    assert!(
        e.to_string()
            .contains("vipr_daemonset is not a manifest setting"),
        "{e}"
    );
}

#[test]
fn a_static_pod_with_graceful_restart_watches_its_own_manifest() {
    let gr = [BGP_CP, &["--vipr-graceful-restart", "true"]].concat();
    let p = pod(&gr);
    let spec = p.spec.unwrap();
    let c = container(&spec);
    assert_eq!(
        env_map(c)["vipr_static_pod_manifest"],
        "/etc/kubernetes/manifests/vipr.yaml"
    );
    let m = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/etc/kubernetes/manifests")
        .expect("the manifest directory mounted");
    assert_eq!(m.read_only, Some(true));
    let v = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == m.name)
        .and_then(|v| v.host_path.clone())
        .unwrap();
    assert_eq!(
        (v.path.as_str(), v.type_.as_deref()),
        ("/etc/kubernetes/manifests", Some("Directory"))
    );
    // Another file name: its directory, and the setting once.
    let mut named = gr.to_vec();
    named.extend([
        "--vipr-static-pod-manifest",
        "/etc/k8s/static/kube-vip.yaml",
    ]);
    let spec = pod(&named).spec.unwrap();
    let c = container(&spec);
    let n = c
        .env
        .iter()
        .flatten()
        .filter(|e| e.name == "vipr_static_pod_manifest")
        .count();
    assert_eq!(n, 1);
    assert_eq!(
        env_map(c)["vipr_static_pod_manifest"],
        "/etc/k8s/static/kube-vip.yaml"
    );
    assert!(host_paths(&spec).contains(&"/etc/k8s/static".to_string()));
    // Without graceful restart: neither.
    let spec = pod(BGP_CP).spec.unwrap();
    assert!(!env_map(container(&spec)).contains_key("vipr_static_pod_manifest"));
    assert!(!host_paths(&spec).contains(&"/etc/kubernetes/manifests".to_string()));
    // Not for a DaemonSet.
    let e = opts(&[&["daemonset"][..], &named].concat()).unwrap_err();
    assert!(e.to_string().contains("vipr_static_pod_manifest"), "{e}");
}
