/* /api/v1/memory: entities, relations, search, graph, and the guide's memory
 * operations; /api/v1/jobs for operations run in the background;
 * /api/v1/agents/{name}/reconnect-memory.
 *
 * With `agent` (query or body) a request acts as that agent, under its scope
 * rules; without, the operator acts with full rights and writes are audited.
 * The file-level operations are memops_run with the live store (it quiesces
 * and resumes the store itself); the ones that need the agents (scope
 * status, permissions, connection test) are answered here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agent_memory.h"
#include "agents/registry.h"
#include "api/routes.h"
#include "core/units.h"
#include "core/util.h"
#include "memory/memops.h"
#include "memory/memstore.h"

#define JOBS_MAX 64

/* ---- callers ----------------------------------------------------------------------------------- */

typedef struct who {
    mem_caller c;
    char *owned;
    char name[128];
} who;

static void reply_mem_error(http_response *res, http_request *req, const cx_error *err)
{
    if (err->code == CX_ENOMEM || err->code == CX_EINTERNAL) {
        http_reply_internal(res, req, err);
        return;
    }
    http_reply_error(res, req, (unsigned)memstore_http_status(err->code), err->code,
                     memstore_api_code(err->code), NULL, "%s", err->msg);
}

static memstore *store_or_reply(http_request *req, http_response *res)
{
    memstore *ms = req->app->memory;
    if (!ms) {
        http_reply_error(res, req, 503, CX_EUNAVAIL, MEM_API_UNAVAILABLE, NULL,
                         "the memory system is not running");
        return NULL;
    }
    return ms;
}

/* Fills w for ?agent= / body agent (the agent's rules) or the operator.
 * false (reply set) when the agent is unknown. */
static bool resolve_caller(http_request *req, http_response *res, const char *as, who *w)
{
    memset(w, 0, sizeof *w);
    if (!as || !*as) {
        w->c = (mem_caller){.agent = NULL, .enabled = true, .scope = MEM_SCOPE_GLOBAL,
                            .global_write = true};
        return true;
    }
    agent *ag = registry_find(req->app->agents, as);
    const agent_def *def = ag ? agent_definition(ag) : NULL;
    if (!def) {
        http_reply_error(res, req, 404, CX_ENOTFOUND, "AGENT_NOT_FOUND",
                         json_pack("{s:s}", "agent", as), "no agent named '%.64s'%s", as,
                         ag ? " with a valid definition" : "");
        return false;
    }
    snprintf(w->name, sizeof w->name, "%s", agent_name(ag));
    agent_mem_caller(req->app->memory, w->name, def, &w->c, &w->owned);
    w->c.agent = w->name;
    return true;
}

static void audit(http_request *req, const who *w, const char *action, const char *target)
{
    if (w->c.agent)
        return; /* an agent's own writes are its business, not the operator's */
    state_audit_append(req->app->state, req->who.name, action, target, NULL, NULL);
}

static const char *body_agent(const http_request *req)
{
    return json_string_value(json_object_get(req->body, "agent"));
}

/* ---- entities and relations ---------------------------------------------------------------- */

void api_memory_entity_put(http_request *req, http_response *res)
{
    memstore *ms = store_or_reply(req, res);
    who w;
    if (!ms || !resolve_caller(req, res, body_agent(req) ?: http_query(req, "agent"), &w))
        return;
    if (!req->body) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_ENTITY", NULL,
                         "expected an entity as a JSON object: {\"scope\": \"workspace:NAME\", "
                         "\"name\": \"...\", \"type\": \"...\", \"observations\": [\"...\"]}");
        return;
    }
    json_t *out = NULL;
    cx_error err = {0};
    int rc = memstore_entity_put(ms, &w.c, req->body, &out, &err);
    free(w.owned);
    if (rc) {
        reply_mem_error(res, req, &err);
        return;
    }
    char target[MEM_SCOPE_MAX + MEM_NAME_MAX + 2];
    snprintf(target, sizeof target, "%s/%s", json_string_value(json_object_get(out, "scope")),
             json_string_value(json_object_get(out, "name")));
    audit(req, &w, "memory.store", target);
    bool created = json_is_true(json_object_get(out, "created"));
    http_reply_json(res, created ? 201 : 200, out);
}

static size_t size_arg(http_request *req, const char *name, size_t def, size_t max, bool *bad)
{
    const char *v = http_query(req, name);
    if (!v)
        return def;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end || n < 0 || (size_t)n > max) {
        *bad = true;
        return def;
    }
    return (size_t)n;
}

