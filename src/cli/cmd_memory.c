/* `caxton memory ...` and `caxton agents reconnect-memory`: the agent memory
 * store through the REST API, or on the files when no server runs.
 *
 * The guide's operations (health-check, recover, backup, reindex...) are one
 * handler: the command's name is the operation, its flags become the
 * operation's JSON arguments (cli_memory_args: dashes to underscores, a
 * switch is true, file names made absolute because the server resolves them
 * on its host) and go to POST /api/v1/memory/{op}. When the server is not
 * running (no URL for it, or the request cannot connect, and nothing holds
 * the data dir's lock) an operation that can work on a stopped server's
 * files runs here through memops_run; --offline asks for that directly, and
 * is refused for the operations that replace the files while a server runs,
 * so that it can quiesce memory first.
 *
 * Every operation answers {"operation", "ok", "problems"?, ...}: "ok": false
 * exits 1; --json (or --output json) prints the answer as it came, else a
 * summary. With --background some answer 202 {"job_id"}, followed with
 * `caxton memory job ID`. The entity commands (search, show, store, relate,
 * delete, graph) only talk to the server. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/units.h"
#include "core/util.h"
#include "memory/memops.h"

#define MEMORY_PREFIX "/api/v1/memory/"
#define ENTITIES_PREFIX "/api/v1/memory/entities/"
#define GRAPH_PREFIX "/api/v1/memory/graph/"
#define PROBE_TIMEOUT_MS 2000u
#define PRINT_MAX_DEPTH 4      /* nested objects shown as lines; deeper ones as JSON */
#define SEARCH_MAX_LIMIT 100     /* the server's MEM_SEARCH_LIMIT_MAX */
#define GRAPH_MAX_DEPTH 5
#define MAX_OBSERVATIONS 1000  /* per store, as the server takes them */
#define SNIPPET_MAX 80         /* bytes of an observation in the search table */

static int out_of_memory(void)
{
    fprintf(stderr, "caxton: out of memory\n");
    return CLI_EXIT_PROBLEM;
}

/* --output json, or --json (but export's --json names the file's format). */
static bool want_json(const cli_invocation *inv)
{
    return inv->output == CLI_OUTPUT_JSON ||
           (cli_flag_set(inv, "json") && strcmp(inv->command->name, "export") != 0);
}

/* ---- Operations and their arguments --------------------------------------------------------- */

typedef struct memory_op_spec {
    const char *name;
    const char *arg_key;  /* the positional argument's key, or NULL when it takes none */
    bool arg_path;        /* the argument is a file name: made absolute */
    bool replaces_files;  /* swaps the database files: the server must quiesce memory */
} memory_op_spec;

static const memory_op_spec op_specs[] = {
    {"health-check", "agent", false, false},
    {"corruption-analysis", "export_report", true, false},
    {"recover", NULL, false, true},
    {"restore", "from_backup", true, true},
    {"import", "file", true, true},
    {"export", "json", true, false},
    {"reinitialize", NULL, false, true},
    {"scope-status", "agent", false, false},
    {"permissions-check", "agent", false, false},
    {"scope-reset", "agent", false, false},
    {"connection-test", "agent", false, false},
};

static const memory_op_spec *find_spec(const char *op)
{
    for (size_t i = 0; i < sizeof op_specs / sizeof op_specs[0]; i++)
        if (strcmp(op_specs[i].name, op) == 0)
            return &op_specs[i];
    return NULL;
}

bool cli_memory_replaces_files(const char *op)
{
    const memory_op_spec *spec = find_spec(op);
    return spec && spec->replaces_files;
}

char *cli_absolute_path(const char *path)
{
    if (!path)
        return NULL;
    if (path[0] == '/')
        return str_dup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return NULL;
    const char *rest = path;
    for (int i = 0; i < PATH_MAX && rest[0] == '.' && rest[1] == '/'; i++) {
        rest += 2;
        while (*rest == '/')
            rest++;
    }
    if (strcmp(rest, ".") == 0 || rest[0] == '\0')
        return str_dup(cwd);
    return path_join(cwd, rest);
}

/* Sets key to a string, refusing text that is not UTF-8 (JSON cannot carry it). */
static int set_text(json_t *args, const char *key, const char *value, cx_error *err)
{
    if (!text_is_utf8(value, strlen(value)))
        return cx_error_set(err, CX_EINVAL, "'%s' (%s) is not valid UTF-8 text", value, key);
    if (json_object_set_new(args, key, json_string(value)) != 0)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    return 0;
}

static int set_path(json_t *args, const char *key, const char *value, cx_error *err)
{
    char *absolute = cli_absolute_path(value);
    if (!absolute)
        return cx_error_set(err, errno == ENOMEM ? CX_ENOMEM : CX_EINVAL,
                            "cannot make '%s' an absolute path: %s", value, strerror(errno));
    int rc = set_text(args, key, absolute, err);
    free(absolute);
    return rc;
}

static bool has(const json_t *args, const char *key)
{
    const json_t *v = json_object_get(args, key);
    return v && !json_is_false(v);
}

