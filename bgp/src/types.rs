//! Route and attribute types of the speaker's public API: address families, standard and
//! large communities, the attributes a caller attaches to announced prefixes, and the
//! shared [`RouteTable`] snapshot every session diffs against. Pure data, no I/O.

use imbl::ordmap::{DiffItem, OrdMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;

/// The address families vipr can announce: unicast only (RFC 4760 AFI 1/2, SAFI 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// AFI 1, SAFI 1.
    Ipv4Unicast,
    /// AFI 2, SAFI 1.
    Ipv6Unicast,
}

impl Family {
    /// Both families, in the order they are advertised in OPEN.
    pub const ALL: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];

    /// The family a prefix belongs to.
    pub fn of(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }

    /// RFC 4760 §3 Address Family Identifier.
    pub fn afi(self) -> u16 {
        match self {
            Family::Ipv4Unicast => 1,
            Family::Ipv6Unicast => 2,
        }
    }

    /// RFC 4760 §3 Subsequent Address Family Identifier (unicast).
    pub fn safi(self) -> u8 {
        1
    }

    /// The family for an (AFI, SAFI) pair, if vipr knows it.
    pub fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4Unicast),
            (2, 1) => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4Unicast => "ipv4-unicast",
            Family::Ipv6Unicast => "ipv6-unicast",
        })
    }
}

/// Error for a community or large community string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: expected {expected}")]
pub struct ParseCommunityError {
    what: &'static str,
    input: String,
    expected: &'static str,
}

/// A standard community (RFC 1997), written `ASN:VALUE` with two 16-bit halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// RFC 8326 §5: GRACEFUL_SHUTDOWN well-known community 65535:0.
    pub const GRACEFUL_SHUTDOWN: Community = Community(0xFFFF_0000);
    /// RFC 1997: NO_EXPORT 65535:65281.
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    /// RFC 1997: NO_ADVERTISE 65535:65282.
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
    /// RFC 1997: NO_EXPORT_SUBCONFED 65535:65283 (FRR's `local-AS`).
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);
    /// RFC 3765: NOPEER 65535:65284.
    pub const NO_PEER: Community = Community(0xFFFF_FF04);
    /// RFC 7999 §5: BLACKHOLE 65535:666.
    pub const BLACKHOLE: Community = Community(0xFFFF_029A);

    /// The well-known communities by the names FRR prints and accepts (`no-export`,
    /// `no-advertise`, `local-AS`, `no-peer`, `blackhole`, `graceful-shutdown`), plus
    /// `no-export-subconfed` (RFC 1997's name). Case and `_` for `-` do not matter.
    pub const WELL_KNOWN: [(&'static str, Community); 7] = [
        ("no-export", Community::NO_EXPORT),
        ("no-advertise", Community::NO_ADVERTISE),
        ("no-export-subconfed", Community::NO_EXPORT_SUBCONFED),
        ("local-as", Community::NO_EXPORT_SUBCONFED),
        ("no-peer", Community::NO_PEER),
        ("blackhole", Community::BLACKHOLE),
        ("graceful-shutdown", Community::GRACEFUL_SHUTDOWN),
    ];

    /// Builds `high:low`.
    pub fn new(high: u16, low: u16) -> Community {
        Community(((high as u32) << 16) | low as u32)
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xFFFF)
    }
}

impl FromStr for Community {
    type Err = ParseCommunityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            ParseCommunityError {
            what: "community",
            input: s.to_string(),
            expected: "ASN:VALUE with both parts in 0..=65535, or a well-known name (no-export, no-advertise, no-export-subconfed, local-AS, no-peer, blackhole, graceful-shutdown)",
        }
        };
        let name = s.trim().to_ascii_lowercase().replace('_', "-");
        if let Some((_, c)) = Community::WELL_KNOWN.iter().find(|(n, _)| *n == name) {
            return Ok(*c);
        }
        let (a, b) = s.trim().split_once(':').ok_or_else(err)?;
        Ok(Community::new(
            a.parse().map_err(|_| err())?,
            b.parse().map_err(|_| err())?,
        ))
    }
}

/// A large community (RFC 8092), written `GLOBAL:LOCAL1:LOCAL2`, each 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    /// Global Administrator (usually the ASN).
    pub global: u32,
    /// Local Data Part 1.
    pub local1: u32,
    /// Local Data Part 2.
    pub local2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global, self.local1, self.local2)
    }
}

