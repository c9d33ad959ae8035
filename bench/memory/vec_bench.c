/* Compares Caxton's vector index with the sqlite-vec extension's vec0 table:
 * the same random normalised vectors go into both, and the same queries ask
 * each for its top k, interleaved so neither gets a warmer cache.
 *
 *   vec_bench --sqlite-vec PATH/vec0.so [--n N] [--queries Q] [--k K] [--seed S]
 *
 * Prints a human summary, then one JSON line with the numbers. Everything
 * runs in this process on one thread; the SQLite database is in memory. */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memory/vindex.h"

#define DIM 384
#define N_MAX 2000000
#define QUERIES_MAX 100000
#define K_MAX 100
#define WARMUP 10
/* Scores closer than this are treated as ties when the two top-k sets differ. */
#define TIE_EPS 1e-5

typedef struct options {
    const char *extension;
    long n, queries, k;
    uint64_t seed;
} options;

typedef struct timings {
    double *caxton_ms, *sqlite_ms;
    long identical, tie_only, different;
} timings;

/* ---- vectors --------------------------------------------------------------- */

static uint64_t next_random(uint64_t *state)
{
    /* splitmix64: fast, and the same sequence on every machine */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void random_unit_vector(uint64_t *state, float *v)
{
    double norm = 0;
    for (size_t i = 0; i < DIM; i++) {
        /* uniform in [-1, 1) from the top 24 bits */
        v[i] = (float)((double)(next_random(state) >> 40) / (double)(1u << 23) - 1.0);
        norm += (double)v[i] * v[i];
    }
    float scale = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
    for (size_t i = 0; i < DIM; i++)
        v[i] *= scale;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- options --------------------------------------------------------------- */

static int parse_long(const char *flag, const char *text, long min, long max, long *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (!*text || *end || v < min || v > max) {
        fprintf(stderr, "vec_bench: %s wants a whole number from %ld to %ld, not \"%s\"\n", flag,
                min, max, text);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){NULL, 100000, 200, 10, 42};
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "vec_bench: %s needs a value\n", flag);
            return -1;
        }
        const char *value = argv[++i];
        long seed;
        int rc = 0;
        if (strcmp(flag, "--sqlite-vec") == 0)
            o->extension = value;
        else if (strcmp(flag, "--n") == 0)
            rc = parse_long(flag, value, 1, N_MAX, &o->n);
        else if (strcmp(flag, "--queries") == 0)
            rc = parse_long(flag, value, 1, QUERIES_MAX, &o->queries);
        else if (strcmp(flag, "--k") == 0)
            rc = parse_long(flag, value, 1, K_MAX, &o->k);
        else if (strcmp(flag, "--seed") == 0) {
            rc = parse_long(flag, value, 0, 1L << 40, &seed);
            o->seed = (uint64_t)seed;
        } else {
            fprintf(stderr, "vec_bench: unknown flag %s\n", flag);
            return -1;
        }
        if (rc < 0)
            return -1;
    }
    if (!o->extension) {
        fprintf(stderr, "usage: vec_bench --sqlite-vec PATH/vec0.so [--n N] [--queries Q] "
                        "[--k K] [--seed S]\n(bench/memory/run.sh installs sqlite-vec and "
                        "passes the path)\n");
        return -1;
    }
    return 0;
}

/* ---- sqlite-vec ------------------------------------------------------------ */

static sqlite3 *open_sqlite_vec(const char *extension)
{
    sqlite3 *db;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
        fprintf(stderr, "vec_bench: cannot open an in-memory SQLite database\n");
        sqlite3_close(db);
        return NULL;
    }
    char *msg = NULL;
    sqlite3_enable_load_extension(db, 1);
    if (sqlite3_load_extension(db, extension, "sqlite3_vec_init", &msg) != SQLITE_OK) {
        fprintf(stderr, "vec_bench: cannot load sqlite-vec from %s: %s\n", extension,
                msg ? msg : "unknown error");
        sqlite3_free(msg);
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_enable_load_extension(db, 0);
    return db;
}

