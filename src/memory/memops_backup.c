/* Backups of the memory database (the SQLite online backup, a sha256 beside
 * each, retention), restoring one, and starting over (reinitialize).
 *
 * Backups are named memory-YYYYMMDDTHHMMSSZ[-label].db, with milliseconds
 * (memory-YYYYMMDDTHHMMSS.mmmZ...) when a name of the same second exists;
 * only files of exactly that form are ever counted or deleted. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "memory/memops_internal.h"

#define BACKUP_LABEL_MAX 64
#define BACKUP_LIST_MAX 100000
/* Sort key: 14 digits of time, 3 of milliseconds, 1 for "named with ms". */
#define BACKUP_KEY_LEN 18

typedef struct backup_file {
    char *name;
    char key[BACKUP_KEY_LEN + 1];
} backup_file;

static bool all_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

static bool parse_backup_name(const char *name, char key[BACKUP_KEY_LEN + 1])
{
    if (!str_has_prefix(name, "memory-"))
        return false;
    const char *p = name + 7;
    if (strlen(p) < 16 || !all_digits(p, 8) || p[8] != 'T' || !all_digits(p + 9, 6))
        return false;
    memcpy(key, p, 8);
    memcpy(key + 8, p + 9, 6);
    p += 15;
    if (*p == '.') {
        if (!all_digits(p + 1, 3))
            return false;
        memcpy(key + 14, p + 1, 3);
        key[17] = '1';
        p += 4;
    } else {
        memcpy(key + 14, "000", 3);
        key[17] = '0';
    }
    key[BACKUP_KEY_LEN] = '\0';
    if (*p++ != 'Z')
        return false;
    size_t rest = strlen(p);
    if (rest < 3 || strcmp(p + rest - 3, ".db") != 0)
        return false;
    if (rest == 3)
        return true;
    if (*p != '-' || rest - 4 > BACKUP_LABEL_MAX || rest - 4 == 0)
        return false;
    char label[BACKUP_LABEL_MAX + 1];
    memcpy(label, p + 1, rest - 4);
    label[rest - 4] = '\0';
    return ops_name_valid(label, BACKUP_LABEL_MAX);
}

static int newest_first(const void *a, const void *b)
{
    const backup_file *x = a, *y = b;
    int c = strcmp(y->key, x->key);
    return c ? c : strcmp(y->name, x->name);
}

static void free_backups(backup_file *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i].name);
    free(items);
}

