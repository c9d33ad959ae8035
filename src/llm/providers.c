/* Provider settings: the `llm.providers` object checked and turned into
 * llm_settings.
 *
 * One reader walks each provider's mapping and both reports problems and
 * fills the settings, so the check (config validation, `caxton config
 * validate`) and the build (client start, SIGHUP) cannot disagree. Every
 * problem is collected, one operator-ready line each, so a file is fixed in
 * one pass. Values arrive as JSON strings from the YAML loader or as numbers
 * from JSON callers; both are accepted. api_key values are secrets: no
 * message quotes them, and the memory holding them is wiped when freed.
 *
 * `fallback` lists are checked across providers once every provider is
 * read: each name must exist, must not be the provider itself, must have a
 * `model` of its own (a fallback answers with its own model, never the
 * agent's), and following the lists must never lead back to where it
 * started, since the client follows them transitively. */
#include "llm/llm.h"

#include <curl/curl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/units.h"
#include "core/util.h"
#include "llm/llm_internal.h"

#define PROVIDERS_ERRORS_MAX 100     /* lines reported; the count goes on */
#define PROVIDER_SETTINGS_MAX 32     /* keys in one provider's mapping */
#define PROVIDER_URL_MAX 2048
#define PROVIDER_KEY_MAX 4096
#define PROVIDER_MODEL_MAX 256
#define PROVIDER_TIMEOUT_MIN_MS 1000u
#define PROVIDER_TIMEOUT_MAX_MS 600000u
#define PROVIDER_TIMEOUT_DEFAULT_MS 30000u
#define PROVIDER_RETRIES_MAX 10u
#define PROVIDER_RETRIES_DEFAULT 3u
#define PROVIDER_CONCURRENCY_MAX 1024u
#define PROVIDER_CONCURRENCY_DEFAULT 16u

#define COUNT(a) (sizeof(a) / sizeof *(a))

static const char *const known_settings[] = {
    "type", "base_url", "api_key", "model", "timeout", "retries", "max_concurrency", "fallback",
};
static const char *const known_types[] = {"openai", "anthropic", "ollama"};
static const char known_list[] = "type, base_url, api_key, model, timeout, retries, "
                                 "max_concurrency, fallback";

/* Collects problems; build mode passes no array and only counts. */
typedef struct checker {
    json_t *errors;
    size_t count;
    bool oom;
} checker;

static void check_error(checker *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void check_error(checker *ck, const char *fmt, ...)
{
    ck->count++;
    if (!ck->errors || json_array_size(ck->errors) >= PROVIDERS_ERRORS_MAX)
        return;
    char msg[CX_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    text_make_utf8(msg); /* a cut can split a character */
    if (json_array_append_new(ck->errors, json_string(msg)) != 0)
        ck->oom = true;
}

/* How a value that is not what we wanted looks in a message. */
static void describe_value(const json_t *v, char *out, size_t size)
{
    if (json_is_string(v))
        text_quote(json_string_value(v), out, size);
    else if (json_is_integer(v))
        snprintf(out, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, size, "%g", json_real_value(v));
    else if (json_is_true(v) || json_is_false(v))
        snprintf(out, size, "%s", json_is_true(v) ? "true" : "false");
    else if (json_is_null(v))
        snprintf(out, size, "nothing (null)");
    else
        snprintf(out, size, "%s", json_is_array(v) ? "a list" : "a mapping");
}

/* A whole number from a JSON integer, an integral real or a string of
 * digits. False when it is none of those or above max. */
static bool value_whole(const json_t *v, uint64_t max, uint64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0 || (uint64_t)n > max)
            return false;
        *out = (uint64_t)n;
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 0 && d <= (double)max) || floor(d) != d)
            return false;
        *out = (uint64_t)d;
        return true;
    }
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    size_t len = strlen(s);
    if (len == 0 || len > 9 || strspn(s, "0123456789") != len)
        return false;
    uint64_t n = strtoull(s, NULL, 10);
    if (n > max)
        return false;
    *out = n;
    return true;
}

