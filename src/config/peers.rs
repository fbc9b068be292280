//! kube-vip's `bgp_peers` syntax: a comma list of `address:AS:password:multihop[:port[:…]]`,
//! IPv6 addresses in brackets, empty password allowed (`192.0.2.1:65000::false`), the
//! 6th field kube-vip's MP-BGP next hop options (`mpbgp_nexthop=fixed;mpbgp_ipv6=[2001:db8::1]`), the
//! 7th field BFD as `enable;rx;tx;mult` (milliseconds), the same syntax as `vipr_bfd`, and
//! vipr's 8th field GTSM as in `vipr_bgp_gtsm` (hops, like FRR's `ttl-security hops N`);
//! kube-vip's `unnumbered:IFACE:AS:…` entries are peers on an interface (BGP unnumbered). Each
//! entry becomes a [`PeerConfig`] here, the one place that decides where every field of a
//! configured peer comes from (a struct literal: a new field is a compile error), validated
//! by [`PeerConfig::validate`] once. Errors name the entry by position and address and never
//! quote the text: a password containing `:` or `,` (which the format cannot carry) shifts
//! its fragments into other fields. [`mp_next_hop`] checks the MP-BGP next hop settings,
//! node-wide and per peer, together.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use bgp::{Family, PeerConfig, Secret};

mod unnumbered;

use super::reader::Reader;
use super::{ConfigError, MpNextHop, MpNextHopMode, PeerDefaults, SessionSource};

/// BFD settings as written in `vipr_bfd` or a peer's 7th field: kube-vip's
/// `enable;rx;tx;mult`, intervals in milliseconds (RFC 5880 Required Min RX, Desired Min TX,
/// Detect Mult).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdSpec {
    /// Run BFD.
    pub enabled: bool,
    /// Required Min RX, ms.
    pub rx_ms: u32,
    /// Desired Min TX, ms.
    pub tx_ms: u32,
    /// Detect Mult.
    pub multiplier: u8,
}

impl Default for BfdSpec {
    /// Off; FRR's timers 300 ms / 300 ms / 3 when switched on.
    fn default() -> Self {
        BfdSpec {
            enabled: false,
            rx_ms: 300,
            tx_ms: 300,
            multiplier: 3,
        }
    }
}

impl BfdSpec {
    /// Parses `enable[;rx[;tx[;mult]]]`; empty or missing parts come from `base`.
    pub fn parse(s: &str, base: BfdSpec) -> Result<BfdSpec, String> {
        let parts: Vec<&str> = s.split(';').map(str::trim).collect();
        if parts.len() > 4 {
            return Err("expected enable;rx;tx;mult, e.g. true;300;300;3".into());
        }
        let get = |i: usize| parts.get(i).copied().filter(|p| !p.is_empty());
        let ms = |i: usize, name: &str, dflt: u32| -> Result<u32, String> {
            match get(i) {
                None => Ok(dflt),
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if (50..=60_000).contains(&n) => Ok(n),
                    _ => Err(format!("{name} must be 50..=60000 ms")),
                },
            }
        };
        let enabled = match get(0) {
            None => base.enabled,
            Some(v) => parse_bool(v).ok_or("enable must be true or false")?,
        };
        let multiplier = match get(3) {
            None => base.multiplier,
            Some(v) => v
                .parse::<u8>()
                .ok()
                .filter(|m| *m >= 1)
                .ok_or("multiplier must be 1..=255")?,
        };
        Ok(BfdSpec {
            enabled,
            rx_ms: ms(1, "rx", base.rx_ms)?,
            tx_ms: ms(2, "tx", base.tx_ms)?,
            multiplier,
        })
    }

    /// The speaker's BFD config when enabled.
    pub fn to_config(self) -> Option<bgp::BfdConfig> {
        self.enabled.then(|| bgp::BfdConfig {
            min_rx: std::time::Duration::from_millis(self.rx_ms as u64),
            min_tx: std::time::Duration::from_millis(self.tx_ms as u64),
            multiplier: self.multiplier,
            ..bgp::BfdConfig::default()
        })
    }
}

