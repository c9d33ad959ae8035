/* The message router. See router.h.
 *
 * Each message given to an agent becomes a delivery: a sequence number, the
 * message, the agent, and an optional reply_by timer. The agent's queue holds
 * sequence numbers only; the runner asks for the message by number and
 * answers by number, so a delivery is the one place that knows who waits for
 * what. Deliveries live in memory; the journal in state.db is what survives a
 * crash, and router_recover() rebuilds deliveries from it.
 *
 * Writes to state.db go through one lazily opened transaction that the check
 * handle commits after every loop iteration (group commit). */
#include "messaging/router.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/registry.h"
#include "core/log.h"
#include "core/map.h"
#include "core/util.h"

#define SWEEP_MS 1000u
#define RETENTION_SWEEP_MS (3600u * 1000u)
#define MAX_PARTICIPANTS 64
#define MAX_INTERACTIONS 100000u
#define MAX_WAIT_MS (5u * 60u * 1000u) /* as POST /api/v1/messages?wait= allows */
#define SIMILAR_MAX 5

typedef struct delivery {
    uint64_t seq;
    acl_message msg;
    char agent[ACL_NAME_MAX + 1];
    bool journaled;
    uint64_t accepted_ms;
    uv_timer_t *reply_by; /* or NULL */
    router *r;
} delivery;

typedef struct router_waiter waiter;
struct router_waiter {
    struct router_waiter *next;
    router *r;
    char message_id[ACL_ID_MAX + 1];
    router_wait_fn fn;
    void *arg;
    uv_timer_t timer;
};

typedef struct commit_waiter {
    struct commit_waiter *next;
    void (*fn)(void *arg, bool committed);
    void *arg;
} commit_waiter;

enum {
    ST_MSG_INSERT,
    ST_CONV_GET,
    ST_CONV_INSERT,
    ST_CONV_UPDATE,
    ST_JOURNAL_INSERT,
    ST_JOURNAL_DELETE,
    ST_FIND_REPLY,
    ST_DEAD_INSERT,
    ST_HISTORY,
    ST_JOURNAL_HAS,
    ST_COUNT
};

static const char *const statements[ST_COUNT] = {
    "INSERT INTO messages(conversation_id, message_id, reply_with, in_reply_to, sender, "
    "receiver, performative, at, body) VALUES (?,?,?,?,?,?,?,?,?)",
    "SELECT participants, state FROM conversations WHERE id = ?",
    "INSERT INTO conversations(id, state, created_at, last_activity_at, message_count, "
    "participants) VALUES (?, ?, ?, ?, 1, ?)",
    "UPDATE conversations SET state = ?, last_activity_at = ?, message_count = message_count + 1, "
    "participants = ? WHERE id = ?",
    "INSERT INTO journal(message_id, agent, body, accepted_at, attempts) "
    "VALUES (?, ?, ?, ?, 1)",
    "DELETE FROM journal WHERE message_id = ? AND agent = ?",
    "SELECT conversation_id FROM messages WHERE (reply_with = ?1 OR message_id = ?1) "
    "AND (?2 = '' OR conversation_id = ?2) ORDER BY seq DESC LIMIT 1",
    "INSERT INTO dead_letters(message_id, agent, reason, detail, failed_at, attempts, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)",
    "SELECT body, length(body) FROM messages WHERE conversation_id = ? ORDER BY seq DESC LIMIT ?",
    "SELECT agent FROM journal WHERE message_id = ?1 AND (?2 IS NULL OR agent = ?2) LIMIT 1",
};

struct router {
    app *a;
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    uv_check_t commit;
    uv_timer_t sweep;
    uint64_t last_retention_ms;
    commit_waiter *commit_head, **commit_tail;
    map deliveries;     /* seq (hex) -> delivery */
    map waiters;        /* message_id -> waiter list */
    map interactions;   /* conversation_id '\x1f' interaction id -> acl_interaction */
    map round_robin;    /* capability -> counter (uint64_t *) */
    uint64_t next_seq;
    bool quiesced;
    bool closing;
    bool batch_lost;  /* a failed write rolled back this loop turn's transaction */
    uint64_t *batch_seqs; /* API deliveries made in this turn's transaction */
    size_t batch_count, batch_cap;
    uint64_t untracked_logged_ms;
    int open_handles; /* while closing */
    router_stats stats;
};

int route_strategy_parse(const char *text)
{
    if (!text || strcmp(text, "round-robin") == 0)
        return ROUTE_ROUND_ROBIN;
    if (strcmp(text, "least-loaded") == 0)
        return ROUTE_LEAST_LOADED;
    if (strcmp(text, "broadcast") == 0)
        return ROUTE_BROADCAST;
    return -1;
}

void route_outcome_clear(route_outcome *o)
{
    json_decref(o->routed_to);
    json_decref(o->reply);
    o->routed_to = NULL;
    o->reply = NULL;
}

/* ---- storage ---------------------------------------------------------------------------------- */

static int db_error(router *r, cx_error *err, const char *what)
{
    /* Some errors (disk full, I/O) roll the whole transaction back: the
     * writes acknowledged-to-be of this turn are gone too. */
    if (sqlite3_get_autocommit(r->db) && r->commit_head)
        r->batch_lost = true;
    log_error("router", "state database: %s failed: %s", what, sqlite3_errmsg(r->db));
    return cx_error_set(err, CX_EIO, "state database: %s failed: %s", what, sqlite3_errmsg(r->db));
}

static int tx_begin(router *r, cx_error *err)
{
    if (!sqlite3_get_autocommit(r->db))
        return 0;
    char *msg = NULL;
    if (sqlite3_exec(r->db, "BEGIN", NULL, NULL, &msg) != SQLITE_OK) {
        cx_error_set(err, CX_EIO, "state database: begin failed: %s", msg ? msg : "?");
        sqlite3_free(msg);
        return CX_EIO;
    }
    return 0;
}

