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

/* Agents, conversations, messages, capabilities. */
static const char *const agent_state_choices[] = {"loading", "active", "suspended", "reloading",
                                                  "draining", "stopped", "failed", NULL};
static const char *const conversation_state_choices[] = {"active", "completed", "timed-out",
                                                         "cancelled", NULL};
static const char *const level_choices[] = {"debug", "info", "warn", "error", NULL};
static const char *const performative_choices[] = {
    "request", "inform", "query-if", "query-ref", "propose", "accept-proposal",
    "reject-proposal", "agree", "refuse", "failure", "not-understood", "cfp", "cancel",
    "subscribe", "confirm", "disconfirm", NULL};

static const cli_flag flag_agent_state = {"state", CLI_CHOICE, "STATE", agent_state_choices, false,
                                          "Only agents in this state"};
static const cli_flag flag_status_detailed = {
    "detailed", CLI_SWITCH, NULL, NULL, false,
    "With NAME: also the definition, instances, versions and the last reload's problems"};
static const cli_flag flag_error_states_only = {
    "error-states-only", CLI_SWITCH, NULL, NULL, false,
    "Only agents that failed, are reloading or draining, are suspended with messages queued, "
    "or whose last reload failed"};
static const cli_flag flag_critical_only = {"critical-only", CLI_SWITCH, NULL, NULL, false,
                                            "Only agents whose health is critical"};
static const cli_flag flag_level = {"level", CLI_CHOICE, "LEVEL", level_choices, false,
                                    "Only lines at this level or more severe"};
static const cli_flag flag_logs_limit = {"limit", CLI_TEXT, "N", NULL, false,
                                         "The last N lines (default 100, at most 10000)"};
static const cli_flag flag_instances = {
    "instances", CLI_TEXT, "+N|-N|N", NULL, true,
    "Add (+1), remove (-1) or set (3) instances; an agent runs 1 to 64"};
static const cli_flag flag_force = {"force", CLI_SWITCH, NULL, NULL, false,
                                    "Reload now even if the file has not changed"};
static const cli_flag flag_fallback_on_error = {
    "fallback-on-error", CLI_SWITCH, NULL, NULL, false,
    "If the file is invalid, keep running the last good version (exit 1 with the errors)"};
static const cli_flag flag_validate_detailed = {"detailed", CLI_SWITCH, NULL, NULL, false,
                                                "Also print the parsed definition of valid files"};
static const cli_flag flag_fix_suggestions = {
    "fix-suggestions", CLI_SWITCH, NULL, NULL, false,
    "Print the corrected file when the fixes are mechanical (tabs, a misspelt key, a missing "
    "---, a value out of range)"};
static const cli_flag flag_failed_only = {"failed-only", CLI_SWITCH, NULL, NULL, false,
                                          "Print only the files that have errors"};
static const cli_flag flag_requeue_to = {
    "requeue-to", CLI_TEXT, "AGENT", NULL, false,
    "Hand the queued messages to this agent (one with the same capability) instead of "
    "dead-lettering them"};
static const cli_flag flag_agent = {"agent", CLI_TEXT, "NAME", NULL, false,
                                    "Only those of this agent"};
static const cli_flag flag_conversation_state = {"state", CLI_CHOICE, "STATE",
                                                 conversation_state_choices, false,
                                                 "Only conversations in this state"};
static const cli_flag flag_conversations_limit = {"limit", CLI_TEXT, "N", NULL, false,
                                                  "At most N conversations (default 50)"};
static const cli_flag flag_requeue = {"requeue", CLI_TEXT, "ID", NULL, false,
                                      "Deliver this dead letter again"};
static const cli_flag flag_purge = {"purge", CLI_TEXT, "ID", NULL, false,
                                    "Delete this dead letter"};
static const cli_flag flag_to = {"to", CLI_TEXT, "AGENT", NULL, false, "The agent to send to"};
static const cli_flag flag_capability = {"capability", CLI_TEXT, "CAP", NULL, false,
                                         "Send to an active agent that provides this capability"};
static const cli_flag flag_content = {"content", CLI_TEXT, "TEXT", NULL, true,
                                      "The content: text, or JSON with --json-content"};
static const cli_flag flag_json_content = {"json-content", CLI_SWITCH, NULL, NULL, false,
                                           "Send --content as a JSON value instead of a string"};
static const cli_flag flag_performative = {"performative", CLI_CHOICE, "P",
                                           performative_choices, false,
                                           "The FIPA performative (default request)"};
static const cli_flag flag_conversation = {"conversation", CLI_TEXT, "ID", NULL, false,
                                           "Continue this conversation"};
static const cli_flag flag_in_reply_to = {"in-reply-to", CLI_TEXT, "ID", NULL, false,
                                          "Answer the message whose reply_with is ID"};
static const cli_flag flag_wait = {"wait", CLI_DURATION, NULL, NULL, false,
                                   "Wait this long for the first reply and print it (10s)"};
static const cli_flag flag_audit_limit = {"limit", CLI_TEXT, "N", NULL, false,
                                          "At most N entries, newest first (default 200)"};

static const cli_flag *const agents_list_flags[] = {&flag_agent_state, &flag_cacert, NULL};
static const cli_flag *const agents_status_flags[] = {&flag_status_detailed,
                                                      &flag_error_states_only, &flag_cacert, NULL};
