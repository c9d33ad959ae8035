/* The memory store: open and migrate memory.db, keep the vector index in
 * step with it, enforce scopes on every read and write.
 *
 * Derived data (the embeddings table, the FTS rows, the in-memory vector
 * index) is rebuilt from the entities and observations whenever it is found
 * missing or stale, so an import, a salvage or a changed embedder heal at the
 * next open instead of needing a separate step. With a remote embedder the
 * vectors are not computed here: entities without a current one wait for
 * memstore_embed.c, and the `meta` table remembers the embedder ('embedder')
 * and the dimension its model answers ('embedder_dim'). */
#include "memory/memstore.h"

#include <ctype.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "core/map.h"
#include "core/util.h"
#include "memory/embed.h"
#include "memory/embedder.h"
#include "memory/memstore_internal.h"
#include "memory/vindex.h"

#define BODY_MAX (64u * 1024u)     /* observation text fed to FTS and the embedder */
#define SLOW_RING 256
#define RRF_K 60.0
#define CANDIDATES_MAX 1000
#define EDGES_MAX 2000
#define HISTORY_MAX_TEXT "100"    /* versions shown by history */
#define VIOLATIONS_KEPT 100000    /* rows kept in scope_violations */

const double memstore_search_buckets[12] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                            0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

typedef struct slow_entry {
    uint64_t at_ms, ms;
    char op[24];
    char detail[104];
} slow_entry;

struct memstore {
    sqlite3 *db;
    char *path;
    memstore_options opt;
    vindex *vi;           /* ms->dim wide; a 1-wide empty one while dim is 0 */
    embedder *emb;        /* NULL: builtin */
    bool remote;          /* vectors come from emb, through remote_q */
    const char *emb_id;
    size_t dim;           /* of the vectors; 0 until a remote embedder answers */
    float *scratch;       /* VINDEX_MAX_DIM floats */
    uint64_t gen;         /* bumped when the database opens or closes */
    mem_remote *remote_q;
    map scope_ids;        /* scope text -> (void *)(id + 1) */
    char **scope_names;   /* id -> scope text */
    size_t scope_count, scope_cap;
    memstore_stats st;
    slow_entry slow[SLOW_RING];
    size_t slow_next, slow_total;
    char last_error[CX_ERROR_MSG_MAX];
};

const char *memstore_api_code(int code)
{
    switch (code) {
    case CX_EFORBIDDEN: return MEM_API_SCOPE_DENIED;
    case CX_ELIMIT: return MEM_API_LIMIT;
    case CX_EUNAVAIL: return MEM_API_UNAVAILABLE;
    default: return cx_error_api_code(code);
    }
}

int memstore_http_status(int code)
{
    return code == CX_ELIMIT ? 507 : cx_error_http_status(code);
}

/* ------------------------------------------------------------------ scopes */

const char *mem_scope_kind_name(mem_scope_kind k)
{
    switch (k) {
    case MEM_SCOPE_AGENT: return "agent";
    case MEM_SCOPE_WORKSPACE: return "workspace";
    case MEM_SCOPE_GLOBAL: return "global";
    }
    return "?";
}

int mem_scope_kind_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcmp(s, "agent") == 0 || strcmp(s, "agent-only") == 0)
        return MEM_SCOPE_AGENT;
    if (strcmp(s, "workspace") == 0)
        return MEM_SCOPE_WORKSPACE;
    if (strcmp(s, "global") == 0)
        return MEM_SCOPE_GLOBAL;
    return -1;
}

static bool scope_name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 128)
        return false;
    for (const char *p = n; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

int mem_scope_parse(const char *scope, mem_scope_kind *kind, const char **name, cx_error *err)
{
    if (!scope || !*scope)
        return cx_error_set(err, CX_EINVAL, "scope: missing (agent:NAME, workspace:NAME or global)");
    if (strcmp(scope, "global") == 0) {
        *kind = MEM_SCOPE_GLOBAL;
        *name = "";
        return 0;
    }
    const char *rest = NULL;
    if (str_has_prefix(scope, "agent:")) {
        *kind = MEM_SCOPE_AGENT;
        rest = scope + 6;
    } else if (str_has_prefix(scope, "workspace:")) {
        *kind = MEM_SCOPE_WORKSPACE;
        rest = scope + 10;
    }
    if (!rest || !scope_name_ok(rest)) {
        char q[80];
        text_quote(scope, q, sizeof q);
        return cx_error_set(err, CX_EINVAL,
                            "scope: %s is not agent:NAME, workspace:NAME or global (NAME: 1-128 "
                            "of A-Z a-z 0-9 . _ -)",
                            q);
    }
    *name = rest;
    return 0;
}

void mem_caller_default_scope(const mem_caller *c, char out[MEM_SCOPE_MAX + 1])
{
    if (!c->agent) {
        snprintf(out, MEM_SCOPE_MAX + 1, "global");
        return;
    }
    switch (c->scope) {
    case MEM_SCOPE_AGENT: snprintf(out, MEM_SCOPE_MAX + 1, "agent:%.128s", c->agent); break;
    case MEM_SCOPE_WORKSPACE:
    case MEM_SCOPE_GLOBAL:
        /* a global-scope agent still keeps its own facts in its workspace;
         * global is written only when asked for by name */
        snprintf(out, MEM_SCOPE_MAX + 1, "workspace:%.128s",
                 c->workspace && *c->workspace ? c->workspace : "default");
        break;
    }
}

static bool access_ok(const mem_caller *c, const char *scope, bool write)
{
    if (!c->agent)
        return true;
    if (!c->enabled)
        return false;
    mem_scope_kind kind;
    const char *name;
    if (mem_scope_parse(scope, &kind, &name, NULL) != 0)
        return false;
    switch (kind) {
    case MEM_SCOPE_AGENT: return strcmp(name, c->agent) == 0;
    case MEM_SCOPE_WORKSPACE:
        return c->scope != MEM_SCOPE_AGENT &&
               strcmp(name, c->workspace && *c->workspace ? c->workspace : "default") == 0;
    case MEM_SCOPE_GLOBAL: return write ? c->global_write : true;
    }
    return false;
}

bool mem_can_read(const mem_caller *c, const char *scope) { return access_ok(c, scope, false); }
bool mem_can_write(const mem_caller *c, const char *scope) { return access_ok(c, scope, true); }

/* --------------------------------------------------------------- plumbing */

static int sql_fail(memstore *ms, cx_error *err, const char *what)
{
    int code = sqlite3_extended_errcode(ms->db);
    int primary = code & 0xff;
    int cx = primary == SQLITE_FULL ? CX_ELIMIT : primary == SQLITE_BUSY ? CX_EBUSY : CX_EIO;
    if (primary == SQLITE_FULL)
        return cx_error_set(err, cx, "memory database: %s: the disk is full (%s)", what,
                            sqlite3_errmsg(ms->db));
    if (primary == SQLITE_READONLY)
        return cx_error_set(err, CX_EUNAVAIL,
                            "memory database: %s: the file or its directory is read-only (%s); "
                            "check the data dir's owner and mode",
                            what, sqlite3_errmsg(ms->db));
    return cx_error_set(err, cx, "memory database: %s: %s", what, sqlite3_errmsg(ms->db));
}

static int unavailable(memstore *ms, cx_error *err)
{
    return cx_error_set(err, CX_EUNAVAIL, "the memory system is unavailable%s%s",
                        ms->last_error[0] ? ": " : "", ms->last_error);
}

static sqlite3_stmt *prep(memstore *ms, const char *sql, cx_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ms->db, sql, -1, &st, NULL) != SQLITE_OK) {
        sql_fail(ms, err, "prepare");
        return NULL;
    }
    return st;
}

static int exec(memstore *ms, const char *sql, cx_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(ms->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sqlite3_free(msg);
        return sql_fail(ms, err, "statement");
    }
    return 0;
}

static void rollback(memstore *ms)
{
    if (ms->db && !sqlite3_get_autocommit(ms->db))
        sqlite3_exec(ms->db, "ROLLBACK", NULL, NULL, NULL);
}

static void note_slow(memstore *ms, const char *op, uint64_t start_ns, const char *detail)
{
    uint64_t ms_taken = (time_monotonic_ns() - start_ns) / 1000000u;
    if (ms->opt.slow_query_ms == 0 || ms_taken < ms->opt.slow_query_ms)
        return;
    slow_entry *e = &ms->slow[ms->slow_next];
    ms->slow_next = (ms->slow_next + 1) % SLOW_RING;
    ms->slow_total++;
    ms->st.slow_queries++;
    e->at_ms = time_now_ms();
    e->ms = ms_taken;
    snprintf(e->op, sizeof e->op, "%s", op);
    snprintf(e->detail, sizeof e->detail, "%s", detail ? detail : "");
    log_warn("memory", "slow memory %s: %llu ms (%s)", op, (unsigned long long)ms_taken,
             e->detail);
}

static uint32_t scope_id(memstore *ms, const char *scope, bool create)
{
    void *v = map_get(&ms->scope_ids, scope);
    if (v)
        return (uint32_t)((uintptr_t)v - 1);
    if (!create)
        return UINT32_MAX;
    if (ms->scope_count == ms->scope_cap) {
        size_t cap = ms->scope_cap ? ms->scope_cap * 2 : 16;
        char **n = realloc(ms->scope_names, cap * sizeof *n);
        if (!n)
            return UINT32_MAX;
        ms->scope_names = n;
        ms->scope_cap = cap;
    }
    char *copy = str_dup(scope);
    if (!copy || map_put(&ms->scope_ids, scope, (void *)(uintptr_t)(ms->scope_count + 1), NULL)) {
        free(copy);
        return UINT32_MAX;
    }
    ms->scope_names[ms->scope_count] = copy;
    return (uint32_t)ms->scope_count++;
}

static void time_text(uint64_t ms, char out[40]) { time_format_rfc3339(ms, out, 40); }

/* ------------------------------------------------------------ derived data */

/* The newest observations, newest first, joined by newlines, at most
 * BODY_MAX bytes: what FTS and the embedder see of an entity. */
static char *entity_body(memstore *ms, int64_t id)
{
    sqlite3_stmt *st = prep(ms,
                            "SELECT text FROM observations WHERE entity_id = ? AND removed_at IS "
                            "NULL ORDER BY id DESC",
                            NULL);
    if (!st)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appends(&sb, "");
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        if (!t || sb.len + len + 1 > BODY_MAX)
            break;
        if (sb.len)
            strbuf_append(&sb, "\n", 1);
        strbuf_append(&sb, t, len);
    }
    sqlite3_finalize(st);
    return strbuf_detach(&sb);
}

/* "name\ntype\nbody": what an entity is embedded from. */
static char *join_text(const char *name, const char *type, const char *body)
{
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appendf(&sb, "%s\n%s\n%s", name, type, body);
    return strbuf_detach(&sb);
}

/* Replaces the vector index with an empty one dim wide (1 while unknown). */
static int set_dim(memstore *ms, size_t dim)
{
    vindex *vi = vindex_new(dim ? dim : 1);
    if (!vi)
        return -1;
    vindex_free(ms->vi);
    ms->vi = vi;
    ms->dim = dim;
    return 0;
}

static int put_vector_row(memstore *ms, int64_t id, const float *vec, size_t dim, cx_error *err)
{
    sqlite3_stmt *st = prep(ms,
                            "INSERT INTO embeddings(entity_id, embedder, dim, vector) VALUES (?, "
                            "?, ?, ?) ON CONFLICT(entity_id) DO UPDATE SET embedder = "
                            "excluded.embedder, dim = excluded.dim, vector = excluded.vector",
                            err);
    if (!st)
        return CX_EIO;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, ms->emb_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, (int)dim);
    sqlite3_bind_blob(st, 4, vec, (int)(dim * sizeof(float)), SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sql_fail(ms, err, "storing an embedding");
    sqlite3_finalize(st);
    return rc;
}

static int drop_vector_row(memstore *ms, int64_t id, cx_error *err)
{
    sqlite3_stmt *st = prep(ms, "DELETE FROM embeddings WHERE entity_id = ?", err);
    if (!st)
        return CX_EIO;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sql_fail(ms, err, "dropping an embedding");
    sqlite3_finalize(st);
    return rc;
}

