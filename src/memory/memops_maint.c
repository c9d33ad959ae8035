/* Maintenance and inspection: reindex, cleanup, optimize/maintenance, usage,
 * resource-usage, index-analysis, analyze-queries, and the running server's
 * performance-metrics, slow-queries and adjust-cache. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/units.h"
#include "memory/memops_internal.h"

#define SCOPES_LISTED_MAX 10000
#define CONFLICTS_MAX 1000
#define CONFLICT_GROUP_MAX 256
#define BIG_TABLE_ROWS 1000

static json_t *col_text(sqlite3_stmt *st, int i)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    return ops_string(t ? t : "", (size_t)sqlite3_column_bytes(st, i));
}

/* ---- optimize / maintenance ------------------------------------------------ */

static void timed_step(sqlite3 *db, const char *name, const char *sql, json_t *steps, json_t *res)
{
    uint64_t start = time_monotonic_ns();
    cx_error e = {0};
    int rc = ops_exec(db, sql, &e);
    json_t *step = json_pack("{s:s, s:b, s:f}", "step", name, "ok", rc == 0, "seconds",
                             ops_elapsed_s(start));
    if (rc < 0) {
        json_object_set_new(step, "error", json_string(e.msg));
        ops_problem(res, "%s failed: %s", name, e.msg);
    }
    json_array_append_new(steps, step);
}

static void optimize_on(sqlite3 *db, const json_t *args, json_t *res)
{
    json_t *steps = json_array();
    timed_step(db, "analyze", "ANALYZE", steps, res);
    timed_step(db, "pragma optimize", "PRAGMA optimize", steps, res);
    timed_step(db, "fts optimize", "INSERT INTO entities_fts(entities_fts) VALUES('optimize')",
               steps, res);
    if (ops_arg_true(args, "indexes"))
        timed_step(db, "reindex", "REINDEX", steps, res);
    uint64_t start = time_monotonic_ns();
    json_t *cp = NULL;
    cx_error e = {0};
    if (ops_checkpoint(db, &cp, &e) < 0) {
        ops_problem(res, "checkpoint failed: %s", e.msg);
        json_array_append_new(steps, json_pack("{s:s, s:b, s:s}", "step", "checkpoint", "ok", 0,
                                               "error", e.msg));
    } else {
        if (json_is_true(json_object_get(cp, "busy")))
            ops_warning(res, "the checkpoint could not finish: a reader was busy");
        json_object_set_new(cp, "step", json_string("checkpoint"));
        json_object_set_new(cp, "ok", json_true());
        json_object_set_new(cp, "seconds", json_real(ops_elapsed_s(start)));
        json_array_append_new(steps, cp);
    }
    json_object_set_new(res, "steps", steps);
}

int memops_op_optimize(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    (void)err;
    ops_db db;
    if (ops_db_open(ctx, OPS_WRITE, &db, res) < 0)
        return 0;
    uint64_t before = ops_size_or_zero(ctx->db_path);
    optimize_on(db.sql, args, res);
    ops_db_close(&db);
    json_object_set_new(res, "db_bytes",
                        json_pack("{s:I, s:I}", "before", (json_int_t)before, "after",
                                  (json_int_t)ops_size_or_zero(ctx->db_path)));
    if (ops_arg_true(args, "background"))
        json_object_set_new(res, "background", json_true());
    if (ops_arg_true(args, "auto_compact"))
        json_object_set_new(res, "auto_compact", json_true());
    return 0;
}

/* ---- reindex ---------------------------------------------------------------- */

static json_t *scopes_of(sqlite3 *db, const char *scope)
{
    json_t *out = json_object();
    sqlite3_stmt *st;
    const char *sql = scope ? "SELECT scope, count(*) FROM entities WHERE scope = ? GROUP BY scope"
                            : "SELECT scope, count(*) FROM entities GROUP BY scope";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return out;
    if (scope)
        sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    for (int n = 0; n < SCOPES_LISTED_MAX && sqlite3_step(st) == SQLITE_ROW; n++) {
        const char *s = (const char *)sqlite3_column_text(st, 0);
        if (s)
            json_object_set_new(out, s, json_integer((json_int_t)sqlite3_column_int64(st, 1)));
    }
    sqlite3_finalize(st);
    return out;
}

