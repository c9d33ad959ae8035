/* Unit tests for memory/memops: the memory database's file-level operations
 * on a stopped server's files (no store): checks, corruption analysis,
 * backups and restores, recovery, export and import, maintenance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sha256.h"
#include "core/util.h"
#include "memory/memops.h"

/* ---- fixture: a directory with memory.db and backups/ ------------------- */

typedef struct fx {
    char dir[PATH_MAX];
    char db[PATH_MAX + 32];
    char backups[PATH_MAX + 32];
    memops_ctx ctx;
} fx;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void fx_paths(fx *f, const char *dir)
{
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    snprintf(f->db, sizeof f->db, "%s/memory.db", dir);
    snprintf(f->backups, sizeof f->backups, "%s/backups", dir);
    memset(&f->ctx, 0, sizeof f->ctx);
    f->ctx.db_path = f->db;
    f->ctx.backups_dir = f->backups;
    f->ctx.keep = 2;
    f->ctx.actor = "test";
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    const char *tmp = getenv("TMPDIR");
    char pattern[PATH_MAX];
    snprintf(pattern, sizeof pattern, "%s/caxton-test-memops-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(pattern)) {
        free(f);
        return -1;
    }
    fx_paths(f, pattern);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* ---- helpers -------------------------------------------------------------- */

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
}

/* A database with the schema, in WAL mode like the store keeps it. */
static sqlite3 *db_create(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON");
    for (int i = 0; i < memstore_migration_count; i++)
        exec_ok(db, memstore_migrations[i]);
    char v[64];
    snprintf(v, sizeof v, "PRAGMA user_version=%d", memstore_migration_count);
    exec_ok(db, v);
    return db;
}

/* Closes after folding the WAL in: one self-contained file. */
static void db_close_flat(sqlite3 *db)
{
    exec_ok(db, "PRAGMA journal_mode=DELETE");
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
}

static int64_t insert(sqlite3 *db, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    va_list ap;
    va_start(ap, fmt);
    for (int i = 0; fmt[i]; i++) {
        if (fmt[i] == 's')
            bind_text(st, i + 1, va_arg(ap, const char *));
        else if (fmt[i] == 'i')
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        else if (fmt[i] == 'd')
            sqlite3_bind_double(st, i + 1, va_arg(ap, double));
        else if (fmt[i] == 'n')
            sqlite3_bind_null(st, i + 1);
        else if (fmt[i] == 'b') {
            const void *p = va_arg(ap, const void *);
            int len = va_arg(ap, int);
            sqlite3_bind_blob(st, i + 1, p, len, SQLITE_TRANSIENT);
        }
    }
    va_end(ap);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    return sqlite3_last_insert_rowid(db);
}

#define T0 INT64_C(1700000000000)

/* One entity the way the store writes it: two versions, observations (one
 * removed for some), an embedding and its full-text row. */
static int64_t add_entity(sqlite3 *db, const char *scope, const char *name, int i)
{
    char meta[64], o1[96], o2[96];
    snprintf(meta, sizeof meta, "{\"n\":%d,\"tags\":[\"x\",\"y\"]}", i);
    snprintf(o1, sizeof o1, "first fact about number %d", i);
    snprintf(o2, sizeof o2, "second fact about number %d, with \"quotes\"", i);
    int64_t id = insert(db,
                        "INSERT INTO entities(scope, name, type, confidence, metadata, "
                        "created_at, updated_at, version, created_by) VALUES (?,?,?,?,?,?,?,?,?)",
                        "sssdsiiis", scope, name, "concept", 0.25 + (i % 4) * 0.25, meta,
                        T0 + i, T0 + i + 500, (int64_t)2, "seeder");
    insert(db, "INSERT INTO observations(entity_id, text, created_at, removed_at) VALUES (?,?,?,?)",
           "isin", id, o1, T0 + i);
    if (i % 5 == 0)
        insert(db,
               "INSERT INTO observations(entity_id, text, created_at, removed_at) "
               "VALUES (?,?,?,?)",
               "isii", id, o2, T0 + i + 1, T0 + i + 400);
    else
        insert(db,
               "INSERT INTO observations(entity_id, text, created_at, removed_at) "
               "VALUES (?,?,?,?)",
               "isin", id, o2, T0 + i + 1);
    insert(db,
           "INSERT INTO entity_versions(entity_id, version, type, confidence, metadata, "
           "changed_at, changed_by) VALUES (?,?,?,?,?,?,?)",
           "iisdsis", id, (int64_t)1, "idea", 0.5, "{}", T0 + i, "seeder");
    insert(db,
           "INSERT INTO entity_versions(entity_id, version, type, confidence, metadata, "
           "changed_at, changed_by) VALUES (?,?,?,?,?,?,?)",
           "iisdsis", id, (int64_t)2, "concept", 0.25 + (i % 4) * 0.25, meta, T0 + i + 500,
           "seeder");
    float vec[4] = {1.0f, (float)i, 0.5f, -1.0f};
    insert(db, "INSERT INTO embeddings(entity_id, embedder, dim, vector) VALUES (?,?,?,?)",
           "isib", id, "builtin-lexical-v1", (int64_t)4, (const void *)vec, (int)sizeof vec);
    char body[256];
    snprintf(body, sizeof body, "%s\n%s", o2, o1);
    insert(db, "INSERT INTO entities_fts(rowid, name, type, body) VALUES (?,?,?,?)", "isss", id,
           name, "concept", body);
    return id;
}

static const char *scope_of(int i)
{
    return i % 3 == 0 ? "global" : i % 3 == 1 ? "agent:alpha" : "workspace:team";
}

/* n entities with relations between neighbours, an override and a meta row. */
static void seed(sqlite3 *db, int n)
{
    exec_ok(db, "BEGIN");
    int64_t prev = 0;
    for (int i = 0; i < n; i++) {
        char name[160];
        snprintf(name, sizeof name, "entity-%05d with a name long enough to fill pages", i);
        int64_t id = add_entity(db, scope_of(i), name, i);
        if (prev)
            insert(db,
                   "INSERT INTO relations(from_id, to_id, type, strength, created_at, "
                   "created_by) VALUES (?,?,?,?,?,?)",
                   "iisdis", id, prev, "follows", 0.75, T0 + i, "seeder");
        prev = id;
    }
    insert(db, "INSERT INTO scope_overrides(agent, scope, workspace, set_at) VALUES (?,?,?,?)",
           "sssi", "alpha", "workspace", "team", T0);
    insert(db, "INSERT INTO meta(key, value) VALUES (?, ?)", "ss", "seeded", "yes");
    exec_ok(db, "COMMIT");
}

static void make_db(fx *f, int n)
{
    sqlite3 *db = db_create(f->db);
    seed(db, n);
    db_close_flat(db);
}

