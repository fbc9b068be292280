//! OPEN messages (RFC 4271 §4.2) and the capabilities vipr speaks (RFC 5492): bgp's own
//! [`Open`]/[`Capabilities`] types, encoding through netgauze, decoding through netgauze
//! plus the checks of RFC 4271 §6.2 that depend on the session (peer AS, identifier).

use std::net::Ipv4Addr;

use netgauze_bgp_pkt::capabilities as ngc;
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::wire::deserializer::open::{
    BgpOpenMessageParsingError, BgpParameterParsingError,
};
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_iana::address_family::{AddressFamily, AddressType};
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

use super::notification::{self as n, Notification};
use crate::types::Family;

/// RFC 6793 §9: AS_TRANS, sent in the 2-octet My AS field when our AS does not fit.
pub const AS_TRANS: u16 = 23456;

/// Graceful restart capability contents (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrCapability {
    /// Restart State bit: the sender has restarted.
    pub restarting: bool,
    /// Restart Time in seconds (12 bits).
    pub restart_time: u16,
    /// Families with their Forwarding State bit.
    pub families: Vec<(Family, bool)>,
}

/// The capabilities of an OPEN that matter to vipr.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Multiprotocol capabilities for families vipr knows (RFC 4760 §8).
    pub families: Vec<Family>,
    /// True if any multiprotocol capability was present (otherwise IPv4 unicast is implied).
    pub multiprotocol: bool,
    /// Route refresh (RFC 2918), code 2.
    pub route_refresh: bool,
    /// Enhanced route refresh (RFC 7313), code 70.
    pub enhanced_route_refresh: bool,
    /// 4-octet AS (RFC 6793), code 65, with the AS it carries.
    pub four_octet_as: Option<u32>,
    /// Graceful restart (RFC 4724), code 64.
    pub graceful_restart: Option<GrCapability>,
    /// Extended messages (RFC 8654), code 6.
    pub extended_message: bool,
    /// Extended next hop encodings (RFC 8950), code 5: NLRI family with next-hop AFI.
    pub extended_next_hop: Vec<(Family, u16)>,
    /// ADD-PATH (RFC 7911) present; vipr never offers it so it is never negotiated.
    pub add_path: bool,
    /// Hostname (draft-walton-bgp-hostname-capability), code 73.
    pub hostname: Option<String>,
    /// Codes of capabilities vipr does not interpret.
    pub other: Vec<u8>,
}

/// An OPEN message in bgp's own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet My Autonomous System field (AS_TRANS for a large AS).
    pub my_as_field: u16,
    /// The sender's AS: the 4-octet capability's AS when present, else the field.
    pub asn: u32,
    /// Proposed hold time in seconds.
    pub hold_time: u16,
    /// BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Capabilities.
    pub caps: Capabilities,
}

fn address_type(f: Family) -> AddressType {
    match f {
        Family::Ipv4Unicast => AddressType::Ipv4Unicast,
        Family::Ipv6Unicast => AddressType::Ipv6Unicast,
    }
}

fn family(t: AddressType) -> Option<Family> {
    match t {
        AddressType::Ipv4Unicast => Some(Family::Ipv4Unicast),
        AddressType::Ipv6Unicast => Some(Family::Ipv6Unicast),
        _ => None,
    }
}

impl Open {
    /// Builds our OPEN: the 2-octet field carries AS_TRANS when `asn` needs 4 octets.
    pub fn new(asn: u32, hold_time: u16, router_id: Ipv4Addr, caps: Capabilities) -> Open {
        Open {
            my_as_field: u16::try_from(asn).unwrap_or(AS_TRANS),
            asn,
            hold_time,
            router_id,
            caps,
        }
    }

