#!/usr/bin/env bash
# Runs one load scenario against the local stack and writes its results (markdown + JSON) under
# bench/results/, with the machine, the commit and the exact commands.
#
#   bench/run-scenario.sh SCENARIO [extra padlock-loadgen flags...]
#
# Scenarios (DESIGN.md §8; docs/PERFORMANCE.md has the latest figures):
#   chat-1k      1 000 devices, each keeping 1 envelope in flight to a random other device
#   chat-100     the same with 100 devices (a smaller closed loop)
#   chat-10k     10 000 devices, window 1
#   open-10k     1 000 devices, 10 000 envelopes/s offered (latency target)
#   open-1k      1 000 devices, 1 000 envelopes/s offered (latency below saturation)
#   group-256    one sender, one shared payload to 256 devices per send, 4 sends in flight
#   backlog      100 000 envelopes queued to an offline device, then its drain
#   idle-conns   15 000 authenticated idle streams; gateway RSS per connection
#   sparse-10k   10 000 connected devices idle for 20 s (the stack's CPU to keep them alive), then
#                1 000 envelopes/s offered in total (each device sends every 10 s)
#   claims       bundle claims through the gateway: 16 claimers, 2 000 devices with 50 one-time
#                prekeys each (every claim must return a bundle whose signed prekey verifies)
#   smoke        20 devices for 3 s (checks the pipeline end to end)
#
# What it does: starts the local stack with `scripts/padlock up` (which builds) and the gateway's
# test/benchmark limits profile (PADLOCK_RATE_LIMIT_PROFILE=test, docs/GATEWAY.md), runs
# padlock-loadgen RUNS times, writes bench/results/<UTC time>-<scenario>.{md,json} (the JSON holds
# every run; the markdown the per-run table and the medians), and stops the stack again if it
# started it.
#
# Environment: RUNS (default 3), PADLOCK_BUILD_DIR (default ./build; its source tree's commit is
# the one reported), VARIANT (an A/B label for the result's name), KEEP_STACK=1 (leave the
# stack running), RESULTS_DIR (default bench/results), TLS=1 (the scenario over TLS: see below),
# TRANSPORT=h2|grpc (the generator's device-stream transport, --transport; in the result's name
# when set; default h2, and grpc under TLS=1 since h2 is plaintext only), and whatever
# scripts/padlock reads.
#
# TLS=1: the local stack serves plaintext, so the script starts a second gateway on 127.0.0.1:7401
# (metrics 9401) with PADLOCK_TLS=on, a self-signed ECDSA P-256 certificate for
# "padlock-gateway" (made once under $PADLOCK_STATE_DIR/tls) and otherwise the running gateway's
# environment, sharing the stack's internal services; the generator connects to it over TLS and
# measures it as "gateway". Results are named <scenario>-tls. The TLS gateway is stopped at the end.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${PADLOCK_BUILD_DIR:-$REPO/build}"
STATE_DIR="${PADLOCK_STATE_DIR:-$REPO/.padlock}"
REDIS_PORT="${PADLOCK_LOCAL_REDIS_PORT:-7379}"
RUNS="${RUNS:-3}"
RESULTS_DIR="${RESULTS_DIR:-$REPO/bench/results}"
LOADGEN="$BUILD_DIR/bench/loadgen/padlock-loadgen"
HEALTHCHECK="$BUILD_DIR/tools/healthcheck/padlock-healthcheck"

