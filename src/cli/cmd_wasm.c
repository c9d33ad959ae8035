/* `caxton wasm validate MODULE [--comprehensive]`: offline checks of a
 * module file with the engine itself. Plain: decode, validate and compile,
 * reporting the section, offset and rule of the first problem. With
 * --comprehensive: also list what the module imports and exports and, when
 * it imports nothing, instantiate it once (running its start function) under
 * default limits, as a dry run of deployment. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "wasm/wasm.h"

#define WASM_VALIDATE_MAX_FILE (256u * 1024 * 1024)

static const char *const kind_names[] = {"func", "table", "memory", "global"};

void cli_wasm_type_text(const wasm_externtype *t, strbuf *sb)
{
    switch (t->kind) {
    case WASM_EXTERN_FUNC:
        strbuf_appends(sb, "(");
        for (uint32_t i = 0; i < t->func.param_count; i++)
            strbuf_appendf(sb, "%s%s", i ? ", " : "", wasm_valtype_name(t->func.params[i]));
        strbuf_appends(sb, ") -> (");
        for (uint32_t i = 0; i < t->func.result_count; i++)
            strbuf_appendf(sb, "%s%s", i ? ", " : "", wasm_valtype_name(t->func.results[i]));
        strbuf_appends(sb, ")");
        break;
    case WASM_EXTERN_TABLE:
    case WASM_EXTERN_MEMORY:
        if (t->kind == WASM_EXTERN_TABLE)
            strbuf_appendf(sb, "%s ", wasm_valtype_name(t->table_type));
        strbuf_appendf(sb, "%" PRIu32 "..", t->limits.min);
        if (t->limits.has_max)
            strbuf_appendf(sb, "%" PRIu32, t->limits.max);
        strbuf_appends(sb, t->kind == WASM_EXTERN_MEMORY ? " pages" : " elements");
        break;
    case WASM_EXTERN_GLOBAL:
        strbuf_appendf(sb, "%s%s", t->global_mutable ? "mut " : "",
                       wasm_valtype_name(t->global_type));
        break;
    }
}

static void describe_type(const wasm_externtype *t, char *buf, size_t size)
{
    strbuf sb;
    strbuf_init(&sb);
    cli_wasm_type_text(t, &sb);
    snprintf(buf, size, "%s", sb.data);
    strbuf_free(&sb);
}

static json_t *list_imports(const wasm_module *m)
{
    json_t *list = json_array();
    for (size_t i = 0; i < wasm_module_import_count(m); i++) {
        const char *module_name, *name;
        wasm_externtype t;
        char type[512];
        wasm_module_import(m, i, &module_name, &name, &t);
        describe_type(&t, type, sizeof type);
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s}", "module", module_name,
                                              "name", name, "kind", kind_names[t.kind], "type",
                                              type));
    }
    return list;
}

static json_t *list_exports(const wasm_module *m)
{
    json_t *list = json_array();
    for (size_t i = 0; i < wasm_module_export_count(m); i++) {
        const char *name;
        wasm_externtype t;
        char type[512];
        wasm_module_export(m, i, &name, &t);
        describe_type(&t, type, sizeof type);
        json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "name", name, "kind",
                                              kind_names[t.kind], "type", type));
    }
    return list;
}

/* The dry run's limits: the relaxed policy's memory (64MB) and fuel, and
 * the command's --timeout as the deadline. */
#define DRY_RUN_MAX_PAGES 1024
#define DRY_RUN_FUEL 100000000

/* Instantiates once with no imports; fills doc["dry_run"]. */
static bool dry_run(wasm_module *m, uint64_t timeout_ms, json_t *doc)
{
    if (wasm_module_import_count(m) > 0) {
        json_object_set_new(doc, "dry_run", json_pack("{s:s, s:s}", "result", "skipped",
                                                      "reason", "the module has imports"));
        return true;
    }
    wasm_limits limits = {.max_memory_pages = DRY_RUN_MAX_PAGES};
    wasm_store *s = wasm_store_new(&limits);
    wasm_trap trap = {0};
    cx_error err;
    cx_error_clear(&err);
    if (s) {
        wasm_store_set_fuel(s, DRY_RUN_FUEL);
        wasm_store_set_deadline(s, time_monotonic_ns() + timeout_ms * 1000000u);
    }
    wasm_instance *inst = s ? wasm_instantiate(s, m, NULL, 0, &trap, &err) : NULL;
    json_t *result = inst ? json_pack("{s:s}", "result", "ok")
                          : json_pack("{s:s, s:s}", "result", "failed", "reason",
                                      trap.kind != WASM_TRAP_NONE ? trap.message : err.msg);
    json_object_set_new(doc, "dry_run", result);
    wasm_store_free(s);
    return inst != NULL;
}

static void print_list(const char *title, const json_t *list, bool imports)
{
    printf("%s (%zu):\n", title, json_array_size(list));
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        if (imports)
            printf("  %s.%s  %s %s\n", json_string_value(json_object_get(item, "module")),
                   json_string_value(json_object_get(item, "name")),
                   json_string_value(json_object_get(item, "kind")),
                   json_string_value(json_object_get(item, "type")));
        else
            printf("  %s  %s %s\n", json_string_value(json_object_get(item, "name")),
                   json_string_value(json_object_get(item, "kind")),
                   json_string_value(json_object_get(item, "type")));
    }
}

int cmd_wasm_validate(const cli_invocation *inv)
{
    const char *file = inv->args[0];
    bool comprehensive = cli_flag_set(inv, "comprehensive");
    char *bytes = NULL;
    size_t len = 0;
    cx_error err;
    if (fs_read_file(file, WASM_VALIDATE_MAX_FILE, &bytes, &len, &err) < 0) {
        fprintf(stderr, "caxton: %s\n", err.msg);
        return CLI_EXIT_PROBLEM;
    }
    wasm_features features = wasm_features_2_0();
    wasm_module *m = wasm_module_new((const uint8_t *)bytes, len, &features, &err);
    free(bytes);
    json_t *doc = json_pack("{s:s, s:b, s:I}", "file", file, "valid", m != NULL, "size",
                            (json_int_t)len);
    bool ok = m != NULL;
    if (!m) {
        json_object_set_new(doc, "error", json_string(err.msg));
        json_object_set_new(doc, "kind", json_string(err.code == CX_EPARSE ? "malformed"
                                                                           : "invalid"));
    } else {
        json_object_set_new(doc, "imports", list_imports(m));
        json_object_set_new(doc, "exports", list_exports(m));
        if (comprehensive)
            ok = dry_run(m, inv->timeout_ms, doc);
    }
    if (inv->output == CLI_OUTPUT_JSON) {
        output_json(stdout, doc);
    } else if (!m) {
        printf("%s: %s: %s\n", file, json_string_value(json_object_get(doc, "kind")), err.msg);
    } else {
        printf("%s: valid (%zu bytes, %zu imports, %zu exports)\n", file, len,
               wasm_module_import_count(m), wasm_module_export_count(m));
        if (comprehensive) {
            print_list("imports", json_object_get(doc, "imports"), true);
            print_list("exports", json_object_get(doc, "exports"), false);
            json_t *dry = json_object_get(doc, "dry_run");
            const char *reason = json_string_value(json_object_get(dry, "reason"));
            printf("instantiation dry run: %s", json_string_value(json_object_get(dry, "result")));
            printf(reason ? " (%s)\n" : "%s\n", reason ? reason : "");
        }
    }
    json_decref(doc);
    wasm_module_unref(m);
    return ok ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
}
