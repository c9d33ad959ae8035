/* The LLM client over a real network path: llm_chat on a real libuv loop
 * against a scripted HTTP/1.1 server on 127.0.0.1 that runs in threads of
 * this test. Each server connection takes the next step of a script (answer,
 * refuse with a status, wait, send too much, send junk, hang up) so retries,
 * timeouts, size limits, cancellation, shutdown and the concurrency limit
 * are checked end to end, and so are each protocol's wire shape (paths,
 * headers, tool calls there and back) and fallback between providers (a
 * second server in the same test). Every wait is bounded; the whole file
 * runs in a few seconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include "http_test_io.h"
#include <uv.h>

#include "core/log.h"
#include "core/util.h"
#include "llm/llm.h"

#define MAX_WORKERS 64
#define REQUEST_MAX (256 * 1024)
#define API_KEY "sk-test-key-0123456789"
#define ANSWER                                                                               \
    "{\"id\":\"c1\",\"object\":\"chat.completion\",\"model\":\"served-model\",\"choices\":"  \
    "[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hello there\"},"        \
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,"   \
    "\"total_tokens\":12}}"

/* ---- The scripted server --------------------------------------------------------------------- */

typedef struct step {
    int status;          /* 0: 200 */
    const char *headers; /* extra header lines ending in \r\n, or NULL */
    const char *body;    /* NULL: ANSWER */
    unsigned delay_ms;   /* wait before answering (ends early if the client leaves) */
    size_t huge;         /* send this many filler bytes as the body */
    bool huge_unsized;   /* ... without a Content-Length */
    bool hang_up;        /* close without answering */
} step;

typedef struct server {
    int fd;
    unsigned port;
    pthread_t acceptor;
    pthread_mutex_t lock;
    const step *steps;
    size_t step_count, next_step;
    pthread_t workers[MAX_WORKERS];
    size_t worker_count;
    int active, max_active, requests;
    char last_request[8192];
    volatile bool stopping;
} server;

typedef struct worker_arg {
    server *srv;
    int fd;
} worker_arg;

static uint64_t now_ms(void) { return time_monotonic_ns() / 1000000u; }

/* Waits ms, or less when the client hangs up; true if it did. */
static bool wait_or_hang_up(int fd, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    for (uint64_t now = now_ms(); now < end; now = now_ms()) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(end - now)) > 0) {
            char c;
            if (recv(fd, &c, 1, 0) <= 0)
                return true;
        }
    }
    return false;
}

static void send_huge(int fd, const step *st)
{
    char head[256];
    if (st->huge_unsized)
        snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                    "Connection: close\r\n\r\n");
    else
        snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n", st->huge);
    http_test_send_all(fd, head, strlen(head));
    static char chunk[65536];
    memset(chunk, ' ', sizeof chunk);
    for (size_t sent = 0; sent < st->huge; sent += sizeof chunk) {
        ssize_t n = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
        if (n <= 0)
            return;
    }
}

static void answer(int fd, const step *st)
{
    const char *body = st->body ? st->body : ANSWER;
    char head[512];
    snprintf(head, sizeof head, "HTTP/1.1 %d Scripted\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
             st->status ? st->status : 200, strlen(body), st->headers ? st->headers : "");
    http_test_send_all(fd, head, strlen(head));
    http_test_send_all(fd, body, strlen(body));
}

static void *worker_main(void *p)
{
    worker_arg *w = p;
    server *srv = w->srv;
    int fd = w->fd;
    free(w);
    char *buf = malloc(REQUEST_MAX);
    size_t len = 0;
    if (!buf || !http_test_read_request(fd, buf, REQUEST_MAX, &len, NULL)) {
        free(buf);
        close(fd);
        return NULL;
    }
    static const step plain = {0};
    pthread_mutex_lock(&srv->lock);
    const step *st = srv->next_step < srv->step_count ? &srv->steps[srv->next_step++] : &plain;
    srv->requests++;
    if (++srv->active > srv->max_active)
        srv->max_active = srv->active;
    snprintf(srv->last_request, sizeof srv->last_request, "%s", buf);
    pthread_mutex_unlock(&srv->lock);
    free(buf);
    bool gone = st->delay_ms && wait_or_hang_up(fd, st->delay_ms);
    pthread_mutex_lock(&srv->lock);
    srv->active--;
    pthread_mutex_unlock(&srv->lock);
    if (!gone && !st->hang_up) {
        if (st->huge)
            send_huge(fd, st);
        else
            answer(fd, st);
    }
    shutdown(fd, SHUT_WR);
    wait_or_hang_up(fd, 200); /* let the client read everything before the close */
    close(fd);
    return NULL;
}

static void *acceptor_main(void *p)
{
    server *srv = p;
    while (!srv->stopping) {
        struct pollfd pfd = {.fd = srv->fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        int fd = accept(srv->fd, NULL, NULL);
        if (fd < 0)
            continue;
        worker_arg *w = malloc(sizeof *w);
        pthread_mutex_lock(&srv->lock);
        bool room = w && srv->worker_count < MAX_WORKERS;
        if (room) {
            w->srv = srv;
            w->fd = fd;
            room = pthread_create(&srv->workers[srv->worker_count], NULL, worker_main, w) == 0;
            if (room)
                srv->worker_count++;
        }
        pthread_mutex_unlock(&srv->lock);
        if (!room) {
            free(w);
            close(fd);
        }
    }
    return NULL;
}

static void server_start(server *srv, const step *steps, size_t count)
{
    memset(srv, 0, sizeof *srv);
    srv->steps = steps;
    srv->step_count = count;
    pthread_mutex_init(&srv->lock, NULL);
    srv->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(srv->fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(srv->fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(srv->fd, 64), 0);
    socklen_t alen = sizeof addr;
    assert_int_equal(getsockname(srv->fd, (struct sockaddr *)&addr, &alen), 0);
    srv->port = ntohs(addr.sin_port);
    assert_int_equal(pthread_create(&srv->acceptor, NULL, acceptor_main, srv), 0);
}

static void server_stop(server *srv)
{
    srv->stopping = true;
    pthread_join(srv->acceptor, NULL);
    for (size_t i = 0; i < srv->worker_count; i++)
        pthread_join(srv->workers[i], NULL);
    close(srv->fd);
    pthread_mutex_destroy(&srv->lock);
}

static int server_count(server *srv, const int *field)
{
    pthread_mutex_lock(&srv->lock);
    int v = *field;
    pthread_mutex_unlock(&srv->lock);
    return v;
}

/* ---- The client side ------------------------------------------------------------------------- */

typedef struct outcome {
    int calls;
    int code;
    char reason[32];
    char detail[512];
    char text[64];
    bool text_null;
    char finish[16];
    char model[32];
    char provider[32];
    uint64_t prompt, completion, elapsed;
    unsigned attempts;
    long status;
    size_t tool_calls;
    char call_id[64], call_name[64], call_args[256], call_message[64]; /* the first call */
    bool call_has_object;
} outcome;

static void copy_text(char *out, size_t size, const char *s)
{
    snprintf(out, size, "%s", s ? s : "");
}

static void on_done(const llm_result *r, void *arg)
{
    outcome *o = arg;
    o->calls++;
    o->code = r->code;
    copy_text(o->reason, sizeof o->reason, r->reason);
    copy_text(o->detail, sizeof o->detail, r->detail);
    copy_text(o->text, sizeof o->text, r->text);
    copy_text(o->finish, sizeof o->finish, r->finish_reason);
    copy_text(o->model, sizeof o->model, r->model);
    o->prompt = r->prompt_tokens;
    o->completion = r->completion_tokens;
    o->elapsed = r->elapsed_ms;
    o->attempts = r->attempts;
    o->status = r->http_status;
    o->text_null = r->text == NULL;
    copy_text(o->provider, sizeof o->provider, r->provider);
    o->tool_calls = r->tool_call_count;
    if (r->tool_call_count > 0) {
        const llm_tool_call *c = &r->tool_calls[0];
        copy_text(o->call_id, sizeof o->call_id, c->id);
        copy_text(o->call_name, sizeof o->call_name, c->name);
        copy_text(o->call_args, sizeof o->call_args, c->arguments_text);
        o->call_has_object = json_is_object(c->arguments);
        copy_text(o->call_message, sizeof o->call_message,
                  json_string_value(json_object_get(c->arguments, "message")));
    }
}

typedef struct fixture {
    uv_loop_t loop;
    uv_timer_t tick; /* wakes uv_run so every wait is bounded */
    server srv;
    llm_client *client;
} fixture;

static void on_tick(uv_timer_t *t) { (void)t; }

static json_t *config_for(unsigned port, const char *timeout, const char *retries,
                          const char *max_concurrency)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1", port);
    return json_pack("{s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s}}", "local", "type", "openai",
                     "base_url", url, "api_key", API_KEY, "model", "test-model", "timeout",
                     timeout, "retries", retries, "max_concurrency", max_concurrency);
}

/* Starts the server and the loop; the client comes from make(port). */
static void fixture_start_with(fixture *f, const step *steps, size_t count,
                               json_t *(*make)(unsigned port, void *arg), void *arg)
{
    memset(f, 0, sizeof *f);
    server_start(&f->srv, steps, count);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, on_tick, 20, 20);
    json_t *cfg = make(f->srv.port, arg);
    cx_error err = {0};
    f->client = llm_client_new(&f->loop, cfg, &err);
    json_decref(cfg);
    if (!f->client)
        fail_msg("llm_client_new: %s", err.msg);
}

