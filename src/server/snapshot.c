/* Loop state published for HTTP threads. See snapshot.h. */
#include "server/snapshot.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/registry.h"
#include "llm/llm.h"
#include "memory/memstore.h"
#include "messaging/router.h"
#include "obs/metrics.h"
#include "tools/mcp.h"
#include "server/health.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *metrics_text;
static health_result agents_health = {APP_HEALTH_OK, "no agents loaded yet"};
static health_result memory_health = {APP_HEALTH_OK, "not opened yet"};

static void collect(strbuf *out, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    if (metrics_text)
        strbuf_appends(out, metrics_text);
    pthread_mutex_unlock(&lock);
}

static void check_agents(app *a, health_result *out, void *arg)
{
    (void)a;
    (void)arg;
    pthread_mutex_lock(&lock);
    *out = agents_health;
    pthread_mutex_unlock(&lock);
}

static void family(strbuf *sb, const char *name, const char *type, const char *help)
{
    strbuf_appendf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void check_memory(app *a, health_result *out, void *arg)
{
    (void)a;
    (void)arg;
    pthread_mutex_lock(&lock);
    *out = memory_health;
    pthread_mutex_unlock(&lock);
}

/* The memory families, and the memory health component. */
static void render_memory(app *a, strbuf *sb, health_result *h)
{
    memstore *ms = a->memory;
    if (!ms) {
        *h = (health_result){APP_HEALTH_WARN, "the memory system is not running"};
        return;
    }
    memstore_stats st;
    memstore_get_stats(ms, &st);
    family(sb, "caxton_memory_up", "gauge", "1 when the memory database is open and usable.");
    strbuf_appendf(sb, "caxton_memory_up %d\n", st.available);
    family(sb, "caxton_memory_usage", "gauge",
           "Share of memory.max_size in use by the memory database and its WAL (0..1).");
    strbuf_appendf(sb, "caxton_memory_usage %.6f\n",
                   st.max_size ? (double)(st.db_bytes + st.wal_bytes) / (double)st.max_size : 0.0);
    family(sb, "caxton_memory_database_bytes", "gauge", "Size of memory.db and its WAL file.");
    strbuf_appendf(sb, "caxton_memory_database_bytes{file=\"db\"} %llu\n",
                   (unsigned long long)st.db_bytes);
    strbuf_appendf(sb, "caxton_memory_database_bytes{file=\"wal\"} %llu\n",
                   (unsigned long long)st.wal_bytes);
    family(sb, "caxton_memory_entities", "gauge", "Entities in the memory store, by scope.");
    json_t *counts = NULL;
    if (st.available && memstore_scope_counts(ms, &counts, NULL) == 0) {
        const char *scope;
        json_t *n;
        json_object_foreach(counts, scope, n) {
            strbuf_appends(sb, "caxton_memory_entities{scope=\"");
            metrics_append_label_value(sb, scope);
            strbuf_appendf(sb, "\"} %lld\n", (long long)json_integer_value(n));
        }
    }
    json_decref(counts);
    family(sb, "caxton_memory_vectors", "gauge", "Vectors in the in-memory search index.");
    strbuf_appendf(sb, "caxton_memory_vectors %lld\n", (long long)st.vectors);
    family(sb, "caxton_memory_embeddings_waiting", "gauge",
           "Entities waiting for their vector from a remote embedder (0 with the builtin one).");
    strbuf_appendf(sb, "caxton_memory_embeddings_waiting %lld\n",
                   (long long)(st.embeddings_waiting > 0 ? st.embeddings_waiting : 0));
    family(sb, "caxton_memory_search_duration_seconds", "histogram",
           "Memory searches (vector + full text, fused), by duration.");
    uint64_t cum = 0;
    for (size_t b = 0; b < 12; b++) {
        cum += st.search_hist[b];
        strbuf_appendf(sb, "caxton_memory_search_duration_seconds_bucket{le=\"%g\"} %llu\n",
                       memstore_search_buckets[b], (unsigned long long)cum);
    }
    strbuf_appendf(sb, "caxton_memory_search_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                   (unsigned long long)st.searches);
    strbuf_appendf(sb, "caxton_memory_search_duration_seconds_sum %.6f\n",
                   (double)st.search_ns_total / 1e9);
    strbuf_appendf(sb, "caxton_memory_search_duration_seconds_count %llu\n",
                   (unsigned long long)st.searches);
    family(sb, "caxton_memory_writes_total", "counter", "Memory writes, by outcome.");
    strbuf_appendf(sb, "caxton_memory_writes_total{outcome=\"ok\"} %llu\n",
                   (unsigned long long)st.writes);
    strbuf_appendf(sb, "caxton_memory_writes_total{outcome=\"error\"} %llu\n",
                   (unsigned long long)st.write_errors);
    family(sb, "caxton_memory_scope_violations_total", "counter",
           "Memory accesses refused by the scope rules.");
    strbuf_appendf(sb, "caxton_memory_scope_violations_total %llu\n",
                   (unsigned long long)st.violations);
    if (!st.available) {
        h->status = APP_HEALTH_FAIL;
        snprintf(h->detail, sizeof h->detail, "memory database unavailable: %.160s "
                 "(caxton memory health-check)", memstore_last_error(ms));
    } else if (st.max_size && st.db_bytes + st.wal_bytes >= st.max_size / 10 * 9) {
        h->status = APP_HEALTH_WARN;
        snprintf(h->detail, sizeof h->detail, "memory database at %.0f%% of memory.max_size",
                 100.0 * (double)(st.db_bytes + st.wal_bytes) / (double)st.max_size);
    } else if (st.embedder_remote && st.embeddings_waiting > 0 && st.embed_last_error[0]) {
        /* the embedder is failing: new memories are found by text only */
        h->status = APP_HEALTH_WARN;
        snprintf(h->detail, sizeof h->detail, "%lld entities wait for their vectors from %.40s: "
                 "%.120s",
                 (long long)st.embeddings_waiting, st.embedder ? st.embedder : "the embedder",
                 st.embed_last_error);
    } else {
        h->status = APP_HEALTH_OK;
        snprintf(h->detail, sizeof h->detail, "%lld entities, %lld relations, %lld vectors",
                 (long long)st.entities, (long long)st.relations, (long long)st.vectors);
    }
}

int snapshot_init(void)
{
    static bool collector_registered; /* the metrics registry lives as long as the process */
    int rc = 0;
    if (!collector_registered) {
        rc = metrics_register_collector(collect, NULL);
        collector_registered = rc == 0;
    }
    if (rc == 0)
        rc = health_register("agents", false, check_agents, NULL);
    if (rc == 0)
        rc = health_register("memory", false, check_memory, NULL);
    return rc;
}

/* One pass over the agents fills the four per-agent families. */
typedef struct render_ctx {
    strbuf fam[4];
} render_ctx;

static void sample(strbuf *sb, const char *metric, const char *who, const char *label,
                   long long value)
{
    strbuf_appendf(sb, "%s{agent=\"", metric);
    metrics_append_label_value(sb, who);
    strbuf_appendf(sb, "\"%s} %lld\n", label ? label : "", value);
}

static int agent_sample(agent *ag, void *arg)
{
    render_ctx *c = arg;
    json_t *s = agent_summary_json(ag);
    json_t *stats = json_object_get(s, "stats");
    const char *name = agent_name(ag);
#define STAT(key) ((long long)json_integer_value(json_object_get(stats, key)))
    sample(&c->fam[0], "caxton_agent_queue_depth", name, NULL, (long long)agent_queue_depth(ag));
    sample(&c->fam[1], "caxton_agent_messages_total", name, ",outcome=\"answered\"",
           STAT("answered"));
    sample(&c->fam[1], "caxton_agent_messages_total", name, ",outcome=\"failed\"",
           STAT("failed"));
    sample(&c->fam[2], "caxton_agent_llm_tokens_total", name, ",kind=\"prompt\"",
           STAT("prompt_tokens"));
    sample(&c->fam[2], "caxton_agent_llm_tokens_total", name, ",kind=\"completion\"",
           STAT("completion_tokens"));
    sample(&c->fam[3], "caxton_agent_in_flight", name, NULL, (long long)agent_in_flight(ag));
#undef STAT
    json_decref(s);
    return 0;
}

static void render(app *a, strbuf *sb)
{
    size_t counts[AGENT_FAILED + 1];
    registry_state_counts(a->agents, counts);
    family(sb, "caxton_agents", "gauge", "Agents by state.");
    for (int s = 0; s <= AGENT_FAILED; s++)
        strbuf_appendf(sb, "caxton_agents{state=\"%s\"} %zu\n", agent_state_name((agent_state)s),
                       counts[s]);
    static const struct {
        const char *name, *type, *help;
    } per_agent[] = {
        {"caxton_agent_queue_depth", "gauge", "Messages waiting in the agent's queue."},
        {"caxton_agent_messages_total", "counter", "Messages the agent finished, by outcome."},
        {"caxton_agent_llm_tokens_total", "counter", "LLM tokens used by the agent."},
        {"caxton_agent_in_flight", "gauge", "Messages the agent is processing now."},
    };
    render_ctx c;
    for (int i = 0; i < 4; i++)
        strbuf_init(&c.fam[i]);
    registry_foreach(a->agents, agent_sample, &c);
    for (int i = 0; i < 4; i++) {
        family(sb, per_agent[i].name, per_agent[i].type, per_agent[i].help);
        if (c.fam[i].len)
            strbuf_append(sb, c.fam[i].data, c.fam[i].len);
        strbuf_free(&c.fam[i]);
    }
    router_stats rs;
    router_get_stats(a->router, &rs);
    family(sb, "caxton_messages_total", "counter", "Messages through the router, by outcome.");
    strbuf_appendf(sb,
                   "caxton_messages_total{outcome=\"accepted\"} %llu\n"
                   "caxton_messages_total{outcome=\"replied\"} %llu\n"
                   "caxton_messages_total{outcome=\"failed\"} %llu\n"
                   "caxton_messages_total{outcome=\"refused\"} %llu\n"
                   "caxton_messages_total{outcome=\"dead_lettered\"} %llu\n"
                   "caxton_messages_total{outcome=\"redelivered\"} %llu\n",
                   (unsigned long long)rs.accepted, (unsigned long long)rs.replied,
                   (unsigned long long)rs.failed, (unsigned long long)rs.refused,
                   (unsigned long long)rs.dead_lettered, (unsigned long long)rs.redelivered);
    family(sb, "caxton_message_journal_pending", "gauge",
           "API messages accepted and not yet answered (redelivered after a crash).");
    strbuf_appendf(sb, "caxton_message_journal_pending %llu\n",
                   (unsigned long long)rs.journal_pending);
    json_t *llm = a->llm ? llm_client_stats(a->llm) : NULL;
    family(sb, "caxton_llm_requests_total", "counter", "LLM provider requests, by outcome.");
    const char *provider;
    json_t *st;
    json_object_foreach(llm, provider, st) {
        long long req = (long long)json_integer_value(json_object_get(st, "requests"));
        long long err = (long long)json_integer_value(json_object_get(st, "errors"));
        strbuf_appends(sb, "caxton_llm_requests_total{provider=\"");
        metrics_append_label_value(sb, provider);
        strbuf_appendf(sb, "\",outcome=\"ok\"} %lld\n", req - err > 0 ? req - err : 0);
        strbuf_appends(sb, "caxton_llm_requests_total{provider=\"");
        metrics_append_label_value(sb, provider);
        strbuf_appendf(sb, "\",outcome=\"error\"} %lld\n", err);
    }
    family(sb, "caxton_llm_fallbacks_total", "counter",
           "LLM calls handed from a failing provider to its fallback, by provider.");
    json_object_foreach(llm, provider, st) {
        strbuf_appends(sb, "caxton_llm_fallbacks_total{provider=\"");
        metrics_append_label_value(sb, provider);
        strbuf_appendf(sb, "\"} %lld\n",
                       (long long)json_integer_value(json_object_get(st, "fallbacks")));
    }
    family(sb, "caxton_llm_tokens_total", "counter", "LLM tokens used, by provider and kind.");
    json_object_foreach(llm, provider, st) {
        static const char *const kinds[] = {"prompt", "completion"};
        for (int k = 0; k < 2; k++) {
            char key[32];
            snprintf(key, sizeof key, "%s_tokens", kinds[k]);
            strbuf_appends(sb, "caxton_llm_tokens_total{provider=\"");
            metrics_append_label_value(sb, provider);
            strbuf_appendf(sb, "\",kind=\"%s\"} %lld\n", kinds[k],
                           (long long)json_integer_value(json_object_get(st, key)));
        }
    }
    family(sb, "caxton_llm_in_flight", "gauge", "LLM requests in flight, by provider.");
    json_object_foreach(llm, provider, st) {
        strbuf_appends(sb, "caxton_llm_in_flight{provider=\"");
        metrics_append_label_value(sb, provider);
        strbuf_appendf(sb, "\"} %lld\n",
                       (long long)json_integer_value(json_object_get(st, "in_flight")));
    }
    json_decref(llm);
    json_t *tools = a->tools ? mcp_hub_status_json(a->tools, NULL) : NULL;
    json_t *servers = tools;
    size_t i;
    json_t *server;
    family(sb, "caxton_mcp_server_up", "gauge",
           "1 when the MCP tool server is ready (initialized and its tools listed).");
    json_array_foreach(servers, i, server) {
        strbuf_appends(sb, "caxton_mcp_server_up{server=\"");
        metrics_append_label_value(sb, json_string_value(json_object_get(server, "name")));
        strbuf_appendf(sb, "\"} %d\n",
                       strcmp(json_string_value(json_object_get(server, "state")) ?: "", "ready")
                           == 0);
    }
    family(sb, "caxton_mcp_calls_total", "counter", "MCP tool calls, by server and outcome.");
    json_array_foreach(servers, i, server) {
        long long calls = (long long)json_integer_value(json_object_get(server, "calls"));
        long long errors = (long long)json_integer_value(json_object_get(server, "errors"));
        for (int k = 0; k < 2; k++) {
            strbuf_appends(sb, "caxton_mcp_calls_total{server=\"");
            metrics_append_label_value(sb, json_string_value(json_object_get(server, "name")));
            strbuf_appendf(sb, "\",outcome=\"%s\"} %lld\n", k ? "error" : "ok",
                           k ? errors : (calls - errors > 0 ? calls - errors : 0));
        }
    }
    json_decref(tools);
}

void snapshot_take(app *a)
{
    if (!a->agents || !a->router)
        return;
    strbuf sb;
    strbuf_init(&sb);
    render(a, &sb);
    health_result mh = {APP_HEALTH_OK, ""};
    render_memory(a, &sb, &mh);
    char *text = sb.failed ? NULL : strbuf_detach(&sb);
    strbuf_free(&sb);
    size_t counts[AGENT_FAILED + 1];
    registry_state_counts(a->agents, counts);
    health_result h = {APP_HEALTH_OK, ""};
    if (counts[AGENT_FAILED]) {
        h.status = APP_HEALTH_WARN;
        snprintf(h.detail, sizeof h.detail, "%zu of %zu agents failed to load (see 'caxton agents "
                 "status --error-states-only')", counts[AGENT_FAILED], registry_count(a->agents));
    } else {
        snprintf(h.detail, sizeof h.detail, "%zu agents, %zu active", registry_count(a->agents),
                 counts[AGENT_ACTIVE]);
    }
    pthread_mutex_lock(&lock);
    if (text) {
        free(metrics_text);
        metrics_text = text;
    }
    agents_health = h;
    memory_health = mh;
    pthread_mutex_unlock(&lock);
}

void snapshot_reset(void)
{
    pthread_mutex_lock(&lock);
    free(metrics_text);
    metrics_text = NULL;
    agents_health = (health_result){APP_HEALTH_OK, "no agents loaded yet"};
    memory_health = (health_result){APP_HEALTH_OK, "not opened yet"};
    pthread_mutex_unlock(&lock);
}
