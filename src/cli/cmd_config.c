/* `caxton config validate FILE`, `caxton config show --effective` and
 * `caxton config audit-log`.
 *
 * validate is offline: it loads one file with config_load_file() and prints
 * every error and warning, as the server would report them at start. show
 * asks the running server for the merged configuration (so it shows what the
 * server really uses, flags and environment included); --offline computes
 * the same document here from --config, --data-dir and the environment.
 * audit-log lists the recorded changes (agents created, updated, reloaded,
 * scaled, queues drained, config reloads, tokens), newest first, within a
 * time window. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/config.h"
#include "llm/llm.h"
#include "memory/embedder.h"
#include "tools/mcp.h"

static json_t *string_array(char *const *items, size_t count)
{
    json_t *array = json_array();
    for (size_t i = 0; array && i < count; i++)
        json_array_append_new(array, json_string(items[i]));
    return array;
}

int cmd_config_validate(const cli_invocation *inv)
{
    const char *file = inv->args[0];
    cx_config *cfg = NULL;
    config_diag diag = {0};
    cx_error err;
    cx_error_clear(&err);
    bool valid = config_load_file(file, inv->envp, &cfg, &diag, &err) == 0;
    /* llm.providers and tools.mcp_servers are checked by their parts, as the
     * server does at start. */
    json_t *part_errors = NULL;
    if (valid && llm_providers_check(cfg->llm_providers, &part_errors) > 0)
        valid = false;
    json_t *mcp_errors = NULL;
    if (cfg && mcp_servers_check(cfg->tools_mcp_servers, &mcp_errors) > 0) {
        valid = false;
        if (!part_errors)
            part_errors = json_array();
        json_array_extend(part_errors, mcp_errors);
    }
    json_decref(mcp_errors);
    /* the memory's embedder names an LLM provider and a model */
    json_t *emb_errors = NULL;
    embedder_config ecfg = cfg ? embedder_config_of(cfg) : (embedder_config){0};
    if (cfg && embedder_config_check(&ecfg, cfg->llm_providers, &emb_errors) > 0) {
        valid = false;
        if (!part_errors)
            part_errors = json_array();
        json_array_extend(part_errors, emb_errors);
    }
    json_decref(emb_errors);
    config_free(cfg);

    /* A failure with no diagnostics (e.g. out of memory) still has its message. */
    char *fallback[1] = {err.msg};
    char **errors = diag.errors;
    size_t error_count = diag.error_count;
    char **all = NULL;
    if (json_array_size(part_errors) > 0) {
        all = calloc(error_count + json_array_size(part_errors), sizeof *all);
        if (all) {
            if (error_count)
                memcpy(all, diag.errors, error_count * sizeof *all);
            size_t i;
            json_t *e;
            json_array_foreach(part_errors, i, e) {
                all[error_count++] = (char *)json_string_value(e);
            }
            errors = all;
        }
    } else if (!valid && error_count == 0) {
        errors = fallback;
        error_count = 1;
    }

    if (inv->output == CLI_OUTPUT_JSON) {
        json_t *doc = json_pack("{s:s, s:b, s:o, s:o}", "file", file, "valid", valid, "errors",
                                string_array(errors, error_count), "warnings",
                                string_array(diag.warnings, diag.warning_count));
        if (doc)
            output_json(stdout, doc);
        json_decref(doc);
    } else {
        for (size_t i = 0; i < error_count; i++)
            printf("error: %s\n", errors[i]);
        for (size_t i = 0; i < diag.warning_count; i++)
            printf("warning: %s\n", diag.warnings[i]);
        if (valid)
            printf("%s: valid\n", file);
        else
            printf("%s: invalid (%zu error%s)\n", file, error_count, error_count == 1 ? "" : "s");
    }
    free(all);
    json_decref(part_errors);
    config_diag_free(&diag);
    return valid ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
}

/* "flag: --listen", "file: caxton.yaml:12:3", "env: CAXTON_API_LISTEN", "default". */
static void source_text(const json_t *entry, char *buf, size_t size)
{
    const char *source = output_string(entry, "source", "?");
    const char *where = output_string(entry, "where", NULL);
    if (!where || strcmp(source, "default") == 0 || strcmp(where, source) == 0)
        snprintf(buf, size, "%s", source);
    else
        snprintf(buf, size, "%s: %s", source, where);
}

