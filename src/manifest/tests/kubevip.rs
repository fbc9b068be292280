//! Every flag of kube-vip v1.2.3's `manifest` command: rendered as the variable it sets,
//! accepted as what vipr does anyway, or refused naming the flag; kube-vip's documented
//! command lines render.

use super::*;
use crate::config::keys;
use crate::manifest::kubevip::{Handling, FLAGS, KUBE_VIP_VERSION};

/// What `vipr manifest` does with one kube-vip flag given one value.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The container gets this variable with the value given, nothing else changes.
    R(&'static str),
    /// Accepted; the manifest does not change.
    Same,
    /// Accepted; the variable (a password) is not in a `value:`.
    Hidden(&'static str),
    /// Refused, the error naming the flag.
    No,
}
use Expect::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Base {
    Bgp,
    Arp,
    /// `vipr manifest daemonset`, ARP.
    Ds,
    /// `vipr manifest rbac`, ARP.
    Rbac,
}
use Base::*;

/// Every flag with a value kube-vip's documentation would give it, the setup it is tried on,
/// and what vipr does.
const CASES: &[(&str, &str, Base, Expect)] = &[
    ("interface", "eth1", Bgp, R("vip_interface")),
    ("serviceInterface", "eth1", Bgp, R("vip_servicesinterface")),
    (
        "allowInterfaceNotUp",
        "true",
        Bgp,
        R("vip_allow_interface_not_up"),
    ),
    ("vip", "192.0.2.20", Bgp, R("address")),
    ("vipSubnet", "32", Bgp, R("vip_subnet")),
    ("nodeName", "node-1", Bgp, No),
    ("address", "192.0.2.20", Bgp, R("address")),
    ("port", "6444", Bgp, R("port")),
    ("arp", "true", Arp, R("vip_arp")),
    ("wireguard", "true", Bgp, No),
    ("table", "true", Bgp, No),
    (
        "preserveVipOnLeadershipLoss",
        "true",
        Arp,
        R("vip_preserve_on_leadership_loss"),
    ),
    ("loseLeadership", "true", Arp, No),
    (
        "loseLeadershiptTimeoutSeconds",
        "30",
        Arp,
        R("vip_loseleadership_timeout_seconds"),
    ),
    ("enableLoadBalancer", "true", Bgp, R("lb_enable")),
    ("lbPort", "6444", Bgp, R("lb_port")),
    ("lbForwardingMethod", "masquerade", Bgp, R("lb_fwdmethod")),
    ("ddns", "true", Bgp, No),
    ("mirrorDestInterface", "eth2", Bgp, No),
    ("leaderElection", "true", Arp, R("vip_leaderelection")),
    ("leaderElectionType", "kubernetes", Arp, Same),
    ("leaseName", "cp-lock", Arp, R("vip_leasename")),
    ("leaseDuration", "20", Arp, R("vip_leaseduration")),
    ("leaseRenewDuration", "12", Arp, R("vip_renewdeadline")),
    ("leaseRetry", "3", Arp, R("vip_retryperiod")),
    ("bgp", "true", Bgp, R("bgp_enable")),
    (
        "bgpAttachIPToInterface",
        "true",
        Bgp,
        R("bgp_attach_ip_to_interface"),
    ),
    ("bgpRouterID", "192.0.2.2", Bgp, R("bgp_routerid")),
    ("sourceIF", "eth0", Bgp, R("bgp_sourceif")),
    ("sourceIP", "192.0.2.3", Bgp, R("bgp_sourceip")),
    ("localAS", "65001", Bgp, R("bgp_as")),
    ("bgpHoldTimer", "90", Bgp, R("bgp_hold_time")),
    (
        "bgpKeepAliveInterval",
        "3",
        Bgp,
        R("bgp_keepalive_interval"),
    ),
    ("peerAddress", "192.0.2.4", Bgp, R("bgp_peeraddress")),
    ("peerAS", "65002", Bgp, R("bgp_peeras")),
    ("peerPass", "s3cret", Bgp, Hidden("bgp_peerpass")),
    ("multihop", "true", Bgp, R("bgp_multihop")),
    ("bgppeers", "192.0.2.5:65000::false", Bgp, R("bgp_peers")),
    ("annotations", "example.com/bgp", Bgp, R("annotation")),
    ("zebra", "true", Bgp, No),
    (
        "zebraUrl",
        "unix:/var/run/frr/zserv.api",
        Bgp,
        R("zebra_url"),
    ),
    ("zebraVersion", "6", Bgp, R("zebra_version")),
    ("zebraSoftwareName", "frr8.3", Bgp, R("zebra_software_name")),
    (
        "controlPlaneHealthCheckAddress",
        "https://127.0.0.1:6443/livez",
        Bgp,
        R("control_plane_health_check_address"),
    ),
    (
        "controlPlaneHealthCheckPeriodSeconds",
        "7",
        Bgp,
        R("control_plane_health_check_period_seconds"),
    ),
    (
        "controlPlaneHealthCheckTimeoutSeconds",
        "2",
        Bgp,
        R("control_plane_health_check_timeout_seconds"),
    ),
    (
        "controlPlaneHealthCheckFailureThreshold",
        "4",
        Bgp,
        R("control_plane_health_check_failure_threshold"),
    ),
    (
        "controlPlaneHealthCheckCAPath",
        "/etc/kubernetes/pki/ca.crt",
        Bgp,
        R("control_plane_health_check_ca_path"),
    ),
    ("namespace", "kube-vip", Arp, R("cp_namespace")),
    ("log", "-4", Bgp, R("vip_loglevel")),
    ("tableID", "198", Bgp, R("vip_routingtableid")),
    ("tableType", "1", Bgp, R("vip_routingtabletype")),
    ("routingProtocol", "248", Bgp, R("vip_routingprotocol")),
    ("cleanRoutingTable", "true", Bgp, R("vip_cleanroutingtable")),
    ("controlplane", "true", Bgp, R("cp_enable")),
    ("autodetectcp", "true", Bgp, R("cp_detect")),
    ("services", "true", Bgp, R("svc_enable")),
    ("servicesElection", "true", Arp, R("svc_election")),
    ("lbClassOnly", "true", Bgp, R("lb_class_only")),
    ("lbClassName", "example.com/lb", Bgp, R("lb_class_name")),
    ("lbClassNameLegacyHandling", "true", Bgp, Same),
    ("onlyAllowTrafficServicePorts", "true", Bgp, No),
    ("enableNodeLabeling", "true", Arp, R("enable_node_labeling")),
    (
        "servicesLeaseName",
        "plndr-svcs-lock",
        Arp,
        R("svc_leasename"),
    ),
    ("dnsMode", "first", Bgp, R("dns_mode")),
    ("dhcpMode", "ipv4", Bgp, No),
    ("dhcpBackoffAttempts", "3", Bgp, R("dhcp_backoff_attempts")),
    (
        "disableServiceUpdates",
        "true",
        Bgp,
        R("disable_service_updates"),
    ),
    ("enableEndpoints", "true", Bgp, R("enable_endpoints")),
    (
        "loInterfaceGlobalScope",
        "true",
        Bgp,
        R("vip_interfaceloglobal"),
    ),
    ("healthCheckPort", "8080", Bgp, R("health_check_port")),
    ("debounceTime", "300ms", Bgp, R("debounce_time")),
    ("prometheusHTTPServer", ":2113", Bgp, R("prometheus_server")),
    ("etcdCACert", "/etc/etcd/ca.crt", Bgp, No),
    ("etcdCert", "/etc/etcd/client.crt", Bgp, No),
    ("etcdKey", "/etc/etcd/client.key", Bgp, No),
    ("etcdEndpoints", "https://192.0.2.6:2379", Bgp, No),
    (
        "k8sConfigPath",
        "/etc/kubernetes/super-admin.conf",
        Arp,
        R("k8s_config_file"),
    ),
    ("config-file", "/etc/kube-vip/config.yaml", Bgp, No),
    ("instanceName", "cp", Bgp, R("instance_name")),
    ("egressWithNftables", "true", Bgp, No),
    (
        "perServiceElectionOnDemand",
        "true",
        Bgp,
        R("per_service_election_on_demand"),
    ),
    ("inCluster", "true", Ds, Same),
    ("image", "ghcr.io/example/vipr:1", Ds, Same),
    ("taint", "true", Ds, Same),
    ("role", "true", Rbac, Same),
    ("rolebinding", "true", Rbac, Same),
];

fn base(b: Base) -> Vec<&'static str> {
    match b {
        Bgp => vec![
            "pod",
            "--bgp",
            "--controlplane",
            "--address",
            "192.0.2.10",
            "--bgppeers",
            "192.0.2.1:65000::false",
        ],
        Arp => vec![
            "pod",
            "--arp",
            "--interface",
            "lo",
            "--controlplane",
            "--address",
            "192.0.2.10",
        ],
        Ds | Rbac => vec![
            if b == Ds { "daemonset" } else { "rbac" },
            "--arp",
            "--interface",
            "lo",
            "--controlplane",
            "--address",
            "192.0.2.10",
            "--leaderElection",
        ],
    }
}

