/* Unit tests for agents/agentdef: parsing and validating agent definition
 * files, the diagnostics an operator reads, the JSON model, prompt
 * rendering, fix suggestions, hostile input, and the shipped examples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agentdef.h"
#include "core/util.h"

/* ---- helpers ------------------------------------------------------------------- */

static const char *const openai_only[] = {"openai"};
static const char *const two_providers[] = {"openai", "anthropic"};
static const agentdef_context openai_ctx = {.providers = openai_only, .provider_count = 1};

#define MINIMAL "---\nname: my-agent\nversion: 1.0.0\ncapabilities: [summarization]\n"

static agent_def *parse_ctx(const char *text, const agentdef_context *ctx, agentdef_diags *d)
{
    return agentdef_parse("agent", text, strlen(text), ctx, d);
}

static agent_def *parse(const char *text, agentdef_diags *d)
{
    return parse_ctx(text, &openai_ctx, d);
}

/* The first diagnostic whose field is `field` (NULL: any) and whose message
 * contains `needle`. */
static const agentdef_diag *find_diag(const agentdef_diags *d, const char *field,
                                      const char *needle)
{
    for (size_t i = 0; i < d->count; i++)
        if ((!field || strcmp(d->items[i].field, field) == 0) &&
            strstr(d->items[i].message, needle))
            return &d->items[i];
    return NULL;
}

/* Parses text expecting it to fail with one diagnostic at line:column. */
static const agentdef_diag *expect_error_at(const char *text, agentdef_diags *d, unsigned line,
                                            unsigned column, const char *needle)
{
    agent_def *def = parse(text, d);
    assert_null(def);
    const agentdef_diag *diag = find_diag(d, NULL, needle);
    if (!diag) {
        char *out;
        agentdef_diags_format(d, "agent", &out);
        fprintf(stderr, "no diagnostic with \"%s\" in:\n%s", needle, out);
        free(out);
    }
    assert_non_null(diag);
    assert_int_equal(diag->severity, AGENTDEF_ERROR);
    assert_int_equal(diag->line, line);
    assert_int_equal(diag->column, column);
    return diag;
}

static char *text_with(const char *head, const char *body)
{
    char *s = NULL;
    assert_true(asprintf(&s, "%s%s", head, body) > 0);
    return s;
}

/* A frontmatter holding `line` plus whichever of name, version and
 * capabilities it does not set. */
static char *frontmatter_with(const char *line)
{
    static const char *const required[] = {"name: my-agent", "version: 1.0.0",
                                           "capabilities: [summarization]"};
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appends(&sb, "---\n");
    for (size_t i = 0; i < 3; i++)
        if (strncmp(line, required[i], strchr(required[i], ':') - required[i] + 1) != 0)
            strbuf_appendf(&sb, "%s\n", required[i]);
    strbuf_appendf(&sb, "%s\n---\n", line);
    assert_false(sb.failed);
    return strbuf_detach(&sb);
}

/* ---- whole files ----------------------------------------------------------------- */

static const char full_llm[] =
    "---\n"
    "name: invoice-checker            # required\n"
    "version: 1.2.0-beta.1+build.7\n"
    "description: Checks invoices against purchase orders\n"
    "runtime: llm\n"
    "capabilities: [invoice-validation, po-lookup]\n"
    "requires: [currency-conversion]\n"
    "tools: [files.read_file, memory_search, send_message]\n"
    "llm:\n"
    "  provider: openai\n"
    "  model: gpt-4o-mini\n"
    "  temperature: 0.2\n"
    "  max_tokens: 1024\n"
    "memory:\n"
    "  enabled: true\n"
    "  scope: agent-only\n"
    "  workspace: finance\n"
    "  max_entries: 5000\n"
    "  retention: 90d\n"
    "conversation:\n"
    "  max_turns: 40\n"
    "  context_window: 16000\n"
    "  timeout: 45m\n"
    "limits:\n"
    "  max_execution_time: 90s\n"
    "  max_tool_calls: 12\n"
    "  token_budget: 200000/day\n"
    "instances: 3\n"
    "parameters:\n"
    "  tolerance: 0.01\n"
    "  currency: EUR\n"
    "  strict: yes\n"
    "  quoted: \"42\"\n"
    "  retries: 3\n"
    "  nothing: ~\n"
    "  nested: {a: [1, two]}\n"
    "---\n"
    "You are {{name}} ({{ version }}). Tolerance is {{parameters.tolerance}}.\n"
    "{{memory_context}}\n";

static void test_full_valid_file(void **state)
{
    (void)state;
    static const char *const tools[] = {"files.read_file"};
    agentdef_context ctx = openai_ctx;
    ctx.tools = tools;
    ctx.tool_count = 1;
    ctx.tools_checked = true;
    agentdef_diags d;
    agent_def *def = parse_ctx(full_llm, &ctx, &d);
    assert_non_null(def);
    assert_int_equal(d.count, 0);
    assert_string_equal(def->name, "invoice-checker");
    assert_string_equal(def->version, "1.2.0-beta.1+build.7");
    assert_string_equal(def->description, "Checks invoices against purchase orders");
    assert_int_equal(def->runtime, AGENT_RUNTIME_LLM);
    assert_int_equal(def->capability_count, 2);
    assert_string_equal(def->capabilities[1], "po-lookup");
    assert_int_equal(def->require_count, 1);
    assert_string_equal(def->requires[0], "currency-conversion");
    assert_int_equal(def->tool_count, 3);
    assert_string_equal(def->tools[0], "files.read_file");
    assert_string_equal(def->llm_provider, "openai");
    assert_string_equal(def->llm_model, "gpt-4o-mini");
    assert_true(def->llm_temperature_set);
    assert_true(def->llm_temperature > 0.19 && def->llm_temperature < 0.21);
    assert_int_equal(def->llm_max_tokens, 1024);
    assert_true(def->memory_enabled);
    assert_int_equal(def->memory_scope, AGENT_MEMORY_AGENT);
    assert_string_equal(def->memory_workspace, "finance");
    assert_int_equal(def->memory_max_entries, 5000);
    assert_int_equal(def->memory_retention_ms, UINT64_C(90) * 24 * 3600 * 1000);
    assert_int_equal(def->conversation_max_turns, 40);
    assert_int_equal(def->conversation_context_window, 16000);
    assert_int_equal(def->conversation_timeout_ms, 45 * 60 * 1000);
    assert_int_equal(def->limits_max_execution_time_ms, 90000);
    assert_int_equal(def->limits_max_tool_calls, 12);
    assert_int_equal(def->limits_token_budget.tokens, 200000);
    assert_int_equal(def->limits_token_budget.period_ms, 24 * 3600 * 1000);
    assert_int_equal(def->instances, 3);
    assert_null(def->module);
    assert_int_equal(def->body_line, 38);
    assert_true(str_has_prefix(def->body, "You are {{name}}"));
    assert_true(str_has_prefix(def->frontmatter, "name: invoice-checker"));
    /* Plain scalars are typed the YAML 1.1 way; quoted ones stay text. */
    json_t *p = def->parameters;
    assert_true(json_is_real(json_object_get(p, "tolerance")));
    assert_string_equal(json_string_value(json_object_get(p, "currency")), "EUR");
    assert_true(json_is_true(json_object_get(p, "strict")));
    assert_string_equal(json_string_value(json_object_get(p, "quoted")), "42");
    assert_int_equal(json_integer_value(json_object_get(p, "retries")), 3);
    assert_true(json_is_null(json_object_get(p, "nothing")));
    json_t *a = json_object_get(json_object_get(p, "nested"), "a");
    assert_int_equal(json_integer_value(json_array_get(a, 0)), 1);
    assert_string_equal(json_string_value(json_array_get(a, 1)), "two");
    agentdef_free(def);
    agentdef_diags_free(&d);
}

