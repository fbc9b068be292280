//! The nftables data plane, for kernels without IPVS: the same virtual services as NAT rules
//! in vipr's own table `inet vipr` (`inet vipr_<name>` for a named instance), driven through `nft -f -` (one atomic transaction per
//! change) and read back with `nft -j list table`. No crate drives nftables over netlink in
//! pure Rust under a licence vipr can ship (rustables is GPL-3.0), so the `nft` binary does.
//!
//! ```text
//! table inet vipr
//!   map svc4 / svc6   VIP . port : jump s_<id>              (one element per service)
//!   chain pre  (nat prerouting, dstnat)   ip daddr . tcp dport vmap @svc4  (and ip6)
//!   chain out  (nat output, -100)         the same, for connections from the node itself
//!   chain s_<id>      meta l4proto tcp dnat ip to numgen inc mod N map @b_<id>
//!   map b_<id>        0 : backend0 . port, 1 : backend1 . port, ...
//!   set masq4 / masq6 VIP . port;  chain post (nat postrouting, srcnat):
//!                     ct status dnat, original destination in masq4/6 -> masquerade
//! ```
//! A service change rewrites that service's chain and map in one transaction, so a backend
//! set changes atomically and other services are not touched. Everything vipr owns is this
//! table: at start it is replaced (a leftover of a crash), at exit it is deleted, and nothing
//! outside it is ever changed.
//!
//! Compared with IPVS: rr, wrr, lc and wlc become `numgen inc` (round robin; nftables counts
//! no connections), sh and mh `jhash` of the source address. Forwarding is always NAT plus
//! masquerade of forwarded connections (backends need no route back to clients), whatever
//! `lb_fwdmethod` says. Forwarding from other hosts needs `net.ipv4.ip_forward=1`.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use serde_json::Value;
use tracing::{debug, warn};

use super::{FwdMethod, Kind, LbBackend, Observed, Op, Scheduler, Service, Table};
use crate::error::LbError;

/// The default instance's table (family `inet`); a named instance has `vipr_<name>`
/// (`Instance::nft_table`).
#[cfg(test)]
pub const TABLE: &str = "vipr";

/// The chain and map names of a service: `s4_c000020a_1923` / `b4_c000020a_1923` for
/// 192.0.2.10:6443 (hex address and port; IPv6 `s6_<32 hex>_<port>`).
pub fn names(key: &SocketAddr) -> (String, String) {
    let (fam, hex) = match key.ip() {
        IpAddr::V4(a) => (
            "4",
            a.octets()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        ),
        IpAddr::V6(a) => ("6", a.octets().iter().map(|b| format!("{b:02x}")).collect()),
    };
    let id = format!("{fam}_{hex}_{:04x}", key.port());
    (format!("s{id}"), format!("b{id}"))
}

/// The table with its base chains, replacing any earlier one.
pub fn base_script(t: &str) -> String {
    format!(
        "add table inet {t}\n\
         delete table inet {t}\n\
         table inet {t} {{\n\
         \x20 map svc4 {{ type ipv4_addr . inet_service : verdict; }}\n\
         \x20 map svc6 {{ type ipv6_addr . inet_service : verdict; }}\n\
         \x20 set masq4 {{ typeof ct original ip daddr . tcp dport; }}\n\
         \x20 set masq6 {{ typeof ct original ip6 daddr . tcp dport; }}\n\
         \x20 chain pre {{ type nat hook prerouting priority dstnat; policy accept;\n\
         \x20   ip daddr . tcp dport vmap @svc4; ip6 daddr . tcp dport vmap @svc6; }}\n\
         \x20 chain out {{ type nat hook output priority -100; policy accept;\n\
         \x20   ip daddr . tcp dport vmap @svc4; ip6 daddr . tcp dport vmap @svc6; }}\n\
         \x20 chain post {{ type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   ct status dnat meta l4proto tcp ct original ip daddr . ct original proto-dst @masq4 masquerade;\n\
         \x20   ct status dnat meta l4proto tcp ct original ip6 daddr . ct original proto-dst @masq6 masquerade; }}\n\
         }}\n"
    )
}

fn fam(key: &SocketAddr) -> (&'static str, &'static str) {
    if key.is_ipv4() {
        ("ip", "4")
    } else {
        ("ip6", "6")
    }
}

fn elem(a: &SocketAddr) -> String {
    format!("{} . {}", a.ip(), a.port())
}

