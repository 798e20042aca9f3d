#!/usr/bin/env bash
# Installs everything the comparison benchmark needs, inside benches/.peers/ (git-ignored, nothing global):
#   - a venv at benches/.peers/venv with the Python peers (websockets, picows, aiohttp, socketify, granian,
#     uvicorn with httptools, uvloop; redis-py, starlette and broadcaster for cross_node.py), ruff (for `ruff check benches`) and trustme (certificates for the TLS
#     workloads)
#   - libuv.so.1 for socketify's native library: Debian's libuv1 unpacked (apt-get download + dpkg -x, nothing
#     installed system-wide) into benches/.peers/debroot; compare.py puts it on LD_LIBRARY_PATH
#   - Node's `ws` and Bun (the `bun` npm package, whose platform package @oven/bun-linux-x64 carries the binary)
#     with npm into benches/.peers/node
#   - hyperws itself, built from this repository into that venv (maturin, release)
#   - the Rust load generator (benches/loadgen, release build)
# A peer that fails to install is reported and skipped; the script goes on. Safe to run again: what is already
# installed is kept, so a second run only rebuilds hyperws and the load generator incrementally.
#
# Environment: PYTHON (interpreter for the venv, default python3), SKIP_HYPERWS=1 (do not (re)build hyperws).
set -uo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
PEERS_DIR="$BENCH_DIR/.peers"
VENV="$PEERS_DIR/venv"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"

declare -a OK=() FAILED=()

say() { printf '[setup] %s\n' "$*"; }

mkdir -p "$PEERS_DIR"

if [ ! -x "$PY" ]; then
    say "creating venv $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV" || { say "FATAL: cannot create the venv"; exit 1; }
    "$PY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || say "warning: pip upgrade failed (continuing)"
fi

# peer: pip requirement and the module it provides
install_peer() {
    local req="$1" mod="$2"
    if "$PY" -c "import $mod" >/dev/null 2>&1; then
        OK+=("$mod (already installed: $("$PY" -c "import importlib.metadata as m; print(m.version('$req'))" 2>/dev/null))")
        return
    fi
    say "installing $req"
    if "$PY" -m pip install --quiet "$req" && "$PY" -c "import $mod" >/dev/null 2>&1; then
        OK+=("$mod $("$PY" -c "import importlib.metadata as m; print(m.version('$req'))" 2>/dev/null)")
    else
        FAILED+=("$mod: pip install $req failed; its server will be skipped")
    fi
}

install_peer websockets websockets
install_peer picows picows
install_peer uvloop uvloop
install_peer aiohttp aiohttp
install_peer granian granian
install_peer httptools httptools
install_peer uvicorn uvicorn
install_peer maturin maturin
install_peer ruff ruff
install_peer trustme trustme  # the throwaway CA and certificate of the TLS workloads (compare.py)
# The cross-node peers (cross_node.py): Starlette + broadcaster's Redis backend, and redis-py for websockets.
install_peer redis redis
install_peer starlette starlette
install_peer broadcaster broadcaster

# socketify's wheel carries its native library, which links libuv.so.1: unpack Debian's libuv1 beside it.
LIBUV_DIR="$PEERS_DIR/debroot/usr/lib/x86_64-linux-gnu"
if [ ! -e "$LIBUV_DIR/libuv.so.1" ]; then
    say "unpacking Debian's libuv1 into $PEERS_DIR/debroot (for socketify)"
    debs="$(mktemp -d)"
    if (cd "$debs" && apt-get download libuv1 >/dev/null 2>&1) && dpkg -x "$debs"/libuv1_*.deb "$PEERS_DIR/debroot"; then
        :
    else
        say "warning: could not fetch libuv1 with apt-get download (try apt-get update); socketify will not load"
    fi
    rm -rf "$debs"
fi
if LD_LIBRARY_PATH="$LIBUV_DIR" "$PY" -c "import socketify" >/dev/null 2>&1; then
    OK+=("socketify (already installed: $("$PY" -c "import importlib.metadata as m; print(m.version('socketify'))"))")
else
    say "installing socketify"
    if "$PY" -m pip install --quiet socketify && LD_LIBRARY_PATH="$LIBUV_DIR" "$PY" -c "import socketify" >/dev/null 2>&1; then
        OK+=("socketify $("$PY" -c "import importlib.metadata as m; print(m.version('socketify'))")")
    else
        FAILED+=("socketify: pip install socketify failed or its native library does not load (libuv.so.1?); its server will be skipped")
    fi
