/* The REST route table and its matcher.
 *
 * A linear scan over a few dozen templates costs less than a request's
 * header parsing, so there is no trie: the table stays the readable source
 * of truth, mirrored by docs/openapi.json. */
#include "api/routes.h"

#include <stdio.h>
#include <string.h>

static const route route_table[] = {
    {"GET", "/health", TOKEN_ROLE_VIEWER, true, ROUTE_INLINE, false, api_health},
    {"GET", "/health/deep", TOKEN_ROLE_VIEWER, true, ROUTE_INLINE, false, api_health_deep},
    {"GET", "/metrics", TOKEN_ROLE_VIEWER, true, ROUTE_INLINE, false, api_metrics},
    {"GET", "/api/v1/openapi.json", TOKEN_ROLE_NONE, false, ROUTE_INLINE, false, api_openapi},
    {"GET", "/api/v1/status", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false, api_status},
    {"GET", "/api/v1/config/effective", TOKEN_ROLE_ADMIN, false, ROUTE_LOOP, false,
     api_config_effective},
    {"GET", "/api/v1/tokens", TOKEN_ROLE_ADMIN, false, ROUTE_LOOP, false, api_tokens_list},
    {"POST", "/api/v1/tokens", TOKEN_ROLE_ADMIN, false, ROUTE_LOOP, true, api_tokens_create},
    {"DELETE", "/api/v1/tokens/{id}", TOKEN_ROLE_ADMIN, false, ROUTE_LOOP, false,
     api_tokens_revoke},
    {"GET", "/api/v1/config/audit-log", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_config_audit_log},
    /* agents: the fixed paths come before /api/v1/agents/{name} */
    {"GET", "/agents/health-summary", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_agents_health_summary},
    {"GET", "/api/v1/agents/health-summary", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_agents_health_summary},
    {"POST", "/api/v1/agents/validate", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, true,
     api_agents_validate},
    {"GET", "/api/v1/agents", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false, api_agents_list},
    {"POST", "/api/v1/agents", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true, api_agents_create},
    {"GET", "/api/v1/agents/{name}", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false, api_agents_get},
    {"PUT", "/api/v1/agents/{name}", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_agents_update},
    {"DELETE", "/api/v1/agents/{name}", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, false,
     api_agents_delete},
    {"POST", "/api/v1/agents/{name}/reload", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_agents_reload},
    {"GET", "/api/v1/agents/{name}/reload-status", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_agents_reload_status},
    {"POST", "/api/v1/agents/{name}/suspend", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_agents_suspend},
    {"POST", "/api/v1/agents/{name}/resume", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_agents_resume},
    {"POST", "/api/v1/agents/{name}/scale", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_agents_scale},
    {"GET", "/api/v1/agents/{name}/logs", TOKEN_ROLE_VIEWER, false, ROUTE_INLINE, false,
     api_agents_logs},
    {"GET", "/api/v1/agents/{name}/queue", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_agents_queue},
    {"POST", "/api/v1/agents/{name}/queue/drain", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_agents_drain},
    {"GET", "/api/v1/agents/{name}/conflicts", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_agents_conflicts},
    {"GET", "/api/v1/capabilities", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_capabilities_list},
    {"GET", "/api/v1/capabilities/{cap}/conflicts", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_capabilities_conflicts},
    /* messages */
    {"POST", "/api/v1/messages", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_messages_send},
    {"GET", "/api/v1/conversations", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_conversations_list},
    {"GET", "/api/v1/conversations/{id}", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_conversations_get},
    {"GET", "/api/v1/conversations/{id}/messages", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_conversations_messages},
    {"GET", "/api/v1/dead-letters", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_dead_letters_list},
    {"POST", "/api/v1/dead-letters/{id}/requeue", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_dead_letters_requeue},
    {"DELETE", "/api/v1/dead-letters/{id}", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, false,
     api_dead_letters_delete},
    /* tools */
    {"GET", "/api/v1/tools", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false, api_tools_status},
    {"POST", "/api/v1/tools/reconnect", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_tools_reconnect},
    {"POST", "/api/v1/tools/test", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true, api_tools_test},
    /* the literal memory routes come before POST /memory/{operation} */
    {"POST", "/api/v1/memory/entities", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_memory_entity_put},
    {"GET", "/api/v1/memory/entities/{scope}/{name}", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_memory_entity_get},
    {"DELETE", "/api/v1/memory/entities/{scope}/{name}", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP,
     false, api_memory_entity_delete},
    {"POST", "/api/v1/memory/relations", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_memory_relation_put},
    {"GET", "/api/v1/memory/search", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_memory_search},
    {"GET", "/api/v1/memory/graph/{scope}/{name}", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false,
     api_memory_graph},
    {"POST", "/api/v1/memory/{operation}", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_memory_operation},
    {"GET", "/api/v1/jobs/{id}", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false, api_jobs_get},
    {"POST", "/api/v1/agents/{name}/reconnect-memory", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP,
     true, api_agents_reconnect_memory},
};
#define ROUTE_COUNT (sizeof route_table / sizeof route_table[0])