/// The one rule of a service chain. The comment records scheduler and forwarding method so
/// that [`parse`] reads back exactly what was asked for.
fn rule(t: &str, key: &SocketAddr, svc: &Service) -> String {
    let (chain, map) = names(key);
    let (ip, _) = fam(key);
    let comment = format!("vipr {} {}", svc.scheduler.name(), svc.fwd.name());
    let n = svc.dests.len();
    if n == 0 {
        // No backend: fall through to the node's own stack (as IPVS does).
        return format!("add rule inet {t} {chain} counter comment \"{comment}\"\n");
    }
    let pick = match svc.scheduler {
        Scheduler::Sh | Scheduler::Mh => format!("jhash {ip} saddr mod {n}"),
        _ => format!("numgen inc mod {n}"),
    };
    format!(
        "add rule inet {t} {chain} meta l4proto tcp dnat {ip} to {pick} map @{map} comment \"{comment}\"\n"
    )
}

fn elements(t: &str, key: &SocketAddr, svc: &Service) -> String {
    if svc.dests.is_empty() {
        return String::new();
    }
    let (_, map) = names(key);
    let list: Vec<String> = svc
        .dests
        .iter()
        .enumerate()
        .map(|(i, d)| format!("{i} : {}", elem(d)))
        .collect();
    format!("add element inet {t} {map} {{ {} }}\n", list.join(", "))
}

/// The `nft -f` transaction for `ops` (from [`super::diff`]): each service they touch is
/// created, rewritten from `target`, or deleted, as a whole.
pub fn render(t: &str, ops: &[Op], target: &Table) -> String {
    let keys: BTreeSet<SocketAddr> = ops.iter().map(Op::key).collect();
    let mut s = String::new();
    for key in keys {
        let (chain, map) = names(&key);
        let (ip, n) = fam(&key);
        let created = ops
            .iter()
            .any(|o| matches!(o, Op::AddService { key: k, .. } if *k == key));
        match target.get(&key) {
            None => {
                let _ = write!(
                    s,
                    "flush chain inet {t} {chain}\n\
                     delete element inet {t} svc{n} {{ {e} }}\n\
                     delete element inet {t} masq{n} {{ {e} }}\n\
                     delete chain inet {t} {chain}\n\
                     delete map inet {t} {map}\n",
                    e = elem(&key)
                );
            }
            Some(svc) if created => {
                let _ = write!(
                    s,
                    "add chain inet {t} {chain}\n\
                     add map inet {t} {map} {{ typeof numgen inc mod 1 : {ip} daddr . tcp dport; }}\n"
                );
                s.push_str(&elements(t, &key, svc));
                s.push_str(&rule(t, &key, svc));
                let _ = write!(
                    s,
                    "add element inet {t} svc{n} {{ {e} : jump {chain} }}\n\
                     add element inet {t} masq{n} {{ {e} }}\n",
                    e = elem(&key)
                );
            }
            Some(svc) => {
                let _ = write!(
                    s,
                    "flush chain inet {t} {chain}\nflush map inet {t} {map}\n"
                );
                s.push_str(&elements(t, &key, svc));
                s.push_str(&rule(t, &key, svc));
            }
        }
    }
    s
}