/// GTSM (RFC 5082) as written in `vipr_bgp_gtsm` or a peer's 8th field, like FRR's
/// `ttl-security hops N`: how many hops away the peer may be (1..=254, 1 = directly
/// connected; TTL 255 is sent and at least `256 - hops` required), `true` for 1, `false`
/// or 0 for off.
pub fn parse_gtsm(s: &str) -> Result<Option<u8>, String> {
    let s = s.trim();
    match s.parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(n @ 1..=254) => Ok(Some(n as u8)),
        Ok(_) => Err("GTSM hops must be 1..=254 (0 or false: off)".into()),
        Err(_) => match parse_bool(s) {
            Some(on) => Ok(on.then_some(1)),
            None => Err("GTSM is hops (1..=254), true (1 hop) or false".into()),
        },
    }
}

/// Why `s` (which does not parse) is not an IP address, to follow "not an IP address: ":
/// which number of an IPv4 address is out of range, or what is expected. Nothing of the
/// parser's internals; the caller shows the value when it may.
pub fn why_not_ip(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() {
        return "no address".into();
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && s.contains('.') {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 4 {
            return format!("an IPv4 address has 4 numbers, not {}", parts.len());
        }
        for p in parts {
            if p.is_empty() {
                return "an IPv4 address has no empty numbers".into();
            }
            if p.len() > 1 && p.starts_with('0') {
                return format!("{p}: leading zeros are not allowed");
            }
            if p.parse::<u8>().is_err() {
                return format!("{p} is not in 0..=255");
            }
        }
    }
    if s.contains(':') {
        return "IPv6 is hex groups separated by ':', with at most one '::', e.g. 2001:db8::1"
            .into();
    }
    "expected IPv4 like 192.0.2.1 or IPv6 like 2001:db8::1".into()
}

/// An IPv4 address's shape (digits and dots): a value a user meant as an address, not a
/// fragment of a password, so an error may show it.
fn ipv4_shaped(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && s.contains('.')
}

/// The hint after an error in a peer entry whose password may have been cut: kube-vip's
/// format splits entries on `,` and fields on `:` (`pkg/kubevip/config_bgp.go`,
/// `ParseBGPPeerConfig`, v1.2.3), so neither can be in a password.
/// An error about a field after the password, with the hint that the password may have been
/// cut (without showing any of it).
fn password_hint(has_pw: bool, e: String) -> String {
    match has_pw {
        true => format!("{e}; does the password {CUT_PASSWORD}"),
        false => e,
    }
}

/// The 3rd field of an entry: the TCP MD5 password, none when empty.
fn password_field(f: &[String]) -> Option<Secret> {
    f.get(2)
        .filter(|p| !p.is_empty())
        .map(|p| Secret::new(p.clone()))
}

const CUT_PASSWORD: &str =
    "contain ':' or ','? bgp_peers cannot carry them in a password: it splits on them, as kube-vip does";

/// Parses a boolean the way kube-vip's Go code accepts them.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" | "t" => Some(true),
        "false" | "0" | "no" | "n" | "off" | "f" | "" => Some(false),
        _ => None,
    }
}

/// Whether a `bgp_peers` value carries a password (an entry with a non-empty third field);
/// an entry that does not split counts as carrying one, so nothing unreadable is shown.
pub fn has_password(s: &str) -> bool {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|e| fields(e).map_or(true, |f| f.get(2).is_some_and(|p| !p.is_empty())))
}

/// Splits one entry on `:` outside brackets.
fn fields(entry: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in entry.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                if depth == 0 {
                    return Err("unbalanced ']'".into());
                }
                depth -= 1;
                cur.push(c);
            }
            ':' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if depth != 0 {
        return Err("unbalanced '['".into());
    }
    out.push(cur);
    Ok(out)
}