static int64_t count_in(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static json_t *run_ctx(const memops_ctx *ctx, const char *op, const char *args)
{
    json_t *a = args ? json_loads(args, 0, NULL) : NULL;
    if (args)
        assert_non_null(a);
    json_t *res = NULL;
    cx_error err = {0};
    int rc = memops_run(ctx, op, a, &res, &err);
    if (rc != 0)
        fail_msg("memory %s: %d %s", op, rc, err.msg);
    json_decref(a);
    assert_non_null(res);
    assert_string_equal(json_string_value(json_object_get(res, "operation")), op);
    return res;
}

static json_t *run(fx *f, const char *op, const char *args)
{
    return run_ctx(&f->ctx, op, args);
}

static bool res_ok(const json_t *res)
{
    return json_is_true(json_object_get(res, "ok"));
}

/* True when one of the problems contains text. */
static bool has_problem(const json_t *res, const char *text)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(res, "problems"), i, p) {
        if (strstr(json_string_value(p), text))
            return true;
    }
    return false;
}

static void dump_if_not(const json_t *res, bool want_ok)
{
    if (res_ok(res) != want_ok) {
        char *text = json_dumps(res, JSON_INDENT(2));
        print_error("%s\n", text);
        free(text);
    }
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(fs_write_all(fd, data, len), 0);
    close(fd);
}

/* Deterministic noise. */
static void noise(uint8_t *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed ? seed : 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
}

/* The nth leaf page of a b-tree (dbstat), to damage it on purpose. */
static int64_t leaf_page(const char *path, const char *name, int nth)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT pageno FROM dbstat WHERE name = ? AND "
                                        "pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET ?",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, nth);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t page = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return page;
}

static int64_t leaf_count(const char *path, const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM dbstat WHERE name = '%s' AND pagetype = 'leaf'", name);
    return count_in(path, sql);
}

static void smash_page(const char *path, int64_t page)
{
    uint8_t junk[4096];
    memset(junk, 0xAB, sizeof junk);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk, sizeof junk, (off_t)((page - 1) * 4096)),
                     (ssize_t)sizeof junk);
    close(fd);
}

static char *read_text(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    cx_error err = {0};
    assert_int_equal(fs_read_file(path, 64u * 1024 * 1024, &text, &len, &err), 0);
    return text;
}

static size_t count_dir(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (str_has_prefix(e->d_name, prefix))
            n++;
    closedir(d);
    return n;
}

/* ---- health-check --------------------------------------------------------- */

static void test_health_ok(void **state)
{
    fx *f = *state;
    make_db(f, 30);
    json_t *r = run(f, "health-check", NULL);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_t *counts = json_object_get(r, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "entities")), 30);
    assert_int_equal(json_integer_value(json_object_get(counts, "fts_rows")), 30);
    assert_int_equal(json_integer_value(json_object_get(counts, "embeddings")), 30);
    assert_int_equal(json_integer_value(json_object_get(r, "orphan_relations")), 0);
    assert_int_equal(json_array_size(json_object_get(r, "embedders")), 1);
    assert_null(json_object_get(r, "problems"));
    json_decref(r);

    r = run(f, "health-check", "{\"quick\": true}");
    assert_true(res_ok(r));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "integrity"), "check")),
        "quick_check");
    json_decref(r);
}

static void test_health_missing_file(void **state)
{
    fx *f = *state;
    json_t *r = run(f, "health-check", NULL);
    assert_false(res_ok(r));
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "no memory database at %s", f->db);
    assert_true(has_problem(r, want));
    json_decref(r);
    /* the check did not create one */
    assert_false(fs_exists(f->db));
}

static void test_garbage_file_never_crashes(void **state)
{
    fx *f = *state;
    uint8_t junk[64 * 1024];
    noise(junk, sizeof junk, 42);
    write_bytes(f->db, junk, sizeof junk);
    json_t *r = run(f, "health-check", NULL);
    assert_false(res_ok(r));
    assert_true(has_problem(r, "file is not a database"));
    json_decref(r);
    static const char *const ops[] = {
        "integrity-check", "wal-status",     "usage",           "resource-usage",
        "index-analysis",  "analyze-queries", "optimize",       "cleanup",
        "backup",          "reindex",
    };
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        r = run(f, ops[i], NULL);
        if (res_ok(r))
            fail_msg("%s said ok on a garbage file", ops[i]);
        json_decref(r);
    }
    r = run(f, "corruption-analysis", NULL);
    assert_false(res_ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "classification")), "unreadable");
    json_decref(r);
    /* an emergency backup keeps the bytes when SQLite cannot read them */
    r = run(f, "emergency-backup", NULL);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "method")), "raw-copy");
    assert_int_equal(count_dir(f->backups, "emergency-"), 1);
    json_decref(r);
    /* the garbage is still there, untouched */
    char *wal = path_join(f->dir, "memory.db-wal");
    uint8_t now[64 * 1024];
    int fd = open(f->db, O_RDONLY);
    assert_int_equal(read(fd, now, sizeof now), (ssize_t)sizeof now);
    close(fd);
    assert_memory_equal(now, junk, sizeof junk);
    free(wal);
}

/* ---- integrity-check and wal-status ----------------------------------------- */

static void test_integrity_check(void **state)
{
    fx *f = *state;
    make_db(f, 12);
    json_t *r = run(f, "integrity-check", "{\"full\": true}");
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_t *checks = json_object_get(r, "checks");
    assert_int_equal(json_array_size(checks), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(checks, 0), "name")),
                        "integrity_check");
    json_t *fts = json_array_get(checks, 2);
    assert_string_equal(json_string_value(json_object_get(fts, "fts5_integrity_check")), "ok");
    json_decref(r);

    /* a full-text row lost and a vector of the wrong length */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    exec_ok(db, "DELETE FROM entities_fts WHERE rowid = 3");
    exec_ok(db, "UPDATE embeddings SET vector = x'0011' WHERE entity_id = 4");
    sqlite3_close(db);
    r = run(f, "integrity-check", "{\"quick\": true}");
    assert_false(res_ok(r));
    checks = json_object_get(r, "checks");
    assert_string_equal(json_string_value(json_object_get(json_array_get(checks, 0), "name")),
                        "quick_check");
    assert_true(json_is_true(json_object_get(json_array_get(checks, 0), "ok")));
    fts = json_array_get(checks, 2);
    assert_false(json_is_true(json_object_get(fts, "ok")));
    assert_int_equal(json_integer_value(json_object_get(fts, "entities_without_row")), 1);
    json_t *emb = json_array_get(checks, 3);
    assert_int_equal(json_integer_value(json_object_get(emb, "bad_length")), 1);
    json_decref(r);

    r = run(f, "health-check", NULL);
    assert_false(res_ok(r));
    assert_true(has_problem(r, "full-text index is out of step"));
    json_decref(r);
}

