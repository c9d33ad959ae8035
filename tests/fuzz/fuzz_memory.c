/* libFuzzer harness: hostile input to the memory store and the import
 * validator. Each input is tried as an entity write, a relation write and a
 * search query on a fresh in-memory store, and as an export file given to
 * `memory import --dry-run` (full validation, nothing written). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "memory/memops.h"
#include "memory/memstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void cleanup(void)
{
    char p[96];
    static const char *const names[] = {"in.json", "memory.db", "memory.db-wal", "memory.db-shm"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void store_round(const uint8_t *data, size_t size)
{
    memstore_options o = {.path = ":memory:"};
    memstore *ms = memstore_open(&o, NULL);
    if (!ms)
        return;
    mem_caller op = {.agent = NULL, .enabled = true, .scope = MEM_SCOPE_GLOBAL,
                     .global_write = true};
    mem_caller ag = {.agent = "fuzz", .enabled = true, .scope = MEM_SCOPE_WORKSPACE,
                     .workspace = "default", .max_entries = 5};
    json_t *in = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
    if (in) {
        for (int who = 0; who < 2; who++) {
            json_t *out = NULL;
            cx_error err = {0};
            memstore_entity_put(ms, who ? &ag : &op, in, &out, &err);
            json_decref(out);
            out = NULL;
            memstore_relation_put(ms, who ? &ag : &op, in, &out, &err);
            json_decref(out);
        }
        json_decref(in);
    }
    char q[1024];
    size_t n = size < sizeof q - 1 ? size : sizeof q - 1;
    memcpy(q, data, n);
    q[n] = '\0';
    for (int mode = 0; mode < 3; mode++) {
        mem_search_query sq = {.text = q, .limit = 10, .depth = 1, .mode = (mem_search_mode)mode};
        json_t *out = NULL;
        cx_error err = {0};
        memstore_search(ms, &op, &sq, &out, &err);
        json_decref(out);
        out = NULL;
        memstore_search(ms, &ag, &sq, &out, &err);
        json_decref(out);
    }
    memstore_close(ms);
}

static void import_round(const uint8_t *data, size_t size)
{
    char file[96], db[96];
    snprintf(file, sizeof file, "%s/in.json", dir);
    snprintf(db, sizeof db, "%s/memory.db", dir);
    FILE *f = fopen(file, "wb");
    if (!f)
        return;
    fwrite(data, 1, size, f);
    fclose(f);
    memops_ctx ctx = {.db_path = db, .backups_dir = dir, .keep = 1, .actor = "fuzz"};
    json_t *args = json_pack("{s:s, s:b, s:s}", "file", file, "dry_run", 1, "merge", "error");
    json_t *res = NULL;
    cx_error err = {0};
    memops_run(&ctx, "import", args, &res, &err);
    json_decref(res);
    json_decref(args);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        log_set_stderr(false);
        snprintf(dir, sizeof dir, "/tmp/caxton-fuzz-memory-XXXXXX");
        if (!mkdtemp(dir))
            abort();
        atexit(cleanup);
    }
    store_round(data, size);
    import_round(data, size);
    return 0;
}
