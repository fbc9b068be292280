//! Layering of configuration sources, lowest to highest precedence: flags, the YAML file,
//! the environment (kube-vip's order; built-in defaults come from the typed parse). Every
//! value remembers where it came from so that an error can name the variable, the flag or
//! the file line, and every layer's value is kept (not only the winner) so that a bad value
//! is refused even where a higher layer overrides it. Two spellings of one setting in the
//! same layer (`--vip` and `--address`, `address` and `ADDRESS`, `address` and
//! `vip_address`) are refused naming both. kube-vip's variables that vipr does not implement
//! are kept apart, in the environment and the file, for [`super::kubevip::check`].
//!
//! YAML scalars are kept exactly as written (`bgp_as: 1.10` is the asdot AS 65546, not the
//! number 1.1), and YAML errors never quote the file (a password may be on the line): they
//! give the line, the column and the setting whose block it is in, and repeat a key only when
//! it is a setting's name or a near miss of one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use serde_saphyr::Spanned;

use super::keys::{self, Key};
use super::kubevip;
use super::peer_map::{FilePeers, Tree};
use super::ConfigError;

/// Where a raw value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `--flag`.
    Flag(String),
    /// A line of the YAML file.
    File {
        /// The file.
        path: String,
        /// 1-based line.
        line: u32,
    },
    /// An environment variable.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(n) => write!(f, "flag --{n}"),
            Origin::File { path, line } => write!(f, "{path}:{line}"),
            Origin::Env(n) => write!(f, "env {n}"),
        }
    }
}

/// A raw value with its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    /// The text as given (lists joined with commas).
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
}

/// All raw values by key name, each key's values in precedence order (the last wins).
#[derive(Debug, Clone, Default)]
pub struct Layers {
    values: BTreeMap<&'static str, Vec<Raw>>,
    /// kube-vip's variables vipr does not implement ([`super::kubevip`]), kept to be
    /// warned about or refused.
    unsupported: BTreeMap<&'static str, Vec<Raw>>,
    /// `bgp_peers` of the file when an item is a mapping (its text value is then empty).
    pub file_peers: Option<FilePeers>,
    /// Settings for another machine (`vipr manifest`): files the settings name are on the
    /// node, not here, so they are not read (only the daemon's own start reads them).
    pub elsewhere: bool,
}

/// The name a key's spelling group goes by (`vip_address` is `address`).
fn group(key: &Key) -> &'static str {
    key.same_as.unwrap_or(key.name)
}

impl Layers {
    /// Sets a value on top of the lower-precedence ones.
    pub fn set(&mut self, key: &'static Key, value: String, origin: Origin) {
        self.values
            .entry(key.name)
            .or_default()
            .push(Raw { value, origin });
    }

    /// The winning raw value of a key.
    pub fn get(&self, name: &str) -> Option<&Raw> {
        self.values.get(name).and_then(|v| v.last())
    }