log() { printf '[run-scenario] %s\n' "$*" >&2; }
die() { printf '[run-scenario] error: %s\n' "$*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: bench/run-scenario.sh SCENARIO [padlock-loadgen flags...]"
SCENARIO="$1"; shift

case "$SCENARIO" in
  chat-1k)    FLAGS=(--scenario=chat --devices=1000 --window=1 --warmup=5 --duration=15) ;;
  chat-100)   FLAGS=(--scenario=chat --devices=100 --window=1 --warmup=5 --duration=15) ;;
  chat-10k)   FLAGS=(--scenario=chat --devices=10000 --window=1 --warmup=10 --duration=20) ;;
  open-10k)   FLAGS=(--scenario=open --devices=1000 --rate=10000 --warmup=5 --duration=15) ;;
  open-1k)    FLAGS=(--scenario=open --devices=1000 --rate=1000 --warmup=5 --duration=15) ;;
  group-256)  FLAGS=(--scenario=group --devices=257 --window=4 --warmup=5 --duration=15) ;;
  backlog)    FLAGS=(--scenario=backlog --backlog=100000 --window=64) ;;
  idle-conns) FLAGS=(--scenario=idle-conns --devices=15000 --idle-hold=10) ;;
  # 2 000 targets keep every device under the key-directory's default claim limits (60 per target
  # and 120 per requester in a burst) and its 50 one-time prekeys for ~13 s at 5 000 claims/s.
  claims)     FLAGS=(--scenario=claims --devices=2000 --window=16 --prekeys=50 --warmup=3
                     --duration=10) ;;
  sparse-10k) FLAGS=(--scenario=sparse --devices=10000 --rate=1000 --idle-hold=20 --warmup=5
                     --duration=20) ;;
  smoke)      FLAGS=(--scenario=chat --devices=20 --window=1 --warmup=1 --duration=3) ;;
  *) die "unknown scenario '$SCENARIO' (chat-1k chat-100 chat-10k open-10k open-1k sparse-10k group-256 backlog idle-conns claims smoke)" ;;
esac
FLAGS+=("$@")
TRANSPORT="${TRANSPORT:-}"
case "$TRANSPORT" in
  "") ;;
  h2|grpc) FLAGS+=("--transport=$TRANSPORT") ;;
  *) die "TRANSPORT: h2 or grpc, not '$TRANSPORT'" ;;
esac
if [ "${TLS:-0}" = 1 ] && [ "$TRANSPORT" = h2 ]; then
  die "TLS=1 needs TRANSPORT=grpc (the h2 transport is plaintext only)"
fi

# Every gateway stream is a descriptor: let the stack (and the generator) use the hard limit.
ulimit -n "$(ulimit -Hn)"

