//! kube-vip's Service annotations (`pkg/kubevip/annotations.go` at v1.2.3), one row each:
//! what vipr does with it. [`KUBE_VIP_ANNOTATIONS`] lists every name of that file and a test
//! keeps each one in [`TABLE`], like `config/kubevip.rs` does for the environment.
//!
//! An annotation vipr does not implement that asks for something on a Service vipr serves
//! is named once: one log line per Service and annotation when the watcher first sees it
//! (`watch.rs`), and one Kubernetes Event on the Service (`AnnotationIgnored`, named after
//! the Service and the annotation, so every node writing it makes one object). Pure: no API
//! calls here.

use std::collections::BTreeMap;

/// The kube-vip release the table was checked against.
#[allow(dead_code)] // the table's test
pub const KUBE_VIP_VERSION: &str = "v1.2.3";

/// Every constant of kube-vip v1.2.3's `pkg/kubevip/annotations.go`, in file order.
#[allow(dead_code)] // the table's test
pub const KUBE_VIP_ANNOTATIONS: &[&str] = &[
    "kube-vip.io/hwaddr",
    "kube-vip.io/requestedIP",
    "kube-vip.io/vipHost",
    "kube-vip.io/egress",
    "kube-vip.io/egress-internal",
    "kube-vip.io/egress-ipv6",
    "kube-vip.io/egress-destination-ports",
    "kube-vip.io/egress-source-ports",
    "kube-vip.io/egress-allowed-networks",
    "kube-vip.io/egress-denied-networks",
    "kube-vip.io/egress-no-internal-traffic",
    "kube-vip.io/egress-detect-api-server",
    "kube-vip.io/active-endpoint",
    "kube-vip.io/active-endpoint-ipv6",
    "kube-vip.io/egress-nftables-table",
    "kube-vip.io/flush-conntrack",
    "kube-vip.io/loadbalancerIPs",
    "kube-vip.io/ignore",
    "kube-vip.io/loadbalancerHostname",
    "kube-vip.io/serviceInterface",
    "kube-vip.io/serviceVLAN",
    "kube-vip.io/ignore-service-security",
    "kube-vip.io/forwardUPNP",
    "kube-vip.io/upnp-lease-duration",
    "kube-vip.io/rp_filter",
    "kube-vip.io/leaseName",
    "kube-vip.io/forcePerServiceElection",
    "kube-vip.io/allow-reconcile-without-endpoints",
    "kube-vip.io/ddns",
    "kube-vip.io/macvlanName",
    "kube-vip.io/dhcp-broadcast",
];

/// `kube-vip.io/ignore: "true"`: kube-vip v1.2.3 skips the Service entirely
/// (`pkg/services/processor.go`, `AddOrModify` and `Delete`, compared with `== "true"`).
pub const IGNORE: &str = "kube-vip.io/ignore";
/// `kube-vip.io/allow-reconcile-without-endpoints: "true"`: an `externalTrafficPolicy:
/// Cluster` Service is announced without any endpoint (`pkg/endpoints/endpoints.go`,
/// `shouldAllowReconcileWithoutEndpoints`, compared case-insensitively).
pub const ALLOW_WITHOUT_ENDPOINTS: &str = "kube-vip.io/allow-reconcile-without-endpoints";

/// What vipr does with an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// vipr does what kube-vip does.
    Implemented,
    /// Not supported: named once when it asks for something on a Service vipr serves.
    Ignored,
    /// Written by kube-vip itself (a Service it managed carries it), or meaningful only
    /// with an address vipr already refuses with its own Event (`0.0.0.0`, DHCP): never
    /// named, the reason is for the table.
    Quiet,
}

/// Which values ask for something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Exactly `"true"`, as kube-vip compares it.
    True,
    /// Any non-empty value.
    Set,
}

/// One annotation.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The annotation.
    pub name: &'static str,
    /// What vipr does.
    pub handling: Handling,
    /// Which values ask for something (for [`Handling::Ignored`]).
    pub when: When,
    /// What it does in kube-vip and in vipr (the log line and the Event say this).
    pub reason: &'static str,
}

const fn row(name: &'static str, handling: Handling, when: When, reason: &'static str) -> Row {
    Row {
        name,
        handling,
        when,
        reason,
    }
}

use Handling::{Ignored, Implemented, Quiet};
use When::{Set, True};

