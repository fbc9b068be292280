//! `bgp_peers` in the YAML file as a list whose items are kube-vip's strings or mappings
//! with every option of a peer (`address`, `as`, `port`, `password`, `multihop`, `gtsm`,
//! `source` or `source_interface`, `local_as`, `hold_time`, `keepalive`, `passive`, `bfd`,
//! `graceful_restart`, `families`, `node_selector`, `password_secret`). Each item becomes the one
//! [`PeerConfig`] (built by [`super::peers::peer`], validated by [`PeerConfig::validate`])
//! plus its [`PeerExtras`]: what the session is not made of but the node decides (the node
//! selector, the source interface). An item with `peers:` is a group: its other keys (a
//! rack's `node_selector`, shared timers) are each member's unless the member sets its own.
//! Errors name the file, the line, the peer (position, `n.m` in a group, and address) and
//! the key; a password is never shown.

use std::fmt;
use std::net::IpAddr;

use bgp::{GracefulRestart, PeerConfig, Secret};
use serde_saphyr::Spanned;

pub use super::peer_values::Tree;
use super::peer_values::{bfd_of, families_of, scalar, selector_of};
use super::peers::{self, parse_asn, parse_bool, parse_gtsm, BfdSpec};
use super::selector::NodeSelector;
use super::{ConfigError, PeerDefaults};

/// `bgp_peers` of a file when it has a mapping among its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePeers {
    /// The file.
    pub path: String,
    /// The items.
    pub items: Vec<Spanned<Tree>>,
}

/// What a configured peer has besides its session: decided on the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerExtras {
    /// Peer only from nodes whose labels match.
    pub node_selector: Option<NodeSelector>,
    /// Take the session's source address from this interface (its first address of the
    /// peer's family).
    pub source_interface: Option<String>,
    /// The TCP MD5 password is a key of a Kubernetes Secret (read through the API).
    pub password_secret: Option<SecretRef>,
}

/// A key of a Kubernetes Secret (`password_secret: {name, key}`, in `cp_namespace`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretRef {
    /// The Secret's namespace (`cp_namespace`).
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// The key in its `data`.
    pub key: String,
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Secret {}/{} key {}",
            self.namespace, self.name, self.key
        )
    }
}

/// A configured peer: its session and what the node decides.
pub type FilePeer = (PeerConfig, PeerExtras);

/// The keys of a peer mapping.
const KEYS: &[&str] = &[
    "address",
    "interface",
    "as",
    "port",
    "password",
    "password_secret",
    "multihop",
    "gtsm",
    "source",
    "source_interface",
    "local_as",
    "hold_time",
    "keepalive",
    "passive",
    "bfd",
    "graceful_restart",
    "families",
    "node_selector",
];

