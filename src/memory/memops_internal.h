/* Shared pieces of the memory operations (memops*.c): answers, arguments,
 * connections to the database file, file copies and replacement, and the
 * operations themselves, which memops.c dispatches by name. */
#ifndef CAXTON_MEMORY_MEMOPS_INTERNAL_H
#define CAXTON_MEMORY_MEMOPS_INTERNAL_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/util.h"
#include "memory/memops.h"

/* Problems listed in one answer; past it a last entry says how many more. */
#define OPS_PROBLEMS_MAX 20
/* Messages kept from one integrity or quick check. */
#define OPS_CHECK_MESSAGES_MAX 100
/* The full-text body of an entity: its observations, newest first. */
#define OPS_FTS_BODY_MAX (64u * 1024u)
/* Largest file import reads. */
#define OPS_IMPORT_MAX (2ull * 1024 * 1024 * 1024)

/* ---- answers ---------------------------------------------------------- */

/* {"operation": op, "ok": true} */
json_t *ops_result_new(const char *op);
/* Appends to "problems" and sets "ok" false. */
void ops_problem(json_t *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends to "warnings" (ok unchanged). */
void ops_warning(json_t *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t ops_problem_count(const json_t *res);
bool ops_is_ok(const json_t *res);
/* Sets key to value (stolen); NULL values are skipped. */
void ops_set(json_t *obj, const char *key, json_t *value);
/* A JSON string of text that may not be valid UTF-8 (bad bytes become '?'). */
json_t *ops_string(const char *text, size_t len);

/* ---- arguments -------------------------------------------------------- */

bool ops_arg_true(const json_t *args, const char *key);
/* The string value of key, or NULL (absent, null or not a string). */
const char *ops_arg_string(const json_t *args, const char *key);
/* Agent and scope names: 1..128 of [A-Za-z0-9._-]. */
bool ops_name_valid(const char *name, size_t max);
/* "agent:NAME", "workspace:NAME" or "global". */
bool ops_scope_valid(const char *scope);

/* ---- time ------------------------------------------------------------- */

/* 20260101T120000Z, or 20260101T120000.123Z with milliseconds. */
void ops_stamp(uint64_t epoch_ms, bool with_ms, char *buf, size_t size);
json_t *ops_time_json(uint64_t epoch_ms);
double ops_elapsed_s(uint64_t start_ns);

/* ---- files ------------------------------------------------------------ */

/* db_path + suffix ("-wal", "-shm", ".recovering"); NULL when out of memory. */
char *ops_sidecar(const char *path, const char *suffix);
/* Size of a regular file; false when it does not exist (or is not one). */
bool ops_file_size(const char *path, uint64_t *size);
uint64_t ops_size_or_zero(const char *path);
int ops_fsync_path(const char *path);
/* fsyncs the directory that holds path. */
int ops_fsync_parent(const char *path);
int ops_sha256_file(const char *path, char hex[65], uint64_t *bytes, cx_error *err);
/* Byte copy into a new file (never over an existing one), fsynced. */
int ops_copy_file(const char *src, const char *dst, mode_t mode, char hex[65], uint64_t *bytes,
                  cx_error *err);
int ops_ensure_backups_dir(const memops_ctx *ctx, cx_error *err);
/* Copies memory.db and its -wal, -shm and -journal files into
 * <backups_dir>/<prefix>-<stamp>/ with their sha256. *info = {dir, files}
 * ({dir: null} when there was nothing to copy). */
int ops_keep_aside(const memops_ctx *ctx, const char *prefix, json_t **info, cx_error *err);
/* Puts a finished database file in place of memory.db: fsync, remove the
 * stale -wal/-shm/-journal, rename, fsync the directory. */
int ops_install_db(const memops_ctx *ctx, const char *new_path, cx_error *err);

/* ---- databases -------------------------------------------------------- */

typedef enum ops_mode {
    OPS_READ,  /* the live connection, or the file read-only */
    OPS_WRITE, /* the live connection, or the file read-write */
    OPS_CHECK, /* always a fresh connection to the file, read-write (read-only if
                * it cannot be written), without the checkpoint on close */
} ops_mode;

typedef struct ops_db {
    sqlite3 *sql;
    bool owned;    /* opened here: close it */
    bool live;     /* the running store's connection */
    bool writable;
} ops_db;

/* Opens the memory database; on failure adds the reason to res's problems
 * ("no memory database at PATH", "...: file is not a database") and
 * returns -1. */
int ops_db_open(const memops_ctx *ctx, ops_mode mode, ops_db *db, json_t *res);
void ops_db_close(ops_db *db);
/* Opens a file and reads its schema; -1 with the reason in why. */
int ops_open_file(const char *path, bool write, bool create, sqlite3 **out, char *why,
                  size_t why_size);
/* Read-only, for reading what is left of a damaged file: also opens one
 * whose header counts more pages than the file has (a truncated file). */
int ops_open_damaged(const char *path, sqlite3 **out, char *why, size_t why_size);
int ops_exec(sqlite3 *db, const char *sql, cx_error *err);
bool ops_query_int(sqlite3 *db, const char *sql, int64_t *out);
bool ops_table_exists(sqlite3 *db, const char *name);
bool ops_has_dbstat(sqlite3 *db);
/* Runs "PRAGMA integrity_check(N)" or quick_check: the messages (empty when
 * the answer is "ok"); a check that stops on an error adds its message. */
json_t *ops_pragma_check(sqlite3 *db, bool full, bool *ok);
/* Creates the schema in an empty database (PRAGMA user_version set), or
 * applies the missing migrations; refuses a newer one. */
int ops_apply_schema(sqlite3 *db, cx_error *err);

/* Rebuilding full-text rows: name, type and the body of observations. */
typedef struct ops_fts {
    sqlite3 *db;
    sqlite3_stmt *obs, *del, *ins;
    strbuf body;
} ops_fts;
int ops_fts_init(ops_fts *f, sqlite3 *db, cx_error *err);
int ops_fts_put(ops_fts *f, int64_t entity_id, cx_error *err);
void ops_fts_free(ops_fts *f);
/* Rebuilds the rows of one scope prefix ("agent:x"), or all (NULL). */
int ops_fts_rebuild(sqlite3 *db, const char *scope, int64_t *rows, cx_error *err);

/* wal_checkpoint(TRUNCATE), recorded as meta last_checkpoint_at. *out gets
 * {busy, wal_frames, checkpointed, at}. */
int ops_checkpoint(sqlite3 *db, json_t **out, cx_error *err);

/* ---- the running store ------------------------------------------------ */

void ops_quiesce(const memops_ctx *ctx);
/* Resumes (when running) and reports; a failure is a problem. */
void ops_resume(const memops_ctx *ctx, json_t *res);

/* ---- operations --------------------------------------------------------- */

typedef int ops_fn(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err);

ops_fn memops_op_health;
ops_fn memops_op_integrity;
ops_fn memops_op_wal_status;
ops_fn memops_op_corruption;
ops_fn memops_op_recover;
ops_fn memops_op_restore;
ops_fn memops_op_backup;
ops_fn memops_op_export;
ops_fn memops_op_import;
ops_fn memops_op_reinitialize;
ops_fn memops_op_reindex;
ops_fn memops_op_cleanup;
ops_fn memops_op_optimize;
ops_fn memops_op_usage;
ops_fn memops_op_resources;
ops_fn memops_op_index_analysis;
ops_fn memops_op_analyze_queries;
ops_fn memops_op_performance;
ops_fn memops_op_slow_queries;
ops_fn memops_op_adjust_cache;

/* Restores a backup ("latest" or a path) over memory.db; the store must
 * already be quiesced. keep_prefix: copy the current files aside first into
 * <backups_dir>/<keep_prefix>-<stamp>/ (NULL: they were already). */
int memops_restore_files(const memops_ctx *ctx, const char *which, const char *keep_prefix,
                         bool verify_after, json_t *res);

#endif
