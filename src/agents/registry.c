/* The agent registry. See registry.h.
 *
 * Loading one file (load_file) is the heart of it, shared by the start-up
 * scan, the directory watcher and the API: read, validate, check the name is
 * unique, then either swap in the new version or keep the old one and record
 * why. A file that never produced a valid version is kept as an agent in
 * state `failed`, so an operator sees it in `agents status` instead of it
 * silently missing. */
#include "agents/agent_internal.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sha256.h"
#include "core/units.h"
#include "core/util.h"
#include "messaging/router.h"
#include "tools/mcp.h"

#define DEBOUNCE_MS 25
#define MAX_AGENT_FILES 100000
#define MAX_PROVIDERS 64

static const char *const state_names[] = {"loading",  "active",  "suspended", "reloading",
                                          "draining", "stopped", "failed"};

const char *agent_state_name(agent_state s)
{
    return (unsigned)s <= AGENT_FAILED ? state_names[s] : "unknown";
}

int agent_state_parse(const char *text)
{
    for (int i = 0; i <= AGENT_FAILED; i++)
        if (text && strcmp(text, state_names[i]) == 0)
            return i;
    return -1;
}

/* ---- small pieces ------------------------------------------------------------------------------ */

void def_ref_release(def_ref *ref)
{
    if (ref && --ref->refs == 0) {
        agentdef_free(ref->def);
        free(ref);
    }
}

static def_ref *def_ref_new(agent_def *def)
{
    def_ref *ref = malloc(sizeof *ref);
    if (!ref) {
        agentdef_free(def);
        return NULL;
    }
    ref->def = def;
    ref->refs = 1;
    return ref;
}

void agent_record_error(agent *ag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ag->last_error, sizeof ag->last_error, fmt, ap);
    va_end(ap);
    ag->last_error_ms = time_now_ms();
}

void agent_count_rate(agent *ag, bool in)
{
    uint64_t sec = time_now_ms() / 1000;
    size_t b = sec % AGENT_RATE_SECONDS;
    if (ag->rate_second[b] != sec) {
        ag->rate_second[b] = sec;
        ag->rate_in[b] = ag->rate_out[b] = 0;
    }
    if (in)
        ag->rate_in[b]++;
    else
        ag->rate_out[b]++;
}

static void rates(const agent *ag, uint64_t *in, uint64_t *out)
{
    uint64_t now = time_now_ms() / 1000;
    *in = *out = 0;
    for (size_t i = 0; i < AGENT_RATE_SECONDS; i++)
        if (ag->rate_second[i] + AGENT_RATE_SECONDS > now) {
            *in += ag->rate_in[i];
            *out += ag->rate_out[i];
        }
}

static int64_t agent_instances(const agent *ag)
{
    if (ag->instances_override > 0)
        return ag->instances_override;
    return ag->def ? ag->def->def->instances : 1;
}

static int queue_push(seq_queue *q, uint64_t seq)
{
    if (q->count == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 16;
        uint64_t *items = malloc(ncap * sizeof *items);
        if (!items)
            return CX_ENOMEM;
        for (size_t i = 0; i < q->count; i++)
            items[i] = q->items[(q->head + i) % q->cap];
        free(q->items);
        q->items = items;
        q->head = 0;
        q->cap = ncap;
    }
    q->items[(q->head + q->count) % q->cap] = seq;
    q->count++;
    return 0;
}

static bool queue_pop(seq_queue *q, uint64_t *seq)
{
    if (!q->count)
        return false;
    *seq = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    return true;
}

static bool queue_remove(seq_queue *q, uint64_t seq)
{
    for (size_t i = 0; i < q->count; i++) {
        if (q->items[(q->head + i) % q->cap] != seq)
            continue;
        for (size_t k = i; k + 1 < q->count; k++)
            q->items[(q->head + k) % q->cap] = q->items[(q->head + k + 1) % q->cap];
        q->count--;
        return true;
    }
    return false;
}

size_t agent_queue_depth(const agent *ag)
{
    return ag->queue[0].count + ag->queue[1].count + ag->queue[2].count;
}

size_t agent_queue_capacity(const agent *ag)
{
    return (size_t)ag->reg->a->config->messaging_queue_size * (size_t)agent_instances(ag);
}

size_t agent_in_flight(const agent *ag)
{
    return ag->busy;
}

const char *agent_name(const agent *ag)
{
    return ag->name;
}

agent_state agent_get_state(const agent *ag)
{
    return ag->state;
}

const agent_def *agent_definition(const agent *ag)
{
    return ag->def ? ag->def->def : NULL;
}

bool agent_accepting(const agent *ag)
{
    return ag->state == AGENT_ACTIVE;
}

bool agent_provides(const agent *ag, const char *capability)
{
    const agent_def *def = agent_definition(ag);
    for (size_t i = 0; def && i < def->capability_count; i++)
        if (strcmp(def->capabilities[i], capability) == 0)
            return true;
    return false;
}

/* ---- agents ------------------------------------------------------------------------------------ */

static agent *agent_new(registry *r, const char *name, const char *file)
{
    agent *ag = calloc(1, sizeof *ag);
    if (!ag)
        return NULL;
    ag->reg = r;
    ag->name = str_dup(name);
    ag->file = str_dup(file);
    ag->inst = calloc(AGENTDEF_MAX_INSTANCES, sizeof *ag->inst);
    if (!ag->name || !ag->file || !ag->inst ||
        map_put(&r->agents, name, ag, NULL) < 0) {
        free(ag->name);
        free(ag->file);
        free(ag->inst);
        free(ag);
        return NULL;
    }
    if (map_put(&r->files, file, ag, NULL) < 0) {
        map_remove(&r->agents, name);
        free(ag->name);
        free(ag->file);
        free(ag->inst);
        free(ag);
        return NULL;
    }
    for (int i = 0; i < AGENTDEF_MAX_INSTANCES; i++) {
        ag->inst[i].owner = ag;
        ag->inst[i].id = i;
    }
    ag->state = AGENT_LOADING;
    return ag;
}

static void agent_free(agent *ag)
{
    if (ag->kick_pending)
        runner_forget(ag);
    def_ref_release(ag->def);
    for (size_t i = 0; i < AGENT_RELOAD_HISTORY; i++)
        json_decref(ag->reloads[i].diagnostics);
    for (int q = 0; q < 3; q++)
        free(ag->queue[q].items);
    free(ag->inst);
    free(ag->name);
    free(ag->file);
    free(ag);
}

static void zombie_key(const agent *ag, char key[32])
{
    snprintf(key, 32, "%p", (const void *)ag);
}

void registry_maybe_free(agent *ag)
{
    if (!ag->removed || ag->busy > 0)
        return;
    char key[32];
    zombie_key(ag, key);
    map_remove(&ag->reg->zombies, key);
    agent_free(ag);
}

/* Instances in use follow the wanted count; removed ones finish first. */
static void sync_instances(agent *ag)
{
    size_t want = (size_t)agent_instances(ag);
    if (want > AGENTDEF_MAX_INSTANCES)
        want = AGENTDEF_MAX_INSTANCES;
    ag->inst_count = want;
}

static bool rekey(registry *r, agent *ag, const char *name);

/* The agent now lives in another file. */
static void repoint(registry *r, agent *ag, const char *path)
{
    char *copy = str_dup(path);
    if (!copy)
        return;
    map_remove(&r->files, ag->file);
    free(ag->file);
    ag->file = copy;
    map_put(&r->files, ag->file, ag, NULL);
}

/* Forgets a failed entry (no definition, so no queue and nothing running). */
static void drop_failed_entry(registry *r, agent *ag)
{
    if (map_get(&r->agents, ag->name) == ag)
        map_remove(&r->agents, ag->name);
    if (map_get(&r->files, ag->file) == ag)
        map_remove(&r->files, ag->file);
    agent_free(ag);
}

/* A failed entry holding a name that a valid file now claims moves to its
 * file's base name. */
