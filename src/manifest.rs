//! `vipr manifest pod|daemonset|rbac`: Kubernetes manifests for vipr, rendered from the same
//! flags as `vipr manager` (every setting, with kube-vip's flag spellings, so kube-vip's
//! documentation applies) plus the generator's own: `--inCluster`, `--taint`, `--image`
//! (kube-vip's), `--name` and `--super-admin` (vipr's).
//!
//! The flags are validated exactly as the daemon validates its configuration
//! ([`Config::from_layers`]): a manifest that renders is one whose daemon starts. What the
//! manifests grant follows from that validated [`Config`], mirroring what the daemon really
//! does (`main.rs`, `kube/`): capabilities per mode ([`pod`]), API permissions per mode
//! ([`rbac`]), a kubeconfig only when the daemon talks to the API server at all.
//!
//! Pure: builds k8s-openapi objects and serialises them with serde-saphyr; no I/O but the
//! final print, no tokio.

mod pod;
mod rbac;
#[cfg(test)]
mod tests;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::keys::{flag_name, Key, KEYS};
use crate::config::{Config, ConfigError, Layers, Origin};

/// Where kubeadm writes the admin kubeconfig (also the daemon's `k8s_config_file` default).
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
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
}

impl Kind {
    fn from_name(s: &str) -> Option<Kind> {
        match s {
            "pod" => Some(Kind::Pod),
            "daemonset" => Some(Kind::DaemonSet),
            "rbac" => Some(Kind::Rbac),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::DaemonSet => "daemonset",
            Kind::Rbac => "rbac",
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

/// Everything the renderers need.
#[derive(Debug, Clone)]
pub struct Options {
    /// What to render.
    pub kind: Kind,
    /// The settings given, in [`KEYS`] order (they become the container's environment).
    pub set: Vec<(&'static Key, String)>,
    /// The daemon's configuration those settings give (validated).
    pub cfg: Config,
    /// Use a ServiceAccount (in-cluster config) instead of a kubeconfig from the host.
    pub in_cluster: bool,
    /// Run on control-plane nodes only (tolerations and node affinity).
    pub taint: bool,
    /// Container image.
    pub image: String,
    /// Name of every object (pod, DaemonSet, ServiceAccount, roles, bindings).
    pub name: String,
    /// Mount kubeadm's super-admin.conf (1.29+, first control-plane node).
    pub super_admin: bool,
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
        Options::new(
            kind,
            set,
            m.get_flag("inCluster"),
            m.get_flag("taint"),
            m.get_one::<String>("image")
                .cloned()
                .unwrap_or_else(default_image),
            m.get_one::<String>("name")
                .cloned()
                .unwrap_or_else(|| "vipr".into()),
            m.get_flag("super-admin"),
        )
    }

    /// Builds and validates the options.
    pub fn new(
        kind: Kind,
        set: Vec<(&'static Key, String)>,
        in_cluster: bool,
        taint: bool,
        image: String,
        name: String,
        super_admin: bool,
    ) -> Result<Options, ManifestError> {
        let usage = |s: &str| Err(ManifestError::Usage(s.to_string()));
        if set.iter().any(|(k, _)| k.name == "vip_nodename") {
            return usage("vip_nodename (--nodename) is not a manifest setting: every pod takes it from spec.nodeName");
        }
        if kind == Kind::Pod && in_cluster {
            return usage("--inCluster: a static pod cannot use a ServiceAccount (the API server rejects its mirror pod); use `vipr manifest daemonset --inCluster`, or the pod's kubeconfig from the host");
        }
        if kind == Kind::Pod && taint {
            return usage("--taint: a static pod runs on the node whose /etc/kubernetes/manifests holds it; tolerations are for `vipr manifest daemonset`");
        }
        if in_cluster && super_admin {
            return usage("--super-admin mounts a kubeconfig from the host; --inCluster uses a ServiceAccount instead");
        }
        if kind == Kind::DaemonSet && set.iter().any(|(k, _)| k.name == "bgp_routerid") {
            return usage("bgp_routerid (--bgpRouterID) must differ per node, so a DaemonSet cannot carry it: leave it unset (vipr takes the node's IPv4 address) or set bgp_routerinterface");
        }
        if !is_dns_label(&name) {
            return usage(
                "--name must be a DNS label: lower-case letters, digits and '-', at most 63",
            );
        }
        let mut layers = Layers::default();
        for (k, v) in &set {
            layers.set(k, v.clone(), Origin::Flag(shown_flag(k)));
        }
        let cfg = Config::from_layers(&layers, "node")?;
        Ok(Options {
            kind,
            set,
            cfg,
            in_cluster,
            taint,
            image,
            name,
            super_admin,
        })
    }

    /// The value given for a setting.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the daemon talks to the Kubernetes API with these settings
    /// ([`Config::needs_api`]).
    pub fn needs_api(&self) -> bool {
        self.cfg.needs_api()
    }

    /// The kubeconfig on the host (and at the same path in the container), when the pod takes
    /// one from the host: `k8s_config_file`, else super-admin.conf with `--super-admin`, else
    /// admin.conf.
    pub fn host_kubeconfig(&self) -> Option<String> {
        if self.in_cluster || !self.needs_api() {
            return None;
        }
        Some(match self.get("k8s_config_file") {
            Some(p) => p.to_string(),
            None if self.super_admin => SUPER_ADMIN_CONF.into(),
            None => ADMIN_CONF.into(),
        })
    }

    /// The command line that renders this manifest again (canonical flag order and spelling).
    pub fn command_line(&self) -> String {
        let mut s = format!("vipr manifest {}", self.kind.name());
        for (k, v) in &self.set {
            s.push_str(&format!(" --{}={}", shown_flag(k), shell_quote(v)));
        }
        for (on, flag) in [
            (self.in_cluster, "--inCluster"),
            (self.taint, "--taint"),
            (self.super_admin, "--super-admin"),
        ] {
            if on {
                s.push(' ');
                s.push_str(flag);
            }
        }
        if self.image != default_image() {
            s.push_str(&format!(" --image={}", shell_quote(&self.image)));
        }
        if self.name != "vipr" {
            s.push_str(&format!(" --name={}", shell_quote(&self.name)));
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
    let docs = match o.kind {
        Kind::Pod => {
            for line in pod::notes(o) {
                out.push_str(&format!("# {line}\n"));
            }
            vec![yaml(&pod::static_pod(o))?]
        }
        Kind::DaemonSet => {
            for line in pod::notes(o) {
                out.push_str(&format!("# {line}\n"));
            }
            vec![yaml(&pod::daemonset(o))?]
        }
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

/// The `manifest` subcommand with its three kinds.
pub fn command() -> Command {
    let mut m = Command::new("manifest")
        .about("Print Kubernetes manifests: a kubeadm static pod, a DaemonSet, or RBAC")
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
    ] {
        m = m.subcommand(kind_command(kind, about));
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
                .action(ArgAction::SetTrue)
                .help("use the ServiceAccount (in-cluster config) instead of a kubeconfig from the host"),
        )
        .arg(
            Arg::new("taint")
                .long("taint")
                .action(ArgAction::SetTrue)
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
    c
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
    match Options::from_matches(kind, sub).and_then(|o| render(&o)) {
        Ok(s) => {
            print!("{s}");
            0
        }
        Err(e) => {
            eprintln!("vipr manifest {name}: {e}");
            2
        }
    }
}
