//! Table test over every setting: a good value lands in the typed config, a bad value is
//! rejected naming the variable and the value; plus precedence and mode conflicts.

use std::collections::HashMap;
use std::time::Duration;

use super::keys::KEYS;
use super::*;

/// A self-signed CA certificate (EC P-256, CN vipr-test-ca) in a file of the temporary
/// directory (one fixed name, the same text every run, written atomically): the path, for
/// `control_plane_health_check_ca_path`.
fn test_ca() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let p = std::env::temp_dir().join("vipr-test-ca.crt");
        let tmp = std::env::temp_dir().join(format!("vipr-test-ca.crt.{}", std::process::id()));
        std::fs::write(&tmp, TEST_CA_PEM).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p.to_str().unwrap().to_string()
    })
}

const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBhDCCASugAwIBAgIUSwVa1KZkP6hpwZgEMQvxeYzlwvAwCgYIKoZIzj0EAwIw\nFzEVMBMGA1UEAwwMdmlwci10ZXN0LWNhMCAXDTI2MTIwMjIzMDgzMloYDzIxMjYx\nMTA4MjMwODMyWjAXMRUwEwYDVQQDDAx2aXByLXRlc3QtY2EwWTATBgcqhkjOPQIB\nBggqhkjOPQMBBwNCAAS1sH94aqqVcGtI03LJMQ3l9sn2PYPYGF04QKPTX17qvwah\nOEP+tNvBnsI5QgM8b29uGHuqEPhAt3mLOUeBiEdho1MwUTAdBgNVHQ4EFgQUVmRS\nFb4zZ6rLs90nmszR+wIcns0wHwYDVR0jBBgwFoAUVmRSFb4zZ6rLs90nmszR+wIc\nns0wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiAU1i1v9Jry3xnn\nceFd8p2KOK1doBAb2Qw4/mwCjYCiuQIgdluQ41DOlDzkQlLtKJbeVQAr5FCnM4O7\n+u9VpDHbwZg=\n-----END CERTIFICATE-----\n";

