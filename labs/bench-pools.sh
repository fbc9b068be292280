#!/usr/bin/env bash
# Address pools benchmark (root): SERVICES LoadBalancer Services created in one burst (8
# client threads, one HTTPS connection each) against a real kube-apiserver 1.20.2, three
# vipr nodes (release build) allocating at once, FRR as the router.
#  1. pools: the Services ask for no address; vipr allocates from vipr_pools.
#  2. annotations (vipr without pools, the path before pools): the same number of Services,
#     each with its address in kube-vip.io/loadbalancerIPs.
# Latency of a Service = FRR's log time of the UPDATE that gave its address the third path,
# minus the time its POST returned. Also: allocations per second over the burst, and how
# long releasing every claim takes once the Services are deleted.
#
#   vbp-r: bridge br0 10.59.0.1, etcd + kube-apiserver, FRR (AS 65000, maximum-paths 8)
#   vbp-n1..3: eth0 10.59.0.11-13, vipr (AS 65001)
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES=${SERVICES:-500}
. labs/bench-lib.sh
bench_init vipr-benchp vbp-r vbp-n1 vbp-n2 vbp-n3
labs/k8s/apiserver.sh build >/dev/null
trap 'labs/k8s/apiserver.sh stop "$D/k8s" >/dev/null 2>&1 || true; bench_cleanup' EXIT

star_lab vbp 10.59.0
labs/k8s/apiserver.sh start "$D/k8s" 10.59.0.1 vbp-r >/dev/null
KC=$D/k8s/kubeconfig
API=https://10.59.0.1:16443
curl_api() { ip netns exec vbp-r curl -sk -A vipr-bench -H "Authorization: Bearer testtoken" "$@"; }
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; print a[i]}'; }
for _ in $(seq 1 100); do
  [ "$(curl_api -o /dev/null -w '%{http_code}' "$API/api/v1/namespaces/default")" = 200 ] && break
  sleep 0.1
done

F=$D/frr; mkdir -p "$F"
cat > "$F/zebra.conf" <<EOF
hostname router
EOF
cat > "$F/bfdd.conf" <<EOF
EOF
{
  echo "hostname router"
  echo "log file $F/bgpd.log"
  echo "log timestamp precision 6"
  echo "debug bgp updates in"
  echo "router bgp 65000"
  echo " bgp router-id 10.59.0.1"
  echo " no bgp ebgp-requires-policy"
  echo " no bgp default ipv4-unicast"
  for i in 1 2 3; do
    echo " neighbor 10.59.0.1$i remote-as 65001"
    echo " neighbor 10.59.0.1$i timers 1 3"
    echo " neighbor 10.59.0.1$i passive"
  done
  echo " address-family ipv4 unicast"
  echo "  maximum-paths 8"
  for i in 1 2 3; do echo "  neighbor 10.59.0.1$i activate"; done
  echo " exit-address-family"
} > "$F/bgpd.conf"
frr_daemons vbp-r "$F"

