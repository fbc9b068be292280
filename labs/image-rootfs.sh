#!/bin/sh
# The one definition of what vipr's container image holds, used by the Dockerfile (its build
# stage runs this) and by labs/k8s/cluster.sh (which packs the result as an OCI image with
# umoci): the static vipr binary as /vipr, the CA certificates HTTPS needs, and an empty
# /run/vipr (the state directory the rendered pods mount). The image's user, entrypoint and
# command are the Dockerfile's USER, ENTRYPOINT and CMD lines (cluster.sh reads them there).
#
#   labs/image-rootfs.sh ROOT BINARY [CA_BUNDLE]   # CA_BUNDLE: /etc/ssl/certs/ca-certificates.crt
set -eu
[ $# -ge 2 ] || { echo "usage: $0 ROOT BINARY [CA_BUNDLE]" >&2; exit 2; }
root=$1 bin=$2 ca=${3:-/etc/ssl/certs/ca-certificates.crt}
mkdir -p "$root/etc/ssl/certs" "$root/run/vipr"
chmod 0755 "$root/run/vipr"
cp "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"
cp "$bin" "$root/vipr"
chmod 0755 "$root/vipr"
