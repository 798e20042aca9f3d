#!/usr/bin/env bash
# Runs the unit tests of the engine's pure modules under Miri (nightly; installed when missing): the
# interpreter that reports Undefined Behaviour in Rust code as it runs (out-of-bounds and dangling
# accesses, aliasing violations under Stacked Borrows, data races, invalid values, memory leaks), ours and
# that of the crates the tests reach (bytes, indexmap, httparse, simdutf8, tokio...). Miri cannot call C,
# open sockets or read the real clock (isolation is left on, so a test that tries fails loudly), so only
# modules whose tests do none of that are selected below; it does emulate eventfd and epoll, so the
# hand-over queue (bridge::queue, with the unsafe of bridge/wake_fd.rs) runs too. docs/fuzzing.md says
# what is left out and why.
# cargo miri builds into its own target/miri, so it never disturbs the normal build. Not part of CI
# (several minutes); run it by hand after changing unsafe code or a pure module, as scripts/sanitize.sh.
# Extra arguments go to the test harness and replace the list below (e.g. one module or test name);
# MIRIFLAGS from the environment are added to ours.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --component miri,rust-src --profile minimal
elif ! cargo +nightly miri --version >/dev/null 2>&1; then
    rustup component add --toolchain nightly miri rust-src
fi

# Module paths, matched as prefixes of the test names. Left out: protocol::deflate::{compress,
# decompress} (C zlib through libz-sys), net::access (the wall clock, for the access log's timestamp);
# the python layer has no Rust tests (pyo3 only compiles here).
# Single tests that need C or a socket in the modules below carry #[cfg_attr(miri, ignore = "...")].
modules=(
    protocol::close:: protocol::decoder:: protocol::encode:: protocol::grow:: protocol::header::
    protocol::mask:: protocol::utf8:: protocol::deflate::negotiate::
    routing::pattern:: routing::percent:: routing::prefix:: routing::table::
    pubsub::matches:: pubsub::registry:: pubsub::run:: pubsub::topic:: pubsub::trie::
    backplane::envelope:: backplane::subjects:: backplane::outbox:: backplane::queue::
    backplane::interest:: backplane::link::
    bridge::queue::
    net::http::head:: net::http::chunked:: net::http::body:: net::http::response::
    net::http::routes:: net::proxy::protocol:: net::proxy::forwarded:: net::proxy::trust::
    net::handshake:: net::front:: net::upgrade:: net::conn_id:: net::conn_handle::
    net::connection:: net::read_side:: net::tls::names::
)
if [ "$#" -gt 0 ]; then
    modules=()
fi

# Strict provenance: no integer-to-pointer casts anywhere on the paths the tests take.
export MIRIFLAGS="-Zmiri-strict-provenance${MIRIFLAGS:+ $MIRIFLAGS}"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
status=0
cargo +nightly miri test --lib -- "${modules[@]}" "$@" 2>&1 | tee "$log" || status=$?
elapsed=$((SECONDS - start))

if [ "$status" -ne 0 ] || grep -q "Undefined Behavior" "$log" || ! grep -q "^test result: ok\." "$log"; then
    echo "miri: FAILED after ${elapsed}s (a failed test, Undefined Behaviour or an unsupported operation: see above)" >&2
    exit 1
fi
summary=$(grep "^test result: ok\." "$log")
echo "miri: ${summary#test result: } (${elapsed}s, MIRIFLAGS=$MIRIFLAGS)"
