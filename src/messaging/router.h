/* The message router: FIPA-ACL messages from the API and from agents to the
 * agents that should answer them, and answers back to whoever asked.
 *
 * A message is validated at the door (message.c), routed by receiver or by
 * capability (round-robin, least-loaded or broadcast over active providers),
 * recorded in its conversation and put on the agent's bounded queue. Nothing
 * is dropped silently: a full queue refuses it (QUEUE_FULL), a capability
 * nobody provides gets a failure reply naming similar ones, and a message
 * that fails later gets a failure reply with the reason.
 *
 * Durability: messages from the API are written to the journal in state.db
 * before they are acknowledged, and marked done when answered, so a crash
 * redelivers them at the next start (at-least-once, same message_id). Writes
 * are group-committed: the router keeps one transaction open while the loop
 * works and commits it before the loop sleeps, and the API's acknowledgement
 * waits for that commit (router_after_commit). One fsync then covers every
 * message that arrived in the same loop iteration.
 *
 * Everything here belongs to the event loop thread. */
#ifndef CAXTON_MESSAGING_ROUTER_H
#define CAXTON_MESSAGING_ROUTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "messaging/message.h"
#include "server/app.h"

typedef struct router router;

typedef enum route_strategy {
    ROUTE_ROUND_ROBIN,
    ROUTE_LEAST_LOADED,
    ROUTE_BROADCAST,
} route_strategy;

int route_strategy_parse(const char *text); /* -1 when unknown */

router *router_new(app *a, cx_error *err);
/* At start, after the registry loaded: redelivers journaled messages that
 * were never answered (dead-lettering those redelivered too often). */
int router_recover(router *r, cx_error *err);
/* Stops taking messages from the API (503); replies still flow. */
void router_quiesce(router *r);
/* Answers every waiting API request (503 SHUTTING_DOWN: the message stays
 * journaled), commits, and closes the handles. Freed once the loop has run
 * the closes. */
void router_close(router *r);

/* What router_submit decided. */
typedef struct route_outcome {
    char message_id[ACL_ID_MAX + 1];
    char conversation_id[ACL_ID_MAX + 1];
    json_t *routed_to;  /* array of agent names (owned by the caller after return) */
    json_t *reply;      /* an immediate reply (no-provider failure), or NULL; owned */
} route_outcome;

void route_outcome_clear(route_outcome *o);

/* Takes a validated message. origin decides the journal (API messages are
 * journaled). Errors, with err's message for the operator:
 *   CX_ENOTFOUND  unknown receiver agent (did you mean), or a conversation /
 *                 in_reply_to that does not exist (err says which)
 *   CX_ELIMIT     the queue is full (QUEUE_FULL)
 *   CX_EUNAVAIL   the router is shutting down
 *   CX_EINVAL     the message breaks its conversation's protocol when sent
 *                 by the API (agents get a not-understood reply instead)
 * The message is consumed (cleared) on success. */
int router_submit(router *r, acl_message *m, acl_origin origin, route_strategy strategy,
                  route_outcome *out, cx_error *err);

/* An agent's answer to a message it was given (seq from agent_enqueue). The
 * router fills sender, receiver, conversation_id and in_reply_to from the
 * original, records it, marks the journal entry done and delivers it (to a
 * waiting API request, or to the receiving agent's queue). */
int router_reply(router *r, uint64_t seq, acl_performative performative, json_t *content,
                 const char *agent_name);
/* The agent could not answer: a failure reply with {"reason","detail"}.
 * dead_letter: also keep the original in the dead-letter store. */
int router_fail(router *r, uint64_t seq, const char *agent_name, const char *reason,
                const char *detail, bool dead_letter);
/* The agent took the message and owes no answer (it was itself an answer). */
void router_done(router *r, uint64_t seq);
/* When the delivery was accepted (epoch ms), 0 when gone. */
uint64_t router_accepted_ms(const router *r, uint64_t seq);
/* The original of a delivered message, for the runner (NULL when gone). */
const acl_message *router_message(const router *r, uint64_t seq);

/* ---- Waiting for a reply (POST /messages?wait=) --------------------------------------------- */

typedef void (*router_wait_fn)(json_t *reply, int status, void *arg);
typedef struct router_waiter router_waiter;
/* Calls fn once: with the first reply to message_id (status 200), or with
 * NULL and 504 after timeout_ms, or NULL and 503 at shutdown. *handle (may
 * be NULL) gets a handle for router_wait_cancel. */
int router_wait_reply(router *r, const char *message_id, uint64_t timeout_ms, router_wait_fn fn,
                      void *arg, router_waiter **handle, cx_error *err);
/* Stops waiting; fn will not be called. */
void router_wait_cancel(router *r, router_waiter *w);
/* Calls fn once the writes made so far are committed (durable): committed
 * is false when the commit failed (the writes are lost; say so). */
int router_after_commit(router *r, void (*fn)(void *arg, bool committed), void *arg);

/* ---- Queues and dead letters ----------------------------------------------------------------- */

/* Moves an agent's queued messages to the dead-letter store (each sender
 * gets a failure with reason `drained`), or to requeue_to (which must be an
 * active agent sharing a capability). result: {"name","drained",
 * "dead_lettered","requeued","requeue_to"}. */
int router_drain(router *r, const char *actor, const char *agent_name, const char *requeue_to,
                 json_t **result, cx_error *err);
int router_dead_letters_json(router *r, const char *agent_name, size_t limit, const char *cursor,
                             json_t **out, cx_error *err);
int router_dead_letter_requeue(router *r, const char *actor, int64_t id, json_t **out,
                               cx_error *err);
int router_dead_letter_delete(router *r, const char *actor, int64_t id, cx_error *err);

/* ---- Conversations ---------------------------------------------------------------------------- */

int router_conversations_json(router *r, const char *state, const char *agent_name, size_t limit,
                              const char *cursor, json_t **out, cx_error *err);
int router_conversation_json(router *r, const char *id, json_t **out, cx_error *err);
int router_conversation_messages_json(router *r, const char *id, size_t limit, const char *cursor,
                                      json_t **out, cx_error *err);
/* The newest messages of a conversation (at most max_messages, and no more
 * stored bytes than max_bytes beyond the newest one), oldest first, as
 * message objects, for an agent's context. */
json_t *router_history(router *r, const char *conversation_id, size_t max_messages,
                       size_t max_bytes);

/* Counters for /status and metrics. */
typedef struct router_stats {
    uint64_t accepted, delivered, replied, failed, refused, dead_lettered, redelivered;
    uint64_t journal_pending;
    uint64_t waiting;
    uint64_t untracked; /* interactions not protocol-checked: the tracking table was full */
} router_stats;
void router_get_stats(const router *r, router_stats *out);

#endif
