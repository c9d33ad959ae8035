/* One message's rounds: LLM call, tool calls, LLM call, ... final answer.
 *
 * The tools offered to the LLM are exactly the agent's allow-list: the
 * built-in `send_message` (ask an agent or a capability through the router
 * and wait for its reply) and `reply` (choose the performative of the
 * answer), and MCP tools `server.tool` that the hub knows now. Tool names
 * are mapped for the providers' rules ("files.read_file" is offered as
 * "files__read_file"). A call outside the allow-list (an LLM can invent
 * names) is refused, answered to the LLM as an error, and recorded as a
 * violation. Calls of one round run in parallel; when all are back, the
 * results go to the LLM in the next round. limits.max_tool_calls bounds the
 * calls per message: past it the LLM gets no more tools and must answer.
 * Everything shares the message's deadline (limits.max_execution_time or
 * reply_by). */
#include "agents/agent_internal.h"
#include "agents/agent_memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "llm/llm.h"
#include "messaging/router.h"
#include "tools/mcp.h"

#define MAX_ROUNDS 64               /* LLM calls per message, whatever the tool budget */
#define TOOL_TEXT_MAX (256u * 1024) /* a tool result given to the LLM is cut here */
#define SEND_DEFAULT_TIMEOUT_MS 30000u

typedef struct pending_tool {
    struct run_state *run;
    char *call_id;
    char *llm_name;
    const char *real_name; /* "files.read_file"; NULL until known */
    mcp_call *mcp;
    router_waiter *waiter;
    mem_search_req *memsearch; /* memory_search waiting for its query's vector */
    uint64_t started_ns;
    bool busy;
} pending_tool;

struct run_state {
    instance *in;
    const agent_def *def;
    char message_id[ACL_ID_MAX + 1];
    char conversation_id[ACL_ID_MAX + 1];
    acl_performative asked;     /* the performative of the message being answered */
    llm_message *msgs;
    size_t count, cap;
    void **owned;               /* blocks freed with the run */
    size_t owned_count, owned_cap;
    json_t *keep;               /* JSON kept alive for the messages (arguments, schemas) */
    llm_tool *tools;
    char **real_names;          /* tools[i] is real_names[i] ("files.read_file") */
    size_t tool_count;
    bool offer_tools;
    int64_t calls_used;
    unsigned rounds;
    uint64_t deadline_ms;       /* monotonic */
    llm_call *call;
    pending_tool *pending;
    size_t pending_count, pending_left;
    bool final_set;
    acl_performative final_perf;
    json_t *final_content;
};

static const char *const send_message_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"receiver\":{\"type\":\"string\",\"description\":\"the name of the agent to ask\"},"
    "\"capability\":{\"type\":\"string\",\"description\":\"or: a capability; an agent that "
    "provides it answers\"},"
    "\"content\":{\"type\":\"string\",\"description\":\"what to ask or tell\"},"
    "\"performative\":{\"type\":\"string\",\"enum\":[\"request\",\"query-ref\",\"query-if\","
    "\"inform\"],\"description\":\"default request\"},"
    "\"timeout_seconds\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":600}},"
    "\"required\":[\"content\"]}";

static const char *const reply_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"performative\":{\"type\":\"string\",\"enum\":[\"inform\",\"failure\",\"refuse\","
    "\"not-understood\",\"agree\",\"propose\"]},"
    "\"content\":{\"type\":\"string\",\"description\":\"the answer\"}},"
    "\"required\":[\"performative\",\"content\"]}";

/* ---- ownership ------------------------------------------------------------------------------- */

static void *own(run_state *run, void *block)
{
    if (!block)
        return NULL;
    if (run->owned_count == run->owned_cap) {
        size_t cap = run->owned_cap ? run->owned_cap * 2 : 32;
        void **grown = realloc(run->owned, cap * sizeof *grown);
        if (!grown) {
            free(block);
            return NULL;
        }
        run->owned = grown;
        run->owned_cap = cap;
    }
    run->owned[run->owned_count++] = block;
    return block;
}

static char *own_str(run_state *run, const char *s)
{
    return s ? own(run, str_dup(s)) : NULL;
}

