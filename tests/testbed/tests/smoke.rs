//! Smoke tests proving the harness works against the real tools: a bridged lab of
//! namespaces (ping over IPv4 and IPv6, `enter`, link down/up, cleanup), a tokio runtime
//! whose sockets live in a node namespace (`Netns::runtime`), BIRD 2 peering with FRR (both address families, communities, large communities, restart) and BIRD
//! peering with GoBGP (CLI-added path, BIRD restart).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use testbed::{require_root, wait_for, Bird, BirdRoute, Frr, Gobgp, Lab};

const CONVERGE: Duration = Duration::from_secs(20);

fn netns_list() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_gone(names: &[String]) {
    let list = netns_list();
    for n in names {
        assert!(
            !list.lines().any(|l| l.split_whitespace().next() == Some(n)),
            "netns {n} left over:\n{list}"
        );
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn pings(ns: &testbed::Netns, args: &[&str]) -> bool {
    let mut a = vec!["ping", "-c", "1", "-W", "1"];
    a.extend_from_slice(args);
    ns.run(&a).status.success()
}

#[test]
fn lab_connects_nodes_and_cleans_up() {
    require_root();
    let lab = Lab::new(2);
    let names: Vec<String> = std::iter::once(&lab.router)
        .chain(&lab.nodes)
        .map(|n| n.name.clone())
        .collect();
    assert!(names.iter().all(|n| netns_list().contains(n.as_str())));

    let (r4, r6) = (Lab::router_v4().to_string(), Lab::router_v6().to_string());
    assert_eq!(Lab::node_v6(0).to_string(), "2001:db8:55::11");
    assert!(pings(&lab.nodes[0], &[&r4]), "node0 -> router over IPv4");
    assert!(
        pings(&lab.nodes[0], &["-6", &r6]),
        "node0 -> router over IPv6"
    );
    assert!(
        pings(&lab.nodes[1], &[&Lab::node_v4(0).to_string()]),
        "node1 -> node0"
    );
    assert!(
        pings(&lab.nodes[1], &["-6", &Lab::node_v6(0).to_string()]),
        "node1 -> node0 v6"
    );

    // Cable pulled: no traffic; plugged in again: traffic, IPv6 address kept.
    lab.link_down(0);
    assert!(
        !pings(&lab.nodes[0], &[&r4]),
        "ping must fail with the link down"
    );
    lab.link_up(0);
    let back = wait_for(Duration::from_secs(5), || {
        pings(&lab.nodes[0], &["-6", &r6]).then_some(())
    });
    assert!(back.is_some(), "IPv6 ping must work again after link_up");

    // Sockets made by `enter` live in the namespace: a listener in the router, a client in node0.
    let listener = lab
        .router
        .enter(|| TcpListener::bind((Lab::router_v4(), 0)).unwrap());
    let addr: SocketAddr = listener.local_addr().unwrap();
    let listening = lab.router.sh("ss -ltnH");
    assert!(listening.contains(&addr.to_string()), "{listening}");
    let local = lab.nodes[0].enter(|| TcpStream::connect(addr).unwrap().local_addr().unwrap());
    assert_eq!(local.ip(), Lab::node_v4(0));
    let (_conn, peer) = listener.accept().unwrap();
    assert_eq!(peer, local);
    let caught = std::panic::catch_unwind(|| lab.nodes[1].enter(|| panic!("propagated")));
    assert!(caught.is_err(), "a panic inside enter must propagate");

    // A spawned process is killed with the namespace.
    let mut sleeper = lab.nodes[1].spawn(&["sleep", "600"]);
    let pid = sleeper.pid();
    assert!(wait_for(Duration::from_secs(2), || lab.nodes[1]
        .pids()
        .contains(&(pid as i32))
        .then_some(()))
    .is_some());
    drop(listener);
    drop(lab);
    assert!(
        sleeper.exited().is_some(),
        "process in the namespace must be killed"
    );
    assert_gone(&names);
}

#[test]
fn runtime_threads_and_sockets_live_in_the_namespace() {
    require_root();
    let lab = Lab::new(1);
    let host_ns = testbed::runtime::current_netns_inode();
    let listener = lab
        .router
        .enter(|| TcpListener::bind((Lab::router_v4(), 0)).unwrap());
    let addr = listener.local_addr().unwrap();
    let rt = lab.nodes[0].runtime();
    // A tokio connect made by a task: from the node's address, which only exists in the node.
    let (local, task_ns, blocking_ns) = rt.block_on(async move {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let blocking = tokio::task::spawn_blocking(testbed::runtime::current_netns_inode)
            .await
            .unwrap();
        (
            s.local_addr().unwrap(),
            testbed::runtime::current_netns_inode(),
            blocking,
        )
    });
    assert_eq!(local.ip(), Lab::node_v4(0));
    assert_ne!(task_ns, host_ns, "task ran in the host namespace");
    assert_eq!(
        task_ns, blocking_ns,
        "blocking pool thread in another namespace"
    );
    assert_eq!(
        testbed::runtime::current_netns_inode(),
        host_ns,
        "the caller stays in the host namespace"
    );
    let (_c, peer) = listener.accept().unwrap();
    assert_eq!(peer, local);
    // A tokio listener bound by a task is visible in the node, not on the host.
    let bound = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        l.into_std().unwrap()
    });
    let port = bound.local_addr().unwrap().port();
    let ss = lab.nodes[0].sh("ss -ltnH");
    assert!(ss.contains(&format!(":{port} ")), "{ss}");
    assert!(!lab.router.sh("ss -ltnH").contains(&format!(":{port} ")));
    drop(bound);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { panic!("propagated") })
    }));
    assert!(caught.is_err(), "a panic inside block_on must propagate");
    drop(rt);
}