static const cli_flag *const agents_health_flags[] = {&flag_critical_only, &flag_cacert, NULL};
static const cli_flag *const agents_logs_flags[] = {&flag_level, &flag_logs_limit, &flag_cacert,
                                                    NULL};
static const cli_flag *const agents_scale_flags[] = {&flag_instances, &flag_cacert, NULL};
static const cli_flag *const agents_reload_flags[] = {&flag_force, &flag_fallback_on_error,
                                                      &flag_cacert, NULL};
static const cli_flag *const agents_validate_flags[] = {&flag_validate_detailed,
                                                        &flag_fix_suggestions, NULL};
static const cli_flag *const agents_validate_all_flags[] = {&flag_failed_only, NULL};
static const cli_flag *const drain_queue_flags[] = {&flag_requeue_to, &flag_cacert, NULL};
static const cli_flag *const conversations_list_flags[] = {
    &flag_agent, &flag_conversation_state, &flag_conversations_limit, &flag_cacert, NULL};
static const cli_flag *const dead_letters_flags[] = {&flag_agent, &flag_requeue, &flag_purge,
                                                     &flag_cacert, NULL};
static const cli_flag *const messages_send_flags[] = {
    &flag_to, &flag_capability, &flag_content, &flag_json_content, &flag_performative,
    &flag_conversation, &flag_in_reply_to, &flag_wait, &flag_cacert, NULL};
static const cli_flag *const audit_log_flags[] = {&flag_audit_limit, &flag_cacert, NULL};
static const cli_flag flag_basic_functions = {"basic-functions", CLI_SWITCH, NULL, NULL, false,
                                              "Probe each agent with one message (the default "
                                              "and only test)"};
static const cli_flag flag_slow_only = {"slow-only", CLI_SWITCH, NULL, NULL, false,
                                        "Only agents whose p99 latency is 5 s or more"};
static const cli_flag *const test_all_flags[] = {&flag_basic_functions, &flag_cacert, NULL};
static const cli_flag *const performance_flags[] = {&flag_slow_only, &flag_cacert, NULL};
static const cli_flag flag_tools_agent = {"agent", CLI_TEXT, "NAME", NULL, false,
                                          "Only the tool servers this agent uses, and its tools"};
static const cli_flag flag_tools_server = {"tool-server", CLI_TEXT, "NAME", NULL, false,
                                           "Only this tool server (a name in tools.mcp_servers)"};
static const cli_flag *const tools_status_flags[] = {&flag_tools_agent, &flag_cacert, NULL};
static const cli_flag *const tools_reconnect_flags[] = {&flag_tools_agent, &flag_tools_server,
                                                        &flag_cacert, NULL};

/* Memory: the guide's operations (POST /api/v1/memory/{op}, or offline on the
 * files) and the entity commands. */
static const char *const merge_choices[] = {"skip", "update", "error", NULL};
static const char *const search_mode_choices[] = {"hybrid", "vector", "text", NULL};

static const cli_flag flag_mem_embedded = {
    "embedded", CLI_SWITCH, NULL, NULL, false,
    "Accepted for compatibility: the memory system is always embedded"};
static const cli_flag flag_mem_offline = {
    "offline", CLI_SWITCH, NULL, NULL, false,
    "Work on the files in the data dir even if a server could be asked (not while one runs, "
    "for the operations that replace the files)"};
static const cli_flag flag_mem_agent = {"agent", CLI_TEXT, "NAME", NULL, false,
                                        "Only this agent's memory (as this agent sees it)"};
static const cli_flag flag_health_quick = {"quick", CLI_SWITCH, NULL, NULL, false,
                                           "Only the fast checks (no full integrity scan)"};
static const cli_flag flag_integrity_full = {"full", CLI_SWITCH, NULL, NULL, false,
                                             "Check every page, index and the vector index"};
static const cli_flag flag_integrity_quick = {"quick", CLI_SWITCH, NULL, NULL, false,
                                              "Check the database structure only (faster)"};
static const cli_flag flag_export_report = {
    "export-report", CLI_SWITCH, NULL, NULL, false,
    "Also write the report to a file: FILE, or one beside the database"};
static const cli_flag flag_from_wal = {"from-wal", CLI_SWITCH, NULL, NULL, false,
                                       "Recover by replaying the write-ahead log"};
static const cli_flag flag_backup_first = {"backup-first", CLI_SWITCH, NULL, NULL, false,
                                           "Copy the damaged files aside before recovering"};
static const cli_flag flag_recover_from_backup = {"from-backup", CLI_SWITCH, NULL, NULL, false,
                                                  "Recover from the newest good backup"};
static const cli_flag flag_verify = {"verify", CLI_SWITCH, NULL, NULL, false,
                                     "Check the recovered database's integrity afterwards"};
static const cli_flag flag_restore_from_backup = {
    "from-backup", CLI_SWITCH, NULL, NULL, true,
    "Restore from a backup: 'latest' or a backup file"};
static const cli_flag flag_verify_integrity = {
    "verify-integrity", CLI_SWITCH, NULL, NULL, false,
    "Check the backup's checksum and integrity before swapping it in"};
static const cli_flag flag_backup_label = {"label", CLI_TEXT, "LABEL", NULL, false,
                                           "A label recorded with the backup"};