static void move_aside(registry *r, agent *holder)
{
    const char *base = strrchr(holder->file, '/');
    base = base ? base + 1 : holder->file;
    if (!map_get(&r->agents, base))
        rekey(r, holder, base);
}

static bool rekey(registry *r, agent *ag, const char *name)
{
    if (strcmp(ag->name, name) == 0)
        return true;
    agent *holder = map_get(&r->agents, name);
    if (holder && holder != ag) {
        if (holder->def)
            return false;
        move_aside(r, holder);
        if (map_get(&r->agents, name))
            return false;
    }
    char *copy = str_dup(name);
    if (!copy)
        return false;
    map_remove(&r->agents, ag->name);
    free(ag->name);
    ag->name = copy;
    return map_put(&r->agents, ag->name, ag, NULL) == 0;
}

typedef struct fail_ctx {
    agent *ag;
    const char *reason;
    const char *detail;
} fail_ctx;

static void fail_queued(acl_message *m, uint64_t seq, void *arg)
{
    (void)m;
    fail_ctx *c = arg;
    router_fail(c->ag->reg->a->router, seq, c->ag->name, c->reason, c->detail, true);
}

/* Takes the agent out of the registry: queued messages fail, running ones
 * finish (then the agent is freed). */
static size_t remove_agent(registry *r, agent *ag, const char *reason, const char *detail)
{
    ag->state = AGENT_DRAINING;
    fail_ctx c = {ag, reason, detail};
    size_t failed = agent_take_queue(ag, fail_queued, &c);
    map_remove(&r->agents, ag->name);
    map_remove(&r->files, ag->file);
    ag->state = AGENT_STOPPED;
    ag->removed = true;
    if (ag->busy > 0) {
        char key[32];
        zombie_key(ag, key);
        map_put(&r->zombies, key, ag, NULL);
    }
    log_event(LOG_STREAM_AGENTS, LOG_INFO, "agents",
              json_pack("{s:s, s:s, s:s, s:I}", "event", "agent_removed", "agent", ag->name,
                        "reason", reason, "failed_queued", (json_int_t)failed),
              "agent %s removed (%s)", ag->name, detail);
    registry_maybe_free(ag);
    return failed;
}

/* ---- validation context ------------------------------------------------------------------------ */

typedef struct context_buf {
    agentdef_context ctx;
    const char *providers[MAX_PROVIDERS];
    const char **tools; /* names owned by the tool hub */
    size_t tool_count, tool_cap;
} context_buf;

static void collect_tool(const mcp_tool_info *t, void *arg)
{
    context_buf *b = arg;
    if (b->tool_count == b->tool_cap) {
        size_t cap = b->tool_cap ? b->tool_cap * 2 : 64;
        const char **grown = realloc(b->tools, cap * sizeof *grown);
        if (!grown)
            return;
        b->tools = grown;
        b->tool_cap = cap;
    }
    b->tools[b->tool_count++] = t->full_name;
}

/* What a server named in an unlisted tool is: unknown, ready, or not yet. */
static agentdef_tool_server tool_server_state(const char *server, size_t len, void *arg)
{
    mcp_hub *hub = arg;
    char name[MCP_NAME_MAX + 1];
    snprintf(name, sizeof name, "%.*s", (int)(len < MCP_NAME_MAX ? len : MCP_NAME_MAX), server);
    if (!mcp_hub_has_server(hub, name))
        return AGENTDEF_SERVER_UNKNOWN;
    json_t *status = mcp_hub_status_json(hub, name);
    const char *state = json_string_value(json_object_get(json_array_get(status, 0), "state"));
    agentdef_tool_server out = state && strcmp(state, "ready") == 0 ? AGENTDEF_SERVER_READY
                                                                     : AGENTDEF_SERVER_NOT_READY;
    json_decref(status);
    return out;
}

/* Providers from the config; tools from the live tool hub (so unknown MCP
 * tools are errors, but only once their server has listed its tools). */
static void make_context(const registry *r, context_buf *b)
{
    memset(b, 0, sizeof *b);
    const char *key;
    json_t *value;
    size_t n = 0;
    json_object_foreach(r->a->config->llm_providers, key, value) {
        if (n < MAX_PROVIDERS)
            b->providers[n++] = key;
    }
    b->ctx.providers = b->providers;
    b->ctx.provider_count = n;
    b->ctx.agents_dir = r->dir;
    mcp_hub *hub = r->a->tools;
    if (hub) {
        mcp_hub_foreach_tool(hub, collect_tool, b);
        b->ctx.tools = b->tools;
        b->ctx.tool_count = b->tool_count;
        b->ctx.tools_checked = true;
        b->ctx.tool_server = tool_server_state;
        b->ctx.tool_server_arg = hub;
    }
}

static void context_free(context_buf *b)
{
    free(b->tools);
}

/* The readability diagnostic: what the server runs as and what it needs. */
static void unreadable_diag(agentdef_diags *diags, const char *path, const cx_error *err,
                            int saved_errno)
{
    struct stat st;
    if (saved_errno == EACCES && stat(path, &st) == 0) {
        struct passwd *owner = getpwuid(st.st_uid);
        struct passwd *self = getpwuid(geteuid());
        char owner_name[64], self_name[64];
        snprintf(owner_name, sizeof owner_name, "%s", owner ? owner->pw_name : "?");
        snprintf(self_name, sizeof self_name, "%s", self ? self->pw_name : "?");
        char hint[512];
        snprintf(hint, sizeof hint, "give the server's user read access: chown %s:%s %s && "
                 "chmod 644 %s", self_name, self_name, path, path);
        agentdef_diag_add(diags, AGENTDEF_ERROR, 0, 0, "", hint,
                          "cannot read the file: permission denied (owner %s, mode %04o); the "
                          "server runs as user %s (uid %u) and needs read access",
                          owner_name, (unsigned)(st.st_mode & 07777), self_name,
                          (unsigned)geteuid());
        return;
    }
    agentdef_diag_add(diags, AGENTDEF_ERROR, 0, 0, "", NULL, "%s", err->msg);
}

/* Parses text as the server would run it; adds the uniqueness check. */
static agent_def *parse_checked(registry *r, const char *label, const char *text, size_t len,
                                const agent *replacing, bool unique, agentdef_diags *diags)
{
    context_buf b;
    make_context(r, &b);
    agent_def *def = agentdef_parse(label, text, len, &b.ctx, diags);
    context_free(&b);
    if (!def)
        return NULL;
    if (strcmp(def->name, "health-summary") == 0 || strcmp(def->name, "validate") == 0) {
        agentdef_diag_add(diags, AGENTDEF_ERROR, def->name_line, def->name_column, "name",
                          "choose another name",
                          "'%s' is reserved: /api/v1/agents/%s is an API route", def->name,
                          def->name);
        agentdef_free(def);
        return NULL;
    }
    /* A holder whose file is gone is being renamed or removed right now: its
     * deletion is applied in the same batch. */
    agent *other = unique ? map_get(&r->agents, def->name) : NULL;
    if (other && other != replacing && !other->removed &&
        (!replacing || strcmp(other->file, replacing->file) != 0) && other->def &&
        fs_exists(other->file)) {
        agentdef_diag_add(diags, AGENTDEF_ERROR, def->name_line, def->name_column, "name",
                          "rename one of them; agent names must be unique",
                          "the name '%s' is already used by %s", def->name, other->file);
        agentdef_free(def);
        return NULL;
    }
    return def;
}

static void first_error(const agentdef_diags *diags, char *out, size_t size)
{
    for (size_t i = 0; i < diags->count; i++)
        if (diags->items[i].severity == AGENTDEF_ERROR) {
            const agentdef_diag *d = &diags->items[i];
            if (d->line)
                snprintf(out, size, "line %u: %s%s%s", d->line, d->field && *d->field ? d->field : "",
                         d->field && *d->field ? ": " : "", d->message);
            else
                snprintf(out, size, "%s", d->message);
            return;
        }
    snprintf(out, size, "invalid definition");
}

