#!/usr/bin/env bash
# Property-based check of the REST API: schemathesis (PyPI, pinned in
# scripts/install-e2e-deps.sh) reads GET /api/v1/openapi.json from the live
# server and tests every operation (coverage, fuzzing and stateful phases,
# following the document's links from a report to its incident). Fails on a 5xx,
# an undocumented status, a response that does not match its schema, a wrong
# content type or header, invalid input that is accepted, or a crash.
# usage: tests/e2e/rest_schemathesis.sh [BINARY]   (needs .e2e/py from install-e2e-deps.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/target/debug/ai-incident-mcp}
work=$(mktemp -d)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$work"' EXIT
printf '[documentation]\ndir = "%s/postmortems"\n' "$work" > "$work/config.toml"
cd "$work"
AI_INCIDENT_LOG=warn "$bin" --db "$work/st.db" --config "$work/config.toml" \
  serve --http 127.0.0.1:0 2> "$work/server.log" &
srv=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/server.log" | head -1)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "server did not start"; cat "$work/server.log"; exit 1; }
status=0
"$root/.e2e/py/bin/schemathesis" run "$url/api/v1/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
  --phases examples,coverage,fuzzing,stateful --max-examples 25 --workers 2 --seed 10 \
  --request-timeout 10 --no-color || status=$?
kill -0 "$srv" 2>/dev/null || { echo "FAIL - the server died during the run"; cat "$work/server.log"; exit 1; }
exit $status