fn base() -> HashMap<&'static str, String> {
    [
        ("bgp_enable", "true"),
        ("cp_enable", "true"),
        ("address", "192.0.2.10"),
        ("bgp_peers", "192.0.2.1:65000::false"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

fn build(env: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
    let mut l = Layers::default();
    l.add_env(|n| env.get(n).cloned())?;
    Config::from_layers(&l, "node-a")
}

fn election(c: &Config) -> &Election {
    c.arp.election.as_ref().expect("vip_leaderelection")
}

fn gr_time(c: &Config) -> Option<u16> {
    c.bgp.defaults.graceful_restart.map(|g| g.restart_time)
}

type Check = fn(&Config) -> bool;

/// (key, good value, check on the result, bad value, extra settings)
type Row = (
    &'static str,
    &'static str,
    Check,
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
);

fn rows() -> Vec<Row> {
    vec![
        (
            "address",
            "192.0.2.10,2001:db8::10",
            |c| c.control_plane.vips.len() == 2,
            Some("192.0.2.10,vip.example"),
            &[],
        ),
        (
            "dns_mode",
            "IPv6",
            |c| c.control_plane.dns.as_ref().unwrap().mode == DnsMode::Ipv6,
            Some("both"),
            &[("address", "cp.example.test")],
        ),
        (
            "vip_address",
            "192.0.2.11",
            |c| c.control_plane.vips == vec!["192.0.2.11".parse::<IpAddr>().unwrap()],
            Some("192.0.2.300"),
            &[("address", "")],
        ),
        (
            "port",
            "7443",
            |c| c.control_plane.port == 7443,
            Some("70000"),
            &[],
        ),
        (
            "vip_interface",
            "eth0",
            |c| c.vips.interface == "eth0",
            None,
            &[],
        ),
        (
            "vip_subnet",
            "24,64",
            |c| (c.vips.subnet_v4, c.vips.subnet_v6) == (24, 64),
            Some("33"),
            &[],
        ),
        (
            "cp_enable",
            "true",
            |c| c.control_plane.enabled,
            Some("maybe"),
            &[],
        ),
        ("svc_enable", "true", |c| c.services.enabled, Some("2"), &[]),
        (
            "svc_namespace",
            "apps",
            |c| c.services.filter.namespace.as_deref() == Some("apps"),
            None,
            &[],
        ),
        ("vip_nodename", "cp-1", |c| c.node.name == "cp-1", None, &[]),
        (
            "bgp_enable",
            "true",
            |c| c.node.mode == Mode::Bgp,
            Some("yes please"),
            &[],
        ),
        (
            "bgp_routerid",
            "192.0.2.99",
            |c| c.bgp.router_id == RouterId::Fixed("192.0.2.99".parse().unwrap()),
            Some("2001:db8::1"),
            &[],
        ),
        (
            "bgp_routerinterface",
            "eth0",
            |c| c.bgp.router_id == RouterId::Interface("eth0".into()),
            None,
            &[],
        ),
        (
            "bgp_as",
            "4200000001",
            |c| c.bgp.local_as == 4_200_000_001,
            Some("-1"),
            &[],
        ),
        (
            "bgp_peers",
            "[2001:db8::1]:65001:pw:true:1179",
            |c| c.bgp.peers[0].port == 1179 && c.bgp.peers[0].is_multihop(),
            Some("192.0.2.1:x"),
            &[],
        ),
        (
            "bgp_peeraddress",
            "198.51.100.1",
            |c| c.bgp.peers.len() == 2 && c.bgp.peers[1].remote_as == 65000,
            Some("peer"),
            &[],
        ),
        (
            "bgp_peeras",
            "65010",
            |c| c.bgp.peers[1].remote_as == 65010,
            Some("AS1"),
            &[("bgp_peeraddress", "198.51.100.1")],
        ),
        (
            "bgp_peerpass",
            "s3cret",
            |c| c.bgp.peers[1].password.as_ref().unwrap().expose() == "s3cret",
            None,
            &[("bgp_peeraddress", "198.51.100.1")],
        ),
        (
            "bgp_multihop",
            "true",
            |c| c.bgp.peers[1].is_multihop(),
            Some("sometimes"),
            &[("bgp_peeraddress", "198.51.100.1")],
        ),
        (
            "bgp_sourceip",
            "192.0.2.50",
            |c| c.bgp.source == Some(SessionSource::Address("192.0.2.50".parse().unwrap())),
            Some("here"),
            &[],
        ),
        (
            "bgp_sourceif",
            "eth1",
            |c| c.bgp.source == Some(SessionSource::Interface("eth1".into())),
            None,
            &[],
        ),
        (
            "vip_servicesinterface",
            "eth1",
            |c| c.vips.services_interface.as_deref() == Some("eth1"),
            Some("auto"),
            &[],
        ),
        (
            "vipr_service_interfaces",
            "eth2, vlan100",
            |c| c.vips.service_interfaces == ["eth2", "vlan100"],
            Some("a/b"),
            &[],
        ),
        (
            "bgp_attach_ip_to_interface",
            "false",
            |c| !c.vips.bgp_attach,
            Some("maybe"),
            &[],
        ),
        (
            "mpbgp_nexthop",
            "auto_sourceif",
            |c| c.bgp.mp_next_hop.mode == Some(MpNextHopMode::AutoSourceIf),
            Some("self"),
            &[("bgp_sourceif", "eth1")],
        ),
        (
            "mpbgp_ipv4",
            "198.51.100.4",
            |c| c.bgp.mp_next_hop.v4 == Some("198.51.100.4".parse().unwrap()),
            Some("2001:db8::4"),
            &[("mpbgp_nexthop", "fixed")],
        ),
        (
            "mpbgp_ipv6",
            "[2001:db8::6]",
            |c| c.bgp.mp_next_hop.v6 == Some("2001:db8::6".parse().unwrap()),
            Some("198.51.100.6"),
            &[("mpbgp_nexthop", "fixed")],
        ),
        (
            "bgp_hold_time",
            "9",
            |c| c.bgp.defaults.hold_time == 9 && c.bgp.peers[0].hold_time == 9,
            Some("2"),
            &[("bgp_keepalive_interval", "3")],
        ),
        (
            "bgp_keepalive_interval",
            "3",
            |c| c.bgp.defaults.keepalive == Some(3) && c.bgp.peers[0].keepalive == Some(3),
            Some("30"),
            &[],
        ),
        (
            "annotation",
            "metal.equinix.com",
            |c| {
                c.peer_source
                    == PeerSource::Annotations {
                        prefix: "metal.equinix.com".into(),
                    }
            },
            None,
            &[],
        ),
        (
            "vip_packet",
            "true",
            |c| matches!(c.peer_source, PeerSource::EquinixMetal { .. }),
            Some("metal"),
            &[],
        ),
        (
            "control_plane_health_check_address",
            "https://127.0.0.1:6443/livez",
            |c| c.control_plane.health.as_ref().unwrap().failure_threshold == 3,
            Some("127.0.0.1:6443"),
            &[],
        ),
        (
            "control_plane_health_check_period_seconds",
            "2",
            |c| c.control_plane.health.as_ref().unwrap().period == Duration::from_secs(2),
            Some("0"),
            &[("control_plane_health_check_address", "http://127.0.0.1/")],
        ),
        (
            "control_plane_health_check_timeout_seconds",
            "1",
            |c| c.control_plane.health.as_ref().unwrap().timeout == Duration::from_secs(1),
            Some("x"),
            &[("control_plane_health_check_address", "http://127.0.0.1/")],
        ),
        (
            "control_plane_health_check_failure_threshold",
            "5",
            |c| c.control_plane.health.as_ref().unwrap().failure_threshold == 5,
            Some("0"),
            &[("control_plane_health_check_address", "http://127.0.0.1/")],
        ),
        (
            "control_plane_health_check_ca_path",
            test_ca(),
            |c| {
                let ca = c.control_plane.health.as_ref().unwrap().ca.as_ref();
                ca.is_some_and(|ca| ca.pem.starts_with(b"-----BEGIN CERTIFICATE-----"))
            },
            Some("/nonexistent/ca.crt"),
            &[("control_plane_health_check_address", "https://127.0.0.1/")],
        ),
        (
            "vip_arp",
            "true",
            |c| c.node.mode == Mode::Arp,
            Some("nope"),
            &[("bgp_enable", "false"), ("vip_interface", "eth0")],
        ),
        (
            "vip_arpRate",
            "1500",
            |c| c.arp.rate == Duration::from_millis(1500),
            Some("fast"),
            &[],
        ),
        (
            "vip_leaderelection",
            "true",
            |c| c.arp.election.is_some(),
            Some("x"),
            &[],
        ),
        (
            "vip_leasename",
            "my-lock",
            |c| election(c).lease_name == "my-lock",
            None,
            &[("vip_leaderelection", "true")],
        ),
        (
            "kubernetes_addr",
            "127.0.0.1:6443",
            |c| {
                c.node.kubernetes_addr.as_ref().map(|u| u.to_string())
                    == Some("https://127.0.0.1:6443/".into())
            },
            Some("ftp://x"),
            &[],
        ),
        (
            "vip_preserve_on_leadership_loss",
            "true",
            |c| c.arp.preserve,
            Some("maybe"),
            &[],
        ),
        (
            "per_service_election_on_demand",
            "true",
            |c| election(c).on_demand,
            Some("maybe"),
            &[("vip_leaderelection", "true")],
        ),
        (
            "vipr_bgp_leader_only",
            "true",
            |c| election(c).bgp_leader_only,
            Some("maybe"),
            &[("vip_leaderelection", "true")],
        ),
        (
            "svc_leasename",
            "infra/svcs",
            |c| {
                let e = election(c);
                (
                    e.services_lease_namespace.as_str(),
                    e.services_lease_name.as_str(),
                ) == ("infra", "svcs")
                    && (e.lease_namespace.as_str(), e.lease_name.as_str())
                        == ("kube-system", "plndr-cp-lock")
            },
            Some("a/b/c"),
            &[("vip_leaderelection", "true")],
        ),
        (
            "vip_leaseduration",
            "20",
            |c| election(c).timing.lease_duration == Duration::from_secs(20),
            Some("5"),
            &[("vip_leaderelection", "true")],
        ),
        (
            "vip_renewdeadline",
            "8",
            |c| election(c).timing.renew_deadline == Duration::from_secs(8),
            Some("15"),
            &[("vip_leaderelection", "true")],
        ),
        (
            "vip_retryperiod",
            "0.5",
            |c| election(c).timing.retry_period == Duration::from_millis(500),
            Some("10"),
            &[("vip_leaderelection", "true")],
        ),
        (
            "cp_namespace",
            "infra",
            |c| election(c).namespace == "infra",
            None,
            &[("vip_leaderelection", "true")],
        ),
        (
            "svc_election",
            "true",
            |c| election(c).per_service,
            Some("x"),
            &[("vip_leaderelection", "true")],
        ),
        (
            "lb_class_only",
            "true",
            |c| c.services.filter.class_only,
            Some("x"),
            &[],
        ),
        (
            "enable_node_labeling",
            "true",
            |c| c.node.node_labeling,
            Some("x"),
            &[],
        ),
        (
            "disable_service_updates",
            "true",
            |c| !c.services.status_updates,
            Some("x"),
            &[],
        ),
        (
            "lb_class_name",
            "vipr",
            |c| c.services.filter.class_name == "vipr",
            None,
            &[],
        ),
        ("lb_enable", "true", |c| c.lb.enabled, Some("x"), &[]),
        ("lb_port", "8443", |c| c.lb.port == 8443, Some("0"), &[]),
        (
            "lb_fwdmethod",
            "masquerade",
            |c| c.lb.fwd == crate::lb::FwdMethod::Masquerade,
            Some("nat"),
            &[],
        ),
        (
            "backend_health_check_interval",
            "7",
            |c| c.lb.health_interval == Duration::from_secs(7),
            Some("-7"),
            &[],
        ),
        (
            "prometheus_server",
            "127.0.0.1:9100",
            |c| c.http.addr == Some("127.0.0.1:9100".parse().unwrap()),
            Some("metrics"),
            &[],
        ),
        (
            "vipr_status_allow",
            "10.1.2.3/8, 2001:db8::/32, 192.0.2.7",
            |c| {
                c.http.status_allow
                    == [
                        "10.0.0.0/8".parse().unwrap(),
                        "2001:db8::/32".parse().unwrap(),
                        "192.0.2.7/32".parse().unwrap(),
                    ]
            },
            Some("10.0.0.0/33"),
            &[],
        ),
        (
            "k8s_config_file",
            "/etc/kubernetes/super-admin.conf",
            |c| c.node.kubeconfig.ends_with("super-admin.conf"),
            None,
            &[],
        ),
        (
            "vip_loglevel",
            "-4",
            |c| c.log.level == LogLevel::Debug,
            Some("loud"),
            &[],
        ),
        (
            "vipr_communities",
            "65000:100,65535:0",
            |c| c.bgp.attrs.communities.len() == 2,
            Some("65000"),
            &[],
        ),
        (
            "vipr_large_communities",
            "65000:1:2",
            |c| c.bgp.attrs.large_communities.len() == 1,
            Some("1:2"),
            &[],
        ),
        (
            "vipr_local_pref",
            "200",
            |c| c.bgp.attrs.local_pref == Some(200),
            Some("high"),
            &[],
        ),
        (
            "vipr_med",
            "10",
            |c| c.bgp.attrs.med == Some(10),
            Some("-1"),
            &[],
        ),
        (
            "vipr_bgp_attribute_sets",
            "gold;communities=65000:100|no-export;large-communities=65000:1:2;local-pref=200;med=5;prepend=2,edge;communities=blackhole",
            |c| {
                let g = &c.bgp.attr_sets.sets["gold"];
                c.bgp.attr_sets.sets.len() == 2
                    && g.communities == [bgp::Community::new(65000, 100), bgp::Community::NO_EXPORT]
                    && g.large_communities.len() == 1
                    && (g.local_pref, g.med, g.as_path_prepend) == (Some(200), Some(5), 2)
            },
            Some("gold;communities=65000:no-export"),
            &[],
        ),
        (
            "vipr_control_plane_bgp_attributes",
            "gold",
            |c| c.bgp.attr_sets.control_plane == ["gold"],
            Some("silver"),
            &[("vipr_bgp_attribute_sets", "gold;med=1")],
        ),
        (
            "vipr_bgp_listen",
            "[::]:179",
            |c| c.bgp.listen.unwrap().port() == 179,
            Some("179"),
            &[],
        ),
        (
            "vipr_bgp_gtsm",
            "2",
            |c| c.bgp.defaults.gtsm_hops == Some(2) && c.bgp.peers[0].gtsm_hops == Some(2),
            Some("255"),
            &[],
        ),
        (
            "vipr_graceful_restart",
            "true",
            |c| gr_time(c) == Some(120),
            Some("x"),
            &[],
        ),
        (
            "vipr_graceful_restart_time",
            "300",
            |c| gr_time(c) == Some(300),
            Some("5000"),
            &[("vipr_graceful_restart", "true")],
        ),
        (
            "vipr_node_labels",
            "rack=r1,topology.kubernetes.io/zone=a",
            |c| {
                c.bgp
                    .node_labels
                    .as_ref()
                    .is_some_and(|l| l["rack"] == "r1" && l.len() == 2)
            },
            Some("rack"),
            &[],
        ),
        (
            "vipr_bfd",
            "true;100;100;3",
            |c| {
                c.bgp
                    .defaults
                    .bfd
                    .is_some_and(|b| b.min_rx.as_millis() == 100)
                    && c.bgp.peers[0].bfd == c.bgp.defaults.bfd
            },
            Some("true;10;100;3"),
            &[],
        ),
        (
            "vipr_static_vips",
            "198.51.100.5,2001:db8::5",
            |c| c.vips.static_vips.len() == 2,
            Some("198.51.100.500"),
            &[],
        ),
        (
            "vipr_drain_seconds",
            "5",
            |c| c.bgp.drain == Some(Duration::from_secs(5)),
            Some("x"),
            &[],
        ),
        (
            "vipr_instance",
            "services",
            |c| {
                c.node.instance.name() == "services"
                    && c.node.state_dir == std::path::Path::new("/run/vipr/services")
            },
            Some("Services!"),
            &[],
        ),
        (
            "vipr_state_dir",
            "/var/run/x",
            |c| c.node.state_dir.ends_with("x"),
            None,
            &[],
        ),
        (
            "vipr_log_format",
            "json",
            |c| c.node.log_json,
            Some("xml"),
            &[],
        ),
        (
            "vipr_peers_from",
            "equinix-metal",
            |c| matches!(c.peer_source, PeerSource::EquinixMetal { .. }),
            Some("dns"),
            &[],
        ),
        (
            "vipr_metadata_url",
            "http://127.0.0.1:8080/metadata",
            |c| matches!(&c.peer_source, PeerSource::EquinixMetal { url, .. } if url.starts_with("http://127")),
            None,
            &[("vipr_peers_from", "equinix-metal")],
        ),
        (
            "vipr_metadata_interval",
            "10",
            |c| matches!(c.peer_source, PeerSource::EquinixMetal { interval, .. } if interval == Duration::from_secs(10)),
            Some("0"),
            &[("vipr_peers_from", "equinix-metal")],
        ),
        (
            "vipr_lb_backend",
            "nftables",
            |c| c.lb.engine == Some(crate::lb::Kind::Nftables),
            Some("iptables"),
            &[],
        ),
        (
            "vipr_lb_scheduler",
            "wlc",
            |c| c.lb.scheduler == crate::lb::Scheduler::Wlc,
            Some("random"),
            &[],
        ),
        (
            "vipr_lb_backends",
            "192.0.2.21:6443,192.0.2.22",
            |c| c.lb.backends.len() == 2,
            Some("backend.example"),
            &[],
        ),
        (
            "vipr_pools",
            "198.51.100.0/24;name=web,203.0.113.10-203.0.113.20;namespaces=apps|db",
            |c| {
                let p = &c.services.pools;
                p.len() == 2
                    && p[0].name == "web"
                    && p[1].name == "pool2"
                    && !p[1].serves("default")
            },
            Some("198.51.100.0/33"),
            &[],
        ),
        (
            "vipr_pools_required",
            "true",
            |c| c.services.pools_required,
            Some("sure"),
            &[],
        ),
        (
            "vipr_pool_configmap",
            "infra/pools",
            |c| c.services.pool_configmap == Some(("infra".into(), "pools".into())),
            Some("pools"),
            &[],
        ),
        (
            "vipr_claims_namespace",
            "vipr-system",
            |c| c.services.claims_namespace == "vipr-system",
            None,
            &[],
        ),
        (
            "vipr_daemonset",
            "kube-system/vipr",
            |c| c.node.daemonset.as_ref().is_some_and(|d| d.namespace == "kube-system" && d.name == "vipr" && d.template_generation == "3"),
            Some("vipr"),
            &[("vipr_pod_template_generation", "3")],
        ),
        (
            "vipr_pod_template_generation",
            "7",
            |c| c.node.daemonset.as_ref().is_some_and(|d| d.template_generation == "7"),
            Some("seven"),
            &[("vipr_daemonset", "kube-system/vipr")],
        ),
        (
            "vipr_static_pod_manifest",
            "/etc/kubernetes/manifests/vipr.yaml",
            |c| {
                c.node.static_pod_manifest.as_deref()
                    == Some(std::path::Path::new("/etc/kubernetes/manifests/vipr.yaml"))
            },
            Some("manifests/vipr.yaml"),
            &[],
        ),
        (
            "vipr_withdraw_cordoned",
            "false",
            |c| !c.services.withdraw_cordoned,
            Some("sometimes"),
            &[],
        ),
    ]
}

#[test]
fn every_key_has_a_row_and_every_row_behaves() {
    let rows = rows();
    for k in KEYS {
        assert!(
            rows.iter().any(|r| r.0 == k.name),
            "no table row for {}",
            k.name
        );
    }
    for (key, good, check, bad, extra) in rows {
        let mut env = base();
        for (k, v) in extra {
            env.insert(k, v.to_string());
        }
        env.insert(key, good.to_string());
        let c = build(&env).unwrap_or_else(|e| panic!("{key}={good}: {e}"));
        assert!(check(&c), "{key}={good} did not land: {c:?}");
        if let Some(bad) = bad {
            env.insert(key, bad.to_string());
            let e = build(&env)
                .expect_err(&format!("{key}={bad} accepted"))
                .to_string();
            assert!(
                e.contains(key),
                "{key}={bad}: error does not name the key: {e}"
            );
            let secret = keys::find(key).unwrap().secret;
            if secret {
                assert!(!e.contains(bad), "secret {key} leaked: {e}");
            } else {
                assert!(
                    e.contains(bad),
                    "{key}={bad}: error does not show the value: {e}"
                );
            }
        }
    }
}

#[test]
fn pools_may_name_only_attribute_sets_that_exist() {
    let mut env = base();
    env.insert("svc_enable", "true".into());
    env.insert(
        "vipr_bgp_attribute_sets",
        "gold;med=1,backup;local-pref=50".into(),
    );
    env.insert(
        "vipr_pools",
        "198.51.100.0/24;name=web;bgp-attributes=gold;bgp-allowed=backup".into(),
    );
    let c = build(&env).unwrap();
    assert_eq!(c.services.pools[0].bgp.attributes, ["gold"]);
    assert_eq!(c.services.pools[0].bgp.allowed, ["backup"]);
    for (key, value, says) in [
        (
            "vipr_pools",
            "198.51.100.0/24;name=web;bgp-allowed=blackhole",
            "\"blackhole\" is not in vipr_bgp_attribute_sets",
        ),
        (
            "vipr_pools",
            "198.51.100.0/24;bgp-attributes=a b",
            "\"a b\" is not a set name",
        ),
        (
            "vipr_bgp_attribute_sets",
            "gold;med=1,gold;med=2",
            "two sets named \"gold\"",
        ),
        (
            "vipr_bgp_attribute_sets",
            "gold;prepend=11",
            "prepend=\"11\"",
        ),
        (
            "vipr_bgp_attribute_sets",
            "gold;large-communities=65000:1",
            "65000:1",
        ),
    ] {
        let mut env = env.clone();
        env.insert(key, value.into());
        let e = build(&env).expect_err(value).to_string();
        assert!(e.contains(key) && e.contains(says), "{value}: {e}");
    }
}

#[test]
fn defaults_match_kube_vip() {
    let c = build(&base()).unwrap();
    assert_eq!(c.control_plane.port, 6443);
    assert_eq!(c.vips.interface, "lo");
    assert_eq!((c.vips.subnet_v4, c.vips.subnet_v6), (32, 128));
    assert_eq!(c.bgp.local_as, 65000);
    assert_eq!(
        (c.bgp.defaults.hold_time, c.bgp.defaults.keepalive),
        (30, Some(10))
    );
    assert_eq!(c.http.addr, Some("0.0.0.0:2112".parse().unwrap()));
    assert_eq!(c.http.status_allow, vec![], "/status for this host only");
    assert_eq!(c.node.name, "node-a");
    assert_eq!(c.arp.election, None);
    assert_eq!(
        c.node.kubeconfig,
        PathBuf::from("/etc/kubernetes/admin.conf")
    );
    assert_eq!(c.bgp.peers[0].port, 179);
    assert_eq!(c.peer_source, PeerSource::Static);
    assert_eq!(
        c.services.pool_configmap,
        Some(("kube-system".into(), "kubevip".into()))
    );
    assert_eq!(c.services.claims_namespace, "kube-system");
    assert!(c.services.pools.is_empty() && !c.services.pools_required);
    let mut env = base();
    env.insert("vip_leaderelection", "true".into());
    let e = build(&env).unwrap().arp.election.unwrap();
    assert_eq!(e.lease_name, "plndr-cp-lock");
    assert_eq!(e.namespace, "kube-system");
}

/// Lease names as kube-vip v1.2.3 reads them (`pkg/lease/lease.go` `NamespaceName`): a bare
/// name is in `cp_namespace`, `namespace/name` elsewhere; the services Lease defaults to
/// `plndr-svcs-lock` (`cmd/kube-vip.go` line 146).
#[test]
fn lease_names_take_an_optional_namespace() {
    let mut env = base();
    env.insert("vip_leaderelection", "true".into());
    env.insert("cp_namespace", "infra".into());
    let e = build(&env).unwrap().arp.election.unwrap();
    assert_eq!(
        (
            e.services_lease_namespace.as_str(),
            e.services_lease_name.as_str()
        ),
        ("infra", "plndr-svcs-lock")
    );
    env.insert("vip_leasename", "other/cp".into());
    let e = build(&env).unwrap().arp.election.unwrap();
    assert_eq!(
        (e.lease_namespace.as_str(), e.lease_name.as_str()),
        ("other", "cp")
    );
    assert_eq!(
        e.namespace, "infra",
        "per-Service Leases stay in cp_namespace"
    );
    for bad in ["/x", "x/", "Upper", "a/b/c"] {
        env.insert("vip_leasename", bad.into());
        let err = build(&env).expect_err(bad).to_string();
        assert!(err.contains("vip_leasename") && err.contains(bad), "{err}");
    }
}

/// kube-vip v1.2.3's Lease timing defaults are its flags' defaults (`cmd/kube-vip.go`
/// lines 89-91: `--leaseDuration` 15, `--leaseRenewDuration` 10, `--leaseRetry` 2; the
/// environment only overrides them, `pkg/kubevip/config_environment.go` lines 107-132), not
/// the 5/3/1 of releases before v1.0.5 that documentation pages still show.
#[test]
fn lease_timing_defaults_are_kube_vip_v1_2_3_code_defaults() {
    let mut env = base();
    env.insert("vip_leaderelection", "true".into());
    let t = build(&env).unwrap().arp.election.unwrap().timing;
    assert_eq!(
        (t.lease_duration, t.renew_deadline, t.retry_period),
        (
            Duration::from_secs(15),
            Duration::from_secs(10),
            Duration::from_secs(2)
        )
    );
}

/// kube-vip v1.2.3 elects ARP Services whatever vip_leaderelection says
/// (`pkg/manager/worker/arp.go` `StartServices`); the control-plane VIP only with it.
#[test]
fn arp_services_are_always_elected_the_control_plane_with_vip_leaderelection() {
    let mut env = base();
    env.insert("bgp_enable", "false".into());
    env.insert("vip_arp", "true".into());
    env.insert("vip_interface", "eth0".into());
    env.insert("svc_enable", "true".into());
    let e = build(&env).unwrap().arp.election.expect("Services elected");
    assert!(!e.control_plane);
    env.insert("vip_leaderelection", "true".into());
    assert!(build(&env).unwrap().arp.election.unwrap().control_plane);
    // Without Services and without vip_leaderelection: no election (one node, no API).
    env.insert("svc_enable", "false".into());
    env.insert("vip_leaderelection", "false".into());
    assert!(build(&env).unwrap().arp.election.is_none());
}

#[test]
fn precedence_is_flags_then_file_then_env() {
    let mut l = Layers::default();
    l.add_flags([("bgp-as", "65002".to_string()), ("port", "1".to_string())])
        .unwrap();
    assert_eq!(l.get("bgp_as").unwrap().value, "65002");
    l.add_yaml("vipr.yaml", "bgp_as: 65003\nport: 7443\nbgp_peers:\n  - 192.0.2.1:65000::false\n  - 192.0.2.2:65000::false\n")
        .unwrap();
    assert_eq!(l.get("bgp_as").unwrap().value, "65003");
    assert_eq!(
        l.get("bgp_peers").unwrap().value,
        "192.0.2.1:65000::false,192.0.2.2:65000::false"
    );
    let env: HashMap<&str, String> = [
        ("bgp_as", "65004".to_string()),
        ("bgp_enable", "true".into()),
        ("cp_enable", "true".into()),
        ("address", "192.0.2.10".into()),
    ]
    .into_iter()
    .collect();
    l.add_env(|n| env.get(n).cloned()).unwrap();
    let c = Config::from_layers(&l, "n").unwrap();
    assert_eq!(c.bgp.local_as, 65004, "env beats file");
    assert_eq!(c.control_plane.port, 7443, "file beats flag");
    assert_eq!(c.bgp.peers.len(), 2);
}

#[test]
fn a_bad_value_is_refused_even_where_a_higher_layer_overrides_it() {
    let mut l = Layers::default();
    l.add_flags([("localAS", "banana".to_string())]).unwrap();
    l.add_yaml("vipr.yaml", "bgp_enable: true\ncp_enable: true\naddress: 192.0.2.10\nbgp_peers: 192.0.2.1:65000\nbgp_as: 65001\n")
        .unwrap();
    let e = Config::from_layers(&l, "n").unwrap_err().to_string();
    assert!(e.starts_with("flag --localAS: bgp_as=\"banana\""), "{e}");
}

#[test]
fn two_spellings_of_one_setting_in_one_source_are_refused() {
    let mut l = Layers::default();
    let e = l
        .add_flags([
            ("vip-address", "192.0.2.1".to_string()),
            ("address", "192.0.2.2".to_string()),
        ])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("flag --vip-address") && e.contains("flag --address"),
        "{e}"
    );
    let e = Layers::default()
        .add_flags([("bgp-as", "1".to_string()), ("localAS", "2".to_string())])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("flag --localAS") && e.contains("flag --bgp-as"),
        "{e}"
    );
    let e = Layers::default()
        .add_flags([("localAS", "1".to_string()), ("localAS", "2".to_string())])
        .unwrap_err();
    assert!(matches!(e, ConfigError::Twice { .. }), "{e}");
    let env: HashMap<&str, String> = [("address", "a".to_string()), ("ADDRESS", "b".into())]
        .into_iter()
        .collect();
    let e = Layers::default()
        .add_env(|n| env.get(n).cloned())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("env address") && e.contains("env ADDRESS"),
        "{e}"
    );
    let e = Layers::default()
        .add_yaml("f.yaml", "address: 192.0.2.1\nvip_address: 192.0.2.2\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("f.yaml:1") && e.contains("f.yaml:2"), "{e}");
    // The same key twice in YAML is the parser's error, without the file's text.
    let e = Layers::default()
        .add_yaml(
            "f.yaml",
            "bgp_peers: 192.0.2.1:65000:hunter2\nbgp_peers: x\n",
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("given twice") && !e.contains("hunter2"), "{e}");
}

