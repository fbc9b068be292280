//! `vipr manager`: the [`Daemon`] connects each configuration section to the tasks that
//! follow it (the diagram is in `main.rs`), then waits for signals: SIGHUP re-reads the
//! configuration and publishes the sections that changed; SIGTERM/SIGINT shut down
//! (withdraw, Cease, remove the VIPs, release the Leases); SIGUSR2, or SIGTERM with an
//! upgrade intent, restarts in place.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::sections::Sections;
use crate::config::{Config, Mode, Sources};
use crate::discovery::Discovered;
use crate::error::DaemonError;
use crate::model::{Health, Leadership, Services};
use crate::{
    dataplane, discovery, dns, health, http, kube, lb, liveness, peers, reconciler, restart,
    statedir,
};

/// Changes the log filter (`vip_loglevel` is applied live).
pub trait LogLevelControl: Send + Sync + 'static {
    /// Applies a level directive (`info`, `debug`, …).
    fn set(&self, directive: &str);
}

/// The running daemon: its sections, where they are read from, and the tasks to wait for at
/// shutdown.
pub struct Daemon {
    sources: Sources,
    sections: Sections,
    /// The API client: present when a section needed it at start, or when the kubeconfig
    /// could be read anyway (so a reload may enable Services without a restart).
    client: Option<::kube::Client>,
    cancel: CancellationToken,
    /// Cancelled after the reconciler's shutdown: Leases are released and host routes to
    /// peers removed only after the last withdrawal went out.
    release: CancellationToken,
    restart: restart::RestartInPlace,
    /// The static pod manifest as it was at the start (`vipr_static_pod_manifest`).
    static_pod: Option<restart::StaticPodManifest>,
    tasks: TaskTracker,
    reconciler: JoinHandle<()>,
    lb: JoinHandle<()>,
    elections: Option<JoinHandle<()>>,
    peers: Option<JoinHandle<()>>,
}

/// A set of addresses (the node's own, its BGP peers').
type Addrs = Arc<std::collections::BTreeSet<std::net::IpAddr>>;

/// Both ends of a `watch` channel.
type Pair<T> = (watch::Sender<T>, watch::Receiver<T>);

/// The channels between the tasks, created before any task starts.
struct Channels {
    health: Pair<Health>,
    node_addrs: Pair<Addrs>,
    peer_addrs: Pair<Addrs>,
    pending: Pair<kube::watch::PendingServices>,
    vips: Pair<crate::reconciler::VipStates>,
    peers_known: Pair<bool>,
    /// Configured peers this node's labels leave out, for `/status`.
    selected_out: Pair<Arc<Vec<peers::SelectedOut>>>,
    services: Pair<Services>,
    leadership: Pair<Leadership>,
    writes: Arc<kube::writer::WriteCounts>,
    work: Arc<crate::model::WorkCounts>,
    /// The Services' Leases contended (ARP mode), for `/metrics`.
    leases: Arc<crate::model::LeaseMetrics>,
    /// The reconciler's heartbeat.
    reconciler_alive: (liveness::Beat, liveness::Heartbeat),
}

/// What starting the tasks needs at hand.
struct Wiring<'a> {
    s: &'a Sections,
    node: &'a crate::config::NodeSettings,
    client: &'a Option<::kube::Client>,
    speaker: bgp::Speaker,
    addrs: dataplane::addr::AddrManager,
    cancel: CancellationToken,
    release: CancellationToken,
    tasks: &'a TaskTracker,
}