static reload_attempt *push_attempt(agent *ag, const char *trigger, const char *result,
                                    const char *before, const char *after, uint64_t duration_ms,
                                    json_t *diagnostics)
{
    reload_attempt *at = &ag->reloads[ag->reload_count % AGENT_RELOAD_HISTORY];
    json_decref(at->diagnostics);
    memset(at, 0, sizeof *at);
    at->at_ms = time_now_ms();
    snprintf(at->trigger, sizeof at->trigger, "%s", trigger);
    snprintf(at->result, sizeof at->result, "%s", result);
    snprintf(at->version_before, sizeof at->version_before, "%s", before ? before : "");
    snprintf(at->version_after, sizeof at->version_after, "%s", after ? after : "");
    at->duration_ms = duration_ms;
    at->diagnostics = diagnostics;
    ag->reload_count++;
    return at;
}

static void push_version(agent *ag, const agent_def *def, const uint8_t sha[32])
{
    memmove(&ag->versions[1], &ag->versions[0],
            (AGENT_VERSION_HISTORY - 1) * sizeof ag->versions[0]);
    version_entry *v = &ag->versions[0];
    snprintf(v->version, sizeof v->version, "%s", def->version);
    v->loaded_at_ms = time_now_ms();
    hex_encode(sha, 32, v->sha256);
    if (ag->version_count < AGENT_VERSION_HISTORY)
        ag->version_count++;
}

static void log_hot_reload(const agent *ag, const char *trigger, const char *result,
                           const char *before, const char *after, const agentdef_diags *diags)
{
    json_t *errors = json_array();
    for (size_t i = 0; diags && i < diags->count && errors; i++) {
        const agentdef_diag *d = &diags->items[i];
        if (d->severity != AGENTDEF_ERROR)
            continue;
        char line[1024];
        snprintf(line, sizeof line, "%u:%u: %s%s%s", d->line, d->column,
                 d->field && *d->field ? d->field : "", d->field && *d->field ? ": " : "",
                 d->message);
        json_array_append_new(errors, json_string(line));
    }
    bool failed = strcmp(result, "failed") == 0 || strcmp(result, "rolled-back") == 0;
    char first[512] = "";
    if (failed && diags)
        first_error(diags, first, sizeof first);
    log_event(LOG_STREAM_AGENTS, failed ? LOG_ERROR : LOG_INFO, "agents",
              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s?, s:o}", "event", "hot_reload",
                        "agent", ag->name, "file", ag->file, "trigger", trigger, "result", result,
                        "version_before", before && *before ? before : NULL, "version_after",
                        after && *after ? after : NULL, "errors", errors ? errors : json_array()),
              failed ? "hot_reload %s failed: %s; still running version %s"
                     : "hot_reload %s: %s%s%s",
              ag->name, failed ? first : result, failed ? (before && *before ? before : "none")
                                                        : (after ? " " : ""),
              failed ? "" : (after ? after : ""));
}

static const char *stem_of(const char *path, char *buf, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(buf, size, "%s", base);
    char *dot = strrchr(buf, '.');
    if (dot && strcmp(dot, ".md") == 0)
        *dot = '\0';
    return buf;
}

/* The result document of one load: {"name","result","version_before",
 * "version_after","diagnostics","kept"}. */
static json_t *load_result(const char *name, const char *result, const char *before,
                           const char *after, json_t *diags, const char *kept)
{
    return json_pack("{s:s, s:s, s:s?, s:s?, s:o, s:s?}", "name", name, "result", result,
                     "version_before", before && *before ? before : NULL, "version_after",
                     after && *after ? after : NULL, "diagnostics",
                     diags ? diags : json_array(), "kept", kept);
}

/* Reads, validates and applies one file. trigger: start | watch | api. */
static json_t *load_file(registry *r, const char *path, const char *trigger, const char *actor,
                         bool force)
{
    uint64_t t0 = time_monotonic_ns();
    agent *existing = map_get(&r->files, path);
    char stem[256];
    stem_of(path, stem, sizeof stem);
    struct stat st;
    if (stat(path, &st) < 0 && errno == ENOENT) {
        if (!existing)
            return load_result(stem, "missing", NULL, NULL, NULL, NULL);
        char name[128];
        snprintf(name, sizeof name, "%s", existing->name);
        state_audit_append(r->a->state, actor, "agent.delete", name,
                           json_pack("{s:s, s:s}", "file", path, "trigger", trigger), NULL);
        remove_agent(r, existing, "agent-removed", "its definition file was deleted");
        return load_result(name, "removed", NULL, NULL, NULL, NULL);
    }

    agentdef_diags diags = {0};
    char *text = NULL;
    size_t len = 0;
    cx_error err;
    agent_def *def = NULL;
    uint8_t sha[32] = {0};
    errno = 0;
    if (fs_read_file(path, AGENTDEF_MAX_FILE, &text, &len, &err) < 0) {
        unreadable_diag(&diags, path, &err, errno);
    } else {
        sha256(text, len, sha);
        if (existing && existing->have_sha && memcmp(existing->sha, sha, 32) == 0 && !force &&
            !existing->reload_failed && existing->def) {
            free(text);
            const char *v = existing->def->def->version;
            if (strcmp(trigger, "api") == 0)
                push_attempt(existing, trigger, "unchanged", v, v,
                             (time_monotonic_ns() - t0) / 1000000u, NULL);
            return load_result(existing->name, "unchanged", v, v, NULL, NULL);
        }
        def = parse_checked(r, path, text, len, existing, true, &diags);
        free(text);
    }
    uint64_t duration_ms = (time_monotonic_ns() - t0) / 1000000u;
    const char *result = def ? "ok" : "failed";
    if (def && duration_ms > r->a->config->agents_reload_timeout_ms) {
        agentdef_diag_add(&diags, AGENTDEF_ERROR, 0, 0, "", NULL,
                          "loading took %llu ms, over agents.reload_timeout; rolled back",
                          (unsigned long long)duration_ms);
        agentdef_free(def);
        def = NULL;
        result = "rolled-back";
    }
    json_t *diag_json = agentdef_diags_json(&diags);
    const char *before = existing && existing->def ? existing->def->def->version : NULL;
    char before_buf[32] = "";
    if (before)
        snprintf(before_buf, sizeof before_buf, "%s", before);

    if (def) {
        if (existing && existing->def && strcmp(existing->name, def->name) != 0) {
            remove_agent(r, existing, "agent-renamed", "its definition file now names another "
                         "agent");
            existing = NULL;
            before_buf[0] = '\0';
        }
        bool created = false;
        agent *holder = map_get(&r->agents, def->name);
        if (holder == existing)
            holder = NULL;
        if (holder && holder->def) {
            /* parse_checked refused live holders: this one's file is gone, it
             * was renamed to this file, which takes it over, queue and all */
            if (existing)
                drop_failed_entry(r, existing);
            repoint(r, holder, path);
            existing = holder;
        } else if (holder) {
            /* a failed entry of another file: it keeps its failure, under
             * that file's name, or goes when its file is gone */
            if (fs_exists(holder->file))
                move_aside(r, holder);
            else
                drop_failed_entry(r, holder);
        }
        if (!existing) {
            existing = agent_new(r, def->name, path);
            created = true;
            if (!existing) {
                agentdef_free(def);
                agentdef_diags_free(&diags);
                json_decref(diag_json);
                return NULL;
            }
        }
        if (!rekey(r, existing, def->name)) {
            log_error("agents", "%s: cannot register agent '%s' under its name", path, def->name);
            agentdef_free(def);
            agentdef_diags_free(&diags);
            json_decref(diag_json);
            return NULL;
        }
        def_ref *ref = def_ref_new(def);
        if (!ref) {
            agentdef_diags_free(&diags);
            json_decref(diag_json);
            return NULL;
        }
        def_ref_release(existing->def);
        existing->def = ref;
        memcpy(existing->sha, sha, 32);
        existing->have_sha = true;
        existing->reload_failed = false;
        existing->loaded_at_ms = time_now_ms();
        existing->instances_override = 0;
        push_version(existing, def, sha);
        if (def->runtime == AGENT_RUNTIME_WASM) {
            existing->state = AGENT_FAILED;
            snprintf(existing->state_reason, sizeof existing->state_reason,
                     "WASM agents are validated but not run by this version: the WASM agent "
                     "ABI is not available yet");
        } else if (existing->state != AGENT_SUSPENDED) {
            existing->state = AGENT_ACTIVE;
            existing->state_reason[0] = '\0';
        }
        sync_instances(existing);
        push_attempt(existing, trigger, "ok", before_buf, def->version, duration_ms,
                     json_incref(diag_json));
        if (strcmp(trigger, "start") != 0) {
            log_hot_reload(existing, trigger, "ok", before_buf, def->version, &diags);
            state_audit_append(r->a->state, actor, created ? "agent.create" : "agent.update",
                               existing->name,
                               json_pack("{s:s, s:s, s:s?, s:s}", "file", path, "trigger",
                                         trigger, "version_before",
                                         before_buf[0] ? before_buf : NULL, "version_after",
                                         def->version),
                               NULL);
        }
        json_t *out = load_result(existing->name, "ok", before_buf, def->version, diag_json, NULL);
        agentdef_diags_free(&diags);
        runner_kick(existing);
        return out;
    }

    /* Invalid: the last good version (if any) keeps running. */
    char reason[512];
    first_error(&diags, reason, sizeof reason);
    if (!existing) {
        const char *key = stem;
        /* GET /api/v1/agents/health-summary is the summary, not this file */
        if (map_get(&r->agents, key) || strcmp(key, "health-summary") == 0) {
            const char *base = strrchr(path, '/');
            key = base ? base + 1 : path;
        }
        existing = map_get(&r->agents, key) ? NULL : agent_new(r, key, path);
        if (!existing) {
            log_error("agents", "%s: %s", path, reason);
            agentdef_diags_free(&diags);
            json_decref(diag_json);
            return load_result(key, "failed", NULL, NULL, NULL, NULL);
        }
    }
    if (existing->def) {
        existing->reload_failed = true;
    } else {
        existing->state = AGENT_FAILED;
        snprintf(existing->state_reason, sizeof existing->state_reason, "%s", reason);
    }
    push_attempt(existing, trigger, result, before_buf, NULL, duration_ms,
                 json_incref(diag_json));
    log_hot_reload(existing, trigger, result, before_buf, NULL, &diags);
    state_audit_append(r->a->state, actor, "agent.reload_failed", existing->name,
                       json_pack("{s:s, s:s, s:s}", "file", path, "trigger", trigger, "error",
                                 reason),
                       NULL);
    char kept[128];
    snprintf(kept, sizeof kept, "running the last good version %s", before_buf);
    json_t *out = load_result(existing->name, result, before_buf, NULL, diag_json,
                              existing->def ? kept : NULL);
    agentdef_diags_free(&diags);
    return out;
}

