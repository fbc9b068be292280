#!/usr/bin/env bash
# A real Kubernetes API server for vipr's tests: kube-apiserver 1.20.2 built from Debian
# bookworm's `kubernetes` source package (vendored, builds offline with Debian's Go) plus
# Debian's etcd-server. The build is cached under ~/.cache/vipr/ so later runs start in
# seconds.
#
#   labs/k8s/apiserver.sh build                 # build and cache the binaries (~9 min the first time)
#   labs/k8s/apiserver.sh elector               # print the path of vipr-elector (built by build)
#   labs/k8s/apiserver.sh node-bins             # build and cache kubelet, kube-controller-manager,
#                                               # kube-scheduler, pause (the cluster lab; ~10 min); print their dir
#   labs/k8s/apiserver.sh all                   # build and cache everything above in one go (CI)
#   labs/k8s/apiserver.sh start DIR [ADDR] [NS] # start etcd + apiserver; writes DIR/kubeconfig
#   labs/k8s/apiserver.sh stop DIR              # stop both, remove DIR
#
# Kubelets (labs/k8s/cluster.sh) are reached at their InternalIP: node names resolve nowhere.
# VIPR_APISERVER_ARGS: extra kube-apiserver flags (word-split), e.g. --watch-cache=false.
# ADDR is the address the API server binds (default 127.0.0.1); NS runs both inside that
# network namespace (etcd on the namespace's own loopback). Tokens (DIR/tokens.csv):
#   testtoken  -> user "admin", group system:masters
#   viprtoken  -> user "vipr" (no permissions until RBAC binds it)
set -euo pipefail
VERSION=1.20.5+really1.20.2
# Bump when the build recipe changes, so cached binaries are rebuilt.
RECIPE=2
CACHE=${VIPR_CACHE:-$HOME/.cache/vipr}
BIN=$CACHE/kube-apiserver-$VERSION-r$RECIPE
# Bump when labs/k8s/elector/main.go changes.
ELECTOR_RECIPE=1
ELECTOR=$CACHE/vipr-elector-$VERSION-e$ELECTOR_RECIPE
# kubelet, kube-controller-manager and kube-scheduler for the cluster lab (labs/k8s/cluster.sh).
NODE_RECIPE=1
NODE_BINS=$CACHE/kube-node-$VERSION-n$NODE_RECIPE
PORT=${VIPR_APISERVER_PORT:-16443}

# Debian's kubernetes source, unpacked in a temporary directory with the vendored reflect2 fixed;
# prints the tree's path.
source_tree() {
  export DEBIAN_FRONTEND=noninteractive
  if ! ls /etc/apt/sources.list.d/vipr-src.sources >/dev/null 2>&1; then
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      > /etc/apt/sources.list.d/vipr-src.sources
    apt-get update -qq
  fi
  dpkg -s golang-go etcd-server rsync golang-github-modern-go-reflect2-dev >/dev/null 2>&1 ||
    apt-get install -y -qq --no-install-recommends golang-go etcd-server rsync golang-github-modern-go-reflect2-dev >/dev/null
  local W=$1
  cd "$W"
  apt-get source -qq kubernetes >/dev/null 2>&1
  cd kubernetes-*/
  # The vendored modern-go/reflect2 v1.0.1 faults on Go >= 1.18 map iteration ("unexpected
  # fault address" when encoding any object with a map, e.g. annotations). Debian's 1.0.2
  # has the fix; the API is the same.
  rm -rf vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
  rm -rf vendor/github.com/modern-go/reflect2/debian vendor/github.com/modern-go/reflect2/.git*
  mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
}

