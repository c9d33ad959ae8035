/* Unit tests for memory/embed: the builtin lexical embedder and
 * normalisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "memory/embed.h"

#define DIM EMBED_BUILTIN_DIM

/* ---- helpers ----------------------------------------------------------- */

static void embed_text(const char *text, float *out)
{
    assert_int_equal(embed_builtin(text, strlen(text), out), 0);
}

static double dot(const float *a, const float *b)
{
    double s = 0;
    for (size_t i = 0; i < DIM; i++)
        s += (double)a[i] * b[i];
    return s;
}

static double similarity(const char *a, const char *b)
{
    float va[DIM], vb[DIM];
    embed_text(a, va);
    embed_text(b, vb);
    return dot(va, vb);
}

static void assert_unit(const float *v)
{
    assert_true(fabs(dot(v, v) - 1.0) < 1e-5);
}

static void assert_zero(const float *v)
{
    for (size_t i = 0; i < DIM; i++)
        assert_true(v[i] == 0.0f);
}

static void assert_same_embedding(const char *a, size_t la, const char *b, size_t lb)
{
    float va[DIM], vb[DIM];
    assert_int_equal(embed_builtin(a, la, va), 0);
    assert_int_equal(embed_builtin(b, lb, vb), 0);
    assert_memory_equal(va, vb, sizeof va);
}

static char *random_words(size_t len, uint64_t seed)
{
    char *s = malloc(len);
    assert_non_null(s);
    for (size_t i = 0; i < len; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        unsigned r = (unsigned)(seed >> 33) % 30;
        s[i] = r < 26 ? (char)('a' + r) : ' ';
    }
    return s;
}

/* ---- tests --------------------------------------------------------------- */

static void test_deterministic_and_unit_length(void **state)
{
    (void)state;
    const char *text = "The deploy to production failed at 03:00 because the disk was full.";
    float a[DIM], b[DIM];
    embed_text(text, a);
    embed_text(text, b);
    assert_memory_equal(a, b, sizeof a);
    assert_unit(a);
    embed_text("x", a); /* one short word */
    assert_unit(a);
}

static void test_no_words_give_zero(void **state)
{
    (void)state;
    float v[DIM];
    memset(v, 0x7f, sizeof v); /* garbage that must be overwritten */
    embed_text("", v);
    assert_zero(v);
    embed_text("  !!! ... --- ,;:()[]{} \t\n", v);
    assert_zero(v);
    assert_int_equal(embed_builtin(NULL, 0, v), 0);
    assert_zero(v);
    assert_int_equal(embed_builtin("\0\0\0", 3, v), 0);
    assert_zero(v);
}

static void test_case_and_punctuation_ignored(void **state)
{
    (void)state;
    const char *a = "Hello, World! Caxton RUNS agents.";
    const char *b = "hello world caxton runs agents";
    assert_same_embedding(a, strlen(a), b, strlen(b));
    const char *c = "hello-world";
    const char *d = "HELLO world";
    assert_same_embedding(c, strlen(c), d, strlen(d));
}

static void test_similar_texts_are_closer(void **state)
{
    (void)state;
    const char *base = "the database backup job failed last night";
    double near = similarity(base, "last night the database backups failed");
    double far = similarity(base, "our quarterly marketing budget grew eleven percent");
    assert_true(near > 0.5);
    assert_true(far < 0.2);
    assert_true(near > far + 0.3);
    /* inflections share trigrams, so they count for something */
    assert_true(similarity("deploying", "deployment") > similarity("deploying", "kitchen"));
    /* word order matters through bigrams, but only a little */
    double swapped = similarity("dog bites man", "man bites dog");
    assert_true(swapped < 0.999 && swapped > 0.5);
}

static void test_only_the_first_bytes_are_read(void **state)
{
    (void)state;
    size_t big = 1u << 20;
    char *text = random_words(big, 1);
    float whole[DIM], head[DIM];
    assert_int_equal(embed_builtin(text, big, whole), 0);
    assert_int_equal(embed_builtin(text, EMBED_TEXT_MAX, head), 0);
    assert_memory_equal(whole, head, sizeof whole);
    assert_unit(whole);
    /* what lies past the limit changes nothing */
    memset(text + EMBED_TEXT_MAX, 'z', big - EMBED_TEXT_MAX);
    assert_int_equal(embed_builtin(text, big, head), 0);
    assert_memory_equal(whole, head, sizeof whole);
    free(text);
}

static void test_text_with_many_distinct_features(void **state)
{
    (void)state;
    /* one 64 KiB word of random word bytes (letters and bytes >= 0x80):
     * more distinct trigrams than the counting table holds, so the counts
     * are flushed along the way */
    char *text = random_words(EMBED_TEXT_MAX, 7);
    for (size_t i = 0; i < EMBED_TEXT_MAX; i++)
        if (text[i] == ' ' || i % 3 == 0)
            text[i] = (char)(0x80 | (i * 2654435761u >> 7));
    float a[DIM], b[DIM];
    assert_int_equal(embed_builtin(text, EMBED_TEXT_MAX, a), 0);
    assert_int_equal(embed_builtin(text, EMBED_TEXT_MAX, b), 0);
    assert_memory_equal(a, b, sizeof a);
    assert_unit(a);
    free(text);
}

static void test_bytes_beyond_ascii(void **state)
{
    (void)state;
    float v[DIM];
    /* UTF-8 letters stay inside words: "café" is one word, not "caf" */
    assert_true(similarity("café au lait", "caf au lait") < 0.999);
    const char *e1 = "Café", *e2 = "café";
    assert_same_embedding(e1, strlen(e1), e2, strlen(e2));
    /* invalid UTF-8 and NUL bytes: no crash, still a unit vector */
    static const char junk[] = "\xff\xfe abc \x00 def \xc3\x28 \xe2\x82 \xf0\x9f\x98\x80\x80\xc3";
    assert_int_equal(embed_builtin(junk, sizeof junk - 1, v), 0);
    assert_unit(v);
    /* a NUL separates words like a space does */
    assert_same_embedding("abc\0def", 7, "abc def", 7);
}

static void test_normalise(void **state)
{
    (void)state;
    float v[4] = {3, 4, 0, 0};
    embed_normalise(v, 4);
    assert_true(fabsf(v[0] - 0.6f) < 1e-6f && fabsf(v[1] - 0.8f) < 1e-6f);
    float z[3] = {0, 0, 0};
    embed_normalise(z, 3);
    assert_true(z[0] == 0 && z[1] == 0 && z[2] == 0);
    float bad[3] = {1, NAN, 2};
    embed_normalise(bad, 3);
    assert_true(bad[0] == 0 && bad[1] == 0 && bad[2] == 0);
    float tiny[2] = {1e-30f, 0};
    embed_normalise(tiny, 2);
    assert_true(fabsf(tiny[0] - 1.0f) < 1e-6f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_and_unit_length),
        cmocka_unit_test(test_no_words_give_zero),
        cmocka_unit_test(test_case_and_punctuation_ignored),
        cmocka_unit_test(test_similar_texts_are_closer),
        cmocka_unit_test(test_only_the_first_bytes_are_read),
        cmocka_unit_test(test_text_with_many_distinct_features),
        cmocka_unit_test(test_bytes_beyond_ascii),
        cmocka_unit_test(test_normalise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
