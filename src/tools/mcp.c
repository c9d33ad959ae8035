/* The MCP hub: every configured tool server, its tools, and the calls to
 * them, on the event loop.
 *
 * A server moves through STARTING (a child spawned, `initialize` sent, then
 * `notifications/initialized` and `tools/list` page by page, all within
 * STARTUP_TIMEOUT_MS) -> READY (calls flow; `notifications/tools/list_changed`
 * lists again in the background) -> RESTARTING (after any failure: the
 * child is stopped, calls in flight fail with a reason, and a timer waits
 * restart_backoff doubling to 60 s; 60 s of healthy running resets it) and
 * STOPPED (removed by a reconfigure, or the hub closing). One uv_timer per
 * server serves whichever wait its state has.
 *
 * Calls to a server still STARTING wait for it (until their own timeout);
 * calls to one that is RESTARTING fail at once with tool-server-unavailable,
 * so an agent is never held for a restart it cannot see. A call owns one
 * uv_timer, as LLM calls do: its timeout while waiting, then a zero timeout
 * that runs the callback on the next loop turn, so callbacks never run
 * inside mcp_hub_call, inside a read or inside another callback's stack.
 *
 * What a server writes is trusted for nothing: lines are bounded by the
 * transport (mcp_process.c), a line that is not JSON-RPC counts as a
 * protocol error and GARBAGE_MAX of them restart the server (a garbled
 * answer can never be matched to its call), tool names and schemas are
 * checked before an agent sees them, and every text quoted from the server
 * is cut and made valid UTF-8. Servers' requests are answered: `ping` with
 * an empty result, anything else (sampling, roots) with "method not found".
 *
 * A server with a `url` is reached over Streamable HTTP (mcp_http.c) instead
 * of a child: the same messages, states and restarts, a new session at each
 * start; the transport also reports a request it knows will get no response
 * (an answer too large or without it), which fails that request alone.
 *
 * Connectivity tests reuse the same server code on a fresh child (or
 * session) that is never restarted and whose tools stay out of the hub's
 * map. */
#include "tools/mcp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/map.h"
#include "core/units.h"
#include "core/util.h"
#include "tools/mcp_internal.h"

#define STARTUP_TIMEOUT_MS 10000u
#define HEALTHY_MS 60000u          /* running this long resets the backoff */
#define GARBAGE_MAX 3              /* protocol errors from one child before a restart */
#define LIST_PAGES_MAX 100
#define CURSOR_MAX 1024
#define REQUEST_MAX (8u * 1024u * 1024u)           /* bytes of a tools/call request */
#define CALL_TIMEOUT_MAX_MS (24u * 3600u * 1000u)
#define LAST_ERROR_MAX 512
#define QUOTE_MAX 160              /* bytes of server text quoted in a message */
#define JSONRPC_METHOD_NOT_FOUND (-32601)

static const char *const protocol_versions[] = {MCP_PROTOCOL_VERSION, "2025-03-26",
                                                "2024-11-05"};

typedef enum server_state {
    SERVER_STARTING,
    SERVER_READY,
    SERVER_RESTARTING,
    SERVER_STOPPED,
} server_state;

static const char *const state_names[] = {"starting", "ready", "restarting", "stopped"};

typedef struct tool {
    mcp_tool_info info;
    char *full_name;
    char *name; /* at the server */
    char *description;
    json_t *schema;
} tool;

typedef struct server server;
typedef struct test_run test_run;

typedef enum call_state { CALL_WAITING, CALL_DONE, CALL_DELIVERING, CALL_CLOSING } call_state;

struct mcp_call {
    mcp_hub *hub;
    server *srv;                  /* while waiting on it */
    mcp_call *prev, *next;        /* the hub's calls not yet delivered */
    mcp_call *srv_prev, *srv_next; /* the server's waiting calls */
    call_state state;
    uint64_t id;                  /* 0 while queued behind a starting server */
    char *tool;                   /* the name at the server */
    json_t *arguments;
    uv_timer_t timer;
    uint64_t start_ms;
    uint64_t limit_ms;    /* its timeout, as the operator would read it */
    mcp_done_fn done;
    void *arg;
    mcp_result result;
    json_t *answer;
};

struct server {
    mcp_hub *hub;
    mcp_server_config *cfg;
    server *next;                 /* the hub's servers (not probes) */
    test_run *run;                /* set for a connectivity probe */
    size_t probe_index;
    server_state state;
    uv_timer_t timer;             /* startup deadline, backoff, or re-list deadline */
    mcp_child *child;
    mcp_http *http;               /* instead of the child for a url server */
    uint64_t next_id;
    uint64_t init_id, list_id;    /* our requests in flight (0: none) */
    json_t *listing;              /* checked tools gathered from tools/list pages */
    unsigned list_pages;
    bool relist;                  /* the list changed while we were listing */
    bool listed;                  /* tools came at least once */
    tool *tools;
    size_t tool_count;
    mcp_call *calls;
    unsigned garbage;
    unsigned renewals; /* sessions renewed in a row without a call answered */
    uint64_t startup_ms;
    uint64_t backoff_ms;
    uint64_t spawn_ms, init_done_ms, ready_ms, connected_at_ms;
    uint64_t initialize_ms, list_ms; /* the last start's round trips */
    bool spawned_once;
    uint64_t restarts, calls_total, errors, answered, latency_total_ms, protocol_errors;
    char last_error[LAST_ERROR_MAX];
};

struct test_run {
    mcp_hub *hub;
    test_run *next;
    void (*done)(json_t *report, void *arg);
    void *arg;
    json_t *report;
    server **probes;
    size_t count, finished;
    uv_timer_t timer;
};

struct mcp_hub {
    uv_loop_t *loop;
    server *servers;
    map tools;       /* "server.tool" -> tool */
    mcp_call *calls;
    test_run *runs;
    size_t open;     /* servers, children, calls and runs whose memory is not yet freed */
    bool closing;
};

static uint64_t now_ms(void) { return time_monotonic_ns() / 1000000u; }

static void hub_maybe_free(mcp_hub *h)
{
    if (!h->closing || h->open > 0)
        return;
    map_free(&h->tools);
    free(h);
}