/* ---- the directory ----------------------------------------------------------------------------- */

static bool is_agent_file(const char *name)
{
    size_t len = strlen(name);
    return name[0] != '.' && len > 3 && strcmp(name + len - 3, ".md") == 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int scan_dir(registry *r, cx_error *err)
{
    DIR *d = opendir(r->dir);
    if (!d)
        return cx_error_set(err, CX_EIO, "cannot read the agents dir %s: %s", r->dir,
                            strerror(errno));
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && count < MAX_AGENT_FILES) {
        if (!is_agent_file(e->d_name))
            continue;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **grown = realloc(names, ncap * sizeof *grown);
            if (!grown)
                break;
            names = grown;
            cap = ncap;
        }
        names[count] = path_join(r->dir, e->d_name);
        if (names[count])
            count++;
    }
    closedir(d);
    if (count)
        qsort(names, count, sizeof *names, compare_names);
    size_t failed = 0;
    for (size_t i = 0; i < count; i++) {
        json_t *res = load_file(r, names[i], "start", "system", false);
        const char *result = json_string_value(json_object_get(res, "result"));
        if (!result || strcmp(result, "ok") != 0)
            failed++;
        json_decref(res);
        free(names[i]);
    }
    free(names);
    log_info("agents", "loaded %zu agent files from %s (%zu failed validation)", count, r->dir,
             failed);
    return 0;
}

typedef struct pending_pass {
    registry *r;
    bool removals; /* the first pass loads files, the second applies deletions */
} pending_pass;

static int apply_pending(const char *key, void *value, void *arg)
{
    (void)value;
    pending_pass *pass = arg;
    char *path = path_join(pass->r->dir, key);
    if (path && fs_exists(path) != pass->removals)
        json_decref(load_file(pass->r, path, "watch", "file-watch", false));
    free(path);
    return 0;
}

/* Loads first, deletions after: on `mv old.md new.md` the new file takes
 * the agent over from the vanished one (keeping its queue), and the
 * deletion of old.md then finds nothing left to remove. */
static void on_debounce(uv_timer_t *t)
{
    registry *r = t->data;
    map pending = r->pending;
    map_init(&r->pending);
    pending_pass pass = {r, false};
    map_foreach(&pending, apply_pending, &pass);
    pass.removals = true;
    map_foreach(&pending, apply_pending, &pass);
    map_free(&pending);
}

static void on_dir_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    (void)events;
    registry *r = h->data;
    if (status < 0) {
        log_error("agents", "watching %s failed: %s; hot reload is off until a restart", r->dir,
                  uv_strerror(status));
        return;
    }
    if (!filename || !is_agent_file(filename) || r->closing)
        return;
    map_put(&r->pending, filename, NULL, NULL);
    uv_timer_start(&r->debounce, on_debounce, DEBOUNCE_MS, 0);
}

/* ---- life cycle ---------------------------------------------------------------------------------- */

