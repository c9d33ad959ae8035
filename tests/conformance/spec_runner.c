/* The WebAssembly spec test-suite runner.
 *
 * Reads the JSON scripts that `wast2json` makes from the suite's .wast files
 * and checks each command against the engine:
 *   module                         decodes and validates (and, with the run
 *                                  time, instantiates with the imports)
 *   assert_malformed               refused with CX_EPARSE
 *   assert_invalid                 refused with CX_EINVAL
 *   register, action, assert_return, assert_trap, assert_exhaustion,
 *   assert_unlinkable, assert_uninstantiable
 *                                  executed through the public API (wasm.h)
 *                                  with the suite's `spectest` host module
 * Commands on text-format modules are skipped: the engine reads binaries.

 *
 * Usage: wasm_spec_runner [--root DIR] [--verbose]
 *                         [--features 1.0|2.0] FILE.json ... (repeatable)
 * Prints `FILE: N passed, N failed, N skipped` per script and the totals;
 * exits 1 when anything failed. */
#include <stdarg.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasm/module.h"
#include "wasm/wasm.h"

#define MAX_FAILURES_SHOWN 20
#define MAX_MODULE_BYTES (64u << 20)

typedef struct counts {
    unsigned passed, failed, skipped;
} counts;

typedef struct runner {
    wasm_features features;
    const char *dir; /* of the JSON file: the .wasm files are beside it */
    const char *label;
    bool verbose;
    counts file;
    unsigned shown;
    struct exec_state *exec;
} runner;

static void failed(runner *r, json_t *cmd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void failed(runner *r, json_t *cmd, const char *fmt, ...)
{
    r->file.failed++;
    if (!r->verbose && r->shown >= MAX_FAILURES_SHOWN)
        return;
    r->shown++;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("  FAIL %s:%" JSON_INTEGER_FORMAT " %s: %s\n", r->label,
           json_integer_value(json_object_get(cmd, "line")),
           json_string_value(json_object_get(cmd, "type")), msg);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_MODULE_BYTES)
                break;
            cap = cap ? cap * 2 : 4096;
            uint8_t *p = realloc(buf, cap);
            if (!p)
                break;
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *len = n;
    return buf ? buf : malloc(1);
}

static uint8_t *read_module(runner *r, json_t *cmd, size_t *len)
{
    const char *name = json_string_value(json_object_get(cmd, "filename"));
    if (!name)
        return NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", r->dir, name);
    return read_file(path, len);
}

static bool is_text_module(json_t *cmd)
{
    const char *type = json_string_value(json_object_get(cmd, "module_type"));
    return type && strcmp(type, "text") == 0;
}

/* Decode + validate: the part that needs no run time. */
static int check_module(runner *r, const uint8_t *bytes, size_t len, cx_error *err)
{
    wasm_module_def *def = wasm_decode(bytes, len, &r->features, err);
    if (!def)
        return err->code;
    int rc = wasm_validate(def, err);
    wasm_module_def_free(def);
    return rc;
}

static void run_assert_refused(runner *r, json_t *cmd, int expect)
{
    if (is_text_module(cmd)) {
        r->file.skipped++;
        return;
    }
    size_t len;
    uint8_t *bytes = read_module(r, cmd, &len);
    if (!bytes) {
        failed(r, cmd, "cannot read the module file");
        return;
    }
    cx_error err = {0};
    int rc = check_module(r, bytes, len, &err);
    free(bytes);
    const char *text = json_string_value(json_object_get(cmd, "text"));
    if (rc == expect)
        r->file.passed++;
    else if (rc == 0)
        failed(r, cmd, "accepted, expected \"%s\"", text ? text : "");
    else
        failed(r, cmd, "refused as %s (%s), expected %s \"%s\"", cx_strerror(rc), err.msg,
               cx_strerror(expect), text ? text : "");
}

/* ---- execution (needs the run time) ------------------------------------- */

typedef struct named_instance {
    char *name;
    wasm_instance *instance;
} named_instance;

typedef struct exec_state {
    wasm_store *store;
    wasm_instance *current;
    named_instance *named; /* `(module $name ...)` and `(register "as")` */
    size_t named_count;
    wasm_module **modules;
    size_t module_count;
    /* The spectest host module. */
    struct {
        const char *name;
        wasm_extern ext;
    } spectest[16];
    size_t spectest_count;
} exec_state;