static void server_log(const server *srv, log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void server_log(const server *srv, log_level level, const char *fmt, ...)
{
    if (srv->run && level > LOG_DEBUG)
        level = LOG_DEBUG; /* a probe's story is its report */
    if (level < log_get_level())
        return;
    char msg[CX_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    text_make_utf8(msg);
    log_event(LOG_STREAM_SERVER, level, "mcp", json_pack("{s:s}", "server", srv->cfg->name),
              "%s", msg);
}

/* Server text for a message: one line, quoted, cut, valid UTF-8. */
static void quote_bytes(const char *s, size_t len, char *out, size_t size)
{
    char buf[QUOTE_MAX + 1];
    size_t n = len < QUOTE_MAX ? len : QUOTE_MAX;
    memcpy(buf, s, n);
    buf[n] = '\0';
    text_quote(buf, out, size);
}

/* ---- Tools ----------------------------------------------------------------------------------- */

static void tools_free(tool *tools, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(tools[i].full_name);
        free(tools[i].name);
        free(tools[i].description);
        json_decref(tools[i].schema);
    }
    free(tools);
}

static void tools_unmap(server *srv)
{
    for (size_t i = 0; i < srv->tool_count; i++)
        if (map_get(&srv->hub->tools, srv->tools[i].full_name) == &srv->tools[i])
            map_remove(&srv->hub->tools, srv->tools[i].full_name);
}

static const tool *server_tool(const server *srv, const char *name)
{
    for (size_t i = 0; i < srv->tool_count; i++)
        if (strcmp(srv->tools[i].name, name) == 0)
            return &srv->tools[i];
    return NULL;
}

/* Checks one entry of a tools/list page; appends it to the listing when
 * usable, logs why not otherwise. */
static void listing_add(server *srv, const json_t *entry)
{
    const json_t *name = json_object_get(entry, "name");
    const json_t *schema = json_object_get(entry, "inputSchema");
    const json_t *description = json_object_get(entry, "description");
    char shown[96];
    if (!json_is_string(name) ||
        !mcp_name_valid(json_string_value(name), json_string_length(name))) {
        if (json_is_string(name))
            quote_bytes(json_string_value(name), json_string_length(name), shown, sizeof shown);
        else
            snprintf(shown, sizeof shown, "(no name)");
        server_log(srv, LOG_WARN, "MCP server '%s' lists a tool named %s; skipped: tool names "
                   "must be 1 to %d letters, digits, '_' or '-'", srv->cfg->name, shown,
                   MCP_NAME_MAX);
        return;
    }
    const char *n = json_string_value(name);
    if (!json_is_object(schema)) {
        server_log(srv, LOG_WARN, "MCP server '%s' lists tool '%s' with an invalid schema "
                   "(inputSchema must be a JSON object); skipped", srv->cfg->name, n);
        return;
    }
    size_t count = json_array_size(srv->listing);
    for (size_t i = 0; i < count; i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(srv->listing, i), "name")),
                   n) == 0) {
            server_log(srv, LOG_WARN, "MCP server '%s' lists tool '%s' twice; the second is "
                       "skipped", srv->cfg->name, n);
            return;
        }
    if (count >= MCP_MAX_TOOLS_PER_SERVER) {
        server_log(srv, LOG_WARN, "MCP server '%s' lists more than %d tools; '%s' and later "
                   "ones are skipped", srv->cfg->name, MCP_MAX_TOOLS_PER_SERVER, n);
        return;
    }
    json_t *kept = json_pack("{s:O, s:O}", "name", name, "inputSchema", schema);
    if (kept && json_is_string(description))
        json_object_set(kept, "description", (json_t *)description);
    if (!kept || json_array_append_new(srv->listing, kept) != 0)
        server_log(srv, LOG_ERROR, "out of memory keeping tool '%s' of MCP server '%s'", n,
                   srv->cfg->name);
}

/* Turns the finished listing into the server's tools (and, for a hub
 * server, the hub's map). */
static int listing_install(server *srv)
{
    size_t n = json_array_size(srv->listing);
    tool *tools = calloc(n ? n : 1, sizeof *tools);
    if (!tools)
        return CX_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const json_t *entry = json_array_get(srv->listing, i);
        const char *desc = json_string_value(json_object_get(entry, "description"));
        tool *t = &tools[i];
        t->name = str_dup(json_string_value(json_object_get(entry, "name")));
        t->description = str_dup(desc ? desc : "");
        t->schema = json_incref(json_object_get(entry, "inputSchema"));
        strbuf sb;
        strbuf_init(&sb);
        if (t->name && strbuf_appendf(&sb, "%s.%s", srv->cfg->name, t->name) == 0)
            t->full_name = strbuf_detach(&sb);
        strbuf_free(&sb);
        if (!t->name || !t->description || !t->full_name) {
            tools_free(tools, n);
            return CX_ENOMEM;
        }
        t->info = (mcp_tool_info){t->full_name, t->description, t->schema};
    }
    if (!srv->run)
        tools_unmap(srv);
    tools_free(srv->tools, srv->tool_count);
    srv->tools = tools;
    srv->tool_count = n;
    srv->listed = true;
    for (size_t i = 0; !srv->run && i < n; i++)
        if (map_put(&srv->hub->tools, tools[i].full_name, &tools[i], NULL) != 0)
            server_log(srv, LOG_ERROR, "out of memory listing tool '%s'", tools[i].full_name);
    return 0;
}

/* ---- Calls: finishing and delivering --------------------------------------------------------- */

static void on_call_closed(uv_handle_t *handle)
{
    mcp_call *call = handle->data;
    mcp_hub *h = call->hub;
    json_decref(call->answer);
    json_decref(call->arguments);
    free(call->tool);
    free(call);
    h->open--;
    hub_maybe_free(h);
}

static void call_unlink(mcp_call *call)
{
    mcp_hub *h = call->hub;
    if (call->prev)
        call->prev->next = call->next;
    else if (h->calls == call)
        h->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
}

static void call_detach(mcp_call *call)
{
    server *srv = call->srv;
    if (!srv)
        return;
    if (call->srv_prev)
        call->srv_prev->srv_next = call->srv_next;
    else
        srv->calls = call->srv_next;
    if (call->srv_next)
        call->srv_next->srv_prev = call->srv_prev;
    call->srv_prev = call->srv_next = NULL;
    call->srv = NULL;
}

static void call_attach(mcp_call *call, server *srv)
{
    call->srv = srv;
    call->srv_prev = NULL;
    call->srv_next = srv->calls;
    if (srv->calls)
        srv->calls->srv_prev = call;
    srv->calls = call;
}

static void call_destroy(mcp_call *call)
{
    call_unlink(call);
    call->state = CALL_CLOSING;
    uv_timer_stop(&call->timer);
    uv_close((uv_handle_t *)&call->timer, on_call_closed);
}

static void on_call_deliver(uv_timer_t *timer)
{
    mcp_call *call = timer->data;
    call->state = CALL_DELIVERING;
    call_unlink(call); /* a close from inside the callback leaves it alone */
    call->result.result = call->answer;
    call->result.elapsed_ms = now_ms() - call->start_ms;
    call->done(&call->result, call->arg);
    call_destroy(call);
}

static void call_finish(mcp_call *call, int code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Stores the outcome and runs the callback on the next loop turn. */
static void call_finish(mcp_call *call, int code, const char *reason, const char *fmt, ...)
{
    mcp_result *r = &call->result;
    r->code = code;
    r->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
    text_make_utf8(r->detail);
    server *srv = call->srv;
    if (srv && (code != 0 || r->is_error) && reason && strcmp(reason, MCP_REASON_SHUTDOWN) != 0)
        srv->errors++;
    if (srv && code == 0) {
        srv->answered++;
        srv->latency_total_ms += now_ms() - call->start_ms;
    }
    call_detach(call);
    call->state = CALL_DONE;
    uv_timer_stop(&call->timer);
    uv_timer_start(&call->timer, on_call_deliver, 0, 0);
}

/* ---- Talking to the server ------------------------------------------------------------------- */

static int server_send(server *srv, json_t *msg, cx_error *err)
{
    if (!msg)
        return cx_error_set(err, CX_ENOMEM, "out of memory building a message for MCP server "
                            "'%s'", srv->cfg->name);
    const json_t *id = json_object_get(msg, "id");
    uint64_t request_id = json_object_get(msg, "method") && json_is_integer(id)
                              ? (uint64_t)json_integer_value(id)
                              : 0;
    char *text = json_dumps(msg, JSON_COMPACT); /* escapes newlines inside strings */
    json_decref(msg);
    if (!text)
        return cx_error_set(err, CX_ENOMEM, "out of memory building a message for MCP server "
                            "'%s'", srv->cfg->name);
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL; the length says where it ends */
    int rc = srv->child  ? mcp_child_send(srv->child, text, len + 1, err)
             : srv->http ? mcp_http_send(srv->http, text, len, request_id, err)
                         : cx_error_set(err, CX_EUNAVAIL, "MCP server '%s' is not connected",
                                        srv->cfg->name);
    free(text);
    return rc;
}

static uint64_t server_request(server *srv, const char *method, json_t *params)
{
    uint64_t id = srv->next_id++;
    json_t *msg = json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id", (json_int_t)id, "method",
                            method);
    if (msg && params)
        json_object_set_new(msg, "params", params);
    else
        json_decref(params);
    cx_error err = {0};
    if (server_send(srv, msg, &err) != 0) {
        server_log(srv, LOG_WARN, "%s", err.msg);
        return 0;
    }
    return id;
}

