/* What the MCP client's tests share: running a real libuv loop until a
 * condition holds (bounded), starting a hub with one server, waiting for a
 * server's state, and making a call and checking its outcome. Included by
 * tests/unit/test_mcp.c and test_mcp_http.c after cmocka and the project's
 * headers. */
#ifndef CAXTON_TESTS_MCP_TEST_SUPPORT_H
#define CAXTON_TESTS_MCP_TEST_SUPPORT_H

#define WAIT_MS 5000u        /* the longest any scripted step may take */
#define NODE_WAIT_MS 20000u  /* a real server's first start (node loads its modules) */

static inline uint64_t now_ms(void) { return time_monotonic_ns() / 1000000u; }

/* A pattern for mkdtemp/mkstemp in the temporary directory. */
static inline void temp_pattern(char *out, size_t size, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, size, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
}

static inline void on_tick(uv_timer_t *timer) { (void)timer; }

/* Runs the loop until pred(arg) holds or ms pass; the result of pred. */
static inline bool run_until(uv_loop_t *loop, bool (*pred)(void *), void *arg, uint64_t ms)
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    uint64_t end = now_ms() + ms;
    bool ok;
    while (!(ok = pred(arg)) && now_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static inline bool never(void *arg)
{
    (void)arg;
    return false;
}

static inline void run_for(uv_loop_t *loop, uint64_t ms) { run_until(loop, never, NULL, ms); }

/* Closes the hub and runs the loop until every handle is gone. */
static inline void hub_finish(uv_loop_t *loop, mcp_hub *h)
{
    mcp_hub_close(h);
    uint64_t end = now_ms() + WAIT_MS;
    while (uv_loop_alive(loop) && now_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
    assert_false(uv_loop_alive(loop));
}

static inline mcp_hub *hub_with(uv_loop_t *loop, const char *name, json_t *cfg)
{
    json_t *servers = json_object();
    json_object_set_new(servers, name, cfg);
    cx_error err = {0};
    mcp_hub *h = mcp_hub_new(loop, servers, &err);
    if (!h)
        fail_msg("mcp_hub_new: %s", err.msg);
    json_decref(servers);
    return h;
}

typedef struct watch {
    mcp_hub *hub;
    const char *server;
    const char *state;
    int not_pid;       /* also wait for a pid other than this */
    const char *tool;  /* or wait for this tool to appear */
} watch;

static inline json_t *status_of(mcp_hub *h, const char *server)
{
    json_t *all = mcp_hub_status_json(h, server);
    assert_non_null(all);
    assert_int_equal(json_array_size(all), 1);
    json_t *one = json_incref(json_array_get(all, 0));
    json_decref(all);
    return one;
}

static inline bool watch_holds(void *arg)
{
    watch *w = arg;
    if (w->tool)
        return mcp_hub_tool(w->hub, w->tool) != NULL;
    json_t *st = status_of(w->hub, w->server);
    bool ok = strcmp(json_string_value(json_object_get(st, "state")), w->state) == 0 &&
              (!w->not_pid || json_integer_value(json_object_get(st, "pid")) != w->not_pid);
    json_decref(st);
    return ok;
}

static inline void wait_state(uv_loop_t *loop, mcp_hub *h, const char *server, const char *state,
                              int not_pid, uint64_t ms)
{
    watch w = {.hub = h, .server = server, .state = state, .not_pid = not_pid};
    if (!run_until(loop, watch_holds, &w, ms)) {
        json_t *st = status_of(h, server);
        char *text = json_dumps(st, 0);
        fail_msg("server %s did not become %s: %s", server, state, text);
    }
}

typedef struct outcome {
    int callbacks;
    int code;
    char reason[64];
    char detail[512];
    bool is_error;
    json_t *result;
} outcome;

static inline void on_done(const mcp_result *r, void *arg)
{
    outcome *o = arg;
    o->callbacks++;
    o->code = r->code;
    snprintf(o->reason, sizeof o->reason, "%s", r->reason ? r->reason : "");
    snprintf(o->detail, sizeof o->detail, "%s", r->detail);
    o->is_error = r->is_error;
    json_decref(o->result);
    o->result = r->result ? json_deep_copy(r->result) : NULL;
}

static inline bool outcome_in(void *arg) { return ((outcome *)arg)->callbacks > 0; }

static inline void outcome_clear(outcome *o)
{
    json_decref(o->result);
    memset(o, 0, sizeof *o);
}

/* Calls a tool and waits for the answer; the callback must not run inside
 * mcp_hub_call and must run exactly once. */
static inline void call_wait(uv_loop_t *loop, mcp_hub *h, const char *tool, const char *args,
                             uint64_t timeout_ms, outcome *o)
{
    outcome_clear(o);
    json_t *arguments = args ? json_loads(args, 0, NULL) : NULL;
    cx_error err = {0};
    mcp_call *call = mcp_hub_call(h, tool, arguments, timeout_ms, on_done, o, &err);
    json_decref(arguments);
    if (!call)
        fail_msg("mcp_hub_call(%s): %s", tool, err.msg);
    assert_int_equal(o->callbacks, 0);
    assert_true(run_until(loop, outcome_in, o, WAIT_MS));
    run_for(loop, 20);
    assert_int_equal(o->callbacks, 1);
}

static inline const char *first_text(const outcome *o)
{
    const json_t *content = json_object_get(o->result, "content");
    const char *text = json_string_value(json_object_get(json_array_get(content, 0), "text"));
    return text ? text : "";
}

static inline void expect_text(uv_loop_t *loop, mcp_hub *h, const char *tool, const char *args,
                               const char *want)
{
    outcome o = {0};
    call_wait(loop, h, tool, args, 0, &o);
    if (o.code != 0 || o.reason[0] || !strstr(first_text(&o), want))
        fail_msg("%s: code %d reason '%s' detail '%s' text '%s' (wanted '%s')", tool, o.code,
                 o.reason, o.detail, first_text(&o), want);
    outcome_clear(&o);
}

static inline void expect_failure(uv_loop_t *loop, mcp_hub *h, const char *tool, const char *args,
                                  uint64_t timeout_ms, const char *reason, const char *detail_part)
{
    outcome o = {0};
    call_wait(loop, h, tool, args, timeout_ms, &o);
    if (o.code == 0 || strcmp(o.reason, reason) != 0 ||
        (detail_part && !strstr(o.detail, detail_part)))
        fail_msg("%s: wanted %s (%s), got code %d reason '%s' detail '%s'", tool, reason,
                 detail_part ? detail_part : "", o.code, o.reason, o.detail);
    assert_null(o.result);
    outcome_clear(&o);
}

#endif