static int spectest_print(void *env, wasm_memory *memory, const wasm_value *args,
                          wasm_value *results, wasm_trap *trap)
{
    (void)env, (void)memory, (void)args, (void)results, (void)trap;
    return 0;
}

static void spectest_add(exec_state *x, const char *name, wasm_extern ext)
{
    if (x->spectest_count < sizeof x->spectest / sizeof *x->spectest) {
        x->spectest[x->spectest_count].name = name;
        x->spectest[x->spectest_count].ext = ext;
        x->spectest_count++;
    }
}

static void spectest_func(exec_state *x, const char *name, const wasm_valtype *params,
                          uint32_t n)
{
    wasm_functype type = {.param_count = n, .params = params};
    wasm_extern ext = {.kind = WASM_EXTERN_FUNC};
    ext.of.func = wasm_func_new_host(x->store, &type, spectest_print, NULL);
    spectest_add(x, name, ext);
}

static void spectest_global(exec_state *x, const char *name, wasm_value value)
{
    cx_error err = {0};
    wasm_extern ext = {.kind = WASM_EXTERN_GLOBAL};
    ext.of.global = wasm_global_new(x->store, value, false, &err);
    if (ext.of.global)
        spectest_add(x, name, ext);
}

static void spectest_build(exec_state *x)
{
    static const wasm_valtype i32[] = {WASM_I32}, i64[] = {WASM_I64}, f32[] = {WASM_F32},
                              f64[] = {WASM_F64}, i32_f32[] = {WASM_I32, WASM_F32},
                              f64_f64[] = {WASM_F64, WASM_F64};
    spectest_func(x, "print", NULL, 0);
    spectest_func(x, "print_i32", i32, 1);
    spectest_func(x, "print_i64", i64, 1);
    spectest_func(x, "print_f32", f32, 1);
    spectest_func(x, "print_f64", f64, 1);
    spectest_func(x, "print_i32_f32", i32_f32, 2);
    spectest_func(x, "print_f64_f64", f64_f64, 2);
    float f = 666.6f;
    double d = 666.6;
    wasm_value v = {.type = WASM_I32, .of.i32 = 666};
    spectest_global(x, "global_i32", v);
    v = (wasm_value){.type = WASM_I64, .of.i64 = 666};
    spectest_global(x, "global_i64", v);
    v = (wasm_value){.type = WASM_F32};
    memcpy(&v.of.f32, &f, sizeof f);
    spectest_global(x, "global_f32", v);
    v = (wasm_value){.type = WASM_F64};
    memcpy(&v.of.f64, &d, sizeof d);
    spectest_global(x, "global_f64", v);
    cx_error err = {0};
    wasm_extern ext = {.kind = WASM_EXTERN_TABLE};
    ext.of.table = wasm_table_new(x->store, WASM_FUNCREF, (wasm_limits_decl){10, 20, true}, &err);
    if (ext.of.table)
        spectest_add(x, "table", ext);
    ext = (wasm_extern){.kind = WASM_EXTERN_MEMORY};
    ext.of.memory = wasm_memory_new(x->store, (wasm_limits_decl){1, 2, true}, &err);
    if (ext.of.memory)
        spectest_add(x, "memory", ext);
}

static void exec_begin(runner *r)
{
    exec_state *x = calloc(1, sizeof *x);
    if (!x)
        abort();
    wasm_limits limits = {0};
    x->store = wasm_store_new(&limits);
    if (!x->store)
        abort();
    spectest_build(x);
    r->exec = x;
}

static void exec_end(runner *r)
{
    exec_state *x = r->exec;
    wasm_store_free(x->store);
    for (size_t i = 0; i < x->module_count; i++)
        wasm_module_unref(x->modules[i]);
    free(x->modules);
    for (size_t i = 0; i < x->named_count; i++)
        free(x->named[i].name);
    free(x->named);
    free(x);
    r->exec = NULL;
}

static void name_instance(exec_state *x, const char *name, wasm_instance *instance)
{
    named_instance *p = realloc(x->named, (x->named_count + 1) * sizeof *p);
    if (!p)
        abort();
    x->named = p;
    x->named[x->named_count].name = strdup(name);
    x->named[x->named_count].instance = instance;
    x->named_count++;
}

