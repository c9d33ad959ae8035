/* The MCP client on a real libuv loop with real child processes.
 *
 * Most cases run tests/mcp/scripted_server.py, a small MCP server whose
 * misbehaviour each case picks (dies mid-call, writes garbage, never
 * answers, answers too much, lists broken tools, changes its tools, pings
 * the client). Two cases run the real reference servers from npm
 * (server-everything and server-filesystem) when tests/mcp/install.sh has
 * installed them, and are skipped with a message otherwise. Every wait is
 * bounded; restarts use a 100 ms backoff so the file runs in seconds.
 * TEST_FILTER=pattern runs only the cases whose names match. */
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
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/log.h"
#include "core/util.h"
#include "tools/mcp.h"

#include "mcp_test_support.h"

static char repo_root[1024];
static char scripted[1200];
static char npm_dir[1200];

/* ---- Loop helpers ---------------------------------------------------------------------------- */

/* ---- Configs --------------------------------------------------------------------------------- */

/* A server running the scripted MCP server with extra options (a NULL-ended list). */
static json_t *scripted_config(const char *timeout, const char *max_result, const char *opt,
                               ...)
{
    json_t *command = json_pack("[s, s]", "python3", scripted);
    va_list ap;
    va_start(ap, opt);
    for (const char *o = opt; o; o = va_arg(ap, const char *))
        json_array_append_new(command, json_string(o));
    va_end(ap);
    json_t *cfg = json_pack("{s:o, s:s, s:s}", "command", command, "timeout", timeout,
                            "restart_backoff", "100ms");
    if (max_result)
        json_object_set_new(cfg, "max_result", json_string(max_result));
    return cfg;
}

/* ---- Status ---------------------------------------------------------------------------------- */

static int status_pid(mcp_hub *h, const char *server)
{
    json_t *st = status_of(h, server);
    int pid = (int)json_integer_value(json_object_get(st, "pid"));
    json_decref(st);
    return pid;
}

/* ---- Calls ----------------------------------------------------------------------------------- */

/* ---- Config checks --------------------------------------------------------------------------- */

static void expect_problem(const char *json, const char *part)
{
    json_t *servers = json_loads(json, JSON_ALLOW_NUL, NULL);
    assert_non_null(servers);
    json_t *errors = NULL;
    size_t n = mcp_servers_check(servers, &errors);
    bool found = false;
    for (size_t i = 0; i < json_array_size(errors); i++)
        found |= strstr(json_string_value(json_array_get(errors, i)), part) != NULL;
    if (n == 0 || !found) {
        char *text = json_dumps(errors, 0);
        fail_msg("%s: wanted a problem containing '%s', got %zu: %s", json, part, n, text);
    }
    json_decref(errors);
    json_decref(servers);
}

static void expect_valid(const char *json)
{
    json_t *servers = json_loads(json, 0, NULL);
    assert_non_null(servers);
    json_t *errors = NULL;
    size_t n = mcp_servers_check(servers, &errors);
    if (n != 0) {
        char *text = json_dumps(errors, 0);
        fail_msg("%s: wanted no problem, got %s", json, text);
    }
    json_decref(errors);
    json_decref(servers);
}