impl Wiring<'_> {
    /// `/metrics`, `/status`, `/healthz`, `/readyz` on the HTTP section's address (`first`:
    /// the one at start, bound already), the probers behind `/healthz`, and the log level.
    fn http(
        &self,
        c: &Channels,
        first: Option<(std::net::SocketAddr, tokio::net::TcpListener)>,
        log: impl LogLevelControl,
    ) {
        self.tasks
            .spawn(follow_log(self.s.log.subscribe(), log, self.cancel.clone()));
        let [speaker, bfd] =
            liveness::probe_speaker_and_bfd(&self.speaker, self.tasks, &self.cancel);
        self.tasks.spawn(liveness::stall_hook(
            self.speaker.clone(),
            self.cancel.clone(),
        ));
        self.tasks.spawn(crate::memory::trim(self.cancel.clone()));
        self.tasks.spawn(http::follow(
            self.s.http.subscribe(),
            first,
            http::AppState {
                speaker: self.speaker.clone(),
                vips: c.vips.1.clone(),
                pending: c.pending.1.clone(),
                work: c.work.clone(),
                writes: c.writes.clone(),
                leases: c.leases.clone(),
                health: c.health.1.clone(),
                node: self.node.name.clone(),
                mode: self.node.mode.name(),
                peers_known: c.peers_known.1.clone(),
                selected_out: c.selected_out.1.clone(),
                settings: self.s.http.subscribe(),
                heartbeats: Arc::new([speaker, bfd, c.reconciler_alive.1.clone()]),
            },
            self.cancel.clone(),
        ));
    }

    /// BGP mode: the peer provider and the peers task.
    fn bgp(
        &self,
        known: watch::Sender<bool>,
        peer_addrs: watch::Sender<Addrs>,
        selected_out: watch::Sender<Arc<Vec<peers::SelectedOut>>>,
    ) -> Result<Option<JoinHandle<()>>, DaemonError> {
        if self.node.mode != Mode::Bgp {
            known.send_replace(true);
            return Ok(None);
        }
        let (disc_tx, disc_rx) = watch::channel(Discovered::Pending);
        self.tasks.spawn(discovery::follow(
            self.s.peer_source.subscribe(),
            self.client.clone(),
            self.node.name.clone(),
            disc_tx,
            self.release.clone(),
        ));
        let (routers_tx, routers_rx) = watch::channel(Arc::default());
        self.tasks.spawn(crate::unnumbered::follow(
            self.s.bgp.subscribe(),
            routers_tx,
            self.release.clone(),
        ));
        let routes = dataplane::routes::RouteManager::new(self.node.instance.marker())
            .map_err(|e| DaemonError::Io("netlink", e))?;
        Ok(Some(tokio::spawn(peers::run(
            peers::Inputs {
                bgp: self.s.bgp.subscribe(),
                control_plane: self.s.control_plane.subscribe(),
                vips: self.s.vips.subscribe(),
                discovered: disc_rx,
                link_routers: routers_rx,
                client: self.client.clone(),
                node: self.node.name.clone(),
            },
            self.addrs.clone(),
            routes,
            self.speaker.clone(),
            known,
            peer_addrs,
            selected_out,
            self.release.clone(),
        ))))
    }

    /// With an API client: the Service watcher and the elections (in BGP mode only with
    /// `vipr_bgp_leader_only`).
    fn kube(&self, c: &Channels) -> Option<JoinHandle<()>> {
        let client = self.client.as_ref()?;
        self.tasks.spawn(kube::watch::follow(
            client.clone(),
            self.s.services.subscribe(),
            self.node.name.clone(),
            kube::watch::LocalFacts {
                node_addrs: c.node_addrs.1.clone(),
                peers: c.peer_addrs.1.clone(),
                control_plane: self.s.control_plane.subscribe(),
            },
            kube::watch::Outputs {
                services: c.services.0.clone(),
                pending: c.pending.0.clone(),
                writes: c.writes.clone(),
                work: c.work.clone(),
            },
            self.cancel.clone(),
        ));
        let leadership = c.leadership.0.clone();
        let services_rx = &c.services.1;
        Some(tokio::spawn(kube::elections::run(
            client.clone(),
            self.node.instance.identity(&self.node.name),
            kube::elections::Inputs {
                mode: self.node.mode,
                arp: self.s.arp.subscribe(),
                control_plane: self.s.control_plane.subscribe(),
                services_cfg: self.s.services.subscribe(),
                services: services_rx.clone(),
            },
            leadership,
            c.leases.clone(),
            self.release.clone(),
        )))
    }

    /// The control-plane load balancer: every node in BGP mode; in ARP mode the holder of
    /// the control-plane Lease when there is an election, every node without.
    fn lb(&self, leadership: &watch::Receiver<Leadership>) -> JoinHandle<()> {
        let (leader_tx, leader_rx) = watch::channel(true);
        if self.node.mode == Mode::Arp {
            self.tasks.spawn(lb_leadership(
                self.s.arp.subscribe(),
                leadership.clone(),
                leader_tx,
            ));
        }
        tokio::spawn(lb::run(
            self.s.lb.subscribe(),
            self.s.control_plane.subscribe(),
            lb::Place {
                state_dir: self.node.state_dir.clone(),
                nft_table: self.node.instance.nft_table(),
            },
            self.client.clone(),
            leader_rx,
            self.cancel.clone(),
        ))
    }

    /// The reconciler, and in ARP mode its announcer.
    fn reconciler(&self, c: Channels, restart: restart::RestartInPlace) -> JoinHandle<()> {
        let announce = (self.node.mode == Mode::Arp).then(|| {
            let (tx, rx) = mpsc::channel(64);
            self.tasks
                .spawn(dataplane::announce::run(rx, self.s.arp.subscribe()));
            tx
        });
        tokio::spawn(reconciler::shell::run(
            self.node.clone(),
            reconciler::shell::Inputs {
                vips: self.s.vips.subscribe(),
                control_plane: self.s.control_plane.subscribe(),
                services_cfg: self.s.services.subscribe(),
                arp: self.s.arp.subscribe(),
                bgp: self.s.bgp.subscribe(),
                health: c.health.1,
                services: c.services.1,
                leadership: c.leadership.1,
            },
            reconciler::shell::Effects {
                addrs: self.addrs.clone(),
                speaker: self.speaker.clone(),
                vips: c.vips.0,
                node_addrs: c.node_addrs.0,
                announce,
                restart,
                work: c.work.clone(),
                alive: c.reconciler_alive.0,
            },
            self.cancel.clone(),
        ))
    }
}

