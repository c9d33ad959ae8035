/* recover: bring a damaged memory database back.
 *
 * 1. optionally copy the damaged files aside;
 * 2. checkpoint the WAL and check the result: often that is all it takes;
 * 3. otherwise salvage every readable row into a fresh file with the
 *    schema, skipping over pages that cannot be read, and rebuild the
 *    full-text rows;
 * 4. when nothing can be read (or a backup is asked for), restore one. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "memory/memops_internal.h"

typedef struct salvage_table {
    const char *name;
    const char *cols; /* besides the key */
    int key_cols;     /* 1: rowid; 2: (entity_id, version) */
} salvage_table;

/* Parents before children, so foreign keys can be checked row by row. */
static const salvage_table salvage_tables[] = {
    {"entities", "scope, name, type, confidence, metadata, created_at, updated_at, version, "
                 "created_by", 1},
    {"observations", "entity_id, text, created_at, removed_at", 1},
    {"entity_versions", "type, confidence, metadata, changed_at, changed_by", 2},
    {"relations", "from_id, to_id, type, strength, created_at, created_by", 1},
    {"embeddings", "embedder, dim, vector", 1},
    {"scope_violations", "at, agent, scope, operation, detail", 1},
    {"scope_overrides", "agent, scope, workspace, set_at", 1},
    {"meta", "key, value", 1},
};

#define LOST_RANGES_MAX 100
#define SKIP_PROBES 12

typedef struct table_copy {
    const salvage_table *t;
    sqlite3 *src, *dst;
    sqlite3_stmt *first, *after, *ins;
    int ncols; /* columns selected, key included */
    int64_t recovered, skipped, read_errors, lost_estimate;
    bool lost_unknown;
    json_t *lost_ranges;
    char fatal[512]; /* a write error: the salvage stops */
} table_copy;

static int count_cols(const char *cols)
{
    int n = 1;
    for (const char *p = cols; *p; p++)
        n += *p == ',';
    return n;
}

