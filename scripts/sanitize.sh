#!/usr/bin/env bash
# Runs the Rust unit tests under AddressSanitizer with LeakSanitizer (use after free, overflows, double
# frees and leaks in the engine's unsafe code and its C dependencies: zlib, aws-lc), on the nightly
# toolchain (installed when missing). Its own target dir, so it never disturbs the normal build.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi

target=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps the sanitizer off build scripts and proc macros; frame pointers give ASan's reports
# (and LSan's leak stacks) whole call chains.
RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes" \
ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1" \
CARGO_TARGET_DIR=target/sanitize \
    cargo +nightly test --release --lib --target "$target" "$@"
