/* Unit tests for the command line's pure logic: parsing against the command
 * table (both flag forms, suggestions, missing values and arguments), time
 * windows, exit codes from HTTP statuses, URL derivation, token name
 * resolution, tables, and the consistency of the built-in table itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli_internal.h"
#include "cli/client.h"
#include "cli/output.h"

#define NOW_MS UINT64_C(1768471200000) /* 2026-01-15T10:00:00Z */

static char *no_env[] = {NULL};

/* Parses a NULL-terminated list of words against the built-in table. */
static cli_parse_result parse_with(const cli_table *table, char *const *envp, cli_invocation *inv,
                                   cx_error *err, ...)
{
    char *argv[32] = {"caxton"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *word; (word = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = word;
    va_end(ap);
    return cli_parse(table, argc, argv, envp, NOW_MS, inv, err);
}

#define PARSE(inv, err, ...) parse_with(&cli_builtin_table, no_env, inv, err, __VA_ARGS__, NULL)

/* ---- Flags ---------------------------------------------------------------------------------- */

static void test_both_flag_forms(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(PARSE(&inv, &err, "status", "--timeout", "5s"), CLI_PARSE_RUN);
    assert_string_equal(inv.command->group, "status");
    assert_int_equal(inv.timeout_ms, 5000);
    assert_true(inv.timeout_given);

    assert_int_equal(PARSE(&inv, &err, "status", "--timeout=2min", "--output=json"), CLI_PARSE_RUN);
    assert_int_equal(inv.timeout_ms, 120000);
    assert_int_equal(inv.output, CLI_OUTPUT_JSON);

    /* Global flags anywhere, even before the group; valued ones skip their value. */
    assert_int_equal(PARSE(&inv, &err, "--server", "http://h:1", "--output", "json", "service",
                           "--listen", "0.0.0.0:1", "start", "--verify-health"),
                     CLI_PARSE_RUN);
    assert_string_equal(inv.command->name, "start");
    assert_string_equal(inv.server, "http://h:1");
    assert_string_equal(cli_flag_value(&inv, "listen"), "0.0.0.0:1");
    assert_true(cli_flag_set(&inv, "verify-health"));
    assert_false(cli_flag_set(&inv, "emergency")); /* not a flag of start */
    assert_null(cli_flag_value(&inv, "log-dir"));
}

static void test_command_defaults(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(PARSE(&inv, &err, "status"), CLI_PARSE_RUN);
    assert_int_equal(inv.timeout_ms, CLI_DEFAULT_TIMEOUT_MS);
    assert_int_equal(inv.output, CLI_OUTPUT_TABLE);
    assert_int_equal(PARSE(&inv, &err, "health-check", "--wait-ready"), CLI_PARSE_RUN);
    assert_int_equal(inv.timeout_ms, 30000);
    assert_int_equal(PARSE(&inv, &err, "service", "stop"), CLI_PARSE_RUN);
    assert_int_equal(inv.timeout_ms, 30000);
}

static void test_unknown_flag_suggestion(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(PARSE(&inv, &err, "status", "--production-chek"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "unknown flag '--production-chek' for 'status'"));
    assert_non_null(strstr(err.msg, "did you mean '--production-check'?"));
    assert_int_equal(PARSE(&inv, &err, "service", "stop", "--emergancy"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "did you mean '--emergency'?"));
    /* A flag of another command is unknown here. */
    assert_int_equal(PARSE(&inv, &err, "status", "--emergency"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "unknown flag '--emergency'"));
    assert_int_equal(PARSE(&inv, &err, "status", "-x"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "unknown flag '-x'"));
}

static void test_missing_and_bad_values(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(PARSE(&inv, &err, "status", "--timeout"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "flag '--timeout' needs a value (DURATION)"));
    assert_true(inv.error_shows_usage);
    /* The next word is a flag, not a value. */
    assert_int_equal(PARSE(&inv, &err, "status", "--server", "--production-check"),
                     CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "'--server' needs a value"));
    assert_int_equal(PARSE(&inv, &err, "status", "--timeout", "soon"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "invalid --timeout 'soon'"));
    assert_int_equal(PARSE(&inv, &err, "status", "--timeout=0s"), CLI_PARSE_ERROR);
    assert_int_equal(PARSE(&inv, &err, "status", "--output", "yaml"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "expected table or json"));
    assert_int_equal(PARSE(&inv, &err, "status", "--production-check=yes"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "takes no value"));
    assert_int_equal(PARSE(&inv, &err, "token", "create", "--role", "admn", "--name", "x"),
                     CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "did you mean 'admin'?"));
}

