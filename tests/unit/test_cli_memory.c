/* Unit tests for `caxton memory ...`: every operation of the guide parses as
 * written and its flags become the operation's JSON arguments (dashes to
 * underscores, switches true, values strings, file names absolute, windows
 * as epoch ms), wrong combinations are usage errors, unknown flags are
 * refused, and repeated --observation flags are all kept. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/cli_internal.h"

#define NOW_MS UINT64_C(1768471200000) /* 2026-01-15T10:00:00Z */
#define HOUR_MS UINT64_C(3600000)

static char *no_env[] = {NULL};
static char *argv_store[40];

/* Parses "caxton memory ..." words (NULL-terminated) against the built-in table. */
static cli_parse_result parse_words(cli_invocation *inv, cx_error *err, ...)
{
    int argc = 0;
    argv_store[argc++] = "caxton";
    va_list ap;
    va_start(ap, err);
    for (char *word; (word = va_arg(ap, char *)) != NULL && argc < 39;)
        argv_store[argc++] = word;
    va_end(ap);
    argv_store[argc] = NULL;
    return cli_parse(&cli_builtin_table, argc, argv_store, no_env, NOW_MS, inv, err);
}

#define PARSE(inv, err, ...) parse_words(inv, err, __VA_ARGS__, NULL)

/* The arguments of a command line that must parse and map, compared with
 * the expected JSON text. */
static void expect_args(const char *expected, cli_parse_result parsed, cli_invocation *inv,
                        cx_error *err)
{
    if (parsed != CLI_PARSE_RUN)
        fail_msg("parse failed: %s", err->msg);
    json_t *args = cli_memory_args(inv, err);
    if (!args)
        fail_msg("mapping failed: %s", err->msg);
    json_t *want = json_loads(expected, 0, NULL);
    assert_non_null(want);
    if (!json_equal(args, want)) {
        char *got = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("%s: got %s, expected %s", inv->command->name, got, expected);
    }
    json_decref(want);
    json_decref(args);
}

#define EXPECT(expected, ...)                                                                      \
    do {                                                                                           \
        cli_invocation inv_;                                                                       \
        cx_error err_;                                                                             \
        cli_parse_result r_ = PARSE(&inv_, &err_, "memory", __VA_ARGS__);                          \
        expect_args(expected, r_, &inv_, &err_);                                                   \
    } while (0)

/* A line that parses but whose flags do not go together: mapping refuses it. */
#define EXPECT_REFUSED(part, ...)                                                                  \
    do {                                                                                           \
        cli_invocation inv_;                                                                       \
        cx_error err_;                                                                             \
        assert_int_equal(PARSE(&inv_, &err_, "memory", __VA_ARGS__), CLI_PARSE_RUN);               \
        json_t *a_ = cli_memory_args(&inv_, &err_);                                                \
        if (a_)                                                                                    \
            fail_msg("%s: expected a usage error", inv_.command->name);                            \
        assert_int_equal(err_.code, CX_EINVAL);                                                    \
        if (!strstr(err_.msg, part))                                                               \
            fail_msg("'%s' does not say '%s'", err_.msg, part);                                    \
    } while (0)

/* A line the parser refuses. */
#define EXPECT_PARSE_ERROR(part, ...)                                                              \
    do {                                                                                           \
        cli_invocation inv_;                                                                       \
        cx_error err_;                                                                             \
        assert_int_equal(PARSE(&inv_, &err_, "memory", __VA_ARGS__), CLI_PARSE_ERROR);             \
        if (!strstr(err_.msg, part))                                                               \
            fail_msg("'%s' does not say '%s'", err_.msg, part);                                    \
    } while (0)

static char *cwd_join(const char *name)
{
    static char buf[PATH_MAX + 64];
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(buf, sizeof buf, "%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/", name);
    return buf;
}

/* ---- Every operation of the guide, as written ----------------------------------------------- */

static void test_diagnostics(void **state)
{
    (void)state;
    EXPECT("{\"embedded\": true}", "health-check", "--embedded");
    EXPECT("{\"quick\": true, \"agent\": \"bob\"}", "health-check", "bob", "--quick");
    EXPECT("{}", "health-check");
    EXPECT("{\"full\": true}", "integrity-check", "--full");
    EXPECT("{\"quick\": true}", "integrity-check", "--quick");
    EXPECT("{\"embedded\": true}", "wal-status", "--embedded");
    EXPECT("{\"export_report\": true}", "corruption-analysis", "--export-report");
    EXPECT("{}", "corruption-analysis");
    EXPECT("{\"detailed\": true, \"by_scope\": true}", "usage", "--by-scope", "--detailed");
    EXPECT("{\"embedded\": true, \"breakdown\": true}", "resource-usage", "--embedded",
           "--breakdown");
    EXPECT("{\"threshold\": \"5s\"}", "slow-queries", "--threshold", "5s");
    EXPECT("{\"optimize_suggestions\": true}", "analyze-queries", "--optimize-suggestions");
    EXPECT("{\"fragmentation\": true}", "index-analysis", "--fragmentation");
    EXPECT("{\"size\": \"+512MB\"}", "adjust-cache", "--size", "+512MB");
    EXPECT("{\"size\": \"+512MB\", \"embedded\": true}", "adjust-cache", "--size=+512MB",
           "--embedded");
    EXPECT("{\"agent\": \"bob\"}", "connection-test", "bob");
}

