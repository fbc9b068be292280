//! End-to-end BGP unnumbered: the real `vipr` binary in a node namespace with two veths
//! (`up1`, `up2`) to two ToR namespaces running FRR 8.4 with
//! `neighbor eth1 interface remote-as external` and BFD (100 ms × 3), no IPv4 or global IPv6
//! address on either link. vipr is configured with kube-vip's `unnumbered:IFACE:AS:…`
//! entries; it finds each ToR's link-local address from FRR's Router Advertisements and peers
//! over it.
//!
//! - Both ToRs get the IPv4 and the IPv6 VIP with vipr's link-local address on that link as
//!   next hop (RFC 8950 for IPv4), zebra installs them and a ping from each ToR to the IPv4
//!   VIP answers.
//! - `up1` down on the node → ToR 1 withdraws the routes well before the 30 s hold time (BFD
//!   detects in 300 ms; FRR also sees the carrier go); ToR 2 keeps them. `up1` up → back.
//! - A blackhole on `up2` (nftables drops everything, the link stays up) → ToR 2 withdraws
//!   within BFD's time too: only BFD can have told it.

mod daemon_common;

use std::time::{Duration, Instant};

use daemon_common::*;
use serde_json::Value;
use testbed::{Frr, Netns};

/// The BGP hold time of both sides: long, so that a withdrawal within [`WELL_BEFORE_HOLD`]
/// is BFD's (or the link's) doing.
const HOLD: u32 = 30;
/// A third of the hold time: BFD's detection time is 300 ms; a slow CI machine still passes.
const WELL_BEFORE_HOLD: Duration = Duration::from_secs(10);

struct Tor {
    ns: Netns,
    frr: Frr,
    asn: u32,
    /// The ToR's link-local address on its `eth1` interface.
    ll: String,
    /// The ToR's own IPv4 address (on `lo`), the source of its pings.
    v4: String,
}

/// The FRR config the ToR was tested with (also in the README paragraph).
fn tor_conf(asn: u32, id: &str) -> String {
    format!(
        "hostname tor\nlog stdout informational\n\
         router bgp {asn}\n bgp router-id {id}\n no bgp ebgp-requires-policy\n\
         \x20neighbor eth1 interface remote-as external\n\
         \x20neighbor eth1 timers 10 {HOLD}\n\
         \x20neighbor eth1 timers connect 1\n\
         \x20neighbor eth1 bfd profile fast\n\
         \x20address-family ipv4 unicast\n  neighbor eth1 activate\n exit-address-family\n\
         \x20address-family ipv6 unicast\n  neighbor eth1 activate\n exit-address-family\n!\n"
    )
}

const BFDD: &str =
    "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !\n!\n";

fn link_local(ns: &Netns, dev: &str) -> String {
    let v = ip_json_in(ns, &["-6", "addr", "show", "dev", dev, "scope", "link"]);
    v[0]["addr_info"][0]["local"]
        .as_str()
        .unwrap_or_else(|| panic!("no link-local address on {dev} in {}: {v}", ns.name))
        .to_string()
}

fn ip_json_in(ns: &Netns, args: &[&str]) -> Value {
    let mut a = vec!["ip", "-j"];
    a.extend_from_slice(args);
    let out = ns_run(&ns.name, &a);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn kernel_route(ns: &Netns, prefix: &str) -> String {
    let fam = if prefix.contains(':') { "-6" } else { "-4" };
    String::from_utf8_lossy(&ns_run(&ns.name, &["ip", fam, "route", "show", prefix]).stdout)
        .trim()
        .to_string()
}

/// The next hops of FRR's best BGP path for `prefix` (ip, afi, scope).
fn best_next_hops(frr: &Frr, prefix: &str) -> Vec<(String, String, String)> {
    frr_paths(frr, prefix)
        .iter()
        .filter(|p| p["bestpath"]["overall"] == true)
        .flat_map(|p| p["nexthops"].as_array().cloned().unwrap_or_default())
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            (s("ip"), s("afi"), s("scope"))
        })
        .collect()
}