static void test_arguments(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(PARSE(&inv, &err, "config", "validate"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "missing FILE for 'config validate'"));
    assert_true(inv.error_shows_usage);
    assert_int_equal(PARSE(&inv, &err, "config", "validate", "a.yaml", "b.yaml"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "unexpected argument 'b.yaml'"));
    assert_int_equal(PARSE(&inv, &err, "config", "validate", "--", "--odd.yaml"), CLI_PARSE_RUN);
    assert_string_equal(inv.args[0], "--odd.yaml");
    assert_int_equal(PARSE(&inv, &err, "token", "create", "--name", "x"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "missing --role ROLE"));
    assert_int_equal(PARSE(&inv, &err, "token", "revoke", "grafana"), CLI_PARSE_RUN);
    assert_string_equal(inv.args[0], "grafana");
    assert_int_equal(inv.arg_count, 1);
}

static void test_group_and_command_suggestions(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(PARSE(&inv, &err, "stauts"), CLI_PARSE_ERROR);
    assert_string_equal(err.msg,
                        "unknown command 'stauts'; did you mean 'status'? (see 'caxton help')");
    assert_int_equal(PARSE(&inv, &err, "service", "strat"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "did you mean 'start'?"));
    assert_int_equal(PARSE(&inv, &err, "restart"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "did you mean 'service restart'?"));
    assert_int_equal(PARSE(&inv, &err, "zzzzzzzz"), CLI_PARSE_ERROR);
    assert_null(strstr(err.msg, "did you mean"));
    assert_int_equal(PARSE(&inv, &err, "service"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "'service' needs a command: start, stop, restart or status"));
}

static void test_help_and_version(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(PARSE(&inv, &err, "--help"), CLI_PARSE_HELP);
    assert_null(inv.group);
    assert_int_equal(PARSE(&inv, &err, "service", "--help"), CLI_PARSE_HELP);
    assert_string_equal(inv.group->name, "service");
    assert_null(inv.command);
    assert_int_equal(PARSE(&inv, &err, "service", "start", "-h"), CLI_PARSE_HELP);
    assert_string_equal(inv.command->name, "start");
    /* Help wins over what would be usage errors. */
    assert_int_equal(PARSE(&inv, &err, "config", "validate", "--help", "--bogus"), CLI_PARSE_HELP);
    assert_int_equal(PARSE(&inv, &err, "--version"), CLI_PARSE_VERSION);
    assert_int_equal(PARSE(&inv, &err, "help", "service", "start"), CLI_PARSE_RUN);
    assert_int_equal(inv.arg_count, 2);
}

static void test_environment(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    char *env[] = {"CAXTON_OUTPUT=json", "CAXTON_SERVER=http://env:9", "CAXTON_TOKEN=cxt_env",
                   NULL};
    assert_int_equal(parse_with(&cli_builtin_table, env, &inv, &err, "status", NULL),
                     CLI_PARSE_RUN);
    assert_int_equal(inv.output, CLI_OUTPUT_JSON);
    assert_string_equal(inv.server, "http://env:9");
    assert_string_equal(inv.token, "cxt_env");
    assert_int_equal(parse_with(&cli_builtin_table, env, &inv, &err, "status", "--output",
                                "table", "--server", "http://flag:1", NULL),
                     CLI_PARSE_RUN);
    assert_int_equal(inv.output, CLI_OUTPUT_TABLE);
    assert_string_equal(inv.server, "http://flag:1");
    char *bad[] = {"CAXTON_OUTPUT=xml", NULL};
    assert_int_equal(parse_with(&cli_builtin_table, bad, &inv, &err, "status", NULL),
                     CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "CAXTON_OUTPUT"));
}