typedef struct server_limits {
    const char *timeout, *retries, *max_concurrency;
} server_limits;

static json_t *make_local(unsigned port, void *arg)
{
    const server_limits *l = arg;
    return config_for(port, l->timeout, l->retries, l->max_concurrency);
}

static void fixture_start(fixture *f, const step *steps, size_t count, const char *timeout,
                          const char *retries, const char *max_concurrency)
{
    server_limits l = {timeout, retries, max_concurrency};
    fixture_start_with(f, steps, count, make_local, &l);
}

static void run_until(fixture *f, const int *counter, int want, unsigned max_ms)
{
    uint64_t end = now_ms() + max_ms;
    while (*counter < want && now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static void run_until_requests(fixture *f, int want, unsigned max_ms)
{
    uint64_t end = now_ms() + max_ms;
    while (server_count(&f->srv, &f->srv.requests) < want && now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static void run_for(fixture *f, unsigned ms)
{
    int never = 0;
    run_until(f, &never, 1, ms);
}

/* Closes the client, drains the loop and checks that every handle closed. */
static void fixture_stop(fixture *f)
{
    if (f->client)
        llm_client_close(f->client);
    f->client = NULL;
    uv_close((uv_handle_t *)&f->tick, NULL);
    for (int i = 0; i < 1000 && uv_run(&f->loop, UV_RUN_NOWAIT) != 0; i++)
        usleep(1000);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    server_stop(&f->srv);
}

static const llm_message hello[] = {{.role = LLM_ROLE_SYSTEM, .content = "You are terse."},
                                    {.role = LLM_ROLE_USER, .content = "Say hello"}};

static llm_call *chat(fixture *f, outcome *o)
{
    llm_request req = {.provider = "local", .messages = hello, .message_count = 2,
                       .agent = "tester"};
    cx_error err = {0};
    llm_call *call = llm_chat(f->client, &req, on_done, o, &err);
    if (!call)
        fail_msg("llm_chat: %s", err.msg);
    return call;
}

static json_t *stats_named(fixture *f, const char *name)
{
    json_t *all = llm_client_stats(f->client);
    assert_non_null(all);
    json_t *one = json_incref(json_object_get(all, name));
    json_decref(all);
    assert_non_null(one);
    return one;
}

static json_t *stats_of(fixture *f) { return stats_named(f, "local"); }

static json_int_t stat_of(json_t *s, const char *key)
{
    return json_integer_value(json_object_get(s, key));
}

/* ---- Tests ----------------------------------------------------------------------------------- */

static void test_success(void **state)
{
    (void)state;
    log_set_level(LOG_DEBUG); /* the attempt logs run too (keys never reach them) */
    fixture f;
    fixture_start(&f, NULL, 0, "2s", "0", "4");
    outcome o = {0};
    chat(&f, &o);
    assert_int_equal(o.calls, 0); /* never from inside llm_chat */
    run_until(&f, &o.calls, 1, 3000);
    log_set_level(LOG_ERROR);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.reason, "");
    assert_string_equal(o.text, "hello there");
    assert_string_equal(o.finish, "stop");
    assert_string_equal(o.model, "served-model");
    assert_int_equal(o.prompt, 5);
    assert_int_equal(o.completion, 7);
    assert_int_equal(o.attempts, 1);
    assert_int_equal(o.status, 200);
    const char *req = f.srv.last_request;
    assert_non_null(strstr(req, "POST /v1/chat/completions HTTP/1.1\r\n"));
    assert_non_null(strcasestr(req, "\r\nAuthorization: Bearer " API_KEY "\r\n"));
    assert_non_null(strcasestr(req, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(req, "\"model\":\"test-model\""));
    assert_non_null(strstr(req, "{\"role\":\"user\",\"content\":\"Say hello\"}"));
    assert_null(strstr(req, "temperature"));
    json_t *s = stats_of(&f);
    assert_int_equal(stat_of(s, "requests"), 1);
    assert_int_equal(stat_of(s, "errors"), 0);
    assert_int_equal(stat_of(s, "prompt_tokens"), 5);
    assert_int_equal(stat_of(s, "completion_tokens"), 7);
    assert_int_equal(stat_of(s, "in_flight"), 0);
    assert_true(json_is_null(json_object_get(s, "last_error")));
    assert_string_equal(json_string_value(json_object_get(s, "type")), "openai");
    char *dump = json_dumps(s, 0);
    assert_null(strstr(dump, API_KEY));
    free(dump);
    json_decref(s);
    fixture_stop(&f);
}

static void test_retry_after_429(void **state)
{
    (void)state;
    static const step steps[] = {
        {.status = 429, .headers = "Retry-After: 1\r\n",
         .body = "{\"error\":{\"message\":\"slow down\"}}"},
        {0},
    };
    fixture f;
    fixture_start(&f, steps, 2, "2s", "2", "4");
    outcome o = {0};
    chat(&f, &o);
    run_until(&f, &o.calls, 1, 4000);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.text, "hello there");
    assert_int_equal(o.attempts, 2);
    assert_true(o.elapsed >= 950);
    assert_int_equal(server_count(&f.srv, &f.srv.requests), 2);
    json_t *s = stats_of(&f);
    assert_int_equal(stat_of(s, "retries"), 1);
    assert_int_equal(stat_of(s, "errors"), 0);
    json_decref(s);
    fixture_stop(&f);
}

static void test_rate_limited_to_the_end(void **state)
{
    (void)state;
    static const step steps[] = {{.status = 429, .headers = "Retry-After: 0\r\n"},
                                 {.status = 429, .headers = "Retry-After: 0\r\n"}};
    fixture f;
    fixture_start(&f, steps, 2, "2s", "1", "4");
    outcome o = {0};
    chat(&f, &o);
    run_until(&f, &o.calls, 1, 3000);
    assert_int_equal(o.calls, 1);
    assert_string_equal(o.reason, LLM_REASON_RATE_LIMITED);
    assert_int_equal(o.code, CX_ELIMIT);
    assert_int_equal(o.attempts, 2);
    assert_int_equal(o.status, 429);
    fixture_stop(&f);
}

static void test_server_errors_exhaust_retries(void **state)
{
    (void)state;
    static const step steps[] = {
        {.status = 500, .body = "{\"error\":{\"message\":\"boom " API_KEY "\"}}"},
        {.status = 502, .body = "<html>bad gateway</html>"},
        {.status = 500, .body = "{\"error\":{\"message\":\"boom " API_KEY "\"}}"},
    };
    fixture f;
    fixture_start(&f, steps, 3, "2s", "2", "4");
    outcome o = {0};
    chat(&f, &o);
    run_until(&f, &o.calls, 1, 4000);
    assert_int_equal(o.calls, 1);
    assert_string_equal(o.reason, LLM_REASON_PROVIDER_ERROR);
    assert_int_equal(o.attempts, 3);
    assert_int_equal(o.status, 500);
    assert_non_null(strstr(o.detail, "HTTP 500 from local: \"boom ***\""));
    assert_non_null(strstr(o.detail, "3 attempts"));
    assert_null(strstr(o.detail, API_KEY));
    json_t *s = stats_of(&f);
    assert_int_equal(stat_of(s, "retries"), 2);
    assert_int_equal(stat_of(s, "errors"), 1);
    assert_non_null(strstr(json_string_value(json_object_get(s, "last_error")), "HTTP 500"));
    json_decref(s);
    fixture_stop(&f);
}

static void test_client_errors_are_final(void **state)
{
    (void)state;
    static const step steps[] = {
        {.status = 401, .body = "{\"error\":{\"message\":\"Incorrect API key\\n\\u0007\"}}"},
    };
    fixture f;
    fixture_start(&f, steps, 1, "2s", "3", "4");
    outcome o = {0};
    chat(&f, &o);
    run_until(&f, &o.calls, 1, 3000);
    assert_int_equal(o.calls, 1);
    assert_string_equal(o.reason, LLM_REASON_PROVIDER_ERROR);
    assert_int_equal(o.attempts, 1);
    assert_int_equal(o.status, 401);
    if (!strstr(o.detail, "HTTP 401 from local: \"Incorrect API key\\n\\x07\""))
        fail_msg("detail: %s", o.detail);
    assert_non_null(strstr(o.detail, "api_key"));
    fixture_stop(&f);
}

static void test_timeout(void **state)
{
    (void)state;
    static const step steps[] = {{.delay_ms = 3000}};
    fixture f;
    fixture_start(&f, steps, 1, "1s", "0", "4");
    outcome o = {0};
    chat(&f, &o);
    run_until(&f, &o.calls, 1, 3000);
    assert_int_equal(o.calls, 1);
    assert_string_equal(o.reason, LLM_REASON_TIMEOUT);
    assert_int_equal(o.code, CX_ETIMEOUT);
    assert_int_equal(o.attempts, 1);
    assert_true(o.elapsed >= 950 && o.elapsed < 2500);
    assert_non_null(strstr(o.detail, "within 1000 ms"));
    fixture_stop(&f);
}

static void test_deadline(void **state)
{
    (void)state;
    static const step steps[] = {{.delay_ms = 3000}};
    fixture f;
    fixture_start(&f, steps, 1, "2s", "3", "4");
    outcome o = {0};
    llm_request req = {.provider = "local", .messages = hello, .message_count = 2,
                       .deadline_ms = now_ms() + 300};
    assert_non_null(llm_chat(f.client, &req, on_done, &o, NULL));
    run_until(&f, &o.calls, 1, 3000);
    assert_int_equal(o.calls, 1);
    assert_string_equal(o.reason, LLM_REASON_TIMEOUT);
    assert_int_equal(o.attempts, 1);
    assert_true(o.elapsed >= 250 && o.elapsed < 1500);
    assert_non_null(strstr(o.detail, "before the deadline"));

    /* A deadline already passed: the callback still comes from the loop. */
    outcome late = {0};
    req.deadline_ms = now_ms() - 1;
    assert_non_null(llm_chat(f.client, &req, on_done, &late, NULL));
    assert_int_equal(late.calls, 0);
    run_until(&f, &late.calls, 1, 1000);
    assert_int_equal(late.calls, 1);
    assert_string_equal(late.reason, LLM_REASON_TIMEOUT);
    assert_int_equal(late.attempts, 0);
    fixture_stop(&f);
}

static void test_deadline_while_waiting(void **state)
{
    (void)state;
    static const step steps[] = {{.delay_ms = 600},
                                 {.status = 429, .headers = "Retry-After: 5\r\n"}};
    fixture f;
    fixture_start(&f, steps, 2, "2s", "3", "1");
    /* Queued behind a slow call, the second one passes its deadline there. */
    outcome slow = {0}, queued = {0};
    chat(&f, &slow);
    llm_request req = {.provider = "local", .messages = hello, .message_count = 2,
                       .deadline_ms = now_ms() + 200};
    assert_non_null(llm_chat(f.client, &req, on_done, &queued, NULL));
    run_until(&f, &queued.calls, 1, 2000);
    assert_int_equal(queued.calls, 1);
    assert_string_equal(queued.reason, LLM_REASON_TIMEOUT);
    assert_int_equal(queued.attempts, 0);
    assert_true(queued.elapsed >= 150);
    assert_non_null(strstr(queued.detail, "request slots"));
    assert_int_equal(slow.calls, 0);
    run_until(&f, &slow.calls, 1, 2000);
    assert_int_equal(slow.code, 0);
    /* Told to come back after the deadline: fails now, not later. */
    outcome told = {0};
    req.deadline_ms = now_ms() + 2000;
    assert_non_null(llm_chat(f.client, &req, on_done, &told, NULL));
    run_until(&f, &told.calls, 1, 2000);
    assert_int_equal(told.calls, 1);
    assert_string_equal(told.reason, LLM_REASON_RATE_LIMITED);
    assert_int_equal(told.attempts, 1);
    assert_true(told.elapsed < 1000);
    assert_non_null(strstr(told.detail, "would pass the deadline"));
    fixture_stop(&f);
}

static void test_oversized(void **state)
{
    (void)state;
    static const step steps[] = {
        {.huge = 9u * 1024 * 1024},                      /* announced by Content-Length */
        {.huge = 9u * 1024 * 1024, .huge_unsized = true}, /* found while reading */
    };
    fixture f;
    fixture_start(&f, steps, 2, "5s", "3", "4");
    for (int i = 0; i < 2; i++) {
        outcome o = {0};
        chat(&f, &o);
        run_until(&f, &o.calls, 1, 5000);
        assert_int_equal(o.calls, 1);
        assert_string_equal(o.reason, LLM_REASON_MALFORMED);
        assert_int_equal(o.code, CX_ETOOBIG);
        assert_int_equal(o.attempts, 1);
        assert_non_null(strstr(o.detail, "response over 8 MB"));
    }
    fixture_stop(&f);
}

static void test_malformed_and_empty(void **state)
{
    (void)state;
    static const step steps[] = {
        {.body = "not json"},
        {.body = "{\"choices\":[]}"},
        {.body = "{\"choices\":[{\"message\":{\"content\":null}}]}"},
    };
    static const char *const reasons[] = {LLM_REASON_MALFORMED, LLM_REASON_EMPTY,
                                          LLM_REASON_EMPTY};
    fixture f;
    fixture_start(&f, steps, 3, "2s", "3", "4");
    for (int i = 0; i < 3; i++) {
        outcome o = {0};
        chat(&f, &o);
        run_until(&f, &o.calls, 1, 3000);
        assert_int_equal(o.calls, 1);
        assert_string_equal(o.reason, reasons[i]);
        assert_int_equal(o.attempts, 1);
        assert_int_equal(o.status, 200);
        assert_string_equal(o.text, "");
    }
    fixture_stop(&f);
}

static void test_hang_up(void **state)
{
    (void)state;
    static const step steps[] = {{.hang_up = true}, {.hang_up = true}};
    fixture f;
    fixture_start(&f, steps, 2, "2s", "1", "4");
    outcome o = {0};
    chat(&f, &o);
    run_until(&f, &o.calls, 1, 3000);
    assert_int_equal(o.calls, 1);
    assert_string_equal(o.reason, LLM_REASON_UNREACHABLE);
    assert_int_equal(o.code, CX_ECONNECT);
    assert_int_equal(o.attempts, 2);
    assert_int_equal(o.status, 0);
    fixture_stop(&f);
}

static void test_unreachable(void **state)
{
    (void)state;
    /* A port that was free a moment ago: nothing listens there. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &alen), 0);
    close(fd);
    fixture f;
    fixture_start(&f, NULL, 0, "1s", "1", "4");
    json_t *cfg = config_for(ntohs(addr.sin_port), "1s", "1", "4");
    cx_error err = {0};
    assert_int_equal(llm_client_reconfigure(f.client, cfg, &err), 0);
    json_decref(cfg);
    outcome o = {0};
    chat(&f, &o);
    run_until(&f, &o.calls, 1, 3000);
    assert_int_equal(o.calls, 1);
    assert_string_equal(o.reason, LLM_REASON_UNREACHABLE);
    assert_int_equal(o.attempts, 2);
    assert_non_null(strstr(o.detail, "cannot reach local at http://127.0.0.1:"));
    fixture_stop(&f);
}

static void test_cancel(void **state)
{
    (void)state;
    static const step steps[] = {
        {.delay_ms = 400}, {.delay_ms = 400}, {.status = 503, .headers = "Retry-After: 1\r\n"}};
    fixture f;
    fixture_start(&f, steps, 3, "2s", "3", "1");
    outcome running = {0}, queued = {0}, backing_off = {0}, kept = {0};
    llm_call *a = chat(&f, &running);
    llm_call *b = chat(&f, &queued);
    run_until_requests(&f, 1, 2000);
    json_t *s = stats_of(&f);
    assert_int_equal(stat_of(s, "in_flight"), 1);
    assert_int_equal(stat_of(s, "queued"), 1);
    json_decref(s);
    llm_call_cancel(b); /* waiting in the queue */
    llm_call_cancel(a); /* on the wire */
    s = stats_of(&f);
    assert_int_equal(stat_of(s, "in_flight"), 0);
    assert_int_equal(stat_of(s, "queued"), 0);
    json_decref(s);
    chat(&f, &kept); /* takes the second step */
    run_until(&f, &kept.calls, 1, 3000);
    assert_int_equal(kept.calls, 1);
    assert_int_equal(kept.code, 0);
    /* One cancelled while it waits a second to retry after a 503. */
    llm_call *c = chat(&f, &backing_off);
    run_until_requests(&f, 3, 2000);
    run_for(&f, 100);
    s = stats_of(&f);
    assert_int_equal(stat_of(s, "retries"), 1);
    json_decref(s);
    llm_call_cancel(c);
    run_for(&f, 1200);
    assert_int_equal(server_count(&f.srv, &f.srv.requests), 3);
    assert_int_equal(running.calls, 0);
    assert_int_equal(queued.calls, 0);
    assert_int_equal(backing_off.calls, 0);
    fixture_stop(&f);
}

typedef struct closing_ctx {
    llm_client *client;
    int calls;
    int refused;
    char reason[32];
} closing_ctx;

static void on_shutdown(const llm_result *r, void *arg)
{
    closing_ctx *ctx = arg;
    ctx->calls++;
    copy_text(ctx->reason, sizeof ctx->reason, r->reason);
    llm_request req = {.provider = "local", .messages = hello, .message_count = 2};
    cx_error err = {0};
    if (!llm_chat(ctx->client, &req, on_done, NULL, &err) && err.code == CX_EUNAVAIL)
        ctx->refused++;
}

static void test_close_with_calls_in_flight(void **state)
{
    (void)state;
    static const step steps[] = {{.delay_ms = 2000}, {.delay_ms = 2000}, {.delay_ms = 2000}};
    fixture f;
    fixture_start(&f, steps, 3, "5s", "3", "2");
    closing_ctx ctx = {.client = f.client};
    llm_request req = {.provider = "local", .messages = hello, .message_count = 2};
    for (int i = 0; i < 3; i++) /* two on the wire, one queued */
        assert_non_null(llm_chat(f.client, &req, on_shutdown, &ctx, NULL));
    run_until_requests(&f, 2, 2000);
    uint64_t started = now_ms();
    llm_client_close(f.client);
    cx_error err = {0};
    assert_null(llm_chat(f.client, &req, on_shutdown, &ctx, &err));
    assert_int_equal(err.code, CX_EUNAVAIL);
    assert_int_equal(ctx.calls, 0); /* on the next loop turn */
    f.client = NULL;
    run_until(&f, &ctx.calls, 3, 2000);
    assert_int_equal(ctx.calls, 3);
    assert_int_equal(ctx.refused, 3);
    assert_string_equal(ctx.reason, LLM_REASON_SHUTDOWN);
    assert_true(now_ms() - started < 1000);
    fixture_stop(&f);
}

static void test_concurrency_limit(void **state)
{
    (void)state;
    static const step steps[] = {{.delay_ms = 150}, {.delay_ms = 150}, {.delay_ms = 150}};
    static const char *const limits[] = {"1", "3"};
    for (int round = 0; round < 2; round++) {
        fixture f;
        fixture_start(&f, steps, 3, "2s", "0", limits[round]);
        outcome o[3] = {{0}};
        int done = 0;
        for (int i = 0; i < 3; i++)
            chat(&f, &o[i]);
        uint64_t end = now_ms() + 3000;
        while (done < 3 && now_ms() < end) {
            uv_run(&f.loop, UV_RUN_ONCE);
            done = o[0].calls + o[1].calls + o[2].calls;
        }
        assert_int_equal(done, 3);
        for (int i = 0; i < 3; i++)
            assert_string_equal(o[i].text, "hello there");
        /* In order, one at a time; or all three at once. */
        if (round == 0)
            assert_true(o[0].elapsed < o[1].elapsed && o[1].elapsed < o[2].elapsed);
        assert_int_equal(server_count(&f.srv, &f.srv.max_active), round == 0 ? 1 : 3);
        fixture_stop(&f);
    }
}

typedef struct chain_ctx {
    fixture *f;
    llm_call *victim;
    outcome next;
    int calls;
} chain_ctx;

static void on_chain(const llm_result *r, void *arg)
{
    chain_ctx *ctx = arg;
    ctx->calls++;
    assert_int_equal(r->code, 0);
    llm_call_cancel(ctx->victim); /* another call, still waiting */
    ctx->victim = NULL;
    chat(ctx->f, &ctx->next); /* and a new one from inside the callback */
}

static void test_reentrant_callback(void **state)
{
    (void)state;
    static const step steps[] = {{0}, {.delay_ms = 200}};
    fixture f;
    fixture_start(&f, steps, 2, "2s", "0", "1");
    chain_ctx ctx = {.f = &f};
    outcome victim = {0};
    llm_request req = {.provider = "local", .messages = hello, .message_count = 2};
    assert_non_null(llm_chat(f.client, &req, on_chain, &ctx, NULL));
    ctx.victim = chat(&f, &victim);
    run_until(&f, &ctx.next.calls, 1, 3000);
    assert_int_equal(ctx.calls, 1);
    assert_int_equal(ctx.next.calls, 1);
    assert_string_equal(ctx.next.text, "hello there");
    assert_int_equal(victim.calls, 0);
    fixture_stop(&f);
}

static void test_refused_at_the_door(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, NULL, 0, "2s", "0", "1");
    outcome o = {0};
    cx_error err = {0};
    llm_request req = {.provider = "lokal", .messages = hello, .message_count = 2};
    assert_null(llm_chat(f.client, &req, on_done, &o, &err));
    assert_int_equal(err.code, CX_ENOTFOUND);
    assert_non_null(strstr(err.msg, "did you mean 'local'"));

    /* No provider named: the only one is used. */
    req.provider = NULL;
    assert_non_null(llm_chat(f.client, &req, on_done, &o, &err));
    run_until(&f, &o.calls, 1, 3000);
    assert_int_equal(o.code, 0);

    llm_message bad_role[] = {{.role = (llm_role)7, .content = "x"}};
    llm_message latin1[] = {{.role = LLM_ROLE_USER, .content = "caf\xe9"}};
    llm_request bad[] = {
        {.provider = "local", .messages = hello, .message_count = 0},
        {.provider = "local", .messages = bad_role, .message_count = 1},
        {.provider = "local", .messages = latin1, .message_count = 1},
        {.provider = "local", .messages = hello, .message_count = 2, .temperature_set = true,
         .temperature = 3.0},
        {.provider = "local", .messages = hello, .message_count = 2, .max_tokens = -1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err.code = 0;
        assert_null(llm_chat(f.client, &bad[i], on_done, &o, &err));
        assert_int_equal(err.code, CX_EINVAL);
    }

    /* A provider without a model and a request naming none. */
    json_t *cfg = json_pack("{s:{s:s, s:s}}", "bare", "type", "openai", "base_url",
                            "http://127.0.0.1:1/v1");
    assert_int_equal(llm_client_reconfigure(f.client, cfg, &err), 0);
    json_decref(cfg);
    req.provider = "bare";
    assert_null(llm_chat(f.client, &req, on_done, &o, &err));
    assert_int_equal(err.code, CX_EINVAL);
    assert_non_null(strstr(err.msg, "llm.providers.bare.model"));
    assert_true(llm_client_has_provider(f.client, "bare"));
    assert_false(llm_client_has_provider(f.client, "local"));
    const char *names[4];
    assert_int_equal(llm_client_providers(f.client, names, 4), 1);
    assert_string_equal(names[0], "bare");

    /* An invalid reconfigure keeps the old settings. */
    cfg = json_pack("{s:{s:s, s:s}}", "bare", "type", "openai", "retries", "lots");
    assert_int_equal(llm_client_reconfigure(f.client, cfg, &err), CX_ECONFIG);
    assert_non_null(strstr(err.msg, "llm.providers.bare.retries"));
    json_decref(cfg);
    assert_true(llm_client_has_provider(f.client, "bare"));
    assert_int_equal(o.calls, 1);

    cfg = json_pack("{s:{s:s, s:[s]}}", "x", "type", "anthropic", "fallback", "x");
    assert_null(llm_client_new(&f.loop, cfg, &err));
    assert_int_equal(err.code, CX_ECONFIG);
    assert_non_null(strstr(err.msg, "llm.providers.x.fallback: 'x' is this provider itself"));
    json_decref(cfg);
    fixture_stop(&f);
}

static void test_reconfigure_keeps_calls(void **state)
{
    (void)state;
    static const step steps[] = {{.delay_ms = 300}, {0}};
    fixture f;
    fixture_start(&f, steps, 2, "2s", "0", "4");
    outcome first = {0}, second = {0};
    chat(&f, &first);
    run_until_requests(&f, 1, 2000);
    /* The name goes away while its call is on the wire; the call finishes. */
    json_t *cfg = json_pack("{s:{s:s, s:s}}", "other", "type", "openai", "base_url",
                            "http://127.0.0.1:1/v1");
    cx_error err = {0};
    assert_int_equal(llm_client_reconfigure(f.client, cfg, &err), 0);
    json_decref(cfg);
    run_until(&f, &first.calls, 1, 3000);
    if (first.code != 0)
        fail_msg("first: %s: %s", first.reason, first.detail);
    /* And back, with the same name. */
    cfg = config_for(f.srv.port, "2s", "0", "4");
    assert_int_equal(llm_client_reconfigure(f.client, cfg, &err), 0);
    json_decref(cfg);
    chat(&f, &second);
    run_until(&f, &second.calls, 1, 3000);
    assert_int_equal(second.code, 0);
    fixture_stop(&f);
}

/* ---- Tools, protocols and fallback ----------------------------------------------------------- */

#define TOOL_CALL_ANSWER                                                                       \
    "{\"model\":\"served-model\",\"choices\":[{\"index\":0,\"message\":{\"role\":"              \
    "\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_echo_1\",\"type\":"         \
    "\"function\",\"function\":{\"name\":\"everything__echo\",\"arguments\":"                  \
    "\"{\\\"message\\\":\\\"hi\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}],\"usage\":"        \
    "{\"prompt_tokens\":11,\"completion_tokens\":3}}"

static void test_tool_call_round_trip(void **state)
{
    (void)state;
    static const step steps[] = {{.body = TOOL_CALL_ANSWER}, {0}};
    fixture f;
    fixture_start(&f, steps, 2, "2s", "0", "4");
    json_t *schema = json_pack("{s:s, s:{s:{s:s}}, s:[s]}", "type", "object", "properties",
                               "message", "type", "string", "required", "message");
    llm_tool tools[] = {{.name = "everything__echo", .description = "Echoes back the input",
                         .input_schema = schema}};
    llm_request req = {.provider = "local", .messages = hello, .message_count = 2,
                       .tools = tools, .tool_count = 1};
    outcome asked = {0};
    assert_non_null(llm_chat(f.client, &req, on_done, &asked, NULL));
    run_until(&f, &asked.calls, 1, 3000);
    assert_int_equal(asked.calls, 1);
    if (asked.code != 0)
        fail_msg("%s: %s", asked.reason, asked.detail);
    assert_true(asked.text_null);
    assert_string_equal(asked.finish, "tool_calls");
    assert_string_equal(asked.provider, "local");
    assert_int_equal(asked.tool_calls, 1);
    assert_string_equal(asked.call_id, "call_echo_1");
    assert_string_equal(asked.call_name, "everything__echo");
    assert_string_equal(asked.call_args, "{\"message\":\"hi\"}");
    assert_true(asked.call_has_object);
    assert_string_equal(asked.call_message, "hi");
    assert_int_equal(asked.prompt, 11);
    assert_non_null(strstr(f.srv.last_request,
                           "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
                           "\"everything__echo\",\"description\":\"Echoes back the input\","
                           "\"parameters\":{"));

    /* The result goes back with the call it answers. */
    llm_tool_call call = {.id = asked.call_id, .name = asked.call_name,
                          .arguments_text = asked.call_args};
    llm_message turn[] = {
        hello[0],
        hello[1],
        {.role = LLM_ROLE_ASSISTANT, .tool_calls = &call, .tool_call_count = 1},
        {.role = LLM_ROLE_TOOL, .content = "Echo: hi", .tool_call_id = asked.call_id,
         .tool_name = asked.call_name},
    };
    req.messages = turn;
    req.message_count = 4;
    outcome answered = {0};
    assert_non_null(llm_chat(f.client, &req, on_done, &answered, NULL));
    run_until(&f, &answered.calls, 1, 3000);
    assert_int_equal(answered.code, 0);
    assert_string_equal(answered.text, "hello there");
    assert_int_equal(answered.tool_calls, 0);
    const char *sent = f.srv.last_request;
    assert_non_null(strstr(sent, "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
                                 "\"call_echo_1\",\"type\":\"function\",\"function\":{\"name\":"
                                 "\"everything__echo\",\"arguments\":\"{\\\"message\\\":"
                                 "\\\"hi\\\"}\"}}]}"));
    assert_non_null(strstr(sent, "{\"role\":\"tool\",\"tool_call_id\":\"call_echo_1\","
                                 "\"content\":\"Echo: hi\"}"));
    json_decref(schema);
    fixture_stop(&f);
}

static void test_refused_tool_requests(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, NULL, 0, "2s", "0", "1");
    json_t *list = json_array();
    llm_tool good = {.name = "echo"};
    llm_tool dotted = {.name = "files.read"};
    llm_tool listed = {.name = "x", .input_schema = list};
    llm_tool latin1 = {.name = "x", .description = "caf\xe9"};
    llm_tool twice[] = {{.name = "a"}, {.name = "a"}};
    llm_tool_call no_id = {.name = "echo"};
    llm_tool_call bad_args = {.id = "c", .name = "echo", .arguments = list};
    llm_message tool_without_id[] = {{.role = LLM_ROLE_USER, .content = "x"},
                                     {.role = LLM_ROLE_TOOL, .content = "r"}};
    llm_message call_without_id[] = {
        {.role = LLM_ROLE_ASSISTANT, .tool_calls = &no_id, .tool_call_count = 1}};
    llm_message call_bad_args[] = {
        {.role = LLM_ROLE_ASSISTANT, .tool_calls = &bad_args, .tool_call_count = 1}};
    llm_message user_with_calls[] = {
        {.role = LLM_ROLE_USER, .content = "x", .tool_calls = &bad_args, .tool_call_count = 1}};
    llm_message empty_assistant[] = {{.role = LLM_ROLE_ASSISTANT}};
    llm_request bad[] = {
        {.provider = "local", .messages = hello, .message_count = 2, .tools = &dotted,
         .tool_count = 1},
        {.provider = "local", .messages = hello, .message_count = 2, .tools = &listed,
         .tool_count = 1},
        {.provider = "local", .messages = hello, .message_count = 2, .tools = &latin1,
         .tool_count = 1},
        {.provider = "local", .messages = hello, .message_count = 2, .tools = twice,
         .tool_count = 2},
        {.provider = "local", .messages = hello, .message_count = 2, .tools = NULL,
         .tool_count = 1},
        {.provider = "local", .messages = hello, .message_count = 2, .tools = &good,
         .tool_count = 257},
        {.provider = "local", .messages = tool_without_id, .message_count = 2},
        {.provider = "local", .messages = call_without_id, .message_count = 1},
        {.provider = "local", .messages = call_bad_args, .message_count = 1},
        {.provider = "local", .messages = user_with_calls, .message_count = 1},
        {.provider = "local", .messages = empty_assistant, .message_count = 1},
    };
    outcome o = {0};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cx_error err = {0};
        if (llm_chat(f.client, &bad[i], on_done, &o, &err))
            fail_msg("request %zu was accepted", i);
        assert_int_equal(err.code, CX_EINVAL);
    }
    run_for(&f, 50);
    assert_int_equal(o.calls, 0);
    assert_int_equal(server_count(&f.srv, &f.srv.requests), 0);
    json_decref(list);
    fixture_stop(&f);
}

#define ANTHROPIC_ANSWER                                                                       \
    "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-served\"," \
    "\"content\":[{\"type\":\"text\",\"text\":\"Checking.\"},{\"type\":\"tool_use\",\"id\":"     \
    "\"toolu_01\",\"name\":\"everything__echo\",\"input\":{\"message\":\"hi\"}}],"             \
    "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":20,\"output_tokens\":8}}"

static json_t *make_claude(unsigned port, void *arg)
{
    (void)arg;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", port);
    return json_pack("{s:{s:s, s:s, s:s, s:s, s:s, s:s}}", "claude", "type", "anthropic",
                     "base_url", url, "api_key", API_KEY, "model", "claude-test", "timeout", "2s",
                     "retries", "1");
}

static void test_anthropic_wire(void **state)
{
    (void)state;
    static const step steps[] = {
        {.status = 529, .body = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                                "\"message\":\"Overloaded\"}}"},
        {.body = ANTHROPIC_ANSWER},
        {.status = 401, .body = "{\"type\":\"error\",\"error\":{\"type\":"
                                "\"authentication_error\",\"message\":\"invalid x-api-key "
                                API_KEY "\"}}"},
    };
    fixture f;
    fixture_start_with(&f, steps, 3, make_claude, NULL);
    llm_request req = {.provider = "claude", .messages = hello, .message_count = 2};
    outcome o = {0};
    assert_non_null(llm_chat(f.client, &req, on_done, &o, NULL));
    run_until(&f, &o.calls, 1, 4000);
    if (o.code != 0)
        fail_msg("%s: %s", o.reason, o.detail);
    assert_int_equal(o.attempts, 2); /* 529 is retried */
    assert_string_equal(o.provider, "claude");
    assert_string_equal(o.text, "Checking.");
    assert_string_equal(o.finish, "tool_calls");
    assert_string_equal(o.model, "claude-served");
    assert_int_equal(o.prompt, 20);
    assert_int_equal(o.completion, 8);
    assert_int_equal(o.tool_calls, 1);
    assert_string_equal(o.call_id, "toolu_01");
    assert_string_equal(o.call_message, "hi");
    const char *sent = f.srv.last_request;
    assert_non_null(strstr(sent, "POST /v1/messages HTTP/1.1\r\n"));
    assert_non_null(strcasestr(sent, "\r\nx-api-key: " API_KEY "\r\n"));
    assert_non_null(strcasestr(sent, "\r\nanthropic-version: 2023-06-01\r\n"));
    assert_null(strcasestr(sent, "\r\nAuthorization:"));
    assert_non_null(strstr(sent, "\"model\":\"claude-test\",\"max_tokens\":1024"));
    assert_non_null(strstr(sent, "\"system\":\"You are terse.\""));
    assert_non_null(strstr(sent, "\"messages\":[{\"role\":\"user\",\"content\":\"Say hello\"}]"));

    /* Refused: Anthropic's error type and message, the key redacted. */
    outcome denied = {0};
    assert_non_null(llm_chat(f.client, &req, on_done, &denied, NULL));
    run_until(&f, &denied.calls, 1, 3000);
    assert_string_equal(denied.reason, LLM_REASON_PROVIDER_ERROR);
    assert_int_equal(denied.status, 401);
    if (!strstr(denied.detail, "HTTP 401 from claude: \"authentication_error: invalid "
                               "x-api-key ***\""))
        fail_msg("detail: %s", denied.detail);
    json_t *s = stats_named(&f, "claude");
    assert_string_equal(json_string_value(json_object_get(s, "type")), "anthropic");
    assert_int_equal(stat_of(s, "retries"), 1);
    assert_int_equal(stat_of(s, "prompt_tokens"), 20);
    json_decref(s);
    fixture_stop(&f);
}

#define OLLAMA_ANSWER                                                                          \
    "{\"model\":\"llama-served\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":{\"role\":" \
    "\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":"                   \
    "\"everything__echo\",\"arguments\":{\"message\":\"hi\"}}}]},\"done\":true,"              \
    "\"done_reason\":\"stop\",\"prompt_eval_count\":30,\"eval_count\":6}"

static json_t *make_ollama(unsigned port, void *arg)
{
    (void)arg;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", port);
    return json_pack("{s:{s:s, s:s, s:s, s:s}}", "llama", "type", "ollama", "base_url", url,
                     "model", "llama3.1", "retries", "0");
}

static void test_ollama_wire(void **state)
{
    (void)state;
    static const step steps[] = {
        {.body = OLLAMA_ANSWER},
        {.status = 404, .body = "{\"error\":\"model \\\"llama3.1\\\" not found, try pulling it "
                                "first\"}"},
    };
    fixture f;
    fixture_start_with(&f, steps, 2, make_ollama, NULL);
    llm_request req = {.provider = "llama", .messages = hello, .message_count = 2,
                       .temperature_set = true, .temperature = 0.25, .max_tokens = 50};
    outcome o = {0};
    assert_non_null(llm_chat(f.client, &req, on_done, &o, NULL));
    run_until(&f, &o.calls, 1, 3000);
    if (o.code != 0)
        fail_msg("%s: %s", o.reason, o.detail);
    assert_string_equal(o.provider, "llama");
    assert_true(o.text_null);
    assert_string_equal(o.finish, "tool_calls");
    assert_int_equal(o.prompt, 30);
    assert_int_equal(o.completion, 6);
    assert_int_equal(o.tool_calls, 1);
    assert_true(strncmp(o.call_id, "call_", 5) == 0); /* Ollama gives none: made here */
    assert_string_equal(o.call_args, "{\"message\":\"hi\"}");
    const char *sent = f.srv.last_request;
    assert_non_null(strstr(sent, "POST /api/chat HTTP/1.1\r\n"));
    assert_null(strcasestr(sent, "\r\nAuthorization:"));
    assert_non_null(strstr(sent, "\"model\":\"llama3.1\""));
    assert_non_null(strstr(sent, "\"stream\":false"));
    assert_non_null(strstr(sent, "\"options\":{\"temperature\":0.25,\"num_predict\":50}"));

    outcome missing = {0};
    assert_non_null(llm_chat(f.client, &req, on_done, &missing, NULL));
    run_until(&f, &missing.calls, 1, 3000);
    assert_string_equal(missing.reason, LLM_REASON_PROVIDER_ERROR);
    assert_non_null(strstr(missing.detail, "HTTP 404 from llama: \"model \\\"llama3.1\\\" not "
                                           "found"));
    assert_non_null(strstr(missing.detail, "check base_url and the model name"));
    fixture_stop(&f);
}

/* Two providers: `first` (OpenAI, on the fixture's server) falls back to
 * `second` (on another server, of the type given), then maybe `third`. */
typedef struct pair {
    unsigned second_port, third_port;
    const char *second_type;
    const char *first_timeout;
} pair;

static json_t *make_pair(unsigned port, void *arg)
{
    const pair *pr = arg;
    char first[64], second[64], third[64];
    snprintf(first, sizeof first, "http://127.0.0.1:%u/v1", port);
    bool openai = strcmp(pr->second_type, "openai") == 0;
    snprintf(second, sizeof second, "http://127.0.0.1:%u%s", pr->second_port, openai ? "/v1" : "");
    snprintf(third, sizeof third, "http://127.0.0.1:%u/v1", pr->third_port);
    json_t *cfg = json_pack(
        "{s:{s:s, s:s, s:s, s:s, s:s, s:s, s:[s]}, s:{s:s, s:s, s:s, s:s, s:s, s:s}}", "first",
        "type", "openai", "base_url", first, "api_key", API_KEY, "model", "first-model",
        "timeout", pr->first_timeout ? pr->first_timeout : "2s", "retries", "0", "fallback",
        "second", "second", "type", pr->second_type, "base_url", second, "api_key",
        "sk-second-key-0123456789", "model", "second-model", "timeout", "2s", "retries", "0");
    if (pr->third_port) {
        json_object_set_new(json_object_get(cfg, "second"), "fallback", json_pack("[s]", "third"));
        json_object_set_new(cfg, "third", json_pack("{s:s, s:s, s:s, s:s}", "type", "openai",
                                                    "base_url", third, "model", "third-model",
                                                    "retries", "0"));
    }
    return cfg;
}

static unsigned closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &alen), 0);
    close(fd);
    return ntohs(addr.sin_port);
}