static const char *metric_names[ROUTE_COUNT + 1];
static size_t metric_count;
static size_t route_metric_id[ROUTE_COUNT];

void routes_init(void)
{
    if (metric_count)
        return;
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        size_t id = 0;
        while (id < metric_count && strcmp(metric_names[id], route_table[i].pattern) != 0)
            id++;
        if (id == metric_count)
            metric_names[metric_count++] = route_table[i].pattern;
        route_metric_id[i] = id;
    }
    metric_names[metric_count++] = "unmatched";
}

const char *const *routes_metric_names(size_t *count)
{
    *count = metric_count;
    return metric_names;
}

size_t routes_unmatched_id(void)
{
    return metric_count ? metric_count - 1 : 0;
}

/* Matches path against pattern segment by segment; {x} takes one segment. */
static bool match_pattern(const char *pattern, const char *path, char *copy, const char **params)
{
    size_t nparams = 0;
    const char *p = pattern, *s = path;
    char *out = copy;
    while (*p && *s) {
        if (*p == '{') {
            const char *end_seg = strchr(s, '/');
            size_t len = end_seg ? (size_t)(end_seg - s) : strlen(s);
            if (len == 0 || nparams == HTTP_MAX_PATH_PARAMS)
                return false;
            memcpy(out, s, len);
            out[len] = '\0';
            params[nparams++] = out;
            out += len + 1;
            s += len;
            p = strchr(p, '}');
            if (!p)
                return false;
            p++;
        } else if (*p == *s) {
            p++;
            s++;
        } else {
            return false;
        }
    }
    return *p == '\0' && *s == '\0';
}

static void allow_add(char *allow, size_t size, const char *method)
{
    if (strstr(allow, method))
        return;
    size_t len = strlen(allow);
    snprintf(allow + len, size - len, "%s%s", len ? ", " : "", method);
}

const route *routes_match(const char *method, const char *path, char *path_copy,
                          const char **params, bool *not_allowed, char *allow,
                          size_t allow_size, size_t *metric_id)
{
    *not_allowed = false;
    allow[0] = '\0';
    /* HEAD is served wherever GET is; libmicrohttpd drops the body. */
    const char *want = strcmp(method, "HEAD") == 0 ? "GET" : method;
    const route *found = NULL;
    bool any = false;
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        const route *r = &route_table[i];
        if (!match_pattern(r->pattern, path, path_copy, params))
            continue;
        /* the label is the route that serves the request, else the first
         * template that matched the path (a 405) */
        if (!any)
            *metric_id = route_metric_id[i];
        any = true;
        allow_add(allow, allow_size, r->method);
        if (strcmp(r->method, "GET") == 0)
            allow_add(allow, allow_size, "HEAD");
        if (!found && strcmp(r->method, want) == 0) {
            found = r;
            *metric_id = route_metric_id[i];
        }
    }
    if (found) {
        /* Re-run the match so params point at this route's segments. */
        match_pattern(found->pattern, path, path_copy, params);
        return found;
    }
    *not_allowed = allow[0] != '\0';
    if (!*not_allowed)
        *metric_id = routes_unmatched_id();
    return NULL;
}
