//! Byte-level tests of the IPVS messages: vectors written out by hand from `linux/ip_vs.h`
//! and checked both ways, and every constant compared with the header itself.

use std::collections::BTreeMap;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_generic::GenlMessage;

use super::*;

/// Serialises `m` as vipr sends it: family id 0x24, sequence 1, port 0.
fn wire(m: IpvsMessage, flags: u16) -> Vec<u8> {
    let mut g = GenlMessage::from_payload(m);
    g.set_resolved_family_id(0x24);
    g.finalize();
    let mut nl = NetlinkMessage::from(g);
    nl.header.flags = flags;
    nl.header.sequence_number = 1;
    nl.finalize();
    let mut b = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut b);
    b
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn parse(b: &[u8]) -> IpvsMessage {
    match NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(b)
        .unwrap()
        .payload
    {
        NetlinkPayload::InnerMessage(g) => g.payload,
        other => panic!("{other:?}"),
    }
}

const REQ_ACK: u16 = NLM_F_REQUEST | NLM_F_ACK;

#[test]
fn new_service_tcp_ipv4_rr() {
    let m = new_service("192.0.2.10:6443".parse().unwrap(), Scheduler::Rr);
    let want = hex("68000000 2400 0500 01000000 00000000 \
         01 01 0000 \
         5400 0100 \
           0600 0100 0200 0000 \
           0600 0200 0600 0000 \
           1400 0300 c000020a 00000000 00000000 00000000 \
           0600 0400 192b 0000 \
           0700 0600 727200 00 \
           0c00 0700 00000000 ffffffff \
           0800 0800 00000000 \
           0800 0900 ffffffff");
    // nlmsghdr (len 104, type = family, REQUEST|ACK, seq 1, pid 0), genlmsghdr (cmd 1,
    // version 1), IPVS_CMD_ATTR_SERVICE { AF=AF_INET, PROTOCOL=IPPROTO_TCP, ADDR (16 bytes),
    // PORT=6443 big endian, SCHED_NAME "rr\0", FLAGS {0, ~0}, TIMEOUT 0, NETMASK ~0 }.
    let got = wire(m.clone(), REQ_ACK);
    assert_eq!(got, want);
    assert_eq!(parse(&got), m);
}

#[test]
fn new_service_tcp_ipv6_has_prefix_length_netmask() {
    let m = new_service("[2001:db8::10]:443".parse().unwrap(), Scheduler::Sh);
    let got = wire(m.clone(), REQ_ACK);
    let want = hex("68000000 2400 0500 01000000 00000000 01 01 0000 \
         5400 0100 \
           0600 0100 0a00 0000 \
           0600 0200 0600 0000 \
           1400 0300 20010db8 00000000 00000000 00000010 \
           0600 0400 01bb 0000 \
           0700 0600 736800 00 \
           0c00 0700 00000000 ffffffff \
           0800 0800 00000000 \
           0800 0900 80000000");
    assert_eq!(got, want);
    assert_eq!(parse(&got), m);
}

#[test]
fn new_dest_masquerade_weight_one() {
    let m = new_dest(
        "192.0.2.10:6443".parse().unwrap(),
        "10.0.0.1:8443".parse().unwrap(),
        FwdMethod::Masquerade,
    );
    let got = wire(m.clone(), REQ_ACK);
    let want = hex("8c000000 2400 0500 01000000 00000000 05 01 0000 \
         3000 0100 \
           0600 0100 0200 0000 \
           0600 0200 0600 0000 \
           1400 0300 c000020a 00000000 00000000 00000000 \
           0600 0400 192b 0000 \
         4800 0200 \
           1400 0100 0a000001 00000000 00000000 00000000 \
           0600 0200 20fb 0000 \
           0800 0300 00000000 \
           0800 0400 01000000 \
           0800 0500 00000000 \
           0800 0600 00000000 \
           0600 0b00 0200 0000");
    assert_eq!(got, want);
    assert_eq!(parse(&got), m);
}

