//! The `/status` document (what `vipr status` prints): peers (with their BFD sessions) and
//! VIPs, built from the speaker's snapshot and the reconciler's view, plus the
//! `birdc show protocols`-like table rendering and the client used by `vipr status`.

use std::net::IpAddr;
use std::time::SystemTime;

use bgp::{BfdStatus, Family, PeerInfo, State};
use serde::{Deserialize, Serialize};

use crate::kube::watch::Allocations;
use crate::model::VipState;

/// One BGP peer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerView {
    /// Neighbour address.
    pub address: IpAddr,
    /// Neighbour port.
    pub port: u16,
    /// Neighbour AS (0: `as: external`, any AS but ours).
    pub remote_as: u32,
    /// Our AS.
    pub local_as: u32,
    /// RFC 4271 state name.
    pub state: String,
    /// Seconds in the current state (uptime when Established).
    pub state_seconds: u64,
    /// Prefixes currently advertised.
    pub prefixes_sent: u64,
    /// Prefixes received (counted and dropped).
    pub prefixes_received: u64,
    /// UPDATE messages sent.
    pub updates_sent: u64,
    /// Times the session went down.
    pub flaps: u64,
    /// The last error.
    pub last_error: Option<String>,
    /// Negotiated hold time.
    pub hold_time: Option<u16>,
    /// Families both sides speak.
    pub families: Vec<String>,
    /// Our address on the session.
    pub local_address: Option<String>,
    /// BGP unnumbered: the interface the peer (a link-local address) is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Negotiated families whose routes are not sent for want of a next hop: `family: why`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_sent: Vec<String>,
    /// The peer's BFD session, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdView>,
}

/// One BFD session (RFC 5880 §6.8.1 variables worth showing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BfdView {
    /// bfd.SessionState: AdminDown, Down, Init, Up.
    pub state: String,
    /// The state the peer last reported.
    pub remote_state: String,
    /// Why our state last changed (RFC 5880 §4.1 diagnostic).
    pub diagnostic: String,
    /// The peer's last diagnostic.
    pub remote_diagnostic: String,
    /// Configured Desired Min TX, ms.
    pub min_tx_ms: u64,
    /// Configured Required Min RX, ms.
    pub min_rx_ms: u64,
    /// Configured Detect Mult.
    pub multiplier: u8,
    /// Transmission interval in use (before jitter), ms.
    pub tx_interval_ms: Option<u64>,
    /// Detection Time in use, ms.
    pub detect_time_ms: Option<u64>,
    /// The peer's Required Min RX, Desired Min TX (ms) and Detect Mult.
    pub remote_min_rx_ms: u64,
    /// The peer's Desired Min TX, ms.
    pub remote_min_tx_ms: u64,
    /// The peer's Detect Mult.
    pub remote_multiplier: u8,
    /// Seconds in the current state.
    pub state_seconds: u64,
    /// Up → Down transitions.
    pub flaps: u64,
    /// Up → Down transitions that closed the BGP session.
    pub failures: u64,
}

impl BfdView {
    fn from(b: &BfdStatus, now: SystemTime) -> BfdView {
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        BfdView {
            state: b.state.name().to_string(),
            remote_state: b.remote_state.name().to_string(),
            diagnostic: b.local_diag.name().to_string(),
            remote_diagnostic: b.remote_diag.name().to_string(),
            min_tx_ms: ms(b.min_tx),
            min_rx_ms: ms(b.min_rx),
            multiplier: b.multiplier,
            tx_interval_ms: b.tx_interval.map(ms),
            detect_time_ms: b.detect_time.map(ms),
            remote_min_rx_ms: ms(b.remote_min_rx),
            remote_min_tx_ms: ms(b.remote_min_tx),
            remote_multiplier: b.remote_multiplier,
            state_seconds: now
                .duration_since(b.since)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            flaps: b.flaps,
            failures: b.failures,
        }
    }
}

