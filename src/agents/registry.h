/* The agent registry: every agent the server knows, loaded from the agents
 * dir, kept in step with it, and run.
 *
 * Files are the source of truth. At start every `*.md` in `agents.dir` is
 * read and validated; while running, the directory is watched (libuv fs
 * events, debounced) and a changed file is validated before it replaces the
 * running version: an invalid edit leaves the last good version running and
 * records a failed reload. The API's create/update/delete write or remove the
 * file (atomically) and apply it at once, so the watcher then finds nothing
 * new.
 *
 * Each agent has a state (loading, active, suspended, reloading, draining,
 * stopped, failed), a bounded message queue shared by its instances, and
 * statistics. Configuration agents answer messages through the runner
 * (runner.c): one message at a time per instance, the LLM call asynchronous
 * on the loop. A running message keeps a reference to the definition it
 * started with, so a reload never changes a message half-way.
 *
 * Everything here belongs to the event loop thread. */
#ifndef CAXTON_AGENTS_REGISTRY_H
#define CAXTON_AGENTS_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agents/agentdef.h"
#include "core/error.h"
#include "messaging/message.h"
#include "server/app.h"

typedef enum agent_state {
    AGENT_LOADING,
    AGENT_ACTIVE,
    AGENT_SUSPENDED,
    AGENT_RELOADING,
    AGENT_DRAINING,
    AGENT_STOPPED,
    AGENT_FAILED,
} agent_state;

const char *agent_state_name(agent_state s);
int agent_state_parse(const char *text); /* -1 when unknown */

typedef struct registry registry;
typedef struct agent agent;

/* Creates the registry, loads the agents dir and starts watching it (when
 * agents.hot_reload). A missing agents dir is created (0755); an unreadable
 * one is an error. Files that fail validation become agents in state
 * `failed`, which does not stop the server. */
registry *registry_new(app *a, cx_error *err);
/* Stops taking messages: queued ones stay journaled for the next start. */
void registry_quiesce(registry *r);
/* Messages being processed right now (the shutdown drain waits for them). */
size_t registry_busy(const registry *r);
/* Cancels what is still running and closes the handles; the registry is
 * freed once the loop has run the closes. */
void registry_close(registry *r);
/* The config was reloaded (SIGHUP): providers may have changed. */
void registry_config_changed(registry *r);

/* ---- Lookup -------------------------------------------------------------------------------- */

agent *registry_find(const registry *r, const char *name);
/* The closest known agent name (did you mean), or NULL. */
const char *registry_suggest(const registry *r, const char *name);
size_t registry_count(const registry *r);
/* Counts by state, indexed by agent_state. */
void registry_state_counts(const registry *r, size_t counts[AGENT_FAILED + 1]);
/* Calls fn for each agent in name order; stops when fn returns non-zero. */
int registry_foreach(const registry *r, int (*fn)(agent *ag, void *arg), void *arg);

const char *agent_name(const agent *ag);
agent_state agent_get_state(const agent *ag);
const agent_def *agent_definition(const agent *ag); /* NULL for a failed new file */
/* True when it takes new messages (active; suspended ones queue them). */
bool agent_accepting(const agent *ag);
bool agent_provides(const agent *ag, const char *capability);
size_t agent_queue_depth(const agent *ag);
size_t agent_queue_capacity(const agent *ag);
size_t agent_in_flight(const agent *ag);

/* ---- JSON views for the API (docs/api.md) --------------------------------------------------- */

json_t *agent_summary_json(const agent *ag);
json_t *agent_detail_json(const agent *ag);
json_t *agent_reload_status_json(const agent *ag);
json_t *agent_queue_json(const agent *ag);
/* {"status", "counts", "agents": [...]} */
json_t *registry_health_summary_json(const registry *r, bool critical_only);
/* {"items": [{"capability", "providers": [...], "active_providers"}]} */
json_t *registry_capabilities_json(const registry *r);
/* Conflicts of one agent (capability == NULL) or one capability
 * (agent may be NULL). CX_ENOTFOUND when the agent is unknown. */
int registry_conflicts_json(const registry *r, const char *agent_name, const char *capability,
                            json_t **out, cx_error *err);

/* ---- Changes (each one is in the audit log with the actor) ----------------------------------- */

/* Validates content as a definition the server would load (providers from
 * the config, tools from the registry, name uniqueness against the running
 * agents except `replacing`). Returns the diagnostics as JSON and whether it
 * is valid. */
json_t *registry_validate_text(registry *r, const char *file_label, const char *content,
                               size_t len, const char *replacing, bool *valid);
/* Writes the file NAME.md in the agents dir (atomically) and loads it. create: CX_EEXIST
 * if the agent exists; update: CX_ENOTFOUND if it does not and CX_EINVAL if
 * the name in content differs from `name`. CX_EINVAL with *diagnostics set
 * when content is invalid (nothing written). On success *out is the agent. */
int registry_create(registry *r, const char *actor, const char *content, size_t len, agent **out,
                    json_t **diagnostics, cx_error *err);
int registry_update(registry *r, const char *actor, const char *name, const char *content,
                    size_t len, agent **out, json_t **diagnostics, cx_error *err);
/* Removes the file and the agent; queued messages are failed with reason
 * `agent-removed` (and dead-lettered). *failed_queued gets how many. */
int registry_delete(registry *r, const char *actor, const char *name, size_t *failed_queued,
                    cx_error *err);
/* Re-reads the agent's file now. force: even when unchanged. The result is
 * {"name","result","version_before","version_after","diagnostics","kept"}.
 * fallback_on_error only changes the wording: an invalid file never replaces
 * the running version. */
int registry_reload(registry *r, const char *actor, const char *name, bool force,
                    bool fallback_on_error, json_t **result, cx_error *err);
int registry_suspend(registry *r, const char *actor, const char *name, cx_error *err);
int registry_resume(registry *r, const char *actor, const char *name, cx_error *err);
/* change: "+1", "-1", "3"; before and after get the instance counts. */
int registry_scale(registry *r, const char *actor, const char *name, const char *change,
                   int64_t *before, int64_t *after, cx_error *err);

/* ---- Messages (called by the router) -------------------------------------------------------- */

/* Queues a message for the agent. CX_ELIMIT when the queue is full,
 * CX_EUNAVAIL when the agent takes nothing (draining, stopped, failed).
 * The message is copied. seq is the router's delivery id. */
int agent_enqueue(agent *ag, const acl_message *m, uint64_t seq, cx_error *err);
/* Takes every queued message out of the agent's queue (drain); fn is called
 * for each, in queue order. Returns how many. */
size_t agent_take_queue(agent *ag, void (*fn)(acl_message *m, uint64_t seq, void *arg),
                        void *arg);
/* Removes a queued or running message (a cancel, or its reply_by passed).
 * Returns true when it was found. A running one is stopped (its LLM call
 * cancelled) and gives no reply. */
bool agent_withdraw(agent *ag, uint64_t seq);

#endif
