/* Unit tests for core/config: the schema, the YAML file, the environment,
 * flags, and how problems are reported to an operator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/config.h"
#include "core/util.h"

/* ---- fixture: a temporary directory per test ---------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    chmod(path, 0700);
    return remove(path);
}

static int make_tmpdir(void **state)
{
    char *dir = strdup("/tmp/caxton-test-config-XXXXXX");
    if (!dir || !mkdtemp(dir))
        return -1;
    *state = dir;
    return 0;
}

static int remove_tmpdir(void **state)
{
    char *dir = *state;
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    return 0;
}

static char *tmp_path(void **state, const char *name)
{
    char *p = path_join(*state, name);
    assert_non_null(p);
    return p;
}

static char *write_file(void **state, const char *name, const char *text)
{
    char *path = tmp_path(state, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads text as the --config file with the given environment. */
static int load_text(void **state, const char *text, char **envp, cx_config **cfg,
                     config_diag *diag, cx_error *err)
{
    char *path = write_file(state, "caxton.yaml", text);
    config_flags flags = {.config_path = path};
    int rc = config_load(&flags, envp, cfg, diag, err);
    free(path);
    return rc;
}

/* The full expected line "<tmpdir>/caxton.yaml:<suffix>". */
static char *file_line(void **state, const char *suffix)
{
    char *line = NULL;
    assert_true(asprintf(&line, "%s/caxton.yaml:%s", (char *)*state, suffix) > 0);
    return line;
}

static void assert_only_error(void **state, const config_diag *diag, const cx_error *err,
                              const char *suffix)
{
    char *want = file_line(state, suffix);
    assert_int_equal(diag->error_count, 1);
    assert_string_equal(diag->errors[0], want);
    assert_string_equal(err->msg, want);
    free(want);
}

static const char *origin_where(const cx_config *cfg, const char *key)
{
    for (size_t i = 0; i < config_key_count(); i++)
        if (strcmp(config_key_name(i), key) == 0)
            return cfg->origins[i].where;
    fail_msg("no key %s", key);
    return NULL;
}

static config_source origin_source(const cx_config *cfg, const char *key)
{
    for (size_t i = 0; i < config_key_count(); i++)
        if (strcmp(config_key_name(i), key) == 0)
            return cfg->origins[i].source;
    fail_msg("no key %s", key);
    return CONFIG_SOURCE_DEFAULT;
}

static char *no_env[] = {NULL};

static bool str_has_suffix_test(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* ---- defaults and happy paths ---------------------------------------------- */

static void assert_defaults(const cx_config *cfg)
{
    assert_string_equal(cfg->data_dir, "/var/lib/caxton");
    assert_string_equal(cfg->log_dir, "/var/log/caxton");
    assert_int_equal(cfg->shutdown_timeout_ms, 10000);
    assert_string_equal(cfg->api_listen, "127.0.0.1:8080");
    assert_int_equal(cfg->api_workers, 4);
    assert_int_equal(cfg->api_max_body, 1024 * 1024);
    assert_int_equal(cfg->api_max_connections, 16384);
    assert_int_equal(cfg->api_idle_timeout_ms, 60000);
    assert_null(cfg->api_tls_cert);
    assert_null(cfg->api_tls_key);
    assert_int_equal(cfg->api_public_count, 3);
    assert_string_equal(cfg->api_public[0], "/health");
    assert_string_equal(cfg->api_public[1], "/health/deep");
    assert_string_equal(cfg->api_public[2], "/metrics");
    assert_string_equal(cfg->agents_dir, "/var/lib/caxton/agents");
    assert_true(cfg->agents_hot_reload);
    assert_int_equal(cfg->messaging_queue_size, 1000);
    assert_int_equal(cfg->messaging_max_message_size, 1024 * 1024);
    assert_int_equal(cfg->messaging_conversation_timeout_ms, 30 * 60 * 1000);
    assert_int_equal(cfg->messaging_default_reply_timeout_ms, 30000);
    assert_string_equal(cfg->memory_path, "/var/lib/caxton/data/memory.db");
    assert_string_equal(cfg->memory_embedder, "builtin");
    assert_null(cfg->memory_embedding_provider);
    assert_null(cfg->memory_embedding_model);
    assert_int_equal(cfg->memory_embedding_batch, 64);
    assert_int_equal(cfg->memory_embedding_cache, 1024);
    assert_int_equal(cfg->memory_cache_size, 64 * 1024 * 1024);
    assert_string_equal(cfg->memory_backups_dir, "/var/lib/caxton/backups");
    assert_int_equal(cfg->memory_backups_keep, 7);
    assert_int_equal(cfg->memory_backups_every_ms, 24 * 3600 * 1000);
    assert_true(json_is_object(cfg->llm_providers));
    assert_int_equal(json_object_size(cfg->llm_providers), 0);
    assert_true(json_is_object(cfg->tools_mcp_servers));
    assert_string_equal(cfg->wasm_default_policy, "default");
    assert_string_equal(cfg->logging_level, "info");
}

static void test_empty_file_gives_defaults(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "", no_env, &cfg, &diag, &err), 0);
    assert_non_null(cfg);
    assert_defaults(cfg);
    assert_int_equal(diag.error_count, 0);
    assert_int_equal(diag.warning_count, 0);
    char *path = tmp_path(state, "caxton.yaml");
    assert_string_equal(cfg->file_path, path);
    assert_int_equal(origin_source(cfg, "api.workers"), CONFIG_SOURCE_DEFAULT);
    assert_string_equal(origin_where(cfg, "api.workers"), "default");
    assert_string_equal(origin_where(cfg, "agents.dir"), "default (from server.data_dir)");
    free(path);
    config_free(cfg);
    config_diag_free(&diag);
}

static void test_comments_and_empty_sections_give_defaults(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    const char *text = "# nothing set yet\n---\nserver:\napi:\n  # listen: 0.0.0.0:80\nllm:\n"
                       "  providers:\n";
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), 0);
    assert_defaults(cfg);
    assert_int_equal(diag.warning_count, 0);
    config_free(cfg);
    config_diag_free(&diag);
}

static void test_no_file_at_all(void **state)
{
    (void)state;
    if (fs_exists(CONFIG_DEFAULT_PATH))
        skip(); /* this machine has a real config */
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(config_load(NULL, no_env, &cfg, &diag, &err), 0);
    assert_defaults(cfg);
    assert_null(cfg->file_path);
    config_free(cfg);
    config_diag_free(&diag);
}

static const char *full_example =
    "server:\n"
    "  data_dir: /srv/caxton\n"
    "  log_dir: /srv/log\n"
    "  shutdown_timeout: 20s\n"
    "api:\n"
    "  listen: 0.0.0.0:8443\n"
    "  workers: 8                 # HTTP threads\n"
    "  max_body: 2MB\n"
    "  max_connections: 100\n"
    "  idle_timeout: 5min\n"
    "  tls: { cert: CERT, key: KEY }\n"
    "  public: [/health, /metrics]\n"
    "agents:\n"
    "  dir: /srv/agents\n"
    "  hot_reload: no\n"
    "messaging:\n"
    "  queue_size: 50\n"
    "  max_message_size: 64KB\n"
    "  conversation_timeout: 1h\n"
    "  default_reply_timeout: 500ms\n"
    "memory:\n"
    "  path: /srv/mem.db\n"
    "  embedder: openai\n"
    "  embedding: { model: text-embedding-3-small, batch: 32, cache: 500 }\n"
    "  cache_size: 1GB\n"
    "  backups: { dir: /srv/backups, keep: 3, every: 12h }\n"
    "llm:\n"
    "  providers:\n"
    "    openai: { base_url: https://api.openai.com/v1, api_key: \"${OPENAI_API_KEY}\" }\n"
    "tools:\n"
    "  mcp_servers:\n"
    "    files: { command: [npx, \"@modelcontextprotocol/server-filesystem\", /srv/shared] }\n"
    "wasm:\n"
    "  default_policy: strict\n"
    "logging: { level: warn }\n";

/* The spec's example with the TLS paths pointing at real files. */
static char *full_example_text(void **state)
{
    char *cert = write_file(state, "cert.pem", "cert");
    char *key = write_file(state, "key.pem", "key");
    char *text = NULL;
    const char *c = strstr(full_example, "CERT"), *k = strstr(full_example, "KEY");
    assert_true(asprintf(&text, "%.*s%s%.*s%s%s", (int)(c - full_example), full_example, cert,
                         (int)(k - c - 4), c + 4, key, k + 3) > 0);
    free(cert);
    free(key);
    return text;
}

