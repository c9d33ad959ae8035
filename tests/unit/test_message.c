/* Unit tests for messaging/message: FIPA-ACL validation at the door, the
 * canonical JSON form, and the protocol rules of the FIPA interactions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging/message.h"

#define MB (1024u * 1024u)

/* ---- helpers ------------------------------------------------------------------------------- */

/* The smallest valid message from the API. */
static json_t *minimal(void)
{
    json_t *j = json_pack("{s:s, s:s, s:s}", "performative", "request", "receiver", "weather",
                          "content", "what is the weather in Paris?");
    assert_non_null(j);
    return j;
}

static void set_text(json_t *j, const char *key, const char *value)
{
    assert_int_equal(json_object_set_new(j, key, json_string(value)), 0);
}

/* Parses j (and releases it); asserts success. */
static void accept_json(json_t *j, acl_origin origin, acl_message *m)
{
    acl_problem p;
    int rc = acl_message_from_json(j, origin, MB, m, &p);
    if (rc != 0)
        fprintf(stderr, "refused: %s: %s\n", p.field, p.reason);
    assert_int_equal(rc, 0);
    json_decref(j);
}

/* Parses j (and releases it); asserts a refusal with this code and field, whose reason
 * contains fragment (when given). */
static void refuse_json(json_t *j, acl_origin origin, size_t max_size, int code,
                        const char *field, const char *fragment)
{
    acl_message m;
    acl_problem p;
    int rc = acl_message_from_json(j, origin, max_size, &m, &p);
    if (rc != code || strcmp(p.field, field) != 0 || (fragment && !strstr(p.reason, fragment)))
        fprintf(stderr, "got %d field '%s' reason '%s'; wanted %d '%s' with '%s'\n", rc, p.field,
                p.reason, code, field, fragment ? fragment : "");
    assert_int_equal(rc, code);
    assert_string_equal(p.field, field);
    if (fragment)
        assert_non_null(strstr(p.reason, fragment));
    /* A refused message owns nothing. */
    assert_null(m.sender);
    assert_null(m.content);
    json_decref(j);
}

/* minimal() with one field set to a string. */
static json_t *with_text(const char *key, const char *value)
{
    json_t *j = minimal();
    set_text(j, key, value);
    return j;
}

/* n arrays nested in each other: [[[...]]]. */
static json_t *nested_arrays(size_t n)
{
    json_t *inner = json_array();
    assert_non_null(inner);
    for (size_t i = 1; i < n; i++) {
        json_t *outer = json_array();
        assert_non_null(outer);
        assert_int_equal(json_array_append_new(outer, inner), 0);
        inner = outer;
    }
    return inner;
}

/* Releases a deep chain one level at a time (jansson frees recursively). */
static void free_chain(json_t *node)
{
    while (node) {
        json_t *child = json_is_array(node) && json_array_size(node) > 0
                            ? json_incref(json_array_get(node, 0))
                            : NULL;
        json_decref(node);
        node = child;
    }
}

static acl_message reply_of(acl_performative p)
{
    acl_message m;
    memset(&m, 0, sizeof m);
    m.performative = p;
    return m;
}

/* ---- a valid message ----------------------------------------------------------------------- */

static void test_full_round_trip(void **state)
{
    (void)state;
    json_t *in = json_pack(
        "{s:s, s:s, s:s, s:s, s:{s:s, s:[i,i], s:n, s:b}, s:s, s:s, s:s, s:s, s:s, s:s, s:s, "
        "s:s}",
        "message_id", "msg-1.a:b_c", "performative", "request", "sender", "external:cli",
        "receiver", "weather", "content", "city", "Paris", "days", 1, 2, "unit", "metric", 1,
        "conversation_id", "conv.1", "reply_with", "r1", "in_reply_to", "q:0", "reply_by",
        "2030-01-02T03:04:05.678Z", "protocol", "fipa-request", "language", "en", "ontology",
        "weather-v1", "priority", "high");
    assert_non_null(in);
    acl_message m;
    acl_problem p;
    assert_int_equal(acl_message_from_json(in, ACL_FROM_API, MB, &m, &p), 0);
    assert_string_equal(m.message_id, "msg-1.a:b_c");
    assert_int_equal(m.performative, ACL_REQUEST);
    assert_string_equal(m.sender, "external:cli");
    assert_string_equal(m.receiver, "weather");
    assert_null(m.capability);
    assert_string_equal(json_string_value(json_object_get(m.content, "city")), "Paris");
    assert_string_equal(m.conversation_id, "conv.1");
    assert_string_equal(m.reply_with, "r1");
    assert_string_equal(m.in_reply_to, "q:0");
    assert_true(m.reply_by_ms == 1893553445678ull);
    assert_int_equal(m.protocol, ACL_PROTOCOL_REQUEST);
    assert_string_equal(m.language, "en");
    assert_string_equal(m.ontology, "weather-v1");
    assert_int_equal(m.priority, ACL_PRIORITY_HIGH);

    json_t *out = acl_message_to_json(&m);
    assert_non_null(out);
    assert_true(json_equal(out, in)); /* the canonical form of a canonical message is itself */
    assert_true(json_object_get(out, "content") != m.content); /* a copy, not shared */

    acl_message again;
    assert_int_equal(acl_message_from_json(out, ACL_FROM_API, MB, &again, &p), 0);
    assert_string_equal(again.message_id, m.message_id);
    assert_int_equal(again.performative, m.performative);
    assert_string_equal(again.sender, m.sender);
    assert_string_equal(again.receiver, m.receiver);
    assert_true(json_equal(again.content, m.content));
    assert_string_equal(again.conversation_id, m.conversation_id);
    assert_string_equal(again.reply_with, m.reply_with);
    assert_string_equal(again.in_reply_to, m.in_reply_to);
    assert_true(again.reply_by_ms == m.reply_by_ms);
    assert_int_equal(again.protocol, m.protocol);
    assert_string_equal(again.language, m.language);
    assert_string_equal(again.ontology, m.ontology);
    assert_int_equal(again.priority, m.priority);

    acl_message copy;
    assert_int_equal(acl_message_copy(&copy, &m), 0);
    assert_true(copy.sender != m.sender && copy.content != m.content);
    json_t *copy_json = acl_message_to_json(&copy);
    assert_true(json_equal(copy_json, in));
    json_decref(copy_json);

    acl_message_clear(&copy);
    acl_message_clear(&again);
    acl_message_clear(&m);
    acl_message_clear(&m); /* clearing twice is harmless */
    assert_null(m.sender);
    json_decref(out);
    json_decref(in);
}

