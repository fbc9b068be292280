#!/usr/bin/env bash
# Cluster-scale benchmark (root): for each size in SIZES, a fresh kube-apiserver 1.20.2 holds
# SIZE LoadBalancer Services (addresses in kube-vip.io/loadbalancerIPs, every tenth with
# externalTrafficPolicy: Local) and SIZE core/v1 Endpoints of 10 addresses each (1.20 serves
# no discovery.k8s.io/v1, so this is what vipr reads there); then three vipr nodes (release
# build) start at once against FRR (BFD 50 ms x 3 with each). Measured per size:
#  - vipr start -> every node's routes at FRR (FRR's prefix count per neighbour);
#  - RSS (and peak) per node after sync, CPU per node over IDLE seconds afterwards;
#  - churn: RATE changes per second for CHURN seconds (half move a Service to a new address,
#    half move a Local Service's endpoints between nodes): Service PATCH returned -> FRR has
#    the new address from all three nodes (FRR's debug log time), p50/p99; CPU per node; API
#    writes per minute by the three nodes; BFD session downs at FRR (must be 0);
#  - the anchor: a plain kube-rs reflector (labs/k8s/reflector_baseline.rs, default settings)
#    over the same Services and Endpoints: time to sync, RSS, idle CPU.
# Writes labs/out/bench-scale-DATE.txt and an SVG of RSS and start time against size.
#
#   vbs-r: bridge br0 10.60.0.1, etcd + kube-apiserver, FRR (AS 65000, maximum-paths 8)
#   vbs-n1..3: eth0 10.60.0.11-13, vipr (AS 65001)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 10000"}
IDLE=${IDLE:-30}
RATE=${RATE:-100}
CHURN=${CHURN:-300}
MAX_WAIT=${MAX_WAIT:-900}
# The API server runs without its watch cache (each watch an etcd watch): with it, Debian's
# 1.20.2 often stopped delivering Service events to every watcher (a plain curl watch too)
# for 20-50 s under this churn, which would measure the API server, not vipr. Set
# VIPR_APISERVER_ARGS= (empty) to run with the cache. For SIZES=100000 widen the API server's
# ranges too (10 000 Local Services need more health-check node ports than the default range,
# and the default /12 makes each Service creation rewrite a 128 KiB bitmap in etcd, whose
# database was past 6 GB half-way): VIPR_APISERVER_ARGS="--watch-cache=false
# --service-cluster-ip-range=10.96.0.0/15,fd00:10:96::/112 --service-node-port-range=20000-40000"
export VIPR_APISERVER_ARGS=${VIPR_APISERVER_ARGS---watch-cache=false}
. labs/bench-lib.sh
bench_init vipr-benchs vbs-r vbs-n1 vbs-n2 vbs-n3
labs/k8s/apiserver.sh build >/dev/null
cargo build --release --locked -q --example reflector_baseline
BASELINE=$PWD/target/release/examples/reflector_baseline
trap 'labs/k8s/apiserver.sh stop "$D/k8s" >/dev/null 2>&1 || true; bench_cleanup' EXIT

star_lab vbs 10.60.0
API=https://10.60.0.1:16443
KC=$D/k8s/kubeconfig
curl_api() { ip netns exec vbs-r curl -sk -A vipr-bench -H "Authorization: Bearer testtoken" "$@"; }
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; print a[i]}'; }
vtysh_r() { ip netns exec vbs-r vtysh --vty_socket "$F" "$@"; }
proc_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; } # pid field -> kB
cpu_ms_of() { echo $(( $(awk '{print $14 + $15}' "/proc/$1/stat") * 1000 / $(getconf CLK_TCK) )); }

