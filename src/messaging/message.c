/* FIPA-ACL messages: validation of the JSON form, the canonical JSON form,
 * and the protocol rules of the common FIPA interactions.
 *
 * Validation is the door: everything an agent or the router later reads from
 * an acl_message has been checked here (types, character sets, lengths, the
 * receiver/capability choice, the size of the serialized whole), so nothing
 * downstream re-checks. Content is any JSON value; it is walked once with an
 * explicit stack, never by recursion, so a hostile nesting depth or a shared
 * sub-tree cannot exhaust the C stack or take unbounded time: the walk stops
 * at ACL_CONTENT_DEPTH_MAX levels and once the content is provably larger
 * than the size limit.
 *
 * The protocol rules are a small table of (protocol, step, answer -> next
 * step); the "expected ..." text of a refusal is built from the same table,
 * so the message and the rule cannot drift apart. */
#include "messaging/message.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"

#define ACL_CLIENT_MAX 64     /* the <client> of "external:<client>" */
#define ACL_KEYWORD_MAX 32    /* longest performative/protocol/priority text worth matching */
#define ACL_TIME_TEXT_MAX 64  /* longest reply_by text worth parsing */
#define ACL_EXTERNAL_PREFIX "external:"

/* ---- name tables --------------------------------------------------------------------------- */

static const char *const performative_names[ACL_PERFORMATIVE_COUNT] = {
    [ACL_REQUEST] = "request",
    [ACL_INFORM] = "inform",
    [ACL_QUERY_IF] = "query-if",
    [ACL_QUERY_REF] = "query-ref",
    [ACL_PROPOSE] = "propose",
    [ACL_ACCEPT_PROPOSAL] = "accept-proposal",
    [ACL_REJECT_PROPOSAL] = "reject-proposal",
    [ACL_AGREE] = "agree",
    [ACL_REFUSE] = "refuse",
    [ACL_FAILURE] = "failure",
    [ACL_NOT_UNDERSTOOD] = "not-understood",
    [ACL_CFP] = "cfp",
    [ACL_CANCEL] = "cancel",
    [ACL_SUBSCRIBE] = "subscribe",
    [ACL_CONFIRM] = "confirm",
    [ACL_DISCONFIRM] = "disconfirm",
};

/* Index 0 is "none"; parsing never matches it. */
static const char *const protocol_names[] = {
    [ACL_PROTOCOL_NONE] = "",
    [ACL_PROTOCOL_REQUEST] = "fipa-request",
    [ACL_PROTOCOL_QUERY] = "fipa-query",
    [ACL_PROTOCOL_CONTRACT_NET] = "fipa-contract-net",
};
#define PROTOCOL_COUNT (sizeof protocol_names / sizeof protocol_names[0])

static const char *const priority_names[] = {
    [ACL_PRIORITY_LOW] = "low",
    [ACL_PRIORITY_NORMAL] = "normal",
    [ACL_PRIORITY_HIGH] = "high",
};
#define PRIORITY_COUNT (sizeof priority_names / sizeof priority_names[0])

static const char *const field_names[] = {
    "message_id", "performative", "sender", "receiver", "capability", "content",
    "conversation_id", "reply_with", "in_reply_to", "reply_by", "protocol", "language",
    "ontology", "priority",
};
#define FIELD_COUNT (sizeof field_names / sizeof field_names[0])

/* Lower case with '_' read as '-', into buf; false when text does not fit. */
static bool keyword_normalize(const char *text, char *buf, size_t size)
{
    size_t n = strlen(text);
    if (n >= size)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        buf[i] = c == '_' ? '-' : c;
    }
    buf[n] = '\0';
    return true;
}

static int keyword_find(const char *text, const char *const *names, size_t count, size_t first)
{
    char buf[ACL_KEYWORD_MAX];
    if (!text || !keyword_normalize(text, buf, sizeof buf))
        return -1;
    for (size_t i = first; i < count; i++)
        if (strcmp(buf, names[i]) == 0)
            return (int)i;
    return -1;
}

static const char *keyword_suggest(const char *text, const char *const *names, size_t count)
{
    char buf[ACL_KEYWORD_MAX];
    if (!keyword_normalize(text, buf, sizeof buf))
        return NULL;
    return text_suggest(buf, names, count);
}