static void server_notify(server *srv, const char *method, json_t *params)
{
    json_t *msg = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method", method);
    if (msg && params)
        json_object_set_new(msg, "params", params);
    else
        json_decref(params);
    server_send(srv, msg, NULL);
}

static void call_send_cancelled(mcp_call *call, const char *why)
{
    server *srv = call->srv;
    if (!call->id || !srv || (!srv->child && !srv->http))
        return;
    server_notify(srv, "notifications/cancelled",
                  json_pack("{s:I, s:s}", "requestId", (json_int_t)call->id, "reason", why));
    mcp_http_abandon(srv->http, call->id);
}

/* Sends a call to its (ready) server, or fails it. */
static void call_send(mcp_call *call)
{
    server *srv = call->srv;
    if (srv->listed && !server_tool(srv, call->tool)) {
        call_finish(call, CX_ENOTFOUND, MCP_REASON_UNKNOWN_TOOL, "MCP server '%s' has no tool "
                    "'%s'", srv->cfg->name, call->tool);
        return;
    }
    json_t *params = json_pack("{s:s, s:O}", "name", call->tool, "arguments", call->arguments);
    uint64_t id = srv->next_id++;
    json_t *msg = json_pack("{s:s, s:I, s:s, s:o}", "jsonrpc", "2.0", "id", (json_int_t)id,
                            "method", "tools/call", "params", params);
    cx_error err = {0};
    if (server_send(srv, msg, &err) != 0) {
        call_finish(call, CX_EUNAVAIL, MCP_REASON_NOT_CONNECTED, "%s", err.msg);
        return;
    }
    call->id = id;
}

/* ---- Server lifecycle ------------------------------------------------------------------------ */

static void server_spawn(server *srv);
static void probe_finish(server *srv, bool ok, const char *error);
static void server_on_line(void *owner, const char *line, size_t len);
static void server_on_gone(void *owner, const char *reason, const char *detail);
static void server_on_unanswered(void *owner, uint64_t id, const char *reason,
                                 const char *detail);
static void list_failed(server *srv, const char *detail);

static const mcp_child_events child_events = {server_on_line, server_on_gone,
                                              server_on_unanswered};

static void on_child_closed(void *ctx)
{
    mcp_hub *h = ctx;
    h->open--;
    hub_maybe_free(h);
}

static void server_drop_child(server *srv)
{
    mcp_child_stop(srv->child);
    srv->child = NULL;
    mcp_http_stop(srv->http);
    srv->http = NULL;
    srv->init_id = srv->list_id = 0;
    json_decref(srv->listing);
    srv->listing = NULL;
    srv->relist = false;
}

static int reason_code(const char *reason)
{
    if (strcmp(reason, MCP_REASON_TIMEOUT) == 0)
        return CX_ETIMEOUT;
    if (strcmp(reason, MCP_REASON_TOO_BIG) == 0)
        return CX_ETOOBIG;
    if (strcmp(reason, MCP_REASON_PROTOCOL) == 0)
        return CX_EPARSE;
    if (strcmp(reason, MCP_REASON_UNKNOWN_TOOL) == 0)
        return CX_ENOTFOUND;
    return CX_EUNAVAIL;
}

/* Fails the server's waiting calls: those sent with reason, those still
 * queued with reason_queued (NULL: they keep waiting). */
static void server_fail_calls(server *srv, const char *reason, const char *reason_queued,
                              const char *detail)
{
    mcp_call *next;
    for (mcp_call *call = srv->calls; call; call = next) {
        next = call->srv_next;
        const char *why = call->id ? reason : reason_queued;
        if (!why)
            continue;
        call_finish(call, reason_code(why), why, "MCP server '%s': %s", srv->cfg->name, detail);
    }
}

static void on_restart_due(uv_timer_t *timer)
{
    server *srv = timer->data;
    srv->restarts++;
    server_spawn(srv);
}

/* Any failure of the current connection: records it, fails the calls on it,
 * and schedules the next start (or ends a probe). */
static void server_failed(server *srv, const char *reason, const char *detail)
{
    /* an ended session is renewed at once, without raising the backoff,
     * unless it keeps happening */
    bool renewal = strcmp(reason, MCP_REASON_SESSION_EXPIRED) == 0 &&
                   srv->renewals < MCP_SESSION_RENEWALS_MAX;
    if (strcmp(reason, MCP_REASON_SESSION_EXPIRED) == 0)
        reason = MCP_REASON_NOT_CONNECTED;
    snprintf(srv->last_error, sizeof srv->last_error, "%s", detail);
    text_make_utf8(srv->last_error);
    server_drop_child(srv);
    uv_timer_stop(&srv->timer);
    server_fail_calls(srv, reason, MCP_REASON_NOT_CONNECTED, detail);
    if (srv->run) {
        probe_finish(srv, false, srv->last_error);
        return;
    }
    if (srv->state == SERVER_STOPPED)
        return;
    uint64_t now = now_ms();
    if (srv->ready_ms && now - srv->ready_ms >= HEALTHY_MS)
        srv->backoff_ms = srv->cfg->restart_backoff_ms;
    uint64_t delay = 0;
    if (renewal) {
        srv->renewals++;
    } else {
        srv->renewals = 0;
        delay = srv->backoff_ms;
        srv->backoff_ms = delay * 2 < MCP_BACKOFF_MAX_MS ? delay * 2 : MCP_BACKOFF_MAX_MS;
    }
    srv->state = SERVER_RESTARTING;
    srv->ready_ms = 0;
    srv->connected_at_ms = 0;
    server_log(srv, LOG_WARN, "MCP server '%s' failed: %s; restarting in %llu ms",
               srv->cfg->name, srv->last_error, (unsigned long long)delay);
    uv_timer_start(&srv->timer, on_restart_due, delay, 0);
}

static void server_garbage(server *srv, const char *line, size_t len, const char *why)
{
    char shown[QUOTE_MAX + 16];
    quote_bytes(line, len, shown, sizeof shown);
    srv->garbage++;
    srv->protocol_errors++;
    server_log(srv, LOG_WARN, "MCP server '%s' wrote a line that is %s: %s", srv->cfg->name, why,
               shown);
    if (srv->garbage >= GARBAGE_MAX) {
        char detail[LAST_ERROR_MAX];
        snprintf(detail, sizeof detail, "the server wrote %u lines that are not JSON-RPC "
                 "messages (the last: %s)", srv->garbage, shown);
        server_failed(srv, MCP_REASON_PROTOCOL, detail);
    }
}

static void on_startup_deadline(uv_timer_t *timer)
{
    server *srv = timer->data;
    char detail[160];
    snprintf(detail, sizeof detail, "no answer to %s within %llu ms of starting",
             srv->init_done_ms ? "tools/list" : "initialize",
             (unsigned long long)srv->startup_ms);
    server_failed(srv, MCP_REASON_NOT_CONNECTED, detail);
}

static void on_relist_deadline(uv_timer_t *timer)
{
    server *srv = timer->data;
    srv->protocol_errors++;
    server_log(srv, LOG_WARN, "MCP server '%s' did not answer tools/list within %llu ms; keeping "
               "its previous tools", srv->cfg->name, (unsigned long long)srv->cfg->timeout_ms);
    srv->list_id = 0;
    json_decref(srv->listing);
    srv->listing = NULL;
    srv->relist = false;
}

static void server_list(server *srv, const char *cursor)
{
    if (!cursor) {
        json_decref(srv->listing);
        srv->listing = json_array();
        srv->list_pages = 0;
    }
    srv->list_pages++;
    srv->list_id = server_request(srv, "tools/list",
                                  cursor ? json_pack("{s:s}", "cursor", cursor) : NULL);
    if (srv->list_id == 0 && srv->state == SERVER_STARTING)
        server_failed(srv, MCP_REASON_NOT_CONNECTED, "cannot send tools/list to the server");
}

