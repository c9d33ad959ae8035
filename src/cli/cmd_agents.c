/* `caxton agents ...` against the running server: list, status,
 * health-summary, suspend, resume, logs, scale, reload, reload-status,
 * deploy, update and remove (routes under /api/v1/agents).
 *
 * Commands that check something exit 1 when they find a problem: status when
 * an agent it shows is in an error state (cli_agent_error_state),
 * health-summary when the summary is not ok, reload and reload-status when
 * the (last) reload failed. Definition diagnostics from the server are
 * printed exactly as `caxton agents validate` prints its own (file:line:col:
 * severity: field: message, then a hint line), so an operator reads one
 * format whether the file was checked offline or by the server. The offline
 * validate commands live in cmd_agents_validate.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agents/agentdef.h"
#include "agents/agentdir.h"
#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/units.h"
#include "core/util.h"

#define AGENTS_PATH "/api/v1/agents"
#define AGENTS_PREFIX "/api/v1/agents/"
#define LOGS_DEFAULT_LIMIT 100
#define LOGS_MAX_LIMIT 10000
#define WHY_MAX 256

/* ---- Small readers -------------------------------------------------------------------------- */

static bool is_state(const json_t *agent, const char *state)
{
    return strcmp(output_string(agent, "state", ""), state) == 0;
}

static void format_ms(json_int_t ms, char *buf, size_t size)
{
    if (ms < 1000)
        snprintf(buf, size, "%lldms", (long long)(ms < 0 ? 0 : ms));
    else if (ms < 60000)
        snprintf(buf, size, "%.1fs", (double)ms / 1000.0);
    else
        output_format_uptime((double)ms / 1000.0, buf, size);
}

static void queue_text(const json_t *agent, char *buf, size_t size)
{
    const json_t *queue = json_object_get(agent, "queue");
    if (!json_is_object(queue))
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%lld/%lld", (long long)output_int(queue, "depth"),
                 (long long)output_int(queue, "capacity"));
}

bool cli_agent_error_state(const json_t *agent, char *why, size_t size)
{
    const char *reason = output_string(agent, "state_reason", NULL);
    json_int_t depth = output_int(json_object_get(agent, "queue"), "depth");
    bool reload_failed = strcmp(output_string(agent, "reload_status", ""), "failed") == 0;
    const char *also = reload_failed ? "; its last reload failed" : "";
    why[0] = '\0';
    if (is_state(agent, "failed"))
        snprintf(why, size, "failed%s%s%s", reason ? ": " : "", reason ? reason : "", also);
    else if (is_state(agent, "reloading"))
        snprintf(why, size, "reloading%s%s%s", reason ? ": " : "", reason ? reason : "", also);
    else if (is_state(agent, "draining"))
        snprintf(why, size, "draining, %lld queued%s", (long long)depth, also);
    else if (is_state(agent, "suspended") && depth > 0)
        snprintf(why, size, "suspended with %lld message%s queued%s", (long long)depth,
                 depth == 1 ? "" : "s", also);
    else if (reload_failed)
        snprintf(why, size, "last reload failed, running version %s",
                 output_string(agent, "version", "?"));
    return why[0] != '\0';
}

void cli_print_diagnostics(FILE *out, const char *file, const json_t *diagnostics)
{
    size_t i;
    const json_t *d;
    json_array_foreach(diagnostics, i, d) {
        char where[64] = "";
        json_int_t line = output_int(d, "line"), column = output_int(d, "column");
        if (line > 0)
            snprintf(where, sizeof where, ":%lld:%lld", (long long)line, (long long)column);
        const char *field = output_string(d, "field", "");
        output_line(out, "%s%s: %s: %s%s%s", file, where, output_string(d, "severity", "error"),
                    field, field[0] ? ": " : "", output_string(d, "message", "?"));
        const char *hint = output_string(d, "hint", NULL);
        if (hint && hint[0])
            output_line(out, "  hint: %s", hint);
    }
}

/* "2 errors, 1 warning" for a diagnostics list; "-" when empty. */
static void diagnostics_count(const json_t *diagnostics, char *buf, size_t size)
{
    size_t errors = 0, warnings = 0, i;
    const json_t *d;
    json_array_foreach(diagnostics, i, d) {
        if (strcmp(output_string(d, "severity", "error"), "warning") == 0)
            warnings++;
        else
            errors++;
    }
    if (errors + warnings == 0)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%zu error%s, %zu warning%s", errors, errors == 1 ? "" : "s",
                 warnings, warnings == 1 ? "" : "s");
}

/* Adds "error_state": reason or null to an agent object (for --output json);
 * returns whether the agent is in an error state. */
static bool mark_error_state(json_t *agent)
{
    char why[WHY_MAX];
    bool bad = cli_agent_error_state(agent, why, sizeof why);
    text_make_utf8(why); /* a long reason may have been cut inside a character */
    json_object_set_new(agent, "error_state", bad ? json_string(why) : json_null());
    return bad;
}

