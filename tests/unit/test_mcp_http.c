/* The MCP client's Streamable HTTP transport on a real libuv loop.
 *
 * Most cases run tests/mcp/scripted_http_server.py, a small MCP server over
 * HTTP (Python, standard library) that records the headers it receives and
 * misbehaves on request: SSE answers split oddly, answers too large,
 * garbage, HTTP 500, answers without the response, sessions that expire,
 * calls that hang. One case runs the reference server-everything in its
 * streamableHttp mode when tests/mcp/install.sh has installed it, and is
 * skipped with a message otherwise. Every wait is bounded; restarts use a
 * 100 ms backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "core/log.h"
#include "core/util.h"
#include "tools/mcp.h"

#include "mcp_test_support.h"

static char repo_root[1024];
static char scripted[1200]; /* the HTTP server script */
static char npm_dir[1200];

extern char **environ;

/* ---- Loop helpers ---------------------------------------------------------------------------- */

/* ---- Configs --------------------------------------------------------------------------------- */

/* ---- Status ---------------------------------------------------------------------------------- */

/* ---- Calls ----------------------------------------------------------------------------------- */

/* ---- Config checks --------------------------------------------------------------------------- */
typedef struct report_box {
    int callbacks;
    json_t *report;
} report_box;

static void on_report(json_t *report, void *arg)
{
    report_box *box = arg;
    box->callbacks++;
    box->report = json_deep_copy(report);
}

static bool report_in(void *arg) { return ((report_box *)arg)->callbacks > 0; }

static json_t *report_entry(const report_box *box, size_t i)
{
    return json_array_get(json_object_get(box->report, "servers"), i);
}

/* ---- Processes ------------------------------------------------------------------------------- */

/* A port nobody listens on (just now) on 127.0.0.1. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts argv with PORT=port in the environment (port > 0), output discarded. */
static pid_t spawn(char *const argv[], int port)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char value[16];
        snprintf(value, sizeof value, "%d", port);
        if (port > 0)
            setenv("PORT", value, 1);
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void reap(pid_t pid)
{
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
}

typedef struct http_server {
    pid_t pid;
    int port;
    char dir[256];
    char port_file[300];
    char record[300];
} http_server;

/* Starts the scripted HTTP server (on port, or any free one) and waits for it. */
static void http_server_start(http_server *hs, int port)
{
    temp_pattern(hs->dir, sizeof hs->dir, "mcphttp");
    assert_non_null(mkdtemp(hs->dir));
    snprintf(hs->port_file, sizeof hs->port_file, "%s/port", hs->dir);
    snprintf(hs->record, sizeof hs->record, "%s/record", hs->dir);
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    char *argv[] = {"python3", scripted, "--port-file", hs->port_file, "--record", hs->record,
                    "--port", port_text, NULL};
    hs->pid = spawn(argv, 0);
    uint64_t end = now_ms() + WAIT_MS;
    FILE *f = NULL;
    while (!(f = fopen(hs->port_file, "r")) && now_ms() < end)
        usleep(20000);
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &hs->port), 1);
    fclose(f);
}

static void http_server_stop(http_server *hs)
{
    reap(hs->pid);
    unlink(hs->port_file);
    unlink(hs->record);
    rmdir(hs->dir);
}

/* The messages the server recorded: [{"headers":{...},"body":{...}}]. */
static json_t *recorded(const http_server *hs)
{
    json_t *list = json_array();
    FILE *f = fopen(hs->record, "r");
    char line[65536];
    while (f && fgets(line, sizeof line, f)) {
        json_t *entry = json_loads(line, 0, NULL);
        if (entry)
            json_array_append_new(list, entry);
    }
    if (f)
        fclose(f);
    return list;
}

static const char *header_of(const json_t *entry, const char *name)
{
    const char *key;
    json_t *value;
    json_object_foreach(json_object_get(entry, "headers"), key, value)
        if (strcasecmp(key, name) == 0)
            return json_string_value(value);
    return NULL;
}

static const char *method_of(const json_t *entry)
{
    const char *m = json_string_value(json_object_get(json_object_get(entry, "body"), "method"));
    return m ? m : "";
}