/// A configured peer: the one struct literal of the configuration's peers. `local_as` is
/// `bgp_as`; the source address and next hops come from the node when the session is built
/// (`peers.rs`). `gtsm_hops` is the peer's own GTSM setting (8th field) when it has one:
/// otherwise `vipr_bgp_gtsm` applies unless the peer is multihop.
#[allow(clippy::too_many_arguments)]
pub fn peer(
    address: IpAddr,
    remote_as: u32,
    local_as: u32,
    password: Option<Secret>,
    multihop: bool,
    port: u16,
    bfd: Option<bgp::BfdConfig>,
    gtsm_hops: Option<Option<u8>>,
    d: &PeerDefaults,
) -> PeerConfig {
    PeerConfig {
        address,
        interface: None,
        port,
        remote_as,
        remote_as_external: false,
        local_as,
        password,
        ttl: multihop.then_some(255),
        gtsm_hops: gtsm_hops.unwrap_or(if multihop { None } else { d.gtsm_hops }),
        source: None,
        hold_time: d.hold_time,
        keepalive: d.keepalive,
        passive: false,
        families: Family::ALL.to_vec(),
        next_hop_v4: None,
        next_hop_v6: None,
        graceful_restart: d.graceful_restart,
        extended_messages: true,
        bfd,
        connect_retry_min: Duration::from_secs(1),
        connect_retry_max: Duration::from_secs(60),
    }
}

/// Parses the whole `bgp_peers` value. `bfd` is `vipr_bfd`, the base of 7th fields and the
/// BFD of single-hop peers without one.
pub fn parse_peers(
    s: &str,
    local_as: u32,
    bfd: BfdSpec,
    d: &PeerDefaults,
) -> Result<Vec<PeerConfig>, String> {
    parse_peers_from(s, 1, local_as, bfd, d)
}

/// [`parse_peers`] of a value whose first entry is peer number `first` (an item of the
/// file's `bgp_peers` list).
pub fn parse_peers_from(
    s: &str,
    first: usize,
    local_as: u32,
    bfd: BfdSpec,
    d: &PeerDefaults,
) -> Result<Vec<PeerConfig>, String> {
    let mut peers: Vec<PeerConfig> = Vec::new();
    // Whether the previous entry had a password, which a ',' in it would have cut: this
    // entry may then begin with the rest of it, and is not quoted.
    let mut after_password = false;
    for (i, entry) in s.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let n = i + first;
        // The hint for an entry that may begin with the rest of the previous password.
        let cut = |e: String| match after_password {
            true => format!("{e}; does peer #{}'s password {CUT_PASSWORD}", n - 1),
            false => e,
        };
        let f = fields(entry).map_err(|e| cut(format!("peer #{n}: {e}")))?;
        if f[0] == "unnumbered" {
            let p = unnumbered::parse(n, &f[1..], local_as, bfd, d).map_err(cut)?;
            if peers.iter().any(|q| q.interface == p.interface) {
                return Err(format!(
                    "peer #{n} (interface {}): listed twice",
                    p.interface.as_deref().unwrap_or_default()
                ));
            }
            after_password = f.get(3).is_some_and(|p| !p.is_empty()) || f.len() == 4;
            peers.push(p);
            continue;
        }
        let bracketed = f[0].starts_with('[');
        let addr_text = f[0].trim_start_matches('[').trim_end_matches(']');
        let address: IpAddr = addr_text.parse().map_err(|_| {
            let why =
                if !bracketed && f.len() > 2 && addr_text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    "IPv6 addresses go in [brackets], e.g. [2001:db8::1]:65000".to_string()
                } else {
                    why_not_ip(addr_text)
                };
            // Shown only when it cannot hold a password: an IPv4 shape, or one plain word
            // first in its entry. Text with ':' may be a bracket that swallowed the fields
            // after it (fuzzing found one), so an IPv6 typo gets the reason, not the text.
            let plain = !addr_text.contains(':')
                && addr_text
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
            if ipv4_shaped(addr_text) || (plain && (n == first || !after_password)) {
                cut(format!(
                    "peer #{n}: the address {addr_text:?} is not an IP address: {why}"
                ))
            } else {
                cut(format!(
                    "peer #{n}: the address (not shown) is not an IP address"
                ))
            }
        })?;
        if f.len() < 2 {
            return Err(format!(
                "peer #{n} ({address}): expected address:AS:password:multihop[:port]"
            ));
        }
        // The AS text is shown only when it is one plain word: a bracket may have pulled later
        // fields (a password among them) into it, and those come with ':' (fuzzing found it).
        let as_shaped = |t: &str| t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.');
        let remote_as = parse_asn(&f[1]).map_err(|e| {
            if after_password || !as_shaped(f[1].trim()) {
                cut(format!(
                    "peer #{n} ({address}): the AS (not shown) is not an AS number"
                ))
            } else {
                format!("peer #{n} ({address}): AS {e}")
            }
        })?;
        // A password with ':' shifts its pieces into the fields after it: those are shown
        // only when the password field is empty, and their errors hint at the cause.
        let has_pw = f.get(2).is_some_and(|p| !p.is_empty());
        after_password = has_pw || f.len() == 3;
        let shown = |v: &str| match has_pw {
            true => String::new(),
            false => format!(" {v:?}"),
        };
        let hint = |e: String| password_hint(has_pw, e);
        let password = password_field(&f);
        let multihop = match f.get(3) {
            Some(m) => parse_bool(m).ok_or_else(|| {
                hint(format!(
                    "peer #{n} ({address}): multihop{} is not true or false",
                    shown(m)
                ))
            })?,
            None => false,
        };
        let port = match f.get(4).filter(|p| !p.is_empty()) {
            Some(p) => match p.parse::<u16>() {
                Ok(v) if v > 0 => v,
                _ => {
                    return Err(hint(format!(
                        "peer #{n} ({address}): port{} is not in 1..=65535",
                        shown(p)
                    )))
                }
            },
            None => 179,
        };
        if peers.iter().any(|p| p.address == address) {
            return Err(format!("peer #{n} ({address}): listed twice"));
        }
        // The peer's own BFD field (missing parts from vipr_bfd), else vipr_bfd unless the
        // peer is multihop (BFD here is single-hop).
        let own_bfd = match f.get(6).filter(|b| !b.trim().is_empty()) {
            Some(b) => Some(
                BfdSpec::parse(b, bfd)
                    .map_err(|e| hint(format!("peer #{n} ({address}): BFD {e}")))?,
            ),
            None => None,
        };
        if multihop && own_bfd.is_some_and(|b| b.enabled) {
            return Err(format!(
                "peer #{n} ({address}): BFD is single-hop (RFC 5881); not for a multihop peer"
            ));
        }
        let bfd = match own_bfd {
            Some(own) => own.to_config(),
            None if multihop => None,
            None => bfd.to_config(),
        };
        let gtsm = match f.get(7).filter(|g| !g.trim().is_empty()) {
            Some(g) => {
                Some(parse_gtsm(g).map_err(|e| hint(format!("peer #{n} ({address}): {e}")))?)
            }
            None => None,
        };
        let p = peer(
            address, remote_as, local_as, password, multihop, port, bfd, gtsm, d,
        );
        p.validate()
            .map_err(|e| format!("peer #{n} ({address}): {}: {}", e.field, e.reason))?;
        peers.push(p);
    }
    Ok(peers)
}

