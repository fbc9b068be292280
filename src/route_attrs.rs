//! Which BGP path attributes each VIP's route carries: the named attribute sets
//! (`vipr_bgp_attribute_sets`), the sets a pool gives its routes and the ones it lets a
//! Service choose (`vipr_pools` options `bgp-attributes` and `bgp-allowed`), the control-plane
//! VIP's sets (`vipr_control_plane_bgp_attributes`), and the one decision on a Service's
//! annotation [`ANNOTATION`], which is tenant input: it may only name sets its pool allows,
//! never carry values. Pure: no Kubernetes, no I/O. The reconciler uses [`choose`] to build
//! routes and the Service watcher uses it to write the refusal Event, so both agree.
//!
//! The model is MetalLB v0.16.1's BGPAdvertisement (`api/v1beta1/bgpadvertisement_types.go`:
//! communities, localPref per set of pools) with its Community aliases
//! (`internal/config/config.go` `communitiesFromCrs`), made simpler: one list of named sets
//! in the configuration, pools name theirs, and a Service may pick among those its pool
//! allows (MetalLB has no per-Service choice; its `serviceSelectors` are the admin's).

use std::collections::BTreeMap;

use bgp::{Community, LargeCommunity, RouteAttrs};

use crate::ipam::pools::Pool;
use crate::model::{Services, VipSource};

/// The Service annotation naming the attribute sets its routes carry (comma separated).
pub const ANNOTATION: &str = "vipr.io/bgp-attributes";

/// At most this many sets in one annotation (tenant input; more is refused).
pub const MAX_ASKED: usize = 8;

/// The most AS-path prepends a set may ask for (FRR's `set as-path prepend last-as` allows
/// 1..=10 as well).
pub const MAX_PREPEND: u8 = 10;

/// Named attribute sets and the control-plane VIP's choice of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttrSets {
    /// `vipr_bgp_attribute_sets` by name.
    pub sets: BTreeMap<String, RouteAttrs>,
    /// `vipr_control_plane_bgp_attributes`, in order (empty: the global attributes).
    pub control_plane: Vec<String>,
}

impl AttrSets {
    /// The attributes of a route carrying `names` (all defined; the configuration checked
    /// them): communities and large communities of every set, in order and without
    /// repeats; LOCAL_PREF, MED and the prepend count from the first set that has one.
    /// `global` when `names` is empty.
    pub fn merged(&self, names: &[String], global: &RouteAttrs) -> RouteAttrs {
        if names.is_empty() {
            return global.clone();
        }
        let mut out = RouteAttrs::default();
        for s in names.iter().filter_map(|n| self.sets.get(n)) {
            for c in &s.communities {
                if !out.communities.contains(c) {
                    out.communities.push(*c);
                }
            }
            for c in &s.large_communities {
                if !out.large_communities.contains(c) {
                    out.large_communities.push(*c);
                }
            }
            out.local_pref = out.local_pref.or(s.local_pref);
            out.med = out.med.or(s.med);
            if out.as_path_prepend == 0 {
                out.as_path_prepend = s.as_path_prepend;
            }
        }
        out
    }
}

