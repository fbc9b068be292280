#!/usr/bin/env bash
# Runs a command inside a QEMU guest booted on Debian's kernel, which has IPVS (this host's
# kernel has none). The guest is an initramfs: busybox, iproute2's ip, ipvsadm, the IPVS and
# veth modules, and the given binaries (each at its own absolute path, stripped, with its
# shared libraries). /init runs the command and prints "@@ RC=<status>" on the serial
# console; this script prints the console and exits with that status.
#
#   labs/ipvs-vm/run.sh [--add FILE]... [--env K=V]... [--timeout SECS] -- COMMAND [ARGS...]
#   labs/ipvs-vm/run.sh --static-vipr -- /vipr version     # build vipr static and run it there
#
#   --add FILE      copy FILE (an executable) into the guest at the same path
#   --env K=V       set K=V for COMMAND in the guest
#   --static-vipr   build vipr static (crt-static, release) as TESTBED.md says and add it as /vipr
#   --timeout SECS  stop QEMU after SECS (default 240)
#
# The kernel package is downloaded once (apt-get download, not installed) and cached under
# ${XDG_CACHE_HOME:-~/.cache}/vipr/ipvs-vm. Needs root only for apt; everything else runs in
# a temporary directory removed on exit. QEMU runs with TCG (KVM hangs Debian's kernel here).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ADD=() ENVS=() TIMEOUT=240 STATIC=0
while (($#)); do
  case "$1" in
    --add) ADD+=("$2"); shift 2 ;;
    --env) ENVS+=("$2"); shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --static-vipr) STATIC=1; shift ;;
    --) shift; break ;;
    *) echo "ipvs-vm: unknown option $1" >&2; exit 2 ;;
  esac
done
(($#)) || { echo "ipvs-vm: no command (… -- COMMAND)" >&2; exit 2; }
for t in qemu-system-x86_64 busybox ipvsadm cpio depmod modprobe; do
  command -v "$t" >/dev/null || { echo "ipvs-vm: $t missing (labs/install-deps.sh)" >&2; exit 2; }
done

# --- kernel: Debian's current linux-image-*-amd64, cached ---------------------------------
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vipr/ipvs-vm
mkdir -p "$CACHE"
PKG=$(cd "$CACHE" && { cat pkg 2>/dev/null || true; })
if [ -z "$PKG" ] || [ ! -f "$CACHE/$PKG/vmlinuz" ]; then
  PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  if [ -z "$PKG" ]; then apt-get update -qq >/dev/null; PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}'); fi
  [ -n "$PKG" ] || { echo "ipvs-vm: cannot find Debian's linux-image-amd64" >&2; exit 2; }
  rm -rf "${CACHE:?}/$PKG.tmp" && mkdir -p "$CACHE/$PKG.tmp"
  (cd "$CACHE/$PKG.tmp" && apt-get download -qq -o APT::Sandbox::User=root "$PKG" >/dev/null && dpkg-deb -x ./*.deb root && rm -f ./*.deb)
  VER=$(ls "$CACHE/$PKG.tmp/root/lib/modules")
  depmod -b "$CACHE/$PKG.tmp/root" "$VER"
  cp "$CACHE/$PKG.tmp/root/boot/vmlinuz-$VER" "$CACHE/$PKG.tmp/vmlinuz"
  echo "$VER" > "$CACHE/$PKG.tmp/version"
  rm -rf "${CACHE:?}/$PKG" && mv "$CACHE/$PKG.tmp" "$CACHE/$PKG"
  echo "$PKG" > "$CACHE/pkg"
fi
KDIR=$CACHE/$PKG KVER=$(cat "$KDIR/version")

WORK=$(mktemp -d /tmp/vipr-ipvs-vm.XXXXXX)
QPID=
cleanup() { [ -n "$QPID" ] && kill -9 "$QPID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
R=$WORK/root
mkdir -p "$R"/{bin,sbin,dev,proc,sys,run,tmp,etc,lib64,lib/x86_64-linux-gnu,lib/modules/"$KVER"}

if ((STATIC)); then
  (cd "$ROOT" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked -q \
     --target x86_64-unknown-linux-gnu -p vipr)
  cp "$ROOT/target/x86_64-unknown-linux-gnu/release/vipr" "$R/vipr"
fi

# copy FILE to the same path in the guest, plus the libraries ldd names
put() {
  local f=$1 dst=$R$1
  mkdir -p "$(dirname "$dst")"
  if [ ! -e "$dst" ]; then
    cp -L "$f" "$dst"
    case "$f" in *.so*|*/ld-linux*) ;; *) strip -s "$dst" 2>/dev/null || true ;; esac
  fi
  ldd "$f" 2>/dev/null | awk '/=> \//{print $3} $1 ~ /^\/.*ld-linux/{print $1}' | while read -r lib; do
    [ -e "$R$lib" ] || { mkdir -p "$(dirname "$R$lib")"; cp -L "$lib" "$R$lib"; }
  done
}
cp "$(command -v busybox)" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
ln -sf ../bin/busybox "$R/sbin/modprobe"
# Real tools where busybox's differ: Debian's busybox sh runs its own applets before PATH,
# and its ip has no netns or veth; so /bin/sh is bash, and ip is iproute2's.
for t in bash ip ipvsadm; do
  p=$(command -v "$t"); rm -f "$R/bin/$t"; put "$p"; [ "$p" = "/bin/$t" ] || ln -sf "$p" "$R/bin/$t"
