/* Remote embeddings end to end on a real libuv loop against a scripted
 * embeddings server on 127.0.0.1 (embed_server.h): llm_embed on the wire
 * (paths, auth, order by index, retries, refusals, deadlines), the embedder
 * layer (configuration checks, batching into requests, one request in
 * flight per lane, the LRU cache, timeouts, cancellation, freeing with work
 * in flight), and the memory store with a remote embedder (writes that do
 * not wait for the network, the queue of entities waiting for vectors, its
 * retries and the searches that fall back to text). Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/log.h"
#include "core/util.h"
#include "llm/llm.h"
#include "memory/embed.h"
#include "memory/embedder.h"
#include "memory/memops.h"
#include "memory/memstore.h"

#include "embed_server.h"

#define API_KEY "sk-embed-test-0123456789"

/* ---- fixture ---------------------------------------------------------------------------------- */

typedef struct fixture {
    esrv srv;
    uv_loop_t loop;
    uv_timer_t tick;
    json_t *providers;
    llm_client *llm;
    embedder *emb;
} fixture;

static void on_tick(uv_timer_t *t) { (void)t; }

static json_t *providers_for(unsigned port, const char *retries)
{
    char v1[64], root[64];
    snprintf(v1, sizeof v1, "http://127.0.0.1:%u/v1", port);
    snprintf(root, sizeof root, "http://127.0.0.1:%u", port);
    return json_pack("{s:{s:s, s:s, s:s, s:s, s:s}, s:{s:s, s:s, s:s, s:s},"
                     " s:{s:s, s:s, s:s}}",
                     "emb", "type", "openai", "base_url", v1, "api_key", API_KEY, "timeout",
                     "5s", "retries", retries, "local", "type", "ollama", "base_url", root,
                     "timeout", "5s", "retries", retries, "anth", "type", "anthropic",
                     "base_url", root, "api_key", "x");
}

static void fixture_start(fixture *f, const char *retries)
{
    memset(f, 0, sizeof *f);
    assert_true(esrv_start(&f->srv));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, on_tick, 10, 10);
    f->providers = providers_for(f->srv.port, retries);
    cx_error err = {0};
    f->llm = llm_client_new(&f->loop, f->providers, &err);
    if (!f->llm)
        fail_msg("llm_client_new: %s", err.msg);
}

static void fixture_embedder(fixture *f, const char *kind, size_t batch, size_t cache)
{
    embedder_config cfg = {.kind = kind, .model = "emb-model", .batch = batch, .cache = cache};
    cx_error err = {0};
    f->emb = embedder_new(&cfg, f->providers, &f->loop, f->llm, &err);
    if (!f->emb)
        fail_msg("embedder_new: %s", err.msg);
}

static void run_until(fixture *f, const int *counter, int want, unsigned max_ms)
{
    uint64_t end = esrv_now_ms() + max_ms;
    while (*counter < want && esrv_now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static void run_for(fixture *f, unsigned ms)
{
    int never = 0;
    run_until(f, &never, 1, ms);
}

static void fixture_stop(fixture *f)
{
    embedder_free(f->emb);
    f->emb = NULL;
    llm_client_close(f->llm);
    uv_close((uv_handle_t *)&f->tick, NULL);
    for (int i = 0; i < 1000 && uv_run(&f->loop, UV_RUN_NOWAIT) != 0; i++)
        usleep(1000);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    json_decref(f->providers);
    esrv_stop(&f->srv);
}

static void set_srv(fixture *f, int fail_next, int fail_status, unsigned delay_ms,
                    const char *body)
{
    pthread_mutex_lock(&f->srv.lock);
    f->srv.fail_next = fail_next;
    f->srv.fail_status = fail_status;
    f->srv.delay_ms = delay_ms;
    f->srv.body = body;
    pthread_mutex_unlock(&f->srv.lock);
}

/* ---- llm_embed -------------------------------------------------------------------------------- */

typedef struct got {
    int calls;
    int code;
    char reason[32];
    char detail[512];
    long status;
    unsigned attempts;
    size_t count, dim;
    float vectors[4][8];
} got;

static void on_embedded(const llm_result *r, void *arg)
{
    got *g = arg;
    g->calls++;
    g->code = r->code;
    snprintf(g->reason, sizeof g->reason, "%s", r->reason ? r->reason : "");
    snprintf(g->detail, sizeof g->detail, "%s", r->detail);
    g->status = r->http_status;
    g->attempts = r->attempts;
    g->count = r->embedding_count;
    g->dim = r->embedding_dim;
    for (size_t i = 0; i < r->embedding_count && i < 4 && r->embedding_dim == 8; i++)
        memcpy(g->vectors[i], r->embeddings + i * 8, sizeof g->vectors[i]);
}

static const char *const three[] = {"red apples", "green pears", "a third text"};

static void check_vectors(const got *g)
{
    for (size_t i = 0; i < 3; i++) {
        float want[8];
        esrv_vector(three[i], 8, want);
        for (size_t d = 0; d < 8; d++)
            assert_true(fabsf(g->vectors[i][d] - want[d]) < 1e-5f);
    }
}

static void test_embed_openai(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, "0");
    f.srv.reverse = true; /* placed by index, not by position */
    got g = {0};
    llm_embed_request req = {.provider = "emb", .model = "emb-model", .texts = three,
                             .count = 3};
    cx_error err = {0};
    assert_non_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    run_until(&f, &g.calls, 1, 5000);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.code, 0);
    assert_int_equal(g.count, 3);
    assert_int_equal(g.dim, 8);
    check_vectors(&g);
    assert_string_equal(f.srv.last_path, "/v1/embeddings");
    assert_string_equal(f.srv.last_auth, "Authorization: Bearer " API_KEY);
    assert_non_null(strstr(f.srv.last_body, "\"model\":\"emb-model\""));
    assert_non_null(strstr(f.srv.last_body, "\"input\":[\"red apples\""));
    json_t *stats = llm_client_stats(f.llm);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(stats, "emb"),
                                                        "prompt_tokens")),
                     3);
    json_decref(stats);
    fixture_stop(&f);
}

