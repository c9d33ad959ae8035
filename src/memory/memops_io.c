/* export and import: the memory database as a versioned JSON document.
 *
 * {"format": "caxton-memory-export", "version": 1, "exported_at",
 *  "schema_version", "entities": [{scope, name, type, confidence, metadata,
 *  created_at, updated_at, version, created_by, observations: [{text, at,
 *  removed_at?}], history: [{version, type, confidence, metadata,
 *  changed_at, changed_by}]}], "relations": [{from_scope, from, to_scope, to,
 *  type, strength, created_at, created_by}], "scope_overrides": [{agent,
 *  scope, workspace, set_at}], "counts": {entities, relations, observations}}
 *
 * Times are RFC 3339 with milliseconds (import also takes epoch ms).
 * Embeddings are not exported: the server computes them. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "memory/memops_internal.h"

#define EXPORT_FORMAT "caxton-memory-export"
#define EXPORT_VERSION 1
#define ACTOR_MAX 256

static json_t *col_string(sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return json_null();
    const char *text = (const char *)sqlite3_column_text(st, i);
    return ops_string(text ? text : "", (size_t)sqlite3_column_bytes(st, i));
}

static json_t *col_time(sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return json_null();
    return ops_time_json((uint64_t)sqlite3_column_int64(st, i));
}

/* The stored metadata text as an object ({} when it does not parse). */
static json_t *col_metadata(sqlite3_stmt *st, int i, int64_t *bad)
{
    const char *text = (const char *)sqlite3_column_text(st, i);
    json_t *v = text ? json_loadb(text, (size_t)sqlite3_column_bytes(st, i), 0, NULL) : NULL;
    if (!json_is_object(v)) {
        json_decref(v);
        (*bad)++;
        return json_object();
    }
    return v;
}

/* ---- export --------------------------------------------------------------- */

typedef struct exporter {
    FILE *f;
    bool failed;      /* writing */
    bool read_failed; /* reading observations or history */
    int64_t entities, relations, observations, overrides, bad_metadata;
} exporter;

static void put(exporter *x, const char *text)
{
    if (!x->failed && fputs(text, x->f) == EOF)
        x->failed = true;
}

static void put_json(exporter *x, json_t *v)
{
    if (!v) {
        x->failed = true;
        return;
    }
    if (!x->failed && json_dumpf(v, x->f, JSON_COMPACT) != 0)
        x->failed = true;
    json_decref(v);
}

enum { ST_ENTITIES, ST_OBS, ST_HISTORY, ST_RELATIONS, ST_OVERRIDES, ST_COUNT };

static const char *const export_sql[ST_COUNT] = {
    "SELECT id, scope, name, type, confidence, metadata, created_at, updated_at, version, "
    "created_by FROM entities ORDER BY id",
    "SELECT text, created_at, removed_at FROM observations WHERE entity_id = ? ORDER BY id",
    "SELECT version, type, confidence, metadata, changed_at, changed_by FROM entity_versions "
    "WHERE entity_id = ? ORDER BY version",
    "SELECT f.scope, f.name, t.scope, t.name, r.type, r.strength, r.created_at, r.created_by "
    "FROM relations r JOIN entities f ON f.id = r.from_id JOIN entities t ON t.id = r.to_id "
    "ORDER BY r.id",
    "SELECT agent, scope, workspace, set_at FROM scope_overrides ORDER BY agent",
};

static json_t *export_entity(exporter *x, sqlite3_stmt **st)
{
    sqlite3_stmt *e = st[ST_ENTITIES];
    int64_t id = sqlite3_column_int64(e, 0);
    json_t *obs = json_array(), *hist = json_array();
    sqlite3_bind_int64(st[ST_OBS], 1, id);
    int rc;
    while ((rc = sqlite3_step(st[ST_OBS])) == SQLITE_ROW) {
        json_t *o = json_pack("{s:o, s:o}", "text", col_string(st[ST_OBS], 0), "at",
                              col_time(st[ST_OBS], 1));
        if (o && sqlite3_column_type(st[ST_OBS], 2) != SQLITE_NULL)
            json_object_set_new(o, "removed_at", col_time(st[ST_OBS], 2));
        json_array_append_new(obs, o);
        x->observations++;
    }
    if (rc != SQLITE_DONE)
        x->read_failed = true;
    sqlite3_reset(st[ST_OBS]);
    sqlite3_bind_int64(st[ST_HISTORY], 1, id);
    while ((rc = sqlite3_step(st[ST_HISTORY])) == SQLITE_ROW) {
        sqlite3_stmt *h = st[ST_HISTORY];
        json_array_append_new(
            hist, json_pack("{s:I, s:o, s:f, s:o, s:o, s:o}", "version",
                            (json_int_t)sqlite3_column_int64(h, 0), "type", col_string(h, 1),
                            "confidence", sqlite3_column_double(h, 2), "metadata",
                            col_metadata(h, 3, &x->bad_metadata), "changed_at", col_time(h, 4),
                            "changed_by", col_string(h, 5)));
    }
    if (rc != SQLITE_DONE)
        x->read_failed = true;
    sqlite3_reset(st[ST_HISTORY]);
    return json_pack("{s:o, s:o, s:o, s:f, s:o, s:o, s:o, s:I, s:o, s:o, s:o}", "scope",
                     col_string(e, 1), "name", col_string(e, 2), "type", col_string(e, 3),
                     "confidence", sqlite3_column_double(e, 4), "metadata",
                     col_metadata(e, 5, &x->bad_metadata), "created_at", col_time(e, 6),
                     "updated_at", col_time(e, 7), "version",
                     (json_int_t)sqlite3_column_int64(e, 8), "created_by", col_string(e, 9),
                     "observations", obs, "history", hist);
}