# Builds what is missing from the cache, from one unpacked source tree and one `make` (so
# shared packages compile once): with API=1 kube-apiserver and vipr-elector
# (labs/k8s/elector: client-go's Lease election as kube-vip runs it), with NODE=1 kubelet,
# kube-controller-manager, kube-scheduler and Kubernetes' pause (the sandbox image's
# program, build/pause/linux/pause.c, linked statically) into NODE_BINS/.
build_bins() {
  local api=$1 node=$2 what=()
  [ "$api" = 1 ] && [ ! -x "$BIN" ] && what+=(cmd/kube-apiserver)
  [ "$node" = 1 ] && [ ! -x "$NODE_BINS/pause" ] && what+=(cmd/kubelet cmd/kube-controller-manager cmd/kube-scheduler)
  if ((${#what[@]} == 0)) && { [ "$api" != 1 ] || [ -x "$ELECTOR" ]; }; then return; fi
  local W; W=$(mktemp -d /tmp/vipr-k8s-build.XXXX)
  local here; here=$(cd "$(dirname "$0")" && pwd)
  (
    source_tree "$W"
    mkdir -p "$CACHE"
    if ((${#what[@]})); then
      env GOPATH="$PWD/.go" CGO_ENABLED=0 HOME="$W/home" make WHAT="${what[*]}" >/dev/null
    fi
    if [[ " ${what[*]} " == *" cmd/kube-apiserver "* ]]; then
      cp _output/bin/kube-apiserver "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
    fi
    if [[ " ${what[*]} " == *" cmd/kubelet "* ]]; then
      rm -rf "$NODE_BINS.tmp" && mkdir "$NODE_BINS.tmp"
      cp _output/bin/kubelet _output/bin/kube-controller-manager _output/bin/kube-scheduler "$NODE_BINS.tmp/"
      gcc -Os -static -DVERSION=v3.4.1-vipr -o "$NODE_BINS.tmp/pause" build/pause/linux/pause.c
      rm -rf "$NODE_BINS" && mv "$NODE_BINS.tmp" "$NODE_BINS"
    fi
    if [ "$api" = 1 ] && [ ! -x "$ELECTOR" ]; then
      # GOPATH mode from the tree's place in GOPATH, so the vendored client-go is used.
      mkdir -p cmd/vipr-elector && cp "$here/elector/main.go" cmd/vipr-elector/
      (cd .go/src/k8s.io/kubernetes && env GOPATH="$OLDPWD/.go" GO111MODULE=off CGO_ENABLED=0 \
        HOME="$W/home" go build -o "$ELECTOR.tmp" ./cmd/vipr-elector)
      mv "$ELECTOR.tmp" "$ELECTOR"
    fi
  )
  rm -rf "$W"
}

build() { build_bins 1 0; echo "$BIN"; }
node_bins() { build_bins 0 1; echo "$NODE_BINS"; }

start() {
  local dir=$1 addr=${2:-127.0.0.1} ns=${3:-}
  [ -x "$BIN" ] || build >/dev/null
  dpkg -s etcd-server >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  mkdir -p "$dir/etcd" "$dir/certs"
  local run=()
  [ -n "$ns" ] && run=(ip netns exec "$ns")
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/sa.key" -out "$dir/sa.crt" -days 2 -subj /CN=sa >/dev/null 2>&1
  printf 'testtoken,admin,admin,system:masters\nviprtoken,vipr,vipr\n' > "$dir/tokens.csv"
  "${run[@]}" etcd --data-dir "$dir/etcd" --quota-backend-bytes 8589934592 --listen-client-urls http://127.0.0.1:23790 \
    --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
    > "$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"
  "${run[@]}" "$BIN" --etcd-servers http://127.0.0.1:23790 --bind-address "$addr" \
    --secure-port "$PORT" --advertise-address "$addr" --token-auth-file "$dir/tokens.csv" \
    --authorization-mode RBAC --service-account-key-file "$dir/sa.crt" \
    --service-account-signing-key-file "$dir/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --cert-dir "$dir/certs" \
    --service-cluster-ip-range 10.96.0.0/12,fd00:10:96::/112 --feature-gates IPv6DualStack=true,ServiceLBNodePortControl=true \
    --kubelet-preferred-address-types InternalIP,Hostname \
    ${VIPR_APISERVER_ARGS:-} \
    > "$dir/apiserver.log" 2>&1 &
  echo $! > "$dir/apiserver.pid"
  local host=$addr; [[ $addr == *:* ]] && host="[$addr]"
  for user in admin vipr; do
    local token=testtoken; [ $user = vipr ] && token=viprtoken
    cat > "$dir/kubeconfig-$user" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://$host:$PORT
    insecure-skip-tls-verify: true
users:
- name: $user
  user:
    token: $token
contexts:
- name: test
  context: {cluster: test, user: $user}
current-context: test
EOF
  done
  cp "$dir/kubeconfig-admin" "$dir/kubeconfig"
  for _ in $(seq 1 150); do
    if "${run[@]}" curl -sk -H "Authorization: Bearer testtoken" "https://$host:$PORT/readyz" 2>/dev/null | grep -q ok; then
      echo "API server ready at https://$host:$PORT (kubeconfig $dir/kubeconfig)"
      return 0
    fi
    sleep 0.2
  done
  echo "API server did not become ready; see $dir/apiserver.log" >&2
  tail -20 "$dir/apiserver.log" >&2
  return 1
}

stop() {
  local dir=$1
  for p in apiserver etcd; do
    [ -f "$dir/$p.pid" ] && kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
  done
  sleep 0.3
  for p in apiserver etcd; do
    [ -f "$dir/$p.pid" ] && kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true
  done
  rm -rf "$dir"
}

case "${1:-}" in
  build) build ;;
  elector) build >/dev/null; echo "$ELECTOR" ;;
  node-bins) node_bins ;;
  all) build_bins 1 1 ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 build | elector | node-bins | all | start DIR [ADDR] [NETNS] | stop DIR" >&2; exit 2 ;;
esac
