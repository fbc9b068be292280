//! The pod of `vipr manifest pod` (a kubeadm static pod) and `vipr manifest daemonset`: one
//! container running `vipr manager` on the host's network, configured through kube-vip's
//! environment names, with the fewest capabilities the enabled mode needs, a read-only root
//! file system, resource requests, probes on `/healthz` and `/readyz`, and a kubeconfig
//! (static pod) or ServiceAccount (DaemonSet) only when the daemon talks to the API server.
//! Passwords come from a Secret or a host file ([`super::secret`]), never from a `value:`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EnvVar, EnvVarSource, HTTPGetAction, HostPathVolumeSource,
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector,
    Pod, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{secret, Kind, Options, NAMESPACE};
use crate::config::Mode;

/// The capabilities `vipr manager` needs with these settings: NET_ADMIN always (VIP
/// addresses and host routes over rtnetlink, IPVS/nftables), NET_RAW in ARP mode (gratuitous
/// ARP and unsolicited NA on AF_PACKET / raw ICMPv6 sockets; in BGP mode with an unnumbered
/// peer, the raw ICMPv6 socket of its Router Advertisements), NET_BIND_SERVICE when it listens
/// on a port below 1024 (BGP's 179 with `vipr_bgp_listen`, or `prometheus_server`).
pub fn capabilities(o: &Options) -> Vec<&'static str> {
    let mut caps = vec!["NET_ADMIN"];
    let unnumbered =
        o.cfg.node.mode == Mode::Bgp && o.cfg.bgp.peers.iter().any(|p| p.interface.is_some());
    if o.cfg.node.mode == Mode::Arp || unnumbered {
        caps.push("NET_RAW");
    }
    let low = |p: Option<u16>| p.is_some_and(|p| p < 1024);
    if low(o.cfg.bgp.listen.map(|a| a.port())) || low(o.cfg.http.addr.map(|a| a.port())) {
        caps.push("NET_BIND_SERVICE");
    }
    caps
}

/// Header lines explaining the decisions taken from the settings.
pub fn notes(o: &Options) -> Vec<String> {
    let mut n = vec![format!(
        "Capabilities: {} (everything else dropped); runs as root because Kubernetes gives a \
         non-root container no effective capabilities.",
        capabilities(o).join(", ")
    )];
    match (o.host_kubeconfig(), o.needs_api()) {
        (Some(p), _) => n.push(format!("Kubernetes API: through {p} from the host.")),
        (None, true) => n.push(format!(
            "Kubernetes API: through ServiceAccount {NAMESPACE}/{}; apply `{}` first.",
            o.flags.name,
            o.command_line_as(Kind::Rbac)
        )),
        (None, false) => n.push(
            "Kubernetes API: not used with these settings (BGP with static peers), so no \
             kubeconfig and no ServiceAccount token."
                .into(),
        ),
    }
    if o.cfg.http.addr.is_none() {
        n.push("No probes: prometheus_server is empty, so /healthz and /readyz are off.".into());
    }
    n
}

fn labels(o: &Options) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), o.flags.name.clone()),
        (
            "app.kubernetes.io/version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ])
}

/// The container's environment: `vip_nodename` from `spec.nodeName`, then every setting
/// given, under its kube-vip name, in the order of the settings table; a password from the
/// Secret (DaemonSet) or not at all (the static pod reads its host file); then the warned
/// kube-vip variables that kube-vip's flags set ([`super::kubevip::rendered`]).
pub fn env(o: &Options) -> Vec<EnvVar> {
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut env = vec![field("vip_nodename", "spec.nodeName")];
    // A DaemonSet with graceful restart: its own name and the pod's template generation,
    // so that a SIGTERM of its rolling update is a restart in place (`kube::rollout`).
    if o.kind == Kind::DaemonSet && o.rollout_restart() {
        env.push(EnvVar {
            name: "vipr_daemonset".into(),
            value: Some(format!("{NAMESPACE}/{}", o.flags.name)),
            ..Default::default()
        });
        env.push(field(
            "vipr_pod_template_generation",
            "metadata.labels['pod-template-generation']",
        ));
    }
    // A static pod with graceful restart: its own manifest, so that a SIGTERM after the
    // manifest changed (an upgrade) is a restart in place (`restart::StaticPodManifest`).
    if let Some(m) = o.static_pod_manifest() {
        if o.get("vipr_static_pod_manifest").is_none() {
            env.push(EnvVar {
                name: "vipr_static_pod_manifest".into(),
                value: Some(m),
                ..Default::default()
            });
        }
    }
    for (k, v) in &o.set {
        if secret::is_secret(k, v) {
            if o.kind == Kind::DaemonSet {
                env.push(secret::env_ref(o, k));
            }
            continue;
        }
        env.push(EnvVar {
            name: k.name.to_string(),
            value: Some(v.clone()),
            ..Default::default()
        });
    }
    // kube-vip's variables that vipr warns about, as kube-vip's flags asked for them.
    for (name, v) in super::kubevip::rendered(&o.ignored) {
        env.push(EnvVar {
            name: name.to_string(),
            value: Some(v.to_string()),
            ..Default::default()
        });
    }
    // The daemon's default kubeconfig is admin.conf; say so when the mount is another file.
    if let Some(p) = o.host_kubeconfig() {
        if p != super::ADMIN_CONF && o.get("k8s_config_file").is_none() {
            env.push(EnvVar {
                name: "k8s_config_file".into(),
                value: Some(p),
                ..Default::default()
            });
        }
    }
    env
}

