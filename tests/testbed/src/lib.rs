//! Test harness for vipr's integration tests: owns the shared helpers (root check, unique
//! names, polling, temporary directories, the `Proc` child-process guard) and re-exports the
//! per-tool modules:
//!
//! - [`netns`]: network namespaces ([`Netns`]) and a bridged multi-node lab ([`Lab`]);
//! - [`bird`]: a real BIRD 2 peer ([`Bird`], [`BirdRoute`]);
//! - [`frr`]: a real FRR peer, zebra + bgpd ([`Frr`]);
//! - [`gobgp`]: a real GoBGP peer ([`Gobgp`]);
//! - [`runtime`]: a tokio runtime whose threads live in a namespace ([`NsRuntime`], from
//!   [`Netns::runtime`]) to run async code under test there.
//!
//! Everything cleans up on `Drop`, also when a test panics: processes are killed and waited,
//! namespaces deleted, temporary directories removed. All of it needs root.

pub mod bird;
pub mod frr;
pub mod gobgp;
pub mod netns;
pub mod runtime;

pub use bird::{Bird, BirdRoute};
pub use frr::Frr;
pub use gobgp::Gobgp;
pub use netns::{Lab, Netns};
pub use runtime::NsRuntime;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Panic with a clear message unless the process runs as root (effective uid 0).
/// Every constructor in this crate calls it: the tests are never skipped.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        panic!(
            "testbed needs root (network namespaces, veths, BGP port 179); running as euid {euid}. \
             Run the tests as root, e.g. `sudo -E cargo test -p testbed`."
        );
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique per process and call: `{prefix}{pid in hex}x{counter in hex}`,
/// e.g. `vt3a1fx2`. With a prefix of at most 4 characters it fits an interface name
/// (15 characters) for the first 4096 calls of a process.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}x{n:x}", std::process::id())
}

/// Call `f` every 20 ms until it returns `Some`, or until `timeout` has passed (then `None`).
/// `f` is always called at least once, and once more after the deadline.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory under `/tmp`, mode 0755, removed with its contents on `Drop`.
pub struct TempDir {
    /// The directory's absolute path.
    pub path: PathBuf,
}

impl TempDir {
    /// Create `/tmp/testbed-{unique_name(prefix)}`.
    pub fn new(prefix: &str) -> TempDir {
        let path = PathBuf::from(format!("/tmp/testbed-{}", unique_name(prefix)));
        let _ = std::fs::remove_dir_all(&path); // a leftover of a dead process with our pid
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        set_mode(&path, 0o755);
        TempDir { path }
    }

    /// `self.path.join(name)`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Write `contents` to the file `name` in this directory; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    /// Give the directory and everything in it (one level) to `user` (and its primary
    /// group), so a daemon that drops privileges, such as FRR's user `frr`, can write there.
    pub fn chown_to(&self, user: &str) {
        let (uid, gid) = user_ids(user);
        chown(&self.path, uid, gid);
        for e in std::fs::read_dir(&self.path).expect("read_dir").flatten() {
            chown(&e.path(), uid, gid);
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("testbed: cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn user_ids(user: &str) -> (libc::uid_t, libc::gid_t) {
    let name = std::ffi::CString::new(user).expect("user name");
    // SAFETY: getpwnam returns a pointer to static storage or null; we copy the two ids out
    // at once. Concurrent calls could overwrite it, but every caller asks for the same user.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "user {user:?} does not exist (is the package installed?)"
    );
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

fn chown(path: &Path, uid: libc::uid_t, gid: libc::gid_t) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// A child process that is killed (SIGKILL) and waited for on `Drop`.
/// Dereferences to the [`Child`] for access to its pipes and id.
pub struct Proc {
    child: Child,
    name: String,
    reaped: Option<ExitStatus>,
}

impl Proc {
    /// Guard `child`; `name` only appears in messages.
    pub fn new(name: &str, child: Child) -> Proc {
        Proc {
            child,
            name: name.to_string(),
            reaped: None,
        }
    }

    /// The name given to [`Proc::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            self.reaped = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("wait {}: {e}", self.name));
        }
        self.reaped
    }

    /// Send `sig` (e.g. `libc::SIGSTOP`) unless the process has already been reaped.
    pub fn signal(&mut self, sig: i32) {
        if self.exited().is_none() {
            // SAFETY: the pid is our unreaped child, so it cannot have been reused.
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        if let Some(st) = wait_for(grace, || self.exited()) {
            return st;
        }
        self.kill()
    }

    /// SIGKILL and wait; returns the exit status.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(st) = self.exited() {
            return st;
        }
        let _ = self.child.kill();
        let st = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait {}: {e}", self.name));
        self.reaped = Some(st);
        st
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `cmd` to completion, panicking only if it cannot be started.
pub(crate) fn output_of(cmd: &mut Command) -> Output {
    cmd.stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run `cmd`; panic with its stdout and stderr unless it exits 0. Returns stdout.
pub(crate) fn check_output(cmd: &mut Command) -> String {
    let out = output_of(cmd);
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Open (append) a log file for a daemon's stdout and stderr.
pub(crate) fn log_file(path: &Path) -> (std::fs::File, std::fs::File) {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let g = f.try_clone().expect("dup log fd");
    (f, g)
}

/// The last `max` bytes of a log file, for panic messages.
pub(crate) fn tail(path: &Path, max: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_are_short() {
        let a = unique_name("vt");
        let b = unique_name("vt");
        assert_ne!(a, b);
        assert!(a.len() <= 15, "{a}");
    }

    #[test]
    fn wait_for_returns_value_or_none() {
        let mut n = 0;
        assert_eq!(
            wait_for(Duration::from_secs(1), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        assert_eq!(wait_for(Duration::from_millis(50), || None::<()>), None);
    }

    #[test]
    fn tempdir_is_removed() {
        let d = TempDir::new("t");
        d.write("a", "b");
        let p = d.path.clone();
        assert!(p.join("a").exists());
        drop(d);
        assert!(!p.exists());
    }
}
