//! The Equinix Metal metadata poller: owns the fetch loop (GET, time limit, body limit,
//! publish-on-change, exponential backoff, one log line per failure) and [`PollError`].
//!
//! Contract with the daemon: the `watch` channel holds `None` until the first good document
//! (report not ready); afterwards it holds the last good [`Discovery`] and is written only
//! when a new document differs. Failures never touch it.

use std::future::Future;
use std::time::Duration;

use reqwest::header::ACCEPT;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{parse, MetadataError};
use crate::Discovery;

/// Knobs of [`poll_with`]; [`poll`] uses the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOptions {
    /// Limit for one whole request (connect, headers and body). Default 10 s.
    pub timeout: Duration,
    /// First retry delay after a failure; doubles per consecutive failure up to the poll
    /// interval. Default 1 s.
    pub first_retry: Duration,
    /// Largest body accepted (the real document is a few KiB). Default 1 MiB.
    pub max_body: usize,
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(1),
            max_body: 1 << 20,
        }
    }
}

/// Why one poll failed. Never contains the password (bodies are not quoted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// No complete answer within [`PollOptions::timeout`].
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// The TCP/TLS connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The server answered with a non-2xx status.
    #[error("HTTP {code}{}{reason}", if reason.is_empty() { "" } else { " " })]
    Status {
        /// The status code.
        code: u16,
        /// Its canonical reason phrase, if any.
        reason: String,
    },
    /// The body broke off (connection closed before the announced length, bad chunking).
    #[error("the response body broke off: {0}")]
    Body(String),
    /// The body is larger than [`PollOptions::max_body`].
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
    /// Any other request failure.
    #[error("request failed: {0}")]
    Request(String),
    /// The body is not a usable metadata document.
    #[error("bad metadata: {0}")]
    Metadata(#[from] MetadataError),
}

impl PollError {
    fn from_reqwest(e: reqwest::Error) -> PollError {
        let e = e.without_url();
        let text = innermost_cause(&e);
        if e.is_connect() {
            PollError::Connect(text)
        } else if e.is_body() || e.is_decode() {
            PollError::Body(text)
        } else {
            PollError::Request(text)
        }
    }
}

/// The most specific cause (`Connection refused (os error 111)`, `end of file before message
/// length reached`) rather than reqwest's and hyper's generic wrappers.
fn innermost_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

/// The delay before the next attempt after `failures` consecutive failures (at least 1):
/// `first_retry` doubling per failure, never more than `interval`.
pub fn backoff_delay(first_retry: Duration, interval: Duration, failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    first_retry
        .checked_mul(factor)
        .unwrap_or(Duration::MAX)
        .min(interval)
}

/// Polls the metadata at `url` every `interval` with the default [`PollOptions`] (10 s
/// limit per request, retries from 1 s doubling up to `interval`). See [`poll_with`].
pub async fn poll(
    client: reqwest::Client,
    url: String,
    interval: Duration,
    tx: watch::Sender<Option<Discovery>>,
    cancel: CancellationToken,
) {
    poll_with(client, url, interval, PollOptions::default(), tx, cancel).await
}

/// Polls the metadata at `url`: one GET right away, then every `interval` while it works.
/// A good document is published into `tx` only when it differs from the current value. A
/// failure (time limit, connection, HTTP status, body, JSON, content) logs one warning line
/// naming the URL and the problem, leaves `tx` alone and retries after
/// [`backoff_delay`]. Returns when `cancel` fires or every receiver of `tx` is gone.
pub async fn poll_with(
    client: reqwest::Client,
    url: String,
    interval: Duration,
    options: PollOptions,
    tx: watch::Sender<Option<Discovery>>,
    cancel: CancellationToken,
) {
    let shown = redact(&url);
    let fetch = || fetch_once(&client, &url, options);
    run(&shown, interval, options.first_retry, fetch, &tx, &cancel).await
}

