//! The load balancer's async shell: picks the data plane, follows configuration, leadership,
//! the backend source and the health checks, and applies [`super::diff`]'s changes. Every
//! input recomputes the whole desired table (level-triggered); the kernel is re-read every
//! [`RESYNC`] and after any failed change, so changes made by hand are repaired. At
//! cancellation it removes exactly vipr's own services before returning.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::backends::{self, NodeAddrs};
use super::health::{Book, Checkers};
use super::ipvs::Ipvs;
use super::nft::Nft;
use super::{desired, diff, FwdMethod, Intent, Kind, LbBackend, Observed, Op, Table};
use crate::config::{ControlPlane, LbSettings};
use crate::error::LbError;

/// How often the kernel's state is re-read.
pub const RESYNC: Duration = Duration::from_secs(10);

/// The chosen data plane.
enum Engine {
    Ipvs(Ipvs),
    Nft(Nft),
}

impl LbBackend for Engine {
    fn kind(&self) -> Kind {
        match self {
            Engine::Ipvs(b) => b.kind(),
            Engine::Nft(b) => b.kind(),
        }
    }

    async fn observe(&mut self) -> Result<Observed, LbError> {
        match self {
            Engine::Ipvs(b) => b.observe().await,
            Engine::Nft(b) => b.observe().await,
        }
    }

    async fn apply(&mut self, ops: &[Op], target: &Table) -> Result<(), LbError> {
        match self {
            Engine::Ipvs(b) => b.apply(ops, target).await,
            Engine::Nft(b) => b.apply(ops, target).await,
        }
    }

    async fn remove_all(&mut self) -> Result<(), LbError> {
        match self {
            Engine::Ipvs(b) => b.remove_all().await,
            Engine::Nft(b) => b.remove_all().await,
        }
    }
}

/// What belongs to this vipr instance in the data plane.
#[derive(Debug, Clone)]
pub struct Place {
    /// Where IPVS records the services it created (`vipr_state_dir`).
    pub state_dir: std::path::PathBuf,
    /// The nftables table (`vipr`, or `vipr_<name>` for a named instance).
    pub nft_table: String,
}

/// IPVS where the kernel has it, else nftables; `forced` is `vipr_lb_backend`.
async fn open(forced: Option<Kind>, place: &Place) -> Result<Engine, LbError> {
    let nft = || Nft::open(place.nft_table.clone());
    match forced {
        Some(Kind::Ipvs) => Ipvs::open(&place.state_dir).map(Engine::Ipvs),
        Some(Kind::Nftables) => nft().await.map(Engine::Nft),
        None => match Ipvs::open(&place.state_dir) {
            Ok(i) => Ok(Engine::Ipvs(i)),
            Err(LbError::IpvsUnavailable(why)) => {
                info!(reason = %why, "IPVS not available: load balancing with nftables");
                nft().await.map(Engine::Nft)
            }
            Err(e) => Err(e),
        },
    }
}

/// Everything the loop keeps between events.
struct Lb {
    engine: Option<(Engine, Option<Kind>)>,
    /// vipr's services as last applied or observed.
    applied: Table,
    /// Others' services.
    foreign: BTreeSet<SocketAddr>,
    /// Re-read the kernel before the next diff.
    stale: bool,
    book: Book,
    checkers: Option<Checkers>,
    health_tx: mpsc::Sender<(SocketAddr, bool)>,
    nodes_rx: watch::Receiver<NodeAddrs>,
    nodes_watch: Option<CancellationToken>,
    /// When the input that caused the pending change arrived (for the latency log).
    since: Option<Instant>,
    /// Retry after a failure, with this delay.
    retry: Option<Duration>,
    warned: BTreeSet<String>,
}

impl Lb {
    fn warn_once(&mut self, key: String, f: impl FnOnce()) {
        if self.warned.insert(key) {
            f();
        }
    }

    async fn shutdown_engine(&mut self) {
        if let Some((mut e, _)) = self.engine.take() {
            match e.remove_all().await {
                Ok(()) => info!(backend = e.kind().name(), "load balancer removed"),
                Err(err) => error!(error = %err, "cannot remove the load balancer's services"),
            }
        }
        self.applied.clear();
        self.foreign.clear();
        self.stale = true;
        if let Some(c) = &mut self.checkers {
            c.stop_all();
        }
        self.checkers = None;
        self.book = Book::new();
    }

