//! Encoding the UPDATEs vipr sends (RFC 4271 §4.3, RFC 4760, RFC 6793, RFC 8950): path
//! attributes for one session, and packing of as many prefixes per message as the
//! negotiated size allows (4096, or 65535 with RFC 8654). Withdrawals are packed the same
//! way; End-of-RIB markers per RFC 4724 §2. Messages are built with netgauze.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use ipnet::IpNet;
use netgauze_bgp_pkt::community as ngcom;
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute as pa;
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::BgpMessage;

use super::{encode_message, HEADER_LEN};
use crate::codec::open::AS_TRANS;
use crate::types::{Family, RouteAttrs};

/// Everything about one session that shapes the attributes it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeCtx {
    /// iBGP: empty AS_PATH, LOCAL_PREF sent. eBGP: AS_SEQUENCE [local AS], no LOCAL_PREF.
    pub ibgp: bool,
    /// Our AS on this session.
    pub local_as: u32,
    /// RFC 6793 negotiated; otherwise 2-octet AS_PATH with AS_TRANS plus AS4_PATH.
    pub four_octet_as: bool,
    /// Largest UPDATE in octets.
    pub max_len: usize,
    /// Next hop for IPv4 routes without their own: an IPv4 address (NEXT_HOP attribute) or,
    /// with RFC 8950 negotiated, an IPv6 address (MP_REACH_NLRI).
    pub next_hop_v4: Option<IpAddr>,
    /// Next hop for IPv6 routes without their own.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// RFC 8950 extended next hop negotiated for IPv4 unicast.
    pub ipv4_over_ipv6_next_hop: bool,
    /// Our link-local address on the session's link (a session over link-local addresses,
    /// BGP unnumbered): sent with every IPv6 next hop, after a global one (32 octets,
    /// RFC 2545 §3, RFC 8950 §3), or alone (16 octets) when it is the next hop itself.
    pub next_hop_link_local: Option<Ipv6Addr>,
    /// LOCAL_PREF for iBGP routes that do not set one.
    pub default_local_pref: u32,
}

/// Why a route cannot be sent on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// No next hop of a usable family (e.g. an IPv6 route over an IPv4 session without a
    /// configured IPv6 next hop).
    #[error("no usable next hop for this family on this session")]
    NoNextHop,
    /// Multicast or broadcast prefixes are not unicast routes.
    #[error("not a unicast prefix")]
    NotUnicast,
}

/// RFC 4271 §4.3: a prefix takes one length octet plus the significant octets.
fn nlri_len(p: &IpNet) -> usize {
    1 + (p.prefix_len() as usize).div_ceil(8)
}

/// Builds a path attribute with the flags its type requires; extended length only when the
/// value needs it.
fn attr(value: pa::PathAttributeValue, value_len: usize) -> pa::PathAttribute {
    let optional = value.can_be_optional().unwrap_or(true);
    let transitive = value.can_be_transitive().unwrap_or(true);
    match pa::PathAttribute::from(optional, transitive, false, value_len > 255, value) {
        Ok(a) => a,
        // The flags come from the value itself, so this cannot disagree.
        Err((v, _)) => pa::PathAttribute::from(optional, transitive, false, true, v)
            .unwrap_or_else(|(v, _)| {
                pa::PathAttribute::from(true, true, false, true, v)
                    .expect("optional transitive is always accepted")
            }),
    }
}

/// Where the route's next hop goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// IPv4 NLRI field with the NEXT_HOP attribute.
    Classic(Ipv4Addr),
    /// MP_REACH_NLRI with an IPv6 next hop: 16 octets, or 32 with a link-local address
    /// after the global one (RFC 2545 §3).
    Mp(Ipv6Addr, Option<Ipv6Addr>),
}

