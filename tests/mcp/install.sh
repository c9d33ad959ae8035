#!/bin/sh
# Installs the MCP servers the tests run (pinned in tests/mcp/package-lock.json)
# into tests/mcp/node_modules, only when it is missing or older than the lock.
# Usage: tests/mcp/install.sh   (from anywhere; needs node and npm: scripts/deps.sh test)
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
dir="$root/tests/mcp"
stamp="$dir/node_modules/.package-lock.json" # npm ci writes it last

if [ -f "$stamp" ] && [ ! "$dir/package-lock.json" -nt "$stamp" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "tests/mcp/install.sh: npm is not installed; run scripts/deps.sh test" >&2
  exit 1
fi
echo "Installing the MCP test servers (npm ci in tests/mcp)"
npm ci --prefix "$dir" --no-audit --no-fund
touch "$stamp"