const EGRESS: &str =
    "egress (SNAT of the Service's pods' outgoing traffic to the VIP) is not supported by vipr";
const DHCP: &str = "used by kube-vip for a Service address taken by DHCP (loadbalancerIPs 0.0.0.0 or ::), which vipr does not support (it refuses that address with an AddressRefused Event)";
const UPNP: &str = "UPnP port forwarding is not supported by vipr";

/// Every annotation of [`KUBE_VIP_ANNOTATIONS`] and what vipr does with it.
#[rustfmt::skip]
pub const TABLE: &[Row] = &[
    row("kube-vip.io/hwaddr", Quiet, Set, DHCP),
    row("kube-vip.io/requestedIP", Quiet, Set, DHCP),
    row("kube-vip.io/vipHost", Quiet, Set, "written by kube-vip (the node that last wrote the status, pkg/services/services.go updateStatus); kube-vip never reads it; vipr does not write it"),
    row("kube-vip.io/egress", Ignored, True, EGRESS),
    row("kube-vip.io/egress-internal", Ignored, Set, EGRESS),
    row("kube-vip.io/egress-ipv6", Ignored, True, EGRESS),
    row("kube-vip.io/egress-destination-ports", Ignored, Set, EGRESS),
    row("kube-vip.io/egress-source-ports", Ignored, Set, EGRESS),
    row("kube-vip.io/egress-allowed-networks", Ignored, Set, EGRESS),
    row("kube-vip.io/egress-denied-networks", Ignored, Set, EGRESS),
    row("kube-vip.io/egress-no-internal-traffic", Ignored, Set, EGRESS),
    row("kube-vip.io/egress-detect-api-server", Ignored, Set, EGRESS),
    row("kube-vip.io/active-endpoint", Quiet, Set, "written by kube-vip for egress (the pod whose traffic is SNATed); vipr has no egress"),
    row("kube-vip.io/active-endpoint-ipv6", Quiet, Set, "written by kube-vip for egress (the pod whose traffic is SNATed); vipr has no egress"),
    row("kube-vip.io/egress-nftables-table", Quiet, Set, "written by kube-vip for nftables egress; vipr has no egress"),
    row("kube-vip.io/flush-conntrack", Ignored, True, "vipr does not delete the VIP's conntrack entries when it starts serving a Service"),
    row("kube-vip.io/loadbalancerIPs", Implemented, Set, "the Service's addresses (before status.loadBalancer.ingress and spec.loadBalancerIP)"),
    row(IGNORE, Implemented, True, "\"true\": the Service is neither served nor allocated an address, and its status is left alone"),
    row("kube-vip.io/loadbalancerHostname", Ignored, Set, "the host name kube-vip's DHCP client sends for a DHCP-assigned Service address (kube-vip never writes it into the status); vipr has no DHCP addresses"),
    row("kube-vip.io/serviceInterface", Ignored, Set, "vipr puts every Service VIP on vip_interface; for another interface run a second vipr (vipr_instance) with that vip_interface"),
    row("kube-vip.io/serviceVLAN", Ignored, Set, "vipr creates no VLAN interfaces; every Service VIP goes on vip_interface"),
    row("kube-vip.io/ignore-service-security", Ignored, True, "meaningful only with enable_service_security, which vipr does not implement"),
    row("kube-vip.io/forwardUPNP", Ignored, True, UPNP),
    row("kube-vip.io/upnp-lease-duration", Ignored, Set, UPNP),
    row("kube-vip.io/rp_filter", Ignored, Set, "vipr does not change the interface's rp_filter"),
    row("kube-vip.io/leaseName", Ignored, Set, "vipr names each Service's Lease kubevip-<namespace>.<name> (with svc_election); a Lease shared by several Services is not supported"),
    row("kube-vip.io/forcePerServiceElection", Ignored, True, "vipr elects per Service only with svc_election, for every Service"),
    row(ALLOW_WITHOUT_ENDPOINTS, Implemented, True, "\"true\" (any case) on an externalTrafficPolicy: Cluster Service: announced without a ready endpoint"),
    row("kube-vip.io/ddns", Ignored, Set, "dynamic DNS for a DHCP-assigned Service address is not supported by vipr"),
    row("kube-vip.io/macvlanName", Quiet, Set, DHCP),
    row("kube-vip.io/dhcp-broadcast", Quiet, True, DHCP),
];

