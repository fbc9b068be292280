//! A real GoBGP peer ([`Gobgp`]): `gobgpd` in a namespace with its gRPC API on a unix socket
//! in a temporary directory, driven through the `gobgp` CLI. Each `Gobgp` owns the directory
//! and the process; `Drop` kills it and removes the directory.

use crate::netns::netns_command;
use crate::{log_file, output_of, tail, wait_for, Netns, Proc, TempDir};
use std::process::Command;
use std::time::Duration;

/// A `gobgpd` process in a namespace.
pub struct Gobgp {
    proc: Option<Proc>,
    ns: String,
    dir: TempDir,
}

impl Gobgp {
    /// Write `toml` to `gobgpd.toml` in a new directory, start
    /// `gobgpd -f gobgpd.toml -p --pprof-disable --api-hosts unix://DIR/api.sock` inside `ns`
    /// (output to `gobgpd.log`) and wait until the API answers. Panics with the log if it
    /// exits or does not answer in 10 s.
    ///
    /// GoBGP as the active side waits 5-9 s before its first connect: make it passive
    /// (`[neighbors.transport.config] passive-mode = true`) and the other side active.
    pub fn start(ns: &Netns, toml: &str) -> Gobgp {
        crate::require_root();
        let dir = TempDir::new("gobgp");
        dir.write("gobgpd.toml", toml);
        let mut g = Gobgp {
            proc: None,
            ns: ns.name.clone(),
            dir,
        };
        g.spawn();
        g
    }

    fn target(&self) -> String {
        format!("unix://{}", self.dir.join("api.sock").display())
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("gobgpd.toml");
        let log = self.dir.join("gobgpd.log");
        let api = format!("--api-hosts={}", self.target());
        let (out, err) = log_file(&log);
        let args = [
            "gobgpd",
            "-f",
            conf.to_str().unwrap(),
            "-p",
            "--pprof-disable",
            &api,
        ];
        let child = netns_command(&self.ns, &args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn gobgpd");
        let mut proc = Proc::new("gobgpd", child);
        let ready = wait_for(Duration::from_secs(10), || {
            if let Some(st) = proc.exited() {
                panic!(
                    "gobgpd exited ({st}) in netns {}:\n{}",
                    self.ns,
                    tail(&log, 4000)
                );
            }
            self.cli_output(&["global"]).status.success().then_some(())
        });
        if ready.is_none() {
            panic!(
                "gobgpd in netns {} did not answer in 10 s:\n{}",
                self.ns,
                tail(&log, 4000)
            );
        }
        self.proc = Some(proc);
    }

    fn cli_output(&self, args: &[&str]) -> std::process::Output {
        output_of(
            Command::new("gobgp")
                .arg("--target")
                .arg(self.target())
                .args(args),
        )
    }

    /// `gobgp --target unix://DIR/api.sock args...`, e.g.
    /// `cli(&["global", "rib", "add", "198.51.100.7/32", "community", "65002:7"])`.
    /// Returns stdout; panics with stderr if it exits non-zero.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        if !out.status.success() {
            panic!(
                "gobgp {args:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Gobgp::cli`] with `-j` appended, parsed as JSON. `global rib -j` gives
    /// `{"PREFIX": [{"nlri": {"prefix": ..}, "best": bool, "attrs": [{"type": N, ..}]}]}`;
    /// `neighbor ADDR -j` gives an object with `state.session_state` as a number.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("-j");
        let text = self.cli(&a);
        if text.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("gobgp {a:?} is not JSON ({e}):\n{text}"))
    }

    /// The session state of neighbor `peer`, lower case: `"idle"`, `"connect"`, `"active"`,
    /// `"opensent"`, `"openconfirm"`, `"established"` (`"unknown"` if GoBGP says so).
    pub fn neighbor_state(&self, peer: &str) -> String {
        let v = self.cli_json(&["neighbor", peer]);
        let st = &v["state"]["session_state"];
        if let Some(n) = st.as_u64() {
            const NAMES: [&str; 7] = [
                "unknown",
                "idle",
                "connect",
                "active",
                "opensent",
                "openconfirm",
                "established",
            ];
            return NAMES
                .get(n as usize)
                .copied()
                .unwrap_or("unknown")
                .to_string();
        }
        // A string form (SESSION_STATE_ESTABLISHED / ESTABLISHED), should a version use it.
        st.as_str()
            .map(|s| s.trim_start_matches("SESSION_STATE_").to_ascii_lowercase())
            .unwrap_or_else(|| "unknown".to_string())
    }

    /// Kill gobgpd (SIGTERM, SIGKILL after 5 s) and start it again with the same config.
    /// Paths added through the CLI are lost.
    pub fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(5));
        }
        self.spawn();
    }

    /// The `gobgpd` process, e.g. to `signal(libc::SIGSTOP)` it.
    pub fn process(&mut self) -> Option<&mut Proc> {
        self.proc.as_mut()
    }

    /// The private directory (config, sockets, pid files, logs); removed on `Drop`.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir.path
    }

    /// gobgpd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gobgpd.log")).unwrap_or_default()
    }
}

impl Drop for Gobgp {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }
}
