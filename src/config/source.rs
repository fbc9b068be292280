//! Layering of configuration sources into one map of raw values, lowest to highest
//! precedence: flags, the YAML file, the environment (kube-vip's order; built-in defaults
//! come from the typed parse). Every value remembers where it came from so that an error
//! can name the variable, the flag or the file line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::keys::{self, Key};
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

/// All raw values by key name; later layers replace earlier ones.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    values: BTreeMap<&'static str, Raw>,
}

impl Layers {
    /// Sets a value, replacing a lower-precedence one.
    pub fn set(&mut self, key: &'static Key, value: String, origin: Origin) {
        self.values.insert(key.name, Raw { value, origin });
    }

    /// The raw value of a key.
    pub fn get(&self, name: &str) -> Option<&Raw> {
        self.values.get(name)
    }

    /// Flags: `(flag spelling, value)` pairs as parsed by the CLI.
    pub fn add_flags<'a>(&mut self, flags: impl IntoIterator<Item = (&'a str, String)>) {
        for (flag, value) in flags {
            if let Some(key) = keys::KEYS
                .iter()
                .find(|k| keys::flag_name(k) == flag || k.flags.contains(&flag))
            {
                self.set(key, value, Origin::Flag(flag.to_string()));
            }
        }
    }

    /// The environment: exact kube-vip names, and the same names in upper case.
    pub fn add_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        for key in keys::KEYS {
            let upper = key.name.to_ascii_uppercase();
            for name in [key.name, upper.as_str()] {
                if let Some(v) = lookup(name) {
                    self.set(key, v, Origin::Env(name.to_string()));
                    break;
                }
            }
        }
    }

    /// A YAML file: a mapping of key names to scalars or lists of scalars.
    pub fn add_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.add_yaml(&path.display().to_string(), &text)
    }

    /// Parses YAML text (see [`Layers::add_file`]).
    pub fn add_yaml(&mut self, path: &str, text: &str) -> Result<(), ConfigError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        let map: BTreeMap<String, serde_saphyr::Spanned<FileValue>> = serde_saphyr::from_str(text)
            .map_err(|e| ConfigError::File {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        for (name, v) in map {
            let line = v.referenced.line() as u32;
            let origin = Origin::File {
                path: path.to_string(),
                line,
            };
            let Some(key) = keys::find(&name) else {
                return Err(ConfigError::UnknownKey { origin, key: name });
            };
            self.set(key, v.value.into_text(), origin);
        }
        Ok(())
    }
}

/// A file value: scalar or list of scalars.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<FileScalar>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileScalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl FileScalar {
    fn into_text(self) -> String {
        match self {
            FileScalar::Bool(b) => b.to_string(),
            FileScalar::Int(i) => i.to_string(),
            FileScalar::Float(f) => f.to_string(),
            FileScalar::Str(s) => s,
        }
    }
}

impl FileValue {
    fn into_text(self) -> String {
        match self {
            FileValue::Bool(b) => FileScalar::Bool(b).into_text(),
            FileValue::Int(i) => FileScalar::Int(i).into_text(),
            FileValue::Float(f) => FileScalar::Float(f).into_text(),
            FileValue::Str(s) => s,
            FileValue::List(l) => l
                .into_iter()
                .map(FileScalar::into_text)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}