static void test_recovery_and_backups(void **state)
{
    (void)state;
    EXPECT("{\"from_wal\": true, \"backup_first\": true}", "recover", "--from-wal",
           "--backup-first");
    EXPECT("{\"from_backup\": true, \"verify\": true}", "recover", "--from-backup", "--verify");
    EXPECT("{\"from_backup\": \"latest\", \"verify_integrity\": true}", "restore", "--from-backup",
           "latest", "--verify-integrity");
    EXPECT("{\"from_backup\": \"/srv/b/memory-1.db\"}", "restore", "--from-backup",
           "/srv/b/memory-1.db");
    EXPECT("{}", "emergency-backup");
    EXPECT("{}", "backup");
    EXPECT("{\"label\": \"before upgrade\"}", "backup", "--label", "before upgrade");
    EXPECT("{\"empty\": true}", "reinitialize", "--empty");
    EXPECT("{\"empty\": true, \"yes\": true}", "reinitialize", "--empty", "--yes");
    EXPECT("{\"json\": \"/srv/export/x.json\"}", "export", "--json", "/srv/export/x.json");
    EXPECT("{\"file\": \"/srv/export/x.json\", \"validate\": true}", "import", "/srv/export/x.json",
           "--validate");
    EXPECT("{\"file\": \"/srv/export/x.json\", \"dry_run\": true}", "import", "/srv/export/x.json",
           "--dry-run");
    EXPECT("{\"file\": \"/srv/export/x.json\", \"merge\": \"update\"}", "import", "/srv/export/x.json",
           "--merge", "update");
}

static void test_maintenance(void **state)
{
    (void)state;
    EXPECT("{}", "reindex");
    EXPECT("{\"full\": true, \"agent\": \"bob\", \"scope_aware\": true, \"optimize\": true, "
           "\"embedded\": true}",
           "reindex", "--full", "--agent", "bob", "--scope-aware", "--optimize", "--embedded");
    EXPECT("{\"vacuum\": true}", "cleanup", "--vacuum");
    EXPECT("{\"compact\": true, \"embedded\": true}", "cleanup", "--compact", "--embedded");
    EXPECT("{\"scope_conflicts\": true, \"agent\": \"bob\"}", "cleanup", "--scope-conflicts",
           "--agent", "bob");
    EXPECT("{\"indexes\": true}", "optimize", "--indexes");
    EXPECT("{\"indexes\": true, \"background\": true}", "optimize", "--indexes", "--background");
    EXPECT("{\"auto_compact\": true, \"background\": true}", "maintenance", "--auto-compact",
           "--background");
}

static void test_scopes_and_windows(void **state)
{
    (void)state;
    EXPECT("{\"all_agents\": true}", "scope-status", "--all-agents");
    EXPECT("{\"agent\": \"bob\"}", "scope-status", "bob");
    EXPECT("{\"agent\": \"bob\"}", "permissions-check", "bob");
    EXPECT("{\"agent\": \"bob\", \"scope\": \"agent\"}", "scope-reset", "bob", "--scope", "agent");
    /* the guide's form: the agent keeps its own memory.workspace */
    EXPECT("{\"agent\": \"bob\", \"scope\": \"workspace\"}", "scope-reset", "bob", "--scope",
           "workspace");
    EXPECT("{\"agent\": \"bob\", \"scope\": \"workspace\", \"workspace\": \"finance\"}",
           "scope-reset", "bob", "--scope", "workspace", "--workspace", "finance");

    char expected[128];
    snprintf(expected, sizeof expected, "{\"since\": %llu}",
             (unsigned long long)(NOW_MS - 24 * HOUR_MS));
    EXPECT(expected, "violations", "--last-24h");
    snprintf(expected, sizeof expected, "{\"since\": %llu, \"agent\": \"bob\"}",
             (unsigned long long)(NOW_MS - HOUR_MS));
    EXPECT(expected, "violations", "--last-1h", "--agent", "bob");
    snprintf(expected, sizeof expected, "{\"since\": %llu}",
             (unsigned long long)(NOW_MS - 2 * HOUR_MS));
    EXPECT(expected, "violations", "--since", "2h");
    EXPECT("{\"since\": 1768435200000}", "violations", "--since", "2026-01-15");
    EXPECT("{}", "violations");
    snprintf(expected, sizeof expected, "{\"since\": %llu, \"detailed\": true}",
             (unsigned long long)(NOW_MS - HOUR_MS));
    EXPECT(expected, "performance-metrics", "--detailed", "--last-1h");
}

