#!/bin/sh
# Runs the benchmarks of the server foundation against the given binary.
# Usage: bench/run.sh path/to/caxton
set -eu
here=$(dirname "$0")
exec /usr/bin/python3 "$here/http_bench.py" "${1:-build/caxton}"
