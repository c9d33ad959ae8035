/* The agents' side of the memory system: who an agent is to the store (its
 * scope, workspace and rights, with the operator's scope-reset applied), the
 * memories put in its context, and the memory_search / memory_store /
 * memory_relate tools. Memory failures never fail a message: they become
 * tool errors the LLM can read, or an empty memory context, and are logged. */
#ifndef CAXTON_AGENTS_AGENT_MEMORY_H
#define CAXTON_AGENTS_AGENT_MEMORY_H

#include <jansson.h>
#include <stdbool.h>

#include "agents/agentdef.h"
#include "memory/memstore.h"

/* Fills c for the agent `name` with definition def. *owned (free it after
 * use) holds the workspace string when an override supplied it. */
void agent_mem_caller(memstore *ms, const char *name, const agent_def *def, mem_caller *c,
                      char **owned);

/* The search for {{memory_context}}: the top memories for `query`. cb always
 * runs: before this returns (then NULL is returned), or later on the loop
 * (the request is returned, to cancel with memstore_search_cancel). Turn its
 * answer into the context with agent_memory_context_text. */
mem_search_req *agent_memory_context_search(memstore *ms, const char *name,
                                            const agent_def *def, const char *query,
                                            mem_search_fn cb, void *arg);
/* The context text of that answer, or NULL (none, or a failure, which is
 * logged and counted: memory never fails a message). */
char *agent_memory_context_text(const char *name, int rc, const json_t *result,
                                const cx_error *err, size_t max_chars);

bool agent_memory_tool_name(const char *tool);
/* The JSON schema text and description of a memory tool. */
const char *agent_memory_tool_schema(const char *tool);
const char *agent_memory_tool_description(const char *tool);
/* Runs memory_store or memory_relate; returns the text for the LLM (never
 * NULL) and sets *is_error. */
char *agent_memory_tool_call(memstore *ms, const char *name, const agent_def *def,
                             const char *tool, const json_t *args, bool *is_error);
/* Starts memory_search (it may wait for the query's vector): cb always runs,
 * at once (NULL returned) or later (the request returned, to cancel). */
mem_search_req *agent_memory_search(memstore *ms, const char *name, const agent_def *def,
                                    const json_t *args, mem_search_fn cb, void *arg);
/* The text for the LLM of a memory_search answer (never NULL); sets *is_error. */
char *agent_memory_search_text(int rc, const json_t *result, const cx_error *err,
                               bool *is_error);

struct registry;
/* Applies every memory-enabled agent's memory.retention (or only `agent`'s):
 * {"agent": deleted, ...}; agents without a retention are left out. */
json_t *agent_memory_retention(memstore *ms, struct registry *reg, const char *only,
                               cx_error *err);

#endif