#[test]
fn forwarding_methods_and_deletes() {
    let key: SocketAddr = "192.0.2.10:6443".parse().unwrap();
    let d: SocketAddr = "10.0.0.1:6443".parse().unwrap();
    for (f, v) in [
        (FwdMethod::Masquerade, 0u32),
        (FwdMethod::Local, 1),
        (FwdMethod::Tunnel, 2),
        (FwdMethod::DirectRoute, 3),
    ] {
        assert_eq!(fwd_value(f), v);
        assert_eq!(fwd_method(v), Some(f));
        let m = set_dest(key, d, f);
        assert_eq!(m.cmd, 6);
        let b = wire(m.clone(), REQ_ACK);
        assert_eq!(parse(&b), m);
    }
    let b = wire(del_dest(key, d), REQ_ACK);
    assert_eq!(b[16], cmd::DEL_DEST);
    // DEL_DEST names the service (4 attrs) and the destination by ADDR and PORT only.
    assert_eq!(b.len(), 16 + 4 + (4 + 44) + (4 + 20 + 8));
    let b = wire(del_service(key), REQ_ACK);
    assert_eq!(b[16], cmd::DEL_SERVICE);
    assert_eq!(b.len(), 16 + 4 + (4 + 44));
}

#[test]
fn service_and_dest_replies_are_read() {
    // A GET_SERVICE reply as the kernel sends it, with STATS we do not care about.
    let mut attrs = super::svc_full("192.0.2.10:6443".parse().unwrap(), Scheduler::Wlc);
    attrs.push(SvcAttr::Other(netlink_packet_core::DefaultNla::new(
        10,
        vec![0; 8],
    )));
    let m = IpvsMessage {
        cmd: cmd::NEW_SERVICE,
        attrs: vec![CmdAttr::Service(attrs)],
    };
    let parsed = parse(&wire(m, 0));
    let info = service_info(&parsed).unwrap();
    assert_eq!(info.key, Some("192.0.2.10:6443".parse().unwrap()));
    assert_eq!(info.scheduler, "wlc");
    assert!(is_tcp(&info));

    let d = new_dest(
        "[2001:db8::10]:6443".parse().unwrap(),
        "[2001:db8::1]:6443".parse().unwrap(),
        FwdMethod::DirectRoute,
    );
    let parsed = parse(&wire(d, 0));
    assert_eq!(
        dest_info(&parsed, 10),
        Some(("[2001:db8::1]:6443".parse().unwrap(), 3))
    );
}

/// The numbered names of `linux/ip_vs.h`: enum members (counting from 0 or an explicit
/// value) and `#define NAME number`.
fn header_constants() -> BTreeMap<String, i64> {
    let h = std::fs::read_to_string("/usr/include/linux/ip_vs.h")
        .expect("linux/ip_vs.h (Debian package linux-libc-dev, needed to build Rust anyway)");
    let mut out = BTreeMap::new();
    let num = |s: &str| {
        let s = s.trim().trim_start_matches('(').trim_end_matches(')');
        if let Some(x) = s.strip_prefix("0x") {
            i64::from_str_radix(x, 16).ok()
        } else {
            s.parse().ok()
        }
    };
    let mut in_enum = false;
    let mut next = 0i64;
    for line in h.lines() {
        let code = line.split("/*").next().unwrap_or("").trim();
        if code.starts_with("enum") && code.ends_with('{') {
            in_enum = true;
            next = 0;
            continue;
        }
        if in_enum {
            if code.starts_with('}') {
                in_enum = false;
                continue;
            }
            let item = code.trim_end_matches(',');
            if item.is_empty() || item.starts_with('#') {
                continue;
            }
            let (name, val) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), num(v).unwrap_or(next)),
                None => (item.trim(), next),
            };
            out.insert(name.to_string(), val);
            next = val + 1;
        } else if let Some(rest) = code.strip_prefix("#define") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some(v)) = (it.next(), it.next()) {
                if let Some(v) = num(v) {
                    out.insert(n.to_string(), v);
                }
            }
        }
    }
    out
}

