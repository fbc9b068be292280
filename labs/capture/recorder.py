#!/usr/bin/env python3
"""Minimal passive BGP peer that records what a real BGP speaker sends.

Python 3 standard library only. Two sub-commands:

  recorder.py listen --addr 10.77.0.2 --asn 65020 --router-id 10.77.0.2 --out DIR
      Accept ONE BGP connection on ADDR:179, read the peer's OPEN, answer with our
      OPEN + KEEPALIVE, record every message the peer sends until it has sent a
      KEEPALIVE and an End-of-RIB for every negotiated family (then linger a
      little), send NOTIFICATION Cease/Administrative Shutdown (6/2) with an
      RFC 9003 shutdown communication, close. Each received message is written
      verbatim (19-byte header included) as one line of lowercase hex to
      DIR/NN-<type>.hex, NN being the arrival order (01, 02, ...).

  recorder.py describe DIR --router-as ... [expectations]
      Decode every DIR/*.hex, check the UPDATEs against the expectations given on
      the command line (derived by capture.sh from the router configuration it
      wrote), and write DIR/expected.txt. Exits 1 if anything does not match.
"""

import argparse
import ipaddress
import os
import select
import socket
import struct
import sys
import time

MARKER = b"\xff" * 16
HDR = 19
OPEN, UPDATE, NOTIFICATION, KEEPALIVE, ROUTE_REFRESH = 1, 2, 3, 4, 5
TYPE_NAMES = {
    OPEN: "open",
    UPDATE: "update",
    NOTIFICATION: "notification",
    KEEPALIVE: "keepalive",
    ROUTE_REFRESH: "route-refresh",
}
AS_TRANS = 23456
FAMILY_NAMES = {(1, 1): "ipv4/unicast", (2, 1): "ipv6/unicast"}

# ---------------------------------------------------------------------------
# Encoding (what the recorder sends)
# ---------------------------------------------------------------------------


def message(mtype, body=b""):
    return MARKER + struct.pack("!HB", HDR + len(body), mtype) + body


def cap(code, value=b""):
    return struct.pack("!BB", code, len(value)) + value


def build_open(asn, hold, router_id):
    caps = b"".join(
        [
            cap(1, struct.pack("!HBB", 1, 0, 1)),  # multiprotocol IPv4 unicast
            cap(1, struct.pack("!HBB", 2, 0, 1)),  # multiprotocol IPv6 unicast
            cap(2),  # route refresh (RFC 2918)
            cap(65, struct.pack("!I", asn)),  # 4-octet AS (RFC 6793)
            # graceful restart (RFC 4724): flags 0, restart time 120, no families
            cap(64, struct.pack("!H", 120)),
            cap(6),  # extended message (RFC 8654)
        ]
    )
    # all capabilities in one Capabilities optional parameter (type 2)
    params = struct.pack("!BB", 2, len(caps)) + caps
    my_as = asn if asn <= 0xFFFF else AS_TRANS
    body = struct.pack("!BHH", 4, my_as, hold) + socket.inet_aton(router_id)
    body += struct.pack("!B", len(params)) + params
    return message(OPEN, body)


def build_notification(code, subcode, data=b""):
    return message(NOTIFICATION, struct.pack("!BB", code, subcode) + data)


def shutdown_communication(text):
    raw = text.encode("utf-8")[:255]
    return struct.pack("!B", len(raw)) + raw


# ---------------------------------------------------------------------------
# Decoding (shared by listen, for the stop condition, and describe)
# ---------------------------------------------------------------------------


class DecodeError(Exception):
    pass


def parse_prefixes(data, afi):
    """RFC 4271 4.3 / RFC 4760 prefix list (no ADD-PATH)."""
    out = []
    i = 0
    width = 4 if afi == 1 else 16
    while i < len(data):
        plen = data[i]
        i += 1
        nbytes = (plen + 7) // 8
        if plen > width * 8 or i + nbytes > len(data):
            raise DecodeError("bad prefix length %d" % plen)
        raw = data[i : i + nbytes] + b"\x00" * (width - nbytes)
        i += nbytes
        addr = ipaddress.ip_address(raw)
        out.append("%s/%d" % (addr, plen))
    return out