static void reindex_offline(const memops_ctx *ctx, const char *scope, bool full, json_t *res)
{
    ops_db db;
    if (ops_db_open(ctx, OPS_WRITE, &db, res) < 0)
        return;
    cx_error e = {0};
    int64_t fts_rows = 0, dropped = 0;
    int rc = ops_exec(db.sql, "BEGIN IMMEDIATE", &e);
    if (rc == 0)
        rc = ops_fts_rebuild(db.sql, scope, &fts_rows, &e);
    if (rc == 0) {
        sqlite3_stmt *st;
        const char *sql = scope ? "DELETE FROM embeddings WHERE entity_id IN "
                                  "(SELECT id FROM entities WHERE scope = ?)"
                                : "DELETE FROM embeddings";
        if (sqlite3_prepare_v2(db.sql, sql, -1, &st, NULL) != SQLITE_OK) {
            rc = cx_error_set(&e, CX_EIO, "%s", sqlite3_errmsg(db.sql));
        } else {
            if (scope)
                sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = cx_error_set(&e, CX_EIO, "%s", sqlite3_errmsg(db.sql));
            dropped = sqlite3_changes(db.sql);
            sqlite3_finalize(st);
        }
    }
    if (rc == 0 && full && (rc = ops_exec(db.sql, "REINDEX", &e)) < 0)
        cx_error_wrap(&e, "rebuilding the SQL indexes (when their pages are damaged, 'caxton "
                          "memory recover' rebuilds them from the rows)");
    if (rc == 0)
        rc = ops_exec(db.sql, "COMMIT", &e);
    if (rc < 0) {
        sqlite3_exec(db.sql, "ROLLBACK", NULL, NULL, NULL);
        ops_problem(res, "reindex failed (nothing changed): %s", e.msg);
        ops_db_close(&db);
        return;
    }
    json_object_set_new(res, "fts_rows", json_integer((json_int_t)fts_rows));
    json_object_set_new(res, "embeddings_dropped", json_integer((json_int_t)dropped));
    json_object_set_new(res, "embeddings",
                        json_string("dropped: the server computes them again when it starts"));
    if (full)
        json_object_set_new(res, "sql_indexes", json_string("rebuilt"));
    json_object_set_new(res, "scopes", scopes_of(db.sql, scope));
    ops_db_close(&db);
}

int memops_op_reindex(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    const char *agent = ops_arg_string(args, "agent");
    if (agent && !ops_name_valid(agent, 128))
        return cx_error_set(err, CX_EINVAL,
                            "invalid agent name for --agent: use 1 to 128 letters, digits, '.', "
                            "'_' or '-'");
    char scope[MEM_SCOPE_MAX + 1];
    if (agent)
        snprintf(scope, sizeof scope, "agent:%s", agent);
    bool full = ops_arg_true(args, "full");
    json_object_set_new(res, "target", json_string(agent ? scope : "all"));
    if (ctx->store) {
        json_t *report = NULL;
        cx_error e = {0};
        if (memstore_reindex(ctx->store, agent ? scope : NULL, &report, &e) < 0)
            ops_problem(res, "reindex failed: %s", e.msg);
        else
            ops_set(res, "report", report);
        sqlite3 *live = memstore_sqlite(ctx->store);
        if (full && live && ops_is_ok(res)) {
            cx_error re = {0};
            if (ops_exec(live, "REINDEX", &re) < 0)
                ops_problem(res, "rebuilding the SQL indexes failed: %s", re.msg);
            else
                json_object_set_new(res, "sql_indexes", json_string("rebuilt"));
        }
        if (ops_arg_true(args, "scope_aware")) {
            json_t *counts = NULL;
            cx_error se = {0};
            if (memstore_scope_counts(ctx->store, &counts, &se) == 0 && counts) {
                json_t *scopes = json_object();
                const char *k;
                json_t *v;
                json_object_foreach(counts, k, v) {
                    if (!agent || strcmp(k, scope) == 0)
                        json_object_set(scopes, k, v);
                }
                json_object_set_new(res, "scopes", scopes);
                json_decref(counts);
            }
        }
    } else {
        reindex_offline(ctx, agent ? scope : NULL, full, res);
        if (!ops_arg_true(args, "scope_aware"))
            json_object_del(res, "scopes");
    }
    if (ops_arg_true(args, "optimize") && ops_is_ok(res)) {
        json_t *sub = ops_result_new("optimize");
        memops_op_optimize(ctx, args, sub, err);
        if (!ops_is_ok(sub))
            ops_problem(res, "optimize after the reindex failed");
        json_object_set_new(res, "optimize", sub);
    }
    return 0;
}

/* ---- cleanup ---------------------------------------------------------------- */