/* Writes the document; returns false (with why) when a read or write failed. */
static bool export_write(exporter *x, sqlite3 *db, char *why, size_t size)
{
    sqlite3_stmt *st[ST_COUNT] = {0};
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v2(db, export_sql[i], -1, &st[i], NULL) != SQLITE_OK) {
            snprintf(why, size, "reading the database: %s", sqlite3_errmsg(db));
            for (int j = 0; j < i; j++)
                sqlite3_finalize(st[j]);
            return false;
        }
    int64_t version = 0;
    ops_query_int(db, "PRAGMA user_version", &version);
    char at[40], head[256];
    time_format_rfc3339(time_now_ms(), at, sizeof at);
    snprintf(head, sizeof head,
             "{\"format\":\"" EXPORT_FORMAT "\",\"version\":%d,\"exported_at\":\"%s\","
             "\"schema_version\":%lld,\n\"entities\":[",
             EXPORT_VERSION, at, (long long)version);
    put(x, head);
    int rc;
    while (!x->failed && (rc = sqlite3_step(st[ST_ENTITIES])) == SQLITE_ROW) {
        put(x, x->entities ? ",\n" : "\n");
        put_json(x, export_entity(x, st));
        x->entities++;
    }
    bool read_ok = x->failed || rc == SQLITE_DONE;
    put(x, "\n],\n\"relations\":[");
    while (read_ok && !x->failed && (rc = sqlite3_step(st[ST_RELATIONS])) == SQLITE_ROW) {
        sqlite3_stmt *r = st[ST_RELATIONS];
        put(x, x->relations ? ",\n" : "\n");
        put_json(x, json_pack("{s:o, s:o, s:o, s:o, s:o, s:f, s:o, s:o}", "from_scope",
                              col_string(r, 0), "from", col_string(r, 1), "to_scope",
                              col_string(r, 2), "to", col_string(r, 3), "type", col_string(r, 4),
                              "strength", sqlite3_column_double(r, 5), "created_at",
                              col_time(r, 6), "created_by", col_string(r, 7)));
        x->relations++;
    }
    read_ok = read_ok && (x->failed || rc == SQLITE_DONE);
    put(x, "\n],\n\"scope_overrides\":[");
    while (read_ok && !x->failed && (rc = sqlite3_step(st[ST_OVERRIDES])) == SQLITE_ROW) {
        sqlite3_stmt *o = st[ST_OVERRIDES];
        put(x, x->overrides ? ",\n" : "\n");
        put_json(x, json_pack("{s:o, s:o, s:o, s:o}", "agent", col_string(o, 0), "scope",
                              col_string(o, 1), "workspace", col_string(o, 2), "set_at",
                              col_time(o, 3)));
        x->overrides++;
    }
    read_ok = read_ok && (x->failed || rc == SQLITE_DONE) && !x->read_failed;
    if (!read_ok)
        snprintf(why, size, "reading the database: %s", sqlite3_errmsg(db));
    char tail[256];
    snprintf(tail, sizeof tail,
             "\n],\n\"counts\":{\"entities\":%lld,\"relations\":%lld,\"observations\":%lld}}\n",
             (long long)x->entities, (long long)x->relations, (long long)x->observations);
    put(x, tail);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(st[i]);
    if (x->failed && read_ok)
        snprintf(why, size, "writing the file: %s", strerror(errno ? errno : EIO));
    return read_ok && !x->failed;
}

int memops_op_export(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    const char *path = ops_arg_string(args, "json");
    if (!path || !*path)
        return cx_error_set(err, CX_EINVAL, "memory export needs --json PATH");
    ops_db db;
    if (ops_db_open(ctx, OPS_READ, &db, res) < 0)
        return 0;
    uint64_t start = time_monotonic_ns();
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        ops_db_close(&db);
        return cx_error_set(err, CX_EINVAL, "memory export: the path is too long");
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        ops_problem(res, "cannot create %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        ops_db_close(&db);
        return 0;
    }
    /* one read transaction: a consistent snapshot */
    bool began = sqlite3_get_autocommit(db.sql) &&
                 sqlite3_exec(db.sql, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    exporter x = {.f = f};
    char why[512] = "";
    errno = 0;
    bool ok = export_write(&x, db.sql, why, sizeof why);
    if (began)
        sqlite3_exec(db.sql, "COMMIT", NULL, NULL, NULL);
    ops_db_close(&db);
    if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
        ok = false;
        snprintf(why, sizeof why, "writing the file: %s", strerror(errno));
    }
    if (fclose(f) != 0 && ok) {
        ok = false;
        snprintf(why, sizeof why, "writing the file: %s", strerror(errno));
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        snprintf(why, sizeof why, "cannot rename the temporary file: %s", strerror(errno));
    }
    if (!ok) {
        unlink(tmp);
        ops_problem(res, "the export failed (nothing was written to %s): %s", path, why);
        return 0;
    }
    ops_fsync_parent(path);
    if (x.bad_metadata > 0)
        ops_warning(res, "%lld metadata values did not parse and were exported as {}",
                    (long long)x.bad_metadata);
    json_object_set_new(res, "path", json_string(path));
    json_object_set_new(res, "bytes", json_integer((json_int_t)ops_size_or_zero(path)));
    json_object_set_new(res, "counts",
                        json_pack("{s:I, s:I, s:I, s:I}", "entities", (json_int_t)x.entities,
                                  "relations", (json_int_t)x.relations, "observations",
                                  (json_int_t)x.observations, "scope_overrides",
                                  (json_int_t)x.overrides));
    json_object_set_new(res, "embeddings",
                        json_string("not exported: the server computes them"));
    json_object_set_new(res, "seconds", json_real(ops_elapsed_s(start)));
    return 0;
}

/* ---- import: validation ------------------------------------------------------ */

typedef struct validator {
    json_t *res;
    json_t *keys;      /* "scope\nname" -> index in entities */
    json_t *relations; /* relation key -> index */
    uint64_t now;
} validator;

static void vfail(validator *v, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vfail(validator *v, const char *where, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ops_problem(v->res, "%s: %s", where, msg);
}

/* Strict objects: every key must be one the format knows. */
static void check_keys(validator *v, const char *where, json_t *obj, const char *const *known)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        bool ok = false;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = strcmp(known[i], key) == 0;
        if (!ok) {
            char quoted[80];
            text_quote(key, quoted, sizeof quoted);
            vfail(v, where, "unknown field %s", quoted);
        }
    }
}

/* A string of 1..max bytes without NUL; NULL (absent) allowed unless required. */
static bool check_text(validator *v, const char *where, json_t *obj, const char *field,
                       size_t max, bool required)
{
    json_t *val = json_object_get(obj, field);
    if (!val || (json_is_null(val) && !required)) {
        if (required)
            vfail(v, where, "%s is missing", field);
        return !required;
    }
    if (!json_is_string(val)) {
        vfail(v, where, "%s must be a string", field);
        return false;
    }
    size_t len = json_string_length(val);
    if (len == 0) {
        vfail(v, where, "%s is empty", field);
        return false;
    }
    if (len > max) {
        vfail(v, where, "%s is %zu bytes; the limit is %zu", field, len, max);
        return false;
    }
    if (memchr(json_string_value(val), '\0', len)) {
        vfail(v, where, "%s contains a NUL character", field);
        return false;
    }
    return true;
}

