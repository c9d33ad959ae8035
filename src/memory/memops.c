/* The memory operations by name, and the ones that look at the database
 * without changing it: health-check, integrity-check, wal-status and
 * corruption-analysis. */
#include "memory/memops.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "memory/memops_internal.h"

static const struct {
    const char *name;
    ops_fn *fn;
    bool offline;
    bool changes; /* logged: it writes or replaces files */
} ops_table[] = {
    {"health-check", memops_op_health, true, false},
    {"integrity-check", memops_op_integrity, true, false},
    {"wal-status", memops_op_wal_status, true, false},
    {"corruption-analysis", memops_op_corruption, true, false},
    {"recover", memops_op_recover, true, true},
    {"restore", memops_op_restore, true, true},
    {"backup", memops_op_backup, true, true},
    {"emergency-backup", memops_op_backup, true, true},
    {"export", memops_op_export, true, false},
    {"import", memops_op_import, true, true},
    {"reinitialize", memops_op_reinitialize, true, true},
    {"reindex", memops_op_reindex, true, true},
    {"cleanup", memops_op_cleanup, true, true},
    {"optimize", memops_op_optimize, true, true},
    {"maintenance", memops_op_optimize, true, true},
    {"usage", memops_op_usage, true, false},
    {"resource-usage", memops_op_resources, true, false},
    {"index-analysis", memops_op_index_analysis, true, false},
    {"analyze-queries", memops_op_analyze_queries, true, false},
    {"performance-metrics", memops_op_performance, false, false},
    {"slow-queries", memops_op_slow_queries, false, false},
    {"adjust-cache", memops_op_adjust_cache, false, true},
};
#define OPS_COUNT (sizeof ops_table / sizeof ops_table[0])

const char *const memops_names[] = {
    "health-check",   "integrity-check", "wal-status",          "corruption-analysis",
    "recover",        "restore",         "backup",              "emergency-backup",
    "export",         "import",          "reinitialize",        "reindex",
    "cleanup",        "optimize",        "maintenance",         "usage",
    "resource-usage", "index-analysis",  "analyze-queries",     "performance-metrics",
    "slow-queries",   "adjust-cache",    NULL,
};

static int find_op(const char *op)
{
    for (size_t i = 0; op && i < OPS_COUNT; i++)
        if (strcmp(ops_table[i].name, op) == 0)
            return (int)i;
    return -1;
}

bool memops_offline_capable(const char *op)
{
    int i = find_op(op);
    return i >= 0 && ops_table[i].offline;
}

int memops_run(const memops_ctx *ctx, const char *op, const json_t *args, json_t **result,
               cx_error *err)
{
    *result = NULL;
    int i = find_op(op);
    if (i < 0) {
        const char *near = op ? text_suggest(op, memops_names, OPS_COUNT) : NULL;
        char quoted[96];
        text_quote(op ? op : "", quoted, sizeof quoted);
        return cx_error_set(err, CX_ENOTFOUND, "unknown memory operation %s%s%s%s", quoted,
                            near ? " (did you mean " : "", near ? near : "", near ? "?)" : "");
    }
    if (!ctx || !ctx->db_path || !*ctx->db_path)
        return cx_error_set(err, CX_EINVAL, "memory %s: no database path", op);
    if (args && !json_is_object(args) && !json_is_null(args))
        return cx_error_set(err, CX_EINVAL, "memory %s: the arguments must be a JSON object", op);
    if (!ctx->store && !ops_table[i].offline)
        return cx_error_set(err, CX_EUNAVAIL,
                            "memory %s needs a running server (start it with 'caxton service "
                            "start')",
                            op);
    json_t *res = ops_result_new(op);
    if (!res)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    uint64_t start = time_monotonic_ns();
    int rc = ops_table[i].fn(ctx, json_is_object(args) ? args : NULL, res, err);
    if (rc < 0) {
        json_decref(res);
        return rc;
    }
    json_object_set_new(res, "took_ms",
                        json_integer((json_int_t)((time_monotonic_ns() - start) / 1000000)));
    if (ops_table[i].changes) {
        const char *first = json_string_value(
            json_array_get(json_object_get(res, "problems"), 0));
        if (ops_is_ok(res))
            log_info("memory", "memory %s by %s: done", op, ctx->actor ? ctx->actor : "operator");
        else
            log_warn("memory", "memory %s by %s: not ok: %s", op,
                     ctx->actor ? ctx->actor : "operator", first ? first : "?");
    }
    *result = res;
    return 0;
}

/* ---- shared checks ------------------------------------------------------ */

static const char *const required_tables[] = {
    "entities", "observations", "entity_versions", "relations", "embeddings",
    "entities_fts", "scope_violations", "scope_overrides", "meta",
};

/* Adds a problem for each missing table (res may be NULL); true when all
 * are there. */
static bool tables_present(sqlite3 *db, json_t *res)
{
    bool all = true;
    for (size_t i = 0; i < sizeof required_tables / sizeof *required_tables; i++)
        if (!ops_table_exists(db, required_tables[i])) {
            if (res)
                ops_problem(res, "table %s is missing: this is not a complete memory database",
                            required_tables[i]);
            all = false;
        }
    return all;
}

