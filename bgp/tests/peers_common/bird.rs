//! BIRD 2 side of the `peers_*` tests: `bird.conf` builders (one `protocol bgp` per
//! session, passive by default) and polling helpers over `birdc`.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use testbed::{wait_for, Bird, BirdRoute};

use super::*;

/// One `protocol bgp NAME` for a session with node `i` over `v6`, the speaker in AS
/// `node_as`. `channels` are the channel blocks (default: the session's own family, import
/// all, export none); `extra` goes into the protocol block (e.g. `password "x";`). iBGP
/// sessions are marked `direct` so the next hop is used as the gateway without an IGP.
pub fn bird_proto(name: &str, i: usize, v6: bool, node_as: u32, extra: &str) -> String {
    let ch = if v6 { "ipv6" } else { "ipv4" };
    bird_proto_channels(
        name,
        i,
        v6,
        node_as,
        extra,
        &format!("{ch} {{ import all; export none; }};"),
    )
}

/// [`bird_proto`] for an active BIRD (connects to the speaker's listener).
pub fn bird_proto_active(name: &str, i: usize, v6: bool, node_as: u32, extra: &str) -> String {
    bird_proto(name, i, v6, node_as, extra).replace(" passive on;", "")
}

/// [`bird_proto`] with explicit channel blocks.
pub fn bird_proto_channels(
    name: &str,
    i: usize,
    v6: bool,
    node_as: u32,
    extra: &str,
    channels: &str,
) -> String {
    let direct = if node_as == PEER_AS { "direct;" } else { "" };
    format!(
        "protocol bgp {name} {{\n  local {} as {PEER_AS}; neighbor {} as {node_as}; passive on; \
         {direct}\n  {BIRD_TIMERS}\n  {extra}\n  {channels}\n}}\n",
        router(v6),
        node_addr(i, v6),
    )
}

/// A whole bird.conf with the given protocols.
pub fn bird_conf(protocols: &[String]) -> String {
    format!(
        "router id 10.55.0.1;\nlog stderr all;\nprotocol device {{ scan time 1; }}\n{}",
        protocols.concat()
    )
}

/// Waits until BIRD's protocol `proto` is Established.
pub fn wait_bird_established(bird: &Bird, proto: &str) {
    let ok = wait_for(CONVERGE, || {
        (bird.protocol_state(proto) == "Established").then_some(())
    });
    assert!(
        ok.is_some(),
        "BIRD {proto}: {}\n{}",
        bird.birdc(&format!("show protocols all {proto}")),
        bird.log()
    );
}

/// Waits for BIRD's route to `prefix` learnt from `proto`.
pub fn wait_bird_route(bird: &Bird, prefix: &IpNet, proto: &str) -> BirdRoute {
    let p = prefix.to_string();
    wait_for(CONVERGE, || {
        bird.routes_for(&p)
            .into_iter()
            .find(|r| r.from_protocol == proto)
    })
    .unwrap_or_else(|| {
        panic!(
            "no route {p} from {proto} in BIRD:\n{}\n{}",
            bird.birdc("show route all"),
            bird.birdc("show protocols all")
        )
    })
}

/// Waits until BIRD has no route to `prefix` from `proto`; returns how long that took.
pub fn wait_bird_no_route(bird: &Bird, prefix: &IpNet, proto: &str, within: Duration) -> Duration {
    let p = prefix.to_string();
    let t0 = std::time::Instant::now();
    let gone = wait_for(within, || {
        (!bird.routes_for(&p).iter().any(|r| r.from_protocol == proto)).then_some(())
    });
    assert!(
        gone.is_some(),
        "route {p} from {proto} still in BIRD after {within:?}:\n{}",
        bird.birdc("show route all")
    );
    t0.elapsed()
}

/// The state and "Since" column of `show protocols` for `proto` (e.g. `up` at
/// 14:22:19.609, as milliseconds of the day). A session reset shows as a new time. BIRD
/// turns its monotonic timestamp into wall-clock time at each query, so the value jitters
/// by a millisecond or so: compare with [`same_since`].
pub fn bird_since(bird: &Bird, proto: &str) -> (String, u64) {
    let out = bird.birdc(&format!("show protocols {proto}"));
    let ms_of_day = |t: &str| -> Option<u64> {
        let (hms, frac) = t.split_once('.').unwrap_or((t, "0"));
        let mut n = hms.split(':').map(|x| x.parse::<u64>().ok());
        let (h, m, s) = (n.next()??, n.next()??, n.next()??);
        let ms = format!("{frac:0<3}")[..3].parse::<u64>().ok()?;
        Some(((h * 60 + m) * 60 + s) * 1000 + ms)
    };
    out.lines()
        .find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.first() != Some(&proto) || cols.len() < 5 {
                return None;
            }
            Some((cols[3].to_string(), ms_of_day(cols[4])?))
        })
        .unwrap_or_else(|| {
            panic!(
                "no protocol {proto} with a time in:\n{out}\nBIRD log:\n{}",
                bird.log()
            )
        })
}

/// Whether two [`bird_since`] values are the same state change (within 50 ms).
pub fn same_since(a: &(String, u64), b: &(String, u64)) -> bool {
    a.0 == b.0 && a.1.abs_diff(b.1) <= 50
}

/// Checks one route in BIRD: next hop, AS path, MED, LOCAL_PREF (iBGP: ours; eBGP: BIRD's
/// default 100), communities and large communities.
pub fn check_bird_route(r: &BirdRoute, next_hop: IpAddr, as_path: &[u32], ibgp: bool) {
    let ctx = format!("{r:#?}");
    assert_eq!(r.next_hop, Some(next_hop.to_string()), "next hop: {ctx}");
    assert_eq!(r.as_path, as_path, "AS path: {ctx}");
    assert_eq!(r.origin.as_deref(), Some("IGP"), "{ctx}");
    assert_eq!(r.med, Some(MED), "{ctx}");
    assert_eq!(
        r.local_pref,
        Some(if ibgp { LOCAL_PREF } else { 100 }),
        "{ctx}"
    );
    assert_eq!(r.communities, vec![(65010, 100), (65010, 200)], "{ctx}");
    assert_eq!(r.large_communities, vec![(EBGP_AS4, 1, 2)], "{ctx}");
}
