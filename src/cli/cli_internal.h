/* Declarations shared between the files of the command line (src/cli/).
 *
 * The command table (cli.c) is data: groups, commands, their flags and
 * handlers. args.c parses argv against a table into a cli_invocation, help.c
 * prints help and the bash completion script from the same table, and the
 * cmd_*.c files hold the handlers. Adding a group means adding rows to the
 * table and handler functions; nothing else changes.
 *
 * Conventions inside the CLI: handlers and cli_* helpers that end a command
 * return a process exit code (CLI_EXIT_*, cli.h) and have already printed what
 * the operator needs; client_* and output_* functions return 0 or a negative
 * CX_E* code like the rest of the project. */
#ifndef CAXTON_CLI_INTERNAL_H
#define CAXTON_CLI_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "core/config.h"
#include "core/error.h"
#include "core/util.h"

#define CLI_DEFAULT_TIMEOUT_MS 10000u
#define CLI_MAX_ARGS 16  /* positional arguments of one command */
#define CLI_MAX_FLAGS 24 /* flags of one command, global ones not counted */

/* ---- The command table ---------------------------------------------------------------------- */

typedef enum cli_value_kind {
    CLI_SWITCH,   /* --verify-health: no value */
    CLI_TEXT,     /* --name NAME */
    CLI_FILE,     /* --config FILE (completed as a file) */
    CLI_DIR,      /* --data-dir DIR (completed as a directory) */
    CLI_DURATION, /* --timeout 10s (checked with units_parse_duration_ms) */
    CLI_CHOICE,   /* --role viewer|operator|admin (checked against choices) */
} cli_value_kind;

typedef struct cli_flag {
    const char *name;            /* without the leading "--" */
    cli_value_kind kind;
    const char *value_name;      /* for help: "HOST:PORT"; NULL derives it from kind */
    const char *const *choices;  /* NULL-terminated, for CLI_CHOICE */
    bool required;
    const char *help;
} cli_flag;

/* cli_command.options */
enum {
    CLI_CMD_WINDOW = 1u << 0,     /* accepts --last-<duration>, --since, --until */
    CLI_CMD_OFFLINE = 1u << 1,    /* works on files and processes, needs no server */
    CLI_CMD_ARGS_FILES = 1u << 2, /* positional arguments are file names (completion) */
};

struct cli_invocation;
typedef int (*cli_handler)(const struct cli_invocation *inv);

typedef struct cli_command {
    const char *group;
    const char *name;            /* NULL: the group is itself this command */
    cli_handler handler;
    const char *args;            /* positional arguments for usage: "FILE", "ID|NAME" */
    unsigned min_args;
    unsigned max_args;
    const cli_flag *const *flags; /* NULL-terminated, or NULL */
    unsigned options;            /* CLI_CMD_* */
    uint64_t default_timeout_ms; /* 0: CLI_DEFAULT_TIMEOUT_MS */
    const char *summary;         /* one line */
    const char *description;     /* more lines for `caxton help`, or NULL */
} cli_command;

typedef struct cli_group {
    const char *name;
    const char *summary;
} cli_group;

typedef struct cli_table {
    const cli_group *groups;
    size_t group_count;
    const cli_command *commands;
    size_t command_count;
} cli_table;

extern const cli_table cli_builtin_table; /* cli.c */
extern const cli_flag *const cli_global_flags[]; /* args.c, NULL-terminated */

/* Commands of a group in table order; returns how many were stored. */
size_t cli_group_commands(const cli_table *table, const cli_group *group,
                          const cli_command **out, size_t max);
const cli_group *cli_find_group(const cli_table *table, const char *name);
const cli_command *cli_find_command(const cli_table *table, const char *group, const char *name);
/* True when the group is one command (`status`) rather than a set of them. */
bool cli_group_is_command(const cli_table *table, const cli_group *group);

/* ---- Time windows --------------------------------------------------------------------------- */