/// `mpbgp_nexthop`'s values (kube-vip v1.2.3 `pkg/kubevip/config_bgp.go`,
/// `FindMpbgpAddresses`).
pub fn parse_mp_mode(s: &str) -> Result<MpNextHopMode, String> {
    match s.trim() {
        "fixed" => Ok(MpNextHopMode::Fixed),
        "auto_sourceip" => Ok(MpNextHopMode::AutoSourceIp),
        "auto_sourceif" => Ok(MpNextHopMode::AutoSourceIf),
        _ => Err("expected fixed, auto_sourceip or auto_sourceif".into()),
    }
}

/// `mpbgp_ipv4`: an IPv4 address (kube-vip checks only that it is an IP address).
pub fn parse_mp_v4(s: &str) -> Result<Ipv4Addr, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected an IPv4 address".to_string())
}

/// `mpbgp_ipv6`: an IPv6 address, brackets allowed (a peer's 6th field needs them).
pub fn parse_mp_v6(s: &str) -> Result<Ipv6Addr, String> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| "expected an IPv6 address".to_string())
}

/// A peer's 6th field: `key=value` pairs separated by `;` with the keys `mpbgp_nexthop`,
/// `mpbgp_ipv4`, `mpbgp_ipv6` (kube-vip v1.2.3 `ParseBGPPeerConfig`; an IPv6 address goes in
/// brackets, which kube-vip's parser cannot take at all). An empty value is unset.
fn parse_mp_field(s: &str) -> Result<MpNextHop, String> {
    let mut m = MpNextHop::default();
    for part in s.split(';').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or("MP-BGP options are key=value pairs separated by ';'")?;
        let (k, v) = (k.trim(), v.trim());
        if v.is_empty() {
            continue;
        }
        match k {
            "mpbgp_nexthop" => m.mode = Some(parse_mp_mode(v).map_err(|e| format!("{k}: {e}"))?),
            "mpbgp_ipv4" => m.v4 = Some(parse_mp_v4(v).map_err(|e| format!("{k}: {e}"))?),
            "mpbgp_ipv6" => m.v6 = Some(parse_mp_v6(v).map_err(|e| format!("{k}: {e}"))?),
            _ => {
                return Err(
                    "MP-BGP options take only mpbgp_nexthop, mpbgp_ipv4 and mpbgp_ipv6".into(),
                )
            }
        }
    }
    Ok(m)
}

