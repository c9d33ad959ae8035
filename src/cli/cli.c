/* The `caxton` entry point and its command table.
 *
 * The table below is the whole command tree: every group and command with
 * its arguments, flags and handler. Parsing (args.c), help and completion
 * (help.c) read it, so a new group is a few rows here plus its handlers in a
 * cmd_<group>.c file. Flags are shared objects so that a flag name means the
 * same thing (and takes a value or not) on every command. --cacert is on
 * every command that talks to the server through cli_connect. */
#include <stdio.h>
#include <unistd.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/util.h"

#ifndef CAXTON_VERSION
#error "CAXTON_VERSION must be defined by the build"
#endif

/* ---- Flags ---------------------------------------------------------------------------------- */

static const char *const role_choices[] = {"viewer", "operator", "admin", NULL};

static const cli_flag flag_log_dir = {"log-dir", CLI_DIR, NULL, NULL, false,
                                      "Log directory (default /var/log/caxton)"};
static const cli_flag flag_listen = {"listen", CLI_TEXT, "HOST:PORT", NULL, false,
                                     "API address (default 127.0.0.1:8080)"};
static const cli_flag flag_production_check = {
    "production-check", CLI_SWITCH, NULL, NULL, false,
    "Also run the production readiness checks (TLS, token, limits...); exit 1 on a warning "
    "or failure"};
static const cli_flag flag_comprehensive = {
    "comprehensive", CLI_SWITCH, NULL, NULL, false,
    "Check every component (GET /health/deep); exit 1 unless all are ok"};
static const cli_flag flag_wait_ready = {
    "wait-ready", CLI_SWITCH, NULL, NULL, false,
    "Poll until the server is ready or --timeout passes (exit 3 then)"};
static const cli_flag flag_emergency = {
    "emergency", CLI_SWITCH, NULL, NULL, false,
    "If the server has not exited 5s after SIGTERM, SIGKILL it"};
static const cli_flag flag_verify_health = {
    "verify-health", CLI_SWITCH, NULL, NULL, false,
    "Once started, check every component; exit 1 unless all are ok"};
static const cli_flag flag_effective = {
    "effective", CLI_SWITCH, NULL, NULL, false,
    "Show the merged configuration with the source of each value (the default view)"};
static const cli_flag flag_offline = {
    "offline", CLI_SWITCH, NULL, NULL, false,
    "Compute it from the config file and environment instead of asking the server"};
static const cli_flag flag_role = {"role", CLI_CHOICE, "ROLE", role_choices, true,
                                   "viewer (read), operator (read + lifecycle) or admin"};
static const cli_flag flag_name = {"name", CLI_TEXT, "NAME", NULL, true,
                                   "A name to recognize the token by (revoke accepts it)"};
static const cli_flag flag_cacert = {
    "cacert", CLI_FILE, NULL, NULL, false,
    "Trust this CA or self-signed certificate (PEM) for an https server (CAXTON_CACERT; "
    "default the config's api.tls.cert when the server is found locally)"};

static const cli_flag *const serve_flags[] = {&flag_log_dir, &flag_listen, NULL};
static const cli_flag *const status_flags[] = {&flag_production_check, &flag_cacert, NULL};
static const cli_flag *const health_flags[] = {&flag_comprehensive, &flag_wait_ready,
                                               &flag_cacert, NULL};
static const cli_flag *const service_start_flags[] = {&flag_log_dir, &flag_listen,
                                                      &flag_verify_health, &flag_cacert, NULL};
static const cli_flag *const service_stop_flags[] = {&flag_log_dir, &flag_listen,
                                                     &flag_emergency, NULL};
static const cli_flag *const service_restart_flags[] = {&flag_log_dir, &flag_listen,
                                                        &flag_emergency, &flag_verify_health,
                                                        &flag_cacert, NULL};
static const cli_flag *const service_status_flags[] = {&flag_log_dir, &flag_listen, &flag_cacert,
                                                       NULL};
static const cli_flag *const config_show_flags[] = {&flag_effective, &flag_offline,
                                                    &flag_cacert, NULL};
static const cli_flag *const token_create_flags[] = {&flag_role, &flag_name, &flag_cacert,
                                                     NULL};
static const cli_flag *const server_flags[] = {&flag_cacert, NULL}; /* only talks to the server */

static const cli_flag flag_invoke = {"invoke", CLI_TEXT, "NAME", NULL, true,
                                     "The exported function to call"};
static const cli_flag flag_fuel = {"fuel", CLI_TEXT, "N", NULL, false,
                                   "Fuel the call may use (default 10000000000)"};
static const cli_flag flag_max_memory = {"max-memory", CLI_TEXT, "SIZE", NULL, false,
                                         "Largest linear memory (default 10MB)"};