    /// The backend set (before health), `None` while it is not known yet.
    fn backends(
        &mut self,
        c: &LbSettings,
        port: u16,
        client: &Option<kube::Client>,
        cancel: &CancellationToken,
        nodes_tx: &watch::Sender<NodeAddrs>,
    ) -> Option<BTreeSet<SocketAddr>> {
        if !c.backends.is_empty() {
            if let Some(t) = self.nodes_watch.take() {
                t.cancel();
            }
            return Some(
                c.backends
                    .iter()
                    .map(|b| SocketAddr::new(b.ip, b.port.unwrap_or(port)))
                    .collect(),
            );
        }
        let Some(client) = client else {
            self.warn_once("nobackends".into(), || {
                warn!("lb_enable without backends: set vipr_lb_backends, or run with Kubernetes")
            });
            return Some(BTreeSet::new());
        };
        if self.nodes_watch.is_none() {
            let t = cancel.child_token();
            tokio::spawn(backends::watch_nodes(
                client.clone(),
                nodes_tx.clone(),
                t.clone(),
            ));
            self.nodes_watch = Some(t);
        }
        let ips = self.nodes_rx.borrow_and_update().clone()?;
        Some(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
    }

    /// One pass: engine, backends, health targets, diff, apply. (Each argument is a view of
    /// a value the task loop owns and selects on; a struct of them would only rename them.)
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &mut self,
        c: &LbSettings,
        cp: &ControlPlane,
        place: &Place,
        leader: bool,
        client: &Option<kube::Client>,
        cancel: &CancellationToken,
        nodes_tx: &watch::Sender<NodeAddrs>,
    ) {
        if !c.enabled {
            if self.engine.is_some() {
                self.shutdown_engine().await;
            }
            if let Some(t) = self.nodes_watch.take() {
                t.cancel();
            }
            return;
        }
        if self
            .engine
            .as_ref()
            .is_some_and(|(_, pref)| *pref != c.engine)
        {
            info!("vipr_lb_backend changed: moving the load balancer");
            self.shutdown_engine().await;
        }
        if self.engine.is_none() {
            match open(c.engine, place).await {
                Ok(e) => {
                    info!(backend = e.kind().name(), "load balancer data plane ready");
                    if e.kind() == Kind::Nftables && c.fwd != FwdMethod::Masquerade {
                        info!(
                            lb_fwdmethod = c.fwd.name(),
                            "nftables always forwards by NAT (masquerade)"
                        );
                    }
                    self.engine = Some((e, c.engine));
                    self.stale = true;
                }
                Err(e) => {
                    error!(error = %e, "no load-balancer data plane; retrying");
                    self.retry = Some(Duration::from_secs(5));
                    return;
                }
            }
        }
        let Some(targets) = self.backends(c, cp.port, client, cancel, nodes_tx) else {
            return; // Node cache not synced yet: keep what is programmed.
        };
        let interval = c.health_interval;
        if self.checkers.as_ref().map(Checkers::interval) != Some(interval) {
            let mut ch = Checkers::new(self.health_tx.clone(), interval);
            // Restart every check at the new interval; states are kept.
            ch.apply(&super::health::TargetChange {
                start: targets
                    .iter()
                    .filter(|t| self.book.state(t).is_some())
                    .copied()
                    .collect(),
                stop: Vec::new(),
            });
            self.checkers = Some(ch);
        }
        let change = self.book.set_targets(&targets);
        if let Some(ch) = &mut self.checkers {
            ch.apply(&change);
        }
        let intent = Intent {
            vips: cp.served().to_vec(),
            port: c.port,
            scheduler: c.scheduler,
            fwd: c.fwd,
            leader,
        };
        if intent.vips.is_empty() {
            self.warn_once("novips".into(), || {
                warn!("lb_enable needs cp_enable and a control-plane address: nothing to balance")
            });
        }
        let want = desired(&intent, &self.book.healthy());
        let Some((engine, _)) = &mut self.engine else {
            return;
        };
        if self.stale {
            match engine.observe().await {
                Ok(o) => {
                    self.applied = o.ours;
                    self.foreign = o.foreign;
                    self.stale = false;
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the load balancer's state; retrying");
                    self.retry = Some(next_delay(self.retry));
                    return;
                }
            }
        }
        let plan = diff(&self.applied, &want, &self.foreign);
        for key in &plan.blocked {
            let k = format!("blocked {key}");
            if self.warned.insert(k) {
                error!(service = %key, "a virtual service at this address belongs to someone else: vipr leaves it alone and does not balance it");
            }
        }
        if plan.ops.is_empty() {
            self.retry = None;
            self.since = None;
            return;
        }
        match engine.apply(&plan.ops, &plan.target).await {
            Ok(()) => {
                let latency = self.since.take().map(|t| t.elapsed());
                for (key, svc) in &plan.target {
                    if plan.ops.iter().any(|o| o.key() == *key) {
                        info!(service = %key, backends = ?svc.dests, scheduler = svc.scheduler.name(),
                              latency_us = latency.map(|d| d.as_micros() as u64),
                              "load balancer updated");
                    }
                }
                for op in plan
                    .ops
                    .iter()
                    .filter(|o| matches!(o, Op::DelService { .. }))
                {
                    info!(service = %op.key(), "load balancer service removed");
                }
                self.applied = plan.target;
                self.retry = None;
            }
            Err(e) => {
                warn!(error = %e, "load balancer change failed; re-reading the kernel and retrying");
                self.stale = true;
                self.retry = Some(next_delay(self.retry));
            }
        }
    }
}

