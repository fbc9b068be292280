//! The control-plane health check that gates its route (kube-vip's
//! `control_plane_health_check_*`, kube-vip #1145): advertise only after the first success,
//! withdraw after `failure_threshold` consecutive failures, re-advertise on recovery.
//! [`Gate`] is the pure counter; [`run`] polls the URL and publishes the result;
//! [`supervise`] follows the control-plane section and runs the check it names.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use std::sync::Arc;

use crate::config::{ControlPlane, HealthCheck};
use crate::model::Health;

/// Turns individual check results into the gate state.
#[derive(Debug, Clone)]
pub struct Gate {
    threshold: u32,
    failures: u32,
    state: Health,
}

impl Gate {
    /// A gate that has seen nothing yet.
    pub fn new(threshold: u32) -> Gate {
        Gate {
            threshold: threshold.max(1),
            failures: 0,
            state: Health::Unknown,
        }
    }

    /// Records one check result and returns the state.
    pub fn observe(&mut self, ok: bool) -> Health {
        if ok {
            self.failures = 0;
            self.state = Health::Up;
        } else {
            self.failures = self.failures.saturating_add(1);
            if self.state == Health::Up && self.failures >= self.threshold {
                self.state = Health::Down;
            }
        }
        self.state
    }
}

/// One GET; success is any 2xx within the timeout. A failure names its cause, down to the
/// TLS verification error (reqwest's own text stops at "error sending request").
async fn check(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<(), String> {
    match client.get(url).timeout(timeout).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) if e.is_timeout() => Err(format!("timed out after {timeout:?}")),
        Err(e) => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                let c_text = c.to_string();
                if !text.contains(&c_text) {
                    text = format!("{text}: {c_text}");
                }
                cause = c.source();
            }
            Err(text)
        }
    }
}

/// The check's HTTP client. With a CA (`control_plane_health_check_ca_path`) the server's
/// certificate must chain to it and name the URL's host (kube-vip v1.2.3
/// `pkg/cluster/cluster.go` `newHealthCheckHTTPClient`, which adds the CA to the system
/// pool; vipr trusts only the given CA: the target is the local API server). Without one,
/// certificates are not verified: the API server's CA is its own.
fn client(cfg: &HealthCheck) -> Result<reqwest::Client, String> {
    let b = reqwest::Client::builder().no_proxy();
    let b = match &cfg.ca {
        Some(ca) => {
            let certs = reqwest::Certificate::from_pem_bundle(&ca.pem)
                .map_err(|e| format!("{}: {e}", ca.path.display()))?;
            b.tls_certs_only(certs)
        }
        None => b.tls_danger_accept_invalid_certs(true),
    };
    b.build().map_err(|e| e.to_string())
}

/// Polls the health URL until cancelled.
pub async fn run(cfg: HealthCheck, tx: watch::Sender<Health>, cancel: CancellationToken) {
    let client = match client(&cfg) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot build the health check client; control-plane route stays withdrawn");
            return;
        }
    };
    let mut gate = Gate::new(cfg.failure_threshold);
    let mut ticker = tokio::time::interval(cfg.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = check(&client, &cfg.url, cfg.timeout).await;
        let before = gate.state;
        let now = gate.observe(result.is_ok());
        if now != before {
            match &result {
                Ok(()) => info!(url = %cfg.url, "control plane healthy: advertising its VIP"),
                Err(e) => {
                    warn!(url = %cfg.url, error = %e, failures = cfg.failure_threshold, "control plane unhealthy: withdrawing its VIP")
                }
            }
        } else if let Err(e) = &result {
            warn!(url = %cfg.url, error = %e, "control-plane health check failed");
        }
        tx.send_if_modified(|h| {
            let changed = *h != now;
            *h = now;
            changed
        });
    }
}

/// Runs the check of the current control-plane section, restarting it when the check
/// changes; `NotChecked` without one.
pub async fn supervise(
    cp: tokio::sync::watch::Receiver<Arc<ControlPlane>>,
    tx: watch::Sender<Health>,
    cancel: CancellationToken,
) {
    crate::follow::follow(
        cp,
        |c| c.health.clone(),
        |check, token| {
            let tx = tx.clone();
            async move {
                match check {
                    Some(h) => {
                        tx.send_replace(Health::Unknown);
                        run(h, tx, token).await;
                    }
                    None => {
                        tx.send_replace(Health::NotChecked);
                    }
                }
            }
        },
        cancel,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_success_then_threshold_then_recovery() {
        let mut g = Gate::new(3);
        assert_eq!(
            g.observe(false),
            Health::Unknown,
            "failures before any success keep it withdrawn"
        );
        assert_eq!(g.observe(true), Health::Up);
        assert_eq!(g.observe(false), Health::Up);
        assert_eq!(g.observe(false), Health::Up);
        assert_eq!(g.observe(false), Health::Down);
        assert_eq!(g.observe(false), Health::Down);
        assert_eq!(g.observe(true), Health::Up);
        assert_eq!(g.observe(false), Health::Up, "the count starts again");
    }
}
