/* /api/v1/agents and /api/v1/capabilities: the registry seen through REST.
 *
 * Every handler but the log reader runs on the loop, which owns the
 * registry. Create and update take the definition file's text and write the
 * file, so the agents dir stays the source of truth. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agents/registry.h"
#include "api/routes.h"
#include "core/log.h"
#include "core/util.h"
#include "messaging/router.h"

#define LOG_TAIL_MAX (16u * 1024 * 1024) /* the newest part of agents.log that is searched */
#define LOG_LINES_MAX 1000
#define LOG_LINES_DEFAULT 100

static agent *find_or_404(http_request *req, http_response *res, const char *name)
{
    agent *ag = registry_find(req->app->agents, name);
    if (ag)
        return ag;
    const char *s = registry_suggest(req->app->agents, name);
    http_reply_error(res, req, 404, CX_ENOTFOUND, "AGENT_NOT_FOUND",
                     json_pack("{s:s}", "agent", name), "no agent named '%.64s'%s%s%s", name,
                     s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
    return NULL;
}

static const char *actor(const http_request *req)
{
    return req->who.name[0] ? req->who.name : "api";
}

/* Maps a registry error to its answer. */
static void reply_registry_error(http_request *req, http_response *res, const cx_error *err,
                                 json_t *diagnostics)
{
    switch (err->code) {
    case CX_ENOTFOUND:
        json_decref(diagnostics);
        http_reply_error(res, req, 404, CX_ENOTFOUND, "AGENT_NOT_FOUND", NULL, "%s", err->msg);
        return;
    case CX_EEXIST:
        json_decref(diagnostics);
        http_reply_error(res, req, 409, CX_EEXIST, "AGENT_EXISTS", NULL, "%s", err->msg);
        return;
    case CX_EINVAL:
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_AGENT",
                         diagnostics ? json_pack("{s:o}", "diagnostics", diagnostics) : NULL,
                         "%s", err->msg);
        return;
    default:
        json_decref(diagnostics);
        http_reply_internal(res, req, err);
    }
}

static bool content_arg(http_request *req, http_response *res, const char **content, size_t *len)
{
    json_t *c = json_object_get(req->body, "content");
    if (!json_is_object(req->body) || !json_is_string(c)) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_REQUEST",
                         json_pack("{s:s}", "field", "content"),
                         "expected a JSON object {\"content\": \"<the agent's .md file>\"}");
        return false;
    }
    *content = json_string_value(c);
    *len = json_string_length(c);
    if (*len > AGENTDEF_MAX_FILE) {
        http_reply_error(res, req, 413, CX_ETOOBIG, NULL, NULL,
                         "an agent definition is limited to %d bytes", AGENTDEF_MAX_FILE);
        return false;
    }
    if (memchr(*content, '\0', *len)) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_AGENT",
                         json_pack("{s:s}", "field", "content"),
                         "the definition contains a NUL byte");
        return false;
    }
    return true;
}

typedef struct list_ctx {
    json_t *items;
    int state;
    const char *cursor;
    size_t limit;
    bool more;
} list_ctx;

static int list_one(agent *ag, void *arg)
{
    list_ctx *c = arg;
    /* names come sorted: resume after the cursor even if that agent is gone */
    if (c->cursor && strcmp(agent_name(ag), c->cursor) <= 0)
        return 0;
    if (c->state >= 0 && (int)agent_get_state(ag) != c->state)
        return 0;
    if (json_array_size(c->items) == c->limit) {
        c->more = true;
        return 1;
    }
    json_array_append_new(c->items, agent_summary_json(ag));
    return 0;
}