/* The entity's vector: the builtin one computed now, or a remote one from
 * the embedder's cache; without one the entity's row is dropped and it waits
 * in the queue. *have_vec says which. */
static int embed_entity(memstore *ms, int64_t id, const char *text, float *vec, bool *have_vec,
                        cx_error *err)
{
    *have_vec = false;
    if (!ms->remote) {
        if (embed_builtin(text, strlen(text), vec) != 0)
            return cx_error_set(err, CX_ENOMEM, "out of memory embedding an entity");
        *have_vec = true;
        return put_vector_row(ms, id, vec, EMBED_BUILTIN_DIM, err);
    }
    size_t dim = 0;
    const float *cached = ms->dim ? embedder_cache_get(ms->emb, text, strlen(text), &dim) : NULL;
    if (cached && dim == ms->dim) {
        memcpy(vec, cached, dim * sizeof *vec);
        embed_normalise(vec, dim);
        *have_vec = true;
        return put_vector_row(ms, id, vec, dim, err);
    }
    return drop_vector_row(ms, id, err);
}

/* Writes the FTS row and the embedding of one entity (inside the caller's
 * transaction) and returns its vector in vec (ms->scratch wide) when it has
 * one now (*have_vec). */
static int index_entity(memstore *ms, int64_t id, const char *name, const char *type, float *vec,
                        bool *have_vec, cx_error *err)
{
    *have_vec = false;
    char *body = entity_body(ms, id);
    if (!body)
        return sql_fail(ms, err, "reading observations");
    int rc = 0;
    sqlite3_stmt *st = prep(ms, "DELETE FROM entities_fts WHERE rowid = ?", err);
    if (!st) {
        free(body);
        return CX_EIO;
    }
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sql_fail(ms, err, "updating the text index");
    sqlite3_finalize(st);
    if (!rc) {
        st = prep(ms, "INSERT INTO entities_fts(rowid, name, type, body) VALUES (?, ?, ?, ?)", err);
        if (!st)
            rc = CX_EIO;
        else {
            sqlite3_bind_int64(st, 1, id);
            sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, body, -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = sql_fail(ms, err, "updating the text index");
            sqlite3_finalize(st);
        }
    }
    char *text = rc ? NULL : join_text(name, type, body);
    free(body);
    if (!rc && !text)
        rc = cx_error_set(err, CX_ENOMEM, "out of memory embedding an entity");
    if (!rc)
        rc = embed_entity(ms, id, text, vec, have_vec, err);
    free(text);
    return rc;
}

/* After a commit: the index follows the entity's vector, or its absence
 * (then the queue of a remote embedder is told). */
static void index_follow(memstore *ms, int64_t id, const char *scope, const float *vec,
                         bool have_vec)
{
    if (have_vec) {
        uint32_t sid = scope_id(ms, scope, true);
        if (sid != UINT32_MAX)
            vindex_put(ms->vi, id, sid, vec);
        return;
    }
    vindex_remove(ms->vi, id);
    if (ms->remote_q)
        mem_remote_changed(ms->remote_q, id);
}

typedef struct index_item {
    int64_t id;
    char *name, *type, *scope;
} index_item;

static void index_items_free(index_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].name);
        free(items[i].type);
        free(items[i].scope);
    }
    free(items);
}

/* The entities a select (id, name, type, scope) lists, collected first:
 * writing while stepping a read of the same tables is allowed, but would see
 * its own rows for some selects. */
static int collect_items(memstore *ms, const char *select_sql, const char *bind,
                         index_item **out, size_t *count, cx_error *err)
{
    *out = NULL;
    *count = 0;
    sqlite3_stmt *st = prep(ms, select_sql, err);
    if (!st)
        return CX_EIO;
    if (bind)
        sqlite3_bind_text(st, 1, bind, -1, SQLITE_STATIC);
    index_item *items = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            index_item *ni = realloc(items, ncap * sizeof *ni);
            if (!ni) {
                rc = SQLITE_NOMEM;
                break;
            }
            items = ni;
            cap = ncap;
        }
        items[n].id = sqlite3_column_int64(st, 0);
        items[n].name = str_dup((const char *)sqlite3_column_text(st, 1));
        items[n].type = str_dup((const char *)sqlite3_column_text(st, 2));
        items[n].scope = str_dup((const char *)sqlite3_column_text(st, 3));
        n++;
    }
    sqlite3_finalize(st);
    *out = items;
    *count = n;
    return rc == SQLITE_DONE ? 0 : sql_fail(ms, err, "listing entities to index");
}

/* The stored vector of an entity from the current embedder into vec. */
static bool read_vector(memstore *ms, int64_t id, float *vec)
{
    sqlite3_stmt *g = prep(ms,
                           "SELECT vector FROM embeddings WHERE entity_id = ? AND embedder = ? "
                           "AND dim = ?",
                           NULL);
    if (!g)
        return false;
    sqlite3_bind_int64(g, 1, id);
    sqlite3_bind_text(g, 2, ms->emb_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(g, 3, (int)ms->dim);
    bool ok = ms->dim && sqlite3_step(g) == SQLITE_ROW &&
              sqlite3_column_bytes(g, 0) == (int)(ms->dim * sizeof(float));
    if (ok)
        memcpy(vec, sqlite3_column_blob(g, 0), ms->dim * sizeof(float));
    sqlite3_finalize(g);
    return ok;
}

/* Re-indexes the entities the query selects (id, name, type, scope), in one
 * transaction; the vector index follows after the commit. *queued: how many
 * were left waiting for a remote embedder. */
static int reindex_where(memstore *ms, const char *select_sql, const char *bind, int64_t *count,
                         int64_t *queued, cx_error *err)
{
    *count = 0;
    if (queued)
        *queued = 0;
    index_item *items = NULL;
    size_t n = 0;
    int rc = collect_items(ms, select_sql, bind, &items, &n, err);
    float *vec = ms->scratch;
    if (!rc && n)
        rc = exec(ms, "BEGIN IMMEDIATE", err);
    bool began = !rc && n;
    for (size_t i = 0; !rc && i < n; i++) {
        bool have_vec;
        if (!items[i].name || !items[i].type || !items[i].scope)
            rc = cx_error_set(err, CX_ENOMEM, "out of memory indexing entities");
        else
            rc = index_entity(ms, items[i].id, items[i].name, items[i].type, vec, &have_vec,
                              err);
    }
    if (began)
        rc = rc ? (rollback(ms), rc) : exec(ms, "COMMIT", err);
    if (!rc) {
        /* the embeddings just written; read them back rather than keep n vectors */
        for (size_t i = 0; i < n; i++) {
            bool have_vec = read_vector(ms, items[i].id, vec);
            if (!have_vec && queued)
                (*queued)++;
            index_follow(ms, items[i].id, items[i].scope, vec, have_vec);
        }
        *count = (int64_t)n;
    }
    index_items_free(items, n);
    return rc;
}

static bool meta_get(memstore *ms, const char *key, char *out, size_t size)
{
    sqlite3_stmt *st = prep(ms, "SELECT value FROM meta WHERE key = ?", NULL);
    if (!st)
        return false;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    bool found = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0);
    if (found)
        snprintf(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return found;
}

static int meta_set(memstore *ms, const char *key, const char *value, cx_error *err)
{
    sqlite3_stmt *st = prep(ms,
                            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO "
                            "UPDATE SET value = excluded.value",
                            err);
    if (!st)
        return CX_EIO;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sql_fail(ms, err, "recording the embedder");
    sqlite3_finalize(st);
    return rc;
}

/* meta: the embedder whose vectors the database holds, and their dimension. */
static int meta_set_embedder(memstore *ms, size_t dim, cx_error *err)
{
    char have[EMBEDDER_ID_MAX], have_dim[32], want_dim[32];
    snprintf(want_dim, sizeof want_dim, "%zu", dim);
    if (meta_get(ms, "embedder", have, sizeof have) && strcmp(have, ms->emb_id) == 0 &&
        meta_get(ms, "embedder_dim", have_dim, sizeof have_dim) &&
        strcmp(have_dim, want_dim) == 0)
        return 0;
    if (meta_set(ms, "embedder", ms->emb_id, err) || meta_set(ms, "embedder_dim", want_dim, err))
        return CX_EIO;
    return 0;
}

/* The dimension the current embedder's vectors have: the builtin's, or what
 * a remote one answered before (meta), or 0 when it has not yet. */
static size_t known_dim(memstore *ms)
{
    if (!ms->remote)
        return EMBED_BUILTIN_DIM;
    char id[EMBEDDER_ID_MAX], dim[32];
    if (!meta_get(ms, "embedder", id, sizeof id) || strcmp(id, ms->emb_id) != 0 ||
        !meta_get(ms, "embedder_dim", dim, sizeof dim))
        return 0;
    char *end;
    unsigned long d = strtoul(dim, &end, 10);
    return *end || d == 0 || d > VINDEX_MAX_DIM ? 0 : (size_t)d;
}

static int load_current(memstore *ms, cx_error *err)
{
    sqlite3_stmt *st = prep(ms,
                            "SELECT m.entity_id, e.scope, m.vector FROM embeddings m JOIN "
                            "entities e ON e.id = m.entity_id WHERE m.embedder = ? AND m.dim = ?",
                            err);
    if (!st)
        return CX_EIO;
    sqlite3_bind_text(st, 1, ms->emb_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)ms->dim);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 2) != (int)(ms->dim * sizeof(float)))
            continue; /* a damaged blob: embedded again */
        uint32_t sid = scope_id(ms, (const char *)sqlite3_column_text(st, 1), true);
        if (sid == UINT32_MAX ||
            vindex_put(ms->vi, sqlite3_column_int64(st, 0), sid, sqlite3_column_blob(st, 2))) {
            sqlite3_finalize(st);
            return cx_error_set(err, CX_ENOMEM, "out of memory loading the vector index");
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(ms, err, "loading the vector index");
}

static int load_vectors(memstore *ms, cx_error *err)
{
    if (set_dim(ms, known_dim(ms)) != 0)
        return cx_error_set(err, CX_ENOMEM, "out of memory for the vector index");
    int rc = ms->dim ? load_current(ms, err) : 0;
    if (rc)
        return rc;
    /* what is missing, stale or damaged gets indexed again; a remote
     * embedder's missing vectors are the queue's, only the text index is
     * rebuilt here */
    int64_t fixed = 0, queued = 0;
    if (ms->remote)
        rc = reindex_where(ms,
                           "SELECT e.id, e.name, e.type, e.scope FROM entities e WHERE e.id NOT "
                           "IN (SELECT rowid FROM entities_fts)",
                           NULL, &fixed, &queued, err);
    else
        rc = reindex_where(ms,
                           "SELECT e.id, e.name, e.type, e.scope FROM entities e LEFT JOIN "
                           "embeddings m ON m.entity_id = e.id WHERE m.entity_id IS NULL OR "
                           "m.embedder <> '" EMBED_BUILTIN_ID "' OR m.dim <> 384 OR "
                           "length(m.vector) <> 1536 OR e.id NOT IN (SELECT rowid FROM "
                           "entities_fts)",
                           NULL, &fixed, NULL, err);
    if (!rc && fixed)
        log_info("memory", "indexed %lld entities whose embeddings or text index were missing or "
                 "stale", (long long)fixed);
    if (!rc && !ms->remote)
        rc = meta_set_embedder(ms, EMBED_BUILTIN_DIM, err);
    return rc;
}

_Static_assert(EMBED_BUILTIN_DIM == 384, "the stale-vector query above spells out 384");

/* ------------------------------------------------- remote embeddings glue */

embedder *mem_embedder(const memstore *ms) { return ms->emb; }
mem_remote *mem_remote_of(const memstore *ms) { return ms->remote_q; }
size_t mem_dim(const memstore *ms) { return ms->dim; }
size_t mem_vector_count(const memstore *ms) { return vindex_count(ms->vi); }
uint64_t mem_generation(const memstore *ms) { return ms->gen; }

char *mem_entity_text(memstore *ms, int64_t id)
{
    if (!ms->db)
        return NULL;
    sqlite3_stmt *st = prep(ms, "SELECT name, type FROM entities WHERE id = ?", NULL);
    if (!st)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    char *text = NULL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        char *body = entity_body(ms, id);
        if (body)
            text = join_text((const char *)sqlite3_column_text(st, 0),
                             (const char *)sqlite3_column_text(st, 1), body);
        free(body);
    }
    sqlite3_finalize(st);
    return text;
}

