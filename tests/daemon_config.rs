//! End-to-end tests of `vipr manager`'s configuration errors, running the real binary (no
//! namespace needed: a rejected configuration exits before touching the network):
//!
//! - bad kube-vip environment values (`bgp_as=abc`, `bgp_hold_time=2`, `vip_subnet=40`) and
//!   contradicting modes (`vip_arp=true` with `bgp_enable=true`) exit with status 2 and a
//!   message on stderr naming the variable and its value;
//! - a bad `--flag` value is named as the flag;
//! - messages say what is wrong in the setting's terms, never a parser's (`10.0.0.300` in a
//!   peer string: 300 is not in 0..=255; a password cut by `:` or `,` is hinted at);
//! - secrets are never echoed: `bgp_peers` with a password and a bad AS, and passwords that
//!   contain the list separators `:` and `,` (which kube-vip's format cannot carry), and the
//!   legacy `bgp_peerpass` next to a bad `bgp_peeras`;
//! - a `--config` YAML file with an unknown key or a bad value names `FILE:LINE`;
//! - kube-vip variables vipr does not implement: a mode it lacks (`vip_wireguard=true`, an
//!   `egress_podcidr` in the file) exits 2 naming the variable and its value; a harmless
//!   one (`vip_singlenode`) is named in exactly one warning line once logging starts (seen on the
//!   way to the missing-kubeconfig exit, which needs neither root nor a network).

mod daemon_common;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use daemon_common::vipr_bin;

/// A valid BGP control-plane config (nothing is started: every test breaks one thing).
fn good_env() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("bgp_enable", "true"),
        ("cp_enable", "true"),
        ("address", "192.0.2.10"),
        ("bgp_as", "65001"),
        ("bgp_peers", "10.55.0.1:65000::false"),
        ("prometheus_server", "127.0.0.1:0"),
        ("vipr_state_dir", "/nonexistent/vipr-config-test"),
    ])
}

fn run(env: &BTreeMap<&str, &str>, args: &[&str]) -> Output {
    let mut c = Command::new(vipr_bin());
    c.arg("manager")
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null());
    // A valid config would start the daemon: never wait on one forever.
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vipr");
    let done = testbed::wait_for(std::time::Duration::from_secs(10), || {
        child.try_wait().expect("wait").map(|_| ())
    });
    if done.is_none() {
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        panic!(
            "vipr kept running with env {env:?} args {args:?}; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.wait_with_output().expect("wait")
}

/// Runs vipr, asserts exit status 2 and returns stderr.
fn rejected(env: &BTreeMap<&str, &str>, args: &[&str]) -> String {
    let out = run(env, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "env {env:?} args {args:?}: expected exit status 2, got {}; stderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("invalid configuration"),
        "stderr does not say why: {stderr}"
    );
    stderr
}

#[test]
fn bad_environment_values_exit_2_naming_variable_and_value() {
    for (key, bad) in [
        ("bgp_as", "abc"),
        ("bgp_hold_time", "2"),
        ("vip_subnet", "40"),
        ("address", "192.0.2.300"),
        ("control_plane_health_check_address", "ftp://x"),
        (
            "vipr_bgp_attribute_sets",
            "gold;communities=65000:no-exprot",
        ),
        ("vipr_bgp_attribute_sets", "gold;large-communities=65000:1"),
        ("vipr_control_plane_bgp_attributes", "silver"),
    ] {
        let mut env = good_env();
        env.insert(key, bad);
        let err = rejected(&env, &[]);
        assert!(err.contains(key), "{key}={bad}: variable not named: {err}");
        assert!(err.contains(bad), "{key}={bad}: value not shown: {err}");
        assert!(
            err.contains(&format!("env {key}")),
            "{key}: origin not named: {err}"
        );
        eprintln!("{key}={bad} -> {}", err.trim());
    }
    // kube-vip also reads the upper-case spelling; the message names the variable as set.
    let mut env = good_env();
    env.remove("bgp_as");
    env.insert("BGP_AS", "x65001");
    let err = rejected(&env, &[]);
    assert!(err.contains("BGP_AS") && err.contains("x65001"), "{err}");
}

/// What is wrong is said in the setting's terms, never in a parser's: the bad part of an
/// address, a peer's bad address (its text, though `bgp_peers` is a secret), a hint at a
/// password cut by `:` or `,` (without a piece of it), the value of a flag that was given.
#[test]
fn error_messages_say_what_is_wrong_without_a_parsers_words() {
    const INTERNALS: &[&str] = &[
        "invalid IP address syntax",
        "invalid digit",
        "string scalar",
        "os error",
    ];
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "address",
            "192.0.2.300",
            &["env address: address=\"192.0.2.300\": not an IP address: 300 is not in 0..=255"],
        ),
        (
            "bgp_peers",
            "10.0.0.300:65000::false",
            &["bgp_peers=\"<redacted>\"", "peer #1: the address \"10.0.0.300\" is not an IP address: 300 is not in 0..=255"],
        ),
        (
            "bgp_peers",
            "10.55.0.1:65000:Zq7:pw9X:false",
            &["peer #1 (10.55.0.1): multihop is not true or false; does the password contain ':' or ','?"],
        ),
        (
            "bgp_hold_time",
            "9",
            &["env bgp_hold_time: bgp_hold_time=\"9\": must be more than bgp_keepalive_interval (10 when unset)"],
        ),
    ];
    for (key, bad, says) in cases {
        let mut env = good_env();
        env.insert(key, bad);
        let err = rejected(&env, &[]);
        for s in says {
            assert!(err.contains(s), "{key}: expected {s:?} in: {err}");
        }
        for w in INTERNALS {
            assert!(!err.contains(w), "{key}: a parser's words {w:?}: {err}");
        }
        assert!(
            !err.contains("Zq7") && !err.contains("pw9X"),
            "a password piece leaked: {err}"
        );
        eprintln!("{key} -> {}", err.trim());
    }
    // A YAML mapping where a value belongs, and a file that does not exist.
    let dir = testbed::TempDir::new("ve");
    let file = dir.write("map.yaml", "bgp_enable: true\nbgp_as: {asn: 65001}\n");
    let path = file.to_str().unwrap();
    let err = rejected(&BTreeMap::new(), &["--config", path]);
    assert!(
        err.contains(&format!("config file {path}: line 2 column 9 (in bgp_as): expected a value (text or a number), not a mapping or a list")),
        "{err}"
    );
    let err = rejected(
        &BTreeMap::new(),
        &["--config", "/nonexistent-vipr/vipr.yaml"],
    );
    assert!(
        err.contains("cannot read it: No such file or directory"),
        "{err}"
    );
    for w in INTERNALS {
        assert!(!err.contains(w), "{err}");
    }
}

