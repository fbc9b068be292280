//! BFD Control packet codec (RFC 5880 §4.1, §6.8.6): byte vectors paired with the parsed
//! packet and checked both ways, every discard rule of §6.8.6 that needs only the packet,
//! and properties: decoding never panics, and decode ∘ encode is the identity.

use bgp::bfd::{BfdState, DecodeError, Diag, Packet};
use proptest::prelude::*;

/// FRR bfdd's first packet of a session (captured shape): Down, no diagnostic, Detect Mult
/// 3, My Discriminator 1, Your Discriminator 0, Desired Min TX 1 s (the slow rate of
/// §6.8.3), Required Min RX 300 ms, Required Min Echo RX 50 ms.
const FRR_DOWN: [u8; 24] = [
    0x20, 0x40, 0x03, 0x18, // Vers 1, Diag 0 | Sta Down | Mult 3 | Length 24
    0x00, 0x00, 0x00, 0x01, // My Discriminator
    0x00, 0x00, 0x00, 0x00, // Your Discriminator
    0x00, 0x0f, 0x42, 0x40, // Desired Min TX 1 000 000 µs
    0x00, 0x04, 0x93, 0xe0, // Required Min RX 300 000 µs
    0x00, 0x00, 0xc3, 0x50, // Required Min Echo RX 50 000 µs
];

fn frr_down() -> Packet {
    Packet {
        diag: Diag::None,
        state: BfdState::Down,
        poll: false,
        final_: false,
        cpi: false,
        auth: false,
        demand: false,
        detect_mult: 3,
        my_disc: 1,
        your_disc: 0,
        desired_min_tx: 1_000_000,
        required_min_rx: 300_000,
        required_min_echo_rx: 50_000,
    }
}

/// vipr going Up with a Poll (the Poll Sequence to the fast rate): Sta Up + P.
const UP_POLL: [u8; 24] = [
    0x20, 0xe0, 0x03, 0x18, //
    0xde, 0xad, 0xbe, 0xef, //
    0x00, 0x00, 0x00, 0x01, //
    0x00, 0x00, 0xc3, 0x50, // 50 ms
    0x00, 0x00, 0xc3, 0x50, // 50 ms
    0x00, 0x00, 0x00, 0x00,
];

fn up_poll() -> Packet {
    Packet {
        state: BfdState::Up,
        poll: true,
        my_disc: 0xdead_beef,
        your_disc: 1,
        desired_min_tx: 50_000,
        required_min_rx: 50_000,
        required_min_echo_rx: 0,
        ..frr_down()
    }
}

#[test]
fn decode_and_encode_byte_vectors() {
    assert_eq!(Packet::decode(&FRR_DOWN), Ok(frr_down()));
    assert_eq!(frr_down().encode(), FRR_DOWN);
    assert_eq!(Packet::decode(&UP_POLL), Ok(up_poll()));
    assert_eq!(up_poll().encode(), UP_POLL);
}

#[test]
fn final_admin_down_and_diagnostics() {
    // Sta AdminDown (0) with Diag 7 (Administratively Down), F set.
    let mut b = FRR_DOWN;
    b[0] = 0x20 | 7;
    b[1] = 0x10;
    let p = Packet::decode(&b).unwrap();
    assert_eq!(p.state, BfdState::AdminDown);
    assert_eq!(p.diag, Diag::AdminDown);
    assert!(p.final_ && !p.poll);
    assert_eq!(p.encode(), b);
    for c in 0..32u8 {
        assert_eq!(Diag::from_code(c).code(), c);
    }
    assert_eq!(
        Diag::from_code(1).to_string(),
        "Control Detection Time Expired"
    );
    assert_eq!(
        Diag::from_code(3).to_string(),
        "Neighbor Signaled Session Down"
    );
}

#[test]
fn trailing_octets_beyond_length_are_ignored() {
    let mut b = FRR_DOWN.to_vec();
    b.extend_from_slice(&[0xff; 8]);
    assert_eq!(Packet::decode(&b), Ok(frr_down()));
}