static void print_effective(const json_t *doc)
{
    const char *file = output_string(doc, "file", NULL);
    char line[1200];
    snprintf(line, sizeof line, "config file: %s", file ? file : "none (built-in defaults)");
    output_sanitize(line);
    printf("%s\n\n", line);
    output_table *t = output_table_new(3, (const char *[]){"key", "value", "source"});
    if (!t)
        return;
    const char *key;
    const json_t *entry;
    json_object_foreach((json_t *)json_object_get(doc, "values"), key, entry) {
        char *value = output_value_text(json_object_get(entry, "value"));
        char source[400];
        source_text(entry, source, sizeof source);
        output_table_row(t, key, value, source);
        free(value);
    }
    output_table_print(t, stdout);
    output_table_free(t);
}

static int show_offline(const cli_invocation *inv)
{
    config_flags flags = {.config_path = inv->config_path, .data_dir = inv->data_dir};
    cx_config *cfg = NULL;
    config_diag diag = {0};
    cx_error err;
    cx_error_clear(&err);
    if (config_load(&flags, inv->envp, &cfg, &diag, &err) != 0) {
        cli_print_config_errors(&diag, &err);
        config_diag_free(&diag);
        return CLI_EXIT_USAGE;
    }
    config_diag_free(&diag);
    json_t *values = config_effective_json(cfg, true);
    json_t *doc =
        values ? json_pack("{s:s?, s:o}", "file", cfg->file_path, "values", values) : NULL;
    config_free(cfg);
    if (!doc) {
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    cli_emit(inv, doc, print_effective);
    return CLI_EXIT_OK;
}

int cmd_config_show(const cli_invocation *inv)
{
    if (cli_flag_set(inv, "offline"))
        return show_offline(inv);
    client c;
    int rc = cli_connect(inv, &c);
    if (rc != 0)
        return rc;
    client_response resp;
    rc = cli_call(&c, "GET", "/api/v1/config/effective", NULL, &resp);
    if (rc == CLI_EXIT_UNREACHABLE)
        fprintf(stderr, "caxton: to compute it without a server: caxton config show --effective "
                        "--offline\n");
    if (rc == 0) {
        if (inv->output == CLI_OUTPUT_JSON)
            output_json(stdout, resp.json);
        else
            print_effective(resp.json);
        client_response_free(&resp);
    }
    client_close(&c);
    return rc;
}

/* ---- audit-log ------------------------------------------------------------------------------ */

#define AUDIT_DEFAULT_LIMIT 200
#define AUDIT_MAX_LIMIT 10000

static void print_audit(const json_t *items, bool more, uint64_t limit)
{
    output_table *t = output_table_new(5, (const char *[]){"at", "actor", "action", "target",
                                                           "details"});
    size_t i;
    const json_t *entry;
    json_array_foreach(items, i, entry) {
        const json_t *details = json_object_get(entry, "details");
        char *text = details && !json_is_null(details) ? output_value_text(details) : NULL;
        if (t)
            output_table_row(t, output_string(entry, "at", "?"),
                             output_string(entry, "actor", "-"),
                             output_string(entry, "action", "?"),
                             output_string(entry, "target", "-"), text);
        free(text);
    }
    if (t && output_table_rows(t) == 0)
        printf("no configuration changes recorded in that window\n");
    else if (t)
        output_table_print(t, stdout);
    output_table_free(t);
    if (more)
        printf("(the newest %llu are shown; raise --limit for more)\n",
               (unsigned long long)limit);
}

int cmd_config_audit_log(const cli_invocation *inv)
{
    uint64_t limit;
    int rc = cli_flag_count(inv, "limit", AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT, &limit);
    if (rc != 0)
        return rc;
    strbuf path, window;
    strbuf_init(&path);
    strbuf_init(&window);
    if (strbuf_appends(&path, "/api/v1/config/audit-log") != 0 ||
        cli_window_query(&inv->window, &window) != 0 ||
        (window.len && strbuf_appendf(&path, "?%s", window.data) != 0)) {
        strbuf_free(&path);
        strbuf_free(&window);
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    strbuf_free(&window);
    client c;
    json_t *items = NULL;
    bool more = false;
    rc = cli_connect(inv, &c);
    if (rc == 0) {
        rc = cli_fetch_list(&c, path.data, (size_t)limit, &items, &more);
        client_close(&c);
    }
    strbuf_free(&path);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        json_t *doc = json_pack("{s:O, s:b}", "items", items, "more", more);
        if (doc)
            output_json(stdout, doc);
        json_decref(doc);
    } else {
        print_audit(items, more, limit);
    }
    json_decref(items);
    return CLI_EXIT_OK;
}