def parse_capabilities(params):
    """Return list of (code, value bytes) from OPEN optional parameters."""
    caps = []
    i = 0
    while i < len(params):
        ptype, plen = params[i], params[i + 1]
        pval = params[i + 2 : i + 2 + plen]
        i += 2 + plen
        if ptype != 2:
            caps.append((-ptype, pval))
            continue
        j = 0
        while j < len(pval):
            code, clen = pval[j], pval[j + 1]
            caps.append((code, pval[j + 2 : j + 2 + clen]))
            j += 2 + clen
    return caps


def param_layout(body):
    """How the capabilities are packed into optional parameters (BIRD: one, FRR: one each)."""
    params = body[10 : 10 + body[9]]
    counts = []
    i = 0
    while i < len(params):
        ptype, plen = params[i], params[i + 1]
        n, j = 0, 0
        while ptype == 2 and j < plen:
            n += 1
            j += 2 + params[i + 2 + j + 1]
        counts.append(n if ptype == 2 else -ptype)
        i += 2 + plen
    if all(c == 1 for c in counts):
        return "%d Capabilities parameters (type 2), one capability each" % len(counts)
    return "%d parameter(s); capabilities per type-2 parameter: %s" % (len(counts), counts)


def decode_open(body):
    version, my_as, hold = struct.unpack("!BHH", body[:5])
    bgp_id = socket.inet_ntoa(body[5:9])
    optlen = body[9]
    caps = parse_capabilities(body[10 : 10 + optlen])
    return {"version": version, "my_as": my_as, "hold": hold, "bgp_id": bgp_id,
            "optlen": optlen, "caps": caps}


def open_families(caps):
    fams = [struct.unpack("!HBB", v)[0::2] for c, v in caps if c == 1 and len(v) == 4]
    return set(fams) if fams else {(1, 1)}


def open_asn(o):
    for c, v in o["caps"]:
        if c == 65 and len(v) == 4:
            return struct.unpack("!I", v)[0]
    return o["my_as"]


def open_as4(o):
    return any(c == 65 for c, _ in o["caps"])


CAP_NAMES = {
    1: "multiprotocol", 2: "route-refresh", 5: "extended-next-hop", 6: "extended-message",
    9: "bgp-role", 64: "graceful-restart", 65: "4-octet-as", 69: "add-path",
    70: "enhanced-route-refresh", 71: "long-lived-graceful-restart", 73: "fqdn (hostname)",
    75: "software-version", 128: "route-refresh (old Cisco code 128)",
}


