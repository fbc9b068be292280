//! Access checks shared by the Kubernetes tests that run vipr under the RBAC it renders:
//! `kubectl` and `vipr manifest` in the lab, the RBAC of a daemon environment applied as is
//! with a ServiceAccount token to run as, and SelfSubjectAccessReviews of that token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use testbed::{Lab, Netns};

use super::{ApiServer, API_ADDR, API_PORT};
use crate::daemon_common::vipr_bin;

/// `kubectl ARGS` inside the router namespace (where the API server is) as admin.
pub fn kubectl(router: &Netns, api: &ApiServer, args: &[&str]) -> (bool, String) {
    let kc = api.kubeconfig();
    let mut argv = vec!["kubectl", "--kubeconfig", kc.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = router.run(&argv);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `vipr manifest ARGS...`; panics unless it renders.
pub fn vipr_manifest(args: &[&str]) -> String {
    let out = Command::new(vipr_bin())
        .arg("manifest")
        .args(args)
        .output()
        .expect("run vipr manifest");
    assert!(
        out.status.success(),
        "vipr manifest {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The daemon's environment as `vipr manifest` flags (every setting but the node name, which
/// a manifest takes from spec.nodeName).
pub fn flags_of(env: &BTreeMap<String, String>) -> Vec<String> {
    env.iter()
        .filter(|(k, _)| k.as_str() != "vip_nodename")
        .map(|(k, v)| {
            let mut f = String::from("--");
            for c in k.chars() {
                match c {
                    '_' => f.push('-'),
                    c if c.is_ascii_uppercase() => {
                        f.push('-');
                        f.push(c.to_ascii_lowercase());
                    }
                    c => f.push(c),
                }
            }
            format!("{f}={v}")
        })
        .collect()
}

/// Renders the RBAC for `env` under `name`, applies it unchanged, and returns a kubeconfig
/// with a token of the ServiceAccount it created.
pub fn apply_rbac_and_login(
    lab: &Lab,
    api: &ApiServer,
    dir: &Path,
    name: &str,
    env: &BTreeMap<String, String>,
) -> (PathBuf, String) {
    let mut args = vec!["rbac".to_string(), format!("--name={name}")];
    args.extend(flags_of(env));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let yaml = vipr_manifest(&argv);
    let file = dir.join(format!("rbac-{name}.yaml"));
    std::fs::write(&file, &yaml).unwrap();
    let (ok, text) = kubectl(&lab.router, api, &["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "kubectl apply rbac {name}:\n{text}\n{yaml}");
    eprintln!("--- vipr manifest {}:\n{yaml}{text}", args.join(" "));
    let tr = api.create(
        &format!("/api/v1/namespaces/kube-system/serviceaccounts/{name}/token"),
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}),
    );
    let token = tr["status"]["token"].as_str().expect("token").to_string();
    let kc = dir.join(format!("kubeconfig-{name}"));
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: https://{API_ADDR}:{API_PORT}\n    \
             insecure-skip-tls-verify: true\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: t\n  \
             context: {{cluster: t, user: {name}}}\ncurrent-context: t\n"
        ),
    )
    .unwrap();
    (kc, token)
}

/// SelfSubjectAccessReview as `token`: (verb, group, resource, subresource, namespace, name).
pub fn can(api: &ApiServer, token: &str, a: (&str, &str, &str, &str, &str, &str)) -> bool {
    let (verb, group, resource, sub, ns, name) = a;
    let mut attrs = json!({"verb": verb, "group": group, "resource": resource});
    for (k, v) in [("subresource", sub), ("namespace", ns), ("name", name)] {
        if !v.is_empty() {
            attrs[k] = json!(v);
        }
    }
    let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                      "spec": {"resourceAttributes": attrs}});
    let (code, v) = api.request_as(
        token,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(&body),
        "application/json",
    );
    assert_eq!(code, 201, "SelfSubjectAccessReview: {v:#}");
    v["status"]["allowed"] == true
}

pub fn check_access(
    api: &ApiServer,
    who: &str,
    token: &str,
    allowed: &[(&str, &str, &str, &str, &str, &str)],
    denied: &[(&str, &str, &str, &str, &str, &str)],
) {
    for a in allowed {
        assert!(can(api, token, *a), "{who} must be allowed {a:?}");
    }
    for a in denied {
        assert!(!can(api, token, *a), "{who} must NOT be allowed {a:?}");
    }
}

pub fn forbidden(log: &str) -> usize {
    log.lines().filter(|l| l.contains("forbidden")).count()
}