#[test]
fn yaml_scalars_are_kept_as_written_and_errors_never_quote_the_file() {
    let mut l = Layers::default();
    l.add_yaml(
        "f.yaml",
        "bgp_as: 1.10\nbgp_peerpass: 007\nvipr_static_vips: [198.51.100.1, 198.51.100.2]\n",
    )
    .unwrap();
    assert_eq!(l.get("bgp_as").unwrap().value, "1.10");
    assert_eq!(l.get("bgp_peerpass").unwrap().value, "007");
    assert_eq!(
        l.get("vipr_static_vips").unwrap().value,
        "198.51.100.1,198.51.100.2"
    );
    let e = Layers::default()
        .add_yaml("f.yaml", "bgp_peers: [10.0.0.1:65000:s3cr3t\nbgp_as: 1\n")
        .unwrap_err()
        .to_string();
    assert!(!e.contains("s3cr3t") && e.contains("f.yaml"), "{e}");
    let e = Layers::default()
        .add_yaml("f.yaml", "bgp_as:\n  nested: 1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bgp_as"), "{e}");
}

/// A syntax error names line, column and the setting it is in; a key is repeated only when
/// it is a setting's name or a near miss (a line holding only a password is a "key" too).
#[test]
fn yaml_errors_name_the_setting_but_never_other_text() {
    let err = |text: &str| {
        Layers::default()
            .add_yaml("f.yaml", text)
            .unwrap_err()
            .to_string()
    };
    let e = err("bgp_enable: true\nbgp_peerpass: \"s3cr3t\nbgp_as: 1\n");
    assert_eq!(
        e,
        "config file f.yaml: line 2 column 15 (in bgp_peerpass): unclosed quote"
    );
    let e = err("bgp_peers:\n  - 10.0.0.1:65000:s3cr3t:false\n  - [x\n");
    assert!(e.contains("line 3 column 5 (in bgp_peers)"), "{e}");
    assert!(!e.contains("s3cr3t"), "{e}");
    let e = err("bgp_peers: s3cr3t\nbgp_peers: s3cr3t\n");
    assert_eq!(
        e,
        "config file f.yaml: line 2 column 1 (in bgp_peers): bgp_peers is given twice"
    );
    for text in [
        "bgp_peerpass:\ns3cr3t: 1\n",
        "s3cr3t:\n  a: b\n",
        "bgp_as: 1\n\"s3cr3t\": [x]\n",
        "bgp_as: 1\ns3cr3t: 1\ns3cr3t: 2\n",
    ] {
        let e = err(text);
        assert!(!e.contains("s3cr3t"), "{text:?}: {e}");
        assert!(e.contains("f.yaml"), "{e}");
    }
    assert!(
        err("adress: 192.0.2.1\n").contains("unknown setting \"adress\" (did you mean address?)")
    );
}

