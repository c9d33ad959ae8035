/* JSON-lines logging to three files plus optional human lines on stderr.
 *
 * A single mutex serialises writers: events are rare compared to requests
 * (per-request lines are debug level), so contention does not matter, and
 * one write(2) per line keeps lines whole even if another process appends.
 * Files are opened O_APPEND so logrotate's copytruncate also works; SIGHUP
 * makes the server call log_reopen() for the move-and-reopen style. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"

static const char *const stream_files[] = {"caxton.log", "agents.log", "audit.log"};
#define STREAM_COUNT (sizeof stream_files / sizeof stream_files[0])

static struct {
    pthread_mutex_t lock;
    char *dir;
    int fds[STREAM_COUNT];
    log_level level;
    bool to_stderr;
} logger = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .fds = {-1, -1, -1},
    .level = LOG_INFO,
    .to_stderr = true,
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *log_level_name(log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "info";
}

int log_parse_level(const char *name, log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    if (strcmp(name, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return CX_EINVAL;
}

static int open_streams(const char *dir, int fds[STREAM_COUNT], cx_error *err)
{
    for (size_t i = 0; i < STREAM_COUNT; i++) {
        char *path = path_join(dir, stream_files[i]);
        if (!path)
            return cx_error_set(err, CX_ENOMEM, "out of memory");
        fds[i] = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fds[i] < 0) {
            int e = errno;
            cx_error_set(err, CX_EIO, "cannot open log file %s: %s (check that the log dir "
                         "exists and is writable by this user, or set --log-dir)", path, strerror(e));
            free(path);
            for (size_t j = 0; j < i; j++)
                close(fds[j]);
            return CX_EIO;
        }
        free(path);
    }
    return 0;
}

int log_open(const char *dir, cx_error *err)
{
    int fds[STREAM_COUNT];
    if (dir) {
        int rc = fs_mkdir_p(dir, 0750, err);
        if (rc < 0)
            return rc;
        rc = open_streams(dir, fds, err);
        if (rc < 0)
            return rc;
    }
    pthread_mutex_lock(&logger.lock);
    for (size_t i = 0; i < STREAM_COUNT; i++) {
        if (logger.fds[i] >= 0)
            close(logger.fds[i]);
        logger.fds[i] = dir ? fds[i] : -1;
    }
    free(logger.dir);
    logger.dir = str_dup(dir);
    pthread_mutex_unlock(&logger.lock);
    return 0;
}

int log_reopen(cx_error *err)
{
    pthread_mutex_lock(&logger.lock);
    char *dir = str_dup(logger.dir);
    pthread_mutex_unlock(&logger.lock);
    if (!dir)
        return 0;
    int rc = log_open(dir, err);
    free(dir);
    return rc;
}

void log_close(void)
{
    pthread_mutex_lock(&logger.lock);
    for (size_t i = 0; i < STREAM_COUNT; i++) {
        if (logger.fds[i] >= 0)
            close(logger.fds[i]);
        logger.fds[i] = -1;
    }
    free(logger.dir);
    logger.dir = NULL;
    pthread_mutex_unlock(&logger.lock);
}

void log_set_level(log_level level) { __atomic_store_n(&logger.level, level, __ATOMIC_RELAXED); }
log_level log_get_level(void) { return __atomic_load_n(&logger.level, __ATOMIC_RELAXED); }
void log_set_stderr(bool enabled) { __atomic_store_n(&logger.to_stderr, enabled, __ATOMIC_RELAXED); }

/* "18:28:40.123 WARN  [http] message key=value ..." */
static void format_human(strbuf *sb, const char *ts, log_level level, const char *component,
                         const char *msg, json_t *fields)
{
    static const char *const upper[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    strbuf_appendf(sb, "%.12s %s [%s] %s", ts + 11, upper[level], component, msg);
    const char *key;
    json_t *value;
    json_object_foreach(fields, key, value) {
        if (json_is_string(value)) {
            strbuf_appendf(sb, " %s=%s", key, json_string_value(value));
        } else {
            char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
            if (text)
                strbuf_appendf(sb, " %s=%s", key, text);
            free(text);
        }
    }
    strbuf_append(sb, "\n", 1);
}

void log_event(log_stream stream, log_level level, const char *component, json_t *fields,
               const char *fmt, ...)
{
    if (stream != LOG_STREAM_AUDIT && level < log_get_level()) {
        json_decref(fields);
        return;
    }
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    text_make_utf8(msg); /* paths and client input need not be UTF-8 */

    char ts[40];
    time_format_rfc3339(time_now_ms(), ts, sizeof ts);
    json_t *line = json_object();
    if (!line) {
        json_decref(fields);
        return;
    }
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(line, "level", json_string(log_level_name(level)));
    json_object_set_new(line, "component", json_string(component));
    json_object_set_new(line, "msg", json_string(msg));
    if (fields)
        json_object_update_missing(line, fields);

    strbuf human;
    strbuf_init(&human);
    bool to_stderr = __atomic_load_n(&logger.to_stderr, __ATOMIC_RELAXED);
    if (to_stderr)
        format_human(&human, ts, level, component, msg, fields);
    json_decref(fields);
    char *text = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
    json_decref(line);
    size_t len = text ? strlen(text) : 0;
    char *with_nl = text ? realloc(text, len + 2) : NULL;
    if (with_nl) {
        text = with_nl;
        text[len++] = '\n';
        text[len] = '\0';
    }

    /* A full disk must not take the server down with it: write errors are
     * dropped here and show up as a failing log_dir component. */
    pthread_mutex_lock(&logger.lock);
    if (with_nl && logger.fds[stream] >= 0)
        (void)fs_write_all(logger.fds[stream], text, len);
    if (to_stderr && human.len)
        (void)fs_write_all(STDERR_FILENO, human.data, human.len);
    pthread_mutex_unlock(&logger.lock);
    free(text);
    strbuf_free(&human);
}
