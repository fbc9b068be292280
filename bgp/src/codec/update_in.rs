//! Decoding and validating the UPDATEs a peer sends, with the error handling of RFC 7606:
//! which malformations reset the session (and with which NOTIFICATION), which are
//! "treat-as-withdraw", and which only discard an attribute. vipr keeps no RIB, so the
//! result is only counted; what matters is the right reaction and never panicking.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::notification::{self as n, Notification};
use crate::types::{Community, Family, LargeCommunity};

/// What the decoder needs to know about the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeCtx {
    /// RFC 6793 negotiated: AS numbers in AS_PATH and AGGREGATOR are 4 octets.
    pub four_octet_as: bool,
    /// The peer is internal (LOCAL_PREF is meaningful).
    pub ibgp: bool,
}

/// One AS_PATH segment as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsSegment {
    /// RFC 4271 §4.3: 1 = AS_SET, 2 = AS_SEQUENCE (RFC 5065: 3, 4 confederation).
    pub kind: u8,
    /// The AS numbers.
    pub asns: Vec<u32>,
}

/// The attributes vipr understands, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedAttrs {
    /// ORIGIN value.
    pub origin: Option<u8>,
    /// AS_PATH segments (`None` if absent).
    pub as_path: Option<Vec<AsSegment>>,
    /// NEXT_HOP attribute.
    pub next_hop: Option<Ipv4Addr>,
    /// Next hop from MP_REACH_NLRI (global address).
    pub mp_next_hop: Option<IpAddr>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// COMMUNITIES.
    pub communities: Vec<Community>,
    /// LARGE_COMMUNITY.
    pub large_communities: Vec<LargeCommunity>,
    /// AS4_PATH (RFC 6793), when a 2-octet peer relays it.
    pub as4_path: Option<Vec<AsSegment>>,
}

/// A decoded UPDATE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedUpdate {
    /// Withdrawn prefixes (Withdrawn Routes field and MP_UNREACH_NLRI), plus the announced
    /// ones when the UPDATE is treated as a withdraw.
    pub withdrawn: Vec<IpNet>,
    /// Announced prefixes (NLRI field and MP_REACH_NLRI).
    pub announced: Vec<IpNet>,
    /// Attributes.
    pub attrs: ReceivedAttrs,
    /// RFC 4724 §2 End-of-RIB marker for this family.
    pub end_of_rib: Option<Family>,
    /// RFC 7606 treat-as-withdraw applied, with the reason.
    pub treat_as_withdraw: Option<&'static str>,
    /// Attribute type codes discarded (RFC 7606 attribute discard and duplicates).
    pub discarded: Vec<u8>,
    /// MP_REACH/MP_UNREACH for families vipr does not speak, ignored.
    pub other_families: usize,
}

const ORIGIN: u8 = 1;
const AS_PATH: u8 = 2;
const NEXT_HOP: u8 = 3;
const MED: u8 = 4;
const LOCAL_PREF: u8 = 5;
const ATOMIC_AGGREGATE: u8 = 6;
const AGGREGATOR: u8 = 7;
const COMMUNITIES: u8 = 8;
const ORIGINATOR_ID: u8 = 9;
const CLUSTER_LIST: u8 = 10;
const MP_REACH: u8 = 14;
const MP_UNREACH: u8 = 15;
const EXT_COMMUNITIES: u8 = 16;
const AS4_PATH: u8 = 17;
const AS4_AGGREGATOR: u8 = 18;
const LARGE_COMMUNITY: u8 = 32;

const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_EXTENDED: u8 = 0x10;

/// Parses a run of prefixes (RFC 4271 §4.3 "Length, Prefix"). `Err` on a length above
/// `max_bits` or a truncated prefix: the field is syntactically incorrect.
fn parse_prefixes(mut buf: &[u8], family: Family, out: &mut Vec<IpNet>) -> Result<(), ()> {
    let max_bits = match family {
        Family::Ipv4Unicast => 32,
        Family::Ipv6Unicast => 128,
    };
    while let Some((&bits, rest)) = buf.split_first() {
        if bits > max_bits {
            return Err(());
        }
        let n = (bits as usize).div_ceil(8);
        let bytes = rest.get(..n).ok_or(())?;
        buf = &rest[n..];
        let net = match family {
            Family::Ipv4Unicast => {
                let mut a = [0u8; 4];
                a[..n].copy_from_slice(bytes);
                IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::from(a), bits)
                        .map_err(|_| ())?
                        .trunc(),
                )
            }
            Family::Ipv6Unicast => {
                let mut a = [0u8; 16];
                a[..n].copy_from_slice(bytes);
                IpNet::V6(
                    Ipv6Net::new(Ipv6Addr::from(a), bits)
                        .map_err(|_| ())?
                        .trunc(),
                )
            }
        };
        out.push(net);
    }
    Ok(())
}