#[test]
fn file_errors_name_the_line() {
    let mut l = Layers::default();
    let e = l
        .add_yaml("vipr.yaml", "bgp_enable: true\nbgp_ass: 65000\n")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "vipr.yaml:2: unknown setting \"bgp_ass\" (did you mean bgp_as?)"
    );
    let mut l = Layers::default();
    l.add_yaml("vipr.yaml", "bgp_enable: true\ncp_enable: true\naddress: 192.0.2.10\nbgp_peers: 192.0.2.1:65000\nbgp_as: sixty\n")
        .unwrap();
    let e = Config::from_layers(&l, "n").unwrap_err().to_string();
    assert!(e.starts_with("vipr.yaml:5: bgp_as=\"sixty\""), "{e}");
}

#[test]
fn uppercase_env_names_are_accepted() {
    let mut env = base();
    env.remove("bgp_enable");
    env.insert("BGP_ENABLE", "true".into());
    assert_eq!(build(&env).unwrap().node.mode, Mode::Bgp);
}

#[test]
fn conflicts_and_missing_settings() {
    let mut env = base();
    env.insert("vip_arp", "true".into());
    assert!(build(&env)
        .unwrap_err()
        .to_string()
        .contains("mutually exclusive"));
    let mut env = base();
    env.insert("bgp_sourceip", "192.0.2.5".into());
    env.insert("bgp_sourceif", "eth0".into());
    assert!(build(&env)
        .unwrap_err()
        .to_string()
        .contains("bgp_sourceip and bgp_sourceif"));
    let mut env = base();
    env.remove("bgp_peers");
    assert!(build(&env).unwrap_err().to_string().contains("needs peers"));
    let mut env = base();
    env.remove("address");
    assert!(build(&env)
        .unwrap_err()
        .to_string()
        .contains("needs address"));
    let mut env = base();
    env.remove("bgp_enable");
    assert!(build(&env).unwrap_err().to_string().contains("no mode"));
    // Two peer sources at once: refused instead of one silently winning.
    let mut env = base();
    env.insert("annotation", "metal.equinix.com".into());
    env.insert("vipr_peers_from", "equinix-metal".into());
    let e = build(&env).unwrap_err().to_string();
    assert!(
        e.contains("annotation") && e.contains("choose one peer source"),
        "{e}"
    );
    let mut env = base();
    env.insert("vip_packet", "true".into());
    env.insert("vipr_peers_from", "static".into());
    assert!(build(&env).unwrap_err().to_string().contains("vip_packet"));
}

