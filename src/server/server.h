/* The server process: `caxton serve`.
 *
 * Owns start-up (config, data dir, lock, databases, logs), the libuv event
 * loop thread, the HTTP API started on top of it, signals (SIGTERM/SIGINT
 * graceful stop, SIGHUP reopen logs + reload config) and systemd readiness. */
#ifndef CAXTON_SERVER_SERVER_H
#define CAXTON_SERVER_SERVER_H

#include "core/config.h"

/* Process exit codes of `caxton serve`. */
enum { SERVER_EXIT_OK = 0, SERVER_EXIT_RUNTIME = 1, SERVER_EXIT_CONFIG = 2 };

/* Environment variable naming a file descriptor to which the server writes
 * "READY <url>\n" once it serves (used by `caxton service start`). When set,
 * the server also stops writing to stderr after that line. */
#define SERVER_READY_FD_ENV "CAXTON_READY_FD"

/* Runs the server in the foreground until stopped; returns the exit code.
 * Errors before the logs are open are printed to stderr as one line. */
int server_main(const config_flags *flags);

/* Data dir layout, shared with offline commands and the client. */
#define DATADIR_RUN "run"
#define DATADIR_PID_FILE "run/caxton.pid"
#define DATADIR_LOCK_FILE "run/caxton.lock"
#define DATADIR_URL_FILE "run/api.url"     /* the URL the server listens on */
#define DATADIR_ADMIN_TOKEN "tokens/admin.token"
#define DATADIR_STATE_DB "data/state.db"

#endif