/* since=: RFC 3339, epoch ms, or a duration back from now (24h). */
static bool since_arg(const char *text, uint64_t *out)
{
    if (http_time_arg(text, out))
        return true;
    uint64_t d = 0;
    cx_error err;
    if (units_parse_duration_ms(text, &d, &err) < 0)
        return false;
    uint64_t now = time_now_ms();
    *out = d < now ? now - d : 0;
    return true;
}

static bool bool_arg(http_request *req, const char *name)
{
    const char *v = http_query(req, name);
    return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || *v == '\0');
}

void api_memory_entity_get(http_request *req, http_response *res)
{
    memstore *ms = store_or_reply(req, res);
    who w;
    if (!ms || !resolve_caller(req, res, http_query(req, "agent"), &w))
        return;
    bool bad = false;
    size_t obs = size_arg(req, "observations", 100, 10000, &bad);
    if (bad) {
        free(w.owned);
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "observations"),
                         "observations must be a whole number from 0 to 10000");
        return;
    }
    json_t *out = NULL;
    cx_error err = {0};
    int rc = memstore_entity_get(ms, &w.c, req->params[0], req->params[1],
                                 bool_arg(req, "history"), obs, &out, &err);
    free(w.owned);
    if (rc) {
        reply_mem_error(res, req, &err);
        return;
    }
    http_reply_json(res, 200, out);
}

void api_memory_entity_delete(http_request *req, http_response *res)
{
    memstore *ms = store_or_reply(req, res);
    who w;
    if (!ms || !resolve_caller(req, res, http_query(req, "agent"), &w))
        return;
    cx_error err = {0};
    int rc = memstore_entity_delete(ms, &w.c, req->params[0], req->params[1], &err);
    free(w.owned);
    if (rc) {
        reply_mem_error(res, req, &err);
        return;
    }
    char target[MEM_SCOPE_MAX + MEM_NAME_MAX + 2];
    snprintf(target, sizeof target, "%s/%s", req->params[0], req->params[1]);
    audit(req, &w, "memory.delete", target);
    http_reply_json(res, 200, json_pack("{s:b, s:s, s:s}", "deleted", 1, "scope", req->params[0],
                                        "name", req->params[1]));
}

void api_memory_relation_put(http_request *req, http_response *res)
{
    memstore *ms = store_or_reply(req, res);
    who w;
    if (!ms || !resolve_caller(req, res, body_agent(req) ?: http_query(req, "agent"), &w))
        return;
    json_t *out = NULL;
    cx_error err = {0};
    int rc = req->body ? memstore_relation_put(ms, &w.c, req->body, &out, &err)
                       : cx_error_set(&err, CX_EINVAL,
                                      "expected a relation: {\"from\", \"to\", \"type\"}");
    free(w.owned);
    if (rc) {
        reply_mem_error(res, req, &err);
        return;
    }
    audit(req, &w, "memory.relate", json_string_value(json_object_get(out, "from")));
    http_reply_json(res, 201, out);
}

/* ---- search and graph ---------------------------------------------------------------------- */

/* A search answers at once, or later (deferred) when a remote embedder has
 * to embed the query first. */
typedef struct search_ctx {
    http_request *req;
    http_response *res;
    http_pending *pending; /* set when the answer comes later */
} search_ctx;

static void on_searched(int rc, json_t *result, const cx_error *err, void *arg)
{
    search_ctx *c = arg;
    http_request *req = c->pending ? http_pending_request(c->pending) : c->req;
    http_response *res = c->pending ? http_pending_response(c->pending) : c->res;
    if (rc)
        reply_mem_error(res, req, err);
    else
        http_reply_json(res, 200, json_incref(result));
    if (c->pending) {
        http_pending_finish(c->pending);
        free(c);
    }
}

