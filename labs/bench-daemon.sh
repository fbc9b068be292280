#!/usr/bin/env bash
# Daemon benchmark (root): SIGTERM → route gone at the peer, idle RSS with 3 peers and 10 VIPs,
# stripped binary size. In the same run, gobgpd (the BGP engine kube-vip embeds) is measured
# the same way as the anchor.
#
#   vbd-tor: three BIRDs on 10.57.0.1, .2, .3
#      |
#   vbd-node: speaker under test (vipr, then gobgpd), 10.57.0.11, AS 65001
#
# Route-gone time: the script records CLOCK_REALTIME just before kill -TERM; the end is the
# timestamp BIRD itself logs (µs, debug routes) when it removes the last of the node's routes.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
. labs/bench-lib.sh
bench_init vipr-benchd vbd-tor vbd-node

ip netns add vbd-tor; ip netns add vbd-node
ip -n vbd-tor link set lo up; ip -n vbd-node link set lo up
ip link add vbd-t type veth peer name vbd-n
ip link set vbd-t netns vbd-tor; ip link set vbd-n netns vbd-node
for a in 1 2 3; do ip -n vbd-tor addr add 10.57.0.$a/24 dev vbd-t; done
ip -n vbd-node addr add 10.57.0.11/24 dev vbd-n
ip -n vbd-tor link set vbd-t up; ip -n vbd-node link set vbd-n up

# One BIRD per peer address (a BIRD matches sessions by neighbour address, so three
# protocols towards the same node need three daemons), each bound to its own address.
for a in 1 2 3; do
  {
    echo "log \"$D/bird$a.log\" all; timeformat log \"%F %T.%6f\"; debug protocols { states, routes };"
    echo "router id 10.57.0.$a; protocol device {}"
    echo "protocol bgp p$a { local 10.57.0.$a as 65000; neighbor 10.57.0.11 as 65001; passive on; strict bind on;"
    echo "  hold time 3; keepalive time 1; error wait time 1, 2; connect delay time 1;"
    echo "  ipv4 { import all; export none; }; }"
  } > "$D/bird$a.conf"
  ip netns exec vbd-tor bird -c "$D/bird$a.conf" -s "$D/bird$a.ctl" -P "$D/bird$a.pid"
done
routes() {
  local n=0 c
  for a in 1 2 3; do
    c=$(birdc -s "$D/bird$a.ctl" show route count 2>/dev/null | awk '/routes/ {print $1; exit}')
    n=$(( n + ${c:-0} ))
  done
  echo $n
}
now_ns() { date +%s%N; }

VIPS="198.51.100.1"; for i in $(seq 2 9); do VIPS="$VIPS,198.51.100.$i"; done
start_vipr() {
  ip netns exec vbd-node env bgp_enable=true cp_enable=true address=192.0.2.10 vipr_static_vips=$VIPS \
    bgp_as=65001 bgp_routerid=10.57.0.11 bgp_hold_time=3 bgp_keepalive_interval=1 \
    bgp_peers=10.57.0.1:65000::false,10.57.0.2:65000::false,10.57.0.3:65000::false \
    prometheus_server=127.0.0.1:2112 vipr_state_dir="$D/state" vip_loglevel=warn \
    "$VIPR" manager >> "$D/vipr.log" 2>&1 &
  echo $!
}
start_gobgp() {
  {
    echo '[global.config]'; echo '  as = 65001'; echo '  router-id = "10.57.0.11"'
    for a in 1 2 3; do
      echo '[[neighbors]]'; echo '  [neighbors.config]'; echo "    neighbor-address = \"10.57.0.$a\""; echo '    peer-as = 65000'
      echo '  [neighbors.timers.config]'; echo '    hold-time = 3'; echo '    keepalive-interval = 1'; echo '    connect-retry = 1'
    done
  } > "$D/gobgpd.toml"
  ip netns exec vbd-node gobgpd -f "$D/gobgpd.toml" --pprof-disable --api-hosts "unix://$D/gobgp.sock" >> "$D/gobgpd.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do [ -S "$D/gobgp.sock" ] && break; sleep 0.05; done
  sleep 0.3
  for ip in 192.0.2.10 ${VIPS//,/ }; do
    gobgp --target "unix://$D/gobgp.sock" global rib add "$ip/32" -a ipv4 nexthop 10.57.0.11 >/dev/null
  done
  echo $pid
}
wait_routes() { # n timeout_s
  local end=$(( $(date +%s) + $2 ))
  while [ "$(routes)" != "$1" ]; do
    [ "$(date +%s)" -lt $end ] || { echo "timeout waiting for $1 routes (have $(routes))" >&2; return 1; }
    sleep 0.02
  done
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

measure() { # name start_fn
  local name=$1 start=$2 times=()
  for r in $(seq 1 "$RUNS"); do
    local pid; pid=$($start)
    # 10 VIPs x 3 peers = 30 routes at BIRD.
    wait_routes 30 40
    if [ "$r" = 1 ]; then sleep 10; RSS[$name]=$(rss_kb "$pid"); fi
    local t0; t0=$(now_ns)
    kill -TERM "$pid"
    while [ "$(routes)" != "0" ]; do sleep 0.05; done
    # The peers' own clock: BIRD's log line for the last route it removed (µs resolution).
    local last=0 ts
    for a in 1 2 3; do
      ts=$(grep ' removed ' "$D/bird$a.log" | tail -1 | awk '{print $1" "$2}')
      ts=$(date -d "$ts" +%s%N)
      [ "$ts" -gt "$last" ] && last=$ts
    done
    local t1=$last
    times+=( $(( (t1 - t0) / 1000 )) )
    wait "$pid" 2>/dev/null || true
    wait_routes 0 10
    sleep 0.5
  done
  TIMES[$name]=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
}
median() { echo "$@" | tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
maxv() { echo "$@" | tr ' ' '\n' | grep -v '^$' | sort -n | tail -1; }

declare -A RSS TIMES
measure vipr start_vipr
measure gobgpd start_gobgp
SIZE=$(stat -c %s "$VIPR")
GOBGP_SIZE=$(stat -c %s "$(command -v gobgpd)")
{
  echo "vipr daemon benchmark, $(date -u +%FT%TZ), $(uname -r), $(nproc) cores, $RUNS runs each"
  echo "BIRD $(bird --version 2>&1 | awk '{print $3}') as the peers (3 sessions), 10 VIPs (30 routes at the peers)"
  echo
  printf '%-8s | %-44s | %-12s | %s\n' speaker "SIGTERM -> last route removed at BIRD (µs)" "idle RSS" "binary"
  for s in vipr gobgpd; do
    sz=$([ $s = vipr ] && echo "$SIZE" || echo "$GOBGP_SIZE")
    printf '%-8s | median %7s, max %7s                   | %6s KiB   | %s MB\n' \
      $s "$(median ${TIMES[$s]})" "$(maxv ${TIMES[$s]})" "${RSS[$s]}" "$(awk -v b="$sz" 'BEGIN {printf "%.1f", b/1048576}')"
  done
  echo
  echo "all SIGTERM->gone samples (µs): vipr: ${TIMES[vipr]}"
  echo "                               gobgpd: ${TIMES[gobgpd]}"
  echo "(time of BIRD's own log line for the last removed route minus the time kill -TERM was issued)"
} | tee "$OUT/bench-daemon-$(date +%F).txt"