/* Entities without a vector from the current embedder with the current
 * dimension (any entity while the dimension is unknown). */
#define WAITING_SQL                                                                              \
    "FROM entities e WHERE NOT EXISTS (SELECT 1 FROM embeddings m WHERE m.entity_id = e.id "    \
    "AND m.embedder = ?1 AND m.dim = ?2 AND length(m.vector) = 4 * ?2)"

static int i64_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int mem_waiting_ids(memstore *ms, int64_t after, const int64_t *skip, size_t nskip, int64_t *ids,
                    size_t max)
{
    if (!ms->db)
        return -1;
    sqlite3_stmt *st = prep(ms, "SELECT e.id " WAITING_SQL " AND e.id > ?3 ORDER BY e.id LIMIT ?4",
                            NULL);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, ms->emb_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)ms->dim);
    sqlite3_bind_int64(st, 3, after);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)(max + nskip));
    size_t n = 0;
    int rc;
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (nskip && bsearch(&id, skip, nskip, sizeof *skip, i64_cmp))
            continue;
        ids[n++] = id;
    }
    bool failed = n < max && rc != SQLITE_DONE;
    sqlite3_finalize(st);
    return failed ? -1 : (int)n;
}

int64_t mem_waiting_count(memstore *ms)
{
    if (!ms->db)
        return -1;
    sqlite3_stmt *st = prep(ms, "SELECT count(*) " WAITING_SQL, NULL);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, ms->emb_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)ms->dim);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return n;
}

/* The model answered another dimension than the stored vectors': they are
 * all stale now (the queue takes every entity again). */
static int adopt_dim(memstore *ms, size_t dim, cx_error *err)
{
    if (ms->dim)
        log_warn("memory", "the embedder %s answered %zu dimensions where the stored vectors "
                 "have %zu: its model changed; every entity is embedded again", ms->emb_id, dim,
                 ms->dim);
    else
        log_info("memory", "the embedder %s answers %zu dimensions", ms->emb_id, dim);
    if (set_dim(ms, dim) != 0)
        return cx_error_set(err, CX_ENOMEM, "out of memory for the vector index");
    return 0;
}

static char *entity_scope(memstore *ms, int64_t id)
{
    sqlite3_stmt *st = prep(ms, "SELECT scope FROM entities WHERE id = ?", NULL);
    if (!st)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    char *scope = sqlite3_step(st) == SQLITE_ROW
                      ? str_dup((const char *)sqlite3_column_text(st, 0))
                      : NULL;
    sqlite3_finalize(st);
    return scope;
}

int mem_store_vectors(memstore *ms, const int64_t *ids, float *vecs, size_t n, size_t dim,
                      cx_error *err)
{
    if (!ms->db)
        return unavailable(ms, err);
    if (dim == 0 || dim > VINDEX_MAX_DIM)
        return cx_error_set(err, CX_EINVAL, "an embedding of %zu dimensions (1 to %d)", dim,
                            VINDEX_MAX_DIM);
    bool new_dim = dim != ms->dim;
    if (new_dim && adopt_dim(ms, dim, err))
        return CX_ENOMEM;
    int rc = exec(ms, "BEGIN IMMEDIATE", err);
    if (!rc && new_dim)
        rc = meta_set_embedder(ms, dim, err);
    bool *stored = calloc(n ? n : 1, sizeof *stored);
    if (!rc && !stored)
        rc = cx_error_set(err, CX_ENOMEM, "out of memory storing embeddings");
    for (size_t i = 0; !rc && i < n; i++) {
        char *scope = entity_scope(ms, ids[i]); /* gone meanwhile: nothing to store */
        embed_normalise(vecs + i * dim, dim);
        if (scope)
            rc = put_vector_row(ms, ids[i], vecs + i * dim, dim, err);
        stored[i] = scope && !rc;
        free(scope);
    }
    rc = rc ? (rollback(ms), rc) : exec(ms, "COMMIT", err);
    if (rc) {
        rollback(ms);
        free(stored);
        return rc;
    }
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        char *scope = stored[i] ? entity_scope(ms, ids[i]) : NULL;
        if (scope) {
            index_follow(ms, ids[i], scope, vecs + i * dim, true);
            count++;
        }
        free(scope);
    }
    free(stored);
    return count;
}

/* --------------------------------------------------------------- open/close */

static int migrate(memstore *ms, cx_error *err)
{
    sqlite3_stmt *st = prep(ms, "PRAGMA user_version", err);
    if (!st)
        return CX_EIO;
    int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    if (version < 0)
        return sql_fail(ms, err, "reading the schema version");
    if (version > memstore_migration_count)
        return cx_error_set(err, CX_ECONFIG,
                            "memory database %s has schema version %d, newer than this caxton "
                            "knows (%d); run the caxton that wrote it or restore a backup",
                            ms->path, version, memstore_migration_count);
    for (int v = version; v < memstore_migration_count; v++) {
        char pragma[48];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
        if (exec(ms, "BEGIN IMMEDIATE", err))
            return CX_EIO;
        if (exec(ms, memstore_migrations[v], err) || exec(ms, pragma, err)) {
            rollback(ms);
            return cx_error_wrap(err, "applying memory schema migration %d", v + 1);
        }
        if (exec(ms, "COMMIT", err))
            return CX_EIO;
    }
    return 0;
}

static void close_db(memstore *ms)
{
    if (ms->db) {
        sqlite3_close_v2(ms->db);
        ms->db = NULL;
    }
    vindex_clear(ms->vi);
    ms->gen++;
    if (ms->remote_q)
        mem_remote_reset(ms->remote_q);
}

static int open_db(memstore *ms, cx_error *err)
{
    char *dir = str_dup(ms->path);
    if (!dir)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (fs_mkdir_p(dir, 0700, err)) {
            free(dir);
            return CX_EIO;
        }
    }
    free(dir);
    int rc = sqlite3_open_v2(ms->path, &ms->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = cx_error_set(err, CX_EIO, "cannot open memory database %s: %s", ms->path,
                          ms->db ? sqlite3_errmsg(ms->db) : sqlite3_errstr(rc));
        close_db(ms);
        return rc;
    }
    sqlite3_busy_timeout(ms->db, 5000);
    sqlite3_extended_result_codes(ms->db, 1);
    char cache[64];
    snprintf(cache, sizeof cache, "PRAGMA cache_size = -%llu",
             (unsigned long long)(ms->opt.cache_size / 1024 ? ms->opt.cache_size / 1024 : 2000));
    /* journal_mode reads the header: a file of garbage fails here */
    if (exec(ms, "PRAGMA journal_mode = WAL", err) ||
        exec(ms, "PRAGMA synchronous = FULL", err) || exec(ms, "PRAGMA foreign_keys = ON", err) ||
        exec(ms, cache, err) || migrate(ms, err) || load_vectors(ms, err)) {
        cx_error_wrap(err, "memory database %s", ms->path);
        close_db(ms);
        return CX_EIO;
    }
    ms->gen++;
    if (ms->remote_q)
        mem_remote_kick(ms->remote_q);
    return 0;
}

memstore *memstore_open(const memstore_options *opt, cx_error *err)
{
    if (!opt || !opt->path || !*opt->path) {
        cx_error_set(err, CX_EINVAL, "memory: no database path");
        return NULL;
    }
    memstore *ms = calloc(1, sizeof *ms);
    if (!ms || !(ms->path = str_dup(opt->path)) || !(ms->vi = vindex_new(EMBED_BUILTIN_DIM)) ||
        !(ms->scratch = calloc(VINDEX_MAX_DIM, sizeof *ms->scratch))) {
        if (ms) {
            vindex_free(ms->vi);
            free(ms->path);
            free(ms);
        }
        embedder_free(opt->embedder);
        cx_error_set(err, CX_ENOMEM, "out of memory opening the memory store");
        return NULL;
    }
    ms->opt = *opt;
    ms->opt.path = ms->path;
    ms->opt.embedder = NULL;
    ms->emb = opt->embedder;
    ms->emb_id = embedder_id(ms->emb);
    ms->dim = EMBED_BUILTIN_DIM;
    map_init(&ms->scope_ids);
    if (embedder_is_remote(ms->emb)) {
        ms->remote = true;
        ms->remote_q = mem_remote_new(ms, ms->emb);
        if (!ms->remote_q) {
            ms->remote = false;
            embedder_free(ms->emb);
            ms->emb = NULL;
            ms->emb_id = EMBED_BUILTIN_ID;
            log_error("memory", "out of memory starting the remote embedder; using the builtin "
                      "one");
        }
    }
    cx_error e = {0};
    if (open_db(ms, &e) != 0) {
        snprintf(ms->last_error, sizeof ms->last_error, "%s", e.msg);
        log_error("memory", "%s; the memory system is unavailable until the database is "
                  "repaired (caxton memory recover / restore)", e.msg);
        if (err)
            *err = e;
    }
    return ms;
}

void memstore_close(memstore *ms)
{
    if (!ms)
        return;
    /* the searches still waiting get their answer while the database is open */
    mem_remote_free(ms->remote_q);
    ms->remote_q = NULL;
    close_db(ms);
    embedder_free(ms->emb);
    free(ms->scratch);
    vindex_free(ms->vi);
    for (size_t i = 0; i < ms->scope_count; i++)
        free(ms->scope_names[i]);
    free(ms->scope_names);
    map_free(&ms->scope_ids);
    free(ms->path);
    free(ms);
}

const char *memstore_path(const memstore *ms) { return ms->path; }
const char *memstore_last_error(const memstore *ms) { return ms->last_error; }
struct sqlite3 *memstore_sqlite(memstore *ms) { return ms->db; }
bool memstore_available(const memstore *ms) { return ms && ms->db; }

void memstore_quiesce(memstore *ms)
{
    close_db(ms);
    snprintf(ms->last_error, sizeof ms->last_error, "quiesced for maintenance");
}

int memstore_resume(memstore *ms, cx_error *err)
{
    close_db(ms);
    cx_error e = {0};
    if (open_db(ms, &e) != 0) {
        snprintf(ms->last_error, sizeof ms->last_error, "%s", e.msg);
        if (err)
            *err = e;
        return e.code ? e.code : CX_EIO;
    }
    ms->last_error[0] = '\0';
    return 0;
}

/* ------------------------------------------------------------- violations */

void memstore_violation(memstore *ms, const char *agent, const char *scope, const char *operation,
                        const char *detail)
{
    ms->st.violations++;
    json_t *f = json_pack("{s:s, s:s, s:s}", "agent", agent ? agent : "-", "scope",
                          scope ? scope : "-", "operation", operation);
    log_event(LOG_STREAM_AGENTS, LOG_WARN, "memory", f, "memory scope violation: %s %s %s: %s",
              agent ? agent : "-", operation, scope ? scope : "-", detail ? detail : "");
    if (!ms->db)
        return;
    sqlite3_stmt *st = prep(ms,
                            "INSERT INTO scope_violations(at, agent, scope, operation, detail) "
                            "VALUES (?, ?, ?, ?, ?)",
                            NULL);
    if (!st)
        return;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)time_now_ms());
    sqlite3_bind_text(st, 2, agent ? agent : "-", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, scope ? scope : "-", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, operation, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, detail ? detail : "", -1, SQLITE_STATIC);
    sqlite3_step(st);
    sqlite3_finalize(st);
    /* a misbehaving agent must not grow the file without bound */
    if (ms->st.violations % 1000 == 0) {
        char sql[160];
        snprintf(sql, sizeof sql,
                 "DELETE FROM scope_violations WHERE id <= (SELECT max(id) FROM "
                 "scope_violations) - %d",
                 VIOLATIONS_KEPT);
        sqlite3_exec(ms->db, sql, NULL, NULL, NULL);
    }
}

