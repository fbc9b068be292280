#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target of vipr for SECONDS each and prints a table of
# executions and crashes per target.
#
#   labs/fuzz.sh SECONDS [TARGET...]     e.g. labs/fuzz.sh 30   (CI), labs/fuzz.sh 600
#
# Targets (three fuzz crates, each outside the Cargo workspace):
#   bgp/fuzz        bgp_message bgp_open bgp_update bgp_notification bgp_session bfd_packet
#   providers/fuzz  equinix_metadata node_annotations
#   tests/fuzz      bgp_peers config_file ipvs_reply   (the daemon's own parsers)
#
# Stable toolchain only: cargo-fuzz builds with `--sanitizer none` (sancov instrumentation
# with stable -C flags; debug assertions and overflow checks on). No nightly is needed.
# Seeds: the BGP messages captured from BIRD and FRR (bgp/tests/data), the metadata
# documents of providers/tests/data, and tests/fuzz/seeds. Corpora grow in
# target/fuzz-corpus/TARGET and persist between runs; a crash lands in
# target/fuzz-artifacts/TARGET and fails the run (make it a regression test).
# FUZZ_JOBS targets run at once (default: number of CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:?usage: labs/fuzz.sh SECONDS [TARGET...]}
shift
jobs=${FUZZ_JOBS:-$(nproc)}

declare -A crate=(
  [bgp_message]=bgp/fuzz [bgp_open]=bgp/fuzz [bgp_update]=bgp/fuzz
  [bgp_notification]=bgp/fuzz [bgp_session]=bgp/fuzz [bfd_packet]=bgp/fuzz
  [equinix_metadata]=providers/fuzz [node_annotations]=providers/fuzz
  [bgp_peers]=tests/fuzz [config_file]=tests/fuzz [ipvs_reply]=tests/fuzz
)
all=(bgp_message bgp_open bgp_update bgp_notification bgp_session bfd_packet
  equinix_metadata node_annotations bgp_peers config_file ipvs_reply)
targets=("${@:-${all[@]}}")
for t in "${targets[@]}"; do
  [ -n "${crate[$t]:-}" ] || { echo "fuzz.sh: unknown target $t" >&2; exit 2; }
done

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

# One target directory for the three crates: shared dependencies build once.
tdir=$root/target/fuzz
bin=$tdir/x86_64-unknown-linux-gnu/release
for c in $(for t in "${targets[@]}"; do echo "${crate[$t]}"; done | sort -u); do
  echo "fuzz.sh: building $c"
  cargo fuzz build --fuzz-dir "$c" --sanitizer none --target-dir "$tdir"
done

# Writes the bytes of a hex string to a file.
unhex() { printf '%b' "$(sed 's/[^0-9a-fA-F]//g; s/../\\x&/g' <<<"$1")" >"$2"; }

