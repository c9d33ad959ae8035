/* Unit tests for the engine's compiler, interpreter and run time: modules
 * are written in the text format and assembled with wabt's wat2wasm at test
 * time (skipped when it is not installed), then instantiated and called
 * through the public API (wasm/wasm.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "wasm/wasm.h"

/* ---- helpers -------------------------------------------------------------- */

static bool have_wat2wasm(void)
{
    return system("wat2wasm --version >/dev/null 2>&1") == 0;
}

/* Assembles `wat`; NULL when wat2wasm fails. */
static uint8_t *assemble(const char *wat, size_t *len)
{
    const char *tmp = getenv("TMPDIR");
    char dir[256];
    snprintf(dir, sizeof dir, "%s/caxton-wasm-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return NULL;
    char in[300], out[300], cmd[700];
    snprintf(in, sizeof in, "%s/m.wat", dir);
    snprintf(out, sizeof out, "%s/m.wasm", dir);
    FILE *f = fopen(in, "w");
    if (!f)
        return NULL;
    fputs(wat, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "wat2wasm %s -o %s 2>&1", in, out);
    uint8_t *bytes = NULL;
    if (system(cmd) == 0) {
        char *data = NULL;
        cx_error err = {0};
        if (fs_read_file(out, 1 << 24, &data, len, &err) == 0)
            bytes = (uint8_t *)data;
    }
    unlink(in);
    unlink(out);
    rmdir(dir);
    return bytes;
}

typedef struct fixture {
    wasm_store *store;
    wasm_module *module;
    wasm_instance *inst;
} fixture;

static wasm_module *compile_wat(const char *wat)
{
    size_t len = 0;
    uint8_t *bytes = assemble(wat, &len);
    assert_non_null(bytes);
    cx_error err = {0};
    wasm_features features = wasm_features_2_0();
    wasm_module *m = wasm_module_new(bytes, len, &features, &err);
    if (!m)
        fprintf(stderr, "module refused: %s\n", err.msg);
    free(bytes);
    assert_non_null(m);
    return m;
}

static void load_with(fixture *fx, const char *wat, const wasm_limits *limits,
                      const wasm_extern *imports, size_t import_count)
{
    fx->module = compile_wat(wat);
    fx->store = wasm_store_new(limits);
    assert_non_null(fx->store);
    wasm_trap trap;
    cx_error err = {0};
    fx->inst = wasm_instantiate(fx->store, fx->module, imports, import_count, &trap, &err);
    if (!fx->inst)
        fprintf(stderr, "instantiation failed: %s / %s\n", err.msg, trap.message);
    assert_non_null(fx->inst);
}

static void load(fixture *fx, const char *wat)
{
    load_with(fx, wat, NULL, NULL, 0);
}

static void unload(fixture *fx)
{
    wasm_store_free(fx->store);
    wasm_module_unref(fx->module);
}

static wasm_func *export_func(fixture *fx, const char *name)
{
    wasm_extern ext;
    assert_true(wasm_instance_export(fx->inst, name, &ext));
    assert_int_equal(ext.kind, WASM_EXTERN_FUNC);
    return ext.of.func;
}

static wasm_value i32v(uint32_t v)
{
    return (wasm_value){.type = WASM_I32, .of.i32 = v};
}

static wasm_value i64v(uint64_t v)
{
    return (wasm_value){.type = WASM_I64, .of.i64 = v};
}

static wasm_value f32v(float f)
{
    wasm_value v = {.type = WASM_F32};
    memcpy(&v.of.f32, &f, 4);
    return v;
}

static wasm_value f64v(double d)
{
    wasm_value v = {.type = WASM_F64};
    memcpy(&v.of.f64, &d, 8);
    return v;
}

/* Calls `name` with up to 4 arguments; returns 0 or -1 with *trap. */
static int invoke(fixture *fx, const char *name, wasm_value *results, size_t nresults,
                  wasm_trap *trap, size_t nargs, ...)
{
    wasm_value args[4];
    va_list ap;
    va_start(ap, nargs);
    for (size_t i = 0; i < nargs; i++)
        args[i] = va_arg(ap, wasm_value);
    va_end(ap);
    return wasm_call(fx->store, export_func(fx, name), args, nargs, results, nresults, trap);
}

static uint32_t call_i32(fixture *fx, const char *name, size_t nargs, ...)
{
    wasm_value args[4], result;
    wasm_trap trap;
    va_list ap;
    va_start(ap, nargs);
    for (size_t i = 0; i < nargs; i++)
        args[i] = va_arg(ap, wasm_value);
    va_end(ap);
    int rc = wasm_call(fx->store, export_func(fx, name), args, nargs, &result, 1, &trap);
    if (rc != 0)
        fprintf(stderr, "%s trapped: %s\n", name, trap.message);
    assert_int_equal(rc, 0);
    return result.of.i32;
}

static void expect_trap(fixture *fx, const char *name, const char *message, size_t nargs, ...)
{
    wasm_value args[4], results[4];
    wasm_trap trap;
    va_list ap;
    va_start(ap, nargs);
    for (size_t i = 0; i < nargs; i++)
        args[i] = va_arg(ap, wasm_value);
    va_end(ap);
    int rc = wasm_call(fx->store, export_func(fx, name), args, nargs, results, 4, &trap);
    assert_int_equal(rc, -1);
    assert_string_equal(trap.message, message);
}

#define SKIP_WITHOUT_WABT()                                                                     \
    do {                                                                                        \
        if (!have_wat2wasm())                                                                   \
            skip();                                                                             \
    } while (0)

/* ---- integer arithmetic ---------------------------------------------------- */

static const char *INT_WAT =
    "(module\n"
    " (func (export \"div_s\") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))\n"
    " (func (export \"div_u\") (param i32 i32) (result i32) (i32.div_u (local.get 0) (local.get 1)))\n"
    " (func (export \"rem_s\") (param i32 i32) (result i32) (i32.rem_s (local.get 0) (local.get 1)))\n"
    " (func (export \"rotl\") (param i32 i32) (result i32) (i32.rotl (local.get 0) (local.get 1)))\n"
    " (func (export \"shr_s\") (param i32 i32) (result i32) (i32.shr_s (local.get 0) (local.get 1)))\n"
    " (func (export \"clz\") (param i32) (result i32) (i32.clz (local.get 0)))\n"
    " (func (export \"ctz64\") (param i64) (result i64) (i64.ctz (local.get 0)))\n"
    " (func (export \"div64\") (param i64 i64) (result i64) (i64.div_s (local.get 0) (local.get 1)))\n"
    " (func (export \"rem64\") (param i64 i64) (result i64) (i64.rem_s (local.get 0) (local.get 1)))\n"
    " (func (export \"mul64\") (param i64 i64) (result i64) (i64.mul (local.get 0) (local.get 1)))\n"
    " (func (export \"ext8\") (param i32) (result i32) (i32.extend8_s (local.get 0)))\n"
    " (func (export \"ext32\") (param i64) (result i64) (i64.extend32_s (local.get 0)))\n"
    " (func (export \"wrap\") (param i64) (result i32) (i32.wrap_i64 (local.get 0)))\n"
    " (func (export \"extu\") (param i32) (result i64) (i64.extend_i32_u (local.get 0)))\n"
    " (func (export \"exts\") (param i32) (result i64) (i64.extend_i32_s (local.get 0)))\n"
    " (func (export \"lt_s\") (param i32 i32) (result i32) (i32.lt_s (local.get 0) (local.get 1)))\n"
    " (func (export \"lt_u64\") (param i64 i64) (result i32) (i64.lt_u (local.get 0) (local.get 1)))\n"
    ")\n";

static void test_integer_arithmetic(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    fixture fx;
    load(&fx, INT_WAT);
    assert_int_equal(call_i32(&fx, "div_s", 2, i32v((uint32_t)-7), i32v(2)), (uint32_t)-3);
    assert_int_equal(call_i32(&fx, "div_u", 2, i32v((uint32_t)-1), i32v(2)), 0x7fffffffu);
    assert_int_equal(call_i32(&fx, "rem_s", 2, i32v((uint32_t)-7), i32v(2)), (uint32_t)-1);
    assert_int_equal(call_i32(&fx, "rem_s", 2, i32v(0x80000000u), i32v((uint32_t)-1)), 0);
    assert_int_equal(call_i32(&fx, "rotl", 2, i32v(0x80000001u), i32v(33)), 0x00000003u);
    assert_int_equal(call_i32(&fx, "shr_s", 2, i32v(0x80000000u), i32v(31)), 0xffffffffu);
    assert_int_equal(call_i32(&fx, "clz", 1, i32v(0)), 32);
    assert_int_equal(call_i32(&fx, "clz", 1, i32v(1)), 31);
    assert_int_equal(call_i32(&fx, "ext8", 1, i32v(0x80)), 0xffffff80u);
    assert_int_equal(call_i32(&fx, "wrap", 1, i64v(0x1234567890ull)), 0x34567890u);
    assert_int_equal(call_i32(&fx, "lt_s", 2, i32v((uint32_t)-1), i32v(0)), 1);
    assert_int_equal(call_i32(&fx, "lt_u64", 2, i64v((uint64_t)-1), i64v(0)), 0);

    wasm_value r;
    wasm_trap trap;
    assert_int_equal(invoke(&fx, "ctz64", &r, 1, &trap, 1, i64v(0)), 0);
    assert_int_equal(r.of.i64, 64);
    assert_int_equal(invoke(&fx, "mul64", &r, 1, &trap, 2, i64v(0x100000001ull), i64v(3)), 0);
    assert_int_equal(r.of.i64, 0x300000003ull);
    assert_int_equal(invoke(&fx, "rem64", &r, 1, &trap, 2, i64v(0x8000000000000000ull),
                            i64v((uint64_t)-1)), 0);
    assert_int_equal(r.of.i64, 0);
    assert_int_equal(invoke(&fx, "ext32", &r, 1, &trap, 1, i64v(0x80000000ull)), 0);
    assert_int_equal(r.of.i64, 0xffffffff80000000ull);
    assert_int_equal(invoke(&fx, "extu", &r, 1, &trap, 1, i32v(0xffffffffu)), 0);
    assert_int_equal(r.of.i64, 0xffffffffull);
    assert_int_equal(invoke(&fx, "exts", &r, 1, &trap, 1, i32v(0xffffffffu)), 0);
    assert_int_equal(r.of.i64, UINT64_MAX);

    expect_trap(&fx, "div_s", "integer divide by zero", 2, i32v(1), i32v(0));
    expect_trap(&fx, "div_s", "integer overflow", 2, i32v(0x80000000u), i32v((uint32_t)-1));
    expect_trap(&fx, "div_u", "integer divide by zero", 2, i32v(1), i32v(0));
    expect_trap(&fx, "rem_s", "integer divide by zero", 2, i32v(1), i32v(0));
    expect_trap(&fx, "div64", "integer overflow", 2, i64v(0x8000000000000000ull),
                i64v((uint64_t)-1));
    unload(&fx);
}

/* ---- floating point --------------------------------------------------------- */

static const char *FLOAT_WAT =
    "(module\n"
    " (func (export \"min32\") (param f32 f32) (result f32) (f32.min (local.get 0) (local.get 1)))\n"
    " (func (export \"max32\") (param f32 f32) (result f32) (f32.max (local.get 0) (local.get 1)))\n"
    " (func (export \"min64\") (param f64 f64) (result f64) (f64.min (local.get 0) (local.get 1)))\n"
    " (func (export \"nearest\") (param f64) (result f64) (f64.nearest (local.get 0)))\n"
    " (func (export \"neg\") (param f32) (result f32) (f32.neg (local.get 0)))\n"
    " (func (export \"copysign\") (param f64 f64) (result f64) (f64.copysign (local.get 0) (local.get 1)))\n"
    " (func (export \"add32\") (param f32 f32) (result f32) (f32.add (local.get 0) (local.get 1)))\n"
    " (func (export \"trunc_s\") (param f32) (result i32) (i32.trunc_f32_s (local.get 0)))\n"
    " (func (export \"trunc_u64\") (param f64) (result i64) (i64.trunc_f64_u (local.get 0)))\n"
    " (func (export \"trunc_u\") (param f64) (result i32) (i32.trunc_f64_u (local.get 0)))\n"
    " (func (export \"sat_s\") (param f32) (result i32) (i32.trunc_sat_f32_s (local.get 0)))\n"
    " (func (export \"sat_u64\") (param f64) (result i64) (i64.trunc_sat_f64_u (local.get 0)))\n"
    " (func (export \"conv_u64\") (param i64) (result f32) (f32.convert_i64_u (local.get 0)))\n"
    " (func (export \"reinterpret\") (param f32) (result i32) (i32.reinterpret_f32 (local.get 0)))\n"
    " (func (export \"eq\") (param f64 f64) (result i32) (f64.eq (local.get 0) (local.get 1)))\n"
    ")\n";

static uint32_t bits32(wasm_value v)
{
    return v.of.f32;
}

static void test_float_semantics(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    fixture fx;
    load(&fx, FLOAT_WAT);
    wasm_value r;
    wasm_trap trap;

    assert_int_equal(invoke(&fx, "min32", &r, 1, &trap, 2, f32v(0.0f), f32v(-0.0f)), 0);
    assert_int_equal(bits32(r), 0x80000000u);
    assert_int_equal(invoke(&fx, "max32", &r, 1, &trap, 2, f32v(-0.0f), f32v(0.0f)), 0);
    assert_int_equal(bits32(r), 0x00000000u);
    assert_int_equal(invoke(&fx, "min32", &r, 1, &trap, 2, f32v(NAN), f32v(1.0f)), 0);
    float f;
    memcpy(&f, &r.of.f32, 4);
    assert_true(isnan(f));
    assert_int_equal(invoke(&fx, "max32", &r, 1, &trap, 2, f32v(1.0f), f32v(NAN)), 0);
    memcpy(&f, &r.of.f32, 4);
    assert_true(isnan(f));
    /* A signalling NaN operand gives a quiet (arithmetic) NaN. */
    wasm_value snan = {.type = WASM_F32, .of.f32 = 0x7fa00000u};
    assert_int_equal(invoke(&fx, "add32", &r, 1, &trap, 2, snan, f32v(1.0f)), 0);
    assert_int_equal(r.of.f32 & 0x7fc00000u, 0x7fc00000u);
    /* neg and copysign are bit operations: the NaN payload survives. */
    assert_int_equal(invoke(&fx, "neg", &r, 1, &trap, 1, snan), 0);
    assert_int_equal(r.of.f32, 0xffa00000u);
    assert_int_equal(invoke(&fx, "reinterpret", &r, 1, &trap, 1, snan), 0);
    assert_int_equal(r.of.i32, 0x7fa00000u);

    double d;
    assert_int_equal(invoke(&fx, "min64", &r, 1, &trap, 2, f64v(-0.0), f64v(0.0)), 0);
    assert_int_equal(r.of.f64, 0x8000000000000000ull);
    assert_int_equal(invoke(&fx, "nearest", &r, 1, &trap, 1, f64v(2.5)), 0);
    memcpy(&d, &r.of.f64, 8);
    assert_true(d == 2.0);
    assert_int_equal(invoke(&fx, "nearest", &r, 1, &trap, 1, f64v(-0.5)), 0);
    assert_int_equal(r.of.f64, 0x8000000000000000ull);
    assert_int_equal(invoke(&fx, "copysign", &r, 1, &trap, 2, f64v(3.0), f64v(-0.0)), 0);
    memcpy(&d, &r.of.f64, 8);
    assert_true(d == -3.0);
    assert_int_equal(call_i32(&fx, "eq", 2, f64v(NAN), f64v(NAN)), 0);

    assert_int_equal(call_i32(&fx, "trunc_s", 1, f32v(-2147483648.0f)), 0x80000000u);
    assert_int_equal(call_i32(&fx, "trunc_s", 1, f32v(-1.9f)), (uint32_t)-1);
    assert_int_equal(call_i32(&fx, "trunc_u", 1, f64v(-0.9)), 0);
    assert_int_equal(call_i32(&fx, "trunc_u", 1, f64v(4294967295.9)), 0xffffffffu);
    expect_trap(&fx, "trunc_s", "integer overflow", 1, f32v(2147483648.0f));
    expect_trap(&fx, "trunc_s", "invalid conversion to integer", 1, f32v(NAN));
    expect_trap(&fx, "trunc_u", "integer overflow", 1, f64v(-1.0));
    expect_trap(&fx, "trunc_u", "integer overflow", 1, f64v(4294967296.0));
    expect_trap(&fx, "trunc_u64", "integer overflow", 1, f64v(18446744073709551616.0));
    assert_int_equal(invoke(&fx, "trunc_u64", &r, 1, &trap, 1, f64v(18446744073709549568.0)), 0);
    assert_int_equal(r.of.i64, 18446744073709549568ull);

    assert_int_equal(call_i32(&fx, "sat_s", 1, f32v(1e10f)), 0x7fffffffu);
    assert_int_equal(call_i32(&fx, "sat_s", 1, f32v(-1e10f)), 0x80000000u);
    assert_int_equal(call_i32(&fx, "sat_s", 1, f32v(NAN)), 0);
    assert_int_equal(invoke(&fx, "sat_u64", &r, 1, &trap, 1, f64v(-5.0)), 0);
    assert_int_equal(r.of.i64, 0);
    assert_int_equal(invoke(&fx, "sat_u64", &r, 1, &trap, 1, f64v(1e30)), 0);
    assert_int_equal(r.of.i64, UINT64_MAX);
    /* Correct rounding of u64 -> f32 (no double rounding). */
    assert_int_equal(invoke(&fx, "conv_u64", &r, 1, &trap, 1, i64v(0x8000008000000001ull)), 0);
    assert_int_equal(r.of.f32, 0x5f000001u);
    unload(&fx);
}

/* ---- control flow, calls ------------------------------------------------------ */

static const char *CONTROL_WAT =
    "(module\n"
    " (type $ii (func (param i32) (result i32)))\n"
    " (type $v (func))\n"
    " (table 4 funcref)\n"
    " (elem (i32.const 0) $fib $double $nothing)\n"
    " (func $fib (export \"fib\") (type $ii)\n"
    "   (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))\n"
    "     (then (local.get 0))\n"
    "     (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))\n"
    "                    (call $fib (i32.sub (local.get 0) (i32.const 2)))))))\n"
    " (func $double (type $ii) (i32.mul (local.get 0) (i32.const 2)))\n"
    " (func $nothing (type $v))\n"
    " (func (export \"indirect\") (param i32 i32) (result i32)\n"
    "   (call_indirect (type $ii) (local.get 1) (local.get 0)))\n"
    " (func (export \"sum\") (param i32) (result i32) (local i32)\n"
    "   (block $done (loop $next\n"
    "     (br_if $done (i32.eqz (local.get 0)))\n"
    "     (local.set 1 (i32.add (local.get 1) (local.get 0)))\n"
    "     (local.set 0 (i32.sub (local.get 0) (i32.const 1)))\n"
    "     (br $next)))\n"
    "   (local.get 1))\n"
    " (func (export \"switch\") (param i32) (result i32)\n"
    "   (block $d (block $c (block $b (block $a\n"
    "     (br_table $a $b $c $d (local.get 0)))\n"
    "     (return (i32.const 10)))\n"
    "     (return (i32.const 11)))\n"
    "     (return (i32.const 12)))\n"
    "   (i32.const 13))\n"
    " (func $pair (param i32) (result i32 i32) (local.get 0) (i32.add (local.get 0) (i32.const 1)))\n"
    " (func (export \"multi\") (param i32) (result i32)\n"
    "   (call $pair (local.get 0))\n"
    "   (block (param i32 i32) (result i32) (i32.sub))\n"
    "   )\n"
    " (func (export \"keep\") (param i32) (result i32)\n"
    "   (i32.const 100)\n"
    "   (block (result i32)\n"
    "     (i32.const 1) (i32.const 2) (drop) (drop)\n"
    "     (i32.const 7) (br_if 0 (local.get 0)) (drop) (i32.const 8))\n"
    "   (i32.add))\n"
    " (func (export \"select\") (param i32) (result i32) (select (i32.const 1) (i32.const 2) (local.get 0)))\n"
    " (func (export \"boom\") (unreachable))\n"
    " (func $down (export \"down\") (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))\n"
    ")\n";

static void test_control_and_calls(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    fixture fx;
    load(&fx, CONTROL_WAT);
    assert_int_equal(call_i32(&fx, "fib", 1, i32v(20)), 6765);
    assert_int_equal(call_i32(&fx, "sum", 1, i32v(100)), 5050);
    for (uint32_t i = 0; i < 6; i++)
        assert_int_equal(call_i32(&fx, "switch", 1, i32v(i)), i < 3 ? 10 + i : 13);
    assert_int_equal(call_i32(&fx, "multi", 1, i32v(5)), (uint32_t)-1);
    assert_int_equal(call_i32(&fx, "keep", 1, i32v(1)), 107);
    assert_int_equal(call_i32(&fx, "keep", 1, i32v(0)), 108);
    assert_int_equal(call_i32(&fx, "select", 1, i32v(1)), 1);
    assert_int_equal(call_i32(&fx, "select", 1, i32v(0)), 2);
    assert_int_equal(call_i32(&fx, "indirect", 2, i32v(1), i32v(21)), 42);
    assert_int_equal(call_i32(&fx, "indirect", 2, i32v(0), i32v(10)), 55);
    expect_trap(&fx, "indirect", "indirect call type mismatch", 2, i32v(2), i32v(0));
    expect_trap(&fx, "indirect", "uninitialized element", 2, i32v(3), i32v(0));
    expect_trap(&fx, "indirect", "undefined element", 2, i32v(4), i32v(0));

    wasm_trap trap;
    assert_int_equal(wasm_call(fx.store, export_func(&fx, "boom"), NULL, 0, NULL, 0, &trap), -1);
    assert_int_equal(trap.kind, WASM_TRAP_UNREACHABLE);
    assert_string_equal(trap.message, "unreachable");
    assert_true(trap.code_offset > 0);

    /* Unbounded recursion: a trap, not a native stack overflow; the store
     * stays usable afterwards. */
    expect_trap(&fx, "down", "call stack exhausted", 1, i32v(0));
    assert_int_equal(call_i32(&fx, "fib", 1, i32v(10)), 55);

    /* Wrong argument types are refused. */
    wasm_value bad = i64v(1), r;
    assert_int_equal(wasm_call(fx.store, export_func(&fx, "fib"), &bad, 1, &r, 1, &trap), -1);
    assert_int_equal(trap.kind, WASM_TRAP_HOST);
    unload(&fx);
}

static void test_call_depth_limit(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    fixture fx;
    wasm_limits limits = {.max_call_depth = 50};
    load_with(&fx,
              "(module (func $f (export \"f\") (param i32) (result i32)\n"
              "  (if (result i32) (local.get 0)\n"
              "    (then (i32.add (i32.const 1) (call $f (i32.sub (local.get 0) (i32.const 1)))))\n"
              "    (else (i32.const 0)))))\n",
              &limits, NULL, 0);
    assert_int_equal(call_i32(&fx, "f", 1, i32v(40)), 40);
    expect_trap(&fx, "f", "call stack exhausted", 1, i32v(60));
    unload(&fx);
}

/* ---- memory ----------------------------------------------------------------- */

static const char *MEMORY_WAT =
    "(module\n"
    " (memory 1 4)\n"
    " (data (i32.const 16) \"\\01\\02\\03\\04\")\n"
    " (data $p \"hello\")\n"
    " (func (export \"load\") (param i32) (result i32) (i32.load (local.get 0)))\n"
    " (func (export \"load8_s\") (param i32) (result i32) (i32.load8_s (local.get 0)))\n"
    " (func (export \"load_off\") (param i32) (result i32) (i32.load offset=0xffffffff (local.get 0)))\n"
    " (func (export \"store\") (param i32 i32) (i32.store (local.get 0) (local.get 1)))\n"
    " (func (export \"store64\") (param i32 i64) (i64.store (local.get 0) (local.get 1)))\n"
    " (func (export \"load64\") (param i32) (result i64) (i64.load (local.get 0)))\n"
    " (func (export \"size\") (result i32) (memory.size))\n"
    " (func (export \"grow\") (param i32) (result i32) (memory.grow (local.get 0)))\n"
    " (func (export \"fill\") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))\n"
    " (func (export \"copy\") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2)))\n"
    " (func (export \"init\") (param i32 i32 i32) (memory.init $p (local.get 0) (local.get 1) (local.get 2)))\n"
    " (func (export \"drop\") (data.drop $p))\n"
    ")\n";

static void test_memory(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    fixture fx;
    load(&fx, MEMORY_WAT);
    assert_int_equal(call_i32(&fx, "load", 1, i32v(16)), 0x04030201u);
    assert_int_equal(call_i32(&fx, "load", 1, i32v(65532)), 0);
    expect_trap(&fx, "load", "out of bounds memory access", 1, i32v(65533));
    expect_trap(&fx, "load", "out of bounds memory access", 1, i32v(0xffffffffu));
    expect_trap(&fx, "load_off", "out of bounds memory access", 1, i32v(1));
    wasm_value r;
    wasm_trap trap;
    assert_int_equal(invoke(&fx, "store", &r, 0, &trap, 2, i32v(100), i32v(0xfedcba98u)), 0);
    assert_int_equal(call_i32(&fx, "load8_s", 1, i32v(103)), 0xfffffffeu);
    assert_int_equal(invoke(&fx, "store64", &r, 0, &trap, 2, i32v(65528), i64v(0x1122334455667788ull)), 0);
    assert_int_equal(invoke(&fx, "load64", &r, 1, &trap, 1, i32v(65528)), 0);
    assert_int_equal(r.of.i64, 0x1122334455667788ull);
    expect_trap(&fx, "store64", "out of bounds memory access", 2, i32v(65529), i64v(0));

    assert_int_equal(call_i32(&fx, "size", 0), 1);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(2)), 1);
    assert_int_equal(call_i32(&fx, "size", 0), 3);
    assert_int_equal(call_i32(&fx, "load", 1, i32v(3 * 65536 - 4)), 0);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(2)), 0xffffffffu); /* past the max of 4 */
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(1)), 3);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(0)), 4);

    /* Bulk memory: bounds are checked before anything is written. */
    assert_int_equal(invoke(&fx, "fill", &r, 0, &trap, 3, i32v(200), i32v(0xaa), i32v(4)), 0);
    assert_int_equal(call_i32(&fx, "load", 1, i32v(200)), 0xaaaaaaaau);
    expect_trap(&fx, "fill", "out of bounds memory access", 3, i32v(4 * 65536 - 2), i32v(1), i32v(3));
    assert_int_equal(call_i32(&fx, "load", 1, i32v(4 * 65536 - 4)), 0);
    assert_int_equal(invoke(&fx, "copy", &r, 0, &trap, 3, i32v(17), i32v(16), i32v(4)), 0);
    assert_int_equal(call_i32(&fx, "load", 1, i32v(16)), 0x03020101u);
    assert_int_equal(invoke(&fx, "init", &r, 0, &trap, 3, i32v(300), i32v(1), i32v(4)), 0);
    assert_int_equal(call_i32(&fx, "load", 1, i32v(300)), 0x6f6c6c65u); /* "ello" */
    expect_trap(&fx, "init", "out of bounds memory access", 3, i32v(300), i32v(2), i32v(4));
    assert_int_equal(invoke(&fx, "drop", &r, 0, &trap, 0), 0);
    expect_trap(&fx, "init", "out of bounds memory access", 3, i32v(300), i32v(0), i32v(1));
    assert_int_equal(invoke(&fx, "init", &r, 0, &trap, 3, i32v(300), i32v(0), i32v(0)), 0);
    unload(&fx);
}

