#!/usr/bin/env bash
# REST throughput: wrk (Debian package) against the release binary on loopback.
#   GET  /api/v1/incidents?limit=20   over a store seeded with 200 reported incidents
#   POST /api/v1/screen               a benign text (verdict allow; the verdict is recorded as activity)
# Each load runs RUNS times (default 3) for DURATION (default 10s) with 2 threads and 16
# connections; prints every run and the median requests/s. The machine is shared: read the
# spread, not just the median.
# usage: scripts/bench/rest_load.sh [BINARY]   (default target/release/ai-incident-mcp)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/target/release/ai-incident-mcp}
runs=${RUNS:-3}; dur=${DURATION:-10s}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
work=$(mktemp -d)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
AI_INCIDENT_LOG=warn "$bin" --db "$work/load.db" serve --http 127.0.0.1:0 2> "$work/server.log" &
srv=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/server.log" | head -1)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "server did not start"; cat "$work/server.log"; exit 1; }
for i in $(seq 200); do
  curl -sf -o /dev/null -H 'content-type: application/json' \
    -d "{\"incident_type\":\"other\",\"description\":\"load seed $i: dashboard slow\",\"reporter_email\":\"load@example.com\"}" \
    "$url/api/v1/incidents/report"
done
cat > "$work/screen.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"text": "Could you summarise the attached quarterly report in three bullet points?", "source": "user"}'
LUA
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
load() {
  local name=$1; shift
  local rates=()
  for r in $(seq "$runs"); do
    local out; out=$(wrk -t2 -c16 -d"$dur" --latency "$@")
    local rps; rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    local p50; p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    local p99; p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    local errs; errs=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr '\n' ' ' || true)
    echo "$name run $r: $rps req/s  p50 $p50  p99 $p99 $errs"
    rates+=("$rps")
  done
  echo "$name median of $runs: $(printf '%s\n' "${rates[@]}" | median) req/s"
}
load "GET /api/v1/incidents?limit=20" "$url/api/v1/incidents?limit=20"
load "POST /api/v1/screen" -s "$work/screen.lua" "$url/api/v1/screen"
