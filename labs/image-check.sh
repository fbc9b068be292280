#!/usr/bin/env bash
# Builds the binary the Dockerfile ships and checks it runs the way the image runs it
# (there is no Docker engine here): statically linked, from an otherwise empty root file
# system that holds only /vipr and the CA certificates, like the FROM scratch image:
#   - as the image's non-root user 65532: `vipr version` and `vipr manifest` work;
#   - `vipr manager` as the rendered pod runs it: root with every capability gone but
#     CAP_NET_ADMIN (plus CAP_SYS_CHROOT, only to enter the test root), no_new_privs, the
#     root file system read-only and a tmpfs on /run/vipr: it puts the VIP on lo, answers
#     /healthz, `vipr status --addr localhost:2112` resolves localhost through the
#     runtime's /etc/hosts (glibc's built-in files module, linked statically), and SIGTERM
#     removes the VIP and exits 0.
# Root; prints PASS lines; exits non-zero on the first failure.
#
#   labs/image-check.sh            # the Dockerfile's build (release, static) and check it
#   labs/image-check.sh --fast     # CI: the debug build, statically linked (~30 s instead of
#                                  # ~3-5 min of release LTO; same code, same static glibc)
#   labs/image-check.sh BINARY     # check a binary built elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "labs/image-check.sh needs root" >&2; exit 1; }
T0=$SECONDS
case "${1:-}" in
  "")
    # Exactly the Dockerfile's build (and labs/ipvs-vm's), so the cache is shared.
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked -q \
      --target x86_64-unknown-linux-gnu -p vipr
    BIN=target/x86_64-unknown-linux-gnu/release/vipr ;;
  --fast)
    # Relinks only the vipr binary of the debug build the tests used, statically: the
    # dependencies are reused as they are (crt-static matters at the final link). It leaves
    # target/debug/vipr static; the next cargo build links it dynamically again.
    cargo rustc --locked -q -p vipr --bin vipr -- -C target-feature=+crt-static
    BIN=target/debug/vipr ;;
  *) BIN=$1 ;;
esac
echo "image-check: binary $BIN ($(du -h "$BIN" | cut -f1), built/found in $((SECONDS - T0)) s)"

fail() { echo "image-check: FAIL: $*" >&2; exit 1; }
pass() { echo "image-check: PASS: $*"; }

# Static: no program interpreter, no shared libraries.
readelf -l "$BIN" | grep -q 'INTERP' && fail "has a program interpreter (dynamically linked)"
readelf -d "$BIN" | grep -q 'NEEDED' && fail "needs shared libraries: $(readelf -d "$BIN" | grep NEEDED)"
pass "statically linked (no INTERP, no NEEDED)"

NS=vimg$$
W=$(mktemp -d /tmp/vipr-image.XXXXXX)
R=$W/root
PID=
cleanup() {
  [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

# The image's file system (labs/image-rootfs.sh, as the Dockerfile builds it), plus what a
# container runtime adds (/etc/hosts, /proc, /dev).
labs/image-rootfs.sh "$R" "$BIN"
mkdir -p "$R/proc" "$R/dev" "$R/tmp"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$R/etc/hosts"

out=$(chroot --userspec=65532:65532 "$R" /vipr version) || fail "vipr version as 65532"
pass "as user 65532: $out"
chroot --userspec=65532:65532 "$R" /vipr manifest pod --vip 192.0.2.10 --controlplane --bgp \
  --bgppeers 10.0.0.1:65000::false > "$W/pod.yaml" || fail "vipr manifest as 65532"
grep -q '^kind: Pod$' "$W/pod.yaml" || fail "vipr manifest printed no Pod"
pass "as user 65532: vipr manifest pod"

# The daemon, as the pod runs it, in a network namespace of its own.
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add eth0 type veth peer name eth1
ip -n "$NS" addr add 10.99.0.2/24 dev eth0
ip -n "$NS" link set eth0 up && ip -n "$NS" link set eth1 up
ip netns exec "$NS" unshare --mount --propagation private sh -c "
  mount --bind '$R' '$R' && mount -o remount,bind,ro '$R' &&
  mount -t tmpfs -o size=1m,mode=0755 tmpfs '$R/run/vipr' && mount -t proc proc '$R/proc' &&
  exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin bgp_enable=true cp_enable=true address=192.0.2.10 bgp_peers=10.99.0.1:65000::false \
    prometheus_server=127.0.0.1:2112 vip_nodename=image-check \
    setpriv --bounding-set -all,+net_admin,+sys_chroot --inh-caps -all --no-new-privs -- \
    chroot '$R' /vipr manager" > "$W/vipr.log" 2>&1 &
PID=$!
ok=
for _ in $(seq 1 100); do
  if ip -n "$NS" addr show dev lo | grep -q '192.0.2.10/32' &&
     ip netns exec "$NS" curl -sf -m 1 http://127.0.0.1:2112/healthz >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || { cat "$W/vipr.log" >&2; fail "the daemon did not put the VIP on lo and answer /healthz"; }
pass "vipr manager from a read-only scratch root with CAP_NET_ADMIN: VIP on lo, /healthz answers"
ip netns exec "$NS" chroot --userspec=65532:65532 "$R" /vipr status --addr localhost:2112 > "$W/status.txt" 2>&1 ||
  { cat "$W/status.txt" >&2; fail "vipr status --addr localhost:2112 (name resolution in the static binary)"; }
grep -q 192.0.2.10 "$W/status.txt" || fail "vipr status shows no VIP"
pass "vipr status resolves localhost from /etc/hosts in the static binary"
grep -qi 'read-only\|EROFS' "$W/vipr.log" && { cat "$W/vipr.log" >&2; fail "the daemon tried to write outside /run/vipr"; }
kill -TERM "$PID"
rc=0; wait "$PID" || rc=$?
PID=
[ "$rc" = 0 ] || { cat "$W/vipr.log" >&2; fail "exit status $rc after SIGTERM"; }
ip -n "$NS" addr show dev lo | grep -q '192.0.2.10/' && fail "VIP left on lo after SIGTERM"
pass "SIGTERM: exit 0, VIP removed"
sed "s/^/  vipr: /" "$W/vipr.log" | head -n 6
echo "image-check: all passed in $((SECONDS - T0)) s"