F=$D/frr; mkdir -p "$F"
echo "hostname router" > "$F/zebra.conf"
{
  echo "bfd"
  for i in 1 2 3; do
    echo " peer 10.60.0.1$i"
    echo "  receive-interval 50"
    echo "  transmit-interval 50"
    echo "  detect-multiplier 3"
  done
} > "$F/bfdd.conf"
{
  echo "hostname router"
  echo "log file $F/bgpd.log"
  echo "log timestamp precision 6"
  echo "router bgp 65000"
  echo " bgp router-id 10.60.0.1"
  echo " no bgp ebgp-requires-policy"
  echo " no bgp default ipv4-unicast"
  for i in 1 2 3; do
    echo " neighbor 10.60.0.1$i remote-as 65001"
    echo " neighbor 10.60.0.1$i timers 1 3"
    echo " neighbor 10.60.0.1$i passive"
    echo " neighbor 10.60.0.1$i bfd"
  done
  echo " address-family ipv4 unicast"
  echo "  maximum-paths 8"
  for i in 1 2 3; do echo "  neighbor 10.60.0.1$i activate"; done
  echo " exit-address-family"
} > "$F/bgpd.conf"
frr_daemons vbs-r "$F"

start_vipr() {
  local wrap
  for i in 1 2 3; do
    # WRAP1="heaptrack -o FILE" (or perf record ...): node1's vipr runs under it.
    wrap=""; if [ "$i" = 1 ]; then wrap=${WRAP1:-}; fi
    ip netns exec vbs-n$i env bgp_enable=true svc_enable=true bgp_as=65001 bgp_routerid=10.60.0.1$i \
      bgp_peers=10.60.0.1:65000::false bgp_hold_time=3 bgp_keepalive_interval=1 vip_nodename=node$i \
      vipr_bfd='true;50;50;3' k8s_config_file="$KC" vipr_state_dir="$D/s$i" \
      prometheus_server=127.0.0.1:2112 vip_loglevel=info \
      $wrap "$VIPR" manager >> "$D/vipr$i.log" 2>&1 &
    echo $! > "$D/vipr$i.pid"
  done
}
stop_vipr() {
  for i in 1 2 3; do kill -TERM "$(cat "$D/vipr$i.pid")" 2>/dev/null || true; done
  for i in 1 2 3; do while kill -0 "$(cat "$D/vipr$i.pid")" 2>/dev/null; do sleep 0.1; done; done
}
pfx() { # prefixes FRR has from node i
  vtysh_r -c 'show bgp ipv4 unicast summary json' | jq -r ".peers[\"10.60.0.1$1\"].pfxRcd // 0"
}
writes_total() {
  for i in 1 2 3; do ip netns exec vbs-n$i curl -s http://127.0.0.1:2112/metrics; done |
    awk '/^vipr_api_writes_total/ && !/result="dropped"/ {n += $NF} END {print n + 0}'
}
bfd_downs() {
  # FRR 8.4 names the counter "session-down" (a missing key must fail, not read as 0).
  vtysh_r -c 'show bfd peers counters json' | jq -e '[.[]."session-down"] | if length == 0 or any(. == null) then error("no session-down counters") else add end'
}

