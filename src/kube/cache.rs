//! Compact caches fed by watch events: each object is read into the little vipr needs the
//! moment it arrives (a [`super::services::SvcRecord`], a [`Ready`] for an endpoint object
//! with a ready endpoint, a claim) and the object itself is dropped, so memory follows what vipr uses, not the size
//! of the objects (a plain reflector keeps every Service and every endpoint whole, with
//! managedFields). Each event says what it changed, so the caller's work follows the
//! change. A relist (after a watch expired or at start) is a mark-and-sweep: only objects
//! that differ, appeared or vanished come out as changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kube::runtime::watcher::Event;
use kube::ResourceExt;

/// One change: the key (`namespace/name`), the old value and the new one (never equal).
#[derive(Debug, Clone, PartialEq)]
pub struct Change<V> {
    /// `namespace/name` of the object: the cache's own key, shared (not copied) by whoever
    /// keeps it.
    pub key: Arc<str>,
    /// Before.
    pub old: Option<V>,
    /// After.
    pub new: Option<V>,
}

/// The values read from one kind of object, by `namespace/name`.
#[derive(Debug)]
pub struct Cache<V> {
    items: HashMap<Arc<str>, V>,
    /// During a relist: the keys listed so far.
    relist: Option<HashSet<Arc<str>>>,
    /// A complete list has been seen.
    synced: bool,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Cache {
            items: HashMap::new(),
            relist: None,
            synced: false,
        }
    }
}

fn key<K: kube::Resource>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

impl<V: PartialEq + Clone> Cache<V> {
    /// Applies one watch event; `read` turns an object into what is kept (`None`: nothing,
    /// as if the object were absent). Returns what changed.
    pub fn apply<K: kube::Resource>(
        &mut self,
        ev: Event<K>,
        read: impl Fn(&K) -> Option<V>,
    ) -> Vec<Change<V>> {
        match ev {
            Event::Apply(o) => self.set(&key(&o), read(&o)).into_iter().collect(),
            Event::Delete(o) => self.set(&key(&o), None).into_iter().collect(),
            Event::Init => {
                self.relist = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(o) => {
                let k = key(&o);
                let ch = self.set(&k, read(&o));
                if let Some(seen) = &mut self.relist {
                    let k = match self.items.get_key_value(k.as_str()) {
                        Some((kept, _)) => kept.clone(),
                        None => k.into(),
                    };
                    seen.insert(k);
                }
                ch.into_iter().collect()
            }
            Event::InitDone => {
                self.synced = true;
                let Some(seen) = self.relist.take() else {
                    return Vec::new();
                };
                let gone: Vec<Arc<str>> = self
                    .items
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .filter_map(|k| self.set(&k, None))
                    .collect()
            }
        }
    }

    /// Sets one value; the key kept (and handed out in the change) is the one first
    /// stored, so every holder of this object's key shares one string.
    fn set(&mut self, key: &str, new: Option<V>) -> Option<Change<V>> {
        let (key, old) = match &new {
            Some(v) => {
                let key = match self.items.get_key_value(key) {
                    Some((_, old)) if old == v => return None,
                    Some((k, _)) => k.clone(),
                    None => Arc::from(key),
                };
                let old = self.items.insert(key.clone(), v.clone());
                (key, old)
            }
            None => {
                let (key, old) = self.items.remove_entry(key)?;
                (key, Some(old))
            }
        };
        Some(Change { key, old, new })
    }

    /// A complete list has been seen (the cache is usable).
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Counts as synced without a list (the kind may not be read: going on without it).
    pub fn assume_synced(&mut self) {
        self.synced = true;
    }

    /// One value.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.items.get(key)
    }

    /// The key kept for `key`, to share rather than copy.
    pub fn key_of(&self, key: &str) -> Option<Arc<str>> {
        self.items.get_key_value(key).map(|(k, _)| k.clone())
    }

