/* Offline reports on module files, for operators deciding whether and how a
 * module can be deployed:
 *
 *   caxton wasm analyze-requirements MODULE      what it declares and needs,
 *                                                and a fuel estimate
 *   caxton wasm compatibility-check MODULE       this engine and each policy
 *                                                of 60-wasm.md: yes/no, why
 *   caxton wasm diff A B                         what changed between two
 *
 * Each command builds one JSON document from the engine's read-only
 * description API (wasm.h) and prints it either as JSON or as text for
 * people, so the two outputs never disagree. The policies' feature sets,
 * host imports and memory limits are written down here as the spec states
 * them; the fuel estimate is a real run in the engine under the largest
 * policy budget. */
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/units.h"
#include "wasm/wasm.h"

#define WASM_INFO_MAX_FILE (256u * 1024 * 1024)
#define ESTIMATE_DEADLINE_NS 1000000000ull /* the dry run's wall clock */

static const char *const kind_names[] = {"func", "table", "memory", "global"};

/* ---- policies (60-wasm.md, "Policies" and "Agent ABI") -------------------------------------- */

enum { POLICY_STRICT, POLICY_DEFAULT, POLICY_RELAXED, POLICY_COUNT };

typedef struct policy {
    const char *name;
    uint64_t memory_bytes;
    uint64_t fuel; /* per message */
} policy;

static const policy policies[POLICY_COUNT] = {
    {"strict", 1u << 20, 100000},
    {"default", 10u << 20, 1000000},
    {"relaxed", 64u << 20, 100000000},
};

static wasm_features policy_features(int p)
{
    if (p == POLICY_STRICT) {
        wasm_features f = wasm_features_1_0();
        f.sign_extension = true;
        return f;
    }
    return wasm_features_2_0(); /* default: 2.0 non-SIMD; relaxed: all the engine has */
}

/* What the host offers, with the loosest policy that still refuses it. */
typedef struct host_import {
    const char *module, *name;
    const char *type; /* as type_text writes it */
    int policy;       /* the strictest policy that allows it */
} host_import;

#define WASI "wasi_snapshot_preview1"

static const host_import host_imports[] = {
    {"caxton", "log", "(i32, i32, i32) -> ()", POLICY_STRICT},
    {"caxton", "reply", "(i32, i32) -> (i32)", POLICY_STRICT},
    {"caxton", "now_ms", "() -> (i64)", POLICY_STRICT},
    {"caxton", "send", "(i32, i32) -> (i32)", POLICY_DEFAULT},
    {"caxton", "random", "(i32, i32) -> ()", POLICY_DEFAULT},
    {"caxton", "memory_call", "(i32, i32, i32, i32) -> (i32)", POLICY_RELAXED},
    {"caxton", "tool_call", "(i32, i32, i32, i32) -> (i32)", POLICY_RELAXED},
    {WASI, "fd_write", "(i32, i32, i32, i32) -> (i32)", POLICY_DEFAULT},
    {WASI, "clock_time_get", "(i32, i64, i32) -> (i32)", POLICY_DEFAULT},
    {WASI, "random_get", "(i32, i32) -> (i32)", POLICY_DEFAULT},
    {WASI, "proc_exit", "(i32) -> ()", POLICY_DEFAULT},
    {WASI, "args_get", "(i32, i32) -> (i32)", POLICY_DEFAULT},
    {WASI, "args_sizes_get", "(i32, i32) -> (i32)", POLICY_DEFAULT},
    {WASI, "environ_get", "(i32, i32) -> (i32)", POLICY_DEFAULT},
    {WASI, "environ_sizes_get", "(i32, i32) -> (i32)", POLICY_DEFAULT},
};

/* ---- describing types and features ---------------------------------------------------------- */

/* "(i32, i64) -> (f64)", "1..2 pages", "funcref 1.. elements", "mut i32";
 * the same wording as `wasm validate --comprehensive`. */
static json_t *type_json(const wasm_externtype *t)
{
    strbuf sb;
    strbuf_init(&sb);
    cli_wasm_type_text(t, &sb);
    json_t *j = json_string(sb.data);
    strbuf_free(&sb);
    return j;
}

typedef struct feature_name {
    const char *name;
    size_t offset; /* of its bool in wasm_features */
} feature_name;

static const feature_name feature_names[] = {
    {"sign-extension", offsetof(wasm_features, sign_extension)},
    {"saturating-conversions", offsetof(wasm_features, saturating_conversions)},
    {"multi-value", offsetof(wasm_features, multi_value)},
    {"bulk-memory", offsetof(wasm_features, bulk_memory)},
    {"reference-types", offsetof(wasm_features, reference_types)},
    {"mutable-globals", offsetof(wasm_features, mutable_globals)},
};
#define FEATURE_COUNT (sizeof feature_names / sizeof feature_names[0])

static bool feature_on(const wasm_features *f, size_t i)
{
    bool on;
    memcpy(&on, (const char *)f + feature_names[i].offset, sizeof on);
    return on;
}

static json_t *features_json(const wasm_features *f)
{
    json_t *list = json_array();
    for (size_t i = 0; i < FEATURE_COUNT; i++)
        if (feature_on(f, i))
            json_array_append_new(list, json_string(feature_names[i].name));
    return list;
}

/* "a, b, c" from a JSON array of strings, or `none`. */
static void join_strings(const json_t *list, const char *none, strbuf *out)
{
    size_t i;
    json_t *item;
    if (json_array_size(list) == 0)
        strbuf_appends(out, none);
    json_array_foreach(list, i, item)
        strbuf_appendf(out, "%s%s", i ? ", " : "", json_string_value(item));
}

