#!/usr/bin/env bash
# Runs the Python suite against one built wheel on each CPython given (default 3.10 3.11 3.12 3.13), each
# in a venv of its own (.venv-3.X) where the wheel and its test packages are installed; no Rust toolchain
# is needed for that. Interpreters are found under pyenv or on PATH; a missing one fails the run.
# Usage: scripts/test-pythons.sh WHEEL [VERSION...]
set -euo pipefail
cd "$(dirname "$0")/.."

wheel=${1:?usage: scripts/test-pythons.sh WHEEL [VERSION...]}
shift
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.10 3.11 3.12 3.13)

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

for version in "${versions[@]}"; do
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
