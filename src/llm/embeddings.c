/* Embeddings on the wire: the request body (the same for OpenAI and Ollama)
 * and each type's answer.
 *
 *   OpenAI  POST {base_url}/embeddings  {"model", "input": [texts]}
 *           -> {"data": [{"index": i, "embedding": [numbers]}], "usage": {...}}
 *   Ollama  POST {base_url}/api/embed   {"model", "input": [texts]}
 *           -> {"embeddings": [[numbers]], "prompt_eval_count": n}
 *
 * The answer comes from a server we do not control and its vectors go
 * straight into the memory index, so it is read strictly: exactly one vector
 * per text (OpenAI's placed by `index`, each index once), every vector with
 * the same number of dimensions from 1 to LLM_EMBED_MAX_DIM, every number
 * finite and within float range. The whole answer is checked before the
 * vectors are allocated, so a short answer cannot make us reserve memory for
 * a long one. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "llm/llm.h"
#include "llm/llm_internal.h"

#define WHERE_MAX 48       /* "data[2047].embedding" */
#define ERROR_SHOWN_MAX 200

void llm_embedding_free(llm_embedding *e)
{
    if (!e)
        return;
    free(e->vectors);
    memset(e, 0, sizeof *e);
}

json_t *llm_embed_request_json(const char *const *texts, size_t count, const char *model)
{
    if (!texts || count == 0 || !model)
        return NULL;
    json_t *input = json_array();
    for (size_t i = 0; input && i < count; i++) {
        if (!texts[i] || json_array_append_new(input, json_string(texts[i])) != 0) {
            json_decref(input);
            return NULL;
        }
    }
    json_t *body = json_object();
    if (!body || json_object_set_new(body, "model", json_string(model)) != 0 ||
        json_object_set_new(body, "input", input) != 0) {
        json_decref(body);
        return NULL;
    }
    return body;
}

typedef struct reader {
    size_t expected;
    const char **reason;
    char *detail;
    size_t detail_size;
} reader;

/* Checks one vector: a list of 1..LLM_EMBED_MAX_DIM finite float numbers,
 * as long as the first one (*dim, 0 before the first). */
static int check_vector(reader *r, const json_t *vec, const char *where, size_t *dim)
{
    if (!json_is_array(vec))
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "%s is not a list of numbers", where);
    size_t n = json_array_size(vec);
    if (n == 0 || n > LLM_EMBED_MAX_DIM)
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "%s has %zu numbers; an embedding has 1 to %u", where, n,
                                 LLM_EMBED_MAX_DIM);
    if (*dim && n != *dim)
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "%s has %zu dimensions, the first embedding %zu", where, n,
                                 *dim);
    for (size_t j = 0; j < n; j++) {
        const json_t *v = json_array_get(vec, j);
        double d = json_is_number(v) ? json_number_value(v) : NAN;
        if (!isfinite(d) || fabs(d) > FLT_MAX)
            return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                     "%s[%zu] is not a finite number", where, j);
    }
    *dim = n;
    return 0;
}

static void copy_vector(const json_t *vec, float *out)
{
    for (size_t j = 0; j < json_array_size(vec); j++)
        out[j] = (float)json_number_value(json_array_get(vec, j));
}

/* vecs[i] is the (checked) vector of text i: copy them all into out. */
static int fill(reader *r, const json_t *const *vecs, size_t dim, llm_embedding *out)
{
    out->vectors = calloc(r->expected * dim, sizeof *out->vectors);
    if (!out->vectors)
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "out of memory reading %zu embeddings of %zu dimensions",
                                 r->expected, dim);
    for (size_t i = 0; i < r->expected; i++)
        copy_vector(vecs[i], out->vectors + i * dim);
    out->count = r->expected;
    out->dim = dim;
    return 0;
}

/* A list that is not there: the provider's own error when it sent one. */
static int refuse_missing(reader *r, const json_t *root, const char *key)
{
    const json_t *error = json_object_get(root, "error");
    const json_t *message = json_is_object(error) ? json_object_get(error, "message") : error;
    if (!json_is_string(message))
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "the answer has no \"%s\" list", key);
    char shown[ERROR_SHOWN_MAX];
    text_quote(json_string_value(message), shown, sizeof shown);
    return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                             "the answer has no \"%s\" list, only an error: %s", key, shown);
}

static int check_count(reader *r, const json_t *list, const char *key)
{
    size_t n = json_array_size(list);
    if (n == 0)
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_EMPTY,
                                 "the answer has no embeddings for %zu texts", r->expected);
    if (n != r->expected)
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "\"%s\" has %zu embeddings for %zu texts", key, n,
                                 r->expected);
    return 0;
}

/* Where item `at` of OpenAI's data goes: its index (each once), or its
 * position when it has none. */
