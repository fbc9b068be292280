//! The manifests against a real kube-apiserver 1.20.2 (`--authorization-mode RBAC`):
//!
//! - every rendered file (`manifests/`, `labs/clab/`) is exactly what the command in its
//!   header renders today (so the examples follow the generator);
//! - every rendered example in `manifests/` and the kustomization pass
//!   `kubectl apply --dry-run=server` (kubectl validates against the server's own OpenAPI
//!   schema, so a field the 1.20 server does not know fails), and so do freshly rendered
//!   variants (super-admin static pod, Service-namespace and per-Service-Lease RBAC, BGP
//!   passwords: the Secret, the DaemonSet reading it, the static pod reading its host file);
//! - for each mode the RBAC that `vipr manifest rbac` renders from the daemon's own settings,
//!   applied unchanged, is enough: vipr runs as that ServiceAccount (a token from the
//!   TokenRequest API) and works without a single permission error:
//!   BGP + Services (route at BIRD, Service status written), ARP with Lease election (the
//!   Lease won, the VIP on eth0; the Lease rules are limited by name), BGP with peers from
//!   node annotations (the session as annotated, the VIP at BIRD);
//! - and no more than needed: SelfSubjectAccessReviews as each ServiceAccount are refused
//!   for neighbouring permissions (other verbs, other resources, other Leases, Secrets), and
//!   a plain GET of something the mode does not need answers 403.

mod daemon_common;
mod k8s_common;

use std::path::{Path, PathBuf};

use daemon_common::*;
use k8s_common::*;
use serde_json::json;
use testbed::{Bird, Lab, Netns};

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

fn dry_run(router: &Netns, api: &ApiServer, what: &[&str]) -> String {
    let mut args = vec!["apply", "--dry-run=server"];
    args.extend_from_slice(what);
    let (ok, text) = kubectl(router, api, &args);
    assert!(ok, "kubectl {args:?} failed:\n{text}");
    assert!(text.contains("(server dry run)"), "{text}");
    text
}

/// Splits a command line as a POSIX shell would, for the quoting `vipr manifest` writes.
fn split_words(s: &str) -> Vec<String> {
    let (mut words, mut cur, mut in_word, mut quoted) = (Vec::new(), String::new(), false, false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => (quoted, in_word) = (!quoted, true),
            '\\' if !quoted => cur.extend(chars.next()),
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

fn rendered_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rendered_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml")
            && std::fs::read_to_string(&p)
                .unwrap()
                .starts_with("# Rendered by vipr")
        {
            out.push(p);
        }
    }
}

#[test]
fn rendered_files_are_what_their_header_command_renders_today() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rendered_files(&root.join("manifests"), &mut files);
    rendered_files(&root.join("labs/clab"), &mut files);
    assert!(files.len() >= 6, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let line = text.lines().nth(1).unwrap().trim_start_matches('#').trim();
        let words = split_words(line);
        assert_eq!(&words[..2], ["vipr", "manifest"], "{}", f.display());
        let args: Vec<&str> = words[2..].iter().map(String::as_str).collect();
        assert!(
            vipr_manifest(&args) == text,
            "{} is stale: re-render it with `{line} > {}`",
            f.display(),
            f.display()
        );
    }
}

