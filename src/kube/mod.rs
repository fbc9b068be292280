//! Kubernetes: the client (in-cluster service account, else `k8s_config_file`, else
//! `KUBECONFIG`), the Service/endpoint watcher that feeds the reconciler, and the Lease
//! shell of leader election. Everything that talks to the API server retries with backoff
//! and never takes routes away because the API server is unreachable.

pub mod elections;
pub mod lease;
pub mod services;
pub mod watch;

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Errors building the client.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No usable configuration.
    #[error("no Kubernetes configuration: not in a cluster, {path} unreadable ({reason}), and no KUBECONFIG")]
    NoConfig {
        /// The kubeconfig path tried.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// The client could not be built.
    #[error("Kubernetes client: {0}")]
    Client(String),
}

/// Builds a client: in-cluster when a service account is mounted, otherwise the given
/// kubeconfig, otherwise the usual `KUBECONFIG` / `~/.kube/config`.
pub async fn client(kubeconfig: &Path) -> Result<kube::Client, KubeError> {
    let cfg = match kube::Config::incluster() {
        Ok(c) => c,
        Err(_) => match Kubeconfig::read_from(kubeconfig) {
            Ok(kc) => kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| KubeError::Client(e.to_string()))?,
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