static int copy_prepare(table_copy *c)
{
    const salvage_table *t = c->t;
    char *first, *after, *ins;
    int value_cols = count_cols(t->cols);
    if (t->key_cols == 1) {
        first = sqlite3_mprintf("SELECT rowid, %s FROM \"%w\" ORDER BY rowid", t->cols, t->name);
        /* ">=": a seek to a key on a readable page must not first touch the
         * damaged page holding the key before it */
        after = sqlite3_mprintf("SELECT rowid, %s FROM \"%w\" WHERE rowid >= ?1 ORDER BY rowid",
                                t->cols, t->name);
        ins = sqlite3_mprintf("INSERT INTO \"%w\"(rowid, %s) VALUES (?", t->name, t->cols);
    } else {
        first = sqlite3_mprintf("SELECT entity_id, version, %s FROM \"%w\" "
                                "ORDER BY entity_id, version",
                                t->cols, t->name);
        after = sqlite3_mprintf("SELECT entity_id, version, %s FROM \"%w\" "
                                "WHERE (entity_id, version) > (?1, ?2) ORDER BY entity_id, version",
                                t->cols, t->name);
        ins = sqlite3_mprintf("INSERT INTO \"%w\"(entity_id, version, %s) VALUES (?, ?", t->name,
                              t->cols);
    }
    c->ncols = t->key_cols + value_cols;
    /* the rest of the placeholders */
    char *full = NULL;
    if (ins) {
        strbuf sb;
        strbuf_init(&sb);
        strbuf_appends(&sb, ins);
        for (int i = 0; i < value_cols; i++)
            strbuf_appends(&sb, ", ?");
        strbuf_appends(&sb, ")");
        full = sb.failed ? NULL : strbuf_detach(&sb);
        strbuf_free(&sb);
    }
    int rc = -1;
    if (first && after && full &&
        sqlite3_prepare_v2(c->src, first, -1, &c->first, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(c->src, after, -1, &c->after, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(c->dst, full, -1, &c->ins, NULL) == SQLITE_OK)
        rc = 0;
    sqlite3_free(first);
    sqlite3_free(after);
    sqlite3_free(ins);
    free(full);
    return rc;
}

static void copy_finish(table_copy *c)
{
    sqlite3_finalize(c->first);
    sqlite3_finalize(c->after);
    sqlite3_finalize(c->ins);
    c->first = c->after = c->ins = NULL;
}

/* Inserts the row st is on; constraint failures (a foreign key to a lost
 * entity, a value that does not decode to something valid) are skipped. */
static void copy_row(table_copy *c, sqlite3_stmt *st)
{
    for (int i = 0; i < c->ncols; i++)
        sqlite3_bind_value(c->ins, i + 1, sqlite3_column_value(st, i));
    int rc = sqlite3_step(c->ins);
    sqlite3_reset(c->ins);
    sqlite3_clear_bindings(c->ins);
    if (rc == SQLITE_DONE)
        c->recovered++;
    else if ((rc & 0xff) == SQLITE_CONSTRAINT || (rc & 0xff) == SQLITE_MISMATCH ||
             (rc & 0xff) == SQLITE_TOOBIG)
        c->skipped++;
    else
        snprintf(c->fatal, sizeof c->fatal, "writing %s: %s", c->t->name,
                 sqlite3_errmsg(c->dst));
}

/* Positions `after` past (k1, k2) and steps it: SQLITE_ROW, SQLITE_DONE or
 * an error. */
static int probe(table_copy *c, int64_t k1, int64_t k2)
{
    sqlite3_reset(c->after);
    sqlite3_bind_int64(c->after, 1, k1);
    if (c->t->key_cols == 2)
        sqlite3_bind_int64(c->after, 2, k2);
    return sqlite3_step(c->after);
}

static int64_t add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* After a read error past key `base`: finds where reading works again.
 * Probes base+1, +16, +256... then narrows down between the last failing
 * and the first working probe. Returns SQLITE_ROW with `after` on the first
 * readable row, SQLITE_DONE when nothing readable follows, or an error. */
static int skip_forward(table_copy *c, int64_t base, int64_t *resumed_at)
{
    int64_t step = 1, bad = base, good = 0;
    bool found = false;
    bool two = c->t->key_cols == 2;
    for (int i = 0; i < SKIP_PROBES && !found; i++, step *= 16) {
        int64_t k = add_sat(base, step);
        /* two-column keys skip whole entities: past (k, +inf) */
        int rc = two ? probe(c, k - 1, INT64_MAX) : probe(c, k, 0);
        if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
            found = true;
            good = k;
            if (rc == SQLITE_DONE && i == 0)
                return SQLITE_DONE;
        } else {
            bad = k;
        }
        if (k == INT64_MAX)
            break;
    }
    if (!found)
        return SQLITE_CORRUPT;
    /* narrow down: the smallest start that reads */
    for (int i = 0; i < 64 && good - bad > 1; i++) {
        int64_t mid = bad + (good - bad) / 2;
        int rc = two ? probe(c, mid - 1, INT64_MAX) : probe(c, mid, 0);
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            good = mid;
        else
            bad = mid;
    }
    *resumed_at = good;
    return two ? probe(c, good - 1, INT64_MAX) : probe(c, good, 0);
}

static void note_lost(table_copy *c, int64_t after, bool have_after, int64_t before,
                      bool have_before)
{
    if (json_array_size(c->lost_ranges) < LOST_RANGES_MAX)
        json_array_append_new(c->lost_ranges,
                              json_pack("{s:o, s:o}", "after",
                                        have_after ? json_integer((json_int_t)after) : json_null(),
                                        "before",
                                        have_before ? json_integer((json_int_t)before)
                                                    : json_null()));
    if (c->t->key_cols == 1 && have_after && have_before && before > after)
        c->lost_estimate += before - after - 1;
    else
        c->lost_unknown = true;
}

static void copy_table(table_copy *c)
{
    sqlite3_stmt *st = c->first;
    int64_t last1 = 0, last2 = 0;
    bool have_last = false;
    /* every row moves the key forward, every skip too: bounded by the keys */
    for (int64_t guard = 0; guard < INT64_MAX / 2 && !c->fatal[0]; guard++) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            int64_t k1 = sqlite3_column_int64(st, 0);
            int64_t k2 = c->t->key_cols == 2 ? sqlite3_column_int64(st, 1) : 0;
            if (have_last && (k1 < last1 || (k1 == last1 && k2 <= last2))) {
                c->read_errors++; /* keys out of order: a damaged page */
                break;
            }
            copy_row(c, st);
            last1 = k1;
            last2 = k2;
            have_last = true;
            continue;
        }
        if (rc == SQLITE_DONE)
            break;
        c->read_errors++;
        int64_t base = have_last ? last1 : -1;
        if (c->t->key_cols == 2 && !have_last)
            base = -1;
        int64_t resumed = 0;
        rc = skip_forward(c, base, &resumed);
        if (rc == SQLITE_ROW) {
            int64_t first_key = sqlite3_column_int64(c->after, 0);
            note_lost(c, base, have_last, first_key, true);
            /* the probe stands on a row: copy it, then read on from there */
            st = c->after;
            int64_t k2 = c->t->key_cols == 2 ? sqlite3_column_int64(c->after, 1) : 0;
            copy_row(c, c->after);
            last1 = first_key;
            last2 = k2;
            have_last = true;
            continue;
        }
        note_lost(c, base, have_last, 0, false);
        break;
    }
}