static wasm_instance *find_instance(exec_state *x, const char *name)
{
    if (!name)
        return x->current;
    for (size_t i = x->named_count; i-- > 0;)
        if (strcmp(x->named[i].name, name) == 0)
            return x->named[i].instance;
    return NULL;
}

static bool resolve_import(exec_state *x, const char *module, const char *name,
                           wasm_extern *out)
{
    if (strcmp(module, "spectest") == 0) {
        for (size_t i = 0; i < x->spectest_count; i++)
            if (strcmp(x->spectest[i].name, name) == 0) {
                *out = x->spectest[i].ext;
                return true;
            }
        return false;
    }
    wasm_instance *inst = find_instance(x, module);
    return inst && module && wasm_instance_export(inst, name, out);
}

typedef enum { INST_OK, INST_INVALID, INST_UNLINKABLE, INST_TRAPPED } inst_result;

/* Builds and instantiates a command's module. */
static inst_result instantiate(runner *r, json_t *cmd, wasm_instance **out, char *why,
                               size_t why_size)
{
    exec_state *x = r->exec;
    size_t len;
    uint8_t *bytes = read_module(r, cmd, &len);
    if (!bytes) {
        snprintf(why, why_size, "cannot read the module file");
        return INST_INVALID;
    }
    cx_error err = {0};
    wasm_module *m = wasm_module_new(bytes, len, &r->features, &err);
    free(bytes);
    if (!m) {
        snprintf(why, why_size, "refused as %s: %s", cx_strerror(err.code), err.msg);
        return INST_INVALID;
    }
    wasm_module **mp = realloc(x->modules, (x->module_count + 1) * sizeof *mp);
    if (!mp)
        abort();
    x->modules = mp;
    x->modules[x->module_count++] = m;
    size_t n = wasm_module_import_count(m);
    wasm_extern *imports = calloc(n ? n : 1, sizeof *imports);
    if (!imports)
        abort();
    for (size_t i = 0; i < n; i++) {
        const char *module, *name;
        wasm_externtype type;
        wasm_module_import(m, i, &module, &name, &type);
        if (!resolve_import(x, module, name, &imports[i])) {
            snprintf(why, why_size, "unknown import %s.%s", module, name);
            free(imports);
            return INST_UNLINKABLE;
        }
    }
    wasm_trap trap = {0};
    *out = wasm_instantiate(x->store, m, imports, n, &trap, &err);
    free(imports);
    if (*out)
        return INST_OK;
    if (trap.kind != WASM_TRAP_NONE) {
        snprintf(why, why_size, "trapped: %s", trap.message);
        return INST_TRAPPED;
    }
    snprintf(why, why_size, "not linked: %s", err.msg);
    return INST_UNLINKABLE;
}

static void run_module(runner *r, json_t *cmd)
{
    if (is_text_module(cmd)) {
        r->file.skipped++;
        return;
    }
    char why[CX_ERROR_MSG_MAX + 64];
    wasm_instance *inst = NULL;
    inst_result res = instantiate(r, cmd, &inst, why, sizeof why);
    if (res != INST_OK) {
        r->exec->current = NULL;
        failed(r, cmd, "%s", why);
        return;
    }
    r->exec->current = inst;
    const char *name = json_string_value(json_object_get(cmd, "name"));
    if (name)
        name_instance(r->exec, name, inst);
    r->file.passed++;
}

static wasm_valtype valtype_named(const char *s)
{
    static const struct {
        const char *name;
        wasm_valtype type;
    } names[] = {{"i32", WASM_I32},         {"i64", WASM_I64},        {"f32", WASM_F32},
                 {"f64", WASM_F64},         {"funcref", WASM_FUNCREF}, {"externref", WASM_EXTERNREF},
                 {"v128", WASM_V128}};
    for (size_t i = 0; s && i < sizeof names / sizeof *names; i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].type;
    return (wasm_valtype)0;
}

