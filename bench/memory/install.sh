#!/bin/sh
# Installs the sqlite-vec extension the vector benchmark compares against
# (pinned in bench/memory/package-lock.json) into bench/memory/node_modules,
# only when it is missing or older than the lock.
# Usage: bench/memory/install.sh   (from anywhere; needs node and npm)
# Exits 2 when npm is missing so run.sh can skip instead of failing.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
dir="$root/bench/memory"
stamp="$dir/node_modules/.package-lock.json" # npm ci writes it last

if [ -f "$stamp" ] && [ ! "$dir/package-lock.json" -nt "$stamp" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "bench/memory/install.sh: npm is not installed; install nodejs and npm (scripts/deps.sh test)" >&2
  exit 2
fi
echo "Installing sqlite-vec (npm ci in bench/memory)"
npm ci --prefix "$dir" --no-audit --no-fund
touch "$stamp"