static void read_count(checker *ck, const char *name, const char *key, const json_t *v,
                       unsigned min, unsigned max, unsigned *out)
{
    uint64_t n = 0;
    if (value_whole(v, UINT32_MAX, &n) && n >= min && n <= max) {
        *out = (unsigned)n;
        return;
    }
    char got[96];
    describe_value(v, got, sizeof got);
    check_error(ck, "llm.providers.%s.%s: expected a whole number from %u to %u, got %s", name,
                key, min, max, got);
}

static void read_timeout(checker *ck, const char *name, const json_t *v, uint64_t *out)
{
    char text[64], got[96];
    const char *s = NULL;
    if (json_is_string(v)) {
        s = json_string_value(v);
    } else if (json_is_integer(v)) {
        snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
        s = text;
    } else if (json_is_real(v) && isfinite(json_real_value(v))) {
        snprintf(text, sizeof text, "%.3f", json_real_value(v));
        s = text;
    }
    uint64_t ms = 0;
    describe_value(v, got, sizeof got);
    if (!s || units_parse_duration_ms(s, &ms, NULL) != 0) {
        check_error(ck, "llm.providers.%s.timeout: expected a duration such as 30s, got %s", name,
                    got);
    } else if (ms < PROVIDER_TIMEOUT_MIN_MS || ms > PROVIDER_TIMEOUT_MAX_MS) {
        check_error(ck, "llm.providers.%s.timeout: must be from 1s to 10m (per attempt), got %s",
                    name, got);
    } else {
        *out = ms;
    }
}

/* True when every byte is printable ASCII or part of a multi-byte character. */
static bool text_is_printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return text_is_utf8(s, strlen(s));
}

static bool url_part_present(CURLU *u, CURLUPart part)
{
    char *value = NULL;
    CURLUcode rc = curl_url_get(u, part, &value, 0);
    bool present = rc == CURLUE_OK && value && *value;
    curl_free(value);
    return present;
}

static const char url_has_credentials[] =
    "must not contain a user name or password (put the key in api_key)";

