//! The manifests against the daemon's own configuration parser: what the daemon in a
//! rendered pod or DaemonSet reads (its environment, the Secret it references, the file it
//! is given with `--config`) is exactly the configuration the generator validated.

use super::*;

/// The pod spec of a rendered pod or DaemonSet.
fn pod_spec_of(o: &Options) -> PodSpec {
    let d = docs(&render(o).unwrap());
    match o.kind {
        Kind::Pod => serde_json::from_value::<Pod>(d[0].clone())
            .unwrap()
            .spec
            .unwrap(),
        _ => serde_json::from_value::<DaemonSet>(d[0].clone())
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap(),
    }
}

/// What the daemon in the rendered pod reads, as the kubelet and the daemon would assemble
/// it: the `value:` environment, each `secretKeyRef` resolved from the Secret that
/// `vipr manifest secret` renders with the same flags, and the `--config` file from the host
/// as `vipr manifest secret --host-file` renders it.
fn daemon_layers(args: &[&str], c: &Container) -> Layers {
    let with_kind = |kind: &str, extra: &[&str]| {
        let mut a = vec!["secret"];
        a.extend_from_slice(extra);
        a.extend(args.iter().skip(1).filter(|a| **a != kind));
        render_args(&a)
    };
    let mut env = env_map(c);
    let refs: Vec<(String, String)> = c
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let r = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
            Some((e.name.clone(), r.key.clone()))
        })
        .collect();
    if !refs.is_empty() {
        let secret = &docs(&with_kind(args[0], &[]))[0];
        assert_eq!(secret["kind"], "Secret");
        for (name, key) in refs {
            let v = secret["stringData"][&key]
                .as_str()
                .expect("key in the Secret");
            env.insert(name, v.to_string());
        }
    }
    let mut layers = Layers::default();
    let cargs = c.args.clone().unwrap_or_default();
    if let Some(i) = cargs.iter().position(|a| a == "--config") {
        let file = with_kind(args[0], &["--host-file"]);
        layers.add_yaml(&cargs[i + 1], &file).unwrap();
    }
    layers.add_env(|n| env.get(n).cloned()).unwrap();
    layers
}

/// The strongest check that the manifests match the daemon: the container's environment,
/// read back through the daemon's own parser (`Layers::add_env` + `Config::from_layers`),
/// gives exactly the configuration the generator validated.
#[test]
fn environment_reads_back_as_the_same_daemon_configuration() {
    let cases: Vec<Vec<&str>> = vec![
        [&["pod"][..], BGP_CP].concat(),
        [
            &["pod"][..],
            ARP_CP,
            &[
                "--services",
                "--servicesElection",
                "--leaseRenewDuration",
                "4.5",
            ],
        ]
        .concat(),
        [&[
            "daemonset",
            "--inCluster",
            "--services",
            "--bgp",
            "--bgppeers",
            "[2001:db8::1]:65000:pa ss:true:1179",
        ][..]]
        .concat(),
        [&[
            "pod",
            "--super-admin",
            "--annotations",
            "metal.equinix.com",
            "--bgp",
            "--controlplane",
            "--vip",
            "192.0.2.1",
            "--vipr-peers-from",
            "annotations",
        ][..]]
        .concat(),
        [
            &["pod"][..],
            BGP_CP,
            &["--peerAddress", "10.0.0.3", "--peerPass", "01234567"],
        ]
        .concat(),
        [&[
            "daemonset",
            "--bgp",
            "--services",
            "--bgppeers",
            "10.0.0.1:65000:0x10:false,[2001:db8::1]:65000::true",
            "--peerAddress",
            "10.0.0.3",
            "--peerPass",
            "it's #1: yes",
        ][..]]
        .concat(),
        [&[
            "daemonset",
            "--bgp",
            "--services",
            "--vipr-bgp-listen",
            ":179",
            "--bgppeers",
            "10.0.0.1:65000::false",
            "--prometheusHTTPServer",
            "",
            "--vipr-communities",
            "65000:100",
        ][..]]
        .concat(),
    ];
    for args in cases {
        let o = opts(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let spec = pod_spec_of(&o);
        let c = container(&spec);
        let env = env_map(c);
        for name in env.keys() {
            assert!(
                crate::config::keys::find(name).is_some(),
                "{name} is not a setting the daemon reads"
            );
        }
        let node = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "vip_nodename")
            .expect("vip_nodename");
        let field = node.value_from.as_ref().and_then(|s| s.field_ref.as_ref());
        assert_eq!(field.map(|f| f.field_path.as_str()), Some("spec.nodeName"));
        let layers = daemon_layers(&args, c);
        let back = Config::from_layers(&layers, "node").unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let mut want = o.cfg.clone();
        // k8s_config_file is added for a non-default mount path; the rest must be identical.
        want.node.kubeconfig = back.node.kubeconfig.clone();
        assert_eq!(back, want, "{args:?}");
        if let Some(kc) = o.host_kubeconfig() {
            assert_eq!(back.node.kubeconfig.display().to_string(), kc, "{args:?}");
        }
    }
}
