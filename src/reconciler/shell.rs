//! The reconciler's async shell: owns the node's VIP addresses (through [`AddrManager`]) and
//! drives the speaker's routes. It follows the configuration sections it reads, health,
//! Services and leadership, feeds each change to the core, executes the actions, re-reads
//! the node every [`RESYNC`], and at cancellation withdraws everything (or leaves it for a
//! restart in place) and removes its addresses.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bgp::{RouteTable, ShutdownOptions, Speaker};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Action, Input, Reconciler, Settings};
use crate::config::{
    ArpSettings, BgpSettings, ControlPlane, Mode, NodeSettings, ServiceSettings, VipSettings,
};
use crate::dataplane::addr::AddrManager;
use crate::dataplane::announce::Announce;
use crate::model::{Health, Leadership, NodeAddr, Services};

/// How often the node's addresses are re-read (repairs external changes).
pub const RESYNC: Duration = Duration::from_secs(10);

/// BGP mode: how long a VIP stays on the node after its route was withdrawn (at shutdown,
/// on a cordon, whenever this node stops serving it). A router takes a while to put the
/// withdrawal into its forwarding table (FRR 8.4 here: about 40 ms, measured by a 10 ms
/// ping losing four replies when the VIP went at once); until then it still sends this
/// node traffic for the VIP, which the node now still answers. (ARP mode moves the VIP to
/// another node: it goes at once.)
pub const LINGER: Duration = Duration::from_secs(1);

/// At a start that finds VIPs of an earlier run: how long to wait for the first view of the
/// Services (the caches synced) and the control-plane health check's first result before
/// deciding them. Shorter than the wait of a restarted session for its first routes
/// (`bgp::session::RESTART_ROUTES_WAIT`, 3 s).
const FIRST_VIEW_WAIT: Duration = Duration::from_secs(2);

/// BGP mode: addresses whose routes are withdrawn, to be removed at their deadline
/// ([`LINGER`]), oldest first. An address withdrawn again (served again in between) gets a
/// new deadline; its older entry is skipped when due, so it is removed once, a whole
/// [`LINGER`] after its last withdrawal.
#[derive(Default)]
struct Lingering {
    queue: VecDeque<(tokio::time::Instant, NodeAddr)>,
    latest: HashMap<NodeAddr, tokio::time::Instant>,
}

impl Lingering {
    fn push(&mut self, a: NodeAddr) {
        let t = tokio::time::Instant::now() + LINGER;
        self.latest.insert(a.clone(), t);
        self.queue.push_back((t, a));
    }

    fn next(&self) -> Option<tokio::time::Instant> {
        self.queue.front().map(|(t, _)| *t)
    }

    fn due(&mut self) -> Vec<NodeAddr> {
        let now = tokio::time::Instant::now();
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|(t, _)| *t <= now) {
            let Some((t, a)) = self.queue.pop_front() else {
                break;
            };
            if self.latest.get(&a) == Some(&t) {
                self.latest.remove(&a);
                out.push(a);
            }
        }
        if self.queue.is_empty() {
            // A mass withdrawal's room given back.
            self.queue.shrink_to(64);
            self.latest.shrink_to(64);
        }
        out
    }
}

/// What the reconciler listens to.
pub struct Inputs {
    /// Where VIPs go.
    pub vips: watch::Receiver<Arc<VipSettings>>,
    /// The control-plane VIP.
    pub control_plane: watch::Receiver<Arc<ControlPlane>>,
    /// Whether Services are served.
    pub services_cfg: watch::Receiver<Arc<ServiceSettings>>,
    /// Lease election.
    pub arp: watch::Receiver<Arc<ArpSettings>>,
    /// Route attributes and the shutdown drain.
    pub bgp: watch::Receiver<Arc<BgpSettings>>,
    /// Control-plane health.
    pub health: watch::Receiver<Health>,
    /// Services from Kubernetes (empty without `svc_enable`).
    pub services: watch::Receiver<Services>,
    /// Leases held (ARP mode).
    pub leadership: watch::Receiver<Leadership>,
}

