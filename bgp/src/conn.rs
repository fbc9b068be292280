//! The I/O of one TCP connection of a session: a reader task that cuts the byte stream into
//! messages (checking each header before waiting for its body) and a writer task that
//! writes what the peer task hands it, with a deadline once the connection is closed. No
//! protocol logic: the peer task ([`crate::session`]) asks the core what a header may say.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::codec;
use crate::fsm::ConnId;
use crate::session::STOP_TIMEOUT;

/// Events from connection tasks to the peer task.
pub(crate) enum ConnEvent {
    Connected(ConnId, std::io::Result<TcpStream>),
    Frame(ConnId, Bytes),
    /// A header declaring more than 4,096 octets: may the reader wait for its body? Asked
    /// of the peer task because only it knows, once every earlier frame of the connection
    /// went through the core, whether extended messages were negotiated (RFC 8654 §4).
    LongHeader(ConnId, [u8; codec::HEADER_LEN], oneshot::Sender<bool>),
    Closed(ConnId, String),
}

/// I/O of one live connection.
pub(crate) struct ConnIo {
    pub(crate) writer: mpsc::Sender<Bytes>,
    /// Messages the core produced that the writer channel could not take yet.
    pub(crate) pending: VecDeque<Bytes>,
    pub(crate) reader: JoinHandle<()>,
    /// Ends once everything handed to `writer` is written and the socket shut down, or
    /// [`STOP_TIMEOUT`] after `closing` at the latest.
    pub(crate) write_task: JoinHandle<()>,
    /// Cancelled when the connection is closed: its writer's flush deadline starts.
    pub(crate) closing: CancellationToken,
    pub(crate) local: SocketAddr,
}

impl ConnIo {
    /// Splits a connected stream into its reader and writer tasks, which report to
    /// `events`. `None` if the socket has no local address. Our end's address has an
    /// IPv4-mapped address (IPv4 peer on a dual-stack listener) made plain IPv4: it becomes
    /// the default next hop of IPv4 routes.
    pub(crate) fn spawn(
        id: ConnId,
        stream: TcpStream,
        events: &mpsc::Sender<ConnEvent>,
    ) -> Option<ConnIo> {
        let local = stream.local_addr().ok()?;
        let local = SocketAddr::new(local.ip().to_canonical(), local.port());
        let (rd, wr) = stream.into_split();
        let (wtx, wrx) = mpsc::channel(32);
        let closing = CancellationToken::new();
        let reader = tokio::spawn(read_frames(id, rd, events.clone()));
        let write_task = tokio::spawn(write_frames(id, wr, wrx, events.clone(), closing.clone()));
        Some(ConnIo {
            writer: wtx,
            pending: VecDeque::new(),
            reader,
            write_task,
            closing,
            local,
        })
    }
}

/// Reads whole messages: the 19-octet header, then the rest of the declared length. A
/// header that fails the checks of RFC 4271 §6.1 (marker, type, a length under 19 or beyond
/// what the type allows) is passed on as the bare header at once, without waiting for a
/// body that may never come (the core answers with the NOTIFICATION), and reading stops.
/// A length beyond 4,096 is only allowed where extended messages were negotiated (RFC 8654
/// §4): the peer task says so ([`ConnEvent::LongHeader`]) before the body is awaited.
async fn read_frames(id: ConnId, rd: OwnedReadHalf, ev: mpsc::Sender<ConnEvent>) {
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let reason = loop {
        let mut hdr = [0u8; codec::HEADER_LEN];
        if let Err(e) = rd.read_exact(&mut hdr).await {
            break if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "peer closed the connection".to_string()
            } else {
                e.to_string()
            };
        }
        let len = match codec::check_header(&hdr, codec::MAX_EXTENDED_LEN) {
            Ok((_, len)) => len,
            Err(_) => {
                let _ = ev
                    .send(ConnEvent::Frame(id, Bytes::copy_from_slice(&hdr)))
                    .await;
                return;
            }
        };
        if len > codec::MAX_LEN {
            let (tx, rx) = oneshot::channel();
            if ev.send(ConnEvent::LongHeader(id, hdr, tx)).await.is_err() || rx.await != Ok(true) {
                return;
            }
        }
        let mut frame = BytesMut::with_capacity(len);
        frame.extend_from_slice(&hdr);
        frame.resize(len, 0);
        if let Err(e) = rd.read_exact(&mut frame[codec::HEADER_LEN..]).await {
            break e.to_string();
        }
        if ev.send(ConnEvent::Frame(id, frame.freeze())).await.is_err() {
            return;
        }
    };
    let _ = ev.send(ConnEvent::Closed(id, reason)).await;
}

/// Writes messages in order, batching whatever is queued into one write; shuts the socket
/// down when the channel closes. Once `closing` is cancelled (the connection was closed)
/// what is left has [`STOP_TIMEOUT`] to go out: a peer that stopped reading (zero window)
/// would otherwise keep this task and its socket forever. Then the connection is reset
/// (SO_LINGER 0), which frees the socket at once.
async fn write_frames(
    id: ConnId,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    ev: mpsc::Sender<ConnEvent>,
    closing: CancellationToken,
) {
    let give_up = async {
        closing.cancelled().await;
        tokio::time::sleep(STOP_TIMEOUT).await;
    };
    tokio::select! {
        () = pump(id, &mut wr, &mut rx, &ev) => {}
        () = give_up => {
            debug!(conn = id, "closed connection not flushed in time; resetting it");
            let _ = socket2::SockRef::from(wr.as_ref()).set_linger(Some(Duration::ZERO));
        }
    }
}

/// The body of [`write_frames`].
async fn pump(
    id: ConnId,
    wr: &mut OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Bytes>,
    ev: &mpsc::Sender<ConnEvent>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&first);
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(b) => buf.extend_from_slice(&b),
                Err(_) => break,
            }
        }
        if let Err(e) = wr.write_all(&buf).await {
            let _ = ev
                .send(ConnEvent::Closed(id, format!("write failed: {e}")))
                .await;
            return;
        }
    }
    let _ = wr.shutdown().await;
}