void api_memory_search(http_request *req, http_response *res)
{
    memstore *ms = store_or_reply(req, res);
    who w;
    if (!ms || !resolve_caller(req, res, http_query(req, "agent"), &w))
        return;
    bool bad = false;
    const char *badp = NULL;
    size_t limit = size_arg(req, "limit", 10, MEM_SEARCH_LIMIT_MAX, &bad);
    if (bad || limit == 0)
        badp = "limit";
    size_t depth = size_arg(req, "depth", 0, MEM_GRAPH_DEPTH_MAX, &bad);
    if (bad && !badp)
        badp = "depth";
    double min_score = 0;
    const char *ms_text = http_query(req, "min_score");
    if (ms_text) {
        char *end;
        min_score = strtod(ms_text, &end);
        if (!*ms_text || *end || !(min_score >= 0 && min_score <= 1))
            badp = badp ? badp : "min_score";
    }
    mem_search_mode mode = MEM_SEARCH_HYBRID;
    const char *mode_text = http_query(req, "mode");
    if (mode_text) {
        if (strcmp(mode_text, "vector") == 0)
            mode = MEM_SEARCH_VECTOR;
        else if (strcmp(mode_text, "text") == 0)
            mode = MEM_SEARCH_TEXT;
        else if (strcmp(mode_text, "hybrid") != 0)
            badp = badp ? badp : "mode";
    }
    uint64_t since = 0;
    const char *since_text = http_query(req, "since");
    if (since_text && !since_arg(since_text, &since))
        badp = badp ? badp : "since";
    /* types=a,b */
    char types_buf[1024];
    const char *types[16];
    size_t ntypes = 0;
    const char *types_text = http_query(req, "types");
    if (types_text) {
        if (strlen(types_text) >= sizeof types_buf)
            badp = badp ? badp : "types";
        else {
            snprintf(types_buf, sizeof types_buf, "%s", types_text);
            char *save = NULL;
            for (char *t = strtok_r(types_buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (ntypes == 16) {
                    badp = badp ? badp : "types";
                    break;
                }
                types[ntypes++] = t;
            }
        }
    }
    if (badp) {
        free(w.owned);
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", badp),
                         "bad %s: limit 1-100, depth 0-5, min_score 0-1, mode hybrid|vector|text, "
                         "since a time or duration, types up to 16 names",
                         badp);
        return;
    }
    mem_search_query q = {
        .text = http_query(req, "q"),
        .scope = http_query(req, "scope"),
        .types = types,
        .type_count = ntypes,
        .since_ms = since,
        .limit = limit,
        .min_score = min_score,
        .depth = (int)depth,
        .mode = mode,
    };
    search_ctx *sc = calloc(1, sizeof *sc);
    if (!sc) {
        free(w.owned);
        cx_error err;
        cx_error_set(&err, CX_ENOMEM, "out of memory");
        http_reply_internal(res, req, &err);
        return;
    }
    sc->req = req;
    sc->res = res;
    mem_search_req *pending = memstore_search_async(ms, &w.c, &q, on_searched, sc);
    free(w.owned); /* the search keeps copies */
    if (!pending) {
        free(sc); /* answered already */
        return;
    }
    sc->pending = http_defer(req);
}

void api_memory_graph(http_request *req, http_response *res)
{
    memstore *ms = store_or_reply(req, res);
    who w;
    if (!ms || !resolve_caller(req, res, http_query(req, "agent"), &w))
        return;
    bool bad = false;
    size_t depth = size_arg(req, "depth", 1, MEM_GRAPH_DEPTH_MAX, &bad);
    if (bad) {
        free(w.owned);
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "depth"), "depth must be 0 to 5");
        return;
    }
    json_t *out = NULL;
    cx_error err = {0};
    int rc = memstore_graph(ms, &w.c, req->params[0], req->params[1], (int)depth, &out, &err);
    free(w.owned);
    if (rc) {
        reply_mem_error(res, req, &err);
        return;
    }
    http_reply_json(res, 200, out);
}

/* ---- operations that need the agents --------------------------------------------------------- */

static json_t *agent_scope_json(http_request *req, agent *ag)
{
    const agent_def *def = agent_definition(ag);
    if (!def)
        return json_pack("{s:s, s:b, s:s}", "agent", agent_name(ag), "valid", 0, "detail",
                         "the agent file does not load");
    mem_caller c;
    char *owned;
    agent_mem_caller(req->app->memory, agent_name(ag), def, &c, &owned);
    char own[MEM_SCOPE_MAX + 1];
    mem_caller_default_scope(&c, own);
    json_t *readable = json_array(), *writable = json_array();
    char scopes[3][MEM_SCOPE_MAX + 1];
    snprintf(scopes[0], sizeof scopes[0], "agent:%.128s", agent_name(ag));
    snprintf(scopes[1], sizeof scopes[1], "workspace:%.128s", c.workspace);
    snprintf(scopes[2], sizeof scopes[2], "global");
    for (int i = 0; i < 3; i++) {
        if (mem_can_read(&c, scopes[i]))
            json_array_append_new(readable, json_string(scopes[i]));
        if (mem_can_write(&c, scopes[i]))
            json_array_append_new(writable, json_string(scopes[i]));
    }
    const char *file_scope = def->memory_scope == AGENT_MEMORY_AGENT    ? "agent"
                             : def->memory_scope == AGENT_MEMORY_GLOBAL ? "global"
                                                                        : "workspace";
    bool overridden = strcmp(file_scope, mem_scope_kind_name(c.scope)) != 0 ||
                      strcmp(c.workspace, def->memory_workspace ? def->memory_workspace
                                                                : "default") != 0;
    json_t *o = json_pack(
        "{s:s, s:b, s:s, s:s, s:s, s:b, s:I, s:s, s:o, s:o, s:b}", "agent", agent_name(ag),
        "enabled", def->memory_enabled, "scope", mem_scope_kind_name(c.scope), "file_scope",
        file_scope, "workspace", c.workspace, "global_write", def->memory_global_write,
        "max_entries", (json_int_t)def->memory_max_entries, "default_write_scope", own,
        "readable", readable, "writable", writable, "overridden", overridden);
    free(owned);
    return o;
}