impl Inputs {
    fn settings(&mut self, mode: Mode) -> Settings {
        let bgp = self.bgp.borrow_and_update().clone();
        Settings {
            mode,
            vips: self.vips.borrow_and_update().clone(),
            control_plane: self.control_plane.borrow_and_update().clone(),
            services: self.services_cfg.borrow_and_update().clone(),
            arp: self.arp.borrow_and_update().clone(),
            attrs: bgp.attrs.clone(),
            attr_sets: bgp.attr_sets.clone(),
        }
    }
}

/// What the reconciler drives.
pub struct Effects {
    /// VIP addresses on the node.
    pub addrs: AddrManager,
    /// Routes.
    pub speaker: Speaker,
    /// The status view.
    pub vips: watch::Sender<super::VipStates>,
    /// The node's own addresses (not vipr's), read at every resync: never a Service's VIP.
    pub node_addrs: watch::Sender<Arc<BTreeSet<IpAddr>>>,
    /// ARP mode: gratuitous ARP / unsolicited NA for VIPs put on the node.
    pub announce: Option<mpsc::Sender<Announce>>,
    /// Set by SIGUSR2 (or an upgrade intent): leave routes and VIPs for the next process.
    pub restart: crate::restart::RestartInPlace,
    /// Work counters (VIPs decided).
    pub work: Arc<crate::model::WorkCounts>,
    /// Beats after every event handled and every resync: `/healthz` fails when it stops.
    pub alive: crate::liveness::Beat,
}

/// Runs the reconciler until cancelled, then withdraws everything (speaker shutdown), removes
/// vipr's addresses, and returns.
pub async fn run(node: NodeSettings, mut i: Inputs, fx: Effects, cancel: CancellationToken) {
    let mut core = Reconciler::new();
    let observed = match fx.addrs.scan().await {
        Ok((node, ours)) => {
            publish_node_addrs(&fx, node);
            ours
        }
        Err(e) => {
            warn!(error = %e, "cannot list addresses");
            Vec::new()
        }
    };
    if !observed.is_empty() {
        info!(
            count = observed.len(),
            "found VIP addresses from an earlier run"
        );
    }
    // Addresses from an earlier run (a restart in place, a crash, a pod replaced): the
    // Service VIPs among them can only be judged once the Services are known, and a
    // health-checked control-plane VIP once the first check answered, else they would go
    // and come back, and after a restart in place the first route table (and the
    // End-of-RIB after it) would lack them, so the router drops their stale routes.
    if !observed.is_empty() {
        let deadline = tokio::time::Instant::now() + FIRST_VIEW_WAIT;
        let services = i.services_cfg.borrow().enabled;
        let first_view = async {
            if services {
                let _ = tokio::time::timeout_at(deadline, i.services.changed()).await;
            }
            let checked = i.health.wait_for(|h| *h != Health::Unknown);
            let _ = tokio::time::timeout_at(deadline, checked).await;
        };
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = first_view => {}
        }
    }
    let mut pending: VecDeque<Action> = VecDeque::new();
    pending.extend(core.handle(Input::Observed(observed)));
    pending.extend(core.handle(Input::Health(*i.health.borrow_and_update())));
    pending.extend(core.handle(Input::Services(i.services.borrow_and_update().clone())));
    pending.extend(core.handle(Input::Leadership(i.leadership.borrow_and_update().clone())));
    pending.extend(core.handle(Input::Settings(i.settings(node.mode))));
    let mut lingering = (node.mode == Mode::Bgp).then(Lingering::default);
    apply(&mut core, pending, &fx, lingering.as_mut()).await;
    fx.alive.now();
    let mut tick = tokio::time::interval(RESYNC);
    tick.tick().await;
    loop {
        let next = lingering.as_ref().and_then(Lingering::next);
        let actions = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(next.unwrap_or_else(tokio::time::Instant::now)), if next.is_some() => {
                let mut out = Vec::new();
                for n in lingering.as_mut().map(Lingering::due).unwrap_or_default() {
                    // Served again while it lingered (the core never saw it go): it stays.
                    if !core.wanted(&n) {
                        out.extend(remove(&mut core, n, &fx).await);
                    }
                }
                out
            }
            Ok(()) = i.vips.changed() => core.handle(Input::Settings(i.settings(node.mode))),
            Ok(()) = i.control_plane.changed() => core.handle(Input::Settings(i.settings(node.mode))),
            Ok(()) = i.services_cfg.changed() => core.handle(Input::Settings(i.settings(node.mode))),
            Ok(()) = i.arp.changed() => core.handle(Input::Settings(i.settings(node.mode))),
            Ok(()) = i.bgp.changed() => core.handle(Input::Settings(i.settings(node.mode))),
            Ok(()) = i.health.changed() => core.handle(Input::Health(*i.health.borrow_and_update())),
            Ok(()) = i.services.changed() => core.handle(Input::Services(i.services.borrow_and_update().clone())),
            Ok(()) = i.leadership.changed() => core.handle(Input::Leadership(i.leadership.borrow_and_update().clone())),
            _ = tick.tick() => match fx.addrs.scan().await {
                Ok((node, ours)) => {
                    publish_node_addrs(&fx, node);
                    core.handle(Input::Observed(ours))
                }
                Err(e) => { warn!(error = %e, "resync failed"); Vec::new() }
            },
        };
        apply(&mut core, actions.into(), &fx, lingering.as_mut()).await;
        fx.alive.now();
    }
    // Restart in place (BGP mode): sessions closed without NOTIFICATION or withdrawals, VIP
    // addresses left on the node; the next process picks both up (RFC 4724).
    if fx.restart.requested() && node.mode == Mode::Bgp {
        fx.speaker.restart_in_place().await;
        if let Err(e) = crate::restart::write_marker(&node.state_dir) {
            warn!(dir = %node.state_dir.display(), error = %e, "cannot record the restart; the next start will not set the Restart State bit");
        }
        info!("restarting in place: routes left at the peers, VIP addresses left on the node");
        return;
    }
    // Shutdown: routes first (withdraw + Cease on every session), then, once the routers
    // had time to act on the withdrawal (BGP mode: LINGER), addresses.
    let drain = i.bgp.borrow().drain;
    fx.speaker
        .shutdown(ShutdownOptions {
            message: format!("vipr on {} shutting down", node.name),
            drain,
        })
        .await;
    if node.mode == Mode::Bgp && !core.owned().is_empty() {
        tokio::time::sleep(LINGER).await;
    }
    let actions = core.handle(Input::Shutdown);
    apply(&mut core, actions.into(), &fx, None).await;
    for a in core.owned() {
        if let Err(e) = fx.addrs.remove(&a).await {
            warn!(address = %a, error = %e, "cannot remove VIP address");
        }
    }
    fx.addrs.compact();
    info!("all routes withdrawn and VIP addresses removed");
}