static void server_relist(server *srv)
{
    srv->relist = false;
    uv_timer_stop(&srv->timer);
    uv_timer_start(&srv->timer, on_relist_deadline, srv->cfg->timeout_ms, 0);
    server_list(srv, NULL);
}

static void server_ready(server *srv)
{
    uint64_t now = now_ms();
    srv->state = SERVER_READY;
    srv->ready_ms = now;
    srv->connected_at_ms = time_now_ms();
    srv->list_ms = now - srv->init_done_ms;
    uv_timer_stop(&srv->timer);
    if (srv->run) {
        probe_finish(srv, true, NULL);
        return;
    }
    if (srv->http)
        server_log(srv, LOG_INFO, "MCP server '%s' is ready with %zu tools (%s)",
                   srv->cfg->name, srv->tool_count, srv->cfg->url_shown);
    else
        server_log(srv, LOG_INFO, "MCP server '%s' is ready with %zu tools (pid %d)",
                   srv->cfg->name, srv->tool_count, mcp_child_pid(srv->child));
    /* Queued calls go out oldest first (the list has the newest first). */
    mcp_call *last = srv->calls, *prev;
    while (last && last->srv_next)
        last = last->srv_next;
    for (mcp_call *call = last; call && srv->state == SERVER_READY; call = prev) {
        prev = call->srv_prev;
        if (call->id == 0)
            call_send(call);
    }
    if (srv->relist && srv->state == SERVER_READY)
        server_relist(srv);
}

static void server_spawn(server *srv)
{
    srv->state = SERVER_STARTING;
    srv->garbage = 0;
    srv->init_done_ms = srv->ready_ms = srv->connected_at_ms = 0;
    srv->initialize_ms = srv->list_ms = 0;
    srv->spawn_ms = now_ms();
    srv->spawned_once = true;
    srv->hub->open++;
    cx_error err = {0};
    int rc = srv->cfg->url ? mcp_http_start(srv->hub->loop, srv->cfg, &child_events, srv,
                                            on_child_closed, srv->hub, &srv->http, &err)
                           : mcp_child_start(srv->hub->loop, srv->cfg, &child_events, srv,
                                             on_child_closed, srv->hub, &srv->child, &err);
    if (rc != 0) {
        server_failed(srv, MCP_REASON_NOT_CONNECTED, err.msg);
        return;
    }
    if (srv->http)
        server_log(srv, LOG_INFO, "connecting to MCP server '%s' at %s", srv->cfg->name,
                   srv->cfg->url_shown);
    else
        server_log(srv, LOG_INFO, "starting MCP server '%s' (pid %d)", srv->cfg->name,
                   mcp_child_pid(srv->child));
    uv_timer_start(&srv->timer, on_startup_deadline, srv->startup_ms, 0);
    json_t *params = json_pack("{s:s, s:{}, s:{s:s, s:s}}", "protocolVersion",
                               MCP_PROTOCOL_VERSION, "capabilities", "clientInfo", "name",
                               "caxton", "version", CAXTON_VERSION);
    srv->init_id = server_request(srv, "initialize", params);
    if (srv->init_id == 0)
        server_failed(srv, MCP_REASON_NOT_CONNECTED, "cannot send initialize to the server");
}

/* ---- What the server says -------------------------------------------------------------------- */

static void server_on_gone(void *owner, const char *reason, const char *detail)
{
    server *srv = owner;
    if (strcmp(reason, MCP_REASON_TOO_BIG) == 0)
        srv->protocol_errors++;
    server_failed(srv, reason, detail);
}

/* A request the HTTP transport knows will get no response. */
static void server_on_unanswered(void *owner, uint64_t id, const char *reason,
                                 const char *detail)
{
    server *srv = owner;
    char text[LAST_ERROR_MAX];
    srv->protocol_errors++;
    snprintf(text, sizeof text, "%s", detail);
    if (id == srv->init_id) {
        server_failed(srv, reason, text);
        return;
    }
    if (id == srv->list_id) {
        srv->list_id = 0;
        list_failed(srv, text);
        return;
    }
    for (mcp_call *call = srv->calls; call; call = call->srv_next)
        if (call->id == id) {
            call_finish(call, reason_code(reason), reason, "MCP server '%s': %s",
                        srv->cfg->name, text);
            return;
        }
    server_log(srv, LOG_DEBUG, "MCP server '%s': %s (no longer waited for)", srv->cfg->name,
               text);
}

/* "error -32601: "Method not found"" from a JSON-RPC error object. */
static void rpc_error_text(const json_t *error, char *out, size_t size)
{
    const json_t *code = json_object_get(error, "code");
    const json_t *message = json_object_get(error, "message");
    char text[QUOTE_MAX + 16] = "(no message)";
    if (json_is_string(message))
        quote_bytes(json_string_value(message), json_string_length(message), text, sizeof text);
    snprintf(out, size, "error %lld: %s",
             json_is_integer(code) ? (long long)json_integer_value(code) : 0LL, text);
}

static bool version_supported(const char *version)
{
    for (size_t i = 0; i < sizeof protocol_versions / sizeof *protocol_versions; i++)
        if (strcmp(version, protocol_versions[i]) == 0)
            return true;
    return false;
}

static void server_on_initialized(server *srv, const json_t *msg)
{
    srv->init_id = 0;
    const json_t *result = json_object_get(msg, "result");
    const json_t *version = json_object_get(result, "protocolVersion");
    char detail[LAST_ERROR_MAX], text[QUOTE_MAX + 48];
    if (json_object_get(msg, "error")) {
        rpc_error_text(json_object_get(msg, "error"), text, sizeof text);
        snprintf(detail, sizeof detail, "the server refused initialize: %s", text);
        server_failed(srv, MCP_REASON_PROTOCOL, detail);
        return;
    }
    if (!json_is_string(version)) {
        server_failed(srv, MCP_REASON_PROTOCOL, "the answer to initialize has no protocolVersion");
        return;
    }
    if (!version_supported(json_string_value(version))) {
        quote_bytes(json_string_value(version), json_string_length(version), text, sizeof text);
        snprintf(detail, sizeof detail, "the server speaks MCP version %s; Caxton speaks %s, %s "
                 "and %s", text, protocol_versions[0], protocol_versions[1],
                 protocol_versions[2]);
        server_failed(srv, MCP_REASON_PROTOCOL, detail);
        return;
    }
    srv->init_done_ms = now_ms();
    srv->initialize_ms = srv->init_done_ms - srv->spawn_ms;
    server_notify(srv, "notifications/initialized", NULL);
    if (!json_object_get(json_object_get(result, "capabilities"), "tools")) {
        if (listing_install(srv) != 0) /* a server without tools */
            server_failed(srv, MCP_REASON_NOT_CONNECTED, "out of memory listing tools");
        else
            server_ready(srv);
        return;
    }
    server_list(srv, NULL);
}

static void list_failed(server *srv, const char *detail)
{
    if (srv->state == SERVER_STARTING) {
        server_failed(srv, MCP_REASON_PROTOCOL, detail);
        return;
    }
    uv_timer_stop(&srv->timer);
    json_decref(srv->listing);
    srv->listing = NULL;
    srv->protocol_errors++;
    server_log(srv, LOG_WARN, "MCP server '%s': %s; keeping its previous tools", srv->cfg->name,
               detail);
}