static void test_embed_ollama(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, "0");
    got g = {0};
    llm_embed_request req = {.provider = "local", .model = "nomic", .texts = three, .count = 3};
    cx_error err = {0};
    assert_non_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    run_until(&f, &g.calls, 1, 5000);
    assert_int_equal(g.code, 0);
    assert_int_equal(g.count, 3);
    check_vectors(&g);
    assert_string_equal(f.srv.last_path, "/api/embed");
    assert_string_equal(f.srv.last_auth, "");
    fixture_stop(&f);
}

static void test_embed_retries_and_refusals(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, "2");
    /* a 503, then the answer */
    set_srv(&f, 1, 503, 0, NULL);
    got g = {0};
    llm_embed_request req = {.provider = "emb", .model = "emb-model", .texts = three,
                             .count = 3};
    cx_error err = {0};
    assert_non_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    run_until(&f, &g.calls, 1, 8000);
    assert_int_equal(g.code, 0);
    assert_int_equal(g.attempts, 2);
    /* a 400 is final: no retry */
    set_srv(&f, 5, 400, 0, NULL);
    g = (got){0};
    assert_non_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    run_until(&f, &g.calls, 1, 8000);
    assert_int_not_equal(g.code, 0);
    assert_string_equal(g.reason, LLM_REASON_PROVIDER_ERROR);
    assert_int_equal(g.status, 400);
    assert_int_equal(g.attempts, 1);
    assert_non_null(strstr(g.detail, "scripted failure"));
    /* answers that do not fit the request */
    set_srv(&f, 0, 0, 0, "{\"data\":[{\"index\":0,\"embedding\":[1,2]}]}");
    g = (got){0};
    assert_non_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    run_until(&f, &g.calls, 1, 8000);
    assert_string_equal(g.reason, LLM_REASON_MALFORMED);
    assert_non_null(strstr(g.detail, "1 embeddings for 3 texts"));
    set_srv(&f, 0, 0, 0, "{\"data\":[]}");
    g = (got){0};
    assert_non_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    run_until(&f, &g.calls, 1, 8000);
    assert_string_equal(g.reason, LLM_REASON_EMPTY);
    fixture_stop(&f);
}

static void test_embed_refused_at_the_door(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, "0");
    got g = {0};
    cx_error err = {0};
    llm_embed_request req = {.provider = "anth", .model = "m", .texts = three, .count = 3};
    assert_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    assert_int_equal(err.code, CX_EINVAL);
    assert_non_null(strstr(err.msg, "no embeddings API"));
    req = (llm_embed_request){.provider = "emb", .texts = three, .count = 3};
    assert_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    assert_non_null(strstr(err.msg, "no embedding model"));
    const char *empty[] = {"one", ""};
    req = (llm_embed_request){.provider = "emb", .model = "m", .texts = empty, .count = 2};
    assert_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    assert_non_null(strstr(err.msg, "text 1"));
    req = (llm_embed_request){.provider = "nope", .model = "m", .texts = three, .count = 3};
    assert_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    assert_int_equal(err.code, CX_ENOTFOUND);
    req = (llm_embed_request){.provider = "emb", .model = "m", .texts = three, .count = 0};
    assert_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    run_for(&f, 50);
    assert_int_equal(g.calls, 0);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), 0);
    fixture_stop(&f);
}

static void test_embed_deadline(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, "0");
    set_srv(&f, 0, 0, 2000, NULL);
    got g = {0};
    llm_embed_request req = {.provider = "emb", .model = "m", .texts = three, .count = 3,
                             .deadline_ms = esrv_now_ms() + 200};
    cx_error err = {0};
    uint64_t t0 = esrv_now_ms();
    assert_non_null(llm_embed(f.llm, &req, on_embedded, &g, &err));
    run_until(&f, &g.calls, 1, 5000);
    assert_string_equal(g.reason, LLM_REASON_TIMEOUT);
    assert_true(esrv_now_ms() - t0 < 1500);
    fixture_stop(&f);
}

/* ---- the embedder ----------------------------------------------------------------------------- */