/// The result of one address addition, fed back to the core.
async fn added(
    core: &mut Reconciler,
    n: NodeAddr,
    r: Result<bool, crate::error::DataplaneError>,
    fx: &Effects,
) -> Vec<Action> {
    match r {
        Ok(owned) => {
            info!(address = %n, owned, "VIP on the node");
            if let Some(tx) = &fx.announce {
                let _ = tx.send(Announce::Up(n.clone())).await;
            }
            core.handle(Input::Added { addr: n, owned })
        }
        Err(e) => {
            warn!(address = %n, error = %e, "cannot add VIP address; retrying at the next resync");
            core.handle(Input::AddFailed(n, e.to_string()))
        }
    }
}

/// Publishes the node's own addresses (not vipr's) when they changed.
fn publish_node_addrs(fx: &Effects, addrs: Vec<(IpAddr, bool)>) {
    let set: BTreeSet<IpAddr> = addrs.into_iter().map(|(ip, _)| ip).collect();
    fx.node_addrs.send_if_modified(|cur| {
        let changed = **cur != set;
        if changed {
            *cur = Arc::new(set);
        }
        changed
    });
}

/// Removes one address now, feeding the result back to the core.
async fn remove(core: &mut Reconciler, n: NodeAddr, fx: &Effects) -> Vec<Action> {
    if let Some(tx) = &fx.announce {
        let _ = tx.send(Announce::Down(n.clone())).await;
    }
    match fx.addrs.remove(&n).await {
        Ok(()) => {
            info!(address = %n, "VIP removed from the node");
            core.handle(Input::Removed(n))
        }
        Err(e) => {
            warn!(address = %n, error = %e, "cannot remove VIP address");
            Vec::new()
        }
    }
}

