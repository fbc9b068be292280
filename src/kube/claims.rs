//! Address claims as coordination.k8s.io/v1 Leases: one per address, named after it
//! (`vipr-addr-198-51-100-10`, `vipr-addr-2001-db8--10`), in `vipr_claims_namespace`, created
//! atomically (the loser of a race gets 409 AlreadyExists), replaced and deleted only
//! conditionally on their resourceVersion. The holders (the Services, by namespace, name and
//! UID) are in an annotation; `spec.holderIdentity` names the first for `kubectl`.
//!
//! Why not ownerReferences from the claim to its Service: Kubernetes' garbage collector
//! treats an owner in another namespace as absent and deletes the dependent at once, and a
//! claim must live in one namespace for its name to be unique across the cluster. Every
//! vipr instead releases the claims of Services it no longer finds (checked with a GET
//! against the API server, not its cache) as soon as its caches are synced, before it
//! allocates anything.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::ipam::{Claim, Holder};

/// The label every claim carries (its watch selects on it).
pub const LABEL: &str = "vipr.io/address-claim";
/// The annotation with the address (the name is a lossless encoding of it, this is for
/// people).
pub const ANNOTATION_ADDRESS: &str = "vipr.io/address";
/// The pool the address was claimed from.
pub const ANNOTATION_POOL: &str = "vipr.io/pool";
/// `namespace/name/uid` of each holder, comma separated.
pub const ANNOTATION_HOLDERS: &str = "vipr.io/holders";

/// The claim's object name: the canonical address text with `.` and `:` as `-`, which keeps
/// it a valid DNS name and unique per address.
pub fn name(ip: IpAddr) -> String {
    let text = ip.to_string().replace(['.', ':'], "-");
    let text = if text.ends_with('-') {
        format!("{text}0")
    } else {
        text
    };
    format!("vipr-addr-{text}")
}

fn holders_text(holders: &[Holder]) -> String {
    holders
        .iter()
        .map(|h| format!("{}/{}/{}", h.namespace, h.name, h.uid))
        .collect::<Vec<_>>()
        .join(",")
}

/// The Lease of a claim.
pub fn to_lease(
    namespace: &str,
    ip: IpAddr,
    pool: &str,
    holders: &[Holder],
    resource_version: Option<String>,
) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name(ip)),
            namespace: Some(namespace.to_string()),
            resource_version,
            labels: Some(BTreeMap::from([
                (LABEL.to_string(), "true".to_string()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "vipr".to_string(),
                ),
            ])),
            annotations: Some(BTreeMap::from([
                (ANNOTATION_ADDRESS.to_string(), ip.to_string()),
                (ANNOTATION_POOL.to_string(), pool.to_string()),
                (ANNOTATION_HOLDERS.to_string(), holders_text(holders)),
            ])),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holders.first().map(|h| h.to_string()),
            ..Default::default()
        }),
    }
}

/// A claim from its Lease; `None` for a Lease that is not one (or was edited by hand into
/// something unreadable: its address then counts as taken, see the caller).
pub fn from_lease(l: &Lease) -> Option<Claim> {
    let a = l.metadata.annotations.as_ref()?;
    let ip: IpAddr = a.get(ANNOTATION_ADDRESS)?.parse().ok()?;
    if l.metadata.name.as_deref() != Some(name(ip).as_str()) {
        return None;
    }
    let holders = a
        .get(ANNOTATION_HOLDERS)?
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let mut p = h.splitn(3, '/');
            Some(Holder {
                namespace: p.next()?.into(),
                name: p.next()?.into(),
                uid: p.next()?.into(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Claim {
        ip,
        pool: a.get(ANNOTATION_POOL).cloned().unwrap_or_default(),
        holders,
        resource_version: l.metadata.resource_version.clone().unwrap_or_default(),
        created: l
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| std::time::SystemTime::from(t.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_unique() {
        for (ip, want) in [
            ("198.51.100.10", "vipr-addr-198-51-100-10"),
            ("2001:db8::10", "vipr-addr-2001-db8--10"),
            ("2001:db8::", "vipr-addr-2001-db8--0"),
            ("::1", "vipr-addr---1"),
        ] {
            assert_eq!(name(ip.parse().unwrap()), want);
        }
    }

    #[test]
    fn round_trip() {
        let h = vec![
            Holder {
                namespace: "default".into(),
                name: "web".into(),
                uid: "u-1".into(),
            },
            Holder {
                namespace: "apps".into(),
                name: "dns".into(),
                uid: "u-2".into(),
            },
        ];
        let ip: IpAddr = "2001:db8::10".parse().unwrap();
        let l = to_lease("kube-system", ip, "pool1", &h, Some("42".into()));
        assert_eq!(
            l.spec.as_ref().unwrap().holder_identity.as_deref(),
            Some("default/web")
        );
        let c = from_lease(&l).unwrap();
        assert_eq!((c.ip, c.pool.as_str(), c.holders.clone()), (ip, "pool1", h));
        assert_eq!(c.resource_version, "42");
        let mut odd = l.clone();
        odd.metadata.name = Some("vipr-addr-something-else".into());
        assert!(from_lease(&odd).is_none());
    }
}