static const cli_flag flag_wasm_comprehensive = {
    "comprehensive", CLI_SWITCH, NULL, NULL, false,
    "Also list imports and exports and instantiate once (a dry run)"};
static const cli_flag *const wasm_validate_flags[] = {&flag_wasm_comprehensive, NULL};
static const cli_flag flag_runtime_version = {
    "runtime-version", CLI_SWITCH, NULL, NULL, false,
    "Also print the engine's version and the features it implements"};
static const cli_flag *const wasm_compatibility_flags[] = {&flag_runtime_version, NULL};
static const cli_flag *const wasm_run_flags[] = {&flag_invoke, &flag_fuel, &flag_max_memory,
                                                 NULL};

/* ---- The table ------------------------------------------------------------------------------ */

static const cli_group groups[] = {
    {"serve", "Run the server in the foreground (what systemd runs)"},
    {"status", "Show the server's status, components and counts"},
    {"health-check", "Check that the server is alive, healthy or ready"},
    {"service", "Manage a background server on hosts without systemd"},
    {"config", "Validate and show the server configuration"},
    {"token", "Create, list and revoke API tokens"},
    {"wasm", "Check and run WebAssembly modules with Caxton's engine (offline)"},
    {"help", "Show help for a group or command"},
    {"completion", "Print a shell completion script"},
};

#define SERVICE_TIMEOUT_MS 30000u

static const cli_command commands[] = {
    {"serve", NULL, cmd_serve, NULL, 0, 0, serve_flags, 0, 0,
     "Run the server in the foreground until SIGTERM or SIGINT",
     "Exit codes: 0 clean stop, 1 runtime failure, 2 configuration error."},
    {"status", NULL, cmd_status, NULL, 0, 0, status_flags, 0, 0,
     "Show the server's status, components and counts (GET /api/v1/status)",
     "Exits 1 when the status is not ok, or with --production-check when a check warns\n"
     "or fails."},
    {"health-check", NULL, cmd_health_check, NULL, 0, 0, health_flags, 0, SERVICE_TIMEOUT_MS,
     "Check the server: alive (default), every component, or wait until ready",
     "Without flags: GET /health, prints \"healthy\". --comprehensive: GET /health/deep\n"
     "and a table of components. --wait-ready: polls /health/deep every 200ms until it\n"
     "answers 200. Both flags combine."},
    {"service", "start", cmd_service_start, NULL, 0, 0, service_start_flags, CLI_CMD_OFFLINE,
     SERVICE_TIMEOUT_MS, "Start the server in the background and wait until it is ready",
     "Runs 'caxton serve' detached with the given --config, --data-dir, --log-dir and\n"
     "--listen, and waits up to --timeout for it to serve. If it fails to start, prints\n"
     "what it said and exits with its code (2 configuration error, 1 runtime)."},
    {"service", "stop", cmd_service_stop, NULL, 0, 0, service_stop_flags, CLI_CMD_OFFLINE,
     SERVICE_TIMEOUT_MS, "Stop the background server (SIGTERM) and wait until it has exited",
     "Waits up to --timeout; exits 1 if the server is still running then."},
    {"service", "restart", cmd_service_restart, NULL, 0, 0, service_restart_flags,
     CLI_CMD_OFFLINE, SERVICE_TIMEOUT_MS, "Stop the server if it runs, then start it", NULL},
    {"service", "status", cmd_service_status, NULL, 0, 0, service_status_flags, CLI_CMD_OFFLINE,
     SERVICE_TIMEOUT_MS, "Say whether the server runs (exit 0) or not (exit 3)", NULL},
    {"config", "validate", cmd_config_validate, "FILE", 1, 1, NULL,
     CLI_CMD_OFFLINE | CLI_CMD_ARGS_FILES, 0, "Check a config file without a server",
     "Prints each error and warning; exits 0 when valid (warnings allowed), 1 when not."},
    {"config", "show", cmd_config_show, NULL, 0, 0, config_show_flags, 0, 0,
     "Show the effective configuration and where each value comes from",
     "Asks the running server (GET /api/v1/config/effective, admin); --offline computes\n"
     "it from --config, --data-dir and the CAXTON_* environment instead."},
    {"token", "create", cmd_token_create, NULL, 0, 0, token_create_flags, 0, 0,
     "Create an API token (it is shown once)", NULL},
    {"token", "list", cmd_token_list, NULL, 0, 0, server_flags, 0, 0, "List API tokens", NULL},
    {"token", "revoke", cmd_token_revoke, "ID|NAME", 1, 1, server_flags, 0, 0,
     "Revoke a token by id (tok_...) or by name", NULL},
    {"wasm", "validate", cmd_wasm_validate, "MODULE", 1, 1, wasm_validate_flags,
     CLI_CMD_OFFLINE | CLI_CMD_ARGS_FILES, 0, "Decode, validate and compile a module file",
     "Exits 0 when valid, 1 when malformed or invalid (the message names the section,\n"
     "byte offset and rule). --comprehensive also instantiates it once when it has no\n"
     "imports."},
    {"wasm", "analyze-requirements", cmd_wasm_analyze_requirements, "MODULE", 1, 1, NULL,
     CLI_CMD_OFFLINE | CLI_CMD_ARGS_FILES, 0,
     "What a module needs: memory, imports, features, sizes, fuel",
     "The fuel estimate is a dry run when the module imports nothing: handle_message with\n"
     "an empty message (its buffer from alloc when exported), else run(), else the start\n"
     "function, under the relaxed policy's fuel and memory and a 1s deadline. Exits 0\n"
     "when the module is valid (a trap in the dry run is reported, not an error), 1 when\n"
     "it cannot be read or is malformed or invalid."},
    {"wasm", "compatibility-check", cmd_wasm_compatibility_check, "MODULE", 1, 1,
     wasm_compatibility_flags, CLI_CMD_OFFLINE | CLI_CMD_ARGS_FILES, 0,
     "Check a module against the engine and each policy",
     "Compares the features the module uses, its imports (names and types) and its initial\n"
     "memory with what each policy allows. Exits 0 when at least one policy can run it,\n"
     "1 when none can (SIMD, an import the host lacks, too much memory...) or the file is\n"
     "not a valid module."},
    {"wasm", "diff", cmd_wasm_diff, "A.wasm B.wasm", 2, 2, NULL,
     CLI_CMD_OFFLINE | CLI_CMD_ARGS_FILES, 0,
     "Compare two modules: imports, exports, sizes, limits",
     "A report: exits 0 whenever both modules are valid, whatever differs; 1 when either\n"
     "cannot be read or is malformed or invalid."},
    {"wasm", "run", cmd_wasm_run, "MODULE [ARGS...]", 1, CLI_MAX_ARGS, wasm_run_flags,
     CLI_CMD_OFFLINE, 5000, "Call one exported function and print its results and fuel used",
     "Arguments are typed by the function's parameters (i32/i64 decimal or 0x hex, f32/f64\n"
     "as decimals). --timeout is the wall-clock deadline (default 5s). Exits 1 on a trap\n"
     "(fuel exhausted, deadline exceeded, out of bounds...), printed with its function\n"
     "and code offset. Modules that import anything are refused."},
    {"help", NULL, cmd_help, "[GROUP [COMMAND]]", 0, 2, NULL, 0, 0,
     "Show help for a group or command", NULL},
    {"completion", NULL, cmd_completion, "SHELL", 1, 1, NULL, 0, 0,
     "Print a completion script for SHELL (bash)",
     "Load it with: source <(caxton completion bash)"},
};