static void test_memory_limits(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    wasm_limits limits = {.max_memory_pages = 2};
    fixture fx;
    load_with(&fx,
              "(module (memory 1)\n"
              " (func (export \"grow\") (param i32) (result i32) (memory.grow (local.get 0))))\n",
              &limits, NULL, 0);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(1)), 1);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(1)), 0xffffffffu);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(0x10000)), 0xffffffffu);
    unload(&fx);

    /* A declared minimum above the limit is refused at instantiation. */
    wasm_module *m = compile_wat("(module (memory 3))");
    wasm_store *s = wasm_store_new(&limits);
    wasm_trap trap;
    cx_error err = {0};
    assert_null(wasm_instantiate(s, m, NULL, 0, &trap, &err));
    assert_int_equal(err.code, CX_ELIMIT);
    assert_int_equal(trap.kind, WASM_TRAP_NONE);
    wasm_store_free(s);
    wasm_module_unref(m);
}

/* ---- tables and references ------------------------------------------------------ */

static const char *TABLE_WAT =
    "(module\n"
    " (type $r (func (result i32)))\n"
    " (table $t 2 10 funcref)\n"
    " (table $e 1 externref)\n"
    " (func $one (type $r) (i32.const 1))\n"
    " (func $two (type $r) (i32.const 2))\n"
    " (elem $seg func $one $two)\n"
    " (elem declare func $two)\n"
    " (func (export \"size\") (result i32) (table.size $t))\n"
    " (func (export \"grow\") (param i32) (result i32) (table.grow $t (ref.func $two) (local.get 0)))\n"
    " (func (export \"call\") (param i32) (result i32) (call_indirect $t (type $r) (local.get 0)))\n"
    " (func (export \"init\") (param i32 i32 i32) (table.init $t $seg (local.get 0) (local.get 1) (local.get 2)))\n"
    " (func (export \"fill\") (param i32 i32) (table.fill $t (local.get 0) (ref.null func) (local.get 1)))\n"
    " (func (export \"copy\") (param i32 i32 i32) (table.copy $t $t (local.get 0) (local.get 1) (local.get 2)))\n"
    " (func (export \"is_null\") (param i32) (result i32) (ref.is_null (table.get $t (local.get 0))))\n"
    " (func (export \"set_ext\") (param externref) (table.set $e (i32.const 0) (local.get 0)))\n"
    " (func (export \"get_ext\") (result externref) (table.get $e (i32.const 0)))\n"
    " (func (export \"drop\") (elem.drop $seg))\n"
    ")\n";

