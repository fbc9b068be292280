//! A real BIRD 2 daemon as a BGP peer ([`Bird`]) and the parser for `birdc show route all`
//! ([`BirdRoute`]). Each `Bird` owns its temporary directory (config, control socket, pid
//! file, log) and the `bird` process; `Drop` kills it and removes the directory.

use crate::netns::netns_command;
use crate::{log_file, output_of, tail, wait_for, Netns, Proc, TempDir};
use std::process::Command;
use std::time::Duration;

/// A `bird` process in a namespace, driven through `birdc` on its private control socket.
pub struct Bird {
    proc: Option<Proc>,
    ns: String,
    dir: TempDir,
}

impl Bird {
    /// Write `config` to `bird.conf` in a new temporary directory, start
    /// `bird -f -c bird.conf -s bird.ctl -P bird.pid` inside `ns` (output to `bird.log`) and
    /// wait until `birdc` answers. Panics with the log if BIRD exits or does not answer in
    /// 10 s (e.g. a config error).
    ///
    /// BIRD 2 reminders: eBGP channels need explicit filters (`import all; export all;`);
    /// use `hold time 3; keepalive time 1; connect retry time 1; connect delay time 1;
    /// error wait time 1, 5;` to converge in seconds (BIRD waits `connect delay time`, 5 s by
    /// default, before its first outgoing connect, and after an error refuses the peer for
    /// `error wait time`, doubling from the first to the second number).
    pub fn start(ns: &Netns, config: &str) -> Bird {
        crate::require_root();
        let dir = TempDir::new("bird");
        dir.write("bird.conf", config);
        let mut bird = Bird {
            proc: None,
            ns: ns.name.clone(),
            dir,
        };
        bird.spawn();
        bird
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("bird.conf");
        let ctl = self.dir.join("bird.ctl");
        let pid = self.dir.join("bird.pid");
        let log = self.dir.join("bird.log");
        let (out, err) = log_file(&log);
        let args = [
            "bird",
            "-f",
            "-c",
            conf.to_str().unwrap(),
            "-s",
            ctl.to_str().unwrap(),
            "-P",
            pid.to_str().unwrap(),
        ];
        let child = netns_command(&self.ns, &args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn bird");
        let mut proc = Proc::new("bird", child);
        let ready = wait_for(Duration::from_secs(10), || {
            if let Some(st) = proc.exited() {
                panic!(
                    "bird exited ({st}) in netns {}:\n{}",
                    self.ns,
                    tail(&log, 4000)
                );
            }
            let out = output_of(Command::new("birdc").arg("-s").arg(&ctl).arg("show status"));
            String::from_utf8_lossy(&out.stdout)
                .contains("Daemon is up and running")
                .then_some(())
        });
        if ready.is_none() {
            panic!(
                "bird in netns {} did not answer in 10 s:\n{}",
                self.ns,
                tail(&log, 4000)
            );
        }
        self.proc = Some(proc);
    }

    /// Run one `birdc` command (e.g. `"show protocols all"`) and return its output without
    /// the `BIRD 2.0.x ready.` banner. Errors come back as text (e.g. `syntax error, ...`).
    pub fn birdc(&self, cmd: &str) -> String {
        let out = output_of(
            Command::new("birdc")
                .arg("-s")
                .arg(self.dir.join("bird.ctl"))
                .arg(cmd),
        );
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        match text.split_once('\n') {
            Some((first, rest)) if first.starts_with("BIRD ") && first.ends_with("ready.") => {
                rest.to_string()
            }
            _ => text,
        }
    }

    /// The BGP state of protocol `proto` as `show protocols all` prints it after
    /// `BGP state:` (e.g. `"Established"`, `"Active"`, `"Connect"`, `"Idle"`); for a protocol
    /// without that line (disabled, not BGP) its State column (`"down"`, `"up"`). If the
    /// protocol is unknown, the trimmed birdc output (an error text).
    pub fn protocol_state(&self, proto: &str) -> String {
        let out = self.birdc(&format!("show protocols all \"{proto}\""));
        for line in out.lines() {
            if let Some(v) = line.trim().strip_prefix("BGP state:") {
                return v.trim().to_string();
            }
        }
        for line in out.lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() >= 4 && cols[0] == proto {
                return cols[3].to_string();
            }
        }
        out.trim().to_string()
    }

    /// Every route of every table, parsed from `show route all table all`. Several routes
    /// for one prefix (one per peer) are all returned, the preferred one flagged `primary`.
    pub fn routes(&self) -> Vec<BirdRoute> {
        parse_routes(&self.birdc("show route all table all"))
    }

    /// The routes for `prefix` (exactly as BIRD prints it, e.g. `"203.0.113.10/32"`).
    pub fn routes_for(&self, prefix: &str) -> Vec<BirdRoute> {
        self.routes()
            .into_iter()
            .filter(|r| r.prefix == prefix)
            .collect()
    }