/* The combinations of flags each operation needs, beyond what the table says. */
static int check_args(const cli_invocation *inv, const char *op, json_t *args, cx_error *err)
{
    if (strcmp(op, "integrity-check") == 0) {
        if (has(args, "full") == has(args, "quick"))
            return cx_error_set(err, CX_EINVAL, "memory integrity-check needs --full or --quick");
    } else if (strcmp(op, "recover") == 0) {
        if (has(args, "from_wal") == has(args, "from_backup"))
            return cx_error_set(err, CX_EINVAL,
                                "memory recover needs --from-wal [--backup-first] or "
                                "--from-backup [--verify]");
    } else if (strcmp(op, "cleanup") == 0) {
        if (!has(args, "vacuum") && !has(args, "compact") && !has(args, "scope_conflicts"))
            return cx_error_set(err, CX_EINVAL,
                                "memory cleanup needs --vacuum, --compact or --scope-conflicts");
    } else if (strcmp(op, "scope-status") == 0) {
        if (has(args, "all_agents") == has(args, "agent"))
            return cx_error_set(err, CX_EINVAL, "memory scope-status needs AGENT or --all-agents");
    } else if (strcmp(op, "corruption-analysis") == 0) {
        if (inv->arg_count > 0 && !cli_flag_set(inv, "export-report"))
            return cx_error_set(err, CX_EINVAL,
                                "a report file needs --export-report: caxton memory "
                                "corruption-analysis --export-report %s", inv->args[0]);
    } else if (strcmp(op, "scope-reset") == 0) {
        static const char *const scopes[] = {"agent", "workspace", "global"};
        const char *scope = cli_flag_value(inv, "scope");
        bool known = false;
        for (size_t i = 0; scope && i < 3; i++)
            known |= strcmp(scope, scopes[i]) == 0;
        if (!known) {
            const char *suggestion = scope ? text_suggest(scope, scopes, 3) : NULL;
            return cx_error_set(err, CX_EINVAL,
                                "invalid value '%s' for --scope%s%s%s (expected agent, workspace "
                                "or global)",
                                scope ? scope : "", suggestion ? "; did you mean '" : "",
                                suggestion ? suggestion : "", suggestion ? "'?" : "");
        }
        /* --scope workspace alone keeps the agent's memory.workspace */
        bool workspace = strcmp(scope, "workspace") == 0;
        if (!workspace && cli_flag_set(inv, "workspace"))
            return cx_error_set(err, CX_EINVAL, "--workspace goes with --scope workspace only");
    } else if (strcmp(op, "adjust-cache") == 0) {
        units_change change;
        cx_error cerr;
        const char *size = cli_flag_value(inv, "size");
        if (!size || units_parse_change(size, true, &change, &cerr) != 0)
            return cx_error_set(err, CX_EINVAL, "--size: %s",
                                size ? cerr.msg : "missing (examples: 2GB, +512MB, -256MB)");
    }
    return 0;
}

json_t *cli_memory_args(const cli_invocation *inv, cx_error *err)
{
    const cli_command *cmd = inv->command;
    const char *op = cmd->name;
    json_t *args = json_object();
    if (!args) {
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && cmd->flags && cmd->flags[i] && i < CLI_MAX_FLAGS; i++) {
        const cli_flag *f = cmd->flags[i];
        const char *value = inv->values[i];
        /* --json is the output format, or for export the FILE argument's format. */
        if (!value || strcmp(f->name, "cacert") == 0 || strcmp(f->name, "offline") == 0 ||
            strcmp(f->name, "json") == 0)
            continue;
        char key[64];
        snprintf(key, sizeof key, "%s", f->name);
        for (char *p = key; *p; p++)
            if (*p == '-')
                *p = '_';
        if (f->kind == CLI_SWITCH)
            rc = json_object_set_new(args, key, json_true()) == 0
                     ? 0
                     : cx_error_set(err, CX_ENOMEM, "out of memory");
        else if (f->kind == CLI_FILE)
            rc = set_path(args, key, value, err);
        else
            rc = set_text(args, key, value, err);
    }
    const memory_op_spec *spec = find_spec(op);
    if (rc == 0 && spec && spec->arg_key && inv->arg_count > 0) {
        const char *arg = inv->args[0];
        bool keyword = strcmp(op, "restore") == 0 && strcmp(arg, "latest") == 0;
        rc = spec->arg_path && !keyword ? set_path(args, spec->arg_key, arg, err)
                                        : set_text(args, spec->arg_key, arg, err);
    }
    if (rc == 0 && (cmd->options & CLI_CMD_WINDOW)) {
        if (inv->window.until_ms)
            rc = cx_error_set(err, CX_EINVAL, "memory %s takes a start (--last-<duration> or "
                              "--since), not --until", op);
        else if (inv->window.since_ms &&
                 json_object_set_new(args, "since",
                                     json_integer((json_int_t)inv->window.since_ms)) != 0)
            rc = cx_error_set(err, CX_ENOMEM, "out of memory");
    }
    if (rc == 0)
        rc = check_args(inv, op, args, err);
    if (rc != 0) {
        json_decref(args);
        return NULL;
    }
    return args;
}

/* ---- Printing results ----------------------------------------------------------------------- */

static bool all_objects(const json_t *array)
{
    size_t i;
    const json_t *v;
    json_array_foreach(array, i, v) {
        if (!json_is_object(v))
            return false;
    }
    return json_array_size(array) > 0;
}

static bool all_scalars(const json_t *array)
{
    size_t i;
    const json_t *v;
    json_array_foreach(array, i, v) {
        if (json_is_object(v) || json_is_array(v))
            return false;
    }
    return true;
}

static bool in_list(const char *key, const char *const *list)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(key, list[i]) == 0)
            return true;
    return false;
}

/* An array of objects as a table: the columns are their keys in the order
 * first seen (at most OUTPUT_MAX_COLUMNS), less those in skip. */
static void print_objects(const json_t *array, const char *const *skip)
{
    const char *cols[OUTPUT_MAX_COLUMNS];
    size_t ncols = 0;
    size_t i;
    const json_t *item;
    json_array_foreach(array, i, item) {
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)item, key, v) {
            bool seen = in_list(key, skip);
            for (size_t c = 0; !seen && c < ncols; c++)
                seen = strcmp(cols[c], key) == 0;
            if (!seen && ncols < OUTPUT_MAX_COLUMNS)
                cols[ncols++] = key;
        }
    }
    if (ncols == 0)
        return;
    output_table *t = output_table_new(ncols, cols);
    json_array_foreach(array, i, item) {
        char *cells[OUTPUT_MAX_COLUMNS] = {0};
        for (size_t c = 0; c < ncols; c++) {
            const json_t *v = json_object_get(item, cols[c]);
            cells[c] = v ? output_value_text(v) : NULL;
        }
        if (t)
            output_table_row_array(t, (const char *const *)cells);
        for (size_t c = 0; c < ncols; c++)
            free(cells[c]);
    }
    if (t)
        output_table_print(t, stdout);
    output_table_free(t);
}

