/* What memstore.c and memstore_embed.c share: the store's side of remote
 * embeddings. memstore.c owns the database, the vector index and the search;
 * memstore_embed.c owns the queue of entities waiting for vectors and the
 * searches waiting for their query's vector, and reaches the store only
 * through the functions below. Nothing outside src/memory includes this. */
#ifndef CAXTON_MEMORY_MEMSTORE_INTERNAL_H
#define CAXTON_MEMORY_MEMSTORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/embedder.h"
#include "memory/memstore.h"

/* ---- memstore.c, for memstore_embed.c ---- */

embedder *mem_embedder(const memstore *ms);
/* The vectors' dimension (0: a remote embedder has sent none yet) and how
 * many the index holds. */
size_t mem_dim(const memstore *ms);
size_t mem_vector_count(const memstore *ms);
/* Bumped whenever the database is opened or closed: an answer for an older
 * generation is dropped. */
uint64_t mem_generation(const memstore *ms);

/* The text an entity is embedded from ("name\ntype\nnewest observations"),
 * or NULL when it is gone (or on an error). */
char *mem_entity_text(memstore *ms, int64_t id);
/* Up to max entities waiting for a vector from the current embedder, with
 * ids above `after`, in id order, skipping the `skip` ones (sorted). Returns
 * how many were written to ids, or -1 on a database error. */
int mem_waiting_ids(memstore *ms, int64_t after, const int64_t *skip, size_t nskip, int64_t *ids,
                    size_t max);
int64_t mem_waiting_count(memstore *ms);
/* Stores n vectors of dim floats (normalised here) for the entities, in one
 * transaction, and puts them in the index. A dimension other than the
 * store's becomes the store's (the model changed: the older vectors become
 * stale and are queued again). Returns how many were stored, or -1 with err. */
int mem_store_vectors(memstore *ms, const int64_t *ids, float *vecs, size_t n, size_t dim,
                      cx_error *err);

/* Search, split: the checks (arguments, scopes; a refusal is recorded) and
 * the run with the query's vector (normalised, mem_dim floats), or without
 * one (qv NULL: text only, and `note` goes in the result's "vector"). */
int mem_search_check(memstore *ms, const mem_caller *c, const mem_search_query *q,
                     cx_error *err);
int mem_search_run(memstore *ms, const mem_caller *c, const mem_search_query *q, const float *qv,
                   const char *note, json_t **out, cx_error *err);

/* ---- memstore_embed.c, for memstore.c ---- */

typedef struct mem_remote mem_remote;

/* The store's queue (NULL with the builtin embedder); memstore.c. */
mem_remote *mem_remote_of(const memstore *ms);

mem_remote *mem_remote_new(memstore *ms, embedder *e);
/* Answers the searches still waiting (by text) and frees the queue. */
void mem_remote_free(mem_remote *r);
/* The database closed: the batch in flight is forgotten, the queue starts
 * over when it opens again. */
void mem_remote_reset(mem_remote *r);
/* Something may be waiting: send it soon (unless a backoff runs). */
void mem_remote_kick(mem_remote *r);
/* An entity changed: a refusal of its older text no longer holds. */
void mem_remote_changed(mem_remote *r, int64_t id);
/* Reindex: everything set aside is tried again, from the start. */
void mem_remote_restart(mem_remote *r);
/* The queue's fields of st (its entities and vectors already filled). */
void mem_remote_stats(mem_remote *r, memstore_stats *st);
/* The query's vector from the cache (normalised into out, mem_dim floats):
 * true; else false with why it has none in note. */
bool mem_remote_cached_query(mem_remote *r, const char *text, float *out, char *note,
                             size_t note_size);

#endif