static sqlite3_stmt *stmt(router *r, int which)
{
    sqlite3_stmt *st = r->st[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static void run_commit_waiters(router *r, bool committed)
{
    commit_waiter *w = r->commit_head;
    r->commit_head = NULL;
    r->commit_tail = &r->commit_head;
    while (w) {
        commit_waiter *next = w->next;
        w->fn(w->arg, committed);
        free(w);
        w = next;
    }
}

static delivery *delivery_get(const router *r, uint64_t seq);
static void delivery_free(router *r, delivery *d);

/* The turn's writes are lost: its API deliveries are taken back (nobody
 * started them yet: agents start on a later turn), so the clients' 500 is
 * true and nothing runs without its journal row. */
static void take_back_batch(router *r)
{
    for (size_t i = 0; i < r->batch_count; i++) {
        delivery *d = delivery_get(r, r->batch_seqs[i]);
        if (!d)
            continue;
        agent *ag = registry_find(r->a->agents, d->agent);
        if (ag)
            agent_withdraw(ag, d->seq);
        if (r->stats.journal_pending > 0)
            r->stats.journal_pending--;
        delivery_free(r, d);
    }
}

static void commit_now(router *r)
{
    bool committed = !r->batch_lost && !state_take_commit_failure(r->a->state);
    r->batch_lost = false;
    if (!sqlite3_get_autocommit(r->db)) {
        char *msg = NULL;
        if (sqlite3_exec(r->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
            log_error("router", "state database: commit failed: %s; the messages of this "
                      "moment were not stored", msg ? msg : "?");
            sqlite3_free(msg);
            sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
            committed = false;
        }
    }
    if (!committed)
        take_back_batch(r);
    r->batch_count = 0;
    run_commit_waiters(r, committed);
}

static void on_commit_check(uv_check_t *h)
{
    commit_now(h->data);
}

int router_after_commit(router *r, void (*fn)(void *arg, bool committed), void *arg)
{
    commit_waiter *w = calloc(1, sizeof *w);
    if (!w)
        return CX_ENOMEM;
    w->fn = fn;
    w->arg = arg;
    *r->commit_tail = w;
    r->commit_tail = &w->next;
    return 0;
}

static char *message_text(const acl_message *m)
{
    json_t *j = acl_message_to_json(m);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return text;
}

/* Adds sender and receiver to the participants list (bounded). */
static char *merge_participants(const char *current, const acl_message *m)
{
    json_t *list = current ? json_loads(current, 0, NULL) : NULL;
    if (!json_is_array(list)) {
        json_decref(list);
        list = json_array();
    }
    const char *names[2] = {m->sender, m->receiver};
    for (int i = 0; i < 2 && list; i++) {
        if (!names[i])
            continue;
        bool seen = false;
        size_t k;
        json_t *v;
        json_array_foreach(list, k, v) {
            if (json_is_string(v) && strcmp(json_string_value(v), names[i]) == 0)
                seen = true;
        }
        if (!seen && json_array_size(list) < MAX_PARTICIPANTS)
            json_array_append_new(list, json_string(names[i]));
    }
    char *text = list ? json_dumps(list, JSON_COMPACT) : NULL;
    json_decref(list);
    return text;
}

static bool is_final_answer(acl_performative p)
{
    return p == ACL_INFORM || p == ACL_FAILURE || p == ACL_REFUSE || p == ACL_NOT_UNDERSTOOD ||
           p == ACL_CONFIRM || p == ACL_DISCONFIRM || p == ACL_REJECT_PROPOSAL;
}

/* Stores the message in its conversation, creating the conversation. */
static int record_message(router *r, const acl_message *m, cx_error *err)
{
    if (tx_begin(r, err) < 0)
        return CX_EIO;
    uint64_t now = time_now_ms();
    char *body = message_text(m);
    if (!body)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    sqlite3_stmt *st = stmt(r, ST_MSG_INSERT);
    bind_text(st, 1, m->conversation_id);
    bind_text(st, 2, m->message_id);
    bind_text(st, 3, m->reply_with);
    bind_text(st, 4, m->in_reply_to);
    bind_text(st, 5, m->sender);
    bind_text(st, 6, m->receiver ? m->receiver : m->capability);
    bind_text(st, 7, acl_performative_name(m->performative));
    sqlite3_bind_int64(st, 8, (sqlite3_int64)now);
    sqlite3_bind_text(st, 9, body, -1, SQLITE_TRANSIENT);
    free(body);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_error(r, err, "message insert");

    const char *state = m->performative == ACL_CANCEL ? "cancelled"
                        : (m->in_reply_to && is_final_answer(m->performative)) ? "completed"
                                                                                 : "active";
    st = stmt(r, ST_CONV_GET);
    bind_text(st, 1, m->conversation_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        char *participants = merge_participants((const char *)sqlite3_column_text(st, 0), m);
        sqlite3_reset(st);
        st = stmt(r, ST_CONV_UPDATE);
        bind_text(st, 1, state);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)now);
        bind_text(st, 3, participants ? participants : "[]");
        bind_text(st, 4, m->conversation_id);
        free(participants);
    } else if (rc == SQLITE_DONE) {
        char *participants = merge_participants(NULL, m);
        st = stmt(r, ST_CONV_INSERT);
        bind_text(st, 1, m->conversation_id);
        bind_text(st, 2, state);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)now);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)now);
        bind_text(st, 5, participants ? participants : "[]");
        free(participants);
    } else {
        return db_error(r, err, "conversation lookup");
    }
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_error(r, err, "conversation update");
    return 0;
}

static int journal_insert(router *r, const acl_message *m, const char *who, cx_error *err)
{
    if (tx_begin(r, err) < 0)
        return CX_EIO;
    char *body = message_text(m);
    if (!body)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    sqlite3_stmt *st = stmt(r, ST_JOURNAL_INSERT);
    bind_text(st, 1, m->message_id);
    bind_text(st, 2, who);
    sqlite3_bind_text(st, 3, body, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)time_now_ms());
    free(body);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_CONSTRAINT)
        return cx_error_set(err, CX_EEXIST, "message '%s' is already waiting for an answer from "
                            "'%s'; a retry must wait for it or use a new message_id",
                            m->message_id, who);
    if (rc != SQLITE_DONE)
        return db_error(r, err, "journal insert");
    r->stats.journal_pending++;
    return 0;
}

/* The agent (any agent when who is NULL) that holds message_id unanswered,
 * copied into out; false when none. */
static bool journal_has(router *r, const char *message_id, const char *who, char *out,
                        size_t size)
{
    sqlite3_stmt *st = stmt(r, ST_JOURNAL_HAS);
    bind_text(st, 1, message_id);
    bind_text(st, 2, who);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found && out)
        snprintf(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    return found;
}

static void journal_delete(router *r, const char *message_id, const char *who)
{
    if (tx_begin(r, NULL) < 0)
        return;
    sqlite3_stmt *st = stmt(r, ST_JOURNAL_DELETE);
    bind_text(st, 1, message_id);
    bind_text(st, 2, who);
    if (sqlite3_step(st) != SQLITE_DONE)
        db_error(r, NULL, "journal delete");
    else if (sqlite3_changes(r->db) > 0 && r->stats.journal_pending > 0)
        r->stats.journal_pending--;
}

static void dead_letter_insert(router *r, const acl_message *m, const char *who,
                               const char *reason, const char *detail, int64_t attempts)
{
    if (tx_begin(r, NULL) < 0)
        return;
    char *body = message_text(m);
    sqlite3_stmt *st = stmt(r, ST_DEAD_INSERT);
    bind_text(st, 1, m->message_id);
    bind_text(st, 2, who);
    bind_text(st, 3, reason);
    bind_text(st, 4, detail);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)time_now_ms());
    sqlite3_bind_int64(st, 6, attempts);
    bind_text(st, 7, body ? body : "{}");
    free(body);
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_error(r, NULL, "dead letter insert");
        return;
    }
    r->stats.dead_lettered++;
    log_event(LOG_STREAM_AGENTS, LOG_WARN, "router",
              json_pack("{s:s, s:s?, s:s, s:s, s:s?}", "event", "dead_letter", "agent", who,
                        "message_id", m->message_id, "reason", reason, "detail", detail),
              "message %s dead-lettered: %s", m->message_id, reason);
}

/* ---- deliveries -------------------------------------------------------------------------------- */

static void seq_key(uint64_t seq, char key[24])
{
    snprintf(key, 24, "%llx", (unsigned long long)seq);
}

static delivery *delivery_get(const router *r, uint64_t seq)
{
    char key[24];
    seq_key(seq, key);
    return map_get(&r->deliveries, key);
}

static void free_timer(uv_handle_t *h)
{
    free(h);
}

static void delivery_free(router *r, delivery *d)
{
    char key[24];
    seq_key(d->seq, key);
    map_remove(&r->deliveries, key);
    if (d->reply_by) {
        uv_timer_stop(d->reply_by);
        uv_close((uv_handle_t *)d->reply_by, free_timer);
    }
    acl_message_clear(&d->msg);
    free(d);
}

const acl_message *router_message(const router *r, uint64_t seq)
{
    delivery *d = delivery_get(r, seq);
    return d ? &d->msg : NULL;
}

uint64_t router_accepted_ms(const router *r, uint64_t seq)
{
    delivery *d = delivery_get(r, seq);
    return d ? d->accepted_ms : 0;
}

