#!/usr/bin/env bash
# Runs the Autobahn fuzzing client (installed by setup.sh) against one echo server and reports.
# Usage: scripts/autobahn/run.sh URL CASES OUTDIR
#   URL      ws://HOST:PORT/PATH or wss://... of a server that echoes every message back
#   CASES    case ids or patterns, comma-separated: '*', '1.*,2.*', '9.1.1'
#   OUTDIR   gets fuzzingclient.json (the spec), wstest.log and reports/index.html
# Prints the count per behaviour and, last, `autobahn: N ok, ..., N failed`. Exits 1 if a case FAILED
# or did not run, 2 if it could not start.
# Environment: AUTOBAHN_PREFIX (default /opt/autobahn), AUTOBAHN_EXCLUDE (cases to leave out),
# PYTHON3 (runs the report, default python3).
set -euo pipefail

[ $# = 3 ] || {
  sed -n '2,10p' "$0" >&2
  exit 2
}
url=$1
cases=$2
out=$3
here=$(cd "$(dirname "$0")" && pwd)
prefix=${AUTOBAHN_PREFIX:-/opt/autobahn}
python3=${PYTHON3:-python3}
agent=hyperws

die() {
  echo "autobahn: ERROR: $*" >&2
  exit 2
}
[ -x "$prefix/bin/wstest" ] || die "no wstest in $prefix: run scripts/autobahn/setup.sh first"

hostport=${url#*://}
hostport=${hostport%%/*}
host=${hostport%:*}
port=${hostport##*:}
accepting() { (exec 3<> "/dev/tcp/$host/$port") 2> /dev/null; }
for _ in $(seq 50); do
  accepting && break
  sleep 0.2
done
accepting || die "nothing accepts connections on $host:$port"

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/reports"
"$prefix/bin/python2.7" "$here/spec.py" "$url" "$cases" "${AUTOBAHN_EXCLUDE:-}" "$agent" "$out/reports" "$out" \
  || exit 2
echo "autobahn: $(wc -l < "$out/cases.txt") cases against $url; log $out/wstest.log"

# wstest runs in $out so that nothing it writes lands elsewhere; a progress line every 30 s keeps CI's
# log alive during the long compression cases.
started=$(date +%s)
(cd "$out" && exec "$prefix/bin/wstest" -m fuzzingclient -s fuzzingclient.json) > "$out/wstest.log" 2>&1 &
wstest=$!
trap 'kill "$wstest" 2> /dev/null || true' EXIT
next_progress=30
while kill -0 "$wstest" 2> /dev/null; do
  sleep 1
  elapsed=$(($(date +%s) - started))
  if [ "$elapsed" -ge "$next_progress" ]; then
    next_progress=$((elapsed + 30))
    echo "autobahn: ... ${elapsed} s, $(grep -c '^Running test case ID' "$out/wstest.log" || true) cases started"
  fi
done
status=0
wait "$wstest" || status=$?
if [ "$status" != 0 ]; then
  echo "autobahn: wstest exited with status $status; the end of its log:"
  tail -n 15 "$out/wstest.log" | sed 's/^/  /'
fi
trap - EXIT
grep -h '^Connection to .* failed' "$out/wstest.log" | head -n 3 || true
echo "autobahn: wstest ran for $(($(date +%s) - started)) s"
"$python3" "$here/report.py" "$out" "$agent"
