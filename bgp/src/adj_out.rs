//! Adj-RIB-Out of one established session (RFC 4271 §3.2, §9.2): what has been handed to
//! the wire versus what is desired, turned lazily into packed UPDATEs when the socket can
//! take more. Pure, no I/O. Because the diff is computed only when the writer is ready,
//! any number of route changes in between coalesce into one set of UPDATEs.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use ipnet::IpNet;

use crate::codec::update_out::{end_of_rib, EncodeCtx};
use crate::types::{Family, RouteAttrs, RouteTable};

/// Routes announced together: one family, one set of attributes (RFC 4271 §4.3: one
/// UPDATE carries one path attribute set).
type AnnounceKey = (Family, Arc<RouteAttrs>);

/// Outbound routes of one session.
#[derive(Debug)]
pub struct AdjRibOut {
    /// How this session encodes attributes and next hops.
    ctx: EncodeCtx,
    /// Negotiated families; routes of other families are not sent.
    families: Vec<Family>,
    /// The routes the speaker wants announced (newest snapshot).
    desired: Arc<RouteTable>,
    /// The routes already turned into UPDATEs (queued or written).
    sent: Arc<RouteTable>,
    /// Encoded UPDATEs waiting for the writer.
    queue: VecDeque<Bytes>,
    /// End-of-RIB still owed after the initial table (RFC 4724 §2).
    eor_pending: bool,
    /// Prefixes currently advertised (sendable entries of `sent`).
    advertised: usize,
    /// Prefixes in `sent` that cannot be sent (no usable next hop, not unicast).
    unsendable: usize,
}

impl AdjRibOut {
    /// A fresh Adj-RIB-Out at Established: nothing sent, everything desired pending, EoR owed.
    pub fn new(ctx: EncodeCtx, families: Vec<Family>, desired: Arc<RouteTable>) -> AdjRibOut {
        AdjRibOut {
            ctx,
            families,
            desired,
            sent: Arc::new(RouteTable::new()),
            queue: VecDeque::new(),
            eor_pending: true,
            advertised: 0,
            unsendable: 0,
        }
    }

    /// Replaces the desired routes; the difference is sent when the writer is ready.
    pub fn set_desired(&mut self, t: Arc<RouteTable>) {
        self.desired = t;
    }

    /// RFC 2918 §4: answer a ROUTE-REFRESH by sending everything again.
    pub fn refresh(&mut self) {
        self.sent = Arc::new(RouteTable::new());
        self.advertised = 0;
        self.unsendable = 0;
    }