typedef struct cli_window {
    bool set;
    bool from_last;    /* set by --last-<duration> */
    uint64_t since_ms; /* epoch ms; 0 = open */
    uint64_t until_ms; /* epoch ms; 0 = open (now) */
} cli_window;

/* RFC 3339 date-time ("2026-01-15T10:00:00Z", "...10:00:00.250+02:00") or a
 * full date ("2026-01-15", midnight UTC) to epoch milliseconds. */
int cli_parse_rfc3339(const char *text, uint64_t *out_ms, cx_error *err);
/* A point in time as --since/--until take it: RFC 3339, "now", or a duration
 * meaning that long before now_ms ("2h"). */
int cli_parse_time(const char *text, uint64_t now_ms, uint64_t *out_ms, cx_error *err);
/* Applies one window flag: name is "last-5min", "since" or "until". */
int cli_window_apply(cli_window *window, const char *name, const char *value, uint64_t now_ms,
                     cx_error *err);
/* Appends "since=...&until=..." (only the bounds that are set) to a query. */
int cli_window_query(const cli_window *window, strbuf *query);

/* ---- Parsing -------------------------------------------------------------------------------- */

typedef enum cli_output_format { CLI_OUTPUT_TABLE, CLI_OUTPUT_JSON } cli_output_format;

typedef struct cli_invocation {
    const cli_table *table;
    const cli_group *group;      /* NULL when no group was named */
    const cli_command *command;  /* NULL when only a group (or nothing) was named */
    /* Global flags, merged with CAXTON_OUTPUT, CAXTON_SERVER, CAXTON_TOKEN. */
    cli_output_format output;
    bool output_given;           /* --output was on the line (it beats CAXTON_OUTPUT) */
    const char *server;
    const char *token;
    const char *config_path;
    const char *data_dir;
    uint64_t timeout_ms;         /* --timeout, else the command's default */
    bool timeout_given;
    bool help;
    bool version;
    cli_window window;
    const char *args[CLI_MAX_ARGS];
    size_t arg_count;
    const char *values[CLI_MAX_FLAGS]; /* by index in command->flags; "" for a set switch */
    char *const *envp;
    int argc;                    /* the command line as given, for repeated flags */
    char **argv;
    uint64_t now_ms;
    bool error_shows_usage;      /* after CLI_PARSE_ERROR: print the usage line too */
} cli_invocation;

typedef enum cli_parse_result {
    CLI_PARSE_RUN,
    CLI_PARSE_HELP,     /* print help for inv->group / inv->command */
    CLI_PARSE_VERSION,
    CLI_PARSE_ERROR,    /* usage error; err->msg is the line to print after "caxton: " */
} cli_parse_result;

/* Parses argv (argv[0] is the program) against a table. The invocation points
 * into argv and the table; it owns no memory. */
cli_parse_result cli_parse(const cli_table *table, int argc, char **argv, char *const *envp,
                           uint64_t now_ms, cli_invocation *inv, cx_error *err);

/* Flag values of the invocation's command, by name (the name must be one of
 * the command's flags). */
const char *cli_flag_value(const cli_invocation *inv, const char *name);
bool cli_flag_set(const cli_invocation *inv, const char *name);
/* Every value of a flag given more than once (--observation A --observation
 * B), in order, up to max; returns how many were stored. */
size_t cli_flag_values(const cli_invocation *inv, const char *name, const char **out,
                       size_t max);
/* A count flag (--limit N): fallback when not given, else a whole number
 * from 1 to max. Prints the usage error itself; returns an exit code. */
int cli_flag_count(const cli_invocation *inv, const char *name, uint64_t fallback, uint64_t max,
                   uint64_t *out);

/* Sleeps ms milliseconds, all of them: a signal that interrupts nanosleep()
 * does not cut the wait short. */
void cli_sleep_ms(uint64_t ms);

/* ---- Help and completion (help.c) ----------------------------------------------------------- */