/* Names and types follow the store's own rules (memstore.c): no control
 * characters, no '/' in names, types of letters, digits, space, - _ . */
static bool check_name(validator *v, const char *where, json_t *obj, const char *field,
                       size_t max, bool is_type)
{
    if (!check_text(v, where, obj, field, max, true))
        return false;
    const char *s = json_string_value(json_object_get(obj, field));
    for (size_t i = 0; s[i]; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            vfail(v, where, "%s: control character 0x%02x at byte %zu is not allowed", field, ch,
                  i);
            return false;
        }
        if (!is_type && ch == '/') {
            vfail(v, where, "%s: '/' is not allowed in entity names", field);
            return false;
        }
        if (is_type && !(isalnum(ch) || ch == ' ' || ch == '-' || ch == '_' || ch == '.')) {
            vfail(v, where, "%s: only letters, digits, space, '-', '_' and '.' are allowed",
                  field);
            return false;
        }
    }
    return true;
}

static bool check_unit(validator *v, const char *where, json_t *obj, const char *field)
{
    json_t *val = json_object_get(obj, field);
    if (!val)
        return true;
    if (!json_is_number(val)) {
        vfail(v, where, "%s must be a number from 0 to 1", field);
        return false;
    }
    double d = json_number_value(val);
    if (!(d >= 0.0 && d <= 1.0)) {
        vfail(v, where, "%s %g is out of range: it must be from 0 to 1", field, d);
        return false;
    }
    return true;
}

/* RFC 3339 text or epoch milliseconds; *ms = 0 when absent (or null and
 * nullable). */
static bool parse_time(json_t *val, uint64_t *ms)
{
    if (json_is_integer(val) && json_integer_value(val) > 0) {
        *ms = (uint64_t)json_integer_value(val);
        return true;
    }
    return json_is_string(val) && time_parse_rfc3339(json_string_value(val), ms);
}

static bool check_time(validator *v, const char *where, json_t *obj, const char *field,
                       bool nullable)
{
    json_t *val = json_object_get(obj, field);
    uint64_t ms;
    if (!val || (nullable && json_is_null(val)))
        return true;
    if (!parse_time(val, &ms)) {
        vfail(v, where, "%s must be an RFC 3339 time (2026-01-02T03:04:05.000Z)", field);
        return false;
    }
    return true;
}

static bool check_metadata(validator *v, const char *where, json_t *obj, const char *field)
{
    json_t *val = json_object_get(obj, field);
    if (!val)
        return true;
    if (!json_is_object(val)) {
        vfail(v, where, "%s must be an object", field);
        return false;
    }
    char *text = json_dumps(val, JSON_COMPACT);
    size_t len = text ? strlen(text) : SIZE_MAX;
    free(text);
    if (len > MEM_METADATA_MAX) {
        vfail(v, where, "%s is %zu bytes serialised; the limit is %u", field, len,
              MEM_METADATA_MAX);
        return false;
    }
    return true;
}

static bool check_scope(validator *v, const char *where, json_t *obj, const char *field)
{
    if (!check_text(v, where, obj, field, MEM_SCOPE_MAX, true))
        return false;
    const char *s = json_string_value(json_object_get(obj, field));
    if (!ops_scope_valid(s)) {
        char quoted[96];
        text_quote(s, quoted, sizeof quoted);
        vfail(v, where,
              "%s %s is not agent:NAME, workspace:NAME or global (NAME: 1 to 128 of "
              "A-Z a-z 0-9 . _ -)",
              field, quoted);
        return false;
    }
    return true;
}

/* "scope\nname": scopes hold no newline, so the first one separates. */
static char *entity_key(const char *scope, const char *name)
{
    size_t a = strlen(scope), b = strlen(name);
    char *key = malloc(a + b + 2);
    if (!key)
        return NULL;
    memcpy(key, scope, a);
    key[a] = '\n';
    memcpy(key + a + 1, name, b + 1);
    return key;
}

static void describe(char *where, size_t size, const char *list, size_t i, json_t *e)
{
    const char *scope = json_string_value(json_object_get(e, "scope"));
    const char *name = json_string_value(json_object_get(e, "name"));
    if (scope && name) {
        char qs[64], qn[96];
        text_quote(scope, qs, sizeof qs);
        text_quote(name, qn, sizeof qn);
        snprintf(where, size, "%s[%zu] (%s in %s)", list, i, qn, qs);
    } else {
        snprintf(where, size, "%s[%zu]", list, i);
    }
}

static const char *const entity_fields[] = {
    "scope", "name", "type", "confidence", "metadata", "created_at", "updated_at",
    "version", "created_by", "observations", "history", NULL,
};
static const char *const observation_fields[] = {"text", "at", "removed_at", NULL};
static const char *const history_fields[] = {"version", "type", "confidence", "metadata",
                                             "changed_at", "changed_by", NULL};
static const char *const relation_fields[] = {"from_scope", "from", "to_scope", "to", "type",
                                              "strength", "created_at", "created_by", NULL};
static const char *const override_fields[] = {"agent", "scope", "workspace", "set_at", NULL};
static const char *const top_fields[] = {"format", "version", "exported_at", "schema_version",
                                         "entities", "relations", "scope_overrides", "counts",
                                         NULL};

