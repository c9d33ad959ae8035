/* `caxton capabilities list` and `caxton capabilities check-conflicts NAME`.
 *
 * list shows every capability with its providers (GET /api/v1/capabilities).
 * check-conflicts asks the server what an agent's capabilities collide with
 * (GET /api/v1/agents/{name}/conflicts): other providers of the same
 * capability (fine: round-robin), version clashes and `requires` nobody
 * provides (problems: exit 1), and capabilities only this agent provides
 * (a warning: stopping it would leave those agents without a provider). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/util.h"

#define CAPABILITIES_MAX 10000

/* "a 1.2.0 (active), b 1.0.0 (suspended)" for a providers list. */
static void providers_text(const json_t *providers, strbuf *out)
{
    size_t i;
    const json_t *p;
    json_array_foreach(providers, i, p)
        strbuf_appendf(out, "%s%s %s (%s)", i ? ", " : "", output_string(p, "agent", "?"),
                       output_string(p, "version", "?"), output_string(p, "state", "?"));
    if (out->len == 0)
        strbuf_appends(out, "none");
}

int cmd_capabilities_list(const cli_invocation *inv)
{
    client c;
    int rc = cli_connect(inv, &c);
    if (rc != 0)
        return rc;
    json_t *items;
    rc = cli_fetch_list(&c, "/api/v1/capabilities", CAPABILITIES_MAX, &items, NULL);
    client_close(&c);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        json_t *doc = json_pack("{s:O}", "items", items);
        if (doc)
            output_json(stdout, doc);
        json_decref(doc);
        json_decref(items);
        return CLI_EXIT_OK;
    }
    output_table *t = output_table_new(3, (const char *[]){"capability", "active", "providers"});
    size_t i;
    const json_t *cap;
    json_array_foreach(items, i, cap) {
        char active[24];
        snprintf(active, sizeof active, "%lld", (long long)output_int(cap, "active_providers"));
        strbuf who;
        strbuf_init(&who);
        providers_text(json_object_get(cap, "providers"), &who);
        if (t)
            output_table_row(t, output_string(cap, "capability", "?"), active,
                             who.failed ? "?" : who.data);
        strbuf_free(&who);
    }
    if (t && output_table_rows(t) == 0)
        printf("no capabilities: no agent is loaded\n");
    else if (t)
        output_table_print(t, stdout);
    output_table_free(t);
    json_decref(items);
    return CLI_EXIT_OK;
}

static void print_shared(const json_t *shared)
{
    if (json_array_size(shared) == 0)
        return;
    printf("shared with other providers (served in turn; not a problem):\n");
    size_t i;
    const json_t *s;
    json_array_foreach(shared, i, s) {
        strbuf who;
        strbuf_init(&who);
        providers_text(json_object_get(s, "providers"), &who);
        output_line(stdout, "  %s: %s", output_string(s, "capability", "?"),
                    who.failed ? "?" : who.data);
        strbuf_free(&who);
    }
    printf("\n");
}

static void print_clashes(const json_t *clashes)
{
    if (json_array_size(clashes) == 0)
        return;
    printf("version clashes (providers of one capability at different versions):\n");
    size_t i;
    const json_t *c;
    json_array_foreach(clashes, i, c) {
        strbuf versions;
        strbuf_init(&versions);
        const char *agent;
        const json_t *version;
        json_object_foreach((json_t *)json_object_get(c, "versions"), agent, version)
            strbuf_appendf(&versions, "%s%s %s", versions.len ? ", " : "", agent,
                           json_is_string(version) ? json_string_value(version) : "?");
        output_line(stdout, "  %s: %s", output_string(c, "capability", "?"),
                    versions.failed ? "?" : versions.data);
        strbuf_free(&versions);
    }
    printf("\n");
}

static void print_unmet(const json_t *unmet)
{
    if (json_array_size(unmet) == 0)
        return;
    printf("required but provided by no active agent:\n");
    size_t i;
    const json_t *u;
    json_array_foreach(unmet, i, u) {
        const json_t *similar = json_object_get(u, "similar");
        char *names = json_array_size(similar) ? output_join(similar) : NULL;
        output_line(stdout, "  %s%s%s%s", output_string(u, "capability", "?"),
                    names ? " (similar: " : "", names ? names : "", names ? ")" : "");
        free(names);
    }
    printf("\n");
}

static void print_sole(const json_t *sole, const char *agent)
{
    if (json_array_size(sole) == 0)
        return;
    output_line(stdout, "warning: only %s provides these; stopping it leaves the agents that "
                        "need them without a provider:", agent);
    size_t i;
    const json_t *s;
    json_array_foreach(sole, i, s) {
        char *needed = output_join(json_object_get(s, "needed_by"));
        output_line(stdout, "  %s: needed by %s", output_string(s, "capability", "?"),
                    needed ? needed : "?");
        free(needed);
    }
    printf("\n");
}

static void print_conflicts(const json_t *doc)
{
    const char *agent = output_string(doc, "agent", "?");
    const json_t *clashes = json_object_get(doc, "version_clashes");
    const json_t *unmet = json_object_get(doc, "unmet_requires");
    print_shared(json_object_get(doc, "shared"));
    print_clashes(clashes);
    print_unmet(unmet);
    print_sole(json_object_get(doc, "sole_provider_of"), agent);
    if (json_is_true(json_object_get(doc, "ok")))
        output_line(stdout, "%s: no capability conflicts", agent);
    else
        output_line(stdout, "%s: %zu version clash%s, %zu unmet requirement%s", agent,
                    json_array_size(clashes), json_array_size(clashes) == 1 ? "" : "es",
                    json_array_size(unmet), json_array_size(unmet) == 1 ? "" : "s");
}

int cmd_capabilities_check_conflicts(const cli_invocation *inv)
{
    char *path = cli_api_path("/api/v1/agents/", inv->args[0], "/conflicts");
    if (!path)
        return CLI_EXIT_PROBLEM;
    client_response resp;
    int rc = cli_request_once(inv, "GET", path, NULL, &resp);
    free(path);
    if (rc != 0)
        return rc;
    bool ok = json_is_true(json_object_get(resp.json, "ok"));
    if (inv->output == CLI_OUTPUT_JSON)
        output_json(stdout, resp.json);
    else
        print_conflicts(resp.json);
    client_response_free(&resp);
    return ok ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
}
