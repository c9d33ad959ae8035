/* Server configuration: the schema table, the YAML file, CAXTON_* variables
 * and command-line flags, merged into one cx_config.
 *
 * Everything about a key lives in one row of `schema` below: its path, type,
 * default, environment variable, range and whether changing it needs a
 * restart. Loading is a fixed pipeline over that table: defaults, then the
 * file, then the environment, then flags (later layers overwrite earlier
 * ones and record their origin), then relative paths are made absolute
 * against the current directory (a server may chdir later), then defaults
 * derived from server.data_dir are filled in, then cross-key checks run.
 *
 * A loader collects every problem instead of stopping at the first, so an
 * operator fixes a file in one pass. Each problem is one complete line naming
 * file:line:column (1-based) or the variable or flag, and the key path.
 * Nothing here is global: config_load can run on several threads at once.
 * Input is bounded throughout: file size, bracket nesting (checked before
 * libyaml, whose scanner slows down with depth), value depth and count
 * (aliases included), list length and the number of reported lines.
 *
 * Choices worth knowing: an empty CAXTON_* variable counts as not set; a YAML
 * null (`key:` with nothing after it) is an error for a value but an empty
 * mapping for a section; `${VAR:-default}` uses the default when VAR is unset
 * or empty, as in the shell; llm.providers and tools.mcp_servers are only
 * checked to be mappings of mappings, their parts validate the contents; a
 * client (config_flags.client) is let off what only the server needs: its
 * secrets in ${VAR}, its TLS files, a config file only it may read. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "core/units.h"
#include "core/util.h"

/* Bounds on what a file may make us do. */
#define CONFIG_MAX_DEPTH 32           /* nesting inside llm/tools settings */
#define CONFIG_MAX_FLOW_DEPTH 64      /* [ and { nesting, checked before parsing */
#define CONFIG_MAX_VALUES 100000      /* converted values, aliases counted each time */
/* Bytes of scalar text converted, aliases counted each time: one anchored
 * long string used thousands of times must not take gigabytes. */
#define CONFIG_MAX_EXPANDED_BYTES (4 * CONFIG_MAX_FILE_SIZE)
/* libyaml resolves each alias by a linear search of the anchors, so many of
 * both cost quadratic time; a configuration needs a handful. */
#define CONFIG_MAX_ANCHORS 1000
#define CONFIG_MAX_LIST 256           /* entries in api.public */
#define CONFIG_MAX_KEY 64             /* bytes in one mapping key of the schema */
#define CONFIG_MAX_DIAG 100           /* lines of each kind kept in config_diag */
#define CONFIG_MAX_TEXT 256           /* bytes of a KEY_TEXT value */
/* "file:line:column" buffers match config_origin.where, where they end up. */
#define WHERE_MAX sizeof(((config_origin *)0)->where)

#define MS_PER_DAY (UINT64_C(24) * 3600 * 1000)
#define MS_PER_HOUR (UINT64_C(3600) * 1000)
#define KIB (UINT64_C(1) << 10)
#define GIB (UINT64_C(1) << 30)
#define TIB (UINT64_C(1) << 40)

typedef enum key_type {
    KEY_PATH,     /* char *, made absolute */
    KEY_LISTEN,   /* char *, host:port */
    KEY_DURATION, /* uint64_t ms */
    KEY_SIZE,     /* uint64_t bytes */
    KEY_INT,      /* int64_t */
    KEY_BOOL,     /* bool */
    KEY_ENUM,     /* char *, one of choices */
    KEY_TEXT,     /* char *, 1..CONFIG_MAX_TEXT printable characters (a name, a model) */
    KEY_PATHS,    /* char ** + size_t count: URL paths starting with / */
    KEY_OBJECT,   /* json_t * object of objects */
} key_type;

typedef struct config_key {
    const char *path;
    key_type type;
    const char *fallback;        /* the default as an operator would write it */
    const char *env;             /* NULL: no environment variable */
    bool restart;                /* a change takes effect only after a restart */
    uint64_t min, max;           /* KEY_INT, KEY_DURATION, KEY_SIZE */
    const char *const *choices;  /* KEY_ENUM, NULL-terminated */
    const char *derive;          /* default is <server.data_dir>/<derive> */
    size_t offset;               /* the field in cx_config */
    size_t count_offset;         /* KEY_PATHS: the count field */
} config_key;