static size_t count_method(const http_server *hs, const char *method)
{
    json_t *list = recorded(hs);
    size_t n = 0, i;
    json_t *entry;
    json_array_foreach(list, i, entry) n += strcmp(method_of(entry), method) == 0;
    json_decref(list);
    return n;
}

static json_t *http_config(int port, const char *max_result)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/mcp", port);
    return json_pack("{s:s, s:{s:s, s:s}, s:s, s:s, s:s}", "url", url, "headers",
                     "Authorization", "Bearer s3cret", "X-Caxton-Test", "yes", "timeout", "5s",
                     "max_result", max_result, "restart_backoff", "100ms");
}

static void expect_status_http(mcp_hub *h, const char *server, int port)
{
    json_t *st = status_of(h, server);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/mcp", port);
    assert_string_equal(json_string_value(json_object_get(st, "transport")), "http");
    assert_int_equal(json_integer_value(json_object_get(st, "pid")), 0);
    assert_true(json_is_integer(json_object_get(st, "pid")));
    assert_string_equal(json_string_value(json_object_get(st, "url")), url);
    char *text = json_dumps(st, 0);
    assert_null(strstr(text, "s3cret"));
    free(text);
    json_decref(st);
}

/* ---- Cases ----------------------------------------------------------------------------------- */