static llm_message *push_message(run_state *run)
{
    if (run->count == run->cap) {
        size_t cap = run->cap ? run->cap * 2 : 16;
        llm_message *grown = realloc(run->msgs, cap * sizeof *grown);
        if (!grown)
            return NULL;
        run->msgs = grown;
        run->cap = cap;
    }
    llm_message *m = &run->msgs[run->count++];
    memset(m, 0, sizeof *m);
    return m;
}

static void run_free(run_state *run)
{
    for (size_t i = 0; i < run->owned_count; i++)
        free(run->owned[i]);
    free(run->owned);
    free(run->msgs);
    free(run->tools);
    free(run->real_names);
    free(run->pending);
    json_decref(run->keep);
    json_decref(run->final_content);
    free(run);
}

/* ---- the end of a run -------------------------------------------------------------------------- */

static void run_fail(run_state *run, const char *reason, const char *detail)
{
    instance *in = run->in;
    in->run = NULL;
    run_free(run);
    runner_fail(in, reason, detail);
}

static void run_answer(run_state *run, acl_performative p, json_t *content)
{
    instance *in = run->in;
    in->run = NULL;
    run_free(run);
    runner_answer(in, p, content);
    json_decref(content);
}

/* ---- tools offered ------------------------------------------------------------------------------ */

/* "files.read_file" -> "files__read_file" (providers allow [A-Za-z0-9_-]). */
static char *llm_name_of(const char *real)
{
    strbuf sb;
    strbuf_init(&sb);
    for (const char *p = real; *p; p++) {
        if (*p == '.')
            strbuf_appends(&sb, "__");
        else
            strbuf_append(&sb, p, 1);
    }
    char *out = strbuf_detach(&sb);
    if (out && strlen(out) > 64)
        out[64] = '\0';
    return out;
}

static void offer(run_state *run, const char *real, const char *description,
                  const json_t *schema)
{
    char *name = own(run, llm_name_of(real));
    if (!name)
        return;
    for (size_t i = 0; i < run->tool_count; i++)
        if (strcmp(run->tools[i].name, name) == 0)
            return; /* two names that map to one: the first wins */
    run->tools[run->tool_count] = (llm_tool){.name = name, .description = description,
                                             .input_schema = schema};
    run->real_names[run->tool_count++] = own_str(run, real);
}

static void prepare_tools(run_state *run, mcp_hub *hub)
{
    const agent_def *def = run->def;
    run->tools = calloc(def->tool_count + 1, sizeof *run->tools);
    run->real_names = calloc(def->tool_count + 1, sizeof *run->real_names);
    if (!run->tools || !run->real_names)
        return;
    for (size_t i = 0; i < def->tool_count; i++) {
        const char *t = def->tools[i];
        if (strcmp(t, "send_message") == 0 || strcmp(t, "reply") == 0) {
            json_t *schema = json_loads(strcmp(t, "reply") == 0 ? reply_schema
                                                                 : send_message_schema,
                                        0, NULL);
            json_array_append_new(run->keep, schema);
            offer(run, t, strcmp(t, "reply") == 0
                              ? "Answer the message with this performative and content, "
                                "instead of a plain answer."
                              : "Ask another agent (receiver) or any agent with a capability, "
                                "and wait for its reply.",
                  schema);
        } else if (agent_memory_tool_name(t)) {
            /* offered when this agent has memory and the server runs it */
            if (!def->memory_enabled || !run->in->owner->reg->a->memory)
                continue;
            json_t *schema = json_loads(agent_memory_tool_schema(t), 0, NULL);
            json_array_append_new(run->keep, schema);
            offer(run, t, agent_memory_tool_description(t), schema);
        } else if (strchr(t, '.') && hub) {
            const mcp_tool_info *info = mcp_hub_tool(hub, t);
            if (info) {
                json_t *schema = json_deep_copy(info->input_schema);
                json_array_append_new(run->keep, schema);
                offer(run, t, own_str(run, info->description), schema);
            }
        }
    }
    run->offer_tools = run->tool_count > 0 && def->limits_max_tool_calls > 0;
}