    /// netgauze's message for encoding.
    pub(crate) fn to_netgauze(&self) -> BgpOpenMessage {
        let c = &self.caps;
        let mut caps: Vec<ngc::BgpCapability> = Vec::new();
        for f in &c.families {
            caps.push(ngc::BgpCapability::MultiProtocolExtensions(
                ngc::MultiProtocolExtensionsCapability::new(address_type(*f)),
            ));
        }
        if c.route_refresh {
            caps.push(ngc::BgpCapability::RouteRefresh);
        }
        if c.enhanced_route_refresh {
            caps.push(ngc::BgpCapability::EnhancedRouteRefresh);
        }
        if let Some(asn) = c.four_octet_as {
            caps.push(ngc::BgpCapability::FourOctetAs(
                ngc::FourOctetAsCapability::new(asn),
            ));
        }
        if let Some(gr) = &c.graceful_restart {
            let fams: Vec<_> = gr
                .families
                .iter()
                .map(|(f, fwd)| ngc::GracefulRestartAddressFamily::new(*fwd, address_type(*f)))
                .collect();
            caps.push(ngc::BgpCapability::GracefulRestartCapability(
                ngc::GracefulRestartCapability::new(gr.restarting, false, gr.restart_time, fams),
            ));
        }
        if c.extended_message {
            caps.push(ngc::BgpCapability::ExtendedMessage);
        }
        if !c.extended_next_hop.is_empty() {
            let enc: Vec<_> = c
                .extended_next_hop
                .iter()
                .map(|(f, afi)| {
                    let nh = if *afi == 2 {
                        AddressFamily::IPv6
                    } else {
                        AddressFamily::IPv4
                    };
                    ngc::ExtendedNextHopEncoding::new(address_type(*f), nh)
                })
                .collect();
            caps.push(ngc::BgpCapability::ExtendedNextHopEncoding(
                ngc::ExtendedNextHopEncodingCapability::new(enc),
            ));
        }
        if let Some(h) = &c.hostname {
            let h: String = h.chars().take(ngc::FqdnCapability::MAX_NAME_LEN).collect();
            caps.push(ngc::BgpCapability::Fqdn(ngc::FqdnCapability::new(
                h.into(),
                "".into(),
            )));
        }
        BgpOpenMessage::new(
            self.my_as_field,
            self.hold_time,
            self.router_id,
            vec![BgpOpenMessageParameter::new_capabilities(caps)],
        )
    }

    /// Decodes an OPEN body (after the header). Syntax errors of RFC 4271 §6.2 become the
    /// NOTIFICATION to send. Malformed or unknown capabilities are ignored (RFC 5492 §3).
    pub fn parse_body(body: &[u8]) -> Result<Open, Notification> {
        let mut ctx = BgpParsingContext::new(
            true,
            Default::default(),
            Default::default(),
            false,
            false,
            false,
            false,
        );
        let mut cur = SliceReader::new(body);
        let msg = BgpOpenMessage::parse(&mut cur, &mut ctx).map_err(open_error)?;
        if !cur.is_empty() {
            // Optional Parameters Length shorter than the message: RFC 4271 §6.2 unspecific.
            return Err(Notification::new(n::code::OPEN, 0));
        }
        let mut caps = Capabilities::default();
        for cap in msg.capabilities() {
            match cap {
                ngc::BgpCapability::MultiProtocolExtensions(mp) => {
                    caps.multiprotocol = true;
                    if let Some(f) = family(mp.address_type()) {
                        if !caps.families.contains(&f) {
                            caps.families.push(f);
                        }
                    }
                }
                ngc::BgpCapability::RouteRefresh | ngc::BgpCapability::CiscoRouteRefresh => {
                    caps.route_refresh = true
                }
                ngc::BgpCapability::EnhancedRouteRefresh => caps.enhanced_route_refresh = true,
                ngc::BgpCapability::FourOctetAs(a) => caps.four_octet_as = Some(a.asn4()),
                ngc::BgpCapability::GracefulRestartCapability(gr) => {
                    caps.graceful_restart = Some(GrCapability {
                        restarting: gr.restart(),
                        restart_time: gr.time(),
                        families: gr
                            .address_families()
                            .iter()
                            .filter_map(|af| {
                                family(af.address_type()).map(|f| (f, af.forwarding_state()))
                            })
                            .collect(),
                    })
                }
                ngc::BgpCapability::ExtendedMessage => caps.extended_message = true,
                ngc::BgpCapability::ExtendedNextHopEncoding(e) => {
                    for enc in e.encodings() {
                        if let Some(f) = family(enc.address_type()) {
                            caps.extended_next_hop.push((f, enc.next_hop_afi() as u16));
                        }
                    }
                }
                ngc::BgpCapability::AddPath(_) => caps.add_path = true,
                ngc::BgpCapability::Fqdn(f) => caps.hostname = Some(f.hostname().to_string()),
                other => caps.other.push(capability_code(other)),
            }
        }
        Ok(Open {
            my_as_field: msg.my_as(),
            asn: caps.four_octet_as.unwrap_or(msg.my_as() as u32),
            hold_time: msg.hold_time(),
            router_id: msg.bgp_id(),
            caps,
        })
    }
}

fn capability_code(c: &ngc::BgpCapability) -> u8 {
    match c.code() {
        Ok(code) => code as u8,
        Err(code) => code,
    }
}

