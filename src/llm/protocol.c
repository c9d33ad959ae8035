/* What the provider protocols share: the table of types, the neutral answer
 * they all parse into, tool schemas and call arguments in both directions,
 * and the provider's explanation when it refuses.
 *
 * Answers come from a server we do not control, so everything read here is
 * bounded (the body size, the number of tool calls, name and id lengths) and
 * checked for type. Whole numbers are kept as integers so tool arguments
 * reach the tool as the LLM wrote them; only a body with a number too big
 * for 64 bits is re-read with every number as a real (token counts are then
 * clamped, not fatal). Tool call strings live in one JSON store per answer,
 * so the neutral llm_tool_call can point into it and one decref frees all. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "llm/llm.h"
#include "llm/llm_internal.h"

#define USAGE_TOKENS_MAX 1000000000000.0 /* a count above this is clamped */
#define ERROR_TEXT_MAX 200               /* bytes of a provider message kept */

static const llm_protocol *const protocols[] = {
    &llm_protocol_openai,
    &llm_protocol_anthropic,
    &llm_protocol_ollama,
};

const llm_protocol *llm_protocol_find(const char *type)
{
    for (size_t i = 0; type && i < sizeof protocols / sizeof *protocols; i++)
        if (strcmp(protocols[i]->type, type) == 0)
            return protocols[i];
    return NULL;
}

/* ---- Tools and calls in requests ------------------------------------------------------------- */

bool llm_tool_name_ok(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    return len > 0 && len <= LLM_TOOL_NAME_MAX &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
               len;
}

/* A copy of the input schema, or {"type":"object"}; NULL if not an object. */
static json_t *tool_schema(const llm_tool *tool)
{
    if (!tool->input_schema)
        return json_pack("{s:s}", "type", "object");
    return json_is_object(tool->input_schema) ? json_deep_copy(tool->input_schema) : NULL;
}

