/* `caxton tools status|reconnect|test-connectivity`: the MCP tool servers
 * (routes /api/v1/tools, /tools/reconnect, /tools/test).
 *
 * status exits 1 when a server the listing covers is not ready or, with
 * --agent, when a tool of that agent is not reachable; test-connectivity
 * exits 1 when any round trip failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/util.h"

#define TEST_TIMEOUT_MS 30000u

static void print_servers(const json_t *servers)
{
    output_table *t = output_table_new(
        7, (const char *[]){"SERVER", "STATE", "PID", "TOOLS", "CALLS", "ERRORS", "LAST ERROR"});
    size_t i;
    const json_t *s;
    json_array_foreach(servers, i, s) {
        char pid[32], tools[32], calls[32], errors[32];
        snprintf(pid, sizeof pid, "%lld", (long long)output_int(s, "pid"));
        snprintf(tools, sizeof tools, "%zu", json_array_size(json_object_get(s, "tools")));
        snprintf(calls, sizeof calls, "%lld", (long long)output_int(s, "calls"));
        snprintf(errors, sizeof errors, "%lld", (long long)output_int(s, "errors"));
        if (t)
            output_table_row(t, output_string(s, "name", "?"), output_string(s, "state", "?"),
                             output_int(s, "pid") > 0 ? pid : "-", tools, calls, errors,
                             output_string(s, "last_error", "-"));
    }
    if (t) {
        if (output_table_rows(t) == 0)
            printf("no MCP tool servers are configured (tools.mcp_servers)\n");
        else
            output_table_print(t, stdout);
    }
    output_table_free(t);
}

static bool servers_ready(const json_t *servers)
{
    size_t i;
    const json_t *s;
    json_array_foreach(servers, i, s) {
        if (strcmp(output_string(s, "state", ""), "ready") != 0)
            return false;
    }
    return true;
}

static bool tools_reachable(const json_t *tools)
{
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        if (!json_is_true(json_object_get(t, "reachable")))
            return false;
    }
    return true;
}

static void print_agent_tools(const char *agent_name, const json_t *tools)
{
    output_line(stdout, "tools of %s:", agent_name);
    output_table *t = output_table_new(4, (const char *[]){"TOOL", "KIND", "REACHABLE", "DETAIL"});
    size_t i;
    const json_t *tool;
    json_array_foreach(tools, i, tool) {
        if (t)
            output_table_row(t, output_string(tool, "tool", "?"), output_string(tool, "kind", "?"),
                             json_is_true(json_object_get(tool, "reachable")) ? "yes" : "NO",
                             output_string(tool, "detail", ""));
    }
    if (t) {
        if (output_table_rows(t) == 0)
            printf("(the agent's allow-list is empty)\n");
        else
            output_table_print(t, stdout);
    }
    output_table_free(t);
}

int cmd_tools_status(const cli_invocation *inv)
{
    const char *agent_name = cli_flag_value(inv, "agent");
    strbuf path;
    strbuf_init(&path);
    strbuf_appends(&path, "/api/v1/tools");
    if (cli_query_add(&path, "agent", agent_name) < 0 || path.failed) {
        strbuf_free(&path);
        return CLI_EXIT_PROBLEM;
    }
    client_response resp;
    int rc = cli_request_once(inv, "GET", path.data, NULL, &resp);
    strbuf_free(&path);
    if (rc != 0)
        return rc;
    const json_t *servers = json_object_get(resp.json, "servers");
    const json_t *tools = json_object_get(resp.json, "tools");
    bool ok = servers_ready(servers) && (!agent_name || tools_reachable(tools));
    if (inv->output == CLI_OUTPUT_JSON) {
        output_json(stdout, resp.json);
    } else {
        if (agent_name) {
            print_agent_tools(agent_name, tools);
            printf("\n");
        }
        print_servers(servers);
    }
    client_response_free(&resp);
    return ok ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
}

static json_t *target_body(const cli_invocation *inv, bool with_server)
{
    json_t *body = json_object();
    const char *agent_name = cli_flag_value(inv, "agent");
    const char *server = with_server ? cli_flag_value(inv, "tool-server") : NULL;
    if (agent_name)
        json_object_set_new(body, "agent", json_string(agent_name));
    if (server)
        json_object_set_new(body, "server", json_string(server));
    return body;
}

int cmd_tools_reconnect(const cli_invocation *inv)
{
    if (inv->server && !strstr(inv->server, "://")) {
        fprintf(stderr, "caxton: --server is the Caxton server's URL (http://HOST:PORT); to "
                "reconnect one tool server use --tool-server %s\n", inv->server);
        return CLI_EXIT_USAGE;
    }
    if (cli_flag_set(inv, "agent") && cli_flag_set(inv, "tool-server")) {
        fprintf(stderr, "caxton: give --agent or --tool-server, not both\n");
        return CLI_EXIT_USAGE;
    }
    json_t *body = target_body(inv, true);
    client_response resp;
    int rc = cli_request_once(inv, "POST", "/api/v1/tools/reconnect", body, &resp);
    json_decref(body);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        output_json(stdout, resp.json);
    } else {
        const json_t *done = json_object_get(resp.json, "reconnecting");
        if (json_array_size(done) == 0) {
            printf("no MCP tool servers to reconnect\n");
        } else {
            char *names = output_join(done);
            output_line(stdout, "reconnecting: %s", names ? names : "?");
            free(names);
            output_line(stdout, "%s", output_string(resp.json, "note", ""));
        }
    }
    client_response_free(&resp);
    return CLI_EXIT_OK;
}

int cmd_tools_test_connectivity(const cli_invocation *inv)
{
    json_t *body = target_body(inv, false);
    client_response resp;
    int rc = cli_request_once(inv, "POST", "/api/v1/tools/test", body, &resp);
    json_decref(body);
    if (rc != 0)
        return rc;
    bool ok = json_is_true(json_object_get(resp.json, "ok"));
    if (inv->output == CLI_OUTPUT_JSON) {
        output_json(stdout, resp.json);
    } else {
        output_table *t = output_table_new(
            6, (const char *[]){"SERVER", "OK", "INITIALIZE", "LIST", "TOOLS", "ERROR"});
        size_t i;
        const json_t *s;
        json_array_foreach(json_object_get(resp.json, "servers"), i, s) {
            char init[32], list[32], tools[32];
            snprintf(init, sizeof init, "%lld ms", (long long)output_int(s, "initialize_ms"));
            snprintf(list, sizeof list, "%lld ms", (long long)output_int(s, "list_ms"));
            snprintf(tools, sizeof tools, "%lld", (long long)output_int(s, "tools"));
            if (t)
                output_table_row(t, output_string(s, "name", "?"),
                                 json_is_true(json_object_get(s, "ok")) ? "yes" : "NO", init,
                                 list, tools, output_string(s, "error", "-"));
        }
        if (t) {
            if (output_table_rows(t) == 0)
                printf("no MCP tool servers to test\n");
            else
                output_table_print(t, stdout);
        }
        output_table_free(t);
        const char *agent_name = cli_flag_value(inv, "agent");
        if (agent_name) {
            printf("\n");
            print_agent_tools(agent_name, json_object_get(resp.json, "tools"));
        }
        output_line(stdout, ok ? "all tool servers answered" : "some tool servers failed");
    }
    client_response_free(&resp);
    return ok ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
}
