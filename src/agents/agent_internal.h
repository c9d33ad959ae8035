/* What registry.c and runner.c share about one agent. Nothing outside
 * src/agents includes this file; the rest of the server uses registry.h. */
#ifndef CAXTON_AGENTS_AGENT_INTERNAL_H
#define CAXTON_AGENTS_AGENT_INTERNAL_H

#include <uv.h>

#include "agents/registry.h"
#include "core/map.h"
#include "llm/llm.h"

#define AGENT_RELOAD_HISTORY 20
#define AGENT_VERSION_HISTORY 10
#define AGENT_RATE_SECONDS 60
#define AGENT_LATENCY_SAMPLES 256

/* A definition shared by the agent and the messages running on it. */
typedef struct def_ref {
    agent_def *def;
    int refs;
} def_ref;

typedef struct reload_attempt {
    uint64_t at_ms;
    char trigger[8];       /* start | watch | api */
    char result[16];       /* ok | unchanged | failed | rolled-back */
    char version_before[32];
    char version_after[32];
    uint64_t duration_ms;
    json_t *diagnostics;   /* array or NULL */
} reload_attempt;

typedef struct version_entry {
    char version[32];
    uint64_t loaded_at_ms;
    char sha256[65];
} version_entry;

struct run_state;

typedef struct instance {
    struct agent *owner;
    int id;
    bool busy;
    uint64_t seq;          /* the message in hand */
    char message_id[ACL_ID_MAX + 1];
    uint64_t started_ns;
    uint64_t processed;
    def_ref *def;          /* the version this message runs on */
    struct run_state *run; /* its LLM and tool rounds (toolloop.c) */
    struct mem_search_req *memwait; /* the memories for its context, before the run */
} instance;

/* A FIFO of delivery numbers (ring buffer, grows up to the capacity). */
typedef struct seq_queue {
    uint64_t *items;
    size_t head, count, cap;
} seq_queue;

struct agent {
    registry *reg;
    char *name;                /* registry key */
    char *file;                /* absolute path of its definition file */
    def_ref *def;              /* the running version; NULL for a file that never loaded */
    uint8_t sha[32];
    bool have_sha;
    agent_state state;
    char state_reason[512];
    bool reload_failed;        /* the last reload attempt failed */
    reload_attempt reloads[AGENT_RELOAD_HISTORY];
    size_t reload_count;       /* total; the ring holds the last AGENT_RELOAD_HISTORY */
    version_entry versions[AGENT_VERSION_HISTORY];
    size_t version_count;
    uint64_t loaded_at_ms;
    int64_t instances_override; /* 0: the definition's `instances` */
    instance *inst;            /* AGENTDEF_MAX_INSTANCES slots */
    size_t inst_count;         /* slots in use */
    seq_queue queue[3];        /* by priority: high, normal, low */
    size_t busy;
    bool removed;              /* deleted: freed once nothing runs */
    bool kick_pending;         /* in the registry's kick list */
    /* statistics */
    uint64_t received, answered, failed, llm_calls, llm_errors;
    uint64_t llm_time_ms, tool_calls, tool_errors, tool_time_ms, tool_violations;
    uint64_t prompt_tokens, completion_tokens;
    uint64_t last_message_ms;
    uint64_t latency_ms[AGENT_LATENCY_SAMPLES];
    size_t latency_count;
    uint32_t rate_in[AGENT_RATE_SECONDS], rate_out[AGENT_RATE_SECONDS];
    uint64_t rate_second[AGENT_RATE_SECONDS]; /* which second each bucket counts */
    uint64_t budget_period_start_ms, budget_used;
    uint64_t last_error_ms;
    char last_error[512];
};

struct registry {
    app *a;
    map agents;                /* name -> agent */
    map files;                 /* path -> agent */
    char *dir;
    uv_fs_event_t watch;
    bool watching;
    uv_timer_t debounce;
    map pending;               /* changed file names waiting for the debounce */
    map zombies;               /* removed agents still finishing a message ("%p" -> agent) */
    bool quiesced;
    bool closing;
    int open_handles; /* while closing */
    size_t busy;
    uv_idle_t kick_idle;       /* starts queued messages outside the caller's stack */
    agent **kicks;             /* agents to run at the next kick (NULL: forgotten) */
    size_t kick_count, kick_cap;
};

/* Takes the next message by priority (registry.c). */
bool agent_next_message(agent *ag, uint64_t *seq);

/* toolloop.c: the rounds of one message. run_begin takes the context
 * (msgs, and texts: the strings they point to) and ends, later or at once,
 * with runner_answer or runner_fail. */
typedef struct run_state run_state;
void run_begin(instance *in, const acl_message *m, llm_message *msgs, char **texts,
               size_t count, uint64_t deadline_ms);
void run_abort(run_state *run);

/* runner.c */
/* The message on `in` is answered (content is borrowed) or failed. */
void runner_answer(instance *in, acl_performative p, json_t *content);
void runner_fail(instance *in, const char *reason, const char *detail);
/* Schedules the agent to start queued messages on its idle instances (on
 * the next loop turn: never inside the caller). */
void runner_kick(agent *ag);
/* Drops the agent from the pending kicks (before it is freed). */
void runner_forget(agent *ag);
void runner_init(registry *r);
/* Stops the message on an instance (no reply). */
void runner_abort(instance *in);
void def_ref_release(def_ref *ref);
/* Frees the agent once it is removed and nothing runs on it. */
void registry_maybe_free(agent *ag);
/* Counts a message in or out for the queue rates. */
void agent_count_rate(agent *ag, bool in);
void agent_record_error(agent *ag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
