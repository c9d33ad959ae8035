/* /api/v1/tools: the MCP tool servers, and the tools an agent may use.
 *
 * GET lists each server (state, tools, errors, latency); with ?agent=NAME it
 * also lists that agent's allow-list with whether each tool is reachable
 * now. POST /tools/reconnect restarts servers; POST /tools/test runs an
 * initialize + tools/list round trip per server on a fresh connection and
 * answers when all are done (deferred: no thread waits). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/registry.h"
#include "api/routes.h"
#include "core/util.h"
#include "memory/memstore.h"
#include "tools/mcp.h"

#define TEST_TIMEOUT_MS 15000u

static bool builtin_tool(const char *t)
{
    return strcmp(t, "send_message") == 0 || strcmp(t, "reply") == 0;
}

static bool memory_tool(const char *t)
{
    return str_has_prefix(t, "memory_");
}

/* The agent's allow-list with reachability, or NULL (reply set) when the
 * agent is unknown. *servers gets the MCP servers it uses. */
static json_t *agent_tools(http_request *req, http_response *res, const char *name,
                           json_t **servers)
{
    agent *ag = registry_find(req->app->agents, name);
    const agent_def *def = ag ? agent_definition(ag) : NULL;
    if (!ag || !def) {
        http_reply_error(res, req, 404, CX_ENOTFOUND, "AGENT_NOT_FOUND",
                         json_pack("{s:s}", "agent", name), "no agent named '%.64s'%s", name,
                         ag ? " with a valid definition" : "");
        return NULL;
    }
    mcp_hub *hub = req->app->tools;
    json_t *list = json_array();
    *servers = json_array();
    for (size_t i = 0; i < def->tool_count; i++) {
        const char *t = def->tools[i];
        json_t *entry;
        if (builtin_tool(t)) {
            entry = json_pack("{s:s, s:s, s:b, s:s}", "tool", t, "kind", "builtin", "reachable",
                              1, "detail", "built into the server");
        } else if (memory_tool(t)) {
            memstore *ms = req->app->memory;
            bool up = ms && memstore_available(ms) && def->memory_enabled;
            entry = json_pack("{s:s, s:s, s:b, s:s}", "tool", t, "kind", "memory", "reachable", up,
                              "detail",
                              !def->memory_enabled  ? "memory.enabled is false in the agent file"
                              : up                  ? "the embedded memory store is available"
                                                    : "the memory store is unavailable (caxton "
                                                      "memory health-check)");
        } else {
            char server[MCP_NAME_MAX + 1];
            const char *dot = strchr(t, '.');
            size_t len = dot ? (size_t)(dot - t) : strlen(t);
            snprintf(server, sizeof server, "%.*s", (int)(len < MCP_NAME_MAX ? len : MCP_NAME_MAX),
                     t);
            bool known_server = hub && mcp_hub_has_server(hub, server);
            bool listed = hub && mcp_hub_tool(hub, t) != NULL;
            const char *detail = listed ? "listed by its server"
                                 : known_server
                                     ? "its server is configured but does not list it now (see "
                                       "the server's state and last_error)"
                                     : "no MCP server of that name in tools.mcp_servers";
            entry = json_pack("{s:s, s:s, s:s, s:b, s:s}", "tool", t, "kind", "mcp", "server",
                              server, "reachable", listed, "detail", detail);
            bool seen = false;
            size_t k;
            json_t *v;
            json_array_foreach(*servers, k, v) {
                if (strcmp(json_string_value(v), server) == 0)
                    seen = true;
            }
            if (!seen && known_server)
                json_array_append_new(*servers, json_string(server));
        }
        json_array_append_new(list, entry);
    }
    return list;
}

void api_tools_status(http_request *req, http_response *res)
{
    const char *name = http_query(req, "agent");
    mcp_hub *hub = req->app->tools;
    json_t *doc = json_object();
    if (name) {
        json_t *servers = NULL;
        json_t *tools = agent_tools(req, res, name, &servers);
        if (!tools) {
            json_decref(doc);
            return;
        }
        json_t *status = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(servers, i, v) {
            json_t *one = mcp_hub_status_json(hub, json_string_value(v));
            if (one)
                json_array_extend(status, one);
            json_decref(one);
        }
        json_decref(servers);
        json_object_set_new(doc, "agent", json_string(name));
        json_object_set_new(doc, "tools", tools);
        json_object_set_new(doc, "servers", status);
    } else {
        json_t *all = hub ? mcp_hub_status_json(hub, NULL) : NULL;
        json_object_set_new(doc, "servers", all ? all : json_array());
    }
    http_reply_json(res, 200, doc);
}

/* {"agent": NAME} and/or {"server": S} from the body. */
static bool target_args(http_request *req, http_response *res, const char **agent_name,
                        const char **server)
{
    *agent_name = *server = NULL;
    if (!req->body)
        return true;
    json_t *a = json_object_get(req->body, "agent"), *s = json_object_get(req->body, "server");
    if (!json_is_object(req->body) || (a && !json_is_null(a) && !json_is_string(a)) ||
        (s && !json_is_null(s) && !json_is_string(s))) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_REQUEST", NULL,
                         "expected {\"agent\": NAME} or {\"server\": NAME}");
        return false;
    }
    *agent_name = json_string_value(a);
    *server = json_string_value(s);
    return true;
}

