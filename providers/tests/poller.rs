//! The Equinix Metal metadata poller against a real HTTP server on 127.0.0.1 (a tiny tokio
//! server written here): first good document published, failures of every kind leave the
//! channel alone and log one line each (URL and problem, never the password), a changed
//! document is published, cancellation ends the task. Backoff timing with a paused clock is
//! tested next to the loop (src/equinix_metal/poller.rs).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use providers::equinix_metal::{parse, poll, poll_with, PollOptions};
use providers::Discovery;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

const PW: &str = "Zq8-md5-not-in-logs";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What the server answers.
#[derive(Clone)]
enum Reply {
    /// 200 with this body and its length.
    Body(Vec<u8>),
    /// This status with a short text body.
    Status(u16, &'static str),
    /// 200 announcing the full length, then half the body, then close.
    CutShort(Vec<u8>),
    /// Waits this long, then answers 200 with the body.
    Slow(Duration, Vec<u8>),
    /// Closes the connection without answering.
    Close,
}

#[derive(Default)]
struct State {
    reply: Option<(&'static str, Reply)>,
    /// Label of the reply given to each request, in order.
    served: Vec<&'static str>,
}

#[derive(Clone)]
struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
        };
        let state = server.state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let reply = {
                        let mut s = state.lock().unwrap();
                        let (label, reply) = s.reply.clone().expect("a reply is set");
                        s.served.push(label);
                        reply
                    };
                    let head = |status: &str, len: usize| {
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                             Content-Length: {len}\r\nConnection: close\r\n\r\n"
                        )
                        .into_bytes()
                    };
                    let out = match reply {
                        Reply::Body(b) => [head("200 OK", b.len()), b].concat(),
                        Reply::Status(code, text) => {
                            [head(&format!("{code} {text}"), 5), b"oops\n".to_vec()].concat()
                        }
                        Reply::CutShort(b) => {
                            [head("200 OK", b.len()), b[..b.len() / 2].to_vec()].concat()
                        }
                        Reply::Slow(d, b) => {
                            sleep(d).await;
                            [head("200 OK", b.len()), b].concat()
                        }
                        Reply::Close => return,
                    };
                    let _ = conn.write_all(&out).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("http://{}/metadata", self.addr)
    }

    fn set(&self, label: &'static str, reply: Reply) {
        self.state.lock().unwrap().reply = Some((label, reply));
    }

    fn served(&self) -> Vec<&'static str> {
        self.state.lock().unwrap().served.clone()
    }

    /// Waits until `n` more requests than `from` were answered.
    async fn wait_requests(&self, from: usize, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.served().len() < from + n {
            assert!(Instant::now() < deadline, "the poller stopped asking");
            sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Log lines captured from the poller.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
    fn warnings(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains("WARN"))
            .collect()
    }
}

/// Captures this thread's logs (the tests run on a current-thread runtime, so the poller's
/// task logs here too).
fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let logs = Logs::default();
    let guard = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish()
        .set_default();
    (logs, guard)
}

async fn changed(rx: &mut watch::Receiver<Option<Discovery>>) -> Discovery {
    timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("a new discovery in time")
        .expect("the poller is alive");
    rx.borrow_and_update().clone().expect("Some after a change")
}