/* ---- list ----------------------------------------------------------------------------------- */

static int fetch_agents(const cli_invocation *inv, const char *state, json_t **items)
{
    strbuf path;
    strbuf_init(&path);
    if (strbuf_appends(&path, AGENTS_PATH) != 0 || cli_query_add(&path, "state", state) != 0) {
        strbuf_free(&path);
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    client c;
    int rc = cli_connect(inv, &c);
    if (rc == 0) {
        rc = cli_fetch_list(&c, path.data, 0, items, NULL);
        client_close(&c);
    }
    strbuf_free(&path);
    return rc;
}

static void emit_items(json_t *items)
{
    json_t *doc = json_pack("{s:O, s:n}", "items", items, "next_cursor");
    if (doc)
        output_json(stdout, doc);
    json_decref(doc);
}

int cmd_agents_list(const cli_invocation *inv)
{
    const char *state = cli_flag_value(inv, "state");
    json_t *items;
    int rc = fetch_agents(inv, state, &items);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        emit_items(items);
        json_decref(items);
        return CLI_EXIT_OK;
    }
    output_table *t = output_table_new(8, (const char *[]){"name", "version", "runtime", "state",
                                                           "instances", "queue", "reload",
                                                           "capabilities"});
    size_t i;
    const json_t *a;
    json_array_foreach(items, i, a) {
        char instances[24], queue[48];
        snprintf(instances, sizeof instances, "%lld", (long long)output_int(a, "instances"));
        queue_text(a, queue, sizeof queue);
        char *caps = output_join(json_object_get(a, "capabilities"));
        if (t)
            output_table_row(t, output_string(a, "name", "?"), output_string(a, "version", "-"),
                             output_string(a, "runtime", "-"), output_string(a, "state", "?"),
                             instances, queue, output_string(a, "reload_status", "-"), caps);
        free(caps);
    }
    if (t && output_table_rows(t) == 0 && state)
        output_line(stdout, "no agents in state %s", state);
    else if (t && output_table_rows(t) == 0)
        printf("no agents\n");
    else if (t)
        output_table_print(t, stdout);
    output_table_free(t);
    json_decref(items);
    return CLI_EXIT_OK;
}

/* ---- status --------------------------------------------------------------------------------- */

