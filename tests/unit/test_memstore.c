/* Unit tests for the memory store (memstore.c): entities with versions and
 * per-observation times, relations, the scope rules on every read and write
 * (violations recorded), hybrid search with filters and graph expansion,
 * limits, hostile names, derived indexes healed at open, reopen after a
 * quiesce, and a garbage file leaving the store unavailable, not crashed. */
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "core/util.h"
#include "memory/memstore.h"

static char dir[64];
static char path[128];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cx-memstore-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/data/memory.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static memstore *open_store(uint64_t max_size)
{
    memstore_options o = {.path = path, .max_size = max_size, .cache_size = 4 << 20};
    cx_error err = {0};
    memstore *ms = memstore_open(&o, &err);
    assert_non_null(ms);
    assert_true(memstore_available(ms));
    return ms;
}

static const mem_caller operator_caller = {.agent = NULL, .enabled = true,
                                           .scope = MEM_SCOPE_GLOBAL, .global_write = true};

static mem_caller agent_caller(const char *name, mem_scope_kind scope, const char *ws)
{
    return (mem_caller){.agent = name, .enabled = true, .scope = scope, .workspace = ws,
                        .max_entries = 0};
}

static int put(memstore *ms, const mem_caller *c, const char *json, json_t **out,
               cx_error *err)
{
    json_t *req = json_loads(json, JSON_ALLOW_NUL, NULL);
    assert_non_null(req);
    json_t *o = NULL;
    int rc = memstore_entity_put(ms, c, req, &o, err);
    json_decref(req);
    if (out)
        *out = o;
    else
        json_decref(o);
    return rc;
}

static void test_entity_versions_and_observations(void **state)
{
    (void)state;
    memstore *ms = open_store(0);
    cx_error err = {0};
    json_t *o = NULL;
    assert_int_equal(put(ms, &operator_caller,
                         "{\"scope\":\"workspace:finance\",\"name\":\"Acme Corp\",\"type\":"
                         "\"supplier\",\"observations\":[\"ships from Rotterdam\",\"pays in EUR\"]}",
                         &o, &err),
                     0);
    assert_true(json_is_true(json_object_get(o, "created")));
    assert_int_equal(json_integer_value(json_object_get(o, "version")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "observation_count")), 2);
    json_decref(o);
    /* same facts again: nothing changes */
    assert_int_equal(put(ms, &operator_caller,
                         "{\"scope\":\"workspace:finance\",\"name\":\"Acme Corp\","
                         "\"observations\":[\"pays in EUR\"]}",
                         &o, &err),
                     0);
    assert_int_equal(json_integer_value(json_object_get(o, "version")), 1);
    json_decref(o);
    /* a new fact and a removal: version 2, history keeps version 1 */
    assert_int_equal(put(ms, &operator_caller,
                         "{\"scope\":\"workspace:finance\",\"name\":\"Acme Corp\",\"confidence\":"
                         "0.5,\"observations\":[\"30 day terms\"],\"remove_observations\":"
                         "[\"pays in EUR\"]}",
                         &o, &err),
                     0);
    assert_int_equal(json_integer_value(json_object_get(o, "version")), 2);
    json_decref(o);
    assert_int_equal(memstore_entity_get(ms, &operator_caller, "workspace:finance", "Acme Corp",
                                         true, 100, &o, &err),
                     0);
    assert_int_equal(json_integer_value(json_object_get(o, "observation_count")), 2);
    json_t *hist = json_object_get(o, "history");
    assert_int_equal(json_array_size(json_object_get(hist, "versions")), 2);
    assert_int_equal(json_array_size(json_object_get(hist, "removed_observations")), 1);
    json_t *first = json_array_get(json_object_get(o, "observations"), 0);
    assert_non_null(json_object_get(first, "at"));
    json_decref(o);
    /* delete, then it is gone */
    assert_int_equal(memstore_entity_delete(ms, &operator_caller, "workspace:finance",
                                            "Acme Corp", &err),
                     0);
    assert_int_equal(memstore_entity_get(ms, &operator_caller, "workspace:finance", "Acme Corp",
                                         false, 10, &o, &err),
                     CX_ENOTFOUND);
    memstore_close(ms);
}