/* The regular files of backups_dir named like backups, newest first. */
static int list_backups(const char *dir, backup_file **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    size_t n = 0, cap = 0;
    backup_file *items = NULL;
    struct dirent *e;
    for (int seen = 0; seen < BACKUP_LIST_MAX && (e = readdir(d)) != NULL; seen++) {
        char key[BACKUP_KEY_LEN + 1];
        if (!parse_backup_name(e->d_name, key))
            continue;
        char *path = path_join(dir, e->d_name);
        struct stat st;
        bool regular = path && lstat(path, &st) == 0 && S_ISREG(st.st_mode);
        free(path);
        if (!regular)
            continue;
        if (n == cap) {
            size_t grow = cap ? cap * 2 : 16;
            backup_file *bigger = realloc(items, grow * sizeof *items);
            if (!bigger)
                break;
            items = bigger;
            cap = grow;
        }
        items[n].name = str_dup(e->d_name);
        if (!items[n].name)
            break;
        memcpy(items[n].key, key, sizeof key);
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(items, n, sizeof *items, newest_first);
    *out = items;
    *count = n;
    return 0;
}

char *memops_latest_backup(const char *backups_dir)
{
    if (!backups_dir)
        return NULL;
    backup_file *items;
    size_t n;
    if (list_backups(backups_dir, &items, &n) < 0 || n == 0) {
        free_backups(items, n);
        return NULL;
    }
    char *path = path_join(backups_dir, items[0].name);
    free_backups(items, n);
    return path;
}

/* Deletes backups beyond ctx->keep (never `fresh`, never anything that is not
 * a regular file named like a backup); returns the deleted names. */
static json_t *apply_retention(const memops_ctx *ctx, const char *fresh, json_t *res)
{
    json_t *deleted = json_array();
    if (ctx->keep <= 0)
        return deleted;
    backup_file *items;
    size_t n;
    if (list_backups(ctx->backups_dir, &items, &n) < 0) {
        ops_warning(res, "cannot list %s for retention: %s", ctx->backups_dir, strerror(errno));
        return deleted;
    }
    int64_t kept = 1; /* the fresh one */
    for (size_t i = 0; i < n; i++) {
        if (strcmp(items[i].name, fresh) == 0)
            continue;
        if (kept < ctx->keep) {
            kept++;
            continue;
        }
        char *path = path_join(ctx->backups_dir, items[i].name);
        char *sum = path ? ops_sidecar(path, ".sha256") : NULL;
        struct stat st;
        if (path && lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (unlink(path) == 0) {
                json_array_append_new(deleted, json_string(items[i].name));
                if (sum && lstat(sum, &st) == 0 && S_ISREG(st.st_mode))
                    unlink(sum);
            } else {
                ops_warning(res, "cannot delete the old backup %s: %s", path, strerror(errno));
            }
        }
        free(path);
        free(sum);
    }
    free_backups(items, n);
    if (json_array_size(deleted) > 0)
        ops_fsync_parent(ctx->backups_dir);
    return deleted;
}

/* True when a backup of the same second (any label) exists: a new one then
 * carries milliseconds, so it sorts after it. */
static bool second_taken(const char *dir, const char *stamp)
{
    backup_file *items;
    size_t n;
    bool taken = false;
    if (list_backups(dir, &items, &n) == 0)
        for (size_t i = 0; i < n && !taken; i++)
            taken = strncmp(items[i].name + 7, stamp, 15) == 0;
    free_backups(items, n);
    return taken;
}

/* A free name for a new backup: the second, then with milliseconds. */
static char *pick_backup_path(const memops_ctx *ctx, const char *label)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        char stamp[40], name[160];
        uint64_t now = time_now_ms();
        ops_stamp(now, false, stamp, sizeof stamp);
        if (attempt > 0 || second_taken(ctx->backups_dir, stamp))
            ops_stamp(now, true, stamp, sizeof stamp);
        snprintf(name, sizeof name, "memory-%s%s%s.db", stamp, label ? "-" : "",
                 label ? label : "");
        char *path = path_join(ctx->backups_dir, name);
        char *tmp = path ? ops_sidecar(path, ".tmp") : NULL;
        struct stat st;
        bool taken = !path || lstat(path, &st) == 0 || (tmp && lstat(tmp, &st) == 0);
        free(tmp);
        if (!taken)
            return path;
        free(path);
        if (attempt > 0)
            usleep(1000);
    }
    return NULL;
}

static void remove_db_files(const char *path)
{
    static const char *const suffixes[] = {"-journal", "-wal", "-shm"};
    unlink(path);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        char *p = ops_sidecar(path, suffixes[i]);
        if (p)
            unlink(p);
        free(p);
    }
}

/* The online backup into tmp; NULL on success, else why (static or in buf). */
static const char *online_backup(sqlite3 *src, const char *tmp, json_t *res, char *buf,
                                 size_t size)
{
    sqlite3 *dst = NULL;
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(buf, size, "cannot create %s: %s", tmp, dst ? sqlite3_errmsg(dst) : "no memory");
        sqlite3_close(dst);
        return buf;
    }
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        snprintf(buf, size, "%s", sqlite3_errmsg(dst));
        sqlite3_close(dst);
        return buf;
    }
    int rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        snprintf(buf, size, "copying the pages failed: %s", sqlite3_errstr(rc));
        sqlite3_close(dst);
        return buf;
    }
    /* a backup is one self-contained file: no WAL beside it */
    sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
    bool ok;
    json_t *msgs = ops_pragma_check(dst, false, &ok);
    json_object_set_new(res, "quick_check", ok ? json_string("ok") : json_copy(msgs));
    if (!ok)
        ops_warning(res, "the backup copies a damaged database: %s",
                    json_string_value(json_array_get(msgs, 0)));
    json_decref(msgs);
    if (sqlite3_close(dst) != SQLITE_OK) {
        snprintf(buf, size, "closing the copy failed");
        return buf;
    }
    return NULL;
}