static void test_tables(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    fixture fx;
    load(&fx, TABLE_WAT);
    wasm_value r;
    wasm_trap trap;
    assert_int_equal(call_i32(&fx, "size", 0), 2);
    expect_trap(&fx, "call", "uninitialized element", 1, i32v(0));
    assert_int_equal(invoke(&fx, "init", &r, 0, &trap, 3, i32v(0), i32v(0), i32v(2)), 0);
    assert_int_equal(call_i32(&fx, "call", 1, i32v(0)), 1);
    assert_int_equal(call_i32(&fx, "call", 1, i32v(1)), 2);
    expect_trap(&fx, "init", "out of bounds table access", 3, i32v(1), i32v(0), i32v(2));
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(3)), 2);
    assert_int_equal(call_i32(&fx, "size", 0), 5);
    assert_int_equal(call_i32(&fx, "call", 1, i32v(4)), 2);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(6)), 0xffffffffu);
    assert_int_equal(invoke(&fx, "copy", &r, 0, &trap, 3, i32v(2), i32v(0), i32v(2)), 0);
    assert_int_equal(call_i32(&fx, "call", 1, i32v(2)), 1);
    assert_int_equal(invoke(&fx, "fill", &r, 0, &trap, 2, i32v(1), i32v(2)), 0);
    assert_int_equal(call_i32(&fx, "is_null", 1, i32v(1)), 1);
    assert_int_equal(call_i32(&fx, "is_null", 1, i32v(0)), 0);
    expect_trap(&fx, "is_null", "out of bounds table access", 1, i32v(5));
    expect_trap(&fx, "fill", "out of bounds table access", 2, i32v(4), i32v(2));
    assert_int_equal(invoke(&fx, "drop", &r, 0, &trap, 0), 0);
    expect_trap(&fx, "init", "out of bounds table access", 3, i32v(0), i32v(0), i32v(1));

    wasm_value ext = {.type = WASM_EXTERNREF, .of.ext = 1234};
    assert_int_equal(invoke(&fx, "set_ext", &r, 0, &trap, 1, ext), 0);
    assert_int_equal(invoke(&fx, "get_ext", &r, 1, &trap, 0), 0);
    assert_int_equal(r.type, WASM_EXTERNREF);
    assert_int_equal(r.of.ext, 1234);
    ext.of.ext = WASM_EXTERNREF_NULL;
    assert_int_equal(invoke(&fx, "set_ext", &r, 0, &trap, 1, ext), 0);
    assert_int_equal(invoke(&fx, "get_ext", &r, 1, &trap, 0), 0);
    assert_int_equal(r.of.ext, WASM_EXTERNREF_NULL);
    unload(&fx);
}

