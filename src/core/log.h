/* JSON-lines logs: caxton.log (server events), agents.log (agent events),
 * audit.log (every change, who/what/when). One object per line with `ts`,
 * `level`, `component`, `msg` and fields. In the foreground a human line goes
 * to stderr as well. Thread-safe: HTTP threads and the loop both log.
 * Secrets never reach a log: callers pass no tokens or keys. */
#ifndef CAXTON_CORE_LOG_H
#define CAXTON_CORE_LOG_H

#include <jansson.h>
#include <stdbool.h>

#include "core/error.h"

typedef enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;
typedef enum log_stream { LOG_STREAM_SERVER, LOG_STREAM_AGENTS, LOG_STREAM_AUDIT } log_stream;

/* Opens (creating with 0640) the three files in dir. Before log_open, and
 * when dir is NULL, events go to stderr only. */
int log_open(const char *dir, cx_error *err);
/* Reopens the files by name (after logrotate moved them). */
int log_reopen(cx_error *err);
void log_close(void);
void log_set_level(log_level level);
log_level log_get_level(void);
/* Human-readable copies on stderr (the foreground server). */
void log_set_stderr(bool enabled);
int log_parse_level(const char *name, log_level *out);
const char *log_level_name(log_level level);

/* Writes one event. fields (may be NULL) is stolen; it is merged into the
 * line. Events below the level are dropped (audit events never are). */
void log_event(log_stream stream, log_level level, const char *component, json_t *fields,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define log_debug(component, ...) log_event(LOG_STREAM_SERVER, LOG_DEBUG, component, NULL, __VA_ARGS__)
#define log_info(component, ...) log_event(LOG_STREAM_SERVER, LOG_INFO, component, NULL, __VA_ARGS__)
#define log_warn(component, ...) log_event(LOG_STREAM_SERVER, LOG_WARN, component, NULL, __VA_ARGS__)
#define log_error(component, ...) log_event(LOG_STREAM_SERVER, LOG_ERROR, component, NULL, __VA_ARGS__)

#endif