typedef struct parity {
    int64_t entities, observations, relations, embeddings, fts;
    int64_t missing_embeddings, orphan_embeddings, bad_vectors;
    int64_t fts_missing, fts_orphans;
    int64_t orphan_relations, orphan_observations;
    int failed; /* queries that did not run */
} parity;

static void count_into(sqlite3 *db, const char *sql, int64_t *out, int *failed)
{
    if (!ops_query_int(db, sql, out)) {
        *out = -1;
        (*failed)++;
    }
}

static void parity_read(sqlite3 *db, parity *p)
{
    memset(p, 0, sizeof *p);
    count_into(db, "SELECT count(*) FROM entities", &p->entities, &p->failed);
    count_into(db, "SELECT count(*) FROM observations", &p->observations, &p->failed);
    count_into(db, "SELECT count(*) FROM relations", &p->relations, &p->failed);
    count_into(db, "SELECT count(*) FROM embeddings", &p->embeddings, &p->failed);
    count_into(db, "SELECT count(*) FROM entities_fts", &p->fts, &p->failed);
    count_into(db,
               "SELECT count(*) FROM entities e WHERE NOT EXISTS "
               "(SELECT 1 FROM embeddings m WHERE m.entity_id = e.id)",
               &p->missing_embeddings, &p->failed);
    count_into(db,
               "SELECT count(*) FROM embeddings m WHERE NOT EXISTS "
               "(SELECT 1 FROM entities e WHERE e.id = m.entity_id)",
               &p->orphan_embeddings, &p->failed);
    count_into(db,
               "SELECT count(*) FROM embeddings WHERE dim <= 0 OR typeof(vector) != 'blob' "
               "OR length(vector) != dim * 4",
               &p->bad_vectors, &p->failed);
    count_into(db,
               "SELECT count(*) FROM entities e WHERE NOT EXISTS "
               "(SELECT 1 FROM entities_fts f WHERE f.rowid = e.id)",
               &p->fts_missing, &p->failed);
    count_into(db,
               "SELECT count(*) FROM entities_fts f WHERE NOT EXISTS "
               "(SELECT 1 FROM entities e WHERE e.id = f.rowid)",
               &p->fts_orphans, &p->failed);
    count_into(db,
               "SELECT count(*) FROM relations r WHERE "
               "NOT EXISTS (SELECT 1 FROM entities e WHERE e.id = r.from_id) OR "
               "NOT EXISTS (SELECT 1 FROM entities e WHERE e.id = r.to_id)",
               &p->orphan_relations, &p->failed);
    count_into(db,
               "SELECT count(*) FROM observations o WHERE "
               "NOT EXISTS (SELECT 1 FROM entities e WHERE e.id = o.entity_id)",
               &p->orphan_observations, &p->failed);
}

static json_t *embedders_json(sqlite3 *db)
{
    json_t *list = json_array();
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT embedder, dim, count(*) FROM embeddings "
                           "GROUP BY embedder, dim ORDER BY 3 DESC LIMIT 50",
                           -1, &st, NULL) != SQLITE_OK)
        return list;
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(
            list, json_pack("{s:o, s:I, s:I}", "embedder",
                            ops_string((const char *)sqlite3_column_text(st, 0),
                                       (size_t)sqlite3_column_bytes(st, 0)),
                            "dim", (json_int_t)sqlite3_column_int64(st, 1), "vectors",
                            (json_int_t)sqlite3_column_int64(st, 2)));
    sqlite3_finalize(st);
    return list;
}

static void files_json(const memops_ctx *ctx, json_t *res)
{
    char *wal = ops_sidecar(ctx->db_path, "-wal");
    char *shm = ops_sidecar(ctx->db_path, "-shm");
    json_object_set_new(res, "files",
                        json_pack("{s:I, s:I, s:I}", "db_bytes",
                                  (json_int_t)ops_size_or_zero(ctx->db_path), "wal_bytes",
                                  (json_int_t)ops_size_or_zero(wal), "shm_bytes",
                                  (json_int_t)ops_size_or_zero(shm)));
    free(wal);
    free(shm);
}

static void schema_version_check(sqlite3 *db, json_t *res)
{
    int64_t version = -1;
    if (!ops_query_int(db, "PRAGMA user_version", &version)) {
        ops_problem(res, "cannot read the schema version: %s", sqlite3_errmsg(db));
        return;
    }
    json_object_set_new(res, "schema_version",
                        json_pack("{s:I, s:i}", "database", (json_int_t)version, "expected",
                                  memstore_migration_count));
    if (version > memstore_migration_count)
        ops_problem(res,
                    "schema version %lld is newer than this caxton's (%d): the database was "
                    "written by a newer release",
                    (long long)version, memstore_migration_count);
    else if (version < memstore_migration_count)
        ops_warning(res,
                    "schema version %lld is older than this caxton's (%d): the server migrates "
                    "it when it opens the database",
                    (long long)version, memstore_migration_count);
}