void api_agents_list(http_request *req, http_response *res)
{
    list_ctx c = {.items = json_array(), .state = -1};
    if (http_page_args(req, res, &c.limit, &c.cursor) < 0) {
        json_decref(c.items);
        return;
    }
    const char *state = http_query(req, "state");
    if (state && (c.state = agent_state_parse(state)) < 0) {
        json_decref(c.items);
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "state"),
                         "unknown state '%.32s'; one of loading, active, suspended, reloading, "
                         "draining, stopped, failed", state);
        return;
    }
    registry_foreach(req->app->agents, list_one, &c);
    /* next_cursor is the last name returned: the next page starts after it */
    json_t *last = json_array_get(c.items, json_array_size(c.items) - 1);
    json_t *body = json_pack("{s:o}", "items", c.items);
    json_object_set_new(body, "next_cursor", c.more && last ? json_incref(json_object_get(last,
                                                                                   "name"))
                                                            : json_null());
    http_reply_json(res, 200, body);
}

void api_agents_get(http_request *req, http_response *res)
{
    agent *ag = find_or_404(req, res, req->params[0]);
    if (ag)
        http_reply_json(res, 200, agent_detail_json(ag));
}

void api_agents_create(http_request *req, http_response *res)
{
    const char *content;
    size_t len;
    if (!content_arg(req, res, &content, &len))
        return;
    agent *ag = NULL;
    json_t *diagnostics = NULL;
    cx_error err;
    if (registry_create(req->app->agents, actor(req), content, len, &ag, &diagnostics, &err) < 0) {
        reply_registry_error(req, res, &err, diagnostics);
        return;
    }
    json_decref(diagnostics);
    http_reply_json(res, 201, agent_detail_json(ag));
}

void api_agents_update(http_request *req, http_response *res)
{
    const char *content;
    size_t len;
    if (!content_arg(req, res, &content, &len))
        return;
    agent *ag = NULL;
    json_t *diagnostics = NULL;
    cx_error err;
    if (registry_update(req->app->agents, actor(req), req->params[0], content, len, &ag,
                        &diagnostics, &err) < 0) {
        reply_registry_error(req, res, &err, diagnostics);
        return;
    }
    json_decref(diagnostics);
    http_reply_json(res, 200, agent_detail_json(ag));
}

void api_agents_delete(http_request *req, http_response *res)
{
    size_t failed = 0;
    cx_error err;
    if (registry_delete(req->app->agents, actor(req), req->params[0], &failed, &err) < 0) {
        reply_registry_error(req, res, &err, NULL);
        return;
    }
    http_reply_json(res, 200, json_pack("{s:s, s:s, s:I}", "name", req->params[0], "state",
                                        "stopped", "failed_queued", (json_int_t)failed));
}

static bool bool_field(http_request *req, http_response *res, const char *name, bool *out)
{
    *out = false;
    if (!req->body)
        return true;
    if (!json_is_object(req->body)) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_REQUEST", NULL,
                         "expected a JSON object");
        return false;
    }
    json_t *v = json_object_get(req->body, name);
    if (v && !json_is_boolean(v)) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_REQUEST",
                         json_pack("{s:s}", "field", name), "%s must be true or false", name);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

void api_agents_reload(http_request *req, http_response *res)
{
    bool force, fallback;
    if (!bool_field(req, res, "force", &force) ||
        !bool_field(req, res, "fallback_on_error", &fallback))
        return;
    json_t *result = NULL;
    cx_error err;
    if (registry_reload(req->app->agents, actor(req), req->params[0], force, fallback, &result,
                        &err) < 0) {
        reply_registry_error(req, res, &err, NULL);
        return;
    }
    http_reply_json(res, 200, result);
}

void api_agents_reload_status(http_request *req, http_response *res)
{
    agent *ag = find_or_404(req, res, req->params[0]);
    if (ag)
        http_reply_json(res, 200, agent_reload_status_json(ag));
}

static void lifecycle(http_request *req, http_response *res, bool suspend)
{
    cx_error err;
    int rc = suspend ? registry_suspend(req->app->agents, actor(req), req->params[0], &err)
                     : registry_resume(req->app->agents, actor(req), req->params[0], &err);
    if (rc < 0) {
        if (rc == CX_EEXIST)
            http_reply_error(res, req, 409, CX_EEXIST, "INVALID_STATE", NULL, "%s", err.msg);
        else
            reply_registry_error(req, res, &err, NULL);
        return;
    }
    http_reply_json(res, 200, agent_summary_json(registry_find(req->app->agents,
                                                               req->params[0])));
}

