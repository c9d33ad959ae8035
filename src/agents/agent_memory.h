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

/* The text for {{memory_context}}: the top memories for `query`, or NULL. */
char *agent_memory_context(memstore *ms, const char *name, const agent_def *def,
                           const char *query, size_t max_chars);

bool agent_memory_tool_name(const char *tool);
/* The JSON schema text and description of a memory tool. */
const char *agent_memory_tool_schema(const char *tool);
const char *agent_memory_tool_description(const char *tool);
/* Runs one memory tool call; returns the text for the LLM (never NULL) and
 * sets *is_error. */
char *agent_memory_tool_call(memstore *ms, const char *name, const agent_def *def,
                             const char *tool, const json_t *args, bool *is_error);

#endif
