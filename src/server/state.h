/* state.db: the server's own durable state (SQLite, WAL).
 *
 * Tokens and the audit trail live here now; conversations, the message
 * journal and dead letters join them as later parts land. The schema grows
 * only through the numbered migrations in state.c, each applied once inside
 * a transaction and recorded in schema_migrations. The connection belongs to
 * the event loop thread; nothing else touches it. */
#ifndef CAXTON_SERVER_STATE_H
#define CAXTON_SERVER_STATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

typedef struct state_db state_db;

typedef enum token_role {
    TOKEN_ROLE_NONE = 0,
    TOKEN_ROLE_VIEWER = 1,
    TOKEN_ROLE_OPERATOR = 2,
    TOKEN_ROLE_ADMIN = 3,
} token_role;

#define TOKEN_ID_LEN 12        /* "tok_" + 8 hex */
#define TOKEN_SECRET_LEN 68    /* "cxt_" + 64 hex */
#define TOKEN_HASH_LEN 32
#define TOKEN_NAME_MAX 64

typedef struct token_record {
    char id[TOKEN_ID_LEN + 1];
    char name[TOKEN_NAME_MAX + 1];
    token_role role;
    uint8_t hash[TOKEN_HASH_LEN];
    uint64_t created_at_ms;
    uint64_t last_used_at_ms; /* 0 = never */
    uint64_t revoked_at_ms;   /* 0 = active */
} token_record;

const char *token_role_name(token_role role);
token_role token_role_parse(const char *name); /* TOKEN_ROLE_NONE if unknown */
/* Names: 1..64 of [A-Za-z0-9._-], starting with a letter or digit. */
bool token_name_valid(const char *name);
/* SHA-256 of the secret text. */
void token_hash(const char *secret, uint8_t hash[TOKEN_HASH_LEN]);

/* Opens (creating) the database, checks it (quick_check) and migrates it. */
state_db *state_open(const char *path, cx_error *err);
void state_close(state_db *db);
int state_schema_version(state_db *db);
/* The connection, for the parts that keep their own tables here (the
 * router). Loop thread only, like everything in this file. */
struct sqlite3 *state_sqlite(state_db *db);
/* True (once) when a write here had to commit a transaction the router had
 * open and that commit failed: the router's writes of that moment are lost. */
bool state_take_commit_failure(state_db *db);
/* A cheap liveness probe of the database for /health/deep. */
int state_check(state_db *db, cx_error *err);

/* Makes a new token (id, secret, hash) without storing it. */
int token_generate(const char *name, token_role role, token_record *out,
                   char secret[TOKEN_SECRET_LEN + 1], cx_error *err);
int state_token_insert(state_db *db, const token_record *token, cx_error *err);
/* Generates and stores; `secret` receives the plain token (shown once). */
int state_token_create(state_db *db, const char *name, token_role role, token_record *out,
                       char secret[TOKEN_SECRET_LEN + 1], cx_error *err);
/* Tokens of a role that are not revoked. */
int state_token_count_active(state_db *db, token_role role, int64_t *count, cx_error *err);
/* Calls fn for every token, oldest first. Stops early if fn returns non-zero. */
int state_token_foreach(state_db *db, int (*fn)(const token_record *, void *), void *arg,
                        cx_error *err);
int state_token_revoke(state_db *db, const char *id, token_record *out, cx_error *err);
int state_token_touch(state_db *db, const char *id, uint64_t used_at_ms, cx_error *err);
/* Number of tokens ever created (revoked included). */
int state_token_count(state_db *db, int64_t *count, cx_error *err);

/* Appends to the audit trail: who (token name or "system"), action
 * ("token.create"), target, and details (stolen; may be NULL). */
int state_audit_append(state_db *db, const char *actor, const char *action, const char *target,
                       json_t *details, cx_error *err);

/* Audit entries with since_ms <= ts <= until_ms (0 = open), newest first,
 * below before_seq (0 = from the newest). *next_seq is the cursor for the
 * next page, 0 when there is none. */
int state_audit_json(state_db *db, uint64_t since_ms, uint64_t until_ms, size_t limit,
                     int64_t before_seq, json_t **out, int64_t *next_seq, cx_error *err);

#endif