static void validate_entity(validator *v, size_t i, json_t *e, int64_t *observations)
{
    char where[256];
    if (!json_is_object(e)) {
        snprintf(where, sizeof where, "entities[%zu]", i);
        vfail(v, where, "must be an object");
        return;
    }
    describe(where, sizeof where, "entities", i, e);
    check_keys(v, where, e, entity_fields);
    bool scope_ok = check_scope(v, where, e, "scope"); /* both report their problem */
    bool name_ok = check_name(v, where, e, "name", MEM_NAME_MAX, false);
    bool key_ok = scope_ok && name_ok;
    check_name(v, where, e, "type", MEM_TYPE_MAX, true);
    check_unit(v, where, e, "confidence");
    check_metadata(v, where, e, "metadata");
    check_time(v, where, e, "created_at", false);
    check_time(v, where, e, "updated_at", false);
    check_text(v, where, e, "created_by", ACTOR_MAX, false);
    json_t *version = json_object_get(e, "version");
    if (version && (!json_is_integer(version) || json_integer_value(version) < 1))
        vfail(v, where, "version must be an integer of at least 1");
    json_t *obs = json_object_get(e, "observations");
    if (obs && !json_is_array(obs))
        vfail(v, where, "observations must be an array");
    size_t j;
    json_t *o;
    json_array_foreach(obs, j, o) {
        char w2[300];
        snprintf(w2, sizeof w2, "%s.observations[%zu]", where, j);
        if (!json_is_object(o)) {
            vfail(v, w2, "must be an object");
            continue;
        }
        check_keys(v, w2, o, observation_fields);
        if (check_text(v, w2, o, "text", MEM_OBSERVATION_MAX, true)) {
            /* the store's rule: tab and newline are the only control characters */
            const char *t = json_string_value(json_object_get(o, "text"));
            for (size_t k = 0; t[k]; k++) {
                unsigned char ch = (unsigned char)t[k];
                if ((ch < 0x20 && ch != '\t' && ch != '\n') || ch == 0x7f) {
                    vfail(v, w2, "text: control character 0x%02x at byte %zu is not allowed", ch,
                          k);
                    break;
                }
            }
        }
        check_time(v, w2, o, "at", false);
        check_time(v, w2, o, "removed_at", true);
        (*observations)++;
    }
    json_t *hist = json_object_get(e, "history");
    if (hist && !json_is_array(hist))
        vfail(v, where, "history must be an array");
    json_t *versions = json_object();
    json_array_foreach(hist, j, o) {
        char w2[300];
        snprintf(w2, sizeof w2, "%s.history[%zu]", where, j);
        if (!json_is_object(o)) {
            vfail(v, w2, "must be an object");
            continue;
        }
        check_keys(v, w2, o, history_fields);
        json_t *hv = json_object_get(o, "version");
        if (!json_is_integer(hv) || json_integer_value(hv) < 1) {
            vfail(v, w2, "version must be an integer of at least 1");
        } else {
            char k[32];
            snprintf(k, sizeof k, "%lld", (long long)json_integer_value(hv));
            if (json_object_get(versions, k))
                vfail(v, w2, "version %s appears twice", k);
            json_object_set_new(versions, k, json_true());
        }
        check_name(v, w2, o, "type", MEM_TYPE_MAX, true);
        check_unit(v, w2, o, "confidence");
        check_metadata(v, w2, o, "metadata");
        check_time(v, w2, o, "changed_at", false);
        check_text(v, w2, o, "changed_by", ACTOR_MAX, false);
    }
    json_decref(versions);
    if (!key_ok)
        return;
    char *key = entity_key(json_string_value(json_object_get(e, "scope")),
                           json_string_value(json_object_get(e, "name")));
    if (!key)
        return;
    json_t *seen = json_object_get(v->keys, key);
    if (seen)
        vfail(v, where, "the same entity appears again (first at entities[%lld])",
              (long long)json_integer_value(seen));
    else
        json_object_set_new(v->keys, key, json_integer((json_int_t)i));
    free(key);
}

static void validate_relation(validator *v, size_t i, json_t *r)
{
    char where[64];
    snprintf(where, sizeof where, "relations[%zu]", i);
    if (!json_is_object(r)) {
        vfail(v, where, "must be an object");
        return;
    }
    check_keys(v, where, r, relation_fields);
    /* every check runs (each reports its own problem), then all must pass */
    bool from_scope = check_scope(v, where, r, "from_scope");
    bool from = check_name(v, where, r, "from", MEM_NAME_MAX, false);
    bool to_scope = check_scope(v, where, r, "to_scope");
    bool to = check_name(v, where, r, "to", MEM_NAME_MAX, false);
    bool ends = from_scope && from && to_scope && to;
    bool type = check_text(v, where, r, "type", MEM_TYPE_MAX, true);
    if (type) {
        const char *t = json_string_value(json_object_get(r, "type"));
        for (size_t k = 0; t[k] && type; k++)
            if (!((t[k] >= 'a' && t[k] <= 'z') || (t[k] >= '0' && t[k] <= '9') || t[k] == '_')) {
                vfail(v, where, "type: relation types are lower_snake_case (depends_on)");
                type = false;
            }
    }
    check_unit(v, where, r, "strength");
    check_time(v, where, r, "created_at", false);
    check_text(v, where, r, "created_by", ACTOR_MAX, false);
    if (!ends || !type)
        return;
    strbuf sb;
    strbuf_init(&sb);
    strbuf_appendf(&sb, "%s\n%s\n%s\n%s\n%s", json_string_value(json_object_get(r, "from_scope")),
                   json_string_value(json_object_get(r, "from")),
                   json_string_value(json_object_get(r, "to_scope")),
                   json_string_value(json_object_get(r, "to")),
                   json_string_value(json_object_get(r, "type")));
    if (!sb.failed) {
        json_t *seen = json_object_get(v->relations, sb.data);
        if (seen)
            vfail(v, where, "the same relation appears again (first at relations[%lld])",
                  (long long)json_integer_value(seen));
        else
            json_object_set_new(v->relations, sb.data, json_integer((json_int_t)i));
    }
    strbuf_free(&sb);
}

static void validate_override(validator *v, size_t i, json_t *o, json_t *agents)
{
    char where[64];
    snprintf(where, sizeof where, "scope_overrides[%zu]", i);
    if (!json_is_object(o)) {
        vfail(v, where, "must be an object");
        return;
    }
    check_keys(v, where, o, override_fields);
    const char *agent = json_string_value(json_object_get(o, "agent"));
    if (!ops_name_valid(agent, 128))
        vfail(v, where, "agent must be a name of 1 to 128 of A-Z a-z 0-9 . _ -");
    else if (json_object_get(agents, agent))
        vfail(v, where, "agent %s appears twice", agent);
    else
        json_object_set_new(agents, agent, json_true());
    const char *scope = json_string_value(json_object_get(o, "scope"));
    if (!scope || (strcmp(scope, "agent") != 0 && strcmp(scope, "workspace") != 0 &&
                   strcmp(scope, "global") != 0))
        vfail(v, where, "scope must be agent, workspace or global");
    json_t *ws = json_object_get(o, "workspace");
    if (ws && !json_is_null(ws) && !ops_name_valid(json_string_value(ws), 128))
        vfail(v, where, "workspace must be null or a name of 1 to 128 of A-Z a-z 0-9 . _ -");
    check_time(v, where, o, "set_at", false);
}

