#!/usr/bin/env bash
# Network-namespace labs for vipr (root, Debian 12; no Docker). Usage:
#   labs/run.sh demo               the main job: up bgp-ecmp, show it, SIGTERM one node, show again, down
#   labs/run.sh up LAB             build it, wait until it has converged, print what to look at
#   labs/run.sh down [LAB]         tear it down (any lab; also run by `up` on failure)
# LAB is bgp-ecmp, arp-failover, equinix-metal or cluster. VIPR_BIN=/path/to/vipr skips the release
# build (the tests pass their debug binary); VIPR_LAB_KEEP=1 keeps a lab that failed to come up. Labs that need Kubernetes start a real
# kube-apiserver 1.20.2 + etcd in vlab-tor (labs/k8s/apiserver.sh; built once, ~9 min).
#
# bgp-ecmp: control-plane VIP and a Service VIP over BGP, three ECMP paths each
#
#            vlab-tor  FRR AS 65000, kube-apiserver; 10.55.0.1, 2001:db8:55::1 on br0
#           /        |        \
#   vlab-n1       vlab-n2       vlab-n3        vipr, AS 65001, 10.55.0.11-13
#   control-plane VIP 192.0.2.10, 2001:db8:ff::10 on lo; Service "demo" 198.51.100.10
#
# arp-failover: one Lease-elected VIP on a shared segment, a client watching its MAC
#
#            vlab-tor  bridge br0 + kube-apiserver (10.55.0.1)
#           /        |        \         \
#   vlab-n1       vlab-n2       vlab-n3    vlab-client 10.55.0.100
#   vipr vip_arp, lease 2 s / renew 1 s / retry 0.5 s: VIP 10.55.0.200 and 2001:db8:55::200 on
#   the holder's eth0, announced by gratuitous ARP / unsolicited NA
#
# cluster: a real Kubernetes 1.20.2 cluster (labs/k8s/cluster.sh), vipr from its OCI image as
# `vipr manifest rbac` + `vipr manifest daemonset` render it, no hand edits
#
#            vlab-tor  FRR AS 65000, kube-apiserver, controller-manager, scheduler; 10.55.0.1
#           /        |        \
#   vlab-n1       vlab-n2       vlab-n3        containerd + kubelet: Nodes node1-3 (10.55.0.11-13)
#   DaemonSet vipr (BGP, AS 65001): control-plane VIP 192.0.2.10; Service kube-system/demo
#   (selecting the vipr pods, port 2112) with its address from the pool 198.51.100.32/29.
#   The image is built from a static vipr: VIPR_IMAGE_BIN=/path/to/static/vipr, or else the
#   Dockerfile's build (release, crt-static; minutes the first time). kubelet,
#   controller-manager and scheduler are built once (~10 min) and cached like the API server.
#
# equinix-metal: peers from a metadata service, multihop with MD5, as on Equinix Metal
#
#   vlab-r1 FRR AS 65530         vlab-r2 FRR AS 65530      169.254.255.1 / .2 on lo
#     10.57.1.2 \                   / 10.57.2.2
#                vlab-tor  gateway 10.55.0.1; metadata http://10.55.0.1:8080/nN/metadata
#           /        |        \
#   vlab-n1       vlab-n2       vlab-n3        vipr, vipr_peers_from=equinix-metal
#   EIP 192.0.2.20 on lo, advertised multihop with MD5 to both routers (3 paths each)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LAB_DIR=/tmp/vipr-lab
K8S=$LAB_DIR/k8s
NODES=3
MD5=lab-md5-secret

need_root() { [ "$(id -u)" = 0 ] || { echo "labs/run.sh needs root" >&2; exit 1; }; }

build() {
  labs/install-deps.sh >/dev/null
  if [ -n "${VIPR_BIN:-}" ]; then
    VIPR=$VIPR_BIN
  else
    cargo build --release --locked -q -p vipr
    VIPR=$ROOT/target/release/vipr
  fi
  [ -x "$VIPR" ] || { echo "no vipr binary at $VIPR" >&2; exit 1; }
}

