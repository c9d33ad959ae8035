/* Search quality of the memory store on a small labelled set
 * (recall_set.json): the entities are stored through memstore_entity_put,
 * then every query runs in vector-only, text-only and hybrid mode, top 10,
 * and each is scored against the entities the set lists as relevant.
 *
 *   memory_bench recall [--set PATH] [--dir DIR] [--verbose]
 *
 * recall@10: the share of a query's relevant entities found in the top 10,
 * averaged over the queries. MRR: the mean of 1 / (rank of the first
 * relevant entity), 0 when none is in the top 10. Each query has a kind:
 * "shared" (it shares whole words with what it wants), "pieces" (only word
 * pieces: plurals, other forms of a stem) and "paraphrase" (no shared word;
 * the builtin embedder is lexical, so these are expected misses and stay in
 * the set to keep the figures honest). Prints a table per kind, then one
 * JSON line.
 *
 * The reference is chance: the recall@10 and MRR a random ranking of the
 * set's entities would get on the same queries, computed exactly. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "core/log.h"
#include "memory/memstore.h"

#define K 10
#define DEFAULT_SET "bench/memory/recall_set.json"

enum { M_VECTOR, M_TEXT, M_HYBRID, M_COUNT, M_CHANCE = M_COUNT, M_ROWS };
static const char *const mode_names[M_ROWS] = {"vector", "text", "hybrid", "chance"};
static const mem_search_mode modes[M_COUNT] = {MEM_SEARCH_VECTOR, MEM_SEARCH_TEXT,
                                               MEM_SEARCH_HYBRID};

enum { KIND_SHARED, KIND_PIECES, KIND_PARAPHRASE, KIND_COUNT };
static const char *const kind_names[KIND_COUNT] = {"shared", "pieces", "paraphrase"};

typedef struct score {
    double recall, rr; /* sums over queries */
    long queries;
} score;

static int kind_of(const char *s)
{
    for (int k = 0; s && k < KIND_COUNT; k++)
        if (strcmp(s, kind_names[k]) == 0)
            return k;
    return -1;
}

static bool name_listed(json_t *entities, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(entities, i, e) {
        const char *n = json_string_value(json_object_get(e, "name"));
        if (n && strcmp(n, name) == 0)
            return true;
    }
    return false;
}

/* Checks the set's shape: every query's kind is known and every relevant
 * name is an entity of the set. */
static int check_set(const char *path, json_t *set)
{
    json_t *entities = json_object_get(set, "entities"), *queries = json_object_get(set, "queries");
    const char *ws = json_string_value(json_object_get(set, "workspace"));
    if (!ws || !json_is_array(entities) || !json_is_array(queries)) {
        fprintf(stderr, "recall: %s needs \"workspace\", \"entities\" and \"queries\"\n", path);
        return -1;
    }
    size_t i;
    json_t *q;
    int bad = 0;
    json_array_foreach(queries, i, q) {
        const char *text = json_string_value(json_object_get(q, "q"));
        json_t *rel = json_object_get(q, "relevant");
        if (!text || kind_of(json_string_value(json_object_get(q, "kind"))) < 0 ||
            !json_is_array(rel) || json_array_size(rel) == 0 || json_array_size(rel) > 16) {
            fprintf(stderr, "recall: %s: queries[%zu] needs q, kind (shared, pieces, paraphrase) "
                            "and a relevant list of 1 to 16 names\n",
                    path, i);
            bad++;
            continue;
        }
        size_t j;
        json_t *r;
        json_array_foreach(rel, j, r) {
            if (!json_is_string(r) || !name_listed(entities, json_string_value(r))) {
                fprintf(stderr, "recall: %s: queries[%zu] (%s): relevant entity %s is not in "
                                "the set\n",
                        path, i, text, json_is_string(r) ? json_string_value(r) : "(not a string)");
                bad++;
            }
        }
    }
    return bad ? -1 : 0;
}

static int load_entities(memstore *ms, const mem_caller *who, json_t *set)
{
    char scope[MEM_SCOPE_MAX + 1];
    snprintf(scope, sizeof scope, "workspace:%s",
             json_string_value(json_object_get(set, "workspace")));
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(set, "entities"), i, e) {
        json_t *req = json_deep_copy(e);
        json_object_set_new(req, "scope", json_string(scope));
        json_t *out = NULL;
        cx_error err = {0};
        int rc = memstore_entity_put(ms, who, req, &out, &err);
        json_decref(req);
        json_decref(out);
        if (rc < 0) {
            fprintf(stderr, "recall: storing entities[%zu]: %s\n", i, err.msg);
            return -1;
        }
    }
    return 0;
}

/* The 1-based rank of each relevant entity in the results (0: not there). */
static void ranks_of(json_t *results, json_t *relevant, int *ranks)
{
    size_t j;
    json_t *r;
    json_array_foreach(relevant, j, r) {
        ranks[j] = 0;
        size_t i;
        json_t *hit;
        json_array_foreach(results, i, hit) {
            const char *n = json_string_value(json_object_get(hit, "name"));
            if (n && strcmp(n, json_string_value(r)) == 0) {
                ranks[j] = (int)i + 1;
                break;
            }
        }
    }
}