#[test]
fn bfd_from_the_peers_seventh_field_and_vipr_bfd() {
    let mut env = base();
    env.insert(
        "bgp_peers",
        "192.0.2.1:65000::false:179::true;50;60;4,192.0.2.2:65000::false,192.0.2.3:65000::true"
            .into(),
    );
    env.insert("vipr_bfd", "true;200;200;3".into());
    let c = build(&env).unwrap();
    let b = c.bgp.peers[0].bfd.unwrap();
    assert_eq!(
        (b.min_rx.as_millis(), b.min_tx.as_millis(), b.multiplier),
        (50, 60, 4)
    );
    assert_eq!(c.bgp.peers[1].bfd, c.bgp.defaults.bfd, "follows vipr_bfd");
    assert!(c.bgp.defaults.bfd.is_some());
    assert_eq!(c.bgp.peers[2].bfd, None, "multihop: no single-hop BFD");
    // A multihop peer asking for BFD is refused, naming the peer.
    env.insert("bgp_peers", "192.0.2.1:65000::true:179::true".into());
    let e = build(&env).unwrap_err().to_string();
    assert!(e.contains("bgp_peers") && e.contains("single-hop"), "{e}");
}

#[test]
fn static_lb_backends_with_and_without_ports() {
    let mut env = base();
    env.insert(
        "vipr_lb_backends",
        "10.0.0.1,10.0.0.2:8443,2001:db8::1,[2001:db8::2]:7443,[2001:db8::3]".into(),
    );
    let c = build(&env).unwrap();
    let got: Vec<(String, Option<u16>)> =
        c.lb.backends
            .iter()
            .map(|b| (b.ip.to_string(), b.port))
            .collect();
    assert_eq!(
        got,
        [
            ("10.0.0.1".to_string(), None),
            ("10.0.0.2".to_string(), Some(8443)),
            ("2001:db8::1".to_string(), None),
            ("2001:db8::2".to_string(), Some(7443)),
            ("2001:db8::3".to_string(), None),
        ]
    );
    env.insert("vipr_lb_backends", "nope:1".into());
    assert!(build(&env)
        .unwrap_err()
        .to_string()
        .contains("vipr_lb_backends"));
}

