/* Unit tests for memory/vindex: the slot bookkeeping, and searches checked
 * against a brute-force reference on random data with both kernels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "memory/vindex.h"

#define REF_MAX 2000
#define REF_DIM_MAX 400

/* ---- helpers ----------------------------------------------------------- */

static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t random_below(uint64_t *state, size_t n)
{
    return (size_t)(next_random(state) % n);
}

static void random_unit(uint64_t *state, float *v, size_t dim)
{
    double norm = 0;
    for (size_t i = 0; i < dim; i++) {
        v[i] = (float)((double)(next_random(state) >> 40) / (double)(1u << 23) - 1.0);
        norm += (double)v[i] * v[i];
    }
    for (size_t i = 0; i < dim; i++)
        v[i] = (float)(v[i] / sqrt(norm));
}

/* What the index should hold, kept the simple way. */
typedef struct ref_row {
    int64_t id;
    uint32_t scope;
    float vec[REF_DIM_MAX];
} ref_row;

typedef struct reference {
    size_t dim, count;
    ref_row rows[REF_MAX];
} reference;

static reference *ref_new(size_t dim)
{
    reference *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->dim = dim;
    return r;
}

static ref_row *ref_find(reference *r, int64_t id)
{
    for (size_t i = 0; i < r->count; i++)
        if (r->rows[i].id == id)
            return &r->rows[i];
    return NULL;
}

static void ref_put(reference *r, int64_t id, uint32_t scope, const float *vec)
{
    ref_row *row = ref_find(r, id);
    if (!row) {
        assert_true(r->count < REF_MAX);
        row = &r->rows[r->count++];
    }
    row->id = id;
    row->scope = scope;
    memcpy(row->vec, vec, r->dim * sizeof(float));
}

static bool ref_remove(reference *r, int64_t id)
{
    ref_row *row = ref_find(r, id);
    if (!row)
        return false;
    *row = r->rows[--r->count];
    return true;
}

static int hit_order(const void *a, const void *b)
{
    const vindex_hit *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool ref_allowed(const vindex_filter *f, uint32_t scope)
{
    if (!f)
        return true;
    for (size_t i = 0; i < f->scope_count; i++)
        if (f->scopes[i] == scope)
            return true;
    return false;
}

/* Scores with vindex_dot (the same arithmetic as the scan, so the expected
 * scores and ties are exact), sorts everything, keeps the first k. */
static size_t ref_search(const reference *r, const float *q, size_t k, float min_score,
                         const vindex_filter *f, vindex_hit *out)
{
    vindex_hit *all = calloc(r->count + 1, sizeof *all);
    assert_non_null(all);
    size_t n = 0;
    for (size_t i = 0; i < r->count; i++) {
        float s = vindex_dot(q, r->rows[i].vec, r->dim);
        if (s >= min_score && ref_allowed(f, r->rows[i].scope))
            all[n++] = (vindex_hit){r->rows[i].id, s};
    }
    qsort(all, n, sizeof *all, hit_order);
    if (k > VINDEX_K_MAX)
        k = VINDEX_K_MAX;
    if (n > k)
        n = k;
    memcpy(out, all, n * sizeof *out);
    free(all);
    return n;
}

static void assert_same_hits(const vindex_hit *a, size_t na, const vindex_hit *b, size_t nb)
{
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(a[i].id, b[i].id);
        assert_true(a[i].score == b[i].score);
    }
}

/* Searches both and compares, for a few k, thresholds and filters. */
static void check_searches(const vindex *vi, const reference *r, uint64_t *rng)
{
    static const size_t ks[] = {1, 3, 10, 64, 1500};
    static const uint32_t some[] = {1, 3};
    static const uint32_t none[] = {77};
    vindex_filter filters[] = {{some, 2}, {none, 1}};
    float q[REF_DIM_MAX];
    vindex_hit *got = calloc(1500, sizeof *got), *want = calloc(1500, sizeof *want);
    assert_non_null(got);
    assert_non_null(want);
    for (size_t round = 0; round < 3; round++) {
        random_unit(rng, q, r->dim);
        for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
            size_t ng = vindex_search(vi, q, ks[i], -2.0f, NULL, got);
            size_t nw = ref_search(r, q, ks[i], -2.0f, NULL, want);
            assert_same_hits(got, ng, want, nw);
            ng = vindex_search(vi, q, ks[i], 0.1f, NULL, got);
            nw = ref_search(r, q, ks[i], 0.1f, NULL, want);
            assert_same_hits(got, ng, want, nw);
            for (size_t f = 0; f < 2; f++) {
                ng = vindex_search(vi, q, ks[i], -2.0f, &filters[f], got);
                nw = ref_search(r, q, ks[i], -2.0f, &filters[f], want);
                assert_same_hits(got, ng, want, nw);
            }
        }
    }
    free(got);
    free(want);
}