static void print_ranks(const int *ranks, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        if (ranks[j])
            printf("%s%d", j ? "," : "", ranks[j]);
        else
            printf("%s-", j ? "," : "");
    }
}

static json_t *score_json(const score *s)
{
    return json_pack("{s:I, s:f, s:f}", "queries", (json_int_t)s->queries, "recall_at_10",
                     s->queries ? round(s->recall / (double)s->queries * 1e4) / 1e4 : 0.0,
                     "mrr", s->queries ? round(s->rr / (double)s->queries * 1e4) / 1e4 : 0.0);
}

static double mean(double sum, long n) { return n ? sum / (double)n : 0.0; }

/* What a random ranking of n entities gets for a query with r relevant:
 * each relevant one is in the top k with probability k / n; the first
 * relevant one is at rank i with probability
 * C(n - i, r - 1) / C(n, r). */
static void chance(size_t n, size_t r, double *recall, double *rr)
{
    size_t k = K < n ? K : n;
    *recall = (double)k / (double)n;
    *rr = 0;
    double none_before = 1.0; /* P(ranks 1..i-1 hold no relevant entity) */
    for (size_t i = 1; i <= k && r <= n; i++) {
        double here = none_before * (double)r / (double)(n - i + 1);
        *rr += here / (double)i;
        none_before *= ((double)(n - i + 1) - (double)r) / (double)(n - i + 1);
    }
}

static int run_queries(memstore *ms, const mem_caller *who, json_t *set, bool verbose,
                       score sc[M_ROWS][KIND_COUNT + 1], json_t *misses)
{
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(set, "queries"), i, q) {
        const char *text = json_string_value(json_object_get(q, "q"));
        int kind = kind_of(json_string_value(json_object_get(q, "kind")));
        json_t *rel = json_object_get(q, "relevant");
        size_t nrel = json_array_size(rel);
        int ranks[M_COUNT][16] = {{0}}; /* check_set: at most 16 relevant */
        for (int m = 0; m < M_COUNT; m++) {
            mem_search_query sq = {.text = text, .limit = K, .mode = modes[m]};
            json_t *out = NULL;
            cx_error err = {0};
            if (memstore_search(ms, who, &sq, &out, &err) < 0) {
                fprintf(stderr, "recall: searching \"%s\": %s\n", text, err.msg);
                return -1;
            }
            ranks_of(json_object_get(out, "results"), rel, ranks[m]);
            json_decref(out);
            int found = 0, first = 0;
            for (size_t j = 0; j < nrel; j++)
                if (ranks[m][j]) {
                    found++;
                    if (!first || ranks[m][j] < first)
                        first = ranks[m][j];
                }
            double recall = (double)found / (double)nrel, rr = first ? 1.0 / first : 0.0;
            for (int slot = 0; slot < 2; slot++) {
                score *s = &sc[m][slot ? KIND_COUNT : kind];
                s->recall += recall;
                s->rr += rr;
                s->queries++;
            }
            if (m == M_HYBRID && found == 0)
                json_array_append_new(misses, json_pack("{s:s, s:s}", "q", text, "kind",
                                                        kind_names[kind]));
        }
        double crecall, crr;
        chance(json_array_size(json_object_get(set, "entities")), nrel, &crecall, &crr);
        for (int slot = 0; slot < 2; slot++) {
            score *s = &sc[M_CHANCE][slot ? KIND_COUNT : kind];
            s->recall += crecall;
            s->rr += crr;
            s->queries++;
        }
        if (verbose) {
            printf("  %-10s %-52.52s", kind_names[kind], text);
            for (int m = 0; m < M_COUNT; m++) {
                printf(" %c:", mode_names[m][0]);
                print_ranks(ranks[m], nrel);
            }
            printf("\n");
        }
    }
    return 0;
}

