#!/bin/sh
# The memory benchmarks, in order:
#   1. the vector index against the sqlite-vec extension on the same vectors
#      (vec_bench; sqlite-vec comes from npm through install.sh, so without
#      npm this part is skipped with a message);
#   2. the store end to end: batched ingest, durable single writes, search
#      latency at 100 000 entities (memory_bench);
#   3. search recall on the labelled set recall_set.json (memory_bench recall).
# Usage: bench/memory/run.sh [BUILD_DIR]   (default build)
# Extra flags come from the environment, split on spaces:
#   VEC_BENCH_FLAGS     --n N --queries Q --k K --seed S
#   MEMORY_BENCH_FLAGS  --n N --writes M --search-n S --queries Q --seed S
#                       --dir DIR (a directory on the disk to measure)
#                       --only ingest,writes,search
#   RECALL_FLAGS        --verbose (the ranks of every query)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}

for bin in vec_bench memory_bench; do
  if [ ! -x "$build/$bin" ]; then
    echo "bench/memory/run.sh: $build/$bin is not built; run: cmake --build $build" >&2
    exit 1
  fi
done

echo "== memory: vector index against sqlite-vec (vec_bench)"
if command -v npm >/dev/null 2>&1; then
  "$here/install.sh"
  # shellcheck disable=SC2086 # the flags are meant to split
  "$build/vec_bench" --sqlite-vec "$here/node_modules/sqlite-vec-linux-x64/vec0.so" \
    ${VEC_BENCH_FLAGS:-}
else
  echo "skipped: npm is not installed, so sqlite-vec cannot be fetched" \
       "(scripts/deps.sh test installs nodejs and npm)"
fi

echo
echo "== memory: the store's ingest, durable writes and search (memory_bench)"
# shellcheck disable=SC2086
"$build/memory_bench" ${MEMORY_BENCH_FLAGS:-}

echo
echo "== memory: search recall on the labelled set (memory_bench recall)"
# shellcheck disable=SC2086
"$build/memory_bench" recall --set "$here/recall_set.json" ${RECALL_FLAGS:-}
