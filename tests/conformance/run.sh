#!/bin/sh
# Runs the WebAssembly spec test suite against Caxton's engine.
#
# Each .wast script of $CAXTON_WASM_TESTSUITE (default: the `shared` folder
# beside the checkout, ../shared/wasm-testsuite) is converted with wabt's
# wast2json into a temporary directory, then all of them go through
# wasm_spec_runner in one run: 1.0/ with the 1.0 feature set, 2.0/ (without
# the simd_* scripts) with 2.0. Prints per-script and total counts; exits
# non-zero when any command failed.
#
# Usage: tests/conformance/run.sh [RUNNER] [runner options...]
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
runner=${1:-"$repo/build-asan/wasm_spec_runner"}
[ $# -gt 0 ] && shift
suite=${CAXTON_WASM_TESTSUITE:-"$repo/../shared/wasm-testsuite"}

if [ ! -d "$suite" ]; then
    echo "conformance: no test suite at $suite (set CAXTON_WASM_TESTSUITE); skipped"
    exit 0
fi
if ! command -v wast2json >/dev/null 2>&1; then
    echo "conformance: wast2json not found (apt-get install wabt); skipped"
    exit 0
fi
if [ ! -x "$runner" ]; then
    echo "conformance: runner $runner not built" >&2
    exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# wast2json flags per suite: the 1.0 scripts use MVP encodings (elem and data
# segments, call_indirect's reserved byte) that 2.0 reads differently.
flags_1_0="--disable-reference-types --disable-bulk-memory --disable-saturating-float-to-int
           --disable-sign-extension --disable-multi-value"
flags_2_0=""

args=""
conversion_failed=0
for version in 1.0 2.0; do
    [ -d "$suite/$version" ] || continue
    mkdir -p "$tmp/$version"
    args="$args --features $version"
    eval "flags=\$flags_$(echo $version | tr . _)"
    for wast in "$suite/$version"/*.wast; do
        name=$(basename "$wast" .wast)
        case "$name" in simd_*) continue ;; esac
        # shellcheck disable=SC2086
        if wast2json $flags "$wast" -o "$tmp/$version/$name.json" >"$tmp/w2j.log" 2>&1; then
            args="$args $tmp/$version/$name.json"
        else
            echo "$version/$name.wast: wast2json failed:"
            sed 's/^/  /' "$tmp/w2j.log" | head -5
            conversion_failed=1
        fi
    done
done

# shellcheck disable=SC2086
status=0
"$runner" --root "$tmp" "$@" $args || status=$?
if [ "$conversion_failed" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=1
fi
exit "$status"