#[test]
fn constants_match_linux_ip_vs_h() {
    let h = header_constants();
    let checks: &[(&str, i64)] = &[
        ("IPVS_GENL_VERSION", VERSION as i64),
        ("IPVS_CMD_NEW_SERVICE", cmd::NEW_SERVICE as i64),
        ("IPVS_CMD_SET_SERVICE", cmd::SET_SERVICE as i64),
        ("IPVS_CMD_DEL_SERVICE", cmd::DEL_SERVICE as i64),
        ("IPVS_CMD_GET_SERVICE", cmd::GET_SERVICE as i64),
        ("IPVS_CMD_NEW_DEST", cmd::NEW_DEST as i64),
        ("IPVS_CMD_SET_DEST", cmd::SET_DEST as i64),
        ("IPVS_CMD_DEL_DEST", cmd::DEL_DEST as i64),
        ("IPVS_CMD_GET_DEST", cmd::GET_DEST as i64),
        ("IPVS_CMD_GET_INFO", cmd::GET_INFO as i64),
        ("IPVS_CMD_FLUSH", cmd::FLUSH as i64),
        ("IPVS_CMD_ATTR_SERVICE", cmd_attr::SERVICE as i64),
        ("IPVS_CMD_ATTR_DEST", cmd_attr::DEST as i64),
        ("IPVS_SVC_ATTR_AF", svc_attr::AF as i64),
        ("IPVS_SVC_ATTR_PROTOCOL", svc_attr::PROTOCOL as i64),
        ("IPVS_SVC_ATTR_ADDR", svc_attr::ADDR as i64),
        ("IPVS_SVC_ATTR_PORT", svc_attr::PORT as i64),
        ("IPVS_SVC_ATTR_FWMARK", svc_attr::FWMARK as i64),
        ("IPVS_SVC_ATTR_SCHED_NAME", svc_attr::SCHED_NAME as i64),
        ("IPVS_SVC_ATTR_FLAGS", svc_attr::FLAGS as i64),
        ("IPVS_SVC_ATTR_TIMEOUT", svc_attr::TIMEOUT as i64),
        ("IPVS_SVC_ATTR_NETMASK", svc_attr::NETMASK as i64),
        ("IPVS_SVC_ATTR_STATS", svc_attr::STATS as i64),
        ("IPVS_DEST_ATTR_ADDR", dest_attr::ADDR as i64),
        ("IPVS_DEST_ATTR_PORT", dest_attr::PORT as i64),
        ("IPVS_DEST_ATTR_FWD_METHOD", dest_attr::FWD_METHOD as i64),
        ("IPVS_DEST_ATTR_WEIGHT", dest_attr::WEIGHT as i64),
        ("IPVS_DEST_ATTR_U_THRESH", dest_attr::U_THRESH as i64),
        ("IPVS_DEST_ATTR_L_THRESH", dest_attr::L_THRESH as i64),
        (
            "IPVS_DEST_ATTR_ACTIVE_CONNS",
            dest_attr::ACTIVE_CONNS as i64,
        ),
        ("IPVS_DEST_ATTR_INACT_CONNS", dest_attr::INACT_CONNS as i64),
        ("IPVS_DEST_ATTR_ADDR_FAMILY", dest_attr::ADDR_FAMILY as i64),
        ("IP_VS_CONN_F_MASQ", fwd::MASQ as i64),
        ("IP_VS_CONN_F_LOCALNODE", fwd::LOCALNODE as i64),
        ("IP_VS_CONN_F_TUNNEL", fwd::TUNNEL as i64),
        ("IP_VS_CONN_F_DROUTE", fwd::DROUTE as i64),
        ("IP_VS_CONN_F_FWD_MASK", fwd::MASK as i64),
    ];
    for (name, ours) in checks {
        assert_eq!(h.get(*name), Some(ours), "{name}");
    }
    let text = std::fs::read_to_string("/usr/include/linux/ip_vs.h").unwrap();
    assert!(
        text.contains(&format!("#define IPVS_GENL_NAME\t\t\"{FAMILY}\""))
            || text.contains(&format!("\"{FAMILY}\""))
    );
    // IP_VS_SCHEDNAME_MAXLEN: every scheduler name fits with its NUL.
    let max = h["IP_VS_SCHEDNAME_MAXLEN"];
    for s in ["rr", "wrr", "lc", "wlc", "sh", "mh"] {
        assert!((s.len() as i64) < max);
    }
}
