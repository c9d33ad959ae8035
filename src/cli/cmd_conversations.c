/* `caxton conversations ...` and `caxton messages send`: queues,
 * conversations, dead letters and FIPA-ACL messages through the REST API.
 *
 * queue-status and drain-queue work on one agent's queue (routes under
 * /api/v1/agents/{name}/queue); list, show and dead-letters read the
 * conversation store; `messages send` posts one message and, with --wait,
 * prints the reply's content. A reply that is a failure, refuse or
 * not-understood is a problem found (exit 1), as is no reply within --wait:
 * the message is then still in flight and may be answered later. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/units.h"
#include "core/util.h"

#define AGENTS_PREFIX "/api/v1/agents/"
#define LIST_DEFAULT_LIMIT 50
#define LIST_MAX_LIMIT 10000
#define SHOW_MAX_MESSAGES 10000
#define DEAD_LETTERS_MAX 10000

static int out_of_memory(void)
{
    fprintf(stderr, "caxton: out of memory\n");
    return CLI_EXIT_PROBLEM;
}

/* ---- queue-status, drain-queue -------------------------------------------------------------- */

static void print_queue(const json_t *q)
{
    json_int_t depth = output_int(q, "depth"), capacity = output_int(q, "capacity");
    char age[32];
    output_format_uptime((double)output_int(q, "oldest_age_ms") / 1000.0, age, sizeof age);
    bool accepting = json_is_true(json_object_get(q, "accepting"));
    output_line(stdout, "%s: %lld of %lld queued, %lld in flight, %s",
                output_string(q, "name", "?"), (long long)depth, (long long)capacity,
                (long long)output_int(q, "in_flight"), accepting ? "accepting messages" : "NOT accepting messages");
    output_line(stdout, "oldest queued: %s", depth > 0 ? age : "-");
    output_line(stdout, "rate: %lld in, %lld out per minute",
                (long long)output_int(q, "rate_in_per_min"),
                (long long)output_int(q, "rate_out_per_min"));
    output_table *t = output_table_new(3, (const char *[]){"instance", "state", "message"});
    size_t i;
    const json_t *inst;
    json_array_foreach(json_object_get(q, "instances"), i, inst) {
        char id[24];
        snprintf(id, sizeof id, "%lld", (long long)output_int(inst, "id"));
        if (t)
            output_table_row(t, id, output_string(inst, "state", "?"),
                             output_string(inst, "message_id", "-"));
    }
    if (t && output_table_rows(t) > 0) {
        printf("\n");
        output_table_print(t, stdout);
    }
    output_table_free(t);
    if (capacity > 0 && depth >= capacity) {
        printf("\n");
        output_line(stdout, "the queue is full: new messages are refused (QUEUE_FULL); "
                            "'caxton agents scale %s --instances +1' or 'caxton conversations "
                            "drain-queue %s'",
                    output_string(q, "name", "NAME"), output_string(q, "name", "NAME"));
    }
}

int cmd_conversations_queue_status(const cli_invocation *inv)
{
    char *path = cli_api_path(AGENTS_PREFIX, inv->args[0], "/queue");
    if (!path)
        return CLI_EXIT_PROBLEM;
    client_response resp;
    int rc = cli_request_once(inv, "GET", path, NULL, &resp);
    free(path);
    if (rc != 0)
        return rc;
    json_int_t depth = output_int(resp.json, "depth"), capacity = output_int(resp.json, "capacity");
    if (inv->output == CLI_OUTPUT_JSON)
        output_json(stdout, resp.json);
    else
        print_queue(resp.json);
    client_response_free(&resp);
    return capacity > 0 && depth >= capacity ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
}