static const cli_flag flag_export_json = {"json", CLI_SWITCH, NULL, NULL, true,
                                          "Export as JSON to FILE (relative to here)"};
static const cli_flag flag_json_output = {"json", CLI_SWITCH, NULL, NULL, false,
                                          "Print the answer as JSON (as --output json does)"};
static const cli_flag flag_import_validate = {"validate", CLI_SWITCH, NULL, NULL, false,
                                              "Check the whole file before importing anything "
                                              "(always done; accepted as the guide writes it)"};
static const cli_flag flag_import_dry_run = {"dry-run", CLI_SWITCH, NULL, NULL, false,
                                             "Only check the file; write nothing"};
static const cli_flag flag_import_merge = {
    "merge", CLI_CHOICE, "skip|update|error", merge_choices, false,
    "What to do with entities that exist already (default error: nothing is written)"};
static const cli_flag flag_reinit_empty = {"empty", CLI_SWITCH, NULL, NULL, true,
                                           "Start from an empty memory database"};
static const cli_flag flag_yes = {"yes", CLI_SWITCH, NULL, NULL, false,
                                  "Do not ask for confirmation"};
static const cli_flag flag_reindex_full = {"full", CLI_SWITCH, NULL, NULL, false,
                                           "Rebuild the text and vector indexes from scratch"};
static const cli_flag flag_scope_aware = {"scope-aware", CLI_SWITCH, NULL, NULL, false,
                                          "Rebuild scope by scope"};
static const cli_flag flag_reindex_optimize = {"optimize", CLI_SWITCH, NULL, NULL, false,
                                               "Optimize the indexes afterwards"};
static const cli_flag flag_vacuum = {"vacuum", CLI_SWITCH, NULL, NULL, false,
                                     "Rewrite the database file to reclaim free pages"};
static const cli_flag flag_compact = {"compact", CLI_SWITCH, NULL, NULL, false,
                                      "Checkpoint and truncate the write-ahead log"};
static const cli_flag flag_scope_conflicts = {
    "scope-conflicts", CLI_SWITCH, NULL, NULL, false,
    "List entity names present in more than one scope the agent sees (nothing is deleted)"};
static const cli_flag flag_indexes = {"indexes", CLI_SWITCH, NULL, NULL, true,
                                      "Optimize the text and vector indexes"};
static const cli_flag flag_background = {
    "background", CLI_SWITCH, NULL, NULL, false,
    "Run as a server job and print its id ('caxton memory job ID')"};
static const cli_flag flag_auto_compact = {"auto-compact", CLI_SWITCH, NULL, NULL, true,
                                           "Compact when the log or free pages grow too large"};
static const cli_flag flag_by_scope = {"by-scope", CLI_SWITCH, NULL, NULL, false,
                                       "A row per scope"};
static const cli_flag flag_usage_detailed = {"detailed", CLI_SWITCH, NULL, NULL, false,
                                             "Also entity types and sizes"};
static const cli_flag flag_breakdown = {"breakdown", CLI_SWITCH, NULL, NULL, false,
                                        "Split by database, indexes, log and cache"};
static const cli_flag flag_all_agents = {"all-agents", CLI_SWITCH, NULL, NULL, false,
                                         "Every agent instead of one"};
static const cli_flag flag_reset_scope = {"scope", CLI_TEXT, "agent|workspace|global", NULL,
                                          true, "The scope to reset the agent's access to"};
static const cli_flag flag_workspace = {"workspace", CLI_TEXT, "NAME", NULL, false,
                                        "The workspace (with --scope workspace)"};
static const cli_flag flag_perf_detailed = {"detailed", CLI_SWITCH, NULL, NULL, false,
                                            "Also per-operation latency percentiles"};
static const cli_flag flag_threshold = {"threshold", CLI_DURATION, NULL, NULL, false,
                                        "Queries slower than this (default from the server)"};
static const cli_flag flag_optimize_suggestions = {"optimize-suggestions", CLI_SWITCH, NULL,
                                                   NULL, false, "Suggest what to change"};
static const cli_flag flag_fragmentation = {"fragmentation", CLI_SWITCH, NULL, NULL, false,
                                            "Measure free pages and fragmentation per index"};
static const cli_flag flag_cache_size = {"size", CLI_TEXT, "SIZE|+SIZE|-SIZE", NULL, true,
                                         "The new cache size, or a change (+512MB)"};
static const cli_flag flag_search_scope = {"scope", CLI_TEXT, "SCOPE", NULL, false,
                                           "Only this scope: global, agent:NAME, workspace:NAME"};
static const cli_flag flag_search_limit = {"limit", CLI_TEXT, "N", NULL, false,
                                           "At most N results, 1 to 100 (default 10)"};
static const cli_flag flag_types = {"types", CLI_TEXT, "A,B", NULL, false,
                                    "Only entities of these types"};
static const cli_flag flag_min_score = {"min-score", CLI_TEXT, "X", NULL, false,
                                        "Only results scoring at least X"};
static const cli_flag flag_depth = {"depth", CLI_TEXT, "D", NULL, false,
                                    "Follow relations this many steps (0 to 5)"};
static const cli_flag flag_search_mode = {"mode", CLI_CHOICE, "hybrid|vector|text",
                                          search_mode_choices, false,
                                          "How to match (default hybrid)"};
