//! Synchronous tests of the sans-IO BFD session core, named after RFC 5880 states and the
//! events of §6.2 (the received state, or the detection timer) and the rules of §6.8. Every
//! test drives `BfdSession::handle` and asserts on outputs; no I/O, no clock.

use std::time::Duration;

use bgp::bfd::fsm::SLOW_TX;
use bgp::bfd::{BfdSession, BfdState, BfdTimer, Diag, Input, Output, Packet};
use bgp::BfdConfig;

const OURS: u32 = 0x1111;
const THEIRS: u32 = 0x2222;
const MS: Duration = Duration::from_millis(1);

fn cfg(tx_ms: u64, rx_ms: u64, mult: u8) -> BfdConfig {
    BfdConfig {
        min_tx: MS * tx_ms as u32,
        min_rx: MS * rx_ms as u32,
        multiplier: mult,
        ..BfdConfig::default()
    }
}

/// A packet from the peer in `state`, with its intervals in ms.
fn peer(state: BfdState, tx_ms: u32, rx_ms: u32, mult: u8) -> Packet {
    Packet {
        diag: Diag::None,
        state,
        poll: false,
        final_: false,
        cpi: false,
        auth: false,
        demand: false,
        detect_mult: mult,
        my_disc: THEIRS,
        your_disc: if state == BfdState::Down || state == BfdState::AdminDown {
            0
        } else {
            OURS
        },
        desired_min_tx: tx_ms * 1000,
        required_min_rx: rx_ms * 1000,
        required_min_echo_rx: 0,
    }
}

fn sent(outs: &[Output]) -> Vec<Packet> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn timer(outs: &[Output], t: BfdTimer) -> Option<Duration> {
    outs.iter().rev().find_map(|o| match o {
        Output::SetTimer(x, d) if *x == t => Some(*d),
        _ => None,
    })
}

fn changed(outs: &[Output]) -> Option<(BfdState, BfdState, Diag)> {
    outs.iter().find_map(|o| match o {
        Output::StateChanged { from, to, diag } => Some((*from, *to, *diag)),
        _ => None,
    })
}

/// A session brought Up by the three-way handshake with a peer at `peer_ms` / `peer_ms`.
fn up(c: BfdConfig, peer_ms: u32) -> BfdSession {
    let mut s = BfdSession::new(OURS, c, 42);
    s.handle(Input::Start);
    s.handle(Input::Packet(peer(BfdState::Down, 1000, peer_ms, 3)));
    assert_eq!(s.state(), BfdState::Init);
    s.handle(Input::Packet(peer(BfdState::Up, peer_ms, peer_ms, 3)));
    assert_eq!(s.state(), BfdState::Up);
    s
}

#[test]
fn start_admin_down_to_down_sends_at_the_slow_rate() {
    let mut s = BfdSession::new(OURS, cfg(50, 50, 3), 1);
    assert_eq!(s.state(), BfdState::AdminDown);
    let outs = s.handle(Input::Start);
    assert_eq!(
        changed(&outs),
        Some((BfdState::AdminDown, BfdState::Down, Diag::None))
    );
    let p = sent(&outs)[0];
    assert_eq!((p.state, p.my_disc, p.your_disc), (BfdState::Down, OURS, 0));
    // §6.8.3: not Up → Desired Min TX at least 1 s; Required Min RX as configured.
    assert_eq!(p.desired_min_tx, 1_000_000);
    assert_eq!(p.required_min_rx, 50_000);
    assert_eq!(
        (p.detect_mult, p.cpi, p.demand, p.auth),
        (3, false, false, false)
    );
    let t = timer(&outs, BfdTimer::Tx).unwrap();
    assert!(t >= SLOW_TX.mul_f64(0.75) && t <= SLOW_TX, "{t:?}");
}

