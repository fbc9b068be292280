//! `vipr manifest pod|daemonset|rbac|secret`: Kubernetes manifests for vipr, rendered from
//! the same flags as `vipr manager` (every setting, with kube-vip's flag spellings, so
//! kube-vip's documentation applies) plus the generator's own: `--inCluster`, `--taint`,
//! `--image` (kube-vip's), `--name`, `--super-admin` and `--host-file` (vipr's). Every other
//! flag of kube-vip v1.2.3's `manifest` command is accepted too, or refused naming it
//! ([`kubevip`]): a kube-vip flag of a variable vipr does not implement is judged as that
//! variable would be in a kube-vip manifest (refused, or rendered with a warning).
//!
//! The flags are validated exactly as the daemon validates its configuration
//! ([`Config::from_layers`]): a manifest that renders is one whose daemon starts. What the
//! manifests grant follows from that validated [`Config`], mirroring what the daemon really
//! does (`main.rs`, `kube/`): capabilities per mode ([`pod`]), API permissions per mode
//! ([`rbac`]), a kubeconfig only when the daemon talks to the API server at all, and only to
//! the kubeadm static pod: a DaemonSet runs on every node, so it always uses its
//! ServiceAccount and the RBAC of `vipr manifest rbac`. Passwords are never in a pod or a
//! comment ([`secret`]).
//!
//! Pure: builds k8s-openapi objects and serialises them with serde-saphyr; no I/O but the
//! final print, no tokio.

mod kubevip;
mod pod;
mod rbac;
mod secret;
#[cfg(test)]
mod tests;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::keys::{flag_name, Key, KEYS};
use crate::config::kubevip::Ignored;
use crate::config::{Config, ConfigError, Layers, Mode, Origin};

/// Where kubeadm writes the admin kubeconfig (also the daemon's `k8s_config_file` default).
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
/// Where the static pod is saved: kubeadm's static pod directory (the kubelet's
/// `--pod-manifest-path`), as README's instructions write it.
pub const STATIC_POD_MANIFEST: &str = "/etc/kubernetes/manifests/vipr.yaml";
/// kubeadm 1.29+: the only kubeconfig with cluster-admin rights while `kubeadm init` runs on
/// the first control-plane node (admin.conf gets its RBAC binding only later).
pub const SUPER_ADMIN_CONF: &str = "/etc/kubernetes/super-admin.conf";
/// Namespace of the static pod, the DaemonSet and the ServiceAccount (kube-vip's choice too).
pub const NAMESPACE: &str = "kube-system";

/// What to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A static pod for `/etc/kubernetes/manifests` (kubeadm).
    Pod,
    /// A DaemonSet (k3s, or any cluster that is already up).
    DaemonSet,
    /// ServiceAccount, (Cluster)Roles and bindings.
    Rbac,
    /// The passwords: a Secret for the DaemonSet, or the static pod's file on the host.
    Secret,
}

impl Kind {
    fn from_name(s: &str) -> Option<Kind> {
        match s {
            "pod" => Some(Kind::Pod),
            "daemonset" => Some(Kind::DaemonSet),
            "rbac" => Some(Kind::Rbac),
            "secret" => Some(Kind::Secret),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::DaemonSet => "daemonset",
            Kind::Rbac => "rbac",
            Kind::Secret => "secret",
        }
    }
}

/// A manifest that cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The settings would not start the daemon.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A generator flag that does not fit the kind of manifest or the settings.
    #[error("{0}")]
    Usage(String),
    /// Serialisation failed (a bug).
    #[error("YAML: {0}")]
    Yaml(String),
}

