/* `caxton agents validate FILE...` and `caxton agents validate-all`: agent
 * definitions checked offline, as the server checks them when it loads them.
 *
 * Both read the configuration the way client commands do (cli_config_load)
 * for what definitions refer to: the provider names under llm.providers and
 * the agents dir (where `module` paths are resolved; modules are validated
 * with the WebAssembly engine). Files are read through agentdir_read and
 * parsed by agentdef_parse, and validate-all adds the checks across files
 * (agentdir_validate), so a verdict here is the server's verdict. Tools are
 * not known offline: unknown MCP tools are warnings, not errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agentdef.h"
#include "agents/agentdir.h"
#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/units.h"
#include "core/util.h"
#include "wasm/wasm.h"

#define MODULE_MAX_FILE (256u * 1024 * 1024) /* as `caxton wasm validate` */
#define LABEL "  %-14s %s"

/* The configuration and the validation context made from it. */
typedef struct validate_setup {
    cx_config *cfg;
    const char **providers;
    agentdef_context ctx;
} validate_setup;

static int check_module(const char *path, char *msg, size_t msg_size, void *arg)
{
    (void)arg;
    char *bytes = NULL;
    size_t len = 0;
    cx_error err;
    int rc = fs_read_file(path, MODULE_MAX_FILE, &bytes, &len, &err);
    if (rc == 0) {
        wasm_features features = wasm_features_2_0();
        rc = wasm_module_validate((const uint8_t *)bytes, len, &features, &err);
    }
    if (rc != 0)
        snprintf(msg, msg_size, "%s", err.msg);
    free(bytes);
    return rc;
}

static void setup_free(validate_setup *s)
{
    free(s->providers);
    config_free(s->cfg);
    memset(s, 0, sizeof *s);
}

