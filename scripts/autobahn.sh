#!/usr/bin/env bash
# Runs the Autobahn test suite's fuzzing client against examples/autobahn_server.py and fails if any case
# FAILED. Four passes: every case against /dedicated (permessage-deflate with a context per connection),
# the compression cases (12.*, 13.*) against /shared (each message compressed on its own), the cases
# without compression (1.* to 11.*) against /plain (compression not offered), and 1.* to 7.* over wss://
# against /plain (TLS with a throwaway certificate made here). The passes run at the same time, each
# prefixing its lines with its name: the fuzzing client (Python 2) is what takes the time, at about two
# thirds of a core, so two compression passes side by side take about as long as one.
# Usage: scripts/autobahn.sh [CASES]   (CASES narrows the first pass; the others run only without it)
# Environment: AUTOBAHN_PREFIX (where scripts/autobahn/setup.sh installs wstest, default /opt/autobahn),
# AUTOBAHN_EXCLUDE (cases to skip), PYTHON (default .venv/bin/python, with hyperws and trustme).
set -euo pipefail
cd "$(dirname "$0")/.."

export AUTOBAHN_PREFIX=${AUTOBAHN_PREFIX:-/opt/autobahn}
python=${PYTHON:-.venv/bin/python}
export PYTHON3=$python
out=.autobahn
mkdir -p "$out"

scripts/autobahn/setup.sh

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
servers=()
trap 'kill "${servers[@]}" 2> /dev/null || true' EXIT
port=$(free_port)
"$python" examples/autobahn_server.py "$port" > "$out/server.log" 2>&1 &
servers+=($!)

passes=()
start_pass() {  # SCHEME PORT PATH CASES: runs in the background, its lines prefixed with its name
  local name=$1-$3 report=$out/$3
  [ "$1" = ws ] || report=$out/$1-$3
  echo "== Autobahn: $4 against $1://127.0.0.1:$2/$3"
  # A subshell, so that waiting for it gives run.sh's status (pipefail), not sed's.
  (scripts/autobahn/run.sh "$1://127.0.0.1:$2/$3" "$4" "$report" 2>&1 | sed -u "s/^/[$name] /") &
  passes+=($!)
}

start_pass ws "$port" dedicated "${1:-*}"
if [ -z "${1:-}" ]; then
  start_pass ws "$port" shared '12.*,13.*'
  start_pass ws "$port" plain '1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*,11.*'

  # wstest does not check the server's certificate; the CA is written for trying by hand.
  mkdir -p "$out/tls"
  "$python" - "$out/tls" << 'PY'
import sys
import trustme

ca = trustme.CA()
ca.cert_pem.write_to_path(f"{sys.argv[1]}/ca.pem")
cert = ca.issue_cert("127.0.0.1", "localhost")
cert.cert_chain_pems[0].write_to_path(f"{sys.argv[1]}/cert.pem")
cert.private_key_pem.write_to_path(f"{sys.argv[1]}/key.pem")
PY
  tls_port=$(free_port)
  "$python" examples/autobahn_server.py "$tls_port" "$out/tls/cert.pem" "$out/tls/key.pem" > "$out/tls-server.log" 2>&1 &
  servers+=($!)
  start_pass wss "$tls_port" plain '1.*,2.*,3.*,4.*,5.*,6.*,7.*'
fi
status=0
for pass in "${passes[@]}"; do
  wait "$pass" || status=1
done
exit $status