/// One VIP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VipView {
    /// The address.
    pub address: IpAddr,
    /// Why it is served.
    pub sources: Vec<String>,
    /// Interface it is on.
    pub interface: Option<String>,
    /// Peers it is advertised to (Established with its family negotiated).
    pub advertised_to: Vec<IpAddr>,
    /// Why it is not advertised, if it is not.
    pub held_back: Option<String>,
    /// The BGP attribute sets its route carries (empty: the global attributes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bgp_attributes: Vec<String>,
}

/// The whole document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// vipr version.
    pub version: String,
    /// Node name.
    pub node: String,
    /// `bgp` or `arp`.
    pub mode: String,
    /// Same as `/readyz`.
    pub ready: bool,
    /// BGP peers.
    pub peers: Vec<PeerView>,
    /// VIPs.
    pub vips: Vec<VipView>,
    /// Services waiting for an address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingView>,
    /// Address pools and their use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolView>,
    /// Configured peers whose node selector leaves this node out, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selected_out: Vec<crate::peers::SelectedOut>,
}

/// A Service without an address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingView {
    /// `namespace/name`.
    pub service: String,
    /// Why.
    pub reason: String,
}

/// An address pool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoolView {
    /// Its name.
    pub name: String,
    /// Addresses in it (capped at 2^64).
    pub size: u64,
    /// Addresses claimed.
    pub used: u64,
}

/// Ready when the peer source has answered, every peer has been tried and at least one is
/// established (no peers: ready).
pub fn ready(peers_known: bool, peers: &[PeerInfo]) -> bool {
    if !peers_known {
        return false; // the peer provider has not answered yet
    }
    peers.is_empty()
        || (peers
            .iter()
            .all(|p| p.stats.connect_attempts > 0 || p.status.state != State::Idle)
            && peers.iter().any(|p| p.status.state == State::Established))
}

