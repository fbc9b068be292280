//! Kubernetes: the client (in-cluster service account, else `k8s_config_file`, else
//! `KUBECONFIG`), the Service/endpoint watcher that feeds the reconciler, and the Lease
//! shell of leader election. Everything that talks to the API server retries with backoff
//! and never takes routes away because the API server is unreachable.

pub mod annotations;
pub mod apiserver;
pub mod cache;
pub mod claims;
pub mod cluster;
pub mod elections;
pub mod labels;
pub mod lease;
pub mod members;
pub mod node;
pub mod placement;
pub mod rollout;
pub mod secret;
pub mod service_leases;
pub mod services;
pub mod watch;
pub mod writer;

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Errors building the client.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No usable configuration.
    #[error("k8s_config_file={path}: unreadable ({reason}); not in a cluster and no KUBECONFIG")]
    NoConfig {
        /// The kubeconfig path tried.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// The client could not be built (e.g. a kubeconfig without a usable cluster or user).
    #[error("k8s_config_file: no usable Kubernetes client: {0}")]
    Client(String),
}

/// Builds a client: in-cluster when a service account is mounted, otherwise the given
/// kubeconfig, otherwise the usual `KUBECONFIG` / `~/.kube/config`; a kubeconfig's server
/// is replaced as [`apiserver::api_override`] says.
pub async fn client(
    kubeconfig: &Path,
    cp: &crate::config::ControlPlane,
    kubernetes_addr: Option<&hyper::Uri>,
) -> Result<kube::Client, KubeError> {
    let cfg = match kube::Config::incluster() {
        Ok(c) => c,
        Err(_) => match Kubeconfig::read_from(kubeconfig) {
            Ok(kc) => {
                let mut c = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| KubeError::Client(e.to_string()))?;
                if let Some(o) =
                    apiserver::api_override(kubeconfig, &c.cluster_url, cp, kubernetes_addr)
                {
                    tracing::info!(
                        kubeconfig = %kubeconfig.display(),
                        server = %c.cluster_url,
                        using = %o.url,
                        tls_server_name = o.tls_server_name.as_deref().unwrap_or(""),
                        "talking to this API server instead of the kubeconfig's (kube-vip's behaviour on control-plane nodes)"
                    );
                    c.cluster_url = o.url;
                    // A tls-server-name the kubeconfig gives is kept.
                    if c.tls_server_name.is_none() {
                        c.tls_server_name = o.tls_server_name;
                    }
                }
                c
            }
            Err(e) => kube::Config::from_kubeconfig(&KubeConfigOptions::default())
                .await
                .map_err(|_| KubeError::NoConfig {
                    path: kubeconfig.display().to_string(),
                    reason: e.to_string(),
                })?,
        },
    };
    let mut cfg = cfg;
    cfg.connect_timeout = Some(std::time::Duration::from_secs(5));
    kube::Client::try_from(cfg).map_err(|e| KubeError::Client(e.to_string()))
}

/// Delays between attempts to (re)establish a watch: 0.5 s doubling up to 5 s, each
/// shortened by up to a quarter at random (so nodes do not retry in step), back to 0.5 s
/// after any success ([`kube::runtime::utils::StreamBackoff`] resets on every item).
/// kube-rs' default (client-go's) grows to 30 s, so after an API server outage vipr would
/// ignore Service changes for up to half a minute; one attempt per node every 5 s is
/// nothing for an API server, and polling continues meanwhile where it matters (Leases).
pub struct WatchBackoff {
    next: std::time::Duration,
}

impl WatchBackoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(500);
    const MAX: std::time::Duration = std::time::Duration::from_secs(5);

    /// A fresh schedule.
    pub fn new() -> WatchBackoff {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        use std::hash::{BuildHasher, Hasher};
        let d = self.next;
        self.next = (d * 2).min(Self::MAX);
        // RandomState is seeded randomly: a cheap source of jitter.
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Some(d.mul_f64(1.0 - (r % 1000) as f64 / 4000.0))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;
    use std::time::Duration;

    #[test]
    fn watch_backoff_doubles_to_five_seconds_with_jitter_and_resets() {
        let mut b = WatchBackoff::new();
        let d: Vec<Duration> = b.by_ref().take(6).collect();
        let nominal = [500, 1000, 2000, 4000, 5000, 5000];
        for (got, ms) in d.iter().zip(nominal) {
            let ms = Duration::from_millis(ms);
            assert!(*got <= ms && *got >= ms * 3 / 4, "{d:?}");
        }
        b.reset();
        assert!(b.next().unwrap() <= Duration::from_millis(500));
    }
}