# Every lab uses only vlab-* namespaces: down removes all of them.
down() {
  local all
  all=$(ip netns list 2>/dev/null | awk '$1 ~ /^vlab-/ {print $1}')
  for ns in $all; do
    case $ns in vlab-n*) ip netns pids "$ns" 2>/dev/null | xargs -r kill -TERM 2>/dev/null || true ;; esac
  done
  local i
  for i in $(seq 1 $NODES); do
    [ -f "$LAB_DIR/vlab-n$i/node/containerd.toml" ] &&
      labs/k8s/cluster.sh stop-node "$LAB_DIR/vlab-n$i/node" "vlab-n$i" >/dev/null 2>&1 || true
  done
  [ -d "$K8S" ] && labs/k8s/apiserver.sh stop "$K8S" >/dev/null 2>&1 || true
  [ -n "$all" ] && sleep 0.5
  for ns in $all; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$LAB_DIR"
}

# wait_for SECONDS WHAT COMMAND...: poll every 0.1 s; fail with WHAT.
. labs/wait.sh

vtysh() { local ns=$1; shift; ip netns exec "$ns" vtysh --vty_socket "$LAB_DIR/frr-$ns" "$@"; }
kubectl_() { ip netns exec vlab-tor kubectl --kubeconfig "$K8S/kubeconfig" "$@"; }

# The segment: vlab-tor with br0, nodes vlab-n1..3 with eth0 on it (default route via the tor).
segment() {
  mkdir -p "$LAB_DIR"
  ip netns add vlab-tor
  ip -n vlab-tor link set lo up
  ip -n vlab-tor link add br0 type bridge mcast_snooping 0
  ip -n vlab-tor addr add 10.55.0.1/24 dev br0
  ip -n vlab-tor addr add 2001:db8:55::1/64 dev br0 nodad
  ip -n vlab-tor link set br0 up
  for i in $(seq 1 $NODES); do attach "vlab-n$i" "10.55.0.1$i" "2001:db8:55::1$i"; done
}

# attach NS V4 V6: a namespace with eth0 on br0.
attach() {
  local ns=$1
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "$ns-t" type veth peer name "$ns-n"
  ip link set "$ns-t" netns vlab-tor
  ip link set "$ns-n" netns "$ns"
  ip -n vlab-tor link set "$ns-t" master br0 up
  ip -n "$ns" link set "$ns-n" name eth0
  ip -n "$ns" addr add "$2/24" dev eth0
  ip -n "$ns" addr add "$3/64" dev eth0 nodad
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via 10.55.0.1
}

# frr NS BGPD_CONF: zebra + bgpd in NS with private paths, no systemd.
frr() {
  local ns=$1 R=$LAB_DIR/frr-$1
  mkdir -p "$R"
  echo "hostname $ns" > "$R/zebra.conf"
  printf '%s\n' "$2" > "$R/bgpd.conf"
  chown -R frr:frr "$R"
  ip netns exec "$ns" /usr/lib/frr/zebra -d -f "$R/zebra.conf" -i "$R/zebra.pid" -z "$R/zserv.api" --vty_socket "$R" 2>>"$R/start.log"
  ip netns exec "$ns" /usr/lib/frr/bgpd -d -f "$R/bgpd.conf" -i "$R/bgpd.pid" -z "$R/zserv.api" --vty_socket "$R" 2>>"$R/start.log"
}

apiserver() {
  labs/k8s/apiserver.sh start "$K8S" 10.55.0.1 vlab-tor >/dev/null
  # The bootstrap controller creates the default namespaces just after /readyz.
  wait_for 30 "the API server's default namespace" kubectl_ get namespace default
}

# vipr I KEY=VALUE...: vipr manager on node I with exactly these settings, log in LAB_DIR.
vipr() {
  local i=$1; shift
  mkdir -p "$LAB_DIR/vlab-n$i"
  ip netns exec "vlab-n$i" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    vip_nodename="node$i" prometheus_server=127.0.0.1:2112 vipr_state_dir="$LAB_DIR/vlab-n$i" "$@" \
    "$VIPR" manager > "$LAB_DIR/vlab-n$i/vipr.log" 2>&1 &
}

# paths NS PREFIX: how many next hops NS's zebra has for PREFIX.
paths() {
  local ns=$1 p=$2 fam=ip
  [[ $p == *:* ]] && fam=ipv6
  vtysh "$ns" -c "show $fam route $p json" 2>/dev/null | jq "[.[\"$p\"][0].nexthops[]? | select(.active)] | length" 2>/dev/null || echo 0
}
has_paths() { [ "$(paths "$1" "$2")" = "$3" ]; }
# bgp_paths NS PREFIX: how many BGP paths NS has for PREFIX, and how many are multipath.
bgp_multipath() {
  vtysh "$1" -c "show bgp ipv4 unicast $2 json" 2>/dev/null | jq "[.paths[]? | select(.multipath or .bestpath.overall)] | length" 2>/dev/null || echo 0
}
has_multipath() { [ "$(bgp_multipath "$1" "$2")" = "$3" ]; }

