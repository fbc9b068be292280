//! The HTTP endpoints on `prometheus_server` (default `:2112`, on the host network):
//! `/metrics`, `/healthz` and `/readyz` for anyone who can reach the node, as kube-vip's and
//! MetalLB's speakers serve them; `/status`, the detailed document (peers, AS numbers,
//! Service names, last errors), only to this host (loopback, or a client connecting from
//! the very address it connects to) and to the networks of `vipr_status_allow`, the way
//! BIRD and FRR keep theirs behind a local control socket.
//!
//! The address is bound before any task starts ([`bind`]): a taken port is an error at
//! start. On a change (SIGHUP) the new address is bound before the old listener is closed;
//! when it cannot be, the old one keeps serving and the new one is tried again every
//! [`RETRY`]. Connections are capped and deadlined in [`listener`].

pub mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as AxState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use bgp::{PeerInfo, Speaker};
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::HttpSettings;
use crate::liveness::Heartbeat;
use crate::model::{Health, VipState};
use listener::ClientAddr;

/// How often an address that could not be bound on a reload is tried again.
pub const RETRY: Duration = Duration::from_secs(5);

/// The longest a handler waits for the speaker's snapshot: a stuck speaker gets a 503, not
/// a request that never ends.
const SPEAKER_WAIT: Duration = Duration::from_secs(2);

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// The BGP speaker.
    pub speaker: Speaker,
    /// The reconciler's VIP view.
    pub vips: watch::Receiver<crate::reconciler::VipStates>,
    /// Services waiting for an address.
    pub pending: watch::Receiver<crate::kube::watch::PendingServices>,
    /// Work done per event.
    pub work: Arc<crate::model::WorkCounts>,
    /// API writes made.
    pub writes: Arc<crate::kube::writer::WriteCounts>,
    /// The Services' Leases contended (ARP mode).
    pub leases: Arc<crate::model::LeaseMetrics>,
    /// Control-plane health.
    pub health: watch::Receiver<Health>,
    /// Node name.
    pub node: String,
    /// `bgp` or `arp`.
    pub mode: &'static str,
    /// The peer source (static config or a provider) has answered.
    pub peers_known: watch::Receiver<bool>,
    /// Configured peers this node's labels leave out.
    pub selected_out: watch::Receiver<Arc<Vec<crate::peers::SelectedOut>>>,
    /// The HTTP section: who may read `/status`.
    pub settings: watch::Receiver<Arc<HttpSettings>>,
    /// The long-lived tasks' heartbeats, for `/healthz`.
    pub heartbeats: Arc<[Heartbeat]>,
}

/// The speaker's snapshot, or a 503 when it does not answer in time.
async fn peers(s: &AppState) -> Result<Vec<PeerInfo>, Response> {
    match tokio::time::timeout(SPEAKER_WAIT, s.speaker.peers()).await {
        Ok(Ok(p)) => Ok(p),
        _ => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the BGP speaker does not answer\n",
        )
            .into_response()),
    }
}

async fn metrics(AxState(s): AxState<AppState>) -> Response {
    let peers = match peers(&s).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let vips: Vec<VipState> = s.vips.borrow().values().map(|v| (**v).clone()).collect();
    let alloc = s.pending.borrow().clone();
    let healthy = match *s.health.borrow() {
        Health::NotChecked => None,
        h => Some(h == Health::Up),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(
            &peers,
            &crate::metrics::Scrape {
                node: &s.node,
                vips: &vips,
                alloc: &alloc,
                writes: &s.writes.snapshot(),
                status_failures: &s.writes.status_failures(),
                leases: &s.leases.snapshot(),
                work: s.work.snapshot(),
                healthy,
            },
        ),
    )
        .into_response()
}

/// Whether `client` may read `/status`: this host, or a network of `vipr_status_allow`.
/// A client on this host connecting to one of its addresses gets that address as its
/// source; from outside, a packet with a local source address is dropped as martian.
pub fn status_allowed(client: &ClientAddr, allow: &[IpNet]) -> bool {
    let peer = client.peer.ip().to_canonical();
    peer.is_loopback()
        || peer == client.local.ip().to_canonical()
        || allow.iter().any(|n| n.contains(&peer))
}

async fn status(
    AxState(s): AxState<AppState>,
    Extension(client): Extension<ClientAddr>,
) -> Response {
    if !status_allowed(&client, &s.settings.borrow().status_allow) {
        return (
            StatusCode::FORBIDDEN,
            "/status is served to this host only (vipr_status_allow names more networks)\n",
        )
            .into_response();
    }
    let peers = match peers(&s).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let vips: Vec<VipState> = s.vips.borrow().values().map(|v| (**v).clone()).collect();
    let alloc = s.pending.borrow().clone();
    Json(crate::status::build(
        &s.node,
        s.mode,
        *s.peers_known.borrow(),
        &peers,
        &vips,
        &alloc,
        &s.selected_out.borrow(),
    ))
    .into_response()
}

async fn readyz(AxState(s): AxState<AppState>) -> Response {
    let peers = match peers(&s).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if crate::status::ready(*s.peers_known.borrow(), &peers) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no peers known yet, or no established BGP session yet\n",
        )
            .into_response()
    }
}

