/* Unit tests for the command line's pure logic: parsing against the command
 * table (both flag forms, suggestions, missing values and arguments, the
 * guide's agent and conversation commands), time windows, exit codes from
 * HTTP statuses, URL derivation, token name resolution, message bodies,
 * scaling values, agent error states, diagnostics and tables, and the
 * consistency of the built-in table itself. */
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

/* The agent, conversation, message, capability and audit-log commands that
 * ask the server. */
static bool talks_to_server(cli_handler h)
{
    static const cli_handler server[] = {
        cmd_config_audit_log, cmd_agents_list, cmd_agents_status, cmd_agents_health_summary,
        cmd_agents_suspend, cmd_agents_resume, cmd_agents_logs, cmd_agents_scale,
        cmd_agents_reload, cmd_agents_reload_status, cmd_agents_deploy, cmd_agents_update,
        cmd_agents_remove, cmd_conversations_queue_status, cmd_conversations_drain_queue,
        cmd_conversations_list, cmd_conversations_show, cmd_conversations_dead_letters,
        cmd_messages_send, cmd_capabilities_list, cmd_capabilities_check_conflicts,
        cmd_agents_test_all, cmd_agents_performance_summary, cmd_tools_status,
        cmd_tools_reconnect, cmd_tools_test_connectivity, cmd_agents_reconnect_memory,
        cmd_memory_op, cmd_memory_search, cmd_memory_show, cmd_memory_store,
        cmd_memory_relate, cmd_memory_delete, cmd_memory_graph, cmd_memory_job,
    };
    for (size_t i = 0; i < sizeof server / sizeof server[0]; i++)
        if (server[i] == h)
            return true;
    return false;
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
                        cmd->handler == cmd_service_status || talks_to_server(cmd->handler);
        bool has = false;
        for (size_t j = 0; cmd->flags && cmd->flags[j]; j++)
            if (strcmp(cmd->flags[j]->name, "cacert") == 0) {
                has = true;
                assert_int_equal(cmd->flags[j]->kind, CLI_FILE);
            }
        assert_int_equal(has, connects);
        with += has;
    }
    assert_int_equal(with, 35 + 1 + 27 + 7); /* + agents reconnect-memory, memory ops, entities */
}

/* ---- Agents, conversations, messages, capabilities ------------------------------------------ */

/* Every command and flag the troubleshooting guide writes parses as written. */
static void test_guide_commands_parse(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(PARSE(&inv, &err, "agents", "health-summary", "--critical-only"),
                     CLI_PARSE_RUN);
    assert_true(cli_flag_set(&inv, "critical-only"));
    assert_int_equal(PARSE(&inv, &err, "agents", "validate-all", "--failed-only"), CLI_PARSE_RUN);
    assert_true(cli_flag_set(&inv, "failed-only"));
    assert_true(inv.command->options & CLI_CMD_OFFLINE);
    assert_int_equal(PARSE(&inv, &err, "config", "audit-log", "--last-1h"), CLI_PARSE_RUN);
    assert_int_equal(inv.window.since_ms, NOW_MS - 3600000);
    assert_int_equal(PARSE(&inv, &err, "agents", "status", "--error-states-only"), CLI_PARSE_RUN);
    assert_int_equal(inv.arg_count, 0);
    assert_int_equal(PARSE(&inv, &err, "agents", "status", "agent-name", "--detailed"),
                     CLI_PARSE_RUN);
    assert_string_equal(inv.args[0], "agent-name");
    assert_true(cli_flag_set(&inv, "detailed"));
    assert_int_equal(PARSE(&inv, &err, "conversations", "queue-status", "agent-name"),
                     CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "agents", "logs", "agent-name", "--level", "error",
                           "--last-10min"),
                     CLI_PARSE_RUN);
    assert_string_equal(cli_flag_value(&inv, "level"), "error");
    assert_true(inv.window.set);
    assert_int_equal(inv.window.since_ms, NOW_MS - 600000);
    assert_int_equal(PARSE(&inv, &err, "conversations", "drain-queue", "agent-name"),
                     CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "agents", "scale", "agent-name", "--instances", "+1"),
                     CLI_PARSE_RUN);
    assert_string_equal(cli_flag_value(&inv, "instances"), "+1");
    assert_int_equal(PARSE(&inv, &err, "agents", "reload-status", "agent-name"), CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "agents", "validate", "config-file.md", "--detailed"),
                     CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "agents", "validate", "config-file.md",
                           "--fix-suggestions"),
                     CLI_PARSE_RUN);
    assert_true(cli_flag_set(&inv, "fix-suggestions"));
    assert_int_equal(PARSE(&inv, &err, "capabilities", "check-conflicts", "agent-name"),
                     CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "agents", "reload", "agent-name", "--force",
                           "--fallback-on-error"),
                     CLI_PARSE_RUN);
    assert_true(cli_flag_set(&inv, "force"));
    assert_true(cli_flag_set(&inv, "fallback-on-error"));
    assert_int_equal(inv.timeout_ms, 30000);
}

