"""`caxton wasm run` on real modules, including hostile ones: every limit
(fuel, deadline, call depth, memory) stops the guest with a clear trap and
never the host. Modules are built from WAT with wabt's wat2wasm."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import SANITIZER_MARKS, run_cli

WAT2WASM = shutil.which("wat2wasm")
pytestmark = pytest.mark.skipif(not WAT2WASM, reason="wat2wasm (Debian package wabt) is missing")


def build(tmp_path, wat, name="m"):
    src = tmp_path / f"{name}.wat"
    src.write_text(wat)
    out = tmp_path / f"{name}.wasm"
    subprocess.run([WAT2WASM, str(src), "-o", str(out)], check=True, capture_output=True,
                   timeout=60)
    return str(out)


def run(module, *args, timeout=120):
    r = run_cli("wasm", "run", module, *args, timeout=timeout)
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, r.stderr[-3000:]
    return r


def fuel_used(r):
    m = re.search(r"fuel used: (\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    return int(m.group(1))


def test_results_and_fuel(tmp_path):
    m = build(tmp_path, """(module
      (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
      (func (export "pair") (param i64 f64) (result i64 f64) local.get 0 local.get 1))""")
    r = run(m, "--invoke", "add", "2", "40")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "i32:42"
    assert fuel_used(r) > 0
    r = run(m, "--invoke", "pair", "-7", "2.5", "--output", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["results"] == [{"type": "i64", "value": "-7"}, {"type": "f64", "value": "2.5"}]
    assert doc["trap"] is None and doc["fuel_used"] > 0


def test_bad_invocations(tmp_path):
    m = build(tmp_path, '(module (func (export "add") (param i32 i32) (result i32) i32.const 0))')
    r = run(m, "--invoke", "ad", "1", "2")
    assert r.returncode == 1 and "did you mean 'add'" in r.stderr, r.stderr
    r = run(m, "--invoke", "add", "1")
    assert r.returncode == 2 and "takes 2 arguments" in r.stderr, r.stderr
    r = run(m, "--invoke", "add", "1", "x")
    assert r.returncode == 2 and "not a valid i32" in r.stderr, r.stderr
    broken = tmp_path / "broken.wasm"
    broken.write_bytes(b"\0asm\x01\0\0\0\x01\x05")
    r = run(str(broken), "--invoke", "f")
    assert r.returncode == 1 and "broken.wasm" in r.stderr, r.stderr


INFINITE = '(module (func (export "spin") (loop (br 0))))'


def test_infinite_loop_stopped_by_fuel(tmp_path):
    m = build(tmp_path, INFINITE)
    r = run(m, "--invoke", "spin", "--fuel", "100000")
    assert r.returncode == 1
    assert "fuel exhausted" in r.stderr, r.stderr


def test_infinite_loop_stopped_by_deadline(tmp_path):
    m = build(tmp_path, INFINITE)
    r = run(m, "--invoke", "spin", "--fuel", "999999999999999", "--timeout", "300ms")
    assert r.returncode == 1
    assert "deadline exceeded" in r.stderr, r.stderr


def test_fuel_is_deterministic(tmp_path):
    m = build(tmp_path, """(module (func $fib (export "fib") (param i32) (result i32)
      local.get 0 i32.const 2 i32.lt_u
      if (result i32) local.get 0
      else local.get 0 i32.const 1 i32.sub call $fib local.get 0 i32.const 2 i32.sub call $fib
           i32.add end))""")
    used = {fuel_used(run(m, "--invoke", "fib", "20")) for _ in range(3)}
    assert len(used) == 1, used
    r = run(m, "--invoke", "fib", "20", "--fuel", str(used.pop() - 1))
    assert "fuel exhausted" in r.stderr, r.stderr


def test_unbounded_recursion(tmp_path):
    m = build(tmp_path, '(module (func $f (export "f") (call $f)))')
    r = run(m, "--invoke", "f")
    assert r.returncode == 1
    assert "call stack exhausted" in r.stderr, r.stderr


def test_memory_bomb_stops_at_the_limit(tmp_path):
    m = build(tmp_path, """(module (memory 1)
      (func (export "bomb") (result i32) (local i32)
        (block (loop
          (br_if 1 (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
          (local.set 0 (i32.add (local.get 0) (i32.const 1)))
          (br 0)))
        (memory.size)))""")
    r = run(m, "--invoke", "bomb", "--max-memory", "1MB")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "i32:16"


def test_huge_declared_memory_is_refused(tmp_path):
    m = build(tmp_path, '(module (memory 65536) (func (export "f")))')
    r = run(m, "--invoke", "f", "--max-memory", "10MB")
    assert r.returncode == 1
    assert "cannot instantiate" in r.stderr, r.stderr


def test_huge_declared_table_is_refused_or_bounded(tmp_path):
    m = build(tmp_path, '(module (table 100000000 funcref) (func (export "f")))')
    r = run(m, "--invoke", "f")
    assert r.returncode in (0, 1), r.stderr
    if r.returncode == 1:
        assert "cannot instantiate" in r.stderr, r.stderr


def test_deeply_nested_blocks(tmp_path):
    depth = 5000
    body = "(block " * depth + ")" * depth
    m = build(tmp_path, f'(module (func (export "f") {body}))')
    r = run(m, "--invoke", "f")
    assert r.returncode in (0, 1), r.stderr  # runs, or refused with a message
    assert r.stdout.strip() or r.stderr.strip()


def test_many_locals(tmp_path):
    m = build(tmp_path, '(module (func (export "f") (local ' + "i64 " * 100000 + ')))')
    r = run(m, "--invoke", "f")
    assert r.returncode in (0, 1), r.stderr
    if r.returncode == 1:
        assert "locals" in r.stderr, r.stderr


def test_giant_br_table(tmp_path):
    targets = " ".join(["0"] * 60000)
    m = build(tmp_path, f"""(module (func (export "f") (param i32) (result i32)
      (block (br_table {targets} (local.get 0))) (i32.const 7)))""")
    for arg in ("0", "59999", "100000", "-1"):
        r = run(m, "--invoke", "f", arg)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0] == "i32:7"


@pytest.mark.parametrize("address,offset,ok", [
    ("65532", "0", True), ("65533", "0", False), ("0", "65532", True), ("0", "65533", False),
    ("4294967295", "0", False), ("1", "4294967295", False), ("65535", "1", False),
])
def test_loads_and_stores_at_the_boundary(tmp_path, address, offset, ok):
    m = build(tmp_path, f"""(module (memory 1)
      (func (export "load") (param i32) (result i32) (i32.load offset={offset} (local.get 0)))
      (func (export "store") (param i32) (i32.store offset={offset} (local.get 0) (i32.const 1))))""")
    for fn in ("load", "store"):
        r = run(m, "--invoke", fn, address)
        if ok:
            assert r.returncode == 0, r.stderr
        else:
            assert r.returncode == 1
            assert "out of bounds memory access" in r.stderr, r.stderr


def test_start_function_runs_under_the_same_limits(tmp_path):
    m = build(tmp_path, """(module (func $s (loop (br 0))) (start $s)
      (func (export "f") (result i32) (i32.const 1)))""")
    r = run(m, "--invoke", "f", "--timeout", "300ms", "--fuel", "999999999999999")
    assert r.returncode == 1
    assert "deadline exceeded" in r.stderr, r.stderr
    r = run(m, "--invoke", "f", "--fuel", "1000")
    assert r.returncode == 1
    assert "fuel exhausted" in r.stderr, r.stderr


def test_validate_dry_run_is_bounded(tmp_path):
    m = build(tmp_path, "(module (func $s (loop (br 0))) (start $s))")
    r = run_cli("wasm", "validate", m, "--comprehensive", "--timeout", "300ms", timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "dry run: failed" in r.stdout and ("fuel" in r.stdout or "deadline" in r.stdout), r.stdout


def test_max_memory_below_one_page_is_refused(tmp_path):
    m = build(tmp_path, '(module (memory 0) (func (export "f") (result i32) (memory.grow (i32.const 1))))')
    r = run(m, "--invoke", "f", "--max-memory", "1KB")
    assert r.returncode == 2
    assert "at least 64KB" in r.stderr, r.stderr