impl Daemon {
    /// Starts every task for `cfg`. A missing or unusable kubeconfig when the settings need
    /// the API is [`DaemonError::Kube`], found before the network is touched.
    pub async fn start(
        sources: Sources,
        cfg: Config,
        log: impl LogLevelControl,
    ) -> Result<Daemon, DaemonError> {
        info!(
            version = env!("CARGO_PKG_VERSION"),
            node = %cfg.node.name,
            instance = cfg.node.instance.name(),
            mode = cfg.node.mode.name(),
            vips = ?cfg.configured_vips().map(|(ip, _)| ip).collect::<Vec<_>>(),
            peers = cfg.bgp.peers.len(),
            "vipr starting"
        );
        statedir::prepare(&cfg.node.state_dir).map_err(DaemonError::StateDir)?;
        let static_pod = cfg
            .node
            .static_pod_manifest
            .as_deref()
            .map(restart::StaticPodManifest::read);
        // First, so that a port held by another process (kube-vip during a migration) stops
        // vipr before it touches the network, rather than leaving a liveness probe to
        // probe the other process.
        let first = match cfg.http.addr {
            Some(addr) => Some((
                addr,
                http::bind(addr).map_err(|source| DaemonError::Listen {
                    setting: "prometheus_server",
                    addr,
                    source,
                })?,
            )),
            None => None,
        };
        let client = if cfg.needs_api() {
            Some(
                kube::client(
                    &cfg.node.kubeconfig,
                    &cfg.control_plane,
                    cfg.node.kubernetes_addr.as_ref(),
                )
                .await?,
            )
        } else {
            kube::client(
                &cfg.node.kubeconfig,
                &cfg.control_plane,
                cfg.node.kubernetes_addr.as_ref(),
            )
            .await
            .ok()
        };
        // Latched once: a later reload must not flip the Restart State bit.
        let gr_time = cfg
            .bgp
            .defaults
            .graceful_restart
            .map_or(0, |g| g.restart_time);
        let restarting = cfg.node.mode == Mode::Bgp
            && restart::take_marker(&cfg.node.state_dir, Duration::from_secs(gr_time.into()));
        if restarting {
            info!("restarted in place: sessions open with the Restart State bit (RFC 4724)");
        }
        let speaker = bgp::Speaker::start(bgp::SpeakerConfig {
            listen: cfg.bgp.listen,
            router_id: None,
            restarting,
        })
        .await?;
        let addrs =
            dataplane::addr::AddrManager::new(&cfg.node.state_dir, cfg.node.instance.marker())
                .map_err(|e| DaemonError::Io("netlink", e))?;
        let node = cfg.node.clone();
        let sections = Sections::new(cfg);
        let tasks = TaskTracker::new();
        let w = Wiring {
            s: &sections,
            node: &node,
            client: &client,
            speaker,
            addrs,
            cancel: CancellationToken::new(),
            release: CancellationToken::new(),
            tasks: &tasks,
        };
        let c = Channels {
            health: watch::channel(Health::NotChecked),
            node_addrs: watch::channel(Addrs::default()),
            peer_addrs: watch::channel(Addrs::default()),
            pending: watch::channel(kube::watch::PendingServices::default()),
            vips: watch::channel(crate::reconciler::VipStates::default()),
            peers_known: watch::channel(false),
            selected_out: watch::channel(Arc::default()),
            services: watch::channel(Services::default()),
            leadership: watch::channel(Leadership::default()),
            writes: Arc::default(),
            work: Arc::default(),
            leases: Arc::default(),
            reconciler_alive: liveness::heartbeat("reconciler"),
        };
        w.http(&c, first, log);
        tasks.spawn(dns::run(
            sections.control_plane_cfg.subscribe(),
            sections.control_plane.clone(),
            w.cancel.clone(),
        ));
        tasks.spawn(health::supervise(
            sections.control_plane.subscribe(),
            c.health.0.clone(),
            w.cancel.clone(),
        ));
        let peers = w.bgp(
            c.peers_known.0.clone(),
            c.peer_addrs.0.clone(),
            c.selected_out.0.clone(),
        )?;
        let elections = w.kube(&c);
        let lb = w.lb(&c.leadership.1);
        if let (true, Some(client)) = (node.node_labeling, &client) {
            // The labels follow what the reconciler serves; removed when it is cancelled.
            tasks.spawn(kube::labels::run(
                client.clone(),
                node.name.clone(),
                c.vips.1.clone(),
                w.cancel.clone(),
            ));
        }
        let restart = restart::RestartInPlace::default();
        let reconciler = w.reconciler(c, restart.clone());
        let (cancel, release) = (w.cancel.clone(), w.release.clone());
        drop(w);
        Ok(Daemon {
            sources,
            sections,
            client,
            cancel,
            release,
            restart,
            static_pod,
            tasks,
            reconciler,
            lb,
            elections,
            peers,
        })
    }