static bool parse_value(json_t *j, wasm_value *out)
{
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *text = json_string_value(json_object_get(j, "value"));
    memset(out, 0, sizeof *out);
    out->type = valtype_named(type);
    if (!out->type || out->type == WASM_V128)
        return false;
    if (out->type == WASM_FUNCREF) {
        out->of.func = NULL; /* only null funcrefs can be written as arguments */
        return !text || strcmp(text, "null") == 0;
    }
    if (out->type == WASM_EXTERNREF) {
        if (text && strcmp(text, "null") == 0) {
            out->of.ext = WASM_EXTERNREF_NULL;
            return true;
        }
        out->of.ext = text ? (uintptr_t)strtoull(text, NULL, 10) : 0;
        return text != NULL;
    }
    if (!text)
        return false;
    uint64_t v = strtoull(text, NULL, 10);
    if (out->type == WASM_I32 || out->type == WASM_F32)
        out->of.i32 = (uint32_t)v;
    else
        out->of.i64 = v;
    return true;
}

/* Compares a result with an expected value (NaN patterns and references
 * included). */
static bool value_matches(const wasm_value *got, json_t *expect)
{
    const char *type = json_string_value(json_object_get(expect, "type"));
    const char *text = json_string_value(json_object_get(expect, "value"));
    wasm_valtype t = valtype_named(type);
    if (got->type != t)
        return false;
    if (t == WASM_FUNCREF) {
        if (text && strcmp(text, "null") == 0)
            return got->of.func == NULL;
        return got->of.func != NULL;
    }
    if (t == WASM_EXTERNREF) {
        if (!text)
            return got->of.ext != WASM_EXTERNREF_NULL;
        if (strcmp(text, "null") == 0)
            return got->of.ext == WASM_EXTERNREF_NULL;
        return got->of.ext == (uintptr_t)strtoull(text, NULL, 10);
    }
    if (!text)
        return true; /* only the type is given */
    bool canonical = strcmp(text, "nan:canonical") == 0;
    bool arithmetic = strcmp(text, "nan:arithmetic") == 0;
    if (t == WASM_F32 && (canonical || arithmetic))
        return canonical ? (got->of.f32 & 0x7fffffffu) == 0x7fc00000u
                         : (got->of.f32 & 0x7fc00000u) == 0x7fc00000u;
    if (t == WASM_F64 && (canonical || arithmetic)) {
        const uint64_t quiet = UINT64_C(0x7ff8000000000000);
        return canonical ? (got->of.f64 & ~(UINT64_C(1) << 63)) == quiet
                         : (got->of.f64 & quiet) == quiet;
    }
    uint64_t v = strtoull(text, NULL, 10);
    if (t == WASM_I32 || t == WASM_F32)
        return got->of.i32 == (uint32_t)v;
    return got->of.i64 == v;
}

static void format_value(const wasm_value *v, char *buf, size_t size)
{
    switch (v->type) {
    case WASM_I32:
    case WASM_F32:
        snprintf(buf, size, "%s:%" PRIu32, wasm_valtype_name(v->type), v->of.i32);
        break;
    case WASM_I64:
    case WASM_F64:
        snprintf(buf, size, "%s:%" PRIu64, wasm_valtype_name(v->type), v->of.i64);
        break;
    case WASM_FUNCREF:
        snprintf(buf, size, "funcref:%s", v->of.func ? "func" : "null");
        break;
    case WASM_EXTERNREF:
        if (v->of.ext == WASM_EXTERNREF_NULL)
            snprintf(buf, size, "externref:null");
        else
            snprintf(buf, size, "externref:%" PRIuPTR, v->of.ext);
        break;
    default:
        snprintf(buf, size, "?");
    }
}

#define MAX_VALUES 1024

typedef enum { ACT_OK, ACT_TRAP, ACT_ERROR } action_result;

/* Runs an action (invoke or get). Fills results and their count, or the
 * trap, or an error description in why. */