static void test_wal_status(void **state)
{
    fx *f = *state;
    sqlite3 *db = db_create(f->db);
    exec_ok(db, "PRAGMA wal_autocheckpoint=0");
    seed(db, 20);
    /* the writer stays open: its frames are in the WAL */
    json_t *r = run(f, "wal-status", NULL);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_t *wal = json_object_get(r, "wal");
    assert_true(json_is_true(json_object_get(wal, "exists")));
    json_int_t bytes = json_integer_value(json_object_get(wal, "bytes"));
    assert_true(bytes > 32);
    assert_int_equal(json_integer_value(json_object_get(r, "page_size")), 4096);
    assert_int_equal(json_integer_value(json_object_get(r, "frames")), (bytes - 32) / (4096 + 24));
    assert_true(json_integer_value(json_object_get(r, "frames")) > 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(wal, "header"),
                                                        "page_size")),
                     4096);
    json_t *counters = json_object_get(json_object_get(r, "shm"), "counters");
    assert_int_equal(json_integer_value(json_object_get(counters, "frames_valid")),
                     json_integer_value(json_object_get(r, "frames")));
    assert_int_equal(json_integer_value(json_object_get(counters, "frames_checkpointed")), 0);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(r, "readers"), "connections")),
                     0);
    assert_true(json_is_null(json_object_get(r, "last_checkpoint_at")));
    assert_string_equal(json_string_value(json_object_get(r, "journal_mode")), "wal");
    json_decref(r);
    sqlite3_close(db);

    /* optimize checkpoints and records when */
    r = run(f, "optimize", NULL);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_decref(r);
    r = run(f, "wal-status", NULL);
    assert_true(json_is_string(json_object_get(r, "last_checkpoint_at")));
    json_decref(r);
}

/* ---- corruption-analysis ------------------------------------------------------ */

static void test_corruption_none_and_report(void **state)
{
    fx *f = *state;
    make_db(f, 40);
    json_t *r = run(f, "corruption-analysis", "{\"export_report\": true}");
    dump_if_not(r, true);
    assert_true(res_ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "classification")), "none");
    const char *report = json_string_value(json_object_get(r, "report_path"));
    assert_non_null(report);
    assert_true(str_has_prefix(report, f->dir));
    assert_non_null(strstr(report, "/corruption-report-"));
    json_t *doc = json_load_file(report, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "classification")), "none");
    json_decref(doc);
    json_decref(r);

    char *explicit_path = path_join(f->dir, "mine.json");
    char args[PATH_MAX + 64];
    snprintf(args, sizeof args, "{\"export_report\": \"%s\"}", explicit_path);
    r = run(f, "corruption-analysis", args);
    assert_string_equal(json_string_value(json_object_get(r, "report_path")), explicit_path);
    assert_true(fs_exists(explicit_path));
    json_decref(r);
    free(explicit_path);
}

static void test_corruption_unreadable(void **state)
{
    fx *f = *state;
    json_t *r = run(f, "corruption-analysis", NULL);
    assert_string_equal(json_string_value(json_object_get(r, "classification")), "unreadable");
    json_decref(r);
    make_db(f, 5);
    /* the header destroyed, the rest intact */
    int fd = open(f->db, O_WRONLY);
    assert_int_equal(pwrite(fd, "NOT A DATABASE!!", 16, 0), 16);
    close(fd);
    r = run(f, "corruption-analysis", NULL);
    assert_false(res_ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "classification")), "unreadable");
    json_decref(r);
}

static void test_corruption_table_pages(void **state)
{
    fx *f = *state;
    make_db(f, 3000);
    int64_t leaves = leaf_count(f->db, "entities");
    assert_true(leaves > 20);
    smash_page(f->db, leaf_page(f->db, "entities", (int)(leaves / 2)));
    json_t *r = run(f, "corruption-analysis", NULL);
    dump_if_not(r, false);
    assert_false(res_ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "classification")), "table-pages");
    json_t *damaged = json_object_get(json_object_get(r, "details"), "damaged_tables");
    assert_string_equal(json_string_value(json_object_get(json_array_get(damaged, 0), "name")),
                        "entities");
    json_decref(r);
}

static void test_corruption_index_only(void **state)
{
    fx *f = *state;
    make_db(f, 3000);
    int64_t leaves = leaf_count(f->db, "entities_creator");
    assert_true(leaves > 2);
    smash_page(f->db, leaf_page(f->db, "entities_creator", (int)(leaves / 2)));
    json_t *r = run(f, "corruption-analysis", NULL);
    dump_if_not(r, false);
    assert_string_equal(json_string_value(json_object_get(r, "classification")), "index-only");
    json_decref(r);
    /* REINDEX cannot free a page it cannot read; recover rebuilds from the rows */
    r = run(f, "reindex", "{\"full\": true}");
    assert_false(res_ok(r));
    assert_true(has_problem(r, "memory recover"));
    json_decref(r);
    r = run(f, "recover", NULL);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_t *ents = json_object_get(json_object_get(r, "tables"), "entities");
    assert_int_equal(json_integer_value(json_object_get(ents, "recovered")), 3000);
    assert_int_equal(json_integer_value(json_object_get(r, "rows_lost")), 0);
    json_decref(r);
    r = run(f, "corruption-analysis", NULL);
    dump_if_not(r, true);
    assert_string_equal(json_string_value(json_object_get(r, "classification")), "none");
    json_decref(r);
}

/* ---- backups, retention, restore ------------------------------------------------ */

static void check_sha_file(const char *backup)
{
    char *sum_path = NULL;
    assert_true(asprintf(&sum_path, "%s.sha256", backup) > 0);
    char *line = read_text(sum_path);
    char *data = NULL;
    size_t len = 0;
    cx_error err = {0};
    assert_int_equal(fs_read_file(backup, 512u * 1024 * 1024, &data, &len, &err), 0);
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256(data, len, digest);
    char hex[65];
    hex_encode(digest, sizeof digest, hex);
    const char *base = strrchr(backup, '/') + 1;
    char want[512];
    snprintf(want, sizeof want, "%s  %s\n", hex, base);
    assert_string_equal(line, want);
    free(data);
    free(line);
    free(sum_path);
}