/* The salvage into <db>.recovering; true when it produced a file to install. */
static bool salvage(const memops_ctx *ctx, const char *tmp, json_t *res, bool *nothing)
{
    *nothing = false;
    sqlite3 *src = NULL, *dst = NULL;
    char why[PATH_MAX + 256];
    if (ops_open_damaged(ctx->db_path, &src, why, sizeof why) < 0) {
        *nothing = true;
        json_object_set_new(res, "salvage", json_pack("{s:s}", "error", why));
        return false;
    }
    unlink(tmp);
    char *tmp_journal = ops_sidecar(tmp, "-journal");
    if (tmp_journal)
        unlink(tmp_journal);
    free(tmp_journal);
    cx_error e = {0};
    bool done = false;
    json_t *tables = json_object();
    int64_t total_recovered = 0, total_lost = 0, total_skipped = 0;
    int64_t entity_rows = 0, entity_errors = 0;
    bool any_readable = false;
    if (ops_open_file(tmp, true, true, &dst, why, sizeof why) < 0) {
        ops_problem(res, "cannot create %s: %s", tmp, why);
        goto out;
    }
    if (ops_apply_schema(dst, &e) < 0 || ops_exec(dst, "PRAGMA synchronous=OFF", &e) < 0 ||
        ops_exec(dst, "PRAGMA foreign_keys=ON", &e) < 0 || ops_exec(dst, "BEGIN", &e) < 0) {
        ops_problem(res, "cannot prepare %s: %s", tmp, e.msg);
        goto out;
    }
    for (size_t i = 0; i < sizeof salvage_tables / sizeof *salvage_tables; i++) {
        table_copy c;
        memset(&c, 0, sizeof c);
        c.t = &salvage_tables[i];
        c.src = src;
        c.dst = dst;
        c.lost_ranges = json_array();
        json_t *info;
        if (copy_prepare(&c) < 0) {
            info = json_pack("{s:I, s:s}", "recovered", (json_int_t)0, "error",
                             sqlite3_errmsg(c.after ? dst : src));
            if (i == 0)
                entity_errors++;
            copy_finish(&c);
            json_decref(c.lost_ranges);
            json_object_set_new(tables, c.t->name, info);
            continue;
        }
        any_readable = true;
        copy_table(&c);
        copy_finish(&c);
        info = json_pack("{s:I, s:I, s:I}", "recovered", (json_int_t)c.recovered,
                         "skipped_invalid", (json_int_t)c.skipped, "read_errors",
                         (json_int_t)c.read_errors);
        if (json_array_size(c.lost_ranges) > 0) {
            json_object_set_new(info, "lost_ranges", c.lost_ranges);
            json_object_set_new(info, "lost_estimate",
                                c.lost_unknown && c.lost_estimate == 0
                                    ? json_string("unknown")
                                    : json_integer((json_int_t)c.lost_estimate));
        } else {
            json_decref(c.lost_ranges);
        }
        json_object_set_new(tables, c.t->name, info);
        total_recovered += c.recovered;
        total_skipped += c.skipped;
        total_lost += c.lost_estimate + c.skipped;
        if (i == 0) {
            entity_rows = c.recovered;
            entity_errors = c.read_errors;
        }
        if (c.fatal[0]) {
            ops_problem(res, "the salvage stopped: %s", c.fatal);
            goto out;
        }
    }
    int64_t fts_rows = 0;
    if (ops_fts_rebuild(dst, NULL, &fts_rows, &e) < 0 || ops_exec(dst, "COMMIT", &e) < 0) {
        ops_problem(res, "the salvage failed: %s", e.msg);
        goto out;
    }
    bool ok;
    json_t *msgs = ops_pragma_check(dst, true, &ok);
    if (!ok) {
        ops_problem(res, "the salvaged database fails its integrity check: %s",
                    json_string_value(json_array_get(msgs, 0)));
        json_decref(msgs);
        goto out;
    }
    json_decref(msgs);
    if (ops_exec(dst, "PRAGMA journal_mode=WAL", &e) < 0) {
        ops_problem(res, "the salvage failed: %s", e.msg);
        goto out;
    }
    done = true;
    json_object_set_new(res, "fts_rows_rebuilt", json_integer((json_int_t)fts_rows));
out:
    if (dst && sqlite3_close(dst) != SQLITE_OK)
        done = false;
    sqlite3_close(src);
    json_object_set_new(res, "tables", tables);
    json_object_set_new(res, "rows_recovered", json_integer((json_int_t)total_recovered));
    json_object_set_new(res, "rows_lost", json_integer((json_int_t)total_lost));
    json_object_set_new(res, "rows_skipped_invalid", json_integer((json_int_t)total_skipped));
    /* no entity could be read: a backup is worth more than what is left */
    if (!any_readable || (entity_rows == 0 && entity_errors > 0)) {
        *nothing = true;
        done = false;
    }
    if (!done) {
        unlink(tmp);
    }
    return done;
}