/* ---- health-check ------------------------------------------------------- */

/* The running store's embedder, and for a remote one its queue. */
static void embedder_health(const memstore_stats *st, json_t *res)
{
    json_t *o = json_pack("{s:s, s:b, s:I}", "id", st->embedder ? st->embedder : "?", "remote",
                          st->embedder_remote, "dim", (json_int_t)st->dim);
    if (st->embedder_remote) {
        json_object_set_new(o, "waiting", json_integer((json_int_t)st->embeddings_waiting));
        json_object_set_new(o, "refused", json_integer((json_int_t)st->embeddings_refused));
        json_object_set_new(o, "batches", json_integer((json_int_t)st->embed_batches));
        json_object_set_new(o, "failures", json_integer((json_int_t)st->embed_failures));
        if (st->embed_last_error[0])
            json_object_set_new(o, "last_error", json_string(st->embed_last_error));
        if (st->embeddings_waiting > 0)
            ops_warning(res, "%lld %s waiting for embeddings from %s%s%s%s",
                        (long long)st->embeddings_waiting,
                        st->embeddings_waiting == 1 ? "entity" : "entities", st->embedder,
                        st->embeddings_refused ? " (some refused by the provider: see the log)"
                                               : "",
                        st->embed_last_error[0] ? "; last error: " : "",
                        st->embed_last_error);
    }
    json_object_set_new(res, "embedder", o);
}

#define WAL_LARGE (64ull * 1024 * 1024)

int memops_op_health(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    (void)err;
    bool quick = ops_arg_true(args, "quick");
    json_object_set_new(res, "path", json_string(ctx->db_path));
    json_object_set_new(res, "running", json_boolean(ctx->store != NULL));
    bool live = ctx->store && memstore_available(ctx->store);
    if (ctx->store && !live)
        ops_problem(res, "the running memory store is unavailable (it could not open the "
                         "database); the files were checked directly");
    files_json(ctx, res);
    char *wal = ops_sidecar(ctx->db_path, "-wal");
    uint64_t wal_bytes = ops_size_or_zero(wal);
    free(wal);
    if (wal_bytes > WAL_LARGE)
        ops_warning(res,
                    "the WAL is %llu MB: run 'caxton memory optimize' to checkpoint it",
                    (unsigned long long)(wal_bytes >> 20));
    ops_db db;
    if (ops_db_open(ctx, OPS_CHECK, &db, res) < 0)
        return 0;
    bool ok;
    json_t *msgs = ops_pragma_check(db.sql, !quick, &ok);
    if (!ok)
        ops_problem(res, "%s failed: %s%s", quick ? "quick_check" : "integrity_check",
                    json_string_value(json_array_get(msgs, 0)),
                    json_array_size(msgs) > 1 ? " (and more; see integrity-check)" : "");
    json_object_set_new(res, "integrity",
                        json_pack("{s:s, s:b, s:o}", "check",
                                  quick ? "quick_check" : "integrity_check", "ok", ok,
                                  "messages", msgs));
    schema_version_check(db.sql, res);
    if (!tables_present(db.sql, res)) {
        ops_db_close(&db);
        return 0;
    }
    parity p;
    parity_read(db.sql, &p);
    memstore_stats stats;
    memset(&stats, 0, sizeof stats);
    if (live)
        memstore_get_stats(ctx->store, &stats);
    json_t *counts = json_pack(
        "{s:I, s:I, s:I, s:I, s:I}", "entities", (json_int_t)p.entities, "observations",
        (json_int_t)p.observations, "relations", (json_int_t)p.relations, "embeddings",
        (json_int_t)p.embeddings, "fts_rows", (json_int_t)p.fts);
    json_object_set_new(res, "counts", counts);
    if (p.failed)
        ops_problem(res, "%d of the counting queries could not read the tables (damaged "
                         "pages; see integrity-check --full)",
                    p.failed);
    if (p.fts_missing > 0 || p.fts_orphans > 0 || (p.fts >= 0 && p.fts != p.entities))
        ops_problem(res,
                    "the full-text index is out of step: %lld rows for %lld entities (%lld "
                    "entities without a row, %lld rows without an entity); run 'caxton memory "
                    "reindex'",
                    (long long)p.fts, (long long)p.entities, (long long)p.fts_missing,
                    (long long)p.fts_orphans);
    /* a remote embedder's queue: entities without a vector yet are waiting,
     * not damaged */
    bool queued = live && stats.embedder_remote && stats.embeddings_waiting >= p.missing_embeddings;
    if (p.missing_embeddings > 0 && !queued) {
        if (live)
            ops_problem(res, "%lld entities have no embedding; run 'caxton memory reindex'",
                        (long long)p.missing_embeddings);
        else
            ops_warning(res,
                        "%lld entities have no embedding yet; the server computes them when it "
                        "opens the database",
                        (long long)p.missing_embeddings);
    }
    if (p.orphan_embeddings > 0)
        ops_problem(res, "%lld embeddings belong to no entity", (long long)p.orphan_embeddings);
    if (p.bad_vectors > 0)
        ops_problem(res, "%lld embeddings have a vector whose length is not dim*4 bytes",
                    (long long)p.bad_vectors);
    if (p.orphan_relations > 0)
        ops_problem(res, "%lld relations point at a missing entity",
                    (long long)p.orphan_relations);
    if (p.orphan_observations > 0)
        ops_problem(res, "%lld observations belong to a missing entity",
                    (long long)p.orphan_observations);
    json_object_set_new(res, "orphan_relations", json_integer((json_int_t)p.orphan_relations));
    json_t *embedders = embedders_json(db.sql);
    if (json_array_size(embedders) > 1)
        ops_warning(res,
                    "embeddings from %zu embedders or dimensions: the server re-embeds the "
                    "ones its embedder did not make",
                    json_array_size(embedders));
    json_object_set_new(res, "embedders", embedders);
    if (live) {
        int64_t waiting = stats.embeddings_waiting > 0 ? stats.embeddings_waiting : 0;
        json_object_set_new(res, "vector_index",
                            json_pack("{s:I, s:I}", "vectors", (json_int_t)stats.vectors,
                                      "bytes", (json_int_t)stats.index_bytes));
        embedder_health(&stats, res);
        if (stats.vectors + waiting != p.entities)
            ops_problem(res, "the vector index holds %lld vectors for %lld entities%s",
                        (long long)stats.vectors, (long long)p.entities,
                        waiting ? " (besides those waiting for embeddings)" : "");
    }
    ops_db_close(&db);
    return 0;
}

