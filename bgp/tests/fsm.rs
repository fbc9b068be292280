//! Synchronous tests of the sans-IO session core, named after RFC 4271 §8.1 events.
//! Every test drives `Session::handle` with inputs and asserts on outputs; no I/O.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bgp::codec::notification::{cease, code};
use bgp::codec::open::{Capabilities, Open};
use bgp::codec::{self, DecodeCtx, Message, MessageType, Notification};
use bgp::fsm::{Input, Output, Session, Timer, OPEN_HOLD_TIME};
use bgp::{Family, Identity, PeerConfig, RouteAttrs, RouteTable, State};
use bytes::Bytes;
use ipnet::IpNet;

mod fsm_common;
use fsm_common::*;

/// Drives a session to Established on connection 1 and returns it.
fn established(c: PeerConfig, routes: Arc<RouteTable>) -> Session {
    let mut s = Session::new(Arc::new(c), ident(), routes, 7);
    s.handle(Input::Start);
    s.handle(Input::Connected {
        conn: 1,
        local: LOCAL.parse().unwrap(),
    });
    s.handle(frame(1, peer_open(65000, 90, [10, 55, 0, 1])));
    let outs = s.handle(frame(1, codec::encode_keepalive()));
    assert!(outs.iter().any(|o| matches!(o, Output::Established(_))));
    assert_eq!(s.state(), State::Established);
    s
}

/// Pulls every queued UPDATE out of the core.
fn drain_updates(s: &mut Session) -> Vec<Message> {
    let mut all = Vec::new();
    while let Some(id) = s.wants_tx() {
        all.extend(sent(&s.handle(Input::TxReady(id))));
    }
    all
}

