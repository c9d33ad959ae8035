/* The store's side of a remote embedder (memstore_internal.h): the queue of
 * entities waiting for their vectors, and the searches waiting for their
 * query's.
 *
 * The queue is the database: the entities without a vector from the current
 * embedder (mem_waiting_ids), taken in id order from a cursor that wraps
 * around, so a restart, a reindex or a restored file need no bookkeeping of
 * their own. One batch is in flight at a time (the embedder's BULK lane),
 * memory.embedding.batch entities at most. Each entity's text is hashed when
 * it is sent; when the vectors come back, an entity whose text changed
 * meanwhile (or that is gone) is left waiting for the next batch instead of
 * getting a vector of its older text. Texts already in the embedder's cache
 * are stored at once, without a request.
 *
 * When a batch fails the cursor goes back and the queue waits 1 s, 2 s, 4 s
 * ... up to 30 s before it tries again (the provider's own retries ran
 * already); a write does not cut the wait short, but a query embedded
 * successfully meanwhile does (the provider is back). A refusal of the
 * request's content (HTTP 400, 413 or 422) is not the provider being down:
 * the batch is halved until the entity it refuses is alone, and that one is
 * set aside (counted as refused, logged) until it changes or is reindexed.
 * When more than REFUSALS_MAX entities in a row are refused, it is the
 * request that is wrong (a model that takes no text at all): that backs off
 * like any failure instead of setting every entity aside.
 *
 * A search waits at most MEM_SEARCH_EMBED_TIMEOUT_MS for its query's vector
 * (the QUERY lane, so it never queues behind entities); then it ranks by
 * text and says why in "vector". */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "memory/embed.h"
#include "memory/memstore_internal.h"

#define BACKOFF_FIRST_MS 1000u
#define BACKOFF_MAX_MS 30000u
#define PARKED_MAX 256      /* entities set aside after a refusal */
#define REFUSALS_MAX 8      /* entities refused in a row before the request itself is blamed */
#define PUMP_ROUNDS 8       /* batches served from the cache before yielding */
#define NOTE_MAX 256

struct mem_search_req {
    mem_remote *r;
    mem_caller c;
    char *agent, *workspace;
    mem_search_query q;
    char *text, *scope;
    char **types;
    mem_search_fn cb;
    void *arg;
    embedder_job *job;
    mem_search_req *prev, *next;
};

struct mem_remote {
    memstore *ms;
    embedder *e;
    /* the batch in flight */
    embedder_job *job;
    int64_t *ids;
    uint64_t *hashes;
    size_t n;
    uint64_t gen;
    int64_t cursor;      /* entities above it come next */
    int64_t batch_first; /* the cursor before the batch: where a retry starts */
    size_t batch_limit;  /* halved by a refusal, doubled back by each success */
    unsigned failures;   /* in a row; the backoff doubles with each */
    unsigned refusals;   /* single entities refused since the last success */
    bool backoff;
    int64_t parked[PARKED_MAX]; /* sorted */
    size_t parked_n;
    uint64_t batches, fails;
    char last_error[NOTE_MAX];
    mem_search_req *searches;
};

static uint64_t text_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* ---- the queue -------------------------------------------------------------------------------- */

static void pump(void *arg);

void mem_remote_kick(mem_remote *r)
{
    if (r && !r->job && !r->backoff)
        embedder_wake_after(r->e, 0);
}

static void batch_clear(mem_remote *r)
{
    free(r->ids);
    free(r->hashes);
    r->ids = NULL;
    r->hashes = NULL;
    r->n = 0;
}

static void park(mem_remote *r, int64_t id)
{
    if (r->parked_n >= PARKED_MAX)
        return; /* then it is only skipped until the cursor wraps around */
    size_t at = 0;
    while (at < r->parked_n && r->parked[at] < id)
        at++;
    if (at < r->parked_n && r->parked[at] == id)
        return;
    memmove(r->parked + at + 1, r->parked + at, (r->parked_n - at) * sizeof *r->parked);
    r->parked[at] = id;
    r->parked_n++;
}

void mem_remote_changed(mem_remote *r, int64_t id)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->parked_n; i++)
        if (r->parked[i] == id) {
            memmove(r->parked + i, r->parked + i + 1, (r->parked_n - i - 1) * sizeof *r->parked);
            r->parked_n--;
            break;
        }
    mem_remote_kick(r);
}