static void on_reply_by(uv_timer_t *t)
{
    delivery *d = t->data;
    router *r = d->r;
    agent *ag = registry_find(r->a->agents, d->agent);
    uint64_t seq = d->seq;
    char agent_name[ACL_NAME_MAX + 1];
    snprintf(agent_name, sizeof agent_name, "%s", d->agent);
    if (ag)
        agent_withdraw(ag, seq);
    router_fail(r, seq, agent_name, "timeout",
                "no answer before the message's reply_by deadline", false);
}

static delivery *delivery_new(router *r, const acl_message *m, const char *agent_name)
{
    delivery *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    if (acl_message_copy(&d->msg, m) < 0) {
        free(d);
        return NULL;
    }
    d->r = r;
    d->seq = ++r->next_seq;
    d->accepted_ms = time_now_ms();
    snprintf(d->agent, sizeof d->agent, "%s", agent_name);
    char key[24];
    seq_key(d->seq, key);
    if (map_put(&r->deliveries, key, d, NULL) < 0) {
        acl_message_clear(&d->msg);
        free(d);
        return NULL;
    }
    if (m->reply_by_ms) {
        d->reply_by = malloc(sizeof *d->reply_by);
        if (d->reply_by) {
            uv_timer_init(r->a->loop, d->reply_by);
            d->reply_by->data = d;
            uint64_t now = time_now_ms();
            uv_timer_start(d->reply_by, on_reply_by,
                           m->reply_by_ms > now ? m->reply_by_ms - now : 0, 0);
        }
    }
    return d;
}

/* ---- waiters ------------------------------------------------------------------------------------ */

static void waiter_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Takes w out of its message's list and stops its timer. */
static void waiter_unlink(router *r, waiter *w)
{
    /* unlink */
    waiter *head = map_get(&r->waiters, w->message_id);
    waiter **pp = &head;
    while (*pp && *pp != w)
        pp = &(*pp)->next;
    if (*pp)
        *pp = w->next;
    if (head)
        map_put(&r->waiters, w->message_id, head, NULL);
    else
        map_remove(&r->waiters, w->message_id);
    r->stats.waiting--;
    uv_timer_stop(&w->timer);
}

static void waiter_finish(router *r, waiter *w, json_t *reply, int status)
{
    waiter_unlink(r, w);
    w->fn(reply, status, w->arg);
    uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

void router_wait_cancel(router *r, router_waiter *w)
{
    waiter_unlink(r, w);
    uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

static void on_wait_timeout(uv_timer_t *t)
{
    waiter *w = t->data;
    waiter_finish(w->r, w, NULL, 504);
}

int router_wait_reply(router *r, const char *message_id, uint64_t timeout_ms, router_wait_fn fn,
                      void *arg, router_waiter **handle, cx_error *err)
{
    if (r->closing)
        return cx_error_set(err, CX_EUNAVAIL, "the server is shutting down");
    /* No answer can exist yet: agents start queued messages from an idle
     * handle on a later loop turn than the commit this wait follows, and
     * answers the router gives at once are returned by router_submit. */
    waiter *w = calloc(1, sizeof *w);
    if (!w)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    w->r = r;
    snprintf(w->message_id, sizeof w->message_id, "%s", message_id);
    w->fn = fn;
    w->arg = arg;
    w->next = map_get(&r->waiters, message_id);
    if (map_put(&r->waiters, message_id, w, NULL) < 0) {
        free(w);
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    }
    uv_timer_init(r->a->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_wait_timeout, timeout_ms > MAX_WAIT_MS ? MAX_WAIT_MS : timeout_ms,
                   0);
    r->stats.waiting++;
    if (handle)
        *handle = w;
    return 0;
}

/* Returns how many waiters took the reply. */
static size_t notify_waiters(router *r, const char *message_id, const acl_message *reply)
{
    size_t n = 0;
    waiter *w;
    while ((w = map_get(&r->waiters, message_id)) != NULL) {
        json_t *j = acl_message_to_json(reply);
        waiter_finish(r, w, j, 200);
        json_decref(j);
        n++;
    }
    return n;
}

/* ---- interactions ------------------------------------------------------------------------------- */

static void interaction_key(const char *conversation, const char *id, char *key, size_t size)
{
    snprintf(key, size, "%s\x1f%s", conversation, id);
}

/* A tracked interaction. Finished ones stay until they expire, so a late
 * answer to them is refused as such. */
typedef struct tracked {
    acl_interaction it;
    uint64_t touched_ms;
    bool multi; /* broadcast: several agents answer the same request */
} tracked;

#define DONE_GRACE_MS 60000u /* finished interactions are remembered this long */

static void interactions_expire(router *r, uint64_t before_ms);

static void interaction_open(router *r, const acl_message *m, bool multi)
{
    acl_interaction it;
    if (!acl_interaction_start(m, &it))
        return;
    if (r->interactions.count >= MAX_INTERACTIONS)
        interactions_expire(r, time_now_ms() - DONE_GRACE_MS);
    if (r->interactions.count >= MAX_INTERACTIONS) {
        uint64_t now = time_now_ms();
        if (now - r->untracked_logged_ms > 60000u) {
            r->untracked_logged_ms = now;
            log_warn("router", "%u interactions are being tracked; protocol checks are skipped "
                     "for new ones until older ones finish or time out", MAX_INTERACTIONS);
        }
        r->stats.untracked++;
        return;
    }
    tracked *copy = malloc(sizeof *copy);
    if (!copy)
        return;
    copy->it = it;
    copy->touched_ms = time_now_ms();
    copy->multi = multi;
    char key[2 * ACL_ID_MAX + 4];
    interaction_key(m->conversation_id, m->reply_with ? m->reply_with : m->message_id, key,
                    sizeof key);
    void *old = NULL;
    if (map_put(&r->interactions, key, copy, &old) < 0)
        free(copy);
    free(old);
}

/* 0 when the reply fits (or is outside any tracked interaction). The
 * interaction is not changed: on success *t (when tracked) and *next say
 * what to store once the message is accepted (interaction_apply). */
static int interaction_check(router *r, const acl_message *m, char *reason, size_t size,
                             tracked **t, acl_interaction *next)
{
    *t = NULL;
    if (!m->in_reply_to)
        return 0;
    char key[2 * ACL_ID_MAX + 4];
    interaction_key(m->conversation_id, m->in_reply_to, key, sizeof key);
    tracked *found = map_get(&r->interactions, key);
    if (!found)
        return 0;
    *next = found->it;
    int rc = acl_interaction_advance(next, m, time_now_ms(), reason, size);
    if (rc == 0)
        *t = found;
    return rc;
}

static void interaction_apply(tracked *t, const acl_interaction *next)
{
    if (!t)
        return;
    t->it = *next;
    t->touched_ms = time_now_ms();
}

typedef struct expiry {
    uint64_t before_ms;      /* anything idle since before this */
    uint64_t done_before_ms; /* finished ones idle since before this */
    char **keys;
    size_t count, cap;
} expiry;

static int collect_expired(const char *key, void *value, void *arg)
{
    expiry *e = arg;
    const tracked *t = value;
    bool done_and_old = t->it.step == ACL_STEP_DONE && t->touched_ms < e->done_before_ms;
    if (t->touched_ms >= e->before_ms && !done_and_old)
        return 0;
    if (e->count == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        char **grown = realloc(e->keys, cap * sizeof *grown);
        if (!grown)
            return 1;
        e->keys = grown;
        e->cap = cap;
    }
    if ((e->keys[e->count] = str_dup(key)) != NULL)
        e->count++;
    return 0;
}

/* Forgets interactions idle since before before_ms, and finished ones idle
 * for DONE_GRACE_MS. */
static void interactions_expire(router *r, uint64_t before_ms)
{
    uint64_t now = time_now_ms();
    expiry e = {.before_ms = before_ms,
                .done_before_ms = now > DONE_GRACE_MS ? now - DONE_GRACE_MS : 0};
    map_foreach(&r->interactions, collect_expired, &e);
    for (size_t i = 0; i < e.count; i++) {
        free(map_remove(&r->interactions, e.keys[i]));
        free(e.keys[i]);
    }
    free(e.keys);
}

/* ---- replies ----------------------------------------------------------------------------------- */

/* Builds the answer to d's message from `from`. */
static int make_reply(const acl_message *orig, const char *from, acl_performative p,
                      json_t *content, acl_message *out)
{
    memset(out, 0, sizeof *out);
    if (acl_uuid_v4(out->message_id, NULL) < 0)
        return CX_EIO;
    out->performative = p;
    out->sender = str_dup(from);
    out->receiver = str_dup(orig->sender);
    out->content = content ? json_incref(content) : json_null();
    snprintf(out->conversation_id, sizeof out->conversation_id, "%s", orig->conversation_id);
    out->in_reply_to = str_dup(orig->reply_with ? orig->reply_with : orig->message_id);
    out->protocol = orig->protocol;
    out->priority = orig->priority;
    if (orig->language)
        out->language = str_dup(orig->language);
    if (orig->ontology)
        out->ontology = str_dup(orig->ontology);
    if (!out->sender || !out->receiver || !out->in_reply_to) {
        acl_message_clear(out);
        return CX_ENOMEM;
    }
    return 0;
}

static json_t *failure_content(const char *reason, const char *detail)
{
    return json_pack("{s:s, s:s}", "reason", reason, "detail", detail ? detail : "");
}

/* Records a reply and hands it on: to API waiters, or to the receiving
 * agent's queue. */
static void deliver_reply(router *r, const acl_message *orig, acl_message *reply)
{
    char reason[512];
    tracked *t = NULL;
    acl_interaction next;
    if (interaction_check(r, reply, reason, sizeof reason, &t, &next) < 0) {
        char key[2 * ACL_ID_MAX + 4];
        interaction_key(reply->conversation_id, reply->in_reply_to, key, sizeof key);
        tracked *it = map_get(&r->interactions, key);
        if (!it || !it->multi)
            log_event(LOG_STREAM_AGENTS, LOG_WARN, "router",
                      json_pack("{s:s, s:s, s:s}", "event", "protocol_violation", "agent",
                                reply->sender, "message_id", reply->message_id),
                      "reply from %s breaks its protocol: %s", reply->sender, reason);
    }
    interaction_apply(t, &next);
    cx_error err;
    if (record_message(r, reply, &err) < 0)
        log_error("router", "reply %s not stored: %s", reply->message_id, err.msg);
    r->stats.replied++;
    size_t taken = notify_waiters(r, orig->message_id, reply);
    /* An agent that waits for this reply (send_message) has it now; a copy
     * on its queue would only cost it a turn. */
    if (str_has_prefix(reply->receiver, "external:") || taken > 0)
        return;
    agent *to = registry_find(r->a->agents, reply->receiver);
    if (!to)
        return;
    delivery *d = delivery_new(r, reply, reply->receiver);
    if (d && agent_enqueue(to, &d->msg, d->seq, &err) < 0) {
        log_warn("router", "reply %s to %s not delivered: %s", reply->message_id,
                 reply->receiver, err.msg);
        delivery_free(r, d);
    }
}

static void finish_delivery(router *r, delivery *d)
{
    if (d->journaled)
        journal_delete(r, d->msg.message_id, d->agent);
    delivery_free(r, d);
}

int router_reply(router *r, uint64_t seq, acl_performative performative, json_t *content,
                 const char *agent_name)
{
    delivery *d = delivery_get(r, seq);
    if (!d)
        return CX_ENOTFOUND;
    acl_message reply;
    if (make_reply(&d->msg, agent_name, performative, content, &reply) < 0)
        return CX_ENOMEM;
    deliver_reply(r, &d->msg, &reply);
    acl_message_clear(&reply);
    finish_delivery(r, d);
    return 0;
}

int router_fail(router *r, uint64_t seq, const char *agent_name, const char *reason,
                const char *detail, bool dead_letter)
{
    delivery *d = delivery_get(r, seq);
    if (!d)
        return CX_ENOTFOUND;
    r->stats.failed++;
    if (dead_letter)
        dead_letter_insert(r, &d->msg, d->agent, reason, detail, 1);
    log_event(LOG_STREAM_AGENTS, LOG_ERROR, "router",
              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?}", "event", "message_failed", "agent",
                        d->agent, "message_id", d->msg.message_id, "conversation_id",
                        d->msg.conversation_id, "reason", reason, "detail", detail),
              "message %s to %s failed: %s%s%s", d->msg.message_id, d->agent, reason,
              detail ? ": " : "", detail ? detail : "");
    json_t *content = failure_content(reason, detail);
    acl_message reply;
    if (make_reply(&d->msg, agent_name, ACL_FAILURE, content, &reply) == 0) {
        deliver_reply(r, &d->msg, &reply);
        acl_message_clear(&reply);
    }
    json_decref(content);
    finish_delivery(r, d);
    return 0;
}