/* {"global": {...}, "agent:bob": {...}} as rows with the key in a first column. */
static json_t *map_to_rows(const json_t *map, const char *key_name)
{
    json_t *rows = json_array();
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)map, key, v) {
        json_t *row = json_pack("{s:s}", key_name, key);
        if (!row || !rows) {
            json_decref(row);
            break;
        }
        if (json_is_object(v))
            json_object_update(row, (json_t *)v);
        else
            json_object_set(row, "value", (json_t *)v);
        json_array_append_new(rows, row);
    }
    return rows;
}

static void print_value(int indent, const char *key, const json_t *v, int depth);

static void print_compact(int indent, const char *key, const json_t *v)
{
    char *text = output_value_text(v);
    output_line(stdout, "%*s%s: %s", indent, "", key, text ? text : "?");
    free(text);
}

static void print_array(int indent, const char *key, const json_t *v, int depth)
{
    if (json_array_size(v) == 0) {
        output_line(stdout, "%*s%s: -", indent, "", key);
    } else if (all_scalars(v)) {
        char *joined = output_join(v);
        output_line(stdout, "%*s%s: %s", indent, "", key, joined ? joined : "?");
        free(joined);
    } else if (indent == 0 && all_objects(v)) {
        output_line(stdout, "%s:", key);
        print_objects(v, NULL);
    } else {
        output_line(stdout, "%*s%s:", indent, "", key);
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item) {
            if (json_is_object(item) && depth + 1 < PRINT_MAX_DEPTH) {
                /* "- a: 1, b: 2": one line per item */
                strbuf sb;
                strbuf_init(&sb);
                const char *k;
                const json_t *m;
                json_object_foreach((json_t *)item, k, m) {
                    char *text = output_value_text(m);
                    strbuf_appendf(&sb, "%s%s: %s", sb.len ? ", " : "", k, text ? text : "?");
                    free(text);
                }
                output_line(stdout, "%*s- %s", indent + 2, "", sb.data ? sb.data : "");
                strbuf_free(&sb);
            } else {
                char *text = output_value_text(item);
                output_line(stdout, "%*s- %s", indent + 2, "", text ? text : "?");
                free(text);
            }
        }
    }
}

static void print_value(int indent, const char *key, const json_t *v, int depth)
{
    if (json_is_object(v) && json_object_size(v) > 0 && depth < PRINT_MAX_DEPTH) {
        output_line(stdout, "%*s%s:", indent, "", key);
        const char *k;
        const json_t *m;
        json_object_foreach((json_t *)v, k, m) {
            print_value(indent + 2, k, m, depth + 1);
        }
    } else if (json_is_array(v) && depth < PRINT_MAX_DEPTH) {
        print_array(indent, key, v, depth);
    } else if (json_is_object(v) && json_object_size(v) == 0) {
        output_line(stdout, "%*s%s: -", indent, "", key);
    } else {
        print_compact(indent, key, v);
    }
}

/* The checks of health-check and integrity-check: an array of
 * {"name"|"check", "ok"|"status", "detail"|"message"|"error"}, or an object of
 * name -> bool or name -> {"ok", "detail"...}. */
static const char *check_detail(const json_t *check)
{
    static const char *const keys[] = {"detail", "message", "error", "problem", NULL};
    for (size_t i = 0; keys[i]; i++) {
        const char *text = output_string(check, keys[i], NULL);
        if (text)
            return text;
    }
    return "";
}

static void check_row(output_table *t, const char *name, const json_t *check)
{
    const json_t *ok = json_is_boolean(check) ? check : json_object_get(check, "ok");
    const char *result = json_is_boolean(ok) ? (json_is_true(ok) ? "ok" : "FAIL")
                                             : output_string(check, "status", "?");
    if (t)
        output_table_row(t, name, result, json_is_object(check) ? check_detail(check) : "");
}

static void print_checks(const json_t *checks)
{
    output_table *t = output_table_new(3, (const char *[]){"check", "result", "detail"});
    if (json_is_array(checks)) {
        size_t i;
        const json_t *c;
        json_array_foreach(checks, i, c) {
            check_row(t, output_string(c, "name", output_string(c, "check", "?")), c);
        }
    } else {
        const char *name;
        const json_t *c;
        json_object_foreach((json_t *)checks, name, c) {
            check_row(t, name, c);
        }
    }
    if (t && output_table_rows(t) > 0)
        output_table_print(t, stdout);
    output_table_free(t);
}

/* "memory OP: ok|NOT OK", the problems, the operation's own sections, then
 * every other key. */
static void print_op_result(const char *op, const json_t *doc)
{
    bool ok = !json_is_false(json_object_get(doc, "ok"));
    output_line(stdout, "memory %s: %s", op, ok ? "ok" : "NOT OK");
    size_t i;
    const json_t *p;
    json_array_foreach(json_object_get(doc, "problems"), i, p) {
        char *text = output_value_text(p);
        output_line(stdout, "  problem: %s", text ? text : "?");
        free(text);
    }
    const char *shown[6] = {NULL};
    size_t nshown = 0;
    const json_t *checks = json_object_get(doc, "checks");
    if ((strcmp(op, "health-check") == 0 || strcmp(op, "integrity-check") == 0) &&
        (json_is_array(checks) || json_is_object(checks))) {
        print_checks(checks);
        shown[nshown++] = "checks";
    }
    if (strcmp(op, "usage") == 0) {
        static const char *const per_scope[] = {"by_scope", "scopes", NULL};
        for (size_t k = 0; per_scope[k]; k++) {
            const json_t *scopes = json_object_get(doc, per_scope[k]);
            json_t *rows = json_is_object(scopes) ? map_to_rows(scopes, "scope")
                                                  : json_incref((json_t *)scopes);
            if (all_objects(rows)) {
                print_objects(rows, NULL);
                shown[nshown++] = per_scope[k];
            }
            json_decref(rows);
        }
    }
    const json_t *agents = json_object_get(doc, "agents");
    if (strcmp(op, "scope-status") == 0 && json_is_array(agents) && all_objects(agents)) {
        /* the columns an operator compares (writable shows global_write); file_scope
         * shows beside an override */
        static const char *const less[] = {"max_entries", "default_write_scope", "global_write", "valid",
                                           "detail", NULL};
        print_objects(agents, less);
        shown[nshown++] = "agents";
    }
    const json_t *violations = json_object_get(doc, "violations");
    if (strcmp(op, "violations") == 0 && json_is_array(violations)) {
        if (json_array_size(violations) == 0)
            printf("no scope violations\n");
        else
            print_objects(violations, NULL);
        shown[nshown++] = "violations";
    }
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)doc, key, v) {
        static const char *const header[] = {"operation", "ok", "problems", NULL};
        bool skip = in_list(key, header);
        for (size_t k = 0; !skip && k < nshown; k++)
            skip = strcmp(shown[k], key) == 0;
        if (!skip)
            print_value(0, key, v, 0);
    }
}

