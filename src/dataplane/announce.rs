//! ARP mode's announcement schedule: when a VIP is put on the node, three gratuitous ARPs
//! (IPv4) or unsolicited neighbour advertisements (IPv6) spaced 1.1 s apart — over Linux's
//! one-second `arp locktime`, so every one counts (MetalLB #1581) — then one every
//! `vip_arpRate` while the VIP stays. The schedule is a pure [`Schedule`]; [`run`] sends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::garp::Announcer;
use crate::config::ArpSettings;
use crate::model::NodeAddr;

/// Spacing of the takeover burst.
pub const BURST_SPACING: Duration = Duration::from_millis(1100);
/// Announcements in the takeover burst.
pub const BURST: u32 = 3;

/// Commands to the announcer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announce {
    /// The VIP was put on the node: announce it.
    Up(NodeAddr),
    /// The VIP was removed: stop.
    Down(NodeAddr),
}

/// When each VIP is announced next.
#[derive(Debug, Default)]
pub struct Schedule {
    /// Next send time and announcements sent so far.
    vips: BTreeMap<NodeAddr, (Instant, u32)>,
}

impl Schedule {
    /// Applies a command at `now`.
    pub fn command(&mut self, c: Announce, now: Instant) {
        match c {
            Announce::Up(a) => {
                self.vips.insert(a, (now, 0));
            }
            Announce::Down(a) => {
                self.vips.remove(&a);
            }
        }
    }

    /// The VIPs due at `now`; their next time is advanced (burst spacing for the first
    /// [`BURST`], then `refresh`).
    pub fn due(&mut self, now: Instant, refresh: Duration) -> Vec<NodeAddr> {
        let mut out = Vec::new();
        for (a, (next, sent)) in self.vips.iter_mut() {
            if *next <= now {
                out.push(a.clone());
                *sent += 1;
                *next = now
                    + if *sent < BURST {
                        BURST_SPACING
                    } else {
                        refresh
                    };
            }
        }
        out
    }

    /// The earliest next send time.
    pub fn next(&self) -> Option<Instant> {
        self.vips.values().map(|(t, _)| *t).min()
    }
}

/// Sends announcements until the command channel closes, refreshing every `vip_arpRate` of
/// the ARP section (followed live).
pub async fn run(mut rx: mpsc::Receiver<Announce>, mut arp: watch::Receiver<Arc<ArpSettings>>) {
    let mut sched = Schedule::default();
    let mut sockets: BTreeMap<String, Announcer> = BTreeMap::new();
    loop {
        let wake = sched.next();
        tokio::select! {
            c = rx.recv() => match c {
                Some(c) => sched.command(c, Instant::now()),
                None => return,
            },
            Ok(()) = arp.changed() => {}
            _ = async { tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)).await }, if wake.is_some() => {}
        }
        let refresh = arp.borrow_and_update().rate;
        for a in sched.due(Instant::now(), refresh) {
            if !sockets.contains_key(&a.interface) {
                match Announcer::new(&a.interface) {
                    Ok(s) => {
                        sockets.insert(a.interface.clone(), s);
                    }
                    Err(e) => {
                        warn!(interface = %a.interface, error = %e, "cannot announce VIPs on this interface");
                        continue;
                    }
                }
            }
            if let Some(s) = sockets.get(&a.interface) {
                match s.announce(a.ip) {
                    Ok(()) => debug!(address = %a, "announced"),
                    Err(e) => {
                        // The interface may have been recreated (new index or MAC): reopen next time.
                        warn!(address = %a, error = %e, "announcement failed");
                        sockets.remove(&a.interface);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ip: &str) -> NodeAddr {
        NodeAddr {
            ip: ip.parse().unwrap(),
            prefix_len: 32,
            interface: "eth0".into(),
            route: false,
        }
    }

    #[test]
    fn burst_of_three_spaced_over_a_second_then_refresh() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.command(Announce::Up(a("192.0.2.10")), t0);
        let refresh = Duration::from_secs(3);
        let mut sends = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(10) {
            if !s.due(now, refresh).is_empty() {
                sends.push(now - t0);
            }
            now = s.next().unwrap();
        }
        assert_eq!(
            sends,
            vec![
                Duration::ZERO,
                Duration::from_millis(1100),
                Duration::from_millis(2200),
                Duration::from_millis(5200),
                Duration::from_millis(8200)
            ]
        );
        s.command(Announce::Down(a("192.0.2.10")), now);
        assert_eq!(s.next(), None);
    }
}
