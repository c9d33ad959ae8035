"""The offline `caxton wasm` reports on real module files: validate,
analyze-requirements, compatibility-check and diff, as text and as JSON,
and their errors on broken inputs. Modules are built from WAT with wabt's
wat2wasm; one is compiled from C with clang for wasm32."""
import json
import shutil
import subprocess

import pytest

from conftest import SANITIZER_MARKS, run_cli

WAT2WASM = shutil.which("wat2wasm")
CLANG = shutil.which("clang")
WASM_LD = shutil.which("wasm-ld")
pytestmark = pytest.mark.skipif(not WAT2WASM, reason="wat2wasm (Debian package wabt) is missing")


def build(tmp_path, wat, name="m", *flags):
    src = tmp_path / f"{name}.wat"
    src.write_text(wat)
    out = tmp_path / f"{name}.wasm"
    subprocess.run([WAT2WASM, *flags, str(src), "-o", str(out)], check=True,
                   capture_output=True, timeout=60)
    return str(out)


def wasm(*args, timeout=60):
    r = run_cli("wasm", *args, timeout=timeout)
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, r.stderr[-3000:]
    return r


def wasm_json(*args):
    r = wasm(*args, "--output", "json")
    return r, json.loads(r.stdout)


# An agent as 60-wasm.md describes it: memory, alloc, handle_message. The
# message handler loops len+10 times so its fuel is measurable.
AGENT = """(module
  (import "caxton" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2 16)
  (global $next (mut i32) (i32.const 1024))
  (func (export "alloc") (param i32) (result i32)
    global.get $next (global.set $next (i32.add (global.get $next) (local.get 0))))
  (func (export "handle_message") (param i32 i32) (result i32) (local i32)
    (local.set 2 (i32.add (local.get 1) (i32.const 10)))
    (loop (local.set 2 (i32.sub (local.get 2) (i32.const 1))) (br_if 0 (local.get 2)))
    (call $log (i32.const 0) (local.get 0) (i32.extend8_s (local.get 1)))
    i32.const 0))"""

STANDALONE = AGENT.replace('(import "caxton" "log" (func $log (param i32 i32 i32)))', "") \
    .replace("(call $log (i32.const 0) (local.get 0) (i32.extend8_s (local.get 1)))", "")


def broken_files(tmp_path):
    """(path, what the error says) for inputs that are not modules."""
    truncated = tmp_path / "truncated.wasm"
    truncated.write_bytes(b"\0asm\x01\0\0\0\x01\x05")
    text = tmp_path / "text.wasm"
    text.write_text("(module)\n")
    return [(str(truncated), "malformed"), (str(text), "magic header"),
            (str(tmp_path / "missing.wasm"), "cannot read")]


# ---- validate --------------------------------------------------------------------------------

def test_validate_valid_malformed_invalid(tmp_path):
    good = build(tmp_path, AGENT, "agent")
    r = wasm("validate", good)
    assert r.returncode == 0 and "valid" in r.stdout, r.stdout + r.stderr

    truncated = tmp_path / "truncated.wasm"
    truncated.write_bytes(open(good, "rb").read()[:-5])
    r = wasm("validate", str(truncated))
    assert r.returncode == 1
    assert "malformed" in r.stdout and "offset" in r.stdout, r.stdout

    invalid = build(tmp_path, '(module (func (result i32) i64.const 1))', "invalid",
                    "--no-check")
    r = wasm("validate", invalid)
    assert r.returncode == 1 and "invalid" in r.stdout and "type mismatch" in r.stdout, r.stdout
    r, doc = wasm_json("validate", invalid)
    assert r.returncode == 1 and doc["valid"] is False and doc["kind"] == "invalid"


def test_validate_comprehensive_dry_run(tmp_path):
    ok = build(tmp_path, STANDALONE, "ok")
    r = wasm("validate", ok, "--comprehensive")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "handle_message" in r.stdout and "dry run: ok" in r.stdout, r.stdout

    trapping = build(tmp_path, '(module (func $s unreachable) (start $s))', "trap")
    r = wasm("validate", trapping, "--comprehensive")
    assert r.returncode == 1 and "unreachable" in r.stdout, r.stdout
    r, doc = wasm_json("validate", trapping, "--comprehensive")
    assert doc["valid"] is True and doc["dry_run"]["result"] == "failed"

    r = wasm("validate", build(tmp_path, AGENT, "agent"), "--comprehensive")
    assert r.returncode == 0 and "skipped" in r.stdout, r.stdout


# ---- analyze-requirements --------------------------------------------------------------------