static void test_full_example_loads(void **state)
{
    char *text = full_example_text(state);
    char *envp[] = {"OPENAI_API_KEY=sk-test-123", NULL};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, text, envp, &cfg, &diag, &err), 0);
    assert_int_equal(diag.warning_count, 0);
    assert_string_equal(cfg->data_dir, "/srv/caxton");
    assert_string_equal(cfg->log_dir, "/srv/log");
    assert_int_equal(cfg->shutdown_timeout_ms, 20000);
    assert_string_equal(cfg->api_listen, "0.0.0.0:8443");
    assert_int_equal(cfg->api_workers, 8);
    assert_int_equal(cfg->api_max_body, 2 * 1024 * 1024);
    assert_int_equal(cfg->api_max_connections, 100);
    assert_int_equal(cfg->api_idle_timeout_ms, 300000);
    assert_non_null(strstr(cfg->api_tls_cert, "cert.pem"));
    assert_non_null(strstr(cfg->api_tls_key, "key.pem"));
    assert_int_equal(cfg->api_public_count, 2);
    assert_string_equal(cfg->api_public[1], "/metrics");
    assert_string_equal(cfg->agents_dir, "/srv/agents");
    assert_false(cfg->agents_hot_reload);
    assert_int_equal(cfg->messaging_queue_size, 50);
    assert_int_equal(cfg->messaging_max_message_size, 64 * 1024);
    assert_int_equal(cfg->messaging_conversation_timeout_ms, 3600000);
    assert_int_equal(cfg->messaging_default_reply_timeout_ms, 500);
    assert_string_equal(cfg->memory_path, "/srv/mem.db");
    assert_string_equal(cfg->memory_embedder, "openai");
    assert_string_equal(cfg->memory_embedding_model, "text-embedding-3-small");
    assert_null(cfg->memory_embedding_provider);
    assert_int_equal(cfg->memory_embedding_batch, 32);
    assert_int_equal(cfg->memory_embedding_cache, 500);
    assert_int_equal(cfg->memory_cache_size, 1024 * 1024 * 1024);
    assert_string_equal(cfg->memory_backups_dir, "/srv/backups");
    assert_int_equal(cfg->memory_backups_keep, 3);
    assert_int_equal(cfg->memory_backups_every_ms, 12 * 3600 * 1000);
    json_t *openai = json_object_get(cfg->llm_providers, "openai");
    assert_string_equal(json_string_value(json_object_get(openai, "api_key")), "sk-test-123");
    assert_string_equal(json_string_value(json_object_get(openai, "base_url")),
                        "https://api.openai.com/v1");
    json_t *cmd = json_object_get(json_object_get(cfg->tools_mcp_servers, "files"), "command");
    assert_int_equal(json_array_size(cmd), 3);
    assert_string_equal(json_string_value(json_array_get(cmd, 2)), "/srv/shared");
    assert_string_equal(cfg->wasm_default_policy, "strict");
    assert_string_equal(cfg->logging_level, "warn");
    assert_int_equal(origin_source(cfg, "api.workers"), CONFIG_SOURCE_FILE);
    char *where = file_line(state, "7:12");
    assert_string_equal(origin_where(cfg, "api.workers"), where);
    free(where);
    config_free(cfg);
    config_diag_free(&diag);
    free(text);
}

static void test_scalar_spellings(void **state)
{
    static const struct {
        const char *yaml;
        bool hot_reload;
    } bools[] = {
        {"agents: {hot_reload: true}", true},   {"agents: {hot_reload: False}", false},
        {"agents: {hot_reload: yes}", true},    {"agents: {hot_reload: NO}", false},
        {"agents: {hot_reload: on}", true},     {"agents: {hot_reload: off}", false},
        {"agents: {hot_reload: \"on\"}", true},
    };
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++) {
        cx_config *cfg = NULL;
        cx_error err;
        assert_int_equal(load_text(state, bools[i].yaml, no_env, &cfg, NULL, &err), 0);
        assert_int_equal(cfg->agents_hot_reload, bools[i].hot_reload);
        config_free(cfg);
    }
    cx_config *cfg = NULL;
    cx_error err;
    assert_int_equal(load_text(state, "api: {workers: \"16\"}\nlogging: {level: ERROR}\n", no_env,
                               &cfg, NULL, &err), 0);
    assert_int_equal(cfg->api_workers, 16); /* quoted numbers are fine */
    assert_string_equal(cfg->logging_level, "error"); /* enums are stored canonically */
    config_free(cfg);
}

static void test_listen_addresses(void **state)
{
    static const char *const good[] = {"127.0.0.1:8080", "0.0.0.0:0", "localhost:65535",
                                       "[::1]:8080", "[::]:443", "my-host.example.com:80",
                                       "[fe80::1%eth0]:9000"};
    static const char *const bad[] = {"127.0.0.1", ":8080", "::1:8080", "host:65536", "host:",
                                      "host:-1", "[::1]8080", "[]:80", "host:80x", "a b:80",
                                      "[::1]:", "8080", "host:123456"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char *text = NULL;
        assert_true(asprintf(&text, "api:\n  listen: \"%s\"\n", good[i]) > 0);
        cx_config *cfg = NULL;
        cx_error err;
        assert_int_equal(load_text(state, text, no_env, &cfg, NULL, &err), 0);
        assert_string_equal(cfg->api_listen, good[i]);
        config_free(cfg);
        free(text);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *text = NULL;
        assert_true(asprintf(&text, "api:\n  listen: \"%s\"\n", bad[i]) > 0);
        cx_config *cfg = NULL;
        cx_error err;
        assert_int_equal(load_text(state, text, no_env, &cfg, NULL, &err), CX_ECONFIG);
        assert_null(cfg);
        assert_non_null(strstr(err.msg, "api.listen: expected host:port or [ipv6]:port with a "
                                        "port from 0 to 65535, got \""));
        free(text);
    }
}

/* ---- YAML syntax ---------------------------------------------------------------- */

static void test_yaml_syntax_error_has_line_and_column(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    const char *text = "api:\n  workers: 4\n  listen: [127.0.0.1:8080\nmemory:\n  path: x\n";
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_null(cfg);
    assert_int_equal(diag.error_count, 1);
    char *want = file_line(state, "4:7: YAML syntax error: ");
    assert_true(str_has_prefix(err.msg, want));
    assert_string_equal(diag.errors[0], err.msg);
    assert_non_null(strstr(err.msg, "(while parsing a flow sequence)"));
    free(want);
    config_diag_free(&diag);
}

static void test_yaml_tabs_get_a_hint(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "api:\n\tworkers: 4\n", no_env, &cfg, &diag, &err),
                     CX_ECONFIG);
    char *want = file_line(state, "2:1: YAML syntax error: ");
    assert_true(str_has_prefix(err.msg, want));
    assert_non_null(
        strstr(err.msg, "; hint: YAML does not allow tabs for indentation; use spaces"));
    free(want);
    config_diag_free(&diag);
}

static void test_yaml_unquoted_colon_gets_a_hint(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "api:\n  listen: a: b\n", no_env, &cfg, &diag, &err),
                     CX_ECONFIG);
    assert_only_error(state, &diag, &err,
                      "2:12: YAML syntax error: mapping values are not allowed in this context; "
                      "hint: quote a value that contains ': ', and check the indentation");
    config_diag_free(&diag);
}

static void test_yaml_invalid_utf8_reports_position(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "api:\n  listen: \"a\xff\"\n", no_env, &cfg, &diag, &err),
                     CX_ECONFIG);
    char *want = file_line(state, "2:13: YAML syntax error: ");
    assert_true(str_has_prefix(err.msg, want));
    assert_true(text_is_utf8(err.msg, strlen(err.msg)));
    free(want);
    config_diag_free(&diag);
}

static void test_root_must_be_a_mapping(void **state)
{
    static const char *const texts[] = {"hello\n", "- a\n- b\n", "\"quoted\"\n"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        cx_config *cfg = NULL;
        config_diag diag;
        cx_error err;
        assert_int_equal(load_text(state, texts[i], no_env, &cfg, &diag, &err), CX_ECONFIG);
        char *want = file_line(state, "1:1: expected a mapping of sections (server:, api:, "
                                      "agents:, ...) at the top level, got ");
        assert_true(str_has_prefix(err.msg, want));
        free(want);
        config_diag_free(&diag);
    }
}

static void test_second_document_is_refused(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "api: {workers: 2}\n---\napi: {workers: 3}\n", no_env, &cfg,
                               &diag, &err), CX_ECONFIG);
    assert_only_error(state, &diag, &err,
                      "2:1: a config file holds one YAML document; remove this second one (or "
                      "the --- before it)");
    config_diag_free(&diag);
}

static void test_duplicate_keys_are_refused(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "api:\n  workers: 2\n  workers: 3\n", no_env, &cfg, &diag,
                               &err), CX_ECONFIG);
    assert_only_error(state, &diag, &err,
                      "3:3: duplicate key 'api.workers' (also at line 2); remove one of them");
    config_diag_free(&diag);
    assert_int_equal(load_text(state, "api: {workers: 2}\napi: {listen: x:1}\n", no_env, &cfg,
                               &diag, &err), CX_ECONFIG);
    assert_only_error(state, &diag, &err,
                      "2:1: duplicate key 'api' (also at line 1); remove one of them");
    config_diag_free(&diag);
}

