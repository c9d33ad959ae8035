/* The embeddings answers of the OpenAI and Ollama types, read strictly: the
 * valid shapes (OpenAI's data placed by index), and every way an answer can
 * be wrong (not JSON, wrong counts, a vector of another length, strings,
 * numbers outside float range, dimensions past the limit, the provider's own
 * error), then a bounded fuzz run of mutated answers that must each either
 * parse into consistent vectors or be refused with a reason. */
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

typedef int (*parse_fn)(const char *body, size_t len, size_t expected, llm_embedding *out,
                        const char **reason, char *detail, size_t detail_size);

typedef struct parsed {
    int rc;
    const char *reason;
    char detail[512];
    llm_embedding e;
} parsed;

static void run(parse_fn fn, const char *body, size_t expected, parsed *p)
{
    memset(p, 0, sizeof *p);
    p->rc = fn(body, body ? strlen(body) : 0, expected, &p->e, &p->reason, p->detail,
               sizeof p->detail);
}

/* Refused with this reason and a detail containing `words`. */
static void assert_refused(parse_fn fn, const char *body, size_t expected, const char *reason,
                           const char *words)
{
    parsed p;
    run(fn, body, expected, &p);
    if (p.rc == 0)
        fail_msg("accepted: %s", body);
    assert_int_equal(p.rc, CX_EPARSE);
    assert_string_equal(p.reason, reason);
    if (!strstr(p.detail, words))
        fail_msg("detail \"%s\" lacks \"%s\"", p.detail, words);
    assert_null(p.e.vectors);
    assert_int_equal(p.e.count, 0);
}

static void test_request_body(void **state)
{
    (void)state;
    const char *texts[] = {"first text", "second \"quoted\""};
    json_t *body = llm_embed_request_json(texts, 2, "text-embedding-3-small");
    assert_non_null(body);
    assert_string_equal(json_string_value(json_object_get(body, "model")),
                        "text-embedding-3-small");
    json_t *input = json_object_get(body, "input");
    assert_int_equal(json_array_size(input), 2);
    assert_string_equal(json_string_value(json_array_get(input, 1)), "second \"quoted\"");
    json_decref(body);
    assert_null(llm_embed_request_json(texts, 0, "m"));
    assert_null(llm_embed_request_json(texts, 2, NULL));
    const char *bad[] = {"ok", NULL};
    assert_null(llm_embed_request_json(bad, 2, "m"));
    const char *invalid[] = {"\xff\xfe"};
    assert_null(llm_embed_request_json(invalid, 1, "m"));
}

static void test_openai_valid(void **state)
{
    (void)state;
    parsed p;
    /* out of order: placed by index */
    run(llm_openai_parse_embeddings,
        "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":1,\"embedding\":"
        "[0.5,-1,2]},{\"object\":\"embedding\",\"index\":0,\"embedding\":[1,0,-0.25]}],"
        "\"model\":\"m\",\"usage\":{\"prompt_tokens\":7,\"total_tokens\":7}}",
        2, &p);
    assert_int_equal(p.rc, 0);
    assert_null(p.reason);
    assert_int_equal(p.e.count, 2);
    assert_int_equal(p.e.dim, 3);
    assert_int_equal(p.e.prompt_tokens, 7);
    assert_true(p.e.vectors[0] == 1.0f && p.e.vectors[2] == -0.25f);
    assert_true(p.e.vectors[3] == 0.5f && p.e.vectors[4] == -1.0f && p.e.vectors[5] == 2.0f);
    llm_embedding_free(&p.e);
    assert_null(p.e.vectors);
    /* without indexes: by position; no usage */
    run(llm_openai_parse_embeddings, "{\"data\":[{\"embedding\":[3]},{\"embedding\":[4]}]}", 2,
        &p);
    assert_int_equal(p.rc, 0);
    assert_true(p.e.vectors[0] == 3.0f && p.e.vectors[1] == 4.0f);
    llm_embedding_free(&p.e);
    /* the largest dimension */
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appends(&sb, "{\"data\":[{\"index\":0,\"embedding\":[");
    for (unsigned i = 0; i < LLM_EMBED_MAX_DIM; i++)
        strbuf_appendf(&sb, "%s0.001", i ? "," : "");
    strbuf_appends(&sb, "]}]}");
    run(llm_openai_parse_embeddings, sb.data, 1, &p);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.e.dim, LLM_EMBED_MAX_DIM);
    llm_embedding_free(&p.e);
    strbuf_free(&sb);
}