const BIRD_TIMERS: &str =
    "hold time 3; keepalive time 1; connect retry time 1; connect delay time 1; error wait time 1, 5;";

fn bird_frr_conf() -> String {
    format!(
        r#"router id 10.55.0.1;
log stderr all;
protocol device {{}}
protocol static st4 {{ ipv4; route 192.0.2.0/24 blackhole; }}
protocol bgp frr4 {{
  local 10.55.0.1 as 65000; neighbor 10.55.0.11 as 65001; {BIRD_TIMERS}
  ipv4 {{ import all; export filter {{
    if net = 192.0.2.0/24 then {{
      bgp_community.add((65000, 1)); bgp_large_community.add((65000, 2, 3)); accept;
    }}
    reject;
  }}; }};
}}
protocol bgp frr6 {{
  local 2001:db8:55::1 as 65000; neighbor 2001:db8:55::11 as 65001; {BIRD_TIMERS}
  ipv6 {{ import all; export none; }};
}}
"#
    )
}

// The route-map comes before `router bgp`: defined after the `network ... route-map` that
// uses it, FRR applies it only after `bgp route-map delay-timer` (5 s).
const FRR_CONF: &str = "hostname node0
log stdout informational
route-map TAG permit 10
 set community 65001:100 65001:200
 set large-community 65001:1:2
 set metric 50
!
router bgp 65001
 bgp router-id 10.55.0.11
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 no bgp network import-check
 neighbor 10.55.0.1 remote-as 65000
 neighbor 10.55.0.1 timers 1 3
 neighbor 10.55.0.1 timers connect 1
 neighbor 2001:db8:55::1 remote-as 65000
 neighbor 2001:db8:55::1 timers 1 3
 neighbor 2001:db8:55::1 timers connect 1
 address-family ipv4 unicast
  network 203.0.113.10/32 route-map TAG
  neighbor 10.55.0.1 activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:ff::10/128 route-map TAG
  neighbor 2001:db8:55::1 activate
 exit-address-family
!
";

fn wait_route(bird: &Bird, prefix: &str, from: &str) -> BirdRoute {
    wait_for(CONVERGE, || {
        bird.routes_for(prefix)
            .into_iter()
            .find(|r| r.from_protocol == from)
    })
    .unwrap_or_else(|| {
        panic!(
            "no route {prefix} from {from} in BIRD:\n{}",
            bird.birdc("show route all")
        )
    })
}

fn wait_bird_established(bird: &Bird, proto: &str) {
    let ok = wait_for(CONVERGE, || {
        (bird.protocol_state(proto) == "Established").then_some(())
    });
    assert!(
        ok.is_some(),
        "{proto}: {}\n{}",
        bird.protocol_state(proto),
        bird.log()
    );
}

