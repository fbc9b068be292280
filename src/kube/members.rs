//! Which vipr nodes are running, and which of them makes a cluster write first.
//!
//! Every node computes the same writes for a Service (its claim, annotation, status, Event)
//! and the API server arbitrates, so correctness never depends on who writes. Cost does:
//! with three nodes each making every write, a burst of Services triples the load on the
//! API server, and every node's write but the first is a 409. So each node keeps a *member*
//! Lease (`vipr-node-<node>` in `vipr_claims_namespace`, label `vipr.io/member`, renewed
//! every [`RENEW`], deleted on shutdown), and for each Service the live members are ranked
//! by a hash of node and Service (rendezvous hashing: the same order on every node, spread
//! evenly, and a node leaving moves only its own share). The first writes at once; the
//! others wait [`BACKUP`] per rank and write only if the first has not (dead, cut off, or
//! slow). No election, no leader: a write nobody makes is late by one [`BACKUP`], never lost.

use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The label of member Leases (their watch selects on it).
pub const LABEL: &str = "vipr.io/member";
/// How often a node renews its member Lease.
pub const RENEW: Duration = Duration::from_secs(10);
/// How long a member Lease counts without renewal (seconds).
pub const DURATION_S: i32 = 30;
/// How long the next node in rank waits for the one before it.
pub const BACKUP: Duration = Duration::from_secs(1);

/// The member Lease's name: `vipr-node-<node>` (a long node name is shortened with a hash,
/// object names stop at 253 characters).
pub fn lease_name(node: &str) -> String {
    if node.len() <= 230 {
        format!("vipr-node-{node}")
    } else {
        format!("vipr-node-{}-{:016x}", &node[..200], hash(&[node]))
    }
}

/// A stable hash of some strings (turns, spreads, Event names).
pub(crate) fn hash(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// The member Leases as last seen: node and until when it counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members(Vec<(String, SystemTime)>);

impl Members {
    /// From the member Leases.
    pub fn from_leases<'a>(leases: impl Iterator<Item = &'a Lease>) -> Members {
        let mut out: Vec<(String, SystemTime)> = leases
            .filter_map(|l| {
                let s = l.spec.as_ref()?;
                let renewed = SystemTime::from(s.renew_time.as_ref()?.0);
                let secs = s.lease_duration_seconds.unwrap_or(DURATION_S).max(0) as u64;
                Some((
                    s.holder_identity.clone()?,
                    renewed + Duration::from_secs(secs),
                ))
            })
            .collect();
        out.sort();
        Members(out)
    }

    /// From `(node, counts until)` entries.
    pub fn from_entries(mut entries: Vec<(String, SystemTime)>) -> Members {
        entries.sort();
        Members(entries)
    }

    /// The `(node, counts until)` entries.
    pub fn entries(&self) -> &[(String, SystemTime)] {
        &self.0
    }

    /// This node's turn for the write keyed `key` among the members alive at `now`: 0
    /// writes first. A node always counts itself (its own Lease may not be seen yet).
    pub fn turn(&self, node: &str, key: &str, now: SystemTime) -> usize {
        let mine = hash(&[node, key]);
        self.0
            .iter()
            .filter(|(n, until)| n != node && *until > now)
            .filter(|(n, _)| {
                let theirs = hash(&[n, key]);
                (theirs, n.as_str()) > (mine, node)
            })
            .count()
    }

    /// When the next member still counted stops counting (its turns pass to the others).
    pub fn next_expiry(&self, now: SystemTime) -> Option<SystemTime> {
        self.0.iter().map(|(_, u)| *u).filter(|u| *u > now).min()
    }

    /// Whether any member Lease is known (none: every node writes as if alone).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How long this node waits before the write keyed `key`.
    pub fn delay(&self, node: &str, key: &str, now: SystemTime) -> Duration {
        BACKUP * self.turn(node, key, now) as u32
    }
}

