//! The capabilities of the rendered pod are enough, and each one is needed: vipr runs as
//! root with exactly the capability set `vipr manifest pod` writes (bounding set reduced
//! with `setpriv`, no_new_privs as `allowPrivilegeEscalation: false` sets it), as a container
//! runtime would start it.
//!
//! - BGP (the pod adds NET_ADMIN only): the VIP goes on `lo`, the route reaches BIRD, the
//!   process's effective set is exactly CAP_NET_ADMIN, and SIGTERM withdraws and removes the
//!   address (exit 0). Without NET_ADMIN the address cannot be added.
//! - ARP (NET_ADMIN + NET_RAW): the VIP goes on `eth0` and its gratuitous ARP teaches the
//!   router the node's MAC. Without NET_RAW vipr says it needs CAP_NET_RAW.

mod daemon_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use daemon_common::*;
use serde_json::Value;
use testbed::{wait_for, Bird, Lab, Netns, Proc};

/// `capabilities.add` of the pod `vipr manifest pod` renders for the daemon's `env`.
fn manifest_caps(env: &BTreeMap<String, String>) -> Vec<String> {
    let mut args = vec!["manifest".to_string(), "pod".to_string()];
    for (k, v) in env {
        if k != "vip_nodename" {
            args.push(format!("--{}={v}", k.replace('_', "-")));
        }
    }
    let out = std::process::Command::new(vipr_bin())
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let pod: Value =
        serde_saphyr::from_str(yaml.split("\n---\n").nth(1).expect("a document")).unwrap();
    let c = &pod["spec"]["containers"][0]["securityContext"]["capabilities"];
    assert_eq!(c["drop"], serde_json::json!(["ALL"]));
    c["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// `vipr manager` as root with only `caps` (e.g. ["NET_ADMIN"]) and no_new_privs.
fn start_with_caps(
    ns: &Netns,
    caps: &[String],
    env: &BTreeMap<String, String>,
    log: &Path,
) -> Proc {
    let set: String = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{}", c.to_lowercase())))
        .collect::<Vec<_>>()
        .join(",");
    let f = std::fs::File::create(log).unwrap();
    let child = ns
        .command(&[
            "setpriv",
            "--bounding-set",
            &set,
            "--inh-caps",
            "-all",
            "--no-new-privs",
            "--",
            vipr_bin(),
            "manager",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("spawn setpriv vipr");
    Proc::new("vipr", child)
}

/// The effective capability mask of a process.
fn cap_eff(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

const CAP_NET_ADMIN: u64 = 1 << 12;

#[test]
fn bgp_runs_with_net_admin_only_and_needs_it() {
    let lab = Lab::new(2);
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0, 1]));
    let (d0, d1) = (workdir(), workdir());
    let mut env = base_env(&d0.join("state"));
    env.insert("vip_nodename".into(), "node0".into());
    let caps = manifest_caps(&env);
    assert_eq!(caps, vec!["NET_ADMIN"]);
    let mut p = start_with_caps(&lab.nodes[0], &caps, &env, &d0.join("vipr.log"));
    let log = || std::fs::read_to_string(d0.join("vipr.log")).unwrap_or_default();
    let vip = format!("{VIP4}/32");
    eventually("route at BIRD with NET_ADMIN only", log, || {
        bird_route(&bird, &vip, "n0")
    });
    assert!(
        lo_addrs(&lab.nodes[0]).iter().any(|a| a == &vip),
        "{}",
        log()
    );
    assert_eq!(cap_eff(p.pid()), CAP_NET_ADMIN, "effective capabilities");
    p.signal(libc::SIGTERM);
    let st = wait_for(Duration::from_secs(5), || p.exited()).expect("exits on SIGTERM");
    assert!(st.success(), "{st}: {}", log());
    let gone = wait_for(Duration::from_secs(2), || {
        bird_route(&bird, &vip, "n0").is_none().then_some(())
    });
    assert!(gone.is_some(), "withdrawn at BIRD");
    assert!(
        !lo_addrs(&lab.nodes[0]).iter().any(|a| a == &vip),
        "address removed"
    );

    // Without NET_ADMIN: the session comes up, the address cannot be added.
    let mut env1 = base_env(&d1.join("state"));
    env1.insert("vip_nodename".into(), "node1".into());
    let _p1 = start_with_caps(&lab.nodes[1], &[], &env1, &d1.join("vipr.log"));
    let log1 = || std::fs::read_to_string(d1.join("vipr.log")).unwrap_or_default();
    eventually("an EPERM on the address", log1, || {
        let l = log1();
        (l.contains("not permitted") || l.contains("EPERM")).then_some(())
    });
    assert!(
        !lo_addrs(&lab.nodes[1]).iter().any(|a| a == &vip),
        "{}",
        log1()
    );
}

#[test]
fn arp_runs_with_net_admin_and_net_raw_and_needs_net_raw() {
    let lab = Lab::new(2);
    // Let gratuitous ARP create neighbour entries, so an entry proves a GARP arrived.
    lab.router.sh("sysctl -q -w net.ipv4.conf.br0.arp_accept=1");
    let (d0, d1) = (workdir(), workdir());
    let arp_env = |dir: &Path, node: &str, vip: &str| {
        let mut e = BTreeMap::new();
        for (k, v) in [
            ("vip_arp", "true"),
            ("vip_interface", "eth0"),
            ("cp_enable", "true"),
            ("address", vip),
            ("prometheus_server", HTTP),
            ("vip_nodename", node),
        ] {
            e.insert(k.to_string(), v.to_string());
        }
        e.insert(
            "vipr_state_dir".into(),
            dir.join("state").to_str().unwrap().into(),
        );
        e
    };
    let env = arp_env(&d0.path, "node0", "10.55.0.100");
    let caps = manifest_caps(&env);
    assert_eq!(caps, vec!["NET_ADMIN", "NET_RAW"]);
    let _p = start_with_caps(&lab.nodes[0], &caps, &env, &d0.join("vipr.log"));
    let log = || std::fs::read_to_string(d0.join("vipr.log")).unwrap_or_default();
    let mac = lab.nodes[0]
        .sh("cat /sys/class/net/eth0/address")
        .trim()
        .to_string();
    eventually(
        "the router learns the VIP's MAC from a gratuitous ARP",
        log,
        || {
            let n = lab.router.sh("ip neigh show 10.55.0.100 dev br0");
            n.contains(&mac).then_some(())
        },
    );
    assert!(!log().contains("CAP_NET_RAW"), "{}", log());

    // Without NET_RAW: the VIP is added but cannot be announced, and vipr says why.
    let env1 = arp_env(&d1.path, "node1", "10.55.0.101");
    let _p1 = start_with_caps(
        &lab.nodes[1],
        &["NET_ADMIN".to_string()],
        &env1,
        &d1.join("vipr.log"),
    );
    let log1 = || std::fs::read_to_string(d1.join("vipr.log")).unwrap_or_default();
    eventually("vipr names the missing capability", log1, || {
        log1().contains("CAP_NET_RAW").then_some(())
    });
}