/* Prints an operation's answer (server or offline) and returns the exit code. */
static int emit_result(const cli_invocation *inv, const char *op, const json_t *doc, long status)
{
    const char *job = output_string(doc, "job_id", NULL);
    if (status == 202 || (job && !json_object_get(doc, "ok"))) {
        if (want_json(inv)) {
            output_json(stdout, doc);
        } else {
            output_line(stdout, "memory %s is running in the background as job %s", op,
                        job ? job : "?");
            output_line(stdout, "follow it with: caxton memory job %s", job ? job : "ID");
        }
        return CLI_EXIT_OK;
    }
    if (want_json(inv))
        output_json(stdout, doc);
    else
        print_op_result(op, doc);
    return json_is_false(json_object_get(doc, "ok")) ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
}

/* ---- Running an operation ------------------------------------------------------------------- */

static int load_config(const cli_invocation *inv, cx_config **cfg)
{
    config_flags flags = {0};
    config_diag diag = {0};
    cx_error err;
    cx_error_clear(&err);
    if (cli_config_load(inv, &flags, cfg, &diag, &err) != 0) {
        cli_print_config_errors(&diag, &err);
        config_diag_free(&diag);
        return CLI_EXIT_USAGE;
    }
    config_diag_free(&diag);
    return CLI_EXIT_OK;
}

/* Whether a server runs on this data dir or answers at its URL. */
static bool server_running(const cli_invocation *inv, const cx_config *cfg)
{
    if (cli_server_holds_lock(cfg->data_dir))
        return true;
    char *url = inv->server ? str_dup(inv->server) : cli_local_server_url(cfg);
    if (!url)
        return false;
    client c;
    cx_error err;
    bool running = false;
    if (client_init(&c, url, NULL, PROBE_TIMEOUT_MS, &err) == 0) {
        client_response resp;
        int rc = client_request(&c, "GET", "/health", NULL, &resp, &err);
        /* Any answer, even an untrusted certificate, means something is serving. */
        running = rc == 0 || c.cert_unverified;
        if (rc == 0)
            client_response_free(&resp);
        client_close(&c);
    }
    free(url);
    return running;
}

static int run_offline(const cli_invocation *inv, const cx_config *cfg, const char *op,
                       json_t *args, bool forced)
{
    if (forced)
        fprintf(stderr, "caxton: working on the files in %s (--offline)\n", cfg->data_dir);
    else
        fprintf(stderr, "caxton: server not running; working on the files in %s\n",
                cfg->data_dir);
    char *db_default = cfg->memory_path ? NULL : path_join(cfg->data_dir, "data/memory.db");
    char *backups_default = cfg->memory_backups_dir ? NULL : path_join(cfg->data_dir, "backups");
    memops_ctx ctx = {
        .db_path = cfg->memory_path ? cfg->memory_path : db_default,
        .backups_dir = cfg->memory_backups_dir ? cfg->memory_backups_dir : backups_default,
        .keep = cfg->memory_backups_keep,
        .store = NULL,
        .actor = "cli-offline",
    };
    if (!ctx.db_path || !ctx.backups_dir) {
        free(db_default);
        free(backups_default);
        return out_of_memory();
    }
    json_object_del(args, "background"); /* no job queue here: it runs now */
    json_t *result = NULL;
    cx_error err;
    cx_error_clear(&err);
    int rc = memops_run(&ctx, op, args, &result, &err);
    free(db_default);
    free(backups_default);
    if (rc != 0 || !result) {
        char message[CX_ERROR_MSG_MAX];
        snprintf(message, sizeof message, "%s", err.msg[0] ? err.msg : cx_strerror(rc));
        output_sanitize(message);
        fprintf(stderr, "caxton: memory %s: %s\n", op, message);
        json_decref(result);
        return CLI_EXIT_PROBLEM;
    }
    int exit_code = emit_result(inv, op, result, 200);
    json_decref(result);
    return exit_code;
}

/* Asks before reinitialize deletes everything, unless --yes. */
static int confirm_reinitialize(json_t *args)
{
    if (json_is_true(json_object_get(args, "yes")))
        return CLI_EXIT_OK;
    if (!isatty(STDIN_FILENO)) {
        fprintf(stderr, "caxton: memory reinitialize deletes every entity, observation and "
                        "relation; pass --yes to confirm\n");
        return CLI_EXIT_USAGE;
    }
    fprintf(stderr, "This deletes every memory entity, observation and relation.\n"
                    "Type 'yes' to continue: ");
    fflush(stderr);
    char line[64];
    bool yes = fgets(line, sizeof line, stdin) != NULL;
    if (yes) {
        line[strcspn(line, "\r\n")] = '\0';
        yes = strcmp(line, "yes") == 0;
    }
    if (!yes) {
        fprintf(stderr, "caxton: not confirmed; nothing was changed\n");
        return CLI_EXIT_PROBLEM;
    }
    return json_object_set_new(args, "yes", json_true()) == 0 ? CLI_EXIT_OK : out_of_memory();
}

