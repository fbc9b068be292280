//! The values of a peer mapping in the YAML file (`peer_map`): the tree the file is read
//! into (scalars as text, with where each item is), and the nested values of a peer —
//! `bfd`, `families`, `node_selector` (a Kubernetes LabelSelector) — each checked with a
//! message in the file's terms.

use std::collections::BTreeMap;
use std::fmt;

use bgp::Family;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::peers::BfdSpec;
use super::selector::{self, NodeSelector, Op, Requirement};

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

/// A scalar's text.
pub fn scalar(t: &Tree) -> Option<&str> {
    match t {
        Tree::Scalar(s) | Tree::Typed(s) => Some(s),
        _ => None,
    }
}

/// `bfd:` as `vipr_bfd` (`true;300;300;3`, or `true`), or a mapping of its fields
/// (`enabled`, `rx`, `tx`, `multiplier`; missing ones from `vipr_bfd`).
pub fn bfd_of(t: &Tree, base: BfdSpec) -> Result<BfdSpec, String> {
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

/// `families:` a list of `ipv4-unicast` / `ipv6-unicast` (or `ipv4`, `ipv6`).
pub fn families_of(t: &Tree) -> Result<Vec<Family>, String> {
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
pub fn selector_of(t: &Tree) -> Result<NodeSelector, String> {
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