RESULTS=$D/results; : > "$RESULTS"
for SIZE in $SIZES; do
  echo "== $SIZE Services" >&2
  labs/k8s/apiserver.sh start "$D/k8s" 10.60.0.1 vbs-r >/dev/null
  for _ in $(seq 1 100); do
    [ "$(curl_api -o /dev/null -w '%{http_code}' "$API/api/v1/namespaces/default")" = 200 ] && break
    sleep 0.1
  done
  t0=$(date +%s%N)
  ip netns exec vbs-r python3 labs/k8s/scale.py create "$API" testtoken "$SIZE" 8
  CREATE_S=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.0f", (b - a) / 1e9}')
  echo "   created in $CREATE_S s" >&2
  E=(); for i in 1 2 3; do E[$i]=$(python3 labs/k8s/scale.py expect "$SIZE" node$i); done

  # The anchor first, alone on the machine.
  ip netns exec vbs-n1 "$BASELINE" "$KC" > "$D/baseline.out" 2>&1 &
  BPID=$!
  for _ in $(seq 1 $((MAX_WAIT * 10))); do grep -q synced "$D/baseline.out" && break; sleep 0.1; done
  B_SYNC=$(sed -n 's/.* in \([0-9.]*\) s.*/\1/p' "$D/baseline.out")
  B_RSS=$(( $(proc_field "$BPID" VmRSS) / 1024 ))
  c0=$(cpu_ms_of "$BPID"); sleep "$IDLE"; B_IDLE=$(( $(cpu_ms_of "$BPID") - c0 ))
  kill "$BPID"; wait "$BPID" 2>/dev/null || true

  t0=$(date +%s%N)
  start_vipr
  ALL=""
  for _ in $(seq 1 $((MAX_WAIT * 10))); do
    if [ "$(pfx 1)" = "${E[1]}" ] && [ "$(pfx 2)" = "${E[2]}" ] && [ "$(pfx 3)" = "${E[3]}" ]; then
      ALL=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
      break
    fi
    sleep 0.1
  done
  ALL=${ALL:-">$MAX_WAIT"}
  echo "   all routes at FRR after $ALL s" >&2
  sleep 2
  RSS=""; HWM=""; IDLE_CPU=""
  for i in 1 2 3; do
    p=$(cat "$D/vipr$i.pid")
    RSS="$RSS $(( $(proc_field "$p" VmRSS) / 1024 ))"; HWM="$HWM $(( $(proc_field "$p" VmHWM) / 1024 ))"
    eval "c$i=$(cpu_ms_of "$p")"
  done
  sleep "$IDLE"
  STEADY=""
  for i in 1 2 3; do
    eval "IDLE_CPU=\"\$IDLE_CPU \$(( \$(cpu_ms_of \$(cat $D/vipr$i.pid)) - c$i ))\""
    STEADY="$STEADY $(( $(proc_field "$(cat "$D/vipr$i.pid")" VmRSS) / 1024 ))"
    cp "/proc/$(cat "$D/vipr$i.pid")/smaps_rollup" "$D/smaps$i-$SIZE" 2>/dev/null || true
  done

  # Churn.
  : > "$F/bgpd.log"
  vtysh_r -c 'debug bgp updates in' >/dev/null
  w0=$(writes_total); b0=$(bfd_downs)
  for i in 1 2 3; do eval "c$i=$(cpu_ms_of "$(cat "$D/vipr$i.pid")")"; done
  ip netns exec vbs-r python3 labs/k8s/scale.py churn "$API" testtoken "$SIZE" "$RATE" "$CHURN" "$D/moves" 4
  sleep 3
  if [ -n "${PAUSE:-}" ]; then echo "paused after the churn: $D (touch $D/go to go on)" >&2; while [ ! -e "$D/go" ]; do sleep 1; done; fi
  CHURN_CPU=""
  for i in 1 2 3; do eval "CHURN_CPU=\"\$CHURN_CPU \$(( (\$(cpu_ms_of \$(cat $D/vipr$i.pid)) - c$i) * 100 / ($CHURN * 1000) ))\""; done
  WPM=$(( ($(writes_total) - w0) * 60 / CHURN )); BFD=$(( $(bfd_downs) - b0 ))
  vtysh_r -c 'no debug bgp updates in' >/dev/null
  third_paths "$F/bgpd.log" > "$D/frr.paths"
  python3 - "$D/moves" "$D/frr.paths" > "$D/churn.lat" <<'PY'