int cmd_conversations_drain_queue(const cli_invocation *inv)
{
    const char *name = inv->args[0];
    const char *other = cli_flag_value(inv, "requeue-to");
    if (other && strcmp(other, name) == 0) {
        fprintf(stderr, "caxton: --requeue-to must name another agent than %s\n", name);
        return CLI_EXIT_USAGE;
    }
    char *path = cli_api_path(AGENTS_PREFIX, name, "/queue/drain");
    json_t *body = json_pack("{s:s?}", "requeue_to", other);
    if (!path || !body) {
        free(path);
        json_decref(body);
        return path ? out_of_memory() : CLI_EXIT_PROBLEM;
    }
    client_response resp;
    int rc = cli_request_once(inv, "POST", path, body, &resp);
    free(path);
    json_decref(body);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        output_json(stdout, resp.json);
    } else {
        json_int_t drained = output_int(resp.json, "drained");
        output_line(stdout, "drained %lld message%s from %s's queue; it accepts messages again",
                    (long long)drained, drained == 1 ? "" : "s", name);
        json_int_t requeued = output_int(resp.json, "requeued");
        json_int_t dead = output_int(resp.json, "dead_lettered");
        if (requeued > 0)
            output_line(stdout, "%lld handed to %s", (long long)requeued,
                        output_string(resp.json, "requeue_to", other ? other : "?"));
        if (dead > 0)
            output_line(stdout, "%lld moved to the dead letters (each sender got a failure, reason "
                                "drained): 'caxton conversations dead-letters --agent %s'",
                        (long long)dead, name);
    }
    client_response_free(&resp);
    return CLI_EXIT_OK;
}

/* ---- list, show ----------------------------------------------------------------------------- */

/* GET a paginated list with the given query flags; returns an exit code. */
static int fetch(const cli_invocation *inv, const char *base, const char *const *query,
                 size_t max, json_t **items, bool *more)
{
    strbuf path;
    strbuf_init(&path);
    int rc = strbuf_appends(&path, base);
    for (size_t i = 0; rc == 0 && query[i]; i += 2)
        rc = cli_query_add(&path, query[i], cli_flag_value(inv, query[i + 1]));
    if (rc != 0) {
        strbuf_free(&path);
        return out_of_memory();
    }
    client c;
    rc = cli_connect(inv, &c);
    if (rc == 0) {
        rc = cli_fetch_list(&c, path.data, max, items, more);
        client_close(&c);
    }
    strbuf_free(&path);
    return rc;
}

static void emit_items(json_t *items, bool more)
{
    json_t *doc = json_pack("{s:O, s:b}", "items", items, "more", more);
    if (doc)
        output_json(stdout, doc);
    json_decref(doc);
}

int cmd_conversations_list(const cli_invocation *inv)
{
    uint64_t limit;
    int rc = cli_flag_count(inv, "limit", LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT, &limit);
    if (rc != 0)
        return rc;
    static const char *const query[] = {"agent", "agent", "state", "state", NULL};
    json_t *items;
    bool more;
    rc = fetch(inv, "/api/v1/conversations", query, limit, &items, &more);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        emit_items(items, more);
        json_decref(items);
        return CLI_EXIT_OK;
    }
    output_table *t = output_table_new(6, (const char *[]){"conversation", "state", "messages",
                                                           "created", "last activity",
                                                           "participants"});
    size_t i;
    const json_t *conv;
    json_array_foreach(items, i, conv) {
        char count[24];
        snprintf(count, sizeof count, "%lld", (long long)output_int(conv, "message_count"));
        char *who = output_join(json_object_get(conv, "participants"));
        if (t)
            output_table_row(t, output_string(conv, "conversation_id", "?"),
                             output_string(conv, "state", "?"), count,
                             output_string(conv, "created_at", "-"),
                             output_string(conv, "last_activity_at", "-"), who);
        free(who);
    }
    if (t && output_table_rows(t) == 0)
        printf("no conversations\n");
    else if (t)
        output_table_print(t, stdout);
    output_table_free(t);
    if (more)
        output_line(stdout, "(more conversations: raise --limit, now %llu)",
                    (unsigned long long)limit);
    json_decref(items);
    return CLI_EXIT_OK;
}

/* The content of a message for a person: text as it is, JSON compact. */
static void print_content(const json_t *content, const char *indent)
{
    if (!content)
        return;
    if (json_is_string(content)) {
        output_text(stdout, json_string_value(content), indent);
        return;
    }
    char *text = json_dumps(content, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text)
        output_text(stdout, text, indent);
    free(text);
}

