/* The route table of the REST API: one row per method and path template,
 * with the role it needs and where its handler runs. The handlers live in
 * the api_*.c files by resource. */
#ifndef CAXTON_API_ROUTES_H
#define CAXTON_API_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "api/http.h"

typedef void (*route_handler)(http_request *req, http_response *res);

typedef enum route_mode {
    ROUTE_INLINE, /* pure and quick: runs on the HTTP thread */
    ROUTE_LOOP,   /* touches loop-owned state: runs on the event loop */
} route_mode;

typedef struct route {
    const char *method;
    const char *pattern;   /* "/api/v1/tokens/{id}" */
    token_role role;       /* TOKEN_ROLE_NONE = public */
    bool public_by_config; /* may be opened by api.public */
    route_mode mode;
    bool takes_body;
    route_handler handler;
} route;

/* Builds the metric label table; call once before matching. */
void routes_init(void);
/* Matches a request. Returns the route, or NULL with *not_allowed set when
 * the path exists under other methods (allow then lists them). params get
 * pointers into path_copy (a buffer the caller owns, at least strlen(path)+1).
 * *metric_id is the id of the template for metrics. */
const route *routes_match(const char *method, const char *path, char *path_copy,
                          const char **params, bool *not_allowed, char *allow,
                          size_t allow_size, size_t *metric_id);
/* Metric label names: route templates then "unmatched". */
const char *const *routes_metric_names(size_t *count);
size_t routes_unmatched_id(void);

/* Handlers (api_system.c, api_tokens.c). */
void api_health(http_request *req, http_response *res);
void api_health_deep(http_request *req, http_response *res);
void api_metrics(http_request *req, http_response *res);
void api_openapi(http_request *req, http_response *res);
void api_status(http_request *req, http_response *res);
void api_config_effective(http_request *req, http_response *res);
void api_tokens_list(http_request *req, http_response *res);
void api_tokens_create(http_request *req, http_response *res);
void api_tokens_revoke(http_request *req, http_response *res);
/* api_agents.c */
void api_agents_list(http_request *req, http_response *res);
void api_agents_get(http_request *req, http_response *res);
void api_agents_create(http_request *req, http_response *res);
void api_agents_update(http_request *req, http_response *res);
void api_agents_delete(http_request *req, http_response *res);
void api_agents_reload(http_request *req, http_response *res);
void api_agents_reload_status(http_request *req, http_response *res);
void api_agents_suspend(http_request *req, http_response *res);
void api_agents_resume(http_request *req, http_response *res);
void api_agents_scale(http_request *req, http_response *res);
void api_agents_logs(http_request *req, http_response *res);
void api_agents_health_summary(http_request *req, http_response *res);
void api_agents_validate(http_request *req, http_response *res);
void api_agents_queue(http_request *req, http_response *res);
void api_agents_drain(http_request *req, http_response *res);
void api_agents_conflicts(http_request *req, http_response *res);
void api_capabilities_list(http_request *req, http_response *res);
void api_capabilities_conflicts(http_request *req, http_response *res);
/* api_messages.c */
void api_messages_send(http_request *req, http_response *res);
void api_conversations_list(http_request *req, http_response *res);
void api_conversations_get(http_request *req, http_response *res);
void api_conversations_messages(http_request *req, http_response *res);
void api_dead_letters_list(http_request *req, http_response *res);
void api_dead_letters_requeue(http_request *req, http_response *res);
void api_dead_letters_delete(http_request *req, http_response *res);
void api_config_audit_log(http_request *req, http_response *res);
/* api_tools.c */
void api_tools_status(http_request *req, http_response *res);
void api_tools_reconnect(http_request *req, http_response *res);
void api_tools_test(http_request *req, http_response *res);

/* api_memory.c */
void api_memory_entity_put(http_request *req, http_response *res);
void api_memory_entity_get(http_request *req, http_response *res);
void api_memory_entity_delete(http_request *req, http_response *res);
void api_memory_relation_put(http_request *req, http_response *res);
void api_memory_search(http_request *req, http_response *res);
void api_memory_graph(http_request *req, http_response *res);
void api_memory_operation(http_request *req, http_response *res);
void api_jobs_get(http_request *req, http_response *res);
void api_agents_reconnect_memory(http_request *req, http_response *res);

#endif
