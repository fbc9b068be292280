//! BFD Control packets (RFC 5880 §4.1): encoding, and decoding with the reception checks of
//! §6.8.6 that need nothing but the packet itself. Pure functions over bytes: no sockets, no
//! state, and decoding never panics on any input (property-tested).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::fmt;

/// RFC 5880 §4.1: the protocol version this module speaks.
pub const VERSION: u8 = 1;
/// Length of a Control packet without an authentication section.
pub const LEN: usize = 24;

/// RFC 5880 §4.1 session states (the `Sta` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BfdState {
    /// 0: administratively down; never a failure (RFC 5882 §3.2).
    AdminDown,
    /// 1: down.
    Down,
    /// 2: init (three-way handshake in progress).
    Init,
    /// 3: up.
    Up,
}

impl BfdState {
    /// Every state, for metric label sets.
    pub const ALL: [BfdState; 4] = [
        BfdState::AdminDown,
        BfdState::Down,
        BfdState::Init,
        BfdState::Up,
    ];

    /// The 2-bit wire value.
    pub fn code(self) -> u8 {
        match self {
            BfdState::AdminDown => 0,
            BfdState::Down => 1,
            BfdState::Init => 2,
            BfdState::Up => 3,
        }
    }

    /// From the 2-bit wire value (the upper bits are ignored).
    pub fn from_code(c: u8) -> BfdState {
        match c & 3 {
            0 => BfdState::AdminDown,
            1 => BfdState::Down,
            2 => BfdState::Init,
            _ => BfdState::Up,
        }
    }

    /// The name as FRR and BIRD print it.
    pub fn name(self) -> &'static str {
        match self {
            BfdState::AdminDown => "AdminDown",
            BfdState::Down => "Down",
            BfdState::Init => "Init",
            BfdState::Up => "Up",
        }
    }
}

impl fmt::Display for BfdState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// RFC 5880 §4.1 diagnostic codes: why the sender's session last changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    /// 0: No Diagnostic.
    None,
    /// 1: Control Detection Time Expired.
    DetectionTimeExpired,
    /// 2: Echo Function Failed.
    EchoFailed,
    /// 3: Neighbor Signaled Session Down.
    NeighborDown,
    /// 4: Forwarding Plane Reset.
    ForwardingReset,
    /// 5: Path Down.
    PathDown,
    /// 6: Concatenated Path Down.
    ConcatenatedPathDown,
    /// 7: Administratively Down.
    AdminDown,
    /// 8: Reverse Concatenated Path Down.
    ReverseConcatenatedPathDown,
    /// 9-31: reserved values, kept as received.
    Other(u8),
}

impl Diag {
    /// The 5-bit wire value.
    pub fn code(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::DetectionTimeExpired => 1,
            Diag::EchoFailed => 2,
            Diag::NeighborDown => 3,
            Diag::ForwardingReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdminDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Other(c) => c & 0x1f,
        }
    }

    /// From the 5-bit wire value.
    pub fn from_code(c: u8) -> Diag {
        match c & 0x1f {
            0 => Diag::None,
            1 => Diag::DetectionTimeExpired,
            2 => Diag::EchoFailed,
            3 => Diag::NeighborDown,
            4 => Diag::ForwardingReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdminDown,
            8 => Diag::ReverseConcatenatedPathDown,
            c => Diag::Other(c),
        }
    }

    /// RFC 5880's text for the code.
    pub fn name(self) -> &'static str {
        match self {
            Diag::None => "No Diagnostic",
            Diag::DetectionTimeExpired => "Control Detection Time Expired",
            Diag::EchoFailed => "Echo Function Failed",
            Diag::NeighborDown => "Neighbor Signaled Session Down",
            Diag::ForwardingReset => "Forwarding Plane Reset",
            Diag::PathDown => "Path Down",
            Diag::ConcatenatedPathDown => "Concatenated Path Down",
            Diag::AdminDown => "Administratively Down",
            Diag::ReverseConcatenatedPathDown => "Reverse Concatenated Path Down",
            Diag::Other(_) => "Reserved",
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One Control packet. Intervals are in microseconds as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Diag: the sender's reason for its last state change.
    pub diag: Diag,
    /// Sta: the sender's session state.
    pub state: BfdState,
    /// P: Poll, the sender asks for a Final (§6.5).
    pub poll: bool,
    /// F: Final, the answer to a Poll.
    pub final_: bool,
    /// C: Control Plane Independent; vipr's BFD shares fate with its BGP, so it sends 0.
    pub cpi: bool,
    /// A: an authentication section follows (vipr sends none and drops such packets).
    pub auth: bool,
    /// D: Demand mode (vipr never asks for it).
    pub demand: bool,
    /// Detect Mult.
    pub detect_mult: u8,
    /// My Discriminator: the sender's session id, never 0.
    pub my_disc: u32,
    /// Your Discriminator: the receiver's id as the sender knows it, 0 while unknown.
    pub your_disc: u32,
    /// Desired Min TX Interval (µs).
    pub desired_min_tx: u32,
    /// Required Min RX Interval (µs); 0 asks the receiver not to send periodically.
    pub required_min_rx: u32,
    /// Required Min Echo RX Interval (µs); vipr sends 0: no Echo function.
    pub required_min_echo_rx: u32,
}