static void fill_random(vindex *vi, reference *r, size_t n, uint64_t *rng)
{
    float v[REF_DIM_MAX];
    for (size_t i = 0; i < n; i++) {
        random_unit(rng, v, r->dim);
        int64_t id = (int64_t)(next_random(rng) >> 1);
        uint32_t scope = (uint32_t)random_below(rng, 5);
        assert_int_equal(vindex_put(vi, id, scope, v), 0);
        ref_put(r, id, scope, v);
    }
}

static int portable_off(void **state)
{
    (void)state;
    vindex_force_portable(false);
    return 0;
}

/* ---- bookkeeping ------------------------------------------------------- */

static void test_new_checks_dim(void **state)
{
    (void)state;
    assert_null(vindex_new(0));
    assert_null(vindex_new(VINDEX_MAX_DIM + 1));
    vindex *vi = vindex_new(VINDEX_MAX_DIM);
    assert_non_null(vi);
    assert_int_equal(vindex_dim(vi), VINDEX_MAX_DIM);
    assert_int_equal(vindex_count(vi), 0);
    vindex_free(vi);
    vindex_free(NULL);
}

static void test_put_get_replace_remove(void **state)
{
    (void)state;
    vindex *vi = vindex_new(3);
    float a[3] = {1, 0, 0}, b[3] = {0, 1, 0}, out[3];
    assert_false(vindex_contains(vi, 7));
    assert_false(vindex_get(vi, 7, out));
    assert_false(vindex_remove(vi, 7));
    assert_int_equal(vindex_put(vi, 7, 1, a), 0);
    assert_true(vindex_contains(vi, 7));
    assert_true(vindex_get(vi, 7, out));
    assert_memory_equal(out, a, sizeof a);
    assert_int_equal(vindex_count(vi), 1);

    assert_int_equal(vindex_put(vi, 7, 2, b), 0); /* replaces, no new slot */
    assert_int_equal(vindex_count(vi), 1);
    assert_true(vindex_get(vi, 7, out));
    assert_memory_equal(out, b, sizeof b);
    uint32_t two = 2, one = 1;
    vindex_filter only2 = {&two, 1}, only1 = {&one, 1};
    vindex_hit hit;
    assert_int_equal(vindex_search(vi, b, 1, -2.0f, &only2, &hit), 1); /* the scope changed too */
    assert_int_equal(vindex_search(vi, b, 1, -2.0f, &only1, &hit), 0);

    assert_true(vindex_remove(vi, 7));
    assert_false(vindex_contains(vi, 7));
    assert_false(vindex_remove(vi, 7));
    assert_int_equal(vindex_count(vi), 0);
    assert_int_equal(vindex_put(vi, 7, 1, NULL), -1);
    vindex_free(vi);
}

static void test_swap_remove_keeps_other_ids(void **state)
{
    (void)state;
    vindex *vi = vindex_new(4);
    float v[4], out[4];
    for (int64_t id = 1; id <= 10; id++) {
        for (int d = 0; d < 4; d++)
            v[d] = (float)(id * 10 + d);
        assert_int_equal(vindex_put(vi, id, (uint32_t)id, v), 0);
    }
    /* a middle slot, then the last slot, then the first */
    assert_true(vindex_remove(vi, 4));
    assert_true(vindex_remove(vi, 9));
    assert_true(vindex_remove(vi, 1));
    assert_int_equal(vindex_count(vi), 7);
    for (int64_t id = 1; id <= 10; id++) {
        bool gone = id == 1 || id == 4 || id == 9;
        assert_int_equal(vindex_contains(vi, id), !gone);
        if (gone)
            continue;
        assert_true(vindex_get(vi, id, out));
        for (int d = 0; d < 4; d++)
            assert_true(out[d] == (float)(id * 10 + d));
        uint32_t scope = (uint32_t)id;
        vindex_filter f = {&scope, 1};
        vindex_hit hit;
        assert_int_equal(vindex_search(vi, out, 5, -1e30f, &f, &hit), 1);
        assert_int_equal(hit.id, id); /* the scope moved with its row */
    }
    vindex_free(vi);
}