static int status_all(const cli_invocation *inv)
{
    bool only_errors = cli_flag_set(inv, "error-states-only");
    json_t *items;
    int rc = fetch_agents(inv, NULL, &items);
    if (rc != 0)
        return rc;
    json_t *shown = json_array();
    size_t total = json_array_size(items), bad = 0, i;
    json_t *a;
    json_array_foreach(items, i, a) {
        bool is_bad = mark_error_state(a);
        bad += is_bad;
        if (shown && (is_bad || !only_errors))
            json_array_append(shown, a);
    }
    json_decref(items);
    if (!shown) {
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    if (inv->output == CLI_OUTPUT_JSON) {
        emit_items(shown);
    } else {
        output_table *t = output_table_new(7, (const char *[]){"name", "version", "state", "queue",
                                                               "reload", "last message",
                                                               "problem"});
        json_array_foreach(shown, i, a) {
            char queue[48];
            queue_text(a, queue, sizeof queue);
            const json_t *stats = json_object_get(a, "stats");
            if (t)
                output_table_row(t, output_string(a, "name", "?"),
                                 output_string(a, "version", "-"), output_string(a, "state", "?"),
                                 queue, output_string(a, "reload_status", "-"),
                                 output_string(stats, "last_message_at", "never"),
                                 output_string(a, "error_state", "-"));
        }
        if (t && output_table_rows(t) > 0)
            output_table_print(t, stdout);
        output_table_free(t);
        if (total == 0)
            printf("no agents are loaded\n");
        else if (bad == 0)
            printf("%s%zu agent%s, none in an error state\n", only_errors ? "" : "\n", total,
                   total == 1 ? "" : "s");
        else
            printf("\n%zu of %zu agent%s in an error state ('caxton agents status NAME "
                   "--detailed' for one)\n",
                   bad, total, total == 1 ? "" : "s");
    }
    json_decref(shown);
    return bad ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
}

/* Rows "key  value" for every leaf of the definition (nested keys dotted);
 * the prompt is summarized, not printed. */
static void definition_rows(output_table *t, const char *prefix, const json_t *value)
{
    if (json_is_object(value) && json_object_size(value) > 0) {
        const char *key;
        const json_t *child;
        json_object_foreach((json_t *)value, key, child) {
            char path[160];
            snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", key);
            if (!prefix[0] && strcmp(key, "prompt") == 0 && json_is_string(child)) {
                const char *text = json_string_value(child);
                size_t lines = text[0] ? 1 : 0;
                for (const char *p = text; *p; p++)
                    lines += *p == '\n' && p[1] != '\0';
                char summary[64];
                snprintf(summary, sizeof summary, "%zu line%s, %zu bytes", lines,
                         lines == 1 ? "" : "s", strlen(text));
                output_table_row(t, path, summary);
            } else {
                definition_rows(t, path, child);
            }
        }
        return;
    }
    bool strings = json_is_array(value) && json_array_size(value) > 0;
    for (size_t i = 0; strings && i < json_array_size(value); i++)
        strings = json_is_string(json_array_get(value, i));
    char *text = strings ? output_join(value) : output_value_text(value);
    output_table_row(t, prefix, text);
    free(text);
}

static void print_instances(const json_t *instances)
{
    output_table *t = output_table_new(5, (const char *[]){"instance", "state", "message", "busy",
                                                           "processed"});
    size_t i;
    const json_t *inst;
    json_array_foreach(instances, i, inst) {
        char id[24], busy[32], processed[24];
        snprintf(id, sizeof id, "%lld", (long long)output_int(inst, "id"));
        format_ms(output_int(inst, "busy_ms"), busy, sizeof busy);
        snprintf(processed, sizeof processed, "%lld", (long long)output_int(inst, "processed"));
        if (t)
            output_table_row(t, id, output_string(inst, "state", "?"),
                             output_string(inst, "message_id", "-"),
                             is_state(inst, "busy") ? busy : "-", processed);
    }
    if (t && output_table_rows(t) > 0) {
        printf("\ninstances:\n");
        output_table_print(t, stdout);
    }
    output_table_free(t);
}

static void print_versions(const json_t *versions)
{
    output_table *t = output_table_new(3, (const char *[]){"version", "loaded", "sha256"});
    size_t i;
    const json_t *v;
    json_array_foreach(versions, i, v) {
        char sha[16];
        snprintf(sha, sizeof sha, "%.12s", output_string(v, "sha256", "-"));
        if (t)
            output_table_row(t, output_string(v, "version", "?"),
                             output_string(v, "loaded_at", "-"), sha);
    }
    if (t && output_table_rows(t) > 0) {
        printf("\nversions (newest first):\n");
        output_table_print(t, stdout);
    }
    output_table_free(t);
}

static void print_stats(const json_t *stats)
{
    char avg[32], p99[32];
    format_ms(output_int(stats, "avg_latency_ms"), avg, sizeof avg);
    format_ms(output_int(stats, "p99_latency_ms"), p99, sizeof p99);
    output_line(stdout, "%-14s %lld received, %lld answered, %lld failed; last %s", "messages:",
                (long long)output_int(stats, "received"), (long long)output_int(stats, "answered"),
                (long long)output_int(stats, "failed"),
                output_string(stats, "last_message_at", "never"));
    output_line(stdout, "%-14s avg %s, p99 %s", "latency:", avg, p99);
    json_int_t errors = output_int(stats, "llm_errors");
    output_line(stdout, "%-14s %lld calls, %lld error%s, %lld prompt + %lld completion tokens",
                "llm:", (long long)output_int(stats, "llm_calls"), (long long)errors,
                errors == 1 ? "" : "s", (long long)output_int(stats, "prompt_tokens"),
                (long long)output_int(stats, "completion_tokens"));
}

static void print_agent(const json_t *a, const json_t *reload, bool detailed)
{
    const char *name = output_string(a, "name", "?");
    const char *reason = output_string(a, "state_reason", NULL);
    char queue[48], why[WHY_MAX];
    queue_text(a, queue, sizeof queue);
    output_line(stdout, "%-14s %s %s (%s)", "agent:", name, output_string(a, "version", "?"),
                output_string(a, "runtime", "?"));
    output_line(stdout, "%-14s %s%s%s", "state:", output_string(a, "state", "?"),
                reason ? ": " : "", reason ? reason : "");
    output_line(stdout, "%-14s %s", "file:", output_string(a, "file", "-"));
    output_line(stdout, "%-14s %s", "loaded:", output_string(a, "loaded_at", "-"));
    char *caps = output_join(json_object_get(a, "capabilities"));
    output_line(stdout, "%-14s %s", "capabilities:", caps ? caps : "?");
    free(caps);
    output_line(stdout, "%-14s %lld", "instances:", (long long)output_int(a, "instances"));
    output_line(stdout, "%-14s %s queued, %lld in flight", "queue:", queue,
                (long long)output_int(json_object_get(a, "queue"), "in_flight"));
    print_stats(json_object_get(a, "stats"));
    output_line(stdout, "%-14s %s", "reload:", output_string(a, "reload_status", "-"));
    const json_t *last = json_object_get(a, "last_error");
    if (json_is_object(last))
        output_line(stdout, "%-14s %s %s", "last error:", output_string(last, "at", "?"),
                    output_string(last, "message", "?"));
    else
        output_line(stdout, "%-14s none", "last error:");
    if (cli_agent_error_state(a, why, sizeof why))
        output_line(stdout, "%-14s %s", "problem:", why);
    if (!detailed)
        return;
    const json_t *def = json_object_get(a, "definition");
    if (json_is_object(def)) {
        output_table *t = output_table_new(2, (const char *[]){"field", "value"});
        if (t) {
            definition_rows(t, "", def);
            printf("\ndefinition:\n");
            output_table_print(t, stdout);
        }
        output_table_free(t);
    }
    print_instances(json_object_get(a, "instance_states"));
    print_versions(json_object_get(a, "versions"));
    const json_t *attempt = json_array_get(json_object_get(reload, "attempts"), 0);
    const json_t *diags = json_object_get(attempt, "diagnostics");
    if (json_array_size(diags) > 0) {
        printf("\n");
        output_line(stdout, "last reload (%s, %s):", output_string(attempt, "at", "?"),
                    output_string(attempt, "result", "?"));
        cli_print_diagnostics(stdout, output_string(a, "file", name), diags);
    }
}

static int status_one(const cli_invocation *inv, const char *name)
{
    bool detailed = cli_flag_set(inv, "detailed");
    char *path = cli_api_path(AGENTS_PREFIX, name, NULL);
    char *reload_path = cli_api_path(AGENTS_PREFIX, name, "/reload-status");
    if (!path || !reload_path) {
        free(path);
        free(reload_path);
        return CLI_EXIT_PROBLEM;
    }
    client c;
    client_response resp = {0}, reload = {0};
    int rc = cli_connect(inv, &c);
    if (rc == 0) {
        rc = cli_call(&c, "GET", path, NULL, &resp);
        if (rc == 0 && detailed &&
            strcmp(output_string(resp.json, "reload_status", ""), "failed") == 0 &&
            cli_call(&c, "GET", reload_path, NULL, &reload) != 0)
            memset(&reload, 0, sizeof reload); /* the summary says it failed; details are extra */
        client_close(&c);
    }
    free(path);
    free(reload_path);
    if (rc != 0)
        return rc;
    if (!json_is_string(json_object_get(resp.json, "name"))) {
        /* /api/v1/agents/health-summary answers with the summary */
        fprintf(stderr, "caxton: '%s' is a reserved name, not an agent; a file named %s.md is "
                "listed as '%s.md' (see 'caxton agents status --error-states-only')\n", name,
                name, name);
        client_response_free(&resp);
        client_response_free(&reload);
        return CLI_EXIT_PROBLEM;
    }
    bool bad = mark_error_state(resp.json);
    if (inv->output == CLI_OUTPUT_JSON) {
        if (reload.json)
            json_object_set(resp.json, "reload", reload.json);
        output_json(stdout, resp.json);
    } else if (cli_flag_set(inv, "error-states-only") && !bad) {
        output_line(stdout, "%s: not in an error state (%s)", name,
                    output_string(resp.json, "state", "?"));
    } else {
        print_agent(resp.json, reload.json, detailed);
    }
    client_response_free(&resp);
    client_response_free(&reload);
    return bad ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
}

int cmd_agents_status(const cli_invocation *inv)
{
    return inv->arg_count > 0 ? status_one(inv, inv->args[0]) : status_all(inv);
}

/* ---- health-summary ------------------------------------------------------------------------- */

static void print_health(const json_t *doc)
{
    const json_t *counts = json_object_get(doc, "counts");
    output_line(stdout, "status: %s (%lld agents: %lld active, %lld suspended, %lld failed, "
                        "%lld reloading, %lld draining)",
                output_string(doc, "status", "?"), (long long)output_int(counts, "total"),
                (long long)output_int(counts, "active"), (long long)output_int(counts, "suspended"),
                (long long)output_int(counts, "failed"), (long long)output_int(counts, "reloading"),
                (long long)output_int(counts, "draining"));
    output_table *t = output_table_new(6, (const char *[]){"name", "state", "health", "queue",
                                                           "error rate", "reasons"});
    size_t i;
    const json_t *a;
    json_array_foreach(json_object_get(doc, "agents"), i, a) {
        char queue[48], rate[32];
        snprintf(queue, sizeof queue, "%lld/%lld", (long long)output_int(a, "queue_depth"),
                 (long long)output_int(a, "queue_capacity"));
        const json_t *r = json_object_get(a, "error_rate");
        if (json_is_number(r))
            snprintf(rate, sizeof rate, "%.1f%%", json_number_value(r) * 100.0);
        else
            snprintf(rate, sizeof rate, "-");
        char *reasons = output_join(json_object_get(a, "reasons"));
        if (t)
            output_table_row(t, output_string(a, "name", "?"), output_string(a, "state", "?"),
                             output_string(a, "health", "?"), queue, rate, reasons);
        free(reasons);
    }
    if (t && output_table_rows(t) > 0) {
        printf("\n");
        output_table_print(t, stdout);
    }
    output_table_free(t);
}

int cmd_agents_health_summary(const cli_invocation *inv)
{
    bool critical = cli_flag_set(inv, "critical-only");
    client_response resp;
    int rc = cli_request_once(inv, "GET",
                              critical ? AGENTS_PREFIX "health-summary?critical_only=true"
                                       : AGENTS_PREFIX "health-summary",
                              NULL, &resp);
    if (rc != 0)
        return rc;
    bool ok = strcmp(output_string(resp.json, "status", ""), "ok") == 0;
    if (inv->output == CLI_OUTPUT_JSON)
        output_json(stdout, resp.json);
    else
        print_health(resp.json);
    client_response_free(&resp);
    return ok ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
}

/* ---- suspend, resume ------------------------------------------------------------------------ */

static int lifecycle(const cli_invocation *inv, const char *action, const char *done)
{
    const char *name = inv->args[0];
    char *path = cli_api_path(AGENTS_PREFIX, name, action);
    if (!path)
        return CLI_EXIT_PROBLEM;
    client_response resp;
    int rc = cli_request_once(inv, "POST", path, NULL, &resp);
    free(path);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        output_json(stdout, resp.json);
    } else {
        json_int_t depth = output_int(json_object_get(resp.json, "queue"), "depth");
        output_line(stdout, "%s %s (state %s, %lld queued)", done, name,
                    output_string(resp.json, "state", "?"), (long long)depth);
        if (strcmp(action, "/suspend") == 0)
            output_line(stdout, "new messages wait in its queue until 'caxton agents resume %s'",
                        name);
    }
    client_response_free(&resp);
    return CLI_EXIT_OK;
}