static void test_agents_parsing(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    /* "-1" is a value, not a flag. */
    assert_int_equal(PARSE(&inv, &err, "agents", "scale", "x", "--instances", "-1"),
                     CLI_PARSE_RUN);
    assert_string_equal(cli_flag_value(&inv, "instances"), "-1");
    assert_int_equal(PARSE(&inv, &err, "agents", "scale", "x", "--instances=3"), CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "agents", "scale", "x"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "missing --instances +N|-N|N for 'agents scale'"));
    assert_true(inv.error_shows_usage);
    assert_int_equal(PARSE(&inv, &err, "agents", "scale", "--instances", "+1"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "missing NAME"));
    assert_int_equal(PARSE(&inv, &err, "agents", "status", "a", "b"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "unexpected argument 'b'"));
    assert_int_equal(PARSE(&inv, &err, "agents", "logs", "x", "--level", "eror"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "did you mean 'error'?"));
    assert_int_equal(PARSE(&inv, &err, "agents", "logs", "x", "--since", "2h", "--until", "1h",
                           "--limit", "20"),
                     CLI_PARSE_RUN);
    assert_int_equal(inv.window.since_ms, NOW_MS - 7200000);
    assert_int_equal(inv.window.until_ms, NOW_MS - 3600000);
    assert_int_equal(PARSE(&inv, &err, "agents", "logs", "x", "--last-soon"), CLI_PARSE_ERROR);
    assert_int_equal(PARSE(&inv, &err, "agents", "list", "--state", "actve"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "did you mean 'active'?"));
    assert_int_equal(PARSE(&inv, &err, "agents", "list", "--last-1h"), CLI_PARSE_ERROR);
    assert_int_equal(PARSE(&inv, &err, "agents", "validate-all", "--failed-onyl"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "did you mean '--failed-only'?"));
    assert_int_equal(PARSE(&inv, &err, "agents", "validate"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "missing FILE..."));
    assert_int_equal(PARSE(&inv, &err, "agents", "validate", "a.md", "b.md", "c.md"),
                     CLI_PARSE_RUN);
    assert_int_equal(inv.arg_count, 3);
    /* validate is offline: no --cacert; deploy talks to the server. */
    assert_int_equal(PARSE(&inv, &err, "agents", "validate", "a.md", "--cacert", "c.pem"),
                     CLI_PARSE_ERROR);
    assert_int_equal(PARSE(&inv, &err, "agents", "deploy", "a.md", "--cacert", "c.pem"),
                     CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "agents", "reload-stauts", "x"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "did you mean 'reload-status'?"));
    assert_int_equal(PARSE(&inv, &err, "agent", "list"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "did you mean 'agents'?"));
    assert_int_equal(PARSE(&inv, &err, "conversations", "list", "--state", "timed-out",
                           "--agent", "x", "--limit", "5"),
                     CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "conversations", "list", "--state", "suspended"),
                     CLI_PARSE_ERROR);
    assert_int_equal(PARSE(&inv, &err, "conversations", "show"), CLI_PARSE_ERROR);
    assert_int_equal(PARSE(&inv, &err, "conversations", "dead-letters", "--requeue", "dl-1"),
                     CLI_PARSE_RUN);
    assert_string_equal(cli_flag_value(&inv, "requeue"), "dl-1");
    assert_int_equal(PARSE(&inv, &err, "conversations", "drain-queue", "x", "--requeue-to"),
                     CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "'--requeue-to' needs a value"));
}

