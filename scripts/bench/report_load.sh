#!/usr/bin/env bash
# report_incident writes/s through the real server: N `serve --http` instances on one database,
# one wrk per instance (CONNS connections each) POSTing /api/v1/incidents/report with a
# different description per request. Prints each instance's rate, the sum, non-2xx counts, and
# the verify-audit result afterwards (every acknowledged report is in one valid chain).
# usage: scripts/bench/report_load.sh DB [INSTANCES] [BINARY]
#   DB: a SQLite path or a postgres:// URL (an empty or existing database; reports are added)
#   env: DURATION (default 10s), CONNS per instance (default 8), THREADS per wrk (default 1)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
db=${1:?usage: report_load.sh DB [INSTANCES] [BINARY]}
n=${2:-1}
bin=${3:-$root/target/release/ai-incident-mcp}
dur=${DURATION:-10s}; conns=${CONNS:-8}; threads=${THREADS:-1}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$bin" --db "$db" migrate >/dev/null
urls=()
for i in $(seq "$n"); do
  AI_INCIDENT_LOG=warn "$bin" --db "$db" serve --http 127.0.0.1:0 2>"$work/server-$i.log" &
  pids+=($!)
done
for i in $(seq "$n"); do
  url=
  for _ in $(seq 200); do
    url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/server-$i.log" | head -1)
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "instance $i did not start"; cat "$work/server-$i.log"; exit 1; }
  urls+=("$url")
done
cat >"$work/report.lua" <<'LUA'
local n = 0
local id = tostring(math.random(1, 1e9))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local body = string.format('{"incident_type":"other","severity":"low","description":"load %s-%d: the dashboard answers slowly","reporter_email":"load@example.com"}', id, n)
  return wrk.format(nil, nil, nil, body)
end
LUA
wrks=()
for i in $(seq "$n"); do
  wrk -t"$threads" -c"$conns" -d"$dur" --latency -s "$work/report.lua" "${urls[$((i-1))]}/api/v1/incidents/report" >"$work/wrk-$i.out" &
  wrks+=($!)
done
wait "${wrks[@]}"
total=0
for i in $(seq "$n"); do
  out="$work/wrk-$i.out"
  rps=$(awk '/Requests\/sec/ {print $2}' "$out")
  p50=$(awk '$1=="50%" {print $2}' "$out"); p99=$(awk '$1=="99%" {print $2}' "$out")
  errs=$(grep -E "Non-2xx|Socket errors" "$out" | tr '\n' ' ' || true)
  echo "instance $i: $rps reports/s  p50 $p50  p99 $p99 $errs"
  total=$(awk -v a="$total" -v b="$rps" 'BEGIN {print a + b}')
done
echo "instances $n, ${conns} connections each, $dur: total $total reports/s"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
echo "verify-audit: $("$bin" --db "$db" verify-audit | tr -d " \n" | head -c 160)"