static void test_fallback_answers(void **state)
{
    (void)state;
    static const step down[] = {{.status = 500, .body = "{\"error\":{\"message\":\"down\"}}"}};
    static const step claude[] = {{.body = ANTHROPIC_ANSWER}};
    server other;
    server_start(&other, claude, 1);
    pair pr = {.second_port = other.port, .second_type = "anthropic"};
    fixture f;
    fixture_start_with(&f, down, 1, make_pair, &pr);
    /* The agent's model is the first provider's; the fallback uses its own. */
    llm_request req = {.provider = "first", .model = "agent-model", .messages = hello,
                       .message_count = 2, .deadline_ms = now_ms() + 5000};
    outcome o = {0};
    assert_non_null(llm_chat(f.client, &req, on_done, &o, NULL));
    run_until(&f, &o.calls, 1, 4000);
    assert_int_equal(o.calls, 1);
    if (o.code != 0)
        fail_msg("%s: %s", o.reason, o.detail);
    assert_string_equal(o.provider, "second");
    assert_string_equal(o.text, "Checking.");
    assert_int_equal(o.attempts, 2);
    assert_int_equal(o.status, 200);
    assert_non_null(strstr(f.srv.last_request, "\"model\":\"agent-model\""));
    assert_non_null(strstr(other.last_request, "POST /v1/messages HTTP/1.1\r\n"));
    assert_non_null(strstr(other.last_request, "\"model\":\"second-model\""));
    assert_non_null(strcasestr(other.last_request, "\r\nx-api-key: sk-second-key-0123456789"));
    assert_null(strstr(other.last_request, API_KEY)); /* each provider gets its own key */
    json_t *s = stats_named(&f, "first");
    assert_int_equal(stat_of(s, "requests"), 1);
    assert_int_equal(stat_of(s, "errors"), 1);
    assert_int_equal(stat_of(s, "fallbacks"), 1);
    assert_int_equal(stat_of(s, "in_flight"), 0);
    assert_non_null(strstr(json_string_value(json_object_get(s, "last_error")),
                           "provider-error: HTTP 500 from first: \"down\""));
    json_decref(s);
    s = stats_named(&f, "second");
    assert_int_equal(stat_of(s, "requests"), 1);
    assert_int_equal(stat_of(s, "errors"), 0);
    assert_int_equal(stat_of(s, "fallbacks"), 0);
    assert_int_equal(stat_of(s, "prompt_tokens"), 20);
    json_decref(s);
    fixture_stop(&f);
    server_stop(&other);
}

