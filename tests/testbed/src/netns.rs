//! Network namespaces ([`Netns`]) and a bridged lab of namespaces ([`Lab`]).
//!
//! A `Netns` owns one named namespace (`/run/netns/NAME`): on `Drop` every process in it is
//! killed and the namespace deleted. A `Lab` owns a "router" namespace with a bridge and N
//! "node" namespaces, each joined to the bridge by a veth.

use crate::{check_output, output_of, require_root, unique_name, wait_for, Proc};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Serializes `ip netns add/del` within this process; a `flock` does it across processes
/// (the first `ip netns add` of a boot mounts `/run/netns`, which must not race).
static NETNS_LOCK: Mutex<()> = Mutex::new(());

fn with_netns_lock<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/testbed-netns.lock")
        .expect("open /run/testbed-netns.lock");
    // SAFETY: flock on an fd we own; released when `file` is closed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    f()
}

/// `ip netns exec NAME args...` as a [`Command`], stdin null.
pub(crate) fn netns_command(name: &str, args: &[&str]) -> Command {
    assert!(!args.is_empty(), "no command given");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", name])
        .args(args)
        .stdin(Stdio::null());
    c
}

/// A named network namespace (`ip netns add`). On `Drop`, every process inside it gets
/// SIGKILL and the namespace is deleted.
pub struct Netns {
    /// The name, as for `ip netns exec NAME` or `ip -n NAME`.
    pub name: String,
}

impl Netns {
    /// Create a namespace named `unique_name(prefix)`, bring `lo` up and switch IPv6
    /// duplicate address detection off (addresses are usable at once), keeping IPv6
    /// addresses on interfaces that go down.
    pub fn new(prefix: &str) -> Netns {
        require_root();
        let name = unique_name(prefix);
        with_netns_lock(|| {
            let out = output_of(Command::new("ip").args(["netns", "add", &name]));
            if !out.status.success() {
                // A leftover of a dead process that had our pid: replace it.
                let _ = output_of(Command::new("ip").args(["netns", "del", &name]));
                check_output(Command::new("ip").args(["netns", "add", &name]));
            }
        });
        let ns = Netns { name };
        ns.sh(
            "ip link set lo up && sysctl -q -w net.ipv6.conf.all.accept_dad=0 \
             net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.keep_addr_on_down=1 \
             net.ipv6.conf.default.keep_addr_on_down=1",
        );
        ns
    }