/// The loop, independent of HTTP so that its timing can be tested with a paused clock.
pub(crate) async fn run<F, Fut>(
    url: &str,
    interval: Duration,
    first_retry: Duration,
    mut fetch: F,
    tx: &watch::Sender<Option<Discovery>>,
    cancel: &CancellationToken,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Discovery, PollError>>,
{
    // A zero interval would spin.
    let interval = interval.max(Duration::from_millis(10));
    let first_retry = first_retry.max(Duration::from_millis(1));
    let mut failures: u32 = 0;
    loop {
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = fetch() => r,
        };
        let delay = match result {
            Ok(discovery) => {
                let summary = summary(&discovery);
                let changed = tx.send_if_modified(|cur| {
                    if cur.as_ref() == Some(&discovery) {
                        false
                    } else {
                        *cur = Some(discovery);
                        true
                    }
                });
                if changed && failures > 0 {
                    info!(
                        "Equinix Metal metadata {url}: answering again after {failures} failed \
                         attempts; {summary}"
                    );
                } else if changed {
                    info!("Equinix Metal metadata {url}: {summary}");
                } else if failures > 0 {
                    info!(
                        "Equinix Metal metadata {url}: answering again after {failures} failed \
                         attempts; peers unchanged"
                    );
                }
                failures = 0;
                interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = backoff_delay(first_retry, interval, failures);
                let keeping = if tx.borrow().is_some() {
                    "keeping the last good peers"
                } else {
                    "no peers yet"
                };
                warn!("Equinix Metal metadata {url}: {e}; {keeping}, retrying in {delay:?}");
                delay
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tx.closed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One GET with the time and size limits, then the parser.
async fn fetch_once(
    client: &reqwest::Client,
    url: &str,
    options: PollOptions,
) -> Result<Discovery, PollError> {
    let request = async {
        let mut resp = client
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(PollError::from_reqwest)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(PollError::Status {
                code: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("").to_string(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(PollError::from_reqwest)? {
            if body.len() + chunk.len() > options.max_body {
                return Err(PollError::TooLarge(options.max_body));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(options.timeout, request)
        .await
        .map_err(|_| PollError::Timeout(options.timeout))??;
    Ok(parse(&body)?)
}

/// A one-line description of a discovery for the log (no password).
fn summary(d: &Discovery) -> String {
    let peers: Vec<String> = d
        .peers
        .iter()
        .map(|p| {
            format!(
                "{} AS{}{}{}",
                p.address,
                p.remote_as,
                if p.is_multihop() { " multihop" } else { "" },
                if p.password.is_some() { " md5" } else { "" }
            )
        })
        .collect();
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let source = |v4: bool| {
        d.peers
            .iter()
            .find(|p| p.address.is_ipv4() == v4)
            .and_then(|p| p.source)
            .map(|a| a.to_string())
    };
    format!(
        "{} peers [{}], local AS {}, router id {}, source {} / {}",
        d.peers.len(),
        peers.join(", "),
        opt(d.peers.first().map(|p| p.local_as.to_string())),
        opt(d.router_id.map(|a| a.to_string())),
        opt(source(true)),
        opt(source(false)),
    )
}

/// The URL for logs, with any user:password replaced.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() || !u.username().is_empty() => {
            let _ = u.set_username("***");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;
    use crate::PeerConfig;

    fn discovery(peer_as: u32) -> Discovery {
        Discovery {
            peers: vec![PeerConfig {
                ttl: Some(255),
                ..PeerConfig::new("169.254.255.1".parse().unwrap(), peer_as, 65000)
            }],
            ..Discovery::default()
        }
    }

    type Script = Arc<Mutex<(VecDeque<Result<Discovery, PollError>>, Vec<Instant>)>>;

    /// Runs the loop over a scripted fetch until the script is used up; returns the times of
    /// the scripted calls relative to the start, in whole milliseconds.
    async fn run_script(
        interval: Duration,
        script: Vec<Result<Discovery, PollError>>,
        tx: &watch::Sender<Option<Discovery>>,
    ) -> Vec<u64> {
        let state: Script = Arc::new(Mutex::new((script.into(), Vec::new())));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let fetch = {
            let state = state.clone();
            let cancel = cancel.clone();
            move || {
                let mut s = state.lock().unwrap();
                let next = s.0.pop_front();
                match next {
                    Some(_) => s.1.push(Instant::now()),
                    // The call after the last scripted answer ends the loop.
                    None => cancel.cancel(),
                }
                async move { next.unwrap_or_else(|| Err(PollError::Request("script over".into()))) }
            }
        };
        run(
            "http://test",
            interval,
            Duration::from_secs(1),
            fetch,
            tx,
            &cancel,
        )
        .await;
        let s = state.lock().unwrap();
        s.1.iter()
            .map(|t| (*t - start).as_millis() as u64)
            .collect()
    }

    fn fail() -> Result<Discovery, PollError> {
        Err(PollError::Status {
            code: 500,
            reason: "Internal Server Error".into(),
        })
    }

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let s = Duration::from_secs;
        let d: Vec<u64> = (1..=8)
            .map(|n| backoff_delay(s(1), s(30), n).as_secs())
            .collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff_delay(s(1), s(30), 1000), s(30));
        assert_eq!(
            backoff_delay(s(1), Duration::from_millis(500), 1),
            Duration::from_millis(500)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_and_success_resets() {
        let (tx, rx) = watch::channel(None);
        let calls = run_script(
            Duration::from_secs(10),
            vec![
                Ok(discovery(65530)),
                fail(),
                fail(),
                fail(),
                fail(),
                fail(),
                Ok(discovery(65530)),
                fail(),
                Ok(discovery(65531)),
            ],
            &tx,
        )
        .await;
        // 0: ok → +10 s; failures wait 1, 2, 4, 8, then 10 (capped); ok → +10; fail → 1.
        assert_eq!(
            calls,
            [0, 10_000, 11_000, 13_000, 17_000, 25_000, 35_000, 45_000, 46_000]
        );
        assert_eq!(*rx.borrow(), Some(discovery(65531)));
    }

    #[tokio::test(start_paused = true)]
    async fn publishes_only_changes_and_never_on_failure() {
        let (tx, mut rx) = watch::channel(None);
        rx.mark_unchanged();
        let counter = Arc::new(Mutex::new(0));
        let mut watch_rx = rx.clone();
        let c = counter.clone();
        let seen = tokio::spawn(async move {
            while watch_rx.changed().await.is_ok() {
                *c.lock().unwrap() += 1;
            }
        });
        run_script(
            Duration::from_secs(5),
            vec![
                fail(),
                fail(),
                Ok(discovery(65530)),
                Ok(discovery(65530)),
                fail(),
                Ok(discovery(65530)),
                Ok(discovery(65531)),
                Ok(discovery(65531)),
            ],
            &tx,
        )
        .await;
        drop(tx);
        seen.await.unwrap();
        // Two distinct documents: two publications.
        assert_eq!(*counter.lock().unwrap(), 2);
        assert_eq!(*rx.borrow_and_update(), Some(discovery(65531)));
    }

    #[tokio::test(start_paused = true)]
    async fn none_until_the_first_success() {
        let (tx, rx) = watch::channel(None);
        run_script(Duration::from_secs(5), vec![fail(), fail(), fail()], &tx).await;
        assert!(rx.borrow().is_none());
        assert!(!rx.has_changed().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_receivers_are_gone() {
        let (tx, rx) = watch::channel(None);
        drop(rx);
        let cancel = CancellationToken::new();
        let fetch = || async { Ok(discovery(65530)) };
        tokio::time::timeout(
            Duration::from_secs(60),
            run(
                "http://test",
                Duration::from_secs(1),
                Duration::from_secs(1),
                fetch,
                &tx,
                &cancel,
            ),
        )
        .await
        .expect("the loop ends once nobody listens");
    }

    #[test]
    fn urls_are_redacted_and_causes_unwrapped() {
        assert_eq!(redact("http://u:p@192.0.2.1/m"), "http://***@192.0.2.1/m");
        assert_eq!(
            redact("https://metadata.example/metadata"),
            "https://metadata.example/metadata"
        );
        let e = PollError::Status {
            code: 500,
            reason: "Internal Server Error".into(),
        };
        assert_eq!(e.to_string(), "HTTP 500 Internal Server Error");
        let e = PollError::Status {
            code: 599,
            reason: String::new(),
        };
        assert_eq!(e.to_string(), "HTTP 599");
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(innermost_cause(&Outer(inner)), "refused");
    }
}