    /// Every raw value of a key, lowest precedence first.
    pub fn all(&self, name: &str) -> &[Raw] {
        self.values.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// Every raw value of a kube-vip variable vipr does not implement, lowest precedence
    /// first.
    pub fn unsupported(&self, name: &str) -> &[Raw] {
        self.unsupported
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Adds one layer's kube-vip variables that vipr does not implement, refusing one
    /// given under two spellings (`egress_clean` and `EGRESS_CLEAN`).
    fn add_unsupported(
        &mut self,
        entries: Vec<(&'static str, String, Origin)>,
    ) -> Result<(), ConfigError> {
        let mut seen: BTreeMap<&'static str, Origin> = BTreeMap::new();
        for (name, _, origin) in entries.iter().filter(|(_, v, _)| !v.trim().is_empty()) {
            if let Some(first) = seen.insert(name, origin.clone()) {
                return Err(ConfigError::Twice {
                    first,
                    second: origin.clone(),
                });
            }
        }
        for (name, value, origin) in entries {
            self.unsupported
                .entry(name)
                .or_default()
                .push(Raw { value, origin });
        }
        Ok(())
    }

    /// Adds one layer: its `(key, value, origin)` entries, refusing two entries for the
    /// same setting (under any of its names). An empty value (an unset variable in a
    /// manifest) does not count.
    fn add_layer(
        &mut self,
        entries: Vec<(&'static Key, String, Origin)>,
    ) -> Result<(), ConfigError> {
        let mut seen: BTreeMap<&'static str, Origin> = BTreeMap::new();
        for (key, _, origin) in entries.iter().filter(|(_, v, _)| !v.trim().is_empty()) {
            if let Some(first) = seen.insert(group(key), origin.clone()) {
                return Err(ConfigError::Twice {
                    first,
                    second: origin.clone(),
                });
            }
        }
        for (key, value, origin) in entries {
            self.set(key, value, origin);
        }
        Ok(())
    }

    /// Flags: `(flag spelling, value)` pairs as given on the command line.
    pub fn add_flags<'a>(
        &mut self,
        flags: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Result<(), ConfigError> {
        let mut entries = Vec::new();
        for (flag, value) in flags {
            if let Some(key) = keys::KEYS
                .iter()
                .find(|k| keys::flag_name(k) == flag || k.flags.contains(&flag))
            {
                entries.push((key, value, Origin::Flag(flag.to_string())));
            }
        }
        self.add_layer(entries)
    }

    /// kube-vip's flags of variables vipr does not implement (`vipr manifest --wireguard`):
    /// `(variable, flag spelling, value)`, kept like the environment's for
    /// [`super::kubevip::check`], each origin the flag as given.
    pub fn add_unsupported_flags<'a>(
        &mut self,
        flags: impl IntoIterator<Item = (&'static str, &'a str, String)>,
    ) -> Result<(), ConfigError> {
        self.add_unsupported(
            flags
                .into_iter()
                .map(|(name, flag, v)| (name, v, Origin::Flag(flag.to_string())))
                .collect(),
        )
    }

    /// The environment: exact kube-vip names, and the same names in upper case.
    pub fn add_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let mut entries = Vec::new();
        for key in keys::KEYS {
            let upper = key.name.to_ascii_uppercase();
            let mut names = vec![key.name];
            if upper != key.name {
                names.push(upper.as_str());
            }
            for name in names {
                if let Some(v) = lookup(name) {
                    entries.push((key, v, Origin::Env(name.to_string())));
                }
            }
        }
        let mut unsupported = Vec::new();
        for u in kubevip::UNSUPPORTED {
            let upper = u.name.to_ascii_uppercase();
            for name in [u.name, upper.as_str()] {
                if let Some(v) = lookup(name) {
                    unsupported.push((u.name, v, Origin::Env(name.to_string())));
                }
                if upper == u.name {
                    break;
                }
            }
        }
        self.add_layer(entries)?;
        self.add_unsupported(unsupported)
    }

    /// A YAML file: a mapping of key names to scalars or lists of scalars.
    pub fn add_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: io_reason(&e),
        })?;
        self.add_yaml(&path.display().to_string(), &text)
    }

    /// Parses YAML text (see [`Layers::add_file`]).
    pub fn add_yaml(&mut self, path: &str, text: &str) -> Result<(), ConfigError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        let file_error = |e: serde_saphyr::Error| ConfigError::File {
            path: path.to_string(),
            reason: yaml_reason(&e, text),
        };
        // Pass 1: the keys, where their values are, and which are lists.
        let shapes: BTreeMap<String, serde_saphyr::Spanned<Shape>> =
            serde_saphyr::from_str(text).map_err(file_error)?;
        // Pass 2: the values, scalars as written (a list's items as well).
        LISTS.with(|l| {
            *l.borrow_mut() = shapes
                .iter()
                .filter(|(_, s)| s.value == Shape::List)
                .map(|(k, _)| k.clone())
                .collect()
        });
        let values = serde_saphyr::from_str::<FileMap>(text).map_err(file_error);
        LISTS.with(|l| l.borrow_mut().clear());
        let values = values?;
        self.file_peers = values.1.map(|items| FilePeers {
            path: path.to_string(),
            items,
        });
        let mut entries = Vec::new();
        let mut unsupported = Vec::new();
        for (name, value) in values.0 {
            let line = shapes.get(&name).map_or(0, |s| s.referenced.line() as u32);
            let origin = Origin::File {
                path: path.to_string(),
                line,
            };
            if let (None, Some(u)) = (keys::find(&name), kubevip::find(&name)) {
                match value {
                    Some(v) => unsupported.push((u.name, v, origin)),
                    None => {
                        return Err(ConfigError::File {
                            path: path.to_string(),
                            reason: format!(
                                "line {line}: {name}: expected a value or a list of values"
                            ),
                        })
                    }
                }
                continue;
            }
            let Some(key) = keys::find(&name) else {
                return Err(match near_miss(&name) {
                    Some(known) => ConfigError::UnknownKey {
                        origin,
                        key: name,
                        known,
                    },
                    None => ConfigError::File {
                        path: path.to_string(),
                        reason: format!("line {line}: a key that is no setting's name (not repeated here: it may be a value)"),
                    },
                });
            };
            match value {
                Some(v) => entries.push((key, v, origin)),
                None => {
                    return Err(ConfigError::File {
                        path: path.to_string(),
                        reason: format!(
                            "line {line}: {name}: expected a value or a list of values"
                        ),
                    })
                }
            }
        }
        self.add_layer(entries)?;
        self.add_unsupported(unsupported)
    }
}

