/* Unit tests for the pure parts of the LLM client: Retry-After, backoff,
 * provider settings (types, fallback lists), and the request and answer
 * formats of each protocol (OpenAI, Anthropic, Ollama) with tools, tool
 * calls, tool results, usage and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "llm/llm.h"
#include "llm/llm_internal.h"

#define SECRET "sk-SECRET-0123456789abcdef"

/* ---- Retry-After ----------------------------------------------------------------------------- */

static void test_retry_after_seconds(void **state)
{
    (void)state;
    assert_int_equal(llm_parse_retry_after("2", 0), 2000);
    assert_int_equal(llm_parse_retry_after("0", 0), 0);
    assert_int_equal(llm_parse_retry_after(" 5 ", 0), 5000);
    assert_int_equal(llm_parse_retry_after("7\r\n", 0), 7000);
    assert_int_equal(llm_parse_retry_after("007", 0), 7000);
    assert_int_equal(llm_parse_retry_after("60", 0), 60000);
    assert_int_equal(llm_parse_retry_after("61", 0), LLM_RETRY_AFTER_MAX_MS);
    assert_int_equal(llm_parse_retry_after("86400", 0), LLM_RETRY_AFTER_MAX_MS);
    assert_int_equal(llm_parse_retry_after("99999999999999999999999999999", 0),
                     LLM_RETRY_AFTER_MAX_MS);
}

static void test_retry_after_dates(void **state)
{
    (void)state;
    const int64_t when = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    assert_int_equal(llm_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", when - 10), 10000);
    assert_int_equal(llm_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", when - 3), 3000);
    assert_int_equal(llm_parse_retry_after("Sun Nov  6 08:49:37 1994", when - 1), 1000);
    /* In the past: retry at once. */
    assert_int_equal(llm_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", when + 100), 0);
    /* Far ahead: capped. */
    assert_int_equal(llm_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", when - 86400),
                     LLM_RETRY_AFTER_MAX_MS);
    assert_int_equal(llm_parse_retry_after("Fri, 31 Dec 2100 23:59:59 GMT", when),
                     LLM_RETRY_AFTER_MAX_MS);
}

static void test_retry_after_garbage(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "   ", "garbage", "-1", "-5", "+5", "1.5", "1e3", "0x10", "5 s", "soon",
        "Sun, 06 Nov", "12:00", "-Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t got = llm_parse_retry_after(bad[i], 784111777);
        if (got != -1)
            fail_msg("\"%s\" parsed as %lld", bad[i], (long long)got);
    }
    assert_int_equal(llm_parse_retry_after(NULL, 0), -1);
}

/* ---- Backoff --------------------------------------------------------------------------------- */

static void test_backoff_growth_and_cap(void **state)
{
    (void)state;
    /* With random just under 1 the result is just under the ceiling. */
    static const struct {
        unsigned attempt;
        uint64_t ceiling;
    } cases[] = {{0, 250}, {1, 250}, {2, 500}, {3, 1000}, {4, 2000}, {5, 4000},
                 {6, 8000}, {7, 8000}, {20, 8000}, {64, 8000}, {4000000000u, 8000}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint64_t ms = llm_backoff_ms(cases[i].attempt, 0.9999999);
        assert_true(ms < cases[i].ceiling);
        assert_true(ms >= cases[i].ceiling * 99 / 100);
        assert_int_equal(llm_backoff_ms(cases[i].attempt, 0.5), cases[i].ceiling / 2);
    }
}

static void test_backoff_jitter_bounds(void **state)
{
    (void)state;
    for (unsigned attempt = 1; attempt <= 8; attempt++) {
        uint64_t ceiling = attempt >= 6 ? LLM_BACKOFF_MAX_MS : LLM_BACKOFF_BASE_MS << (attempt - 1);
        for (int i = 0; i < 1000; i++) {
            double r = i / 1000.0;
            uint64_t ms = llm_backoff_ms(attempt, r);
            assert_true(ms < ceiling);
            assert_true(ms <= (uint64_t)(r * (double)ceiling));
        }
    }
    assert_int_equal(llm_backoff_ms(3, 0.0), 0);
    assert_int_equal(llm_backoff_ms(3, -1.0), 0);
    assert_int_equal(llm_backoff_ms(3, NAN), 0);
    assert_int_equal(llm_backoff_ms(3, 1.0), 999);
    assert_int_equal(llm_backoff_ms(3, 1e300), 999);
    assert_int_equal(llm_backoff_ms(3, INFINITY), 999);
}

/* ---- Provider settings ----------------------------------------------------------------------- */

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);
    if (!v)
        fail_msg("bad test JSON: %s: %s", text, jerr.text);
    return v;
}

/* Checks a config given as JSON text; returns the errors joined by '\n'. */
static char *check_text(const char *text, size_t *count)
{
    json_t *cfg = parse(text);
    json_t *errors = NULL;
    *count = llm_providers_check(cfg, &errors);
    assert_non_null(errors);
    assert_true(json_array_size(errors) >= (*count < 100 ? *count : 100));
    size_t size = 1;
    for (size_t i = 0; i < json_array_size(errors); i++)
        size += strlen(json_string_value(json_array_get(errors, i))) + 1;
    char *all = calloc(1, size);
    assert_non_null(all);
    for (size_t i = 0; i < json_array_size(errors); i++) {
        strcat(all, json_string_value(json_array_get(errors, i)));
        strcat(all, "\n");
    }
    json_decref(errors);
    json_decref(cfg);
    return all;
}

static void expect_one_error(const char *config, const char *fragment)
{
    size_t n = 0;
    char *all = check_text(config, &n);
    if (n != 1 || !strstr(all, fragment))
        fail_msg("config %s\nexpected one error with '%s', got %zu:\n%s", config, fragment, n,
                 all);
    if (strstr(all, "SECRET"))
        fail_msg("the key leaked into: %s", all);
    free(all);
}

static void test_providers_valid(void **state)
{
    (void)state;
    static const char *const good[] = {
        "{}",
        "{\"openai\": {}}",
        "{\"openai\": null}",
        "{\"openai\": {\"api_key\": \"" SECRET "\", \"model\": \"gpt-4o-mini\", \"timeout\": "
        "\"30s\", \"retries\": \"3\", \"max_concurrency\": \"16\"}}",
        "{\"local\": {\"type\": \"openai\", \"base_url\": \"http://127.0.0.1:8080/v1/\", "
        "\"timeout\": 5, \"retries\": 0, \"max_concurrency\": 1024, \"api_key\": \"\"}}",
        "{\"vllm\": {\"type\": \"openai\", \"base_url\": \"https://[::1]:8000/v1\", \"timeout\": "
        "\"10m\", \"retries\": 10, \"max_concurrency\": 1.0}, \"a.b_c-1\": {\"type\": "
        "\"openai\", \"timeout\": 1.5}}",
        "{\"anthropic\": {}, \"ollama\": null}",
        "{\"claude\": {\"type\": \"anthropic\", \"api_key\": \"" SECRET "\", \"model\": "
        "\"claude-sonnet-4-5\"}, \"local\": {\"type\": \"ollama\", \"model\": \"llama3.1\"}}",
        /* chains: a -> b -> c, d -> [c, b], and an empty list */
        "{\"a\": {\"type\": \"openai\", \"fallback\": [\"b\"]}, \"b\": {\"type\": "
        "\"anthropic\", \"model\": \"m\", \"fallback\": [\"c\"]}, \"c\": {\"type\": \"ollama\", "
        "\"model\": \"m\", \"fallback\": []}, \"d\": {\"type\": \"openai\", \"fallback\": "
        "[\"c\", \"b\"]}}",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        size_t n = 0;
        char *all = check_text(good[i], &n);
        if (n != 0)
            fail_msg("config %s: %s", good[i], all);
        free(all);
    }
    assert_int_equal(llm_providers_check(NULL, NULL), 1);
}

