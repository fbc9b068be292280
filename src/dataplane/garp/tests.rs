//! Tests of the announcer: byte layouts of the builders against hand-written frames, and real
//! announcements between namespaces (testbed `Lab`: the router namespace plays the client
//! whose neighbour cache must follow the VIP from node to node). Needs root.

use super::*;

use std::thread::sleep;
use std::time::{Duration, Instant};

use testbed::{wait_for, Lab, Netns};

const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0x10);
const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
const ETH_P_IPV6: u16 = 0x86dd;
/// How long a negative check waits for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

#[test]
fn arp_frame_layout() {
    #[rustfmt::skip]
    let want: [u8; 42] = [
        // Ethernet: broadcast destination, source MAC, EtherType ARP
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
        0x08, 0x06,
        // ARP: htype Ethernet, ptype IPv4, hlen 6, plen 4, op request
        0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
        // sender MAC, sender IP
        0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 192, 0, 2, 10,
        // target MAC zero, target IP = sender IP
        0, 0, 0, 0, 0, 0, 192, 0, 2, 10,
    ];
    assert_eq!(arp_frame(MAC, VIP4), want);
}

#[test]
fn na_message_layout() {
    #[rustfmt::skip]
    let want: Vec<u8> = vec![
        // type 136, code 0, checksum 0 (the kernel fills it in)
        136, 0, 0, 0,
        // flags: R=0 S=0 O=1, reserved
        0x20, 0, 0, 0,
        // target 2001:db8:ff::10
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x10,
        // option Target Link-Layer Address, length 1 (8 bytes), MAC
        2, 1, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
    ];
    assert_eq!(na_message(MAC, VIP6), want);
}

/// `new` refuses interfaces without an Ethernet address and missing ones; IPv6
/// announcements need the address on the node. (This kernel has no dummy driver: `d0` is
/// one end of a veth pair.)
#[test]
fn refuses_loopback_missing_interfaces_and_unconfigured_sources() {
    let ns = Netns::new("vg");
    ns.sh(
        "ip link add d0 type veth peer name d1 && ip link set d0 up && ip link set d1 up && \
         ip tuntap add t0 mode tun",
    );
    let d0_mac = link_mac(&ns, "d0");
    ns.enter(|| {
        let e = Announcer::new("lo").unwrap_err();
        assert!(matches!(e, DataplaneError::NotEthernet { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("\"lo\"") && text.contains("loopback"),
            "{text}"
        );

        let e = Announcer::new("t0").unwrap_err();
        assert!(matches!(e, DataplaneError::NotEthernet { .. }), "{e:?}");
        assert!(e.to_string().contains("not Ethernet"), "{e}");

        let e = Announcer::new("nosuch0").unwrap_err();
        assert_eq!(e, DataplaneError::NoInterface("nosuch0".to_string()));
        assert!(e.to_string().contains("nosuch0"), "{e}");
        for bad in ["", "a-name-longer-than-ifnamsiz", "eth\0"] {
            let e = Announcer::new(bad).unwrap_err();
            assert_eq!(e, DataplaneError::NoInterface(bad.to_string()));
        }

        let a = Announcer::new("d0").expect("announcer on a veth");
        assert_eq!(a.mac(), d0_mac);
        a.announce(IpAddr::V4(VIP4)).expect("GARP on d0");
        let e = a.announce(IpAddr::V6(VIP6)).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, DataplaneError::Announce { .. }), "{e:?}");
        assert!(
            text.contains("2001:db8:ff::10") && text.contains("configured"),
            "{text}"
        );
    });
    ns.sh("ip addr add 2001:db8:ff::10/128 dev d0 nodad");
    ns.enter(|| {
        let a = Announcer::new("d0").expect("announcer on d0");
        a.announce(IpAddr::V6(VIP6))
            .expect("NA from a configured VIP");
    });
}