#[test]
fn every_manifest_passes_server_side_dry_run() {
    let lab = Lab::new(0);
    let api = ApiServer::start(&lab.router);
    // The static pods use kube-system's default ServiceAccount (kube-controller-manager
    // creates it in a real cluster; a kubelet's mirror pod skips the check).
    api.create(
        "/api/v1/namespaces/kube-system/serviceaccounts",
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let text = dry_run(&lab.router, &api, &["-f", f.to_str().unwrap()]);
        eprintln!("{}:\n{text}", f.display());
    }
    let text = dry_run(
        &lab.router,
        &api,
        &["-k", manifests_dir().to_str().unwrap()],
    );
    for obj in [
        "serviceaccount/vipr",
        "clusterrole.rbac.authorization.k8s.io/vipr",
        "daemonset.apps/vipr",
    ] {
        assert!(text.contains(obj), "kustomization: {obj} missing:\n{text}");
    }
    // Variants rendered now.
    api.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}),
    );
    let dir = workdir();
    let pw = [
        "--bgppeers",
        "10.0.0.1:65000:Dry-run-pw:false",
        "--peerAddress",
        "10.0.0.3",
        "--peerPass",
        "01234567",
    ];
    let with_pw = |kind: &'static str| {
        let mut a = vec![kind, "--bgp", "--services", "--name", "vipr-md5"];
        a.extend_from_slice(&pw);
        a
    };
    let (secret, ds, pod) = (with_pw("secret"), with_pw("daemonset"), with_pw("pod"));
    let variants: [&[&str]; 11] = [
        &secret,
        &ds,
        &pod,
        &[
            "pod",
            "--vip",
            "10.0.0.100",
            "--interface",
            "eth0",
            "--controlplane",
            "--arp",
            "--leaderElection",
            "--super-admin",
            "--services",
        ],
        &[
            "rbac",
            "--vip",
            "10.0.0.100",
            "--interface",
            "eth0",
            "--controlplane",
            "--arp",
            "--leaderElection",
            "--services",
            "--servicesElection",
            "--name",
            "vipr-l2",
        ],
        &[
            "rbac",
            "--bgp",
            "--services",
            "--svc-namespace",
            "web",
            "--bgppeers",
            "10.0.0.1:65000::false",
            "--name",
            "vipr-web",
        ],
        &[
            "daemonset",
            "--bgp",
            "--controlplane",
            "--vip",
            "192.0.2.10",
            "--annotations",
            "metal.equinix.com",
            "--lbEnable",
            "--vipr-bgp-listen",
            ":179",
            "--name",
            "vipr-metal",
        ],
        // kube-vip's documented command lines (kube-vip.io/docs/installation/static and
        // /daemonset), unchanged but for documentation addresses: ARP and BGP static pods,
        // the k3s DaemonSet and its RBAC.
        &[
            "pod",
            "--interface",
            "eth0",
            "--address",
            "192.0.2.40",
            "--controlplane",
            "--services",
            "--arp",
            "--leaderElection",
        ],
        &[
            "pod",
            "--interface",
            "eth0",
            "--address",
            "192.0.2.40",
            "--controlplane",
            "--services",
            "--bgp",
            "--localAS",
            "65000",
            "--bgpRouterID",
            "192.0.2.2",
            "--bgppeers",
            "192.0.2.10:65000::false,192.0.2.11:65000::false",
        ],
        &[
            "rbac",
            "--interface",
            "eth0",
            "--address",
            "192.0.2.40",
            "--inCluster",
            "--taint",
            "--controlplane",
            "--services",
            "--arp",
            "--leaderElection",
        ],
        // The same DaemonSet with kube-vip v1.2.3's newer flags: settings vipr implements,
        // and the warned ones rendered as kube-vip's variables.
        &[
            "daemonset",
            "--interface",
            "eth0",
            "--address",
            "192.0.2.40",
            "--inCluster",
            "--taint",
            "--controlplane",
            "--services",
            "--arp",
            "--leaderElection",
            "--leaseDuration",
            "20",
            "--leaseRenewDuration",
            "12",
            "--leaseRetry",
            "3",
            "--vipSubnet",
            "32",
            "--enableLoadBalancer",
            "--prometheusHTTPServer",
            ":2112",
            "--servicesLeaseName",
            "plndr-svcs-lock",
            "--enableNodeLabeling",
            "--preserveVipOnLeadershipLoss=false",
            "--leaderElectionType",
            "kubernetes",
            "--lbClassNameLegacyHandling=true",
            "--wireguard=false",
        ],
    ];
    for (i, args) in variants.iter().enumerate() {
        let f = dir.write(&format!("variant{i}.yaml"), &vipr_manifest(args));
        dry_run(&lab.router, &api, &["-f", f.to_str().unwrap()]);
    }
    // kube-vip's warned flags reach the container as kube-vip's variables (the daemon warns).
    let newer = vipr_manifest(variants[10]);
    for var in [
        "enable_node_labeling",
        "svc_leasename",
        "vip_subnet",
        "lb_enable",
    ] {
        assert!(newer.contains(&format!("name: {var}\n")), "{var}:\n{newer}");
    }
    assert!(!newer.contains("name: vip_wireguard"), "{newer}");
    // A dry run leaves nothing behind.
    assert!(api
        .get("/apis/apps/v1/namespaces/kube-system/daemonsets/vipr")
        .is_none());
    assert!(api
        .get("/apis/rbac.authorization.k8s.io/v1/clusterroles/vipr")
        .is_none());
}