/// Why a received packet is discarded (RFC 5880 §6.8.6), for counters and debug logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer octets than the minimum packet or than the Length field says.
    #[error("truncated: {got} octets, need {need}")]
    Truncated {
        /// Octets received.
        got: usize,
        /// Octets needed.
        need: usize,
    },
    /// Version is not 1.
    #[error("unsupported version {0}")]
    Version(u8),
    /// Length field below 24 (26 with A set).
    #[error("bad length {0}")]
    Length(u8),
    /// Detect Mult is zero.
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    /// The Multipoint bit is set.
    #[error("multipoint bit set")]
    Multipoint,
    /// My Discriminator is zero.
    #[error("my discriminator is zero")]
    ZeroMyDiscriminator,
    /// Your Discriminator is zero while the state is neither Down nor AdminDown.
    #[error("your discriminator is zero in state {0}")]
    ZeroYourDiscriminator(BfdState),
    /// An authentication section is present; vipr does not use authentication.
    #[error("authentication present but not configured")]
    Authentication,
}

impl Packet {
    /// Encodes the packet (24 octets: vipr never sends an authentication section).
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (VERSION << 5) | self.diag.code();
        b[1] = (self.state.code() << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.cpi) << 3)
            | (u8::from(self.auth) << 2)
            | (u8::from(self.demand) << 1);
        b[2] = self.detect_mult;
        b[3] = LEN as u8;
        b[4..8].copy_from_slice(&self.my_disc.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_disc.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx.to_be_bytes());
        b[20..24].copy_from_slice(&self.required_min_echo_rx.to_be_bytes());
        b
    }

    /// Decodes a received datagram and applies the checks of RFC 5880 §6.8.6 that do not
    /// depend on session state: version, length, detect multiplier, multipoint, the
    /// discriminators, and (vipr using no authentication) the A bit.
    pub fn decode(b: &[u8]) -> Result<Packet, DecodeError> {
        if b.len() < LEN {
            return Err(DecodeError::Truncated {
                got: b.len(),
                need: LEN,
            });
        }
        let version = b[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let auth = b[1] & 0x04 != 0;
        let len = b[3];
        // §6.8.6: at least 24, or 26 with the A bit; no more than the datagram's payload.
        if (len as usize) < LEN || (auth && (len as usize) < LEN + 2) {
            return Err(DecodeError::Length(len));
        }
        if len as usize > b.len() {
            return Err(DecodeError::Truncated {
                got: b.len(),
                need: len as usize,
            });
        }
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let p = Packet {
            diag: Diag::from_code(b[0]),
            state: BfdState::from_code(b[1] >> 6),
            poll: b[1] & 0x20 != 0,
            final_: b[1] & 0x10 != 0,
            cpi: b[1] & 0x08 != 0,
            auth,
            demand: b[1] & 0x02 != 0,
            detect_mult: b[2],
            my_disc: word(4),
            your_disc: word(8),
            desired_min_tx: word(12),
            required_min_rx: word(16),
            required_min_echo_rx: word(20),
        };
        if p.detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        if b[1] & 0x01 != 0 {
            return Err(DecodeError::Multipoint);
        }
        if p.my_disc == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        if p.your_disc == 0 && !matches!(p.state, BfdState::Down | BfdState::AdminDown) {
            return Err(DecodeError::ZeroYourDiscriminator(p.state));
        }
        if p.auth {
            // §6.8.6: "If the A bit is set and no authentication is in use (bfd.AuthType
            // is zero), the packet MUST be discarded."
            return Err(DecodeError::Authentication);
        }
        Ok(p)
    }
}
