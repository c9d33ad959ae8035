/* The embedded memory store: a knowledge graph per scope in data/memory.db,
 * searched by vector similarity and full text.
 *
 * Scopes are written "agent:NAME", "workspace:NAME" or "global". The access
 * rules (docs/memory.md):
 *   agent:X      read and write: agent X only
 *   workspace:W  read and write: agents whose scope is workspace (or global)
 *                and whose workspace is W
 *   global       read: every agent with memory enabled; write: agents with
 *                memory.global_write
 * The operator (caller->agent == NULL) may do anything; the API audits it.
 * A refused access returns CX_EFORBIDDEN with API code
 * SCOPE_PERMISSION_DENIED and is recorded in scope_violations.
 *
 * Durability: single writes commit with synchronous=FULL before they return;
 * bulk paths (import, reindex) use one transaction.
 *
 * Embeddings: with the builtin embedder (the default) a write computes its
 * entity's vector before it commits, as before. With a remote embedder
 * (memory.embedder openai or ollama, embedder.h) a write commits the entity,
 * its observations, its version and its text index and is acknowledged
 * without waiting for the network; the entity then waits for its vector in
 * the store's queue, which is the database itself (entities without a vector
 * from this embedder, with this dimension), sent in batches, one batch at a
 * time, retried with a backoff of 1 s doubling up to 30 s while the provider
 * fails. A provider that refuses one entity's text (HTTP 400, 413, 422) gets
 * it alone, and then it is set aside until it changes or is reindexed.
 * Searches embed their query first (memstore_search_async); when that fails
 * or takes more than MEM_SEARCH_EMBED_TIMEOUT_MS they rank by text alone and
 * say so: "vector": "unavailable: <reason>".
 *
 * Everything runs on the caller's thread (the server's loop thread); the store
 * is not thread-safe. */
#ifndef CAXTON_MEMORY_MEMSTORE_H
#define CAXTON_MEMORY_MEMSTORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

struct sqlite3;
struct embedder;

extern const char *const memstore_migrations[];
extern const int memstore_migration_count;

#define MEM_NAME_MAX 256        /* bytes of an entity name */
#define MEM_TYPE_MAX 64
#define MEM_SCOPE_MAX 140       /* "workspace:" + 128 */
#define MEM_OBSERVATION_MAX 4096
#define MEM_OBSERVATIONS_PER_WRITE 1000
#define MEM_METADATA_MAX (16u * 1024u)
#define MEM_SEARCH_LIMIT_MAX 100
#define MEM_GRAPH_DEPTH_MAX 5
#define MEM_GRAPH_NODES_MAX 1000
#define MEM_SEARCH_EMBED_TIMEOUT_MS 5000 /* a search waits this long for its query's vector */

/* API codes for the errors the store returns. */
#define MEM_API_SCOPE_DENIED "SCOPE_PERMISSION_DENIED"
#define MEM_API_LIMIT "MEMORY_LIMIT_EXCEEDED"
#define MEM_API_UNAVAILABLE "MEMORY_UNAVAILABLE"

/* The API code for a store error: SCOPE_PERMISSION_DENIED for CX_EFORBIDDEN,
 * MEMORY_LIMIT_EXCEEDED for CX_ELIMIT, MEMORY_UNAVAILABLE for CX_EUNAVAIL,
 * else the general one. */
const char *memstore_api_code(int code);
int memstore_http_status(int code);

typedef enum mem_scope_kind {
    MEM_SCOPE_AGENT,
    MEM_SCOPE_WORKSPACE,
    MEM_SCOPE_GLOBAL,
} mem_scope_kind;

const char *mem_scope_kind_name(mem_scope_kind k); /* "agent" ... */
/* Parses "agent"/"agent-only"/"workspace"/"global"; -1 if unknown. */
int mem_scope_kind_parse(const char *s);

/* Who is asking. agent == NULL is the operator. */
typedef struct mem_caller {
    const char *agent;
    bool enabled;            /* memory.enabled */
    mem_scope_kind scope;    /* the effective scope (file or override) */
    const char *workspace;   /* memory.workspace, default "default" */
    bool global_write;       /* memory.global_write */
    int64_t max_entries;     /* memory.max_entries; 0 = no limit */
} mem_caller;

typedef struct memstore_options {
    const char *path;          /* data/memory.db */
    uint64_t max_size;         /* bytes; 0 = no limit (MEMORY_LIMIT_EXCEEDED past it) */
    uint64_t cache_size;       /* SQLite page cache, bytes */
    uint64_t slow_query_ms;    /* operations slower than this are logged as slow */
    /* The embedder; NULL: the builtin lexical one. The store owns it from
     * memstore_open on (also when the database does not open) and frees it in
     * memstore_close. */
    struct embedder *embedder;
} memstore_options;