/* What a flag's value is called in help and errors: "FILE", "HOST:PORT". */
const char *cli_flag_value_name(const cli_flag *f);
/* "caxton service start [--log-dir DIR] [--emergency]" */
int cli_usage_line(const cli_command *cmd, strbuf *out);
void cli_print_help(FILE *out, const cli_table *table, const cli_group *group,
                    const cli_command *cmd);
int cli_completion_bash(const cli_table *table, strbuf *out);
/* The name a command is invoked by: "status", "service start". */
void cli_command_label(const cli_command *cmd, char *buf, size_t size);

/* ---- Exit codes and reporting (client.c) ---------------------------------------------------- */

/* The exit code for an HTTP status: 2xx 0, 401/403 4, 503 (not ready) and 0
 * (no response) 3, anything else 1. */
int cli_exit_for_http_status(long status);

/* Builds the client for a command that talks to the server: server URL and
 * token from flags, environment, the data dir and the config file (the last
 * two only when no server was named). Prints config errors itself; returns
 * an exit code (0 when c is ready). */
int cli_connect(const cli_invocation *inv, client *c);
/* cli_connect with the configuration already loaded (cli_config_load) when
 * cfg is not NULL, so it is not read (and warned about) twice. */
int cli_connect_with(const cli_invocation *inv, const cx_config *cfg, client *c);
/* The URL of the server found on this host: <data_dir>/run/api.url, else the
 * config's api.listen; NULL, silently, when neither names one. free() it. */
char *cli_local_server_url(const cx_config *cfg);
/* True while a server holds the data dir's lock (it is running on it). */
bool cli_server_holds_lock(const char *data_dir);
/* config_load as the client commands do it: the invocation's --config and
 * --data-dir over flags' other fields, in client mode (config_flags.client).
 * When the file was skipped as unreadable, says so on stderr. */
int cli_config_load(const cli_invocation *inv, config_flags *flags, cx_config **out,
                    config_diag *diag, cx_error *err);
/* <data_dir>/tokens/admin.token, trimmed, or NULL when unreadable. Only for
 * a server found locally (client.local). free() the result. */
char *cli_local_token(const char *data_dir);
/* Gives a client made with client_init the CA file to trust: --cacert (when
 * the command has it), else CAXTON_CACERT, else the config's api.tls.cert
 * when the server was found locally (c->local), c->url is https and the file
 * is readable; else none (the system's CAs). cfg may be NULL. Prints the
 * problem and returns an exit code: 2 when --cacert or CAXTON_CACERT names
 * an unreadable file. */
int cli_client_trust(const cli_invocation *inv, const cx_config *cfg, client *c);
/* Prints why a request failed (rc from client_request) and returns the exit
 * code: 3 for an unreachable server, or for a certificate that could not be
 * verified (then the message says to pass --cacert FILE or CAXTON_CACERT). */
int cli_report_request_failure(const client *c, int rc, const cx_error *err);
/* Prints "error CODE: message" (and details) from a non-2xx response and
 * returns its exit code. */
int cli_report_http_error(const client *c, const client_response *resp);
/* Sends a request and reports any failure; returns 0 with resp filled for a
 * 2xx JSON answer, else the exit code (resp is then empty). */
int cli_call(client *c, const char *method, const char *path, const json_t *body,
             client_response *resp);

/* cli_connect, one cli_call, client_close: for commands that make one
 * request. Returns an exit code; on 0 resp holds the 2xx JSON answer. */
int cli_request_once(const cli_invocation *inv, const char *method, const char *path,
                     const json_t *body, client_response *resp);
/* prefix + the percent-encoded segment + suffix (may be NULL):
 * ("/api/v1/agents/", "x", "/reload"). NULL, said on stderr, when out of memory. */
char *cli_api_path(const char *prefix, const char *segment, const char *suffix);
/* Appends "?key=value" or "&key=value" (value percent-encoded) to a path;
 * nothing when value is NULL. */
int cli_query_add(strbuf *path, const char *key, const char *value);