static void check_count(validator *v, json_t *counts, const char *field, int64_t actual)
{
    json_t *c = json_object_get(counts, field);
    if (!c)
        return;
    if (!json_is_integer(c) || json_integer_value(c) != actual)
        vfail(v, "counts", "%s says %lld but the file holds %lld (the file is incomplete or "
                           "was edited)",
              field, json_is_integer(c) ? (long long)json_integer_value(c) : -1LL,
              (long long)actual);
}

/* Everything that can be checked without the database. */
static void validate_document(validator *v, json_t *doc)
{
    if (!json_is_object(doc)) {
        vfail(v, "file", "the document must be a JSON object");
        return;
    }
    check_keys(v, "file", doc, top_fields);
    const char *format = json_string_value(json_object_get(doc, "format"));
    if (!format || strcmp(format, EXPORT_FORMAT) != 0) {
        vfail(v, "format", "expected \"" EXPORT_FORMAT "\": this is not a caxton memory export");
        return;
    }
    json_t *version = json_object_get(doc, "version");
    if (!json_is_integer(version) || json_integer_value(version) != EXPORT_VERSION) {
        vfail(v, "version", "expected %d (exports of another version need the caxton that "
                            "wrote them)",
              EXPORT_VERSION);
        return;
    }
    json_t *entities = json_object_get(doc, "entities");
    json_t *relations = json_object_get(doc, "relations");
    json_t *overrides = json_object_get(doc, "scope_overrides");
    json_t *counts = json_object_get(doc, "counts");
    if (!json_is_array(entities))
        vfail(v, "entities", "must be an array");
    if (relations && !json_is_array(relations))
        vfail(v, "relations", "must be an array");
    if (overrides && !json_is_array(overrides))
        vfail(v, "scope_overrides", "must be an array");
    if (counts && !json_is_object(counts))
        vfail(v, "counts", "must be an object");
    int64_t observations = 0;
    size_t i;
    json_t *item;
    json_array_foreach(entities, i, item) validate_entity(v, i, item, &observations);
    json_array_foreach(relations, i, item) validate_relation(v, i, item);
    json_t *agents = json_object();
    json_array_foreach(overrides, i, item) validate_override(v, i, item, agents);
    json_decref(agents);
    check_count(v, counts, "entities", (int64_t)json_array_size(entities));
    check_count(v, counts, "relations", (int64_t)json_array_size(relations));
    check_count(v, counts, "observations", observations);
}

/* ---- import: against the database and writing --------------------------------- */

typedef enum merge_mode { MERGE_ERROR, MERGE_SKIP, MERGE_UPDATE } merge_mode;

enum {
    Q_FIND,
    Q_INS_ENTITY,
    Q_INS_OBS,
    Q_INS_HIST,
    Q_OBS_EXISTS,
    Q_UPD_ENTITY,
    Q_DEL_EMB,
    Q_REL_FIND,
    Q_REL_INS,
    Q_REL_UPD,
    Q_OVR_FIND,
    Q_OVR_SKIP,
    Q_OVR_UPDATE,
    Q_COUNT
};

static const char *const import_sql[Q_COUNT] = {
    "SELECT id, type, confidence, metadata, version FROM entities WHERE scope = ? AND name = ?",
    "INSERT INTO entities(scope, name, type, confidence, metadata, created_at, updated_at, "
    "version, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "INSERT INTO observations(entity_id, text, created_at, removed_at) VALUES (?, ?, ?, ?)",
    "INSERT OR REPLACE INTO entity_versions(entity_id, version, type, confidence, metadata, "
    "changed_at, changed_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "SELECT 1 FROM observations WHERE entity_id = ? AND text = ? AND removed_at IS NULL LIMIT 1",
    "UPDATE entities SET type = ?, confidence = ?, metadata = ?, updated_at = ?, "
    "version = version + 1 WHERE id = ? RETURNING version",
    "DELETE FROM embeddings WHERE entity_id = ?",
    "SELECT id, strength FROM relations WHERE from_id = ? AND to_id = ? AND type = ?",
    "INSERT INTO relations(from_id, to_id, type, strength, created_at, created_by) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    "UPDATE relations SET strength = ? WHERE id = ?",
    "SELECT 1 FROM scope_overrides WHERE agent = ?",
    "INSERT INTO scope_overrides(agent, scope, workspace, set_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(agent) DO NOTHING",
    "INSERT INTO scope_overrides(agent, scope, workspace, set_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(agent) DO UPDATE SET scope = excluded.scope, workspace = excluded.workspace, "
    "set_at = excluded.set_at",
};

typedef struct importer {
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT];
    ops_fts fts;
    merge_mode merge;
    const char *actor;
    uint64_t now;
    int64_t created, updated, unchanged, skipped, observations_added;
    int64_t relations_created, relations_updated, relations_skipped, overrides;
    char fatal[768];
} importer;

static const char *jstr(json_t *obj, const char *field)
{
    return json_string_value(json_object_get(obj, field));
}

