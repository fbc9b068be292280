//! The command line: combinations the generator refuses (and why), and re-rendering from
//! the command in a manifest's header.

use super::*;

#[test]
fn rejected_combinations_say_why() {
    let err = |args: &[&str]| opts(args).expect_err("must be rejected").to_string();
    assert!(err(&[&["pod", "--nodename", "n1"][..], BGP_CP].concat()).contains("spec.nodeName"));
    assert!(err(&[&["pod", "--inCluster"][..], BGP_CP].concat()).contains("static pod"));
    assert!(err(&[&["pod", "--taint"][..], BGP_CP].concat()).contains("daemonset"));
    assert!(err(&[
        "daemonset",
        "--bgp",
        "--services",
        "--bgpRouterID",
        "10.0.0.2",
        "--bgppeers",
        "10.0.0.1:65000::false"
    ])
    .contains("differ per node"));
    assert!(err(&[&["daemonset", "--name", "Vipr"][..], BGP_CP].concat()).contains("DNS label"));
    // A DaemonSet runs on every node: never with a kubeconfig from the host.
    assert!(err(&[&["daemonset", "--super-admin"][..], ARP_CP].concat()).contains("ServiceAccount"));
    assert!(err(&[
        &["daemonset", "--k8sConfigPath", "/etc/kubernetes/admin.conf"][..],
        ARP_CP
    ]
    .concat())
    .contains("ServiceAccount"));
    // Nothing to put in a Secret.
    assert!(err(&[&["secret"][..], BGP_CP].concat()).contains("no password"));
    // The daemon's own validation, with the flag named.
    let e = err(&["pod", "--arp", "--vip", "10.0.0.1", "--controlplane"]);
    assert!(
        e.starts_with("invalid configuration") && e.contains("vip_interface"),
        "{e}"
    );
    let e = err(&[
        "pod",
        "--bgp",
        "--controlplane",
        "--vip",
        "10.0.0.1",
        "--localAS",
        "x",
        "--bgppeers",
        "10.0.0.1:65000::false",
    ]);
    assert!(e.contains("--localAS") && e.contains("\"x\""), "{e}");
    assert!(matches!(
        opts(&["pod", "--bgp", "--bgppeers", "10.0.0.1:65000::false"]),
        Err(ManifestError::Config(_))
    ));
}

/// Splits a command line the way a POSIX shell would for the quoting `shell_quote` writes.
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if !quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ' ' if !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The header's command line, with each hidden password given again (in order).
fn header_words(rendered: &str, passwords: &[&str]) -> Vec<String> {
    let line = rendered
        .lines()
        .nth(1)
        .expect("header")
        .trim_start_matches("#   ");
    let mut pw = passwords.iter();
    let words: Vec<String> = split_words(line)
        .into_iter()
        .map(|w| match w.split_once(&format!("={}", secret::HIDDEN)) {
            Some((flag, "")) => format!("{flag}={}", pw.next().expect("a password")),
            _ => w,
        })
        .collect();
    assert!(pw.next().is_none(), "every password is hidden: {line}");
    assert_eq!(&words[..2], &["vipr", "manifest"], "{line}");
    words
}

#[test]
fn the_header_command_renders_the_same_manifest_again() {
    let cases: Vec<Vec<&str>> = vec![
        [
            &["pod"][..],
            ARP_CP,
            &["--super-admin", "--image", "registry.example/vipr:1"],
        ]
        .concat(),
        vec![
            "daemonset",
            "--inCluster",
            "--taint",
            "--bgp",
            "--services",
            "--bgppeers",
            "[2001:db8::1]:65000:it's:false",
            "--name",
            "vipr-svc",
        ],
        [&["rbac"][..], ARP_CP, &["--services"]].concat(),
    ];
    for args in cases {
        let first = render_args(&args);
        let pw: &[&str] = if args.contains(&"--bgppeers") {
            &["[2001:db8::1]:65000:it's:false"]
        } else {
            &[]
        };
        let words = header_words(&first, pw);
        let again: Vec<&str> = words[2..].iter().map(String::as_str).collect();
        assert_eq!(render_args(&again), first, "{words:?}");
    }
    assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
    assert_eq!(split_words(&shell_quote("a b'c")), vec!["a b'c"]);
}