static void test_backup_sha_and_retention(void **state)
{
    fx *f = *state;
    make_db(f, 25);
    assert_int_equal(mkdir(f->backups, 0700), 0);
    /* things that are not backups: never counted, never deleted */
    char *notes = path_join(f->backups, "notes.txt");
    char *lookalike = path_join(f->backups, "memory-20200101T000000Z.db.bak");
    char *badlabel = path_join(f->backups, "memory-20200101T000000Z-bad label.db");
    char *link = path_join(f->backups, "memory-20000101T000000Z.db");
    char *target = path_join(f->dir, "outside.db");
    write_bytes(notes, "keep me", 7);
    write_bytes(lookalike, "keep me", 7);
    write_bytes(badlabel, "keep me", 7);
    write_bytes(target, "target", 6);
    assert_int_equal(symlink(target, link), 0);

    char *paths[4] = {0};
    for (int i = 0; i < 4; i++) {
        json_t *r = run(f, "backup", i == 3 ? "{\"label\": \"before-upgrade\"}" : NULL);
        dump_if_not(r, true);
        assert_true(res_ok(r));
        paths[i] = strdup(json_string_value(json_object_get(r, "path")));
        assert_non_null(strstr(paths[i], "/memory-"));
        assert_true(json_integer_value(json_object_get(r, "bytes")) > 0);
        assert_int_equal(strlen(json_string_value(json_object_get(r, "sha256"))), 64);
        assert_string_equal(json_string_value(json_object_get(r, "quick_check")), "ok");
        check_sha_file(paths[i]);
        json_decref(r);
    }
    assert_non_null(strstr(paths[3], "-before-upgrade.db"));
    /* keep = 2: the two newest remain with their checksums */
    assert_false(fs_exists(paths[0]));
    assert_false(fs_exists(paths[1]));
    assert_true(fs_exists(paths[2]));
    assert_true(fs_exists(paths[3]));
    char *old_sum = NULL;
    assert_true(asprintf(&old_sum, "%s.sha256", paths[0]) > 0);
    assert_false(fs_exists(old_sum));
    free(old_sum);
    assert_true(fs_exists(notes));
    assert_true(fs_exists(lookalike));
    assert_true(fs_exists(badlabel));
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_true(fs_exists(target));
    char *latest = memops_latest_backup(f->backups);
    assert_string_equal(latest, paths[3]);
    free(latest);
    /* a backup is a self-contained database with the same rows */
    assert_int_equal(count_in(paths[3], "SELECT count(*) FROM entities"), 25);
    assert_int_equal(count_in(paths[3], "PRAGMA user_version"), memstore_migration_count);
    assert_true(stat(f->backups, &st) == 0 && (st.st_mode & 0777) == 0700);

    json_t *res = NULL;
    cx_error err = {0};
    assert_int_equal(memops_backup(&f->ctx, "bad label", &res, &err), CX_EINVAL);
    assert_null(res);
    for (int i = 0; i < 4; i++)
        free(paths[i]);
    free(notes);
    free(lookalike);
    free(badlabel);
    free(link);
    free(target);
}

static void test_backup_creates_dir(void **state)
{
    fx *f = *state;
    make_db(f, 3);
    char *nested = path_join(f->dir, "deep/er/backups");
    f->ctx.backups_dir = nested;
    json_t *res = NULL;
    cx_error err = {0};
    assert_int_equal(memops_backup(&f->ctx, NULL, &res, &err), 0);
    assert_true(res_ok(res));
    struct stat st;
    assert_int_equal(stat(nested, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    json_decref(res);
    free(nested);
}

static void test_restore_latest_and_refusals(void **state)
{
    fx *f = *state;
    make_db(f, 10);
    json_t *r = run(f, "backup", NULL);
    assert_true(res_ok(r));
    char *backup = strdup(json_string_value(json_object_get(r, "path")));
    json_decref(r);
    /* life goes on after the backup */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA foreign_keys=ON; DELETE FROM entities WHERE id > 3");
    sqlite3_close(db);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 3);

    r = run(f, "restore", "{\"from_backup\": \"latest\", \"verify_integrity\": true}");
    dump_if_not(r, true);
    assert_true(res_ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "restored_from")), backup);
    assert_true(json_is_true(json_object_get(json_object_get(r, "sha256"), "verified")));
    assert_true(json_is_true(json_object_get(json_object_get(r, "integrity_check"), "ok")));
    assert_true(json_is_true(json_object_get(r, "verified_after")));
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 10);
    /* the replaced files were kept and can be put back */
    const char *kept = json_string_value(json_object_get(json_object_get(r, "previous_files"),
                                                         "dir"));
    assert_non_null(kept);
    char *kept_db = path_join(kept, "memory.db");
    assert_int_equal(count_in(kept_db, "SELECT count(*) FROM entities"), 3);
    free(kept_db);
    json_decref(r);

    /* a checksum that does not match: refused, nothing touched */
    char *sum = NULL;
    assert_true(asprintf(&sum, "%s.sha256", backup) > 0);
    char line[256];
    snprintf(line, sizeof line, "%064d  x.db\n", 0);
    write_bytes(sum, line, strlen(line));
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA foreign_keys=ON; DELETE FROM entities WHERE id > 5");
    sqlite3_close(db);
    r = run(f, "restore", "{\"from_backup\": \"latest\"}");
    assert_false(res_ok(r));
    assert_true(has_problem(r, "sha256"));
    assert_true(has_problem(r, "refusing to restore"));
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 5);

    /* a damaged backup: refused by the integrity check */
    unlink(sum);
    char *fake = path_join(f->dir, "fake.db");
    uint8_t junk[8192];
    noise(junk, sizeof junk, 7);
    write_bytes(fake, junk, sizeof junk);
    char args[PATH_MAX + 64];
    snprintf(args, sizeof args, "{\"from_backup\": \"%s\"}", fake);
    r = run(f, "restore", args);
    assert_false(res_ok(r));
    assert_true(has_problem(r, "refusing to restore"));
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 5);

    /* no argument: an error, not an answer */
    json_t *res = NULL;
    cx_error err = {0};
    assert_int_equal(memops_run(&f->ctx, "restore", NULL, &res, &err), CX_EINVAL);
    free(fake);
    free(sum);
    free(backup);
}

/* ---- recover ----------------------------------------------------------------------- */

static void test_recover_after_deleted_wal(void **state)
{
    fx *f = *state;
    sqlite3 *db = db_create(f->db);
    seed(db, 10);
    exec_ok(db, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA wal_autocheckpoint=0");
    exec_ok(db, "BEGIN");
    for (int i = 100; i < 105; i++) {
        char name[32];
        snprintf(name, sizeof name, "late-%d", i);
        add_entity(db, "global", name, i);
    }
    exec_ok(db, "COMMIT");
    /* the writer dies without a checkpoint; the WAL is lost */
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    sqlite3_close(db);
    char *wal = path_join(f->dir, "memory.db-wal");
    assert_true(fs_exists(wal));
    assert_int_equal(unlink(wal), 0);

    json_t *r = run(f, "recover", "{\"from_wal\": true, \"verify\": true}");
    dump_if_not(r, true);
    assert_true(res_ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "method")), "wal-checkpoint");
    assert_string_equal(json_string_value(json_object_get(r, "message")),
                        "recovered by checkpointing the WAL");
    assert_true(json_is_true(json_object_get(r, "verified")));
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 10);
    r = run(f, "health-check", NULL);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_decref(r);
    free(wal);
}