fn sockaddr(v: &Value) -> Option<SocketAddr> {
    let c = v.get("concat")?.as_array()?;
    let ip: IpAddr = c.first()?.as_str()?.parse().ok()?;
    let port = u16::try_from(c.get(1)?.as_u64()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Reads vipr's services out of `nft -j list table inet vipr`.
pub fn parse(json: &str) -> Result<Table, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let items = v["nftables"].as_array().ok_or("no \"nftables\" array")?;
    let mut keys = Vec::new();
    let mut maps = std::collections::BTreeMap::new();
    let mut comments = std::collections::BTreeMap::new();
    for it in items {
        if let Some(m) = it.get("map") {
            let name = m["name"].as_str().unwrap_or_default();
            let elems = m["elem"].as_array().cloned().unwrap_or_default();
            if name == "svc4" || name == "svc6" {
                keys.extend(elems.iter().filter_map(|e| sockaddr(e.get(0)?)));
            } else if name.starts_with('b') {
                let dests: BTreeSet<SocketAddr> =
                    elems.iter().filter_map(|e| sockaddr(e.get(1)?)).collect();
                maps.insert(name.to_string(), dests);
            }
        } else if let Some(r) = it.get("rule") {
            if let (Some(chain), Some(c)) = (r["chain"].as_str(), r["comment"].as_str()) {
                comments.insert(chain.to_string(), c.to_string());
            }
        }
    }
    let mut table = Table::new();
    for key in keys {
        let (chain, map) = names(&key);
        let comment = comments.get(&chain).cloned().unwrap_or_default();
        let mut words = comment.split_whitespace().skip(1);
        let scheduler = words.next().and_then(Scheduler::parse);
        let fwd = words.next().and_then(FwdMethod::parse);
        let (Some(scheduler), Some(fwd)) = (scheduler, fwd) else {
            return Err(format!("service {key}: chain {chain} has no vipr rule"));
        };
        let dests = maps.get(&map).cloned().unwrap_or_default();
        table.insert(
            key,
            Service {
                scheduler,
                fwd,
                dests,
            },
        );
    }
    Ok(table)
}

/// Runs `nft ARGS`, feeding `stdin`; returns stdout.
fn nft(bin: &str, args: &[&str], stdin: Option<&str>) -> Result<String, (String, bool)> {
    use std::io::Write as _;
    let mut child = Command::new(bin)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| (format!("cannot run {bin}: {e}"), false))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| (format!("writing to nft: {e}"), false))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| (format!("waiting for nft: {e}"), false))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let missing = err.contains("No such file or directory");
    Err((err, missing))
}

/// The nftables data plane.
pub struct Nft {
    bin: String,
    /// The instance's table (`vipr` for the default instance).
    table: String,
    /// The table is missing or damaged: the next change recreates it in its transaction.
    need_base: bool,
}

impl Nft {
    /// Finds `nft` and (re)creates the instance's empty table `table`.
    pub async fn open(table: String) -> Result<Nft, LbError> {
        let bin = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nft")
            .to_string();
        let mut n = Nft {
            bin,
            table,
            need_base: false,
        };
        n.run(base_script(&n.table), "create table").await?;
        Ok(n)
    }

    async fn run(&mut self, script: String, context: &str) -> Result<String, LbError> {
        let bin = self.bin.clone();
        debug!(%script, "nft -f -");
        let r = tokio::task::spawn_blocking(move || nft(&bin, &["-f", "-"], Some(&script)))
            .await
            .map_err(|e| LbError::Nft {
                context: context.into(),
                reason: e.to_string(),
            })?;
        r.map_err(|(reason, _)| LbError::Nft {
            context: context.into(),
            reason,
        })
    }
}

impl LbBackend for Nft {
    fn kind(&self) -> Kind {
        Kind::Nftables
    }

    async fn observe(&mut self) -> Result<Observed, LbError> {
        let bin = self.bin.clone();
        let table = self.table.clone();
        let r = tokio::task::spawn_blocking(move || {
            nft(&bin, &["-j", "list", "table", "inet", &table], None)
        })
        .await
        .map_err(|e| LbError::Nft {
            context: "list table".into(),
            reason: e.to_string(),
        })?;
        let json = match r {
            Ok(j) => j,
            Err((_, true)) => {
                if !self.need_base {
                    warn!(table = %self.table, "nftables: vipr's table is gone; the next change creates it again");
                }
                self.need_base = true;
                return Ok(Observed::default());
            }
            Err((reason, false)) => {
                return Err(LbError::Nft {
                    context: "list table".into(),
                    reason,
                })
            }
        };
        match parse(&json) {
            Ok(ours) => Ok(Observed {
                ours,
                foreign: BTreeSet::new(),
            }),
            Err(e) => {
                warn!(table = %self.table, error = %e, "nftables: vipr's table is not as vipr left it; the next change replaces it");
                self.need_base = true;
                Ok(Observed::default())
            }
        }
    }

    async fn apply(&mut self, ops: &[Op], target: &Table) -> Result<(), LbError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut script = if self.need_base {
            base_script(&self.table)
        } else {
            String::new()
        };
        script.push_str(&render(&self.table, ops, target));
        self.run(script, "update").await?;
        self.need_base = false;
        Ok(())
    }

    async fn remove_all(&mut self) -> Result<(), LbError> {
        // `add` first: deleting a table that is already gone is not an error then.
        let t = &self.table;
        let script = format!("add table inet {t}\ndelete table inet {t}\n");
        self.run(script, "delete table").await?;
        self.need_base = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