static void test_large_and_negative_ids(void **state)
{
    (void)state;
    static const int64_t ids[] = {INT64_MIN, INT64_MAX, -1, 0, 1, INT64_MAX - 1,
                                  (int64_t)1 << 40, -((int64_t)1 << 40)};
    size_t n = sizeof ids / sizeof *ids;
    vindex *vi = vindex_new(2);
    for (size_t i = 0; i < n; i++) {
        float v[2] = {(float)i, 1};
        assert_int_equal(vindex_put(vi, ids[i], 0, v), 0);
    }
    assert_int_equal(vindex_count(vi), n);
    for (size_t i = 0; i < n; i++) {
        float out[2];
        assert_true(vindex_get(vi, ids[i], out));
        assert_true(out[0] == (float)i);
    }
    float q[2] = {1, 0};
    vindex_hit hits[3];
    assert_int_equal(vindex_search(vi, q, 3, -2.0f, NULL, hits), 3);
    assert_int_equal(hits[0].id, ids[n - 1]);
    for (size_t i = 0; i < n; i++)
        assert_true(vindex_remove(vi, ids[i]));
    assert_int_equal(vindex_count(vi), 0);
    vindex_free(vi);
}

static void test_clear_and_bytes(void **state)
{
    (void)state;
    vindex *vi = vindex_new(8);
    size_t empty = vindex_bytes(vi);
    float v[8] = {1};
    for (int64_t id = 0; id < 100; id++)
        assert_int_equal(vindex_put(vi, id, 0, v), 0);
    assert_true(vindex_bytes(vi) >= empty + 100 * 8 * sizeof(float));
    vindex_clear(vi);
    assert_int_equal(vindex_count(vi), 0);
    assert_int_equal(vindex_bytes(vi), empty);
    assert_false(vindex_contains(vi, 5));
    assert_int_equal(vindex_put(vi, 5, 0, v), 0); /* usable again */
    assert_true(vindex_contains(vi, 5));
    vindex_free(vi);
}

static void test_random_operations_match_reference(void **state)
{
    (void)state;
    const size_t dim = 5;
    uint64_t rng = 99;
    vindex *vi = vindex_new(dim);
    reference *r = ref_new(dim);
    float v[REF_DIM_MAX], out[REF_DIM_MAX];
    for (size_t op = 0; op < 10000; op++) {
        int64_t id = (int64_t)random_below(&rng, 600) - 100; /* some negative */
        if (random_below(&rng, 3) == 0) {
            assert_int_equal(vindex_remove(vi, id), ref_remove(r, id));
        } else {
            random_unit(&rng, v, dim);
            uint32_t scope = (uint32_t)random_below(&rng, 5);
            assert_int_equal(vindex_put(vi, id, scope, v), 0);
            ref_put(r, id, scope, v);
        }
        assert_int_equal(vindex_count(vi), r->count);
        if (op % 1000 == 999)
            check_searches(vi, r, &rng);
    }
    for (int64_t id = -100; id < 500; id++) {
        ref_row *row = ref_find(r, id);
        assert_int_equal(vindex_get(vi, id, out), row != NULL);
        if (row)
            assert_memory_equal(out, row->vec, dim * sizeof(float));
    }
    free(r);
    vindex_free(vi);
}

/* ---- search ------------------------------------------------------------ */

static void test_search_matches_reference(void **state)
{
    (void)state;
    static const size_t dims[] = {1, 3, 7, 8, 16, 17, 31, 32, 33, 384, 385};
    static const size_t counts[] = {1, 5, 63, 64, 65, 300};
    for (int portable = 0; portable <= 1; portable++) {
        vindex_force_portable(portable);
        for (size_t d = 0; d < sizeof dims / sizeof *dims; d++)
            for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
                uint64_t rng = dims[d] * 1000 + counts[c];
                vindex *vi = vindex_new(dims[d]);
                reference *r = ref_new(dims[d]);
                fill_random(vi, r, counts[c], &rng);
                check_searches(vi, r, &rng);
                free(r);
                vindex_free(vi);
            }
    }
    vindex_force_portable(false);
}

