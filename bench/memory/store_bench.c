/* The memory store end to end, each figure beside a reference measured in
 * the same run:
 *
 *   a. batched ingest with the builtin embedder: the bulk path (memory
 *      import of an export file, then the memstore_open that embeds the new
 *      entities and writes their FTS rows) against plain SQLite inserts of
 *      the same rows into one table in one transaction, and the embedder
 *      alone;
 *   b. durable single writes: memstore_entity_put, one synchronous=FULL
 *      transaction each, against single-row INSERTs into a plain WAL
 *      database with synchronous=FULL in the same directory (the fsync
 *      ceiling), interleaved;
 *   c. search over a larger store: memstore_search top 10 in hybrid, vector
 *      and text modes against what they are built from, the vector index
 *      (embedding the query included) and the bare FTS5 query on the same
 *      table; once with queries of words as they occur in the text, once
 *      with content words only (the share of entities an ORed FTS query
 *      matches drives its cost).
 *
 *   memory_bench [--n N] [--writes M] [--search-n S] [--queries Q]
 *                [--seed SEED] [--dir DIR] [--only ingest,writes,search]
 *   memory_bench recall [--set PATH] ...      (recall.c)
 *
 * The text is made up here from a fixed seed: a vocabulary of a few
 * thousand pseudo-words drawn with a Zipf law, short sentences, two to four
 * per entity. Everything runs on one thread in a private directory under
 * DIR (default $TMPDIR or /tmp), which is removed at the end; the disk under
 * DIR is the one the fsync figures describe. Prints a human summary, then
 * one JSON line. */
#include <errno.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_common.h"
#include "core/log.h"
#include "core/map.h"
#include "memory/embed.h"
#include "memory/memops.h"
#include "memory/memstore.h"
#include "memory/vindex.h"

#define VOCAB 4000
#define ZIPF_S 1.0
#define N_MAX 2000000
#define WRITES_MAX 100000
#define QUERIES_MAX 100000
#define WARMUP 10
#define SCOPE "workspace:bench"
#define WORKSPACE "bench"
#define TARGET_INGEST 5000.0
#define CANDIDATES 50      /* what memstore_search asks each list for at limit 10 */
#define SENTENCE_MAX 512

enum { PART_INGEST = 1, PART_WRITES = 2, PART_SEARCH = 4 };

typedef struct options {
    long n, writes, search_n, queries;
    uint64_t seed;
    const char *dir;
    unsigned parts;
} options;

/* ---- made-up text ---------------------------------------------------------- */

typedef struct corpus {
    char *words[VOCAB];
    double cdf[VOCAB]; /* Zipf: word r with weight 1 / (r + 1)^s */
} corpus;

static const char *const onsets[] = {"b",  "c",  "d",  "f",  "g",  "h",  "k",  "l",  "m",  "n",
                                     "p",  "r",  "s",  "t",  "v",  "w",  "z",  "br", "ch", "cr",
                                     "dr", "fl", "gr", "pl", "sh", "st", "tr", "th"};