impl EncodeCtx {
    /// The next hop for a route of `family` with `attrs`, or why there is none.
    pub fn next_hop(&self, family: Family, attrs: &RouteAttrs) -> Result<NextHop, EncodeError> {
        let nh = match family {
            Family::Ipv4Unicast => attrs.next_hop.or(self.next_hop_v4),
            Family::Ipv6Unicast => attrs.next_hop.or(self.next_hop_v6.map(IpAddr::V6)),
        };
        let mp = |a: Ipv6Addr| {
            let ll = self
                .next_hop_link_local
                .filter(|ll| *ll != a && !a.is_unicast_link_local());
            NextHop::Mp(a, ll)
        };
        match (family, nh) {
            (Family::Ipv4Unicast, Some(IpAddr::V4(a))) => Ok(NextHop::Classic(a)),
            (Family::Ipv4Unicast, Some(IpAddr::V6(a))) if self.ipv4_over_ipv6_next_hop => Ok(mp(a)),
            (Family::Ipv6Unicast, Some(IpAddr::V6(a))) => Ok(mp(a)),
            _ => Err(EncodeError::NoNextHop),
        }
    }

    /// ORIGIN, AS_PATH (+AS4_PATH), NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES: the attributes
    /// before MP_REACH_NLRI, plus LARGE_COMMUNITY after it, with their encoded lengths.
    fn attributes(
        &self,
        attrs: &RouteAttrs,
        nh: NextHop,
    ) -> (Vec<pa::PathAttribute>, Vec<pa::PathAttribute>, usize) {
        let mut head = Vec::with_capacity(8);
        let mut tail = Vec::with_capacity(2);
        let mut len = 0usize;
        let mut push = |v: &mut Vec<pa::PathAttribute>, value, vlen: usize| {
            len += vlen + if vlen > 255 { 4 } else { 3 };
            v.push(attr(value, vlen));
        };
        push(
            &mut head,
            pa::PathAttributeValue::Origin(pa::Origin::IGP),
            1,
        );
        // RFC 4271 §5.1.2: iBGP sends an empty AS_PATH, eBGP prepends the local AS as an
        // AS_SEQUENCE (segment type 2), `1 + as_path_prepend` times.
        // An AS_SEQUENCE holds at most 255 ASes (a one-octet count).
        let copies = 1 + usize::from(attrs.as_path_prepend.min(254));
        let needs_as4_path = !self.ibgp && !self.four_octet_as && self.local_as > u16::MAX as u32;
        let as_path = if self.ibgp {
            if self.four_octet_as {
                pa::AsPath::As4PathSegments(Box::new([]))
            } else {
                pa::AsPath::As2PathSegments(Box::new([]))
            }
        } else if self.four_octet_as {
            pa::AsPath::As4PathSegments(Box::new([pa::As4PathSegment::new(
                pa::AsPathSegmentType::AsSequence,
                vec![self.local_as; copies],
            )]))
        } else {
            // RFC 6793 §4.2.2: a 2-octet speaker sees AS_TRANS, the real AS rides in AS4_PATH.
            let as2 = u16::try_from(self.local_as).unwrap_or(AS_TRANS);
            pa::AsPath::As2PathSegments(Box::new([pa::As2PathSegment::new(
                pa::AsPathSegmentType::AsSequence,
                vec![as2; copies],
            )]))
        };
        let as_path_len = if self.ibgp {
            0
        } else if self.four_octet_as {
            2 + 4 * copies
        } else {
            2 + 2 * copies
        };
        push(
            &mut head,
            pa::PathAttributeValue::AsPath(as_path),
            as_path_len,
        );
        if let NextHop::Classic(a) = nh {
            push(
                &mut head,
                pa::PathAttributeValue::NextHop(pa::NextHop::new(a)),
                4,
            );
        }
        if let Some(med) = attrs.med {
            push(
                &mut head,
                pa::PathAttributeValue::MultiExitDiscriminator(pa::MultiExitDiscriminator::new(
                    med,
                )),
                4,
            );
        }
        if self.ibgp {
            let lp = attrs.local_pref.unwrap_or(self.default_local_pref);
            push(
                &mut head,
                pa::PathAttributeValue::LocalPreference(pa::LocalPreference::new(lp)),
                4,
            );
        }
        if !attrs.communities.is_empty() {
            let c: Vec<ngcom::Community> = attrs
                .communities
                .iter()
                .map(|c| ngcom::Community::new(c.0))
                .collect();
            push(
                &mut head,
                pa::PathAttributeValue::Communities(pa::Communities::new(c)),
                4 * attrs.communities.len(),
            );
        }
        if needs_as4_path {
            let seg = pa::As4PathSegment::new(
                pa::AsPathSegmentType::AsSequence,
                vec![self.local_as; copies],
            );
            push(
                &mut tail,
                pa::PathAttributeValue::As4Path(pa::As4Path::new(vec![seg])),
                2 + 4 * copies,
            );
        }
        if !attrs.large_communities.is_empty() {
            let c: Vec<ngcom::LargeCommunity> = attrs
                .large_communities
                .iter()
                .map(|c| ngcom::LargeCommunity::new(c.global, c.local1, c.local2))
                .collect();
            push(
                &mut tail,
                pa::PathAttributeValue::LargeCommunities(pa::LargeCommunities::new(c)),
                12 * attrs.large_communities.len(),
            );
        }
        (head, tail, len)
    }

