/* state.db: open, check, migrate; tokens and the audit trail.
 *
 * Durability over speed: WAL with synchronous=FULL, since every write here is
 * something an operator was told succeeded (a token they were shown, an
 * audit entry). The rates are tiny, so the fsync cost never shows. */
#include "server/state.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"
#include "core/util.h"

struct state_db {
    sqlite3 *sql;
    char *path;
    bool commit_failed; /* commit_open_transaction lost someone else's writes */
};

/* Append only: a migration, once released, never changes. */
static const char *const migrations[] = {
    /* 1: tokens and audit */
    "CREATE TABLE tokens ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  role TEXT NOT NULL CHECK (role IN ('viewer','operator','admin')),"
    "  hash BLOB NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL,"
    "  last_used_at INTEGER,"
    "  revoked_at INTEGER);"
    "CREATE TABLE audit ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  ts INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  target TEXT,"
    "  details TEXT);"
    "CREATE INDEX audit_ts ON audit(ts);",
    /* 2: conversations, their messages, the message journal, dead letters */
    "CREATE TABLE conversations ("
    "  id TEXT PRIMARY KEY,"
    "  state TEXT NOT NULL CHECK (state IN ('active','completed','timed-out','cancelled')),"
    "  created_at INTEGER NOT NULL,"
    "  last_activity_at INTEGER NOT NULL,"
    "  message_count INTEGER NOT NULL DEFAULT 0,"
    "  participants TEXT NOT NULL DEFAULT '[]');"
    "CREATE INDEX conversations_activity ON conversations(state, last_activity_at);"
    "CREATE TABLE messages ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  conversation_id TEXT NOT NULL,"
    "  message_id TEXT NOT NULL,"
    "  reply_with TEXT,"
    "  in_reply_to TEXT,"
    "  sender TEXT NOT NULL,"
    "  receiver TEXT,"
    "  performative TEXT NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  body TEXT NOT NULL);"
    "CREATE INDEX messages_conversation ON messages(conversation_id, seq);"
    "CREATE INDEX messages_id ON messages(message_id);"
    "CREATE INDEX messages_reply_with ON messages(reply_with);"
    "CREATE TABLE journal ("
    "  message_id TEXT NOT NULL,"
    "  agent TEXT NOT NULL,"
    "  body TEXT NOT NULL,"
    "  accepted_at INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 1,"
    "  PRIMARY KEY (message_id, agent));"
    "CREATE TABLE dead_letters ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  message_id TEXT NOT NULL,"
    "  agent TEXT,"
    "  reason TEXT NOT NULL,"
    "  detail TEXT,"
    "  failed_at INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  body TEXT NOT NULL);"
    "CREATE INDEX dead_letters_agent ON dead_letters(agent, id);",
};
#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

static const char *const role_names[] = {"none", "viewer", "operator", "admin"};

const char *token_role_name(token_role role)
{
    return (unsigned)role <= TOKEN_ROLE_ADMIN ? role_names[role] : "none";
}

token_role token_role_parse(const char *name)
{
    for (int r = TOKEN_ROLE_VIEWER; r <= TOKEN_ROLE_ADMIN; r++)
        if (name && strcmp(name, role_names[r]) == 0)
            return (token_role)r;
    return TOKEN_ROLE_NONE;
}

bool token_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > TOKEN_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

void token_hash(const char *secret, uint8_t hash[TOKEN_HASH_LEN])
{
    sha256(secret, strlen(secret), hash);
}

static int sql_error(state_db *db, cx_error *err, const char *what)
{
    return cx_error_set(err, CX_EIO, "state database %s: %s failed: %s", db->path, what,
                        sqlite3_errmsg(db->sql));
}

static int exec_sql(state_db *db, const char *sql, cx_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db->sql, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cx_error_set(err, CX_EIO, "state database %s: %s", db->path, msg ? msg : "error");
        sqlite3_free(msg);
        return CX_EIO;
    }
    return 0;
}

/* A write the operator is told about must not wait for the router's group
 * commit (router.c keeps a transaction open within a loop iteration). */
static void commit_open_transaction(state_db *db)
{
    if (sqlite3_get_autocommit(db->sql))
        return;
    if (exec_sql(db, "COMMIT", NULL) < 0) {
        sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
        db->commit_failed = true;
    }
}

bool state_take_commit_failure(state_db *db)
{
    bool failed = db->commit_failed;
    db->commit_failed = false;
    return failed;
}

static int query_int(state_db *db, const char *sql, int64_t *out, cx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_error(db, err, "query");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : sql_error(db, err, "query");
}

int state_schema_version(state_db *db)
{
    int64_t v = 0;
    if (query_int(db, "SELECT COALESCE(MAX(version),0) FROM schema_migrations", &v, NULL) < 0)
        return -1;
    return (int)v;
}