static void test_providers_bad_fields(void **state)
{
    (void)state;
    static const struct {
        const char *config;
        const char *fragment;
    } cases[] = {
        {"[]", "llm.providers: expected a mapping of provider names to settings, got a list"},
        {"{\"openai\": \"x\"}", "llm.providers.openai: expected a mapping of settings"},
        {"{\"openai\": {\"timeout\": \"soon\"}}",
         "llm.providers.openai.timeout: expected a duration such as 30s, got \"soon\""},
        {"{\"openai\": {\"timeout\": \"500ms\"}}", "timeout: must be from 1s to 10m"},
        {"{\"openai\": {\"timeout\": \"11m\"}}", "timeout: must be from 1s to 10m"},
        {"{\"openai\": {\"timeout\": 0}}", "timeout: must be from 1s to 10m"},
        {"{\"openai\": {\"timeout\": true}}", "timeout: expected a duration such as 30s, got true"},
        {"{\"openai\": {\"timeout\": -5}}", "timeout: expected a duration"},
        {"{\"openai\": {\"retries\": \"11\"}}",
         "llm.providers.openai.retries: expected a whole number from 0 to 10, got \"11\""},
        {"{\"openai\": {\"retries\": -1}}",
         "retries: expected a whole number from 0 to 10, got -1"},
        {"{\"openai\": {\"retries\": 2.5}}", "retries: expected a whole number"},
        {"{\"openai\": {\"retries\": \"3x\"}}", "retries: expected a whole number"},
        {"{\"openai\": {\"retries\": [3]}}", "got a list"},
        {"{\"openai\": {\"max_concurrency\": 0}}",
         "max_concurrency: expected a whole number from 1 to 1024, got 0"},
        {"{\"openai\": {\"max_concurrency\": \"1025\"}}", "from 1 to 1024"},
        {"{\"openai\": {\"max_concurrency\": \"99999999999999999999\"}}", "from 1 to 1024"},
        {"{\"x\": {\"type\": \"opnai\"}}",
         "llm.providers.x.type: expected openai, anthropic or ollama, got \"opnai\"; did you "
         "mean 'openai'?"},
        {"{\"x\": {\"type\": 5}}", "type: expected openai, anthropic or ollama, got 5"},
        {"{\"local\": {\"model\": \"m\"}}", "llm.providers.local.type: missing"},
        {"{\"claude\": {\"type\": \"anthropik\"}}",
         "llm.providers.claude.type: expected openai, anthropic or ollama, got \"anthropik\"; "
         "did you mean 'anthropic'?"},
        {"{\"local\": {}}", "llm.providers.local.type: missing; add `type: openai`"},
        {"{\"o\": {\"type\": \"ollama\", \"base_url\": \"ftp://h\"}}",
         "llm.providers.o.base_url: \"ftp://h\" must start with http:// or https://; expected a "
         "URL such as http://localhost:11434"},
        {"{\"c\": {\"type\": \"anthropic\", \"base_url\": 1}}",
         "expected a URL such as https://api.anthropic.com"},
        {"{\"openai\": {\"base_url\": \"ftp://example.com/v1\"}}",
         "base_url: \"ftp://example.com/v1\" must start with http:// or https://"},
        {"{\"openai\": {\"base_url\": \"example.com/v1\"}}", "is not a URL"},
        {"{\"openai\": {\"base_url\": \"http://\"}}", "base_url: \"http://\" "},
        {"{\"openai\": {\"base_url\": \"http://a b/v1\"}}", "contains spaces"},
        {"{\"openai\": {\"base_url\": \"http://h/v1?x=1\"}}", "must not have a ?query"},
        {"{\"openai\": {\"base_url\": 42}}", "base_url: 42 is not a string"},
        {"{\"openai\": {\"base_url\": \"https://u:" SECRET "@h/v1\"}}",
         "base_url: must not contain a user name or password"},
        {"{\"openai\": {\"api_key\": 123}}", "api_key: expected a string"},
        {"{\"openai\": {\"api_key\": \"" SECRET "\\n\"}}",
         "api_key: contains spaces, control characters or non-ASCII bytes"},
        {"{\"openai\": {\"model\": \"\"}}", "model: expected a model name"},
        {"{\"openai\": {\"model\": {}}}", "model: expected a model name such as gpt-4o-mini (1 to "
                                          "256 printable characters), got a mapping"},
        {"{\"openai\": {\"timout\": \"30s\"}}",
         "llm.providers.openai: unknown setting \"timout\"; did you mean 'timeout'?"},
        {"{\"openai\": {\"api_kye\": \"" SECRET "\"}}",
         "unknown setting \"api_kye\"; did you mean 'api_key'?"},
        {"{\"openai\": {\"zzzzzzzz\": 1}}", "unknown setting \"zzzzzzzz\" (known: type"},
        {"{\"bad name!\": {}}", "llm.providers: provider name \"bad name!\" must be"},
        {"{\"\": {}}", "provider name \"\" must be"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_one_error(cases[i].config, cases[i].fragment);
}

static void test_providers_collects_every_problem(void **state)
{
    (void)state;
    size_t n = 0;
    char *all = check_text("{\"openai\": {\"api_key\": \"" SECRET "\", \"timeout\": \"x\", "
                           "\"retries\": \"y\", \"max_concurrency\": \"z\"}, \"claude\": "
                           "{\"type\": \"anthropic\", \"api_key\": \"" SECRET "\", "
                           "\"fallback\": [\"nowhere\"]}}",
                           &n);
    assert_int_equal(n, 4);
    assert_non_null(strstr(all, ".timeout:"));
    assert_non_null(strstr(all, ".retries:"));
    assert_non_null(strstr(all, ".max_concurrency:"));
    assert_non_null(strstr(all, "claude.fallback: no provider named \"nowhere\""));
    assert_null(strstr(all, "SECRET"));
    free(all);

    /* Too many providers is one problem, not one per provider. */
    json_t *many = json_object();
    for (int i = 0; i < LLM_PROVIDERS_MAX + 1; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        json_object_set_new(many, name, json_pack("{s:s}", "type", "openai"));
    }
    json_t *errors = NULL;
    assert_int_equal(llm_providers_check(many, &errors), 1);
    assert_non_null(strstr(json_string_value(json_array_get(errors, 0)), "more than the 64"));
    json_decref(errors);
    json_decref(many);

    /* Many bad settings: the list is capped but the count is exact. */
    json_t *bad = json_object();
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        json_object_set_new(bad, name, json_pack("{s:s, s:s, s:s, s:s}", "type", "openai",
                                                 "timeout", "x", "retries", "x",
                                                 "max_concurrency", "x"));
    }
    assert_int_equal(llm_providers_check(bad, &errors), 120);
    assert_int_equal(json_array_size(errors), 101);
    assert_non_null(strstr(json_string_value(json_array_get(errors, 100)), "more problems"));
    json_decref(errors);
    json_decref(bad);
}

static void test_settings_build(void **state)
{
    (void)state;
    json_t *cfg = parse("{\"openai\": {\"api_key\": \"" SECRET "\"}, \"local\": {\"type\": "
                        "\"openai\", \"base_url\": \"http://127.0.0.1:9/v1//\", \"model\": \"m\", "
                        "\"timeout\": \"2s\", \"retries\": \"0\", \"max_concurrency\": 3}}");
    llm_settings **list = NULL;
    size_t n = 0;
    cx_error err = {0};
    assert_int_equal(llm_settings_build(cfg, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0]->name, "openai");
    assert_string_equal(list[0]->url, "https://api.openai.com/v1/chat/completions");
    assert_string_equal(list[0]->api_key, SECRET);
    assert_null(list[0]->model);
    assert_int_equal(list[0]->timeout_ms, 30000);
    assert_int_equal(list[0]->retries, 3);
    assert_int_equal(list[0]->max_concurrency, 16);
    assert_string_equal(list[1]->base_url, "http://127.0.0.1:9/v1");
    assert_string_equal(list[1]->url, "http://127.0.0.1:9/v1/chat/completions");
    assert_null(list[1]->api_key);
    assert_string_equal(list[1]->model, "m");
    assert_int_equal(list[1]->timeout_ms, 2000);
    assert_int_equal(list[1]->retries, 0);
    assert_int_equal(list[1]->max_concurrency, 3);
    llm_settings_release_all(list, n);
    json_decref(cfg);

    /* Each type with its path and default base URL; fallback names copied. */
    cfg = parse("{\"anthropic\": {\"fallback\": [\"local\", \"openai\"]}, \"local\": "
                "{\"type\": \"ollama\", \"model\": \"llama3.1\"}, \"openai\": {\"model\": "
                "\"m\", \"base_url\": \"http://h:1/v1/\"}, \"c2\": {\"type\": \"anthropic\", "
                "\"base_url\": \"https://gw.example/anthropic/\"}}");
    assert_int_equal(llm_settings_build(cfg, &list, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(list[0]->type, "anthropic");
    assert_ptr_equal(list[0]->protocol, &llm_protocol_anthropic);
    assert_string_equal(list[0]->url, "https://api.anthropic.com/v1/messages");
    assert_int_equal(list[0]->fallback_count, 2);
    assert_string_equal(list[0]->fallback[0], "local");
    assert_string_equal(list[0]->fallback[1], "openai");
    assert_string_equal(list[1]->type, "ollama");
    assert_string_equal(list[1]->url, "http://localhost:11434/api/chat");
    assert_int_equal(list[1]->fallback_count, 0);
    assert_null(list[1]->fallback);
    assert_string_equal(list[2]->url, "http://h:1/v1/chat/completions");
    assert_string_equal(list[3]->url, "https://gw.example/anthropic/v1/messages");
    llm_settings_release_all(list, n);
    json_decref(cfg);

    cfg = parse("{\"openai\": {\"api_key\": \"" SECRET "\", \"retries\": 99}}");
    assert_int_equal(llm_settings_build(cfg, &list, &n, &err), CX_ECONFIG);
    assert_null(list);
    assert_non_null(strstr(err.msg, "llm.providers.openai.retries"));
    assert_null(strstr(err.msg, "SECRET"));
    json_decref(cfg);
}

/* ---- The request ----------------------------------------------------------------------------- */

static void test_request_json(void **state)
{
    (void)state;
    llm_message msgs[] = {{.role = LLM_ROLE_SYSTEM, .content = "be brief"},
                          {.role = LLM_ROLE_USER, .content = "h\xc3\xa9llo \"quoted\""},
                          {.role = LLM_ROLE_ASSISTANT, .content = "hi"}};
    llm_request req = {.provider = "openai", .messages = msgs, .message_count = 3};
    json_t *body = llm_openai_request_json(&req, "gpt-4o-mini");
    assert_non_null(body);
    assert_string_equal(json_string_value(json_object_get(body, "model")), "gpt-4o-mini");
    assert_null(json_object_get(body, "temperature"));
    assert_null(json_object_get(body, "max_tokens"));
    json_t *list = json_object_get(body, "messages");
    assert_int_equal(json_array_size(list), 3);
    static const char *const roles[] = {"system", "user", "assistant"};
    for (size_t i = 0; i < 3; i++) {
        json_t *m = json_array_get(list, i);
        assert_int_equal(json_object_size(m), 2);
        assert_string_equal(json_string_value(json_object_get(m, "role")), roles[i]);
        assert_string_equal(json_string_value(json_object_get(m, "content")), msgs[i].content);
    }
    json_decref(body);

    req.temperature_set = true;
    req.temperature = 0.0;
    req.max_tokens = 256;
    body = llm_openai_request_json(&req, "m");
    assert_true(json_is_number(json_object_get(body, "temperature")));
    assert_true(json_number_value(json_object_get(body, "temperature")) == 0.0);
    assert_int_equal(json_integer_value(json_object_get(body, "max_tokens")), 256);
    json_decref(body);

    req.max_tokens = -5; /* not sent */
    req.temperature = 0.7;
    body = llm_openai_request_json(&req, "m");
    assert_null(json_object_get(body, "max_tokens"));
    assert_true(fabs(json_real_value(json_object_get(body, "temperature")) - 0.7) < 1e-9);
    json_decref(body);

    /* Refused: no model, an unknown role, text that is not UTF-8. */
    assert_null(llm_openai_request_json(&req, NULL));
    llm_message odd[] = {{.role = (llm_role)99, .content = "x"}};
    llm_request bad = {.messages = odd, .message_count = 1};
    assert_null(llm_openai_request_json(&bad, "m"));
    llm_message latin1[] = {{.role = LLM_ROLE_USER, .content = "caf\xe9"}};
    bad.messages = latin1;
    assert_null(llm_openai_request_json(&bad, "m"));
}

/* ---- The answer ------------------------------------------------------------------------------ */

typedef struct parsed {
    int rc;
    char *text, *finish, *model;
    uint64_t prompt, completion;
    const char *reason;
    char detail[512];
} parsed;

static parsed parse_answer(const char *body, size_t len)
{
    parsed p = {0};
    p.rc = llm_openai_parse_response(body, len, &p.text, &p.finish, &p.model, &p.prompt,
                                     &p.completion, &p.reason, p.detail, sizeof p.detail);
    return p;
}

static void parsed_free(parsed *p)
{
    free(p->text);
    free(p->finish);
    free(p->model);
}

static void test_answer_valid(void **state)
{
    (void)state;
    const char *body = "{\"id\":\"c1\",\"object\":\"chat.completion\",\"model\":\"gpt-x\","
                       "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                       "\"content\":\"Hello \\u00e9\"},\"finish_reason\":\"stop\"}],"
                       "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,"
                       "\"total_tokens\":46}}";
    parsed p = parse_answer(body, strlen(body));
    assert_int_equal(p.rc, 0);
    assert_null(p.reason);
    assert_string_equal(p.text, "Hello \xc3\xa9");
    assert_string_equal(p.finish, "stop");
    assert_string_equal(p.model, "gpt-x");
    assert_int_equal(p.prompt, 12);
    assert_int_equal(p.completion, 34);
    parsed_free(&p);

    /* No usage, no model, null finish_reason: fine. */
    body = "{\"choices\":[{\"message\":{\"content\":\"ok\"},\"finish_reason\":null}]}";
    p = parse_answer(body, strlen(body));
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.text, "ok");
    assert_null(p.finish);
    assert_null(p.model);
    assert_int_equal(p.prompt, 0);
    assert_int_equal(p.completion, 0);
    parsed_free(&p);

    /* Huge counts are clamped, not fatal. */
    body = "{\"choices\":[{\"message\":{\"content\":\"ok\"}}],\"usage\":{\"prompt_tokens\":"
           "99999999999999999999999999,\"completion_tokens\":1e300}}";
    p = parse_answer(body, strlen(body));
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.prompt, UINT64_C(1000000000000));
    assert_int_equal(p.completion, UINT64_C(1000000000000));
    parsed_free(&p);
}

static void test_answer_refused(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *reason;
        const char *fragment;
    } cases[] = {
        {"{\"choices\":[]}", LLM_REASON_EMPTY, "no choices"},
        {"{\"choices\":[{\"message\":{\"content\":null}}]}", LLM_REASON_EMPTY, "no text"},
        {"{\"choices\":[{\"message\":{\"role\":\"assistant\"}}]}", LLM_REASON_EMPTY, "no text"},
        {"{\"choices\":[{\"message\":{\"content\":\"\"}}]}", LLM_REASON_EMPTY, "no text"},
        {"not json", LLM_REASON_MALFORMED, "not JSON"},
        {"{\"choices\":[{\"message\":{\"content\":\"x\"}}]", LLM_REASON_MALFORMED, "not JSON"},
        {"[1,2]", LLM_REASON_MALFORMED, "not an object"},
        {"{}", LLM_REASON_MALFORMED, "no \"choices\" list"},
        {"{\"choices\":{}}", LLM_REASON_MALFORMED, "no \"choices\" list"},
        {"{\"choices\":[5]}", LLM_REASON_MALFORMED, "choices[0].message"},
        {"{\"choices\":[{\"message\":\"hi\"}]}", LLM_REASON_MALFORMED, "choices[0].message"},
        {"{\"choices\":[{\"message\":{\"content\":5}}]}", LLM_REASON_MALFORMED, "content"},
        {"{\"choices\":[{\"message\":{\"content\":[\"a\"]}}]}", LLM_REASON_MALFORMED, "content"},
        {"{\"choices\":[{\"message\":{\"content\":\"x\"},\"finish_reason\":1}]}",
         LLM_REASON_MALFORMED, "finish_reason"},
        {"{\"model\":7,\"choices\":[{\"message\":{\"content\":\"x\"}}]}", LLM_REASON_MALFORMED,
         "model"},
        {"{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":5}", LLM_REASON_MALFORMED,
         "usage"},
        {"{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":\"12\"}}",
         LLM_REASON_MALFORMED, "usage"},
        {"{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":{\"completion_tokens\":-1}}",
         LLM_REASON_MALFORMED, "usage"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        parsed p = parse_answer(cases[i].body, strlen(cases[i].body));
        if (p.rc == 0 || !p.reason || strcmp(p.reason, cases[i].reason) != 0 ||
            !strstr(p.detail, cases[i].fragment))
            fail_msg("%s: rc %d reason %s detail %s", cases[i].body, p.rc,
                     p.reason ? p.reason : "(null)", p.detail);
        assert_null(p.text);
        assert_null(p.finish);
        assert_null(p.model);
    }
    /* Empty, a NUL inside, and over the size limit. */
    parsed p = parse_answer("", 0);
    assert_string_equal(p.reason, LLM_REASON_MALFORMED);
    static const char with_nul[] = "{\"choices\":[]}\0{}";
    p = parse_answer(with_nul, sizeof with_nul - 1);
    assert_string_equal(p.reason, LLM_REASON_MALFORMED);
    p = parse_answer("{}", (size_t)LLM_MAX_RESPONSE + 1);
    assert_string_equal(p.reason, LLM_REASON_MALFORMED);
    assert_non_null(strstr(p.detail, "over 8 MB"));
}

static void test_answer_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 100000;
    char *body = malloc(2 * depth + 1);
    assert_non_null(body);
    memset(body, '[', depth);
    memset(body + depth, ']', depth);
    body[2 * depth] = '\0';
    parsed p = parse_answer(body, 2 * depth);
    assert_int_not_equal(p.rc, 0);
    assert_string_equal(p.reason, LLM_REASON_MALFORMED);
    free(body);
}