/// SIGHUP: changing any one setting sends exactly its section to the tasks that follow it,
/// or, for a node setting, names it as needing a restart. `(extra, before, after)` for the
/// keys whose table row cannot serve as is (its value is the base's, or the base without
/// it would not validate); their `extra` replaces the row's.
#[test]
fn every_setting_reaches_exactly_its_section() {
    use super::keys::Section;
    use super::sections::Sections;
    type Override = (
        &'static [(&'static str, &'static str)],
        Option<&'static str>,
        &'static str,
    );
    let overrides: HashMap<&str, Override> = [
        (
            "cp_enable",
            (
                &[("vipr_static_vips", "198.51.100.9")][..],
                Some("true"),
                "false",
            ),
        ),
        (
            "vip_address",
            (&[("address", "")][..], Some("192.0.2.12"), "192.0.2.11"),
        ),
        (
            "bgp_enable",
            (&[("vip_interface", "eth0")][..], Some("true"), "false"),
        ),
        ("vip_arp", (&[("vip_interface", "eth0")][..], None, "true")),
        (
            "mpbgp_ipv4",
            (
                &[("mpbgp_nexthop", "fixed"), ("mpbgp_ipv6", "2001:db8::6")][..],
                None,
                "198.51.100.4",
            ),
        ),
        (
            "mpbgp_ipv6",
            (
                &[("mpbgp_nexthop", "fixed"), ("mpbgp_ipv4", "198.51.100.4")][..],
                None,
                "2001:db8::6",
            ),
        ),
    ]
    .into_iter()
    .collect();
    for (key, good, _, _, extra) in rows() {
        let k = keys::find(key).unwrap();
        let (extra, before_value, after_value) =
            overrides.get(key).copied().unwrap_or((extra, None, good));
        let mut env = base();
        for (x, v) in extra {
            env.insert(x, v.to_string());
        }
        if let Some(v) = before_value {
            env.insert(key, v.to_string());
        }
        let before = build(&env).unwrap_or_else(|e| panic!("{key} before: {e}"));
        env.insert(key, after_value.to_string());
        if key == "bgp_enable" {
            env.insert("vip_arp", "true".into());
        }
        if key == "vip_arp" {
            env.insert("bgp_enable", "false".into());
        }
        let after = build(&env).unwrap_or_else(|e| panic!("{key} after: {e}"));
        assert_ne!(before, after, "{key}: the test changes nothing");
        let applied = Sections::new(before).apply(after);
        if k.section == Section::Node {
            assert!(
                !applied.fixed.is_empty() && applied.fixed.iter().any(|f| f.contains(key)),
                "{key}: a node setting must be named as needing a restart: {applied:?}"
            );
        } else {
            assert_eq!(applied.changed, vec![k.section], "{key}");
            assert!(applied.fixed.is_empty(), "{key}: {applied:?}");
        }
    }
}