/* NULL when the URL is acceptable, else what is wrong with it. */
static const char *url_problem(const char *text)
{
    if (strlen(text) > PROVIDER_URL_MAX)
        return "is longer than 2048 bytes";
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return "contains spaces, control characters or non-ASCII bytes";
    CURLU *u = curl_url();
    if (!u)
        return "could not be checked (out of memory)";
    const char *problem = NULL;
    char *scheme = NULL;
    if (curl_url_set(u, CURLUPART_URL, text, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
        problem = "is not a URL";
    else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)
        problem = "must start with http:// or https://";
    else if (!url_part_present(u, CURLUPART_HOST))
        problem = "has no host name";
    else if (url_part_present(u, CURLUPART_USER) || url_part_present(u, CURLUPART_PASSWORD))
        problem = url_has_credentials;
    else if (url_part_present(u, CURLUPART_QUERY) || url_part_present(u, CURLUPART_FRAGMENT))
        problem = "must not have a ?query or #fragment (the API path is appended to it)";
    curl_free(scheme);
    curl_url_cleanup(u);
    return problem;
}

static void read_base_url(checker *ck, const char *name, const json_t *v,
                          const llm_protocol *protocol, const char **out)
{
    char got[96];
    describe_value(v, got, sizeof got);
    const char *problem = json_is_string(v) ? url_problem(json_string_value(v)) : "";
    if (!problem)
        *out = json_string_value(v);
    else if (problem == url_has_credentials) /* never quoted back: it holds a secret */
        check_error(ck, "llm.providers.%s.base_url: %s", name, problem);
    else
        check_error(ck, "llm.providers.%s.base_url: %s%s%s; expected a URL such as %s", name,
                    got, *problem ? " " : " is not a string", problem,
                    (protocol ? protocol : &llm_protocol_openai)->default_base_url);
}

static void read_api_key(checker *ck, const char *name, const json_t *v, const char **out)
{
    if (!json_is_string(v)) {
        check_error(ck, "llm.providers.%s.api_key: expected a string (the key, or \"${VARIABLE}\" "
                        "to read it from the environment)", name);
        return;
    }
    const char *key = json_string_value(v);
    if (strlen(key) > PROVIDER_KEY_MAX) {
        check_error(ck, "llm.providers.%s.api_key: longer than %u bytes; check the value", name,
                    PROVIDER_KEY_MAX);
        return;
    }
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        if (*p < 0x21 || *p >= 0x7f) {
            check_error(ck, "llm.providers.%s.api_key: contains spaces, control characters or "
                            "non-ASCII bytes; check the value (it is not shown here)", name);
            return;
        }
    *out = key;
}

static void read_model(checker *ck, const char *name, const json_t *v, const char **out)
{
    char got[96];
    describe_value(v, got, sizeof got);
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (!s || !*s || strlen(s) > PROVIDER_MODEL_MAX || !text_is_printable(s))
        check_error(ck, "llm.providers.%s.model: expected a model name such as gpt-4o-mini "
                        "(1 to %u printable characters), got %s", name, PROVIDER_MODEL_MAX, got);
    else
        *out = s;
}

/* The type: written, or implied by a provider named after one. */
static void read_type(checker *ck, const char *name, const json_t *v,
                      const llm_protocol **out)
{
    if (!v) {
        *out = llm_protocol_find(name);
        if (!*out)
            check_error(ck, "llm.providers.%s.type: missing; add `type: openai` (for any "
                        "OpenAI-compatible server), `type: anthropic` or `type: ollama`, or "
                        "name the provider after its type", name);
        return;
    }
    const char *type = json_is_string(v) ? json_string_value(v) : NULL;
    *out = llm_protocol_find(type);
    if (*out)
        return;
    char got[96];
    describe_value(v, got, sizeof got);
    const char *near = type ? text_suggest(type, known_types, COUNT(known_types)) : NULL;
    check_error(ck, "llm.providers.%s.type: expected openai, anthropic or ollama, got %s%s%s%s",
                name, got, near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
}

/* A provider name usable in messages, metrics and agent files. */
static bool name_ok(const char *name)
{
    size_t len = strlen(name);
    return len > 0 && len <= LLM_PROVIDER_NAME_MAX &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
               len;
}

/* What one provider's mapping says; pointers into the JSON. */
typedef struct provider_fields {
    const llm_protocol *protocol;
    const char *base_url;
    const char *api_key;
    const char *model;
    uint64_t timeout_ms;
    unsigned retries;
    unsigned max_concurrency;
    const json_t *fallback; /* a list of names (bad entries reported), or NULL */
} provider_fields;

static void read_fallback(checker *ck, const char *name, const json_t *v, const json_t **out)
{
    if (!json_is_array(v)) {
        char got[96];
        describe_value(v, got, sizeof got);
        check_error(ck, "llm.providers.%s.fallback: expected a list of provider names such as "
                    "[local], got %s", name, got);
        return;
    }
    if (json_array_size(v) >= LLM_PROVIDERS_MAX) {
        check_error(ck, "llm.providers.%s.fallback: %zu names, more than the %d other providers "
                    "a configuration can have", name, json_array_size(v), LLM_PROVIDERS_MAX - 1);
        return;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *item = json_array_get(v, i);
        const char *other = json_string_value(item);
        char got[96];
        describe_value(item, got, sizeof got);
        if (!other || !*other) {
            check_error(ck, "llm.providers.%s.fallback[%zu]: expected a provider name, got %s",
                        name, i, got);
            continue;
        }
        if (strcmp(other, name) == 0) {
            check_error(ck, "llm.providers.%s.fallback: '%s' is this provider itself; name "
                        "other providers to try when it fails", name, name);
            continue;
        }
        for (size_t j = 0; j < i; j++)
            if (json_is_string(json_array_get(v, j)) &&
                strcmp(json_string_value(json_array_get(v, j)), other) == 0) {
                check_error(ck, "llm.providers.%s.fallback: %s is listed twice", name, got);
                break;
            }
    }
    *out = v; /* the cross checks skip the entries reported here */
}

static void read_setting(checker *ck, const char *name, const char *key, const json_t *v,
                         provider_fields *f)
{
    if (strcmp(key, "type") == 0)
        return; /* read first, by read_provider */
    if (strcmp(key, "base_url") == 0)
        read_base_url(ck, name, v, f->protocol, &f->base_url);
    else if (strcmp(key, "api_key") == 0)
        read_api_key(ck, name, v, &f->api_key);
    else if (strcmp(key, "model") == 0)
        read_model(ck, name, v, &f->model);
    else if (strcmp(key, "timeout") == 0)
        read_timeout(ck, name, v, &f->timeout_ms);
    else if (strcmp(key, "retries") == 0)
        read_count(ck, name, key, v, 0, PROVIDER_RETRIES_MAX, &f->retries);
    else if (strcmp(key, "max_concurrency") == 0)
        read_count(ck, name, key, v, 1, PROVIDER_CONCURRENCY_MAX, &f->max_concurrency);
    else if (strcmp(key, "fallback") == 0)
        read_fallback(ck, name, v, &f->fallback);
    else {
        char shown[96];
        text_quote(key, shown, sizeof shown);
        const char *near = text_is_utf8(key, strlen(key))
                               ? text_suggest(key, known_settings, COUNT(known_settings))
                               : NULL;
        check_error(ck, "llm.providers.%s: unknown setting %s%s%s%s (known: %s)", name, shown,
                    near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "",
                    known_list);
    }
}

/* Reads one provider; returns true when it has no problem. */
static bool read_provider(checker *ck, const char *name, const json_t *obj, provider_fields *f)
{
    size_t before = ck->count;
    *f = (provider_fields){.timeout_ms = PROVIDER_TIMEOUT_DEFAULT_MS,
                           .retries = PROVIDER_RETRIES_DEFAULT,
                           .max_concurrency = PROVIDER_CONCURRENCY_DEFAULT};
    if (!name_ok(name)) {
        char shown[96];
        text_quote(name, shown, sizeof shown);
        check_error(ck, "llm.providers: provider name %s must be 1 to %d letters, digits, '.', "
                    "'_' or '-'", shown, LLM_PROVIDER_NAME_MAX);
        return false;
    }
    if (json_is_null(obj))
        obj = NULL; /* `openai:` with nothing under it */
    else if (!json_is_object(obj)) {
        char got[96];
        describe_value(obj, got, sizeof got);
        check_error(ck, "llm.providers.%s: expected a mapping of settings (type, base_url, ...), "
                    "got %s", name, got);
        return false;
    }
    if (obj && json_object_size(obj) > PROVIDER_SETTINGS_MAX) {
        check_error(ck, "llm.providers.%s: more than %d settings", name, PROVIDER_SETTINGS_MAX);
        return false;
    }
    read_type(ck, name, obj ? json_object_get(obj, "type") : NULL, &f->protocol);
    const char *key;
    const json_t *v;
    if (obj)
        json_object_foreach((json_t *)obj, key, v) read_setting(ck, name, key, v, f);
    if (!f->base_url && f->protocol)
        f->base_url = f->protocol->default_base_url;
    return ck->count == before;
}

/* One provider as the fallback checks see it. */
typedef struct fallback_node {
    const char *name;
    const json_t *fallback; /* checked names, or NULL */
    bool has_model;
    int mark; /* 0 not visited, 1 on the current path, 2 done */
} fallback_node;

static size_t node_find(const fallback_node *nodes, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(nodes[i].name, name) == 0)
            return i;
    return n;
}

/* The k-th name of a node's list, or NULL when read_fallback already
 * reported it (not a name, the provider itself, a repeat). */
static const char *fallback_name(const fallback_node *node, size_t k)
{
    const char *other = json_string_value(json_array_get(node->fallback, k));
    if (!other || !*other || strcmp(other, node->name) == 0)
        return NULL;
    for (size_t i = 0; i < k; i++) {
        const char *earlier = json_string_value(json_array_get(node->fallback, i));
        if (earlier && strcmp(earlier, other) == 0)
            return NULL;
    }
    return other;
}

/* Every name a fallback list gives must be another provider with a model. */
static void check_fallback_targets(checker *ck, const fallback_node *nodes, size_t n)
{
    const char *names[LLM_PROVIDERS_MAX];
    for (size_t i = 0; i < n; i++)
        names[i] = nodes[i].name;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < json_array_size(nodes[i].fallback); k++) {
            const char *other = fallback_name(&nodes[i], k);
            if (!other)
                continue;
            size_t j = node_find(nodes, n, other);
            char shown[96];
            text_quote(other, shown, sizeof shown);
            if (j == n) {
                const char *near = text_is_utf8(other, strlen(other))
                                       ? text_suggest(other, names, n)
                                       : NULL;
                check_error(ck, "llm.providers.%s.fallback: no provider named %s%s%s%s; add it "
                            "under llm.providers or remove it from the list", nodes[i].name,
                            shown, near ? " (did you mean '" : "", near ? near : "",
                            near ? "'?)" : "");
            } else if (!nodes[j].has_model) {
                check_error(ck, "llm.providers.%s.fallback: '%s' has no model; a fallback "
                            "provider answers with its own model, never the agent's, so set "
                            "llm.providers.%s.model", nodes[i].name, other, other);
            }
        }
    }
}

