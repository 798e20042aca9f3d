#!/usr/bin/env bash
# Runs every test: the linters, the Rust unit tests, a short pass of every fuzz target, the Python suite
# (with real Redis, NATS and Chromium) against a freshly built wheel on every supported CPython (3.10 to
# 3.13; the others than the main one by scripts/test-pythons.sh), the documentation build, and the
# Autobahn conformance suite. Installs what it needs (a venv per Python, the wheel, the test packages,
# cargo-fuzz, Chromium from Debian's packages, Autobahn) and starts the brokers when they are down.
# Environment: PYTHON (the main interpreter, default python3), OTHER_PYTHONS (default
# "3.10 3.11 3.12 3.13" less the main one's version).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q maturin ruff mypy

echo "== linters"
cargo fmt --check
cargo clippy --release --quiet --all-targets -- -D warnings
.venv/bin/ruff check python tests benches examples
.venv/bin/ruff format --check python tests benches examples

echo "== building the wheel"
rm -rf target/wheels
.venv/bin/maturin build --release --quiet --out target/wheels
wheel=$(ls target/wheels/hyperws-*.whl)
.venv/bin/python -m pip install -q --force-reinstall --no-deps "$wheel"
.venv/bin/python -m pip install -q "$wheel[test]" uvloop
.venv/bin/mypy
# Typed user code: the examples and a file that uses the whole public API.
.venv/bin/mypy --strict examples tests/typed_api.py

echo "== Rust unit tests"
cargo test --release --quiet

echo "== fuzzing (10 s a target from a fixed seed; scripts/fuzz.sh 60 for a real run)"
FUZZ_SEED=1 scripts/fuzz.sh 10

echo "== Chromium for the browser tests"
scripts/browser.sh

echo "== brokers for the scale-out tests"
scripts/brokers.sh

main_version=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
echo "== Python tests on $main_version"
# Run from tests/ so the installed wheel is imported, not the source tree.
(cd tests && ../.venv/bin/python -m pytest -q)

others=()
for version in ${OTHER_PYTHONS:-3.10 3.11 3.12 3.13}; do
  [ "$version" = "$main_version" ] || others+=("$version")
done
[ ${#others[@]} -eq 0 ] || scripts/test-pythons.sh "$wheel" "${others[@]}"

echo "== documentation site (strict: a broken link or reference fails)"
scripts/docs.sh

echo "== Autobahn conformance"
scripts/autobahn.sh