/* POST /api/v1/memory/{op}, falling back to the files when the server is not running. */
static int run_op(const cli_invocation *inv, const char *op, json_t *args)
{
    bool offline_ok = memops_offline_capable(op);
    cx_config *cfg = NULL;
    int rc;

    if (cli_flag_set(inv, "offline")) {
        if (!offline_ok) {
            fprintf(stderr, "caxton: memory %s needs the running server; run it without "
                            "--offline\n", op);
            return CLI_EXIT_USAGE;
        }
        rc = load_config(inv, &cfg);
        if (rc != 0)
            return rc;
        if (cli_memory_replaces_files(op) && server_running(inv, cfg)) {
            fprintf(stderr, "caxton: the server is running; run without --offline so it can "
                            "quiesce memory\n");
            config_free(cfg);
            return CLI_EXIT_PROBLEM;
        }
        rc = run_offline(inv, cfg, op, args, true);
        config_free(cfg);
        return rc;
    }

    if (!inv->server) {
        rc = load_config(inv, &cfg);
        if (rc != 0)
            return rc;
        /* No URL file and no fixed port: nothing can be serving this data dir. */
        if (offline_ok && !cli_server_holds_lock(cfg->data_dir)) {
            char *url = cli_local_server_url(cfg);
            if (!url) {
                rc = run_offline(inv, cfg, op, args, false);
                config_free(cfg);
                return rc;
            }
            free(url);
        }
    }

    char *path = cli_api_path(MEMORY_PREFIX, op, NULL);
    if (!path) {
        config_free(cfg);
        return CLI_EXIT_PROBLEM;
    }
    client c;
    rc = cli_connect_with(inv, cfg, &c);
    if (rc != 0) {
        free(path);
        config_free(cfg);
        return rc;
    }
    client_response resp;
    cx_error err;
    cx_error_clear(&err);
    rc = client_request(&c, "POST", path, args, &resp, &err);
    free(path);
    /* Refused or timed out: the files are only touched when no server holds
     * them, and only the files of this host (a server found here, or the
     * data dir named on the command line). */
    if (rc == CX_ECONNECT && !c.cert_unverified && offline_ok && (c.local || inv->data_dir)) {
        int load_rc = cfg ? 0 : load_config(inv, &cfg);
        if (load_rc == 0 && !cli_server_holds_lock(cfg->data_dir)) {
            client_close(&c);
            rc = run_offline(inv, cfg, op, args, false);
            config_free(cfg);
            return rc;
        }
    }
    config_free(cfg);
    int exit_code;
    if (rc != 0) {
        exit_code = cli_report_request_failure(&c, rc, &err);
    } else if (resp.status < 200 || resp.status >= 300) {
        exit_code = cli_report_http_error(&c, &resp);
        client_response_free(&resp);
    } else if (!resp.json) {
        fprintf(stderr, "caxton: the server at %s answered HTTP %ld without a JSON body\n",
                c.url, resp.status);
        client_response_free(&resp);
        exit_code = CLI_EXIT_PROBLEM;
    } else {
        exit_code = emit_result(inv, op, resp.json, resp.status);
        client_response_free(&resp);
    }
    client_close(&c);
    return exit_code;
}

int cmd_memory_op(const cli_invocation *inv)
{
    const char *op = inv->command->name;
    cx_error err;
    cx_error_clear(&err);
    json_t *args = cli_memory_args(inv, &err);
    if (!args) {
        if (err.code == CX_ENOMEM)
            return out_of_memory();
        fprintf(stderr, "caxton: %s\n", err.msg);
        return CLI_EXIT_USAGE;
    }
    int rc = strcmp(op, "reinitialize") == 0 ? confirm_reinitialize(args) : CLI_EXIT_OK;
    if (rc == CLI_EXIT_OK)
        rc = run_op(inv, op, args);
    json_decref(args);
    return rc;
}

/* ---- Jobs ----------------------------------------------------------------------------------- */

int cmd_memory_job(const cli_invocation *inv)
{
    char *path = cli_api_path("/api/v1/jobs/", inv->args[0], NULL);
    if (!path)
        return CLI_EXIT_PROBLEM;
    client_response resp;
    int rc = cli_request_once(inv, "GET", path, NULL, &resp);
    free(path);
    if (rc != 0)
        return rc;
    const char *state = output_string(resp.json, "state", "?");
    const json_t *result = json_object_get(resp.json, "result");
    bool failed = strcmp(state, "failed") == 0 ||
                  (json_is_object(result) && json_is_false(json_object_get(result, "ok")));
    if (want_json(inv)) {
        output_json(stdout, resp.json);
    } else {
        const char *op = output_string(resp.json, "operation", "?");
        output_line(stdout, "job %s (memory %s): %s", output_string(resp.json, "id", inv->args[0]),
                    op, state);
        const json_t *error = json_object_get(resp.json, "error");
        if (error && !json_is_null(error)) {
            char *text = output_value_text(error);
            output_line(stdout, "error: %s", text ? text : "?");
            free(text);
        }
        if (json_is_object(result)) {
            printf("\n");
            print_op_result(op, result);
        } else if (strcmp(state, "queued") == 0 || strcmp(state, "running") == 0) {
            output_line(stdout, "not finished; run 'caxton memory job %s' again later",
                        inv->args[0]);
        }
    }
    client_response_free(&resp);
    return failed ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
}

/* ---- Entities ------------------------------------------------------------------------------- */