static void test_fallback_all_down(void **state)
{
    (void)state;
    static const step down[] = {{.status = 503}, {.status = 502}};
    static const step also_down[] = {{.status = 500}};
    /* first -> second (nothing listens) */
    pair pr = {.second_port = closed_port(), .second_type = "openai"};
    fixture f;
    fixture_start_with(&f, down, 2, make_pair, &pr);
    llm_request req = {.provider = "first", .messages = hello, .message_count = 2};
    outcome o = {0};
    assert_non_null(llm_chat(f.client, &req, on_done, &o, NULL));
    run_until(&f, &o.calls, 1, 4000);
    assert_int_equal(o.calls, 1);
    assert_string_equal(o.reason, LLM_REASON_UNREACHABLE); /* the last one's reason */
    assert_int_equal(o.code, CX_ECONNECT);
    assert_string_equal(o.provider, "second");
    assert_int_equal(o.attempts, 2);
    assert_int_equal(o.status, 0);
    if (!strstr(o.detail, "cannot reach second") ||
        !strstr(o.detail, "(after fallback from first: provider-error)"))
        fail_msg("detail: %s", o.detail);
    json_t *s = stats_named(&f, "second");
    assert_int_equal(stat_of(s, "errors"), 1);
    assert_int_equal(stat_of(s, "fallbacks"), 0);
    json_decref(s);
    fixture_stop(&f);

    /* first -> second -> third: followed through, in order. */
    server other, third;
    server_start(&other, also_down, 1);
    server_start(&third, NULL, 0);
    pr = (pair){.second_port = other.port, .second_type = "openai", .third_port = third.port};
    fixture_start_with(&f, down, 2, make_pair, &pr);
    outcome chained = {0};
    assert_non_null(llm_chat(f.client, &req, on_done, &chained, NULL));
    run_until(&f, &chained.calls, 1, 4000);
    if (chained.code != 0)
        fail_msg("%s: %s", chained.reason, chained.detail);
    assert_string_equal(chained.provider, "third");
    assert_int_equal(chained.attempts, 3);
    assert_non_null(strstr(third.last_request, "\"model\":\"third-model\""));
    s = stats_named(&f, "second");
    assert_int_equal(stat_of(s, "fallbacks"), 1);
    json_decref(s);
    fixture_stop(&f);
    server_stop(&other);
    server_stop(&third);
}

