//! The async shells of `vipr manager`: the reconciler task (owns the node's addresses and
//! drives the speaker's routes), the peers task (turns config into BGP sessions, changing
//! only what changed), and the health supervisor. `main.rs` wires them with channels.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bgp::{ShutdownOptions, Speaker};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, ConfigError, Layers, Mode};
use crate::dataplane::addr::AddrManager;
use crate::dataplane::announce::Announce;
use crate::kube::watch::Services;
use crate::reconciler::{Action, Health, Input, Leadership, Reconciler};
use crate::vips::VipState;

/// How often the node's addresses are re-read (repairs external changes).
pub const RESYNC: Duration = Duration::from_secs(10);

/// Where configuration comes from, kept so SIGHUP can read it again.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `(flag, value)` pairs from the command line.
    pub flags: Vec<(String, String)>,
    /// `--config` file.
    pub file: Option<PathBuf>,
}

impl Sources {
    /// Reads flags, the file and the environment into a validated config.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut layers = Layers::default();
        layers.add_flags(self.flags.iter().map(|(k, v)| (k.as_str(), v.clone())));
        if let Some(f) = &self.file {
            layers.add_file(f)?;
        }
        layers.add_env(|n| std::env::var(n).ok());
        Config::from_layers(&layers, &hostname())
    }
}

/// The kernel's host name (the default node name).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Runs the reconciler until cancelled, then withdraws everything (speaker shutdown), removes
/// vipr's addresses, and returns.
/// What the reconciler listens to.
pub struct Inputs {
    /// Desired configuration.
    pub cfg: watch::Receiver<Arc<Config>>,
    /// Control-plane health.
    pub health: watch::Receiver<Health>,
    /// Services from Kubernetes (empty without `svc_enable`).
    pub services: watch::Receiver<Services>,
    /// Leases held (ARP mode).
    pub leadership: watch::Receiver<Leadership>,
}

/// What the reconciler drives.
pub struct Effects {
    /// VIP addresses on the node.
    pub addrs: AddrManager,
    /// Routes.
    pub speaker: Speaker,
    /// The status view.
    pub vips: watch::Sender<Vec<VipState>>,
    /// ARP mode: gratuitous ARP / unsolicited NA for VIPs put on the node.
    pub announce: Option<mpsc::Sender<Announce>>,
    /// Set by SIGUSR2 (or an upgrade intent): leave routes and VIPs for the next process.
    pub restart: crate::restart::RestartInPlace,
}