/* prefix + scope + "/" + name, both percent-encoded. NULL (said) when out of memory. */
static char *entity_path(const char *prefix, const char *scope, const char *name)
{
    char *escaped = client_url_escape(name);
    char *head = escaped ? cli_api_path(prefix, scope, "/") : NULL;
    strbuf sb;
    strbuf_init(&sb);
    int rc = head ? strbuf_appendf(&sb, "%s%s", head, escaped) : CX_ENOMEM;
    free(escaped);
    free(head);
    if (rc != 0) {
        strbuf_free(&sb);
        if (!escaped)
            out_of_memory();
        return NULL;
    }
    return strbuf_detach(&sb);
}

/* A number flag: a decimal from lo to hi. Prints the usage error itself. */
static int flag_number(const cli_invocation *inv, const char *name, double lo, double hi,
                       bool *given, double *out)
{
    const char *text = cli_flag_value(inv, name);
    *given = text != NULL;
    if (!text)
        return CLI_EXIT_OK;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < lo || v > hi) {
        char quoted[64];
        text_quote(text, quoted, sizeof quoted);
        if (hi < INFINITY)
            fprintf(stderr, "caxton: invalid --%s %s: expected a number from %g to %g\n", name,
                    quoted, lo, hi);
        else
            fprintf(stderr, "caxton: invalid --%s %s: expected a number of at least %g\n", name,
                    quoted, lo);
        return CLI_EXIT_USAGE;
    }
    *out = v;
    return CLI_EXIT_OK;
}