/* --cacert: a file flag on every command that talks to the server, in both
 * forms and anywhere on the line; commands that need no server refuse it. */
static void test_cacert_flag(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(PARSE(&inv, &err, "status", "--cacert", "ca.pem"), CLI_PARSE_RUN);
    assert_string_equal(cli_flag_value(&inv, "cacert"), "ca.pem");
    assert_int_equal(PARSE(&inv, &err, "health-check", "--cacert=/etc/ca.pem", "--comprehensive"),
                     CLI_PARSE_RUN);
    assert_string_equal(cli_flag_value(&inv, "cacert"), "/etc/ca.pem");
    assert_true(cli_flag_set(&inv, "comprehensive"));
    /* Before the group: the first pass skips its value, so "ca.pem" is no command. */
    assert_int_equal(PARSE(&inv, &err, "--cacert", "ca.pem", "token", "list"), CLI_PARSE_RUN);
    assert_string_equal(inv.command->name, "list");
    assert_string_equal(cli_flag_value(&inv, "cacert"), "ca.pem");
    assert_int_equal(inv.arg_count, 0);
    assert_int_equal(PARSE(&inv, &err, "token", "revoke", "grafana", "--cacert", "ca.pem"),
                     CLI_PARSE_RUN);
    assert_string_equal(inv.args[0], "grafana");
    assert_string_equal(cli_flag_value(&inv, "cacert"), "ca.pem");

    assert_int_equal(PARSE(&inv, &err, "status", "--cacert"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "--cacert"));
    assert_int_equal(PARSE(&inv, &err, "status", "--cacert="), CLI_PARSE_ERROR);
    assert_int_equal(PARSE(&inv, &err, "config", "validate", "x.yaml", "--cacert", "ca.pem"),
                     CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "unknown flag '--cacert'"));

    /* Every command that talks to a server offers it: those that connect
     * through cli_connect and the service commands that check the server. */
    const cli_table *t = &cli_builtin_table;
    size_t with = 0;
    for (size_t i = 0; i < t->command_count; i++) {
        const cli_command *cmd = &t->commands[i];
        bool connects = cmd->handler == cmd_status || cmd->handler == cmd_health_check ||
                        cmd->handler == cmd_config_show || cmd->handler == cmd_token_create ||
                        cmd->handler == cmd_token_list || cmd->handler == cmd_token_revoke ||
                        cmd->handler == cmd_service_start || cmd->handler == cmd_service_restart ||
                        cmd->handler == cmd_service_status;
        bool has = false;
        for (size_t j = 0; cmd->flags && cmd->flags[j]; j++)
            if (strcmp(cmd->flags[j]->name, "cacert") == 0) {
                has = true;
                assert_int_equal(cmd->flags[j]->kind, CLI_FILE);
            }
        assert_int_equal(has, connects);
        with += has;
    }
    assert_int_equal(with, 9);
}

/* ---- Time windows --------------------------------------------------------------------------- */

static int fake_handler(const cli_invocation *inv)
{
    (void)inv;
    return 0;
}

static const cli_flag flag_level = {"level", CLI_TEXT, "LEVEL", NULL, false, "level"};
static const cli_flag *const logs_flags[] = {&flag_level, NULL};
static const cli_group window_groups[] = {{"logs", "logs"}, {"agents", "agents"}};
static const cli_command window_commands[] = {
    {"logs", NULL, fake_handler, NULL, 0, 0, logs_flags, CLI_CMD_WINDOW, 0, "logs", NULL},
    {"agents", "list", fake_handler, NULL, 0, 0, NULL, 0, 0, "list", NULL},
};
static const cli_table window_table = {window_groups, 2, window_commands, 2};

