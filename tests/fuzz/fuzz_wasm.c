/* libFuzzer harness for the WebAssembly engine (wasm/wasm.h): every input
 * is taken as a module binary and pushed as far down the pipeline as it
 * goes: decode, validate and compile with all 2.0 features, instantiate in
 * a fresh store under small limits with a stand-in for every import, then
 * call every exported function with zero arguments. The engine promises
 * never to crash, leak or hang whatever the module does; the sanitizers
 * and libFuzzer's timeout and RSS limit hold it to that.
 *
 * Run time is bounded twice: each call gets FUZZ_FUEL units of fuel, and
 * the whole input shares one wall-clock deadline (a backstop for work that
 * fuel does not meter), so an input with thousands of exports still
 * finishes well inside libFuzzer's -timeout.
 *
 * Besides "no crash", one property is checked: wasm_module_new never
 * accepts a module that wasm_module_validate refuses, and never refuses one
 * it accepts unless for a resource limit. A disagreement aborts, so
 * libFuzzer keeps the input.
 *
 * Built and run by tests/fuzz/run.sh; given files as arguments, the binary
 * runs just those (the regression inputs in tests/fuzz/regressions/). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "wasm/wasm.h"

#define FUZZ_MAX_PAGES 16
#define FUZZ_MAX_TABLE_ELEMENTS 10000
#define FUZZ_MAX_CALL_DEPTH 500
#define FUZZ_MAX_STACK_VALUES 65536
#define FUZZ_FUEL 100000
#define FUZZ_DEADLINE_NS 1000000000ull /* per input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static wasm_value zero_value(wasm_valtype type)
{
    wasm_value v;
    memset(&v, 0, sizeof v);
    v.type = type;
    if (type == WASM_EXTERNREF)
        v.of.ext = WASM_EXTERNREF_NULL;
    return v; /* numbers 0, funcref NULL */
}

/* The stand-in for every imported function: results are zeros of the
 * function's result types (env is its wasm_functype). */
static int host_return_zeros(void *env, wasm_memory *memory, const wasm_value *args,
                             wasm_value *results, wasm_trap *trap)
{
    (void)memory;
    (void)args;
    (void)trap;
    const wasm_functype *type = env;
    for (uint32_t i = 0; i < type->result_count; i++)
        results[i] = zero_value(type->results[i]);
    return 0;
}

/* Creates in s an object of exactly the import's type. False when the
 * store refuses it (a declared size over the limits): the module is then
 * not instantiated, as a host would refuse it. */
static bool make_import(wasm_store *s, const wasm_externtype *type, wasm_extern *out)
{
    cx_error err = {0};
    out->kind = type->kind;
    switch (type->kind) {
    case WASM_EXTERN_FUNC:
        out->of.func = wasm_func_new_host(s, &type->func, host_return_zeros, (void *)&type->func);
        return out->of.func != NULL;
    case WASM_EXTERN_TABLE:
        out->of.table = wasm_table_new(s, type->table_type, type->limits, &err);
        return out->of.table != NULL;
    case WASM_EXTERN_MEMORY:
        out->of.memory = wasm_memory_new(s, type->limits, &err);
        return out->of.memory != NULL;
    case WASM_EXTERN_GLOBAL:
        out->of.global = wasm_global_new(s, zero_value(type->global_type), type->global_mutable,
                                         &err);
        return out->of.global != NULL;
    }
    return false;
}

/* Compile errors that are limits or resources, not a verdict on validity. */
static bool is_resource_error(const cx_error *err)
{
    return err->code == CX_ENOMEM || err->code == CX_ELIMIT || err->code == CX_ETOOBIG ||
           strstr(err->msg, "too large") != NULL;
}

static wasm_module *build_module(const uint8_t *data, size_t size)
{
    wasm_features features = wasm_features_2_0();
    cx_error validate_err = {0}, err = {0};
    int valid = wasm_module_validate(data, size, &features, &validate_err);
    wasm_module *m = wasm_module_new(data, size, &features, &err);
    if (m && valid != 0) {
        fprintf(stderr, "fuzz_wasm: compiled a module the validator refuses: %s\n",
                validate_err.msg);
        abort();
    }
    if (!m && valid == 0 && !is_resource_error(&err)) {
        fprintf(stderr, "fuzz_wasm: refused a module the validator accepts: %s\n", err.msg);
        abort();
    }
    return m;
}

static void call_exports(wasm_store *s, const wasm_module *m, wasm_instance *inst)
{
    size_t count = wasm_module_export_count(m);
    for (size_t i = 0; i < count; i++) {
        const char *name;
        wasm_externtype type;
        wasm_extern ext;
        wasm_module_export(m, i, &name, &type);
        if (type.kind != WASM_EXTERN_FUNC || !wasm_instance_export(inst, name, &ext) ||
            ext.kind != WASM_EXTERN_FUNC)
            continue;
        const wasm_functype *ft = wasm_func_type(ext.of.func);
        wasm_value *args = calloc(ft->param_count + 1, sizeof *args);
        wasm_value *results = calloc(ft->result_count + 1, sizeof *results);
        if (args && results) {
            for (uint32_t k = 0; k < ft->param_count; k++)
                args[k] = zero_value(ft->params[k]);
            wasm_trap trap;
            wasm_store_set_fuel(s, FUZZ_FUEL);
            wasm_call(s, ext.of.func, args, ft->param_count, results, ft->result_count, &trap);
        }
        free(args);
        free(results);
    }
}

static void run_module(wasm_module *m)
{
    wasm_limits limits = {
        .max_memory_pages = FUZZ_MAX_PAGES,
        .max_table_elements = FUZZ_MAX_TABLE_ELEMENTS,
        .max_call_depth = FUZZ_MAX_CALL_DEPTH,
        .max_stack_values = FUZZ_MAX_STACK_VALUES,
    };
    wasm_store *s = wasm_store_new(&limits);
    if (!s)
        return;
    wasm_store_set_deadline(s, time_monotonic_ns() + FUZZ_DEADLINE_NS);

    size_t import_count = wasm_module_import_count(m);
    wasm_externtype *types = calloc(import_count + 1, sizeof *types);
    wasm_extern *imports = calloc(import_count + 1, sizeof *imports);
    bool linked = types && imports;
    for (size_t i = 0; linked && i < import_count; i++) {
        wasm_module_import(m, i, NULL, NULL, &types[i]);
        linked = make_import(s, &types[i], &imports[i]);
    }
    if (linked) {
        wasm_trap trap;
        cx_error err = {0};
        wasm_store_set_fuel(s, FUZZ_FUEL); /* for the start function */
        wasm_instance *inst = wasm_instantiate(s, m, imports, import_count, &trap, &err);
        if (inst)
            call_exports(s, m, inst);
    }
    /* The store frees every object in it, and the host functions' env
     * (types) is read only while they run. */
    wasm_store_free(s);
    free(imports);
    free(types);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wasm_module *m = build_module(data, size);
    if (m) {
        run_module(m);
        wasm_module_unref(m);
    }
    return 0;
}