/// Builds the status document.
pub fn build(
    node: &str,
    mode: &str,
    peers_known: bool,
    peers: &[PeerInfo],
    vips: &[VipState],
    alloc: &Allocations,
    selected_out: &[crate::peers::SelectedOut],
) -> Status {
    let now = SystemTime::now();
    let mut pv: Vec<PeerView> = peers
        .iter()
        .map(|p| PeerView {
            address: p.config.address,
            port: p.config.port,
            remote_as: p.config.remote_as,
            local_as: p.config.local_as,
            state: p.status.state.name().to_string(),
            state_seconds: now
                .duration_since(p.status.since)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            prefixes_sent: p.stats.prefixes_advertised,
            prefixes_received: p.stats.prefixes_received,
            updates_sent: p.stats.sent(bgp::codec::MessageType::Update),
            flaps: p.stats.flaps,
            last_error: p.status.last_error.clone(),
            hold_time: p.status.negotiated.as_ref().map(|n| n.hold_time),
            families: p
                .status
                .negotiated
                .as_ref()
                .map(|n| n.families.iter().map(|f| f.to_string()).collect())
                .unwrap_or_default(),
            local_address: p.status.local.map(|l| l.ip().to_string()),
            interface: p.config.interface.clone(),
            not_sent: p
                .status
                .negotiated
                .as_ref()
                .map(|n| {
                    n.without_next_hop
                        .iter()
                        .map(|(f, why)| format!("{f}: {why}"))
                        .collect()
                })
                .unwrap_or_default(),
            bfd: p.status.bfd.as_ref().map(|b| BfdView::from(b, now)),
        })
        .collect();
    pv.sort_by_key(|p| p.address);
    let vv = vips
        .iter()
        .map(|v| {
            let fam = if v.address.is_ipv4() {
                Family::Ipv4Unicast
            } else {
                Family::Ipv6Unicast
            };
            let mut to: Vec<IpAddr> = if v.advertised {
                peers
                    .iter()
                    .filter(|p| {
                        p.status.state == State::Established
                            && p.status.negotiated.as_ref().is_some_and(|n| {
                                n.families.contains(&fam)
                                    && !n.without_next_hop.iter().any(|(f, _)| *f == fam)
                            })
                    })
                    .map(|p| p.config.address)
                    .collect()
            } else {
                Vec::new()
            };
            to.sort();
            VipView {
                address: v.address,
                sources: v.sources.iter().map(|s| s.to_string()).collect(),
                interface: v.interface.clone(),
                advertised_to: to,
                held_back: v.held_back.as_ref().map(|h| h.to_string()),
                bgp_attributes: v.attribute_sets.clone(),
            }
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        node: node.to_string(),
        mode: mode.to_string(),
        ready: ready(peers_known, peers),
        peers: pv,
        vips: vv,
        pending: alloc
            .pending
            .iter()
            .map(|(svc, p)| PendingView {
                service: svc.to_string(),
                reason: p.to_string(),
            })
            .collect(),
        pools: alloc
            .pools
            .iter()
            .map(|p| PoolView {
                name: p.name.clone(),
                size: p.size.min(u64::MAX as u128) as u64,
                used: p.used as u64,
            })
            .collect(),
        selected_out: selected_out.to_vec(),
    }
}

fn duration(s: u64) -> String {
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// The human-readable tables.
pub fn render(s: &Status) -> String {
    let mut out = format!(
        "vipr {} on {} ({} mode){}\n\n",
        s.version,
        s.node,
        s.mode,
        if s.ready { "" } else { ", NOT READY" }
    );
    out.push_str(&format!(
        "{:<26} {:>10} {:<12} {:<6} {:>10} {:>8} {:>6}  {}\n",
        "PEER", "AS", "STATE", "BFD", "SINCE", "SENT", "FLAPS", "LAST ERROR"
    ));
    for p in &s.peers {
        let name = bgp::config::peer_name(p.address, p.interface.as_deref());
        let addr = if p.port == 179 {
            name
        } else {
            format!("{name}:{}", p.port)
        };
        out.push_str(&format!(
            "{:<26} {:>10} {:<12} {:<6} {:>10} {:>8} {:>6}  {}\n",
            addr,
            match p.remote_as {
                0 => "external".to_string(),
                a => a.to_string(),
            },
            p.state,
            p.bfd.as_ref().map(|b| b.state.as_str()).unwrap_or("-"),
            duration(p.state_seconds),
            p.prefixes_sent,
            p.flaps,
            p.last_error.as_deref().unwrap_or("-")
        ));
    }
    for p in &s.peers {
        for n in &p.not_sent {
            let name = bgp::config::peer_name(p.address, p.interface.as_deref());
            out.push_str(&format!("  {name}: not sent: {n}\n"));
        }
    }
    for o in &s.selected_out {
        out.push_str(&format!(
            "{:<26} {:>10} {:<12} not selected: {}\n",
            o.address, "-", "-", o.reason
        ));
    }
    if s.peers.iter().any(|p| p.bfd.is_some()) {
        out.push('\n');
        out.push_str(&format!(
            "{:<26} {:<9} {:<9} {:>9} {:>9} {:>6}  {}\n",
            "BFD PEER", "STATE", "REMOTE", "TX", "DETECT", "FLAPS", "DIAGNOSTIC"
        ));
        let ms = |v: Option<u64>| v.map(|v| format!("{v}ms")).unwrap_or_else(|| "-".into());
        for p in &s.peers {
            let Some(b) = &p.bfd else { continue };
            out.push_str(&format!(
                "{:<26} {:<9} {:<9} {:>9} {:>9} {:>6}  {}\n",
                p.address.to_string(),
                b.state,
                b.remote_state,
                ms(b.tx_interval_ms),
                ms(b.detect_time_ms),
                b.flaps,
                b.diagnostic
            ));
        }
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<40} {:<28} {:<10} {}\n",
        "VIP", "SOURCE", "INTERFACE", "ADVERTISED TO"
    ));
    for v in &s.vips {
        let to = if v.advertised_to.is_empty() {
            format!(
                "- ({})",
                v.held_back.as_deref().unwrap_or("no established peer")
            )
        } else {
            v.advertised_to
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "{:<40} {:<28} {:<10} {}\n",
            v.address,
            v.sources.join(","),
            v.interface.as_deref().unwrap_or("-"),
            to
        ));
    }
    if !s.pending.is_empty() {
        out.push('\n');
        out.push_str(&format!("{:<40} {}\n", "SERVICE WITHOUT ADDRESS", "WHY"));
        for p in &s.pending {
            out.push_str(&format!("{:<40} {}\n", p.service, p.reason));
        }
    }
    if !s.pools.is_empty() {
        out.push('\n');
        out.push_str(&format!("{:<40} {:>20} {:>8}\n", "POOL", "SIZE", "USED"));
        for p in &s.pools {
            out.push_str(&format!("{:<40} {:>20} {:>8}\n", p.name, p.size, p.used));
        }
    }
    out
}

