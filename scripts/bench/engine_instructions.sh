#!/usr/bin/env bash
# Instructions and simulated L1-data misses per screen of the 1 KB benchmark prompt, counted by
# valgrind's cachegrind: deterministic, so engine changes can be compared on a noisy machine
# where wall-clock medians move by 20 %. Needs valgrind (apt install valgrind).
#
#   scripts/bench/engine_instructions.sh            # builds examples/screen_loop first
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt install valgrind)" >&2; exit 1; }
cargo build --release --example screen_loop >&2
bin="${CARGO_TARGET_DIR:-target}/release/examples/screen_loop"
run() {
  valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/dev/null "$bin" "$1" 2>&1 |
    awk '/ I +refs:/{gsub(",","",$4); i=$4} / D1 +misses:/{gsub(",","",$4); d=$4} END{print i, d}'
}
# The difference between 2001 and 1 screens removes start-up (engine compilation).
read -r i1 d1 < <(run 1)
read -r i2 d2 < <(run 2001)
echo "instructions per screen: $(( (i2 - i1) / 2000 ))"
echo "L1d misses per screen:   $(( (d2 - d1) / 2000 ))"