static void test_scope_rules(void **state)
{
    (void)state;
    memstore *ms = open_store(0);
    cx_error err = {0};
    mem_caller alice = agent_caller("alice", MEM_SCOPE_WORKSPACE, "finance");
    mem_caller bob = agent_caller("bob", MEM_SCOPE_AGENT, "finance");
    mem_caller carol = agent_caller("carol", MEM_SCOPE_WORKSPACE, "sales");
    assert_int_equal(put(ms, &alice, "{\"name\":\"ledger\",\"observations\":[\"closed\"]}", NULL,
                         &err),
                     0); /* default: workspace:finance */
    assert_int_equal(put(ms, &bob, "{\"name\":\"secret\",\"observations\":[\"x\"]}", NULL, &err),
                     0); /* default: agent:bob */
    json_t *o = NULL;
    /* alice cannot read bob's agent scope */
    assert_int_equal(memstore_entity_get(ms, &alice, "agent:bob", "secret", false, 10, &o, &err),
                     CX_EFORBIDDEN);
    assert_non_null(strstr(err.msg, "Memory access denied"));
    /* bob (agent scope) cannot read the finance workspace */
    assert_int_equal(memstore_entity_get(ms, &bob, "workspace:finance", "ledger", false, 10, &o,
                                         &err),
                     CX_EFORBIDDEN);
    /* carol is in another workspace */
    assert_int_equal(put(ms, &carol, "{\"scope\":\"workspace:finance\",\"name\":\"x\"}", NULL,
                         &err),
                     CX_EFORBIDDEN);
    /* global: everyone reads, nobody without global_write writes */
    assert_int_equal(put(ms, &operator_caller,
                         "{\"scope\":\"global\",\"name\":\"policy\",\"observations\":[\"p\"]}",
                         NULL, &err),
                     0);
    assert_int_equal(memstore_entity_get(ms, &bob, "global", "policy", false, 10, &o, &err), 0);
    json_decref(o);
    assert_int_equal(put(ms, &alice, "{\"scope\":\"global\",\"name\":\"p2\"}", NULL, &err),
                     CX_EFORBIDDEN);
    alice.global_write = true;
    assert_int_equal(put(ms, &alice, "{\"scope\":\"global\",\"name\":\"p2\"}", NULL, &err), 0);
    /* memory disabled: nothing at all */
    mem_caller off = agent_caller("dave", MEM_SCOPE_WORKSPACE, "finance");
    off.enabled = false;
    assert_int_equal(memstore_entity_get(ms, &off, "global", "policy", false, 10, &o, &err),
                     CX_EFORBIDDEN);
    /* search by alice never returns bob's entity, even asked by name */
    mem_search_query q = {.text = "secret", .limit = 10};
    assert_int_equal(memstore_search(ms, &alice, &q, &o, &err), 0);
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(o, "results"), i, h)
        assert_string_not_equal(json_string_value(json_object_get(h, "scope")), "agent:bob");
    json_decref(o);
    q.scope = "agent:bob";
    assert_int_equal(memstore_search(ms, &alice, &q, &o, &err), CX_EFORBIDDEN);
    /* every refusal was recorded */
    json_t *v = NULL;
    assert_int_equal(memstore_violations_json(ms, 0, NULL, 100, &v, &err), 0);
    assert_int_equal(json_array_size(v), 6);
    json_decref(v);
    assert_int_equal(memstore_violations_json(ms, 0, "alice", 100, &v, &err), 0);
    assert_int_equal(json_array_size(v), 3);
    json_decref(v);
    memstore_stats st;
    memstore_get_stats(ms, &st);
    assert_int_equal(st.violations, 6);
    memstore_close(ms);
}