/// A value that is not UTF-8 is refused naming the variable, not taken for unset, and not
/// echoed.
#[test]
fn a_value_that_is_not_utf8_exits_2_naming_the_variable() {
    use std::os::unix::ffi::OsStrExt;
    let mut c = Command::new(vipr_bin());
    c.arg("manager").env_clear().envs(good_env()).env(
        "bgp_peers",
        std::ffi::OsStr::from_bytes(b"10.55.0.1:65000:Zq7\xffpw9X:false"),
    );
    let out = c.stdin(Stdio::null()).output().expect("run vipr");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("env bgp_peers: bgp_peers=\"<not UTF-8>\": the value is not UTF-8 text"),
        "{err}"
    );
    assert!(!err.contains("Zq7") && !err.contains("pw9X"), "{err}");
}

#[test]
fn contradicting_modes_exit_2_naming_both_variables() {
    let mut env = good_env();
    env.insert("vip_arp", "true");
    let err = rejected(&env, &[]);
    assert!(
        err.contains("vip_arp") && err.contains("bgp_enable"),
        "both variables must be named: {err}"
    );
    assert!(err.contains("true"), "the values must be shown: {err}");
    eprintln!("vip_arp+bgp_enable -> {}", err.trim());

    // No mode at all.
    let mut env = good_env();
    env.remove("bgp_enable");
    let err = rejected(&env, &[]);
    assert!(err.contains("bgp_enable"), "{err}");
}

#[test]
fn bad_flag_value_is_named_as_the_flag() {
    let mut env = good_env();
    env.remove("bgp_as");
    let err = rejected(&env, &["--bgp-as", "65001x"]);
    assert!(err.contains("--bgp-as") && err.contains("65001x"), "{err}");
    // kube-vip's flag spelling is accepted; the message names the flag as it was given.
    let err = rejected(&env, &["--localAS", "65001y"]);
    assert!(err.contains("--localAS") && err.contains("65001y"), "{err}");
    // Two spellings of one setting: refused, naming both.
    let err = rejected(&env, &["--localAS", "65001", "--bgp-as", "65002"]);
    assert!(
        err.contains("--localAS") && err.contains("--bgp-as"),
        "{err}"
    );
}

#[test]
fn secrets_are_never_echoed() {
    const PW: &str = "S3cretPw";
    for peers in [
        // A password and a bad AS.
        format!("10.55.0.1:notanas:{PW}:false"),
        format!("10.55.0.1:65000::false,10.55.0.2:6500O:{PW}:true"),
        // A bad multihop flag after the password.
        format!("10.55.0.1:65000:{PW}:perhaps"),
        // Passwords containing the separators: their fragments must not come back either.
        format!("10.55.0.1:65000:S3cret:{PW}:false"),
        format!("10.55.0.1:65000:S3cret,{PW}:false"),
        format!("10.55.0.1:65000:S3cret:x:{PW}"),
    ] {
        let mut env = good_env();
        env.insert("bgp_peers", &peers);
        let err = rejected(&env, &[]);
        assert!(
            err.contains("bgp_peers"),
            "{peers}: variable not named: {err}"
        );
        assert!(!err.contains(PW), "{peers}: the password leaked: {err}");
        assert!(
            !err.contains("S3cret"),
            "{peers}: part of the password leaked: {err}"
        );
        eprintln!("bgp_peers=<secret> -> {}", err.trim());
    }
    // The legacy single peer: bgp_peerpass next to a bad bgp_peeras.
    let mut env = good_env();
    env.remove("bgp_peers");
    env.insert("bgp_peeraddress", "10.55.0.1");
    env.insert("bgp_peeras", "sixtyfive");
    env.insert("bgp_peerpass", PW);
    let err = rejected(&env, &[]);
    assert!(
        err.contains("bgp_peeras") && err.contains("sixtyfive"),
        "{err}"
    );
    assert!(!err.contains(PW), "bgp_peerpass leaked: {err}");
}