static void test_config_check(void **state)
{
    (void)state;
    expect_valid("{}");
    expect_valid("{\"files\": {\"command\": [\"npx\", \"srv\", \"/srv\"]}}");
    expect_valid("{\"a-1_B\": {\"command\": [\"x\"], \"env\": {\"K\": \"v\", \"N\": 5}, "
                 "\"cwd\": \"/srv\", \"timeout\": \"10m\", \"max_result\": \"64MB\"}}");
    expect_valid("{\"s\": {\"command\": [\"x\", 8080], \"timeout\": 30, \"max_result\": 1024, "
                 "\"restart_backoff\": \"100ms\"}}");
    expect_valid("{\"s\": {\"command\": [\"x\"], \"timeout\": \"1s\", \"max_result\": \"1KB\"}}");
    assert_int_equal(mcp_servers_check(NULL, NULL), 0);

    expect_valid("{\"s\": {\"url\": \"http://localhost:3000/mcp\", \"headers\": "
                 "{\"Authorization\": \"Bearer x\", \"X-N\": 7}, \"timeout\": \"5s\"}}");
    expect_valid("{\"s\": {\"url\": \"HTTPS://[::1]:8443/a/mcp?k=v\"}}");
    expect_problem("{\"s\": {\"url\": \"ftp://localhost/mcp\"}}",
                   "tools.mcp_servers.s.url: expected an http:// or https:// address");
    expect_problem("{\"s\": {\"url\": \"http://\"}}", "expected an http:// or https://");
    expect_problem("{\"s\": {\"url\": \"http://a b/mcp\"}}", "expected an http://");
    expect_problem("{\"s\": {\"url\": 8080}}", "expected an http://");
    expect_problem("{\"s\": {\"url\": \"http://u:secret@h/mcp?token=t0p\", \"x\": 1}}",
                   "unknown setting");
    expect_problem("{\"s\": {\"url\": \"http://h/\", \"command\": [\"x\"]}}",
                   "both command and url");
    expect_problem("{\"s\": {\"url\": \"http://h/\", \"env\": {\"A\": \"b\"}}}",
                   "env and cwd apply to a command");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"headers\": {\"A\": \"b\"}}}",
                   "headers apply to a url server");
    expect_problem("{\"s\": {\"url\": \"http://h/\", \"headers\": [\"A: b\"]}}",
                   "tools.mcp_servers.s.headers: expected a mapping");
    expect_problem("{\"s\": {\"url\": \"http://h/\", \"headers\": {\"Bad Name\": \"b\"}}}",
                   "is not an HTTP header name");
    expect_problem("{\"s\": {\"url\": \"http://h/\", \"headers\": {\"accept\": \"b\"}}}",
                   "Caxton sets this header itself");
    expect_problem("{\"s\": {\"url\": \"http://h/\", \"headers\": {\"A\": \"x\\r\\nB: y\"}}}",
                   "the value is not shown");
    expect_problem("{\"s\": {\"url\": \"http://h/\", \"headers\": {\"A\": true}}}",
                   "without line breaks");
    {
        json_t *errors = NULL;
        json_t *v = json_loads("{\"s\": {\"url\": \"gopher://u:pw@h/mcp?token=t0p\", "
                               "\"headers\": {\"A\": \"se\\ncret\"}}}", 0, NULL);
        assert_int_equal(mcp_servers_check(v, &errors), 2);
        char *text = json_dumps(errors, 0);
        assert_null(strstr(text, "pw"));      /* credentials are never quoted */
        assert_null(strstr(text, "t0p"));
        assert_null(strstr(text, "cret"));
        assert_non_null(strstr(text, "gopher://h/mcp"));
        free(text);
        json_decref(errors);
        json_decref(v);
    }
    expect_problem("{\"s\": {\"command\": [\"x\"], \"comand\": 1}}", "did you mean 'command'?");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"max_results\": 1}}",
                   "did you mean 'max_result'?");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"zzzzzz\": 1}}", "unknown setting \"zzzzzz\"");
    expect_problem("{\"s\": {}}", "tools.mcp_servers.s: no command");
    expect_problem("{\"s\": null}", "no command");
    expect_problem("{\"s\": {\"command\": []}}", "tools.mcp_servers.s.command: expected a list");
    expect_problem("{\"s\": {\"command\": \"npx srv\"}}", "expected a list of 1 to 256 strings");
    expect_problem("{\"s\": {\"command\": [\"\"]}}", "command[0]");
    expect_problem("{\"s\": {\"command\": [\"x\", {}]}}", "command[1]");
    expect_problem("{\"s\": {\"command\": [\"x\", \"a\\u0000b\"]}}", "command[1]");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"env\": [\"K=v\"]}}", "s.env: expected a "
                   "mapping");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"env\": {\"K\": {}}}}", "env.\"K\"");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"env\": {\"A=B\": \"v\"}}}", "without '='");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"cwd\": \"\"}}", "s.cwd: expected a directory");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"cwd\": 5}}", "s.cwd");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"timeout\": \"500ms\"}}",
                   "s.timeout: must be from 1s to 10m");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"timeout\": \"11m\"}}", "1s to 10m");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"timeout\": \"soon\"}}",
                   "expected a duration");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"timeout\": -5}}", "expected a duration");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"max_result\": \"512B\"}}", "1KB to 64MB");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"max_result\": \"65MB\"}}", "1KB to 64MB");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"max_result\": true}}", "expected a size");
    expect_problem("{\"s\": {\"command\": [\"x\"], \"restart_backoff\": \"1ms\"}}", "10ms to 60s");
    expect_problem("{\"bad.name\": {\"command\": [\"x\"]}}", "server name \"bad.name\"");
    expect_problem("{\"\": {\"command\": [\"x\"]}}", "server name \"\"");
    expect_problem("{\"s\": [\"x\"]}", "expected a mapping of settings");
    expect_problem("[]", "expected a mapping of server names");

    /* Too many servers, and more problems than are listed. */
    json_t *many = json_object();
    for (int i = 0; i < 65; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        json_object_set_new(many, name, json_pack("{s:[s]}", "command", "x"));
    }
    json_t *errors = NULL;
    assert_int_equal(mcp_servers_check(many, &errors), 1);
    assert_non_null(strstr(json_string_value(json_array_get(errors, 0)), "more than the 64"));
    json_decref(errors);
    json_decref(many);
    json_t *bad = json_object();
    for (int i = 0; i < 60; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        json_object_set_new(bad, name, json_pack("{s:s, s:s, s:s}", "url", "u", "x", "y",
                                                  "timeout", "0s"));
    }
    assert_int_equal(mcp_servers_check(bad, &errors), 180);
    assert_int_equal(json_array_size(errors), 101);
    assert_non_null(strstr(json_string_value(json_array_get(errors, 100)), "80 more problems"));
    json_decref(errors);

    /* A bad config is refused at the door. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    cx_error err = {0};
    assert_null(mcp_hub_new(&loop, bad, &err));
    assert_int_equal(err.code, CX_ECONFIG);
    assert_non_null(strstr(err.msg, "run `caxton config validate`"));
    assert_null(mcp_hub_new(NULL, NULL, &err));
    json_decref(bad);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- The scripted server --------------------------------------------------------------------- */

typedef struct tool_names {
    char names[64][128];
    size_t count;
} tool_names;

static void collect_name(const mcp_tool_info *t, void *arg)
{
    tool_names *list = arg;
    if (list->count < 64)
        snprintf(list->names[list->count++], sizeof list->names[0], "%s", t->full_name);
}