typedef struct memstore memstore;

/* Opens (creating if needed), applies migrations, loads every vector into
 * the index, and embeds (and indexes for full text) entities whose vectors or
 * FTS rows are missing or were made by another embedder. A database that
 * cannot be opened (damaged, unreadable) still gives a store, unavailable,
 * with the reason in memstore_last_error(): the server keeps running and the
 * recovery operations can repair the files and resume it. NULL only when out
 * of memory or opt->path is missing. */
memstore *memstore_open(const memstore_options *opt, cx_error *err);
const char *memstore_last_error(const memstore *ms); /* "" when none */
void memstore_close(memstore *ms);
const char *memstore_path(const memstore *ms);
struct sqlite3 *memstore_sqlite(memstore *ms); /* NULL while quiesced */

/* Quiesce: closes the database (the files may then be replaced); every call
 * fails with CX_EUNAVAIL / MEMORY_UNAVAILABLE until resume reopens them. */
void memstore_quiesce(memstore *ms);
int memstore_resume(memstore *ms, cx_error *err);
bool memstore_available(const memstore *ms);

/* Scope checks. Builds "agent:NAME" etc. for the caller's own scope. */
void mem_caller_default_scope(const mem_caller *c, char out[MEM_SCOPE_MAX + 1]);
/* Validates a scope string; fills kind and the name after the colon. */
int mem_scope_parse(const char *scope, mem_scope_kind *kind, const char **name,
                    cx_error *err);
bool mem_can_read(const mem_caller *c, const char *scope);
bool mem_can_write(const mem_caller *c, const char *scope);

/* The operator's override of an agent's scope, if any (memory scope-reset). */
int memstore_scope_override(memstore *ms, const char *agent, mem_scope_kind *scope,
                            char **workspace, cx_error *err); /* 1 found, 0 none */
int memstore_scope_reset(memstore *ms, const char *agent, mem_scope_kind scope,
                         const char *workspace, cx_error *err);

/* Entities. `req` is the JSON body of POST /memory/entities or the
 * memory_store tool: {scope?, name, type?, observations?: [str],
 * remove_observations?: [str], confidence?, metadata?}. Creates or merges
 * (new observations appended, exact duplicates skipped; type, confidence and
 * metadata replaced when given; version + 1 when anything changed).
 * *out = the entity view. */
int memstore_entity_put(memstore *ms, const mem_caller *c, const json_t *req, json_t **out,
                        cx_error *err);
/* The entity view: {scope, name, type, confidence, metadata, version,
 * created_at, updated_at, created_by, observation_count, observations:
 * [{text, at}] (newest `obs_limit`, oldest first), history?: [...]} */
int memstore_entity_get(memstore *ms, const mem_caller *c, const char *scope, const char *name,
                        bool history, size_t obs_limit, json_t **out, cx_error *err);
int memstore_entity_delete(memstore *ms, const mem_caller *c, const char *scope,
                           const char *name, cx_error *err);
/* memory.retention: deletes the entities `agent` created that nobody has
 * updated since cutoff_ms (at most `max` per call, oldest first; their
 * observations, versions, relations and vectors go with them). *deleted gets
 * how many. */
int memstore_apply_retention(memstore *ms, const char *agent, uint64_t cutoff_ms, size_t max,
                             int64_t *deleted, cx_error *err);
/* Relations: {scope?, from, to, type, strength?, to_scope?}. `to` lives in
 * the same scope or (to_scope "global") in global. */
int memstore_relation_put(memstore *ms, const mem_caller *c, const json_t *req, json_t **out,
                          cx_error *err);

typedef enum mem_search_mode {
    MEM_SEARCH_HYBRID,
    MEM_SEARCH_VECTOR,
    MEM_SEARCH_TEXT,
} mem_search_mode;

typedef struct mem_search_query {
    const char *text;
    const char *scope;            /* NULL: every scope the caller may read */
    const char *const *types;     /* NULL/0: any type */
    size_t type_count;
    uint64_t since_ms, until_ms;  /* on updated_at; 0 = open */
    size_t limit;                 /* default 10, max 100 */
    double min_score;             /* on the fused score, 0..1 */
    int depth;                    /* graph expansion; 0 = none, max 5 */
    mem_search_mode mode;
} mem_search_query;

