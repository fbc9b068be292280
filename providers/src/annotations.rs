//! kube-vip's node annotations (`annotation` setting): owns the parser of a Node's
//! annotations into a [`Discovery`], and [`AnnotationError`].
//!
//! Two forms, with `<prefix>` e.g. `metal.equinix.com`:
//! - plain (kube-vip, Equinix CCM before v3.3): `<prefix>/node-asn`, `<prefix>/peer-asn`,
//!   `<prefix>/peer-ip` (comma list), `<prefix>/src-ip`, `<prefix>/bgp-pass` (base64),
//!   `<prefix>/peer-multi-hop` (`true`/`false`);
//! - numbered (Equinix CCM v3.3+): the same fields as `<prefix>/bgp-peers-N-<field>`,
//!   N = 0, 1, …, one entry per peer (gaps allowed), each with its own peer AS, password and
//!   multihop flag.
//!
//! When numbered entries exist the plain keys are ignored (stale leftovers of an older CCM).
//! Every entry needs `node-asn`, `peer-asn` and `peer-ip`; `src-ip`, `bgp-pass` and
//! `peer-multi-hop` are optional. `node-asn` must agree between entries, and so must `src-ip`
//! per address family (IPv4 → router id and IPv4 source, IPv6 → IPv6 source).
//!
//! No annotation of the prefix at all → `Ok(None)`: the daemon keeps waiting for the cloud
//! controller (kube-vip #1488 started too early). Errors name the annotation key; a password
//! (encoded or decoded) is never part of a message.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use crate::{Collect, Discovery, Secret, MAX_PASSWORD_LEN};

/// The fields of one entry, as they appear after `<prefix>/` or `<prefix>/bgp-peers-N-`.
pub const FIELDS: [&str; 6] = [
    "node-asn",
    "peer-asn",
    "peer-ip",
    "src-ip",
    "bgp-pass",
    "peer-multi-hop",
];

/// Why a set of annotations was refused. Never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// A required annotation of an entry is absent or empty while others are present.
    #[error("{key}: missing or empty (the other annotations of this peer entry are present)")]
    Missing {
        /// The full key that is needed.
        key: String,
    },
    /// Not an AS number.
    #[error("{key}: {value:?} is not an AS number (1..=4294967295 or asdot)")]
    InvalidAsn {
        /// The annotation key.
        key: String,
        /// Its value.
        value: String,
    },
    /// Not an IP address.
    #[error("{key}: {value:?} is not an IP address")]
    InvalidIp {
        /// The annotation key.
        key: String,
        /// The offending item.
        value: String,
    },
    /// `peer-multi-hop` is neither `true` nor `false`.
    #[error("{key}: {value:?} is not \"true\" or \"false\"")]
    InvalidBool {
        /// The annotation key.
        key: String,
        /// Its value.
        value: String,
    },
    /// `bgp-pass` is unusable; the reason never quotes it.
    #[error("{key}: {reason}")]
    InvalidPassword {
        /// The annotation key.
        key: String,
        /// Why (e.g. `not valid base64`).
        reason: String,
    },
    /// Two entries disagree on a node-wide value (`node-asn`, `src-ip` of one family).
    #[error("{key} is {value} but {other_key} is {other_value}")]
    Conflict {
        /// The later key.
        key: String,
        /// Its value.
        value: String,
        /// The key that set it first.
        other_key: String,
        /// Its value.
        other_value: String,
    },
    /// The same peer address with different settings in two entries.
    #[error("{key}: peer {address} is already listed with different settings")]
    DuplicatePeer {
        /// The `peer-ip` key of the later entry.
        key: String,
        /// The peer.
        address: IpAddr,
    },
    /// Two keys name the same numbered entry and field (`bgp-peers-1-…` and `bgp-peers-01-…`).
    #[error("{key} and {other_key} name the same entry")]
    Ambiguous {
        /// One key.
        key: String,
        /// The other.
        other_key: String,
    },
}

/// One entry's annotations: field → (full key, value).
type Entry<'a> = BTreeMap<&'static str, (&'a str, &'a str)>;