static void server_on_tools(server *srv, const json_t *msg)
{
    srv->list_id = 0;
    const json_t *result = json_object_get(msg, "result");
    const json_t *tools = json_object_get(result, "tools");
    const json_t *cursor = json_object_get(result, "nextCursor");
    char detail[LAST_ERROR_MAX], text[QUOTE_MAX + 48];
    if (!json_is_array(tools)) {
        if (json_object_get(msg, "error")) {
            rpc_error_text(json_object_get(msg, "error"), text, sizeof text);
            snprintf(detail, sizeof detail, "the server refused tools/list: %s", text);
        } else {
            snprintf(detail, sizeof detail, "the answer to tools/list has no tools list");
        }
        list_failed(srv, detail);
        return;
    }
    size_t i;
    const json_t *entry;
    json_array_foreach(tools, i, entry) {
        if (json_is_object(entry))
            listing_add(srv, entry);
        else
            server_log(srv, LOG_WARN, "MCP server '%s' lists a tool that is not an object; "
                       "skipped", srv->cfg->name);
    }
    if (json_is_string(cursor) && json_string_length(cursor) > 0) {
        if (json_string_length(cursor) > CURSOR_MAX || srv->list_pages >= LIST_PAGES_MAX) {
            snprintf(detail, sizeof detail, "tools/list goes on for more than %d pages or with "
                     "a cursor over %d bytes", LIST_PAGES_MAX, CURSOR_MAX);
            list_failed(srv, detail);
        } else {
            server_list(srv, json_string_value(cursor));
        }
        return;
    }
    if (listing_install(srv) != 0) {
        list_failed(srv, "out of memory listing tools");
        return;
    }
    json_decref(srv->listing);
    srv->listing = NULL;
    if (srv->state == SERVER_STARTING) {
        server_ready(srv);
        return;
    }
    uv_timer_stop(&srv->timer);
    server_log(srv, LOG_INFO, "MCP server '%s' now has %zu tools", srv->cfg->name,
               srv->tool_count);
    if (srv->relist)
        server_relist(srv);
}

/* The first text item of a CallToolResult's content, for a failure detail. */
static const char *result_text(const json_t *result)
{
    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(result, "content"), i, item) {
        const char *text = json_string_value(json_object_get(item, "text"));
        if (text)
            return text;
    }
    return "(no text)";
}

static void server_on_call_answer(server *srv, mcp_call *call, const json_t *msg, size_t len)
{
    const json_t *result = json_object_get(msg, "result");
    const json_t *content = json_object_get(result, "content");
    char text[QUOTE_MAX + 48];
    if (json_object_get(msg, "error")) {
        rpc_error_text(json_object_get(msg, "error"), text, sizeof text);
        call_finish(call, CX_EPARSE, MCP_REASON_PROTOCOL, "MCP server '%s' answered the call to "
                    "'%s' with %s", srv->cfg->name, call->tool, text);
    } else if (!json_is_object(result) || (content && !json_is_array(content))) {
        call_finish(call, CX_EPARSE, MCP_REASON_PROTOCOL, "MCP server '%s' answered the call to "
                    "'%s' without a valid result (an object with a content list)",
                    srv->cfg->name, call->tool);
    } else if (len > srv->cfg->max_result) {
        call_finish(call, CX_ETOOBIG, MCP_REASON_TOO_BIG, "the result of '%s.%s' is %zu bytes, "
                    "over the server's max_result of %llu bytes", srv->cfg->name, call->tool,
                    len, (unsigned long long)srv->cfg->max_result);
    } else {
        srv->renewals = 0; /* the session works: a later expiry is routine again */
        call->answer = json_incref((json_t *)result);
        call->result.is_error = json_is_true(json_object_get(result, "isError"));
        if (call->result.is_error)
            call_finish(call, 0, MCP_REASON_TOOL_ERROR, "%s", result_text(result));
        else
            call_finish(call, 0, NULL, "%s", "");
    }
}

static mcp_call *server_call_by_id(const server *srv, const json_t *id)
{
    if (!json_is_integer(id) || json_integer_value(id) <= 0)
        return NULL;
    for (mcp_call *call = srv->calls; call; call = call->srv_next)
        if (call->id == (uint64_t)json_integer_value(id))
            return call;
    return NULL;
}

static void server_on_answer(server *srv, const json_t *msg, const json_t *id, const char *line,
                             size_t len)
{
    const json_t *error = json_object_get(msg, "error");
    bool complete = json_object_get(msg, "result") || json_is_object(error);
    uint64_t n = json_is_integer(id) && json_integer_value(id) > 0
                     ? (uint64_t)json_integer_value(id)
                     : 0;
    mcp_call *call = server_call_by_id(srv, id);
    char text[QUOTE_MAX + 48];
    if (!complete) {
        if (call)
            call_finish(call, CX_EPARSE, MCP_REASON_PROTOCOL, "MCP server '%s' answered the call "
                        "to '%s' with neither a result nor an error", srv->cfg->name, call->tool);
        server_garbage(srv, line, len, "an answer with neither a result nor an error");
    } else if (n && n == srv->init_id) {
        server_on_initialized(srv, msg);
    } else if (n && n == srv->list_id) {
        server_on_tools(srv, msg);
    } else if (call) {
        server_on_call_answer(srv, call, msg, len);
    } else if (json_is_null(id) && error) {
        srv->protocol_errors++;
        rpc_error_text(error, text, sizeof text);
        server_log(srv, LOG_WARN, "MCP server '%s' could not read a message: %s",
                   srv->cfg->name, text);
    } else {
        server_log(srv, LOG_DEBUG, "MCP server '%s' answered a request that is no longer "
                   "waited for (timed out or cancelled)", srv->cfg->name);
    }
}

/* Requests from the server: ping is answered, the rest is not offered. */
static void server_on_request(server *srv, const char *method, const json_t *id)
{
    json_t *reply;
    if (strcmp(method, "ping") == 0) {
        reply = json_pack("{s:s, s:O, s:{}}", "jsonrpc", "2.0", "id", id, "result");
    } else {
        char text[QUOTE_MAX + 96];
        char shown[QUOTE_MAX + 16];
        quote_bytes(method, strlen(method), shown, sizeof shown);
        snprintf(text, sizeof text, "Method not found: %s (Caxton offers no client features)",
                 shown);
        reply = json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error",
                          "code", JSONRPC_METHOD_NOT_FOUND, "message", text);
        server_log(srv, LOG_DEBUG, "MCP server '%s' asked for %s, which Caxton does not offer",
                   srv->cfg->name, shown);
    }
    server_send(srv, reply, NULL);
}