int cmd_agents_suspend(const cli_invocation *inv)
{
    return lifecycle(inv, "/suspend", "suspended");
}

int cmd_agents_resume(const cli_invocation *inv)
{
    return lifecycle(inv, "/resume", "resumed");
}

/* ---- logs ----------------------------------------------------------------------------------- */

static bool is_known_log_key(const char *key)
{
    static const char *const known[] = {"ts", "level", "component", "msg", "agent", "event"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(key, known[i]) == 0)
            return true;
    return false;
}

static void print_log_line(const json_t *line)
{
    strbuf sb;
    strbuf_init(&sb);
    const char *event = output_string(line, "event", output_string(line, "component", "-"));
    strbuf_appendf(&sb, "%s  %-5s  %s  %s", output_string(line, "ts", "?"),
                   output_string(line, "level", "?"), event, output_string(line, "msg", ""));
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)line, key, value) {
        if (is_known_log_key(key))
            continue;
        char *text = output_value_text(value);
        if (text)
            strbuf_appendf(&sb, " %s=%s", key, text);
        free(text);
    }
    output_line(stdout, "%s", sb.failed ? "(out of memory)" : sb.data);
    strbuf_free(&sb);
}

int cmd_agents_logs(const cli_invocation *inv)
{
    const char *name = inv->args[0];
    uint64_t limit;
    int rc = cli_flag_count(inv, "limit", LOGS_DEFAULT_LIMIT, LOGS_MAX_LIMIT, &limit);
    if (rc != 0)
        return rc;
    char *base = cli_api_path(AGENTS_PREFIX, name, "/logs");
    strbuf path, window;
    strbuf_init(&path);
    strbuf_init(&window);
    char count[24];
    snprintf(count, sizeof count, "%llu", (unsigned long long)limit);
    if (!base || strbuf_appends(&path, base) != 0 ||
        cli_query_add(&path, "level", cli_flag_value(inv, "level")) != 0 ||
        cli_query_add(&path, "limit", count) != 0 || cli_window_query(&inv->window, &window) != 0 ||
        (window.len && strbuf_appendf(&path, "&%s", window.data) != 0)) {
        if (base)
            fprintf(stderr, "caxton: out of memory\n");
        free(base);
        strbuf_free(&path);
        strbuf_free(&window);
        return CLI_EXIT_PROBLEM;
    }
    free(base);
    strbuf_free(&window);
    client_response resp;
    rc = cli_request_once(inv, "GET", path.data, NULL, &resp);
    strbuf_free(&path);
    if (rc != 0)
        return rc;
    const json_t *items = json_object_get(resp.json, "items");
    if (inv->output == CLI_OUTPUT_JSON) {
        output_json(stdout, resp.json);
    } else if (json_array_size(items) == 0) {
        const char *level = cli_flag_value(inv, "level");
        output_line(stdout, "no log lines for %s%s%s%s", name, level ? " at level " : "",
                    level ? level : "", inv->window.set ? " in that time window" : "");
    } else {
        size_t i;
        const json_t *line;
        json_array_foreach(items, i, line)
            print_log_line(line);
    }
    client_response_free(&resp);
    return CLI_EXIT_OK;
}