#[test]
fn generated_rbac_is_enough_and_no_more_for_each_mode() {
    let lab = Lab::new(3);
    let api = ApiServer::start(&lab.router);
    let bird = Bird::start(&lab.router, &bird_router_conf(&[0, 2]));
    let dir = workdir();
    let (d0, d1, d2) = (workdir(), workdir(), workdir());

    // Mode A, node0: BGP + Services.
    let env_a = bgp_svc_env(&d0.join("state"), Path::new("/placeholder"), "node0");
    let (kc_a, tok_a) = apply_rbac_and_login(&lab, &api, &dir.path, "vipr-bgp", &env_a);
    let mut env_a = env_a;
    env_a.insert("k8s_config_file".into(), kc_a.to_str().unwrap().into());
    // Mode B, node1: ARP with a Lease-elected control-plane VIP.
    let vip_b = "10.55.0.100";
    let env_b = arp_cp_env(&d1.join("state"), Path::new("/placeholder"), "node1", vip_b);
    let (kc_b, tok_b) = apply_rbac_and_login(&lab, &api, &dir.path, "vipr-arp", &env_b);
    let mut env_b = env_b;
    env_b.insert("k8s_config_file".into(), kc_b.to_str().unwrap().into());
    // Mode C, node2: BGP, peers from the Node's annotations.
    let mut env_c = base_env(&d2.join("state"));
    for k in ["bgp_peers", "bgp_as", "address"] {
        env_c.remove(k);
    }
    env_c.insert("address".into(), VIP4.into());
    env_c.insert("annotation".into(), "example.com".into());
    env_c.insert("vip_nodename".into(), "node2".into());
    env_c.insert("k8s_config_file".into(), "/placeholder".into());
    let (kc_c, tok_c) = apply_rbac_and_login(&lab, &api, &dir.path, "vipr-ann", &env_c);
    env_c.insert("k8s_config_file".into(), kc_c.to_str().unwrap().into());
    let p = "example.com/bgp-peers-0-";
    api.create(
        "/api/v1/nodes",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node2", "annotations": {
            format!("{p}node-asn"): "65001", format!("{p}peer-asn"): "65000",
            format!("{p}peer-ip"): "10.55.0.1", format!("{p}src-ip"): "10.55.0.13"}}}),
    );
    let svc = svc_vip(60);
    api.create_service(&annotated_service("web", &svc, json!({})));

    let va = Vipr::start(&lab.nodes[0], &env_a, &[], &d0.join("vipr.log"));
    let vb = Vipr::start(&lab.nodes[1], &env_b, &[], &d1.join("vipr.log"));
    let vc = Vipr::start(&lab.nodes[2], &env_c, &[], &d2.join("vipr.log"));
    let ctx = || {
        format!(
            "{}\n--- node0\n{}\n--- node1\n{}\n--- node2\n{}",
            bird.birdc("show route all"),
            va.log(),
            vb.log(),
            vc.log()
        )
    };

    // A: the Service is advertised and its status written.
    within(CONVERGE, "Service route from node0 at BIRD", ctx, || {
        bird_route(&bird, &format!("{svc}/32"), "n0").map(|_| ())
    });
    api.wait_ingress("web", &[&svc]);
    // B: node1 wins the Lease and holds the VIP.
    within(CONVERGE, "node1 holds the ARP VIP", ctx, || {
        let out = lab.nodes[1].run(&["ip", "-4", "addr", "show", "dev", "eth0"]);
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{vip_b}/"))
            .then_some(())
    });
    let lease = api
        .get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plndr-cp-lock")
        .expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "node1", "{lease:#}");
    // C: the annotated session comes up and carries the control-plane VIP.
    within(
        CONVERGE,
        "VIP from node2 (annotated peer) at BIRD",
        ctx,
        || bird_route(&bird, &format!("{VIP4}/32"), "n2").map(|_| ()),
    );
    // Still working a moment later (the watches run), and never a permission error.
    let svc2 = svc_vip(61);
    api.create_service(&annotated_service("web2", &svc2, json!({})));
    within(
        CONVERGE,
        "second Service through the live watch",
        ctx,
        || bird_route(&bird, &format!("{svc2}/32"), "n0").map(|_| ()),
    );
    api.wait_ingress("web2", &[&svc2]);
    for (n, v) in [("node0", &va), ("node1", &vb), ("node2", &vc)] {
        assert_eq!(
            forbidden(&v.log()),
            0,
            "{n} hit a permission error:\n{}",
            v.log()
        );
    }

    // No more than needed.
    let ks = "kube-system";
    let coord = "coordination.k8s.io";
    let secrets = ("get", "", "secrets", "", ks, "");
    let pods = ("list", "", "pods", "", "", "");
    check_access(
        &api,
        "vipr-bgp (BGP + Services)",
        &tok_a,
        &[
            ("list", "", "services", "", "", ""),
            ("watch", "", "services", "", "", ""),
            ("get", "", "services", "", "default", "web"),
            ("patch", "", "services", "", "default", "web"),
            ("patch", "", "services", "status", "default", "web"),
            ("list", "", "endpoints", "", "", ""),
            ("list", "discovery.k8s.io", "endpointslices", "", "", ""),
            ("create", "", "events", "", "default", ""),
            // Address claims.
            ("create", coord, "leases", "", ks, ""),
            ("delete", coord, "leases", "", ks, "vipr-addr-198-51-100-60"),
            ("get", "", "configmaps", "", ks, "kubevip"),
            // Its own Node's exclude-from-external-load-balancers label.
            ("list", "", "nodes", "", "", ""),
            ("watch", "", "nodes", "", "", ""),
        ],
        &[
            ("update", "", "services", "", "default", "web"),
            ("delete", "", "services", "", "default", "web"),
            ("update", "", "services", "status", "default", "web"),
            ("create", coord, "leases", "", "default", ""),
            ("get", "", "configmaps", "", ks, "coredns"),
            ("update", "", "configmaps", "", ks, "kubevip"),
            ("patch", "", "nodes", "", "", "node0"),
            secrets,
            pods,
        ],
    );
    check_access(
        &api,
        "vipr-arp (ARP + election)",
        &tok_b,
        &[
            ("create", coord, "leases", "", ks, ""),
            ("get", coord, "leases", "", ks, "plndr-cp-lock"),
            ("update", coord, "leases", "", ks, "plndr-cp-lock"),
            ("watch", coord, "leases", "", ks, "plndr-cp-lock"),
        ],
        &[
            ("get", coord, "leases", "", ks, "kube-controller-manager"),
            ("update", coord, "leases", "", ks, "kube-scheduler"),
            ("list", coord, "leases", "", ks, ""),
            ("delete", coord, "leases", "", ks, "plndr-cp-lock"),
            ("create", coord, "leases", "", "default", ""),
            ("list", "", "services", "", "", ""),
            ("list", "", "nodes", "", "", ""),
            secrets,
            pods,
        ],
    );
    check_access(
        &api,
        "vipr-ann (BGP, annotations)",
        &tok_c,
        &[
            ("get", "", "nodes", "", "", "node2"),
            ("list", "", "nodes", "", "", ""),
            ("watch", "", "nodes", "", "", ""),
        ],
        &[
            ("patch", "", "nodes", "", "", "node2"),
            ("update", "", "nodes", "status", "", "node2"),
            ("delete", "", "nodes", "", "", "node2"),
            ("list", "", "services", "", "", ""),
            ("create", coord, "leases", "", ks, ""),
            secrets,
            pods,
        ],
    );
    // And a plain request for something the mode does not need is refused.
    for (who, token, path) in [
        ("vipr-bgp", &tok_a, "/api/v1/namespaces/kube-system/secrets"),
        ("vipr-arp", &tok_b, "/api/v1/services"),
        (
            "vipr-arp",
            &tok_b,
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
        ),
        ("vipr-ann", &tok_c, "/api/v1/namespaces/kube-system/secrets"),
    ] {
        let (code, v) = api.request_as(token, "GET", path, None, "application/json");
        assert_eq!(code, 403, "{who} GET {path}: {v:#}");
    }
}