# --- bgp-ecmp -------------------------------------------------------------------------------
# FRR on vlab-tor: AS 65000, the nodes in AS 65001, ECMP over all of them.
tor_frr() {
  local c="hostname tor
router bgp 65000
 bgp router-id 10.55.0.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp bestpath as-path multipath-relax
 neighbor nodes peer-group
 neighbor nodes remote-as 65001
 neighbor nodes timers 1 3
 neighbor nodes timers connect 1"
  for i in $(seq 1 $NODES); do c+=$'\n'" neighbor 10.55.0.1$i peer-group nodes"; done
  for af in ipv4 ipv6; do
    c+=$'\n'" address-family $af unicast"$'\n'"  maximum-paths 8"$'\n'"  neighbor nodes activate"$'\n'" exit-address-family"
  done
  frr vlab-tor "$c"
}

up_bgp_ecmp() {
  segment
  tor_frr
  apiserver
  for i in $(seq 1 $NODES); do
    vipr "$i" bgp_enable=true cp_enable=true svc_enable=true address=192.0.2.10,2001:db8:ff::10 \
      bgp_as=65001 bgp_routerid="10.55.0.1$i" bgp_peers=10.55.0.1:65000::false \
      bgp_hold_time=3 bgp_keepalive_interval=1 k8s_config_file="$K8S/kubeconfig"
  done
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata:
  name: demo
  namespace: default
  annotations:
    kube-vip.io/loadbalancerIPs: 198.51.100.10
    # The lab runs no controller-manager, so no endpoints: like kube-vip, vipr announces a
    # Service without a ready endpoint only when asked to.
    kube-vip.io/allow-reconcile-without-endpoints: "true"
spec:
  type: LoadBalancer
  ports:
  - port: 80
EOF
  wait_for 30 "3 paths to 192.0.2.10 at FRR" has_paths vlab-tor 192.0.2.10/32 $NODES
  wait_for 10 "3 paths to 2001:db8:ff::10 at FRR" has_paths vlab-tor 2001:db8:ff::10/128 $NODES
  wait_for 20 "3 paths to the Service VIP 198.51.100.10 at FRR" has_paths vlab-tor 198.51.100.10/32 $NODES
  wait_for 10 "the Service status" sh -c "ip netns exec vlab-tor kubectl --kubeconfig $K8S/kubeconfig get svc demo -o jsonpath='{.status.loadBalancer.ingress[0].ip}' | grep -q 198.51.100.10"
}

show_bgp_ecmp() {
  echo "== FRR (vlab-tor): control-plane VIP and Service VIP, one next hop per node"
  vtysh vlab-tor -c 'show ip route 192.0.2.10/32'
  vtysh vlab-tor -c 'show ipv6 route 2001:db8:ff::10/128'
  vtysh vlab-tor -c 'show ip route 198.51.100.10/32'
  echo "== kubectl get svc demo (status written by vipr)"
  kubectl_ get svc demo
  echo "== vipr status on vlab-n1"
  ip netns exec vlab-n1 "$VIPR" status
}

look_bgp_ecmp() {
  cat <<EOF
Things to look at:
  ip netns exec vlab-tor vtysh --vty_socket $LAB_DIR/frr-vlab-tor -c 'show bgp ipv4 unicast 198.51.100.10/32'
  ip netns exec vlab-n2 $VIPR status            # peers and VIPs of node 2
  ip netns exec vlab-n2 curl -s 127.0.0.1:2112/metrics | grep ^vipr_
  ip netns exec vlab-tor kubectl --kubeconfig $K8S/kubeconfig get svc -o wide
  ip netns pids vlab-n2 | xargs kill -TERM      # node 2 withdraws at once; FRR keeps 2 paths
  labs/run.sh down bgp-ecmp
EOF
}