static void test_dot_matches_double(void **state)
{
    (void)state;
    uint64_t rng = 5;
    float a[REF_DIM_MAX], b[REF_DIM_MAX];
    for (int portable = 0; portable <= 1; portable++) {
        vindex_force_portable(portable);
        for (size_t dim = 1; dim <= 400; dim += 13) {
            random_unit(&rng, a, dim);
            random_unit(&rng, b, dim);
            double want = 0;
            for (size_t i = 0; i < dim; i++)
                want += (double)a[i] * b[i];
            assert_true(fabs(vindex_dot(a, b, dim) - want) < 1e-5);
        }
    }
    vindex_force_portable(false);
}

static void test_ties_go_to_smaller_id(void **state)
{
    (void)state;
    static const size_t dims[] = {3, 17, 384};
    for (size_t d = 0; d < sizeof dims / sizeof *dims; d++) {
        size_t dim = dims[d];
        vindex *vi = vindex_new(dim);
        float v[REF_DIM_MAX] = {0}, other[REF_DIM_MAX] = {0};
        uint64_t rng = 3;
        random_unit(&rng, v, dim);
        random_unit(&rng, other, dim);
        /* 200 equal vectors spread over several scan blocks, ids shuffled */
        for (int64_t i = 0; i < 200; i++) {
            assert_int_equal(vindex_put(vi, (i * 37) % 200 + 1000, 0, v), 0);
            assert_int_equal(vindex_put(vi, i + 5000, 0, other), 0);
        }
        vindex_hit hits[10];
        assert_int_equal(vindex_search(vi, v, 10, -2.0f, NULL, hits), 10);
        for (int64_t i = 0; i < 10; i++) {
            assert_int_equal(hits[i].id, 1000 + i);
            assert_true(hits[i].score == hits[0].score);
        }
        vindex_free(vi);
    }
}

static void test_min_score(void **state)
{
    (void)state;
    vindex *vi = vindex_new(2);
    float x[2] = {1, 0}, y[2] = {0, 1}, xy[2] = {0.6f, 0.8f};
    vindex_put(vi, 1, 0, x);
    vindex_put(vi, 2, 0, y);
    vindex_put(vi, 3, 0, xy);
    vindex_hit hits[3];
    assert_int_equal(vindex_search(vi, x, 3, 0.5f, NULL, hits), 2);
    assert_int_equal(hits[0].id, 1);
    assert_int_equal(hits[1].id, 3);
    assert_int_equal(vindex_search(vi, x, 3, 1.0f, NULL, hits), 1); /* inclusive */
    assert_int_equal(vindex_search(vi, x, 3, 1.5f, NULL, hits), 0);
    assert_int_equal(vindex_search(vi, x, 3, NAN, NULL, hits), 0);
    assert_int_equal(vindex_search(vi, x, 3, -INFINITY, NULL, hits), 3);
    vindex_free(vi);
}

static void test_scope_filters(void **state)
{
    (void)state;
    vindex *vi = vindex_new(2);
    float v[2] = {1, 0};
    for (int64_t id = 0; id < 50; id++)
        vindex_put(vi, id, (uint32_t)(id % 10), v);
    vindex_hit hits[50];
    static const uint32_t odd[] = {1, 3, 5, 7, 9};
    vindex_filter f = {odd, 5};
    assert_int_equal(vindex_search(vi, v, 50, -2.0f, &f, hits), 25);
    for (size_t i = 0; i < 25; i++)
        assert_int_equal(hits[i].id % 2, 1);
    static const uint32_t high[] = {9, 100, UINT32_MAX};
    f = (vindex_filter){high, 3};
    assert_int_equal(vindex_search(vi, v, 50, -2.0f, &f, hits), 5);
    f = (vindex_filter){odd, 0}; /* no scope allowed */
    assert_int_equal(vindex_search(vi, v, 50, -2.0f, &f, hits), 0);
    f = (vindex_filter){NULL, 3};
    assert_int_equal(vindex_search(vi, v, 50, -2.0f, &f, hits), 0);
    vindex_free(vi);
}