static double junit(json_t *obj, const char *field, double dflt)
{
    json_t *v = json_object_get(obj, field);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static uint64_t jtime(json_t *obj, const char *field, uint64_t dflt)
{
    uint64_t ms;
    json_t *v = json_object_get(obj, field);
    return v && parse_time(v, &ms) ? ms : dflt;
}

static bool step_done(importer *im, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return true;
    if (!im->fatal[0])
        snprintf(im->fatal, sizeof im->fatal, "%s: %s", what, sqlite3_errmsg(im->db));
    return false;
}

/* Entity id by (scope, name): 0 when absent, -1 on error. With out, the
 * stored fields too. */
static int64_t find_entity(importer *im, const char *scope, const char *name, json_t **fields)
{
    sqlite3_stmt *st = im->q[Q_FIND];
    sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int64_t id = 0;
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        if (fields) {
            const char *meta = (const char *)sqlite3_column_text(st, 3);
            json_t *m = meta ? json_loads(meta, 0, NULL) : NULL;
            *fields = json_pack("{s:o, s:f, s:o, s:I}", "type", col_string(st, 1), "confidence",
                                sqlite3_column_double(st, 2), "metadata",
                                json_is_object(m) ? m : json_object(), "version",
                                (json_int_t)sqlite3_column_int64(st, 4));
            if (!json_is_object(m))
                json_decref(m);
        }
    } else if (rc != SQLITE_DONE) {
        id = -1;
        snprintf(im->fatal, sizeof im->fatal, "looking up an entity: %s", sqlite3_errmsg(im->db));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return id;
}

static char *metadata_text(json_t *e)
{
    json_t *m = json_object_get(e, "metadata");
    return json_is_object(m) ? json_dumps(m, JSON_COMPACT) : str_dup("{}");
}

static bool insert_history_row(importer *im, int64_t id, int64_t version, const char *type,
                               double confidence, const char *meta, uint64_t at, const char *by)
{
    sqlite3_stmt *st = im->q[Q_INS_HIST];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_text(st, 3, type, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 4, confidence);
    sqlite3_bind_text(st, 5, meta, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)at);
    sqlite3_bind_text(st, 7, by, -1, SQLITE_TRANSIENT);
    return step_done(im, st, "writing a history row");
}

static bool insert_observation(importer *im, int64_t id, json_t *o, uint64_t dflt_at)
{
    sqlite3_stmt *st = im->q[Q_INS_OBS];
    json_t *text = json_object_get(o, "text");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, json_string_value(text), (int)json_string_length(text),
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)jtime(o, "at", dflt_at));
    uint64_t removed = jtime(o, "removed_at", 0);
    if (removed)
        sqlite3_bind_int64(st, 4, (sqlite3_int64)removed);
    else
        sqlite3_bind_null(st, 4);
    return step_done(im, st, "writing an observation");
}

static bool create_entity(importer *im, json_t *e)
{
    const char *by = jstr(e, "created_by") ? jstr(e, "created_by") : im->actor;
    uint64_t created = jtime(e, "created_at", im->now);
    uint64_t updated = jtime(e, "updated_at", created);
    json_t *version = json_object_get(e, "version");
    char *meta = metadata_text(e);
    if (!meta) {
        snprintf(im->fatal, sizeof im->fatal, "out of memory");
        return false;
    }
    sqlite3_stmt *st = im->q[Q_INS_ENTITY];
    sqlite3_bind_text(st, 1, jstr(e, "scope"), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, jstr(e, "name"), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, jstr(e, "type"), -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, junit(e, "confidence", 1.0));
    sqlite3_bind_text(st, 5, meta, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)created);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)updated);
    sqlite3_bind_int64(st, 8, version ? (sqlite3_int64)json_integer_value(version) : 1);
    sqlite3_bind_text(st, 9, by, -1, SQLITE_STATIC);
    free(meta);
    if (!step_done(im, st, "writing an entity"))
        return false;
    int64_t id = sqlite3_last_insert_rowid(im->db);
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(e, "observations"), i, o) {
        if (!insert_observation(im, id, o, created))
            return false;
    }
    json_array_foreach(json_object_get(e, "history"), i, o) {
        char *hm = metadata_text(o);
        const char *hby = jstr(o, "changed_by") ? jstr(o, "changed_by") : by;
        bool ok = hm && insert_history_row(im, id, (int64_t)json_integer_value(
                                                       json_object_get(o, "version")),
                                           jstr(o, "type"), junit(o, "confidence", 1.0), hm,
                                           jtime(o, "changed_at", created), hby);
        free(hm);
        if (!ok)
            return false;
    }
    cx_error err = {0};
    if (ops_fts_put(&im->fts, id, &err) < 0) {
        snprintf(im->fatal, sizeof im->fatal, "%s", err.msg);
        return false;
    }
    im->created++;
    return true;
}

static bool update_entity(importer *im, int64_t id, json_t *stored, json_t *e)
{
    /* fields given in the file replace the stored ones */
    const char *type = jstr(e, "type");
    double confidence = junit(e, "confidence", json_number_value(json_object_get(stored,
                                                                                 "confidence")));
    json_t *meta = json_object_get(e, "metadata");
    if (!json_is_object(meta))
        meta = json_object_get(stored, "metadata");
    bool changed = strcmp(type, json_string_value(json_object_get(stored, "type"))) != 0 ||
                   confidence != json_number_value(json_object_get(stored, "confidence")) ||
                   !json_equal(meta, json_object_get(stored, "metadata"));
    int64_t added = 0;
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(e, "observations"), i, o) {
        json_t *removed = json_object_get(o, "removed_at");
        if (removed && !json_is_null(removed))
            continue;
        json_t *text = json_object_get(o, "text");
        sqlite3_stmt *st = im->q[Q_OBS_EXISTS];
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, json_string_value(text), (int)json_string_length(text),
                          SQLITE_STATIC);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            snprintf(im->fatal, sizeof im->fatal, "reading observations: %s",
                     sqlite3_errmsg(im->db));
            return false;
        }
        if (rc == SQLITE_ROW)
            continue;
        if (!insert_observation(im, id, o, im->now))
            return false;
        added++;
    }
    if (!changed && added == 0) {
        im->unchanged++;
        return true;
    }
    char *meta_text = json_dumps(meta, JSON_COMPACT);
    if (!meta_text) {
        snprintf(im->fatal, sizeof im->fatal, "out of memory");
        return false;
    }
    sqlite3_stmt *st = im->q[Q_UPD_ENTITY];
    sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, confidence);
    sqlite3_bind_text(st, 3, meta_text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)im->now);
    sqlite3_bind_int64(st, 5, id);
    int64_t version = 0;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        version = sqlite3_column_int64(st, 0);
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    bool ok = rc == SQLITE_DONE && version > 0;
    if (!ok)
        snprintf(im->fatal, sizeof im->fatal, "updating an entity: %s", sqlite3_errmsg(im->db));
    ok = ok && insert_history_row(im, id, version, type, confidence, meta_text, im->now, im->actor);
    free(meta_text);
    if (!ok)
        return false;
    /* the text changed: the server embeds it again */
    sqlite3_bind_int64(im->q[Q_DEL_EMB], 1, id);
    if (!step_done(im, im->q[Q_DEL_EMB], "dropping a stale embedding"))
        return false;
    cx_error err = {0};
    if (ops_fts_put(&im->fts, id, &err) < 0) {
        snprintf(im->fatal, sizeof im->fatal, "%s", err.msg);
        return false;
    }
    im->observations_added += added;
    im->updated++;
    return true;
}

