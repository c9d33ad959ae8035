/* Ollama's native chat protocol (POST {base_url}/api/chat, stream off): the
 * request body and the answer.
 *
 * Close to OpenAI's shape with three differences that matter here: tool call
 * arguments are JSON objects rather than text, tool calls carry no ids (we
 * make them, so the agent loop can pair results with calls as it does for
 * every provider), and a tool result names the tool (`tool_name`) rather
 * than the call. Sampling settings go under `options` (`temperature`,
 * `num_predict`). Token counts are `prompt_eval_count` and `eval_count`.
 * Ollama ends a turn that asked for tools with "stop"; it is reported as
 * "tool_calls" like the other types do. */
#include "llm/llm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "llm/llm_internal.h"

#define ERROR_SHOWN_MAX 200 /* bytes of an error text quoted in a detail */

/* ---- The request ----------------------------------------------------------------------------- */

/* [{function:{name, arguments:{...}}}] */
static json_t *tool_calls_json(const llm_tool_call *calls, size_t count)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < count; i++) {
        json_t *args = calls[i].name ? llm_call_arguments_object(&calls[i]) : NULL;
        json_t *one = json_pack("{s:{s:s}}", "function", "name", calls[i].name);
        json_t *fn = json_object_get(one, "function");
        if (!args || json_object_set_new(fn, "arguments", args) != 0) {
            json_decref(one); /* set_new took args, or there were none */
            one = NULL;
        }
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
    json_t *obj = json_pack("{s:s, s:s}", "role", role, "content", m->content ? m->content : "");
    if (!obj)
        return NULL;
    if (calls && json_object_set_new(obj, "tool_calls",
                                     tool_calls_json(m->tool_calls, m->tool_call_count)) != 0)
        goto fail;
    if (m->role == LLM_ROLE_TOOL && m->tool_name &&
        json_object_set_new(obj, "tool_name", json_string(m->tool_name)) != 0)
        goto fail;
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

static int options_add(json_t *body, const llm_request *req)
{
    if (!req->temperature_set && req->max_tokens <= 0)
        return 0;
    json_t *options = json_object();
    if (json_object_set_new(body, "options", options) != 0)
        return -1;
    if (req->temperature_set &&
        json_object_set_new(options, "temperature", json_real(req->temperature)) != 0)
        return -1;
    if (req->max_tokens > 0 &&
        json_object_set_new(options, "num_predict", json_integer((json_int_t)req->max_tokens)) !=
            0)
        return -1;
    return 0;
}

json_t *llm_ollama_request_json(const llm_request *req, const char *model)
{
    if (!req || !model || (req->message_count > 0 && !req->messages) ||
        (req->tool_count > 0 && !req->tools))
        return NULL;
    json_t *body = json_pack("{s:s, s:[], s:b}", "model", model, "messages", "stream", 0);
    json_t *messages = json_object_get(body, "messages");
    if (!body)
        return NULL;
    for (size_t i = 0; i < req->message_count; i++)
        if (json_array_append_new(messages, message_json(&req->messages[i])) != 0)
            goto fail;
    if (req->tool_count > 0 && !req->tools_none &&
        json_object_set_new(body, "tools", llm_openai_tools_json(req->tools, req->tool_count)) !=
            0)
        goto fail;
    if (options_add(body, req) != 0)
        goto fail;
    return body;
fail:
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

static int refuse(reader *r, const char *why, const char *what)
{
    return llm_answer_refuse(r->reason, r->detail, r->detail_size, why, "%s", what);
}

static int read_tool_calls(reader *r, const json_t *calls)
{
    if (!calls || json_is_null(calls))
        return 0;
    if (!json_is_array(calls))
        return refuse(r, LLM_REASON_MALFORMED, "message.tool_calls is not a list");
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
            return refuse(r, LLM_REASON_MALFORMED, "out of memory reading the answer");
        if (rc != 0)
            return llm_answer_refuse(r->reason, r->detail, r->detail_size,
                                     LLM_REASON_MALFORMED, "message.tool_calls[%zu]: %s", i,
                                     why);
    }
    return 0;
}

/* An answer without a message: Ollama's {"error": "..."} when it has one. */
static int refuse_no_message(reader *r, const json_t *root)
{
    const json_t *error = json_object_get(root, "error");
    if (!json_is_string(error))
        return refuse(r, LLM_REASON_MALFORMED, "the answer has no \"message\" object");
    char shown[ERROR_SHOWN_MAX];
    text_quote(json_string_value(error), shown, sizeof shown);
    return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                             "the answer has no \"message\", only an error: %s", shown);
}

static int read_answer(reader *r, const json_t *root)
{
    if (!json_is_object(root))
        return refuse(r, LLM_REASON_MALFORMED, "the answer is JSON but not an object");
    const json_t *message = json_object_get(root, "message");
    if (!json_is_object(message))
        return refuse_no_message(r, root);
    const json_t *text = json_object_get(message, "content");
    if (text && !json_is_null(text) && !json_is_string(text))
        return refuse(r, LLM_REASON_MALFORMED, "message.content is not a string");
    const char *finish = NULL, *model = NULL;
    if (!llm_read_optional_string(root, "done_reason", &finish))
        return refuse(r, LLM_REASON_MALFORMED, "\"done_reason\" is not a string");
    if (!llm_read_optional_string(root, "model", &model))
        return refuse(r, LLM_REASON_MALFORMED, "\"model\" is not a string");
    uint64_t prompt = 0, completion = 0;
    if (!llm_read_tokens(root, "prompt_eval_count", &prompt) ||
        !llm_read_tokens(root, "eval_count", &completion))
        return refuse(r, LLM_REASON_MALFORMED,
                      "\"prompt_eval_count\" or \"eval_count\" is not a non-negative number");
    int rc = read_tool_calls(r, json_object_get(message, "tool_calls"));
    if (rc != 0)
        return rc;
    if (r->out->tool_call_count > 0 && (!finish || strcmp(finish, "stop") == 0))
        finish = "tool_calls";
    return llm_answer_finish(r->out, json_string_value(text), json_string_length(text), finish,
                             model, prompt, completion, r->reason, r->detail, r->detail_size);
}

int llm_ollama_parse_answer(const char *body, size_t len, llm_answer *out, const char **reason,
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

const llm_protocol llm_protocol_ollama = {
    .type = "ollama",
    .path = "/api/chat",
    .default_base_url = "http://localhost:11434",
    .key_header = "Authorization: Bearer ",
    .request_json = llm_ollama_request_json,
    .parse = llm_ollama_parse_answer,
    .embed_path = "/api/embed",
    .embed_request_json = llm_embed_request_json,
    .embed_parse = llm_ollama_parse_embeddings,
};