/// Why a file cannot be read, without the OS error number (`No such file or directory`).
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.rsplit_once(" (os error ") {
        Some((head, _)) => head.to_string(),
        None => s,
    };
    match e.kind() {
        std::io::ErrorKind::InvalidData => "cannot read it: not UTF-8 text".into(),
        _ => format!("cannot read it: {s}"),
    }
}

/// A YAML error without the source snippet the parser adds (the offending line may hold a
/// password): `line L column C (in KEY): what`, KEY the setting whose block the line is in.
fn yaml_reason(e: &serde_saphyr::Error, text: &str) -> String {
    let full = e.without_snippet().to_string();
    let first = full.lines().next().unwrap_or_default();
    let mut what = first.trim_start_matches("error: ");
    // The parser's advice to its caller, not to the user.
    for cut in [", set DuplicateKeyPolicy", "; use from_str_multiple"] {
        what = what.split(cut).next().unwrap_or(what);
    }
    // The location, from the error or (for a value's error) from the end of its text.
    let (what, loc) = match e.location() {
        Some(l) => (what, Some((l.line() as usize, l.column() as usize))),
        None => trailing_location(what),
    };
    let Some((line, column)) = loc else {
        return plain(what);
    };
    let at = format!("line {line} column {column}");
    let what = what
        .strip_prefix(&at)
        .map_or(what, |w| w.trim_start_matches(':').trim_start());
    let what = what
        .strip_suffix(&format!(" at line {line}, column {column}"))
        .unwrap_or(what);
    // A value's error names its setting first (`bgp_as: ...`): the block says it already.
    let key = key_at(text, line);
    let what = match key {
        Some(k) => what
            .strip_prefix(k)
            .and_then(|w| w.strip_prefix(": "))
            .unwrap_or(what),
        None => what,
    };
    match key {
        Some(k) => format!("{at} (in {k}): {}", plain(what)),
        None => format!("{at}: {}", plain(what)),
    }
}

/// `(text, Some((line, column)))` from a message ending ` at line L, column C`.
fn trailing_location(what: &str) -> (&str, Option<(usize, usize)>) {
    let Some((head, tail)) = what.rsplit_once(" at line ") else {
        return (what, None);
    };
    let Some((l, c)) = tail.split_once(", column ") else {
        return (what, None);
    };
    match (l.parse(), c.parse()) {
        (Ok(l), Ok(c)) => (head, Some((l, c))),
        _ => (what, None),
    }
}

/// The parser's words for what is wrong, in the file's terms; a duplicate key is repeated
/// only when it is a setting's name (another "key" may be a value on a misindented line).
fn plain(what: &str) -> String {
    if let Some(k) = what.strip_prefix("duplicate mapping key: ") {
        return match keys::find(k.trim()) {
            Some(key) => format!("{} is given twice", key.name),
            None => "a key is given twice (not repeated here: it may be a value)".into(),
        };
    }
    for (said, meant) in [
        ("expected string scalar", "expected a value (text or a number), not a mapping or a list"),
        ("expected mapping start", "expected settings as `name: value` lines"),
        ("mapping values are not allowed in this context", "`name: value` where a value was expected: check the indentation, or quote a value that contains ': '"),
    ] {
        if what.trim() == said {
            return meant.into();
        }
    }
    what.to_string()
}

/// The setting whose block holds 1-based `line`: the last line at or above it that starts a
/// top-level key naming a setting (other text may be a value, so it is never returned).
fn key_at(text: &str, line: usize) -> Option<&'static str> {
    text.lines()
        .take(line)
        .filter_map(|l| {
            let (k, _) = l.split_once(':')?;
            let k = k.trim_end().trim_matches(|c| c == '"' || c == '\'');
            (!l.starts_with(char::is_whitespace)).then(|| keys::find(k))?
        })
        .map(|k| k.name)
        .last()
}

