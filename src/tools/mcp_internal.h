/* What the MCP files share and nobody else uses: a server's checked
 * settings (mcp_config.c) and what carries one connection: a child process
 * (mcp_process.c) or an HTTP session (mcp_http.c). The hub (mcp.c) joins
 * them. */
#ifndef CAXTON_TOOLS_MCP_INTERNAL_H
#define CAXTON_TOOLS_MCP_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/error.h"

#define MCP_SERVERS_MAX 64                     /* servers in one config */
#define MCP_LINE_SLACK (64u * 1024u)           /* a line may be max_result + this */
#define MCP_BACKOFF_DEFAULT_MS 1000u
#define MCP_BACKOFF_MAX_MS 60000u

/* One server's settings, as mcp_servers_check accepted them. Shared by
 * reference between the hub's server and connectivity probes. */
typedef struct mcp_server_config {
    unsigned refs;
    char *name;
    char **argv;        /* NULL-terminated; NULL for an HTTP server */
    char *url;          /* NULL for a stdio server */
    char *url_shown;    /* the url without credentials or query, for logs and status */
    char **headers;     /* NULL-terminated "Name: value" lines sent over HTTP (never logged) */
    char **env;         /* NULL-terminated "KEY=value" lines added to the environment */
    char *cwd;          /* NULL: Caxton's own */
    uint64_t timeout_ms;
    uint64_t max_result;
    uint64_t restart_backoff_ms;
    json_t *source;     /* the mapping it was read from, to tell changed from unchanged */
} mcp_server_config;

/* Builds every server's settings (in the mapping's order). CX_ECONFIG with
 * the first problem when the mapping does not pass mcp_servers_check. */
int mcp_configs_build(const json_t *servers, mcp_server_config ***out, size_t *count,
                      cx_error *err);
void mcp_server_config_release(mcp_server_config *cfg);
/* The url as logs and status show it: without user:password@, query or
 * fragment, cut to fit size. */
void mcp_url_shown(const char *url, char *out, size_t size);
/* True for 1 to MCP_NAME_MAX letters, digits, '_' or '-'. */
bool mcp_name_valid(const char *name, size_t len);

/* One child process speaking newline-delimited JSON-RPC on its stdin and
 * stdout. It reports complete lines and its end to its owner until the
 * owner stops it; after that it terminates the process (SIGTERM to its
 * process group, SIGKILL after MCP_KILL_GRACE_MS) and frees itself once
 * every handle has closed, telling `closed` so. */
#define MCP_KILL_GRACE_MS 2000u

typedef struct mcp_child mcp_child;

typedef struct mcp_child_events {
    /* A complete line without its newline (NUL-terminated at len). */
    void (*line)(void *owner, const char *line, size_t len);
    /* The connection ended: reason is MCP_REASON_SERVER_DIED (exit, closed
     * output, read error) or MCP_REASON_TOO_BIG (a line over the limit). */
    void (*gone)(void *owner, const char *reason, const char *detail);
    /* HTTP only: the request with this JSON-RPC id will get no response
     * (reason MCP_REASON_TOO_BIG, MCP_REASON_PROTOCOL or MCP_REASON_TIMEOUT);
     * the connection itself goes on. */
    void (*unanswered)(void *owner, uint64_t id, const char *reason, const char *detail);
} mcp_child_events;

/* Spawns the server. The caller counts the child as open before the call:
 * closed(ctx) runs exactly once, when its memory is gone, on success and on
 * failure alike. On failure *out is NULL and err says why. */
int mcp_child_start(uv_loop_t *loop, const mcp_server_config *cfg, const mcp_child_events *ev,
                    void *owner, void (*closed)(void *ctx), void *ctx, mcp_child **out,
                    cx_error *err);
/* Queues data (one whole line, newline included) for the child's stdin. */
int mcp_child_send(mcp_child *c, const char *data, size_t len, cx_error *err);
int mcp_child_pid(const mcp_child *c);
/* No more events from here on; the process is ended and the child freed. */
void mcp_child_stop(mcp_child *c);

/* One Streamable HTTP session with a server (cfg->url): each message is a
 * POST; what the answers carry is reported through ev->line one JSON-RPC
 * message at a time, never from inside mcp_http_send. Started, counted and
 * closed like a child (closed(ctx) runs exactly once). */
typedef struct mcp_http mcp_http;

int mcp_http_start(uv_loop_t *loop, mcp_server_config *cfg, const mcp_child_events *ev,
                   void *owner, void (*closed)(void *ctx), void *ctx, mcp_http **out,
                   cx_error *err);
/* POSTs one message (data without a newline); request_id is its JSON-RPC
 * id for a request, 0 for a notification or a response. */
int mcp_http_send(mcp_http *c, const char *data, size_t len, uint64_t request_id, cx_error *err);
/* Stops the transfer carrying the request (a cancelled or timed-out call). */
void mcp_http_abandon(mcp_http *c, uint64_t request_id);
/* No more events from here on; transfers are aborted and it is freed. */
void mcp_http_stop(mcp_http *c);

/* Between the HTTP transport and the hub: the server ended the session; a
 * new one starts at once (a routine event, not a crash). Calls on the old
 * session fail with MCP_REASON_NOT_CONNECTED. */
#define MCP_REASON_SESSION_EXPIRED "session-expired"
#define MCP_SESSION_RENEWALS_MAX 3 /* in a row, before it counts as a failure */

#endif