    /// Waits for signals: SIGHUP reloads; SIGTERM, SIGINT and SIGUSR2 end it. Then shuts
    /// everything down in order and returns.
    pub async fn wait(self) -> Result<(), DaemonError> {
        let sig =
            |k: SignalKind, name: &'static str| signal(k).map_err(|e| DaemonError::Io(name, e));
        let mut term = sig(SignalKind::terminate(), "SIGTERM handler")?;
        let mut int = sig(SignalKind::interrupt(), "SIGINT handler")?;
        let mut hup = sig(SignalKind::hangup(), "SIGHUP handler")?;
        let mut usr2 = sig(SignalKind::user_defined2(), "SIGUSR2 handler")?;
        loop {
            tokio::select! {
                _ = term.recv() => {
                    if restart::upgrade_intent(&self.sections.node.state_dir) {
                        info!("SIGTERM with an upgrade intent: restarting in place");
                        self.restart.request();
                    } else if let Some(why) = self.static_pod_upgrade() {
                        info!("SIGTERM: {why}; restarting in place (graceful restart)");
                        self.restart.request();
                    } else if let Some(g) = self.rolling_update().await {
                        info!(template_generation = %g, "SIGTERM during a rolling update of this DaemonSet: restarting in place (graceful restart)");
                        self.restart.request();
                    } else {
                        info!("SIGTERM: shutting down");
                    }
                    break;
                }
                _ = usr2.recv() => {
                    info!("SIGUSR2: restarting in place (graceful restart)");
                    self.restart.request();
                    break;
                }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => self.reload(),
            }
        }
        self.shutdown().await;
        Ok(())
    }

    /// At SIGTERM, in BGP mode with graceful restart on, for a static pod: why its manifest
    /// says the kubelet is replacing it ([`restart::StaticPodManifest`]).
    fn static_pod_upgrade(&self) -> Option<String> {
        let gr = self.sections.bgp.borrow().graceful_restart();
        if self.sections.node.mode != Mode::Bgp || !gr {
            return None;
        }
        self.static_pod.as_ref()?.changed()
    }