static int deny(memstore *ms, const mem_caller *c, const char *scope, const char *op,
                cx_error *err)
{
    char why[200];
    if (!c->enabled)
        snprintf(why, sizeof why, "memory is not enabled for agent '%s'", c->agent);
    else if (strcmp(scope, "global") == 0)
        snprintf(why, sizeof why, "agent '%s' may read global memory but not write it "
                 "(memory.global_write is false)", c->agent);
    else
        snprintf(why, sizeof why, "agent '%s' (scope %s, workspace %s) may not %s %s", c->agent,
                 mem_scope_kind_name(c->scope), c->workspace ? c->workspace : "default",
                 strcmp(op, "read") == 0 || strcmp(op, "search") == 0 ? "read" : "write",
                 scope);
    memstore_violation(ms, c->agent, scope, op, why);
    return cx_error_set(err, CX_EFORBIDDEN, "Memory access denied: %s", why);
}

int memstore_violations_json(memstore *ms, uint64_t since_ms, const char *agent, size_t limit,
                             json_t **out, cx_error *err)
{
    if (!ms->db)
        return unavailable(ms, err);
    sqlite3_stmt *st = prep(ms,
                            "SELECT at, agent, scope, operation, detail FROM scope_violations "
                            "WHERE at >= ? AND (?2 IS NULL OR agent = ?2) ORDER BY id DESC LIMIT ?",
                            err);
    if (!st)
        return CX_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)since_ms);
    if (agent)
        sqlite3_bind_text(st, 2, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)(limit ? limit : 1000));
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        char at[40];
        time_text((uint64_t)sqlite3_column_int64(st, 0), at);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s}", "at", at, "agent",
                                             sqlite3_column_text(st, 1), "scope",
                                             sqlite3_column_text(st, 2), "operation",
                                             sqlite3_column_text(st, 3), "detail",
                                             sqlite3_column_text(st, 4)));
    }
    sqlite3_finalize(st);
    *out = arr;
    return 0;
}

/* ---------------------------------------------------------- scope override */

int memstore_scope_override(memstore *ms, const char *agent, mem_scope_kind *scope,
                            char **workspace, cx_error *err)
{
    *workspace = NULL;
    if (!ms->db)
        return unavailable(ms, err);
    sqlite3_stmt *st = prep(ms, "SELECT scope, workspace FROM scope_overrides WHERE agent = ?", err);
    if (!st)
        return CX_EIO;
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    int found = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        int k = mem_scope_kind_parse((const char *)sqlite3_column_text(st, 0));
        if (k >= 0) {
            *scope = (mem_scope_kind)k;
            *workspace = str_dup((const char *)sqlite3_column_text(st, 1));
            found = 1;
        }
    }
    sqlite3_finalize(st);
    return found;
}

int memstore_scope_reset(memstore *ms, const char *agent, mem_scope_kind scope,
                         const char *workspace, cx_error *err)
{
    if (!ms->db)
        return unavailable(ms, err);
    if (workspace && !scope_name_ok(workspace))
        return cx_error_set(err, CX_EINVAL, "workspace: 1-128 of A-Z a-z 0-9 . _ -");
    sqlite3_stmt *st = prep(ms,
                            "INSERT INTO scope_overrides(agent, scope, workspace, set_at) VALUES "
                            "(?, ?, ?, ?) ON CONFLICT(agent) DO UPDATE SET scope = excluded.scope, "
                            "workspace = excluded.workspace, set_at = excluded.set_at",
                            err);
    if (!st)
        return CX_EIO;
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, mem_scope_kind_name(scope), -1, SQLITE_STATIC);
    if (workspace)
        sqlite3_bind_text(st, 3, workspace, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)time_now_ms());
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sql_fail(ms, err, "saving the scope");
    sqlite3_finalize(st);
    return rc;
}

/* ------------------------------------------------------------- validation */

/* Text fields: valid UTF-8, no NUL, no control characters (tabs allowed in
 * observations only), within max bytes. */
static int check_text(const json_t *v, const char *field, size_t max, bool allow_ws,
                      const char **out, cx_error *err);

/* Entity names also appear in URL paths (/memory/entities/{scope}/{name}):
 * no '/'. */
static int check_name(const json_t *v, const char *field, const char **out, cx_error *err)
{
    int rc = check_text(v, field, MEM_NAME_MAX, false, out, err);
    if (rc)
        return rc;
    if (strchr(*out, '/'))
        return cx_error_set(err, CX_EINVAL,
                            "%s: '/' is not allowed in entity names (they are used in URL "
                            "paths); use another separator such as ':' or '-'",
                            field);
    return 0;
}

static int check_text(const json_t *v, const char *field, size_t max, bool allow_ws,
                      const char **out, cx_error *err)
{
    if (!json_is_string(v))
        return cx_error_set(err, CX_EINVAL, "%s: must be a string", field);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0)
        return cx_error_set(err, CX_EINVAL, "%s: must not be empty", field);
    if (len > max)
        return cx_error_set(err, CX_ETOOBIG, "%s: %zu bytes, at most %zu", field, len, max);
    if (strlen(s) != len)
        return cx_error_set(err, CX_EINVAL, "%s: contains a NUL byte", field);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 && !(allow_ws && (ch == '\t' || ch == '\n')))
            return cx_error_set(err, CX_EINVAL,
                                "%s: control character 0x%02x at byte %zu is not allowed", field, ch,
                                i);
        if (ch == 0x7f)
            return cx_error_set(err, CX_EINVAL, "%s: DEL character at byte %zu", field, i);
    }
    *out = s;
    return 0;
}

static int check_unit(const json_t *v, const char *field, double *out, cx_error *err)
{
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return cx_error_set(err, CX_EINVAL, "%s: must be a number from 0 to 1", field);
    double d = json_number_value(v);
    if (!(d >= 0.0 && d <= 1.0))
        return cx_error_set(err, CX_EINVAL, "%s: %g is outside 0..1", field, d);
    *out = d;
    return 0;
}

static int check_type(const json_t *v, const char *field, const char **out, cx_error *err)
{
    int rc = check_text(v, field, MEM_TYPE_MAX, false, out, err);
    if (rc)
        return rc;
    for (const char *p = *out; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.' || ch == ' '))
            return cx_error_set(err, CX_EINVAL,
                                "%s: only letters, digits, space, '-', '_' and '.' are allowed",
                                field);
    }
    return 0;
}

static int check_unknown_keys(const json_t *req, const char *const *known, cx_error *err)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)req, key, val) {
        bool ok = false;
        for (size_t i = 0; known[i]; i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok) {
            char q[72];
            text_quote(key, q, sizeof q);
            return cx_error_set(err, CX_EINVAL, "unknown field %s", q);
        }
    }
    return 0;
}

/* The scope asked for, or the caller's own; checked for syntax. */
static int pick_scope(const json_t *v, const mem_caller *c, const char *field,
                      char out[MEM_SCOPE_MAX + 1], cx_error *err)
{
    if (!v || json_is_null(v)) {
        mem_caller_default_scope(c, out);
        return 0;
    }
    const char *s;
    mem_scope_kind k;
    const char *n;
    if (check_text(v, field, MEM_SCOPE_MAX, false, &s, err) || mem_scope_parse(s, &k, &n, err))
        return CX_EINVAL;
    snprintf(out, MEM_SCOPE_MAX + 1, "%s", s);
    return 0;
}

/* ---------------------------------------------------------------- limits */

static uint64_t file_size(const char *path, const char *suffix)
{
    char p[4096];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    struct stat sb;
    return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static int check_limits(memstore *ms, const mem_caller *c, bool creating, cx_error *err)
{
    if (ms->opt.max_size) {
        uint64_t used = file_size(ms->path, "") + file_size(ms->path, "-wal");
        if (used >= ms->opt.max_size)
            return cx_error_set(err, CX_ELIMIT,
                                "the memory database is at its size limit (%llu of %llu bytes, "
                                "memory.max_size); run caxton memory cleanup --vacuum or raise "
                                "the limit",
                                (unsigned long long)used, (unsigned long long)ms->opt.max_size);
    }
    if (creating && c->agent && c->max_entries > 0) {
        sqlite3_stmt *st = prep(ms, "SELECT count(*) FROM entities WHERE created_by = ?", err);
        if (!st)
            return CX_EIO;
        sqlite3_bind_text(st, 1, c->agent, -1, SQLITE_STATIC);
        int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        sqlite3_finalize(st);
        if (n >= c->max_entries)
            return cx_error_set(err, CX_ELIMIT,
                                "agent '%s' has %lld entities, its memory.max_entries", c->agent,
                                (long long)n);
    }
    return 0;
}

/* ---------------------------------------------------------------- entities */

static int64_t find_entity(memstore *ms, const char *scope, const char *name)
{
    sqlite3_stmt *st = prep(ms, "SELECT id FROM entities WHERE scope = ? AND name = ?", NULL);
    if (!st)
        return -2;
    sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : rc == SQLITE_DONE ? -1 : -2;
    sqlite3_finalize(st);
    return id;
}

static json_t *observations_json(memstore *ms, int64_t id, size_t limit, int64_t *total)
{
    *total = 0;
    sqlite3_stmt *st =
        prep(ms, "SELECT count(*) FROM observations WHERE entity_id = ? AND removed_at IS NULL", NULL);
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW)
            *total = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    json_t *arr = json_array();
    st = prep(ms,
              "SELECT text, created_at FROM (SELECT id, text, created_at FROM observations WHERE "
              "entity_id = ? AND removed_at IS NULL ORDER BY id DESC LIMIT ?) ORDER BY id",
              NULL);
    if (!st)
        return arr;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char at[40];
        time_text((uint64_t)sqlite3_column_int64(st, 1), at);
        json_array_append_new(arr, json_pack("{s:s, s:s}", "text", sqlite3_column_text(st, 0),
                                             "at", at));
    }
    sqlite3_finalize(st);
    return arr;
}

static json_t *history_json(memstore *ms, int64_t id)
{
    json_t *arr = json_array();
    /* the newest HISTORY_MAX versions, oldest first */
    sqlite3_stmt *st = prep(ms,
                            "SELECT * FROM (SELECT version, type, confidence, metadata, "
                            "changed_at, changed_by FROM entity_versions WHERE entity_id = ? "
                            "ORDER BY version DESC LIMIT " HISTORY_MAX_TEXT ") ORDER BY version",
                            NULL);
    if (!st)
        return arr;
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char at[40];
        uint64_t when = (uint64_t)sqlite3_column_int64(st, 4);
        time_text(when, at);
        json_t *meta = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
        /* the observations that stood at that version */
        int64_t count = 0;
        sqlite3_stmt *c = prep(ms,
                               "SELECT count(*) FROM observations WHERE entity_id = ? AND "
                               "created_at <= ? AND (removed_at IS NULL OR removed_at > ?)",
                               NULL);
        if (c) {
            sqlite3_bind_int64(c, 1, id);
            sqlite3_bind_int64(c, 2, (sqlite3_int64)when);
            sqlite3_bind_int64(c, 3, (sqlite3_int64)when);
            if (sqlite3_step(c) == SQLITE_ROW)
                count = sqlite3_column_int64(c, 0);
            sqlite3_finalize(c);
        }
        json_array_append_new(
            arr, json_pack("{s:I, s:s, s:f, s:o, s:s, s:s, s:I}", "version",
                           (json_int_t)sqlite3_column_int64(st, 0), "type",
                           sqlite3_column_text(st, 1), "confidence", sqlite3_column_double(st, 2),
                           "metadata", meta ? meta : json_object(), "changed_at", at, "changed_by",
                           sqlite3_column_text(st, 5), "observation_count", (json_int_t)count));
    }
    sqlite3_finalize(st);
    /* removed observations, with when they were removed */
    json_t *removed = json_array();
    st = prep(ms,
              "SELECT text, created_at, removed_at FROM observations WHERE entity_id = ? AND "
              "removed_at IS NOT NULL ORDER BY id DESC LIMIT 100",
              NULL);
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        while (sqlite3_step(st) == SQLITE_ROW) {
            char at[40], gone[40];
            time_text((uint64_t)sqlite3_column_int64(st, 1), at);
            time_text((uint64_t)sqlite3_column_int64(st, 2), gone);
            json_array_append_new(removed, json_pack("{s:s, s:s, s:s}", "text",
                                                     sqlite3_column_text(st, 0), "at", at,
                                                     "removed_at", gone));
        }
        sqlite3_finalize(st);
    }
    json_t *wrap = json_pack("{s:o, s:o, s:s}", "versions", arr, "removed_observations", removed,
                             "note", "the newest " HISTORY_MAX_TEXT " versions and 100 removed "
                             "observations");
    return wrap;
}

