//! Passwords: never in a pod, a DaemonSet, RBAC, a header comment or an error; only in the
//! Secret (`vipr manifest secret`) or the static pod's host file (`--host-file`), from
//! which the daemon reads them back exactly as given.

use super::*;

/// Distinctive passwords: plain, numeric (a YAML 1.1 octal), and YAML/shell syntax.
const GLOBAL: &str = "Gl0bal-h15pw";
const PEER: &str = "Peer-h15pw";
const NUMERIC: &str = "01234567";
const SYNTAX: &str = "it's #h15: {pw}";

/// Settings holding every kind of password, per mode, with (the password in `bgp_peers`,
/// `bgp_peerpass`).
fn cases() -> Vec<(Vec<String>, (&'static str, &'static str))> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (
            s(&[
                "--bgp",
                "--controlplane",
                "--vip",
                "192.0.2.10",
                "--bgppeers",
                &format!("10.0.0.1:65000:{PEER}:false,[2001:db8::1]:65000::true"),
                "--peerAddress",
                "10.0.0.3",
                "--peerPass",
                GLOBAL,
            ]),
            (PEER, GLOBAL),
        ),
        (
            s(&[
                "--bgp",
                "--services",
                "--bgppeers",
                &format!("10.0.0.1:65000:{NUMERIC}:false"),
                "--peerAddress",
                "10.0.0.3",
                "--peerPass",
                SYNTAX,
            ]),
            (NUMERIC, SYNTAX),
        ),
    ]
}

fn render_kind(kind: &str, extra: &[&str], case: &[String]) -> String {
    let mut a: Vec<&str> = vec![kind];
    a.extend_from_slice(extra);
    a.extend(case.iter().map(String::as_str));
    render_args(&a)
}

#[test]
fn passwords_are_in_no_pod_daemonset_rbac_header_or_error() {
    let all = [GLOBAL, PEER, NUMERIC, SYNTAX];
    for (case, (in_peers, global)) in cases() {
        let mut outputs = vec![
            render_kind("pod", &[], &case),
            render_kind("daemonset", &[], &case),
            render_kind("daemonset", &["--inCluster", "--taint"], &case),
            render_kind("rbac", &[], &case),
        ];
        // Errors: a setting the daemon refuses next to the passwords.
        let mut bad: Vec<&str> = vec!["pod", "--localAS", "x"];
        bad.extend(case.iter().map(String::as_str));
        outputs.push(opts(&bad).expect_err("refused").to_string());
        for out in &outputs {
            for pw in all {
                assert!(!out.contains(pw), "{pw:?} in:\n{out}");
            }
            assert!(!out.contains("h15"), "part of a password in:\n{out}");
        }
        // Where they are: the Secret and the host file hold each given password as given.
        for extra in [&[][..], &["--host-file"][..]] {
            let out = render_kind("secret", extra, &case);
            let mut layers = Layers::default();
            if extra.is_empty() {
                let d = docs(&out);
                assert_eq!(d.len(), 1, "{out}");
                assert_eq!(d[0]["kind"], "Secret");
                let data = d[0]["stringData"].as_object().expect("stringData");
                for (k, v) in data {
                    let key = crate::config::keys::find(k).expect("a setting");
                    layers.set(key, v.as_str().unwrap().into(), Origin::Env(k.clone()));
                }
            } else {
                layers
                    .add_yaml("/etc/kubernetes/vipr-bgp.yaml", &out)
                    .unwrap();
            }
            let peers = layers.get("bgp_peers").expect("bgp_peers").value.clone();
            let pass = layers
                .get("bgp_peerpass")
                .expect("bgp_peerpass")
                .value
                .clone();
            assert!(peers.contains(&format!(":{in_peers}:")), "{peers}");
            assert_eq!(pass, global, "read back exactly:\n{out}");
            // The header keeps the command line, passwords hidden.
            let header: String = out.lines().take_while(|l| l.starts_with('#')).collect();
            for pw in all {
                assert!(!header.contains(pw), "{header}");
            }
        }
    }
}

#[test]
fn daemonset_reads_passwords_from_the_secret_and_static_pod_from_the_host() {
    let case = &cases()[0].0;
    let mut a: Vec<&str> = vec!["daemonset"];
    a.extend(case.iter().map(String::as_str));
    let ds = daemonset(&a[1..]);
    let spec = ds.spec.unwrap().template.spec.unwrap();
    let c = container(&spec);
    let refs: Vec<(String, String, String)> = c
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let r = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
            Some((e.name.clone(), r.name.clone(), r.key.clone()))
        })
        .collect();
    let want = |n: &str| (n.to_string(), "vipr-bgp".to_string(), n.to_string());
    assert_eq!(refs, vec![want("bgp_peers"), want("bgp_peerpass")]);
    assert!(!env_map(c).contains_key("bgp_peers"));
    assert_eq!(env_map(c)["bgp_peeraddress"], "10.0.0.3");

    let mut a: Vec<&str> = vec!["pod"];
    a.extend(case.iter().map(String::as_str));
    let spec = pod(&a[1..]).spec.unwrap();
    let c = container(&spec);
    let file = "/etc/kubernetes/vipr-bgp.yaml";
    assert_eq!(
        c.args.as_deref(),
        Some(&["manager".into(), "--config".into(), file.to_string()][..])
    );
    assert_eq!(host_paths(&spec), vec!["/run/vipr", file]);
    let m = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == file)
        .expect("mount");
    assert_eq!(m.read_only, Some(true));
    assert!(
        c.env
            .iter()
            .flatten()
            .all(|e| e.value_from.is_none()
                || e.value_from.as_ref().unwrap().secret_key_ref.is_none())
    );
    let env = env_map(c);
    assert!(!env.contains_key("bgp_peers") && !env.contains_key("bgp_peerpass"));

    // Peers without a password stay a plain value, with nothing to hide.
    let y = render_args(&[&["daemonset"][..], BGP_CP].concat());
    assert!(y.contains("value: 10.0.0.1:65000::false"), "{y}");
    assert!(
        !y.contains("secretKeyRef") && !y.contains(secret::HIDDEN),
        "{y}"
    );
    let spec = pod(BGP_CP).spec.unwrap();
    assert_eq!(
        container(&spec).args.as_deref(),
        Some(&["manager".to_string()][..])
    );
}