def test_analyze_requirements_text(tmp_path):
    r = wasm("analyze-requirements", build(tmp_path, STANDALONE, "agent"))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "memory: 2..16 pages" in out, out
    assert "exports (3):" in out and "handle_message" in out and "alloc" in out
    assert "imports (0):" in out
    assert "fuel estimate: handle_message(ptr, 0) used" in out, out
    assert "within the fuel per message of: strict, default, relaxed" in out, out


def test_analyze_requirements_json(tmp_path):
    r, doc = wasm_json("analyze-requirements", build(tmp_path, STANDALONE, "agent"))
    assert r.returncode == 0
    assert doc["memory"] == {"min_pages": 2, "max_pages": 16, "min_bytes": 131072}
    assert doc["tables"] == [] and doc["imports"] == []
    assert {e["name"] for e in doc["exports"]} == {"memory", "alloc", "handle_message"}
    assert doc["features"] == [] and doc["code_size"] > 0 and doc["custom_sections_size"] == 0
    assert doc["functions"] == {"defined": 2, "imported": 0, "max_locals": 3}
    est = doc["fuel_estimate"]
    assert est["function"] == "handle_message" and est["trap"] is None
    assert est["fuel_used"] > 10 and est["within_policy_fuel"]["strict"] is True
    # Deterministic: the same module gives the same fuel.
    _, again = wasm_json("analyze-requirements", build(tmp_path, STANDALONE, "agent"))
    assert again["fuel_estimate"]["fuel_used"] == est["fuel_used"]


def test_analyze_requirements_estimates(tmp_path):
    # Imports: no dry run.
    _, doc = wasm_json("analyze-requirements", build(tmp_path, AGENT, "agent"))
    assert doc["fuel_estimate"]["function"] is None
    assert "caxton.log" in doc["fuel_estimate"]["reason"]
    assert doc["imports"] == [{"module": "caxton", "name": "log", "kind": "func",
                               "type": "(i32, i32, i32) -> ()"}]
    assert doc["features"] == ["sign-extension"]
    r = wasm("analyze-requirements", build(tmp_path, AGENT, "agent"))
    assert "fuel estimate: none (it imports caxton.log" in r.stdout, r.stdout

    # run() that never ends: the fuel or the deadline stops it; still a report.
    spin = build(tmp_path, '(module (func (export "run") (loop (br 0))))', "spin")
    r, doc = wasm_json("analyze-requirements", spin)
    assert r.returncode == 0
    est = doc["fuel_estimate"]
    assert est["function"] == "run"
    assert est["trap"] in ("fuel exhausted", "deadline exceeded"), est
    assert not any(est["within_policy_fuel"].values())

    # A start function alone.
    start = build(tmp_path, '(module (global (mut i32) (i32.const 0)) (func $s '
                  '(global.set 0 (i32.const 7))) (start $s))', "start")
    _, doc = wasm_json("analyze-requirements", start)
    assert doc["fuel_estimate"]["function"] == "start" and doc["fuel_estimate"]["fuel_used"] > 0

    # Nothing to run.
    lib = build(tmp_path, '(module (func (export "f")))', "lib")
    _, doc = wasm_json("analyze-requirements", lib)
    assert "neither handle_message nor run" in doc["fuel_estimate"]["reason"]
    assert doc["memory"] is None


def test_features_detected(tmp_path):
    cases = {
        "sign-extension": '(module (func (param i32) (result i32) (i32.extend16_s (local.get 0))))',
        "saturating-conversions":
            '(module (func (param f32) (result i32) (i32.trunc_sat_f32_s (local.get 0))))',
        "multi-value": '(module (func (result i32 i32) i32.const 1 i32.const 2))',
        "bulk-memory": '(module (memory 1) (func (memory.fill (i32.const 0) (i32.const 0) '
                       '(i32.const 0))))',
        "reference-types": '(module (table 1 externref) (func (param externref)))',
        "mutable-globals": '(module (global (export "g") (mut i32) (i32.const 0)))',
    }
    for feature, wat in cases.items():
        _, doc = wasm_json("analyze-requirements", build(tmp_path, wat, feature))
        assert doc["features"] == [feature], (feature, doc["features"])
    _, doc = wasm_json("analyze-requirements", build(tmp_path, '(module (func (result i32) '
                                                     '(i32.add (i32.const 1) (i32.const 2))))',
                                                     "mvp"))
    assert doc["features"] == []


# ---- compatibility-check ---------------------------------------------------------------------

def compat(tmp_path, wat, name, *flags):
    return wasm_json("compatibility-check", build(tmp_path, wat, name), *flags)


def verdicts(doc):
    return {p["policy"]: p["compatible"] for p in doc["policies"]}


