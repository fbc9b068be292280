# Shared start of the benchmark scripts (sourced, from the repository root): root check,
# labs/out, a private temporary directory $D, the given namespaces and $D removed at exit
# (every process in them killed; KEEP=1 keeps $D), Debian packages, and vipr's release
# build in $VIPR (VIPR_PROFILE=profiling for one with symbols).
#   . labs/bench-lib.sh; bench_init TMP-PREFIX NAMESPACE...
bench_init() {
  [ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
  OUT=labs/out; mkdir -p "$OUT"
  D=$(mktemp -d "/tmp/$1.XXXX"); chmod 755 "$D"; shift
  BENCH_NS=("$@")
  trap bench_cleanup EXIT
  labs/install-deps.sh >/dev/null
  # VIPR_PROFILE=profiling: the release build with symbols, for perf and heaptrack.
  local prof=${VIPR_PROFILE:-release}
  cargo build --profile "$prof" --locked -q -p vipr
  VIPR=$PWD/target/$prof/vipr
}
bench_cleanup() {
  for ns in "${BENCH_NS[@]}"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  if [ -n "${KEEP:-}" ]; then echo "kept $D" >&2; else rm -rf "$D"; fi
}
# A router namespace PFX-r with bridge br0 at NET.1/24 and three nodes PFX-n1..3, each with
# eth0 at NET.1i on that bridge (NET is three octets, e.g. 10.59.0).
star_lab() { # pfx net
  local p=$1 net=$2 i
  ip netns add "$p-r"; ip -n "$p-r" link set lo up
  ip -n "$p-r" link add br0 type bridge; ip -n "$p-r" addr add "$net.1/24" dev br0
  ip -n "$p-r" link set br0 up
  for i in 1 2 3; do
    ip netns add "$p-n$i"; ip -n "$p-n$i" link set lo up
    ip link add "$p-n$i-t" type veth peer name "$p-n$i-n"
    ip link set "$p-n$i-t" netns "$p-r"; ip link set "$p-n$i-n" netns "$p-n$i"
    ip -n "$p-r" link set "$p-n$i-t" master br0 up
    ip -n "$p-n$i" link set "$p-n$i-n" name eth0
    ip -n "$p-n$i" addr add "$net.1$i/24" dev eth0; ip -n "$p-n$i" link set eth0 up
  done
}
# Starts FRR's zebra, bfdd and bgpd in namespace NS from DIR/{zebra,bfdd,bgpd}.conf.
frr_daemons() { # ns dir
  local d
  chown -R frr:frr "$2"
  for d in zebra bfdd bgpd; do
    ip netns exec "$1" /usr/lib/frr/$d -d -f "$2/$d.conf" -i "$2/$d.pid" -z "$2/zserv.api" \
      --vty_socket "$2" -P 0
    if [ $d = zebra ]; then sleep 0.3; fi
  done
}

# "address ns" for each /32 FRR had from three peers, ns the time of the third, read from
# FRR's bgpd log LOG (debug updates in).
third_paths() {
  python3 - "$1" <<'PY'
import re, sys, datetime
seen, done = {}, {}
pat = re.compile(r'^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) .*?(\d+\.\d+\.\d+\.\d+)(?:\(\S*\))? rcvd (\S+)/32')
for line in open(sys.argv[1], errors="replace"):
    m = pat.search(line)
    if not m:
        continue
    t, peer, prefix = m.groups()
    s = seen.setdefault(prefix, set())
    s.add(peer)
    if len(s) == 3 and prefix not in done:
        done[prefix] = int(datetime.datetime.strptime(t, "%Y/%m/%d %H:%M:%S.%f").timestamp() * 1e9)
for p, t in done.items():
    print(p, t)
PY
}