typedef struct scope_walk {
    http_request *req;
    json_t *list;
} scope_walk;

static int add_scope(agent *ag, void *arg)
{
    scope_walk *sw = arg;
    json_array_append_new(sw->list, agent_scope_json(sw->req, ag));
    return 0;
}

static agent *agent_arg(http_request *req, http_response *res, const json_t *args)
{
    const char *name = json_string_value(json_object_get(args, "agent"));
    if (!name) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "agent"), "this operation needs an agent");
        return NULL;
    }
    agent *ag = registry_find(req->app->agents, name);
    if (!ag) {
        const char *hint = registry_suggest(req->app->agents, name);
        http_reply_error(res, req, 404, CX_ENOTFOUND, "AGENT_NOT_FOUND",
                         json_pack("{s:s}", "agent", name), "no agent named '%.64s'%s%s%s", name,
                         hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
    }
    return ag;
}

static void op_scope_status(http_request *req, http_response *res, const json_t *args)
{
    json_t *list = json_array();
    if (json_string_value(json_object_get(args, "agent"))) {
        agent *ag = agent_arg(req, res, args);
        if (!ag) {
            json_decref(list);
            return;
        }
        json_array_append_new(list, agent_scope_json(req, ag));
    } else {
        scope_walk sw = {req, list};
        registry_foreach(req->app->agents, add_scope, &sw);
    }
    json_t *counts = NULL;
    memstore_scope_counts(req->app->memory, &counts, NULL);
    http_reply_json(res, 200, json_pack("{s:s, s:b, s:o, s:o}", "operation", "scope-status", "ok",
                                        1, "agents", list, "entities_by_scope",
                                        counts ? counts : json_object()));
}

static void op_permissions_check(http_request *req, http_response *res, const json_t *args)
{
    agent *ag = agent_arg(req, res, args);
    if (!ag)
        return;
    json_t *o = agent_scope_json(req, ag);
    json_t *problems = json_array();
    if (json_is_false(json_object_get(o, "enabled")))
        json_array_append_new(problems, json_string("memory.enabled is false: every memory "
                                                    "access by this agent is denied"));
    json_t *v = NULL;
    memstore_violations_json(req->app->memory, time_now_ms() - 24 * 3600 * 1000ull,
                             agent_name(ag), 20, &v, NULL);
    if (json_array_size(v))
        json_array_append_new(problems, json_sprintf("%zu scope violations in the last 24h "
                                                     "(caxton memory violations --last-24h)",
                                                     json_array_size(v)));
    json_object_set_new(o, "recent_violations", v ? v : json_array());
    json_object_set_new(o, "operation", json_string("permissions-check"));
    json_object_set_new(o, "ok", json_boolean(json_array_size(problems) == 0));
    json_object_set_new(o, "problems", problems);
    http_reply_json(res, 200, o);
}

static void op_violations(http_request *req, http_response *res, const json_t *args)
{
    const json_t *since = json_object_get(args, "since");
    uint64_t since_ms = 0;
    if (json_is_integer(since))
        since_ms = (uint64_t)json_integer_value(since);
    else if (json_is_string(since) && !since_arg(json_string_value(since), &since_ms)) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "since"),
                         "since: a time (RFC 3339), a duration back from now (24h) or ms");
        return;
    }
    json_t *list = NULL;
    cx_error err = {0};
    if (memstore_violations_json(req->app->memory, since_ms,
                                 json_string_value(json_object_get(args, "agent")), 1000, &list,
                                 &err)) {
        reply_mem_error(res, req, &err);
        return;
    }
    memstore_stats st;
    memstore_get_stats(req->app->memory, &st);
    http_reply_json(res, 200, json_pack("{s:s, s:b, s:I, s:o, s:I}", "operation", "violations",
                                        "ok", 1, "count", (json_int_t)json_array_size(list),
                                        "violations", list, "since_start",
                                        (json_int_t)st.violations));
}