/* ---- Provider refusals ----------------------------------------------------------------------- */

static void test_error_text(void **state)
{
    (void)state;
    char out[256];
    const char *body = "{\"error\":{\"message\":\"Incorrect API key provided: " SECRET
                       ".\",\"type\":\"invalid_request_error\"}}";
    llm_error_text(body, strlen(body), SECRET, out, sizeof out);
    assert_string_equal(out, "\"Incorrect API key provided: ***.\"");

    body = "{\"error\":\"model not found\"}";
    llm_error_text(body, strlen(body), NULL, out, sizeof out);
    assert_string_equal(out, "\"model not found\"");

    body = "<html>\n<b>502</b>\x01</html>";
    llm_error_text(body, strlen(body), NULL, out, sizeof out);
    assert_non_null(strstr(out, "<html>\\n<b>502</b>"));
    assert_null(strchr(out, '\n'));
    assert_null(strchr(out, '\x01'));

    llm_error_text("", 0, NULL, out, sizeof out);
    assert_string_equal(out, "");

    /* A long message is cut; a key straddling the cut is still hidden. */
    char longer[1024];
    memset(longer, 'a', 190);
    snprintf(longer + 190, sizeof longer - 190, "%s tail", SECRET);
    json_t *obj = json_pack("{s:{s:s}}", "error", "message", longer);
    char *text = json_dumps(obj, JSON_COMPACT);
    llm_error_text(text, strlen(text), SECRET, out, sizeof out);
    assert_true(strlen(out) <= 210);
    assert_null(strstr(out, "sk-S"));
    assert_non_null(strstr(out, "***"));
    free(text);
    json_decref(obj);

    char s[] = "key=abcd and abcd again; abc stays";
    llm_redact(s, "abcd");
    assert_string_equal(s, "key=*** and *** again; abc stays");
    llm_redact(s, "ab"); /* too short to be a key: left alone */
    assert_string_equal(s, "key=*** and *** again; abc stays");
    llm_redact(s, NULL);
}