/* ---- rounds ------------------------------------------------------------------------------------ */

static void llm_round(run_state *run);

static void add_tool_result(run_state *run, const char *call_id, const char *llm_name,
                            const char *text, bool is_error)
{
    llm_message *m = push_message(run);
    if (!m)
        return;
    char *copy = str_dup(text ? text : "");
    if (copy && strlen(copy) > TOOL_TEXT_MAX) {
        copy[TOOL_TEXT_MAX] = '\0';
        text_make_utf8(copy); /* the cut may split a character */
    }
    m->role = LLM_ROLE_TOOL;
    m->content = own(run, copy);
    m->tool_call_id = own_str(run, call_id);
    m->tool_name = own_str(run, llm_name);
    m->is_error = is_error;
}

static void tool_finished(pending_tool *pt)
{
    run_state *run = pt->run;
    pt->busy = false;
    pt->mcp = NULL;
    pt->waiter = NULL;
    pt->memsearch = NULL;
    if (--run->pending_left == 0)
        llm_round(run);
}

static void record_tool(run_state *run, const char *tool, bool ok, uint64_t ms)
{
    agent *ag = run->in->owner;
    ag->tool_calls++;
    ag->tool_time_ms += ms;
    if (!ok)
        ag->tool_errors++;
    log_event(LOG_STREAM_AGENTS, ok ? LOG_DEBUG : LOG_WARN, "tools",
              json_pack("{s:s, s:s, s:s, s:s, s:b, s:I}", "event", "tool_call", "agent", ag->name,
                        "message_id", run->message_id, "tool", tool, "ok", ok, "duration_ms",
                        (json_int_t)ms),
              "agent %s called %s: %s", ag->name, tool, ok ? "ok" : "failed");
}

/* The text of a CallToolResult for the LLM: its text parts, else the JSON. */
static char *result_text(const json_t *result)
{
    json_t *content = json_object_get(result, "content");
    strbuf sb;
    strbuf_init(&sb);
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        if (type && strcmp(type, "text") == 0) {
            if (sb.len)
                strbuf_appends(&sb, "\n");
            strbuf_appends(&sb, json_string_value(json_object_get(part, "text")) ?: "");
        } else {
            char *j = json_dumps(part, JSON_COMPACT);
            if (j) {
                if (sb.len)
                    strbuf_appends(&sb, "\n");
                strbuf_appends(&sb, j);
                free(j);
            }
        }
    }
    if (!sb.len) {
        char *j = json_dumps(result, JSON_COMPACT);
        strbuf_appends(&sb, j ? j : "");
        free(j);
    }
    return strbuf_detach(&sb);
}

static void on_mcp_done(const mcp_result *res, void *arg)
{
    pending_tool *pt = arg;
    run_state *run = pt->run;
    char *text = res->code == 0 ? result_text(res->result) : NULL;
    if (res->code != 0) {
        char msg[700];
        snprintf(msg, sizeof msg, "the tool failed (%s): %s", res->reason ? res->reason : "error",
                 res->detail);
        add_tool_result(run, pt->call_id, pt->llm_name, msg, true);
    } else {
        add_tool_result(run, pt->call_id, pt->llm_name, text, res->is_error);
    }
    record_tool(run, pt->real_name ? pt->real_name : pt->llm_name,
                res->code == 0 && !res->is_error, res->elapsed_ms);
    free(text);
    tool_finished(pt);
}

/* memory_search answered: at once (from start_tool), or later (busy). */
static void on_memory_searched(int rc, json_t *result, const cx_error *err, void *arg)
{
    pending_tool *pt = arg;
    pt->memsearch = NULL; /* answered: nothing left to cancel */
    bool is_error = true;
    char *text = agent_memory_search_text(rc, result, err, &is_error);
    add_tool_result(pt->run, pt->call_id, pt->llm_name, text ? text : "memory error", is_error);
    free(text);
    record_tool(pt->run, "memory_search", !is_error,
                (time_monotonic_ns() - pt->started_ns) / 1000000u);
    if (pt->busy)
        tool_finished(pt);
}

