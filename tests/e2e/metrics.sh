#!/usr/bin/env bash
# /metrics parsed by the real prometheus_client OpenMetrics parser (from .e2e/py), values
# checked to move when an incident is opened and acknowledged: tests/e2e/metrics_prometheus.py.
# usage: tests/e2e/metrics.sh [BINARY]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/target/debug/ai-incident-mcp}
work=$(mktemp -d)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
AI_INCIDENT_LOG=warn "$bin" --db "$work/metrics.db" serve --http 127.0.0.1:0 2> "$work/server.log" &
srv=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/server.log" | head -1)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "server did not start"; cat "$work/server.log"; exit 1; }
"$root/.e2e/py/bin/python" "$root/tests/e2e/metrics_prometheus.py" "$url"