static void op_scope_reset(http_request *req, http_response *res, const json_t *args)
{
    agent *ag = agent_arg(req, res, args);
    if (!ag)
        return;
    int k = mem_scope_kind_parse(json_string_value(json_object_get(args, "scope")));
    if (k < 0) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "scope"),
                         "scope must be agent, workspace or global");
        return;
    }
    const agent_def *def = agent_definition(ag);
    const char *ws = json_string_value(json_object_get(args, "workspace"));
    if (!ws)
        ws = def && def->memory_workspace ? def->memory_workspace : "default";
    cx_error err = {0};
    if (memstore_scope_reset(req->app->memory, agent_name(ag), (mem_scope_kind)k, ws, &err)) {
        reply_mem_error(res, req, &err);
        return;
    }
    char detail[256];
    snprintf(detail, sizeof detail, "scope=%s workspace=%s", mem_scope_kind_name(k), ws);
    state_audit_append(req->app->state, req->who.name, "memory.scope-reset", agent_name(ag),
                       json_pack("{s:s}", "change", detail), NULL);
    json_t *o = agent_scope_json(req, ag);
    json_object_set_new(o, "operation", json_string("scope-reset"));
    json_object_set_new(o, "ok", json_true());
    json_object_set_new(o, "note", json_string("stored in the memory database; it outlasts file "
                                               "edits and restarts until reset again"));
    http_reply_json(res, 200, o);
}

/* A store, a search and a delete in the agent's own scope, timed. */
static void op_connection_test(http_request *req, http_response *res, const json_t *args)
{
    agent *ag = agent_arg(req, res, args);
    if (!ag)
        return;
    memstore *ms = req->app->memory;
    json_t *checks = json_array(), *problems = json_array();
    const agent_def *def = agent_definition(ag);
    if (!memstore_available(ms))
        json_array_append_new(problems, json_sprintf("the memory store is unavailable: %s",
                                                     memstore_last_error(ms)));
    else if (!def)
        json_array_append_new(problems, json_string("the agent file does not load"));
    else if (!def->memory_enabled)
        json_array_append_new(problems, json_string("memory.enabled is false for this agent"));
    else {
        who w;
        memset(&w, 0, sizeof w);
        snprintf(w.name, sizeof w.name, "%s", agent_name(ag));
        agent_mem_caller(ms, w.name, def, &w.c, &w.owned);
        char scope[MEM_SCOPE_MAX + 1];
        mem_caller_default_scope(&w.c, scope);
        char probe[96];
        snprintf(probe, sizeof probe, "caxton-connection-test-%llu",
                 (unsigned long long)time_monotonic_ns());
        json_t *req_body = json_pack("{s:s, s:s, s:s, s:[s]}", "scope", scope, "name", probe,
                                     "type", "probe", "observations", "connection test probe");
        const char *step = "store";
        cx_error err = {0};
        json_t *out = NULL;
        uint64_t t0 = time_monotonic_ns();
        int rc = memstore_entity_put(ms, &w.c, req_body, &out, &err);
        json_decref(out);
        double store_ms = (double)(time_monotonic_ns() - t0) / 1e6;
        double search_ms = 0, delete_ms = 0;
        if (!rc) {
            step = "search";
            t0 = time_monotonic_ns();
            mem_search_query q = {.text = probe, .scope = scope, .limit = 1};
            out = NULL;
            rc = memstore_search(ms, &w.c, &q, &out, &err);
            json_decref(out);
            search_ms = (double)(time_monotonic_ns() - t0) / 1e6;
        }
        if (!rc) {
            step = "delete";
            t0 = time_monotonic_ns();
            rc = memstore_entity_delete(ms, &w.c, scope, probe, &err);
            delete_ms = (double)(time_monotonic_ns() - t0) / 1e6;
        }
        json_decref(req_body);
        free(w.owned);
        json_array_append_new(checks, json_pack("{s:s, s:f, s:f, s:f}", "scope", scope,
                                                "store_ms", store_ms, "search_ms", search_ms,
                                                "delete_ms", delete_ms));
        if (rc)
            json_array_append_new(problems, json_sprintf("%s failed: %s", step, err.msg));
    }
    http_reply_json(res, 200,
                    json_pack("{s:s, s:s, s:b, s:o, s:o}", "operation", "connection-test", "agent",
                              agent_name(ag), "ok", json_array_size(problems) == 0, "checks",
                              checks, "problems", problems));
}

