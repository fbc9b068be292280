//! Logging: text or JSON lines (fixed at start), a level that `vip_loglevel` changes while
//! the daemon runs (unless `RUST_LOG` sets the filter), and the thread that owns stdout, so
//! that a stalled or closed stdout never blocks or kills the daemon.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::daemon::LogLevelControl;

fn filter(level: &str) -> EnvFilter {
    EnvFilter::new(format!("{level},rtnetlink=warn,netlink_proto=warn"))
}

/// The handle that changes the level.
pub struct Log {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` set the filter: it wins over `vip_loglevel`.
    from_env: bool,
}

impl LogLevelControl for Log {
    fn set(&self, level: &str) {
        if !self.from_env {
            let _ = self.handle.modify(|f| *f = filter(level));
        }
    }
}

/// Installs the subscriber.
pub fn init(level: &str, json: bool) -> Log {
    let (f, from_env) = match EnvFilter::try_from_env("RUST_LOG") {
        Ok(f) => (f, true),
        Err(_) => (filter(level), false),
    };
    let (layer, handle) = reload::Layer::new(f);
    // Colours only on a terminal: not in files, `kubectl logs` or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(line);
    let reg = tracing_subscriber::registry().with(layer);
    if json {
        reg.with(fmt.json()).init();
    } else {
        reg.with(fmt).init();
    }
    Log { handle, from_env }
}

/// How many formatted lines may wait for stdout before new ones are dropped.
const QUEUE: usize = 4096;

/// The queue between the daemon's threads and the thread that owns stdout.
struct Pipe {
    tx: SyncSender<Vec<u8>>,
    /// Lines queued, and lines written (or lost to a closed stdout) by the writer thread.
    queued: AtomicU64,
    done: Arc<AtomicU64>,
    /// Lines that found the queue full since the last report.
    dropped: AtomicU64,
}

static PIPE: OnceLock<Pipe> = OnceLock::new();

/// Starts the thread that owns stdout. Lines reach it through a bounded queue: a stdout that
/// blocks (a stalled log collector) or is gone (`vipr manager | head`, a collector that
/// restarted) costs log lines, never the daemon: a write never blocks a task and an error
/// never panics (with `panic = "abort"` a failed `eprintln!` would kill vipr with its VIPs
/// still on the node). Lines dropped while the queue was full are counted in one line
/// written when stdout drains again.
fn pipe() -> &'static Pipe {
    PIPE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let done = Arc::new(AtomicU64::new(0));
        let d = done.clone();
        let spawned = std::thread::Builder::new()
            .name("vipr-log".into())
            .spawn(move || {
                let mut out = std::io::stdout().lock();
                for line in rx {
                    // A closed or broken stdout: the line is lost; the next one tries again.
                    let _ = out.write_all(&line).and_then(|_| out.flush());
                    d.fetch_add(1, Ordering::Release);
                }
            });
        if spawned.is_err() {
            // No thread: the receiver is gone, so every line is dropped rather than queued.
            done.store(u64::MAX, Ordering::Release);
        }
        Pipe {
            tx,
            queued: AtomicU64::new(0),
            done,
            dropped: AtomicU64::new(0),
        }
    })
}

impl Pipe {
    fn send(&self, line: Vec<u8>) {
        let dropped = self.dropped.swap(0, Ordering::AcqRel);
        if dropped > 0 {
            let note = format!("vipr: {dropped} log lines dropped (stdout was not keeping up)\n");
            if self.tx.try_send(note.into_bytes()).is_ok() {
                self.queued.fetch_add(1, Ordering::AcqRel);
            } else {
                self.dropped.fetch_add(dropped, Ordering::AcqRel);
            }
        }
        match self.tx.try_send(line) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::AcqRel);
            }
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::AcqRel);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// One formatted event, handed to the writer thread whole.
pub struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            pipe().send(std::mem::take(&mut self.0));
        }
    }
}

/// The `MakeWriter` of the fmt layer.
fn line() -> Line {
    Line(Vec::with_capacity(256))
}

/// Waits (at most `limit`) until the lines logged so far have been written: at exit, so the
/// last lines are not lost with the process.
pub fn flush(limit: Duration) {
    let Some(p) = PIPE.get() else { return };
    let want = p.queued.load(Ordering::Acquire);
    let until = Instant::now() + limit;
    while p.done.load(Ordering::Acquire) < want && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Writes one line to stderr for the operator (the exit reason), ignoring a closed stderr:
/// `eprintln!` would panic there.
pub fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_lines_and_counts_them() {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let p = Pipe {
            tx,
            queued: AtomicU64::new(0),
            done: Arc::new(AtomicU64::new(0)),
            dropped: AtomicU64::new(0),
        };
        for i in 0..5 {
            p.send(format!("line {i}\n").into_bytes());
        }
        assert_eq!(p.queued.load(Ordering::SeqCst), 2);
        assert_eq!(p.dropped.load(Ordering::SeqCst), 3);
        // Room again: the count goes out first, then the line.
        let got: Vec<Vec<u8>> = rx.try_iter().collect();
        assert_eq!(got.len(), 2);
        p.send(b"after\n".to_vec());
        let got: Vec<String> = rx
            .try_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                "vipr: 3 log lines dropped (stdout was not keeping up)\n",
                "after\n"
            ]
        );
        assert_eq!(p.dropped.load(Ordering::SeqCst), 0);
    }
}
