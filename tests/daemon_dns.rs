//! The control-plane VIP given as a DNS name (kube-vip v1.2.3: `address` may be a host name,
//! `pkg/vip/dns.go` resolves it again every 3 s and moves the VIP; `dns_mode` picks the
//! addresses). vipr in a node namespace resolves `cp.vipr.test` through the system resolver;
//! `ip netns exec` bind-mounts `/etc/netns/<ns>/hosts` over `/etc/hosts` for it, so the test
//! owns the name's addresses by rewriting that file (in place: the mount follows the inode).
//!
//! ```text
//!  /etc/netns/<node>/hosts ─> node ns: vipr (address=cp.vipr.test) ──BGP── router ns: BIRD
//! ```
//!
//! Asserts that with `dns_mode=dual` both addresses of the name are advertised and put on
//! `lo`; the IPv4 address moving in the hosts file moves the route at BIRD and the address
//! on `lo`; the name disappearing is logged and the last addresses are kept.

mod daemon_common;

use std::path::PathBuf;

use daemon_common::*;
use testbed::{Bird, Lab, Netns};

/// `/etc/netns/<ns>/hosts`, removed (with its directory) on `Drop`.
struct NetnsHosts {
    dir: PathBuf,
}

impl NetnsHosts {
    fn new(ns: &Netns, text: &str) -> NetnsHosts {
        let dir = PathBuf::from("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        let h = NetnsHosts { dir };
        h.set(text);
        h
    }

    /// Rewrites the file in place (same inode: the bind mount shows the new text).
    fn set(&self, text: &str) {
        std::fs::write(self.dir.join("hosts"), text).unwrap();
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir("/etc/netns"); // only when no other test uses it
    }
}

const MOVED: &str = "192.0.2.20";

#[test]
fn a_dns_name_is_resolved_and_followed() {
    let lab = Lab::new(1);
    let node = &lab.nodes[0];
    let hosts = NetnsHosts::new(
        node,
        &format!("127.0.0.1 localhost\n{VIP4} cp.vipr.test\n{VIP6} cp.vipr.test\n"),
    );
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let tmp = workdir();
    let log = tmp.join("vipr.log");
    let mut env = base_env(&tmp.join("state"));
    env.insert("address".into(), "cp.vipr.test".into());
    env.insert("dns_mode".into(), "dual".into());
    let _vipr = Vipr::start(node, &env, &[], &log);
    let ctx = || {
        format!(
            "{}\n{:?}\n{}",
            bird.birdc("show route all"),
            lo_addrs(node),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    let at_bird = |p: &str| bird_route(&bird, p, "n0").is_some();
    let (v4, v6, moved) = (
        format!("{VIP4}/32"),
        format!("{VIP6}/128"),
        format!("{MOVED}/32"),
    );

    eventually("both addresses of the name at BIRD", ctx, || {
        (at_bird(&v4) && at_bird(&v6)).then_some(())
    });
    assert_eq!(
        (lo_count(node, &v4), lo_count(node, &v6)),
        (1, 1),
        "{}",
        ctx()
    );

    // The name's IPv4 address moves: the VIP follows.
    hosts.set(&format!(
        "127.0.0.1 localhost\n{MOVED} cp.vipr.test\n{VIP6} cp.vipr.test\n"
    ));
    eventually("the route moved at BIRD", ctx, || {
        (at_bird(&moved) && !at_bird(&v4) && at_bird(&v6)).then_some(())
    });
    eventually("the address moved on lo", ctx, || {
        (lo_count(node, &moved) == 1 && lo_count(node, &v4) == 0).then_some(())
    });

    // The name disappears: logged, the last addresses kept.
    hosts.set("127.0.0.1 localhost\n");
    eventually("a failed lookup logged", ctx, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("cannot resolve the control-plane VIP's name")
            .then_some(())
    });
    assert!(at_bird(&moved) && at_bird(&v6), "{}", ctx());
    assert_eq!(lo_count(node, &moved), 1, "{}", ctx());
}
