//! Restart in place (RFC 4724, vipr as the restarting speaker): telling an upgrade apart
//! from a shutdown, and telling the next process that it follows one. Files only, no
//! network.
//!
//! - **Restart in place** — SIGUSR2, or SIGTERM while `<vipr_state_dir>/upgrade-intent` is
//!   fresh (written by the upgrade path just before it stops vipr, e.g. a preStop hook;
//!   honoured for [`INTENT_MAX_AGE`] and consumed), or SIGTERM of a static pod whose
//!   manifest changed since it started ([`StaticPodManifest`]: the kubelet is replacing it
//!   on this node), or of a DaemonSet pod during a rolling update ([`crate::kube::rollout`]).
//!   BGP mode only. BGP sessions are closed
//!   without NOTIFICATION and without withdrawals, the VIPs stay on the node (IPVS keeps
//!   forwarding), and `<vipr_state_dir>/restarting` records the time. Peers that do
//!   graceful restart keep the routes as stale; peers that do not drop them at once.
//! - **The next process** finds `restarting` (no older than the graceful restart time),
//!   deletes it, sets the Restart State bit in the first OPEN of each session, adopts the
//!   VIPs, and sends everything before End-of-RIB.
//! - **Anything else** (SIGTERM without intent, SIGINT, node drain) is a real shutdown:
//!   withdraw at once, Cease, remove the VIPs. A dead node never keeps attracting traffic
//!   for the restart time because it was told to stop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Written by the upgrade path to make the next SIGTERM a restart in place.
pub const UPGRADE_INTENT: &str = "upgrade-intent";
/// Written by a process that restarts in place, read by the next one.
pub const MARKER: &str = "restarting";
/// How long an upgrade intent stays valid: a forgotten file must not turn a later node
/// drain into a restart.
pub const INTENT_MAX_AGE: Duration = Duration::from_secs(60);

/// Set when this process is to restart in place rather than shut down.
#[derive(Debug, Clone, Default)]
pub struct RestartInPlace(Arc<AtomicBool>);

impl RestartInPlace {
    /// Asks for a restart in place at the coming shutdown.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a restart in place was asked for.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

fn age(path: &Path) -> Option<Duration> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(m).unwrap_or_default())
}

/// At SIGTERM: whether the upgrade path asked for a restart in place. The intent file is
/// removed either way.
pub fn upgrade_intent(state_dir: &Path) -> bool {
    let p = state_dir.join(UPGRADE_INTENT);
    let fresh = age(&p).is_some_and(|a| a <= INTENT_MAX_AGE);
    let _ = std::fs::remove_file(&p);
    fresh
}

/// The static pod manifest this process runs from (`vipr_static_pod_manifest`, the
/// kubelet's `--pod-manifest-path` mounted read-only), as it was when the process started.
/// The kubelet replaces a static pod whose manifest changed (a new image tag, new flags):
/// it stops the old pod and starts the new one on the same node, so a SIGTERM that finds
/// the manifest changed is an upgrade. A removed manifest (the pod is being taken away), an
/// unchanged one (the node or the kubelet shutting down) or one that cannot be read or
/// parsed is a real shutdown. Compared as parsed YAML, so an edit of comments or layout,
/// which the kubelet does not act on, changes nothing.
#[derive(Debug, Clone)]
pub struct StaticPodManifest {
    path: PathBuf,
    started_from: Option<serde_json::Value>,
}

impl StaticPodManifest {
    /// Reads the manifest at the start.
    pub fn read(path: &Path) -> StaticPodManifest {
        StaticPodManifest {
            path: path.to_path_buf(),
            started_from: parse_manifest(path),
        }
    }

    /// At SIGTERM: why this is an upgrade (the manifest changed since the start), or `None`.
    pub fn changed(&self) -> Option<String> {
        let before = self.started_from.as_ref()?;
        let now = parse_manifest(&self.path)?;
        (now != *before).then(|| {
            format!(
                "the static pod's manifest {} changed since this vipr started: the kubelet is replacing it",
                self.path.display()
            )
        })
    }
}

fn parse_manifest(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_saphyr::from_str(&text)
        .ok()
        .filter(|v: &serde_json::Value| v.is_object())
}

/// The exiting process: records the restart (the time, in seconds since the epoch).
pub fn write_marker(state_dir: &Path) -> std::io::Result<()> {
    crate::statedir::prepare(state_dir).map_err(std::io::Error::other)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    crate::statedir::replace(&state_dir.join(MARKER), &format!("{now}\n"))
}

/// The starting process: whether it follows a restart in place no older than `max_age`
/// (the graceful restart time; zero when graceful restart is off). The marker is removed
/// either way, so only the first start after a restart sees it.
pub fn take_marker(state_dir: &Path, max_age: Duration) -> bool {
    let p = state_dir.join(MARKER);
    let Ok(text) = crate::statedir::read(&p) else {
        return false;
    };
    let _ = std::fs::remove_file(&p);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    match text.trim().parse::<u64>() {
        Ok(t) => t <= now && now - t <= max_age.as_secs() && !max_age.is_zero(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "vipr-restart-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn marker_is_taken_once_and_only_within_the_restart_time() {
        let d = dir();
        assert!(!take_marker(&d, Duration::from_secs(120)));
        write_marker(&d).unwrap();
        assert!(take_marker(&d, Duration::from_secs(120)));
        assert!(!take_marker(&d, Duration::from_secs(120)), "consumed");
        write_marker(&d).unwrap();
        assert!(!take_marker(&d, Duration::ZERO), "graceful restart off");
        assert!(!d.join(MARKER).exists());
        std::fs::write(d.join(MARKER), "100\n").unwrap();
        assert!(!take_marker(&d, Duration::from_secs(120)), "too old");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn upgrade_intent_is_consumed() {
        let d = dir();
        std::fs::create_dir_all(&d).unwrap();
        assert!(!upgrade_intent(&d));
        std::fs::write(d.join(UPGRADE_INTENT), "").unwrap();
        assert!(upgrade_intent(&d));
        assert!(!upgrade_intent(&d));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_static_pod_is_upgraded_only_when_its_manifest_changed() {
        let d = dir();
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("vipr.yaml");
        let pod = |image: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: vipr\nspec:\n  containers:\n  - name: vipr\n    image: {image}\n")
        };
        std::fs::write(&f, pod("vipr:1")).unwrap();
        let m = StaticPodManifest::read(&f);
        // Unchanged (a node shutdown), or only comments and layout changed: a real stop.
        assert_eq!(m.changed(), None);
        std::fs::write(
            &f,
            format!("# upgraded later\n{}", pod("vipr:1"))
                .replace("  name: vipr\nspec", "  name:   vipr\nspec"),
        )
        .unwrap();
        assert_eq!(m.changed(), None);
        // A new image tag: the kubelet replaces the pod here.
        std::fs::write(&f, pod("vipr:2")).unwrap();
        assert!(m.changed().unwrap().contains("vipr.yaml"));
        // Broken or removed: a real stop.
        std::fs::write(&f, "spec: [").unwrap();
        assert_eq!(m.changed(), None);
        std::fs::remove_file(&f).unwrap();
        assert_eq!(m.changed(), None);
        // Nothing to compare with (no manifest at the start): never an upgrade.
        let none = StaticPodManifest::read(&f);
        std::fs::write(&f, pod("vipr:2")).unwrap();
        assert_eq!(none.changed(), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn request_is_shared_between_clones() {
        let r = RestartInPlace::default();
        let c = r.clone();
        assert!(!c.requested());
        r.request();
        assert!(c.requested());
    }
}
