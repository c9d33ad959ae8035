/* The Anthropic Messages protocol (POST {base_url}/v1/messages, x-api-key,
 * anthropic-version): the request body and the answer.
 *
 * The neutral conversation maps onto Messages like this: system messages go
 * to the top-level `system` text (joined by blank lines, wherever they
 * were); an assistant turn is text plus `tool_use` blocks; a tool result is
 * a `tool_result` block in a user turn. Consecutive turns of one role are
 * merged, which is what the API wants for several results of one round of
 * tool calls. `max_tokens` is required by the API: 1024 when the agent sets
 * none. The answer's text blocks are joined, `tool_use` blocks become tool
 * calls, other block types (thinking and the like) are skipped, and the stop
 * reason is mapped onto the neutral words ("end_turn" -> "stop",
 * "max_tokens" -> "length", "tool_use" -> "tool_calls"). Cached prompt
 * tokens count as prompt tokens, since they count against a budget too. */
#include "llm/llm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "llm/llm_internal.h"

/* ---- The request ----------------------------------------------------------------------------- */

/* Appends block (taken) to the last turn when it has this role, else to a
 * new turn. */
static int turn_add(json_t *messages, const char *role, json_t *block)
{
    if (!block)
        return -1;
    json_t *last = json_array_get(messages, json_array_size(messages) - 1);
    const char *last_role = json_string_value(json_object_get(last, "role"));
    if (last_role && strcmp(last_role, role) == 0)
        return json_array_append_new(json_object_get(last, "content"), block);
    /* append_new takes block even when it fails (also into no array) */
    json_t *turn = json_pack("{s:s, s:[]}", "role", role, "content");
    if (json_array_append_new(json_object_get(turn, "content"), block) != 0) {
        json_decref(turn);
        return -1;
    }
    return json_array_append_new(messages, turn);
}

static json_t *text_block(const char *text)
{
    return json_pack("{s:s, s:s}", "type", "text", "text", text);
}

static json_t *tool_use_block(const llm_tool_call *c)
{
    if (!c->id || !c->name)
        return NULL;
    json_t *input = llm_call_arguments_object(c);
    json_t *block = input ? json_pack("{s:s, s:s, s:s}", "type", "tool_use", "id", c->id, "name",
                                      c->name)
                          : NULL;
    if (!block) {
        json_decref(input);
        return NULL;
    }
    if (json_object_set_new(block, "input", input) != 0) {
        json_decref(block);
        return NULL;
    }
    return block;
}

static json_t *tool_result_block(const llm_message *m)
{
    if (!m->tool_call_id || !m->content)
        return NULL;
    json_t *block = json_pack("{s:s, s:s, s:s}", "type", "tool_result", "tool_use_id",
                              m->tool_call_id, "content", m->content);
    if (block && m->is_error && json_object_set_new(block, "is_error", json_true()) != 0) {
        json_decref(block);
        return NULL;
    }
    return block;
}

static int message_add(json_t *messages, strbuf *system, const llm_message *m)
{
    switch (m->role) {
    case LLM_ROLE_SYSTEM:
        if (!m->content)
            return -1;
        if (system->len > 0 && strbuf_appends(system, "\n\n") != 0)
            return -1;
        return strbuf_appends(system, m->content);
    case LLM_ROLE_USER:
        if (!m->content)
            return -1;
        return *m->content ? turn_add(messages, "user", text_block(m->content)) : 0;
    case LLM_ROLE_ASSISTANT:
        if ((!m->content && m->tool_call_count == 0) || (m->tool_call_count && !m->tool_calls))
            return -1;
        if (m->content && *m->content &&
            turn_add(messages, "assistant", text_block(m->content)) != 0)
            return -1;
        for (size_t i = 0; i < m->tool_call_count; i++)
            if (turn_add(messages, "assistant", tool_use_block(&m->tool_calls[i])) != 0)
                return -1;
        return 0;
    case LLM_ROLE_TOOL: return turn_add(messages, "user", tool_result_block(m));
    }
    return -1;
}

/* A turn that is one text block is sent as plain text: smaller, and what
 * every example of the API looks like. */
