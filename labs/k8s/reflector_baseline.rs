//! The anchor of `labs/bench-scale.sh`: a plain kube-rs reflector with default settings over
//! every Service and every core/v1 Endpoints object, which is what a straightforward
//! controller holds. Prints the time to sync and the RSS after it, then idles for the CPU
//! measurement until killed.
//!
//!   reflector_baseline KUBECONFIG

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).expect("KUBECONFIG");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(path)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(cfg)?;
    let t0 = Instant::now();
    let (svcs, w1) = reflector::store::<Service>();
    let (eps, w2) = reflector::store::<Endpoints>();
    let s1 = reflector::reflector(
        w1,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .applied_objects()
    .for_each(|_| futures::future::ready(()));
    let s2 = reflector::reflector(
        w2,
        watcher(Api::<Endpoints>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .applied_objects()
    .for_each(|_| futures::future::ready(()));
    tokio::spawn(s1);
    tokio::spawn(s2);
    svcs.wait_until_ready().await?;
    eps.wait_until_ready().await?;
    println!(
        "synced {} Services {} Endpoints in {:.2} s, rss {} KiB",
        svcs.state().len(),
        eps.state().len(),
        t0.elapsed().as_secs_f64(),
        rss_kib()
    );
    futures::future::pending::<()>().await;
    Ok(())
}
