#!/usr/bin/env bash
# Profiles hyperws on the echo32 workload: the bench server pinned to CPU 0, the load generator to CPU 1, and
# `perf record` (and `perf stat`) attached to the server for the middle of the run. Writes, under
# benches/results/profile-<date>/: perf.data, report.txt (`perf report --no-children --sort dso,symbol`),
# areas.txt (the same samples grouped by area of the echo path, by benches/profile_areas.py), stat.txt and
# loadgen.json.
#
# Needs perf (linux-perf) and the peers from benches/setup_peers.sh. Environment: SECONDS_RECORDED (default 5),
# CALL_GRAPH (default empty: flat profile; e.g. "dwarf" for call chains, much heavier), PYTHON (the venv's),
# CONNS and INFLIGHT (default 64 and 16; CONNS=100 INFLIGHT=1 profiles request-reply, the rr100 workload),
# APP (default hyperws: the bench server profiled; picows, socketify, websockets or bun profile a peer's, for
# the same breakdown side by side).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-$BENCH_DIR/.peers/venv/bin/python}"
LOADGEN="$BENCH_DIR/loadgen/target/release/loadgen"
REC="${SECONDS_RECORDED:-5}"
OUT="$BENCH_DIR/results/profile-$(date +%Y-%m-%d_%H%M%S)"
mkdir -p "$OUT"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

# perf needs access to the server's samples and kernel symbols
if [ "$(cat /proc/sys/kernel/perf_event_paranoid)" -gt -1 ]; then
    sysctl -q kernel.perf_event_paranoid=-1 2>/dev/null || echo "note: could not lower kernel.perf_event_paranoid"
fi
sysctl -q kernel.kptr_restrict=0 2>/dev/null || true

cd "$BENCH_DIR/servers"
APP="${APP:-hyperws}"
if [ "$APP" = bun ]; then
    SERVE=("$BENCH_DIR/.peers/node/node_modules/.bin/bun" bun_server.js)
else
    SERVE=("$PY" "${APP}_server.py")
fi
taskset -c 0 "${SERVE[@]}" --port "$PORT" >"$OUT/server.out" 2>"$OUT/server.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q READY "$OUT/server.out" 2>/dev/null && break; sleep 0.1; done

# warm-up 2 s, then REC + 2 s measured; perf covers REC seconds in the middle
taskset -c 1 "$LOADGEN" echo --url "ws://127.0.0.1:$PORT/echo" --conns "${CONNS:-64}" --inflight "${INFLIGHT:-16}" --size 32 \
    --duration "$((REC + 2))" --warmup 2 >"$OUT/loadgen.json" &
GEN=$!
sleep 3
# hyperws's bench server prints its stats (the hand-over's batching) on SIGUSR1
if [ "$APP" = hyperws ]; then kill -USR1 "$SERVER"; fi
perf stat -e task-clock,context-switches,cpu-migrations,page-faults \
    -e 'syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_futex' \
    -p "$SERVER" -o "$OUT/stat.txt" -- sleep 1 &
perf record -F 2999 ${CALL_GRAPH:+--call-graph "$CALL_GRAPH"} -p "$SERVER" -o "$OUT/perf.data" -- sleep "$REC" 2>"$OUT/record.log"
if [ "$APP" = hyperws ]; then kill -USR1 "$SERVER"; fi
wait "$GEN" || true
sleep 0.2
perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null >"$OUT/report.txt"
"$PY" "$BENCH_DIR/profile_areas.py" "$OUT/report.txt" "$OUT/loadgen.json" "$OUT/server.err" "$OUT/stat.txt" | tee "$OUT/areas.txt"
echo "written: $OUT"