static void test_defaults(void **state)
{
    (void)state;
    acl_message m;
    accept_json(minimal(), ACL_FROM_API, &m);
    assert_int_equal(strlen(m.message_id), ACL_UUID_LEN);
    assert_string_equal(m.sender, "external:api");
    assert_int_equal(m.priority, ACL_PRIORITY_NORMAL);
    assert_int_equal(m.protocol, ACL_PROTOCOL_NONE);
    assert_string_equal(m.conversation_id, "");
    assert_true(m.reply_by_ms == 0);
    assert_null(m.reply_with);
    assert_null(m.language);

    json_t *out = acl_message_to_json(&m);
    assert_string_equal(json_string_value(json_object_get(out, "priority")), "normal");
    assert_string_equal(json_string_value(json_object_get(out, "sender")), "external:api");
    assert_string_equal(json_string_value(json_object_get(out, "message_id")), m.message_id);
    assert_null(json_object_get(out, "protocol"));
    assert_null(json_object_get(out, "conversation_id"));
    assert_null(json_object_get(out, "reply_by"));
    assert_null(json_object_get(out, "capability"));
    json_decref(out);

    acl_message other;
    accept_json(minimal(), ACL_FROM_API, &other);
    assert_string_not_equal(m.message_id, other.message_id);
    acl_message_clear(&other);
    acl_message_clear(&m);

    /* By capability, from an agent. */
    json_t *j = json_pack("{s:s, s:s, s:s, s:i}", "performative", "inform", "sender", "planner",
                          "capability", "weather-forecast", "content", 42);
    accept_json(j, ACL_FROM_AGENT, &m);
    assert_string_equal(m.sender, "planner");
    assert_string_equal(m.capability, "weather-forecast");
    assert_null(m.receiver);
    assert_int_equal(json_integer_value(m.content), 42);
    acl_message_clear(&m);
}

static void test_uuid_v4(void **state)
{
    (void)state;
    enum { N = 200 };
    static char ids[N][ACL_UUID_LEN + 1];
    for (int i = 0; i < N; i++) {
        cx_error err;
        assert_int_equal(acl_uuid_v4(ids[i], &err), 0);
        const char *u = ids[i];
        assert_int_equal(strlen(u), ACL_UUID_LEN);
        for (int k = 0; k < ACL_UUID_LEN; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23)
                assert_int_equal(u[k], '-');
            else
                assert_non_null(strchr("0123456789abcdef", u[k]));
        }
        assert_int_equal(u[14], '4');
        assert_non_null(strchr("89ab", u[19]));
        for (int k = 0; k < i; k++)
            assert_string_not_equal(ids[k], u);
    }
}

/* ---- refusals ------------------------------------------------------------------------------ */

static void test_not_an_object(void **state)
{
    (void)state;
    refuse_json(json_array(), ACL_FROM_API, MB, CX_EINVAL, "message", "got an array");
    refuse_json(json_string("request"), ACL_FROM_API, MB, CX_EINVAL, "message", "a string");
    refuse_json(json_null(), ACL_FROM_API, MB, CX_EINVAL, "message", "JSON object");
    refuse_json(NULL, ACL_FROM_API, MB, CX_EINVAL, "message", "JSON object");
}