static void test_no_fallback(void **state)
{
    (void)state;
    static const step steps[] = {
        {.status = 401, .body = "{\"error\":{\"message\":\"bad key\"}}"},
        {.status = 400, .body = "{\"error\":{\"message\":\"bad request\"}}"},
        {.body = "not json"},
        {.body = "{\"choices\":[]}"},
        {.delay_ms = 2000},
    };
    server other;
    server_start(&other, NULL, 0);
    pair pr = {.second_port = other.port, .second_type = "openai"};
    fixture f;
    fixture_start_with(&f, steps, 5, make_pair, &pr);
    static const char *const reasons[] = {LLM_REASON_PROVIDER_ERROR, LLM_REASON_PROVIDER_ERROR,
                                          LLM_REASON_MALFORMED, LLM_REASON_EMPTY,
                                          LLM_REASON_TIMEOUT};
    for (int i = 0; i < 5; i++) {
        /* the last one runs into the caller's deadline, not the provider's timeout */
        llm_request req = {.provider = "first", .messages = hello, .message_count = 2,
                           .deadline_ms = i == 4 ? now_ms() + 300 : 0};
        outcome o = {0};
        assert_non_null(llm_chat(f.client, &req, on_done, &o, NULL));
        run_until(&f, &o.calls, 1, 3000);
        assert_int_equal(o.calls, 1);
        assert_string_equal(o.reason, reasons[i]);
        assert_string_equal(o.provider, "first");
        assert_int_equal(o.attempts, 1);
        assert_null(strstr(o.detail, "fallback"));
    }
    assert_int_equal(server_count(&other, &other.requests), 0);
    json_t *s = stats_named(&f, "first");
    assert_int_equal(stat_of(s, "fallbacks"), 0);
    assert_int_equal(stat_of(s, "errors"), 5);
    json_decref(s);
    fixture_stop(&f);
    server_stop(&other);
}

