//! `bgp_peers` in the YAML file as a list whose items are kube-vip's strings or mappings
//! with every option of a peer (`address`, `as`, `port`, `password`, `multihop`, `gtsm`,
//! `source` or `source_interface`, `local_as`, `hold_time`, `keepalive`, `passive`, `bfd`,
//! `graceful_restart`, `families`, `node_selector`, `password_secret`). Each item becomes the one
//! [`PeerConfig`] (built by [`super::peers::peer`], validated by [`PeerConfig::validate`])
//! plus its [`PeerExtras`]: what the session is not made of but the node decides (the node
//! selector, the source interface). Errors name the file, the line, the peer (position and
//! address) and the key; a password is never shown.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use bgp::{Family, GracefulRestart, PeerConfig, Secret};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::peers::{self, parse_asn, parse_bool, parse_gtsm, BfdSpec};
use super::selector::{self, NodeSelector, Op, Requirement};
use super::{ConfigError, PeerDefaults};

/// A YAML value as written: scalars as text (numbers and booleans in their usual spelling),
/// lists and mappings with where each item is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tree {
    /// A string scalar, exactly as written.
    Scalar(String),
    /// A number or a boolean the YAML parser typed, in its canonical spelling (`1.10` is
    /// `1.1`, `0x1F` is `31`): not necessarily as written, so never a password.
    Typed(String),
    /// `~` or nothing.
    Null,
    /// A list.
    List(Vec<Spanned<Tree>>),
    /// A mapping, in file order.
    Map(Vec<(Spanned<String>, Spanned<Tree>)>),
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tree, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value, a list or a mapping")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
                Ok(Tree::Typed(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
                Ok(Tree::Typed(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
                Ok(Tree::Typed(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
                Ok(Tree::Typed(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
                Ok(Tree::Scalar(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Null)
            }
            fn visit_none<E>(self) -> Result<Tree, E> {
                Ok(Tree::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Tree, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element::<Spanned<Tree>>()? {
                    out.push(v);
                }
                Ok(Tree::List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Tree, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    out.push((k, m.next_value::<Spanned<Tree>>()?));
                }
                Ok(Tree::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Tree {
    /// A list of scalars or a scalar as kube-vip's comma-joined text; `None` for anything
    /// else.
    pub fn joined(&self) -> Option<String> {
        match self {
            Tree::Scalar(s) | Tree::Typed(s) => Some(s.clone()),
            Tree::Null => Some(String::new()),
            Tree::List(items) => items
                .iter()
                .map(|i| match &i.value {
                    Tree::Scalar(s) | Tree::Typed(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            Tree::Map(_) => None,
        }
    }
}

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
            Tree::Map(m) => vec![one(&f.path, n, m, local_as, bfd, d, secret_ns)?],
            _ => {
                return Err(err(format!(
                    "peer #{n}: expected a mapping (address: ..., as: ...) or kube-vip's address:AS:password:multihop"
                )))
            }
        };
        for p in new {
            if out.iter().any(|(o, _)| o.address == p.0.address) {
                return Err(err(format!("peer #{n} ({}): listed twice", p.0.address)));
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// One mapping.
fn one(
    path: &str,
    n: usize,
    m: &[(Spanned<String>, Spanned<Tree>)],
    local_as: u32,
    base_bfd: BfdSpec,
    d: &PeerDefaults,
    secret_ns: &str,
) -> Result<FilePeer, ConfigError> {
    let map_line = m.first().map_or(0, |(k, _)| k.referenced.line());
    let addr_text = get(m, "address").and_then(|(_, v)| scalar(&v.value));
    let who = match addr_text.and_then(|a| a.parse::<IpAddr>().ok()) {
        Some(a) => format!("peer #{n} ({a})"),
        None => format!("peer #{n}"),
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
    let address: IpAddr = match field("address")? {
        None => {
            return Err(at(
                map_line,
                "address",
                "missing: every peer needs one".into(),
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
    let source_interface = parse!("source_interface", |v: &str| {
        let v = v.trim();
        match !v.is_empty() && v.len() <= 15 && !v.contains(['/', ' ']) {
            true => Ok(v.to_string()),
            false => Err("expected an interface name (1..=15 characters, no '/' or spaces)".into()),
        }
    });
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

/// The line of a key and its value.
fn get<'a>(
    m: &'a [(Spanned<String>, Spanned<Tree>)],
    key: &str,
) -> Option<(u64, &'a Spanned<Tree>)> {
    m.iter()
        .find(|(k, _)| k.value == key)
        .map(|(k, v)| (k.referenced.line(), v))
}

fn scalar(t: &Tree) -> Option<&str> {
    match t {
        Tree::Scalar(s) | Tree::Typed(s) => Some(s),
        _ => None,
    }
}

/// `bfd:` as `vipr_bfd` (`true;300;300;3`, or `true`), or a mapping of its fields
/// (`enabled`, `rx`, `tx`, `multiplier`; missing ones from `vipr_bfd`).
fn bfd_of(t: &Tree, base: BfdSpec) -> Result<BfdSpec, String> {
    match t {
        Tree::Scalar(s) | Tree::Typed(s) => BfdSpec::parse(s, base),
        Tree::Map(m) => {
            let mut parts = [String::new(), String::new(), String::new(), String::new()];
            for (k, v) in m {
                let i = ["enabled", "rx", "tx", "multiplier"]
                    .iter()
                    .position(|n| *n == k.value)
                    .ok_or_else(|| {
                        format!(
                            "unknown key {:?}; bfd takes enabled, rx, tx, multiplier",
                            k.value
                        )
                    })?;
                parts[i] = scalar(&v.value)
                    .ok_or_else(|| format!("{}: expected a value", k.value))?
                    .to_string();
            }
            if parts[0].is_empty() {
                parts[0] = "true".into();
            }
            BfdSpec::parse(&parts.join(";"), base)
        }
        _ => Err("expected enable;rx;tx;mult as in vipr_bfd, or a mapping".into()),
    }
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

/// `families:` a list of `ipv4-unicast` / `ipv6-unicast` (or `ipv4`, `ipv6`).
fn families_of(t: &Tree) -> Result<Vec<Family>, String> {
    let Tree::List(items) = t else {
        return Err("expected a list, e.g. [ipv4-unicast, ipv6-unicast]".into());
    };
    let mut out = Vec::new();
    for i in items {
        let f = match scalar(&i.value).map(str::trim) {
            Some("ipv4-unicast" | "ipv4") => Family::Ipv4Unicast,
            Some("ipv6-unicast" | "ipv6") => Family::Ipv6Unicast,
            _ => return Err("expected ipv4-unicast or ipv6-unicast".into()),
        };
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

/// `node_selector:` a Kubernetes LabelSelector (`matchLabels`, `matchExpressions`).
fn selector_of(t: &Tree) -> Result<NodeSelector, String> {
    let Tree::Map(m) = t else {
        return Err("expected a mapping with matchLabels and/or matchExpressions".into());
    };
    let mut sel = NodeSelector::default();
    for (k, v) in m {
        match (k.value.as_str(), &v.value) {
            ("matchLabels", Tree::Map(labels)) => {
                for (lk, lv) in labels {
                    let lv = scalar(&lv.value).ok_or("matchLabels: values are text")?;
                    selector::check_key(&lk.value)?;
                    selector::check_value(lv)?;
                    sel.match_labels.insert(lk.value.clone(), lv.to_string());
                }
            }
            ("matchExpressions", Tree::List(reqs)) => {
                for r in reqs {
                    sel.match_expressions.push(requirement(&r.value)?);
                }
            }
            ("matchLabels" | "matchExpressions", _) => {
                return Err(format!(
                    "{}: expected a mapping (matchLabels) or a list (matchExpressions)",
                    k.value
                ))
            }
            (other, _) => {
                return Err(format!(
                    "unknown key {other:?}; a node selector takes matchLabels, matchExpressions"
                ))
            }
        }
    }
    Ok(sel)
}

/// One `matchExpressions` item: `{key, operator, values}`.
fn requirement(t: &Tree) -> Result<Requirement, String> {
    let Tree::Map(m) = t else {
        return Err("matchExpressions: each item is {key, operator, values}".into());
    };
    let mut fields: BTreeMap<&str, &Tree> = BTreeMap::new();
    for (k, v) in m {
        if !["key", "operator", "values"].contains(&k.value.as_str()) {
            return Err(format!(
                "matchExpressions: unknown key {:?}; an item takes key, operator, values",
                k.value
            ));
        }
        fields.insert(k.value.as_str(), &v.value);
    }
    let key = fields
        .get("key")
        .and_then(|t| scalar(t))
        .ok_or("matchExpressions: key is missing")?;
    selector::check_key(key)?;
    let op_text = fields
        .get("operator")
        .and_then(|t| scalar(t))
        .unwrap_or_default();
    let op = Op::parse(op_text).ok_or_else(|| {
        format!(
            "matchExpressions: operator {op_text:?}: expected In, NotIn, Exists or DoesNotExist"
        )
    })?;
    let values: Vec<String> = match fields.get("values") {
        None | Some(Tree::Null) => Vec::new(),
        Some(Tree::List(vs)) => vs
            .iter()
            .map(|v| {
                scalar(&v.value)
                    .map(str::to_string)
                    .ok_or("matchExpressions: values are text")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("matchExpressions: values is a list".into()),
    };
    for v in &values {
        selector::check_value(v)?;
    }
    match (op, values.is_empty()) {
        (Op::In | Op::NotIn, true) => Err(format!("matchExpressions: {op_text} needs values")),
        (Op::Exists | Op::DoesNotExist, false) => {
            Err(format!("matchExpressions: {op_text} takes no values"))
        }
        _ => Ok(Requirement {
            key: key.to_string(),
            op,
            values,
        }),
    }
}