static void test_minimal_file_gets_defaults(void **state)
{
    (void)state;
    agentdef_diags d;
    agent_def *def = parse(MINIMAL "---\nHello.\n", &d);
    assert_non_null(def);
    assert_int_equal(d.count, 0);
    assert_string_equal(def->description, "");
    assert_int_equal(def->runtime, AGENT_RUNTIME_LLM);
    assert_int_equal(def->tool_count, 0);
    assert_int_equal(def->require_count, 0);
    assert_string_equal(def->llm_provider, "openai"); /* the only one configured */
    assert_null(def->llm_model);
    assert_false(def->llm_temperature_set);
    assert_true(def->llm_temperature > 0.69 && def->llm_temperature < 0.71);
    assert_int_equal(def->llm_max_tokens, 0);
    assert_false(def->memory_enabled);
    assert_int_equal(def->memory_scope, AGENT_MEMORY_WORKSPACE);
    assert_string_equal(def->memory_workspace, "default");
    assert_int_equal(def->memory_max_entries, 10000);
    assert_int_equal(def->memory_retention_ms, 0);
    assert_int_equal(def->conversation_max_turns, 50);
    assert_int_equal(def->conversation_context_window, 8000);
    assert_int_equal(def->conversation_timeout_ms, 30 * 60 * 1000);
    assert_int_equal(def->limits_max_execution_time_ms, 60000);
    assert_int_equal(def->limits_max_tool_calls, 10);
    assert_int_equal(def->limits_token_budget.tokens, 0);
    assert_int_equal(def->instances, 1);
    assert_true(json_is_object(def->parameters));
    assert_int_equal(json_object_size(def->parameters), 0);
    assert_null(def->policy);
    assert_int_equal(def->wasm_memory_bytes, 0);
    assert_string_equal(def->body, "Hello.\n");
    assert_int_equal(def->body_line, 6);
    agentdef_free(def);
    agentdef_diags_free(&d);
}

typedef struct module_check {
    char path[256];
    int calls;
    bool fail;
} module_check;

static int check_module(const char *path, char *msg, size_t size, void *arg)
{
    module_check *mc = arg;
    snprintf(mc->path, sizeof mc->path, "%s", path);
    mc->calls++;
    if (mc->fail)
        snprintf(msg, size, "%s: not a WebAssembly module (bad magic)", path);
    return mc->fail ? -1 : 0;
}

static void test_wasm_agent(void **state)
{
    (void)state;
    const char *text = "---\nname: wasm-calc\nversion: 2.0.0\nruntime: wasm\n"
                       "capabilities: [arithmetic]\nmodule: calc.wasm\npolicy: strict\n"
                       "wasm_limits: { memory: 10MB, fuel: 1000000, timeout: 5s }\n"
                       "---\nDocs may mention {{anything}}.\n";
    module_check mc = {0};
    agentdef_context ctx = {.agents_dir = "/srv/agents", .check_module = check_module,
                            .check_module_arg = &mc};
    agentdef_diags d;
    agent_def *def = parse_ctx(text, &ctx, &d);
    assert_non_null(def);
    assert_int_equal(d.count, 0); /* no provider warning, no template check for wasm */
    assert_int_equal(def->runtime, AGENT_RUNTIME_WASM);
    assert_string_equal(def->module, "calc.wasm");
    assert_string_equal(def->policy, "strict");
    assert_int_equal(def->wasm_memory_bytes, 10 * 1024 * 1024);
    assert_int_equal(def->wasm_fuel, 1000000);
    assert_int_equal(def->wasm_timeout_ms, 5000);
    assert_int_equal(mc.calls, 1);
    assert_string_equal(mc.path, "/srv/agents/calc.wasm");
    agentdef_free(def);
    agentdef_diags_free(&d);

    mc.fail = true;
    assert_null(parse_ctx(text, &ctx, &d));
    const agentdef_diag *e = find_diag(&d, "module", "bad magic");
    assert_non_null(e);
    assert_int_equal(e->line, 6);
    assert_int_equal(e->column, 9);
    agentdef_diags_free(&d);

    /* Absolute paths are used as written; no agents_dir skips the check. */
    char *abs = text_with("---\nname: wasm-calc\nversion: 2.0.0\nruntime: wasm\n"
                          "capabilities: [arithmetic]\nmodule: /opt/calc.wasm\n---\n", "");
    mc = (module_check){0};
    agentdef_free(parse_ctx(abs, &ctx, &d));
    assert_string_equal(mc.path, "/opt/calc.wasm");
    agentdef_diags_free(&d);
    ctx.agents_dir = NULL;
    mc = (module_check){0};
    agentdef_free(parse_ctx(abs, &ctx, &d));
    assert_int_equal(mc.calls, 0);
    agentdef_diags_free(&d);
    free(abs);
}

static void test_wasm_needs_module_and_llm_ignores_it(void **state)
{
    (void)state;
    agentdef_diags d;
    assert_null(parse("---\nname: wasm-calc\nversion: 2.0.0\nruntime: wasm\n"
                      "capabilities: [arithmetic]\n---\n", &d));
    const agentdef_diag *e = find_diag(&d, "module", "needs `module`");
    assert_non_null(e);
    assert_int_equal(e->line, 6);
    agentdef_diags_free(&d);

    agent_def *def = parse(MINIMAL "module: x.wasm\npolicy: relaxed\n---\n", &d);
    assert_non_null(def);
    assert_int_equal(d.warnings, 2);
    const agentdef_diag *w = find_diag(&d, "module", "ignored for llm agents");
    assert_non_null(w);
    assert_int_equal(w->severity, AGENTDEF_WARNING);
    agentdef_free(def);
    agentdef_diags_free(&d);
}

/* ---- frontmatter and syntax --------------------------------------------------------- */

static void test_missing_frontmatter(void **state)
{
    (void)state;
    agentdef_diags d;
    const agentdef_diag *e =
        expect_error_at("name: my-agent\nversion: 1.0.0\n", &d, 1, 1, "frontmatter missing");
    assert_string_equal(e->message,
                        "frontmatter missing: the file must start with a line '---'");
    assert_non_null(e->hint);
    assert_int_equal(d.count, 1);
    agentdef_diags_free(&d);
    /* Blank lines before the marker are not allowed either. */
    expect_error_at("\n" MINIMAL "---\n", &d, 1, 1, "frontmatter missing");
    agentdef_diags_free(&d);
}

static void test_unclosed_frontmatter(void **state)
{
    (void)state;
    agentdef_diags d;
    const agentdef_diag *e =
        expect_error_at(MINIMAL "\nYou summarize.\n", &d, 7, 1, "frontmatter not closed");
    assert_string_equal(e->hint, "add a line '---' after the frontmatter");
    assert_int_equal(d.errors, 1);
    agentdef_diags_free(&d);
}

static void test_empty_file_and_only_marker(void **state)
{
    (void)state;
    agentdef_diags d;
    expect_error_at("", &d, 1, 1, "frontmatter missing");
    agentdef_diags_free(&d);
    expect_error_at("---", &d, 1, 4, "frontmatter not closed");
    agentdef_diags_free(&d);
    expect_error_at("---\n", &d, 2, 1, "frontmatter not closed");
    agentdef_diags_free(&d);
    /* An empty frontmatter: every required field is reported. */
    assert_null(parse("---\n---\n", &d));
    assert_int_equal(d.errors, 3);
    assert_non_null(find_diag(&d, "name", "required field `name` is missing"));
    assert_non_null(find_diag(&d, "version", "missing"));
    assert_non_null(find_diag(&d, "capabilities", "missing"));
    assert_int_equal(d.items[0].line, 2);
    agentdef_diags_free(&d);
}

static void test_tabs_in_indentation(void **state)
{
    (void)state;
    agentdef_diags d;
    const agentdef_diag *e = expect_error_at(MINIMAL "llm:\n\tmodel: x\n  \ttemperature: 1\n---\n",
                                             &d, 6, 1, "tab");
    assert_string_equal(e->message, "a tab is used for indentation");
    assert_string_equal(e->hint, "YAML indentation must use spaces, not tabs");
    assert_int_equal(d.errors, 2);
    assert_int_equal(d.items[1].line, 7);
    assert_int_equal(d.items[1].column, 3);
    agentdef_diags_free(&d);
    /* Tabs inside a block scalar's content and after a key are fine. */
    agent_def *def = parse(MINIMAL "description: |\n  line one\n  \tindented\nllm:\n"
                                   "  model:\tgpt\n---\n", &d);
    assert_non_null(def);
    assert_string_equal(def->description, "line one\n\tindented\n");
    agentdef_free(def);
    agentdef_diags_free(&d);
}