static int turns_simplify(json_t *messages)
{
    size_t i;
    json_t *turn;
    json_array_foreach(messages, i, turn) {
        json_t *blocks = json_object_get(turn, "content");
        json_t *only = json_array_size(blocks) == 1 ? json_array_get(blocks, 0) : NULL;
        const char *type = json_string_value(json_object_get(only, "type"));
        if (type && strcmp(type, "text") == 0 &&
            json_object_set(turn, "content", json_object_get(only, "text")) != 0)
            return -1;
    }
    return 0;
}

static json_t *tools_json(const llm_tool *tools, size_t count)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < count; i++)
        if (json_array_append_new(list, llm_tool_json(&tools[i], "input_schema")) != 0) {
            json_decref(list);
            return NULL;
        }
    return list;
}

json_t *llm_anthropic_request_json(const llm_request *req, const char *model)
{
    if (!req || !model || (req->message_count > 0 && !req->messages) ||
        (req->tool_count > 0 && !req->tools))
        return NULL;
    json_int_t max_tokens =
        req->max_tokens > 0 ? (json_int_t)req->max_tokens : LLM_ANTHROPIC_DEFAULT_MAX_TOKENS;
    json_t *body = json_pack("{s:s, s:I}", "model", model, "max_tokens", max_tokens);
    json_t *messages = json_array();
    strbuf system;
    strbuf_init(&system);
    if (!body || !messages)
        goto fail;
    for (size_t i = 0; i < req->message_count; i++)
        if (message_add(messages, &system, &req->messages[i]) != 0)
            goto fail;
    if (system.failed || turns_simplify(messages) != 0)
        goto fail;
    if (system.len > 0 && json_object_set_new(body, "system", json_string(system.data)) != 0)
        goto fail;
    if (json_object_set(body, "messages", messages) != 0)
        goto fail;
    if (req->tool_count > 0 &&
        json_object_set_new(body, "tools", tools_json(req->tools, req->tool_count)) != 0)
        goto fail;
    if (req->tool_count > 0 && req->tools_none &&
        json_object_set_new(body, "tool_choice", json_pack("{s:s}", "type", "none")) != 0)
        goto fail;
    if (req->temperature_set &&
        json_object_set_new(body, "temperature", json_real(req->temperature)) != 0)
        goto fail;
    strbuf_free(&system);
    json_decref(messages);
    return body;
fail:
    strbuf_free(&system);
    json_decref(messages);
    json_decref(body);
    return NULL;
}

/* ---- The answer ------------------------------------------------------------------------------ */

typedef struct reader {
    llm_answer *out;
    strbuf text;
    const char **reason;
    char *detail;
    size_t detail_size;
} reader;

static int refuse(reader *r, const char *why, const char *what)
{
    return llm_answer_refuse(r->reason, r->detail, r->detail_size, why, "%s", what);
}

static int read_block(reader *r, size_t i, const json_t *block)
{
    const char *type = json_string_value(json_object_get(block, "type"));
    if (!type)
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "content[%zu] has no \"type\"", i);
    if (strcmp(type, "text") == 0) {
        const json_t *text = json_object_get(block, "text");
        if (!json_is_string(text))
            return llm_answer_refuse(r->reason, r->detail, r->detail_size,
                                     LLM_REASON_MALFORMED, "content[%zu].text is not a string", i);
        return strbuf_append(&r->text, json_string_value(text), json_string_length(text)) == 0
                   ? 0
                   : refuse(r, LLM_REASON_MALFORMED, "out of memory reading the answer");
    }
    if (strcmp(type, "tool_use") != 0)
        return 0; /* thinking, server tools and whatever comes next: not ours */
    const char *id = NULL, *name = NULL, *why = "id or name is not a string";
    const json_t *input = json_object_get(block, "input");
    int rc = CX_EPARSE;
    if (!json_is_object(input))
        why = "input is not an object";
    else if (llm_read_optional_string(block, "id", &id) &&
             llm_read_optional_string(block, "name", &name))
        rc = llm_answer_add_call(r->out, id, name, input, &why);
    if (rc == CX_ENOMEM)
        return refuse(r, LLM_REASON_MALFORMED, "out of memory reading the answer");
    if (rc != 0)
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "content[%zu] (tool_use): %s", i, why);
    return 0;
}

