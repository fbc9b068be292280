//! kube-vip's MP-BGP next hop settings against a real BIRD 2: `mpbgp_nexthop=fixed` with
//! `mpbgp_ipv4` / `mpbgp_ipv6` (kube-vip v1.2.3 `pkg/bgp/peers.go` and
//! `pkg/kubevip/config_bgp.go` `FindMpbgpAddresses`) sets the next hop of the routes of the
//! other family than the session's (IPv6 routes over an IPv4 session, in MP_REACH_NLRI;
//! IPv4 routes over an IPv6 session); the session's own family keeps its local address.
//! `auto_sourceip` takes it from the interface holding `bgp_sourceip` (a second link).
//!
//! ```text
//!  node ns: vipr, eth0 10.55.0.11 / 2001:db8:55::11 ── br0 ── router ns: BIRD 10.55.0.1 / 2001:db8:55::1
//! ```
//!
//! The fixed next hops (10.55.0.99, 2001:db8:55::99) are on the lab's link but held by
//! nobody: only vipr's setting can have put them in the UPDATE.

mod daemon_common;

use daemon_common::*;
use testbed::{Bird, Lab};

/// The BGP.next_hop BIRD received for `prefix` from `proto` (first address: BIRD adds the
/// link-local one of an IPv6 next hop after it), once the route is there.
fn received_next_hop(bird: &Bird, vipr: &Vipr, prefix: &str, proto: &str) -> String {
    let ctx = || format!("{}\n{}", bird.birdc("show route all"), vipr.log());
    let r = eventually(&format!("{prefix} at BIRD"), ctx, || {
        bird_route(bird, prefix, proto)
    });
    r.attr("BGP.next_hop")
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn fixed_ipv6_next_hop_over_an_ipv4_session() {
    let lab = Lab::new(1);
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let dir = workdir();
    let mut env = base_env(&dir.join("state"));
    env.insert("mpbgp_nexthop".into(), "fixed".into());
    env.insert("mpbgp_ipv6".into(), "2001:db8:55::99".into());
    let vipr = Vipr::start(&lab.nodes[0], &env, &[], &dir.join("vipr.log"));
    assert_eq!(
        received_next_hop(&bird, &vipr, &format!("{VIP6}/128"), "n0"),
        "2001:db8:55::99"
    );
    // The session's own family: its local address (kube-vip's next-hop-self).
    assert_eq!(
        received_next_hop(&bird, &vipr, &format!("{VIP4}/32"), "n0"),
        Lab::node_v4(0).to_string()
    );
}

#[test]
fn fixed_ipv4_next_hop_over_an_ipv6_session_from_the_peers_own_field() {
    let lab = Lab::new(1);
    let conf = format!(
        "router id {};\nlog stderr all;\nprotocol device {{}}\n\
         protocol bgp n0 {{\n  local {} as {ROUTER_AS}; neighbor {} as {NODE_AS}; passive on; {BIRD_TIMERS}\n  \
         ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; }};\n}}\n",
        Lab::router_v4(),
        Lab::router_v6(),
        Lab::node_v6(0),
    );
    let bird = Bird::start(&lab.router, &conf);
    let dir = workdir();
    let mut env = base_env(&dir.join("state"));
    // The node-wide mode, the address in the peer's 6th field (kube-vip's SetMpbgpOptions
    // merges them).
    env.insert("mpbgp_nexthop".into(), "fixed".into());
    env.insert(
        "bgp_peers".into(),
        format!("[{}]:65000::false::mpbgp_ipv4=10.55.0.99", Lab::router_v6()),
    );
    let vipr = Vipr::start(&lab.nodes[0], &env, &[], &dir.join("vipr.log"));
    assert_eq!(
        received_next_hop(&bird, &vipr, &format!("{VIP4}/32"), "n0"),
        "10.55.0.99"
    );
    assert_eq!(
        received_next_hop(&bird, &vipr, &format!("{VIP6}/128"), "n0"),
        Lab::node_v6(0).to_string()
    );
}

/// `auto_sourceip`: the IPv6 next hop is the one of the interface holding `bgp_sourceip`
/// (`data0`, a second link to the router), not vipr's own choice (the first global address
/// of the node, on `eth0`).
#[test]
fn auto_sourceip_takes_the_next_hop_from_the_source_addresss_interface() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    lab.router.sh(&format!(
        "ip link add datar type veth peer name data0 netns {} && \
         ip addr add 10.77.0.1/24 dev datar && ip addr add 2001:db8:77::1/64 dev datar nodad && \
         ip link set datar up",
        node.name
    ));
    node.sh(
        "ip addr add 10.77.0.11/24 dev data0 && ip addr add 2001:db8:77::11/64 dev data0 nodad && \
         ip link set data0 up",
    );
    let conf = format!(
        "router id {};\nlog stderr all;\nprotocol device {{}}\n\
         protocol bgp n0 {{\n  local 10.77.0.1 as {ROUTER_AS}; neighbor 10.77.0.11 as {NODE_AS}; passive on; {BIRD_TIMERS}\n  \
         ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; }};\n}}\n",
        Lab::router_v4(),
    );
    let bird = Bird::start(&lab.router, &conf);
    let dir = workdir();
    let mut env = base_env(&dir.join("state"));
    env.insert("bgp_peers".into(), "10.77.0.1:65000::false".into());
    env.insert("bgp_sourceip".into(), "10.77.0.11".into());
    env.insert("mpbgp_nexthop".into(), "auto_sourceip".into());
    let vipr = Vipr::start(node, &env, &[], &dir.join("vipr.log"));
    assert_eq!(
        received_next_hop(&bird, &vipr, &format!("{VIP6}/128"), "n0"),
        "2001:db8:77::11"
    );
    assert_eq!(
        received_next_hop(&bird, &vipr, &format!("{VIP4}/32"), "n0"),
        "10.77.0.11"
    );
}