static int openai_slot(reader *r, const json_t *item, size_t at, const json_t **vecs,
                       size_t *slot)
{
    if (!json_is_object(item))
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "data[%zu] is not an object", at);
    const json_t *index = json_object_get(item, "index");
    *slot = at;
    if (index && !json_is_null(index)) {
        json_int_t i = json_is_integer(index) ? json_integer_value(index) : -1;
        if (i < 0 || (uint64_t)i >= r->expected)
            return llm_answer_refuse(r->reason, r->detail, r->detail_size,
                                     LLM_REASON_MALFORMED,
                                     "data[%zu].index is not a whole number from 0 to %zu", at,
                                     r->expected - 1);
        *slot = (size_t)i;
    }
    if (vecs[*slot])
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "data[%zu].index %zu is given twice", at, *slot);
    return 0;
}

static int read_openai(reader *r, const json_t *root, const json_t **vecs, llm_embedding *out)
{
    if (!json_is_object(root))
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "the answer is JSON but not an object");
    const json_t *data = json_object_get(root, "data");
    if (!json_is_array(data))
        return refuse_missing(r, root, "data");
    int rc = check_count(r, data, "data");
    size_t dim = 0;
    for (size_t i = 0; rc == 0 && i < r->expected; i++) {
        const json_t *item = json_array_get(data, i);
        size_t slot = i;
        char where[WHERE_MAX];
        snprintf(where, sizeof where, "data[%zu].embedding", i);
        rc = openai_slot(r, item, i, vecs, &slot);
        if (rc == 0)
            rc = check_vector(r, json_object_get(item, "embedding"), where, &dim);
        if (rc == 0)
            vecs[slot] = json_object_get(item, "embedding");
    }
    const json_t *usage = json_object_get(root, "usage");
    if (rc == 0 && usage && !json_is_null(usage) &&
        (!json_is_object(usage) || !llm_read_tokens(usage, "prompt_tokens", &out->prompt_tokens)))
        rc = llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                               "\"usage\" token counts are not non-negative numbers");
    return rc == 0 ? fill(r, vecs, dim, out) : rc;
}

static int read_ollama(reader *r, const json_t *root, const json_t **vecs, llm_embedding *out)
{
    if (!json_is_object(root))
        return llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                                 "the answer is JSON but not an object");
    const json_t *list = json_object_get(root, "embeddings");
    if (!json_is_array(list))
        return refuse_missing(r, root, "embeddings");
    int rc = check_count(r, list, "embeddings");
    size_t dim = 0;
    for (size_t i = 0; rc == 0 && i < r->expected; i++) {
        char where[WHERE_MAX];
        snprintf(where, sizeof where, "embeddings[%zu]", i);
        vecs[i] = json_array_get(list, i);
        rc = check_vector(r, vecs[i], where, &dim);
    }
    if (rc == 0 && !llm_read_tokens(root, "prompt_eval_count", &out->prompt_tokens))
        rc = llm_answer_refuse(r->reason, r->detail, r->detail_size, LLM_REASON_MALFORMED,
                               "\"prompt_eval_count\" is not a non-negative number");
    return rc == 0 ? fill(r, vecs, dim, out) : rc;
}

typedef int (*read_fn)(reader *r, const json_t *root, const json_t **vecs, llm_embedding *out);

static int parse(const char *body, size_t len, size_t expected, read_fn read, llm_embedding *out,
                 const char **reason, char *detail, size_t detail_size)
{
    memset(out, 0, sizeof *out);
    *reason = NULL;
    if (detail_size)
        detail[0] = '\0';
    reader r = {.expected = expected, .reason = reason, .detail = detail,
                .detail_size = detail_size};
    if (expected == 0 || expected > LLM_EMBED_MAX_TEXTS)
        return llm_answer_refuse(reason, detail, detail_size, LLM_REASON_MALFORMED,
                                 "%zu texts asked for; 1 to %u can be", expected,
                                 LLM_EMBED_MAX_TEXTS);
    json_t *root = llm_answer_load_max(body, len, LLM_EMBED_MAX_RESPONSE, reason, detail,
                                       detail_size);
    if (!root)
        return CX_EPARSE;
    const json_t **vecs = calloc(expected, sizeof *vecs);
    int rc = vecs ? read(&r, root, vecs, out)
                  : llm_answer_refuse(reason, detail, detail_size, LLM_REASON_MALFORMED,
                                      "out of memory reading the answer");
    free(vecs);
    json_decref(root);
    if (rc != 0)
        llm_embedding_free(out);
    return rc;
}

int llm_openai_parse_embeddings(const char *body, size_t len, size_t expected,
                                llm_embedding *out, const char **reason, char *detail,
                                size_t detail_size)
{
    return parse(body, len, expected, read_openai, out, reason, detail, detail_size);
}

int llm_ollama_parse_embeddings(const char *body, size_t len, size_t expected,
                                llm_embedding *out, const char **reason, char *detail,
                                size_t detail_size)
{
    return parse(body, len, expected, read_ollama, out, reason, detail, detail_size);
}