static void test_unknown_fields(void **state)
{
    (void)state;
    refuse_json(with_text("recever", "x"), ACL_FROM_API, MB, CX_EINVAL, "recever",
                "did you mean 'receiver'?");
    refuse_json(with_text("reply-with", "x"), ACL_FROM_API, MB, CX_EINVAL, "reply-with",
                "did you mean 'reply_with'?");
    refuse_json(with_text("zzzzzzzz", "x"), ACL_FROM_API, MB, CX_EINVAL, "zzzzzzzz",
                "a message has only message_id");

    /* A key with an embedded NUL must not pass as the field its prefix names. */
    json_t *j = minimal();
    assert_int_equal(json_object_setn_new_nocheck(j, "content\0x", 9, json_string("y")), 0);
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "content?x", "unknown field");

    /* A long hostile key is cut to fit the field label. */
    char key[300];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    j = with_text(key, "x");
    acl_message m;
    acl_problem p;
    assert_int_equal(acl_message_from_json(j, ACL_FROM_API, MB, &m, &p), CX_EINVAL);
    assert_int_equal(strlen(p.field), sizeof p.field - 1);
    assert_true(strlen(p.reason) < sizeof p.reason);
    json_decref(j);
}

static void test_performatives(void **state)
{
    (void)state;
    refuse_json(with_text("performative", "reqest"), ACL_FROM_API, MB, CX_EINVAL,
                "performative", "did you mean 'request'?");
    refuse_json(with_text("performative", "QUERY_FI"), ACL_FROM_API, MB, CX_EINVAL,
                "performative", "did you mean 'query-if'?");
    refuse_json(with_text("performative", "xyzzy-plugh"), ACL_FROM_API, MB, CX_EINVAL,
                "performative", "expected one of: request, inform");
    char longtext[4096];
    memset(longtext, 'r', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    refuse_json(with_text("performative", longtext), ACL_FROM_API, MB, CX_EINVAL,
                "performative", "unknown performative");
    json_t *j = minimal();
    json_object_del(j, "performative");
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "performative", "required");

    acl_message m;
    accept_json(with_text("performative", "QUERY_IF"), ACL_FROM_API, &m);
    assert_int_equal(m.performative, ACL_QUERY_IF);
    json_t *out = acl_message_to_json(&m);
    assert_string_equal(json_string_value(json_object_get(out, "performative")), "query-if");
    json_decref(out);
    acl_message_clear(&m);
    accept_json(with_text("performative", "Accept_Proposal"), ACL_FROM_API, &m);
    assert_int_equal(m.performative, ACL_ACCEPT_PROPOSAL);
    acl_message_clear(&m);
}

static void test_receiver_and_capability(void **state)
{
    (void)state;
    refuse_json(with_text("capability", "forecast"), ACL_FROM_API, MB, CX_EINVAL, "receiver",
                "both receiver and capability are set; use one");
    json_t *j = minimal();
    json_object_del(j, "receiver");
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "receiver",
                "neither receiver nor capability is set");
    refuse_json(with_text("receiver", "external:api"), ACL_FROM_API, MB, CX_EINVAL, "receiver",
                "cannot be sent to its own sender");
    j = json_pack("{s:s, s:s, s:s, s:s}", "performative", "inform", "sender", "planner",
                  "receiver", "planner", "content", "x");
    refuse_json(j, ACL_FROM_AGENT, MB, CX_EINVAL, "receiver", "\"planner\"");

    /* An agent may answer an API client. */
    acl_message m;
    j = json_pack("{s:s, s:s, s:s, s:s}", "performative", "inform", "sender", "weather",
                  "receiver", "external:cli", "content", "sunny");
    accept_json(j, ACL_FROM_AGENT, &m);
    assert_string_equal(m.receiver, "external:cli");
    acl_message_clear(&m);
}

static void test_content(void **state)
{
    (void)state;
    json_t *j = minimal();
    json_object_del(j, "content");
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "content", "required for 'request'");

    acl_message m;
    j = minimal();
    json_object_del(j, "content");
    set_text(j, "performative", "cancel");
    accept_json(j, ACL_FROM_API, &m);
    assert_null(m.content);
    json_t *out = acl_message_to_json(&m);
    assert_null(json_object_get(out, "content"));
    json_decref(out);
    acl_message copy;
    assert_int_equal(acl_message_copy(&copy, &m), 0);
    assert_null(copy.content);
    acl_message_clear(&copy);
    acl_message_clear(&m);

    /* Any JSON value is content, null included. */
    json_t *values[] = {json_null(), json_true(), json_real(1.5), json_array(), json_object()};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        j = minimal();
        assert_int_equal(json_object_set_new(j, "content", values[i]), 0);
        accept_json(j, ACL_FROM_API, &m);
        assert_non_null(m.content);
        acl_message_clear(&m);
    }
}

static void test_wrong_types(void **state)
{
    (void)state;
    static const char *const string_fields[] = {
        "message_id", "performative", "sender", "receiver", "conversation_id", "reply_with",
        "in_reply_to", "reply_by", "protocol", "language", "ontology", "priority", "capability",
    };
    for (size_t i = 0; i < sizeof string_fields / sizeof string_fields[0]; i++) {
        const char *f = string_fields[i];
        json_t *bad[] = {json_integer(7), json_object(), json_array(), json_true()};
        const char *kinds[] = {"got a number", "got an object", "got an array", "got a boolean"};
        for (size_t k = 0; k < 4; k++) {
            json_t *j = minimal();
            if (strcmp(f, "capability") == 0)
                json_object_del(j, "receiver");
            assert_int_equal(json_object_set_new(j, f, bad[k]), 0);
            refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, f, kinds[k]);
        }
        json_t *j = minimal();
        assert_int_equal(json_object_set_new(j, f, json_null()), 0);
        refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, f, "leave the field out");
    }
}