static void cleanup_vacuum(const memops_ctx *ctx, json_t *res)
{
    char *wal = ops_sidecar(ctx->db_path, "-wal");
    uint64_t before = ops_size_or_zero(ctx->db_path) + ops_size_or_zero(wal);
    ops_quiesce(ctx);
    sqlite3 *db;
    char why[PATH_MAX + 256];
    json_t *out = json_object();
    if (ops_open_file(ctx->db_path, true, false, &db, why, sizeof why) < 0) {
        ops_problem(res, "vacuum: %s", why);
    } else {
        uint64_t start = time_monotonic_ns();
        cx_error e = {0};
        json_t *cp = NULL;
        if (ops_exec(db, "VACUUM", &e) < 0)
            ops_problem(res, "vacuum failed: %s", e.msg);
        else if (ops_checkpoint(db, &cp, &e) < 0)
            ops_problem(res, "checkpoint after the vacuum failed: %s", e.msg);
        json_decref(cp);
        json_object_set_new(out, "seconds", json_real(ops_elapsed_s(start)));
        sqlite3_close(db);
    }
    ops_resume(ctx, res);
    uint64_t after = ops_size_or_zero(ctx->db_path) + ops_size_or_zero(wal);
    free(wal);
    json_object_set_new(out, "bytes_before", json_integer((json_int_t)before));
    json_object_set_new(out, "bytes_after", json_integer((json_int_t)after));
    json_object_set_new(out, "bytes_freed",
                        json_integer(before > after ? (json_int_t)(before - after) : 0));
    json_object_set_new(res, "vacuum", out);
}

static void cleanup_compact(const memops_ctx *ctx, json_t *res)
{
    ops_db db;
    if (ops_db_open(ctx, OPS_WRITE, &db, res) < 0)
        return;
    json_t *out = json_object();
    cx_error e = {0};
    json_t *cp = NULL;
    if (ops_checkpoint(db.sql, &cp, &e) < 0)
        ops_problem(res, "checkpoint failed: %s", e.msg);
    ops_set(out, "checkpoint", cp);
    if (ops_exec(db.sql, "INSERT INTO entities_fts(entities_fts) VALUES('optimize')", &e) < 0)
        ops_problem(res, "full-text optimize failed: %s", e.msg);
    else
        json_object_set_new(out, "fts", json_string("optimized"));
    json_object_set_new(res, "compact", out);
    ops_db_close(&db);
}

typedef struct conflict_row {
    char *scope;
    int64_t updated_at;
} conflict_row;

static char scope_kind(const char *scope)
{
    if (str_has_prefix(scope, "agent:"))
        return 'a';
    if (str_has_prefix(scope, "workspace:"))
        return 'w';
    return strcmp(scope, "global") == 0 ? 'g' : '?';
}

/* Can one agent see both scopes (its own, its workspace, global)? */
static bool one_agent_sees(const char *a, const char *b, const char *agent_scope)
{
    char ka = scope_kind(a), kb = scope_kind(b);
    if (ka == '?' || kb == '?' || ka == kb)
        return false;
    if (agent_scope && ((ka == 'a' && strcmp(a, agent_scope) != 0) ||
                        (kb == 'a' && strcmp(b, agent_scope) != 0)))
        return false;
    return true;
}

static void emit_group(json_t *list, const char *name, size_t name_len, conflict_row *rows,
                       size_t n, const char *agent_scope, bool *truncated)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            if (!one_agent_sees(rows[i].scope, rows[j].scope, agent_scope))
                continue;
            if (json_array_size(list) >= CONFLICTS_MAX) {
                *truncated = true;
                return;
            }
            conflict_row *newer = rows[j].updated_at > rows[i].updated_at ? &rows[j] : &rows[i];
            json_array_append_new(
                list, json_pack("{s:o, s:[s,s], s:{s:o, s:o}, s:s}", "name",
                                ops_string(name, name_len), "scopes", rows[i].scope,
                                rows[j].scope, "updated_at", rows[i].scope,
                                ops_time_json((uint64_t)rows[i].updated_at), rows[j].scope,
                                ops_time_json((uint64_t)rows[j].updated_at), "newer",
                                newer->scope));
        }
}