/* Loads the configuration; prints its errors and returns an exit code. */
static int setup_load(const cli_invocation *inv, validate_setup *s)
{
    memset(s, 0, sizeof *s);
    config_flags flags = {0};
    config_diag diag = {0};
    cx_error err;
    cx_error_clear(&err);
    if (cli_config_load(inv, &flags, &s->cfg, &diag, &err) != 0) {
        cli_print_config_errors(&diag, &err);
        config_diag_free(&diag);
        return CLI_EXIT_USAGE;
    }
    config_diag_free(&diag);
    size_t count = json_object_size(s->cfg->llm_providers);
    if (count > 0 && !(s->providers = calloc(count, sizeof *s->providers))) {
        setup_free(s);
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    size_t i = 0;
    const char *key;
    json_t *value;
    json_object_foreach(s->cfg->llm_providers, key, value)
        s->providers[i++] = key;
    s->ctx.providers = s->providers;
    s->ctx.provider_count = count;
    s->ctx.agents_dir = s->cfg->agents_dir;
    s->ctx.check_module = check_module;
    return CLI_EXIT_OK;
}

/* ---- Printing ------------------------------------------------------------------------------- */

static void join_list(char *const *items, size_t count, strbuf *out)
{
    for (size_t i = 0; i < count; i++)
        strbuf_appendf(out, "%s%s", i ? ", " : "", items[i]);
    if (count == 0)
        strbuf_appends(out, "-");
}

static void print_list(const char *label, char *const *items, size_t count)
{
    strbuf sb;
    strbuf_init(&sb);
    join_list(items, count, &sb);
    output_line(stdout, LABEL, label, sb.failed ? "?" : sb.data);
    strbuf_free(&sb);
}

static void budget_text(const agent_budget *b, char *buf, size_t size)
{
    static const struct {
        uint64_t ms;
        const char *name;
    } periods[] = {{UINT64_C(3600000), "hour"},
                   {UINT64_C(86400000), "day"},
                   {UINT64_C(604800000), "week"},
                   {UINT64_C(2592000000), "month"}};
    if (b->tokens == 0) {
        snprintf(buf, size, "none");
        return;
    }
    for (size_t i = 0; i < sizeof periods / sizeof periods[0]; i++)
        if (periods[i].ms == b->period_ms) {
            snprintf(buf, size, "%llu/%s", (unsigned long long)b->tokens, periods[i].name);
            return;
        }
    char period[32];
    units_format_duration(b->period_ms, period, sizeof period);
    snprintf(buf, size, "%llu per %s", (unsigned long long)b->tokens, period);
}

static const char *scope_name(agent_memory_scope scope)
{
    switch (scope) {
    case AGENT_MEMORY_AGENT: return "agent";
    case AGENT_MEMORY_GLOBAL: return "global";
    case AGENT_MEMORY_WORKSPACE:
    default: return "workspace";
    }
}

static void print_llm(const agent_def *def)
{
    char tokens[32] = "provider default";
    if (def->llm_max_tokens > 0)
        snprintf(tokens, sizeof tokens, "%lld", (long long)def->llm_max_tokens);
    output_line(stdout, "  %-14s provider %s, model %s, temperature %g, max_tokens %s", "llm:",
                def->llm_provider ? def->llm_provider : "(the server's only one)",
                def->llm_model ? def->llm_model : "(provider default)", def->llm_temperature,
                tokens);
}

static void print_wasm(const agent_def *def)
{
    char memory[32] = "default", fuel[32] = "default", timeout[32] = "default";
    if (def->wasm_memory_bytes)
        units_format_size(def->wasm_memory_bytes, memory, sizeof memory);
    if (def->wasm_fuel)
        snprintf(fuel, sizeof fuel, "%llu", (unsigned long long)def->wasm_fuel);
    if (def->wasm_timeout_ms)
        units_format_duration(def->wasm_timeout_ms, timeout, sizeof timeout);
    output_line(stdout, "  %-14s %s (policy %s; memory %s, fuel %s, timeout %s)", "module:",
                def->module ? def->module : "?", def->policy ? def->policy : "server default",
                memory, fuel, timeout);
}

static void print_definition(const agent_def *def)
{
    char a[32], b[32], c[48];
    output_line(stdout, LABEL, "name:", def->name);
    output_line(stdout, LABEL, "version:", def->version);
    if (def->description && def->description[0])
        output_line(stdout, LABEL, "description:", def->description);
    output_line(stdout, LABEL, "runtime:", def->runtime == AGENT_RUNTIME_WASM ? "wasm" : "llm");
    print_list("capabilities:", def->capabilities, def->capability_count);
    print_list("requires:", def->requires, def->require_count);
    print_list("tools:", def->tools, def->tool_count);
    if (def->runtime == AGENT_RUNTIME_WASM)
        print_wasm(def);
    else
        print_llm(def);
    units_format_duration(def->limits_max_execution_time_ms, a, sizeof a);
    budget_text(&def->limits_token_budget, c, sizeof c);
    output_line(stdout, "  %-14s max_execution_time %s, max_tool_calls %lld, token_budget %s",
                "limits:", a, (long long)def->limits_max_tool_calls, c);
    if (def->memory_enabled) {
        if (def->memory_retention_ms)
            units_format_duration(def->memory_retention_ms, b, sizeof b);
        else
            snprintf(b, sizeof b, "forever");
        output_line(stdout, "  %-14s on, scope %s, workspace %s, max_entries %lld, retention %s",
                    "memory:", scope_name(def->memory_scope),
                    def->memory_workspace ? def->memory_workspace : "default",
                    (long long)def->memory_max_entries, b);
    } else {
        output_line(stdout, LABEL, "memory:", "off");
    }
    units_format_duration(def->conversation_timeout_ms, a, sizeof a);
    output_line(stdout, "  %-14s max_turns %lld, context_window %lld tokens, timeout %s",
                "conversation:", (long long)def->conversation_max_turns,
                (long long)def->conversation_context_window, a);
    output_line(stdout, "  %-14s %lld", "instances:", (long long)def->instances);
    if (json_object_size(def->parameters) > 0) {
        char *params = json_dumps(def->parameters, JSON_COMPACT | JSON_SORT_KEYS);
        output_line(stdout, LABEL, "parameters:", params ? params : "?");
        free(params);
    }
}

/* Diagnostics, the verdict line and, with detailed, the definition. */
static void print_result(const char *file, const agentdef_diags *diags, const agent_def *def,
                         bool detailed)
{
    if (diags->count > 0) {
        char *text = NULL;
        if (agentdef_diags_format(diags, file, &text) == 0 && text)
            output_text(stdout, text, "");
        else
            printf("(out of memory while formatting the problems)\n");
        free(text);
    }
    if (diags->errors == 0 && diags->warnings == 0)
        output_line(stdout, "%s: valid", file);
    else if (diags->errors == 0)
        output_line(stdout, "%s: valid (%zu warning%s)", file, diags->warnings,
                    diags->warnings == 1 ? "" : "s");
    else
        output_line(stdout, "%s: %zu error%s, %zu warning%s", file, diags->errors,
                    diags->errors == 1 ? "" : "s", diags->warnings,
                    diags->warnings == 1 ? "" : "s");
    if (detailed && def && diags->errors == 0)
        print_definition(def);
}

/* The suggested file, and the problems it still has. */
static void print_fix(const char *file, const char *fixed, size_t errors, size_t remaining,
                      const agentdef_context *ctx)
{
    if (fixed) {
        printf("--- suggested file ---\n");
        output_text(stdout, fixed, "");
        printf("--- end of suggested file ---\n");
        if (remaining > 0) {
            agentdef_diags diags = {0};
            agentdef_free(agentdef_parse(file, fixed, strlen(fixed), ctx, &diags));
            char *text = NULL;
            output_line(stdout, "the suggested file fixes the mechanical problems; %zu error%s "
                        "still need%s a manual fix:", remaining, remaining == 1 ? "" : "s",
                        remaining == 1 ? "s" : "");
            if (agentdef_diags_format(&diags, file, &text) == 0 && text)
                output_text(stdout, text, "");
            free(text);
            agentdef_diags_free(&diags);
        }
        output_line(stdout, "save it as %s and run 'caxton agents validate %s' again", file,
                    file);
    } else if (errors > 0) {
        output_line(stdout, "%s: no mechanical fix applies; the errors above need a manual fix",
                    file);
    }
}

/* {"file","valid","errors","warnings","diagnostics","definition"?,"suggested_fix"?,
 * "suggested_fix_remaining_errors"?}; NULL when
 * out of memory. */
static json_t *result_json(const char *file, const agentdef_diags *diags, const agent_def *def,
                           bool detailed, const char *fixed, size_t remaining)
{
    json_t *doc = json_pack("{s:s, s:b, s:I, s:I, s:o}", "file", file, "valid",
                            diags->errors == 0, "errors", (json_int_t)diags->errors, "warnings",
                            (json_int_t)diags->warnings, "diagnostics",
                            agentdef_diags_json(diags));
    if (doc && detailed && def && diags->errors == 0 &&
        json_object_set_new(doc, "definition", agentdef_to_json(def)) != 0) {
        json_decref(doc);
        return NULL;
    }
    if (doc && fixed &&
        (json_object_set_new(doc, "suggested_fix", json_string(fixed)) != 0 ||
         json_object_set_new(doc, "suggested_fix_remaining_errors",
                             json_integer((json_int_t)remaining)) != 0)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static int emit_files(json_t *doc)
{
    if (!doc) {
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    output_json(stdout, doc);
    json_decref(doc);
    return CLI_EXIT_OK;
}

/* ---- validate FILE... ----------------------------------------------------------------------- */

/* Checks one file; appends its JSON to files (when not NULL) or prints it.
 * Returns whether it has errors, or -1 when out of memory. */
static int validate_one(const cli_invocation *inv, const validate_setup *s, const char *file,
                        json_t *files)
{
    bool detailed = cli_flag_set(inv, "detailed");
    bool want_fix = cli_flag_set(inv, "fix-suggestions");
    agentdef_diags diags = {0};
    char *text = NULL, *fixed = NULL;
    size_t len = 0, remaining = 0;
    agent_def *def = NULL;
    if (agentdir_read(file, &text, &len, &diags) == 0)
        def = agentdef_parse(file, text, len, &s->ctx, &diags);
    if (want_fix && text && diags.errors + diags.warnings > 0) {
        fixed = agentdef_fix_suggestions(file, text, len, &s->ctx, &remaining);
        if (fixed && strcmp(fixed, text) == 0) {
            free(fixed);
            fixed = NULL;
        }
    }
    int rc = diags.errors > 0;
    if (files) {
        json_t *doc = result_json(file, &diags, def, detailed, fixed, remaining);
        if (!doc || json_array_append_new(files, doc) != 0)
            rc = -1;
    } else {
        print_result(file, &diags, def, detailed);
        if (want_fix && text)
            print_fix(file, fixed, diags.errors, remaining, &s->ctx);
    }
    free(fixed);
    free(text);
    agentdef_free(def);
    agentdef_diags_free(&diags);
    return rc;
}

int cmd_agents_validate(const cli_invocation *inv)
{
    validate_setup s;
    int rc = setup_load(inv, &s);
    if (rc != 0)
        return rc;
    json_t *files = inv->output == CLI_OUTPUT_JSON ? json_array() : NULL;
    size_t failed = 0;
    bool oom = inv->output == CLI_OUTPUT_JSON && !files;
    for (size_t i = 0; i < inv->arg_count && !oom; i++) {
        if (i > 0 && !files)
            printf("\n");
        int result = validate_one(inv, &s, inv->args[i], files);
        oom = result < 0;
        failed += result > 0;
    }
    setup_free(&s);
    if (files) {
        rc = emit_files(oom ? NULL : json_pack("{s:O}", "files", files));
        json_decref(files);
        if (rc != 0)
            return rc;
    } else if (oom) {
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    return failed ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
}

/* ---- validate-all --------------------------------------------------------------------------- */

static json_t *report_json(const agentdir_report *report, const char *dir, bool failed_only)
{
    json_t *files = json_array();
    for (size_t i = 0; files && i < report->count; i++) {
        const agentdir_file *f = &report->files[i];
        if (failed_only && f->diags.errors == 0)
            continue;
        json_t *doc = result_json(f->path, &f->diags, f->def, false, NULL, 0);
        if (!doc || json_array_append_new(files, doc) != 0) {
            json_decref(files);
            return NULL;
        }
    }
    return files ? json_pack("{s:s, s:o, s:I}", "dir", dir, "files", files, "not_checked",
                             (json_int_t)report->not_checked)
                 : NULL;
}

static void print_report(const agentdir_report *report, const char *dir, bool failed_only)
{
    bool first = true;
    for (size_t i = 0; i < report->count; i++) {
        const agentdir_file *f = &report->files[i];
        if (failed_only && f->diags.errors == 0)
            continue;
        if (!first)
            printf("\n");
        first = false;
        print_result(f->path, &f->diags, f->def, false);
    }
    if (!first)
        printf("\n");
    if (report->count == 0)
        output_line(stdout, "no agent definitions (*.md) in %s", dir);
    else
        output_line(stdout, "%zu file%s in %s: %zu valid, %zu with errors", report->count,
                    report->count == 1 ? "" : "s", dir,
                    report->count - report->files_with_errors, report->files_with_errors);
    if (report->not_checked)
        output_line(stdout, "%zu more files were not checked (at most %d at a time)",
                    report->not_checked, AGENTDIR_MAX_FILES);
}

int cmd_agents_validate_all(const cli_invocation *inv)
{
    validate_setup s;
    int rc = setup_load(inv, &s);
    if (rc != 0)
        return rc;
    const char *dir = s.cfg->agents_dir;
    bool failed_only = cli_flag_set(inv, "failed-only");
    agentdir_report report;
    cx_error err;
    if (agentdir_validate(dir, &s.ctx, &report, &err) != 0) {
        output_line(stderr, "caxton: %s", err.msg);
        if (err.code == CX_ENOTFOUND)
            fprintf(stderr, "caxton: the agents dir is agents.dir in the config (default "
                            "<data_dir>/agents); pass --config or --data-dir to check another\n");
        setup_free(&s);
        return CLI_EXIT_PROBLEM;
    }
    if (inv->output == CLI_OUTPUT_JSON)
        rc = emit_files(report_json(&report, dir, failed_only));
    else
        print_report(&report, dir, failed_only);
    if (rc == 0 && report.files_with_errors > 0)
        rc = CLI_EXIT_PROBLEM;
    agentdir_report_free(&report);
    setup_free(&s);
    return rc;
}
