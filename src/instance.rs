//! Instances: more than one vipr in one network namespace, e.g. a kubeadm static pod for the
//! control-plane VIP beside a DaemonSet for Services (a deployment kube-vip documents). Each
//! instance has a name (`vipr_instance`, empty for the default one) and owns, apart from any
//! other instance: the marker on its addresses and routes (IFA_PROTO / RTPROT), its state
//! directory, its nftables table and its Lease holder identity. So one instance's resync never
//! sees another's VIPs as its own.
//!
//! Two processes of the *same* instance in one network namespace would delete each other's
//! VIPs. The first holds an abstract Unix socket named after its marker (abstract sockets
//! belong to the network namespace, as the addresses do, and vanish with the process however
//! it ends); a second process waits a little for it (the overlap of a restart), then refuses
//! to start with a message naming the first: its instance name and pid.

use std::io::{BufRead, BufReader, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The marker of the default instance's addresses and routes ("V").
pub const DEFAULT_MARKER: u8 = 0x56;
/// Named instances take their marker from this range by a hash of the name (all unassigned
/// in `/etc/iproute2/rt_protos` and the kernel's IFAPROT values).
const NAMED_MARKERS: std::ops::RangeInclusive<u8> = 0x57..=0x5e;

/// How long a second process of an instance waits for the first to exit (a restart whose
/// old process is still withdrawing) before it refuses to start.
pub const CLAIM_WAIT: Duration = Duration::from_secs(10);

/// The state directory of the default instance; named ones use a directory below it.
pub const DEFAULT_STATE_DIR: &str = "/run/vipr";

/// Which vipr this process is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instance {
    name: String,
}

/// Why this process cannot be the instance it was configured as.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Another process holds the marker.
    #[error("{0}")]
    Taken(String),
    /// The abstract socket could not be made.
    #[error("cannot claim the instance marker: {0}")]
    Io(#[from] std::io::Error),
}

impl Instance {
    /// The instance named `name` (empty: the default one). Names are short DNS labels, as
    /// they also name an nftables table and a Lease holder.
    pub fn parse(name: &str) -> Result<Instance, String> {
        let ok = name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !ok {
            return Err(
                "expected up to 32 of a-z, 0-9 and '-', not starting or ending with '-'".into(),
            );
        }
        Ok(Instance {
            name: name.to_string(),
        })
    }

