//! `control_plane_health_check_ca_path` against a real kube-apiserver (kube-vip v1.2.3
//! `pkg/cluster/cluster.go` `newHealthCheckHTTPClient`): vipr's control-plane health check
//! GETs `https://10.55.0.1:16443/livez` of the API server the test harness runs in the lab's
//! router namespace, whose serving certificate kube-apiserver generated and signed with its
//! own CA.
//!
//! ```text
//!  node ns: vipr ──(BGP)── router ns: BIRD, kube-apiserver 10.55.0.1:16443 (+ etcd)
//!        └──────(health GET /livez, TLS verified against the CA file)──┘
//! ```
//!
//! Asserts that with the API server's CA the check passes (the control-plane routes reach
//! BIRD), and with another CA it never does: the VIPs stay held back, and vipr's log names
//! the certificate verification error.

mod daemon_common;
mod k8s_common;

use std::path::Path;

use daemon_common::*;
use k8s_common::*;
use testbed::{Bird, Lab};

/// The last PEM certificate of `bundle` (kube-apiserver's generated CA) into `out`.
fn last_cert(bundle: &Path, out: &Path) {
    let text = std::fs::read_to_string(bundle).expect("serving certificate");
    let begin = text
        .rfind("-----BEGIN CERTIFICATE-----")
        .expect("a PEM certificate");
    std::fs::write(out, &text[begin..]).unwrap();
}

/// A self-signed CA that signed nothing of the API server's.
fn other_ca(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("other-ca.crt");
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other-ca",
        ])
        .arg("-keyout")
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&out)
        .output()
        .expect("openssl");
    assert!(ok.status.success(), "{ok:?}");
    out
}

fn env_with_ca(dir: &Path, ca: &Path) -> std::collections::BTreeMap<String, String> {
    let mut env = base_env(&dir.join("state"));
    for (k, v) in [
        (
            "control_plane_health_check_address",
            format!("https://{API_ADDR}:{API_PORT}/livez"),
        ),
        ("control_plane_health_check_period_seconds", "1".into()),
        ("control_plane_health_check_timeout_seconds", "2".into()),
        ("control_plane_health_check_failure_threshold", "1".into()),
        (
            "control_plane_health_check_ca_path",
            ca.to_str().unwrap().to_string(),
        ),
    ] {
        env.insert(k.into(), v);
    }
    env
}

#[test]
fn health_check_verifies_the_api_servers_certificate_against_the_ca() {
    let lab = Lab::new(1);
    let api = ApiServer::start(&lab.router);
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0]));
    let tmp = workdir();
    let dir = tmp.path.clone();

    // The API server's own CA: healthy, the routes arrive.
    let ca = dir.join("apiserver-ca.crt");
    last_cert(&api.serving_cert(), &ca);
    let mut vipr = Vipr::start(
        &lab.nodes[0],
        &env_with_ca(&dir, &ca),
        &[],
        &dir.join("right.log"),
    );
    let ctx = || format!("{}\n{}", bird.birdc("show route all"), vipr.log());
    eventually("the control-plane routes at BIRD", ctx, || {
        bird_route(&bird, &format!("{VIP4}/32"), "n0")
    });
    let s = vipr.wait_status("VIPs advertised", |s| {
        Vipr::vip(s, VIP4)["held_back"].is_null() && Vipr::vip(s, VIP6)["held_back"].is_null()
    });
    assert_eq!(s["ready"], true, "{s:#}");
    vipr.kill9();
    drop(vipr);

    // Another CA: never healthy; the log names the verification error.
    let other = other_ca(&dir);
    let vipr = Vipr::start(
        &lab.nodes[0],
        &env_with_ca(&dir, &other),
        &[],
        &dir.join("wrong.log"),
    );
    let ctx = || format!("{}\n{}", bird.birdc("show route all"), vipr.log());
    let line = eventually(
        "a health check failure naming the certificate error",
        ctx,
        || {
            vipr.log()
                .lines()
                .find(|l| l.contains("control-plane health check failed"))
                .map(str::to_string)
        },
    );
    eprintln!("the failure line: {line}");
    assert!(
        line.contains("invalid peer certificate") && line.contains("UnknownIssuer"),
        "{line}"
    );
    // Held back (the VIPs of the killed run it found are decided once the first check
    // answered: the status lists them from then on).
    vipr.wait_status("both VIPs held back", |s| {
        [VIP4, VIP6]
            .iter()
            .all(|v| Vipr::vip(s, v)["held_back"].is_string())
    });
    assert!(bird_route(&bird, &format!("{VIP4}/32"), "n0").is_none());
}