static void test_config_check(void **state)
{
    (void)state;
    json_t *providers = providers_for(1, "0");
    json_t *errors = NULL;
    embedder_config c = {.kind = "builtin"};
    assert_int_equal(embedder_config_check(&c, providers, &errors), 0);
    json_decref(errors);
    c = (embedder_config){.kind = "openai", .model = "text-embedding-3-small"};
    assert_int_equal(embedder_config_check(&c, providers, &errors), 0);
    json_decref(errors);
    c = (embedder_config){.kind = "openai"};
    assert_int_equal(embedder_config_check(&c, providers, &errors), 1);
    assert_non_null(strstr(json_string_value(json_array_get(errors, 0)),
                           "memory.embedding.model: required"));
    json_decref(errors);
    c = (embedder_config){.kind = "ollama", .model = "m", .provider = "nope"};
    assert_int_equal(embedder_config_check(&c, providers, &errors), 1);
    assert_non_null(strstr(json_string_value(json_array_get(errors, 0)),
                           "no provider \"nope\" in llm.providers (they are: emb, local, "
                           "anth)"));
    json_decref(errors);
    c = (embedder_config){.kind = "ollama", .model = "m", .provider = "emb"};
    assert_int_equal(embedder_config_check(&c, providers, &errors), 1);
    assert_non_null(strstr(json_string_value(json_array_get(errors, 0)),
                           "\"emb\" is a provider of type openai"));
    json_decref(errors);
    json_t *none = json_object();
    c = (embedder_config){.kind = "openai", .model = "m"};
    assert_int_equal(embedder_config_check(&c, none, &errors), 1);
    assert_non_null(strstr(json_string_value(json_array_get(errors, 0)),
                           "needs a provider of type openai"));
    json_decref(errors);
    cx_error err = {0};
    assert_null(embedder_new(&c, none, NULL, NULL, &err));
    assert_int_equal(err.code, CX_ECONFIG);
    json_decref(none);
    json_decref(providers);
    /* the builtin one needs nothing */
    c = (embedder_config){.kind = NULL};
    embedder *e = embedder_new(&c, NULL, NULL, NULL, &err);
    assert_non_null(e);
    assert_false(embedder_is_remote(e));
    assert_string_equal(embedder_id(e), EMBED_BUILTIN_ID);
    embedder_free(e);
}

typedef struct job_out {
    int calls, code;
    char reason[32];
    size_t count, dim;
    float first[8];
} job_out;

static void on_job(const embedder_answer *a, void *arg)
{
    job_out *o = arg;
    o->calls++;
    o->code = a->code;
    snprintf(o->reason, sizeof o->reason, "%s", a->reason ? a->reason : "");
    o->count = a->count;
    o->dim = a->dim;
    if (a->code == 0 && a->dim == 8)
        memcpy(o->first, a->vectors, sizeof o->first);
}

static void test_batching(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, "0");
    fixture_embedder(&f, "openai", 4, 64);
    assert_true(embedder_is_remote(f.emb));
    assert_string_equal(embedder_id(f.emb), "openai:emb-model");
    assert_string_equal(embedder_provider(f.emb), "emb");
    /* ten searches in one loop turn: ceil(10 / 4) requests */
    job_out out[10] = {{0}};
    char texts[10][32];
    int total = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(texts[i], sizeof texts[i], "query number %d", i);
        const char *t = texts[i];
        cx_error err = {0};
        assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_QUERY, &t, 1, 5000, on_job, &out[i],
                                        &err));
    }
    uint64_t end = esrv_now_ms() + 5000;
    while (esrv_now_ms() < end) {
        total = 0;
        for (int i = 0; i < 10; i++)
            total += out[i].calls;
        if (total == 10)
            break;
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    assert_int_equal(total, 10);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), 3);
    assert_int_equal(f.srv.max_batch, 4);
    for (int i = 0; i < 10; i++) {
        float want[8];
        esrv_vector(texts[i], 8, want);
        assert_int_equal(out[i].code, 0);
        assert_int_equal(out[i].count, 1);
        assert_true(fabsf(out[i].first[3] - want[3]) < 1e-5f);
    }
    /* a job of several texts is not split, and the lanes are separate */
    job_out bulk = {0}, query = {0};
    const char *many[] = {"a b", "c d", "e f"};
    const char *one = "g h";
    cx_error err = {0};
    assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_BULK, many, 3, 0, on_job, &bulk, &err));
    assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_QUERY, &one, 1, 0, on_job, &query,
                                    &err));
    run_until(&f, &bulk.calls, 1, 5000);
    run_until(&f, &query.calls, 1, 5000);
    assert_int_equal(bulk.count, 3);
    assert_int_equal(query.count, 1);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), 5);
    json_t *stats = embedder_stats_json(f.emb);
    assert_int_equal(json_integer_value(json_object_get(stats, "requests")), 5);
    assert_int_equal(json_integer_value(json_object_get(stats, "texts")), 14);
    json_decref(stats);
    fixture_stop(&f);
}

static void test_one_request_in_flight(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, "0");
    fixture_embedder(&f, "ollama", 8, 0);
    set_srv(&f, 0, 0, 300, NULL);
    job_out a = {0}, b = {0}, c = {0};
    const char *ta = "first", *tb = "second", *tc = "third";
    cx_error err = {0};
    assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_QUERY, &ta, 1, 0, on_job, &a, &err));
    uint64_t end = esrv_now_ms() + 3000;
    while (esrv_count(&f.srv, &f.srv.requests) < 1 && esrv_now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    /* while the first is out, two more wait and then go together */
    assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_QUERY, &tb, 1, 0, on_job, &b, &err));
    assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_QUERY, &tc, 1, 0, on_job, &c, &err));
    run_until(&f, &c.calls, 1, 5000);
    assert_int_equal(a.calls + b.calls + c.calls, 3);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), 2);
    assert_int_equal(f.srv.max_batch, 2);
    assert_string_equal(f.srv.last_path, "/api/embed");
    fixture_stop(&f);
}