/* ---- integrity-check ---------------------------------------------------- */

static json_t *fk_check(sqlite3 *db, bool *ok)
{
    json_t *rows = json_array();
    int64_t total = 0;
    sqlite3_stmt *st;
    *ok = false;
    if (sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL) != SQLITE_OK)
        return json_pack("{s:s, s:b, s:s, s:o}", "name", "foreign_key_check", "ok", 0, "error",
                         sqlite3_errmsg(db), "rows", rows);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && total < 10000000) {
        if (++total <= OPS_PROBLEMS_MAX)
            json_array_append_new(
                rows, json_pack("{s:s?, s:I, s:s?}", "table",
                                (const char *)sqlite3_column_text(st, 0), "rowid",
                                (json_int_t)sqlite3_column_int64(st, 1), "parent",
                                (const char *)sqlite3_column_text(st, 2)));
    }
    json_t *out = json_pack("{s:s, s:I, s:o}", "name", "foreign_key_check", "violations",
                            (json_int_t)total, "rows", rows);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        json_object_set_new(out, "error", json_string(sqlite3_errmsg(db)));
    *ok = (rc == SQLITE_DONE || rc == SQLITE_ROW) && total == 0;
    json_object_set_new(out, "ok", json_boolean(*ok));
    sqlite3_finalize(st);
    return out;
}

/* FTS5's own check of its index against its content; it is written as an
 * INSERT, so it needs a writable connection (and writes nothing). */
