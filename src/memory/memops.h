/* Memory operations on the database files: the guide's health, integrity,
 * WAL, corruption, recovery, backup, export/import and maintenance commands.
 *
 * They run the same way in the server (POST /api/v1/memory/{op}, with the
 * running store: read-only operations use its connection, operations that
 * replace the files quiesce it, swap and resume) and offline in the CLI on a
 * stopped server's files (store == NULL).
 *
 * Every operation answers a JSON object with at least {"operation", "ok"}
 * ("ok": false = the CLI exits 1) and, when something is wrong,
 * "problems": [text...]. */
#ifndef CAXTON_MEMORY_MEMOPS_H
#define CAXTON_MEMORY_MEMOPS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "memory/memstore.h"

typedef struct memops_ctx {
    const char *db_path;      /* data/memory.db */
    const char *backups_dir;  /* backups/ */
    int64_t keep;             /* backups kept; older ones are deleted */
    memstore *store;          /* the running server's store, or NULL offline */
    const char *actor;        /* for reports: "cli-offline", the token name... */
} memops_ctx;

/* Runs `op` with its arguments (the CLI's flags as JSON, e.g.
 * {"full": true} for integrity-check --full). Unknown op: CX_ENOTFOUND.
 * Returns 0 with *result set even when the answer is "not ok"; a negative
 * code only when the operation could not run at all. */
int memops_run(const memops_ctx *ctx, const char *op, const json_t *args, json_t **result,
               cx_error *err);
/* The arguments each operation reads (booleans unless said otherwise):
 *   health-check {quick}            integrity-check {full, quick}
 *   wal-status {}                   corruption-analysis {export_report: path|true}
 *   recover {from_wal, backup_first, from_backup: "latest"|path|true, verify}
 *   restore {from_backup: "latest"|path, verify_integrity}
 *   backup, emergency-backup {label: [A-Za-z0-9._-]{1,64}}
 *   export {json: path}
 *   import {file: path, validate (check only, write nothing),
 *           merge: "skip"|"update"|"error" (default)}
 *   reinitialize {yes, empty}       reindex {full, agent: name, scope_aware, optimize}
 *   cleanup {vacuum, compact, scope_conflicts, agent: name} (none: compact and
 *           scope_conflicts)
 *   optimize, maintenance {indexes, background, auto_compact}
 *   usage {by_scope, detailed}      resource-usage {breakdown}
 *   index-analysis {fragmentation}  analyze-queries {optimize_suggestions}
 *   performance-metrics {}          slow-queries {threshold: "5s" or ms}
 *   adjust-cache {size: "256MB" | "+512MB" | "-128MB" | "+50%"}
 * Missing required arguments and malformed values are CX_EINVAL; the last
 * three need a running server (CX_EUNAVAIL offline). */

/* The operations memops_run knows, NULL-terminated, and whether one can run
 * on a stopped server's files. */
extern const char *const memops_names[];
bool memops_offline_capable(const char *op);

/* Backups: memory-YYYYMMDDTHHMMSSZ.db with a .sha256 beside it. */
int memops_backup(const memops_ctx *ctx, const char *label, json_t **result, cx_error *err);
/* The newest backup's path ("latest"), or NULL. */
char *memops_latest_backup(const char *backups_dir);

#endif