#[test]
fn down_receives_down_goes_init_then_up_receives_up() {
    let mut s = BfdSession::new(OURS, cfg(300, 300, 3), 1);
    s.handle(Input::Start);
    let outs = s.handle(Input::Packet(peer(BfdState::Down, 1000, 300, 3)));
    assert_eq!(
        changed(&outs),
        Some((BfdState::Down, BfdState::Init, Diag::None))
    );
    // The new state goes out at once, now naming the peer.
    let p = sent(&outs)[0];
    assert_eq!((p.state, p.your_disc), (BfdState::Init, THEIRS));
    let outs = s.handle(Input::Packet(peer(BfdState::Up, 1000, 300, 3)));
    assert_eq!(
        changed(&outs),
        Some((BfdState::Init, BfdState::Up, Diag::None))
    );
}

#[test]
fn down_receives_init_goes_up_directly() {
    let mut s = BfdSession::new(OURS, cfg(300, 300, 3), 1);
    s.handle(Input::Start);
    let outs = s.handle(Input::Packet(peer(BfdState::Init, 1000, 300, 3)));
    assert_eq!(
        changed(&outs),
        Some((BfdState::Down, BfdState::Up, Diag::None))
    );
}

#[test]
fn down_receives_up_stays_down() {
    let mut s = BfdSession::new(OURS, cfg(300, 300, 3), 1);
    s.handle(Input::Start);
    let outs = s.handle(Input::Packet(peer(BfdState::Up, 300, 300, 3)));
    assert_eq!(changed(&outs), None);
    assert_eq!(s.state(), BfdState::Down);
}

#[test]
fn up_starts_a_poll_sequence_to_the_configured_rate_ended_by_final() {
    let mut s = BfdSession::new(OURS, cfg(50, 50, 3), 1);
    s.handle(Input::Start);
    s.handle(Input::Packet(peer(BfdState::Down, 1000, 50, 3)));
    let outs = s.handle(Input::Packet(peer(BfdState::Up, 1000, 50, 3)));
    assert!(s.polling());
    let p = sent(&outs)[0];
    assert!(p.poll && !p.final_, "{p:?}");
    assert_eq!(p.desired_min_tx, 50_000);
    // A faster rate applies at once (§6.8.3): max(50 ms, the peer's 50 ms).
    assert_eq!(s.tx_interval(), Some(MS * 50));
    let t = timer(&outs, BfdTimer::Tx).unwrap();
    assert!(t >= MS * 37 && t <= MS * 50, "{t:?}");
    // Periodic packets keep P until the Final.
    let outs = s.handle(Input::Timer(BfdTimer::Tx));
    assert!(sent(&outs)[0].poll);
    let mut fin = peer(BfdState::Up, 50, 50, 3);
    fin.final_ = true;
    s.handle(Input::Packet(fin));
    assert!(!s.polling());
    let outs = s.handle(Input::Timer(BfdTimer::Tx));
    assert!(!sent(&outs)[0].poll);
}

#[test]
fn received_poll_is_answered_at_once_with_final_and_no_poll() {
    let mut s = up(cfg(300, 300, 3), 300);
    let mut p = peer(BfdState::Up, 100, 100, 3);
    p.poll = true;
    let outs = s.handle(Input::Packet(p));
    let answers = sent(&outs);
    assert_eq!(answers.len(), 1, "{outs:?}");
    assert!(answers[0].final_ && !answers[0].poll, "{:?}", answers[0]);
}

#[test]
fn detection_time_is_remote_mult_times_the_slower_of_our_rx_and_their_tx() {
    let mut s = up(cfg(300, 300, 3), 300);
    let outs = s.handle(Input::Packet(peer(BfdState::Up, 100, 100, 5)));
    // 5 × max(300 ms, 100 ms)
    assert_eq!(timer(&outs, BfdTimer::Detect), Some(MS * 1500));
    let outs = s.handle(Input::Packet(peer(BfdState::Up, 400, 100, 2)));
    assert_eq!(timer(&outs, BfdTimer::Detect), Some(MS * 800));
}