static const char *const embedders[] = {"builtin", "openai", "ollama", NULL};
static const char *const wasm_policies[] = {"strict", "default", "relaxed", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

#define FIELD(name) offsetof(cx_config, name)
#define DURATION(lo, hi) .type = KEY_DURATION, .min = (lo), .max = (hi)

static const config_key schema[] = {
    {.path = "server.data_dir", .type = KEY_PATH, .fallback = "/var/lib/caxton",
     .env = "CAXTON_DATA_DIR", .restart = true, .offset = FIELD(data_dir)},
    {.path = "server.log_dir", .type = KEY_PATH, .fallback = "/var/log/caxton",
     .env = "CAXTON_LOG_DIR", .restart = true, .offset = FIELD(log_dir)},
    {.path = "server.shutdown_timeout", DURATION(0, MS_PER_DAY), .fallback = "10s",
     .env = "CAXTON_SHUTDOWN_TIMEOUT", .offset = FIELD(shutdown_timeout_ms)},
    {.path = "api.listen", .type = KEY_LISTEN, .fallback = "127.0.0.1:8080", .env = "CAXTON_LISTEN",
     .restart = true, .offset = FIELD(api_listen)},
    {.path = "api.workers", .type = KEY_INT, .min = 1, .max = 64, .fallback = "4",
     .env = "CAXTON_API_WORKERS", .restart = true, .offset = FIELD(api_workers)},
    {.path = "api.max_body", .type = KEY_SIZE, .min = KIB, .max = GIB, .fallback = "1MB",
     .env = "CAXTON_API_MAX_BODY", .offset = FIELD(api_max_body)},
    {.path = "api.max_connections", .type = KEY_INT, .min = 1, .max = 1000000,
     .fallback = "16384", .env = "CAXTON_API_MAX_CONNECTIONS", .restart = true,
     .offset = FIELD(api_max_connections)},
    {.path = "api.idle_timeout", DURATION(1, 365 * MS_PER_DAY), .fallback = "60s",
     .env = "CAXTON_API_IDLE_TIMEOUT", .restart = true, .offset = FIELD(api_idle_timeout_ms)},
    {.path = "api.tls.cert", .type = KEY_PATH, .env = "CAXTON_API_TLS_CERT", .restart = true,
     .offset = FIELD(api_tls_cert)},
    {.path = "api.tls.key", .type = KEY_PATH, .env = "CAXTON_API_TLS_KEY", .restart = true,
     .offset = FIELD(api_tls_key)},
    {.path = "api.public", .type = KEY_PATHS, .fallback = "/health,/health/deep,/metrics",
     .env = "CAXTON_API_PUBLIC", .offset = FIELD(api_public),
     .count_offset = FIELD(api_public_count)},
    {.path = "agents.dir", .type = KEY_PATH, .derive = "agents", .env = "CAXTON_AGENTS_DIR",
     .restart = true, .offset = FIELD(agents_dir)},
    {.path = "agents.hot_reload", .type = KEY_BOOL, .fallback = "true",
     .env = "CAXTON_AGENTS_HOT_RELOAD", .offset = FIELD(agents_hot_reload)},
    {.path = "agents.reload_timeout", DURATION(100, MS_PER_DAY), .fallback = "10s",
     .env = "CAXTON_AGENTS_RELOAD_TIMEOUT", .offset = FIELD(agents_reload_timeout_ms)},
    {.path = "messaging.queue_size", .type = KEY_INT, .min = 1, .max = 1000000, .fallback = "1000",
     .env = "CAXTON_MESSAGING_QUEUE_SIZE", .offset = FIELD(messaging_queue_size)},
    {.path = "messaging.max_message_size", .type = KEY_SIZE, .min = KIB, .max = GIB,
     .fallback = "1MB", .env = "CAXTON_MESSAGING_MAX_MESSAGE_SIZE",
     .offset = FIELD(messaging_max_message_size)},
    {.path = "messaging.conversation_timeout", DURATION(1, 365 * MS_PER_DAY), .fallback = "30m",
     .env = "CAXTON_MESSAGING_CONVERSATION_TIMEOUT",
     .offset = FIELD(messaging_conversation_timeout_ms)},
    {.path = "messaging.default_reply_timeout", DURATION(1, 365 * MS_PER_DAY), .fallback = "30s",
     .env = "CAXTON_MESSAGING_DEFAULT_REPLY_TIMEOUT",
     .offset = FIELD(messaging_default_reply_timeout_ms)},
    {.path = "messaging.max_retries", .type = KEY_INT, .min = 0, .max = 100, .fallback = "3",
     .env = "CAXTON_MESSAGING_MAX_RETRIES", .offset = FIELD(messaging_max_retries)},
    {.path = "messaging.history_retention", DURATION(MS_PER_HOUR, 3650 * MS_PER_DAY),
     .fallback = "30d", .env = "CAXTON_MESSAGING_HISTORY_RETENTION",
     .offset = FIELD(messaging_history_retention_ms)},
    {.path = "memory.path", .type = KEY_PATH, .derive = "data/memory.db",
     .env = "CAXTON_MEMORY_PATH", .restart = true, .offset = FIELD(memory_path)},
    {.path = "memory.embedder", .type = KEY_ENUM, .choices = embedders, .fallback = "builtin",
     .env = "CAXTON_MEMORY_EMBEDDER", .restart = true, .offset = FIELD(memory_embedder)},
    {.path = "memory.embedding.provider", .type = KEY_TEXT,
     .env = "CAXTON_MEMORY_EMBEDDING_PROVIDER", .restart = true,
     .offset = FIELD(memory_embedding_provider)},
    {.path = "memory.embedding.model", .type = KEY_TEXT, .env = "CAXTON_MEMORY_EMBEDDING_MODEL",
     .restart = true, .offset = FIELD(memory_embedding_model)},
    {.path = "memory.embedding.batch", .type = KEY_INT, .min = 1, .max = 512, .fallback = "64",
     .env = "CAXTON_MEMORY_EMBEDDING_BATCH", .restart = true,
     .offset = FIELD(memory_embedding_batch)},
    {.path = "memory.embedding.cache", .type = KEY_INT, .min = 0, .max = 1000000,
     .fallback = "1024", .env = "CAXTON_MEMORY_EMBEDDING_CACHE", .restart = true,
     .offset = FIELD(memory_embedding_cache)},
    {.path = "memory.cache_size", .type = KEY_SIZE, .min = 0, .max = TIB, .fallback = "64MB",
     .env = "CAXTON_MEMORY_CACHE_SIZE", .offset = FIELD(memory_cache_size)},
    {.path = "memory.max_size", .type = KEY_SIZE, .min = 0, .max = 16 * TIB, .fallback = "10GB",
     .env = "CAXTON_MEMORY_MAX_SIZE", .offset = FIELD(memory_max_size)},
    {.path = "memory.slow_query", DURATION(1, 3600 * 1000), .fallback = "1s",
     .env = "CAXTON_MEMORY_SLOW_QUERY", .offset = FIELD(memory_slow_query_ms)},
    {.path = "memory.backups.dir", .type = KEY_PATH, .derive = "backups",
     .env = "CAXTON_MEMORY_BACKUPS_DIR", .offset = FIELD(memory_backups_dir)},
    {.path = "memory.backups.keep", .type = KEY_INT, .min = 0, .max = 10000, .fallback = "7",
     .env = "CAXTON_MEMORY_BACKUPS_KEEP", .offset = FIELD(memory_backups_keep)},
    {.path = "memory.backups.every", DURATION(1000, 365 * MS_PER_DAY), .fallback = "24h",
     .env = "CAXTON_MEMORY_BACKUPS_EVERY", .offset = FIELD(memory_backups_every_ms)},
    {.path = "llm.providers", .type = KEY_OBJECT, .fallback = "{}", .offset = FIELD(llm_providers)},
    {.path = "tools.mcp_servers", .type = KEY_OBJECT, .fallback = "{}",
     .offset = FIELD(tools_mcp_servers)},
    {.path = "wasm.default_policy", .type = KEY_ENUM, .choices = wasm_policies,
     .fallback = "default", .env = "CAXTON_WASM_DEFAULT_POLICY",
     .offset = FIELD(wasm_default_policy)},
    {.path = "logging.level", .type = KEY_ENUM, .choices = log_levels, .fallback = "info",
     .env = "CAXTON_LOG_LEVEL", .offset = FIELD(logging_level)},
};

#define SCHEMA_COUNT (sizeof schema / sizeof *schema)

/* Mappings that hold keys; a YAML mapping at one of these is walked. */
static const char *const sections[] = {
    "server", "api", "api.tls", "agents", "messaging", "memory", "memory.embedding",
    "memory.backups",
    "llm", "tools", "wasm", "logging",
};

/* CAXTON_* variables that belong to the client or the test tools, not to the
 * server configuration: never reported as unknown. */
static const char *const client_env[] = {
    "CAXTON_CONFIG", "CAXTON_SERVER", "CAXTON_TOKEN", "CAXTON_OUTPUT", "CAXTON_READY_FD",
    "CAXTON_WASM_TESTSUITE",
};

static const struct {
    const char *flag;
    const char *key;
    size_t offset; /* in config_flags */
} flag_keys[] = {
    {"--data-dir", "server.data_dir", offsetof(config_flags, data_dir)},
    {"--log-dir", "server.log_dir", offsetof(config_flags, log_dir)},
    {"--listen", "api.listen", offsetof(config_flags, listen)},
};

/* Settings inside llm/tools whose names contain one of these are secrets. */
static const char *const secret_words[] = {"key", "token", "secret", "password", "authorization",
                                           "credential"};

#define COUNT(a) (sizeof(a) / sizeof *(a))

/* ---- schema lookups --------------------------------------------------------- */

static const config_key *schema_find(const char *path)
{
    for (size_t i = 0; i < SCHEMA_COUNT; i++)
        if (strcmp(schema[i].path, path) == 0)
            return &schema[i];
    return NULL;
}

static size_t schema_index(const config_key *k) { return (size_t)(k - schema); }

size_t config_key_count(void) { return SCHEMA_COUNT; }

const char *config_key_name(size_t index)
{
    return index < SCHEMA_COUNT ? schema[index].path : NULL;
}

/* ---- typed values ------------------------------------------------------------ */

/* One parsed value before it is stored; only the fields of its type are used. */
typedef struct value {
    char *str;
    uint64_t u;
    int64_t i;
    bool b;
    char **list;
    size_t count;
    json_t *obj;
} value;

#define AT(cfg, k, type) ((type *)(void *)((char *)(cfg) + (k)->offset))
#define AT_CONST(cfg, k, type) ((const type *)(const void *)((const char *)(cfg) + (k)->offset))

static void list_free(char **list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(list[i]);
    free(list);
}

static void value_discard(value *v)
{
    free(v->str);
    list_free(v->list, v->count);
    json_decref(v->obj);
    memset(v, 0, sizeof *v);
}

/* Moves v into the configuration, freeing what was there. */
static void value_store(cx_config *cfg, const config_key *k, value *v)
{
    switch (k->type) {
    case KEY_PATH:
    case KEY_LISTEN:
    case KEY_ENUM:
    case KEY_TEXT:
        free(*AT(cfg, k, char *));
        *AT(cfg, k, char *) = v->str;
        v->str = NULL;
        break;
    case KEY_DURATION:
    case KEY_SIZE:
        *AT(cfg, k, uint64_t) = v->u;
        break;
    case KEY_INT:
        *AT(cfg, k, int64_t) = v->i;
        break;
    case KEY_BOOL:
        *AT(cfg, k, bool) = v->b;
        break;
    case KEY_PATHS: {
        size_t *count = (size_t *)(void *)((char *)cfg + k->count_offset);
        list_free(*AT(cfg, k, char **), *count);
        *AT(cfg, k, char **) = v->list;
        *count = v->count;
        v->list = NULL;
        v->count = 0;
        break;
    }
    case KEY_OBJECT:
        json_decref(*AT(cfg, k, json_t *));
        *AT(cfg, k, json_t *) = v->obj;
        v->obj = NULL;
        break;
    }
    value_discard(v);
}

static void format_duration_range(const config_key *k, char *buf, size_t size)
{
    char lo[32], hi[32];
    units_format_duration(k->min, lo, sizeof lo);
    units_format_duration(k->max, hi, sizeof hi);
    snprintf(buf, size, "a duration from %s to %s (a number with ms, s, m, min, h or d, e.g. 10s)",
             lo, hi);
}

static void format_size_range(const config_key *k, char *buf, size_t size)
{
    char lo[32], hi[32];
    units_format_size(k->min, lo, sizeof lo);
    units_format_size(k->max, hi, sizeof hi);
    snprintf(buf, size, "a size from %s to %s (a number with B, KB, MB, GB or TB, e.g. 10MB)", lo,
             hi);
}

static void format_choices(const config_key *k, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "one of");
    for (size_t i = 0; k->choices[i] && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s %s", i ? "," : "", k->choices[i]);
}

/* What a key accepts, as the words after "expected". */
static void key_expectation(const config_key *k, char *buf, size_t size)
{
    switch (k->type) {
    case KEY_PATH: snprintf(buf, size, "a path"); break;
    case KEY_LISTEN:
        snprintf(buf, size, "host:port or [ipv6]:port with a port from 0 to 65535");
        break;
    case KEY_DURATION: format_duration_range(k, buf, size); break;
    case KEY_SIZE: format_size_range(k, buf, size); break;
    case KEY_INT:
        snprintf(buf, size, "an integer from %llu to %llu", (unsigned long long)k->min,
                 (unsigned long long)k->max);
        break;
    case KEY_BOOL: snprintf(buf, size, "true or false (yes/no and on/off also work)"); break;
    case KEY_ENUM: format_choices(k, buf, size); break;
    case KEY_TEXT:
        snprintf(buf, size, "1 to %d printable characters", CONFIG_MAX_TEXT);
        break;
    case KEY_PATHS:
        snprintf(buf, size, "a list of paths starting with /, e.g. [/health, /metrics]");
        break;
    case KEY_OBJECT: snprintf(buf, size, "a mapping of names to their settings"); break;
    }
}

/* "expected <what the key accepts>, got <got><extra>" into why. */
static int reject(const config_key *k, const char *got, const char *extra, char *why, size_t size)
{
    char expected[192];
    key_expectation(k, expected, sizeof expected);
    snprintf(why, size, "expected %s, got %s%s", expected, got, extra ? extra : "");
    return -1;
}

static int reject_text(const config_key *k, const char *text, const char *extra, char *why,
                       size_t size)
{
    char quoted[96];
    text_quote(text, quoted, sizeof quoted);
    return reject(k, quoted, extra, why, size);
}

static bool parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || __builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
            return false;
    }
    *out = v;
    return true;
}