static void test_openai_refused(void **state)
{
    (void)state;
    parse_fn f = llm_openai_parse_embeddings;
    const char *M = LLM_REASON_MALFORMED;
    assert_refused(f, "", 1, M, "empty");
    assert_refused(f, "not json", 1, M, "not JSON");
    assert_refused(f, "{\"data\":[{\"embedding\":[1,2]}", 1, M, "not JSON");
    assert_refused(f, "[1,2]", 1, M, "not an object");
    assert_refused(f, "{\"object\":\"list\"}", 1, M, "no \"data\" list");
    assert_refused(f, "{\"error\":{\"message\":\"model not found\",\"type\":\"x\"}}", 1, M,
                   "model not found");
    assert_refused(f, "{\"data\":{}}", 1, M, "no \"data\" list");
    assert_refused(f, "{\"data\":[]}", 2, LLM_REASON_EMPTY, "no embeddings for 2 texts");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[1]}]}", 2, M,
                   "1 embeddings for 2 texts");
    assert_refused(f,
                   "{\"data\":[{\"index\":0,\"embedding\":[1]},{\"index\":1,\"embedding\":[1]}]}",
                   1, M, "2 embeddings for 1 texts");
    assert_refused(f, "{\"data\":[1]}", 1, M, "data[0] is not an object");
    assert_refused(f, "{\"data\":[{\"index\":0}]}", 1, M, "not a list of numbers");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":\"AAAAAA==\"}]}", 1, M,
                   "not a list of numbers");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[]}]}", 1, M, "has 0 numbers");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[1,\"2\"]}]}", 1, M,
                   "embedding[1] is not a finite number");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[1,null]}]}", 1, M,
                   "not a finite number");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[[1]]}]}", 1, M,
                   "not a finite number");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[NaN]}]}", 1, M, "not JSON");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[1e39]}]}", 1, M,
                   "not a finite number");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[1e400]}]}", 1, M, "not JSON");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[1,2]},{\"index\":1,"
                      "\"embedding\":[1,2,3]}]}",
                   2, M, "3 dimensions, the first embedding 2");
    assert_refused(f, "{\"data\":[{\"index\":1,\"embedding\":[1]},{\"index\":1,"
                      "\"embedding\":[2]}]}",
                   2, M, "index 1 is given twice");
    assert_refused(f, "{\"data\":[{\"index\":2,\"embedding\":[1]},{\"index\":0,"
                      "\"embedding\":[2]}]}",
                   2, M, "from 0 to 1");
    assert_refused(f, "{\"data\":[{\"index\":-1,\"embedding\":[1]}]}", 1, M, "index");
    assert_refused(f, "{\"data\":[{\"index\":\"0\",\"embedding\":[1]}]}", 1, M, "index");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[1]}],\"usage\":{\"prompt_tokens\":"
                      "-3}}",
                   1, M, "usage");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[1]}]}", 0, M, "1 to");
    assert_refused(f, "{\"data\":[{\"index\":0,\"embedding\":[1]}]}", LLM_EMBED_MAX_TEXTS + 1,
                   M, "1 to");
    /* one number past the dimension limit */
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appends(&sb, "{\"data\":[{\"index\":0,\"embedding\":[");
    for (unsigned i = 0; i <= LLM_EMBED_MAX_DIM; i++)
        strbuf_appendf(&sb, "%s1", i ? "," : "");
    strbuf_appends(&sb, "]}]}");
    assert_refused(f, sb.data, 1, M, "an embedding has 1 to 8192");
    strbuf_free(&sb);
}