/* ---- Paths, global and excluded flags ------------------------------------------------------- */

static void test_paths_become_absolute(void **state)
{
    (void)state;
    char expected[PATH_MAX + 128];
    snprintf(expected, sizeof expected, "{\"json\": \"%s\"}", cwd_join("out/export.json"));
    EXPECT(expected, "export", "--json", "out/export.json");
    EXPECT(expected, "export", "--json", "./out/export.json");
    snprintf(expected, sizeof expected, "{\"file\": \"%s\", \"validate\": true}",
             cwd_join("in.json"));
    EXPECT(expected, "import", "in.json", "--validate");
    snprintf(expected, sizeof expected, "{\"from_backup\": \"%s\"}", cwd_join("b.db"));
    EXPECT(expected, "restore", "--from-backup", "b.db");
    snprintf(expected, sizeof expected, "{\"export_report\": \"%s\"}", cwd_join("report.json"));
    EXPECT(expected, "corruption-analysis", "--export-report", "report.json");

    char *abs = cli_absolute_path("/a/b");
    assert_string_equal(abs, "/a/b");
    free(abs);
    abs = cli_absolute_path("x");
    assert_string_equal(abs, cwd_join("x"));
    free(abs);
    abs = cli_absolute_path(".");
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_string_equal(abs, cwd);
    free(abs);
}

static void test_left_out_flags(void **state)
{
    (void)state;
    /* --cacert, --offline, --json (the output format) and the global flags
     * are the command line's, not the operation's. */
    EXPECT("{\"full\": true}", "integrity-check", "--full", "--offline", "--cacert", "ca.pem",
           "--json", "--timeout", "5s", "--data-dir", "/var/lib/caxton-test", "--output", "json");
    cli_invocation inv;
    cx_error err;
    assert_int_equal(PARSE(&inv, &err, "memory", "backup", "--offline"), CLI_PARSE_RUN);
    assert_true(cli_flag_set(&inv, "offline"));
    assert_int_equal(inv.timeout_ms, 600000); /* a backup may take a while */
}

/* ---- Usage errors ---------------------------------------------------------------------------- */

static void test_refused(void **state)
{
    (void)state;
    EXPECT_REFUSED("--full or --quick", "integrity-check");
    EXPECT_REFUSED("--full or --quick", "integrity-check", "--full", "--quick");
    EXPECT_REFUSED("--from-wal", "recover");
    EXPECT_REFUSED("--from-wal", "recover", "--from-wal", "--from-backup");
    EXPECT_REFUSED("--vacuum", "cleanup", "--agent", "bob");
    EXPECT_REFUSED("AGENT or --all-agents", "scope-status");
    EXPECT_REFUSED("AGENT or --all-agents", "scope-status", "bob", "--all-agents");
    EXPECT_REFUSED("did you mean 'workspace'", "scope-reset", "bob", "--scope", "workspce");
    EXPECT_REFUSED("--scope workspace only", "scope-reset", "bob", "--scope", "global",
                   "--workspace", "w");
    EXPECT_REFUSED("--size", "adjust-cache", "--size", "lots");
    EXPECT_REFUSED("--export-report", "corruption-analysis", "report.json");
    EXPECT_REFUSED("not --until", "violations", "--since", "2h", "--until", "1h");
}

static void test_parse_errors(void **state)
{
    (void)state;
    EXPECT_PARSE_ERROR("unknown flag '--bogus' for 'memory backup'", "backup", "--bogus");
    EXPECT_PARSE_ERROR("did you mean '--verify'", "recover", "--from-backup", "--verfy");
    EXPECT_PARSE_ERROR("unknown flag '--last-1h'", "backup", "--last-1h");
    EXPECT_PARSE_ERROR("missing --from-backup for 'memory restore'", "restore", "latest");
    EXPECT_PARSE_ERROR("missing latest|FILE", "restore", "--from-backup");
    EXPECT_PARSE_ERROR("missing --empty for", "reinitialize");
    EXPECT_PARSE_ERROR("missing --json for", "export", "x.json");
    EXPECT_PARSE_ERROR("missing --indexes", "optimize");
    EXPECT_PARSE_ERROR("missing --auto-compact", "maintenance");
    EXPECT_PARSE_ERROR("missing --size", "adjust-cache");
    EXPECT_PARSE_ERROR("invalid value 'replace' for --merge", "import", "x.json", "--merge",
                       "replace");
    EXPECT_PARSE_ERROR("invalid --threshold", "slow-queries", "--threshold", "soon");
    EXPECT_PARSE_ERROR("missing AGENT", "permissions-check");
    EXPECT_PARSE_ERROR("unexpected argument", "usage", "extra");
    EXPECT_PARSE_ERROR("did you mean 'health-check'", "helth-check");
    EXPECT_PARSE_ERROR("takes no value", "backup", "--offline=yes");
}