    /// Whether any UPDATE is queued or would be produced.
    pub fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.eor_pending || !Arc::ptr_eq(&self.sent, &self.desired)
    }

    /// Prefixes currently advertised to the peer.
    pub fn advertised(&self) -> usize {
        self.advertised
    }

    /// Prefixes that are desired but cannot be sent on this session.
    pub fn unsendable(&self) -> usize {
        self.unsendable
    }

    fn sendable(&self, p: &IpNet, a: &RouteAttrs) -> bool {
        let f = Family::of(p);
        self.families.contains(&f) && self.ctx.next_hop(f, a).is_ok() && !is_multicast(p)
    }

    /// The next UPDATE to write, computing the pending difference first if the queue is
    /// empty. `None` when the peer is up to date.
    pub fn next_message(&mut self) -> Option<Bytes> {
        if self.queue.is_empty() && !Arc::ptr_eq(&self.sent, &self.desired) {
            self.flush_diff();
        }
        if self.queue.is_empty() && self.eor_pending {
            self.eor_pending = false;
            for f in &self.families {
                self.queue.push_back(end_of_rib(*f));
            }
        }
        self.queue.pop_front()
    }

    /// Diffs `sent` against `desired`, groups changed prefixes by attribute set (by value:
    /// equal attributes share UPDATEs whichever `Arc` carries them, different ones never
    /// do, RFC 4271 §4.3: one set of path attributes per UPDATE) and family, and encodes
    /// them: withdrawals first, then announcements. A prefix whose attributes changed is
    /// announced again with the new ones, which replaces the old route at the peer (the
    /// implicit withdraw of RFC 4271 §3.1): no withdrawal is sent for it.
    fn flush_diff(&mut self) {
        let old = self.sent.clone();
        let new = self.desired.clone();
        let mut withdraw: HashMap<Family, Vec<IpNet>> = HashMap::new();
        // Keyed by the attributes' value; the last key is remembered by the Arc's address, so
        // a run of routes sharing one Arc (the usual case) hashes the attributes once.
        let mut announce: HashMap<AnnounceKey, Vec<IpNet>> = HashMap::new();
        let mut order: Vec<AnnounceKey> = Vec::new();
        // The last attributes seen (by address) and their key in `announce`.
        let mut last: Option<(Family, *const RouteAttrs, AnnounceKey)> = None;
        RouteTable::diff(&old, &new, |p, was, now| {
            let f = Family::of(p);
            let was = was.map(|a| self.sendable(p, a));
            let now = now.map(|a| (a, self.sendable(p, a)));
            match was {
                Some(true) => self.advertised -= 1,
                Some(false) => self.unsendable -= 1,
                None => {}
            }
            match now {
                Some((a, true)) => {
                    self.advertised += 1;
                    let key = match &last {
                        Some((lf, ptr, key)) if *lf == f && *ptr == Arc::as_ptr(a) => key.clone(),
                        _ => {
                            let key = (f, a.clone());
                            last = Some((f, Arc::as_ptr(a), key.clone()));
                            key
                        }
                    };
                    announce
                        .entry(key)
                        .or_insert_with_key(|k| {
                            order.push(k.clone());
                            Vec::new()
                        })
                        .push(*p);
                }
                Some((_, false)) => {
                    self.unsendable += 1;
                    if was == Some(true) {
                        withdraw.entry(f).or_default().push(*p);
                    }
                }
                None => {
                    if was == Some(true) {
                        withdraw.entry(f).or_default().push(*p);
                    }
                }
            }
        });
        for f in Family::ALL {
            if let Some(w) = withdraw.get(&f) {
                self.queue.extend(self.ctx.withdraw(f, w));
            }
        }
        for key in order {
            let prefixes = &announce[&key];
            if let Ok((msgs, _)) = self.ctx.announce(key.0, &key.1, prefixes) {
                self.queue.extend(msgs);
            }
        }
        self.sent = new;
    }
}