/* The result of send_message: the reply, or why there is none. */
static void sent_reply_result(run_state *run, pending_tool *pt, const json_t *reply, int status)
{
    if (status == 200 && reply) {
        char *text = json_dumps(json_object_get(reply, "content"), JSON_COMPACT | JSON_ENCODE_ANY);
        char line[160];
        snprintf(line, sizeof line, "[%s from %s] ",
                 json_string_value(json_object_get(reply, "performative")) ?: "reply",
                 json_string_value(json_object_get(reply, "sender")) ?: "?");
        strbuf sb;
        strbuf_init(&sb);
        strbuf_appends(&sb, line);
        const json_t *content = json_object_get(reply, "content");
        strbuf_appends(&sb, json_is_string(content) ? json_string_value(content)
                                                    : (text ? text : ""));
        free(text);
        char *all = strbuf_detach(&sb);
        const char *perf = json_string_value(json_object_get(reply, "performative"));
        bool failed = perf && (strcmp(perf, "failure") == 0 || strcmp(perf, "refuse") == 0 ||
                               strcmp(perf, "not-understood") == 0);
        add_tool_result(run, pt->call_id, pt->llm_name, all, failed);
        record_tool(run, "send_message", !failed, 0);
        free(all);
    } else {
        add_tool_result(run, pt->call_id, pt->llm_name,
                        status == 504 ? "no reply came before the timeout"
                                      : "the server is shutting down",
                        true);
        record_tool(run, "send_message", false, 0);
    }
}

static void on_sent_reply(json_t *reply, int status, void *arg)
{
    pending_tool *pt = arg;
    sent_reply_result(pt->run, pt, reply, status);
    tool_finished(pt);
}

static uint64_t time_left(const run_state *run)
{
    uint64_t now = time_monotonic_ns() / 1000000u;
    return run->deadline_ms > now ? run->deadline_ms - now : 0;
}

/* send_message: returns true when the result will come later. */
static bool start_send(run_state *run, pending_tool *pt, const json_t *args)
{
    agent *ag = run->in->owner;
    const char *receiver = json_string_value(json_object_get(args, "receiver"));
    const char *capability = json_string_value(json_object_get(args, "capability"));
    const char *perf = json_string_value(json_object_get(args, "performative"));
    json_t *timeout = json_object_get(args, "timeout_seconds");
    json_t *msg = json_pack("{s:s, s:s, s:O?, s:s}", "performative", perf ? perf : "request",
                            "sender", ag->name, "content", json_object_get(args, "content"),
                            "conversation_id", run->conversation_id);
    if (receiver)
        json_object_set_new(msg, "receiver", json_string(receiver));
    if (capability)
        json_object_set_new(msg, "capability", json_string(capability));
    acl_message m;
    acl_problem problem;
    int rc = msg ? acl_message_from_json(msg, ACL_FROM_AGENT,
                                         (size_t)ag->reg->a->config->messaging_max_message_size,
                                         &m, &problem)
                 : CX_ENOMEM;
    json_decref(msg);
    if (rc < 0) {
        char text[700];
        snprintf(text, sizeof text, "send_message refused: %s: %s", problem.field,
                 problem.reason);
        add_tool_result(run, pt->call_id, pt->llm_name, text, true);
        return false;
    }
    route_outcome out;
    cx_error err;
    rc = router_submit(ag->reg->a->router, &m, ACL_FROM_AGENT, ROUTE_ROUND_ROBIN, &out, &err);
    acl_message_clear(&m);
    if (rc < 0) {
        route_outcome_clear(&out);
        char text[900];
        snprintf(text, sizeof text, "send_message refused: %s", err.msg);
        add_tool_result(run, pt->call_id, pt->llm_name, text, true);
        return false;
    }
    if (out.reply) { /* answered at once, e.g. no agent provides the capability */
        sent_reply_result(run, pt, out.reply, 200);
        route_outcome_clear(&out);
        return false;
    }
    uint64_t wait = json_is_integer(timeout) && json_integer_value(timeout) > 0
                        ? (uint64_t)json_integer_value(timeout) * 1000u
                        : SEND_DEFAULT_TIMEOUT_MS;
    if (wait > time_left(run))
        wait = time_left(run);
    rc = router_wait_reply(ag->reg->a->router, out.message_id, wait, on_sent_reply, pt,
                           &pt->waiter, &err);
    route_outcome_clear(&out);
    if (rc < 0) {
        add_tool_result(run, pt->call_id, pt->llm_name, err.msg, true);
        return false;
    }
    pt->busy = true;
    return true;
}