static void test_ids(void **state)
{
    (void)state;
    static const char *const id_fields[] = {"message_id", "conversation_id", "reply_with",
                                            "in_reply_to"};
    char longest[ACL_ID_MAX + 2];
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0'; /* ACL_ID_MAX + 1 characters */
    for (size_t i = 0; i < 4; i++) {
        const char *f = id_fields[i];
        refuse_json(with_text(f, "a b"), ACL_FROM_API, MB, CX_EINVAL, f, "position 2");
        refuse_json(with_text(f, "a/b"), ACL_FROM_API, MB, CX_EINVAL, f, "not allowed");
        refuse_json(with_text(f, "caf\xc3\xa9"), ACL_FROM_API, MB, CX_EINVAL, f, "not allowed");
        refuse_json(with_text(f, ""), ACL_FROM_API, MB, CX_EINVAL, f, "1 to 128");
        refuse_json(with_text(f, longest), ACL_FROM_API, MB, CX_EINVAL, f, "it has 129");
        longest[ACL_ID_MAX] = '\0';
        acl_message m;
        accept_json(with_text(f, longest), ACL_FROM_API, &m);
        acl_message_clear(&m);
        longest[ACL_ID_MAX] = 'a';
    }
}

static void test_names(void **state)
{
    (void)state;
    char longest[ACL_NAME_MAX + 2];
    memset(longest, 'n', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    refuse_json(with_text("receiver", "two words"), ACL_FROM_API, MB, CX_EINVAL, "receiver",
                "without spaces");
    refuse_json(with_text("receiver", "tab\there"), ACL_FROM_API, MB, CX_EINVAL, "receiver",
                "position 4");
    refuse_json(with_text("receiver", "\xc3\xa9t\xc3\xa9"), ACL_FROM_API, MB, CX_EINVAL,
                "receiver", "non-ASCII");
    refuse_json(with_text("receiver", ""), ACL_FROM_API, MB, CX_EINVAL, "receiver", "1 to 128");
    refuse_json(with_text("receiver", longest), ACL_FROM_API, MB, CX_EINVAL, "receiver",
                "it has 129");
    json_t *j = minimal();
    json_object_del(j, "receiver");
    set_text(j, "capability", "has space");
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "capability", "without spaces");
    longest[ACL_NAME_MAX] = '\0';
    acl_message m;
    accept_json(with_text("receiver", longest), ACL_FROM_API, &m);
    acl_message_clear(&m);
}

static void test_sender(void **state)
{
    (void)state;
    refuse_json(with_text("sender", "alice"), ACL_FROM_API, MB, CX_EINVAL, "sender",
                "use \"external:<client>\"");
    refuse_json(with_text("sender", "external:"), ACL_FROM_API, MB, CX_EINVAL, "sender",
                "not allowed from the API");
    refuse_json(with_text("sender", "external:a:b"), ACL_FROM_API, MB, CX_EINVAL, "sender",
                "not allowed from the API");
    refuse_json(with_text("sender", "External:cli"), ACL_FROM_API, MB, CX_EINVAL, "sender",
                "not allowed from the API");
    char sender[80];
    snprintf(sender, sizeof sender, "external:%065d", 0); /* a 65-character client */
    refuse_json(with_text("sender", sender), ACL_FROM_API, MB, CX_EINVAL, "sender", "1 to 64");
    acl_message m;
    snprintf(sender, sizeof sender, "external:%064d", 0);
    accept_json(with_text("sender", sender), ACL_FROM_API, &m);
    acl_message_clear(&m);
    accept_json(with_text("sender", "external:my-cli.v2_x"), ACL_FROM_API, &m);
    assert_string_equal(m.sender, "external:my-cli.v2_x");
    acl_message_clear(&m);

    /* From an agent the sender is its name: required, and never an API client's. */
    refuse_json(minimal(), ACL_FROM_AGENT, MB, CX_EINVAL, "sender", "required");
    refuse_json(with_text("sender", "external:api2"), ACL_FROM_AGENT, MB, CX_EINVAL, "sender",
                "an agent cannot send as");
    refuse_json(with_text("sender", "bad name"), ACL_FROM_AGENT, MB, CX_EINVAL, "sender",
                "without spaces");
    accept_json(with_text("sender", "planner"), ACL_FROM_AGENT, &m);
    assert_string_equal(m.sender, "planner");
    acl_message_clear(&m);
}

