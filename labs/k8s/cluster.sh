#!/usr/bin/env bash
# A real Kubernetes 1.20.2 cluster on one machine, in network namespaces, around the test
# API server of labs/k8s/apiserver.sh: kube-controller-manager and kube-scheduler beside it,
# and per node namespace a containerd (Debian's 1.6, runc) and a kubelet registered as a
# Node. Used by `labs/run.sh up cluster` and tests/cluster_k8s.rs. Root; Debian 12.
#
#   labs/k8s/cluster.sh image BINARY TAG OUT      # OCI archives OUT/vipr-TAG.tar and OUT/pause.tar
#   labs/k8s/cluster.sh control API_DIR NS        # controller-manager + scheduler in NS
#   labs/k8s/cluster.sh node API_DIR DIR NS NAME IP  # containerd + kubelet of node NAME (address IP) in NS
#   labs/k8s/cluster.sh load DIR TAR              # import an OCI archive into the node's containerd
#   labs/k8s/cluster.sh api-relay API_DIR DIR NS  # (re)start the node's 127.0.0.1:6443 (node does it)
#   labs/k8s/cluster.sh api-relay-stop DIR        # stop it (and its open connections)
#   labs/k8s/cluster.sh stop-node DIR NS          # stop the node's kubelet, pods and containerd
#
# API_DIR is apiserver.sh's directory (kubeconfig, sa.key, certs/); every component uses its
# admin kubeconfig (a lab, not a hardened cluster). DIR is the node's own directory.
#
# How the nodes are kept apart on one machine:
# - containerd and kubelet run in the node's network namespace, entered with
#   `nsenter --net` (not `ip netns exec`, which remounts /sys and hides the cgroup v1 mounts
#   runc needs), and in a mount namespace of their own where /run/vipr, /var/log/pods and
#   /var/log/containers are the node's directories (a hostPath is the node's, as on separate
#   machines); containerd has its own root, state, socket and runc root. /etc/kubernetes is
#   the node's too, holding admin.conf (the admin kubeconfig) as kubeadm leaves it and
#   manifests/ (the kubelet's static pod directory, NODE_DIR/manifests), and
#   127.0.0.1:6443 relays to the API server, standing in for the node's own API server.
# - kubelets do not manage cgroups (--cgroups-per-qos=false): three kubelets share the
#   machine's cgroup tree.
# - containerd's CRI plugin runs with restrict_oom_score_adj (these machines withhold
#   CAP_SYS_RESOURCE; without it runc fails "can't get final child's PID from pipe"), its
#   sandbox image is a pause image built here and imported under a docker.io name that
#   kubelet's --pod-infra-container-image names as well (so nothing is ever pulled), and a
#   CNI config from Debian's containernetworking-plugins exists so the Node turns Ready (the
#   pods here all use the host network).
# - the kubernetes Service (10.96.0.1:443) is reached as kube-proxy would make it: one
#   nftables DNAT rule in each node namespace to the API server.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PAUSE_IMAGE=docker.io/vipr-lab/pause:3.4.1
export CONTAINERD_NAMESPACE=k8s.io

bins() { "$HERE/apiserver.sh" node-bins; }

. "$HERE/../wait.sh"

# oci ROOTFS_FILLER OUT TAG USER ENTRYPOINT CMD: an OCI image archive built with umoci.
oci() {
  local fill=$1 out=$2 tag=$3 user=$4 entry=$5 cmd=$6
  local W; W=$(mktemp -d /tmp/vipr-oci.XXXX)
  umoci init --layout "$W/layout"
  umoci new --image "$W/layout:$tag"
  umoci unpack --image "$W/layout:$tag" "$W/bundle" >/dev/null
  $fill "$W/bundle/rootfs"
  umoci repack --image "$W/layout:$tag" "$W/bundle"
  local args=(--image "$W/layout:$tag" --os linux --architecture amd64 --config.entrypoint "$entry")
  [ -n "$user" ] && args+=(--config.user "$user")
  [ -n "$cmd" ] && args+=(--config.cmd "$cmd")
  umoci config "${args[@]}"
  umoci gc --layout "$W/layout"
  tar -C "$W/layout" -cf "$out.tmp" . && mv "$out.tmp" "$out"
  rm -rf "$W"
}