static bool host_char_ok(char c, bool v6)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c == '.' || c == '-' || (!v6 && c == '_') || (v6 && (c == ':' || c == '%'));
}

/* The syntax and port range are hostport_split's, shared with the server
 * and the client; the host is also checked here for characters no name or
 * address has, so a typo fails at load rather than at bind. */
static bool listen_valid(const char *s)
{
    char host[HOSTPORT_HOST_MAX + 1];
    unsigned port;
    cx_error ignored;
    if (hostport_split(s, host, sizeof host, &port, &ignored) != 0)
        return false;
    bool v6 = s[0] == '[';
    for (const char *c = host; *c; c++)
        if (!host_char_ok(*c, v6))
            return false;
    return true;
}

static int parse_int_value(const config_key *k, const char *text, value *v, char *why, size_t size)
{
    uint64_t n;
    bool negative = text[0] == '-';
    if (!parse_uint(text + negative, &n) || negative || n < k->min || n > k->max)
        return reject_text(k, text, NULL, why, size);
    v->i = (int64_t)n;
    return 0;
}

static int parse_bool_value(const config_key *k, const char *text, value *v, char *why,
                            size_t size)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < COUNT(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
            v->b = strcasecmp(text, yes[i]) == 0;
            return 0;
        }
    }
    return reject_text(k, text, NULL, why, size);
}

static int parse_enum_value(const config_key *k, const char *text, value *v, char *why,
                            size_t size)
{
    size_t n = 0;
    for (; k->choices[n]; n++) {
        if (strcasecmp(text, k->choices[n]) == 0) {
            v->str = str_dup(k->choices[n]);
            return v->str ? 0 : CX_ENOMEM;
        }
    }
    const char *near = text_suggest(text, k->choices, n);
    char extra[64] = "";
    if (near)
        snprintf(extra, sizeof extra, "; did you mean '%s'?", near);
    return reject_text(k, text, extra, why, size);
}

static int parse_quantity_value(const config_key *k, const char *text, value *v, char *why,
                                size_t size)
{
    uint64_t n;
    int rc = k->type == KEY_DURATION ? units_parse_duration_ms(text, &n, NULL)
                                     : units_parse_size(text, &n, NULL);
    if (rc != 0 || n < k->min || n > k->max)
        return reject_text(k, text, NULL, why, size);
    v->u = n;
    return 0;
}

static int parse_text_value(const config_key *k, const char *text, value *v, char *why,
                            size_t size)
{
    size_t len = strlen(text);
    if (len == 0 || len > CONFIG_MAX_TEXT)
        return reject_text(k, text, NULL, why, size);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return reject_text(k, text, " (control characters are not allowed)", why, size);
    v->str = str_dup(text);
    return v->str ? 0 : CX_ENOMEM;
}

static int parse_path_value(const config_key *k, const char *text, value *v, char *why,
                            size_t size)
{
    if (!*text)
        return reject_text(k, text, NULL, why, size);
    if (strlen(text) >= PATH_MAX)
        return reject_text(k, text, " (longer than the system's path limit)", why, size);
    v->str = str_dup(text);
    return v->str ? 0 : CX_ENOMEM;
}

/* One entry of api.public; takes ownership of nothing. */
static int paths_add(const config_key *k, value *v, const char *item, size_t len, char *why,
                     size_t size)
{
    if (v->count >= CONFIG_MAX_LIST) {
        snprintf(why, size, "more than %d entries", CONFIG_MAX_LIST);
        return -1;
    }
    char *copy = strndup(item, len);
    if (!copy)
        return CX_ENOMEM;
    if (copy[0] != '/' || len > 1024) {
        int rc = reject_text(k, copy, NULL, why, size);
        free(copy);
        return rc;
    }
    char **grown = realloc(v->list, (v->count + 1) * sizeof *grown);
    if (!grown) {
        free(copy);
        return CX_ENOMEM;
    }
    v->list = grown;
    v->list[v->count++] = copy;
    return 0;
}

/* "/health, /metrics": comma-separated, spaces around entries ignored. */
static int parse_paths_value(const config_key *k, const char *text, value *v, char *why,
                             size_t size)
{
    const char *s = text;
    while (*s) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        const char *last = end;
        while (last > s && (last[-1] == ' ' || last[-1] == '\t'))
            last--;
        if (last > s) {
            int rc = paths_add(k, v, s, (size_t)(last - s), why, size);
            if (rc != 0)
                return rc;
        }
        s = comma ? comma + 1 : end;
    }
    return 0;
}

/* Parses text as k's type into v. Returns 0, -1 with why set, or CX_ENOMEM. */
static int value_parse_text(const config_key *k, const char *text, value *v, char *why,
                            size_t size)
{
    memset(v, 0, sizeof *v);
    if (!text_is_utf8(text, strlen(text)))
        return reject_text(k, text, " (not valid UTF-8)", why, size);
    switch (k->type) {
    case KEY_PATH: return parse_path_value(k, text, v, why, size);
    case KEY_LISTEN:
        if (!listen_valid(text))
            return reject_text(k, text, NULL, why, size);
        v->str = str_dup(text);
        return v->str ? 0 : CX_ENOMEM;
    case KEY_DURATION:
    case KEY_SIZE: return parse_quantity_value(k, text, v, why, size);
    case KEY_INT: return parse_int_value(k, text, v, why, size);
    case KEY_BOOL: return parse_bool_value(k, text, v, why, size);
    case KEY_ENUM: return parse_enum_value(k, text, v, why, size);
    case KEY_TEXT: return parse_text_value(k, text, v, why, size);
    case KEY_PATHS: {
        int rc = parse_paths_value(k, text, v, why, size);
        if (rc != 0)
            value_discard(v);
        return rc;
    }
    case KEY_OBJECT:
        if (strcmp(text, "{}") != 0)
            return reject_text(k, text, " (set it in the config file)", why, size);
        v->obj = json_object();
        return v->obj ? 0 : CX_ENOMEM;
    }
    return -1;
}

/* ---- the loader: problems and origins -------------------------------------- */

typedef struct loader {
    cx_config *cfg;
    config_diag *diag;
    config_diag local_diag; /* used when the caller passed no diag */
    size_t errors_dropped, warnings_dropped;
    cx_error *err;
    bool failed;
    bool oom;
    bool client;            /* config_flags.client: lenient where only the server cares */
    char *const *envp;
    const char *file;       /* the config file as the operator named it */
    yaml_document_t *doc;
    size_t budget;          /* values left to convert (aliases count each time) */
    size_t byte_budget;     /* scalar bytes left to convert (likewise) */
} loader;

static int diag_push(char ***lines, size_t *count, char *line)
{
    char **grown = realloc(*lines, (*count + 1) * sizeof *grown);
    if (!grown)
        return CX_ENOMEM;
    *lines = grown;
    (*lines)[(*count)++] = line;
    return 0;
}

