//! Table test over every setting: a good value lands in the typed config, a bad value is
//! rejected naming the variable and the value; plus precedence and mode conflicts.

use std::collections::HashMap;
use std::time::Duration;

use super::keys::KEYS;
use super::*;

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
    l.add_env(|n| env.get(n).cloned());
    Config::from_layers(&l, "node-a")
}

type Check = fn(&Config) -> bool;

/// (key, good value, check on the result, bad value, extra settings)
fn rows() -> Vec<(
    &'static str,
    &'static str,
    Check,
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
)> {
    vec![
        (
            "address",
            "192.0.2.10,2001:db8::10",
            |c| c.vips.len() == 2,
            Some("vip.example"),
            &[],
        ),
        (
            "vip_address",
            "192.0.2.11",
            |c| c.vips == vec!["192.0.2.11".parse::<IpAddr>().unwrap()],
            Some("x"),
            &[("address", "")],
        ),
        ("port", "7443", |c| c.port == 7443, Some("70000"), &[]),
        (
            "vip_interface",
            "eth0",
            |c| c.interface == "eth0",
            None,
            &[],
        ),
        (
            "vip_subnet",
            "24,64",
            |c| (c.subnet_v4, c.subnet_v6) == (24, 64),
            Some("33"),
            &[],
        ),
        ("cp_enable", "true", |c| c.cp_enable, Some("maybe"), &[]),
        ("svc_enable", "true", |c| c.svc_enable, Some("2"), &[]),
        (
            "svc_namespace",
            "apps",
            |c| c.svc.namespace.as_deref() == Some("apps"),
            None,
            &[],
        ),
        ("vip_nodename", "cp-1", |c| c.node_name == "cp-1", None, &[]),
        (
            "bgp_enable",
            "true",
            |c| c.mode == Mode::Bgp,
            Some("yes please"),
            &[],
        ),
        (
            "bgp_routerid",
            "192.0.2.99",
            |c| c.bgp.router_id == Some("192.0.2.99".parse().unwrap()),
            Some("2001:db8::1"),
            &[],
        ),
        (
            "bgp_routerinterface",
            "eth0",
            |c| c.bgp.router_interface.as_deref() == Some("eth0"),
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
            |c| c.bgp.peers[0].port == 1179 && c.bgp.peers[0].multihop,
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
            |c| c.bgp.peers[1].multihop,
            Some("sometimes"),
            &[("bgp_peeraddress", "198.51.100.1")],
        ),
        (
            "bgp_sourceip",
            "192.0.2.50",
            |c| c.bgp.source_ip == Some("192.0.2.50".parse().unwrap()),
            Some("here"),
            &[],
        ),
        (
            "bgp_sourceif",
            "eth1",
            |c| c.bgp.source_if.as_deref() == Some("eth1"),
            None,
            &[],
        ),
        (
            "bgp_hold_time",
            "9",
            |c| c.bgp.hold_time == 9,
            Some("2"),
            &[("bgp_keepalive_interval", "3")],
        ),
        (
            "bgp_keepalive_interval",
            "3",
            |c| c.bgp.keepalive == 3,
            Some("30"),
            &[],
        ),
        (
            "annotation",
            "metal.equinix.com",
            |c| c.svc.annotation.as_deref() == Some("metal.equinix.com"),
            None,
            &[],
        ),
        (
            "vip_packet",
            "true",
            |c| c.svc.peers_from == "equinix-metal",
            Some("metal"),
            &[],
        ),
        (
            "control_plane_health_check_address",
            "https://127.0.0.1:6443/livez",
            |c| c.health.as_ref().unwrap().failure_threshold == 3,
            Some("127.0.0.1:6443"),
            &[],
        ),
        (
            "control_plane_health_check_period_seconds",
            "2",
            |c| c.health.as_ref().unwrap().period == Duration::from_secs(2),
            Some("0"),
            &[("control_plane_health_check_address", "http://127.0.0.1/")],
        ),
        (
            "control_plane_health_check_timeout_seconds",
            "1",
            |c| c.health.as_ref().unwrap().timeout == Duration::from_secs(1),
            Some("x"),
            &[("control_plane_health_check_address", "http://127.0.0.1/")],
        ),
        (
            "control_plane_health_check_failure_threshold",
            "5",
            |c| c.health.as_ref().unwrap().failure_threshold == 5,
            Some("0"),
            &[("control_plane_health_check_address", "http://127.0.0.1/")],
        ),
        (
            "vip_arp",
            "true",
            |c| c.mode == Mode::Arp,
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
            |c| c.arp.leader_election,
            Some("x"),
            &[],
        ),
        (
            "vip_leasename",
            "my-lock",
            |c| c.arp.lease_name == "my-lock",
            None,
            &[],
        ),
        (
            "vip_leaseduration",
            "20",
            |c| c.arp.lease_duration == Duration::from_secs(20),
            Some("5"),
            &[],
        ),
        (
            "vip_renewdeadline",
            "8",
            |c| c.arp.renew_deadline == Duration::from_secs(8),
            Some("15"),
            &[],
        ),
        (
            "vip_retryperiod",
            "0.5",
            |c| c.arp.retry_period == Duration::from_millis(500),
            Some("10"),
            &[],
        ),
        (
            "cp_namespace",
            "infra",
            |c| c.arp.namespace == "infra",
            None,
            &[],
        ),
        (
            "svc_election",
            "true",
            |c| c.arp.svc_election,
            Some("x"),
            &[],
        ),
        (
            "lb_class_only",
            "true",
            |c| c.svc.class_only,
            Some("x"),
            &[],
        ),
        (
            "lb_class_name",
            "vipr",
            |c| c.svc.class_name == "vipr",
            None,
            &[],
        ),
        ("lb_enable", "true", |c| c.svc.lb_enable, Some("x"), &[]),
        ("lb_port", "8443", |c| c.svc.lb_port == 8443, Some("0"), &[]),
        (
            "lb_fwdmethod",
            "masquerade",
            |c| c.svc.lb_fwdmethod == "masquerade",
            Some("nat"),
            &[],
        ),
        (
            "backend_health_check_interval",
            "7",
            |c| c.svc.backend_health_check_interval == Duration::from_secs(7),
            Some("-7"),
            &[],
        ),
        (
            "prometheus_server",
            "127.0.0.1:9100",
            |c| c.http == Some("127.0.0.1:9100".parse().unwrap()),
            Some("metrics"),
            &[],
        ),
        (
            "k8s_config_file",
            "/etc/kubernetes/super-admin.conf",
            |c| c.kubeconfig.ends_with("super-admin.conf"),
            None,
            &[],
        ),
        (
            "vip_loglevel",
            "5",
            |c| c.log_level == "debug",
            Some("loud"),
            &[],
        ),
        (
            "vipr_communities",
            "65000:100,65535:0",
            |c| c.bgp.communities.len() == 2,
            Some("65000"),
            &[],
        ),
        (
            "vipr_large_communities",
            "65000:1:2",
            |c| c.bgp.large_communities.len() == 1,
            Some("1:2"),
            &[],
        ),
        (
            "vipr_local_pref",
            "200",
            |c| c.bgp.local_pref == Some(200),
            Some("high"),
            &[],
        ),
        ("vipr_med", "10", |c| c.bgp.med == Some(10), Some("-1"), &[]),
        (
            "vipr_bgp_listen",
            "[::]:179",
            |c| c.bgp.listen.unwrap().port() == 179,
            Some("179"),
            &[],
        ),
        (
            "vipr_graceful_restart",
            "true",
            |c| c.bgp.graceful_restart == Some(120),
            Some("x"),
            &[],
        ),
        (
            "vipr_graceful_restart_time",
            "300",
            |c| c.bgp.graceful_restart == Some(300),
            Some("5000"),
            &[("vipr_graceful_restart", "true")],
        ),
        (
            "vipr_bfd",
            "true;100;100;3",
            |c| c.bgp.bfd.enabled && c.bgp.bfd.rx_ms == 100 && c.bgp.peers[0].bfd.is_none(),
            Some("true;10;100;3"),
            &[],
        ),
        (
            "vipr_static_vips",
            "198.51.100.5,2001:db8::5",
            |c| c.static_vips.len() == 2,
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
            "vipr_state_dir",
            "/var/run/x",
            |c| c.state_dir.ends_with("x"),
            None,
            &[],
        ),
        ("vipr_log_format", "json", |c| c.log_json, Some("xml"), &[]),
        (
            "vipr_peers_from",
            "equinix-metal",
            |c| c.svc.peers_from == "equinix-metal",
            Some("dns"),
            &[],
        ),
        (
            "vipr_metadata_url",
            "http://127.0.0.1:8080/metadata",
            |c| c.svc.metadata_url.starts_with("http://127"),
            None,
            &[],
        ),
        (
            "vipr_metadata_interval",
            "10",
            |c| c.svc.metadata_interval == Duration::from_secs(10),
            Some("0"),
            &[],
        ),
        (
            "vipr_lb_backend",
            "nftables",
            |c| c.svc.lb_backend.as_deref() == Some("nftables"),
            Some("iptables"),
            &[],
        ),
        (
            "vipr_lb_scheduler",
            "wlc",
            |c| c.svc.lb_scheduler == "wlc",
            Some("random"),
            &[],
        ),
        (
            "vipr_lb_backends",
            "192.0.2.21:6443,192.0.2.22",
            |c| c.svc.lb_backends.len() == 2,
            None,
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
fn defaults_match_kube_vip() {
    let c = build(&base()).unwrap();
    assert_eq!(c.port, 6443);
    assert_eq!(c.interface, "lo");
    assert_eq!((c.subnet_v4, c.subnet_v6), (32, 128));
    assert_eq!(c.bgp.local_as, 65000);
    assert_eq!((c.bgp.hold_time, c.bgp.keepalive), (30, 10));
    assert_eq!(c.http, Some("0.0.0.0:2112".parse().unwrap()));
    assert_eq!(c.node_name, "node-a");
    assert_eq!(c.arp.lease_name, "plndr-cp-lock");
    assert_eq!(c.kubeconfig, PathBuf::from("/etc/kubernetes/admin.conf"));
    assert_eq!(c.bgp.peers[0].port, 179);
}

#[test]
fn precedence_is_flags_then_file_then_env() {
    let mut l = Layers::default();
    l.add_flags([
        ("bgp-as", "65001".to_string()),
        ("localAS", "65002".to_string()),
        ("port", "1".to_string()),
    ]);
    assert_eq!(
        l.get("bgp_as").unwrap().value,
        "65002",
        "later flag spelling wins among flags"
    );
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
    l.add_env(|n| env.get(n).cloned());
    let c = Config::from_layers(&l, "n").unwrap();
    assert_eq!(c.bgp.local_as, 65004, "env beats file");
    assert_eq!(c.port, 7443, "file beats flag");
    assert_eq!(c.bgp.peers.len(), 2);
}

#[test]
fn file_errors_name_the_line() {
    let mut l = Layers::default();
    let e = l
        .add_yaml("vipr.yaml", "bgp_enable: true\nbgp_ass: 65000\n")
        .unwrap_err();
    assert_eq!(e.to_string(), "vipr.yaml:2: unknown setting \"bgp_ass\"");
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
    assert_eq!(build(&env).unwrap().mode, Mode::Bgp);
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
        (b.enabled, b.rx_ms, b.tx_ms, b.multiplier),
        (true, 50, 60, 4)
    );
    assert_eq!(c.bgp.peers[1].bfd, None, "follows vipr_bfd");
    assert!(c.bgp.bfd.enabled);
    // A multihop peer asking for BFD is refused, naming the peer.
    env.insert("bgp_peers", "192.0.2.1:65000::true:179::true".into());
    let e = build(&env).unwrap_err().to_string();
    assert!(e.contains("bgp_peers") && e.contains("single-hop"), "{e}");
}