/// The frames on the wire, captured on the router's bridge: the GARP is exactly
/// `arp_frame`; the NA is `na_message` in an IPv6 packet from the VIP to ff02::1 with hop
/// limit 255, and the kernel filled in a correct ICMPv6 checksum.
#[test]
fn announcements_on_the_wire() {
    let lab = Lab::new(1);
    let (router, node) = (&lab.router, &lab.nodes[0]);
    node.sh("ip addr add 192.0.2.10/32 dev eth0 && ip addr add 2001:db8:ff::10/128 dev eth0 nodad");
    let mac = link_mac(node, "eth0");
    let arp = router.enter(|| Capture::open("br0", ETH_P_ARP));
    let ip6 = router.enter(|| Capture::open("br0", ETH_P_IPV6));
    node.enter(|| {
        let a = Announcer::new("eth0").expect("announcer");
        assert_eq!(a.mac(), mac);
        a.announce(IpAddr::V4(VIP4)).expect("GARP");
        a.announce(IpAddr::V6(VIP6)).expect("NA");
    });

    let frame = arp
        .next(Duration::from_secs(1), |f| f.len() >= 42 && f[6..12] == mac)
        .expect("the GARP reaches the router");
    assert_eq!(frame[..42], arp_frame(mac, VIP4));
    assert!(frame[42..].iter().all(|&b| b == 0), "padding: {frame:02x?}");

    let is_na = |f: &[u8]| f.len() >= 54 + 32 && f[6..12] == mac && f[20] == 58 && f[54] == 136;
    let frame = ip6
        .next(Duration::from_secs(1), is_na)
        .expect("the NA reaches the router");
    assert_eq!(
        frame[0..6],
        [0x33, 0x33, 0, 0, 0, 1],
        "all-nodes multicast MAC"
    );
    assert_eq!(frame[12..14], ETH_P_IPV6.to_be_bytes());
    let (ip, body) = (&frame[14..54], &frame[54..]);
    assert_eq!(ip[0] >> 4, 6);
    assert_eq!(
        u16::from_be_bytes([ip[4], ip[5]]) as usize,
        body.len(),
        "payload length"
    );
    assert_eq!(body.len(), 32);
    assert_eq!(ip[6], 58, "next header ICMPv6");
    assert_eq!(ip[7], 255, "hop limit");
    assert_eq!(ip[8..24], VIP6.octets(), "source = the VIP");
    assert_eq!(ip[24..40], ALL_NODES.octets(), "destination ff02::1");
    let mut want = na_message(mac, VIP6);
    want[2..4].copy_from_slice(&body[2..4]);
    assert_eq!(body, &want[..]);
    assert_ne!(body[2..4], [0, 0], "checksum filled in");
    assert_eq!(
        icmp6_sum(&ip[8..24], &ip[24..40], body),
        0xffff,
        "checksum correct"
    );
}

/// The realistic takeover: the router has node0's MAC for the VIP; the VIP moves to node1,
/// whose GARP switches the router's entry at once.
#[test]
fn garp_moves_an_existing_entry() {
    let lab = Lab::new(2);
    let (router, n0, n1) = (&lab.router, &lab.nodes[0], &lab.nodes[1]);
    let (mac0, mac1) = (link_mac(n0, "eth0"), link_mac(n1, "eth0"));
    router.sh("ip route add 192.0.2.0/24 dev br0");
    n0.sh("ip addr add 192.0.2.10/32 dev eth0");
    router.sh("ping -c 1 -W 2 192.0.2.10");
    assert_eq!(neigh_mac(router, "192.0.2.10"), Some(mac0));

    n0.sh("ip addr del 192.0.2.10/32 dev eth0");
    n1.sh("ip addr add 192.0.2.10/32 dev eth0");
    sleep(QUIET);
    assert_eq!(
        neigh_mac(router, "192.0.2.10"),
        Some(mac0),
        "moved without an announcement"
    );

    n1.enter(|| Announcer::new("eth0")?.announce(IpAddr::V4(VIP4)))
        .expect("GARP from node1");
    let start = Instant::now();
    let moved = wait_for(Duration::from_secs(1), || {
        (neigh_mac(router, "192.0.2.10") == Some(mac1)).then_some(())
    });
    assert!(
        moved.is_some(),
        "router's entry: {}",
        router.sh("ip neigh show 192.0.2.10")
    );
    eprintln!("GARP: entry moved after {:?}", start.elapsed());
    router.sh("ping -c 1 -W 2 192.0.2.10");
}

/// Without an entry, a GARP creates none by default; with `arp_accept=1` it does.
#[test]
fn garp_creates_an_entry_only_with_arp_accept() {
    let lab = Lab::new(1);
    let (router, node) = (&lab.router, &lab.nodes[0]);
    let mac = link_mac(node, "eth0");
    router.sh("ip route add 192.0.2.0/24 dev br0");
    node.sh("ip addr add 192.0.2.10/32 dev eth0");
    let announce = || {
        node.enter(|| Announcer::new("eth0")?.announce(IpAddr::V4(VIP4)))
            .expect("GARP")
    };

    announce();
    sleep(QUIET);
    assert_eq!(
        neigh_mac(router, "192.0.2.10"),
        None,
        "arp_accept=0 created an entry"
    );

    router.sh("sysctl -q -w net.ipv4.conf.br0.arp_accept=1");
    announce();
    let created = wait_for(Duration::from_secs(1), || {
        (neigh_mac(router, "192.0.2.10") == Some(mac)).then_some(())
    });
    assert!(
        created.is_some(),
        "router's entry: {}",
        router.sh("ip neigh show 192.0.2.10")
    );
}