static void loader_vreport(loader *ld, bool error, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void loader_vreport(loader *ld, bool error, const char *fmt, va_list ap)
{
    char *line = NULL;
    if (vasprintf(&line, fmt, ap) < 0) {
        ld->oom = true;
        return;
    }
    if (error && !ld->failed)
        cx_error_set(ld->err, CX_ECONFIG, "%s", line);
    ld->failed |= error;
    size_t *count = error ? &ld->diag->error_count : &ld->diag->warning_count;
    if (*count >= CONFIG_MAX_DIAG) {
        (*(error ? &ld->errors_dropped : &ld->warnings_dropped))++;
        free(line);
        return;
    }
    if (diag_push(error ? &ld->diag->errors : &ld->diag->warnings, count, line) != 0) {
        free(line);
        ld->oom = true;
    }
}

static void loader_error(loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void loader_warning(loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void loader_error(loader *ld, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    loader_vreport(ld, true, fmt, ap);
    va_end(ap);
}

static void loader_warning(loader *ld, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    loader_vreport(ld, false, fmt, ap);
    va_end(ap);
}

/* A problem with a value from a layer: "where: key: why" for the file and
 * derived values, "VARIABLE: why" and "--flag: why" where the name says all. */
static void report_value(loader *ld, config_source source, const char *where,
                         const config_key *k, const char *why)
{
    if (source == CONFIG_SOURCE_ENV || source == CONFIG_SOURCE_FLAG)
        loader_error(ld, "%s: %s", where, why);
    else if (source == CONFIG_SOURCE_FILE)
        loader_error(ld, "%s: %s: %s", where, k->path, why);
    else
        loader_error(ld, "%s: %s", k->path, why);
}

static void set_origin(loader *ld, const config_key *k, config_source source, const char *where)
{
    config_origin *o = &ld->cfg->origins[schema_index(k)];
    o->source = source;
    snprintf(o->where, sizeof o->where, "%s", where);
}

/* Parses text for k and stores it with its origin, or reports why not. */
static void apply_text(loader *ld, const config_key *k, const char *text, config_source source,
                       const char *where)
{
    value v;
    char why[512];
    int rc = value_parse_text(k, text, &v, why, sizeof why);
    if (rc == CX_ENOMEM)
        ld->oom = true;
    else if (rc != 0)
        report_value(ld, source, where, k, why);
    else {
        value_store(ld->cfg, k, &v);
        set_origin(ld, k, source, where);
    }
}

/* ---- environment -------------------------------------------------------------- */

/* env_lookup (util.h) by a name that need not be NUL-terminated: the NAME
 * inside "${NAME}". */
static const char *env_lookup_span(char *const *envp, const char *name, size_t len)
{
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i] + len + 1;
    return NULL;
}

/* Appends ${NAME} or ${NAME:-default} (s points after "${"); returns bytes
 * consumed, or 0 after reporting a problem. */
static size_t expand_reference(loader *ld, const char *s, const char *where, const char *key,
                               strbuf *out)
{
    const char *close = strchr(s, '}');
    size_t name_len = 0;
    while (isalpha((unsigned char)s[name_len]) || s[name_len] == '_' ||
           (name_len > 0 && isdigit((unsigned char)s[name_len])))
        name_len++;
    bool has_default = strncmp(s + name_len, ":-", 2) == 0;
    if (!close) {
        loader_error(ld, "%s: %s: unterminated ${ (write ${NAME} or ${NAME:-default}; $$ is a "
                         "literal $)", where, key);
        return 0;
    }
    if (name_len == 0 || (s + name_len != close && !has_default)) {
        char raw[128], quoted[96];
        snprintf(raw, sizeof raw, "${%.*s}", (int)(close - s > 100 ? 100 : close - s), s);
        text_quote(raw, quoted, sizeof quoted);
        loader_error(ld, "%s: %s: invalid reference %s: write ${NAME} or ${NAME:-default}, "
                         "where NAME is letters, digits and _", where, key, quoted);
        return 0;
    }
    const char *val = env_lookup_span(ld->envp, s, name_len);
    if (has_default && (!val || !*val))
        val = NULL;
    if (!val && !has_default && ld->client)
        return (size_t)(close - s) + 1; /* a client never uses the server's secrets */
    if (!val && !has_default) {
        loader_error(ld, "%s: %s: environment variable %.*s is not set (write ${%.*s:-default} to "
                         "give a default)", where, key, (int)name_len, s, (int)name_len, s);
        return 0;
    }
    const char *text = val ? val : s + name_len + 2;
    size_t text_len = val ? strlen(val) : (size_t)(close - text);
    if (strbuf_append(out, text, text_len) != 0)
        ld->oom = true;
    return (size_t)(close - s) + 1;
}

/* Expands ${VAR}, ${VAR:-default} and $$ in a YAML string. Returns a new
 * string, or NULL after reporting a problem (or running out of memory). */
static char *expand_vars(loader *ld, const char *text, size_t len, const char *where,
                         const char *key)
{
    strbuf out;
    strbuf_init(&out);
    if (strlen(text) != len) {
        loader_error(ld, "%s: %s: the value contains a NUL character", where, key);
        return NULL;
    }
    const char *s = text;
    while (*s && !ld->oom) {
        const char *dollar = strchr(s, '$');
        size_t plain = dollar ? (size_t)(dollar - s) : strlen(s);
        if (strbuf_append(&out, s, plain) != 0)
            ld->oom = true;
        if (!dollar)
            break;
        if (dollar[1] == '{') {
            size_t used = expand_reference(ld, dollar + 2, where, key, &out);
            if (used == 0) {
                strbuf_free(&out);
                return NULL;
            }
            s = dollar + 2 + used;
        } else {
            if (strbuf_append(&out, "$", 1) != 0)
                ld->oom = true;
            s = dollar + 1 + (dollar[1] == '$'); /* $$ is one $; a lone $ stays */
        }
        if (out.len > CONFIG_MAX_FILE_SIZE) {
            loader_error(ld, "%s: %s: the value is longer than %d bytes after expanding "
                             "variables", where, key, CONFIG_MAX_FILE_SIZE);
            strbuf_free(&out);
            return NULL;
        }
    }
    if (ld->oom) {
        strbuf_free(&out);
        return NULL;
    }
    char *expanded = strbuf_detach(&out);
    if (!expanded)
        ld->oom = true;
    return expanded;
}

static void apply_env(loader *ld)
{
    for (size_t i = 0; i < SCHEMA_COUNT; i++) {
        const config_key *k = &schema[i];
        const char *val = k->env ? env_lookup(ld->envp, k->env) : NULL;
        if (val && *val) /* empty counts as unset, as docker-compose leaves them */
            apply_text(ld, k, val, CONFIG_SOURCE_ENV, k->env);
    }
}

static bool env_known(const char *name, size_t len)
{
    for (size_t i = 0; i < SCHEMA_COUNT; i++)
        if (schema[i].env && strlen(schema[i].env) == len && strncmp(schema[i].env, name, len) == 0)
            return true;
    for (size_t i = 0; i < COUNT(client_env); i++)
        if (strlen(client_env[i]) == len && strncmp(client_env[i], name, len) == 0)
            return true;
    return false;
}

/* A name as it appears in a message: as is when it is a plain identifier,
 * else quoted and escaped so the line stays one line. Returns true if plain. */
static bool display_name(const char *s, size_t len, char *buf, size_t size)
{
    bool plain = len > 0 && len <= CONFIG_MAX_KEY;
    for (size_t i = 0; plain && i < len; i++)
        plain = host_char_ok(s[i], false);
    if (plain) {
        snprintf(buf, size, "%.*s", (int)len, s);
        return true;
    }
    char *copy = strndup(s, len < 200 ? len : 200);
    text_quote(copy ? copy : "", buf, size);
    free(copy);
    return false;
}

static void warn_unknown_env(loader *ld, const char *entry, size_t len)
{
    const char *candidates[SCHEMA_COUNT + COUNT(client_env)];
    size_t n = 0;
    for (size_t i = 0; i < SCHEMA_COUNT; i++)
        if (schema[i].env)
            candidates[n++] = schema[i].env;
    for (size_t i = 0; i < COUNT(client_env); i++)
        candidates[n++] = client_env[i];
    char name[96];
    const char *near = NULL;
    if (display_name(entry, len, name, sizeof name))
        near = text_suggest(name, candidates, n);
    loader_warning(ld, "%s: unknown environment variable (ignored)%s%s%s", name,
                   near ? "; did you mean " : "", near ? near : "", near ? "?" : "");
}

static void check_unknown_env(loader *ld)
{
    for (size_t i = 0; ld->envp && ld->envp[i]; i++) {
        const char *entry = ld->envp[i];
        const char *eq = strchr(entry, '=');
        size_t len = eq ? (size_t)(eq - entry) : strlen(entry);
        if (str_has_prefix(entry, "CAXTON_") && !env_known(entry, len))
            warn_unknown_env(ld, entry, len);
    }
}

/* ---- the YAML file ------------------------------------------------------------ */

/* Where a node starts, 1-based as editors count: "caxton.yaml:12:3". */
static void node_where(const loader *ld, const yaml_node_t *n, char *buf, size_t size)
{
    snprintf(buf, size, "%s:%zu:%zu", ld->file, n->start_mark.line + 1, n->start_mark.column + 1);
}

static yaml_node_t *doc_node(const loader *ld, int index)
{
    return yaml_document_get_node(ld->doc, index);
}

/* `key:` with nothing after it, `~` or `null`. */
static bool node_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

/* What an operator wrote, for "got ...": a quoted value or its shape. */
static const char *node_kind(const yaml_node_t *n, char *buf, size_t size)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (node_is_null(n))
        return "nothing";
    text_quote((const char *)n->data.scalar.value, buf, size);
    return buf;
}

/* A value of the wrong shape (a mapping where a scalar belongs, or null). */
static void reject_node(loader *ld, const config_key *k, const yaml_node_t *n, const char *where)
{
    char why[512], got[96];
    const char *extra = node_is_null(n) ? " (remove the key to use the default)" : NULL;
    reject(k, node_kind(n, got, sizeof got), extra, why, sizeof why);
    report_value(ld, CONFIG_SOURCE_FILE, where, k, why);
}

/* The scalar's text with ${VAR} expanded, or NULL after reporting. */
static char *node_text(loader *ld, const yaml_node_t *n, const char *where, const char *path)
{
    return expand_vars(ld, (const char *)n->data.scalar.value, n->data.scalar.length, where, path);
}

static void file_set_scalar(loader *ld, const config_key *k, const yaml_node_t *n,
                            const char *where)
{
    if (n->type != YAML_SCALAR_NODE || node_is_null(n)) {
        reject_node(ld, k, n, where);
        return;
    }
    char *text = node_text(ld, n, where, k->path);
    if (text)
        apply_text(ld, k, text, CONFIG_SOURCE_FILE, where);
    free(text);
}

static void file_set_paths(loader *ld, const config_key *k, const yaml_node_t *n,
                           const char *where)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        reject_node(ld, k, n, where);
        return;
    }
    value v = {0};
    bool bad = false;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *item = doc_node(ld, *it);
        char item_where[WHERE_MAX], why[512];
        node_where(ld, item, item_where, sizeof item_where);
        if (item->type != YAML_SCALAR_NODE || node_is_null(item)) {
            reject_node(ld, k, item, item_where);
            bad = true;
            continue;
        }
        char *text = node_text(ld, item, item_where, k->path);
        int rc = -2; /* node_text reported the problem */
        if (text && !text_is_utf8(text, strlen(text)))
            rc = reject_text(k, text, " (not valid UTF-8)", why, sizeof why);
        else if (text)
            rc = paths_add(k, &v, text, strlen(text), why, sizeof why);
        if (rc == CX_ENOMEM)
            ld->oom = true;
        else if (rc == -1)
            report_value(ld, CONFIG_SOURCE_FILE, item_where, k, why);
        bad |= rc != 0;
        free(text);
    }
    if (bad) {
        value_discard(&v);
        return;
    }
    value_store(ld->cfg, k, &v);
    set_origin(ld, k, CONFIG_SOURCE_FILE, where);
}

