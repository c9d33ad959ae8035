/* `caxton serve`, `caxton status` and `caxton health-check`.
 *
 * serve hands the flags to server_main() and returns its exit code. status
 * and health-check read the server's own health documents (GET
 * /api/v1/status, /health, /health/deep) and turn them into one screen and an
 * exit code: 0 healthy, 1 a problem was found, 3 unreachable or not ready. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/units.h"
#include "core/util.h"
#include "server/server.h"

#define WAIT_READY_INTERVAL_MS 200u

int cmd_serve(const cli_invocation *inv)
{
    config_flags flags = {
        .config_path = inv->config_path,
        .data_dir = inv->data_dir,
        .log_dir = cli_flag_value(inv, "log-dir"),
        .listen = cli_flag_value(inv, "listen"),
    };
    return server_main(&flags);
}

/* ---- Shared printing ------------------------------------------------------------------------ */

void cli_print_components(FILE *out, const json_t *components)
{
    output_table *t = output_table_new(4, (const char *[]){"component", "status", "critical",
                                                            "detail"});
    if (!t)
        return;
    size_t i;
    const json_t *c;
    json_array_foreach(components, i, c) {
        const json_t *critical = json_object_get(c, "critical");
        output_table_row(t, output_string(c, "name", "?"), output_string(c, "status", "?"),
                         json_is_boolean(critical) ? (json_is_true(critical) ? "yes" : "no") : "-",
                         output_string(c, "detail", ""));
    }
    output_table_print(t, out);
    output_table_free(t);
}

void cli_health_reason(const client_response *resp, char *buf, size_t size)
{
    const json_t *components = json_object_get(resp->json, "components");
    size_t used = 0;
    buf[0] = '\0';
    if (json_is_array(components)) {
        size_t i;
        const json_t *c;
        json_array_foreach(components, i, c) {
            const char *status = output_string(c, "status", "");
            if (strcmp(status, "ok") == 0 || used >= size)
                continue;
            int w = snprintf(buf + used, size - used, "%s%s %s%s%s", used ? "; " : "",
                             output_string(c, "name", "?"), status,
                             output_string(c, "detail", NULL) ? ": " : "",
                             output_string(c, "detail", ""));
            if (w > 0)
                used += (size_t)w;
        }
    }
    if (used == 0) {
        const char *code = client_error_code(resp), *msg = client_error_message(resp);
        if (code)
            snprintf(buf, size, "HTTP %ld, %s: %s", resp->status, code, msg ? msg : "");
        else
            snprintf(buf, size, "HTTP %ld, status %s", resp->status,
                     output_string(resp->json, "status", "unknown"));
    } else if (resp->status != 200) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "HTTP %ld, ", resp->status);
        size_t plen = strlen(prefix), len = strlen(buf);
        if (len + plen < size) {
            memmove(buf + plen, buf, len + 1);
            memcpy(buf, prefix, plen);
        }
    }
    output_sanitize(buf);
}

static const char *json_number_text(const json_t *obj, const char *key, char *buf, size_t size)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, size, "%.0f", json_real_value(v));
    else
        snprintf(buf, size, "?");
    return buf;
}

static void print_counts(const json_t *counts)
{
    char a[32], b[32];
    const json_t *agents = json_object_get(counts, "agents");
    if (json_is_object(agents)) {
        char c[32], d[32];
        printf("agents: %s total (%s active, %s suspended, %s failed)\n",
               json_number_text(agents, "total", a, sizeof a),
               json_number_text(agents, "active", b, sizeof b),
               json_number_text(agents, "suspended", c, sizeof c),
               json_number_text(agents, "failed", d, sizeof d));
    }
    const json_t *messages = json_object_get(counts, "messages");
    if (json_is_object(messages)) {
        char c[32], d[32], e[32];
        printf("messages: %s accepted, %s replies, %s failed, %s dead-lettered, %s unanswered "
               "in the journal\n",
               json_number_text(messages, "accepted", a, sizeof a),
               json_number_text(messages, "replied", b, sizeof b),
               json_number_text(messages, "failed", c, sizeof c),
               json_number_text(messages, "dead_lettered", d, sizeof d),
               json_number_text(messages, "journal_pending", e, sizeof e));
    }
    const json_t *tokens = json_object_get(counts, "tokens");
    if (json_is_object(tokens))
        printf("tokens: %s active, %s revoked\n", json_number_text(tokens, "active", a, sizeof a),
               json_number_text(tokens, "revoked", b, sizeof b));
    const json_t *http = json_object_get(counts, "http");
    if (json_is_object(http))
        printf("http: %s connections, %s requests\n",
               json_number_text(http, "connections", a, sizeof a),
               json_number_text(http, "requests_total", b, sizeof b));
}

