//! vipr: highly available virtual IPs over BGP for Kubernetes and bare metal.
//!
//! This file starts and waits: the command line, logging, and `vipr manager` handing its
//! configuration to the [`daemon::Daemon`]. Each configuration section travels on its own
//! `watch` to the tasks that follow it (README.md carries the same diagram; a test keeps
//! the two identical):
//!
//! ```text
//!  SIGHUP ─> Sources::load ─> Sections::apply ─> the sections that changed (watch each)
//!  SIGTERM/SIGINT/SIGUSR2 ─> cancel: reconciler withdraws first, then Leases released
//!
//!  section       followed by
//!  control_plane ─> DNS resolver (a name in address: every 3 s) ─watch<ControlPlane>─> as below
//!  control_plane ─> health supervisor ─watch<Health>───────────────────────┐
//!            ├────> lb task (IPVS | nftables) <─watch<bool> Lease (ARP)     │
//!            ├────> elections (ARP, a task per Lease) ─watch<Leadership>───┤
//!            └────> peers task (a VIP is never a router id)                │
//!  vips ──────────> reconciler, peers task                                 v
//!  services ──────> Service watcher ─watch<Services>───────────> reconciler task ─rtnetlink─> VIPs
//!            │  reads Services, Endpoints, claims, pool ConfigMap,     │  │
//!            │  node and peer addresses ─> ipam plan                   │  │
//!            │       └─watch<jobs>─> writer (claims, status,           │  │
//!            │                       annotations, Events)              │  │
//!            └────> elections, reconciler                              │  └─mpsc<Announce>─> announcer (ARP)
//!  bgp ───────────> peers task ─set_peer/set_router_id/set_listen─┐    │ set_routes
//!            └────> reconciler (route attributes, drain)         v    v
//!  peer_source ───> discovery ─watch<Discovered>─> peers task   bgp::Speaker ─watch<RouteTable>─> peer tasks ─> routers
//!  bgp ───────────> RA listener (unnumbered peers' links) ─watch<LinkRouters>─> peers task
//!                   this Node's labels, peers' password Secrets (watches) ─> peers task
//!  arp ───────────> elections, announcer, reconciler
//!  lb ────────────> lb task
//!  http ──────────> http task (/metrics /status /healthz /readyz) <─watch<VipStates>─ reconciler
//!  log ───────────> log filter
//! ```

mod cli;
mod config;
mod daemon;
mod dataplane;
mod discovery;
mod dns;
mod election;
mod error;
mod follow;
mod health;
mod http;
mod instance;
mod ipam;
mod kube;
mod lb;
mod liveness;
mod logging;
mod manifest;
mod memory;
mod metrics;
mod model;
mod peers;
mod reconciler;
mod restart;
mod route_attrs;
mod statedir;
mod status;
mod unnumbered;

use anyhow::Context;

use crate::config::{Config, Sources};
use crate::error::DaemonError;

fn main() {
    let matches = cli::command().get_matches();
    let code = match matches.subcommand() {
        Some(("version", _)) => {
            println!("vipr {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(("status", m)) => status::main(m),
        Some(("manifest", m)) => manifest::main(m),
        Some(("manager", m)) => {
            let src = cli::sources(m);
            match src.load() {
                Ok((cfg, ignored)) => manager(src, cfg, &ignored),
                Err(e) => {
                    logging::say(&format!("vipr: invalid configuration: {e}"));
                    2
                }
            }
        }
        _ => 2,
    };
    std::process::exit(code);
}

/// Runs the daemon; the exit status: 0 after a clean shutdown, 2 for a configuration the
/// daemon finds unusable only when it starts (an unreadable kubeconfig), 1 otherwise.
fn manager(src: Sources, cfg: Config, ignored: &[config::kubevip::Ignored]) -> i32 {
    memory::limit_arenas();
    let log = logging::init(cfg.log.level.directive(), cfg.node.log_json);
    for i in ignored {
        tracing::warn!("{i}");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let run = || -> anyhow::Result<Result<(), DaemonError>> {
        // Before anything on the node is touched: one process per instance and namespace.
        let _claim = match cfg.node.instance.claim(instance::CLAIM_WAIT) {
            Ok(c) => c,
            Err(e) => return Ok(Err(DaemonError::Instance(e))),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        // BFD's 50 ms packets on a thread of their own: a long sync here cannot delay them.
        bgp::bfd::shell::own_thread().context("BFD thread")?;
        Ok(rt.block_on(async move {
            let daemon = daemon::Daemon::start(src, cfg, log).await?;
            daemon.wait().await
        }))
    };
    let code = match run() {
        Ok(Ok(())) => 0,
        Ok(Err(e @ DaemonError::Kube(_))) => {
            tracing::error!("{e:#}");
            logging::say(&format!("vipr: invalid configuration: {e:#}"));
            2
        }
        Ok(Err(e)) => {
            tracing::error!("{e:#}");
            logging::say(&format!("vipr: {e:#}"));
            1
        }
        Err(e) => {
            logging::say(&format!("vipr: {e:#}"));
            1
        }
    };
    // The last lines (the shutdown) reach stdout before the process ends.
    logging::flush(std::time::Duration::from_secs(1));
    code
}

#[cfg(test)]
mod tests {
    /// The lines of the first ```text block after `start` in `doc`, each without `strip`.
    fn diagram(doc: &str, start: &str, strip: &str) -> Vec<String> {
        doc[doc.find(start).expect("section")..]
            .lines()
            .skip_while(|l| l.trim_start_matches(strip).trim() != "```text")
            .skip(1)
            .take_while(|l| l.trim_start_matches(strip).trim() != "```")
            .map(|l| {
                l.strip_prefix(strip)
                    .unwrap_or(l.trim_end_matches(strip.trim()))
                    .to_string()
            })
            .collect()
    }

    /// The task diagram lives in one place: README.md carries this file's, unchanged.
    #[test]
    fn readme_carries_the_diagram_of_main_rs() {
        let here = diagram(include_str!("main.rs"), "//!", "//! ");
        let readme = diagram(include_str!("../README.md"), "## Architecture", "");
        assert!(here.len() > 10, "{here:?}");
        assert_eq!(
            readme, here,
            "README.md's diagram differs from src/main.rs's"
        );
    }
}
