#!/usr/bin/env bash
# Runs the Autobahn test suite's fuzzing client against examples/autobahn_server.py and fails if any case
# FAILED. Usage: scripts/autobahn.sh [CASES]   (default: every case; see docs/conformance.md)
# Environment: AUTOBAHN_TOOLS (default ../shared/tools/autobahn), AUTOBAHN_PREFIX (default /opt/autobahn),
# AUTOBAHN_EXCLUDE (cases to skip), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${AUTOBAHN_TOOLS:-../shared/tools/autobahn}
prefix=${AUTOBAHN_PREFIX:-/opt/autobahn}
python=${PYTHON:-.venv/bin/python}
cases=${1:-*}
out=.autobahn

AUTOBAHN_PREFIX=$prefix bash "$tools/setup.sh" "$prefix"

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$python" examples/autobahn_server.py "$port" > "$out.server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

exclude=()
[ -n "${AUTOBAHN_EXCLUDE:-}" ] && exclude=(-x "$AUTOBAHN_EXCLUDE")
AUTOBAHN_PREFIX=$prefix bash "$tools/run.sh" "${exclude[@]}" "ws://127.0.0.1:$port" "$cases" "$out"