static void test_yaml_syntax_errors(void **state)
{
    (void)state;
    agentdef_diags d;
    const agentdef_diag *e = expect_error_at(
        "---\nname: my-agent\nversion: 1.0.0\ndescription: a: b\n---\n", &d, 4, 15,
        "YAML syntax error: mapping values are not allowed");
    assert_non_null(e->hint);
    assert_int_equal(d.count, 1);
    agentdef_diags_free(&d);
    e = expect_error_at("---\nname: my-agent\nversion: \"1.0.0\ncapabilities: [x]\n---\n", &d, 5,
                        1, "YAML syntax error");
    assert_non_null(strstr(e->hint, "not closed"));
    agentdef_diags_free(&d);
    expect_error_at("---\nname: my-agent\ncapabilities: [a, b\n---\n", &d, 4, 1,
                    "YAML syntax error");
    agentdef_diags_free(&d);
    /* Line numbers count from the file, not the frontmatter, also with a BOM
     * and CRLF line ends. */
    expect_error_at("\xEF\xBB\xBF---\r\nname: my-agent\r\n\r\nversion: : 1\r\n---\r\n", &d, 4, 10,
                    "YAML syntax error");
    agentdef_diags_free(&d);
}

static void test_frontmatter_shape(void **state)
{
    (void)state;
    agentdef_diags d;
    expect_error_at("---\njust some text\n---\n", &d, 2, 1,
                    "the frontmatter must be a mapping of settings, got \"just some text\"");
    agentdef_diags_free(&d);
    expect_error_at("---\n- a\n- b\n---\n", &d, 2, 1, "got a list");
    agentdef_diags_free(&d);
    expect_error_at(MINIMAL "version: 2.0.0\n---\n", &d, 5, 1, "set twice");
    agentdef_diags_free(&d);
    expect_error_at(MINIMAL "llm: {model: a, model: b}\n---\n", &d, 5, 17, "set twice");
    agentdef_diags_free(&d);
    expect_error_at(MINIMAL "parameters: {a: 1, a: 2}\n---\n", &d, 5, 20, "set twice");
    agentdef_diags_free(&d);
    expect_error_at(MINIMAL "? [a, b]\n: 1\n---\n", &d, 5, 3, "keys must be names");
    agentdef_diags_free(&d);
    expect_error_at(MINIMAL "...\nname: other\n---\n", &d, 6, 1, "YAML syntax error");
    agentdef_diags_free(&d);
}

static void test_crlf_and_bom(void **state)
{
    (void)state;
    agentdef_diags d;
    agent_def *def = parse("\xEF\xBB\xBF---\r\nname: my-agent\r\nversion: 1.0.0\r\n"
                           "capabilities: [x]\r\n---\r\nHi {{name}}\r\n", &d);
    assert_non_null(def);
    assert_string_equal(def->name, "my-agent");
    assert_string_equal(def->body, "Hi {{name}}\r\n");
    agentdef_free(def);
    agentdef_diags_free(&d);
}

/* ---- fields --------------------------------------------------------------------- */

static void test_wrong_types(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *field;
        const char *message;
        const char *hint; /* a part of it */
        unsigned column;
    } cases[] = {
        {"llm: {temperature: hot}", "llm.temperature",
         "expected a number from 0 to 2, got \"hot\"", "0 to 2", 20},
        {"llm:\n  temperature: 3", "llm.temperature", "expected a number from 0 to 2, got 3",
         "use a number from 0 to 2", 16},
        {"instances: many", "instances", "expected an integer from 1 to 64, got \"many\"",
         "1 to 64", 12},
        {"instances: 0", "instances", "expected an integer from 1 to 64, got 0", "1 to 64", 12},
        {"instances: -2", "instances", "got -2", "1 to 64", 12},
        {"instances: 2.5", "instances", "got 2.5", "integer", 12},
        {"instances: [1]", "instances", "got a list", "integer", 12},
        {"instances:", "instances", "got nothing", "remove the key", 11},
        {"memory: {enabled: maybe}", "memory.enabled", "expected true or false", "true", 19},
        {"memory: {scope: team}", "memory.scope",
         "expected one of agent, workspace, global, got \"team\"", "use one of", 17},
        {"memory: {scope: workspac}", "memory.scope", "got \"workspac\"",
         "did you mean `workspace`?", 17},
        {"memory: {retention: soon}", "memory.retention", "expected a duration",
         "such as 90s, 30m or 7d", 21},
        {"conversation: {timeout: 0s}", "conversation.timeout",
         "expected a duration from 1s to 30d", "1s to 30d", 25},
        {"limits: {max_execution_time: 2h}", "limits.max_execution_time", "from 1s to 1h",
         "1s to 1h", 30},
        {"limits: {token_budget: 100/year}", "limits.token_budget",
         "expected a token budget such as 200000/day", "hour, day, week or month", 24},
        {"limits: {max_tool_calls: 1001}", "limits.max_tool_calls", "from 0 to 1000", "1000",
         26},
        {"llm: {max_tokens: 99999999999999999999}", "llm.max_tokens", "from 1 to 1000000",
         "1000000", 19},
        {"runtime: python", "runtime", "expected one of llm, wasm, got \"python\"", "llm", 10},
        {"policy: strick", "policy", "got \"strick\"", "did you mean `strict`?", 9},
        {"capabilities: summarization", "capabilities", "expected a list",
         "[summarization]", 15},
        {"llm: [openai]", "llm", "expected a mapping", "mapping", 6},
        {"parameters: [1, 2]", "parameters", "expected a mapping", "key: value", 13},
        {"description: [a]", "description", "got a list", "text", 14},
        {"name: \"a\\0b\"", "name", "NUL", "\\0", 7},
        {"llm: {model: \"a\\nb\"}", "llm.model", "control character", "one line", 14},
        {"memory: {workspace: \"fin ance\"}", "memory.workspace", "not allowed in a name",
         "letters", 21},
        {"tools: [[a]]", "tools[0]", "expected a name, got a list", NULL, 9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *full = frontmatter_with(cases[i].line);
        agentdef_diags d;
        agent_def *def = parse(full, &d);
        const agentdef_diag *e = find_diag(&d, cases[i].field, cases[i].message);
        if (!e || def || (cases[i].hint && (!e->hint || !strstr(e->hint, cases[i].hint)))) {
            char *out;
            agentdef_diags_format(&d, "agent", &out);
            fprintf(stderr, "case %zu (%s):\n%s", i, cases[i].line, out);
            free(out);
        }
        assert_null(def);
        assert_non_null(e);
        assert_int_equal(e->severity, AGENTDEF_ERROR);
        if (cases[i].hint) {
            assert_non_null(e->hint);
            assert_non_null(strstr(e->hint, cases[i].hint));
        }
        assert_int_equal(e->column, cases[i].column);
        agentdef_diags_free(&d);
        free(full);
    }
}

