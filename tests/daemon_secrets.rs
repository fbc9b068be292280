//! End-to-end: a BGP password appears in nothing vipr prints, serves or renders.
//!
//! ```text
//!   router ns (BIRD 10.55.0.1, AS 65000, MD5)  ── br0 ──  node0 ns (vipr, 10.55.0.11)
//! ```
//!
//! The real `vipr manager` runs at log level trace with, in turn:
//! 1. the password inside `bgp_peers` (environment);
//! 2. the legacy single peer's `bgp_peerpass` (environment);
//! 3. a `--config` file with a numeric password `bgp_peerpass: 0766554433` (a YAML 1.1 octal)
//!    and `bgp_as: 1.10` (asdot 65546): BIRD is told exactly that password and AS, so the
//!    session comes up only if both are read as written; then SIGHUP with the file broken
//!    next to a fourth password (refused, logged).
//!
//! For each, once BIRD has the session and the VIP route, every output is collected: the
//! log (trace), `/status`, `/metrics`, `/healthz`, `/readyz` (fetched inside the node's
//! namespace on 127.0.0.1), `vipr status` and `vipr status --json`, `vipr manifest
//! pod|daemonset|rbac` rendered from the same settings, and the error messages of a start
//! with a broken file and with a bad AS next to the password. No password, and no part of
//! one, may occur in any of them; `vipr manifest secret` (the one place meant to hold them)
//! must hold each.

mod daemon_common;
mod k8s_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use daemon_common::*;
use k8s_common::{flags_of, vipr_manifest};
use testbed::{Bird, Lab, Netns};

const IN_PEERS: &str = "h15-in-peers-Pw";
const GLOBAL: &str = "h15-global-Pw";
const NUMERIC: &str = "0766554433";
const BROKEN: &str = "h15-broken-Pw";
/// Every password, and the tell-tale parts: the shared marker, and the numeric password
/// without its leading zero (what a number conversion would print).
const NEEDLES: &[&str] = &[IN_PEERS, GLOBAL, NUMERIC, BROKEN, "h15-", "766554433"];

/// BIRD's config for node0 with this password and node AS.
fn bird_conf(password: &str, node_as: u32) -> String {
    bird_router_conf(&[0])
        .replace(
            "passive on;",
            &format!("passive on; password \"{password}\";"),
        )
        .replace(&format!("as {NODE_AS};"), &format!("as {node_as};"))
}

/// Everything a user or a scraper can see of a running vipr, labelled.
fn outputs(ns: &Netns, vipr: &Vipr) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in ["/status", "/metrics", "/healthz", "/readyz"] {
        let (code, body) = http_get(ns, HTTP, path).unwrap_or_else(|| panic!("GET {path}"));
        assert!(
            code == 200 || path == "/readyz",
            "GET {path}: {code}\n{body}"
        );
        out.push((format!("GET {path}"), body));
    }
    for json in [false, true] {
        let mut args = vec![vipr_bin(), "status", "--addr", HTTP];
        if json {
            args.push("--json");
        }
        let o = ns_run(&ns.name, &args);
        assert!(o.status.success(), "vipr status: {o:?}");
        out.push((
            format!("vipr status json={json}"),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ));
    }
    out.push(("log".into(), vipr.run_log()));
    out
}

/// `vipr manifest pod|daemonset|rbac` for these settings; checks that `secret` holds
/// `password` (in both forms).
fn manifests(settings: &BTreeMap<String, String>, password: &str) -> Vec<(String, String)> {
    let mut s = settings.clone();
    for k in ["vipr_state_dir", "vip_loglevel"] {
        s.remove(k);
    }
    let flags = flags_of(&s);
    let render = |kind: &[&str]| {
        let mut a: Vec<&str> = kind.to_vec();
        a.extend(flags.iter().map(String::as_str));
        vipr_manifest(&a)
    };
    let out: Vec<(String, String)> = [
        &["pod"][..],
        &["daemonset"],
        &["daemonset", "--inCluster", "--taint"],
        &["rbac"],
    ]
    .iter()
    .map(|k| (format!("vipr manifest {}", k.join(" ")), render(k)))
    .collect();
    assert_nowhere("manifests", &out);
    for kind in [&["secret"][..], &["secret", "--host-file"]] {
        let y = render(kind);
        assert!(
            y.contains(password),
            "{kind:?} must hold the password:\n{y}"
        );
    }
    out
}

fn assert_nowhere(what: &str, outputs: &[(String, String)]) {
    for (label, text) in outputs {
        assert!(!text.is_empty(), "{what}: {label} is empty");
        for n in NEEDLES {
            assert!(!text.contains(n), "{what}: {n:?} found in {label}:\n{text}");
        }
    }
    eprintln!("{what}: checked {} outputs", outputs.len());
}