static bool import_relation(importer *im, json_t *r)
{
    int64_t from = find_entity(im, jstr(r, "from_scope"), jstr(r, "from"), NULL);
    int64_t to = find_entity(im, jstr(r, "to_scope"), jstr(r, "to"), NULL);
    if (from <= 0 || to <= 0) {
        if (!im->fatal[0])
            snprintf(im->fatal, sizeof im->fatal, "a relation's entity disappeared");
        return false;
    }
    double strength = junit(r, "strength", 1.0);
    sqlite3_stmt *st = im->q[Q_REL_FIND];
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    sqlite3_bind_text(st, 3, jstr(r, "type"), -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int64_t existing = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    double old_strength = rc == SQLITE_ROW ? sqlite3_column_double(st, 1) : 0;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        snprintf(im->fatal, sizeof im->fatal, "reading relations: %s", sqlite3_errmsg(im->db));
        return false;
    }
    if (existing) {
        if (im->merge != MERGE_UPDATE || old_strength == strength) {
            im->relations_skipped++;
            return true;
        }
        st = im->q[Q_REL_UPD];
        sqlite3_bind_double(st, 1, strength);
        sqlite3_bind_int64(st, 2, existing);
        if (!step_done(im, st, "updating a relation"))
            return false;
        im->relations_updated++;
        return true;
    }
    st = im->q[Q_REL_INS];
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    sqlite3_bind_text(st, 3, jstr(r, "type"), -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, strength);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)jtime(r, "created_at", im->now));
    sqlite3_bind_text(st, 6, jstr(r, "created_by") ? jstr(r, "created_by") : im->actor, -1,
                      SQLITE_STATIC);
    if (!step_done(im, st, "writing a relation"))
        return false;
    im->relations_created++;
    return true;
}

static bool import_override(importer *im, json_t *o)
{
    sqlite3_stmt *st = im->q[im->merge == MERGE_UPDATE ? Q_OVR_UPDATE : Q_OVR_SKIP];
    sqlite3_bind_text(st, 1, jstr(o, "agent"), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, jstr(o, "scope"), -1, SQLITE_STATIC);
    if (jstr(o, "workspace"))
        sqlite3_bind_text(st, 3, jstr(o, "workspace"), -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)jtime(o, "set_at", im->now));
    if (!step_done(im, st, "writing a scope override"))
        return false;
    im->overrides += sqlite3_changes(im->db);
    return true;
}

/* Checks that need the database: existing entities under merge "error",
 * relation ends that are not in the file. */
