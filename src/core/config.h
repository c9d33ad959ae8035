/* Server configuration: one YAML file, CAXTON_* environment and flags.
 *
 * Precedence: flags > CAXTON_* environment > config file > defaults. Every
 * value remembers where it came from (`config show --effective`). The schema
 * is one table in config.c: a key's type, default, environment name and
 * whether a change needs a restart. Unknown keys are warnings, wrong types and
 * values are errors naming file:line:column and the key path. `${VAR}` in any
 * string expands from the environment; a missing variable is an error unless
 * written `${VAR:-default}` (or the loader is in client mode, config_flags). */
#ifndef CAXTON_CORE_CONFIG_H
#define CAXTON_CORE_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define CONFIG_DEFAULT_PATH "/etc/caxton/caxton.yaml"
#define CONFIG_MAX_FILE_SIZE (1024 * 1024)

typedef enum config_source {
    CONFIG_SOURCE_DEFAULT,
    CONFIG_SOURCE_FILE,
    CONFIG_SOURCE_ENV,
    CONFIG_SOURCE_FLAG,
} config_source;

typedef struct config_origin {
    config_source source;
    char where[288]; /* "caxton.yaml:12:3", "CAXTON_API_LISTEN", "--listen", "default" */
} config_origin;

typedef struct cx_config {
    /* server */
    char *data_dir;
    char *log_dir;
    uint64_t shutdown_timeout_ms;
    /* api */
    char *api_listen;                /* host:port, [v6]:port; port 0 = any free port */
    int64_t api_workers;             /* HTTP threads, 1..64 */
    uint64_t api_max_body;           /* bytes */
    int64_t api_max_connections;
    uint64_t api_idle_timeout_ms;    /* idle keep-alive connections are closed after it */
    char *api_tls_cert;              /* both set or both NULL */
    char *api_tls_key;
    char **api_public;               /* paths that need no token */
    size_t api_public_count;
    /* agents */
    char *agents_dir;                /* default <data_dir>/agents */
    bool agents_hot_reload;
    uint64_t agents_reload_timeout_ms; /* a reload slower than this is rolled back */
    /* messaging */
    int64_t messaging_queue_size;
    uint64_t messaging_max_message_size;
    uint64_t messaging_conversation_timeout_ms;
    uint64_t messaging_default_reply_timeout_ms;
    int64_t messaging_max_retries;   /* redeliveries after a crash before dead-lettering */
    uint64_t messaging_history_retention_ms; /* conversations idle longer are deleted */
    /* memory */
    char *memory_path;               /* default <data_dir>/data/memory.db */
    char *memory_embedder;           /* builtin | openai | ollama */
    char *memory_embedding_provider; /* a name in llm.providers; NULL: the first of the type */
    char *memory_embedding_model;    /* required for openai and ollama */
    int64_t memory_embedding_batch;  /* texts per embeddings request, 1..512 */
    int64_t memory_embedding_cache;  /* vectors cached (LRU); 0 = none */
    uint64_t memory_cache_size;
    uint64_t memory_max_size;        /* writes refused past it; 0 = no limit */
    uint64_t memory_slow_query_ms;   /* memory operations slower than this are logged */
    char *memory_backups_dir;        /* default <data_dir>/backups */
    int64_t memory_backups_keep;
    uint64_t memory_backups_every_ms;
    /* llm and tools: passed whole to their parts, which validate them */
    json_t *llm_providers;           /* object (possibly empty), never NULL */
    json_t *tools_mcp_servers;       /* object (possibly empty), never NULL */
    /* wasm */
    char *wasm_default_policy;       /* strict | default | relaxed */
    /* logging */
    char *logging_level;             /* debug | info | warn | error */

    char *file_path;                 /* the config file read, or NULL for none */
    char *file_unreadable;           /* client mode: the file skipped for EACCES, else NULL */
    struct config_origin *origins;   /* one per schema key, in schema order */
} cx_config;

/* What the command line said. NULL fields were not given. */
typedef struct config_flags {
    const char *config_path;
    const char *data_dir;
    const char *log_dir;
    const char *listen;
    /* Client mode, for commands that only need to find the server (data dir,
     * api.listen, api.tls.cert) and never run it: a missing ${VAR} expands to
     * "" (a client does not use the server's secrets), api.tls.cert and
     * api.tls.key need not exist, and a config file that exists but cannot be
     * read (EACCES, e.g. the installed 0640 root:caxton one) is a warning:
     * loading goes on with defaults, environment and flags, and
     * cx_config.file_unreadable names the file. Everything else (syntax,
     * types, values) is an error as for the server. */
    bool client;
} config_flags;

/* Problems found while loading. Each line is complete for an operator:
 * "caxton.yaml:12:3: api.workers: expected an integer from 1 to 64, got \"many\"". */
typedef struct config_diag {
    char **errors;
    size_t error_count;
    char **warnings;
    size_t warning_count;
} config_diag;

/* Loads the configuration. The file is flags->config_path, else CAXTON_CONFIG,
 * else CONFIG_DEFAULT_PATH if it exists, else none (embedded defaults).
 * `envp` is the environment to read (NULL-terminated, usually `environ`).
 * Returns 0 with *out set, or CX_ECONFIG with err holding the first error and
 * diag (if given) holding all of them. Warnings go to diag either way. diag
 * is overwritten, so it must not hold an earlier result (config_diag_free it). */
int config_load(const config_flags *flags, char *const *envp, cx_config **out,
                config_diag *diag, cx_error *err);
/* Loads just one file with defaults (no environment, no flags): for
 * `caxton config validate FILE`. */
int config_load_file(const char *path, char *const *envp, cx_config **out, config_diag *diag,
                     cx_error *err);
void config_free(cx_config *cfg);
void config_diag_free(config_diag *diag);

/* {"api.listen": {"value": "127.0.0.1:8080", "source": "flag", "where": "--listen"}, ...}
 * Secrets (api keys, tokens inside llm/tools) are shown as "***" when redact. */
json_t *config_effective_json(const cx_config *cfg, bool redact);

/* Keys whose values differ between a and b and that only take effect after a
 * restart; returns a NULL-terminated array of static key names (free() the
 * array only). */
const char **config_restart_keys_changed(const cx_config *a, const cx_config *b);
/* For a reload (SIGHUP): copies the value and origin of every key that needs
 * a restart from running into fresh, so fresh describes what is really in
 * effect. Defaults derived from server.data_dir (memory.backups.dir, ...)
 * follow the kept data_dir. Returns 0, or CX_ENOMEM with fresh unchanged. */
int config_keep_restart_keys(cx_config *fresh, const cx_config *running);

/* Names of schema keys, for "did you mean" and completion. */
size_t config_key_count(void);
const char *config_key_name(size_t index);

#endif
