//! The control-plane VIP given as a DNS name (kube-vip v1.2.3: `address` may be a host name,
//! `pkg/vip/address.go` `NewConfig` resolves it, `pkg/vip/dns.go` `ipUpdater` resolves it
//! again every 3 s and moves the VIP; `pkg/utils/dns.go` `LookupHost` applies `dns_mode`).
//!
//! Owns the control-plane section the other tasks follow: it follows the section as
//! configured and publishes it with `vips` = the name's addresses (a section without a name
//! is passed on as it is). [`Core`] is the pure part (which addresses, when to ask again);
//! [`run`] asks the system resolver (`getaddrinfo`: `/etc/hosts`, then DNS, as nsswitch
//! says) and publishes. A failed lookup keeps the last addresses and is retried with backoff.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{ControlPlane, DnsAddress, DnsMode};

/// How often a resolved name is asked again (kube-vip's `defaultInterval`).
pub const PERIOD: Duration = Duration::from_secs(3);
/// The first retry after a failure; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// One lookup's time limit.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The addresses of `found` that `mode` takes (kube-vip's `LookupHost`): `First` the first
/// one, or once a family is `pinned` (by an earlier answer, as kube-vip's updater looks up
/// in the family of its current address) the first of that family; `Ipv4`/`Ipv6` the first
/// of the family; `Dual` the first of each family there is.
pub fn select(
    mode: DnsMode,
    pinned: Option<bool>,
    found: &[IpAddr],
) -> Result<Vec<IpAddr>, String> {
    let first_of = |v4: bool| found.iter().copied().find(|a| a.is_ipv4() == v4);
    let out: Vec<IpAddr> = match (mode, pinned) {
        (DnsMode::First, Some(v4)) => first_of(v4).into_iter().collect(),
        (DnsMode::First, None) => found.first().copied().into_iter().collect(),
        (DnsMode::Ipv4, _) => first_of(true).into_iter().collect(),
        (DnsMode::Ipv6, _) => first_of(false).into_iter().collect(),
        (DnsMode::Dual, _) => first_of(true).into_iter().chain(first_of(false)).collect(),
    };
    if out.is_empty() {
        return Err(if found.is_empty() {
            "no address".into()
        } else {
            format!("no address of the family dns_mode asks for among {found:?}")
        });
    }
    Ok(out)
}

/// The resolver's state: the configured section and the last addresses of its name.
#[derive(Debug, Default)]
pub struct Core {
    /// The section as configured.
    cfg: Option<Arc<ControlPlane>>,
    /// The last addresses the name resolved to (kept through failed lookups).
    last: Vec<IpAddr>,
    /// `dns_mode=first`: the family of the first answer.
    pinned: Option<bool>,
    /// Failed lookups in a row.
    failures: u32,
}

impl Core {
    /// A new configuration: the section to publish now. Its name (and mode) unchanged, the
    /// last addresses stay; a new name has none until it resolves.
    pub fn config(&mut self, cfg: Arc<ControlPlane>) -> Arc<ControlPlane> {
        if self.cfg.as_ref().map(|c| &c.dns) != Some(&cfg.dns) {
            self.last.clear();
            self.pinned = None;
            self.failures = 0;
        }
        self.cfg = Some(cfg);
        self.publish()
    }

    /// The name to look up, if any.
    pub fn name(&self) -> Option<&DnsAddress> {
        self.cfg.as_ref()?.dns.as_ref()
    }

    /// A lookup's answer (every address, in the resolver's order, or the error): the section
    /// to publish and when to look up again.
    pub fn resolved(
        &mut self,
        answer: Result<Vec<IpAddr>, String>,
    ) -> (Result<Arc<ControlPlane>, String>, Duration) {
        let Some(dns) = self.name().cloned() else {
            return (Err("no name".into()), PERIOD);
        };
        match answer.and_then(|found| select(dns.mode, self.pinned, &found)) {
            Ok(addrs) => {
                self.failures = 0;
                if dns.mode == DnsMode::First {
                    self.pinned = Some(addrs[0].is_ipv4());
                }
                self.last = addrs;
                (Ok(self.publish()), PERIOD)
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                let wait = RETRY_MIN
                    .saturating_mul(1 << self.failures.min(6).saturating_sub(1))
                    .min(RETRY_MAX);
                (Err(e), wait)
            }
        }
    }

    fn publish(&self) -> Arc<ControlPlane> {
        let cfg = self.cfg.clone().expect("configured");
        if cfg.dns.is_none() {
            return cfg;
        }
        Arc::new(ControlPlane {
            vips: self.last.clone(),
            ..(*cfg).clone()
        })
    }
}

/// Every address of `name` from the system resolver.
async fn lookup(name: &str) -> Result<Vec<IpAddr>, String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0))).await {
        Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
    }
}

