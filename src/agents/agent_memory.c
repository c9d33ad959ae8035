/* Memory for configuration agents: context and tools (agent_memory.h). */
#include "agents/agent_memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "agents/registry.h"
#include "core/log.h"
#include "core/util.h"

#define RETENTION_BATCH 10000 /* entities deleted per agent and sweep */

void agent_mem_caller(memstore *ms, const char *name, const agent_def *def, mem_caller *c,
                      char **owned)
{
    *owned = NULL;
    *c = (mem_caller){
        .agent = name,
        .enabled = def->memory_enabled,
        .scope = def->memory_scope == AGENT_MEMORY_AGENT       ? MEM_SCOPE_AGENT
                 : def->memory_scope == AGENT_MEMORY_GLOBAL    ? MEM_SCOPE_GLOBAL
                                                               : MEM_SCOPE_WORKSPACE,
        .workspace = def->memory_workspace ? def->memory_workspace : "default",
        .global_write = def->memory_global_write,
        .max_entries = def->memory_max_entries,
    };
    if (!ms || !memstore_available(ms))
        return;
    mem_scope_kind k;
    char *ws = NULL;
    if (memstore_scope_override(ms, name, &k, &ws, NULL) == 1) {
        c->scope = k;
        if (ws) {
            c->workspace = ws;
            *owned = ws;
        }
    } else {
        free(ws);
    }
}

#define CONTEXT_MEMORIES 5
#define CONTEXT_QUERY_MAX 4096 /* bytes of the message searched for */

mem_search_req *agent_memory_context_search(memstore *ms, const char *name,
                                            const agent_def *def, const char *query,
                                            mem_search_fn cb, void *arg)
{
    if (!ms || !def->memory_enabled || !query || !*query) {
        cb(0, NULL, NULL, arg);
        return NULL;
    }
    /* the start of a long message stands for it */
    char *q = strndup(query, CONTEXT_QUERY_MAX);
    if (q)
        text_make_utf8(q);
    mem_caller c;
    char *owned;
    agent_mem_caller(ms, name, def, &c, &owned);
    mem_search_query sq = {.text = q, .limit = CONTEXT_MEMORIES, .mode = MEM_SEARCH_HYBRID};
    mem_search_req *r = NULL;
    if (q)
        r = memstore_search_async(ms, &c, &sq, cb, arg);
    else
        cb(0, NULL, NULL, arg);
    free(owned);
    free(q);
    return r;
}

char *agent_memory_context_text(const char *name, int rc, const json_t *result,
                                const cx_error *err, size_t max_chars)
{
    if (rc) {
        log_event(LOG_STREAM_AGENTS, LOG_WARN, "memory", json_pack("{s:s}", "agent", name),
                  "memory context unavailable, answering without it: %s",
                  err ? err->msg : "?");
        return NULL;
    }
    return result ? memstore_context_text(result, max_chars) : NULL;
}

static const char *const search_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"query\":{\"type\":\"string\",\"description\":\"what to look for\"},"
    "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":20},"
    "\"types\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"scope\":{\"type\":\"string\",\"description\":\"agent:NAME, workspace:NAME or global; "
    "default: every scope you may read\"}},"
    "\"required\":[\"query\"]}";
static const char *const store_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"description\":\"the entity, e.g. a supplier's name\"},"
    "\"type\":{\"type\":\"string\",\"description\":\"what kind of thing it is\"},"
    "\"observations\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
    "\"description\":\"short facts about it\"},"
    "\"confidence\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},"
    "\"scope\":{\"type\":\"string\",\"description\":\"default: your own scope\"}},"
    "\"required\":[\"name\",\"observations\"]}";
static const char *const relate_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"from\":{\"type\":\"string\"},\"to\":{\"type\":\"string\"},"
    "\"type\":{\"type\":\"string\",\"description\":\"active voice, lower_snake_case: "
    "depends_on, supplies\"},"
    "\"strength\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},"
    "\"scope\":{\"type\":\"string\"},\"to_scope\":{\"type\":\"string\"}},"
    "\"required\":[\"from\",\"to\",\"type\"]}";

bool agent_memory_tool_name(const char *tool)
{
    return strcmp(tool, "memory_search") == 0 || strcmp(tool, "memory_store") == 0 ||
           strcmp(tool, "memory_relate") == 0;
}

const char *agent_memory_tool_schema(const char *tool)
{
    if (strcmp(tool, "memory_search") == 0)
        return search_schema;
    if (strcmp(tool, "memory_store") == 0)
        return store_schema;
    return relate_schema;
}

const char *agent_memory_tool_description(const char *tool)
{
    if (strcmp(tool, "memory_search") == 0)
        return "Search your memory (facts stored earlier by you or your workspace) by meaning "
               "and words.";
    if (strcmp(tool, "memory_store") == 0)
        return "Remember facts about an entity for later conversations.";
    return "Record a relation between two remembered entities.";
}