/// How many address additions run at once (one netlink request each).
const ADDS_AT_ONCE: usize = 128;

/// Executes actions, feeding each result back into the core until nothing is left. Address
/// additions run concurrently; route tables coalesce (only the newest is handed to the
/// speaker), but always before an address is removed, so a route is withdrawn before its
/// address goes.
async fn apply(
    core: &mut Reconciler,
    mut queue: VecDeque<Action>,
    fx: &Effects,
    mut lingering: Option<&mut Lingering>,
) {
    let mut routes: Option<RouteTable> = None;
    let flush_routes = |routes: &mut Option<RouteTable>| {
        if let Some(t) = routes.take() {
            fx.speaker.set_routes(t);
        }
    };
    while let Some(a) = queue.pop_front() {
        let more = match a {
            Action::Add(n) => {
                let mut batch = vec![n];
                while batch.len() < ADDS_AT_ONCE {
                    match queue.front() {
                        Some(Action::Add(_)) => {
                            if let Some(Action::Add(n)) = queue.pop_front() {
                                batch.push(n);
                            }
                        }
                        _ => break,
                    }
                }
                let results =
                    futures::future::join_all(batch.iter().map(|n| fx.addrs.add(n))).await;
                let mut more = Vec::new();
                for (n, r) in batch.into_iter().zip(results) {
                    more.extend(added(core, n, r, fx).await);
                }
                // Routes for what is on the node so far: the router learns them while the
                // next batch goes on.
                let (tables, more): (Vec<Action>, Vec<Action>) = more
                    .into_iter()
                    .partition(|a| matches!(a, Action::Routes(_)));
                if let Some(Action::Routes(t)) = tables.into_iter().last() {
                    // The newest table: any still queued was emitted before it.
                    queue.retain(|a| !matches!(a, Action::Routes(_)));
                    routes = Some(t);
                }
                flush_routes(&mut routes);
                more
            }
            Action::Remove(n) => {
                flush_routes(&mut routes);
                // Only an address whose IP is no longer served lingers; one replaced by
                // another form of the same IP (prefix length, interface, local route) goes
                // first, so the new one can be added.
                let replaced = core.replaced(&n);
                match lingering.as_deref_mut().filter(|_| !replaced) {
                    Some(l) => {
                        l.push(n);
                        Vec::new()
                    }
                    None => remove(core, n, fx).await,
                }
            }
            Action::Routes(t) => {
                routes = Some(t);
                Vec::new()
            }
            Action::Quiet(n) => {
                info!(address = %n, "Lease lost: VIP kept on the node, no longer announced (vip_preserve_on_leadership_loss)");
                if let Some(tx) = &fx.announce {
                    let _ = tx.send(Announce::Down(n)).await;
                }
                Vec::new()
            }
            Action::Announce(n) => {
                info!(address = %n, "Lease back: announcing the kept VIP again");
                if let Some(tx) = &fx.announce {
                    let _ = tx.send(Announce::Up(n)).await;
                }
                Vec::new()
            }
        };
        queue.extend(more);
    }
    flush_routes(&mut routes);
    fx.addrs.flush();
    fx.vips.send_replace(core.status());
    fx.work
        .decided
        .store(core.decided(), std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ip: &str) -> NodeAddr {
        NodeAddr {
            route: false,
            ip: ip.parse().unwrap(),
            prefix_len: 32,
            interface: "lo".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_withdrawn_again_is_removed_once_a_whole_linger_after() {
        let mut l = Lingering::default();
        l.push(a("192.0.2.1"));
        l.push(a("192.0.2.2"));
        tokio::time::advance(LINGER / 2).await;
        // Served again and withdrawn again: a new deadline.
        l.push(a("192.0.2.1"));
        tokio::time::advance(LINGER / 2).await;
        assert_eq!(
            l.due(),
            vec![a("192.0.2.2")],
            "192.0.2.1's first entry is stale"
        );
        tokio::time::advance(LINGER / 2).await;
        assert_eq!(l.due(), vec![a("192.0.2.1")]);
        assert_eq!(l.next(), None);
        assert!(l.latest.is_empty());
    }
}