static json_t *fts5_self_check(sqlite3 *db, bool writable)
{
    if (!writable)
        return json_string("skipped: the database could only be opened read-only");
    if (sqlite3_exec(db, "SAVEPOINT memops_fts_check", NULL, NULL, NULL) != SQLITE_OK)
        return json_string(sqlite3_errmsg(db));
    json_t *out;
    if (sqlite3_exec(db, "INSERT INTO entities_fts(entities_fts) VALUES('integrity-check')", NULL,
                     NULL, NULL) == SQLITE_OK)
        out = json_string("ok");
    else
        out = json_string(sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK TO memops_fts_check; RELEASE memops_fts_check", NULL, NULL, NULL);
    return out;
}

int memops_op_integrity(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    (void)err;
    bool quick = ops_arg_true(args, "quick") && !ops_arg_true(args, "full");
    json_object_set_new(res, "path", json_string(ctx->db_path));
    ops_db db;
    if (ops_db_open(ctx, OPS_CHECK, &db, res) < 0)
        return 0;
    json_t *checks = json_array();
    json_object_set_new(res, "checks", checks);

    bool ok;
    json_t *msgs = ops_pragma_check(db.sql, !quick, &ok);
    json_array_append_new(checks, json_pack("{s:s, s:b, s:o}", "name",
                                            quick ? "quick_check" : "integrity_check", "ok", ok,
                                            "messages", msgs));
    if (!ok)
        ops_problem(res, "%s: %s", quick ? "quick_check" : "integrity_check",
                    json_string_value(json_array_get(msgs, 0)));

    json_t *fk = fk_check(db.sql, &ok);
    json_array_append_new(checks, fk);
    if (!ok)
        ops_problem(res, "foreign_key_check: %lld rows refer to missing parents",
                    (long long)json_integer_value(json_object_get(fk, "violations")));

    if (!tables_present(db.sql, res)) {
        ops_db_close(&db);
        return 0;
    }
    parity p;
    parity_read(db.sql, &p);
    json_t *self = fts5_self_check(db.sql, db.writable);
    bool fts_ok = p.fts_missing == 0 && p.fts_orphans == 0 &&
                  (str_has_prefix(json_string_value(self), "ok") ||
                   str_has_prefix(json_string_value(self), "skipped"));
    json_array_append_new(checks, json_pack("{s:s, s:b, s:I, s:I, s:I, s:o}", "name", "fts", "ok",
                                            fts_ok, "rows", (json_int_t)p.fts,
                                            "entities_without_row", (json_int_t)p.fts_missing,
                                            "rows_without_entity", (json_int_t)p.fts_orphans,
                                            "fts5_integrity_check", self));
    if (!fts_ok)
        ops_problem(res,
                    "full-text index: %lld entities without a row, %lld rows without an "
                    "entity, fts5 check: %s (run 'caxton memory reindex')",
                    (long long)p.fts_missing, (long long)p.fts_orphans, json_string_value(self));

    memstore_stats stats;
    memset(&stats, 0, sizeof stats);
    if (ctx->store && memstore_available(ctx->store))
        memstore_get_stats(ctx->store, &stats);
    bool queued = stats.embedder_remote && stats.embeddings_waiting >= p.missing_embeddings;
    bool emb_ok = p.orphan_embeddings == 0 && p.bad_vectors == 0 &&
                  (p.missing_embeddings == 0 || !ctx->store || queued);
    json_t *emb = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I}", "name", "embeddings", "ok", emb_ok,
                            "vectors", (json_int_t)p.embeddings, "entities_without_embedding",
                            (json_int_t)p.missing_embeddings, "embeddings_without_entity",
                            (json_int_t)p.orphan_embeddings, "bad_length",
                            (json_int_t)p.bad_vectors);
    if (p.missing_embeddings > 0 && !ctx->store)
        json_object_set_new(emb, "note",
                            json_string("entities without an embedding are embedded by the "
                                        "server when it opens the database"));
    else if (stats.embedder_remote && stats.embeddings_waiting > 0) {
        char note[200];
        snprintf(note, sizeof note, "%lld entities waiting for embeddings from %s (not damage: "
                 "they are computed in the background)", (long long)stats.embeddings_waiting,
                 stats.embedder);
        json_object_set_new(emb, "note", json_string(note));
    }
    json_array_append_new(checks, emb);
    if (stats.embedder_remote)
        json_object_set_new(emb, "waiting", json_integer((json_int_t)stats.embeddings_waiting));
    if (!emb_ok)
        ops_problem(res,
                    "embeddings: %lld entities without one, %lld without an entity, %lld with "
                    "a vector that is not dim*4 bytes",
                    (long long)p.missing_embeddings, (long long)p.orphan_embeddings,
                    (long long)p.bad_vectors);
    if (p.failed)
        ops_problem(res, "%d of the checks' queries failed: %s", p.failed,
                    sqlite3_errmsg(db.sql));
    ops_db_close(&db);
    return 0;
}

/* ---- wal-status --------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static size_t read_head(const char *path, uint8_t *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return got;
}

/* The WAL header: magic, format, page size, checkpoint sequence, salts. */
static json_t *wal_header_json(const char *wal_path)
{
    uint8_t h[32];
    if (read_head(wal_path, h, sizeof h) < sizeof h)
        return json_null();
    uint32_t magic = be32(h);
    if (magic != 0x377f0682 && magic != 0x377f0683)
        return json_pack("{s:b}", "valid", 0);
    return json_pack("{s:b, s:I, s:I, s:I}", "valid", 1, "format", (json_int_t)be32(h + 4),
                     "page_size", (json_int_t)be32(h + 8), "checkpoint_sequence",
                     (json_int_t)be32(h + 12));
}

/* The counters of the WAL index (-shm), as the last writer left them: the
 * last valid frame and how many frames were copied into the database. They
 * are in the host's byte order. */
static json_t *shm_counters_json(const char *shm_path)
{
    uint8_t h[136];
    if (read_head(shm_path, h, sizeof h) < sizeof h)
        return json_null();
    uint32_t version, mx_frame, n_page, backfill, attempted;
    memcpy(&version, h, 4);
    memcpy(&mx_frame, h + 16, 4);
    memcpy(&n_page, h + 20, 4);
    memcpy(&backfill, h + 96, 4);
    memcpy(&attempted, h + 128, 4);
    if (version != 3007000 || h[12] != 1)
        return json_pack("{s:b}", "initialised", 0);
    return json_pack("{s:b, s:I, s:I, s:I, s:I, s:I}", "initialised", 1, "frames_valid",
                     (json_int_t)mx_frame, "frames_checkpointed", (json_int_t)backfill,
                     "frames_pending",
                     (json_int_t)(mx_frame >= backfill ? mx_frame - backfill : 0),
                     "backfill_attempted", (json_int_t)attempted, "database_pages",
                     (json_int_t)n_page);
}

static json_t *meta_value(sqlite3 *db, const char *key)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return json_null();
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    json_t *v = json_null();
    if (sqlite3_step(st) == SQLITE_ROW) {
        json_decref(v);
        v = ops_string((const char *)sqlite3_column_text(st, 0),
                       (size_t)sqlite3_column_bytes(st, 0));
    }
    sqlite3_finalize(st);
    return v;
}