#[test]
fn event1_manual_start_opens_a_connection() {
    let mut s = Session::new(Arc::new(cfg()), ident(), table(&[]), 1);
    assert_eq!(s.state(), State::Idle);
    let outs = s.handle(Input::Start);
    assert!(outs.contains(&Output::Connect(1)));
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn event4_passive_start_waits_in_active() {
    let mut c = cfg();
    c.passive = true;
    let mut s = Session::new(Arc::new(c), ident(), table(&[]), 1);
    let outs = s.handle(Input::Start);
    assert!(!outs.iter().any(|o| matches!(o, Output::Connect(_))));
    assert_eq!(s.state(), State::Active);
}

#[test]
fn event17_tcp_confirmed_sends_open_with_large_hold_timer() {
    let mut s = Session::new(Arc::new(cfg()), ident(), table(&[]), 1);
    s.handle(Input::Start);
    let outs = s.handle(Input::Connected {
        conn: 1,
        local: LOCAL.parse().unwrap(),
    });
    let msgs = sent(&outs);
    let Message::Open(open) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!((open.asn, open.hold_time), (65001, 9));
    assert_eq!(open.caps.families, Family::ALL.to_vec());
    assert!(open.caps.route_refresh && open.caps.extended_message);
    assert_eq!(open.caps.four_octet_as, Some(65001));
    assert!(outs.contains(&Output::SetTimer(Timer::Hold(1), OPEN_HOLD_TIME)));
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn event18_connect_failure_backs_off_then_event9_retries() {
    let mut s = Session::new(Arc::new(cfg()), ident(), table(&[]), 1);
    s.handle(Input::Start);
    let outs = s.handle(Input::ConnectFailed {
        conn: 1,
        error: "refused".into(),
    });
    let delay = outs
        .iter()
        .find_map(|o| match o {
            Output::SetTimer(Timer::ConnectRetry, d) => Some(*d),
            _ => None,
        })
        .expect("retry armed");
    assert!(delay <= Duration::from_secs(1) && delay >= Duration::from_millis(750));
    assert_eq!(s.state(), State::Active);
    assert!(s.last_error().unwrap().contains("refused"));
    let outs = s.handle(Input::Timer(Timer::ConnectRetry));
    assert!(outs.contains(&Output::Connect(2)));
    // The second failure waits about twice as long.
    let outs = s.handle(Input::ConnectFailed {
        conn: 2,
        error: "refused".into(),
    });
    let d2 = outs
        .iter()
        .find_map(|o| match o {
            Output::SetTimer(Timer::ConnectRetry, d) => Some(*d),
            _ => None,
        })
        .unwrap();
    assert!(
        d2 >= Duration::from_millis(1500) && d2 <= Duration::from_secs(2),
        "{d2:?}"
    );
}

#[test]
fn event19_open_from_the_wrong_as_gets_bad_peer_as() {
    let mut s = Session::new(Arc::new(cfg()), ident(), table(&[]), 1);
    s.handle(Input::Start);
    s.handle(Input::Connected {
        conn: 1,
        local: LOCAL.parse().unwrap(),
    });
    let outs = s.handle(frame(1, peer_open(65099, 90, [10, 55, 0, 1])));
    assert_eq!(notification(&outs), Some(Notification::new(2, 2)));
    assert!(outs.contains(&Output::Close(1)));
    assert_eq!(s.state(), State::Active);
}

/// `remote-as external` (FRR): any AS but ours is accepted; ours gets Bad Peer AS.
#[test]
fn event19_external_accepts_any_as_but_ours() {
    let external = PeerConfig {
        remote_as: 0,
        remote_as_external: true,
        ..cfg()
    };
    let open = |asn: u32| {
        let mut s = Session::new(Arc::new(external.clone()), ident(), table(&[]), 1);
        s.handle(Input::Start);
        s.handle(Input::Connected {
            conn: 1,
            local: LOCAL.parse().unwrap(),
        });
        (
            s.handle(frame(1, peer_open(asn, 90, [10, 55, 0, 1]))),
            s.state(),
        )
    };
    let (outs, _) = open(65099);
    assert_eq!(sent(&outs), vec![Message::Keepalive]);
    let (outs, state) = open(external.local_as);
    assert_eq!(notification(&outs), Some(Notification::new(2, 2)));
    assert_eq!(state, State::Active);
}

#[test]
fn event19_open_negotiates_hold_time_and_answers_keepalive() {
    let mut s = Session::new(Arc::new(cfg()), ident(), table(&[]), 1);
    s.handle(Input::Start);
    s.handle(Input::Connected {
        conn: 1,
        local: LOCAL.parse().unwrap(),
    });
    let outs = s.handle(frame(1, peer_open(65000, 3, [10, 55, 0, 1])));
    assert_eq!(sent(&outs), vec![Message::Keepalive]);
    assert!(outs.contains(&Output::SetTimer(Timer::Hold(1), Duration::from_secs(3))));
    assert!(outs.contains(&Output::SetTimer(
        Timer::Keepalive(1),
        Duration::from_secs(1)
    )));
    assert_eq!(s.state(), State::OpenConfirm);
}

#[test]
fn unacceptable_hold_time_and_bad_version_get_open_errors() {
    for (bytes, expect) in [
        (
            {
                let mut b = peer_open(65000, 90, [10, 55, 0, 1]).to_vec();
                b[22] = 0; // hold time high byte
                b[23] = 2; // 2 seconds
                b
            },
            (2, 6),
        ),
        (
            {
                let mut b = peer_open(65000, 90, [10, 55, 0, 1]).to_vec();
                b[19] = 3;
                b
            },
            (2, 1),
        ),
    ] {
        let mut s = Session::new(Arc::new(cfg()), ident(), table(&[]), 1);
        s.handle(Input::Start);
        s.handle(Input::Connected {
            conn: 1,
            local: LOCAL.parse().unwrap(),
        });
        let n = notification(&s.handle(frame(1, Bytes::from(bytes)))).unwrap();
        assert_eq!((n.code, n.subcode), expect);
    }
}

#[test]
fn event26_keepalive_in_openconfirm_establishes_and_sends_table_then_end_of_rib() {
    let mut s = established(cfg(), table(&["203.0.113.10/32", "203.0.113.11/32"]));
    let msgs = drain_updates(&mut s);
    let Message::Update(u) = &msgs[0] else {
        panic!()
    };
    assert_eq!(u.announced.len(), 2);
    assert_eq!(u.attrs.next_hop, Some(Ipv4Addr::new(10, 55, 0, 11)));
    assert_eq!(u.attrs.as_path.as_ref().unwrap()[0].asns, vec![65001]);
    assert_eq!(u.attrs.as_path.as_ref().unwrap()[0].kind, 2, "AS_SEQUENCE");
    let eors: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Update(u) => u.end_of_rib,
            _ => None,
        })
        .collect();
    assert_eq!(eors, vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
    assert_eq!(s.stats().prefixes_advertised, 2);
}

#[test]
fn event10_hold_timer_expiry_sends_notification_4_and_reconnects() {
    let mut s = established(cfg(), table(&[]));
    let outs = s.handle(Input::Timer(Timer::Hold(1)));
    assert_eq!(notification(&outs), Some(Notification::new(4, 0)));
    assert!(outs.contains(&Output::Close(1)));
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::SetTimer(Timer::ConnectRetry, _))));
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.stats().flaps, 1);
}