static json_t *entity_json(memstore *ms, int64_t id, bool history, size_t obs_limit)
{
    sqlite3_stmt *st = prep(ms,
                            "SELECT scope, name, type, confidence, metadata, version, created_at, "
                            "updated_at, created_by FROM entities WHERE id = ?",
                            NULL);
    if (!st)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    json_t *o = NULL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        char created[40], updated[40];
        time_text((uint64_t)sqlite3_column_int64(st, 6), created);
        time_text((uint64_t)sqlite3_column_int64(st, 7), updated);
        json_t *meta = json_loads((const char *)sqlite3_column_text(st, 4), 0, NULL);
        int64_t total = 0;
        json_t *obs = observations_json(ms, id, obs_limit, &total);
        o = json_pack("{s:s, s:s, s:s, s:f, s:o, s:I, s:s, s:s, s:s, s:I, s:o}", "scope",
                      sqlite3_column_text(st, 0), "name", sqlite3_column_text(st, 1), "type",
                      sqlite3_column_text(st, 2), "confidence", sqlite3_column_double(st, 3),
                      "metadata", meta ? meta : json_object(), "version",
                      (json_int_t)sqlite3_column_int64(st, 5), "created_at", created, "updated_at",
                      updated, "created_by", sqlite3_column_text(st, 8), "observation_count",
                      (json_int_t)total, "observations", obs);
        if (o && history)
            json_object_set_new(o, "history", history_json(ms, id));
    }
    sqlite3_finalize(st);
    return o;
}

static int add_version(memstore *ms, int64_t id, int64_t version, const char *type, double conf,
                       const char *meta, uint64_t now, const char *by, cx_error *err)
{
    sqlite3_stmt *st = prep(ms,
                            "INSERT OR REPLACE INTO entity_versions(entity_id, version, type, "
                            "confidence, metadata, changed_at, changed_by) VALUES (?,?,?,?,?,?,?)",
                            err);
    if (!st)
        return CX_EIO;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, conf);
    sqlite3_bind_text(st, 5, meta, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)now);
    sqlite3_bind_text(st, 7, by, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sql_fail(ms, err, "recording a version");
    sqlite3_finalize(st);
    return rc;
}

/* Appends the observations not already standing; returns how many were new,
 * or a negative code. The two statements are prepared once per write: a
 * write may carry up to MEM_OBSERVATIONS_PER_WRITE of them. */
static int add_observations(memstore *ms, int64_t id, const json_t *obs, uint64_t now,
                            cx_error *err)
{
    sqlite3_stmt *seen = prep(ms,
                              "SELECT 1 FROM observations WHERE entity_id = ? AND text = ? AND "
                              "removed_at IS NULL LIMIT 1",
                              err);
    sqlite3_stmt *ins =
        seen ? prep(ms, "INSERT INTO observations(entity_id, text, created_at) VALUES (?, ?, ?)",
                    err)
             : NULL;
    int added = ins ? 0 : CX_EIO;
    size_t i;
    json_t *v;
    json_array_foreach(obs, i, v) {
        if (added < 0)
            break;
        const char *text = json_string_value(v);
        sqlite3_reset(seen);
        sqlite3_bind_int64(seen, 1, id);
        sqlite3_bind_text(seen, 2, text, -1, SQLITE_STATIC);
        if (sqlite3_step(seen) == SQLITE_ROW)
            continue;
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, id);
        sqlite3_bind_text(ins, 2, text, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 3, (sqlite3_int64)now);
        if (sqlite3_step(ins) != SQLITE_DONE)
            added = sql_fail(ms, err, "storing an observation");
        else
            added++;
    }
    sqlite3_finalize(seen);
    sqlite3_finalize(ins);
    return added;
}

static int remove_observations(memstore *ms, int64_t id, const json_t *obs, uint64_t now,
                               cx_error *err)
{
    sqlite3_stmt *st = prep(ms,
                            "UPDATE observations SET removed_at = ? WHERE entity_id = ? AND "
                            "text = ? AND removed_at IS NULL",
                            err);
    int removed = st ? 0 : CX_EIO;
    size_t i;
    json_t *v;
    json_array_foreach(obs, i, v) {
        if (removed < 0)
            break;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
        sqlite3_bind_int64(st, 2, id);
        sqlite3_bind_text(st, 3, json_string_value(v), -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            removed = sql_fail(ms, err, "removing an observation");
        else
            removed += sqlite3_changes(ms->db);
    }
    sqlite3_finalize(st);
    return removed;
}

static int check_observation_list(const json_t *v, const char *field, cx_error *err)
{
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return cx_error_set(err, CX_EINVAL, "%s: must be a list of strings", field);
    if (json_array_size(v) > MEM_OBSERVATIONS_PER_WRITE)
        return cx_error_set(err, CX_ETOOBIG, "%s: %zu items, at most %d per write", field,
                            json_array_size(v), MEM_OBSERVATIONS_PER_WRITE);
    size_t i;
    json_t *o;
    json_array_foreach(v, i, o) {
        char f[64];
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        const char *s;
        if (check_text(o, f, MEM_OBSERVATION_MAX, true, &s, err))
            return CX_EINVAL;
    }
    return 0;
}

typedef struct entity_req {
    char scope[MEM_SCOPE_MAX + 1];
    const char *name, *type;
    double confidence;
    bool has_confidence;
    char *metadata; /* serialised, or NULL */
    const json_t *add, *remove;
} entity_req;

static const char *const entity_keys[] = {"scope", "name", "type", "observations",
                                          "remove_observations", "confidence", "metadata",
                                          "agent", NULL};

static int parse_entity_req(const json_t *req, const mem_caller *c, entity_req *r, cx_error *err)
{
    memset(r, 0, sizeof *r);
    if (!json_is_object(req))
        return cx_error_set(err, CX_EINVAL, "the entity must be a JSON object");
    if (check_unknown_keys(req, entity_keys, err) ||
        pick_scope(json_object_get(req, "scope"), c, "scope", r->scope, err) ||
        check_name(json_object_get(req, "name"), "name", &r->name, err))
        return err && err->code ? err->code : CX_EINVAL;
    const json_t *t = json_object_get(req, "type");
    if (t && !json_is_null(t) && check_type(t, "type", &r->type, err))
        return CX_EINVAL;
    const json_t *conf = json_object_get(req, "confidence");
    if (conf && !json_is_null(conf)) {
        if (check_unit(conf, "confidence", &r->confidence, err))
            return CX_EINVAL;
        r->has_confidence = true;
    }
    const json_t *meta = json_object_get(req, "metadata");
    if (meta && !json_is_null(meta)) {
        if (!json_is_object(meta))
            return cx_error_set(err, CX_EINVAL, "metadata: must be a JSON object");
        r->metadata = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
        if (!r->metadata)
            return cx_error_set(err, CX_ENOMEM, "out of memory");
        if (strlen(r->metadata) > MEM_METADATA_MAX) {
            size_t len = strlen(r->metadata);
            free(r->metadata);
            r->metadata = NULL;
            return cx_error_set(err, CX_ETOOBIG, "metadata: %zu bytes, at most %u", len,
                                MEM_METADATA_MAX);
        }
    }
    r->add = json_object_get(req, "observations");
    r->remove = json_object_get(req, "remove_observations");
    if (check_observation_list(r->add, "observations", err) ||
        check_observation_list(r->remove, "remove_observations", err)) {
        free(r->metadata);
        r->metadata = NULL;
        return err && err->code ? err->code : CX_EINVAL;
    }
    return 0;
}

static int write_entity(memstore *ms, const mem_caller *c, entity_req *r, int64_t *id_out,
                        bool *created, cx_error *err)
{
    const char *by = c->agent ? c->agent : "operator";
    uint64_t now = time_now_ms();
    int64_t id = find_entity(ms, r->scope, r->name);
    if (id == -2)
        return sql_fail(ms, err, "looking up the entity");
    *created = id < 0;
    int rc = check_limits(ms, c, *created, err);
    if (rc)
        return rc;
    if (exec(ms, "BEGIN IMMEDIATE", err))
        return CX_EIO;
    const char *type = r->type ? r->type : "entity";
    double conf = r->has_confidence ? r->confidence : 1.0;
    const char *meta = r->metadata ? r->metadata : "{}";
    bool changed = false;
    int64_t version = 1;
    if (*created) {
        sqlite3_stmt *st = prep(ms,
                                "INSERT INTO entities(scope, name, type, confidence, metadata, "
                                "created_at, updated_at, version, created_by) VALUES "
                                "(?,?,?,?,?,?,?,1,?)",
                                err);
        if (!st) {
            rollback(ms);
            return CX_EIO;
        }
        sqlite3_bind_text(st, 1, r->scope, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, r->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 4, conf);
        sqlite3_bind_text(st, 5, meta, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)now);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)now);
        sqlite3_bind_text(st, 8, by, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sql_fail(ms, err, "creating the entity");
        sqlite3_finalize(st);
        id = sqlite3_last_insert_rowid(ms->db);
        changed = true;
    } else {
        sqlite3_stmt *st = prep(ms,
                                "SELECT type, confidence, metadata, version FROM entities WHERE "
                                "id = ?",
                                err);
        if (!st) {
            rollback(ms);
            return CX_EIO;
        }
        sqlite3_bind_int64(st, 1, id);
        char *old_type = NULL, *old_meta = NULL;
        double old_conf = 1.0;
        if (sqlite3_step(st) == SQLITE_ROW) {
            old_type = str_dup((const char *)sqlite3_column_text(st, 0));
            old_conf = sqlite3_column_double(st, 1);
            old_meta = str_dup((const char *)sqlite3_column_text(st, 2));
            version = sqlite3_column_int64(st, 3);
        }
        sqlite3_finalize(st);
        if (!r->type)
            type = old_type ? old_type : "entity";
        if (!r->has_confidence)
            conf = old_conf;
        if (!r->metadata)
            meta = old_meta ? old_meta : "{}";
        changed = strcmp(type, old_type ? old_type : "") != 0 || conf != old_conf ||
                  strcmp(meta, old_meta ? old_meta : "") != 0;
        rc = 0;
        int removed = r->remove ? remove_observations(ms, id, r->remove, now, err) : 0;
        if (removed < 0)
            rc = removed;
        else if (removed > 0)
            changed = true;
        if (!rc && changed) {
            version++;
            st = prep(ms,
                      "UPDATE entities SET type = ?, confidence = ?, metadata = ?, version = ?, "
                      "updated_at = ? WHERE id = ?",
                      err);
            if (!st)
                rc = CX_EIO;
            else {
                sqlite3_bind_text(st, 1, type, -1, SQLITE_TRANSIENT);
                sqlite3_bind_double(st, 2, conf);
                sqlite3_bind_text(st, 3, meta, -1, SQLITE_TRANSIENT);
                sqlite3_bind_int64(st, 4, version);
                sqlite3_bind_int64(st, 5, (sqlite3_int64)now);
                sqlite3_bind_int64(st, 6, id);
                rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sql_fail(ms, err, "updating the entity");
                sqlite3_finalize(st);
            }
        }
        if (!rc && changed)
            rc = add_version(ms, id, version, type, conf, meta, now, by, err);
        if (!rc && r->add) {
            int added = add_observations(ms, id, r->add, now, err);
            if (added < 0)
                rc = added;
            else if (added > 0 && !changed) {
                /* new facts alone: a new version of the same fields */
                version++;
                changed = true;
                sqlite3_stmt *u = prep(ms,
                                       "UPDATE entities SET version = ?, updated_at = ? WHERE id = ?",
                                       err);
                if (!u)
                    rc = CX_EIO;
                else {
                    sqlite3_bind_int64(u, 1, version);
                    sqlite3_bind_int64(u, 2, (sqlite3_int64)now);
                    sqlite3_bind_int64(u, 3, id);
                    rc = sqlite3_step(u) == SQLITE_DONE ? 0
                                                        : sql_fail(ms, err, "updating the entity");
                    sqlite3_finalize(u);
                }
                if (!rc)
                    rc = add_version(ms, id, version, type, conf, meta, now, by, err);
            }
        }
        float *vec = ms->scratch;
        bool have_vec = false;
        if (!rc && changed)
            rc = index_entity(ms, id, r->name, type, vec, &have_vec, err);
        if (rc) {
            free(old_type);
            free(old_meta);
            rollback(ms);
            return rc;
        }
        rc = exec(ms, "COMMIT", err);
        if (rc)
            rollback(ms);
        else if (changed)
            index_follow(ms, id, r->scope, vec, have_vec);
        free(old_type);
        free(old_meta);
        *id_out = id;
        return rc;
    }
    if (!rc)
        rc = add_version(ms, id, 1, type, conf, meta, now, by, err);
    if (!rc && r->add) {
        int added = add_observations(ms, id, r->add, now, err);
        if (added < 0)
            rc = added;
    }
    float *vec = ms->scratch;
    bool have_vec = false;
    if (!rc)
        rc = index_entity(ms, id, r->name, type, vec, &have_vec, err);
    if (!rc)
        rc = exec(ms, "COMMIT", err);
    if (rc) {
        rollback(ms);
        return rc;
    }
    index_follow(ms, id, r->scope, vec, have_vec);
    *id_out = id;
    return 0;
}