static void test_k_bounds_and_empty(void **state)
{
    (void)state;
    vindex *vi = vindex_new(3);
    float v[3] = {0, 0, 1};
    vindex_hit *hits = calloc(3000, sizeof *hits);
    assert_non_null(hits);
    assert_int_equal(vindex_search(vi, v, 10, -2.0f, NULL, hits), 0); /* empty */
    for (int64_t id = 0; id < 1500; id++)
        vindex_put(vi, id, 0, v);
    assert_int_equal(vindex_search(vi, v, 0, -2.0f, NULL, hits), 0);
    assert_int_equal(vindex_search(vi, v, 3000, -2.0f, NULL, hits), VINDEX_K_MAX);
    assert_int_equal(hits[VINDEX_K_MAX - 1].id, VINDEX_K_MAX - 1);
    assert_int_equal(vindex_search(vi, NULL, 10, -2.0f, NULL, hits), 0);
    for (int64_t id = 5; id < 1500; id++)
        vindex_remove(vi, id);
    assert_int_equal(vindex_search(vi, v, 10, -2.0f, NULL, hits), 5); /* k > count */
    free(hits);
    vindex_free(vi);
}

static void test_nan_vectors_are_never_hits(void **state)
{
    (void)state;
    vindex *vi = vindex_new(3);
    float good[3] = {1, 0, 0}, bad[3] = {NAN, 0, 0};
    vindex_put(vi, 1, 0, bad);
    vindex_put(vi, 2, 0, good);
    vindex_hit hits[2];
    assert_int_equal(vindex_search(vi, good, 2, -INFINITY, NULL, hits), 1);
    assert_int_equal(hits[0].id, 2);
    vindex_free(vi);
}

static void test_kernels_agree(void **state)
{
    (void)state;
    const char *name = vindex_kernel();
    assert_true(strcmp(name, "avx2") == 0 || strcmp(name, "portable") == 0);
    vindex_force_portable(true);
    assert_string_equal(vindex_kernel(), "portable");
    vindex_force_portable(false);
    assert_string_equal(vindex_kernel(), name);

    const size_t dim = 384;
    uint64_t rng = 11;
    vindex *vi = vindex_new(dim);
    reference *r = ref_new(dim);
    fill_random(vi, r, 2000, &rng);
    float q[REF_DIM_MAX];
    vindex_hit fast[20], slow[20];
    for (int round = 0; round < 20; round++) {
        random_unit(&rng, q, dim);
        size_t nf = vindex_search(vi, q, 20, -2.0f, NULL, fast);
        vindex_force_portable(true);
        size_t ns = vindex_search(vi, q, 20, -2.0f, NULL, slow);
        vindex_force_portable(false);
        assert_int_equal(nf, ns);
        /* the same ranking; the scores differ only by float rounding, so
         * two ids may trade places only when their scores nearly tie */
        for (size_t i = 0; i < nf; i++) {
            assert_true(fabsf(fast[i].score - slow[i].score) < 1e-5f);
            if (fast[i].id == slow[i].id)
                continue;
            float v[REF_DIM_MAX];
            assert_true(vindex_get(vi, fast[i].id, v));
            assert_true(fabsf(vindex_dot(q, v, dim) - slow[i].score) < 1e-5f);
        }
    }
    free(r);
    vindex_free(vi);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_checks_dim),
        cmocka_unit_test(test_put_get_replace_remove),
        cmocka_unit_test(test_swap_remove_keeps_other_ids),
        cmocka_unit_test(test_large_and_negative_ids),
        cmocka_unit_test(test_clear_and_bytes),
        cmocka_unit_test(test_random_operations_match_reference),
        cmocka_unit_test_teardown(test_search_matches_reference, portable_off),
        cmocka_unit_test_teardown(test_dot_matches_double, portable_off),
        cmocka_unit_test(test_ties_go_to_smaller_id),
        cmocka_unit_test(test_min_score),
        cmocka_unit_test(test_scope_filters),
        cmocka_unit_test(test_k_bounds_and_empty),
        cmocka_unit_test(test_nan_vectors_are_never_hits),
        cmocka_unit_test_teardown(test_kernels_agree, portable_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