# Seeds per target in target/fuzz-seeds/TARGET (rebuilt each run, read-only for libFuzzer).
seeds=$root/target/fuzz-seeds
rm -rf "$seeds"
mkdir -p "$seeds"
for t in "${targets[@]}"; do mkdir -p "$seeds/$t"; done
for d in bgp/tests/data/*/; do
  name=$(basename "$d")
  stream=""
  for f in "$d"*.hex; do
    hex=$(tr -d ' \n' <"$f")
    base=$name-$(basename "$f" .hex)
    stream+=$hex
    # bgp_message and bgp_update: one mode octet (4-octet AS, eBGP/iBGP, max length).
    [ -d "$seeds/bgp_message" ] && unhex "05$hex" "$seeds/bgp_message/$base"
    [ -d "$seeds/bgp_message" ] && unhex "02$hex" "$seeds/bgp_message/$base-2oct"
    case $f in
      *-open.hex)
        [ -d "$seeds/bgp_open" ] && unhex "${hex:38}" "$seeds/bgp_open/$base" ;;
      *-update.hex)
        [ -d "$seeds/bgp_update" ] && unhex "01${hex:38}" "$seeds/bgp_update/$base"
        [ -d "$seeds/bgp_update" ] && unhex "03${hex:38}" "$seeds/bgp_update/$base-ibgp" ;;
    esac
  done
  if [ -d "$seeds/bgp_session" ]; then
    # Mode 0: the captured stream from its OPEN; mode 6: after vipr's own handshake.
    unhex "00$stream" "$seeds/bgp_session/$name"
    first=$((16#${stream:32:4}))
    unhex "06${stream:$((first * 2))}" "$seeds/bgp_session/$name-est"
  fi
done
if [ -d "$seeds/bgp_notification" ]; then
  unhex "0602" "$seeds/bgp_notification/cease-2"
  unhex "06020b766970722073746f70" "$seeds/bgp_notification/cease-2-msg"
  unhex "030a" "$seeds/bgp_notification/update-10"
fi
if [ -d "$seeds/bfd_packet" ]; then
  # Length-prefixed datagrams: Down, Init, Up from a peer (discriminator 1).
  unhex "18 20c00318 00000001 00000000 000f4240 000f4240 00000000" "$seeds/bfd_packet/down"
  unhex "18 20c00318 00000001 00000000 000f4240 000f4240 00000000 18 20c00318 00000001 12345678 000493e0 000493e0 00000000 18 20c00318 00000001 12345678 000493e0 000493e0 00000000" "$seeds/bfd_packet/up"
fi
[ -d "$seeds/equinix_metadata" ] && cp providers/tests/data/*.json "$seeds/equinix_metadata/"
if [ -d "$seeds/node_annotations" ]; then
  printf 'node-asn=65000\npeer-asn=65530\npeer-ip=169.254.255.1,169.254.255.2\nsrc-ip=192.0.2.11\nbgp-pass=WnE4LW1kNS1ub3QtaW4tbG9ncw==\npeer-multi-hop=true\n' >"$seeds/node_annotations/plain"
  printf 'bgp-peers-0-node-asn=65000\nbgp-peers-0-peer-asn=65530\nbgp-peers-0-peer-ip=169.254.255.1\nbgp-peers-1-node-asn=65000\nbgp-peers-1-peer-asn=65530\nbgp-peers-1-peer-ip=2001:db8::1\n' >"$seeds/node_annotations/numbered"
fi
for t in bgp_peers config_file; do
  [ -d "$seeds/$t" ] && cp tests/fuzz/seeds/$t/* "$seeds/$t/"
done
if [ -d "$seeds/ipvs_reply" ]; then
  for f in tests/fuzz/seeds/ipvs_reply/*.hex; do unhex "$(cat "$f")" "$seeds/ipvs_reply/$(basename "$f" .hex)"; done
fi

# Run, FUZZ_JOBS at a time.
logs=$root/target/fuzz-logs
mkdir -p "$logs"
start=$logs/.start
touch "$start"
run() {
  local t=$1 corpus=$root/target/fuzz-corpus/$1 art=$root/target/fuzz-artifacts/$1/
  mkdir -p "$corpus" "$art"
  "$bin/$t" "$corpus" "$seeds/$t" -max_total_time="$secs" -print_final_stats=1 \
    -timeout=10 -rss_limit_mb=1024 -max_len=4200 -artifact_prefix="$art" \
    >"$logs/$t.log" 2>&1
}
pids=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 0.5; done
  echo "fuzz.sh: $t for ${secs}s"
  run "$t" &
  pids+=("$!")
done
status=()
for p in "${pids[@]}"; do
  if wait "$p"; then status+=(0); else status+=($?); fi
done

# Report.
fail=0
printf '\n%-18s %14s %8s %8s %s\n' target executions exec/s crashes corpus
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  log=$logs/$t.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  crashes=$(find "$root/target/fuzz-artifacts/$t" -type f -newer "$start" | wc -l)
  corpus=$(find "$root/target/fuzz-corpus/$t" -type f | wc -l)
  printf '%-18s %14s %8s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "$crashes" "$corpus"
  if [ "${status[$i]}" != 0 ] || [ "$crashes" != 0 ]; then
    fail=1
    echo "fuzz.sh: $t FAILED (exit ${status[$i]}); log $log:" >&2
    grep -v '^#' "$log" | tail -30 >&2
    find "$root/target/fuzz-artifacts/$t" -type f -newer "$start" >&2
  fi
done
exit $fail
