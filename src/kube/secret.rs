//! The Secrets configured peers take their TCP MD5 password from (`password_secret`): each
//! followed by a watch on its name (`metadata.name=`, so RBAC can grant that one object),
//! with backoff; the last value stays while the API server is away. Values are
//! [`bgp::Secret`]s, never formatted; errors name the Secret, not its data.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// A Secret's keys; `None` until read, or when it does not exist.
pub type Keys = Option<Arc<BTreeMap<String, bgp::Secret>>>;

/// The followed Secrets by `(namespace, name)`.
pub type Values = BTreeMap<(String, String), Keys>;

/// Follows Secret `namespace/name` into `tx[(namespace, name)]` until cancelled. Keys that
/// are not UTF-8 text are left out (an MD5 key is text here).
pub async fn follow(
    client: Client,
    namespace: String,
    name: String,
    tx: watch::Sender<Values>,
    cancel: CancellationToken,
) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, cfg).default_backoff().boxed();
    let id = (namespace, name);
    // Whether the current (re)list found the Secret: an empty list means it does not exist.
    let mut listed = false;
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.next() => match ev { Some(e) => e, None => return },
        };
        let new: Keys = match ev {
            Ok(watcher::Event::Apply(s)) | Ok(watcher::Event::InitApply(s)) => {
                listed = true;
                Some(Arc::new(
                    s.data
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|(k, v)| {
                            Some((k, bgp::Secret::new(String::from_utf8(v.0).ok()?)))
                        })
                        .collect(),
                ))
            }
            Ok(watcher::Event::Delete(_)) => None,
            Ok(watcher::Event::Init) => {
                listed = false;
                continue;
            }
            Ok(watcher::Event::InitDone) if !listed => None,
            Ok(watcher::Event::InitDone) => continue,
            Err(e) => {
                warn!(secret = %format!("{}/{}", id.0, id.1), error = %e, "Secret watch failed; retrying (keeping the last value)");
                continue;
            }
        };
        tx.send_if_modified(|cur| {
            let changed = cur.get(&id) != Some(&new);
            if changed {
                cur.insert(id.clone(), new);
            }
            changed
        });
    }
}