/* Depth first along the fallback lists; a name already on the path closes
 * a loop, reported once with the path. */
static void check_fallback_loops(checker *ck, fallback_node *nodes, size_t n, size_t at,
                                 size_t *path, size_t depth)
{
    nodes[at].mark = 1;
    path[depth] = at;
    for (size_t k = 0; k < json_array_size(nodes[at].fallback); k++) {
        const char *other = fallback_name(&nodes[at], k);
        size_t j = other ? node_find(nodes, n, other) : n;
        if (j == n)
            continue; /* reported by read_fallback or the target check */
        if (nodes[j].mark == 0) {
            check_fallback_loops(ck, nodes, n, j, path, depth + 1);
            continue;
        }
        if (nodes[j].mark != 1)
            continue;
        char loop[LLM_PROVIDERS_MAX * (LLM_PROVIDER_NAME_MAX + 4) + 1] = "";
        size_t used = 0, from = 0;
        while (path[from] != j)
            from++;
        for (size_t p = from; p <= depth; p++)
            used += (size_t)snprintf(loop + used, sizeof loop - used, "%s -> ",
                                     nodes[path[p]].name);
        snprintf(loop + used, sizeof loop - used, "%s", other);
        check_error(ck, "llm.providers.%s.fallback: '%s' leads back to itself (%s); a fallback "
                    "chain must not loop, remove one of these entries", nodes[at].name, other,
                    loop);
    }
    nodes[at].mark = 2;
}