/// Runs the reconciler until cancelled, then withdraws everything (speaker shutdown), removes
/// vipr's addresses, and returns.
pub async fn reconcile(mut i: Inputs, fx: Effects, cancel: CancellationToken) {
    let mut core = Reconciler::new();
    let observed = fx.addrs.owned().await.unwrap_or_else(|e| {
        warn!(error = %e, "cannot list addresses");
        Vec::new()
    });
    if !observed.is_empty() {
        info!(
            count = observed.len(),
            "found VIP addresses from an earlier run"
        );
    }
    let mut pending: VecDeque<Action> = VecDeque::new();
    pending.extend(core.handle(Input::Observed(observed)));
    pending.extend(core.handle(Input::Health(*i.health.borrow_and_update())));
    pending.extend(core.handle(Input::Services(i.services.borrow_and_update().clone())));
    pending.extend(core.handle(Input::Leadership(i.leadership.borrow_and_update().clone())));
    pending.extend(core.handle(Input::Config(i.cfg.borrow_and_update().clone())));
    apply(&mut core, pending, &fx).await;
    let mut tick = tokio::time::interval(RESYNC);
    tick.tick().await;
    loop {
        let actions = tokio::select! {
            _ = cancel.cancelled() => break,
            Ok(()) = i.cfg.changed() => core.handle(Input::Config(i.cfg.borrow_and_update().clone())),
            Ok(()) = i.health.changed() => core.handle(Input::Health(*i.health.borrow_and_update())),
            Ok(()) = i.services.changed() => core.handle(Input::Services(i.services.borrow_and_update().clone())),
            Ok(()) = i.leadership.changed() => core.handle(Input::Leadership(i.leadership.borrow_and_update().clone())),
            _ = tick.tick() => match fx.addrs.owned().await {
                Ok(o) => core.handle(Input::Observed(o)),
                Err(e) => { warn!(error = %e, "resync failed"); Vec::new() }
            },
        };
        apply(&mut core, actions.into(), &fx).await;
    }
    let c = i.cfg.borrow().clone();
    // Restart in place (BGP mode): sessions closed without NOTIFICATION or withdrawals, VIP
    // addresses left on the node; the next process picks both up (RFC 4724).
    if fx.restart.requested() && c.mode == Mode::Bgp {
        fx.speaker.restart_in_place().await;
        if let Err(e) = crate::restart::write_marker(&c.state_dir) {
            warn!(dir = %c.state_dir.display(), error = %e, "cannot record the restart; the next start will not set the Restart State bit");
        }
        info!("restarting in place: routes left at the peers, VIP addresses left on the node");
        return;
    }
    // Shutdown: routes first (withdraw + Cease on every session), then addresses.
    fx.speaker
        .shutdown(ShutdownOptions {
            message: format!("vipr on {} shutting down", c.node_name),
            drain: c.bgp.drain,
        })
        .await;
    let actions = core.handle(Input::Shutdown);
    apply(&mut core, actions.into(), &fx).await;
    for a in core.owned() {
        if let Err(e) = fx.addrs.remove(&a).await {
            warn!(address = %a, error = %e, "cannot remove VIP address");
        }
    }
    info!("all routes withdrawn and VIP addresses removed");
}

/// Executes actions, feeding each result back into the core until nothing is left.
async fn apply(core: &mut Reconciler, mut queue: VecDeque<Action>, fx: &Effects) {
    while let Some(a) = queue.pop_front() {
        let more = match a {
            Action::Add(n) => match fx.addrs.add(&n).await {
                Ok(owned) => {
                    info!(address = %n, owned, "VIP on the node");
                    if let Some(tx) = &fx.announce {
                        let _ = tx.send(Announce::Up(n.clone())).await;
                    }
                    core.handle(Input::Added { addr: n, owned })
                }
                Err(e) => {
                    warn!(address = %n, error = %e, "cannot add VIP address; retrying at the next resync");
                    core.handle(Input::AddFailed(n, e.to_string()))
                }
            },
            Action::Remove(n) => {
                if let Some(tx) = &fx.announce {
                    let _ = tx.send(Announce::Down(n.clone())).await;
                }
                match fx.addrs.remove(&n).await {
                    Ok(()) => {
                        info!(address = %n, "VIP removed from the node");
                        core.handle(Input::Removed(n))
                    }
                    Err(e) => {
                        warn!(address = %n, error = %e, "cannot remove VIP address");
                        Vec::new()
                    }
                }
            }
            Action::Routes(t) => {
                fx.speaker.set_routes(t);
                Vec::new()
            }
        };
        queue.extend(more);
    }
    fx.vips.send_replace(core.status());
}

/// Runs the health checker for the current config, restarting it when the check changes.
pub async fn health(
    mut cfg: watch::Receiver<Arc<Config>>,
    tx: watch::Sender<Health>,
    cancel: CancellationToken,
) {
    loop {
        let check = cfg.borrow_and_update().health.clone();
        let child = cancel.child_token();
        match check.clone() {
            Some(h) => {
                tx.send_replace(Health::Unknown);
                tokio::spawn(crate::health::run(h, tx.clone(), child.clone()));
            }
            None => {
                tx.send_replace(Health::NotChecked);
            }
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = cfg.changed() => {
                    if r.is_err() { return; }
                    if cfg.borrow().health != check { break; }
                    cfg.borrow_and_update();
                }
            }
        }
        child.cancel();
    }
}
