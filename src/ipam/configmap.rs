//! kube-vip-cloud-provider's ConfigMap (`kubevip` in `kube-system` by default) as vipr's
//! pools, with that provider's semantics (read from its source, HEAD d3522c6, 2026-02):
//!
//! - `cidr-<namespace>`, `cidr-global`: comma lists of prefixes; `range-<namespace>`,
//!   `range-global`: comma lists of `a-b`. For a Service in namespace N the pool is the first
//!   of `cidr-N`, `cidr-global`, `range-N`, `range-global` that exists; the others are not
//!   consulted, even when that one is exhausted.
//! - `allow-share-N` (else `allow-share-global`), Go's boolean spellings: Services of N may
//!   share an address when their ports do not overlap.
//! - `search-order: desc`: search from the highest address down.
//! - `skip-end-ips-in-cidr: "true"`: the first and last address of each IPv4 CIDR (/31 and
//!   /32 whole) are never handed out. Whatever it says, IPv4 addresses ending in .0 or .255
//!   are never handed out either (the provider's `FindFreeAddress`).
//! - `0.0.0.0/32` as a pool is the provider's DHCP workflow, which vipr does not do: that
//!   pool is refused with a reason.
//!
//! Pure: the ConfigMap's data in, pools out.

use std::collections::BTreeMap;

use super::pools::{Block, Pool, Skip};