static void test_scripted_calls(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    mcp_hub *h = hub_with(&loop, "s", scripted_config("2s", NULL, "--stderr", NULL));
    assert_true(mcp_hub_has_server(h, "s"));
    assert_false(mcp_hub_has_server(h, "t"));
    assert_null(mcp_hub_status_json(h, "t"));

    /* A call made while the server starts waits for it. */
    outcome early = {0};
    json_t *args = json_pack("{s:s}", "text", "early bird");
    cx_error err = {0};
    assert_non_null(mcp_hub_call(h, "s.echo", args, 0, on_done, &early, &err));
    json_decref(args);
    json_t *st = status_of(h, "s");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "starting");
    json_decref(st);
    assert_true(run_until(&loop, outcome_in, &early, WAIT_MS));
    assert_int_equal(early.code, 0);
    assert_string_equal(first_text(&early), "early bird");
    outcome_clear(&early);
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);

    /* Tools: full names, in order, with their schema. */
    const mcp_tool_info *echo = mcp_hub_tool(h, "s.echo");
    assert_non_null(echo);
    assert_string_equal(echo->full_name, "s.echo");
    assert_string_equal(echo->description, "scripted echo");
    assert_true(json_is_object(echo->input_schema));
    assert_null(mcp_hub_tool(h, "s.nope"));
    assert_null(mcp_hub_tool(h, "echo"));
    tool_names names = {0};
    mcp_hub_foreach_tool(h, collect_name, &names);
    assert_int_equal(names.count, 15);
    for (size_t i = 1; i < names.count; i++)
        assert_true(strcmp(names.names[i - 1], names.names[i]) < 0);

    expect_text(&loop, h, "s.echo", "{\"text\":\"hi there\"}", "hi there");
    expect_text(&loop, h, "s.echo", NULL, "");
    /* A tool that answers isError: the call completed, the tool failed. */
    outcome o = {0};
    call_wait(&loop, h, "s.tool_error", "{}", 0, &o);
    assert_int_equal(o.code, 0);
    assert_true(o.is_error);
    assert_string_equal(o.reason, MCP_REASON_TOOL_ERROR);
    assert_string_equal(o.detail, "bad input");
    assert_non_null(o.result);
    outcome_clear(&o);
    /* A JSON-RPC error answer. */
    expect_failure(&loop, h, "s.fail", "{}", 0, MCP_REASON_PROTOCOL, "error -32000: \"boom\"");
    /* Unknown tools and servers are answered through the callback. */
    expect_failure(&loop, h, "s.nope", "{}", 0, MCP_REASON_UNKNOWN_TOOL, "has no tool");
    expect_failure(&loop, h, "x.echo", "{}", 0, MCP_REASON_UNKNOWN_TOOL, "no MCP server");
    expect_failure(&loop, h, "ss.echo", "{}", 0, MCP_REASON_UNKNOWN_TOOL,
                   "did you mean the server 's'?");
    expect_failure(&loop, h, "echo", "{}", 0, MCP_REASON_UNKNOWN_TOOL, "server.tool");
    expect_failure(&loop, h, "s.bad name", "{}", 0, MCP_REASON_UNKNOWN_TOOL, "has no tool");
    /* Refused at the door: no callback. */
    json_t *list = json_array();
    assert_null(mcp_hub_call(h, "s.echo", list, 0, on_done, &o, &err));
    assert_int_equal(err.code, CX_EINVAL);
    assert_null(mcp_hub_call(h, "s.echo", NULL, 0, NULL, NULL, &err));
    assert_null(mcp_hub_call(NULL, "s.echo", NULL, 0, on_done, &o, &err));
    json_decref(list);
    json_t *huge = json_object();
    char *filler = malloc(9u * 1024 * 1024);
    memset(filler, 'a', 9u * 1024 * 1024 - 1);
    filler[9u * 1024 * 1024 - 1] = '\0';
    json_object_set_new(huge, "text", json_string(filler));
    free(filler);
    assert_null(mcp_hub_call(h, "s.echo", huge, 0, on_done, &o, &err));
    assert_int_equal(err.code, CX_ETOOBIG);
    json_decref(huge);
    assert_int_equal(o.callbacks, 0);

    /* Environment and working directory come from the config. */
    st = status_of(h, "s");
    assert_string_equal(json_string_value(json_object_get(st, "transport")), "stdio");
    assert_true(json_integer_value(json_object_get(st, "pid")) > 0);
    assert_int_equal(json_array_size(json_object_get(st, "tools")), 15);
    assert_string_equal(json_string_value(json_array_get(json_object_get(st, "tools"), 0)),
                        "s.add_tool");
    assert_true(json_is_null(json_object_get(st, "last_error")));
    assert_int_equal(json_integer_value(json_object_get(st, "restarts")), 0);
    /* Calls that reached the server: three echoes, tool_error and fail. */
    assert_int_equal(json_integer_value(json_object_get(st, "calls")), 5);
    assert_int_equal(json_integer_value(json_object_get(st, "errors")), 2);
    assert_true(json_is_integer(json_object_get(st, "avg_latency_ms")));
    assert_true(json_is_string(json_object_get(st, "connected_at")));
    json_decref(st);
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_env_and_cwd(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char dir[512];
    temp_pattern(dir, sizeof dir, "caxton-mcp-cwd");
    assert_non_null(mkdtemp(dir));
    char resolved[4096];
    assert_non_null(realpath(dir, resolved));
    setenv("CAXTON_MCP_INHERITED", "from caxton", 1);
    setenv("CAXTON_MCP_REPLACED", "old", 1);
    json_t *cfg = scripted_config("2s", NULL, NULL);
    json_object_set_new(cfg, "env", json_pack("{s:s, s:s}", "CAXTON_MCP_REPLACED", "new",
                                              "CAXTON_MCP_ADDED", "42"));
    json_object_set_new(cfg, "cwd", json_string(dir));
    mcp_hub *h = hub_with(&loop, "s", cfg);
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    expect_text(&loop, h, "s.env", "{\"name\":\"CAXTON_MCP_ADDED\"}", "42");
    expect_text(&loop, h, "s.env", "{\"name\":\"CAXTON_MCP_REPLACED\"}", "new");
    /* only a few variables are inherited (PATH, HOME, LANG, ...), never
     * others such as the providers' API keys */
    expect_text(&loop, h, "s.env", "{\"name\":\"CAXTON_MCP_INHERITED\"}", "(unset)");
    expect_text(&loop, h, "s.env", "{\"name\":\"PATH\"}", "/");
    expect_text(&loop, h, "s.cwd", "{}", resolved);
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
    rmdir(dir);
    unsetenv("CAXTON_MCP_INHERITED");
    unsetenv("CAXTON_MCP_REPLACED");
}

