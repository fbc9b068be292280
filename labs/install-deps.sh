#!/usr/bin/env bash
# Installs what vipr's tests and labs need on a fresh Debian 12 machine (root): the real BGP
# peers (BIRD 2, FRR, GoBGP, ExaBGP), network tools, and the cluster lab's container runtime
# (containerd, runc, CNI plugins) and OCI image tool (umoci). Idempotent: skips what is present.
set -euo pipefail

PKGS=(bird2 frr gobgpd exabgp iputils-arping iputils-ping ipv6toolkit nftables socat tcpdump
      curl jq ipvsadm busybox-static kmod cpio rsync iproute2 procps psmisc
      etcd-server golang-go openssl qemu-system-x86
      containerd runc umoci containernetworking-plugins)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# kubectl: Debian's kubernetes-client, unless a kubectl is already installed (some images
# carry one from another repository, which the Debian package would conflict with).
command -v kubectl >/dev/null || missing+=(kubernetes-client)
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: ok"