# --- arp-failover ---------------------------------------------------------------------------
holder() {
  for i in $(seq 1 $NODES); do
    ip -n "vlab-n$i" -4 addr show dev eth0 | grep -q '10.55.0.200/' && { echo "vlab-n$i"; return 0; }
  done
  return 1
}
client_knows_holder() {
  local h mac
  h=$(holder) || return 1
  mac=$(ip netns exec "$h" cat /sys/class/net/eth0/address)
  ip -n vlab-client neigh show 10.55.0.200 | grep -q "$mac"
}

up_arp_failover() {
  segment
  attach vlab-client 10.55.0.100 2001:db8:55::100
  apiserver
  for i in $(seq 1 $NODES); do
    vipr "$i" vip_arp=true vip_leaderelection=true vip_interface=eth0 cp_enable=true \
      address=10.55.0.200,2001:db8:55::200 vip_leaseduration=2 vip_renewdeadline=1 \
      vip_retryperiod=0.5 k8s_config_file="$K8S/kubeconfig"
  done
  wait_for 30 "a node holding 10.55.0.200" holder
  wait_for 10 "the client reaching the VIP" ip netns exec vlab-client ping -c1 -W1 10.55.0.200
  wait_for 10 "the client's neighbour entry for the holder" client_knows_holder
}

show_arp_failover() {
  local h; h=$(holder)
  echo "== the Lease (kube-system/plndr-cp-lock) and the VIP's holder"
  kubectl_ -n kube-system get lease plndr-cp-lock -o custom-columns=HOLDER:.spec.holderIdentity,RENEWED:.spec.renewTime
  ip -n "$h" -br addr show dev eth0
  echo "== the client's neighbour entry for the VIP (the holder's MAC: $(ip netns exec "$h" cat /sys/class/net/eth0/address))"
  ip -n vlab-client neigh show 10.55.0.200
}

look_arp_failover() {
  local h; h=$(holder)
  cat <<EOF
Things to look at:
  ip netns exec vlab-client ping 10.55.0.200                 # keep it running, then in another shell:
  ip netns pids $h | xargs kill -TERM                  # the holder releases the Lease: another node in ~50 ms
  ip -n vlab-client neigh show 10.55.0.200                   # the new holder's MAC, sent by gratuitous ARP
  ip netns exec vlab-tor kubectl --kubeconfig $K8S/kubeconfig -n kube-system get lease plndr-cp-lock -o yaml
  labs/run.sh down arp-failover
EOF
}

# --- equinix-metal --------------------------------------------------------------------------
metadata() {
  local i=$1
  cat <<EOF
{"id":"lab-n$i","hostname":"node$i","facility":"lab","bgp_neighbors":[
 {"address_family":4,"customer_as":65000,"customer_ip":"10.55.0.1$i","md5_enabled":true,
  "md5_password":"$MD5","multihop":true,"peer_as":65530,"peer_ips":["169.254.255.1","169.254.255.2"],
  "routes_in":[{"route":"192.0.2.20/32","exact":true}],"routes_out":[]}]}
EOF
}

up_equinix_metal() {
  segment
  ip netns exec vlab-tor sysctl -q -w net.ipv4.ip_forward=1
  for r in 1 2; do
    local ns=vlab-r$r
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "169.254.255.$r/32" dev lo
    ip link add "$ns-t" type veth peer name "$ns-n"
    ip link set "$ns-t" netns vlab-tor
    ip link set "$ns-n" netns "$ns"
    ip -n vlab-tor addr add "10.57.$r.1/30" dev "$ns-t"
    ip -n vlab-tor link set "$ns-t" up
    ip -n vlab-tor route add "169.254.255.$r/32" via "10.57.$r.2"
    ip -n "$ns" link set "$ns-n" name eth0
    ip -n "$ns" addr add "10.57.$r.2/30" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "10.57.$r.1"
    # A specific route: FRR does not resolve BGP next hops over a default route.
    ip -n "$ns" route add 10.55.0.0/24 via "10.57.$r.1"
    local c="hostname r$r
router bgp 65530
 bgp router-id 169.254.255.$r
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor nodes peer-group
 neighbor nodes remote-as 65000
 neighbor nodes ebgp-multihop 5
 neighbor nodes update-source 169.254.255.$r
 neighbor nodes password $MD5
 neighbor nodes timers 1 3
 neighbor nodes timers connect 1"
    for i in $(seq 1 $NODES); do c+=$'\n'" neighbor 10.55.0.1$i peer-group nodes"; done
    c+=$'\n'" address-family ipv4 unicast"$'\n'"  maximum-paths 8"$'\n'"  neighbor nodes activate"$'\n'" exit-address-family"
    frr "$ns" "$c"
  done
  # The metadata service: one document per node (the real one answers by source address).
  for i in $(seq 1 $NODES); do
    mkdir -p "$LAB_DIR/metadata/n$i"
    metadata "$i" > "$LAB_DIR/metadata/n$i/metadata"
  done
  ip netns exec vlab-tor busybox httpd -p 10.55.0.1:8080 -h "$LAB_DIR/metadata"
  for i in $(seq 1 $NODES); do
    vipr "$i" bgp_enable=true cp_enable=true address=192.0.2.20 vipr_peers_from=equinix-metal \
      vipr_metadata_url="http://10.55.0.1:8080/n$i/metadata" vipr_metadata_interval=5 \
      bgp_hold_time=3 bgp_keepalive_interval=1
  done
  wait_for 30 "3 multipaths to 192.0.2.20 at r1" has_multipath vlab-r1 192.0.2.20/32 $NODES
  wait_for 20 "3 multipaths to 192.0.2.20 at r2" has_multipath vlab-r2 192.0.2.20/32 $NODES
}