    /// Encodes announcements of `prefixes` (all of `family`, all with `attrs`) into as few
    /// UPDATEs as fit `max_len`. Non-unicast prefixes are skipped and counted in the result.
    pub fn announce(
        &self,
        family: Family,
        attrs: &RouteAttrs,
        prefixes: &[IpNet],
    ) -> Result<(Vec<Bytes>, usize), EncodeError> {
        let nh = self.next_hop(family, attrs)?;
        let (head, tail, attrs_len) = self.attributes(attrs, nh);
        let (ok, skipped) = unicast_only(prefixes);
        let mut out = Vec::new();
        match nh {
            NextHop::Classic(_) => {
                // header + withdrawn length + attribute length + attributes, then NLRI.
                let base = HEADER_LEN + 2 + 2 + attrs_len;
                for chunk in pack(&ok, base, self.max_len) {
                    let nlri: Vec<Ipv4UnicastAddress> = chunk.iter().filter_map(v4_addr).collect();
                    let mut all = head.clone();
                    all.extend(tail.iter().cloned());
                    out.push(encode_message(&BgpMessage::Update(BgpUpdateMessage::new(
                        vec![],
                        all,
                        nlri,
                    ))));
                }
            }
            NextHop::Mp(gnh, lnh) => {
                // MP_REACH_NLRI: AFI, SAFI, next hop length, next hop, reserved (RFC 4760 §3),
                // with a 4-octet attribute header to be safe while packing.
                let nh_len = if lnh.is_some() { 32 } else { 16 };
                let base = HEADER_LEN + 2 + 2 + attrs_len + 4 + 2 + 1 + 1 + nh_len + 1;
                for chunk in pack(&ok, base, self.max_len) {
                    let value_len = 5 + nh_len + chunk.iter().map(nlri_len).sum::<usize>();
                    let reach = match family {
                        Family::Ipv4Unicast => pa::MpReach::Ipv4Unicast {
                            next_hop: IpAddr::V6(gnh),
                            next_hop_local: lnh,
                            nlri: chunk.iter().filter_map(v4_addr).collect(),
                        },
                        Family::Ipv6Unicast => pa::MpReach::Ipv6Unicast {
                            next_hop_global: gnh,
                            next_hop_local: lnh,
                            nlri: chunk.iter().filter_map(v6_addr).collect(),
                        },
                    };
                    let mut all = head.clone();
                    all.push(attr(pa::PathAttributeValue::MpReach(reach), value_len));
                    all.extend(tail.iter().cloned());
                    out.push(encode_message(&BgpMessage::Update(BgpUpdateMessage::new(
                        vec![],
                        all,
                        vec![],
                    ))));
                }
            }
        }
        Ok((out, skipped))
    }