const cli_table cli_builtin_table = {
    groups, sizeof groups / sizeof groups[0], commands, sizeof commands / sizeof commands[0],
};

/* ---- Entry point ---------------------------------------------------------------------------- */

/* `caxton --version`: "caxton 0.1.0", or {"version":"0.1.0"} with --output json. */
static int print_version(const cli_invocation *inv)
{
    if (inv->output != CLI_OUTPUT_JSON) {
        printf("caxton %s\n", CAXTON_VERSION);
        return CLI_EXIT_OK;
    }
    json_t *doc = json_pack("{s:s}", "version", CAXTON_VERSION);
    if (!doc) {
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    output_json(stdout, doc);
    json_decref(doc);
    return CLI_EXIT_OK;
}

int cli_main(int argc, char **argv)
{
    const cli_table *table = &cli_builtin_table;
    cli_invocation inv;
    cx_error err;
    int rc;

    switch (cli_parse(table, argc, argv, environ, time_now_ms(), &inv, &err)) {
    case CLI_PARSE_HELP:
        cli_print_help(stdout, table, inv.group, inv.command);
        rc = CLI_EXIT_OK;
        break;
    case CLI_PARSE_VERSION:
        rc = print_version(&inv);
        break;
    case CLI_PARSE_ERROR:
        if (argc <= 1) {
            cli_print_help(stderr, table, NULL, NULL);
        } else {
            fprintf(stderr, "caxton: %s\n", err.msg);
            strbuf usage;
            strbuf_init(&usage);
            if (inv.error_shows_usage && inv.command && cli_usage_line(inv.command, &usage) == 0)
                fprintf(stderr, "usage: %s\n", usage.data);
            strbuf_free(&usage);
        }
        rc = CLI_EXIT_USAGE;
        break;
    case CLI_PARSE_RUN:
    default:
        rc = inv.command->handler(&inv);
        break;
    }
    fflush(stdout);
    client_global_cleanup();
    return rc;
}
