/* /api/v1/messages, /conversations, /dead-letters, /config/audit-log.
 *
 * POST /messages never answers before the message is durable: the answer is
 * deferred until the router's group commit (or, with ?wait=, until the first
 * reply), holding no thread while it waits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/routes.h"
#include "core/log.h"
#include "core/units.h"
#include "core/util.h"
#include "messaging/router.h"

#define WAIT_MAX_MS (5u * 60u * 1000u)

static const char *actor(const http_request *req)
{
    return req->who.name[0] ? req->who.name : "api";
}

typedef struct send_ctx {
    http_pending *pending;
    json_t *accepted; /* the 202 body, or the 200 body with an immediate reply */
    unsigned status;
    uint64_t wait_ms;
    char message_id[ACL_ID_MAX + 1];
    char conversation_id[ACL_ID_MAX + 1];
} send_ctx;

static void send_ctx_free(send_ctx *c)
{
    json_decref(c->accepted);
    free(c);
}

static void on_reply(json_t *reply, int status, void *arg)
{
    send_ctx *c = arg;
    http_request *req = http_pending_request(c->pending);
    http_response *res = http_pending_response(c->pending);
    if (status == 200) {
        http_reply_json(res, 200,
                        json_pack("{s:s, s:s, s:O}", "message_id", c->message_id,
                                  "conversation_id", c->conversation_id, "reply", reply));
    } else if (status == 504) {
        char waited[32];
        units_format_duration(c->wait_ms, waited, sizeof waited);
        http_reply_error(res, req, 504, CX_ETIMEOUT, "REPLY_TIMEOUT",
                         json_pack("{s:s, s:s}", "message_id", c->message_id, "conversation_id",
                                   c->conversation_id),
                         "no reply within %s; the message is still in flight (see 'caxton "
                         "conversations show %s')", waited, c->conversation_id);
    } else {
        http_reply_error(res, req, 503, CX_EUNAVAIL, "SHUTTING_DOWN",
                         json_pack("{s:s}", "message_id", c->message_id),
                         "the server is shutting down; the message is journaled and will be "
                         "delivered after the restart");
        res->retry_after = 5;
    }
    http_pending_finish(c->pending);
    send_ctx_free(c);
}

static void on_committed(void *arg, bool committed)
{
    send_ctx *c = arg;
    http_request *req = http_pending_request(c->pending);
    http_response *res = http_pending_response(c->pending);
    if (!committed) {
        http_reply_error(res, req, 500, CX_EIO, "NOT_STORED", NULL,
                         "the message could not be stored; it was not accepted (see the server "
                         "log)");
        http_pending_finish(c->pending);
        send_ctx_free(c);
        return;
    }
    if (c->wait_ms && c->status == 202) {
        cx_error err;
        if (router_wait_reply(req->app->router, c->message_id, c->wait_ms, on_reply, c, NULL,
                              &err) ==
            0)
            return;
    }
    http_reply_json(res, c->status, json_incref(c->accepted));
    http_pending_finish(c->pending);
    send_ctx_free(c);
}

static void reply_submit_error(http_request *req, http_response *res, const cx_error *err)
{
    switch (err->code) {
    case CX_ENOTFOUND:
        if (strstr(err->msg, "in_reply_to"))
            http_reply_error(res, req, 404, CX_ENOTFOUND, "CONVERSATION_NOT_FOUND", NULL, "%s",
                             err->msg);
        else
            http_reply_error(res, req, 404, CX_ENOTFOUND, "AGENT_NOT_FOUND", NULL, "%s",
                             err->msg);
        return;
    case CX_ELIMIT:
        http_reply_error(res, req, 429, CX_ELIMIT, "QUEUE_FULL", NULL, "%s", err->msg);
        res->retry_after = 1;
        return;
    case CX_EBUSY:
        http_reply_error(res, req, 409, CX_EBUSY, "AGENT_NOT_ACCEPTING", NULL, "%s", err->msg);
        return;
    case CX_EEXIST:
        http_reply_error(res, req, 409, CX_EEXIST, "DUPLICATE_MESSAGE", NULL, "%s", err->msg);
        return;
    case CX_EUNAVAIL:
        if (req->app->stopping) {
            http_reply_error(res, req, 503, CX_EUNAVAIL, "SHUTTING_DOWN", NULL, "%s", err->msg);
            res->retry_after = 5;
        } else {
            http_reply_error(res, req, 409, CX_EUNAVAIL, "AGENT_NOT_ACCEPTING", NULL, "%s",
                             err->msg);
        }
        return;
    case CX_EINVAL:
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_MESSAGE", NULL, "%s", err->msg);
        return;
    default:
        http_reply_internal(res, req, err);
    }
}

