//! NOTIFICATION messages (RFC 4271 §4.5, §6): bgp's own type with the error codes vipr sends
//! and receives, RFC 9003 shutdown communication, names for logs and metrics, and the
//! conversion to netgauze's type for encoding. Decoding is lenient: any code/subcode parses.

use std::fmt;

use netgauze_bgp_pkt::notification as ng;

/// RFC 4271 §4.5 error codes.
pub mod code {
    /// Message Header Error (§6.1).
    pub const HEADER: u8 = 1;
    /// OPEN Message Error (§6.2).
    pub const OPEN: u8 = 2;
    /// UPDATE Message Error (§6.3).
    pub const UPDATE: u8 = 3;
    /// Hold Timer Expired (§6.5).
    pub const HOLD_TIMER: u8 = 4;
    /// Finite State Machine Error (§6.6, subcodes RFC 6608).
    pub const FSM: u8 = 5;
    /// Cease (§6.7, subcodes RFC 4486).
    pub const CEASE: u8 = 6;
    /// ROUTE-REFRESH Message Error (RFC 7313 §5).
    pub const ROUTE_REFRESH: u8 = 7;
}

/// Message Header Error subcodes (RFC 4271 §4.5).
pub mod header {
    /// Connection Not Synchronized.
    pub const NOT_SYNCHRONIZED: u8 = 1;
    /// Bad Message Length.
    pub const BAD_LENGTH: u8 = 2;
    /// Bad Message Type.
    pub const BAD_TYPE: u8 = 3;
}