static void test_recover_salvages_damaged_file(void **state)
{
    fx *f = *state;
    make_db(f, 3000);
    int64_t leaves = leaf_count(f->db, "entities");
    smash_page(f->db, leaf_page(f->db, "entities", (int)(leaves / 2)));
    int64_t obs_leaves = leaf_count(f->db, "observations");
    smash_page(f->db, leaf_page(f->db, "observations", (int)(obs_leaves / 3)));

    json_t *r = run(f, "recover", "{\"backup_first\": true, \"verify\": true}");
    dump_if_not(r, true);
    assert_true(res_ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "method")), "salvage");
    assert_true(json_is_true(json_object_get(r, "verified")));
    json_t *ents = json_object_get(json_object_get(r, "tables"), "entities");
    json_int_t got = json_integer_value(json_object_get(ents, "recovered"));
    assert_true(got > 2900 && got < 3000);
    assert_true(json_integer_value(json_object_get(ents, "read_errors")) >= 1);
    assert_true(json_array_size(json_object_get(ents, "lost_ranges")) >= 1);
    assert_true(json_integer_value(json_object_get(r, "rows_lost")) > 0);
    /* the damaged files were kept */
    json_t *copy = json_object_get(r, "damaged_copy");
    assert_true(json_array_size(json_object_get(copy, "files")) >= 1);
    json_decref(r);

    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), got);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities_fts"), got);
    assert_int_equal(count_in(f->db, "PRAGMA user_version"), memstore_migration_count);
    /* nothing points at a lost entity */
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM embeddings m WHERE NOT EXISTS "
                                     "(SELECT 1 FROM entities e WHERE e.id = m.entity_id)"),
                     0);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM relations r WHERE NOT EXISTS "
                                     "(SELECT 1 FROM entities e WHERE e.id = r.to_id)"),
                     0);
    assert_true(count_in(f->db, "SELECT count(*) FROM observations") > 5000);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM scope_overrides"), 1);
    r = run(f, "health-check", NULL);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_decref(r);
    r = run(f, "integrity-check", NULL);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_decref(r);
}

static void test_recover_unreadable_uses_backup(void **state)
{
    fx *f = *state;
    make_db(f, 8);
    json_t *r = run(f, "backup", NULL);
    assert_true(res_ok(r));
    json_decref(r);
    uint8_t junk[16384];
    noise(junk, sizeof junk, 99);
    write_bytes(f->db, junk, sizeof junk);
    r = run(f, "recover", NULL);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "method")), "backup");
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 8);
    /* the garbage was kept aside */
    assert_int_equal(count_dir(f->backups, "damaged-"), 1);
}

static void test_recover_nothing_and_no_backup(void **state)
{
    fx *f = *state;
    uint8_t junk[16384];
    noise(junk, sizeof junk, 5);
    write_bytes(f->db, junk, sizeof junk);
    json_t *r = run(f, "recover", NULL);
    assert_false(res_ok(r));
    assert_true(has_problem(r, "no backup"));
    json_decref(r);
}

/* ---- export / import ------------------------------------------------------------------ */

/* what the store accepts in names (control characters and '/' it refuses) */
static const char *const odd_names[] = {
    "say \"hi\"", "semi;colon", "a:b", "caf\xc3\xa9 \xe2\x98\x95", "back\\slash",
    "'single'",
};

static void make_rich_db(const char *path, int n)
{
    sqlite3 *db = db_create(path);
    seed(db, n);
    exec_ok(db, "BEGIN");
    for (size_t i = 0; i < sizeof odd_names / sizeof *odd_names; i++)
        add_entity(db, "workspace:team", odd_names[i], 1000 + (int)i);
    exec_ok(db, "COMMIT");
    db_close_flat(db);
}

static json_t *load_without_time(const char *path)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        fail_msg("%s: %s", path, jerr.text);
    json_object_del(doc, "exported_at");
    return doc;
}

static void test_export_import_round_trip(void **state)
{
    fx *f = *state;
    make_rich_db(f->db, 40);
    char *file1 = path_join(f->dir, "export1.json");
    char args[PATH_MAX + 64];
    snprintf(args, sizeof args, "{\"json\": \"%s\"}", file1);
    json_t *r = run(f, "export", args);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_t *counts = json_object_get(r, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "entities")), 46);
    assert_int_equal(json_integer_value(json_object_get(counts, "relations")), 39);
    json_decref(r);
    struct stat st;
    assert_int_equal(stat(file1, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* into a second, empty place */
    fx other;
    char *dir2 = path_join(f->dir, "other");
    assert_int_equal(mkdir(dir2, 0700), 0);
    fx_paths(&other, dir2);
    snprintf(args, sizeof args, "{\"file\": \"%s\"}", file1);
    r = run_ctx(&other.ctx, "import", args);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    counts = json_object_get(r, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "created")), 46);
    assert_int_equal(json_integer_value(json_object_get(counts, "relations_created")), 39);
    assert_int_equal(json_integer_value(json_object_get(counts, "scope_overrides")), 1);
    json_decref(r);
    assert_int_equal(count_in(other.db, "SELECT count(*) FROM entities_fts"), 46);
    assert_int_equal(count_in(other.db, "SELECT count(*) FROM embeddings"), 0);
    assert_int_equal(count_in(other.db, "SELECT count(*) FROM entities_fts WHERE entities_fts "
                                        "MATCH 'second'"),
                     36); /* removed observations are not searchable */

    char *file2 = path_join(f->dir, "export2.json");
    snprintf(args, sizeof args, "{\"json\": \"%s\"}", file2);
    r = run_ctx(&other.ctx, "export", args);
    assert_true(res_ok(r));
    json_decref(r);
    json_t *a = load_without_time(file1), *b = load_without_time(file2);
    if (!json_equal(a, b)) {
        char *ta = json_dumps(a, JSON_INDENT(1)), *tb = json_dumps(b, JSON_INDENT(1));
        print_error("first:\n%.3000s\nsecond:\n%.3000s\n", ta, tb);
        free(ta);
        free(tb);
        fail();
    }
    /* the odd names came through exactly */
    size_t i;
    json_t *e;
    size_t found = 0;
    json_array_foreach(json_object_get(b, "entities"), i, e) {
        for (size_t k = 0; k < sizeof odd_names / sizeof *odd_names; k++)
            if (strcmp(json_string_value(json_object_get(e, "name")), odd_names[k]) == 0)
                found++;
    }
    assert_int_equal(found, sizeof odd_names / sizeof *odd_names);
    json_decref(a);
    json_decref(b);

    /* dry-run writes nothing */
    snprintf(args, sizeof args, "{\"file\": \"%s\", \"dry_run\": true, \"merge\": \"skip\"}",
             file1);
    r = run_ctx(&other.ctx, "import", args);
    assert_true(res_ok(r));
    assert_true(json_is_false(json_object_get(r, "written")));
    json_decref(r);
    free(file1);
    free(file2);
    free(dir2);
}

