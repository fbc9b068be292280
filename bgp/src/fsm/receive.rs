//! The session core's receive side: a frame decoded and checked against the connection's
//! state (RFC 4271 §8.2.2), the OPEN (§6.2, collisions §6.8), Established (§8.2.2 Event 26)
//! and what an Established session does with each message; the next UPDATE when the writer
//! has room.

use std::net::IpAddr;

use super::{secs, ConnId, ConnState, Direction, DownReason, Output, Session, Timer, STABLE_AFTER};
use crate::adj_out::AdjRibOut;
use crate::codec::notification::{self as n, Notification};
use crate::codec::open::{Negotiated, Open};
use crate::codec::{self, DecodeCtx, EncodeCtx, Message, MessageType};
use crate::config::PeerConfig;
use crate::types::{Family, RouteAttrs};

impl Session {
    pub(super) fn frame(&mut self, id: ConnId, frame: &[u8], out: &mut Vec<Output>) {
        let Some(i) = self.conn_index(id) else { return };
        let max_len = self.max_message_len(id);
        let ctx = DecodeCtx {
            four_octet_as: self.conns[i]
                .negotiated
                .as_ref()
                .is_none_or(|neg| neg.four_octet_as),
            ibgp: self.cfg.is_ibgp(),
        };
        let msg = match codec::decode(frame, max_len, &ctx) {
            Ok(m) => m,
            Err(notif) => {
                // Count what arrived when the type octet is readable.
                if let Some(t) = frame.get(18).and_then(|c| MessageType::from_code(*c)) {
                    self.stats.count_in(t);
                }
                return self.fail(id, notif, out);
            }
        };
        self.stats.count_in(msg.kind());
        if let Message::Notification(notif) = &msg {
            // Event 24/25: the peer gives up; close without answering (§6.4).
            self.stats.notification_received(notif);
            return self.drop_conn(id, DownReason::NotificationReceived(notif.clone()), out);
        }
        match self.conns[i].state {
            ConnState::Connecting => {}
            ConnState::OpenSent => match msg {
                Message::Open(open) => self.open_received(id, open, out),
                // RFC 6608: unexpected message in OpenSent.
                _ => self.fail(
                    id,
                    Notification::new(n::code::FSM, n::fsm::IN_OPENSENT),
                    out,
                ),
            },
            ConnState::OpenConfirm => match msg {
                Message::Keepalive => self.established(id, out),
                _ => self.fail(
                    id,
                    Notification::new(n::code::FSM, n::fsm::IN_OPENCONFIRM),
                    out,
                ),
            },
            ConnState::Established => self.established_message(id, msg, out),
        }
    }

    /// Event 19 BGPOpen in OpenSent: check the OPEN against the config (§6.2), resolve a
    /// collision (§6.8), then send KEEPALIVE and go to OpenConfirm.
    fn open_received(&mut self, id: ConnId, open: Open, out: &mut Vec<Output>) {
        if !self.cfg.accepts_as(open.asn) {
            return self.fail(
                id,
                Notification::new(n::code::OPEN, n::open::BAD_PEER_AS),
                out,
            );
        }
        if self.cfg.is_ibgp() && open.router_id == self.identity.router_id {
            // RFC 6286 §2.2: the identifier must differ within an AS.
            return self.fail(
                id,
                Notification::new(n::code::OPEN, n::open::BAD_BGP_ID),
                out,
            );
        }
        let dir = self.conns[self.conn_index(id).unwrap_or(0)].dir;
        let other = self
            .conns
            .iter()
            .find(|c| c.id != id && c.state >= ConnState::OpenConfirm)
            .map(|c| (c.id, c.dir, c.state));
        if let Some((other_id, other_dir, other_state)) = other {
            if other_state == ConnState::Established {
                // Only reachable when the peer does graceful restart (see `accepted`):
                // RFC 4724 §4.2, the old session is dead, keep the new connection.
                self.drop_conn(other_id, DownReason::PeerRestarted, out);
            } else {
                // §6.8: the connection opened by the side with the higher BGP Identifier
                // survives (RFC 6286 §2.3: ties broken by AS number).
                let local = (u32::from(self.identity.router_id), self.cfg.local_as);
                let remote = (u32::from(open.router_id), open.asn);
                let keep_dir = if local > remote {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                };
                let loser = if dir == other_dir || dir != keep_dir {
                    id
                } else {
                    other_id
                };
                let cease = Notification::new(n::code::CEASE, n::cease::COLLISION);
                self.send_notification(loser, &cease, out);
                self.remove_conn(loser, out);
                if loser == id {
                    return;
                }
            }
        }
        let neg = Negotiated::new(&self.our_open, &open, self.cfg.keepalive);
        let (hold, ka) = (neg.hold_time, neg.keepalive);
        if let Some(i) = self.conn_index(id) {
            self.conns[i].negotiated = Some(neg);
            self.conns[i].state = ConnState::OpenConfirm;
        }
        self.send(id, MessageType::Keepalive, codec::encode_keepalive(), out);
        self.arm_hold(id, hold, out);
        if ka > 0 {
            out.push(Output::SetTimer(Timer::Keepalive(id), secs(ka)));
        }
    }

    fn arm_hold(&mut self, id: ConnId, hold: u16, out: &mut Vec<Output>) {
        if hold > 0 {
            out.push(Output::SetTimer(Timer::Hold(id), secs(hold)));
        } else {
            out.push(Output::CancelTimer(Timer::Hold(id)));
        }
    }

