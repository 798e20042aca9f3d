#!/usr/bin/env bash
# Runs every test: the linters, the Rust unit tests, a short pass of every fuzz target, the Python suite
# (with real Redis, NATS and Chromium) against a freshly built wheel on every supported CPython (3.10 to
# 3.13), the documentation build, and the Autobahn conformance suite. Installs what it needs (a venv per
# Python: .venv for the main one, .venv-3.X for the others; the wheel; the test packages; cargo-fuzz;
# Chromium from Debian's packages; Autobahn) and starts the brokers when they are down. Environment: PYTHON (the main interpreter, default python3), OTHER_PYTHONS (default
# "3.10 3.11 3.12 3.13" less the main one's version; found under pyenv or on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q maturin ruff mypy

echo "== linters"
cargo fmt --check
cargo clippy --release --quiet -- -D warnings
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

echo "== fuzzing (10 s a target; scripts/fuzz.sh 60 for a real run)"
scripts/fuzz.sh 10

echo "== Chromium for the browser tests"
scripts/browser.sh

echo "== brokers for the scale-out tests"
scripts/brokers.sh

main_version=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
echo "== Python tests on $main_version"
# Run from tests/ so the installed wheel is imported, not the source tree.
(cd tests && ../.venv/bin/python -m pytest -q)

find_python() {  # VERSION: an interpreter of that version, under pyenv or on PATH
  local root found
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  found=$(ls -d "$root"/versions/"$1".*/bin/"python$1" 2>/dev/null | sort -V | tail -n 1)
  # A pyenv shim on PATH answers even for versions it cannot run: ask the interpreter itself.
  if [ -z "$found" ] && "python$1" -c 'pass' 2>/dev/null; then
    found=$(command -v "python$1")
  fi
  echo "$found"
}

for version in ${OTHER_PYTHONS:-3.10 3.11 3.12 3.13}; do
  [ "$version" = "$main_version" ] && continue
  interpreter=$(find_python "$version")
  if [ -z "$interpreter" ]; then
    echo "error: CPython $version not found (under pyenv or on PATH): the wheel claims to support it" >&2
    exit 1
  fi
  echo "== Python tests on $version ($interpreter)"
  venv=.venv-$version
  [ -x "$venv/bin/python" ] || "$interpreter" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$wheel"
  "$venv/bin/python" -m pip install -q "$wheel[test]"
  (cd tests && "../$venv/bin/python" -m pytest -q -p no:cacheprovider)
done

echo "== documentation site (strict: a broken link or reference fails)"
scripts/docs.sh

echo "== Autobahn conformance"
scripts/autobahn.sh