static int exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "vec_bench: %s failed: %s\n", sql, msg ? msg : "unknown error");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static void print_sqlite_vec_version(sqlite3 *db, char *out, size_t size)
{
    sqlite3_stmt *st;
    snprintf(out, size, "unknown");
    if (sqlite3_prepare_v2(db, "SELECT vec_version()", -1, &st, NULL) != SQLITE_OK)
        return;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* ---- loading --------------------------------------------------------------- */

static int load_vectors(const options *o, vindex *vi, sqlite3 *db)
{
    char sql[128];
    snprintf(sql, sizeof sql,
             "CREATE VIRTUAL TABLE v USING vec0(embedding float[%d] distance_metric=cosine)", DIM);
    if (exec_sql(db, sql) < 0 || exec_sql(db, "BEGIN") < 0)
        return -1;
    sqlite3_stmt *ins;
    if (sqlite3_prepare_v2(db, "INSERT INTO v(rowid, embedding) VALUES (?, ?)", -1, &ins, NULL) !=
        SQLITE_OK) {
        fprintf(stderr, "vec_bench: cannot prepare the insert: %s\n", sqlite3_errmsg(db));
        return -1;
    }
    uint64_t state = o->seed;
    float v[DIM];
    int rc = 0;
    for (long i = 0; i < o->n && rc == 0; i++) {
        random_unit_vector(&state, v);
        int64_t id = i + 1; /* rowid 0 is fine for SQLite, but ids start at 1 in Caxton */
        if (vindex_put(vi, id, 0, v) < 0) {
            fprintf(stderr, "vec_bench: out of memory after %ld vectors\n", i);
            rc = -1;
            break;
        }
        sqlite3_bind_int64(ins, 1, id);
        sqlite3_bind_blob(ins, 2, v, (int)sizeof v, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            fprintf(stderr, "vec_bench: insert into vec0 failed: %s\n", sqlite3_errmsg(db));
            rc = -1;
        }
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    if (rc == 0 && exec_sql(db, "COMMIT") < 0)
        rc = -1;
    return rc;
}

/* ---- queries --------------------------------------------------------------- */

static size_t sqlite_vec_knn(sqlite3_stmt *st, const float *q, long k, int64_t *ids)
{
    size_t n = 0;
    sqlite3_bind_blob(st, 1, q, (int)(DIM * sizeof(float)), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, k);
    while (sqlite3_step(st) == SQLITE_ROW && n < (size_t)k)
        ids[n++] = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

static bool hits_contain(const vindex_hit *hits, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (hits[i].id == id)
            return true;
    return false;
}

/* Sorts the answers apart: the same ids; different ids that each score
 * within TIE_EPS of Caxton's k-th best (a float tie at the edge); or really
 * different. */
static void compare_answers(const vindex *vi, const float *q, const vindex_hit *hits, size_t nh,
                            const int64_t *ids, size_t ns, timings *t)
{
    bool same = nh == ns;
    for (size_t i = 0; same && i < ns; i++)
        same = hits_contain(hits, nh, ids[i]);
    if (same) {
        t->identical++;
        return;
    }
    bool ties = nh == ns && nh > 0;
    float v[DIM];
    for (size_t i = 0; ties && i < ns; i++) {
        if (hits_contain(hits, nh, ids[i]))
            continue;
        double dot = 0;
        ties = vindex_get(vi, ids[i], v);
        for (size_t d = 0; ties && d < DIM; d++)
            dot += (double)v[d] * q[d];
        ties = ties && fabs(dot - hits[nh - 1].score) < TIE_EPS;
    }
    if (ties)
        t->tie_only++;
    else
        t->different++;
}

static int run_queries(const options *o, const vindex *vi, sqlite3 *db, timings *t)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT rowid, distance FROM v WHERE embedding MATCH ? AND k = ? "
                           "ORDER BY distance",
                           -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "vec_bench: cannot prepare the KNN query: %s\n", sqlite3_errmsg(db));
        return -1;
    }
    uint64_t state = o->seed ^ 0x5eedull; /* queries are not copies of stored vectors */
    float q[DIM];
    vindex_hit hits[K_MAX];
    int64_t ids[K_MAX];
    for (long i = -WARMUP; i < o->queries; i++) {
        random_unit_vector(&state, q);
        double t0, t1, t2;
        size_t nh, ns;
        if (i & 1) { /* alternate who goes first */
            t0 = now_ms();
            ns = sqlite_vec_knn(st, q, o->k, ids);
            t1 = now_ms();
            nh = vindex_search(vi, q, (size_t)o->k, -2.0f, NULL, hits);
            t2 = now_ms();
            if (i >= 0) {
                t->sqlite_ms[i] = t1 - t0;
                t->caxton_ms[i] = t2 - t1;
            }
        } else {
            t0 = now_ms();
            nh = vindex_search(vi, q, (size_t)o->k, -2.0f, NULL, hits);
            t1 = now_ms();
            ns = sqlite_vec_knn(st, q, o->k, ids);
            t2 = now_ms();
            if (i >= 0) {
                t->caxton_ms[i] = t1 - t0;
                t->sqlite_ms[i] = t2 - t1;
            }
        }
        if (i >= 0)
            compare_answers(vi, q, hits, nh, ids, ns, t);
    }
    sqlite3_finalize(st);
    return 0;
}