/// RFC 4271 §4.3 AS_PATH / RFC 6793 AS4_PATH: `None` if malformed (RFC 7606 §7.2: bad
/// segment type, zero-length segment, overrun).
fn parse_as_path(mut v: &[u8], asn_len: usize) -> Option<Vec<AsSegment>> {
    let mut segs = Vec::new();
    while !v.is_empty() {
        let (&kind, rest) = v.split_first()?;
        let (&count, rest) = rest.split_first()?;
        if !(1..=4).contains(&kind) || count == 0 {
            return None;
        }
        let len = count as usize * asn_len;
        let body = rest.get(..len)?;
        let asns = body
            .chunks_exact(asn_len)
            .map(|c| c.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32))
            .collect();
        segs.push(AsSegment { kind, asns });
        v = &rest[len..];
    }
    Some(segs)
}

fn be32(v: &[u8]) -> u32 {
    v.iter().take(4).fold(0u32, |acc, b| (acc << 8) | *b as u32)
}

/// The category an attribute type belongs to, for the flag check of RFC 7606 §3 (c):
/// `Some((optional, transitive))` for the types vipr knows.
fn expected_flags(code: u8) -> Option<(bool, bool)> {
    match code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => Some((false, true)),
        MED | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH | MP_UNREACH => Some((true, false)),
        AGGREGATOR | COMMUNITIES | EXT_COMMUNITIES | AS4_PATH | AS4_AGGREGATOR
        | LARGE_COMMUNITY => Some((true, true)),
        _ => None,
    }
}

/// What RFC 7606 makes of one path attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Understood (or an unrecognized optional attribute, ignored).
    Keep,
    /// Attribute discard (RFC 7606 §2): the attribute is dropped, the route stands.
    Discard,
    /// Treat-as-withdraw (RFC 7606 §2) for this reason.
    Withdraw(&'static str),
    /// Session reset with this NOTIFICATION (RFC 4271 §6.3, RFC 7606 §2).
    Reset(Notification),
}

/// One path attribute as framed in the attribute list.
struct Attr<'a> {
    flags: u8,
    code: u8,
    /// The value.
    value: &'a [u8],
    /// Header and value, for the data of a NOTIFICATION.
    whole: &'a [u8],
}

impl Attr<'_> {
    fn reset(&self, subcode: u8) -> Verdict {
        Verdict::Reset(Notification::with_data(
            n::code::UPDATE,
            subcode,
            self.whole,
        ))
    }
}