fn ping(from: &Netns, src: &str, to: &str) -> bool {
    ns_run(&from.name, &["ping", "-c", "1", "-W", "1", "-I", src, to])
        .status
        .success()
}

/// Polls `present` until it turns false; the time since `t0`.
fn gone_after(t0: Instant, mut present: impl FnMut() -> bool) -> Option<Duration> {
    while t0.elapsed() < Duration::from_secs(HOLD as u64 + 5) {
        if !present() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// The node namespace with `up1`/`up2` to two ToRs running FRR; the node's link-local
/// address on each uplink.
fn lab() -> (Netns, Vec<Tor>, Vec<String>) {
    let node = Netns::new("un-node");
    let mut tors = Vec::new();
    for (i, asn) in [(1, 65000u32), (2, 65002)] {
        let ns = Netns::new(&format!("un-tor{i}"));
        node.sh(&format!(
            "ip link add up{i} type veth peer name eth1 netns {} && ip link set up{i} up",
            ns.name
        ));
        let v4 = format!("198.51.100.{i}");
        ns.sh(&format!(
            "sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 && \
             ip link set eth1 up && ip addr add {v4}/32 dev lo"
        ));
        let frr = Frr::start_with_bfdd(&ns, &tor_conf(asn, &format!("10.55.{i}.1")), BFDD);
        let ll = link_local(&ns, "eth1");
        tors.push(Tor {
            ns,
            frr,
            asn,
            ll,
            v4,
        });
    }
    let node_ll: Vec<String> = (1..=2)
        .map(|i| link_local(&node, &format!("up{i}")))
        .collect();
    (node, tors, node_ll)
}

/// vipr with the two ToRs as unnumbered peers (BFD 100 ms × 3), hold time [`HOLD`].
fn unnumbered_env(
    dir: &testbed::TempDir,
    tors: &[Tor],
) -> std::collections::BTreeMap<String, String> {
    let mut env = base_env(&dir.join("state"));
    env.insert(
        "bgp_peers".into(),
        tors.iter()
            .enumerate()
            .map(|(i, t)| format!("unnumbered:up{}:{}::false:::true;100;100;3", i + 1, t.asn))
            .collect::<Vec<_>>()
            .join(","),
    );
    env.insert("bgp_routerid".into(), "10.55.0.11".into());
    env.insert("bgp_hold_time".into(), HOLD.to_string());
    env.insert("bgp_keepalive_interval".into(), "10".into());
    env
}

fn frr_ctx(tors: &[Tor], vipr: &Vipr) -> String {
    tors.iter()
        .map(|t| {
            format!(
                "--- ToR AS {}\n{}\n{}\n{}",
                t.asn,
                t.frr.vtysh("show bgp summary"),
                t.frr.vtysh("show bfd peers brief"),
                t.frr.logs()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n--- vipr\n"
        + &vipr.log()
}

#[test]
fn two_tors_over_link_local_sessions_routes_ping_and_link_down() {
    let (node, tors, node_ll) = lab();
    // The ToRs' pings come back through the link they came in by.
    for (i, t) in tors.iter().enumerate() {
        node.sh(&format!(
            "ip route add {}/32 via inet6 {} dev up{}",
            t.v4,
            t.ll,
            i + 1
        ));
    }
    let dir = workdir();
    let env = unnumbered_env(&dir, &tors);
    let t0 = Instant::now();
    let vipr = Vipr::start(&node, &env, &[], &dir.join("vipr.log"));
    let ctx = || frr_ctx(&tors, &vipr);

    // Sessions up and both VIPs at both ToRs, next hop vipr's link-local address.
    for (i, t) in tors.iter().enumerate() {
        for vip in [format!("{VIP4}/32"), format!("{VIP6}/128")] {
            let nhs = eventually(&format!("{vip} at ToR {}", i + 1), ctx, || {
                Some(best_next_hops(&t.frr, &vip)).filter(|n| !n.is_empty())
            });
            eprintln!("ToR {}: {vip} next hops {nhs:?}", i + 1);
            assert!(
                nhs.iter()
                    .any(|(ip, afi, _)| *ip == node_ll[i] && afi == "ipv6"),
                "ToR {}: {vip} via {nhs:?}, expected {} (our link-local on up{})",
                i + 1,
                node_ll[i],
                i + 1
            );
        }
    }
    eprintln!(
        "MEASURED unnumbered: vipr start -> both VIPs at both ToRs in {:?}",
        t0.elapsed()
    );
    // vipr's view: two Established sessions with the ToRs' link-local addresses.
    vipr.wait_status("both unnumbered sessions Established with BFD Up", |s| {
        tors.iter().enumerate().all(|(i, t)| {
            let p = Vipr::peer(s, &t.ll);
            p["state"] == "Established"
                && p["bfd"]["state"] == "Up"
                && p["interface"] == format!("up{}", i + 1)
                && p["local_address"] == node_ll[i].as_str()
        })
    });
    // zebra installed the IPv4 route via the IPv6 link-local next hop; a ping answers.
    for (i, t) in tors.iter().enumerate() {
        let r = eventually(&format!("kernel route at ToR {}", i + 1), ctx, || {
            Some(kernel_route(&t.ns, VIP4)).filter(|r| !r.is_empty())
        });
        eprintln!("ToR {} kernel: {r}", i + 1);
        assert!(r.contains("dev eth1"), "{r}");
        eventually(&format!("ping from ToR {} to {VIP4}", i + 1), ctx, || {
            ping(&t.ns, &t.v4, VIP4).then_some(())
        });
        let r6 = eventually(&format!("IPv6 kernel route at ToR {}", i + 1), ctx, || {
            Some(kernel_route(&t.ns, VIP6)).filter(|r| !r.is_empty())
        });
        assert!(r6.contains(&node_ll[i]) && r6.contains("dev eth1"), "{r6}");
    }

    // FRR's BFD sessions with vipr Up before the link goes.
    for t in &tors {
        eventually("FRR BFD up", ctx, || {
            let v = t.frr.vtysh_json("show bfd peers json");
            v.as_array()?
                .iter()
                .any(|p| p["status"] == "up")
                .then_some(())
        });
    }

    // up1 down on the node: ToR 1 withdraws, ToR 2 keeps its route.
    let t = Instant::now();
    node.sh("ip link set up1 down");
    let gone = gone_after(t, || !kernel_route(&tors[0].ns, VIP4).is_empty());
    eprintln!("MEASURED unnumbered: up1 down -> ToR 1 withdrew in {gone:?} (BFD 100 ms x 3, hold {HOLD} s)");
    let gone = gone.unwrap_or_else(|| panic!("ToR 1 kept the route\n{}", ctx()));
    assert!(
        gone < WELL_BEFORE_HOLD,
        "up1 down -> withdrawn after {gone:?}"
    );
    assert!(
        !best_next_hops(&tors[1].frr, &format!("{VIP4}/32")).is_empty(),
        "ToR 2 keeps the route"
    );
    node.sh("ip link set up1 up");
    eventually("ToR 1 has the route again", ctx, || {
        (!kernel_route(&tors[0].ns, VIP4).is_empty()).then_some(())
    });

    // A blackhole on up2 (the link stays up): only BFD can tell ToR 2.
    eventually("ToR 2 BFD up", ctx, || {
        let v = tors[1].frr.vtysh_json("show bfd peers json");
        v.as_array()?
            .iter()
            .any(|p| p["status"] == "up")
            .then_some(())
    });
    let t = Instant::now();
    node.sh(
        "nft -f - <<'EOF'\ntable inet vipr_bh {\n chain i { type filter hook input priority -300; iifname up2 drop; }\n \
         chain o { type filter hook output priority -300; oifname up2 drop; }\n}\nEOF",
    );
    let gone = gone_after(t, || !kernel_route(&tors[1].ns, VIP4).is_empty());
    eprintln!("MEASURED unnumbered: up2 blackholed -> ToR 2 withdrew in {gone:?} (BFD 100 ms x 3, hold {HOLD} s)");
    node.sh("nft delete table inet vipr_bh");
    let gone = gone.unwrap_or_else(|| panic!("ToR 2 kept the route\n{}", ctx()));
    assert!(
        gone < WELL_BEFORE_HOLD,
        "up2 blackholed -> withdrawn after {gone:?}"
    );
    eventually("ToR 2 has the route again", ctx, || {
        (!kernel_route(&tors[1].ns, VIP4).is_empty()).then_some(())
    });

    // ToR 1's link-local address changes: vipr hears it in FRR's next RA (every 10 s) and
    // peers with the new address; the route comes back with the same next hop.
    let new_ll = "fe80::99";
    tors[0].ns.sh(&format!(
        "ip addr flush dev eth1 scope link && ip addr add {new_ll}/64 dev eth1"
    ));
    let t = Instant::now();
    testbed::wait_for(Duration::from_secs(60), || {
        let s = vipr.status()?;
        let p = Vipr::peer(&s, new_ll);
        (p["state"] == "Established" && Vipr::peer(&s, &tors[0].ll).is_null()).then_some(())
    })
    .unwrap_or_else(|| panic!("vipr did not follow the new link-local address\n{}", ctx()));
    eprintln!(
        "MEASURED unnumbered: ToR 1 link-local changed -> vipr Established with the new one in {:?}",
        t.elapsed()
    );
    testbed::wait_for(Duration::from_secs(60), || {
        let nhs = best_next_hops(&tors[0].frr, &format!("{VIP4}/32"));
        nhs.iter().any(|(ip, _, _)| *ip == node_ll[0]).then_some(())
    })
    .unwrap_or_else(|| panic!("ToR 1 has no route after its address changed\n{}", ctx()));
}

/// The router connects to vipr (`vipr_bgp_listen`), and vipr's own connections are dropped:
/// both sessions come up on the incoming connections, matched by link-local address and
/// interface, with BFD.
#[test]
fn the_routers_incoming_connections_are_accepted_on_their_interfaces() {
    let (node, tors, node_ll) = lab();
    node.sh(
        "nft -f - <<'EOF'\ntable inet vipr_out {\n chain o { type filter hook output priority 0; tcp dport 179 tcp flags syn drop; }\n}\nEOF",
    );
    let dir = workdir();
    let mut env = unnumbered_env(&dir, &tors);
    env.insert("vipr_bgp_listen".into(), "[::]:179".into());
    let vipr = Vipr::start(&node, &env, &[], &dir.join("vipr.log"));
    let ctx = || frr_ctx(&tors, &vipr);
    for (i, t) in tors.iter().enumerate() {
        let vip = format!("{VIP4}/32");
        let nhs = eventually(&format!("{vip} at ToR {}", i + 1), ctx, || {
            Some(best_next_hops(&t.frr, &vip)).filter(|n| !n.is_empty())
        });
        assert!(nhs.iter().any(|(ip, _, _)| *ip == node_ll[i]), "{nhs:?}");
    }
    vipr.wait_status("both sessions Established with BFD Up", |s| {
        tors.iter().all(|t| {
            let p = Vipr::peer(s, &t.ll);
            p["state"] == "Established" && p["bfd"]["state"] == "Up"
        })
    });
    // Every BGP connection on the node is one the routers opened: our port 179.
    let ss = node.sh("ss -Htn state established '( sport = :179 or dport = :179 )'");
    let conns: Vec<&str> = ss.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(conns.len(), 2, "{ss}");
    for (i, t) in tors.iter().enumerate() {
        assert!(
            conns
                .iter()
                .any(|l| l.contains(&format!("[{}]%up{}:179", node_ll[i], i + 1))
                    && l.contains(&t.ll)),
            "no incoming connection from ToR {} on up{}:\n{ss}",
            i + 1,
            i + 1
        );
    }
}