    /// The name; empty for the default instance.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The IFA_PROTO / RTPROT value on this instance's addresses and routes.
    pub fn marker(&self) -> u8 {
        if self.name.is_empty() {
            return DEFAULT_MARKER;
        }
        // FNV-1a: stable across builds and versions, which a marker on the node must be.
        let h = self.name.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x0100_0193)
        });
        let span = (NAMED_MARKERS.end() - NAMED_MARKERS.start()) as u32 + 1;
        NAMED_MARKERS.start() + (h % span) as u8
    }

    /// This instance's nftables table (family `inet`).
    pub fn nft_table(&self) -> String {
        if self.name.is_empty() {
            "vipr".into()
        } else {
            format!("vipr_{}", self.name.replace('-', "_"))
        }
    }

    /// The Lease holder identity on `node`: the node name for the default instance (as
    /// kube-vip's, so a Lease shared during a migration reads the same), `node/name` otherwise.
    pub fn identity(&self, node: &str) -> String {
        if self.name.is_empty() {
            node.to_string()
        } else {
            format!("{node}/{}", self.name)
        }
    }

    /// The state directory when `vipr_state_dir` is not set.
    pub fn default_state_dir(&self) -> PathBuf {
        let base = PathBuf::from(DEFAULT_STATE_DIR);
        if self.name.is_empty() {
            base
        } else {
            base.join(&self.name)
        }
    }

    /// For messages: `the default instance` or `instance "cp"`.
    pub fn describe(&self) -> String {
        if self.name.is_empty() {
            "the default instance".into()
        } else {
            format!("instance {:?}", self.name)
        }
    }

    fn socket_name(&self) -> String {
        format!("vipr-marker-{:02x}", self.marker())
    }

    /// Becomes this instance in this network namespace, waiting up to `wait` for a process
    /// that holds it (or another instance with the same marker) to go. The claim lasts as
    /// long as the returned value (in practice, the process).
    pub fn claim(&self, wait: Duration) -> Result<Claim, InstanceError> {
        let addr = SocketAddr::from_abstract_name(self.socket_name())?;
        let until = Instant::now() + wait;
        loop {
            match UnixListener::bind_addr(&addr) {
                Ok(l) => return Ok(Claim::serve(l, self.clone())?),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    if Instant::now() >= until {
                        return Err(InstanceError::Taken(self.conflict(&addr)));
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The message for a claim held by another process, naming it as it answers.
    fn conflict(&self, addr: &SocketAddr) -> String {
        let holder = ask_holder(addr);
        let (name, pid) = holder
            .as_deref()
            .and_then(|l| l.split_once(' '))
            .map(|(pid, name)| (name.to_string(), pid.to_string()))
            .unwrap_or_else(|| ("?".into(), "?".into()));
        let theirs = Instance { name: name.clone() };
        if name == self.name {
            format!(
                "another vipr (pid {pid}) already runs as {} in this network namespace; two \
                 processes of one instance would remove each other's VIPs. Stop it, or give \
                 each vipr its own vipr_instance",
                self.describe()
            )
        } else {
            format!(
                "another vipr (pid {pid}, {}) in this network namespace uses the same address \
                 marker 0x{:02x} as {}; choose another vipr_instance name",
                theirs.describe(),
                self.marker(),
                self.describe()
            )
        }
    }
}

/// Asks the holder of `addr` who it is: `"<pid> <name>"`.
fn ask_holder(addr: &SocketAddr) -> Option<String> {
    let s = UnixStream::connect_addr(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    Some(line.trim_end_matches('\n').to_string())
}

/// This process's claim on its instance: answers who holds it (pid and name) to a second
/// process that asks.
pub struct Claim {
    _thread: std::thread::JoinHandle<()>,
}

impl Claim {
    fn serve(l: UnixListener, inst: Instance) -> std::io::Result<Claim> {
        let me = format!("{} {}\n", std::process::id(), inst.name);
        let thread = std::thread::Builder::new()
            .name("vipr-instance".into())
            .spawn(move || {
                for mut c in l.incoming().flatten() {
                    let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = c.write_all(me.as_bytes());
                }
            })?;
        Ok(Claim { _thread: thread })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_markers_tables_identities() {
        let d = Instance::default();
        assert_eq!(d.marker(), 0x56);
        assert_eq!(d.nft_table(), "vipr");
        assert_eq!(d.identity("n1"), "n1");
        assert_eq!(d.default_state_dir(), PathBuf::from("/run/vipr"));
        let cp = Instance::parse("control-plane").unwrap();
        assert!(NAMED_MARKERS.contains(&cp.marker()));
        assert_eq!(
            cp.marker(),
            Instance::parse("control-plane").unwrap().marker()
        );
        assert_eq!(cp.nft_table(), "vipr_control_plane");
        assert_eq!(cp.identity("n1"), "n1/control-plane");
        assert_eq!(
            cp.default_state_dir(),
            PathBuf::from("/run/vipr/control-plane")
        );
        for bad in ["Cp", "-a", "a-", "a b", "a/b", &"x".repeat(33)] {
            assert!(Instance::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_spread_over_the_markers() {
        let used: std::collections::BTreeSet<u8> = ["cp", "services", "svc", "lb", "a", "b"]
            .iter()
            .map(|n| Instance::parse(n).unwrap().marker())
            .collect();
        assert!(used.len() >= 4, "{used:?}");
    }
}