static int do_backup(const memops_ctx *ctx, const char *label, bool emergency, json_t *res,
                     cx_error *err)
{
    if (label && !ops_name_valid(label, BACKUP_LABEL_MAX)) {
        char quoted[96];
        text_quote(label, quoted, sizeof quoted);
        return cx_error_set(err, CX_EINVAL,
                            "invalid backup label %s: use 1 to %d letters, digits, '.', '_' or '-'",
                            quoted, BACKUP_LABEL_MAX);
    }
    uint64_t start = time_monotonic_ns();
    cx_error e = {0};
    if (ops_ensure_backups_dir(ctx, &e) < 0) {
        ops_problem(res, "%s", e.msg);
        return 0;
    }
    json_object_set_new(res, "backups_dir", json_string(ctx->backups_dir));
    char why[1024] = "";
    const char *failed = NULL;
    char *path = pick_backup_path(ctx, label);
    char *tmp = path ? ops_sidecar(path, ".tmp") : NULL;
    if (!path || !tmp) {
        free(path);
        free(tmp);
        ops_problem(res, "cannot find a free backup name in %s", ctx->backups_dir);
        return 0;
    }
    json_t *scratch = ops_result_new("scratch");
    ops_db src;
    if (ops_db_open(ctx, OPS_READ, &src, scratch) < 0) {
        snprintf(why, sizeof why, "%s",
                 json_string_value(json_array_get(json_object_get(scratch, "problems"), 0)));
        failed = why;
    } else {
        json_object_set_new(res, "source", json_string(src.live ? "the running store's connection"
                                                                : "the database file"));
        failed = online_backup(src.sql, tmp, res, why, sizeof why);
        ops_db_close(&src);
    }
    json_decref(scratch);
    char hex[65] = "";
    uint64_t bytes = 0;
    if (!failed && (chmod(tmp, 0600) != 0 || ops_fsync_path(tmp) != 0)) {
        snprintf(why, sizeof why, "cannot sync %s: %s", tmp, strerror(errno));
        failed = why;
    }
    if (!failed && ops_sha256_file(tmp, hex, &bytes, &e) < 0) {
        snprintf(why, sizeof why, "%s", e.msg);
        failed = why;
    }
    if (!failed && rename(tmp, path) != 0) {
        snprintf(why, sizeof why, "cannot rename %s: %s", tmp, strerror(errno));
        failed = why;
    }
    if (failed) {
        remove_db_files(tmp);
        free(tmp);
        free(path);
        if (!emergency) {
            ops_problem(res, "the backup failed: %s", failed);
            return 0;
        }
        /* an emergency backup of a damaged database: keep the bytes */
        ops_warning(res, "the online backup failed (%s); the files were copied byte for byte",
                    failed);
        json_t *info = NULL;
        if (ops_keep_aside(ctx, "emergency", &info, &e) < 0) {
            ops_problem(res, "the emergency copy failed too: %s", e.msg);
            return 0;
        }
        if (json_array_size(json_object_get(info, "files")) == 0) {
            json_decref(info);
            ops_problem(res, "nothing to back up: %s", failed);
            return 0;
        }
        json_object_set_new(res, "method", json_string("raw-copy"));
        json_object_set_new(res, "raw_copy", info);
        json_object_set_new(res, "seconds", json_real(ops_elapsed_s(start)));
        return 0;
    }
    free(tmp);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char line[256];
    snprintf(line, sizeof line, "%s  %s\n", hex, base);
    char *sum_path = ops_sidecar(path, ".sha256");
    if (!sum_path || fs_write_atomic(sum_path, line, strlen(line), 0600, &e) < 0)
        ops_problem(res, "the backup is written but its checksum file is not: %s",
                    sum_path ? e.msg : "out of memory");
    if (ops_fsync_parent(path) != 0)
        ops_problem(res, "cannot sync %s: %s", ctx->backups_dir, strerror(errno));
    free(sum_path);
    json_object_set_new(res, "method", json_string("online"));
    json_object_set_new(res, "path", json_string(path));
    json_object_set_new(res, "bytes", json_integer((json_int_t)bytes));
    json_object_set_new(res, "sha256", json_string(hex));
    /* an emergency is no time to delete older backups: retention is left
     * to the regular ones */
    json_object_set_new(res, "deleted", emergency ? json_array() : apply_retention(ctx, base, res));
    json_object_set_new(res, "keep", json_integer((json_int_t)ctx->keep));
    json_object_set_new(res, "seconds", json_real(ops_elapsed_s(start)));
    free(path);
    return 0;
}

