#!/usr/bin/env bash
# Builds every cargo-fuzz target once (no sanitizer: `-s none`; our code is safe Rust, and an
# ASan build of the whole dependency tree is too slow for CI on 2 cores) and runs each for
# SECONDS (default 7) on a scratch copy of its seed corpus. Exits non-zero on the first crash,
# with libFuzzer's report and the crashing input's path.
#
#   scripts/fuzz-smoke.sh [SECONDS]     # needs `cargo +nightly` and `cargo fuzz`
#
# The fuzz build lives in $FUZZ_TARGET_DIR (default: ${CARGO_TARGET_DIR:-target}/fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-7}"
tdir="$(realpath -m "${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/fuzz}")"
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
cd fuzz
t0=$(date +%s)
cargo +nightly fuzz build -s none --target-dir "$tdir"
echo "fuzz build: $(( $(date +%s) - t0 ))s"
artifacts="$tdir/fuzz-artifacts"
mkdir -p "$artifacts"
for t in $(cargo +nightly fuzz list); do
  # A scratch copy, so the committed seeds stay as they are.
  work="$(mktemp -d)"
  cp -r "corpus/$t/." "$work/" 2>/dev/null || true
  log="$work.log"
  if "$tdir/$triple/release/$t" "$work" -max_total_time="$secs" -max_len=65536 \
      -artifact_prefix="$artifacts/$t-" >"$log" 2>&1; then
    echo "$t: $(grep -E '^(#[0-9]+|Done)' "$log" | tail -n 1)"
    rm -rf "$work" "$log"
  else
    echo "$t: CRASH (libFuzzer's report below; the input is in $artifacts/)"
    tail -n 60 "$log"
    exit 1
  fi
done
echo "fuzz smoke: $(( $(date +%s) - t0 ))s in all"
