/* API authentication: bearer tokens checked against an in-memory copy of the
 * token table, so HTTP threads never wait on the database.
 *
 * The loop thread loads the table at start and updates it on create/revoke;
 * HTTP threads read it under a read lock. Secrets are compared as SHA-256
 * hashes with a constant-time comparison over every entry. */
#ifndef CAXTON_API_AUTH_H
#define CAXTON_API_AUTH_H

#include <stdbool.h>

#include "core/error.h"
#include "server/state.h"

typedef struct auth_identity {
    char token_id[TOKEN_ID_LEN + 1];
    char name[TOKEN_NAME_MAX + 1];
    token_role role;
} auth_identity;

/* Loop thread: replaces the cache with the database's tokens. */
int auth_load(state_db *db, cx_error *err);
/* Loop thread: reflect a create or revoke. */
void auth_upsert(const token_record *token);
void auth_free(void);

/* Any thread. Returns 0 with *who filled, or CX_EAUTH with a message saying
 * whether the token is malformed, unknown or revoked. When the token's
 * last-used time should be recorded, *touch is set true (at most once a
 * minute per token). */
int auth_check(const char *authorization_header, auth_identity *who, bool *touch,
               cx_error *err);
/* Counts for status: active and revoked tokens. */
void auth_counts(int *active, int *revoked);

#endif