/* ---- fuel and deadline ------------------------------------------------------------ */

static const char *LOOP_WAT =
    "(module\n"
    " (func (export \"count\") (param i32) (result i32) (local i32)\n"
    "   (block $done (loop $next\n"
    "     (br_if $done (i32.ge_u (local.get 1) (local.get 0)))\n"
    "     (local.set 1 (i32.add (local.get 1) (i32.const 1)))\n"
    "     (br $next)))\n"
    "   (local.get 1))\n"
    " (func (export \"forever\") (loop $l (br $l)))\n"
    ")\n";

static void test_fuel_is_deterministic(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    fixture fx;
    load(&fx, LOOP_WAT);
    uint64_t used[2];
    for (int i = 0; i < 2; i++) {
        wasm_store_set_fuel(fx.store, 1000000);
        assert_int_equal(call_i32(&fx, "count", 1, i32v(1000)), 1000);
        used[i] = wasm_store_fuel_used(fx.store);
    }
    assert_true(used[0] > 1000);
    assert_int_equal(used[0], used[1]);

    /* Exhaustion happens at the same point every time. */
    uint64_t exhausted[2];
    for (int i = 0; i < 2; i++) {
        wasm_store_set_fuel(fx.store, used[0] / 2);
        expect_trap(&fx, "count", "fuel exhausted", 1, i32v(1000));
        exhausted[i] = wasm_store_fuel_used(fx.store);
        assert_true(exhausted[i] <= used[0] / 2);
    }
    assert_int_equal(exhausted[0], exhausted[1]);

    wasm_store_set_fuel(fx.store, 100000);
    wasm_trap trap;
    assert_int_equal(wasm_call(fx.store, export_func(&fx, "forever"), NULL, 0, NULL, 0, &trap), -1);
    assert_int_equal(trap.kind, WASM_TRAP_FUEL_EXHAUSTED);
    assert_string_equal(trap.message, "fuel exhausted");
    assert_true(wasm_store_fuel_used(fx.store) <= 100000);
    assert_true(wasm_store_fuel_used(fx.store) >= 99990);
    unload(&fx);
}