fi

# Node's ws and Bun, with npm, into .peers/node. The `bun` package's binary comes from its optional platform
# package (a registry package); its postinstall script only checks it.
NODE_DIR="$PEERS_DIR/node"
if ! command -v npm >/dev/null 2>&1; then
    FAILED+=("node ws, bun: npm is not installed; both will be skipped")
else
    mkdir -p "$NODE_DIR"
    [ -f "$NODE_DIR/package.json" ] || echo '{"name": "hyperws-bench-peers", "private": true}' >"$NODE_DIR/package.json"
    if [ ! -d "$NODE_DIR/node_modules/ws" ] || [ ! -x "$NODE_DIR/node_modules/.bin/bun" ]; then
        say "installing ws and bun with npm into $NODE_DIR"
        (cd "$NODE_DIR" && npm install --no-audit --no-fund --silent ws bun >/dev/null 2>&1) || say "warning: npm install reported an error"
    fi
    if (cd "$NODE_DIR" && node -e "require('ws')") >/dev/null 2>&1; then
        OK+=("node ws $(node -p "require('$NODE_DIR/node_modules/ws/package.json').version") on Node $(node --version)")
    else
        FAILED+=("node ws: npm install ws failed; its server will be skipped")
    fi
    if bunv="$("$NODE_DIR/node_modules/.bin/bun" --version 2>/dev/null)"; then
        OK+=("bun $bunv")
    else
        FAILED+=("bun: the bun npm package installed no working binary (its platform package @oven/bun-linux-x64 missing?); bun will be skipped")
    fi
fi

# The load generator: a standalone crate (its own [workspace]), built in its own target dir.
say "building the load generator (release)"
if cargo build --quiet --release --manifest-path "$BENCH_DIR/loadgen/Cargo.toml"; then
    OK+=("loadgen $BENCH_DIR/loadgen/target/release/loadgen")
else
    FAILED+=("loadgen: cargo build failed; no benchmark can run")
fi

# hyperws from this checkout. Its own cargo target dir under .peers so it never waits on (or disturbs) the
# developers' builds in /target; incremental after the first build.
if [ "${SKIP_HYPERWS:-0}" = "1" ]; then
    say "SKIP_HYPERWS=1: not (re)building hyperws"
elif ! "$PY" -c "import maturin" >/dev/null 2>&1; then
    FAILED+=("hyperws: maturin is missing, cannot build it; hyperws will be skipped")
else
    say "building and installing hyperws from $REPO_DIR (release wheel)"
    # The maturin build backend runs `maturin` from PATH: the venv's.
    if PATH="$VENV/bin:$PATH" CARGO_TARGET_DIR="$PEERS_DIR/target" "$PY" -m pip install --quiet --no-build-isolation \
        --force-reinstall --no-deps "$REPO_DIR" >"$PEERS_DIR/hyperws-build.log" 2>&1 \
        && (cd "$PEERS_DIR" && "$PY" -c "import hyperws; hyperws.Server") >>"$PEERS_DIR/hyperws-build.log" 2>&1; then
        rev="$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')"
        [ -n "$(git -C "$REPO_DIR" status --porcelain --untracked-files=no 2>/dev/null)" ] && rev="$rev with local changes"
        echo "built from $rev on $(date '+%Y-%m-%d %H:%M')" >"$PEERS_DIR/hyperws-build.txt"
        OK+=("hyperws ($(cat "$PEERS_DIR/hyperws-build.txt"))")
    elif (cd "$PEERS_DIR" && "$PY" -c "import hyperws; hyperws.Server") >/dev/null 2>&1; then
        FAILED+=("hyperws: rebuild failed (see $PEERS_DIR/hyperws-build.log); the venv keeps the hyperws built before, which compare.py will use")
    else
        FAILED+=("hyperws: build or import failed (is the core ready yet?); see $PEERS_DIR/hyperws-build.log; hyperws will be skipped")
    fi
fi

echo
say "ready:"
for item in "${OK[@]}"; do echo "    ok      $item"; done
for item in "${FAILED[@]+"${FAILED[@]}"}"; do echo "    FAILED  $item"; done
echo
say "venv python: $PY"
say "next: $PY $BENCH_DIR/compare.py"
exit 0