mod errors;
mod peer_map;
mod unnumbered;

/// kube-vip's variables vipr does not implement ([`kubevip`]): each warned once, or refused.
mod kube_vip_unsupported {
    use std::collections::HashMap;

    use super::super::kubevip::{self, Class, KUBE_VIP_ENV, UNSUPPORTED};
    use super::*;

    /// `vip_leaderelection=true` in BGP mode: one line saying that vipr advertises from
    /// every node and how to get kube-vip's leader-only behaviour; none with
    /// `vipr_bgp_leader_only=true` (then it is kube-vip's behaviour) or in ARP mode.
    #[test]
    fn bgp_with_leader_election_says_every_node_advertises_once() {
        let env = with(&[("vip_leaderelection", "true")]);
        let w = kubevip::check(&layers(&env, None)).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        let line = w[0].to_string();
        assert!(
            line.contains("vip_leaderelection")
                && line.contains("every node")
                && line.contains("vipr_bgp_leader_only=true"),
            "{line}"
        );
        build(&env).expect("a warning, not an error");
        let env = with(&[
            ("vip_leaderelection", "true"),
            ("vipr_bgp_leader_only", "true"),
        ]);
        assert!(kubevip::check(&layers(&env, None)).unwrap().is_empty());
        assert!(build(&env).unwrap().arp.election.unwrap().bgp_leader_only);
        // Leader-only needs BGP mode and an election: an error naming it otherwise.
        let env = with(&[("vipr_bgp_leader_only", "true")]);
        let e = build(&env).unwrap_err().to_string();
        assert!(
            e.contains("vipr_bgp_leader_only") && e.contains("vip_leaderelection"),
            "{e}"
        );
        let mut env = with(&[
            ("vip_leaderelection", "true"),
            ("vipr_bgp_leader_only", "true"),
            ("vip_arp", "true"),
            ("vip_interface", "eth0"),
        ]);
        env.remove("bgp_enable");
        let e = build(&env).unwrap_err().to_string();
        assert!(
            e.contains("vipr_bgp_leader_only") && e.contains("bgp_enable"),
            "{e}"
        );
        env.remove("vipr_bgp_leader_only");
        assert!(kubevip::check(&layers(&env, None)).unwrap().is_empty());
    }

    /// Layers from the environment `env` and, when given, a file below it.
    fn layers(env: &HashMap<&'static str, String>, file: Option<&str>) -> Layers {
        let mut l = Layers::default();
        if let Some(text) = file {
            l.add_yaml("vipr.yaml", text).unwrap();
        }
        l.add_env(|n| env.get(n).cloned()).unwrap();
        l
    }