/* ---- wrong types and values -------------------------------------------------------- */

static void test_wrong_type_names_key_and_position(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "api:\n  workers: many\n", no_env, &cfg, &diag, &err),
                     CX_ECONFIG);
    assert_null(cfg);
    assert_only_error(state, &diag, &err,
                      "2:12: api.workers: expected an integer from 1 to 64, got \"many\"");
    assert_int_equal(err.code, CX_ECONFIG);
    config_diag_free(&diag);
}

static void test_out_of_range_values(void **state)
{
    static const struct {
        const char *yaml;
        const char *error;
    } cases[] = {
        {"api: {workers: 65}", "1:16: api.workers: expected an integer from 1 to 64, got \"65\""},
        {"api: {workers: 0}", "1:16: api.workers: expected an integer from 1 to 64, got \"0\""},
        {"api: {workers: -1}", "1:16: api.workers: expected an integer from 1 to 64, got \"-1\""},
        {"api: {workers: 99999999999999999999}",
         "1:16: api.workers: expected an integer from 1 to 64, got \"99999999999999999999\""},
        {"api: {max_body: 2GB}",
         "1:17: api.max_body: expected a size from 1KB to 1GB (a number with B, KB, MB, GB or TB, "
         "e.g. 10MB), got \"2GB\""},
        {"api: {max_body: 10x}",
         "1:17: api.max_body: expected a size from 1KB to 1GB (a number with B, KB, MB, GB or TB, "
         "e.g. 10MB), got \"10x\""},
        {"messaging: {queue_size: 0}",
         "1:25: messaging.queue_size: expected an integer from 1 to 1000000, got \"0\""},
        {"server: {shutdown_timeout: 10x}",
         "1:28: server.shutdown_timeout: expected a duration from 0s to 1d (a number with ms, s, "
         "m, min, h or d, e.g. 10s), got \"10x\""},
        {"memory: {backups: {keep: 10001}}",
         "1:26: memory.backups.keep: expected an integer from 0 to 10000, got \"10001\""},
        {"memory: {embedder: opneai}",
         "1:20: memory.embedder: expected one of builtin, openai, ollama, got \"opneai\"; did you "
         "mean 'openai'?"},
        {"memory: {embedding: {batch: 513}}",
         "1:29: memory.embedding.batch: expected an integer from 1 to 512, got \"513\""},
        {"memory: {embedding: {model: \"a\\tb\"}}",
         "1:29: memory.embedding.model: expected 1 to 256 printable characters, got \"a\\tb\" "
         "(control characters are not allowed)"},
        {"logging: {level: verbose}",
         "1:18: logging.level: expected one of debug, info, warn, error, got \"verbose\""},
        {"agents: {hot_reload: maybe}",
         "1:22: agents.hot_reload: expected true or false (yes/no and on/off also work), got "
         "\"maybe\""},
        {"api: {public: [health]}",
         "1:16: api.public: expected a list of paths starting with /, e.g. [/health, /metrics], "
         "got \"health\""},
        {"server: {data_dir: \"\"}", "1:20: server.data_dir: expected a path, got \"\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cx_config *cfg = NULL;
        config_diag diag;
        cx_error err;
        assert_int_equal(load_text(state, cases[i].yaml, no_env, &cfg, &diag, &err), CX_ECONFIG);
        assert_only_error(state, &diag, &err, cases[i].error);
        config_diag_free(&diag);
    }
}

static void test_wrong_shapes(void **state)
{
    static const struct {
        const char *yaml;
        const char *error;
    } cases[] = {
        {"api:\n  workers: {a: 1}\n",
         "2:12: api.workers: expected an integer from 1 to 64, got a mapping"},
        {"api:\n  listen: [a, b]\n",
         "2:11: api.listen: expected host:port or [ipv6]:port with a port from 0 to 65535, got a "
         "list"},
        {"api:\n  workers:\n",
         "2:11: api.workers: expected an integer from 1 to 64, got nothing (remove the key to use "
         "the default)"},
        {"api:\n  public: /health\n",
         "2:11: api.public: expected a list of paths starting with /, e.g. [/health, /metrics], "
         "got \"/health\""},
        {"server: [1, 2]\n",
         "1:9: server: expected a mapping of settings (indented key: value lines), got a list"},
        {"api:\n  tls: yes\n",
         "2:8: api.tls: expected a mapping of settings (indented key: value lines), got \"yes\""},
        {"llm:\n  providers: [a]\n",
         "2:14: llm.providers: expected a mapping of names to their settings, got a list"},
        {"llm:\n  providers:\n    openai: 5\n",
         "3:13: llm.providers.openai: expected a mapping of settings (key: value lines), got "
         "\"5\""},
        {"? [a, b]\n: 1\n", "1:3: keys must be names, got a list"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cx_config *cfg = NULL;
        config_diag diag;
        cx_error err;
        assert_int_equal(load_text(state, cases[i].yaml, no_env, &cfg, &diag, &err), CX_ECONFIG);
        assert_only_error(state, &diag, &err, cases[i].error);
        config_diag_free(&diag);
    }
}

static void test_all_errors_are_collected(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    const char *text = "api:\n  workers: many\n  max_body: huge\nlogging:\n  level: loud\n";
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_int_equal(diag.error_count, 3);
    assert_string_equal(err.msg, diag.errors[0]); /* err holds the first */
    assert_non_null(strstr(diag.errors[0], ":2:12: api.workers:"));
    assert_non_null(strstr(diag.errors[1], ":3:13: api.max_body:"));
    assert_non_null(strstr(diag.errors[2], ":5:10: logging.level:"));
    config_diag_free(&diag);
    /* Without a diag the first error still comes back. */
    assert_int_equal(load_text(state, text, no_env, &cfg, NULL, &err), CX_ECONFIG);
    assert_non_null(strstr(err.msg, "api.workers: expected an integer"));
}

static void test_error_flood_is_capped(void **state)
{
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appends(&sb, "llm:\n  providers:\n");
    for (int i = 0; i < 500; i++)
        strbuf_appendf(&sb, "    p%d: 1\n", i);
    for (int i = 0; i < 500; i++)
        strbuf_appendf(&sb, "junk%d: 1\n", i);
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, sb.data, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_int_equal(diag.error_count, 101);
    assert_string_equal(diag.errors[100], "(400 more errors not shown)");
    assert_int_equal(diag.warning_count, 101);
    assert_string_equal(diag.warnings[100], "(400 more warnings not shown)");
    config_diag_free(&diag);
    strbuf_free(&sb);
}

/* ---- unknown keys --------------------------------------------------------------------- */

static void test_unknown_key_warns_with_suggestion(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    const char *text = "api:\n  lisen: 0.0.0.0:80\n  workers: 2\nsever:\n  x: 1\nserver:\n"
                       "  listen: 1.2.3.4:5\n  colour: blue\n";
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), 0);
    assert_int_equal(diag.error_count, 0);
    assert_int_equal(diag.warning_count, 4);
    char *w0 = file_line(state, "2:3: unknown key 'api.lisen' (ignored); did you mean "
                                "'api.listen'?");
    char *w1 = file_line(state, "4:1: unknown key 'sever' (ignored); did you mean 'server'?");
    char *w2 = file_line(state, "7:3: unknown key 'server.listen' (ignored); did you mean "
                                "'api.listen'?");
    char *w3 = file_line(state, "8:3: unknown key 'server.colour' (ignored)");
    assert_string_equal(diag.warnings[0], w0);
    assert_string_equal(diag.warnings[1], w1);
    assert_string_equal(diag.warnings[2], w2);
    assert_string_equal(diag.warnings[3], w3);
    assert_int_equal(cfg->api_workers, 2);                  /* the rest still loads */
    assert_string_equal(cfg->api_listen, "127.0.0.1:8080"); /* unknown keys change nothing */
    free(w0);
    free(w1);
    free(w2);
    free(w3);
    config_free(cfg);
    config_diag_free(&diag);
}

static void test_unknown_key_with_odd_characters_stays_one_line(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "api:\n  \"wor\\nkers\": 1\n", no_env, &cfg, &diag, &err), 0);
    assert_int_equal(diag.warning_count, 1);
    assert_null(strchr(diag.warnings[0], '\n'));
    assert_non_null(strstr(diag.warnings[0], "unknown key \"api.wor\\nkers\" (ignored)"));
    config_free(cfg);
    config_diag_free(&diag);
}

/* ---- ${VAR} expansion -------------------------------------------------------------------- */