/* ---- Entity commands, repeated flags, the table ---------------------------------------------- */

static void test_entity_commands(void **state)
{
    (void)state;
    cli_invocation inv;
    cx_error err;
    assert_int_equal(PARSE(&inv, &err, "memory", "store", "--scope", "global", "--name", "acme",
                           "--observation", "pays in 30 days", "--type", "company",
                           "--observation=based in Lyon", "--observation", "third"),
                     CLI_PARSE_RUN);
    const char *values[8];
    assert_int_equal(cli_flag_values(&inv, "observation", values, 8), 3);
    assert_string_equal(values[0], "pays in 30 days");
    assert_string_equal(values[1], "based in Lyon");
    assert_string_equal(values[2], "third");
    assert_int_equal(cli_flag_values(&inv, "observation", values, 2), 2);
    assert_int_equal(cli_flag_values(&inv, "type", values, 8), 1);
    assert_string_equal(values[0], "company");
    assert_int_equal(cli_flag_values(&inv, "confidence", values, 8), 0);

    assert_int_equal(PARSE(&inv, &err, "memory", "search", "invoices late", "--scope",
                           "workspace:finance", "--limit", "5", "--types", "a,b", "--min-score",
                           "0.3", "--depth", "2", "--mode", "text", "--agent", "bob"),
                     CLI_PARSE_RUN);
    assert_string_equal(inv.args[0], "invoices late");
    assert_string_equal(cli_flag_value(&inv, "mode"), "text");
    assert_int_equal(PARSE(&inv, &err, "memory", "search", "x", "--mode", "fuzzy"),
                     CLI_PARSE_ERROR);
    assert_int_equal(PARSE(&inv, &err, "memory", "show", "agent:bob", "notes", "--history"),
                     CLI_PARSE_RUN);
    assert_int_equal(inv.arg_count, 2);
    assert_int_equal(PARSE(&inv, &err, "memory", "relate", "--scope", "global", "--from", "a",
                           "--to", "b", "--type", "knows", "--strength", "0.5"),
                     CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "memory", "relate", "--scope", "global", "--from", "a",
                           "--to", "b"),
                     CLI_PARSE_ERROR);
    assert_int_equal(PARSE(&inv, &err, "memory", "delete", "global", "acme"), CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "memory", "graph", "global", "acme", "--depth", "3"),
                     CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "memory", "job", "job_1"), CLI_PARSE_RUN);
    assert_int_equal(PARSE(&inv, &err, "agents", "reconnect-memory", "bob"), CLI_PARSE_RUN);
    assert_true(inv.command->handler == cmd_agents_reconnect_memory);
}

static void test_table(void **state)
{
    (void)state;
    static const char *const ops[] = {
        "health-check", "integrity-check", "wal-status", "corruption-analysis", "recover",
        "restore", "emergency-backup", "backup", "export", "import", "reinitialize", "reindex",
        "cleanup", "optimize", "maintenance", "usage", "resource-usage", "scope-status",
        "permissions-check", "violations", "scope-reset", "performance-metrics", "slow-queries",
        "analyze-queries", "index-analysis", "adjust-cache", "connection-test", NULL};
    for (size_t i = 0; ops[i]; i++) {
        const cli_command *cmd = cli_find_command(&cli_builtin_table, "memory", ops[i]);
        if (!cmd || cmd->handler != cmd_memory_op)
            fail_msg("memory %s is missing", ops[i]);
        bool offline = false, json = false;
        for (size_t j = 0; cmd->flags && cmd->flags[j]; j++) {
            offline |= strcmp(cmd->flags[j]->name, "offline") == 0;
            json |= strcmp(cmd->flags[j]->name, "json") == 0;
        }
        assert_true(offline);
        assert_true(json);
    }
    assert_true(cli_memory_replaces_files("recover"));
    assert_true(cli_memory_replaces_files("restore"));
    assert_true(cli_memory_replaces_files("import"));
    assert_true(cli_memory_replaces_files("reinitialize"));
    assert_false(cli_memory_replaces_files("backup"));
    assert_false(cli_memory_replaces_files("export"));
    assert_false(cli_memory_replaces_files("health-check"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diagnostics),
        cmocka_unit_test(test_recovery_and_backups),
        cmocka_unit_test(test_maintenance),
        cmocka_unit_test(test_scopes_and_windows),
        cmocka_unit_test(test_paths_become_absolute),
        cmocka_unit_test(test_left_out_flags),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_entity_commands),
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
