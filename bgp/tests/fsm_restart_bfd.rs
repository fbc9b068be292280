//! Synchronous tests of the BGP session core's inputs for BFD and graceful restart: a BFD
//! failure closes the session with Cease / BFD Down (RFC 9384) and reconnects with backoff;
//! a restart in place closes without NOTIFICATION or withdrawals (RFC 4724 §4.1); the
//! Restart State bit is set only in the first OPEN after the restart.

use std::sync::Arc;

use bgp::codec::open::Open;
use bgp::codec::{self, Message};
use bgp::fsm::{Input, Output, Session, Timer};
use bgp::{Family, GracefulRestart, RouteTable, State};

mod fsm_common;
use fsm_common::*;

/// The table every test serves.
fn table() -> Arc<RouteTable> {
    fsm_common::table(&["203.0.113.10/32"])
}

/// Connects connection `conn` and exchanges OPEN and KEEPALIVE; returns the OPEN we sent.
fn establish(s: &mut Session, conn: u64) -> Open {
    let outs = s.handle(Input::Connected {
        conn,
        local: "10.55.0.11:40000".parse().unwrap(),
    });
    let Some(Message::Open(ours)) = sent(&outs).into_iter().next() else {
        panic!("no OPEN: {outs:?}")
    };
    s.handle(Input::Frame {
        conn,
        frame: peer_open(65000, 90, [10, 55, 0, 1]),
    });
    let outs = s.handle(Input::Frame {
        conn,
        frame: codec::encode_keepalive(),
    });
    assert!(outs.iter().any(|o| matches!(o, Output::Established(_))));
    ours
}

#[test]
fn bfd_down_in_established_sends_cease_bfd_down_and_reconnects_with_backoff() {
    let mut s = Session::new(Arc::new(cfg()), ident(), table(), 7);
    s.handle(Input::Start);
    establish(&mut s, 1);
    let outs = s.handle(Input::BfdDown("Control Detection Time Expired".into()));
    let n = notification(&outs).expect("a NOTIFICATION");
    assert_eq!((n.code, n.subcode), (6, 10));
    assert!(outs.contains(&Output::Close(1)));
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::SetTimer(Timer::ConnectRetry, _))));
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.stats().flaps, 1);
    assert!(s.last_error().unwrap().contains("BFD down"));
    // The reconnect timer fires: a new connection.
    let outs = s.handle(Input::Timer(Timer::ConnectRetry));
    assert!(outs.contains(&Output::Connect(2)));
}

#[test]
fn bfd_down_while_connecting_closes_without_notification() {
    let mut s = Session::new(Arc::new(cfg()), ident(), table(), 7);
    s.handle(Input::Start);
    let outs = s.handle(Input::BfdDown("x".into()));
    assert_eq!(notification(&outs), None);
    assert!(outs.contains(&Output::Close(1)));
}

#[test]
fn abandon_closes_without_notification_or_withdrawals() {
    let mut s = Session::new(Arc::new(cfg()), ident(), table(), 7);
    s.handle(Input::Start);
    establish(&mut s, 1);
    while let Some(id) = s.wants_tx() {
        s.handle(Input::TxReady(id));
    }
    let outs = s.handle(Input::Abandon);
    assert!(sent(&outs).is_empty(), "nothing is sent: {outs:?}");
    assert!(outs.contains(&Output::Close(1)));
    assert!(outs.contains(&Output::Stopped));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.wants_tx(), None);
}

#[test]
fn restart_state_bit_only_in_the_first_open_after_a_restart() {
    let mut c = cfg();
    c.graceful_restart = Some(GracefulRestart {
        restart_time: 5,
        forwarding_preserved: true,
    });
    let restarting = bgp::Identity {
        restarting: true,
        ..ident()
    };
    let mut s = Session::new(Arc::new(c), restarting, table(), 7);
    s.handle(Input::Start);
    let first = establish(&mut s, 1);
    let gr = first.caps.graceful_restart.expect("GR capability");
    assert!(gr.restarting, "R bit in the first OPEN");
    assert_eq!(gr.restart_time, 5);
    assert_eq!(
        gr.families,
        vec![(Family::Ipv4Unicast, true), (Family::Ipv6Unicast, true)],
        "F bit for the offered families only"
    );
    s.handle(Input::Closed {
        conn: 1,
        error: "reset".into(),
    });
    s.handle(Input::Timer(Timer::ConnectRetry));
    let second = establish(&mut s, 2);
    let gr = second.caps.graceful_restart.expect("GR capability");
    assert!(
        !gr.restarting,
        "no R bit once a session came up after the restart"
    );
}