static void print_joined(const char *label, const json_t *list, const char *none)
{
    strbuf sb;
    strbuf_init(&sb);
    join_strings(list, none, &sb);
    printf("%s: %s\n", label, sb.data);
    strbuf_free(&sb);
}

/* ---- loading -------------------------------------------------------------------------------- */

/* Where a decode error points: the last "at offset N" of its message. */
static bool error_offset(const char *msg, size_t *offset)
{
    const char *at = NULL;
    for (const char *p = strstr(msg, "at offset "); p; p = strstr(p + 1, "at offset "))
        at = p;
    if (!at)
        return false;
    char *end;
    unsigned long long v = strtoull(at + strlen("at offset "), &end, 10);
    *offset = (size_t)v;
    return end != at + strlen("at offset ");
}

typedef struct loaded {
    wasm_module *module; /* NULL when it failed */
    size_t size;
    bool uses_simd;      /* refused because of a SIMD type or instruction */
} loaded;

/* Reads and builds a module with every feature the engine has. On failure
 * err says why in the operator's words: "FILE: malformed: ...". */
static void module_load(const char *file, loaded *out, cx_error *err)
{
    char *bytes = NULL;
    memset(out, 0, sizeof *out);
    if (fs_read_file(file, WASM_INFO_MAX_FILE, &bytes, &out->size, err) < 0)
        return;
    wasm_features features = wasm_features_2_0();
    cx_error e;
    cx_error_clear(&e);
    out->module = wasm_module_new((const uint8_t *)bytes, out->size, &features, &e);
    if (!out->module) {
        size_t at;
        /* The engine refuses v128 (0x7b) and the 0xfd prefix at decode. */
        out->uses_simd = e.code == CX_EPARSE && error_offset(e.msg, &at) && at < out->size &&
                         ((uint8_t)bytes[at] == 0xfd || (uint8_t)bytes[at] == 0x7b);
        cx_error_set(err, e.code, "%s: %s: %s", file,
                     e.code == CX_EPARSE ? "malformed" : "invalid", e.msg);
    }
    free(bytes);
}

static json_t *imports_json(const wasm_module *m)
{
    json_t *list = json_array();
    for (size_t i = 0; i < wasm_module_import_count(m); i++) {
        const char *module_name, *name;
        wasm_externtype t;
        wasm_module_import(m, i, &module_name, &name, &t);
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:o}", "module", module_name,
                                              "name", name, "kind", kind_names[t.kind], "type",
                                              type_json(&t)));
    }
    return list;
}

static json_t *exports_json(const wasm_module *m)
{
    json_t *list = json_array();
    for (size_t i = 0; i < wasm_module_export_count(m); i++) {
        const char *name;
        wasm_externtype t;
        wasm_module_export(m, i, &name, &t);
        json_array_append_new(list, json_pack("{s:s, s:s, s:o}", "name", name, "kind",
                                              kind_names[t.kind], "type", type_json(&t)));
    }
    return list;
}

static json_t *memory_json(const wasm_module_info *info)
{
    if (info->memory_count == 0)
        return json_null();
    json_t *j = json_pack("{s:I, s:I}", "min_pages", (json_int_t)info->memory_min_pages,
                          "min_bytes", (json_int_t)info->memory_min_pages * 65536);
    json_object_set_new(j, "max_pages", info->memory_has_max
                                            ? json_integer(info->memory_max_pages)
                                            : json_null());
    return j;
}

static json_t *tables_json(const wasm_module *m, const wasm_module_info *info)
{
    json_t *list = json_array();
    for (uint32_t i = 0; i < info->table_count; i++) {
        wasm_externtype t;
        wasm_module_table(m, i, &t);
        json_array_append_new(list, type_json(&t));
    }
    return list;
}

static const char *memory_text(const json_t *memory, char *buf, size_t size)
{
    if (json_is_null(memory))
        return "none";
    json_t *max = json_object_get(memory, "max_pages");
    char limit[32] = "";
    if (json_is_integer(max))
        snprintf(limit, sizeof limit, "%" JSON_INTEGER_FORMAT, json_integer_value(max));
    snprintf(buf, size, "%" JSON_INTEGER_FORMAT "..%s pages",
             json_integer_value(json_object_get(memory, "min_pages")), limit);
    return buf;
}

static void item_table_print(const char *title, const json_t *list, bool imports)
{
    printf("%s (%zu):\n", title, json_array_size(list));
    if (json_array_size(list) == 0)
        return;
    output_table *t =
        imports ? output_table_new(4, (const char *[]){"  module", "name", "kind", "type"})
                : output_table_new(3, (const char *[]){"  name", "kind", "type"});
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        char name[512];
        snprintf(name, sizeof name, "  %s", output_string(item, imports ? "module" : "name", ""));
        if (imports)
            output_table_row(t, name, output_string(item, "name", ""),
                             output_string(item, "kind", ""), output_string(item, "type", ""));
        else
            output_table_row(t, name, output_string(item, "kind", ""),
                             output_string(item, "type", ""));
    }
    if (t)
        output_table_print(t, stdout);
    output_table_free(t);
}

/* ---- analyze-requirements ------------------------------------------------------------------- */

static bool find_export(const wasm_module *m, const char *name, wasm_externtype *type)
{
    for (size_t i = 0; i < wasm_module_export_count(m); i++) {
        const char *n;
        wasm_module_export(m, i, &n, type);
        if (strcmp(n, name) == 0 && type->kind == WASM_EXTERN_FUNC)
            return true;
    }
    return false;
}

static bool is_i32s(const wasm_valtype *types, uint32_t count, uint32_t want)
{
    if (count != want)
        return false;
    for (uint32_t i = 0; i < count; i++)
        if (types[i] != WASM_I32)
            return false;
    return true;
}