#[tokio::test]
async fn publishes_keeps_last_good_and_logs_each_failure() {
    let (logs, _guard) = capture();
    let server = Server::start().await;
    server.set("good", Reply::Body(fixture("md5_on.json")));
    let (tx, mut rx) = watch::channel(None);
    assert!(rx.borrow().is_none(), "not ready before the first document");
    let cancel = CancellationToken::new();
    let options = PollOptions {
        timeout: Duration::from_millis(300),
        first_retry: Duration::from_millis(20),
        ..PollOptions::default()
    };
    let task = tokio::spawn(poll_with(
        reqwest::Client::new(),
        server.url(),
        Duration::from_millis(150),
        options,
        tx,
        cancel.clone(),
    ));

    let first = changed(&mut rx).await;
    assert_eq!(first, parse(&fixture("md5_on.json")).unwrap());

    // The same document again: nothing published.
    server.wait_requests(server.served().len(), 2).await;
    assert!(!rx.has_changed().unwrap());

    let failures: Vec<(&'static str, Reply, &str)> = vec![
        (
            "500",
            Reply::Status(500, "Internal Server Error"),
            "HTTP 500 Internal Server Error",
        ),
        ("404", Reply::Status(404, "Not Found"), "HTTP 404 Not Found"),
        (
            "503",
            Reply::Status(503, "Service Unavailable"),
            "HTTP 503 Service Unavailable",
        ),
        (
            "cut short",
            Reply::CutShort(fixture("md5_on.json")),
            "the response body broke off: end of file before message length reached",
        ),
        (
            "truncated",
            Reply::Body(fixture("truncated.json")),
            "bad metadata: truncated JSON",
        ),
        (
            "html",
            Reply::Body(fixture("invalid.json")),
            "bad metadata: invalid JSON at line 1 column 1",
        ),
        (
            "wrong type",
            Reply::Body(fixture("bad_peer_as_type.json")),
            "bad metadata: bgp_neighbors[0].peer_as: expected a number",
        ),
        (
            "no neighbours",
            Reply::Body(fixture("missing_neighbors.json")),
            "bad metadata: no bgp_neighbors in the metadata",
        ),
        (
            "slow",
            Reply::Slow(Duration::from_secs(2), fixture("v4_only_changed.json")),
            "no complete answer within 300ms",
        ),
        (
            "close",
            Reply::Close,
            "request failed: connection closed before message completed",
        ),
    ];
    for (label, reply, needle) in failures {
        server.set(label, reply);
        server.wait_requests(server.served().len(), 3).await;
        assert!(!rx.has_changed().unwrap(), "{label}: published on failure");
        assert_eq!(
            rx.borrow().as_ref(),
            Some(&first),
            "{label}: last good replaced"
        );
        let lines: Vec<String> = logs
            .warnings()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect();
        assert!(
            !lines.is_empty(),
            "{label}: no warning containing {needle:?}: {:#?}",
            logs.lines()
        );
        for l in &lines {
            assert!(l.contains(&server.url()), "{label}: no URL in {l}");
            assert!(
                l.contains("keeping the last good peers, retrying in"),
                "{l}"
            );
        }
    }

    server.set("good", Reply::Body(fixture("v4_only_changed.json")));
    let second = changed(&mut rx).await;
    assert_eq!(second, parse(&fixture("v4_only_changed.json")).unwrap());
    assert_ne!(second, first);
    server.wait_requests(server.served().len(), 2).await;
    assert!(!rx.has_changed().unwrap());

    cancel.cancel();
    timeout(Duration::from_secs(2), task)
        .await
        .expect("the poller ends on cancel")
        .unwrap();

    // The first failures after a good poll back off from 20 ms, doubling up to the interval.
    let delays: Vec<String> = logs
        .warnings()
        .iter()
        .take(4)
        .map(|w| w.rsplit("retrying in ").next().unwrap().to_string())
        .collect();
    assert_eq!(delays, ["20ms", "40ms", "80ms", "150ms"]);

    // Exactly one warning per failed request, none per good one; never the password.
    let failed = server.served().iter().filter(|l| **l != "good").count();
    assert_eq!(logs.warnings().len(), failed, "{:#?}", logs.lines());
    let all = logs.lines().join("\n");
    assert!(!all.contains(PW), "password in the logs");
    assert!(all.contains("answering again after"), "{all}");
    assert!(
        all.contains("2 peers [169.254.255.1 AS65530 multihop md5"),
        "{all}"
    );
}

#[tokio::test]
async fn connection_refused_backs_off_and_stays_not_ready() {
    let (logs, _guard) = capture();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{addr}/metadata");
    let (tx, rx) = watch::channel(None);
    let cancel = CancellationToken::new();
    let options = PollOptions {
        timeout: Duration::from_secs(1),
        first_retry: Duration::from_millis(20),
        ..PollOptions::default()
    };
    let task = tokio::spawn(poll_with(
        reqwest::Client::new(),
        url.clone(),
        Duration::from_millis(200),
        options,
        tx,
        cancel.clone(),
    ));
    // Attempts at about 0, 20, 60, 140, 300, 500, 700, 900 ms (20 ms doubling, capped at 200).
    sleep(Duration::from_millis(1000)).await;
    cancel.cancel();
    timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
    assert!(rx.borrow().is_none(), "never published");
    let warnings = logs.warnings();
    assert!((5..=12).contains(&warnings.len()), "{warnings:#?}");
    for w in &warnings {
        assert!(w.contains(&url), "{w}");
        assert!(w.contains("cannot connect: Connection refused"), "{w}");
        assert!(w.contains("no peers yet, retrying in"), "{w}");
    }
    let delays: Vec<&str> = warnings
        .iter()
        .map(|w| w.rsplit("retrying in ").next().unwrap())
        .collect();
    assert_eq!(&delays[..5], ["20ms", "40ms", "80ms", "160ms", "200ms"]);
}

#[tokio::test]
async fn default_poll_publishes_right_away_and_ends_with_its_receivers() {
    let (_logs, _guard) = capture();
    let server = Server::start().await;
    server.set("good", Reply::Body(fixture("v4_v6.json")));
    let (tx, mut rx) = watch::channel(None);
    let task = tokio::spawn(poll(
        reqwest::Client::new(),
        server.url(),
        Duration::from_secs(60),
        tx,
        CancellationToken::new(),
    ));
    let d = changed(&mut rx).await;
    assert_eq!(d.peers.len(), 4);
    drop(rx);
    timeout(Duration::from_secs(2), task)
        .await
        .expect("the poller ends once nobody listens")
        .unwrap();
}