/* ---- scale ---------------------------------------------------------------------------------- */

json_t *cli_scale_instances(const char *text, cx_error *err)
{
    units_change change;
    cx_error perr;
    if (units_parse_change(text, false, &change, &perr) != 0) {
        cx_error_set(err, CX_EINVAL, "invalid --instances: %s (expected +N, -N or N, e.g. +1)",
                     perr.msg);
        return NULL;
    }
    if (change.kind == UNITS_PERCENT) {
        cx_error_set(err, CX_EINVAL, "invalid --instances '%s': give a count (+N, -N or N), not a "
                                     "percentage", text);
        return NULL;
    }
    if (change.kind == UNITS_DELTA) {
        if (change.value == 0 || change.value > AGENTDEF_MAX_INSTANCES ||
            change.value < -AGENTDEF_MAX_INSTANCES) {
            cx_error_set(err, CX_EINVAL, "invalid --instances '%s': a change from -%d to +%d, "
                                         "not 0", text, AGENTDEF_MAX_INSTANCES,
                         AGENTDEF_MAX_INSTANCES);
            return NULL;
        }
        char delta[24];
        snprintf(delta, sizeof delta, "%+lld", (long long)change.value);
        return json_string(delta);
    }
    if (change.value < 1 || change.value > AGENTDEF_MAX_INSTANCES) {
        cx_error_set(err, CX_EINVAL, "invalid --instances '%s': an agent runs 1 to %d instances",
                     text, AGENTDEF_MAX_INSTANCES);
        return NULL;
    }
    return json_integer(change.value);
}