static void violation(run_state *run, const char *name, const char *why)
{
    agent *ag = run->in->owner;
    ag->tool_violations++;
    log_event(LOG_STREAM_AGENTS, LOG_WARN, "tools",
              json_pack("{s:s, s:s, s:s, s:s, s:s}", "event", "tool_violation", "agent",
                        ag->name, "message_id", run->message_id, "tool", name, "reason", why),
              "agent %s: refused tool call %s (%s)", ag->name, name, why);
}

static const char *real_name(const run_state *run, const char *llm_name)
{
    for (size_t i = 0; i < run->tool_count; i++)
        if (strcmp(run->tools[i].name, llm_name) == 0)
            return run->real_names[i];
    return NULL;
}

/* An allow-listed tool that was not offered (its server was down or had
 * not listed it when the message started): the agent's name for it. */
static const char *allowed_unoffered(const run_state *run, const char *llm_name)
{
    for (size_t i = 0; i < run->def->tool_count; i++) {
        char *mapped = llm_name_of(run->def->tools[i]);
        bool same = mapped && strcmp(mapped, llm_name) == 0;
        free(mapped);
        if (same)
            return run->def->tools[i];
    }
    return NULL;
}

/* Starts one tool call; true when its result comes later. */
static bool start_tool(run_state *run, pending_tool *pt, const llm_tool_call *call)
{
    /* an allow-listed MCP tool that was not offered (its server was down or
     * had not listed it when the message started) is still tried: the hub
     * answers with the reason, or runs it if the server is back */
    const char *real = real_name(run, call->name);
    if (!real)
        real = allowed_unoffered(run, call->name);
    if (!real) {
        violation(run, call->name, "not in the agent's tools");
        char text[300];
        snprintf(text, sizeof text, "tool '%.100s' is not available to this agent; use only the "
                 "tools you were given", call->name);
        text_make_utf8(text);
        add_tool_result(run, pt->call_id, pt->llm_name, text, true);
        return false;
    }
    if (run->calls_used >= run->def->limits_max_tool_calls) {
        run->offer_tools = false;
        add_tool_result(run, pt->call_id, pt->llm_name,
                        "the tool call limit for this message is reached "
                        "(limits.max_tool_calls); answer with what you have",
                        true);
        return false;
    }
    pt->real_name = real;
    run->calls_used++;
    if (run->calls_used >= run->def->limits_max_tool_calls)
        run->offer_tools = false; /* that was the last one: the next round must answer */
    if (!call->arguments) {
        add_tool_result(run, pt->call_id, pt->llm_name,
                        "the arguments are not a JSON object; call the tool again with valid "
                        "arguments",
                        true);
        record_tool(run, real, false, 0);
        return false;
    }
    if (strcmp(real, "reply") == 0) {
        const char *perf = json_string_value(json_object_get(call->arguments, "performative"));
        int p = perf ? acl_performative_parse(perf) : -1;
        if (p != ACL_INFORM && p != ACL_FAILURE && p != ACL_REFUSE && p != ACL_NOT_UNDERSTOOD &&
            p != ACL_AGREE && p != ACL_PROPOSE) {
            add_tool_result(run, pt->call_id, pt->llm_name,
                            "performative must be inform, failure, refuse, not-understood, "
                            "agree or propose",
                            true);
            return false;
        }
        json_decref(run->final_content);
        json_t *content = json_object_get(call->arguments, "content");
        run->final_content = content ? json_incref(content) : json_string("");
        run->final_perf = (acl_performative)p;
        run->final_set = true;
        add_tool_result(run, pt->call_id, pt->llm_name, "the reply will be sent", false);
        return false;
    }
    if (strcmp(real, "send_message") == 0)
        return start_send(run, pt, call->arguments);
    agent *ag = run->in->owner;
    if (strcmp(real, "memory_search") == 0) {
        /* answered in this round, unless a remote embedder embeds the query */
        pt->started_ns = time_monotonic_ns();
        mem_search_req *r = agent_memory_search(ag->reg->a->memory, ag->name, run->def,
                                                call->arguments, on_memory_searched, pt);
        if (!r)
            return false;
        pt->memsearch = r;
        pt->busy = true;
        return true;
    }
    if (agent_memory_tool_name(real)) {
        /* local and quick: answered in this round */
        uint64_t t0 = time_monotonic_ns();
        bool is_error = true;
        char *text = agent_memory_tool_call(ag->reg->a->memory, ag->name, run->def, real,
                                            call->arguments, &is_error);
        add_tool_result(run, pt->call_id, pt->llm_name, text ? text : "memory error", is_error);
        free(text);
        record_tool(run, real, !is_error, (time_monotonic_ns() - t0) / 1000000u);
        return false;
    }
    mcp_hub *hub = ag->reg->a->tools;
    cx_error err;
    uint64_t left = time_left(run);
    if (left == 0) {
        add_tool_result(run, pt->call_id, pt->llm_name,
                        "no time is left for this message (limits.max_execution_time or "
                        "reply_by); answer with what you have",
                        true);
        record_tool(run, real, false, 0);
        return false;
    }
    /* bounded by the message's deadline and by the server's own timeout */
    pt->mcp = hub ? mcp_hub_call(hub, real, call->arguments, left, on_mcp_done, pt, &err) : NULL;
    if (!pt->mcp) {
        char text[900];
        snprintf(text, sizeof text, "the tool %s cannot be called now: %s", real,
                 hub ? err.msg : "no tool servers are configured");
        add_tool_result(run, pt->call_id, pt->llm_name, text, true);
        record_tool(run, real, false, 0);
        return false;
    }
    pt->busy = true;
    return true;
}