#define WPARSE(inv, err, ...) parse_with(&window_table, no_env, inv, err, __VA_ARGS__, NULL)

static void test_window_last(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(WPARSE(&inv, &err, "logs", "--last-5min"), CLI_PARSE_RUN);
    assert_true(inv.window.set);
    assert_int_equal(inv.window.since_ms, NOW_MS - 5 * 60000);
    assert_int_equal(inv.window.until_ms, 0);
    assert_int_equal(WPARSE(&inv, &err, "logs", "--last-1h", "--level", "error"), CLI_PARSE_RUN);
    assert_int_equal(inv.window.since_ms, NOW_MS - 3600000);
    assert_int_equal(WPARSE(&inv, &err, "logs", "--last-24h"), CLI_PARSE_RUN);
    assert_int_equal(inv.window.since_ms, NOW_MS - 86400000);
    assert_int_equal(WPARSE(&inv, &err, "logs", "--last-10min"), CLI_PARSE_RUN);
    assert_int_equal(inv.window.since_ms, NOW_MS - 600000);
    assert_int_equal(WPARSE(&inv, &err, "logs"), CLI_PARSE_RUN);
    assert_false(inv.window.set);

    assert_int_equal(WPARSE(&inv, &err, "logs", "--last-fortnight"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "not a duration"));
    assert_int_equal(WPARSE(&inv, &err, "logs", "--last-5min", "--last-1h"), CLI_PARSE_ERROR);
    assert_int_equal(WPARSE(&inv, &err, "logs", "--last-5min", "--since", "1h"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "cannot be combined"));
    /* Commands without windows do not take the flags. */
    assert_int_equal(WPARSE(&inv, &err, "agents", "list", "--last-5min"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "unknown flag '--last-5min'"));
    assert_int_equal(PARSE(&inv, &err, "status", "--since", "1h"), CLI_PARSE_ERROR);
}

static void test_window_since_until(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(WPARSE(&inv, &err, "logs", "--since", "2026-01-15T08:00:00Z", "--until=30m"),
                     CLI_PARSE_RUN);
    assert_int_equal(inv.window.since_ms, NOW_MS - 2 * 3600000);
    assert_int_equal(inv.window.until_ms, NOW_MS - 30 * 60000);
    assert_int_equal(WPARSE(&inv, &err, "logs", "--since=2h"), CLI_PARSE_RUN);
    assert_int_equal(inv.window.since_ms, NOW_MS - 7200000);
    assert_int_equal(WPARSE(&inv, &err, "logs", "--since", "1h", "--until", "2h"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "--since must be before --until"));
    assert_int_equal(WPARSE(&inv, &err, "logs", "--since", "yesterday"), CLI_PARSE_ERROR);

    strbuf q;
    strbuf_init(&q);
    assert_int_equal(WPARSE(&inv, &err, "logs", "--since", "2026-01-15T08:00:00Z", "--until",
                            "now"),
                     CLI_PARSE_RUN);
    assert_int_equal(cli_window_query(&inv.window, &q), 0);
    assert_string_equal(q.data, "since=2026-01-15T08:00:00.000Z&until=2026-01-15T10:00:00.000Z");
    strbuf_free(&q);
}