def describe_cap(code, v):
    name = CAP_NAMES.get(code, "unknown")
    if code < 0:
        return "optional parameter type %d (not capabilities): %s" % (-code, v.hex())
    head = "capability %d %s len=%d" % (code, name, len(v))
    try:
        if code == 1:
            afi, _res, safi = struct.unpack("!HBB", v)
            return head + ": afi=%d safi=%d (%s)" % (afi, safi, FAMILY_NAMES.get((afi, safi), "?"))
        if code == 65:
            return head + ": as=%d" % struct.unpack("!I", v)[0]
        if code == 64:
            w = struct.unpack("!H", v[:2])[0]
            fams = []
            for k in range(2, len(v), 4):
                afi, safi, fl = struct.unpack("!HBB", v[k : k + 4])
                fams.append("%s flags=0x%02x" % (FAMILY_NAMES.get((afi, safi), "%d/%d" % (afi, safi)), fl))
            bits = [n for b, n in ((0x8, "R restart-state"), (0x4, "N notification (RFC 8538)")) if (w >> 12) & b]
            return head + ": flags=0x%x%s restart_time=%d families=[%s]" % (
                w >> 12, " (%s)" % ", ".join(bits) if bits else "", w & 0xFFF, ", ".join(fams))
        if code == 71:
            fams = []
            for k in range(0, len(v), 7):
                afi, safi, fl = struct.unpack("!HBB", v[k : k + 4])
                st = int.from_bytes(v[k + 4 : k + 7], "big")
                fams.append("%s flags=0x%02x stale_time=%d" % (FAMILY_NAMES.get((afi, safi), "%d/%d" % (afi, safi)), fl, st))
            return head + ": [%s]" % ", ".join(fams)
        if code == 69:
            fams = []
            for k in range(0, len(v), 4):
                afi, safi, sr = struct.unpack("!HBB", v[k : k + 4])
                fams.append("%s send/receive=%d" % (FAMILY_NAMES.get((afi, safi), "%d/%d" % (afi, safi)), sr))
            return head + ": [%s]" % ", ".join(fams)
        if code == 73:
            hl = v[0]
            host = v[1 : 1 + hl].decode("utf-8", "replace")
            dl = v[1 + hl]
            dom = v[2 + hl : 2 + hl + dl].decode("utf-8", "replace")
            return head + ": hostname=%r domain=%r" % (host, dom)
        if code == 5:
            ents = []
            for k in range(0, len(v), 6):
                afi, safi, nh = struct.unpack("!HHH", v[k : k + 6])
                ents.append("afi=%d safi=%d nexthop_afi=%d" % (afi, safi, nh))
            return head + ": [%s]" % ", ".join(ents)
        if code == 75:
            return head + ": %r" % v[1 : 1 + v[0]].decode("utf-8", "replace")
    except (struct.error, IndexError):
        pass
    return head + (": " + v.hex() if v else "")


ORIGINS = {0: "IGP", 1: "EGP", 2: "INCOMPLETE"}
SEG_TYPES = {1: "AS_SET", 2: "AS_SEQUENCE", 3: "AS_CONFED_SEQUENCE", 4: "AS_CONFED_SET"}
ATTR_NAMES = {
    1: "ORIGIN", 2: "AS_PATH", 3: "NEXT_HOP", 4: "MULTI_EXIT_DISC", 5: "LOCAL_PREF",
    6: "ATOMIC_AGGREGATE", 7: "AGGREGATOR", 8: "COMMUNITIES", 9: "ORIGINATOR_ID",
    10: "CLUSTER_LIST", 14: "MP_REACH_NLRI", 15: "MP_UNREACH_NLRI",
    16: "EXTENDED_COMMUNITIES", 17: "AS4_PATH", 18: "AS4_AGGREGATOR", 32: "LARGE_COMMUNITY",
}


def flags_str(f):
    names = []
    for bit, n in ((0x80, "optional"), (0x40, "transitive"), (0x20, "partial"), (0x10, "extended-length")):
        if f & bit:
            names.append(n)
    return "0x%02x %s" % (f, "|".join(names) or "-")


def decode_as_path(v, as4):
    width = 4 if as4 else 2
    segs = []
    i = 0
    while i < len(v):
        st, cnt = v[i], v[i + 1]
        i += 2
        asns = [int.from_bytes(v[i + k * width : i + (k + 1) * width], "big") for k in range(cnt)]
        i += cnt * width
        segs.append((SEG_TYPES.get(st, "type%d" % st), asns))
    if i != len(v):
        raise DecodeError("AS_PATH length mismatch")
    return segs


def fmt_as_path(segs):
    if not segs:
        return "(empty: no segments)"
    return " ".join("%s [%s]" % (t, " ".join(str(a) for a in asns)) for t, asns in segs)