void api_tools_reconnect(http_request *req, http_response *res)
{
    const char *agent_name, *server;
    if (!target_args(req, res, &agent_name, &server))
        return;
    mcp_hub *hub = req->app->tools;
    json_t *servers = NULL;
    if (agent_name) {
        json_t *tools = agent_tools(req, res, agent_name, &servers);
        if (!tools)
            return;
        json_decref(tools);
    } else {
        servers = json_array();
        if (server)
            json_array_append_new(servers, json_string(server));
    }
    json_t *done = json_array();
    cx_error err;
    if (!agent_name && !server) {
        if (hub && mcp_hub_reconnect(hub, NULL, &err) < 0) {
            json_decref(servers);
            json_decref(done);
            http_reply_error(res, req, 0, err.code, NULL, NULL, "%s", err.msg);
            return;
        }
        json_t *all = hub ? mcp_hub_status_json(hub, NULL) : NULL;
        size_t i;
        json_t *v;
        json_array_foreach(all, i, v) {
            json_array_append(done, json_object_get(v, "name"));
        }
        json_decref(all);
    }
    size_t i;
    json_t *v;
    json_array_foreach(servers, i, v) {
        if (!hub || mcp_hub_reconnect(hub, json_string_value(v), &err) < 0) {
            /* the reply is built before the list (which owns the name) goes */
            http_reply_error(res, req, 404, CX_ENOTFOUND, "TOOL_SERVER_NOT_FOUND",
                             json_pack("{s:s}", "server", json_string_value(v)), "%s",
                             hub ? err.msg : "no MCP servers are configured (tools.mcp_servers)");
            json_decref(servers);
            json_decref(done);
            return;
        }
        json_array_append(done, v);
    }
    json_decref(servers);
    http_reply_json(res, 200, json_pack("{s:o, s:s}", "reconnecting", done, "note",
                                        "servers restart and list their tools again; see "
                                        "'caxton tools status'"));
}

typedef struct test_ctx {
    http_pending *pending;
    json_t *tools;   /* the agent's allow-list, or NULL */
    json_t *servers; /* the agent's servers (the report keeps only these), or NULL */
} test_ctx;

/* Every tool of an allow-list reachable (memory tools, not built yet, aside). */
static bool tools_reachable(const json_t *tools)
{
    size_t i;
    json_t *v;
    json_array_foreach(tools, i, v) {
        if (!json_is_true(json_object_get(v, "reachable")) &&
            strcmp(json_string_value(json_object_get(v, "kind")) ?: "", "memory") != 0)
            return false;
    }
    return true;
}

static bool listed(const json_t *names, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v) {
        if (name && strcmp(json_string_value(v), name) == 0)
            return true;
    }
    return false;
}

/* The report, kept to the agent's servers; ok when every one answered and,
 * for an agent, every tool of its allow-list is reachable. */
static void on_tested(json_t *report, void *arg)
{
    test_ctx *c = arg;
    http_response *res = http_pending_response(c->pending);
    json_t *servers = json_array();
    bool ok = true;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(report, "servers"), i, v) {
        if (c->servers && !listed(c->servers, json_string_value(json_object_get(v, "name"))))
            continue;
        json_array_append(servers, v);
        if (!json_is_true(json_object_get(v, "ok")))
            ok = false;
    }
    json_t *doc = json_pack("{s:o}", "servers", servers);
    if (c->tools) {
        ok = ok && tools_reachable(c->tools);
        json_object_set_new(doc, "tools", c->tools);
    }
    json_object_set_new(doc, "ok", json_boolean(ok));
    json_decref(c->servers);
    http_reply_json(res, 200, doc);
    http_pending_finish(c->pending);
    free(c);
}

void api_tools_test(http_request *req, http_response *res)
{
    const char *agent_name, *server;
    if (!target_args(req, res, &agent_name, &server))
        return;
    mcp_hub *hub = req->app->tools;
    test_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        cx_error err;
        cx_error_set(&err, CX_ENOMEM, "out of memory");
        http_reply_internal(res, req, &err);
        return;
    }
    json_t *servers = NULL;
    if (agent_name) {
        c->tools = agent_tools(req, res, agent_name, &servers);
        if (!c->tools) {
            free(c);
            return;
        }
        if (json_array_size(servers) == 0 || !hub) {
            /* nothing to test: the verdict is the tools' reachability */
            json_decref(servers);
            json_t *doc = json_pack("{s:o, s:b}", "servers", json_array(), "ok",
                                    tools_reachable(c->tools));
            json_object_set_new(doc, "tools", c->tools);
            free(c);
            http_reply_json(res, 200, doc);
            return;
        }
    }
    if (!hub) {
        free(c);
        if (server)
            http_reply_error(res, req, 404, CX_ENOTFOUND, "TOOL_SERVER_NOT_FOUND",
                             json_pack("{s:s}", "server", server),
                             "no MCP servers are configured (tools.mcp_servers)");
        else
            http_reply_json(res, 200, json_pack("{s:o, s:b}", "servers", json_array(), "ok", 1));
        return;
    }
    /* one server, the agent's (all are tested, the report keeps its own), or all */
    const char *only = server ? server
                              : (json_array_size(servers) == 1
                                     ? json_string_value(json_array_get(servers, 0))
                                     : NULL);
    c->servers = agent_name ? servers : NULL;
    if (!agent_name)
        json_decref(servers);
    cx_error err;
    if (mcp_hub_test(hub, only, TEST_TIMEOUT_MS, on_tested, c, &err) < 0) {
        json_decref(c->servers);
        json_decref(c->tools);
        free(c);
        http_reply_error(res, req, err.code == CX_ENOTFOUND ? 404 : 0, err.code,
                         err.code == CX_ENOTFOUND ? "TOOL_SERVER_NOT_FOUND" : NULL, NULL, "%s",
                         err.msg);
        return;
    }
    c->pending = http_defer(req);
}