/// The generator's own flags (not settings of the daemon).
#[derive(Debug, Clone)]
pub struct Generator {
    /// `--inCluster` (kube-vip's): a DaemonSet always uses its ServiceAccount; accepted so
    /// kube-vip's commands work, refused for the static pod.
    pub in_cluster: bool,
    /// `--taint`.
    pub taint: bool,
    /// `--image`: the container image (default: [`default_image`]).
    pub image: String,
    /// `--name`: the name of every object (pod, DaemonSet, ServiceAccount, roles, bindings,
    /// `<name>-bgp` for the passwords); default `vipr`.
    pub name: String,
    /// `--super-admin`: mount kubeadm's super-admin.conf (1.29+, first control-plane node).
    pub super_admin: bool,
    /// `--host-file` (`secret` only): render the static pod's file on the host instead of a
    /// Secret.
    pub host_file: bool,
    /// kube-vip's flags that are not vipr's ([`kubevip::given`]): `(spelling, value)`.
    pub kube_vip: Vec<(&'static str, String)>,
}

impl Default for Generator {
    fn default() -> Generator {
        Generator {
            in_cluster: false,
            taint: false,
            image: default_image(),
            name: "vipr".into(),
            super_admin: false,
            host_file: false,
            kube_vip: Vec::new(),
        }
    }
}

/// Everything the renderers need.
#[derive(Debug, Clone)]
pub struct Options {
    /// What to render.
    pub kind: Kind,
    /// The settings given, in [`KEYS`] order (they become the container's environment).
    pub set: Vec<(&'static Key, String)>,
    /// The daemon's configuration those settings give (validated).
    pub cfg: Config,
    /// The generator's own flags.
    pub flags: Generator,
    /// kube-vip's flags of variables vipr does not implement, accepted with a warning.
    pub ignored: Vec<Ignored>,
}

impl Options {
    /// Builds and validates the options from `vipr manifest KIND` matches.
    pub fn from_matches(kind: Kind, m: &ArgMatches) -> Result<Options, ManifestError> {
        // One value per setting: two spellings given together are refused as the daemon
        // refuses them.
        let mut layers = Layers::default();
        layers.add_flags(
            crate::config::keys::given(m)
                .iter()
                .map(|(f, v)| (f.as_str(), v.clone())),
        )?;
        let set: Vec<(&'static Key, String)> = KEYS
            .iter()
            .filter_map(|k| layers.get(k.name).map(|r| (k, r.value.clone())))
            .collect();
        let g = Generator {
            in_cluster: m.get_flag("inCluster"),
            taint: m.get_flag("taint"),
            image: m
                .get_one::<String>("image")
                .cloned()
                .unwrap_or_else(default_image),
            name: m
                .get_one::<String>("name")
                .cloned()
                .unwrap_or_else(|| "vipr".into()),
            super_admin: m.get_flag("super-admin"),
            host_file: kind == Kind::Secret && m.get_flag("host-file"),
            kube_vip: kubevip::given(m),
        };
        Options::new(kind, set, g)
    }

    /// Builds and validates the options.
    pub fn new(
        kind: Kind,
        set: Vec<(&'static Key, String)>,
        flags: Generator,
    ) -> Result<Options, ManifestError> {
        let Generator {
            in_cluster,
            taint,
            super_admin,
            ..
        } = flags;
        let usage = |s: &str| Err(ManifestError::Usage(s.to_string()));
        if set.iter().any(|(k, _)| k.name == "vip_nodename") {
            return Err(ManifestError::Usage(format!(
                "{} (vip_nodename) is not a manifest setting: every pod takes it from spec.nodeName (kube-vip's generator ignores it too)",
                kubevip::spellings("vip_nodename")
            )));
        }
        if let Some((k, _)) = set
            .iter()
            .find(|(k, _)| matches!(k.name, "vipr_daemonset" | "vipr_pod_template_generation"))
        {
            return Err(ManifestError::Usage(format!(
                "{} is not a manifest setting: `vipr manifest daemonset` renders it (the DaemonSet's own name, the pod's pod-template-generation label) when graceful restart is on",
                k.name
            )));
        }
        if kind == Kind::Pod && in_cluster {
            return usage("--inCluster: a static pod cannot use a ServiceAccount (the API server rejects its mirror pod); use `vipr manifest daemonset --inCluster`, or the pod's kubeconfig from the host");
        }
        if kind == Kind::Pod && taint {
            return usage("--taint: a static pod runs on the node whose /etc/kubernetes/manifests holds it; tolerations are for `vipr manifest daemonset`");
        }
        if kind == Kind::DaemonSet && super_admin {
            return usage("--super-admin: a DaemonSet runs on every node with its ServiceAccount and the RBAC of `vipr manifest rbac`; kubeadm's super-admin.conf is for `vipr manifest pod` only");
        }
        if kind == Kind::DaemonSet && set.iter().any(|(k, _)| k.name == "k8s_config_file") {
            return usage("k8s_config_file (--k8sConfigPath): a DaemonSet runs on every node with its ServiceAccount and the RBAC of `vipr manifest rbac`, never with a kubeconfig from the host; that is for `vipr manifest pod` only");
        }
        if kind == Kind::DaemonSet
            && set
                .iter()
                .any(|(k, _)| k.name == "vipr_static_pod_manifest")
        {
            return usage("vipr_static_pod_manifest names a static pod's own manifest (rendered by `vipr manifest pod` with graceful restart); a DaemonSet's pods tell a rolling update from their DaemonSet");
        }
        if kind == Kind::DaemonSet && set.iter().any(|(k, _)| k.name == "bgp_routerid") {
            return usage("bgp_routerid (--bgpRouterID) must differ per node, so a DaemonSet cannot carry it: leave it unset (vipr takes the node's IPv4 address) or set bgp_routerinterface");
        }
        if kind == Kind::Secret && !set.iter().any(|(k, v)| secret::is_secret(k, v)) {
            return usage("these settings carry no password (bgp_peerpass, or a password field in bgp_peers): there is no secret to render");
        }
        if !is_dns_label(&flags.name) {
            return usage(
                "--name must be a DNS label: lower-case letters, digits and '-', at most 63",
            );
        }
        kubevip::check_only(&flags.kube_vip).map_err(ManifestError::Usage)?;
        let namespaced = kubevip::namespaced_rbac(&flags.kube_vip).map_err(ManifestError::Usage)?;
        let mut layers = Layers::default();
        layers.elsewhere = true;
        for (k, v) in &set {
            layers.set(k, v.clone(), Origin::Flag(shown_flag(k)));
        }
        layers.add_unsupported_flags(kubevip::unsupported(&flags.kube_vip))?;
        let cfg = Config::from_layers(&layers, "node")?;
        let ignored = crate::config::kubevip::check(&layers)?;
        let o = Options {
            kind,
            set,
            cfg,
            flags,
            ignored,
        };
        if let (Some(flag), Kind::Rbac) = (namespaced, kind) {
            let wide: Vec<String> = rbac::grants(&o)
                .into_iter()
                .filter(|g| g.namespace.is_none())
                .map(|g| format!("{} ({})", g.resource, g.why))
                .collect();
            if !wide.is_empty() {
                return Err(ManifestError::Usage(format!(
                    "--{flag}: kube-vip's namespaced RBAC cannot grant what these settings need cluster-wide: {}; leave it out (vipr already puts every rule it can into a Role in its namespace)",
                    wide.join(", ")
                )));
            }
        }
        Ok(o)
    }

    /// The value given for a setting.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the daemon talks to the Kubernetes API with these settings
    /// ([`Config::needs_api`]; a DaemonSet with graceful restart reads itself at SIGTERM).
    pub fn needs_api(&self) -> bool {
        self.cfg.needs_api() || (self.kind == Kind::DaemonSet && self.rollout_restart())
    }

    /// BGP with graceful restart: a DaemonSet's rolling update is a restart in place, so
    /// the DaemonSet names itself to its pods and may be read by them
    /// (`crate::kube::rollout`).
    pub fn rollout_restart(&self) -> bool {
        self.cfg.node.mode == Mode::Bgp && self.cfg.bgp.graceful_restart()
    }

    /// The static pod's own manifest on the host (and at the same path in the container,
    /// its directory mounted read-only), when a SIGTERM after it changed is a restart in
    /// place: BGP with graceful restart (`vipr_static_pod_manifest`, else kubeadm's
    /// [`STATIC_POD_MANIFEST`]).
    pub fn static_pod_manifest(&self) -> Option<String> {
        if self.kind != Kind::Pod || !self.rollout_restart() {
            return None;
        }
        Some(
            self.get("vipr_static_pod_manifest")
                .unwrap_or(STATIC_POD_MANIFEST)
                .to_string(),
        )
    }

    /// The kubeconfig on the host (and at the same path in the container), when the pod takes
    /// one from the host, which only the kubeadm static pod does: `k8s_config_file`, else
    /// super-admin.conf with `--super-admin`, else admin.conf.
    pub fn host_kubeconfig(&self) -> Option<String> {
        if self.kind != Kind::Pod || !self.needs_api() {
            return None;
        }
        Some(match self.get("k8s_config_file") {
            Some(p) => p.to_string(),
            None if self.flags.super_admin => SUPER_ADMIN_CONF.into(),
            None => ADMIN_CONF.into(),
        })
    }

    /// The command line that renders this manifest again (canonical flag order and
    /// spelling), a password shown as [`secret::HIDDEN`].
    pub fn command_line(&self) -> String {
        self.command_line_as(self.kind)
    }

    /// [`Options::command_line`] for another kind with the same flags.
    pub fn command_line_as(&self, kind: Kind) -> String {
        let mut s = format!("vipr manifest {}", kind.name());
        for (k, v) in &self.set {
            let v = if secret::is_secret(k, v) {
                secret::HIDDEN
            } else {
                v
            };
            s.push_str(&format!(" --{}={}", shown_flag(k), shell_quote(v)));
        }
        for (on, flag) in [
            (self.flags.in_cluster, "--inCluster"),
            (self.flags.taint, "--taint"),
            (self.flags.super_admin, "--super-admin"),
            (self.flags.host_file && kind == Kind::Secret, "--host-file"),
        ] {
            if on {
                s.push(' ');
                s.push_str(flag);
            }
        }
        for (flag, v) in &self.flags.kube_vip {
            s.push_str(&format!(" --{flag}={}", shell_quote(v)));
        }
        if self.flags.image != default_image() {
            s.push_str(&format!(" --image={}", shell_quote(&self.flags.image)));
        }
        if self.flags.name != "vipr" {
            s.push_str(&format!(" --name={}", shell_quote(&self.flags.name)));
        }
        s
    }
}

/// The default image: what the Dockerfile builds, tagged with this version (vipr publishes
/// no image; `--image` names yours).
pub fn default_image() -> String {
    format!("vipr:{}", env!("CARGO_PKG_VERSION"))
}

/// kube-vip's spelling of a setting's flag where it has one, else vipr's.
fn shown_flag(k: &Key) -> String {
    k.flags
        .first()
        .map(|f| f.to_string())
        .unwrap_or_else(|| flag_name(k))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Single-quotes a shell word unless it is plainly safe.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.,:/@%+=".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Renders the manifest: a comment header (the command that renders it again, and what was
/// decided from the settings), then one YAML document per object.
pub fn render(o: &Options) -> Result<String, ManifestError> {
    let mut out = format!(
        "# Rendered by vipr {}:\n#   {}\n",
        env!("CARGO_PKG_VERSION"),
        o.command_line()
    );
    for i in &o.ignored {
        out.push_str(&format!("# kube-vip {}\n", kubevip::note(i)));
    }
    let docs = match o.kind {
        Kind::Pod | Kind::DaemonSet => {
            for line in pod::notes(o).into_iter().chain(secret::notes(o)) {
                out.push_str(&format!("# {line}\n"));
            }
            if o.kind == Kind::Pod {
                vec![yaml(&pod::static_pod(o))?]
            } else {
                vec![yaml(&pod::daemonset(o))?]
            }
        }
        Kind::Secret => return secret::render(o, out),
        Kind::Rbac => {
            for line in rbac::notes(o) {
                out.push_str(&format!("# {line}\n"));
            }
            rbac::objects(o)?
        }
    };
    out.push_str(&docs.concat());
    Ok(out)
}

/// One object as a YAML document.
fn yaml<T: serde::Serialize>(v: &T) -> Result<String, ManifestError> {
    let mut s = serde_saphyr::to_string(v).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(format!("---\n{}", s.trim_start_matches("---\n")))
}

/// The `manifest` subcommand with its kinds.
pub fn command() -> Command {
    let mut m = Command::new("manifest")
        .about("Print Kubernetes manifests: a kubeadm static pod, a DaemonSet, RBAC, or the BGP passwords")
        .subcommand_required(true);
    for (kind, about) in [
        (
            "pod",
            "A static pod for /etc/kubernetes/manifests (kubeadm)",
        ),
        ("daemonset", "A DaemonSet (k3s, or any running cluster)"),
        (
            "rbac",
            "ServiceAccount, roles and bindings: least privilege for the modes enabled",
        ),
        (
            "secret",
            "The BGP passwords of the same flags: a Secret for the DaemonSet, or with --host-file the static pod's file",
        ),
    ] {
        let mut c = kind_command(kind, about).args(kubevip::args(kind == "rbac"));
        if kind == "secret" {
            c = c.arg(
                Arg::new("host-file")
                    .long("host-file")
                    .action(ArgAction::SetTrue)
                    .help("render /etc/kubernetes/<name>-bgp.yaml, the file the static pod reads its passwords from"),
            );
        }
        m = m.subcommand(c);
    }
    m
}

fn kind_command(kind: &'static str, about: &'static str) -> Command {
    let mut c = Command::new(kind)
        .about(about)
        .arg(
            Arg::new("inCluster")
                .long("inCluster")
                .alias("in-cluster")
                .num_args(0..=1)
                .default_missing_value("true")
                .default_value("false")
                .value_parser(clap::builder::BoolishValueParser::new())
                .help("kube-vip's flag, accepted: a DaemonSet always uses its ServiceAccount (in-cluster config)"),
        )
        .arg(
            Arg::new("taint")
                .long("taint")
                .num_args(0..=1)
                .default_missing_value("true")
                .default_value("false")
                .value_parser(clap::builder::BoolishValueParser::new())
                .help("run on control-plane nodes only: tolerate their taints, require their label"),
        )
        .arg(
            Arg::new("image")
                .long("image")
                .value_name("IMAGE")
                .help("container image (default vipr:<version>, as built by the Dockerfile)"),
        )
        .arg(
            Arg::new("name")
                .long("name")
                .value_name("NAME")
                .help("name of the pod, DaemonSet, ServiceAccount, roles and bindings (vipr)"),
        )
        .arg(
            Arg::new("super-admin")
                .long("super-admin")
                .action(ArgAction::SetTrue)
                .help("mount /etc/kubernetes/super-admin.conf: kubeadm 1.29+, first control-plane node during kubeadm init"),
        );
    for k in KEYS {
        c = c.args(crate::config::keys::args(k, true));
    }
    // kube-vip's `-n` of `--namespace`.
    c.mut_arg("cp_namespace@namespace", |a| a.short('n'))
}

/// Runs `vipr manifest KIND ...`: prints the manifest, or the error (exit status 2, like an
/// invalid daemon configuration).
pub fn main(m: &ArgMatches) -> i32 {
    let Some((name, sub)) = m.subcommand() else {
        return 2;
    };
    let Some(kind) = Kind::from_name(name) else {
        return 2;
    };
    match Options::from_matches(kind, sub).and_then(|o| Ok((render(&o)?, o.ignored))) {
        Ok((s, ignored)) => {
            for i in &ignored {
                eprintln!(
                    "vipr manifest {name}: warning: kube-vip {}",
                    kubevip::note(i)
                );
            }
            print!("{s}");
            0
        }
        Err(e) => {
            eprintln!("vipr manifest {name}: {e}");
            2
        }
    }
}