static void test_hostile_input(void **state)
{
    (void)state;
    memstore *ms = open_store(0);
    cx_error err = {0};
    json_t *o = NULL;
    /* quotes are fine, and FTS syntax in a query is only text */
    assert_int_equal(put(ms, &operator_caller,
                         "{\"scope\":\"global\",\"name\":\"O'Brien \\\"Ltd\\\"\",\"observations\":"
                         "[\"quote ' and \\\" and ) OR ( NEAR*\"]}",
                         NULL, &err),
                     0);
    mem_search_query q = {.text = "\" OR 1=1 -- NEAR( ) * ^", .limit = 5};
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), 0);
    json_decref(o);
    q.text = "O'Brien";
    q.mode = MEM_SEARCH_TEXT;
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), 0);
    assert_int_equal(json_array_size(json_object_get(o, "results")), 1);
    json_decref(o);
    /* a newline, a 10 KB name, a NUL, bad scope, bad confidence, unknown key */
    assert_int_equal(put(ms, &operator_caller, "{\"scope\":\"global\",\"name\":\"a\\nb\"}", NULL,
                         &err),
                     CX_EINVAL);
    assert_non_null(strstr(err.msg, "control character"));
    char *big = malloc(10 * 1024 + 64);
    memset(big, 'x', 10 * 1024 + 64);
    int n = snprintf(big, 32, "{\"scope\":\"global\",\"name\":\"");
    big[n] = 'x';
    memcpy(big + 10 * 1024 + 30, "\"}", 3);
    assert_int_equal(put(ms, &operator_caller, big, NULL, &err), CX_ETOOBIG);
    assert_non_null(strstr(err.msg, "at most 256"));
    free(big);
    assert_int_equal(put(ms, &operator_caller, "{\"scope\":\"global\",\"name\":\"a\\u0000b\"}",
                         NULL, &err),
                     CX_EINVAL);
    assert_int_equal(put(ms, &operator_caller, "{\"scope\":\"planet:x\",\"name\":\"a\"}", NULL,
                         &err),
                     CX_EINVAL);
    assert_int_equal(put(ms, &operator_caller, "{\"scope\":\"agent:\",\"name\":\"a\"}", NULL,
                         &err),
                     CX_EINVAL);
    assert_int_equal(put(ms, &operator_caller,
                         "{\"scope\":\"global\",\"name\":\"a\",\"confidence\":2}", NULL, &err),
                     CX_EINVAL);
    assert_int_equal(put(ms, &operator_caller, "{\"scope\":\"global\",\"name\":\"a\",\"nme\":1}",
                         NULL, &err),
                     CX_EINVAL);
    assert_non_null(strstr(err.msg, "unknown field"));
    assert_int_equal(put(ms, &operator_caller,
                         "{\"scope\":\"global\",\"name\":\"a\",\"observations\":\"x\"}", NULL,
                         &err),
                     CX_EINVAL);
    memstore_close(ms);
}

static void test_search_filters_and_graph(void **state)
{
    (void)state;
    memstore *ms = open_store(0);
    cx_error err = {0};
    const char *docs[] = {
        "{\"scope\":\"global\",\"name\":\"Acme\",\"type\":\"supplier\",\"observations\":"
        "[\"sells steel bolts\"]}",
        "{\"scope\":\"global\",\"name\":\"Bolt Inc\",\"type\":\"supplier\",\"observations\":"
        "[\"sells copper wire\"]}",
        "{\"scope\":\"global\",\"name\":\"PO-17\",\"type\":\"purchase-order\",\"observations\":"
        "[\"steel bolts for the bridge\"]}",
        "{\"scope\":\"global\",\"name\":\"Bridge\",\"type\":\"project\",\"observations\":"
        "[\"river crossing\"]}",
    };
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(put(ms, &operator_caller, docs[i], NULL, &err), 0);
    json_t *rel = json_pack("{s:s, s:s, s:s, s:s, s:f}", "scope", "global", "from", "PO-17", "to",
                            "Bridge", "type", "supplies", "strength", 0.9);
    json_t *o = NULL;
    assert_int_equal(memstore_relation_put(ms, &operator_caller, rel, &o, &err), 0);
    json_decref(o);
    json_decref(rel);
    rel = json_pack("{s:s, s:s, s:s, s:s}", "scope", "global", "from", "PO-17", "to", "Nowhere",
                    "type", "supplies");
    assert_int_equal(memstore_relation_put(ms, &operator_caller, rel, &o, &err), CX_ENOTFOUND);
    json_decref(rel);
    rel = json_pack("{s:s, s:s, s:s, s:s}", "scope", "global", "from", "PO-17", "to", "Bridge",
                    "type", "Depends On");
    assert_int_equal(memstore_relation_put(ms, &operator_caller, rel, &o, &err), CX_EINVAL);
    json_decref(rel);

    mem_search_query q = {.text = "steel bolts", .limit = 10};
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), 0);
    json_t *res = json_object_get(o, "results");
    assert_true(json_array_size(res) >= 2);
    const char *top = json_string_value(json_object_get(json_array_get(res, 0), "name"));
    assert_true(strcmp(top, "Acme") == 0 || strcmp(top, "PO-17") == 0);
    json_decref(o);
    const char *types[] = {"supplier"};
    q.types = types;
    q.type_count = 1;
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), 0);
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(o, "results"), i, h)
        assert_string_equal(json_string_value(json_object_get(h, "type")), "supplier");
    json_decref(o);
    /* expansion reaches the project through the relation */
    q.types = NULL;
    q.type_count = 0;
    q.text = "purchase order PO-17";
    q.limit = 1;
    q.depth = 1;
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), 0);
    json_t *exp = json_object_get(o, "expanded");
    bool found = false;
    json_array_foreach(exp, i, h) found = found ||
                                          strcmp(json_string_value(json_object_get(h, "name")),
                                                 "Bridge") == 0;
    assert_true(found);
    json_decref(o);
    q.limit = 101;
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), CX_EINVAL);
    q.limit = 5;
    q.depth = 6;
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), CX_EINVAL);
    assert_int_equal(memstore_graph(ms, &operator_caller, "global", "Bridge", 2, &o, &err), 0);
    assert_int_equal(json_array_size(json_object_get(o, "edges")), 1);
    json_decref(o);
    memstore_close(ms);
}