impl FromStr for LargeCommunity {
    type Err = ParseCommunityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseCommunityError {
            what: "large community",
            input: s.to_string(),
            expected: "GLOBAL:LOCAL1:LOCAL2 with each part in 0..=4294967295",
        };
        let parts: Vec<&str> = s.trim().split(':').collect();
        if parts.len() != 3 {
            return Err(err());
        }
        let n = |i: usize| parts[i].parse::<u32>().map_err(|_| err());
        Ok(LargeCommunity {
            global: n(0)?,
            local1: n(1)?,
            local2: n(2)?,
        })
    }
}

/// What a caller attaches to announced prefixes. Per-session attributes (ORIGIN, AS_PATH,
/// the default NEXT_HOP, LOCAL_PREF default) are filled in by each session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RouteAttrs {
    /// MULTI_EXIT_DISC (RFC 4271 §5.1.4), sent only when set.
    pub med: Option<u32>,
    /// LOCAL_PREF for iBGP sessions (RFC 4271 §5.1.5); `None` means the session default (100).
    /// Never sent to eBGP peers.
    pub local_pref: Option<u32>,
    /// COMMUNITIES (RFC 1997), sent in this order.
    pub communities: Vec<Community>,
    /// LARGE_COMMUNITY (RFC 8092), sent in this order.
    pub large_communities: Vec<LargeCommunity>,
    /// Explicit next hop; `None` means the session's local address (or the peer's configured
    /// next hop for that family).
    pub next_hop: Option<IpAddr>,
    /// How many extra times our AS is put in front of the AS_PATH (RFC 4271 §5.1.2 / §9.1.2.2
    /// a: a longer path is less preferred), on eBGP sessions only: an iBGP peer would see
    /// its own AS and drop the route as a loop.
    pub as_path_prepend: u8,
}

impl RouteAttrs {
    /// A copy carrying the RFC 8326 GRACEFUL_SHUTDOWN community (added once).
    pub fn with_graceful_shutdown(&self) -> RouteAttrs {
        let mut a = self.clone();
        if !a.communities.contains(&Community::GRACEFUL_SHUTDOWN) {
            a.communities.push(Community::GRACEFUL_SHUTDOWN);
        }
        a
    }
}

/// The desired routes: every prefix the speaker announces with its attributes. Sessions
/// hold snapshots (`Arc<RouteTable>`) and send the difference between the last snapshot
/// they synced and the newest. A persistent B-tree (`imbl::OrdMap`): a clone shares every
/// node, a change copies one path, and two snapshots of one lineage diff in time
/// proportional to what changed between them (shared subtrees are skipped), not to the
/// table: 10 routes changed in 100 000 cost 10 routes' work.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteTable {
    routes: OrdMap<IpNet, Arc<RouteAttrs>>,
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> RouteTable {
        RouteTable::default()
    }

    /// Adds or replaces prefixes, all sharing one attribute set. Prefixes are normalised
    /// (host bits cleared). Returns how many entries changed.
    pub fn announce(
        &mut self,
        prefixes: impl IntoIterator<Item = IpNet>,
        attrs: RouteAttrs,
    ) -> usize {
        self.announce_shared(prefixes, Arc::new(attrs))
    }

    /// Like [`RouteTable::announce`] with an attribute set the caller keeps: routes
    /// announced with one `Arc` are packed into the same UPDATEs, however many calls
    /// announced them.
    pub fn announce_shared(
        &mut self,
        prefixes: impl IntoIterator<Item = IpNet>,
        attrs: Arc<RouteAttrs>,
    ) -> usize {
        let mut changed = 0;
        for p in prefixes {
            let p = p.trunc();
            // Written only when different: an unchanged entry stays shared with older
            // snapshots, so diffs against them skip it.
            if self.routes.get(&p).is_none_or(|a| **a != *attrs) {
                self.routes.insert(p, attrs.clone());
                changed += 1;
            }
        }
        changed
    }

    /// Removes prefixes. Returns how many were present.
    pub fn withdraw(&mut self, prefixes: impl IntoIterator<Item = IpNet>) -> usize {
        prefixes
            .into_iter()
            .filter(|p| self.routes.remove(&p.trunc()).is_some())
            .count()
    }

    /// The attributes of one prefix.
    pub fn get(&self, prefix: &IpNet) -> Option<&Arc<RouteAttrs>> {
        self.routes.get(prefix)
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when no prefix is announced.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// All entries in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &Arc<RouteAttrs>)> {
        self.routes.iter()
    }

    /// A copy where every route carries GRACEFUL_SHUTDOWN (RFC 8326 drain).
    pub fn with_graceful_shutdown(&self) -> RouteTable {
        let mut cache: Vec<(Arc<RouteAttrs>, Arc<RouteAttrs>)> = Vec::new();
        let routes = self
            .routes
            .iter()
            .map(|(p, a)| {
                let gs = match cache.iter().find(|(k, _)| Arc::ptr_eq(k, a)) {
                    Some((_, v)) => v.clone(),
                    None => {
                        let v = Arc::new(a.with_graceful_shutdown());
                        cache.push((a.clone(), v.clone()));
                        v
                    }
                };
                (*p, gs)
            })
            .collect();
        RouteTable { routes }
    }

    /// Calls `f(prefix, old attributes, new attributes)` for every prefix whose presence or
    /// attributes differ between `old` and `new`, in prefix order. Subtrees the two tables
    /// share are skipped, so the cost follows the changes, not the size.
    pub fn diff(
        old: &RouteTable,
        new: &RouteTable,
        mut f: impl FnMut(&IpNet, Option<&Arc<RouteAttrs>>, Option<&Arc<RouteAttrs>>),
    ) {
        for d in old.routes.diff(&new.routes) {
            match d {
                DiffItem::Add(p, a) => f(p, None, Some(a)),
                DiffItem::Remove(p, a) => f(p, Some(a), None),
                DiffItem::Update {
                    old: (p, was),
                    new: (_, now),
                } => f(p, Some(was), Some(now)),
            }
        }
    }
}

