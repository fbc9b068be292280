//! Typed access to layered raw values. Every parse applies to the value of each layer that
//! gives the key, lowest first, and returns the winner's: a bad value is an error even when
//! a higher layer overrides it (`--localAS banana` next to a file that sets `bgp_as`).
//! Errors name the source and the value, secrets redacted.

use std::time::Duration;

use super::keys;
use super::peers::parse_bool;
use super::source::{Layers, Origin, Raw};
use super::ConfigError;

/// Typed access to the layers of one configuration.
pub struct Reader<'a> {
    /// The layers.
    pub layers: &'a Layers,
}

impl Reader<'_> {
    /// Every non-empty value of a key, lowest precedence first.
    fn given(&self, key: &str) -> impl Iterator<Item = &Raw> {
        self.layers
            .all(key)
            .iter()
            .filter(|r| !r.value.trim().is_empty())
    }

    /// The winning non-empty value (trimmed) and its origin.
    pub fn raw(&self, key: &str) -> Option<(&str, &Origin)> {
        self.layers
            .get(key)
            .map(|r| (r.value.trim(), &r.origin))
            .filter(|(v, _)| !v.is_empty())
    }

    /// Whether the key is given at all, even empty (`prometheus_server=""` turns HTTP off).
    pub fn present(&self, key: &str) -> bool {
        self.layers.get(key).is_some()
    }

    fn err_at(&self, key: &str, raw: Option<&Raw>, reason: impl Into<String>) -> ConfigError {
        let (value, origin) = match raw {
            Some(r) => (r.value.clone(), r.origin.clone()),
            None => (String::new(), Origin::Env(key.to_string())),
        };
        let secret = keys::find(key).is_some_and(|k| k.secret);
        ConfigError::Invalid {
            origin,
            key: key.to_string(),
            value: if secret { "<redacted>".into() } else { value },
            reason: reason.into(),
        }
    }

    /// An error about the winning value of `key`.
    pub fn err(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        self.err_at(key, self.layers.get(key), reason)
    }

    /// `key="value" (origin)` for conflict messages (not for secrets).
    pub fn show(&self, key: &str) -> String {
        match self.layers.get(key) {
            Some(r) => format!("{key}={:?} ({})", r.value, r.origin),
            None => key.to_string(),
        }
    }

    /// Parses every layer's value with `f`; the winner's result.
    pub fn parse<T>(
        &self,
        key: &str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let mut out = None;
        for r in self.given(key) {
            out = Some(f(r.value.trim()).map_err(|e| self.err_at(key, Some(r), e))?);
        }
        Ok(out)
    }

    /// A boolean (kube-vip's spellings).
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self
            .parse(key, |v| {
                parse_bool(v).ok_or_else(|| "expected true or false".to_string())
            })?
            .unwrap_or(default))
    }

    /// A number in `lo..=hi`.
    pub fn num<T>(&self, key: &str, default: T, lo: T, hi: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        Ok(self
            .parse(key, |v| match v.parse::<T>() {
                Ok(n) if n >= lo && n <= hi => Ok(n),
                _ => Err(format!("expected a number in {lo}..={hi}")),
            })?
            .unwrap_or(default))
    }

    /// Whole seconds in `lo..=hi`.
    pub fn secs(&self, key: &str, default: u64, lo: u64, hi: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.num(key, default, lo, hi)?))
    }

    /// Seconds that may be fractional (`0.5`): a superset of kube-vip's integer values.
    pub fn secs_frac(
        &self,
        key: &str,
        default: f64,
        lo: f64,
        hi: f64,
    ) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs_f64(
            self.parse(key, |v| match v.parse::<f64>() {
                Ok(n) if n >= lo && n <= hi => Ok(n),
                _ => Err(format!(
                    "expected seconds in {lo}..={hi} (fractions allowed)"
                )),
            })?
            .unwrap_or(default),
        ))
    }

    /// A string, or the default.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.opt_string(key).unwrap_or_else(|| default.to_string())
    }

    /// A string, if given.
    pub fn opt_string(&self, key: &str) -> Option<String> {
        self.raw(key).map(|(v, _)| v.to_string())
    }

    /// One of a fixed set of names (`names` lists them for the error).
    pub fn choice<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        self.parse(key, |v| {
            choices
                .iter()
                .find(|(n, _)| *n == v)
                .map(|(_, t)| *t)
                .ok_or_else(|| format!("expected {}", one_of(&names)))
        })
    }

    /// A comma list, each item parsed with `f`.
    pub fn list<T>(
        &self,
        key: &str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        Ok(self
            .parse(key, |v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    // The item is named unless it is the whole value (already shown).
                    .map(|s| {
                        f(s).map_err(|e| match s == v {
                            true => e,
                            false => format!("{s:?}: {e}"),
                        })
                    })
                    .collect::<Result<Vec<T>, String>>()
            })?
            .unwrap_or_default())
    }
}

/// `a, b or c`.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