int cmd_agents_scale(const cli_invocation *inv)
{
    const char *name = inv->args[0];
    cx_error err;
    json_t *instances = cli_scale_instances(cli_flag_value(inv, "instances"), &err);
    if (!instances) {
        fprintf(stderr, "caxton: %s\n", err.msg);
        return CLI_EXIT_USAGE;
    }
    json_t *body = json_pack("{s:o}", "instances", instances);
    char *path = cli_api_path(AGENTS_PREFIX, name, "/scale");
    client_response resp;
    int rc = body && path ? cli_request_once(inv, "POST", path, body, &resp)
                          : (fprintf(stderr, "caxton: out of memory\n"), CLI_EXIT_PROBLEM);
    json_decref(body);
    free(path);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        output_json(stdout, resp.json);
    } else {
        json_int_t before = output_int(resp.json, "instances_before");
        json_int_t after = output_int(resp.json, "instances");
        if (before == after)
            output_line(stdout, "%s keeps %lld instance%s", name, (long long)after,
                        after == 1 ? "" : "s");
        else
            output_line(stdout, "scaled %s from %lld to %lld instance%s", name, (long long)before,
                        (long long)after, after == 1 ? "" : "s");
        const char *note = output_string(resp.json, "note", NULL);
        if (note && note[0])
            output_line(stdout, "%s", note);
    }
    client_response_free(&resp);
    return CLI_EXIT_OK;
}

/* ---- reload, reload-status ------------------------------------------------------------------ */

/* The agent's definition file as the server knows it, for diagnostics; a
 * copy of fallback when the server cannot say. free() it. */
static char *agent_file(client *c, const char *name)
{
    char *path = cli_api_path(AGENTS_PREFIX, name, NULL);
    cx_error err;
    client_response resp;
    char *file = NULL;
    if (path && client_request(c, "GET", path, NULL, &resp, &err) == 0) {
        if (resp.status == 200)
            file = str_dup(output_string(resp.json, "file", NULL));
        client_response_free(&resp);
    }
    free(path);
    if (!file) {
        strbuf sb;
        strbuf_init(&sb);
        strbuf_appendf(&sb, "%s.md", name);
        file = strbuf_detach(&sb);
    }
    return file;
}

static void print_reload(const json_t *doc, const char *name, const char *file, bool forced)
{
    const char *result = output_string(doc, "result", "?");
    const char *before = output_string(doc, "version_before", "?");
    const char *after = output_string(doc, "version_after", "?");
    const json_t *diags = json_object_get(doc, "diagnostics");
    cli_print_diagnostics(stdout, file, diags);
    if (strcmp(result, "ok") == 0 && strcmp(before, after) != 0) {
        output_line(stdout, "reloaded %s: version %s → %s", name, before, after);
    } else if (strcmp(result, "ok") == 0) {
        output_line(stdout, "reloaded %s (version %s)", name, after);
    } else if (strcmp(result, "unchanged") == 0) {
        output_line(stdout, "%s is unchanged (version %s)%s", name, before,
                    forced ? "" : "; --force reloads it anyway");
    } else {
        char count[64];
        diagnostics_count(diags, count, sizeof count);
        output_line(stdout, "reload of %s failed (%s)", name, count);
        const char *kept = output_string(doc, "kept", NULL);
        if (kept)
            output_line(stdout, "%s is %s", name, kept);
        else
            output_line(stdout, "%s has no good version to fall back to", name);
        output_line(stdout, "fix %s, check it with 'caxton agents validate %s', then 'caxton "
                            "agents reload %s'", file, file, name);
    }
}