static void test_cache(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, "0");
    fixture_embedder(&f, "openai", 8, 2);
    const char *texts[] = {"alpha", "beta", "gamma"};
    job_out o = {0};
    cx_error err = {0};
    size_t dim = 0;
    assert_null(embedder_cache_get(f.emb, "alpha", 5, &dim));
    assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_BULK, texts, 2, 0, on_job, &o, &err));
    run_until(&f, &o.calls, 1, 5000);
    const float *v = embedder_cache_get(f.emb, "alpha", 5, &dim);
    assert_non_null(v);
    assert_int_equal(dim, 8);
    float want[8];
    esrv_vector("alpha", 8, want);
    assert_true(fabsf(v[1] - want[1]) < 1e-6f);
    /* alpha was used last: gamma pushes beta out */
    o = (job_out){0};
    assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_BULK, &texts[2], 1, 0, on_job, &o,
                                    &err));
    run_until(&f, &o.calls, 1, 5000);
    assert_non_null(embedder_cache_get(f.emb, "alpha", 5, &dim));
    assert_non_null(embedder_cache_get(f.emb, "gamma", 5, &dim));
    assert_null(embedder_cache_get(f.emb, "beta", 4, &dim));
    /* long texts are cut, and the cut text is the key */
    char *big = malloc(EMBEDDER_TEXT_MAX + 100);
    memset(big, 'w', EMBEDDER_TEXT_MAX + 99);
    big[EMBEDDER_TEXT_MAX + 99] = '\0';
    o = (job_out){0};
    const char *bt = big;
    assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_BULK, &bt, 1, 0, on_job, &o, &err));
    run_until(&f, &o.calls, 1, 5000);
    assert_int_equal(o.code, 0);
    big[EMBEDDER_TEXT_MAX] = '\0';
    assert_non_null(embedder_cache_get(f.emb, big, EMBEDDER_TEXT_MAX, &dim));
    free(big);
    embedder_cache_clear(f.emb);
    assert_null(embedder_cache_get(f.emb, "alpha", 5, &dim));
    json_t *stats = embedder_stats_json(f.emb);
    json_t *cache = json_object_get(stats, "cache");
    assert_int_equal(json_integer_value(json_object_get(cache, "entries")), 0);
    assert_true(json_integer_value(json_object_get(cache, "hits")) >= 3);
    json_decref(stats);
    fixture_stop(&f);
}

static void test_timeout_cancel_and_free(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, "0");
    fixture_embedder(&f, "openai", 8, 16);
    set_srv(&f, 0, 0, 2000, NULL);
    /* the wait ends before the answer (and so does the request: the lane is
     * free again at the job's deadline) */
    job_out slow = {0};
    const char *t = "slow words";
    cx_error err = {0};
    uint64_t t0 = esrv_now_ms();
    assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_QUERY, &t, 1, 100, on_job, &slow, &err));
    run_until(&f, &slow.calls, 1, 3000);
    assert_int_equal(slow.calls, 1);
    assert_string_equal(slow.reason, LLM_REASON_TIMEOUT);
    assert_true(esrv_now_ms() - t0 < 1500); /* long before the answer */
    set_srv(&f, 0, 0, 300, NULL);
    /* cancelled once sent: no callback, but the answer fills the cache */
    int before = esrv_count(&f.srv, &f.srv.requests);
    job_out left = {0};
    const char *t1 = "cancelled words";
    embedder_job *sent = embedder_submit(f.emb, EMBEDDER_LANE_QUERY, &t1, 1, 0, on_job, &left,
                                         &err);
    uint64_t end = esrv_now_ms() + 3000;
    while (esrv_count(&f.srv, &f.srv.requests) == before && esrv_now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    embedder_job_cancel(sent);
    size_t dim = 0;
    end = esrv_now_ms() + 3000;
    while (!embedder_cache_get(f.emb, t1, strlen(t1), &dim) && esrv_now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(dim, 8);
    assert_int_equal(left.calls, 0);
    /* cancelled before it was sent: no callback, no request */
    before = esrv_count(&f.srv, &f.srv.requests);
    job_out gone = {0};
    const char *t2 = "never sent";
    embedder_job *j = embedder_submit(f.emb, EMBEDDER_LANE_QUERY, &t2, 1, 0, on_job, &gone,
                                      &err);
    embedder_job_cancel(j);
    run_for(&f, 100);
    assert_int_equal(gone.calls, 0);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), before);
    /* freed with a request in flight and a job waiting: no callback */
    job_out a = {0}, b = {0};
    const char *ta = "in flight", *tb = "waiting";
    assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_QUERY, &ta, 1, 0, on_job, &a, &err));
    end = esrv_now_ms() + 3000;
    while (esrv_count(&f.srv, &f.srv.requests) == before && esrv_now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_non_null(embedder_submit(f.emb, EMBEDDER_LANE_QUERY, &tb, 1, 0, on_job, &b, &err));
    embedder_free(f.emb);
    f.emb = NULL;
    run_for(&f, 600);
    assert_int_equal(a.calls + b.calls, 0);
    fixture_stop(&f);
}