static void cleanup_conflicts(const memops_ctx *ctx, const char *agent, json_t *res)
{
    ops_db db;
    if (ops_db_open(ctx, OPS_READ, &db, res) < 0)
        return;
    char agent_scope[MEM_SCOPE_MAX + 1];
    if (agent)
        snprintf(agent_scope, sizeof agent_scope, "agent:%s", agent);
    sqlite3_stmt *st;
    json_t *list = json_array();
    bool truncated = false;
    if (sqlite3_prepare_v2(db.sql,
                           "SELECT name, scope, updated_at FROM entities WHERE name IN "
                           "(SELECT name FROM entities GROUP BY name HAVING count(*) > 1) "
                           "ORDER BY name, scope",
                           -1, &st, NULL) != SQLITE_OK) {
        ops_problem(res, "scope conflicts: %s", sqlite3_errmsg(db.sql));
        json_decref(list);
        ops_db_close(&db);
        return;
    }
    conflict_row rows[CONFLICT_GROUP_MAX];
    size_t n = 0;
    char *name = NULL;
    size_t name_len = 0;
    int rc;
    while (!truncated && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *nm = (const char *)sqlite3_column_text(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        const char *scope = (const char *)sqlite3_column_text(st, 1);
        if (!nm || !scope)
            continue;
        if (!name || len != name_len || memcmp(nm, name, len) != 0) {
            if (name)
                emit_group(list, name, name_len, rows, n, agent ? agent_scope : NULL, &truncated);
            for (size_t i = 0; i < n; i++)
                free(rows[i].scope);
            n = 0;
            free(name);
            name = malloc(len + 1);
            if (!name)
                break;
            memcpy(name, nm, len);
            name[len] = '\0';
            name_len = len;
        }
        if (n < CONFLICT_GROUP_MAX && (rows[n].scope = str_dup(scope)) != NULL)
            rows[n++].updated_at = sqlite3_column_int64(st, 2);
    }
    if (name && !truncated)
        emit_group(list, name, name_len, rows, n, agent ? agent_scope : NULL, &truncated);
    for (size_t i = 0; i < n; i++)
        free(rows[i].scope);
    free(name);
    sqlite3_finalize(st);
    json_object_set_new(res, "scope_conflicts",
                        json_pack("{s:o, s:I, s:b, s:s}", "conflicts", list, "count",
                                  (json_int_t)json_array_size(list), "truncated", truncated,
                                  "note",
                                  "nothing was deleted: keep the one you want with the memory "
                                  "API"));
    ops_db_close(&db);
}

int memops_op_cleanup(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    const char *agent = ops_arg_string(args, "agent");
    if (agent && !ops_name_valid(agent, 128))
        return cx_error_set(err, CX_EINVAL,
                            "invalid agent name for --agent: use 1 to 128 letters, digits, '.', "
                            "'_' or '-'");
    bool vacuum = ops_arg_true(args, "vacuum");
    bool compact = ops_arg_true(args, "compact");
    bool conflicts = ops_arg_true(args, "scope_conflicts") || agent;
    if (!vacuum && !compact && !conflicts)
        compact = conflicts = true;
    uint64_t size;
    if (!ops_file_size(ctx->db_path, &size) && !ctx->store) {
        ops_problem(res, "no memory database at %s", ctx->db_path);
        return 0;
    }
    if (conflicts)
        cleanup_conflicts(ctx, agent, res);
    if (compact)
        cleanup_compact(ctx, res);
    if (vacuum)
        cleanup_vacuum(ctx, res);
    json_object_set_new(res, "retention",
                        json_string("skipped offline: it needs the agents' memory.retention "
                                    "settings; the running server applies them every hour and "
                                    "at each cleanup"));
    return 0;
}

/* ---- usage and resources ------------------------------------------------------- */

static json_t *scope_entry(json_t *by_scope, const char *scope)
{
    json_t *e = json_object_get(by_scope, scope);
    if (!e && json_object_size(by_scope) < SCOPES_LISTED_MAX) {
        e = json_pack("{s:I, s:I, s:I, s:I}", "entities", (json_int_t)0, "observations",
                      (json_int_t)0, "relations", (json_int_t)0, "bytes_approx", (json_int_t)0);
        json_object_set_new(by_scope, scope, e);
    }
    return e;
}

static void add_to(json_t *e, const char *field, int64_t n)
{
    json_t *v = json_object_get(e, field);
    json_object_set_new(e, field, json_integer(json_integer_value(v) + (json_int_t)n));
}

/* Runs a GROUP BY scope query of (scope, count, bytes) into by_scope. */
static void scope_query(sqlite3 *db, const char *sql, const char *count_field, json_t *by_scope)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *scope = (const char *)sqlite3_column_text(st, 0);
        json_t *e = scope ? scope_entry(by_scope, scope) : NULL;
        if (!e)
            continue;
        if (count_field)
            add_to(e, count_field, sqlite3_column_int64(st, 1));
        add_to(e, "bytes_approx", sqlite3_column_int64(st, 2));
    }
    sqlite3_finalize(st);
}

