/* `caxton wasm run MODULE --invoke NAME [ARGS...]`: a developer's way to run
 * one exported function of a module in Caxton's engine, offline, under the
 * same limits agents run with (fuel, memory, wall clock), and see its results
 * or its trap and the fuel it used. Modules that import anything are refused:
 * this command provides no host functions. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/units.h"
#include "wasm/wasm.h"

#define WASM_RUN_MAX_FILE (256u * 1024 * 1024)
#define WASM_RUN_DEFAULT_FUEL 10000000000ull
#define WASM_RUN_DEFAULT_MEMORY (10u * 1024 * 1024)

/* One argument in the parameter's type: integers in decimal or 0x hex
 * (negative allowed), floats as C reads them (inf, nan included). */
static int parse_arg(const char *text, wasm_valtype type, wasm_value *out, cx_error *err)
{
    char *end = NULL;
    errno = 0;
    out->type = type;
    switch (type) {
    case WASM_I32: {
        long long v = strtoll(text, &end, 0);
        if (errno || *end || end == text || v < INT32_MIN || v > UINT32_MAX)
            break;
        out->of.i32 = (uint32_t)v;
        return 0;
    }
    case WASM_I64: {
        if (text[0] != '-') {
            unsigned long long v = strtoull(text, &end, 0);
            if (errno || *end || end == text)
                break;
            out->of.i64 = v;
        } else {
            long long v = strtoll(text, &end, 0);
            if (errno || *end || end == text)
                break;
            out->of.i64 = (uint64_t)v;
        }
        return 0;
    }
    case WASM_F32: {
        float v = strtof(text, &end);
        if (*end || end == text)
            break;
        memcpy(&out->of.f32, &v, sizeof v);
        return 0;
    }
    case WASM_F64: {
        double v = strtod(text, &end);
        if (*end || end == text)
            break;
        memcpy(&out->of.f64, &v, sizeof v);
        return 0;
    }
    default:
        return cx_error_set(err, CX_EINVAL, "parameters of type %s cannot be given on the "
                            "command line", wasm_valtype_name(type));
    }
    return cx_error_set(err, CX_EINVAL, "argument '%.64s' is not a valid %s", text,
                        wasm_valtype_name(type));
}

static json_t *value_json(const wasm_value *v)
{
    char text[64];
    switch (v->type) {
    case WASM_I32:
        snprintf(text, sizeof text, "%" PRId32, (int32_t)v->of.i32);
        break;
    case WASM_I64:
        snprintf(text, sizeof text, "%" PRId64, (int64_t)v->of.i64);
        break;
    case WASM_F32: {
        float f;
        memcpy(&f, &v->of.f32, sizeof f);
        if (isnan(f))
            snprintf(text, sizeof text, "nan:0x%08" PRIx32, v->of.f32);
        else
            snprintf(text, sizeof text, "%.9g", (double)f);
        break;
    }
    case WASM_F64: {
        double d;
        memcpy(&d, &v->of.f64, sizeof d);
        if (isnan(d))
            snprintf(text, sizeof text, "nan:0x%016" PRIx64, v->of.f64);
        else
            snprintf(text, sizeof text, "%.17g", d);
        break;
    }
    case WASM_FUNCREF:
        snprintf(text, sizeof text, "%s", v->of.func ? "ref.func" : "ref.null");
        break;
    default:
        snprintf(text, sizeof text, "%s", v->of.ext == WASM_EXTERNREF_NULL ? "ref.null" : "ref.extern");
        break;
    }
    return json_pack("{s:s, s:s}", "type", wasm_valtype_name(v->type), "value", text);
}

static json_t *trap_json(const wasm_trap *t)
{
    json_t *j = json_pack("{s:s, s:I, s:I}", "message", t->message, "function",
                          (json_int_t)t->func_index, "offset", (json_int_t)t->code_offset);
    json_object_set_new(j, "function_name", t->func_name[0] ? json_string(t->func_name)
                                                             : json_null());
    return j;
}

typedef struct run_options {
    uint64_t fuel;
    uint32_t max_pages;
    uint64_t timeout_ms;
} run_options;

static int read_options(const cli_invocation *inv, run_options *o)
{
    cx_error err;
    o->fuel = WASM_RUN_DEFAULT_FUEL;
    o->timeout_ms = inv->timeout_ms;
    uint64_t memory = WASM_RUN_DEFAULT_MEMORY;
    const char *fuel = cli_flag_value(inv, "fuel");
    if (fuel) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(fuel, &end, 10);
        if (errno || *end || end == fuel || v == 0 || fuel[0] == '-') {
            fprintf(stderr, "caxton: --fuel must be a positive integer, got '%s'\n", fuel);
            return CLI_EXIT_USAGE;
        }
        o->fuel = v;
    }
    const char *max_memory = cli_flag_value(inv, "max-memory");
    if (max_memory && units_parse_size(max_memory, &memory, &err) < 0) {
        fprintf(stderr, "caxton: --max-memory: %s\n", err.msg);
        return CLI_EXIT_USAGE;
    }
    uint64_t pages = memory / 65536u;
    if (pages == 0) {
        fprintf(stderr, "caxton: --max-memory must be at least 64KB (one WebAssembly page)\n");
        return CLI_EXIT_USAGE;
    }
    o->max_pages = pages > 65536u ? 65536u : (uint32_t)pages;
    return CLI_EXIT_OK;
}