static json_t *no_estimate(const char *why)
{
    return json_pack("{s:n, s:s}", "function", "reason", why);
}

/* What to run: handle_message(ptr, len), run(), or the start function. */
static json_t *estimate_target(const wasm_module *m, const wasm_module_info *info,
                               const char **target)
{
    wasm_externtype t;
    *target = NULL;
    if (info->import_count > 0) {
        const char *module_name, *name;
        char why[600];
        wasm_module_import(m, 0, &module_name, &name, NULL);
        snprintf(why, sizeof why, "it imports %.200s.%.200s and a dry run provides no imports",
                 module_name, name);
        return no_estimate(why);
    }
    if (find_export(m, "handle_message", &t)) {
        if (!is_i32s(t.func.params, t.func.param_count, 2))
            return no_estimate("handle_message does not take (i32, i32)");
        *target = "handle_message";
    } else if (find_export(m, "run", &t)) {
        if (t.func.param_count != 0)
            return no_estimate("run takes parameters");
        *target = "run";
    } else if (info->has_start) {
        *target = "start";
    } else {
        return no_estimate("it exports neither handle_message nor run and has no start function");
    }
    return NULL;
}

/* Calls an export with args; 0 or -1 with *trap. */
static int call_export(wasm_store *s, wasm_instance *inst, const char *name,
                       const wasm_value *args, size_t arg_count, wasm_value *result,
                       wasm_trap *trap)
{
    wasm_extern ext;
    if (!wasm_instance_export(inst, name, &ext) || ext.kind != WASM_EXTERN_FUNC)
        return -1;
    const wasm_functype *type = wasm_func_type(ext.of.func);
    wasm_value *results = calloc(type->result_count + 1, sizeof *results);
    if (!results) {
        snprintf(trap->message, sizeof trap->message, "out of memory");
        return -1;
    }
    wasm_store_set_fuel(s, policies[POLICY_RELAXED].fuel);
    wasm_store_set_deadline(s, time_monotonic_ns() + ESTIMATE_DEADLINE_NS);
    int rc = wasm_call(s, ext.of.func, args, arg_count, results, type->result_count, trap);
    if (rc == 0 && result && type->result_count > 0)
        *result = results[0];
    free(results);
    return rc;
}

/* A dry run under the relaxed policy's fuel and memory and a 1s deadline. */
static json_t *estimate_fuel(wasm_module *m, const wasm_module_info *info)
{
    const char *target;
    json_t *none = estimate_target(m, info, &target);
    if (none)
        return none;
    wasm_limits limits = {.max_memory_pages =
                              (uint32_t)(policies[POLICY_RELAXED].memory_bytes / 65536)};
    wasm_store *s = wasm_store_new(&limits);
    if (!s)
        return no_estimate("out of memory");
    wasm_trap trap = {0};
    cx_error err;
    cx_error_clear(&err);
    wasm_store_set_fuel(s, policies[POLICY_RELAXED].fuel);
    wasm_store_set_deadline(s, time_monotonic_ns() + ESTIMATE_DEADLINE_NS);
    wasm_instance *inst = wasm_instantiate(s, m, NULL, 0, &trap, &err);
    uint64_t start_fuel = wasm_store_fuel_used(s);
    /* A start function that traps is what the estimate reports. */
    json_t *doc = json_pack("{s:s}", "function", inst ? target : "start");
    int rc = inst ? 0 : -1;
    if (!inst && trap.kind == WASM_TRAP_NONE) {
        json_decref(doc);
        char why[sizeof err.msg + 32];
        snprintf(why, sizeof why, "cannot instantiate: %s", err.msg);
        wasm_store_free(s);
        return no_estimate(why);
    }
    uint64_t fuel = start_fuel;
    if (inst && strcmp(target, "handle_message") == 0) {
        wasm_value args[2] = {{.type = WASM_I32}, {.type = WASM_I32}};
        wasm_externtype alloc;
        if (find_export(m, "alloc", &alloc) &&
            is_i32s(alloc.func.params, alloc.func.param_count, 1) &&
            is_i32s(alloc.func.results, alloc.func.result_count, 1)) {
            wasm_value size = {.type = WASM_I32};
            rc = call_export(s, inst, "alloc", &size, 1, &args[0], &trap);
            if (rc < 0)
                json_object_set_new(doc, "function", json_string("alloc"));
            json_object_set_new(doc, "alloc_fuel_used",
                                json_integer((json_int_t)wasm_store_fuel_used(s)));
        }
        if (rc == 0) {
            rc = call_export(s, inst, target, args, 2, NULL, &trap);
            fuel = wasm_store_fuel_used(s);
        }
    } else if (inst && strcmp(target, "run") == 0) {
        rc = call_export(s, inst, target, NULL, 0, NULL, &trap);
        fuel = wasm_store_fuel_used(s);
    }
    if (inst && strcmp(target, "start") != 0 && info->has_start)
        json_object_set_new(doc, "start_fuel_used", json_integer((json_int_t)start_fuel));
    json_object_set_new(doc, "fuel_used", json_integer((json_int_t)fuel));
    json_object_set_new(doc, "trap", rc == 0 ? json_null() : json_string(trap.message));
    json_t *fits = json_object();
    for (int p = 0; p < POLICY_COUNT; p++)
        json_object_set_new(fits, policies[p].name,
                            json_boolean(rc == 0 && fuel <= policies[p].fuel));
    json_object_set_new(doc, "within_policy_fuel", fits);
    wasm_store_free(s);
    return doc;
}