/* Every item of a paginated list (GET path, which may carry a query),
 * following next_cursor: up to max items (0: all of them, at most
 * CLI_MAX_PAGES pages). Returns an exit code (failures are reported); on 0,
 * *items is a new array and *more (may be NULL) says whether items were left. */
#define CLI_PAGE_LIMIT 500
#define CLI_MAX_PAGES 1000
int cli_fetch_list(client *c, const char *path, size_t max, json_t **items, bool *more);

/* Prints a command's result document: as JSON with --output json, else with
 * print_table. Takes ownership of doc. */
void cli_emit(const cli_invocation *inv, json_t *doc, void (*print_table)(const json_t *doc));

/* Prints config_load problems as "caxton: <line>" on stderr. */
void cli_print_config_errors(const config_diag *diag, const cx_error *err);

/* ---- Handlers ------------------------------------------------------------------------------- */

int cmd_help(const cli_invocation *inv);
int cmd_completion(const cli_invocation *inv);
int cmd_serve(const cli_invocation *inv);
int cmd_status(const cli_invocation *inv);
int cmd_health_check(const cli_invocation *inv);
int cmd_service_start(const cli_invocation *inv);
int cmd_service_stop(const cli_invocation *inv);
int cmd_service_restart(const cli_invocation *inv);
int cmd_service_status(const cli_invocation *inv);
int cmd_config_validate(const cli_invocation *inv);
int cmd_config_show(const cli_invocation *inv);
int cmd_agents_test_all(const cli_invocation *inv);
int cmd_agents_performance_summary(const cli_invocation *inv);
int cmd_tools_status(const cli_invocation *inv);
int cmd_tools_reconnect(const cli_invocation *inv);
int cmd_tools_test_connectivity(const cli_invocation *inv);
int cmd_token_create(const cli_invocation *inv);
int cmd_token_list(const cli_invocation *inv);
int cmd_token_revoke(const cli_invocation *inv);
int cmd_wasm_run(const cli_invocation *inv);
int cmd_wasm_validate(const cli_invocation *inv);
/* A wasm import or export type as the wasm commands print it:
 * "(i32, i64) -> (f64)", "1..2 pages", "funcref 1.. elements", "mut i32". */
struct wasm_externtype;
void cli_wasm_type_text(const struct wasm_externtype *t, strbuf *out);
int cmd_wasm_analyze_requirements(const cli_invocation *inv);
int cmd_wasm_compatibility_check(const cli_invocation *inv);
int cmd_wasm_diff(const cli_invocation *inv);

int cmd_config_audit_log(const cli_invocation *inv);
int cmd_agents_list(const cli_invocation *inv);
int cmd_agents_status(const cli_invocation *inv);
int cmd_agents_health_summary(const cli_invocation *inv);
int cmd_agents_suspend(const cli_invocation *inv);
int cmd_agents_resume(const cli_invocation *inv);
int cmd_agents_logs(const cli_invocation *inv);
int cmd_agents_scale(const cli_invocation *inv);
int cmd_agents_reload(const cli_invocation *inv);
int cmd_agents_reload_status(const cli_invocation *inv);
int cmd_agents_deploy(const cli_invocation *inv);
int cmd_agents_update(const cli_invocation *inv);
int cmd_agents_remove(const cli_invocation *inv);
int cmd_agents_validate(const cli_invocation *inv);
int cmd_agents_validate_all(const cli_invocation *inv);
int cmd_conversations_queue_status(const cli_invocation *inv);
int cmd_conversations_drain_queue(const cli_invocation *inv);
int cmd_conversations_list(const cli_invocation *inv);
int cmd_conversations_show(const cli_invocation *inv);
int cmd_conversations_dead_letters(const cli_invocation *inv);
int cmd_messages_send(const cli_invocation *inv);
int cmd_capabilities_list(const cli_invocation *inv);
int cmd_capabilities_check_conflicts(const cli_invocation *inv);
int cmd_memory_op(const cli_invocation *inv); /* the operation is the command's name */
int cmd_memory_search(const cli_invocation *inv);
int cmd_memory_show(const cli_invocation *inv);
int cmd_memory_store(const cli_invocation *inv);
int cmd_memory_relate(const cli_invocation *inv);
int cmd_memory_delete(const cli_invocation *inv);
int cmd_memory_graph(const cli_invocation *inv);
int cmd_memory_job(const cli_invocation *inv);
int cmd_agents_reconnect_memory(const cli_invocation *inv);