int cmd_agents_reload(const cli_invocation *inv)
{
    const char *name = inv->args[0];
    bool force = cli_flag_set(inv, "force");
    json_t *body = json_pack("{s:b, s:b}", "force", force, "fallback_on_error",
                             cli_flag_set(inv, "fallback-on-error"));
    char *path = cli_api_path(AGENTS_PREFIX, name, "/reload");
    client c;
    client_response resp = {0};
    int rc = body && path ? cli_connect(inv, &c)
                          : (fprintf(stderr, "caxton: out of memory\n"), CLI_EXIT_PROBLEM);
    if (rc == 0) {
        rc = cli_call(&c, "POST", path, body, &resp);
        bool failed = rc == 0 && strcmp(output_string(resp.json, "result", ""), "ok") != 0 &&
                      strcmp(output_string(resp.json, "result", ""), "unchanged") != 0;
        if (rc == 0 && inv->output == CLI_OUTPUT_JSON) {
            output_json(stdout, resp.json);
        } else if (rc == 0) {
            char *file = failed || json_array_size(json_object_get(resp.json, "diagnostics"))
                             ? agent_file(&c, name)
                             : NULL;
            print_reload(resp.json, name, file ? file : name, force);
            free(file);
        }
        if (failed)
            rc = CLI_EXIT_PROBLEM;
        client_response_free(&resp);
        client_close(&c);
    }
    json_decref(body);
    free(path);
    return rc;
}

static bool attempt_failed(const json_t *attempt)
{
    const char *result = output_string(attempt, "result", "");
    return strcmp(result, "failed") == 0 || strcmp(result, "rolled-back") == 0;
}

static void print_reload_status(const json_t *doc, const char *file)
{
    output_line(stdout, "%s: reload status %s (state %s)", output_string(doc, "name", "?"),
                output_string(doc, "reload_status", "?"), output_string(doc, "state", "?"));
    const json_t *attempts = json_object_get(doc, "attempts");
    if (json_array_size(attempts) == 0) {
        printf("no reload attempts yet\n");
        return;
    }
    output_table *t = output_table_new(6, (const char *[]){"at", "trigger", "result", "version",
                                                           "duration", "problems"});
    size_t i;
    const json_t *a;
    json_array_foreach(attempts, i, a) {
        const char *before = output_string(a, "version_before", NULL);
        const char *after = output_string(a, "version_after", NULL);
        char version[160], duration[32], problems[64];
        if (before && after && strcmp(before, after) != 0)
            snprintf(version, sizeof version, "%s → %s", before, after);
        else
            snprintf(version, sizeof version, "%s", after ? after : before ? before : "-");
        format_ms(output_int(a, "duration_ms"), duration, sizeof duration);
        diagnostics_count(json_object_get(a, "diagnostics"), problems, sizeof problems);
        if (t)
            output_table_row(t, output_string(a, "at", "?"), output_string(a, "trigger", "?"),
                             output_string(a, "result", "?"), version, duration, problems);
    }
    if (t) {
        printf("\n");
        output_table_print(t, stdout);
    }
    output_table_free(t);
    const json_t *last = json_array_get(attempts, 0);
    const json_t *diags = json_object_get(last, "diagnostics");
    if (json_array_size(diags) > 0) {
        printf("\n");
        output_line(stdout, "last attempt (%s):", output_string(last, "at", "?"));
        cli_print_diagnostics(stdout, file, diags);
    }
}

int cmd_agents_reload_status(const cli_invocation *inv)
{
    const char *name = inv->args[0];
    char *path = cli_api_path(AGENTS_PREFIX, name, "/reload-status");
    if (!path)
        return CLI_EXIT_PROBLEM;
    client c;
    client_response resp;
    int rc = cli_connect(inv, &c);
    if (rc == 0) {
        rc = cli_call(&c, "GET", path, NULL, &resp);
        if (rc == 0) {
            const json_t *last = json_array_get(json_object_get(resp.json, "attempts"), 0);
            if (inv->output == CLI_OUTPUT_JSON) {
                output_json(stdout, resp.json);
            } else {
                char *file = json_array_size(json_object_get(last, "diagnostics"))
                                 ? agent_file(&c, name)
                                 : NULL;
                print_reload_status(resp.json, file ? file : name);
                free(file);
            }
            rc = attempt_failed(last) ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
            client_response_free(&resp);
        }
        client_close(&c);
    }
    free(path);
    return rc;
}

/* ---- deploy, update, remove ----------------------------------------------------------------- */

