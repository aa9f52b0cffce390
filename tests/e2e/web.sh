#!/usr/bin/env bash
# The web pages in real headless Chromium (Debian chromium + chromium-driver, driven by
# selenium from .e2e/py): see tests/e2e/web_chromium.py. Screenshots go to
# target/web-screenshots/ (or $2).
# usage: tests/e2e/web.sh [BINARY] [SCREENSHOT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/target/debug/ai-incident-mcp}
shots=${2:-$root/target/web-screenshots}
work=$(mktemp -d)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
AI_INCIDENT_LOG=warn "$bin" --db "$work/web.db" serve --http 127.0.0.1:0 2> "$work/server.log" &
srv=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/server.log" | head -1)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "server did not start"; cat "$work/server.log"; exit 1; }
"$root/.e2e/py/bin/python" "$root/tests/e2e/web_chromium.py" "$url" "$shots"
