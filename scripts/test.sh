#!/usr/bin/env bash
# Runs every test: the Rust unit tests, the Python suite against a freshly built wheel, and the Autobahn
# conformance suite. Installs what it needs (a venv in .venv, the wheel, the test packages, Autobahn).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
echo "== building and installing hyperws (release wheel) with its test dependencies"
.venv/bin/python -m pip install -q ".[test]"

echo "== Rust unit tests"
cargo test --quiet

echo "== brokers for the scale-out tests"
scripts/brokers.sh

echo "== Python tests"
# Run from tests/ so the installed wheel is imported, not the source tree.
.venv/bin/python -m pytest -q tests

echo "== Autobahn conformance"
scripts/autobahn.sh