static json_t *dbstat_tables(sqlite3 *db)
{
    if (!ops_has_dbstat(db))
        return json_string("unavailable: this SQLite has no dbstat table");
    json_t *out = json_array();
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT d.name, coalesce(m.type, 'table'), count(*), sum(d.pgsize), "
                           "sum(d.unused), sum(d.pagetype = 'overflow') "
                           "FROM dbstat d LEFT JOIN sqlite_master m ON m.name = d.name "
                           "GROUP BY d.name ORDER BY 4 DESC",
                           -1, &st, NULL) != SQLITE_OK)
        return json_string(sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t bytes = sqlite3_column_int64(st, 3), unused = sqlite3_column_int64(st, 4);
        json_array_append_new(
            out, json_pack("{s:o, s:o, s:I, s:I, s:I, s:I, s:f}", "name", col_text(st, 0), "type",
                           col_text(st, 1), "pages", (json_int_t)sqlite3_column_int64(st, 2),
                           "bytes", (json_int_t)bytes, "unused_bytes", (json_int_t)unused,
                           "overflow_pages", (json_int_t)sqlite3_column_int64(st, 5),
                           "fill_pct", bytes > 0 ? 100.0 * (double)(bytes - unused) / (double)bytes
                                                 : 0.0));
    }
    sqlite3_finalize(st);
    return out;
}

static void files_into(const memops_ctx *ctx, json_t *res)
{
    char *wal = ops_sidecar(ctx->db_path, "-wal");
    char *shm = ops_sidecar(ctx->db_path, "-shm");
    uint64_t d = ops_size_or_zero(ctx->db_path), w = ops_size_or_zero(wal),
             s = ops_size_or_zero(shm);
    json_object_set_new(res, "files",
                        json_pack("{s:I, s:I, s:I, s:I}", "db_bytes", (json_int_t)d, "wal_bytes",
                                  (json_int_t)w, "shm_bytes", (json_int_t)s, "total_bytes",
                                  (json_int_t)(d + w + s)));
    free(wal);
    free(shm);
}

int memops_op_usage(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    (void)err;
    files_into(ctx, res);
    ops_db db;
    if (ops_db_open(ctx, OPS_READ, &db, res) < 0)
        return 0;
    int64_t v;
    json_t *totals = json_object();
    static const struct {
        const char *field, *sql;
    } total_sql[] = {
        {"entities", "SELECT count(*) FROM entities"},
        {"observations", "SELECT count(*) FROM observations WHERE removed_at IS NULL"},
        {"observations_removed", "SELECT count(*) FROM observations WHERE removed_at IS NOT NULL"},
        {"relations", "SELECT count(*) FROM relations"},
        {"versions", "SELECT count(*) FROM entity_versions"},
        {"embeddings", "SELECT count(*) FROM embeddings"},
        {"scope_violations", "SELECT count(*) FROM scope_violations"},
        {"scope_overrides", "SELECT count(*) FROM scope_overrides"},
    };
    for (size_t i = 0; i < sizeof total_sql / sizeof *total_sql; i++) {
        if (ops_query_int(db.sql, total_sql[i].sql, &v))
            json_object_set_new(totals, total_sql[i].field, json_integer((json_int_t)v));
        else
            ops_problem(res, "counting %s: %s", total_sql[i].field, sqlite3_errmsg(db.sql));
    }
    json_object_set_new(res, "totals", totals);
    json_t *by_scope = json_object();
    scope_query(db.sql,
                "SELECT scope, count(*), sum(length(CAST(name AS BLOB)) + "
                "length(CAST(type AS BLOB)) + length(CAST(metadata AS BLOB))) "
                "FROM entities GROUP BY scope",
                "entities", by_scope);
    scope_query(db.sql,
                "SELECT e.scope, count(*), sum(length(CAST(o.text AS BLOB))) FROM observations o "
                "JOIN entities e ON e.id = o.entity_id GROUP BY e.scope",
                "observations", by_scope);
    scope_query(db.sql,
                "SELECT e.scope, count(*), count(*) * 48 FROM relations r "
                "JOIN entities e ON e.id = r.from_id GROUP BY e.scope",
                "relations", by_scope);
    scope_query(db.sql,
                "SELECT e.scope, 0, sum(length(m.vector)) FROM embeddings m "
                "JOIN entities e ON e.id = m.entity_id GROUP BY e.scope",
                NULL, by_scope);
    json_object_set_new(res, "by_scope", by_scope);
    json_object_set_new(res, "bytes_note",
                        json_string("bytes_approx sums the stored text and vectors of each "
                                    "scope; pages and indexes add to it"));
    if (ops_arg_true(args, "detailed"))
        json_object_set_new(res, "tables", dbstat_tables(db.sql));
    ops_db_close(&db);
    return 0;
}