static void test_flag_count(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    uint64_t n;
    assert_int_equal(PARSE(&inv, &err, "conversations", "list"), CLI_PARSE_RUN);
    assert_int_equal(cli_flag_count(&inv, "limit", 50, 500, &n), CLI_EXIT_OK);
    assert_int_equal(n, 50);
    assert_int_equal(PARSE(&inv, &err, "conversations", "list", "--limit", "500"), CLI_PARSE_RUN);
    assert_int_equal(cli_flag_count(&inv, "limit", 50, 500, &n), CLI_EXIT_OK);
    assert_int_equal(n, 500);
    const char *bad[] = {"0", "501", "-3", "+3", "1e3", "12abc", "99999999999999999999999", " 7"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--limit=%s", bad[i]);
        assert_int_equal(PARSE(&inv, &err, "conversations", "list", flag), CLI_PARSE_RUN);
        assert_int_equal(cli_flag_count(&inv, "limit", 50, 500, &n), CLI_EXIT_USAGE);
    }
}

static void expect_instances(const char *text, const char *as_string, json_int_t as_int)
{
    cx_error err;
    json_t *v = cli_scale_instances(text, &err);
    if (!as_string && !as_int) {
        assert_null(v);
        assert_int_equal(err.code, CX_EINVAL);
        return;
    }
    assert_non_null(v);
    if (as_string)
        assert_string_equal(json_string_value(v), as_string);
    else
        assert_int_equal(json_integer_value(v), as_int);
    json_decref(v);
}

static void test_scale_instances(void **state)
{
    (void)state;
    expect_instances("+1", "+1", 0);
    expect_instances("-1", "-1", 0);
    expect_instances("+12", "+12", 0);
    expect_instances("3", NULL, 3);
    expect_instances("64", NULL, 64);
    expect_instances("0", NULL, 0);
    expect_instances("65", NULL, 0);
    expect_instances("+0", NULL, 0);
    expect_instances("+65", NULL, 0);
    expect_instances("-65", NULL, 0);
    expect_instances("+50%", NULL, 0);
    expect_instances("+1MB", NULL, 0);
    expect_instances("many", NULL, 0);
    expect_instances("", NULL, 0);
    expect_instances("99999999999999999999999", NULL, 0);
}

static json_t *message_from(cx_error *err, ...)
{
    char *argv[32] = {"caxton", "messages", "send"};
    int argc = 3;
    va_list ap;
    va_start(ap, err);
    for (char *word; (word = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = word;
    va_end(ap);
    cli_invocation inv;
    assert_int_equal(cli_parse(&cli_builtin_table, argc, argv, no_env, NOW_MS, &inv, err),
                     CLI_PARSE_RUN);
    return cli_message_body(&inv, err);
}

static void test_message_body(void **state)
{
    (void)state;
    cx_error err;
    cli_invocation inv;
    /* --content is required by the table; the target by cli_message_body. */
    assert_int_equal(PARSE(&inv, &err, "messages", "send", "--to", "a"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "missing --content TEXT"));
    assert_null(message_from(&err, "--content", "hi", NULL));
    assert_non_null(strstr(err.msg, "exactly one of --to AGENT and --capability CAP"));
    assert_null(message_from(&err, "--to", "a", "--capability", "b", "--content", "hi", NULL));
    assert_int_equal(err.code, CX_EINVAL);

    json_t *body = message_from(&err, "--to", "invoice-checker", "--content", "check 42", NULL);
    assert_non_null(body);
    assert_string_equal(json_string_value(json_object_get(body, "performative")), "request");
    assert_string_equal(json_string_value(json_object_get(body, "receiver")), "invoice-checker");
    assert_string_equal(json_string_value(json_object_get(body, "content")), "check 42");
    assert_null(json_object_get(body, "capability"));
    assert_null(json_object_get(body, "conversation_id"));
    json_decref(body);

    /* Without --json-content, JSON-looking text is still a string. */
    body = message_from(&err, "--capability", "po-lookup", "--content", "{\"po\":7}", NULL);
    assert_non_null(body);
    assert_string_equal(json_string_value(json_object_get(body, "content")), "{\"po\":7}");
    assert_string_equal(json_string_value(json_object_get(body, "capability")), "po-lookup");
    json_decref(body);

    body = message_from(&err, "--capability", "po-lookup", "--content", "{\"po\":7}",
                        "--json-content", "--performative", "query-ref", "--conversation", "c-1",
                        "--in-reply-to", "r-1", "--wait", "10s", NULL);
    assert_non_null(body);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(body, "content"), "po")),
                     7);
    assert_string_equal(json_string_value(json_object_get(body, "performative")), "query-ref");
    assert_string_equal(json_string_value(json_object_get(body, "conversation_id")), "c-1");
    assert_string_equal(json_string_value(json_object_get(body, "in_reply_to")), "r-1");
    json_decref(body);
    body = message_from(&err, "--to", "a", "--content", "42", "--json-content", NULL);
    assert_true(json_is_integer(json_object_get(body, "content")));
    json_decref(body);

    assert_null(message_from(&err, "--to", "a", "--content", "{oops", "--json-content", NULL));
    assert_non_null(strstr(err.msg, "--content is not valid JSON"));
    assert_null(message_from(&err, "--to", "a", "--content", "{\"a\":1,\"a\":2}",
                             "--json-content", NULL));
    assert_null(message_from(&err, "--to", "a", "--content", "bad \xff utf-8", NULL));
    assert_non_null(strstr(err.msg, "not valid UTF-8"));

    assert_int_equal(PARSE(&inv, &err, "messages", "send", "--to", "a", "--content", "x",
                           "--performative", "reqest"),
                     CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "did you mean 'request'?"));
    assert_int_equal(PARSE(&inv, &err, "messages", "send", "--to", "a", "--content", "x",
                           "--wait", "soon"),
                     CLI_PARSE_ERROR);
    assert_int_equal(PARSE(&inv, &err, "messages", "sned"), CLI_PARSE_ERROR);
    assert_non_null(strstr(err.msg, "did you mean 'send'?"));
}