int memops_op_wal_status(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    (void)args;
    char *wal = ops_sidecar(ctx->db_path, "-wal");
    char *shm = ops_sidecar(ctx->db_path, "-shm");
    if (!wal || !shm) {
        free(wal);
        free(shm);
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    }
    /* sizes and headers first: opening the database may create the files */
    uint64_t wal_bytes = 0, shm_bytes = 0;
    bool wal_exists = ops_file_size(wal, &wal_bytes);
    bool shm_exists = ops_file_size(shm, &shm_bytes);
    json_t *header = wal_header_json(wal);
    json_t *counters = shm_counters_json(shm);
    json_object_set_new(res, "path", json_string(ctx->db_path));
    json_object_set_new(res, "wal", json_pack("{s:s, s:b, s:I, s:o}", "path", wal, "exists",
                                              wal_exists, "bytes", (json_int_t)wal_bytes,
                                              "header", header));
    json_object_set_new(res, "shm", json_pack("{s:s, s:b, s:I, s:o}", "path", shm, "exists",
                                              shm_exists, "bytes", (json_int_t)shm_bytes,
                                              "counters", counters));
    free(wal);
    free(shm);
    json_object_set_new(res, "readers",
                        json_pack("{s:i, s:s}", "connections", ctx->store ? 1 : 0, "note",
                                  ctx->store ? "the running server's connection"
                                             : "the server is not running"));
    ops_db db;
    if (ops_db_open(ctx, OPS_READ, &db, res) < 0)
        return 0;
    int64_t page_size = 0;
    ops_query_int(db.sql, "PRAGMA page_size", &page_size);
    json_object_set_new(res, "page_size", json_integer((json_int_t)page_size));
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db.sql, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            json_object_set_new(res, "journal_mode",
                                json_string((const char *)sqlite3_column_text(st, 0)));
        sqlite3_finalize(st);
    }
    int64_t frames = 0;
    if (wal_bytes >= 32 && page_size > 0)
        frames = (int64_t)((wal_bytes - 32) / ((uint64_t)page_size + 24));
    json_object_set_new(res, "frames", json_integer((json_int_t)frames));
    json_object_set_new(res, "last_checkpoint_at",
                        ops_table_exists(db.sql, "meta") ? meta_value(db.sql, "last_checkpoint_at")
                                                         : json_null());
    if (wal_bytes > WAL_LARGE)
        ops_warning(res, "the WAL is %llu MB: run 'caxton memory optimize' to checkpoint it",
                    (unsigned long long)(wal_bytes >> 20));
    ops_db_close(&db);
    return 0;
}

/* ---- corruption-analysis ------------------------------------------------ */

typedef enum damage { DAMAGE_NONE, DAMAGE_INDEX, DAMAGE_TABLE, DAMAGE_UNREADABLE } damage;

static const char *const damage_names[] = {"none", "index-only", "table-pages", "unreadable"};

typedef struct btree_info {
    char *name;
    bool is_index; /* an index, or a full-text shadow table (rebuilt from entities) */
} btree_info;

static bool is_index_like(const char *type, const char *name)
{
    return strcmp(type, "index") == 0 || str_has_prefix(name, "entities_fts_") ||
           str_has_prefix(name, "sqlite_stat");
}

/* Reads every b-tree (dbstat, which marks pages it cannot decode as
 * "corrupted") and every table's rows; adds the damaged ones to lists. */
