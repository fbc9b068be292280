#!/usr/bin/env bash
# Kubernetes benchmark (root), against a real kube-apiserver 1.20.2 (labs/k8s/apiserver.sh):
#  1. Service annotated -> route at the BGP peer: 200 LoadBalancer Services are created without
#     an address; each is then annotated (kube-vip.io/loadbalancerIPs) with a PATCH, one by one.
#     Latency = BIRD's own log time of "added <VIP>/32" minus the time just before the PATCH.
#  2. ARP takeover with lease 2 s / renew 1 s / retry 0.5 s, 3 nodes on a bridge, the router as
#     the client: time from kill -9 (or SIGTERM) of the leader until the client's neighbour
#     entry for the VIP shows another node's MAC (polled every 5 ms), RUNS times each.
#
#   vbk-r: bridge br0 10.58.0.1, etcd + kube-apiserver, BIRD (AS 65000), client for ARP
#   vbk-n1..3: eth0 10.58.0.11-13, vipr
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
RUNS=${RUNS:-10}
SERVICES=${SERVICES:-200}
OUT=labs/out; mkdir -p "$OUT"
D=$(mktemp -d /tmp/vipr-benchk.XXXX)
cleanup() {
  for i in 1 2 3; do ip netns pids vbk-n$i 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true; done
  labs/k8s/apiserver.sh stop "$D/k8s" >/dev/null 2>&1 || true
  for ns in vbk-r vbk-n1 vbk-n2 vbk-n3; do
    ip netns pids $ns 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del $ns 2>/dev/null || true
  done
  [ -n "${KEEP:-}" ] || rm -rf "$D"
}
trap cleanup EXIT
labs/install-deps.sh >/dev/null
labs/k8s/apiserver.sh build >/dev/null
cargo build --release --locked -q -p vipr
VIPR=$PWD/target/release/vipr
. labs/bench-lib.sh # star_lab

star_lab vbk 10.58.0
labs/k8s/apiserver.sh start "$D/k8s" 10.58.0.1 vbk-r >/dev/null
KC=$D/k8s/kubeconfig
API=https://10.58.0.1:16443
curl_api() { ip netns exec vbk-r curl -sk -H "Authorization: Bearer testtoken" "$@"; }
now_ns() { date +%s%N; }
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; print a[i]}'; }

# ---- 1. Service annotated -> route at the peer -------------------------------------------
cat > "$D/bird.conf" <<EOF
log "$D/bird.log" all; timeformat log "%F %T.%6f";
router id 10.58.0.1; protocol device {}
protocol bgp n1 { local 10.58.0.1 as 65000; neighbor 10.58.0.11 as 65001; passive on; hold time 3; keepalive time 1;
  debug { routes }; ipv4 { import all; export none; }; }
EOF
ip netns exec vbk-r bird -c "$D/bird.conf" -s "$D/bird.ctl" -P "$D/bird.pid"
ip netns exec vbk-n1 env bgp_enable=true svc_enable=true bgp_as=65001 bgp_routerid=10.58.0.11 \
  bgp_peers=10.58.0.1:65000::false bgp_hold_time=3 bgp_keepalive_interval=1 vip_nodename=node1 \
  k8s_config_file="$KC" vipr_state_dir="$D/s1" prometheus_server=127.0.0.1:2112 vip_loglevel=warn \
  "$VIPR" manager > "$D/vipr-bgp.log" 2>&1 &
VP=$!
# The API server creates the default namespace shortly after it reports ready.
for _ in $(seq 1 100); do
  [ "$(curl_api -o /dev/null -w '%{http_code}' "$API/api/v1/namespaces/default")" = 200 ] && break
  sleep 0.1
done
for i in $(seq 1 "$SERVICES"); do
  curl_api -f -o /dev/null -X POST -H 'Content-Type: application/json' </dev/null \
    -d "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"s$i\",\"annotations\":{\"kube-vip.io/allow-reconcile-without-endpoints\":\"true\"}},\"spec\":{\"type\":\"LoadBalancer\",\"ports\":[{\"port\":80}]}}" \
    "$API/api/v1/namespaces/default/services"
done
sleep 2
LAT=()
for i in $(seq 1 "$SERVICES"); do
  ip="10.200.$((i / 250)).$((i % 250 + 1))"
  t0=$(now_ns)
  curl_api -o /dev/null -X PATCH -H 'Content-Type: application/merge-patch+json' \
    -d "{\"metadata\":{\"annotations\":{\"kube-vip.io/loadbalancerIPs\":\"$ip\"}}}" \
    "$API/api/v1/namespaces/default/services/s$i"
  for _ in $(seq 1 400); do
    line=$(grep -m1 "added .*$ip/32" "$D/bird.log" || true)
    [ -n "$line" ] && break
    sleep 0.005
  done
  if [ -z "$line" ]; then
    echo "route for s$i ($ip) never arrived; vipr and BIRD logs:" >&2
    tail -20 "$D/vipr-bgp.log" >&2; tail -20 "$D/bird.log" >&2
    exit 1
  fi
  t1=$(date -d "$(echo "$line" | awk '{print $1" "$2}')" +%s%N)
  LAT+=( $(( (t1 - t0) / 1000 )) )