static void test_env_expansion(void **state)
{
    char *envp[] = {"W=12", "HOST=10.0.0.1", "EMPTY=", "KEY=sk-abc", NULL};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    const char *text = "api:\n"
                       "  workers: ${W}\n"
                       "  listen: ${HOST}:${PORT:-9090}\n"
                       "server:\n"
                       "  data_dir: ${EMPTY:-/opt/caxton}\n"
                       "  log_dir: /logs/$$HOME/${EMPTY}x$y\n"
                       "llm:\n"
                       "  providers:\n"
                       "    openai: { api_key: \"${KEY}\", price: \"$$5\", none: \"${NONE:-}\" }\n";
    assert_int_equal(load_text(state, text, envp, &cfg, &diag, &err), 0);
    assert_int_equal(cfg->api_workers, 12);
    assert_string_equal(cfg->api_listen, "10.0.0.1:9090");
    assert_string_equal(cfg->data_dir, "/opt/caxton"); /* set but empty takes the default */
    assert_string_equal(cfg->log_dir, "/logs/$HOME/x$y"); /* $$ is $, a lone $ stays */
    json_t *openai = json_object_get(cfg->llm_providers, "openai");
    assert_string_equal(json_string_value(json_object_get(openai, "api_key")), "sk-abc");
    assert_string_equal(json_string_value(json_object_get(openai, "price")), "$5");
    assert_string_equal(json_string_value(json_object_get(openai, "none")), "");
    config_free(cfg);
    config_diag_free(&diag);
}

static void test_missing_variable_is_an_error(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "api:\n  listen: \"${OPENAI_API_KEY}\"\n", no_env, &cfg,
                               &diag, &err), CX_ECONFIG);
    assert_only_error(state, &diag, &err,
                      "2:11: api.listen: environment variable OPENAI_API_KEY is not set (write "
                      "${OPENAI_API_KEY:-default} to give a default)");
    config_diag_free(&diag);
    assert_int_equal(load_text(state, "llm:\n  providers:\n    openai: {api_key: \"${K}\"}\n",
                               no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_only_error(state, &diag, &err,
                      "3:23: llm.providers.openai.api_key: environment variable K is not set "
                      "(write ${K:-default} to give a default)");
    config_diag_free(&diag);
}

static void test_bad_references(void **state)
{
    static const struct {
        const char *yaml;
        const char *error;
    } cases[] = {
        {"server: {data_dir: \"/x/${HOME\"}",
         "1:20: server.data_dir: unterminated ${ (write ${NAME} or ${NAME:-default}; $$ is a "
         "literal $)"},
        {"server: {data_dir: \"/x/${}\"}",
         "1:20: server.data_dir: invalid reference \"${}\": write ${NAME} or ${NAME:-default}, "
         "where NAME is letters, digits and _"},
        {"server: {data_dir: \"/x/${A B}\"}",
         "1:20: server.data_dir: invalid reference \"${A B}\": write ${NAME} or ${NAME:-default}, "
         "where NAME is letters, digits and _"},
        {"server: {data_dir: \"/x/${1A}\"}",
         "1:20: server.data_dir: invalid reference \"${1A}\": write ${NAME} or ${NAME:-default}, "
         "where NAME is letters, digits and _"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cx_config *cfg = NULL;
        config_diag diag;
        cx_error err;
        assert_int_equal(load_text(state, cases[i].yaml, no_env, &cfg, &diag, &err), CX_ECONFIG);
        assert_only_error(state, &diag, &err, cases[i].error);
        config_diag_free(&diag);
    }
}

static void test_expansion_converts_after_expanding(void **state)
{
    char *envp[] = {"W=lots", NULL};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "api:\n  workers: ${W}\n", envp, &cfg, &diag, &err),
                     CX_ECONFIG);
    assert_only_error(state, &diag, &err,
                      "2:12: api.workers: expected an integer from 1 to 64, got \"lots\"");
    config_diag_free(&diag);
}

/* ---- environment and flags --------------------------------------------------------------- */

static void test_env_overrides_file(void **state)
{
    char *envp[] = {"CAXTON_API_WORKERS=9", "CAXTON_LISTEN=0.0.0.0:9999",
                    "CAXTON_API_PUBLIC=/health, /status,", "CAXTON_AGENTS_HOT_RELOAD=off",
                    "CAXTON_LOG_LEVEL=debug", "CAXTON_MEMORY_BACKUPS_EVERY=1h",
                    "CAXTON_SHUTDOWN_TIMEOUT=", /* empty: not set */
                    NULL};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "api: {workers: 2, listen: 1.1.1.1:1}\nserver: "
                                      "{shutdown_timeout: 3s}\n", envp, &cfg, &diag, &err), 0);
    assert_int_equal(diag.warning_count, 0);
    assert_int_equal(cfg->api_workers, 9);
    assert_string_equal(cfg->api_listen, "0.0.0.0:9999");
    assert_int_equal(cfg->api_public_count, 2);
    assert_string_equal(cfg->api_public[1], "/status");
    assert_false(cfg->agents_hot_reload);
    assert_string_equal(cfg->logging_level, "debug");
    assert_int_equal(cfg->memory_backups_every_ms, 3600000);
    assert_int_equal(cfg->shutdown_timeout_ms, 3000);
    assert_int_equal(origin_source(cfg, "api.workers"), CONFIG_SOURCE_ENV);
    assert_string_equal(origin_where(cfg, "api.workers"), "CAXTON_API_WORKERS");
    assert_int_equal(origin_source(cfg, "server.shutdown_timeout"), CONFIG_SOURCE_FILE);
    config_free(cfg);
    config_diag_free(&diag);
}

static void test_bad_env_value_names_the_variable(void **state)
{
    char *envp[] = {"CAXTON_API_WORKERS=x", "CAXTON_API_MAX_BODY=1TB", NULL};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "", envp, &cfg, &diag, &err), CX_ECONFIG);
    assert_int_equal(diag.error_count, 2);
    assert_string_equal(diag.errors[0], "CAXTON_API_WORKERS: expected an integer from 1 to 64, "
                                        "got \"x\"");
    assert_string_equal(err.msg, diag.errors[0]);
    assert_true(str_has_prefix(diag.errors[1], "CAXTON_API_MAX_BODY: expected a size from 1KB"));
    config_diag_free(&diag);
}

static void test_unknown_caxton_variables_warn(void **state)
{
    char *envp[] = {"CAXTON_API_WORKRS=3",   "CAXTON_TOKEN=abc",      "CAXTON_SERVER=http://x",
                    "CAXTON_CONFIG_X=1",     "CAXTON_OUTPUT=json",    "CAXTON_READY_FD=3",
                    "CAXTON_WASM_TESTSUITE=/x", "PATH=/bin",          "CAXTON_ZZZZZZZZZZZZ=1",
                    NULL};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "", envp, &cfg, &diag, &err), 0);
    assert_int_equal(diag.warning_count, 3);
    assert_string_equal(diag.warnings[0], "CAXTON_API_WORKRS: unknown environment variable "
                                          "(ignored); did you mean CAXTON_API_WORKERS?");
    assert_string_equal(diag.warnings[1], "CAXTON_CONFIG_X: unknown environment variable "
                                          "(ignored); did you mean CAXTON_CONFIG?");
    assert_string_equal(diag.warnings[2], "CAXTON_ZZZZZZZZZZZZ: unknown environment variable "
                                          "(ignored)");
    assert_int_equal(cfg->api_workers, 4);
    config_free(cfg);
    config_diag_free(&diag);
}

static void test_flags_override_env(void **state)
{
    char *path = write_file(state, "caxton.yaml", "server: {data_dir: /from/file}\n");
    char *envp[] = {"CAXTON_LISTEN=0.0.0.0:1", "CAXTON_DATA_DIR=/from/env",
                    "CAXTON_LOG_DIR=/log/env", NULL};
    config_flags flags = {.config_path = path, .listen = "127.0.0.1:0", .data_dir = "/from/flag"};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(config_load(&flags, envp, &cfg, &diag, &err), 0);
    assert_string_equal(cfg->api_listen, "127.0.0.1:0");
    assert_string_equal(cfg->data_dir, "/from/flag");
    assert_string_equal(cfg->log_dir, "/log/env");
    assert_int_equal(origin_source(cfg, "api.listen"), CONFIG_SOURCE_FLAG);
    assert_string_equal(origin_where(cfg, "api.listen"), "--listen");
    assert_string_equal(origin_where(cfg, "server.data_dir"), "--data-dir");
    assert_string_equal(origin_where(cfg, "server.log_dir"), "CAXTON_LOG_DIR");
    config_free(cfg);
    config_diag_free(&diag);

    flags.listen = "nowhere";
    assert_int_equal(config_load(&flags, envp, &cfg, &diag, &err), CX_ECONFIG);
    assert_string_equal(err.msg, "--listen: expected host:port or [ipv6]:port with a port from 0 "
                                 "to 65535, got \"nowhere\"");
    config_diag_free(&diag);
    free(path);
}