#[test]
fn event11_keepalive_timer_sends_keepalive_and_rearms() {
    let mut s = established(cfg(), table(&[]));
    let outs = s.handle(Input::Timer(Timer::Keepalive(1)));
    assert_eq!(sent(&outs), vec![Message::Keepalive]);
    assert!(outs.contains(&Output::SetTimer(
        Timer::Keepalive(1),
        Duration::from_secs(3)
    )));
}

#[test]
fn hold_time_zero_disables_hold_and_keepalive_timers() {
    let mut c = cfg();
    c.hold_time = 0;
    let mut s = Session::new(Arc::new(c), ident(), table(&[]), 1);
    s.handle(Input::Start);
    s.handle(Input::Connected {
        conn: 1,
        local: LOCAL.parse().unwrap(),
    });
    let outs = s.handle(frame(1, peer_open(65000, 90, [10, 55, 0, 1])));
    assert!(outs.contains(&Output::CancelTimer(Timer::Hold(1))));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::SetTimer(Timer::Keepalive(_), _))));
}

#[test]
fn event25_notification_received_closes_without_reply() {
    let mut s = established(cfg(), table(&[]));
    let n = Notification::cease_with_message(cease::ADMIN_SHUTDOWN, "maintenance");
    let outs = s.handle(frame(1, codec::encode_notification(&n)));
    assert!(sent(&outs).is_empty());
    assert!(outs.contains(&Output::Close(1)));
    assert!(s.last_error().unwrap().contains("maintenance"));
    assert_eq!(s.stats().notifications_received.get(&(6, 2)), Some(&1));
}

#[test]
fn event27_update_is_counted_and_dropped() {
    let mut s = established(cfg(), table(&[]));
    let mut t = RouteTable::new();
    t.announce(["198.51.100.0/24".parse().unwrap()], RouteAttrs::default());
    // Build an UPDATE as a peer would: reuse our encoder with the peer's view.
    let ctx = codec::EncodeCtx {
        ibgp: false,
        local_as: 65000,
        four_octet_as: true,
        max_len: 4096,
        next_hop_v4: Some("10.55.0.1".parse().unwrap()),
        next_hop_v6: None,
        ipv4_over_ipv6_next_hop: false,
        next_hop_link_local: None,
        default_local_pref: 100,
    };
    let (msgs, _) = ctx
        .announce(
            Family::Ipv4Unicast,
            &RouteAttrs::default(),
            &["198.51.100.0/24".parse().unwrap()],
        )
        .unwrap();
    let outs = s.handle(frame(1, msgs[0].clone()));
    assert!(outs.contains(&Output::SetTimer(Timer::Hold(1), Duration::from_secs(9))));
    assert_eq!(s.stats().prefixes_received, 1);
    assert_eq!(s.stats().received(MessageType::Update), 1);
    assert_eq!(s.state(), State::Established);
}

#[test]
fn event28_malformed_update_gets_invalid_network_field() {
    let mut s = established(cfg(), table(&[]));
    // UPDATE with an NLRI of length 33.
    let mut b = vec![0xff; 16];
    let body = [0u8, 0, 0, 0, 33, 1, 2, 3, 4, 5];
    b.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&body);
    let outs = s.handle(frame(1, Bytes::from(b)));
    assert_eq!(notification(&outs), Some(Notification::new(3, 10)));
    assert!(outs.contains(&Output::Close(1)));
}