# ----- the stack -----
started_stack=0
stop_stack() {
  if [ "$started_stack" = 1 ] && [ "${KEEP_STACK:-0}" != 1 ]; then
    PADLOCK_BUILD_DIR="$BUILD_DIR" "$REPO/scripts/padlock" down >&2 || true
  fi
}
trap stop_stack EXIT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A gateway that listens but is briefly not SERVING (its readiness checks time out while the
# machine is still busy after a big run) is the running stack: wait for it rather than calling
# `scripts/padlock up` and then stopping, at the end, a stack this script did not start.
if port_open 7400; then
  for _ in $(seq 120); do
    "$HEALTHCHECK" --addr=127.0.0.1:7400 >/dev/null 2>&1 && break
    sleep 0.5
  done
  "$HEALTHCHECK" --addr=127.0.0.1:7400 >/dev/null \
    || die "a gateway listens on 127.0.0.1:7400 but has not been SERVING for 60 s"
  log "a gateway already answers on 127.0.0.1:7400: using the running stack"
else
  log "starting the local stack (scripts/padlock up; builds $BUILD_DIR)"
  # Set first: a stack whose `up` failed half-way (its demo, say) is stopped on exit too, never
  # left running for the next run to mistake for its own.
  started_stack=1
  PADLOCK_RATE_LIMIT_PROFILE=test PADLOCK_BUILD_DIR="$BUILD_DIR" "$REPO/scripts/padlock" up >&2
fi
# The gateway must run with the test/benchmark limits profile, or registrations and sends are
# refused. Its environment says whether it does; if not (a scripts/padlock that does not pass the
# variable through), restart it with its own environment plus the profile.
gateway_pid="$(cat "$STATE_DIR/run/gateway.pid" 2>/dev/null || true)"
if [ -z "$gateway_pid" ] || ! kill -0 "$gateway_pid" 2>/dev/null; then
  log "no gateway pid in $STATE_DIR/run/gateway.pid: cannot check its limits profile"
elif ! tr '\0' '\n' <"/proc/$gateway_pid/environ" | grep -qx 'PADLOCK_RATE_LIMIT_PROFILE=test'; then
  log "restarting the gateway (pid $gateway_pid) with PADLOCK_RATE_LIMIT_PROFILE=test"
  mapfile -t gateway_env < <(tr '\0' '\n' <"/proc/$gateway_pid/environ" \
    | grep -v '^PADLOCK_RATE_LIMIT_PROFILE=\|^PADLOCK_MAX_CONNECTIONS_PER_ADDRESS=')
  kill -TERM "$gateway_pid"
  for _ in $(seq 300); do kill -0 "$gateway_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$gateway_pid" 2>/dev/null && die "gateway $gateway_pid did not stop"
  env -i "${gateway_env[@]}" PADLOCK_RATE_LIMIT_PROFILE=test PADLOCK_MAX_CONNECTIONS_PER_ADDRESS=0 \
    setsid "$BUILD_DIR/services/gateway/padlock-gateway" >>"$STATE_DIR/logs/gateway.log" 2>&1 \
    </dev/null &
  echo $! >"$STATE_DIR/run/gateway.pid"
  for _ in $(seq 300); do
    "$HEALTHCHECK" --addr=127.0.0.1:7400 >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$HEALTHCHECK" --addr=127.0.0.1:7400 >/dev/null || die "the gateway did not come back"
fi

# ----- TLS=1: a second gateway serving TLS on 7401 -----
tls_gateway_pid=""
stop_tls_gateway() {
  if [ -n "$tls_gateway_pid" ]; then
    kill -TERM "$tls_gateway_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$tls_gateway_pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
trap 'stop_tls_gateway; stop_stack' EXIT
if [ "${TLS:-0}" = 1 ]; then
  tls_dir="$STATE_DIR/tls"
  mkdir -p "$tls_dir"
  if [ ! -s "$tls_dir/cert.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
      -subj /CN=padlock-gateway -addext subjectAltName=DNS:padlock-gateway \
      -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" 2>/dev/null \
      || die "openssl could not make the test certificate"
  fi
  port_open 7401 && die "something already listens on 127.0.0.1:7401 (a TLS gateway left over?)"
  gateway_pid="$(cat "$STATE_DIR/run/gateway.pid" 2>/dev/null || true)"
  [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null \
    || die "TLS=1 needs the running gateway's environment ($STATE_DIR/run/gateway.pid)"
  mapfile -t tls_env < <(tr '\0' '\n' <"/proc/$gateway_pid/environ" \
    | grep -v -E '^PADLOCK_(TLS|TLS_CERT|TLS_KEY|GRPC_PORT|METRICS_PORT|GATEWAY_ID)=')
  env -i "${tls_env[@]}" PADLOCK_TLS=on PADLOCK_TLS_CERT="$tls_dir/cert.pem" \
    PADLOCK_TLS_KEY="$tls_dir/key.pem" PADLOCK_GRPC_PORT=7401 PADLOCK_METRICS_PORT=9401 \
    PADLOCK_GATEWAY_ID=local-gateway-tls \
    setsid "$BUILD_DIR/services/gateway/padlock-gateway" >>"$STATE_DIR/logs/gateway-tls.log" 2>&1 \
    </dev/null &
  tls_gateway_pid=$!
  for _ in $(seq 300); do port_open 7401 && break; sleep 0.1; done
  port_open 7401 || die "the TLS gateway did not start (see $STATE_DIR/logs/gateway-tls.log)"
  log "TLS gateway (pid $tls_gateway_pid) on 127.0.0.1:7401"
  # The generator's h2 transport is plaintext only: TLS streams go through the gRPC client.
  FLAGS+=(--transport=grpc)
  FLAGS+=(--target=127.0.0.1:7401 "--tls-ca=$tls_dir/cert.pem" --tls-server-name=padlock-gateway
          "--watch=gateway:7401,presence:7410,message-queue:7420,key-directory:7430,redis:7379:tree,\
postgres:7432:tree")
  SCENARIO="$SCENARIO-tls"
fi

[ -x "$LOADGEN" ] || cmake --build "$BUILD_DIR" --target padlock-loadgen -j 2 >&2
[ -x "$LOADGEN" ] || die "$LOADGEN not built"

# ----- the runs -----
mkdir -p "$RESULTS_DIR"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
base="$RESULTS_DIR/$stamp-$SCENARIO"
# The services' commit: that of the source tree BUILD_DIR was configured from (an A/B run may
# point BUILD_DIR at another worktree's build), else this repository's.
src_dir="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)"
[ -d "$src_dir" ] || src_dir="$REPO"
commit="$(git -C "$src_dir" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$src_dir" status --porcelain 2>/dev/null | grep -v '^??' || true)" ]; then
  commit="$commit (+ uncommitted changes)"
fi
if [ -n "$TRANSPORT" ]; then base="$base-$TRANSPORT"; fi
# VARIANT=name: an A/B label, in the result's name and its header.
if [ -n "${VARIANT:-}" ]; then base="$base-$VARIANT"; commit="$commit, variant $VARIANT"; fi
machine="$(nproc) × $(lscpu | sed -n 's/^Model name: *//p' | head -1), \
$(free -g | awk '/^Mem:/{print $2}') GiB RAM, $(uname -sr)"
build_type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)"

status=0
loads=()
# Redis's AOF rewrites and growth over the runs (the local stack's Redis persists with an AOF).
aof_info() {
  redis-cli -p "$REDIS_PORT" INFO persistence 2>/dev/null | tr -d '\r' \
    | awk -F: '$1=="aof_rewrites"{r=$2} $1=="aof_current_size"{s=$2} END{print (r==""?0:r), (s==""?0:s)}'
}
read -r aof_rewrites_before aof_size_before < <(aof_info)
for run in $(seq "$RUNS"); do
  log "run $run/$RUNS: padlock-loadgen ${FLAGS[*]}"
  loads+=("$(cut -d' ' -f1-3 /proc/loadavg)")
  set +e
  "$LOADGEN" "${FLAGS[@]}" --json="$base.run$run.json" | tee "$base.run$run.txt"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -eq 2 ]; then die "run $run failed to set up (see above)"; fi
  if [ "$rc" -ne 0 ]; then log "run $run was not clean (losses, duplicates or refusals)"; status=1; fi
done

# ----- the report -----
python3 - "$base" "$RUNS" "$SCENARIO" "$commit" "$machine" "$build_type" \
  "$([ "${TLS:-0}" = 1 ] && echo 'TLS=1 ')$([ -n "$TRANSPORT" ] && echo "TRANSPORT=$TRANSPORT ")\
bench/run-scenario.sh ${SCENARIO%-tls} $*" "${loads[*]}" <<'EOF'
import json, statistics, sys
base, runs, scenario, commit, machine, build_type, command, loads = sys.argv[1:9]
reports = [json.load(open(f"{base}.run{i}.json")) for i in range(1, int(runs) + 1)]

def med(key, sub=None):
    values = [(r[key][sub] if sub else r[key]) for r in reports]
    return statistics.median(values)

names = [p["name"] for p in reports[0]["processes"]]
def proc_med(name, field):
    values = [p[field] for r in reports for p in r["processes"] if p["name"] == name]
    return statistics.median(values) if values else float("nan")

lines = [f"# {scenario}", "",
         f"- machine: {machine}", f"- commit: {commit}, build type {build_type or '?'}",
         f"- command: `{command}`",
         f"- loadgen: `{reports[0]['command']}`", f"- runs: {runs} (medians below)",
         f"- load average (1/5/15 min) before each run: {loads}", ""]
idle = scenario.startswith("idle")
unit = "claims" if scenario.startswith("claims") else "envelopes"
if idle:
    lines += ["| run | streams | gateway RSS before KiB | after KiB | KiB per connection |",
              "| --- | --- | --- | --- | --- |"]
    for i, r in enumerate(reports, 1):
        lines.append(f"| {i} | {r['devices']} | {r['gateway_rss_before_kib']} | "
                     f"{r['gateway_rss_after_kib']} | {r['gateway_kib_per_connection']:.1f} |")
    lines.append(f"| median | | | | **{med('gateway_kib_per_connection'):.1f}** |")
else:
    lines += ["| run | delivered/s | p50 ms | p90 ms | p99 ms | p99.9 ms | losses | dups | "
              "refused | services µs/env | loadgen CPU % |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(reports, 1):
        l = r["latency_ms"]
        lines.append(f"| {i} | {r['delivered_per_second']:.0f} | {l['p50']:.2f} | {l['p90']:.2f} | "
                     f"{l['p99']:.2f} | {l['p999']:.2f} | {r['losses']} | {r['duplicates']} | "
                     f"{r['refused'] + r['mismatched']} | {r['services_cpu_us_per_envelope']:.1f} | "
                     f"{r['generator']['cpu_percent']:.0f} |")
    lines.append(f"| **median** | **{med('delivered_per_second'):.0f}** | "
                 f"{med('latency_ms', 'p50'):.2f} | {med('latency_ms', 'p90'):.2f} | "
                 f"{med('latency_ms', 'p99'):.2f} | {med('latency_ms', 'p999'):.2f} | | | | "
                 f"{med('services_cpu_us_per_envelope'):.1f} | |")
    if scenario.startswith("sparse"):
        lines += ["", f"Idle phase (every stream connected, nothing sent; median of "
                      f"{len(reports)}): the stack used **{med('idle_stack_cpu_percent'):.2f} %** "
                      f"of one core over {med('idle_seconds'):.1f} s ("
                      + ", ".join(f"{p['name']} {statistics.median(q['cpu_percent'] for r in reports for q in r['idle_processes'] if q['name'] == p['name']):.2f} %"
                                  for p in reports[0]["idle_processes"]) + ")."]
    if scenario == "backlog":
        lines += ["", f"Backlog drain (median): {med('backlog_drain_per_second'):.0f} envelopes/s "
                      f"({med('backlog_drain_seconds'):.2f} s for {reports[0]['backlog_messages']})."]
if unit == "claims":
    lines += ["", "delivered/s here is claims answered per second (each with a verified bundle); "
                  "µs/env is µs per claim."]
lines += ["", "Per process (medians): CPU in the measured window, per delivered envelope, peak RSS.", "",
          "| process | CPU % of a core | µs per envelope | peak RSS MiB |", "| --- | --- | --- | --- |"]
for n in names:
    lines.append(f"| {n} | {proc_med(n, 'cpu_percent'):.0f} | {proc_med(n, 'cpu_us_per_envelope'):.1f} | "
                 f"{proc_med(n, 'peak_rss_kib') / 1024:.0f} |")
g = [r["generator"] for r in reports]
lines.append(f"| padlock-loadgen | {statistics.median(x['cpu_percent'] for x in g):.0f} | "
             f"{statistics.median(x['cpu_us_per_envelope'] for x in g):.1f} | "
             f"{statistics.median(x['peak_rss_kib'] for x in g) / 1024:.0f} |")
notes = sorted({n for r in reports for n in r["notes"]} |
               {r["first_failure"] for r in reports if r["first_failure"]})
if notes:
    lines += ["", "Notes:"] + [f"- {n}" for n in notes]
open(f"{base}.md", "w").write("\n".join(lines) + "\n")
json.dump({"scenario": scenario, "commit": commit, "machine": machine, "build_type": build_type,
           "command": command, "runs": reports}, open(f"{base}.json", "w"), indent=2)
print("\n".join(lines))
EOF
read -r aof_rewrites_after aof_size_after < <(aof_info)
printf '\nRedis AOF over the %s run(s): %s rewrite(s); current size %s → %s bytes.\n' "$RUNS" \
  "$((aof_rewrites_after - aof_rewrites_before))" "$aof_size_before" "$aof_size_after" \
  | tee -a "$base.md"
rm -f "$base".run*.json "$base".run*.txt
log "results: $base.md and $base.json"
exit "$status"