registry *registry_new(app *a, cx_error *err)
{
    registry *r = calloc(1, sizeof *r);
    if (!r) {
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    r->a = a;
    map_init(&r->agents);
    map_init(&r->files);
    map_init(&r->pending);
    map_init(&r->zombies);
    r->dir = str_dup(a->config->agents_dir);
    if (!r->dir || fs_mkdir_p(r->dir, 0755, err) < 0) {
        if (!r->dir)
            cx_error_set(err, CX_ENOMEM, "out of memory");
        free(r->dir);
        free(r);
        return NULL;
    }
    uv_timer_init(a->loop, &r->debounce);
    r->debounce.data = r;
    runner_init(r);
    uv_fs_event_init(a->loop, &r->watch);
    r->watch.data = r;
    if (a->config->agents_hot_reload) {
        int rc = uv_fs_event_start(&r->watch, on_dir_event, r->dir, 0);
        if (rc < 0)
            log_warn("agents", "cannot watch %s (%s): hot reload is off; use 'caxton agents "
                     "reload NAME'", r->dir, uv_strerror(rc));
        else
            r->watching = true;
    }
    if (scan_dir(r, err) < 0) {
        registry_close(r);
        return NULL;
    }
    return r;
}

void registry_quiesce(registry *r)
{
    r->quiesced = true;
}

size_t registry_busy(const registry *r)
{
    return r->busy;
}

static int abort_running(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    agent *ag = value;
    for (size_t i = 0; i < AGENTDEF_MAX_INSTANCES; i++)
        if (ag->inst[i].busy)
            runner_abort(&ag->inst[i]);
    return 0;
}

static int free_agent_entry(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    agent_free(value);
    return 0;
}

static void registry_closed(uv_handle_t *h)
{
    registry *r = h->data;
    if (--r->open_handles > 0)
        return;
    map_foreach(&r->agents, free_agent_entry, NULL);
    map_foreach(&r->zombies, free_agent_entry, NULL);
    map_free(&r->zombies);
    map_free(&r->agents);
    map_free(&r->files);
    map_free(&r->pending);
    free(r->kicks);
    free(r->dir);
    free(r);
}

void registry_close(registry *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    r->quiesced = true;
    map_foreach(&r->agents, abort_running, NULL);
    map_foreach(&r->zombies, abort_running, NULL);
    uv_timer_stop(&r->debounce);
    if (r->watching)
        uv_fs_event_stop(&r->watch);
    r->open_handles = 3;
    uv_idle_stop(&r->kick_idle);
    uv_close((uv_handle_t *)&r->kick_idle, registry_closed);
    uv_close((uv_handle_t *)&r->watch, registry_closed);
    uv_close((uv_handle_t *)&r->debounce, registry_closed);
}

void registry_config_changed(registry *r)
{
    (void)r; /* providers are read from the config at each validation */
}

/* ---- lookup ------------------------------------------------------------------------------------ */

agent *registry_find(const registry *r, const char *name)
{
    return r ? map_get(&r->agents, name) : NULL;
}

typedef struct suggest_ctx {
    const char *names[4096];
    size_t count;
} suggest_ctx;

static int collect_name(const char *key, void *value, void *arg)
{
    (void)value;
    suggest_ctx *c = arg;
    if (c->count < 4096)
        c->names[c->count++] = key;
    return 0;
}

const char *registry_suggest(const registry *r, const char *name)
{
    suggest_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    map_foreach(&r->agents, collect_name, c);
    const char *s = text_suggest(name, c->names, c->count);
    free(c);
    return s;
}

size_t registry_count(const registry *r)
{
    return r ? r->agents.count : 0;
}

static int count_state(const char *key, void *value, void *arg)
{
    (void)key;
    size_t *counts = arg;
    counts[((agent *)value)->state]++;
    return 0;
}

void registry_state_counts(const registry *r, size_t counts[AGENT_FAILED + 1])
{
    memset(counts, 0, sizeof(size_t) * (AGENT_FAILED + 1));
    if (r)
        map_foreach(&r->agents, count_state, counts);
}

typedef struct agent_list {
    agent **items;
    size_t count;
} agent_list;

static int collect_agent(const char *key, void *value, void *arg)
{
    (void)key;
    agent_list *l = arg;
    l->items[l->count++] = value;
    return 0;
}

static int compare_agents(const void *a, const void *b)
{
    return strcmp((*(agent *const *)a)->name, (*(agent *const *)b)->name);
}

int registry_foreach(const registry *r, int (*fn)(agent *ag, void *arg), void *arg)
{
    if (!r || !r->agents.count)
        return 0;
    agent_list l = {calloc(r->agents.count, sizeof(agent *)), 0};
    if (!l.items)
        return CX_ENOMEM;
    map_foreach(&r->agents, collect_agent, &l);
    qsort(l.items, l.count, sizeof *l.items, compare_agents);
    int rc = 0;
    for (size_t i = 0; i < l.count && rc == 0; i++)
        rc = fn(l.items[i], arg);
    free(l.items);
    return rc;
}

/* ---- JSON views -------------------------------------------------------------------------------- */

static json_t *time_or_null(uint64_t ms)
{
    if (!ms)
        return json_null();
    char at[40];
    time_format_rfc3339(ms, at, sizeof at);
    return json_string(at);
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void latency_stats(const agent *ag, uint64_t *avg, uint64_t *p99)
{
    size_t n = ag->latency_count < AGENT_LATENCY_SAMPLES ? ag->latency_count
                                                         : AGENT_LATENCY_SAMPLES;
    *avg = *p99 = 0;
    if (!n)
        return;
    uint64_t sorted[AGENT_LATENCY_SAMPLES], sum = 0;
    memcpy(sorted, ag->latency_ms, n * sizeof *sorted);
    for (size_t i = 0; i < n; i++)
        sum += sorted[i];
    qsort(sorted, n, sizeof *sorted, compare_u64);
    *avg = sum / n;
    *p99 = sorted[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
}

static json_t *string_list(char *const *items, size_t count)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < count; i++)
        json_array_append_new(a, json_string(items[i]));
    return a;
}

static const char *reload_status(const agent *ag)
{
    if (!ag->reload_count)
        return "never";
    return ag->reload_failed || !ag->def ? "failed" : "ok";
}

static void add_tool_stats(const agent *ag, json_t *doc)
{
    json_t *stats = json_object_get(doc, "stats");
    json_object_set_new(stats, "llm_time_ms", json_integer((json_int_t)ag->llm_time_ms));
    json_object_set_new(stats, "tool_calls", json_integer((json_int_t)ag->tool_calls));
    json_object_set_new(stats, "tool_errors", json_integer((json_int_t)ag->tool_errors));
    json_object_set_new(stats, "tool_time_ms", json_integer((json_int_t)ag->tool_time_ms));
    json_object_set_new(stats, "tool_violations", json_integer((json_int_t)ag->tool_violations));
}

json_t *agent_summary_json(const agent *ag)
{
    const agent_def *def = agent_definition(ag);
    uint64_t avg, p99;
    latency_stats(ag, &avg, &p99);
    json_t *last_error = ag->last_error_ms
                             ? json_pack("{s:o, s:s}", "at", time_or_null(ag->last_error_ms),
                                         "message", ag->last_error)
                             : json_null();
    json_t *doc = json_pack(
        "{s:s, s:s?, s:s, s:s, s:s?, s:o, s:I, s:s, s:s, s:o,"
        " s:{s:I, s:I, s:I},"
        " s:{s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I}, s:o}",
        "name", ag->name, "version", def ? def->version : NULL, "runtime",
        def && def->runtime == AGENT_RUNTIME_WASM ? "wasm" : "llm", "state",
        agent_state_name(ag->state), "state_reason", ag->state_reason[0] ? ag->state_reason : NULL,
        "capabilities", def ? string_list(def->capabilities, def->capability_count) : json_array(),
        "instances", (json_int_t)agent_instances(ag), "file", ag->file, "reload_status",
        reload_status(ag), "loaded_at", time_or_null(ag->loaded_at_ms),
        "queue", "depth", (json_int_t)agent_queue_depth(ag), "capacity",
        (json_int_t)agent_queue_capacity(ag), "in_flight", (json_int_t)ag->busy,
        "stats", "received", (json_int_t)ag->received, "answered", (json_int_t)ag->answered,
        "failed", (json_int_t)ag->failed, "last_message_at", time_or_null(ag->last_message_ms),
        "avg_latency_ms", (json_int_t)avg, "p99_latency_ms", (json_int_t)p99, "llm_calls",
        (json_int_t)ag->llm_calls, "llm_errors", (json_int_t)ag->llm_errors, "prompt_tokens",
        (json_int_t)ag->prompt_tokens, "completion_tokens", (json_int_t)ag->completion_tokens,
        "last_error", last_error);
    if (doc)
        add_tool_stats(ag, doc);
    return doc;
}

static json_t *instances_json(const agent *ag)
{
    json_t *list = json_array();
    uint64_t now = time_monotonic_ns();
    for (size_t i = 0; list && i < ag->inst_count; i++) {
        const instance *in = &ag->inst[i];
        json_array_append_new(
            list, json_pack("{s:i, s:s, s:s?, s:I, s:I}", "id", in->id, "state",
                            in->busy ? "busy" : "idle", "message_id",
                            in->busy ? in->message_id : NULL, "busy_ms",
                            (json_int_t)(in->busy ? (now - in->started_ns) / 1000000u : 0),
                            "processed", (json_int_t)in->processed));
    }
    return list;
}

json_t *agent_detail_json(const agent *ag)
{
    json_t *doc = agent_summary_json(ag);
    if (!doc)
        return NULL;
    const agent_def *def = agent_definition(ag);
    json_object_set_new(doc, "definition", def ? agentdef_to_json(def) : json_null());
    json_t *versions = json_array();
    for (size_t i = 0; versions && i < ag->version_count; i++)
        json_array_append_new(versions,
                              json_pack("{s:s, s:o, s:s}", "version", ag->versions[i].version,
                                        "loaded_at", time_or_null(ag->versions[i].loaded_at_ms),
                                        "sha256", ag->versions[i].sha256));
    json_object_set_new(doc, "versions", versions ? versions : json_array());
    json_object_set_new(doc, "instance_states", instances_json(ag));
    return doc;
}

json_t *agent_reload_status_json(const agent *ag)
{
    json_t *attempts = json_array();
    size_t n = ag->reload_count < AGENT_RELOAD_HISTORY ? ag->reload_count : AGENT_RELOAD_HISTORY;
    for (size_t k = 0; attempts && k < n; k++) {
        const reload_attempt *at =
            &ag->reloads[(ag->reload_count - 1 - k) % AGENT_RELOAD_HISTORY];
        json_array_append_new(
            attempts,
            json_pack("{s:o, s:s, s:s, s:s?, s:s?, s:I, s:o}", "at", time_or_null(at->at_ms),
                      "trigger", at->trigger, "result", at->result, "version_before",
                      at->version_before[0] ? at->version_before : NULL, "version_after",
                      at->version_after[0] ? at->version_after : NULL, "duration_ms",
                      (json_int_t)at->duration_ms, "diagnostics",
                      at->diagnostics ? json_incref(at->diagnostics) : json_array()));
    }
    return json_pack("{s:s, s:s, s:s, s:s?, s:o}", "name", ag->name, "reload_status",
                     reload_status(ag), "state", agent_state_name(ag->state), "running_version",
                     ag->def ? ag->def->def->version : NULL, "attempts",
                     attempts ? attempts : json_array());
}

json_t *agent_queue_json(const agent *ag)
{
    uint64_t in, out;
    rates(ag, &in, &out);
    uint64_t oldest = 0, now = time_now_ms();
    for (int q = 0; q < 3; q++) {
        if (!ag->queue[q].count)
            continue;
        uint64_t at = router_accepted_ms(ag->reg->a->router, ag->queue[q].items[ag->queue[q].head]);
        if (at && at < now && now - at > oldest)
            oldest = now - at;
    }
    json_t *inst = json_array();
    for (size_t i = 0; inst && i < ag->inst_count; i++)
        json_array_append_new(inst, json_pack("{s:i, s:s, s:s?}", "id", ag->inst[i].id, "state",
                                              ag->inst[i].busy ? "busy" : "idle", "message_id",
                                              ag->inst[i].busy ? ag->inst[i].message_id : NULL));
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o}", "name", ag->name,
                     "state", agent_state_name(ag->state), "depth",
                     (json_int_t)agent_queue_depth(ag), "capacity",
                     (json_int_t)agent_queue_capacity(ag), "oldest_age_ms", (json_int_t)oldest,
                     "rate_in_per_min", (json_int_t)in, "rate_out_per_min", (json_int_t)out,
                     "in_flight", (json_int_t)ag->busy, "accepting",
                     ag->state == AGENT_ACTIVE || ag->state == AGENT_SUSPENDED, "instances",
                     inst ? inst : json_array());
}