    /// Replace the config file with `config` and apply it (`birdc configure`); panics with
    /// birdc's answer unless it reports success.
    pub fn reconfigure(&self, config: &str) {
        self.dir.write("bird.conf", config);
        let out = self.birdc("configure");
        assert!(
            out.contains("Reconfigured") || out.contains("Reconfiguration in progress"),
            "birdc configure failed:\n{out}"
        );
    }

    /// Stop BIRD (SIGTERM, which sends a Cease to its peers; SIGKILL after 5 s) and start it
    /// again with the same config file. Returns once `birdc` answers.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stop BIRD (SIGTERM, SIGKILL after 5 s) without starting it again; [`Bird::restart`]
    /// starts it. `birdc` fails meanwhile.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(5));
        }
    }

    /// The `bird` process, e.g. to `signal(libc::SIGSTOP)` it. `None` after [`Bird::stop`].
    pub fn process(&mut self) -> Option<&mut Proc> {
        self.proc.as_mut()
    }

    /// The private directory (config, sockets, pid files, logs); removed on `Drop`.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir.path
    }

    /// BIRD's stdout and stderr so far (with `log stderr all;` in the config, its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }
}

/// One route as `birdc show route all` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BirdRoute {
    /// The table, e.g. `"master4"`, `"master6"`.
    pub table: String,
    /// The network, e.g. `"203.0.113.10/32"`, `"2001:db8:ff::10/128"`.
    pub prefix: String,
    /// The gateway of the first `via GW on IFACE` line (the resolved next hop; for IPv6 the
    /// global address). `None` for device, blackhole or unreachable routes.
    pub next_hop: Option<String>,
    /// The protocol that brought the route, e.g. the name of a `protocol bgp NAME`.
    pub from_protocol: String,
    /// Whether BIRD marks it as the table's preferred route for the prefix (`*`).
    pub primary: bool,
    /// `BGP.as_path`, AS sets and confederation segments flattened; empty for iBGP/local.
    pub as_path: Vec<u32>,
    /// `BGP.origin`: `"IGP"`, `"EGP"` or `"Incomplete"`.
    pub origin: Option<String>,
    /// `BGP.med`.
    pub med: Option<u32>,
    /// `BGP.local_pref`.
    pub local_pref: Option<u32>,
    /// `BGP.community`, e.g. `[(65001, 100)]`.
    pub communities: Vec<(u16, u16)>,
    /// `BGP.large_community`, e.g. `[(65001, 1, 2)]`.
    pub large_communities: Vec<(u32, u32, u32)>,
    /// Every `Key: value` attribute line as printed (`Type`, `BGP.next_hop`,
    /// `BGP.ext_community`, ...), continuation lines joined with a space.
    pub attrs: Vec<(String, String)>,
}