/// RFC 4271 §6.2: which OPEN Message Error subcode a syntax error gets, with its data.
fn open_error(e: BgpOpenMessageParsingError) -> Notification {
    match e {
        // Data: the largest locally supported version, 2 octets.
        BgpOpenMessageParsingError::UnsupportedVersionNumber { .. } => Notification::with_data(
            n::code::OPEN,
            n::open::UNSUPPORTED_VERSION,
            4u16.to_be_bytes(),
        ),
        BgpOpenMessageParsingError::UnacceptableHoldTime { .. } => {
            Notification::new(n::code::OPEN, n::open::UNACCEPTABLE_HOLD_TIME)
        }
        BgpOpenMessageParsingError::InvalidBgpId { .. } => {
            Notification::new(n::code::OPEN, n::open::BAD_BGP_ID)
        }
        BgpOpenMessageParsingError::ParameterError(
            BgpParameterParsingError::UndefinedParameterType { code, .. },
        ) => Notification::with_data(n::code::OPEN, n::open::UNSUPPORTED_OPT_PARAM, vec![code]),
        // Truncated fields and malformed recognised parameters: unspecific (§6.2).
        _ => Notification::new(n::code::OPEN, 0),
    }
}

/// What both sides agreed on once the peer's OPEN is accepted (RFC 4271 §4.2, RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// min(our hold time, theirs); 0 means no hold timer and no keepalives.
    pub hold_time: u16,
    /// Keepalive interval in seconds (0 when hold time is 0).
    pub keepalive: u16,
    /// Families both sides offered (IPv4 unicast implied without any MP capability).
    pub families: Vec<Family>,
    /// Both sides support 4-octet AS numbers (RFC 6793).
    pub four_octet_as: bool,
    /// The peer can receive ROUTE-REFRESH (we always can).
    pub route_refresh: bool,
    /// Maximum UPDATE size: 65535 with RFC 8654 on both sides, else 4096.
    pub max_update_len: usize,
    /// IPv4 routes may carry an IPv6 next hop (RFC 8950 negotiated both ways).
    pub ipv4_over_ipv6_next_hop: bool,
    /// Negotiated families this session has no next hop for, with why: their routes are not
    /// sent (unless a route brings its own next hop). Filled in by the session core once
    /// it knows its local address.
    pub without_next_hop: Vec<(Family, &'static str)>,
    /// The peer's graceful restart capability, if it sent one.
    pub peer_graceful_restart: Option<GrCapability>,
    /// Families for which graceful restart is in effect (ours ∩ negotiated).
    pub graceful_restart_families: Vec<Family>,
    /// The peer's AS and identifier.
    pub peer_as: u32,
    /// The peer's BGP Identifier.
    pub peer_id: Ipv4Addr,
    /// The peer's hostname capability, if any.
    pub peer_hostname: Option<String>,
}

impl Negotiated {
    /// Combines our OPEN and the peer's, as RFC 4271 §4.2 (hold time) and the capability
    /// RFCs describe. `keepalive_cfg` is the configured keepalive, if any.
    pub fn new(ours: &Open, theirs: &Open, keepalive_cfg: Option<u16>) -> Negotiated {
        let hold_time = ours.hold_time.min(theirs.hold_time);
        let keepalive = if hold_time == 0 {
            0
        } else {
            match keepalive_cfg {
                Some(k) if k > 0 && k < hold_time => k,
                _ => (hold_time / 3).max(1),
            }
        };
        let their_families: Vec<Family> = if theirs.caps.multiprotocol {
            theirs.caps.families.clone()
        } else {
            vec![Family::Ipv4Unicast]
        };
        let families: Vec<Family> = ours
            .caps
            .families
            .iter()
            .copied()
            .filter(|f| their_families.contains(f))
            .collect();
        let gr_families = match &ours.caps.graceful_restart {
            Some(gr) => gr
                .families
                .iter()
                .map(|(f, _)| *f)
                .filter(|f| families.contains(f))
                .collect(),
            None => Vec::new(),
        };
        let enh = |c: &Capabilities| c.extended_next_hop.contains(&(Family::Ipv4Unicast, 2));
        Negotiated {
            hold_time,
            keepalive,
            four_octet_as: ours.caps.four_octet_as.is_some() && theirs.caps.four_octet_as.is_some(),
            route_refresh: theirs.caps.route_refresh || theirs.caps.enhanced_route_refresh,
            max_update_len: if ours.caps.extended_message && theirs.caps.extended_message {
                super::MAX_EXTENDED_LEN
            } else {
                super::MAX_LEN
            },
            ipv4_over_ipv6_next_hop: enh(&ours.caps) && enh(&theirs.caps),
            without_next_hop: Vec::new(),
            peer_graceful_restart: theirs.caps.graceful_restart.clone(),
            graceful_restart_families: gr_families,
            peer_as: theirs.asn,
            peer_id: theirs.router_id,
            peer_hostname: theirs.caps.hostname.clone(),
            families,
        }
    }
}