static void server_on_notification(server *srv, const char *method, const json_t *params)
{
    if (strcmp(method, "notifications/tools/list_changed") == 0) {
        if (srv->list_id)
            srv->relist = true;
        else if (srv->state == SERVER_READY)
            server_relist(srv);
        return; /* while initializing: the first listing comes anyway */
    }
    if (strcmp(method, "notifications/message") == 0 && log_get_level() <= LOG_DEBUG) {
        const char *level = json_string_value(json_object_get(params, "level"));
        char *data = json_dumps(json_object_get(params, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
        char shown[QUOTE_MAX + 16];
        quote_bytes(data ? data : "", data ? strlen(data) : 0, shown, sizeof shown);
        free(data);
        server_log(srv, LOG_DEBUG, "MCP server '%s' logs (%s): %s", srv->cfg->name,
                   level ? level : "?", shown);
        return;
    }
    server_log(srv, LOG_DEBUG, "MCP server '%s' sent %s", srv->cfg->name, method);
}

static void server_on_message(server *srv, const json_t *msg, const char *line, size_t len)
{
    const json_t *method = json_object_get(msg, "method");
    const json_t *id = json_object_get(msg, "id");
    if (json_is_string(method)) {
        if (!id)
            server_on_notification(srv, json_string_value(method),
                                   json_object_get(msg, "params"));
        else if (json_is_integer(id) || json_is_string(id))
            server_on_request(srv, json_string_value(method), id);
        else
            server_garbage(srv, line, len, "a request whose id is neither a number nor a string");
    } else if (method || !id) {
        server_garbage(srv, line, len, "neither a request, a notification nor an answer");
    } else {
        server_on_answer(srv, msg, id, line, len);
    }
}

static void server_on_line(void *owner, const char *line, size_t len)
{
    server *srv = owner;
    json_error_t jerr;
    /* \u0000 in strings and integers past 64 bits are valid JSON: accept them
     * (the second as reals) rather than lose the call they answer */
    json_t *msg = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
    if (!msg)
        msg = json_loadb(line, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
    const json_t *version = json_object_get(msg, "jsonrpc");
    if (!msg)
        server_garbage(srv, line, len, "not JSON");
    else if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0)
        server_garbage(srv, line, len, "not a JSON-RPC 2.0 message");
    else
        server_on_message(srv, msg, line, len);
    json_decref(msg);
}

/* ---- Servers: creating and stopping ---------------------------------------------------------- */

static void on_server_closed(uv_handle_t *handle)
{
    server *srv = handle->data;
    mcp_hub *h = srv->hub;
    tools_free(srv->tools, srv->tool_count);
    json_decref(srv->listing);
    mcp_server_config_release(srv->cfg);
    free(srv);
    h->open--;
    hub_maybe_free(h);
}

/* Stops a server for good; its memory goes once its timer has closed. */
static void server_stop(server *srv, const char *reason, const char *detail)
{
    srv->state = SERVER_STOPPED;
    server_drop_child(srv);
    server_fail_calls(srv, reason, reason, detail);
    if (!srv->run)
        tools_unmap(srv);
    uv_timer_stop(&srv->timer);
    uv_close((uv_handle_t *)&srv->timer, on_server_closed);
}

static server *server_alloc(mcp_hub *h, mcp_server_config *cfg, test_run *run)
{
    server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    srv->hub = h;
    srv->cfg = cfg;
    cfg->refs++;
    srv->run = run;
    srv->next_id = 1;
    srv->startup_ms = STARTUP_TIMEOUT_MS;
    srv->backoff_ms = cfg->restart_backoff_ms;
    return srv;
}

static void server_free_unstarted(server *srv)
{
    if (!srv)
        return;
    mcp_server_config_release(srv->cfg);
    free(srv);
}

static void server_activate(server *srv)
{
    mcp_hub *h = srv->hub;
    uv_timer_init(h->loop, &srv->timer);
    srv->timer.data = srv;
    h->open++;
    server_spawn(srv);
}

static server *hub_find(const mcp_hub *h, const char *name, size_t len)
{
    for (server *srv = h->servers; srv; srv = srv->next)
        if (strlen(srv->cfg->name) == len && memcmp(srv->cfg->name, name, len) == 0)
            return srv;
    return NULL;
}

static size_t hub_server_names(const mcp_hub *h, const char **names, size_t max)
{
    size_t n = 0;
    for (server *srv = h->servers; srv && n < max; srv = srv->next)
        names[n++] = srv->cfg->name;
    return n;
}

static int server_missing(const mcp_hub *h, const char *name, cx_error *err)
{
    const char *names[MCP_SERVERS_MAX];
    size_t n = hub_server_names(h, names, MCP_SERVERS_MAX);
    char shown[96], known[256] = "none";
    text_quote(name, shown, sizeof shown);
    for (size_t i = 0, used = 0; i < n && used < sizeof known; i++)
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                                 names[i]);
    const char *near = text_is_utf8(name, strlen(name)) ? text_suggest(name, names, n) : NULL;
    return cx_error_set(err, CX_ENOTFOUND, "no MCP server named %s%s%s%s; tools.mcp_servers has: "
                        "%s", shown, near ? " (did you mean '" : "", near ? near : "",
                        near ? "'?)" : "", known);
}

/* ---- The hub --------------------------------------------------------------------------------- */

static void configs_release(mcp_server_config **cfgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mcp_server_config_release(cfgs[i]);
    free(cfgs);
}

static mcp_server_config *config_named(mcp_server_config **cfgs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(cfgs[i]->name, name) == 0)
            return cfgs[i];
    return NULL;
}

int mcp_hub_reconfigure(mcp_hub *h, const json_t *servers, cx_error *err)
{
    if (!h)
        return cx_error_set(err, CX_EINVAL, "mcp_hub_reconfigure: no hub");
    if (h->closing)
        return cx_error_set(err, CX_EUNAVAIL, "the MCP hub is shutting down");
    mcp_server_config **cfgs = NULL;
    size_t n = 0;
    int rc = mcp_configs_build(servers, &cfgs, &n, err);
    if (rc != 0)
        return rc;
    server **fresh = calloc(n ? n : 1, sizeof *fresh);
    for (size_t i = 0; fresh && i < n; i++) {
        server *old = hub_find(h, cfgs[i]->name, strlen(cfgs[i]->name));
        if (old && json_equal(old->cfg->source, cfgs[i]->source))
            continue;
        if (!(fresh[i] = server_alloc(h, cfgs[i], NULL))) {
            for (size_t j = 0; j < i; j++)
                server_free_unstarted(fresh[j]);
            free(fresh);
            fresh = NULL;
        }
    }
    if (!fresh) {
        configs_release(cfgs, n);
        return cx_error_set(err, CX_ENOMEM, "out of memory applying tools.mcp_servers");
    }
    for (server **link = &h->servers; *link;) {
        server *srv = *link;
        const mcp_server_config *cfg = config_named(cfgs, n, srv->cfg->name);
        if (cfg && json_equal(cfg->source, srv->cfg->source)) {
            link = &srv->next;
            continue;
        }
        *link = srv->next;
        server_log(srv, LOG_INFO, "MCP server '%s' %s", srv->cfg->name,
                   cfg ? "has a new configuration; restarting it" : "was removed; stopping it");
        server_stop(srv, MCP_REASON_NOT_CONNECTED,
                    cfg ? "its configuration changed while the call waited"
                        : "it was removed from the configuration while the call waited");
    }
    for (size_t i = 0; i < n; i++) {
        if (!fresh[i])
            continue;
        fresh[i]->next = h->servers;
        h->servers = fresh[i];
        server_activate(fresh[i]);
    }
    free(fresh);
    configs_release(cfgs, n);
    return 0;
}

/* A new hub starts its servers the way a reconfigure adds them. */
mcp_hub *mcp_hub_new(uv_loop_t *loop, const json_t *servers, cx_error *err)
{
    if (!loop) {
        cx_error_set(err, CX_EINVAL, "mcp_hub_new: no event loop");
        return NULL;
    }
    mcp_hub *h = calloc(1, sizeof *h);
    if (!h) {
        cx_error_set(err, CX_ENOMEM, "out of memory starting the MCP servers");
        return NULL;
    }
    h->loop = loop;
    map_init(&h->tools);
    if (mcp_hub_reconfigure(h, servers, err) != 0) {
        map_free(&h->tools); /* nothing was started */
        free(h);
        return NULL;
    }
    return h;
}

void mcp_hub_close(mcp_hub *h)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    for (mcp_call *call = h->calls; call; call = call->next)
        if (call->state == CALL_WAITING)
            call_finish(call, CX_EUNAVAIL, MCP_REASON_SHUTDOWN, "Caxton is shutting down; the "
                        "call to '%s' was abandoned", call->tool);
    while (h->servers) {
        server *srv = h->servers;
        h->servers = srv->next;
        server_stop(srv, MCP_REASON_SHUTDOWN, "Caxton is shutting down");
    }
    for (test_run *run = h->runs; run; run = run->next)
        for (size_t i = 0; i < run->count; i++)
            if (run->probes[i])
                probe_finish(run->probes[i], false, "Caxton is shutting down");
    hub_maybe_free(h);
}

/* ---- Tools seen from outside ----------------------------------------------------------------- */

const mcp_tool_info *mcp_hub_tool(const mcp_hub *h, const char *full_name)
{
    const tool *t = h && full_name ? map_get(&h->tools, full_name) : NULL;
    return t ? &t->info : NULL;
}

