//! The BGP wire codec behind bgp's own types: the message header and framing checks of
//! RFC 4271 §4.1/§6.1, a [`Message`] enum for what peers send, and encoders for what vipr
//! sends. netgauze-bgp-pkt writes every message and parses OPEN; received UPDATEs go
//! through [`update_in`] for RFC 7606 handling. Decoding never panics; every error is the
//! NOTIFICATION to send.

pub mod notification;
pub mod open;
pub mod update_in;
pub mod update_out;

use bytes::Bytes;
use netgauze_bgp_pkt::iana::RouteRefreshSubcode;
use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::WritablePdu;

pub use notification::Notification;
pub use open::{Capabilities, GrCapability, Negotiated, Open};
pub use update_in::{DecodeCtx, ReceivedUpdate};
pub use update_out::EncodeCtx;

use crate::types::Family;
use notification::{code, header};

/// RFC 4271 §4.1: 16-octet marker, 2-octet length, 1-octet type.
pub const HEADER_LEN: usize = 19;
/// RFC 4271 §4: maximum message size.
pub const MAX_LEN: usize = 4096;
/// RFC 8654: maximum size of messages other than OPEN and KEEPALIVE when negotiated.
pub const MAX_EXTENDED_LEN: usize = 65535;

/// RFC 4271 §4.1 message types (plus RFC 2918 ROUTE-REFRESH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1
    Open,
    /// 2
    Update,
    /// 3
    Notification,
    /// 4
    Keepalive,
    /// 5
    RouteRefresh,
}

impl MessageType {
    /// All types, in code order (for counters).
    pub const ALL: [MessageType; 5] = [
        MessageType::Open,
        MessageType::Update,
        MessageType::Notification,
        MessageType::Keepalive,
        MessageType::RouteRefresh,
    ];

    /// The type for a wire code.
    pub fn from_code(c: u8) -> Option<MessageType> {
        Some(match c {
            1 => MessageType::Open,
            2 => MessageType::Update,
            3 => MessageType::Notification,
            4 => MessageType::Keepalive,
            5 => MessageType::RouteRefresh,
            _ => return None,
        })
    }

    /// Lower-case name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Open => "open",
            MessageType::Update => "update",
            MessageType::Notification => "notification",
            MessageType::Keepalive => "keepalive",
            MessageType::RouteRefresh => "route_refresh",
        }
    }

    /// Index into per-type counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// RFC 4271 §6.1 minimum lengths per type (ROUTE-REFRESH: RFC 2918 §3).
    fn min_len(self) -> usize {
        match self {
            MessageType::Open => 29,
            MessageType::Update => 23,
            MessageType::Notification => 21,
            MessageType::Keepalive => 19,
            MessageType::RouteRefresh => 23,
        }
    }
}

/// A decoded message from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN (RFC 4271 §4.2).
    Open(Open),
    /// UPDATE (RFC 4271 §4.3), validated per RFC 7606.
    Update(ReceivedUpdate),
    /// NOTIFICATION (RFC 4271 §4.5).
    Notification(Notification),
    /// KEEPALIVE (RFC 4271 §4.4).
    Keepalive,
    /// ROUTE-REFRESH (RFC 2918 §3, RFC 7313 subtypes).
    RouteRefresh {
        /// The family, if vipr knows it.
        family: Option<Family>,
        /// Message subtype (0 = request; RFC 7313: 1 = BoRR, 2 = EoRR).
        subtype: u8,
    },
}

impl Message {
    /// The message's type.
    pub fn kind(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh { .. } => MessageType::RouteRefresh,
        }
    }
}