int memstore_entity_put(memstore *ms, const mem_caller *c, const json_t *req, json_t **out,
                        cx_error *err)
{
    *out = NULL;
    if (!ms->db)
        return unavailable(ms, err);
    entity_req r;
    int rc = parse_entity_req(req, c, &r, err);
    if (rc)
        return rc;
    if (!mem_can_write(c, r.scope)) {
        free(r.metadata);
        return deny(ms, c, r.scope, "write", err);
    }
    uint64_t t0 = time_monotonic_ns();
    int64_t id = 0;
    bool created = false;
    rc = write_entity(ms, c, &r, &id, &created, err);
    free(r.metadata);
    if (rc) {
        ms->st.write_errors++;
        return rc;
    }
    ms->st.writes++;
    note_slow(ms, "store", t0, r.name);
    *out = entity_json(ms, id, false, 20);
    if (*out)
        json_object_set_new(*out, "created", json_boolean(created));
    return *out ? 0 : sql_fail(ms, err, "reading the entity back");
}

/* The entity's id after the availability, scope syntax and access checks
 * (`op` names the access in a violation), or a negative CX_E* code. */
static int64_t lookup_checked(memstore *ms, const mem_caller *c, const char *scope,
                              const char *name, const char *op, bool write, cx_error *err)
{
    if (!ms->db)
        return unavailable(ms, err);
    mem_scope_kind k;
    const char *n;
    if (mem_scope_parse(scope, &k, &n, err))
        return CX_EINVAL;
    if (!(write ? mem_can_write(c, scope) : mem_can_read(c, scope)))
        return deny(ms, c, scope, op, err);
    int64_t id = find_entity(ms, scope, name);
    if (id == -2)
        return sql_fail(ms, err, "looking up the entity");
    if (id < 0) {
        char q[80];
        text_quote(name, q, sizeof q);
        return cx_error_set(err, CX_ENOTFOUND, "no entity %s in scope %s", q, scope);
    }
    return id;
}

int memstore_entity_get(memstore *ms, const mem_caller *c, const char *scope, const char *name,
                        bool history, size_t obs_limit, json_t **out, cx_error *err)
{
    *out = NULL;
    int64_t id = lookup_checked(ms, c, scope, name, "read", false, err);
    if (id < 0)
        return (int)id;
    *out = entity_json(ms, id, history, obs_limit ? obs_limit : 100);
    return *out ? 0 : sql_fail(ms, err, "reading the entity");
}

int memstore_entity_delete(memstore *ms, const mem_caller *c, const char *scope, const char *name,
                           cx_error *err)
{
    int64_t id = lookup_checked(ms, c, scope, name, "delete", true, err);
    if (id < 0)
        return (int)id;
    if (exec(ms, "BEGIN IMMEDIATE", err))
        return CX_EIO;
    char sql[128];
    snprintf(sql, sizeof sql, "DELETE FROM entities_fts WHERE rowid = %lld; DELETE FROM entities "
             "WHERE id = %lld", (long long)id, (long long)id);
    int rc = exec(ms, sql, err);
    rc = rc ? (rollback(ms), rc) : exec(ms, "COMMIT", err);
    if (rc) {
        rollback(ms);
        ms->st.write_errors++;
        return rc;
    }
    vindex_remove(ms->vi, id);
    ms->st.writes++;
    return 0;
}

int memstore_apply_retention(memstore *ms, const char *agent, uint64_t cutoff_ms, size_t max,
                             int64_t *deleted, cx_error *err)
{
    *deleted = 0;
    if (!ms->db)
        return unavailable(ms, err);
    sqlite3_stmt *st = prep(ms,
                            "SELECT id FROM entities WHERE created_by = ? AND updated_at < ? "
                            "ORDER BY updated_at LIMIT ?",
                            err);
    if (!st)
        return CX_EIO;
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)cutoff_ms);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)max);
    int64_t *ids = calloc(max ? max : 1, sizeof *ids);
    size_t n = 0;
    while (ids && n < max && sqlite3_step(st) == SQLITE_ROW)
        ids[n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (!ids)
        return cx_error_set(err, CX_ENOMEM, "out of memory applying memory.retention");
    int rc = n ? exec(ms, "BEGIN IMMEDIATE", err) : 0;
    for (size_t i = 0; !rc && i < n; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "DELETE FROM entities_fts WHERE rowid = %lld; DELETE FROM "
                 "entities WHERE id = %lld", (long long)ids[i], (long long)ids[i]);
        rc = exec(ms, sql, err);
    }
    if (n)
        rc = rc ? (rollback(ms), rc) : exec(ms, "COMMIT", err);
    if (rc) {
        rollback(ms);
        ms->st.write_errors++;
    } else {
        for (size_t i = 0; i < n; i++)
            vindex_remove(ms->vi, ids[i]);
        *deleted = (int64_t)n;
        ms->st.writes += n;
    }
    free(ids);
    return rc;
}

/* --------------------------------------------------------------- relations */

static int check_relation_type(const json_t *v, const char **out, cx_error *err)
{
    int rc = check_text(v, "type", MEM_TYPE_MAX, false, out, err);
    if (rc)
        return rc;
    for (const char *p = *out; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return cx_error_set(err, CX_EINVAL,
                                "type: relation types are lower_snake_case in the active voice "
                                "(depends_on, supplies)");
    return 0;
}

int memstore_relation_put(memstore *ms, const mem_caller *c, const json_t *req, json_t **out,
                          cx_error *err)
{
    *out = NULL;
    if (!ms->db)
        return unavailable(ms, err);
    static const char *const keys[] = {"scope", "from", "to", "type", "strength", "to_scope",
                                       "agent", NULL};
    if (!json_is_object(req))
        return cx_error_set(err, CX_EINVAL, "the relation must be a JSON object");
    char scope[MEM_SCOPE_MAX + 1], to_scope[MEM_SCOPE_MAX + 1];
    const char *from, *to, *type;
    double strength = 1.0;
    if (check_unknown_keys(req, keys, err) ||
        pick_scope(json_object_get(req, "scope"), c, "scope", scope, err) ||
        check_name(json_object_get(req, "from"), "from", &from, err) ||
        check_name(json_object_get(req, "to"), "to", &to, err) ||
        check_relation_type(json_object_get(req, "type"), &type, err) ||
        check_unit(json_object_get(req, "strength"), "strength", &strength, err))
        return err && err->code ? err->code : CX_EINVAL;
    const json_t *ts = json_object_get(req, "to_scope");
    if (ts && !json_is_null(ts)) {
        const char *s;
        if (check_text(ts, "to_scope", MEM_SCOPE_MAX, false, &s, err))
            return CX_EINVAL;
        if (strcmp(s, scope) != 0 && strcmp(s, "global") != 0)
            return cx_error_set(err, CX_EINVAL,
                                "to_scope: a relation goes to an entity in the same scope (%s) "
                                "or in global",
                                scope);
        snprintf(to_scope, sizeof to_scope, "%s", s);
    } else {
        snprintf(to_scope, sizeof to_scope, "%s", scope);
    }
    if (!mem_can_write(c, scope))
        return deny(ms, c, scope, "relate", err);
    if (!mem_can_read(c, to_scope))
        return deny(ms, c, to_scope, "read", err);
    int64_t fid = find_entity(ms, scope, from), tid = find_entity(ms, to_scope, to);
    if (fid == -2 || tid == -2)
        return sql_fail(ms, err, "looking up the entities");
    if (fid < 0 || tid < 0) {
        char q[80];
        text_quote(fid < 0 ? from : to, q, sizeof q);
        return cx_error_set(err, CX_ENOTFOUND, "no entity %s in scope %s; store it first", q,
                            fid < 0 ? scope : to_scope);
    }
    int rc = check_limits(ms, c, false, err);
    if (rc)
        return rc;
    sqlite3_stmt *st = prep(ms,
                            "INSERT INTO relations(from_id, to_id, type, strength, created_at, "
                            "created_by) VALUES (?,?,?,?,?,?) ON CONFLICT(from_id, to_id, type) "
                            "DO UPDATE SET strength = excluded.strength",
                            err);
    if (!st)
        return CX_EIO;
    sqlite3_bind_int64(st, 1, fid);
    sqlite3_bind_int64(st, 2, tid);
    sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, strength);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)time_now_ms());
    sqlite3_bind_text(st, 6, c->agent ? c->agent : "operator", -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sql_fail(ms, err, "storing the relation");
    sqlite3_finalize(st);
    if (rc) {
        ms->st.write_errors++;
        return rc;
    }
    ms->st.writes++;
    *out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:f}", "scope", scope, "from", from, "to_scope",
                     to_scope, "to", to, "type", type, "strength", strength);
    return 0;
}

/* ------------------------------------------------------------------ search */

typedef struct cand {
    int64_t id;
    float vscore;
    int vrank, trank; /* 1-based; 0 = absent */
    double fused;
} cand;

static cand *cand_find(cand *c, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (c[i].id == id)
            return &c[i];
    return NULL;
}

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->fused != y->fused)
        return x->fused < y->fused ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

#define FTS_WORDS_MAX 32
#define FTS_WORD_MAX 64

/* How many entities hold `word` (lower-cased ASCII; -1 when unknown, e.g.
 * a word the tokenizer folds differently). */
static int64_t term_docs(memstore *ms, const char *word)
{
    sqlite3_stmt *st = prep(ms, "SELECT doc FROM entities_fts_vocab WHERE term = ?", NULL);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, word, -1, SQLITE_STATIC);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return n;
}

/* An FTS5 query that matches any of the words, each quoted so no user text
 * is read as FTS syntax. Words held by over half of the entities are left
 * out when rarer ones remain: BM25 gives them no weight (their IDF is not
 * above zero), yet ORed in they make FTS5 score most of the table; a query
 * of only common words keeps them all. */
static char *fts_query(memstore *ms, const char *text)
{
    char words[FTS_WORDS_MAX][FTS_WORD_MAX + 1];
    int64_t docs[FTS_WORDS_MAX];
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)text;
    while (*p && n < FTS_WORDS_MAX) {
        while (*p && !(isalnum(*p) || *p >= 0x80))
            p++;
        const unsigned char *start = p;
        while (*p && (isalnum(*p) || *p >= 0x80))
            p++;
        if (p > start) {
            size_t len = (size_t)(p - start);
            if (len > FTS_WORD_MAX)
                len = FTS_WORD_MAX;
            for (size_t i = 0; i < len; i++)
                words[n][i] = (char)tolower(start[i]);
            words[n][len] = '\0';
            n++;
        }
    }
    if (!n)
        return NULL;
    int64_t total = (int64_t)vindex_count(ms->vi);
    size_t rare = 0;
    for (size_t i = 0; i < n; i++) {
        docs[i] = n > 1 && total > 0 ? term_docs(ms, words[i]) : -1;
        rare += docs[i] < 0 || docs[i] * 2 <= total;
    }
    strbuf sb;
    strbuf_init(&sb);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (rare && docs[i] >= 0 && docs[i] * 2 > total)
            continue;
        strbuf_appendf(&sb, "%s\"%s\"", used++ ? " OR " : "", words[i]);
    }
    return strbuf_detach(&sb);
}