static void walk_btrees(sqlite3 *db, json_t *details, damage *worst, bool *tables_damaged,
                        bool *indexes_damaged)
{
    bool have_dbstat = ops_has_dbstat(db);
    json_object_set_new(details, "dbstat", json_boolean(have_dbstat));
    json_t *damaged_tables = json_array(), *damaged_indexes = json_array();
    sqlite3_stmt *list;
    if (sqlite3_prepare_v2(db,
                           "SELECT type, name FROM sqlite_master WHERE rootpage > 0 "
                           "AND type IN ('table', 'index') ORDER BY name",
                           -1, &list, NULL) != SQLITE_OK) {
        json_object_set_new(details, "btree_walk_error", json_string(sqlite3_errmsg(db)));
        *tables_damaged = true;
    } else {
        btree_info items[256];
        size_t n = 0;
        while (n < sizeof items / sizeof *items && sqlite3_step(list) == SQLITE_ROW) {
            const char *type = (const char *)sqlite3_column_text(list, 0);
            const char *name = (const char *)sqlite3_column_text(list, 1);
            if (!type || !name)
                continue;
            items[n].name = str_dup(name);
            items[n].is_index = is_index_like(type, name);
            if (items[n].name)
                n++;
        }
        sqlite3_finalize(list);
        for (size_t i = 0; i < n; i++) {
            bool bad = false;
            char detail[512] = "";
            sqlite3_stmt *st;
            if (have_dbstat &&
                sqlite3_prepare_v2(db,
                                   "SELECT count(*), coalesce(sum(pagetype = 'corrupted'), 0) "
                                   "FROM dbstat WHERE name = ?",
                                   -1, &st, NULL) == SQLITE_OK) {
                sqlite3_bind_text(st, 1, items[i].name, -1, SQLITE_STATIC);
                if (sqlite3_step(st) != SQLITE_ROW) {
                    bad = true;
                    snprintf(detail, sizeof detail, "%s", sqlite3_errmsg(db));
                } else if (sqlite3_column_int64(st, 1) > 0) {
                    bad = true;
                    snprintf(detail, sizeof detail, "%lld of %lld pages cannot be decoded",
                             (long long)sqlite3_column_int64(st, 1),
                             (long long)sqlite3_column_int64(st, 0));
                }
                sqlite3_finalize(st);
            }
            if (!bad && !items[i].is_index) {
                /* every row, every column: finds records that do not decode */
                char *sql = sqlite3_mprintf("SELECT * FROM \"%w\"", items[i].name);
                if (sql && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
                    int rc;
                    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                        for (int c = 0; c < sqlite3_column_count(st); c++)
                            (void)sqlite3_column_bytes(st, c);
                    if (rc != SQLITE_DONE) {
                        bad = true;
                        snprintf(detail, sizeof detail, "reading its rows: %s",
                                 sqlite3_errmsg(db));
                    }
                    sqlite3_finalize(st);
                }
                sqlite3_free(sql);
            }
            if (bad) {
                json_array_append_new(items[i].is_index ? damaged_indexes : damaged_tables,
                                      json_pack("{s:s, s:s}", "name", items[i].name, "detail",
                                                detail));
                if (items[i].is_index)
                    *indexes_damaged = true;
                else
                    *tables_damaged = true;
            }
            free(items[i].name);
        }
    }
    json_object_set_new(details, "damaged_tables", damaged_tables);
    json_object_set_new(details, "damaged_indexes", damaged_indexes);
    if (*tables_damaged && *worst < DAMAGE_TABLE)
        *worst = DAMAGE_TABLE;
    if (*indexes_damaged && *worst < DAMAGE_INDEX)
        *worst = DAMAGE_INDEX;
}

/* Sorts the integrity messages: those that name an index, those about row
 * values of a table, and page-level ones (attributed by the walk). */
static damage classify_messages(sqlite3 *db, json_t *msgs, bool tables_damaged,
                                bool indexes_damaged)
{
    damage worst = DAMAGE_NONE;
    json_t *index_names = json_array();
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'index'", -1, &st,
                           NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW && json_array_size(index_names) < 256)
            json_array_append_new(index_names,
                                  json_string((const char *)sqlite3_column_text(st, 0)));
        sqlite3_finalize(st);
    }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *text = json_string_value(m);
        if (!text)
            continue;
        bool names_index = strstr(text, " index ") != NULL || strstr(text, "entities_fts") != NULL;
        size_t j;
        json_t *n;
        json_array_foreach(index_names, j, n) {
            if (json_string_value(n) && strstr(text, json_string_value(n)))
                names_index = true;
        }
        damage d;
        if (names_index)
            d = DAMAGE_INDEX;
        else if (strstr(text, " value in ") || strstr(text, "CHECK constraint"))
            d = DAMAGE_TABLE;
        else if (indexes_damaged && !tables_damaged)
            d = DAMAGE_INDEX; /* pages of the damaged index */
        else
            d = DAMAGE_TABLE;
        if (d > worst)
            worst = d;
    }
    json_decref(index_names);
    return worst;
}

static const char *recommendation(damage d)
{
    switch (d) {
    case DAMAGE_NONE:
        return "nothing to do";
    case DAMAGE_INDEX:
        return "rebuild the indexes from the rows: 'caxton memory recover --backup-first' "
               "(every row is readable; only indexes are damaged)";
    case DAMAGE_TABLE:
        return "salvage the readable rows: 'caxton memory recover --backup-first' (or restore a "
               "backup: 'caxton memory restore --from-backup latest')";
    case DAMAGE_UNREADABLE:
        return "restore a backup: 'caxton memory recover --from-backup latest'";
    }
    return "";
}

static char *report_default_path(const memops_ctx *ctx)
{
    char parent[PATH_MAX];
    const char *dir = ctx->backups_dir && *ctx->backups_dir ? ctx->backups_dir : ".";
    snprintf(parent, sizeof parent, "%s", dir);
    size_t len = strlen(parent);
    while (len > 1 && parent[len - 1] == '/')
        parent[--len] = '\0';
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    char stamp[40], name[96];
    ops_stamp(time_now_ms(), false, stamp, sizeof stamp);
    snprintf(name, sizeof name, "corruption-report-%s.json", stamp);
    return path_join(parent, name);
}

/* Looks at the first bytes: "SQLite format 3\0", or why the file is not a
 * database at all. */