static const cli_flag flag_history = {"history", CLI_SWITCH, NULL, NULL, false,
                                      "Also the entity's change history"};
static const cli_flag flag_store_scope = {"scope", CLI_TEXT, "SCOPE", NULL, true,
                                          "global, agent:NAME or workspace:NAME"};
static const cli_flag flag_entity_name = {"name", CLI_TEXT, "NAME", NULL, true,
                                          "The entity's name"};
static const cli_flag flag_entity_type = {"type", CLI_TEXT, "TYPE", NULL, false,
                                          "The entity's type (person, project...)"};
static const cli_flag flag_observation = {"observation", CLI_TEXT, "TEXT", NULL, false,
                                          "An observation to add (repeat for more)"};
static const cli_flag flag_confidence = {"confidence", CLI_TEXT, "X", NULL, false,
                                         "Confidence from 0 to 1"};
static const cli_flag flag_from = {"from", CLI_TEXT, "NAME", NULL, true,
                                   "The entity the relation starts at"};
static const cli_flag flag_relation_to = {"to", CLI_TEXT, "NAME", NULL, true,
                                          "The entity the relation points to"};
static const cli_flag flag_relation_type = {"type", CLI_TEXT, "TYPE", NULL, true,
                                            "The relation's type (works_on, depends_on...)"};
static const cli_flag flag_strength = {"strength", CLI_TEXT, "X", NULL, false,
                                       "Strength from 0 to 1 (default 1)"};

static const cli_flag *const mem_health_flags[] = {
    &flag_mem_embedded, &flag_health_quick, &flag_mem_offline, &flag_json_output, &flag_cacert,
    NULL};
static const cli_flag *const mem_integrity_flags[] = {
    &flag_integrity_full, &flag_integrity_quick, &flag_mem_offline, &flag_json_output, &flag_cacert,
    NULL};
