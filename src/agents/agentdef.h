/* Agent definition files: Markdown with YAML frontmatter (docs/agents.md).
 *
 * agentdef_parse() reads one file's text into an agent_def and reports every
 * problem it finds as a diagnostic with file:line:column, the field path, a
 * message for the operator and, where a fix is likely, a hint. Validation
 * runs in the documented order: frontmatter present, YAML syntax, required
 * fields, types and ranges, cross-references (providers, tools, module),
 * template variables. Whether the file is readable and whether its name is
 * unique across the agents dir are the caller's checks (it has the file
 * system and the other files), reported through the same diagnostics.
 *
 * Pure: no I/O except what the context's callbacks do, no globals, safe on
 * any thread. */
#ifndef CAXTON_AGENTS_AGENTDEF_H
#define CAXTON_AGENTS_AGENTDEF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define AGENTDEF_MAX_FILE (1024 * 1024) /* bigger files are refused unread */
#define AGENTDEF_NAME_MIN 3
#define AGENTDEF_NAME_MAX 64
#define AGENTDEF_MAX_CAPABILITIES 20
#define AGENTDEF_MAX_TOOLS 64
#define AGENTDEF_DESCRIPTION_MAX 200
#define AGENTDEF_MAX_INSTANCES 64
#define AGENTDEF_MAX_DIAGS 200

typedef enum agentdef_severity { AGENTDEF_ERROR, AGENTDEF_WARNING } agentdef_severity;

/* One problem. line and column are 1-based (0 when not about a place). */
typedef struct agentdef_diag {
    agentdef_severity severity;
    unsigned line;
    unsigned column;
    char *field; /* "llm.temperature", "capabilities[2]", "" for the file */
    char *message;
    char *hint;  /* or NULL */
} agentdef_diag;

typedef struct agentdef_diags {
    agentdef_diag *items;
    size_t count;
    size_t errors;
    size_t warnings;
    bool truncated; /* more than AGENTDEF_MAX_DIAGS were found */
} agentdef_diags;

typedef enum agent_runtime { AGENT_RUNTIME_LLM, AGENT_RUNTIME_WASM } agent_runtime;
typedef enum agent_memory_scope {
    AGENT_MEMORY_AGENT,
    AGENT_MEMORY_WORKSPACE,
    AGENT_MEMORY_GLOBAL,
} agent_memory_scope;

/* A token budget "200000/day": tokens per period. tokens 0 = no budget. */
typedef struct agent_budget {
    uint64_t tokens;
    uint64_t period_ms; /* hour, day, week, month (30 days) */
} agent_budget;

/* The whole model of one definition. Strings are owned (agentdef_free).
 * Absent optional fields hold their documented defaults. */
typedef struct agent_def {
    char *name;
    unsigned name_line, name_column; /* where the name's value is, for later checks */
    char *version;       /* semver text */
    char *description;   /* "" when absent */
    agent_runtime runtime;
    char **capabilities;
    size_t capability_count;
    char **requires;
    size_t require_count;
    char **tools;
    size_t tool_count;
    /* llm */
    char *llm_provider;  /* NULL when absent (then the server's only provider, or an error) */
    char *llm_model;     /* NULL = provider default */
    double llm_temperature; /* default 0.7 */
    bool llm_temperature_set;
    int64_t llm_max_tokens; /* 0 = provider default; 1..1000000 */
    /* memory */
    bool memory_enabled;
    agent_memory_scope memory_scope;   /* default workspace */
    char *memory_workspace;            /* default "default" */
    int64_t memory_max_entries;        /* default 10000 */
    uint64_t memory_retention_ms;      /* 0 = forever */
    bool memory_global_write;          /* may write the global scope */
    /* conversation */
    int64_t conversation_max_turns;    /* default 50, 1..10000 */
    int64_t conversation_context_window; /* tokens, default 8000, 256..2000000 */
    uint64_t conversation_timeout_ms;  /* default 30m */
    /* limits */
    uint64_t limits_max_execution_time_ms; /* default 60s, 1s..1h */
    int64_t limits_max_tool_calls;     /* default 10, 0..1000 */
    agent_budget limits_token_budget;
    int64_t instances;                 /* default 1, 1..AGENTDEF_MAX_INSTANCES */
    json_t *parameters;                /* object, default {} */
    /* wasm */
    char *module;                      /* as written, NULL for llm agents */
    char *policy;                      /* strict | default | relaxed; NULL = server default */
    uint64_t wasm_memory_bytes;        /* 0 = default */
    uint64_t wasm_fuel;                /* 0 = default */
    uint64_t wasm_timeout_ms;          /* 0 = default */
    /* body */
    char *body;                        /* the Markdown after the closing --- */
    unsigned body_line;                /* 1-based line where the body starts */
    char *frontmatter;                 /* the YAML text between the markers */
} agent_def;