/// The next attribute of the list and the rest, `Ok(None)` at the end. `Err`: too few
/// octets for a header, or a length overrunning the list (RFC 7606 §4: treat-as-withdraw,
/// the NLRI located by the Total Attribute Length).
fn next_attr(a: &[u8]) -> Result<Option<(Attr<'_>, &[u8])>, &'static str> {
    if a.is_empty() {
        return Ok(None);
    }
    let hdr = if a[0] & FLAG_EXTENDED != 0 { 4 } else { 3 };
    if a.len() < hdr {
        return Err("attribute header truncated");
    }
    let len = if hdr == 4 {
        u16::from_be_bytes([a[2], a[3]]) as usize
    } else {
        a[2] as usize
    };
    let value = a
        .get(hdr..hdr + len)
        .ok_or("attribute length overruns the attribute list")?;
    let attr = Attr {
        flags: a[0],
        code: a[1],
        value,
        whole: &a[..hdr + len],
    };
    Ok(Some((attr, &a[hdr + len..])))
}

/// RFC 4271 §6.3 and RFC 7606 §3 (c): the flags against the attribute's category.
fn check_flags(attr: &Attr<'_>) -> Verdict {
    let optional = attr.flags & FLAG_OPTIONAL != 0;
    let transitive = attr.flags & FLAG_TRANSITIVE != 0;
    match expected_flags(attr.code) {
        // An unrecognized well-known attribute resets the session; unrecognized optional
        // attributes are ignored (vipr never propagates them).
        None if !optional => attr.reset(n::update::UNRECOGNIZED_WELL_KNOWN),
        None => Verdict::Discard,
        // Conflicting flags make the attribute malformed. For the MP attributes the NLRI
        // cannot be trusted: session reset (§7.11).
        Some((o, t)) if o != optional || t != transitive => {
            if attr.code == MP_REACH || attr.code == MP_UNREACH {
                attr.reset(n::update::ATTR_FLAGS)
            } else {
                Verdict::Withdraw("attribute flags conflict with the attribute type")
            }
        }
        Some(_) => Verdict::Keep,
    }
}

/// Where the decoders put what they find.
struct Decoded {
    update: ReceivedUpdate,
    /// Prefixes announced (NLRI field and MP_REACH_NLRI).
    announced: Vec<IpNet>,
    mp_reach_seen: bool,
    mp_unreach_count: usize,
    /// The family of an MP_UNREACH_NLRI without prefixes (End-of-RIB, RFC 4724 §2).
    empty_unreach: Option<Family>,
}

/// RFC 7606 §7.1
fn origin(v: &[u8], d: &mut Decoded) -> Verdict {
    match v {
        [o] if *o <= 2 => {
            d.update.attrs.origin = Some(*o);
            Verdict::Keep
        }
        _ => Verdict::Withdraw("malformed ORIGIN"),
    }
}

/// RFC 7606 §7.2
fn as_path(v: &[u8], asn_len: usize, d: &mut Decoded) -> Verdict {
    match parse_as_path(v, asn_len) {
        Some(p) => {
            d.update.attrs.as_path = Some(p);
            Verdict::Keep
        }
        None => Verdict::Withdraw("malformed AS_PATH"),
    }
}

/// RFC 7606 §7.3
fn next_hop(v: &[u8], d: &mut Decoded) -> Verdict {
    match v {
        [a, b, c, e] => {
            d.update.attrs.next_hop = Some(Ipv4Addr::new(*a, *b, *c, *e));
            Verdict::Keep
        }
        _ => Verdict::Withdraw("malformed NEXT_HOP"),
    }
}

/// RFC 7606 §7.4
fn med(v: &[u8], d: &mut Decoded) -> Verdict {
    if v.len() != 4 {
        return Verdict::Withdraw("malformed MULTI_EXIT_DISC");
    }
    d.update.attrs.med = Some(be32(v));
    Verdict::Keep
}

/// RFC 7606 §7.5: from an external peer it is discarded.
fn local_pref(v: &[u8], ibgp: bool, d: &mut Decoded) -> Verdict {
    if !ibgp {
        return Verdict::Discard;
    }
    if v.len() != 4 {
        return Verdict::Withdraw("malformed LOCAL_PREF");
    }
    d.update.attrs.local_pref = Some(be32(v));
    Verdict::Keep
}

/// RFC 6793 §6: a malformed AS4_PATH is discarded.
fn as4_path(v: &[u8], d: &mut Decoded) -> Verdict {
    match parse_as_path(v, 4) {
        Some(p) => {
            d.update.attrs.as4_path = Some(p);
            Verdict::Keep
        }
        None => Verdict::Discard,
    }
}

/// RFC 7606 §7.8
fn communities(v: &[u8], d: &mut Decoded) -> Verdict {
    if v.is_empty() || !v.len().is_multiple_of(4) {
        return Verdict::Withdraw("malformed COMMUNITIES");
    }
    d.update.attrs.communities = v.chunks_exact(4).map(|c| Community(be32(c))).collect();
    Verdict::Keep
}

/// RFC 8092 §6
fn large_communities(v: &[u8], d: &mut Decoded) -> Verdict {
    if v.is_empty() || !v.len().is_multiple_of(12) {
        return Verdict::Withdraw("malformed LARGE_COMMUNITY");
    }
    d.update.attrs.large_communities = v
        .chunks_exact(12)
        .map(|c| LargeCommunity {
            global: be32(&c[0..4]),
            local1: be32(&c[4..8]),
            local2: be32(&c[8..12]),
        })
        .collect();
    Verdict::Keep
}

/// RFC 4760 §3, RFC 7606 §7.11: a malformed MP_REACH_NLRI resets the session; another
/// family than vipr's is counted and ignored.
fn mp_reach(attr: &Attr<'_>, d: &mut Decoded) -> Verdict {
    let v = attr.value;
    d.mp_reach_seen = true;
    let optional_error =
        || Verdict::Reset(Notification::new(n::code::UPDATE, n::update::OPTIONAL_ATTR));
    if v.len() < 5 {
        return attr.reset(n::update::OPTIONAL_ATTR);
    }
    let afi = u16::from_be_bytes([v[0], v[1]]);
    let nh_len = v[3] as usize;
    let (Some(nh), Some(nlri)) = (v.get(4..4 + nh_len), v.get(5 + nh_len..)) else {
        return optional_error();
    };
    let Some(family) = Family::from_afi_safi(afi, v[2]) else {
        d.update.other_families += 1;
        return Verdict::Keep;
    };
    d.update.attrs.mp_next_hop = Some(match (family, nh_len) {
        (Family::Ipv4Unicast, 4) => IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3])),
        (_, 16) | (_, 32) => {
            let mut g = [0u8; 16];
            g.copy_from_slice(&nh[..16]);
            IpAddr::V6(Ipv6Addr::from(g))
        }
        _ => return attr.reset(n::update::OPTIONAL_ATTR),
    });
    match parse_prefixes(nlri, family, &mut d.announced) {
        Ok(()) => Verdict::Keep,
        Err(()) => optional_error(),
    }
}