    /// Encodes withdrawals of `prefixes` (all of `family`): IPv4 in the Withdrawn Routes
    /// field, IPv6 in MP_UNREACH_NLRI.
    pub fn withdraw(&self, family: Family, prefixes: &[IpNet]) -> Vec<Bytes> {
        let (ok, _) = unicast_only(prefixes);
        let mut out = Vec::new();
        match family {
            // IPv4 routes announced in MP_REACH (RFC 8950) are withdrawn in the classic field
            // too: the route is identified by its NLRI, and every peer understands it.
            Family::Ipv4Unicast => {
                for chunk in pack(&ok, HEADER_LEN + 4, self.max_len) {
                    let w: Vec<Ipv4UnicastAddress> = chunk.iter().filter_map(v4_addr).collect();
                    out.push(encode_message(&BgpMessage::Update(BgpUpdateMessage::new(
                        w,
                        vec![],
                        vec![],
                    ))));
                }
            }
            Family::Ipv6Unicast => {
                for chunk in pack(&ok, HEADER_LEN + 4 + 4 + 3, self.max_len) {
                    let value_len = 3 + chunk.iter().map(nlri_len).sum::<usize>();
                    out.push(mp_unreach(family, chunk, value_len));
                }
            }
        }
        out
    }
}

fn mp_unreach(family: Family, chunk: &[IpNet], value_len: usize) -> Bytes {
    let unreach = match family {
        Family::Ipv4Unicast => pa::MpUnreach::Ipv4Unicast {
            nlri: chunk.iter().filter_map(v4_addr).collect(),
        },
        Family::Ipv6Unicast => pa::MpUnreach::Ipv6Unicast {
            nlri: chunk.iter().filter_map(v6_addr).collect(),
        },
    };
    let a = attr(pa::PathAttributeValue::MpUnreach(unreach), value_len);
    encode_message(&BgpMessage::Update(BgpUpdateMessage::new(
        vec![],
        vec![a],
        vec![],
    )))
}

/// End-of-RIB (RFC 4724 §2): an empty UPDATE for IPv4 unicast, an empty MP_UNREACH_NLRI for
/// other families.
pub fn end_of_rib(family: Family) -> Bytes {
    match family {
        Family::Ipv4Unicast => encode_message(&BgpMessage::Update(BgpUpdateMessage::new(
            vec![],
            vec![],
            vec![],
        ))),
        Family::Ipv6Unicast => mp_unreach(family, &[], 3),
    }
}

fn unicast_only(prefixes: &[IpNet]) -> (Vec<IpNet>, usize) {
    let ok: Vec<IpNet> = prefixes
        .iter()
        .copied()
        .filter(|p| match p {
            IpNet::V4(n) => Ipv4Unicast::from_net(*n).is_ok(),
            IpNet::V6(n) => Ipv6Unicast::from_net(*n).is_ok(),
        })
        .collect();
    let skipped = prefixes.len() - ok.len();
    (ok, skipped)
}

fn v4_addr(p: &IpNet) -> Option<Ipv4UnicastAddress> {
    match p {
        IpNet::V4(n) => Ipv4Unicast::from_net(*n)
            .ok()
            .map(Ipv4UnicastAddress::new_no_path_id),
        IpNet::V6(_) => None,
    }
}

fn v6_addr(p: &IpNet) -> Option<Ipv6UnicastAddress> {
    match p {
        IpNet::V6(n) => Ipv6Unicast::from_net(*n)
            .ok()
            .map(|u| Ipv6UnicastAddress::new(None, u)),
        IpNet::V4(_) => None,
    }
}

/// Splits prefixes into chunks whose encoded NLRI fits `max_len - base`.
fn pack(prefixes: &[IpNet], base: usize, max_len: usize) -> Vec<&[IpNet]> {
    let room = max_len.saturating_sub(base);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, p) in prefixes.iter().enumerate() {
        let l = nlri_len(p);
        if used + l > room && i > start {
            chunks.push(&prefixes[start..i]);
            start = i;
            used = 0;
        }
        used += l;
    }
    if start < prefixes.len() {
        chunks.push(&prefixes[start..]);
    }
    chunks
}