static int wake_count;
static void on_wake_test(void *arg)
{
    (void)arg;
    wake_count++;
}

static void test_wake(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, "0");
    fixture_embedder(&f, "openai", 8, 16);
    wake_count = 0;
    embedder_set_wake(f.emb, on_wake_test, NULL);
    embedder_wake_after(f.emb, 50);
    embedder_wake_after(f.emb, 20); /* replaces the first */
    assert_true(embedder_wake_pending(f.emb));
    run_for(&f, 200);
    assert_int_equal(wake_count, 1);
    assert_false(embedder_wake_pending(f.emb));
    embedder_wake_after(f.emb, 20);
    embedder_wake_stop(f.emb);
    run_for(&f, 100);
    assert_int_equal(wake_count, 1);
    embedder_wake_after(f.emb, 1000); /* pending at free: never runs */
    fixture_stop(&f);
    assert_int_equal(wake_count, 1);
}


/* ---- the memory store with a remote embedder -------------------------------------------------- */

static char dir[64];
static char db_path[128];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static const mem_caller op = {.agent = NULL, .enabled = true, .scope = MEM_SCOPE_GLOBAL,
                              .global_write = true};

/* Opens the store on db_path with a new embedder of this kind (the store owns it). */
static memstore *store_open(fixture *f, const char *kind, size_t batch)
{
    embedder *e = NULL;
    if (kind) {
        fixture_embedder(f, kind, batch, 256);
        e = f->emb;
        f->emb = NULL;
    }
    memstore_options o = {.path = db_path, .cache_size = 4 << 20, .embedder = e};
    cx_error err = {0};
    memstore *ms = memstore_open(&o, &err);
    assert_non_null(ms);
    assert_true(memstore_available(ms));
    return ms;
}

static void store_put(memstore *ms, const char *name, const char *observation)
{
    json_t *req = json_pack("{s:s, s:s, s:s, s:[s]}", "scope", "global", "name", name, "type",
                            "fact", "observations", observation);
    json_t *out = NULL;
    cx_error err = {0};
    int rc = memstore_entity_put(ms, &op, req, &out, &err);
    if (rc)
        fail_msg("entity_put: %s", err.msg);
    json_decref(out);
    json_decref(req);
}

static memstore_stats stats_of(memstore *ms)
{
    memstore_stats st;
    memstore_get_stats(ms, &st);
    return st;
}

/* Runs the loop until no entity waits (bounded); returns how many wait. */
static int64_t drain(fixture *f, memstore *ms, unsigned max_ms)
{
    uint64_t end = esrv_now_ms() + max_ms;
    int64_t waiting = stats_of(ms).embeddings_waiting;
    while (waiting > 0 && esrv_now_ms() < end) {
        uv_run(&f->loop, UV_RUN_ONCE);
        waiting = stats_of(ms).embeddings_waiting;
    }
    return waiting;
}

typedef struct search_out {
    int calls, rc;
    json_t *result;
} search_out;

static void on_search(int rc, json_t *result, const cx_error *err, void *arg)
{
    (void)err;
    search_out *o = arg;
    o->calls++;
    o->rc = rc;
    json_decref(o->result);
    o->result = result ? json_incref(result) : NULL;
}

static void search(fixture *f, memstore *ms, const char *text, search_out *o, bool expect_now)
{
    json_decref(o->result);
    *o = (search_out){0};
    mem_search_query q = {.text = text, .limit = 5, .mode = MEM_SEARCH_HYBRID};
    mem_search_req *r = memstore_search_async(ms, &op, &q, on_search, o);
    if (expect_now) {
        assert_null(r);
        assert_int_equal(o->calls, 1);
    } else {
        assert_non_null(r);
        assert_int_equal(o->calls, 0);
    }
    run_until(f, &o->calls, 1, 8000);
    assert_int_equal(o->calls, 1);
    assert_int_equal(o->rc, 0);
}

static const char *top_name(const search_out *o)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(o->result, "results"), 0), "name"));
}