/// The base command line without the tested flag's own setting (`--vip` replaces
/// `--address`), then `--flag=value`.
fn with(b: Base, flag: &str, value: &str) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let replaced = |f: &str| f == flag || (flag == "vip" && f == "address");
    let mut skip_value = false;
    for a in base(b) {
        if skip_value {
            skip_value = false;
            if !a.starts_with("--") {
                continue;
            }
        }
        if a.strip_prefix("--").is_some_and(replaced) {
            skip_value = true;
            continue;
        }
        args.push(a.to_string());
    }
    args.push(format!("--{flag}={value}"));
    args
}

fn env_of(rendered: &str) -> Option<BTreeMap<String, String>> {
    let d = docs(rendered);
    let v = d.first()?;
    let spec = if v["kind"] == "Pod" {
        serde_json::from_value::<Pod>(v.clone()).ok()?.spec?
    } else if v["kind"] == "DaemonSet" {
        serde_json::from_value::<DaemonSet>(v.clone())
            .ok()?
            .spec?
            .template
            .spec?
    } else {
        return None;
    };
    Some(env_map(container(&spec)))
}

#[test]
fn every_flag_of_kube_vips_manifest_command_is_rendered_or_refused() {
    assert_eq!(KUBE_VIP_VERSION, crate::config::kubevip::KUBE_VIP_VERSION);
    // cmd/kube-vip.go: 82 persistent flags; cmd/kube-vip-manifests.go: 5.
    assert_eq!(FLAGS.len(), 87);
    let names: Vec<&str> = FLAGS.iter().map(|f| f.name).collect();
    let cased: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    assert_eq!(names, cased, "one case per flag, in FLAGS order");
    for &(flag, value, b, expect) in CASES {
        let args = with(b, flag, value);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = render_args(&base(b));
        let result = opts(&argv).and_then(|o| render(&o));
        match (expect, result) {
            (No, Err(e)) => {
                let e = e.to_string();
                assert!(e.contains(&format!("--{flag}")), "{argv:?}: {e}");
            }
            (No, Ok(_)) => panic!("{argv:?} must be refused"),
            (_, Err(e)) => panic!("{argv:?}: {e}"),
            (Same, Ok(after)) => {
                if b == Rbac {
                    assert_eq!(docs(&after), docs(&before), "{argv:?}");
                } else {
                    assert_eq!(env_of(&after), env_of(&before), "{argv:?}");
                }
            }
            (R(var), Ok(after)) => {
                let mut before = env_of(&before).expect("a pod");
                let mut after = env_of(&after).expect("a pod");
                assert_eq!(after.remove(var).as_deref(), Some(value), "{argv:?}");
                before.remove(var);
                assert_eq!(after, before, "{argv:?}: only {var} changes");
            }
            (Hidden(var), Ok(after)) => {
                assert!(!after.contains(value), "{argv:?}");
                assert_eq!(env_of(&after).expect("a pod").get(var), None);
            }
        }
    }
}

