#!/usr/bin/env bash
# Runs the Autobahn test suite's fuzzing client against examples/autobahn_server.py and fails if any case
# FAILED. Three passes: every case against /dedicated (permessage-deflate with a context per connection),
# the compression cases (12.*, 13.*) against /shared (each message compressed on its own), and the
# cases without compression (1.* to 11.*) against /plain (compression not offered).
# Usage: scripts/autobahn.sh [CASES]   (CASES narrows the first pass; the other two run only without it)
# Environment: AUTOBAHN_TOOLS (default ../shared/tools/autobahn), AUTOBAHN_PREFIX (default /opt/autobahn),
# AUTOBAHN_EXCLUDE (cases to skip), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${AUTOBAHN_TOOLS:-../shared/tools/autobahn}
prefix=${AUTOBAHN_PREFIX:-/opt/autobahn}
python=${PYTHON:-.venv/bin/python}
out=.autobahn

AUTOBAHN_PREFIX=$prefix bash "$tools/setup.sh" "$prefix"

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$python" examples/autobahn_server.py "$port" > "$out.server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

exclude=()
[ -n "${AUTOBAHN_EXCLUDE:-}" ] && exclude=(-x "$AUTOBAHN_EXCLUDE")
run() {  # PATH CASES OUTDIR
  echo "== Autobahn: $2 against /$1"
  AUTOBAHN_PREFIX=$prefix bash "$tools/run.sh" "${exclude[@]}" "ws://127.0.0.1:$port/$1" "$2" "$3"
}

status=0
run dedicated "${1:-*}" "$out/dedicated" || status=1
if [ -z "${1:-}" ]; then
  run shared '12.*,13.*' "$out/shared" || status=1
  run plain '1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*,11.*' "$out/plain" || status=1
fi
exit $status
