/* Remote embedders for the memory store: texts to vectors through an LLM
 * provider's embeddings API (llm_embed), with batching and an LRU cache.
 *
 * `memory.embedder` picks the embedder. `builtin` (the default) is the
 * lexical one of embed.h, computed inside each write; it needs none of this.
 * `openai` and `ollama` call the provider named by memory.embedding.provider
 * (default: the first provider of that type in llm.providers) with
 * memory.embedding.model. Their id, stored with every vector, is
 * "openai:<model>" / "ollama:<model>"; the dimension is whatever the model
 * answers (the store learns it from the first vector).
 *
 * Work comes in jobs of one or more texts, in one of two lanes: QUERY (a
 * search waiting for its query's vector) and BULK (the store's queue of
 * entities waiting for theirs). Each lane keeps at most one request in flight
 * and sends the jobs waiting in it together, up to memory.embedding.batch
 * texts and EMBEDDER_BATCH_BYTES per request, on the next loop turn. Two
 * lanes, so a search never waits behind a backlog of entities, and one
 * request per lane, so a backlog never floods the provider: the provider's
 * own max_concurrency still bounds both. A job's callback runs on the loop,
 * never inside embedder_submit or embedder_job_cancel, once: with the
 * vectors, with the failure, or with a timeout after its deadline.
 *
 * Every vector that arrives is cached by the text's SHA-256 (the last
 * memory.embedding.cache texts, least recently used first out), so a repeated
 * query or an unchanged entity costs no request. Texts are cut to
 * EMBEDDER_TEXT_MAX bytes (at a character boundary) before anything else.
 *
 * Loop thread only. The embedder owns uv handles: embedder_free closes them
 * and the memory is released once the loop has run the closes. */
#ifndef CAXTON_MEMORY_EMBEDDER_H
#define CAXTON_MEMORY_EMBEDDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/error.h"
#include "llm/llm.h"

#define EMBEDDER_BATCH_DEFAULT 64
#define EMBEDDER_BATCH_MAX 512
#define EMBEDDER_CACHE_DEFAULT 1024
#define EMBEDDER_CACHE_MAX 1000000
#define EMBEDDER_TEXT_MAX (8u * 1024u)       /* bytes of one text sent */
#define EMBEDDER_BATCH_BYTES (256u * 1024u)  /* bytes of texts in one request */
#define EMBEDDER_ID_MAX 320                  /* "openai:" + a model name */

/* memory.embedder and memory.embedding.* */
typedef struct embedder_config {
    const char *kind;     /* "builtin" (or NULL), "openai", "ollama" */
    const char *provider; /* a name in llm.providers; NULL or "": the first of that type */
    const char *model;    /* the embedding model; required for openai and ollama */
    size_t batch;         /* texts per request, 1..EMBEDDER_BATCH_MAX; 0: the default */
    size_t cache;         /* vectors cached; 0: none */
} embedder_config;

struct cx_config;
/* memory.embedder and memory.embedding.* of a loaded configuration. */
embedder_config embedder_config_of(const struct cx_config *cfg);

/* Checks the memory embedder settings against llm.providers: a model for a
 * remote embedder, a provider of the embedder's type. Appends one line per
 * problem to a new array in *errors ("memory.embedding.model: ...") and
 * returns their number. */
size_t embedder_config_check(const embedder_config *cfg, const json_t *providers,
                             json_t **errors);

typedef struct embedder embedder;

/* NULL with err for a configuration embedder_config_check refuses (CX_ECONFIG)
 * or no memory. For `builtin` loop and llm may be NULL. */
embedder *embedder_new(const embedder_config *cfg, const json_t *providers, uv_loop_t *loop,
                       llm_client *llm, cx_error *err);
/* Cancels everything in flight (no callback runs) and closes the handles. */
void embedder_free(embedder *e);

const char *embedder_id(const embedder *e);       /* "builtin-lexical-v1", "openai:m" */
const char *embedder_provider(const embedder *e); /* NULL for builtin */
bool embedder_is_remote(const embedder *e);       /* false for NULL */
size_t embedder_batch(const embedder *e);

/* The cached vector of text (made current), or NULL; *dim gets its length. */
const float *embedder_cache_get(embedder *e, const char *text, size_t len, size_t *dim);
void embedder_cache_clear(embedder *e);

typedef enum embedder_lane {
    EMBEDDER_LANE_QUERY,
    EMBEDDER_LANE_BULK,
} embedder_lane;

typedef struct embedder_answer {
    int code;               /* 0, or a CX_E* code */
    const char *reason;     /* LLM_REASON_* when code != 0 */
    const char *detail;     /* for the operator; "" on success */
    long http_status;       /* of the provider's last answer; 0 when none */
    const float *vectors;   /* count * dim, in the order of the job's texts */
    size_t count, dim;
} embedder_answer;

typedef void (*embedder_done_fn)(const embedder_answer *a, void *arg);
typedef struct embedder_job embedder_job;

/* Embeds texts (copied; 1..EMBEDDER_BATCH_MAX, not empty). timeout_ms > 0
 * bounds the wait (then the answer is a timeout); 0 leaves it to the
 * provider's timeout and retries. NULL with err when the job cannot be
 * taken (not a remote embedder, bad texts, shutting down, no memory). */
embedder_job *embedder_submit(embedder *e, embedder_lane lane, const char *const *texts,
                              size_t count, uint64_t timeout_ms, embedder_done_fn done,
                              void *arg, cx_error *err);
/* Forgets the job: its callback will not run. A request already sent goes
 * on and its vectors still fill the cache. (A request's deadline is the
 * soonest of its jobs': a timeout ends the request too, so a provider that
 * hangs does not hold the lane past the waits of the jobs in it.) */
void embedder_job_cancel(embedder_job *j);

/* One timer for the owner's own pacing (the store's queue): fn(arg) runs on
 * the loop after ms; a new call replaces the previous wait. */
void embedder_set_wake(embedder *e, void (*fn)(void *arg), void *arg);
void embedder_wake_after(embedder *e, uint64_t ms);
void embedder_wake_stop(embedder *e);
bool embedder_wake_pending(const embedder *e);

/* {id, provider, model, batch, cache: {size, entries, hits, misses}, requests,
 * texts, errors, in_flight, last_error} */
json_t *embedder_stats_json(const embedder *e);

#endif