static void test_deadline_stops_infinite_loop(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    fixture fx;
    load(&fx, LOOP_WAT);
    uint64_t start = time_monotonic_ns();
    wasm_store_set_deadline(fx.store, start + 50 * 1000000ull);
    wasm_trap trap;
    assert_int_equal(wasm_call(fx.store, export_func(&fx, "forever"), NULL, 0, NULL, 0, &trap), -1);
    assert_int_equal(trap.kind, WASM_TRAP_DEADLINE_EXCEEDED);
    assert_string_equal(trap.message, "deadline exceeded");
    uint64_t elapsed = time_monotonic_ns() - start;
    assert_true(elapsed < 2000 * 1000000ull);
    unload(&fx);
}

/* Bulk instructions pay for their length, before doing the work, and large
 * ones check the deadline. */
static const char *BULK_WAT =
    "(module (memory 1) (table $t 1000000 externref)\n"
    " (func (export \"fill\") (param i32) (memory.fill (i32.const 0) (i32.const 7) (local.get 0)))\n"
    " (func (export \"load\") (param i32) (result i32) (i32.load8_u (local.get 0)))\n"
    " (func (export \"zero\") (memory.fill (i32.const 0) (i32.const 0) (i32.const 65536)))\n"
    " (func (export \"tfill\") (param i32) (table.fill $t (i32.const 0) (ref.null extern) (local.get 0)))\n"
    " (func (export \"grow\") (param i32) (result i32) (table.grow $t (ref.null extern) (local.get 0)))\n"
    " (func (export \"tfill_forever\")\n"
    "   (loop $l (table.fill $t (i32.const 0) (ref.null extern) (i32.const 1000000)) (br $l))))\n";