#[test]
fn config_file_errors_name_file_and_line() {
    let dir = testbed::TempDir::new("vc");
    // Lists are allowed; line 8 has a typo.
    let file = dir.write(
        "vipr.yaml",
        "# vipr test config\n\
         bgp_enable: true\n\
         cp_enable: true\n\
         address: 192.0.2.10\n\
         bgp_as: 65001\n\
         bgp_peers:\n  - 10.55.0.1:65000::false\n\
         bgp_hold_tmie: 3\n",
    );
    let path = file.to_str().unwrap();
    let err = rejected(&BTreeMap::new(), &["--config", path]);
    assert!(
        err.contains(&format!("{path}:8")) && err.contains("bgp_hold_tmie"),
        "expected {path}:8 and the key: {err}"
    );
    eprintln!("unknown key -> {}", err.trim());

    // A bad value in the file: named with its line and value.
    let file = dir.write(
        "bad.yaml",
        "bgp_enable: true\ncp_enable: true\naddress: 192.0.2.10\nbgp_peers:\n  - 10.55.0.1:65000::false\nbgp_as: abc\n",
    );
    let path = file.to_str().unwrap();
    let err = rejected(&BTreeMap::new(), &["--config", path]);
    assert!(
        err.contains(&format!("{path}:6")) && err.contains("bgp_as") && err.contains("abc"),
        "{err}"
    );

    // Not YAML at all, and a missing file: the file is named.
    let file = dir.write("broken.yaml", "bgp_enable: [true\n");
    let path = file.to_str().unwrap();
    let err = rejected(&BTreeMap::new(), &["--config", path]);
    assert!(err.contains(path), "{err}");
    let err = rejected(&BTreeMap::new(), &["--config", "/nonexistent/vipr.yaml"]);
    assert!(err.contains("/nonexistent/vipr.yaml"), "{err}");
}

#[test]
fn missing_kubeconfig_exits_2_naming_the_setting() {
    // Services need the API server; no in-cluster account, no KUBECONFIG, no ~/.kube.
    let mut env = good_env();
    env.insert("svc_enable", "true");
    env.insert("k8s_config_file", "/nonexistent/vipr-test/admin.conf");
    env.insert("HOME", "/nonexistent/vipr-test-home");
    let err = rejected(&env, &[]);
    assert!(
        err.contains("k8s_config_file") && err.contains("/nonexistent/vipr-test/admin.conf"),
        "{err}"
    );
}

#[test]
fn kube_vip_modes_vipr_lacks_exit_2_naming_variable_and_value() {
    let mut env = good_env();
    env.insert("vip_wireguard", "true");
    let err = rejected(&env, &[]);
    assert!(
        err.contains("env vip_wireguard: vip_wireguard=\"true\": WireGuard mode is not supported")
            && err.contains("would change traffic"),
        "{err}"
    );
    eprintln!("vip_wireguard=true -> {}", err.trim());

    // The same from the file, with its line.
    let dir = testbed::TempDir::new("vk");
    let file = dir.write(
        "vipr.yaml",
        "bgp_enable: true\negress_podcidr: 10.244.0.0/16\n",
    );
    let path = file.to_str().unwrap();
    let mut env = good_env();
    env.remove("bgp_enable");
    let err = rejected(&env, &["--config", path]);
    assert!(
        err.contains(&format!(
            "{path}:2: egress_podcidr=\"10.244.0.0/16\": egress"
        )),
        "{err}"
    );
}

#[test]
fn a_harmless_kube_vip_variable_is_named_in_one_warning_line() {
    // As missing_kubeconfig_exits_2_naming_the_setting: logging starts, then vipr exits.
    let mut env = good_env();
    env.insert("svc_enable", "true");
    env.insert("k8s_config_file", "/nonexistent/vipr-test/admin.conf");
    env.insert("HOME", "/nonexistent/vipr-test-home");
    env.insert("vip_singlenode", "true");
    env.insert("vip_wireguard", "false");
    let out = run(&env, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["vip_singlenode=\"true\"", "vip_wireguard=\"false\""] {
        let lines: Vec<&str> = all.lines().filter(|l| l.contains(name)).collect();
        assert_eq!(lines.len(), 1, "{name}: {all}");
        assert!(
            lines[0].contains("WARN") && lines[0].contains("this setting is ignored"),
            "{}",
            lines[0]
        );
    }
}