static void test_derived_defaults_follow_data_dir(void **state)
{
    char *envp[] = {"CAXTON_DATA_DIR=/env/data", NULL};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "server: {data_dir: /file/data}\nmemory: {backups: {dir: "
                                      "/elsewhere}}\n", envp, &cfg, &diag, &err), 0);
    assert_string_equal(cfg->agents_dir, "/env/data/agents");
    assert_string_equal(cfg->memory_path, "/env/data/data/memory.db");
    assert_string_equal(cfg->memory_backups_dir, "/elsewhere"); /* set explicitly: kept */
    assert_int_equal(origin_source(cfg, "memory.path"), CONFIG_SOURCE_DEFAULT);
    assert_string_equal(origin_where(cfg, "memory.path"), "default (from server.data_dir)");
    config_free(cfg);
    config_diag_free(&diag);

    config_flags flags = {.data_dir = "/flag/data/"};
    char *path = write_file(state, "other.yaml", "");
    flags.config_path = path;
    assert_int_equal(config_load(&flags, no_env, &cfg, &diag, &err), 0);
    assert_string_equal(cfg->agents_dir, "/flag/data/agents");
    config_free(cfg);
    config_diag_free(&diag);
    free(path);
}

static void test_relative_paths_become_absolute(void **state)
{
    char old_cwd[PATH_MAX];
    assert_non_null(getcwd(old_cwd, sizeof old_cwd));
    assert_int_equal(chdir(*state), 0);
    char *path = write_file(state, "caxton.yaml", "server:\n  data_dir: ./var\n  log_dir: logs\n"
                                                  "api:\n  workers: x\n");
    config_flags flags = {.config_path = "caxton.yaml"};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    /* Messages name the file as the operator wrote it. */
    assert_int_equal(config_load(&flags, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_true(str_has_prefix(err.msg, "caxton.yaml:5:12: api.workers:"));
    config_diag_free(&diag);

    free(write_file(state, "caxton.yaml", "server:\n  data_dir: ./var\n  log_dir: logs\n"));
    flags.log_dir = "flaglogs/";
    assert_int_equal(config_load(&flags, no_env, &cfg, &diag, &err), 0);
    char *want_data = tmp_path(state, "var"), *want_log = tmp_path(state, "flaglogs/");
    char *want_agents = tmp_path(state, "var/agents");
    assert_string_equal(cfg->data_dir, want_data);
    assert_string_equal(cfg->log_dir, want_log);
    assert_string_equal(cfg->agents_dir, want_agents);
    assert_string_equal(cfg->file_path, path);
    config_free(cfg);
    config_diag_free(&diag);
    assert_int_equal(chdir(old_cwd), 0);
    free(want_data);
    free(want_log);
    free(want_agents);
    free(path);
}

/* ---- choosing and reading the file ------------------------------------------------------- */

static void test_missing_file_is_an_error(void **state)
{
    char *missing = tmp_path(state, "nope.yaml");
    config_flags flags = {.config_path = missing};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(config_load(&flags, no_env, &cfg, &diag, &err), CX_ECONFIG);
    char want[PATH_MAX + 100];
    snprintf(want, sizeof want, "--config: cannot read %s: No such file or directory", missing);
    assert_string_equal(err.msg, want);
    config_diag_free(&diag);

    char *envp[] = {NULL, NULL};
    char *env_entry = NULL;
    assert_true(asprintf(&env_entry, "CAXTON_CONFIG=%s", missing) > 0);
    envp[0] = env_entry;
    assert_int_equal(config_load(NULL, envp, &cfg, &diag, &err), CX_ECONFIG);
    snprintf(want, sizeof want, "CAXTON_CONFIG: cannot read %s: No such file or directory",
             missing);
    assert_string_equal(err.msg, want);
    config_diag_free(&diag);

    assert_int_equal(config_load_file(missing, no_env, &cfg, &diag, &err), CX_ECONFIG);
    snprintf(want, sizeof want, "cannot read %s: No such file or directory", missing);
    assert_string_equal(err.msg, want);
    config_diag_free(&diag);

    flags.config_path = *state; /* a directory */
    assert_int_equal(config_load(&flags, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_non_null(strstr(err.msg, "Is a directory"));
    config_diag_free(&diag);
    free(env_entry);
    free(missing);
}

static void test_config_env_selects_file_and_flag_wins(void **state)
{
    char *a = write_file(state, "a.yaml", "api: {workers: 5}\n");
    char *b = write_file(state, "b.yaml", "api: {workers: 6}\n");
    char *env_entry = NULL;
    assert_true(asprintf(&env_entry, "CAXTON_CONFIG=%s", a) > 0);
    char *envp[] = {env_entry, NULL};
    cx_config *cfg = NULL;
    cx_error err;
    assert_int_equal(config_load(NULL, envp, &cfg, NULL, &err), 0);
    assert_int_equal(cfg->api_workers, 5);
    assert_string_equal(cfg->file_path, a);
    config_free(cfg);
    config_flags flags = {.config_path = b};
    assert_int_equal(config_load(&flags, envp, &cfg, NULL, &err), 0);
    assert_int_equal(cfg->api_workers, 6);
    config_free(cfg);
    free(env_entry);
    free(a);
    free(b);
}

static void test_unreadable_file(void **state)
{
    if (geteuid() == 0)
        skip(); /* root reads anything */
    char *path = write_file(state, "locked.yaml", "api: {workers: 2}\n");
    chmod(path, 0000);
    config_flags flags = {.config_path = path};
    cx_config *cfg = NULL;
    cx_error err;
    assert_int_equal(config_load(&flags, no_env, &cfg, NULL, &err), CX_ECONFIG);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "Permission denied"));
    free(path);
}

static void test_oversized_file_is_refused(void **state)
{
    char *big = malloc(CONFIG_MAX_FILE_SIZE + 2);
    assert_non_null(big);
    memset(big, '#', CONFIG_MAX_FILE_SIZE + 1);
    big[CONFIG_MAX_FILE_SIZE + 1] = '\0';
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, big, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_null(cfg);
    assert_non_null(strstr(err.msg, "caxton.yaml"));
    assert_non_null(strstr(err.msg, "larger than the limit of 1048576 bytes"));
    /* Exactly at the limit is fine (comments only). */
    big[CONFIG_MAX_FILE_SIZE] = '\0';
    config_diag_free(&diag);
    assert_int_equal(load_text(state, big, no_env, &cfg, &diag, &err), 0);
    config_free(cfg);
    config_diag_free(&diag);
    free(big);
}

/* ---- hostile input ------------------------------------------------------------------------ */

static void test_very_long_strings(void **state)
{
    size_t n = 100000;
    char *longer = malloc(n + 1);
    assert_non_null(longer);
    memset(longer, 'a', n);
    longer[n] = '\0';
    longer[0] = '/';
    static const char *const prefixes[] = {
        "server: {data_dir: ", "api: {listen: ", "logging: {level: ", "api: {workers: ",
    };
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        char *text = NULL;
        assert_true(asprintf(&text, "%s%s}\n", prefixes[i], longer) > 0);
        cx_config *cfg = NULL;
        config_diag diag;
        cx_error err;
        assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), CX_ECONFIG);
        assert_int_equal(diag.error_count, 1);
        assert_true(strlen(diag.errors[0]) < 600); /* the value is cut short */
        assert_non_null(strstr(diag.errors[0], "...\""));
        config_diag_free(&diag);
        free(text);
    }
    /* A long unknown key is a warning, cut short too (YAML itself caps keys
     * at 1024 characters). */
    char *text = NULL;
    assert_true(asprintf(&text, "api:\n  %.1000s: 1\n", longer + 1) > 0);
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), 0);
    assert_int_equal(diag.warning_count, 1);
    assert_true(strlen(diag.warnings[0]) < 600);
    config_free(cfg);
    config_diag_free(&diag);
    free(text);
    /* Long values inside provider settings are the provider's business. */
    assert_true(asprintf(&text, "llm:\n  providers:\n    p: {prompt: %s}\n", longer + 1) > 0);
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), 0);
    assert_int_equal(strlen(json_string_value(json_object_get(
                         json_object_get(cfg->llm_providers, "p"), "prompt"))), n - 1);
    config_free(cfg);
    config_diag_free(&diag);
    free(text);
    free(longer);
}

/* "prefix" + depth x "[" + depth x "]" + "suffix". */
static char *nested_text(const char *prefix, size_t depth, const char *suffix)
{
    strbuf sb;
    strbuf_init(&sb);
    assert_int_equal(strbuf_appends(&sb, prefix), 0);
    for (size_t i = 0; i < depth; i++)
        assert_int_equal(strbuf_append(&sb, "[", 1), 0);
    for (size_t i = 0; i < depth; i++)
        assert_int_equal(strbuf_append(&sb, "]", 1), 0);
    assert_int_equal(strbuf_appends(&sb, suffix), 0);
    return strbuf_detach(&sb);
}

