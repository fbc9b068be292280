//! Reading the kernel's answers: one received datagram of generic netlink messages (each
//! padded to 4 octets) into the payloads that answer one request, its end (DONE or ACK) or
//! its errno. Pure and self-contained (no `crate::` paths), so that the fuzz target in
//! `tests/fuzz` runs exactly this code on arbitrary datagrams. [`super`] owns the socket.

use netlink_packet_core::{Emitable, NetlinkMessage, NetlinkPayload, ParseableParametrized};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};

/// Why a received datagram ends a request with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The kernel answered with this errno (positive) and its text.
    Errno(i32, String),
    /// The datagram does not parse.
    Parse(String),
}

/// Parses one received datagram: netlink messages, each padded to 4 octets. The payloads
/// answering request `seq` are appended to `out`; messages of other requests are skipped.
/// `Ok(true)` once the answer is complete (DONE of a dump, or the ACK), `Ok(false)` when
/// more datagrams follow.
pub fn parse_replies<F>(
    buf: &[u8],
    seq: u32,
    out: &mut Vec<GenlMessage<F>>,
) -> Result<bool, ReplyError>
where
    F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
{
    let mut off = 0;
    while off < buf.len() {
        let m = NetlinkMessage::<GenlMessage<F>>::deserialize(&buf[off..])
            .map_err(|e| ReplyError::Parse(format!("cannot parse the answer: {e}")))?;
        let len = m.header.length as usize;
        if m.header.sequence_number == seq {
            match m.payload {
                NetlinkPayload::InnerMessage(g) => out.push(g),
                NetlinkPayload::Done(_) => return Ok(true),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(true),
                        // Not `to_io()`: it negates too, which overflows on i32::MIN.
                        Some(_) => {
                            let errno = e.raw_code().saturating_neg();
                            let text = std::io::Error::from_raw_os_error(errno).to_string();
                            Err(ReplyError::Errno(errno, text))
                        }
                    };
                }
                _ => {}
            }
        }
        if len == 0 {
            break;
        }
        off += (len + 3) & !3;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::ipvs::msg::{dest_info, service_info, IpvsMessage};

    /// The seeds of the fuzz target `ipvs_reply` (tests/fuzz/seeds/ipvs_reply/*.hex): four
    /// octets of sequence number, then one datagram as the kernel sends it.
    fn seed(name: &str) -> (u32, Vec<u8>) {
        let path = format!(
            "{}/tests/fuzz/seeds/ipvs_reply/{name}.hex",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let text = text.trim();
        let b: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        (
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            b[4..].to_vec(),
        )
    }

    #[test]
    fn a_dump_is_collected_until_done() {
        let (seq, b) = seed("services-dump");
        let mut out: Vec<GenlMessage<IpvsMessage>> = Vec::new();
        assert_eq!(parse_replies(&b, seq, &mut out), Ok(true));
        let keys: Vec<_> = out
            .iter()
            .filter_map(|g| service_info(&g.payload)?.key)
            .collect();
        assert_eq!(
            keys,
            vec![
                "192.0.2.10:6443".parse().unwrap(),
                "[2001:db8::10]:6443".parse().unwrap()
            ]
        );
        // Another request's answer is skipped, and without DONE more is expected.
        let mut other: Vec<GenlMessage<IpvsMessage>> = Vec::new();
        assert_eq!(parse_replies(&b, seq + 1, &mut other), Ok(false));
        assert!(other.is_empty());

        let (seq, b) = seed("dests-dump");
        let mut out: Vec<GenlMessage<IpvsMessage>> = Vec::new();
        assert_eq!(parse_replies(&b, seq, &mut out), Ok(true));
        assert_eq!(
            dest_info(&out[0].payload, 2),
            Some(("203.0.113.11:6443".parse().unwrap(), 1))
        );
    }

    #[test]
    fn an_ack_ends_and_an_errno_fails() {
        let (seq, b) = seed("ack");
        assert_eq!(
            parse_replies::<IpvsMessage>(&b, seq, &mut Vec::new()),
            Ok(true)
        );
        let (seq, b) = seed("eexist");
        let r = parse_replies::<IpvsMessage>(&b, seq, &mut Vec::new());
        assert!(matches!(r, Err(ReplyError::Errno(17, _))), "{r:?}");
        let r = parse_replies::<IpvsMessage>(&b[..10], seq, &mut Vec::new());
        assert!(matches!(r, Err(ReplyError::Parse(_))), "{r:?}");
    }

    /// Found by the fuzz target `ipvs_reply`: an error message with errno `i32::MIN`
    /// overflowed negating it (a panic with overflow checks on).
    #[test]
    fn an_errno_of_i32_min_does_not_overflow() {
        let (seq, b) = seed("crash-errno-i32-min");
        let r = parse_replies::<IpvsMessage>(&b, seq, &mut Vec::new());
        assert!(matches!(r, Err(ReplyError::Errno(i32::MAX, _))), "{r:?}");
    }
}