/* ---- report ---------------------------------------------------------------- */

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank percentile of sorted samples. */
static double percentile(const double *sorted, long n, double p)
{
    long rank = (long)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

static void report(const options *o, const timings *t, const char *vec_version, double load_s)
{
    qsort(t->caxton_ms, (size_t)o->queries, sizeof(double), compare_double);
    qsort(t->sqlite_ms, (size_t)o->queries, sizeof(double), compare_double);
    double c50 = percentile(t->caxton_ms, o->queries, 50), c99 = percentile(t->caxton_ms, o->queries, 99);
    double s50 = percentile(t->sqlite_ms, o->queries, 50), s99 = percentile(t->sqlite_ms, o->queries, 99);
    double ratio = c50 > 0 ? s50 / c50 : 0;
    printf("Vector search: %ld vectors x %d dims, %ld queries (after %d warm-up), top %ld, "
           "cosine\n",
           o->n, DIM, o->queries, WARMUP, o->k);
    printf("  caxton vindex (kernel %s): p50 %.3f ms  p99 %.3f ms\n", vindex_kernel(), c50, c99);
    printf("  sqlite-vec %s vec0 (SQLite %s): p50 %.3f ms  p99 %.3f ms\n", vec_version,
           sqlite3_libversion(), s50, s99);
    printf("  sqlite-vec p50 / caxton p50: %.2fx\n", ratio);
    printf("  identical top-%ld id sets: %ld of %ld (differing only by float ties: %ld, "
           "really different: %ld)\n",
           o->k, t->identical, o->queries, t->tie_only, t->different);
    printf("  loading both took %.1f s\n", load_s);
    printf("{\"bench\":\"vector_search\",\"n\":%ld,\"dim\":%d,\"queries\":%ld,\"k\":%ld,"
           "\"kernel\":\"%s\",\"caxton_p50_ms\":%.4f,\"caxton_p99_ms\":%.4f,"
           "\"sqlite_vec_version\":\"%s\",\"sqlite_vec_p50_ms\":%.4f,\"sqlite_vec_p99_ms\":%.4f,"
           "\"speedup_p50\":%.2f,\"identical_topk\":%ld,\"tie_only_differences\":%ld,"
           "\"different_topk\":%ld}\n",
           o->n, DIM, o->queries, o->k, vindex_kernel(), c50, c99, vec_version, s50, s99, ratio,
           t->identical, t->tie_only, t->different);
}

int main(int argc, char **argv)
{
    options o;
    if (parse_options(argc, argv, &o) < 0)
        return 2;
    vindex *vi = vindex_new(DIM);
    sqlite3 *db = open_sqlite_vec(o.extension);
    timings t = {calloc((size_t)o.queries, sizeof(double)),
                 calloc((size_t)o.queries, sizeof(double)), 0, 0, 0};
    int rc = 1;
    char vec_version[64];
    if (!vi || !db || !t.caxton_ms || !t.sqlite_ms)
        goto done;
    print_sqlite_vec_version(db, vec_version, sizeof vec_version);
    double start = now_ms();
    if (load_vectors(&o, vi, db) < 0)
        goto done;
    double load_s = (now_ms() - start) / 1e3;
    if (run_queries(&o, vi, db, &t) < 0)
        goto done;
    report(&o, &t, vec_version, load_s);
    rc = 0;
done:
    free(t.caxton_ms);
    free(t.sqlite_ms);
    sqlite3_close(db);
    vindex_free(vi);
    return rc;
}
