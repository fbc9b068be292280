//! Equinix Metal metadata: owns the parser of the metadata JSON
//! (`GET https://metadata.platformequinix.com/metadata`) into a [`Discovery`], and its errors.
//! The poller that fetches it periodically lives in `equinix_metal/poller.rs`.
//!
//! The document's `bgp_neighbors` is a list with one entry per address family:
//! ```json
//! {"address_family": 4, "customer_as": 65000, "customer_ip": "192.0.2.10",
//!  "md5_enabled": true, "md5_password": "…", "multihop": true,
//!  "peer_as": 65530, "peer_ips": ["169.254.255.1", "169.254.255.2"],
//!  "routes_in": [], "routes_out": []}
//! ```
//! `customer_as` → local AS (must agree between entries), `customer_ip` → source address of
//! that family (and the router id for family 4), each `peer_ips[]` → a peer with `peer_as`,
//! `multihop` and `md5_password` (only when `md5_enabled`). Other fields are ignored.
//!
//! Errors name the field (`bgp_neighbors[0].peer_as: expected a number`) and never contain
//! the password or any part of it.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::{Collect, Discovery, Secret, MAX_PASSWORD_LEN};

mod poller;

pub use poller::{backoff_delay, poll, poll_with, PollError, PollOptions};

/// The metadata address as seen from an Equinix Metal device (no token needed).
pub const DEFAULT_URL: &str = "https://metadata.platformequinix.com/metadata";

/// Why a metadata document was refused. Never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The body is empty.
    #[error("empty body")]
    Empty,
    /// The JSON stops in the middle of a value (a cut-off download).
    #[error("truncated JSON: the body ends after {len} bytes in the middle of a value")]
    Truncated {
        /// Length of the body.
        len: usize,
    },
    /// Not JSON at all, or broken JSON.
    #[error("invalid JSON at line {line} column {column}: {reason}")]
    InvalidJson {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser objected to (never quotes the input).
        reason: String,
    },
    /// The document has no `bgp_neighbors` (or it is `null`).
    #[error("no bgp_neighbors in the metadata (is BGP enabled for this device?)")]
    MissingNeighbours,
    /// `bgp_neighbors` is an empty list.
    #[error("bgp_neighbors is empty (is BGP enabled for this device?)")]
    NoNeighbours,
    /// A required field is absent or `null`.
    #[error("{field}: missing")]
    MissingField {
        /// Path of the field, e.g. `bgp_neighbors[0].peer_as`.
        field: String,
    },
    /// A field has the wrong JSON type.
    #[error("{field}: expected {expected}")]
    WrongType {
        /// Path of the field.
        field: String,
        /// What was expected, e.g. `a number`.
        expected: &'static str,
    },
    /// A field has the right type but an unusable value.
    #[error("{field}: {reason}")]
    InvalidValue {
        /// Path of the field.
        field: String,
        /// Why the value is refused (never the password).
        reason: String,
    },
    /// A neighbour entry has an empty `peer_ips`.
    #[error("bgp_neighbors[{index}].peer_ips: no peers in this neighbour entry")]
    NoPeers {
        /// Index of the entry in `bgp_neighbors`.
        index: usize,
    },
    /// Two entries (IPv4 and IPv6) name different local ASes.
    #[error(
        "bgp_neighbors[{index}].customer_as is {value} but bgp_neighbors[{first_index}].customer_as is {first}"
    )]
    ConflictingLocalAs {
        /// The entry that set it first.
        first_index: usize,
        /// The AS it set.
        first: u32,
        /// The entry that disagrees.
        index: usize,
        /// Its AS.
        value: u32,
    },
    /// Two entries of the same family name different `customer_ip`s.
    #[error(
        "bgp_neighbors[{index}].customer_ip is {value} but bgp_neighbors[{first_index}].customer_ip is {first}"
    )]
    ConflictingSource {
        /// The entry that set it first.
        first_index: usize,
        /// The address it set.
        first: IpAddr,
        /// The entry that disagrees.
        index: usize,
        /// Its address.
        value: IpAddr,
    },
    /// The same peer address appears twice with different settings.
    #[error("{field}: peer {address} is listed twice with different settings")]
    DuplicatePeer {
        /// Path of the second occurrence.
        field: String,
        /// The peer.
        address: IpAddr,
    },
}

