/* The runner: how a configuration agent answers a message.
 *
 * An idle instance of an active agent takes the next message (by priority),
 * builds the LLM context (the system prompt from the definition, the recent
 * conversation within `conversation.context_window`, the message), and calls
 * the agent's provider asynchronously. The answer goes back through the
 * router as the reply; any error (provider down after retries, time limit,
 * token budget spent) becomes a failure reply with the reason. One message
 * at a time per instance; instances of one agent share its queue.
 *
 * The rounds of LLM and tool calls of one message are in toolloop.c; this
 * file schedules messages onto instances, builds the context, and turns the
 * outcome into the reply. An agent with memory first searches its memories
 * for the message (which may wait for a remote embedder, at most
 * MEM_SEARCH_EMBED_TIMEOUT_MS; a failure only leaves them out) and calls the
 * LLM once they are in the context. */
#include "agents/agent_internal.h"
#include "agents/agent_memory.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "llm/llm.h"
#include "messaging/router.h"

#define CONTEXT_CHARS_PER_TOKEN 4
#define MAX_HISTORY_MESSAGES 400

static void finish(instance *in, uint64_t latency_ms)
{
    agent *ag = in->owner;
    in->busy = false;
    in->run = NULL;
    in->processed++;
    def_ref_release(in->def);
    in->def = NULL;
    ag->busy--;
    ag->reg->busy--;
    ag->latency_ms[ag->latency_count++ % AGENT_LATENCY_SAMPLES] = latency_ms;
    agent_count_rate(ag, false);
    if (ag->removed)
        registry_maybe_free(ag);
    else
        runner_kick(ag);
}

static uint64_t elapsed_ms(const instance *in)
{
    return (time_monotonic_ns() - in->started_ns) / 1000000u;
}

