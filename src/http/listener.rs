//! The HTTP listener's shell: accepts every connection, admits at most [`MAX_CONNECTIONS`]
//! in all and [`PER_CLIENT`] per client (an IPv4 address, an IPv6 /64) and closes the rest
//! at once, so that a flood neither holds memory nor fills the accept queue in front of a
//! scrape or a probe from elsewhere. Each admitted connection is served as HTTP/1.1 with
//! deadlines: the request head must be complete within [`HEADER_TIMEOUT`] of the
//! connection going idle (also the keep-alive idle timeout), its buffer is capped at
//! [`MAX_BUF`], and a connection lives at most [`LIFETIME`].
//!
//! ```text
//!  accept loop (owns Admission) ──spawn──> connection task (hyper http1) ─┐
//!        ^                                                                │
//!        └──────────── mpsc<IpAddr>: the connection ended ────────────────┘
//! ```
//!
//! [`Admission`] is the pure count; no lock is shared with the connection tasks.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Connections served at once. A scrape, a probe and `vipr status` need one each.
pub const MAX_CONNECTIONS: usize = 128;
/// Connections served at once to one client: an IPv4 address, or an IPv6 /64 (one host
/// owns a whole /64).
pub const PER_CLIENT: usize = 16;
/// The request head must be complete within this, counted from the connection's start or
/// the end of its previous response (so it is the keep-alive idle timeout too).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a connection may buffer (request head, response queue).
pub const MAX_BUF: usize = 16 * 1024;
/// The longest a connection lives; then it finishes its response and closes (Prometheus
/// opens a new one).
pub const LIFETIME: Duration = Duration::from_secs(120);
/// How long a connection asked to close may take to finish its response.
const GRACE: Duration = Duration::from_secs(5);
/// Refusals are logged at most this often (a flood must not flood the log).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// Where a request came from and where it arrived, in each request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr {
    /// The client.
    pub peer: SocketAddr,
    /// Our address it connected to.
    pub local: SocketAddr,
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// [`MAX_CONNECTIONS`] are open.
    Full,
    /// This client has [`PER_CLIENT`] open.
    ClientFull,
}

/// The connections open, in all and per client.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_client: usize,
    total: usize,
    clients: HashMap<IpAddr, usize>,
}

/// The client a connection counts against: the IPv4 address, or the IPv6 /64.
fn client(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

impl Admission {
    /// No connection open yet.
    pub fn new(max_total: usize, max_per_client: usize) -> Admission {
        Admission {
            max_total,
            max_per_client,
            total: 0,
            clients: HashMap::new(),
        }
    }

    /// Counts a new connection from `ip`, unless a cap is reached.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Refused> {
        if self.total >= self.max_total {
            return Err(Refused::Full);
        }
        let n = self.clients.entry(client(ip)).or_insert(0);
        if *n >= self.max_per_client {
            return Err(Refused::ClientFull);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection from `ip` ended.
    pub fn release(&mut self, ip: IpAddr) {
        let key = client(ip);
        if let Some(n) = self.clients.get_mut(&key) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.clients.remove(&key);
            }
        }
    }

    /// Connections open.
    pub fn open(&self) -> usize {
        self.total
    }
}

/// Sends the client's address back to the accept loop when the connection task ends,
/// however it ends.
struct Release {
    tx: mpsc::Sender<IpAddr>,
    ip: IpAddr,
}

impl Drop for Release {
    fn drop(&mut self) {
        // Never full: one message per admitted connection, at most MAX_CONNECTIONS of them.
        let _ = self.tx.try_send(self.ip);
    }
}

/// Counts refusals and logs them at most every [`REFUSAL_LOG_EVERY`].
#[derive(Default)]
struct RefusalLog {
    since_last: u64,
    last: Option<Instant>,
}

impl RefusalLog {
    fn note(&mut self, why: Refused, peer: SocketAddr) {
        self.since_last += 1;
        if self.last.is_some_and(|t| t.elapsed() < REFUSAL_LOG_EVERY) {
            return;
        }
        warn!(
            refused = self.since_last,
            last_client = %peer.ip(),
            reason = ?why,
            max_connections = MAX_CONNECTIONS,
            per_client = PER_CLIENT,
            "HTTP connections over the cap closed at once (logged at most once a minute)"
        );
        self.since_last = 0;
        self.last = Some(Instant::now());
    }
}

/// Accepts on `listener` and serves `app` until cancelled; connections still open are then
/// asked to finish their response and close.
pub async fn run(listener: TcpListener, app: Router, cancel: CancellationToken) {
    let (tx, mut ended) = mpsc::channel(MAX_CONNECTIONS);
    let mut admission = Admission::new(MAX_CONNECTIONS, PER_CLIENT);
    let mut refusals = RefusalLog::default();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            Some(ip) = ended.recv() => admission.release(ip),
            r = listener.accept() => match r {
                Ok((stream, peer)) => match admission.admit(peer.ip()) {
                    Ok(()) => {
                        let release = Release { tx: tx.clone(), ip: peer.ip() };
                        tokio::spawn(connection(stream, peer, app.clone(), release, cancel.clone()));
                    }
                    Err(why) => refusals.note(why, peer),
                },
                Err(e) => {
                    // Out of descriptors or memory: wait rather than spin.
                    warn!(error = %e, open = admission.open(), "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Serves one admitted connection.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    _release: Release,
    cancel: CancellationToken,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let client = ClientAddr { peer, local };
    let app = TowerToHyperService::new(app);
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(client);
        app.call(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BUF)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(%peer, error = %e, "HTTP connection ended");
            }
            return;
        }
        _ = tokio::time::sleep(LIFETIME) => {}
        _ = cancel.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(GRACE, conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_per_client_and_in_all_and_frees_on_release() {
        let mut a = Admission::new(4, 2);
        assert_eq!(a.admit(ip("198.51.100.1")), Ok(()));
        assert_eq!(a.admit(ip("198.51.100.1")), Ok(()));
        assert_eq!(a.admit(ip("198.51.100.1")), Err(Refused::ClientFull));
        // The same host written as an IPv4-mapped IPv6 address is the same client.
        assert_eq!(a.admit(ip("::ffff:198.51.100.1")), Err(Refused::ClientFull));
        assert_eq!(a.admit(ip("203.0.113.5")), Ok(()));
        assert_eq!(a.admit(ip("203.0.113.6")), Ok(()));
        assert_eq!(a.admit(ip("203.0.113.7")), Err(Refused::Full));
        a.release(ip("198.51.100.1"));
        assert_eq!(a.open(), 3);
        assert_eq!(a.admit(ip("203.0.113.7")), Ok(()));
        assert_eq!(a.admit(ip("198.51.100.1")), Err(Refused::Full));
    }

    #[test]
    fn an_ipv6_64_is_one_client() {
        let mut a = Admission::new(100, 2);
        assert_eq!(a.admit(ip("2001:db8:1:2::1")), Ok(()));
        assert_eq!(a.admit(ip("2001:db8:1:2:ffff::9")), Ok(()));
        assert_eq!(a.admit(ip("2001:db8:1:2::77")), Err(Refused::ClientFull));
        assert_eq!(a.admit(ip("2001:db8:1:3::1")), Ok(()));
        for s in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:3::1"] {
            a.release(ip(s));
        }
        assert_eq!(a.open(), 0);
        // A release of a client never admitted changes nothing.
        a.release(ip("192.0.2.1"));
        assert_eq!(a.open(), 0);
    }
}