    /// `ip netns exec NAME args...`; returns the output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        output_of(&mut netns_command(&self.name, args))
    }

    /// `ip netns exec NAME sh -c script`; panics with stdout and stderr unless it exits 0.
    /// Returns stdout.
    pub fn sh(&self, script: &str) -> String {
        check_output(&mut netns_command(&self.name, &["sh", "-c", script]))
    }

    /// `ip netns exec NAME args...` as a [`Command`] to adjust (pipes, env) before spawning.
    pub fn command(&self, args: &[&str]) -> Command {
        netns_command(&self.name, args)
    }

    /// Start `args` inside the namespace (stdin null, stdout and stderr inherited). The
    /// returned guard kills and waits for it on `Drop`. `ip netns exec` execs the program,
    /// so the child's pid is the program's.
    pub fn spawn(&self, args: &[&str]) -> Proc {
        let child = self
            .command(args)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?} in {}: {e}", self.name));
        Proc::new(args[0], child)
    }

    /// Run `f` on a new OS thread that has entered this namespace (`setns(CLONE_NEWNET)`):
    /// sockets created there live in the namespace (and stay there when used elsewhere).
    /// Returns `f`'s result; a panic in `f` is propagated. Build a current-thread async
    /// runtime inside `f` to run async code in the namespace.
    pub fn enter<F: FnOnce() -> R + Send, R: Send>(&self, f: F) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name(format!("netns-{}", self.name))
                .spawn_scoped(s, move || {
                    let file =
                        std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: setns on a valid namespace fd; it affects only this thread.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        panic!("setns({path}): {}", std::io::Error::last_os_error());
                    }
                    drop(file);
                    f()
                })
                .expect("spawn thread");
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// The pids of the processes in the namespace (`ip netns pids NAME`).
    pub fn pids(&self) -> Vec<i32> {
        let out = output_of(Command::new("ip").args(["netns", "pids", &self.name]));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let gone = wait_for(Duration::from_secs(3), || {
            let pids = self.pids();
            for &p in &pids {
                // SAFETY: plain kill(2); a pid that exited meanwhile is not an error we need.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            pids.is_empty().then_some(())
        });
        if gone.is_none() {
            eprintln!(
                "testbed: processes still in netns {}: {:?}",
                self.name,
                self.pids()
            );
        }
        let out =
            with_netns_lock(|| output_of(Command::new("ip").args(["netns", "del", &self.name])));
        if !out.status.success() {
            eprintln!(
                "testbed: ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A "router" namespace with a bridge `br0` and N "node" namespaces, node `i` joined to the
/// bridge by a veth (`eth0` in the node, `veth{i}` on the router's bridge).
///
/// Addresses (fixed: namespaces isolate labs from each other): router `10.55.0.1/24` and
/// `2001:db8:55::1/64` on `br0`; node `i` (0-based) `10.55.0.(11+i)/24` and
/// `2001:db8:55::(11+i)/64` (as text: `::11`, `::12`, ...) on its `eth0`. DAD is off, so
/// IPv6 is usable at once.
///
/// Fields drop in order: router first, then the nodes.
pub struct Lab {
    /// The namespace holding the bridge `br0`.
    pub router: Netns,
    /// The node namespaces, each with `eth0` on the bridge.
    pub nodes: Vec<Netns>,
}

impl Lab {
    /// Build the lab with `nodes` node namespaces (at most 200).
    pub fn new(nodes: usize) -> Lab {
        assert!(nodes <= 200, "at most 200 nodes");
        let router = Netns::new("vr");
        router.sh(&format!(
            "ip link add br0 type bridge mcast_snooping 0 && ip link set br0 up && \
             ip addr add {}/24 dev br0 && ip addr add {}/64 dev br0 nodad",
            Lab::router_v4(),
            Lab::router_v6()
        ));
        let mut lab = Lab {
            router,
            nodes: Vec::new(),
        };
        for i in 0..nodes {
            let node = Netns::new("vn");
            lab.router.sh(&format!(
                "ip link add veth{i} type veth peer name eth0 netns {node} && \
                 ip link set veth{i} master br0 && ip link set veth{i} up",
                node = node.name
            ));
            node.sh(&format!(
                "ip link set eth0 up && ip addr add {}/24 dev eth0 && \
                 ip addr add {}/64 dev eth0 nodad",
                Lab::node_v4(i),
                Lab::node_v6(i)
            ));
            lab.nodes.push(node);
        }
        lab
    }

    /// The router's IPv4 address on `br0`: 10.55.0.1.
    pub fn router_v4() -> Ipv4Addr {
        Ipv4Addr::new(10, 55, 0, 1)
    }

    /// Node `i`'s IPv4 address: 10.55.0.(11+i).
    pub fn node_v4(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 55, 0, 11 + i as u8)
    }

    /// The router's IPv6 address on `br0`: 2001:db8:55::1.
    pub fn router_v6() -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0x55, 0, 0, 0, 0, 1)
    }

    /// Node `i`'s IPv6 address, written like the IPv4 one: `2001:db8:55::11` for node 0,
    /// `::12` for node 1, ... (the decimal number 11+i read as the last hex group).
    pub fn node_v6(i: usize) -> Ipv6Addr {
        format!("2001:db8:55::{}", 11 + i)
            .parse()
            .expect("node address")
    }

    /// "Pull the cable" of node `i`: set the router's end of its veth down. The node's
    /// `eth0` loses carrier but keeps its addresses; TCP sessions across it stall.
    pub fn link_down(&self, i: usize) {
        self.router.sh(&format!("ip link set veth{i} down"));
    }

    /// Plug node `i`'s cable back in (the router's end of the veth up again).
    pub fn link_up(&self, i: usize) {
        self.router.sh(&format!("ip link set veth{i} up"));
    }
}