/* An import that must be refused with a problem containing `why`; the target
 * database (one entity) is unchanged. */
static void refused(fx *f, const char *doc_text, const char *why)
{
    char *file = path_join(f->dir, "forged.json");
    write_bytes(file, doc_text, strlen(doc_text));
    char args[PATH_MAX + 64];
    snprintf(args, sizeof args, "{\"file\": \"%s\", \"merge\": \"update\"}", file);
    json_t *r = run(f, "import", args);
    if (res_ok(r) || !has_problem(r, why)) {
        char *text = json_dumps(r, JSON_INDENT(2));
        fail_msg("expected a problem with \"%s\":\n%s", why, text);
    }
    assert_true(json_is_false(json_object_get(r, "written")));
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 1);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM relations"), 0);
    assert_int_equal(count_in(f->db, "SELECT version FROM entities"), 2);
    free(file);
}

#define DOC_HEAD "{\"format\": \"caxton-memory-export\", \"version\": 1, \"entities\": ["
#define GOOD_ENTITY                                                                            \
    "{\"scope\": \"global\", \"name\": \"fine\", \"type\": \"t\", \"observations\": "          \
    "[{\"text\": \"ok\"}]}"

static void test_import_refuses_truncated_and_forged(void **state)
{
    fx *f = *state;
    sqlite3 *db = db_create(f->db);
    exec_ok(db, "BEGIN");
    add_entity(db, "global", "existing", 1);
    exec_ok(db, "COMMIT");
    db_close_flat(db);

    /* a real export, cut in the middle */
    fx src;
    char *dir2 = path_join(f->dir, "src");
    assert_int_equal(mkdir(dir2, 0700), 0);
    fx_paths(&src, dir2);
    make_rich_db(src.db, 30);
    char *full = path_join(f->dir, "full.json");
    char args[PATH_MAX + 64];
    snprintf(args, sizeof args, "{\"json\": \"%s\"}", full);
    json_t *r = run_ctx(&src.ctx, "export", args);
    assert_true(res_ok(r));
    json_decref(r);
    char *text = read_text(full);
    text[strlen(text) / 2] = '\0';
    refused(f, text, "is not valid JSON");
    free(text);

    refused(f, "{\"format\": \"something-else\", \"version\": 1, \"entities\": []}",
            "not a caxton memory export");
    refused(f, "{\"format\": \"caxton-memory-export\", \"version\": 2, \"entities\": []}",
            "version");
    refused(f, DOC_HEAD GOOD_ENTITY ", {\"scope\": \"team:x\", \"name\": \"a\", \"type\": \"t\"}]}",
            "is not agent:NAME, workspace:NAME or global");
    refused(f, DOC_HEAD "{\"scope\": \"agent:\", \"name\": \"a\", \"type\": \"t\"}]}",
            "is not agent:NAME");
    refused(f, DOC_HEAD GOOD_ENTITY ", {\"scope\": \"global\", \"name\": \"b\", \"type\": \"t\", "
                                    "\"confidence\": 2}]}",
            "confidence 2 is out of range");
    refused(f, DOC_HEAD GOOD_ENTITY "], \"relations\": [{\"from_scope\": \"global\", \"from\": "
                                    "\"fine\", \"to_scope\": \"global\", \"to\": \"nobody\", "
                                    "\"type\": \"knows\"}]}",
            "is neither in the file nor in the database");
    refused(f, DOC_HEAD "{\"scope\": \"global\", \"name\": \"a\", \"name\": \"b\", \"type\": "
                        "\"t\"}]}",
            "duplicate object key");
    refused(f, DOC_HEAD GOOD_ENTITY ", " GOOD_ENTITY "]}", "the same entity appears again");
    refused(f, DOC_HEAD GOOD_ENTITY "], \"counts\": {\"entities\": 5}}", "counts");
    refused(f, DOC_HEAD "{\"scope\": \"global\", \"name\": \"a\\u0000b\", \"type\": \"t\"}]}",
            "contains a NUL character");
    refused(f, DOC_HEAD "{\"scope\": \"global\", \"name\": \"a\", \"type\": \"t\", "
                        "\"observations\": [{\"text\": \"\"}]}]}",
            "text is empty");
    refused(f, DOC_HEAD "{\"scope\": \"global\", \"name\": \"a\", \"type\": \"t\", "
                        "\"metadata\": [1]}]}",
            "metadata must be an object");
    refused(f, DOC_HEAD "{\"scope\": \"global\", \"name\": \"a\", \"type\": \"t\", "
                        "\"surprise\": 1}]}",
            "unknown field \"surprise\"");
    refused(f, DOC_HEAD "{\"scope\": \"global\", \"name\": \"a\", \"type\": \"t\", "
                        "\"created_at\": \"yesterday\"}]}",
            "created_at must be an RFC 3339 time");
    refused(f, "[1, 2]", "must be a JSON object");

    /* a 10 KB name: refused with its size */
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appends(&sb, DOC_HEAD "{\"scope\": \"global\", \"type\": \"t\", \"name\": \"");
    for (int i = 0; i < 10240; i++)
        strbuf_append(&sb, "n", 1);
    strbuf_appends(&sb, "\"}]}");
    refused(f, sb.data, "name is 10240 bytes; the limit is 256");
    strbuf_free(&sb);

    /* what the store refuses, import refuses too */
    refused(f, DOC_HEAD "{\"scope\": \"global\", \"type\": \"t\", \"name\": \"two\\nlines\"}]}",
            "control character 0x0a");
    refused(f, DOC_HEAD "{\"scope\": \"global\", \"type\": \"t\", \"name\": \"in/out\"}]}",
            "'/' is not allowed");
    refused(f, DOC_HEAD "{\"scope\": \"global\", \"type\": \"a<b\", \"name\": \"x\"}]}",
            "only letters, digits");

    /* a relation to nowhere: no database is created for it either */
    const char *lonely = DOC_HEAD GOOD_ENTITY "], \"relations\": [{\"from_scope\": \"global\", "
                                              "\"from\": \"fine\", \"to_scope\": \"global\", "
                                              "\"to\": \"nobody\", \"type\": \"knows\"}]}";
    char *lonely_file = path_join(f->dir, "lonely.json");
    write_bytes(lonely_file, lonely, strlen(lonely));
    fx empty;
    char *dir3 = path_join(f->dir, "empty");
    assert_int_equal(mkdir(dir3, 0700), 0);
    fx_paths(&empty, dir3);
    snprintf(args, sizeof args, "{\"file\": \"%s\"}", lonely_file);
    r = run_ctx(&empty.ctx, "import", args);
    assert_false(res_ok(r));
    assert_true(has_problem(r, "neither in the file nor in the database"));
    json_decref(r);
    assert_false(fs_exists(empty.db));
    free(lonely_file);
    free(dir3);

    /* merge error (the default) refuses an entity that exists */
    char *file = path_join(f->dir, "exists.json");
    const char *doc = DOC_HEAD GOOD_ENTITY ", {\"scope\": \"global\", \"name\": \"existing\", "
                               "\"type\": \"t\"}]}";
    write_bytes(file, doc, strlen(doc));
    snprintf(args, sizeof args, "{\"file\": \"%s\"}", file);
    r = run(f, "import", args);
    assert_false(res_ok(r));
    assert_true(has_problem(r, "already exists"));
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 1);

    /* a bad merge value is an error */
    snprintf(args, sizeof args, "{\"file\": \"%s\", \"merge\": \"sometimes\"}", file);
    json_t *a = json_loads(args, 0, NULL);
    json_t *res = NULL;
    cx_error err = {0};
    assert_int_equal(memops_run(&f->ctx, "import", a, &res, &err), CX_EINVAL);
    json_decref(a);
    free(file);
    free(full);
    free(dir2);
}