/// The ConfigMap's data, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigMapPools {
    /// Where it came from, for messages (`kube-system/kubevip`).
    pub source: String,
    data: BTreeMap<String, String>,
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl ConfigMapPools {
    /// From the ConfigMap's `data`.
    pub fn new(source: String, data: BTreeMap<String, String>) -> ConfigMapPools {
        ConfigMapPools { source, data }
    }

    /// Whether it defines any pool at all.
    pub fn is_empty(&self) -> bool {
        !self
            .data
            .keys()
            .any(|k| k.starts_with("cidr-") || k.starts_with("range-"))
    }

    /// Every pool the ConfigMap defines, by key (for usage metrics): the global ones for
    /// every namespace, the others for theirs.
    pub fn pools(&self) -> Vec<(String, Result<Pool, String>)> {
        self.data
            .keys()
            .filter_map(|k| {
                let ns = k
                    .strip_prefix("cidr-")
                    .or_else(|| k.strip_prefix("range-"))?;
                // The pool a namespace-specific key gives its own namespace; a global key
                // for a namespace that has none of its own (any name that cannot be one).
                let asked = if ns == "global" { "\u{0}" } else { ns };
                let p = self
                    .pool_for(asked)
                    .map(|p| p.filter(|p| p.name.ends_with(k.as_str())));
                match p {
                    Ok(Some(p)) => Some((k.clone(), Ok(p))),
                    Ok(None) => None,
                    Err(e) => Some((k.clone(), Err(e))),
                }
            })
            .collect()
    }

    /// The pool for Services of `namespace`: `Ok(None)` when the ConfigMap has none for it,
    /// `Err` when the key that applies cannot be used (the message names it).
    pub fn pool_for(&self, namespace: &str) -> Result<Option<Pool>, String> {
        let keys = [
            format!("cidr-{namespace}"),
            "cidr-global".to_string(),
            format!("range-{namespace}"),
            "range-global".to_string(),
        ];
        let Some((key, value)) = keys
            .iter()
            .find_map(|k| self.data.get(k).map(|v| (k.as_str(), v.as_str())))
        else {
            return Ok(None);
        };
        let bad = |why: String| format!("{} key {key}: {why}", self.source);
        if value.trim() == "0.0.0.0/32" {
            return Err(bad(
                "0.0.0.0/32 is kube-vip's DHCP workflow, which vipr does not do; give addresses"
                    .into(),
            ));
        }
        let cidr = key.starts_with("cidr-");
        let mut blocks = Vec::new();
        for item in value.split(',').filter(|i| !i.trim().is_empty()) {
            let b = Block::parse(item).map_err(bad)?;
            match (cidr, b) {
                (true, Block::Cidr(_)) | (false, Block::Range(..)) => blocks.push(b),
                _ => {
                    return Err(bad(format!(
                        "{item:?} is not a {}",
                        if cidr { "CIDR" } else { "range a-b" }
                    )))
                }
            }
        }
        if blocks.is_empty() {
            return Ok(None);
        }
        let global = key.ends_with("-global");
        let share = self
            .data
            .get(&format!("allow-share-{namespace}"))
            .or_else(|| self.data.get("allow-share-global"))
            .and_then(|v| go_bool(v))
            .unwrap_or(false);
        Ok(Some(Pool {
            name: format!("{}:{key}", self.source),
            blocks,
            namespaces: (!global).then(|| [namespace.to_string()].into()),
            auto_assign: true,
            allow_share: share,
            skip: Skip {
                dot_zero_and_255: true,
                cidr_ends: self
                    .data
                    .get("skip-end-ips-in-cidr")
                    .is_some_and(|v| v == "true"),
            },
            descending: self.data.get("search-order").is_some_and(|v| v == "desc"),
            // kube-vip-cloud-provider's ConfigMap has no BGP settings: the global attributes.
            bgp: Default::default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(pairs: &[(&str, &str)]) -> ConfigMapPools {
        ConfigMapPools::new(
            "kube-system/kubevip".into(),
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn lookup_order_is_cidr_ns_cidr_global_range_ns_range_global() {
        let c = cm(&[
            ("cidr-apps", "198.51.100.0/28"),
            ("cidr-global", "203.0.113.0/28"),
            ("range-db", "192.0.2.10-192.0.2.20"),
            ("range-global", "192.0.2.100-192.0.2.120"),
        ]);
        let name = |ns: &str| c.pool_for(ns).unwrap().unwrap().name;
        assert_eq!(name("apps"), "kube-system/kubevip:cidr-apps");
        assert_eq!(name("default"), "kube-system/kubevip:cidr-global");
        // cidr-global comes before range-db, as in kube-vip-cloud-provider.
        assert_eq!(name("db"), "kube-system/kubevip:cidr-global");
        let r = cm(&[
            ("range-db", "192.0.2.10-192.0.2.20"),
            ("range-global", "192.0.2.100-192.0.2.120"),
        ]);
        let p = r.pool_for("db").unwrap().unwrap();
        assert_eq!(p.namespaces, Some(["db".to_string()].into()));
        assert_eq!(r.pool_for("x").unwrap().unwrap().namespaces, None);
        assert_eq!(cm(&[]).pool_for("x").unwrap(), None);
        assert!(cm(&[]).is_empty() && !r.is_empty());
    }

    #[test]
    fn share_search_order_and_skips() {
        let c = cm(&[
            ("cidr-global", "198.51.100.0/24,2001:db8::/120"),
            ("allow-share-apps", "T"),
            ("allow-share-global", "false"),
            ("search-order", "desc"),
            ("skip-end-ips-in-cidr", "true"),
        ]);
        let apps = c.pool_for("apps").unwrap().unwrap();
        let other = c.pool_for("other").unwrap().unwrap();
        assert!(apps.allow_share && !other.allow_share);
        assert!(apps.descending);
        assert_eq!(
            apps.first_free(true, 0, |_| false),
            Some("198.51.100.254".parse().unwrap())
        );
        assert!(!apps.contains("198.51.100.255".parse().unwrap()));
        assert_eq!(
            apps.first_free(false, 0, |_| false),
            Some("2001:db8::ff".parse().unwrap())
        );
    }

    #[test]
    fn bad_keys_and_dhcp_are_named() {
        let e = cm(&[("cidr-global", "0.0.0.0/32")])
            .pool_for("x")
            .unwrap_err();
        assert!(e.contains("cidr-global") && e.contains("DHCP"), "{e}");
        let e = cm(&[("cidr-global", "198.51.100.0/33")])
            .pool_for("x")
            .unwrap_err();
        assert!(e.contains("kube-system/kubevip key cidr-global"), "{e}");
        let e = cm(&[("range-global", "198.51.100.0/28")])
            .pool_for("x")
            .unwrap_err();
        assert!(e.contains("range"), "{e}");
    }
}