/// The setting an unknown key is a typo of: within a quarter of its length in edits
/// (Levenshtein, at least one), ignoring case.
fn near_miss(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    keys::KEYS
        .iter()
        .map(|k| (edits(&key, &k.name.to_ascii_lowercase()), k.name))
        .filter(|(d, name)| *d <= (name.len() / 4).max(1))
        .min()
        .map(|(_, name)| name)
}

/// Levenshtein distance.
pub(super) fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// What a file value is, from the first pass.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    Scalar,
    List,
    Other,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shape, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_none<E>(self) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Shape, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Shape::List)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Shape, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Shape::Other)
            }
        }
        d.deserialize_any(V)
    }
}

thread_local! {
    /// The keys whose values are lists, from pass 1, for pass 2 on the same thread.
    static LISTS: std::cell::RefCell<std::collections::BTreeSet<String>> =
        const { std::cell::RefCell::new(std::collections::BTreeSet::new()) };
}

/// Pass 2: every key with its text (`None` for a value that is neither a scalar nor a list
/// of scalars); list items joined with commas; `bgp_peers` as items when one is a mapping.
struct FileMap(Vec<(String, Option<String>)>, Option<Vec<Spanned<Tree>>>);

impl<'de> Deserialize<'de> for FileMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FileMap, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<FileMap, A::Error> {
                let mut out = Vec::new();
                let mut trees = None;
                while let Some(k) = m.next_key::<String>()? {
                    let list = LISTS.with(|l| l.borrow().contains(&k));
                    let v = if k == "bgp_peers" && list {
                        // Items may be mappings (a peer with every option).
                        let items = m.next_value::<Vec<Spanned<Tree>>>()?;
                        let texts: Option<Vec<String>> = items
                            .iter()
                            .map(|i| match &i.value {
                                Tree::Scalar(s) => Some(s.clone()),
                                _ => None,
                            })
                            .collect();
                        match texts {
                            Some(t) => Some(t.join(",")),
                            None => {
                                trees = Some(items);
                                Some(String::new())
                            }
                        }
                    } else if k == "vipr_node_labels" {
                        // A mapping of labels, or `key=value` text.
                        match m.next_value::<Tree>()? {
                            Tree::Map(kv) => Some(
                                kv.iter()
                                    .map(|(k, v)| {
                                        format!(
                                            "{}={}",
                                            k.value,
                                            v.value.joined().unwrap_or_default()
                                        )
                                    })
                                    .collect::<Vec<_>>()
                                    .join(","),
                            ),
                            t => t.joined(),
                        }
                    } else if list {
                        Some(m.next_value::<Vec<String>>()?.join(","))
                    } else {
                        // A key is repeated only when it names a setting (else it may be a value).
                        m.next_value::<Option<String>>()
                            .map_err(|e| match keys::find(&k) {
                                Some(_) => de::Error::custom(format!("{k}: {e}")),
                                None => de::Error::custom(e),
                            })?
                    };
                    out.push((k, v));
                }
                Ok(FileMap(out, trees))
            }
        }
        d.deserialize_map(V)
    }
}

/// Where the configuration comes from, kept so SIGHUP can read it again.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `(flag spelling, value)` pairs from the command line.
    pub flags: Vec<(String, String)>,
    /// `--config` file.
    pub file: Option<std::path::PathBuf>,
}

impl Sources {
    /// Reads flags, the file and the environment into a validated config, with the kube-vip
    /// variables that are set and ignored (one warning line each, for the caller to log).
    pub fn load(&self) -> Result<(super::Config, Vec<kubevip::Ignored>), ConfigError> {
        let mut layers = Layers::default();
        layers.add_flags(self.flags.iter().map(|(k, v)| (k.as_str(), v.clone())))?;
        if let Some(f) = &self.file {
            layers.add_file(f)?;
        }
        // A value that is not UTF-8 is refused, not taken for unset.
        let not_utf8 = std::cell::RefCell::new(None);
        layers.add_env(|n| match std::env::var(n) {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                not_utf8.borrow_mut().get_or_insert_with(|| n.to_string());
                None
            }
        })?;
        if let Some(n) = not_utf8.into_inner() {
            return Err(ConfigError::Invalid {
                origin: Origin::Env(n.clone()),
                key: n,
                value: "<not UTF-8>".into(),
                reason: "the value is not UTF-8 text (it is not shown: it may be a password)"
                    .into(),
            });
        }
        let ignored = kubevip::check(&layers)?;
        Ok((super::Config::from_layers(&layers, &hostname())?, ignored))
    }
}

/// The kernel's host name (the default node name).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