static void check_all(checker *ck, const json_t *providers)
{
    if (!json_is_object(providers)) {
        char got[96] = "nothing";
        if (providers)
            describe_value(providers, got, sizeof got);
        check_error(ck, "llm.providers: expected a mapping of provider names to settings, got %s",
                    got);
        return;
    }
    if (json_object_size(providers) > LLM_PROVIDERS_MAX) {
        check_error(ck, "llm.providers: %zu providers, more than the %d this version allows",
                    json_object_size(providers), LLM_PROVIDERS_MAX);
        return;
    }
    fallback_node nodes[LLM_PROVIDERS_MAX];
    size_t n = 0;
    const char *name;
    const json_t *obj;
    json_object_foreach((json_t *)providers, name, obj) {
        provider_fields f;
        read_provider(ck, name, obj, &f);
        if (name_ok(name)) /* a bad name is reported, and no fallback can reach it */
            nodes[n++] = (fallback_node){.name = name, .fallback = f.fallback,
                                         .has_model = f.model != NULL};
    }
    check_fallback_targets(ck, nodes, n);
    size_t path[LLM_PROVIDERS_MAX];
    for (size_t i = 0; i < n; i++)
        if (nodes[i].mark == 0)
            check_fallback_loops(ck, nodes, n, i, path, 0);
}

size_t llm_providers_check(const json_t *providers, json_t **errors)
{
    checker ck = {.errors = json_array()};
    check_all(&ck, providers);
    if (ck.errors && ck.count > json_array_size(ck.errors)) {
        size_t more = ck.count - json_array_size(ck.errors);
        char msg[96];
        snprintf(msg, sizeof msg, "llm.providers: %zu more problems not shown", more);
        json_array_append_new(ck.errors, json_string(msg));
    }
    if (errors)
        *errors = ck.errors;
    else
        json_decref(ck.errors);
    return ck.count;
}

const char *llm_provider_type(const json_t *providers, const char *name)
{
    const json_t *obj = name ? json_object_get(providers, name) : NULL;
    if (!obj)
        return NULL;
    const json_t *type = json_object_get(obj, "type"); /* obj may be null: `openai:` */
    const llm_protocol *p = llm_protocol_find(type ? json_string_value(type) : name);
    return p ? p->type : NULL;
}