    fn with(extra: &[(&'static str, &str)]) -> HashMap<&'static str, String> {
        let mut env = base();
        for (k, v) in extra {
            env.insert(*k, v.to_string());
        }
        env
    }

    #[test]
    fn every_kube_vip_variable_is_classified_exactly_once() {
        let mut seen = std::collections::HashSet::new();
        for name in KUBE_VIP_ENV {
            assert!(seen.insert(*name), "{name} listed twice");
            let implemented = KEYS.iter().filter(|k| k.name == *name).count();
            let table = UNSUPPORTED.iter().filter(|u| u.name == *name).count();
            assert_eq!(
                implemented + table,
                1,
                "{name}: implemented {implemented}, in the table {table}"
            );
        }
        for u in UNSUPPORTED {
            assert!(
                KUBE_VIP_ENV.contains(&u.name),
                "{}: not a kube-vip variable",
                u.name
            );
            assert!(
                keys::find(u.name).is_none(),
                "{}: both implemented and in the table",
                u.name
            );
            assert!(!u.reason.is_empty(), "{}", u.name);
        }
        // The counts the README gives (kube-vip v1.2.3: 95 in config_envvar.go + vip_configmap).
        let implemented = KUBE_VIP_ENV
            .iter()
            .filter(|n| keys::find(n).is_some())
            .count();
        let refused = UNSUPPORTED
            .iter()
            .filter(|u| matches!(u.class, Class::Refuse(_)))
            .count();
        assert_eq!(kubevip::KUBE_VIP_VERSION, "v1.2.3");
        assert_eq!(
            (
                KUBE_VIP_ENV.len(),
                implemented,
                UNSUPPORTED.len() - refused,
                refused
            ),
            (96, 58, 22, 16)
        );
    }

    #[test]
    fn a_warned_variable_gives_exactly_one_warning_naming_it() {
        for u in UNSUPPORTED.iter().filter(|u| u.class == Class::Warn) {
            // In the file and in the environment: still one line, the environment's.
            let file = format!("{}: from-file\n", u.name);
            let l = layers(&with(&[(u.name, "from-env")]), Some(&file));
            Config::from_layers(&l, "node-a").unwrap_or_else(|e| panic!("{}: {e}", u.name));
            let w = kubevip::check(&l).unwrap();
            assert_eq!(w.len(), 1, "{}: {w:?}", u.name);
            let line = w[0].to_string();
            assert!(
                line.starts_with(&format!("env {0}: {0}=\"from-env\": ", u.name)),
                "{line}"
            );
            assert!(
                line.contains(u.reason) && line.ends_with("this setting is ignored"),
                "{line}"
            );
        }
        // Upper case, as kube-vip reads INSTANCE_NAME; empty is unset.
        let l = layers(
            &with(&[("INSTANCE_NAME", "a"), ("vip_singlenode", "")]),
            None,
        );
        let w = kubevip::check(&l).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            (w[0].name, w[0].origin.to_string()),
            ("instance_name", "env INSTANCE_NAME".to_string())
        );
        // Nothing set, nothing said.
        assert!(kubevip::check(&layers(&base(), None)).unwrap().is_empty());
    }

    #[test]
    fn a_refused_variable_is_a_config_error_naming_it_and_its_value() {
        let cases: &[(&str, &str)] = &[
            ("vip_wireguard", "true"),
            ("vip_routingtable", "1"),
            ("egress_podcidr", "10.244.0.0/16"),
            ("dhcp_mode", "ipv4"),
            ("vip_ddns", "true"),
            ("lb_class_legacy_handling", "false"),
            ("VIP_WIREGUARD", "yes"),
        ];
        for (name, value) in cases {
            let e = build(&with(&[(name, value)])).expect_err(name);
            let ConfigError::Invalid {
                key,
                value: v,
                origin,
                ..
            } = &e
            else {
                panic!("{name}: {e:?}")
            };
            assert_eq!(
                (key.as_str(), v.as_str()),
                (name.to_ascii_lowercase().as_str(), *value)
            );
            assert_eq!(origin, &Origin::Env(name.to_string()));
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{}={value:?}", name.to_ascii_lowercase())),
                "{msg}"
            );
            assert!(msg.contains("would change traffic"), "{msg}");
        }
        // Values that ask for nothing vipr lacks: one warning each, no error.
        for (name, value) in [
            ("vip_wireguard", "false"),
            ("lb_class_legacy_handling", "true"),
        ] {
            let l = layers(&with(&[(name, value), ("vip_interface", "eth0")]), None);
            Config::from_layers(&l, "node-a").unwrap_or_else(|e| panic!("{name}: {e}"));
            let w = kubevip::check(&l).unwrap();
            assert_eq!(w.iter().map(|w| w.name).collect::<Vec<_>>(), vec![name]);
        }
        // A refused value is refused even where a higher layer overrides it, and in the file.
        let l = layers(
            &with(&[("vip_wireguard", "false")]),
            Some("vip_wireguard: true\n"),
        );
        let e = Config::from_layers(&l, "node-a").unwrap_err().to_string();
        assert!(
            e.starts_with("vipr.yaml:1: vip_wireguard=\"true\": WireGuard mode"),
            "{e}"
        );
        // Two spellings in one source are refused as for vipr's own settings.
        let mut l = Layers::default();
        let env = with(&[("egress_clean", "false"), ("EGRESS_CLEAN", "false")]);
        let e = l.add_env(|n| env.get(n).cloned()).unwrap_err();
        assert!(matches!(e, ConfigError::Twice { .. }), "{e:?}");
    }
}

/// kube-vip v1.2.3 reads `vip_loglevel` as a Go slog level (records at or above it).
#[test]
fn vip_loglevel_is_read_as_kube_vip_reads_it() {
    for (v, want) in [
        ("-8", LogLevel::Trace),
        ("-4", LogLevel::Debug),
        ("0", LogLevel::Info),
        ("-1", LogLevel::Info),
        ("4", LogLevel::Warn),
        ("8", LogLevel::Error),
        ("5", LogLevel::Error),
        ("debug", LogLevel::Debug),
        ("WARN", LogLevel::Warn),
    ] {
        let mut env = base();
        env.insert("vip_loglevel", v.to_string());
        assert_eq!(build(&env).unwrap().log.level, want, "{v}");
    }
}

/// kube-vip v1.2.3 `FindMpbgpAddresses`' checks, at start: each names the variable.
#[test]
fn mpbgp_settings_are_checked_as_kube_vip_checks_them() {
    for (set, key, says) in [
        (
            &[("mpbgp_nexthop", "fixed")][..],
            "mpbgp_nexthop",
            "needs mpbgp_ipv4 or mpbgp_ipv6",
        ),
        (
            &[("mpbgp_ipv6", "2001:db8::6")][..],
            "mpbgp_ipv6",
            "only with mpbgp_nexthop=fixed",
        ),
        (
            &[
                ("mpbgp_nexthop", "auto_sourceif"),
                ("mpbgp_ipv4", "198.51.100.4"),
            ][..],
            "mpbgp_nexthop",
            "only with mpbgp_nexthop=fixed",
        ),
        (
            &[("mpbgp_nexthop", "auto_sourceip")][..],
            "mpbgp_nexthop",
            "needs bgp_sourceip",
        ),
        (
            &[
                ("mpbgp_nexthop", "auto_sourceif"),
                ("bgp_sourceip", "192.0.2.5"),
            ][..],
            "mpbgp_nexthop",
            "needs bgp_sourceif",
        ),
        (
            &[("bgp_peers", "192.0.2.1:65000:pw:false::mpbgp_nexthop=fixed")][..],
            "bgp_peers",
            "peer 192.0.2.1: mpbgp_nexthop=fixed needs",
        ),
        (
            &[("bgp_peers", "192.0.2.1:65000:pw:false::mpbgp_next=fixed")][..],
            "bgp_peers",
            "MP-BGP options take only",
        ),
    ] {
        let mut env = base();
        for (k, v) in set {
            env.insert(k, v.to_string());
        }
        let e = build(&env).expect_err(says);
        let msg = e.to_string();
        assert!(msg.contains(key) && msg.contains(says), "{set:?}: {msg}");
        assert!(!msg.contains(":pw:"), "{msg}");
    }
    // A peer's own address satisfies the node's fixed mode.
    let mut env = base();
    env.insert("mpbgp_nexthop", "fixed".into());
    env.insert(
        "bgp_peers",
        "192.0.2.1:65000::false::mpbgp_ipv6=[2001:db8::6]".into(),
    );
    let c = build(&env).unwrap();
    assert_eq!(
        c.bgp.mp_next_hop_of("192.0.2.1".parse().unwrap()).v6,
        Some("2001:db8::6".parse().unwrap())
    );
}

/// kube-vip v1.2.3 `newHealthCheckHTTPClient` refuses a CA file it cannot read or that holds
/// no certificate; vipr at configuration time, naming the variable.
#[test]
fn a_health_check_ca_that_is_not_a_certificate_is_refused() {
    let not_pem = std::env::temp_dir().join(format!("vipr-not-a-ca-{}.crt", std::process::id()));
    std::fs::write(&not_pem, "hello\n").unwrap();
    for (path, says) in [
        ("/nonexistent/ca.crt", "cannot read it"),
        (not_pem.to_str().unwrap(), "contains no PEM certificate"),
    ] {
        let mut env = base();
        env.insert(
            "control_plane_health_check_address",
            "https://127.0.0.1:6443/livez".into(),
        );
        env.insert("control_plane_health_check_ca_path", path.into());
        let msg = build(&env).unwrap_err().to_string();
        assert!(
            msg.contains("control_plane_health_check_ca_path") && msg.contains(says),
            "{msg}"
        );
    }
    let _ = std::fs::remove_file(&not_pem);
}

/// kube-vip v1.2.3 takes a host name as `address` (`pkg/vip/address.go` `NewConfig`): one
/// name, resolved later by `dns.rs`; never mixed with IP addresses.
#[test]
fn address_may_be_one_dns_name() {
    let mut env = base();
    env.insert("address", "CP.Example.test.".into());
    let c = build(&env).unwrap();
    assert!(c.control_plane.vips.is_empty());
    assert_eq!(
        c.control_plane.dns,
        Some(DnsAddress {
            name: "cp.example.test".into(),
            mode: DnsMode::First
        })
    );
    for bad in [
        "cp.example.test,192.0.2.10",
        "a,b",
        "-cp.example",
        "1.2.3",
        "cp_1.example",
    ] {
        env.insert("address", bad.into());
        let e = build(&env).expect_err(bad).to_string();
        assert!(e.contains("address"), "{bad}: {e}");
    }
}