fn is_multicast(p: &IpNet) -> bool {
    match p {
        IpNet::V4(n) => n.addr().is_multicast() || n.addr().is_broadcast(),
        IpNet::V6(n) => n.addr().is_multicast(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::update_in::{parse_update, DecodeCtx};
    use crate::codec::HEADER_LEN;

    fn ctx() -> EncodeCtx {
        EncodeCtx {
            ibgp: false,
            local_as: 65001,
            four_octet_as: true,
            max_len: 4096,
            next_hop_v4: Some("10.55.0.11".parse().unwrap()),
            next_hop_v6: None,
            ipv4_over_ipv6_next_hop: false,
            next_hop_link_local: None,
            default_local_pref: 100,
        }
    }

    fn drain(r: &mut AdjRibOut) -> Vec<crate::codec::ReceivedUpdate> {
        let d = DecodeCtx {
            four_octet_as: true,
            ibgp: false,
        };
        std::iter::from_fn(|| r.next_message())
            .map(|b| parse_update(&b[HEADER_LEN..], &d).unwrap())
            .collect()
    }

    fn host(i: u32) -> IpNet {
        IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0xc0000200 + i), 32).unwrap())
    }

    #[test]
    fn initial_table_then_end_of_rib_then_diffs() {
        let mut t = RouteTable::new();
        t.announce([host(1), host(2)], RouteAttrs::default());
        t.announce(["2001:db8::1/128".parse().unwrap()], RouteAttrs::default());
        let t = Arc::new(t);
        let mut r = AdjRibOut::new(ctx(), Family::ALL.to_vec(), t.clone());
        let msgs = drain(&mut r);
        // One UPDATE for the two IPv4 routes, then EoR for both families. The IPv6 route has
        // no next hop on this IPv4 session and is not sent.
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0].announced, vec![host(1), host(2)]);
        assert_eq!(msgs[1].end_of_rib, Some(Family::Ipv4Unicast));
        assert_eq!(msgs[2].end_of_rib, Some(Family::Ipv6Unicast));
        assert_eq!((r.advertised(), r.unsendable()), (2, 1));
        assert!(!r.has_work());

        let mut t2 = (*t).clone();
        t2.withdraw([host(1)]);
        t2.withdraw(["2001:db8::1/128".parse().unwrap()]);
        t2.announce([host(3)], RouteAttrs::default());
        r.set_desired(Arc::new(t2));
        let msgs = drain(&mut r);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(msgs[0].withdrawn, vec![host(1)]);
        assert_eq!(msgs[1].announced, vec![host(3)]);
        assert_eq!((r.advertised(), r.unsendable()), (2, 0));
    }

    #[test]
    fn changes_coalesce_until_the_writer_asks() {
        let mut r = AdjRibOut::new(
            ctx(),
            vec![Family::Ipv4Unicast],
            Arc::new(RouteTable::new()),
        );
        drain(&mut r);
        let mut t = RouteTable::new();
        for i in 0..10 {
            t.announce([host(i)], RouteAttrs::default());
            r.set_desired(Arc::new(t.clone()));
        }
        t.withdraw([host(0)]);
        r.set_desired(Arc::new(t));
        let msgs = drain(&mut r);
        // Ten separate attribute Arcs → ten groups, but nothing for the route that came and went.
        let announced: usize = msgs.iter().map(|m| m.announced.len()).sum();
        let withdrawn: usize = msgs.iter().map(|m| m.withdrawn.len()).sum();
        assert_eq!((announced, withdrawn), (9, 0));
    }

    #[test]
    fn refresh_resends_everything() {
        let mut t = RouteTable::new();
        t.announce((0..3).map(host), RouteAttrs::default());
        let mut r = AdjRibOut::new(ctx(), vec![Family::Ipv4Unicast], Arc::new(t));
        drain(&mut r);
        r.refresh();
        let msgs = drain(&mut r);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].announced.len(), 3);
        assert_eq!(r.advertised(), 3);
    }

    fn attrs(c: &str, prepend: u8) -> RouteAttrs {
        RouteAttrs {
            communities: vec![c.parse().unwrap()],
            large_communities: vec!["65001:1:2".parse().unwrap()],
            med: Some(7),
            as_path_prepend: prepend,
            ..Default::default()
        }
    }

    #[test]
    fn different_attributes_go_in_different_updates_equal_ones_share() {
        let mut t = RouteTable::new();
        t.announce([host(1)], attrs("65001:100", 0));
        t.announce([host(2)], attrs("65001:200", 2));
        // Equal value, another Arc: packed with host(1).
        t.announce([host(3)], attrs("65001:100", 0));
        let mut r = AdjRibOut::new(ctx(), vec![Family::Ipv4Unicast], Arc::new(t));
        let msgs = drain(&mut r);
        let updates: Vec<_> = msgs.iter().filter(|m| !m.announced.is_empty()).collect();
        assert_eq!(updates.len(), 2, "{msgs:?}");
        let of = |h: IpNet| {
            updates
                .iter()
                .find(|m| m.announced.contains(&h))
                .expect("announced")
        };
        assert_eq!(of(host(1)).announced, vec![host(1), host(3)]);
        assert_eq!(
            of(host(1)).attrs.communities,
            vec!["65001:100".parse().unwrap()]
        );
        let two = of(host(2));
        assert_eq!(two.announced, vec![host(2)]);
        assert_eq!(two.attrs.communities, vec!["65001:200".parse().unwrap()]);
        assert_eq!(
            two.attrs.large_communities,
            vec!["65001:1:2".parse().unwrap()]
        );
        assert_eq!(two.attrs.med, Some(7));
        // eBGP: our AS once plus twice prepended.
        let path: Vec<u32> = two.attrs.as_path.as_ref().unwrap()[0].asns.clone();
        assert_eq!(path, vec![65001, 65001, 65001]);
        let path: Vec<u32> = of(host(1)).attrs.as_path.as_ref().unwrap()[0].asns.clone();
        assert_eq!(path, vec![65001]);
    }

    #[test]
    fn changed_attributes_are_announced_again_without_a_withdrawal() {
        let mut t = RouteTable::new();
        t.announce([host(1), host(2)], attrs("65001:100", 0));
        let mut r = AdjRibOut::new(ctx(), vec![Family::Ipv4Unicast], Arc::new(t.clone()));
        drain(&mut r);
        t.announce([host(2)], attrs("65001:300", 1));
        // Same value again for host(1): not a change.
        t.announce([host(1)], attrs("65001:100", 0));
        r.set_desired(Arc::new(t));
        let msgs = drain(&mut r);
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(msgs[0].withdrawn.is_empty());
        assert_eq!(msgs[0].announced, vec![host(2)]);
        assert_eq!(
            msgs[0].attrs.communities,
            vec!["65001:300".parse().unwrap()]
        );
        assert_eq!(r.advertised(), 2);
    }

    #[test]
    fn ibgp_never_prepends_and_sends_local_pref() {
        let mut c = ctx();
        c.ibgp = true;
        let mut t = RouteTable::new();
        t.announce(
            [host(1)],
            RouteAttrs {
                local_pref: Some(250),
                ..attrs("65001:100", 3)
            },
        );
        t.announce([host(2)], attrs("65001:100", 3));
        let mut r = AdjRibOut::new(c, vec![Family::Ipv4Unicast], Arc::new(t));
        let d = DecodeCtx {
            four_octet_as: true,
            ibgp: true,
        };
        let msgs: Vec<_> = std::iter::from_fn(|| r.next_message())
            .map(|b| parse_update(&b[HEADER_LEN..], &d).unwrap())
            .filter(|m| !m.announced.is_empty())
            .collect();
        assert_eq!(msgs.len(), 2);
        for m in &msgs {
            assert!(m.attrs.as_path.as_ref().unwrap().is_empty(), "{m:?}");
            let want = if m.announced == vec![host(1)] {
                250
            } else {
                100
            };
            assert_eq!(m.attrs.local_pref, Some(want));
        }
    }

    #[test]
    fn a_two_octet_session_prepends_as_trans_and_the_real_as_in_as4_path() {
        let mut c = ctx();
        c.four_octet_as = false;
        c.local_as = 4_200_000_001;
        let mut t = RouteTable::new();
        t.announce([host(1)], attrs("65001:100", 2));
        let mut r = AdjRibOut::new(c, vec![Family::Ipv4Unicast], Arc::new(t));
        let d = DecodeCtx {
            four_octet_as: false,
            ibgp: false,
        };
        let m = std::iter::from_fn(|| r.next_message())
            .map(|b| parse_update(&b[HEADER_LEN..], &d).unwrap())
            .find(|m| !m.announced.is_empty())
            .unwrap();
        assert_eq!(m.attrs.as_path.unwrap()[0].asns, vec![23456; 3]);
        assert_eq!(m.attrs.as4_path.unwrap()[0].asns, vec![4_200_000_001; 3]);
    }

    #[test]
    fn packs_one_hundred_thousand_routes_into_few_messages() {
        let mut t = RouteTable::new();
        t.announce(
            (0..100_000).map(|i| host(0x100000 + i)),
            RouteAttrs::default(),
        );
        let mut r = AdjRibOut::new(ctx(), vec![Family::Ipv4Unicast], Arc::new(t));
        let mut n = 0;
        let mut total = 0;
        while let Some(m) = r.next_message() {
            assert!(m.len() <= 4096);
            n += 1;
            total += m.len();
        }
        // 5 octets per /32; about 810 per 4096-octet UPDATE.
        assert!(n <= 125 + 1, "{n} messages");
        assert!(total > 500_000);
        assert_eq!(r.advertised(), 100_000);
    }
}
