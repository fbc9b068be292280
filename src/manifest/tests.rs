//! Unit tests of the manifest generator: kube-vip's flag spellings, the environment read
//! back through the daemon's own configuration parser, capabilities and mounts per mode,
//! RBAC rules per mode, rejected combinations, and re-rendering from the header.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::Value;

use super::*;
use crate::config::Mode;

mod cli;
mod kubevip;
mod rbac;
mod readback;
mod secrets;

/// `vipr manifest ARGS...` parsed and validated.
fn opts(args: &[&str]) -> Result<Options, ManifestError> {
    let mut argv = vec!["manifest"];
    argv.extend_from_slice(args);
    let m = command()
        .try_get_matches_from(argv)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let (name, sub) = m.subcommand().expect("kind");
    Options::from_matches(Kind::from_name(name).expect("kind"), sub)
}

fn render_args(args: &[&str]) -> String {
    render(&opts(args).unwrap_or_else(|e| panic!("{args:?}: {e}")))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The YAML documents of a rendering, as JSON values.
fn docs(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| {
            d.lines()
                .any(|l| !l.starts_with('#') && !l.trim().is_empty())
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}\n{d}")))
        .collect()
}

fn pod(args: &[&str]) -> Pod {
    let mut a = vec!["pod"];
    a.extend_from_slice(args);
    let y = render_args(&a);
    let d = docs(&y);
    assert_eq!(d.len(), 1, "{y}");
    serde_json::from_value(d[0].clone()).expect("a Pod")
}

fn daemonset(args: &[&str]) -> DaemonSet {
    let mut a = vec!["daemonset"];
    a.extend_from_slice(args);
    let d = docs(&render_args(&a));
    serde_json::from_value(d[0].clone()).expect("a DaemonSet")
}

fn container(spec: &PodSpec) -> &Container {
    assert_eq!(spec.containers.len(), 1);
    &spec.containers[0]
}

fn env_map(c: &Container) -> BTreeMap<String, String> {
    c.env
        .iter()
        .flatten()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect()
}

fn caps(c: &Container) -> (Vec<String>, Vec<String>) {
    let cap = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.clone())
        .expect("capabilities");
    (cap.add.unwrap_or_default(), cap.drop.unwrap_or_default())
}

fn host_paths(spec: &PodSpec) -> Vec<String> {
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|v| v.host_path.as_ref().map(|h| h.path.clone()))
        .collect()
}

const BGP_CP: &[&str] = &[
    "--vip",
    "192.0.2.10",
    "--controlplane",
    "--bgp",
    "--localAS",
    "65001",
    "--bgppeers",
    "10.0.0.1:65000::false",
];

const ARP_CP: &[&str] = &[
    "--vip",
    "10.0.0.100",
    "--interface",
    "eth0",
    "--controlplane",
    "--arp",
    "--leaderElection",
];

#[test]
fn kube_vip_flag_spellings_become_kube_vip_env_names() {
    let p = pod(&[
        "--interface",
        "lo",
        "--address",
        "192.0.2.10",
        "--port",
        "6443",
        "--controlplane",
        "--services",
        "--bgp",
        "--localAS",
        "65001",
        "--bgpRouterID",
        "10.0.0.2",
        "--bgppeers",
        "10.0.0.1:65000::false",
        "--peerAddress",
        "10.0.0.3",
        "--peerAS",
        "65003",
        "--lbEnable",
        "--leaseDuration",
        "20",
    ]);
    let spec = p.spec.expect("spec");
    let env = env_map(container(&spec));
    let want = [
        ("vip_interface", "lo"),
        ("address", "192.0.2.10"),
        ("port", "6443"),
        ("cp_enable", "true"),
        ("svc_enable", "true"),
        ("bgp_enable", "true"),
        ("bgp_as", "65001"),
        ("bgp_routerid", "10.0.0.2"),
        ("bgp_peers", "10.0.0.1:65000::false"),
        ("bgp_peeraddress", "10.0.0.3"),
        ("bgp_peeras", "65003"),
        ("lb_enable", "true"),
        ("vip_leaseduration", "20"),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:?}");
    }
    // --vip is kube-vip's other spelling of --address; --arp and --leaderElection likewise.
    let p = pod(&[
        "--vip",
        "10.0.0.100",
        "--interface",
        "eth0",
        "--controlplane",
        "--arp",
        "--leaderElection",
    ]);
    let env = env_map(container(p.spec.as_ref().unwrap()));
    assert_eq!(env["address"], "10.0.0.100");
    assert_eq!(env["vip_arp"], "true");
    assert_eq!(env["vip_leaderelection"], "true");
}

