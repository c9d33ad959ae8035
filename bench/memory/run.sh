#!/bin/sh
# Compares Caxton's vector index with the sqlite-vec extension on the same
# vectors. Installs sqlite-vec first (bench/memory/install.sh).
# Usage: bench/memory/run.sh [path/to/vec_bench] [vec_bench flags...]
#        (default build/vec_bench; flags: --n N --queries Q --seed S)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-build/vec_bench}
[ $# -gt 0 ] && shift

if ! command -v npm >/dev/null 2>&1; then
  echo "bench/memory/run.sh: skipped: npm is not installed, so sqlite-vec cannot be fetched" >&2
  exit 0
fi
"$here/install.sh"
if [ ! -x "$bin" ]; then
  echo "bench/memory/run.sh: $bin is not built; run: make -C build vec_bench" >&2
  exit 1
fi
exec "$bin" --sqlite-vec "$here/node_modules/sqlite-vec-linux-x64/vec0.so" "$@"