static int collect_tool(const char *key, void *value, void *arg)
{
    (void)key;
    const tool ***next = arg;
    *(*next)++ = value;
    return 0;
}

static int compare_tools(const void *a, const void *b)
{
    return strcmp((*(const tool *const *)a)->full_name, (*(const tool *const *)b)->full_name);
}

void mcp_hub_foreach_tool(const mcp_hub *h, void (*fn)(const mcp_tool_info *t, void *arg),
                          void *arg)
{
    if (!h || !fn || h->tools.count == 0)
        return;
    const tool **list = malloc(h->tools.count * sizeof *list);
    if (!list) {
        log_error("mcp", "out of memory listing MCP tools");
        return;
    }
    const tool **next = list;
    map_foreach(&h->tools, collect_tool, &next);
    size_t n = (size_t)(next - list);
    qsort(list, n, sizeof *list, compare_tools);
    for (size_t i = 0; i < n; i++)
        fn(&list[i]->info, arg);
    free(list);
}

bool mcp_hub_has_server(const mcp_hub *h, const char *server_name)
{
    return h && server_name && hub_find(h, server_name, strlen(server_name)) != NULL;
}

/* ---- Calls ----------------------------------------------------------------------------------- */

static void on_call_timeout(uv_timer_t *timer)
{
    mcp_call *call = timer->data;
    server *srv = call->srv;
    call_send_cancelled(call, "timed out");
    char limit[32];
    units_format_duration(call->limit_ms, limit, sizeof limit);
    call_finish(call, CX_ETIMEOUT, MCP_REASON_TIMEOUT, "MCP server '%s' did not answer the call "
                "to '%s' within %s%s", srv->cfg->name, call->tool, limit,
                call->id ? "" : " (it was still starting)");
}

/* Fails a call whose server or tool does not exist, with a suggestion. */
static void call_unknown(mcp_call *call, const char *full_name, const server *srv)
{
    const char *names[MCP_SERVERS_MAX];
    const char *near = NULL;
    char shown[96];
    text_quote(full_name, shown, sizeof shown);
    if (!srv) {
        size_t n = hub_server_names(call->hub, names, MCP_SERVERS_MAX);
        const char *dot = strchr(full_name, '.');
        char head[MCP_NAME_MAX + 1];
        size_t len = dot ? (size_t)(dot - full_name) : strlen(full_name);
        snprintf(head, sizeof head, "%.*s", (int)(len < MCP_NAME_MAX ? len : MCP_NAME_MAX),
                 full_name);
        near = text_is_utf8(head, strlen(head)) ? text_suggest(head, names, n) : NULL;
        call_finish(call, CX_ENOTFOUND, MCP_REASON_UNKNOWN_TOOL, "no MCP server for the tool "
                    "%s (tools are named server.tool)%s%s%s", shown,
                    near ? "; did you mean the server '" : "", near ? near : "", near ? "'?" : "");
        return;
    }
    call_finish(call, CX_ENOTFOUND, MCP_REASON_UNKNOWN_TOOL, "MCP server '%s' has no tool %s",
                srv->cfg->name, shown);
}

/* Checks a call at the door; 0 or an error with no call made. */
static int call_check(const mcp_hub *h, const char *full_name, const json_t *arguments,
                      mcp_done_fn done, cx_error *err)
{
    if (!h || !full_name || !done)
        return cx_error_set(err, CX_EINVAL, "mcp_hub_call: missing hub, tool name or callback");
    if (h->closing)
        return cx_error_set(err, CX_EUNAVAIL, "the MCP hub is shutting down");
    if (arguments && !json_is_object(arguments))
        return cx_error_set(err, CX_EINVAL, "the arguments of a tool call must be a JSON object");
    size_t size = arguments ? json_dumpb(arguments, NULL, 0, JSON_COMPACT) : 2;
    if (size == 0 || size > REQUEST_MAX)
        return cx_error_set(err, CX_ETOOBIG, "the arguments of the call to %s are over %u MB",
                            full_name, REQUEST_MAX / (1024 * 1024));
    return 0;
}

/* A call in the hub's list with its timer, not yet on any server. */
static mcp_call *call_new(mcp_hub *h, const char *tool_name, const json_t *arguments,
                          mcp_done_fn done, void *arg)
{
    mcp_call *call = calloc(1, sizeof *call);
    if (!call)
        return NULL;
    call->arguments = arguments ? json_deep_copy(arguments) : json_object();
    call->tool = str_dup(tool_name);
    if (!call->arguments || !call->tool) {
        json_decref(call->arguments);
        free(call->tool);
        free(call);
        return NULL;
    }
    call->hub = h;
    call->done = done;
    call->arg = arg;
    call->start_ms = now_ms();
    uv_timer_init(h->loop, &call->timer);
    call->timer.data = call;
    h->open++;
    call->next = h->calls;
    if (h->calls)
        h->calls->prev = call;
    h->calls = call;
    return call;
}

mcp_call *mcp_hub_call(mcp_hub *h, const char *full_name, const json_t *arguments,
                       uint64_t timeout_ms, mcp_done_fn done, void *arg, cx_error *err)
{
    if (call_check(h, full_name, arguments, done, err) != 0)
        return NULL;
    const char *dot = strchr(full_name, '.');
    mcp_call *call = call_new(h, dot ? dot + 1 : full_name, arguments, done, arg);
    if (!call) {
        cx_error_set(err, CX_ENOMEM, "out of memory starting a tool call");
        return NULL;
    }
    server *srv = dot ? hub_find(h, full_name, (size_t)(dot - full_name)) : NULL;
    if (!srv || !mcp_name_valid(call->tool, strlen(call->tool)) ||
        (srv->listed && !server_tool(srv, call->tool))) {
        call_unknown(call, full_name, srv);
        return call;
    }
    srv->calls_total++;
    call_attach(call, srv);
    /* the caller's bound (a message's deadline) never raises the operator's */
    uint64_t limit = timeout_ms && timeout_ms < srv->cfg->timeout_ms ? timeout_ms
                                                                      : srv->cfg->timeout_ms;
    call->limit_ms = limit < CALL_TIMEOUT_MAX_MS ? limit : CALL_TIMEOUT_MAX_MS;
    uv_timer_start(&call->timer, on_call_timeout, call->limit_ms, 0);
    if (srv->state == SERVER_READY)
        call_send(call);
    else if (srv->state != SERVER_STARTING)
        call_finish(call, CX_EUNAVAIL, MCP_REASON_NOT_CONNECTED, "MCP server '%s' is %s: %s",
                    srv->cfg->name, state_names[srv->state],
                    srv->last_error[0] ? srv->last_error : "not connected");
    return call;
}

void mcp_call_cancel(mcp_call *call)
{
    if (!call || call->state == CALL_DELIVERING || call->state == CALL_CLOSING)
        return;
    if (call->state == CALL_WAITING) {
        call_send_cancelled(call, "cancelled by the caller");
        call_detach(call);
    }
    call_destroy(call);
}

/* ---- Reconnecting, status and connectivity tests --------------------------------------------- */

static void server_restart_now(server *srv)
{
    server_fail_calls(srv, MCP_REASON_NOT_CONNECTED, NULL, "the server was reconnected by the "
                      "operator while the call waited");
    server_drop_child(srv);
    uv_timer_stop(&srv->timer);
    srv->backoff_ms = srv->cfg->restart_backoff_ms;
    if (srv->spawned_once)
        srv->restarts++;
    server_log(srv, LOG_INFO, "reconnecting MCP server '%s'", srv->cfg->name);
    server_spawn(srv);
}