void mem_remote_restart(mem_remote *r)
{
    if (!r)
        return;
    r->parked_n = 0;
    r->refusals = 0;
    r->cursor = 0;
    mem_remote_kick(r);
}

void mem_remote_reset(mem_remote *r)
{
    if (!r)
        return;
    embedder_job_cancel(r->job);
    r->job = NULL;
    batch_clear(r);
    r->cursor = r->batch_first = 0;
    r->parked_n = 0;
    r->failures = r->refusals = 0;
    r->backoff = false;
    embedder_wake_stop(r->e);
}

static void note_failure(mem_remote *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note_failure(mem_remote *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->last_error, sizeof r->last_error, fmt, ap);
    va_end(ap);
    text_make_utf8(r->last_error);
    r->fails++;
}

/* A failure of the provider's: wait, then try the same entities again. */
static void back_off(mem_remote *r)
{
    r->failures++;
    r->cursor = r->batch_first;
    unsigned shift = r->failures - 1 < 5 ? r->failures - 1 : 5;
    uint64_t wait = (uint64_t)BACKOFF_FIRST_MS << shift;
    if (wait > BACKOFF_MAX_MS)
        wait = BACKOFF_MAX_MS;
    if (r->failures == 1)
        log_warn("memory", "embeddings from %s failed (%s); %lld entities wait for them, "
                 "retrying in %llu ms and then less often", embedder_id(r->e), r->last_error,
                 (long long)mem_waiting_count(r->ms), (unsigned long long)wait);
    r->backoff = true;
    embedder_wake_after(r->e, wait);
}

static bool refused(const embedder_answer *a)
{
    return a->http_status == 400 || a->http_status == 413 || a->http_status == 422;
}

/* The provider would not take this batch's texts: halve it, and set aside
 * the entity it refuses alone. */
static void split(mem_remote *r, const int64_t *ids, size_t n, const char *detail)
{
    if (n > 1) {
        r->batch_limit = n / 2;
        r->cursor = r->batch_first;
    } else if (++r->refusals > REFUSALS_MAX || r->parked_n >= PARKED_MAX) {
        back_off(r);
        return;
    } else {
        char *text = mem_entity_text(r->ms, ids[0]);
        char *nl = text ? strchr(text, '\n') : NULL;
        if (nl)
            *nl = '\0';
        log_warn("memory", "the embedder %s refuses the text of entity %lld (%s): %s; it stays "
                 "without a vector until it changes or 'caxton memory reindex'",
                 embedder_id(r->e), (long long)ids[0], text ? text : "?", detail);
        free(text);
        park(r, ids[0]);
    }
    mem_remote_kick(r);
}

/* The vectors that still match their entity's text go into the store. */
static int store_answer(mem_remote *r, const int64_t *ids, const uint64_t *hashes, size_t n,
                        const embedder_answer *a, cx_error *err)
{
    int64_t *keep = calloc(n, sizeof *keep);
    float *vecs = calloc(n * a->dim, sizeof *vecs);
    if (!keep || !vecs) {
        free(keep);
        free(vecs);
        return cx_error_set(err, CX_ENOMEM, "out of memory storing embeddings");
    }
    size_t k = 0;
    for (size_t i = 0; i < n && i < a->count; i++) {
        char *text = mem_entity_text(r->ms, ids[i]);
        if (text && text_hash(text) == hashes[i]) {
            keep[k] = ids[i];
            memcpy(vecs + k * a->dim, a->vectors + i * a->dim, a->dim * sizeof *vecs);
            k++;
        }
        free(text);
    }
    int rc = k ? mem_store_vectors(r->ms, keep, vecs, k, a->dim, err) : 0;
    free(keep);
    free(vecs);
    return rc < 0 ? rc : 0;
}

