/* Remote embedders: lanes of jobs batched into llm_embed calls, and the LRU
 * cache of vectors (embedder.h).
 *
 * A job owns a uv_timer used for whichever wait it is in: its deadline while
 * it waits or is sent, then a zero timeout to run its callback on the next
 * loop turn. Callbacks therefore only ever run from that timer. A lane sends
 * its waiting jobs from a zero-timeout timer too, so the jobs submitted in
 * one loop turn (concurrent searches) share one request. The embedder counts
 * its open handles and frees itself when the last one is closed after
 * embedder_free. */
#include "memory/embedder.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/map.h"
#include "core/sha256.h"
#include "core/util.h"
#include "memory/embed.h"

#define DETAIL_MAX 560
#define LAST_ERROR_MAX 600

typedef enum job_state {
    JOB_WAITING,    /* in its lane's queue */
    JOB_SENT,       /* in the lane's request in flight */
    JOB_DONE,       /* answer stored, callback on the next turn */
    JOB_DELIVERING, /* callback running */
    JOB_CLOSING,
} job_state;

typedef struct lane lane;

struct embedder_job {
    embedder *e;
    lane *lane;
    job_state state;
    char **texts;
    size_t count;
    embedder_done_fn done;
    void *arg;
    uint64_t deadline_ms;        /* monotonic; 0 = none */
    uv_timer_t timer;
    embedder_job *prev, *next;   /* the lane's queue */
    embedder_job *all_prev, *all_next; /* every live job */
    /* the answer */
    int code;
    const char *reason;
    char detail[DETAIL_MAX];
    long http_status;
    float *vectors;
    size_t dim;
};

/* One job's part of the request in flight. The slot owns the texts, so a
 * job that leaves meanwhile (cancelled, timed out) still gets its vectors
 * cached. */
typedef struct sent_slot {
    embedder_job *job; /* NULL once it left */
    char **texts;
    size_t count;
} sent_slot;

struct lane {
    embedder *e;
    embedder_lane kind;
    embedder_job *head, *tail;
    llm_call *call;            /* the request in flight */
    sent_slot *sent;           /* its jobs */
    size_t sent_count;
    uv_timer_t flush;
    bool flush_armed;
};

typedef struct cache_entry {
    char key[2 * SHA256_DIGEST_SIZE + 1];
    float *vec;
    size_t dim;
    struct cache_entry *prev, *next; /* newest first */
} cache_entry;

struct embedder {
    char id[EMBEDDER_ID_MAX];
    char *kind, *provider, *model;
    bool remote;
    size_t batch, cache_size;
    uv_loop_t *loop;
    llm_client *llm;
    lane lanes[2];
    embedder_job *jobs;        /* every live job */
    uv_timer_t wake;
    void (*wake_fn)(void *arg);
    void *wake_arg;
    bool wake_armed;
    map cache;                 /* hex sha256 -> cache_entry */
    cache_entry *newest, *oldest;
    size_t open_handles;
    bool closing;
    uint64_t requests, texts, errors, hits, misses;
    char last_error[LAST_ERROR_MAX];
};

/* ---- configuration --------------------------------------------------------------------------- */

static bool printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return text_is_utf8(s, strlen(s));
}

static bool kind_remote(const char *kind)
{
    return kind && (strcmp(kind, "openai") == 0 || strcmp(kind, "ollama") == 0);
}