/* ---- health summary, capabilities, conflicts ---------------------------------------------------- */

typedef struct health_ctx {
    json_t *agents;
    bool critical_only;
    size_t critical, warning;
} health_ctx;

static int health_one(agent *ag, void *arg)
{
    health_ctx *c = arg;
    json_t *reasons = json_array();
    const char *health = "ok";
    size_t depth = agent_queue_depth(ag), cap = agent_queue_capacity(ag);
    if (ag->state == AGENT_FAILED) {
        health = "critical";
        json_array_append_new(reasons, json_sprintf("failed: %s", ag->state_reason));
    }
    if (ag->reload_failed) {
        if (strcmp(health, "ok") == 0)
            health = "warning";
        json_array_append_new(reasons, json_string("the last reload failed; an older version is "
                                                   "running"));
    }
    if (cap && depth * 10 >= cap * 9) {
        health = "critical";
        json_array_append_new(reasons, json_sprintf("queue %zu of %zu", depth, cap));
    } else if (cap && depth * 2 >= cap) {
        if (strcmp(health, "ok") == 0)
            health = "warning";
        json_array_append_new(reasons, json_sprintf("queue %zu of %zu", depth, cap));
    }
    if (ag->state == AGENT_SUSPENDED && depth > 0) {
        if (strcmp(health, "ok") == 0)
            health = "warning";
        json_array_append_new(reasons, json_sprintf("suspended with %zu queued", depth));
    }
    uint64_t done = ag->answered + ag->failed;
    double error_rate = done ? (double)ag->failed / (double)done : 0.0;
    if (done >= 5 && error_rate >= 0.5) {
        health = "critical";
        json_array_append_new(reasons, json_sprintf("%.0f%% of messages failed", error_rate * 100));
    } else if (done >= 5 && error_rate >= 0.1) {
        if (strcmp(health, "ok") == 0)
            health = "warning";
        json_array_append_new(reasons, json_sprintf("%.0f%% of messages failed", error_rate * 100));
    }
    if (strcmp(health, "critical") == 0)
        c->critical++;
    else if (strcmp(health, "warning") == 0)
        c->warning++;
    if (c->critical_only && strcmp(health, "critical") != 0) {
        json_decref(reasons);
        return 0;
    }
    json_array_append_new(
        c->agents, json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:f}", "name", ag->name, "state",
                             agent_state_name(ag->state), "health", health, "reasons", reasons,
                             "queue_depth", (json_int_t)depth, "queue_capacity", (json_int_t)cap,
                             "error_rate", error_rate));
    return 0;
}

json_t *registry_health_summary_json(const registry *r, bool critical_only)
{
    health_ctx c = {json_array(), critical_only, 0, 0};
    if (!c.agents)
        return NULL;
    registry_foreach(r, health_one, &c);
    size_t counts[AGENT_FAILED + 1];
    registry_state_counts(r, counts);
    return json_pack("{s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:o}", "status",
                     c.critical ? "critical" : c.warning ? "degraded" : "ok", "counts", "total",
                     (json_int_t)registry_count(r), "active", (json_int_t)counts[AGENT_ACTIVE],
                     "suspended", (json_int_t)counts[AGENT_SUSPENDED], "failed",
                     (json_int_t)counts[AGENT_FAILED], "reloading",
                     (json_int_t)counts[AGENT_RELOADING], "draining",
                     (json_int_t)counts[AGENT_DRAINING], "agents", c.agents);
}

static int index_capabilities(agent *ag, void *arg)
{
    json_t *index = arg;
    const agent_def *def = agent_definition(ag);
    for (size_t i = 0; def && i < def->capability_count; i++) {
        json_t *entry = json_object_get(index, def->capabilities[i]);
        if (!entry) {
            entry = json_array();
            json_object_set_new(index, def->capabilities[i], entry);
        }
        json_array_append_new(entry, json_pack("{s:s, s:s, s:s}", "agent", ag->name, "state",
                                               agent_state_name(ag->state), "version",
                                               def->version));
    }
    return 0;
}

static json_t *capability_index(const registry *r)
{
    json_t *index = json_object();
    if (index)
        registry_foreach(r, index_capabilities, index);
    return index;
}

static size_t count_active(const json_t *providers)
{
    size_t n = 0, i;
    json_t *p;
    json_array_foreach(providers, i, p) {
        if (strcmp(json_string_value(json_object_get(p, "state")), "active") == 0)
            n++;
    }
    return n;
}

