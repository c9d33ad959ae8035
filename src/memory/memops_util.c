/* The memory operations' shared helpers: answers, arguments, time stamps,
 * file copies and replacement, connections to memory.db, the schema, the
 * full-text rows and checkpoints. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sha256.h"
#include "memory/memops_internal.h"

/* ---- answers ---------------------------------------------------------- */

json_t *ops_result_new(const char *op)
{
    return json_pack("{s:s, s:b}", "operation", op, "ok", 1);
}

static void append_text(json_t *res, const char *key, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void append_text(json_t *res, const char *key, const char *fmt, va_list ap)
{
    char text[1024];
    vsnprintf(text, sizeof text, fmt, ap);
    text_make_utf8(text);
    json_t *list = json_object_get(res, key);
    if (!json_is_array(list)) {
        list = json_array();
        if (!list || json_object_set_new(res, key, list) < 0)
            return;
    }
    size_t n = json_array_size(list);
    if (n < OPS_PROBLEMS_MAX) {
        json_array_append_new(list, json_string(text));
        return;
    }
    /* the last entry counts the ones left out */
    json_int_t more = 1;
    json_t *last = json_array_get(list, n - 1);
    if (n == OPS_PROBLEMS_MAX + 1 && json_is_string(last))
        more = (json_int_t)strtoll(json_string_value(last) + 5, NULL, 10) + 1;
    char tail[64];
    snprintf(tail, sizeof tail, "(and %lld more)", (long long)more);
    if (n == OPS_PROBLEMS_MAX)
        json_array_append_new(list, json_string(tail));
    else
        json_array_set_new(list, n - 1, json_string(tail));
}

void ops_problem(json_t *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    append_text(res, "problems", fmt, ap);
    va_end(ap);
    json_object_set_new(res, "ok", json_false());
}

void ops_warning(json_t *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    append_text(res, "warnings", fmt, ap);
    va_end(ap);
}

size_t ops_problem_count(const json_t *res)
{
    return json_array_size(json_object_get(res, "problems"));
}

bool ops_is_ok(const json_t *res)
{
    return json_is_true(json_object_get(res, "ok"));
}

void ops_set(json_t *obj, const char *key, json_t *value)
{
    if (value)
        json_object_set_new(obj, key, value);
}

json_t *ops_string(const char *text, size_t len)
{
    if (!text)
        return json_null();
    if (text_is_utf8(text, len))
        return json_stringn(text, len);
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, text, len);
    copy[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (copy[i] == '\0')
            copy[i] = '?';
    text_make_utf8(copy);
    json_t *s = json_stringn(copy, len);
    free(copy);
    return s;
}

/* ---- arguments -------------------------------------------------------- */

bool ops_arg_true(const json_t *args, const char *key)
{
    json_t *v = json_is_object(args) ? json_object_get(args, key) : NULL;
    if (json_is_string(v))
        return strcmp(json_string_value(v), "true") == 0;
    return json_is_true(v);
}

const char *ops_arg_string(const json_t *args, const char *key)
{
    json_t *v = json_is_object(args) ? json_object_get(args, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

bool ops_name_valid(const char *name, size_t max)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool ops_scope_valid(const char *scope)
{
    if (!scope)
        return false;
    if (strcmp(scope, "global") == 0)
        return true;
    if (str_has_prefix(scope, "agent:"))
        return ops_name_valid(scope + 6, 128);
    if (str_has_prefix(scope, "workspace:"))
        return ops_name_valid(scope + 10, 128);
    return false;
}

/* ---- time ------------------------------------------------------------- */

void ops_stamp(uint64_t epoch_ms, bool with_ms, char *buf, size_t size)
{
    time_t secs = (time_t)(epoch_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y%m%dT%H%M%S", &tm);
    if (with_ms)
        snprintf(buf, size, "%s.%03uZ", base, (unsigned)(epoch_ms % 1000));
    else
        snprintf(buf, size, "%sZ", base);
}

json_t *ops_time_json(uint64_t epoch_ms)
{
    char text[40];
    time_format_rfc3339(epoch_ms, text, sizeof text);
    return json_string(text);
}

double ops_elapsed_s(uint64_t start_ns)
{
    return (double)(time_monotonic_ns() - start_ns) / 1e9;
}

/* ---- files ------------------------------------------------------------ */

char *ops_sidecar(const char *path, const char *suffix)
{
    size_t a = strlen(path), b = strlen(suffix);
    char *out = malloc(a + b + 1);
    if (!out)
        return NULL;
    memcpy(out, path, a);
    memcpy(out + a, suffix, b + 1);
    return out;
}

bool ops_file_size(const char *path, uint64_t *size)
{
    struct stat st;
    if (!path || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    *size = (uint64_t)st.st_size;
    return true;
}

uint64_t ops_size_or_zero(const char *path)
{
    uint64_t size = 0;
    return ops_file_size(path, &size) ? size : 0;
}

int ops_fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int ops_fsync_parent(const char *path)
{
    return fs_fsync_parent(path);
}

#define COPY_CHUNK (64u * 1024u)

/* Reads fd to the end (at most `limit` bytes), hashing and optionally
 * writing each chunk to out_fd. */
static int pump(int fd, int out_fd, uint64_t limit, sha256_ctx *sha, uint64_t *bytes)
{
    uint8_t *buf = malloc(COPY_CHUNK);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    uint64_t done = 0;
    int rc = 0;
    while (done < limit) {
        size_t want = limit - done < COPY_CHUNK ? (size_t)(limit - done) : COPY_CHUNK;
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        sha256_update(sha, buf, (size_t)n);
        if (out_fd >= 0 && fs_write_all(out_fd, buf, (size_t)n) != 0) {
            rc = -1;
            break;
        }
        done += (uint64_t)n;
    }
    int saved = errno;
    free(buf);
    errno = saved;
    *bytes = done;
    return rc;
}

static void digest_hex(sha256_ctx *sha, char hex[65])
{
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256_final(sha, digest);
    hex_encode(digest, sizeof digest, hex);
}

int ops_sha256_file(const char *path, char hex[65], uint64_t *bytes, cx_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        return cx_error_set(err, saved == ENOENT ? CX_ENOTFOUND : CX_EIO, "cannot read %s: %s",
                            path, strerror(saved));
    }
    sha256_ctx sha;
    sha256_init(&sha);
    uint64_t n = 0;
    int rc = pump(fd, -1, (uint64_t)st.st_size, &sha, &n);
    int saved = errno;
    close(fd);
    if (rc != 0)
        return cx_error_set(err, CX_EIO, "cannot read %s: %s", path, strerror(saved));
    digest_hex(&sha, hex);
    if (bytes)
        *bytes = n;
    return 0;
}

int ops_copy_file(const char *src, const char *dst, mode_t mode, char hex[65], uint64_t *bytes,
                  cx_error *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (in < 0 || fstat(in, &st) != 0) {
        int saved = errno;
        if (in >= 0)
            close(in);
        return cx_error_set(err, CX_EIO, "cannot read %s: %s", src, strerror(saved));
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (out < 0) {
        int saved = errno;
        close(in);
        return cx_error_set(err, CX_EIO, "cannot create %s: %s", dst, strerror(saved));
    }
    sha256_ctx sha;
    sha256_init(&sha);
    uint64_t n = 0;
    int rc = pump(in, out, (uint64_t)st.st_size, &sha, &n);
    if (rc == 0)
        rc = fchmod(out, mode);
    if (rc == 0)
        rc = fsync(out);
    int saved = errno;
    close(in);
    if (close(out) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc != 0) {
        unlink(dst);
        return cx_error_set(err, CX_EIO, "cannot copy %s to %s: %s", src, dst, strerror(saved));
    }
    if (hex)
        digest_hex(&sha, hex);
    if (bytes)
        *bytes = n;
    return 0;
}

int ops_ensure_backups_dir(const memops_ctx *ctx, cx_error *err)
{
    if (!ctx->backups_dir || !*ctx->backups_dir)
        return cx_error_set(err, CX_ECONFIG, "no backups directory is configured");
    struct stat st;
    if (stat(ctx->backups_dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return cx_error_set(err, CX_EIO, "the backups directory %s is not a directory",
                                ctx->backups_dir);
        return 0;
    }
    return fs_mkdir_p(ctx->backups_dir, 0700, err);
}

static const char *const db_suffixes[] = {"", "-wal", "-shm", "-journal"};

int ops_keep_aside(const memops_ctx *ctx, const char *prefix, json_t **info, cx_error *err)
{
    *info = NULL;
    bool any = false;
    for (size_t i = 0; i < sizeof db_suffixes / sizeof *db_suffixes; i++) {
        char *p = ops_sidecar(ctx->db_path, db_suffixes[i]);
        uint64_t size;
        any = any || (p && ops_file_size(p, &size));
        free(p);
    }
    if (!any) {
        *info = json_pack("{s:n, s:[]}", "dir", "files");
        return 0;
    }
    int rc = ops_ensure_backups_dir(ctx, err);
    if (rc < 0)
        return rc;
    /* a directory of its own, named by the time (with ms and then a counter
     * when two land in the same second) */
    char *dir = NULL;
    uint64_t now = time_now_ms();
    for (int attempt = 0; attempt < 20 && !dir; attempt++) {
        char stamp[40], name[96];
        ops_stamp(now, attempt > 0, stamp, sizeof stamp);
        if (attempt > 1)
            snprintf(name, sizeof name, "%s-%s-%d", prefix, stamp, attempt);
        else
            snprintf(name, sizeof name, "%s-%s", prefix, stamp);
        char *candidate = path_join(ctx->backups_dir, name);
        if (!candidate)
            return cx_error_set(err, CX_ENOMEM, "out of memory");
        if (mkdir(candidate, 0700) == 0) {
            dir = candidate;
            break;
        }
        int saved = errno;
        free(candidate);
        if (saved != EEXIST)
            return cx_error_set(err, CX_EIO, "cannot create a directory in %s: %s",
                                ctx->backups_dir, strerror(saved));
    }
    if (!dir)
        return cx_error_set(err, CX_EEXIST, "cannot find a free name in %s", ctx->backups_dir);
    json_t *files = json_array();
    const char *base = strrchr(ctx->db_path, '/');
    base = base ? base + 1 : ctx->db_path;
    rc = 0;
    for (size_t i = 0; i < sizeof db_suffixes / sizeof *db_suffixes && rc == 0; i++) {
        char *src = ops_sidecar(ctx->db_path, db_suffixes[i]);
        char *leaf = ops_sidecar(base, db_suffixes[i]);
        char *dst = leaf ? path_join(dir, leaf) : NULL;
        uint64_t size, bytes = 0;
        char hex[65];
        if (!src || !leaf || !dst)
            rc = cx_error_set(err, CX_ENOMEM, "out of memory");
        else if (ops_file_size(src, &size) &&
                 (rc = ops_copy_file(src, dst, 0600, hex, &bytes, err)) == 0)
            json_array_append_new(files, json_pack("{s:s, s:I, s:s}", "file", dst, "bytes",
                                                   (json_int_t)bytes, "sha256", hex));
        free(src);
        free(leaf);
        free(dst);
    }
    if (rc == 0 && (ops_fsync_path(dir) != 0 || ops_fsync_parent(dir) != 0))
        rc = cx_error_set(err, CX_EIO, "cannot sync %s: %s", dir, strerror(errno));
    if (rc < 0) {
        json_decref(files);
        free(dir);
        return rc;
    }
    *info = json_pack("{s:s, s:o}", "dir", dir, "files", files);
    free(dir);
    return 0;
}

int ops_install_db(const memops_ctx *ctx, const char *new_path, cx_error *err)
{
    if (ops_fsync_path(new_path) != 0)
        return cx_error_set(err, CX_EIO, "cannot sync %s: %s", new_path, strerror(errno));
    /* the old WAL must not be applied to the new file: remove it first */
    for (size_t i = 1; i < sizeof db_suffixes / sizeof *db_suffixes; i++) {
        char *p = ops_sidecar(ctx->db_path, db_suffixes[i]);
        if (!p)
            return cx_error_set(err, CX_ENOMEM, "out of memory");
        int rc = unlink(p);
        int saved = errno;
        if (rc != 0 && saved != ENOENT) {
            cx_error_set(err, CX_EIO, "cannot remove %s: %s", p, strerror(saved));
            free(p);
            return CX_EIO;
        }
        free(p);
    }
    if (rename(new_path, ctx->db_path) != 0)
        return cx_error_set(err, CX_EIO, "cannot rename %s to %s: %s", new_path, ctx->db_path,
                            strerror(errno));
    if (ops_fsync_parent(ctx->db_path) != 0)
        return cx_error_set(err, CX_EIO, "cannot sync the directory of %s: %s", ctx->db_path,
                            strerror(errno));
    return 0;
}

/* ---- databases -------------------------------------------------------- */

int ops_open_file(const char *path, bool write, bool create, sqlite3 **out, char *why,
                  size_t why_size)
{
    *out = NULL;
    struct stat st;
    if (!create) {
        if (stat(path, &st) != 0) {
            if (errno == ENOENT)
                snprintf(why, why_size, "no memory database at %s", path);
            else
                snprintf(why, why_size, "cannot read %s: %s", path, strerror(errno));
            return -1;
        }
        if (!S_ISREG(st.st_mode)) {
            snprintf(why, why_size, "%s is not a regular file", path);
            return -1;
        }
    }
    int flags = (write ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) |
                (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        snprintf(why, why_size, "cannot open %s: %s", path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    /* opening is lazy: reading the schema finds a file that is not a
     * database, a damaged header or schema */
    if (sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(why, why_size, "%s: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return -1;
    }
    if (write)
        sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    *out = db;
    return 0;
}

int ops_open_damaged(const char *path, sqlite3 **out, char *why, size_t why_size)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, why_size, "no memory database at %s", path);
        return -1;
    }
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(why, why_size, "cannot open %s: %s", path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    /* writable_schema also makes SQLite accept a file shorter than its
     * header says; nothing is written through a read-only connection */
    if (sqlite3_exec(db, "PRAGMA writable_schema=ON", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(why, why_size, "%s: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

int ops_db_open(const memops_ctx *ctx, ops_mode mode, ops_db *db, json_t *res)
{
    memset(db, 0, sizeof *db);
    /* checks read what is on disk, as the next start would: the live
     * connection's page cache can hide a file overwritten under it */
    if (ctx->store && mode != OPS_CHECK) {
        sqlite3 *live = memstore_sqlite(ctx->store);
        if (live) {
            db->sql = live;
            db->live = true;
            db->writable = true;
            return 0;
        }
    }
    char why[PATH_MAX + 128];
    int rc = ops_open_file(ctx->db_path, mode != OPS_READ, false, &db->sql, why, sizeof why);
    if (rc < 0 && mode == OPS_CHECK && !str_has_prefix(why, "no memory database")) {
        rc = ops_open_file(ctx->db_path, false, false, &db->sql, why, sizeof why);
        if (rc == 0)
            mode = OPS_READ;
    }
    if (rc < 0) {
        ops_problem(res, "%s", why);
        return -1;
    }
    db->owned = true;
    db->writable = mode != OPS_READ;
    if (mode == OPS_CHECK)
        sqlite3_db_config(db->sql, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    return 0;
}

void ops_db_close(ops_db *db)
{
    if (db->owned)
        sqlite3_close(db->sql);
    memset(db, 0, sizeof *db);
}

int ops_exec(sqlite3 *db, const char *sql, cx_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cx_error_set(err, CX_EIO, "memory database: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return CX_EIO;
    }
    return 0;
}

bool ops_query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return false;
    bool ok = sqlite3_step(st) == SQLITE_ROW;
    if (ok)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return ok;
}

bool ops_table_exists(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE name = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

bool ops_has_dbstat(sqlite3 *db)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM dbstat LIMIT 0", -1, &st, NULL) != SQLITE_OK)
        return false;
    sqlite3_finalize(st);
    return true;
}

json_t *ops_pragma_check(sqlite3 *db, bool full, bool *ok)
{
    json_t *msgs = json_array();
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA %s(%d)", full ? "integrity_check" : "quick_check",
             OPS_CHECK_MESSAGES_MAX);
    sqlite3_stmt *st;
    *ok = false;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        json_array_append_new(msgs, json_string(sqlite3_errmsg(db)));
        return msgs;
    }
    int rc;
    bool said_ok = false;
    for (int rows = 0; (rc = sqlite3_step(st)) == SQLITE_ROW && rows < 2 * OPS_CHECK_MESSAGES_MAX;
         rows++) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        if (!text)
            continue;
        if (strcmp(text, "ok") == 0) {
            said_ok = true;
            continue;
        }
        /* "*** in database main ***\nPage 5: ..." -> one message per line */
        const char *p = text;
        for (int lines = 0; *p && lines < 64; lines++) {
            const char *nl = strchr(p, '\n');
            size_t len = nl ? (size_t)(nl - p) : strlen(p);
            if (len > 0 && !str_has_prefix(p, "*** in database"))
                json_array_append_new(msgs, ops_string(p, len));
            p += len + (nl ? 1 : 0);
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        char text[512];
        snprintf(text, sizeof text, "the check stopped: %s", sqlite3_errmsg(db));
        json_array_append_new(msgs, json_string(text));
        said_ok = false;
    }
    sqlite3_finalize(st);
    *ok = said_ok && json_array_size(msgs) == 0;
    return msgs;
}

int ops_apply_schema(sqlite3 *db, cx_error *err)
{
    int64_t version = 0;
    if (!ops_query_int(db, "PRAGMA user_version", &version))
        return cx_error_set(err, CX_EIO, "memory database: cannot read its schema version: %s",
                            sqlite3_errmsg(db));
    if (version > memstore_migration_count)
        return cx_error_set(err, CX_EIO,
                            "the memory database has schema version %lld, newer than this "
                            "caxton (%d): it was written by a newer release",
                            (long long)version, memstore_migration_count);
    for (int v = (int)version + 1; v <= memstore_migration_count; v++) {
        char record[64];
        snprintf(record, sizeof record, "PRAGMA user_version=%d", v);
        int rc = ops_exec(db, "BEGIN IMMEDIATE", err);
        if (rc < 0)
            return rc;
        if ((rc = ops_exec(db, memstore_migrations[v - 1], err)) < 0 ||
            (rc = ops_exec(db, record, err)) < 0) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return cx_error_wrap(err, "memory schema migration %d", v);
        }
        if ((rc = ops_exec(db, "COMMIT", err)) < 0)
            return rc;
    }
    return 0;
}

/* ---- full-text rows ---------------------------------------------------- */

int ops_fts_init(ops_fts *f, sqlite3 *db, cx_error *err)
{
    memset(f, 0, sizeof *f);
    f->db = db;
    strbuf_init(&f->body);
    if (sqlite3_prepare_v2(db,
                           "SELECT text FROM observations WHERE entity_id = ? AND removed_at IS "
                           "NULL ORDER BY id DESC",
                           -1, &f->obs, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "DELETE FROM entities_fts WHERE rowid = ?", -1, &f->del, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO entities_fts(rowid, name, type, body) "
                           "SELECT id, name, type, ?2 FROM entities WHERE id = ?1",
                           -1, &f->ins, NULL) != SQLITE_OK) {
        cx_error_set(err, CX_EIO, "memory database: full-text statements: %s",
                     sqlite3_errmsg(db));
        ops_fts_free(f);
        return CX_EIO;
    }
    return 0;
}

void ops_fts_free(ops_fts *f)
{
    sqlite3_finalize(f->obs);
    sqlite3_finalize(f->del);
    sqlite3_finalize(f->ins);
    strbuf_free(&f->body);
    f->obs = f->del = f->ins = NULL;
}

int ops_fts_put(ops_fts *f, int64_t entity_id, cx_error *err)
{
    strbuf_free(&f->body);
    strbuf_init(&f->body);
    sqlite3_bind_int64(f->obs, 1, entity_id);
    int rc;
    /* newest first, whole observations, until the body is full */
    for (int rows = 0; (rc = sqlite3_step(f->obs)) == SQLITE_ROW && rows < 1000000; rows++) {
        size_t len = (size_t)sqlite3_column_bytes(f->obs, 0);
        const char *text = (const char *)sqlite3_column_text(f->obs, 0);
        size_t need = len + (f->body.len ? 1 : 0);
        if (!text || f->body.len + need > OPS_FTS_BODY_MAX)
            break;
        if (f->body.len)
            strbuf_append(&f->body, "\n", 1);
        strbuf_append(&f->body, text, len);
    }
    sqlite3_reset(f->obs);
    if (f->body.failed)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    sqlite3_bind_int64(f->del, 1, entity_id);
    rc = sqlite3_step(f->del);
    sqlite3_reset(f->del);
    if (rc != SQLITE_DONE)
        return cx_error_set(err, CX_EIO, "memory database: full-text delete: %s",
                            sqlite3_errmsg(f->db));
    sqlite3_bind_int64(f->ins, 1, entity_id);
    sqlite3_bind_text(f->ins, 2, f->body.len ? f->body.data : "", (int)f->body.len,
                      SQLITE_STATIC);
    rc = sqlite3_step(f->ins);
    sqlite3_reset(f->ins);
    sqlite3_clear_bindings(f->ins);
    if (rc != SQLITE_DONE)
        return cx_error_set(err, CX_EIO, "memory database: full-text insert: %s",
                            sqlite3_errmsg(f->db));
    return 0;
}

int ops_fts_rebuild(sqlite3 *db, const char *scope, int64_t *rows, cx_error *err)
{
    *rows = 0;
    int rc;
    if (!scope && (rc = ops_exec(db, "DELETE FROM entities_fts", err)) < 0)
        return rc;
    ops_fts f;
    if ((rc = ops_fts_init(&f, db, err)) < 0)
        return rc;
    sqlite3_stmt *st;
    const char *sql = scope ? "SELECT id FROM entities WHERE scope = ? ORDER BY id"
                            : "SELECT id FROM entities ORDER BY id";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        ops_fts_free(&f);
        return cx_error_set(err, CX_EIO, "memory database: %s", sqlite3_errmsg(db));
    }
    if (scope)
        sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    rc = 0;
    int step;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        rc = ops_fts_put(&f, sqlite3_column_int64(st, 0), err);
        if (rc == 0)
            (*rows)++;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = cx_error_set(err, CX_EIO, "memory database: reading entities: %s",
                          sqlite3_errmsg(db));
    sqlite3_finalize(st);
    ops_fts_free(&f);
    return rc;
}

/* ---- checkpoints ------------------------------------------------------- */

static int wal_checkpoint(sqlite3 *db, int64_t v[3], cx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, NULL) != SQLITE_OK)
        return cx_error_set(err, CX_EIO, "memory database: checkpoint: %s", sqlite3_errmsg(db));
    int rc = sqlite3_step(st);
    for (int i = 0; i < 3; i++)
        v[i] = rc == SQLITE_ROW ? sqlite3_column_int64(st, i) : -1;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return cx_error_set(err, CX_EIO, "memory database: checkpoint: %s", sqlite3_errmsg(db));
    return 0;
}

int ops_checkpoint(sqlite3 *db, json_t **out, cx_error *err)
{
    *out = NULL;
    int64_t v[3];
    int rc = wal_checkpoint(db, v, err);
    if (rc < 0)
        return rc;
    char at[40];
    time_format_rfc3339(time_now_ms(), at, sizeof at);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO meta(key, value) VALUES ('last_checkpoint_at', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, at, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            log_warn("memory", "cannot record the checkpoint time: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        /* the record itself went to the WAL: fold it in as well */
        int64_t again[3];
        wal_checkpoint(db, again, NULL);
    }
    *out = json_pack("{s:b, s:I, s:I, s:s}", "busy", v[0] != 0, "wal_frames", (json_int_t)v[1],
                     "checkpointed", (json_int_t)v[2], "at", at);
    return 0;
}

/* ---- the running store ------------------------------------------------ */

void ops_quiesce(const memops_ctx *ctx)
{
    if (ctx->store)
        memstore_quiesce(ctx->store);
}

void ops_resume(const memops_ctx *ctx, json_t *res)
{
    if (!ctx->store)
        return;
    cx_error e = {0};
    if (memstore_resume(ctx->store, &e) < 0) {
        ops_problem(res, "the memory store did not reopen: %s", e.msg);
        log_error("memory", "the memory store did not reopen after %s: %s",
                  json_string_value(json_object_get(res, "operation")), e.msg);
        json_object_set_new(res, "store_resumed", json_false());
        return;
    }
    json_object_set_new(res, "store_resumed", json_true());
}