fn next_delay(d: Option<Duration>) -> Duration {
    d.map_or(Duration::from_millis(500), |d| {
        (d * 2).min(Duration::from_secs(10))
    })
}

/// Runs the control-plane load balancer until `cancel`, then removes vipr's own services
/// (IPVS) or table (nftables) and returns. Does nothing while `lb_enable` is off.
///
/// - `lb`: the load-balancer section, followed at runtime; `control_plane`: the VIPs and
///   the API server port, followed too; `place`: IPVS's state directory and the nftables
///   table of this instance.
/// - `client`: Kubernetes, for the control-plane Nodes; `None` without a cluster (then only
///   `vipr_lb_backends` gives backends).
/// - `leader`: whether this node programs the service: always `true` in BGP mode; the
///   control-plane Lease in ARP mode.
pub async fn run(
    mut lb_cfg: watch::Receiver<Arc<LbSettings>>,
    mut cp: watch::Receiver<Arc<ControlPlane>>,
    place: Place,
    client: Option<kube::Client>,
    mut leader: watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    let (health_tx, mut health_rx) = mpsc::channel(256);
    let (nodes_tx, nodes_rx) = watch::channel::<NodeAddrs>(None);
    let mut nodes_changes = nodes_rx.clone();
    let mut lb = Lb {
        engine: None,
        applied: Table::new(),
        foreign: BTreeSet::new(),
        stale: true,
        book: Book::new(),
        checkers: None,
        health_tx,
        nodes_rx,
        nodes_watch: None,
        since: None,
        retry: None,
        warned: BTreeSet::new(),
    };
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    loop {
        let c = lb_cfg.borrow_and_update().clone();
        let cpv = cp.borrow_and_update().clone();
        let is_leader = *leader.borrow_and_update();
        lb.step(&c, &cpv, &place, is_leader, &client, &cancel, &nodes_tx)
            .await;
        let retry = lb.retry;
        tokio::select! {
            _ = cancel.cancelled() => break,
            Ok(()) = lb_cfg.changed() => { lb.since.get_or_insert_with(Instant::now); }
            Ok(()) = cp.changed() => { lb.since.get_or_insert_with(Instant::now); }
            Ok(()) = leader.changed() => { lb.since.get_or_insert_with(Instant::now); }
            Ok(()) = nodes_changes.changed() => {
                nodes_changes.borrow_and_update();
                lb.since.get_or_insert_with(Instant::now);
            }
            Some((b, ok)) = health_rx.recv() => {
                let now = Instant::now();
                let mut results = vec![(b, ok)];
                while let Ok(r) = health_rx.try_recv() {
                    results.push(r);
                }
                for (b, ok) in results {
                    if let Some(t) = lb.book.observe(b, ok) {
                        if ok {
                            info!(backend = %b, was = ?t.from, "backend healthy");
                        } else {
                            warn!(backend = %b, was = ?t.from, "backend failed its health check");
                        }
                        lb.since.get_or_insert(now);
                    }
                }
            }
            _ = resync.tick() => { lb.stale = true; }
            _ = tokio::time::sleep(retry.unwrap_or(Duration::MAX / 4)), if retry.is_some() => {}
        }
    }
    if let Some(t) = lb.nodes_watch.take() {
        t.cancel();
    }
    lb.shutdown_engine().await;
}