/// Parses the annotations of this node under `prefix` (with or without a trailing `/`).
/// `Ok(None)` when none of the [`FIELDS`] is present in either form.
pub fn parse(
    annotations: &BTreeMap<String, String>,
    prefix: &str,
) -> Result<Option<Discovery>, AnnotationError> {
    let head = format!("{}/", prefix.trim().trim_end_matches('/'));
    let mut plain: Entry = BTreeMap::new();
    let mut numbered: BTreeMap<u32, Entry> = BTreeMap::new();
    for (key, value) in annotations {
        let Some(rest) = key.strip_prefix(&head) else {
            continue;
        };
        if let Some(numbered_rest) = rest.strip_prefix("bgp-peers-") {
            let Some((n, field)) = numbered_rest.split_once('-') else {
                continue;
            };
            let (Some(field), Ok(n)) = (known_field(field), parse_index(n)) else {
                continue;
            };
            let entry = numbered.entry(n).or_default();
            if let Some((other, _)) = entry.insert(field, (key, value)) {
                return Err(AnnotationError::Ambiguous {
                    key: key.clone(),
                    other_key: other.to_string(),
                });
            }
        } else if let Some(field) = known_field(rest) {
            plain.insert(field, (key, value));
        }
    }

    let entries: Vec<(String, Entry)> = if !numbered.is_empty() {
        numbered
            .into_iter()
            .map(|(n, e)| (format!("{head}bgp-peers-{n}-"), e))
            .collect()
    } else if !plain.is_empty() {
        vec![(head.clone(), plain)]
    } else {
        return Ok(None);
    };

    let mut out = Collect::default();
    // (key, value) of the first entry that set each node-wide value.
    let mut local_as: Option<(&str, u32)> = None;
    let mut src_v4: Option<(&str, IpAddr)> = None;
    let mut src_v6: Option<(&str, IpAddr)> = None;

    for (key_head, entry) in &entries {
        let required = |field: &'static str| -> Result<(&str, &str), AnnotationError> {
            match entry.get(field) {
                Some((k, v)) if !v.trim().is_empty() => Ok((k, v.trim())),
                _ => Err(AnnotationError::Missing {
                    key: format!("{key_head}{field}"),
                }),
            }
        };
        let optional = |field: &'static str| -> Option<(&str, &str)> {
            entry
                .get(field)
                .map(|(k, v)| (*k, v.trim()))
                .filter(|(_, v)| !v.is_empty())
        };

        let (k, v) = required("node-asn")?;
        let node_as = parse_asn(k, v)?;
        agree(&mut local_as, k, node_as)?;

        let (k, v) = required("peer-asn")?;
        let remote_as = parse_asn(k, v)?;

        if let Some((k, v)) = optional("src-ip") {
            let ip: IpAddr = v.parse().map_err(|_| AnnotationError::InvalidIp {
                key: k.to_string(),
                value: v.to_string(),
            })?;
            agree(
                if ip.is_ipv4() {
                    &mut src_v4
                } else {
                    &mut src_v6
                },
                k,
                ip,
            )?;
        }

        let password = match optional("bgp-pass") {
            Some((k, v)) => decode_password(k, v)?,
            None => None,
        };

        let multihop = match optional("peer-multi-hop") {
            Some((k, v)) => match v.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(AnnotationError::InvalidBool {
                        key: k.to_string(),
                        value: v.to_string(),
                    })
                }
            },
            None => false,
        };

        let (ip_key, ips) = required("peer-ip")?;
        let mut any = false;
        for item in ips.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let address: IpAddr = item.parse().map_err(|_| AnnotationError::InvalidIp {
                key: ip_key.to_string(),
                value: item.to_string(),
            })?;
            out.add(address, remote_as, password.clone(), multihop)
                .map_err(|()| AnnotationError::DuplicatePeer {
                    key: ip_key.to_string(),
                    address,
                })?;
            any = true;
        }
        if !any {
            return Err(AnnotationError::Missing {
                key: ip_key.to_string(),
            });
        }
    }

    // Every entry has a node-asn (required above).
    Ok(Some(out.finish(
        local_as.map(|(_, v)| v).unwrap_or_default(),
        src_v4.map(|(_, ip)| ip),
        src_v6.map(|(_, ip)| ip),
    )))
}

fn known_field(s: &str) -> Option<&'static str> {
    FIELDS.iter().copied().find(|f| *f == s)
}

/// The N of `bgp-peers-N-`: decimal digits only.
fn parse_index(s: &str) -> Result<u32, ()> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    s.parse().map_err(|_| ())
}

/// Records a node-wide value or checks it against the one recorded first.
fn agree<'k, T: PartialEq + ToString>(
    slot: &mut Option<(&'k str, T)>,
    key: &'k str,
    value: T,
) -> Result<(), AnnotationError> {
    match slot {
        Some((other_key, other)) if *other != value => Err(AnnotationError::Conflict {
            key: key.to_string(),
            value: value.to_string(),
            other_key: other_key.to_string(),
            other_value: other.to_string(),
        }),
        Some(_) => Ok(()),
        None => {
            *slot = Some((key, value));
            Ok(())
        }
    }
}

/// An AS number: plain (`65000`) or asdot (`1.10`, RFC 5396); 0 is refused (RFC 7607).
fn parse_asn(key: &str, value: &str) -> Result<u32, AnnotationError> {
    let bad = || AnnotationError::InvalidAsn {
        key: key.to_string(),
        value: value.to_string(),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let v = match value.split_once('.') {
        Some((hi, lo)) if digits(hi) && digits(lo) => {
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            (u32::from(hi) << 16) | u32::from(lo)
        }
        Some(_) => return Err(bad()),
        None if digits(value) => value.parse::<u32>().map_err(|_| bad())?,
        None => return Err(bad()),
    };
    if v == 0 {
        return Err(bad());
    }
    Ok(v)
}

/// Standard base64, padding optional. The errors never quote the value: base64's own
/// messages name the offending byte, which is part of the secret.
fn decode_password(key: &str, value: &str) -> Result<Option<Secret>, AnnotationError> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bad = |reason: &str| AnnotationError::InvalidPassword {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let bytes = ENGINE.decode(value).map_err(|_| bad("not valid base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| bad("decodes to bytes that are not UTF-8"))?;
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_PASSWORD_LEN {
        return Err(bad(&format!(
            "decodes to {} bytes; TCP MD5 keys are at most {MAX_PASSWORD_LEN}",
            text.len()
        )));
    }
    Ok(Some(Secret::new(text)))
}