static void test_values_accepted(void **state)
{
    (void)state;
    agentdef_diags d;
    agent_def *def = parse(MINIMAL "llm: {temperature: 2, max_tokens: 1000000}\n"
                                   "memory: {enabled: on, scope: global, retention: 0}\n"
                                   "limits: {token_budget: 5000 / hour, max_tool_calls: 0}\n"
                                   "conversation: {timeout: 1s, context_window: 256}\n"
                                   "instances: 64\ndescription: \"\"\n---\n", &d);
    assert_non_null(def);
    assert_int_equal(d.errors, 0);
    assert_true(def->llm_temperature > 1.99);
    assert_int_equal(def->llm_max_tokens, 1000000);
    assert_true(def->memory_enabled);
    assert_int_equal(def->memory_scope, AGENT_MEMORY_GLOBAL);
    assert_int_equal(def->limits_token_budget.tokens, 5000);
    assert_int_equal(def->limits_token_budget.period_ms, 3600 * 1000);
    assert_int_equal(def->limits_max_tool_calls, 0);
    assert_int_equal(def->instances, 64);
    agentdef_free(def);
    agentdef_diags_free(&d);

    def = parse(MINIMAL "limits: {token_budget: 1000}\n---\n", &d); /* a bare count is per day */
    assert_non_null(def);
    assert_int_equal(def->limits_token_budget.tokens, 1000);
    assert_int_equal(def->limits_token_budget.period_ms, 24 * 3600 * 1000);
    agentdef_free(def);
    agentdef_diags_free(&d);

    /* description: exactly 200 characters (multi-byte ones count once), then 201. */
    for (int extra = 0; extra <= 1; extra++) {
        strbuf sb;
        strbuf_init(&sb);
        strbuf_appends(&sb, MINIMAL "description: ");
        for (int i = 0; i < AGENTDEF_DESCRIPTION_MAX + extra; i++)
            strbuf_appends(&sb, i % 2 ? "d" : "\xC3\xA9");
        strbuf_appends(&sb, "\n---\n");
        def = parse(sb.data, &d);
        if (extra) {
            assert_null(def);
            assert_non_null(find_diag(&d, "description", "is 201 characters long"));
        } else {
            assert_non_null(def);
        }
        agentdef_free(def);
        agentdef_diags_free(&d);
        strbuf_free(&sb);
    }
}

static void test_unknown_keys_suggest(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *field;
        const char *hint;
    } cases[] = {
        {"descriptoin: x", "descriptoin", "did you mean `description`?"},
        {"llm: {modle: gpt}", "llm.modle", "did you mean `model`?"},
        {"memory: {enabeld: true}", "memory.enabeld", "did you mean `enabled`?"},
        {"conversation: {max_turn: 3}", "conversation.max_turn", "did you mean `max_turns`?"},
        {"limits: {token_budgt: 10}", "limits.token_budgt", "did you mean `token_budget`?"},
        {"wasm_limits: {fule: 10}", "wasm_limits.fule", "did you mean `fuel`?"},
        {"colour: blue", "colour", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *head = text_with(MINIMAL, cases[i].line);
        char *text = text_with(head, "\n---\n");
        agentdef_diags d;
        agent_def *def = parse(text, &d);
        assert_non_null(def); /* unknown keys are warnings */
        const agentdef_diag *w = find_diag(&d, cases[i].field, "unknown key");
        assert_non_null(w);
        assert_int_equal(w->severity, AGENTDEF_WARNING);
        assert_int_equal(w->line, 5);
        if (cases[i].hint)
            assert_string_equal(w->hint, cases[i].hint);
        else
            assert_null(w->hint);
        agentdef_free(def);
        agentdef_diags_free(&d);
        free(head);
        free(text);
    }
}

static void test_misspelled_required_key(void **state)
{
    (void)state;
    agentdef_diags d;
    assert_null(parse("---\nname: my-agent\nversion: 1.0.0\ncapabilites: [summarization]\n---\n",
                      &d));
    /* The missing field comes first (required fields are checked before
     * types), and its hint names the misspelling. */
    assert_int_equal(d.count, 2);
    assert_string_equal(d.items[0].field, "capabilities");
    assert_string_equal(d.items[0].message, "required field `capabilities` is missing");
    assert_string_equal(d.items[0].hint, "rename `capabilites` to `capabilities`");
    assert_int_equal(d.items[1].severity, AGENTDEF_WARNING);
    assert_string_equal(d.items[1].field, "capabilites");
    assert_string_equal(d.items[1].hint, "did you mean `capabilities`?");
    assert_int_equal(d.items[1].line, 4);
    assert_int_equal(d.items[1].column, 1);
    agentdef_diags_free(&d);
}