#[test]
fn bird_peers_with_frr() {
    require_root();
    let t0 = Instant::now();
    let lab = Lab::new(1);
    let bird = Bird::start(&lab.router, &bird_frr_conf());
    let mut frr = Frr::start(&lab.nodes[0], FRR_CONF);
    wait_bird_established(&bird, "frr4");
    wait_bird_established(&bird, "frr6");
    assert_eq!(frr.neighbor_state("10.55.0.1"), "Established");
    assert_eq!(frr.neighbor_state("2001:db8:55::1"), "Established");
    assert_eq!(frr.neighbor_state("10.9.9.9"), "");
    eprintln!("bird/frr established after {:?}", t0.elapsed());

    let v4 = wait_route(&bird, "203.0.113.10/32", "frr4");
    assert_eq!(v4.next_hop.as_deref(), Some("10.55.0.11"));
    assert_eq!(v4.as_path, vec![65001]);
    assert_eq!(v4.origin.as_deref(), Some("IGP"));
    assert_eq!(v4.med, Some(50));
    assert_eq!(v4.local_pref, Some(100));
    assert_eq!(v4.communities, vec![(65001, 100), (65001, 200)]);
    assert_eq!(v4.large_communities, vec![(65001, 1, 2)]);
    assert_eq!(v4.table, "master4");
    assert!(v4.primary);

    let v6 = wait_route(&bird, "2001:db8:ff::10/128", "frr6");
    assert_eq!(v6.next_hop.as_deref(), Some("2001:db8:55::11"));
    assert_eq!(v6.as_path, vec![65001]);
    assert_eq!(v6.communities, vec![(65001, 100), (65001, 200)]);
    assert_eq!(v6.large_communities, vec![(65001, 1, 2)]);
    assert_eq!(v6.table, "master6");

    // The other direction: BIRD's tagged static route arrives at FRR.
    let path = wait_for(CONVERGE, || {
        let v = frr.vtysh_json("show bgp ipv4 unicast 192.0.2.0/24 json");
        v["paths"].get(0).cloned()
    })
    .expect("192.0.2.0/24 at FRR");
    assert_eq!(path["nexthops"][0]["ip"], "10.55.0.1");
    assert_eq!(path["aspath"]["string"], "65000");
    assert_eq!(path["community"]["list"][0], "65000:1");
    assert_eq!(path["largeCommunity"]["list"][0], "65000:2:3");
    assert!(frr.vtysh("show bgp ipv4 unicast").contains("192.0.2.0/24"));

    // FRR restarts: the routes go with it and come back.
    let t1 = Instant::now();
    frr.restart();
    wait_bird_established(&bird, "frr4");
    wait_route(&bird, "203.0.113.10/32", "frr4");
    eprintln!("frr restart + reconverge {:?}", t1.elapsed());

    let mut pids = vec![frr.bgpd_process().unwrap().pid()];
    let dirs = vec![bird.dir().to_path_buf(), frr.dir().to_path_buf()];
    let mut bird = bird;
    pids.push(bird.process().unwrap().pid());
    let names: Vec<String> = std::iter::once(&lab.router)
        .chain(&lab.nodes)
        .map(|n| n.name.clone())
        .collect();
    drop(frr);
    drop(bird);
    drop(lab);
    assert!(pids.iter().all(|p| !alive(*p)), "daemons left running");
    assert!(dirs.iter().all(|d| !d.exists()), "temp dirs left: {dirs:?}");
    assert_gone(&names);
    eprintln!("bird_peers_with_frr took {:?}", t0.elapsed());
}