#[test]
fn static_pod_bgp_is_host_network_least_capabilities_read_only_and_probed() {
    let p = pod(BGP_CP);
    assert_eq!(p.metadata.namespace.as_deref(), Some("kube-system"));
    let spec = p.spec.unwrap();
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.service_account_name, None);
    assert_eq!(spec.automount_service_account_token, Some(false));
    let c = container(&spec);
    assert_eq!(c.args.as_deref(), Some(&["manager".to_string()][..]));
    assert_eq!(caps(c), (vec!["NET_ADMIN".into()], vec!["ALL".into()]));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let req = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .expect("requests");
    assert!(
        req.contains_key("cpu") && req.contains_key("memory"),
        "{req:?}"
    );
    let live = c
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("liveness");
    let ready = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("readiness");
    assert_eq!(live.path.as_deref(), Some("/healthz"));
    assert_eq!(ready.path.as_deref(), Some("/readyz"));
    assert_eq!(
        live.port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2112)
    );
    assert_eq!(
        live.host, None,
        "probed on the node address with prometheus_server :2112"
    );
    // BGP with static peers never talks to the API server: no admin.conf in the pod.
    assert_eq!(host_paths(&spec), vec!["/run/vipr".to_string()]);
}

#[test]
fn bgp_unnumbered_peers_add_net_raw_for_router_advertisements() {
    let mut args = BGP_CP.to_vec();
    let last = args.len() - 1;
    args[last] = "unnumbered:eth1:65000";
    let spec = pod(&args).spec.unwrap();
    assert_eq!(caps(container(&spec)).0, vec!["NET_ADMIN", "NET_RAW"]);
}

#[test]
fn static_pod_arp_mounts_admin_conf_and_adds_net_raw() {
    let spec = pod(ARP_CP).spec.unwrap();
    let c = container(&spec);
    assert_eq!(caps(c).0, vec!["NET_ADMIN", "NET_RAW"]);
    assert_eq!(host_paths(&spec), vec!["/run/vipr", ADMIN_CONF]);
    let m = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == ADMIN_CONF)
        .expect("mount");
    assert_eq!(m.read_only, Some(true));
    assert!(
        !env_map(c).contains_key("k8s_config_file"),
        "admin.conf is the daemon's default"
    );
    let kc = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "kubeconfig")
        .unwrap();
    assert_eq!(
        kc.host_path.as_ref().unwrap().type_.as_deref(),
        Some("File")
    );

    // kubeadm 1.29+ first control-plane node: super-admin.conf, and the daemon told so.
    let spec = pod(&[ARP_CP, &["--super-admin"]].concat()).spec.unwrap();
    assert_eq!(host_paths(&spec), vec!["/run/vipr", SUPER_ADMIN_CONF]);
    assert_eq!(
        env_map(container(&spec))["k8s_config_file"],
        SUPER_ADMIN_CONF
    );
    // An explicit k8s_config_file is mounted where it is.
    let spec = pod(&[ARP_CP, &["--k8sConfigPath", "/etc/rancher/k3s/k3s.yaml"]].concat())
        .spec
        .unwrap();
    assert_eq!(
        host_paths(&spec),
        vec!["/run/vipr", "/etc/rancher/k3s/k3s.yaml"]
    );
}