#[test]
fn a_kube_vip_flag_of_a_vipr_setting_is_a_spelling_of_it() {
    for f in FLAGS {
        let Handling::Env(var) = f.handling else {
            continue;
        };
        match keys::find(var) {
            Some(k) => assert!(
                keys::flag_name(k) == f.name || k.flags.contains(&f.name),
                "--{} sets {var}, a vipr setting: add {:?} to its flags in config/keys.rs",
                f.name,
                f.name
            ),
            None => assert!(
                crate::config::kubevip::find(var).is_some(),
                "--{} sets {var}: neither a setting nor a row of UNSUPPORTED",
                f.name
            ),
        }
    }
}

#[test]
fn refused_values_say_what_is_accepted_and_harmless_ones_only_warn() {
    let e = opts(&[&["pod"][..], BGP_CP, &["--leaderElectionType", "etcd"]].concat())
        .expect_err("etcd")
        .to_string();
    assert!(
        e.contains("--leaderElectionType") && e.contains("only kubernetes"),
        "{e}"
    );
    let e = opts(&[&["pod"][..], BGP_CP, &["--lbClassNameLegacyHandling=false"]].concat())
        .expect_err("legacy handling")
        .to_string();
    assert!(
        e.contains("--lbClassNameLegacyHandling") && e.contains("only true"),
        "{e}"
    );
    // A refused variable given the value that asks for nothing: accepted with a warning in
    // the header, not rendered.
    let o = opts(&[&["pod"][..], ARP_CP, &["--loseLeadership=false"]].concat()).unwrap();
    assert_eq!(o.ignored.len(), 1);
    let text = render(&o).unwrap();
    assert!(
        text.contains("# kube-vip flag --loseLeadership: vip_loseleadership=\"false\""),
        "{text}"
    );
    assert!(!text.contains("name: vip_loseleadership"), "{text}");
    // A bare boolean flag is true, as with kube-vip (cobra).
    assert!(opts(&[&["pod"][..], BGP_CP, &["--wireguard"]].concat()).is_err());
    assert!(opts(&[&["pod"][..], BGP_CP, &["--wireguard=false"]].concat()).is_ok());
    // --role cannot hold cluster-wide rules: Services are watched in every namespace.
    let e = opts(&[
        "rbac",
        "--bgp",
        "--services",
        "--bgppeers",
        "192.0.2.1:65000::false",
        "--role",
    ])
    .expect_err("cluster-wide")
    .to_string();
    assert!(e.contains("--role") && e.contains("services"), "{e}");
    // kube-vip's -n.
    let o = opts(&[&["pod"][..], ARP_CP, &["-n", "vip-system"]].concat()).unwrap();
    assert_eq!(o.get("cp_namespace"), Some("vip-system"));
}