const GOBGP_TOML: &str = r#"
[global.config]
  as = 65002
  router-id = "10.55.0.12"
  local-address-list = ["10.55.0.12"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.55.0.1"
    peer-as = 65000
  [neighbors.timers.config]
    hold-time = 3
    keepalive-interval = 1
    connect-retry = 1
  [neighbors.transport.config]
    passive-mode = true
"#;

#[test]
fn bird_peers_with_gobgp() {
    require_root();
    let t0 = Instant::now();
    let lab = Lab::new(2);
    let conf = format!(
        r#"router id 10.55.0.1;
log stderr all;
protocol device {{}}
protocol static st4 {{ ipv4; route 192.0.2.0/24 blackhole; }}
protocol bgp gob {{
  local 10.55.0.1 as 65000; neighbor 10.55.0.12 as 65002; {BIRD_TIMERS}
  ipv4 {{ import all; export where net = 192.0.2.0/24; }};
}}
"#
    );
    let mut bird = Bird::start(&lab.router, &conf);
    let gobgp = Gobgp::start(&lab.nodes[1], GOBGP_TOML);
    wait_bird_established(&bird, "gob");
    assert_eq!(gobgp.neighbor_state("10.55.0.1"), "established");
    eprintln!("bird/gobgp established after {:?}", t0.elapsed());

    gobgp.cli(&[
        "global",
        "rib",
        "add",
        "198.51.100.7/32",
        "community",
        "65002:7",
        "large-community",
        "65002:1:1",
    ]);
    let r = wait_route(&bird, "198.51.100.7/32", "gob");
    assert_eq!(r.next_hop.as_deref(), Some("10.55.0.12"));
    assert_eq!(r.as_path, vec![65002]);
    assert_eq!(r.origin.as_deref(), Some("Incomplete"));
    assert_eq!(r.communities, vec![(65002, 7)]);
    assert_eq!(r.large_communities, vec![(65002, 1, 1)]);

    // BIRD's export arrives at GoBGP.
    let got = wait_for(CONVERGE, || {
        let v = gobgp.cli_json(&["global", "rib"]);
        v.get("192.0.2.0/24").cloned()
    })
    .expect("192.0.2.0/24 at GoBGP");
    let nh = got[0]["attrs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == 3)
        .cloned();
    assert_eq!(nh.unwrap()["nexthop"], "10.55.0.1", "{got}");

    // BIRD restarts: the session and the path come back.
    let t1 = Instant::now();
    bird.restart();
    wait_bird_established(&bird, "gob");
    wait_route(&bird, "198.51.100.7/32", "gob");
    eprintln!("bird restart + reconverge with gobgp {:?}", t1.elapsed());

    // Withdraw: gone from BIRD.
    gobgp.cli(&["global", "rib", "del", "198.51.100.7/32"]);
    let gone = wait_for(CONVERGE, || {
        bird.routes_for("198.51.100.7/32").is_empty().then_some(())
    });
    assert!(gone.is_some(), "withdrawn path still in BIRD");
    eprintln!("bird_peers_with_gobgp took {:?}", t0.elapsed());
}

#[test]
fn everything_is_cleaned_up_after_a_panic() {
    require_root();
    let seen = std::sync::Mutex::new((
        Vec::<String>::new(),
        Vec::<u32>::new(),
        Vec::<std::path::PathBuf>::new(),
    ));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new(2);
        let mut bird = Bird::start(&lab.router, "router id 10.55.0.1;\nprotocol device {}\n");
        let mut frr = Frr::start(
            &lab.nodes[0],
            "router bgp 65001\n bgp router-id 10.55.0.11\n",
        );
        let mut gobgp = Gobgp::start(&lab.nodes[1], GOBGP_TOML);
        let sleeper = lab.nodes[0].spawn(&["sleep", "600"]);
        let mut s = seen.lock().unwrap();
        s.0.extend(
            std::iter::once(&lab.router)
                .chain(&lab.nodes)
                .map(|n| n.name.clone()),
        );
        s.1.extend([
            bird.process().unwrap().pid(),
            frr.bgpd_process().unwrap().pid(),
            gobgp.process().unwrap().pid(),
            sleeper.pid(),
        ]);
        s.2.extend([
            bird.dir().to_path_buf(),
            frr.dir().to_path_buf(),
            gobgp.dir().to_path_buf(),
        ]);
        drop(s);
        panic!("test failure while everything runs");
    }));
    assert!(result.is_err());
    let (names, pids, dirs) = seen.into_inner().unwrap();
    assert_eq!((names.len(), pids.len(), dirs.len()), (3, 4, 3));
    assert_gone(&names);
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "processes left running: {pids:?}"
    );
    assert!(dirs.iter().all(|d| !d.exists()), "temp dirs left: {dirs:?}");
}