const char *llm_provider_first_of_type(const json_t *providers, const char *type)
{
    const char *name;
    const json_t *obj;
    json_object_foreach((json_t *)providers, name, obj) {
        const char *t = llm_provider_type(providers, name);
        if (t && type && strcmp(t, type) == 0)
            return name;
    }
    return NULL;
}

/* ---- Building -------------------------------------------------------------------------------- */

static void wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
    free(s);
}

void llm_settings_release(llm_settings *s)
{
    if (!s || --s->refs > 0)
        return;
    free(s->name);
    free(s->base_url);
    free(s->url);
    free(s->embed_url);
    wipe_free(s->api_key);
    free(s->model);
    for (size_t i = 0; i < s->fallback_count; i++)
        free(s->fallback[i]);
    free(s->fallback);
    free(s);
}

void llm_settings_release_all(llm_settings **list, size_t count)
{
    for (size_t i = 0; list && i < count; i++)
        llm_settings_release(list[i]);
    free(list);
}

static llm_settings *settings_new(const char *name, const provider_fields *f)
{
    llm_settings *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->refs = 1;
    s->protocol = f->protocol;
    s->type = f->protocol->type;
    s->timeout_ms = f->timeout_ms;
    s->retries = f->retries;
    s->max_concurrency = f->max_concurrency;
    s->name = str_dup(name);
    s->base_url = str_dup(f->base_url);
    s->model = str_dup(f->model);
    s->api_key = f->api_key && *f->api_key ? str_dup(f->api_key) : NULL;
    bool ok = s->name && s->base_url && (!f->model || s->model) &&
              (!f->api_key || !*f->api_key || s->api_key);
    size_t fallbacks = json_array_size(f->fallback);
    if (ok && fallbacks > 0) {
        s->fallback = calloc(fallbacks, sizeof *s->fallback);
        ok = s->fallback != NULL;
        for (size_t i = 0; ok && i < fallbacks; i++) {
            s->fallback[i] = str_dup(json_string_value(json_array_get(f->fallback, i)));
            ok = s->fallback[i] != NULL;
            s->fallback_count++;
        }
    }
    if (ok) {
        size_t len = strlen(s->base_url);
        while (len > 0 && s->base_url[len - 1] == '/')
            s->base_url[--len] = '\0';
        strbuf sb;
        strbuf_init(&sb);
        ok = strbuf_appendf(&sb, "%s%s", s->base_url, s->protocol->path) == 0;
        s->url = ok ? strbuf_detach(&sb) : NULL;
        strbuf_free(&sb);
    }
    if (ok && s->protocol->embed_path) {
        strbuf sb;
        strbuf_init(&sb);
        ok = strbuf_appendf(&sb, "%s%s", s->base_url, s->protocol->embed_path) == 0;
        s->embed_url = ok ? strbuf_detach(&sb) : NULL;
        strbuf_free(&sb);
    }
    if (!ok) {
        llm_settings_release(s);
        return NULL;
    }
    return s;
}

int llm_settings_build(const json_t *providers, llm_settings ***out, size_t *count,
                       cx_error *err)
{
    *out = NULL;
    *count = 0;
    json_t *errors = NULL;
    size_t problems = llm_providers_check(providers, &errors);
    if (problems > 0) {
        const char *first = json_string_value(json_array_get(errors, 0));
        cx_error_set(err, CX_ECONFIG, "%s%s", first ? first : "llm.providers: invalid",
                     problems > 1 ? " (and more problems; run `caxton config validate`)" : "");
        json_decref(errors);
        return CX_ECONFIG;
    }
    json_decref(errors);
    size_t n = json_object_size(providers);
    llm_settings **list = calloc(n ? n : 1, sizeof *list);
    if (!list)
        return cx_error_set(err, CX_ENOMEM, "out of memory reading llm.providers");
    const char *name;
    const json_t *obj;
    size_t i = 0;
    json_object_foreach((json_t *)providers, name, obj) {
        checker ck = {0};
        provider_fields f;
        if (!read_provider(&ck, name, obj, &f) || !(list[i] = settings_new(name, &f))) {
            llm_settings_release_all(list, i);
            return cx_error_set(err, CX_ENOMEM, "out of memory reading llm.providers.%s", name);
        }
        i++;
    }
    *out = list;
    *count = n;
    return 0;
}