def test_compatibility_strict_module(tmp_path):
    r, doc = compat(tmp_path, AGENT, "agent")
    assert r.returncode == 0
    assert verdicts(doc) == {"strict": True, "default": True, "relaxed": True}
    assert doc["compatible_policies"] == ["strict", "default", "relaxed"]
    assert doc["notes"] == []  # memory, alloc and handle_message are all exported
    r = wasm("compatibility-check", build(tmp_path, AGENT, "agent"))
    assert r.returncode == 0
    assert "compatible with strict, default, relaxed" in r.stdout, r.stdout
    assert "POLICY" in r.stdout and "engine" in r.stdout


def test_compatibility_needs_default_or_relaxed(tmp_path):
    wat = """(module (import "caxton" "send" (func (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (memory 1) (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 0))))"""
    r, doc = compat(tmp_path, wat, "default")
    assert r.returncode == 0
    assert verdicts(doc) == {"strict": False, "default": True, "relaxed": True}
    strict = doc["policies"][0]["reasons"]
    assert any("bulk-memory" in x for x in strict), strict
    assert any("caxton.send" in x and "default" in x for x in strict), strict
    assert any("wasi_snapshot_preview1.fd_write" in x for x in strict), strict

    wat = '(module (import "caxton" "tool_call" (func (param i32 i32 i32 i32) (result i32))))'
    r, doc = compat(tmp_path, wat, "relaxed")
    assert r.returncode == 0 and doc["compatible_policies"] == ["relaxed"]


def test_compatibility_refused_everywhere(tmp_path):
    # Too much memory at start for any policy (64MB is the largest).
    r, doc = compat(tmp_path, '(module (memory 2000))', "big")
    assert r.returncode == 1 and doc["compatible_policies"] == []
    assert "2000 pages" in doc["policies"][2]["reasons"][0]
    # An import the host has, with the wrong type.
    r, doc = compat(tmp_path, '(module (import "caxton" "log" (func (param i32))))', "badtype")
    assert r.returncode == 1
    assert "the host's has type (i32, i32, i32) -> ()" in doc["policies"][1]["reasons"][0]
    # An import nobody provides, in text.
    r = wasm("compatibility-check",
             build(tmp_path, '(module (import "env" "mystery" (func)))', "unknown"))
    assert r.returncode == 1
    assert "compatible with no policy" in r.stdout and "env.mystery" in r.stdout, r.stdout


def test_compatibility_simd_and_runtime_version(tmp_path):
    simd = build(tmp_path, '(module (func (result v128) v128.const i32x4 1 2 3 4))', "simd")
    r, doc = wasm_json("compatibility-check", simd)
    assert r.returncode == 1
    assert doc["engine"]["compatible"] is False and "SIMD" in doc["engine"]["reasons"][0]
    r = wasm("compatibility-check", simd)
    assert r.returncode == 1 and "SIMD" in r.stdout, r.stdout

    version = run_cli("--version").stdout.split()[-1]
    r = wasm("compatibility-check", build(tmp_path, AGENT, "agent"), "--runtime-version")
    assert r.returncode == 0
    assert f"runtime: caxton {version}, WebAssembly 2.0 core without SIMD" in r.stdout, r.stdout
    assert "reference-types" in r.stdout
    r, doc = wasm_json("compatibility-check", build(tmp_path, AGENT, "agent"),
                       "--runtime-version")
    assert doc["runtime"]["version"] == version
    assert "bulk-memory" in doc["runtime"]["features"]


# ---- diff ------------------------------------------------------------------------------------

OLD = """(module
  (import "caxton" "log" (func (param i32 i32 i32)))
  (memory (export "memory") 1 4)
  (func (export "handle_message") (param i32 i32) (result i32) i32.const 0)
  (func (export "health") (result i32) i32.const 0))"""

NEW = """(module
  (import "caxton" "log" (func (param i32 i32 i32)))
  (import "caxton" "reply" (func (param i32 i32) (result i32)))
  (memory (export "memory") 2 4)
  (func (export "handle_message") (param i32 i32) (result i32)
    (drop (call 1 (local.get 0) (local.get 1))) i32.const 0)
  (func (export "init") (result i32) i32.const 0))"""


