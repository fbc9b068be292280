#!/usr/bin/env bash
# BFD and graceful-restart benchmark (root). How long after the speaker is frozen (SIGSTOP)
# or cut off (nftables drops everything in its namespace) the peer removes the route:
#   vipr with BFD 50 ms x 3, vipr with BFD 300 ms x 3, vipr without BFD (hold time 3 s),
#   and as the anchor FRR 8 (zebra + bgpd + bfdd) with BFD 50 ms x 3 and 300 ms x 3,
# all measured the same way against the same BIRD. Then packets lost through the VIP while
# vipr restarts in place (SIGUSR2, graceful restart on, BFD on) vs a plain restart
# (SIGTERM, graceful restart off), pinging the VIP every 10 ms from the router: with BIRD as
# the router (BFD on and off), then with FRR 8 as the router (zebra + bgpd + bfdd in vbb-tor).
# LOSS_ONLY=1 runs only the restart measurements.
#
#   vbb-tor: BIRD 10.58.0.1 AS 65000 (passive, bfd on, graceful restart on, kernel export)
#      |  veth vbb-t <-> vbb-n
#   vbb-node: speaker under test 10.58.0.11 AS 65001, VIP 192.0.2.10/32 on lo
#
# Route-gone time: CLOCK_REALTIME just before the fault minus the timestamp BIRD itself logs
# (µs, `debug protocols { routes }`) when it removes 192.0.2.10/32.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
PASS=0; FAIL=0
. labs/bench-lib.sh
bench_init vipr-benchbfd vbb-tor vbb-node
VIP=192.0.2.10

ip netns add vbb-tor; ip netns add vbb-node
ip -n vbb-tor link set lo up; ip -n vbb-node link set lo up
ip link add vbb-t type veth peer name vbb-n
ip link set vbb-t netns vbb-tor; ip link set vbb-n netns vbb-node
ip -n vbb-tor addr add 10.58.0.1/24 dev vbb-t; ip -n vbb-node addr add 10.58.0.11/24 dev vbb-n
ip -n vbb-tor link set vbb-t up; ip -n vbb-node link set vbb-n up

now_ns() { date +%s%N; }
birdc_() { birdc -s "$D/bird.ctl" "$@" 2>/dev/null; }
ROUTER=bird # the router in vbb-tor: bird, or frr for the last restart measurements
route_at_bird() {
  if [ "$ROUTER" = frr ]; then ip -n vbb-tor route show "$VIP/32" | grep -q via
  else birdc_ show route "$VIP/32" | grep -q "$VIP/32"; fi
}

start_bird() { # bfd: on|off, interval ms
  [ -f "$D/bird.pid" ] && { kill "$(cat "$D/bird.pid")" 2>/dev/null || true; sleep 0.3; }
  cat > "$D/bird.conf" <<EOF
log "$D/bird.log" all; timeformat log "%F %T.%6f"; debug protocols { states, routes };
router id 10.58.0.1;
protocol device {}
protocol kernel { ipv4 { export all; }; }
protocol bfd { interface "*" { min rx interval $2 ms; min tx interval $2 ms; multiplier 3; }; }
protocol bgp node { local 10.58.0.1 as 65000; neighbor 10.58.0.11 as 65001; passive on;
  hold time 3; keepalive time 1; error wait time 1, 2; connect delay time 1;
  bfd $1; graceful restart on; ipv4 { import all; export none; }; }
EOF
  : > "$D/bird.log"
  ip netns exec vbb-tor bird -c "$D/bird.conf" -s "$D/bird.ctl" -P "$D/bird.pid"
  for _ in $(seq 1 100); do birdc_ show status | grep -q "up and running" && return; sleep 0.05; done
  echo "BIRD did not start" >&2; exit 1
}

