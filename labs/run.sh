#!/usr/bin/env bash
# Network-namespace labs for vipr (root, Debian 12). Usage:
#   labs/run.sh up bgp-ecmp      FRR top-of-rack router + 3 nodes running vipr; one VIP, 3 ECMP paths
#   labs/run.sh down bgp-ecmp    tear it down (also run automatically by `up` on failure)
#   labs/run.sh demo             up bgp-ecmp, show the routes, stop one node, show again, down
#
#   topology (bgp-ecmp)
#
#                 vlab-tor  (FRR, AS 65000, 10.55.0.1 / 2001:db8:55::1 on br0)
#                /        |        \
#     vlab-n1 (vipr)  vlab-n2 (vipr)  vlab-n3 (vipr)     AS 65001, 10.55.0.11-13
#     VIP 192.0.2.10 and 2001:db8:ff::10 on lo, advertised by all three
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LAB_DIR=/tmp/vipr-lab
NODES=3

need_root() { [ "$(id -u)" = 0 ] || { echo "labs/run.sh needs root" >&2; exit 1; }; }

build() {
  labs/install-deps.sh >/dev/null
  cargo build --release --locked -q -p vipr
  VIPR=$ROOT/target/release/vipr
}

down() {
  for i in $(seq 1 $NODES); do
    ip netns pids "vlab-n$i" 2>/dev/null | xargs -r kill -TERM 2>/dev/null || true
  done
  sleep 0.5
  for ns in vlab-tor $(seq -f 'vlab-n%g' 1 $NODES); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$LAB_DIR"
}

up_bgp_ecmp() {
  down
  mkdir -p "$LAB_DIR/frr"
  ip netns add vlab-tor
  ip -n vlab-tor link set lo up
  ip -n vlab-tor link add br0 type bridge
  ip -n vlab-tor addr add 10.55.0.1/24 dev br0
  ip -n vlab-tor addr add 2001:db8:55::1/64 dev br0 nodad
  ip -n vlab-tor link set br0 up
  for i in $(seq 1 $NODES); do
    ns=vlab-n$i
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "vlab-n$i-t" type veth peer name "vlab-n$i-n"
    ip link set "vlab-n$i-t" netns vlab-tor
    ip link set "vlab-n$i-n" netns "$ns"
    ip -n vlab-tor link set "vlab-n$i-t" master br0 up
    ip -n "$ns" link set "vlab-n$i-n" name eth0
    ip -n "$ns" addr add "10.55.0.1$i/24" dev eth0
    ip -n "$ns" addr add "2001:db8:55::1$i/64" dev eth0 nodad
    ip -n "$ns" link set eth0 up
  done
  # FRR as the top-of-rack router: zebra + bgpd with private paths, no systemd.
  cat > "$LAB_DIR/frr/zebra.conf" <<EOF
hostname tor
EOF
  {
    echo "hostname tor"
    echo "router bgp 65000"
    echo " bgp router-id 10.55.0.1"
    echo " no bgp ebgp-requires-policy"
    echo " no bgp default ipv4-unicast"
    echo " bgp bestpath as-path multipath-relax"
    echo " neighbor nodes peer-group"
    echo " neighbor nodes remote-as 65001"
    echo " neighbor nodes timers 1 3"
    echo " neighbor nodes timers connect 1"
    for i in $(seq 1 $NODES); do echo " neighbor 10.55.0.1$i peer-group nodes"; done
    echo " address-family ipv4 unicast"
    echo "  maximum-paths 8"
    echo "  neighbor nodes activate"
    echo " exit-address-family"
    echo " address-family ipv6 unicast"
    echo "  maximum-paths 8"
    echo "  neighbor nodes activate"
    echo " exit-address-family"
  } > "$LAB_DIR/frr/bgpd.conf"
  chown -R frr:frr "$LAB_DIR/frr"
  R=$LAB_DIR/frr
  ip netns exec vlab-tor /usr/lib/frr/zebra -d -f "$R/zebra.conf" -i "$R/zebra.pid" -z "$R/zserv.api" --vty_socket "$R"
  ip netns exec vlab-tor /usr/lib/frr/bgpd -d -f "$R/bgpd.conf" -i "$R/bgpd.pid" -z "$R/zserv.api" --vty_socket "$R"
  for i in $(seq 1 $NODES); do
    ns=vlab-n$i
    mkdir -p "$LAB_DIR/$ns"
    ip netns exec "$ns" env \
      bgp_enable=true cp_enable=true address=192.0.2.10,2001:db8:ff::10 \
      vip_nodename="node$i" bgp_as=65001 bgp_routerid="10.55.0.1$i" \
      bgp_peers=10.55.0.1:65000::false bgp_hold_time=3 bgp_keepalive_interval=1 \
      prometheus_server=127.0.0.1:2112 vipr_state_dir="$LAB_DIR/$ns" \
      "$VIPR" manager > "$LAB_DIR/$ns/vipr.log" 2>&1 &
  done
  for _ in $(seq 1 100); do
    n=$(ip netns exec vlab-tor vtysh --vty_socket "$R" -c 'show ip route 192.0.2.10/32 json' 2>/dev/null \
        | jq '[.["192.0.2.10/32"][0].nexthops[]?] | length' 2>/dev/null || echo 0)
    [ "$n" = "$NODES" ] && break
    sleep 0.1
  done
}

show() {
  local R=$LAB_DIR/frr
  echo "== FRR (tor): ip route 192.0.2.10 and 2001:db8:ff::10"
  ip netns exec vlab-tor vtysh --vty_socket "$R" -c 'show ip route 192.0.2.10/32'
  ip netns exec vlab-tor vtysh --vty_socket "$R" -c 'show ipv6 route 2001:db8:ff::10/128'
  echo "== vipr status on vlab-n1"
  ip netns exec vlab-n1 "$VIPR" status
  echo "== lo on vlab-n1"
  ip -n vlab-n1 -br addr show dev lo
}

need_root
case "${1:-demo} ${2:-bgp-ecmp}" in
  "up bgp-ecmp")
    trap 'down' ERR
    build; up_bgp_ecmp; show
    cat <<EOF

Lab is up. Things to look at:
  ip netns exec vlab-tor vtysh --vty_socket $LAB_DIR/frr -c 'show bgp ipv4 unicast 192.0.2.10/32'
  ip netns exec vlab-n2 $VIPR status            # peers and VIPs of node 2
  ip netns exec vlab-n2 curl -s 127.0.0.1:2112/metrics
  ip netns pids vlab-n2 | xargs kill -TERM      # node 2 withdraws at once; FRR keeps 2 paths
  labs/run.sh down bgp-ecmp
EOF
    ;;
  "down bgp-ecmp") down ;;
  "demo "*)
    trap 'down' EXIT
    build; up_bgp_ecmp; show
    echo; echo "== SIGTERM to vipr on vlab-n2"
    t0=$(date +%s%N)
    ip netns pids vlab-n2 | xargs kill -TERM
    R=$LAB_DIR/frr
    for _ in $(seq 1 200); do
      n=$(ip netns exec vlab-tor vtysh --vty_socket "$R" -c 'show ip route 192.0.2.10/32 json' \
          | jq '[.["192.0.2.10/32"][0].nexthops[]?] | length')
      [ "$n" = 2 ] && break
      sleep 0.01
    done
    echo "FRR went from 3 to $n next hops in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    ip netns exec vlab-tor vtysh --vty_socket "$R" -c 'show ip route 192.0.2.10/32'
    ;;
  *) echo "usage: labs/run.sh up|down bgp-ecmp | demo" >&2; exit 2 ;;
esac
