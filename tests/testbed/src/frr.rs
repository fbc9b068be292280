//! A real FRR peer ([`Frr`]): zebra and bgpd (and optionally bfdd) started directly (no
//! systemd, no watchfrr) with private paths in a temporary directory owned by user `frr`.
//! Each `Frr` owns the directory and its processes; `Drop` stops them (SIGTERM so FRR removes
//! its `/var/tmp/frr/DAEMON.PID` crash-log directories; SIGKILL after 3 s) and removes the
//! directory.

use crate::netns::netns_command;
use crate::{log_file, output_of, tail, wait_for, Netns, Proc, TempDir};
use std::process::Command;
use std::time::Duration;

/// zebra + bgpd (+ bfdd) in a namespace, driven through `vtysh --vty_socket DIR`.
pub struct Frr {
    bgpd: Option<Proc>,
    zebra: Option<Proc>,
    /// Present when started with [`Frr::start_with_bfdd`].
    bfdd: Option<Proc>,
    with_bfdd: bool,
    ns: String,
    dir: TempDir,
}

const ZEBRA_CONF: &str = "hostname zebra\nlog stdout informational\n";

impl Frr {
    /// Write a minimal `zebra.conf` and `bgpd_conf` as `bgpd.conf` into a new directory owned
    /// by `frr`, start `zebra` then `bgpd` inside `ns` in the foreground (`-f CONF -i PID
    /// -z zserv.api --vty_socket DIR -P 0`, output to `zebra.log` / `bgpd.log`) and wait
    /// until vtysh reaches both. Panics with the logs if a daemon exits or does not answer
    /// in 15 s.
    ///
    /// bgpd.conf reminders: always set `bgp router-id` (without it a bgpd that starts
    /// before zebra has told it the addresses sends OPEN with id 0.0.0.0, which BIRD rejects
    /// with "Bad BGP identifier" and then backs off); `no bgp ebgp-requires-policy`, `no bgp default ipv4-unicast` and
    /// `neighbor X activate` per address family, `neighbor X timers 1 3`,
    /// `neighbor X timers connect 1`; `network P` needs the prefix in zebra's RIB unless
    /// `no bgp network import-check`.
    pub fn start(ns: &Netns, bgpd_conf: &str) -> Frr {
        crate::require_root();
        let dir = TempDir::new("frr");
        dir.write("zebra.conf", ZEBRA_CONF);
        dir.write("bgpd.conf", bgpd_conf);
        dir.chown_to("frr");
        let mut frr = Frr {
            bgpd: None,
            zebra: None,
            bfdd: None,
            with_bfdd: false,
            ns: ns.name.clone(),
            dir,
        };
        frr.spawn();
        frr
    }

    /// [`Frr::start`] plus bfdd (same flags, `bfdd.conf` from `bfdd_conf`, output to
    /// `bfdd.log`). bgpd's `neighbor X bfd [profile P]` registers sessions with bfdd through
    /// zebra; a `bfd` block in `bfdd_conf` holds profiles (`profile fast` /
    /// `receive-interval 50` / `transmit-interval 50` / `detect-multiplier 3`) or static
    /// `peer X` sessions. `show bfd peers json` answers once bfdd is up.
    pub fn start_with_bfdd(ns: &Netns, bgpd_conf: &str, bfdd_conf: &str) -> Frr {
        crate::require_root();
        let dir = TempDir::new("frr");
        dir.write("zebra.conf", ZEBRA_CONF);
        dir.write("bgpd.conf", bgpd_conf);
        dir.write("bfdd.conf", bfdd_conf);
        dir.chown_to("frr");
        let mut frr = Frr {
            bgpd: None,
            zebra: None,
            bfdd: None,
            with_bfdd: true,
            ns: ns.name.clone(),
            dir,
        };
        frr.spawn();
        frr
    }