/* Words held by most entities carry no BM25 weight: a query keeps only its
 * rarer words, unless all of its words are common. */
static void test_common_words_left_out(void **state)
{
    (void)state;
    memstore *ms = open_store(0);
    cx_error err = {0};
    for (int i = 0; i < 10; i++) {
        json_t *req = json_pack("{s:s, s:s, s:[s]}", "scope", "global", "name",
                                i == 7 ? "target" : "filler", "observations",
                                i == 7 ? "the shared word and a zeppelin" : "the shared word");
        if (i != 7)
            json_object_set_new(req, "name", json_sprintf("filler %d", i));
        json_t *o = NULL;
        assert_int_equal(memstore_entity_put(ms, &operator_caller, req, &o, &err), 0);
        json_decref(o);
        json_decref(req);
    }
    json_t *o = NULL;
    mem_search_query q = {.text = "the shared zeppelin", .limit = 10, .mode = MEM_SEARCH_TEXT};
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), 0);
    json_t *res = json_object_get(o, "results");
    assert_int_equal(json_array_size(res), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "name")),
                        "target");
    json_decref(o);
    q.text = "the shared word";
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), 0);
    assert_int_equal(json_array_size(json_object_get(o, "results")), 10);
    json_decref(o);
    memstore_close(ms);
}

static void test_limits(void **state)
{
    (void)state;
    memstore *ms = open_store(0);
    cx_error err = {0};
    mem_caller a = agent_caller("alice", MEM_SCOPE_AGENT, "default");
    a.max_entries = 2;
    assert_int_equal(put(ms, &a, "{\"name\":\"one\"}", NULL, &err), 0);
    assert_int_equal(put(ms, &a, "{\"name\":\"two\"}", NULL, &err), 0);
    assert_int_equal(put(ms, &a, "{\"name\":\"three\"}", NULL, &err), CX_ELIMIT);
    assert_string_equal(memstore_api_code(err.code), "MEMORY_LIMIT_EXCEEDED");
    /* updating an existing one is still fine */
    assert_int_equal(put(ms, &a, "{\"name\":\"two\",\"observations\":[\"more\"]}", NULL, &err), 0);
    memstore_close(ms);
    /* a database over memory.max_size refuses writes */
    ms = open_store(1024);
    assert_int_equal(put(ms, &operator_caller, "{\"scope\":\"global\",\"name\":\"x\"}", NULL,
                         &err),
                     CX_ELIMIT);
    assert_non_null(strstr(err.msg, "memory.max_size"));
    memstore_close(ms);
}

