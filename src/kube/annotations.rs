//! kube-vip's Service annotations (`pkg/kubevip/annotations.go` at v1.2.3) as vipr reads
//! them. Pure: no API calls.

/// `kube-vip.io/ignore: "true"`: kube-vip v1.2.3 skips the Service entirely
/// (`pkg/services/processor.go`, `AddOrModify` and `Delete`, compared with `== "true"`).
pub const IGNORE: &str = "kube-vip.io/ignore";
/// `kube-vip.io/allow-reconcile-without-endpoints: "true"`: an `externalTrafficPolicy:
/// Cluster` Service is announced without any endpoint (`pkg/endpoints/endpoints.go`,
/// `shouldAllowReconcileWithoutEndpoints`, compared case-insensitively).
pub const ALLOW_WITHOUT_ENDPOINTS: &str = "kube-vip.io/allow-reconcile-without-endpoints";

/// The raw value of an annotation (kube-vip compares values untrimmed).
fn raw<'a>(
    a: Option<&'a std::collections::BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    a.and_then(|a| a.get(key)).map(String::as_str)
}

/// Whether kube-vip would ignore the Service: exactly `"true"`, as kube-vip compares it.
pub fn ignored(a: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    raw(a, IGNORE) == Some("true")
}

/// Whether a `Cluster` Service may be announced without endpoints: `"true"` in any case,
/// as kube-vip compares it (`strings.EqualFold`). The caller checks the traffic policy.
pub fn allow_without_endpoints(a: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    raw(a, ALLOW_WITHOUT_ENDPOINTS).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}