static void test_fallback_on_rate_limit_and_timeout(void **state)
{
    (void)state;
    static const step steps[] = {
        {.status = 429, .headers = "Retry-After: 30\r\n"},
        {.delay_ms = 3000},
    };
    server other;
    server_start(&other, NULL, 0);
    pair pr = {.second_port = other.port, .second_type = "openai", .first_timeout = "1s"};
    fixture f;
    fixture_start_with(&f, steps, 2, make_pair, &pr);
    /* Told to come back after the deadline: the fallback answers now. */
    llm_request req = {.provider = "first", .messages = hello, .message_count = 2,
                       .deadline_ms = now_ms() + 5000};
    outcome limited = {0};
    assert_non_null(llm_chat(f.client, &req, on_done, &limited, NULL));
    run_until(&f, &limited.calls, 1, 3000);
    if (limited.code != 0)
        fail_msg("%s: %s", limited.reason, limited.detail);
    assert_string_equal(limited.provider, "second");
    assert_true(limited.elapsed < 1000);
    /* The first provider's own timeout (not the caller's deadline). */
    outcome slow = {0};
    req.deadline_ms = now_ms() + 5000;
    assert_non_null(llm_chat(f.client, &req, on_done, &slow, NULL));
    run_until(&f, &slow.calls, 1, 4000);
    if (slow.code != 0)
        fail_msg("%s: %s", slow.reason, slow.detail);
    assert_string_equal(slow.provider, "second");
    assert_true(slow.elapsed >= 950 && slow.elapsed < 2500);
    json_t *s = stats_named(&f, "first");
    assert_int_equal(stat_of(s, "fallbacks"), 2);
    assert_non_null(strstr(json_string_value(json_object_get(s, "last_error")),
                           "timeout: no answer from first within 1000 ms"));
    json_decref(s);
    assert_int_equal(server_count(&other, &other.requests), 2);
    fixture_stop(&f);
    server_stop(&other);
}