static void test_import_merge_strategies(void **state)
{
    fx *f = *state;
    sqlite3 *db = db_create(f->db);
    exec_ok(db, "BEGIN");
    int64_t x = add_entity(db, "agent:alpha", "X", 1);
    exec_ok(db, "COMMIT");
    db_close_flat(db);
    (void)x;
    const char *doc =
        DOC_HEAD
        "{\"scope\": \"agent:alpha\", \"name\": \"X\", \"type\": \"person\", \"confidence\": 0.9, "
        "\"metadata\": {\"k\": 1}, \"observations\": [{\"text\": \"first fact about number 1\"}, "
        "{\"text\": \"a brand new fact\"}]},"
        "{\"scope\": \"global\", \"name\": \"Y\", \"type\": \"place\"}],"
        "\"relations\": [{\"from_scope\": \"agent:alpha\", \"from\": \"X\", \"to_scope\": "
        "\"global\", \"to\": \"Y\", \"type\": \"visits\", \"strength\": 0.5}],"
        "\"scope_overrides\": [{\"agent\": \"beta\", \"scope\": \"global\", \"workspace\": null}],"
        "\"counts\": {\"entities\": 2, \"relations\": 1, \"observations\": 2}}";
    char *file = path_join(f->dir, "merge.json");
    write_bytes(file, doc, strlen(doc));
    char args[PATH_MAX + 64];

    snprintf(args, sizeof args, "{\"file\": \"%s\", \"merge\": \"error\"}", file);
    json_t *r = run(f, "import", args);
    assert_false(res_ok(r));
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 1);

    snprintf(args, sizeof args, "{\"file\": \"%s\", \"merge\": \"skip\"}", file);
    r = run(f, "import", args);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_t *c = json_object_get(r, "counts");
    assert_int_equal(json_integer_value(json_object_get(c, "created")), 1);
    assert_int_equal(json_integer_value(json_object_get(c, "skipped")), 1);
    assert_int_equal(json_integer_value(json_object_get(c, "relations_created")), 1);
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT version FROM entities WHERE name = 'X'"), 2);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities WHERE name = 'X' AND "
                                     "type = 'concept'"),
                     1);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM scope_overrides"), 1);

    snprintf(args, sizeof args, "{\"file\": \"%s\", \"merge\": \"update\"}", file);
    r = run(f, "import", args);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    c = json_object_get(r, "counts");
    assert_int_equal(json_integer_value(json_object_get(c, "updated")), 1);
    assert_int_equal(json_integer_value(json_object_get(c, "unchanged")), 1); /* Y */
    assert_int_equal(json_integer_value(json_object_get(c, "observations_added")), 1);
    assert_int_equal(json_integer_value(json_object_get(c, "relations_skipped")), 1);
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT version FROM entities WHERE name = 'X'"), 3);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities WHERE name = 'X' AND "
                                     "type = 'person' AND metadata = '{\"k\":1}'"),
                     1);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM observations o JOIN entities e ON "
                                     "e.id = o.entity_id WHERE e.name = 'X' AND "
                                     "o.removed_at IS NULL"),
                     3);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entity_versions v JOIN entities e "
                                     "ON e.id = v.entity_id WHERE e.name = 'X' AND "
                                     "v.version = 3 AND v.changed_by = 'test'"),
                     1);
    /* its stale embedding is gone; the full-text row has the new fact */
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM embeddings e JOIN entities x ON "
                                     "x.id = e.entity_id WHERE x.name = 'X'"),
                     0);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities_fts WHERE entities_fts "
                                     "MATCH 'brand'"),
                     1);
    /* the second update changes nothing */
    r = run(f, "import", args);
    assert_true(res_ok(r));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "counts"),
                                                        "unchanged")),
                     2);
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT version FROM entities WHERE name = 'X'"), 3);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM scope_overrides WHERE agent = 'beta' "
                                     "AND scope = 'global'"),
                     1);
    free(file);
}

/* ---- reinitialize, cleanup, reindex, maintenance ------------------------------------------ */

static void test_reinitialize(void **state)
{
    fx *f = *state;
    make_db(f, 15);
    json_t *r = run(f, "reinitialize", NULL);
    assert_false(res_ok(r));
    assert_true(has_problem(r, "this deletes every memory; run again with --yes"));
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 15);

    r = run(f, "reinitialize", "{\"yes\": true, \"empty\": true}");
    dump_if_not(r, true);
    assert_true(res_ok(r));
    const char *backup = json_string_value(json_object_get(r, "backup"));
    assert_non_null(backup);
    assert_non_null(strstr(backup, "-before-reinitialize.db"));
    assert_int_equal(count_in(backup, "SELECT count(*) FROM entities"), 15);
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 0);
    assert_int_equal(count_in(f->db, "PRAGMA user_version"), memstore_migration_count);
    r = run(f, "health-check", NULL);
    assert_true(res_ok(r));
    json_decref(r);
}