static void test_names(void **state)
{
    (void)state;
    char long_name[80];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_true(agentdef_name_valid("abc"));
    assert_true(agentdef_name_valid("invoice-checker-2"));
    assert_true(agentdef_name_valid(long_name + 1)); /* 64 */
    assert_false(agentdef_name_valid(long_name));
    static const char *const bad[] = {"ab", "Abc", "a_b", "abc-", "1abc", "-abc", "ab c", "",
                                      "abé"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(agentdef_name_valid(bad[i]));
    assert_false(agentdef_name_valid(NULL));

    static const struct {
        const char *name;
        const char *problem;
        const char *hint;
    } cases[] = {
        {"ab", "shorter than 3 characters", NULL},
        {"My_Agent", "upper-case letters", "did you mean `my-agent`?"},
        {"my-agent-", "must not end with '-'", "did you mean `my-agent`?"},
        {"9lives", "start with a lower-case letter", NULL},
        {"my agent", "only lower-case letters", "did you mean `my-agent`?"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "longer than 64 characters", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = NULL;
        assert_true(asprintf(&text, "---\nname: \"%s\"\nversion: 1.0.0\ncapabilities: [x]\n---\n",
                             cases[i].name) > 0);
        agentdef_diags d;
        const agentdef_diag *e = expect_error_at(text, &d, 2, 7, cases[i].problem);
        assert_string_equal(e->field, "name");
        if (cases[i].hint)
            assert_true(str_has_prefix(e->hint, cases[i].hint));
        agentdef_diags_free(&d);
        free(text);
    }
}

static void test_versions(void **state)
{
    (void)state;
    static const char *const good[] = {"0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha",
                                       "1.0.0-alpha.1", "1.0.0-0.3.7", "1.0.0+build.1",
                                       "1.0.0-rc.1+exp.sha.5114f85", "1.0.0-x-y-z.--"};
    static const struct {
        const char *version;
        const char *hint;
    } bad[] = {
        {"1.2", "did you mean `1.2.0`?"}, {"1", "did you mean `1.0.0`?"},
        {"v1.2.3", "did you mean `1.2.3`?"}, {"01.2.3", "use semantic versioning"},
        {"1.2.3.4", "use semantic versioning"}, {"1.2.3-", "use semantic"},
        {"1.2.3-01", "use semantic"}, {"1.2.3+", "use semantic"}, {"1.2.3-a..b", "use"},
        {"latest", "use semantic"}, {"1.2.x", "use semantic"},
    };
    agentdef_diags d;
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char *text = NULL;
        assert_true(asprintf(&text, "---\nname: my-agent\nversion: \"%s\"\n"
                                    "capabilities: [x]\n---\n", good[i]) > 0);
        agent_def *def = parse(text, &d);
        assert_non_null(def);
        assert_string_equal(def->version, good[i]);
        agentdef_free(def);
        agentdef_diags_free(&d);
        free(text);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *text = NULL;
        assert_true(asprintf(&text, "---\nname: my-agent\nversion: \"%s\"\n"
                                    "capabilities: [x]\n---\n", bad[i].version) > 0);
        const agentdef_diag *e = expect_error_at(text, &d, 3, 10, "is not a valid version");
        assert_string_equal(e->field, "version");
        assert_true(str_has_prefix(e->hint, bad[i].hint));
        agentdef_diags_free(&d);
        free(text);
    }
}

static void test_capabilities(void **state)
{
    (void)state;
    assert_true(agentdef_capability_valid("a"));
    assert_true(agentdef_capability_valid("po-lookup-2"));
    static const char *const bad[] = {"", "-a", "a-", "a--b", "A", "a_b", "a b", "a.b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(agentdef_capability_valid(bad[i]));

    agentdef_diags d;
    const char *base = "---\nname: my-agent\nversion: 1.0.0\n";
    char *text = text_with(base, "capabilities: [a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, "
                                 "a12, a13, a14, a15, a16, a17, a18, a19, a20, a21]\n---\n");
    const agentdef_diag *e = expect_error_at(text, &d, 4, 15, "has 21 entries");
    assert_non_null(strstr(e->message, "at most 20"));
    agentdef_diags_free(&d);
    free(text);

    text = text_with(base, "capabilities: [search, Bad_Cap, search]\n---\n");
    e = expect_error_at(text, &d, 4, 33, "listed twice");
    assert_string_equal(e->field, "capabilities[2]");
    e = find_diag(&d, "capabilities[1]", "not a valid capability name");
    assert_non_null(e);
    assert_int_equal(e->column, 24);
    assert_true(str_has_prefix(e->hint, "did you mean `bad-cap`?"));
    agentdef_diags_free(&d);
    free(text);

    text = text_with(base, "capabilities: []\n---\n");
    expect_error_at(text, &d, 4, 15, "at least one capability");
    agentdef_diags_free(&d);
    free(text);

    text = text_with(base, "capabilities: [x]\nrequires: [Currency]\n---\n");
    e = expect_error_at(text, &d, 5, 12, "not a valid capability name");
    assert_string_equal(e->field, "requires[0]");
    agentdef_diags_free(&d);
    free(text);
}

static void test_providers(void **state)
{
    (void)state;
    agentdef_diags d;
    agentdef_context two = {.providers = two_providers, .provider_count = 2};
    const agentdef_diag *e;

    assert_null(parse_ctx(MINIMAL "llm:\n  provider: opena\n---\n", &two, &d));
    e = find_diag(&d, "llm.provider", "unknown provider \"opena\"");
    assert_non_null(e);
    assert_int_equal(e->line, 6);
    assert_int_equal(e->column, 13);
    assert_string_equal(e->hint, "did you mean `openai`? (configured: openai, anthropic)");
    agentdef_diags_free(&d);

    assert_null(parse_ctx(MINIMAL "---\n", &two, &d));
    e = find_diag(&d, "llm.provider", "no provider chosen and 2 are configured");
    assert_non_null(e);
    assert_non_null(strstr(e->hint, "openai, anthropic"));
    agentdef_diags_free(&d);

    agent_def *def = parse_ctx(MINIMAL "llm: {provider: anthropic}\n---\n", &two, &d);
    assert_non_null(def);
    assert_string_equal(def->llm_provider, "anthropic");
    agentdef_free(def);
    agentdef_diags_free(&d);

    /* No providers configured: a warning, whatever the file says. */
    agentdef_context none = {0};
    def = parse_ctx(MINIMAL "llm: {provider: openai}\n---\n", &none, &d);
    assert_non_null(def);
    e = find_diag(&d, "llm.provider", "no LLM providers are configured (llm.providers)");
    assert_non_null(e);
    assert_int_equal(e->severity, AGENTDEF_WARNING);
    agentdef_free(def);
    agentdef_diags_free(&d);
    def = agentdef_parse("agent", MINIMAL "---\n", strlen(MINIMAL "---\n"), NULL, &d);
    assert_non_null(def);
    assert_null(def->llm_provider);
    assert_int_equal(d.warnings, 1);
    agentdef_free(def);
    agentdef_diags_free(&d);
}

/* "slow" is configured and starting; anything else is not configured. */
static agentdef_tool_server fake_tool_server(const char *server, size_t len, void *arg)
{
    (void)arg;
    return len == 4 && strncmp(server, "slow", 4) == 0 ? AGENTDEF_SERVER_NOT_READY
                                                       : AGENTDEF_SERVER_UNKNOWN;
}

static void test_tools(void **state)
{
    (void)state;
    static const char *const known[] = {"files.read_file", "files.write_file"};
    agentdef_context online = openai_ctx;
    online.tools = known;
    online.tool_count = 2;
    online.tools_checked = true;
    agentdef_diags d;
    const agentdef_diag *e;
    const char *text = MINIMAL "tools: [send_message, reply, memory_serch, files.read_fil, "
                               "files.read_file, \"bad tool\", github.create_issue]\n---\n";

    assert_null(parse_ctx(text, &online, &d));
    e = find_diag(&d, "tools[2]", "unknown built-in tool \"memory_serch\"");
    assert_non_null(e);
    assert_string_equal(e->hint, "did you mean `memory_search`?");
    assert_int_equal(e->line, 5);
    assert_int_equal(e->column, 30);
    e = find_diag(&d, "tools[3]", "unknown tool \"files.read_fil\"");
    assert_non_null(e);
    assert_int_equal(e->severity, AGENTDEF_ERROR);
    assert_string_equal(e->hint, "did you mean `files.read_file`?");
    assert_non_null(find_diag(&d, "tools[5]", "unknown built-in tool"));
    assert_non_null(find_diag(&d, "tools[6]", "its MCP server does not provide it"));
    assert_null(find_diag(&d, "tools[4]", ""));
    agentdef_diags_free(&d);

    /* With the live servers' states: an unconfigured server is an error, one
     * still starting only a warning. */
    agentdef_context live = online;
    live.tool_server = fake_tool_server;
    const char *live_text = MINIMAL "tools: [github.create_issue, slow.search]\n---\n";
    assert_null(parse_ctx(live_text, &live, &d));
    e = find_diag(&d, "tools[0]", "no MCP server named \"github\" is configured");
    assert_non_null(e);
    assert_int_equal(e->severity, AGENTDEF_ERROR);
    e = find_diag(&d, "tools[1]", "has not listed its tools");
    assert_non_null(e);
    assert_int_equal(e->severity, AGENTDEF_WARNING);
    agentdef_diags_free(&d);

    /* Offline: MCP tools that are not known are warnings. */
    agent_def *def = parse(MINIMAL "tools: [github.create_issue, memory_store]\n---\n", &d);
    assert_non_null(def);
    e = find_diag(&d, "tools[0]", "cannot check tool \"github.create_issue\" offline");
    assert_non_null(e);
    assert_int_equal(e->severity, AGENTDEF_WARNING);
    e = find_diag(&d, "tools[1]", "needs memory");
    assert_non_null(e);
    assert_int_equal(e->severity, AGENTDEF_WARNING);
    agentdef_free(def);
    agentdef_diags_free(&d);

    def = parse(MINIMAL "tools: [memory_store, memory_relate]\nmemory: {enabled: true}\n---\n", &d);
    assert_non_null(def);
    assert_int_equal(d.count, 0);
    agentdef_free(def);
    agentdef_diags_free(&d);

    expect_error_at(MINIMAL "tools: [.x, a., a.b.c]\n---\n", &d, 5, 9, "is not a tool name");
    assert_int_equal(d.errors, 3);
    agentdef_diags_free(&d);
}

static void test_template_variables(void **state)
{
    (void)state;
    agentdef_diags d;
    const char *text = MINIMAL "parameters:\n  tolerance: 0.01\n---\n"
                               "Name: {{ name }} {{agent_name}} {{version}} {{description}}\n"
                               "Caps: {{capabilities}}, tol {{parameters.tolerance}}\n"
                               "  ü {{ nmae }} and {{parameters.tolerence}}\n"
                               "{{memory_context}} {{ }} {{parameters.missing}}\n";
    assert_null(parse(text, &d));
    assert_int_equal(d.errors, 4);
    const agentdef_diag *e = find_diag(&d, "body", "unknown template variable \"nmae\"");
    assert_non_null(e);
    assert_int_equal(e->line, 10);
    assert_int_equal(e->column, 5); /* characters, not bytes */
    assert_string_equal(e->hint, "did you mean `{{name}}`?");
    e = find_diag(&d, "body", "\"parameters.tolerence\": no such key in parameters");
    assert_non_null(e);
    assert_int_equal(e->column, 20);
    assert_string_equal(e->hint, "did you mean `{{parameters.tolerance}}`?");
    e = find_diag(&d, "body", "empty template variable");
    assert_non_null(e);
    assert_int_equal(e->line, 11);
    assert_int_equal(e->column, 20);
    e = find_diag(&d, "body", "parameters.missing");
    assert_non_null(e);
    assert_string_equal(e->hint, "add `missing: VALUE` under parameters:");
    agentdef_diags_free(&d);

    /* A parameter written without its prefix. */
    assert_null(parse(MINIMAL "parameters: {tolerance: 1}\n---\n{{tolerance}}\n", &d));
    assert_string_equal(d.items[0].hint, "did you mean `{{parameters.tolerance}}`?");
    agentdef_diags_free(&d);

    /* An unclosed {{ is a warning, on its line only. */
    agent_def *def = parse(MINIMAL "---\nabc {{ name\n}} and {{version}}\n", &d);
    assert_non_null(def);
    assert_int_equal(d.count, 1);
    assert_int_equal(d.items[0].severity, AGENTDEF_WARNING);
    assert_int_equal(d.items[0].line, 6);
    assert_int_equal(d.items[0].column, 5);
    agentdef_free(def);
    agentdef_diags_free(&d);
}

/* ---- hostile input ------------------------------------------------------------------ */

static void test_megabyte_of_garbage(void **state)
{
    (void)state;
    size_t len = AGENTDEF_MAX_FILE;
    char *text = malloc(len + 1);
    assert_non_null(text);
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245 + 12345;
        text[i] = (char)(x >> 16);
    }
    agentdef_diags d;
    assert_null(agentdef_parse("agent", text, len, &openai_ctx, &d));
    assert_true(d.errors >= 1);
    agentdef_diags_free(&d);
    assert_null(agentdef_fix_suggestions("agent", text, len, &openai_ctx, NULL));

    /* Printable garbage inside a frontmatter: refused, quickly. */
    static const char alphabet[] = "ab: -[]{}\n#&*!|>\"',?";
    memcpy(text, "---\n", 4);
    for (size_t i = 4; i < len - 5; i++) {
        x = x * 1103515245 + 12345;
        text[i] = alphabet[(x >> 16) % (sizeof alphabet - 1)];
    }
    memcpy(text + len - 5, "\n---\n", 5);
    assert_null(agentdef_parse("agent", text, len, &openai_ctx, &d));
    assert_true(d.errors >= 1);
    assert_true(d.count <= AGENTDEF_MAX_DIAGS);
    agentdef_diags_free(&d);

    /* One byte over the limit is refused unread. */
    assert_null(agentdef_parse("agent", text, len + 1, &openai_ctx, &d));
    assert_int_equal(d.count, 1);
    assert_int_equal(d.items[0].line, 0);
    assert_non_null(strstr(d.items[0].message, "limited to 1048576 bytes"));
    agentdef_diags_free(&d);
    free(text);
}

static void test_binary_and_invalid_utf8(void **state)
{
    (void)state;
    agentdef_diags d;
    static const char bad_utf8[] = "---\nname: ab\xC3\x28" "c\nversion: 1.0.0\n---\n";
    assert_null(agentdef_parse("agent", bad_utf8, sizeof bad_utf8 - 1, &openai_ctx, &d));
    assert_int_equal(d.count, 1);
    assert_int_equal(d.items[0].line, 2);
    assert_int_equal(d.items[0].column, 9);
    assert_non_null(strstr(d.items[0].message, "not valid UTF-8 (byte 0xc3)"));
    agentdef_diags_free(&d);

    static const char with_nul[] = "---\nname: abc\0def\n---\n";
    assert_null(agentdef_parse("agent", with_nul, sizeof with_nul - 1, &openai_ctx, &d));
    assert_int_equal(d.count, 1);
    assert_int_equal(d.items[0].line, 2);
    assert_int_equal(d.items[0].column, 10);
    assert_non_null(strstr(d.items[0].message, "NUL byte"));
    agentdef_diags_free(&d);

    static const char control[] = "---\nname: a\x01\x02z\nversion: 1.0.0\n---\n";
    assert_null(agentdef_parse("agent", control, sizeof control - 1, &openai_ctx, &d));
    assert_int_equal(d.items[0].line, 2);
    assert_non_null(strstr(d.items[0].message, "YAML syntax error"));
    agentdef_diags_free(&d);

    /* Invalid UTF-8 in the body is refused too: the prompt goes into JSON. */
    static const char body[] = MINIMAL "---\nfine\n\xFF\n";
    assert_null(agentdef_parse("agent", body, sizeof body - 1, &openai_ctx, &d));
    assert_int_equal(d.items[0].line, 7);
    agentdef_diags_free(&d);
    assert_null(agentdef_parse("agent", NULL, 0, &openai_ctx, &d));
    agentdef_diags_free(&d);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    agentdef_diags d;
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appends(&sb, MINIMAL "parameters:\n");
    for (int i = 0; i < 40; i++)
        strbuf_appendf(&sb, "%*sk%d:\n", 2 * (i + 1), "", i);
    strbuf_appends(&sb, "---\n");
    assert_null(parse(sb.data, &d));
    assert_non_null(find_diag(&d, NULL, "nested more than 32 levels deep"));
    agentdef_diags_free(&d);
    strbuf_free(&sb);

    /* Brackets and one-line lists are refused before libyaml reads them. */
    strbuf_appends(&sb, MINIMAL "parameters: {x: ");
    for (int i = 0; i < 100000; i++)
        strbuf_append(&sb, "[", 1);
    strbuf_appends(&sb, "\n---\n");
    assert_null(parse(sb.data, &d));
    const agentdef_diag *e = find_diag(&d, NULL, "brackets are nested too deeply");
    assert_non_null(e);
    assert_int_equal(e->line, 5);
    assert_int_equal(d.count, 1);
    agentdef_diags_free(&d);
    strbuf_free(&sb);

    strbuf_appends(&sb, MINIMAL "parameters:\n  x:\n    ");
    for (int i = 0; i < 100000; i++)
        strbuf_append(&sb, "- ", 2);
    strbuf_appends(&sb, "1\n---\n");
    assert_null(parse(sb.data, &d));
    assert_non_null(find_diag(&d, NULL, "lists are nested too deeply"));
    agentdef_diags_free(&d);
    strbuf_free(&sb);

    /* An alias that contains itself. */
    assert_null(parse(MINIMAL "parameters: &a {x: *a}\n---\n", &d));
    assert_non_null(find_diag(&d, NULL, "nested more than 32 levels deep"));
    agentdef_diags_free(&d);
}

static void test_alias_bomb(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appends(&sb, MINIMAL "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (char c = 'b'; c <= 'i'; c++) {
        strbuf_appendf(&sb, "%c: &%c [", c, c);
        for (int i = 0; i < 9; i++)
            strbuf_appendf(&sb, "%s*%c", i ? ", " : "", c - 1);
        strbuf_appends(&sb, "]\n");
    }
    strbuf_appends(&sb, "parameters:\n  x: *i\n---\n");
    agentdef_diags d;
    uint64_t start = time_monotonic_ns();
    assert_null(parse(sb.data, &d));
    assert_true(time_monotonic_ns() - start < UINT64_C(2000000000));
    assert_non_null(find_diag(&d, NULL, "more than 10000 values"));
    assert_int_equal(d.warnings, 9); /* the unknown keys a..i, never expanded */
    agentdef_diags_free(&d);
    strbuf_free(&sb);

    /* Thousands of anchors are refused before libyaml resolves them. */
    strbuf_appends(&sb, MINIMAL "parameters:\n");
    for (int i = 0; i < 2000; i++)
        strbuf_appendf(&sb, "  k%d: &a%d 1\n", i, i);
    strbuf_appends(&sb, "---\n");
    assert_null(parse(sb.data, &d));
    assert_non_null(find_diag(&d, NULL, "too many anchors and aliases"));
    agentdef_diags_free(&d);
    strbuf_free(&sb);
}

static void test_many_problems_are_capped(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appends(&sb, MINIMAL);
    for (int i = 0; i < 300; i++)
        strbuf_appendf(&sb, "unknown%d: 1\n", i);
    strbuf_appends(&sb, "---\n");
    for (int i = 0; i < 5000; i++)
        strbuf_appends(&sb, "{{nope}} {{");
    agentdef_diags d;
    assert_null(parse(sb.data, &d));
    assert_int_equal(d.count, AGENTDEF_MAX_DIAGS);
    assert_true(d.truncated);
    assert_int_equal(d.warnings, 301); /* 300 keys and one unclosed {{ (the rest are skipped) */
    assert_int_equal(d.errors, 5000);
    char *out;
    assert_int_equal(agentdef_diags_format(&d, "a.md", &out), 0);
    assert_non_null(strstr(out, "more problems were found than the 200 shown"));
    free(out);
    agentdef_diags_free(&d);
    strbuf_free(&sb);
}

/* ---- ordering and output -------------------------------------------------------- */

static void test_diagnostics_order(void **state)
{
    (void)state;
    agentdef_diags d;
    assert_null(parse("---\nllm: {temperature: 9}\ninstances: 0\ncapabilities: [Bad]\n"
                      "name: my-agent\n---\n{{oops}}\n", &d));
    /* Required fields, then types by position, then cross-references, then
     * templates. */
    assert_int_equal(d.count, 5);
    assert_string_equal(d.items[0].field, "version");
    assert_string_equal(d.items[1].field, "llm.temperature");
    assert_string_equal(d.items[2].field, "instances");
    assert_string_equal(d.items[3].field, "capabilities[0]");
    assert_string_equal(d.items[4].field, "body");
    agentdef_diags_free(&d);
}

static void test_diags_format_and_json(void **state)
{
    (void)state;
    agentdef_diags d = {0};
    agentdef_diag_add(&d, AGENTDEF_ERROR, 3, 7, "llm.temperature", "use a number from 0 to 2",
                      "expected a number from 0 to 2, got %s", "\"hot\"");
    agentdef_diag_add(&d, AGENTDEF_WARNING, 0, 0, NULL, NULL, "name %s is taken", "x");
    agentdef_diag_add(&d, AGENTDEF_ERROR, 1, 1, "", NULL, "cannot read");
    assert_int_equal(d.errors, 2);
    assert_int_equal(d.warnings, 1);
    char *out;
    assert_int_equal(agentdef_diags_format(&d, "a.md", &out), 0);
    assert_string_equal(out, "a.md:3:7: error: llm.temperature: expected a number from 0 to 2, "
                             "got \"hot\"\n  hint: use a number from 0 to 2\n"
                             "a.md: warning: name x is taken\n"
                             "a.md:1:1: error: cannot read\n");
    free(out);
    json_t *j = agentdef_diags_json(&d);
    assert_int_equal(json_array_size(j), 3);
    json_t *first = json_array_get(j, 0);
    assert_string_equal(json_string_value(json_object_get(first, "severity")), "error");
    assert_int_equal(json_integer_value(json_object_get(first, "line")), 3);
    assert_int_equal(json_integer_value(json_object_get(first, "column")), 7);
    assert_string_equal(json_string_value(json_object_get(first, "field")), "llm.temperature");
    assert_string_equal(json_string_value(json_object_get(first, "hint")),
                        "use a number from 0 to 2");
    assert_true(json_is_null(json_object_get(json_array_get(j, 1), "hint")));
    json_decref(j);
    agentdef_diags_free(&d);

    assert_int_equal(agentdef_diags_format(&d, "a.md", &out), 0);
    assert_string_equal(out, "");
    free(out);
}

static void test_file_name_mismatch(void **state)
{
    (void)state;
    agentdef_diags d;
    const char *text = MINIMAL "---\n";
    agent_def *def = agentdef_parse("/srv/agents/other.md", text, strlen(text), &openai_ctx, &d);
    assert_non_null(def);
    const agentdef_diag *w = find_diag(&d, "name", "the file is other.md");
    assert_non_null(w);
    assert_int_equal(w->severity, AGENTDEF_WARNING);
    agentdef_free(def);
    agentdef_diags_free(&d);
    def = agentdef_parse("agents/my-agent.md", text, strlen(text), &openai_ctx, &d);
    assert_non_null(def);
    assert_int_equal(d.count, 0);
    agentdef_free(def);
    agentdef_diags_free(&d);
}

static void test_to_json(void **state)
{
    (void)state;
    agentdef_diags d;
    agent_def *def = parse(full_llm, &d);
    assert_non_null(def);
    json_t *j = agentdef_to_json(def);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "invoice-checker");
    assert_string_equal(json_string_value(json_object_get(j, "runtime")), "llm");
    assert_int_equal(json_array_size(json_object_get(j, "capabilities")), 2);
    json_t *llm = json_object_get(j, "llm");
    assert_string_equal(json_string_value(json_object_get(llm, "provider")), "openai");
    assert_int_equal(json_integer_value(json_object_get(llm, "max_tokens")), 1024);
    json_t *memory = json_object_get(j, "memory");
    assert_string_equal(json_string_value(json_object_get(memory, "scope")), "agent");
    assert_string_equal(json_string_value(json_object_get(memory, "retention")), "90d");
    assert_int_equal(json_integer_value(json_object_get(memory, "retention_ms")), 7776000000);
    json_t *conv = json_object_get(j, "conversation");
    assert_string_equal(json_string_value(json_object_get(conv, "timeout")), "45m");
    assert_int_equal(json_integer_value(json_object_get(conv, "timeout_ms")), 2700000);
    json_t *limits = json_object_get(j, "limits");
    assert_string_equal(json_string_value(json_object_get(limits, "max_execution_time")), "90s");
    assert_string_equal(json_string_value(json_object_get(limits, "token_budget")),
                        "200000/day");
    assert_true(json_is_null(json_object_get(j, "module")));
    assert_true(json_is_null(json_object_get(json_object_get(j, "wasm_limits"), "memory")));
    assert_int_equal(json_integer_value(json_object_get(j, "instances")), 3);
    assert_true(json_equal(json_object_get(j, "parameters"), def->parameters));
    assert_string_equal(json_string_value(json_object_get(j, "prompt")), def->body);
    json_decref(j);
    agentdef_free(def);
    agentdef_diags_free(&d);

    def = parse("---\nname: wasm-calc\nversion: 1.0.0\nruntime: wasm\ncapabilities: [x]\n"
                "module: calc.wasm\nwasm_limits: {memory: 10MB, timeout: 1500ms}\n---\n", &d);
    assert_non_null(def);
    j = agentdef_to_json(def);
    json_t *wl = json_object_get(j, "wasm_limits");
    assert_string_equal(json_string_value(json_object_get(wl, "memory")), "10MB");
    assert_int_equal(json_integer_value(json_object_get(wl, "memory_bytes")), 10485760);
    assert_string_equal(json_string_value(json_object_get(wl, "timeout")), "1500ms");
    assert_true(json_is_null(json_object_get(wl, "fuel")));
    assert_true(json_is_null(json_object_get(json_object_get(j, "llm"), "provider")));
    assert_string_equal(json_string_value(json_object_get(j, "runtime")), "wasm");
    json_decref(j);
    agentdef_free(def);
    agentdef_diags_free(&d);
    assert_null(agentdef_to_json(NULL));
}