static void test_command_not_found(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    json_t *cfg = json_pack("{s:[s], s:s}", "command", "caxton-no-such-mcp-server",
                            "restart_backoff", "100ms");
    mcp_hub *h = hub_with(&loop, "gone", cfg);
    json_t *st = status_of(h, "gone");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "restarting");
    assert_true(json_is_null(json_object_get(st, "pid")));
    const char *last = json_string_value(json_object_get(st, "last_error"));
    assert_non_null(last);
    assert_non_null(strstr(last, "\"caxton-no-such-mcp-server\" was not found"));
    json_decref(st);
    expect_failure(&loop, h, "gone.anything", "{}", 0, MCP_REASON_NOT_CONNECTED, "not found");
    run_for(&loop, 350); /* restarts keep failing, with growing delays */
    st = status_of(h, "gone");
    json_int_t restarts = json_integer_value(json_object_get(st, "restarts"));
    assert_true(restarts >= 1 && restarts <= 3);
    json_decref(st);
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_dies_mid_call(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    json_t *cfg = scripted_config("2s", NULL, NULL);
    json_object_set_new(cfg, "restart_backoff", json_string("500ms")); /* room to look */
    mcp_hub *h = hub_with(&loop, "s", cfg);
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    int pid = status_pid(h, "s");
    expect_failure(&loop, h, "s.die", "{}", 0, MCP_REASON_SERVER_DIED, "exited with status 3");
    /* Down, then up again on a new process. */
    expect_failure(&loop, h, "s.echo", "{}", 0, MCP_REASON_NOT_CONNECTED, "exited with status 3");
    wait_state(&loop, h, "s", "ready", pid, WAIT_MS);
    expect_text(&loop, h, "s.echo", "{\"text\":\"back\"}", "back");
    json_t *st = status_of(h, "s");
    assert_int_equal(json_integer_value(json_object_get(st, "restarts")), 1);
    assert_non_null(strstr(json_string_value(json_object_get(st, "last_error")), "status 3"));
    json_decref(st);
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_garbage(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    mcp_hub *h = hub_with(&loop, "s", scripted_config("2s", NULL, NULL));
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    int pid = status_pid(h, "s");
    expect_failure(&loop, h, "s.garbage", "{}", 0, MCP_REASON_PROTOCOL, "not JSON-RPC");
    wait_state(&loop, h, "s", "ready", pid, WAIT_MS);
    expect_text(&loop, h, "s.echo", "{\"text\":\"clean\"}", "clean");
    json_t *st = status_of(h, "s");
    assert_int_equal(json_integer_value(json_object_get(st, "protocol_errors")), 3);
    json_decref(st);
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Odd messages that are not worth a restart, and malformed answers. */
static void test_odd_answers(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    mcp_hub *h = hub_with(&loop, "s", scripted_config("2s", NULL, NULL));
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    int pid = status_pid(h, "s");
    expect_text(&loop, h, "s.noise", "{}", "after noise");
    expect_failure(&loop, h, "s.no_result", "{}", 0, MCP_REASON_PROTOCOL,
                   "neither a result nor an error");
    expect_failure(&loop, h, "s.bad_content", "{}", 0, MCP_REASON_PROTOCOL,
                   "without a valid result");
    json_t *st = status_of(h, "s");
    /* The invalid id, the unreadable message and the empty answer. */
    assert_int_equal(json_integer_value(json_object_get(st, "protocol_errors")), 3);
    json_decref(st);
    assert_int_equal(status_pid(h, "s"), pid);
    expect_text(&loop, h, "s.echo", "{\"text\":\"unshaken\"}", "unshaken");
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A server that closes its output but lives on, and ignores SIGTERM. */
static void test_closed_output_and_kill(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    mcp_hub *h = hub_with(&loop, "s", scripted_config("2s", NULL, "--ignore-term", NULL));
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    int pid = status_pid(h, "s");
    expect_failure(&loop, h, "s.close_stdout", "{}", 0, MCP_REASON_SERVER_DIED,
                   "closed its standard output");
    wait_state(&loop, h, "s", "ready", pid, WAIT_MS);
    assert_int_equal(kill(pid, 0), 0); /* still there: SIGTERM is ignored */
    uint64_t end = now_ms() + WAIT_MS;
    while (kill(pid, 0) == 0 && now_ms() < end)
        run_for(&loop, 50);
    assert_int_equal(kill(pid, 0), -1); /* SIGKILL after the grace, and reaped */
    expect_text(&loop, h, "s.echo", "{\"text\":\"new one\"}", "new one");
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

typedef struct file_watch {
    const char *path;
    const char *needle;
} file_watch;

static bool file_contains(void *arg)
{
    file_watch *fw = arg;
    char *text = NULL;
    size_t len = 0;
    if (fs_read_file(fw->path, 1 << 20, &text, &len, NULL) != 0)
        return false;
    bool found = strstr(text, fw->needle) != NULL;
    free(text);
    return found;
}

static void test_timeout_and_cancel(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char record[512];
    temp_pattern(record, sizeof record, "caxton-mcp-record");
    int fd = mkstemp(record);
    assert_true(fd >= 0);
    close(fd);
    mcp_hub *h = hub_with(&loop, "s", scripted_config("1s", NULL, "--record", record, NULL));
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    int pid = status_pid(h, "s");

    /* The hub waited the whole call timeout, then told the server. */
    uint64_t start = now_ms();
    expect_failure(&loop, h, "s.hang", "{}", 300, MCP_REASON_TIMEOUT, "within");
    uint64_t took = now_ms() - start;
    assert_true(took >= 290 && took < 1500);
    file_watch fw = {record, "\"method\":\"notifications/cancelled\""};
    assert_true(run_until(&loop, file_contains, &fw, WAIT_MS));
    fw.needle = "\"reason\":\"timed out\"";
    assert_true(file_contains(&fw));
    /* The server's default timeout applies when the call gives none. */
    start = now_ms();
    expect_failure(&loop, h, "s.hang", "{}", 0, MCP_REASON_TIMEOUT, "within");
    assert_true(now_ms() - start >= 990);

    /* A cancelled call never calls back, and the server hears of it. */
    outcome o = {0};
    cx_error err = {0};
    mcp_call *call = mcp_hub_call(h, "s.hang", NULL, 0, on_done, &o, &err);
    assert_non_null(call);
    run_for(&loop, 50);
    mcp_call_cancel(call);
    fw.needle = "cancelled by the caller";
    assert_true(run_until(&loop, file_contains, &fw, WAIT_MS));
    /* Cancelled before it could even be delivered: an unknown tool. */
    call = mcp_hub_call(h, "s.nope", NULL, 0, on_done, &o, &err);
    assert_non_null(call);
    mcp_call_cancel(call);
    run_for(&loop, 100);
    assert_int_equal(o.callbacks, 0);
    /* Timeouts do not restart the server. */
    assert_int_equal(status_pid(h, "s"), pid);
    expect_text(&loop, h, "s.echo", "{\"text\":\"still here\"}", "still here");
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
    unlink(record);
}

static void test_too_big(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    mcp_hub *h = hub_with(&loop, "s", scripted_config("2s", "1KB", NULL));
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    int pid = status_pid(h, "s");
    expect_text(&loop, h, "s.big", "{\"size\":900}", "xxxxxxxx");
    /* Over max_result but within the line limit: refused, server kept. */
    expect_failure(&loop, h, "s.big", "{\"size\":5000}", 0, MCP_REASON_TOO_BIG,
                   "over the server's max_result of 1024 bytes");
    assert_int_equal(status_pid(h, "s"), pid);
    expect_text(&loop, h, "s.echo", "{\"text\":\"fine\"}", "fine");
    /* Over the line limit (max_result + 64 KB): the server is restarted. */
    expect_failure(&loop, h, "s.big", "{\"size\":200000}", 0, MCP_REASON_TOO_BIG,
                   "longer than 66560 bytes");
    wait_state(&loop, h, "s", "ready", pid, WAIT_MS);
    expect_text(&loop, h, "s.echo", "{\"text\":\"after\"}", "after");
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_invalid_tools_and_pages(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    json_t *servers = json_pack("{s:o, s:o}", "bad",
                                scripted_config("2s", NULL, "--bad-tools", NULL), "paged",
                                scripted_config("2s", NULL, "--paginate", "--bad-tools", NULL));
    cx_error err = {0};
    mcp_hub *h = mcp_hub_new(&loop, servers, &err);
    json_decref(servers);
    assert_non_null(h);
    wait_state(&loop, h, "bad", "ready", 0, WAIT_MS);
    wait_state(&loop, h, "paged", "ready", 0, WAIT_MS);
    assert_null(mcp_hub_tool(h, "bad.bad_schema"));
    assert_null(mcp_hub_tool(h, "bad.no_schema"));
    assert_null(mcp_hub_tool(h, "bad.bad name!"));
    assert_null(mcp_hub_tool(h, "paged.bad_schema"));
    json_t *st = status_of(h, "paged");
    assert_int_equal(json_array_size(json_object_get(st, "tools")), 15); /* from 18 pages */
    json_decref(st);
    tool_names names = {0};
    mcp_hub_foreach_tool(h, collect_name, &names);
    assert_int_equal(names.count, 30);
    assert_string_equal(names.names[0], "bad.add_tool");
    assert_string_equal(names.names[29], "paged.tool_error");
    expect_text(&loop, h, "bad.echo", "{\"text\":\"usable\"}", "usable");
    expect_text(&loop, h, "paged.echo", "{\"text\":\"paged\"}", "paged");
    expect_failure(&loop, h, "bad.bad_schema", "{}", 0, MCP_REASON_UNKNOWN_TOOL, "has no tool");
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_list_changed_and_ping(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    mcp_hub *h = hub_with(&loop, "s", scripted_config("2s", NULL, NULL));
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    assert_null(mcp_hub_tool(h, "s.added"));
    expect_text(&loop, h, "s.add_tool", "{}", "announced");
    watch w = {.hub = h, .tool = "s.added"};
    assert_true(run_until(&loop, watch_holds, &w, WAIT_MS));
    expect_text(&loop, h, "s.added", "{}", "added works");
    /* The server pings the client and asks for roots, which Caxton does not offer. */
    expect_text(&loop, h, "s.ping_me", "{}", "ping ok; roots/list -32601");
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_unsupported_version(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    mcp_hub *h = hub_with(&loop, "s", scripted_config("2s", NULL, "--version", "1999-01-01",
                                                      NULL));
    wait_state(&loop, h, "s", "restarting", 0, WAIT_MS);
    json_t *st = status_of(h, "s");
    assert_non_null(strstr(json_string_value(json_object_get(st, "last_error")),
                           "MCP version \"1999-01-01\""));
    json_decref(st);
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

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

static void test_connectivity(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    json_t *servers = json_pack("{s:o, s:o, s:{s:[s], s:s}}", "good",
                                scripted_config("2s", NULL, NULL), "mute",
                                scripted_config("2s", NULL, "--no-init", NULL), "absent",
                                "command", "caxton-no-such-mcp-server", "restart_backoff",
                                "100ms");
    cx_error err = {0};
    mcp_hub *h = mcp_hub_new(&loop, servers, &err);
    json_decref(servers);
    assert_non_null(h);
    wait_state(&loop, h, "good", "ready", 0, WAIT_MS);
    int pid = status_pid(h, "good");

    report_box box = {0};
    assert_int_equal(mcp_hub_test(h, NULL, 400, on_report, &box, &err), 0);
    assert_int_equal(box.callbacks, 0);
    assert_true(run_until(&loop, report_in, &box, WAIT_MS));
    run_for(&loop, 20);
    assert_int_equal(box.callbacks, 1);
    json_t *absent = report_entry(&box, 0), *good = report_entry(&box, 1),
           *mute = report_entry(&box, 2);
    assert_string_equal(json_string_value(json_object_get(absent, "name")), "absent");
    assert_false(json_is_true(json_object_get(absent, "ok")));
    assert_non_null(strstr(json_string_value(json_object_get(absent, "error")), "not found"));
    assert_string_equal(json_string_value(json_object_get(good, "name")), "good");
    assert_true(json_is_true(json_object_get(good, "ok")));
    assert_true(json_is_integer(json_object_get(good, "initialize_ms")));
    assert_true(json_is_integer(json_object_get(good, "list_ms")));
    assert_int_equal(json_integer_value(json_object_get(good, "tools")), 15);
    assert_true(json_is_null(json_object_get(good, "error")));
    assert_false(json_is_true(json_object_get(mute, "ok")));
    assert_true(json_is_null(json_object_get(mute, "initialize_ms")));
    assert_non_null(strstr(json_string_value(json_object_get(mute, "error")),
                           "no answer to initialize within 400 ms"));
    json_decref(box.report);
    /* The test used fresh processes: the running server is untouched. */
    assert_int_equal(status_pid(h, "good"), pid);

    box = (report_box){0};
    assert_int_equal(mcp_hub_test(h, "good", 0, on_report, &box, &err), 0);
    assert_true(run_until(&loop, report_in, &box, WAIT_MS));
    assert_int_equal(json_array_size(json_object_get(box.report, "servers")), 1);
    assert_true(json_is_true(json_object_get(report_entry(&box, 0), "ok")));
    json_decref(box.report);
    assert_int_equal(mcp_hub_test(h, "god", 0, on_report, &box, &err), CX_ENOTFOUND);
    assert_non_null(strstr(err.msg, "did you mean 'good'?"));
    assert_int_equal(mcp_hub_reconnect(h, "goood", &err), CX_ENOTFOUND);

    /* A test still running when the hub closes reports the shutdown. */
    box = (report_box){0};
    assert_int_equal(mcp_hub_test(h, "mute", 0, on_report, &box, &err), 0);
    mcp_hub_close(h);
    assert_true(run_until(&loop, report_in, &box, WAIT_MS));
    assert_non_null(strstr(json_string_value(json_object_get(report_entry(&box, 0), "error")),
                           "shutting down"));
    json_decref(box.report);
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* No servers at all: everything answers, nothing is started. */
static void test_empty_hub(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    cx_error err = {0};
    mcp_hub *h = mcp_hub_new(&loop, NULL, &err);
    assert_non_null(h);
    json_t *all = mcp_hub_status_json(h, NULL);
    assert_true(json_is_array(all) && json_array_size(all) == 0);
    json_decref(all);
    tool_names names = {0};
    mcp_hub_foreach_tool(h, collect_name, &names);
    assert_int_equal(names.count, 0);
    expect_failure(&loop, h, "files.read", "{}", 0, MCP_REASON_UNKNOWN_TOOL, "no MCP server");
    report_box box = {0};
    assert_int_equal(mcp_hub_test(h, NULL, 0, on_report, &box, &err), 0);
    assert_int_equal(box.callbacks, 0);
    assert_true(run_until(&loop, report_in, &box, WAIT_MS));
    assert_int_equal(json_array_size(json_object_get(box.report, "servers")), 0);
    json_decref(box.report);
    assert_int_equal(mcp_hub_reconnect(h, NULL, &err), 0);
    assert_int_equal(mcp_hub_reconnect(h, "files", &err), CX_ENOTFOUND);
    assert_non_null(strstr(err.msg, "tools.mcp_servers has: none"));
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_reconnect_and_reconfigure(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    json_t *servers = json_pack("{s:o, s:o}", "a", scripted_config("2s", NULL, NULL), "b",
                                scripted_config("2s", NULL, NULL));
    cx_error err = {0};
    mcp_hub *h = mcp_hub_new(&loop, servers, &err);
    assert_non_null(h);
    wait_state(&loop, h, "a", "ready", 0, WAIT_MS);
    wait_state(&loop, h, "b", "ready", 0, WAIT_MS);
    int pid_a = status_pid(h, "a"), pid_b = status_pid(h, "b");

    /* Reconnect one: a new process, a call in flight fails, tools listed again. */
    outcome o = {0};
    assert_non_null(mcp_hub_call(h, "a.hang", NULL, 0, on_done, &o, &err));
    run_for(&loop, 50);
    assert_int_equal(mcp_hub_reconnect(h, "a", &err), 0);
    assert_true(run_until(&loop, outcome_in, &o, WAIT_MS));
    assert_string_equal(o.reason, MCP_REASON_NOT_CONNECTED);
    assert_non_null(strstr(o.detail, "reconnected"));
    outcome_clear(&o);
    wait_state(&loop, h, "a", "ready", pid_a, WAIT_MS);
    assert_int_equal(status_pid(h, "b"), pid_b);
    pid_a = status_pid(h, "a");
    assert_int_equal(mcp_hub_reconnect(h, NULL, &err), 0);
    wait_state(&loop, h, "a", "ready", pid_a, WAIT_MS);
    wait_state(&loop, h, "b", "ready", pid_b, WAIT_MS);
    pid_a = status_pid(h, "a");
    pid_b = status_pid(h, "b");

    /* Reconfigure: a unchanged, b changed, c new; then a removed. */
    json_object_set_new(servers, "b", scripted_config("3s", NULL, NULL));
    json_object_set_new(servers, "c", scripted_config("2s", NULL, NULL));
    assert_int_equal(mcp_hub_reconfigure(h, servers, &err), 0);
    wait_state(&loop, h, "b", "ready", pid_b, WAIT_MS);
    wait_state(&loop, h, "c", "ready", 0, WAIT_MS);
    assert_int_equal(status_pid(h, "a"), pid_a);
    expect_text(&loop, h, "c.echo", "{\"text\":\"new\"}", "new");
    json_object_del(servers, "a");
    assert_int_equal(mcp_hub_reconfigure(h, servers, &err), 0);
    assert_false(mcp_hub_has_server(h, "a"));
    assert_null(mcp_hub_tool(h, "a.echo"));
    expect_failure(&loop, h, "a.echo", "{}", 0, MCP_REASON_UNKNOWN_TOOL, "no MCP server");
    /* A bad config changes nothing. */
    json_object_set_new(servers, "d", json_pack("{s:s}", "url", "ftp://localhost/mcp"));
    assert_int_equal(mcp_hub_reconfigure(h, servers, &err), CX_ECONFIG);
    assert_non_null(strstr(err.msg, "http:// or https://"));
    assert_false(mcp_hub_has_server(h, "d"));
    assert_true(mcp_hub_has_server(h, "b"));
    json_decref(servers);
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

typedef struct chain {
    mcp_hub *hub;
    outcome first, second;
    bool closed;
} chain;

static void on_second(const mcp_result *r, void *arg)
{
    chain *c = arg;
    on_done(r, &c->second);
}

/* A callback may start another call, and may close the hub. */
static void on_first(const mcp_result *r, void *arg)
{
    chain *c = arg;
    on_done(r, &c->first);
    json_t *args = json_pack("{s:s}", "text", "from a callback");
    cx_error err = {0};
    assert_non_null(mcp_hub_call(c->hub, "s.echo", args, 0, on_second, c, &err));
    json_decref(args);
}

static bool second_in(void *arg) { return ((chain *)arg)->second.callbacks > 0; }

static void test_reentrant_and_close(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    mcp_hub *h = hub_with(&loop, "s", scripted_config("2s", NULL, NULL));
    wait_state(&loop, h, "s", "ready", 0, WAIT_MS);
    chain c = {.hub = h};
    cx_error err = {0};
    assert_non_null(mcp_hub_call(h, "s.echo", NULL, 0, on_first, &c, &err));
    assert_true(run_until(&loop, second_in, &c, WAIT_MS));
    assert_string_equal(first_text(&c.second), "from a callback");
    outcome_clear(&c.first);
    outcome_clear(&c.second);

    /* Closing fails calls in flight with shutting-down, on the next turn. */
    outcome hung = {0}, unknown = {0};
    assert_non_null(mcp_hub_call(h, "s.hang", NULL, 0, on_done, &hung, &err));
    run_for(&loop, 50);
    assert_non_null(mcp_hub_call(h, "s.nope", NULL, 0, on_done, &unknown, &err));
    int pid = status_pid(h, "s");
    mcp_hub_close(h);
    assert_int_equal(hung.callbacks, 0);
    assert_true(run_until(&loop, outcome_in, &hung, WAIT_MS));
    assert_string_equal(hung.reason, MCP_REASON_SHUTDOWN);
    assert_true(run_until(&loop, outcome_in, &unknown, WAIT_MS));
    assert_int_equal(unknown.callbacks, 1);
    uint64_t end = now_ms() + WAIT_MS;
    while (uv_loop_alive(&loop) && now_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    assert_false(uv_loop_alive(&loop));
    assert_int_equal(kill(pid, 0), -1); /* the child is gone and reaped */
    outcome_clear(&hung);
    outcome_clear(&unknown);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- The real servers from npm --------------------------------------------------------------- */

static bool npm_server(const char *package, char *path, size_t size)
{
    snprintf(path, size, "%s/node_modules/@modelcontextprotocol/%s/dist/index.js", npm_dir,
             package);
    if (access(path, R_OK) == 0 && system("node --version >/dev/null 2>&1") == 0)
        return true;
    print_message("[  SKIPPED ] %s is not installed: run tests/mcp/install.sh (needs node and "
                  "npm: scripts/deps.sh test)\n", package);
    return false;
}

static void test_everything(void **state)
{
    (void)state;
    char path[1400];
    if (!npm_server("server-everything", path, sizeof path))
        skip();
    uv_loop_t loop;
    uv_loop_init(&loop);
    json_t *cfg = json_pack("{s:[s, s, s], s:s, s:s}", "command", "node", path, "stdio",
                            "timeout", "10s", "restart_backoff", "100ms");
    mcp_hub *h = hub_with(&loop, "everything", cfg);
    wait_state(&loop, h, "everything", "ready", 0, NODE_WAIT_MS);
    const mcp_tool_info *echo = mcp_hub_tool(h, "everything.echo");
    assert_non_null(echo);
    assert_true(json_is_object(echo->input_schema));
    expect_text(&loop, h, "everything.echo", "{\"message\":\"hi\"}", "hi");

    json_t *st = status_of(h, "everything");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "ready");
    json_t *tools = json_object_get(st, "tools");
    bool listed = false;
    for (size_t i = 0; i < json_array_size(tools); i++)
        listed |= strcmp(json_string_value(json_array_get(tools, i)), "everything.echo") == 0;
    assert_true(listed);
    json_decref(st);

    report_box box = {0};
    cx_error err = {0};
    assert_int_equal(mcp_hub_test(h, "everything", 15000, on_report, &box, &err), 0);
    assert_true(run_until(&loop, report_in, &box, NODE_WAIT_MS));
    json_t *entry = report_entry(&box, 0);
    if (!json_is_true(json_object_get(entry, "ok")))
        fail_msg("connectivity test failed: %s",
                 json_string_value(json_object_get(entry, "error")));
    assert_true(json_integer_value(json_object_get(entry, "initialize_ms")) >= 0);
    assert_true(json_integer_value(json_object_get(entry, "list_ms")) >= 0);
    assert_true(json_integer_value(json_object_get(entry, "tools")) >= 1);
    json_decref(box.report);

    int pid = status_pid(h, "everything");
    assert_int_equal(mcp_hub_reconnect(h, "everything", &err), 0);
    wait_state(&loop, h, "everything", "ready", pid, NODE_WAIT_MS);
    expect_text(&loop, h, "everything.echo", "{\"message\":\"again\"}", "again");
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_filesystem(void **state)
{
    (void)state;
    char path[1400];
    if (!npm_server("server-filesystem", path, sizeof path))
        skip();
    char dir[512];
    temp_pattern(dir, sizeof dir, "caxton-mcp-fs");
    assert_non_null(mkdtemp(dir));
    char real[4096], file[4200];
    assert_non_null(realpath(dir, real));
    snprintf(file, sizeof file, "%s/notes.txt", real);
    assert_int_equal(fs_write_atomic(file, "hello from caxton\n", 18, 0644, NULL), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    json_t *cfg = json_pack("{s:[s, s, s], s:s}", "command", "node", path, real, "timeout",
                            "10s");
    mcp_hub *h = hub_with(&loop, "files", cfg);
    wait_state(&loop, h, "files", "ready", 0, NODE_WAIT_MS);
    char args[4400];
    snprintf(args, sizeof args, "{\"path\":\"%s\"}", real);
    expect_text(&loop, h, "files.list_directory", args, "[FILE] notes.txt");
    snprintf(args, sizeof args, "{\"path\":\"%s\"}", file);
    expect_text(&loop, h, "files.read_file", args, "hello from caxton");
    /* Outside the allowed directory: the tool says no (isError). */
    outcome o = {0};
    call_wait(&loop, h, "files.read_file", "{\"path\":\"/etc/hostname\"}", 0, &o);
    assert_int_equal(o.code, 0);
    assert_true(o.is_error);
    assert_string_equal(o.reason, MCP_REASON_TOOL_ERROR);
    outcome_clear(&o);
    hub_finish(&loop, h);
    assert_int_equal(uv_loop_close(&loop), 0);
    unlink(file);
    rmdir(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_ERROR);
    /* This file is tests/unit/test_mcp.c in the source tree. */
    snprintf(repo_root, sizeof repo_root, "%s", __FILE__);
    char *cut = strstr(repo_root, "/tests/unit/test_mcp.c");
    if (cut)
        *cut = '\0';
    else
        snprintf(repo_root, sizeof repo_root, ".");
    snprintf(scripted, sizeof scripted, "%s/tests/mcp/scripted_server.py", repo_root);
    snprintf(npm_dir, sizeof npm_dir, "%s/tests/mcp", repo_root);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_check),
        cmocka_unit_test(test_scripted_calls),
        cmocka_unit_test(test_env_and_cwd),
        cmocka_unit_test(test_command_not_found),
        cmocka_unit_test(test_dies_mid_call),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_odd_answers),
        cmocka_unit_test(test_closed_output_and_kill),
        cmocka_unit_test(test_timeout_and_cancel),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_invalid_tools_and_pages),
        cmocka_unit_test(test_list_changed_and_ping),
        cmocka_unit_test(test_unsupported_version),
        cmocka_unit_test(test_connectivity),
        cmocka_unit_test(test_empty_hub),
        cmocka_unit_test(test_reconnect_and_reconfigure),
        cmocka_unit_test(test_reentrant_and_close),
        cmocka_unit_test(test_everything),
        cmocka_unit_test(test_filesystem),
    };
    const char *filter = getenv("TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