done
ln -sf bash "$R/bin/sh"
for f in "${ADD[@]}"; do put "$(readlink -f "$f")"; [ "$(readlink -f "$f")" = "$f" ] || put "$f"; done

# modules, loaded by /init in dependency order
INSMOD=$WORK/insmod
: > "$INSMOD"
for m in crc32c_generic ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh ip_vs_lc ip_vs_wlc ip_vs_mh veth; do
  modprobe -d "$KDIR/root" -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}' >> "$INSMOD"
done
awk '!seen[$0]++' "$INSMOD" | while read -r ko; do
  rel=${ko#"$KDIR/root"}
  mkdir -p "$R$(dirname "$rel")"; cp "$ko" "$R$rel"
  echo "insmod $rel 2>/dev/null || true" >> "$WORK/init.mods"
done

{
  echo '#!/bin/sh'
  echo 'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev'
  # /tmp stays the initramfs' own (writable): files put at their host path may live under
  # /tmp (a checkout in /tmp), and a tmpfs there would hide them.
  echo 'mount -t tmpfs run /run; mkdir -p /run/netns'
  echo 'export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/tmp'
  cat "$WORK/init.mods" 2>/dev/null || true
  echo 'ip link set lo up'
  echo 'echo "@@ guest up: kernel $(uname -r), ipvs $(cat /proc/net/ip_vs 2>/dev/null | head -1)"'
  for e in "${ENVS[@]}"; do printf 'export %q\n' "$e"; done
  printf '%q ' "$@"; echo
  echo 'echo "@@ RC=$?"'
  echo 'poweroff -f'
} > "$R/init"
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet) > "$WORK/initrd"

set +e
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot -nic none \
  -kernel "$KDIR/vmlinuz" -initrd "$WORK/initrd" \
  -append 'console=ttyS0 panic=-1 quiet' < /dev/null > "$WORK/console" 2>&1 &
QPID=$!
tail -n +1 --pid=$QPID -f "$WORK/console" 2>/dev/null
wait $QPID; QRC=$?
QPID=
set -e
RC=$(tr -d '\r' < "$WORK/console" | awk '/^@@ RC=/{sub(/^@@ RC=/,""); rc=$0} END{print rc}')
if [ -z "$RC" ]; then echo "ipvs-vm: no result from the guest (qemu exit $QRC)" >&2; exit 3; fi
exit "$RC"