/* Step 2: checkpoint the WAL and check; true when the database is sound. */
static bool try_checkpoint(const memops_ctx *ctx, json_t *res)
{
    sqlite3 *db;
    char why[PATH_MAX + 256];
    if (ops_open_file(ctx->db_path, true, false, &db, why, sizeof why) < 0) {
        json_object_set_new(res, "checkpoint", json_pack("{s:s}", "error", why));
        return false;
    }
    cx_error e = {0};
    json_t *cp = NULL;
    bool checkpointed = ops_checkpoint(db, &cp, &e) == 0;
    bool ok = false;
    json_t *msgs = ops_pragma_check(db, true, &ok);
    json_object_set_new(res, "checkpoint",
                        checkpointed ? cp : json_pack("{s:s}", "error", e.msg));
    json_object_set_new(res, "integrity_after_checkpoint",
                        json_pack("{s:b, s:o}", "ok", ok, "messages", msgs));
    if (ok && !ops_table_exists(db, "entities"))
        ok = false;
    sqlite3_close(db);
    return ok;
}

static void verify_installed(const memops_ctx *ctx, json_t *res)
{
    sqlite3 *db;
    char why[PATH_MAX + 256];
    if (ops_open_file(ctx->db_path, false, false, &db, why, sizeof why) < 0) {
        ops_problem(res, "the recovered database does not open: %s", why);
        return;
    }
    bool ok;
    json_t *msgs = ops_pragma_check(db, true, &ok);
    if (!ok)
        ops_problem(res, "the recovered database fails its integrity check: %s",
                    json_string_value(json_array_get(msgs, 0)));
    json_object_set_new(res, "verified", json_boolean(ok));
    json_decref(msgs);
    sqlite3_close(db);
}