#[test]
fn event21_header_errors() {
    let ka = codec::encode_keepalive().to_vec();
    let mut bad_marker = ka.clone();
    bad_marker[3] = 0;
    let mut bad_len = ka.clone();
    bad_len[17] = 20;
    let mut bad_type = ka.clone();
    bad_type[18] = 9;
    for (b, expect) in [(bad_marker, (1, 1)), (bad_len, (1, 2)), (bad_type, (1, 3))] {
        let mut s = established(cfg(), table(&[]));
        let n = notification(&s.handle(frame(1, Bytes::from(b)))).unwrap();
        assert_eq!((n.code, n.subcode), expect);
    }
}

#[test]
fn rfc6608_unexpected_message_in_opensent() {
    let mut s = Session::new(Arc::new(cfg()), ident(), table(&[]), 1);
    s.handle(Input::Start);
    s.handle(Input::Connected {
        conn: 1,
        local: LOCAL.parse().unwrap(),
    });
    let outs = s.handle(frame(1, codec::encode_keepalive()));
    assert_eq!(notification(&outs), Some(Notification::new(5, 1)));
}

#[test]
fn event2_manual_stop_withdraws_then_ceases_with_message() {
    let mut s = established(cfg(), table(&["203.0.113.10/32"]));
    drain_updates(&mut s);
    let outs = s.handle(Input::Stop(Notification::cease_with_message(
        cease::ADMIN_SHUTDOWN,
        "bye",
    )));
    assert!(
        sent(&outs).is_empty(),
        "withdrawals come through TxReady first"
    );
    let mut msgs = Vec::new();
    let mut all_outs = Vec::new();
    while let Some(id) = s.wants_tx() {
        let o = s.handle(Input::TxReady(id));
        msgs.extend(sent(&o));
        all_outs.extend(o);
    }
    let o = s.handle(Input::TxReady(1));
    msgs.extend(sent(&o));
    all_outs.extend(o);
    let Message::Update(w) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(
        w.withdrawn,
        vec!["203.0.113.10/32".parse::<IpNet>().unwrap()]
    );
    let Message::Notification(n) = msgs.last().unwrap() else {
        panic!("{msgs:?}")
    };
    assert_eq!(n.shutdown_message().as_deref(), Some("bye"));
    assert!(all_outs.contains(&Output::Stopped));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn route_refresh_resends_everything() {
    let mut s = established(cfg(), table(&["203.0.113.10/32"]));
    drain_updates(&mut s);
    s.handle(frame(1, codec::encode_route_refresh(Family::Ipv4Unicast)));
    let msgs = drain_updates(&mut s);
    let announced: usize = msgs
        .iter()
        .map(|m| match m {
            Message::Update(u) => u.announced.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(announced, 1);
}

#[test]
fn routes_change_while_established_are_sent_as_diffs() {
    let mut s = established(cfg(), table(&["203.0.113.10/32"]));
    drain_updates(&mut s);
    s.handle(Input::Routes(table(&["203.0.113.11/32"])));
    let msgs = drain_updates(&mut s);
    let (mut a, mut w) = (vec![], vec![]);
    for m in msgs {
        if let Message::Update(u) = m {
            a.extend(u.announced);
            w.extend(u.withdrawn);
        }
    }
    assert_eq!(a, vec!["203.0.113.11/32".parse::<IpNet>().unwrap()]);
    assert_eq!(w, vec!["203.0.113.10/32".parse::<IpNet>().unwrap()]);
}

fn collide(local_id: [u8; 4], remote_id: [u8; 4]) -> (Vec<Output>, Session) {
    let c = cfg();
    let mut s = Session::new(
        Arc::new(c),
        Identity::new(Ipv4Addr::from(local_id)),
        table(&[]),
        1,
    );
    s.handle(Input::Start); // outgoing conn 1
    s.handle(Input::Connected {
        conn: 1,
        local: LOCAL.parse().unwrap(),
    });
    let incoming = s.allocate_conn(); // conn 2
    s.handle(Input::Accepted {
        conn: incoming,
        local: "10.55.0.11:179".parse::<SocketAddr>().unwrap(),
    });
    s.handle(frame(1, peer_open(65000, 90, remote_id)));
    let outs = s.handle(frame(incoming, peer_open(65000, 90, remote_id)));
    (outs, s)
}

#[test]
fn collision_higher_local_id_keeps_the_outgoing_connection() {
    let (outs, _) = collide([10, 55, 0, 200], [10, 55, 0, 1]);
    assert!(outs.contains(&Output::Close(2)), "{outs:?}");
    assert_eq!(
        notification(&outs),
        Some(Notification::new(code::CEASE, cease::COLLISION))
    );
    assert!(!outs.contains(&Output::Close(1)));
}

#[test]
fn collision_lower_local_id_keeps_the_incoming_connection() {
    let (outs, mut s) = collide([10, 55, 0, 11], [10, 55, 0, 200]);
    assert!(outs.contains(&Output::Close(1)), "{outs:?}");
    assert!(!outs.contains(&Output::Close(2)));
    let outs = s.handle(frame(2, codec::encode_keepalive()));
    assert!(outs.iter().any(|o| matches!(o, Output::Established(_))));
}

#[test]
fn collision_with_established_rejects_the_new_connection() {
    let mut s = established(cfg(), table(&[]));
    let id = s.allocate_conn();
    let outs = s.handle(Input::Accepted {
        conn: id,
        local: "10.55.0.11:179".parse().unwrap(),
    });
    assert_eq!(
        notification(&outs),
        Some(Notification::new(code::CEASE, cease::COLLISION))
    );
    assert!(outs.contains(&Output::Close(id)));
    assert_eq!(s.state(), State::Established);
}

#[test]
fn four_octet_as_to_a_two_octet_peer_uses_as_trans_and_as4_path() {
    let mut c = cfg();
    c.local_as = 4_200_000_001;
    let mut s = Session::new(Arc::new(c), ident(), table(&["203.0.113.10/32"]), 1);
    s.handle(Input::Start);
    let outs = s.handle(Input::Connected {
        conn: 1,
        local: LOCAL.parse().unwrap(),
    });
    let Message::Open(o) = &sent(&outs)[0] else {
        panic!()
    };
    assert_eq!(o.my_as_field, 23456, "AS_TRANS");
    assert_eq!(o.caps.four_octet_as, Some(4_200_000_001));
    // A peer without the 4-octet capability.
    let caps = Capabilities {
        families: vec![Family::Ipv4Unicast],
        multiprotocol: true,
        ..Default::default()
    };
    s.handle(frame(
        1,
        codec::encode_open(&Open::new(65000, 90, Ipv4Addr::new(10, 55, 0, 1), caps)),
    ));
    s.handle(frame(1, codec::encode_keepalive()));
    let id = s.wants_tx().unwrap();
    let outs = s.handle(Input::TxReady(id));
    let Output::Send(_, b) = &outs[0] else {
        panic!()
    };
    let u = bgp::codec::update_in::parse_update(
        &b[19..],
        &DecodeCtx {
            four_octet_as: false,
            ibgp: false,
        },
    )
    .unwrap();
    assert_eq!(u.attrs.as_path.unwrap()[0].asns, vec![23456]);
    assert_eq!(u.attrs.as4_path.unwrap()[0].asns, vec![4_200_000_001]);
}

#[test]
fn graceful_restart_capability_lists_only_configured_families() {
    let mut c = cfg();
    c.families = vec![Family::Ipv4Unicast];
    c.graceful_restart = Some(bgp::GracefulRestart {
        restart_time: 120,
        forwarding_preserved: true,
    });
    let s = Session::new(Arc::new(c), ident(), table(&[]), 1);
    let gr = s.our_open().caps.graceful_restart.clone().unwrap();
    assert_eq!(gr.families, vec![(Family::Ipv4Unicast, true)]);
    assert_eq!(s.our_open().caps.families, vec![Family::Ipv4Unicast]);
}
