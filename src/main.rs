//! vipr: highly available virtual IPs over BGP for Kubernetes and bare metal.
//!
//! This file owns the command line, logging, signals and the wiring of the daemon's tasks.
//!
//! ```text
//!                 SIGHUP: Sources::load ─┐      SIGTERM/SIGINT ──> CancellationToken ──> all tasks
//!                                        v
//!                      watch<Arc<Config>> (desired configuration)
//!            ┌──────────────┬────────────┴───────────────┐
//!            v              v                            v
//!      health supervisor   peers task                reconciler task ──────────────┐
//!      (HTTP(S) check)     (config → sessions,       (pure core + shell: desired    │ rtnetlink
//!            │              set_peer/remove_peer)     VIP set vs node addresses)    v
//!            │ watch<Health>        │                   │  set_routes(RouteTable)  lo / vip_interface
//!            └──────────────────────┼──────────────────>│─────────┐
//!                                   v                   │         v
//!                             bgp::Speaker  <───────────┘   watch<RouteTable> ──> peer tasks ──> routers
//!                                   │ peers(), status           (one per peer, bgp crate)
//!                                   v
//!   http task (/metrics /status /healthz /readyz) <── watch<Vec<VipState>> (reconciler's view)
//!
//!   Kubernetes (when needed): Service/endpoint watcher ──watch<Services>──> reconciler
//!                             └──watch<Vec<StatusWrite>>──> status writer (8 writes at once)
//!   ARP mode: elections (one Lease task each) ──watch<Leadership>──> reconciler, lb task
//!   peer source: static | Equinix metadata poller | Node annotations ──watch<Discovered>──> peers
//!   lb task (lb_enable): Node watcher / static list + health checks ──> IPVS or nftables
//!   announcer (ARP mode): mpsc<Announce> from the reconciler ──> gratuitous ARP / NA
//! ```
//!
//! Shutdown: the reconciler withdraws every route and sends Cease on every session
//! (`Speaker::shutdown`), then removes the VIP addresses it added, then the process exits 0.
//! SIGUSR2 (or SIGTERM with an upgrade intent, see `restart`) restarts in place instead:
//! sessions closed without NOTIFICATION, routes and VIPs left for the next process.

mod config;
mod dataplane;
mod discovery;
mod election;
mod error;
mod health;
mod http;
mod kube;
mod lb;
mod manifest;
mod metrics;
mod peers;
mod reconciler;
mod restart;
mod run;
mod status;
mod vips;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::keys::{flag_name, KEYS};
use crate::config::Mode;
use crate::run::Sources;

fn cli() -> Command {
    let mut manager = Command::new("manager")
        .visible_alias("run")
        .about("Run the daemon (kube-vip's `manager`)")
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("YAML file with any of the settings below"),
        );
    for k in KEYS {
        manager = manager.arg(key_arg(k, false));
    }
    Command::new("vipr")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Highly available virtual IPs over BGP (kube-vip compatible)")
        .subcommand_required(true)
        .subcommand(manager)
        .subcommand(
            Command::new("status")
                .about("Show peers and VIPs of a running daemon")
                .arg(
                    Arg::new("json")
                        .long("json")
                        .action(ArgAction::SetTrue)
                        .help("print the raw JSON"),
                )
                .arg(
                    Arg::new("addr")
                        .long("addr")
                        .default_value("127.0.0.1:2112")
                        .help("the daemon's prometheus_server address"),
                ),
        )
        .subcommand(manifest::command())
        .subcommand(Command::new("version").about("Print the version"))
}

fn sources(m: &ArgMatches) -> Sources {
    let mut flags = Vec::new();
    for k in KEYS {
        if let Some(v) = m.get_one::<String>(k.name) {
            flags.push((flag_name(k), v.clone()));
        }
    }
    Sources {
        flags,
        file: m.get_one::<String>("config").map(Into::into),
    }
}