/// RFC 4760 §4, RFC 7606 §7.11; an empty one is the family's End-of-RIB (RFC 4724 §2).
fn mp_unreach(attr: &Attr<'_>, d: &mut Decoded) -> Verdict {
    let v = attr.value;
    d.mp_unreach_count += 1;
    if v.len() < 3 {
        return attr.reset(n::update::OPTIONAL_ATTR);
    }
    let afi = u16::from_be_bytes([v[0], v[1]]);
    let Some(family) = Family::from_afi_safi(afi, v[2]) else {
        d.update.other_families += 1;
        return Verdict::Keep;
    };
    let before = d.update.withdrawn.len();
    if parse_prefixes(&v[3..], family, &mut d.update.withdrawn).is_err() {
        return Verdict::Reset(Notification::new(n::code::UPDATE, n::update::OPTIONAL_ATTR));
    }
    if d.update.withdrawn.len() == before {
        d.empty_unreach = Some(family);
    }
    Verdict::Keep
}

/// Decodes one attribute whose flags passed, returning its RFC 7606 verdict.
fn decode_attr(attr: &Attr<'_>, ctx: &DecodeCtx, d: &mut Decoded) -> Verdict {
    let v = attr.value;
    let asn_len = if ctx.four_octet_as { 4 } else { 2 };
    match attr.code {
        ORIGIN => origin(v, d),
        AS_PATH => as_path(v, asn_len, d),
        NEXT_HOP => next_hop(v, d),
        MED => med(v, d),
        LOCAL_PREF => local_pref(v, ctx.ibgp, d),
        // RFC 7606 §7.6, §7.7, RFC 6793 §6: attribute discard.
        ATOMIC_AGGREGATE if !v.is_empty() => Verdict::Discard,
        AGGREGATOR if v.len() != 2 + asn_len => Verdict::Discard,
        AS4_AGGREGATOR if v.len() != 8 => Verdict::Discard,
        AS4_PATH => as4_path(v, d),
        COMMUNITIES => communities(v, d),
        LARGE_COMMUNITY => large_communities(v, d),
        // RFC 7606 §7.9, §7.10, §7.14
        ORIGINATOR_ID if v.len() != 4 => Verdict::Withdraw("malformed ORIGINATOR_ID"),
        CLUSTER_LIST if v.is_empty() || !v.len().is_multiple_of(4) => {
            Verdict::Withdraw("malformed CLUSTER_LIST")
        }
        EXT_COMMUNITIES if v.is_empty() || !v.len().is_multiple_of(8) => {
            Verdict::Withdraw("malformed EXTENDED_COMMUNITIES")
        }
        MP_REACH => mp_reach(attr, d),
        MP_UNREACH => mp_unreach(attr, d),
        _ => Verdict::Keep,
    }
}