/* Readable scope list for a caller: NULL when the operator may read all. */
static size_t caller_scopes(const mem_caller *c, const char *only, char out[3][MEM_SCOPE_MAX + 1])
{
    if (only) {
        snprintf(out[0], MEM_SCOPE_MAX + 1, "%s", only);
        return 1;
    }
    size_t n = 0;
    snprintf(out[n++], MEM_SCOPE_MAX + 1, "agent:%.128s", c->agent);
    if (c->scope != MEM_SCOPE_AGENT)
        snprintf(out[n++], MEM_SCOPE_MAX + 1, "workspace:%.128s",
                 c->workspace && *c->workspace ? c->workspace : "default");
    snprintf(out[n++], MEM_SCOPE_MAX + 1, "global");
    return n;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Does entity `id` pass the type and time filters (and exist)? Fills scope. */
static bool entity_passes(memstore *ms, int64_t id, const mem_search_query *q, size_t nscopes,
                          char scopes[3][MEM_SCOPE_MAX + 1], bool all_scopes)
{
    sqlite3_stmt *st = prep(ms, "SELECT scope, type, updated_at FROM entities WHERE id = ?", NULL);
    if (!st)
        return false;
    sqlite3_bind_int64(st, 1, id);
    bool ok = false;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *scope = (const char *)sqlite3_column_text(st, 0);
        const char *type = (const char *)sqlite3_column_text(st, 1);
        uint64_t at = (uint64_t)sqlite3_column_int64(st, 2);
        ok = all_scopes;
        for (size_t i = 0; !ok && i < nscopes; i++)
            ok = strcmp(scope, scopes[i]) == 0;
        if (ok && q->type_count) {
            bool t = false;
            for (size_t i = 0; !t && i < q->type_count; i++)
                t = strcmp(type, q->types[i]) == 0;
            ok = t;
        }
        if (ok && q->since_ms && at < q->since_ms)
            ok = false;
        if (ok && q->until_ms && at > q->until_ms)
            ok = false;
    }
    sqlite3_finalize(st);
    return ok;
}

static json_t *hit_json(memstore *ms, int64_t id)
{
    sqlite3_stmt *st = prep(ms, "SELECT scope, name, type, confidence FROM entities WHERE id = ?",
                            NULL);
    if (!st)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    json_t *o = NULL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        int64_t total;
        json_t *obs = observations_json(ms, id, 3, &total);
        json_t *texts = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(obs, i, v) json_array_append(texts, json_object_get(v, "text"));
        json_decref(obs);
        o = json_pack("{s:s, s:s, s:s, s:f, s:o, s:I}", "scope", sqlite3_column_text(st, 0), "name",
                      sqlite3_column_text(st, 1), "type", sqlite3_column_text(st, 2), "confidence",
                      sqlite3_column_double(st, 3), "observations", texts, "observation_count",
                      (json_int_t)total);
    }
    sqlite3_finalize(st);
    return o;
}

static json_t *expand(memstore *ms, const mem_caller *c, const int64_t *seeds, size_t nseeds,
                      int depth, bool with_seeds, json_t **edges_out);

int mem_search_check(memstore *ms, const mem_caller *c, const mem_search_query *q,
                     cx_error *err)
{
    if (!ms->db)
        return unavailable(ms, err);
    if (!q->text || !*q->text)
        return cx_error_set(err, CX_EINVAL, "q: the search text is missing");
    if (strlen(q->text) > 4096)
        return cx_error_set(err, CX_ETOOBIG, "q: %zu bytes, at most 4096", strlen(q->text));
    size_t limit = q->limit ? q->limit : 10;
    if (limit > MEM_SEARCH_LIMIT_MAX)
        return cx_error_set(err, CX_EINVAL, "limit: %zu, at most %d", limit, MEM_SEARCH_LIMIT_MAX);
    if (q->depth < 0 || q->depth > MEM_GRAPH_DEPTH_MAX)
        return cx_error_set(err, CX_EINVAL, "depth: %d, from 0 to %d", q->depth,
                            MEM_GRAPH_DEPTH_MAX);
    if (!(q->min_score >= 0.0 && q->min_score <= 1.0))
        return cx_error_set(err, CX_EINVAL, "min_score: from 0 to 1");
    if (q->scope) {
        mem_scope_kind k;
        const char *n;
        if (mem_scope_parse(q->scope, &k, &n, err))
            return CX_EINVAL;
        if (!mem_can_read(c, q->scope))
            return deny(ms, c, q->scope, "search", err);
    } else if (c->agent && !c->enabled) {
        return deny(ms, c, "global", "search", err);
    }
    return 0;
}

int mem_search_run(memstore *ms, const mem_caller *c, const mem_search_query *q, const float *qv,
                   const char *note, json_t **out, cx_error *err)
{
    *out = NULL;
    if (!ms->db)
        return unavailable(ms, err);
    size_t limit = q->limit ? q->limit : 10;
    uint64_t t0 = time_monotonic_ns();
    bool all = !c->agent && !q->scope;
    char scopes[3][MEM_SCOPE_MAX + 1];
    size_t nscopes = all ? 0 : caller_scopes(c, q->scope, scopes);
    bool filtered = q->type_count || q->since_ms || q->until_ms;
    size_t want = limit * 5 < 50 ? 50 : limit * 5;
    if (filtered)
        want = CANDIDATES_MAX;
    if (want > CANDIDATES_MAX)
        want = CANDIDATES_MAX;

    cand *cands = calloc(2 * want, sizeof *cands);
    vindex_hit *hits = calloc(want, sizeof *hits);
    if (!cands || !hits) {
        free(cands);
        free(hits);
        return cx_error_set(err, CX_ENOMEM, "out of memory searching");
    }
    size_t n = 0;
    int rc = 0;
    /* without the query's vector, text ranks alone (mode=vector too) */
    bool vector_used = q->mode != MEM_SEARCH_TEXT && qv && ms->dim;
    if (vector_used) {
        uint32_t ids[3];
        size_t nids = 0;
        for (size_t i = 0; i < nscopes; i++) {
            uint32_t id = scope_id(ms, scopes[i], false);
            if (id != UINT32_MAX)
                ids[nids++] = id;
        }
        qsort(ids, nids, sizeof ids[0], u32_cmp);
        vindex_filter f = {.scopes = ids, .scope_count = nids};
        size_t got =
            (all || nids) ? vindex_search(ms->vi, qv, want, 1e-6f, all ? NULL : &f, hits) : 0;
        int rank = 0;
        for (size_t i = 0; i < got; i++) {
            if (filtered && !entity_passes(ms, hits[i].id, q, nscopes, scopes, all))
                continue;
            cands[n] = (cand){.id = hits[i].id, .vscore = hits[i].score, .vrank = ++rank};
            n++;
        }
    }
    char *fq = !rc && (q->mode != MEM_SEARCH_VECTOR || !vector_used) ? fts_query(ms, q->text) : NULL;
    if (fq) {
        strbuf sql;
        strbuf_init(&sql);
        strbuf_appends(&sql, "SELECT f.rowid FROM entities_fts f JOIN entities e ON e.id = "
                             "f.rowid WHERE entities_fts MATCH ?1");
        if (!all) {
            strbuf_appends(&sql, " AND e.scope IN (");
            for (size_t i = 0; i < nscopes; i++)
                strbuf_appendf(&sql, "%s?%zu", i ? "," : "", i + 2);
            strbuf_appends(&sql, ")");
        }
        if (q->since_ms)
            strbuf_appendf(&sql, " AND e.updated_at >= %llu", (unsigned long long)q->since_ms);
        if (q->until_ms)
            strbuf_appendf(&sql, " AND e.updated_at <= %llu", (unsigned long long)q->until_ms);
        if (q->type_count) {
            strbuf_appends(&sql, " AND e.type IN (");
            for (size_t i = 0; i < q->type_count; i++)
                strbuf_appendf(&sql, "%s?%zu", i ? "," : "", i + 10);
            strbuf_appends(&sql, ")");
        }
        strbuf_appendf(&sql, " ORDER BY bm25(entities_fts, 10.0, 2.0, 1.0) LIMIT %zu", want);
        sqlite3_stmt *st = sql.data ? prep(ms, sql.data, err) : NULL;
        strbuf_free(&sql);
        if (!st) {
            rc = CX_EIO;
        } else {
            sqlite3_bind_text(st, 1, fq, -1, SQLITE_STATIC);
            for (size_t i = 0; i < nscopes; i++)
                sqlite3_bind_text(st, (int)i + 2, scopes[i], -1, SQLITE_STATIC);
            for (size_t i = 0; i < q->type_count && i < 50; i++)
                sqlite3_bind_text(st, (int)i + 10, q->types[i], -1, SQLITE_STATIC);
            int rank = 0, s;
            while ((s = sqlite3_step(st)) == SQLITE_ROW) {
                int64_t id = sqlite3_column_int64(st, 0);
                cand *x = cand_find(cands, n, id);
                if (!x && n < 2 * want) {
                    x = &cands[n++];
                    *x = (cand){.id = id};
                }
                if (x)
                    x->trank = ++rank;
            }
            if (s != SQLITE_DONE)
                rc = sql_fail(ms, err, "full-text search");
            sqlite3_finalize(st);
        }
        free(fq);
    }
    free(hits);
    if (rc) {
        free(cands);
        return rc;
    }
    /* reciprocal rank fusion, scaled so 1.0 = first in every list used */
    double best = q->mode == MEM_SEARCH_HYBRID && vector_used ? 2.0 / (RRF_K + 1)
                                                              : 1.0 / (RRF_K + 1);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        if (cands[i].vrank)
            s += 1.0 / (RRF_K + cands[i].vrank);
        if (cands[i].trank)
            s += 1.0 / (RRF_K + cands[i].trank);
        cands[i].fused = s / best;
    }
    qsort(cands, n, sizeof *cands, cand_cmp);
    json_t *results = json_array();
    int64_t *seeds = calloc(limit, sizeof *seeds);
    size_t nseeds = 0;
    for (size_t i = 0; i < n && json_array_size(results) < limit; i++) {
        if (cands[i].fused < q->min_score)
            break;
        json_t *h = hit_json(ms, cands[i].id);
        if (!h)
            continue;
        json_object_set_new(h, "score", json_real(round(cands[i].fused * 1e4) / 1e4));
        json_object_set_new(h, "vector_score",
                            cands[i].vrank ? json_real(round(cands[i].vscore * 1e4) / 1e4)
                                           : json_null());
        json_object_set_new(h, "text_rank",
                            cands[i].trank ? json_integer(cands[i].trank) : json_null());
        json_array_append_new(results, h);
        if (seeds)
            seeds[nseeds++] = cands[i].id;
    }
    free(cands);
    json_t *expanded = json_array();
    if (q->depth > 0 && nseeds) {
        json_decref(expanded);
        expanded = expand(ms, c, seeds, nseeds, q->depth, false, NULL);
    }
    free(seeds);
    uint64_t ns = time_monotonic_ns() - t0;
    ms->st.searches++;
    ms->st.search_ns_total += ns;
    double secs = (double)ns / 1e9;
    for (size_t b = 0; b < 12; b++)
        if (secs <= memstore_search_buckets[b]) {
            ms->st.search_hist[b]++;
            break;
        }
    note_slow(ms, "search", t0, q->text);
    *out = json_pack("{s:o, s:o, s:f}", "results", results, "expanded",
                     expanded ? expanded : json_array(), "took_ms", (double)ns / 1e6);
    if (*out && note && q->mode != MEM_SEARCH_TEXT && !vector_used) {
        char text[320];
        snprintf(text, sizeof text, "unavailable: %s", note);
        text_make_utf8(text);
        json_object_set_new(*out, "vector", json_string(text));
    }
    return 0;
}

int memstore_search(memstore *ms, const mem_caller *c, const mem_search_query *q, json_t **out,
                    cx_error *err)
{
    *out = NULL;
    int rc = mem_search_check(ms, c, q, err);
    if (rc)
        return rc;
    if (q->mode == MEM_SEARCH_TEXT)
        return mem_search_run(ms, c, q, NULL, NULL, out, err);
    float *qv = malloc((ms->dim ? ms->dim : 1) * sizeof *qv);
    char note[256] = "";
    if (!qv)
        return cx_error_set(err, CX_ENOMEM, "out of memory embedding the query");
    bool have = false;
    if (!ms->remote) {
        if (embed_builtin(q->text, strlen(q->text), qv) != 0) {
            free(qv);
            return cx_error_set(err, CX_ENOMEM, "out of memory embedding the query");
        }
        have = true;
    } else {
        have = mem_remote_cached_query(ms->remote_q, q->text, qv, note, sizeof note);
    }
    rc = mem_search_run(ms, c, q, have ? qv : NULL, note, out, err);
    free(qv);
    return rc;
}