static void print_message(const json_t *m)
{
    const char *receiver = output_string(m, "receiver", NULL);
    char to[200];
    if (receiver)
        snprintf(to, sizeof to, "%s", receiver);
    else
        snprintf(to, sizeof to, "capability %s", output_string(m, "capability", "?"));
    output_line(stdout, "%s  %s  %s → %s", output_string(m, "at", "?"),
                output_string(m, "performative", "?"), output_string(m, "sender", "?"), to);
    print_content(json_object_get(m, "content"), "    ");
}

int cmd_conversations_show(const cli_invocation *inv)
{
    const char *id = inv->args[0];
    char *path = cli_api_path("/api/v1/conversations/", id, NULL);
    char *messages_path = cli_api_path("/api/v1/conversations/", id, "/messages");
    client c;
    client_response resp = {0};
    json_t *messages = NULL;
    bool more = false;
    int rc = path && messages_path ? cli_connect(inv, &c) : CLI_EXIT_PROBLEM;
    if (rc == 0) {
        rc = cli_call(&c, "GET", path, NULL, &resp);
        if (rc == 0)
            rc = cli_fetch_list(&c, messages_path, SHOW_MAX_MESSAGES, &messages, &more);
        client_close(&c);
    }
    free(path);
    free(messages_path);
    if (rc != 0) {
        client_response_free(&resp);
        return rc;
    }
    if (inv->output == CLI_OUTPUT_JSON) {
        json_t *doc = json_pack("{s:O, s:O, s:b}", "conversation", resp.json, "messages",
                                messages, "more", more);
        if (doc)
            output_json(stdout, doc);
        json_decref(doc);
    } else {
        const json_t *conv = resp.json;
        char *who = output_join(json_object_get(conv, "participants"));
        output_line(stdout, "conversation %s: %s, %lld messages", id,
                    output_string(conv, "state", "?"),
                    (long long)output_int(conv, "message_count"));
        output_line(stdout, "participants: %s", who ? who : "?");
        output_line(stdout, "created %s, last activity %s", output_string(conv, "created_at", "?"),
                    output_string(conv, "last_activity_at", "?"));
        free(who);
        size_t i;
        const json_t *m;
        json_array_foreach(messages, i, m) {
            printf("\n");
            print_message(m);
        }
        if (more)
            printf("\n(only the first %d messages are shown)\n", SHOW_MAX_MESSAGES);
    }
    json_decref(messages);
    client_response_free(&resp);
    return CLI_EXIT_OK;
}

/* ---- dead-letters --------------------------------------------------------------------------- */

static int dead_letter_action(const cli_invocation *inv, const char *id, bool requeue)
{
    char *path = cli_api_path("/api/v1/dead-letters/", id, requeue ? "/requeue" : NULL);
    if (!path)
        return CLI_EXIT_PROBLEM;
    client_response resp;
    int rc = cli_request_once(inv, requeue ? "POST" : "DELETE", path, NULL, &resp);
    free(path);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        output_json(stdout, resp.json);
    } else if (requeue) {
        char *to = output_join(json_object_get(resp.json, "routed_to"));
        output_line(stdout, "requeued dead letter %s as message %s to %s", id,
                    output_string(resp.json, "message_id", "?"), to ? to : "?");
        free(to);
    } else {
        output_line(stdout, "purged dead letter %s", id);
    }
    client_response_free(&resp);
    return CLI_EXIT_OK;
}