/* ---- Fallback lists -------------------------------------------------------------------------- */

static void test_providers_fallback(void **state)
{
    (void)state;
    static const struct {
        const char *config;
        const char *fragment;
    } cases[] = {
        {"{\"a\": {\"type\": \"openai\", \"fallback\": [\"nope\"]}}",
         "llm.providers.a.fallback: no provider named \"nope\"; add it under llm.providers"},
        {"{\"a\": {\"type\": \"openai\", \"fallback\": [\"locl\"]}, \"local\": {\"type\": "
         "\"ollama\", \"model\": \"m\"}}",
         "no provider named \"locl\" (did you mean 'local'?)"},
        {"{\"a\": {\"type\": \"openai\", \"model\": \"m\", \"fallback\": [\"a\"]}}",
         "llm.providers.a.fallback: 'a' is this provider itself"},
        {"{\"a\": {\"type\": \"openai\", \"model\": \"m\", \"fallback\": [\"b\"]}, \"b\": "
         "{\"type\": \"openai\", \"model\": \"m\", \"fallback\": [\"a\"]}}",
         "llm.providers.b.fallback: 'a' leads back to itself (a -> b -> a)"},
        {"{\"a\": {\"type\": \"openai\", \"model\": \"m\", \"fallback\": [\"b\"]}, \"b\": "
         "{\"type\": \"openai\", \"model\": \"m\", \"fallback\": [\"c\"]}, \"c\": {\"type\": "
         "\"ollama\", "
         "\"model\": \"m\", \"fallback\": [\"b\"]}}",
         "llm.providers.c.fallback: 'b' leads back to itself (b -> c -> b)"},
        {"{\"a\": {\"type\": \"openai\", \"fallback\": [\"b\"]}, \"b\": {\"type\": \"openai\"}}",
         "llm.providers.a.fallback: 'b' has no model; a fallback provider answers with its own "
         "model, never the agent's, so set llm.providers.b.model"},
        {"{\"a\": {\"type\": \"openai\", \"fallback\": \"b\"}, \"b\": {\"type\": \"openai\", "
         "\"model\": \"m\"}}",
         "llm.providers.a.fallback: expected a list of provider names such as [local], got \"b\""},
        {"{\"a\": {\"type\": \"openai\", \"fallback\": {}}}", "got a mapping"},
        {"{\"a\": {\"type\": \"openai\", \"fallback\": [\"b\", 5]}, \"b\": {\"type\": \"openai\", "
         "\"model\": \"m\"}}",
         "llm.providers.a.fallback[1]: expected a provider name, got 5"},
        {"{\"a\": {\"type\": \"openai\", \"fallback\": [\"\"]}}",
         "llm.providers.a.fallback[0]: expected a provider name, got \"\""},
        {"{\"a\": {\"type\": \"openai\", \"fallback\": [\"b\", \"b\"]}, \"b\": {\"type\": "
         "\"openai\", \"model\": \"m\"}}",
         "llm.providers.a.fallback: \"b\" is listed twice"},
        {"{\"a\": {\"type\": \"openai\", \"fallback\": [\"b\\n\"]}}",
         "no provider named \"b\\n\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_one_error(cases[i].config, cases[i].fragment);

    /* A list longer than any configuration can satisfy is refused whole. */
    json_t *cfg = json_pack("{s:{s:s, s:[]}}", "a", "type", "openai", "fallback");
    json_t *list = json_object_get(json_object_get(cfg, "a"), "fallback");
    for (int i = 0; i < LLM_PROVIDERS_MAX; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        json_array_append_new(list, json_string(name));
    }
    json_t *errors = NULL;
    assert_int_equal(llm_providers_check(cfg, &errors), 1);
    assert_non_null(strstr(json_string_value(json_array_get(errors, 0)), "more than the 63"));
    json_decref(errors);
    json_decref(cfg);

    /* A loop through many providers is reported once, with its path. */
    cfg = json_object();
    for (int i = 0; i < 10; i++) {
        char name[16], next[16];
        snprintf(name, sizeof name, "p%d", i);
        snprintf(next, sizeof next, "p%d", (i + 1) % 10);
        json_object_set_new(cfg, name, json_pack("{s:s, s:s, s:[s]}", "type", "openai", "model",
                                                 "m", "fallback", next));
    }
    size_t n = llm_providers_check(cfg, &errors);
    assert_int_equal(n, 1);
    assert_non_null(strstr(json_string_value(json_array_get(errors, 0)),
                           "(p0 -> p1 -> p2 -> p3 -> p4 -> p5 -> p6 -> p7 -> p8 -> p9 -> p0)"));
    json_decref(errors);
    json_decref(cfg);
}

/* ---- Tools in requests ----------------------------------------------------------------------- */

static json_t *schema_object(void)
{
    return parse("{\"type\":\"object\",\"properties\":{\"message\":{\"type\":\"string\"}},"
                 "\"required\":[\"message\"]}");
}

/* A conversation with every kind of message: system, user, an assistant
 * turn that asked for two tools, their two results (one failed), and a
 * last user message. */
typedef struct conversation {
    json_t *schema;
    json_t *args;
    llm_tool tools[2];
    llm_tool_call calls[2];
    llm_message msgs[7];
    llm_request req;
} conversation;

static void conversation_init(conversation *cv)
{
    cv->schema = schema_object();
    cv->args = parse("{\"message\":\"hi\",\"count\":3}");
    cv->tools[0] = (llm_tool){.name = "everything__echo", .description = "Echoes the message",
                              .input_schema = cv->schema};
    cv->tools[1] = (llm_tool){.name = "clock"};
    cv->calls[0] = (llm_tool_call){.id = "call_1", .name = "everything__echo",
                                   .arguments = cv->args,
                                   .arguments_text = "{\"message\":\"hi\",\"count\":3}"};
    cv->calls[1] = (llm_tool_call){.id = "call_2", .name = "clock", .arguments_text = "not json"};
    cv->msgs[0] = (llm_message){.role = LLM_ROLE_SYSTEM, .content = "be brief"};
    cv->msgs[1] = (llm_message){.role = LLM_ROLE_SYSTEM, .content = "use tools"};
    cv->msgs[2] = (llm_message){.role = LLM_ROLE_USER, .content = "echo hi"};
    cv->msgs[3] = (llm_message){.role = LLM_ROLE_ASSISTANT, .content = NULL,
                                .tool_calls = cv->calls, .tool_call_count = 2};
    cv->msgs[4] = (llm_message){.role = LLM_ROLE_TOOL, .content = "hi", .tool_call_id = "call_1",
                                .tool_name = "everything__echo"};
    cv->msgs[5] = (llm_message){.role = LLM_ROLE_TOOL, .content = "no clock here",
                                .tool_call_id = "call_2", .tool_name = "clock", .is_error = true};
    cv->msgs[6] = (llm_message){.role = LLM_ROLE_USER, .content = "thanks"};
    cv->req = (llm_request){.provider = "p", .messages = cv->msgs, .message_count = 7,
                            .tools = cv->tools, .tool_count = 2};
}

static void conversation_free(conversation *cv)
{
    json_decref(cv->schema);
    json_decref(cv->args);
}

/* The value at a path like "messages.3.tool_calls.0.id" (numbers index lists). */
static json_t *at(json_t *v, const char *path)
{
    char copy[256];
    snprintf(copy, sizeof copy, "%s", path);
    for (char *save = NULL, *part = strtok_r(copy, ".", &save); part && v;
         part = strtok_r(NULL, ".", &save))
        v = json_is_array(v) ? json_array_get(v, strtoul(part, NULL, 10))
                             : json_object_get(v, part);
    return v;
}

static const char *at_str(json_t *v, const char *path)
{
    json_t *x = at(v, path);
    if (!json_is_string(x))
        fail_msg("%s is not a string", path);
    return json_string_value(x);
}

static void test_openai_request_tools(void **state)
{
    (void)state;
    conversation cv;
    conversation_init(&cv);
    json_t *body = llm_openai_request_json(&cv.req, "gpt-x");
    assert_non_null(body);
    assert_int_equal(json_array_size(at(body, "tools")), 2);
    assert_string_equal(at_str(body, "tools.0.type"), "function");
    assert_string_equal(at_str(body, "tools.0.function.name"), "everything__echo");
    assert_string_equal(at_str(body, "tools.0.function.description"), "Echoes the message");
    assert_true(json_equal(at(body, "tools.0.function.parameters"), cv.schema));
    assert_null(at(body, "tools.1.function.description"));
    assert_string_equal(at_str(body, "tools.1.function.parameters.type"), "object");
    json_t *msgs = at(body, "messages");
    assert_int_equal(json_array_size(msgs), 7);
    assert_string_equal(at_str(msgs, "3.role"), "assistant");
    assert_true(json_is_null(at(msgs, "3.content")));
    assert_string_equal(at_str(msgs, "3.tool_calls.0.id"), "call_1");
    assert_string_equal(at_str(msgs, "3.tool_calls.0.type"), "function");
    assert_string_equal(at_str(msgs, "3.tool_calls.0.function.name"), "everything__echo");
    assert_string_equal(at_str(msgs, "3.tool_calls.0.function.arguments"),
                        "{\"message\":\"hi\",\"count\":3}");
    assert_string_equal(at_str(msgs, "3.tool_calls.1.function.arguments"), "not json");
    assert_string_equal(at_str(msgs, "4.role"), "tool");
    assert_string_equal(at_str(msgs, "4.tool_call_id"), "call_1");
    assert_string_equal(at_str(msgs, "4.content"), "hi");
    assert_string_equal(at_str(msgs, "5.tool_call_id"), "call_2");
    assert_int_equal(json_object_size(at(msgs, "5")), 3);
    json_decref(body);

    /* Arguments given only as an object are sent as compact text. */
    cv.calls[0].arguments_text = NULL;
    body = llm_openai_request_json(&cv.req, "gpt-x");
    assert_string_equal(at_str(body, "messages.3.tool_calls.0.function.arguments"),
                        "{\"message\":\"hi\",\"count\":3}");
    json_decref(body);
    /* Neither: an empty object. */
    cv.calls[0].arguments = NULL;
    body = llm_openai_request_json(&cv.req, "gpt-x");
    assert_string_equal(at_str(body, "messages.3.tool_calls.0.function.arguments"), "{}");
    json_decref(body);

    /* Refused: a bad tool name, a schema that is not an object, a tool
     * result without its call id, an assistant turn with neither text nor
     * calls, a user message without text. */
    conversation bad;
    conversation_init(&bad);
    bad.tools[1].name = "files.read";
    assert_null(llm_openai_request_json(&bad.req, "m"));
    bad.tools[1].name = "clock";
    json_t *list = parse("[1]");
    bad.tools[1].input_schema = list;
    assert_null(llm_openai_request_json(&bad.req, "m"));
    bad.tools[1].input_schema = NULL;
    bad.msgs[4].tool_call_id = NULL;
    assert_null(llm_openai_request_json(&bad.req, "m"));
    bad.msgs[4].tool_call_id = "call_1";
    bad.msgs[3].tool_call_count = 0;
    assert_null(llm_openai_request_json(&bad.req, "m"));
    bad.msgs[3].tool_call_count = 2;
    bad.msgs[6].content = NULL;
    assert_null(llm_openai_request_json(&bad.req, "m"));
    json_decref(list);
    conversation_free(&bad);
    conversation_free(&cv);
}

static void test_anthropic_request(void **state)
{
    (void)state;
    conversation cv;
    conversation_init(&cv);
    json_t *body = llm_anthropic_request_json(&cv.req, "claude-x");
    assert_non_null(body);
    assert_string_equal(at_str(body, "model"), "claude-x");
    assert_int_equal(json_integer_value(at(body, "max_tokens")), 1024);
    assert_string_equal(at_str(body, "system"), "be brief\n\nuse tools");
    assert_null(at(body, "temperature"));
    assert_string_equal(at_str(body, "tools.0.name"), "everything__echo");
    assert_string_equal(at_str(body, "tools.0.description"), "Echoes the message");
    assert_true(json_equal(at(body, "tools.0.input_schema"), cv.schema));
    assert_string_equal(at_str(body, "tools.1.input_schema.type"), "object");
    assert_null(at(body, "tools.0.type"));
    /* user, assistant (two tool_use), user (two tool_result, then the text) */
    json_t *msgs = at(body, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    assert_string_equal(at_str(msgs, "0.role"), "user");
    assert_string_equal(at_str(msgs, "0.content"), "echo hi");
    assert_string_equal(at_str(msgs, "1.role"), "assistant");
    assert_int_equal(json_array_size(at(msgs, "1.content")), 2);
    assert_string_equal(at_str(msgs, "1.content.0.type"), "tool_use");
    assert_string_equal(at_str(msgs, "1.content.0.id"), "call_1");
    assert_string_equal(at_str(msgs, "1.content.0.name"), "everything__echo");
    assert_true(json_equal(at(msgs, "1.content.0.input"), cv.args));
    assert_true(json_is_integer(at(msgs, "1.content.0.input.count")));
    assert_int_equal(json_object_size(at(msgs, "1.content.1.input")), 0); /* "not json" */
    assert_string_equal(at_str(msgs, "2.role"), "user");
    assert_int_equal(json_array_size(at(msgs, "2.content")), 3);
    assert_string_equal(at_str(msgs, "2.content.0.type"), "tool_result");
    assert_string_equal(at_str(msgs, "2.content.0.tool_use_id"), "call_1");
    assert_string_equal(at_str(msgs, "2.content.0.content"), "hi");
    assert_null(at(msgs, "2.content.0.is_error"));
    assert_string_equal(at_str(msgs, "2.content.1.tool_use_id"), "call_2");
    assert_true(json_is_true(at(msgs, "2.content.1.is_error")));
    assert_string_equal(at_str(msgs, "2.content.2.type"), "text");
    assert_string_equal(at_str(msgs, "2.content.2.text"), "thanks");
    json_decref(body);

    /* The agent's settings; an assistant turn with text and a call; no system. */
    cv.req.max_tokens = 300;
    cv.req.temperature_set = true;
    cv.req.temperature = 0.5;
    cv.msgs[3].content = "Let me check.";
    cv.req.messages = cv.msgs + 2;
    cv.req.message_count = 3;
    cv.req.tool_count = 0;
    body = llm_anthropic_request_json(&cv.req, "claude-x");
    assert_int_equal(json_integer_value(at(body, "max_tokens")), 300);
    assert_true(json_number_value(at(body, "temperature")) == 0.5);
    assert_null(at(body, "system"));
    assert_null(at(body, "tools"));
    assert_string_equal(at_str(body, "messages.1.content.0.type"), "text");
    assert_string_equal(at_str(body, "messages.1.content.0.text"), "Let me check.");
    assert_string_equal(at_str(body, "messages.1.content.1.type"), "tool_use");
    /* A lone tool result stays a block list. */
    assert_string_equal(at_str(body, "messages.2.content.0.type"), "tool_result");
    json_decref(body);

    llm_message odd[] = {{.role = (llm_role)42, .content = "x"}};
    llm_request bad = {.messages = odd, .message_count = 1};
    assert_null(llm_anthropic_request_json(&bad, "m"));
    assert_null(llm_anthropic_request_json(&cv.req, NULL));
    llm_message latin1[] = {{.role = LLM_ROLE_SYSTEM, .content = "caf\xe9"}};
    bad.messages = latin1;
    assert_null(llm_anthropic_request_json(&bad, "m"));
    conversation_free(&cv);
}

static void test_ollama_request(void **state)
{
    (void)state;
    conversation cv;
    conversation_init(&cv);
    json_t *body = llm_ollama_request_json(&cv.req, "llama3.1");
    assert_non_null(body);
    assert_string_equal(at_str(body, "model"), "llama3.1");
    assert_true(json_is_false(at(body, "stream")));
    assert_null(at(body, "options"));
    assert_string_equal(at_str(body, "tools.0.type"), "function");
    assert_string_equal(at_str(body, "tools.0.function.name"), "everything__echo");
    assert_true(json_equal(at(body, "tools.0.function.parameters"), cv.schema));
    json_t *msgs = at(body, "messages");
    assert_int_equal(json_array_size(msgs), 7);
    assert_string_equal(at_str(msgs, "0.role"), "system");
    assert_string_equal(at_str(msgs, "3.role"), "assistant");
    assert_string_equal(at_str(msgs, "3.content"), "");
    assert_null(at(msgs, "3.tool_calls.0.id"));
    assert_string_equal(at_str(msgs, "3.tool_calls.0.function.name"), "everything__echo");
    assert_true(json_equal(at(msgs, "3.tool_calls.0.function.arguments"), cv.args));
    assert_true(json_is_object(at(msgs, "3.tool_calls.1.function.arguments")));
    assert_string_equal(at_str(msgs, "4.role"), "tool");
    assert_string_equal(at_str(msgs, "4.tool_name"), "everything__echo");
    assert_string_equal(at_str(msgs, "4.content"), "hi");
    assert_null(at(msgs, "4.tool_call_id"));
    json_decref(body);

    cv.req.temperature_set = true;
    cv.req.temperature = 0.2;
    cv.req.max_tokens = 64;
    cv.req.tool_count = 0;
    body = llm_ollama_request_json(&cv.req, "llama3.1");
    assert_true(fabs(json_number_value(at(body, "options.temperature")) - 0.2) < 1e-9);
    assert_int_equal(json_integer_value(at(body, "options.num_predict")), 64);
    assert_null(at(body, "tools"));
    assert_null(at(body, "max_tokens"));
    json_decref(body);
    cv.msgs[3].tool_call_count = 0; /* an assistant turn with nothing */
    assert_null(llm_ollama_request_json(&cv.req, "m"));
    conversation_free(&cv);
}

/* ---- Answers with tool calls ----------------------------------------------------------------- */

typedef int (*parse_fn)(const char *, size_t, llm_answer *, const char **, char *, size_t);

typedef struct answer_case {
    const char *body;
    const char *reason; /* NULL: accepted */
    const char *fragment;
} answer_case;

static void expect_answers(parse_fn parse_one, const answer_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        llm_answer a;
        const char *reason = NULL;
        char detail[512];
        int rc = parse_one(cases[i].body, strlen(cases[i].body), &a, &reason, detail,
                           sizeof detail);
        if (!cases[i].reason) {
            if (rc != 0)
                fail_msg("%s: refused: %s %s", cases[i].body, reason, detail);
            llm_answer_free(&a);
            continue;
        }
        if (rc == 0 || !reason || strcmp(reason, cases[i].reason) != 0 ||
            !strstr(detail, cases[i].fragment))
            fail_msg("%s: rc %d reason %s detail %s", cases[i].body, rc,
                     reason ? reason : "(null)", detail);
        assert_null(a.text);
        assert_null(a.tool_calls);
        assert_int_equal(a.tool_call_count, 0);
        assert_null(a.store);
    }
}

static llm_answer answer_of(parse_fn parse_one, const char *body)
{
    llm_answer a;
    const char *reason = NULL;
    char detail[512];
    if (parse_one(body, strlen(body), &a, &reason, detail, sizeof detail) != 0)
        fail_msg("%s: refused: %s %s", body, reason, detail);
    return a;
}

static void test_openai_answer_tool_calls(void **state)
{
    (void)state;
    llm_answer a = answer_of(
        llm_openai_parse_answer,
        "{\"model\":\"gpt-x\",\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":null,"
        "\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":"
        "\"everything__echo\",\"arguments\":\"{\\\"message\\\":\\\"hi\\\",\\\"n\\\":7}\"}},"
        "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"clock\",\"arguments\":"
        "\"{not json\"}},{\"type\":\"function\",\"function\":{\"name\":\"noargs\",\"arguments\":"
        "\"\"}},{\"id\":\"\",\"function\":{\"name\":\"list\",\"arguments\":\"[1,2]\"}},"
        "{\"id\":\"call_e\",\"function\":{\"name\":\"obj\",\"arguments\":{\"k\":true}}}]},"
        "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":3,"
        "\"completion_tokens\":4}}");
    assert_null(a.text);
    assert_string_equal(a.finish_reason, "tool_calls");
    assert_string_equal(a.model, "gpt-x");
    assert_int_equal(a.prompt_tokens, 3);
    assert_int_equal(a.completion_tokens, 4);
    assert_int_equal(a.tool_call_count, 5);
    const llm_tool_call *c = a.tool_calls;
    assert_string_equal(c[0].id, "call_a");
    assert_string_equal(c[0].name, "everything__echo");
    assert_string_equal(c[0].arguments_text, "{\"message\":\"hi\",\"n\":7}");
    assert_string_equal(json_string_value(json_object_get(c[0].arguments, "message")), "hi");
    assert_true(json_is_integer(json_object_get(c[0].arguments, "n")));
    assert_null(c[1].arguments); /* invalid JSON: no object, the text kept */
    assert_string_equal(c[1].arguments_text, "{not json");
    assert_true(json_is_object(c[2].arguments)); /* "" means no arguments */
    assert_int_equal(json_object_size(c[2].arguments), 0);
    assert_non_null(c[2].id); /* generated */
    assert_true(strncmp(c[2].id, "call_", 5) == 0 && strlen(c[2].id) == 29);
    assert_string_not_equal(c[2].id, c[3].id);
    assert_null(c[3].arguments); /* JSON, not an object */
    assert_string_equal(c[3].arguments_text, "[1,2]");
    assert_true(json_is_true(json_object_get(c[4].arguments, "k")));
    assert_string_equal(c[4].arguments_text, "{\"k\":true}");
    llm_answer_free(&a);
    llm_answer_free(&a); /* freed answers are empty */

    /* Text and a call together. */
    a = answer_of(llm_openai_parse_answer,
                  "{\"choices\":[{\"message\":{\"content\":\"Checking.\",\"tool_calls\":[{\"id\":"
                  "\"x\",\"function\":{\"name\":\"t\",\"arguments\":\"{}\"}}]}}]}");
    assert_string_equal(a.text, "Checking.");
    assert_int_equal(a.tool_call_count, 1);
    llm_answer_free(&a);

    /* The old entry point: text NULL when only tools were asked for. */
    char *text = NULL, *finish = NULL, *model = NULL;
    uint64_t prompt = 1, completion = 1;
    const char *reason = NULL;
    char detail[256];
    const char *only_calls = "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"x\","
                             "\"function\":{\"name\":\"t\"}}]}}]}";
    assert_int_equal(llm_openai_parse_response(only_calls, strlen(only_calls), &text, &finish,
                                               &model, &prompt, &completion, &reason, detail,
                                               sizeof detail),
                     0);
    assert_null(text);
    assert_int_equal(prompt, 0);

    static const answer_case refused[] = {
        {"{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[]}}]}", LLM_REASON_EMPTY,
         "no text (content is empty) and no tool calls"},
        {"{\"choices\":[{\"message\":{\"content\":\"\",\"tool_calls\":null}}]}",
         LLM_REASON_EMPTY, "no tool calls"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":{}}}]}", LLM_REASON_MALFORMED,
         "tool_calls is not a list"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[5]}}]}", LLM_REASON_MALFORMED,
         "tool_calls[0]: function is not an object"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"a\",\"function\":\"f\"}]}}]}",
         LLM_REASON_MALFORMED, "tool_calls[0]: function is not an object"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{}}]}}]}",
         LLM_REASON_MALFORMED, "tool_calls[0]: the tool name is missing"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":7,\"function\":{\"name\":"
         "\"t\"}}]}}]}",
         LLM_REASON_MALFORMED, "id or function.name is not a string"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"t\\u0001\"}}]}}]}",
         LLM_REASON_MALFORMED, "control characters"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"a\\nb\",\"function\":{\"name\":"
         "\"t\"}}]}}]}",
         LLM_REASON_MALFORMED, "the tool call id is too long or has control characters"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"t\","
         "\"arguments\":5}}]}}]}",
         LLM_REASON_MALFORMED, "\"arguments\" is neither JSON text nor an object"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"t\","
         "\"arguments\":[1]}}]}}]}",
         LLM_REASON_MALFORMED, "neither JSON text nor an object"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"t\","
         "\"arguments\":null}}]}}]}",
         NULL, NULL},
    };
    expect_answers(llm_openai_parse_answer, refused, sizeof refused / sizeof *refused);
}