/* The LLM asked for tools: record its turn, start the calls. */
static void run_tools(run_state *run, const llm_result *res)
{
    llm_message *turn = push_message(run);
    llm_tool_call *calls = own(run, calloc(res->tool_call_count, sizeof *calls));
    if (!turn || !calls) {
        run_fail(run, "internal", "out of memory recording the tool calls");
        return;
    }
    for (size_t i = 0; i < res->tool_call_count; i++) {
        const llm_tool_call *c = &res->tool_calls[i];
        json_t *args = c->arguments ? json_deep_copy(c->arguments) : NULL;
        if (args)
            json_array_append_new(run->keep, args);
        calls[i] = (llm_tool_call){.id = own_str(run, c->id), .name = own_str(run, c->name),
                                   .arguments = args,
                                   .arguments_text = own_str(run, c->arguments_text)};
    }
    turn->role = LLM_ROLE_ASSISTANT;
    turn->content = own_str(run, res->text);
    turn->tool_calls = calls;
    turn->tool_call_count = res->tool_call_count;

    free(run->pending);
    run->pending = calloc(res->tool_call_count, sizeof *run->pending);
    if (!run->pending) {
        run_fail(run, "internal", "out of memory starting the tool calls");
        return;
    }
    run->pending_count = res->tool_call_count;
    run->pending_left = 1; /* held until every call is started */
    for (size_t i = 0; i < res->tool_call_count; i++) {
        pending_tool *pt = &run->pending[i];
        pt->run = run;
        pt->call_id = (char *)calls[i].id;
        pt->llm_name = (char *)calls[i].name;
        if (start_tool(run, pt, &calls[i]))
            run->pending_left++;
    }
    if (--run->pending_left == 0)
        llm_round(run);
}