static json_t *requirements_json(const char *file, wasm_module *m, size_t size)
{
    wasm_module_info info;
    wasm_module_describe(m, &info);
    json_t *sections = json_object();
    size_t cursor = 0;
    wasm_section_info sec;
    while (wasm_module_next_section(m, &cursor, &sec))
        if (sec.id != 0)
            json_object_set_new(sections, sec.name, json_integer((json_int_t)sec.size));
    json_t *doc = json_pack(
        "{s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I}, s:I, s:I, s:o}", "file", file,
        "size", (json_int_t)size, "memory", memory_json(&info), "tables", tables_json(m, &info),
        "imports", imports_json(m), "exports", exports_json(m), "features",
        features_json(&info.features_used), "functions", "defined",
        (json_int_t)(info.func_count - info.func_import_count), "imported",
        (json_int_t)info.func_import_count, "max_locals", (json_int_t)info.max_function_locals,
        "code_size", (json_int_t)info.code_size, "custom_sections_size",
        (json_int_t)info.custom_section_bytes, "sections", sections);
    if (doc)
        json_object_set_new(doc, "fuel_estimate", estimate_fuel(m, &info));
    return doc;
}

static void print_estimate(const json_t *e)
{
    const char *function = output_string(e, "function", NULL);
    if (!function) {
        char *reason = strdup(output_string(e, "reason", ""));
        if (reason)
            output_sanitize(reason); /* it may quote the module's import names */
        printf("fuel estimate: none (%s)\n", reason ? reason : "");
        free(reason);
        return;
    }
    const char *call = strcmp(function, "handle_message") == 0 ? "handle_message(ptr, 0)"
                       : strcmp(function, "run") == 0          ? "run()"
                       : strcmp(function, "alloc") == 0        ? "alloc(0)"
                                                               : "the start function";
    const char *trap = output_string(e, "trap", NULL);
    json_int_t fuel = json_integer_value(json_object_get(e, "fuel_used"));
    if (trap) {
        printf("fuel estimate: %s trapped after %" JSON_INTEGER_FORMAT " fuel: %s\n", call, fuel,
               trap);
        return;
    }
    printf("fuel estimate: %s used %" JSON_INTEGER_FORMAT " fuel", call, fuel);
    const json_t *start = json_object_get(e, "start_fuel_used");
    if (start)
        printf(" (start function: %" JSON_INTEGER_FORMAT ")", json_integer_value(start));
    const json_t *fits = json_object_get(e, "within_policy_fuel");
    strbuf sb;
    strbuf_init(&sb);
    for (int p = 0; p < POLICY_COUNT; p++)
        if (json_is_true(json_object_get(fits, policies[p].name)))
            strbuf_appendf(&sb, "%s%s", sb.len ? ", " : "", policies[p].name);
    printf("; within the fuel per message of: %s\n", sb.len ? sb.data : "no policy");
    strbuf_free(&sb);
}

static void print_requirements(const json_t *doc)
{
    char memory[64];
    printf("%s: %" JSON_INTEGER_FORMAT " bytes\n", output_string(doc, "file", ""),
           json_integer_value(json_object_get(doc, "size")));
    printf("memory: %s\n", memory_text(json_object_get(doc, "memory"), memory, sizeof memory));
    print_joined("tables", json_object_get(doc, "tables"), "none");
    const json_t *fn = json_object_get(doc, "functions");
    printf("functions: %" JSON_INTEGER_FORMAT " defined, %" JSON_INTEGER_FORMAT
           " imported; most locals in one: %" JSON_INTEGER_FORMAT " (parameters included)\n",
           json_integer_value(json_object_get(fn, "defined")),
           json_integer_value(json_object_get(fn, "imported")),
           json_integer_value(json_object_get(fn, "max_locals")));
    printf("code size: %" JSON_INTEGER_FORMAT " bytes\n",
           json_integer_value(json_object_get(doc, "code_size")));
    printf("custom sections: %" JSON_INTEGER_FORMAT " bytes\n",
           json_integer_value(json_object_get(doc, "custom_sections_size")));
    print_joined("features used", json_object_get(doc, "features"), "none beyond WebAssembly 1.0");
    item_table_print("imports", json_object_get(doc, "imports"), true);
    item_table_print("exports", json_object_get(doc, "exports"), false);
    print_estimate(json_object_get(doc, "fuel_estimate"));
}