void api_agents_suspend(http_request *req, http_response *res)
{
    lifecycle(req, res, true);
}

void api_agents_resume(http_request *req, http_response *res)
{
    lifecycle(req, res, false);
}

void api_agents_scale(http_request *req, http_response *res)
{
    json_t *v = json_is_object(req->body) ? json_object_get(req->body, "instances") : NULL;
    char change[32];
    if (json_is_integer(v))
        snprintf(change, sizeof change, "%lld", (long long)json_integer_value(v));
    else if (json_is_string(v) && json_string_length(v) < sizeof change)
        snprintf(change, sizeof change, "%s", json_string_value(v));
    else {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_REQUEST",
                         json_pack("{s:s}", "field", "instances"),
                         "expected {\"instances\": N | \"+1\" | \"-1\"}");
        return;
    }
    int64_t before = 0, after = 0;
    cx_error err;
    if (registry_scale(req->app->agents, actor(req), req->params[0], change, &before, &after,
                       &err) < 0) {
        if (err.code == CX_EINVAL || err.code == CX_EEXIST)
            http_reply_error(res, req, 422, CX_EINVAL, "INVALID_REQUEST",
                             json_pack("{s:s}", "field", "instances"), "%s", err.msg);
        else
            reply_registry_error(req, res, &err, NULL);
        return;
    }
    http_reply_json(res, 200,
                    json_pack("{s:s, s:I, s:I, s:s}", "name", req->params[0], "instances_before",
                              (json_int_t)before, "instances", (json_int_t)after, "note",
                              "applies until the definition file changes or the server "
                              "restarts; set `instances:` in the file to keep it"));
}

void api_agents_health_summary(http_request *req, http_response *res)
{
    const char *critical = http_query(req, "critical_only");
    bool only = critical && (strcmp(critical, "true") == 0 || strcmp(critical, "1") == 0);
    http_reply_json(res, 200, registry_health_summary_json(req->app->agents, only));
}

void api_agents_validate(http_request *req, http_response *res)
{
    const char *content;
    size_t len;
    if (!content_arg(req, res, &content, &len))
        return;
    json_t *file = json_object_get(req->body, "file");
    const char *label = json_is_string(file) ? json_string_value(file) : "content";
    bool valid;
    json_t *doc = registry_validate_text(req->app->agents, label, content, len, NULL, &valid);
    http_reply_json(res, 200, doc);
}

void api_agents_queue(http_request *req, http_response *res)
{
    agent *ag = find_or_404(req, res, req->params[0]);
    if (ag)
        http_reply_json(res, 200, agent_queue_json(ag));
}

void api_agents_drain(http_request *req, http_response *res)
{
    const char *requeue_to = NULL;
    if (req->body) {
        json_t *v = json_is_object(req->body) ? json_object_get(req->body, "requeue_to") : NULL;
        if (!json_is_object(req->body) || (v && !json_is_null(v) && !json_is_string(v))) {
            http_reply_error(res, req, 422, CX_EINVAL, "INVALID_REQUEST",
                             json_pack("{s:s}", "field", "requeue_to"),
                             "expected {\"requeue_to\": \"agent-name\" | null}");
            return;
        }
        requeue_to = json_string_value(v);
    }
    json_t *result = NULL;
    cx_error err;
    if (router_drain(req->app->router, actor(req), req->params[0], requeue_to, &result, &err) <
        0) {
        if (err.code == CX_EINVAL)
            http_reply_error(res, req, 422, CX_EINVAL, "INVALID_REQUEST",
                             json_pack("{s:s}", "field", "requeue_to"), "%s", err.msg);
        else
            reply_registry_error(req, res, &err, NULL);
        return;
    }
    http_reply_json(res, 200, result);
}