static void test_fallback_cancel_and_close(void **state)
{
    (void)state;
    static const step steps[] = {{.status = 500}, {.status = 500}};
    static const step slow[] = {{.delay_ms = 1500}, {.delay_ms = 1500}};
    server other;
    server_start(&other, slow, 2);
    pair pr = {.second_port = other.port, .second_type = "openai"};
    fixture f;
    fixture_start_with(&f, steps, 2, make_pair, &pr);
    llm_request req = {.provider = "first", .messages = hello, .message_count = 2};
    outcome cancelled = {0};
    llm_call *call = llm_chat(f.client, &req, on_done, &cancelled, NULL);
    assert_non_null(call);
    uint64_t end = now_ms() + 2000;
    while (server_count(&other, &other.requests) < 1 && now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    json_t *s = stats_named(&f, "second");
    assert_int_equal(stat_of(s, "in_flight"), 1);
    json_decref(s);
    llm_call_cancel(call); /* on the fallback's wire */
    s = stats_named(&f, "second");
    assert_int_equal(stat_of(s, "in_flight"), 0);
    json_decref(s);
    /* One on the fallback when the client closes: shutting-down, once. */
    outcome closed = {0};
    assert_non_null(llm_chat(f.client, &req, on_done, &closed, NULL));
    end = now_ms() + 2000;
    while (server_count(&other, &other.requests) < 2 && now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    llm_client_close(f.client);
    f.client = NULL;
    run_until(&f, &closed.calls, 1, 1000);
    assert_int_equal(closed.calls, 1);
    assert_string_equal(closed.reason, LLM_REASON_SHUTDOWN);
    assert_string_equal(closed.provider, "second");
    run_for(&f, 100);
    assert_int_equal(cancelled.calls, 0);
    assert_int_equal(closed.calls, 1);
    fixture_stop(&f);
    server_stop(&other);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success),
        cmocka_unit_test(test_retry_after_429),
        cmocka_unit_test(test_rate_limited_to_the_end),
        cmocka_unit_test(test_server_errors_exhaust_retries),
        cmocka_unit_test(test_client_errors_are_final),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_deadline_while_waiting),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_malformed_and_empty),
        cmocka_unit_test(test_hang_up),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_close_with_calls_in_flight),
        cmocka_unit_test(test_concurrency_limit),
        cmocka_unit_test(test_reentrant_callback),
        cmocka_unit_test(test_refused_at_the_door),
        cmocka_unit_test(test_reconfigure_keeps_calls),
        cmocka_unit_test(test_tool_call_round_trip),
        cmocka_unit_test(test_refused_tool_requests),
        cmocka_unit_test(test_anthropic_wire),
        cmocka_unit_test(test_ollama_wire),
        cmocka_unit_test(test_fallback_answers),
        cmocka_unit_test(test_fallback_all_down),
        cmocka_unit_test(test_no_fallback),
        cmocka_unit_test(test_fallback_on_rate_limit_and_timeout),
        cmocka_unit_test(test_fallback_cancel_and_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
