/* The token cache behind auth_check(). See auth.h. */
#include "api/auth.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"

#define TOUCH_INTERVAL_MS 60000

typedef struct cached_token {
    token_record record;
    uint64_t last_touch_ms;
} cached_token;

static struct {
    pthread_rwlock_t lock;
    cached_token *tokens;
    size_t count, cap;
} cache = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static int cache_add(const token_record *t, void *arg)
{
    (void)arg;
    if (cache.count == cache.cap) {
        size_t cap = cache.cap ? cache.cap * 2 : 16;
        cached_token *grown = realloc(cache.tokens, cap * sizeof *grown);
        if (!grown)
            return CX_ENOMEM;
        cache.tokens = grown;
        cache.cap = cap;
    }
    cache.tokens[cache.count].record = *t;
    cache.tokens[cache.count].last_touch_ms = t->last_used_at_ms;
    cache.count++;
    return 0;
}

int auth_load(state_db *db, cx_error *err)
{
    pthread_rwlock_wrlock(&cache.lock);
    cache.count = 0;
    int rc = state_token_foreach(db, cache_add, NULL, err);
    pthread_rwlock_unlock(&cache.lock);
    return rc;
}

void auth_upsert(const token_record *token)
{
    pthread_rwlock_wrlock(&cache.lock);
    size_t i = 0;
    while (i < cache.count && strcmp(cache.tokens[i].record.id, token->id) != 0)
        i++;
    if (i < cache.count)
        cache.tokens[i].record = *token;
    else
        cache_add(token, NULL);
    pthread_rwlock_unlock(&cache.lock);
}

void auth_free(void)
{
    pthread_rwlock_wrlock(&cache.lock);
    free(cache.tokens);
    cache.tokens = NULL;
    cache.count = cache.cap = 0;
    pthread_rwlock_unlock(&cache.lock);
}

/* "Bearer <secret>" with the secret of the expected shape. */
static const char *bearer_secret(const char *header)
{
    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    const char *secret = header + 7;
    while (*secret == ' ')
        secret++;
    size_t len = strlen(secret);
    while (len > 0 && secret[len - 1] == ' ')
        len--;
    return len == TOKEN_SECRET_LEN ? secret : NULL;
}

int auth_check(const char *header, auth_identity *who, bool *touch, cx_error *err)
{
    *touch = false;
    if (!header)
        return cx_error_set(err, CX_EAUTH,
                            "this endpoint needs a token: send 'Authorization: Bearer <token>' "
                            "(the first admin token is in the data dir at tokens/admin.token)");
    const char *secret = bearer_secret(header);
    if (!secret)
        return cx_error_set(err, CX_EAUTH,
                            "malformed Authorization header: expected 'Bearer cxt_' followed "
                            "by 64 hex digits");
    char text[TOKEN_SECRET_LEN + 1];
    memcpy(text, secret, TOKEN_SECRET_LEN);
    text[TOKEN_SECRET_LEN] = '\0';
    uint8_t hash[TOKEN_HASH_LEN];
    token_hash(text, hash);

    int rc = cx_error_set(err, CX_EAUTH, "invalid token: it matches no token of this server");
    uint64_t now = time_now_ms();
    pthread_rwlock_rdlock(&cache.lock);
    cached_token *found = NULL;
    /* No early exit: the time taken does not depend on which entry matched. */
    for (size_t i = 0; i < cache.count; i++)
        if (mem_equal_ct(cache.tokens[i].record.hash, hash, TOKEN_HASH_LEN))
            found = &cache.tokens[i];
    if (found && found->record.revoked_at_ms) {
        rc = cx_error_set(err, CX_EAUTH, "token '%s' (%s) has been revoked",
                          found->record.name, found->record.id);
    } else if (found) {
        memcpy(who->token_id, found->record.id, sizeof who->token_id);
        memcpy(who->name, found->record.name, sizeof who->name);
        who->role = found->record.role;
        uint64_t last = __atomic_load_n(&found->last_touch_ms, __ATOMIC_RELAXED);
        if (now - last >= TOUCH_INTERVAL_MS || last > now) {
            /* Only one thread wins the right to record this use. */
            *touch = __atomic_compare_exchange_n(&found->last_touch_ms, &last, now, false,
                                                 __ATOMIC_RELAXED, __ATOMIC_RELAXED);
        }
        rc = 0;
    }
    pthread_rwlock_unlock(&cache.lock);
    return rc;
}

void auth_counts(int *active, int *revoked)
{
    *active = *revoked = 0;
    pthread_rwlock_rdlock(&cache.lock);
    for (size_t i = 0; i < cache.count; i++) {
        if (cache.tokens[i].record.revoked_at_ms)
            (*revoked)++;
        else
            (*active)++;
    }
    pthread_rwlock_unlock(&cache.lock);
}
