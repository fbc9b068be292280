//! Node selectors of configured peers (rack-aware peering) and the node labels they match:
//! a Kubernetes `LabelSelector` (`matchLabels`, and `matchExpressions` with `In`, `NotIn`,
//! `Exists`, `DoesNotExist`, as k8s.io/apimachinery `pkg/labels/selector.go` and MetalLB
//! v0.16.1 BGPPeer `nodeSelectors`), matched against the labels of the node vipr runs on
//! (its Node object, or `vipr_node_labels`). Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

/// A node's labels.
pub type Labels = BTreeMap<String, String>;

/// One `matchExpressions` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub op: Op,
    /// The values (`In`, `NotIn`: at least one; `Exists`, `DoesNotExist`: none).
    pub values: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The label is present with one of the values.
    In,
    /// The label is absent or has none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl Op {
    /// Parses Kubernetes' spelling.
    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "In" => Some(Op::In),
            "NotIn" => Some(Op::NotIn),
            "Exists" => Some(Op::Exists),
            "DoesNotExist" => Some(Op::DoesNotExist),
            _ => None,
        }
    }
}

/// A node selector: every `match_labels` pair and every requirement must hold (an empty
/// selector selects every node, as an empty Kubernetes LabelSelector).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSelector {
    /// `matchLabels`: the label has exactly this value.
    pub match_labels: Labels,
    /// `matchExpressions`.
    pub match_expressions: Vec<Requirement>,
}

impl NodeSelector {
    /// `None` when the labels are selected; else the first condition that fails, for
    /// `vipr status` (labels are not secret).
    pub fn mismatch(&self, labels: &Labels) -> Option<String> {
        for (k, v) in &self.match_labels {
            match labels.get(k) {
                Some(have) if have == v => {}
                Some(have) => return Some(format!("label {k}={have}, the peer wants {k}={v}")),
                None => return Some(format!("no label {k}, the peer wants {k}={v}")),
            }
        }
        for r in &self.match_expressions {
            let have = labels.get(&r.key);
            let ok = match r.op {
                Op::In => have.is_some_and(|h| r.values.contains(h)),
                Op::NotIn => !have.is_some_and(|h| r.values.contains(h)),
                Op::Exists => have.is_some(),
                Op::DoesNotExist => have.is_none(),
            };
            if !ok {
                let now = match have {
                    Some(h) => format!("label {}={h}", r.key),
                    None => format!("no label {}", r.key),
                };
                return Some(format!("{now}, the peer wants {r}"));
            }
        }
        None
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Op::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Op::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Op::Exists => write!(f, "{} present", self.key),
            Op::DoesNotExist => write!(f, "{} absent", self.key),
        }
    }
}

/// Checks a label key: `[prefix/]name`, the name 1..=63 characters of alphanumerics, `-`,
/// `_`, `.`, starting and ending alphanumeric (Kubernetes' qualified name; the prefix a DNS
/// subdomain of at most 253 characters).
pub fn check_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !ok {
            return Err(format!(
                "label key {k:?}: the prefix must be a DNS subdomain"
            ));
        }
    }
    check_value(name)
        .and_then(|()| match name.is_empty() {
            true => Err(String::new()),
            false => Ok(()),
        })
        .map_err(|_| format!("label key {k:?}: the name must be 1..=63 characters of letters, digits, '-', '_', '.', starting and ending with a letter or digit"))
}

/// Checks a label value: empty, or up to 63 characters of alphanumerics, `-`, `_`, `.`,
/// starting and ending alphanumeric.
pub fn check_value(v: &str) -> Result<(), String> {
    let inner = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
    let ends = |b: Option<&u8>| b.is_none_or(|b| b.is_ascii_alphanumeric());
    if v.len() <= 63
        && v.bytes().all(inner)
        && ends(v.as_bytes().first())
        && ends(v.as_bytes().last())
    {
        Ok(())
    } else {
        Err(format!("label value {v:?}: up to 63 characters of letters, digits, '-', '_', '.', starting and ending with a letter or digit"))
    }
}

/// `vipr_node_labels`: `key=value` pairs separated by commas (`rack=r1,zone=a`; the YAML
/// file may give a mapping).
pub fn parse_labels(s: &str) -> Result<Labels, String> {
    let mut out = Labels::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        check_key(k)?;
        check_value(v)?;
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("label {k} is given twice"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &str) -> Labels {
        parse_labels(s).unwrap()
    }

    #[test]
    fn match_labels_and_expressions_as_kubernetes() {
        let sel = NodeSelector {
            match_labels: labels("rack=r1"),
            match_expressions: vec![],
        };
        assert_eq!(sel.mismatch(&labels("rack=r1,zone=a")), None);
        assert_eq!(
            sel.mismatch(&labels("rack=r2")).unwrap(),
            "label rack=r2, the peer wants rack=r1"
        );
        assert!(sel
            .mismatch(&Labels::new())
            .unwrap()
            .starts_with("no label rack"));
        assert_eq!(NodeSelector::default().mismatch(&Labels::new()), None);
        let req = |key: &str, op, values: &[&str]| Requirement {
            key: key.into(),
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let expr = |r: Requirement| NodeSelector {
            match_labels: Labels::new(),
            match_expressions: vec![r],
        };
        let l = labels("rack=r1,topology.kubernetes.io/zone=a");
        assert_eq!(expr(req("rack", Op::In, &["r1", "r2"])).mismatch(&l), None);
        assert!(expr(req("rack", Op::In, &["r3"])).mismatch(&l).is_some());
        assert!(expr(req("other", Op::In, &["r3"])).mismatch(&l).is_some());
        assert!(expr(req("rack", Op::NotIn, &["r1"])).mismatch(&l).is_some());
        assert_eq!(expr(req("other", Op::NotIn, &["r1"])).mismatch(&l), None);
        assert_eq!(
            expr(req("topology.kubernetes.io/zone", Op::Exists, &[])).mismatch(&l),
            None
        );
        assert!(expr(req("rack", Op::DoesNotExist, &[]))
            .mismatch(&l)
            .is_some());
        assert_eq!(expr(req("spine", Op::DoesNotExist, &[])).mismatch(&l), None);
    }

    #[test]
    fn labels_parse_and_check() {
        assert_eq!(labels(" rack=r1 , zone= "), labels("zone=,rack=r1"));
        assert!(parse_labels("rack").is_err());
        assert!(parse_labels("rack=r1,rack=r2")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_labels("ra ck=r1").is_err());
        assert!(parse_labels("rack=-r1").is_err());
        assert!(parse_labels("Example.com/rack=r1").is_err());
        assert!(parse_labels("example.com/rack=r1").is_ok());
    }
}