    /// Event 26 KeepAliveMsg in OpenConfirm: Established. Any other connection loses.
    fn established(&mut self, id: ConnId, out: &mut Vec<Output>) {
        let Some(i) = self.conn_index(id) else { return };
        self.conns[i].state = ConnState::Established;
        let Some(neg) = self.conns[i].negotiated.clone() else {
            return;
        };
        let local = self.conns[i].local;
        let others: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|c| c.id != id)
            .map(|c| c.id)
            .collect();
        for o in others {
            let cease = Notification::new(n::code::CEASE, n::cease::COLLISION);
            self.send_notification(o, &cease, out);
            self.remove_conn(o, out);
        }
        self.arm_hold(id, neg.hold_time, out);
        out.push(Output::CancelTimer(Timer::ConnectRetry));
        out.push(Output::SetTimer(Timer::Stable, STABLE_AFTER));
        let ctx = encode_ctx(&self.cfg, &neg, local.map(|l| l.ip()));
        let mut neg = neg;
        neg.without_next_hop = neg
            .families
            .iter()
            .filter(|f| ctx.next_hop(**f, &RouteAttrs::default()).is_err())
            .map(|f| (*f, no_next_hop_reason(*f, &neg)))
            .collect();
        self.rib = Some(AdjRibOut::new(
            ctx,
            neg.families.clone(),
            self.desired.clone(),
        ));
        self.stats.established += 1;
        self.last_error = None;
        // RFC 4724 §4.1: the Restart State bit belongs to the first session after the
        // restart; later OPENs of this process do not set it.
        if let Some(gr) = &mut self.our_open.caps.graceful_restart {
            gr.restarting = false;
        }
        out.push(Output::Established(Box::new(neg)));
        self.maybe_finish_stop(out);
    }

    fn established_message(&mut self, id: ConnId, msg: Message, out: &mut Vec<Output>) {
        let hold = self
            .conns
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.negotiated.as_ref())
            .map(|n| n.hold_time)
            .unwrap_or(0);
        match msg {
            // Event 26
            Message::Keepalive => self.arm_hold(id, hold, out),
            // Event 27: decoded, validated, counted, dropped.
            Message::Update(u) => {
                self.arm_hold(id, hold, out);
                self.stats.prefixes_received += u.announced.len() as u64;
                self.stats.prefixes_withdrawn_received += u.withdrawn.len() as u64;
                self.stats.treat_as_withdraw += u.treat_as_withdraw.is_some() as u64;
                self.stats.attributes_discarded += u.discarded.len() as u64;
            }
            // RFC 2918 §4: re-send the whole Adj-RIB-Out (subtype 0 = request).
            Message::RouteRefresh { family, subtype } => {
                self.arm_hold(id, hold, out);
                if subtype == 0 && family.is_some() {
                    if let Some(rib) = &mut self.rib {
                        rib.refresh();
                    }
                }
            }
            // RFC 6608: OPEN in Established.
            Message::Open(_) => self.fail(
                id,
                Notification::new(n::code::FSM, n::fsm::IN_ESTABLISHED),
                out,
            ),
            Message::Notification(_) => {}
        }
    }

    pub(super) fn tx_ready(&mut self, id: ConnId, out: &mut Vec<Output>) {
        if !self
            .conns
            .iter()
            .any(|c| c.id == id && c.state == ConnState::Established)
        {
            return;
        }
        if let Some(msg) = self.rib.as_mut().and_then(|r| r.next_message()) {
            self.stats.prefix_updates_sent += 1;
            self.send(id, MessageType::Update, msg, out);
        }
        self.maybe_finish_stop(out);
    }
}

/// Why a negotiated family has no next hop on this session (for the status).
fn no_next_hop_reason(f: Family, neg: &Negotiated) -> &'static str {
    match f {
        Family::Ipv4Unicast if !neg.ipv4_over_ipv6_next_hop => {
            "the session runs over IPv6 without an IPv4 next hop, and the peer did not offer \
             extended next hop encoding (RFC 8950, capability 5) for an IPv6 one"
        }
        Family::Ipv4Unicast => "no IPv4 or IPv6 next hop on this session",
        Family::Ipv6Unicast => "no IPv6 next hop on an IPv4 session: set an IPv6 next hop",
    }
}

/// How this session writes UPDATEs: next hops from config or the local address.
fn encode_ctx(cfg: &PeerConfig, neg: &Negotiated, local: Option<IpAddr>) -> EncodeCtx {
    let next_hop_v4 = cfg.next_hop_v4.map(IpAddr::V4).or(match local {
        Some(IpAddr::V4(a)) => Some(IpAddr::V4(a)),
        Some(IpAddr::V6(a)) if neg.ipv4_over_ipv6_next_hop => Some(IpAddr::V6(a)),
        _ => None,
    });
    let next_hop_v6 = cfg.next_hop_v6.or(match local {
        Some(IpAddr::V6(a)) => Some(a),
        _ => None,
    });
    EncodeCtx {
        ibgp: cfg.is_ibgp(),
        local_as: cfg.local_as,
        four_octet_as: neg.four_octet_as,
        max_len: neg.max_update_len,
        next_hop_v4,
        next_hop_v6,
        ipv4_over_ipv6_next_hop: neg.ipv4_over_ipv6_next_hop,
        next_hop_link_local: match local {
            Some(IpAddr::V6(a)) if a.is_unicast_link_local() => Some(a),
            _ => None,
        },
        default_local_pref: 100,
    }
}