static void test_reply_by(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "tomorrow",
        "2026-01-15",
        "2026-01-15T10:00:00",
        "2026-01-15 10:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-15T24:00:00Z",
        "2026-01-15T10:60:00Z",
        "2026-01-15T10:00:00.Z",
        "2026-01-15T10:00:00+2:00",
        "2026-01-15T10:00:00+24:00",
        "2026-01-15T10:00:00+0200",
        "2026-01-15T10:00:00Zjunk",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:30:00+01:00",
        "2026-1-15T10:00:00Z",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuse_json(with_text("reply_by", bad[i]), ACL_FROM_API, MB, CX_EINVAL, "reply_by",
                    "not an RFC 3339 date-time");
    char huge[1000];
    snprintf(huge, sizeof huge, "2026-01-15T10:00:00.%0900dZ", 1);
    refuse_json(with_text("reply_by", huge), ACL_FROM_API, MB, CX_EINVAL, "reply_by", "RFC 3339");

    static const struct {
        const char *text;
        uint64_t ms;
    } good[] = {
        {"2026-01-15T10:00:00Z", 1768471200000ull},
        {"2026-01-15t10:00:00z", 1768471200000ull},
        {"2026-01-15T12:00:00+02:00", 1768471200000ull},
        {"2026-01-15T05:30:00-04:30", 1768471200000ull},
        {"2026-01-15T10:00:00.5Z", 1768471200500ull},
        {"2026-01-15T12:00:00.123456789+02:00", 1768471200123ull},
        {"2016-12-31T23:59:60Z", 1483228799000ull}, /* a leap second */
        {"2000-01-01T00:00:00Z", 946684800000ull},  /* in the past: the router times it out */
        {"2024-02-29T00:00:00Z", 1709164800000ull},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        acl_message m;
        accept_json(with_text("reply_by", good[i].text), ACL_FROM_API, &m);
        assert_true(m.reply_by_ms == good[i].ms);
        acl_message_clear(&m);
    }
}