fn probe(o: &Options, path: &str, period: i32) -> Option<Probe> {
    let addr = o.cfg.http.addr?;
    // With hostNetwork the kubelet probes the node's address; a daemon bound to one address
    // (e.g. 127.0.0.1:2112) must be probed there.
    let host = (!addr.ip().is_unspecified()).then(|| addr.ip().to_string());
    Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(addr.port().into()),
            host,
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    })
}

fn host_path(name: &str, path: &str, type_: &str, read_only: bool) -> (Volume, VolumeMount) {
    (
        Volume {
            name: name.into(),
            host_path: Some(HostPathVolumeSource {
                path: path.into(),
                type_: Some(type_.into()),
            }),
            ..Default::default()
        },
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            read_only: read_only.then_some(true),
            ..Default::default()
        },
    )
}

/// The pod spec shared by the static pod and the DaemonSet.
pub fn pod_spec(o: &Options) -> PodSpec {
    let q = |s: &str| Quantity(s.to_string());
    // The state file lists the addresses vipr added, so that a restarted daemon removes the
    // leftovers of a killed one; on the host it outlives the container.
    let state = o.cfg.node.state_dir.display().to_string();
    let mut mounts = vec![host_path("state", &state, "DirectoryOrCreate", false)];
    if let Some(kc) = o.host_kubeconfig() {
        mounts.push(host_path("kubeconfig", &kc, "File", true));
    }
    // The static pod's manifest directory, read-only: a manifest replaced by a rename (as
    // editors and kubeadm write) stays visible, which a mount of the one file would not be.
    if let Some(m) = o.static_pod_manifest() {
        let dir = std::path::Path::new(&m)
            .parent()
            .map_or("/".to_string(), |d| d.display().to_string());
        mounts.push(host_path("manifests", &dir, "Directory", true));
    }
    let mut args = vec!["manager".to_string()];
    if o.kind == Kind::Pod && !secret::settings(o).is_empty() {
        let f = secret::host_file(o);
        mounts.push(host_path("passwords", &f, "File", true));
        args.extend(["--config".to_string(), f]);
    }
    let (volumes, volume_mounts): (Vec<Volume>, Vec<VolumeMount>) = mounts.into_iter().unzip();
    let container = Container {
        name: "vipr".into(),
        image: Some(o.flags.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        env: Some(env(o)),
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(capabilities(o).into_iter().map(String::from).collect()),
                drop: Some(vec!["ALL".into()]),
            }),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            run_as_user: Some(0),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        // Measured: 7 MiB idle, 10 MiB announcing 100 000 routes, 21 MiB with 1 000 Services and
        // 53 MiB with 10 000 Services and 100 000 endpoints (labs/bench-*.sh): the limit is sized
        // for 10 000 LoadBalancer Services, with 2.4x headroom.
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), q("10m")),
                ("memory".to_string(), q("32Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".to_string(), q("128Mi"))])),
            ..Default::default()
        }),
        liveness_probe: probe(o, "/healthz", 10),
        readiness_probe: probe(o, "/readyz", 5),
        volume_mounts: Some(volume_mounts),
        ..Default::default()
    };
    let drain = o.cfg.bgp.drain.map_or(0, |d| d.as_secs() as i64);
    let in_cluster = o.kind == Kind::DaemonSet && o.needs_api();
    PodSpec {
        host_network: Some(true),
        containers: vec![container],
        volumes: Some(volumes),
        priority_class_name: Some("system-node-critical".into()),
        // SIGTERM: drain (vipr_drain_seconds), withdraw, Cease, remove addresses, release.
        termination_grace_period_seconds: Some(30.max(drain + 15)),
        // Only a DaemonSet has a ServiceAccount of its own (a static pod's mirror pod may not
        // reference one), and only when the daemon calls the API.
        service_account_name: in_cluster.then(|| o.flags.name.clone()),
        automount_service_account_token: Some(in_cluster),
        ..Default::default()
    }
}

/// The kubeadm static pod.
pub fn static_pod(o: &Options) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(o.flags.name.clone()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels(o)),
            ..Default::default()
        },
        spec: Some(pod_spec(o)),
        ..Default::default()
    }
}

/// The DaemonSet; with `--taint` only on control-plane nodes.
pub fn daemonset(o: &Options) -> DaemonSet {
    let mut spec = pod_spec(o);
    if o.flags.taint {
        spec.tolerations = Some(
            ["NoSchedule", "NoExecute"]
                .into_iter()
                .map(|effect| Toleration {
                    effect: Some(effect.into()),
                    operator: Some("Exists".into()),
                    ..Default::default()
                })
                .collect(),
        );
        // Either label: kubeadm < 1.24 and k3s also set node-role.kubernetes.io/master.
        let term = |key: &str| NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: "Exists".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![
                        term("node-role.kubernetes.io/control-plane"),
                        term("node-role.kubernetes.io/master"),
                    ],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let select = BTreeMap::from([("app.kubernetes.io/name".to_string(), o.flags.name.clone())]);
    DaemonSet {
        metadata: ObjectMeta {
            name: Some(o.flags.name.clone()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels(o)),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(select),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(o)),
                    ..Default::default()
                }),
                spec: Some(spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}
