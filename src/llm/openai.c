/* The OpenAI chat completions protocol (POST {base_url}/chat/completions):
 * the request body with tools, tool calls and tool results, and the answer
 * with text and tool calls. Also what vLLM, llama.cpp's server, LM Studio and
 * Ollama's /v1 speak.
 *
 * Pure functions over JSON, no I/O, so they are tested directly. The answer
 * is read strictly where the agent depends on it (choices, message, content,
 * tool_calls, usage) because a provider that sends something else is broken
 * or is not what the operator thinks it is. Tool call arguments arrive as
 * JSON text; text that is not an object is kept for the agent loop to report
 * back to the LLM rather than failing the whole answer. */
#include "llm/llm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "llm/llm_internal.h"

/* [{id, type:"function", function:{name, arguments:"<JSON text>"}}] */
static json_t *tool_calls_json(const llm_tool_call *calls, size_t count)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < count; i++) {
        const llm_tool_call *c = &calls[i];
        char *args = c->id && c->name ? llm_call_arguments_text(c) : NULL;
        json_t *one = args ? json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", c->id, "type",
                                       "function", "function", "name", c->name, "arguments", args)
                           : NULL;
        free(args);
        if (json_array_append_new(list, one) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

static json_t *message_json(const llm_message *m)
{
    const char *role = llm_role_name(m->role);
    bool calls = m->role == LLM_ROLE_ASSISTANT && m->tool_call_count > 0;
    if (!role || (!m->content && !calls) || (m->tool_call_count > 0 && !m->tool_calls))
        return NULL;
    json_t *obj = json_object();
    if (!obj || json_object_set_new(obj, "role", json_string(role)) != 0)
        goto fail;
    if (m->role == LLM_ROLE_TOOL &&
        (!m->tool_call_id ||
         json_object_set_new(obj, "tool_call_id", json_string(m->tool_call_id)) != 0))
        goto fail;
    if (json_object_set_new(obj, "content", m->content ? json_string(m->content) : json_null()) !=
        0)
        goto fail;
    if (calls &&
        json_object_set_new(obj, "tool_calls", tool_calls_json(m->tool_calls,
                                                               m->tool_call_count)) != 0)
        goto fail;
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

json_t *llm_openai_tools_json(const llm_tool *tools, size_t count)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < count; i++) {
        json_t *fn = llm_tool_json(&tools[i], "parameters");
        json_t *one = json_object();
        bool ok = fn && one && json_object_set_new(one, "type", json_string("function")) == 0;
        if (!ok)
            json_decref(fn);
        /* each set_new and append_new takes its value, even when it fails */
        if (!ok || json_object_set_new(one, "function", fn) != 0) {
            json_decref(one);
            one = NULL;
        }
        if (json_array_append_new(list, one) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

json_t *llm_openai_request_json(const llm_request *req, const char *model)
{
    if (!req || !model || (req->message_count > 0 && !req->messages) ||
        (req->tool_count > 0 && !req->tools))
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
    if (req->tool_count > 0 &&
        json_object_set_new(body, "tools", llm_openai_tools_json(req->tools, req->tool_count)) !=
            0)
        goto fail;
    if (req->tool_count > 0 && req->tools_none &&
        json_object_set_new(body, "tool_choice", json_string("none")) != 0)
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

typedef struct reader {
    llm_answer *out;
    const char **reason;
    char *detail;
    size_t detail_size;
} reader;

static int read_tool_calls(reader *r, const json_t *calls)
{
    if (!calls || json_is_null(calls))
        return 0;
    if (!json_is_array(calls))
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "choices[0].message.tool_calls is not a list");
    size_t i;
    const json_t *call;
    json_array_foreach(calls, i, call) {
        const json_t *fn = json_object_get(call, "function");
        const char *id = NULL, *name = NULL, *why = "function is not an object";
        int rc = CX_EPARSE;
        if (json_is_object(fn) && llm_read_optional_string(call, "id", &id) &&
            llm_read_optional_string(fn, "name", &name))
            rc = llm_answer_add_call(r->out, id, name, json_object_get(fn, "arguments"), &why);
        else if (json_is_object(fn))
            why = "id or function.name is not a string";
        if (rc == CX_ENOMEM)
            return llm_answer_refuse(r->reason, r->detail, r->detail_size,
                                     LLM_REASON_MALFORMED, "out of memory reading the answer");
        if (rc != 0)
            return llm_answer_refuse(r->reason, r->detail, r->detail_size,
                                     LLM_REASON_MALFORMED, "choices[0].message.tool_calls[%zu]: %s",
                                     i, why);
    }
    return 0;
}

static int read_answer(reader *r, const json_t *root)
{
    const char **reason = r->reason;
    if (!json_is_object(root))
        return llm_answer_refuse(reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "the answer is JSON but not an object");
    const json_t *choices = json_object_get(root, "choices");
    if (!json_is_array(choices))
        return llm_answer_refuse(reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "the answer has no \"choices\" list");
    if (json_array_size(choices) == 0)
        return llm_answer_refuse(reason, r->detail, r->detail_size, LLM_REASON_EMPTY,
                                 "the answer has no choices");
    const json_t *choice = json_array_get(choices, 0);
    const json_t *message = json_object_get(choice, "message");
    if (!json_is_object(choice) || !json_is_object(message))
        return llm_answer_refuse(reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "choices[0].message is not an object");
    const json_t *text = json_object_get(message, "content");
    if (text && !json_is_null(text) && !json_is_string(text))
        return llm_answer_refuse(reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "choices[0].message.content is not a string");
    const char *finish = NULL, *model = NULL;
    if (!llm_read_optional_string(choice, "finish_reason", &finish))
        return llm_answer_refuse(reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "choices[0].finish_reason is not a string");
    if (!llm_read_optional_string(root, "model", &model))
        return llm_answer_refuse(reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "\"model\" is not a string");
    const json_t *usage = json_object_get(root, "usage");
    uint64_t prompt = 0, completion = 0;
    if (usage && !json_is_null(usage) &&
        (!json_is_object(usage) || !llm_read_tokens(usage, "prompt_tokens", &prompt) ||
         !llm_read_tokens(usage, "completion_tokens", &completion)))
        return llm_answer_refuse(reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "\"usage\" token counts are not non-negative numbers");
    int rc = read_tool_calls(r, json_object_get(message, "tool_calls"));
    if (rc != 0)
        return rc;
    return llm_answer_finish(r->out, json_string_value(text), json_string_length(text), finish,
                             model, prompt, completion, reason, r->detail, r->detail_size);
}

int llm_openai_parse_answer(const char *body, size_t len, llm_answer *out, const char **reason,
                            char *detail, size_t detail_size)
{
    memset(out, 0, sizeof *out);
    *reason = NULL;
    if (detail_size)
        detail[0] = '\0';
    json_t *root = llm_answer_load(body, len, reason, detail, detail_size);
    if (!root)
        return CX_EPARSE;
    reader r = {.out = out, .reason = reason, .detail = detail, .detail_size = detail_size};
    int rc = read_answer(&r, root);
    json_decref(root);
    if (rc != 0)
        llm_answer_free(out);
    return rc;
}

int llm_openai_parse_response(const char *body, size_t len, char **text, char **finish_reason,
                              char **model, uint64_t *prompt_tokens, uint64_t *completion_tokens,
                              const char **reason, char *detail, size_t detail_size)
{
    llm_answer a;
    int rc = llm_openai_parse_answer(body, len, &a, reason, detail, detail_size);
    *text = a.text;
    *finish_reason = a.finish_reason;
    *model = a.model;
    *prompt_tokens = a.prompt_tokens;
    *completion_tokens = a.completion_tokens;
    a.text = a.finish_reason = a.model = NULL;
    llm_answer_free(&a);
    return rc;
}

const llm_protocol llm_protocol_openai = {
    .type = "openai",
    .path = "/chat/completions",
    .default_base_url = "https://api.openai.com/v1",
    .key_header = "Authorization: Bearer ",
    .request_json = llm_openai_request_json,
    .parse = llm_openai_parse_answer,
    .embed_path = "/embeddings",
    .embed_request_json = llm_embed_request_json,
    .embed_parse = llm_openai_parse_embeddings,
};