static action_result run_action(runner *r, json_t *action, wasm_value *results,
                                size_t *result_count, wasm_trap *trap, char *why, size_t size)
{
    const char *type = json_string_value(json_object_get(action, "type"));
    const char *module = json_string_value(json_object_get(action, "module"));
    json_t *field_json = json_object_get(action, "field");
    const char *field = json_string_value(field_json);
    wasm_instance *inst = find_instance(r->exec, module);
    wasm_extern ext;
    if (!inst || !field) {
        snprintf(why, size, "no module instance%s%s", module ? " " : "",
                 module ? module : "");
        return ACT_ERROR;
    }
    /* Export names may contain NUL bytes (names.wast): look up by length. */
    if (!wasm_instance_export_n(inst, field, json_string_length(field_json), &ext)) {
        snprintf(why, size, "no export \"%s\"", field);
        return ACT_ERROR;
    }
    if (type && strcmp(type, "get") == 0) {
        if (ext.kind != WASM_EXTERN_GLOBAL) {
            snprintf(why, size, "export \"%s\" is not a global", field);
            return ACT_ERROR;
        }
        results[0] = wasm_global_get(ext.of.global);
        *result_count = 1;
        return ACT_OK;
    }
    if (ext.kind != WASM_EXTERN_FUNC) {
        snprintf(why, size, "export \"%s\" is not a function", field);
        return ACT_ERROR;
    }
    json_t *args = json_object_get(action, "args");
    size_t argc = json_array_size(args);
    if (argc > MAX_VALUES) {
        snprintf(why, size, "too many arguments");
        return ACT_ERROR;
    }
    wasm_value argv[MAX_VALUES];
    for (size_t i = 0; i < argc; i++)
        if (!parse_value(json_array_get(args, i), &argv[i])) {
            snprintf(why, size, "unsupported argument %zu", i);
            return ACT_ERROR;
        }
    const wasm_functype *ft = wasm_func_type(ext.of.func);
    *result_count = ft->result_count;
    if (*result_count > MAX_VALUES) {
        snprintf(why, size, "too many results");
        return ACT_ERROR;
    }
    memset(trap, 0, sizeof *trap);
    if (wasm_call(r->exec->store, ext.of.func, argv, argc, results, *result_count, trap) != 0)
        return ACT_TRAP;
    return ACT_OK;
}

static void run_exec_command(runner *r, json_t *cmd, const char *type)
{
    exec_state *x = r->exec;
    char why[CX_ERROR_MSG_MAX + 64] = "";
    const char *text = json_string_value(json_object_get(cmd, "text"));
    if (strcmp(type, "register") == 0) {
        const char *as = json_string_value(json_object_get(cmd, "as"));
        wasm_instance *inst = find_instance(x, json_string_value(json_object_get(cmd, "name")));
        if (!inst || !as)
            failed(r, cmd, "no module to register");
        else
            name_instance(x, as, inst);
        return;
    }
    if (strcmp(type, "assert_unlinkable") == 0 || strcmp(type, "assert_uninstantiable") == 0) {
        if (is_text_module(cmd)) {
            r->file.skipped++;
            return;
        }
        inst_result want =
            strcmp(type, "assert_unlinkable") == 0 ? INST_UNLINKABLE : INST_TRAPPED;
        wasm_instance *inst = NULL;
        inst_result got = instantiate(r, cmd, &inst, why, sizeof why);
        if (got == want)
            r->file.passed++;
        else if (got == INST_OK)
            failed(r, cmd, "instantiated, expected \"%s\"", text ? text : "");
        else
            failed(r, cmd, "%s, expected \"%s\"", why, text ? text : "");
        return;
    }
    json_t *action = json_object_get(cmd, "action");
    if (!action) {
        failed(r, cmd, "unknown command");
        return;
    }
    wasm_value results[MAX_VALUES];
    size_t n = 0;
    wasm_trap trap;
    action_result res = run_action(r, action, results, &n, &trap, why, sizeof why);
    if (res == ACT_ERROR) {
        failed(r, cmd, "%s", why);
        return;
    }
    if (strcmp(type, "action") == 0) {
        if (res == ACT_TRAP)
            failed(r, cmd, "trapped: %s", trap.message);
        else
            r->file.passed++;
    } else if (strcmp(type, "assert_return") == 0) {
        json_t *expected = json_object_get(cmd, "expected");
        if (res == ACT_TRAP) {
            failed(r, cmd, "trapped: %s", trap.message);
            return;
        }
        if (json_array_size(expected) != n) {
            failed(r, cmd, "%zu results, expected %zu", n, json_array_size(expected));
            return;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(expected, i);
            if (!value_matches(&results[i], e)) {
                char got[64];
                format_value(&results[i], got, sizeof got);
                failed(r, cmd, "result %zu is %s, expected %s:%s", i, got,
                       json_string_value(json_object_get(e, "type")),
                       json_string_value(json_object_get(e, "value")));
                return;
            }
        }
        r->file.passed++;
    } else if (strcmp(type, "assert_trap") == 0 || strcmp(type, "assert_exhaustion") == 0) {
        if (res != ACT_TRAP)
            failed(r, cmd, "returned, expected trap \"%s\"", text ? text : "");
        else if (strcmp(type, "assert_exhaustion") == 0 && trap.kind != WASM_TRAP_CALL_STACK_EXHAUSTED)
            failed(r, cmd, "trapped \"%s\", expected \"%s\"", trap.message, text ? text : "");
        else
            r->file.passed++;
    } else {
        failed(r, cmd, "unknown command");
    }
}