int memops_op_resources(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    (void)err;
    files_into(ctx, res);
    ops_db db;
    if (ops_db_open(ctx, OPS_READ, &db, res) < 0)
        return 0;
    int64_t page_count = 0, page_size = 0, freelist = 0, cache = 0;
    ops_query_int(db.sql, "PRAGMA page_count", &page_count);
    ops_query_int(db.sql, "PRAGMA page_size", &page_size);
    ops_query_int(db.sql, "PRAGMA freelist_count", &freelist);
    ops_query_int(db.sql, "PRAGMA cache_size", &cache);
    /* cache_size: pages when positive, KiB when negative */
    int64_t cache_bytes = cache < 0 ? -cache * 1024 : cache * page_size;
    json_object_set_new(res, "database",
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "page_count",
                                  (json_int_t)page_count, "page_size", (json_int_t)page_size,
                                  "freelist_count", (json_int_t)freelist, "cache_size_setting",
                                  (json_int_t)cache, "cache_bytes", (json_int_t)cache_bytes));
    if (ctx->store) {
        memstore_stats s;
        memset(&s, 0, sizeof s);
        memstore_get_stats(ctx->store, &s);
        json_object_set_new(
            res, "store",
            json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "available", s.available,
                      "entities", (json_int_t)s.entities, "relations", (json_int_t)s.relations,
                      "vectors", (json_int_t)s.vectors, "vector_index_bytes",
                      (json_int_t)s.index_bytes, "max_size", (json_int_t)s.max_size,
                      "cache_bytes", (json_int_t)memstore_cache_size(ctx->store), "db_bytes",
                      (json_int_t)s.db_bytes));
    }
    if (ops_arg_true(args, "breakdown"))
        json_object_set_new(res, "tables", dbstat_tables(db.sql));
    ops_db_close(&db);
    return 0;
}

/* ---- index-analysis ---------------------------------------------------------- */

int memops_op_index_analysis(const memops_ctx *ctx, const json_t *args, json_t *res,
                             cx_error *err)
{
    (void)args;
    (void)err;
    ops_db db;
    if (ops_db_open(ctx, OPS_READ, &db, res) < 0)
        return 0;
    int64_t page_count = 0, freelist = 0, fts_rows = -1;
    ops_query_int(db.sql, "PRAGMA page_count", &page_count);
    ops_query_int(db.sql, "PRAGMA freelist_count", &freelist);
    double frag = page_count > 0 ? 100.0 * (double)freelist / (double)page_count : 0.0;
    json_object_set_new(res, "fragmentation",
                        json_pack("{s:I, s:I, s:f}", "page_count", (json_int_t)page_count,
                                  "free_pages", (json_int_t)freelist, "free_pct", frag));
    json_t *tables = dbstat_tables(db.sql);
    json_t *suggestions = json_array();
    if (json_is_array(tables)) {
        json_t *indexes = json_array(), *plain = json_array();
        size_t i;
        json_t *t;
        json_array_foreach(tables, i, t) {
            bool is_index = strcmp(json_string_value(json_object_get(t, "type")), "index") == 0;
            json_array_append(is_index ? indexes : plain, t);
            double fill = json_real_value(json_object_get(t, "fill_pct"));
            if (json_integer_value(json_object_get(t, "pages")) > 100 && fill < 50.0)
                json_array_append_new(
                    suggestions,
                    json_sprintf("%s is %.0f%% full: 'caxton memory cleanup --vacuum' packs it",
                                 json_string_value(json_object_get(t, "name")), fill));
        }
        json_object_set_new(res, "indexes", indexes);
        json_object_set_new(res, "tables", plain);
        json_decref(tables);
    } else {
        json_object_set_new(res, "indexes", tables);
    }
    if (ops_query_int(db.sql, "SELECT count(*) FROM entities_fts_data", &fts_rows))
        json_object_set_new(res, "fts_data_records", json_integer((json_int_t)fts_rows));
    if (fts_rows > 1000)
        json_array_append_new(suggestions,
                              json_string("the full-text index has many segment records: "
                                          "'caxton memory optimize' merges them"));
    if (frag > 20.0)
        json_array_append_new(suggestions,
                              json_sprintf("%.0f%% of the file is free pages: 'caxton memory "
                                           "cleanup --vacuum' returns them",
                                           frag));
    json_object_set_new(res, "suggestions", suggestions);
    ops_db_close(&db);
    return 0;
}