def decode_update(body, as4):
    """Return dict: withdrawn, attrs (list of (code, flags, raw, value)), nlri, eor."""
    wlen = struct.unpack("!H", body[:2])[0]
    withdrawn = parse_prefixes(body[2 : 2 + wlen], 1)
    i = 2 + wlen
    alen = struct.unpack("!H", body[i : i + 2])[0]
    i += 2
    attrs_raw = body[i : i + alen]
    nlri = parse_prefixes(body[i + alen :], 1)
    attrs = []
    j = 0
    while j < len(attrs_raw):
        flags, code = attrs_raw[j], attrs_raw[j + 1]
        if flags & 0x10:
            length = struct.unpack("!H", attrs_raw[j + 2 : j + 4])[0]
            j += 4
        else:
            length = attrs_raw[j + 2]
            j += 3
        v = attrs_raw[j : j + length]
        j += length
        attrs.append((code, flags, v, decode_attr(code, v, as4)))
    eor = None
    if not withdrawn and not nlri and not attrs:
        eor = (1, 1)
    elif not withdrawn and not nlri and len(attrs) == 1 and attrs[0][0] == 15 and len(attrs[0][2]) == 3:
        afi, safi = struct.unpack("!HB", attrs[0][2])
        eor = (afi, safi)
    return {"withdrawn": withdrawn, "attrs": attrs, "nlri": nlri, "eor": eor}


def decode_attr(code, v, as4):
    if code == 1:
        return ORIGINS.get(v[0], "?%d" % v[0])
    if code in (2, 17):
        return decode_as_path(v, as4 or code == 17)
    if code == 3:
        return socket.inet_ntoa(v)
    if code in (4, 5):
        return struct.unpack("!I", v)[0]
    if code == 8:
        return ["%d:%d" % struct.unpack("!HH", v[k : k + 4]) for k in range(0, len(v), 4)]
    if code == 32:
        return ["%d:%d:%d" % struct.unpack("!III", v[k : k + 12]) for k in range(0, len(v), 12)]
    if code == 14:
        afi, safi, nhlen = struct.unpack("!HBB", v[:4])
        nh = v[4 : 4 + nhlen]
        if afi == 2 and nhlen in (16, 32):
            nhs = [str(ipaddress.IPv6Address(nh[k : k + 16])) for k in range(0, nhlen, 16)]
        elif nhlen == 4:
            nhs = [socket.inet_ntoa(nh)]
        else:
            nhs = [nh.hex()]
        reserved = v[4 + nhlen]
        return {"afi": afi, "safi": safi, "nh_len": nhlen, "next_hops": nhs,
                "reserved": reserved, "nlri": parse_prefixes(v[5 + nhlen :], afi)}
    if code == 15:
        afi, safi = struct.unpack("!HB", v[:3])
        return {"afi": afi, "safi": safi, "withdrawn": parse_prefixes(v[3:], afi)}
    return v.hex()


def fmt_attr(code, flags, raw, val):
    name = ATTR_NAMES.get(code, "attr%d" % code)
    head = "%s (type %d, flags %s, length %d)" % (name, code, flags_str(flags), len(raw))
    if code in (2, 17):
        body = fmt_as_path(val)
    elif code == 14:
        body = "afi=%d safi=%d (%s) next_hop_len=%d next_hop=%s reserved=%d nlri=%s" % (
            val["afi"], val["safi"], FAMILY_NAMES.get((val["afi"], val["safi"]), "?"),
            val["nh_len"], " + ".join(val["next_hops"]), val["reserved"], " ".join(val["nlri"]) or "(none)")
    elif code == 15:
        body = "afi=%d safi=%d (%s) withdrawn=%s" % (
            val["afi"], val["safi"], FAMILY_NAMES.get((val["afi"], val["safi"]), "?"),
            " ".join(val["withdrawn"]) or "(none)")
    elif isinstance(val, list):
        body = " ".join(val)
    else:
        body = str(val)
    return "%s: %s" % (head, body)


def split_message(raw):
    if len(raw) < HDR or raw[:16] != MARKER:
        raise DecodeError("bad header")
    length, mtype = struct.unpack("!HB", raw[16:19])
    if length != len(raw):
        raise DecodeError("length field %d != %d bytes" % (length, len(raw)))
    return mtype, raw[HDR:]