static void test_bulk_fuel_and_deadline(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    fixture fx;
    load(&fx, BULK_WAT);
    wasm_value r;
    wasm_trap trap;
    uint64_t base[2], full[2], table[2];
    for (int i = 0; i < 2; i++) {
        wasm_store_set_fuel(fx.store, 10000000);
        assert_int_equal(invoke(&fx, "fill", &r, 0, &trap, 1, i32v(0)), 0);
        base[i] = wasm_store_fuel_used(fx.store);
        wasm_store_set_fuel(fx.store, 10000000);
        assert_int_equal(invoke(&fx, "fill", &r, 0, &trap, 1, i32v(65536)), 0);
        full[i] = wasm_store_fuel_used(fx.store);
        wasm_store_set_fuel(fx.store, 10000000);
        assert_int_equal(invoke(&fx, "tfill", &r, 0, &trap, 1, i32v(800)), 0);
        table[i] = wasm_store_fuel_used(fx.store);
    }
    assert_int_equal(full[0], full[1]);
    assert_int_equal(table[0], table[1]);
    assert_int_equal(full[0] - base[0], 65536 / 64);
    assert_int_equal(table[0] - base[0], 800 / 8);
    assert_int_equal(call_i32(&fx, "load", 1, i32v(65535)), 7);

    /* Too little fuel for the length: the trap comes before any write. */
    assert_int_equal(invoke(&fx, "zero", &r, 0, &trap, 0), 0);
    wasm_store_set_fuel(fx.store, 500);
    expect_trap(&fx, "fill", "fuel exhausted", 1, i32v(65536));
    assert_true(wasm_store_fuel_used(fx.store) <= 500);
    wasm_store_set_fuel(fx.store, 0);
    assert_int_equal(call_i32(&fx, "load", 1, i32v(0)), 0);

    /* table.grow pays for the elements it fills; a refused grow does not. */
    wasm_store_set_fuel(fx.store, 1000);
    expect_trap(&fx, "grow", "fuel exhausted", 1, i32v(80000));
    wasm_store_set_fuel(fx.store, 1000);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(0xffffffffu)), 0xffffffffu);

    /* A loop of large fills stops at the deadline. */
    wasm_store_set_fuel(fx.store, 0);
    uint64_t start = time_monotonic_ns();
    wasm_store_set_deadline(fx.store, start + 50 * 1000000ull);
    assert_int_equal(wasm_call(fx.store, export_func(&fx, "tfill_forever"), NULL, 0, NULL, 0, &trap),
                     -1);
    assert_int_equal(trap.kind, WASM_TRAP_DEADLINE_EXCEEDED);
    assert_true(time_monotonic_ns() - start < 2000 * 1000000ull);
    unload(&fx);
}