/// The raw value of an annotation (kube-vip compares values untrimmed).
fn raw<'a>(a: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    a.and_then(|a| a.get(key)).map(String::as_str)
}

/// Whether kube-vip would ignore the Service: exactly `"true"`, as kube-vip compares it.
pub fn ignored(a: Option<&BTreeMap<String, String>>) -> bool {
    raw(a, IGNORE) == Some("true")
}

/// Whether a `Cluster` Service may be announced without endpoints: `"true"` in any case,
/// as kube-vip compares it (`strings.EqualFold`). The caller checks the traffic policy.
pub fn allow_without_endpoints(a: Option<&BTreeMap<String, String>>) -> bool {
    raw(a, ALLOW_WITHOUT_ENDPOINTS).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The [`Handling::Ignored`] annotations that ask for something on this Service, as a
/// bit set over [`TABLE`]'s rows (kept per Service: a few bytes, usually zero).
pub fn unsupported(a: Option<&BTreeMap<String, String>>) -> u64 {
    TABLE
        .iter()
        .enumerate()
        .filter(|(_, r)| r.handling == Ignored)
        .filter(|(_, r)| match (raw(a, r.name), r.when) {
            (Some(v), True) => v == "true",
            (Some(v), Set) => !v.is_empty(),
            (None, _) => false,
        })
        .fold(0, |bits, (i, _)| bits | 1 << i)
}

/// The rows of a bit set from [`unsupported`].
pub fn rows(bits: u64) -> impl Iterator<Item = &'static Row> {
    TABLE
        .iter()
        .enumerate()
        .filter(move |(i, _)| bits & (1 << i) != 0)
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_annotation_of_kube_vip_is_in_the_table_once() {
        assert_eq!(KUBE_VIP_VERSION, "v1.2.3");
        for name in KUBE_VIP_ANNOTATIONS {
            let n = TABLE.iter().filter(|r| r.name == *name).count();
            assert_eq!(n, 1, "{name}: {n} rows");
        }
        for r in TABLE {
            assert!(
                KUBE_VIP_ANNOTATIONS.contains(&r.name),
                "{} is not kube-vip's",
                r.name
            );
            assert!(!r.reason.is_empty(), "{}", r.name);
        }
        assert!(TABLE.len() <= 64, "the bit set is a u64");
        assert_eq!(TABLE.len(), KUBE_VIP_ANNOTATIONS.len());
    }

    fn ann(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_values_that_ask_for_something_are_named() {
        let names = |kv: &[(&str, &str)]| -> Vec<&str> {
            rows(unsupported(Some(&ann(kv)))).map(|r| r.name).collect()
        };
        assert!(names(&[]).is_empty());
        assert_eq!(
            names(&[("kube-vip.io/egress", "true")]),
            ["kube-vip.io/egress"]
        );
        assert!(
            names(&[("kube-vip.io/egress", "false")]).is_empty(),
            "== \"true\" as kube-vip"
        );
        assert_eq!(
            names(&[
                ("kube-vip.io/serviceInterface", "eth1"),
                ("kube-vip.io/rp_filter", "2")
            ]),
            ["kube-vip.io/serviceInterface", "kube-vip.io/rp_filter"]
        );
        assert!(names(&[("kube-vip.io/serviceInterface", "")]).is_empty());
        // kube-vip's own output on a Service it managed, and the implemented ones: never.
        assert!(names(&[
            ("kube-vip.io/vipHost", "node1"),
            ("kube-vip.io/active-endpoint", "10.0.0.1"),
            ("kube-vip.io/loadbalancerIPs", "192.0.2.1"),
            ("kube-vip.io/ignore", "true"),
            (ALLOW_WITHOUT_ENDPOINTS, "true"),
        ])
        .is_empty());
    }

    #[test]
    fn ignore_is_exact_and_the_opt_in_is_any_case() {
        assert!(ignored(Some(&ann(&[(IGNORE, "true")]))));
        assert!(!ignored(Some(&ann(&[(IGNORE, "True")]))));
        assert!(!ignored(Some(&ann(&[(IGNORE, " true")]))));
        assert!(!ignored(None));
        assert!(allow_without_endpoints(Some(&ann(&[(
            ALLOW_WITHOUT_ENDPOINTS,
            "TRUE"
        )]))));
        assert!(!allow_without_endpoints(Some(&ann(&[(
            ALLOW_WITHOUT_ENDPOINTS,
            "1"
        )]))));
    }
}