static void test_deeply_nested_junk(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    /* Half a megabyte of brackets is refused before the YAML parser, whose
     * cost grows with nesting depth, ever sees it. */
    char *text = nested_text("junk: ", 250000, "\n");
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_only_error(state, &diag, &err,
                      "1:71: brackets nested more than 64 levels deep; flatten this value");
    config_diag_free(&diag);
    free(text);

    /* Nesting the parser accepts is still bounded inside provider settings. */
    text = nested_text("llm:\n  providers:\n    p: {x: ", 40, "}\n");
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_int_equal(diag.error_count, 1);
    assert_non_null(strstr(err.msg, "llm.providers.p.x[0][0]"));
    assert_non_null(strstr(err.msg, "nested more than 32 levels deep"));
    config_diag_free(&diag);
    free(text);

    /* Junk under an unknown key is skipped, not walked. */
    text = nested_text("junk: ", 60, "\n");
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), 0);
    assert_int_equal(diag.warning_count, 1);
    config_free(cfg);
    config_diag_free(&diag);
    free(text);

    /* Brackets in quotes and comments are text, not nesting. */
    text = nested_text("api:\n  listen: \"", 100, "\"  # ");
    char *more = nested_text(text, 100, "\n");
    assert_int_equal(load_text(state, more, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_non_null(strstr(err.msg, "api.listen: expected host:port"));
    config_diag_free(&diag);
    free(text);
    free(more);
}

static void test_alias_bomb_and_loop(void **state)
{
    const char *bomb =
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "llm:\n  providers:\n    p: {x: *f}\n";
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, bomb, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_non_null(strstr(err.msg, "more than 100000 values"));
    config_diag_free(&diag);

    const char *loop = "llm:\n  providers:\n    p: &p {self: *p}\n";
    assert_int_equal(load_text(state, loop, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_non_null(strstr(err.msg, "nested more than 32 levels deep"));
    config_diag_free(&diag);

    /* Reasonable aliases work. */
    const char *shared = "common: &c {base_url: http://x}\nllm:\n  providers:\n    a: *c\n"
                         "    b: *c\n";
    assert_int_equal(load_text(state, shared, no_env, &cfg, &diag, &err), 0);
    assert_int_equal(json_object_size(cfg->llm_providers), 2);
    config_free(cfg);
    config_diag_free(&diag);
}

static void test_nul_in_value_is_refused(void **state)
{
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, "server: {data_dir: \"/a\\0b\"}\n", no_env, &cfg, &diag,
                               &err), CX_ECONFIG);
    assert_only_error(state, &diag, &err, "1:20: server.data_dir: the value contains a NUL "
                                          "character");
    config_diag_free(&diag);
}

/* ---- TLS --------------------------------------------------------------------------------- */

static void test_tls_files_are_checked(void **state)
{
    char *cert = write_file(state, "cert.pem", "c");
    char *missing = tmp_path(state, "missing.pem");
    char *text = NULL;
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;

    assert_true(asprintf(&text, "api:\n  tls: {cert: %s, key: %s}\n", cert, missing) > 0);
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), CX_ECONFIG);
    char *suffix = NULL;
    assert_true(asprintf(&suffix, "2:30: api.tls.key: cannot read %s: No such file or directory",
                         missing) > 0);
    char *want = file_line(state, "");
    assert_true(str_has_prefix(err.msg, want));
    assert_non_null(strstr(err.msg, "api.tls.key: cannot read "));
    assert_non_null(strstr(err.msg, missing));
    config_diag_free(&diag);
    free(text);
    free(suffix);
    free(want);

    assert_true(asprintf(&text, "api:\n  tls: {cert: %s}\n", cert) > 0);
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), CX_ECONFIG);
    assert_non_null(strstr(err.msg, "api.tls.cert: TLS needs both a certificate and a key; set "
                                    "api.tls.key (or CAXTON_API_TLS_KEY) too"));
    config_diag_free(&diag);
    free(text);

    /* Both from the environment, and the key path is not a secret. */
    char *env_cert = NULL, *env_key = NULL;
    assert_true(asprintf(&env_cert, "CAXTON_API_TLS_CERT=%s", cert) > 0);
    assert_true(asprintf(&env_key, "CAXTON_API_TLS_KEY=%s", cert) > 0);
    char *envp[] = {env_cert, env_key, NULL};
    assert_int_equal(load_text(state, "", envp, &cfg, &diag, &err), 0);
    assert_string_equal(cfg->api_tls_cert, cert);
    json_t *shown = config_effective_json(cfg, true);
    assert_string_equal(json_string_value(json_object_get(json_object_get(shown, "api.tls.key"),
                                                          "value")), cert);
    json_decref(shown);
    config_free(cfg);
    config_diag_free(&diag);

    char *envp_one[] = {env_key, NULL};
    assert_int_equal(load_text(state, "", envp_one, &cfg, &diag, &err), CX_ECONFIG);
    assert_true(str_has_prefix(err.msg, "CAXTON_API_TLS_KEY: TLS needs both"));
    config_diag_free(&diag);
    free(env_cert);
    free(env_key);
    free(cert);
    free(missing);
}

/* ---- effective view, restart keys, key names ------------------------------------------------ */

static void test_effective_json_sources(void **state)
{
    char *path = write_file(state, "caxton.yaml",
                            "api:\n  workers: 3\n  max_body: 2048KB\nserver:\n  shutdown_timeout: "
                            "120000ms\n");
    char *envp[] = {"CAXTON_MESSAGING_QUEUE_SIZE=77", NULL};
    config_flags flags = {.config_path = path, .listen = "[::1]:0"};
    cx_config *cfg = NULL;
    cx_error err;
    assert_int_equal(config_load(&flags, envp, &cfg, NULL, &err), 0);
    json_t *eff = config_effective_json(cfg, false);
    assert_non_null(eff);
    assert_int_equal(json_object_size(eff), config_key_count());

    json_t *workers = json_object_get(eff, "api.workers");
    assert_int_equal(json_integer_value(json_object_get(workers, "value")), 3);
    assert_string_equal(json_string_value(json_object_get(workers, "source")), "file");
    char *where = NULL;
    assert_true(asprintf(&where, "%s:2:12", path) > 0);
    assert_string_equal(json_string_value(json_object_get(workers, "where")), where);
    free(where);

    json_t *body = json_object_get(eff, "api.max_body");
    assert_string_equal(json_string_value(json_object_get(body, "value")), "2MB");
    json_t *stop = json_object_get(eff, "server.shutdown_timeout");
    assert_string_equal(json_string_value(json_object_get(stop, "value")), "2m");
    json_t *queue = json_object_get(eff, "messaging.queue_size");
    assert_string_equal(json_string_value(json_object_get(queue, "source")), "env");
    assert_string_equal(json_string_value(json_object_get(queue, "where")),
                        "CAXTON_MESSAGING_QUEUE_SIZE");
    json_t *listen = json_object_get(eff, "api.listen");
    assert_string_equal(json_string_value(json_object_get(listen, "value")), "[::1]:0");
    assert_string_equal(json_string_value(json_object_get(listen, "source")), "flag");
    assert_string_equal(json_string_value(json_object_get(listen, "where")), "--listen");
    json_t *level = json_object_get(eff, "logging.level");
    assert_string_equal(json_string_value(json_object_get(level, "source")), "default");
    assert_true(json_is_null(json_object_get(json_object_get(eff, "api.tls.cert"), "value")));
    assert_true(json_is_true(json_object_get(json_object_get(eff, "agents.hot_reload"), "value")));
    assert_int_equal(json_array_size(json_object_get(json_object_get(eff, "api.public"), "value")),
                     3);
    assert_string_equal(json_string_value(json_object_get(json_object_get(eff, "agents.dir"),
                                                          "where")),
                        "default (from server.data_dir)");
    json_decref(eff);
    config_free(cfg);
    free(path);
}