show_equinix_metal() {
  echo "== r1 and r2 (AS 65530, multihop, MD5): the EIP over 3 paths each"
  vtysh vlab-r1 -c 'show bgp ipv4 unicast 192.0.2.20/32'
  vtysh vlab-r2 -c 'show bgp ipv4 unicast summary'
  echo "== vipr status on vlab-n1 (peers from the metadata service)"
  ip netns exec vlab-n1 "$VIPR" status
}

look_equinix_metal() {
  cat <<EOF
Things to look at:
  ip netns exec vlab-n1 curl -s http://10.55.0.1:8080/n1/metadata | jq .bgp_neighbors
  ip -n vlab-n1 route                                  # host routes to 169.254.255.1/.2 via the gateway
  ip netns exec vlab-r1 vtysh --vty_socket $LAB_DIR/frr-vlab-r1 -c 'show bgp neighbor 10.55.0.11'
  ${EDITOR:-vi} $LAB_DIR/metadata/n1/metadata               # vipr follows a change within 5 s
  labs/run.sh down equinix-metal
EOF
}

# --- cluster --------------------------------------------------------------------------------
count_ready_nodes() { kubectl_ get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l; }
nodes_ready() { [ "$(count_ready_nodes)" = "$NODES" ]; }
pods_ready() {
  [ "$(kubectl_ -n kube-system get pods -l app.kubernetes.io/name=vipr --no-headers 2>/dev/null |
       awk '$2 == "1/1" && $3 == "Running"' | wc -l)" = "$NODES" ]
}
svc_ip() { kubectl_ -n kube-system get svc demo -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null; }
svc_paths() { local ip; ip=$(svc_ip); [ -n "$ip" ] && has_paths vlab-tor "$ip/32" $NODES; }

up_cluster() {
  local bin=${VIPR_IMAGE_BIN:-} t0
  if [ -z "$bin" ]; then
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked -q \
      --target x86_64-unknown-linux-gnu -p vipr
    bin=$ROOT/target/x86_64-unknown-linux-gnu/release/vipr
  fi
  labs/k8s/apiserver.sh node-bins >/dev/null
  labs/k8s/cluster.sh image "$bin" lab "$LAB_DIR/images" >/dev/null
  t0=$SECONDS
  segment
  tor_frr
  apiserver
  labs/k8s/cluster.sh control "$K8S" vlab-tor
  for i in $(seq 1 $NODES); do
    labs/k8s/cluster.sh node "$K8S" "$LAB_DIR/vlab-n$i/node" "vlab-n$i" "node$i" "10.55.0.1$i"
    for img in pause vipr-lab; do labs/k8s/cluster.sh load "$LAB_DIR/vlab-n$i/node" "$LAB_DIR/images/$img.tar"; done
  done
  wait_for 120 "$NODES Ready nodes" nodes_ready
  for i in $(seq 1 $NODES); do
    kubectl_ label node "node$i" node-role.kubernetes.io/control-plane= node-role.kubernetes.io/master= >/dev/null
  done
  CLUSTER_START=$((SECONDS - t0))
  local flags=(--controlplane --vip 192.0.2.10 --services --bgp --localAS 65001
               --bgppeers 10.55.0.1:65000::false --vipr-pools 198.51.100.32/29 --vipr-graceful-restart true
               --image docker.io/library/vipr:lab)
  "$VIPR" manifest rbac "${flags[@]}" > "$LAB_DIR/rbac.yaml"
  "$VIPR" manifest daemonset "${flags[@]}" > "$LAB_DIR/daemonset.yaml"
  kubectl_ apply -f "$LAB_DIR/rbac.yaml" -f "$LAB_DIR/daemonset.yaml" >/dev/null
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata:
  name: demo
  namespace: kube-system
spec:
  type: LoadBalancer
  selector:
    app.kubernetes.io/name: vipr
  ports:
  - port: 2112
EOF
  wait_for 120 "$NODES ready vipr pods" pods_ready
  wait_for 60 "3 paths to 192.0.2.10 at FRR" has_paths vlab-tor 192.0.2.10/32 $NODES
  wait_for 60 "the Service's address and 3 paths at FRR" svc_paths
}