static void test_rfc3339(void **state)
{
    (void)state;
    uint64_t ms;
    cx_error err;
    assert_int_equal(cli_parse_rfc3339("1970-01-01T00:00:00Z", &ms, &err), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(cli_parse_rfc3339("2026-01-15T10:00:00Z", &ms, &err), 0);
    assert_int_equal(ms, NOW_MS);
    assert_int_equal(cli_parse_rfc3339("2026-01-15T12:00:00.25+02:00", &ms, &err), 0);
    assert_int_equal(ms, NOW_MS + 250);
    assert_int_equal(cli_parse_rfc3339("2026-01-15t05:30:00-04:30", &ms, &err), 0);
    assert_int_equal(ms, NOW_MS);
    assert_int_equal(cli_parse_rfc3339("2026-01-15", &ms, &err), 0);
    assert_int_equal(ms, NOW_MS - 10 * 3600000);
    assert_int_equal(cli_parse_rfc3339("2024-02-29T00:00:00Z", &ms, &err), 0);
    assert_int_equal(cli_parse_rfc3339("2025-02-29T00:00:00Z", &ms, &err), CX_EINVAL);
    assert_int_equal(cli_parse_rfc3339("2026-13-01T00:00:00Z", &ms, &err), CX_EINVAL);
    assert_int_equal(cli_parse_rfc3339("2026-01-15T24:00:00Z", &ms, &err), CX_EINVAL);
    assert_int_equal(cli_parse_rfc3339("2026-01-15T10:00:00", &ms, &err), CX_EINVAL);
    assert_int_equal(cli_parse_rfc3339("2026-01-15T10:00:00Zjunk", &ms, &err), CX_EINVAL);
    assert_int_equal(cli_parse_rfc3339("1969-12-31T23:59:59Z", &ms, &err), CX_EINVAL);
    assert_int_equal(cli_parse_rfc3339("2026-1-15", &ms, &err), CX_EINVAL);
    assert_int_equal(cli_parse_time("now", NOW_MS, &ms, &err), 0);
    assert_int_equal(ms, NOW_MS);
    assert_int_equal(cli_parse_time("90s", NOW_MS, &ms, &err), 0);
    assert_int_equal(ms, NOW_MS - 90000);
}

/* ---- Exit codes, URLs, tokens --------------------------------------------------------------- */

static void test_exit_for_http_status(void **state)
{
    (void)state;
    assert_int_equal(cli_exit_for_http_status(200), CLI_EXIT_OK);
    assert_int_equal(cli_exit_for_http_status(201), CLI_EXIT_OK);
    assert_int_equal(cli_exit_for_http_status(401), CLI_EXIT_DENIED);
    assert_int_equal(cli_exit_for_http_status(403), CLI_EXIT_DENIED);
    assert_int_equal(cli_exit_for_http_status(400), CLI_EXIT_PROBLEM);
    assert_int_equal(cli_exit_for_http_status(404), CLI_EXIT_PROBLEM);
    assert_int_equal(cli_exit_for_http_status(409), CLI_EXIT_PROBLEM);
    assert_int_equal(cli_exit_for_http_status(500), CLI_EXIT_PROBLEM);
    assert_int_equal(cli_exit_for_http_status(503), CLI_EXIT_UNREACHABLE);
    assert_int_equal(cli_exit_for_http_status(0), CLI_EXIT_UNREACHABLE);
}

static void expect_url(const char *listen, bool tls, const char *expected)
{
    char *url = client_url_from_listen(listen, tls);
    if (!expected) {
        assert_null(url);
        return;
    }
    assert_non_null(url);
    assert_string_equal(url, expected);
    free(url);
}

static void test_url_from_listen(void **state)
{
    (void)state;
    expect_url("127.0.0.1:8080", false, "http://127.0.0.1:8080");
    expect_url("0.0.0.0:8443", true, "https://127.0.0.1:8443");
    expect_url("[::]:8080", false, "http://[::1]:8080");
    expect_url("[::1]:9000", false, "http://[::1]:9000");
    expect_url("[fe80::1]:80", true, "https://[fe80::1]:80");
    expect_url("localhost:80", false, "http://localhost:80");
    expect_url(":8080", false, NULL);           /* not an address config accepts either */
    expect_url("127.0.0.1:0", false, NULL);     /* any port: only the URL file knows */
    expect_url("127.0.0.1:70000", false, NULL);
    expect_url("127.0.0.1", false, NULL);
    expect_url("::1:8080", false, NULL);        /* IPv6 needs brackets */
    expect_url("[::1]8080", false, NULL);
    expect_url(NULL, false, NULL);

    char *url = client_normalize_url("127.0.0.1:8080/");
    assert_string_equal(url, "http://127.0.0.1:8080");
    free(url);
    url = client_normalize_url("https://caxton.example.com//");
    assert_string_equal(url, "https://caxton.example.com");
    free(url);
    url = client_url_escape("a b/c?d=é");
    assert_string_equal(url, "a%20b%2Fc%3Fd%3D%C3%A9");
    free(url);
}

static void test_token_resolve(void **state)
{
    (void)state;
    json_t *items = json_loads(
        "[{\"id\":\"tok_1\",\"name\":\"grafana\",\"revoked_at\":null},"
        " {\"id\":\"tok_2\",\"name\":\"ci\",\"revoked_at\":null},"
        " {\"id\":\"tok_3\",\"name\":\"ci\",\"revoked_at\":null},"
        " {\"id\":\"tok_4\",\"name\":\"old\",\"revoked_at\":\"2026-01-01T00:00:00Z\"},"
        " {\"id\":\"tok_5\",\"name\":\"grafana\",\"revoked_at\":\"2026-01-01T00:00:00Z\"}]",
        0, NULL);
    assert_non_null(items);
    const char *id = NULL;
    cx_error err;
    assert_int_equal(cli_token_resolve(items, "grafana", &id, &err), 0);
    assert_string_equal(id, "tok_1");
    assert_int_equal(cli_token_resolve(items, "tok_99", &id, &err), 0);
    assert_string_equal(id, "tok_99");
    assert_int_equal(cli_token_resolve(items, "ci", &id, &err), CX_EEXIST);
    assert_non_null(strstr(err.msg, "tok_2, tok_3"));
    assert_int_equal(cli_token_resolve(items, "old", &id, &err), CX_EINVAL);
    assert_non_null(strstr(err.msg, "already revoked"));
    assert_int_equal(cli_token_resolve(items, "grafna", &id, &err), CX_ENOTFOUND);
    assert_non_null(strstr(err.msg, "did you mean 'grafana'?"));
    json_decref(items);
}

/* ---- Output --------------------------------------------------------------------------------- */

static void test_table_output(void **state)
{
    (void)state;
    output_table *t = output_table_new(3, (const char *[]){"name", "status", "detail"});
    assert_non_null(t);
    assert_int_equal(output_table_row(t, "event_loop", "ok", "fine"), 0);
    assert_int_equal(output_table_row(t, "db", NULL, ""), 0);
    assert_int_equal(output_table_row(t, "\x1b[31mred", "wärn", "x"), 0);
    assert_int_equal(output_table_rows(t), 3);
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    output_table_print(t, out);
    fclose(out);
    assert_string_equal(text, "NAME        STATUS  DETAIL\n"
                              "event_loop  ok      fine\n"
                              "db          -\n"
                              " [31mred    wärn    x\n");
    free(text);
    output_table_free(t);

    char buf[32];
    output_format_uptime(12.5, buf, sizeof buf);
    assert_string_equal(buf, "12s");
    output_format_uptime(303, buf, sizeof buf);
    assert_string_equal(buf, "5m 3s");
    output_format_uptime(7500, buf, sizeof buf);
    assert_string_equal(buf, "2h 5m");
    output_format_uptime(3 * 86400 + 4 * 3600 + 9, buf, sizeof buf);
    assert_string_equal(buf, "3d 4h");
}

/* ---- The table itself ----------------------------------------------------------------------- */

static const cli_flag *find_any_flag(const char *name, const cli_command **owner)
{
    for (size_t i = 0; i < cli_builtin_table.command_count; i++) {
        const cli_command *cmd = &cli_builtin_table.commands[i];
        for (size_t j = 0; cmd->flags && cmd->flags[j]; j++)
            if (strcmp(cmd->flags[j]->name, name) == 0) {
                *owner = cmd;
                return cmd->flags[j];
            }
    }
    return NULL;
}

static void test_builtin_table_is_consistent(void **state)
{
    (void)state;
    const cli_table *t = &cli_builtin_table;
    for (size_t i = 0; i < t->group_count; i++) {
        const cli_command *cmds[64];
        size_t n = cli_group_commands(t, &t->groups[i], cmds, 64);
        assert_true(n > 0);
        if (cli_group_is_command(t, &t->groups[i]))
            assert_int_equal(n, 1); /* a group is one command or a set, never both */
        for (size_t j = i + 1; j < t->group_count; j++)
            assert_string_not_equal(t->groups[i].name, t->groups[j].name);
    }
    for (size_t i = 0; i < t->command_count; i++) {
        const cli_command *cmd = &t->commands[i];
        assert_non_null(cli_find_group(t, cmd->group));
        assert_non_null(cmd->handler);
        assert_non_null(cmd->summary);
        assert_true(cmd->min_args <= cmd->max_args);
        assert_true(cmd->max_args <= CLI_MAX_ARGS);
        assert_true(cmd->max_args == 0 || cmd->args != NULL);
        size_t count = 0;
        for (size_t j = 0; cmd->flags && cmd->flags[j]; j++, count++) {
            const cli_flag *f = cmd->flags[j];
            const cli_command *owner;
            /* A flag name means the same kind everywhere (the parser relies on it). */
            assert_int_equal(find_any_flag(f->name, &owner)->kind, f->kind);
            for (size_t g = 0; cli_global_flags[g]; g++)
                assert_string_not_equal(cli_global_flags[g]->name, f->name);
            assert_true(f->kind != CLI_CHOICE || f->choices != NULL);
            assert_false(str_has_prefix(f->name, "last-"));
        }
        assert_true(count <= CLI_MAX_FLAGS);
    }
}

static void test_completion_script(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb);
    assert_int_equal(cli_completion_bash(&cli_builtin_table, &sb), 0);
    assert_non_null(strstr(sb.data, "complete -F _caxton caxton"));
    assert_non_null(
        strstr(sb.data, "service) COMPREPLY=($(compgen -W \"start stop restart status\""));
    assert_non_null(
        strstr(sb.data, "\"service stop\") flags=\"$flags --log-dir --listen --emergency\""));
    assert_non_null(strstr(sb.data, "--role) COMPREPLY=($(compgen -W \"viewer operator admin\""));
    assert_non_null(strstr(sb.data, "--output) COMPREPLY=($(compgen -W \"table json\""));
    assert_non_null(strstr(sb.data, "--data-dir) COMPREPLY=($(compgen -d"));
    assert_non_null(strstr(sb.data, "--cacert) COMPREPLY=($(compgen -f"));
    assert_non_null(strstr(sb.data, "\"token list\") flags=\"$flags --cacert\""));
    strbuf_free(&sb);

    strbuf_init(&sb);
    const cli_command *create = cli_find_command(&cli_builtin_table, "token", "create");
    assert_int_equal(cli_usage_line(create, &sb), 0);
    assert_string_equal(sb.data, "caxton token create --role ROLE --name NAME [--cacert FILE]");
    strbuf_free(&sb);
    strbuf_init(&sb);
    assert_int_equal(cli_usage_line(&window_commands[0], &sb), 0);
    assert_string_equal(
        sb.data, "caxton logs [--level LEVEL] [--last-<duration> | --since TIME --until TIME]");
    strbuf_free(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_flag_forms),
        cmocka_unit_test(test_command_defaults),
        cmocka_unit_test(test_unknown_flag_suggestion),
        cmocka_unit_test(test_missing_and_bad_values),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_group_and_command_suggestions),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_cacert_flag),
        cmocka_unit_test(test_window_last),
        cmocka_unit_test(test_window_since_until),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_exit_for_http_status),
        cmocka_unit_test(test_url_from_listen),
        cmocka_unit_test(test_token_resolve),
        cmocka_unit_test(test_table_output),
        cmocka_unit_test(test_builtin_table_is_consistent),
        cmocka_unit_test(test_completion_script),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