static void expect_error_state(const char *agent_json, const char *why_part)
{
    json_t *agent = json_loads(agent_json, 0, NULL);
    assert_non_null(agent);
    char why[256];
    bool bad = cli_agent_error_state(agent, why, sizeof why);
    if (why_part) {
        assert_true(bad);
        assert_non_null(strstr(why, why_part));
    } else {
        assert_false(bad);
        assert_string_equal(why, "");
    }
    json_decref(agent);
}

static void test_agent_error_state(void **state)
{
    (void)state;
    expect_error_state("{\"state\":\"active\",\"reload_status\":\"ok\","
                       "\"queue\":{\"depth\":5}}",
                       NULL);
    expect_error_state("{\"state\":\"suspended\",\"queue\":{\"depth\":0}}", NULL);
    expect_error_state("{\"state\":\"loading\"}", NULL);
    expect_error_state("{\"state\":\"stopped\"}", NULL);
    expect_error_state("{}", NULL);
    expect_error_state("{\"state\":\"failed\",\"state_reason\":\"module trap\"}",
                       "failed: module trap");
    expect_error_state("{\"state\":\"failed\",\"state_reason\":null}", "failed");
    expect_error_state("{\"state\":\"reloading\"}", "reloading");
    expect_error_state("{\"state\":\"draining\",\"queue\":{\"depth\":7}}",
                       "draining, 7 queued");
    expect_error_state("{\"state\":\"suspended\",\"queue\":{\"depth\":3}}",
                       "suspended with 3 messages queued");
    expect_error_state("{\"state\":\"active\",\"reload_status\":\"failed\","
                       "\"version\":\"1.2.0\"}",
                       "last reload failed, running version 1.2.0");
    expect_error_state("{\"state\":\"failed\",\"reload_status\":\"failed\"}",
                       "its last reload failed");
    /* Wrong types are not trusted: no crash, no error state. */
    expect_error_state("{\"state\":7,\"queue\":\"full\",\"reload_status\":[]}", NULL);
}

