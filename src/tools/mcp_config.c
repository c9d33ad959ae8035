/* MCP server settings: the `tools.mcp_servers` mapping checked and turned
 * into mcp_server_config.
 *
 * As for llm.providers, one reader walks each server's mapping and both
 * reports problems and fills the settings, so `caxton config validate` and
 * the hub cannot disagree. Every problem is collected, one operator-ready
 * line each naming the key path. Values arrive as JSON strings from the YAML
 * loader or as numbers from JSON callers; both are accepted. `restart_backoff`
 * is a hidden setting (the first restart delay) that tests shorten.
 *
 * A server is either a program (`command`, with `env` and `cwd`) or a
 * Streamable HTTP endpoint (`url`, with `headers`). Header values may carry
 * credentials: no message here quotes them. */
#include "tools/mcp.h"

#include <curl/curl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/units.h"
#include "core/util.h"
#include "tools/mcp_internal.h"

#define SERVERS_ERRORS_MAX 100 /* lines reported; the count goes on */
#define SERVER_SETTINGS_MAX 32 /* keys in one server's mapping */
#define COMMAND_ARGS_MAX 256
#define TEXT_BYTES_MAX 4096    /* one argument, cwd, an environment name */
#define ENV_VARS_MAX 256
#define ENV_VALUE_MAX (32u * 1024u)
#define TIMEOUT_MIN_MS 1000u
#define TIMEOUT_MAX_MS 600000u
#define RESULT_MIN (1024u)
#define RESULT_MAX (64u * 1024u * 1024u)
#define BACKOFF_MIN_MS 10u
#define NUMBER_TEXT_MAX 64
#define URL_MAX 4096
#define HEADERS_MAX 64
#define HEADER_NAME_MAX 256
#define HEADER_VALUE_MAX 8192

#define COUNT(a) (sizeof(a) / sizeof *(a))

static const char *const known_settings[] = {
    "command", "env", "cwd", "timeout", "max_result", "url", "headers", "restart_backoff",
};

/* Headers the HTTP transport sets itself. */
static const char *const reserved_headers[] = {
    "content-type", "accept", "content-length", "transfer-encoding", "host", "expect",
    "connection", "mcp-session-id", "mcp-protocol-version", "last-event-id",
};

typedef struct checker {
    json_t *errors; /* NULL: only count */
    size_t count;
} checker;