/* Counts production checks by status; prints their table when out is set. */
static void production_checks(const json_t *checks, FILE *out, size_t *warnings, size_t *failures)
{
    *warnings = *failures = 0;
    output_table *t = out ? output_table_new(4, (const char *[]){"production check", "status",
                                                                  "detail", "fix"})
                          : NULL;
    size_t i;
    const json_t *c;
    json_array_foreach(checks, i, c) {
        const char *status = output_string(c, "status", "?");
        if (strcmp(status, "warn") == 0)
            (*warnings)++;
        else if (strcmp(status, "ok") != 0)
            (*failures)++;
        if (t)
            output_table_row(t, output_string(c, "name", "?"), status,
                             output_string(c, "detail", ""), output_string(c, "fix", ""));
    }
    if (t) {
        output_table_print(t, out);
        output_table_free(t);
    }
}

void cli_print_server_summary(const json_t *doc)
{
    const json_t *server = json_object_get(doc, "server");
    char pid[32], uptime[32];
    const json_t *up = json_object_get(server, "uptime_seconds");
    output_format_uptime(json_is_number(up) ? json_number_value(up) : 0, uptime, sizeof uptime);
    char line[1024];
    snprintf(line, sizeof line, "caxton %s (pid %s), up %s, %s",
             output_string(server, "version", "?"),
             json_number_text(server, "pid", pid, sizeof pid), uptime,
             output_string(server, "url", "?"));
    output_sanitize(line);
    printf("%s\n", line);
}

static int status_exit(const json_t *doc, bool production)
{
    size_t warnings, failures;
    production_checks(json_object_get(doc, "production_checks"), NULL, &warnings, &failures);
    if (strcmp(output_string(doc, "status", ""), "ok") != 0)
        return CLI_EXIT_PROBLEM;
    return production && (warnings || failures) ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
}

static void print_status(const json_t *doc, bool production)
{
    const json_t *server = json_object_get(doc, "server");
    cli_print_server_summary(doc);
    char line[2048];
    snprintf(line, sizeof line, "status: %s", output_string(doc, "status", "unknown"));
    output_sanitize(line);
    printf("%s\n", line);
    snprintf(line, sizeof line, "data dir: %s, logs: %s, config: %s",
             output_string(server, "data_dir", "?"), output_string(server, "log_dir", "?"),
             output_string(server, "config_file", "none (built-in defaults)"));
    output_sanitize(line);
    printf("%s\n", line);
    const json_t *components = json_object_get(doc, "components");
    if (json_is_array(components) && json_array_size(components) > 0) {
        printf("\n");
        cli_print_components(stdout, components);
    }
    const json_t *counts = json_object_get(doc, "counts");
    if (json_is_object(counts)) {
        printf("\n");
        print_counts(counts);
    }
    if (production) {
        size_t warnings, failures;
        const json_t *checks = json_object_get(doc, "production_checks");
        printf("\n");
        if (json_is_array(checks) && json_array_size(checks) > 0)
            production_checks(checks, stdout, &warnings, &failures);
        else
            production_checks(checks, NULL, &warnings, &failures);
        if (warnings || failures)
            printf("production check: %zu warning%s, %zu failure%s\n", warnings,
                   warnings == 1 ? "" : "s", failures, failures == 1 ? "" : "s");
        else
            printf("production check: passed\n");
    }
}

bool cli_is_status_document(const client_response *resp)
{
    return json_is_object(resp->json) && !json_object_get(resp->json, "error") &&
           json_is_string(json_object_get(resp->json, "status"));
}

int cmd_status(const cli_invocation *inv)
{
    client c;
    int rc = cli_connect(inv, &c);
    if (rc != 0)
        return rc;
    client_response resp;
    cx_error err;
    bool production = cli_flag_set(inv, "production-check");
    if ((rc = client_request(&c, "GET", "/api/v1/status", NULL, &resp, &err)) != 0) {
        rc = cli_report_request_failure(&c, rc, &err);
    } else if ((resp.status == 200 || resp.status == 503) && cli_is_status_document(&resp)) {
        if (inv->output == CLI_OUTPUT_JSON)
            output_json(stdout, resp.json);
        else
            print_status(resp.json, production);
        rc = status_exit(resp.json, production);
    } else {
        if (resp.status >= 200 && resp.status < 300) {
            fprintf(stderr,
                    "caxton: the server at %s answered HTTP %ld without a status document\n",
                    c.url, resp.status);
            rc = CLI_EXIT_PROBLEM;
        } else {
            rc = cli_report_http_error(&c, &resp);
        }
    }
    client_response_free(&resp);
    client_close(&c);
    return rc;
}

/* ---- health-check --------------------------------------------------------------------------- */