/// The peers' own MP-BGP next hop settings (6th field of `bgp_peers`), for the entries that
/// have one. Errors name the entry as [`parse_peers`] does, never the text.
pub fn parse_peers_mp(s: &str) -> Result<Vec<(IpAddr, MpNextHop)>, String> {
    let mut out = Vec::new();
    for (i, entry) in s.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let n = i + 1;
        let f = fields(entry).map_err(|e| format!("peer #{n}: {e}"))?;
        let Ok(address) = f[0]
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            continue; // parse_peers reports it
        };
        if let Some(field) = f.get(5).filter(|m| !m.trim().is_empty()) {
            let m = parse_mp_field(field).map_err(|e| format!("peer #{n} ({address}): {e}"))?;
            if m != MpNextHop::default() {
                out.push((address, m));
            }
        }
    }
    Ok(out)
}

/// `mpbgp_nexthop`, `mpbgp_ipv4`, `mpbgp_ipv6` and the peers' 6th fields, each peer's merged
/// settings checked as kube-vip v1.2.3's `FindMpbgpAddresses` checks them when it adds the
/// peer (here at start instead): `fixed` needs an address, `auto_sourceip` needs
/// `bgp_sourceip`, `auto_sourceif` needs `bgp_sourceif`. An address without `fixed` would
/// be ignored (kube-vip ignores it): refused.
pub fn mp_next_hop(
    r: &Reader,
    source: &Option<SessionSource>,
    configured: &[bgp::PeerConfig],
) -> Result<(MpNextHop, Vec<(IpAddr, MpNextHop)>), ConfigError> {
    let node = MpNextHop {
        mode: r.parse("mpbgp_nexthop", parse_mp_mode)?,
        v4: r.parse("mpbgp_ipv4", parse_mp_v4)?,
        v6: r.parse("mpbgp_ipv6", parse_mp_v6)?,
    };
    let own = r.parse("bgp_peers", parse_peers_mp)?.unwrap_or_default();
    let check = |m: MpNextHop| -> Result<(), String> {
        match (m.mode, source) {
            (Some(MpNextHopMode::Fixed), _) if m.v4.is_none() && m.v6.is_none() => {
                Err("mpbgp_nexthop=fixed needs mpbgp_ipv4 or mpbgp_ipv6".into())
            }
            (Some(MpNextHopMode::Fixed), _) => Ok(()),
            (_, _) if m.v4.is_some() || m.v6.is_some() => {
                Err("mpbgp_ipv4 and mpbgp_ipv6 are used only with mpbgp_nexthop=fixed".into())
            }
            (Some(MpNextHopMode::AutoSourceIp), Some(SessionSource::Address(_)))
            | (Some(MpNextHopMode::AutoSourceIf), Some(SessionSource::Interface(_)))
            | (None, _) => Ok(()),
            (Some(MpNextHopMode::AutoSourceIp), _) => {
                Err("mpbgp_nexthop=auto_sourceip needs bgp_sourceip".into())
            }
            (Some(MpNextHopMode::AutoSourceIf), _) => {
                Err("mpbgp_nexthop=auto_sourceif needs bgp_sourceif".into())
            }
        }
    };
    // The node's own settings, then every configured peer's merged ones (a peer without
    // a fixed address of its own needs the node's).
    let node_check = MpNextHop {
        v4: node.v4.or(Some(Ipv4Addr::UNSPECIFIED)),
        ..node
    };
    check(if node.mode == Some(MpNextHopMode::Fixed) {
        node_check
    } else {
        node
    })
    .map_err(|e| {
        let key = match node.mode {
            None if node.v4.is_some() => "mpbgp_ipv4",
            None => "mpbgp_ipv6",
            Some(_) => "mpbgp_nexthop",
        };
        r.err(key, e)
    })?;
    for p in configured {
        let m = own
            .iter()
            .find(|(a, _)| *a == p.address)
            .map_or(node, |(_, m)| m.or(node));
        check(m).map_err(|e| r.err("bgp_peers", format!("peer {}: {e}", p.address)))?;
    }
    Ok((node, own))
}

