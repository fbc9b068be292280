//! Address pools: blocks of addresses (a CIDR or an `a-b` range, IPv4 or IPv6), which
//! namespaces may use them, whether they hand addresses out on their own and whether
//! addresses may be shared. Parsing of `vipr_pools` entries, membership, and the search for
//! a free address (lowest first, or highest with kube-vip-cloud-provider's `search-order:
//! desc`), which never looks at more addresses than are in use plus one.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// One block of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// A prefix, every address in it.
    Cidr(IpNet),
    /// `first-last`, both included, one family.
    Range(IpAddr, IpAddr),
}

fn num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn addr(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4((n as u32).into())
    } else {
        IpAddr::V6(n.into())
    }
}

impl Block {
    /// Parses `192.0.2.0/24`, `2001:db8::/120` or `192.0.2.10-192.0.2.20`.
    pub fn parse(s: &str) -> Result<Block, String> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a
                .trim()
                .parse()
                .map_err(|_| format!("{a:?} is not an IP address"))?;
            let b: IpAddr = b
                .trim()
                .parse()
                .map_err(|_| format!("{b:?} is not an IP address"))?;
            if a.is_ipv4() != b.is_ipv4() {
                return Err(format!("{s}: both ends must be of one family"));
            }
            if num(a) > num(b) {
                return Err(format!("{s}: the first address is above the last"));
            }
            return Ok(Block::Range(a, b));
        }
        if s.contains('/') {
            let net: IpNet = s
                .parse()
                .map_err(|_| format!("{s:?} is not a CIDR (address/length)"))?;
            return Ok(Block::Cidr(net.trunc()));
        }
        let ip: IpAddr = s
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR, an a-b range or an address"))?;
        Ok(Block::Cidr(IpNet::from(ip)))
    }

    /// IPv4.
    pub fn is_ipv4(&self) -> bool {
        match self {
            Block::Cidr(n) => n.addr().is_ipv4(),
            Block::Range(a, _) => a.is_ipv4(),
        }
    }

    /// First and last address as numbers.
    fn bounds(&self) -> (u128, u128) {
        match self {
            Block::Cidr(n) => (num(n.network()), num(n.broadcast())),
            Block::Range(a, b) => (num(*a), num(*b)),
        }
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.is_ipv4() {
            return false;
        }
        let (lo, hi) = self.bounds();
        (lo..=hi).contains(&num(ip))
    }

    /// How many addresses it has (saturating).
    pub fn size(&self) -> u128 {
        let (lo, hi) = self.bounds();
        (hi - lo).saturating_add(1)
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Block::Cidr(n) => write!(f, "{n}"),
            Block::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// Which addresses of its blocks a pool never hands out (kube-vip-cloud-provider's rules for
/// its ConfigMap's pools; vipr's own pools skip nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Skip {
    /// IPv4 addresses whose last octet is 0 or 255 (kube-vip-cloud-provider always).
    pub dot_zero_and_255: bool,
    /// The first and last address of each IPv4 CIDR longer than /31
    /// (`skip-end-ips-in-cidr`).
    pub cidr_ends: bool,
}

/// The BGP attribute sets of a pool's routes (`crate::route_attrs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolBgp {
    /// `bgp-attributes`: the sets every route of the pool carries (empty: the global ones).
    pub attributes: Vec<String>,
    /// `bgp-allowed`: further sets a Service of the pool may choose by annotation.
    pub allowed: Vec<String>,
}

/// An address pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// How Events and status name it.
    pub name: String,
    /// Its addresses.
    pub blocks: Vec<Block>,
    /// The namespaces whose Services may use it (`None`: all).
    pub namespaces: Option<BTreeSet<String>>,
    /// Hands out addresses to Services that ask for none.
    pub auto_assign: bool,
    /// Services may share an address when their ports do not clash.
    pub allow_share: bool,
    /// Addresses never handed out.
    pub skip: Skip,
    /// Search from the highest address down.
    pub descending: bool,
    /// Its routes' BGP attribute sets.
    pub bgp: PoolBgp,
}