typedef enum agentdef_tool_server {
    AGENTDEF_SERVER_UNKNOWN,   /* not configured: an unlisted tool is an error */
    AGENTDEF_SERVER_READY,     /* listed its tools: an unlisted tool is an error */
    AGENTDEF_SERVER_NOT_READY, /* starting or failing: an unlisted tool is a warning */
} agentdef_tool_server;

/* What validation checks cross-references against. Any field may be NULL /
 * 0: then that check is skipped (providers) or only warns (tools). */
typedef struct agentdef_context {
    const char *const *providers;  /* provider names from llm.providers */
    size_t provider_count;
    /* Known tools: built-in ones are always known. NULL with
     * tools_checked=false means "offline": unknown MCP tools are warnings. */
    const char *const *tools;
    size_t tool_count;
    bool tools_checked;
    /* With tools_checked: says what a server named in an unlisted MCP tool
     * is, so a server still starting gives a warning rather than an error.
     * NULL: every unlisted tool is an error. */
    agentdef_tool_server (*tool_server)(const char *server, size_t len, void *arg);
    void *tool_server_arg;
    const char *agents_dir;        /* to resolve `module`; NULL skips the module check */
    /* Checks a WASM module file; returns 0 or fills msg. NULL skips. */
    int (*check_module)(const char *path, char *msg, size_t msg_size, void *arg);
    void *check_module_arg;
} agentdef_context;

/* Parses and validates text (len bytes) of the file `file` (used in the
 * diagnostics). Always fills diags. Returns the definition when there are no
 * errors (warnings allowed), else NULL. */
agent_def *agentdef_parse(const char *file, const char *text, size_t len,
                          const agentdef_context *ctx, agentdef_diags *diags);
void agentdef_free(agent_def *def);

/* The built-in tool names (send_message, reply, memory_search, memory_store,
 * memory_relate). */
extern const char *const agentdef_builtin_tools[];
extern const size_t agentdef_builtin_tool_count;

/* Name rules: 3-64 chars, ^[a-z][a-z0-9-]*[a-z0-9]$. */
bool agentdef_name_valid(const char *name);
/* Capability names: kebab-case, 1..64 chars, ^[a-z0-9]+(-[a-z0-9]+)*$. */
bool agentdef_capability_valid(const char *cap);

/* Adds a diagnostic (used by callers for the readability and uniqueness
 * checks). field, hint may be NULL. */
void agentdef_diag_add(agentdef_diags *diags, agentdef_severity sev, unsigned line,
                       unsigned column, const char *field, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
void agentdef_diags_free(agentdef_diags *diags);
/* "file:line:column: error: field: message\n  hint: ...\n" for each one. */
int agentdef_diags_format(const agentdef_diags *diags, const char *file, char **out);
/* [{"severity","line","column","field","message","hint"}] */
json_t *agentdef_diags_json(const agentdef_diags *diags);

/* The definition as JSON for the API (every field, defaults filled in; the
 * body under "prompt"). */
json_t *agentdef_to_json(const agent_def *def);

/* The system prompt: the body with {{name}}, {{version}}, {{description}},
 * {{capabilities}} (comma-separated), {{parameters.KEY}} (scalars as text,
 * others as JSON), {{memory_context}} and {{agent_name}} replaced.
 * memory_context may be NULL (replaced by ""). Returns a new string. */
char *agentdef_render_prompt(const agent_def *def, const char *memory_context);

/* For --fix-suggestions: applies the mechanical fixes (tabs for
 * indentation, a key a small edit away from a known one, a missing closing
 * ---, a number out of range clamped into it, a name with upper case or
 * underscores) and returns the corrected file text. With remaining_errors
 * NULL, only a text that then has no errors is returned (else NULL); with
 * it, any text where a fix applied is returned and *remaining_errors says
 * how many errors still need a manual fix. NULL when no fix applies. */
char *agentdef_fix_suggestions(const char *file, const char *text, size_t len,
                               const agentdef_context *ctx, size_t *remaining_errors);

#endif