static void test_print_diagnostics(void **state)
{
    (void)state;
    json_t *diags = json_loads(
        "[{\"severity\":\"error\",\"line\":4,\"column\":3,\"field\":\"llm.temperature\","
        "\"message\":\"expected 0 to 2, got 5\",\"hint\":\"use a value from 0 to 2\"},"
        " {\"severity\":\"warning\",\"line\":0,\"column\":0,\"field\":\"\","
        "\"message\":\"evil\\u001b[2J\\nline\",\"hint\":null},"
        " {\"line\":\"x\"}]",
        0, NULL);
    assert_non_null(diags);
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    cli_print_diagnostics(out, "agents/x.md", diags);
    fclose(out);
    assert_string_equal(text, "agents/x.md:4:3: error: llm.temperature: expected 0 to 2, got 5\n"
                              "  hint: use a value from 0 to 2\n"
                              "agents/x.md: warning: evil [2J line\n"
                              "agents/x.md: error: ?\n");
    free(text);
    json_decref(diags);
}

static void test_api_paths(void **state)
{
    (void)state;
    char *path = cli_api_path("/api/v1/agents/", "../../tokens?x=1", "/reload");
    assert_string_equal(path, "/api/v1/agents/..%2F..%2Ftokens%3Fx%3D1/reload");
    free(path);
    path = cli_api_path("/api/v1/agents/", "invoice-checker", NULL);
    assert_string_equal(path, "/api/v1/agents/invoice-checker");
    free(path);
    strbuf sb;
    strbuf_init(&sb);
    assert_int_equal(strbuf_appends(&sb, "/api/v1/conversations"), 0);
    assert_int_equal(cli_query_add(&sb, "agent", NULL), 0);
    assert_int_equal(cli_query_add(&sb, "agent", "a&b=c"), 0);
    assert_int_equal(cli_query_add(&sb, "state", "timed-out"), 0);
    assert_string_equal(sb.data, "/api/v1/conversations?agent=a%26b%3Dc&state=timed-out");
    strbuf_free(&sb);

    json_t *doc = json_loads("{\"a\":[\"x\",2,null,{\"k\":1}],\"n\":3.9,\"s\":\"7\"}", 0,
                             NULL);
    char *joined = output_join(json_object_get(doc, "a"));
    assert_string_equal(joined, "x, 2, -, {\"k\":1}");
    free(joined);
    joined = output_join(json_object_get(doc, "missing"));
    assert_string_equal(joined, "-");
    free(joined);
    assert_int_equal(output_int(doc, "n"), 3);
    assert_int_equal(output_int(doc, "s"), 0);
    assert_int_equal(output_int(NULL, "n"), 0);
    json_decref(doc);

    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    output_text(out, "one\r\n\ttwo\x1b[0m\n\nthree", "> ");
    output_line(out, "a\nb %s", "c\ad");
    fclose(out);
    assert_string_equal(text, "> one\n> \ttwo [0m\n> \n> three\na b c d\n");
    free(text);
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
    assert_non_null(strstr(sb.data, "agents) COMPREPLY=($(compgen -W \"list status test-all "
                                    "performance-summary health-summary "
                                    "suspend resume logs scale reload reload-status deploy "
                                    "update remove validate validate-all "
                                    "reconnect-memory\""));
    assert_non_null(strstr(sb.data, "conversations) COMPREPLY=($(compgen -W \"queue-status "
                                    "drain-queue list show dead-letters\""));
    assert_non_null(strstr(sb.data, "messages) COMPREPLY=($(compgen -W \"send\""));
    assert_non_null(strstr(sb.data, "capabilities) COMPREPLY=($(compgen -W \"list "
                                    "check-conflicts\""));
    assert_non_null(strstr(sb.data, "config) COMPREPLY=($(compgen -W \"validate show "
                                    "audit-log\""));
    assert_non_null(strstr(sb.data, "--level) COMPREPLY=($(compgen -W \"debug info warn error\""));
    assert_non_null(strstr(sb.data, "\"agents logs\") flags=\"$flags --level --limit --cacert "
                                    "--last-5min --last-1h --last-24h --since --until\""));
    assert_non_null(strstr(sb.data, "\"agents validate\") COMPREPLY=($(compgen -f"));
    assert_non_null(strstr(sb.data, " --instances "));
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
        cmocka_unit_test(test_guide_commands_parse),
        cmocka_unit_test(test_agents_parsing),
        cmocka_unit_test(test_flag_count),
        cmocka_unit_test(test_scale_instances),
        cmocka_unit_test(test_message_body),
        cmocka_unit_test(test_agent_error_state),
        cmocka_unit_test(test_print_diagnostics),
        cmocka_unit_test(test_api_paths),
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