static void test_render_prompt(void **state)
{
    (void)state;
    agentdef_diags d;
    agent_def *def = parse("---\nname: my-agent\nversion: 1.0.0\ndescription: Sums things\n"
                           "capabilities: [summarization, tagging]\n"
                           "parameters: {tol: 0.01, n: 3, on: true, text: \"x y\", list: [1, a],"
                           " none: null}\n---\n"
                           "{{name}}/{{ agent_name }} {{version}}: {{description}}\n"
                           "caps={{capabilities}} tol={{parameters.tol}} n={{parameters.n}}"
                           " on={{parameters.on}} text={{parameters.text}}"
                           " list={{parameters.list}} none=[{{parameters.none}}]\n"
                           "{{memory_context}}|{{ unclosed\n", &d);
    assert_non_null(def);
    char *prompt = agentdef_render_prompt(def, "MEMORY");
    assert_string_equal(prompt, "my-agent/my-agent 1.0.0: Sums things\n"
                                "caps=summarization, tagging tol=0.01 n=3 on=true text=x y"
                                " list=[1,\"a\"] none=[]\n"
                                "MEMORY|{{ unclosed\n");
    free(prompt);
    prompt = agentdef_render_prompt(def, NULL);
    assert_non_null(strstr(prompt, "\n|{{ unclosed"));
    free(prompt);
    agentdef_free(def);
    agentdef_diags_free(&d);

    /* A definition built by hand: a missing parameter becomes "", an unknown
     * name is left as written. */
    agent_def manual = {.name = "x", .body = "[{{parameters.gone}}] {{other}} {{name}}",
                        .parameters = json_object()};
    prompt = agentdef_render_prompt(&manual, NULL);
    assert_string_equal(prompt, "[] {{other}} x");
    free(prompt);
    json_decref(manual.parameters);
}

