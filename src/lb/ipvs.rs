//! The IPVS data plane: virtual services in the kernel's IPVS table, programmed over
//! generic netlink (family "IPVS"; messages in [`msg`]).
//!
//! IPVS has no owner field, so vipr records the services it creates in a state file
//! (`<vipr_state_dir>/ipvs-services`, one `VIP:port` a line), written *before* each
//! creation. Only recorded services are ever changed or deleted: a service someone else made
//! (kube-proxy in IPVS mode, an operator's `ipvsadm`) is reported as foreign and left alone,
//! even when it sits on vipr's VIP:port (kube-vip #745). vipr never sends `IPVS_CMD_FLUSH`.
//! After a crash, the next start finds its services through the file, adopts them and
//! corrects them as diffs; on exit it deletes exactly those.
//!
//! The socket is non-blocking: the kernel answers generic netlink requests while the request
//! is being sent (and builds each further dump part while the previous one is read), so
//! nothing here waits on the kernel.

pub mod msg;
pub mod reply;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use netlink_packet_core::{NetlinkMessage, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlMessage};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr as NlAddr};
use tracing::{debug, info};

use self::msg::IpvsMessage;
use super::{FwdMethod, Kind, LbBackend, Observed, Op, Scheduler, Service, Table};
use crate::error::LbError;

/// A generic netlink socket with the "IPVS" family resolved.
struct Genl {
    sock: Socket,
    family: u16,
    seq: u32,
    buf: Vec<u8>,
}

/// Why a request failed: the kernel's errno, or a transport problem.
#[derive(Debug)]
enum NlError {
    Errno(i32, String),
    Io(String),
}

impl NlError {
    fn into_lb(self, context: impl Into<String>) -> LbError {
        let (reason, errno) = match self {
            NlError::Errno(n, s) => (s, Some(n)),
            NlError::Io(s) => (s, None),
        };
        LbError::Ipvs {
            context: context.into(),
            reason,
            errno,
        }
    }
}

fn io_err(e: std::io::Error) -> NlError {
    NlError::Io(e.to_string())
}

impl Genl {
    /// Opens a socket in the caller's network namespace and resolves "IPVS" (the kernel
    /// loads `ip_vs` on this request where it can).
    fn open() -> Result<Genl, LbError> {
        let unavailable = |e: String| LbError::IpvsUnavailable(e);
        let mut sock = Socket::new(NETLINK_GENERIC).map_err(|e| unavailable(e.to_string()))?;
        sock.bind_auto().map_err(|e| unavailable(e.to_string()))?;
        sock.connect(&NlAddr::new(0, 0))
            .map_err(|e| unavailable(e.to_string()))?;
        sock.set_non_blocking(true)
            .map_err(|e| unavailable(e.to_string()))?;
        let mut g = Genl {
            sock,
            family: 0,
            seq: 0,
            buf: Vec::with_capacity(256 * 1024),
        };
        let mut req = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(msg::FAMILY.to_string())],
        });
        req.finalize();
        let replies = g
            .exchange(req, NLM_F_REQUEST | NLM_F_ACK)
            .map_err(|e| match e {
                NlError::Errno(n, _) if n == libc::ENOENT => {
                    unavailable("no generic netlink family \"IPVS\" (kernel without ip_vs)".into())
                }
                NlError::Errno(_, s) | NlError::Io(s) => unavailable(s),
            })?;
        g.family = replies
            .iter()
            .flat_map(|m: &GenlMessage<GenlCtrl>| m.payload.nlas.iter())
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| unavailable("the controller did not return a family id".into()))?;
        Ok(g)
    }

    /// Sends one request and collects the replies until the ACK (or DONE for a dump).
    fn exchange<F>(
        &mut self,
        payload: GenlMessage<F>,
        flags: u16,
    ) -> Result<Vec<GenlMessage<F>>, NlError>
    where
        F: GenlFamily
            + netlink_packet_core::Emitable
            + netlink_packet_core::ParseableParametrized<[u8], netlink_packet_generic::GenlHeader>
            + std::fmt::Debug,
    {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut nl = NetlinkMessage::from(payload);
        nl.header.flags = flags;
        nl.header.sequence_number = seq;
        nl.finalize();
        let mut tx = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut tx);
        self.sock.send(&tx, 0).map_err(io_err)?;
        let mut out = Vec::new();
        loop {
            self.buf.clear();
            let n = match self.sock.recv(&mut self.buf, 0) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(NlError::Io("no answer from the kernel".into()))
                }
                Err(e) => return Err(io_err(e)),
            };
            match reply::parse_replies(&self.buf[..n], seq, &mut out) {
                Ok(true) => return Ok(out),
                Ok(false) => {}
                Err(reply::ReplyError::Errno(n, s)) => return Err(NlError::Errno(n, s)),
                Err(reply::ReplyError::Parse(s)) => return Err(NlError::Io(s)),
            }
        }
    }

    fn request(&mut self, m: IpvsMessage, dump: bool) -> Result<Vec<IpvsMessage>, NlError> {
        let mut g = GenlMessage::from_payload(m);
        g.set_resolved_family_id(self.family);
        g.finalize();
        let flags = if dump {
            NLM_F_REQUEST | NLM_F_DUMP
        } else {
            NLM_F_REQUEST | NLM_F_ACK
        };
        Ok(self
            .exchange(g, flags)?
            .into_iter()
            .map(|g| g.payload)
            .collect())
    }
}