static void test_cleanup_vacuum_and_conflicts(void **state)
{
    fx *f = *state;
    sqlite3 *db = db_create(f->db);
    seed(db, 1500);
    exec_ok(db, "BEGIN");
    add_entity(db, "agent:alpha", "shared", 1);
    add_entity(db, "global", "shared", 2);
    add_entity(db, "agent:beta", "shared", 3);
    add_entity(db, "agent:alpha", "mine", 4);
    add_entity(db, "agent:beta", "mine", 5); /* two agents: not a conflict */
    exec_ok(db, "COMMIT");
    exec_ok(db, "DELETE FROM entities_fts WHERE rowid IN (SELECT id FROM entities WHERE id <= "
                "1400); DELETE FROM entities WHERE id <= 1400");
    db_close_flat(db);

    json_t *r = run(f, "cleanup", "{\"vacuum\": true}");
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_t *v = json_object_get(r, "vacuum");
    json_int_t before = json_integer_value(json_object_get(v, "bytes_before"));
    json_int_t after = json_integer_value(json_object_get(v, "bytes_after"));
    assert_true(after < before / 2);
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities"), 105);

    r = run(f, "cleanup", "{\"scope_conflicts\": true}");
    assert_true(res_ok(r));
    json_t *sc = json_object_get(r, "scope_conflicts");
    assert_int_equal(json_integer_value(json_object_get(sc, "count")), 2);
    json_decref(r);
    r = run(f, "cleanup", "{\"scope_conflicts\": true, \"agent\": \"alpha\"}");
    sc = json_object_get(r, "scope_conflicts");
    assert_int_equal(json_integer_value(json_object_get(sc, "count")), 1);
    json_t *one = json_array_get(json_object_get(sc, "conflicts"), 0);
    assert_string_equal(json_string_value(json_object_get(one, "name")), "shared");
    assert_string_equal(json_string_value(json_object_get(one, "newer")), "global");
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities WHERE name = 'shared'"), 3);
}

static void test_reindex_offline(void **state)
{
    fx *f = *state;
    make_db(f, 30);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    exec_ok(db, "DELETE FROM entities_fts WHERE rowid % 2 = 0");
    sqlite3_close(db);
    json_t *r = run(f, "reindex", "{\"agent\": \"alpha\", \"scope_aware\": true}");
    dump_if_not(r, true);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "scopes"),
                                                        "agent:alpha")),
                     10);
    assert_int_equal(json_integer_value(json_object_get(r, "embeddings_dropped")), 10);
    json_decref(r);
    r = run(f, "reindex", "{\"optimize\": true}");
    dump_if_not(r, true);
    assert_true(res_ok(r));
    assert_true(res_ok(json_object_get(r, "optimize")));
    json_decref(r);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM entities_fts"), 30);
    assert_int_equal(count_in(f->db, "SELECT count(*) FROM embeddings"), 0);
    r = run(f, "integrity-check", NULL);
    dump_if_not(r, true);
    assert_true(res_ok(r)); /* missing embeddings are computed by the server */
    json_decref(r);
    json_t *res = NULL;
    cx_error err = {0};
    json_t *a = json_loads("{\"agent\": \"../x\"}", 0, NULL);
    assert_int_equal(memops_run(&f->ctx, "reindex", a, &res, &err), CX_EINVAL);
    json_decref(a);
}

static void test_inspection_ops(void **state)
{
    fx *f = *state;
    make_db(f, 60);
    json_t *r = run(f, "usage", "{\"by_scope\": true, \"detailed\": true}");
    dump_if_not(r, true);
    json_t *scope = json_object_get(json_object_get(r, "by_scope"), "global");
    assert_int_equal(json_integer_value(json_object_get(scope, "entities")), 20);
    assert_int_equal(json_integer_value(json_object_get(scope, "observations")), 40);
    assert_true(json_integer_value(json_object_get(scope, "bytes_approx")) > 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "totals"),
                                                        "observations_removed")),
                     12);
    assert_true(json_array_size(json_object_get(r, "tables")) > 5);
    json_decref(r);

    r = run(f, "resource-usage", "{\"breakdown\": true}");
    assert_true(res_ok(r));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "database"),
                                                        "page_size")),
                     4096);
    json_decref(r);

    r = run(f, "index-analysis", "{\"fragmentation\": true}");
    assert_true(res_ok(r));
    assert_true(json_array_size(json_object_get(r, "indexes")) >= 4);
    assert_true(json_integer_value(json_object_get(r, "fts_data_records")) > 0);
    json_decref(r);

    r = run(f, "analyze-queries", "{\"optimize_suggestions\": true}");
    assert_true(res_ok(r));
    assert_false(json_is_true(json_object_get(r, "statistics")));
    assert_true(json_array_size(json_object_get(r, "suggestions")) >= 1);
    json_t *first = json_array_get(json_object_get(r, "queries"), 0);
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(first, "plan"), 0)),
                           "SEARCH entities"));
    json_decref(r);

    r = run(f, "maintenance", "{\"indexes\": true, \"background\": true}");
    dump_if_not(r, true);
    assert_true(res_ok(r));
    json_decref(r);
    r = run(f, "analyze-queries", NULL);
    assert_true(json_is_true(json_object_get(r, "statistics")));
    json_decref(r);
    r = run(f, "cleanup", "{\"compact\": true}");
    assert_true(res_ok(r));
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "compact"), "fts")),
                        "optimized");
    json_decref(r);
    r = run(f, "emergency-backup", NULL);
    dump_if_not(r, true);
    assert_true(res_ok(r));
    assert_non_null(strstr(json_string_value(json_object_get(r, "path")), "-emergency.db"));
    json_decref(r);
}

static void test_names_and_offline_rules(void **state)
{
    fx *f = *state;
    json_t *res = NULL;
    cx_error err = {0};
    assert_int_equal(memops_run(&f->ctx, "performance-metrics", NULL, &res, &err), CX_EUNAVAIL);
    assert_non_null(strstr(err.msg, "needs a running server"));
    assert_int_equal(memops_run(&f->ctx, "slow-queries", NULL, &res, &err), CX_EUNAVAIL);
    assert_int_equal(memops_run(&f->ctx, "adjust-cache", NULL, &res, &err), CX_EUNAVAIL);
    assert_int_equal(memops_run(&f->ctx, "helth-check", NULL, &res, &err), CX_ENOTFOUND);
    assert_non_null(strstr(err.msg, "health-check"));
    assert_null(res);
    size_t n = 0;
    for (; memops_names[n]; n++)
        assert_true(memops_offline_capable(memops_names[n]) ||
                    strcmp(memops_names[n], "performance-metrics") == 0 ||
                    strcmp(memops_names[n], "slow-queries") == 0 ||
                    strcmp(memops_names[n], "adjust-cache") == 0);
    assert_int_equal(n, 22);
    assert_false(memops_offline_capable("nope"));
    assert_true(memops_offline_capable("recover"));
    assert_null(memops_latest_backup(f->backups));
    /* nothing to save: even an emergency backup says so */
    json_t *r = run(f, "emergency-backup", NULL);
    assert_false(res_ok(r));
    assert_true(has_problem(r, "nothing to back up: no memory database at"));
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_file_never_crashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integrity_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption_none_and_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption_table_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption_index_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_sha_and_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_creates_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_latest_and_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_after_deleted_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_salvages_damaged_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_unreadable_uses_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_nothing_and_no_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_import_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_import_refuses_truncated_and_forged, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_import_merge_strategies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reinitialize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cleanup_vacuum_and_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reindex_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inspection_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_and_offline_rules, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
