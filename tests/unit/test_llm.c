/* Unit tests for the pure parts of the LLM client: Retry-After, backoff,
 * provider settings, and the OpenAI request and answer formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        {"{\"claude\": {\"type\": \"anthropic\"}}",
         "llm.providers.claude.type: provider type 'anthropic' is not supported yet by this "
         "version"},
        {"{\"anthropic\": {}}",
         "llm.providers.anthropic: provider type 'anthropic' is not supported yet by this "
         "version"},
        {"{\"o\": {\"type\": \"ollama\"}}", "provider type 'ollama' is not supported yet"},
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
        {"{\"openai\": {\"fallback\": [\"local\"]}}",
         "llm.providers.openai.fallback: fallback providers arrive in a later version"},
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
                           "{\"type\": \"anthropic\", \"api_key\": \"" SECRET "\"}}",
                           &n);
    assert_int_equal(n, 4);
    assert_non_null(strstr(all, ".timeout:"));
    assert_non_null(strstr(all, ".retries:"));
    assert_non_null(strstr(all, ".max_concurrency:"));
    assert_non_null(strstr(all, "'anthropic'"));
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
    llm_openai_error_text(body, strlen(body), SECRET, out, sizeof out);
    assert_string_equal(out, "\"Incorrect API key provided: ***.\"");

    body = "{\"error\":\"model not found\"}";
    llm_openai_error_text(body, strlen(body), NULL, out, sizeof out);
    assert_string_equal(out, "\"model not found\"");

    body = "<html>\n<b>502</b>\x01</html>";
    llm_openai_error_text(body, strlen(body), NULL, out, sizeof out);
    assert_non_null(strstr(out, "<html>\\n<b>502</b>"));
    assert_null(strchr(out, '\n'));
    assert_null(strchr(out, '\x01'));

    llm_openai_error_text("", 0, NULL, out, sizeof out);
    assert_string_equal(out, "");

    /* A long message is cut; a key straddling the cut is still hidden. */
    char longer[1024];
    memset(longer, 'a', 190);
    snprintf(longer + 190, sizeof longer - 190, "%s tail", SECRET);
    json_t *obj = json_pack("{s:{s:s}}", "error", "message", longer);
    char *text = json_dumps(obj, JSON_COMPACT);
    llm_openai_error_text(text, strlen(text), SECRET, out, sizeof out);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