static const char *const vowels[] = {"a", "e", "i", "o", "u", "ai", "ea", "ou"};
static const char *const codas[] = {"", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void corpus_free(corpus *c)
{
    for (size_t i = 0; i < VOCAB; i++)
        free(c->words[i]);
}

static int corpus_init(corpus *c, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    uint64_t state = seed ^ 0x766f636162ull;
    map seen;
    map_init(&seen);
    size_t n = 0;
    for (long attempt = 0; n < VOCAB && attempt < 100L * VOCAB; attempt++) {
        char w[64];
        size_t len = 0;
        int syllables = 1 + (int)(bench_random(&state) % 3);
        for (int s = 0; s < syllables; s++) {
            const char *parts[3] = {onsets[bench_random(&state) % COUNT(onsets)],
                                    vowels[bench_random(&state) % COUNT(vowels)],
                                    codas[bench_random(&state) % COUNT(codas)]};
            for (int p = 0; p < 3; p++) {
                size_t l = strlen(parts[p]);
                memcpy(w + len, parts[p], l);
                len += l;
            }
        }
        w[len] = '\0';
        if (len < 2 || map_get(&seen, w))
            continue;
        if (map_put(&seen, w, (void *)1, NULL) != 0 || !(c->words[n] = strdup(w))) {
            map_free(&seen);
            corpus_free(c);
            return -1;
        }
        n++;
    }
    map_free(&seen);
    if (n < VOCAB) {
        corpus_free(c);
        fprintf(stderr, "memory_bench: could not make %d distinct words\n", VOCAB);
        return -1;
    }
    double sum = 0;
    for (size_t r = 0; r < VOCAB; r++)
        sum += 1.0 / pow((double)(r + 1), ZIPF_S);
    double acc = 0;
    for (size_t r = 0; r < VOCAB; r++) {
        acc += 1.0 / pow((double)(r + 1), ZIPF_S) / sum;
        c->cdf[r] = acc;
    }
    c->cdf[VOCAB - 1] = 1.0;
    return 0;
}

static const char *corpus_word(const corpus *c, uint64_t *state)
{
    double u = bench_uniform(state);
    size_t lo = 0, hi = VOCAB - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return c->words[lo];
}

/* A sentence of 6 to 14 words: capitalised, with a full stop. */
static char *sentence(const corpus *c, uint64_t *state)
{
    char buf[SENTENCE_MAX];
    size_t len = 0;
    int words = 6 + (int)(bench_random(state) % 9);
    for (int i = 0; i < words; i++) {
        const char *w = corpus_word(c, state);
        size_t l = strlen(w);
        if (len + l + 3 >= sizeof buf)
            break;
        if (i)
            buf[len++] = ' ';
        memcpy(buf + len, w, l);
        len += l;
    }
    buf[len++] = '.';
    buf[len] = '\0';
    buf[0] = (char)(buf[0] - 'a' + 'A');
    return strdup(buf);
}

static const char *const types[] = {"supplier", "part", "project", "person", "policy", "order"};

typedef struct entity {
    char name[80];
    const char *type;
    char *obs[4];
    int nobs;
} entity;

/* Entity number k depends only on the seed and k, so a smaller set is a
 * prefix of a larger one. */
static int make_entity(const corpus *c, uint64_t seed, long k, entity *e)
{
    uint64_t state = seed ^ ((uint64_t)k * 0xd1b54a32d192ed03ull);
    memset(e, 0, sizeof *e);
    e->type = types[bench_random(&state) % COUNT(types)];
    snprintf(e->name, sizeof e->name, "%s-%07ld %s", e->type, k + 1, corpus_word(c, &state));
    e->nobs = 2 + (int)(bench_random(&state) % 3);
    for (int i = 0; i < e->nobs; i++)
        if (!(e->obs[i] = sentence(c, &state)))
            return -1;
    return 0;
}

static void entities_free(entity *e, long n)
{
    for (long i = 0; e && i < n; i++)
        for (int j = 0; j < e[i].nobs; j++)
            free(e[i].obs[j]);
    free(e);
}

static entity *make_entities(const corpus *c, uint64_t seed, long first, long n)
{
    entity *e = calloc((size_t)n, sizeof *e);
    for (long i = 0; e && i < n; i++)
        if (make_entity(c, seed, first + i, &e[i]) < 0) {
            entities_free(e, i + 1);
            return NULL;
        }
    if (!e)
        fprintf(stderr, "memory_bench: out of memory making %ld entities\n", n);
    return e;
}

/* What the store embeds and indexes of an entity: name, type and the
 * observations newest first, one per line. */
static size_t entity_text(const entity *e, char *out, size_t size)
{
    size_t len = (size_t)snprintf(out, size, "%s\n%s", e->name, e->type);
    for (int i = e->nobs - 1; i >= 0 && len < size; i--)
        len += (size_t)snprintf(out + len, size - len, "\n%s", e->obs[i]);
    return len < size ? len : size - 1;
}

/* The observations oldest first, one per line: the raw reference's body. */
static size_t entity_body(const entity *e, char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < e->nobs && len < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%s", i ? "\n" : "", e->obs[i]);
    return len < size ? len : size - 1;
}

/* ---- the export file --------------------------------------------------------- */

static void put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* Writes the entities in caxton's export format (memops_io.c). */
static int write_export(const char *path, const entity *e, long n, long *observations)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "memory_bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    *observations = 0;
    fputs("{\"format\":\"caxton-memory-export\",\"version\":1,\"entities\":[", f);
    for (long i = 0; i < n; i++) {
        fputs(i ? ",\n{\"scope\":" : "\n{\"scope\":", f);
        put_string(f, SCOPE);
        fputs(",\"name\":", f);
        put_string(f, e[i].name);
        fputs(",\"type\":", f);
        put_string(f, e[i].type);
        fputs(",\"observations\":[", f);
        for (int j = 0; j < e[i].nobs; j++) {
            fputs(j ? ",{\"text\":" : "{\"text\":", f);
            put_string(f, e[i].obs[j]);
            fputc('}', f);
        }
        fputs("]}", f);
        *observations += e[i].nobs;
    }
    fprintf(f, "\n],\"relations\":[],\"scope_overrides\":[],\"counts\":{\"entities\":%ld,"
               "\"relations\":0,\"observations\":%ld}}\n",
            n, *observations);
    if (fclose(f) != 0) {
        fprintf(stderr, "memory_bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* DIR/NAME into out; exits on a path too long for the buffer (never with
 * the directories this program makes). */
static void path_join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "memory_bench: path too long: %s/%s\n", dir, name);
        exit(1);
    }
}

/* ---- plain SQLite ------------------------------------------------------------ */