static void check_error(checker *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void check_error(checker *ck, const char *fmt, ...)
{
    ck->count++;
    if (!ck->errors || json_array_size(ck->errors) >= SERVERS_ERRORS_MAX)
        return;
    char msg[CX_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    text_make_utf8(msg); /* a cut can split a character */
    json_array_append_new(ck->errors, json_string(msg));
}

/* How a value that is not what we wanted looks in a message. */
static void describe(const json_t *v, char *out, size_t size)
{
    if (json_is_string(v))
        text_quote(json_string_value(v), out, size);
    else if (json_is_integer(v))
        snprintf(out, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, size, "%g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(out, size, "%s", json_is_true(v) ? "true" : "false");
    else if (json_is_null(v))
        snprintf(out, size, "nothing (null)");
    else
        snprintf(out, size, "%s", json_is_array(v) ? "a list" : "a mapping");
}

bool mcp_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > MCP_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* A string without NUL bytes, or an integer written out; NULL otherwise. */
static const char *value_text(const json_t *v, char *buf, size_t size)
{
    if (json_is_string(v))
        return strlen(json_string_value(v)) == json_string_length(v) ? json_string_value(v)
                                                                      : NULL;
    if (json_is_integer(v)) {
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    return NULL;
}

/* A duration or size as a string ("30s", "1MB") or a bare number. */
static const char *value_amount(const json_t *v, char *buf, size_t size)
{
    if (json_is_real(v) && isfinite(json_real_value(v))) {
        snprintf(buf, size, "%.3f", json_real_value(v));
        return buf;
    }
    return value_text(v, buf, size);
}

static void read_duration(checker *ck, const char *name, const char *key, const json_t *v,
                          uint64_t min, uint64_t max, const char *range, uint64_t *out)
{
    char text[NUMBER_TEXT_MAX], got[96];
    const char *s = value_amount(v, text, sizeof text);
    uint64_t ms = 0;
    describe(v, got, sizeof got);
    if (!s || units_parse_duration_ms(s, &ms, NULL) != 0)
        check_error(ck, "tools.mcp_servers.%s.%s: expected a duration such as 30s, got %s", name,
                    key, got);
    else if (ms < min || ms > max)
        check_error(ck, "tools.mcp_servers.%s.%s: must be from %s, got %s", name, key, range,
                    got);
    else
        *out = ms;
}

static void read_max_result(checker *ck, const char *name, const json_t *v, uint64_t *out)
{
    char text[NUMBER_TEXT_MAX], got[96];
    const char *s = value_amount(v, text, sizeof text);
    uint64_t bytes = 0;
    describe(v, got, sizeof got);
    if (!s || units_parse_size(s, &bytes, NULL) != 0)
        check_error(ck, "tools.mcp_servers.%s.max_result: expected a size such as 1MB, got %s",
                    name, got);
    else if (bytes < RESULT_MIN || bytes > RESULT_MAX)
        check_error(ck, "tools.mcp_servers.%s.max_result: must be from 1KB to 64MB, got %s", name,
                    got);
    else
        *out = bytes;
}

static void read_command(checker *ck, const char *name, const json_t *v)
{
    char got[96], buf[NUMBER_TEXT_MAX];
    size_t n = json_array_size(v);
    if (!json_is_array(v) || n == 0 || n > COMMAND_ARGS_MAX) {
        if (json_is_array(v))
            snprintf(got, sizeof got, "a list of %zu", n);
        else
            describe(v, got, sizeof got);
        check_error(ck, "tools.mcp_servers.%s.command: expected a list of 1 to %d strings, the "
                    "program and its arguments, e.g. [npx, \"@modelcontextprotocol/server-"
                    "filesystem\", /srv/shared]; got %s", name, COMMAND_ARGS_MAX, got);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *arg = json_array_get(v, i);
        const char *s = value_text(arg, buf, sizeof buf);
        if (!s || strlen(s) > TEXT_BYTES_MAX || (i == 0 && !*s)) {
            describe(arg, got, sizeof got);
            check_error(ck, "tools.mcp_servers.%s.command[%zu]: expected %s (at most %d bytes, "
                        "no NUL), got %s", name, i, i == 0 ? "the program's name or path"
                                                           : "an argument", TEXT_BYTES_MAX, got);
        }
    }
}

static bool env_name_ok(const char *s)
{
    size_t len = strlen(s);
    return len > 0 && len <= TEXT_BYTES_MAX && !strchr(s, '=');
}

static void read_env(checker *ck, const char *name, const json_t *v)
{
    char got[96], buf[NUMBER_TEXT_MAX];
    if (!json_is_object(v) || json_object_size(v) > ENV_VARS_MAX) {
        describe(v, got, sizeof got);
        check_error(ck, "tools.mcp_servers.%s.env: expected a mapping of at most %d variables "
                    "(NAME: value), got %s", name, ENV_VARS_MAX,
                    json_is_object(v) ? "more" : got);
        return;
    }
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)v, key, value) {
        char shown[96];
        text_quote(key, shown, sizeof shown);
        const char *s = value_text(value, buf, sizeof buf);
        if (!env_name_ok(key)) {
            check_error(ck, "tools.mcp_servers.%s.env: variable name %s must be 1 to %d bytes "
                        "without '='", name, shown, TEXT_BYTES_MAX);
        } else if (!s || strlen(s) > ENV_VALUE_MAX) {
            describe(value, got, sizeof got);
            check_error(ck, "tools.mcp_servers.%s.env.%s: expected a string of at most %u bytes "
                        "(no NUL), got %s", name, shown, ENV_VALUE_MAX, got);
        }
    }
}

static void read_cwd(checker *ck, const char *name, const json_t *v, const char **out)
{
    char got[96];
    const char *s = json_is_string(v) ? value_text(v, got, sizeof got) : NULL;
    if (!s || !*s || strlen(s) > TEXT_BYTES_MAX) {
        describe(v, got, sizeof got);
        check_error(ck, "tools.mcp_servers.%s.cwd: expected a directory path (1 to %d bytes), "
                    "got %s", name, TEXT_BYTES_MAX, got);
        return;
    }
    *out = s;
}

void mcp_url_shown(const char *url, char *out, size_t size)
{
    const char *scheme = strstr(url, "://");
    const char *host = scheme ? scheme + 3 : url;
    size_t authority = strcspn(host, "/?#");
    const char *at = NULL;
    for (const char *p = host; p < host + authority; p++)
        if (*p == '@')
            at = p;
    size_t head = (size_t)(host - url);
    const char *rest = at ? at + 1 : host;
    size_t tail = strcspn(rest, "?#");
    snprintf(out, size, "%.*s%.*s", (int)(head < URL_MAX ? head : URL_MAX), url,
             (int)(tail < URL_MAX ? tail : URL_MAX), rest);
    text_make_utf8(out);
}

/* An http:// or https:// address with a host, as curl reads it. */
static bool url_ok(const char *s)
{
    if (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0)
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return false;
    CURLU *u = curl_url();
    char *host = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, s, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host;
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

static void read_url(checker *ck, const char *name, const json_t *v, const char **out)
{
    char got[96];
    const char *s = json_is_string(v) ? value_text(v, got, sizeof got) : NULL;
    if (s && strlen(s) <= URL_MAX && url_ok(s)) {
        *out = s;
        return;
    }
    if (json_is_string(v)) {
        char shown[URL_MAX + 1];
        mcp_url_shown(json_string_value(v), shown, sizeof shown);
        text_quote(shown, got, sizeof got);
    } else {
        describe(v, got, sizeof got);
    }
    check_error(ck, "tools.mcp_servers.%s.url: expected an http:// or https:// address of a "
                "Streamable HTTP MCP endpoint (at most %d bytes), e.g. "
                "http://127.0.0.1:3001/mcp; got %s", name, URL_MAX, got);
}

/* A header name: 1 to HEADER_NAME_MAX token characters (RFC 9110). */
static bool header_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > HEADER_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

static bool header_value_ok(const char *s)
{
    if (!s || strlen(s) > HEADER_VALUE_MAX)
        return false;
    for (const char *p = s; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return false;
    return true;
}

static bool header_reserved(const char *s)
{
    for (size_t i = 0; i < COUNT(reserved_headers); i++)
        if (strcasecmp(s, reserved_headers[i]) == 0)
            return true;
    return false;
}

static void read_headers(checker *ck, const char *name, const json_t *v)
{
    char got[96], buf[NUMBER_TEXT_MAX];
    if (!json_is_object(v) || json_object_size(v) > HEADERS_MAX) {
        describe(v, got, sizeof got);
        check_error(ck, "tools.mcp_servers.%s.headers: expected a mapping of at most %d HTTP "
                    "headers (Name: value), got %s", name, HEADERS_MAX,
                    json_is_object(v) ? "more" : got);
        return;
    }
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)v, key, value) {
        char shown[96];
        text_quote(key, shown, sizeof shown);
        if (!header_name_ok(key))
            check_error(ck, "tools.mcp_servers.%s.headers: %s is not an HTTP header name (1 to "
                        "%d letters, digits or !#$%%&'*+-.^_`|~)", name, shown, HEADER_NAME_MAX);
        else if (header_reserved(key))
            check_error(ck, "tools.mcp_servers.%s.headers.%s: Caxton sets this header itself; "
                        "remove it", name, key);
        else if (!header_value_ok(value_text(value, buf, sizeof buf)))
            check_error(ck, "tools.mcp_servers.%s.headers.%s: expected a string of at most %d "
                        "bytes without line breaks or control characters (the value is not "
                        "shown)", name, key, HEADER_VALUE_MAX);
    }
}

/* What one server's mapping says; pointers into the JSON. */
typedef struct server_fields {
    const json_t *command;
    const json_t *env;
    const char *cwd;
    bool has_url, has_headers, has_cwd;
    const char *url;
    const json_t *headers;
    uint64_t timeout_ms;
    uint64_t max_result;
    uint64_t backoff_ms;
} server_fields;

static void read_unknown(checker *ck, const char *name, const char *key)
{
    char shown[96];
    text_quote(key, shown, sizeof shown);
    const char *near = text_is_utf8(key, strlen(key))
                           ? text_suggest(key, known_settings, COUNT(known_settings))
                           : NULL;
    check_error(ck, "tools.mcp_servers.%s: unknown setting %s%s%s%s (known: command, env, cwd, "
                "url, headers, timeout, max_result)", name, shown, near ? "; did you mean '" : "",
                near ? near : "", near ? "'?" : "");
}

static void read_setting(checker *ck, const char *name, const char *key, const json_t *v,
                         server_fields *f)
{
    if (strcmp(key, "command") == 0) {
        f->command = v;
        read_command(ck, name, v);
    } else if (strcmp(key, "env") == 0) {
        f->env = v;
        read_env(ck, name, v);
    } else if (strcmp(key, "cwd") == 0) {
        f->has_cwd = true;
        read_cwd(ck, name, v, &f->cwd);
    } else if (strcmp(key, "timeout") == 0) {
        read_duration(ck, name, key, v, TIMEOUT_MIN_MS, TIMEOUT_MAX_MS, "1s to 10m",
                      &f->timeout_ms);
    } else if (strcmp(key, "max_result") == 0) {
        read_max_result(ck, name, v, &f->max_result);
    } else if (strcmp(key, "restart_backoff") == 0) {
        read_duration(ck, name, key, v, BACKOFF_MIN_MS, MCP_BACKOFF_MAX_MS, "10ms to 60s",
                      &f->backoff_ms);
    } else if (strcmp(key, "url") == 0) {
        f->has_url = true;
        read_url(ck, name, v, &f->url);
    } else if (strcmp(key, "headers") == 0) {
        f->has_headers = true;
        f->headers = v;
        read_headers(ck, name, v);
    } else {
        read_unknown(ck, name, key);
    }
}

/* A server is a program or an HTTP endpoint, with only that kind's settings. */
static void read_kind(checker *ck, const char *name, const server_fields *f)
{
    if (f->command && f->has_url)
        check_error(ck, "tools.mcp_servers.%s: both command and url; a server is either a "
                    "program (command) or an HTTP endpoint (url)", name);
    else if (!f->command && !f->has_url)
        check_error(ck, "tools.mcp_servers.%s: no command or url; add e.g. command: [npx, "
                    "\"@modelcontextprotocol/server-filesystem\", /srv/shared] or url: "
                    "http://127.0.0.1:3001/mcp", name);
    else if (f->has_url && (f->env || f->has_cwd))
        check_error(ck, "tools.mcp_servers.%s: env and cwd apply to a command, not to a url "
                    "server; remove them", name);
    else if (f->command && f->has_headers)
        check_error(ck, "tools.mcp_servers.%s: headers apply to a url server, not to a "
                    "command; remove them", name);
}

/* Reads one server; true when it has no problem. */
static bool read_server(checker *ck, const char *name, const json_t *obj, server_fields *f)
{
    size_t before = ck->count;
    *f = (server_fields){.timeout_ms = MCP_DEFAULT_TIMEOUT_MS,
                         .max_result = MCP_DEFAULT_MAX_RESULT,
                         .backoff_ms = MCP_BACKOFF_DEFAULT_MS};
    char got[96];
    if (!mcp_name_valid(name, strlen(name))) {
        text_quote(name, got, sizeof got);
        check_error(ck, "tools.mcp_servers: server name %s must be 1 to %d letters, digits, '_' "
                    "or '-' (it prefixes its tools: name.tool)", got, MCP_NAME_MAX);
        return false;
    }
    if (json_is_null(obj))
        obj = NULL; /* `files:` with nothing under it */
    if (obj && !json_is_object(obj)) {
        describe(obj, got, sizeof got);
        check_error(ck, "tools.mcp_servers.%s: expected a mapping of settings (command, env, "
                    "...), got %s", name, got);
        return false;
    }
    if (obj && json_object_size(obj) > SERVER_SETTINGS_MAX) {
        check_error(ck, "tools.mcp_servers.%s: more than %d settings", name,
                    SERVER_SETTINGS_MAX);
        return false;
    }
    const char *key;
    const json_t *v;
    if (obj)
        json_object_foreach((json_t *)obj, key, v) read_setting(ck, name, key, v, f);
    read_kind(ck, name, f);
    return ck->count == before;
}

static void check_all(checker *ck, const json_t *servers)
{
    if (!servers || json_is_null(servers))
        return; /* no servers */
    if (!json_is_object(servers)) {
        char got[96];
        describe(servers, got, sizeof got);
        check_error(ck, "tools.mcp_servers: expected a mapping of server names to settings, got "
                    "%s", got);
        return;
    }
    if (json_object_size(servers) > MCP_SERVERS_MAX) {
        check_error(ck, "tools.mcp_servers: %zu servers, more than the %d this version allows",
                    json_object_size(servers), MCP_SERVERS_MAX);
        return;
    }
    const char *name;
    const json_t *obj;
    json_object_foreach((json_t *)servers, name, obj) {
        server_fields f;
        read_server(ck, name, obj, &f);
    }
}

size_t mcp_servers_check(const json_t *servers, json_t **errors)
{
    checker ck = {.errors = errors ? json_array() : NULL};
    check_all(&ck, servers);
    if (ck.errors && ck.count > json_array_size(ck.errors)) {
        char msg[96];
        snprintf(msg, sizeof msg, "tools.mcp_servers: %zu more problems not shown",
                 ck.count - json_array_size(ck.errors));
        json_array_append_new(ck.errors, json_string(msg));
    }
    if (errors)
        *errors = ck.errors;
    return ck.count;
}

/* ---- Building -------------------------------------------------------------------------------- */

static void strings_free(char **list)
{
    for (size_t i = 0; list && list[i]; i++)
        free(list[i]);
    free(list);
}

/* Frees lines that may carry a credential, wiping them first. */
static void secrets_free(char **list)
{
    for (size_t i = 0; list && list[i]; i++) {
        volatile char *p = list[i];
        while (*p)
            *p++ = '\0';
    }
    strings_free(list);
}

void mcp_server_config_release(mcp_server_config *cfg)
{
    if (!cfg || --cfg->refs > 0)
        return;
    free(cfg->name);
    strings_free(cfg->argv);
    strings_free(cfg->env);
    free(cfg->cwd);
    free(cfg->url);
    free(cfg->url_shown);
    secrets_free(cfg->headers);
    json_decref(cfg->source);
    free(cfg);
}

static char **argv_copy(const json_t *command)
{
    size_t n = json_array_size(command);
    char **argv = calloc(n + 1, sizeof *argv);
    char buf[NUMBER_TEXT_MAX];
    for (size_t i = 0; argv && i < n; i++) {
        if (!(argv[i] = str_dup(value_text(json_array_get(command, i), buf, sizeof buf)))) {
            strings_free(argv);
            return NULL;
        }
    }
    return argv;
}

/* "Name: value" lines of the headers mapping. */
static char **headers_copy(const json_t *headers)
{
    char **list = calloc(json_object_size(headers) + 1, sizeof *list);
    char buf[NUMBER_TEXT_MAX];
    const char *key;
    const json_t *value;
    size_t i = 0;
    if (!list)
        return NULL;
    json_object_foreach((json_t *)headers, key, value) {
        strbuf sb;
        strbuf_init(&sb);
        if (strbuf_appendf(&sb, "%s: %s", key, value_text(value, buf, sizeof buf)) != 0) {
            strbuf_free(&sb);
            secrets_free(list);
            return NULL;
        }
        list[i++] = strbuf_detach(&sb);
    }
    return list;
}

static char **env_copy(const json_t *env)
{
    char **list = calloc(json_object_size(env) + 1, sizeof *list);
    char buf[NUMBER_TEXT_MAX];
    const char *key;
    const json_t *value;
    size_t i = 0;
    if (!list)
        return NULL;
    json_object_foreach((json_t *)env, key, value) {
        strbuf sb;
        strbuf_init(&sb);
        if (strbuf_appendf(&sb, "%s=%s", key, value_text(value, buf, sizeof buf)) != 0) {
            strbuf_free(&sb);
            strings_free(list);
            return NULL;
        }
        list[i++] = strbuf_detach(&sb);
    }
    return list;
}

static mcp_server_config *config_new(const char *name, const json_t *obj, const server_fields *f)
{
    mcp_server_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
    cfg->refs = 1;
    cfg->timeout_ms = f->timeout_ms;
    cfg->max_result = f->max_result;
    cfg->restart_backoff_ms = f->backoff_ms;
    cfg->name = str_dup(name);
    cfg->argv = f->command ? argv_copy(f->command) : NULL;
    cfg->env = f->env ? env_copy(f->env) : calloc(1, sizeof *cfg->env);
    cfg->cwd = f->cwd ? str_dup(f->cwd) : NULL;
    cfg->source = obj ? json_deep_copy(obj) : json_object();
    if (f->url) {
        char shown[URL_MAX + 1];
        mcp_url_shown(f->url, shown, sizeof shown);
        cfg->url = str_dup(f->url);
        cfg->url_shown = str_dup(shown);
    }
    cfg->headers = f->headers ? headers_copy(f->headers) : calloc(1, sizeof *cfg->headers);
    if (!cfg->name || (f->command && !cfg->argv) || !cfg->env || (f->cwd && !cfg->cwd) ||
        !cfg->source || (f->url && (!cfg->url || !cfg->url_shown)) || !cfg->headers) {
        mcp_server_config_release(cfg);
        return NULL;
    }
    return cfg;
}

int mcp_configs_build(const json_t *servers, mcp_server_config ***out, size_t *count,
                      cx_error *err)
{
    *out = NULL;
    *count = 0;
    json_t *errors = NULL;
    size_t problems = mcp_servers_check(servers, &errors);
    if (problems > 0) {
        const char *first = json_string_value(json_array_get(errors, 0));
        cx_error_set(err, CX_ECONFIG, "%s%s", first ? first : "tools.mcp_servers: invalid",
                     problems > 1 ? " (and more problems; run `caxton config validate`)" : "");
        json_decref(errors);
        return CX_ECONFIG;
    }
    json_decref(errors);
    size_t n = json_is_object(servers) ? json_object_size(servers) : 0;
    mcp_server_config **list = calloc(n ? n : 1, sizeof *list);
    if (!list)
        return cx_error_set(err, CX_ENOMEM, "out of memory reading tools.mcp_servers");
    const char *name;
    const json_t *obj;
    size_t i = 0;
    json_object_foreach((json_t *)servers, name, obj) { /* none when servers is not an object */
        checker ck = {0};
        server_fields f;
        const json_t *mapping = json_is_object(obj) ? obj : NULL;
        if (!read_server(&ck, name, mapping, &f) || !(list[i] = config_new(name, mapping, &f))) {
            for (size_t j = 0; j < i; j++)
                mcp_server_config_release(list[j]);
            free(list);
            return cx_error_set(err, CX_ENOMEM, "out of memory reading tools.mcp_servers.%s",
                                name);
        }
        i++;
    }
    *out = list;
    *count = n;
    return 0;
}