static void op_performance(http_request *req, http_response *res, bool slow,
                           const json_t *args)
{
    memstore *ms = req->app->memory;
    memstore_stats st;
    memstore_get_stats(ms, &st);
    if (slow) {
        uint64_t threshold = 0;
        const char *t = json_string_value(json_object_get(args, "threshold"));
        cx_error err = {0};
        if (t && units_parse_duration_ms(t, &threshold, &err) < 0) {
            http_reply_error(res, req, 422, CX_EINVAL, "INVALID_PARAMETER",
                             json_pack("{s:s}", "parameter", "threshold"),
                             "threshold must be a duration such as 5s");
            return;
        }
        json_t *list = memstore_slow_queries(ms, threshold);
        http_reply_json(res, 200, json_pack("{s:s, s:b, s:I, s:I, s:o, s:s}", "operation",
                                            "slow-queries", "ok", 1, "threshold_ms",
                                            (json_int_t)threshold, "count",
                                            (json_int_t)json_array_size(list), "queries", list,
                                            "note",
                                            "operations slower than memory.slow_query are kept "
                                            "(the last 256) since the server started"));
        return;
    }
    json_t *hist = json_array();
    uint64_t cum = 0;
    for (size_t b = 0; b < 12; b++) {
        cum += st.search_hist[b];
        json_array_append_new(hist, json_pack("{s:f, s:I}", "le_seconds",
                                              memstore_search_buckets[b], "count",
                                              (json_int_t)cum));
    }
    double avg = st.searches ? (double)st.search_ns_total / (double)st.searches / 1e6 : 0;
    http_reply_json(res, 200,
                    json_pack("{s:s, s:b, s:I, s:f, s:o, s:I, s:I, s:I, s:I, s:s}", "operation",
                              "performance-metrics", "ok", 1, "searches", (json_int_t)st.searches,
                              "search_avg_ms", avg, "search_histogram", hist, "writes",
                              (json_int_t)st.writes, "write_errors", (json_int_t)st.write_errors,
                              "slow_queries", (json_int_t)st.slow_queries, "scope_violations",
                              (json_int_t)st.violations, "window",
                              "since the server started (counters are not kept across "
                              "restarts)"));
}

static void op_adjust_cache(http_request *req, http_response *res, const json_t *args)
{
    const char *size = json_string_value(json_object_get(args, "size"));
    memstore *ms = req->app->memory;
    uint64_t cur = memstore_cache_size(ms), want = 0;
    cx_error err = {0};
    bool rel = size && (*size == '+' || *size == '-');
    if (!size || units_parse_size(rel ? size + 1 : size, &want, &err) < 0) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "size"),
                         "size must be a size such as 256MB, or relative: +512MB, -64MB");
        return;
    }
    uint64_t next = !rel ? want : *size == '+' ? cur + want : (want >= cur ? 0 : cur - want);
    const uint64_t lo = 1ull << 20, hi = 16ull << 30;
    next = next < lo ? lo : next > hi ? hi : next;
    if (memstore_set_cache(ms, next, &err)) {
        reply_mem_error(res, req, &err);
        return;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "%llu -> %llu bytes", (unsigned long long)cur,
             (unsigned long long)next);
    state_audit_append(req->app->state, req->who.name, "memory.adjust-cache", "page cache",
                       json_pack("{s:s}", "change", detail), NULL);
    http_reply_json(res, 200, json_pack("{s:s, s:b, s:I, s:I, s:s}", "operation", "adjust-cache",
                                        "ok", 1, "previous_bytes", (json_int_t)cur, "cache_bytes",
                                        (json_int_t)next, "note",
                                        "lasts until restart; set memory.cache_size to keep it"));
}

/* ---- jobs -------------------------------------------------------------------------------------- */

typedef struct job {
    char id[32];
    char op[32];
    char state[12];
    json_t *args, *result;
    char error[CX_ERROR_MSG_MAX];
    uint64_t created_ms, finished_ms;
    uv_timer_t timer;
    app *a;
    char actor[TOKEN_NAME_MAX + 1];
    bool used, timer_open;
} job;

static job jobs[JOBS_MAX];
static unsigned job_seq;

static void memops_ctx_for(app *a, memops_ctx *ctx, const char *actor)
{
    *ctx = (memops_ctx){
        .db_path = a->config->memory_path,
        .backups_dir = a->config->memory_backups_dir,
        .keep = a->config->memory_backups_keep,
        .store = a->memory,
        .actor = actor,
    };
}

static void job_closed(uv_handle_t *h)
{
    job *j = h->data;
    j->timer_open = false;
}

static void job_run(uv_timer_t *t)
{
    job *j = t->data;
    snprintf(j->state, sizeof j->state, "running");
    memops_ctx ctx;
    memops_ctx_for(j->a, &ctx, j->actor);
    cx_error err = {0};
    json_t *result = NULL;
    if (j->a->stopping || !j->a->memory)
        cx_error_set(&err, CX_EUNAVAIL, "the server is stopping");
    else
        memops_run(&ctx, j->op, j->args, &result, &err);
    j->finished_ms = time_now_ms();
    if (result) {
        j->result = result;
        snprintf(j->state, sizeof j->state, "done");
    } else {
        snprintf(j->state, sizeof j->state, "failed");
        snprintf(j->error, sizeof j->error, "%s", err.msg);
    }
    uv_close((uv_handle_t *)t, job_closed);
}