impl BirdRoute {
    /// The raw value of attribute `key` (e.g. `"BGP.next_hop"`), if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse the output of `birdc show route all` (banner already removed or not).
///
/// Format (BIRD 2.0.12): `Table master4:` headers; a route header
/// `PREFIX  unicast [PROTO TIME ...] * (PREF) [AS65001i]`, where a further route for the
/// same prefix starts with spaces instead of the prefix; then tab-indented lines
/// `via GW on IFACE`, `Type: BGP univ`, `BGP.origin: IGP`, `BGP.as_path: 65001 65002`,
/// `BGP.community: (65001,100) (65001,200)`, `BGP.large_community: (65001, 1, 2)`;
/// long attribute values continue on lines indented with two tabs.
pub fn parse_routes(text: &str) -> Vec<BirdRoute> {
    let mut routes: Vec<BirdRoute> = Vec::new();
    let mut table = String::new();
    let mut prefix = String::new();
    let mut cur: Option<BirdRoute> = None;
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with("BIRD ") {
            continue;
        }
        if let Some(t) = line.strip_prefix("Table ") {
            routes.extend(cur.take().map(finish));
            table = t.trim_end_matches(':').trim().to_string();
            continue;
        }
        if let Some(rest) = line.strip_prefix("\t\t") {
            if let Some(last) = cur.as_mut().and_then(|r| r.attrs.last_mut()) {
                last.1.push(' ');
                last.1.push_str(rest.trim());
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix('\t') {
            let Some(r) = cur.as_mut() else { continue };
            let rest = rest.trim();
            if let Some(via) = rest.strip_prefix("via ") {
                if r.next_hop.is_none() {
                    r.next_hop = via.split_whitespace().next().map(str::to_string);
                }
            } else if let Some((k, v)) = rest.split_once(':') {
                if !k.contains(' ') {
                    r.attrs.push((k.to_string(), v.trim().to_string()));
                }
            }
            continue;
        }
        // A route header: with the prefix in column 0, or indented for the same prefix.
        let Some(open) = line.find('[') else { continue };
        routes.extend(cur.take().map(finish));
        if !line.starts_with(' ') {
            prefix = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
        let after = &line[open + 1..];
        let from_protocol = after
            .split(|c: char| c.is_whitespace() || c == ']')
            .next()
            .unwrap_or_default()
            .to_string();
        let primary = after
            .split_once(']')
            .map(|(_, tail)| tail.trim_start().starts_with('*'))
            .unwrap_or(false);
        cur = Some(BirdRoute {
            table: table.clone(),
            prefix: prefix.clone(),
            from_protocol,
            primary,
            ..BirdRoute::default()
        });
    }
    routes.extend(cur.take().map(finish));
    routes
}

/// Fill the typed fields from the raw attributes.
fn finish(mut r: BirdRoute) -> BirdRoute {
    let numbers = |v: &str| -> Vec<u32> {
        v.split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect()
    };
    let groups = |v: &str| -> Vec<Vec<u32>> {
        v.split('(')
            .skip(1)
            .filter_map(|g| g.split_once(')'))
            .map(|(g, _)| numbers(g))
            .collect()
    };
    for (k, v) in &r.attrs {
        match k.as_str() {
            "BGP.as_path" => r.as_path = numbers(v),
            "BGP.origin" => r.origin = Some(v.clone()),
            "BGP.med" => r.med = v.parse().ok(),
            "BGP.local_pref" => r.local_pref = v.parse().ok(),
            "BGP.community" => {
                r.communities = groups(v)
                    .into_iter()
                    .filter(|g| g.len() == 2)
                    .map(|g| (g[0] as u16, g[1] as u16))
                    .collect()
            }
            "BGP.large_community" => {
                r.large_communities = groups(v)
                    .into_iter()
                    .filter(|g| g.len() == 3)
                    .map(|g| (g[0], g[1], g[2]))
                    .collect()
            }
            _ => {}
        }
    }
    if r.next_hop.is_none() {
        if let Some(nh) = r.attr("BGP.next_hop") {
            r.next_hop = nh.split_whitespace().next().map(str::to_string);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "BIRD 2.0.12 ready.
Table master4:
198.51.100.7/32      unicast [gob 13:43:26.493] * (100) [AS65002?]
\tvia 10.55.0.12 on br0
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65002
\tBGP.next_hop: 10.55.0.12
\tBGP.local_pref: 100
\tBGP.community: (65002,7)
\tBGP.large_community: (65002, 1, 1)
203.0.113.10/32      unicast [frr4 13:43:12.466] * (100) [AS65001i]
\tvia 10.55.0.11 on br0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 65001 {65003 65004}
\tBGP.next_hop: 10.55.0.11
\tBGP.med: 50
\tBGP.local_pref: 100
\tBGP.community: (65001,100)
\t\t(65001,200)
\tBGP.large_community: (65001, 1, 2)
                     unicast [gob 13:43:26.503] (100) [AS65002?]
\tvia 10.55.0.12 on br0
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 
\tBGP.next_hop: 10.55.0.12
\tBGP.local_pref: 100

Table master6:
2001:db8:ff::10/128  unicast [frr6 13:43:12.466] * (100) [AS65001i]
\tvia 2001:db8:55::11 on br0
\tType: BGP univ
\tBGP.next_hop: 2001:db8:55::11 fe80::7c19:eff:feb2:82d7
192.0.2.0/24         blackhole [static1 13:43:05.564] * (200)
\tType: static univ
";

    #[test]
    fn parses_sample() {
        let r = parse_routes(SAMPLE);
        assert_eq!(r.len(), 5, "{r:#?}");
        assert_eq!(r[0].prefix, "198.51.100.7/32");
        assert_eq!(r[0].table, "master4");
        assert_eq!(r[0].from_protocol, "gob");
        assert!(r[0].primary);
        assert_eq!(r[0].origin.as_deref(), Some("Incomplete"));
        assert_eq!(r[0].communities, vec![(65002, 7)]);
        assert_eq!(r[0].large_communities, vec![(65002, 1, 1)]);
        assert_eq!(r[1].as_path, vec![65001, 65003, 65004]);
        assert_eq!(r[1].med, Some(50));
        assert_eq!(r[1].communities, vec![(65001, 100), (65001, 200)]);
        assert_eq!(r[2].prefix, "203.0.113.10/32");
        assert_eq!(r[2].from_protocol, "gob");
        assert!(!r[2].primary);
        assert!(r[2].as_path.is_empty());
        assert_eq!(r[2].next_hop.as_deref(), Some("10.55.0.12"));
        assert_eq!(r[3].table, "master6");
        assert_eq!(r[3].next_hop.as_deref(), Some("2001:db8:55::11"));
        assert_eq!(r[4].prefix, "192.0.2.0/24");
        assert_eq!(r[4].next_hop, None);
        assert_eq!(r[4].attr("Type"), Some("static univ"));
    }
}