/// Parses a metadata document (the whole JSON body) into a [`Discovery`].
pub fn parse(body: &[u8]) -> Result<Discovery, MetadataError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(MetadataError::Empty);
    }
    let doc: Value = serde_json::from_slice(body).map_err(|e| json_error(&e, body.len()))?;
    let top = doc.as_object().ok_or_else(|| MetadataError::WrongType {
        field: "metadata".into(),
        expected: "a JSON object",
    })?;
    let neighbours = match top.get("bgp_neighbors") {
        None | Some(Value::Null) => return Err(MetadataError::MissingNeighbours),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(MetadataError::WrongType {
                field: "bgp_neighbors".into(),
                expected: "a list",
            })
        }
    };
    if neighbours.is_empty() {
        return Err(MetadataError::NoNeighbours);
    }

    let mut out = Collect::default();
    // (index of the entry that set it, value) for the conflict messages.
    let mut local_as: Option<(usize, u32)> = None;
    let mut source_v4: Option<(usize, IpAddr)> = None;
    let mut source_v6: Option<(usize, IpAddr)> = None;

    for (index, entry) in neighbours.iter().enumerate() {
        let path = format!("bgp_neighbors[{index}]");
        let obj = entry.as_object().ok_or_else(|| MetadataError::WrongType {
            field: path.clone(),
            expected: "an object",
        })?;
        let f = Fields { obj, path: &path };

        let family = f.number("address_family")?;
        let v4 = match family {
            4 => true,
            6 => false,
            other => {
                return Err(f.invalid(
                    "address_family",
                    format!("{other} is not an address family (expected 4 or 6)"),
                ))
            }
        };
        let family_name = if v4 { "IPv4" } else { "IPv6" };

        let customer_as = f.asn("customer_as")?;
        match local_as {
            Some((first_index, first)) if first != customer_as => {
                return Err(MetadataError::ConflictingLocalAs {
                    first_index,
                    first,
                    index,
                    value: customer_as,
                })
            }
            Some(_) => {}
            None => local_as = Some((index, customer_as)),
        }

        let customer_ip = f.ip("customer_ip", v4, family)?;
        let slot = if v4 { &mut source_v4 } else { &mut source_v6 };
        match *slot {
            Some((first_index, first)) if first != customer_ip => {
                return Err(MetadataError::ConflictingSource {
                    first_index,
                    first,
                    index,
                    value: customer_ip,
                })
            }
            Some(_) => {}
            None => *slot = Some((index, customer_ip)),
        }

        let remote_as = f.asn("peer_as")?;
        let multihop = f.opt_bool("multihop")?.unwrap_or(false);
        let md5_enabled = f.opt_bool("md5_enabled")?.unwrap_or(false);
        let password = if md5_enabled {
            Some(f.password("md5_password")?)
        } else {
            None
        };

        let peer_ips = match f.get("peer_ips") {
            None => return Err(f.missing("peer_ips")),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(f.wrong("peer_ips", "a list of addresses")),
        };
        if peer_ips.is_empty() {
            return Err(MetadataError::NoPeers { index });
        }
        for (i, ip) in peer_ips.iter().enumerate() {
            let field = format!("{path}.peer_ips[{i}]");
            let text = ip.as_str().ok_or_else(|| MetadataError::WrongType {
                field: field.clone(),
                expected: "an address string",
            })?;
            let address: IpAddr = text
                .trim()
                .parse()
                .map_err(|_| MetadataError::InvalidValue {
                    field: field.clone(),
                    reason: format!("{text:?} is not an IP address"),
                })?;
            if address.is_ipv4() != v4 {
                return Err(MetadataError::InvalidValue {
                    field,
                    reason: format!(
                        "{address} is not an {family_name} address (address_family {family})"
                    ),
                });
            }
            out.add(address, remote_as, password.clone(), multihop)
                .map_err(|()| MetadataError::DuplicatePeer { field, address })?;
        }
    }

    // Every entry has a customer_as (required above).
    Ok(out.finish(
        local_as.map(|(_, v)| v).unwrap_or_default(),
        source_v4.map(|(_, ip)| ip),
        source_v6.map(|(_, ip)| ip),
    ))
}