void api_messages_send(http_request *req, http_response *res)
{
    app *a = req->app;
    uint64_t wait_ms = 0;
    const char *wait = http_query(req, "wait");
    cx_error err;
    if (wait && !*wait) {
        /* ?wait with no value: the configured default, within the same cap */
        wait_ms = a->config->messaging_default_reply_timeout_ms;
        if (wait_ms > WAIT_MAX_MS)
            wait_ms = WAIT_MAX_MS;
    } else if (wait && (units_parse_duration_ms(wait, &wait_ms, &err) < 0 || wait_ms > WAIT_MAX_MS)) {
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "wait"),
                         "wait must be a duration up to 5m such as 10s (no value: "
                         "messaging.default_reply_timeout)");
        return;
    }
    const char *strategy_text = http_query(req, "strategy");
    int strategy = route_strategy_parse(strategy_text);
    if (strategy < 0) {
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "strategy"),
                         "strategy must be round-robin, least-loaded or broadcast");
        return;
    }
    if (!req->body) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_MESSAGE", NULL,
                         "expected a FIPA-ACL message as a JSON object, e.g. {\"performative\": "
                         "\"request\", \"receiver\": \"agent-name\", \"content\": \"...\"}");
        return;
    }
    acl_message m;
    acl_problem problem;
    int rc = acl_message_from_json(req->body, ACL_FROM_API,
                                   (size_t)a->config->messaging_max_message_size, &m, &problem);
    if (rc < 0) {
        http_reply_error(res, req, rc == CX_ETOOBIG ? 413 : 422, rc,
                         rc == CX_ETOOBIG ? "MESSAGE_TOO_LARGE" : "INVALID_MESSAGE",
                         json_pack("{s:s}", "field", problem.field), "%s: %s", problem.field,
                         problem.reason);
        return;
    }
    route_outcome out;
    rc = router_submit(a->router, &m, ACL_FROM_API, (route_strategy)strategy, &out, &err);
    acl_message_clear(&m);
    if (rc < 0) {
        route_outcome_clear(&out);
        reply_submit_error(req, res, &err);
        return;
    }
    send_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        route_outcome_clear(&out);
        cx_error_set(&err, CX_ENOMEM, "out of memory");
        http_reply_internal(res, req, &err);
        return;
    }
    snprintf(c->message_id, sizeof c->message_id, "%s", out.message_id);
    snprintf(c->conversation_id, sizeof c->conversation_id, "%s", out.conversation_id);
    c->wait_ms = wait_ms;
    if (out.reply) {
        c->status = 200;
        c->accepted = json_pack("{s:s, s:s, s:O, s:O}", "message_id", out.message_id,
                                "conversation_id", out.conversation_id, "routed_to",
                                out.routed_to, "reply", out.reply);
    } else {
        c->status = 202;
        c->accepted = json_pack("{s:s, s:s, s:O}", "message_id", out.message_id,
                                "conversation_id", out.conversation_id, "routed_to",
                                out.routed_to);
    }
    route_outcome_clear(&out);
    /* The commit callback runs after this handler returns, so deferring
     * after registering it is safe. */
    if (router_after_commit(a->router, on_committed, c) < 0) {
        http_reply_json(res, c->status, json_incref(c->accepted));
        send_ctx_free(c);
        return;
    }
    c->pending = http_defer(req);
}

/* ---- conversations and dead letters ---------------------------------------------------------- */

static void reply_lookup_error(http_request *req, http_response *res, const cx_error *err,
                               const char *code)
{
    if (err->code == CX_ENOTFOUND)
        http_reply_error(res, req, 404, CX_ENOTFOUND, code, NULL, "%s", err->msg);
    else if (err->code == CX_EINVAL)
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "cursor"), "%s", err->msg);
    else
        http_reply_internal(res, req, err);
}

void api_conversations_list(http_request *req, http_response *res)
{
    size_t limit;
    const char *cursor;
    if (http_page_args(req, res, &limit, &cursor) < 0)
        return;
    const char *state = http_query(req, "state");
    if (state && strcmp(state, "active") != 0 && strcmp(state, "completed") != 0 &&
        strcmp(state, "timed-out") != 0 && strcmp(state, "cancelled") != 0) {
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "state"),
                         "state must be active, completed, timed-out or cancelled");
        return;
    }
    json_t *doc = NULL;
    cx_error err;
    if (router_conversations_json(req->app->router, state, http_query(req, "agent"), limit, cursor,
                                  &doc, &err) < 0) {
        reply_lookup_error(req, res, &err, "CONVERSATION_NOT_FOUND");
        return;
    }
    http_reply_json(res, 200, doc);
}