/* The vector stored for an entity, read from the file. */
static bool stored_vector(const char *name, float *out, size_t dim, char *emb_id, size_t size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    bool ok = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
              sqlite3_prepare_v2(db, "SELECT m.embedder, m.vector FROM embeddings m JOIN "
                                     "entities e ON e.id = m.entity_id WHERE e.name = ?",
                                 -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_ROW &&
             sqlite3_column_bytes(st, 1) == (int)(dim * sizeof(float));
        if (ok) {
            snprintf(emb_id, size, "%s", (const char *)sqlite3_column_text(st, 0));
            memcpy(out, sqlite3_column_blob(st, 1), dim * sizeof(float));
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

static void assert_vector_of(const char *name, const char *text)
{
    float have[8], want[8];
    char id[64];
    assert_true(stored_vector(name, have, 8, id, sizeof id));
    esrv_vector(text, 8, want);
    embed_normalise(want, 8);
    for (size_t d = 0; d < 8; d++)
        assert_true(fabsf(have[d] - want[d]) < 1e-5f);
}

static void store_setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cx-embedder-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(db_path, sizeof db_path, "%s/data/memory.db", dir);
}

static void store_teardown(void) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void test_store_queue(void **state)
{
    (void)state;
    store_setup();
    fixture f;
    fixture_start(&f, "0");
    memstore *ms = store_open(&f, "openai", 4);
    memstore_stats st = stats_of(ms);
    assert_string_equal(st.embedder, "openai:emb-model");
    assert_true(st.embedder_remote);
    assert_int_equal(st.dim, 0);
    /* ten writes, acknowledged without the network */
    char name[32], obs[64];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "entity %d", i);
        snprintf(obs, sizeof obs, "observation number %d about topic%d", i, i);
        store_put(ms, name, obs);
    }
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), 0);
    st = stats_of(ms);
    assert_int_equal(st.embeddings_waiting, 10);
    assert_int_equal(st.vectors, 0);
    /* nothing to compare a query with yet: text, at once */
    search_out o = {0};
    search(&f, ms, "topic3", &o, true);
    assert_non_null(strstr(json_string_value(json_object_get(o.result, "vector")),
                           "unavailable: no entity has a vector"));
    assert_string_equal(top_name(&o), "entity 3");
    /* the queue: ceil(10 / 4) requests */
    assert_int_equal(drain(&f, ms, 8000), 0);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), 3);
    assert_int_equal(f.srv.max_batch, 4);
    st = stats_of(ms);
    assert_int_equal(st.vectors, 10);
    assert_int_equal(st.dim, 8);
    assert_int_equal(st.embed_batches, 3);
    assert_vector_of("entity 7", "entity 7\nfact\nobservation number 7 about topic7");
    /* a search embeds its query once; the second time it is cached */
    const char *query = "entity 5 fact observation number 5 about topic5";
    search(&f, ms, query, &o, false);
    assert_null(json_object_get(o.result, "vector"));
    assert_string_equal(top_name(&o), "entity 5");
    json_t *hit = json_array_get(json_object_get(o.result, "results"), 0);
    assert_true(json_is_real(json_object_get(hit, "vector_score")));
    int requests = esrv_count(&f.srv, &f.srv.requests);
    search(&f, ms, query, &o, true);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), requests);
    /* the synchronous search uses the cache too, and says when it cannot */
    mem_search_query q = {.text = query, .limit = 3};
    json_t *out = NULL;
    cx_error err = {0};
    assert_int_equal(memstore_search(ms, &op, &q, &out, &err), 0);
    assert_null(json_object_get(out, "vector"));
    json_decref(out);
    q.text = "never asked before";
    assert_int_equal(memstore_search(ms, &op, &q, &out, &err), 0);
    assert_non_null(strstr(json_string_value(json_object_get(out, "vector")), "not in the "
                                                                                "embedding cache"));
    json_decref(out);
    /* a write of a text the cache knows needs no request */
    store_put(ms, "twin", "twin text");
    drain(&f, ms, 5000);
    requests = esrv_count(&f.srv, &f.srv.requests);
    memstore_entity_delete(ms, &op, "global", "twin", &err);
    store_put(ms, "twin", "twin text");
    assert_int_equal(stats_of(ms).embeddings_waiting, 0);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), requests);
    json_decref(o.result);
    memstore_close(ms);
    fixture_stop(&f);
    store_teardown();
}

static void test_store_batch_bytes(void **state)
{
    (void)state;
    store_setup();
    fixture f;
    fixture_start(&f, "0");
    memstore *ms = store_open(&f, "openai", 64);
    /* 40 texts of 8 KB (cut there): 256 KB per request, so two requests */
    char *obs = malloc(4001), *other = malloc(4001);
    for (int i = 0; i < 40; i++) {
        memset(obs, 'a' + i % 26, 4000);
        obs[4000] = '\0';
        memcpy(other, obs, 4001);
        other[0] = 'Z';
        char name[16];
        snprintf(name, sizeof name, "big %d", i);
        json_t *req = json_pack("{s:s, s:s, s:[s, s]}", "scope", "global", "name", name,
                                "observations", obs, other);
        json_t *out = NULL;
        cx_error err = {0};
        assert_int_equal(memstore_entity_put(ms, &op, req, &out, &err), 0);
        json_decref(out);
        json_decref(req);
    }
    free(obs);
    free(other);
    assert_int_equal(drain(&f, ms, 10000), 0);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), 2);
    assert_int_equal(f.srv.max_batch, EMBEDDER_BATCH_BYTES / EMBEDDER_TEXT_MAX);
    assert_int_equal(stats_of(ms).vectors, 40);
    memstore_close(ms);
    fixture_stop(&f);
    store_teardown();
}