/// OPEN Message Error subcodes (RFC 4271 §4.5, RFC 5492).
pub mod open {
    /// Unsupported Version Number.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    /// Bad Peer AS.
    pub const BAD_PEER_AS: u8 = 2;
    /// Bad BGP Identifier.
    pub const BAD_BGP_ID: u8 = 3;
    /// Unsupported Optional Parameter.
    pub const UNSUPPORTED_OPT_PARAM: u8 = 4;
    /// Unacceptable Hold Time.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// Unsupported Capability (RFC 5492).
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// UPDATE Message Error subcodes (RFC 4271 §4.5).
pub mod update {
    /// Malformed Attribute List.
    pub const MALFORMED_ATTR_LIST: u8 = 1;
    /// Unrecognized Well-known Attribute.
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    /// Missing Well-known Attribute.
    pub const MISSING_WELL_KNOWN: u8 = 3;
    /// Attribute Flags Error.
    pub const ATTR_FLAGS: u8 = 4;
    /// Attribute Length Error.
    pub const ATTR_LENGTH: u8 = 5;
    /// Invalid ORIGIN Attribute.
    pub const INVALID_ORIGIN: u8 = 6;
    /// Invalid NEXT_HOP Attribute.
    pub const INVALID_NEXT_HOP: u8 = 8;
    /// Optional Attribute Error.
    pub const OPTIONAL_ATTR: u8 = 9;
    /// Invalid Network Field.
    pub const INVALID_NETWORK: u8 = 10;
    /// Malformed AS_PATH.
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// FSM Error subcodes (RFC 6608 §4).
pub mod fsm {
    /// Receive Unexpected Message in OpenSent State.
    pub const IN_OPENSENT: u8 = 1;
    /// Receive Unexpected Message in OpenConfirm State.
    pub const IN_OPENCONFIRM: u8 = 2;
    /// Receive Unexpected Message in Established State.
    pub const IN_ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486 §4, RFC 8203/9003).
pub mod cease {
    /// Administrative Shutdown (carries an RFC 9003 message).
    pub const ADMIN_SHUTDOWN: u8 = 2;
    /// Peer De-configured.
    pub const PEER_DECONFIGURED: u8 = 3;
    /// Administrative Reset (carries an RFC 9003 message).
    pub const ADMIN_RESET: u8 = 4;
    /// Connection Rejected.
    pub const CONNECTION_REJECTED: u8 = 5;
    /// Other Configuration Change.
    pub const OTHER_CONFIG_CHANGE: u8 = 6;
    /// Connection Collision Resolution.
    pub const COLLISION: u8 = 7;
    /// BFD Down (RFC 9384).
    pub const BFD_DOWN: u8 = 10;
}

/// A NOTIFICATION: error code, subcode and data (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Diagnostic data.
    pub data: Vec<u8>,
}

/// RFC 9003 §2: a shutdown communication is at most 255 octets of UTF-8.
pub const MAX_SHUTDOWN_MESSAGE: usize = 255;

impl Notification {
    /// A notification without data.
    pub fn new(code: u8, subcode: u8) -> Notification {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    /// A notification with data.
    pub fn with_data(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Notification {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// Cease with an RFC 9003 shutdown communication (subcodes 2 and 4). The message is cut at
    /// a character boundary to fit 255 octets.
    pub fn cease_with_message(subcode: u8, message: &str) -> Notification {
        let mut end = message.len().min(MAX_SHUTDOWN_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut data = Vec::with_capacity(end + 1);
        data.push(end as u8);
        data.extend_from_slice(&message.as_bytes()[..end]);
        Notification::with_data(code::CEASE, subcode, data)
    }

    /// Hold Timer Expired (RFC 4271 §6.5).
    pub fn hold_timer_expired() -> Notification {
        Notification::new(code::HOLD_TIMER, 0)
    }

    /// The RFC 9003 shutdown communication, if this is a Cease 2/4 carrying a valid one.
    pub fn shutdown_message(&self) -> Option<String> {
        if self.code != code::CEASE
            || !matches!(self.subcode, cease::ADMIN_SHUTDOWN | cease::ADMIN_RESET)
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..len as usize)?;
        std::str::from_utf8(text).ok().map(str::to_owned)
    }

    /// Short code name for logs and metric labels, e.g. `cease`.
    pub fn code_name(&self) -> &'static str {
        match self.code {
            code::HEADER => "message_header_error",
            code::OPEN => "open_message_error",
            code::UPDATE => "update_message_error",
            code::HOLD_TIMER => "hold_timer_expired",
            code::FSM => "fsm_error",
            code::CEASE => "cease",
            code::ROUTE_REFRESH => "route_refresh_error",
            _ => "unknown",
        }
    }

    /// Human-readable subcode name from the RFCs.
    pub fn subcode_name(&self) -> &'static str {
        match (self.code, self.subcode) {
            (code::HEADER, header::NOT_SYNCHRONIZED) => "connection not synchronized",
            (code::HEADER, header::BAD_LENGTH) => "bad message length",
            (code::HEADER, header::BAD_TYPE) => "bad message type",
            (code::OPEN, open::UNSUPPORTED_VERSION) => "unsupported version number",
            (code::OPEN, open::BAD_PEER_AS) => "bad peer AS",
            (code::OPEN, open::BAD_BGP_ID) => "bad BGP identifier",
            (code::OPEN, open::UNSUPPORTED_OPT_PARAM) => "unsupported optional parameter",
            (code::OPEN, open::UNACCEPTABLE_HOLD_TIME) => "unacceptable hold time",
            (code::OPEN, open::UNSUPPORTED_CAPABILITY) => "unsupported capability",
            (code::UPDATE, update::MALFORMED_ATTR_LIST) => "malformed attribute list",
            (code::UPDATE, update::UNRECOGNIZED_WELL_KNOWN) => "unrecognized well-known attribute",
            (code::UPDATE, update::MISSING_WELL_KNOWN) => "missing well-known attribute",
            (code::UPDATE, update::ATTR_FLAGS) => "attribute flags error",
            (code::UPDATE, update::ATTR_LENGTH) => "attribute length error",
            (code::UPDATE, update::INVALID_ORIGIN) => "invalid ORIGIN attribute",
            (code::UPDATE, update::INVALID_NEXT_HOP) => "invalid NEXT_HOP attribute",
            (code::UPDATE, update::OPTIONAL_ATTR) => "optional attribute error",
            (code::UPDATE, update::INVALID_NETWORK) => "invalid network field",
            (code::UPDATE, update::MALFORMED_AS_PATH) => "malformed AS_PATH",
            (code::FSM, fsm::IN_OPENSENT) => "unexpected message in OpenSent",
            (code::FSM, fsm::IN_OPENCONFIRM) => "unexpected message in OpenConfirm",
            (code::FSM, fsm::IN_ESTABLISHED) => "unexpected message in Established",
            (code::CEASE, 1) => "maximum number of prefixes reached",
            (code::CEASE, cease::ADMIN_SHUTDOWN) => "administrative shutdown",
            (code::CEASE, cease::PEER_DECONFIGURED) => "peer de-configured",
            (code::CEASE, cease::ADMIN_RESET) => "administrative reset",
            (code::CEASE, cease::CONNECTION_REJECTED) => "connection rejected",
            (code::CEASE, cease::OTHER_CONFIG_CHANGE) => "other configuration change",
            (code::CEASE, cease::COLLISION) => "connection collision resolution",
            (code::CEASE, 8) => "out of resources",
            (code::CEASE, 9) => "hard reset",
            (code::CEASE, cease::BFD_DOWN) => "BFD down",
            (code::ROUTE_REFRESH, 1) => "invalid message length",
            _ => "unspecific",
        }
    }

    /// Parses the body of a NOTIFICATION (after the 19-octet header). Never fails on
    /// content; only a body shorter than two octets is an error (Bad Message Length).
    pub fn parse_body(body: &[u8]) -> Option<Notification> {
        match body {
            [c, s, data @ ..] => Some(Notification::with_data(*c, *s, data.to_vec())),
            _ => None,
        }
    }

    /// netgauze's representation for encoding; `None` for a pair netgauze cannot carry.
    pub(crate) fn to_netgauze(&self) -> Option<ng::BgpNotificationMessage> {
        use ng::BgpNotificationMessage as N;
        let value: Box<[u8]> = self.data.clone().into_boxed_slice();
        Some(match (self.code, self.subcode) {
            (1, 0) => N::MessageHeaderError(ng::MessageHeaderError::Unspecific { value }),
            (1, 1) => {
                N::MessageHeaderError(ng::MessageHeaderError::ConnectionNotSynchronized { value })
            }
            (1, 2) => N::MessageHeaderError(ng::MessageHeaderError::BadMessageLength { value }),
            (1, 3) => N::MessageHeaderError(ng::MessageHeaderError::BadMessageType { value }),
            (2, 0) => N::OpenMessageError(ng::OpenMessageError::Unspecific { value }),
            (2, 1) => N::OpenMessageError(ng::OpenMessageError::UnsupportedVersionNumber { value }),
            (2, 2) => N::OpenMessageError(ng::OpenMessageError::BadPeerAs { value }),
            (2, 3) => N::OpenMessageError(ng::OpenMessageError::BadBgpIdentifier { value }),
            (2, 4) => {
                N::OpenMessageError(ng::OpenMessageError::UnsupportedOptionalParameter { value })
            }
            (2, 6) => N::OpenMessageError(ng::OpenMessageError::UnacceptableHoldTime { value }),
            (2, 7) => N::OpenMessageError(ng::OpenMessageError::UnsupportedCapability { value }),
            (3, 0) => N::UpdateMessageError(ng::UpdateMessageError::Unspecific { value }),
            (3, 1) => {
                N::UpdateMessageError(ng::UpdateMessageError::MalformedAttributeList { value })
            }
            (3, 2) => {
                N::UpdateMessageError(ng::UpdateMessageError::UnrecognizedWellKnownAttribute {
                    value,
                })
            }
            (3, 3) => {
                N::UpdateMessageError(ng::UpdateMessageError::MissingWellKnownAttribute { value })
            }
            (3, 4) => N::UpdateMessageError(ng::UpdateMessageError::AttributeFlagsError { value }),
            (3, 5) => N::UpdateMessageError(ng::UpdateMessageError::AttributeLengthError { value }),
            (3, 6) => {
                N::UpdateMessageError(ng::UpdateMessageError::InvalidOriginAttribute { value })
            }
            (3, 8) => {
                N::UpdateMessageError(ng::UpdateMessageError::InvalidNextHopAttribute { value })
            }
            (3, 9) => {
                N::UpdateMessageError(ng::UpdateMessageError::OptionalAttributeError { value })
            }
            (3, 10) => N::UpdateMessageError(ng::UpdateMessageError::InvalidNetworkField { value }),
            (3, 11) => N::UpdateMessageError(ng::UpdateMessageError::MalformedAsPath { value }),
            (4, s) => N::HoldTimerExpiredError(ng::HoldTimerExpiredError::Unspecific {
                sub_code: s,
                value,
            }),
            (5, 0) => N::FiniteStateMachineError(ng::FiniteStateMachineError::Unspecific { value }),
            (5, 1) => N::FiniteStateMachineError(
                ng::FiniteStateMachineError::ReceiveUnexpectedMessageInOpenSentState { value },
            ),
            (5, 2) => N::FiniteStateMachineError(
                ng::FiniteStateMachineError::ReceiveUnexpectedMessageInOpenConfirmState { value },
            ),
            (5, 3) => N::FiniteStateMachineError(
                ng::FiniteStateMachineError::ReceiveUnexpectedMessageInEstablishedState { value },
            ),
            (6, 1) => N::CeaseError(ng::CeaseError::MaximumNumberOfPrefixesReached { value }),
            (6, 2) => N::CeaseError(ng::CeaseError::AdministrativeShutdown { value }),
            (6, 3) => N::CeaseError(ng::CeaseError::PeerDeConfigured { value }),
            (6, 4) => N::CeaseError(ng::CeaseError::AdministrativeReset { value }),
            (6, 5) => N::CeaseError(ng::CeaseError::ConnectionRejected { value }),
            (6, 6) => N::CeaseError(ng::CeaseError::OtherConfigurationChange { value }),
            (6, 7) => N::CeaseError(ng::CeaseError::ConnectionCollisionResolution { value }),
            (6, 8) => N::CeaseError(ng::CeaseError::OutOfResources { value }),
            (6, 9) => N::CeaseError(ng::CeaseError::HardReset { value }),
            (6, 10) => N::CeaseError(ng::CeaseError::BfdDown { value }),
            (7, 1) => N::RouteRefreshError(ng::RouteRefreshError::InvalidMessageLength { value }),
            _ => return None,
        })
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ({}: {})",
            self.code,
            self.subcode,
            self.code_name().replace('_', " "),
            self.subcode_name()
        )?;
        if let Some(m) = self.shutdown_message() {
            write!(f, " \"{}\"", m.escape_debug())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9003_message_round_trip_and_truncation() {
        let n = Notification::cease_with_message(cease::ADMIN_SHUTDOWN, "vipr shutting down");
        assert_eq!(n.data[0] as usize, "vipr shutting down".len());
        assert_eq!(n.shutdown_message().as_deref(), Some("vipr shutting down"));
        assert!(n.to_string().contains("administrative shutdown"));
        let long = "é".repeat(200); // 400 octets
        let n = Notification::cease_with_message(cease::ADMIN_SHUTDOWN, &long);
        assert!(n.data.len() <= 256);
        assert_eq!(n.shutdown_message().unwrap().chars().count(), 127);
    }

    #[test]
    fn lenient_body_parse() {
        assert_eq!(
            Notification::parse_body(&[6, 99, 1]),
            Some(Notification::with_data(6, 99, vec![1]))
        );
        assert_eq!(Notification::parse_body(&[6]), None);
        // A Cease/2 whose length byte overruns: no message, no panic.
        let n = Notification::with_data(6, 2, vec![200, b'a']);
        assert_eq!(n.shutdown_message(), None);
    }
}