static void test_size_limit(void **state)
{
    (void)state;
    acl_message m;
    acl_problem p;
    json_t *j = minimal();
    assert_int_equal(acl_message_from_json(j, ACL_FROM_API, MB, &m, &p), 0);
    json_t *canon = acl_message_to_json(&m);
    char *text = json_dumps(canon, JSON_COMPACT);
    size_t size = strlen(text);
    free(text);
    json_decref(canon);
    char id[ACL_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", m.message_id);
    acl_message_clear(&m);

    /* The limit applies to the canonical form, so the same message with the same id fits
     * exactly at its size and not one byte under. */
    set_text(j, "message_id", id);
    assert_int_equal(acl_message_from_json(j, ACL_FROM_API, size, &m, &p), 0);
    acl_message_clear(&m);
    char expected[128];
    snprintf(expected, sizeof expected, "the message is %zu bytes; the limit is %zu", size,
             size - 1);
    refuse_json(j, ACL_FROM_API, size - 1, CX_ETOOBIG, "message", expected);

    /* Content that is over the limit on its own stops the walk early. */
    char big[2048];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    refuse_json(with_text("content", big), ACL_FROM_API, 100, CX_ETOOBIG, "content",
                "over the message size limit of 100 bytes");
    j = minimal();
    json_t *many = json_array();
    for (int i = 0; i < 10000; i++)
        assert_int_equal(json_array_append_new(many, json_integer(i)), 0);
    assert_int_equal(json_object_set_new(j, "content", many), 0);
    refuse_json(j, ACL_FROM_API, 1000, CX_ETOOBIG, "content", "size limit");
}

static void test_protocol_priority_and_text(void **state)
{
    (void)state;
    refuse_json(with_text("protocol", "fipa-reqest"), ACL_FROM_API, MB, CX_EINVAL, "protocol",
                "did you mean 'fipa-request'?");
    refuse_json(with_text("protocol", "english-auction"), ACL_FROM_API, MB, CX_EINVAL,
                "protocol", "expected one of: fipa-request, fipa-query, fipa-contract-net");
    refuse_json(with_text("protocol", ""), ACL_FROM_API, MB, CX_EINVAL, "protocol",
                "unknown protocol");
    refuse_json(with_text("priority", "urgent"), ACL_FROM_API, MB, CX_EINVAL, "priority",
                "expected one of: low, normal, high");
    refuse_json(with_text("priority", "hig"), ACL_FROM_API, MB, CX_EINVAL, "priority",
                "did you mean 'high'?");

    acl_message m;
    accept_json(with_text("protocol", "FIPA_CONTRACT_NET"), ACL_FROM_API, &m);
    assert_int_equal(m.protocol, ACL_PROTOCOL_CONTRACT_NET);
    acl_message_clear(&m);
    accept_json(with_text("priority", "LOW"), ACL_FROM_API, &m);
    assert_int_equal(m.priority, ACL_PRIORITY_LOW);
    acl_message_clear(&m);

    char text[ACL_FREE_TEXT_MAX + 2];
    memset(text, 'o', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    refuse_json(with_text("ontology", text), ACL_FROM_API, MB, CX_EINVAL, "ontology",
                "257 bytes long; the limit is 256");
    refuse_json(with_text("language", "en\nus"), ACL_FROM_API, MB, CX_EINVAL, "language",
                "control character");
    text[ACL_FREE_TEXT_MAX] = '\0';
    accept_json(with_text("ontology", text), ACL_FROM_API, &m);
    acl_message_clear(&m);
    accept_json(with_text("language", "fran\xc3\xa7" "ais naturel"), ACL_FROM_API, &m);
    assert_string_equal(m.language, "fran\xc3\xa7" "ais naturel");
    acl_message_clear(&m);
}

static void test_deep_content(void **state)
{
    (void)state;
    acl_message m, copy;
    json_t *j = minimal();
    assert_int_equal(json_object_set_new(j, "content", nested_arrays(ACL_CONTENT_DEPTH_MAX)), 0);
    accept_json(j, ACL_FROM_API, &m);
    assert_int_equal(acl_message_copy(&copy, &m), 0);
    json_t *out = acl_message_to_json(&copy);
    assert_non_null(out);
    json_decref(out);
    acl_message_clear(&copy);
    acl_message_clear(&m);

    static const size_t too_deep[] = {ACL_CONTENT_DEPTH_MAX + 1, 1000, 100000};
    for (size_t i = 0; i < 3; i++) {
        j = minimal();
        json_t *content = nested_arrays(too_deep[i]);
        assert_int_equal(json_object_set(j, "content", content), 0);
        acl_problem p;
        assert_int_equal(acl_message_from_json(j, ACL_FROM_API, 64 * MB, &m, &p), CX_EINVAL);
        assert_string_equal(p.field, "content");
        assert_non_null(strstr(p.reason, "more than 256 levels deep"));
        json_decref(j);
        free_chain(content);
    }

    /* Objects nest the same way. */
    json_t *inner = json_object();
    for (int i = 0; i < ACL_CONTENT_DEPTH_MAX; i++) {
        json_t *outer = json_object();
        assert_int_equal(json_object_set_new(outer, "k", inner), 0);
        inner = outer;
    }
    j = minimal();
    assert_int_equal(json_object_set_new(j, "content", inner), 0);
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "content", "levels deep");
}

static void test_shared_subtree_bomb(void **state)
{
    (void)state;
    /* 64 levels of [x, x] with x shared: 2^64 nodes when walked, a few hundred in memory. */
    json_t *node = json_string("boom");
    for (int i = 0; i < 64; i++) {
        json_t *pair = json_array();
        assert_int_equal(json_array_append(pair, node), 0);
        assert_int_equal(json_array_append_new(pair, node), 0);
        node = pair;
    }
    json_t *j = minimal();
    assert_int_equal(json_object_set_new(j, "content", node), 0);
    refuse_json(j, ACL_FROM_API, MB, CX_ETOOBIG, "content", "size limit");
}

static void test_nul_and_utf8(void **state)
{
    (void)state;
    json_t *j = minimal();
    assert_int_equal(json_object_set_new(j, "receiver", json_stringn("ab\0cd", 5)), 0);
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "receiver", "NUL character");
    j = minimal();
    assert_int_equal(json_object_set_new(j, "language", json_stringn("en\0", 3)), 0);
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "language", "NUL character");
    j = minimal();
    assert_int_equal(json_object_set_new(j, "performative", json_stringn("request\0x", 9)), 0);
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "performative", "NUL character");
    j = minimal();
    assert_int_equal(json_object_set_new(j, "ontology", json_stringn_nocheck("\xff\xfe", 2)), 0);
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "ontology", "not valid UTF-8");

    j = minimal();
    assert_int_equal(json_object_set_new(j, "content", json_pack("[s, {s:o}]", "ok", "k",
                                                                 json_stringn("a\0b", 3))),
                     0);
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "content", "NUL character");
    j = minimal();
    json_t *obj = json_object();
    assert_int_equal(json_object_setn_new_nocheck(obj, "k\0ey", 4, json_true()), 0);
    assert_int_equal(json_object_set_new(j, "content", obj), 0);
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "content", "NUL character");
    j = minimal();
    assert_int_equal(json_object_set_new(j, "content", json_stringn_nocheck("\xc3", 1)), 0);
    refuse_json(j, ACL_FROM_API, MB, CX_EINVAL, "content", "not valid UTF-8");
}

static void test_problem_is_optional(void **state)
{
    (void)state;
    acl_message m;
    json_t *j = with_text("performative", "nope");
    assert_int_equal(acl_message_from_json(j, ACL_FROM_API, MB, &m, NULL), CX_EINVAL);
    json_decref(j);
    j = minimal();
    assert_int_equal(acl_message_from_json(j, ACL_FROM_API, MB, &m, NULL), 0);
    acl_message_clear(&m);
    json_decref(j);
}

static void test_name_tables(void **state)
{
    (void)state;
    for (int i = 0; i < ACL_PERFORMATIVE_COUNT; i++)
        assert_int_equal(acl_performative_parse(acl_performative_name((acl_performative)i)), i);
    assert_string_equal(acl_performative_name(ACL_NOT_UNDERSTOOD), "not-understood");
    assert_int_equal(acl_performative_parse("NOT_UNDERSTOOD"), ACL_NOT_UNDERSTOOD);
    assert_int_equal(acl_performative_parse(NULL), -1);
    assert_int_equal(acl_performative_parse(""), -1);
    assert_string_equal(acl_protocol_name(ACL_PROTOCOL_NONE), "");
    assert_string_equal(acl_protocol_name(ACL_PROTOCOL_QUERY), "fipa-query");
    assert_int_equal(acl_protocol_parse("fipa-query"), ACL_PROTOCOL_QUERY);
    assert_int_equal(acl_protocol_parse(""), -1);
    assert_int_equal(acl_protocol_parse("fipa"), -1);
    assert_string_equal(acl_priority_name(ACL_PRIORITY_HIGH), "high");
    assert_int_equal(acl_priority_parse("Normal"), ACL_PRIORITY_NORMAL);
    assert_int_equal(acl_priority_parse("medium"), -1);
}