int cmd_wasm_analyze_requirements(const cli_invocation *inv)
{
    const char *file = inv->args[0];
    loaded mod;
    cx_error err;
    module_load(file, &mod, &err);
    if (!mod.module) {
        fprintf(stderr, "caxton: %s\n", err.msg);
        return CLI_EXIT_PROBLEM;
    }
    json_t *doc = requirements_json(file, mod.module, mod.size);
    wasm_module_unref(mod.module);
    if (!doc) {
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    cli_emit(inv, doc, print_requirements);
    return CLI_EXIT_OK;
}

/* ---- compatibility-check -------------------------------------------------------------------- */

static const host_import *host_import_find(const char *module_name, const char *name)
{
    for (size_t i = 0; i < sizeof host_imports / sizeof host_imports[0]; i++)
        if (strcmp(host_imports[i].module, module_name) == 0 &&
            strcmp(host_imports[i].name, name) == 0)
            return &host_imports[i];
    return NULL;
}

static void add_text(json_t *list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_text(json_t *list, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_array_append_new(list, json_string(text));
}

/* Why policy p refuses an import (into reasons), or what to know (notes). */
static void check_import(int p, const json_t *imp, json_t *reasons, json_t *notes)
{
    const char *module_name = output_string(imp, "module", ""),
               *name = output_string(imp, "name", "");
    const char *kind = output_string(imp, "kind", ""), *type = output_string(imp, "type", "");
    if (strcmp(kind, "func") != 0) {
        add_text(reasons, "imports a %s (%.100s.%.100s); the host provides only functions", kind,
                 module_name, name);
        return;
    }
    const host_import *h = host_import_find(module_name, name);
    if (!h && strcmp(module_name, WASI) == 0) {
        if (p < POLICY_DEFAULT)
            add_text(reasons, "imports %s.%.100s (WASI is allowed from the default policy)", WASI,
                     name);
        else
            add_text(notes, "%s.%.100s is outside the WASI subset: it links but returns ENOSYS",
                     WASI, name);
    } else if (!h) {
        add_text(reasons, "imports %.100s.%.100s, which the host does not provide", module_name,
                 name);
    } else if (strcmp(h->type, type) != 0) {
        add_text(reasons, "imports %s.%s as %.200s; the host's has type %s", h->module, h->name,
                 type, h->type);
    } else if (h->policy > p) {
        add_text(reasons, "imports %s.%s (allowed from the %s policy)", h->module, h->name,
                 policies[h->policy].name);
    }
}

static json_t *policy_json(int p, const json_t *imports, const wasm_module_info *info)
{
    json_t *reasons = json_array(), *notes = json_array();
    wasm_features allowed = policy_features(p);
    for (size_t i = 0; i < FEATURE_COUNT; i++)
        if (feature_on(&info->features_used, i) && !feature_on(&allowed, i))
            add_text(reasons, "uses %s (not in the %s policy)", feature_names[i].name,
                     policies[p].name);
    size_t i;
    json_t *imp;
    json_array_foreach(imports, i, imp)
        check_import(p, imp, reasons, notes);
    char limit[32];
    units_format_size(policies[p].memory_bytes, limit, sizeof limit);
    uint64_t min_bytes = (uint64_t)info->memory_min_pages * 65536;
    if (info->memory_count > 0 && min_bytes > policies[p].memory_bytes)
        add_text(reasons, "declares %" PRIu32 " pages of memory at start; %s allows %s",
                 info->memory_min_pages, policies[p].name, limit);
    else if (info->memory_count > 0 &&
             (!info->memory_has_max ||
              (uint64_t)info->memory_max_pages * 65536 > policies[p].memory_bytes))
        add_text(notes, "memory.grow beyond %s returns -1", limit);
    return json_pack("{s:s, s:b, s:o, s:o}", "policy", policies[p].name, "compatible",
                     json_array_size(reasons) == 0, "reasons", reasons, "notes", notes);
}

/* What an agent is expected to export (60-wasm.md, Agent ABI). */
static json_t *abi_notes(const wasm_module *m)
{
    json_t *notes = json_array();
    wasm_externtype t;
    if (!find_export(m, "handle_message", &t))
        add_text(notes, "exports no handle_message function: it cannot receive messages as an "
                        "agent");
    if (!find_export(m, "alloc", &t))
        add_text(notes, "exports no alloc function: the host cannot hand it a message");
    bool memory = false;
    for (size_t i = 0; i < wasm_module_export_count(m) && !memory; i++) {
        const char *name;
        wasm_module_export(m, i, &name, &t);
        memory = t.kind == WASM_EXTERN_MEMORY && strcmp(name, "memory") == 0;
    }
    if (!memory)
        add_text(notes, "exports no memory named \"memory\"");
    return notes;
}

static json_t *runtime_json(void)
{
    wasm_features all = wasm_features_2_0();
    return json_pack("{s:s, s:s, s:o}", "version", CAXTON_VERSION, "standard",
                     "WebAssembly 2.0 core without SIMD", "features", features_json(&all));
}

static json_t *compatibility_json(const char *file, const loaded *mod)
{
    json_t *doc = json_pack("{s:s}", "file", file);
    json_t *list = json_array(), *compatible = json_array();
    if (!mod->module) {
        json_object_set_new(doc, "engine",
                            json_pack("{s:b, s:[s]}", "compatible", false, "reasons",
                                      "uses SIMD (v128), which this engine does not implement"));
        for (int p = 0; p < POLICY_COUNT; p++)
            json_array_append_new(list, json_pack("{s:s, s:b, s:[s], s:[]}", "policy",
                                                  policies[p].name, "compatible", false,
                                                  "reasons", "the engine cannot load it",
                                                  "notes"));
    } else {
        wasm_module_info info;
        wasm_module_describe(mod->module, &info);
        json_t *imports = imports_json(mod->module);
        json_object_set_new(doc, "features", features_json(&info.features_used));
        json_object_set_new(doc, "engine", json_pack("{s:b, s:[]}", "compatible", true, "reasons"));
        for (int p = 0; p < POLICY_COUNT; p++) {
            json_t *row = policy_json(p, imports, &info);
            if (json_is_true(json_object_get(row, "compatible")))
                json_array_append_new(compatible, json_string(policies[p].name));
            json_array_append_new(list, row);
        }
        json_object_set_new(doc, "imports", imports);
        json_object_set_new(doc, "notes", abi_notes(mod->module));
    }
    json_object_set_new(doc, "policies", list);
    json_object_set_new(doc, "compatible_policies", compatible);
    return doc;
}

static void print_compatibility(const json_t *doc)
{
    const json_t *runtime = json_object_get(doc, "runtime");
    if (runtime) {
        printf("runtime: caxton %s, %s\n", output_string(runtime, "version", ""),
               output_string(runtime, "standard", ""));
        print_joined("runtime features", json_object_get(runtime, "features"), "none");
    }
    const json_t *compatible = json_object_get(doc, "compatible_policies");
    strbuf sb;
    strbuf_init(&sb);
    join_strings(compatible, "no policy", &sb);
    printf("%s: compatible with %s\n", output_string(doc, "file", ""), sb.data);
    strbuf_free(&sb);
    if (json_object_get(doc, "features"))
        print_joined("features used", json_object_get(doc, "features"),
                     "none beyond WebAssembly 1.0");
    output_table *t = output_table_new(3, (const char *[]){"policy", "compatible", "reasons"});
    const json_t *engine = json_object_get(doc, "engine");
    strbuf rs;
    strbuf_init(&rs);
    join_strings(json_object_get(engine, "reasons"), "WebAssembly 2.0 without SIMD", &rs);
    output_table_row(t, "engine",
                     json_is_true(json_object_get(engine, "compatible")) ? "yes" : "no", rs.data);
    strbuf_free(&rs);
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(doc, "policies"), i, row) {
        strbuf_init(&rs);
        join_strings(json_object_get(row, "reasons"), "", &rs);
        output_table_row(t, output_string(row, "policy", ""),
                         json_is_true(json_object_get(row, "compatible")) ? "yes" : "no", rs.data);
        strbuf_free(&rs);
    }
    output_table_print(t, stdout);
    output_table_free(t);
    /* Notes: the module's own, then each policy's that are not repeated. */
    json_t *notes = json_array();
    json_array_extend(notes, json_object_get(doc, "notes"));
    json_array_foreach(json_object_get(doc, "policies"), i, row) {
        size_t j, k;
        json_t *note, *seen;
        json_array_foreach(json_object_get(row, "notes"), j, note) {
            bool dup = false;
            json_array_foreach(notes, k, seen)
                dup = dup || json_equal(seen, note);
            if (!dup)
                json_array_append(notes, note);
        }
    }
    if (json_array_size(notes) > 0)
        printf("notes:\n");
    json_t *note;
    json_array_foreach(notes, i, note) {
        char *text = strdup(json_string_value(note));
        if (text) {
            output_sanitize(text);
            printf("  - %s\n", text);
        }
        free(text);
    }
    json_decref(notes);
}

int cmd_wasm_compatibility_check(const cli_invocation *inv)
{
    const char *file = inv->args[0];
    loaded mod;
    cx_error err;
    module_load(file, &mod, &err);
    if (!mod.module && !mod.uses_simd) {
        fprintf(stderr, "caxton: %s\n", err.msg);
        return CLI_EXIT_PROBLEM;
    }
    json_t *doc = compatibility_json(file, &mod);
    wasm_module_unref(mod.module);
    if (!doc) {
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    if (cli_flag_set(inv, "runtime-version"))
        json_object_set_new(doc, "runtime", runtime_json());
    bool ok = json_array_size(json_object_get(doc, "compatible_policies")) > 0;
    cli_emit(inv, doc, print_compatibility);
    return ok ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
}

/* ---- diff ----------------------------------------------------------------------------------- */

/* Sets map[key] = value; a key seen before gets "#2", "#3"... so repeated
 * names (imports may repeat, custom sections too) are all kept. */
static void map_add(json_t *map, const char *key, json_t *value)
{
    char unique[600];
    snprintf(unique, sizeof unique, "%s", key);
    for (unsigned n = 2; json_object_get(map, unique); n++)
        snprintf(unique, sizeof unique, "%s#%u", key, n);
    json_object_set_new(map, unique, value);
}

/* Imports or exports by name, in module order. */
static json_t *items_map(const json_t *list, bool imports)
{
    json_t *map = json_object();
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        char key[600];
        if (imports)
            snprintf(key, sizeof key, "%.250s.%.250s", output_string(item, "module", ""),
                     output_string(item, "name", ""));
        else
            snprintf(key, sizeof key, "%.500s", output_string(item, "name", ""));
        map_add(map, key, json_incref(item));
    }
    return map;
}

/* {"added": [...], "removed": [...], "changed": [{"name", "from", "to"}]}:
 * entries of two maps whose values are compared with `same`. */
static json_t *map_diff(const json_t *a, const json_t *b,
                        bool (*same)(const json_t *, const json_t *),
                        json_t *(*entry)(const char *key, const json_t *value))
{
    json_t *added = json_array(), *removed = json_array(), *changed = json_array();
    const char *key;
    json_t *va;
    json_object_foreach((json_t *)a, key, va) {
        const json_t *vb = json_object_get(b, key);
        if (!vb)
            json_array_append_new(removed, entry(key, va));
        else if (!same(va, vb))
            json_array_append_new(changed, json_pack("{s:s, s:o, s:o}", "name", key, "from",
                                                     entry(key, va), "to", entry(key, vb)));
    }
    json_object_foreach((json_t *)b, key, va)
        if (!json_object_get(a, key))
            json_array_append_new(added, entry(key, va));
    return json_pack("{s:o, s:o, s:o}", "added", added, "removed", removed, "changed", changed);
}

static bool item_same(const json_t *a, const json_t *b)
{
    return strcmp(output_string(a, "kind", ""), output_string(b, "kind", "")) == 0 &&
           strcmp(output_string(a, "type", ""), output_string(b, "type", "")) == 0;
}

static json_t *item_entry(const char *key, const json_t *value)
{
    return json_pack("{s:s, s:s, s:s}", "name", key, "kind", output_string(value, "kind", ""),
                     "type", output_string(value, "type", ""));
}

static bool json_same(const json_t *a, const json_t *b)
{
    return json_equal((json_t *)a, (json_t *)b);
}

/* {"name", "size"} for a section, {"name", "type", "size"} for a function. */
static json_t *sized_entry(const char *key, const json_t *value)
{
    if (json_is_integer(value))
        return json_pack("{s:s, s:O}", "name", key, "size", value);
    json_t *e = json_deep_copy(value);
    json_object_set_new(e, "name", json_string(key));
    return e;
}

/* Exported and named functions: {"type", "size"} by name. */
static json_t *functions_map(const wasm_module *m)
{
    json_t *map = json_object();
    for (size_t i = 0; i < wasm_module_export_count(m); i++) {
        const char *name;
        wasm_externtype t;
        wasm_module_export(m, i, &name, &t);
        if (t.kind != WASM_EXTERN_FUNC)
            continue;
        wasm_function_info f;
        wasm_module_function(m, wasm_module_export_index(m, i), &f);
        strbuf sb;
        strbuf_init(&sb);
        cli_wasm_type_text(&t, &sb); /* the export's type is the function's */
        map_add(map, name,
                json_pack("{s:s, s:I}", "type", sb.data, "size", (json_int_t)f.body_size));
        strbuf_free(&sb);
    }
    return map;
}

/* Section sizes by name ("code", "custom:name"). */
static json_t *sections_map(const wasm_module *m)
{
    json_t *map = json_object();
    size_t cursor = 0;
    wasm_section_info s;
    while (wasm_module_next_section(m, &cursor, &s)) {
        char key[300];
        if (s.id == 0)
            snprintf(key, sizeof key, "custom:%.*s", (int)(s.name_len > 250 ? 250 : s.name_len),
                     s.name);
        else
            snprintf(key, sizeof key, "%s", s.name);
        map_add(map, key, json_integer((json_int_t)s.size));
    }
    return map;
}

static json_t *pair(json_t *a, json_t *b)
{
    return json_pack("[o, o]", a, b);
}

static json_t *diff_json(const char *file_a, const loaded *a, const char *file_b, const loaded *b)
{
    wasm_module_info ia, ib;
    wasm_module_describe(a->module, &ia);
    wasm_module_describe(b->module, &ib);
    json_t *doc = json_pack("{s:{s:s, s:I}, s:{s:s, s:I}}", "a", "file", file_a, "size",
                            (json_int_t)a->size, "b", "file", file_b, "size", (json_int_t)b->size);
    if (!doc)
        return NULL;
    json_t *la = imports_json(a->module), *lb = imports_json(b->module);
    json_t *ma = items_map(la, true), *mb = items_map(lb, true);
    json_object_set_new(doc, "imports", map_diff(ma, mb, item_same, item_entry));
    json_decref(la), json_decref(lb), json_decref(ma), json_decref(mb);
    la = exports_json(a->module), lb = exports_json(b->module);
    ma = items_map(la, false), mb = items_map(lb, false);
    json_object_set_new(doc, "exports", map_diff(ma, mb, item_same, item_entry));
    json_decref(la), json_decref(lb), json_decref(ma), json_decref(mb);

    ma = functions_map(a->module), mb = functions_map(b->module);
    json_t *functions = map_diff(ma, mb, json_same, sized_entry);
    json_decref(ma), json_decref(mb);
    json_object_set_new(functions, "defined",
                        pair(json_integer(ia.func_count - ia.func_import_count),
                             json_integer(ib.func_count - ib.func_import_count)));
    json_object_set_new(functions, "imported", pair(json_integer(ia.func_import_count),
                                                    json_integer(ib.func_import_count)));
    json_object_set_new(functions, "code_size", pair(json_integer((json_int_t)ia.code_size),
                                                     json_integer((json_int_t)ib.code_size)));
    json_object_set_new(doc, "functions", functions);

    ma = sections_map(a->module), mb = sections_map(b->module);
    json_object_set_new(doc, "sections", map_diff(ma, mb, json_same, sized_entry));
    json_decref(ma), json_decref(mb);

    json_object_set_new(doc, "memory", pair(memory_json(&ia), memory_json(&ib)));
    json_object_set_new(doc, "tables",
                        pair(tables_json(a->module, &ia), tables_json(b->module, &ib)));
    json_object_set_new(doc, "start", pair(json_boolean(ia.has_start), json_boolean(ib.has_start)));
    json_t *fa = features_json(&ia.features_used), *fb = features_json(&ib.features_used);
    json_object_set_new(doc, "features", pair(fa, fb));
    return doc;
}

static bool pair_differs(const json_t *p)
{
    return !json_equal(json_array_get(p, 0), json_array_get(p, 1));
}

static bool changes_empty(const json_t *c)
{
    return json_array_size(json_object_get(c, "added")) == 0 &&
           json_array_size(json_object_get(c, "removed")) == 0 &&
           json_array_size(json_object_get(c, "changed")) == 0;
}

static void print_changes(const char *title, const json_t *c, bool sizes)
{
    if (changes_empty(c)) {
        printf("%s: unchanged\n", title);
        return;
    }
    printf("%s:\n", title);
    output_table *t = output_table_new(3, (const char *[]){"", "name", sizes ? "size" : "type"});
    static const char *const parts[] = {"added", "removed", "changed"};
    static const char *const marks[] = {"  +", "  -", "  ~"};
    for (int k = 0; k < 3; k++) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(c, parts[k]), i, e) {
            char text[700];
            const json_t *from = json_object_get(e, "from"), *to = json_object_get(e, "to");
            if (sizes && k < 2)
                snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT " bytes",
                         json_integer_value(json_object_get(e, "size")));
            else if (sizes)
                snprintf(text, sizeof text,
                         "%" JSON_INTEGER_FORMAT " -> %" JSON_INTEGER_FORMAT " bytes",
                         json_integer_value(json_object_get(from, "size")),
                         json_integer_value(json_object_get(to, "size")));
            else if (k < 2)
                snprintf(text, sizeof text, "%s %s", output_string(e, "kind", ""),
                         output_string(e, "type", ""));
            else if (strcmp(output_string(from, "kind", ""), output_string(to, "kind", "")) == 0)
                snprintf(text, sizeof text, "%s %s -> %s", output_string(from, "kind", ""),
                         output_string(from, "type", ""), output_string(to, "type", ""));
            else
                snprintf(text, sizeof text, "%s %s -> %s %s", output_string(from, "kind", ""),
                         output_string(from, "type", ""), output_string(to, "kind", ""),
                         output_string(to, "type", ""));
            output_table_row(t, marks[k], output_string(e, "name", ""), text);
        }
    }
    output_table_print(t, stdout);
    output_table_free(t);
}