static void print_result(const cli_invocation *inv, const char *name, int rc,
                         const wasm_value *results, uint32_t count, const wasm_trap *trap,
                         uint64_t fuel_used)
{
    if (inv->output == CLI_OUTPUT_JSON) {
        json_t *list = json_array();
        for (uint32_t i = 0; rc == 0 && i < count; i++)
            json_array_append_new(list, value_json(&results[i]));
        json_t *doc = json_pack("{s:s, s:o, s:I}", "function", name, "results", list,
                                "fuel_used", (json_int_t)fuel_used);
        json_object_set_new(doc, "trap", rc == 0 ? json_null() : trap_json(trap));
        output_json(stdout, doc);
        json_decref(doc);
        return;
    }
    if (rc == 0) {
        for (uint32_t i = 0; i < count; i++) {
            json_t *v = value_json(&results[i]);
            printf("%s:%s\n", json_string_value(json_object_get(v, "type")),
                   json_string_value(json_object_get(v, "value")));
            json_decref(v);
        }
    } else {
        fprintf(stderr, "trap: %s in function %" PRIu32 "%s%s%s at code offset 0x%" PRIx32 "\n",
                trap->message, trap->func_index, trap->func_name[0] ? " (" : "",
                trap->func_name, trap->func_name[0] ? ")" : "", trap->code_offset);
    }
    printf("fuel used: %" PRIu64 "\n", fuel_used);
}

/* Finds the export or says which ones exist. */
static wasm_func *find_function(const wasm_module *m, const wasm_instance *inst,
                                const char *file, const char *name)
{
    wasm_extern ext;
    if (wasm_instance_export(inst, name, &ext) && ext.kind == WASM_EXTERN_FUNC)
        return ext.of.func;
    size_t count = wasm_module_export_count(m);
    const char *names[64];
    size_t n = 0;
    for (size_t i = 0; i < count && n < 64; i++) {
        wasm_externtype type;
        wasm_module_export(m, i, &names[n], &type);
        if (type.kind == WASM_EXTERN_FUNC)
            n++;
    }
    const char *hint = text_suggest(name, names, n);
    fprintf(stderr, "caxton: %s exports no function '%s'%s%s%s\n", file, name,
            hint ? "; did you mean '" : "", hint ? hint : "", hint ? "'?" : "");
    return NULL;
}

int cmd_wasm_run(const cli_invocation *inv)
{
    const char *file = inv->args[0], *name = cli_flag_value(inv, "invoke");
    run_options opt;
    int exit_code = read_options(inv, &opt);
    if (exit_code != CLI_EXIT_OK)
        return exit_code;
    char *bytes = NULL;
    size_t len = 0;
    cx_error err;
    if (fs_read_file(file, WASM_RUN_MAX_FILE, &bytes, &len, &err) < 0) {
        fprintf(stderr, "caxton: %s\n", err.msg);
        return CLI_EXIT_PROBLEM;
    }
    wasm_features features = wasm_features_2_0();
    wasm_module *m = wasm_module_new((const uint8_t *)bytes, len, &features, &err);
    free(bytes);
    if (!m) {
        fprintf(stderr, "caxton: %s: %s\n", file, err.msg);
        return CLI_EXIT_PROBLEM;
    }
    if (wasm_module_import_count(m) > 0) {
        const char *module_name, *import_name;
        wasm_externtype type;
        wasm_module_import(m, 0, &module_name, &import_name, &type);
        fprintf(stderr, "caxton: %s imports %s.%s; 'caxton wasm run' provides no imports\n",
                file, module_name, import_name);
        wasm_module_unref(m);
        return CLI_EXIT_PROBLEM;
    }
    wasm_limits limits = {.max_memory_pages = opt.max_pages};
    wasm_store *s = wasm_store_new(&limits);
    wasm_trap trap = {0};
    /* The start function runs at instantiation: it gets the same budget. */
    if (s) {
        wasm_store_set_fuel(s, opt.fuel);
        wasm_store_set_deadline(s, time_monotonic_ns() + opt.timeout_ms * 1000000u);
    }
    wasm_instance *inst = s ? wasm_instantiate(s, m, NULL, 0, &trap, &err) : NULL;
    wasm_func *f = NULL;
    exit_code = CLI_EXIT_PROBLEM;
    if (!inst) {
        fprintf(stderr, "caxton: %s: cannot instantiate: %s\n", file,
                trap.kind != WASM_TRAP_NONE ? trap.message : err.msg);
    } else if ((f = find_function(m, inst, file, name))) {
        const wasm_functype *type = wasm_func_type(f);
        wasm_value args[CLI_MAX_ARGS];
        if (inv->arg_count - 1 != type->param_count) {
            fprintf(stderr, "caxton: %s takes %" PRIu32 " argument%s, got %zu\n", name,
                    type->param_count, type->param_count == 1 ? "" : "s", inv->arg_count - 1);
            exit_code = CLI_EXIT_USAGE;
        } else {
            exit_code = CLI_EXIT_OK;
            for (uint32_t i = 0; i < type->param_count && exit_code == CLI_EXIT_OK; i++)
                if (parse_arg(inv->args[i + 1], type->params[i], &args[i], &err) < 0) {
                    fprintf(stderr, "caxton: %s\n", err.msg);
                    exit_code = CLI_EXIT_USAGE;
                }
        }
        if (exit_code == CLI_EXIT_OK) {
            wasm_value *results = calloc(type->result_count + 1, sizeof *results);
            int rc = results ? wasm_call(s, f, args, type->param_count, results,
                                         type->result_count, &trap)
                             : -1;
            print_result(inv, name, rc, results, type->result_count, &trap,
                         wasm_store_fuel_used(s));
            exit_code = rc == 0 ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
            free(results);
        }
    }
    wasm_store_free(s);
    wasm_module_unref(m);
    return exit_code;
}