static job *job_start(http_request *req, const char *op, const json_t *args)
{
    /* a free slot, else the oldest finished job's */
    job *slot = NULL;
    for (size_t i = 0; i < JOBS_MAX && !(slot && !slot->used); i++) {
        job *j = &jobs[i];
        bool finished = j->used && !j->timer_open &&
                        (strcmp(j->state, "done") == 0 || strcmp(j->state, "failed") == 0);
        if (!j->used || (finished && (!slot || j->created_ms < slot->created_ms)))
            slot = j;
    }
    if (!slot)
        return NULL;
    json_decref(slot->args);
    json_decref(slot->result);
    memset(slot, 0, sizeof *slot);
    slot->used = true;
    snprintf(slot->id, sizeof slot->id, "job-%u", ++job_seq);
    snprintf(slot->op, sizeof slot->op, "%.31s", op);
    snprintf(slot->state, sizeof slot->state, "queued");
    snprintf(slot->actor, sizeof slot->actor, "%s", req->who.name);
    slot->args = json_deep_copy(args);
    slot->created_ms = time_now_ms();
    slot->a = req->app;
    uv_timer_init(req->app->loop, &slot->timer);
    slot->timer.data = slot;
    slot->timer_open = true;
    uv_timer_start(&slot->timer, job_run, 0, 0);
    return slot;
}

void api_jobs_get(http_request *req, http_response *res)
{
    for (size_t i = 0; i < JOBS_MAX; i++) {
        job *j = &jobs[i];
        if (!j->used || strcmp(j->id, req->params[0]) != 0)
            continue;
        char created[40], finished[40];
        time_format_rfc3339(j->created_ms, created, sizeof created);
        time_format_rfc3339(j->finished_ms, finished, sizeof finished);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", j->id, "operation", j->op, "state",
                              j->state, "created_at", created);
        if (j->finished_ms)
            json_object_set_new(o, "finished_at", json_string(finished));
        if (j->result)
            json_object_set(o, "result", j->result);
        if (j->error[0])
            json_object_set_new(o, "error", json_string(j->error));
        http_reply_json(res, 200, o);
        return;
    }
    http_reply_error(res, req, 404, CX_ENOTFOUND, "JOB_NOT_FOUND", NULL,
                     "no job '%.32s' (the last %d jobs are kept until restart)", req->params[0],
                     JOBS_MAX);
}

/* ---- POST /memory/{operation} ---------------------------------------------------------------- */

static bool known_op(const char *op)
{
    static const char *const server_ops[] = {"scope-status",     "permissions-check",
                                             "violations",       "scope-reset",
                                             "connection-test",  "performance-metrics",
                                             "slow-queries",     "adjust-cache",
                                             NULL};
    for (size_t i = 0; server_ops[i]; i++)
        if (strcmp(op, server_ops[i]) == 0)
            return true;
    for (size_t i = 0; memops_names[i]; i++)
        if (strcmp(op, memops_names[i]) == 0)
            return true;
    return false;
}

static bool changes_data(const char *op)
{
    static const char *const ops[] = {"recover", "restore",  "import",  "reinitialize", "reindex",
                                      "cleanup", "optimize", "maintenance", "backup",
                                      "emergency-backup", NULL};
    for (size_t i = 0; ops[i]; i++)
        if (strcmp(op, ops[i]) == 0)
            return true;
    return false;
}