/* Answers with many calls, long names and long ids: bounded. */
static void test_answer_tool_call_limits(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appends(&sb, "{\"choices\":[{\"message\":{\"tool_calls\":[");
    for (int i = 0; i < LLM_MAX_TOOL_CALLS + 1; i++)
        strbuf_appendf(&sb, "%s{\"id\":\"c%d\",\"function\":{\"name\":\"t\",\"arguments\":"
                       "\"{}\"}}", i ? "," : "", i);
    strbuf_appends(&sb, "]}}]}");
    llm_answer a;
    const char *reason = NULL;
    char detail[512];
    assert_int_not_equal(llm_openai_parse_answer(sb.data, sb.len, &a, &reason, detail,
                                                 sizeof detail), 0);
    assert_string_equal(reason, LLM_REASON_MALFORMED);
    assert_non_null(strstr(detail, "tool_calls[128]: more than 128 tool calls"));
    strbuf_free(&sb);

    char name[LLM_TOOL_CALL_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    char body[1024];
    snprintf(body, sizeof body, "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":"
             "{\"name\":\"%s\"}}]}}]}", name);
    assert_int_not_equal(llm_openai_parse_answer(body, strlen(body), &a, &reason, detail,
                                                 sizeof detail), 0);
    assert_non_null(strstr(detail, "too long"));
    name[LLM_TOOL_CALL_NAME_MAX] = '\0'; /* exactly at the limit: accepted */
    snprintf(body, sizeof body, "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"%s\","
             "\"function\":{\"name\":\"%s\"}}]}}]}", name, name);
    a = answer_of(llm_openai_parse_answer, body);
    assert_int_equal(strlen(a.tool_calls[0].name), LLM_TOOL_CALL_NAME_MAX);
    llm_answer_free(&a);
    name[LLM_TOOL_CALL_NAME_MAX] = 'n';
    snprintf(body, sizeof body, "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"%s\","
             "\"function\":{\"name\":\"t\"}}]}}]}", name);
    assert_int_not_equal(llm_openai_parse_answer(body, strlen(body), &a, &reason, detail,
                                                 sizeof detail), 0);
    assert_non_null(strstr(detail, "id is too long"));

    /* Deeply nested arguments text: not an object we can read, kept as text. */
    size_t depth = 5000;
    strbuf_init(&sb);
    strbuf_appends(&sb, "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"name\":"
                        "\"t\",\"arguments\":\"");
    for (size_t i = 0; i < depth; i++)
        strbuf_appends(&sb, "[");
    strbuf_appends(&sb, "\"}}]}}]}");
    a = answer_of(llm_openai_parse_answer, sb.data);
    assert_null(a.tool_calls[0].arguments);
    assert_int_equal(strlen(a.tool_calls[0].arguments_text), depth);
    llm_answer_free(&a);
    strbuf_free(&sb);

    /* A number too big for 64 bits anywhere: still read, counts clamped. */
    const char *huge = "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"name\":"
                       "\"t\",\"arguments\":{\"n\":1}}}]}}],\"usage\":{\"prompt_tokens\":"
                       "123456789012345678901234567890}}";
    a = answer_of(llm_openai_parse_answer, huge);
    assert_int_equal(a.prompt_tokens, UINT64_C(1000000000000));
    assert_true(json_is_number(json_object_get(a.tool_calls[0].arguments, "n")));
    llm_answer_free(&a);
}

static void test_anthropic_answer(void **state)
{
    (void)state;
    llm_answer a = answer_of(
        llm_anthropic_parse_answer,
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
        "\"content\":[{\"type\":\"thinking\",\"thinking\":\"hmm\"},{\"type\":\"text\",\"text\":"
        "\"Let me \"},{\"type\":\"text\",\"text\":\"check.\"},{\"type\":\"tool_use\",\"id\":"
        "\"toolu_1\",\"name\":\"everything__echo\",\"input\":{\"message\":\"hi\",\"n\":2}}],"
        "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":10,\"output_tokens\":5,"
        "\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":1000}}");
    assert_string_equal(a.text, "Let me check.");
    assert_string_equal(a.finish_reason, "tool_calls");
    assert_string_equal(a.model, "claude-x");
    assert_int_equal(a.prompt_tokens, 1110);
    assert_int_equal(a.completion_tokens, 5);
    assert_int_equal(a.tool_call_count, 1);
    assert_string_equal(a.tool_calls[0].id, "toolu_1");
    assert_string_equal(a.tool_calls[0].name, "everything__echo");
    assert_string_equal(a.tool_calls[0].arguments_text, "{\"message\":\"hi\",\"n\":2}");
    assert_true(json_is_integer(json_object_get(a.tool_calls[0].arguments, "n")));
    llm_answer_free(&a);

    static const struct {
        const char *stop, *finish;
    } words[] = {{"end_turn", "stop"}, {"stop_sequence", "stop"}, {"max_tokens", "length"},
                 {"refusal", "refusal"}};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}],"
                 "\"stop_reason\":\"%s\"}", words[i].stop);
        a = answer_of(llm_anthropic_parse_answer, body);
        assert_string_equal(a.finish_reason, words[i].finish);
        assert_int_equal(a.prompt_tokens, 0);
        llm_answer_free(&a);
    }

    static const answer_case cases[] = {
        {"{\"type\":\"message\",\"content\":[]}", LLM_REASON_EMPTY, "no tool calls"},
        {"{\"content\":[{\"type\":\"text\",\"text\":\"\"}]}", LLM_REASON_EMPTY, "no text"},
        {"{\"content\":[{\"type\":\"thinking\",\"thinking\":\"x\"}]}", LLM_REASON_EMPTY,
         "no text"},
        {"{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}",
         LLM_REASON_MALFORMED, "\"type\" is not \"message\""},
        {"{\"content\":\"hi\"}", LLM_REASON_MALFORMED, "no \"content\" list"},
        {"{}", LLM_REASON_MALFORMED, "no \"content\" list"},
        {"[]", LLM_REASON_MALFORMED, "not an object"},
        {"{\"content\":[7]}", LLM_REASON_MALFORMED, "content[0] is not an object"},
        {"{\"content\":[{\"text\":\"x\"}]}", LLM_REASON_MALFORMED, "content[0] has no \"type\""},
        {"{\"content\":[{\"type\":\"text\",\"text\":5}]}", LLM_REASON_MALFORMED,
         "content[0].text is not a string"},
        {"{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":\"{}\"}]}",
         LLM_REASON_MALFORMED, "content[0] (tool_use): input is not an object"},
        {"{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"input\":{}}]}",
         LLM_REASON_MALFORMED, "content[0] (tool_use): the tool name is missing"},
        {"{\"content\":[{\"type\":\"tool_use\",\"id\":1,\"name\":\"n\",\"input\":{}}]}",
         LLM_REASON_MALFORMED, "id or name is not a string"},
        {"{\"content\":[{\"type\":\"text\",\"text\":\"x\"}],\"stop_reason\":1}",
         LLM_REASON_MALFORMED, "stop_reason"},
        {"{\"content\":[{\"type\":\"text\",\"text\":\"x\"}],\"model\":[]}", LLM_REASON_MALFORMED,
         "\"model\""},
        {"{\"content\":[{\"type\":\"text\",\"text\":\"x\"}],\"usage\":{\"input_tokens\":-3}}",
         LLM_REASON_MALFORMED, "usage"},
        {"{\"content\":[{\"type\":\"text\",\"text\":\"x\"}],\"usage\":{\"output_tokens\":\"3\"}}",
         LLM_REASON_MALFORMED, "usage"},
        {"{\"content\":[{\"type\":\"text\",\"text\":\"x\"}],\"usage\":[]}", LLM_REASON_MALFORMED,
         "usage"},
        {"not json", LLM_REASON_MALFORMED, "not JSON"},
        {"{\"content\":[{\"type\":\"tool_use\",\"name\":\"n\",\"input\":{}}]}", NULL, NULL},
    };
    expect_answers(llm_anthropic_parse_answer, cases, sizeof cases / sizeof *cases);
}