static int exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "memory_bench: %s: %s\n", sql, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* A plain database with the store's durability settings and one table. */
static sqlite3 *raw_open(const char *path, sqlite3_stmt **ins)
{
    sqlite3 *db = NULL;
    *ins = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK || exec_sql(db, "PRAGMA journal_mode = WAL") < 0 ||
        exec_sql(db, "PRAGMA synchronous = FULL") < 0 ||
        exec_sql(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, scope TEXT NOT NULL, name TEXT NOT "
                     "NULL, type TEXT NOT NULL, body TEXT NOT NULL)") < 0 ||
        sqlite3_prepare_v2(db, "INSERT INTO t(scope, name, type, body) VALUES (?, ?, ?, ?)", -1,
                           ins, NULL) != SQLITE_OK) {
        fprintf(stderr, "memory_bench: plain SQLite database %s: %s\n", path,
                db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static int raw_insert(sqlite3 *db, sqlite3_stmt *ins, const entity *e)
{
    char body[4 * SENTENCE_MAX + 8];
    size_t len = entity_body(e, body, sizeof body);
    sqlite3_bind_text(ins, 1, SCOPE, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, e->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, e->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 4, body, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(ins);
    sqlite3_reset(ins);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "memory_bench: plain insert: %s\n", sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

/* ---- a. ingest ----------------------------------------------------------------- */

typedef struct ingest_result {
    long n, observations;
    double export_mb;
    double import_s, open_s, total_s, rate;
    double raw_s, raw_rate;
    double embed_s, embed_rate, embed_mb_s;
} ingest_result;

/* Imports the entities into a new store at DIR/memory.db through the bulk
 * path and opens it. NULL on failure. */
static memstore *ingest_store(const char *dir, const entity *e, long n, ingest_result *r)
{
    char path[4096], db[4096], backups[4096];
    path_join(path, sizeof path, dir, "export.json");
    path_join(db, sizeof db, dir, "memory.db");
    path_join(backups, sizeof backups, dir, "backups");
    if (write_export(path, e, n, &r->observations) < 0)
        return NULL;
    struct stat sb;
    r->n = n;
    r->export_mb = stat(path, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;

    memops_ctx ctx = {.db_path = db, .backups_dir = backups, .keep = 1, .store = NULL,
                      .actor = "bench"};
    json_t *args = json_pack("{s:s, s:s}", "file", path, "merge", "error");
    json_t *res = NULL;
    cx_error err = {0};
    double t0 = bench_now_ms();
    int rc = memops_run(&ctx, "import", args, &res, &err);
    double t1 = bench_now_ms();
    json_decref(args);
    if (rc < 0 || !json_is_true(json_object_get(res, "ok")) ||
        !json_is_true(json_object_get(res, "written"))) {
        char *text = res ? json_dumps(res, JSON_COMPACT) : NULL;
        fprintf(stderr, "memory_bench: the import failed: %s\n", text ? text : err.msg);
        free(text);
        json_decref(res);
        return NULL;
    }
    json_decref(res);
    memstore_options opt = {.path = db, .max_size = 0, .cache_size = 64u << 20,
                            .slow_query_ms = 0};
    memstore *ms = memstore_open(&opt, &err);
    double t2 = bench_now_ms();
    if (!ms || !memstore_available(ms)) {
        fprintf(stderr, "memory_bench: the store did not open: %s\n",
                ms ? memstore_last_error(ms) : err.msg);
        memstore_close(ms);
        return NULL;
    }
    memstore_stats st;
    memstore_get_stats(ms, &st);
    if (st.entities != n || st.vectors != n) {
        fprintf(stderr, "memory_bench: after the import the store holds %lld entities and %lld "
                        "vectors, not %ld\n",
                (long long)st.entities, (long long)st.vectors, n);
        memstore_close(ms);
        return NULL;
    }
    r->import_s = (t1 - t0) / 1e3;
    r->open_s = (t2 - t1) / 1e3;
    r->total_s = r->import_s + r->open_s;
    r->rate = (double)n / r->total_s;
    return ms;
}

static int ingest_raw(const char *dir, const entity *e, long n, ingest_result *r)
{
    char path[4096];
    path_join(path, sizeof path, dir, "raw_ingest.db");
    sqlite3_stmt *ins;
    sqlite3 *db = raw_open(path, &ins);
    if (!db)
        return -1;
    double t0 = bench_now_ms();
    int rc = exec_sql(db, "BEGIN");
    for (long i = 0; rc == 0 && i < n; i++)
        rc = raw_insert(db, ins, &e[i]);
    sqlite3_finalize(ins);
    if (rc == 0)
        rc = exec_sql(db, "COMMIT");
    double t1 = bench_now_ms();
    sqlite3_close(db);
    r->raw_s = (t1 - t0) / 1e3;
    r->raw_rate = (double)n / r->raw_s;
    return rc;
}

static int ingest_embedder(const entity *e, long n, ingest_result *r)
{
    char **texts = calloc((size_t)n, sizeof *texts);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    int rc = texts && lens ? 0 : -1;
    size_t bytes = 0;
    for (long i = 0; rc == 0 && i < n; i++) {
        char buf[4 * SENTENCE_MAX + 256];
        lens[i] = entity_text(&e[i], buf, sizeof buf);
        bytes += lens[i];
        if (!(texts[i] = strndup(buf, lens[i])))
            rc = -1;
    }
    float v[EMBED_BUILTIN_DIM];
    volatile float sink = 0;
    double t0 = bench_now_ms();
    for (long i = 0; rc == 0 && i < n; i++) {
        rc = embed_builtin(texts[i], lens[i], v);
        sink += v[0];
    }
    double t1 = bench_now_ms();
    (void)sink;
    for (long i = 0; texts && i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    if (rc != 0) {
        fprintf(stderr, "memory_bench: out of memory in the embedder run\n");
        return -1;
    }
    r->embed_s = (t1 - t0) / 1e3;
    r->embed_rate = (double)n / r->embed_s;
    r->embed_mb_s = (double)bytes / 1e6 / r->embed_s;
    return 0;
}

static void ingest_report(const ingest_result *r, const char *title)
{
    printf("%s: %ld entities, %ld observations (export file %.1f MB), builtin embedder\n", title,
           r->n, r->observations, r->export_mb);
    printf("  store bulk path (import + open): %8.0f entities/s  (import %.2f s, open %.2f s: "
           "embeddings, FTS rows, vector index)\n",
           r->rate, r->import_s, r->open_s);
    if (r->raw_s > 0) {
        printf("  plain SQLite, one table, one txn: %8.0f entities/s  (%.2f s)\n", r->raw_rate,
               r->raw_s);
        printf("  store / plain SQLite: %.3f  (plain SQLite is %.1fx faster)\n",
               r->rate / r->raw_rate, r->raw_rate / r->rate);
    }
    if (r->embed_s > 0)
        printf("  embedder alone: %8.0f texts/s (%.1f MB/s): %.1f%% of the store's ingest time\n",
               r->embed_rate, r->embed_mb_s, 100.0 * r->embed_s / r->total_s);
    printf("  target >= %.0f entities/s: %s\n", TARGET_INGEST,
           r->rate >= TARGET_INGEST ? "met" : "NOT met");
}

static json_t *ingest_json(const ingest_result *r)
{
    json_t *o = json_pack("{s:I, s:I, s:f, s:f, s:f, s:f}", "entities", (json_int_t)r->n,
                          "observations", (json_int_t)r->observations, "import_s", r->import_s,
                          "open_s", r->open_s, "store_entities_per_s", round(r->rate),
                          "target_entities_per_s", TARGET_INGEST);
    if (r->raw_s > 0) {
        json_object_set_new(o, "sqlite_entities_per_s", json_real(round(r->raw_rate)));
        json_object_set_new(o, "store_over_sqlite",
                            json_real(round(r->rate / r->raw_rate * 1e4) / 1e4));
    }
    if (r->embed_s > 0) {
        json_object_set_new(o, "embedder_texts_per_s", json_real(round(r->embed_rate)));
        json_object_set_new(o, "embedder_share",
                            json_real(round(r->embed_s / r->total_s * 1e4) / 1e4));
    }
    return o;
}

/* ---- b. durable single writes ---------------------------------------------------- */

typedef struct write_result {
    long m;
    double store_s, store_p50, store_p99;
    double raw_s, raw_p50, raw_p99;
} write_result;

static int durable_writes(const options *o, const corpus *c, memstore *ms, const char *dir,
                          write_result *w)
{
    char path[4096];
    path_join(path, sizeof path, dir, "raw_writes.db");
    sqlite3_stmt *ins;
    sqlite3 *db = raw_open(path, &ins);
    entity *e = make_entities(c, o->seed, 50000000L, o->writes); /* names no ingest uses */
    json_t **req = calloc((size_t)o->writes, sizeof *req);
    double *st = calloc((size_t)o->writes, sizeof *st), *rt = calloc((size_t)o->writes, sizeof *rt);
    int rc = db && e && req && st && rt ? 0 : -1;
    for (long i = 0; rc == 0 && i < o->writes; i++) {
        json_t *obs = json_array();
        for (int j = 0; j < e[i].nobs; j++)
            json_array_append_new(obs, json_string(e[i].obs[j]));
        req[i] = json_pack("{s:s, s:s, s:o}", "name", e[i].name, "type", e[i].type,
                           "observations", obs);
        if (!req[i])
            rc = -1;
    }
    mem_caller who = bench_caller(WORKSPACE);
    for (long i = 0; rc == 0 && i < o->writes; i++) {
        /* alternate who goes first, so neither always follows the other's fsync */
        for (int turn = 0; rc == 0 && turn < 2; turn++) {
            if ((turn == 0) == ((i & 1) == 0)) {
                json_t *out = NULL;
                cx_error err = {0};
                double t0 = bench_now_ms();
                int prc = memstore_entity_put(ms, &who, req[i], &out, &err);
                st[i] = bench_now_ms() - t0;
                json_decref(out);
                if (prc < 0) {
                    fprintf(stderr, "memory_bench: memstore_entity_put: %s\n", err.msg);
                    rc = -1;
                }
            } else {
                double t0 = bench_now_ms();
                rc = raw_insert(db, ins, &e[i]);
                rt[i] = bench_now_ms() - t0;
            }
        }
    }
    if (rc == 0) {
        w->m = o->writes;
        for (long i = 0; i < o->writes; i++) {
            w->store_s += st[i] / 1e3;
            w->raw_s += rt[i] / 1e3;
        }
        w->store_p50 = bench_percentile(st, (size_t)o->writes, 50);
        w->store_p99 = bench_percentile(st, (size_t)o->writes, 99);
        w->raw_p50 = bench_percentile(rt, (size_t)o->writes, 50);
        w->raw_p99 = bench_percentile(rt, (size_t)o->writes, 99);
    }
    for (long i = 0; req && i < o->writes; i++)
        json_decref(req[i]);
    free(req);
    free(st);
    free(rt);
    entities_free(e, o->writes);
    sqlite3_finalize(ins);
    sqlite3_close(db);
    return rc;
}

static void writes_report(const write_result *w, long store_entities, const char *fs)
{
    printf("Durable single writes: %ld memstore_entity_put calls (new entities, 2-4 "
           "observations) into a store of %ld, each its own synchronous=FULL transaction; "
           "disk: %s\n",
           w->m, store_entities, fs);
    printf("  store:        %7.0f entities/s  p50 %.3f ms  p99 %.3f ms\n",
           (double)w->m / w->store_s, w->store_p50, w->store_p99);
    printf("  plain SQLite: %7.0f inserts/s   p50 %.3f ms  p99 %.3f ms  (WAL, synchronous=FULL, "
           "one row per transaction)\n",
           (double)w->m / w->raw_s, w->raw_p50, w->raw_p99);
    printf("  store p50 / plain SQLite p50: %.2fx\n", w->store_p50 / w->raw_p50);
    if (strcmp(fs, "tmpfs") == 0)
        printf("  (tmpfs: fsync costs nothing here; pass --dir on a real disk)\n");
}

static json_t *writes_json(const write_result *w, const char *fs)
{
    return json_pack("{s:I, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "writes", (json_int_t)w->m,
                     "filesystem", fs, "store_entities_per_s", round((double)w->m / w->store_s),
                     "store_p50_ms", w->store_p50, "store_p99_ms", w->store_p99,
                     "sqlite_inserts_per_s", round((double)w->m / w->raw_s), "sqlite_p50_ms",
                     w->raw_p50, "sqlite_p99_ms", w->raw_p99, "store_over_sqlite_p50",
                     round(w->store_p50 / w->raw_p50 * 100) / 100);
}

/* ---- c. search ------------------------------------------------------------------- */

enum { S_HYBRID, S_VECTOR, S_TEXT, S_REF_VECTOR, S_REF_TEXT, S_COUNT };
static const char *const search_names[S_COUNT] = {"hybrid", "vector", "text", "ref_vector",
                                                  "ref_text"};

/* Two query sets: words as they occur in the text (the frequent ones
 * included, as in a question an agent writes), and content words only
 * (none of the COMMON_WORDS most frequent). */
enum { Q_NATURAL, Q_CONTENT, Q_SETS };
#define COMMON_WORDS 100
static const char *const set_names[Q_SETS] = {"natural", "content_words"};
static const char *const set_titles[Q_SETS] = {
    "words as they occur in the text (frequent ones included)",
    "content words only (none of the 100 most frequent)"};

typedef struct search_result {
    long n, queries;
    ingest_result ingest;
    double p50[Q_SETS][S_COUNT], p99[Q_SETS][S_COUNT];
    long empty[Q_SETS][S_COUNT];
    double match_share[Q_SETS]; /* mean share of entities the FTS query matches */
} search_result;

/* A query: 2 to 4 words of one stored observation, in order, lower case;
 * with min_rank > 0, only words of at least that frequency rank. */
static char *make_query(const entity *e, long n, const map *ranks, long min_rank,
                        uint64_t *state)
{
    for (int attempt = 0; attempt < 1000; attempt++) {
        const entity *x = &e[bench_random(state) % (uint64_t)n];
        const char *obs = x->obs[bench_random(state) % (uint64_t)x->nobs];
        char words[16][48];
        int nw = 0;
        for (const char *p = obs; *p && nw < 16;) {
            while (*p == ' ' || *p == '.')
                p++;
            size_t l = 0;
            while (p[l] && p[l] != ' ' && p[l] != '.')
                l++;
            if (l && l < sizeof words[0]) {
                for (size_t i = 0; i < l; i++)
                    words[nw][i] = (char)(p[i] | 0x20);
                words[nw][l] = '\0';
                /* the map holds rank + 1 */
                if ((long)(uintptr_t)map_get(ranks, words[nw]) > min_rank)
                    nw++;
            }
            p += l;
        }
        if (nw < 2)
            continue;
        int want = 2 + (int)(bench_random(state) % 3);
        if (want > nw)
            want = nw;
        int start = nw > want ? (int)(bench_random(state) % (uint64_t)(nw - want + 1)) : 0;
        /* every other word from start when there are enough, so queries are
         * not always phrases */
        int step = start + 2 * (want - 1) < nw ? 2 : 1;
        char buf[256];
        size_t len = 0;
        for (int i = 0; i < want; i++)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i ? " " : "",
                                    words[start + i * step]);
        return strdup(buf);
    }
    return NULL;
}

/* The FTS5 query memstore_search builds: each word quoted, OR between. */
static void fts_query(const char *q, char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    const char *p = q;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t l = 0;
        while (p[l] && p[l] != ' ')
            l++;
        if (l)
            len += (size_t)snprintf(out + len, size - len, "%s\"%.*s\"", len ? " OR " : "",
                                    (int)l, p);
        if (len >= size)
            break;
        p += l;
    }
}

static vindex *reference_index(memstore *ms)
{
    vindex *vi = vindex_new(EMBED_BUILTIN_DIM);
    sqlite3_stmt *st = NULL;
    if (!vi || sqlite3_prepare_v2(memstore_sqlite(ms), "SELECT entity_id, vector FROM embeddings",
                                  -1, &st, NULL) != SQLITE_OK) {
        vindex_free(vi);
        return NULL;
    }
    while (sqlite3_step(st) == SQLITE_ROW)
        if (sqlite3_column_bytes(st, 1) == (int)(EMBED_BUILTIN_DIM * sizeof(float)))
            vindex_put(vi, sqlite3_column_int64(st, 0), 0, sqlite3_column_blob(st, 1));
    sqlite3_finalize(st);
    return vi;
}

static double run_store_search(memstore *ms, const mem_caller *who, const char *q,
                               mem_search_mode mode, bool *empty, int *rc)
{
    mem_search_query sq = {.text = q, .limit = 10, .mode = mode};
    json_t *out = NULL;
    cx_error err = {0};
    double t0 = bench_now_ms();
    int src = memstore_search(ms, who, &sq, &out, &err);
    double t = bench_now_ms() - t0;
    if (src < 0) {
        fprintf(stderr, "memory_bench: memstore_search: %s\n", err.msg);
        *rc = -1;
    }
    *empty = json_array_size(json_object_get(out, "results")) == 0;
    json_decref(out);
    return t;
}

typedef struct search_ctx {
    memstore *ms;
    vindex *vi;
    sqlite3_stmt *fts, *count;
    mem_caller who;
    double *t[S_COUNT];
} search_ctx;

/* Runs one query set: WARMUP + o->queries queries, each through the three
 * store modes and the two references, in an order that rotates. */
static int run_query_set(const options *o, search_ctx *x, char **qs, int set, search_result *s)
{
    sqlite3 *db = memstore_sqlite(x->ms);
    vindex_hit hits[CANDIDATES];
    double matched = 0;
    int rc = 0;
    for (long i = 0; rc == 0 && i < WARMUP + o->queries; i++) {
        long slot = i - WARMUP;
        char fq[1024];
        fts_query(qs[i], fq, sizeof fq);
        for (int turn = 0; rc == 0 && turn < S_COUNT; turn++) {
            int k = (int)((i + turn) % S_COUNT);
            double taken = 0;
            bool empty = false;
            if (k <= S_TEXT) {
                mem_search_mode mode = k == S_HYBRID ? MEM_SEARCH_HYBRID
                                       : k == S_VECTOR ? MEM_SEARCH_VECTOR
                                                       : MEM_SEARCH_TEXT;
                taken = run_store_search(x->ms, &x->who, qs[i], mode, &empty, &rc);
            } else if (k == S_REF_VECTOR) {
                float qv[EMBED_BUILTIN_DIM];
                double t0 = bench_now_ms();
                embed_builtin(qs[i], strlen(qs[i]), qv);
                size_t got = vindex_search(x->vi, qv, CANDIDATES, 1e-6f, NULL, hits);
                taken = bench_now_ms() - t0;
                empty = got == 0;
            } else {
                double t0 = bench_now_ms();
                sqlite3_bind_text(x->fts, 1, fq, -1, SQLITE_STATIC);
                int rows = 0, step;
                while ((step = sqlite3_step(x->fts)) == SQLITE_ROW)
                    rows++;
                sqlite3_reset(x->fts);
                taken = bench_now_ms() - t0;
                if (step != SQLITE_DONE) {
                    fprintf(stderr, "memory_bench: FTS query: %s\n", sqlite3_errmsg(db));
                    rc = -1;
                }
                empty = rows == 0;
            }
            if (slot >= 0) {
                x->t[k][slot] = taken;
                s->empty[set][k] += empty;
            }
        }
        if (slot >= 0 && rc == 0) {
            sqlite3_bind_text(x->count, 1, fq, -1, SQLITE_STATIC);
            if (sqlite3_step(x->count) == SQLITE_ROW)
                matched += (double)sqlite3_column_int64(x->count, 0) / (double)o->search_n;
            sqlite3_reset(x->count);
        }
    }
    if (rc == 0) {
        s->match_share[set] = matched / (double)o->queries;
        for (int k = 0; k < S_COUNT; k++) {
            s->p50[set][k] = bench_percentile(x->t[k], (size_t)o->queries, 50);
            s->p99[set][k] = bench_percentile(x->t[k], (size_t)o->queries, 99);
        }
    }
    return rc;
}

static int search_bench(const options *o, const corpus *c, const char *dir, search_result *s)
{
    char sub[4096];
    path_join(sub, sizeof sub, dir, "search");
    if (mkdir(sub, 0700) != 0) {
        fprintf(stderr, "memory_bench: cannot create %s: %s\n", sub, strerror(errno));
        return -1;
    }
    entity *e = make_entities(c, o->seed, 0, o->search_n);
    if (!e)
        return -1;
    search_ctx x = {.who = bench_caller(WORKSPACE)};
    x.ms = ingest_store(sub, e, o->search_n, &s->ingest);
    if (!x.ms) {
        entities_free(e, o->search_n);
        return -1;
    }
    long total = WARMUP + o->queries;
    char **qs[Q_SETS] = {calloc((size_t)total, sizeof(char *)),
                         calloc((size_t)total, sizeof(char *))};
    int rc = qs[0] && qs[1] ? 0 : -1;
    for (int k = 0; k < S_COUNT; k++)
        if (!(x.t[k] = calloc((size_t)o->queries, sizeof(double))))
            rc = -1;
    map ranks;
    map_init(&ranks);
    for (size_t r = 0; rc == 0 && r < VOCAB; r++)
        if (map_put(&ranks, c->words[r], (void *)(uintptr_t)(r + 1), NULL) != 0)
            rc = -1;
    for (int set = 0; rc == 0 && set < Q_SETS; set++) {
        uint64_t state = o->seed ^ (0x717565727900ull + (uint64_t)set);
        long min_rank = set == Q_CONTENT ? COMMON_WORDS : 0;
        for (long i = 0; rc == 0 && i < total; i++)
            if (!(qs[set][i] = make_query(e, o->search_n, &ranks, min_rank, &state)))
                rc = -1;
    }
    map_free(&ranks);
    entities_free(e, o->search_n);
    x.vi = rc == 0 ? reference_index(x.ms) : NULL;
    sqlite3 *db = memstore_sqlite(x.ms);
    if (rc == 0 &&
        (!x.vi ||
         sqlite3_prepare_v2(db,
                            "SELECT rowid FROM entities_fts WHERE entities_fts MATCH ? ORDER BY "
                            "bm25(entities_fts, 10.0, 2.0, 1.0) LIMIT 50",
                            -1, &x.fts, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(db, "SELECT count(*) FROM entities_fts WHERE entities_fts MATCH ?",
                            -1, &x.count, NULL) != SQLITE_OK)) {
        fprintf(stderr, "memory_bench: the search references: %s\n", sqlite3_errmsg(db));
        rc = -1;
    }
    for (int set = 0; rc == 0 && set < Q_SETS; set++)
        rc = run_query_set(o, &x, qs[set], set, s);
    if (rc == 0) {
        s->n = o->search_n;
        s->queries = o->queries;
    }
    sqlite3_finalize(x.fts);
    sqlite3_finalize(x.count);
    vindex_free(x.vi);
    memstore_close(x.ms);
    for (int k = 0; k < S_COUNT; k++)
        free(x.t[k]);
    for (int set = 0; set < Q_SETS; set++) {
        for (long i = 0; qs[set] && i < total; i++)
            free(qs[set][i]);
        free(qs[set]);
    }
    return rc;
}

static void search_report(const search_result *s)
{
    static const char *const labels[S_COUNT] = {
        "store, hybrid", "store, vector only", "store, text only",
        "reference: embed + vindex top 50", "reference: bare FTS5 top 50"};
    printf("Search: memstore_search top 10 over %ld entities as a workspace agent; %ld queries "
           "of 2-4 words of a stored observation per set (after %d warm-up)\n",
           s->n, s->queries, WARMUP);
    printf("  loaded through the bulk path at %.0f entities/s (import %.2f s, open %.2f s)\n",
           s->ingest.rate, s->ingest.import_s, s->ingest.open_s);
    for (int set = 0; set < Q_SETS; set++) {
        const double *p50 = s->p50[set], *p99 = s->p99[set];
        printf("  %s; the words are ORed, so the FTS query matches %.1f%% of the entities on "
               "average\n",
               set_titles[set], 100.0 * s->match_share[set]);
        printf("    %-34s %9s %9s\n", "", "p50 ms", "p99 ms");
        for (int k = 0; k < S_COUNT; k++)
            printf("    %-34s %9.3f %9.3f%s\n", labels[k], p50[k], p99[k],
                   s->empty[set][k] ? "  (some queries found nothing)" : "");
        printf("    store vector / reference vector: %.2fx p50, %.2fx p99\n",
               p50[S_VECTOR] / p50[S_REF_VECTOR], p99[S_VECTOR] / p99[S_REF_VECTOR]);
        printf("    store text / bare FTS5: %.2fx p50, %.2fx p99\n", p50[S_TEXT] / p50[S_REF_TEXT],
               p99[S_TEXT] / p99[S_REF_TEXT]);
        printf("    store hybrid / (reference vector + bare FTS5): %.2fx p50\n",
               p50[S_HYBRID] / (p50[S_REF_VECTOR] + p50[S_REF_TEXT]));
    }
}

static json_t *search_json(const search_result *s)
{
    json_t *o = json_pack("{s:I, s:I, s:f}", "entities", (json_int_t)s->n, "queries",
                          (json_int_t)s->queries, "load_entities_per_s", round(s->ingest.rate));
    for (int set = 0; set < Q_SETS; set++) {
        const double *p50 = s->p50[set], *p99 = s->p99[set];
        json_t *q = json_pack("{s:f}", "fts_match_share", round(s->match_share[set] * 1e4) / 1e4);
        for (int k = 0; k < S_COUNT; k++) {
            char key[40];
            snprintf(key, sizeof key, "%s_p50_ms", search_names[k]);
            json_object_set_new(q, key, json_real(round(p50[k] * 1e4) / 1e4));
            snprintf(key, sizeof key, "%s_p99_ms", search_names[k]);
            json_object_set_new(q, key, json_real(round(p99[k] * 1e4) / 1e4));
        }
        json_object_set_new(q, "vector_over_ref_p50",
                            json_real(round(p50[S_VECTOR] / p50[S_REF_VECTOR] * 100) / 100));
        json_object_set_new(q, "text_over_ref_p50",
                            json_real(round(p50[S_TEXT] / p50[S_REF_TEXT] * 100) / 100));
        json_object_set_new(
            q, "hybrid_over_refs_p50",
            json_real(round(p50[S_HYBRID] / (p50[S_REF_VECTOR] + p50[S_REF_TEXT]) * 100) / 100));
        json_object_set_new(o, set_names[set], q);
    }
    return o;
}

/* ---- options and main ------------------------------------------------------------- */

static int parse_long(const char *flag, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (!*text || *end || errno || v < min || v > max) {
        fprintf(stderr, "memory_bench: %s wants a whole number from %ld to %ld, not \"%s\"\n",
                flag, min, max, text);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_parts(const char *text, unsigned *parts)
{
    *parts = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (strcmp(p, "ingest") == 0)
            *parts |= PART_INGEST;
        else if (strcmp(p, "writes") == 0)
            *parts |= PART_WRITES;
        else if (strcmp(p, "search") == 0)
            *parts |= PART_SEARCH;
        else {
            fprintf(stderr, "memory_bench: --only takes ingest, writes and search, not \"%s\"\n",
                    p);
            return -1;
        }
    }
    return *parts ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: memory_bench [--n N] [--writes M] [--search-n S] [--queries Q] [--seed SEED]\n"
            "                    [--dir DIR] [--only ingest,writes,search]\n"
            "       memory_bench recall [--set PATH] [--dir DIR] [--verbose]\n");
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){20000, 500, 100000, 200, 42, NULL, PART_INGEST | PART_WRITES | PART_SEARCH};
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--help") == 0 || i + 1 >= argc) {
            usage();
            return -1;
        }
        const char *value = argv[++i];
        long seed;
        int rc = 0;
        if (strcmp(flag, "--n") == 0)
            rc = parse_long(flag, value, 1, N_MAX, &o->n);
        else if (strcmp(flag, "--writes") == 0)
            rc = parse_long(flag, value, 1, WRITES_MAX, &o->writes);
        else if (strcmp(flag, "--search-n") == 0)
            rc = parse_long(flag, value, 1, N_MAX, &o->search_n);
        else if (strcmp(flag, "--queries") == 0)
            rc = parse_long(flag, value, 1, QUERIES_MAX, &o->queries);
        else if (strcmp(flag, "--seed") == 0) {
            rc = parse_long(flag, value, 0, 1L << 40, &seed);
            o->seed = (uint64_t)seed;
        } else if (strcmp(flag, "--dir") == 0)
            o->dir = value;
        else if (strcmp(flag, "--only") == 0)
            rc = parse_parts(value, &o->parts);
        else {
            fprintf(stderr, "memory_bench: unknown flag %s\n", flag);
            usage();
            return -1;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "recall") == 0)
        return recall_main(argc - 1, argv + 1);
    options o;
    if (parse_options(argc, argv, &o) < 0)
        return 2;
    log_set_level(LOG_WARN);
    corpus c;
    char dir[4096];
    if (corpus_init(&c, o.seed) < 0)
        return 1;
    if (bench_make_dir(o.dir, dir, sizeof dir) < 0) {
        corpus_free(&c);
        return 1;
    }
    const char *fs = bench_fs_name(dir);
    printf("memory_bench: SQLite %s, vector kernel %s, scratch directory on %s\n",
           sqlite3_libversion(), vindex_kernel(), fs);
    json_t *summary = json_pack("{s:s, s:s, s:s, s:I}", "bench", "memory_store", "sqlite",
                                sqlite3_libversion(), "filesystem", fs, "seed",
                                (json_int_t)o.seed);
    int rc = 0;
    memstore *ms = NULL;
    long stored = 0;
    if (o.parts & PART_INGEST) {
        entity *e = make_entities(&c, o.seed, 0, o.n);
        ingest_result r = {0};
        ms = e ? ingest_store(dir, e, o.n, &r) : NULL;
        if (!ms || ingest_raw(dir, e, o.n, &r) < 0 || ingest_embedder(e, o.n, &r) < 0) {
            rc = 1;
        } else {
            ingest_report(&r, "Batched ingest");
            json_object_set_new(summary, "ingest", ingest_json(&r));
            stored = o.n;
        }
        entities_free(e, o.n);
    }
    if (rc == 0 && (o.parts & PART_WRITES)) {
        if (!ms) {
            char db[4096];
            path_join(db, sizeof db, dir, "memory.db");
            memstore_options opt = {.path = db, .cache_size = 64u << 20};
            cx_error err = {0};
            ms = memstore_open(&opt, &err);
            if (!ms || !memstore_available(ms)) {
                fprintf(stderr, "memory_bench: the store did not open: %s\n",
                        ms ? memstore_last_error(ms) : err.msg);
                rc = 1;
            }
        }
        write_result w = {0};
        if (rc == 0 && durable_writes(&o, &c, ms, dir, &w) < 0)
            rc = 1;
        if (rc == 0) {
            printf("\n");
            writes_report(&w, stored, fs);
            json_object_set_new(summary, "writes", writes_json(&w, fs));
        }
    }
    memstore_close(ms);
    if (rc == 0 && (o.parts & PART_SEARCH)) {
        search_result s;
        memset(&s, 0, sizeof s);
        if (search_bench(&o, &c, dir, &s) < 0) {
            rc = 1;
        } else {
            printf("\n");
            search_report(&s);
            json_object_set_new(summary, "search", search_json(&s));
        }
    }
    if (rc == 0) {
        char *line = json_dumps(summary, JSON_COMPACT | JSON_REAL_PRECISION(10));
        printf("%s\n", line ? line : "{}");
        free(line);
    }
    json_decref(summary);
    bench_remove_dir(dir);
    corpus_free(&c);
    return rc;
}