    /// Every value.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.items.values()
    }

    /// How many objects are kept.
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// What is kept of an endpoint object that has a ready endpoint: the Service it belongs to
/// (`namespace/name`) and whether one of them is on this node. An object without a ready
/// endpoint is not kept at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// `namespace/name` of the Service.
    pub service: Arc<str>,
    /// A ready endpoint is on this node.
    pub here: bool,
}

/// Which Services have a ready endpoint (on this node, or anywhere: one counter each), from
/// the endpoint objects kept as one entry each: a Service may have several slices, so this
/// counts them.
#[derive(Debug, Default)]
pub struct ReadyCount {
    slices: HashMap<Arc<str>, u32>,
}

impl ReadyCount {
    /// Applies a change of one endpoint object, given the Service it made ready before and
    /// the one it makes ready now; returns the Services whose readiness flipped.
    pub fn apply(&mut self, old: Option<&Arc<str>>, new: Option<&Arc<str>>) -> Vec<Arc<str>> {
        let mut flipped = Vec::new();
        if let Some(svc) = old {
            if let Some(n) = self.slices.get_mut(svc) {
                *n -= 1;
                if *n == 0 {
                    self.slices.remove(svc);
                    flipped.push(svc.clone());
                }
            }
        }
        if let Some(svc) = new {
            let n = self.slices.entry(svc.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                match flipped.iter().position(|f| f == svc) {
                    Some(i) => {
                        flipped.remove(i); // moved from one slice to another: no flip
                    }
                    None => flipped.push(svc.clone()),
                }
            }
        }
        flipped
    }

    /// Whether the Service has a ready endpoint.
    pub fn has(&self, svc: &str) -> bool {
        self.slices.contains_key(svc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(name: &str, v: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": name}, "data": {"v": v}
        }))
        .unwrap()
    }

    fn read(c: &ConfigMap) -> Option<String> {
        c.data.as_ref()?.get("v").filter(|v| !v.is_empty()).cloned()
    }

    #[test]
    fn changes_only_when_the_kept_value_changes_and_relists_sweep() {
        let mut c: Cache<String> = Cache::default();
        assert_eq!(c.apply(Event::Apply(cm("a", "1")), read).len(), 1);
        assert!(
            c.apply(Event::Apply(cm("a", "1")), read).is_empty(),
            "same value"
        );
        assert!(
            c.apply(Event::Apply(cm("b", "")), read).is_empty(),
            "nothing kept"
        );
        assert_eq!(c.apply(Event::Apply(cm("b", "2")), read).len(), 1);
        // Relist: a unchanged, b gone, c new.
        assert!(c.apply(Event::<ConfigMap>::Init, read).is_empty());
        assert!(c.apply(Event::InitApply(cm("a", "1")), read).is_empty());
        assert_eq!(
            c.apply(Event::InitApply(cm("c", "3")), read),
            vec![Change {
                key: "ns/c".into(),
                old: None,
                new: Some("3".into())
            }]
        );
        assert!(!c.synced());
        assert_eq!(
            c.apply(Event::<ConfigMap>::InitDone, read),
            vec![Change {
                key: "ns/b".into(),
                old: Some("2".into()),
                new: None
            }]
        );
        assert!(c.synced());
        assert_eq!(c.len(), 2);
        assert_eq!(c.apply(Event::Delete(cm("a", "1")), read).len(), 1);
        assert!(c.get("ns/a").is_none());
    }

    #[test]
    fn readiness_counts_slices() {
        let mut l = ReadyCount::default();
        let web: Arc<str> = "ns/web".into();
        assert_eq!(l.apply(None, Some(&web)), vec![web.clone()]);
        assert!(l.apply(None, Some(&web)).is_empty(), "second slice");
        assert!(l.apply(Some(&web), None).is_empty(), "one left");
        assert!(l.has("ns/web"));
        assert_eq!(l.apply(Some(&web), None), vec![web.clone()]);
        assert!(!l.has("ns/web"));
    }
}