const char *acl_performative_name(acl_performative p)
{
    return (unsigned)p < ACL_PERFORMATIVE_COUNT ? performative_names[p] : "unknown";
}

int acl_performative_parse(const char *text)
{
    return keyword_find(text, performative_names, ACL_PERFORMATIVE_COUNT, 0);
}

const char *acl_protocol_name(acl_protocol p)
{
    return (unsigned)p < PROTOCOL_COUNT ? protocol_names[p] : "";
}

int acl_protocol_parse(const char *text)
{
    return keyword_find(text, protocol_names, PROTOCOL_COUNT, ACL_PROTOCOL_REQUEST);
}

const char *acl_priority_name(acl_priority p)
{
    return (unsigned)p < PRIORITY_COUNT ? priority_names[p] : "normal";
}

int acl_priority_parse(const char *text)
{
    return keyword_find(text, priority_names, PRIORITY_COUNT, 0);
}

/* ---- UUID ---------------------------------------------------------------------------------- */

int acl_uuid_v4(char out[ACL_UUID_LEN + 1], cx_error *err)
{
    uint8_t b[16];
    int rc = random_bytes(b, sizeof b, err);
    if (rc != 0)
        return rc;
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char hex[33];
    hex_encode(b, sizeof b, hex);
    snprintf(out, ACL_UUID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
             hex + 16, hex + 20);
    return 0;
}

/* ---- refusals ------------------------------------------------------------------------------ */