#[test]
fn up_detection_timer_expiry_goes_down_with_diag_1_and_counts_a_failure() {
    let mut s = up(cfg(300, 300, 3), 300);
    let outs = s.handle(Input::Timer(BfdTimer::Detect));
    assert_eq!(
        changed(&outs),
        Some((BfdState::Up, BfdState::Down, Diag::DetectionTimeExpired))
    );
    let p = sent(&outs)[0];
    // §6.8.1: bfd.RemoteDiscr back to 0; the slow rate again.
    assert_eq!(
        (p.state, p.diag, p.your_disc),
        (BfdState::Down, Diag::DetectionTimeExpired, 0)
    );
    assert_eq!(p.desired_min_tx, 1_000_000);
    let st = s.status(std::time::SystemTime::now());
    assert_eq!((st.flaps, st.failures), (1, 1));
    assert_eq!(st.detect_time, None);
}

#[test]
fn init_detection_timer_expiry_goes_down_without_a_failure() {
    let mut s = BfdSession::new(OURS, cfg(300, 300, 3), 1);
    s.handle(Input::Start);
    s.handle(Input::Packet(peer(BfdState::Down, 1000, 300, 3)));
    let outs = s.handle(Input::Timer(BfdTimer::Detect));
    assert_eq!(
        changed(&outs),
        Some((BfdState::Init, BfdState::Down, Diag::DetectionTimeExpired))
    );
    assert_eq!(s.status(std::time::SystemTime::now()).failures, 0);
}

#[test]
fn down_detection_timer_expiry_only_forgets_the_peer() {
    let mut s = BfdSession::new(OURS, cfg(300, 300, 3), 1);
    s.handle(Input::Start);
    s.handle(Input::Packet(peer(BfdState::AdminDown, 1000, 300, 3)));
    let outs = s.handle(Input::Timer(BfdTimer::Detect));
    assert_eq!(changed(&outs), None);
    assert_eq!(
        s.status(std::time::SystemTime::now()).remote_discriminator,
        0
    );
}

#[test]
fn up_receives_down_goes_down_with_diag_3_neighbor_signaled() {
    let mut s = up(cfg(300, 300, 3), 300);
    let mut p = peer(BfdState::Down, 1000, 300, 3);
    p.diag = Diag::DetectionTimeExpired;
    let outs = s.handle(Input::Packet(p));
    assert_eq!(
        changed(&outs),
        Some((BfdState::Up, BfdState::Down, Diag::NeighborDown))
    );
    let st = s.status(std::time::SystemTime::now());
    assert_eq!(
        (st.failures, st.remote_diag),
        (1, Diag::DetectionTimeExpired)
    );
}

/// RFC 5882 §3.2: the peer's AdminDown brings the session down but is no failure.
#[test]
fn up_receives_admin_down_goes_down_but_is_not_a_failure() {
    let mut s = up(cfg(300, 300, 3), 300);
    let mut p = peer(BfdState::AdminDown, 1000, 300, 3);
    p.diag = Diag::AdminDown;
    let outs = s.handle(Input::Packet(p));
    assert_eq!(
        changed(&outs),
        Some((BfdState::Up, BfdState::Down, Diag::NeighborDown))
    );
    let st = s.status(std::time::SystemTime::now());
    assert_eq!((st.flaps, st.failures), (1, 0));
}

#[test]
fn admin_down_input_sends_diag_7_and_discards_packets() {
    let mut s = up(cfg(300, 300, 3), 300);
    let outs = s.handle(Input::AdminDown);
    assert_eq!(
        changed(&outs),
        Some((BfdState::Up, BfdState::AdminDown, Diag::AdminDown))
    );
    let p = sent(&outs)[0];
    assert_eq!((p.state, p.diag), (BfdState::AdminDown, Diag::AdminDown));
    assert!(outs.contains(&Output::CancelTimer(BfdTimer::Detect)));
    let outs = s.handle(Input::Packet(peer(BfdState::Up, 300, 300, 3)));
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!(s.status(std::time::SystemTime::now()).failures, 0);
}

#[test]
fn packet_for_another_discriminator_is_discarded() {
    let mut s = up(cfg(300, 300, 3), 300);
    let mut p = peer(BfdState::Down, 1000, 300, 3);
    p.your_disc = 0x9999;
    assert!(s.handle(Input::Packet(p)).is_empty());
    assert_eq!(s.state(), BfdState::Up);
}