# ---- speakers -------------------------------------------------------------------------------
VIPR_PID=
start_vipr() { # bfd field (e.g. "true;50;50;3" or "false"), graceful restart true|false
  ip netns exec vbb-node env bgp_enable=true cp_enable=true address=$VIP \
    bgp_as=65001 bgp_routerid=10.58.0.11 bgp_hold_time=3 bgp_keepalive_interval=1 \
    bgp_peers="10.58.0.1:65000::false:179::$1" vipr_graceful_restart="$2" \
    vipr_graceful_restart_time=30 prometheus_server=127.0.0.1:2112 \
    vipr_state_dir="$D/state" vip_loglevel=warn "$VIPR" manager >> "$D/vipr.log" 2>&1 &
  VIPR_PID=$!
}
stop_vipr() {
  [ -n "$VIPR_PID" ] || return 0
  kill -CONT "$VIPR_PID" 2>/dev/null || true
  kill -TERM "$VIPR_PID" 2>/dev/null || true
  wait "$VIPR_PID" 2>/dev/null || true
  VIPR_PID=
}
start_frr() { # bfd interval ms
  local R=$D/frr; rm -rf "$R"; mkdir -p "$R"
  printf 'hostname node\n' > "$R/zebra.conf"
  cat > "$R/bfdd.conf" <<EOF
bfd
 profile p
  receive-interval $1
  transmit-interval $1
  detect-multiplier 3
 !
!
EOF
  cat > "$R/bgpd.conf" <<EOF
router bgp 65001
 bgp router-id 10.58.0.11
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.58.0.1 remote-as 65000
 neighbor 10.58.0.1 timers 1 3
 neighbor 10.58.0.1 timers connect 1
 neighbor 10.58.0.1 bfd profile p
 address-family ipv4 unicast
  network $VIP/32
 exit-address-family
!
EOF
  frr_daemons vbb-node "$R"
}
# FRR 8 as the router instead of BIRD (default graceful-restart helper, bfdd 50 ms x 3).
start_frr_router() {
  local R=$D/frrtor; rm -rf "$R"; mkdir -p "$R"
  printf 'hostname tor\n' > "$R/zebra.conf"
  printf 'bfd\n profile p\n  receive-interval 50\n  transmit-interval 50\n  detect-multiplier 3\n !\n!\n' > "$R/bfdd.conf"
  cat > "$R/bgpd.conf" <<EOF
router bgp 65000
 bgp router-id 10.58.0.1
 no bgp ebgp-requires-policy
 neighbor 10.58.0.11 remote-as 65001
 neighbor 10.58.0.11 timers 1 3
 neighbor 10.58.0.11 timers connect 1
 neighbor 10.58.0.11 bfd profile p
!
EOF
  frr_daemons vbb-tor "$R"
}
frr_pids() { cat "$D/frr/zebra.pid" "$D/frr/bfdd.pid" "$D/frr/bgpd.pid" 2>/dev/null; }
stop_frr() {
  for p in $(frr_pids); do kill -CONT "$p" 2>/dev/null || true; kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in $(frr_pids); do kill -KILL "$p" 2>/dev/null || true; done
  rm -f "$D"/frr/*.pid
}

wait_route() { # present|absent timeout_s
  local end=$(( $(date +%s) + $2 ))
  while true; do
    if [ "$1" = present ]; then route_at_bird && return 0; else route_at_bird || return 0; fi
    [ "$(date +%s)" -lt $end ] || return 1
    sleep 0.02
  done
}
wait_bfd_up() {
  for _ in $(seq 1 200); do
    if [ "$ROUTER" = frr ]; then
      ip netns exec vbb-tor vtysh --vty_socket "$D/frrtor" -c "show bfd peers" 2>/dev/null | grep -q "Status: up" && return 0
    else
      birdc_ show bfd sessions | grep -q " Up " && return 0
    fi
    sleep 0.05
  done
  return 1
}
blackhole() {
  ip netns exec vbb-node nft -f - <<'EOF'
table inet bench_bh {
 chain i { type filter hook input priority -300; policy drop; }
 chain o { type filter hook output priority -300; policy drop; }
}
EOF
}
unblackhole() { ip netns exec vbb-node nft delete table inet bench_bh 2>/dev/null || true; }

# BIRD's own timestamp of its last removal of the VIP's route, in ns.
bird_removed_ns() {
  local ts; ts=$(grep ' removed ' "$D/bird.log" | grep "$VIP/32" | tail -1 | awk '{print $1" "$2}')
  [ -n "$ts" ] && date -d "$ts" +%s%N
}

# One measurement: start the speaker, wait for the route (and BFD), fault, wait for the
# route to go, record BIRD's removal time minus the fault time (µs). Prints the µs or "-".
one() { # speaker(vipr|frr) bfd_ms(0 = none) fault(stop|blackhole)
  local sp=$1 ms=$2 fault=$3
  if [ "$sp" = vipr ]; then
    if [ "$ms" = 0 ]; then start_vipr false false; else start_vipr "true;$ms;$ms;3" false; fi
  else
    start_frr "$ms"
  fi
  wait_route present 30 || { echo "-"; return; }
  [ "$ms" = 0 ] || wait_bfd_up || { echo "-"; return; }
  sleep 1.5 # past the Poll Sequence to the fast rate
  local t0; t0=$(now_ns)
  if [ "$fault" = stop ]; then
    if [ "$sp" = vipr ]; then kill -STOP "$VIPR_PID"; else kill -STOP $(frr_pids); fi
  else
    blackhole
  fi
  local r="-"
  if wait_route absent 15; then
    local t1; t1=$(bird_removed_ns)
    [ -n "$t1" ] && r=$(( (t1 - t0) / 1000 ))
  fi
  unblackhole
  if [ "$sp" = vipr ]; then stop_vipr; else stop_frr; fi
  wait_route absent 10 || true
  sleep 1
  echo "$r"
}

median() { echo "$@" | tr ' ' '\n' | grep -v '^[-]*$' | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
maxv() { echo "$@" | tr ' ' '\n' | grep -v '^[-]*$' | sort -n | tail -1; }
ms() { [ "$1" = "-" ] || [ -z "$1" ] && { echo "-"; return; }; awk -v u="$1" 'BEGIN {printf "%.0f", u/1000}'; }

declare -A RES
CASES=("vipr 50" "vipr 300" "vipr 0" "frr 50" "frr 300")
[ -n "${LOSS_ONLY:-}" ] && CASES=()
for c in "${CASES[@]}"; do
  set -- $c
  bird_ms=$([ "$2" = 0 ] && echo 300 || echo "$2")
  start_bird "$([ "$2" = 0 ] && echo off || echo on)" "$bird_ms"
  for fault in stop blackhole; do
    s=""
    for _ in $(seq 1 "$RUNS"); do s="$s $(one "$1" "$2" "$fault")"; done
    RES["$c $fault"]=$s
    echo "  $c $fault: $s" >&2
  done
done

# ---- restart in place: packets lost through the VIP ---------------------------------------
start_bird on 50
loss() { # mode: gr|plain, BFD field -> "sent lost"
  local mode=$1 bfd=$2 gr=false
  [ "$mode" = gr ] && gr=true
  start_vipr "$bfd" $gr
  wait_route present 30
  [ "$bfd" = false ] || wait_bfd_up
  sleep 1.5
  ip netns exec vbb-tor ping -i 0.01 -W 0.05 -w 8 -q $VIP > "$D/ping.log" 2>&1 &
  local ping=$!
  sleep 1
  if [ "$mode" = gr ]; then kill -USR2 "$VIPR_PID"; else kill -TERM "$VIPR_PID"; fi
  wait "$VIPR_PID" 2>/dev/null || true
  sleep 1 # the time a real upgrade takes to start the new process
  start_vipr "$bfd" $gr
  wait "$ping" 2>/dev/null || true
  local sent recv
  sent=$(awk '/packets transmitted/ {print $1}' "$D/ping.log")
  recv=$(awk '/packets transmitted/ {print $4}' "$D/ping.log")
  stop_vipr; wait_route absent 10 || true; sleep 1
  echo "$sent $(( sent - recv ))"
}
GR_LOSS=$(loss gr "true;50;50;3"); GR_NOBFD_LOSS=$(loss gr false); PLAIN_LOSS=$(loss plain "true;50;50;3")
echo "  loss (BIRD): GR+BFD $GR_LOSS, GR $GR_NOBFD_LOSS, plain $PLAIN_LOSS" >&2
# The same with FRR as the router: it follows RFC 5882 section 3.2 (a peer's AdminDown is no
# failure); BIRD 2.0 takes the restarting speaker's BFD AdminDown for a failure and drops
# the session hard unless configured with `bfd graceful`.
kill "$(cat "$D/bird.pid")" 2>/dev/null || true; rm -f "$D/bird.pid"; sleep 0.5
ROUTER=frr; start_frr_router
FRR_GR_LOSS=$(loss gr "true;50;50;3"); FRR_PLAIN_LOSS=$(loss plain "true;50;50;3")
echo "  loss (FRR): GR+BFD $FRR_GR_LOSS, plain $FRR_PLAIN_LOSS" >&2

{
  echo "vipr BFD benchmark, $(date -u +%FT%TZ), $(uname -r), $(nproc) cores, $RUNS runs each"
  echo "peer: BIRD $(bird --version 2>&1 | awk '{print $3}') (bfd on, same intervals); anchor speaker: FRR $(/usr/lib/frr/bgpd --version 2>/dev/null | awk 'NR==1 {print $3}') bgpd+bfdd"
  echo "route gone = BIRD's own log time of the removal minus the time of the fault"
  echo
  printf '%-28s | %-24s | %-24s\n' "speaker (detection)" "SIGSTOP: median / max ms" "blackhole: median / max ms"
  for c in "${CASES[@]}"; do
    set -- $c
    label="$1 $([ "$2" = 0 ] && echo "hold time 3 s" || echo "BFD $2 ms x 3")"
    a=${RES["$c stop"]}; b=${RES["$c blackhole"]}
    printf '%-28s | %8s / %-13s | %8s / %-13s\n' "$label" \
      "$(ms "$(median $a)")" "$(ms "$(maxv $a)")" "$(ms "$(median $b)")" "$(ms "$(maxv $b)")"
  done
  echo
  echo "restart in place, ping every 10 ms from the router to $VIP for 8 s, new process 1 s later:"
  echo "  SIGUSR2, graceful restart on (BIRD helper), BFD 50x3: sent/lost $GR_LOSS"
  echo "  SIGUSR2, graceful restart on (BIRD helper), no BFD:   sent/lost $GR_NOBFD_LOSS"
  echo "  SIGTERM, graceful restart off, BFD 50x3:             sent/lost $PLAIN_LOSS"
  echo "router FRR $(/usr/lib/frr/bgpd --version 2>/dev/null | awk 'NR==1 {print $3}') (default helper, bfdd 50x3):"
  echo "  SIGUSR2, graceful restart on, BFD 50x3:               sent/lost $FRR_GR_LOSS"
  echo "  SIGTERM, graceful restart off, BFD 50x3:              sent/lost $FRR_PLAIN_LOSS"
  echo
  for c in "${CASES[@]}"; do echo "samples µs ($c): stop ${RES["$c stop"]} | blackhole ${RES["$c blackhole"]}"; done
} | tee "$OUT/bench-bfd-$(date +%F).txt"
# Goals of the issue: < 300 ms at 50 ms x 3, 0 packets lost through a restart in place (with
# FRR as the router, BFD on; with BIRD, BFD off).
for f in stop blackhole; do
  [ -n "${LOSS_ONLY:-}" ] && break
  m=$(median ${RES["vipr 50 $f"]}); if [ "$m" != "-" ] && [ "$m" -lt 300000 ]; then PASS=$((PASS+1)); else FAIL=$((FAIL+1)); fi
done
if [ "$(echo "$FRR_GR_LOSS" | awk '{print $2}')" = 0 ] && [ "$(echo "$GR_NOBFD_LOSS" | awk '{print $2}')" = 0 ]; then PASS=$((PASS+1)); else FAIL=$((FAIL+1)); fi
echo "goals: PASS $PASS FAIL $FAIL"
[ "$FAIL" = 0 ]