/// The flag of setting `k` (`--bgp-as`, a bare flag meaning `true`), with kube-vip's
/// spellings as aliases: listed in `--help` when `visible` (`vipr manifest`, whose flags
/// are kube-vip's generator's), hidden otherwise.
pub(crate) fn key_arg(k: &config::keys::Key, visible: bool) -> Arg {
    let a = Arg::new(k.name)
        .long(flag_name(k))
        .value_name("VALUE")
        .num_args(0..=1)
        .default_missing_value("true")
        .action(ArgAction::Set)
        .help(k.help);
    k.flags.iter().fold(a, |a, f| {
        if visible {
            a.visible_alias(*f)
        } else {
            a.alias(*f)
        }
    })
}

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},rtnetlink=warn,netlink_proto=warn"))
    });
    let mut b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // Colours only on a terminal: not in files, `kubectl logs` or journald.
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        b = b.with_ansi(false);
    }
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() {
    let matches = cli().get_matches();
    let code = match matches.subcommand() {
        Some(("version", _)) => {
            println!("vipr {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(("status", m)) => status_cmd(m),
        Some(("manifest", m)) => manifest::main(m),
        Some(("manager", m)) => {
            let src = sources(m);
            match src.load() {
                Ok(cfg) => match manager(src, cfg) {
                    Ok(()) => 0,
                    Err(e) if e.downcast_ref::<kube::KubeError>().is_some() => {
                        error!("{e:#}");
                        eprintln!("vipr: invalid configuration: {e:#}");
                        2
                    }
                    Err(e) => {
                        error!("{e:#}");
                        eprintln!("vipr: {e:#}");
                        1
                    }
                },
                Err(e) => {
                    eprintln!("vipr: invalid configuration: {e}");
                    2
                }
            }
        }
        _ => 2,
    };
    std::process::exit(code);
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn status_cmd(m: &ArgMatches) -> i32 {
    let addr = m.get_one::<String>("addr").cloned().unwrap_or_default();
    let json = m.get_flag("json");
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vipr: {e}");
            return 1;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    match rt.block_on(status::fetch(&addr)) {
        Ok(s) if json => {
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            0
        }
        Ok(s) => {
            print!("{}", status::render(&s));
            0
        }
        Err(e) => {
            eprintln!("vipr status: {e}");
            1
        }
    }
}

fn manager(src: Sources, cfg: config::Config) -> anyhow::Result<()> {
    init_logging(&cfg.log_level, cfg.log_json);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = runtime().context("tokio runtime")?;
    rt.block_on(async move {
        info!(
            version = env!("CARGO_PKG_VERSION"),
            node = %cfg.node_name,
            mode = ?cfg.mode,
            vips = ?cfg.configured_vips().map(|(ip, _)| ip).collect::<Vec<_>>(),
            peers = cfg.bgp.peers.len(),
            "vipr starting"
        );
        // Kubernetes: Services, node annotations, and the Leases of ARP mode. A control-plane
        // VIP over BGP with static peers runs without any API server. Built first (it only
        // reads files): a missing or broken kubeconfig is a configuration error (exit 2)
        // found before anything touches the network.
        let arp_election = cfg.mode == Mode::Arp && cfg.arp.leader_election;
        let lb_nodes = cfg.svc.lb_enable && cfg.svc.lb_backends.is_empty();
        let client = if cfg.svc_enable || arp_election || cfg.svc.annotation.is_some() || lb_nodes {
            Some(kube::client(&cfg.kubeconfig).await?)
        } else {
            None
        };
        let speaker = bgp::Speaker::start(bgp::SpeakerConfig { listen: cfg.bgp.listen })
            .await
            .context("BGP speaker")?;
        let addrs = dataplane::addr::AddrManager::new(&cfg.state_dir).context("netlink")?;
        let cancel = CancellationToken::new();
        // Cancelled only after the reconciler finished its shutdown: Leases are released and
        // host routes to peers removed after the last withdrawal went out.
        let release = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (cfg_tx, cfg_rx) = watch::channel(Arc::new(cfg.clone()));
        let (health_tx, health_rx) = watch::channel(reconciler::Health::NotChecked);
        let (vips_tx, vips_rx) = watch::channel(Vec::new());
        let (known_tx, known_rx) = watch::channel(false);


        if let Some(addr) = cfg.http {
            let state = http::AppState {
                speaker: speaker.clone(),
                vips: vips_rx,
                health: health_rx.clone(),
                node: cfg.node_name.clone(),
                mode: if cfg.mode == Mode::Bgp { "bgp" } else { "arp" },
                peers_known: known_rx,
            };
            tasks.spawn(http::serve(addr, state, cancel.clone()));
        }
        tasks.spawn(run::health(cfg_rx.clone(), health_tx, cancel.clone()));
        let peers_task = if cfg.mode == Mode::Bgp {
            let (disc_tx, disc_rx) = watch::channel(peers::Discovered::Pending);
            tasks.spawn(discovery::run(Arc::new(cfg.clone()), client.clone(), disc_tx, release.clone()));
            let routes = dataplane::routes::RouteManager::new().context("netlink")?;
            Some(tokio::spawn(peers::run(
                cfg_rx.clone(),
                disc_rx,
                addrs.clone(),
                routes,
                speaker.clone(),
                known_tx,
                release.clone(),
            )))
        } else {
            known_tx.send_replace(true);
            None
        };
        let (svc_tx, svc_rx) = watch::channel(kube::watch::Services::default());
        let (lead_tx, lead_rx) = watch::channel(reconciler::Leadership::default());
        let mut elections = None;
        let lb_client = if lb_nodes { client.clone() } else { None };
        if let Some(client) = client {
            if cfg.svc_enable {
                let filter = kube::services::Filter {
                    namespace: cfg.svc.namespace.clone(),
                    class_only: cfg.svc.class_only,
                    class_name: cfg.svc.class_name.clone(),
                };
                tasks.spawn(kube::watch::run(
                    client.clone(),
                    filter,
                    cfg.node_name.clone(),
                    true,
                    svc_tx,
                    cancel.clone(),
                ));
            }
            if arp_election {
                elections = Some(tokio::spawn(kube::elections::run(
                    client,
                    cfg_rx.clone(),
                    svc_rx.clone(),
                    lead_tx,
                    release.clone(),
                )));
            }
        }
        let announce = (cfg.mode == Mode::Arp).then(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            tasks.spawn(dataplane::announce::run(rx, cfg.arp.rate));
            tx
        });
        // The control-plane load balancer: every node in BGP mode; the control-plane Lease
        // holder in ARP mode (a single node without election always).
        let (lb_leader_tx, lb_leader_rx) = watch::channel(cfg.mode == Mode::Bgp || !arp_election);
        if cfg.mode == Mode::Arp && arp_election {
            let mut l = lead_rx.clone();
            tasks.spawn(async move {
                loop {
                    let cp = l.borrow_and_update().control_plane;
                    lb_leader_tx.send_if_modified(|v| std::mem::replace(v, cp) != cp);
                    if l.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
        let lb_task = tokio::spawn(lb::run(cfg_rx.clone(), lb_client, lb_leader_rx, cancel.clone()));
        let inputs = run::Inputs {
            cfg: cfg_rx,
            health: health_rx,
            services: svc_rx,
            leadership: lead_rx,
        };
        let in_place = restart::RestartInPlace::default();
        let effects = run::Effects {
            addrs,
            speaker,
            vips: vips_tx,
            announce,
            restart: in_place.clone(),
        };
        let reconciler = tokio::spawn(run::reconcile(inputs, effects, cancel.clone()));

        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut usr2 = signal(SignalKind::user_defined2()).context("SIGUSR2 handler")?;
        loop {
            tokio::select! {
                _ = term.recv() => {
                    if restart::upgrade_intent(&cfg_tx.borrow().state_dir) {
                        info!("SIGTERM with an upgrade intent: restarting in place");
                        in_place.request();
                    } else {
                        info!("SIGTERM: shutting down");
                    }
                    break;
                }
                _ = usr2.recv() => {
                    info!("SIGUSR2: restarting in place (graceful restart)");
                    in_place.request();
                    break;
                }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => match src.load() {
                    Ok(new) => {
                        info!("SIGHUP: configuration reloaded");
                        cfg_tx.send_if_modified(|c| {
                            if **c == new { false } else { *c = Arc::new(new); true }
                        });
                    }
                    Err(e) => warn!("SIGHUP: keeping the running configuration: invalid configuration: {e}"),
                },
            }
        }
        cancel.cancel();
        // The reconciler withdraws routes, sends Cease and removes addresses; only then are
        // the Leases released, so the next holder never overlaps with this one.
        if tokio::time::timeout(Duration::from_millis(2500), reconciler).await.is_err() {
            warn!("shutdown took too long; exiting anyway");
        }
        // The load balancer removes its own services (it was cancelled together with the
        // reconciler, so this runs in parallel with the withdrawal).
        if tokio::time::timeout(Duration::from_millis(2000), lb_task).await.is_err() {
            warn!("load balancer shutdown took too long");
        }
        release.cancel();
        if let Some(e) = elections {
            let _ = tokio::time::timeout(Duration::from_millis(1500), e).await;
        }
        if let Some(p) = peers_task {
            let _ = tokio::time::timeout(Duration::from_millis(500), p).await;
        }
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_millis(300), tasks.wait()).await;
        info!("vipr stopped");
        Ok(())
    })
}