done
kill -TERM $VP; wait $VP 2>/dev/null || true
kill "$(cat "$D/bird.pid")"
SVC_P50=$(printf '%s\n' "${LAT[@]}" | pct 50); SVC_P99=$(printf '%s\n' "${LAT[@]}" | pct 99)
SVC_MAX=$(printf '%s\n' "${LAT[@]}" | pct 100)

# ---- 2. ARP takeover ----------------------------------------------------------------------
VIP=10.58.0.100
start_arp() { # node
  ip netns exec vbk-n$1 env vip_arp=true cp_enable=true address=$VIP vip_interface=eth0 \
    vip_leaderelection=true vip_leaseduration=2 vip_renewdeadline=1 vip_retryperiod=0.5 \
    vip_nodename=node$1 k8s_config_file="$KC" vipr_state_dir="$D/a$1" vip_loglevel=warn \
    prometheus_server=127.0.0.1:2112 "$VIPR" manager >> "$D/vipr-arp$1.log" 2>&1 &
  echo $! > "$D/arp$1.pid"
}
holder() { for i in 1 2 3; do ip -n vbk-n$i addr show dev eth0 | grep -q "$VIP/" && echo $i; done; true; }
mac_of() { ip -n vbk-n$1 link show eth0 | awk '/ether/ {print $2}'; }
client_mac() { ip -n vbk-r neigh show $VIP | awk '{print $5}'; }
for i in 1 2 3; do start_arp $i; done
declare -A TAKE
for sig in KILL TERM; do
  vals=()
  for r in $(seq 1 "$RUNS"); do
    h=
    for _ in $(seq 1 400); do
      hs=$(holder)
      if [ "$(printf '%s\n' $hs | grep -c .)" = 1 ]; then h=$hs; break; fi
      sleep 0.025
    done
    [ -n "$h" ] || { echo "no single holder" >&2; exit 1; }
    ip netns exec vbk-r ping -c1 -W1 $VIP >/dev/null || true
    old=$(mac_of "$h")
    [ "$(client_mac)" = "$old" ] || { echo "client does not know the VIP yet" >&2; exit 1; }
    # A random point of the leader's 0.5 s renewal cycle: a fixed 0.5 s after the previous
    # takeover would always land just after a renewal (the worst case).
    sleep "$(awk -v r=$RANDOM 'BEGIN {printf "%.3f", 0.5 + (r % 500) / 1000}')"
    t0=$(now_ns)
    kill -$sig "$(cat "$D/arp$h.pid")"
    [ $sig = KILL ] && ip -n vbk-n$h addr del $VIP/32 dev eth0 2>/dev/null || true
    for _ in $(seq 1 2000); do
      m=$(client_mac); [ -n "$m" ] && [ "$m" != "$old" ] && break
      sleep 0.005
    done
    t1=$(now_ns)
    vals+=( $(( (t1 - t0) / 1000000 )) )
    wait "$(cat "$D/arp$h.pid")" 2>/dev/null || true
    start_arp "$h"
  done
  TAKE[$sig]=$(printf '%s\n' "${vals[@]}" | sort -n | tr '\n' ' ')
done
med() { echo "$@" | tr ' ' '\n' | grep -v '^$' | pct 50; }
mx() { echo "$@" | tr ' ' '\n' | grep -v '^$' | pct 100; }
{
  echo "vipr Kubernetes benchmark, $(date -u +%FT%TZ), $(uname -r), $(nproc) cores, kube-apiserver 1.20.2"
  echo
  echo "Service annotated -> route at BIRD ($SERVICES Services, one by one, BIRD's log clock):"
  echo "  p50 ${SVC_P50} µs   p99 ${SVC_P99} µs   max ${SVC_MAX} µs"
  echo
  echo "ARP takeover, lease 2 s / renew 1 s / retry 0.5 s, 3 nodes, $RUNS runs each,"
  echo "time from the signal until the client's neighbour entry shows the new MAC:"
  echo "  kill -9:  median $(med ${TAKE[KILL]}) ms, max $(mx ${TAKE[KILL]}) ms   (all: ${TAKE[KILL]})"
  echo "  SIGTERM:  median $(med ${TAKE[TERM]}) ms, max $(mx ${TAKE[TERM]}) ms   (all: ${TAKE[TERM]})"
  echo "  kube-vip documents about 3 s for a failover with gratuitous ARP (3 lost pings)."
} | tee "$OUT/bench-k8s-$(date +%F).txt"