int cmd_conversations_dead_letters(const cli_invocation *inv)
{
    const char *requeue = cli_flag_value(inv, "requeue");
    const char *purge = cli_flag_value(inv, "purge");
    if (requeue && purge) {
        fprintf(stderr, "caxton: give --requeue ID or --purge ID, not both\n");
        return CLI_EXIT_USAGE;
    }
    if (requeue || purge)
        return dead_letter_action(inv, requeue ? requeue : purge, requeue != NULL);
    static const char *const query[] = {"agent", "agent", NULL};
    json_t *items;
    bool more;
    int rc = fetch(inv, "/api/v1/dead-letters", query, DEAD_LETTERS_MAX, &items, &more);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        emit_items(items, more);
        json_decref(items);
        return CLI_EXIT_OK;
    }
    output_table *t = output_table_new(6, (const char *[]){"id", "agent", "reason", "failed at",
                                                           "attempts", "detail"});
    size_t i;
    const json_t *d;
    json_array_foreach(items, i, d) {
        char attempts[24];
        snprintf(attempts, sizeof attempts, "%lld", (long long)output_int(d, "attempts"));
        if (t)
            output_table_row(t, output_string(d, "id", "?"), output_string(d, "agent", "?"),
                             output_string(d, "reason", "?"), output_string(d, "failed_at", "-"),
                             attempts, output_string(d, "detail", "-"));
    }
    if (t && output_table_rows(t) == 0) {
        printf("no dead letters\n");
    } else if (t) {
        output_table_print(t, stdout);
        printf("\nrequeue one with --requeue ID, delete one with --purge ID\n");
    }
    output_table_free(t);
    if (more)
        printf("(only the first %d are shown)\n", DEAD_LETTERS_MAX);
    json_decref(items);
    return CLI_EXIT_OK;
}

/* ---- messages send -------------------------------------------------------------------------- */

static int put_optional(json_t *body, const char *key, const char *value)
{
    return value ? json_object_set_new(body, key, json_string(value)) : 0;
}

