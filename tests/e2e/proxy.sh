#!/usr/bin/env bash
# End to end for the guard proxy (issue #12) with real processes: the official Python SDK and
# the MCP Inspector CLI as agents → the proxy binary → a Python-SDK upstream
# (tests/e2e/proxy_upstream.py). Needs scripts/install-e2e-deps.sh.
# usage: tests/e2e/proxy.sh [BINARY]   (default target/debug/ai-incident-mcp)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/target/debug/ai-incident-mcp}
e2e=$root/.e2e
export PATH="$e2e/js/node_modules/.bin:$PATH" HOME="$e2e/home"
py=$e2e/py/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0; fail=0
ok()   { pass=$((pass+1)); echo "ok   - $1"; }
bad()  { fail=$((fail+1)); echo "FAIL - $1"; [ -n "${2:-}" ] && echo "$2" | head -20 | sed 's/^/       /'; }

echo "# Python SDK agent → proxy → Python SDK upstream"
if AI_INCIDENT_LOG=error "$py" "$root/tests/e2e/proxy_e2e.py" "$bin" "$py" "$work"; then ok "python sdk proxy checks"; else bad "python sdk proxy checks"; fi

echo "# MCP Inspector CLI → proxy → Python SDK upstream"
cat > "$work/insp.toml" <<TOML
[proxy]
pin_lock = "$work/insp-pins.json"
[proxy.tools]
fetch_page = "block"
TOML
target=("$bin" --db "$work/insp.db" --config "$work/insp.toml" proxy --name crm -- "$py" "$root/tests/e2e/proxy_upstream.py" stdio)
insp() { AI_INCIDENT_LOG=error mcp-inspector --cli "$@" --connect-timeout 60000; }
out=$(insp "${target[@]}" --method tools/list 2>&1)
if grep -q '"get_client"' <<<"$out"; then ok "inspector: tools/list through the proxy"; else bad "inspector: tools/list" "$out"; fi
out=$(insp "${target[@]}" --method tools/call --tool-name get_client --tool-args-json '{"client_id":"i-1"}' 2>&1)
if grep -q 'Acme Logistics GmbH' <<<"$out"; then ok "inspector: benign tools/call passes through"; else bad "inspector: benign call" "$out"; fi
out=$(insp "${target[@]}" --method tools/call --tool-name fetch_page --tool-args-json '{"url":"https://example.com"}' 2>&1); code=$?
if [ $code -eq 5 ] && grep -q 'withheld' <<<"$out" && grep -q 'INC-' <<<"$out"; then ok "inspector: blocked result is an isError with the incident (exit 5)"; else bad "inspector: block (exit $code)" "$out"; fi

echo "# proxy: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