/* max_table_elements bounds all of a store's tables together. */
static void test_table_budget(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    wasm_limits limits = {.max_table_elements = 100};
    wasm_module *m = compile_wat("(module (table 60 funcref) (table 60 funcref))");
    wasm_store *s = wasm_store_new(&limits);
    wasm_trap trap;
    cx_error err = {0};
    assert_null(wasm_instantiate(s, m, NULL, 0, &trap, &err));
    assert_int_equal(err.code, CX_ELIMIT);
    wasm_store_free(s);
    wasm_module_unref(m);

    fixture fx;
    load_with(&fx,
              "(module (table $a 50 externref) (table $b 0 externref)\n"
              " (func (export \"grow\") (param i32) (result i32)\n"
              "   (table.grow $b (ref.null extern) (local.get 0))))\n",
              &limits, NULL, 0);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(40)), 0);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(11)), 0xffffffffu);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(10)), 40);
    assert_int_equal(call_i32(&fx, "grow", 1, i32v(1)), 0xffffffffu);
    unload(&fx);
}

/* ---- host functions, linking, instantiation ------------------------------------------- */

static int host_add(void *env, wasm_memory *memory, const wasm_value *args, wasm_value *results,
                    wasm_trap *trap)
{
    (void)trap;
    int *calls = env;
    (*calls)++;
    uint8_t *data = wasm_memory_data(memory);
    data[0] = 42;
    results[0] = i32v(args[0].of.i32 + args[1].of.i32);
    return 0;
}

static int host_fail(void *env, wasm_memory *memory, const wasm_value *args, wasm_value *results,
                     wasm_trap *trap)
{
    (void)env, (void)memory, (void)args, (void)results;
    trap->kind = WASM_TRAP_HOST;
    snprintf(trap->message, sizeof trap->message, "refused by host");
    return -1;
}

static void test_host_functions(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    static const wasm_valtype params[] = {WASM_I32, WASM_I32}, results[] = {WASM_I32};
    wasm_functype type = {2, 1, params, results};
    wasm_store *store = wasm_store_new(NULL);
    int calls = 0;
    wasm_extern imports[2] = {
        {.kind = WASM_EXTERN_FUNC, .of.func = wasm_func_new_host(store, &type, host_add, &calls)},
        {.kind = WASM_EXTERN_FUNC, .of.func = wasm_func_new_host(store, &type, host_fail, NULL)},
    };
    fixture fx = {.store = store};
    fx.module = compile_wat("(module\n"
                            " (import \"env\" \"add\" (func $add (param i32 i32) (result i32)))\n"
                            " (import \"env\" \"fail\" (func $fail (param i32 i32) (result i32)))\n"
                            " (memory (export \"memory\") 1)\n"
                            " (func (export \"f\") (param i32) (result i32)\n"
                            "   (i32.add (call $add (local.get 0) (i32.const 10)) (i32.load8_u (i32.const 0))))\n"
                            " (func (export \"g\") (result i32) (call $fail (i32.const 1) (i32.const 2))))\n");
    assert_int_equal(wasm_module_import_count(fx.module), 2);
    const char *mod, *name;
    wasm_externtype et;
    wasm_module_import(fx.module, 0, &mod, &name, &et);
    assert_string_equal(mod, "env");
    assert_string_equal(name, "add");
    assert_int_equal(et.kind, WASM_EXTERN_FUNC);
    assert_int_equal(et.func.param_count, 2);

    wasm_trap trap;
    cx_error err = {0};
    /* Missing and mismatched imports are link errors. */
    assert_null(wasm_instantiate(store, fx.module, imports, 1, &trap, &err));
    assert_int_equal(err.code, CX_ENOTFOUND);
    wasm_extern wrong[2] = {imports[0], {.kind = WASM_EXTERN_GLOBAL}};
    wrong[1].of.global = wasm_global_new(store, i32v(1), false, &err);
    assert_null(wasm_instantiate(store, fx.module, wrong, 2, &trap, &err));
    assert_int_equal(err.code, CX_EINVAL);

    fx.inst = wasm_instantiate(store, fx.module, imports, 2, &trap, &err);
    assert_non_null(fx.inst);
    assert_int_equal(call_i32(&fx, "f", 1, i32v(5)), 57);
    assert_int_equal(calls, 1);
    expect_trap(&fx, "g", "refused by host", 0);
    unload(&fx);
}