/// Starts vipr with `env` and `args`, waits for the session and the route at BIRD, and
/// returns it with its outputs.
fn run(
    lab: &Lab,
    bird: &Bird,
    dir: &Path,
    env: &BTreeMap<String, String>,
    args: &[&str],
) -> (Vipr, Vec<(String, String)>) {
    let vipr = Vipr::start(&lab.nodes[0], env, args, &dir.join("vipr.log"));
    let ctx = || bird.birdc("show protocols all n0");
    eventually("the VIP route over the MD5 session", ctx, || {
        bird_route(bird, &format!("{VIP4}/32"), "n0")
    });
    vipr.wait_status("the session Established", |s| {
        Vipr::peer(s, "10.55.0.1")["state"] == "Established"
    });
    let out = outputs(&lab.nodes[0], &vipr);
    (vipr, out)
}

fn stop(mut vipr: Vipr) -> String {
    vipr.signal(libc::SIGTERM);
    assert_eq!(vipr.wait_exit(Duration::from_secs(10)).code(), Some(0));
    vipr.run_log()
}

#[test]
fn passwords_appear_in_no_log_endpoint_status_manifest_or_error() {
    let lab = Lab::new(1);
    let bird = Bird::start(&lab.router, &bird_conf(IN_PEERS, NODE_AS));
    let dir = workdir();
    let mut env = base_env(&dir.join("state"));
    env.insert("vip_loglevel".into(), "trace".into());

    // 1. The password inside bgp_peers.
    env.insert(
        "bgp_peers".into(),
        format!("10.55.0.1:65000:{IN_PEERS}:false"),
    );
    let (vipr, mut out) = run(&lab, &bird, &dir.path, &env, &[]);
    out.extend(manifests(&env, IN_PEERS));
    out.push(("log after SIGTERM".into(), stop(vipr)));
    assert_nowhere("bgp_peers password", &out);

    // 2. The legacy peer's bgp_peerpass.
    bird.reconfigure(&bird_conf(GLOBAL, NODE_AS));
    env.remove("bgp_peers");
    for (k, v) in [
        ("bgp_peeraddress", "10.55.0.1"),
        ("bgp_peeras", "65000"),
        ("bgp_peerpass", GLOBAL),
    ] {
        env.insert(k.into(), v.into());
    }
    let (vipr, mut out) = run(&lab, &bird, &dir.path, &env, &[]);
    out.extend(manifests(&env, GLOBAL));
    out.push(("log after SIGTERM".into(), stop(vipr)));
    assert_nowhere("bgp_peerpass", &out);

    // 3. A file with a numeric password and an asdot AS, both kept as written.
    bird.reconfigure(&bird_conf(NUMERIC, 65546));
    let file_env: BTreeMap<String, String> = env
        .iter()
        .filter(|(k, _)| !["bgp_peerpass", "bgp_as"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let yaml = format!("bgp_as: 1.10\nbgp_peerpass: {NUMERIC}\n");
    let file = dir.write("vipr.yaml", &yaml);
    let file = file.to_str().unwrap();
    let (mut vipr, mut out) = run(&lab, &bird, &dir.path, &file_env, &["--config", file]);
    let mut as_given = env.clone();
    as_given.insert("bgp_as".into(), "1.10".into());
    as_given.insert("bgp_peerpass".into(), NUMERIC.into());
    out.extend(manifests(&as_given, NUMERIC));
    // SIGHUP with the file broken next to a new password: refused, the session stays.
    let broken = format!(
        "bgp_as: 1.10\nbgp_peerpass: \"{BROKEN}\nbgp_peers: [10.55.0.1:65000:{BROKEN}:false\n"
    );
    dir.write("vipr.yaml", &broken);
    vipr.signal(libc::SIGHUP);
    eventually(
        "the broken file refused",
        || vipr.run_log(),
        || {
            vipr.run_log()
                .contains("SIGHUP: keeping the running configuration")
                .then_some(())
        },
    );
    assert!(
        vipr.run_log().contains("(in bgp_peerpass)"),
        "{}",
        vipr.run_log()
    );
    assert!(bird_route(&bird, &format!("{VIP4}/32"), "n0").is_some());
    out.extend(outputs(&lab.nodes[0], &vipr));
    out.push(("log after SIGTERM".into(), stop(vipr)));

    // Errors at start: the broken file; a password alone on a line (a "key"); a bad AS
    // next to passwords.
    let mut errors = Vec::new();
    let key_line = dir.write("key.yaml", &format!("bgp_enable: true\n{BROKEN}: x\n"));
    for f in [dir.join("vipr.yaml"), key_line] {
        let o = ns_run(
            &lab.nodes[0].name,
            &[vipr_bin(), "manager", "--config", f.to_str().unwrap()],
        );
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        errors.push((
            "start with a broken file".into(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ));
    }
    let mut bad = env.clone();
    bad.insert(
        "bgp_peers".into(),
        format!("10.55.0.1:sixtyfive:{IN_PEERS}:false"),
    );
    let o = lab.nodes[0]
        .command(&[vipr_bin(), "manager"])
        .env_clear()
        .envs(&bad)
        .output()
        .expect("run vipr");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let text = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(text.contains("bgp_peers"), "{text}");
    errors.push(("start with a bad AS".into(), text));
    out.extend(errors);
    assert_nowhere("numeric password, asdot AS, broken file, errors", &out);
}