static json_t *node_to_json(loader *ld, yaml_node_t *n, const char *path, int depth);

static json_t *scalar_to_json(loader *ld, yaml_node_t *n, const char *path)
{
    if (node_is_null(n))
        return json_null();
    char where[WHERE_MAX];
    node_where(ld, n, where, sizeof where);
    char *text = node_text(ld, n, where, path);
    if (!text)
        return NULL;
    json_t *s = NULL;
    size_t text_len = strlen(text);
    if (text_len > ld->byte_budget) {
        loader_error(ld, "%s: %s: values add up to more than %d bytes (aliases count each time "
                     "they are used)", where, path, CONFIG_MAX_EXPANDED_BYTES);
        free(text);
        return NULL;
    }
    ld->byte_budget -= text_len;
    if (!text_is_utf8(text, text_len))
        loader_error(ld, "%s: %s: the value is not valid UTF-8 after expanding variables", where,
                     path);
    else if (!(s = json_string(text)))
        ld->oom = true;
    free(text);
    return s;
}

static json_t *sequence_to_json(loader *ld, yaml_node_t *n, const char *path, int depth)
{
    json_t *arr = json_array();
    if (!arr) {
        ld->oom = true;
        return NULL;
    }
    size_t index = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        char child[512];
        snprintf(child, sizeof child, "%s[%zu]", path, index++);
        json_t *v = node_to_json(ld, doc_node(ld, *it), child, depth + 1);
        if (!v || json_array_append_new(arr, v) != 0) {
            ld->oom |= v != NULL;
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* A mapping key inside llm/tools settings, or NULL after reporting. */
static const char *mapping_key(loader *ld, yaml_node_t *key, const char *path)
{
    char where[WHERE_MAX], got[96];
    node_where(ld, key, where, sizeof where);
    const char *name = (const char *)key->data.scalar.value;
    if (key->type != YAML_SCALAR_NODE)
        loader_error(ld, "%s: %s: keys must be names, got %s", where, path,
                     node_kind(key, got, sizeof got));
    else if (strlen(name) != key->data.scalar.length || !text_is_utf8(name, strlen(name)))
        loader_error(ld, "%s: %s: a key contains a NUL character or invalid UTF-8", where, path);
    else
        return name;
    return NULL;
}

static json_t *mapping_to_json(loader *ld, yaml_node_t *n, const char *path, int depth)
{
    json_t *obj = json_object();
    if (!obj) {
        ld->oom = true;
        return NULL;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *key = doc_node(ld, p->key);
        const char *name = mapping_key(ld, key, path);
        char child[512], where[WHERE_MAX];
        if (name && json_object_get(obj, name)) {
            node_where(ld, key, where, sizeof where);
            loader_error(ld, "%s: %s: duplicate key '%s'; remove one of them", where, path, name);
            name = NULL;
        }
        json_t *v = NULL;
        if (name) {
            snprintf(child, sizeof child, "%s.%s", path, name);
            v = node_to_json(ld, doc_node(ld, p->value), child, depth + 1);
        }
        if (!v || json_object_set_new(obj, name, v) != 0) {
            ld->oom |= v != NULL;
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* YAML to JSON, scalars as strings. Depth and total size are bounded, which
 * also stops alias loops (`&a [*a]`) and alias bombs. */
static json_t *node_to_json(loader *ld, yaml_node_t *n, const char *path, int depth)
{
    char where[WHERE_MAX];
    node_where(ld, n, where, sizeof where);
    if (depth > CONFIG_MAX_DEPTH) {
        loader_error(ld, "%s: %s: nested more than %d levels deep", where, path, CONFIG_MAX_DEPTH);
        return NULL;
    }
    if (ld->budget == 0) {
        loader_error(ld, "%s: %s: more than %d values (aliases count each time they are used)",
                     where, path, CONFIG_MAX_VALUES);
        return NULL;
    }
    ld->budget--;
    if (n->type == YAML_MAPPING_NODE)
        return mapping_to_json(ld, n, path, depth);
    if (n->type == YAML_SEQUENCE_NODE)
        return sequence_to_json(ld, n, path, depth);
    return scalar_to_json(ld, n, path);
}

/* Each provider or server is itself a mapping (or empty). */
static bool object_member_ok(loader *ld, const config_key *k, const yaml_node_t *name,
                             const yaml_node_t *item)
{
    if (item->type == YAML_MAPPING_NODE || node_is_null(item))
        return true;
    char where[WHERE_MAX], got[96], shown[96];
    node_where(ld, item, where, sizeof where);
    const char *key = name->type == YAML_SCALAR_NODE ? (const char *)name->data.scalar.value : "?";
    display_name(key, strlen(key), shown, sizeof shown);
    loader_error(ld, "%s: %s.%s: expected a mapping of settings (key: value lines), got %s", where,
                 k->path, shown, node_kind(item, got, sizeof got));
    return false;
}

/* llm.providers and tools.mcp_servers: a mapping of names to mappings. */
static void file_set_object(loader *ld, const config_key *k, yaml_node_t *n, const char *where)
{
    value v = {0};
    if (node_is_null(n)) {
        v.obj = json_object();
    } else if (n->type != YAML_MAPPING_NODE) {
        reject_node(ld, k, n, where);
        return;
    } else {
        bool bad = false;
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++)
            bad |= !object_member_ok(ld, k, doc_node(ld, p->key), doc_node(ld, p->value));
        if (bad || !(v.obj = node_to_json(ld, n, k->path, 0)))
            return;
        const char *name;
        json_t *member;
        json_object_foreach(v.obj, name, member) {
            if (json_is_null(member) && json_object_set_new(v.obj, name, json_object()) != 0)
                ld->oom = true;
        }
    }
    if (!v.obj) {
        ld->oom = true;
        return;
    }
    value_store(ld->cfg, k, &v);
    set_origin(ld, k, CONFIG_SOURCE_FILE, where);
}

static void file_set_key(loader *ld, const config_key *k, yaml_node_t *n)
{
    char where[WHERE_MAX];
    node_where(ld, n, where, sizeof where);
    if (k->type == KEY_OBJECT)
        file_set_object(ld, k, n, where);
    else if (k->type == KEY_PATHS)
        file_set_paths(ld, k, n, where);
    else
        file_set_scalar(ld, k, n, where);
}

/* Last component of a dotted path. */
static const char *path_leaf(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

/* True when path's parent is prefix ("" for the top level). */
static bool path_in(const char *path, const char *prefix)
{
    size_t plen = strlen(prefix);
    const char *leaf = path_leaf(path);
    if (plen == 0)
        return leaf == path;
    return strncmp(path, prefix, plen) == 0 && path[plen] == '.' && leaf == path + plen + 1;
}

/* The key or section an unknown key was probably meant to be: a near name in
 * the same mapping, else the same name in another section. */
static const char *suggest_key(const char *prefix, const char *name)
{
    const char *all[SCHEMA_COUNT + COUNT(sections)], *leaves[SCHEMA_COUNT + COUNT(sections)];
    size_t n = 0, here = 0;
    for (size_t i = 0; i < SCHEMA_COUNT + COUNT(sections); i++)
        all[n++] = i < SCHEMA_COUNT ? schema[i].path : sections[i - SCHEMA_COUNT];
    const char *near_path[SCHEMA_COUNT + COUNT(sections)];
    for (size_t i = 0; i < n; i++)
        if (path_in(all[i], prefix)) {
            leaves[here] = path_leaf(all[i]);
            near_path[here++] = all[i];
        }
    const char *near = text_suggest(name, leaves, here);
    for (size_t i = 0; near && i < here; i++)
        if (leaves[i] == near)
            return near_path[i];
    for (size_t i = 0; i < n; i++)
        if (strcmp(path_leaf(all[i]), name) == 0)
            return all[i];
    return NULL;
}

static void warn_unknown_key(loader *ld, const char *prefix, const char *name, size_t len,
                             const yaml_node_t *key)
{
    char where[WHERE_MAX], full[256], shown[256];
    node_where(ld, key, where, sizeof where);
    int shown_len = (int)(len < 200 ? len : 200);
    snprintf(full, sizeof full, "%s%s%.*s", prefix, *prefix ? "." : "", shown_len, name);
    bool plain = strlen(name) == len && display_name(full, strlen(full), shown, sizeof shown);
    const char *near = plain ? suggest_key(prefix, name) : NULL;
    loader_warning(ld, "%s: unknown key %s%s%s (ignored)%s%s%s", where, plain ? "'" : "", shown,
                   plain ? "'" : "", near ? "; did you mean '" : "", near ? near : "",
                   near ? "'?" : "");
}

/* Remembers where each key and section was set, to refuse duplicates. */
typedef struct seen_lines {
    size_t key[SCHEMA_COUNT];
    size_t section[COUNT(sections)];
} seen_lines;

static size_t *seen_slot(seen_lines *seen, const char *path)
{
    const config_key *k = schema_find(path);
    if (k)
        return &seen->key[schema_index(k)];
    for (size_t i = 0; i < COUNT(sections); i++)
        if (strcmp(sections[i], path) == 0)
            return &seen->section[i];
    return NULL;
}

static void walk_mapping(loader *ld, yaml_node_t *map, const char *prefix, seen_lines *seen);

static void walk_section(loader *ld, const char *path, yaml_node_t *n, seen_lines *seen)
{
    if (n->type == YAML_MAPPING_NODE) {
        walk_mapping(ld, n, path, seen);
    } else if (!node_is_null(n)) { /* `server:` with everything commented out is fine */
        char where[WHERE_MAX], got[96];
        node_where(ld, n, where, sizeof where);
        loader_error(ld, "%s: %s: expected a mapping of settings (indented key: value lines), "
                         "got %s", where, path, node_kind(n, got, sizeof got));
    }
}

static void walk_pair(loader *ld, const char *prefix, yaml_node_t *key, yaml_node_t *val,
                      seen_lines *seen)
{
    char where[WHERE_MAX], path[CONFIG_MAX_KEY * 2], got[96];
    node_where(ld, key, where, sizeof where);
    if (key->type != YAML_SCALAR_NODE) {
        loader_error(ld, "%s: keys must be names, got %s", where, node_kind(key, got, sizeof got));
        return;
    }
    const char *name = (const char *)key->data.scalar.value;
    size_t len = key->data.scalar.length;
    if (len > CONFIG_MAX_KEY || strlen(name) != len) {
        warn_unknown_key(ld, prefix, name, len, key);
        return;
    }
    snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", name);
    size_t *line = seen_slot(seen, path);
    if (!line) {
        warn_unknown_key(ld, prefix, name, len, key);
        return;
    }
    if (*line) {
        loader_error(ld, "%s: duplicate key '%s' (also at line %zu); remove one of them", where,
                     path, *line);
        return;
    }
    *line = key->start_mark.line + 1;
    const config_key *k = schema_find(path);
    if (k)
        file_set_key(ld, k, val);
    else
        walk_section(ld, path, val, seen);
}

static void walk_mapping(loader *ld, yaml_node_t *map, const char *prefix, seen_lines *seen)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
        walk_pair(ld, prefix, doc_node(ld, p->key), doc_node(ld, p->value), seen);
}

static void walk_root(loader *ld, yaml_node_t *root)
{
    seen_lines seen;
    memset(&seen, 0, sizeof seen);
    if (root->type == YAML_MAPPING_NODE) {
        walk_mapping(ld, root, "", &seen);
    } else if (!node_is_null(root)) {
        char where[WHERE_MAX], got[96];
        node_where(ld, root, where, sizeof where);
        loader_error(ld, "%s: expected a mapping of sections (server:, api:, agents:, ...) at the "
                         "top level, got %s", where, node_kind(root, got, sizeof got));
    }
}

/* Does the line holding byte `at` start with a tab in its indentation? */
static bool tab_in_indent(const char *data, size_t len, size_t at)
{
    if (at < len && data[at] == '\t')
        return true;
    size_t start = at < len ? at : len;
    while (start > 0 && data[start - 1] != '\n')
        start--;
    for (size_t i = start; i < len && (data[i] == ' ' || data[i] == '\t'); i++)
        if (data[i] == '\t')
            return true;
    return false;
}

static const char *yaml_hint(const yaml_parser_t *p, const char *data, size_t len, size_t at)
{
    if (tab_in_indent(data, len, at) || (p->problem && strstr(p->problem, "tab")))
        return "; hint: YAML does not allow tabs for indentation; use spaces";
    if (!p->problem)
        return "";
    if (strstr(p->problem, "mapping values are not allowed"))
        return "; hint: quote a value that contains ': ', and check the indentation";
    if (strstr(p->problem, "did not find expected key") ||
        strstr(p->problem, "did not find expected '-'"))
        return "; hint: check that this line is indented like the lines around it";
    if (strstr(p->problem, "could not find expected ':'"))
        return "; hint: each setting is written key: value";
    return "";
}

static void report_yaml_error(loader *ld, const yaml_parser_t *p, const char *data, size_t len)
{
    if (p->error == YAML_MEMORY_ERROR) {
        ld->oom = true;
        return;
    }
    size_t line, column, at;
    if (p->error == YAML_READER_ERROR) { /* only a byte offset is known */
        at = p->problem_offset < len ? p->problem_offset : len;
        line = 0;
        size_t line_start = 0;
        for (size_t i = 0; i < at; i++)
            if (data[i] == '\n') {
                line++;
                line_start = i + 1;
            }
        column = at - line_start;
    } else {
        at = p->problem_mark.index;
        line = p->problem_mark.line;
        column = p->problem_mark.column;
    }
    loader_error(ld, "%s:%zu:%zu: YAML syntax error: %s%s%s%s%s", ld->file, line + 1, column + 1,
                 p->problem ? p->problem : "unknown problem", p->context ? " (" : "",
                 p->context ? p->context : "", p->context ? ")" : "", yaml_hint(p, data, len, at));
}

/* A second document ("---" twice) would be silently ignored: refuse it. */
static void check_single_document(loader *ld, yaml_parser_t *parser, const char *data, size_t len)
{
    yaml_document_t next;
    if (!yaml_parser_load(parser, &next)) {
        report_yaml_error(ld, parser, data, len);
        return;
    }
    yaml_node_t *root = yaml_document_get_root_node(&next);
    if (root)
        loader_error(ld, "%s:%zu:%zu: a config file holds one YAML document; remove this second "
                         "one (or the --- before it)", ld->file, next.start_mark.line + 1,
                     next.start_mark.column + 1);
    yaml_document_delete(&next);
}

/* Can a quoted scalar or a comment start after this byte? */
static bool yaml_token_boundary(const char *data, size_t i)
{
    return i == 0 || strchr(" \t\r\n[{,:", data[i - 1]) != NULL;
}

/* Index just past the quoted scalar opening at data[i]. */
static size_t skip_quoted(const char *data, size_t len, size_t i)
{
    char quote = data[i++];
    while (i < len && data[i] != quote)
        i += (quote == '"' && data[i] == '\\' && i + 1 < len) ? 2 : 1;
    return i + 1;
}

/* libyaml's scanner costs tokens times flow depth, so a 1 MB file of "[[[["
 * takes minutes, and its alias resolution is quadratic in anchors. This rough
 * pass (it skips quotes and comments) finds deep nesting and anchor floods
 * before libyaml sees them. Returns the offending offset, or len. */
static size_t find_parse_hazard(const char *data, size_t len, bool *too_many_anchors)
{
    size_t depth = 0, anchors = 0;
    *too_many_anchors = false;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if ((c == '"' || c == '\'') && yaml_token_boundary(data, i))
            i = skip_quoted(data, len, i) - 1;
        else if (c == '#' && yaml_token_boundary(data, i))
            while (i + 1 < len && data[i + 1] != '\n')
                i++;
        else if ((c == '[' || c == '{') && ++depth > CONFIG_MAX_FLOW_DEPTH)
            return i;
        else if ((c == ']' || c == '}') && depth > 0)
            depth--;
        else if ((c == '&' || c == '*') && yaml_token_boundary(data, i) &&
                 ++anchors > CONFIG_MAX_ANCHORS) {
            *too_many_anchors = true;
            return i;
        }
    }
    return len;
}

static void report_parse_hazard(loader *ld, const char *data, size_t at, bool anchors)
{
    size_t line = 1, column = 1;
    for (size_t i = 0; i < at; i++, column++)
        if (data[i] == '\n') {
            line++;
            column = 0;
        }
    if (anchors)
        loader_error(ld, "%s:%zu:%zu: more than %d anchors and aliases (&name, *name); a "
                     "configuration needs far fewer", ld->file, line, column, CONFIG_MAX_ANCHORS);
    else
        loader_error(ld, "%s:%zu:%zu: brackets nested more than %d levels deep; flatten this "
                     "value", ld->file, line, column, CONFIG_MAX_FLOW_DEPTH);
}

static void load_yaml(loader *ld, const char *data, size_t len)
{
    bool anchors;
    size_t deep = find_parse_hazard(data, len, &anchors);
    if (deep < len) {
        report_parse_hazard(ld, data, deep, anchors);
        return;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        ld->oom = true;
        return;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    if (!yaml_parser_load(&parser, &doc)) {
        report_yaml_error(ld, &parser, data, len);
        yaml_parser_delete(&parser);
        return;
    }
    ld->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root)
        walk_root(ld, root);
    ld->doc = NULL;
    yaml_document_delete(&doc);
    if (root)
        check_single_document(ld, &parser, data, len);
    yaml_parser_delete(&parser);
}

/* "a/b" -> "<cwd>/a/b", so the server may chdir; NULL with errno on failure. */
static char *absolute_path(const char *path)
{
    if (path[0] == '/')
        return str_dup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return NULL;
    while (path[0] == '.' && path[1] == '/')
        path += 2;
    if (strcmp(path, ".") == 0 || !*path)
        return str_dup(cwd);
    char *joined = path_join(cwd, path);
    if (!joined)
        errno = ENOMEM;
    return joined;
}

/* True when the file exists but this process may not open it (EACCES). */
static bool file_forbidden(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
        close(fd);
        return false;
    }
    return errno == EACCES;
}

/* Reads and walks the file; label names who chose it ("--config"), or NULL. */
static void load_file(loader *ld, const char *path, const char *label)
{
    char *data = NULL;
    size_t len = 0;
    cx_error ferr;
    int rc = fs_read_file(path, CONFIG_MAX_FILE_SIZE, &data, &len, &ferr);
    if (rc == CX_ENOMEM) {
        ld->oom = true;
        return;
    }
    if (rc != 0 && ld->client && file_forbidden(path)) {
        /* The installed file is 0640 root:caxton; an operator's own commands
         * still work from the defaults, the environment and the flags. */
        ld->cfg->file_unreadable = str_dup(path);
        if (!ld->cfg->file_unreadable)
            ld->oom = true;
        loader_warning(ld, "%s%s%s; using the defaults, CAXTON_* environment and flags instead",
                       label ? label : "", label ? ": " : "", ferr.msg);
        return;
    }
    if (rc != 0) {
        if (label)
            loader_error(ld, "%s: %s", label, ferr.msg);
        else
            loader_error(ld, "%s", ferr.msg);
        return;
    }
    ld->file = path;
    ld->cfg->file_path = absolute_path(path);
    if (!ld->cfg->file_path)
        ld->oom = true;
    else
        load_yaml(ld, data, len);
    free(data);
}

/* ---- flags and the final pass -------------------------------------------------- */

static void apply_flags(loader *ld, const config_flags *flags)
{
    for (size_t i = 0; i < COUNT(flag_keys); i++) {
        const void *slot = (const char *)flags + flag_keys[i].offset;
        const char *v = *(const char *const *)slot;
        if (v)
            apply_text(ld, schema_find(flag_keys[i].key), v, CONFIG_SOURCE_FLAG, flag_keys[i].flag);
    }
}

static void absolutize_paths(loader *ld)
{
    for (size_t i = 0; i < SCHEMA_COUNT; i++) {
        const config_key *k = &schema[i];
        char **slot = AT(ld->cfg, k, char *);
        if (k->type != KEY_PATH || !*slot || (*slot)[0] == '/')
            continue;
        const config_origin *o = &ld->cfg->origins[i];
        char *abs = absolute_path(*slot);
        char why[512], quoted[96];
        text_quote(*slot, quoted, sizeof quoted);
        if (!abs && errno == ENOMEM) {
            ld->oom = true;
        } else if (!abs || strlen(abs) >= PATH_MAX) {
            snprintf(why, sizeof why, "cannot make the relative path %s absolute: %s", quoted,
                     abs ? "the result is too long" : strerror(errno));
            report_value(ld, o->source, o->where, k, why);
        } else {
            free(*slot);
            *slot = abs;
            abs = NULL;
        }
        free(abs);
    }
}

/* agents.dir, memory.path, memory.backups.dir follow the final data_dir. */
static void derive_defaults(loader *ld)
{
    for (size_t i = 0; i < SCHEMA_COUNT; i++) {
        const config_key *k = &schema[i];
        if (!k->derive || ld->cfg->origins[i].source != CONFIG_SOURCE_DEFAULT || !ld->cfg->data_dir)
            continue;
        char *path = path_join(ld->cfg->data_dir, k->derive);
        if (!path) {
            ld->oom = true;
            continue;
        }
        free(*AT(ld->cfg, k, char *));
        *AT(ld->cfg, k, char *) = path;
        set_origin(ld, k, CONFIG_SOURCE_DEFAULT, "default (from server.data_dir)");
    }
}

/* Existence only: a client reading this config need not be able to read the
 * server's private key; the server itself checks the files when it loads
 * them (http_check_tls). */
static void check_exists(loader *ld, const config_key *k)
{
    const char *path = *AT_CONST(ld->cfg, k, char *);
    if (access(path, F_OK) == 0)
        return;
    const config_origin *o = &ld->cfg->origins[schema_index(k)];
    char why[PATH_MAX + 128];
    snprintf(why, sizeof why, "cannot read %s: %s", path, strerror(errno));
    report_value(ld, o->source, o->where, k, why);
}

static void check_tls(loader *ld)
{
    const config_key *cert = schema_find("api.tls.cert"), *key = schema_find("api.tls.key");
    bool has_cert = ld->cfg->api_tls_cert != NULL, has_key = ld->cfg->api_tls_key != NULL;
    if (has_cert && has_key) {
        if (!ld->client) { /* a client only needs the names (the cert as a CA file) */
            check_exists(ld, cert);
            check_exists(ld, key);
        }
    } else if (has_cert || has_key) {
        const config_key *set = has_cert ? cert : key, *missing = has_cert ? key : cert;
        const config_origin *o = &ld->cfg->origins[schema_index(set)];
        char why[256];
        snprintf(why, sizeof why, "TLS needs both a certificate and a key; set %s (or %s) too",
                 missing->path, missing->env);
        report_value(ld, o->source, o->where, set, why);
    }
}

static void finish_values(loader *ld)
{
    absolutize_paths(ld);
    derive_defaults(ld);
    check_tls(ld);
}

/* ---- loading --------------------------------------------------------------------- */

static cx_config *config_new(loader *ld)
{
    cx_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg || !(cfg->origins = calloc(SCHEMA_COUNT, sizeof *cfg->origins))) {
        free(cfg);
        return NULL;
    }
    ld->cfg = cfg;
    for (size_t i = 0; i < SCHEMA_COUNT; i++) {
        set_origin(ld, &schema[i], CONFIG_SOURCE_DEFAULT, "default");
        if (schema[i].fallback)
            apply_text(ld, &schema[i], schema[i].fallback, CONFIG_SOURCE_DEFAULT, "default");
    }
    return cfg;
}

static void loader_init(loader *ld, char *const *envp, config_diag *diag, cx_error *err)
{
    memset(ld, 0, sizeof *ld);
    ld->envp = envp;
    ld->err = err;
    ld->diag = diag ? diag : &ld->local_diag;
    memset(ld->diag, 0, sizeof *ld->diag);
    ld->budget = CONFIG_MAX_VALUES;
    ld->byte_budget = CONFIG_MAX_EXPANDED_BYTES;
    cx_error_clear(err);
}

static void note_dropped(loader *ld, bool error, size_t dropped)
{
    char *line = NULL;
    if (!dropped)
        return;
    if (asprintf(&line, "(%zu more %s not shown)", dropped, error ? "errors" : "warnings") < 0 ||
        diag_push(error ? &ld->diag->errors : &ld->diag->warnings,
                  error ? &ld->diag->error_count : &ld->diag->warning_count, line) != 0) {
        free(line);
        ld->oom = true;
    }
}

static int loader_finish(loader *ld, cx_config **out)
{
    note_dropped(ld, true, ld->errors_dropped);
    note_dropped(ld, false, ld->warnings_dropped);
    int rc = 0;
    if (!ld->cfg || ld->oom)
        rc = cx_error_set(ld->err, CX_ENOMEM, "out of memory while loading the configuration");
    else if (ld->failed)
        rc = CX_ECONFIG;
    if (rc != 0)
        config_free(ld->cfg);
    else
        *out = ld->cfg;
    if (ld->diag == &ld->local_diag)
        config_diag_free(&ld->local_diag);
    return rc;
}

/* The file to read and who chose it, or NULL for none. */
static const char *select_file(const config_flags *flags, char *const *envp, const char **label)
{
    const char *env = env_lookup(envp, "CAXTON_CONFIG");
    if (flags->config_path) {
        *label = "--config";
        return flags->config_path;
    }
    if (env && *env) {
        *label = "CAXTON_CONFIG";
        return env;
    }
    *label = "config file";
    return fs_exists(CONFIG_DEFAULT_PATH) ? CONFIG_DEFAULT_PATH : NULL;
}

int config_load(const config_flags *flags, char *const *envp, cx_config **out, config_diag *diag,
                cx_error *err)
{
    static const config_flags no_flags;
    loader ld;
    loader_init(&ld, envp, diag, err);
    *out = NULL;
    if (!flags)
        flags = &no_flags;
    ld.client = flags->client;
    if (config_new(&ld)) {
        const char *label = NULL;
        const char *path = select_file(flags, envp, &label);
        if (path)
            load_file(&ld, path, label);
        apply_env(&ld);
        check_unknown_env(&ld);
        apply_flags(&ld, flags);
        finish_values(&ld);
    }
    return loader_finish(&ld, out);
}

int config_load_file(const char *path, char *const *envp, cx_config **out, config_diag *diag,
                     cx_error *err)
{
    loader ld;
    loader_init(&ld, envp, diag, err);
    *out = NULL;
    if (config_new(&ld)) {
        if (path)
            load_file(&ld, path, NULL);
        else
            loader_error(&ld, "no config file given");
        finish_values(&ld);
    }
    return loader_finish(&ld, out);
}

void config_free(cx_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < SCHEMA_COUNT; i++) {
        value empty = {0};
        value_store(cfg, &schema[i], &empty);
    }
    free(cfg->file_path);
    free(cfg->file_unreadable);
    free(cfg->origins);
    free(cfg);
}