#[test]
fn low_ports_add_net_bind_service_and_a_bound_address_is_probed_there() {
    let spec = pod(&[
        BGP_CP,
        &[
            "--vipr-bgp-listen",
            "0.0.0.0:179",
            "--prometheusHTTPServer",
            "127.0.0.1:2112",
        ],
    ]
    .concat())
    .spec
    .unwrap();
    let c = container(&spec);
    assert_eq!(caps(c).0, vec!["NET_ADMIN", "NET_BIND_SERVICE"]);
    let live = c
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(live.host.as_deref(), Some("127.0.0.1"));
    let spec = pod(&[BGP_CP, &["--prometheusHTTPServer", ""]].concat())
        .spec
        .unwrap();
    let c = container(&spec);
    assert!(c.liveness_probe.is_none() && c.readiness_probe.is_none());
}

#[test]
fn daemonset_in_cluster_uses_the_service_account_and_taint_pins_it_to_control_planes() {
    let ds = daemonset(&[
        "--inCluster",
        "--taint",
        "--bgp",
        "--services",
        "--bgppeers",
        "10.0.0.1:65000::false",
    ]);
    assert_eq!(ds.metadata.name.as_deref(), Some("vipr"));
    let spec = ds.spec.unwrap();
    let labels = spec.selector.match_labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/name"], "vipr");
    let tlabels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert!(
        labels.iter().all(|(k, v)| tlabels.get(k) == Some(v)),
        "selector matches the template"
    );
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some("vipr"));
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(
        host_paths(&pod),
        vec!["/run/vipr"],
        "no kubeconfig from the host"
    );
    let tol = pod.tolerations.clone().unwrap();
    let effects: Vec<_> = tol
        .iter()
        .map(|t| (t.effect.clone().unwrap(), t.operator.clone().unwrap()))
        .collect();
    assert_eq!(
        effects,
        vec![
            ("NoSchedule".into(), "Exists".into()),
            ("NoExecute".into(), "Exists".into())
        ]
    );
    let terms = pod
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    let keys: Vec<String> = terms
        .iter()
        .flat_map(|t| t.match_expressions.clone().unwrap())
        .map(|e| e.key)
        .collect();
    assert_eq!(
        keys,
        vec![
            "node-role.kubernetes.io/control-plane",
            "node-role.kubernetes.io/master"
        ]
    );

    // Without --taint: every node. Without --inCluster (kube-vip's flag) still the
    // ServiceAccount: a DaemonSet runs on workers too, and admin.conf is cluster-admin.
    let pod = daemonset(&["--bgp", "--services", "--bgppeers", "10.0.0.1:65000::false"])
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert!(pod.tolerations.is_none() && pod.affinity.is_none());
    assert_eq!(pod.service_account_name.as_deref(), Some("vipr"));
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(host_paths(&pod), vec!["/run/vipr"], "no admin.conf");
    // A DaemonSet that never calls the API: no token at all.
    let pod = daemonset(&[
        "--bgp",
        "--controlplane",
        "--vip",
        "192.0.2.1",
        "--bgppeers",
        "10.0.0.1:65000::false",
    ])
    .spec
    .unwrap()
    .template
    .spec
    .unwrap();
    assert_eq!(pod.service_account_name, None);
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(host_paths(&pod), vec!["/run/vipr"]);
}

#[test]
fn yaml_keeps_strings_strings() {
    // "true", "6443" and "0.1.0" must stay strings for Kubernetes (env values, label values).
    let y = render_args(&[
        "pod",
        "--vip",
        "10.0.0.100",
        "--interface",
        "eth0",
        "--controlplane",
        "--arp",
        "--port",
        "6443",
    ]);
    assert!(y.contains("value: \"true\""), "{y}");
    assert!(y.contains("value: \"6443\""), "{y}");
    assert!(
        y.contains("app.kubernetes.io/version: \"0.1.0\"")
            || !env!("CARGO_PKG_VERSION").contains('.'),
        "{y}"
    );
    let d = docs(&y);
    assert!(d[0]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["value"].is_string() || e["valueFrom"].is_object()));
    assert_eq!(
        opts(&[
            "pod",
            "--vip",
            "10.0.0.100",
            "--interface",
            "eth0",
            "--controlplane",
            "--arp"
        ])
        .unwrap()
        .cfg
        .node
        .mode,
        Mode::Arp
    );
}