impl Pool {
    /// Whether Services of `namespace` may use it.
    pub fn serves(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|n| n.contains(namespace))
    }

    fn skipped(&self, b: &Block, n: u128) -> bool {
        if !b.is_ipv4() {
            return false;
        }
        let last = (n & 0xff) as u8;
        if self.skip.dot_zero_and_255 && (last == 0 || last == 255) {
            return true;
        }
        if let (true, Block::Cidr(net)) = (self.skip.cidr_ends, b) {
            let (lo, hi) = b.bounds();
            if net.prefix_len() < 31 && (n == lo || n == hi) {
                return true;
            }
        }
        false
    }

    /// Whether `ip` is one of the pool's addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.blocks
            .iter()
            .any(|b| b.contains(ip) && !self.skipped(b, num(ip)))
    }

    /// Whether it has addresses of this family.
    pub fn has_family(&self, v4: bool) -> bool {
        self.blocks.iter().any(|b| b.is_ipv4() == v4)
    }

    #[cfg(test)]
    /// The first address of family `v4` (in the pool's search order) for which `taken` is
    /// false. Looks at no more addresses per block than `taken_count + 1` plus the skipped
    /// ones, so a huge IPv6 block costs what is in use, not its size.
    pub fn first_free(
        &self,
        v4: bool,
        taken_count: usize,
        taken: impl Fn(IpAddr) -> bool,
    ) -> Option<IpAddr> {
        self.first_free_after(v4, None, taken_count, taken)
    }

    /// [`Pool::first_free`], starting the search after `after` (in search order): for a run
    /// of allocations, each resuming where the previous one stopped.
    pub fn first_free_after(
        &self,
        v4: bool,
        after: Option<IpAddr>,
        taken_count: usize,
        taken: impl Fn(IpAddr) -> bool,
    ) -> Option<IpAddr> {
        let mut blocks: Vec<&Block> = self.blocks.iter().filter(|b| b.is_ipv4() == v4).collect();
        if self.descending {
            blocks.reverse();
        }
        let after = after.map(num);
        for b in blocks {
            let (lo, hi) = b.bounds();
            // Past this block already.
            let start = match after {
                Some(a) if !self.descending && a >= hi => continue,
                Some(a) if self.descending && a <= lo => continue,
                Some(a) if !self.descending && a >= lo => a + 1,
                Some(a) if self.descending && a <= hi => a - 1,
                _ if self.descending => hi,
                _ => lo,
            };
            // Skipped addresses: at most 2 per 256 plus the two ends.
            let budget = (taken_count as u128 + 1)
                .saturating_mul(2)
                .saturating_add(4);
            let mut seen = 0u128;
            let mut n = start;
            loop {
                if !self.skipped(b, n) {
                    let ip = addr(v4, n);
                    if !taken(ip) {
                        return Some(ip);
                    }
                }
                seen += 1;
                if seen > budget || (self.descending && n == lo) || (!self.descending && n == hi) {
                    break;
                }
                n = if self.descending { n - 1 } else { n + 1 };
            }
        }
        None
    }

    /// How many addresses it can hand out (before skipping; for metrics).
    pub fn size(&self) -> u128 {
        self.blocks
            .iter()
            .fold(0u128, |a, b| a.saturating_add(b.size()))
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    crate::config::peers::parse_bool(v).ok_or_else(|| format!("{key}={v:?} is not true or false"))
}