/// The IPVS data plane.
pub struct Ipvs {
    nl: Genl,
    /// The record of the services vipr created.
    state_file: PathBuf,
    /// Its contents.
    owned: BTreeSet<SocketAddr>,
}

fn state_err(path: &Path, e: impl std::fmt::Display) -> LbError {
    LbError::State {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Ipvs {
    /// Opens IPVS in the caller's network namespace; fails with
    /// [`LbError::IpvsUnavailable`] where the kernel has none.
    pub fn open(state_dir: &Path) -> Result<Ipvs, LbError> {
        let nl = Genl::open()?;
        let state_file = state_dir.join("ipvs-services");
        let owned = match crate::statedir::read(&state_file) {
            Ok(s) => s
                .lines()
                .filter_map(|l| l.trim().parse::<SocketAddr>().ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(state_err(&state_file, e)),
        };
        if !owned.is_empty() {
            info!(services = ?owned, "IPVS: services recorded by an earlier run");
        }
        Ok(Ipvs {
            nl,
            state_file,
            owned,
        })
    }

    fn save(&self) -> Result<(), LbError> {
        if self.owned.is_empty() {
            return match std::fs::remove_file(&self.state_file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(state_err(&self.state_file, e))
                }
                _ => Ok(()),
            };
        }
        if let Some(dir) = self.state_file.parent() {
            crate::statedir::prepare(dir).map_err(|e| state_err(dir, e))?;
        }
        let text: String = self.owned.iter().map(|k| format!("{k}\n")).collect();
        crate::statedir::replace(&self.state_file, &text)
            .map_err(|e| state_err(&self.state_file, e))
    }

    fn op(&mut self, op: &Op) -> Result<(), LbError> {
        let ctx = |what: &str| format!("{what} {op:?}");
        match op {
            Op::AddService { key, scheduler } => {
                // Recorded first: a crash between the two leaves a record of a service that
                // may not exist (harmless), never an unrecorded service of ours.
                self.owned.insert(*key);
                self.save()?;
                if let Err(e) = self.nl.request(msg::new_service(*key, *scheduler), false) {
                    if matches!(e, NlError::Errno(n, _) if n == libc::EEXIST) {
                        // Someone else created it meanwhile: theirs, not ours.
                        self.owned.remove(key);
                        self.save()?;
                    }
                    return Err(e.into_lb(ctx("create")));
                }
            }
            Op::SetService { key, scheduler } => {
                self.nl
                    .request(msg::set_service(*key, *scheduler), false)
                    .map_err(|e| e.into_lb(ctx("change")))?;
            }
            Op::DelService { key } => {
                match self.nl.request(msg::del_service(*key), false) {
                    Ok(_) => {}
                    Err(NlError::Errno(n, _)) if n == libc::ESRCH || n == libc::ENOENT => {}
                    Err(e) => return Err(e.into_lb(ctx("delete"))),
                }
                self.owned.remove(key);
                self.save()?;
            }
            Op::AddDest { key, dest, fwd } => {
                match self.nl.request(msg::new_dest(*key, *dest, *fwd), false) {
                    Ok(_) => {}
                    Err(NlError::Errno(n, _)) if n == libc::EEXIST => {
                        self.nl
                            .request(msg::set_dest(*key, *dest, *fwd), false)
                            .map_err(|e| e.into_lb(ctx("update")))?;
                    }
                    Err(e) => return Err(e.into_lb(ctx("add"))),
                }
            }
            Op::SetDest { key, dest, fwd } => {
                self.nl
                    .request(msg::set_dest(*key, *dest, *fwd), false)
                    .map_err(|e| e.into_lb(ctx("update")))?;
            }
            Op::DelDest { key, dest } => match self.nl.request(msg::del_dest(*key, *dest), false) {
                Ok(_) => {}
                Err(NlError::Errno(n, _)) if n == libc::ENOENT || n == libc::ESRCH => {}
                Err(e) => return Err(e.into_lb(ctx("remove"))),
            },
        }
        debug!(?op, "IPVS");
        Ok(())
    }

    fn observe_now(&mut self) -> Result<Observed, LbError> {
        let services = self
            .nl
            .request(msg::get_services(), true)
            .map_err(|e| e.into_lb("list services"))?;
        let mut obs = Observed::default();
        let mut present = BTreeSet::new();
        for s in services.iter().filter_map(msg::service_info) {
            let Some(key) = s.key.filter(|_| msg::is_tcp(&s)) else {
                continue;
            };
            present.insert(key);
            if !self.owned.contains(&key) {
                obs.foreign.insert(key);
                continue;
            }
            let dests = self
                .nl
                .request(msg::get_dests(key), true)
                .map_err(|e| e.into_lb(format!("list destinations of {key}")))?;
            let mut svc = Service {
                // vipr sets only the schedulers it knows; another one was set by hand.
                scheduler: Scheduler::parse(&s.scheduler).unwrap_or(Scheduler::Rr),
                fwd: FwdMethod::Masquerade,
                dests: BTreeSet::new(),
            };
            let mut fwds = BTreeSet::new();
            for (d, f) in dests
                .iter()
                .filter_map(|m| msg::dest_info(m, msg::family_of(&key)))
            {
                svc.dests.insert(d);
                fwds.insert(f);
            }
            // One method for all, as vipr programs them; a mix reads as "change them all".
            if let (1, Some(f)) = (
                fwds.len(),
                fwds.iter().next().and_then(|f| msg::fwd_method(*f)),
            ) {
                svc.fwd = f;
            }
            obs.ours.insert(key, svc);
        }
        // A recorded service that is gone was deleted by someone: forget it, so that one
        // created later at that address by someone else counts as theirs.
        let before = self.owned.len();
        self.owned.retain(|k| present.contains(k));
        if self.owned.len() != before {
            self.save()?;
        }
        Ok(obs)
    }
}

impl LbBackend for Ipvs {
    fn kind(&self) -> Kind {
        Kind::Ipvs
    }

    async fn observe(&mut self) -> Result<Observed, LbError> {
        self.observe_now()
    }

    async fn apply(&mut self, ops: &[Op], _target: &Table) -> Result<(), LbError> {
        for op in ops {
            self.op(op)?;
        }
        Ok(())
    }

    async fn remove_all(&mut self) -> Result<(), LbError> {
        let mut first = None;
        for key in self.owned.clone() {
            if let Err(e) = self.op(&Op::DelService { key }) {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
