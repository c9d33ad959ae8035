#!/bin/sh
# Fuzzes the text parsers fed from outside the server: agent definition
# files (fuzz_agentdef), FIPA-ACL messages (fuzz_message) and LLM providers'
# answers and error bodies (fuzz_llm), and memory entities, searches and
# export files (fuzz_memory), with libFuzzer under ASan+UBSan.
# Usage: tests/fuzz/run_parsers.sh [SECONDS]   (default 20, per parser)
#
# For each parser: builds the harness into build-fuzz/, replays the inputs
# kept in tests/fuzz/regressions-<name>/, then fuzzes for SECONDS from
# tests/fuzz/seeds-<name>/. A crashing, leaking, hanging or memory-hungry
# input is copied into tests/fuzz/crashes/ and the script exits non-zero.
set -eu

seconds=${1:-20}
case "$seconds" in
  '' | *[!0-9]*) echo "run_parsers.sh: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
fuzz="$root/tests/fuzz"
out="$root/build-fuzz"
cc=${FUZZ_CC:-clang}
limits="-timeout=5 -rss_limit_mb=2048 -max_len=65536"
command -v "$cc" >/dev/null || { echo "run_parsers.sh: $cc not found (scripts/deps.sh test)" >&2; exit 2; }
flags=$(pkg-config --cflags --libs yaml-0.1 jansson sqlite3 libuv libcurl)
core="$root/src/core/error.c $root/src/core/util.c $root/src/core/units.c"

work=$(mktemp -d "${TMPDIR:-/tmp}/caxton-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$out"

fail() {
  if [ -n "$(ls -A "$work/artifacts" 2>/dev/null)" ]; then
    mkdir -p "$fuzz/crashes"
    cp "$work/artifacts"/* "$fuzz/crashes/"
    echo "fuzz: FAILED: $1; inputs kept in tests/fuzz/crashes/:" >&2
    ls "$work/artifacts" >&2
  else
    echo "fuzz: FAILED: $1" >&2
  fi
  exit 1
}

for name in ${FUZZ_ONLY:-agentdef message llm memory}; do
  binary="$out/fuzz_$name"
  case $name in
    agentdef) sources="$root/src/agents/agentdef.c $root/src/agents/agentdef_fix.c" ;;
    message) sources="$root/src/messaging/message.c" ;;
    llm) sources="$root/src/llm/openai.c $root/src/llm/anthropic.c $root/src/llm/ollama.c
                  $root/src/llm/protocol.c $root/src/llm/embeddings.c" ;;
    # the store reaches remote embedders through the LLM client
    memory) sources="$root/src/memory/*.c $root/src/core/map.c $root/src/core/log.c
                     $root/src/core/sha256.c $root/src/llm/*.c $root/src/core/curl_safety.c
                     $root/src/core/config.c" ;;
  esac
  echo "fuzz: building $binary"
  # shellcheck disable=SC2086 # word splitting wanted
  "$cc" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1 -std=c17 \
    -Wall -Wextra -D_GNU_SOURCE -DCAXTON_VERSION=\"0.1.0\" -I"$root/src" \
    "$fuzz/fuzz_$name.c" $sources $core $flags -lm -o "$binary"
  rm -rf "$work/corpus" "$work/artifacts"
  mkdir "$work/corpus" "$work/artifacts"
  cp "$fuzz/seeds-$name"/* "$work/corpus/"
  if [ -d "$fuzz/regressions-$name" ] && [ -n "$(ls -A "$fuzz/regressions-$name")" ]; then
    echo "fuzz: replaying $(ls "$fuzz/regressions-$name" | wc -l) regression input(s)"
    # shellcheck disable=SC2086
    "$binary" $limits -artifact_prefix="$work/artifacts/" "$fuzz/regressions-$name"/* \
      >"$work/regressions.log" 2>&1 ||
      { tail -n 40 "$work/regressions.log" >&2; fail "a $name regression input fails again"; }
  fi
  log="$out/fuzz_$name.log"
  echo "fuzz: fuzzing $name for ${seconds}s (log: $log)"
  status=0
  # shellcheck disable=SC2086
  "$binary" $limits -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" >"$log" 2>&1 || status=$?
  grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
  if [ "$status" -ne 0 ]; then
    grep -E 'ERROR: |SUMMARY: |^ +#[0-9]+ 0x' "$log" | head -n 30 >&2 || true
    fail "libFuzzer exited with status $status on $name"
  fi
  echo "fuzz: $name: no crash in ${seconds}s"
done