void api_memory_operation(http_request *req, http_response *res)
{
    const char *op = req->params[0];
    if (!known_op(op)) {
        http_reply_error(res, req, 404, CX_ENOTFOUND, "UNKNOWN_OPERATION",
                         json_pack("{s:s}", "operation", op),
                         "no memory operation '%.64s' (see caxton memory --help)", op);
        return;
    }
    if (!store_or_reply(req, res))
        return;
    json_t *args = req->body ? req->body : json_object();
    if (req->body && !json_is_object(req->body)) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_PARAMETER", NULL,
                         "the operation's arguments must be a JSON object");
        return;
    }
    const char *server_only = NULL;
    if (strcmp(op, "scope-status") == 0)
        op_scope_status(req, res, args);
    else if (strcmp(op, "permissions-check") == 0)
        op_permissions_check(req, res, args);
    else if (strcmp(op, "violations") == 0)
        op_violations(req, res, args);
    else if (strcmp(op, "scope-reset") == 0)
        op_scope_reset(req, res, args);
    else if (strcmp(op, "connection-test") == 0)
        op_connection_test(req, res, args);
    else if (strcmp(op, "performance-metrics") == 0 || strcmp(op, "slow-queries") == 0)
        op_performance(req, res, strcmp(op, "slow-queries") == 0, args);
    else if (strcmp(op, "adjust-cache") == 0)
        op_adjust_cache(req, res, args);
    else
        server_only = op;
    if (!server_only)
        goto done;
    if (changes_data(op))
        state_audit_append(req->app->state, req->who.name, "memory.operation", op, NULL, NULL);
    if (json_is_true(json_object_get(args, "background"))) {
        job *j = job_start(req, op, args);
        if (!j) {
            http_reply_error(res, req, 429, CX_ELIMIT, "TOO_MANY_JOBS", NULL,
                             "%d memory jobs are still queued or running", JOBS_MAX);
            goto done;
        }
        http_reply_json(res, 202, json_pack("{s:s, s:s, s:s, s:s}", "job_id", j->id, "operation",
                                            op, "state", j->state, "follow",
                                            "GET /api/v1/jobs/{id} (caxton memory job ID)"));
        goto done;
    }
    /* health-check AGENT: the agent must exist; its scope is part of the answer */
    agent *for_agent = NULL;
    if (strcmp(op, "health-check") == 0 && json_string_value(json_object_get(args, "agent")) &&
        !(for_agent = agent_arg(req, res, args)))
        goto done;
    /* cleanup applies memory.retention first, so a vacuum returns the space */
    json_t *retention = NULL;
    cx_error rerr = {0};
    if (strcmp(op, "cleanup") == 0)
        retention = agent_memory_retention(req->app->memory, req->app->agents,
                                           json_string_value(json_object_get(args, "agent")),
                                           &rerr);
    memops_ctx ctx;
    memops_ctx_for(req->app, &ctx, req->who.name);
    json_t *result = NULL;
    cx_error err = {0};
    if (memops_run(&ctx, op, args, &result, &err) != 0 || !result) {
        json_decref(retention);
        json_decref(result);
        reply_mem_error(res, req, &err);
        goto done;
    }
    if (strcmp(op, "cleanup") == 0)
        json_object_set_new(result, "retention",
                            retention ? json_pack("{s:o, s:s}", "deleted_by_agent", retention,
                                                  "rule", "entities an agent created and nobody "
                                                  "updated within its memory.retention")
                                      : json_sprintf("not applied: %s", rerr.msg));
    if (for_agent) {
        json_t *scope = agent_scope_json(req, for_agent);
        if (json_is_false(json_object_get(scope, "enabled"))) {
            json_t *warnings = json_object_get(result, "warnings");
            if (!json_is_array(warnings)) {
                warnings = json_array();
                json_object_set_new(result, "warnings", warnings);
            }
            json_array_append_new(warnings, json_sprintf("agent '%s' has memory.enabled false: "
                                                         "it uses no memory",
                                                         agent_name(for_agent)));
        }
        json_object_set_new(result, "agent", scope);
    }
    http_reply_json(res, 200, result);
done:
    if (!req->body)
        json_decref(args);
}

/* ---- agents/{name}/reconnect-memory ------------------------------------------------------------ */

void api_agents_reconnect_memory(http_request *req, http_response *res)
{
    memstore *ms = store_or_reply(req, res);
    if (!ms)
        return;
    agent *ag = registry_find(req->app->agents, req->params[0]);
    if (!ag) {
        http_reply_error(res, req, 404, CX_ENOTFOUND, "AGENT_NOT_FOUND",
                         json_pack("{s:s}", "agent", req->params[0]), "no agent named '%.64s'",
                         req->params[0]);
        return;
    }
    /* The agents share one store handle: reconnecting reopens it (a no-op
     * for a healthy store beyond a quick reopen), which is what heals a
     * store left unavailable by a failed open or a removed file. */
    cx_error err = {0};
    const char *what;
    bool ok;
    if (memstore_available(ms)) {
        ok = true;
        what = "the memory store was connected; the agent's next message uses it";
    } else {
        ok = memstore_resume(ms, &err) == 0;
        what = ok ? "the memory store was reopened" : err.msg;
    }
    const agent_def *def = agent_definition(ag);
    state_audit_append(req->app->state, req->who.name, "memory.reconnect", agent_name(ag),
                       json_pack("{s:b, s:s}", "ok", ok, "detail", what), NULL);
    if (!ok) {
        http_reply_error(res, req, 503, CX_EUNAVAIL, MEM_API_UNAVAILABLE,
                         json_pack("{s:s}", "agent", agent_name(ag)),
                         "the memory store could not be reopened: %s (caxton memory "
                         "health-check; caxton memory recover --from-wal --backup-first)",
                         what);
        return;
    }
    http_reply_json(res, 200,
                    json_pack("{s:s, s:b, s:s, s:b}", "agent", agent_name(ag), "ok", ok, "detail",
                              what, "memory_enabled", def && def->memory_enabled));
}