def test_diff_json(tmp_path):
    a, b = build(tmp_path, OLD, "old"), build(tmp_path, NEW, "new", "--debug-names")
    r, doc = wasm_json("diff", a, b)
    assert r.returncode == 0, r.stderr
    assert doc["identical"] is False
    assert [i["name"] for i in doc["imports"]["added"]] == ["caxton.reply"]
    assert doc["imports"]["removed"] == [] and doc["imports"]["changed"] == []
    assert [e["name"] for e in doc["exports"]["added"]] == ["init"]
    assert [e["name"] for e in doc["exports"]["removed"]] == ["health"]
    assert doc["memory"][0]["min_pages"] == 1 and doc["memory"][1]["min_pages"] == 2
    changed = doc["functions"]["changed"]
    assert [c["name"] for c in changed] == ["handle_message"]
    assert changed[0]["to"]["size"] > changed[0]["from"]["size"]
    assert doc["functions"]["imported"] == [1, 2]
    assert any(s["name"] == "custom:name" for s in doc["sections"]["added"]), doc["sections"]


def test_diff_text_and_identical(tmp_path):
    a, b = build(tmp_path, OLD, "old"), build(tmp_path, NEW, "new")
    r = wasm("diff", a, b)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "+  caxton.reply" in out and "-  health" in out and "+  init" in out, out
    assert "memory: 1..4 pages -> 2..4 pages" in out, out
    assert "handle_message" in out and "imported functions: 1 -> 2" in out, out
    # An export whose type changed.
    c = build(tmp_path, OLD.replace('(export "health") (result i32) i32.const 0',
                                    '(export "health") (result i64) i64.const 0'), "c")
    r, doc = wasm_json("diff", a, c)
    assert [x["name"] for x in doc["exports"]["changed"]] == ["health"]
    assert doc["exports"]["changed"][0]["to"]["type"] == "() -> (i64)"
    r = wasm("diff", a, a)
    assert r.returncode == 0 and "no differences" in r.stdout, r.stdout
    _, doc = wasm_json("diff", a, a)
    assert doc["identical"] is True


# ---- broken inputs ---------------------------------------------------------------------------

def test_broken_inputs(tmp_path):
    good = build(tmp_path, STANDALONE, "good")
    for path, says in broken_files(tmp_path):
        for args in (["analyze-requirements", path], ["compatibility-check", path],
                     ["diff", good, path], ["diff", path, good]):
            r = wasm(*args)
            assert r.returncode == 1, (args, r.stdout, r.stderr)
            assert says in r.stderr and path in r.stderr, (args, r.stderr)
            assert r.stdout == "", (args, r.stdout)
        r = wasm("validate", path)
        assert r.returncode == 1 and says in r.stdout + r.stderr, (r.stdout, r.stderr)
    r = wasm("diff", good)
    assert r.returncode == 2, r.stderr


# ---- a module compiled from C ----------------------------------------------------------------

AGENT_C = r"""
static unsigned char heap[65536];
static unsigned long used;

unsigned char *alloc(unsigned long size) {
    unsigned char *p = heap + used;
    used += (size + 7) & ~7ul;
    return p;
}

static unsigned crc(const unsigned char *p, unsigned long n) {
    unsigned c = ~0u;
    for (unsigned long i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & -(c & 1));
    }
    return ~c;
}

int handle_message(const unsigned char *msg, unsigned long len) {
    unsigned table[64];
    for (int i = 0; i < 64; i++) table[i] = crc((const unsigned char *)"caxton", 6) + i;
    return (int)(crc(msg, len) ^ table[len & 63]) == 0;
}
"""


@pytest.mark.skipif(not (CLANG and WASM_LD), reason="clang or wasm-ld is missing")
def test_module_built_by_clang(tmp_path):
    src = tmp_path / "agent.c"
    src.write_text(AGENT_C)
    out = str(tmp_path / "agent.wasm")
    subprocess.run([CLANG, "--target=wasm32", "-O2", "-nostdlib", "-Wl,--no-entry",
                    "-Wl,--export-all", "-o", out, str(src)], check=True, capture_output=True,
                   timeout=120)
    r = wasm("validate", out, "--comprehensive")
    assert r.returncode == 0, r.stdout + r.stderr
    r, doc = wasm_json("analyze-requirements", out)
    assert r.returncode == 0
    assert doc["memory"]["min_pages"] >= 2  # the 64 KiB heap lives in memory
    assert {"alloc", "handle_message", "memory"} <= {e["name"] for e in doc["exports"]}
    est = doc["fuel_estimate"]
    assert est["function"] == "handle_message" and est["trap"] is None, est
    assert est["fuel_used"] > 64 and "alloc_fuel_used" in est
    r = wasm("analyze-requirements", out)
    assert "fuel estimate: handle_message(ptr, 0) used" in r.stdout, r.stdout
    r, doc = wasm_json("compatibility-check", out)
    assert r.returncode == 0 and "default" in doc["compatible_policies"], doc
    assert doc["notes"] == []
    r = wasm("diff", out, out)
    assert r.returncode == 0 and "no differences" in r.stdout