static void report(const char *path, json_t *set, score sc[M_ROWS][KIND_COUNT + 1],
                   json_t *misses)
{
    long per_kind[KIND_COUNT];
    for (int k = 0; k < KIND_COUNT; k++)
        per_kind[k] = sc[0][k].queries;
    printf("Recall: %s: %zu entities, %zu queries (shared words %ld, word pieces %ld, "
           "paraphrases %ld), top %d\n",
           path, json_array_size(json_object_get(set, "entities")),
           json_array_size(json_object_get(set, "queries")), per_kind[KIND_SHARED],
           per_kind[KIND_PIECES], per_kind[KIND_PARAPHRASE], K);
    printf("  %-8s | %-33s | %-33s\n", "", "recall@10", "MRR");
    printf("  %-8s | %6s %6s %6s %11s | %6s %6s %6s %11s\n", "mode", "all", "shared", "pieces",
           "paraphrase", "all", "shared", "pieces", "paraphrase");
    for (int m = 0; m < M_ROWS; m++) {
        printf("  %-8s |", mode_names[m]);
        const score *row = sc[m];
        printf(" %6.3f", mean(row[KIND_COUNT].recall, row[KIND_COUNT].queries));
        for (int k = 0; k < KIND_COUNT; k++)
            printf(k == KIND_PARAPHRASE ? " %11.3f" : " %6.3f",
                   mean(row[k].recall, row[k].queries));
        printf(" | %6.3f", mean(row[KIND_COUNT].rr, row[KIND_COUNT].queries));
        for (int k = 0; k < KIND_COUNT; k++)
            printf(k == KIND_PARAPHRASE ? " %11.3f" : " %6.3f", mean(row[k].rr, row[k].queries));
        printf("\n");
    }
    double v = mean(sc[M_VECTOR][KIND_COUNT].recall, sc[M_VECTOR][KIND_COUNT].queries);
    double t = mean(sc[M_TEXT][KIND_COUNT].recall, sc[M_TEXT][KIND_COUNT].queries);
    double h = mean(sc[M_HYBRID][KIND_COUNT].recall, sc[M_HYBRID][KIND_COUNT].queries);
    double c = mean(sc[M_CHANCE][KIND_COUNT].recall, sc[M_CHANCE][KIND_COUNT].queries);
    double best = v > t ? v : t;
    printf("  hybrid recall@10 / best single mode (%s): %.2fx; / vector: %.2fx; / text: %.2fx; "
           "/ chance: %.2fx\n",
           v > t ? "vector" : "text", best > 0 ? h / best : 0, v > 0 ? h / v : 0,
           t > 0 ? h / t : 0, c > 0 ? h / c : 0);
    size_t i;
    json_t *miss;
    if (json_array_size(misses))
        printf("  hybrid found nothing relevant for %zu queries:\n", json_array_size(misses));
    json_array_foreach(misses, i, miss)
        printf("    [%s] %s\n", json_string_value(json_object_get(miss, "kind")),
               json_string_value(json_object_get(miss, "q")));
}

int recall_main(int argc, char **argv)
{
    const char *path = DEFAULT_SET, *base = NULL;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--verbose") == 0)
            verbose = true;
        else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            base = argv[++i];
        else {
            fprintf(stderr, "usage: memory_bench recall [--set PATH] [--dir DIR] [--verbose]\n");
            return 2;
        }
    }
    log_set_level(LOG_WARN);
    json_error_t jerr;
    json_t *set = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!set) {
        fprintf(stderr, "recall: cannot read %s: %s (line %d)\n", path, jerr.text, jerr.line);
        return 1;
    }
    if (check_set(path, set) < 0) {
        json_decref(set);
        return 1;
    }
    char dir[4096], db[4200];
    if (bench_make_dir(base, dir, sizeof dir) < 0) {
        json_decref(set);
        return 1;
    }
    snprintf(db, sizeof db, "%s/memory.db", dir);
    memstore_options opt = {.path = db, .cache_size = 16u << 20};
    cx_error err = {0};
    memstore *ms = memstore_open(&opt, &err);
    mem_caller who = bench_caller(json_string_value(json_object_get(set, "workspace")));
    score sc[M_ROWS][KIND_COUNT + 1];
    memset(sc, 0, sizeof sc);
    json_t *misses = json_array();
    int rc = 1;
    if (!ms || !memstore_available(ms))
        fprintf(stderr, "recall: the store did not open: %s\n",
                ms ? memstore_last_error(ms) : err.msg);
    else if (load_entities(ms, &who, set) == 0) {
        if (verbose)
            printf("Ranks of the relevant entities (v: vector, t: text, h: hybrid; -: not in the "
                   "top %d):\n",
                   K);
        if (run_queries(ms, &who, set, verbose, sc, misses) == 0)
            rc = 0;
    }
    if (rc == 0) {
        report(path, set, sc, misses);
        json_t *line = json_pack("{s:s, s:I, s:I, s:i}", "bench", "memory_recall", "entities",
                                 (json_int_t)json_array_size(json_object_get(set, "entities")),
                                 "queries",
                                 (json_int_t)json_array_size(json_object_get(set, "queries")),
                                 "k", K);
        for (int m = 0; m < M_ROWS; m++) {
            json_t *o = score_json(&sc[m][KIND_COUNT]);
            for (int k = 0; k < KIND_COUNT; k++)
                json_object_set_new(o, kind_names[k], score_json(&sc[m][k]));
            json_object_set_new(line, mode_names[m], o);
        }
        json_object_set_new(line, "hybrid_misses",
                            json_integer((json_int_t)json_array_size(misses)));
        char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6));
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(line);
    }
    json_decref(misses);
    memstore_close(ms);
    bench_remove_dir(dir);
    json_decref(set);
    return rc;
}