void router_done(router *r, uint64_t seq)
{
    delivery *d = delivery_get(r, seq);
    if (d)
        finish_delivery(r, d);
}

/* ---- submit ------------------------------------------------------------------------------------ */

typedef struct cap_pick {
    const char *capability;
    agent *choices[256];
    size_t count;
    const char *names[512]; /* every capability seen, for "similar" */
    size_t name_count;
} cap_pick;

static int collect_providers(agent *ag, void *arg)
{
    cap_pick *p = arg;
    const agent_def *def = agent_definition(ag);
    if (!def)
        return 0;
    for (size_t i = 0; i < def->capability_count; i++) {
        if (p->name_count < 512)
            p->names[p->name_count++] = def->capabilities[i];
        if (strcmp(def->capabilities[i], p->capability) == 0 && agent_accepting(ag) &&
            p->count < 256)
            p->choices[p->count++] = ag;
    }
    return 0;
}

static json_t *similar_capabilities(const cap_pick *p)
{
    json_t *list = json_array();
    for (size_t i = 0; i < p->name_count && json_array_size(list) < SIMILAR_MAX; i++) {
        const char *name = p->names[i];
        bool dup = false;
        size_t k;
        json_t *v;
        json_array_foreach(list, k, v) {
            if (strcmp(json_string_value(v), name) == 0)
                dup = true;
        }
        size_t limit = strlen(p->capability) / 3 + 2;
        bool close = text_edit_distance(name, p->capability, limit) <= limit ||
                     strstr(name, p->capability) || strstr(p->capability, name);
        if (!dup && close)
            json_array_append_new(list, json_string(name));
    }
    return list;
}

static size_t pick_least_loaded(agent *const *choices, size_t count)
{
    size_t best = 0, best_load = SIZE_MAX;
    for (size_t i = 0; i < count; i++) {
        size_t load = agent_queue_depth(choices[i]) + agent_in_flight(choices[i]);
        if (load < best_load) {
            best_load = load;
            best = i;
        }
    }
    return best;
}

static uint64_t next_round_robin(router *r, const char *capability)
{
    uint64_t *counter = map_get(&r->round_robin, capability);
    if (!counter) {
        counter = calloc(1, sizeof *counter);
        if (!counter || map_put(&r->round_robin, capability, counter, NULL) < 0) {
            free(counter);
            return 0;
        }
    }
    return (*counter)++;
}