fn lease(namespace: &str, node: &str, rv: Option<String>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(node)),
            namespace: Some(namespace.to_string()),
            resource_version: rv,
            labels: Some(
                [
                    (LABEL.to_string(), "true".to_string()),
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "vipr".to_string(),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(DURATION_S),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    }
}

async fn renew(api: &Api<Lease>, namespace: &str, node: &str) -> Result<(), kube::Error> {
    let name = lease_name(node);
    match api.get_opt(&name).await? {
        None => api
            .create(&PostParams::default(), &lease(namespace, node, None))
            .await
            .map(|_| ()),
        Some(l) => api
            .replace(
                &name,
                &PostParams::default(),
                &lease(namespace, node, l.metadata.resource_version),
            )
            .await
            .map(|_| ()),
    }
}

/// Keeps this node's member Lease renewed until `cancel`, then deletes it so that the
/// others take its turn at once. `written` counts each renewal.
pub async fn heartbeat(
    client: Client,
    namespace: String,
    node: String,
    written: impl Fn(bool),
    cancel: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let mut first = true;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), renew(&api, &namespace, &node)).await {
            Ok(Ok(())) => {
                written(true);
                if first {
                    info!(lease = %lease_name(&node), %namespace, "member Lease written: writes for Services are shared out among the nodes");
                    first = false;
                }
            }
            Ok(Err(e)) => {
                written(false);
                warn!(error = %e, "member Lease not renewed; retrying (every node then writes as if alone)");
            }
            Err(_) => {
                written(false);
                warn!("member Lease renewal timed out; retrying");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(RENEW) => {}
        }
    }
    let gone = tokio::time::timeout(
        Duration::from_secs(2),
        api.delete(&lease_name(&node), &DeleteParams::default()),
    )
    .await;
    debug!(ok = matches!(gone, Ok(Ok(_))), "member Lease deleted");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str], until: SystemTime) -> Members {
        Members(names.iter().map(|n| (n.to_string(), until)).collect())
    }

    #[test]
    fn each_write_has_exactly_one_first_node_and_the_order_is_shared() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let m = members(&["node1", "node2", "node3"], now + Duration::from_secs(10));
        let mut firsts = [0usize; 3];
        for k in 0..300 {
            let key = format!("uid-{k}");
            let mut turns: Vec<usize> = ["node1", "node2", "node3"]
                .iter()
                .map(|n| m.turn(n, &key, now))
                .collect();
            firsts[turns.iter().position(|t| *t == 0).unwrap()] += 1;
            turns.sort();
            assert_eq!(turns, vec![0, 1, 2], "{key}");
        }
        // Spread out: each node goes first for a fair share.
        assert!(firsts.iter().all(|f| *f > 60), "{firsts:?}");
        // An expired member no longer takes a turn: the others move up.
        let m = Members(vec![
            ("node1".into(), now - Duration::from_secs(1)),
            ("node2".into(), now + Duration::from_secs(10)),
            ("node3".into(), now + Duration::from_secs(20)),
        ]);
        for k in 0..50 {
            let key = format!("uid-{k}");
            assert_eq!(m.turn("node2", &key, now) + m.turn("node3", &key, now), 1);
        }
        assert_eq!(m.next_expiry(now), Some(now + Duration::from_secs(10)));
        // Alone, or with no member Lease seen: first.
        assert_eq!(Members::default().turn("node9", "k", now), 0);
    }

    #[test]
    fn from_leases_reads_holder_and_expiry() {
        let l = lease("kube-system", "node1", None);
        let m = Members::from_leases([l].iter());
        assert_eq!(m.0.len(), 1);
        assert_eq!(m.0[0].0, "node1");
        assert!(m.0[0].1 > SystemTime::now() + Duration::from_secs(20));
        assert_eq!(lease_name("node1"), "vipr-node-node1");
        assert!(lease_name(&"n".repeat(300)).len() <= 253);
    }
}