/* ---- fix suggestions ------------------------------------------------------------------ */

static void assert_fix_parses(const char *fixed)
{
    agentdef_diags d;
    agent_def *def = parse(fixed, &d);
    assert_non_null(def);
    assert_int_equal(d.errors, 0);
    agentdef_free(def);
    agentdef_diags_free(&d);
}

static void test_fix_suggestions(void **state)
{
    (void)state;
    const char *text = "---\nname: My_Agent\nversion: 1.0.0\ncapabilites: [summarization]\n"
                       "llm:\n\tprovider: openai\n\ttemperature: 3\n\tmodle: gpt-4o\n"
                       "instances: 100\n\nHi {{name}}\n";
    char *fixed = agentdef_fix_suggestions("agent", text, strlen(text), &openai_ctx, NULL);
    assert_non_null(fixed);
    assert_string_equal(fixed, "---\nname: my-agent\nversion: 1.0.0\n"
                               "capabilities: [summarization]\nllm:\n  provider: openai\n"
                               "  temperature: 2\n  model: gpt-4o\ninstances: 64\n---\n"
                               "\nHi {{name}}\n");
    assert_fix_parses(fixed);
    free(fixed);

    /* A misspelled key alone (a warning) is renamed too. */
    text = MINIMAL "descriptin: x\n---\n";
    fixed = agentdef_fix_suggestions("agent", text, strlen(text), &openai_ctx, NULL);
    assert_non_null(fixed);
    assert_non_null(strstr(fixed, "\ndescription: x\n"));
    assert_fix_parses(fixed);
    free(fixed);

    /* Nothing to fix, or something only a person can fix: NULL. */
    text = MINIMAL "---\n";
    assert_null(agentdef_fix_suggestions("agent", text, strlen(text), &openai_ctx, NULL));
    text = "---\nname: My_Agent\nversion: 1.2\ncapabilities: [x]\n---\n";
    assert_null(agentdef_fix_suggestions("agent", text, strlen(text), &openai_ctx, NULL));
    text = MINIMAL "llm: {provider: azure}\n---\n";
    assert_null(agentdef_fix_suggestions("agent", text, strlen(text), &openai_ctx, NULL));
    text = MINIMAL "---\n{{unknown}}\n";
    assert_null(agentdef_fix_suggestions("agent", text, strlen(text), &openai_ctx, NULL));
    /* A rename that would collide with an existing key is not offered. */
    text = MINIMAL "descriptin: x\ndescription: y\n---\n";
    assert_null(agentdef_fix_suggestions("agent", text, strlen(text), &openai_ctx, NULL));
    assert_null(agentdef_fix_suggestions("agent", NULL, 0, &openai_ctx, NULL));
    static const char with_nul[] = "---\nname: a\0\n---\n";
    assert_null(agentdef_fix_suggestions("agent", with_nul, sizeof with_nul - 1, &openai_ctx, NULL));
}