/// Parses an UPDATE body (after the 19-octet header). `Err` is the NOTIFICATION that resets
/// the session; everything RFC 7606 allows to survive comes back as `Ok`.
pub fn parse_update(body: &[u8], ctx: &DecodeCtx) -> Result<ReceivedUpdate, Notification> {
    let malformed_list = || Notification::new(n::code::UPDATE, n::update::MALFORMED_ATTR_LIST);
    let invalid_network = || Notification::new(n::code::UPDATE, n::update::INVALID_NETWORK);

    // RFC 4271 §6.3: Withdrawn Routes Length + Total Attribute Length + 23 must not exceed
    // the message length, else Malformed Attribute List (RFC 7606 §5.1: session reset).
    if body.len() < 4 {
        return Err(malformed_list());
    }
    let wlen = u16::from_be_bytes([body[0], body[1]]) as usize;
    let withdrawn_field = body.get(2..2 + wlen).ok_or_else(malformed_list)?;
    let rest = &body[2 + wlen..];
    let alen = rest
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or_else(malformed_list)?;
    let attrs_field = rest.get(2..2 + alen).ok_or_else(malformed_list)?;
    let nlri_field = &rest[2 + alen..];

    let mut d = Decoded {
        update: ReceivedUpdate::default(),
        announced: Vec::new(),
        mp_reach_seen: false,
        mp_unreach_count: 0,
        empty_unreach: None,
    };
    // RFC 7606 §5.3: a syntactically incorrect NLRI field cannot be treated as withdraw.
    parse_prefixes(
        withdrawn_field,
        Family::Ipv4Unicast,
        &mut d.update.withdrawn,
    )
    .map_err(|_| invalid_network())?;
    parse_prefixes(nlri_field, Family::Ipv4Unicast, &mut d.announced)
        .map_err(|_| invalid_network())?;

    let mut seen = [false; 256];
    let mut withdraw_reason: Option<&'static str> = None;
    let mut list = attrs_field;
    loop {
        let (attr, rest) = match next_attr(list) {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(reason) => {
                withdraw_reason.get_or_insert(reason);
                break;
            }
        };
        list = rest;
        // RFC 7606 §3 (g): MP_REACH/MP_UNREACH twice is a session reset; any other
        // duplicate is discarded after the first.
        if seen[attr.code as usize] {
            if attr.code == MP_REACH || attr.code == MP_UNREACH {
                return Err(malformed_list());
            }
            d.update.discarded.push(attr.code);
            continue;
        }
        seen[attr.code as usize] = true;
        let verdict = match check_flags(&attr) {
            Verdict::Keep => decode_attr(&attr, ctx, &mut d),
            Verdict::Discard => Verdict::Keep, // unrecognized optional: ignored, not counted
            v => v,
        };
        match verdict {
            Verdict::Keep => {}
            Verdict::Discard => d.update.discarded.push(attr.code),
            Verdict::Withdraw(reason) => {
                withdraw_reason.get_or_insert(reason);
            }
            Verdict::Reset(notif) => return Err(notif),
        }
    }

    // RFC 4271 §6.3 / RFC 7606 §3 (d): missing well-known mandatory attributes with NLRI
    // present: treat-as-withdraw.
    let a = &d.update.attrs;
    if !d.announced.is_empty() && withdraw_reason.is_none() {
        let v4_classic = !nlri_field.is_empty();
        if a.origin.is_none() || a.as_path.is_none() || (v4_classic && a.next_hop.is_none()) {
            withdraw_reason = Some("missing well-known mandatory attribute");
        }
    }

    // RFC 4724 §2: End-of-RIB.
    let mut u = d.update;
    if body.len() == 4 {
        u.end_of_rib = Some(Family::Ipv4Unicast);
    } else if wlen == 0 && nlri_field.is_empty() && !d.mp_reach_seen && d.mp_unreach_count == 1 {
        let only_attr = seen.iter().filter(|s| **s).count() == 1;
        if only_attr {
            u.end_of_rib = d.empty_unreach;
        }
    }

    if let Some(reason) = withdraw_reason {
        u.treat_as_withdraw = Some(reason);
        u.withdrawn.extend(d.announced);
    } else {
        u.announced = d.announced;
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EBGP2: DecodeCtx = DecodeCtx {
        four_octet_as: false,
        ibgp: false,
    };
    const EBGP4: DecodeCtx = DecodeCtx {
        four_octet_as: true,
        ibgp: false,
    };

    /// Body of an UPDATE with the given attribute bytes and IPv4 NLRI bytes.
    fn body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
        b.extend_from_slice(withdrawn);
        b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(attrs);
        b.extend_from_slice(nlri);
        b
    }

    const GOOD_ATTRS: &[u8] = &[
        0x40, 1, 1, 0, // ORIGIN IGP
        0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9, // AS_PATH AS_SEQUENCE [65001]
        0x40, 3, 4, 192, 0, 2, 1, // NEXT_HOP
    ];
    const NLRI: &[u8] = &[32, 203, 0, 113, 10];

    #[test]
    fn good_update_decodes() {
        let u = parse_update(&body(&[], GOOD_ATTRS, NLRI), &EBGP4).unwrap();
        assert_eq!(
            u.announced,
            vec!["203.0.113.10/32".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            u.attrs.as_path,
            Some(vec![AsSegment {
                kind: 2,
                asns: vec![65001]
            }])
        );
        assert_eq!(u.attrs.next_hop, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(u.treat_as_withdraw, None);
    }

    #[test]
    fn end_of_rib_markers() {
        assert_eq!(
            parse_update(&[0, 0, 0, 0], &EBGP4).unwrap().end_of_rib,
            Some(Family::Ipv4Unicast)
        );
        let v6 = body(&[], &[0x80, 15, 3, 0, 2, 1], &[]);
        assert_eq!(
            parse_update(&v6, &EBGP4).unwrap().end_of_rib,
            Some(Family::Ipv6Unicast)
        );
    }

    #[test]
    fn lengths_beyond_the_message_reset_with_malformed_attribute_list() {
        let mut b = body(&[], GOOD_ATTRS, NLRI);
        b[3] = 200; // total attribute length beyond the message
        assert_eq!(
            parse_update(&b, &EBGP4).unwrap_err(),
            Notification::new(3, 1)
        );
        assert_eq!(
            parse_update(&[0, 9, 0, 0], &EBGP4).unwrap_err(),
            Notification::new(3, 1)
        );
        assert_eq!(
            parse_update(&[0, 0], &EBGP4).unwrap_err(),
            Notification::new(3, 1)
        );
    }

    #[test]
    fn nlri_length_above_32_is_invalid_network_field() {
        let b = body(&[], GOOD_ATTRS, &[33, 203, 0, 113, 10, 0]);
        assert_eq!(
            parse_update(&b, &EBGP4).unwrap_err(),
            Notification::new(3, 10)
        );
        let b = body(&[24, 1], &[], &[]); // truncated withdrawn prefix
        assert_eq!(
            parse_update(&b, &EBGP4).unwrap_err(),
            Notification::new(3, 10)
        );
    }

    #[test]
    fn attribute_overrun_is_treat_as_withdraw() {
        let mut attrs = GOOD_ATTRS.to_vec();
        attrs.extend_from_slice(&[0xc0, 8, 8, 0, 0]); // COMMUNITIES claims 8, has 2
        let u = parse_update(&body(&[], &attrs, NLRI), &EBGP4).unwrap();
        assert!(u.treat_as_withdraw.is_some());
        assert!(u.announced.is_empty());
        assert_eq!(u.withdrawn.len(), 1);
    }

    #[test]
    fn bad_as_path_segment_and_bad_next_hop_are_treat_as_withdraw() {
        let mut attrs = GOOD_ATTRS.to_vec();
        attrs[7] = 7; // segment type 7
        let u = parse_update(&body(&[], &attrs, NLRI), &EBGP4).unwrap();
        assert_eq!(u.treat_as_withdraw, Some("malformed AS_PATH"));
        let attrs = [&GOOD_ATTRS[..13], &[0x40, 3, 3, 192, 0, 2][..]].concat();
        let u = parse_update(&body(&[], &attrs, NLRI), &EBGP4).unwrap();
        assert_eq!(u.treat_as_withdraw, Some("malformed NEXT_HOP"));
    }

    #[test]
    fn two_octet_as_path_parses_with_two_octet_context() {
        let attrs = [
            0x40, 1, 1, 0, 0x40, 2, 4, 2, 1, 0xfd, 0xe9, 0x40, 3, 4, 192, 0, 2, 1,
        ];
        let u = parse_update(&body(&[], &attrs, NLRI), &EBGP2).unwrap();
        assert_eq!(
            u.attrs.as_path,
            Some(vec![AsSegment {
                kind: 2,
                asns: vec![65001]
            }])
        );
        // The same bytes in a 4-octet session are malformed (odd length).
        let u = parse_update(&body(&[], &attrs, NLRI), &EBGP4).unwrap();
        assert!(u.treat_as_withdraw.is_some());
    }

    #[test]
    fn duplicates_are_discarded_but_duplicate_mp_reach_resets() {
        let mut attrs = GOOD_ATTRS.to_vec();
        attrs.extend_from_slice(&[0x40, 1, 1, 2]); // second ORIGIN
        let u = parse_update(&body(&[], &attrs, NLRI), &EBGP4).unwrap();
        assert_eq!(u.discarded, vec![1]);
        assert_eq!(u.attrs.origin, Some(0));
        assert!(u.treat_as_withdraw.is_none());
        let unreach = [0x80, 15, 3, 0, 2, 1];
        let attrs = [&unreach[..], &unreach[..]].concat();
        assert_eq!(
            parse_update(&body(&[], &attrs, &[]), &EBGP4).unwrap_err(),
            Notification::new(3, 1)
        );
    }

    #[test]
    fn flag_errors() {
        let mut attrs = GOOD_ATTRS.to_vec();
        attrs[0] = 0xc0; // ORIGIN marked optional
        let u = parse_update(&body(&[], &attrs, NLRI), &EBGP4).unwrap();
        assert!(u.treat_as_withdraw.is_some());
        let b = body(&[], &[0x40, 15, 3, 0, 2, 1], &[]); // MP_UNREACH as well-known
        assert_eq!(parse_update(&b, &EBGP4).unwrap_err().subcode, 4);
    }

    #[test]
    fn unrecognized_well_known_resets_optional_is_ignored() {
        let attrs = [GOOD_ATTRS, &[0x40, 99, 1, 0][..]].concat();
        let e = parse_update(&body(&[], &attrs, NLRI), &EBGP4).unwrap_err();
        assert_eq!(
            (e.code, e.subcode, e.data.clone()),
            (3, 2, vec![0x40, 99, 1, 0])
        );
        let attrs = [GOOD_ATTRS, &[0xc0, 99, 1, 0][..]].concat();
        assert!(parse_update(&body(&[], &attrs, NLRI), &EBGP4)
            .unwrap()
            .treat_as_withdraw
            .is_none());
    }

    #[test]
    fn missing_mandatory_is_treat_as_withdraw() {
        let u = parse_update(&body(&[], &GOOD_ATTRS[..13], NLRI), &EBGP4).unwrap();
        assert_eq!(
            u.treat_as_withdraw,
            Some("missing well-known mandatory attribute")
        );
    }

    #[test]
    fn local_pref_from_ebgp_is_discarded() {
        let attrs = [GOOD_ATTRS, &[0x40, 5, 4, 0, 0, 0, 100][..]].concat();
        let u = parse_update(&body(&[], &attrs, NLRI), &EBGP4).unwrap();
        assert_eq!(u.discarded, vec![5]);
        assert_eq!(u.attrs.local_pref, None);
    }

    #[test]
    fn malformed_mp_reach_resets_with_optional_attribute_error() {
        // AFI 2 SAFI 1, next hop length 15.
        let mut mp = vec![0x80, 14, 0, 0, 2, 1, 15];
        mp.extend_from_slice(&[0u8; 15]);
        mp.push(0);
        mp[2] = (mp.len() - 3) as u8;
        let attrs = [&GOOD_ATTRS[..13], &mp[..]].concat();
        assert_eq!(
            parse_update(&body(&[], &attrs, &[]), &EBGP4)
                .unwrap_err()
                .subcode,
            9
        );
    }
}