json_t *cli_message_body(const cli_invocation *inv, cx_error *err)
{
    const char *to = cli_flag_value(inv, "to");
    const char *capability = cli_flag_value(inv, "capability");
    const char *text = cli_flag_value(inv, "content");
    if (!to == !capability) {
        cx_error_set(err, CX_EINVAL, "give exactly one of --to AGENT and --capability CAP (any "
                                     "active agent that provides it)");
        return NULL;
    }
    if (!text) {
        cx_error_set(err, CX_EINVAL, "missing --content TEXT");
        return NULL;
    }
    json_t *content;
    if (cli_flag_set(inv, "json-content")) {
        json_error_t jerr;
        content = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        if (!content) {
            cx_error_set(err, CX_EINVAL, "--content is not valid JSON (line %d, column %d: %s); "
                                         "leave out --json-content to send it as text",
                         jerr.line, jerr.column, jerr.text);
            return NULL;
        }
    } else {
        content = json_string(text);
        if (!content) {
            cx_error_set(err, CX_EINVAL, "--content is not valid UTF-8 text");
            return NULL;
        }
    }
    const char *performative = cli_flag_value(inv, "performative");
    json_t *body = json_pack("{s:s, s:o}", "performative", performative ? performative : "request",
                             "content", content);
    if (!body || put_optional(body, to ? "receiver" : "capability", to ? to : capability) != 0 ||
        put_optional(body, "conversation_id", cli_flag_value(inv, "conversation")) != 0 ||
        put_optional(body, "in_reply_to", cli_flag_value(inv, "in-reply-to")) != 0) {
        json_decref(body);
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    return body;
}

static bool is_negative_reply(const json_t *reply)
{
    const char *p = output_string(reply, "performative", "");
    return strcmp(p, "failure") == 0 || strcmp(p, "refuse") == 0 ||
           strcmp(p, "not-understood") == 0;
}

/* A failure, refuse or not-understood reply, on stderr. */
static void print_negative_reply(const json_t *reply)
{
    const json_t *content = json_object_get(reply, "content");
    const char *sender = output_string(reply, "sender", "the agent");
    const char *performative = output_string(reply, "performative", "?");
    const char *reason = output_string(content, "reason", NULL);
    if (reason && strcmp(reason, "no-provider") == 0) {
        char *similar = output_join(json_object_get(content, "similar"));
        output_line(stderr, "caxton: no active agent provides the capability '%s'%s%s",
                    output_string(content, "capability", "?"),
                    similar && strcmp(similar, "-") != 0 ? "; similar capabilities: " : "",
                    similar && strcmp(similar, "-") != 0 ? similar : "");
        free(similar);
        return;
    }
    if (reason) {
        const char *detail = output_string(content, "detail", NULL);
        output_line(stderr, "caxton: %s answered %s: %s%s%s", sender, performative, reason,
                    detail ? ": " : "", detail ? detail : "");
        return;
    }
    output_line(stderr, "caxton: %s answered %s:", sender, performative);
    char *text = json_is_string(content) ? str_dup(json_string_value(content))
                                         : json_dumps(content, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text)
        output_text(stderr, text, "  ");
    free(text);
}

/* 504: the wait ended without a reply; the message is still in flight. */
static int report_no_reply(const cli_invocation *inv, const client_response *resp,
                           uint64_t wait_ms)
{
    const json_t *details = json_object_get(json_object_get(resp->json, "error"), "details");
    const char *conversation = output_string(details, "conversation_id", "?");
    char wait[32];
    units_format_duration(wait_ms, wait, sizeof wait);
    output_line(stderr, "caxton: no reply within %s; the message is still in flight "
                        "(conversation %s)", wait, conversation);
    if (inv->output == CLI_OUTPUT_JSON) {
        json_t *doc = json_pack("{s:s?, s:s?, s:n}", "message_id",
                                output_string(details, "message_id", NULL), "conversation_id",
                                output_string(details, "conversation_id", NULL), "reply");
        if (doc)
            output_json(stdout, doc);
        json_decref(doc);
    } else {
        output_line(stderr, "caxton: follow it with 'caxton conversations show %s'", conversation);
    }
    return CLI_EXIT_PROBLEM;
}

/* A 2xx answer: the reply (with --wait) or where the message went. */
static int report_sent(const cli_invocation *inv, const json_t *doc)
{
    const json_t *reply = json_object_get(doc, "reply");
    bool negative = json_is_object(reply) && is_negative_reply(reply);
    if (inv->output == CLI_OUTPUT_JSON) {
        output_json(stdout, doc);
        if (negative)
            print_negative_reply(reply);
    } else if (negative) {
        print_negative_reply(reply);
    } else if (json_is_object(reply)) {
        print_content(json_object_get(reply, "content"), "");
    } else {
        char *to = output_join(json_object_get(doc, "routed_to"));
        output_line(stdout, "sent message %s to %s (conversation %s)",
                    output_string(doc, "message_id", "?"), to ? to : "?",
                    output_string(doc, "conversation_id", "?"));
        free(to);
    }
    return negative ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
}

int cmd_messages_send(const cli_invocation *inv)
{
    cx_error err;
    json_t *body = cli_message_body(inv, &err);
    if (!body) {
        fprintf(stderr, "caxton: %s\n", err.msg);
        if (err.code == CX_ENOMEM)
            return CLI_EXIT_PROBLEM;
        strbuf usage;
        strbuf_init(&usage);
        if (cli_usage_line(inv->command, &usage) == 0)
            fprintf(stderr, "usage: %s\n", usage.data);
        strbuf_free(&usage);
        return CLI_EXIT_USAGE;
    }
    const char *wait = cli_flag_value(inv, "wait");
    uint64_t wait_ms = 0;
    if (wait)
        units_parse_duration_ms(wait, &wait_ms, &err); /* checked by the parser */
    strbuf path;
    strbuf_init(&path);
    if (strbuf_appends(&path, "/api/v1/messages") != 0 || cli_query_add(&path, "wait", wait) != 0) {
        strbuf_free(&path);
        json_decref(body);
        return out_of_memory();
    }
    client c;
    int rc = cli_connect(inv, &c);
    if (rc == 0) {
        client_response resp;
        int sent = client_request_timeout(&c, "POST", path.data, body, wait_ms + inv->timeout_ms,
                                          &resp, &err);
        if (sent != 0)
            rc = cli_report_request_failure(&c, sent, &err);
        else if (resp.status == 504 && wait)
            rc = report_no_reply(inv, &resp, wait_ms);
        else if (resp.status < 200 || resp.status >= 300)
            rc = cli_report_http_error(&c, &resp);
        else if (resp.json)
            rc = report_sent(inv, resp.json);
        else
            rc = (fprintf(stderr, "caxton: the server at %s answered HTTP %ld without a JSON "
                                  "body\n", c.url, resp.status),
                  CLI_EXIT_PROBLEM);
        client_response_free(&resp);
        client_close(&c);
    }
    strbuf_free(&path);
    json_decref(body);
    return rc;
}