static void on_llm_done(const llm_result *res, void *arg)
{
    run_state *run = arg;
    instance *in = run->in;
    agent *ag = in->owner;
    run->call = NULL;
    ag->llm_calls++;
    ag->llm_time_ms += res->elapsed_ms;
    ag->prompt_tokens += res->prompt_tokens;
    ag->completion_tokens += res->completion_tokens;
    ag->budget_used += res->prompt_tokens + res->completion_tokens;
    if (res->code != 0) {
        ag->llm_errors++;
        run_fail(run, res->reason ? res->reason : LLM_REASON_PROVIDER_ERROR, res->detail);
        return;
    }
    if (res->tool_call_count > 0 && !run->final_set) {
        run_tools(run, res);
        return;
    }
    if (run->final_set) {
        json_t *content = run->final_content;
        run->final_content = NULL;
        run_answer(run, run->final_perf, content);
        return;
    }
    json_t *content = json_string(res->text ? res->text : "");
    if (!content) {
        run_fail(run, "internal", "the answer is not valid UTF-8 text");
        return;
    }
    run_answer(run, run->asked == ACL_CFP ? ACL_PROPOSE : ACL_INFORM, content);
}

static void llm_round(run_state *run)
{
    agent *ag = run->in->owner;
    if (run->final_set && run->rounds > 0) {
        /* the reply tool chose the answer: no need to ask the LLM again */
        json_t *content = run->final_content;
        run->final_content = NULL;
        run_answer(run, run->final_perf, content);
        return;
    }
    if (run->rounds++ >= MAX_ROUNDS) {
        run_fail(run, "tool-limit", "the LLM kept asking for tools past the round limit");
        return;
    }
    if (time_left(run) == 0) {
        run_fail(run, LLM_REASON_TIMEOUT, "limits.max_execution_time (or reply_by) passed "
                 "during the tool calls");
        return;
    }
    const agent_def *def = run->def;
    llm_request req = {
        .provider = def->llm_provider,
        .model = def->llm_model,
        .temperature = def->llm_temperature,
        .temperature_set = def->llm_temperature_set,
        .max_tokens = def->llm_max_tokens,
        .messages = run->msgs,
        .message_count = run->count,
        .deadline_ms = run->deadline_ms,
        .agent = ag->name,
        /* once tools were used, they stay described (the history refers to
         * them) even when no more calls are allowed */
        .tools = run->offer_tools || run->pending_count > 0 ? run->tools : NULL,
        .tool_count = run->offer_tools || run->pending_count > 0 ? run->tool_count : 0,
        .tools_none = !run->offer_tools && run->pending_count > 0,
    };
    cx_error err;
    run->call = llm_chat(ag->reg->a->llm, &req, on_llm_done, run, &err);
    if (!run->call)
        run_fail(run, err.code == CX_ENOTFOUND ? LLM_REASON_UNKNOWN_PROVIDER : LLM_REASON_CONFIG,
                 err.msg);
}

/* ---- entry points --------------------------------------------------------------------------- */

void run_begin(instance *in, const acl_message *m, llm_message *msgs, char **texts,
               size_t count, uint64_t deadline_ms)
{
    run_state *run = calloc(1, sizeof *run);
    if (!run || !(run->keep = json_array())) {
        free(run);
        for (size_t i = 0; i < count; i++)
            free(texts[i]);
        free(texts);
        free(msgs);
        runner_fail(in, "internal", "out of memory starting the message");
        return;
    }
    run->in = in;
    run->def = in->def->def;
    run->asked = m->performative;
    snprintf(run->message_id, sizeof run->message_id, "%s", m->message_id);
    snprintf(run->conversation_id, sizeof run->conversation_id, "%s", m->conversation_id);
    run->msgs = msgs;
    run->count = run->cap = count;
    for (size_t i = 0; i < count; i++)
        own(run, texts[i]);
    free(texts);
    run->deadline_ms = deadline_ms;
    in->run = run;
    prepare_tools(run, in->owner->reg->a->tools);
    llm_round(run);
}

void run_abort(run_state *run)
{
    if (run->call)
        llm_call_cancel(run->call);
    router *rt = run->in->owner->reg->a->router;
    for (size_t i = 0; i < run->pending_count; i++) {
        pending_tool *pt = &run->pending[i];
        if (pt->mcp)
            mcp_call_cancel(pt->mcp);
        if (pt->memsearch)
            memstore_search_cancel(pt->memsearch);
        if (pt->waiter && rt)
            router_wait_cancel(rt, pt->waiter);
    }
    run->in->run = NULL;
    run_free(run);
}