static const char *finish_word(const char *stop_reason)
{
    if (!stop_reason)
        return NULL;
    if (strcmp(stop_reason, "end_turn") == 0 || strcmp(stop_reason, "stop_sequence") == 0)
        return "stop";
    if (strcmp(stop_reason, "max_tokens") == 0)
        return "length";
    if (strcmp(stop_reason, "tool_use") == 0)
        return "tool_calls";
    return stop_reason;
}

static int read_usage(reader *r, const json_t *usage, uint64_t *prompt, uint64_t *completion)
{
    uint64_t input = 0, created = 0, cached = 0;
    if (usage && !json_is_null(usage) &&
        (!json_is_object(usage) || !llm_read_tokens(usage, "input_tokens", &input) ||
         !llm_read_tokens(usage, "cache_creation_input_tokens", &created) ||
         !llm_read_tokens(usage, "cache_read_input_tokens", &cached) ||
         !llm_read_tokens(usage, "output_tokens", completion)))
        return refuse(r, LLM_REASON_MALFORMED,
                      "\"usage\" token counts are not non-negative numbers");
    *prompt = input + created + cached; /* each is clamped far below overflow */
    return 0;
}

static int read_answer(reader *r, const json_t *root)
{
    if (!json_is_object(root))
        return refuse(r, LLM_REASON_MALFORMED, "the answer is JSON but not an object");
    const char *type = NULL, *stop = NULL, *model = NULL;
    if (!llm_read_optional_string(root, "type", &type) || (type && strcmp(type, "message") != 0))
        return refuse(r, LLM_REASON_MALFORMED, "the answer's \"type\" is not \"message\"");
    const json_t *content = json_object_get(root, "content");
    if (!json_is_array(content))
        return refuse(r, LLM_REASON_MALFORMED, "the answer has no \"content\" list");
    if (!llm_read_optional_string(root, "stop_reason", &stop))
        return refuse(r, LLM_REASON_MALFORMED, "\"stop_reason\" is not a string");
    if (!llm_read_optional_string(root, "model", &model))
        return refuse(r, LLM_REASON_MALFORMED, "\"model\" is not a string");
    uint64_t prompt = 0, completion = 0;
    if (read_usage(r, json_object_get(root, "usage"), &prompt, &completion) != 0)
        return CX_EPARSE;
    size_t i;
    const json_t *block;
    json_array_foreach(content, i, block) {
        if (!json_is_object(block))
            return llm_answer_refuse(r->reason, r->detail, r->detail_size,
                                     LLM_REASON_MALFORMED, "content[%zu] is not an object", i);
        int rc = read_block(r, i, block);
        if (rc != 0)
            return rc;
    }
    return llm_answer_finish(r->out, r->text.data, r->text.len, finish_word(stop), model, prompt,
                             completion, r->reason, r->detail, r->detail_size);
}

int llm_anthropic_parse_answer(const char *body, size_t len, llm_answer *out,
                               const char **reason, char *detail, size_t detail_size)
{
    memset(out, 0, sizeof *out);
    *reason = NULL;
    if (detail_size)
        detail[0] = '\0';
    json_t *root = llm_answer_load(body, len, reason, detail, detail_size);
    if (!root)
        return CX_EPARSE;
    reader r = {.out = out, .reason = reason, .detail = detail, .detail_size = detail_size};
    strbuf_init(&r.text);
    int rc = read_answer(&r, root);
    strbuf_free(&r.text);
    json_decref(root);
    if (rc != 0)
        llm_answer_free(out);
    return rc;
}

const llm_protocol llm_protocol_anthropic = {
    .type = "anthropic",
    .path = "/v1/messages",
    .default_base_url = "https://api.anthropic.com",
    .key_header = "x-api-key: ",
    .extra_header = "anthropic-version: " LLM_ANTHROPIC_VERSION,
    .request_json = llm_anthropic_request_json,
    .parse = llm_anthropic_parse_answer,
};
