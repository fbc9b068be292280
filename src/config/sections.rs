//! One `watch` per configuration section, each followed by the tasks that own that part of
//! the daemon (see the diagram in `main.rs`). SIGHUP builds a new [`Config`] and
//! [`Sections::apply`] sends each section that changed, and only those; the settings of
//! [`Section::Node`] cannot change while the process runs and are named instead.

use std::sync::Arc;

use tokio::sync::watch;

use super::keys::Section;
use super::*;

/// The senders of every section's `watch`, and the fixed node settings.
pub struct Sections {
    /// Fixed for the life of the process.
    pub node: NodeSettings,
    /// Where VIPs go: the reconciler.
    pub vips: watch::Sender<Arc<VipSettings>>,
    /// The control-plane VIP as configured: the resolver (`dns.rs`), the only follower.
    pub control_plane_cfg: watch::Sender<Arc<ControlPlane>>,
    /// The control-plane VIP with a DNS name resolved, sent by the resolver alone:
    /// reconciler, health checker, load balancer, elections, peers.
    pub control_plane: watch::Sender<Arc<ControlPlane>>,
    /// Services: Service watcher, reconciler, elections.
    pub services: watch::Sender<Arc<ServiceSettings>>,
    /// BGP: the peers task (sessions, listener), the reconciler (route attributes, drain).
    pub bgp: watch::Sender<Arc<BgpSettings>>,
    /// Peer provider: the discovery task.
    pub peer_source: watch::Sender<Arc<PeerSource>>,
    /// ARP mode: reconciler, elections, announcer.
    pub arp: watch::Sender<Arc<ArpSettings>>,
    /// Control-plane load balancing: the load balancer.
    pub lb: watch::Sender<Arc<LbSettings>>,
    /// HTTP endpoints: the HTTP task.
    pub http: watch::Sender<Arc<HttpSettings>>,
    /// Logging: the log filter.
    pub log: watch::Sender<Arc<LogSettings>>,
}

/// What [`Sections::apply`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Sections sent to their followers.
    pub changed: Vec<Section>,
    /// Settings that differ but need a restart (kept as running).
    pub fixed: Vec<&'static str>,
}

fn send<T: PartialEq>(tx: &watch::Sender<Arc<T>>, new: T, s: Section, out: &mut Vec<Section>) {
    tx.send_if_modified(|cur| {
        if **cur == new {
            false
        } else {
            *cur = Arc::new(new);
            out.push(s);
            true
        }
    });
}

impl Sections {
    /// The sections of a configuration.
    pub fn new(c: Config) -> Sections {
        Sections {
            node: c.node,
            vips: watch::Sender::new(Arc::new(c.vips)),
            control_plane: watch::Sender::new(Arc::new(c.control_plane.clone())),
            control_plane_cfg: watch::Sender::new(Arc::new(c.control_plane)),
            services: watch::Sender::new(Arc::new(c.services)),
            bgp: watch::Sender::new(Arc::new(c.bgp)),
            peer_source: watch::Sender::new(Arc::new(c.peer_source)),
            arp: watch::Sender::new(Arc::new(c.arp)),
            lb: watch::Sender::new(Arc::new(c.lb)),
            http: watch::Sender::new(Arc::new(c.http)),
            log: watch::Sender::new(Arc::new(c.log)),
        }
    }

    /// Publishes every section of `new` that differs from the running one. The node
    /// settings stay as they are; those that differ are returned by name.
    pub fn apply(&self, new: Config) -> Applied {
        let mut a = Applied {
            fixed: fixed_differences(&self.node, &new.node),
            ..Applied::default()
        };
        let c = &mut a.changed;
        send(&self.vips, new.vips, Section::Vips, c);
        send(
            &self.control_plane_cfg,
            new.control_plane,
            Section::ControlPlane,
            c,
        );
        send(&self.services, new.services, Section::Services, c);
        send(&self.bgp, new.bgp, Section::Bgp, c);
        send(&self.peer_source, new.peer_source, Section::PeerSource, c);
        send(&self.arp, new.arp, Section::Arp, c);
        send(&self.lb, new.lb, Section::Lb, c);
        send(&self.http, new.http, Section::Http, c);
        send(&self.log, new.log, Section::Log, c);
        a
    }
}

/// The settings of [`NodeSettings`] that differ, by name.
pub fn fixed_differences(old: &NodeSettings, new: &NodeSettings) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.mode != new.mode {
        out.push("bgp_enable/vip_arp");
    }
    if old.name != new.name {
        out.push("vip_nodename");
    }
    if old.instance != new.instance {
        out.push("vipr_instance");
    }
    if old.state_dir != new.state_dir {
        out.push("vipr_state_dir");
    }
    if old.kubeconfig != new.kubeconfig {
        out.push("k8s_config_file");
    }
    if old.kubernetes_addr != new.kubernetes_addr {
        out.push("kubernetes_addr");
    }
    if old.log_json != new.log_json {
        out.push("vipr_log_format");
    }
    if old.node_labeling != new.node_labeling {
        out.push("enable_node_labeling");
    }
    if old.daemonset != new.daemonset {
        out.push("vipr_daemonset/vipr_pod_template_generation");
    }
    if old.static_pod_manifest != new.static_pod_manifest {
        out.push("vipr_static_pod_manifest");
    }
    out
}
