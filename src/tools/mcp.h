/* MCP tool servers: the client side of the Model Context Protocol.
 *
 * The servers come from the config's `tools.mcp_servers` mapping:
 *
 *   tools:
 *     mcp_servers:
 *       files:                                   # tools are named files.<tool>
 *         command: [npx, "@modelcontextprotocol/server-filesystem", /srv/shared]
 *         env: { KEY: value }                    # optional, added to the environment
 *         cwd: /srv                              # optional
 *         timeout: 30s                           # per call (default 30s)
 *         max_result: 1MB                        # larger results are refused (default 1MB)
 *         restart_backoff: 1s                    # hidden: the first restart delay (10ms..60s)
 *       search:                                  # a Streamable HTTP server instead
 *         url: https://mcp.example.com/mcp       # http:// or https://; never with command
 *         headers: { Authorization: "Bearer ${TOKEN}" }  # optional, never logged
 *
 * Each stdio server is a child process launched and supervised through libuv
 * (uv_spawn, pipes): JSON-RPC 2.0 messages, one per line, on its stdin and
 * stdout; its stderr goes to caxton.log line by line. Caxton sends
 * `initialize`, then `notifications/initialized`, then `tools/list`
 * (following `nextCursor`), and lists again on
 * `notifications/tools/list_changed`. A server that exits or breaks the
 * protocol is restarted with exponential backoff (1 s doubling to 60 s);
 * calls in flight on it fail with a reason. A call that passes its timeout
 * is answered as failed and `notifications/cancelled` is sent to the server.
 * Every line read is bounded (max_result + 64 KB); a server that sends more
 * is restarted. A `url` server speaks the same messages over HTTP POSTs
 * (mcp_http.c says how); it is restarted the same way.
 *
 * Everything here runs on the event loop thread. */
#ifndef CAXTON_TOOLS_MCP_H
#define CAXTON_TOOLS_MCP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/error.h"

#define MCP_PROTOCOL_VERSION "2025-06-18"
#define MCP_DEFAULT_TIMEOUT_MS 30000u
#define MCP_DEFAULT_MAX_RESULT (1024u * 1024u)
#define MCP_MAX_TOOLS_PER_SERVER 1024
#define MCP_NAME_MAX 64 /* server and tool names: [A-Za-z0-9_-] */

typedef struct mcp_hub mcp_hub;
typedef struct mcp_call mcp_call;

/* Why a call failed: stable words used as the `reason` an agent and its
 * sender see. */
#define MCP_REASON_UNKNOWN_TOOL "unknown-tool"
#define MCP_REASON_NOT_CONNECTED "tool-server-unavailable" /* not started, restarting */
#define MCP_REASON_TIMEOUT "tool-timeout"
#define MCP_REASON_SERVER_DIED "tool-server-died"          /* exited mid-call */
#define MCP_REASON_PROTOCOL "tool-protocol-error"          /* garbage, JSON-RPC error */
#define MCP_REASON_TOO_BIG "tool-result-too-large"
#define MCP_REASON_TOOL_ERROR "tool-error"                 /* the tool answered isError */
#define MCP_REASON_SHUTDOWN "shutting-down"

typedef struct mcp_result {
    int code;            /* 0 when the server answered the call (isError may still be set) */
    const char *reason;  /* NULL, or one of MCP_REASON_* */
    char detail[512];
    const json_t *result; /* the CallToolResult ({content, structuredContent?, isError?}) */
    bool is_error;       /* result.isError */
    uint64_t elapsed_ms;
} mcp_result;

typedef void (*mcp_done_fn)(const mcp_result *result, void *arg);

/* Checks a `tools.mcp_servers` object; returns the number of problems and
 * fills errors (a new array of strings naming the key path). */
size_t mcp_servers_check(const json_t *servers, json_t **errors);

/* Starts every configured server (asynchronously: the hub is usable at once;
 * tools appear as servers finish listing them). */
mcp_hub *mcp_hub_new(uv_loop_t *loop, const json_t *servers, cx_error *err);
/* Applies a new config: removed or changed servers are stopped, new ones
 * started; unchanged ones keep running. */
int mcp_hub_reconfigure(mcp_hub *h, const json_t *servers, cx_error *err);
/* Fails calls in flight (MCP_REASON_SHUTDOWN, on the next loop turn), stops
 * the children (SIGTERM, then SIGKILL after 2 s at most) and frees the hub
 * once every handle has closed. */
void mcp_hub_close(mcp_hub *h);

/* A tool by its full name "server.tool": its description and input schema
 * (owned by the hub, valid until the server re-lists). NULL when unknown. */
typedef struct mcp_tool_info {
    const char *full_name;
    const char *description;
    const json_t *input_schema;
} mcp_tool_info;
const mcp_tool_info *mcp_hub_tool(const mcp_hub *h, const char *full_name);
/* Calls fn for every known tool, in name order. */
void mcp_hub_foreach_tool(const mcp_hub *h, void (*fn)(const mcp_tool_info *t, void *arg),
                          void *arg);
bool mcp_hub_has_server(const mcp_hub *h, const char *server);

/* Starts a call; the callback runs once, on the loop, never inside this
 * function. NULL with err set when it cannot start (then no callback): no
 * hub or callback, the hub closing, arguments not an object or too large.
 * An unknown tool or a server that is down is answered through the callback
 * (MCP_REASON_UNKNOWN_TOOL, MCP_REASON_NOT_CONNECTED); a call to a server
 * still starting waits for it. The call's timeout is the smaller of
 * timeout_ms and the server's `timeout` (timeout_ms 0: the server's). */
mcp_call *mcp_hub_call(mcp_hub *h, const char *full_name, const json_t *arguments,
                       uint64_t timeout_ms, mcp_done_fn done, void *arg, cx_error *err);
/* Stops waiting for a call (the server is told with notifications/cancelled);
 * its callback will not run. */
void mcp_call_cancel(mcp_call *call);

/* Restarts one server (NULL: all) and lists its tools again. */
int mcp_hub_reconnect(mcp_hub *h, const char *server, cx_error *err);
/* Per server: {"name","transport":"stdio|http",
 * "state":"starting|ready|restarting|stopped","pid" (0 for http),"url" (http
 * only, without credentials or query),"tools":[names],"last_error","restarts",
 * "calls","errors","avg_latency_ms","connected_at","protocol_errors"}: an array
 * of these in name order (the one server when named; NULL when it is unknown).
 * Tools are full names. */
json_t *mcp_hub_status_json(const mcp_hub *h, const char *server);

/* Connectivity test: for each server (or one), an initialize + tools/list
 * round trip on a fresh connection (a new child for stdio), with timings.
 * done gets {"servers":[{"name","ok","initialize_ms","list_ms","tools","error"}]}
 * ("tools": how many were listed), on the loop, never inside this function;
 * the report is lent for the callback's duration. timeout_ms 0: 10 s. */
int mcp_hub_test(mcp_hub *h, const char *server, uint64_t timeout_ms,
                 void (*done)(json_t *report, void *arg), void *arg, cx_error *err);

#endif
