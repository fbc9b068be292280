# wait_for SECONDS WHAT COMMAND...: runs COMMAND (quietly) every 0.1 s until it succeeds;
# after SECONDS, says what it waited for and fails. Sourced by labs/run.sh and
# labs/k8s/cluster.sh.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then echo "${0##*/}: timed out waiting for $what" >&2; return 1; fi
    sleep 0.1
  done
}