static void test_store_provider_down(void **state)
{
    (void)state;
    store_setup();
    fixture f;
    fixture_start(&f, "0");
    memstore *ms = store_open(&f, "openai", 8);
    store_put(ms, "first", "the provider works");
    assert_int_equal(drain(&f, ms, 5000), 0);
    /* down: writes still go through, searches answer by text */
    pthread_mutex_lock(&f.srv.lock);
    f.srv.down = true;
    pthread_mutex_unlock(&f.srv.lock);
    store_put(ms, "second", "written while the provider is down");
    store_put(ms, "third", "also written while it is down");
    uint64_t end = esrv_now_ms() + 5000;
    while (stats_of(ms).embed_failures < 1 && esrv_now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    memstore_stats st = stats_of(ms);
    assert_int_equal(st.embeddings_waiting, 2);
    assert_true(st.embed_failures >= 1);
    assert_non_null(strstr(st.embed_last_error, "HTTP 503"));
    /* the checks call them waiting, not damaged */
    char backups[160];
    snprintf(backups, sizeof backups, "%s/backups", dir);
    memops_ctx ctx = {.db_path = db_path, .backups_dir = backups, .keep = 1, .store = ms};
    json_t *res = NULL;
    cx_error err = {0};
    assert_int_equal(memops_run(&ctx, "health-check", NULL, &res, &err), 0);
    assert_true(json_is_true(json_object_get(res, "ok")));
    const char *warning = json_string_value(json_array_get(json_object_get(res, "warnings"), 0));
    assert_non_null(warning);
    assert_true(str_has_prefix(warning, "2 entities waiting for embeddings from openai:emb-model"));
    json_t *emb = json_object_get(res, "embedder");
    assert_int_equal(json_integer_value(json_object_get(emb, "waiting")), 2);
    assert_true(json_is_true(json_object_get(emb, "remote")));
    json_decref(res);
    assert_int_equal(memops_run(&ctx, "integrity-check", NULL, &res, &err), 0);
    assert_true(json_is_true(json_object_get(res, "ok")));
    json_decref(res);
    search_out o = {0};
    uint64_t t0 = esrv_now_ms();
    search(&f, ms, "written while down", &o, false);
    assert_true(esrv_now_ms() - t0 < MEM_SEARCH_EMBED_TIMEOUT_MS + 1000);
    const char *note = json_string_value(json_object_get(o.result, "vector"));
    assert_non_null(note);
    assert_true(str_has_prefix(note, "unavailable: provider-error"));
    assert_int_equal(json_array_size(json_object_get(o.result, "results")), 2);
    /* back: the queue drains (after its backoff) */
    pthread_mutex_lock(&f.srv.lock);
    f.srv.down = false;
    pthread_mutex_unlock(&f.srv.lock);
    assert_int_equal(drain(&f, ms, 10000), 0);
    st = stats_of(ms);
    assert_int_equal(st.vectors, 3);
    assert_string_equal(st.embed_last_error, "");
    json_decref(o.result);
    memstore_close(ms);
    fixture_stop(&f);
    store_teardown();
}

static void test_store_text_changes_in_flight(void **state)
{
    (void)state;
    store_setup();
    fixture f;
    fixture_start(&f, "0");
    memstore *ms = store_open(&f, "ollama", 8);
    set_srv(&f, 0, 0, 300, NULL);
    store_put(ms, "moving", "the first text");
    uint64_t end = esrv_now_ms() + 3000;
    while (esrv_count(&f.srv, &f.srv.requests) < 1 && esrv_now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    /* while its vector is on the way, the entity changes */
    json_t *req = json_pack("{s:s, s:s, s:[s], s:[s]}", "scope", "global", "name", "moving",
                            "observations", "the second text", "remove_observations",
                            "the first text");
    json_t *out = NULL;
    cx_error err = {0};
    assert_int_equal(memstore_entity_put(ms, &op, req, &out, &err), 0);
    json_decref(out);
    json_decref(req);
    assert_int_equal(drain(&f, ms, 5000), 0);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), 2);
    assert_vector_of("moving", "moving\nfact\nthe second text");
    /* an entity deleted while its vector is on the way gets none */
    store_put(ms, "short-lived", "soon gone");
    end = esrv_now_ms() + 3000;
    while (esrv_count(&f.srv, &f.srv.requests) < 3 && esrv_now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(memstore_entity_delete(ms, &op, "global", "short-lived", &err), 0);
    run_for(&f, 600);
    memstore_stats st = stats_of(ms);
    assert_int_equal(st.embeddings_waiting, 0);
    assert_int_equal(st.vectors, 1);
    memstore_close(ms);
    fixture_stop(&f);
    store_teardown();
}

static void test_store_refusals(void **state)
{
    (void)state;
    store_setup();
    fixture f;
    fixture_start(&f, "0");
    memstore *ms = store_open(&f, "openai", 8);
    pthread_mutex_lock(&f.srv.lock);
    f.srv.down = true;
    f.srv.fail_status = 400;
    pthread_mutex_unlock(&f.srv.lock);
    store_put(ms, "a", "refused text a");
    store_put(ms, "b", "refused text b");
    store_put(ms, "c", "refused text c");
    /* halved until each is alone, then set aside: no backoff for refusals */
    uint64_t end = esrv_now_ms() + 5000;
    while (stats_of(ms).embeddings_refused < 3 && esrv_now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    memstore_stats st = stats_of(ms);
    assert_int_equal(st.embeddings_refused, 3);
    assert_int_equal(st.embeddings_waiting, 3);
    assert_non_null(strstr(st.embed_last_error, "HTTP 400"));
    int requests = esrv_count(&f.srv, &f.srv.requests);
    run_for(&f, 300);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), requests); /* no more tries */
    /* a change lifts the refusal of that entity; a reindex lifts them all */
    pthread_mutex_lock(&f.srv.lock);
    f.srv.down = false;
    pthread_mutex_unlock(&f.srv.lock);
    store_put(ms, "a", "a new text for a");
    end = esrv_now_ms() + 5000;
    while (stats_of(ms).embeddings_waiting > 2 && esrv_now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    st = stats_of(ms);
    assert_int_equal(st.embeddings_waiting, 2);
    assert_int_equal(st.embeddings_refused, 2);
    json_t *report = NULL;
    cx_error err = {0};
    assert_int_equal(memstore_reindex(ms, NULL, &report, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(report, "queued")), 3);
    assert_string_equal(json_string_value(json_object_get(report, "embedder")),
                        "openai:emb-model");
    json_decref(report);
    assert_int_equal(drain(&f, ms, 5000), 0);
    assert_int_equal(stats_of(ms).vectors, 3);
    memstore_close(ms);
    fixture_stop(&f);
    store_teardown();
}

static void test_store_refusing_everything(void **state)
{
    (void)state;
    store_setup();
    fixture f;
    fixture_start(&f, "0");
    memstore *ms = store_open(&f, "openai", 4);
    pthread_mutex_lock(&f.srv.lock);
    f.srv.down = true;
    f.srv.fail_status = 422;
    pthread_mutex_unlock(&f.srv.lock);
    for (int i = 0; i < 12; i++) {
        char name[16];
        snprintf(name, sizeof name, "r%d", i);
        store_put(ms, name, "nothing is taken");
    }
    /* a few are set aside, then the provider is blamed and the queue backs off */
    uint64_t end = esrv_now_ms() + 5000;
    while (stats_of(ms).embed_failures < 10 && esrv_now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    run_for(&f, 200);
    memstore_stats st = stats_of(ms);
    assert_int_equal(st.embeddings_refused, 8);
    assert_int_equal(st.embeddings_waiting, 12);
    int requests = esrv_count(&f.srv, &f.srv.requests);
    assert_true(requests <= 12);
    run_for(&f, 500);
    assert_true(esrv_count(&f.srv, &f.srv.requests) <= requests + 1);
    memstore_close(ms);
    fixture_stop(&f);
    store_teardown();
}

static void test_store_switching_embedders(void **state)
{
    (void)state;
    store_setup();
    fixture f;
    fixture_start(&f, "0");
    /* builtin first: vectors at once */
    memstore *ms = store_open(&f, NULL, 0);
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        store_put(ms, name, "a fact to carry over");
    }
    assert_int_equal(stats_of(ms).vectors, 5);
    memstore_close(ms);
    /* ollama: every vector is stale, queued at open (not embedded there) */
    ms = store_open(&f, "ollama", 2);
    memstore_stats st = stats_of(ms);
    assert_int_equal(st.vectors, 0);
    assert_int_equal(st.embeddings_waiting, 5);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), 0);
    assert_int_equal(drain(&f, ms, 5000), 0);
    assert_int_equal(esrv_count(&f.srv, &f.srv.requests), 3);
    char id[64];
    float v[8];
    assert_true(stored_vector("n4", v, 8, id, sizeof id));
    assert_string_equal(id, "ollama:emb-model");
    memstore_close(ms);
    /* the same embedder again: its vectors load, nothing to send */
    ms = store_open(&f, "ollama", 2);
    st = stats_of(ms);
    assert_int_equal(st.vectors, 5);
    assert_int_equal(st.dim, 8);
    assert_int_equal(st.embeddings_waiting, 0);
    /* a search still waiting when the store closes is answered (by text) */
    search_out o = {0};
    mem_search_query q = {.text = "a fact", .limit = 5};
    set_srv(&f, 0, 0, 2000, NULL);
    assert_non_null(memstore_search_async(ms, &op, &q, on_search, &o));
    memstore_close(ms);
    assert_int_equal(o.calls, 1);
    assert_non_null(strstr(json_string_value(json_object_get(o.result, "vector")), "closing"));
    json_decref(o.result);
    /* a cancelled one is not */
    ms = store_open(&f, "ollama", 2);
    o = (search_out){0};
    q.text = "another query";
    mem_search_req *r = memstore_search_async(ms, &op, &q, on_search, &o);
    assert_non_null(r);
    memstore_search_cancel(r);
    run_for(&f, 100);
    memstore_close(ms);
    assert_int_equal(o.calls, 0);
    /* and back to builtin: re-embedded at open */
    ms = store_open(&f, NULL, 0);
    assert_int_equal(stats_of(ms).vectors, 5);
    assert_true(stored_vector("n0", v, 1, id, sizeof id) == false); /* 384 wide now */
    memstore_close(ms);
    set_srv(&f, 0, 0, 0, NULL);
    fixture_stop(&f);
    store_teardown();
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_openai),
        cmocka_unit_test(test_embed_ollama),
        cmocka_unit_test(test_embed_retries_and_refusals),
        cmocka_unit_test(test_embed_refused_at_the_door),
        cmocka_unit_test(test_embed_deadline),
        cmocka_unit_test(test_config_check),
        cmocka_unit_test(test_batching),
        cmocka_unit_test(test_one_request_in_flight),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_timeout_cancel_and_free),
        cmocka_unit_test(test_wake),
        cmocka_unit_test(test_store_queue),
        cmocka_unit_test(test_store_batch_bytes),
        cmocka_unit_test(test_store_provider_down),
        cmocka_unit_test(test_store_text_changes_in_flight),
        cmocka_unit_test(test_store_refusals),
        cmocka_unit_test(test_store_refusing_everything),
        cmocka_unit_test(test_store_switching_embedders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