json_t *registry_capabilities_json(const registry *r)
{
    json_t *index = capability_index(r);
    json_t *items = json_array();
    if (!index || !items) {
        json_decref(index);
        json_decref(items);
        return NULL;
    }
    /* sorted by capability */
    const char *keys[4096];
    size_t n = 0;
    const char *key;
    json_t *providers;
    json_object_foreach(index, key, providers) {
        if (n < 4096)
            keys[n++] = key;
    }
    qsort(keys, n, sizeof *keys, compare_names);
    for (size_t i = 0; i < n; i++) {
        providers = json_object_get(index, keys[i]);
        json_array_append_new(items, json_pack("{s:s, s:O, s:I}", "capability", keys[i],
                                               "providers", providers, "active_providers",
                                               (json_int_t)count_active(providers)));
    }
    json_decref(index);
    return json_pack("{s:o, s:n}", "items", items, "next_cursor");
}

typedef struct needs_ctx {
    const char *capability;
    json_t *needed_by;
} needs_ctx;

static int find_requirers(agent *ag, void *arg)
{
    needs_ctx *c = arg;
    const agent_def *def = agent_definition(ag);
    for (size_t i = 0; def && i < def->require_count; i++)
        if (strcmp(def->requires[i], c->capability) == 0)
            json_array_append_new(c->needed_by, json_string(ag->name));
    return 0;
}

/* Conflicts of `subject` over the capabilities in caps (count n). */
static json_t *conflicts_for(const registry *r, json_t *index, const agent *subject,
                             char *const *caps, size_t n, char *const *requires, size_t nreq)
{
    json_t *shared = json_array(), *clashes = json_array(), *unmet = json_array(),
           *sole = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *providers = json_object_get(index, caps[i]);
        size_t others = 0, k;
        json_t *p;
        bool clash = false;
        const char *first_version = NULL;
        json_array_foreach(providers, k, p) {
            const char *name = json_string_value(json_object_get(p, "agent"));
            const char *version = json_string_value(json_object_get(p, "version"));
            if (!subject || strcmp(name, subject->name) != 0)
                others++;
            if (first_version && version && strncmp(first_version, version, 2) != 0 &&
                strchr(first_version, '.') && strchr(version, '.') &&
                strtol(first_version, NULL, 10) != strtol(version, NULL, 10))
                clash = true;
            if (!first_version)
                first_version = version;
        }
        if (others > 0 && json_array_size(providers) > 1)
            json_array_append_new(shared, json_pack("{s:s, s:O}", "capability", caps[i],
                                                    "providers", providers));
        if (clash) {
            json_t *versions = json_object();
            json_array_foreach(providers, k, p) {
                json_object_set(versions, json_string_value(json_object_get(p, "agent")),
                                json_object_get(p, "version"));
            }
            json_array_append_new(clashes, json_pack("{s:s, s:o}", "capability", caps[i],
                                                     "versions", versions));
        }
        if (subject && json_array_size(providers) == 1) {
            needs_ctx c = {caps[i], json_array()};
            registry_foreach(r, find_requirers, &c);
            if (json_array_size(c.needed_by) > 0)
                json_array_append_new(sole, json_pack("{s:s, s:o}", "capability", caps[i],
                                                      "needed_by", c.needed_by));
            else
                json_decref(c.needed_by);
        }
    }
    for (size_t i = 0; i < nreq; i++) {
        json_t *providers = json_object_get(index, requires[i]);
        if (providers && count_active(providers) > 0)
            continue;
        json_t *similar = json_array();
        const char *key;
        json_t *v;
        json_object_foreach(index, key, v) {
            size_t limit = strlen(requires[i]) / 3 + 2;
            if (text_edit_distance(key, requires[i], limit) <= limit &&
                json_array_size(similar) < 5)
                json_array_append_new(similar, json_string(key));
        }
        json_array_append_new(unmet, json_pack("{s:s, s:o}", "capability", requires[i],
                                               "similar", similar));
    }
    bool ok = json_array_size(clashes) == 0 && json_array_size(unmet) == 0;
    return json_pack("{s:s?, s:b, s:o, s:o, s:o, s:o}", "agent", subject ? subject->name : NULL,
                     "ok", ok, "shared", shared, "version_clashes", clashes, "unmet_requires",
                     unmet, "sole_provider_of", sole);
}