static void test_ollama(void **state)
{
    (void)state;
    parsed p;
    run(llm_ollama_parse_embeddings,
        "{\"model\":\"nomic-embed-text\",\"embeddings\":[[0.1,0.2],[0.3,0.4],[-1,1]],"
        "\"total_duration\":14143917,\"prompt_eval_count\":8}",
        3, &p);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.e.count, 3);
    assert_int_equal(p.e.dim, 2);
    assert_int_equal(p.e.prompt_tokens, 8);
    assert_true(fabsf(p.e.vectors[3] - 0.4f) < 1e-6f && p.e.vectors[4] == -1.0f);
    llm_embedding_free(&p.e);
    parse_fn f = llm_ollama_parse_embeddings;
    const char *M = LLM_REASON_MALFORMED;
    assert_refused(f, "{\"error\":\"model \\\"x\\\" not found, try pulling it first\"}", 1, M,
                   "not found");
    assert_refused(f, "{\"embedding\":[1,2]}", 1, M, "no \"embeddings\" list");
    assert_refused(f, "{\"embeddings\":[]}", 1, LLM_REASON_EMPTY, "no embeddings");
    assert_refused(f, "{\"embeddings\":[[1],[2]]}", 1, M, "2 embeddings for 1 texts");
    assert_refused(f, "{\"embeddings\":[[1],[2,3]]}", 2, M, "embeddings[1] has 2 dimensions");
    assert_refused(f, "{\"embeddings\":[[1],\"x\"]}", 2, M, "embeddings[1] is not a list");
    assert_refused(f, "{\"embeddings\":[[true]]}", 1, M, "not a finite number");
    assert_refused(f, "{\"embeddings\":[[-3.5e38]]}", 1, M, "not a finite number");
    assert_refused(f, "{\"embeddings\":[[1]],\"prompt_eval_count\":\"8\"}", 1, M,
                   "prompt_eval_count");
    /* a whole number past 64 bits is read as a real, still finite */
    run(f, "{\"embeddings\":[[123456789012345678901234567890]]}", 1, &p);
    assert_int_equal(p.rc, 0);
    assert_true(p.e.vectors[0] > 1e29f);
    llm_embedding_free(&p.e);
}

/* xorshift: the same mutations every run. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void mutate(char *buf, size_t *len, size_t cap)
{
    static const char pieces[] = "{}[],:\"0123456789.-eE ntrufalsindex";
    switch (next_random() % 4) {
    case 0: /* change a byte */
        if (*len)
            buf[next_random() % *len] = pieces[next_random() % (sizeof pieces - 1)];
        break;
    case 1: /* cut the end */
        if (*len)
            *len = next_random() % *len;
        break;
    case 2: /* drop a byte */
        if (*len) {
            size_t at = next_random() % *len;
            memmove(buf + at, buf + at + 1, *len - at - 1);
            (*len)--;
        }
        break;
    default: /* insert a byte */
        if (*len + 1 < cap) {
            size_t at = next_random() % (*len + 1);
            memmove(buf + at + 1, buf + at, *len - at);
            buf[at] = pieces[next_random() % (sizeof pieces - 1)];
            (*len)++;
        }
        break;
    }
    buf[*len] = '\0';
}

/* Whatever comes back is either refused with a reason, or exactly
 * `expected` finite vectors of one length. */
static void check_outcome(int rc, const char *reason, const llm_embedding *e, size_t expected)
{
    if (rc != 0) {
        assert_int_equal(rc, CX_EPARSE);
        assert_non_null(reason);
        assert_null(e->vectors);
        return;
    }
    assert_int_equal(e->count, expected);
    assert_true(e->dim >= 1 && e->dim <= LLM_EMBED_MAX_DIM);
    for (size_t i = 0; i < e->count * e->dim; i++)
        assert_true(isfinite(e->vectors[i]));
}

static void fuzz_one(parse_fn fn, const char *seed, size_t expected, unsigned rounds)
{
    char buf[512];
    for (unsigned r = 0; r < rounds; r++) {
        size_t len = strlen(seed);
        memcpy(buf, seed, len + 1);
        unsigned changes = 1 + (unsigned)(next_random() % 4);
        for (unsigned c = 0; c < changes; c++)
            mutate(buf, &len, sizeof buf);
        llm_embedding e;
        const char *reason = NULL;
        char detail[256];
        int rc = fn(buf, len, expected, &e, &reason, detail, sizeof detail);
        check_outcome(rc, reason, &e, expected);
        llm_embedding_free(&e);
    }
}

static void test_fuzz(void **state)
{
    (void)state;
    fuzz_one(llm_openai_parse_embeddings,
             "{\"data\":[{\"index\":1,\"embedding\":[0.5,-1,2]},{\"index\":0,\"embedding\":"
             "[1,0,-0.25]}],\"usage\":{\"prompt_tokens\":7}}",
             2, 20000);
    fuzz_one(llm_ollama_parse_embeddings,
             "{\"embeddings\":[[0.1,0.2],[0.3,0.4]],\"prompt_eval_count\":8}", 2, 20000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_body), cmocka_unit_test(test_openai_valid),
        cmocka_unit_test(test_openai_refused), cmocka_unit_test(test_ollama),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
