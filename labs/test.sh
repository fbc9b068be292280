#!/usr/bin/env bash
# Runs every vipr test: unit tests, sans-IO state machine tests, property tests, and the
# integration tests against real BIRD 2, FRR and GoBGP peers in network namespaces.
# Needs root (namespaces, port 179, TCP MD5). Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "labs/test.sh needs root (network namespaces)" >&2; exit 1; fi
labs/install-deps.sh
# The Kubernetes tests need a real kube-apiserver, and the cluster test (tests/cluster_k8s.rs)
# kubelet, kube-controller-manager and kube-scheduler: built once from Debian's source
# package in one go and cached under ~/.cache/vipr.
labs/k8s/apiserver.sh all
before=$(ip netns list | awk '{print $1}' | sort)
export CARGO_TERM_COLOR=never
cargo build --workspace --all-targets --locked
# The container image's binary: statically linked, run from an empty read-only root as the
# image and the rendered pods run it (the Dockerfile itself needs Docker, which CI lacks).
labs/image-check.sh --fast
# Kept, stripped as the release profile strips, for the cluster test's OCI image (else the
# test relinks it itself); cargo test links target/debug/vipr dynamically again.
strip -o target/vipr-image target/debug/vipr
VIPR_IMAGE_BIN=$PWD/target/vipr-image \
  cargo test --workspace --all-targets --locked -- --include-ignored "$@"
# Every decoder under libFuzzer for a short while (labs/fuzz.sh; the long run is manual).
FUZZ_JOBS=2 labs/fuzz.sh "${VIPR_FUZZ_SECONDS:-20}"
# Leave nothing behind.
left=$(comm -13 <(echo "$before") <(ip netns list | awk '{print $1}' | sort))
if [ -n "$left" ]; then echo "test.sh: namespaces left behind:" >&2; echo "$left" >&2; exit 1; fi
echo "test.sh: all tests passed"
