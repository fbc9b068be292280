//! Shared helpers of the `peers_*` integration tests (the speaker against real BIRD 2, FRR
//! and GoBGP in namespaces): a speaker running in a node namespace ([`Node`]), the
//! speaker's peer configs and the attributes every test announces; per daemon (`bird`,
//! `frr`, `gobgp`, re-exported here) config builders and polling helpers that read what
//! the daemon's own CLI shows.
//!
//! Layout (from `testbed::Lab`): the router namespace (10.55.0.1, 2001:db8:55::1) runs
//! the daemon; node `i` (10.55.0.(11+i), 2001:db8:55::(11+i)) runs one speaker, which
//! announces `203.0.113.(10+i)/32` and `2001:db8:ff::(10+i)/128`.

#![allow(dead_code, unused_imports)] // each test file uses a part

mod bird;
mod frr;
mod gobgp;

pub use bird::*;
pub use frr::*;
pub use gobgp::*;

use std::net::IpAddr;
use std::time::Duration;

use bgp::{
    Community, LargeCommunity, PeerConfig, PeerInfo, PeerStatus, RouteAttrs, ShutdownOptions,
    Speaker, SpeakerConfig, State,
};
use ipnet::IpNet;
use testbed::{wait_for, Lab, NsRuntime};

/// How long anything may take to converge.
pub const CONVERGE: Duration = Duration::from_secs(15);

/// BIRD timers for fast convergence (see `testbed::Bird::start`).
pub const BIRD_TIMERS: &str = "hold time 3; keepalive time 1; connect retry time 1; \
     connect delay time 1; error wait time 1, 5;";

/// The daemon's AS (iBGP peers of it use it too).
pub const PEER_AS: u32 = 65000;
/// A 2-octet eBGP AS for the speaker.
pub const EBGP_AS: u32 = 65001;
/// A 4-octet eBGP AS for the speaker (RFC 6793).
pub const EBGP_AS4: u32 = 4_200_000_001;

/// The router's address of the same family as `v6`.
pub fn router(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Lab::router_v6())
    } else {
        IpAddr::V4(Lab::router_v4())
    }
}

/// Node `i`'s address of the same family as `v6`.
pub fn node_addr(i: usize, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Lab::node_v6(i))
    } else {
        IpAddr::V4(Lab::node_v4(i))
    }
}

/// The IPv4 host route node `i` announces.
pub fn v4_prefix(i: usize) -> IpNet {
    format!("203.0.113.{}/32", 10 + i).parse().unwrap()
}

/// The IPv6 host route node `i` announces.
pub fn v6_prefix(i: usize) -> IpNet {
    format!("2001:db8:ff::{}/128", 10 + i).parse().unwrap()
}

/// MED every test announces.
pub const MED: u32 = 50;
/// LOCAL_PREF every test announces (seen by iBGP peers only).
pub const LOCAL_PREF: u32 = 200;

/// The communities every test announces.
pub fn communities() -> Vec<Community> {
    vec![Community::new(65010, 100), Community::new(65010, 200)]
}

/// The large communities every test announces.
pub fn large_communities() -> Vec<LargeCommunity> {
    vec![LargeCommunity {
        global: EBGP_AS4,
        local1: 1,
        local2: 2,
    }]
}

/// MED, LOCAL_PREF, two communities, one large community; next hop from the session.
pub fn attrs() -> RouteAttrs {
    RouteAttrs {
        med: Some(MED),
        local_pref: Some(LOCAL_PREF),
        communities: communities(),
        large_communities: large_communities(),
        next_hop: None,
        as_path_prepend: 0,
    }
}

/// The speaker's config for a session to `peer` (the router): hold 9 (the peers offer 3, so
/// 3 is negotiated), reconnect backoff 1-2 s. The router id is the node's
/// ([`Node::start_with`]).
pub fn peer_cfg(peer: IpAddr, remote_as: u32, local_as: u32) -> PeerConfig {
    let mut c = PeerConfig::new(peer, remote_as, local_as);
    c.hold_time = 9;
    c.connect_retry_min = Duration::from_secs(1);
    c.connect_retry_max = Duration::from_secs(2);
    c
}

/// A speaker running on a tokio runtime inside node `i`'s namespace. Dropping it shuts the
/// runtime down (every session's socket is closed).
pub struct Node {
    /// The speaker handle (announce/withdraw need no runtime).
    pub sp: Speaker,
    /// Which node of the lab.
    pub index: usize,
    rt: NsRuntime,
}

impl Node {
    /// Starts a speaker (no listener) in node `i`, announcing that node's IPv4 and IPv6
    /// prefixes with [`attrs`].
    pub fn start(lab: &Lab, i: usize) -> Node {
        Node::start_with(lab, i, SpeakerConfig::default())
    }

    /// [`Node::start`] with a speaker config (e.g. a listener for passive peers).
    pub fn start_with(lab: &Lab, i: usize, mut cfg: SpeakerConfig) -> Node {
        cfg.router_id.get_or_insert(Lab::node_v4(i));
        let rt = lab.nodes[i].runtime();
        let sp = rt.block_on(Speaker::start(cfg)).expect("speaker starts");
        sp.announce([v4_prefix(i), v6_prefix(i)], attrs());
        Node { sp, index: i, rt }
    }

    /// Runs `f(speaker)` on the node's runtime.
    pub fn call<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(Speaker) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.rt.block_on(f(self.sp.clone()))
    }

    /// Tasks alive on the node's runtime (the speaker's and its sessions').
    pub fn alive_tasks(&self) -> usize {
        self.rt.handle().metrics().num_alive_tasks()
    }

    pub fn add_peer(&self, cfg: PeerConfig) {
        self.call(|sp| async move { sp.add_peer(cfg).await })
            .expect("add_peer");
    }

    pub fn set_peer(&self, cfg: PeerConfig) -> bool {
        self.call(|sp| async move { sp.set_peer(cfg).await })
            .expect("set_peer")
    }

    pub fn remove_peer(&self, addr: IpAddr) -> bool {
        self.call(|sp| async move { sp.remove_peer(addr).await })
            .expect("remove_peer")
    }

    pub fn peer(&self, addr: IpAddr) -> PeerInfo {
        self.call(|sp| async move { sp.peers().await })
            .expect("peers")
            .into_iter()
            .find(|p| p.config.address == addr)
            .unwrap_or_else(|| panic!("speaker has no peer {addr}"))
    }

    pub fn status(&self, addr: IpAddr) -> PeerStatus {
        self.peer(addr).status
    }

    /// Waits until the speaker's session to `addr` is Established.
    pub fn wait_established(&self, addr: IpAddr) {
        let ok = wait_for(CONVERGE, || {
            (self.status(addr).state == State::Established).then_some(())
        });
        assert!(
            ok.is_some(),
            "node{}: session to {addr} not Established: {:?}",
            self.index,
            self.peer(addr)
        );
    }

    /// Cease / Administrative Shutdown with `message` to every peer, no drain.
    pub fn shutdown(&self, message: &str) {
        let message = message.to_string();
        self.call(|sp| async move {
            sp.shutdown(ShutdownOptions {
                message,
                drain: None,
            })
            .await
        });
    }
}