int mcp_hub_reconnect(mcp_hub *h, const char *server_name, cx_error *err)
{
    if (!h)
        return cx_error_set(err, CX_EINVAL, "mcp_hub_reconnect: no hub");
    if (h->closing)
        return cx_error_set(err, CX_EUNAVAIL, "the MCP hub is shutting down");
    if (server_name) {
        server *srv = hub_find(h, server_name, strlen(server_name));
        if (!srv)
            return server_missing(h, server_name, err);
        server_restart_now(srv);
        return 0;
    }
    for (server *srv = h->servers; srv; srv = srv->next)
        server_restart_now(srv);
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *server_tool_names(const server *srv)
{
    json_t *names = json_array();
    const char **list = malloc((srv->tool_count ? srv->tool_count : 1) * sizeof *list);
    if (!names || !list) {
        json_decref(names);
        free(list);
        return NULL;
    }
    for (size_t i = 0; i < srv->tool_count; i++)
        list[i] = srv->tools[i].full_name;
    qsort(list, srv->tool_count, sizeof *list, compare_names);
    for (size_t i = 0; i < srv->tool_count; i++)
        json_array_append_new(names, json_string(list[i]));
    free(list);
    return names;
}

static json_int_t stat_value(uint64_t v) { return v > INT64_MAX ? INT64_MAX : (json_int_t)v; }

static json_t *server_status(const server *srv)
{
    char connected[32] = "";
    if (srv->connected_at_ms)
        time_format_rfc3339(srv->connected_at_ms, connected, sizeof connected);
    json_t *tools = server_tool_names(srv);
    if (!tools)
        return NULL;
    bool http = srv->cfg->url != NULL; /* no process: pid 0 */
    json_t *pid = srv->child ? json_integer(mcp_child_pid(srv->child))
                             : http ? json_integer(0) : json_null();
    json_t *status = json_pack(
        "{s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:o, s:I}", "name", srv->cfg->name,
        "transport", http ? "http" : "stdio", "state", state_names[srv->state], "pid", pid,
        "tools", tools, "last_error",
        srv->last_error[0] ? json_string(srv->last_error) : json_null(),
        "restarts", stat_value(srv->restarts), "calls", stat_value(srv->calls_total), "errors",
        stat_value(srv->errors), "avg_latency_ms",
        stat_value(srv->answered ? srv->latency_total_ms / srv->answered : 0), "connected_at",
        connected[0] ? json_string(connected) : json_null(), "protocol_errors",
        stat_value(srv->protocol_errors));
    if (status && http &&
        json_object_set_new(status, "url", json_string(srv->cfg->url_shown)) != 0) {
        json_decref(status);
        return NULL;
    }
    return status;
}

/* The hub's servers (or the one named) in name order; false if unknown. */
static bool servers_sorted(const mcp_hub *h, const char *name, const server **out, size_t *n)
{
    *n = 0;
    for (const server *srv = h->servers; srv && *n < MCP_SERVERS_MAX; srv = srv->next)
        if (!name || strcmp(srv->cfg->name, name) == 0)
            out[(*n)++] = srv;
    for (size_t i = 1; i < *n; i++)
        for (size_t j = i; j > 0 && strcmp(out[j - 1]->cfg->name, out[j]->cfg->name) > 0; j--) {
            const server *t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return !name || *n > 0;
}

json_t *mcp_hub_status_json(const mcp_hub *h, const char *server_name)
{
    const server *list[MCP_SERVERS_MAX];
    size_t n = 0;
    if (!h || !servers_sorted(h, server_name, list, &n))
        return NULL;
    json_t *out = json_array();
    for (size_t i = 0; out && i < n; i++) {
        if (json_array_append_new(out, server_status(list[i])) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static void on_run_closed(uv_handle_t *handle)
{
    test_run *run = handle->data;
    mcp_hub *h = run->hub;
    json_decref(run->report);
    free(run->probes);
    free(run);
    h->open--;
    hub_maybe_free(h);
}

static void on_run_deliver(uv_timer_t *timer)
{
    test_run *run = timer->data;
    for (test_run **link = &run->hub->runs; *link; link = &(*link)->next)
        if (*link == run) {
            *link = run->next;
            break;
        }
    run->done(run->report, run->arg);
    uv_close((uv_handle_t *)&run->timer, on_run_closed);
}

static void probe_finish(server *srv, bool ok, const char *error)
{
    test_run *run = srv->run;
    json_t *entry = json_array_get(json_object_get(run->report, "servers"), srv->probe_index);
    json_object_set_new(entry, "ok", json_boolean(ok));
    if (srv->init_done_ms)
        json_object_set_new(entry, "initialize_ms", json_integer(stat_value(srv->initialize_ms)));
    if (ok) {
        json_object_set_new(entry, "list_ms", json_integer(stat_value(srv->list_ms)));
        json_object_set_new(entry, "tools", json_integer((json_int_t)srv->tool_count));
    }
    if (error)
        json_object_set_new(entry, "error", json_string(error));
    run->probes[srv->probe_index] = NULL;
    server_stop(srv, MCP_REASON_NOT_CONNECTED, "the connectivity test ended");
    if (++run->finished == run->count)
        uv_timer_start(&run->timer, on_run_deliver, 0, 0);
}

static json_t *report_new(const server *const *list, size_t n)
{
    json_t *entries = json_array();
    for (size_t i = 0; entries && i < n; i++) {
        json_t *entry = json_pack("{s:s, s:b, s:n, s:n, s:i, s:n}", "name", list[i]->cfg->name,
                                  "ok", 0, "initialize_ms", "list_ms", "tools", 0, "error");
        if (json_array_append_new(entries, entry) != 0) {
            json_decref(entries);
            return NULL;
        }
    }
    return entries ? json_pack("{s:o}", "servers", entries) : NULL;
}

static void run_free_unstarted(test_run *run)
{
    for (size_t i = 0; run->probes && i < run->count; i++)
        server_free_unstarted(run->probes[i]);
    free(run->probes);
    json_decref(run->report);
    free(run);
}

/* A run with one probe (not started) per server, or NULL. */
static test_run *run_new(mcp_hub *h, const server *const *list, size_t n, uint64_t timeout_ms)
{
    test_run *run = calloc(1, sizeof *run);
    if (!run)
        return NULL;
    run->hub = h;
    run->count = n;
    run->probes = calloc(n ? n : 1, sizeof *run->probes);
    run->report = report_new(list, n);
    if (!run->probes || !run->report) {
        run_free_unstarted(run);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(run->probes[i] = server_alloc(h, list[i]->cfg, run))) {
            run_free_unstarted(run);
            return NULL;
        }
        run->probes[i]->probe_index = i;
        run->probes[i]->startup_ms = timeout_ms ? timeout_ms : STARTUP_TIMEOUT_MS;
    }
    return run;
}

int mcp_hub_test(mcp_hub *h, const char *server_name, uint64_t timeout_ms,
                 void (*done)(json_t *report, void *arg), void *arg, cx_error *err)
{
    if (!h || !done)
        return cx_error_set(err, CX_EINVAL, "mcp_hub_test: missing hub or callback");
    if (h->closing)
        return cx_error_set(err, CX_EUNAVAIL, "the MCP hub is shutting down");
    const server *list[MCP_SERVERS_MAX];
    size_t n = 0;
    if (!servers_sorted(h, server_name, list, &n))
        return server_missing(h, server_name, err);
    test_run *run = run_new(h, list, n, timeout_ms);
    if (!run)
        return cx_error_set(err, CX_ENOMEM, "out of memory starting a connectivity test");
    run->done = done;
    run->arg = arg;
    uv_timer_init(h->loop, &run->timer);
    run->timer.data = run;
    h->open++;
    run->next = h->runs;
    h->runs = run;
    if (n == 0)
        uv_timer_start(&run->timer, on_run_deliver, 0, 0);
    for (size_t i = 0; i < n; i++)
        server_activate(run->probes[i]);
    return 0;
}
