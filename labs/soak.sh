#!/usr/bin/env bash
# Churn soak, the long version of tests/soak_churn.rs (root): Services created, re-annotated
# and deleted against a real kube-apiserver 1.20.2 while BGP sessions flap (a raw peer, and
# FRR's session every 50th flap), then checks that FRR's routes and the node's VIPs equal the
# Services that exist, that no socket or thread leaked and that RSS ended within 5% of its
# value after warm-up. vipr is the release build. The RSS series (one sample a second) is
# written to labs/out/soak-DATE.txt.
#
#   labs/soak.sh [OPS] [FLAPS]      default 10000 Service operations, 1000 flaps
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "labs/soak.sh needs root (network namespaces)" >&2; exit 1; }
labs/install-deps.sh >/dev/null
labs/k8s/apiserver.sh build
mkdir -p labs/out
out=$PWD/labs/out/soak-$(date +%F-%H%M%S).txt
VIPR_SOAK_OPS=${1:-10000} VIPR_SOAK_FLAPS=${2:-1000} VIPR_SOAK_REPORT=$out \
  cargo test --release --locked --test soak_churn -- --include-ignored --nocapture 2>&1 |
  grep -E '^(after warm-up|churn:|converged|# ops|test |test result)|panicked|timed out'
echo "soak.sh: RSS series in $out"
tail -1 "$out"