    /// At SIGTERM, in BGP mode with graceful restart on and vipr's DaemonSet named: the
    /// DaemonSet's new template generation when this pod is being replaced by it
    /// ([`crate::kube::rollout`]; within a second, else a real shutdown).
    async fn rolling_update(&self) -> Option<String> {
        let ds = self.sections.node.daemonset.as_ref()?;
        let gr = self.sections.bgp.borrow().graceful_restart();
        if self.sections.node.mode != Mode::Bgp || !gr {
            return None;
        }
        let client = self.client.clone()?;
        crate::kube::rollout::replaced_by(
            client,
            ds,
            &self.sections.node.name,
            Duration::from_secs(1),
        )
        .await
    }

    /// SIGHUP: reads the configuration again and publishes every section that changed; a
    /// configuration that does not validate changes nothing.
    fn reload(&self) {
        let new = match self.sources.load() {
            Ok((c, ignored)) => {
                for i in &ignored {
                    warn!("SIGHUP: {i}");
                }
                c
            }
            Err(e) => {
                warn!("SIGHUP: keeping the running configuration: invalid configuration: {e}");
                return;
            }
        };
        if new.needs_api() && self.client.is_none() {
            warn!(
                "SIGHUP: keeping the running configuration: the new one needs the Kubernetes API, which this process started without (k8s_config_file={}); restart vipr to apply it",
                self.sections.node.kubeconfig.display()
            );
            return;
        }
        let applied = self.sections.apply(new);
        info!(changed = ?applied.changed, "SIGHUP: configuration reloaded");
        if !applied.fixed.is_empty() {
            warn!(
                settings = %applied.fixed.join(", "),
                "SIGHUP: these settings cannot change while vipr runs and keep their running values; restart vipr to apply them"
            );
        }
    }

    async fn shutdown(self) {
        self.cancel.cancel();
        // The reconciler withdraws routes, sends Cease and removes addresses; only then are
        // the Leases released, so the next holder never overlaps with this one.
        let drain = self.sections.bgp.borrow().drain.unwrap_or_default();
        let budget = Duration::from_millis(2500) + drain + crate::reconciler::shell::LINGER;
        if tokio::time::timeout(budget, self.reconciler).await.is_err() {
            warn!("shutdown took too long; exiting anyway");
        }
        // The load balancer removes its own services (it was cancelled together with the
        // reconciler, so this runs in parallel with the withdrawal).
        if tokio::time::timeout(Duration::from_millis(2000), self.lb)
            .await
            .is_err()
        {
            warn!("load balancer shutdown took too long");
        }
        self.release.cancel();
        if let Some(e) = self.elections {
            let _ = tokio::time::timeout(Duration::from_millis(1500), e).await;
        }
        if let Some(p) = self.peers {
            let _ = tokio::time::timeout(Duration::from_millis(500), p).await;
        }
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_millis(300), self.tasks.wait()).await;
        info!("vipr stopped");
    }
}

/// Applies `vip_loglevel` changes.
async fn follow_log(
    mut section: watch::Receiver<Arc<crate::config::LogSettings>>,
    log: impl LogLevelControl,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = section.changed() => if r.is_err() { return },
        }
        let level = section.borrow_and_update().level;
        log.set(level.directive());
        info!(level = level.directive(), "log level changed");
    }
}

/// ARP mode: the load balancer programs the control-plane VIP only on the holder of its
/// Lease when there is an election, on every node without.
async fn lb_leadership(
    mut arp: watch::Receiver<Arc<crate::config::ArpSettings>>,
    mut lead: watch::Receiver<Leadership>,
    tx: watch::Sender<bool>,
) {
    loop {
        let elected = arp
            .borrow_and_update()
            .election
            .as_ref()
            .is_some_and(|e| e.control_plane);
        let cp = lead.borrow_and_update().control_plane;
        let leader = !elected || cp;
        tx.send_if_modified(|v| std::mem::replace(v, leader) != leader);
        tokio::select! {
            r = arp.changed() => if r.is_err() { return },
            r = lead.changed() => if r.is_err() { return },
        }
    }
}