static const cli_flag *const mem_embedded_flags[] = {&flag_mem_embedded, &flag_mem_offline,
                                                     &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_corruption_flags[] = {&flag_export_report, &flag_mem_offline,
                                                       &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_recover_flags[] = {
    &flag_from_wal, &flag_backup_first, &flag_recover_from_backup, &flag_verify, &flag_mem_offline,
    &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_restore_flags[] = {
    &flag_restore_from_backup, &flag_verify_integrity, &flag_mem_offline, &flag_json_output,
    &flag_cacert, NULL};
static const cli_flag *const mem_offline_flags[] = {&flag_mem_offline, &flag_json_output,
                                                    &flag_cacert, NULL};
static const cli_flag *const mem_backup_flags[] = {&flag_backup_label, &flag_mem_offline,
                                                   &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_export_flags[] = {&flag_export_json, &flag_mem_offline,
                                                   &flag_cacert, NULL};
static const cli_flag *const mem_import_flags[] = {
    &flag_import_validate, &flag_import_dry_run, &flag_import_merge, &flag_mem_offline, &flag_json_output, &flag_cacert,
    NULL};
static const cli_flag *const mem_reinit_flags[] = {&flag_reinit_empty, &flag_yes, &flag_mem_offline,
                                                   &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_reindex_flags[] = {
    &flag_reindex_full, &flag_mem_agent, &flag_scope_aware, &flag_reindex_optimize,
    &flag_mem_embedded, &flag_mem_offline, &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_cleanup_flags[] = {
    &flag_vacuum, &flag_compact, &flag_scope_conflicts, &flag_mem_agent, &flag_mem_embedded,
    &flag_mem_offline, &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_optimize_flags[] = {
    &flag_indexes, &flag_background, &flag_mem_offline, &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_maintenance_flags[] = {
    &flag_auto_compact, &flag_background, &flag_mem_offline, &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_usage_flags[] = {
    &flag_by_scope, &flag_usage_detailed, &flag_mem_offline, &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_resource_flags[] = {
    &flag_mem_embedded, &flag_breakdown, &flag_mem_offline, &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_scope_status_flags[] = {&flag_all_agents, &flag_mem_offline,
                                                         &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_violations_flags[] = {&flag_mem_agent, &flag_mem_offline,
                                                       &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_scope_reset_flags[] = {
    &flag_reset_scope, &flag_workspace, &flag_mem_offline, &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_perf_flags[] = {&flag_perf_detailed, &flag_mem_offline,
                                                 &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_slow_flags[] = {&flag_threshold, &flag_mem_offline,
                                                 &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_analyze_flags[] = {&flag_optimize_suggestions, &flag_mem_offline,
                                                    &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_index_flags[] = {&flag_fragmentation, &flag_mem_offline,
                                                  &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_cache_flags[] = {
    &flag_cache_size, &flag_mem_embedded, &flag_mem_offline, &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_search_flags[] = {
    &flag_search_scope, &flag_search_limit, &flag_types, &flag_min_score, &flag_depth,
    &flag_search_mode, &flag_mem_agent, &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_show_flags[] = {&flag_history, &flag_mem_agent, &flag_json_output,
                                                 &flag_cacert, NULL};
static const cli_flag *const mem_store_flags[] = {
    &flag_store_scope, &flag_entity_name, &flag_entity_type, &flag_observation, &flag_confidence,
    &flag_mem_agent, &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_relate_flags[] = {
    &flag_store_scope, &flag_from, &flag_relation_to, &flag_relation_type, &flag_strength,
    &flag_mem_agent, &flag_json_output, &flag_cacert, NULL};
static const cli_flag *const mem_entity_flags[] = {&flag_mem_agent, &flag_json_output, &flag_cacert,
                                                   NULL};
static const cli_flag *const mem_graph_flags[] = {&flag_depth, &flag_mem_agent, &flag_json_output,
                                                  &flag_cacert, NULL};
static const cli_flag *const mem_job_flags[] = {&flag_json_output, &flag_cacert, NULL};

/* ---- The table ------------------------------------------------------------------------------ */

static const cli_group groups[] = {
    {"serve", "Run the server in the foreground (what systemd runs)"},
    {"status", "Show the server's status, components and counts"},
    {"health-check", "Check that the server is alive, healthy or ready"},
    {"service", "Manage a background server on hosts without systemd"},
    {"agents", "Agents: status, lifecycle, logs, scaling, reloads and definition files"},
    {"conversations", "Agent queues, conversations and dead letters"},
    {"messages", "Send FIPA-ACL messages to agents"},
    {"capabilities", "Capabilities, their providers and conflicts"},
    {"tools", "MCP tool servers: status, reconnection and connectivity tests"},
    {"memory", "Agent memory: health, recovery, backups, maintenance, scopes and entities"},
    {"config", "Validate and show the server configuration and its audit log"},
    {"token", "Create, list and revoke API tokens"},
    {"wasm", "Check and run WebAssembly modules with Caxton's engine (offline)"},
    {"help", "Show help for a group or command"},
    {"completion", "Print a shell completion script"},
};

#define SERVICE_TIMEOUT_MS 30000u
#define LOAD_TIMEOUT_MS 30000u
#define TEST_TOOLS_TIMEOUT_MS 30000u
#define MEMORY_TIMEOUT_MS 60000u
#define MEMORY_LONG_TIMEOUT_MS 600000u /* backups, recovery, reindexing: the whole database */
#define MEMORY_OFFLINE_NOTE                                                                        \
    "Asks the server (POST /api/v1/memory/{op}); when none runs, an operation that can work\n"   \
    "on the files does so in the data dir (memory.path, memory.backups.dir). --offline\n"        \
    "forces that; the operations that replace the files refuse it while a server runs."
#define TEST_ALL_TIMEOUT_MS 30000u /* per agent probe */ /* the server starts a fresh child per tool server */ /* the server validates and loads a definition first */

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
    {"config", "audit-log", cmd_config_audit_log, NULL, 0, 0, audit_log_flags, CLI_CMD_WINDOW, 0,
     "Show recorded changes: agents, reloads, scaling, drains, config, tokens",
     "Newest first (GET /api/v1/config/audit-log). Example: caxton config audit-log --last-1h"},
    {"agents", "list", cmd_agents_list, NULL, 0, 0, agents_list_flags, 0, 0,
     "List agents with their version, state, queue and capabilities", NULL},
    {"agents", "status", cmd_agents_status, "[NAME]", 0, 1, agents_status_flags, 0, 0,
     "Show the state of every agent, or of one",
     "Without NAME: a table of all agents and why any is in an error state (failed,\n"
     "reloading, draining, suspended with messages queued, last reload failed). With NAME:\n"
     "its state, queue, message and LLM counts, reload status and last error; --detailed\n"
     "adds its definition, instances, versions and the last reload's problems. Exits 1\n"
     "when an agent it shows is in an error state."},
    {"agents", "test-all", cmd_agents_test_all, NULL, 0, 0, test_all_flags, 0,
     TEST_ALL_TIMEOUT_MS, "Send every active agent a probe message and check it answers",
     "Each agent gets a query-ref through the router and must answer with inform within\n"
     "--timeout (default 30s): for configuration agents a real provider round trip. Agents\n"
     "that are not active are listed as skipped. Exits 1 if any tested agent fails."},
    {"agents", "performance-summary", cmd_agents_performance_summary, NULL, 0, 0,
     performance_flags, 0, 0, "Latency, LLM and tool time and tokens per agent",
     "Latency is over each agent's last 256 messages; counts are since the server started."},
    {"agents", "health-summary", cmd_agents_health_summary, NULL, 0, 0, agents_health_flags, 0, 0,
     "Summarize agents' health (what monitoring polls at /agents/health-summary)",
     "Exits 1 when the summary's status is not ok (degraded or critical)."},
    {"agents", "suspend", cmd_agents_suspend, "NAME", 1, 1, server_flags, 0, 0,
     "Stop an agent taking messages; they queue until it is resumed", NULL},
    {"agents", "resume", cmd_agents_resume, "NAME", 1, 1, server_flags, 0, 0,
     "Let a suspended agent take messages again, queued ones first", NULL},
    {"agents", "logs", cmd_agents_logs, "NAME", 1, 1, agents_logs_flags, CLI_CMD_WINDOW, 0,
     "Show an agent's recent log lines (from agents.log)",
     "Oldest first, the last --limit lines of the window. Example:\n"
     "caxton agents logs invoice-checker --level error --last-10min"},
    {"agents", "scale", cmd_agents_scale, "NAME", 1, 1, agents_scale_flags, 0, 0,
     "Change how many instances share an agent's queue",
     "Scaling down lets the removed instances finish their message first."},
    {"agents", "reload", cmd_agents_reload, "NAME", 1, 1, agents_reload_flags, 0, LOAD_TIMEOUT_MS,
     "Read an agent's definition file again and swap to it if valid",
     "In-flight messages finish on the old version. If the file is invalid its errors are\n"
     "printed as file:line:column with hints, the last good version keeps running and the\n"
     "command exits 1."},
    {"agents", "reload-status", cmd_agents_reload_status, "NAME", 1, 1, server_flags, 0, 0,
     "Show an agent's last reload attempts and their problems",
     "Newest first: time, trigger, result, versions, duration. Exits 1 when the last\n"
     "attempt failed or was rolled back."},
    {"agents", "deploy", cmd_agents_deploy, "FILE", 1, 1, server_flags, CLI_CMD_ARGS_FILES,
     LOAD_TIMEOUT_MS, "Add an agent from a definition file",
     "The server validates the file and writes it to its agents dir. An invalid file is\n"
     "refused with its problems (exit 1); an existing agent is replaced with 'caxton\n"
     "agents update FILE'."},
    {"agents", "update", cmd_agents_update, "FILE", 1, 1, server_flags, CLI_CMD_ARGS_FILES,
     LOAD_TIMEOUT_MS, "Replace an agent's definition with a file (the agent named in it)", NULL},
    {"agents", "remove", cmd_agents_remove, "NAME", 1, 1, server_flags, 0, 0,
     "Stop an agent and delete its definition file",
     "Messages still queued for it are answered with a failure (reason agent-removed)."},
    {"agents", "validate", cmd_agents_validate, "FILE...", 1, CLI_MAX_ARGS, agents_validate_flags,
     CLI_CMD_OFFLINE | CLI_CMD_ARGS_FILES, 0, "Check agent definition files",
     "Checks what the server checks at load time: readable, frontmatter, YAML, required\n"
     "fields, types and ranges, providers (from the config's llm.providers), modules,\n"
     "template variables. Problems print as file:line:column: error|warning: field:\n"
     "message, with a hint where a fix is likely; tools the server would know are only\n"
     "warnings offline. Exits 1 when a file has errors."},
    {"agents", "validate-all", cmd_agents_validate_all, NULL, 0, 0, agents_validate_all_flags,
     CLI_CMD_OFFLINE, 0, "Check every definition in the agents dir",
     "The agents dir is agents.dir in the config (default <data_dir>/agents); every *.md\n"
     "file in it (not in subdirectories, hidden files skipped) is checked as by 'agents\n"
     "validate', and agent names must be unique across the files. Exits 1 when a file has\n"
     "errors."},
    {"agents", "reconnect-memory", cmd_agents_reconnect_memory, "NAME", 1, 1, mem_job_flags, 0,
     0, "Reopen an agent's connection to the memory store",
     "For an agent whose memory calls fail ('caxton memory connection-test NAME'). Exits 1\n"
     "when it still cannot reach its memory."},
    {"conversations", "queue-status", cmd_conversations_queue_status, "NAME", 1, 1, server_flags,
     0, 0, "Show an agent's queue: depth, oldest message, rates, instances",
     "Exits 1 when the queue is full (new messages are refused)."},
    {"conversations", "drain-queue", cmd_conversations_drain_queue, "NAME", 1, 1,
     drain_queue_flags, 0, LOAD_TIMEOUT_MS, "Empty an agent's queue",
     "Queued messages go to the dead letters and each sender gets a failure (reason\n"
     "drained), or with --requeue-to they go to another agent; then the agent accepts\n"
     "messages again."},
    {"conversations", "list", cmd_conversations_list, NULL, 0, 0, conversations_list_flags, 0, 0,
     "List conversations, most recent first", NULL},
    {"conversations", "show", cmd_conversations_show, "ID", 1, 1, server_flags, 0, 0,
     "Show a conversation and its messages", NULL},
    {"conversations", "dead-letters", cmd_conversations_dead_letters, NULL, 0, 0,
     dead_letters_flags, 0, 0, "List messages that failed for good; requeue or purge one", NULL},
    {"messages", "send", cmd_messages_send, NULL, 0, 0, messages_send_flags, 0, 0,
     "Send a message to an agent or to a capability",
     "Give exactly one of --to and --capability. Without --wait, prints the message and\n"
     "conversation ids; with --wait, prints the reply's content, and exits 1 when the reply\n"
     "is a failure, refuse or not-understood, or when none came in time (the message is\n"
     "then still in flight)."},
    {"capabilities", "list", cmd_capabilities_list, NULL, 0, 0, server_flags, 0, 0,
     "List capabilities and the agents that provide them", NULL},
    {"capabilities", "check-conflicts", cmd_capabilities_check_conflicts, "NAME", 1, 1,
     server_flags, 0, 0, "Check an agent's capabilities against the other agents",
     "Shows who else provides the same capabilities, version clashes, requirements nobody\n"
     "provides (with similar names) and agents that would lose their only provider if this\n"
     "one stopped. Exits 1 on a version clash or an unmet requirement."},
    {"tools", "status", cmd_tools_status, NULL, 0, 0, tools_status_flags, 0, 0,
     "Show the MCP tool servers: state, tools, calls, errors",
     "With --agent, also the tools that agent may use and whether each is reachable now.\n"
     "Exits 1 when a server shown is not ready or one of the agent's tools is unreachable."},
    {"tools", "reconnect", cmd_tools_reconnect, NULL, 0, 0, tools_reconnect_flags, 0, 0,
     "Restart MCP tool servers and list their tools again",
     "All servers, those an agent uses (--agent), or one (--tool-server NAME). The global\n"
     "--server is the Caxton server's URL, not a tool server."},
    {"tools", "test-connectivity", cmd_tools_test_connectivity, NULL, 0, 0, tools_status_flags,
     0, TEST_TOOLS_TIMEOUT_MS, "Run an initialize + tools/list round trip per tool server",
     "Each server is tested on a fresh connection, with timings. Exits 1 if any fails."},
    {"memory", "health-check", cmd_memory_op, "[AGENT]", 0, 1, mem_health_flags, 0,
     MEMORY_TIMEOUT_MS, "Check the memory database, its indexes and backups",
     "With AGENT, also that agent's access to its scopes. Exits 1 when a check fails.\n"
     MEMORY_OFFLINE_NOTE},
    {"memory", "integrity-check", cmd_memory_op, NULL, 0, 0, mem_integrity_flags, 0,
     MEMORY_LONG_TIMEOUT_MS, "Check the database's integrity (--full or --quick)",
     "Exits 1 when it finds damage; 'caxton memory corruption-analysis' says more.\n"
     MEMORY_OFFLINE_NOTE},
    {"memory", "wal-status", cmd_memory_op, NULL, 0, 0, mem_embedded_flags, 0, MEMORY_TIMEOUT_MS,
     "Show the write-ahead log: size, frames, last checkpoint", MEMORY_OFFLINE_NOTE},
    {"memory", "corruption-analysis", cmd_memory_op, "[FILE]", 0, 1, mem_corruption_flags,
     CLI_CMD_ARGS_FILES, MEMORY_LONG_TIMEOUT_MS,
     "Find damaged pages, tables and indexes and what can be saved",
     "With --export-report the report is also written to FILE (relative to here), or\n"
     "beside the database when no FILE is given. Exits 1 when damage is found.\n"
     MEMORY_OFFLINE_NOTE},
    {"memory", "recover", cmd_memory_op, NULL, 0, 0, mem_recover_flags, 0, MEMORY_LONG_TIMEOUT_MS,
     "Repair the database: --from-wal [--backup-first] or --from-backup [--verify]",
     "The server quiesces memory while the files are replaced.\n" MEMORY_OFFLINE_NOTE},
    {"memory", "restore", cmd_memory_op, "latest|FILE", 1, 1, mem_restore_flags,
     CLI_CMD_ARGS_FILES, MEMORY_LONG_TIMEOUT_MS, "Replace the database with a backup",
     "'latest' is the newest backup in the backups dir. Example:\n"
     "caxton memory restore --from-backup latest --verify-integrity\n" MEMORY_OFFLINE_NOTE},
    {"memory", "emergency-backup", cmd_memory_op, NULL, 0, 0, mem_offline_flags, 0,
     MEMORY_LONG_TIMEOUT_MS, "Copy the database files as they are, even if damaged",
     MEMORY_OFFLINE_NOTE},
    {"memory", "backup", cmd_memory_op, NULL, 0, 0, mem_backup_flags, 0, MEMORY_LONG_TIMEOUT_MS,
     "Take a consistent backup (with a checksum) into the backups dir",
     "Older backups beyond memory.backups.keep are deleted.\n" MEMORY_OFFLINE_NOTE},
    {"memory", "export", cmd_memory_op, "FILE", 1, 1, mem_export_flags, CLI_CMD_ARGS_FILES,
     MEMORY_LONG_TIMEOUT_MS, "Write every entity, observation and relation to a JSON file",
     "Example: caxton memory export --json memory-export.json\n" MEMORY_OFFLINE_NOTE},
    {"memory", "import", cmd_memory_op, "FILE", 1, 1, mem_import_flags, CLI_CMD_ARGS_FILES,
     MEMORY_LONG_TIMEOUT_MS, "Load entities and relations from an exported JSON file",
     MEMORY_OFFLINE_NOTE},
    {"memory", "reinitialize", cmd_memory_op, NULL, 0, 0, mem_reinit_flags, 0,
     MEMORY_LONG_TIMEOUT_MS, "Start over with an empty memory database",
     "Asks for confirmation unless --yes is given.\n" MEMORY_OFFLINE_NOTE},
    {"memory", "reindex", cmd_memory_op, NULL, 0, 0, mem_reindex_flags, 0, MEMORY_LONG_TIMEOUT_MS,
     "Rebuild the text and vector indexes", MEMORY_OFFLINE_NOTE},
    {"memory", "cleanup", cmd_memory_op, NULL, 0, 0, mem_cleanup_flags, 0, MEMORY_LONG_TIMEOUT_MS,
     "Reclaim space: --vacuum, --compact, --scope-conflicts", MEMORY_OFFLINE_NOTE},
    {"memory", "optimize", cmd_memory_op, NULL, 0, 0, mem_optimize_flags, 0,
     MEMORY_LONG_TIMEOUT_MS, "Optimize the indexes", MEMORY_OFFLINE_NOTE},
    {"memory", "maintenance", cmd_memory_op, NULL, 0, 0, mem_maintenance_flags, 0,
     MEMORY_LONG_TIMEOUT_MS, "Compact the database and log when they have grown",
     MEMORY_OFFLINE_NOTE},
    {"memory", "usage", cmd_memory_op, NULL, 0, 0, mem_usage_flags, 0, MEMORY_TIMEOUT_MS,
     "Entities, observations, relations and bytes, in total or per scope", MEMORY_OFFLINE_NOTE},
    {"memory", "resource-usage", cmd_memory_op, NULL, 0, 0, mem_resource_flags, 0,
     MEMORY_TIMEOUT_MS, "Disk and memory used by the database, indexes and cache",
     MEMORY_OFFLINE_NOTE},
    {"memory", "scope-status", cmd_memory_op, "[AGENT]", 0, 1, mem_scope_status_flags, 0,
     MEMORY_TIMEOUT_MS, "Which scopes an agent (or --all-agents) can read and write",
     MEMORY_OFFLINE_NOTE},
    {"memory", "permissions-check", cmd_memory_op, "AGENT", 1, 1, mem_offline_flags, 0,
     MEMORY_TIMEOUT_MS, "Check an agent's memory settings against its scopes",
     "Exits 1 when the agent's memory configuration is inconsistent.\n" MEMORY_OFFLINE_NOTE},
    {"memory", "violations", cmd_memory_op, NULL, 0, 0, mem_violations_flags, CLI_CMD_WINDOW,
     MEMORY_TIMEOUT_MS, "List refused memory accesses (scope violations)",
     "Example: caxton memory violations --last-24h --agent invoice-checker\n"
     MEMORY_OFFLINE_NOTE},
    {"memory", "scope-reset", cmd_memory_op, "AGENT", 1, 1, mem_scope_reset_flags, 0,
     MEMORY_TIMEOUT_MS, "Reset an agent's memory scope to agent, workspace or global",
     MEMORY_OFFLINE_NOTE},
    {"memory", "performance-metrics", cmd_memory_op, NULL, 0, 0, mem_perf_flags, CLI_CMD_WINDOW,
     MEMORY_TIMEOUT_MS, "Memory operation counts and latencies",
     "Example: caxton memory performance-metrics --detailed --last-1h\n" MEMORY_OFFLINE_NOTE},
    {"memory", "slow-queries", cmd_memory_op, NULL, 0, 0, mem_slow_flags, 0, MEMORY_TIMEOUT_MS,
     "Recent memory queries slower than --threshold", MEMORY_OFFLINE_NOTE},
    {"memory", "analyze-queries", cmd_memory_op, NULL, 0, 0, mem_analyze_flags, 0,
     MEMORY_TIMEOUT_MS, "Which query shapes cost the most time", MEMORY_OFFLINE_NOTE},
    {"memory", "index-analysis", cmd_memory_op, NULL, 0, 0, mem_index_flags, 0,
     MEMORY_LONG_TIMEOUT_MS, "Sizes and health of the text and vector indexes",
     MEMORY_OFFLINE_NOTE},
    {"memory", "adjust-cache", cmd_memory_op, NULL, 0, 0, mem_cache_flags, 0, MEMORY_TIMEOUT_MS,
     "Change the memory cache size of the running server",
     "Example: caxton memory adjust-cache --size +512MB. Lasts until the server restarts;\n"
     "set memory.cache_size to keep it.\n" MEMORY_OFFLINE_NOTE},
    {"memory", "connection-test", cmd_memory_op, "AGENT", 1, 1, mem_offline_flags, 0,
     MEMORY_TIMEOUT_MS, "Check that an agent can reach its memory: a read round trip",
     "Exits 1 when it cannot; 'caxton agents reconnect-memory AGENT' reconnects it.\n"
     MEMORY_OFFLINE_NOTE},
    {"memory", "search", cmd_memory_search, "QUERY", 1, 1, mem_search_flags, 0, 0,
     "Search entities by meaning and text, ranked", NULL},
    {"memory", "show", cmd_memory_show, "SCOPE NAME", 2, 2, mem_show_flags, 0, 0,
     "Show an entity, its observations and optionally its history", NULL},
    {"memory", "store", cmd_memory_store, NULL, 0, 0, mem_store_flags, 0, 0,
     "Create an entity or add observations to it",
     "Example: caxton memory store --scope global --name acme --type company\n"
     "  --observation 'pays invoices in 30 days' --observation 'based in Lyon'"},
    {"memory", "relate", cmd_memory_relate, NULL, 0, 0, mem_relate_flags, 0, 0,
     "Relate two entities of a scope", NULL},
    {"memory", "delete", cmd_memory_delete, "SCOPE NAME", 2, 2, mem_entity_flags, 0, 0,
     "Delete an entity with its observations and relations", NULL},
    {"memory", "graph", cmd_memory_graph, "SCOPE NAME", 2, 2, mem_graph_flags, 0, 0,
     "Show the entities related to one, up to --depth steps", NULL},
    {"memory", "job", cmd_memory_job, "ID", 1, 1, mem_job_flags, 0, 0,
     "Show a background memory job's state and result",
     "Exits 1 when the job failed or its result is not ok."},
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