static void fail_message(instance *in, const char *reason, const char *detail)
{
    agent *ag = in->owner;
    ag->failed++;
    agent_record_error(ag, "%s: %s", reason, detail);
    uint64_t seq = in->seq;
    uint64_t latency = elapsed_ms(in);
    /* finish first: the failure reply may land on this agent's own queue */
    char name[AGENTDEF_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", ag->name);
    router *rt = ag->reg->a->router;
    finish(in, latency);
    router_fail(rt, seq, name, reason, detail, true);
}

/* The text of a message's content for the LLM. */
static char *content_text(const json_t *content)
{
    if (json_is_string(content))
        return str_dup(json_string_value(content));
    return content ? json_dumps(content, JSON_COMPACT | JSON_ENCODE_ANY) : str_dup("");
}

typedef struct context {
    llm_message *msgs;
    char **texts;
    size_t count;
} context;

static void context_free(context *c)
{
    for (size_t i = 0; i < c->count; i++)
        free(c->texts[i]);
    free(c->texts);
    free(c->msgs);
}

/* How much of the context window the memories may take. */
static size_t memory_chars(const agent_def *def)
{
    return (size_t)def->conversation_context_window * CONTEXT_CHARS_PER_TOKEN / 4;
}

/* Builds system prompt (with the memories, taken) + history + message within
 * the context window, dropping the oldest history first. */
static int build_context(agent *ag, const agent_def *def, const acl_message *m, char *memories,
                         context *c)
{
    memset(c, 0, sizeof *c);
    json_t *history = NULL;
    size_t max_history = (size_t)def->conversation_max_turns * 2;
    if (max_history > MAX_HISTORY_MESSAGES)
        max_history = MAX_HISTORY_MESSAGES;
    if (max_history)
        history = router_history(ag->reg->a->router, m->conversation_id, max_history + 1,
                                 (size_t)def->conversation_context_window *
                                     CONTEXT_CHARS_PER_TOKEN * 2);
    size_t n = json_array_size(history);
    c->msgs = calloc(n + 2, sizeof *c->msgs);
    c->texts = calloc(n + 2, sizeof *c->texts);
    if (!c->msgs || !c->texts) {
        json_decref(history);
        context_free(c);
        free(memories);
        return CX_ENOMEM;
    }
    /* memories about this message, in {{memory_context}} or after the
     * prompt; none (and a log line) when the memory system failed */
    char *prompt = agentdef_render_prompt(def, memories);
    if (prompt && memories && !(def->body && strstr(def->body, "memory_context"))) {
        char *joined = NULL;
        if (asprintf(&joined, "%s\n\nRelevant memories:\n%s", prompt, memories) >= 0) {
            free(prompt);
            prompt = joined;
        }
    }
    free(memories);
    if (!prompt) {
        json_decref(history);
        context_free(c);
        return CX_ENOMEM;
    }
    size_t budget = (size_t)def->conversation_context_window * CONTEXT_CHARS_PER_TOKEN;
    char *current = content_text(m->content);
    size_t used = strlen(prompt) + (current ? strlen(current) : 0);

    /* newest history first, until the window is full */
    size_t first = n;
    for (size_t k = n; k-- > 0;) {
        json_t *h = json_array_get(history, k);
        if (strcmp(json_string_value(json_object_get(h, "message_id")) ?: "", m->message_id) == 0)
            continue;
        char *text = content_text(json_object_get(h, "content"));
        size_t len = text ? strlen(text) + 32 : 32;
        free(text);
        if (used + len > budget)
            break;
        used += len;
        first = k;
    }
    c->texts[c->count] = prompt;
    c->msgs[c->count++] = (llm_message){.role = LLM_ROLE_SYSTEM, .content = prompt};
    for (size_t k = first; k < n; k++) {
        json_t *h = json_array_get(history, k);
        if (strcmp(json_string_value(json_object_get(h, "message_id")) ?: "", m->message_id) == 0)
            continue;
        const char *sender = json_string_value(json_object_get(h, "sender"));
        const char *perf = json_string_value(json_object_get(h, "performative"));
        char *text = content_text(json_object_get(h, "content"));
        bool mine = sender && strcmp(sender, ag->name) == 0;
        strbuf sb;
        strbuf_init(&sb);
        if (mine)
            strbuf_appends(&sb, text ? text : "");
        else
            strbuf_appendf(&sb, "[%s from %s] %s", perf ? perf : "message",
                           sender ? sender : "?", text ? text : "");
        free(text);
        char *line = strbuf_detach(&sb);
        if (!line)
            continue;
        c->texts[c->count] = line;
        c->msgs[c->count++] = (llm_message){.role = mine ? LLM_ROLE_ASSISTANT : LLM_ROLE_USER, .content = line};
    }
    json_decref(history);
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appendf(&sb, "[%s from %s] %s", acl_performative_name(m->performative), m->sender,
                   current ? current : "");
    free(current);
    char *line = strbuf_detach(&sb);
    if (!line) {
        context_free(c);
        return CX_ENOMEM;
    }
    c->texts[c->count] = line;
    c->msgs[c->count++] = (llm_message){.role = LLM_ROLE_USER, .content = line};
    return 0;
}

/* Messages that answer something the agent asked need no answer back. */
static bool needs_answer(const acl_message *m)
{
    if (!m->in_reply_to)
        return true;
    switch (m->performative) {
    case ACL_INFORM:
    case ACL_FAILURE:
    case ACL_REFUSE:
    case ACL_AGREE:
    case ACL_NOT_UNDERSTOOD:
    case ACL_CONFIRM:
    case ACL_DISCONFIRM:
    case ACL_REJECT_PROPOSAL:
    case ACL_PROPOSE:
        return false;
    default:
        return true;
    }
}

static bool budget_spent(agent *ag, const agent_def *def)
{
    if (!def->limits_token_budget.tokens)
        return false;
    uint64_t now = time_now_ms();
    if (now - ag->budget_period_start_ms >= def->limits_token_budget.period_ms) {
        ag->budget_period_start_ms = now;
        ag->budget_used = 0;
    }
    return ag->budget_used >= def->limits_token_budget.tokens;
}

void runner_fail(instance *in, const char *reason, const char *detail)
{
    fail_message(in, reason, detail);
}

void runner_answer(instance *in, acl_performative p, json_t *content)
{
    agent *ag = in->owner;
    uint64_t seq = in->seq;
    uint64_t latency = elapsed_ms(in);
    ag->answered++;
    log_event(LOG_STREAM_AGENTS, LOG_INFO, "runner",
              json_pack("{s:s, s:s, s:s, s:s, s:I}", "event", "message_answered", "agent",
                        ag->name, "message_id", in->message_id, "performative",
                        acl_performative_name(p), "latency_ms", (json_int_t)latency),
              "agent %s answered %s in %llu ms", ag->name, in->message_id,
              (unsigned long long)latency);
    char name[AGENTDEF_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", ag->name);
    router *rt = ag->reg->a->router;
    finish(in, latency);
    router_reply(rt, seq, p, content, name);
}

/* The memories are known (or not): build the context and start the rounds. */
static void begin_run(instance *in, char *memories)
{
    agent *ag = in->owner;
    const acl_message *m = router_message(ag->reg->a->router, in->seq);
    const agent_def *def = in->def->def;
    if (!m) {
        free(memories);
        fail_message(in, "internal", "the message is no longer there");
        return;
    }
    context c;
    if (build_context(ag, def, m, memories, &c) < 0) {
        fail_message(in, "internal", "out of memory building the context");
        return;
    }
    /* the time limit counts from the start, memory search included */
    uint64_t now_mono = time_monotonic_ns() / 1000000u;
    uint64_t deadline = in->started_ns / 1000000u + def->limits_max_execution_time_ms;
    if (m->reply_by_ms) {
        uint64_t now = time_now_ms();
        uint64_t left = m->reply_by_ms > now ? m->reply_by_ms - now : 0;
        if (now_mono + left < deadline)
            deadline = now_mono + left;
    }
    /* the run owns the context from here */
    run_begin(in, m, c.msgs, c.texts, c.count, deadline);
}

static void on_memories(int rc, json_t *result, const cx_error *err, void *arg)
{
    instance *in = arg;
    in->memwait = NULL;
    agent *ag = in->owner;
    begin_run(in, agent_memory_context_text(ag->name, rc, result, err,
                                            memory_chars(in->def->def)));
}

static void start(instance *in, uint64_t seq)
{
    agent *ag = in->owner;
    router *rt = ag->reg->a->router;
    const acl_message *m = router_message(rt, seq);
    if (!m)
        return;
    in->busy = true;
    in->seq = seq;
    snprintf(in->message_id, sizeof in->message_id, "%s", m->message_id);
    in->started_ns = time_monotonic_ns();
    in->def = ag->def;
    in->def->refs++;
    ag->busy++;
    ag->reg->busy++;
    const agent_def *def = in->def->def;

    if (!needs_answer(m)) {
        finish(in, 0);
        router_done(rt, seq);
        return;
    }
    if (budget_spent(ag, def)) {
        fail_message(in, "budget-exhausted", "the agent's limits.token_budget is spent for this "
                     "period");
        return;
    }
    if (!def->llm_provider) {
        fail_message(in, LLM_REASON_CONFIG, "the agent names no llm.provider and the server "
                     "has no single provider to default to");
        return;
    }
    if (!ag->reg->a->llm) {
        fail_message(in, LLM_REASON_UNKNOWN_PROVIDER, "no LLM providers are configured "
                     "(llm.providers)");
        return;
    }
    if (!def->memory_enabled || !ag->reg->a->memory) {
        begin_run(in, NULL);
        return;
    }
    /* memories first: on_memories goes on, now or once the query is embedded */
    char *query = content_text(m->content);
    mem_search_req *wait = agent_memory_context_search(ag->reg->a->memory, ag->name, def,
                                                       query ? query : "", on_memories, in);
    free(query);
    if (wait)
        in->memwait = wait;
}

/* Starts messages on idle instances, one after another: a message that
 * finishes at once (no answer needed, a refusal) frees its instance for the
 * next one within this loop, never by recursion. At most RUN_BATCH messages
 * per call, so a long queue of instant failures cannot hold the loop. */
#define RUN_BATCH 256

static void run_agent(agent *ag)
{
    for (int started = 0; started < RUN_BATCH; started++) {
        if (ag->state != AGENT_ACTIVE || ag->reg->quiesced || ag->removed || !ag->def)
            return;
        instance *idle = NULL;
        for (size_t i = 0; i < ag->inst_count && !idle; i++)
            if (!ag->inst[i].busy)
                idle = &ag->inst[i];
        uint64_t seq;
        if (!idle || !agent_next_message(ag, &seq))
            return;
        start(idle, seq);
    }
    runner_kick(ag);
}

/* An idle handle runs once per loop turn, before the loop polls: the
 * agents scheduled before this turn run now, those scheduled while it runs
 * wait for the next turn, and the router's commit (a check handle) and the
 * HTTP jobs get their turn in between. (A 0 ms timer restarted from its own
 * callback would fire again in the same timers phase.) The list stays in
 * the registry meanwhile, so an agent freed on the way is forgotten in
 * place (NULL). */
static void on_kick(uv_idle_t *h)
{
    registry *r = h->data;
    size_t count = r->kick_count;
    for (size_t i = 0; i < count; i++) {
        agent *ag = r->kicks[i];
        if (!ag)
            continue;
        ag->kick_pending = false;
        r->kicks[i] = NULL;
        run_agent(ag);
    }
    memmove(r->kicks, r->kicks + count, (r->kick_count - count) * sizeof *r->kicks);
    r->kick_count -= count;
    if (!r->kick_count)
        uv_idle_stop(&r->kick_idle);
}

void runner_kick(agent *ag)
{
    registry *r = ag->reg;
    if (ag->kick_pending || ag->removed || r->closing)
        return;
    if (r->kick_count == r->kick_cap) {
        size_t cap = r->kick_cap ? r->kick_cap * 2 : 16;
        agent **grown = realloc(r->kicks, cap * sizeof *grown);
        if (!grown)
            return;
        r->kicks = grown;
        r->kick_cap = cap;
    }
    r->kicks[r->kick_count++] = ag;
    ag->kick_pending = true;
    uv_idle_start(&r->kick_idle, on_kick);
}

void runner_forget(agent *ag)
{
    registry *r = ag->reg;
    for (size_t i = 0; i < r->kick_count; i++)
        if (r->kicks[i] == ag)
            r->kicks[i] = NULL;
    ag->kick_pending = false;
}

void runner_init(registry *r)
{
    uv_idle_init(r->a->loop, &r->kick_idle);
    r->kick_idle.data = r;
}

void runner_abort(instance *in)
{
    if (!in->busy)
        return;
    if (in->memwait)
        memstore_search_cancel(in->memwait);
    in->memwait = NULL;
    if (in->run)
        run_abort(in->run);
    in->run = NULL;
    agent *ag = in->owner;
    in->busy = false;
    in->processed++;
    def_ref_release(in->def);
    in->def = NULL;
    ag->busy--;
    ag->reg->busy--;
    agent_count_rate(ag, false);
    runner_kick(ag);
}
