//! The HTTP endpoints on `prometheus_server` (default `:2112`): `/metrics`, `/healthz`,
//! `/readyz`, `/status`. Read-only views of the speaker and the reconciler. The listener
//! follows the HTTP section: a new address is bound at once, the old one closed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State as AxState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bgp::Speaker;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::HttpSettings;
use crate::model::{Health, VipState};

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
    /// Control-plane health.
    pub health: watch::Receiver<Health>,
    /// Node name.
    pub node: String,
    /// `bgp` or `arp`.
    pub mode: &'static str,
    /// The peer source (static config or a provider) has answered.
    pub peers_known: watch::Receiver<bool>,
}

async fn metrics(AxState(s): AxState<AppState>) -> Response {
    let peers = s.speaker.peers().await.unwrap_or_default();
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
            &vips,
            &alloc,
            &s.writes.snapshot(),
            s.work.snapshot(),
            healthy,
        ),
    )
        .into_response()
}

async fn status(AxState(s): AxState<AppState>) -> Json<crate::status::Status> {
    let peers = s.speaker.peers().await.unwrap_or_default();
    let vips: Vec<VipState> = s.vips.borrow().values().map(|v| (**v).clone()).collect();
    let alloc = s.pending.borrow().clone();
    Json(crate::status::build(
        &s.node,
        s.mode,
        *s.peers_known.borrow(),
        &peers,
        &vips,
        &alloc,
    ))
}

async fn readyz(AxState(s): AxState<AppState>) -> (StatusCode, &'static str) {
    let peers = s.speaker.peers().await.unwrap_or_default();
    if crate::status::ready(*s.peers_known.borrow(), &peers) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no peers known yet, or no established BGP session yet\n",
        )
    }
}

/// Serves on the address of the HTTP section (nothing when it is off), rebinding when it
/// changes, until cancelled.
pub async fn follow(
    section: watch::Receiver<Arc<HttpSettings>>,
    state: AppState,
    cancel: CancellationToken,
) {
    crate::follow::follow(
        section,
        |h| h.addr,
        |addr, token| {
            let state = state.clone();
            async move {
                if let Some(addr) = addr {
                    serve(addr, state, token).await;
                }
            }
        },
        cancel,
    )
    .await
}

/// Serves until cancelled. A bind failure is logged and the daemon goes on without HTTP.
pub async fn serve(addr: SocketAddr, state: AppState, cancel: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            warn!(%addr, error = %e, "cannot serve /metrics and /status");
            return;
        }
    };
    info!(%addr, "serving /metrics /status /healthz /readyz");
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await;
}
