//! Logging: text or JSON lines (fixed at start), and a level that `vip_loglevel` changes
//! while the daemon runs (unless `RUST_LOG` sets the filter).

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
        .with_ansi(ansi);
    let reg = tracing_subscriber::registry().with(layer);
    if json {
        reg.with(fmt.json()).init();
    } else {
        reg.with(fmt).init();
    }
    Log { handle, from_env }
}
