//! Shared helpers of the Kubernetes end-to-end tests (`tests/k8s_*.rs`): a real
//! kube-apiserver 1.20.2 + etcd ([`ApiServer`], started by `labs/k8s/apiserver.sh` inside the
//! lab's router namespace, bound to 10.55.0.1:16443 so vipr in the node namespaces reaches
//! it), a tiny REST client for it (curl inside the router namespace), object builders
//! (LoadBalancer Services, core/v1 Endpoints) and vipr's environment for BGP and ARP mode.
//!
//! Each `ApiServer` has its own directory (etcd data, certs, kubeconfigs); two of them in
//! different namespaces coexist (each namespace has its own ports). `Drop` stops both
//! processes and removes the directory, also when the test panics (then the API server's
//! log tail is printed). Every test declares `mod daemon_common;` before `mod k8s_common;`.
//!
//! The REST client does not identify itself as curl: kube-apiserver pretty-prints JSON for a
//! `curl/...` User-Agent through json-iterator, the path where builds with the vendored
//! reflect2 1.0.1 (Go >= 1.18) faulted on any object with a map; plain JSON is what vipr
//! (kube-rs) and kubectl get.

#![allow(dead_code)] // each test binary uses a different subset

mod access;
#[allow(unused_imports)] // not every test binary runs vipr under its RBAC
pub use access::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testbed::{wait_for, Netns, TempDir};

/// The API server's address: the lab router's bridge address.
pub const API_ADDR: &str = "10.55.0.1";
/// Its port (`labs/k8s/apiserver.sh`'s default).
pub const API_PORT: u16 = 16443;
/// The Service-VIP range used by the tests.
pub const SVC_NET: &str = "198.51.100";
/// Bearer token of the admin user (group system:masters).
const ADMIN_TOKEN: &str = "testtoken";

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/labs/k8s/apiserver.sh")
}