/* Reads a definition file for sending; prints why not and returns an exit code. */
static int read_definition(const char *file, char **text, size_t *len)
{
    /* The file is sent, not read by the server: only this user needs access. */
    if (access(file, R_OK) != 0 && errno == EACCES) {
        output_line(stderr, "caxton: cannot read %s: permission denied (run this as a user who "
                            "can read it)", file);
        return CLI_EXIT_PROBLEM;
    }
    agentdef_diags diags = {0};
    if (agentdir_read(file, text, len, &diags) != 0) {
        for (size_t i = 0; i < diags.count; i++)
            output_line(stderr, "caxton: %s", diags.items[i].message);
        agentdef_diags_free(&diags);
        return CLI_EXIT_PROBLEM;
    }
    agentdef_diags_free(&diags);
    if (!text_is_utf8(*text, *len)) {
        fprintf(stderr, "caxton: %s is not valid UTF-8 text; save it as UTF-8\n", file);
        free(*text);
        *text = NULL;
        return CLI_EXIT_PROBLEM;
    }
    return CLI_EXIT_OK;
}

/* The agent name to PUT a file to: its name as parsed (without the
 * server's cross-references), else the file name without ".md". */
static char *definition_name(const char *file, const char *text, size_t len)
{
    agentdef_context ctx = {0};
    agentdef_diags diags = {0};
    agent_def *def = agentdef_parse(file, text, len, &ctx, &diags);
    char *name = def && def->name ? str_dup(def->name) : NULL;
    agentdef_free(def);
    agentdef_diags_free(&diags);
    if (name)
        return name;
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".md") == 0)
        n -= 3;
    name = malloc(n + 1);
    if (name) {
        memcpy(name, base, n);
        name[n] = '\0';
    }
    return name;
}

/* After a refused deploy or update: the diagnostics, or the usual report. */
static int report_refusal(const client *c, const client_response *resp, const char *file,
                          bool update)
{
    const char *code = client_error_code(resp);
    const json_t *details = json_object_get(json_object_get(resp->json, "error"), "details");
    const json_t *diags = json_object_get(details, "diagnostics");
    if (resp->status == 422 && json_is_array(diags)) {
        const char *message = client_error_message(resp);
        output_line(stderr, "error %s: %s", code ? code : "INVALID_AGENT",
                    message ? message : "the definition is invalid");
        cli_print_diagnostics(stderr, file, diags);
        return CLI_EXIT_PROBLEM;
    }
    int rc = cli_report_http_error(c, resp);
    if (resp->status == 409 && !update)
        output_line(stderr, "caxton: to replace its definition: caxton agents update %s", file);
    else if (resp->status == 404 && update)
        output_line(stderr, "caxton: to create it: caxton agents deploy %s", file);
    return rc;
}

static int send_definition(const cli_invocation *inv, bool update)
{
    const char *file = inv->args[0];
    char *text = NULL, *name = NULL, *path = NULL;
    size_t len = 0;
    int rc = read_definition(file, &text, &len);
    if (rc != 0)
        return rc;
    json_t *body = json_pack("{s:s%}", "content", text, len);
    if (update && (name = definition_name(file, text, len)) != NULL)
        path = cli_api_path(AGENTS_PREFIX, name, NULL);
    else if (!update)
        path = str_dup(AGENTS_PATH);
    free(text);
    client c;
    rc = body && path ? cli_connect(inv, &c)
                      : (fprintf(stderr, "caxton: out of memory\n"), CLI_EXIT_PROBLEM);
    if (rc == 0) {
        client_response resp;
        cx_error err;
        int sent = client_request(&c, update ? "PUT" : "POST", path, body, &resp, &err);
        if (sent != 0) {
            rc = cli_report_request_failure(&c, sent, &err);
        } else if (resp.status < 200 || resp.status >= 300) {
            rc = report_refusal(&c, &resp, file, update);
        } else if (inv->output == CLI_OUTPUT_JSON && resp.json) {
            output_json(stdout, resp.json);
        } else {
            output_line(stdout, "%s %s version %s (state %s)", update ? "updated" : "deployed",
                        output_string(resp.json, "name", name ? name : "?"),
                        output_string(resp.json, "version", "?"),
                        output_string(resp.json, "state", "?"));
        }
        client_response_free(&resp);
        client_close(&c);
    }
    json_decref(body);
    free(path);
    free(name);
    return rc;
}

int cmd_agents_deploy(const cli_invocation *inv)
{
    return send_definition(inv, false);
}

int cmd_agents_update(const cli_invocation *inv)
{
    return send_definition(inv, true);
}

int cmd_agents_remove(const cli_invocation *inv)
{
    const char *name = inv->args[0];
    char *path = cli_api_path(AGENTS_PREFIX, name, NULL);
    if (!path)
        return CLI_EXIT_PROBLEM;
    client_response resp;
    int rc = cli_request_once(inv, "DELETE", path, NULL, &resp);
    free(path);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        output_json(stdout, resp.json);
    } else {
        json_int_t failed = output_int(resp.json, "failed_queued");
        output_line(stdout, "removed %s: its definition file is deleted", name);
        if (failed > 0)
            output_line(stdout, "%lld queued message%s answered with a failure (reason "
                                "agent-removed)",
                        (long long)failed, failed == 1 ? " was" : "s were");
    }
    client_response_free(&resp);
    return CLI_EXIT_OK;
}