/* Sets an immediate answer from the router itself (no-provider, protocol). */
static int immediate_reply(router *r, const acl_message *m, acl_performative p, json_t *content,
                           route_outcome *out)
{
    acl_message reply;
    int rc = make_reply(m, "caxton", p, content, &reply);
    json_decref(content);
    if (rc < 0)
        return rc;
    cx_error err;
    if (record_message(r, &reply, &err) < 0)
        log_error("router", "reply not stored: %s", err.msg);
    out->reply = acl_message_to_json(&reply);
    acl_message_clear(&reply);
    return 0;
}

/* Remembers an API delivery of this turn's transaction, to take it back if
 * the transaction is lost. */
static void batch_remember(router *r, uint64_t seq)
{
    if (r->batch_count == r->batch_cap) {
        size_t cap = r->batch_cap ? r->batch_cap * 2 : 64;
        uint64_t *grown = realloc(r->batch_seqs, cap * sizeof *grown);
        if (!grown)
            return;
        r->batch_seqs = grown;
        r->batch_cap = cap;
    }
    r->batch_seqs[r->batch_count++] = seq;
}

static int enqueue_to(router *r, const acl_message *m, agent *ag, bool journal, uint64_t *seq,
                      cx_error *err)
{
    /* Journal first: once queued, the message belongs to the agent. */
    if (journal) {
        int rc = journal_insert(r, m, agent_name(ag), err);
        if (rc < 0)
            return rc;
    }
    delivery *d = delivery_new(r, m, agent_name(ag));
    int rc = d ? agent_enqueue(ag, &d->msg, d->seq, err)
               : cx_error_set(err, CX_ENOMEM, "out of memory");
    if (rc < 0) {
        if (journal)
            journal_delete(r, m->message_id, agent_name(ag));
        if (d)
            delivery_free(r, d);
        return rc;
    }
    d->journaled = journal;
    *seq = d->seq;
    if (journal)
        batch_remember(r, d->seq);
    r->stats.delivered++;
    return 0;
}

/* Withdraws every delivery of the message that in_reply_to names. */
typedef struct cancel_scan {
    router *r;
    const char *target;
    uint64_t seqs[64];
    size_t count;
} cancel_scan;

static int find_cancelled(const char *key, void *value, void *arg)
{
    (void)key;
    cancel_scan *c = arg;
    delivery *d = value;
    const char *id = d->msg.reply_with ? d->msg.reply_with : d->msg.message_id;
    if ((strcmp(id, c->target) == 0 || strcmp(d->msg.message_id, c->target) == 0) &&
        c->count < 64)
        c->seqs[c->count++] = d->seq;
    return 0;
}

static void cancel_deliveries(router *r, const char *in_reply_to)
{
    cancel_scan c = {.r = r, .target = in_reply_to};
    map_foreach(&r->deliveries, find_cancelled, &c);
    for (size_t i = 0; i < c.count; i++) {
        delivery *d = delivery_get(r, c.seqs[i]);
        if (!d)
            continue;
        agent *ag = registry_find(r->a->agents, d->agent);
        if (ag)
            agent_withdraw(ag, d->seq);
        finish_delivery(r, d);
    }
}

/* Fills the conversation of a new message; checks replies point somewhere. */
static int resolve_conversation(router *r, acl_message *m, cx_error *err)
{
    if (m->in_reply_to) {
        sqlite3_stmt *st = stmt(r, ST_FIND_REPLY);
        bind_text(st, 1, m->in_reply_to);
        bind_text(st, 2, m->conversation_id);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            if (!m->conversation_id[0])
                snprintf(m->conversation_id, sizeof m->conversation_id, "%s",
                         (const char *)sqlite3_column_text(st, 0));
            sqlite3_reset(st);
            return 0;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return db_error(r, err, "reply lookup");
        if (m->conversation_id[0])
            return cx_error_set(err, CX_ENOTFOUND,
                                "in_reply_to '%s' matches no message of conversation '%s'; a "
                                "reply must answer a message of its conversation",
                                m->in_reply_to, m->conversation_id);
        return cx_error_set(err, CX_ENOTFOUND,
                            "in_reply_to '%s' matches no message; a reply must answer a message "
                            "that was sent", m->in_reply_to);
    }
    if (!m->conversation_id[0] && acl_uuid_v4(m->conversation_id, err) < 0)
        return err->code;
    return 0;
}