#[test]
fn a_warned_flag_is_rendered_and_re_rendered_from_the_header() {
    let args = [
        &["daemonset"][..],
        ARP_CP,
        &[
            "--loInterfaceGlobalScope",
            "--allowInterfaceNotUp",
            "true",
            "--leaderElectionType=kubernetes",
        ],
    ]
    .concat();
    let first = render_args(&args);
    let env = env_of(&first).unwrap();
    assert_eq!(
        env.get("vip_interfaceloglobal").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        env.get("vip_allow_interface_not_up").map(String::as_str),
        Some("true")
    );
    let header = first.lines().nth(1).unwrap();
    for flag in [
        "--leaderElectionType=kubernetes",
        "--loInterfaceGlobalScope=true",
        "--allowInterfaceNotUp=true",
    ] {
        assert!(header.contains(flag), "{header}");
    }
    let words: Vec<&str> = header
        .trim_start_matches("#   vipr manifest ")
        .split(' ')
        .collect();
    assert_eq!(render_args(&words), first);
}

/// kube-vip's documented command lines (kube-vip.io/docs/installation/static and
/// /daemonset, for v1.x), with documentation addresses instead of 192.168.0.x: what the
/// container gets, variable by variable.
#[test]
fn kube_vips_documented_command_lines_render() {
    // ARP, control plane and Services, leader election.
    let env = env_map(container(
        &pod(&[
            "--interface",
            "eth0",
            "--address",
            "192.0.2.40",
            "--controlplane",
            "--services",
            "--arp",
            "--leaderElection",
        ])
        .spec
        .unwrap(),
    ));
    let want: BTreeMap<String, String> = [
        ("address", "192.0.2.40"),
        ("vip_interface", "eth0"),
        ("cp_enable", "true"),
        ("svc_enable", "true"),
        ("vip_arp", "true"),
        ("vip_leaderelection", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(env, want);
    // BGP, with the timers kube-vip's generator drops (vipr renders them).
    let env = env_map(container(
        &pod(&[
            "--interface",
            "eth0",
            "--address",
            "192.0.2.40",
            "--controlplane",
            "--services",
            "--bgp",
            "--localAS",
            "65000",
            "--bgpRouterID",
            "192.0.2.2",
            "--bgppeers",
            "192.0.2.10:65000::false,192.0.2.11:65000::false",
            "--bgpHoldTimer",
            "9",
            "--bgpKeepAliveInterval",
            "3",
        ])
        .spec
        .unwrap(),
    ));
    assert_eq!(env["bgp_hold_time"], "9");
    assert_eq!(env["bgp_keepalive_interval"], "3");
    // As text, the way the kubelet reads it.
    let text = render_args(&[
        "pod",
        "--bgp",
        "--controlplane",
        "--address",
        "192.0.2.40",
        "--bgppeers",
        "192.0.2.10:65000::false",
        "--bgpHoldTimer",
        "9",
        "--bgpKeepAliveInterval",
        "3",
    ]);
    for want in [
        "    - name: bgp_hold_time\n      value: \"9\"\n",
        "    - name: bgp_keepalive_interval\n      value: \"3\"\n",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    assert!(
        text.contains(" --bgpHoldTimer=9 --bgpKeepAliveInterval=3"),
        "{text}"
    );
    assert_eq!(
        env["bgp_peers"],
        "192.0.2.10:65000::false,192.0.2.11:65000::false"
    );
    assert_eq!(env["bgp_as"], "65000");
    assert_eq!(env["bgp_routerid"], "192.0.2.2");
    assert_eq!(env["bgp_enable"], "true");
    // The k3s DaemonSet.
    let ds = daemonset(&[
        "--interface",
        "eth0",
        "--address",
        "192.0.2.40",
        "--inCluster",
        "--taint",
        "--controlplane",
        "--services",
        "--arp",
        "--leaderElection",
    ]);
    let env = env_map(container(&ds.spec.unwrap().template.spec.unwrap()));
    assert_eq!(env["vip_leaderelection"], "true");
    assert_eq!(env["address"], "192.0.2.40");
}