static int refuse(acl_problem *p, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(acl_problem *p, int code, const char *field, const char *fmt, ...)
{
    snprintf(p->field, sizeof p->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->reason, sizeof p->reason, fmt, ap);
    va_end(ap);
    return code;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* An unknown key as a field name an operator can read: printable ASCII, bounded. */
static void field_label(const char *key, size_t len, char *out, size_t size)
{
    size_t n = len < size - 1 ? len : size - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        out[i] = c > 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[n] = '\0';
}

/* ---- field checks -------------------------------------------------------------------------- */

typedef enum text_kind { TEXT_ID, TEXT_NAME, TEXT_FREE, TEXT_KEYWORD } text_kind;

static bool id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == ':' || c == '-';
}

static bool client_char(unsigned char c)
{
    return id_char(c) && c != ':';
}

static int check_id(const char *field, const char *s, size_t n, acl_problem *p)
{
    char q[96];
    text_quote(s, q, sizeof q);
    if (n == 0 || n > ACL_ID_MAX)
        return refuse(p, CX_EINVAL, field, "%s %s must be 1 to %d characters long (it has %zu)",
                      field, q, ACL_ID_MAX, n);
    for (size_t i = 0; i < n; i++)
        if (!id_char((unsigned char)s[i]))
            return refuse(p, CX_EINVAL, field,
                          "%s %s has a character that is not allowed at position %zu; ids use "
                          "only letters, digits and . _ : -", field, q, i + 1);
    return 0;
}

static int check_name(const char *field, const char *s, size_t n, acl_problem *p)
{
    char q[96];
    text_quote(s, q, sizeof q);
    if (n == 0 || n > ACL_NAME_MAX)
        return refuse(p, CX_EINVAL, field, "%s %s must be 1 to %d characters long (it has %zu)",
                      field, q, ACL_NAME_MAX, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return refuse(p, CX_EINVAL, field,
                          "%s %s has a space, control or non-ASCII character at position %zu; "
                          "names are printable ASCII without spaces", field, q, i + 1);
    }
    return 0;
}

static int check_free_text(const char *field, const char *s, size_t n, acl_problem *p)
{
    if (n > ACL_FREE_TEXT_MAX)
        return refuse(p, CX_EINVAL, field, "%s is %zu bytes long; the limit is %d", field, n,
                      ACL_FREE_TEXT_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return refuse(p, CX_EINVAL, field,
                          "%s has a control character at byte %zu; use plain text", field, i + 1);
    }
    return 0;
}

/* The string value of an optional field, checked for type, NUL and UTF-8 and then by kind.
 * *out is NULL when the field is absent. */
static int get_text(const json_t *obj, const char *field, text_kind kind, const char **out,
                    acl_problem *p)
{
    *out = NULL;
    const json_t *v = json_object_get(obj, field);
    if (!v)
        return 0;
    if (json_is_null(v))
        return refuse(p, CX_EINVAL, field, "%s must be a string, got null; leave the field out "
                      "instead", field);
    if (!json_is_string(v))
        return refuse(p, CX_EINVAL, field, "%s must be a string, got %s", field, json_kind(v));
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (strlen(s) != n)
        return refuse(p, CX_EINVAL, field, "%s contains a NUL character", field);
    if (!text_is_utf8(s, n))
        return refuse(p, CX_EINVAL, field, "%s is not valid UTF-8", field);
    int rc = 0;
    if (kind == TEXT_ID)
        rc = check_id(field, s, n, p);
    else if (kind == TEXT_NAME)
        rc = check_name(field, s, n, p);
    else if (kind == TEXT_FREE)
        rc = check_free_text(field, s, n, p);
    if (rc == 0)
        *out = s;
    return rc;
}

/* get_text into an owned copy (NULL when absent). */
static int take_text(const json_t *obj, const char *field, text_kind kind, char **out,
                     acl_problem *p)
{
    const char *s;
    int rc = get_text(obj, field, kind, &s, p);
    if (rc != 0 || !s)
        return rc;
    *out = str_dup(s);
    return *out ? 0 : refuse(p, CX_ENOMEM, field, "out of memory copying %s", field);
}

/* A keyword field (performative, protocol, priority) into its table index. */
static int get_keyword(const json_t *obj, const char *field, const char *const *names,
                       size_t count, size_t first, int *out, acl_problem *p)
{
    const char *s;
    int rc = get_text(obj, field, TEXT_KEYWORD, &s, p);
    if (rc != 0 || !s)
        return rc;
    *out = keyword_find(s, names, count, first);
    if (*out >= 0)
        return 0;
    char q[96], list[256] = "";
    text_quote(s, q, sizeof q);
    const char *near = keyword_suggest(s, names + first, count - first);
    if (near)
        return refuse(p, CX_EINVAL, field, "unknown %s %s; did you mean '%s'?", field, q, near);
    size_t used = 0;
    for (size_t i = first; i < count && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i > first ? ", " : "",
                                 names[i]);
    return refuse(p, CX_EINVAL, field, "unknown %s %s; expected one of: %s", field, q, list);
}


/* ---- content ------------------------------------------------------------------------------- */

typedef struct walk_frame {
    json_t *node;
    void *iter;    /* objects: the next member */
    size_t index;  /* arrays: the next element */
} walk_frame;

/* The next child of the frame's container (with its key for objects), or NULL at the end. */
static json_t *walk_next(walk_frame *f, const char **key, size_t *key_len)
{
    *key = NULL;
    if (json_is_array(f->node)) {
        if (f->index >= json_array_size(f->node))
            return NULL;
        return json_array_get(f->node, f->index++);
    }
    if (!f->iter)
        return NULL;
    json_t *child = json_object_iter_value(f->iter);
    *key = json_object_iter_key(f->iter);
    *key_len = json_object_iter_key_len(f->iter);
    f->iter = json_object_iter_next(f->node, f->iter);
    return child;
}

/* Checks one string (a value or a key) and adds its least serialized size to *bytes. */
static int walk_string(const char *s, size_t n, size_t *bytes, acl_problem *p)
{
    if (strlen(s) != n)
        return refuse(p, CX_EINVAL, "content", "content has a string with a NUL character");
    if (!text_is_utf8(s, n))
        return refuse(p, CX_EINVAL, "content", "content has a string that is not valid UTF-8");
    *bytes += n + 2;
    return 0;
}

/* Visits one node: strings are checked, containers pushed. */
static int walk_visit(json_t *node, walk_frame *stack, size_t *depth, size_t *bytes,
                      acl_problem *p)
{
    *bytes += 1;
    if (json_is_string(node))
        return walk_string(json_string_value(node), json_string_length(node), bytes, p);
    if (!json_is_array(node) && !json_is_object(node))
        return 0;
    if (*depth == ACL_CONTENT_DEPTH_MAX)
        return refuse(p, CX_EINVAL, "content",
                      "content nests arrays and objects more than %d levels deep",
                      ACL_CONTENT_DEPTH_MAX);
    stack[(*depth)++] = (walk_frame){node, json_object_iter(node), 0};
    return 0;
}

/* Walks content without recursion. Every node serializes to at least one byte and every
 * string to its length plus quotes, so once that lower bound passes max_size the message
 * is too big and the walk stops: the work is bounded by max_size even for shared sub-trees. */
static int check_content(json_t *content, size_t max_size, acl_problem *p)
{
    walk_frame *stack = malloc(sizeof *stack * ACL_CONTENT_DEPTH_MAX);
    if (!stack)
        return refuse(p, CX_ENOMEM, "content", "out of memory checking content");
    size_t depth = 0, bytes = 0;
    int rc = walk_visit(content, stack, &depth, &bytes, p);
    while (rc == 0 && depth > 0 && bytes <= max_size) {
        const char *key;
        size_t key_len = 0;
        json_t *child = walk_next(&stack[depth - 1], &key, &key_len);
        if (!child) {
            depth--;
            continue;
        }
        if (key)
            rc = walk_string(key, key_len, &bytes, p);
        if (rc == 0)
            rc = walk_visit(child, stack, &depth, &bytes, p);
    }
    free(stack);
    if (rc == 0 && bytes > max_size)
        rc = refuse(p, CX_ETOOBIG, "content",
                    "content alone is over the message size limit of %zu bytes", max_size);
    return rc;
}

/* ---- the message --------------------------------------------------------------------------- */

static int check_fields(const json_t *obj, acl_problem *p)
{
    if (!json_is_object(obj))
        return refuse(p, CX_EINVAL, "message", "a message must be a JSON object, got %s",
                      obj ? json_kind(obj) : "nothing");
    const char *key;
    size_t key_len;
    json_t *value;
    json_object_keylen_foreach((json_t *)obj, key, key_len, value) {
        bool known = false;
        for (size_t i = 0; i < FIELD_COUNT && !known; i++)
            known = strlen(key) == key_len && strcmp(key, field_names[i]) == 0;
        if (known)
            continue;
        char label[sizeof p->field], q[96];
        field_label(key, key_len, label, sizeof label);
        text_quote(key, q, sizeof q);
        const char *near = strlen(key) == key_len ? text_suggest(key, field_names, FIELD_COUNT)
                                                  : NULL;
        if (near)
            return refuse(p, CX_EINVAL, label, "unknown field %s; did you mean '%s'?", q, near);
        return refuse(p, CX_EINVAL, label, "unknown field %s; a message has only message_id, "
                      "performative, sender, receiver, capability, content, conversation_id, "
                      "reply_with, in_reply_to, reply_by, protocol, language, ontology and "
                      "priority", q);
    }
    (void)value;
    return 0;
}

static int parse_ids(const json_t *obj, acl_message *m, acl_problem *p)
{
    const char *s;
    int rc = get_text(obj, "message_id", TEXT_ID, &s, p);
    if (rc != 0)
        return rc;
    if (s) {
        snprintf(m->message_id, sizeof m->message_id, "%s", s);
    } else {
        cx_error err;
        rc = acl_uuid_v4(m->message_id, &err);
        if (rc != 0)
            return refuse(p, rc, "message_id", "cannot create a message id: %s", err.msg);
    }
    if ((rc = get_text(obj, "conversation_id", TEXT_ID, &s, p)) != 0)
        return rc;
    if (s)
        snprintf(m->conversation_id, sizeof m->conversation_id, "%s", s);
    if ((rc = take_text(obj, "reply_with", TEXT_ID, &m->reply_with, p)) != 0)
        return rc;
    return take_text(obj, "in_reply_to", TEXT_ID, &m->in_reply_to, p);
}

static int parse_sender(const json_t *obj, acl_origin origin, acl_message *m, acl_problem *p)
{
    int rc = take_text(obj, "sender", TEXT_NAME, &m->sender, p);
    if (rc != 0)
        return rc;
    bool external = m->sender && str_has_prefix(m->sender, ACL_EXTERNAL_PREFIX);
    if (origin == ACL_FROM_AGENT) {
        if (!m->sender)
            return refuse(p, CX_EINVAL, "sender", "sender is required for a message from an "
                          "agent (the agent's name)");
        if (external)
            return refuse(p, CX_EINVAL, "sender", "an agent cannot send as \"%s\"; names that "
                          "start with \"%s\" are API clients", m->sender, ACL_EXTERNAL_PREFIX);
        return 0;
    }
    if (!m->sender) {
        m->sender = str_dup(ACL_EXTERNAL_PREFIX "api");
        return m->sender ? 0 : refuse(p, CX_ENOMEM, "sender", "out of memory");
    }
    const char *client = m->sender + strlen(ACL_EXTERNAL_PREFIX);
    size_t n = external ? strlen(client) : 0;
    bool ok = n >= 1 && n <= ACL_CLIENT_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = client_char((unsigned char)client[i]);
    if (!ok)
        return refuse(p, CX_EINVAL, "sender",
                      "sender \"%s\" is not allowed from the API; use \"external:<client>\" "
                      "(client: 1 to %d letters, digits, '.', '_' or '-') or leave it out",
                      m->sender, ACL_CLIENT_MAX);
    return 0;
}

static int parse_parties(const json_t *obj, acl_origin origin, acl_message *m, acl_problem *p)
{
    int rc = parse_sender(obj, origin, m, p);
    if (rc == 0)
        rc = take_text(obj, "receiver", TEXT_NAME, &m->receiver, p);
    if (rc == 0)
        rc = take_text(obj, "capability", TEXT_NAME, &m->capability, p);
    if (rc != 0)
        return rc;
    if (m->receiver && m->capability)
        return refuse(p, CX_EINVAL, "receiver", "both receiver and capability are set; use one "
                      "(receiver for a named agent, capability to route by what it can do)");
    if (!m->receiver && !m->capability)
        return refuse(p, CX_EINVAL, "receiver", "neither receiver nor capability is set; name "
                      "the agent in receiver or a capability to route by");
    if (m->receiver && strcmp(m->receiver, m->sender) == 0)
        return refuse(p, CX_EINVAL, "receiver", "sender and receiver are both \"%s\"; a "
                      "message cannot be sent to its own sender", m->sender);
    return 0;
}

static int parse_content(const json_t *obj, size_t max_size, acl_message *m, acl_problem *p)
{
    json_t *content = json_object_get(obj, "content");
    if (!content) {
        if (m->performative == ACL_CANCEL)
            return 0;
        return refuse(p, CX_EINVAL, "content", "content is required for '%s' (only cancel may "
                      "leave it out)", acl_performative_name(m->performative));
    }
    int rc = check_content(content, max_size, p);
    if (rc != 0)
        return rc;
    m->content = json_incref(content);
    return 0;
}

static int parse_reply_by(const json_t *obj, acl_message *m, acl_problem *p)
{
    const char *s;
    int rc = get_text(obj, "reply_by", TEXT_KEYWORD, &s, p);
    if (rc != 0 || !s)
        return rc;
    if (strlen(s) > ACL_TIME_TEXT_MAX || !time_parse_rfc3339(s, &m->reply_by_ms)) {
        char q[96];
        text_quote(s, q, sizeof q);
        return refuse(p, CX_EINVAL, "reply_by", "reply_by %s is not an RFC 3339 date-time after "
                      "1970 (example: 2026-01-15T10:00:00Z or 2026-01-15T12:00:00.5+02:00)", q);
    }
    return 0;
}

static int parse_options(const json_t *obj, acl_message *m, acl_problem *p)
{
    int value = ACL_PROTOCOL_NONE;
    int rc = get_keyword(obj, "protocol", protocol_names, PROTOCOL_COUNT, ACL_PROTOCOL_REQUEST,
                         &value, p);
    if (rc != 0)
        return rc;
    m->protocol = (acl_protocol)value;
    value = ACL_PRIORITY_NORMAL;
    if ((rc = get_keyword(obj, "priority", priority_names, PRIORITY_COUNT, 0, &value, p)) != 0)
        return rc;
    m->priority = (acl_priority)value;
    if ((rc = take_text(obj, "language", TEXT_FREE, &m->language, p)) != 0)
        return rc;
    return take_text(obj, "ontology", TEXT_FREE, &m->ontology, p);
}

static json_t *message_json(const acl_message *m, bool share_content);

static int check_size(const acl_message *m, size_t max_size, acl_problem *p)
{
    json_t *j = message_json(m, true);
    size_t size = j ? json_dumpb(j, NULL, 0, JSON_COMPACT) : 0;
    json_decref(j);
    if (size == 0)
        return refuse(p, CX_ENOMEM, "message", "out of memory measuring the message");
    if (size > max_size)
        return refuse(p, CX_ETOOBIG, "message", "the message is %zu bytes; the limit is %zu "
                      "bytes (messaging.max_message_size)", size, max_size);
    return 0;
}

static int parse_message(const json_t *obj, acl_origin origin, size_t max_size, acl_message *m,
                         acl_problem *p)
{
    int rc = check_fields(obj, p);
    if (rc != 0)
        return rc;
    if (!json_object_get(obj, "performative"))
        return refuse(p, CX_EINVAL, "performative", "performative is required (request, inform, "
                      "query-if, cfp, ...)");
    int perf;
    rc = get_keyword(obj, "performative", performative_names, ACL_PERFORMATIVE_COUNT, 0, &perf,
                     p);
    if (rc != 0)
        return rc;
    m->performative = (acl_performative)perf;
    if ((rc = parse_ids(obj, m, p)) != 0 || (rc = parse_parties(obj, origin, m, p)) != 0 ||
        (rc = parse_content(obj, max_size, m, p)) != 0 || (rc = parse_reply_by(obj, m, p)) != 0 ||
        (rc = parse_options(obj, m, p)) != 0)
        return rc;
    return check_size(m, max_size, p);
}

int acl_message_from_json(const json_t *obj, acl_origin origin, size_t max_size,
                          acl_message *out, acl_problem *problem)
{
    acl_problem scratch;
    acl_problem *p = problem ? problem : &scratch;
    memset(p, 0, sizeof *p);
    memset(out, 0, sizeof *out);
    out->priority = ACL_PRIORITY_NORMAL;
    int rc = parse_message(obj, origin, max_size, out, p);
    if (rc != 0)
        acl_message_clear(out);
    return rc;
}

void acl_message_clear(acl_message *m)
{
    if (!m)
        return;
    free(m->sender);
    free(m->receiver);
    free(m->capability);
    free(m->reply_with);
    free(m->in_reply_to);
    free(m->language);
    free(m->ontology);
    json_decref(m->content);
    memset(m, 0, sizeof *m);
    m->priority = ACL_PRIORITY_NORMAL;
}

int acl_message_copy(acl_message *dst, const acl_message *src)
{
    *dst = *src;
    dst->sender = str_dup(src->sender);
    dst->receiver = str_dup(src->receiver);
    dst->capability = str_dup(src->capability);
    dst->reply_with = str_dup(src->reply_with);
    dst->in_reply_to = str_dup(src->in_reply_to);
    dst->language = str_dup(src->language);
    dst->ontology = str_dup(src->ontology);
    dst->content = src->content ? json_deep_copy(src->content) : NULL;
    if ((src->sender && !dst->sender) || (src->receiver && !dst->receiver) ||
        (src->capability && !dst->capability) || (src->reply_with && !dst->reply_with) ||
        (src->in_reply_to && !dst->in_reply_to) || (src->language && !dst->language) ||
        (src->ontology && !dst->ontology) || (src->content && !dst->content)) {
        acl_message_clear(dst);
        return CX_ENOMEM;
    }
    return 0;
}

/* Sets key to a string when value is present; nonzero on failure (json_string refuses
 * invalid UTF-8, json_object_set_new refuses a NULL value). */
static int put_text(json_t *o, const char *key, const char *value)
{
    return value ? json_object_set_new(o, key, json_string(value)) : 0;
}

static json_t *message_json(const acl_message *m, bool share_content)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    char reply_by[32] = "";
    if (m->reply_by_ms)
        time_format_rfc3339(m->reply_by_ms, reply_by, sizeof reply_by);
    int bad = put_text(o, "message_id", m->message_id);
    bad |= put_text(o, "performative", acl_performative_name(m->performative));
    bad |= put_text(o, "sender", m->sender);
    bad |= put_text(o, "receiver", m->receiver);
    bad |= put_text(o, "capability", m->capability);
    if (m->content)
        bad |= json_object_set_new(o, "content", share_content ? json_incref(m->content)
                                                               : json_deep_copy(m->content));
    bad |= put_text(o, "conversation_id", m->conversation_id[0] ? m->conversation_id : NULL);
    bad |= put_text(o, "reply_with", m->reply_with);
    bad |= put_text(o, "in_reply_to", m->in_reply_to);
    bad |= put_text(o, "reply_by", m->reply_by_ms ? reply_by : NULL);
    if (m->protocol != ACL_PROTOCOL_NONE)
        bad |= put_text(o, "protocol", acl_protocol_name(m->protocol));
    bad |= put_text(o, "language", m->language);
    bad |= put_text(o, "ontology", m->ontology);
    bad |= put_text(o, "priority", acl_priority_name(m->priority));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *acl_message_to_json(const acl_message *m)
{
    return message_json(m, false);
}

/* ---- protocol rules ------------------------------------------------------------------------ */

typedef struct acl_rule {
    acl_protocol protocol;
    acl_step from;
    acl_performative answer;
    acl_step to;
} acl_rule;

static const acl_rule acl_rules[] = {
    {ACL_PROTOCOL_REQUEST, ACL_STEP_OPEN, ACL_AGREE, ACL_STEP_AGREED},
    {ACL_PROTOCOL_REQUEST, ACL_STEP_OPEN, ACL_REFUSE, ACL_STEP_DONE},
    {ACL_PROTOCOL_REQUEST, ACL_STEP_OPEN, ACL_INFORM, ACL_STEP_DONE},
    {ACL_PROTOCOL_REQUEST, ACL_STEP_OPEN, ACL_FAILURE, ACL_STEP_DONE},
    {ACL_PROTOCOL_REQUEST, ACL_STEP_AGREED, ACL_INFORM, ACL_STEP_DONE},
    {ACL_PROTOCOL_REQUEST, ACL_STEP_AGREED, ACL_FAILURE, ACL_STEP_DONE},
    {ACL_PROTOCOL_QUERY, ACL_STEP_OPEN, ACL_INFORM, ACL_STEP_DONE},
    {ACL_PROTOCOL_QUERY, ACL_STEP_OPEN, ACL_REFUSE, ACL_STEP_DONE},
    {ACL_PROTOCOL_QUERY, ACL_STEP_OPEN, ACL_FAILURE, ACL_STEP_DONE},
    {ACL_PROTOCOL_CONTRACT_NET, ACL_STEP_OPEN, ACL_PROPOSE, ACL_STEP_PROPOSED},
    {ACL_PROTOCOL_CONTRACT_NET, ACL_STEP_OPEN, ACL_REFUSE, ACL_STEP_DONE},
    {ACL_PROTOCOL_CONTRACT_NET, ACL_STEP_PROPOSED, ACL_ACCEPT_PROPOSAL, ACL_STEP_ACCEPTED},
    {ACL_PROTOCOL_CONTRACT_NET, ACL_STEP_PROPOSED, ACL_REJECT_PROPOSAL, ACL_STEP_DONE},
    {ACL_PROTOCOL_CONTRACT_NET, ACL_STEP_ACCEPTED, ACL_INFORM, ACL_STEP_DONE},
    {ACL_PROTOCOL_CONTRACT_NET, ACL_STEP_ACCEPTED, ACL_FAILURE, ACL_STEP_DONE},
};
#define RULE_COUNT (sizeof acl_rules / sizeof acl_rules[0])

static acl_protocol protocol_of_initiator(acl_performative p)
{
    switch (p) {
    case ACL_REQUEST:
        return ACL_PROTOCOL_REQUEST;
    case ACL_QUERY_IF:
    case ACL_QUERY_REF:
        return ACL_PROTOCOL_QUERY;
    case ACL_CFP:
        return ACL_PROTOCOL_CONTRACT_NET;
    default:
        return ACL_PROTOCOL_NONE;
    }
}

bool acl_interaction_start(const acl_message *m, acl_interaction *out)
{
    /* cancel and not-understood only ever answer; they never open an interaction. */
    if (m->performative == ACL_CANCEL || m->performative == ACL_NOT_UNDERSTOOD)
        return false;
    acl_protocol protocol = m->protocol != ACL_PROTOCOL_NONE
                                ? m->protocol
                                : protocol_of_initiator(m->performative);
    if (protocol == ACL_PROTOCOL_NONE)
        return false;
    *out = (acl_interaction){
        .protocol = protocol,
        .opened_by = m->performative,
        .step = ACL_STEP_OPEN,
        .reply_by_ms = protocol == ACL_PROTOCOL_CONTRACT_NET ? m->reply_by_ms : 0,
    };
    return true;
}

/* The performative the interaction now waits on an answer to. */
static acl_performative step_subject(const acl_interaction *it)
{
    switch (it->step) {
    case ACL_STEP_AGREED:
        return ACL_AGREE;
    case ACL_STEP_PROPOSED:
        return ACL_PROPOSE;
    case ACL_STEP_ACCEPTED:
        return ACL_ACCEPT_PROPOSAL;
    default:
        return it->opened_by;
    }
}

/* "agree, refuse, inform, failure or not-understood": what fits the interaction now. */
static void expected_text(const acl_interaction *it, char *out, size_t size)
{
    const char *names[RULE_COUNT + 1];
    size_t n = 0;
    for (size_t i = 0; i < RULE_COUNT; i++)
        if (acl_rules[i].protocol == it->protocol && acl_rules[i].from == it->step)
            names[n++] = acl_performative_name(acl_rules[i].answer);
    if (it->step == ACL_STEP_OPEN)
        names[n++] = acl_performative_name(ACL_NOT_UNDERSTOOD);
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        used += (size_t)snprintf(out + used, size - used, "%s%s", sep, names[i]);
    }
    if (n == 0)
        snprintf(out, size, "nothing more");
}