int router_submit(router *r, acl_message *m, acl_origin origin, route_strategy strategy,
                  route_outcome *out, cx_error *err)
{
    memset(out, 0, sizeof *out);
    if (r->closing || (r->quiesced && origin == ACL_FROM_API))
        return cx_error_set(err, CX_EUNAVAIL, "the server is shutting down; the message was not "
                            "accepted");
    if (m->receiver && str_has_prefix(m->receiver, "external:"))
        return cx_error_set(err, CX_EINVAL, "receiver '%s' is an external client; messages go "
                            "to agents (receiver) or capabilities (capability)", m->receiver);
    agent *target = NULL;
    if (m->receiver) {
        target = registry_find(r->a->agents, m->receiver);
        if (!target) {
            const char *s = registry_suggest(r->a->agents, m->receiver);
            return cx_error_set(err, CX_ENOTFOUND, "no agent named '%s'%s%s%s", m->receiver,
                                s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
        }
        agent_state st = agent_get_state(target);
        if (st == AGENT_FAILED || st == AGENT_STOPPED || st == AGENT_DRAINING || st == AGENT_LOADING)
            return cx_error_set(err, CX_EBUSY, "agent '%s' is %s and takes no messages; see "
                                "'caxton agents status %s --detailed'", m->receiver,
                                agent_state_name(st), m->receiver);
    }
    int rc = resolve_conversation(r, m, err);
    if (rc < 0)
        return rc;
    snprintf(out->message_id, sizeof out->message_id, "%s", m->message_id);
    snprintf(out->conversation_id, sizeof out->conversation_id, "%s", m->conversation_id);
    out->routed_to = json_array();
    if (!out->routed_to)
        return cx_error_set(err, CX_ENOMEM, "out of memory");

    /* One unanswered copy of a message at a time: a retry with the same
     * message_id must not be processed twice, nor mix up two waiters. */
    char holder[ACL_NAME_MAX + 1];
    if (origin == ACL_FROM_API && journal_has(r, m->message_id, NULL, holder, sizeof holder))
        return cx_error_set(err, CX_EEXIST, "message '%s' is still waiting for an answer from "
                            "'%s'; wait for it, or send a new message_id", m->message_id, holder);

    char reason[512];
    tracked *t = NULL;
    acl_interaction next;
    if (interaction_check(r, m, reason, sizeof reason, &t, &next) < 0) {
        r->stats.refused++;
        if ((rc = record_message(r, m, err)) < 0)
            return rc;
        return immediate_reply(r, m, ACL_NOT_UNDERSTOOD,
                               json_pack("{s:s, s:s}", "reason", "protocol", "detail", reason),
                               out);
    }
    if (m->performative == ACL_CANCEL) {
        if (m->in_reply_to)
            cancel_deliveries(r, m->in_reply_to);
        interaction_apply(t, &next);
        r->stats.accepted++;
        return record_message(r, m, err);
    }
    if (m->reply_by_ms && m->reply_by_ms <= time_now_ms()) {
        if ((rc = record_message(r, m, err)) < 0)
            return rc;
        return immediate_reply(r, m, ACL_FAILURE,
                               failure_content("timeout", "reply_by was already past when the "
                                               "message arrived"),
                               out);
    }

    agent *chosen[256];
    size_t chosen_count = 0;
    if (target) {
        chosen[chosen_count++] = target;
    } else {
        cap_pick *pick = calloc(1, sizeof *pick);
        if (!pick)
            return cx_error_set(err, CX_ENOMEM, "out of memory");
        pick->capability = m->capability;
        registry_foreach(r->a->agents, collect_providers, pick);
        if (pick->count == 0) {
            json_t *similar = similar_capabilities(pick);
            free(pick);
            r->stats.refused++;
            if ((rc = record_message(r, m, err)) < 0) {
                json_decref(similar);
                return rc;
            }
            json_t *content = json_pack(
                "{s:s, s:s, s:s, s:o}", "reason", "no-provider", "detail",
                "no active agent provides this capability", "capability", m->capability,
                "similar", similar ? similar : json_array());
            return immediate_reply(r, m, ACL_FAILURE, content, out);
        }
        if (strategy == ROUTE_BROADCAST) {
            for (size_t i = 0; i < pick->count; i++)
                chosen[chosen_count++] = pick->choices[i];
        } else if (strategy == ROUTE_LEAST_LOADED) {
            chosen[chosen_count++] = pick->choices[pick_least_loaded(pick->choices, pick->count)];
        } else {
            chosen[chosen_count++] =
                pick->choices[next_round_robin(r, m->capability) % pick->count];
        }
        free(pick);
    }

    cx_error first = {0};
    uint64_t seqs[256];
    agent *queued[256];
    size_t queued_count = 0;
    for (size_t i = 0; i < chosen_count; i++) {
        cx_error e;
        if (enqueue_to(r, m, chosen[i], origin == ACL_FROM_API, &seqs[queued_count], &e) < 0) {
            if (!first.code)
                first = e;
            continue;
        }
        queued[queued_count++] = chosen[i];
        json_array_append_new(out->routed_to, json_string(agent_name(chosen[i])));
    }
    if (queued_count == 0) {
        *err = first;
        return first.code ? first.code : CX_EINTERNAL;
    }
    /* Only accepted messages join the conversation (the agents start on a
     * later loop turn, after this); a message that cannot be recorded is
     * taken back, so the refusal the client gets is true. */
    if ((rc = record_message(r, m, err)) < 0) {
        for (size_t i = 0; i < queued_count; i++) {
            delivery *d = delivery_get(r, seqs[i]);
            agent_withdraw(queued[i], seqs[i]);
            if (d)
                finish_delivery(r, d);
        }
        return rc;
    }
    interaction_apply(t, &next);
    interaction_open(r, m, queued_count > 1);
    r->stats.accepted++;
    return 0;
}

/* ---- drain and dead letters ---------------------------------------------------------------------- */

typedef struct drain_ctx {
    router *r;
    agent *to;
    size_t dead, requeued;
} drain_ctx;

static void drain_one(acl_message *m, uint64_t seq, void *arg)
{
    (void)m;
    drain_ctx *c = arg;
    delivery *d = delivery_get(c->r, seq);
    if (!d)
        return;
    /* the target must not hold the same message already (a broadcast) */
    if (c->to && !journal_has(c->r, d->msg.message_id, agent_name(c->to), NULL, 0)) {
        cx_error err;
        char old_agent[ACL_NAME_MAX + 1];
        snprintf(old_agent, sizeof old_agent, "%s", d->agent);
        if (agent_enqueue(c->to, &d->msg, seq, &err) == 0) {
            snprintf(d->agent, sizeof d->agent, "%s", agent_name(c->to));
            if (d->journaled) {
                journal_delete(c->r, d->msg.message_id, old_agent);
                if (journal_insert(c->r, &d->msg, d->agent, &err) < 0)
                    d->journaled = false;
            }
            c->requeued++;
            return;
        }
    }
    c->dead++;
    router_fail(c->r, seq, d->agent, "drained",
                "the agent's queue was drained by an operator; requeue it from the dead letters",
                true);
}

static bool shares_capability(const agent *a, const agent *b)
{
    const agent_def *da = agent_definition(a), *db = agent_definition(b);
    if (!da || !db)
        return false;
    for (size_t i = 0; i < da->capability_count; i++)
        if (agent_provides(b, da->capabilities[i]))
            return true;
    return false;
}

int router_drain(router *r, const char *actor, const char *agent_name_, const char *requeue_to,
                 json_t **result, cx_error *err)
{
    agent *ag = registry_find(r->a->agents, agent_name_);
    if (!ag)
        return cx_error_set(err, CX_ENOTFOUND, "no agent named '%s'", agent_name_);
    drain_ctx c = {.r = r};
    if (requeue_to) {
        c.to = registry_find(r->a->agents, requeue_to);
        if (!c.to)
            return cx_error_set(err, CX_ENOTFOUND, "no agent named '%s' to requeue to",
                                requeue_to);
        if (c.to == ag)
            return cx_error_set(err, CX_EINVAL, "--requeue-to names the drained agent itself");
        if (!agent_accepting(c.to))
            return cx_error_set(err, CX_EINVAL, "agent '%s' is %s; messages can only be "
                                "requeued to an active agent", requeue_to,
                                agent_state_name(agent_get_state(c.to)));
        if (!shares_capability(ag, c.to))
            return cx_error_set(err, CX_EINVAL, "agent '%s' provides none of the capabilities "
                                "of '%s'; requeue to an agent that can answer the same messages",
                                requeue_to, agent_name_);
    }
    size_t drained = agent_take_queue(ag, drain_one, &c);
    state_audit_append(r->a->state, actor, "queue.drain", agent_name_,
                       json_pack("{s:I, s:s?}", "drained", (json_int_t)drained, "requeue_to",
                                 requeue_to),
                       NULL);
    *result = json_pack("{s:s, s:I, s:I, s:I, s:s?}", "name", agent_name_, "drained",
                        (json_int_t)drained, "dead_lettered", (json_int_t)c.dead, "requeued",
                        (json_int_t)c.requeued, "requeue_to", requeue_to);
    return *result ? 0 : cx_error_set(err, CX_ENOMEM, "out of memory");
}

static int64_t parse_cursor(const char *cursor)
{
    if (!cursor || !*cursor)
        return 0;
    char *end;
    long long v = strtoll(cursor, &end, 10);
    return (*end || v <= 0) ? -1 : (int64_t)v;
}

static json_t *page(json_t *items, int64_t next)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)next);
    return json_pack("{s:o, s:o}", "items", items, "next_cursor",
                     next > 0 ? json_string(buf) : json_null());
}

static int bad_cursor(cx_error *err)
{
    return cx_error_set(err, CX_EINVAL, "cursor is not one this server gave out; start again "
                        "without it");
}

static json_t *time_json(int64_t ms)
{
    char at[40];
    time_format_rfc3339((uint64_t)ms, at, sizeof at);
    return json_string(at);
}

int router_dead_letters_json(router *r, const char *agent_name_, size_t limit, const char *cursor,
                             json_t **out, cx_error *err)
{
    int64_t before = parse_cursor(cursor);
    if (before < 0)
        return bad_cursor(err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT id, message_id, agent, reason, detail, failed_at, attempts, "
                           "body FROM dead_letters WHERE (?1 IS NULL OR agent = ?1) AND id < ?2 "
                           "ORDER BY id DESC LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(r, err, "dead letter list");
    bind_text(st, 1, agent_name_);
    sqlite3_bind_int64(st, 2, before ? before : INT64_MAX);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit + 1);
    json_t *items = json_array();
    int64_t next = 0;
    size_t n = 0;
    while (items && sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (n++ == limit) {
            next = id + 1;
            break;
        }
        json_t *msg = json_loads((const char *)sqlite3_column_text(st, 7), 0, NULL);
        json_array_append_new(
            items, json_pack("{s:I, s:s, s:s?, s:s, s:s?, s:o, s:I, s:o}", "id", (json_int_t)id,
                             "message_id", (const char *)sqlite3_column_text(st, 1), "agent",
                             (const char *)sqlite3_column_text(st, 2), "reason",
                             (const char *)sqlite3_column_text(st, 3), "detail",
                             (const char *)sqlite3_column_text(st, 4), "failed_at",
                             time_json(sqlite3_column_int64(st, 5)), "attempts",
                             (json_int_t)sqlite3_column_int64(st, 6), "message",
                             msg ? msg : json_null()));
    }
    sqlite3_finalize(st);
    *out = items ? page(items, next) : NULL;
    return *out ? 0 : cx_error_set(err, CX_ENOMEM, "out of memory");
}

