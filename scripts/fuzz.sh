#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo-fuzz, libFuzzer with AddressSanitizer) for SECONDS each
# (default 60), one after the other, from its seed corpus in fuzz/corpus/<target>/. An input that
# takes longer than the per-input time limit (super-linear parsing) or more memory than the limit
# fails like a crash: the script stops there, exits non-zero and names the input that did it.
# Installs the nightly toolchain and cargo-fuzz when they are missing.
# FUZZ_SEED=N makes libFuzzer draw the same mutations each run (scripts/test.sh, so that CI's short
# pass tries the same inputs every time instead of landing or not by chance); unset, each run
# explores new ones.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
seed=()
[ -z "${FUZZ_SEED:-}" ] || seed=("-seed=$FUZZ_SEED")
# Per input, with AddressSanitizer: every target takes well under 10 ms an input.
timeout_seconds=2
rss_limit_mb=2048
targets=(http_head proxy_protocol frame_decoder deflate close_and_utf8 topics)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

echo "== building the fuzz targets"
cargo +nightly fuzz build

for target in "${targets[@]}"; do
    echo "== $target for ${seconds}s"
    if ! cargo +nightly fuzz run "$target" -- \
        -max_total_time="$seconds" -timeout="$timeout_seconds" -rss_limit_mb="$rss_limit_mb" \
        -print_final_stats=1 "${seed[@]}"; then
        artifact=$(ls -t "fuzz/artifacts/$target"/* 2>/dev/null | head -n 1 || true)
        echo "FAILED: $target; the input is $artifact" >&2
        echo "reproduce: cargo +nightly fuzz run $target $artifact" >&2
        exit 1
    fi
done
echo "== every target ran ${seconds}s without a crash, timeout or out-of-memory"