start_vipr() { # extra env...
  for i in 1 2 3; do
    ip netns exec vbp-n$i env bgp_enable=true svc_enable=true bgp_as=65001 bgp_routerid=10.59.0.1$i \
      bgp_peers=10.59.0.1:65000::false bgp_hold_time=3 bgp_keepalive_interval=1 vip_nodename=node$i \
      k8s_config_file="$KC" vipr_state_dir="$D/s$i" prometheus_server=127.0.0.1:2112 vip_loglevel=info \
      "$@" "$VIPR" manager >> "$D/vipr$i.log" 2>&1 &
    echo $! > "$D/vipr$i.pid"
  done
  for i in 1 2 3; do
    for _ in $(seq 1 200); do grep -q "caches synced" "$D/vipr$i.log" && break; sleep 0.05; done
  done
  for _ in $(seq 1 200); do
    [ "$(ip netns exec vbp-r vtysh --vty_socket "$F" -c 'show bgp summary json' | jq '[.ipv4Unicast.peers[] | select(.state=="Established")] | length')" = 3 ] && break
    sleep 0.1
  done
}
writes() { # "kind result count" summed over the three nodes
  for i in 1 2 3; do ip netns exec vbp-n$i curl -s http://127.0.0.1:2112/metrics; done |
    sed -n 's/^vipr_api_writes_total{kind="\([a-z]*\)",result="\([a-z]*\)"} \([0-9]*\)$/\1 \2 \3/p' |
    awk '{n[$1 " " $2] += $3} END {for (k in n) print k, n[k]}' | sort
}
cpu_ms() { # CPU time (user + system, ms) of the three vipr processes together
  local t=0 i
  for i in 1 2 3; do
    t=$(( t + $(awk '{print $14 + $15}' "/proc/$(cat "$D/vipr$i.pid")/stat") ))
  done
  echo $(( t * 1000 / $(getconf CLK_TCK) ))
}
stop_vipr() {
  for i in 1 2 3; do kill -TERM "$(cat "$D/vipr$i.pid")" 2>/dev/null || true; done
  for i in 1 2 3; do while kill -0 "$(cat "$D/vipr$i.pid")" 2>/dev/null; do sleep 0.05; done; done
}
lb_addresses() { # "name address" of every Service with an address
  curl_api "$API/api/v1/namespaces/default/services" |
    jq -r '.items[] | select(.spec.type=="LoadBalancer") | select(.status.loadBalancer.ingress) | "\(.metadata.name) \(.status.loadBalancer.ingress[0].ip)"'
}
run_phase() { # name ADDRESS_FORMAT
  local name=$1 fmt=$2
  : > "$F/bgpd.log"
  local cpu0; cpu0=$(cpu_ms)
  ip netns exec vbp-r python3 labs/k8s/burst.py "$API" testtoken default "$SERVICES" "$name" "$fmt" 8 > "$D/$name.created"
  for _ in $(seq 1 1200); do
    [ "$(lb_addresses | grep -c "^$name")" -ge "$SERVICES" ] && break
    sleep 0.1
  done
  lb_addresses | grep "^$name" > "$D/$name.addr" || true
  for _ in $(seq 1 300); do
    [ "$(third_paths "$F/bgpd.log" | wc -l)" -ge "$SERVICES" ] && break
    sleep 0.1
  done
  third_paths "$F/bgpd.log" > "$D/$name.frr"
  eval "${name}_CPU=$(( $(cpu_ms) - cpu0 ))"
  python3 - "$D/$name.created" "$D/$name.addr" "$D/$name.frr" > "$D/$name.lat" <<'PY'
import sys
created = dict(l.split() for l in open(sys.argv[1]))
addr = dict(l.split() for l in open(sys.argv[2]))
frr = dict(l.split() for l in open(sys.argv[3]))
for n, t in created.items():
    a = addr.get(n)
    if a and a in frr:
        print((int(frr[a]) - int(t)) // 1000)
PY
  local got first last
  got=$(wc -l < "$D/$name.lat")
  first=$(awk '{print $2}' "$D/$name.created" | sort -n | head -1)
  last=$(awk '{print $2}' "$D/$name.frr" | sort -n | tail -1)
  eval "${name}_N=$got"
  eval "${name}_P50=$(pct 50 < "$D/$name.lat")"
  eval "${name}_P99=$(pct 99 < "$D/$name.lat")"
  eval "${name}_MAX=$(pct 100 < "$D/$name.lat")"
  eval "${name}_RATE=$(awk -v n="$got" -v a="$first" -v b="$last" 'BEGIN {printf "%.0f", n / ((b - a) / 1e9)}')"
  for n in $(awk '{print $1}' "$D/$name.created"); do
    curl_api -o /dev/null -X DELETE "$API/api/v1/namespaces/default/services/$n"
  done
}

start_vipr vipr_pools="198.51.100.0/24;name=blue,203.0.113.0/24;name=green"
run_phase pool ""
claims() { curl_api "$API/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?labelSelector=vipr.io%2Faddress-claim%3Dtrue" | jq '.items | length'; }
t0=$(date +%s%N)
for _ in $(seq 1 600); do [ "$(claims)" = 0 ] && break; sleep 0.1; done
CLAIMS=$(claims); RELEASED_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 1; writes > "$D/pool.writes"
stop_vipr
start_vipr vipr_pool_configmap=
run_phase ann "10.200.{hi}.{lo}"
sleep 2; writes > "$D/ann.writes"
stop_vipr

{
  echo "vipr address pools benchmark, $(date -u +%FT%TZ), $(uname -r), $(nproc) cores, kube-apiserver 1.20.2, FRR $(ip netns exec vbp-r vtysh --vty_socket "$F" -c 'show version' | awk '/FRRouting/ {print $2; exit}')"
  echo
  echo "$SERVICES Services created in one burst (8 clients), 3 vipr nodes, latency = POST returned -> FRR has the third path:"
  echo "  allocated from pools (no address asked): $pool_N routes, p50 ${pool_P50} µs, p99 ${pool_P99} µs, max ${pool_MAX} µs, ${pool_RATE} allocations/s"
  echo "  asked for by annotation (no pools):     $ann_N routes, p50 ${ann_P50} µs, p99 ${ann_P99} µs, max ${ann_MAX} µs, ${ann_RATE} Services/s"
  echo "  CPU of the three vipr processes until every route was at FRR: pools ${pool_CPU} ms, annotations ${ann_CPU} ms"
  echo "  pool Services deleted: every claim released ${RELEASED_MS} ms after the last DELETE returned ($CLAIMS left)"
  echo
  echo "API writes by the three nodes over each phase (create, allocate, delete), kind result count:"
  echo "  pools:       $(tr '\n' ';' < "$D/pool.writes")"
  echo "  annotations: $(tr '\n' ';' < "$D/ann.writes")"
} | tee "$OUT/bench-pools-$(date +%F).txt"
