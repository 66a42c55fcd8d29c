#!/usr/bin/env bash
# The gateway's syscalls and context switches per delivered envelope, in the middle of a chat-1k
# run against the running local stack (docs/PERFORMANCE.md, "Where the gateway's 105 µs go").
#
#   bench/gateway-syscalls.sh [LABEL]
#
# Starts padlock-loadgen (chat, 1 000 devices, W = 1, 5 s warm-up, 20 s measured) in the
# background, waits until it is well into the measured window, counts the gateway's context
# switches, sendmsg, recvmsg and futex calls and its CPU time with `perf stat` for 5 s, and divides
# each by the change of padlock_gateway_envelopes_out_total over the same 5 s. Needs perf
# (linux-perf), curl, and a stack from `scripts/padlock up` with PADLOCK_RATE_LIMIT_PROFILE=test.
# Environment: PADLOCK_BUILD_DIR (default ./build), PADLOCK_STATE_DIR (default ./.padlock),
# LOADGEN_ARGS (more padlock-loadgen flags, e.g. --stream-revision=1 to compare revisions).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${PADLOCK_BUILD_DIR:-$REPO/build}"
STATE_DIR="${PADLOCK_STATE_DIR:-$REPO/.padlock}"
label="${1:-gateway}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
ulimit -n "$(ulimit -Hn)"

envelopes_out() {
  curl -fsS http://127.0.0.1:9400/metrics | awk '/^padlock_gateway_envelopes_out_total/ {print $2}'
}

gateway_pid="$(cat "$STATE_DIR/run/gateway.pid")"
"$BUILD_DIR/bench/loadgen/padlock-loadgen" --scenario=chat --devices=1000 --window=1 \
  --warmup=5 --duration=20 ${LOADGEN_ARGS:-} >"$out/loadgen.txt" 2>&1 &
loadgen=$!
# Set-up (register, log in, connect 1 000 devices) takes a few seconds; then 5 s of warm-up.
for _ in $(seq 1200); do
  grep -q "warm-up" "$out/loadgen.txt" 2>/dev/null && break
  kill -0 "$loadgen" 2>/dev/null || break
  sleep 0.1
done
sleep 10  # the 5 s warm-up and 5 s into the measured window
before="$(envelopes_out)"
perf stat -x, -e context-switches,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmsg \
  -e syscalls:sys_enter_futex,task-clock -p "$gateway_pid" -- sleep 5 2>"$out/perf.csv"
after="$(envelopes_out)"
wait "$loadgen" || { cat "$out/loadgen.txt" >&2; exit 1; }
python3 - "$label" "$before" "$after" "$out/perf.csv" <<'PY'
import sys
label, before, after, path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
n = after - before
print(f"{label}: {int(n)} envelopes out in 5 s")
for line in open(path):
    f = line.strip().split(",")
    if len(f) > 2 and f[0] and f[0][0].isdigit():
        unit = "ms" if f[2] == "task-clock" else ""
        print(f"{label}: {f[2]} per envelope: {float(f[0]) / n:.3f}{unit}")
PY