/* ---- protocol rules ------------------------------------------------------------------------ */

static void test_start(void **state)
{
    (void)state;
    acl_interaction it;
    acl_message m = reply_of(ACL_REQUEST);
    assert_true(acl_interaction_start(&m, &it));
    assert_int_equal(it.protocol, ACL_PROTOCOL_REQUEST);
    assert_int_equal(it.opened_by, ACL_REQUEST);
    assert_int_equal(it.step, ACL_STEP_OPEN);
    m = reply_of(ACL_QUERY_REF);
    assert_true(acl_interaction_start(&m, &it));
    assert_int_equal(it.protocol, ACL_PROTOCOL_QUERY);
    m = reply_of(ACL_CFP);
    m.reply_by_ms = 5000;
    assert_true(acl_interaction_start(&m, &it));
    assert_int_equal(it.protocol, ACL_PROTOCOL_CONTRACT_NET);
    assert_true(it.reply_by_ms == 5000);
    m = reply_of(ACL_INFORM);
    assert_false(acl_interaction_start(&m, &it));
    m.protocol = ACL_PROTOCOL_REQUEST;
    assert_true(acl_interaction_start(&m, &it));
    m = reply_of(ACL_REQUEST);
    m.reply_by_ms = 5000; /* only a cfp's reply_by is a bidding deadline */
    assert_true(acl_interaction_start(&m, &it));
    assert_true(it.reply_by_ms == 0);
    m = reply_of(ACL_CANCEL);
    m.protocol = ACL_PROTOCOL_REQUEST;
    assert_false(acl_interaction_start(&m, &it));
}

static int answer(acl_interaction *it, acl_performative p, uint64_t now, char *reason)
{
    acl_message r = reply_of(p);
    return acl_interaction_advance(it, &r, now, reason, 256);
}

static void test_fipa_request(void **state)
{
    (void)state;
    char reason[256];
    acl_interaction it;
    acl_message m = reply_of(ACL_REQUEST);
    assert_true(acl_interaction_start(&m, &it));
    assert_int_equal(answer(&it, ACL_AGREE, 0, reason), 0);
    assert_int_equal(it.step, ACL_STEP_AGREED);
    assert_int_equal(answer(&it, ACL_AGREE, 0, reason), CX_EINVAL);
    assert_string_equal(reason, "'agree' does not follow an 'agree' in fipa-request; "
                                "expected inform or failure");
    assert_int_equal(answer(&it, ACL_NOT_UNDERSTOOD, 0, reason), CX_EINVAL);
    assert_int_equal(answer(&it, ACL_INFORM, 0, reason), 0);
    assert_int_equal(it.step, ACL_STEP_DONE);
    assert_int_equal(answer(&it, ACL_INFORM, 0, reason), CX_EINVAL);
    assert_non_null(strstr(reason, "the interaction is already finished"));

    assert_true(acl_interaction_start(&m, &it));
    assert_int_equal(answer(&it, ACL_PROPOSE, 0, reason), CX_EINVAL);
    assert_string_equal(reason, "'propose' does not answer a 'request' in fipa-request; "
                                "expected agree, refuse, inform, failure or not-understood");
    assert_int_equal(it.step, ACL_STEP_OPEN);
    assert_int_equal(answer(&it, ACL_REFUSE, 0, reason), 0);
    assert_int_equal(it.step, ACL_STEP_DONE);

    /* A result straight away, and a failure after agreeing. */
    assert_true(acl_interaction_start(&m, &it));
    assert_int_equal(answer(&it, ACL_INFORM, 0, reason), 0);
    assert_int_equal(it.step, ACL_STEP_DONE);
    assert_true(acl_interaction_start(&m, &it));
    assert_int_equal(answer(&it, ACL_AGREE, 0, reason), 0);
    assert_int_equal(answer(&it, ACL_FAILURE, 0, reason), 0);
    assert_int_equal(it.step, ACL_STEP_DONE);

    /* A reply that names another protocol does not fit. */
    assert_true(acl_interaction_start(&m, &it));
    acl_message r = reply_of(ACL_AGREE);
    r.protocol = ACL_PROTOCOL_QUERY;
    assert_int_equal(acl_interaction_advance(&it, &r, 0, reason, sizeof reason), CX_EINVAL);
    assert_non_null(strstr(reason, "says protocol fipa-query"));
    r.protocol = ACL_PROTOCOL_REQUEST;
    assert_int_equal(acl_interaction_advance(&it, &r, 0, reason, sizeof reason), 0);
    /* A reason buffer is optional. */
    assert_int_equal(acl_interaction_advance(&it, &r, 0, NULL, 0), CX_EINVAL);
}