static void test_http_config(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    json_t *servers = json_pack("{s:{s:s}}", "s", "url", "ftp://127.0.0.1/mcp");
    cx_error err = {0};
    assert_null(mcp_hub_new(&loop, servers, &err));
    assert_int_equal(err.code, CX_ECONFIG);
    assert_non_null(strstr(err.msg, "tools.mcp_servers.s.url: expected an http:// or https://"));
    json_decref(servers);
    servers = json_pack("{s:{s:s, s:[s]}}", "s", "url", "http://127.0.0.1/mcp", "command", "x");
    assert_null(mcp_hub_new(&loop, servers, &err));
    assert_non_null(strstr(err.msg, "both command and url"));
    json_decref(servers);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_http_calls(void **state)
{
    (void)state;
    http_server hs;
    http_server_start(&hs, 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    mcp_hub *h = hub_with(&loop, "s", http_config(hs.port, "64KB"));
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    expect_status_http(h, "s", hs.port);
    assert_non_null(mcp_hub_tool(h, "s.echo"));
    expect_text(&loop, h, "s.echo", "{\"text\":\"plain\"}", "plain");
    /* SSE: comments, a log notification, another event type, data over two lines */
    uint64_t start = now_ms();
    expect_text(&loop, h, "s.sse_echo", "{\"text\":\"streamed \\u00e9\"}", "streamed \xc3\xa9");
    assert_true(now_ms() - start < 4000); /* not held by the stream left open */
    expect_text(&loop, h, "s.big", "{\"size\":1000}", "xxxx");
    /* over max_result but under the transport's bound: the hub refuses it */
    expect_failure(&loop, h, "s.big", "{\"size\":100000}", 0, MCP_REASON_TOO_BIG, "max_result");
    /* over max_result + 64 KB: the transfer is stopped */
    expect_failure(&loop, h, "s.big", "{\"size\":300000}", 0, MCP_REASON_TOO_BIG,
                   "transfer was stopped");
    expect_failure(&loop, h, "s.sse_big", "{\"size\":300000}", 0, MCP_REASON_TOO_BIG,
                   "transfer was stopped");
    expect_failure(&loop, h, "s.garbage", "{}", 0, MCP_REASON_PROTOCOL, "without a JSON-RPC");
    expect_failure(&loop, h, "s.no_answer", "{}", 0, MCP_REASON_PROTOCOL, "without a JSON-RPC");
    expect_text(&loop, h, "s.echo", "{\"text\":\"still\"}", "still");
    json_t *st = status_of(h, "s");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "ready");
    assert_true(json_integer_value(json_object_get(st, "protocol_errors")) >= 4);
    json_decref(st);

    /* list_changed inside a POST's stream */
    expect_text(&loop, h, "s.add_tool", "{}", "added one");
    watch w = {.hub = h, .tool = "s.added"};
    assert_true(run_until(&loop, watch_holds, &w, WAIT_MS));
    expect_text(&loop, h, "s.added", "{}", "added works");

    /* a timeout and a cancel both tell the server and drop the transfer */
    expect_failure(&loop, h, "s.hang", "{\"seconds\":3}", 300, MCP_REASON_TIMEOUT, NULL);
    outcome o = {0};
    cx_error err = {0};
    json_t *hang = json_pack("{s:i}", "seconds", 3);
    mcp_call *call = mcp_hub_call(h, "s.hang", hang, 0, on_done, &o, &err);
    assert_non_null(call);
    run_for(&loop, 200);
    mcp_call_cancel(call);
    run_for(&loop, 300);
    assert_int_equal(o.callbacks, 0);
    assert_int_equal(count_method(&hs, "notifications/cancelled"), 2);
    expect_text(&loop, h, "s.echo", "{\"text\":\"after\"}", "after");

    /* every request carried the headers; all but initialize the session and version */
    json_t *list = recorded(&hs);
    size_t i;
    json_t *entry;
    assert_true(json_array_size(list) > 10);
    json_array_foreach(list, i, entry) {
        assert_string_equal(header_of(entry, "Authorization"), "Bearer s3cret");
        assert_string_equal(header_of(entry, "X-Caxton-Test"), "yes");
        assert_string_equal(header_of(entry, "Content-Type"), "application/json");
        assert_non_null(strstr(header_of(entry, "Accept"), "application/json"));
        assert_non_null(strstr(header_of(entry, "Accept"), "text/event-stream"));
        if (strcmp(method_of(entry), "initialize") == 0) {
            assert_null(header_of(entry, "Mcp-Session-Id"));
            assert_null(header_of(entry, "MCP-Protocol-Version"));
        } else {
            assert_string_equal(header_of(entry, "Mcp-Session-Id"), "s1");
            assert_string_equal(header_of(entry, "MCP-Protocol-Version"), MCP_PROTOCOL_VERSION);
        }
    }
    json_decref(list);

    /* an HTTP error fails the call and restarts the session */
    expect_failure(&loop, h, "s.fail500", "{}", 0, MCP_REASON_NOT_CONNECTED, "HTTP 500");
    st = status_of(h, "s");
    assert_non_null(strstr(json_string_value(json_object_get(st, "last_error")),
                           "internal trouble"));
    json_decref(st);
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    assert_int_equal(count_method(&hs, "initialize"), 2);
    /* a body echoing the secret header is quoted with it starred out */
    expect_failure(&loop, h, "s.deny", "{}", 0, MCP_REASON_PROTOCOL, "HTTP 401");
    st = status_of(h, "s");
    const char *quoted = json_string_value(json_object_get(st, "last_error"));
    assert_non_null(strstr(quoted, "denied for"));
    assert_null(strstr(quoted, "s3cret"));
    json_decref(st);
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    /* a huge error body does not hide the status: unavailable, not too large */
    expect_failure(&loop, h, "s.big500", "{}", 0, MCP_REASON_NOT_CONNECTED, "HTTP 500");
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    /* an expired session (404 for a request with a session id): a new one */
    expect_failure(&loop, h, "s.expire", "{}", 0, MCP_REASON_NOT_CONNECTED, "ended the session");
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    assert_int_equal(count_method(&hs, "initialize"), 5);
    expect_text(&loop, h, "s.echo", "{\"text\":\"renewed\"}", "renewed");

    /* connectivity test on a fresh session, and reconnect */
    report_box box = {0};
    assert_int_equal(mcp_hub_test(h, "s", 0, on_report, &box, &err), 0);
    assert_true(run_until(&loop, report_in, &box, WAIT_MS));
    json_t *report = report_entry(&box, 0);
    assert_true(json_is_true(json_object_get(report, "ok")));
    assert_true(json_integer_value(json_object_get(report, "tools")) >= 10);
    json_decref(box.report);
    assert_int_equal(count_method(&hs, "initialize"), 6);
    assert_int_equal(mcp_hub_reconnect(h, "s", &err), 0);
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    assert_int_equal(count_method(&hs, "initialize"), 7);
    expect_text(&loop, h, "s.echo", "{\"text\":\"again\"}", "again");

    /* closing with a call in flight */
    outcome last = {0};
    assert_non_null(mcp_hub_call(h, "s.hang", hang, 0, on_done, &last, &err));
    json_decref(hang);
    run_for(&loop, 100);
    hub_finish(&loop, h);
    assert_int_equal(last.callbacks, 1);
    assert_string_equal(last.reason, MCP_REASON_SHUTDOWN);
    assert_int_equal(uv_loop_close(&loop), 0);
    outcome_clear(&o);
    outcome_clear(&last);
    http_server_stop(&hs);
}

static void test_http_down_then_up(void **state)
{
    (void)state;
    int port = free_port();
    uv_loop_t loop;
    uv_loop_init(&loop);
    mcp_hub *h = hub_with(&loop, "s", http_config(port, "1MB"));
    wait_state(&loop, h, "s", "restarting", 0, WAIT_MS);
    json_t *st = status_of(h, "s");
    assert_non_null(strstr(json_string_value(json_object_get(st, "last_error")), "cannot reach"));
    json_decref(st);
    expect_failure(&loop, h, "s.echo", "{}", 0, MCP_REASON_NOT_CONNECTED, "cannot reach");
    http_server hs;
    http_server_start(&hs, port);
    wait_state(&loop, h, "s", "ready", 0, 2 * WAIT_MS);
    expect_text(&loop, h, "s.echo", "{\"text\":\"up\"}", "up");
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
    http_server_stop(&hs);
}

static void test_http_everything(void **state)
{
    (void)state;
    char path[1400];
    snprintf(path, sizeof path, "%s/node_modules/@modelcontextprotocol/server-everything/dist/"
             "index.js", npm_dir);
    if (access(path, R_OK) != 0 || system("node --version >/dev/null 2>&1") != 0) {
        print_message("[  SKIPPED ] server-everything is not installed: run tests/mcp/install.sh "
                      "(needs node and npm: scripts/deps.sh test)\n");
        skip();
    }
    int port = free_port();
    char *argv[] = {"node", path, "streamableHttp", NULL};
    pid_t pid = spawn(argv, port);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/mcp", port);
    json_t *cfg = json_pack("{s:s, s:s, s:s}", "url", url, "timeout", "10s", "restart_backoff",
                            "100ms");
    mcp_hub *h = hub_with(&loop, "everything", cfg);
    wait_state(&loop, h, "everything", "ready", 0, NODE_WAIT_MS);
    assert_non_null(mcp_hub_tool(h, "everything.echo"));
    expect_text(&loop, h, "everything.echo", "{\"message\":\"over http\"}", "over http");
    json_t *st = status_of(h, "everything");
    assert_string_equal(json_string_value(json_object_get(st, "transport")), "http");
    assert_string_equal(json_string_value(json_object_get(st, "url")), url);
    json_decref(st);
    report_box box = {0};
    cx_error err = {0};
    assert_int_equal(mcp_hub_test(h, "everything", 15000, on_report, &box, &err), 0);
    assert_true(run_until(&loop, report_in, &box, NODE_WAIT_MS));
    json_t *entry = report_entry(&box, 0);
    if (!json_is_true(json_object_get(entry, "ok")))
        fail_msg("connectivity test failed: %s",
                 json_string_value(json_object_get(entry, "error")));
    assert_true(json_integer_value(json_object_get(entry, "tools")) >= 1);
    json_decref(box.report);
    assert_int_equal(mcp_hub_reconnect(h, "everything", &err), 0);
    wait_state(&loop, h, "everything", "ready", 0, NODE_WAIT_MS);
    expect_text(&loop, h, "everything.echo", "{\"message\":\"again\"}", "again");
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
    reap(pid);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_ERROR);
    /* This file is tests/unit/test_mcp_http.c in the source tree. */
    snprintf(repo_root, sizeof repo_root, "%s", __FILE__);
    char *cut = strstr(repo_root, "/tests/unit/test_mcp_http.c");
    if (cut)
        *cut = '\0';
    else
        snprintf(repo_root, sizeof repo_root, ".");
    snprintf(scripted, sizeof scripted, "%s/tests/mcp/scripted_http_server.py", repo_root);
    snprintf(npm_dir, sizeof npm_dir, "%s/tests/mcp", repo_root);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_config),
        cmocka_unit_test(test_http_calls),
        cmocka_unit_test(test_http_down_then_up),
        cmocka_unit_test(test_http_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