import sys
frr = dict(l.split() for l in open(sys.argv[2]))
for l in open(sys.argv[1]):
    a, t = l.split()
    if a in frr:
        print((int(frr[a]) - int(t)) // 1000)
PY
  MOVES=$(wc -l < "$D/moves"); SEEN=$(wc -l < "$D/churn.lat")
  P50=-; P99=-
  if [ -s "$D/churn.lat" ]; then
    P50=$(( $(pct 50 < "$D/churn.lat") / 1000 )); P99=$(( $(pct 99 < "$D/churn.lat") / 1000 ))
  fi
  stop_vipr
  labs/k8s/apiserver.sh stop "$D/k8s" >/dev/null
  echo "$SIZE|$CREATE_S|$ALL|${RSS# }|${HWM# }|${IDLE_CPU# }|$P50|$P99|$SEEN/$MOVES|${CHURN_CPU# }|$WPM|$BFD|$B_SYNC|$B_RSS|$B_IDLE|${STEADY# }" >> "$RESULTS"
done

STAMP=$(date +%F)
{
  echo "vipr cluster-scale benchmark, $(date -u +%FT%TZ), $(uname -r), $(nproc) cores, kube-apiserver 1.20.2 (${VIPR_APISERVER_ARGS:-watch cache on}), FRR 8.4.4, 3 vipr nodes"
  echo "Services with 10 endpoints each (core/v1 Endpoints), 10 % externalTrafficPolicy: Local; idle CPU over $IDLE s; churn $RATE changes/s for $CHURN s"
  echo
  echo "| Services | objects created in | vipr start -> all routes at FRR | RSS per node after sync (MiB) | peak RSS (MiB) | RSS after $IDLE s idle (MiB) | idle CPU per node (ms over $IDLE s) | churn: change -> route at FRR p50 / p99 (ms) | changes seen | CPU per node in churn (%) | API writes/min (3 nodes) | BFD downs | kube-rs reflector: sync (s) | reflector RSS (MiB) | reflector idle CPU (ms) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  while IFS='|' read -r size cr all rss hwm idle p50 p99 seen cpu wpm bfd bs br bi steady; do
    echo "| $size | $cr s | $all s | $rss | $hwm | $steady | $idle | $p50 / $p99 | $seen | $cpu | $wpm | $bfd | $bs | $br | $bi |"
  done < "$RESULTS"
} | tee "$OUT/bench-scale-$STAMP.txt"
python3 - "$RESULTS" "$OUT/bench-scale-$STAMP.svg" <<'PY'
import sys, math
rows = [l.strip().split("|") for l in open(sys.argv[1]) if l.strip()]
pts = []
for r in rows:
    size = int(r[0]); rss = max(int(x) for x in r[3].split()); brss = int(r[13] or 0)
    start = float(r[2].lstrip(">")) if r[2] else 0
    pts.append((size, rss, brss, start))
W, H, M = 640, 360, 60
xs = [math.log10(p[0]) for p in pts]
x0, x1 = min(xs) - 0.2, max(xs) + 0.2
ymax = max(max(p[1], p[2]) for p in pts) * 1.15 or 1
smax = max(p[3] for p in pts) * 1.15 or 1
X = lambda v: M + (math.log10(v) - x0) / (x1 - x0) * (W - 2 * M)
Y = lambda v, top: H - M + 0 - v / top * (H - 2 * M)
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<line x1="{M}" y1="{H-M}" x2="{W-M}" y2="{H-M}" stroke="black"/>',
       f'<line x1="{M}" y1="{M}" x2="{M}" y2="{H-M}" stroke="black"/>',
       f'<line x1="{W-M}" y1="{M}" x2="{W-M}" y2="{H-M}" stroke="black"/>',
       f'<text x="{W/2}" y="{H-15}" text-anchor="middle">Services (10 endpoints each), log scale</text>',
       f'<text x="15" y="{M-20}">RSS MiB (max {ymax/1.15:.0f})</text>',
       f'<text x="{W-15}" y="{M-20}" text-anchor="end">start to all routes, s</text>']
def series(key, top, color, label, ly):
    p = [(X(q[0]), Y(q[key], top)) for q in pts]
    out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(f"{a:.0f},{b:.0f}" for a, b in p)}"/>')
    for (a, b), q in zip(p, pts):
        out.append(f'<circle cx="{a:.0f}" cy="{b:.0f}" r="3" fill="{color}"/><text x="{a+5:.0f}" y="{b-5:.0f}" fill="{color}">{q[key]:g}</text>')
    out.append(f'<text x="{M+10}" y="{ly}" fill="{color}">{label}</text>')
series(1, ymax, "#c0392b", "vipr RSS per node (MiB)", M + 10)
series(2, ymax, "#7f8c8d", "kube-rs reflector RSS, same objects (MiB)", M + 26)
series(3, smax, "#2471a3", "vipr start to all routes at FRR (s, right axis)", M + 42)
for q in pts:
    out.append(f'<text x="{X(q[0]):.0f}" y="{H-M+15}" text-anchor="middle">{q[0]}</text>')
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out))
PY
echo "plot: $OUT/bench-scale-$STAMP.svg"