/// Liveness: every long-lived task has turned over within [`crate::liveness::BOUND`].
async fn healthz(AxState(s): AxState<AppState>) -> (StatusCode, String) {
    match crate::liveness::verdict(&s.heartbeats) {
        None => (StatusCode::OK, "ok\n".into()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Binds the HTTP address (what the daemon does before starting anything else).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

/// A listener being served.
struct Serving {
    /// The address configured (port 0 stays 0: an unrelated reload must not move it).
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Serving {
    fn start(
        l: TcpListener,
        addr: SocketAddr,
        app: &Router,
        cancel: &CancellationToken,
    ) -> Serving {
        let bound = l.local_addr().unwrap_or(addr);
        info!(addr = %bound, "serving /metrics /healthz /readyz, and /status to this host");
        let stop = cancel.child_token();
        let task = tokio::spawn(listener::run(l, app.clone(), stop.clone()));
        Serving { addr, stop, task }
    }

    /// Closes the listener (the socket is closed when this returns).
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Serves on `first` (the address configured at start and its listener, bound by [`bind`];
/// `None` when off), then follows the HTTP section's address until cancelled.
pub async fn follow(
    mut section: watch::Receiver<Arc<HttpSettings>>,
    first: Option<(SocketAddr, TcpListener)>,
    state: AppState,
    cancel: CancellationToken,
) {
    let app = router(state);
    let mut current = first.map(|(addr, l)| Serving::start(l, addr, &app, &cancel));
    let mut failing: Option<SocketAddr> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = section.changed() => if r.is_err() {
                cancel.cancelled().await;
                break;
            },
            _ = tokio::time::sleep(RETRY), if failing.is_some() => {}
        }
        let want = section.borrow_and_update().addr;
        match move_to(want, &mut current, &app, &cancel).await {
            Ok(()) => failing = None,
            Err((addr, e)) => {
                if failing != Some(addr) {
                    error!(
                        %addr,
                        serving = ?current.as_ref().map(|s| s.addr),
                        error = %e,
                        retry_every = ?RETRY,
                        "prometheus_server: cannot listen on the new address; the current listener (serving) stays, trying again"
                    );
                }
                failing = Some(addr);
            }
        }
    }
    if let Some(s) = current {
        s.stop().await;
    }
}

/// Serves on `want` instead of `current`: binds it first, and closes the old listener only
/// once the new one is bound. The one exception is the same port on an overlapping address
/// (`0.0.0.0:2112` to `127.0.0.1:2112`), which cannot be bound while the old listener
/// holds it: the old one is closed first, and bound again if the new one still fails.
async fn move_to(
    want: Option<SocketAddr>,
    current: &mut Option<Serving>,
    app: &Router,
    cancel: &CancellationToken,
) -> Result<(), (SocketAddr, std::io::Error)> {
    let have = current.as_ref().map(|s| s.addr);
    let Some(addr) = want else {
        if let Some(s) = current.take() {
            s.stop().await;
            info!("HTTP endpoints off");
        }
        return Ok(());
    };
    if have == Some(addr) {
        return Ok(());
    }
    let l = match bind(addr) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && overlaps(have, addr) => {
            if let Some(s) = current.take() {
                s.stop().await;
            }
            match bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    *current =
                        have.and_then(|a| Some(Serving::start(bind(a).ok()?, a, app, cancel)));
                    return Err((addr, e));
                }
            }
        }
        Err(e) => return Err((addr, e)),
    };
    if let Some(s) = current.take() {
        s.stop().await;
    }
    *current = Some(Serving::start(l, addr, app, cancel));
    Ok(())
}

/// Whether a listener on `have` keeps `want` from being bound: same port, and one of them
/// on every address or both on the same one.
fn overlaps(have: Option<SocketAddr>, want: SocketAddr) -> bool {
    have.is_some_and(|h| {
        h.port() == want.port()
            && (h.ip().is_unspecified() || want.ip().is_unspecified() || h.ip() == want.ip())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, local: &str) -> ClientAddr {
        ClientAddr {
            peer: SocketAddr::new(peer.parse().unwrap(), 40000),
            local: SocketAddr::new(local.parse().unwrap(), 2112),
        }
    }

    #[test]
    fn status_is_for_this_host_and_the_allowed_networks() {
        let none: &[IpNet] = &[];
        assert!(status_allowed(&client("127.0.0.1", "127.0.0.1"), none));
        assert!(status_allowed(&client("::1", "::1"), none));
        assert!(status_allowed(
            &client("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
            none
        ));
        // This host connecting to its own address.
        assert!(status_allowed(
            &client("198.51.100.7", "198.51.100.7"),
            none
        ));
        assert!(!status_allowed(
            &client("198.51.100.8", "198.51.100.7"),
            none
        ));
        assert!(!status_allowed(&client("2001:db8::8", "2001:db8::7"), none));
        let allow = ["198.51.100.0/24".parse().unwrap()];
        assert!(status_allowed(
            &client("198.51.100.8", "198.51.100.7"),
            &allow
        ));
        assert!(!status_allowed(
            &client("203.0.113.8", "198.51.100.7"),
            &allow
        ));
    }

    #[test]
    fn overlapping_listeners() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(Some(a("0.0.0.0:2112")), a("127.0.0.1:2112")));
        assert!(overlaps(Some(a("127.0.0.1:2112")), a("0.0.0.0:2112")));
        assert!(!overlaps(Some(a("127.0.0.1:2112")), a("127.0.0.1:2113")));
        assert!(!overlaps(Some(a("127.0.0.1:2112")), a("192.0.2.1:2112")));
        assert!(!overlaps(None, a("127.0.0.1:2112")));
    }
}