int memops_op_backup(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    bool emergency = strcmp(json_string_value(json_object_get(res, "operation")),
                            "emergency-backup") == 0;
    const char *label = ops_arg_string(args, "label");
    if (!label && emergency)
        label = "emergency";
    return do_backup(ctx, label, emergency, res, err);
}

int memops_backup(const memops_ctx *ctx, const char *label, json_t **result, cx_error *err)
{
    *result = NULL;
    if (!ctx || !ctx->db_path)
        return cx_error_set(err, CX_EINVAL, "memory backup: no database path");
    json_t *res = ops_result_new("backup");
    if (!res)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    int rc = do_backup(ctx, label, false, res, err);
    if (rc < 0) {
        json_decref(res);
        return rc;
    }
    *result = res;
    return 0;
}

/* ---- restore ------------------------------------------------------------ */

/* Compares the backup with the digest its .sha256 holds; absent is allowed. */
static int verify_sha(const char *path, json_t *res)
{
    char *sum_path = ops_sidecar(path, ".sha256");
    if (!sum_path)
        return -1;
    char *text = NULL;
    size_t len = 0;
    cx_error e = {0};
    int rc = fs_read_file(sum_path, 4096, &text, &len, &e);
    free(sum_path);
    if (rc == CX_ENOTFOUND) {
        json_object_set_new(res, "sha256", json_pack("{s:b, s:s}", "verified", 0, "note",
                                                     "no .sha256 file beside the backup"));
        return 0;
    }
    if (rc < 0) {
        ops_problem(res, "refusing to restore: %s", e.msg);
        return -1;
    }
    char expected[65];
    bool well_formed = len >= 64;
    for (size_t i = 0; well_formed && i < 64; i++) {
        char c = text[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        well_formed = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        expected[i] = c;
    }
    expected[64] = '\0';
    free(text);
    if (!well_formed) {
        ops_problem(res, "refusing to restore %s: its .sha256 file does not hold a sha256", path);
        return -1;
    }
    char actual[65];
    if (ops_sha256_file(path, actual, NULL, &e) < 0) {
        ops_problem(res, "refusing to restore: %s", e.msg);
        return -1;
    }
    if (strcmp(actual, expected) != 0) {
        ops_problem(res,
                    "refusing to restore %s: its sha256 is %s but its .sha256 file says %s (the "
                    "backup was changed or damaged)",
                    path, actual, expected);
        return -1;
    }
    json_object_set_new(res, "sha256", json_pack("{s:b, s:s}", "verified", 1, "value", actual));
    return 0;
}

/* Reads the backup read-only and checks it is a sound memory database. */
static int verify_backup_db(const char *path, json_t *res)
{
    sqlite3 *db;
    char why[PATH_MAX + 256];
    if (ops_open_file(path, false, false, &db, why, sizeof why) < 0) {
        ops_problem(res, "refusing to restore: %s", why);
        return -1;
    }
    int rc = -1;
    int64_t version = -1;
    bool ok = false;
    json_t *msgs = NULL;
    if (!ops_table_exists(db, "entities")) {
        ops_problem(res, "refusing to restore %s: it is not a memory database (no entities table)",
                    path);
    } else if (!ops_query_int(db, "PRAGMA user_version", &version) ||
               version > memstore_migration_count) {
        ops_problem(res,
                    "refusing to restore %s: its schema version %lld is newer than this "
                    "caxton's (%d)",
                    path, (long long)version, memstore_migration_count);
    } else {
        msgs = ops_pragma_check(db, true, &ok);
        if (!ok)
            ops_problem(res, "refusing to restore %s: it fails its integrity check: %s", path,
                        json_string_value(json_array_get(msgs, 0)));
        else
            rc = 0;
    }
    json_object_set_new(res, "integrity_check",
                        json_pack("{s:b, s:s, s:o*}", "ok", ok, "note",
                                  "the backup is always checked before a restore", "messages",
                                  msgs));
    sqlite3_close(db);
    return rc;
}

/* "latest" is the newest backup that passes its checks: a backup taken of
 * an already damaged database (an emergency one, say) must not stand in
 * the way of an older good one. The ones passed over are listed. */
static char *pick_latest_good(const memops_ctx *ctx, json_t *res)
{
    backup_file *items = NULL;
    size_t n = 0;
    if (!ctx->backups_dir || list_backups(ctx->backups_dir, &items, &n) < 0 || n == 0) {
        free_backups(items, n);
        ops_problem(res, "there is no backup in %s to restore",
                    ctx->backups_dir ? ctx->backups_dir : "(no backups directory)");
        return NULL;
    }
    json_t *skipped = json_array();
    char *chosen = NULL;
    for (size_t i = 0; i < n && !chosen; i++) {
        char *path = path_join(ctx->backups_dir, items[i].name);
        json_t *check = ops_result_new("check");
        if (path && verify_sha(path, check) == 0 && verify_backup_db(path, check) == 0) {
            chosen = path;
            json_object_set(res, "sha256", json_object_get(check, "sha256"));
            json_object_set(res, "integrity_check", json_object_get(check, "integrity_check"));
        } else {
            json_array_append_new(
                skipped, json_pack("{s:s, s:O*}", "backup", items[i].name, "problem",
                                   json_array_get(json_object_get(check, "problems"), 0)));
            free(path);
        }
        json_decref(check);
    }
    free_backups(items, n);
    if (json_array_size(skipped))
        json_object_set(res, "skipped_backups", skipped);
    if (!chosen)
        ops_problem(res, "none of the %zu backups in %s passes its checks; the newest: %s",
                    json_array_size(skipped), ctx->backups_dir,
                    json_string_value(json_object_get(json_array_get(skipped, 0), "problem"))
                        ?: "?");
    else if (json_array_size(skipped))
        ops_warning(res, "%zu newer backups failed their checks and were passed over",
                    json_array_size(skipped));
    json_decref(skipped);
    return chosen;
}

int memops_restore_files(const memops_ctx *ctx, const char *which, const char *keep_prefix,
                         bool verify_after, json_t *res)
{
    char *path = NULL;
    bool latest = strcmp(which, "latest") == 0;
    if (latest) {
        path = pick_latest_good(ctx, res);
        if (!path)
            return -1;
    } else {
        path = str_dup(which);
    }
    if (!path)
        return -1;
    json_object_set_new(res, "restored_from", json_string(path));
    struct stat st;
    int rc = -1;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        ops_problem(res, "refusing to restore: %s is not a readable file", path);
        goto out;
    }
    if (!latest && (verify_sha(path, res) < 0 || verify_backup_db(path, res) < 0))
        goto out;
    char *beside = ops_sidecar(path, "-wal");
    uint64_t wal_bytes = 0;
    if (beside && ops_file_size(beside, &wal_bytes) && wal_bytes > 0)
        ops_warning(res, "%s has a WAL beside it; only the main file is restored", path);
    free(beside);
    cx_error e = {0};
    if (keep_prefix) {
        json_t *info = NULL;
        if (ops_keep_aside(ctx, keep_prefix, &info, &e) < 0) {
            ops_problem(res, "refusing to restore: cannot keep the current files aside: %s",
                        e.msg);
            goto out;
        }
        json_object_set_new(res, "previous_files", info);
    }
    char *tmp = ops_sidecar(ctx->db_path, ".restoring");
    if (!tmp)
        goto out;
    remove_db_files(tmp);
    if (ops_copy_file(path, tmp, 0600, NULL, NULL, &e) < 0 || ops_install_db(ctx, tmp, &e) < 0) {
        ops_problem(res, "the restore failed: %s", e.msg);
        unlink(tmp);
        free(tmp);
        goto out;
    }
    free(tmp);
    rc = 0;
    if (verify_after) {
        sqlite3 *db;
        char why[PATH_MAX + 256];
        if (ops_open_file(ctx->db_path, false, false, &db, why, sizeof why) < 0) {
            ops_problem(res, "the restored database does not open: %s", why);
        } else {
            bool ok;
            json_t *msgs = ops_pragma_check(db, true, &ok);
            if (!ok)
                ops_problem(res, "the restored database fails its integrity check: %s",
                            json_string_value(json_array_get(msgs, 0)));
            json_object_set_new(res, "verified_after", json_boolean(ok));
            json_decref(msgs);
            sqlite3_close(db);
        }
    }
out:
    free(path);
    return rc;
}

