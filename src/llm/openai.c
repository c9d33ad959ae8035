/* The OpenAI chat completions protocol: the request body, the answer, and
 * the provider's explanation when it refuses.
 *
 * Pure functions over JSON text, no I/O, so they are tested directly. The
 * answer is read strictly where the agent depends on it (choices, message,
 * content, usage) because a provider that sends something else is broken or
 * is not what the operator thinks it is; token counts are clamped so a
 * hostile value cannot overflow the accounting. */
#include "llm/llm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "llm/llm_internal.h"

#define USAGE_TOKENS_MAX 1000000000000.0 /* a count above this is clamped */
#define ERROR_TEXT_MAX 200               /* bytes of a provider message kept */

static const char *role_name(llm_role role)
{
    switch (role) {
    case LLM_ROLE_SYSTEM: return "system";
    case LLM_ROLE_USER: return "user";
    case LLM_ROLE_ASSISTANT: return "assistant";
    case LLM_ROLE_TOOL: return "tool";
    }
    return NULL;
}

static json_t *message_json(const llm_message *m)
{
    const char *role = role_name(m->role);
    if (!role || !m->content)
        return NULL;
    json_t *obj = json_object();
    if (!obj || json_object_set_new(obj, "role", json_string(role)) != 0 ||
        json_object_set_new(obj, "content", json_string(m->content)) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

json_t *llm_openai_request_json(const llm_request *req, const char *model)
{
    if (!req || !model || (req->message_count > 0 && !req->messages))
        return NULL;
    json_t *body = json_object();
    json_t *messages = json_array();
    if (!body || !messages || json_object_set_new(body, "model", json_string(model)) != 0)
        goto fail;
    for (size_t i = 0; i < req->message_count; i++)
        if (json_array_append_new(messages, message_json(&req->messages[i])) != 0)
            goto fail;
    if (json_object_set(body, "messages", messages) != 0)
        goto fail;
    if (req->temperature_set &&
        json_object_set_new(body, "temperature", json_real(req->temperature)) != 0)
        goto fail;
    if (req->max_tokens > 0 &&
        json_object_set_new(body, "max_tokens", json_integer((json_int_t)req->max_tokens)) != 0)
        goto fail;
    json_decref(messages);
    return body;
fail:
    json_decref(messages);
    json_decref(body);
    return NULL;
}

/* ---- The answer ------------------------------------------------------------------------------ */

typedef struct answer {
    const char **reason;
    char *detail;
    size_t detail_size;
} answer;

static int answer_fail(answer *a, const char *reason, const char *what)
{
    *a->reason = reason;
    snprintf(a->detail, a->detail_size, "%s", what);
    return CX_EPARSE;
}

/* A token count: absent or null is 0; a number is clamped; anything else
 * is an error. */
static bool read_tokens(const json_t *usage, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get(usage, key);
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

/* Optional strings: absent or null is NULL. False for another type. */
static bool read_optional_string(const json_t *obj, const char *key, const char **out)
{
    const json_t *v = json_object_get(obj, key);
    *out = json_is_string(v) ? json_string_value(v) : NULL;
    return !v || json_is_null(v) || json_is_string(v);
}

static int read_answer(const json_t *root, answer *a, const char **content, const char **finish,
                       const char **model, uint64_t *prompt, uint64_t *completion)
{
    if (!json_is_object(root))
        return answer_fail(a, LLM_REASON_MALFORMED, "the answer is JSON but not an object");
    const json_t *choices = json_object_get(root, "choices");
    if (!json_is_array(choices))
        return answer_fail(a, LLM_REASON_MALFORMED, "the answer has no \"choices\" list");
    if (json_array_size(choices) == 0)
        return answer_fail(a, LLM_REASON_EMPTY, "the answer has no choices");
    const json_t *choice = json_array_get(choices, 0);
    const json_t *message = json_object_get(choice, "message");
    if (!json_is_object(choice) || !json_is_object(message))
        return answer_fail(a, LLM_REASON_MALFORMED, "choices[0].message is not an object");
    const json_t *text = json_object_get(message, "content");
    if (text && !json_is_null(text) && !json_is_string(text))
        return answer_fail(a, LLM_REASON_MALFORMED, "choices[0].message.content is not a string");
    if (!json_is_string(text) || json_string_length(text) == 0)
        return answer_fail(a, LLM_REASON_EMPTY, "the answer has no text (content is empty)");
    if (!read_optional_string(choice, "finish_reason", finish))
        return answer_fail(a, LLM_REASON_MALFORMED, "choices[0].finish_reason is not a string");
    if (!read_optional_string(root, "model", model))
        return answer_fail(a, LLM_REASON_MALFORMED, "\"model\" is not a string");
    const json_t *usage = json_object_get(root, "usage");
    if (usage && !json_is_null(usage) &&
        (!json_is_object(usage) || !read_tokens(usage, "prompt_tokens", prompt) ||
         !read_tokens(usage, "completion_tokens", completion)))
        return answer_fail(a, LLM_REASON_MALFORMED,
                           "\"usage\" token counts are not non-negative numbers");
    *content = json_string_value(text);
    return 0;
}

int llm_openai_parse_response(const char *body, size_t len, char **text, char **finish_reason,
                              char **model, uint64_t *prompt_tokens, uint64_t *completion_tokens,
                              const char **reason, char *detail, size_t detail_size)
{
    *text = *finish_reason = *model = NULL;
    *prompt_tokens = *completion_tokens = 0;
    *reason = NULL;
    if (detail_size)
        detail[0] = '\0';
    answer a = {.reason = reason, .detail = detail, .detail_size = detail_size};
    if (!body || len == 0)
        return answer_fail(&a, LLM_REASON_MALFORMED, "the answer is empty");
    if (len > LLM_MAX_RESPONSE)
        return answer_fail(&a, LLM_REASON_MALFORMED, "response over 8 MB");
    json_error_t jerr;
    /* Whole numbers as reals: a count too big for 64 bits is clamped, not fatal. */
    json_t *root = json_loadb(body, len, JSON_DECODE_INT_AS_REAL, &jerr);
    if (!root) {
        char what[sizeof jerr.text + 64];
        snprintf(what, sizeof what, "the answer is not JSON (line %d column %d: %s)", jerr.line,
                 jerr.column, jerr.text);
        text_make_utf8(what);
        return answer_fail(&a, LLM_REASON_MALFORMED, what);
    }
    const char *content = NULL, *finish = NULL, *used_model = NULL;
    uint64_t prompt = 0, completion = 0;
    int rc = read_answer(root, &a, &content, &finish, &used_model, &prompt, &completion);
    if (rc == 0) {
        *text = str_dup(content);
        *finish_reason = str_dup(finish);
        *model = str_dup(used_model);
        if (!*text || (finish && !*finish_reason) || (used_model && !*model)) {
            free(*text);
            free(*finish_reason);
            free(*model);
            *text = *finish_reason = *model = NULL;
            rc = CX_ENOMEM;
            answer_fail(&a, LLM_REASON_MALFORMED, "out of memory reading the answer");
        } else {
            *prompt_tokens = prompt;
            *completion_tokens = completion;
        }
    }
    json_decref(root);
    return rc;
}

/* ---- Refusals -------------------------------------------------------------------------------- */

static const char *error_message(const json_t *root)
{
    const json_t *error = json_object_get(root, "error");
    if (json_is_string(error))
        return json_string_value(error);
    const json_t *msg = json_object_get(error, "message");
    if (json_is_string(msg))
        return json_string_value(msg);
    msg = json_object_get(root, "message");
    return json_is_string(msg) ? json_string_value(msg) : NULL;
}

void llm_openai_error_text(const char *body, size_t len, const char *secret, char *out,
                           size_t size)
{
    if (size == 0)
        return;
    out[0] = '\0';
    if (!body || len == 0)
        return;
    json_t *root = json_loadb(body, len, JSON_DECODE_INT_AS_REAL, NULL);
    const char *msg = error_message(root);
    size_t msg_len = msg ? strlen(msg) : strnlen(body, len);
    /* Enough to hold a key that starts inside the part shown, so it is
     * redacted whole before the cut. */
    size_t keep = ERROR_TEXT_MAX + (secret ? strlen(secret) : 0);
    if (msg_len < keep)
        keep = msg_len;
    char *copy = malloc(keep + 1);
    if (copy) {
        memcpy(copy, msg ? msg : body, keep);
        copy[keep] = '\0';
        llm_redact(copy, secret);
        size_t quoted = size < ERROR_TEXT_MAX + 8 ? size : ERROR_TEXT_MAX + 8;
        text_quote(copy, out, quoted);
        free(copy);
    }
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