/// `vipr status [--json] [--addr HOST:PORT]`: prints a running daemon's status; the exit
/// status is 1 when it cannot be read.
pub fn main(m: &clap::ArgMatches) -> i32 {
    let addr = m.get_one::<String>("addr").cloned().unwrap_or_default();
    let json = m.get_flag("json");
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vipr: {e}");
            return 1;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    match rt.block_on(fetch(&addr)) {
        Ok(s) if json => {
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            0
        }
        Ok(s) => {
            print!("{}", render(&s));
            0
        }
        Err(e) => {
            eprintln!("vipr status: {e}");
            1
        }
    }
}

/// The address `vipr status` connects to, from the same forms `prometheus_server` takes:
/// `:2112` (any address: this host's loopback), `0.0.0.0:2112` / `[::]:2112` (likewise),
/// `HOST:PORT`.
pub fn client_addr(addr: &str) -> String {
    let addr = addr.trim();
    if let Some(port) = addr.strip_prefix(':') {
        return format!("127.0.0.1:{port}");
    }
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let lo: std::net::IpAddr = if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            std::net::SocketAddr::new(lo, a.port()).to_string()
        }
        _ => addr.to_string(),
    }
}

/// Fetches `/status` from a running daemon. Errors say what the operator can check, not
/// what the HTTP client library saw.
pub async fn fetch(addr: &str) -> Result<Status, String> {
    let addr = client_addr(addr);
    let url = format!("http://{addr}/status");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client.get(&url).send().await.map_err(|e| {
        if e.is_connect() {
            format!("is vipr running? nothing listens on {addr} (its prometheus_server; --addr to ask another address)")
        } else if e.is_timeout() {
            format!("{addr} did not answer within 5 s")
        } else if e.is_builder() {
            format!("{addr} is not an address: expected HOST:PORT or :PORT")
        } else {
            format!("{addr}: the request failed")
        }
    })?;
    match resp.status().as_u16() {
        200 => {}
        403 => {
            return Err(format!(
                "{addr} refuses /status to this client: it answers this host only, or the networks of vipr_status_allow"
            ))
        }
        404 => return Err(format!("{addr} answers, but not as vipr (no /status): is another program on this port?")),
        code => return Err(format!("{addr}/status answered HTTP {code}")),
    }
    resp.json::<Status>()
        .await
        .map_err(|_| format!("{addr}/status did not answer with vipr's status document: is another program on this port?"))
}

#[cfg(test)]
mod client_tests {
    #[test]
    fn status_takes_the_address_forms_of_prometheus_server() {
        assert_eq!(super::client_addr(":2112"), "127.0.0.1:2112");
        assert_eq!(super::client_addr("0.0.0.0:2113"), "127.0.0.1:2113");
        assert_eq!(super::client_addr("[::]:2112"), "[::1]:2112");
        assert_eq!(super::client_addr("192.0.2.1:2112"), "192.0.2.1:2112");
        assert_eq!(super::client_addr("localhost:2112"), "localhost:2112");
    }