static void print_pair(const char *title, const json_t *p, const char *unit)
{
    char *a = output_value_text(json_array_get(p, 0)), *b = output_value_text(json_array_get(p, 1));
    if (pair_differs(p))
        printf("%s: %s -> %s%s\n", title, a ? a : "?", b ? b : "?", unit);
    free(a);
    free(b);
}

/* "title: a, b -> a, b, c" for a pair of string lists that differ. */
static void print_list_pair(const char *title, const json_t *p)
{
    if (!pair_differs(p))
        return;
    strbuf a, b;
    strbuf_init(&a);
    strbuf_init(&b);
    join_strings(json_array_get(p, 0), "none", &a);
    join_strings(json_array_get(p, 1), "none", &b);
    printf("%s: %s -> %s\n", title, a.data, b.data);
    strbuf_free(&a);
    strbuf_free(&b);
}

static void print_diff(const json_t *doc)
{
    const json_t *a = json_object_get(doc, "a"), *b = json_object_get(doc, "b");
    printf("--- %s (%" JSON_INTEGER_FORMAT " bytes)\n+++ %s (%" JSON_INTEGER_FORMAT " bytes)\n",
           output_string(a, "file", ""), json_integer_value(json_object_get(a, "size")),
           output_string(b, "file", ""), json_integer_value(json_object_get(b, "size")));
    if (json_is_true(json_object_get(doc, "identical"))) {
        printf("no differences in imports, exports, functions, sections, memory, tables or "
               "features\n");
        return;
    }
    print_changes("imports", json_object_get(doc, "imports"), false);
    print_changes("exports", json_object_get(doc, "exports"), false);
    const json_t *fn = json_object_get(doc, "functions");
    print_pair("defined functions", json_object_get(fn, "defined"), "");
    print_pair("imported functions", json_object_get(fn, "imported"), "");
    print_pair("code size", json_object_get(fn, "code_size"), " bytes");
    if (json_array_size(json_object_get(fn, "changed")) > 0) {
        /* Exported functions whose body size or type changed. */
        printf("exported functions:\n");
        output_table *t = output_table_new(3, (const char *[]){"", "name", "change"});
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(fn, "changed"), i, e) {
            const json_t *from = json_object_get(e, "from"), *to = json_object_get(e, "to");
            char text[700];
            if (strcmp(output_string(from, "type", ""), output_string(to, "type", "")) != 0)
                snprintf(text, sizeof text, "type %s -> %s", output_string(from, "type", ""),
                         output_string(to, "type", ""));
            else
                snprintf(text, sizeof text,
                         "%" JSON_INTEGER_FORMAT " -> %" JSON_INTEGER_FORMAT " bytes",
                         json_integer_value(json_object_get(from, "size")),
                         json_integer_value(json_object_get(to, "size")));
            output_table_row(t, "  ~", output_string(e, "name", ""), text);
        }
        output_table_print(t, stdout);
        output_table_free(t);
    }
    print_changes("sections", json_object_get(doc, "sections"), true);
    const json_t *memory = json_object_get(doc, "memory");
    if (pair_differs(memory)) {
        char ma[64], mb[64];
        printf("memory: %s -> %s\n", memory_text(json_array_get(memory, 0), ma, sizeof ma),
               memory_text(json_array_get(memory, 1), mb, sizeof mb));
    }
    print_list_pair("tables", json_object_get(doc, "tables"));
    const json_t *start = json_object_get(doc, "start");
    if (pair_differs(start))
        printf("start function: %s\n",
               json_is_true(json_array_get(start, 1)) ? "added" : "removed");
    print_list_pair("features used", json_object_get(doc, "features"));
}