/* ---- analyze-queries ------------------------------------------------------------ */

static const struct {
    const char *name, *sql;
} hot_queries[] = {
    {"entity by scope and name", "SELECT id FROM entities WHERE scope = ?1 AND name = ?2"},
    {"observations of an entity",
     "SELECT text, created_at FROM observations WHERE entity_id = ?1 AND removed_at IS NULL "
     "ORDER BY id"},
    {"history of an entity",
     "SELECT version, type FROM entity_versions WHERE entity_id = ?1 ORDER BY version"},
    {"relations from an entity", "SELECT to_id, type, strength FROM relations WHERE from_id = ?1"},
    {"relations to an entity", "SELECT from_id, type, strength FROM relations WHERE to_id = ?1"},
    {"recent entities of a scope",
     "SELECT id, name FROM entities WHERE scope = ?1 ORDER BY updated_at DESC LIMIT 10"},
    {"violations since a time",
     "SELECT id, agent, scope, operation FROM scope_violations WHERE at >= ?1 ORDER BY at"},
    {"full-text search",
     "SELECT rowid, rank FROM entities_fts WHERE entities_fts MATCH ?1 ORDER BY rank LIMIT 10"},
    {"embedding of an entity", "SELECT vector FROM embeddings WHERE entity_id = ?1"},
};

/* "SCAN entities USING INDEX x" -> "entities" in out. */
static void scanned_table(const char *detail, char *out, size_t size)
{
    const char *p = detail + 5;
    size_t n = strcspn(p, " ");
    snprintf(out, size, "%.*s", (int)n, p);
}

int memops_op_analyze_queries(const memops_ctx *ctx, const json_t *args, json_t *res,
                              cx_error *err)
{
    (void)args;
    (void)err;
    ops_db db;
    if (ops_db_open(ctx, OPS_READ, &db, res) < 0)
        return 0;
    json_t *queries = json_array(), *suggestions = json_array();
    for (size_t i = 0; i < sizeof hot_queries / sizeof *hot_queries; i++) {
        char *sql = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", hot_queries[i].sql);
        sqlite3_stmt *st;
        json_t *plan = json_array(), *flags = json_array();
        if (!sql || sqlite3_prepare_v2(db.sql, sql, -1, &st, NULL) != SQLITE_OK) {
            json_array_append_new(flags, json_sprintf("cannot plan: %s", sqlite3_errmsg(db.sql)));
        } else {
            while (sqlite3_step(st) == SQLITE_ROW) {
                const char *detail = (const char *)sqlite3_column_text(st, 3);
                if (!detail)
                    continue;
                json_array_append_new(plan, json_string(detail));
                if (str_has_prefix(detail, "SCAN ") && !strstr(detail, "VIRTUAL TABLE")) {
                    char table[128], count_sql[256];
                    int64_t rows = 0;
                    scanned_table(detail, table, sizeof table);
                    char *q = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", table);
                    snprintf(count_sql, sizeof count_sql, "%s", q ? q : "");
                    sqlite3_free(q);
                    if (ops_query_int(db.sql, count_sql, &rows) && rows > BIG_TABLE_ROWS)
                        json_array_append_new(flags,
                                              json_sprintf("full scan of %s (%lld rows)", table,
                                                           (long long)rows));
                    else
                        json_array_append_new(flags, json_sprintf("scan of %s (small: %lld rows)",
                                                                  table, (long long)rows));
                }
                if (strstr(detail, "USE TEMP B-TREE"))
                    json_array_append_new(flags, json_string("sorts in a temporary b-tree"));
            }
            sqlite3_finalize(st);
        }
        sqlite3_free(sql);
        size_t j;
        json_t *f;
        json_array_foreach(flags, j, f) {
            if (str_has_prefix(json_string_value(f), "full scan"))
                json_array_append_new(suggestions,
                                      json_sprintf("%s: %s; an index would help",
                                                   hot_queries[i].name, json_string_value(f)));
        }
        json_array_append_new(queries, json_pack("{s:s, s:s, s:o, s:o}", "name",
                                                 hot_queries[i].name, "sql", hot_queries[i].sql,
                                                 "plan", plan, "flags", flags));
    }
    bool stats = ops_table_exists(db.sql, "sqlite_stat1");
    json_object_set_new(res, "statistics", json_boolean(stats));
    if (!stats)
        json_array_append_new(suggestions,
                              json_string("no planner statistics (sqlite_stat1): run 'caxton "
                                          "memory optimize', which runs ANALYZE"));
    json_object_set_new(res, "queries", queries);
    json_object_set_new(res, "suggestions", suggestions);
    ops_db_close(&db);
    return 0;
}