show_cluster() {
  echo "== the cluster (Nodes Ready $CLUSTER_START s after the start) and vipr's pods"
  kubectl_ get nodes -o wide
  kubectl_ -n kube-system get pods -o wide
  echo "== FRR (vlab-tor): the control-plane VIP and the Service's address, one next hop per node"
  vtysh vlab-tor -c 'show ip route 192.0.2.10/32'
  vtysh vlab-tor -c "show ip route $(svc_ip)/32"
  kubectl_ -n kube-system get svc demo
}

look_cluster() {
  local pod; pod=$(kubectl_ -n kube-system get pods -l app.kubernetes.io/name=vipr -o jsonpath='{.items[0].metadata.name}')
  cat <<EOF
Things to look at (kubectl here: ip netns exec vlab-tor kubectl --kubeconfig $K8S/kubeconfig):
  kubectl -n kube-system logs $pod
  ip netns exec vlab-tor ping -i 0.01 $(svc_ip)          # keep it running, then in another shell:
  kubectl -n kube-system delete pod $pod   # that node's path goes at once; the DaemonSet brings it back
  kubectl -n kube-system rollout restart ds/vipr   # graceful restart: each vipr restarts in place, FRR keeps 3 paths
  kubectl drain node2 --ignore-daemonsets  # cordoned: node2's Service path goes at once; then kubectl uncordon node2
  ip netns exec vlab-tor vtysh --vty_socket $LAB_DIR/frr-vlab-tor -c 'show ip route 192.0.2.10/32'
  ls $LAB_DIR/vlab-n1/node/            # node1: kubelet.log, containerd.log, manifests/ (static pods)
  ctr --address $LAB_DIR/vlab-n1/node/containerd.sock -n k8s.io containers ls
  labs/run.sh down cluster
EOF
}

# --- main -----------------------------------------------------------------------------------
need_root
lab=${2:-}
case "${1:-demo}" in
  up)
    case $lab in bgp-ecmp|arp-failover|equinix-metal|cluster) ;; *) echo "usage: labs/run.sh up bgp-ecmp|arp-failover|equinix-metal|cluster" >&2; exit 2 ;; esac
    fn=${lab//-/_}
    trap 'rc=$?; if [ $rc != 0 ]; then echo "labs/run.sh: $lab failed; vipr logs:" >&2; tail -n 5 $LAB_DIR/vlab-n*/vipr.log >&2 || true; [ -n "${VIPR_LAB_KEEP:-}" ] || down; fi' EXIT
    build; down; "up_$fn"
    "show_$fn"
    echo; echo "Lab $lab is up."; "look_$fn"
    ;;
  down) down ;;
  demo)
    trap 'down' EXIT
    build; down; up_bgp_ecmp; show_bgp_ecmp
    echo; echo "== SIGTERM to vipr on vlab-n2"
    t0=$(date +%s%N)
    ip netns pids vlab-n2 | xargs kill -TERM
    for _ in $(seq 1 200); do
      n=$(paths vlab-tor 192.0.2.10/32)
      [ "$n" = 2 ] && break
      sleep 0.01
    done
    echo "FRR went from 3 to $n next hops in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    vtysh vlab-tor -c 'show ip route 192.0.2.10/32'
    vtysh vlab-tor -c 'show ip route 198.51.100.10/32'
    ;;
  *) echo "usage: labs/run.sh demo | up LAB | down [LAB]   (LAB: bgp-ecmp, arp-failover, equinix-metal, cluster)" >&2; exit 2 ;;
esac