void cli_print_deep(const client_response *resp)
{
    const char *status = output_string(resp->json, "status", "unknown");
    char line[256];
    snprintf(line, sizeof line, "status: %s%s", status, resp->status == 200 ? "" : " (not ready)");
    output_sanitize(line);
    printf("%s\n", line);
    const json_t *components = json_object_get(resp->json, "components");
    if (json_is_array(components) && json_array_size(components) > 0) {
        printf("\n");
        cli_print_components(stdout, components);
    }
}

int cli_deep_exit_code(const client_response *resp)
{
    return resp->status == 200 && strcmp(output_string(resp->json, "status", ""), "ok") == 0
               ? CLI_EXIT_OK
               : CLI_EXIT_PROBLEM;
}

/* Prints a /health/deep answer and returns 0 when it is 200 and ok, else 1. */
static int report_deep(const cli_invocation *inv, const client *c, const client_response *resp)
{
    if (resp->status == 401 || resp->status == 403 || !cli_is_status_document(resp)) {
        int rc = cli_report_http_error(c, resp);
        return rc == CLI_EXIT_UNREACHABLE ? CLI_EXIT_PROBLEM : rc;
    }
    if (inv->output == CLI_OUTPUT_JSON)
        output_json(stdout, resp->json);
    else
        cli_print_deep(resp);
    return cli_deep_exit_code(resp);
}

static int wait_ready(const cli_invocation *inv, client *c, bool comprehensive)
{
    uint64_t start = time_monotonic_ns() / 1000000u;
    uint64_t deadline = start + inv->timeout_ms;
    char reason[1024] = "no answer yet";
    for (;;) {
        uint64_t now = time_monotonic_ns() / 1000000u;
        if (now >= deadline)
            break;
        client_response resp;
        cx_error err;
        int rc =
            client_request_timeout(c, "GET", "/health/deep", NULL, deadline - now, &resp, &err);
        if (rc == 0 && resp.status == 200) {
            if (comprehensive) {
                rc = report_deep(inv, c, &resp);
            } else {
                if (inv->output == CLI_OUTPUT_JSON && resp.json)
                    output_json(stdout, resp.json);
                else
                    printf("ready\n");
                rc = CLI_EXIT_OK;
            }
            client_response_free(&resp);
            return rc;
        }
        if (rc == 0 && (resp.status == 401 || resp.status == 403)) {
            rc = cli_report_http_error(c, &resp);
            client_response_free(&resp);
            return rc;
        }
        /* An unverified certificate will not verify on the next try: say so now
         * rather than after the whole timeout. Only "not up yet" is retried. */
        if (rc != 0 && (rc != CX_ECONNECT || c->cert_unverified))
            return cli_report_request_failure(c, rc, &err);
        if (rc == 0)
            cli_health_reason(&resp, reason, sizeof reason);
        else
            snprintf(reason, sizeof reason, "%s", err.msg);
        client_response_free(&resp);
        now = time_monotonic_ns() / 1000000u;
        if (now >= deadline)
            break;
        uint64_t left = deadline - now;
        cli_sleep_ms(left < WAIT_READY_INTERVAL_MS ? left : WAIT_READY_INTERVAL_MS);
    }
    char limit[32];
    units_format_duration(inv->timeout_ms, limit, sizeof limit);
    fprintf(stderr, "caxton: the server at %s is not ready after %s: %s\n", c->url, limit, reason);
    return CLI_EXIT_UNREACHABLE;
}

int cmd_health_check(const cli_invocation *inv)
{
    client c;
    int rc = cli_connect(inv, &c);
    if (rc != 0)
        return rc;
    bool comprehensive = cli_flag_set(inv, "comprehensive");
    if (cli_flag_set(inv, "wait-ready")) {
        rc = wait_ready(inv, &c, comprehensive);
        client_close(&c);
        return rc;
    }
    client_response resp;
    cx_error err;
    rc = client_request(&c, "GET", comprehensive ? "/health/deep" : "/health", NULL, &resp, &err);
    if (rc != 0) {
        rc = cli_report_request_failure(&c, rc, &err);
    } else if (comprehensive) {
        rc = report_deep(inv, &c, &resp);
    } else if (resp.status == 200) {
        if (inv->output == CLI_OUTPUT_JSON && resp.json)
            output_json(stdout, resp.json);
        else
            printf("healthy\n");
        rc = CLI_EXIT_OK;
    } else if (client_error_code(&resp)) {
        rc = cli_report_http_error(&c, &resp);
    } else {
        fprintf(stderr, "caxton: unhealthy: the server at %s answered HTTP %ld\n", c.url,
                resp.status);
        rc = CLI_EXIT_PROBLEM;
    }
    client_response_free(&resp);
    client_close(&c);
    return rc;
}