# ---------------------------------------------------------------------------
# listen
# ---------------------------------------------------------------------------


def log(*a):
    print("recorder:", *a, file=sys.stderr, flush=True)


def recv_exact(sock, n, deadline):
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out reading")
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf += chunk
    return buf


def read_message(sock, deadline):
    hdr = recv_exact(sock, HDR, deadline)
    if hdr[:16] != MARKER:
        raise DecodeError("bad marker: %s" % hdr.hex())
    length, _ = struct.unpack("!HB", hdr[16:19])
    if length < HDR:
        raise DecodeError("bad length %d" % length)
    return hdr + recv_exact(sock, length - HDR, deadline)


def cmd_listen(args):
    os.makedirs(args.out, exist_ok=True)
    for f in os.listdir(args.out):
        if f.endswith(".hex"):
            os.unlink(os.path.join(args.out, f))
    family = socket.AF_INET6 if ":" in args.addr else socket.AF_INET
    ls = socket.socket(family, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((args.addr, args.port))
    ls.listen(1)
    log("listening on %s port %d" % (args.addr, args.port))
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("ready\n")
    ls.settimeout(args.accept_timeout)
    try:
        conn, peer = ls.accept()
    except socket.timeout:
        log("no connection within %ss" % args.accept_timeout)
        return 2
    ls.close()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    log("connection from %s" % (peer,))

    count = 0

    def save(raw):
        nonlocal count
        count += 1
        mtype = raw[18]
        name = "%02d-%s.hex" % (count, TYPE_NAMES.get(mtype, "type%d" % mtype))
        with open(os.path.join(args.out, name), "w") as f:
            f.write(raw.hex() + "\n")
        log("received %s (%d bytes)" % (name, len(raw)))
        return mtype

    start = time.monotonic()
    hard_deadline = start + args.max_time
    first = read_message(conn, hard_deadline)
    if save(first) != OPEN:
        log("first message is not an OPEN")
        return 1
    peer_open = decode_open(first[HDR:])
    as4 = open_as4(peer_open)
    wanted = open_families(peer_open["caps"]) & {(1, 1), (2, 1)}
    log("peer AS %d, families %s" % (open_asn(peer_open), sorted(wanted)))
    conn.sendall(build_open(args.asn, args.hold, args.router_id))
    conn.sendall(message(KEEPALIVE))
    last_ka = time.monotonic()

    seen_keepalive = False
    eors = set()
    done_at = None
    ok = False
    while True:
        now = time.monotonic()
        if done_at is None and seen_keepalive and wanted <= eors:
            done_at = now + args.linger
            log("keepalive and End-of-RIB for all families seen; lingering %.1fs" % args.linger)
        deadline = min(hard_deadline, done_at if done_at is not None else hard_deadline)
        if now >= deadline:
            ok = done_at is not None
            if not ok:
                log("gave up after %ss: keepalive=%s eor=%s wanted=%s" % (args.max_time, seen_keepalive, sorted(eors), sorted(wanted)))
            break
        if now - last_ka > 20:
            conn.sendall(message(KEEPALIVE))
            last_ka = now
        r, _, _ = select.select([conn], [], [], min(1.0, deadline - now))
        if not r:
            continue
        try:
            raw = read_message(conn, hard_deadline)
        except (ConnectionError, TimeoutError) as e:
            log("read ended: %s" % e)
            break
        mtype = save(raw)
        if mtype == KEEPALIVE:
            seen_keepalive = True
        elif mtype == UPDATE:
            u = decode_update(raw[HDR:], as4)
            if u["eor"]:
                eors.add(u["eor"])
        elif mtype == NOTIFICATION:
            log("peer sent NOTIFICATION %d/%d" % (raw[19], raw[20]))
            conn.close()
            return 1

    data = shutdown_communication(args.shutdown_message)
    try:
        conn.sendall(build_notification(6, 2, data))
        conn.shutdown(socket.SHUT_WR)
        # drain until the peer closes (bounded)
        end = time.monotonic() + 2
        while time.monotonic() < end:
            r, _, _ = select.select([conn], [], [], 0.2)
            if r and not conn.recv(65536):
                break
    except OSError as e:
        log("while closing: %s" % e)
    conn.close()
    log("sent NOTIFICATION 6/2, recorded %d messages" % count)
    return 0 if ok else 1


# ---------------------------------------------------------------------------
# describe
# ---------------------------------------------------------------------------


def load_dir(d):
    files = sorted(f for f in os.listdir(d) if f.endswith(".hex"))
    out = []
    for f in files:
        with open(os.path.join(d, f)) as fh:
            txt = fh.read().strip()
        raw = bytes.fromhex(txt)
        out.append((f, raw))
    return out


def cmd_describe(args):
    msgs = load_dir(args.dir)
    errors = []
    lines = []
    ibgp = args.router_as == args.recorder_as
    as4 = True
    router_open = None

    # ---- expectations, derived from the configuration capture.sh generated ----
    exp_path = [] if ibgp else [("AS_SEQUENCE", [args.router_as])]
    nh6 = [a for a in args.nh6.split(",") if a] if args.nh6 else []
    common = {
        1: args.origin,
        2: exp_path,
        4: args.med,
        8: [args.community],
        32: [args.large_community],
    }
    if ibgp:
        common[5] = args.local_pref
    exp_v4 = set(args.v4.split(",")) if args.v4 else set()
    exp_v6 = set(args.v6.split(",")) if args.v6 else set()

    lines.append("# %s: BGP messages received from %s (AS %d, router id %s) by the recorder (AS %d)"
                 % (args.name or os.path.basename(os.path.abspath(args.dir)), args.router_name, args.router_as,
                    args.router_id, args.recorder_as))
    lines.append("# Generated by labs/capture/capture.sh; the UPDATE contents were checked against the")
    lines.append("# expectations below (derived from the router config) by decoding the bytes.")
    lines.append("# Each NN-<type>.hex holds one whole message (19-byte header included) as lowercase hex.")
    lines.append("")
    lines.append("session: %s, transport %s -> %s (router connects to the recorder on tcp/179)"
                 % ("iBGP" if ibgp else "eBGP", args.nh4, args.peer_addr))
    lines.append("expected routes (from the router configuration):")
    if exp_v4:
        lines.append("  ipv4/unicast: %s" % " ".join(sorted(exp_v4)))
        lines.append("    NEXT_HOP %s" % args.nh4)
    if exp_v6:
        lines.append("  ipv6/unicast: %s (in MP_REACH_NLRI)" % " ".join(sorted(exp_v6)))
        lines.append("    next hop %s" % " + ".join(nh6))
        if args.nh6_note:
            lines.append("    (%s)" % args.nh6_note)
    lines.append("  attributes on every route:")
    lines.append("    ORIGIN %s" % args.origin)
    lines.append("    AS_PATH %s" % fmt_as_path(exp_path))
    lines.append("    MULTI_EXIT_DISC %d" % args.med)
    if ibgp:
        lines.append("    LOCAL_PREF %d" % args.local_pref)
    else:
        lines.append("    LOCAL_PREF absent (eBGP)")
    lines.append("    COMMUNITIES %s" % args.community)
    lines.append("    LARGE_COMMUNITY %s" % args.large_community)
    lines.append("  End-of-RIB for every negotiated family: %s"
                 % ", ".join(FAMILY_NAMES[f] for f in sorted(
                     ({(1, 1)} if exp_v4 else set()) | ({(2, 1)} if exp_v6 else set()))))
    lines.append("")
    lines.append("messages in arrival order:")

    got_v4, got_v6, eors = set(), set(), []
    for fname, raw in msgs:
        try:
            mtype, body = split_message(raw)
        except DecodeError as e:
            errors.append("%s: %s" % (fname, e))
            continue
        lines.append("")
        tname = TYPE_NAMES.get(mtype, "type%d" % mtype)
        if not fname.endswith("-%s.hex" % tname):
            errors.append("%s: file name does not match type %s" % (fname, tname))
        if mtype == OPEN:
            o = decode_open(body)
            router_open = o
            as4 = open_as4(o)
            lines.append("%s: OPEN, %d bytes: version=%d my_as=%d hold_time=%d bgp_id=%s opt_params_len=%d"
                         % (fname, len(raw), o["version"], o["my_as"], o["hold"], o["bgp_id"], o["optlen"]))
            lines.append("  optional parameters: %s" % param_layout(body))
            for c, v in o["caps"]:
                lines.append("  " + describe_cap(c, v))
            if o["version"] != 4:
                errors.append("%s: version %d" % (fname, o["version"]))
            if open_asn(o) != args.router_as:
                errors.append("%s: AS %d != %d" % (fname, open_asn(o), args.router_as))
            if args.router_as > 0xFFFF and o["my_as"] != AS_TRANS:
                errors.append("%s: my_as %d, expected AS_TRANS" % (fname, o["my_as"]))
            if o["hold"] != args.hold:
                errors.append("%s: hold %d != %d" % (fname, o["hold"], args.hold))
            if o["bgp_id"] != args.router_id:
                errors.append("%s: bgp id %s != %s" % (fname, o["bgp_id"], args.router_id))
        elif mtype == KEEPALIVE:
            lines.append("%s: KEEPALIVE, %d bytes" % (fname, len(raw)))
        elif mtype == NOTIFICATION:
            lines.append("%s: NOTIFICATION, %d bytes: code=%d subcode=%d data=%s"
                         % (fname, len(raw), body[0], body[1], body[2:].hex() or "(none)"))
        elif mtype == ROUTE_REFRESH:
            afi, sub, safi = struct.unpack("!HBB", body[:4])
            lines.append("%s: ROUTE-REFRESH, %d bytes: afi=%d subtype=%d safi=%d" % (fname, len(raw), afi, sub, safi))
        elif mtype == UPDATE:
            u = decode_update(body, as4)
            if u["eor"]:
                eors.append(u["eor"])
                lines.append("%s: UPDATE, %d bytes: End-of-RIB %s%s" % (
                    fname, len(raw), FAMILY_NAMES.get(u["eor"], str(u["eor"])),
                    " (empty UPDATE: withdrawn_len=0, attrs_len=0, no NLRI)" if u["eor"] == (1, 1)
                    else " (only an MP_UNREACH_NLRI with afi/safi and no prefixes)"))
                for code, flags, v, val in u["attrs"]:
                    lines.append("  " + fmt_attr(code, flags, v, val))
                continue
            lines.append("%s: UPDATE, %d bytes" % (fname, len(raw)))
            lines.append("  withdrawn routes: %s" % (" ".join(u["withdrawn"]) or "(none)"))
            lines.append("  path attributes, in wire order:")
            seen = {}
            for code, flags, v, val in u["attrs"]:
                lines.append("    " + fmt_attr(code, flags, v, val))
                seen[code] = val
            lines.append("  nlri (ipv4): %s" % (" ".join(u["nlri"]) or "(none)"))
            if u["withdrawn"]:
                errors.append("%s: unexpected withdrawals" % fname)
            # check attributes against expectations
            want = dict(common)
            v4 = set(u["nlri"])
            v6 = set()
            if 14 in seen:
                mp = seen[14]
                if (mp["afi"], mp["safi"]) != (2, 1):
                    errors.append("%s: MP_REACH for unexpected family" % fname)
                v6 = set(mp["nlri"])
                if mp["next_hops"] != nh6:
                    errors.append("%s: IPv6 next hop %s != %s" % (fname, mp["next_hops"], nh6))
            if v4:
                want[3] = args.nh4
            if v4 and v6:
                errors.append("%s: IPv4 and IPv6 NLRI in one UPDATE" % fname)
            got_v4 |= v4
            got_v6 |= v6
            for code, val in want.items():
                if code not in seen:
                    errors.append("%s: missing %s" % (fname, ATTR_NAMES[code]))
                elif seen[code] != val:
                    errors.append("%s: %s is %r, expected %r" % (fname, ATTR_NAMES[code], seen[code], val))
            for code in seen:
                if code not in want and code != 14:
                    errors.append("%s: unexpected attribute %s" % (fname, ATTR_NAMES.get(code, code)))
        else:
            lines.append("%s: unknown type %d, %d bytes" % (fname, mtype, len(raw)))

    if got_v4 != exp_v4:
        errors.append("IPv4 prefixes %s != expected %s" % (sorted(got_v4), sorted(exp_v4)))
    if got_v6 != exp_v6:
        errors.append("IPv6 prefixes %s != expected %s" % (sorted(got_v6), sorted(exp_v6)))
    want_eor = ({(1, 1)} if exp_v4 else set()) | ({(2, 1)} if exp_v6 else set())
    if set(eors) != want_eor:
        errors.append("End-of-RIB seen for %s, expected %s" % (sorted(eors), sorted(want_eor)))
    if router_open is None or msgs[0][1][18] != OPEN:
        errors.append("first message is not an OPEN")
    if not any(r[18] == KEEPALIVE for _, r in msgs):
        errors.append("no KEEPALIVE")

    lines.append("")
    if errors:
        lines.append("CHECK FAILED:")
        lines.extend("  " + e for e in errors)
    else:
        lines.append("check: all UPDATEs match the expectations above.")
    with open(os.path.join(args.dir, "expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for e in errors:
        print("describe: %s: %s" % (args.dir, e), file=sys.stderr)
    return 1 if errors else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    lp = sub.add_parser("listen", help="record one BGP session")
    lp.add_argument("--addr", required=True)
    lp.add_argument("--port", type=int, default=179)
    lp.add_argument("--asn", type=int, required=True)
    lp.add_argument("--router-id", required=True)
    lp.add_argument("--hold", type=int, default=90)
    lp.add_argument("--out", required=True)
    lp.add_argument("--ready-file")
    lp.add_argument("--accept-timeout", type=float, default=60)
    lp.add_argument("--max-time", type=float, default=45, help="give up after this many seconds")
    lp.add_argument("--linger", type=float, default=2.0,
                    help="keep recording this long after KEEPALIVE and all End-of-RIBs")
    lp.add_argument("--shutdown-message", default="vipr capture done")

    dp = sub.add_parser("describe", help="decode, check and write expected.txt")
    dp.add_argument("dir")
    dp.add_argument("--name", default="", help="run name for the header (default: DIR's name)")
    dp.add_argument("--router-name", required=True)
    dp.add_argument("--router-as", type=int, required=True)
    dp.add_argument("--router-id", required=True)
    dp.add_argument("--recorder-as", type=int, required=True)
    dp.add_argument("--peer-addr", required=True)
    dp.add_argument("--hold", type=int, default=90)
    dp.add_argument("--v4", default="", help="comma-separated IPv4 prefixes")
    dp.add_argument("--v6", default="", help="comma-separated IPv6 prefixes")
    dp.add_argument("--nh4", required=True)
    dp.add_argument("--nh6", default="", help="comma-separated: global[,link-local]")
    dp.add_argument("--nh6-note", default="", help="free text explaining the IPv6 next hop")
    dp.add_argument("--origin", default="IGP")
    dp.add_argument("--med", type=int, required=True)
    dp.add_argument("--local-pref", type=int, default=100)
    dp.add_argument("--community", required=True)
    dp.add_argument("--large-community", required=True)

    args = p.parse_args()
    if args.cmd == "listen":
        return cmd_listen(args)
    return cmd_describe(args)


if __name__ == "__main__":
    sys.exit(main())