/// The IPv6 takeover: the router has node0's MAC for the VIP; node1's unsolicited NA
/// (Override set) replaces it at once.
#[test]
fn na_overrides_an_existing_entry() {
    let lab = Lab::new(2);
    let (router, n0, n1) = (&lab.router, &lab.nodes[0], &lab.nodes[1]);
    let (mac0, mac1) = (link_mac(n0, "eth0"), link_mac(n1, "eth0"));
    router.sh("ip -6 route add 2001:db8:ff::/64 dev br0");
    n0.sh("ip addr add 2001:db8:ff::10/128 dev eth0 nodad");
    router.sh("ping -6 -c 1 -W 2 2001:db8:ff::10");
    assert_eq!(neigh_mac(router, "2001:db8:ff::10"), Some(mac0));

    n0.sh("ip addr del 2001:db8:ff::10/128 dev eth0");
    n1.sh("ip addr add 2001:db8:ff::10/128 dev eth0 nodad");
    sleep(QUIET);
    assert_eq!(
        neigh_mac(router, "2001:db8:ff::10"),
        Some(mac0),
        "moved without an announcement"
    );

    n1.enter(|| Announcer::new("eth0")?.announce(IpAddr::V6(VIP6)))
        .expect("NA from node1");
    let start = Instant::now();
    let moved = wait_for(Duration::from_secs(1), || {
        (neigh_mac(router, "2001:db8:ff::10") == Some(mac1)).then_some(())
    });
    assert!(
        moved.is_some(),
        "router's entry: {}",
        router.sh("ip -6 neigh show 2001:db8:ff::10")
    );
    eprintln!("NA: entry moved after {:?}", start.elapsed());
    router.sh("ping -6 -c 1 -W 2 2001:db8:ff::10");
}

/// Without an entry, an unsolicited NA creates none on a host, even with
/// `accept_untracked_na=1`; on a router (`forwarding=1`) with it, it does (RFC 9131).
#[test]
fn na_creates_an_entry_only_on_a_router_accepting_untracked_na() {
    let lab = Lab::new(1);
    let (router, node) = (&lab.router, &lab.nodes[0]);
    let mac = link_mac(node, "eth0");
    node.sh("ip addr add 2001:db8:ff::10/128 dev eth0 nodad");
    let announce = || {
        node.enter(|| Announcer::new("eth0")?.announce(IpAddr::V6(VIP6)))
            .expect("NA")
    };

    announce();
    sleep(QUIET);
    assert_eq!(
        neigh_mac(router, "2001:db8:ff::10"),
        None,
        "defaults created an entry"
    );

    router.sh("sysctl -q -w net.ipv6.conf.br0.accept_untracked_na=1");
    announce();
    sleep(QUIET);
    assert_eq!(
        neigh_mac(router, "2001:db8:ff::10"),
        None,
        "accept_untracked_na=1 without forwarding created an entry"
    );

    router.sh("sysctl -q -w net.ipv6.conf.br0.forwarding=1");
    announce();
    let created = wait_for(Duration::from_secs(1), || {
        (neigh_mac(router, "2001:db8:ff::10") == Some(mac)).then_some(())
    });
    assert!(
        created.is_some(),
        "router's entry: {}",
        router.sh("ip -6 neigh show 2001:db8:ff::10")
    );
}

/// The MAC of `iface` in `ns`, from `ip -j link`.
fn link_mac(ns: &Netns, iface: &str) -> [u8; 6] {
    let out = ns.sh(&format!("ip -j link show dev {iface}"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j link");
    parse_mac(v[0]["address"].as_str().expect("address")).expect("MAC")
}

/// The MAC of the router's neighbour entry for `ip` on br0, if there is one with a MAC.
fn neigh_mac(ns: &Netns, ip: &str) -> Option<[u8; 6]> {
    let out = ns.sh(&format!("ip -j neigh show {ip} dev br0"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j neigh");
    v.as_array()?
        .iter()
        .find_map(|e| parse_mac(e["lladdr"].as_str()?))
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The one's complement sum of an ICMPv6 message with its pseudo-header; 0xffff when the
/// checksum in it is correct.
fn icmp6_sum(src: &[u8], dst: &[u8], body: &[u8]) -> u16 {
    let mut data = Vec::new();
    data.extend_from_slice(src);
    data.extend_from_slice(dst);
    data.extend_from_slice(&(body.len() as u32).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, 58]);
    data.extend_from_slice(body);
    if data.len() % 2 == 1 {
        data.push(0);
    }
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// A non-blocking `AF_PACKET` capture of one EtherType on one interface, opened in the
/// calling thread's namespace.
struct Capture(OwnedFd);

impl Capture {
    fn open(iface: &str, ethertype: u16) -> Capture {
        let proto = ethertype.to_be() as libc::c_int;
        let fd = socket(libc::AF_PACKET, proto, iface, "capture socket").expect("capture");
        let index = ifindex(iface).expect("capture interface");
        bind_link(&fd, &link_addr(index, ethertype, [0; 6]), iface).expect("bind capture");
        Capture(fd)
    }

    /// The first frame for which `want` is true, within `timeout`.
    fn next(&self, timeout: Duration, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        loop {
            // SAFETY: `buf` is live and writable for its whole length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                let frame = &buf[..n as usize];
                if want(frame) {
                    return Some(frame.to_vec());
                }
                continue;
            }
            let e = io::Error::last_os_error();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "recv: {e}");
            if Instant::now() >= deadline {
                return None;
            }
            sleep(Duration::from_millis(5));
        }
    }
}