static int load_dead_letter(router *r, int64_t id, char **body, char **who, cx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db, "SELECT body, agent FROM dead_letters WHERE id = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return db_error(r, err, "dead letter lookup");
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *body = str_dup((const char *)sqlite3_column_text(st, 0));
        *who = str_dup((const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return cx_error_set(err, CX_ENOTFOUND, "no dead letter with id %lld (see 'caxton "
                            "conversations dead-letters')", (long long)id);
    return 0;
}

int router_dead_letter_delete(router *r, const char *actor, int64_t id, cx_error *err)
{
    char *body = NULL, *agent_ = NULL;
    int rc = load_dead_letter(r, id, &body, &agent_, err);
    free(body);
    free(agent_);
    if (rc < 0)
        return rc;
    if ((rc = tx_begin(r, err)) < 0)
        return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db, "DELETE FROM dead_letters WHERE id = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return db_error(r, err, "dead letter delete");
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_error(r, err, "dead letter delete");
    char target[32];
    snprintf(target, sizeof target, "%lld", (long long)id);
    state_audit_append(r->a->state, actor, "dead_letter.purge", target, NULL, NULL);
    return 0;
}

int router_dead_letter_requeue(router *r, const char *actor, int64_t id, json_t **out,
                               cx_error *err)
{
    char *body = NULL, *agent_ = NULL;
    int rc = load_dead_letter(r, id, &body, &agent_, err);
    if (rc < 0)
        return rc;
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    acl_message m;
    acl_problem problem;
    if (!j || acl_message_from_json(j, ACL_FROM_API, SIZE_MAX, &m, &problem) < 0) {
        json_decref(j);
        free(agent_);
        return cx_error_set(err, CX_EINVAL, "dead letter %lld holds a message that is no longer "
                            "valid; purge it", (long long)id);
    }
    json_decref(j);
    /* A message once routed by capability goes to a provider again; one sent
     * to an agent goes back to that agent. */
    route_outcome o;
    rc = router_submit(r, &m, ACL_FROM_API, ROUTE_ROUND_ROBIN, &o, err);
    acl_message_clear(&m);
    free(agent_);
    if (rc < 0) {
        route_outcome_clear(&o);
        return rc;
    }
    if ((rc = router_dead_letter_delete(r, actor, id, err)) < 0) {
        route_outcome_clear(&o);
        return rc;
    }
    *out = json_pack("{s:I, s:s, s:O}", "id", (json_int_t)id, "message_id", o.message_id,
                     "routed_to", o.routed_to);
    route_outcome_clear(&o);
    return *out ? 0 : cx_error_set(err, CX_ENOMEM, "out of memory");
}

/* ---- conversations ------------------------------------------------------------------------------ */

static json_t *conversation_row(sqlite3_stmt *st)
{
    json_t *participants = json_loads((const char *)sqlite3_column_text(st, 5), 0, NULL);
    return json_pack("{s:s, s:s, s:o, s:I, s:o, s:o}", "conversation_id",
                     (const char *)sqlite3_column_text(st, 0), "state",
                     (const char *)sqlite3_column_text(st, 1), "participants",
                     participants ? participants : json_array(), "message_count",
                     (json_int_t)sqlite3_column_int64(st, 4), "created_at",
                     time_json(sqlite3_column_int64(st, 2)), "last_activity_at",
                     time_json(sqlite3_column_int64(st, 3)));
}

int router_conversations_json(router *r, const char *state, const char *agent_name_, size_t limit,
                              const char *cursor, json_t **out, cx_error *err)
{
    int64_t before = parse_cursor(cursor);
    if (before < 0)
        return bad_cursor(err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            r->db,
            "SELECT id, state, created_at, last_activity_at, message_count, participants, rowid "
            "FROM conversations WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR EXISTS "
            "(SELECT 1 FROM json_each(participants) WHERE value = ?2)) AND rowid < ?3 "
            "ORDER BY rowid DESC LIMIT ?4",
            -1, &st, NULL) != SQLITE_OK)
        return db_error(r, err, "conversation list");
    bind_text(st, 1, state);
    bind_text(st, 2, agent_name_);
    sqlite3_bind_int64(st, 3, before ? before : INT64_MAX);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)limit + 1);
    json_t *items = json_array();
    int64_t next = 0;
    size_t n = 0;
    while (items && sqlite3_step(st) == SQLITE_ROW) {
        if (n++ == limit) {
            next = sqlite3_column_int64(st, 6) + 1;
            break;
        }
        json_array_append_new(items, conversation_row(st));
    }
    sqlite3_finalize(st);
    *out = items ? page(items, next) : NULL;
    return *out ? 0 : cx_error_set(err, CX_ENOMEM, "out of memory");
}

int router_conversation_json(router *r, const char *id, json_t **out, cx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT id, state, created_at, last_activity_at, message_count, "
                           "participants FROM conversations WHERE id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(r, err, "conversation lookup");
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? conversation_row(st) : NULL;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return cx_error_set(err, CX_ENOTFOUND, "no conversation '%s' (see 'caxton conversations "
                            "list')", id);
    return *out ? 0 : cx_error_set(err, CX_ENOMEM, "out of memory");
}

int router_conversation_messages_json(router *r, const char *id, size_t limit, const char *cursor,
                                      json_t **out, cx_error *err)
{
    json_t *conv = NULL;
    int rc = router_conversation_json(r, id, &conv, err);
    json_decref(conv);
    if (rc < 0)
        return rc;
    int64_t after = parse_cursor(cursor);
    if (after < 0)
        return bad_cursor(err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT seq, at, body FROM messages WHERE conversation_id = ? AND "
                           "seq > ? ORDER BY seq LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(r, err, "message list");
    bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit + 1);
    json_t *items = json_array();
    int64_t next = 0;
    size_t n = 0;
    int64_t last = 0;
    while (items && sqlite3_step(st) == SQLITE_ROW) {
        if (n++ == limit) {
            next = last;
            break;
        }
        last = sqlite3_column_int64(st, 0);
        json_t *m = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
        if (!json_is_object(m)) {
            json_decref(m);
            m = json_object();
        }
        json_object_set_new(m, "at", time_json(sqlite3_column_int64(st, 1)));
        json_array_append_new(items, m);
    }
    sqlite3_finalize(st);
    *out = items ? page(items, next) : NULL;
    return *out ? 0 : cx_error_set(err, CX_ENOMEM, "out of memory");
}

json_t *router_history(router *r, const char *conversation_id, size_t max_messages,
                       size_t max_bytes)
{
    sqlite3_stmt *st = stmt(r, ST_HISTORY);
    bind_text(st, 1, conversation_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max_messages);
    json_t *items = json_array();
    size_t used = 0;
    while (items && sqlite3_step(st) == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_int64(st, 1);
        if (used > 0 && used + len > max_bytes)
            break;
        used += len;
        json_t *m = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
        if (m)
            json_array_insert_new(items, 0, m);
    }
    sqlite3_reset(st);
    return items;
}

/* ---- sweeps -------------------------------------------------------------------------------------- */