json_t *llm_tool_json(const llm_tool *tool, const char *schema_key)
{
    json_t *schema = llm_tool_name_ok(tool->name) ? tool_schema(tool) : NULL;
    json_t *obj = schema ? json_object() : NULL;
    if (!obj || json_object_set_new(obj, "name", json_string(tool->name)) != 0 ||
        (tool->description &&
         json_object_set_new(obj, "description", json_string(tool->description)) != 0)) {
        json_decref(schema);
        json_decref(obj);
        return NULL;
    }
    if (json_object_set_new(obj, schema_key, schema) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* JSON text into a value; a number too big for 64 bits makes every number
 * a real instead of failing. */
static json_t *load_text(const char *text, size_t len, size_t flags, json_error_t *jerr)
{
    json_t *v = json_loadb(text, len, flags, jerr);
    if (!v && json_error_code(jerr) == json_error_numeric_overflow)
        v = json_loadb(text, len, flags | JSON_DECODE_INT_AS_REAL, jerr);
    return v;
}

json_t *llm_call_arguments_object(const llm_tool_call *call)
{
    if (json_is_object(call->arguments))
        return json_deep_copy(call->arguments);
    if (call->arguments_text) {
        json_error_t jerr;
        json_t *v = load_text(call->arguments_text, strlen(call->arguments_text), 0, &jerr);
        if (json_is_object(v))
            return v;
        json_decref(v);
    }
    return json_object();
}

char *llm_call_arguments_text(const llm_tool_call *call)
{
    if (call->arguments_text)
        return str_dup(call->arguments_text);
    if (json_is_object(call->arguments))
        return json_dumps(call->arguments, JSON_COMPACT);
    return str_dup("{}");
}

/* ---- The neutral answer ---------------------------------------------------------------------- */

void llm_answer_free(llm_answer *a)
{
    if (!a)
        return;
    free(a->text);
    free(a->finish_reason);
    free(a->model);
    free(a->tool_calls);
    json_decref(a->store);
    memset(a, 0, sizeof *a);
}

int llm_answer_refuse(const char **reason, char *detail, size_t detail_size, const char *why,
                      const char *fmt, ...)
{
    *reason = why;
    if (detail_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, detail_size, fmt, ap);
        va_end(ap);
        text_make_utf8(detail);
    }
    return CX_EPARSE;
}

json_t *llm_answer_load(const char *body, size_t len, const char **reason, char *detail,
                        size_t detail_size)
{
    return llm_answer_load_max(body, len, LLM_MAX_RESPONSE, reason, detail, detail_size);
}

json_t *llm_answer_load_max(const char *body, size_t len, size_t max, const char **reason,
                            char *detail, size_t detail_size)
{
    if (!body || len == 0) {
        llm_answer_refuse(reason, detail, detail_size, LLM_REASON_MALFORMED,
                          "the answer is empty");
        return NULL;
    }
    if (len > max) {
        llm_answer_refuse(reason, detail, detail_size, LLM_REASON_MALFORMED,
                          "response over %zu MB", max >> 20);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = load_text(body, len, 0, &jerr);
    if (!root)
        llm_answer_refuse(reason, detail, detail_size, LLM_REASON_MALFORMED,
                          "the answer is not JSON (line %d column %d: %s)", jerr.line,
                          jerr.column, jerr.text);
    return root;
}

bool llm_read_tokens(const json_t *obj, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    *out = 0;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_number(v))
        return false;
    double d = json_number_value(v);
    if (!(d >= 0))
        return false;
    *out = (uint64_t)(d > USAGE_TOKENS_MAX ? USAGE_TOKENS_MAX : floor(d));
    return true;
}

bool llm_read_optional_string(const json_t *obj, const char *key, const char **out)
{
    const json_t *v = json_object_get(obj, key);
    *out = json_is_string(v) ? json_string_value(v) : NULL;
    return !v || json_is_null(v) || json_is_string(v);
}

void llm_tool_call_id_new(char *out, size_t size)
{
    static uint64_t counter;
    uint8_t raw[12];
    char hex[2 * sizeof raw + 1];
    if (random_bytes(raw, sizeof raw, NULL) != 0) {
        uint64_t mix = time_monotonic_ns() ^ (++counter << 40);
        for (size_t i = 0; i < sizeof raw; i++)
            raw[i] = (uint8_t)(mix >> (8 * (i % 8))) ^ (uint8_t)(i * 37);
    }
    hex_encode(raw, sizeof raw, hex);
    snprintf(out, size, "call_%s", hex);
}

/* Printable text without control characters, 1..max bytes. */
static bool label_ok(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

static bool text_blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

/* The arguments as an object (new, or NULL when the text is not one) and as
 * text (new). */
static int read_arguments(const json_t *arguments, json_t **object, char **text,
                          const char **why)
{
    *object = NULL;
    *text = NULL;
    if (!arguments || json_is_null(arguments)) {
        *object = json_object();
        *text = str_dup("");
    } else if (json_is_object(arguments)) {
        *object = json_deep_copy(arguments);
        *text = json_dumps(arguments, JSON_COMPACT);
    } else if (json_is_string(arguments)) {
        const char *s = json_string_value(arguments);
        *text = str_dup(s); /* a NUL inside cuts it there */
        if (!*text)
            return CX_ENOMEM;
        if (strlen(s) != json_string_length(arguments))
            return 0; /* not JSON we would hand on: text only */
        if (text_blank(s)) {
            *object = json_object();
        } else {
            json_error_t jerr;
            json_t *v = load_text(s, strlen(s), 0, &jerr);
            if (json_is_object(v))
                *object = v;
            else
                json_decref(v);
            return 0;
        }
    } else {
        *why = "\"arguments\" is neither JSON text nor an object";
        return CX_EPARSE;
    }
    return *text && *object ? 0 : CX_ENOMEM;
}

/* {"id", "name", "text", "arguments"?}; takes object whatever happens. */
static json_t *call_entry(const char *id, const char *name, const char *text, json_t *object)
{
    json_t *entry = json_object();
    if (!entry || json_object_set_new(entry, "id", json_string(id)) != 0 ||
        json_object_set_new(entry, "name", json_string(name)) != 0 ||
        json_object_set_new(entry, "text", json_string(text)) != 0 ||
        (object && json_object_set_new(entry, "arguments", object) != 0)) {
        if (!entry)
            json_decref(object);
        json_decref(entry);
        return NULL;
    }
    return entry;
}

int llm_answer_add_call(llm_answer *a, const char *id, const char *name,
                        const json_t *arguments, const char **why)
{
    *why = NULL;
    if (a->tool_call_count >= LLM_MAX_TOOL_CALLS) {
        *why = "more than 128 tool calls";
        return CX_EPARSE;
    }
    if (!name || !label_ok(name, LLM_TOOL_CALL_NAME_MAX)) {
        *why = "the tool name is missing, too long or has control characters";
        return CX_EPARSE;
    }
    char made[40];
    if (!id || !*id) {
        llm_tool_call_id_new(made, sizeof made);
        id = made;
    } else if (!label_ok(id, LLM_TOOL_CALL_ID_MAX)) {
        *why = "the tool call id is too long or has control characters";
        return CX_EPARSE;
    }
    json_t *object = NULL;
    char *text = NULL;
    int rc = read_arguments(arguments, &object, &text, why);
    json_t *entry = rc == 0 ? call_entry(id, name, text, object) : NULL;
    free(text);
    if (rc != 0) {
        json_decref(object);
        return rc;
    }
    if (!a->store)
        a->store = json_array();
    llm_tool_call *grown =
        entry ? realloc(a->tool_calls, (a->tool_call_count + 1) * sizeof *grown) : NULL;
    if (grown)
        a->tool_calls = grown;
    if (!grown || json_array_append_new(a->store, entry) != 0) {
        if (!grown)
            json_decref(entry);
        return CX_ENOMEM;
    }
    llm_tool_call *c = &a->tool_calls[a->tool_call_count++];
    c->id = json_string_value(json_object_get(entry, "id"));
    c->name = json_string_value(json_object_get(entry, "name"));
    c->arguments_text = json_string_value(json_object_get(entry, "text"));
    c->arguments = json_object_get(entry, "arguments");
    return 0;
}

int llm_answer_finish(llm_answer *a, const char *text, size_t text_len, const char *finish,
                      const char *model, uint64_t prompt, uint64_t completion,
                      const char **reason, char *detail, size_t detail_size)
{
    if ((!text || text_len == 0) && a->tool_call_count == 0)
        return llm_answer_refuse(reason, detail, detail_size, LLM_REASON_EMPTY,
                                 "the answer has no text (content is empty) and no tool calls");
    if (text && text_len > 0) {
        a->text = malloc(text_len + 1);
        if (a->text) {
            memcpy(a->text, text, text_len);
            a->text[text_len] = '\0';
        }
    }
    a->finish_reason = str_dup(finish);
    a->model = str_dup(model);
    a->prompt_tokens = prompt;
    a->completion_tokens = completion;
    if ((text && text_len > 0 && !a->text) || (finish && !a->finish_reason) ||
        (model && !a->model)) {
        llm_answer_refuse(reason, detail, detail_size, LLM_REASON_MALFORMED,
                          "out of memory reading the answer");
        return CX_ENOMEM;
    }
    return 0;
}

/* ---- Refusals -------------------------------------------------------------------------------- */

static const char *error_message(const json_t *root, const char **kind)
{
    const json_t *error = json_object_get(root, "error");
    *kind = NULL;
    if (json_is_string(error))
        return json_string_value(error);
    const json_t *msg = json_object_get(error, "message");
    if (json_is_string(msg)) {
        /* Anthropic's envelope: {"type":"error","error":{"type":..,"message":..}} */
        const json_t *type = json_object_get(root, "type");
        const json_t *sub = json_object_get(error, "type");
        if (json_is_string(type) && strcmp(json_string_value(type), "error") == 0 &&
            json_is_string(sub))
            *kind = json_string_value(sub);
        return json_string_value(msg);
    }
    msg = json_object_get(root, "message");
    return json_is_string(msg) ? json_string_value(msg) : NULL;
}

void llm_error_text(const char *body, size_t len, const char *secret, char *out, size_t size)
{
    if (size == 0)
        return;
    out[0] = '\0';
    if (!body || len == 0)
        return;
    json_t *root = json_loadb(body, len, JSON_DECODE_INT_AS_REAL, NULL);
    const char *kind = NULL;
    const char *msg = error_message(root, &kind);
    strbuf said;
    strbuf_init(&said);
    if (msg && kind && strlen(kind) < 64)
        strbuf_appendf(&said, "%s: ", kind);
    size_t msg_len = msg ? strlen(msg) : strnlen(body, len);
    /* Enough to hold a key that starts inside the part shown, so it is
     * redacted whole before the cut. */
    size_t keep = ERROR_TEXT_MAX + (secret ? strlen(secret) : 0);
    if (msg_len < keep)
        keep = msg_len;
    strbuf_append(&said, msg ? msg : body, keep);
    if (!said.failed && said.len > 0) {
        llm_redact(said.data, secret);
        size_t quoted = size < ERROR_TEXT_MAX + 8 ? size : ERROR_TEXT_MAX + 8;
        text_quote(said.data, out, quoted);
    }
    strbuf_free(&said);
    json_decref(root);
}

void llm_redact(char *s, const char *secret)
{
    size_t slen = secret ? strlen(secret) : 0;
    if (slen < 4)
        return; /* too short to find reliably, and not a real key */
    char *hit;
    while ((hit = strstr(s, secret)) != NULL) {
        memcpy(hit, "***", 3);
        memmove(hit + 3, hit + slen, strlen(hit + slen) + 1);
    }
}

const char *llm_role_name(llm_role role)
{
    switch (role) {
    case LLM_ROLE_SYSTEM: return "system";
    case LLM_ROLE_USER: return "user";
    case LLM_ROLE_ASSISTANT: return "assistant";
    case LLM_ROLE_TOOL: return "tool";
    }
    return NULL;
}