/// Parses one `vipr_bgp_attribute_sets` entry:
/// `NAME[;communities=C|C…][;large-communities=L|L…][;local-pref=N][;med=N][;prepend=N]`.
pub fn parse_set(entry: &str) -> Result<(String, RouteAttrs), String> {
    let mut parts = entry.split(';').map(str::trim);
    let name = parts.next().unwrap_or_default();
    if !valid_name(name) {
        return Err(format!(
            "set name {name:?}: letters, digits, '-' and '.' only, at most 63"
        ));
    }
    let mut a = RouteAttrs::default();
    let mut any = false;
    for p in parts.filter(|p| !p.is_empty()) {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("{name}: {p:?}: expected key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        let items = || v.split('|').map(str::trim).filter(|s| !s.is_empty());
        let num = |max: u64| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{name}: {k}={v:?}: expected 0..={max}"))
        };
        match k {
            "communities" => {
                a.communities = items()
                    .map(|c| {
                        c.parse::<Community>()
                            .map_err(|e| format!("{name}: communities: {e}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "large-communities" => {
                a.large_communities = items()
                    .map(|c| {
                        c.parse::<LargeCommunity>()
                            .map_err(|e| format!("{name}: large-communities: {e}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "local-pref" => a.local_pref = Some(num(u32::MAX.into())? as u32),
            "med" => a.med = Some(num(u32::MAX.into())? as u32),
            "prepend" => a.as_path_prepend = num(MAX_PREPEND.into())? as u8,
            _ => {
                return Err(format!(
                    "{name}: unknown option {k:?} (communities, large-communities, local-pref, med, prepend)"
                ))
            }
        }
        any = true;
    }
    if !any {
        return Err(format!(
            "{name}: sets nothing (communities, large-communities, local-pref, med or prepend)"
        ));
    }
    Ok((name.to_string(), a))
}

/// A set name as a pool or the annotation writes it.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The names in the annotation's value, as written (trimmed, empty items dropped, repeats
/// kept once); `None` when it names nothing.
pub fn parse_annotation(v: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Why a Service's choice is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The pool of the address (`None`: in no `vipr_pools` pool).
    pub pool: Option<String>,
    /// What the pool allows.
    pub allowed: Vec<String>,
    /// The names asked for that it does not allow.
    pub not_allowed: Vec<String>,
    /// More names than [`MAX_ASKED`].
    pub too_many: bool,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &[String]| {
            v.iter()
                .map(|n| n.chars().take(63).collect::<String>())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.too_many {
            return write!(f, "{ANNOTATION} names more than {MAX_ASKED} sets");
        }
        match &self.pool {
            None => write!(
                f,
                "{ANNOTATION}: {} not allowed: the address is in no pool of vipr_pools, so its route carries the global attributes",
                shown(&self.not_allowed)
            ),
            Some(p) if self.allowed.is_empty() => write!(
                f,
                "{ANNOTATION}: {} not allowed: pool {p} lets Services choose no attribute set",
                shown(&self.not_allowed)
            ),
            Some(p) => write!(
                f,
                "{ANNOTATION}: {} not allowed by pool {p} (allowed: {})",
                shown(&self.not_allowed),
                shown(&self.allowed)
            ),
        }
    }
}

/// The sets the route of a Service address carries: what the Service's annotation asks for
/// (`asked`) when its pool allows every name of it (its `bgp-allowed` sets and its own
/// `bgp-attributes`), else — and without an annotation — the pool's `bgp-attributes`
/// (empty: the global attributes). A refused choice changes nothing else: the address is
/// advertised as if the Service had not asked. The address was granted and the pool's
/// sets are the admin's for every Service of the pool, so the tenant gets nothing it was
/// not granted, and a typo in an optional annotation never takes a Service down (MetalLB
/// v0.16.1 likewise never lets advertisement attributes decide whether an allocated
/// address is announced).
pub fn choose<'a>(
    pool: Option<&'a Pool>,
    asked: Option<&'a [String]>,
) -> (&'a [String], Option<Refused>) {
    let defaults: &[String] = pool.map_or(&[], |p| p.bgp.attributes.as_slice());
    let Some(asked) = asked else {
        return (defaults, None);
    };
    let allowed: Vec<String> = pool
        .map(|p| {
            let mut a = p.bgp.attributes.clone();
            for n in &p.bgp.allowed {
                if !a.contains(n) {
                    a.push(n.clone());
                }
            }
            a
        })
        .unwrap_or_default();
    let not_allowed: Vec<String> = asked
        .iter()
        .filter(|n| !allowed.contains(n))
        .cloned()
        .collect();
    let too_many = asked.len() > MAX_ASKED;
    if not_allowed.is_empty() && !too_many {
        return (asked, None);
    }
    (
        defaults,
        Some(Refused {
            pool: pool.map(|p| p.name.clone()),
            allowed,
            not_allowed,
            too_many,
        }),
    )
}

/// The attribute sets of the route of `ip`, served for `sources`: the control-plane VIP's
/// (`vipr_control_plane_bgp_attributes`); none for a static VIP (the global attributes);
/// for a Service's address what [`choose`] gives it from its pool and annotation, the
/// pool's own sets when Services sharing the address choose differently (no tenant
/// overrides another's choice).
pub fn sets_of(
    ip: std::net::IpAddr,
    sources: &[VipSource],
    services: &Services,
    pools: &[Pool],
    sets: &AttrSets,
) -> Vec<String> {
    if sources.contains(&VipSource::ControlPlane) {
        return sets.control_plane.clone();
    }
    if sources.contains(&VipSource::Static) {
        return Vec::new();
    }
    let pool = pool_of(pools, ip);
    let mut chosen: Option<&[String]> = None;
    for s in sources {
        let VipSource::Service { namespace, name } = s else {
            continue;
        };
        let asked = services
            .get(format!("{namespace}/{name}").as_str())
            .and_then(|s| s.bgp_attributes.as_deref());
        let (names, _) = choose(pool, asked);
        match chosen {
            None => chosen = Some(names),
            Some(c) if c == names => {}
            Some(_) => return choose(pool, None).0.to_vec(),
        }
    }
    chosen.unwrap_or_default().to_vec()
}

/// The first `vipr_pools` pool holding `ip` (the order allocation searches them in).
pub fn pool_of(pools: &[Pool], ip: std::net::IpAddr) -> Option<&Pool> {
    pools.iter().find(|p| p.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::pools::parse_pool;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sets_parse_with_every_option_and_bad_values_are_named() {
        let (n, a) = parse_set(
            "gold; communities=65000:100|no-export; large-communities=65000:1:2; local-pref=200; med=10; prepend=2",
        )
        .unwrap();
        assert_eq!(n, "gold");
        assert_eq!(
            a.communities,
            vec![Community::new(65000, 100), Community::NO_EXPORT]
        );
        assert_eq!(a.large_communities[0].to_string(), "65000:1:2");
        assert_eq!(
            (a.local_pref, a.med, a.as_path_prepend),
            (Some(200), Some(10), 2)
        );
        for (bad, says) in [
            ("gold;communities=65536:1", "65536:1"),
            ("gold;communities=no-exprot", "no-exprot"),
            ("gold;large-communities=1:2", "1:2"),
            ("gold;local-pref=-1", "local-pref"),
            ("gold;med=4294967296", "med"),
            ("gold;prepend=11", "prepend"),
            ("gold;colour=red", "colour"),
            ("gold", "sets nothing"),
            ("a b;med=1", "a b"),
            ("gold;med", "expected key=value"),
        ] {
            let e = parse_set(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn merging_unions_communities_and_takes_the_first_scalar() {
        let mut s = AttrSets::default();
        for e in [
            "a;communities=65000:1|65000:2;local-pref=200",
            "b;communities=65000:2|65000:3;local-pref=50;med=5;prepend=3",
        ] {
            let (n, a) = parse_set(e).unwrap();
            s.sets.insert(n, a);
        }
        let global = RouteAttrs {
            med: Some(99),
            ..Default::default()
        };
        let m = s.merged(&names(&["a", "b"]), &global);
        let c: Vec<String> = m.communities.iter().map(|c| c.to_string()).collect();
        assert_eq!(c, ["65000:1", "65000:2", "65000:3"]);
        assert_eq!(
            (m.local_pref, m.med, m.as_path_prepend),
            (Some(200), Some(5), 3)
        );
        assert_eq!(s.merged(&[], &global), global);
    }

    #[test]
    fn a_service_chooses_only_what_its_pool_allows() {
        let pool = parse_pool(
            "198.51.100.0/24;name=web;bgp-attributes=base;bgp-allowed=backup|edge",
            1,
        )
        .unwrap();
        let asked = names(&["backup", "base"]);
        assert_eq!(choose(Some(&pool), Some(&asked)), (asked.as_slice(), None));
        assert_eq!(
            choose(Some(&pool), None),
            (names(&["base"]).as_slice(), None)
        );
        let bad = names(&["edge", "blackhole"]);
        let (got, why) = choose(Some(&pool), Some(&bad));
        assert_eq!(got, names(&["base"]).as_slice(), "the pool's own sets");
        let why = why.unwrap();
        assert_eq!(why.not_allowed, names(&["blackhole"]));
        assert!(why.to_string().contains("blackhole") && why.to_string().contains("web"));
        // No pool: nothing can be chosen.
        let (got, why) = choose(None, Some(&asked));
        assert!(got.is_empty() && why.unwrap().pool.is_none());
        let many: Vec<String> = (0..9).map(|_| "backup".to_string()).collect();
        assert!(choose(Some(&pool), Some(&many)).1.unwrap().too_many);
    }

    #[test]
    fn the_annotation_is_a_list_of_names() {
        assert_eq!(parse_annotation(" a, b ,a,,"), Some(names(&["a", "b"])));
        assert_eq!(parse_annotation(" , "), None);
    }
}