static void test_retention(void **state)
{
    (void)state;
    memstore *ms = open_store(0);
    cx_error err = {0};
    mem_caller a = agent_caller("alice", MEM_SCOPE_AGENT, "default");
    for (int i = 0; i < 5; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"name\":\"fact %d\",\"observations\":[\"x\"]}", i);
        assert_int_equal(put(ms, &a, body, NULL, &err), 0);
    }
    assert_int_equal(put(ms, &operator_caller, "{\"scope\":\"agent:alice\",\"name\":\"op\"}",
                         NULL, &err),
                     0);
    /* three of alice's facts (and the operator's) last changed long ago */
    assert_int_equal(sqlite3_exec(memstore_sqlite(ms),
                                  "UPDATE entities SET updated_at = 1000 WHERE name IN "
                                  "('fact 0', 'fact 1', 'fact 2', 'op')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    int64_t deleted = -1;
    assert_int_equal(memstore_apply_retention(ms, "alice", 5000, 2, &deleted, &err), 0);
    assert_int_equal(deleted, 2); /* at most max per call */
    assert_int_equal(memstore_apply_retention(ms, "alice", 5000, 100, &deleted, &err), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(memstore_apply_retention(ms, "alice", 5000, 100, &deleted, &err), 0);
    assert_int_equal(deleted, 0);
    json_t *o = NULL;
    assert_int_equal(memstore_entity_get(ms, &a, "agent:alice", "fact 1", false, 1, &o, &err),
                     CX_ENOTFOUND);
    assert_int_equal(memstore_entity_get(ms, &a, "agent:alice", "fact 4", false, 1, &o, &err), 0);
    json_decref(o);
    assert_int_equal(memstore_entity_get(ms, &a, "agent:alice", "op", false, 1, &o, &err), 0);
    json_decref(o);
    memstore_stats st;
    memstore_get_stats(ms, &st);
    assert_int_equal(st.vectors, 3);
    memstore_close(ms);
}

static void test_many_observations(void **state)
{
    (void)state;
    memstore *ms = open_store(0);
    cx_error err = {0};
    /* 100 writes of 1000 observations: 100,000 on one entity, bounded work per write */
    for (int w = 0; w < 100; w++) {
        json_t *obs = json_array();
        for (int i = 0; i < 1000; i++)
            json_array_append_new(obs, json_sprintf("fact %d of batch %d", i, w));
        json_t *req = json_pack("{s:s, s:s, s:o}", "scope", "global", "name", "big",
                                "observations", obs);
        json_t *o = NULL;
        assert_int_equal(memstore_entity_put(ms, &operator_caller, req, &o, &err), 0);
        json_decref(o);
        json_decref(req);
    }
    json_t *o = NULL;
    assert_int_equal(memstore_entity_get(ms, &operator_caller, "global", "big", false, 50, &o,
                                         &err),
                     0);
    assert_int_equal(json_integer_value(json_object_get(o, "observation_count")), 100000);
    assert_int_equal(json_array_size(json_object_get(o, "observations")), 50);
    json_decref(o);
    /* over 1000 in one write is refused */
    json_t *obs = json_array();
    for (int i = 0; i < 1001; i++)
        json_array_append_new(obs, json_sprintf("x%d", i));
    json_t *req = json_pack("{s:s, s:s, s:o}", "scope", "global", "name", "big", "observations",
                            obs);
    assert_int_equal(memstore_entity_put(ms, &operator_caller, req, &o, &err), CX_ETOOBIG);
    json_decref(req);
    memstore_close(ms);
}

static void test_derived_indexes_heal_at_open(void **state)
{
    (void)state;
    memstore *ms = open_store(0);
    cx_error err = {0};
    assert_int_equal(put(ms, &operator_caller,
                         "{\"scope\":\"global\",\"name\":\"alpha\",\"observations\":[\"first "
                         "letter\"]}",
                         NULL, &err),
                     0);
    memstore_close(ms);
    /* as an import or a salvage leaves it: no embeddings, no FTS rows */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DELETE FROM embeddings; DELETE FROM entities_fts;", NULL,
                                  NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    ms = open_store(0);
    memstore_stats st;
    memstore_get_stats(ms, &st);
    assert_int_equal(st.vectors, 1);
    json_t *o = NULL;
    mem_search_query q = {.text = "letter", .limit = 5, .mode = MEM_SEARCH_TEXT};
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), 0);
    assert_int_equal(json_array_size(json_object_get(o, "results")), 1);
    json_decref(o);
    /* quiesce and resume */
    memstore_quiesce(ms);
    assert_false(memstore_available(ms));
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), CX_EUNAVAIL);
    assert_int_equal(memstore_resume(ms, &err), 0);
    assert_int_equal(memstore_search(ms, &operator_caller, &q, &o, &err), 0);
    json_decref(o);
    json_t *rep = NULL;
    assert_int_equal(memstore_reindex(ms, NULL, &rep, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(rep, "entities")), 1);
    json_decref(rep);
    memstore_close(ms);
}

static void test_garbage_file_is_unavailable(void **state)
{
    (void)state;
    char d[160];
    snprintf(d, sizeof d, "%s/data", dir);
    assert_int_equal(fs_mkdir_p(d, 0700, NULL), 0);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    memstore_options o = {.path = path};
    cx_error err = {0};
    memstore *ms = memstore_open(&o, &err);
    assert_non_null(ms);
    assert_false(memstore_available(ms));
    assert_non_null(strstr(memstore_last_error(ms), "not a database"));
    json_t *out = NULL;
    assert_int_equal(put(ms, &operator_caller, "{\"scope\":\"global\",\"name\":\"x\"}", &out,
                         &err),
                     CX_EUNAVAIL);
    assert_string_equal(memstore_api_code(err.code), "MEMORY_UNAVAILABLE");
    memstore_close(ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_entity_versions_and_observations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scope_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_filters_and_graph, setup, teardown),
        cmocka_unit_test_setup_teardown(test_common_words_left_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_observations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_derived_indexes_heal_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_file_is_unavailable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