static void validate_against_db(validator *v, importer *im, json_t *doc)
{
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(doc, "entities"), i, item) {
        if (im->merge != MERGE_ERROR || !im->db)
            break;
        if (find_entity(im, jstr(item, "scope"), jstr(item, "name"), NULL) > 0) {
            char where[256];
            describe(where, sizeof where, "entities", i, item);
            vfail(v, where, "already exists in the memory database (import with --merge skip "
                            "or --merge update)");
        }
    }
    json_array_foreach(json_object_get(doc, "relations"), i, item) {
        static const char *const ends[2][2] = {{"from_scope", "from"}, {"to_scope", "to"}};
        for (int k = 0; k < 2; k++) {
            const char *scope = jstr(item, ends[k][0]), *name = jstr(item, ends[k][1]);
            char *key = entity_key(scope, name);
            bool in_file = key && json_object_get(v->keys, key);
            free(key);
            if (in_file || (im->db && find_entity(im, scope, name, NULL) > 0))
                continue;
            char where[64], qn[96], qs[64];
            snprintf(where, sizeof where, "relations[%zu]", i);
            text_quote(name, qn, sizeof qn);
            text_quote(scope, qs, sizeof qs);
            vfail(v, where, "%s entity %s in %s is neither in the file nor in the database",
                  ends[k][1], qn, qs);
        }
    }
    json_array_foreach(json_object_get(doc, "scope_overrides"), i, item) {
        if (im->merge != MERGE_ERROR || !im->db)
            break;
        sqlite3_stmt *st = im->q[Q_OVR_FIND];
        sqlite3_bind_text(st, 1, jstr(item, "agent"), -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            char where[64];
            snprintf(where, sizeof where, "scope_overrides[%zu]", i);
            vfail(v, where, "agent %s already has a scope override (import with --merge skip "
                            "or --merge update)",
                  jstr(item, "agent"));
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

static bool import_write(importer *im, json_t *doc)
{
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(doc, "entities"), i, item) {
        json_t *stored = NULL;
        int64_t id = find_entity(im, jstr(item, "scope"), jstr(item, "name"), &stored);
        bool ok;
        if (id < 0)
            ok = false;
        else if (id == 0)
            ok = create_entity(im, item);
        else if (im->merge == MERGE_UPDATE)
            ok = update_entity(im, id, stored, item);
        else if (im->merge == MERGE_SKIP) {
            im->skipped++;
            ok = true;
        } else {
            snprintf(im->fatal, sizeof im->fatal, "entities[%zu] already exists", i);
            ok = false;
        }
        json_decref(stored);
        if (!ok)
            return false;
    }
    json_array_foreach(json_object_get(doc, "relations"), i, item) {
        if (!import_relation(im, item))
            return false;
    }
    json_array_foreach(json_object_get(doc, "scope_overrides"), i, item) {
        if (!import_override(im, item))
            return false;
    }
    return true;
}

static void importer_close(importer *im)
{
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(im->q[i]);
    memset(im->q, 0, sizeof im->q);
    ops_fts_free(&im->fts);
    if (im->db)
        sqlite3_close(im->db);
    im->db = NULL;
}

static int importer_prepare(importer *im, char *why, size_t size)
{
    for (int i = 0; i < Q_COUNT; i++)
        if (sqlite3_prepare_v2(im->db, import_sql[i], -1, &im->q[i], NULL) != SQLITE_OK) {
            snprintf(why, size, "preparing the import: %s", sqlite3_errmsg(im->db));
            return -1;
        }
    cx_error e = {0};
    if (ops_fts_init(&im->fts, im->db, &e) < 0) {
        snprintf(why, size, "%s", e.msg);
        return -1;
    }
    return 0;
}

/* Opens the database for the import, or creates it with the schema
 * (create: there is none yet, and the file was found valid). */
static int import_open(const memops_ctx *ctx, bool write, bool create, importer *im,
                       json_t *res)
{
    char why[PATH_MAX + 256];
    if (ops_open_file(ctx->db_path, write || create, create, &im->db, why, sizeof why) < 0) {
        ops_problem(res, "%s", why);
        return -1;
    }
    cx_error e = {0};
    if (create) {
        json_object_set_new(res, "created_database", json_true());
        if (ops_apply_schema(im->db, &e) < 0) {
            ops_problem(res, "%s", e.msg);
            return -1;
        }
    }
    if (!ops_table_exists(im->db, "entities")) {
        ops_problem(res, "%s is not a memory database (no entities table)", ctx->db_path);
        return -1;
    }
    if (importer_prepare(im, why, sizeof why) < 0) {
        ops_problem(res, "%s", why);
        return -1;
    }
    return 0;
}

int memops_op_import(const memops_ctx *ctx, const json_t *args, json_t *res, cx_error *err)
{
    const char *path = ops_arg_string(args, "file");
    if (!path || !*path)
        return cx_error_set(err, CX_EINVAL, "memory import needs --file PATH");
    const char *merge_arg = ops_arg_string(args, "merge");
    merge_mode merge = MERGE_ERROR;
    if (merge_arg && strcmp(merge_arg, "skip") == 0)
        merge = MERGE_SKIP;
    else if (merge_arg && strcmp(merge_arg, "update") == 0)
        merge = MERGE_UPDATE;
    else if (merge_arg && strcmp(merge_arg, "error") != 0)
        return cx_error_set(err, CX_EINVAL, "--merge takes skip, update or error (not %.40s)",
                            merge_arg);
    /* the whole file is always validated before anything is written
     * (--validate says so explicitly, as the guide writes it); --dry-run
     * stops after the validation */
    bool validate_only = ops_arg_true(args, "dry_run");
    static const char *const merge_names[] = {"error", "skip", "update"};
    json_object_set_new(res, "file", json_string(path));
    json_object_set_new(res, "merge", json_string(merge_names[merge]));
    json_object_set_new(res, "validate_only", json_boolean(validate_only));
    json_object_set_new(res, "written", json_false());
    uint64_t start = time_monotonic_ns();

    struct stat st;
    if (stat(path, &st) != 0) {
        ops_problem(res, "cannot read %s: %s", path, strerror(errno));
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        ops_problem(res, "cannot read %s: it is not a regular file", path);
        return 0;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size > OPS_IMPORT_MAX) {
        ops_problem(res, "%s is %llu bytes; the import limit is 2 GB", path,
                    (unsigned long long)size);
        return 0;
    }
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        const char *why = strstr(jerr.text, "\\u0000") ? "a string contains a NUL character"
                                                       : jerr.text;
        ops_problem(res, "%s is not valid JSON (line %d, column %d): %s; nothing was imported",
                    path, jerr.line, jerr.column, why);
        return 0;
    }
    validator v = {.res = res, .keys = json_object(), .relations = json_object(),
                   .now = time_now_ms()};
    validate_document(&v, doc);
    json_object_set_new(res, "in_file",
                        json_pack("{s:I, s:I, s:I}", "entities",
                                  (json_int_t)json_array_size(json_object_get(doc, "entities")),
                                  "relations",
                                  (json_int_t)json_array_size(json_object_get(doc, "relations")),
                                  "scope_overrides",
                                  (json_int_t)json_array_size(
                                      json_object_get(doc, "scope_overrides"))));
    if (!ops_is_ok(res)) {
        json_object_set_new(res, "written", json_false());
        json_decref(v.keys);
        json_decref(v.relations);
        json_decref(doc);
        return 0;
    }
    importer im;
    memset(&im, 0, sizeof im);
    im.merge = merge;
    im.actor = ctx->actor && *ctx->actor ? ctx->actor : "import";
    im.now = v.now;
    bool write = !validate_only;
    if (write)
        ops_quiesce(ctx);
    bool written = false;
    uint64_t db_size;
    bool exists = ops_file_size(ctx->db_path, &db_size);
    /* no database yet: validated against an empty one, created once valid */
    if (!exists || import_open(ctx, write, false, &im, res) == 0) {
        validate_against_db(&v, &im, doc);
        if (im.fatal[0])
            ops_problem(res, "%s", im.fatal);
        if (ops_is_ok(res) && write && !exists)
            import_open(ctx, true, true, &im, res);
        if (ops_is_ok(res) && write) {
            cx_error e = {0};
            if (ops_exec(im.db, "BEGIN IMMEDIATE", &e) < 0) {
                ops_problem(res, "%s", e.msg);
            } else if (!import_write(&im, doc) || ops_exec(im.db, "COMMIT", &e) < 0) {
                sqlite3_exec(im.db, "ROLLBACK", NULL, NULL, NULL);
                ops_problem(res, "the import failed and wrote nothing: %s",
                            im.fatal[0] ? im.fatal : e.msg);
            } else {
                written = true;
            }
        }
    }
    importer_close(&im);
    if (write)
        ops_resume(ctx, res);
    json_object_set_new(res, "written", json_boolean(written));
    if (written) {
        json_object_set_new(
            res, "counts",
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "created",
                      (json_int_t)im.created, "updated", (json_int_t)im.updated, "unchanged",
                      (json_int_t)im.unchanged, "skipped", (json_int_t)im.skipped,
                      "observations_added", (json_int_t)im.observations_added,
                      "relations_created", (json_int_t)im.relations_created,
                      "relations_updated", (json_int_t)im.relations_updated,
                      "relations_skipped", (json_int_t)im.relations_skipped, "scope_overrides",
                      (json_int_t)im.overrides));
        json_object_set_new(res, "embeddings",
                            json_string("computed by the server when it opens the database"));
    } else if (validate_only && ops_is_ok(res)) {
        json_object_set_new(res, "message", json_string("the file is valid; nothing was written"));
    }
    json_object_set_new(res, "seconds", json_real(ops_elapsed_s(start)));
    json_decref(v.keys);
    json_decref(v.relations);
    json_decref(doc);
    return 0;
}