/* *out = {results: [{scope, name, type, score, vector_score, text_rank,
 * observations: [last 3 texts]}], expanded: [...], took_ms, vector?}.
 * `vector` is there only when the vector half could not be used: "unavailable:
 * <reason>", and the results are ranked by text alone. With a remote embedder
 * this synchronous search has the query's vector only when it is in the
 * embedder's cache; otherwise it answers by text (callers that can wait use
 * memstore_search_async). */
int memstore_search(memstore *ms, const mem_caller *c, const mem_search_query *q, json_t **out,
                    cx_error *err);

/* The answer of an asynchronous search: rc 0 and the result (as
 * memstore_search; borrowed: take a reference to keep it), or the error
 * (invalid query, scope denied, store unavailable) in err. A query that cannot
 * be embedded is not an error: see `vector` above. */
typedef void (*mem_search_fn)(int rc, json_t *result, const cx_error *err, void *arg);
typedef struct mem_search_req mem_search_req;

/* A search that embeds its query first. When the answer is known at once (the
 * builtin embedder, a query in the cache, mode=text, no vectors stored yet,
 * an error) cb runs before this returns and NULL is returned; otherwise cb
 * runs later on the loop, at most MEM_SEARCH_EMBED_TIMEOUT_MS later, and the
 * request is returned so the caller can cancel it. The caller and query are
 * copied. memstore_close answers the searches still waiting (by text). */
mem_search_req *memstore_search_async(memstore *ms, const mem_caller *c,
                                      const mem_search_query *q, mem_search_fn cb, void *arg);
/* Forgets a waiting search: its callback will not run. */
void memstore_search_cancel(mem_search_req *r);
/* The graph around an entity, breadth first up to depth: {root, nodes, edges}. */
int memstore_graph(memstore *ms, const mem_caller *c, const char *scope, const char *name,
                   int depth, json_t **out, cx_error *err);

/* A short text of the top memories for an agent's context, or NULL when
 * there are none (never fails the caller; errors are logged and counted).
 * Synchronous: with a remote embedder it ranks by text unless the query is
 * cached (agents use memstore_search_async and memstore_context_text). */
char *memstore_context_for(memstore *ms, const mem_caller *c, const char *query, size_t limit,
                           size_t max_chars);
/* The context text of a search result: one line per hit (name, type, scope,
 * newest observations) while they fit max_chars; NULL when none. */
char *memstore_context_text(const json_t *result, size_t max_chars);

/* Rebuilds embeddings (all, or one scope / one agent's entities), the vector
 * index and the FTS index. With a remote embedder the FTS rows are rebuilt
 * at once and the entities are queued for new vectors (the cache is emptied
 * first): the report says how many were queued. */
int memstore_reindex(memstore *ms, const char *scope_prefix, json_t **report, cx_error *err);

/* Scope violations: record (also done internally) and list. */
void memstore_violation(memstore *ms, const char *agent, const char *scope,
                        const char *operation, const char *detail);
int memstore_violations_json(memstore *ms, uint64_t since_ms, const char *agent, size_t limit,
                             json_t **out, cx_error *err);

/* Counters for metrics and resource-usage. */
typedef struct memstore_stats {
    uint64_t searches, search_ns_total, writes, write_errors, violations, slow_queries;
    uint64_t search_hist[12];   /* search latency buckets, see MEMSTORE_SEARCH_BUCKETS */
    int64_t entities, relations, vectors;
    uint64_t db_bytes, wal_bytes, index_bytes;
    uint64_t max_size;
    bool available;
    /* the embedder */
    const char *embedder;        /* its id (valid while the store lives) */
    bool embedder_remote;
    int64_t dim;                 /* of the vectors; 0 while a remote embedder has sent none */
    int64_t embeddings_waiting;  /* remote: entities without a vector from it yet */
    int64_t embeddings_refused;  /* remote: entities the provider refused, set aside */
    uint64_t embed_batches, embed_failures;
    char embed_last_error[256];  /* the last failure, "" when none */
} memstore_stats;
extern const double memstore_search_buckets[12]; /* seconds, upper bounds */
void memstore_get_stats(memstore *ms, memstore_stats *out);
/* Entities per scope: {scope: count}. */
int memstore_scope_counts(memstore *ms, json_t **out, cx_error *err);
/* Slow operations kept in memory (last 256): [{at, op, ms, detail}]. */
json_t *memstore_slow_queries(memstore *ms, uint64_t threshold_ms);
/* Changes the SQLite page cache size live. */
int memstore_set_cache(memstore *ms, uint64_t bytes, cx_error *err);
uint64_t memstore_cache_size(const memstore *ms);

#endif