static const char *header_problem(const char *path)
{
    uint8_t h[100];
    uint64_t size = 0;
    if (!ops_file_size(path, &size))
        return NULL;
    if (size == 0)
        return "the file is empty";
    size_t got = read_head(path, h, sizeof h);
    if (got < sizeof h)
        return "the file is shorter than a database header (100 bytes)";
    if (memcmp(h, "SQLite format 3", 16) != 0)
        return "file is not a database: its header is not SQLite's";
    return NULL;
}

int memops_op_corruption(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    json_object_set_new(res, "path", json_string(ctx->db_path));
    files_json(ctx, res);
    json_t *details = json_object();
    json_object_set_new(res, "details", details);
    damage worst = DAMAGE_NONE;
    uint64_t size;
    const char *head = header_problem(ctx->db_path);
    ops_db db = {0};
    bool opened = false;
    if (!ops_file_size(ctx->db_path, &size)) {
        worst = DAMAGE_UNREADABLE;
        json_object_set_new(details, "reason", json_sprintf("no memory database at %s",
                                                            ctx->db_path));
    } else if (head && !ctx->store) {
        worst = DAMAGE_UNREADABLE;
        json_object_set_new(details, "reason", json_string(head));
    } else {
        json_t *scratch = ops_result_new("scratch");
        char why[PATH_MAX + 256];
        if (ops_db_open(ctx, OPS_CHECK, &db, scratch) < 0) {
            /* a truncated file opens when SQLite is told to take what is there */
            if (ops_open_damaged(ctx->db_path, &db.sql, why, sizeof why) == 0) {
                db.owned = true;
                json_object_set_new(details, "opened_leniently",
                                    json_copy(json_array_get(
                                        json_object_get(scratch, "problems"), 0)));
            } else {
                worst = DAMAGE_UNREADABLE;
                json_object_set_new(details, "reason",
                                    json_copy(json_array_get(
                                        json_object_get(scratch, "problems"), 0)));
            }
        }
        if (db.sql && !ops_table_exists(db.sql, "entities")) {
            worst = DAMAGE_UNREADABLE;
            json_object_set_new(details, "reason",
                                json_string("the file holds no memory tables"));
            ops_db_close(&db);
        }
        opened = db.sql != NULL;
        json_decref(scratch);
    }
    if (opened) {
        bool tables_damaged = false, indexes_damaged = false;
        walk_btrees(db.sql, details, &worst, &tables_damaged, &indexes_damaged);
        if (json_object_get(details, "opened_leniently") && worst < DAMAGE_TABLE)
            worst = DAMAGE_TABLE; /* pages the header counts are missing */
        bool ok;
        json_t *msgs = ops_pragma_check(db.sql, true, &ok);
        json_object_set_new(details, "integrity_check", json_pack("{s:b, s:o}", "ok", ok,
                                                                  "messages", msgs));
        if (!ok) {
            damage d = classify_messages(db.sql, msgs, tables_damaged, indexes_damaged);
            if (d > worst)
                worst = d;
        }
        if (tables_present(db.sql, NULL)) {
            parity p;
            parity_read(db.sql, &p);
            json_object_set_new(
                details, "fts",
                json_pack("{s:o, s:o}", "entities_without_row",
                          p.fts_missing < 0 ? json_null() : json_integer(p.fts_missing),
                          "rows_without_entity",
                          p.fts_orphans < 0 ? json_null() : json_integer(p.fts_orphans)));
            if ((p.fts_missing != 0 || p.fts_orphans != 0) && worst < DAMAGE_INDEX)
                worst = DAMAGE_INDEX;
        }
        bool fk_ok;
        json_t *fk = fk_check(db.sql, &fk_ok);
        json_object_set_new(details, "foreign_keys", fk);
        if (!fk_ok && worst < DAMAGE_TABLE)
            worst = DAMAGE_TABLE;
        ops_db_close(&db);
    }
    json_object_set_new(res, "classification", json_string(damage_names[worst]));
    json_object_set_new(res, "recommendation", json_string(recommendation(worst)));
    if (worst != DAMAGE_NONE)
        ops_problem(res, "the memory database is damaged (%s): %s", damage_names[worst],
                    recommendation(worst));

    json_t *want = json_is_object(args) ? json_object_get(args, "export_report") : NULL;
    char *report_path = NULL;
    if (json_is_string(want) && strcmp(json_string_value(want), "true") != 0)
        report_path = str_dup(json_string_value(want));
    else if (json_is_true(want) || json_is_string(want))
        report_path = report_default_path(ctx);
    if (want && !json_is_false(want) && !json_is_null(want)) {
        if (!report_path)
            return cx_error_set(err, CX_ENOMEM, "out of memory");
        json_object_set_new(res, "generated_at", ops_time_json(time_now_ms()));
        char *text = json_dumps(res, JSON_INDENT(2) | JSON_SORT_KEYS);
        cx_error werr = {0};
        if (!text || fs_write_atomic(report_path, text, strlen(text), 0600, &werr) < 0)
            ops_problem(res, "cannot write the report: %s", text ? werr.msg : "out of memory");
        else
            json_object_set_new(res, "report_path", json_string(report_path));
        free(text);
    }
    free(report_path);
    return 0;
}