impl FromIterator<(IpNet, RouteAttrs)> for RouteTable {
    fn from_iter<T: IntoIterator<Item = (IpNet, RouteAttrs)>>(iter: T) -> Self {
        let mut t = RouteTable::new();
        for (p, a) in iter {
            t.announce([p], a);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn community_text_round_trip() {
        let c: Community = "65010:100".parse().unwrap();
        assert_eq!(c, Community::new(65010, 100));
        assert_eq!(c.to_string(), "65010:100");
        assert_eq!(Community::GRACEFUL_SHUTDOWN.to_string(), "65535:0");
        assert!("65536:1".parse::<Community>().is_err());
        assert!("1".parse::<Community>().is_err());
        let l: LargeCommunity = "4200000001:1:2".parse().unwrap();
        assert_eq!(l.to_string(), "4200000001:1:2");
        assert!("1:2".parse::<LargeCommunity>().is_err());
        assert!("1:2:x".parse::<LargeCommunity>().is_err());
        for (name, c) in [
            ("no-export", "65535:65281"),
            ("NO_EXPORT", "65535:65281"),
            ("no-advertise", "65535:65282"),
            ("local-AS", "65535:65283"),
            ("no-export-subconfed", "65535:65283"),
            ("no-peer", "65535:65284"),
            ("blackhole", "65535:666"),
            ("graceful-shutdown", "65535:0"),
        ] {
            assert_eq!(name.parse::<Community>().unwrap().to_string(), c, "{name}");
        }
        let e = "no-exprot".parse::<Community>().unwrap_err().to_string();
        assert!(e.contains("no-exprot") && e.contains("well-known"), "{e}");
    }

    #[test]
    fn diff_reports_added_removed_and_changed() {
        let mut a = RouteTable::new();
        a.announce(
            [p("192.0.2.1/32"), p("192.0.2.2/32")],
            RouteAttrs::default(),
        );
        let mut b = a.clone();
        b.withdraw([p("192.0.2.1/32")]);
        b.announce([p("2001:db8::1/128")], RouteAttrs::default());
        b.announce(
            [p("192.0.2.2/32")],
            RouteAttrs {
                med: Some(5),
                ..Default::default()
            },
        );
        let mut seen = Vec::new();
        RouteTable::diff(&a, &b, |x, _, _| seen.push(*x));
        seen.sort();
        assert_eq!(
            seen,
            vec![p("192.0.2.1/32"), p("192.0.2.2/32"), p("2001:db8::1/128")]
        );
        let mut none = 0;
        RouteTable::diff(&b, &b.clone(), |_, _, _| none += 1);
        assert_eq!(none, 0);
    }

    #[test]
    fn announce_normalises_and_counts_changes() {
        let mut t = RouteTable::new();
        assert_eq!(t.announce([p("192.0.2.9/24")], RouteAttrs::default()), 1);
        assert!(t.get(&p("192.0.2.0/24")).is_some());
        assert_eq!(t.announce([p("192.0.2.0/24")], RouteAttrs::default()), 0);
        assert_eq!(t.withdraw([p("192.0.2.0/24"), p("192.0.2.0/25")]), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn graceful_shutdown_copy_adds_community_once() {
        let mut t = RouteTable::new();
        t.announce(
            [p("192.0.2.1/32"), p("192.0.2.2/32")],
            RouteAttrs::default(),
        );
        let g = t.with_graceful_shutdown();
        for (_, a) in g.iter() {
            assert_eq!(a.communities, vec![Community::GRACEFUL_SHUTDOWN]);
        }
        let gg = g.with_graceful_shutdown();
        assert_eq!(g, gg);
    }
}