/* A host function that calls back into wasm, which calls it again. */
typedef struct reentry {
    wasm_store *store;
    wasm_func *f;
    int calls;
} reentry;

static int host_reenter(void *env, wasm_memory *memory, const wasm_value *args,
                        wasm_value *results, wasm_trap *trap)
{
    (void)memory, (void)results;
    reentry *r = env;
    r->calls++;
    wasm_value a = i32v(args[0].of.i32 + 1);
    return wasm_call(r->store, r->f, &a, 1, NULL, 0, trap);
}

static void test_host_reentry_is_bounded(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    static const wasm_valtype params[] = {WASM_I32};
    wasm_functype type = {1, 0, params, NULL};
    wasm_store *store = wasm_store_new(NULL);
    reentry r = {.store = store};
    wasm_extern imports[1] = {
        {.kind = WASM_EXTERN_FUNC, .of.func = wasm_func_new_host(store, &type, host_reenter, &r)},
    };
    fixture fx = {.store = store};
    fx.module = compile_wat("(module\n"
                            " (import \"env\" \"cb\" (func $cb (param i32)))\n"
                            " (func (export \"f\") (param i32) (call $cb (local.get 0)))\n"
                            " (func (export \"one\") (result i32) (i32.const 1)))\n");
    cx_error err = {0};
    wasm_trap trap;
    fx.inst = wasm_instantiate(store, fx.module, imports, 1, &trap, &err);
    assert_non_null(fx.inst);
    r.f = export_func(&fx, "f");
    wasm_value a = i32v(0);
    assert_int_equal(wasm_call(store, r.f, &a, 1, NULL, 0, &trap), -1);
    assert_int_equal(trap.kind, WASM_TRAP_CALL_STACK_EXHAUSTED);
    assert_string_equal(trap.message, "call stack exhausted");
    assert_true(r.calls > 10 && r.calls <= 1000);
    /* The store is usable afterwards. */
    assert_int_equal(call_i32(&fx, "one", 0), 1);
    unload(&fx);
}

static void test_start_trap_keeps_segments(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    fixture fx;
    load(&fx, "(module (memory (export \"mem\") 1) (table (export \"tab\") 2 funcref))");
    wasm_extern imports[2];
    assert_true(wasm_instance_export(fx.inst, "mem", &imports[0]));
    assert_true(wasm_instance_export(fx.inst, "tab", &imports[1]));
    wasm_module *m = compile_wat("(module\n"
                                 " (import \"M\" \"mem\" (memory 1))\n"
                                 " (import \"M\" \"tab\" (table 2 funcref))\n"
                                 " (data (i32.const 0) \"hi\")\n"
                                 " (elem (i32.const 0) $f)\n"
                                 " (func $f)\n"
                                 " (func $main (unreachable))\n"
                                 " (start $main))\n");
    wasm_trap trap;
    cx_error err = {0};
    assert_null(wasm_instantiate(fx.store, m, imports, 2, &trap, &err));
    assert_int_equal(trap.kind, WASM_TRAP_UNREACHABLE);
    assert_int_equal(wasm_memory_data(imports[0].of.memory)[0], 'h');
    wasm_value v;
    assert_int_equal(wasm_table_get(imports[1].of.table, 0, &v), 0);
    assert_non_null(v.of.func);

    /* A segment out of bounds traps; earlier segments stay applied. */
    wasm_module *m2 = compile_wat("(module\n"
                                  " (import \"M\" \"mem\" (memory 1))\n"
                                  " (data (i32.const 10) \"ok\")\n"
                                  " (data (i32.const 65535) \"no\"))\n");
    assert_null(wasm_instantiate(fx.store, m2, imports, 1, &trap, &err));
    assert_int_equal(trap.kind, WASM_TRAP_MEMORY_OUT_OF_BOUNDS);
    assert_int_equal(wasm_memory_data(imports[0].of.memory)[10], 'o');
    assert_int_equal(wasm_memory_data(imports[0].of.memory)[65535], 0);
    wasm_module_unref(m2);
    wasm_module_unref(m);
    unload(&fx);
}

static void test_globals(void **state)
{
    (void)state;
    SKIP_WITHOUT_WABT();
    fixture fx;
    load(&fx, "(module\n"
              " (global $g (export \"g\") (mut i64) (i64.const -5))\n"
              " (global $c (export \"c\") f64 (f64.const 1.5))\n"
              " (func (export \"bump\") (global.set $g (i64.add (global.get $g) (i64.const 1)))))\n");
    wasm_extern ext;
    assert_true(wasm_instance_export(fx.inst, "g", &ext));
    assert_int_equal(ext.kind, WASM_EXTERN_GLOBAL);
    assert_int_equal(wasm_global_get(ext.of.global).of.i64, (uint64_t)-5);
    wasm_trap trap;
    assert_int_equal(wasm_call(fx.store, export_func(&fx, "bump"), NULL, 0, NULL, 0, &trap), 0);
    assert_int_equal(wasm_global_get(ext.of.global).of.i64, (uint64_t)-4);
    assert_true(wasm_instance_export(fx.inst, "c", &ext));
    wasm_value c = wasm_global_get(ext.of.global);
    assert_int_equal(c.type, WASM_F64);
    double d;
    memcpy(&d, &c.of.f64, 8);
    assert_true(d == 1.5);
    unload(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integer_arithmetic),
        cmocka_unit_test(test_float_semantics),
        cmocka_unit_test(test_control_and_calls),
        cmocka_unit_test(test_call_depth_limit),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_memory_limits),
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_fuel_is_deterministic),
        cmocka_unit_test(test_deadline_stops_infinite_loop),
        cmocka_unit_test(test_host_functions),
        cmocka_unit_test(test_host_reentry_is_bounded),
        cmocka_unit_test(test_bulk_fuel_and_deadline),
        cmocka_unit_test(test_table_budget),
        cmocka_unit_test(test_start_trap_keeps_segments),
        cmocka_unit_test(test_globals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
