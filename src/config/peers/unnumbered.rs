//! kube-vip's unnumbered `bgp_peers` entries (`unnumbered:IFACE:AS:…`): a peer on an
//! interface, whose router `unnumbered.rs` finds on the link (BGP unnumbered).

use std::net::{IpAddr, Ipv6Addr};

use bgp::PeerConfig;

use super::{parse_asn, parse_bool, parse_gtsm, password_field, password_hint, peer, BfdSpec};
use crate::config::PeerDefaults;

/// kube-vip v1.2.3's unnumbered entry (`pkg/kubevip/config_bgp.go`, `ParseBGPPeerConfig`):
/// `unnumbered:IFACE:AS:password:multihop:port:mp:bfd` with the fields after the interface
/// as in an address entry (`f` starts at the interface). The router is found on the
/// interface (`unnumbered.rs`); its AS is needed (kube-vip passes a missing AS to GoBGP as
/// 0); multihop and MP-BGP next hops are refused: the peer is on the link and the next hops
/// are our link-local address (RFC 8950). Errors name the entry and the interface, never a
/// value that may be a piece of the password.
pub(super) fn parse(
    n: usize,
    f: &[String],
    local_as: u32,
    bfd: BfdSpec,
    d: &PeerDefaults,
) -> Result<PeerConfig, String> {
    let iface = f.first().map(|i| i.trim()).unwrap_or_default();
    let plain = |t: &str| {
        !t.is_empty()
            && t.len() <= 15
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'@'))
    };
    if !plain(iface) {
        return Err(format!(
            "peer #{n}: unnumbered: the interface name (not shown) is not a Linux interface name (1 to 15 letters, digits, '.', '-', '_', '@'), e.g. unnumbered:eth1:65000"
        ));
    }
    let name = format!("peer #{n} (interface {iface})");
    let remote_as = match f.get(1).map(|a| a.trim()).filter(|a| !a.is_empty()) {
        None => {
            return Err(format!(
                "{name}: the router's AS is needed: unnumbered:{iface}:AS, e.g. unnumbered:{iface}:65000"
            ))
        }
        Some(a) => parse_asn(a).map_err(|e| match plain(a) {
            true => format!("{name}: AS {e}"),
            false => format!("{name}: the AS (not shown) is not an AS number"),
        })?,
    };
    let has_pw = f.get(2).is_some_and(|p| !p.is_empty());
    let hint = |e: String| password_hint(has_pw, e);
    let password = password_field(f);
    match f.get(3).map(|m| parse_bool(m)) {
        None | Some(Some(false)) => {}
        Some(Some(true)) => {
            return Err(format!(
                "{name}: multihop: an unnumbered peer is the router on the link (single hop)"
            ))
        }
        Some(None) => return Err(hint(format!("{name}: multihop is not true or false"))),
    }
    let port = match f.get(4).filter(|p| !p.is_empty()) {
        Some(p) => match p.parse::<u16>() {
            Ok(v) if v > 0 => v,
            _ => return Err(hint(format!("{name}: port is not in 1..=65535"))),
        },
        None => 179,
    };
    if f.get(5).is_some_and(|m| !m.trim().is_empty()) {
        return Err(hint(format!(
            "{name}: MP-BGP next hop options: an unnumbered peer's next hops are our link-local address on {iface} (RFC 8950)"
        )));
    }
    let bfd = match f.get(6).filter(|b| !b.trim().is_empty()) {
        Some(b) => BfdSpec::parse(b, bfd).map_err(|e| hint(format!("{name}: BFD {e}")))?,
        None => bfd,
    }
    .to_config();
    let gtsm = match f.get(7).filter(|g| !g.trim().is_empty()) {
        Some(g) => Some(parse_gtsm(g).map_err(|e| hint(format!("{name}: {e}")))?),
        None => None,
    };
    let p = PeerConfig {
        interface: Some(iface.to_string()),
        ..peer(
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            remote_as,
            local_as,
            password,
            false,
            port,
            bfd,
            gtsm,
            d,
        )
    };
    p.validate()
        .map_err(|e| format!("{name}: {}: {}", e.field, e.reason))?;
    Ok(p)
}