# A Dockerfile instruction's single value: USER's word, or the one string of an exec-form
# ENTRYPOINT/CMD (["x"]).
dockerfile_value() {
  local v; v=$(sed -n "s/^$1 //p" "$HERE/../../Dockerfile" | tail -1)
  v=${v#[\"}; v=${v%\"]}
  [[ $v == *\"* ]] && { echo "cluster.sh: Dockerfile $1 has more than one word: $v" >&2; exit 1; }
  echo "$v"
}

image() {
  local bin=$1 tag=$2 out=$3
  readelf -l "$bin" | grep -q INTERP && { echo "cluster.sh: $bin is not statically linked" >&2; exit 1; }
  mkdir -p "$out"
  VIPR_IMAGE_BIN=$bin
  vipr_rootfs() { "$HERE/../image-rootfs.sh" "$1" "$VIPR_IMAGE_BIN"; }
  oci vipr_rootfs "$out/vipr-$tag.tar" "$tag" "$(dockerfile_value USER)" \
    "$(dockerfile_value ENTRYPOINT)" "$(dockerfile_value CMD)"
  # The sandbox image: Kubernetes' pause, built with the node binaries.
  PAUSE_BIN=$(bins)/pause
  pause_rootfs() { cp "$PAUSE_BIN" "$1/pause"; }
  oci pause_rootfs "$out/pause.tar" 3.4.1 65535:65535 /pause ""
  echo "$out/vipr-$tag.tar $(du -k "$out/vipr-$tag.tar" | cut -f1) KiB"
}

control() {
  local api=$1 ns=$2 B; B=$(bins)
  ip netns exec "$ns" "$B/kube-controller-manager" --kubeconfig "$api/kubeconfig" \
    --leader-elect=false --port 0 --secure-port 0 --controllers '*' \
    --service-account-private-key-file "$api/sa.key" --root-ca-file "$api/certs/apiserver.crt" \
    --use-service-account-credentials=false --node-monitor-period 1s \
    > "$api/controller-manager.log" 2>&1 &
  echo $! > "$api/controller-manager.pid"
  ip netns exec "$ns" "$B/kube-scheduler" --kubeconfig "$api/kubeconfig" --leader-elect=false \
    --port 0 --secure-port 0 > "$api/scheduler.log" 2>&1 &
  echo $! > "$api/scheduler.pid"
}

node() {
  local api=$1 dir=$2 ns=$3 name=$4 ip=$5 B; B=$(bins)
  mkdir -p "$dir"/{containerd,cni,manifests,kubelet,runc} "$dir"/fs/{run-vipr,pods,containers,etc-kubernetes/manifests}
  # kubeadm's admin.conf, which the static pod of `vipr manifest pod` mounts.
  cp "$api/kubeconfig" "$dir/fs/etc-kubernetes/admin.conf"
  cat > "$dir/containerd.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$dir/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    Root = "$dir/runc"
EOF
  cat > "$dir/cni/10-lab.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "lab", "plugins": [{"type": "bridge", "bridge": "cni0",
 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.${ip##*.}.0/24"}]]}}]}
EOF
  # The kubernetes Service, as kube-proxy would route it (and a route to the Service range, so
  # a node without a default route gets as far as the DNAT).
  local host; host=$(sed -n 's|^ *server: https://\(.*\):\([0-9]*\)$|\1 \2|p' "$api/kubeconfig")
  ip -n "$ns" route replace 10.96.0.0/12 via "${host% *}"
  api_relay "$api" "$dir" "$ns"
  ip netns exec "$ns" nft -f - <<EOF
table ip vipr-lab {
  chain out { type nat hook output priority -100; ip daddr 10.96.0.1 tcp dport 443 dnat to ${host% *}:${host#* }; }
}
EOF
  nsenter --net="/var/run/netns/$ns" unshare --mount --propagation private sh -c "
    mkdir -p /run/vipr /var/log/pods /var/log/containers /etc/kubernetes &&
    mount --bind '$dir/fs/run-vipr' /run/vipr && mount --bind '$dir/fs/pods' /var/log/pods &&
    mount --bind '$dir/fs/containers' /var/log/containers &&
    mount --bind '$dir/fs/etc-kubernetes' /etc/kubernetes &&
    mount --bind '$dir/manifests' /etc/kubernetes/manifests &&
    exec containerd --config '$dir/containerd.toml'" > "$dir/containerd.log" 2>&1 &
  local cpid=$!
  echo $cpid > "$dir/containerd.pid"
  wait_for 30 "containerd of $name" ctr --address "$dir/containerd.sock" version
  nsenter --net="/var/run/netns/$ns" --mount="/proc/$cpid/ns/mnt" "$B/kubelet" \
    --kubeconfig "$api/kubeconfig" --hostname-override "$name" --node-ip "$ip" \
    --container-runtime remote --container-runtime-endpoint "unix://$dir/containerd.sock" \
    --pod-infra-container-image "$PAUSE_IMAGE" --root-dir "$dir/kubelet" \
    --cert-dir "$dir/kubelet/pki" --pod-manifest-path "$dir/manifests" --file-check-frequency 1s \
    --cgroups-per-qos=false --enforce-node-allocatable '' --cgroup-driver cgroupfs \
    --fail-swap-on=false --read-only-port 0 --volume-plugin-dir "$dir/kubelet/plugins" \
    --node-status-update-frequency 2s --sync-frequency 5s --image-gc-high-threshold 100 \
    --eviction-hard '' --v 1 > "$dir/kubelet.log" 2>&1 &
  echo $! > "$dir/kubelet.pid"
}

# The node's own API endpoint, as on a kubeadm control-plane node (127.0.0.1:6443, which
# vipr's control plane uses with admin.conf): a TCP relay to the API server.
api_relay() {
  local api=$1 dir=$2 ns=$3 host
  host=$(sed -n 's|^ *server: https://\(.*\):\([0-9]*\)$|\1:\2|p' "$api/kubeconfig")
  ip netns exec "$ns" socat TCP-LISTEN:6443,bind=127.0.0.1,reuseaddr,fork "TCP:$host" \
    > "$dir/api-relay.log" 2>&1 &
  echo $! > "$dir/api-relay.pid"
  wait_for 10 "the API relay of $ns" ip netns exec "$ns" curl -sk -o /dev/null https://127.0.0.1:6443/livez
}

# Stop it: the relay and the children it forked for open connections (a kept-alive
# connection would otherwise go on reaching the API server).
api_relay_stop() {
  local pid; pid=$(cat "$1/api-relay.pid")
  pkill -KILL -P "$pid" 2>/dev/null || true
  kill -KILL "$pid" 2>/dev/null || true
}

load() {
  local dir=$1 tar=$2
  ctr --address "$dir/containerd.sock" images import --base-name "$(base_name "$tar")" "$tar" >/dev/null
}

base_name() {
  case $(basename "$1") in
    pause.tar) echo docker.io/vipr-lab/pause ;;
    vipr-*.tar) echo docker.io/library/vipr ;;
    *) echo "cluster.sh: unknown archive $1" >&2; exit 1 ;;
  esac
}

# Every process of the node (kubelet, containerd, its shims and the pods' containers: all
# in the node's network namespace NS), then the cgroups runc made for the containers
# (k8s.io/<container id> in each hierarchy, for every id in the node's containerd log: runc
# may leave one of a container already deleted; the parent too once no node uses it).
stop_node() {
  local dir=$1 ns=$2 ids
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  wait_for 10 "the processes of $ns to exit" no_pids "$ns" || true
  ids=$(grep -oE '\b[0-9a-f]{64}\b' "$dir/containerd.log" 2>/dev/null | sort -u || true)
  # A killed container's cgroup may stay busy for a moment (its processes not yet reaped).
  wait_for 10 "the cgroups of $ns's containers to go" rm_cgroups $ids || true
}
rm_cgroups() {
  local c id left=0
  for c in /sys/fs/cgroup/*/k8s.io; do
    for id in "$@"; do
      [ -d "$c/$id" ] && { rmdir "$c/$id" 2>/dev/null || left=1; }
    done
    rmdir "$c" 2>/dev/null || true
  done
  return $left
}
no_pids() { [ -z "$(ip netns pids "$1" 2>/dev/null)" ]; }

case "${1:-}" in
  image) shift; image "$@" ;;
  control) shift; control "$@" ;;
  node) shift; node "$@" ;;
  load) shift; load "$@" ;;
  api-relay) shift; api_relay "$@" ;;
  api-relay-stop) shift; api_relay_stop "$@" ;;
  stop-node) shift; stop_node "$@" ;;
  *) echo "usage: $0 image BINARY TAG OUT | control API_DIR NS | node API_DIR DIR NS NAME IP | load DIR TAR | api-relay API_DIR DIR NS | api-relay-stop DIR | stop-node DIR NS" >&2; exit 2 ;;
esac