void api_agents_conflicts(http_request *req, http_response *res)
{
    json_t *doc = NULL;
    cx_error err;
    if (registry_conflicts_json(req->app->agents, req->params[0], NULL, &doc, &err) < 0) {
        reply_registry_error(req, res, &err, NULL);
        return;
    }
    http_reply_json(res, 200, doc);
}

void api_capabilities_list(http_request *req, http_response *res)
{
    http_reply_json(res, 200, registry_capabilities_json(req->app->agents));
}

void api_capabilities_conflicts(http_request *req, http_response *res)
{
    json_t *doc = NULL;
    cx_error err;
    if (registry_conflicts_json(req->app->agents, http_query(req, "agent"), req->params[0], &doc,
                                &err) < 0) {
        reply_registry_error(req, res, &err, NULL);
        return;
    }
    http_reply_json(res, 200, doc);
}

/* ---- logs: read on the HTTP thread (the log dir never changes) ----------------------------- */

static int level_rank(const char *level)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (level && strcmp(level, names[i]) == 0)
            return i;
    return -1;
}

static bool parse_time_arg(http_request *req, http_response *res, const char *name,
                           uint64_t *out)
{
    *out = 0;
    const char *v = http_query(req, name);
    if (!v)
        return true;
    if (!http_time_arg(v, out)) {
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", name),
                         "%s must be an RFC 3339 time such as 2026-01-15T10:00:00Z", name);
        return false;
    }
    return true;
}

/* The ts field of a log line ("2026-11-27T10:00:00.123Z") to epoch ms. */
static uint64_t line_time(const char *ts)
{
    uint64_t ms = 0;
    return ts && time_parse_rfc3339(ts, &ms) ? ms : 0;
}

void api_agents_logs(http_request *req, http_response *res)
{
    const char *name = req->params[0];
    const char *level = http_query(req, "level");
    int min_rank = 0;
    if (level && (min_rank = level_rank(level)) < 0) {
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "level"),
                         "level must be debug, info, warn or error");
        return;
    }
    uint64_t since, until;
    if (!parse_time_arg(req, res, "since", &since) || !parse_time_arg(req, res, "until", &until))
        return;
    size_t limit = LOG_LINES_DEFAULT;
    const char *lim = http_query(req, "limit");
    if (lim) {
        char *end;
        unsigned long v = strtoul(lim, &end, 10);
        if (*end || v < 1 || v > LOG_LINES_MAX) {
            http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                             json_pack("{s:s}", "parameter", "limit"),
                             "limit must be from 1 to %d", LOG_LINES_MAX);
            return;
        }
        limit = v;
    }
    char *path = path_join(req->app->log_dir, "agents.log");
    FILE *f = path ? fopen(path, "r") : NULL;
    json_t *items = json_array();
    if (f) {
        struct stat st;
        if (fstat(fileno(f), &st) == 0 && st.st_size > (off_t)LOG_TAIL_MAX) {
            fseeko(f, st.st_size - (off_t)LOG_TAIL_MAX, SEEK_SET);
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) > 0) {
            if (!strstr(line, name))
                continue;
            json_t *j = json_loadb(line, (size_t)n, 0, NULL);
            const char *agent_field = json_string_value(json_object_get(j, "agent"));
            const char *lvl = json_string_value(json_object_get(j, "level"));
            uint64_t at = line_time(json_string_value(json_object_get(j, "ts")));
            if (!agent_field || strcmp(agent_field, name) != 0 || level_rank(lvl) < min_rank ||
                (since && at < since) || (until && at > until)) {
                json_decref(j);
                continue;
            }
            json_array_append_new(items, j);
            if (json_array_size(items) > limit)
                json_array_remove(items, 0);
        }
        free(line);
        fclose(f);
    }
    free(path);
    http_reply_json(res, 200, json_pack("{s:s, s:o}", "agent", name, "items", items));
}