static char *error_text(const cx_error *err)
{
    char *s = NULL;
    if (asprintf(&s, "memory error (%s): %s", memstore_api_code(err->code), err->msg) < 0)
        return str_dup("memory error");
    return s;
}

mem_search_req *agent_memory_search(memstore *ms, const char *name, const agent_def *def,
                                    const json_t *args, mem_search_fn cb, void *arg)
{
    if (!ms) {
        cx_error err;
        cx_error_set(&err, CX_EUNAVAIL, "the memory system is not running on this server");
        cb(CX_EUNAVAIL, NULL, &err, arg);
        return NULL;
    }
    mem_caller c;
    char *owned;
    agent_mem_caller(ms, name, def, &c, &owned);
    const json_t *lim = json_object_get(args, "limit");
    const char *types[16];
    size_t ntypes = 0;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(args, "types"), i, t) {
        if (json_is_string(t) && ntypes < 16)
            types[ntypes++] = json_string_value(t);
    }
    mem_search_query sq = {
        .text = json_string_value(json_object_get(args, "query")),
        .scope = json_string_value(json_object_get(args, "scope")),
        .types = types,
        .type_count = ntypes,
        .limit = json_is_integer(lim) && json_integer_value(lim) > 0 &&
                         json_integer_value(lim) <= 20
                     ? (size_t)json_integer_value(lim)
                     : 5,
        .mode = MEM_SEARCH_HYBRID,
    };
    mem_search_req *r = memstore_search_async(ms, &c, &sq, cb, arg);
    free(owned); /* the search keeps copies */
    return r;
}

char *agent_memory_search_text(int rc, const json_t *result, const cx_error *err,
                               bool *is_error)
{
    *is_error = rc != 0;
    if (rc)
        return error_text(err);
    char *text = json_dumps(result, JSON_COMPACT);
    return text ? text : str_dup("{}");
}

char *agent_memory_tool_call(memstore *ms, const char *name, const agent_def *def,
                             const char *tool, const json_t *args, bool *is_error)
{
    *is_error = true;
    if (!ms)
        return str_dup("the memory system is not running on this server");
    mem_caller c;
    char *owned;
    agent_mem_caller(ms, name, def, &c, &owned);
    cx_error err = {0};
    json_t *out = NULL;
    int rc;
    if (strcmp(tool, "memory_store") == 0) {
        rc = memstore_entity_put(ms, &c, args, &out, &err);
        if (!rc) {
            /* the LLM needs the gist, not the full view */
            json_t *brief = json_pack("{s:O, s:O, s:O, s:O, s:O}", "stored", json_true(), "scope",
                                      json_object_get(out, "scope"), "name",
                                      json_object_get(out, "name"), "version",
                                      json_object_get(out, "version"), "observation_count",
                                      json_object_get(out, "observation_count"));
            json_decref(out);
            out = brief;
        }
    } else {
        rc = memstore_relation_put(ms, &c, args, &out, &err);
    }
    free(owned);
    if (rc)
        return error_text(&err);
    char *text = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    *is_error = false;
    return text ? text : str_dup("{}");
}

typedef struct retention_walk {
    memstore *ms;
    const char *only;
    json_t *out;
    cx_error *err;
    int rc;
} retention_walk;

static int retention_one(agent *ag, void *arg)
{
    retention_walk *w = arg;
    const agent_def *def = agent_definition(ag);
    const char *name = agent_name(ag);
    if (!def || !def->memory_enabled || !def->memory_retention_ms ||
        (w->only && strcmp(w->only, name) != 0))
        return 0;
    uint64_t now = time_now_ms();
    uint64_t cutoff = now > def->memory_retention_ms ? now - def->memory_retention_ms : 0;
    int64_t deleted = 0;
    int rc = memstore_apply_retention(w->ms, name, cutoff, RETENTION_BATCH, &deleted, w->err);
    if (rc) {
        w->rc = rc;
        return 1;
    }
    json_object_set_new(w->out, name, json_integer(deleted));
    if (deleted)
        log_event(LOG_STREAM_AGENTS, LOG_INFO, "memory",
                  json_pack("{s:s, s:I}", "agent", name, "deleted", (json_int_t)deleted),
                  "memory.retention of %s: deleted %lld entities not updated for %llu days",
                  name, (long long)deleted,
                  (unsigned long long)(def->memory_retention_ms / 86400000u));
    return 0;
}

json_t *agent_memory_retention(memstore *ms, struct registry *reg, const char *only,
                               cx_error *err)
{
    retention_walk w = {.ms = ms, .only = only, .out = json_object(), .err = err};
    if (!ms || !reg || !w.out) {
        json_decref(w.out);
        cx_error_set(err, CX_EUNAVAIL, "the memory system is not running");
        return NULL;
    }
    registry_foreach(reg, retention_one, &w);
    if (w.rc) {
        json_decref(w.out);
        return NULL;
    }
    return w.out;
}
