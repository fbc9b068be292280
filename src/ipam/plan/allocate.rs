//! A Service that asks for nothing: the addresses it holds stay its own; a family it lacks
//! gets the address vipr annotated before when that is still free, else a share of a
//! claimed address its pool allows, else the first free address of the first auto-assign
//! pool of its namespace that has one.

use std::net::IpAddr;

use super::{event, join, leave, Decision, Inputs, Proposals, Write, FRESH};
use super::{Claim, Families, Holder, Pending, Svc};

impl Inputs<'_> {
    /// A Service that asks for nothing: its claims, else new ones.
    pub(super) fn allocate(
        &self,
        s: &Svc,
        mine: &[&Claim],
        proposals: &mut Proposals,
        w: &mut Vec<Write>,
    ) -> Decision {
        let mut d = Decision {
            allocated: true,
            ..Decision::default()
        };
        let (needed, all): (Vec<bool>, bool) = match s.families {
            Families::Single(Some(v4)) => (vec![v4], true),
            Families::Single(None) => {
                let pools = self.pools.for_namespace(&s.holder.namespace);
                let has = |v4| {
                    pools
                        .iter()
                        .flatten()
                        .any(|p| p.auto_assign && p.has_family(v4))
                };
                let held_v6 = mine.iter().any(|c| c.ip.is_ipv6());
                (vec![!held_v6 && (has(true) || !has(false))], true)
            }
            Families::PreferDual(p) => (vec![p, !p], false),
            Families::RequireDual(p) => (vec![p, !p], true),
        };
        let mut kept = Vec::new();
        let mut missing = Vec::new();
        for v4 in &needed {
            // The lowest held address of the family; any other is released.
            let mut family: Vec<&&Claim> = mine.iter().filter(|c| c.ip.is_ipv4() == *v4).collect();
            family.sort_by_key(|c| c.ip);
            match family.first() {
                Some(c) => kept.push(c.ip),
                None => missing.push(*v4),
            }
        }
        for c in mine.iter().filter(|c| !kept.contains(&c.ip)) {
            w.push(leave(c, &s.holder));
        }
        for ip in &kept {
            self.outside_pools(s, *ip, w);
        }
        let mut failed = Vec::new();
        for v4 in missing {
            let again = self.previous(s, v4, proposals);
            match again
                .map(Ok)
                .unwrap_or_else(|| self.new_address(s, v4, proposals))
            {
                Ok(write) => {
                    w.push(write);
                    d.pending = Some(Pending::Claiming);
                }
                Err(p) => failed.push(p),
            }
        }
        let complete = failed.is_empty() || (!all && !kept.is_empty());
        if complete && !kept.is_empty() {
            kept.sort_by_key(|ip| (ip.is_ipv4() != needed[0], *ip));
            let pool = mine
                .iter()
                .find(|c| c.ip == kept[0])
                .map(|c| c.pool.clone())
                .unwrap_or_default();
            let annotated: Vec<IpAddr> = s.requested.iter().flatten().copied().collect();
            if annotated != kept || s.allocated_from.as_ref() != Some(&pool) {
                w.push(Write::Annotate {
                    holder: s.holder.clone(),
                    allocation: Some((kept.clone(), pool.clone())),
                });
            }
            for c in mine
                .iter()
                .filter(|c| kept.contains(&c.ip) && self.fresh(c))
            {
                w.push(allocated_event(&s.holder, &[c.ip], &pool));
            }
            d.served = kept;
            d.pending = None;
        } else if let Some(p) = failed.into_iter().next() {
            if d.pending.is_none() || all {
                w.push(event(
                    &s.holder,
                    true,
                    "AllocationFailed",
                    format!("Failed to allocate an address: {p}"),
                    format!("failed/{p}"),
                ));
                d.pending = Some(p);
            }
        }
        d
    }

    /// Whether a claim is new enough for its `IPAllocated` Event.
    fn fresh(&self, c: &Claim) -> bool {
        c.created
            .is_none_or(|t| self.now.duration_since(t).map_or(true, |age| age < FRESH))
    }

    /// The address of family `v4` that vipr annotated before, claimed again when it lost
    /// its claim (claims deleted, a restore from backup) and it is still free and in an
    /// auto-assign pool of the namespace: a Service keeps its address where it can.
    fn previous(&self, s: &Svc, v4: bool, proposals: &mut Proposals) -> Option<Write> {
        s.allocated_from.as_ref()?;
        let ip = s
            .requested
            .iter()
            .flatten()
            .copied()
            .find(|ip| ip.is_ipv4() == v4)?;
        let free = !self.claims.contains_key(&ip)
            && proposals.free_for(&ip, &s.holder.uid)
            && self.never(ip).is_none()
            && self
                .requested
                .get(&ip)
                .is_none_or(|by| by.iter().all(|u| *u == s.holder.uid));
        let pool = self.pool_of(s, ip).ok().filter(|p| p.auto_assign)?;
        free.then(|| {
            proposals.take(ip, &s.holder.uid);
            Write::Claim {
                ip,
                pool: pool.name,
                holder: s.holder.clone(),
            }
        })
    }

    /// A new address of family `v4` for `s`: a share of a claimed one when its pool allows,
    /// else the first free one of the first pool that has one.
    fn new_address(&self, s: &Svc, v4: bool, proposals: &mut Proposals) -> Result<Write, Pending> {
        let fam = if v4 { "IPv4" } else { "IPv6" };
        let pools = self.pools.for_namespace(&s.holder.namespace);
        let mut any = false;
        let mut bad = None;
        for p in &pools {
            let p = match p {
                Ok(p) if p.auto_assign && p.has_family(v4) => p,
                Ok(_) => continue,
                Err(e) => {
                    bad = Some(e.clone());
                    continue;
                }
            };
            any = true;
            if p.allow_share || s.sharing_key.is_some() {
                let shared = self.claims.values().find(|c| {
                    c.ip.is_ipv4() == v4 && p.contains(c.ip) && self.may_share(s, c, p.allow_share)
                });
                if let Some(c) = shared {
                    return Ok(join(c, &s.holder));
                }
            }
            let taken = self.claims.len() + self.requested.len() + proposals.taken.len();
            let key = (p.name.clone(), v4);
            let free = p.first_free_after(v4, proposals.cursor.get(&key).copied(), taken, |ip| {
                self.claims.contains_key(&ip)
                    || self.requested.contains_key(&ip)
                    || !proposals.free_for(&ip, &s.holder.uid)
                    || self.never(ip).is_some()
            });
            if let Some(ip) = free {
                proposals.take(ip, &s.holder.uid);
                proposals.cursor.insert(key, ip);
                return Ok(Write::Claim {
                    ip,
                    pool: p.name.clone(),
                    holder: s.holder.clone(),
                });
            }
        }
        Err(match (any, bad) {
            (false, Some(e)) => Pending::NoPool(e),
            (false, None) => Pending::NoPool(format!("{fam} in namespace {}", s.holder.namespace)),
            (true, _) => Pending::Exhausted(format!(
                "every {fam} pool of namespace {} is full",
                s.holder.namespace
            )),
        })
    }
}

/// The `IPAllocated` Event of one address (asked for again while the Service holds it, so
/// that it is written even when the annotation was faster; one object all the same).
fn allocated_event(holder: &Holder, ips: &[IpAddr], pool: &str) -> Write {
    let list = ips
        .iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(",");
    event(
        holder,
        false,
        "IPAllocated",
        format!("Assigned IP {list} from pool {pool}"),
        format!("allocated/{list}"),
    )
}