static void test_fix_closing_marker(void **state)
{
    (void)state;
    const char *text = MINIMAL "llm:\n  provider: openai\n# done\n\n\nYou summarize.\nNote: "
                               "keep it short.\n";
    char *fixed = agentdef_fix_suggestions("agent", text, strlen(text), &openai_ctx, NULL);
    assert_non_null(fixed);
    assert_string_equal(fixed, MINIMAL "llm:\n  provider: openai\n# done\n---\n\n\n"
                                       "You summarize.\nNote: keep it short.\n");
    free(fixed);
    text = MINIMAL "instances: 99";
    fixed = agentdef_fix_suggestions("agent", text, strlen(text), &openai_ctx, NULL);
    assert_non_null(fixed);
    assert_string_equal(fixed, MINIMAL "instances: 64\n---\n");
    free(fixed);
}

/* ---- the shipped examples --------------------------------------------------------- */

static void test_examples_validate(void **state)
{
    (void)state;
    /* This file is <root>/tests/unit/test_agentdef.c. */
    char root[4096];
    snprintf(root, sizeof root, "%s", __FILE__);
    char *cut = strstr(root, "tests/unit/test_agentdef.c");
    assert_non_null(cut);
    snprintf(cut, sizeof root - (size_t)(cut - root), "examples/agents");
    DIR *dir = opendir(root);
    assert_non_null(dir);
    int checked = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".md") != 0)
            continue;
        char *path = path_join(root, e->d_name), *text;
        size_t len;
        cx_error err;
        assert_int_equal(fs_read_file(path, AGENTDEF_MAX_FILE, &text, &len, &err), 0);
        agentdef_diags d;
        agent_def *def = agentdef_parse(path, text, len, &openai_ctx, &d);
        if (d.count) {
            char *out;
            agentdef_diags_format(&d, path, &out);
            fprintf(stderr, "%s", out);
            free(out);
        }
        assert_non_null(def);
        assert_int_equal(d.errors, 0);
        assert_int_equal(d.warnings, 0);
        char *prompt = agentdef_render_prompt(def, "");
        assert_null(strstr(prompt, "{{"));
        free(prompt);
        agentdef_free(def);
        agentdef_diags_free(&d);
        free(text);
        free(path);
        checked++;
    }
    closedir(dir);
    assert_true(checked >= 3);
}

/* A fix that leaves errors a person must fix is offered only when asked. */
static void test_fix_suggestions_partial(void **state)
{
    (void)state;
    const char *text = "---\nname: Partial_Agent\nversion: 1.2\ncapabilities: [x-y]\n"
                       "llm:\n\tprovider: openai\n---\nHi\n";
    assert_null(agentdef_fix_suggestions("agent", text, strlen(text), &openai_ctx, NULL));
    size_t remaining = 0;
    char *fixed = agentdef_fix_suggestions("agent", text, strlen(text), &openai_ctx, &remaining);
    assert_non_null(fixed);
    assert_int_equal(remaining, 1); /* version 1.2 is not semver: not mechanical */
    assert_null(strchr(fixed, '\t'));
    assert_non_null(strstr(fixed, "name: partial-agent"));
    free(fixed);
    remaining = 99;
    const char *clean = "---\nname: fine-agent\nversion: 1.0.0\ncapabilities: [x-y]\n"
                        "llm:\n  provider: openai\n---\nHi\n";
    assert_null(agentdef_fix_suggestions("agent", clean, strlen(clean), &openai_ctx, &remaining));
    assert_int_equal(remaining, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fix_suggestions_partial),
        cmocka_unit_test(test_full_valid_file),
        cmocka_unit_test(test_minimal_file_gets_defaults),
        cmocka_unit_test(test_wasm_agent),
        cmocka_unit_test(test_wasm_needs_module_and_llm_ignores_it),
        cmocka_unit_test(test_missing_frontmatter),
        cmocka_unit_test(test_unclosed_frontmatter),
        cmocka_unit_test(test_empty_file_and_only_marker),
        cmocka_unit_test(test_tabs_in_indentation),
        cmocka_unit_test(test_yaml_syntax_errors),
        cmocka_unit_test(test_frontmatter_shape),
        cmocka_unit_test(test_crlf_and_bom),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_values_accepted),
        cmocka_unit_test(test_unknown_keys_suggest),
        cmocka_unit_test(test_misspelled_required_key),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_capabilities),
        cmocka_unit_test(test_providers),
        cmocka_unit_test(test_tools),
        cmocka_unit_test(test_template_variables),
        cmocka_unit_test(test_megabyte_of_garbage),
        cmocka_unit_test(test_binary_and_invalid_utf8),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_alias_bomb),
        cmocka_unit_test(test_many_problems_are_capped),
        cmocka_unit_test(test_diagnostics_order),
        cmocka_unit_test(test_diags_format_and_json),
        cmocka_unit_test(test_file_name_mismatch),
        cmocka_unit_test(test_to_json),
        cmocka_unit_test(test_render_prompt),
        cmocka_unit_test(test_fix_suggestions),
        cmocka_unit_test(test_fix_closing_marker),
        cmocka_unit_test(test_examples_validate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
