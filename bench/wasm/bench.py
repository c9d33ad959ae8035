#!/usr/bin/env python3
"""WebAssembly engine benchmarks: the same C programs natively (gcc -O2), in
Caxton's engine and in wabt's wasm-interp, in the same run, with ratios.

Targets (issue): geometric-mean speed >= 15x wasm-interp and within 10x of
native; fuel metering <= 10% slower than without; instantiating a small
module (one page, ten functions) <= 20 us.

Usage: bench/wasm/bench.py CAXTON_RUN   (the caxton_run binary built by CMake)
"""
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = ["fib", "crc32", "matmul", "quicksort", "sha256", "mixed"]
ROUNDS = 5


def sh(cmd, timeout=600):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout


def build(work, name):
    src = os.path.join(HERE, f"{name}.c")
    wasm = os.path.join(work, f"{name}.wasm")
    native = os.path.join(work, f"{name}.native")
    sh(["clang", "--target=wasm32", "-O2", "-nostdlib", "-Wl,--no-entry", "-Wl,--export=run",
        "-o", wasm, src])
    sh(["gcc", "-O2", "-o", native, src, os.path.join(HERE, "native_main.c")])
    return wasm, native


def wabt_ms(wasm):
    best = math.inf
    for _ in range(3):
        start = time.monotonic()
        out = sh(["wasm-interp", wasm, "--run-all-exports"])
        best = min(best, (time.monotonic() - start) * 1000)
    return int(out.split(":")[-1]), best


def small_module(work):
    funcs = "\n".join(f'(func (export "f{i}") (param i32) (result i32) local.get 0 i32.const {i} '
                      f'i32.add)' for i in range(10))
    wat = os.path.join(work, "small.wat")
    with open(wat, "w") as f:
        f.write(f'(module (memory (export "memory") 1) {funcs})')
    out = os.path.join(work, "small.wasm")
    sh(["wat2wasm", wat, "-o", out])
    return out


def main():
    caxton_run = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/wasm_bench_run"
    for tool in ("clang", "gcc", "wasm-interp", "wat2wasm", "wasm-ld"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run 'scripts/deps.sh bench'")
    print(f"{'program':10s} {'native ms':>10s} {'caxton ms':>10s} {'fuel ms':>9s} "
          f"{'wabt ms':>9s} {'vs wabt':>8s} {'vs native':>10s} {'fuel cost':>9s}")
    speedups, slowdowns, fuel_costs = [], [], []
    with tempfile.TemporaryDirectory(prefix="caxton-wasm-bench-") as work:
        for name in PROGRAMS:
            wasm, native = build(work, name)
            native_ms = float(sh([native, str(ROUNDS)]).split()[1])
            result, caxton_ms = sh([caxton_run, wasm, str(ROUNDS)]).split()
            _, fuel_ms = sh([caxton_run, wasm, str(ROUNDS), "--fuel"]).split()
            caxton_ms, fuel_ms = float(caxton_ms), float(fuel_ms)
            wabt_result, wabt = wabt_ms(wasm)
            if int(result) & 0xffffffff != wabt_result & 0xffffffff:
                sys.exit(f"{name}: caxton returned {result}, wasm-interp {wabt_result}")
            speedups.append(wabt / caxton_ms)
            slowdowns.append(caxton_ms / native_ms)
            fuel_costs.append(fuel_ms / caxton_ms)
            print(f"{name:10s} {native_ms:10.2f} {caxton_ms:10.2f} {fuel_ms:9.2f} {wabt:9.1f} "
                  f"{speedups[-1]:7.1f}x {slowdowns[-1]:9.1f}x {100 * (fuel_costs[-1] - 1):+8.1f}%")
        gm = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))
        print(f"geometric mean: {gm(speedups):.1f}x faster than wasm-interp (target >= 15x), "
              f"{gm(slowdowns):.1f}x native time (target <= 10x), fuel metering "
              f"{100 * (gm(fuel_costs) - 1):+.1f}% (target <= 10%)")
        print("(wasm-interp: whole process, best of 3; native and caxton: median of "
              f"{ROUNDS} calls of run(), compile excluded)")
        us = float(sh([caxton_run, small_module(work), "--instantiate", "2000"]).strip())
        print(f"instantiate a 1-page, 10-function module: {us:.1f} us median (target <= 20 us)")


if __name__ == "__main__":
    main()
