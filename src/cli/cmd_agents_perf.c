/* `caxton agents test-all` and `caxton agents performance-summary`.
 *
 * test-all sends every active agent a probe (a query-ref asking it to answer
 * "OK") through POST /api/v1/messages?wait= and checks that an answer comes:
 * for a configuration agent that is a real provider round trip. Agents that
 * are not active are reported as not tested, with their state. Exit 1 when
 * any tested agent fails.
 *
 * performance-summary prints, per agent, latency (average and p99 over the
 * last 256 messages), LLM calls and time, tool calls and time, and tokens,
 * from GET /api/v1/agents. --slow-only keeps agents whose p99 is at or over
 * 5 s (the guide's "response times > 5 seconds"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/util.h"

#define AGENTS_MAX 100000
#define SLOW_P99_MS 5000
#define PROBE_TEXT "Health check from the operator: answer with the single word OK."

static int fetch_agents(const cli_invocation *inv, client *c, json_t **items)
{
    int rc = cli_connect(inv, c);
    if (rc != 0)
        return rc;
    rc = cli_fetch_list(c, "/api/v1/agents", AGENTS_MAX, items, NULL);
    if (rc != 0)
        client_close(c);
    return rc;
}

/* One probe; fills result with status, latency and why. */
static void probe(client *c, const char *name, uint64_t wait_ms, json_t *result)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/messages?wait=%llums", (unsigned long long)wait_ms);
    json_t *body = json_pack("{s:s, s:s, s:s}", "performative", "query-ref", "receiver", name,
                             "content", PROBE_TEXT);
    uint64_t t0 = time_monotonic_ns();
    client_response resp;
    int rc = body ? cli_call(c, "POST", path, body, &resp) : CLI_EXIT_PROBLEM;
    json_decref(body);
    uint64_t ms = (time_monotonic_ns() - t0) / 1000000u;
    json_object_set_new(result, "latency_ms", json_integer((json_int_t)ms));
    if (rc != 0) {
        json_object_set_new(result, "ok", json_false());
        json_object_set_new(result, "detail", json_string("the request failed (see above)"));
        return;
    }
    const json_t *reply = json_object_get(resp.json, "reply");
    const char *perf = output_string(reply, "performative", "");
    bool ok = reply && strcmp(perf, "inform") == 0;
    json_object_set_new(result, "ok", json_boolean(ok));
    json_object_set_new(result, "performative", json_string(perf));
    const json_t *content = json_object_get(reply, "content");
    char *text = json_is_string(content) ? str_dup(json_string_value(content))
                                         : json_dumps(content, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text && strlen(text) > 120) {
        strcpy(text + 117, "...");
        text_make_utf8(text);
    }
    json_object_set_new(result, "detail", json_string(text ? text : ""));
    free(text);
    client_response_free(&resp);
}

int cmd_agents_test_all(const cli_invocation *inv)
{
    client c;
    json_t *items;
    int rc = fetch_agents(inv, &c, &items);
    if (rc != 0)
        return rc;
    uint64_t wait_ms = inv->timeout_ms > 1000 ? inv->timeout_ms - 500 : inv->timeout_ms;
    json_t *results = json_array();
    bool all_ok = true;
    size_t i;
    const json_t *a;
    json_array_foreach(items, i, a) {
        const char *name = output_string(a, "name", "?");
        const char *state = output_string(a, "state", "?");
        json_t *r = json_pack("{s:s, s:s}", "agent", name, "state", state);
        if (strcmp(state, "active") != 0) {
            json_object_set_new(r, "tested", json_false());
            json_object_set_new(r, "detail", json_sprintf("not tested: the agent is %s", state));
        } else {
            json_object_set_new(r, "tested", json_true());
            probe(&c, name, wait_ms, r);
            if (!json_is_true(json_object_get(r, "ok")))
                all_ok = false;
        }
        json_array_append_new(results, r);
    }
    client_close(&c);
    json_decref(items);
    if (inv->output == CLI_OUTPUT_JSON) {
        json_t *doc = json_pack("{s:o, s:b}", "agents", results, "ok", all_ok);
        output_json(stdout, doc);
        json_decref(doc);
    } else {
        output_table *t = output_table_new(4, (const char *[]){"AGENT", "RESULT", "LATENCY",
                                                               "DETAIL"});
        json_array_foreach(results, i, a) {
            char latency[32] = "-";
            if (json_is_true(json_object_get(a, "tested")))
                snprintf(latency, sizeof latency, "%lld ms",
                         (long long)output_int(a, "latency_ms"));
            const char *result = !json_is_true(json_object_get(a, "tested")) ? "skipped"
                                 : json_is_true(json_object_get(a, "ok"))    ? "ok"
                                                                             : "FAILED";
            if (t)
                output_table_row(t, output_string(a, "agent", "?"), result, latency,
                                 output_string(a, "detail", ""));
        }
        if (t) {
            if (output_table_rows(t) == 0)
                printf("no agents\n");
            else
                output_table_print(t, stdout);
        }
        output_table_free(t);
        json_decref(results);
    }
    return all_ok ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
}