#[test]
fn tx_interval_is_the_slower_of_ours_and_the_peers_required_rx() {
    let mut s = up(cfg(50, 50, 3), 50);
    let outs = s.handle(Input::Packet(peer(BfdState::Up, 50, 200, 3)));
    assert_eq!(s.tx_interval(), Some(MS * 200));
    // The change reschedules the transmission timer.
    let t = timer(&outs, BfdTimer::Tx).unwrap();
    assert!(t >= MS * 150 && t <= MS * 200, "{t:?}");
}

#[test]
fn peer_required_min_rx_zero_stops_periodic_transmission() {
    let mut s = up(cfg(300, 300, 3), 300);
    let outs = s.handle(Input::Packet(peer(BfdState::Up, 300, 0, 3)));
    assert_eq!(s.tx_interval(), None);
    assert!(outs.contains(&Output::CancelTimer(BfdTimer::Tx)));
}

#[test]
fn peer_demand_mode_while_both_up_stops_periodic_transmission() {
    let mut s = up(cfg(300, 300, 3), 300);
    let mut p = peer(BfdState::Up, 300, 300, 3);
    p.demand = true;
    s.handle(Input::Packet(p));
    assert_eq!(s.tx_interval(), None);
}

#[test]
fn jitter_is_75_to_100_percent_and_75_to_90_with_multiplier_1() {
    for (mult, hi) in [(3u8, 1.0), (1, 0.9)] {
        let mut s = up(cfg(100, 100, mult), 100);
        let mut seen = Vec::new();
        for _ in 0..500 {
            let outs = s.handle(Input::Timer(BfdTimer::Tx));
            seen.push(timer(&outs, BfdTimer::Tx).unwrap().as_secs_f64() * 1000.0);
        }
        let (min, max) = seen
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), x| (a.min(*x), b.max(*x)));
        assert!(
            min >= 75.0 && max <= hi * 100.0 + 1e-9,
            "mult {mult}: {min}..{max}"
        );
        assert!(max - min > 10.0, "no jitter: {min}..{max}");
    }
}

/// §6.8.3: a slower transmit rate waits for the Final of the Poll Sequence.
#[test]
fn reconfigure_up_to_a_slower_rate_keeps_the_old_rate_until_final() {
    let mut s = up(cfg(50, 50, 3), 50);
    let mut fin = peer(BfdState::Up, 50, 50, 3);
    fin.final_ = true;
    s.handle(Input::Packet(fin));
    assert_eq!(s.tx_interval(), Some(MS * 50));
    let outs = s.handle(Input::Reconfigure(cfg(300, 50, 3)));
    let p = sent(&outs)[0];
    assert!(p.poll);
    assert_eq!(p.desired_min_tx, 300_000);
    assert_eq!(s.tx_interval(), Some(MS * 50), "old rate until the Final");
    s.handle(Input::Packet(fin));
    assert_eq!(s.tx_interval(), Some(MS * 300));
}

/// §6.8.3: a shorter Detection Time (smaller Required Min RX) waits for the Final.
#[test]
fn reconfigure_up_to_a_faster_rx_keeps_the_old_detection_time_until_final() {
    let mut s = up(cfg(300, 300, 3), 50);
    let mut fin = peer(BfdState::Up, 50, 50, 3);
    fin.final_ = true;
    s.handle(Input::Packet(fin));
    assert_eq!(s.detect_time(), Some(MS * 900));
    s.handle(Input::Reconfigure(cfg(300, 50, 3)));
    assert_eq!(
        s.detect_time(),
        Some(MS * 900),
        "old detection time until the Final"
    );
    s.handle(Input::Packet(fin));
    assert_eq!(s.detect_time(), Some(MS * 150));
}

#[test]
fn going_down_returns_to_the_slow_rate_at_once() {
    let mut s = up(cfg(50, 50, 3), 50);
    s.handle(Input::Timer(BfdTimer::Detect));
    let outs = s.handle(Input::Packet(peer(BfdState::Down, 1000, 50, 3)));
    // Down → Init again: packets at 1 s.
    assert_eq!(sent(&outs)[0].desired_min_tx, 1_000_000);
    assert_eq!(s.tx_interval(), Some(SLOW_TX));
    assert!(!sent(&outs)[0].poll);
}