static void from_backup(const memops_ctx *ctx, const char *which, bool kept, bool verify,
                        json_t *res)
{
    json_object_set_new(res, "method", json_string("backup"));
    if (memops_restore_files(ctx, which, kept ? NULL : "damaged", verify, res) == 0)
        json_object_set_new(res, "message", json_string("recovered by restoring a backup"));
}

int memops_op_recover(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    (void)err;
    bool verify = ops_arg_true(args, "verify");
    const char *which = ops_arg_string(args, "from_backup");
    if (!which && ops_arg_true(args, "from_backup"))
        which = "latest";
    if (which && !*which)
        which = NULL;
    json_object_set_new(res, "from_wal", json_boolean(ops_arg_true(args, "from_wal")));
    ops_quiesce(ctx);
    cx_error e = {0};
    bool kept = false;
    uint64_t size;
    bool exists = ops_file_size(ctx->db_path, &size);
    if (ops_arg_true(args, "backup_first")) {
        json_t *info = NULL;
        if (ops_keep_aside(ctx, "damaged", &info, &e) < 0) {
            ops_problem(res, "refusing to recover: cannot copy the damaged files aside: %s",
                        e.msg);
            ops_resume(ctx, res);
            return 0;
        }
        json_object_set_new(res, "damaged_copy", info);
        kept = true;
    }
    if (which) {
        from_backup(ctx, which, kept, verify, res);
        ops_resume(ctx, res);
        return 0;
    }
    if (!exists) {
        char *latest = memops_latest_backup(ctx->backups_dir);
        if (latest) {
            ops_warning(res, "there is no memory database at %s; restoring the latest backup",
                        ctx->db_path);
            from_backup(ctx, "latest", true, verify, res);
        } else {
            ops_problem(res, "no memory database at %s and no backup to restore", ctx->db_path);
        }
        free(latest);
        ops_resume(ctx, res);
        return 0;
    }
    if (try_checkpoint(ctx, res)) {
        json_object_set_new(res, "method", json_string("wal-checkpoint"));
        json_object_set_new(res, "message", json_string("recovered by checkpointing the WAL"));
        if (verify)
            verify_installed(ctx, res);
        ops_resume(ctx, res);
        return 0;
    }
    /* salvage; the damaged file is kept unless it was already copied */
    char *tmp = ops_sidecar(ctx->db_path, ".recovering");
    if (!tmp) {
        ops_resume(ctx, res);
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    }
    json_object_set_new(res, "method", json_string("salvage"));
    bool nothing = false;
    if (salvage(ctx, tmp, res, &nothing)) {
        json_t *info = NULL;
        if (!kept && ops_keep_aside(ctx, "damaged", &info, &e) < 0) {
            ops_problem(res, "not installing the salvaged rows: cannot copy the damaged files "
                             "aside first: %s",
                        e.msg);
            unlink(tmp);
        } else {
            if (info)
                json_object_set_new(res, "damaged_copy", info);
            if (ops_install_db(ctx, tmp, &e) < 0) {
                ops_problem(res, "cannot install the salvaged database: %s", e.msg);
                unlink(tmp);
            } else {
                json_object_set_new(res, "message",
                                    json_string("recovered by salvaging the readable rows into a "
                                                "new database"));
                if (verify)
                    verify_installed(ctx, res);
            }
        }
    } else if (nothing) {
        char *latest = memops_latest_backup(ctx->backups_dir);
        if (latest) {
            ops_warning(res, "nothing could be salvaged from %s; restoring the latest backup",
                        ctx->db_path);
            from_backup(ctx, "latest", kept, verify, res);
        } else {
            ops_problem(res,
                        "nothing could be salvaged from %s and there is no backup; "
                        "'caxton memory reinitialize --yes' starts over empty",
                        ctx->db_path);
        }
        free(latest);
    }
    free(tmp);
    ops_resume(ctx, res);
    return 0;
}