static void test_effective_json_redacts_secrets(void **state)
{
    const char *text = "llm:\n  providers:\n"
                       "    openai: {base_url: https://x, api_key: sk-1, nested: {Password: p, "
                       "ok: fine}}\n"
                       "    keyless: {model: m}\n"
                       "tools:\n  mcp_servers:\n"
                       "    gh: {command: [gh-mcp], env: {GITHUB_TOKEN: t, HOME: /h}, "
                       "headers: {Authorization: Bearer x}, client_secret: s}\n";
    cx_config *cfg = NULL;
    cx_error err;
    assert_int_equal(load_text(state, text, no_env, &cfg, NULL, &err), 0);
    json_t *eff = config_effective_json(cfg, true);
    json_t *providers = json_object_get(json_object_get(eff, "llm.providers"), "value");
    json_t *openai = json_object_get(providers, "openai");
    assert_string_equal(json_string_value(json_object_get(openai, "api_key")), "***");
    assert_string_equal(json_string_value(json_object_get(openai, "base_url")), "https://x");
    json_t *nested = json_object_get(openai, "nested");
    assert_string_equal(json_string_value(json_object_get(nested, "Password")), "***");
    assert_string_equal(json_string_value(json_object_get(nested, "ok")), "fine");
    /* A provider whose name looks secret is still shown: names are not secrets. */
    assert_string_equal(json_string_value(json_object_get(json_object_get(providers, "keyless"),
                                                          "model")), "m");
    json_t *gh = json_object_get(json_object_get(json_object_get(eff, "tools.mcp_servers"),
                                                 "value"), "gh");
    json_t *env = json_object_get(gh, "env");
    assert_string_equal(json_string_value(json_object_get(env, "GITHUB_TOKEN")), "***");
    assert_string_equal(json_string_value(json_object_get(env, "HOME")), "/h");
    assert_string_equal(json_string_value(json_object_get(json_object_get(gh, "headers"),
                                                          "Authorization")), "***");
    assert_string_equal(json_string_value(json_object_get(gh, "client_secret")), "***");
    char *dump = json_dumps(eff, 0);
    assert_null(strstr(dump, "sk-1"));
    assert_null(strstr(dump, "Bearer"));
    free(dump);
    json_decref(eff);

    /* Unredacted shows everything, and the config itself is untouched. */
    eff = config_effective_json(cfg, false);
    providers = json_object_get(json_object_get(eff, "llm.providers"), "value");
    assert_string_equal(json_string_value(json_object_get(json_object_get(providers, "openai"),
                                                          "api_key")), "sk-1");
    json_decref(eff);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(cfg->llm_providers, "openai"), "api_key")), "sk-1");
    config_free(cfg);
}

static void test_restart_keys_changed(void **state)
{
    cx_config *a = NULL, *b = NULL;
    cx_error err;
    assert_int_equal(load_text(state, "api: {workers: 2, max_body: 1MB}\n", no_env, &a, NULL,
                               &err), 0);
    assert_int_equal(load_text(state, "api: {workers: 2, max_body: 1MB}\n", no_env, &b, NULL,
                               &err), 0);
    const char **keys = config_restart_keys_changed(a, b);
    assert_non_null(keys);
    assert_null(keys[0]);
    free(keys);
    config_free(b);

    /* max_body and logging.level apply live; workers and listen need a restart. */
    assert_int_equal(load_text(state, "api: {workers: 3, max_body: 2MB, listen: 0.0.0.0:1}\n"
                                      "logging: {level: debug}\nserver: {data_dir: /other}\n",
                               no_env, &b, NULL, &err), 0);
    keys = config_restart_keys_changed(a, b);
    size_t n = 0;
    while (keys[n])
        n++;
    /* data_dir, listen, workers, and the derived agents.dir and memory.path */
    assert_int_equal(n, 5);
    assert_string_equal(keys[0], "server.data_dir");
    assert_string_equal(keys[1], "api.listen");
    assert_string_equal(keys[2], "api.workers");
    assert_string_equal(keys[3], "agents.dir");
    assert_string_equal(keys[4], "memory.path");
    free(keys);
    config_free(a);
    config_free(b);
}

/* ---- client mode ------------------------------------------------------------------------------ */

/* Loads text as the --config file in client mode. */
static int load_client(void **state, const char *text, char **envp, cx_config **cfg,
                       config_diag *diag, cx_error *err)
{
    char *path = write_file(state, "caxton.yaml", text);
    config_flags flags = {.config_path = path, .client = true};
    int rc = config_load(&flags, envp, cfg, diag, err);
    free(path);
    return rc;
}

static void test_client_mode_missing_variable_is_empty(void **state)
{
    static const char text[] = "llm:\n  providers:\n    openai: {api_key: \"${OPENAI_API_KEY}\", "
                               "base: \"x-${NOPE}-y\", model: \"${M:-gpt}\"}\n";
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(load_text(state, text, no_env, &cfg, &diag, &err), CX_ECONFIG);
    config_diag_free(&diag);

    assert_int_equal(load_client(state, text, no_env, &cfg, &diag, &err), 0);
    assert_int_equal(diag.error_count, 0);
    const json_t *openai = json_object_get(cfg->llm_providers, "openai");
    assert_string_equal(json_string_value(json_object_get(openai, "api_key")), "");
    assert_string_equal(json_string_value(json_object_get(openai, "base")), "x--y");
    assert_string_equal(json_string_value(json_object_get(openai, "model")), "gpt");
    assert_null(cfg->file_unreadable);
    config_free(cfg);
    config_diag_free(&diag);

    char *envp[] = {"OPENAI_API_KEY=sk-1", NULL};
    assert_int_equal(load_client(state, text, envp, &cfg, NULL, &err), 0);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(cfg->llm_providers, "openai"), "api_key")), "sk-1");
    config_free(cfg);
}

static void test_client_mode_still_refuses_bad_files(void **state)
{
    static const struct {
        const char *text;
        const char *message;
    } cases[] = {
        {"api:\n  workers: many\n", "2:12: api.workers: expected an integer from 1 to 64"},
        {"api: [\n", "YAML syntax error"},
        {"api:\n  listen: \"${HOST}:80\"\n", "2:11: api.listen: expected host:port"},
        {"llm:\n  providers:\n    p: {k: \"${K\"}\n", "unterminated ${"},
        {"llm:\n  providers:\n    p: {k: \"${1}\"}\n", "invalid reference"},
        {"llm:\n  providers: [a]\n", "llm.providers"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cx_config *cfg = NULL;
        config_diag diag;
        cx_error err;
        assert_int_equal(load_client(state, cases[i].text, no_env, &cfg, &diag, &err),
                         CX_ECONFIG);
        assert_null(cfg);
        if (!strstr(err.msg, cases[i].message))
            fail_msg("case %zu: %s", i, err.msg);
        config_diag_free(&diag);
    }
    /* A file that is not there is an error too: only an unreadable one is skipped. */
    char *missing = tmp_path(state, "missing.yaml");
    config_flags flags = {.config_path = missing, .client = true};
    cx_config *cfg = NULL;
    cx_error err;
    assert_int_equal(config_load(&flags, no_env, &cfg, NULL, &err), CX_ECONFIG);
    assert_non_null(strstr(err.msg, "No such file or directory"));
    free(missing);
}

static void test_client_mode_does_not_check_tls_files(void **state)
{
    char *text = NULL;
    char *cert = tmp_path(state, "gone-cert.pem"), *key = tmp_path(state, "gone-key.pem");
    cx_config *cfg = NULL;
    cx_error err;
    assert_true(asprintf(&text, "api:\n  tls: {cert: %s, key: %s}\n", cert, key) > 0);
    assert_int_equal(load_text(state, text, no_env, &cfg, NULL, &err), CX_ECONFIG);
    assert_int_equal(load_client(state, text, no_env, &cfg, NULL, &err), 0);
    assert_string_equal(cfg->api_tls_cert, cert); /* a client trusts it as a CA file */
    assert_string_equal(cfg->api_tls_key, key);
    config_free(cfg);
    free(text);
    /* Half a TLS setup is still wrong. */
    assert_true(asprintf(&text, "api:\n  tls: {cert: %s}\n", cert) > 0);
    assert_int_equal(load_client(state, text, no_env, &cfg, NULL, &err), CX_ECONFIG);
    assert_non_null(strstr(err.msg, "TLS needs both a certificate and a key"));
    free(text);
    free(cert);
    free(key);
}

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                                \
        }                                                                            \
    } while (0)

/* Runs check as this user; as root (who reads anything) in a child process
 * that has become nobody. check returns 0 when all is well. */
