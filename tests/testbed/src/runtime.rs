//! A tokio runtime that lives in a network namespace ([`NsRuntime`], from
//! [`Netns::runtime`]): every thread it ever starts (workers and blocking pool) enters the
//! namespace first, so sockets made by async code under test (a BGP speaker's connects and
//! listeners) are created there. Futures given to [`NsRuntime::block_on`] run on a worker,
//! never on the calling thread, which stays in the host namespace.

use crate::Netns;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

/// A multi-thread tokio runtime whose threads are all inside one network namespace.
/// Dropping it shuts it down (tasks are cancelled, their sockets closed; at most 5 s).
/// Drop it before the [`Netns`]/[`crate::Lab`] it belongs to (declare it after them).
pub struct NsRuntime {
    rt: Option<tokio::runtime::Runtime>,
    ns: String,
}

/// The inode of the network namespace of the calling thread.
pub fn current_netns_inode() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net")
        .expect("stat /proc/thread-self/ns/net")
        .ino()
}

impl Netns {
    /// A tokio multi-thread runtime (2 workers, timers and I/O enabled) whose threads all
    /// run inside this namespace: each one calls `setns(CLONE_NEWNET)` when it starts.
    /// Checks before returning that a spawned task really runs in the namespace.
    pub fn runtime(&self) -> NsRuntime {
        crate::require_root();
        let path = format!("/run/netns/{}", self.name);
        let file =
            Arc::new(std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}")));
        let want = file.metadata().expect("stat netns file").ino();
        let f = file.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("rt-{}", self.name))
            .enable_all()
            .on_thread_start(move || {
                // SAFETY: setns on a valid namespace fd that `f` keeps open; it affects only
                // the calling (new) thread.
                let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    // Nothing sane can run in the wrong namespace.
                    eprintln!("testbed: setns: {}", std::io::Error::last_os_error());
                    std::process::abort();
                }
            })
            .build()
            .expect("build tokio runtime");
        let rt = NsRuntime {
            rt: Some(rt),
            ns: self.name.clone(),
        };
        let got = rt.block_on(async { current_netns_inode() });
        assert_eq!(got, want, "runtime thread is not in netns {}", self.name);
        rt
    }
}

impl NsRuntime {
    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("runtime present until drop")
    }

    /// Run `fut` to completion on a worker thread (inside the namespace) and return its
    /// output; a panic in `fut` is propagated to the caller.
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = self.rt().spawn(fut);
        match self.rt().block_on(handle) {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task in netns {} failed: {e}", self.ns),
        }
    }

    /// Spawn `fut` on the runtime (inside the namespace) without waiting.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt().spawn(fut)
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.rt().handle()
    }

    /// The namespace's name.
    pub fn netns(&self) -> &str {
        &self.ns
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}