static void test_fipa_query(void **state)
{
    (void)state;
    char reason[256];
    acl_interaction it;
    acl_message m = reply_of(ACL_QUERY_IF);
    assert_true(acl_interaction_start(&m, &it));
    assert_int_equal(answer(&it, ACL_AGREE, 0, reason), CX_EINVAL);
    assert_string_equal(reason, "'agree' does not answer a 'query-if' in fipa-query; "
                                "expected inform, refuse, failure or not-understood");
    assert_int_equal(answer(&it, ACL_INFORM, 0, reason), 0);
    assert_int_equal(it.step, ACL_STEP_DONE);
    assert_true(acl_interaction_start(&m, &it));
    assert_int_equal(answer(&it, ACL_NOT_UNDERSTOOD, 0, reason), 0);
    assert_int_equal(it.step, ACL_STEP_DONE);
}

static void test_contract_net(void **state)
{
    (void)state;
    char reason[256];
    acl_interaction it;
    acl_message cfp = reply_of(ACL_CFP);
    cfp.reply_by_ms = 1000000;
    assert_true(acl_interaction_start(&cfp, &it));
    assert_int_equal(answer(&it, ACL_ACCEPT_PROPOSAL, 1000, reason), CX_EINVAL);
    assert_non_null(strstr(reason, "expected propose, refuse or not-understood"));
    assert_int_equal(answer(&it, ACL_PROPOSE, 1000000, reason), 0); /* at the deadline */
    assert_int_equal(it.step, ACL_STEP_PROPOSED);
    assert_int_equal(answer(&it, ACL_INFORM, 1000, reason), CX_EINVAL);
    assert_string_equal(reason, "'inform' does not follow a 'propose' in fipa-contract-net; "
                                "expected accept-proposal or reject-proposal");
    assert_int_equal(answer(&it, ACL_ACCEPT_PROPOSAL, 2000000, reason), 0);
    assert_int_equal(it.step, ACL_STEP_ACCEPTED);
    assert_int_equal(answer(&it, ACL_INFORM, 2000000, reason), 0);
    assert_int_equal(it.step, ACL_STEP_DONE);

    /* Past the bidding deadline a proposal is refused; the cfp stays open for the router to
     * time out, and not-understood still fits. */
    assert_true(acl_interaction_start(&cfp, &it));
    assert_int_equal(answer(&it, ACL_PROPOSE, 1000001, reason), CX_EINVAL);
    assert_non_null(strstr(reason, "after the bidding deadline"));
    assert_non_null(strstr(reason, "1970-01-01T00:16:40.000Z"));
    assert_int_equal(it.step, ACL_STEP_OPEN);
    assert_int_equal(answer(&it, ACL_NOT_UNDERSTOOD, 1000001, reason), 0);

    /* Without a deadline, any time fits; a rejection ends it. */
    cfp.reply_by_ms = 0;
    assert_true(acl_interaction_start(&cfp, &it));
    assert_int_equal(answer(&it, ACL_PROPOSE, UINT64_MAX, reason), 0);
    assert_int_equal(answer(&it, ACL_REJECT_PROPOSAL, UINT64_MAX, reason), 0);
    assert_int_equal(it.step, ACL_STEP_DONE);
}

static void test_cancel_ends(void **state)
{
    (void)state;
    char reason[256];
    acl_interaction it;
    acl_message m = reply_of(ACL_REQUEST);
    assert_true(acl_interaction_start(&m, &it));
    assert_int_equal(answer(&it, ACL_AGREE, 0, reason), 0);
    assert_int_equal(answer(&it, ACL_CANCEL, 0, reason), 0);
    assert_int_equal(it.step, ACL_STEP_DONE);
    assert_int_equal(answer(&it, ACL_INFORM, 0, reason), CX_EINVAL);
    assert_non_null(strstr(reason, "the interaction is already finished"));

    acl_message cfp = reply_of(ACL_CFP);
    cfp.reply_by_ms = 10;
    assert_true(acl_interaction_start(&cfp, &it));
    assert_int_equal(answer(&it, ACL_CANCEL, 99, reason), 0); /* even past the deadline */
    assert_int_equal(it.step, ACL_STEP_DONE);
    assert_int_equal(answer(&it, ACL_CANCEL, 99, reason), CX_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_round_trip),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_uuid_v4),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_performatives),
        cmocka_unit_test(test_receiver_and_capability),
        cmocka_unit_test(test_content),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_sender),
        cmocka_unit_test(test_reply_by),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_protocol_priority_and_text),
        cmocka_unit_test(test_deep_content),
        cmocka_unit_test(test_shared_subtree_bomb),
        cmocka_unit_test(test_nul_and_utf8),
        cmocka_unit_test(test_problem_is_optional),
        cmocka_unit_test(test_name_tables),
        cmocka_unit_test(test_start),
        cmocka_unit_test(test_fipa_request),
        cmocka_unit_test(test_fipa_query),
        cmocka_unit_test(test_contract_net),
        cmocka_unit_test(test_cancel_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