/// Parses every item. `local_as` is `bgp_as`, `bfd` `vipr_bfd`; `d` the node-wide defaults;
/// `secret_ns` the namespace of `password_secret`s (`cp_namespace`).
pub fn parse(
    f: &FilePeers,
    local_as: u32,
    bfd: BfdSpec,
    d: &PeerDefaults,
    secret_ns: &str,
) -> Result<Vec<FilePeer>, ConfigError> {
    let mut out: Vec<FilePeer> = Vec::new();
    for (i, item) in f.items.iter().enumerate() {
        let n = i + 1;
        let line = item.referenced.line();
        let err = |reason: String| ConfigError::File {
            path: f.path.clone(),
            reason: format!("line {line}: bgp_peers: {reason}"),
        };
        let new: Vec<FilePeer> = match &item.value {
            Tree::Scalar(s) => peers::parse_peers_from(s, n, local_as, bfd, d)
                .map_err(err)?
                .into_iter()
                .map(|p| (p, PeerExtras::default()))
                .collect(),
            Tree::Map(m) if m.iter().any(|(k, _)| k.value == "peers") => {
                let mut v = Vec::new();
                for (label, merged) in group(&f.path, n, m)? {
                    v.push(one(&f.path, &label, &merged, local_as, bfd, d, secret_ns)?);
                }
                v
            }
            Tree::Map(m) => vec![one(&f.path, &n.to_string(), m, local_as, bfd, d, secret_ns)?],
            _ => {
                return Err(err(format!(
                    "peer #{n}: expected a mapping (address: ..., as: ...) or kube-vip's address:AS:password:multihop"
                )))
            }
        };
        for p in new {
            let same = |o: &PeerConfig| match (&o.interface, &p.0.interface) {
                (None, None) => o.address == p.0.address,
                (a, b) => a == b,
            };
            if out.iter().any(|(o, _)| same(o)) {
                let name = bgp::config::peer_name(p.0.address, p.0.interface.as_deref());
                return Err(err(format!("peer #{n} ({name}): listed twice")));
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// A mapping key and its value.
type Entry = (Spanned<String>, Spanned<Tree>);

/// A group of peers (`{peers: [...], KEY: VALUE...}`, item `n`): every key but `peers` is
/// each member's unless the member gives its own (a rack's `node_selector`, its timers).
/// The members as `(label "n.m", merged mapping)`.
fn group(path: &str, n: usize, m: &[Entry]) -> Result<Vec<(String, Vec<Entry>)>, ConfigError> {
    let at = |line: u64, reason: String| ConfigError::File {
        path: path.to_string(),
        reason: format!("line {line}: bgp_peers: group #{n}: {reason}"),
    };
    let mut shared: Vec<&Entry> = Vec::new();
    let mut members = None;
    for e in m {
        match e.0.value.as_str() {
            "peers" => members = Some(&e.1),
            k @ ("address" | "interface") => {
                return Err(at(
                    e.0.referenced.line(),
                    format!("{k}: a group's {k} is each member's: give it in peers"),
                ))
            }
            k if KEYS.contains(&k) => shared.push(e),
            _ => {
                return Err(at(
                    e.0.referenced.line(),
                    "unknown key (not repeated here: it may be a value); a group takes peers and any peer key but address".into(),
                ))
            }
        }
    }
    let Some(members) = members else {
        let line = m.first().map_or(0, |(k, _)| k.referenced.line());
        return Err(at(line, "peers: missing".into()));
    };
    let Tree::List(items) = &members.value else {
        return Err(at(
            members.referenced.line(),
            "peers: expected a list of peer mappings".into(),
        ));
    };
    let mut out = Vec::new();
    for (j, item) in items.iter().enumerate() {
        let Tree::Map(own) = &item.value else {
            return Err(at(
                item.referenced.line(),
                format!(
                    "peer #{n}.{}: a group's peers are mappings (address: ..., as: ...)",
                    j + 1
                ),
            ));
        };
        let mut merged = own.clone();
        for e in &shared {
            if !own.iter().any(|(k, _)| k.value == e.0.value) {
                merged.push((*e).clone());
            }
        }
        out.push((format!("{n}.{}", j + 1), merged));
    }
    Ok(out)
}

/// One mapping (peer number `n`: `3`, or `3.1` in a group).
fn one(
    path: &str,
    n: &str,
    m: &[(Spanned<String>, Spanned<Tree>)],
    local_as: u32,
    base_bfd: BfdSpec,
    d: &PeerDefaults,
    secret_ns: &str,
) -> Result<FilePeer, ConfigError> {
    let map_line = m.first().map_or(0, |(k, _)| k.referenced.line());
    let addr_text = get(m, "address").and_then(|(_, v)| scalar(&v.value));
    let iface_text = get(m, "interface").and_then(|(_, v)| scalar(&v.value));
    let who = match (addr_text.and_then(|a| a.parse::<IpAddr>().ok()), iface_text) {
        (Some(a), _) => format!("peer #{n} ({a})"),
        (None, Some(i)) if interface_name(i).is_ok() => format!("peer #{n} (interface {i})"),
        _ => format!("peer #{n}"),
    };
    let at = |line: u64, key: &str, reason: String| ConfigError::File {
        path: path.to_string(),
        reason: format!("line {line}: bgp_peers: {who}: {key}: {reason}"),
    };
    for (k, v) in m {
        if !KEYS.contains(&k.value.as_str()) {
            // Repeated only when it is a near miss of a key (else it may be a misplaced
            // value, a password among them), as the file's settings are.
            let key = k.value.to_ascii_lowercase();
            let near = KEYS
                .iter()
                .map(|known| (super::source::edits(&key, known), *known))
                .filter(|(d, known)| *d <= (known.len() / 4).max(1))
                .min();
            let reason = match near {
                Some((_, known)) => format!("{:?} (did you mean {known}?)", k.value),
                None => "(not repeated here: it may be a value)".into(),
            };
            return Err(at(
                k.referenced.line(),
                "unknown key",
                format!("{reason}; a peer takes {}", KEYS.join(", ")),
            ));
        }
        if m.iter().filter(|(o, _)| o.value == k.value).count() > 1 {
            return Err(at(v.referenced.line(), &k.value, "given twice".into()));
        }
    }
    // The value of a scalar key, parsed; errors show the value (never the password's).
    let field = |key: &'static str| -> Result<Option<(u64, &str)>, ConfigError> {
        match get(m, key) {
            None => Ok(None),
            Some((kl, v)) => match &v.value {
                Tree::Scalar(s) => Ok(Some((kl, s.as_str()))),
                // A password is text as written: YAML would turn `1.10` into 1.1.
                Tree::Typed(_) if key == "password" => Err(at(
                    kl,
                    key,
                    "quote it: YAML reads an unquoted number or true/false as a value of its own, not as the text written".into(),
                )),
                Tree::Typed(s) => Ok(Some((kl, s.as_str()))),
                Tree::Null => Ok(None),
                _ => Err(at(
                    kl,
                    key,
                    "expected a value, not a list or a mapping".into(),
                )),
            },
        }
    };
    let shown = |key: &str, v: &str| match key {
        "password" => String::new(),
        _ => format!("{v:?}: "),
    };
    macro_rules! parse {
        ($key:expr, $f:expr) => {
            match field($key)? {
                None => None,
                Some((l, v)) => Some(
                    ($f)(v).map_err(|e: String| at(l, $key, format!("{}{e}", shown($key, v))))?,
                ),
            }
        };
    }
    // BGP unnumbered: the router on an interface, found from its Router Advertisements
    // (`unnumbered.rs`); its address is unknown (`::`) until then.
    let interface = parse!("interface", interface_name);
    if interface.is_some() && addr_text.is_some() {
        let l = get(m, "interface").map_or(map_line, |(l, _)| l);
        return Err(at(
            l,
            "interface",
            "address and interface exclude each other: give one".into(),
        ));
    }
    let address: IpAddr = match field("address")? {
        None if interface.is_some() => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        None => {
            return Err(at(
                map_line,
                "address",
                "missing: every peer needs one (or an interface, for BGP unnumbered)".into(),
            ))
        }
        Some((l, v)) => v.trim().parse().map_err(|_| {
            at(
                l,
                "address",
                format!("{v:?}: not an IP address: {}", peers::why_not_ip(v)),
            )
        })?,
    };
    let own_local_as = parse!("local_as", parse_asn).unwrap_or(local_as);
    let (remote_as, external) = match field("as")? {
        None => {
            return Err(at(
                map_line,
                "as",
                "missing: an AS number, external or internal".into(),
            ))
        }
        Some((_, "external")) => (0, true),
        Some((_, "internal")) => (own_local_as, false),
        Some((l, v)) => (
            parse_asn(v).map_err(|e| at(l, "as", format!("{e}; or external, internal")))?,
            false,
        ),
    };
    let port = parse!("port", |v: &str| v
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| "expected 1..=65535".to_string()))
    .unwrap_or(179);
    let password = parse!("password", |v: &str| Ok::<_, String>(Secret::new(v)));
    let password_secret = match get(m, "password_secret") {
        None => None,
        Some((l, v)) => {
            Some(secret_of(&v.value, secret_ns).map_err(|e| at(l, "password_secret", e))?)
        }
    };
    if password.is_some() && password_secret.is_some() {
        let l = get(m, "password_secret").map_or(map_line, |(l, _)| l);
        return Err(at(
            l,
            "password_secret",
            "password and password_secret exclude each other: give one".into(),
        ));
    }
    let ttl = parse!("multihop", |v: &str| match parse_bool(v) {
        Some(true) => Ok(Some(255)),
        Some(false) => Ok(None),
        None => match v.trim().parse::<u8>() {
            Ok(t) if t >= 2 => Ok(Some(t)),
            _ => Err("expected true (TTL 255), false, or a TTL 2..=255".to_string()),
        },
    })
    .flatten();
    let gtsm = parse!("gtsm", parse_gtsm);
    if ttl.is_some() && gtsm.flatten().is_some() {
        let l = get(m, "gtsm").map_or(map_line, |(l, _)| l);
        return Err(at(l, "gtsm", "GTSM and multihop exclude each other: GTSM sends TTL 255 and gives the hops it may cross".into()));
    }
    let source = parse!("source", |v: &str| v
        .trim()
        .parse::<IpAddr>()
        .map_err(|_| format!("not an IP address: {}", peers::why_not_ip(v))));
    let source_interface = parse!("source_interface", interface_name);
    if source.is_some() && source_interface.is_some() {
        let l = get(m, "source_interface").map_or(map_line, |(l, _)| l);
        return Err(at(
            l,
            "source_interface",
            "source and source_interface exclude each other: give one".into(),
        ));
    }
    let hold_time = parse!("hold_time", |v: &str| match v.trim().parse::<u16>() {
        Ok(h) if h != 1 && h != 2 => Ok(h),
        _ => Err("must be 0 or 3..=65535 seconds (RFC 4271 §4.2)".to_string()),
    });
    let keepalive = parse!("keepalive", |v: &str| v
        .trim()
        .parse::<u16>()
        .map_err(|_| "expected seconds, 0..=21845".to_string()));
    let hold = hold_time.unwrap_or(d.hold_time);
    let keepalive = match keepalive {
        Some(k) => Some(k).filter(|k| *k > 0),
        None => d.keepalive,
    };
    if let Some(k) = keepalive.filter(|k| hold > 0 && *k >= hold) {
        let l = get(m, "keepalive")
            .or(get(m, "hold_time"))
            .map_or(map_line, |(l, _)| l);
        return Err(at(
            l,
            "keepalive",
            format!("{k} must be less than the hold time ({hold})"),
        ));
    }
    let passive = parse!("passive", |v: &str| parse_bool(v)
        .ok_or_else(|| "expected true or false".to_string()))
    .unwrap_or(false);
    let bfd_spec = match get(m, "bfd") {
        None => None,
        Some((l, v)) => Some(bfd_of(&v.value, base_bfd).map_err(|e| at(l, "bfd", e))?),
    };
    if ttl.is_some() && bfd_spec.is_some_and(|b| b.enabled) {
        let l = get(m, "bfd").map_or(map_line, |(l, _)| l);
        return Err(at(
            l,
            "bfd",
            "BFD is single-hop (RFC 5881); not for a multihop peer".into(),
        ));
    }
    let bfd = match bfd_spec {
        Some(b) => b.to_config(),
        None if ttl.is_some() => None,
        None => base_bfd.to_config(),
    };
    let graceful_restart = parse!("graceful_restart", |v: &str| match parse_bool(v) {
        Some(false) => Ok(None),
        Some(true) => Ok(Some(d.graceful_restart.unwrap_or(GracefulRestart {
            restart_time: 120,
            forwarding_preserved: true,
        }))),
        None => match v.trim().parse::<u16>() {
            Ok(t @ 1..=4095) => Ok(Some(GracefulRestart {
                restart_time: t,
                forwarding_preserved: true,
            })),
            _ => Err("expected true, false or a restart time 1..=4095 seconds".to_string()),
        },
    });
    let families = match get(m, "families") {
        None => None,
        Some((l, v)) => Some(families_of(&v.value).map_err(|e| at(l, "families", e))?),
    };
    let node_selector = match get(m, "node_selector") {
        None => None,
        Some((l, v)) => Some(selector_of(&v.value).map_err(|e| at(l, "node_selector", e))?),
    };
    let mut p = peers::peer(
        address,
        remote_as,
        own_local_as,
        password,
        ttl.is_some(),
        port,
        bfd,
        gtsm,
        d,
    );
    p.remote_as_external = external;
    if let Some(i) = &interface {
        // On the link, as `unnumbered:` entries: one hop, the session's own link-local
        // address the next hop of both families; what the node decides per peer is keyed
        // by address, which such a peer has only once its router is heard.
        for key in [
            "multihop",
            "source",
            "source_interface",
            "node_selector",
            "password_secret",
        ] {
            if let Some((l, _)) = get(m, key) {
                return Err(at(
                    l,
                    key,
                    "not for a peer on an interface (BGP unnumbered)".into(),
                ));
            }
        }
        p.interface = Some(i.clone());
    }
    p.ttl = ttl;
    p.source = source;
    p.hold_time = hold;
    p.keepalive = keepalive;
    p.passive = passive;
    if let Some(gr) = graceful_restart {
        p.graceful_restart = gr;
    }
    if let Some(f) = families {
        p.families = f;
    }
    // The one check of what the session relies on; a password is named, never shown.
    p.validate().map_err(|e| {
        at(
            get(m, e.field).map_or(map_line, |(l, _)| l),
            e.field,
            e.reason,
        )
    })?;
    Ok((
        p,
        PeerExtras {
            node_selector,
            source_interface,
            password_secret,
        },
    ))
}

/// An interface name as the kernel takes it.
fn interface_name(v: &str) -> Result<String, String> {
    let v = v.trim();
    match !v.is_empty() && v.len() <= 15 && !v.contains(['/', ' ', ':']) {
        true => Ok(v.to_string()),
        false => {
            Err("expected an interface name (1..=15 characters, no '/', ':' or spaces)".into())
        }
    }
}

/// The line of a key and its value.
fn get<'a>(
    m: &'a [(Spanned<String>, Spanned<Tree>)],
    key: &str,
) -> Option<(u64, &'a Spanned<Tree>)> {
    m.iter()
        .find(|(k, _)| k.value == key)
        .map(|(k, v)| (k.referenced.line(), v))
}

/// `password_secret:` `{name, key}` of a Secret in `ns`.
fn secret_of(t: &Tree, ns: &str) -> Result<SecretRef, String> {
    let Tree::Map(m) = t else {
        return Err("expected a mapping {name: SECRET, key: KEY}".into());
    };
    let mut name = None;
    let mut key = None;
    for (k, v) in m {
        let v = scalar(&v.value).map(str::trim);
        match k.value.as_str() {
            "name" => name = v,
            "key" => key = v,
            other => {
                return Err(format!(
                    "unknown key {other:?}; password_secret takes name, key"
                ))
            }
        }
    }
    let name = name.filter(|n| !n.is_empty()).ok_or("name is missing")?;
    let key = key.filter(|n| !n.is_empty()).ok_or("key is missing")?;
    let dns = |s: &str| {
        s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
    };
    if !dns(name) {
        return Err(format!(
            "name {name:?} is not a Secret name (a DNS subdomain)"
        ));
    }
    if key.len() > 253
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "key {key:?}: letters, digits, '-', '_' and '.' only"
        ));
    }
    Ok(SecretRef {
        namespace: ns.to_string(),
        name: name.to_string(),
        key: key.to_string(),
    })
}