static void problem(json_t *errors, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(json_t *errors, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    text_make_utf8(line);
    json_array_append_new(errors, json_string(line));
}

static void known_names(const json_t *providers, char *out, size_t size)
{
    size_t used = 0;
    const char *name;
    const json_t *v;
    out[0] = '\0';
    json_object_foreach((json_t *)providers, name, v) {
        if (used >= size)
            break;
        used += (size_t)snprintf(out + used, size - used, "%s%s", used ? ", " : "", name);
    }
    if (!out[0])
        snprintf(out, size, "none");
}

static void check_provider(const embedder_config *cfg, const json_t *providers, json_t *errors)
{
    const char *name = cfg->provider && *cfg->provider ? cfg->provider : NULL;
    if (!name) {
        if (!llm_provider_first_of_type(providers, cfg->kind))
            problem(errors, "memory.embedder: %s needs a provider of type %s in llm.providers "
                    "(or name one in memory.embedding.provider)", cfg->kind, cfg->kind);
        return;
    }
    char quoted[96], known[256];
    text_quote(name, quoted, sizeof quoted);
    const char *type = llm_provider_type(providers, name);
    if (!json_object_get(providers, name)) {
        known_names(providers, known, sizeof known);
        problem(errors, "memory.embedding.provider: no provider %s in llm.providers (they are: "
                "%s)", quoted, known);
    } else if (!type) {
        problem(errors, "memory.embedding.provider: provider %s has no usable type (see "
                "llm.providers)", quoted);
    } else if (strcmp(type, cfg->kind) != 0) {
        problem(errors, "memory.embedding.provider: %s is a provider of type %s; memory.embedder "
                "%s needs one of type %s", quoted, type, cfg->kind, cfg->kind);
    }
}

embedder_config embedder_config_of(const cx_config *cfg)
{
    return (embedder_config){
        .kind = cfg->memory_embedder,
        .provider = cfg->memory_embedding_provider,
        .model = cfg->memory_embedding_model,
        .batch = cfg->memory_embedding_batch > 0 ? (size_t)cfg->memory_embedding_batch : 0,
        .cache = cfg->memory_embedding_cache > 0 ? (size_t)cfg->memory_embedding_cache : 0,
    };
}

size_t embedder_config_check(const embedder_config *cfg, const json_t *providers,
                             json_t **errors)
{
    json_t *list = json_array();
    const char *kind = cfg->kind ? cfg->kind : "builtin";
    if (!kind_remote(kind) && strcmp(kind, "builtin") != 0) {
        problem(list, "memory.embedder: expected builtin, openai or ollama");
    } else if (kind_remote(kind)) {
        const char *model = cfg->model;
        if (!model || !*model)
            problem(list, "memory.embedding.model: required when memory.embedder is %s; name "
                    "the provider's embedding model (e.g. %s)", kind,
                    strcmp(kind, "openai") == 0 ? "text-embedding-3-small" : "nomic-embed-text");
        else if (strlen(model) > 256 || !printable(model))
            problem(list, "memory.embedding.model: 1 to 256 printable characters");
        check_provider(cfg, providers, list);
        if (cfg->batch > EMBEDDER_BATCH_MAX)
            problem(list, "memory.embedding.batch: at most %d", EMBEDDER_BATCH_MAX);
    }
    size_t n = json_array_size(list);
    if (errors)
        *errors = list;
    else
        json_decref(list);
    return n;
}

/* ---- the cache ------------------------------------------------------------------------------- */

/* Texts are cut to EMBEDDER_TEXT_MAX at a character boundary. */
static size_t clip(const char *text, size_t len)
{
    if (len <= EMBEDDER_TEXT_MAX)
        return len;
    len = EMBEDDER_TEXT_MAX;
    while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
        len--; /* text[len] continues a character: cut before it */
    return len;
}

static void cache_key(const char *text, size_t len, char out[2 * SHA256_DIGEST_SIZE + 1])
{
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256(text, len, digest);
    for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

static void lru_unlink(embedder *e, cache_entry *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        e->newest = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        e->oldest = c->prev;
    c->prev = c->next = NULL;
}

static void lru_push(embedder *e, cache_entry *c)
{
    c->prev = NULL;
    c->next = e->newest;
    if (e->newest)
        e->newest->prev = c;
    e->newest = c;
    if (!e->oldest)
        e->oldest = c;
}

static void cache_drop(embedder *e, cache_entry *c)
{
    lru_unlink(e, c);
    map_remove(&e->cache, c->key);
    free(c->vec);
    free(c);
}

static void cache_put(embedder *e, const char *text, size_t len, const float *vec, size_t dim)
{
    if (e->cache_size == 0 || dim == 0)
        return;
    char key[2 * SHA256_DIGEST_SIZE + 1];
    cache_key(text, len, key);
    cache_entry *c = map_get(&e->cache, key);
    if (c) {
        cache_drop(e, c);
    } else if (e->cache.count >= e->cache_size && e->oldest) {
        cache_drop(e, e->oldest);
    }
    c = calloc(1, sizeof *c);
    float *copy = malloc(dim * sizeof *copy);
    if (!c || !copy || map_put(&e->cache, key, c, NULL) != 0) {
        free(c);
        free(copy);
        return; /* a cache that cannot grow is only slower */
    }
    memcpy(c->key, key, sizeof key);
    memcpy(copy, vec, dim * sizeof *copy);
    c->vec = copy;
    c->dim = dim;
    lru_push(e, c);
}

const float *embedder_cache_get(embedder *e, const char *text, size_t len, size_t *dim)
{
    if (!e || !e->remote || e->cache_size == 0)
        return NULL;
    len = clip(text, len);
    char key[2 * SHA256_DIGEST_SIZE + 1];
    cache_key(text, len, key);
    cache_entry *c = map_get(&e->cache, key);
    if (!c) {
        e->misses++;
        return NULL;
    }
    e->hits++;
    lru_unlink(e, c);
    lru_push(e, c);
    *dim = c->dim;
    return c->vec;
}

void embedder_cache_clear(embedder *e)
{
    while (e && e->newest)
        cache_drop(e, e->newest);
}

/* ---- handles --------------------------------------------------------------------------------- */

static void maybe_release(embedder *e)
{
    if (!e->closing || e->open_handles > 0)
        return;
    embedder_cache_clear(e);
    map_free(&e->cache);
    free(e->kind);
    free(e->provider);
    free(e->model);
    free(e);
}

static void on_handle_closed(uv_handle_t *h)
{
    embedder *e = h->data;
    e->open_handles--;
    maybe_release(e);
}

/* ---- jobs ------------------------------------------------------------------------------------ */

static void job_unqueue(embedder_job *j)
{
    lane *l = j->lane;
    if (j->prev)
        j->prev->next = j->next;
    else if (l->head == j)
        l->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else if (l->tail == j)
        l->tail = j->prev;
    j->prev = j->next = NULL;
}

static void job_unsend(embedder_job *j)
{
    lane *l = j->lane;
    for (size_t i = 0; i < l->sent_count; i++)
        if (l->sent[i].job == j)
            l->sent[i].job = NULL;
}

static void texts_free(char **texts, size_t count)
{
    for (size_t i = 0; texts && i < count; i++)
        free(texts[i]);
    free(texts);
}

static void job_free_texts(embedder_job *j)
{
    texts_free(j->texts, j->count);
    j->texts = NULL;
}

static void on_job_closed(uv_handle_t *h)
{
    embedder_job *j = h->data;
    embedder *e = j->e;
    job_free_texts(j);
    free(j->vectors);
    free(j);
    e->open_handles--;
    maybe_release(e);
}

/* Out of every list; the memory goes when the timer is closed. */
static void job_destroy(embedder_job *j)
{
    embedder *e = j->e;
    if (j->state == JOB_WAITING)
        job_unqueue(j);
    else if (j->state == JOB_SENT)
        job_unsend(j);
    if (j->all_prev)
        j->all_prev->all_next = j->all_next;
    else if (e->jobs == j)
        e->jobs = j->all_next;
    if (j->all_next)
        j->all_next->all_prev = j->all_prev;
    j->all_prev = j->all_next = NULL;
    j->state = JOB_CLOSING;
    uv_timer_stop(&j->timer);
    uv_close((uv_handle_t *)&j->timer, on_job_closed);
}

static void on_job_deliver(uv_timer_t *t)
{
    embedder_job *j = t->data;
    j->state = JOB_DELIVERING;
    embedder_answer a = {.code = j->code, .reason = j->reason, .detail = j->detail,
                         .http_status = j->http_status, .vectors = j->vectors,
                         .count = j->code ? 0 : j->count, .dim = j->code ? 0 : j->dim};
    j->done(&a, j->arg);
    job_destroy(j);
}

/* Stores the outcome and runs the callback on the next loop turn. */
static void job_finish(embedder_job *j, int code, const char *reason, long status,
                       const char *detail)
{
    if (j->state == JOB_WAITING)
        job_unqueue(j);
    else if (j->state == JOB_SENT)
        job_unsend(j);
    j->code = code;
    j->reason = code ? reason : NULL;
    j->http_status = status;
    snprintf(j->detail, sizeof j->detail, "%s", detail ? detail : "");
    text_make_utf8(j->detail);
    j->state = JOB_DONE;
    uv_timer_stop(&j->timer);
    uv_timer_start(&j->timer, on_job_deliver, 0, 0);
}

static void on_job_deadline(uv_timer_t *t)
{
    embedder_job *j = t->data;
    char detail[160];
    snprintf(detail, sizeof detail, "no embedding from %s within the wait (%s)",
             j->e->provider ? j->e->provider : "the provider",
             j->state == JOB_SENT ? "the request is still running" : "the request had not "
                                                                       "started");
    job_finish(j, CX_ETIMEOUT, LLM_REASON_TIMEOUT, 0, detail);
}

/* ---- lanes ----------------------------------------------------------------------------------- */

static void lane_arm(lane *l);

static void note_error(embedder *e, const char *reason, const char *detail)
{
    e->errors++;
    snprintf(e->last_error, sizeof e->last_error, "%.40s: %.540s", reason, detail);
    text_make_utf8(e->last_error);
}

/* The vectors of a request into its jobs (and the cache). */
static void lane_deliver(lane *l, const llm_result *r)
{
    embedder *e = l->e;
    size_t at = 0, dim = r->embedding_dim;
    for (size_t i = 0; i < l->sent_count && at < r->embedding_count; i++) {
        sent_slot *slot = &l->sent[i];
        size_t n = slot->count;
        if (at + n > r->embedding_count)
            break;
        for (size_t k = 0; k < n; k++)
            cache_put(e, slot->texts[k], strlen(slot->texts[k]), r->embeddings + (at + k) * dim,
                      dim);
        embedder_job *j = slot->job;
        if (!j) {
            at += n; /* it left meanwhile, its place in the request stays */
            continue;
        }
        j->vectors = malloc(n * dim * sizeof *j->vectors);
        if (!j->vectors) {
            job_finish(j, CX_ENOMEM, LLM_REASON_PROVIDER_ERROR, r->http_status,
                       "out of memory keeping the embeddings");
        } else {
            memcpy(j->vectors, r->embeddings + at * dim, n * dim * sizeof *j->vectors);
            j->dim = dim;
            job_finish(j, 0, NULL, r->http_status, "");
        }
        at += n;
    }
}

static void lane_clear_sent(lane *l)
{
    for (size_t i = 0; i < l->sent_count; i++)
        texts_free(l->sent[i].texts, l->sent[i].count);
    free(l->sent);
    l->sent = NULL;
    l->sent_count = 0;
}

static void on_lane_answer(const llm_result *r, void *arg)
{
    lane *l = arg;
    embedder *e = l->e;
    l->call = NULL;
    if (r->code == 0)
        lane_deliver(l, r);
    else
        note_error(e, r->reason ? r->reason : LLM_REASON_PROVIDER_ERROR, r->detail);
    for (size_t i = 0; i < l->sent_count; i++) {
        embedder_job *j = l->sent[i].job;
        if (j && j->state == JOB_SENT)
            job_finish(j, r->code ? r->code : CX_EINTERNAL,
                       r->reason ? r->reason : LLM_REASON_MALFORMED, r->http_status,
                       r->code ? r->detail : "the answer did not cover the job");
    }
    lane_clear_sent(l);
    if (l->head)
        lane_arm(l);
}

/* Which waiting jobs go in the next request: the first always, then more
 * while they fit the batch and the byte budget. */
static size_t lane_take(lane *l, size_t *texts)
{
    size_t jobs = 0, bytes = 0;
    *texts = 0;
    for (embedder_job *j = l->head; j; j = j->next) {
        size_t b = 0;
        for (size_t k = 0; k < j->count; k++)
            b += strlen(j->texts[k]);
        if (jobs > 0 && (*texts + j->count > l->e->batch || bytes + b > EMBEDDER_BATCH_BYTES))
            break;
        jobs++;
        *texts += j->count;
        bytes += b;
    }
    return jobs;
}

/* The request's deadline: the soonest of its jobs' (0 when none has one). */
static uint64_t deadline_of(const sent_slot *slots, size_t n)
{
    uint64_t soonest = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = slots[i].job->deadline_ms;
        if (d && (!soonest || d < soonest))
            soonest = d;
    }
    return soonest;
}

static void lane_send(lane *l)
{
    embedder *e = l->e;
    size_t ntexts;
    size_t njobs = lane_take(l, &ntexts);
    if (njobs == 0 || l->call || e->closing)
        return;
    sent_slot *sent = calloc(njobs, sizeof *sent);
    const char **texts = calloc(ntexts, sizeof *texts);
    if (!sent || !texts) {
        free(sent);
        free(texts);
        embedder_job *j = l->head;
        job_finish(j, CX_ENOMEM, LLM_REASON_PROVIDER_ERROR, 0, "out of memory sending texts");
        if (l->head)
            lane_arm(l);
        return;
    }
    size_t t = 0;
    for (size_t i = 0; i < njobs; i++) {
        embedder_job *j = l->head;
        job_unqueue(j);
        j->state = JOB_SENT;
        sent[i] = (sent_slot){.job = j, .texts = j->texts, .count = j->count};
        j->texts = NULL; /* the slot has them now */
        for (size_t k = 0; k < sent[i].count; k++)
            texts[t++] = sent[i].texts[k];
    }
    llm_embed_request req = {.provider = e->provider, .model = e->model, .texts = texts,
                             .count = ntexts, .deadline_ms = deadline_of(sent, njobs),
                             .agent = "memory"};
    l->sent = sent;
    l->sent_count = njobs;
    cx_error err = {0};
    l->call = llm_embed(e->llm, &req, on_lane_answer, l, &err);
    free(texts);
    if (l->call) {
        e->requests++;
        e->texts += ntexts;
        return;
    }
    note_error(e, LLM_REASON_CONFIG, err.msg);
    for (size_t i = 0; i < njobs; i++)
        if (sent[i].job)
            job_finish(sent[i].job, err.code ? err.code : CX_EINTERNAL, LLM_REASON_CONFIG, 0,
                       err.msg);
    lane_clear_sent(l);
    if (l->head)
        lane_arm(l);
}

static void on_lane_flush(uv_timer_t *t)
{
    lane *l = t->data;
    l->flush_armed = false;
    lane_send(l);
}

/* Sends on the next loop turn, so jobs of this turn go together. */
static void lane_arm(lane *l)
{
    if (l->flush_armed || l->call || l->e->closing)
        return;
    l->flush_armed = true;
    uv_timer_start(&l->flush, on_lane_flush, 0, 0);
}

static int job_texts(embedder_job *j, const char *const *texts, size_t count, cx_error *err)
{
    j->texts = calloc(count, sizeof *j->texts);
    if (!j->texts)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        size_t len = texts[i] ? strlen(texts[i]) : 0;
        if (len == 0) {
            j->count = i;
            return cx_error_set(err, CX_EINVAL, "text %zu to embed is empty", i);
        }
        j->texts[i] = strndup(texts[i], clip(texts[i], len));
        j->count = i + 1;
        if (!j->texts[i])
            return cx_error_set(err, CX_ENOMEM, "out of memory");
        text_make_utf8(j->texts[i]);
    }
    return 0;
}