static void on_sweep(uv_timer_t *t)
{
    router *r = t->data;
    uint64_t now = time_now_ms();
    const cx_config *cfg = r->a->config;
    if (tx_begin(r, NULL) < 0)
        return;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "UPDATE conversations SET state = 'timed-out' WHERE state = 'active' "
                           "AND last_activity_at < ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)(now - cfg->messaging_conversation_timeout_ms));
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    interactions_expire(r, now - cfg->messaging_conversation_timeout_ms);
    /* The WAL is copied back once a second here rather than by every commit
     * that crosses the autocheckpoint size: pages written many times in a
     * second are copied once. PASSIVE never waits for readers. */
    commit_now(r);
    sqlite3_wal_checkpoint_v2(r->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (tx_begin(r, NULL) < 0)
        return;
    if (now - r->last_retention_ms < RETENTION_SWEEP_MS)
        return;
    r->last_retention_ms = now;
    int64_t cutoff = (int64_t)now - (int64_t)cfg->messaging_history_retention_ms;
    if (sqlite3_prepare_v2(r->db,
                           "DELETE FROM messages WHERE conversation_id IN (SELECT id FROM "
                           "conversations WHERE last_activity_at < ?1 AND state != 'active');"
                           , -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, cutoff);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (sqlite3_prepare_v2(r->db,
                           "DELETE FROM conversations WHERE last_activity_at < ? AND state != "
                           "'active'",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, cutoff);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
}

/* ---- life cycle ---------------------------------------------------------------------------------- */

router *router_new(app *a, cx_error *err)
{
    router *r = calloc(1, sizeof *r);
    if (!r) {
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    r->a = a;
    r->db = state_sqlite(a->state);
    r->commit_tail = &r->commit_head;
    r->last_retention_ms = 0;
    map_init(&r->deliveries);
    map_init(&r->waiters);
    map_init(&r->interactions);
    map_init(&r->round_robin);
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(r->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &r->st[i],
                               NULL) != SQLITE_OK) {
            db_error(r, err, "prepare");
            for (int k = 0; k < i; k++)
                sqlite3_finalize(r->st[k]);
            free(r);
            return NULL;
        }
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db, "SELECT COUNT(*) FROM journal", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            r->stats.journal_pending = (uint64_t)sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    /* Checkpoints run from the sweep; this bound only matters if it stalls. */
    sqlite3_exec(r->db, "PRAGMA wal_autocheckpoint=20000", NULL, NULL, NULL);
    uv_check_init(a->loop, &r->commit);
    r->commit.data = r;
    uv_check_start(&r->commit, on_commit_check);
    uv_timer_init(a->loop, &r->sweep);
    r->sweep.data = r;
    uv_timer_start(&r->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&r->sweep);
    return r;
}

int router_recover(router *r, cx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT message_id, agent, body, attempts FROM journal "
                           "ORDER BY accepted_at",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(r, err, "journal read");
    typedef struct pending {
        char *message_id, *agent, *body;
        int64_t attempts;
    } pending;
    pending *list = NULL;
    size_t count = 0, cap = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            pending *grown = realloc(list, ncap * sizeof *grown);
            if (!grown)
                break;
            list = grown;
            cap = ncap;
        }
        list[count].message_id = str_dup((const char *)sqlite3_column_text(st, 0));
        list[count].agent = str_dup((const char *)sqlite3_column_text(st, 1));
        list[count].body = str_dup((const char *)sqlite3_column_text(st, 2));
        list[count].attempts = sqlite3_column_int64(st, 3);
        count++;
    }
    sqlite3_finalize(st);
    size_t redelivered = 0, dead = 0;
    int64_t max_retries = r->a->config->messaging_max_retries;
    for (size_t i = 0; i < count; i++) {
        pending *p = &list[i];
        json_t *j = p->body ? json_loads(p->body, 0, NULL) : NULL;
        acl_message m;
        acl_problem problem;
        bool parsed = j && acl_message_from_json(j, ACL_FROM_API, SIZE_MAX, &m, &problem) == 0;
        json_decref(j);
        agent *ag = p->agent ? registry_find(r->a->agents, p->agent) : NULL;
        const char *why = !parsed                       ? "unreadable-journal-entry"
                          : p->attempts > max_retries   ? "redelivery-limit"
                          : !ag                         ? "agent-removed"
                          : NULL;
        journal_delete(r, p->message_id, p->agent);
        if (why) {
            if (parsed) {
                dead_letter_insert(r, &m, p->agent, why,
                                   p->attempts > max_retries
                                       ? "redelivered after restarts more often than "
                                         "messaging.max_retries allows"
                                       : "the agent no longer exists",
                                   p->attempts);
                acl_message_clear(&m);
            }
            dead++;
            continue;
        }
        delivery *d = delivery_new(r, &m, p->agent);
        cx_error e;
        if (!d || agent_enqueue(ag, &d->msg, d->seq, &e) < 0 ||
            journal_insert(r, &m, p->agent, &e) < 0) {
            if (d)
                delivery_free(r, d);
            dead_letter_insert(r, &m, p->agent, "redelivery-refused", "the agent's queue did not "
                               "take the message at start", p->attempts);
            dead++;
        } else {
            d->journaled = true;
            sqlite3_stmt *up;
            if (sqlite3_prepare_v2(r->db, "UPDATE journal SET attempts = ? WHERE message_id = ? "
                                   "AND agent = ?", -1, &up, NULL) == SQLITE_OK) {
                sqlite3_bind_int64(up, 1, p->attempts + 1);
                bind_text(up, 2, p->message_id);
                bind_text(up, 3, p->agent);
                sqlite3_step(up);
                sqlite3_finalize(up);
            }
            redelivered++;
        }
        acl_message_clear(&m);
    }
    for (size_t i = 0; i < count; i++) {
        free(list[i].message_id);
        free(list[i].agent);
        free(list[i].body);
    }
    free(list);
    r->stats.redelivered += redelivered;
    if (count)
        log_info("router", "journal: %zu unanswered messages redelivered, %zu dead-lettered",
                 redelivered, dead);
    commit_now(r);
    return 0;
}

void router_quiesce(router *r)
{
    r->quiesced = true;
}

static int collect_waiter_ids(const char *key, void *value, void *arg)
{
    (void)value;
    json_t *ids = arg;
    json_array_append_new(ids, json_string(key));
    return 0;
}

static int free_entry(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    free(value);
    return 0;
}

static int free_delivery_entry(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    delivery *d = value;
    if (d->reply_by) {
        uv_timer_stop(d->reply_by);
        uv_close((uv_handle_t *)d->reply_by, free_timer);
    }
    acl_message_clear(&d->msg);
    free(d);
    return 0;
}

/* The router is freed when both of its handles have closed. */
static void router_closed(uv_handle_t *h)
{
    router *r = h->data;
    if (--r->open_handles == 0)
        free(r);
}

void router_close(router *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    json_t *ids = json_array();
    map_foreach(&r->waiters, collect_waiter_ids, ids);
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id) {
        waiter *w;
        while ((w = map_get(&r->waiters, json_string_value(id))) != NULL)
            waiter_finish(r, w, NULL, 503);
    }
    json_decref(ids);
    commit_now(r);
    for (int k = 0; k < ST_COUNT; k++)
        sqlite3_finalize(r->st[k]);
    map_foreach(&r->deliveries, free_delivery_entry, NULL);
    map_free(&r->deliveries);
    map_free(&r->waiters);
    map_foreach(&r->interactions, free_entry, NULL);
    map_free(&r->interactions);
    map_foreach(&r->round_robin, free_entry, NULL);
    map_free(&r->round_robin);
    free(r->batch_seqs);
    uv_check_stop(&r->commit);
    uv_timer_stop(&r->sweep);
    r->open_handles = 2;
    uv_close((uv_handle_t *)&r->commit, router_closed);
    uv_close((uv_handle_t *)&r->sweep, router_closed);
}

void router_get_stats(const router *r, router_stats *out)
{
    *out = r->stats;
}