static int migrate(state_db *db, cx_error *err)
{
    int rc = exec_sql(db,
                      "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
                      err);
    if (rc < 0)
        return rc;
    int current = state_schema_version(db);
    if (current < 0)
        return sql_error(db, err, "reading the schema version");
    if (current > MIGRATION_COUNT)
        return cx_error_set(err, CX_EIO,
                            "state database %s has schema version %d, newer than this caxton "
                            "(%d): it was written by a newer release; run that release or "
                            "restore a backup",
                            db->path, current, MIGRATION_COUNT);
    for (int v = current + 1; v <= MIGRATION_COUNT; v++) {
        char record[128];
        snprintf(record, sizeof record,
                 "INSERT INTO schema_migrations(version, applied_at) VALUES (%d, %llu)", v,
                 (unsigned long long)time_now_ms());
        if ((rc = exec_sql(db, "BEGIN IMMEDIATE", err)) < 0)
            return rc;
        if ((rc = exec_sql(db, migrations[v - 1], err)) < 0 ||
            (rc = exec_sql(db, record, err)) < 0) {
            exec_sql(db, "ROLLBACK", NULL);
            return cx_error_wrap(err, "migration %d", v);
        }
        if ((rc = exec_sql(db, "COMMIT", err)) < 0)
            return rc;
    }
    return 0;
}

static int quick_check(state_db *db, cx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK)
        return sql_error(db, err, "integrity check");
    int rc = sqlite3_step(st);
    const char *result = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (!result || strcmp(result, "ok") != 0) {
        cx_error_set(err, CX_EIO,
                     "state database %s failed its integrity check: %s (restore it from a "
                     "backup or move it aside to start empty)",
                     db->path, result ? result : sqlite3_errmsg(db->sql));
        sqlite3_finalize(st);
        return CX_EIO;
    }
    sqlite3_finalize(st);
    return 0;
}

state_db *state_open(const char *path, cx_error *err)
{
    state_db *db = calloc(1, sizeof *db);
    if (!db || !(db->path = str_dup(path))) {
        free(db);
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &db->sql, flags, NULL) != SQLITE_OK) {
        cx_error_set(err, CX_EIO, "cannot open state database %s: %s", path,
                     db->sql ? sqlite3_errmsg(db->sql) : "out of memory");
        state_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db->sql, 5000);
    if (exec_sql(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON",
                 err) < 0 ||
        quick_check(db, err) < 0 || migrate(db, err) < 0) {
        state_close(db);
        return NULL;
    }
    return db;
}

void state_close(state_db *db)
{
    if (!db)
        return;
    sqlite3_close(db->sql);
    free(db->path);
    free(db);
}

struct sqlite3 *state_sqlite(state_db *db)
{
    return db->sql;
}

int state_check(state_db *db, cx_error *err)
{
    int64_t v;
    return query_int(db, "SELECT COUNT(*) FROM schema_migrations", &v, err);
}

static void read_token_row(sqlite3_stmt *st, token_record *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(t->name, sizeof t->name, "%s", (const char *)sqlite3_column_text(st, 1));
    t->role = token_role_parse((const char *)sqlite3_column_text(st, 2));
    if (sqlite3_column_bytes(st, 3) == TOKEN_HASH_LEN)
        memcpy(t->hash, sqlite3_column_blob(st, 3), TOKEN_HASH_LEN);
    t->created_at_ms = (uint64_t)sqlite3_column_int64(st, 4);
    t->last_used_at_ms = (uint64_t)sqlite3_column_int64(st, 5);
    t->revoked_at_ms = (uint64_t)sqlite3_column_int64(st, 6);
}

#define TOKEN_COLUMNS "id, name, role, hash, created_at, last_used_at, revoked_at"

int token_generate(const char *name, token_role role, token_record *out,
                   char secret[TOKEN_SECRET_LEN + 1], cx_error *err)
{
    uint8_t raw[32], id_raw[4];
    int rc;
    if ((rc = random_bytes(raw, sizeof raw, err)) < 0 ||
        (rc = random_bytes(id_raw, sizeof id_raw, err)) < 0)
        return rc;
    memset(out, 0, sizeof *out);
    memcpy(secret, "cxt_", 4);
    hex_encode(raw, sizeof raw, secret + 4);
    memcpy(out->id, "tok_", 4);
    hex_encode(id_raw, sizeof id_raw, out->id + 4);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->role = role;
    out->created_at_ms = time_now_ms();
    token_hash(secret, out->hash);
    memset(raw, 0, sizeof raw);
    return 0;
}

