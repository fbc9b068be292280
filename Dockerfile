# syntax=docker/dockerfile:1
# vipr's container image: one static binary FROM scratch, plus the CA certificates that
# HTTPS needs (control-plane health checks, the Equinix Metal metadata service, API servers
# named in a kubeconfig). Nothing else: no shell, no libc, no package manager.
#
#   docker build -t vipr:0.1.0 .
#   docker buildx build --platform linux/arm64 -t vipr:0.1.0-arm64 .      # arm64, see below
#   docker run --rm vipr:0.1.0 manifest daemonset --inCluster --bgp --services ...
#
# User: the image runs as 65532 (non-root), which is all `vipr manifest`, `vipr status` and
# `vipr version` need. `vipr manager` needs CAP_NET_ADMIN (and CAP_NET_RAW in ARP mode) as
# effective capabilities, which Kubernetes grants a container only when it runs as root
# (there are no ambient capabilities for non-root containers, and file capabilities are
# ignored under allowPrivilegeEscalation: false). So the manifests that `vipr manifest`
# renders set runAsUser: 0 with every other capability dropped, a read-only root file
# system and no privilege escalation.
#
# The binary is what CI builds and runs (labs/image-check.sh): glibc linked statically,
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu
# arm64 (linux/arm64, e.g. Raspberry Pi 4/5, Ampere, Graviton) is the same build for
# aarch64-unknown-linux-gnu with a cross linker from Debian (gcc-aarch64-linux-gnu); the
# build stage runs on the builder's own platform, so no emulation is involved. Without
# Docker:
#   apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
#   rustup target add aarch64-unknown-linux-gnu
#   CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
#   CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
#   RUSTFLAGS='-C target-feature=+crt-static' \
#     cargo build --release --locked -p vipr --target aarch64-unknown-linux-gnu
# (aarch64-unknown-linux-musl works as well with musl-tools' cross compiler; CI does not
# build for arm64: these machines have no arm64 toolchain.)

FROM --platform=$BUILDPLATFORM rust:1-bookworm AS build
ARG TARGETARCH
RUN set -eux; \
    case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-gnu > /target ;; \
      arm64) echo aarch64-unknown-linux-gnu > /target; \
             apt-get update; \
             apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross; \
             rm -rf /var/lib/apt/lists/* ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    rustup target add "$(cat /target)"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eux; \
    T=$(cat /target); \
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
           CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
           RUSTFLAGS='-C target-feature=+crt-static'; \
    cargo build --release --locked -p vipr --target "$T"; \
    labs/image-rootfs.sh /rootfs "target/$T/release/vipr" /etc/ssl/certs/ca-certificates.crt

# The image's files are labs/image-rootfs.sh's (also used by the OCI build without Docker,
# labs/k8s/cluster.sh image, which reads USER, ENTRYPOINT and CMD from here).
FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
ENTRYPOINT ["/vipr"]
CMD ["--help"]