/// vipr-elector: client-go's Lease election configured as kube-vip v1.2.3 configures it
/// (labs/k8s/elector), built and cached by `apiserver.sh build` beside the API server.
pub fn elector_bin() -> PathBuf {
    let out = Command::new(script())
        .arg("elector")
        .stdin(Stdio::null())
        .output()
        .expect("run labs/k8s/apiserver.sh elector");
    assert!(
        out.status.success(),
        "apiserver.sh elector: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// etcd + kube-apiserver in a namespace, stopped and removed on `Drop`.
pub struct ApiServer {
    dir: TempDir,
    ns: String,
}

impl ApiServer {
    /// Start both inside `ns` (which must have [`API_ADDR`], e.g. a `Lab` router), wait until
    /// the API server answers and the `default` and `kube-system` namespaces exist.
    pub fn start(ns: &Netns) -> ApiServer {
        let api = ApiServer {
            dir: TempDir::new("k8s"),
            ns: ns.name.clone(),
        };
        api.launch();
        api
    }

    fn launch(&self) {
        let t0 = Instant::now();
        let out = Command::new(script())
            .args(["start", self.dir.path.to_str().unwrap(), API_ADDR, &self.ns])
            .stdin(Stdio::null())
            .output()
            .expect("run labs/k8s/apiserver.sh");
        if !out.status.success() {
            panic!(
                "apiserver.sh start failed ({}):\n{}{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
        // The bootstrap controller creates the system namespaces just after /readyz.
        let ok = wait_for(Duration::from_secs(30), || {
            (self.get("/api/v1/namespaces/default").is_some()
                && self.get("/api/v1/namespaces/kube-system").is_some())
            .then_some(())
        });
        if ok.is_none() {
            panic!("API server has no default namespace\n{}", self.log_tail());
        }
        eprintln!("API server in {} ready after {:?}", self.ns, t0.elapsed());
    }

    /// The admin kubeconfig (user "admin", group system:masters).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The serving certificate kube-apiserver generated in its `--cert-dir` (PEM: the
    /// certificate, then the CA that signed it).
    pub fn serving_cert(&self) -> PathBuf {
        self.dir.join("certs/apiserver.crt")
    }

    /// The kubeconfig of user "vipr" (token "viprtoken"), powerless until RBAC binds it.
    pub fn kubeconfig_vipr(&self) -> PathBuf {
        self.dir.join("kubeconfig-vipr")
    }

    fn pid(&self, what: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(&format!("{what}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILL kube-apiserver and etcd and wait until both are gone (data kept).
    pub fn kill(&self) {
        let pids: Vec<i32> = ["apiserver", "etcd"]
            .iter()
            .filter_map(|w| self.pid(w))
            .collect();
        for &p in &pids {
            // SAFETY: plain kill(2) of a pid the script recorded.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        let gone = wait_for(Duration::from_secs(10), || {
            pids.iter().all(|p| !alive(*p)).then_some(())
        });
        assert!(gone.is_some(), "API server processes {pids:?} did not die");
    }

    /// Start both again on the same data (after [`ApiServer::kill`]).
    pub fn restart(&self) {
        self.launch();
    }

    /// The last lines of the API server's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(30);
        format!("--- apiserver.log (tail)\n{}", lines[start..].join("\n"))
    }

    /// One request with the admin token; (HTTP status, body as JSON or Null). Status 0: no
    /// answer (not listening).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        ctype: &str,
    ) -> (u16, Value) {
        self.request_as(ADMIN_TOKEN, method, path, body, ctype)
    }

    /// Like [`ApiServer::request`] with another bearer token.
    pub fn request_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        ctype: &str,
    ) -> (u16, Value) {
        let url = format!("https://{API_ADDR}:{API_PORT}{path}");
        let auth = format!("Authorization: Bearer {token}");
        let ct = format!("Content-Type: {ctype}");
        let mut args = vec![
            "curl",
            "-sk",
            "-m",
            "10",
            "-A",
            "vipr-e2e",
            "-H",
            &auth,
            "-H",
            "Accept: application/json",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ];
        let data;
        if let Some(b) = body {
            data = b.to_string();
            args.extend(["-H", &ct, "--data-binary", &data]);
        }
        args.push(&url);
        let out = run_in(&self.ns, &args);
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code: u16 = code.trim().parse().unwrap_or(0);
        (code, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// GET; `None` on 404 (or no answer).
    pub fn get(&self, path: &str) -> Option<Value> {
        let (code, v) = self.request("GET", path, None, "application/json");
        (code == 200).then_some(v)
    }

    /// POST `obj` to the collection `path`; panics unless created.
    pub fn create(&self, path: &str, obj: &Value) -> Value {
        let (code, v) = self.request("POST", path, Some(obj), "application/json");
        assert!(code == 201 || code == 200, "POST {path}: {code} {v:#}");
        v
    }

    /// PUT `obj` (read-modify-write callers pass the resourceVersion, or none to force).
    pub fn replace(&self, path: &str, obj: &Value) -> Value {
        let (code, v) = self.request("PUT", path, Some(obj), "application/json");
        assert_eq!(code, 200, "PUT {path}: {v:#}");
        v
    }

    /// JSON merge patch; panics unless it succeeds.
    pub fn merge_patch(&self, path: &str, patch: &Value) -> Value {
        let (code, v) = self.request("PATCH", path, Some(patch), "application/merge-patch+json");
        assert_eq!(code, 200, "PATCH {path}: {v:#}");
        v
    }

    /// DELETE; panics unless it succeeds.
    pub fn delete(&self, path: &str) {
        let (code, v) = self.request("DELETE", path, None, "application/json");
        assert!(code == 200 || code == 202, "DELETE {path}: {code} {v:#}");
    }

    /// Create a Service in `default`.
    pub fn create_service(&self, svc: &Value) -> Value {
        self.create("/api/v1/namespaces/default/services", svc)
    }

    /// Delete Service `default/name`.
    pub fn delete_service(&self, name: &str) {
        self.delete(&svc_path(name));
    }

    /// The IPs in `status.loadBalancer.ingress` of Service `default/name`.
    pub fn ingress_ips(&self, name: &str) -> Vec<String> {
        self.get(&svc_path(name))
            .map(|s| ingress_of(&s))
            .unwrap_or_default()
    }

    /// Poll until Service `name`'s status.loadBalancer.ingress is exactly `ips`.
    pub fn wait_ingress(&self, name: &str, ips: &[&str]) {
        let want: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
        let mut last = Vec::new();
        let ok = wait_for(Duration::from_secs(20), || {
            last = self.ingress_ips(name);
            (last == want).then_some(())
        });
        assert!(
            ok.is_some(),
            "status.loadBalancer.ingress of {name}: want {want:?}, have {last:?}"
        );
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        let _ = Command::new(script())
            .args(["stop", self.dir.path.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn run_in(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec {ns} {args:?}: {e}"))
}

/// The API path of Service `default/name`.
pub fn svc_path(name: &str) -> String {
    format!("/api/v1/namespaces/default/services/{name}")
}

/// A Service VIP of the tests: 198.51.100.N.
pub fn svc_vip(n: u8) -> String {
    format!("{SVC_NET}.{n}")
}

/// kube-vip's opt-in to announce an `externalTrafficPolicy: Cluster` Service that has no
/// ready endpoint.
pub const ALLOW_WITHOUT_ENDPOINTS: &str = "kube-vip.io/allow-reconcile-without-endpoints";

/// A LoadBalancer Service in `default` (port 80, no selector), with `annotations` and extra
/// `spec` fields merged in.
///
/// The tests' API server runs no controller-manager, so no Service has endpoints unless the
/// test writes them, and vipr (as kube-vip) announces no Service without a ready endpoint.
/// Like a controller that creates LoadBalancer Services without endpoints, the Service
/// carries [`ALLOW_WITHOUT_ENDPOINTS`]` = "true"` unless `annotations` names that key (a
/// `null` value: the Service goes without it, as in the tests of the endpoint rule).
pub fn lb_service(name: &str, annotations: Value, spec: Value) -> Value {
    let mut s = json!({"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]});
    for (k, v) in spec.as_object().cloned().unwrap_or_default() {
        s[k] = v;
    }
    let mut annotations = annotations.as_object().cloned().unwrap_or_default();
    match annotations.get(ALLOW_WITHOUT_ENDPOINTS) {
        None => {
            annotations.insert(ALLOW_WITHOUT_ENDPOINTS.into(), json!("true"));
        }
        Some(Value::Null) => {
            annotations.remove(ALLOW_WITHOUT_ENDPOINTS);
        }
        Some(_) => {}
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": s,
    })
}

/// A Service whose address comes from `kube-vip.io/loadbalancerIPs`.
pub fn annotated_service(name: &str, ips: &str, spec: Value) -> Value {
    lb_service(name, json!({"kube-vip.io/loadbalancerIPs": ips}), spec)
}

/// core/v1 Endpoints `default/name`: one ready address per node in `ready`, one not-ready
/// address per node in `not_ready` (pod IPs 10.244.N.10, N the node number).
pub fn endpoints(name: &str, ready: &[&str], not_ready: &[&str]) -> Value {
    let addr = |node: &&str| {
        let n: u32 = node.trim_start_matches("node").parse().unwrap_or(0);
        json!({"ip": format!("10.244.{n}.10"), "nodeName": node})
    };
    let mut subset = json!({"ports": [{"port": 80, "protocol": "TCP"}]});
    if !ready.is_empty() {
        subset["addresses"] = ready.iter().map(addr).collect();
    }
    if !not_ready.is_empty() {
        subset["notReadyAddresses"] = not_ready.iter().map(addr).collect();
    }
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": "default"},
        "subsets": [subset],
    })
}

/// vipr's environment in BGP mode serving Services only (no control-plane VIP): AS 65001
/// peering with the router's AS 65000, fast timers, node name `node`, HTTP on
/// 127.0.0.1:2112, state in `state_dir`, the API server through `kubeconfig`.
pub fn bgp_svc_env(state_dir: &Path, kubeconfig: &Path, node: &str) -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    for (k, v) in [
        ("bgp_enable", "true"),
        ("svc_enable", "true"),
        ("bgp_as", "65001"),
        ("bgp_peers", "10.55.0.1:65000::false"),
        ("bgp_hold_time", "3"),
        ("bgp_keepalive_interval", "1"),
        ("prometheus_server", "127.0.0.1:2112"),
        ("vip_nodename", node),
    ] {
        e.insert(k.to_string(), v.to_string());
    }
    e.insert("vipr_state_dir".into(), path_str(state_dir));
    e.insert("k8s_config_file".into(), path_str(kubeconfig));
    e
}

/// vipr's environment in ARP mode with a Lease-elected control-plane VIP (`vips`, comma
/// list) on `eth0`: lease 2 s, renew deadline 1 s, retry 0.5 s, node name `node`.
pub fn arp_cp_env(
    state_dir: &Path,
    kubeconfig: &Path,
    node: &str,
    vips: &str,
) -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    for (k, v) in [
        ("vip_arp", "true"),
        ("vip_leaderelection", "true"),
        ("vip_interface", "eth0"),
        ("cp_enable", "true"),
        ("address", vips),
        ("vip_leaseduration", "2"),
        ("vip_renewdeadline", "1"),
        ("vip_retryperiod", "0.5"),
        ("prometheus_server", "127.0.0.1:2112"),
        ("vip_nodename", node),
    ] {
        e.insert(k.to_string(), v.to_string());
    }
    e.insert("vipr_state_dir".into(), path_str(state_dir));
    e.insert("k8s_config_file".into(), path_str(kubeconfig));
    e
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// Poll `f` every 20 ms for up to `timeout`; panic with `what` and `context()` if it never
/// returns `Some`.
pub fn within<T>(
    timeout: Duration,
    what: &str,
    context: impl Fn() -> String,
    f: impl FnMut() -> Option<T>,
) -> T {
    wait_for(timeout, f)
        .unwrap_or_else(|| panic!("timed out ({timeout:?}) waiting for {what}\n{}", context()))
}

/// The IPs in a Service object's `status.loadBalancer.ingress`.
pub fn ingress_of(s: &Value) -> Vec<String> {
    s["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect()
}