/* --depth: a whole number from 0 to GRAPH_MAX_DEPTH. */
static int flag_depth(const cli_invocation *inv)
{
    const char *text = cli_flag_value(inv, "depth");
    if (!text)
        return CLI_EXIT_OK;
    if (text[0] < '0' || text[0] > '9' || text[1] != '\0' || text[0] - '0' > GRAPH_MAX_DEPTH) {
        char quoted[64];
        text_quote(text, quoted, sizeof quoted);
        fprintf(stderr, "caxton: invalid --depth %s: expected a whole number from 0 to %d\n",
                quoted, GRAPH_MAX_DEPTH);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* The text of an observation: a string, or {"text", "at"}. */
static const char *observation_text(const json_t *o)
{
    return json_is_string(o) ? json_string_value(o) : output_string(o, "text", "");
}

/* The first observation, cut at SNIPPET_MAX bytes on a character boundary. */
static void snippet(const json_t *observations, char *buf, size_t size)
{
    const json_t *first = json_array_get(observations, 0);
    const char *text = first ? observation_text(first) : "";
    size_t len = strlen(text);
    size_t max = size - 4 < SNIPPET_MAX ? size - 4 : SNIPPET_MAX;
    if (len <= max) {
        snprintf(buf, size, "%s", text);
        return;
    }
    size_t cut = max;
    while (cut > 0 && ((unsigned char)text[cut] & 0xc0) == 0x80)
        cut--;
    snprintf(buf, size, "%.*s...", (int)cut, text);
}

/* GETs the path built so far (rc: how building it went; the path is freed)
 * and prints the answer as JSON or with `print`. */
static int get_and_print(const cli_invocation *inv, strbuf *path, int rc,
                         void (*print)(const json_t *doc))
{
    if (rc != 0 || path->failed) {
        strbuf_free(path);
        return out_of_memory();
    }
    client_response resp;
    rc = cli_request_once(inv, "GET", path->data, NULL, &resp);
    strbuf_free(path);
    if (rc != 0)
        return rc;
    if (want_json(inv))
        output_json(stdout, resp.json);
    else
        print(resp.json);
    client_response_free(&resp);
    return CLI_EXIT_OK;
}

static void print_search(const json_t *doc)
{
    const json_t *results = json_object_get(doc, "results");
    output_table *t = output_table_new(
        6, (const char *[]){"#", "score", "scope", "name", "type", "observation"});
    size_t i;
    const json_t *r;
    json_array_foreach(results, i, r) {
        char rank[24], score[32], obs[SNIPPET_MAX + 8];
        snprintf(rank, sizeof rank, "%zu", i + 1);
        snprintf(score, sizeof score, "%.3f", json_number_value(json_object_get(r, "score")));
        snippet(json_object_get(r, "observations"), obs, sizeof obs);
        if (t)
            output_table_row(t, rank, score, output_string(r, "scope", "?"),
                             output_string(r, "name", "?"), output_string(r, "type", "-"), obs);
    }
    if (t && output_table_rows(t) == 0)
        printf("no matches\n");
    else if (t)
        output_table_print(t, stdout);
    output_table_free(t);
    const json_t *expanded = json_object_get(doc, "expanded");
    if (all_objects(expanded)) {
        static const char *const skip[] = {"observations", NULL};
        printf("\nrelated:\n");
        print_objects(expanded, skip);
    }
    output_line(stdout, "%zu result%s in %lld ms", json_array_size(results),
                json_array_size(results) == 1 ? "" : "s", (long long)output_int(doc, "took_ms"));
    const char *vector = output_string(doc, "vector", NULL);
    if (vector)
        output_line(stdout, "ranked by text only: vector search %s", vector);
}

int cmd_memory_search(const cli_invocation *inv)
{
    uint64_t limit;
    double min_score;
    bool given;
    int rc = cli_flag_count(inv, "limit", 0, SEARCH_MAX_LIMIT, &limit);
    if (rc == 0)
        rc = flag_number(inv, "min-score", 0, INFINITY, &given, &min_score);
    if (rc == 0)
        rc = flag_depth(inv);
    if (rc != 0)
        return rc;
    static const char *const query[] = {"scope", "scope", "limit", "limit", "types", "types",
                                        "min_score", "min-score", "depth", "depth", "mode",
                                        "mode", "agent", "agent", NULL};
    strbuf path;
    strbuf_init(&path);
    rc = strbuf_appends(&path, MEMORY_PREFIX "search");
    if (rc == 0)
        rc = cli_query_add(&path, "q", inv->args[0]);
    for (size_t i = 0; rc == 0 && query[i]; i += 2)
        rc = cli_query_add(&path, query[i], cli_flag_value(inv, query[i + 1]));
    return get_and_print(inv, &path, rc, print_search);
}

static void print_entity(const json_t *e)
{
    output_line(stdout, "%s %s (%s)", output_string(e, "scope", "?"), output_string(e, "name", "?"),
                output_string(e, "type", "no type"));
    const json_t *confidence = json_object_get(e, "confidence");
    if (json_is_number(confidence))
        output_line(stdout, "confidence: %g", json_number_value(confidence));
    output_line(stdout, "version: %lld", (long long)output_int(e, "version"));
    output_line(stdout, "created: %s by %s", output_string(e, "created_at", "?"),
                output_string(e, "created_by", "?"));
    output_line(stdout, "updated: %s", output_string(e, "updated_at", "?"));
    const json_t *metadata = json_object_get(e, "metadata");
    if (json_is_object(metadata) && json_object_size(metadata) > 0)
        print_value(0, "metadata", metadata, 0);
    const json_t *observations = json_object_get(e, "observations");
    json_int_t count = output_int(e, "observation_count");
    if (count < (json_int_t)json_array_size(observations))
        count = (json_int_t)json_array_size(observations);
    output_line(stdout, "observations (%lld):", (long long)count);
    size_t i;
    const json_t *o;
    json_array_foreach(observations, i, o) {
        const char *at = json_is_object(o) ? output_string(o, "at", NULL) : NULL;
        if (at)
            output_line(stdout, "  [%s] %s", at, observation_text(o));
        else
            output_line(stdout, "  %s", observation_text(o));
    }
    if ((size_t)count > json_array_size(observations))
        output_line(stdout, "  ... %lld more",
                    (long long)count - (long long)json_array_size(observations));
    const json_t *history = json_object_get(e, "history");
    if (json_is_array(history)) {
        printf("history:\n");
        if (all_objects(history))
            print_objects(history, NULL);
        else if (json_array_size(history) == 0)
            printf("  (none)\n");
        else
            print_array(2, "changes", history, 1);
    }
}

int cmd_memory_show(const cli_invocation *inv)
{
    char *base = entity_path(ENTITIES_PREFIX, inv->args[0], inv->args[1]);
    if (!base)
        return CLI_EXIT_PROBLEM;
    strbuf path;
    strbuf_init(&path);
    int rc = strbuf_appends(&path, base);
    free(base);
    if (rc == 0)
        rc = cli_query_add(&path, "agent", cli_flag_value(inv, "agent"));
    if (rc == 0)
        rc = cli_query_add(&path, "history", cli_flag_set(inv, "history") ? "1" : NULL);
    return get_and_print(inv, &path, rc, print_entity);
}

/* The body of `memory store`; NULL after printing the usage error (*exit_code set). */
static json_t *store_body(const cli_invocation *inv, int *exit_code)
{
    double confidence;
    bool has_confidence;
    *exit_code = flag_number(inv, "confidence", 0, 1, &has_confidence, &confidence);
    if (*exit_code != 0)
        return NULL;
    cx_error err;
    cx_error_clear(&err);
    json_t *body = json_object();
    int rc = body ? 0 : CX_ENOMEM;
    static const char *const texts[] = {"scope", "name", "type", "agent", NULL};
    for (size_t i = 0; rc == 0 && texts[i]; i++) {
        const char *value = cli_flag_value(inv, texts[i]);
        if (value)
            rc = set_text(body, texts[i], value, &err);
    }
    if (rc == 0 && has_confidence)
        rc = json_object_set_new(body, "confidence", json_real(confidence));
    const char **values = calloc((size_t)inv->argc + 1, sizeof *values);
    size_t n = values ? cli_flag_values(inv, "observation", values, (size_t)inv->argc) : 0;
    if (rc == 0 && !values)
        rc = CX_ENOMEM;
    if (rc == 0 && n > MAX_OBSERVATIONS)
        rc = cx_error_set(&err, CX_EINVAL, "at most %d --observation flags", MAX_OBSERVATIONS);
    json_t *observations = rc == 0 && n > 0 ? json_array() : NULL;
    if (rc == 0 && n > 0 && !observations)
        rc = CX_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!text_is_utf8(values[i], strlen(values[i])))
            rc = cx_error_set(&err, CX_EINVAL, "--observation '%s' is not valid UTF-8 text",
                              values[i]);
        else if (values[i][0] == '\0')
            rc = cx_error_set(&err, CX_EINVAL, "--observation needs a non-empty value");
        else
            rc = json_array_append_new(observations, json_string(values[i])) == 0 ? 0 : CX_ENOMEM;
    }
    free(values);
    if (rc == 0 && observations) {
        rc = json_object_set_new(body, "observations", observations) == 0 ? 0 : CX_ENOMEM;
        observations = NULL;
    }
    json_decref(observations);
    if (rc != 0) {
        json_decref(body);
        if (rc == CX_ENOMEM) {
            *exit_code = out_of_memory();
        } else {
            fprintf(stderr, "caxton: %s\n", err.msg);
            *exit_code = CLI_EXIT_USAGE;
        }
        return NULL;
    }
    return body;
}

int cmd_memory_store(const cli_invocation *inv)
{
    int rc;
    json_t *body = store_body(inv, &rc);
    if (!body)
        return rc;
    client_response resp;
    rc = cli_request_once(inv, "POST", MEMORY_PREFIX "entities", body, &resp);
    json_decref(body);
    if (rc != 0)
        return rc;
    if (want_json(inv)) {
        output_json(stdout, resp.json);
    } else {
        json_int_t count = output_int(resp.json, "observation_count");
        output_line(stdout, "%s %s %s: version %lld, %lld observation%s",
                    resp.status == 201 ? "created" : "updated",
                    output_string(resp.json, "scope", cli_flag_value(inv, "scope")),
                    output_string(resp.json, "name", cli_flag_value(inv, "name")),
                    (long long)output_int(resp.json, "version"), (long long)count,
                    count == 1 ? "" : "s");
    }
    client_response_free(&resp);
    return CLI_EXIT_OK;
}