int cmd_agents_performance_summary(const cli_invocation *inv)
{
    client c;
    json_t *items;
    int rc = fetch_agents(inv, &c, &items);
    if (rc != 0)
        return rc;
    client_close(&c);
    bool slow_only = cli_flag_set(inv, "slow-only");
    json_t *rows = json_array();
    size_t i;
    const json_t *a;
    json_array_foreach(items, i, a) {
        const json_t *s = json_object_get(a, "stats");
        if (slow_only && output_int(s, "p99_latency_ms") < SLOW_P99_MS)
            continue;
        json_array_append_new(
            rows, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                            "agent", output_string(a, "name", "?"), "state",
                            output_string(a, "state", "?"), "answered",
                            output_int(s, "answered"), "failed", output_int(s, "failed"),
                            "avg_latency_ms", output_int(s, "avg_latency_ms"), "p99_latency_ms",
                            output_int(s, "p99_latency_ms"), "llm_calls",
                            output_int(s, "llm_calls"), "llm_time_ms",
                            output_int(s, "llm_time_ms"), "tool_calls",
                            output_int(s, "tool_calls"), "tool_time_ms",
                            output_int(s, "tool_time_ms"), "prompt_tokens",
                            output_int(s, "prompt_tokens"), "completion_tokens",
                            output_int(s, "completion_tokens")));
    }
    json_decref(items);
    if (inv->output == CLI_OUTPUT_JSON) {
        json_t *doc = json_pack("{s:o, s:i}", "agents", rows, "slow_p99_ms", SLOW_P99_MS);
        output_json(stdout, doc);
        json_decref(doc);
        return CLI_EXIT_OK;
    }
    output_table *t = output_table_new(
        8, (const char *[]){"AGENT", "ANSWERED", "FAILED", "AVG", "P99", "LLM CALLS/TIME",
                            "TOOL CALLS/TIME", "TOKENS IN/OUT"});
    json_array_foreach(rows, i, a) {
        char answered[32], failed[32], avg[32], p99[32], llm[64], tools[64], tokens[64];
        snprintf(answered, sizeof answered, "%lld", (long long)output_int(a, "answered"));
        snprintf(failed, sizeof failed, "%lld", (long long)output_int(a, "failed"));
        snprintf(avg, sizeof avg, "%lld ms", (long long)output_int(a, "avg_latency_ms"));
        snprintf(p99, sizeof p99, "%lld ms", (long long)output_int(a, "p99_latency_ms"));
        snprintf(llm, sizeof llm, "%lld / %lld ms", (long long)output_int(a, "llm_calls"),
                 (long long)output_int(a, "llm_time_ms"));
        snprintf(tools, sizeof tools, "%lld / %lld ms", (long long)output_int(a, "tool_calls"),
                 (long long)output_int(a, "tool_time_ms"));
        snprintf(tokens, sizeof tokens, "%lld / %lld", (long long)output_int(a, "prompt_tokens"),
                 (long long)output_int(a, "completion_tokens"));
        if (t)
            output_table_row(t, output_string(a, "agent", "?"), answered, failed, avg, p99, llm,
                             tools, tokens);
    }
    if (t) {
        if (output_table_rows(t) == 0)
            printf(slow_only ? "no slow agents (none with p99 latency of 5 s or more)\n"
                             : "no agents\n");
        else
            output_table_print(t, stdout);
    }
    output_table_free(t);
    json_decref(rows);
    return CLI_EXIT_OK;
}