int state_token_insert(state_db *db, const token_record *out, cx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql,
                           "INSERT INTO tokens(id, name, role, hash, created_at) "
                           "VALUES (?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_error(db, err, "token insert");
    sqlite3_bind_text(st, 1, out->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, out->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, token_role_name(out->role), -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, out->hash, TOKEN_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)out->created_at_ms);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_error(db, err, "token insert");
    commit_open_transaction(db);
    return 0;
}

int state_token_create(state_db *db, const char *name, token_role role, token_record *out,
                       char secret[TOKEN_SECRET_LEN + 1], cx_error *err)
{
    int rc = token_generate(name, role, out, secret, err);
    return rc < 0 ? rc : state_token_insert(db, out, err);
}

int state_token_count_active(state_db *db, token_role role, int64_t *count, cx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT COUNT(*) FROM tokens WHERE role = ? AND revoked_at IS NULL", -1,
                           &st, NULL) != SQLITE_OK)
        return sql_error(db, err, "token count");
    sqlite3_bind_text(st, 1, token_role_name(role), -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *count = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : sql_error(db, err, "token count");
}

int state_token_foreach(state_db *db, int (*fn)(const token_record *, void *), void *arg,
                        cx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT " TOKEN_COLUMNS " FROM tokens ORDER BY created_at, id", -1,
                           &st, NULL) != SQLITE_OK)
        return sql_error(db, err, "token list");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        token_record t;
        read_token_row(st, &t);
        if (fn(&t, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_error(db, err, "token list");
}

int state_token_revoke(state_db *db, const char *id, token_record *out, cx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql,
                           "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? "
                           "RETURNING " TOKEN_COLUMNS,
                           -1, &st, NULL) != SQLITE_OK)
        return sql_error(db, err, "token revoke");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)time_now_ms());
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_token_row(st, out);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_error(db, err, "token revoke");
    if (out->id[0] == '\0')
        return cx_error_set(err, CX_ENOTFOUND,
                            "no token with id '%s' (list them with 'caxton token list')", id);
    commit_open_transaction(db);
    return 0;
}

int state_token_touch(state_db *db, const char *id, uint64_t used_at_ms, cx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql, "UPDATE tokens SET last_used_at = ? WHERE id = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return sql_error(db, err, "token touch");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)used_at_ms);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_error(db, err, "token touch");
}

int state_token_count(state_db *db, int64_t *count, cx_error *err)
{
    return query_int(db, "SELECT COUNT(*) FROM tokens", count, err);
}

int state_audit_append(state_db *db, const char *actor, const char *action, const char *target,
                       json_t *details, cx_error *err)
{
    char *text = details ? json_dumps(details, JSON_COMPACT) : NULL;
    json_decref(details);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql,
                           "INSERT INTO audit(ts, actor, action, target, details) "
                           "VALUES (?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        free(text);
        return sql_error(db, err, "audit append");
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)time_now_ms());
    sqlite3_bind_text(st, 2, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, action, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, target, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, text, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    free(text);
    if (rc != SQLITE_DONE)
        return sql_error(db, err, "audit append");
    commit_open_transaction(db);
    return 0;
}

int state_audit_json(state_db *db, uint64_t since_ms, uint64_t until_ms, size_t limit,
                     int64_t before_seq, json_t **out, int64_t *next_seq, cx_error *err)
{
    *out = NULL;
    *next_seq = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT seq, ts, actor, action, target, details FROM audit "
                           "WHERE ts >= ? AND ts <= ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_error(db, err, "audit query");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)since_ms);
    sqlite3_bind_int64(st, 2, until_ms ? (sqlite3_int64)until_ms : INT64_MAX);
    sqlite3_bind_int64(st, 3, before_seq > 0 ? before_seq : INT64_MAX);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)limit + 1);
    json_t *items = json_array();
    size_t n = 0;
    int rc;
    while (items && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        if (n == limit) {
            *next_seq = seq + 1;
            break;
        }
        char at[40];
        time_format_rfc3339((uint64_t)sqlite3_column_int64(st, 1), at, sizeof at);
        const char *details = (const char *)sqlite3_column_text(st, 5);
        json_t *d = details ? json_loads(details, 0, NULL) : NULL;
        json_array_append_new(
            items, json_pack("{s:I, s:s, s:s?, s:s?, s:s?, s:o}", "seq", (json_int_t)seq, "at", at,
                             "actor", (const char *)sqlite3_column_text(st, 2), "action",
                             (const char *)sqlite3_column_text(st, 3), "target",
                             (const char *)sqlite3_column_text(st, 4), "details",
                             d ? d : json_null()));
        n++;
    }
    sqlite3_finalize(st);
    if (!items)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    *out = items;
    return 0;
}