void config_diag_free(config_diag *diag)
{
    if (!diag)
        return;
    list_free(diag->errors, diag->error_count);
    list_free(diag->warnings, diag->warning_count);
    memset(diag, 0, sizeof *diag);
}

/* ---- showing and comparing ------------------------------------------------------ */

static bool is_secret_name(const char *name)
{
    for (size_t i = 0; i < COUNT(secret_words); i++)
        if (strcasestr(name, secret_words[i]))
            return true;
    return false;
}

/* A copy with every value under a secret-looking name replaced by "***". */
static json_t *redacted_copy(const json_t *v)
{
    if (json_is_array(v)) {
        json_t *arr = json_array();
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item) {
            if (!arr || json_array_append_new(arr, redacted_copy(item)) != 0) {
                json_decref(arr);
                return NULL;
            }
        }
        return arr;
    }
    if (!json_is_object(v))
        return json_deep_copy(v);
    json_t *obj = json_object();
    const char *name;
    const json_t *member;
    json_object_foreach((json_t *)v, name, member) {
        json_t *copy = is_secret_name(name) ? json_string("***") : redacted_copy(member);
        if (!obj || json_object_set_new(obj, name, copy) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* llm.providers: provider names are not secrets, settings inside may be. */
static json_t *object_json(const json_t *obj, bool redact)
{
    if (!redact)
        return json_deep_copy(obj);
    json_t *out = json_object();
    const char *name;
    const json_t *settings;
    json_object_foreach((json_t *)obj, name, settings) {
        if (!out || json_object_set_new(out, name, redacted_copy(settings)) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static json_t *string_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *value_json(const cx_config *cfg, const config_key *k, bool redact)
{
    char buf[32];
    switch (k->type) {
    case KEY_PATH:
    case KEY_LISTEN:
    case KEY_ENUM:
    case KEY_TEXT: return string_or_null(*AT_CONST(cfg, k, char *));
    case KEY_DURATION:
        units_format_duration(*AT_CONST(cfg, k, uint64_t), buf, sizeof buf);
        return json_string(buf);
    case KEY_SIZE:
        units_format_size(*AT_CONST(cfg, k, uint64_t), buf, sizeof buf);
        return json_string(buf);
    case KEY_INT: return json_integer(*AT_CONST(cfg, k, int64_t));
    case KEY_BOOL: return json_boolean(*AT_CONST(cfg, k, bool));
    case KEY_PATHS: {
        json_t *arr = json_array();
        size_t count = *(const size_t *)(const void *)((const char *)cfg + k->count_offset);
        for (size_t i = 0; arr && i < count; i++)
            if (json_array_append_new(arr, json_string((*AT_CONST(cfg, k, char **))[i])) != 0) {
                json_decref(arr);
                arr = NULL;
            }
        return arr;
    }
    case KEY_OBJECT: return object_json(*AT_CONST(cfg, k, json_t *), redact);
    }
    return NULL;
}

static const char *source_name(config_source source)
{
    switch (source) {
    case CONFIG_SOURCE_FILE: return "file";
    case CONFIG_SOURCE_ENV: return "env";
    case CONFIG_SOURCE_FLAG: return "flag";
    case CONFIG_SOURCE_DEFAULT: break;
    }
    return "default";
}

json_t *config_effective_json(const cx_config *cfg, bool redact)
{
    json_t *out = json_object();
    for (size_t i = 0; out && i < SCHEMA_COUNT; i++) {
        const config_origin *o = &cfg->origins[i];
        json_t *entry = json_pack("{s:o?, s:s, s:s}", "value", value_json(cfg, &schema[i], redact),
                                  "source", source_name(o->source), "where", o->where);
        if (!entry || json_object_set_new(out, schema[i].path, entry) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    return out;
}

static bool str_equal(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool value_equal(const config_key *k, const cx_config *a, const cx_config *b)
{
    switch (k->type) {
    case KEY_PATH:
    case KEY_LISTEN:
    case KEY_ENUM:
    case KEY_TEXT: return str_equal(*AT_CONST(a, k, char *), *AT_CONST(b, k, char *));
    case KEY_DURATION:
    case KEY_SIZE: return *AT_CONST(a, k, uint64_t) == *AT_CONST(b, k, uint64_t);
    case KEY_INT: return *AT_CONST(a, k, int64_t) == *AT_CONST(b, k, int64_t);
    case KEY_BOOL: return *AT_CONST(a, k, bool) == *AT_CONST(b, k, bool);
    case KEY_PATHS: {
        size_t na = *(const size_t *)(const void *)((const char *)a + k->count_offset);
        size_t nb = *(const size_t *)(const void *)((const char *)b + k->count_offset);
        for (size_t i = 0; na == nb && i < na; i++)
            if (strcmp((*AT_CONST(a, k, char **))[i], (*AT_CONST(b, k, char **))[i]) != 0)
                return false;
        return na == nb;
    }
    case KEY_OBJECT: return json_equal(*AT_CONST(a, k, json_t *), *AT_CONST(b, k, json_t *));
    }
    return false;
}

const char **config_restart_keys_changed(const cx_config *a, const cx_config *b)
{
    const char **keys = calloc(SCHEMA_COUNT + 1, sizeof *keys);
    size_t n = 0;
    for (size_t i = 0; keys && a && b && i < SCHEMA_COUNT; i++)
        if (schema[i].restart && !value_equal(&schema[i], a, b))
            keys[n++] = schema[i].path;
    return keys;
}

/* A copy of k's value in cfg, ready for value_store. */
static int value_copy(const cx_config *cfg, const config_key *k, value *v)
{
    memset(v, 0, sizeof *v);
    switch (k->type) {
    case KEY_PATH:
    case KEY_LISTEN:
    case KEY_ENUM:
    case KEY_TEXT: {
        const char *str = *AT_CONST(cfg, k, char *);
        if (str && !(v->str = str_dup(str)))
            return CX_ENOMEM;
        return 0;
    }
    case KEY_DURATION:
    case KEY_SIZE: v->u = *AT_CONST(cfg, k, uint64_t); return 0;
    case KEY_INT: v->i = *AT_CONST(cfg, k, int64_t); return 0;
    case KEY_BOOL: v->b = *AT_CONST(cfg, k, bool); return 0;
    case KEY_PATHS: {
        size_t count = *(const size_t *)(const void *)((const char *)cfg + k->count_offset);
        if (count == 0)
            return 0;
        if (!(v->list = calloc(count, sizeof *v->list)))
            return CX_ENOMEM;
        for (; v->count < count; v->count++)
            if (!(v->list[v->count] = str_dup((*AT_CONST(cfg, k, char **))[v->count]))) {
                value_discard(v);
                return CX_ENOMEM;
            }
        return 0;
    }
    case KEY_OBJECT:
        v->obj = json_deep_copy(*AT_CONST(cfg, k, json_t *));
        return v->obj ? 0 : CX_ENOMEM;
    }
    return 0;
}

int config_keep_restart_keys(cx_config *fresh, const cx_config *running)
{
    /* Everything is copied first and stored after, so that running out of
     * memory leaves fresh as it was. */
    value kept[SCHEMA_COUNT];
    memset(kept, 0, sizeof kept);
    const char *data_dir = running->data_dir;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < SCHEMA_COUNT; i++) {
        const config_key *k = &schema[i];
        if (k->restart) {
            rc = value_copy(running, k, &kept[i]);
        } else if (k->derive && fresh->origins[i].source == CONFIG_SOURCE_DEFAULT && data_dir) {
            /* A default derived from the fresh data_dir follows the kept one. */
            if (!(kept[i].str = path_join(data_dir, k->derive)))
                rc = CX_ENOMEM;
        }
    }
    if (rc != 0) {
        for (size_t i = 0; i < SCHEMA_COUNT; i++)
            value_discard(&kept[i]);
        return rc;
    }
    for (size_t i = 0; i < SCHEMA_COUNT; i++) {
        const config_key *k = &schema[i];
        if (k->restart) {
            value_store(fresh, k, &kept[i]);
            fresh->origins[i] = running->origins[i];
        } else if (kept[i].str) {
            value_store(fresh, k, &kept[i]);
        }
    }
    return 0;
}