static void on_batch(const embedder_answer *a, void *arg)
{
    mem_remote *r = arg;
    r->job = NULL;
    int64_t *ids = r->ids;
    uint64_t *hashes = r->hashes;
    size_t n = r->n;
    r->ids = NULL;
    r->hashes = NULL;
    r->n = 0;
    cx_error err = {0};
    if (r->gen != mem_generation(r->ms)) {
        /* the database was closed and opened meanwhile: these ids are not its */
    } else if (a->code == 0 && store_answer(r, ids, hashes, n, a, &err) == 0) {
        if (r->failures)
            log_info("memory", "embeddings from %s work again", embedder_id(r->e));
        r->failures = 0;
        r->refusals = 0;
        r->batches++;
        size_t full = embedder_batch(r->e);
        r->batch_limit = r->batch_limit * 2 < full ? r->batch_limit * 2 : full;
    } else if (a->code == 0) {
        note_failure(r, "storing the vectors: %s", err.msg);
        back_off(r);
    } else if (refused(a)) {
        note_failure(r, "%s: %s", a->reason, a->detail);
        split(r, ids, n, a->detail);
    } else {
        note_failure(r, "%s: %s", a->reason, a->detail);
        back_off(r);
    }
    free(ids);
    free(hashes);
    mem_remote_kick(r);
}

/* Sends the texts of these entities (as many as fit EMBEDDER_BATCH_BYTES),
 * or stores them from the cache. 1: a request is out; 0: all were served
 * here; -1: failed (backoff set). */
static int send_batch(mem_remote *r, const int64_t *ids, size_t n)
{
    size_t dim = mem_dim(r->ms);
    const char **texts = calloc(n, sizeof *texts);
    r->ids = calloc(n, sizeof *r->ids);
    r->hashes = calloc(n, sizeof *r->hashes);
    int64_t *hit_ids = calloc(n, sizeof *hit_ids);
    float *hit_vecs = NULL;
    size_t misses = 0, hits = 0, hit_dim = dim, bytes = 0, done = 0;
    int rc = texts && r->ids && r->hashes && hit_ids ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *text = mem_entity_text(r->ms, ids[i]);
        done = i + 1;
        if (!text)
            continue; /* gone */
        size_t d = 0;
        const float *cached = embedder_cache_get(r->e, text, strlen(text), &d);
        if (cached && (!hit_dim || d == hit_dim)) {
            float *grown = hit_vecs ? hit_vecs : calloc(n * d, sizeof *hit_vecs);
            hit_dim = d;
            if (grown) {
                hit_vecs = grown;
                memcpy(hit_vecs + hits * d, cached, d * sizeof *hit_vecs);
                hit_ids[hits++] = ids[i];
                free(text);
                continue;
            }
        }
        size_t len = strlen(text);
        len = len < EMBEDDER_TEXT_MAX ? len : EMBEDDER_TEXT_MAX;
        if (misses && bytes + len > EMBEDDER_BATCH_BYTES) {
            free(text); /* the next batch starts here */
            done = i;
            break;
        }
        bytes += len;
        r->ids[misses] = ids[i];
        r->hashes[misses] = text_hash(text);
        texts[misses++] = text;
    }
    cx_error err = {0};
    bool noted = false;
    if (rc == 0 && hits && mem_store_vectors(r->ms, hit_ids, hit_vecs, hits, hit_dim, &err) < 0) {
        note_failure(r, "storing the vectors: %s", err.msg);
        noted = true;
        rc = -1;
    }
    r->batch_first = r->cursor;
    if (done)
        r->cursor = ids[done - 1];
    r->n = misses;
    if (rc == 0 && misses) {
        r->gen = mem_generation(r->ms);
        r->job = embedder_submit(r->e, EMBEDDER_LANE_BULK, texts, misses, 0, on_batch, r, &err);
        if (!r->job) {
            note_failure(r, "%s", err.msg);
            noted = true;
        }
        rc = r->job ? 1 : -1;
    }
    if (rc < 0 && !noted)
        note_failure(r, "out of memory sending entities to embed");
    for (size_t i = 0; texts && i < misses; i++)
        free((char *)texts[i]);
    free(texts);
    free(hit_ids);
    free(hit_vecs);
    if (rc != 1)
        batch_clear(r);
    if (rc < 0)
        back_off(r);
    return rc;
}