int memops_op_restore(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    const char *which = ops_arg_string(args, "from_backup");
    if (!which && ops_arg_true(args, "from_backup"))
        which = "latest";
    if (!which || !*which)
        return cx_error_set(err, CX_EINVAL,
                            "memory restore needs --from-backup latest or --from-backup PATH");
    ops_quiesce(ctx);
    if (memops_restore_files(ctx, which, "before-restore", ops_arg_true(args, "verify_integrity"),
                             res) == 0)
        json_object_set_new(res, "message", json_string("restored the backup"));
    ops_resume(ctx, res);
    return 0;
}

/* ---- reinitialize ------------------------------------------------------- */

int memops_op_reinitialize(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    (void)err;
    if (!ops_arg_true(args, "yes")) {
        ops_problem(res, "this deletes every memory; run again with --yes");
        return 0;
    }
    json_object_set_new(res, "empty", json_true());
    uint64_t size;
    cx_error e = {0};
    if (ops_file_size(ctx->db_path, &size)) {
        json_t *backup = ops_result_new("backup");
        int rc = do_backup(ctx, "before-reinitialize", false, backup, &e);
        if (rc == 0 && ops_is_ok(backup)) {
            json_object_set_new(res, "backup", json_copy(json_object_get(backup, "path")));
        } else {
            /* a database the backup cannot read: keep its bytes instead */
            json_t *info = NULL;
            if (ops_keep_aside(ctx, "before-reinitialize", &info, &e) < 0) {
                ops_problem(res, "refusing to reinitialize: no backup could be taken: %s", e.msg);
                json_decref(backup);
                return 0;
            }
            ops_warning(res, "the online backup failed; the files were copied byte for byte");
            json_object_set_new(res, "backup", info);
        }
        json_decref(backup);
    }
    char *tmp = ops_sidecar(ctx->db_path, ".new");
    if (!tmp)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    ops_quiesce(ctx);
    remove_db_files(tmp);
    sqlite3 *db;
    char why[PATH_MAX + 256];
    if (ops_open_file(tmp, true, true, &db, why, sizeof why) < 0) {
        ops_problem(res, "cannot create a new database: %s", why);
    } else {
        int rc = ops_apply_schema(db, &e);
        if (rc == 0)
            rc = ops_exec(db, "PRAGMA journal_mode=WAL", &e);
        if (sqlite3_close(db) != SQLITE_OK && rc == 0)
            rc = cx_error_set(&e, CX_EIO, "closing %s failed", tmp);
        if (rc == 0)
            rc = ops_install_db(ctx, tmp, &e);
        if (rc < 0)
            ops_problem(res, "reinitialize failed: %s", e.msg);
        else
            json_object_set_new(res, "message",
                                json_string("the memory database was replaced by an empty one"));
    }
    remove_db_files(tmp);
    free(tmp);
    ops_resume(ctx, res);
    return 0;
}
