#!/bin/sh
# Fuzzes the WebAssembly engine with libFuzzer under ASan+UBSan.
# Usage: tests/fuzz/run.sh [SECONDS]   (default 30)
#
# 1. builds tests/fuzz/fuzz_wasm.c with the engine into build-fuzz/;
# 2. replays every input in tests/fuzz/regressions/ (crashes found before);
# 3. assembles tests/fuzz/seeds/*.wat with wat2wasm into a temporary corpus
#    and fuzzes for SECONDS.
# A crashing, leaking, hanging or memory-hungry input is copied into
# tests/fuzz/crashes/ and the script exits non-zero. Needs Debian's clang
# with libclang-rt-14-dev (libFuzzer and the sanitizers) and wabt.
set -eu

seconds=${1:-30}
case "$seconds" in
  '' | *[!0-9]*) echo "run.sh: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
fuzz="$root/tests/fuzz"
out="$root/build-fuzz"
cc=${FUZZ_CC:-clang}
binary="$out/fuzz_wasm"
# Limits libFuzzer holds each input to; the harness's own fuel and deadline
# keep well inside them.
limits="-timeout=5 -rss_limit_mb=2048 -max_len=65536"

for tool in "$cc" wat2wasm; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (scripts/deps.sh test)" >&2; exit 2; }
done

mkdir -p "$out"
echo "fuzz: building $binary"
# -fno-sanitize-recover: undefined behaviour is a crash, not a log line.
"$cc" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1 -std=c17 \
  -Wall -Wextra -D_GNU_SOURCE -DCAXTON_VERSION=\"0.1.0\" -I"$root/src" \
  "$fuzz/fuzz_wasm.c" "$root"/src/wasm/*.c "$root/src/core/error.c" "$root/src/core/util.c" \
  -lm -o "$binary"

work=$(mktemp -d "${TMPDIR:-/tmp}/caxton-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir "$work/corpus" "$work/artifacts"

# Keeps whatever libFuzzer wrote as an artifact (crash-*, leak-*, timeout-*,
# oom-*) and fails.
keep_artifacts() {
  if [ -n "$(ls -A "$work/artifacts")" ]; then
    mkdir -p "$fuzz/crashes"
    cp "$work/artifacts"/* "$fuzz/crashes/"
    echo "fuzz: FAILED: $1; inputs kept in tests/fuzz/crashes/:" >&2
    ls "$work/artifacts" >&2
  else
    echo "fuzz: FAILED: $1" >&2
  fi
  exit 1
}

regressions=$(find "$fuzz/regressions" -name '*.wasm' 2>/dev/null | sort)
if [ -n "$regressions" ]; then
  echo "fuzz: replaying $(echo "$regressions" | wc -l) regression input(s)"
  # shellcheck disable=SC2086 # word splitting wanted: the paths have no spaces
  "$binary" $limits -artifact_prefix="$work/artifacts/" $regressions >"$work/regressions.log" 2>&1 ||
    { tail -n 40 "$work/regressions.log" >&2; keep_artifacts "a regression input fails again"; }
fi

for wat in "$fuzz"/seeds/*.wat; do
  name=$(basename "$wat" .wat)
  wat2wasm "$wat" -o "$work/corpus/$name.wasm" ||
    { echo "run.sh: wat2wasm failed on $wat" >&2; exit 2; }
done

log="$out/fuzz.log"
echo "fuzz: fuzzing for ${seconds}s from $(find "$work/corpus" -name "*.wasm" | wc -l) seeds (log: $log)"
status=0
# shellcheck disable=SC2086
"$binary" $limits -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$work/corpus" >"$log" 2>&1 || status=$?

# The last status line has the totals: "#N DONE cov: C ft: F corp: ... exec/s: E".
grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
if [ "$status" -ne 0 ]; then
  grep -E 'ERROR: |SUMMARY: |^ +#[0-9]+ 0x' "$log" | head -n 30 >&2 || true
  keep_artifacts "libFuzzer exited with status $status"
fi
echo "fuzz: no crash in ${seconds}s"