static void pump(void *arg)
{
    mem_remote *r = arg;
    r->backoff = false;
    if (r->job || !memstore_available(r->ms))
        return;
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        int64_t ids[EMBEDDER_BATCH_MAX];
        size_t max = r->batch_limit ? r->batch_limit : 1;
        int n = mem_waiting_ids(r->ms, r->cursor, r->parked, r->parked_n, ids, max);
        if (n == 0 && r->cursor > 0) {
            r->cursor = 0;
            n = mem_waiting_ids(r->ms, 0, r->parked, r->parked_n, ids, max);
        }
        if (n < 0) {
            note_failure(r, "listing the entities to embed failed");
            r->batch_first = r->cursor;
            back_off(r);
            return;
        }
        if (n == 0 || send_batch(r, ids, (size_t)n) != 0)
            return;
    }
    embedder_wake_after(r->e, 0); /* served from the cache: the rest on the next turn */
}

/* ---- searches --------------------------------------------------------------------------------- */

static void unlink_search(mem_search_req *q)
{
    mem_remote *r = q->r;
    if (q->prev)
        q->prev->next = q->next;
    else if (r->searches == q)
        r->searches = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void search_free(mem_search_req *q)
{
    free(q->agent);
    free(q->workspace);
    free(q->text);
    free(q->scope);
    for (size_t i = 0; q->types && i < q->q.type_count; i++)
        free(q->types[i]);
    free(q->types);
    free(q);
}

/* Runs the search (with the vector, or by text with the note) and answers. */
static void answer(memstore *ms, const mem_caller *c, const mem_search_query *q, const float *qv,
                   const char *note, mem_search_fn cb, void *arg)
{
    json_t *out = NULL;
    cx_error err = {0};
    int rc = mem_search_run(ms, c, q, qv, note, &out, &err);
    cb(rc, rc ? NULL : out, &err, arg);
    json_decref(out);
}

static void on_query(const embedder_answer *a, void *arg)
{
    mem_search_req *q = arg;
    mem_remote *r = q->r;
    memstore *ms = r->ms;
    q->job = NULL;
    unlink_search(q);
    size_t dim = mem_dim(ms);
    char note[NOTE_MAX] = "";
    float *qv = NULL;
    if (a->code != 0)
        snprintf(note, sizeof note, "%s: %s", a->reason, a->detail);
    else if (a->dim != dim)
        snprintf(note, sizeof note, "the query's vector has %zu dimensions, the stored ones %zu",
                 a->dim, dim);
    else if (!(qv = malloc(dim * sizeof *qv)))
        snprintf(note, sizeof note, "out of memory");
    if (qv) {
        memcpy(qv, a->vectors, dim * sizeof *qv);
        embed_normalise(qv, dim);
    }
    if (a->code == 0 && r->backoff) {
        /* the provider answers again: no need to wait out the backoff */
        r->backoff = false;
        embedder_wake_stop(r->e);
        mem_remote_kick(r);
    }
    answer(ms, &q->c, &q->q, qv, note, q->cb, q->arg);
    free(qv);
    search_free(q);
}

static mem_search_req *search_copy(mem_remote *r, const mem_caller *c, const mem_search_query *q,
                                   mem_search_fn cb, void *arg)
{
    mem_search_req *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->r = r;
    s->cb = cb;
    s->arg = arg;
    s->c = *c;
    s->q = *q;
    s->agent = c->agent ? str_dup(c->agent) : NULL;
    s->workspace = c->workspace ? str_dup(c->workspace) : NULL;
    s->text = str_dup(q->text);
    s->scope = q->scope ? str_dup(q->scope) : NULL;
    s->types = q->type_count ? calloc(q->type_count, sizeof *s->types) : NULL;
    bool ok = (!c->agent || s->agent) && (!c->workspace || s->workspace) && s->text &&
              (!q->scope || s->scope) && (!q->type_count || s->types);
    for (size_t i = 0; ok && i < q->type_count; i++)
        ok = (s->types[i] = str_dup(q->types[i])) != NULL;
    s->c.agent = s->agent;
    s->c.workspace = s->workspace;
    s->q.text = s->text;
    s->q.scope = s->scope;
    s->q.types = (const char *const *)s->types;
    if (!ok) {
        search_free(s);
        return NULL;
    }
    return s;
}

bool mem_remote_cached_query(mem_remote *r, const char *text, float *out, char *note,
                             size_t note_size)
{
    size_t dim = mem_dim(r->ms), d = 0;
    if (mem_vector_count(r->ms) == 0) {
        snprintf(note, note_size, "no entity has a vector from %s yet (%lld waiting)",
                 embedder_id(r->e), (long long)mem_waiting_count(r->ms));
        return false;
    }
    const float *cached = embedder_cache_get(r->e, text, strlen(text), &d);
    if (!cached || d != dim) {
        snprintf(note, note_size, "the query is not in the embedding cache and this search does "
                 "not wait for %s", embedder_id(r->e));
        return false;
    }
    memcpy(out, cached, dim * sizeof *out);
    embed_normalise(out, dim);
    return true;
}

mem_search_req *memstore_search_async(memstore *ms, const mem_caller *c,
                                      const mem_search_query *q, mem_search_fn cb, void *arg)
{
    cx_error err = {0};
    int rc = mem_search_check(ms, c, q, &err);
    if (rc) {
        cb(rc, NULL, &err, arg);
        return NULL;
    }
    embedder *e = mem_embedder(ms);
    if (!embedder_is_remote(e) || q->mode == MEM_SEARCH_TEXT) {
        json_t *out = NULL;
        rc = memstore_search(ms, c, q, &out, &err);
        cb(rc, rc ? NULL : out, &err, arg);
        json_decref(out);
        return NULL;
    }
    mem_remote *r = mem_remote_of(ms);
    size_t dim = mem_dim(ms);
    float *qv = malloc((dim ? dim : 1) * sizeof *qv);
    char note[NOTE_MAX] = "";
    if (!qv) {
        answer(ms, c, q, NULL, "out of memory", cb, arg);
        return NULL;
    }
    /* a cached query, or nothing to compare it with: answered now */
    bool have = mem_remote_cached_query(r, q->text, qv, note, sizeof note);
    if (have || mem_vector_count(ms) == 0) {
        answer(ms, c, q, have ? qv : NULL, note, cb, arg);
        free(qv);
        return NULL;
    }
    free(qv);
    mem_search_req *s = search_copy(r, c, q, cb, arg);
    const char *text = q->text;
    if (s)
        s->job = embedder_submit(e, EMBEDDER_LANE_QUERY, &text, 1, MEM_SEARCH_EMBED_TIMEOUT_MS,
                                 on_query, s, &err);
    if (!s || !s->job) {
        snprintf(note, sizeof note, "%.200s", s ? err.msg : "out of memory");
        if (s)
            search_free(s);
        answer(ms, c, q, NULL, note, cb, arg);
        return NULL;
    }
    s->next = r->searches;
    if (r->searches)
        r->searches->prev = s;
    r->searches = s;
    return s;
}

void memstore_search_cancel(mem_search_req *s)
{
    if (!s)
        return;
    embedder_job_cancel(s->job);
    unlink_search(s);
    search_free(s);
}

/* ---- life ------------------------------------------------------------------------------------- */

mem_remote *mem_remote_new(memstore *ms, embedder *e)
{
    mem_remote *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->ms = ms;
    r->e = e;
    r->batch_limit = embedder_batch(e);
    embedder_set_wake(e, pump, r);
    return r;
}

void mem_remote_free(mem_remote *r)
{
    if (!r)
        return;
    while (r->searches) {
        mem_search_req *s = r->searches;
        embedder_job_cancel(s->job);
        s->job = NULL;
        unlink_search(s);
        answer(r->ms, &s->c, &s->q, NULL, "the memory store is closing", s->cb, s->arg);
        search_free(s);
    }
    embedder_job_cancel(r->job);
    batch_clear(r);
    embedder_wake_stop(r->e);
    embedder_set_wake(r->e, NULL, NULL);
    free(r);
}

void mem_remote_stats(mem_remote *r, memstore_stats *st)
{
    /* every entity has its vector in the index or waits for it: the count
     * (a scan) is only needed while some wait */
    st->embeddings_waiting = st->entities >= 0 && st->vectors == st->entities
                                 ? 0
                                 : mem_waiting_count(r->ms);
    st->embeddings_refused = (int64_t)r->parked_n;
    st->embed_batches = r->batches;
    st->embed_failures = r->fails;
    snprintf(st->embed_last_error, sizeof st->embed_last_error, "%s",
             r->failures || r->parked_n ? r->last_error : "");
}