int cmd_wasm_diff(const cli_invocation *inv)
{
    loaded a, b;
    cx_error err;
    module_load(inv->args[0], &a, &err);
    if (!a.module) {
        fprintf(stderr, "caxton: %s\n", err.msg);
        return CLI_EXIT_PROBLEM;
    }
    module_load(inv->args[1], &b, &err);
    if (!b.module) {
        fprintf(stderr, "caxton: %s\n", err.msg);
        wasm_module_unref(a.module);
        return CLI_EXIT_PROBLEM;
    }
    json_t *doc = diff_json(inv->args[0], &a, inv->args[1], &b);
    wasm_module_unref(a.module);
    wasm_module_unref(b.module);
    if (!doc) {
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    static const char *const lists[] = {"imports", "exports", "functions", "sections"};
    static const char *const pairs[] = {"memory", "tables", "start", "features"};
    bool identical = true;
    for (int i = 0; i < 4; i++) {
        identical = identical && changes_empty(json_object_get(doc, lists[i])) &&
                    !pair_differs(json_object_get(doc, pairs[i]));
    }
    const json_t *fn = json_object_get(doc, "functions");
    identical = identical && !pair_differs(json_object_get(fn, "defined")) &&
                !pair_differs(json_object_get(fn, "imported")) &&
                !pair_differs(json_object_get(fn, "code_size"));
    json_object_set_new(doc, "identical", json_boolean(identical));
    cli_emit(inv, doc, print_diff);
    return CLI_EXIT_OK;
}