static void run_unprivileged(int (*check)(const char *path), const char *dir, const char *path)
{
    if (geteuid() != 0) {
        assert_int_equal(check(path), 0);
        return;
    }
    assert_int_equal(chmod(dir, 0755), 0); /* nobody may look inside, not read the file */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
            _exit(2);
        _exit(check(path));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static int check_unreadable_file(const char *path)
{
    char *envp[] = {"CAXTON_API_WORKERS=7", NULL};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;

    /* The server (and `config show --offline`) refuse it... */
    config_flags strict = {.config_path = path};
    CHECK(config_load(&strict, envp, &cfg, &diag, &err) == CX_ECONFIG);
    CHECK(strstr(err.msg, "Permission denied") != NULL);
    config_diag_free(&diag);

    /* ... a client goes on with defaults, environment and flags, and says so. */
    config_flags client = {.config_path = path, .data_dir = "/from/flag", .client = true};
    CHECK(config_load(&client, envp, &cfg, &diag, &err) == 0);
    CHECK(diag.error_count == 0 && diag.warning_count == 1);
    CHECK(str_has_prefix(diag.warnings[0], "--config: cannot read "));
    CHECK(strstr(diag.warnings[0], path) != NULL);
    CHECK(strstr(diag.warnings[0], "Permission denied; using the defaults") != NULL);
    CHECK(cfg->file_unreadable && strcmp(cfg->file_unreadable, path) == 0);
    CHECK(cfg->file_path == NULL);
    CHECK(cfg->api_workers == 7);                            /* environment */
    CHECK(strcmp(cfg->data_dir, "/from/flag") == 0);         /* flag */
    CHECK(strcmp(cfg->api_listen, "127.0.0.1:8080") == 0);   /* default, not the file's */
    CHECK(strcmp(cfg->agents_dir, "/from/flag/agents") == 0);
    config_free(cfg);
    config_diag_free(&diag);
    return 0;
}

static void test_client_mode_unreadable_file_is_a_warning(void **state)
{
    /* Nothing on the heap while the child runs: it exits with no chance to free. */
    char path[PATH_MAX];
    char *written = write_file(state, "locked.yaml", "api: {listen: 10.0.0.1:1, workers: 2}\n");
    snprintf(path, sizeof path, "%s", written);
    free(written);
    assert_int_equal(chmod(path, geteuid() == 0 ? 0600 : 0000), 0);
    run_unprivileged(check_unreadable_file, *state, path);
}

/* ---- keeping restart-only settings on reload ------------------------------------------------- */

static void test_keep_restart_keys(void **state)
{
    cx_config *running = NULL, *fresh = NULL;
    cx_error err;
    char *env_running[] = {"CAXTON_API_WORKERS=2", NULL};
    assert_int_equal(load_text(state,
                               "server:\n  data_dir: /run1\n"
                               "api:\n  listen: 127.0.0.1:1\n  max_body: 1MB\n",
                               env_running, &running, NULL, &err), 0);
    assert_int_equal(load_text(state,
                               "api:\n  listen: 0.0.0.0:2\n  max_body: 2MB\n  workers: 8\n"
                               "server:\n  data_dir: /run2\n"
                               "agents:\n  dir: /agents2\n  hot_reload: false\n"
                               "logging: {level: debug}\n",
                               no_env, &fresh, NULL, &err), 0);
    assert_string_equal(fresh->memory_backups_dir, "/run2/backups");
    const char **changed = config_restart_keys_changed(running, fresh);
    assert_non_null(changed[0]);
    free(changed);

    assert_int_equal(config_keep_restart_keys(fresh, running), 0);
    changed = config_restart_keys_changed(running, fresh);
    assert_null(changed[0]);
    free(changed);
    /* Values and where they came from are the running ones... */
    assert_string_equal(fresh->data_dir, "/run1");
    assert_string_equal(origin_where(fresh, "server.data_dir"), origin_where(running,
                                                                             "server.data_dir"));
    assert_true(str_has_suffix_test(origin_where(fresh, "server.data_dir"), "caxton.yaml:2:13"));
    assert_string_equal(fresh->api_listen, "127.0.0.1:1");
    assert_int_equal(fresh->api_workers, 2);
    assert_int_equal(origin_source(fresh, "api.workers"), CONFIG_SOURCE_ENV);
    assert_string_equal(origin_where(fresh, "api.workers"), "CAXTON_API_WORKERS");
    assert_string_equal(fresh->agents_dir, "/run1/agents");
    assert_int_equal(origin_source(fresh, "agents.dir"), CONFIG_SOURCE_DEFAULT);
    assert_string_equal(fresh->memory_path, "/run1/data/memory.db");
    /* ... a default derived from data_dir follows the kept data_dir ... */
    assert_string_equal(fresh->memory_backups_dir, "/run1/backups");
    assert_int_equal(origin_source(fresh, "memory.backups.dir"), CONFIG_SOURCE_DEFAULT);
    /* ... and what applies live is the fresh file's. */
    assert_int_equal(fresh->api_max_body, 2 * 1024 * 1024);
    assert_false(fresh->agents_hot_reload);
    assert_string_equal(fresh->logging_level, "debug");
    json_t *shown = config_effective_json(fresh, true);
    assert_string_equal(json_string_value(json_object_get(json_object_get(shown,
                                                                          "server.data_dir"),
                                                          "value")), "/run1");
    json_decref(shown);
    config_free(fresh);

    /* A backups dir the file sets is the file's, whatever data_dir is kept. */
    assert_int_equal(load_text(state, "server: {data_dir: /run2}\nmemory: {backups: {dir: /b2}}\n",
                               no_env, &fresh, NULL, &err), 0);
    assert_int_equal(config_keep_restart_keys(fresh, running), 0);
    assert_string_equal(fresh->data_dir, "/run1");
    assert_string_equal(fresh->memory_backups_dir, "/b2");
    assert_int_equal(origin_source(fresh, "memory.backups.dir"), CONFIG_SOURCE_FILE);
    config_free(fresh);

    /* Keeping a config's own values changes nothing. */
    assert_int_equal(load_text(state, "server:\n  data_dir: /run1\napi:\n  listen: 127.0.0.1:1\n",
                               env_running, &fresh, NULL, &err), 0);
    json_t *before = config_effective_json(fresh, false);
    assert_int_equal(config_keep_restart_keys(fresh, running), 0);
    json_t *after = config_effective_json(fresh, false);
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    config_free(fresh);
    config_free(running);
}

static void test_key_names(void **state)
{
    (void)state;
    assert_true(config_key_count() >= 25);
    assert_string_equal(config_key_name(0), "server.data_dir");
    assert_null(config_key_name(config_key_count()));
    bool seen_listen = false;
    for (size_t i = 0; i < config_key_count(); i++)
        seen_listen |= strcmp(config_key_name(i), "api.listen") == 0;
    assert_true(seen_listen);
}

static void test_load_file_ignores_environment(void **state)
{
    char *path = write_file(state, "validate.yaml", "api: {workers: \"${W}\"}\n");
    char *envp[] = {"W=7", "CAXTON_API_WORKERS=9", "CAXTON_BOGUS=1", NULL};
    cx_config *cfg = NULL;
    config_diag diag;
    cx_error err;
    assert_int_equal(config_load_file(path, envp, &cfg, &diag, &err), 0);
    assert_int_equal(cfg->api_workers, 7); /* ${W} expands, CAXTON_* does not apply */
    assert_int_equal(diag.warning_count, 0);
    config_free(cfg);
    config_diag_free(&diag);
    free(path);
}

static void test_concurrent_loads_are_independent(void **state)
{
    /* Reentrancy in practice: interleaved loads and frees share nothing. */
    cx_config *a = NULL, *b = NULL;
    cx_error err;
    assert_int_equal(load_text(state, "api: {workers: 2}\n", no_env, &a, NULL, &err), 0);
    assert_int_equal(load_text(state, "api: {workers: 3}\n", no_env, &b, NULL, &err), 0);
    assert_int_equal(a->api_workers, 2);
    assert_int_equal(b->api_workers, 3);
    config_free(a);
    assert_int_equal(b->api_workers, 3);
    config_free(b);
    config_free(NULL);
    config_diag_free(NULL);
}

#define T(name) cmocka_unit_test_setup_teardown(name, make_tmpdir, remove_tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_empty_file_gives_defaults),
        T(test_comments_and_empty_sections_give_defaults),
        T(test_no_file_at_all),
        T(test_full_example_loads),
        T(test_scalar_spellings),
        T(test_listen_addresses),
        T(test_yaml_syntax_error_has_line_and_column),
        T(test_yaml_tabs_get_a_hint),
        T(test_yaml_unquoted_colon_gets_a_hint),
        T(test_yaml_invalid_utf8_reports_position),
        T(test_root_must_be_a_mapping),
        T(test_second_document_is_refused),
        T(test_duplicate_keys_are_refused),
        T(test_wrong_type_names_key_and_position),
        T(test_out_of_range_values),
        T(test_wrong_shapes),
        T(test_all_errors_are_collected),
        T(test_error_flood_is_capped),
        T(test_unknown_key_warns_with_suggestion),
        T(test_unknown_key_with_odd_characters_stays_one_line),
        T(test_env_expansion),
        T(test_missing_variable_is_an_error),
        T(test_bad_references),
        T(test_expansion_converts_after_expanding),
        T(test_env_overrides_file),
        T(test_bad_env_value_names_the_variable),
        T(test_unknown_caxton_variables_warn),
        T(test_flags_override_env),
        T(test_derived_defaults_follow_data_dir),
        T(test_relative_paths_become_absolute),
        T(test_missing_file_is_an_error),
        T(test_config_env_selects_file_and_flag_wins),
        T(test_unreadable_file),
        T(test_oversized_file_is_refused),
        T(test_very_long_strings),
        T(test_deeply_nested_junk),
        T(test_alias_bomb_and_loop),
        T(test_nul_in_value_is_refused),
        T(test_tls_files_are_checked),
        T(test_effective_json_sources),
        T(test_effective_json_redacts_secrets),
        T(test_restart_keys_changed),
        T(test_client_mode_missing_variable_is_empty),
        T(test_client_mode_still_refuses_bad_files),
        T(test_client_mode_does_not_check_tls_files),
        T(test_client_mode_unreadable_file_is_a_warning),
        T(test_keep_restart_keys),
        T(test_key_names),
        T(test_load_file_ignores_environment),
        T(test_concurrent_loads_are_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