void api_conversations_get(http_request *req, http_response *res)
{
    json_t *doc = NULL;
    cx_error err;
    if (router_conversation_json(req->app->router, req->params[0], &doc, &err) < 0) {
        reply_lookup_error(req, res, &err, "CONVERSATION_NOT_FOUND");
        return;
    }
    http_reply_json(res, 200, doc);
}

void api_conversations_messages(http_request *req, http_response *res)
{
    size_t limit;
    const char *cursor;
    if (http_page_args(req, res, &limit, &cursor) < 0)
        return;
    json_t *doc = NULL;
    cx_error err;
    if (router_conversation_messages_json(req->app->router, req->params[0], limit, cursor, &doc,
                                          &err) < 0) {
        reply_lookup_error(req, res, &err, "CONVERSATION_NOT_FOUND");
        return;
    }
    http_reply_json(res, 200, doc);
}

void api_dead_letters_list(http_request *req, http_response *res)
{
    size_t limit;
    const char *cursor;
    if (http_page_args(req, res, &limit, &cursor) < 0)
        return;
    json_t *doc = NULL;
    cx_error err;
    if (router_dead_letters_json(req->app->router, http_query(req, "agent"), limit, cursor, &doc,
                                 &err) < 0) {
        reply_lookup_error(req, res, &err, "DEAD_LETTER_NOT_FOUND");
        return;
    }
    http_reply_json(res, 200, doc);
}

static bool dead_letter_id(http_request *req, http_response *res, int64_t *id)
{
    char *end;
    long long v = strtoll(req->params[0], &end, 10);
    if (*end || v <= 0) {
        http_reply_error(res, req, 404, CX_ENOTFOUND, "DEAD_LETTER_NOT_FOUND", NULL,
                         "dead letter ids are positive integers (see 'caxton conversations "
                         "dead-letters')");
        return false;
    }
    *id = v;
    return true;
}

void api_dead_letters_requeue(http_request *req, http_response *res)
{
    int64_t id;
    if (!dead_letter_id(req, res, &id))
        return;
    json_t *doc = NULL;
    cx_error err;
    if (router_dead_letter_requeue(req->app->router, actor(req), id, &doc, &err) < 0) {
        if (err.code == CX_ENOTFOUND && strstr(err.msg, "dead letter"))
            reply_lookup_error(req, res, &err, "DEAD_LETTER_NOT_FOUND");
        else
            reply_submit_error(req, res, &err);
        return;
    }
    http_reply_json(res, 200, doc);
}

void api_dead_letters_delete(http_request *req, http_response *res)
{
    int64_t id;
    if (!dead_letter_id(req, res, &id))
        return;
    cx_error err;
    if (router_dead_letter_delete(req->app->router, actor(req), id, &err) < 0) {
        reply_lookup_error(req, res, &err, "DEAD_LETTER_NOT_FOUND");
        return;
    }
    http_reply_json(res, 200, json_pack("{s:I, s:b}", "id", (json_int_t)id, "deleted", 1));
}

/* ---- config audit log -------------------------------------------------------------------------- */

static bool epoch_arg(http_request *req, http_response *res, const char *name, uint64_t *out)
{
    *out = 0;
    const char *v = http_query(req, name);
    if (!v)
        return true;
    if (!http_time_arg(v, out)) {
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", name),
                         "%s must be an RFC 3339 time such as 2026-01-15T10:00:00Z", name);
        return false;
    }
    return true;
}

void api_config_audit_log(http_request *req, http_response *res)
{
    size_t limit;
    const char *cursor;
    if (http_page_args(req, res, &limit, &cursor) < 0)
        return;
    uint64_t since, until;
    if (!epoch_arg(req, res, "since", &since) || !epoch_arg(req, res, "until", &until))
        return;
    int64_t before = 0;
    if (cursor) {
        char *end;
        before = strtoll(cursor, &end, 10);
        if (*end || before <= 0) {
            http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                             json_pack("{s:s}", "parameter", "cursor"),
                             "unknown cursor; start again without one");
            return;
        }
    }
    json_t *items = NULL;
    int64_t next = 0;
    cx_error err;
    if (state_audit_json(req->app->state, since, until, limit, before, &items, &next, &err) < 0) {
        http_reply_internal(res, req, &err);
        return;
    }
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)next);
    http_reply_json(res, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor",
                                        next ? json_string(buf) : json_null()));
}