/// Checks a header (RFC 4271 §6.1) and returns the type and total length. `max_len` is the
/// negotiated maximum for UPDATE, NOTIFICATION and ROUTE-REFRESH (OPEN and KEEPALIVE are
/// always limited to 4096, RFC 8654 §4).
pub fn check_header(h: &[u8], max_len: usize) -> Result<(MessageType, usize), Notification> {
    if h.len() < HEADER_LEN {
        return Err(Notification::new(code::HEADER, header::BAD_LENGTH));
    }
    if h[..16].iter().any(|b| *b != 0xff) {
        return Err(Notification::new(code::HEADER, header::NOT_SYNCHRONIZED));
    }
    let len = u16::from_be_bytes([h[16], h[17]]) as usize;
    let bad_len =
        || Notification::with_data(code::HEADER, header::BAD_LENGTH, (len as u16).to_be_bytes());
    let kind = MessageType::from_code(h[18])
        .ok_or_else(|| Notification::with_data(code::HEADER, header::BAD_TYPE, [h[18]]))?;
    let max = match kind {
        MessageType::Open | MessageType::Keepalive => MAX_LEN,
        _ => max_len,
    };
    if len < kind.min_len() || len > max || (kind == MessageType::Keepalive && len != HEADER_LEN) {
        return Err(bad_len());
    }
    Ok((kind, len))
}

/// Decodes one complete message (header included).
pub fn decode(frame: &[u8], max_len: usize, ctx: &DecodeCtx) -> Result<Message, Notification> {
    let (kind, len) = check_header(frame, max_len)?;
    if frame.len() != len {
        return Err(Notification::with_data(
            code::HEADER,
            header::BAD_LENGTH,
            (len as u16).to_be_bytes(),
        ));
    }
    let body = &frame[HEADER_LEN..];
    match kind {
        MessageType::Open => Open::parse_body(body).map(Message::Open),
        MessageType::Update => update_in::parse_update(body, ctx).map(Message::Update),
        MessageType::Notification => Notification::parse_body(body)
            .map(Message::Notification)
            .ok_or_else(|| {
                Notification::with_data(
                    code::HEADER,
                    header::BAD_LENGTH,
                    (len as u16).to_be_bytes(),
                )
            }),
        MessageType::Keepalive => Ok(Message::Keepalive),
        MessageType::RouteRefresh => {
            let afi = u16::from_be_bytes([body[0], body[1]]);
            let subtype = body[2];
            // RFC 7313 §5: BoRR/EoRR must be exactly 4 octets of body.
            if matches!(subtype, 1 | 2) && body.len() != 4 {
                return Err(Notification::with_data(
                    code::ROUTE_REFRESH,
                    1,
                    frame.to_vec(),
                ));
            }
            Ok(Message::RouteRefresh {
                family: Family::from_afi_safi(afi, body[3]),
                subtype,
            })
        }
    }
}

/// Writes a netgauze message into bytes.
pub(crate) fn encode_message(msg: &BgpMessage) -> Bytes {
    let mut buf = Vec::with_capacity(msg.len());
    // Writing into a Vec cannot fail for the messages vipr builds (all within limits).
    if msg.write(&mut buf).is_err() {
        buf.clear();
    }
    Bytes::from(buf)
}

/// Encodes an OPEN.
pub fn encode_open(open: &Open) -> Bytes {
    encode_message(&BgpMessage::Open(open.to_netgauze()))
}

/// Encodes a KEEPALIVE (19 octets).
pub fn encode_keepalive() -> Bytes {
    encode_message(&BgpMessage::KeepAlive)
}

/// Encodes a NOTIFICATION.
pub fn encode_notification(n: &Notification) -> Bytes {
    match n.to_netgauze() {
        Some(ng) => encode_message(&BgpMessage::Notification(ng)),
        None => {
            // A code pair netgauze has no variant for: write it by hand (RFC 4271 §4.5).
            let len = HEADER_LEN + 2 + n.data.len();
            let mut b = vec![0xff; 16];
            b.extend_from_slice(&(len as u16).to_be_bytes());
            b.extend_from_slice(&[3, n.code, n.subcode]);
            b.extend_from_slice(&n.data);
            Bytes::from(b)
        }
    }
}

/// Encodes a ROUTE-REFRESH request (RFC 2918) for a family.
pub fn encode_route_refresh(f: Family) -> Bytes {
    let t = match f {
        Family::Ipv4Unicast => AddressType::Ipv4Unicast,
        Family::Ipv6Unicast => AddressType::Ipv6Unicast,
    };
    encode_message(&BgpMessage::RouteRefresh(BgpRouteRefreshMessage::new(
        t,
        RouteRefreshSubcode::NormalRequest,
    )))
}