    #[test]
    fn nothing_listening_says_so() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt.block_on(super::fetch(&format!(":{port}"))).unwrap_err();
        assert_eq!(
            e,
            format!("is vipr running? nothing listens on 127.0.0.1:{port} (its prometheus_server; --addr to ask another address)")
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bgp::{BfdState, BfdStatus, PeerConfig, PeerStatus, Stats};

    use super::*;

    /// A peer whose BFD session is Up at 50 ms × 3.
    pub(crate) fn peer_with_bfd() -> PeerInfo {
        let ms = Duration::from_millis;
        let mut bfd = BfdStatus::idle(ms(50), ms(50), 3);
        bfd.state = BfdState::Up;
        bfd.remote_state = BfdState::Up;
        bfd.local_discriminator = 7;
        bfd.remote_discriminator = 9;
        bfd.tx_interval = Some(ms(50));
        bfd.detect_time = Some(ms(150));
        bfd.flaps = 2;
        let mut status = PeerStatus::idle();
        status.bfd = Some(bfd);
        PeerInfo {
            config: Arc::new(PeerConfig::new("192.0.2.1".parse().unwrap(), 65000, 65001)),
            status,
            stats: Stats::default(),
        }
    }

    #[test]
    fn bfd_shows_in_the_document_and_the_tables() {
        let s = build(
            "n",
            "bgp",
            true,
            &[peer_with_bfd()],
            &[],
            &Allocations::default(),
            &[],
        );
        let b = s.peers[0].bfd.as_ref().unwrap();
        assert_eq!(b.state.as_str(), "Up");
        assert_eq!(
            (b.tx_interval_ms, b.detect_time_ms, b.flaps),
            (Some(50), Some(150), 2)
        );
        let text = render(&s);
        assert!(text.contains("BFD PEER"), "{text}");
        // Discriminators help spoof a BFD Down: neither the document nor the tables carry
        // them.
        let doc = serde_json::to_string(&s).unwrap();
        assert!(!doc.contains("discriminator"), "{doc}");
        assert!(!text.contains(" ID "), "{text}");
        assert!(text.contains("150ms"), "{text}");
        // Older documents without `bfd` still parse.
        let mut v = serde_json::to_value(&s).unwrap();
        v["peers"][0].as_object_mut().unwrap().remove("bfd");
        let back: Status = serde_json::from_value(v).unwrap();
        assert_eq!(back.peers[0].bfd, None);
    }

    #[test]
    fn bfd_metrics() {
        let m = crate::metrics::render(
            &[peer_with_bfd()],
            &crate::metrics::Scrape {
                node: "n1",
                vips: &[],
                alloc: &Allocations::default(),
                writes: &[("claim", "ok", 2)],
                status_failures: &[],
                leases: &[],
                work: [5, 6, 7],
                healthy: None,
            },
        );
        assert!(m.contains("vipr_services_planned_total 5"), "{m}");
        assert!(
            m.contains("vipr_bfd_session_state{peer=\"192.0.2.1\"} 4"),
            "{m}"
        );
        assert!(
            m.contains("vipr_bfd_detect_time_seconds{peer=\"192.0.2.1\"} 0.15"),
            "{m}"
        );
        assert!(
            m.contains("vipr_bfd_session_flaps_total{peer=\"192.0.2.1\"} 2"),
            "{m}"
        );
        assert!(
            m.contains("vipr_api_writes_total{kind=\"claim\",result=\"ok\"} 2"),
            "{m}"
        );
        assert!(!m.contains("discriminator"), "{m}");
        assert!(
            m.contains("vipr_bfd_session_info{peer=\"192.0.2.1\",state=\"Up\"} 1"),
            "{m}"
        );
    }

    /// Peers a node's labels leave out: in the document and one line each in the tables.
    #[test]
    fn selected_out_peers_show_with_their_reason() {
        let out = [crate::peers::SelectedOut {
            address: "192.0.2.2".parse().unwrap(),
            reason: "label rack=r1, the peer wants rack=r2".into(),
        }];
        let s = build("n", "bgp", true, &[], &[], &Allocations::default(), &out);
        let doc = serde_json::to_value(&s).unwrap();
        assert_eq!(doc["selected_out"][0]["address"], "192.0.2.2");
        let text = render(&s);
        assert!(
            text.contains("not selected: label rack=r1, the peer wants rack=r2"),
            "{text}"
        );
        let none = build("n", "bgp", true, &[], &[], &Allocations::default(), &[]);
        assert!(serde_json::to_value(&none)
            .unwrap()
            .get("selected_out")
            .is_none());
    }
}