/// An AS number: plain (`65000`, `4200000001`) or asdot (`64086.59904`, RFC 5396).
pub fn parse_asn(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let v = if let Some((hi, lo)) = s.split_once('.') {
        let hi: u16 = hi
            .parse()
            .map_err(|_| format!("{s:?} is not an AS number"))?;
        let lo: u16 = lo
            .parse()
            .map_err(|_| format!("{s:?} is not an AS number"))?;
        ((hi as u32) << 16) | lo as u32
    } else {
        s.parse::<u32>()
            .map_err(|_| format!("{s:?} is not an AS number (1..=4294967295)"))?
    };
    if v == 0 {
        return Err("0 is reserved (RFC 7607)".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> PeerDefaults {
        PeerDefaults {
            hold_time: 30,
            keepalive: Some(10),
            bfd: None,
            graceful_restart: None,
            gtsm_hops: Some(1),
        }
    }

    fn parse(s: &str, bfd: BfdSpec) -> Result<Vec<PeerConfig>, String> {
        parse_peers(s, 65001, bfd, &defaults())
    }

    #[test]
    fn kube_vip_examples() {
        let p = parse(
            "192.0.2.1:65000::false,[2001:db8::1]:65001:secret:true:1179",
            BfdSpec::default(),
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].address, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (p[0].remote_as, p[0].is_multihop(), p[0].port),
            (65000, false, 179)
        );
        assert_eq!(
            (p[0].local_as, p[0].hold_time, p[0].keepalive),
            (65001, 30, Some(10))
        );
        assert!(p[0].password.is_none());
        assert_eq!(p[1].address, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(p[1].password.as_ref().unwrap().expose(), "secret");
        assert_eq!((p[1].is_multihop(), p[1].port), (true, 1179));
        let p = parse("10.0.0.1:65000", BfdSpec::default()).unwrap();
        assert_eq!(p[0].port, 179);
        assert_eq!(p[0].bfd, None);
        let p = parse(
            "10.0.0.1:65000::false:179::true;100;200;5",
            BfdSpec::default(),
        )
        .unwrap();
        let b = p[0].bfd.unwrap();
        assert_eq!(
            (b.min_rx.as_millis(), b.min_tx.as_millis(), b.multiplier),
            (100, 200, 5)
        );
    }

    #[test]
    fn has_password_looks_at_the_third_field_only() {
        assert!(!has_password("10.0.0.1:65000::false, [2001:db8::1]:65000"));
        assert!(has_password(
            "10.0.0.1:65000::false,[2001:db8::1]:65000:pw:true"
        ));
        assert!(
            has_password("[2001:db8::1:65000:pw"),
            "unsplittable counts as secret"
        );
        assert!(!has_password(""));
    }

    #[test]
    fn errors_name_the_entry_but_not_the_password() {
        for (input, needle) in [
            ("10.0.0.1:abc:pw:false", "peer #1 (10.0.0.1): AS"),
            ("10.0.0.1:65000:pw:maybe", "multihop"),
            ("10.0.0.1:65000:pw:false:0", "port"),
            ("2001:db8::1:65000", "not an IP address"),
            ("10.0.0.1:65000,10.0.0.1:65001", "listed twice"),
            ("[2001:db8::1:65000", "unbalanced"),
            (
                "10.0.0.1:65000:pw:false:179::true;10",
                "peer #1 (10.0.0.1): BFD rx",
            ),
            ("10.0.0.1:65000:pw:false:179::maybe", "BFD enable"),
            (
                "10.0.0.1:65000:pw:false:179::true;300;300;0",
                "BFD multiplier",
            ),
            ("10.0.0.1:65000:pw:true:179::true", "single-hop"),
            // Found by fuzzing: a bracket in the AS pulled the password into the AS field.
            (
                "10.0.0.1:6[000:pw:true:db8::1]>6se:179::true;300;300;3",
                "the AS (not shown)",
            ),
        ] {
            let e = parse(input, BfdSpec::default()).unwrap_err();
            assert!(e.contains(needle), "{input}: {e}");
            assert!(!e.contains("pw"), "password leaked: {e}");
        }
        // Passwords with the separators: no fragment comes back.
        for input in [
            "10.0.0.1:65000:pw:pw2:false",
            "10.0.0.1:65000:pw,pw2:false",
            "10.0.0.1:65000:a:b:pw2",
        ] {
            let e = parse(input, BfdSpec::default()).unwrap_err();
            assert!(!e.contains("pw2"), "password fragment leaked: {e}");
        }
        let long = format!("10.0.0.1:65000:{}:false", "x".repeat(81));
        let e = parse(&long, BfdSpec::default()).unwrap_err();
        assert!(e.contains("peer #1 (10.0.0.1): password"), "{e}");
        assert!(!e.contains("xxx"), "{e}");
    }

    #[test]
    fn bfd_parts_default_to_the_base() {
        let base = BfdSpec::parse("true;100;100;3", BfdSpec::default()).unwrap();
        assert_eq!(BfdSpec::parse("", base).unwrap(), base);
        let p = BfdSpec::parse("true;;;5", base).unwrap();
        assert_eq!((p.rx_ms, p.tx_ms, p.multiplier), (100, 100, 5));
        assert!(!BfdSpec::parse("false", base).unwrap().enabled);
        assert_eq!(BfdSpec::parse("false", base).unwrap().to_config(), None);
        let c = BfdSpec::parse("true;50;60", base)
            .unwrap()
            .to_config()
            .unwrap();
        assert_eq!(
            (c.min_rx.as_millis(), c.min_tx.as_millis(), c.multiplier),
            (50, 60, 3)
        );
        assert!(BfdSpec::parse("true;1;2;3;4", base).is_err());
        // A peer's own field merges with vipr_bfd; a peer without one follows vipr_bfd,
        // unless it is multihop.
        let p = parse(
            "10.0.0.1:65000::false:179::true,10.0.0.2:65000::false,10.0.0.3:65000::true",
            base,
        )
        .unwrap();
        assert_eq!(p[0].bfd, base.to_config());
        assert_eq!(p[1].bfd, base.to_config());
        assert_eq!(p[2].bfd, None);
    }

    #[test]
    fn gtsm_hops_from_the_eighth_field_or_the_default() {
        assert_eq!(parse_gtsm("3"), Ok(Some(3)));
        assert_eq!(parse_gtsm("true"), Ok(Some(1)));
        assert_eq!(parse_gtsm("false"), Ok(None));
        assert_eq!(parse_gtsm("0"), Ok(None));
        assert!(parse_gtsm("255").is_err());
        assert!(parse_gtsm("maybe").is_err());
        // The defaults here have vipr_bgp_gtsm = 1: single-hop peers follow it, multihop
        // peers do not, and a peer's own field wins either way.
        let p = parse(
            "10.0.0.1:65000,10.0.0.2:65000::true,10.0.0.3:65000::true:179:::3,10.0.0.4:65000::false:179:::false",
            BfdSpec::default(),
        )
        .unwrap();
        let hops: Vec<Option<u8>> = p.iter().map(|p| p.gtsm_hops).collect();
        assert_eq!(hops, [Some(1), None, Some(3), None]);
        assert_eq!(p[2].gtsm_min_ttl(), Some(253));
        let e = parse("10.0.0.1:65000:pw:false:179:::300", BfdSpec::default()).unwrap_err();
        assert!(e.contains("peer #1 (10.0.0.1): GTSM hops"), "{e}");
    }

    #[test]
    fn asdot_and_bounds() {
        assert_eq!(parse_asn("1.10").unwrap(), 65546);
        assert_eq!(parse_asn("4294967295").unwrap(), u32::MAX);
        assert!(parse_asn("0").is_err());
        assert!(parse_asn("4294967296").is_err());
    }
}