static int advance_refuse(char *reason, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int advance_refuse(char *reason, size_t size, const char *fmt, ...)
{
    if (reason && size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, size, fmt, ap);
        va_end(ap);
    }
    return CX_EINVAL;
}

int acl_interaction_advance(acl_interaction *it, const acl_message *reply, uint64_t now_ms,
                            char *reason, size_t reason_size)
{
    const char *answer = acl_performative_name(reply->performative);
    const char *protocol = acl_protocol_name(it->protocol);
    if (it->protocol == ACL_PROTOCOL_NONE)
        return 0; /* outside a protocol: not checked */
    if (it->step == ACL_STEP_DONE)
        return advance_refuse(reason, reason_size, "the interaction is already finished; '%s' "
                              "answers nothing open in this %s interaction", answer, protocol);
    if (reply->protocol != ACL_PROTOCOL_NONE && reply->protocol != it->protocol)
        return advance_refuse(reason, reason_size, "'%s' says protocol %s but the interaction "
                              "it answers is %s", answer, acl_protocol_name(reply->protocol),
                              protocol);
    if (reply->performative == ACL_CANCEL ||
        (reply->performative == ACL_NOT_UNDERSTOOD && it->step == ACL_STEP_OPEN)) {
        it->step = ACL_STEP_DONE;
        return 0;
    }
    bool bid = it->protocol == ACL_PROTOCOL_CONTRACT_NET && it->step == ACL_STEP_OPEN;
    if (bid && it->reply_by_ms && now_ms > it->reply_by_ms &&
        (reply->performative == ACL_PROPOSE || reply->performative == ACL_REFUSE)) {
        char deadline[32];
        time_format_rfc3339(it->reply_by_ms, deadline, sizeof deadline);
        return advance_refuse(reason, reason_size, "'%s' came after the bidding deadline of "
                              "the cfp (reply_by %s, %llu ms late); the cfp takes no more bids",
                              answer, deadline,
                              (unsigned long long)(now_ms - it->reply_by_ms));
    }
    for (size_t i = 0; i < RULE_COUNT; i++) {
        const acl_rule *r = &acl_rules[i];
        if (r->protocol == it->protocol && r->from == it->step &&
            r->answer == reply->performative) {
            it->step = r->to;
            return 0;
        }
    }
    char expected[160];
    expected_text(it, expected, sizeof expected);
    const char *subject = acl_performative_name(step_subject(it));
    const char *article = strchr("aeiou", subject[0]) ? "an" : "a";
    return advance_refuse(reason, reason_size, "'%s' does not %s %s '%s' in %s; expected %s",
                          answer, it->step == ACL_STEP_OPEN ? "answer" : "follow", article,
                          subject, protocol, expected);
}