/* Why an agent summary (GET /api/v1/agents) is in an error state: failed,
 * reloading, draining, suspended with messages queued, or its last reload
 * failed. Writes the reason into why; false when the agent is fine. */
bool cli_agent_error_state(const json_t *agent, char *why, size_t size);
/* The "instances" value of POST /agents/{name}/scale from --instances: "+2"
 * and "-1" as strings, an absolute count as an integer (1..64). NULL with
 * err (CX_EINVAL, for a usage error) otherwise. */
json_t *cli_scale_instances(const char *text, cx_error *err);
/* The body of `messages send` from its flags: exactly one of --to and
 * --capability, --content as a JSON string (parsed as JSON with
 * --json-content), --performative (default request), --conversation,
 * --in-reply-to. NULL with err (CX_EINVAL: a usage error) otherwise. */
json_t *cli_message_body(const cli_invocation *inv, cx_error *err);
/* The JSON arguments of `memory <op>` (the command's name) from its flags,
 * as POST /api/v1/memory/{op} and memops_run take them: dashes become
 * underscores, a switch is true, a value a string (--threshold 5s -> "5s"),
 * file names (--json FILE, import FILE, restore FILE, corruption-analysis
 * FILE) absolute, the positional AGENT "agent", a --last-<duration> or
 * --since window "since" in epoch ms; --cacert and --offline are left out.
 * NULL with err (CX_EINVAL: a usage error, such as integrity-check without
 * --full or --quick) otherwise. */
json_t *cli_memory_args(const cli_invocation *inv, cx_error *err);
/* Whether a memory operation replaces the database files (recover, restore,
 * import, reinitialize): offline only while no server runs. */
bool cli_memory_replaces_files(const char *op);
/* path made absolute against the working directory (a leading "./" is
 * dropped; nothing is resolved or required to exist). free() the result;
 * NULL when the working directory is unknown or out of memory. */
char *cli_absolute_path(const char *path);
/* Prints agent-definition diagnostics as the API gives them
 * ([{"severity","line","column","field","message","hint"}]) the way
 * `agents validate` prints them: "file:line:column: error: field: message"
 * and a "  hint: ..." line. */
void cli_print_diagnostics(FILE *out, const char *file, const json_t *diagnostics);

/* Shared by status, health-check and service: prints a health document's
 * components as a table. */
void cli_print_components(FILE *out, const json_t *components);
/* A health or status document (not an error envelope): {"status": ..., ...}.
 * Servers answer 503 with one when a critical component fails. */
bool cli_is_status_document(const client_response *resp);
/* "status: ok" and the components table of a /health/deep answer. */
void cli_print_deep(const client_response *resp);
/* 0 when a /health/deep answer is 200 and ok, else 1. */
int cli_deep_exit_code(const client_response *resp);
/* "caxton 0.1.0 (pid 12), up 5m 3s, http://127.0.0.1:8080" from a status document. */
void cli_print_server_summary(const json_t *status_doc);
/* One line explaining why a /health/deep answer is not ready: the failing
 * components, or the HTTP status. Writes into buf. */
void cli_health_reason(const client_response *resp, char *buf, size_t size);

/* Resolves `token revoke ID|NAME` against a token list's items: an id
 * ("tok_...") is taken as is; a name must match exactly one active token.
 * Returns 0 with *id_out pointing into items, or CX_ENOTFOUND / CX_EEXIST
 * (ambiguous) / CX_EINVAL (already revoked) with a message. */
int cli_token_resolve(const json_t *items, const char *id_or_name, const char **id_out,
                      cx_error *err);

#endif