    fn spawn_daemon(&self, daemon: &str) -> Proc {
        let d = &self.dir;
        let (out, err) = log_file(&d.join(&format!("{daemon}.log")));
        let bin = format!("/usr/lib/frr/{daemon}");
        let conf = d.join(&format!("{daemon}.conf"));
        let pid = d.join(&format!("{daemon}.pid"));
        let zserv = d.join("zserv.api");
        let args = [
            bin.as_str(),
            "-f",
            conf.to_str().unwrap(),
            "-i",
            pid.to_str().unwrap(),
            "-z",
            zserv.to_str().unwrap(),
            "--vty_socket",
            d.path.to_str().unwrap(),
            "-P",
            "0",
        ];
        let child = netns_command(&self.ns, &args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        Proc::new(daemon, child)
    }

    fn spawn(&mut self) {
        let zebra = self.spawn_daemon("zebra");
        self.zebra = Some(zebra);
        // bgpd retries zserv, but starting it after zebra's socket exists saves a retry.
        wait_for(Duration::from_secs(5), || {
            self.dir.join("zserv.api").exists().then_some(())
        });
        if self.with_bfdd {
            let bfdd = self.spawn_daemon("bfdd");
            self.bfdd = Some(bfdd);
        }
        let bgpd = self.spawn_daemon("bgpd");
        self.bgpd = Some(bgpd);
        let ready = wait_for(Duration::from_secs(15), || {
            for d in ["zebra", "bgpd", "bfdd"] {
                let p = match d {
                    "zebra" => self.zebra.as_mut(),
                    "bgpd" => self.bgpd.as_mut(),
                    _ => self.bfdd.as_mut(),
                };
                if let Some(st) = p.and_then(|p| p.exited()) {
                    panic!(
                        "FRR {d} exited ({st}) in netns {}:\n{}",
                        self.ns,
                        self.logs()
                    );
                }
            }
            let sockets = ["zebra.vty", "bgpd.vty"]
                .iter()
                .all(|s| self.dir.join(s).exists())
                && (!self.with_bfdd || self.dir.join("bfdd.vty").exists());
            if !sockets {
                return None;
            }
            let out = self.vtysh_output(&["show bgp summary json"]);
            (out.status.success() && out.stdout.starts_with(b"{")).then_some(())
        });
        if ready.is_none() {
            panic!(
                "FRR in netns {} did not answer in 15 s:\n{}",
                self.ns,
                self.logs()
            );
        }
    }

    fn vtysh_output(&self, cmds: &[&str]) -> std::process::Output {
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket").arg(&self.dir.path);
        for cmd in cmds {
            c.arg("-c").arg(cmd);
        }
        output_of(&mut c)
    }

    /// Run vtysh commands: each line of `cmd` is one `-c` argument, so a config change is
    /// `"conf t\nrouter bgp 65001\nneighbor 10.55.0.1 shutdown"`. Returns stdout; panics with
    /// the output if vtysh exits non-zero (e.g. `% Unknown command`).
    pub fn vtysh(&self, cmd: &str) -> String {
        let lines: Vec<&str> = cmd
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let out = self.vtysh_output(&lines);
        if !out.status.success() {
            panic!(
                "vtysh {cmd:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Frr::vtysh`] parsed as JSON (the command must end in `json`); panics if it is not.
    pub fn vtysh_json(&self, cmd: &str) -> serde_json::Value {
        let text = self.vtysh(cmd);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("vtysh {cmd:?} is not JSON ({e}):\n{text}"))
    }

    /// `bgpState` of `show bgp neighbor PEER json`: `"Established"`, `"Active"`,
    /// `"Connect"`, `"Idle"`, `"OpenSent"`, `"OpenConfirm"`; `""` if FRR has no such neighbor.
    pub fn neighbor_state(&self, peer: &str) -> String {
        let v = self.vtysh_json(&format!("show bgp neighbor {peer} json"));
        let entry = v
            .get(peer)
            .or_else(|| v.as_object().and_then(|o| o.values().next()));
        entry
            .and_then(|e| e.get("bgpState"))
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// Stop both daemons and start them again with the config files as written by
    /// [`Frr::start`] (changes made through vtysh are lost unless written there).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stop bgpd, bfdd, then zebra (SIGTERM; SIGKILL after 3 s each).
    pub fn stop(&mut self) {
        for p in [self.bgpd.take(), self.bfdd.take(), self.zebra.take()]
            .into_iter()
            .flatten()
        {
            stop_daemon(p);
        }
    }

    /// The bgpd process, e.g. to `signal(libc::SIGSTOP)` it. `None` after [`Frr::stop`].
    pub fn bgpd_process(&mut self) -> Option<&mut Proc> {
        self.bgpd.as_mut()
    }

    /// The bfdd process (with [`Frr::start_with_bfdd`]), e.g. to stop BFD alone.
    pub fn bfdd_process(&mut self) -> Option<&mut Proc> {
        self.bfdd.as_mut()
    }

    /// The private directory (config, sockets, pid files, logs); removed on `Drop`.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir.path
    }

    /// The tails of zebra's, bgpd's (and bfdd's) logs, for messages.
    pub fn logs(&self) -> String {
        let mut s = format!(
            "--- zebra.log\n{}\n--- bgpd.log\n{}",
            tail(&self.dir.join("zebra.log"), 3000),
            tail(&self.dir.join("bgpd.log"), 3000)
        );
        if self.with_bfdd {
            s += &format!("\n--- bfdd.log\n{}", tail(&self.dir.join("bfdd.log"), 3000));
        }
        s
    }
}

/// SIGTERM (FRR then removes its `/var/tmp/frr/NAME.PID`), SIGKILL after 3 s; remove
/// that directory ourselves in case it was the SIGKILL.
fn stop_daemon(mut p: Proc) {
    let dir = format!("/var/tmp/frr/{}.{}", p.name(), p.pid());
    p.stop(Duration::from_secs(3));
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for Frr {
    fn drop(&mut self) {
        self.stop();
    }
}