/// Follows the configured section, resolves its name (at once, then every [`PERIOD`], or
/// with backoff after a failure) and publishes the resolved section on `out` when it
/// changes.
pub async fn run(
    mut cfg: watch::Receiver<Arc<ControlPlane>>,
    out: watch::Sender<Arc<ControlPlane>>,
    cancel: CancellationToken,
) {
    let publish = |cp: Arc<ControlPlane>| {
        out.send_if_modified(|cur| {
            let changed = **cur != *cp;
            if changed {
                *cur = cp;
            }
            changed
        });
    };
    let mut core = Core::default();
    publish(core.config(cfg.borrow_and_update().clone()));
    let mut wait = Duration::ZERO;
    loop {
        let has_name = core.name().is_some();
        let sleep = async move {
            match has_name {
                true => tokio::time::sleep(wait).await,
                false => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = cfg.changed() => {
                if r.is_err() {
                    return;
                }
                publish(core.config(cfg.borrow_and_update().clone()));
                wait = Duration::ZERO;
                continue;
            }
            _ = sleep => {}
        }
        let Some(dns) = core.name().cloned() else {
            continue;
        };
        let answer = lookup(&dns.name).await;
        let before = core.last.clone();
        let (published, next) = core.resolved(answer);
        wait = next;
        match published {
            Ok(cp) => {
                if cp.vips != before {
                    info!(name = %dns.name, addresses = ?cp.vips, was = ?before, "control-plane VIP resolved");
                }
                publish(cp);
            }
            Err(e) => {
                warn!(name = %dns.name, error = %e, keeping = ?core.last, retry_in = ?next, "cannot resolve the control-plane VIP's name");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(s: &[&str]) -> Vec<IpAddr> {
        s.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn dns_mode_selects_as_kube_vip() {
        let found = ips(&["2001:db8::1", "192.0.2.1", "192.0.2.2", "2001:db8::2"]);
        assert_eq!(
            select(DnsMode::First, None, &found),
            Ok(ips(&["2001:db8::1"]))
        );
        assert_eq!(
            select(DnsMode::First, Some(true), &found),
            Ok(ips(&["192.0.2.1"]))
        );
        assert_eq!(select(DnsMode::Ipv4, None, &found), Ok(ips(&["192.0.2.1"])));
        assert_eq!(
            select(DnsMode::Ipv6, None, &found),
            Ok(ips(&["2001:db8::1"]))
        );
        assert_eq!(
            select(DnsMode::Dual, None, &found),
            Ok(ips(&["192.0.2.1", "2001:db8::1"]))
        );
        assert_eq!(
            select(DnsMode::Dual, None, &ips(&["192.0.2.1"])),
            Ok(ips(&["192.0.2.1"]))
        );
        assert!(select(DnsMode::Ipv6, None, &ips(&["192.0.2.1"])).is_err());
        assert!(select(DnsMode::First, None, &[]).is_err());
    }

    fn cp(name: Option<&str>, mode: DnsMode) -> Arc<ControlPlane> {
        Arc::new(ControlPlane {
            enabled: true,
            vips: vec![],
            port: 6443,
            health: None,
            dns: name.map(|n| DnsAddress {
                name: n.into(),
                mode,
            }),
        })
    }

    #[test]
    fn follows_the_name_keeps_the_last_address_and_backs_off() {
        let mut c = Core::default();
        assert!(c
            .config(cp(Some("cp.test"), DnsMode::First))
            .vips
            .is_empty());
        let (p, next) = c.resolved(Ok(ips(&["192.0.2.10", "2001:db8::10"])));
        assert_eq!(
            (p.unwrap().vips.clone(), next),
            (ips(&["192.0.2.10"]), PERIOD)
        );
        // The name moves: the VIP follows, in the pinned family.
        let (p, _) = c.resolved(Ok(ips(&["2001:db8::11", "192.0.2.11"])));
        assert_eq!(p.unwrap().vips, ips(&["192.0.2.11"]));
        // Failures: the last address is kept, retries back off up to 30 s.
        let waits: Vec<Duration> = (0..8)
            .map(|_| {
                let (p, next) = c.resolved(Err("NXDOMAIN".into()));
                assert!(p.is_err());
                next
            })
            .collect();
        assert_eq!(
            waits.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
            vec![1, 2, 4, 8, 16, 30, 30, 30]
        );
        assert_eq!(c.last, ips(&["192.0.2.11"]));
        // Another setting changes: the addresses stay published.
        let mut other = (*cp(Some("cp.test"), DnsMode::First)).clone();
        other.port = 7443;
        assert_eq!(c.config(Arc::new(other)).vips, ips(&["192.0.2.11"]));
        // Another name: nothing until it resolves.
        assert!(c
            .config(cp(Some("cp2.test"), DnsMode::First))
            .vips
            .is_empty());
        // No name: passed on as configured.
        let plain = cp(None, DnsMode::First);
        assert!(Arc::ptr_eq(&c.config(plain.clone()), &plain));
        assert!(c.name().is_none());
    }
}
