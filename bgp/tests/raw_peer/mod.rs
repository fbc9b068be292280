//! A BGP peer written by hand for the paused-clock tests: reads and writes raw messages on
//! a TCP stream (shared by `loopback.rs` and `bfd_loopback.rs`).
#![allow(dead_code)] // each test binary uses a different subset

use std::net::Ipv4Addr;

use bgp::codec::open::{Capabilities, Open};
use bgp::codec::{self, decode, DecodeCtx, Message, Notification};
use bgp::Family;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A peer written by hand: reads and writes raw BGP messages.
pub struct RawPeer {
    pub s: TcpStream,
}

impl RawPeer {
    pub async fn read(&mut self) -> Option<Message> {
        let mut hdr = [0u8; 19];
        self.s.read_exact(&mut hdr).await.ok()?;
        let len = u16::from_be_bytes([hdr[16], hdr[17]]) as usize;
        let mut buf = hdr.to_vec();
        buf.resize(len, 0);
        self.s.read_exact(&mut buf[19..]).await.ok()?;
        let ctx = DecodeCtx {
            four_octet_as: true,
            ibgp: false,
        };
        Some(decode(&buf, 65535, &ctx).expect("speaker sent a valid message"))
    }

    pub async fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).await.unwrap();
    }

    /// Reads the speaker's OPEN, answers with ours and a KEEPALIVE.
    pub async fn handshake(&mut self, asn: u32, hold: u16, id: Ipv4Addr) -> Open {
        let Some(Message::Open(theirs)) = self.read().await else {
            panic!("expected OPEN")
        };
        self.send(&open(asn, hold, id)).await;
        self.send(&codec::encode_keepalive()).await;
        theirs
    }

    /// Reads until a NOTIFICATION or EOF.
    pub async fn until_notification(&mut self) -> Option<Notification> {
        loop {
            match self.read().await? {
                Message::Notification(n) => return Some(n),
                _ => continue,
            }
        }
    }
}

pub fn open(asn: u32, hold: u16, id: Ipv4Addr) -> Bytes {
    open_with(asn, hold, id, false)
}

/// [`open`], offering RFC 8654 extended messages when `extended_message`.
pub fn open_with(asn: u32, hold: u16, id: Ipv4Addr, extended_message: bool) -> Bytes {
    let caps = Capabilities {
        families: Family::ALL.to_vec(),
        multiprotocol: true,
        route_refresh: true,
        four_octet_as: Some(asn),
        extended_message,
        ..Default::default()
    };
    codec::encode_open(&Open::new(asn, hold, id, caps))
}