/// Parses one `vipr_pools` entry: `BLOCK[|BLOCK…][;name=N][;namespaces=a|b][;auto-assign=BOOL]
/// [;allow-share=BOOL][;bgp-attributes=SET|SET…][;bgp-allowed=SET|SET…]`; `index` (from 1)
/// names it when it has no name. Whether the sets exist is checked with the whole
/// configuration.
pub fn parse_pool(entry: &str, index: usize) -> Result<Pool, String> {
    let mut parts = entry.split(';').map(str::trim);
    let addrs = parts.next().unwrap_or_default();
    let blocks = addrs
        .split('|')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(Block::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if blocks.is_empty() {
        return Err("no addresses (a CIDR or an a-b range)".into());
    }
    let mut pool = Pool {
        name: format!("pool{index}"),
        blocks,
        namespaces: None,
        auto_assign: true,
        allow_share: false,
        skip: Skip::default(),
        descending: false,
        bgp: PoolBgp::default(),
    };
    for p in parts.filter(|p| !p.is_empty()) {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("{p:?}: expected key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        match k {
            "name" if valid_name(v) => pool.name = v.to_string(),
            "name" => return Err(format!("name={v:?}: letters, digits, '-' and '.' only")),
            "namespaces" => {
                pool.namespaces = Some(
                    v.split('|')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_string)
                        .collect(),
                )
            }
            "auto-assign" => pool.auto_assign = parse_bool(k, v)?,
            "allow-share" => pool.allow_share = parse_bool(k, v)?,
            "bgp-attributes" | "bgp-allowed" => {
                let names = v
                    .split('|')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(|n| {
                        crate::route_attrs::valid_name(n)
                            .then(|| n.to_string())
                            .ok_or_else(|| format!("{k}: {n:?} is not a set name"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if k == "bgp-attributes" {
                    pool.bgp.attributes = names;
                } else {
                    pool.bgp.allowed = names;
                }
            }
            _ => {
                return Err(format!(
                    "unknown pool option {k:?} (name, namespaces, auto-assign, allow-share, bgp-attributes, bgp-allowed)"
                ))
            }
        }
    }
    Ok(pool)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn entries_parse_with_their_options() {
        let p = parse_pool(
            "198.51.100.0/28|2001:db8:5::10-2001:db8:5::1f; name=web; namespaces=apps|db; auto-assign=false; allow-share=true",
            1,
        )
        .unwrap();
        assert_eq!(p.name, "web");
        assert_eq!(p.blocks.len(), 2);
        assert!(p.serves("apps") && p.serves("db") && !p.serves("default"));
        assert!(!p.auto_assign && p.allow_share);
        assert!(p.contains(ip("198.51.100.15")) && !p.contains(ip("198.51.100.16")));
        assert!(p.contains(ip("2001:db8:5::1f")) && !p.contains(ip("2001:db8:5::20")));
        let d = parse_pool("203.0.113.7", 3).unwrap();
        assert_eq!(
            (d.name.as_str(), d.auto_assign, d.allow_share),
            ("pool3", true, false)
        );
        assert!(d.serves("anything") && d.contains(ip("203.0.113.7")));
        for bad in [
            "",
            "198.51.100.0/33",
            "198.51.100.9-198.51.100.1",
            "198.51.100.1-2001:db8::1",
            "198.51.100.0/24;colour=red",
            "198.51.100.0/24;auto-assign=maybe",
            "198.51.100.0/24;name=a b",
        ] {
            assert!(parse_pool(bad, 1).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn first_free_in_order_skipping_what_the_pool_skips() {
        let mut p = parse_pool("198.51.100.0/30|198.51.100.8-198.51.100.9", 1).unwrap();
        let taken: BTreeSet<IpAddr> = [ip("198.51.100.0"), ip("198.51.100.1")].into();
        assert_eq!(
            p.first_free(true, taken.len(), |a| taken.contains(&a)),
            Some(ip("198.51.100.2"))
        );
        p.descending = true;
        assert_eq!(
            p.first_free(true, taken.len(), |a| taken.contains(&a)),
            Some(ip("198.51.100.9"))
        );
        p.descending = false;
        p.skip.cidr_ends = true;
        assert!(!p.contains(ip("198.51.100.0")) && !p.contains(ip("198.51.100.3")));
        assert_eq!(p.first_free(true, 0, |_| false), Some(ip("198.51.100.1")));
        let q = Pool {
            skip: Skip {
                dot_zero_and_255: true,
                cidr_ends: false,
            },
            ..parse_pool("10.0.0.255-10.0.1.1", 1).unwrap()
        };
        assert_eq!(q.first_free(true, 0, |_| false), Some(ip("10.0.1.1")));
        assert_eq!(p.first_free(false, 0, |_| false), None);
    }

    #[test]
    fn a_search_resumes_after_the_last_address_handed_out() {
        let mut p = parse_pool("198.51.100.0/30|198.51.100.8-198.51.100.9", 1).unwrap();
        let next = |p: &Pool, after: &str| p.first_free_after(true, Some(ip(after)), 0, |_| false);
        assert_eq!(next(&p, "198.51.100.1"), Some(ip("198.51.100.2")));
        assert_eq!(
            next(&p, "198.51.100.3"),
            Some(ip("198.51.100.8")),
            "next block"
        );
        assert_eq!(next(&p, "198.51.100.9"), None);
        p.descending = true;
        assert_eq!(next(&p, "198.51.100.9"), Some(ip("198.51.100.8")));
        assert_eq!(
            next(&p, "198.51.100.8"),
            Some(ip("198.51.100.3")),
            "next block down"
        );
        assert_eq!(next(&p, "198.51.100.0"), None);
    }

    #[test]
    fn a_huge_ipv6_block_costs_what_is_in_use() {
        let p = parse_pool("2001:db8::/64", 1).unwrap();
        assert_eq!(p.first_free(false, 0, |_| false), Some(ip("2001:db8::")));
        // Everything taken: gives up after the budget instead of walking 2^64 addresses.
        assert_eq!(p.first_free(false, 10, |_| true), None);
        let one = parse_pool("2001:db8::7", 1).unwrap();
        assert_eq!(one.first_free(false, 0, |a| a == ip("2001:db8::7")), None);
    }
}