static void test_ollama_answer(void **state)
{
    (void)state;
    llm_answer a = answer_of(
        llm_ollama_parse_answer,
        "{\"model\":\"llama3.1\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":{\"role\":"
        "\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":"
        "\"everything__echo\",\"arguments\":{\"message\":\"hi\"}}},{\"function\":{\"name\":"
        "\"clock\",\"arguments\":\"{\\\"tz\\\":\\\"UTC\\\"}\"}}]},\"done\":true,\"done_reason\":"
        "\"stop\",\"prompt_eval_count\":26,\"eval_count\":9}");
    assert_null(a.text);
    assert_string_equal(a.finish_reason, "tool_calls");
    assert_string_equal(a.model, "llama3.1");
    assert_int_equal(a.prompt_tokens, 26);
    assert_int_equal(a.completion_tokens, 9);
    assert_int_equal(a.tool_call_count, 2);
    assert_true(strncmp(a.tool_calls[0].id, "call_", 5) == 0);
    assert_string_not_equal(a.tool_calls[0].id, a.tool_calls[1].id);
    assert_string_equal(a.tool_calls[0].arguments_text, "{\"message\":\"hi\"}");
    assert_string_equal(json_string_value(json_object_get(a.tool_calls[1].arguments, "tz")),
                        "UTC");
    llm_answer_free(&a);

    a = answer_of(llm_ollama_parse_answer,
                  "{\"message\":{\"role\":\"assistant\",\"content\":\"Hello\"},\"done_reason\":"
                  "\"length\"}");
    assert_string_equal(a.text, "Hello");
    assert_string_equal(a.finish_reason, "length");
    assert_int_equal(a.prompt_tokens, 0);
    llm_answer_free(&a);

    static const answer_case cases[] = {
        {"{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true}",
         LLM_REASON_EMPTY, "no text"},
        {"{\"message\":{\"content\":null,\"tool_calls\":[]}}", LLM_REASON_EMPTY, "no tool calls"},
        {"{\"error\":\"model 'x' not found\"}", LLM_REASON_MALFORMED,
         "no \"message\", only an error: \"model 'x' not found\""},
        {"{\"done\":true}", LLM_REASON_MALFORMED, "no \"message\" object"},
        {"{\"message\":\"hi\"}", LLM_REASON_MALFORMED, "no \"message\" object"},
        {"{\"message\":{\"content\":3}}", LLM_REASON_MALFORMED, "message.content is not a string"},
        {"{\"message\":{\"tool_calls\":\"x\"}}", LLM_REASON_MALFORMED, "not a list"},
        {"{\"message\":{\"tool_calls\":[{\"name\":\"t\"}]}}", LLM_REASON_MALFORMED,
         "message.tool_calls[0]: function is not an object"},
        {"{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"t\",\"arguments\":true}}]}}",
         LLM_REASON_MALFORMED, "neither JSON text nor an object"},
        {"{\"message\":{\"content\":\"x\"},\"done_reason\":5}", LLM_REASON_MALFORMED,
         "done_reason"},
        {"{\"message\":{\"content\":\"x\"},\"eval_count\":-1}", LLM_REASON_MALFORMED,
         "eval_count"},
        {"{\"message\":{\"content\":\"x\"},\"prompt_eval_count\":\"1\"}", LLM_REASON_MALFORMED,
         "prompt_eval_count"},
        {"{\"message\":{\"content\":\"x\"},\"model\":{}}", LLM_REASON_MALFORMED, "\"model\""},
        {"", LLM_REASON_MALFORMED, "empty"},
    };
    expect_answers(llm_ollama_parse_answer, cases, sizeof cases / sizeof *cases);
}

static void test_error_text_shapes(void **state)
{
    (void)state;
    char out[256];
    const char *body = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                       "\"message\":\"Overloaded\"}}";
    llm_error_text(body, strlen(body), NULL, out, sizeof out);
    assert_string_equal(out, "\"overloaded_error: Overloaded\"");
    body = "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":"
           "\"invalid x-api-key " SECRET "\"}}";
    llm_error_text(body, strlen(body), SECRET, out, sizeof out);
    assert_string_equal(out, "\"authentication_error: invalid x-api-key ***\"");
    /* Ollama's shape. */
    body = "{\"error\":\"model \\\"llama9\\\" not found, try pulling it first\"}";
    llm_error_text(body, strlen(body), NULL, out, sizeof out);
    assert_string_equal(out, "\"model \\\"llama9\\\" not found, try pulling it first\"");
    /* An error type that is not a short word is left out. */
    char long_type[128];
    memset(long_type, 't', 100);
    long_type[100] = '\0';
    char text[512];
    snprintf(text, sizeof text, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":"
             "\"m\"}}", long_type);
    llm_error_text(text, strlen(text), NULL, out, sizeof out);
    assert_string_equal(out, "\"m\"");
    /* A small output buffer still gets a quoted, terminated text. */
    char small[12];
    llm_error_text(body, strlen(body), NULL, small, sizeof small);
    assert_true(strlen(small) < sizeof small);
    assert_int_equal(small[0], '"');
}

static void test_protocol_table(void **state)
{
    (void)state;
    assert_ptr_equal(llm_protocol_find("openai"), &llm_protocol_openai);
    assert_ptr_equal(llm_protocol_find("anthropic"), &llm_protocol_anthropic);
    assert_ptr_equal(llm_protocol_find("ollama"), &llm_protocol_ollama);
    assert_null(llm_protocol_find("OpenAI"));
    assert_null(llm_protocol_find(NULL));
    assert_string_equal(llm_protocol_anthropic.path, "/v1/messages");
    assert_string_equal(llm_protocol_anthropic.key_header, "x-api-key: ");
    assert_string_equal(llm_protocol_anthropic.extra_header, "anthropic-version: 2023-06-01");
    assert_string_equal(llm_protocol_ollama.path, "/api/chat");
    assert_string_equal(llm_protocol_ollama.default_base_url, "http://localhost:11434");
    assert_string_equal(llm_protocol_openai.path, "/chat/completions");
    assert_true(llm_tool_name_ok("a"));
    assert_true(llm_tool_name_ok("files__read_file-2"));
    assert_false(llm_tool_name_ok(""));
    assert_false(llm_tool_name_ok(NULL));
    assert_false(llm_tool_name_ok("files.read"));
    assert_false(llm_tool_name_ok("a b"));
    char name[LLM_TOOL_NAME_MAX + 2];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    assert_false(llm_tool_name_ok(name));
    name[LLM_TOOL_NAME_MAX] = '\0';
    assert_true(llm_tool_name_ok(name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_dates),
        cmocka_unit_test(test_retry_after_garbage),
        cmocka_unit_test(test_backoff_growth_and_cap),
        cmocka_unit_test(test_backoff_jitter_bounds),
        cmocka_unit_test(test_providers_valid),
        cmocka_unit_test(test_providers_bad_fields),
        cmocka_unit_test(test_providers_collects_every_problem),
        cmocka_unit_test(test_settings_build),
        cmocka_unit_test(test_request_json),
        cmocka_unit_test(test_answer_valid),
        cmocka_unit_test(test_answer_refused),
        cmocka_unit_test(test_answer_deep_nesting),
        cmocka_unit_test(test_error_text),
        cmocka_unit_test(test_providers_fallback),
        cmocka_unit_test(test_openai_request_tools),
        cmocka_unit_test(test_anthropic_request),
        cmocka_unit_test(test_ollama_request),
        cmocka_unit_test(test_openai_answer_tool_calls),
        cmocka_unit_test(test_answer_tool_call_limits),
        cmocka_unit_test(test_anthropic_answer),
        cmocka_unit_test(test_ollama_answer),
        cmocka_unit_test(test_error_text_shapes),
        cmocka_unit_test(test_protocol_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
