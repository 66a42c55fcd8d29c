# shellcheck shell=bash
# retry ATTEMPTS COMMAND... — runs COMMAND until it succeeds, at most ATTEMPTS times, waiting
# 5, 10, 15… seconds between tries; returns COMMAND's last status. For network steps (apt, pip,
# debootstrap, docker build), so that a flaky mirror does not fail a run. Sourced, not executed.
retry() {
  local attempts="$1" attempt=1 status=0
  shift
  while true; do
    "$@" && return 0
    status=$?
    if [ "$attempt" -ge "$attempts" ]; then
      printf 'retry: %s failed %d times (last status %d)\n' "$1" "$attempt" "$status" >&2
      return "$status"
    fi
    printf 'retry: %s failed (status %d, attempt %d of %d); again in %ds\n' \
      "$1" "$status" "$attempt" "$attempts" $((attempt * 5)) >&2
    sleep $((attempt * 5))
    attempt=$((attempt + 1))
  done
}