int registry_conflicts_json(const registry *r, const char *agent_name_, const char *capability,
                            json_t **out, cx_error *err)
{
    const agent *subject = NULL;
    if (agent_name_) {
        subject = registry_find(r, agent_name_);
        if (!subject) {
            const char *s = registry_suggest(r, agent_name_);
            return cx_error_set(err, CX_ENOTFOUND, "no agent named '%s'%s%s%s", agent_name_,
                                s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
        }
    }
    json_t *index = capability_index(r);
    if (!index)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    const agent_def *def = subject ? agent_definition(subject) : NULL;
    char *one[1] = {(char *)capability};
    if (capability)
        *out = conflicts_for(r, index, subject, one, 1, NULL, 0);
    else if (def)
        *out = conflicts_for(r, index, subject, def->capabilities, def->capability_count,
                             def->requires, def->require_count);
    else
        *out = conflicts_for(r, index, subject, NULL, 0, NULL, 0);
    json_decref(index);
    if (capability && *out)
        json_object_set_new(*out, "capability", json_string(capability));
    return *out ? 0 : cx_error_set(err, CX_ENOMEM, "out of memory");
}

/* ---- changes ----------------------------------------------------------------------------------- */

json_t *registry_validate_text(registry *r, const char *file_label, const char *content,
                               size_t len, const char *replacing, bool *valid)
{
    agentdef_diags diags = {0};
    agent *rep = replacing ? registry_find(r, replacing) : NULL;
    agent_def *def = parse_checked(r, file_label, content, len, rep, true, &diags);
    *valid = def != NULL;
    agentdef_free(def);
    json_t *out = json_pack("{s:b, s:I, s:I, s:o}", "valid", *valid, "errors",
                            (json_int_t)diags.errors, "warnings", (json_int_t)diags.warnings,
                            "diagnostics", agentdef_diags_json(&diags));
    agentdef_diags_free(&diags);
    return out;
}

/* Parses content for create/update: the definition (to know its name) or
 * the diagnostics. */
static agent_def *parse_for_write(registry *r, const char *label, const char *content, size_t len,
                                  const agent *replacing, bool unique, json_t **diagnostics,
                                  cx_error *err)
{
    agentdef_diags diags = {0};
    agent_def *def = parse_checked(r, label, content, len, replacing, unique, &diags);
    if (!def) {
        *diagnostics = agentdef_diags_json(&diags);
        char first[512];
        first_error(&diags, first, sizeof first);
        agentdef_diags_free(&diags);
        cx_error_set(err, CX_EINVAL, "the agent definition is invalid: %s", first);
        return NULL;
    }
    agentdef_diags_free(&diags);
    return def;
}

static int write_and_load(registry *r, const char *actor, const char *path, const char *content,
                          size_t len, agent **out, json_t **diagnostics, cx_error *err)
{
    if (fs_write_atomic(path, content, len, 0644, err) < 0)
        return err->code;
    json_t *res = load_file(r, path, "api", actor, true);
    const char *result = json_string_value(json_object_get(res, "result"));
    if (!result || strcmp(result, "ok") != 0) {
        if (diagnostics)
            *diagnostics = json_incref(json_object_get(res, "diagnostics"));
        json_decref(res);
        return cx_error_set(err, CX_EINVAL, "the file was written but did not load; see the "
                            "diagnostics");
    }
    *out = registry_find(r, json_string_value(json_object_get(res, "name")));
    json_decref(res);
    return *out ? 0 : cx_error_set(err, CX_EINTERNAL, "the agent vanished after loading");
}

int registry_create(registry *r, const char *actor, const char *content, size_t len, agent **out,
                    json_t **diagnostics, cx_error *err)
{
    *diagnostics = NULL;
    /* Existence first, so that creating an agent twice is a conflict (409),
     * not a validation error. */
    agent_def *def = parse_for_write(r, "content", content, len, NULL, false, diagnostics, err);
    if (!def)
        return err->code;
    agent *existing = registry_find(r, def->name);
    char file[300];
    snprintf(file, sizeof file, "%s.md", def->name);
    char *path = path_join(r->dir, file);
    agentdef_free(def);
    if (!path)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    if ((existing && existing->def) || fs_exists(path)) {
        int rc = cx_error_set(err, CX_EEXIST, "agent '%s' already exists (%s); update it with "
                              "PUT /api/v1/agents/%.64s", existing ? existing->name : file,
                              existing ? existing->file : path, existing ? existing->name : file);
        free(path);
        return rc;
    }
    int rc = write_and_load(r, actor, path, content, len, out, diagnostics, err);
    free(path);
    return rc;
}

int registry_update(registry *r, const char *actor, const char *name, const char *content,
                    size_t len, agent **out, json_t **diagnostics, cx_error *err)
{
    *diagnostics = NULL;
    agent *existing = registry_find(r, name);
    if (!existing)
        return cx_error_set(err, CX_ENOTFOUND, "no agent named '%s'; create it with POST "
                            "/api/v1/agents", name);
    agent_def *def = parse_for_write(r, existing->file, content, len, existing, true, diagnostics,
                                     err);
    if (!def)
        return err->code;
    bool same = strcmp(def->name, name) == 0;
    agentdef_free(def);
    if (!same)
        return cx_error_set(err, CX_EINVAL, "the definition names another agent; the name in "
                            "the file must stay '%s' (create a new agent to rename)", name);
    return write_and_load(r, actor, existing->file, content, len, out, diagnostics, err);
}

int registry_delete(registry *r, const char *actor, const char *name, size_t *failed_queued,
                    cx_error *err)
{
    agent *ag = registry_find(r, name);
    if (!ag)
        return cx_error_set(err, CX_ENOTFOUND, "no agent named '%s'", name);
    if (unlink(ag->file) < 0 && errno != ENOENT)
        return cx_error_set(err, CX_EIO, "cannot remove %s: %s", ag->file, strerror(errno));
    state_audit_append(r->a->state, actor, "agent.delete", name,
                       json_pack("{s:s, s:s}", "file", ag->file, "trigger", "api"), NULL);
    *failed_queued = remove_agent(r, ag, "agent-removed", "the agent was deleted");
    return 0;
}

int registry_reload(registry *r, const char *actor, const char *name, bool force,
                    bool fallback_on_error, json_t **result, cx_error *err)
{
    agent *ag = registry_find(r, name);
    if (!ag) {
        const char *s = registry_suggest(r, name);
        return cx_error_set(err, CX_ENOTFOUND, "no agent named '%s'%s%s%s", name,
                            s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
    }
    char *path = str_dup(ag->file);
    if (!path)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    *result = load_file(r, path, "api", actor, force);
    free(path);
    if (!*result)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    json_object_set_new(*result, "fallback_on_error", json_boolean(fallback_on_error));
    return 0;
}

static int set_state(registry *r, const char *actor, const char *name, agent_state want,
                     const char *action, cx_error *err)
{
    agent *ag = registry_find(r, name);
    if (!ag)
        return cx_error_set(err, CX_ENOTFOUND, "no agent named '%s'", name);
    agent_state from = want == AGENT_SUSPENDED ? AGENT_ACTIVE : AGENT_SUSPENDED;
    if (ag->state == want)
        return 0;
    if (ag->state != from)
        return cx_error_set(err, CX_EEXIST, "agent '%s' is %s; only %s agents can be %s", name,
                            agent_state_name(ag->state), agent_state_name(from),
                            want == AGENT_SUSPENDED ? "suspended" : "resumed");
    ag->state = want;
    state_audit_append(r->a->state, actor, action, name, NULL, NULL);
    log_event(LOG_STREAM_AGENTS, LOG_INFO, "agents",
              json_pack("{s:s, s:s, s:s}", "event", "state", "agent", name, "state",
                        agent_state_name(want)),
              "agent %s %s", name, agent_state_name(want));
    runner_kick(ag);
    return 0;
}

int registry_suspend(registry *r, const char *actor, const char *name, cx_error *err)
{
    return set_state(r, actor, name, AGENT_SUSPENDED, "agent.suspend", err);
}

int registry_resume(registry *r, const char *actor, const char *name, cx_error *err)
{
    return set_state(r, actor, name, AGENT_ACTIVE, "agent.resume", err);
}

int registry_scale(registry *r, const char *actor, const char *name, const char *change,
                   int64_t *before, int64_t *after, cx_error *err)
{
    agent *ag = registry_find(r, name);
    if (!ag)
        return cx_error_set(err, CX_ENOTFOUND, "no agent named '%s'", name);
    if (!ag->def)
        return cx_error_set(err, CX_EEXIST, "agent '%s' is failed; fix its file first", name);
    units_change c;
    if (units_parse_change(change, false, &c, err) < 0)
        return err->code;
    *before = agent_instances(ag);
    uint64_t wanted = units_apply_change((uint64_t)*before, &c);
    if (wanted < 1 || wanted > AGENTDEF_MAX_INSTANCES)
        return cx_error_set(err, CX_EINVAL, "instances must stay from 1 to %d (now %lld, asked "
                            "%s)", AGENTDEF_MAX_INSTANCES, (long long)*before, change);
    ag->instances_override = (int64_t)wanted;
    sync_instances(ag);
    *after = (int64_t)wanted;
    state_audit_append(r->a->state, actor, "agent.scale", name,
                       json_pack("{s:I, s:I}", "before", (json_int_t)*before, "after",
                                 (json_int_t)*after),
                       NULL);
    runner_kick(ag);
    return 0;
}

/* ---- queues ------------------------------------------------------------------------------------ */

static int priority_slot(acl_priority p)
{
    return p == ACL_PRIORITY_HIGH ? 0 : p == ACL_PRIORITY_LOW ? 2 : 1;
}

int agent_enqueue(agent *ag, const acl_message *m, uint64_t seq, cx_error *err)
{
    if (ag->removed || ag->state == AGENT_FAILED || ag->state == AGENT_STOPPED ||
        ag->state == AGENT_DRAINING)
        return cx_error_set(err, CX_EUNAVAIL, "agent '%s' is %s and takes no messages", ag->name,
                            agent_state_name(ag->state));
    size_t cap = agent_queue_capacity(ag);
    if (agent_queue_depth(ag) >= cap)
        return cx_error_set(err, CX_ELIMIT, "the queue of agent '%s' is full (%zu messages, "
                            "messaging.queue_size per instance); retry later, or scale it with "
                            "'caxton agents scale %s --instances +1'", ag->name, cap, ag->name);
    if (queue_push(&ag->queue[priority_slot(m->priority)], seq) < 0)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    ag->received++;
    ag->last_message_ms = time_now_ms();
    agent_count_rate(ag, true);
    runner_kick(ag);
    return 0;
}

size_t agent_take_queue(agent *ag, void (*fn)(acl_message *m, uint64_t seq, void *arg), void *arg)
{
    size_t n = 0;
    for (int q = 0; q < 3; q++) {
        uint64_t seq;
        while (queue_pop(&ag->queue[q], &seq)) {
            n++;
            fn(NULL, seq, arg);
        }
    }
    return n;
}

bool agent_withdraw(agent *ag, uint64_t seq)
{
    for (int q = 0; q < 3; q++)
        if (queue_remove(&ag->queue[q], seq))
            return true;
    for (size_t i = 0; i < AGENTDEF_MAX_INSTANCES; i++)
        if (ag->inst[i].busy && ag->inst[i].seq == seq) {
            runner_abort(&ag->inst[i]);
            return true;
        }
    return false;
}

bool agent_next_message(agent *ag, uint64_t *seq)
{
    for (int q = 0; q < 3; q++)
        if (queue_pop(&ag->queue[q], seq))
            return true;
    return false;
}
