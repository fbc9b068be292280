//! The BGP passwords of `vipr manifest`: a setting that carries one (`bgp_peerpass`, and
//! `bgp_peers` when an entry has a password field) never goes into a pod's environment or a
//! header comment. Where it goes instead:
//!
//! - a DaemonSet reads it from the Secret `<name>-bgp` in kube-system with `secretKeyRef`
//!   (`vipr manifest secret`, the same flags), so `get pods` does not show it;
//! - a kubeadm static pod cannot use a Secret: it runs before the API server it makes
//!   reachable, and the NodeRestriction admission plugin refuses a mirror pod that
//!   references one. It reads the file `/etc/kubernetes/<name>-bgp.yaml` from the host with
//!   `--config` (`vipr manifest secret --host-file`), as kubeadm's own static pods read
//!   their keys from `/etc/kubernetes/pki`.
//!
//! Pure: builds objects and text, no I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Secret, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{yaml, Kind, ManifestError, Options, NAMESPACE};
use crate::config::keys::Key;
use crate::config::peers::has_password;

/// What the command line in a header shows instead of a password.
pub const HIDDEN: &str = "<secret>";

/// Whether this setting's value carries a password.
pub fn is_secret(k: &Key, value: &str) -> bool {
    match k.name {
        "bgp_peers" => has_password(value),
        _ => k.secret && !value.trim().is_empty(),
    }
}

/// The settings given that carry a password, in settings-table order.
pub fn settings(o: &Options) -> Vec<(&'static Key, &str)> {
    o.set
        .iter()
        .filter(|(k, v)| is_secret(k, v))
        .map(|(k, v)| (*k, v.as_str()))
        .collect()
}

/// The Secret's name.
pub fn secret_name(o: &Options) -> String {
    format!("{}-bgp", o.flags.name)
}

/// The static pod's password file on the host (and at the same path in the container).
pub fn host_file(o: &Options) -> String {
    format!("/etc/kubernetes/{}-bgp.yaml", o.flags.name)
}

/// The DaemonSet's environment entry of a password setting.
pub fn env_ref(o: &Options, k: &Key) -> EnvVar {
    EnvVar {
        name: k.name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret_name(o),
                key: k.name.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Header lines of a pod or DaemonSet that reads passwords: where they come from.
pub fn notes(o: &Options) -> Vec<String> {
    let s = settings(o);
    if s.is_empty() {
        return vec![];
    }
    let names: Vec<&str> = s.iter().map(|(k, _)| k.name).collect();
    let mut n = vec![format!(
        "Passwords ({}): shown as {HIDDEN} above, never in this manifest.",
        names.join(", ")
    )];
    n.push(match o.kind {
        Kind::Pod => format!(
            "They are read from {} on the host (a static pod cannot use a Secret): write it \
             with `vipr manifest secret --host-file` and the same flags, mode 0600.",
            host_file(o)
        ),
        _ => format!(
            "They are read from Secret {NAMESPACE}/{}: apply `vipr manifest secret` with the \
             same flags first.",
            secret_name(o)
        ),
    });
    n
}

/// `vipr manifest secret [--host-file]`: the passwords, and only them.
pub fn render(o: &Options, header: String) -> Result<String, ManifestError> {
    let values: BTreeMap<String, String> = settings(o)
        .iter()
        .map(|(k, v)| (k.name.to_string(), v.to_string()))
        .collect();
    if o.flags.host_file {
        let mut out = format!(
            "# {}: the passwords of `vipr manifest pod`, read with --config.\n\
             # Keep it on each control-plane node, owned by root, mode 0600.\n",
            host_file(o)
        );
        let body =
            serde_saphyr::to_string(&values).map_err(|e| ManifestError::Yaml(e.to_string()))?;
        out.push_str(body.trim_start_matches("---\n"));
        if !out.ends_with('\n') {
            out.push('\n');
        }
        return Ok(out);
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(o)),
            namespace: Some(NAMESPACE.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                o.flags.name.clone(),
            )])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(values),
        ..Default::default()
    };
    Ok(format!(
        "{header}# The passwords of `vipr manifest daemonset` (secretKeyRef): apply this first.\n{}",
        yaml(&secret)?
    ))
}