embedder_job *embedder_submit(embedder *e, embedder_lane which, const char *const *texts,
                              size_t count, uint64_t timeout_ms, embedder_done_fn done,
                              void *arg, cx_error *err)
{
    if (!e || !e->remote || !done || !texts) {
        cx_error_set(err, CX_EINVAL, "embedder_submit: not a remote embedder, or no texts");
        return NULL;
    }
    if (e->closing) {
        cx_error_set(err, CX_EUNAVAIL, "the embedder is shutting down");
        return NULL;
    }
    if (count == 0 || count > EMBEDDER_BATCH_MAX) {
        cx_error_set(err, CX_EINVAL, "a job has 1 to %d texts, got %zu", EMBEDDER_BATCH_MAX,
                     count);
        return NULL;
    }
    embedder_job *j = calloc(1, sizeof *j);
    if (!j) {
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    if (job_texts(j, texts, count, err) != 0) {
        job_free_texts(j);
        free(j);
        return NULL;
    }
    j->e = e;
    j->lane = &e->lanes[which == EMBEDDER_LANE_BULK ? 1 : 0];
    j->done = done;
    j->arg = arg;
    j->state = JOB_WAITING;
    uv_timer_init(e->loop, &j->timer);
    j->timer.data = j;
    e->open_handles++;
    j->all_next = e->jobs;
    if (e->jobs)
        e->jobs->all_prev = j;
    e->jobs = j;
    lane *l = j->lane;
    j->prev = l->tail;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    if (timeout_ms) {
        j->deadline_ms = time_monotonic_ns() / 1000000u + timeout_ms;
        uv_timer_start(&j->timer, on_job_deadline, timeout_ms, 0);
    }
    lane_arm(l);
    return j;
}

void embedder_job_cancel(embedder_job *j)
{
    if (!j || j->state == JOB_DELIVERING || j->state == JOB_CLOSING)
        return;
    job_destroy(j);
}

/* ---- the owner's timer ----------------------------------------------------------------------- */

static void on_wake(uv_timer_t *t)
{
    embedder *e = t->data;
    e->wake_armed = false;
    if (e->wake_fn && !e->closing)
        e->wake_fn(e->wake_arg);
}

void embedder_set_wake(embedder *e, void (*fn)(void *arg), void *arg)
{
    e->wake_fn = fn;
    e->wake_arg = arg;
}

void embedder_wake_after(embedder *e, uint64_t ms)
{
    if (!e || !e->remote || e->closing)
        return;
    e->wake_armed = true;
    uv_timer_start(&e->wake, on_wake, ms, 0);
}

void embedder_wake_stop(embedder *e)
{
    if (!e || !e->remote)
        return;
    e->wake_armed = false;
    uv_timer_stop(&e->wake);
}

bool embedder_wake_pending(const embedder *e) { return e && e->wake_armed; }

/* ---- life ------------------------------------------------------------------------------------ */

static int init_remote(embedder *e, const embedder_config *cfg, const json_t *providers,
                       uv_loop_t *loop, llm_client *llm, cx_error *err)
{
    if (!loop || !llm)
        return cx_error_set(err, CX_ECONFIG, "memory.embedder %s needs the LLM providers "
                            "(llm.providers)", cfg->kind);
    const char *provider = cfg->provider && *cfg->provider
                               ? cfg->provider
                               : llm_provider_first_of_type(providers, cfg->kind);
    e->provider = str_dup(provider);
    e->model = str_dup(cfg->model);
    if (!e->provider || !e->model)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    snprintf(e->id, sizeof e->id, "%s:%s", cfg->kind, cfg->model);
    e->remote = true;
    e->loop = loop;
    e->llm = llm;
    e->batch = cfg->batch ? cfg->batch : EMBEDDER_BATCH_DEFAULT;
    e->cache_size = cfg->cache;
    for (int i = 0; i < 2; i++) {
        lane *l = &e->lanes[i];
        l->e = e;
        l->kind = i ? EMBEDDER_LANE_BULK : EMBEDDER_LANE_QUERY;
        uv_timer_init(loop, &l->flush);
        l->flush.data = l;
        e->open_handles++;
    }
    uv_timer_init(loop, &e->wake);
    e->wake.data = e;
    e->open_handles++;
    return 0;
}

embedder *embedder_new(const embedder_config *cfg, const json_t *providers, uv_loop_t *loop,
                       llm_client *llm, cx_error *err)
{
    json_t *errors = NULL;
    if (embedder_config_check(cfg, providers, &errors) > 0) {
        cx_error_set(err, CX_ECONFIG, "%s", json_string_value(json_array_get(errors, 0)));
        json_decref(errors);
        return NULL;
    }
    json_decref(errors);
    embedder *e = calloc(1, sizeof *e);
    const char *kind = cfg->kind ? cfg->kind : "builtin";
    if (!e || !(e->kind = str_dup(kind))) {
        free(e);
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    map_init(&e->cache);
    snprintf(e->id, sizeof e->id, "%s", EMBED_BUILTIN_ID);
    if (kind_remote(kind) && init_remote(e, cfg, providers, loop, llm, err) != 0) {
        e->closing = true; /* it fails before it opens a handle */
        maybe_release(e);
        return NULL;
    }
    return e;
}

void embedder_free(embedder *e)
{
    if (!e || e->closing)
        return;
    e->closing = true;
    if (!e->remote) {
        maybe_release(e);
        return;
    }
    for (int i = 0; i < 2; i++) {
        lane *l = &e->lanes[i];
        if (l->call)
            llm_call_cancel(l->call);
        l->call = NULL;
        lane_clear_sent(l);
    }
    /* a job whose callback is running (this free came from it) is closed
     * by on_job_deliver when the callback returns */
    embedder_job *j = e->jobs;
    while (j) {
        embedder_job *next = j->all_next;
        if (j->state != JOB_DELIVERING)
            job_destroy(j);
        j = next;
    }
    for (int i = 0; i < 2; i++) {
        uv_timer_stop(&e->lanes[i].flush);
        e->lanes[i].flush.data = e;
        uv_close((uv_handle_t *)&e->lanes[i].flush, on_handle_closed);
    }
    uv_timer_stop(&e->wake);
    uv_close((uv_handle_t *)&e->wake, on_handle_closed);
}

const char *embedder_id(const embedder *e) { return e ? e->id : EMBED_BUILTIN_ID; }
const char *embedder_provider(const embedder *e) { return e && e->remote ? e->provider : NULL; }
bool embedder_is_remote(const embedder *e) { return e && e->remote; }
size_t embedder_batch(const embedder *e) { return e && e->remote ? e->batch : 0; }

static json_int_t clamp(uint64_t v) { return v > INT64_MAX ? INT64_MAX : (json_int_t)v; }

json_t *embedder_stats_json(const embedder *e)
{
    if (!e)
        return json_pack("{s:s}", "id", EMBED_BUILTIN_ID);
    if (!e->remote)
        return json_pack("{s:s, s:s}", "id", e->id, "kind", e->kind);
    bool busy = e->lanes[0].call || e->lanes[1].call;
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:{s:I, s:I, s:I, s:I}, s:I, s:I, s:I, s:b, "
                     "s:s?}",
                     "id", e->id, "kind", e->kind, "provider", e->provider, "model", e->model,
                     "batch", (json_int_t)e->batch, "cache", "size", (json_int_t)e->cache_size,
                     "entries", (json_int_t)e->cache.count, "hits", clamp(e->hits), "misses",
                     clamp(e->misses), "requests", clamp(e->requests), "texts", clamp(e->texts),
                     "errors", clamp(e->errors), "in_flight", busy, "last_error",
                     e->last_error[0] ? e->last_error : NULL);
}