/// Maps a serde_json error to ours; its messages never quote the input.
fn json_error(e: &serde_json::Error, len: usize) -> MetadataError {
    if e.is_eof() {
        return MetadataError::Truncated { len };
    }
    let full = e.to_string();
    let reason = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    MetadataError::InvalidJson {
        line: e.line(),
        column: e.column(),
        reason,
    }
}

/// Typed access to the fields of one `bgp_neighbors` entry, with error paths.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: &'a str,
}

impl Fields<'_> {
    /// The field, `null` counting as absent.
    fn get(&self, name: &str) -> Option<&Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    fn missing(&self, name: &str) -> MetadataError {
        MetadataError::MissingField {
            field: self.field(name),
        }
    }

    fn wrong(&self, name: &str, expected: &'static str) -> MetadataError {
        MetadataError::WrongType {
            field: self.field(name),
            expected,
        }
    }

    fn invalid(&self, name: &str, reason: String) -> MetadataError {
        MetadataError::InvalidValue {
            field: self.field(name),
            reason,
        }
    }

    /// A required non-negative whole number.
    fn number(&self, name: &str) -> Result<u64, MetadataError> {
        let v = self.get(name).ok_or_else(|| self.missing(name))?;
        if !v.is_number() {
            return Err(self.wrong(name, "a number"));
        }
        v.as_u64()
            .ok_or_else(|| self.invalid(name, format!("{v} is not a non-negative whole number")))
    }

    /// A required AS number (1..=4294967295).
    fn asn(&self, name: &str) -> Result<u32, MetadataError> {
        let n = self.number(name)?;
        match u32::try_from(n) {
            Ok(0) => Err(self.invalid(name, "AS 0 is reserved (RFC 7607)".into())),
            Ok(v) => Ok(v),
            Err(_) => Err(self.invalid(name, format!("{n} is not an AS number (1..=4294967295)"))),
        }
    }

    /// A required address of the entry's family.
    fn ip(&self, name: &str, v4: bool, family: u64) -> Result<IpAddr, MetadataError> {
        let v = self.get(name).ok_or_else(|| self.missing(name))?;
        let text = v
            .as_str()
            .ok_or_else(|| self.wrong(name, "an address string"))?;
        let ip: IpAddr = text
            .trim()
            .parse()
            .map_err(|_| self.invalid(name, format!("{text:?} is not an IP address")))?;
        if ip.is_ipv4() != v4 {
            let fam = if v4 { "IPv4" } else { "IPv6" };
            return Err(self.invalid(
                name,
                format!("{ip} is not an {fam} address (address_family {family})"),
            ));
        }
        Ok(ip)
    }

    /// An optional boolean.
    fn opt_bool(&self, name: &str) -> Result<Option<bool>, MetadataError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(name, "true or false")),
        }
    }

    /// The MD5 password: required, a string of 1 to 80 bytes. Errors never show it.
    fn password(&self, name: &str) -> Result<Secret, MetadataError> {
        let v = self
            .get(name)
            .ok_or_else(|| self.invalid(name, "missing, but md5_enabled is true".into()))?;
        let s = v.as_str().ok_or_else(|| self.wrong(name, "a string"))?;
        if s.is_empty() {
            return Err(self.invalid(name, "empty, but md5_enabled is true".into()));
        }
        if s.len() > MAX_PASSWORD_LEN {
            return Err(self.invalid(
                name,
                format!(
                    "{} bytes long; TCP MD5 keys are at most {MAX_PASSWORD_LEN}",
                    s.len()
                ),
            ));
        }
        Ok(Secret::new(s))
    }
}