/* ---- running server only --------------------------------------------------------- */

int memops_op_performance(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    (void)args;
    if (!ctx->store)
        return cx_error_set(err, CX_EUNAVAIL, "memory performance-metrics needs a running server");
    memstore_stats s;
    memset(&s, 0, sizeof s);
    memstore_get_stats(ctx->store, &s);
    json_t *hist = json_array();
    for (size_t i = 0; i < sizeof s.search_hist / sizeof s.search_hist[0]; i++)
        json_array_append_new(hist, json_pack("{s:f, s:I}", "le", memstore_search_buckets[i],
                                              "count", (json_int_t)s.search_hist[i]));
    double avg_ms = s.searches ? (double)s.search_ns_total / (double)s.searches / 1e6 : 0.0;
    json_object_set_new(
        res, "searches",
        json_pack("{s:I, s:f, s:o}", "count", (json_int_t)s.searches, "avg_ms", avg_ms,
                  "histogram", hist));
    json_object_set_new(res, "writes",
                        json_pack("{s:I, s:I}", "count", (json_int_t)s.writes, "errors",
                                  (json_int_t)s.write_errors));
    json_object_set_new(res, "violations", json_integer((json_int_t)s.violations));
    json_object_set_new(res, "slow_queries", json_integer((json_int_t)s.slow_queries));
    json_object_set_new(
        res, "size",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "entities", (json_int_t)s.entities,
                  "relations", (json_int_t)s.relations, "vectors", (json_int_t)s.vectors,
                  "db_bytes", (json_int_t)s.db_bytes, "wal_bytes", (json_int_t)s.wal_bytes,
                  "vector_index_bytes", (json_int_t)s.index_bytes, "max_size",
                  (json_int_t)s.max_size));
    json_object_set_new(res, "available", json_boolean(s.available));
    if (!s.available)
        ops_problem(res, "the memory store is not available");
    return 0;
}

int memops_op_slow_queries(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    if (!ctx->store)
        return cx_error_set(err, CX_EUNAVAIL, "memory slow-queries needs a running server");
    const char *text = ops_arg_string(args, "threshold");
    uint64_t ms = 1000;
    json_t *num = json_is_object(args) ? json_object_get(args, "threshold") : NULL;
    if (json_is_integer(num) && json_integer_value(num) >= 0)
        ms = (uint64_t)json_integer_value(num);
    else if (text && units_parse_duration_ms(text, &ms, err) < 0)
        return cx_error_wrap(err, "--threshold");
    json_t *list = memstore_slow_queries(ctx->store, ms);
    json_object_set_new(res, "threshold_ms", json_integer((json_int_t)ms));
    json_object_set_new(res, "count", json_integer((json_int_t)json_array_size(list)));
    json_object_set_new(res, "queries", list ? list : json_array());
    return 0;
}

#define CACHE_MIN (1ull << 20)
#define CACHE_MAX (16ull << 30)

int memops_op_adjust_cache(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    if (!ctx->store)
        return cx_error_set(err, CX_EUNAVAIL, "memory adjust-cache needs a running server");
    const char *text = ops_arg_string(args, "size");
    if (!text)
        return cx_error_set(err, CX_EINVAL,
                            "memory adjust-cache needs --size (256MB, +512MB, -128MB or +50%%)");
    units_change change;
    if (units_parse_change(text, true, &change, err) < 0)
        return cx_error_wrap(err, "--size");
    uint64_t before = memstore_cache_size(ctx->store);
    uint64_t want = units_apply_change(before, &change);
    uint64_t target = want < CACHE_MIN ? CACHE_MIN : want > CACHE_MAX ? CACHE_MAX : want;
    if (target != want)
        ops_warning(res, "the cache size is kept between 1MB and 16GB");
    cx_error e = {0};
    if (memstore_set_cache(ctx->store, target, &e) < 0) {
        ops_problem(res, "cannot change the cache: %s", e.msg);
        return 0;
    }
    char b[32], a[32];
    units_format_size(before, b, sizeof b);
    units_format_size(memstore_cache_size(ctx->store), a, sizeof a);
    json_object_set_new(res, "before", json_pack("{s:I, s:s}", "bytes", (json_int_t)before,
                                                 "text", b));
    json_object_set_new(res, "after",
                        json_pack("{s:I, s:s}", "bytes",
                                  (json_int_t)memstore_cache_size(ctx->store), "text", a));
    json_object_set_new(res, "clamped", json_boolean(target != want));
    return 0;
}