static void run_command(runner *r, json_t *cmd)
{
    const char *type = json_string_value(json_object_get(cmd, "type"));
    if (!type) {
        failed(r, cmd, "command without a type");
        return;
    }
    if (strcmp(type, "module") == 0)
        run_module(r, cmd);
    else if (strcmp(type, "assert_malformed") == 0)
        run_assert_refused(r, cmd, CX_EPARSE);
    else if (strcmp(type, "assert_invalid") == 0)
        run_assert_refused(r, cmd, CX_EINVAL);
    else
        run_exec_command(r, cmd, type);
}

static const char *display_name(const char *path, const char *root, char *buf, size_t size)
{
    const char *name = path;
    size_t n = root ? strlen(root) : 0;
    if (n && strncmp(path, root, n) == 0) {
        name = path + n;
        while (*name == '/')
            name++;
    }
    snprintf(buf, size, "%s", name);
    char *dot = strrchr(buf, '.');
    if (dot && strcmp(dot, ".json") == 0 && (size_t)(dot - buf) + 6 <= size)
        strcpy(dot, ".wast");
    return buf;
}

static int run_file(runner *r, const char *path, const char *root, counts *total)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    char label[1024];
    r->label = display_name(path, root, label, sizeof label);
    memset(&r->file, 0, sizeof r->file);
    r->shown = 0;
    if (!doc) {
        printf("  FAIL %s: cannot read JSON: %s\n", label, jerr.text);
        r->file.failed++;
    } else {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            strcpy(dir, ".");
        r->dir = dir;
        exec_begin(r);
        json_t *commands = json_object_get(doc, "commands");
        size_t i;
        json_t *cmd;
        json_array_foreach(commands, i, cmd) run_command(r, cmd);
        exec_end(r);
        json_decref(doc);
    }
    printf("%s: %u passed, %u failed, %u skipped\n", label, r->file.passed, r->file.failed,
           r->file.skipped);
    total->passed += r->file.passed;
    total->failed += r->file.failed;
    total->skipped += r->file.skipped;
    return 0;
}

static wasm_features features_named(const char *name, bool *ok)
{
    wasm_features f = {0};
    *ok = true;
    if (strcmp(name, "1.0") == 0) {
        f = wasm_features_1_0();
    } else if (strcmp(name, "2.0") == 0) {
        f = wasm_features_2_0();
    } else {
        *ok = false;
    }
    return f;
}

int main(int argc, char **argv)
{
    runner r = {0};
    bool ok;
    r.features = features_named("2.0", &ok);
    const char *root = NULL;
    counts total = {0};
    unsigned files = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--root") == 0 && i + 1 < argc) {
            root = argv[++i];
        } else if (strcmp(argv[i], "--verbose") == 0) {
            r.verbose = true;
        } else if (strcmp(argv[i], "--features") == 0 && i + 1 < argc) {
            r.features = features_named(argv[++i], &ok);
            if (!ok) {
                fprintf(stderr, "wasm_spec_runner: unknown feature set %s (1.0 or 2.0)\n",
                        argv[i]);
                return 2;
            }
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: wasm_spec_runner [--root DIR] [--verbose] "
                            "[--features 1.0|2.0] FILE.json...\n");
            return 2;
        } else {
            run_file(&r, argv[i], root, &total);
            files++;
        }
    }
    printf("%u passed, %u failed, %u skipped\n", total.passed, total.failed, total.skipped);
    if (files == 0)
        fprintf(stderr, "wasm_spec_runner: no scripts given\n");
    return total.failed ? 1 : 0;
}