/// Every §6.8.6 discard rule that needs only the packet.
#[test]
fn discard_rules_of_section_6_8_6() {
    let with = |i: usize, v: u8| {
        let mut b = FRR_DOWN;
        b[i] = v;
        b
    };
    assert_eq!(
        Packet::decode(&FRR_DOWN[..23]),
        Err(DecodeError::Truncated { got: 23, need: 24 })
    );
    assert_eq!(Packet::decode(&with(0, 0x00)), Err(DecodeError::Version(0)));
    assert_eq!(Packet::decode(&with(0, 0x40)), Err(DecodeError::Version(2)));
    assert_eq!(Packet::decode(&with(3, 23)), Err(DecodeError::Length(23)));
    assert_eq!(
        Packet::decode(&with(3, 32)),
        Err(DecodeError::Truncated { got: 24, need: 32 })
    );
    assert_eq!(
        Packet::decode(&with(2, 0)),
        Err(DecodeError::ZeroDetectMult)
    );
    assert_eq!(Packet::decode(&with(1, 0x41)), Err(DecodeError::Multipoint));
    let mut b = FRR_DOWN;
    b[4..8].copy_from_slice(&[0; 4]);
    assert_eq!(Packet::decode(&b), Err(DecodeError::ZeroMyDiscriminator));
    // Your Discriminator 0 is fine in Down and AdminDown, not in Init or Up.
    assert!(Packet::decode(&with(1, 0x00)).is_ok());
    assert_eq!(
        Packet::decode(&with(1, 0x80)),
        Err(DecodeError::ZeroYourDiscriminator(BfdState::Init))
    );
    assert_eq!(
        Packet::decode(&with(1, 0xc0)),
        Err(DecodeError::ZeroYourDiscriminator(BfdState::Up))
    );
    // A bit: an authentication section must be at least 2 octets, and vipr uses none.
    assert_eq!(Packet::decode(&with(1, 0x44)), Err(DecodeError::Length(24)));
    let mut b = FRR_DOWN.to_vec();
    b[1] = 0x44;
    b[3] = 28;
    b.extend_from_slice(&[1, 4, 0, 0]);
    assert_eq!(Packet::decode(&b), Err(DecodeError::Authentication));
}

fn state() -> impl Strategy<Value = BfdState> {
    prop_oneof![
        Just(BfdState::AdminDown),
        Just(BfdState::Down),
        Just(BfdState::Init),
        Just(BfdState::Up)
    ]
}

prop_compose! {
    fn valid_packet()(
        diag in 0u8..32, state in state(), poll in any::<bool>(), final_ in any::<bool>(),
        cpi in any::<bool>(), demand in any::<bool>(), detect_mult in 1u8..,
        my_disc in 1u32.., your in 1u32.., zero_your in any::<bool>(),
        desired_min_tx in any::<u32>(), required_min_rx in any::<u32>(), echo in any::<u32>(),
    ) -> Packet {
        let your_disc = if zero_your && matches!(state, BfdState::Down | BfdState::AdminDown) { 0 } else { your };
        Packet {
            diag: Diag::from_code(diag), state, poll, final_, cpi, auth: false, demand,
            detect_mult, my_disc, your_disc, desired_min_tx, required_min_rx,
            required_min_echo_rx: echo,
        }
    }
}

proptest! {
    #[test]
    fn decoding_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Packet::decode(&b);
    }

    #[test]
    fn decoding_mutated_packets_never_panics(i in 0usize..24, v in any::<u8>()) {
        let mut b = FRR_DOWN;
        b[i] = v;
        if let Ok(p) = Packet::decode(&b) {
            prop_assert_eq!(p.encode(), b);
        }
    }

    #[test]
    fn decode_of_encode_is_identity(p in valid_packet()) {
        prop_assert_eq!(Packet::decode(&p.encode()), Ok(p));
    }
}
