#!/usr/bin/env bash
# Where an unloaded screen_prompt's round trip over stdio goes, step by step, each step measured
# by examples/load_stdio at 1 request in flight (a fresh database per run):
#   pipe     the bare pipe round trip to `cat` (two processes, no MCP): the machine's floor
#   ping     MCP `ping` through `serve --stdio` (transport, rmcp, no tool)
#   benign   screen_prompt on benign dev texts (engine + one activity row, not waited for)
#   attack   screen_prompt on attack dev texts (engine + the incident upsert, waited for)
#   mixed    screen_prompt on the mixed dev texts
# then the three screen_prompt workloads at 64 in flight. Prints one line per run and the median
# of each step's p50 (and calls/s at 64 in flight).
#
#   scripts/bench/stdio_ladder.sh [RUNS] [BINARY]     # RUNS default 3
#   env: REQUESTS (1 in flight, default 10000), REQUESTS64 (64 in flight, default 50000)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-3}
bin=${2:-${CARGO_TARGET_DIR:-$root/target}/release/ai-incident-mcp}
load=${CARGO_TARGET_DIR:-$root/target}/release/examples/load_stdio
req=${REQUESTS:-10000}
req64=${REQUESTS64:-50000}
for f in "$bin" "$load"; do
  [ -x "$f" ] || { echo "missing $f: cargo build --release --bin ai-incident-mcp --example load_stdio" >&2; exit 1; }
done
cd "$root"
db=$(mktemp -d)/ladder.db
out=$(mktemp)
trap 'rm -rf "$(dirname "$db")" "$out"' EXIT

# step name, in flight, requests, load_stdio flags (before --server), server command
one() {
  local name=$1 inflight=$2 n=$3 flags=$4 line
  shift 4
  rm -f "$db" "$db-wal" "$db-shm"
  # shellcheck disable=SC2086
  line=$("$load" $flags --inflight "$inflight" --requests "$n" --server "$@" 2>/dev/null)
  echo "$name inflight=$inflight $line" | tee -a "$out"
}
for r in $(seq "$runs"); do
  echo "# run $r of $runs ($(uptime | sed 's/.*load/load/'))"
  one pipe 1 "$req" "--ping --no-init" cat
  one ping 1 "$req" "--ping" "$bin" --db "$db" serve --stdio
  one benign 1 "$req" "--only benign" "$bin" --db "$db" serve --stdio
  one attack 1 "$req" "--only attack" "$bin" --db "$db" serve --stdio
  one mixed 1 "$req" "" "$bin" --db "$db" serve --stdio
  one benign 64 "$req64" "--only benign" "$bin" --db "$db" serve --stdio
  one attack 64 "$req64" "--only attack" "$bin" --db "$db" serve --stdio
  one mixed 64 "$req64" "" "$bin" --db "$db" serve --stdio
done
echo "# medians over $runs runs"
python3 - "$out" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, inflight = line.split()[:2]
    f = dict(re.findall(r"(\w+)=([\d.]+)", line))
    rows.setdefault((name, inflight), []).append(f)
for (name, inflight), fs in rows.items():
    med = lambda k: statistics.median(float(x[k]) for x in fs)
    errors = sum(int(x["errors"]) for x in fs)
    print(f"{name:7} {inflight:12} p50 {med('p50_us'):8.1f} µs  p99 {med('p99_us'):8.1f} µs  "
          f"calls/s {med('calls_per_sec'):8.0f}  errors {errors}")
EOF