/* ------------------------------------------------------------------- graph */

typedef struct gnode {
    int64_t id;
    int depth;
    int64_t via;
    double strength;
} gnode;

static bool gnode_has(const gnode *g, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (g[i].id == id)
            return true;
    return false;
}

/* Breadth first from the seeds over relations in both directions, keeping
 * only entities the caller may read. Returns the nodes beyond the seeds as
 * JSON; *edges_out (when asked) gets every edge between visited nodes. */
static json_t *expand(memstore *ms, const mem_caller *c, const int64_t *seeds, size_t nseeds,
                      int depth, bool with_seeds, json_t **edges_out)
{
    gnode *g = calloc(MEM_GRAPH_NODES_MAX, sizeof *g);
    json_t *nodes = json_array();
    if (!g)
        return nodes;
    size_t n = 0;
    for (size_t i = 0; i < nseeds && n < MEM_GRAPH_NODES_MAX; i++)
        if (!gnode_has(g, n, seeds[i]))
            g[n++] = (gnode){.id = seeds[i], .depth = 0, .via = 0, .strength = 1.0};
    json_t *edges = json_array();
    int64_t rel_ids[EDGES_MAX];
    size_t nrel = 0;
    sqlite3_stmt *st = prep(ms,
                            "SELECT r.from_id, r.to_id, r.type, r.strength, e.scope, r.id FROM relations "
                            "r JOIN entities e ON e.id = CASE WHEN r.from_id = ?1 THEN r.to_id "
                            "ELSE r.from_id END WHERE r.from_id = ?1 OR r.to_id = ?1 ORDER BY "
                            "r.strength DESC LIMIT 200",
                            NULL);
    for (size_t i = 0; st && i < n; i++) {
        if (g[i].depth >= depth)
            continue;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, g[i].id);
        while (sqlite3_step(st) == SQLITE_ROW) {
            int64_t from = sqlite3_column_int64(st, 0), to = sqlite3_column_int64(st, 1);
            int64_t other = from == g[i].id ? to : from;
            const char *scope = (const char *)sqlite3_column_text(st, 4);
            if (!mem_can_read(c, scope))
                continue;
            bool known = gnode_has(g, n, other);
            if (!known) {
                if (n >= MEM_GRAPH_NODES_MAX)
                    continue;
                g[n++] = (gnode){.id = other, .depth = g[i].depth + 1, .via = g[i].id,
                                 .strength = sqlite3_column_double(st, 3)};
            }
            /* each edge once */
            int64_t rid = sqlite3_column_int64(st, 5);
            bool seen = false;
            for (size_t e = 0; e < nrel && !seen; e++)
                seen = rel_ids[e] == rid;
            if (!seen && nrel < EDGES_MAX) {
                rel_ids[nrel++] = rid;
                json_array_append_new(edges, json_pack("{s:I, s:I, s:s, s:f}", "from_id",
                                                       (json_int_t)from, "to_id", (json_int_t)to,
                                                       "type", sqlite3_column_text(st, 2),
                                                       "strength", sqlite3_column_double(st, 3)));
            }
        }
    }
    sqlite3_finalize(st);
    /* names instead of ids */
    for (size_t i = with_seeds ? 0 : nseeds; i < n; i++) {
        json_t *h = hit_json(ms, g[i].id);
        if (!h)
            continue;
        json_object_set_new(h, "depth", json_integer(g[i].depth));
        json_object_set_new(h, "strength", json_real(g[i].strength));
        json_array_append_new(nodes, h);
    }
    if (edges_out) {
        json_t *named = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(edges, i, e) {
            int64_t f = json_integer_value(json_object_get(e, "from_id"));
            int64_t t = json_integer_value(json_object_get(e, "to_id"));
            json_t *fh = hit_json(ms, f), *th = hit_json(ms, t);
            if (fh && th)
                json_array_append_new(
                    named, json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "from_scope",
                                     json_object_get(fh, "scope"), "from", json_object_get(fh, "name"),
                                     "to_scope", json_object_get(th, "scope"), "to",
                                     json_object_get(th, "name"), "type", json_object_get(e, "type"),
                                     "strength", json_object_get(e, "strength")));
            json_decref(fh);
            json_decref(th);
        }
        *edges_out = named;
    }
    json_decref(edges);
    free(g);
    return nodes;
}

int memstore_graph(memstore *ms, const mem_caller *c, const char *scope, const char *name,
                   int depth, json_t **out, cx_error *err)
{
    *out = NULL;
    if (!ms->db)
        return unavailable(ms, err);
    if (depth < 0 || depth > MEM_GRAPH_DEPTH_MAX)
        return cx_error_set(err, CX_EINVAL, "depth: %d, from 0 to %d", depth, MEM_GRAPH_DEPTH_MAX);
    int64_t id = lookup_checked(ms, c, scope, name, "read", false, err);
    if (id < 0)
        return (int)id;
    json_t *edges = NULL;
    json_t *nodes = expand(ms, c, &id, 1, depth, true, &edges);
    *out = json_pack("{s:o, s:o, s:o, s:i}", "root", entity_json(ms, id, false, 20), "nodes", nodes,
                     "edges", edges ? edges : json_array(), "depth", depth);
    return 0;
}

/* ----------------------------------------------------------------- context */

char *memstore_context_for(memstore *ms, const mem_caller *c, const char *query, size_t limit,
                           size_t max_chars)
{
    if (!ms || !c->enabled || !query || !*query)
        return NULL;
    char q[4097];
    snprintf(q, sizeof q, "%s", query);
    mem_search_query sq = {.text = q, .limit = limit ? limit : 5, .mode = MEM_SEARCH_HYBRID};
    json_t *res = NULL;
    cx_error err = {0};
    if (memstore_search(ms, c, &sq, &res, &err) != 0) {
        ms->st.write_errors++;
        log_event(LOG_STREAM_AGENTS, LOG_WARN, "memory",
                  json_pack("{s:s}", "agent", c->agent ? c->agent : "-"),
                  "memory context unavailable, answering without it: %s", err.msg);
        return NULL;
    }
    char *text = memstore_context_text(res, max_chars);
    json_decref(res);
    return text;
}

char *memstore_context_text(const json_t *res, size_t max_chars)
{
    strbuf sb;
    strbuf_init(&sb);
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(res, "results"), i, h) {
        strbuf line;
        strbuf_init(&line);
        strbuf_appendf(&line, "- %s (%s, %s):", json_string_value(json_object_get(h, "name")),
                       json_string_value(json_object_get(h, "type")),
                       json_string_value(json_object_get(h, "scope")));
        size_t j;
        json_t *o;
        json_array_foreach(json_object_get(h, "observations"), j, o)
            strbuf_appendf(&line, "%s %s", j ? ";" : "", json_string_value(o));
        strbuf_appends(&line, "\n");
        if (line.data && sb.len + line.len <= max_chars)
            strbuf_append(&sb, line.data, line.len);
        strbuf_free(&line);
    }
    if (!sb.len) {
        strbuf_free(&sb);
        return NULL;
    }
    return strbuf_detach(&sb);
}

/* ----------------------------------------------------------------- reindex */

int memstore_reindex(memstore *ms, const char *scope_prefix, json_t **report, cx_error *err)
{
    *report = NULL;
    if (!ms->db)
        return unavailable(ms, err);
    uint64_t t0 = time_monotonic_ns();
    int64_t count = 0, queued = 0;
    int rc;
    if (ms->remote) {
        /* new vectors, not the cached ones: the model may have changed
         * behind the same name */
        embedder_cache_clear(ms->emb);
        mem_remote_restart(ms->remote_q);
    }
    if (!scope_prefix) {
        vindex_clear(ms->vi);
        rc = exec(ms, "DELETE FROM entities_fts", err);
        if (!rc)
            rc = reindex_where(ms, "SELECT id, name, type, scope FROM entities", NULL, &count,
                               &queued, err);
    } else if (str_has_prefix(scope_prefix, "agent:")) {
        const char *agent = scope_prefix + 6;
        rc = reindex_where(ms,
                           "SELECT id, name, type, scope FROM entities WHERE scope = 'agent:' || ?1 "
                           "OR created_by = ?1",
                           agent, &count, &queued, err);
    } else {
        rc = reindex_where(ms, "SELECT id, name, type, scope FROM entities WHERE scope = ?",
                           scope_prefix, &count, &queued, err);
    }
    if (rc)
        return rc;
    *report = json_pack("{s:I, s:s, s:I, s:I, s:f}", "entities", (json_int_t)count, "embedder",
                        ms->emb_id, "dim", (json_int_t)ms->dim, "vectors",
                        (json_int_t)vindex_count(ms->vi), "took_ms",
                        (double)(time_monotonic_ns() - t0) / 1e6);
    if (*report && ms->remote) {
        json_object_set_new(*report, "queued", json_integer((json_int_t)queued));
        json_object_set_new(*report, "note",
                            json_string("the entities wait for new vectors from the embedder; "
                                        "caxton memory health-check shows how many are left"));
    }
    return 0;
}

/* ------------------------------------------------------------------- stats */

static int64_t count_of(memstore *ms, const char *sql)
{
    sqlite3_stmt *st = prep(ms, sql, NULL);
    if (!st)
        return -1;
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return n;
}

void memstore_get_stats(memstore *ms, memstore_stats *out)
{
    *out = ms->st;
    out->available = ms->db != NULL;
    out->max_size = ms->opt.max_size;
    out->db_bytes = file_size(ms->path, "");
    out->wal_bytes = file_size(ms->path, "-wal");
    out->index_bytes = vindex_bytes(ms->vi);
    out->vectors = (int64_t)vindex_count(ms->vi);
    out->embedder = ms->emb_id;
    out->embedder_remote = ms->remote;
    out->dim = (int64_t)ms->dim;
    if (ms->db) {
        out->entities = count_of(ms, "SELECT count(*) FROM entities");
        out->relations = count_of(ms, "SELECT count(*) FROM relations");
    } else {
        out->entities = out->relations = -1;
    }
    if (ms->remote_q)
        mem_remote_stats(ms->remote_q, out); /* after entities and vectors: it uses them */
}

int memstore_scope_counts(memstore *ms, json_t **out, cx_error *err)
{
    *out = NULL;
    if (!ms->db)
        return unavailable(ms, err);
    sqlite3_stmt *st = prep(ms, "SELECT scope, count(*) FROM entities GROUP BY scope", err);
    if (!st)
        return CX_EIO;
    json_t *o = json_object();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_object_set_new(o, (const char *)sqlite3_column_text(st, 0),
                            json_integer(sqlite3_column_int64(st, 1)));
    sqlite3_finalize(st);
    *out = o;
    return 0;
}

json_t *memstore_slow_queries(memstore *ms, uint64_t threshold_ms)
{
    json_t *arr = json_array();
    size_t n = ms->slow_total < SLOW_RING ? ms->slow_total : SLOW_RING;
    for (size_t k = 0; k < n; k++) {
        size_t i = (ms->slow_next + SLOW_RING - 1 - k) % SLOW_RING;
        const slow_entry *e = &ms->slow[i];
        if (e->ms < threshold_ms)
            continue;
        char at[40];
        time_text(e->at_ms, at);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:s}", "at", at, "operation", e->op,
                                             "ms", (json_int_t)e->ms, "detail", e->detail));
    }
    return arr;
}

int memstore_set_cache(memstore *ms, uint64_t bytes, cx_error *err)
{
    if (!ms->db)
        return unavailable(ms, err);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA cache_size = -%llu", (unsigned long long)(bytes / 1024));
    if (exec(ms, sql, err))
        return CX_EIO;
    ms->opt.cache_size = bytes;
    return 0;
}

uint64_t memstore_cache_size(const memstore *ms) { return ms->opt.cache_size; }