int cmd_memory_relate(const cli_invocation *inv)
{
    double strength;
    bool has_strength;
    int rc = flag_number(inv, "strength", 0, 1, &has_strength, &strength);
    if (rc != 0)
        return rc;
    cx_error err;
    cx_error_clear(&err);
    json_t *body = json_object();
    rc = body ? 0 : CX_ENOMEM;
    static const char *const texts[] = {"scope", "from", "to", "type", "agent", NULL};
    for (size_t i = 0; rc == 0 && texts[i]; i++) {
        const char *value = cli_flag_value(inv, texts[i]);
        if (value)
            rc = set_text(body, texts[i], value, &err);
    }
    if (rc == 0 && has_strength)
        rc = json_object_set_new(body, "strength", json_real(strength)) == 0 ? 0 : CX_ENOMEM;
    if (rc != 0) {
        json_decref(body);
        if (rc == CX_ENOMEM)
            return out_of_memory();
        fprintf(stderr, "caxton: %s\n", err.msg);
        return CLI_EXIT_USAGE;
    }
    client_response resp;
    rc = cli_request_once(inv, "POST", MEMORY_PREFIX "relations", body, &resp);
    json_decref(body);
    if (rc != 0)
        return rc;
    if (want_json(inv))
        output_json(stdout, resp.json);
    else
        output_line(stdout, "related %s -[%s]-> %s in %s", cli_flag_value(inv, "from"),
                    cli_flag_value(inv, "type"), cli_flag_value(inv, "to"),
                    cli_flag_value(inv, "scope"));
    client_response_free(&resp);
    return CLI_EXIT_OK;
}

int cmd_memory_delete(const cli_invocation *inv)
{
    char *base = entity_path(ENTITIES_PREFIX, inv->args[0], inv->args[1]);
    if (!base)
        return CLI_EXIT_PROBLEM;
    strbuf path;
    strbuf_init(&path);
    int rc = strbuf_appends(&path, base);
    free(base);
    if (rc == 0)
        rc = cli_query_add(&path, "agent", cli_flag_value(inv, "agent"));
    if (rc != 0 || path.failed) {
        strbuf_free(&path);
        return out_of_memory();
    }
    client c;
    rc = cli_connect(inv, &c);
    if (rc != 0) {
        strbuf_free(&path);
        return rc;
    }
    /* A 204 has no body: cli_call wants JSON, so the status is checked here. */
    client_response resp;
    cx_error err;
    int req = client_request(&c, "DELETE", path.data, NULL, &resp, &err);
    strbuf_free(&path);
    if (req != 0) {
        rc = cli_report_request_failure(&c, req, &err);
    } else if (resp.status < 200 || resp.status >= 300) {
        rc = cli_report_http_error(&c, &resp);
        client_response_free(&resp);
    } else {
        if (want_json(inv)) {
            json_t *doc = resp.json ? json_incref(resp.json)
                                    : json_pack("{s:s, s:s, s:b}", "scope", inv->args[0], "name",
                                                inv->args[1], "deleted", 1);
            if (doc)
                output_json(stdout, doc);
            json_decref(doc);
        } else {
            output_line(stdout, "deleted %s %s", inv->args[0], inv->args[1]);
        }
        client_response_free(&resp);
    }
    client_close(&c);
    return rc;
}

static void print_graph(const json_t *doc)
{
    static const char *const skip[] = {"observations", NULL};
    const json_t *root = json_object_get(doc, "root");
    if (json_is_object(root))
        output_line(stdout, "root: %s %s", output_string(root, "scope", "?"),
                    output_string(root, "name", "?"));
    else if (root)
        print_compact(0, "root", root);
    const json_t *nodes = json_object_get(doc, "nodes");
    const json_t *edges = json_object_get(doc, "edges");
    output_line(stdout, "%zu node%s, %zu edge%s", json_array_size(nodes),
                json_array_size(nodes) == 1 ? "" : "s", json_array_size(edges),
                json_array_size(edges) == 1 ? "" : "s");
    if (all_objects(nodes)) {
        printf("\nnodes:\n");
        print_objects(nodes, skip);
    }
    if (all_objects(edges)) {
        printf("\nedges:\n");
        print_objects(edges, skip);
    }
}

int cmd_memory_graph(const cli_invocation *inv)
{
    int rc = flag_depth(inv);
    if (rc != 0)
        return rc;
    char *base = entity_path(GRAPH_PREFIX, inv->args[0], inv->args[1]);
    if (!base)
        return CLI_EXIT_PROBLEM;
    strbuf path;
    strbuf_init(&path);
    rc = strbuf_appends(&path, base);
    free(base);
    if (rc == 0)
        rc = cli_query_add(&path, "depth", cli_flag_value(inv, "depth"));
    if (rc == 0)
        rc = cli_query_add(&path, "agent", cli_flag_value(inv, "agent"));
    return get_and_print(inv, &path, rc, print_graph);
}

/* ---- agents reconnect-memory ---------------------------------------------------------------- */

int cmd_agents_reconnect_memory(const cli_invocation *inv)
{
    const char *name = inv->args[0];
    char *path = cli_api_path("/api/v1/agents/", name, "/reconnect-memory");
    json_t *body = json_object();
    if (!path || !body) {
        free(path);
        json_decref(body);
        return path ? out_of_memory() : CLI_EXIT_PROBLEM;
    }
    client_response resp;
    int rc = cli_request_once(inv, "POST", path, body, &resp);
    free(path);
    json_decref(body);
    if (rc != 0)
        return rc;
    bool ok = !json_is_false(json_object_get(resp.json, "ok"));
    if (want_json(inv)) {
        output_json(stdout, resp.json);
    } else {
        const char *detail = output_string(resp.json, "detail", NULL);
        output_line(stdout, "%s: %s%s%s", output_string(resp.json, "agent", name),
                    ok ? "memory reconnected" : "memory NOT reconnected", detail ? ": " : "",
                    detail ? detail : "");
    }
    client_response_free(&resp);
    return ok ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
}
