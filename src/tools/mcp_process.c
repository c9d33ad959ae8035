/* The stdio transport of an MCP server: one child process, its three pipes,
 * and the line framing of newline-delimited JSON-RPC.
 *
 * The child is spawned with uv_spawn (argv[0] looked up through PATH, the
 * environment being a few of Caxton's variables (PATH, HOME, LANG, ...) plus
 * the server's `env`) in a session of its
 * own, so stopping it reaches wrappers such as npx and what they start:
 * SIGTERM to the process group, SIGKILL after MCP_KILL_GRACE_MS. Its stdout
 * is cut into lines no longer than max_result + MCP_LINE_SLACK bytes (a
 * longer one ends the connection: nothing in it could be trusted or
 * matched); its stderr goes to caxton.log line by line, at most
 * STDERR_LINES_PER_SECOND lines a second so a chatty server cannot flood it.
 *
 * The end of a connection is reported once: when the process has exited
 * and its stdout has ended (either waits DRAIN_MS for the other, so the
 * last lines written before exiting are read and the exit status is named),
 * or when a read fails.
 * After mcp_child_stop the owner hears nothing more; the child lives on
 * until the process has exited and every handle has closed. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "tools/mcp.h"
#include "tools/mcp_internal.h"

#define READ_CHUNK (64u * 1024u)
#define STDERR_LINE_MAX 2048u          /* longer stderr lines are cut */
#define STDERR_LINES_PER_SECOND 50u
#define DRAIN_MS 200u                  /* an exit and stdout's end wait this for each other */
#define WRITE_QUEUE_MAX (64u * 1024u * 1024u) /* bytes waiting for the child's stdin */
#define LINE_KEEP_MAX (1024u * 1024u)  /* a line buffer larger than this is given back */
#define CHILD_HANDLES 5                /* process, three pipes, timer */

extern char **environ;

struct mcp_child {
    const mcp_child_events *ev; /* NULL once stopped */
    void *owner;
    void (*closed)(void *ctx);
    void *ctx;
    char name[MCP_NAME_MAX + 1];
    uv_process_t proc;
    uv_pipe_t in, out, err;
    uv_timer_t timer; /* stdout's drain after exit, then the kill grace */
    unsigned open;    /* handles whose close callback has not run */
    bool spawned, exited, out_done, reported;
    int pid;
    int64_t exit_status;
    int term_signal;
    size_t line_max;
    strbuf line;
    char err_line[STDERR_LINE_MAX + 1];
    size_t err_len;
    bool err_cut;
    uint64_t err_window_ms;
    unsigned err_lines, err_dropped;
    char out_buf[READ_CHUNK];
    char err_buf[READ_CHUNK];
};

typedef struct write_req {
    uv_write_t req;
    mcp_child *child;
    char data[];
} write_req;

static uint64_t now_ms(void) { return time_monotonic_ns() / 1000000u; }

static json_t *child_fields(const mcp_child *c)
{
    return json_pack("{s:s, s:i}", "server", c->name, "pid", c->pid);
}

/* ---- Closing --------------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *handle)
{
    mcp_child *c = handle->data;
    if (--c->open > 0)
        return;
    void (*closed)(void *) = c->closed;
    void *ctx = c->ctx;
    strbuf_free(&c->line);
    free(c);
    closed(ctx);
}

static void handle_close(void *handle)
{
    if (!uv_is_closing(handle))
        uv_close(handle, on_handle_closed);
}

static void child_close_all(mcp_child *c)
{
    uv_timer_stop(&c->timer);
    handle_close(&c->in);
    handle_close(&c->out);
    handle_close(&c->err);
    handle_close(&c->timer);
    handle_close(&c->proc);
}

/* The child leads its own process group (UV_PROCESS_DETACHED): the signal
 * goes to the whole group, so what a wrapper such as npx started stops too,
 * even after the leader itself has exited (a group id is not reused while
 * any member lives). */
static void child_signal(mcp_child *c, int sig)
{
    if (c->pid <= 0)
        return;
    if (kill(-c->pid, sig) != 0 && !c->exited)
        uv_process_kill(&c->proc, sig);
}

static void on_kill_grace(uv_timer_t *timer)
{
    mcp_child *c = timer->data;
    log_event(LOG_STREAM_SERVER, LOG_WARN, "mcp", child_fields(c),
              "MCP server '%s' (pid %d) did not stop within %u ms of SIGTERM; sending SIGKILL",
              c->name, c->pid, MCP_KILL_GRACE_MS);
    child_signal(c, SIGKILL);
}

void mcp_child_stop(mcp_child *c)
{
    if (!c || !c->ev)
        return;
    c->ev = NULL;
    c->owner = NULL;
    uv_timer_stop(&c->timer);
    if (!c->spawned)
        return; /* every handle is closing already */
    uv_read_stop((uv_stream_t *)&c->out);
    handle_close(&c->in); /* EOF on its stdin: the polite way to ask it to stop */
    handle_close(&c->out);
    if (c->exited) {
        /* the leader is gone; what it left in its group must not outlive it */
        child_signal(c, SIGKILL);
        child_close_all(c);
        return;
    }
    child_signal(c, SIGTERM);
    uv_timer_start(&c->timer, on_kill_grace, MCP_KILL_GRACE_MS, 0);
}

/* ---- Reporting the end ----------------------------------------------------------------------- */

static void child_gone(mcp_child *c, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void child_gone(mcp_child *c, const char *reason, const char *fmt, ...)
{
    if (!c->ev || c->reported)
        return;
    c->reported = true;
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    c->ev->gone(c->owner, reason, detail);
}

static void exit_describe(const mcp_child *c, char *out, size_t size)
{
    if (c->term_signal) {
        const char *abbrev = sigabbrev_np(c->term_signal);
        snprintf(out, size, "was killed by signal %d%s%s", c->term_signal, abbrev ? " SIG" : "",
                 abbrev ? abbrev : "");
    } else {
        snprintf(out, size, "exited with status %lld", (long long)c->exit_status);
    }
}

static void report_exit(mcp_child *c)
{
    char how[64];
    exit_describe(c, how, sizeof how);
    child_gone(c, MCP_REASON_SERVER_DIED, "the server process %s", how);
}

/* One side ended and the other did not follow within DRAIN_MS. */
static void on_drain_end(uv_timer_t *timer)
{
    mcp_child *c = timer->data;
    if (c->exited)
        report_exit(c);
    else
        child_gone(c, MCP_REASON_SERVER_DIED, "the server closed its standard output");
}

static void on_process_exit(uv_process_t *proc, int64_t status, int term_signal)
{
    mcp_child *c = proc->data;
    c->exited = true;
    c->exit_status = status;
    c->term_signal = term_signal;
    if (!c->ev) {
        child_close_all(c);
        return;
    }
    if (c->out_done) {
        uv_timer_stop(&c->timer);
        report_exit(c);
    } else {
        uv_timer_start(&c->timer, on_drain_end, DRAIN_MS, 0);
    }
}

/* ---- Reading --------------------------------------------------------------------------------- */

static void on_alloc_out(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    mcp_child *c = handle->data;
    *buf = uv_buf_init(c->out_buf, sizeof c->out_buf);
}

static void on_alloc_err(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    mcp_child *c = handle->data;
    *buf = uv_buf_init(c->err_buf, sizeof c->err_buf);
}

static void line_reset(mcp_child *c)
{
    if (c->line.cap > LINE_KEEP_MAX) {
        strbuf_free(&c->line);
    } else if (c->line.cap) {
        c->line.len = 0;
        c->line.data[0] = '\0';
    }
}

/* Feeds stdout bytes; stops early when the owner stops the child. */
static void feed_lines(mcp_child *c, const char *p, size_t n)
{
    const char *end = p + n;
    while (p < end && c->ev) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = (size_t)((nl ? nl : end) - p);
        if (take > c->line_max - c->line.len) {
            child_gone(c, MCP_REASON_TOO_BIG, "the server sent a line longer than %zu bytes",
                       c->line_max);
            return;
        }
        if (strbuf_append(&c->line, p, take) != 0) {
            child_gone(c, MCP_REASON_SERVER_DIED, "out of memory reading the server's output");
            return;
        }
        if (!nl)
            return;
        p = nl + 1;
        size_t len = c->line.len;
        if (len > 0 && c->line.data[len - 1] == '\r')
            c->line.data[--len] = '\0';
        if (len > 0)
            c->ev->line(c->owner, c->line.data, len);
        line_reset(c);
    }
}

static void on_out_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    mcp_child *c = stream->data;
    if (n > 0) {
        feed_lines(c, buf->base, (size_t)n);
        return;
    }
    if (n == 0)
        return;
    uv_read_stop(stream);
    c->out_done = true;
    if (c->exited) {
        uv_timer_stop(&c->timer);
        report_exit(c);
    } else if (n == UV_EOF) {
        if (c->ev) /* the exit status usually follows: wait a moment for it */
            uv_timer_start(&c->timer, on_drain_end, DRAIN_MS, 0);
    } else {
        child_gone(c, MCP_REASON_SERVER_DIED, "reading the server's output failed: %s",
                   uv_strerror((int)n));
    }
}

static void stderr_emit(mcp_child *c)
{
    uint64_t now = now_ms();
    if (now - c->err_window_ms >= 1000) {
        if (c->err_dropped)
            log_event(LOG_STREAM_SERVER, LOG_WARN, "mcp", child_fields(c),
                      "%u lines of the MCP server's stderr were not logged (over %u a second)",
                      c->err_dropped, STDERR_LINES_PER_SECOND);
        c->err_window_ms = now;
        c->err_lines = 0;
        c->err_dropped = 0;
    }
    if (c->err_lines >= STDERR_LINES_PER_SECOND) {
        c->err_dropped++;
        return;
    }
    c->err_lines++;
    c->err_line[c->err_len] = '\0';
    text_make_utf8(c->err_line);
    log_event(LOG_STREAM_SERVER, LOG_INFO, "mcp", child_fields(c), "%s%s", c->err_line,
              c->err_cut ? " [cut]" : "");
}

static void on_err_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    mcp_child *c = stream->data;
    if (n < 0) {
        uv_read_stop(stream);
        if (c->err_len > 0)
            stderr_emit(c);
        c->err_len = 0;
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        char ch = buf->base[i];
        if (ch == '\n') {
            if (c->err_len > 0 && c->err_line[c->err_len - 1] == '\r')
                c->err_len--;
            if (c->err_len > 0)
                stderr_emit(c);
            c->err_len = 0;
            c->err_cut = false;
        } else if (c->err_len < STDERR_LINE_MAX) {
            c->err_line[c->err_len++] = ch;
        } else {
            c->err_cut = true;
        }
    }
}

/* ---- Writing --------------------------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
    write_req *w = req->data;
    mcp_child *c = w->child;
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        child_gone(c, MCP_REASON_SERVER_DIED, "writing to the server's input failed: %s",
                   uv_strerror(status));
}

int mcp_child_send(mcp_child *c, const char *data, size_t len, cx_error *err)
{
    if (!c->ev || uv_is_closing((uv_handle_t *)&c->in))
        return cx_error_set(err, CX_EUNAVAIL, "the MCP server '%s' is not connected", c->name);
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->in) > WRITE_QUEUE_MAX)
        return cx_error_set(err, CX_ELIMIT, "the MCP server '%s' is not reading its input "
                            "(over %u MB waiting)", c->name, WRITE_QUEUE_MAX / (1024 * 1024));
    write_req *w = malloc(sizeof *w + len);
    if (!w)
        return cx_error_set(err, CX_ENOMEM, "out of memory writing to the MCP server '%s'",
                            c->name);
    memcpy(w->data, data, len);
    w->child = c;
    w->req.data = w;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->in, &buf, 1, on_written);
    if (rc != 0) {
        free(w);
        return cx_error_set(err, CX_EIO, "cannot write to the MCP server '%s': %s", c->name,
                            uv_strerror(rc));
    }
    return 0;
}

int mcp_child_pid(const mcp_child *c) { return c ? c->pid : 0; }

/* ---- Starting -------------------------------------------------------------------------------- */

/* What a tool server inherits from Caxton's environment: enough to find
 * programs and behave normally, nothing more. Secrets such as the
 * providers' API keys (often ${OPENAI_API_KEY} in the config) stay with
 * Caxton; a server that needs a variable gets it through its `env`. */
static bool inherited(const char *entry)
{
    static const char *const names[] = {"PATH=", "HOME=", "USER=", "LOGNAME=", "LANG=",
                                        "LANGUAGE=", "TZ=", "TMPDIR=", "SHELL=", "TERM=",
                                        "NODE_PATH=", "NODE_EXTRA_CA_CERTS="};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strncmp(entry, names[i], strlen(names[i])) == 0)
            return true;
    return strncmp(entry, "LC_", 3) == 0;
}

/* The inherited part of Caxton's environment without the names the server
 * sets, then the server's own: a NULL-terminated array of borrowed strings
 * (free() it). */
static char **environment_for(const mcp_server_config *cfg)
{
    size_t own = 0, extra = 0;
    while (environ && environ[own])
        own++;
    while (cfg->env[extra])
        extra++;
    char **envp = calloc(own + extra + 1, sizeof *envp);
    if (!envp)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < own; i++) {
        if (!inherited(environ[i]))
            continue;
        const char *eq = strchr(environ[i], '=');
        bool replaced = false;
        for (size_t j = 0; eq && j < extra && !replaced; j++)
            replaced = strncmp(cfg->env[j], environ[i], (size_t)(eq - environ[i]) + 1) == 0;
        if (!replaced)
            envp[n++] = environ[i];
    }
    for (size_t j = 0; j < extra; j++)
        envp[n++] = cfg->env[j];
    return envp;
}

static int spawn_failed(mcp_child *c, const mcp_server_config *cfg, int rc, cx_error *err)
{
    char program[96];
    text_quote(cfg->argv[0], program, sizeof program);
    int code;
    if (rc == UV_ENOENT)
        code = cx_error_set(err, CX_ENOTFOUND, "cannot start MCP server '%s': %s was not found "
                            "(install it, put it on PATH or give its full path in command[0])%s",
                            c->name, program, cfg->cwd ? ", or its cwd does not exist" : "");
    else if (rc == UV_EACCES)
        code = cx_error_set(err, CX_EFORBIDDEN, "cannot start MCP server '%s': permission "
                            "denied running %s%s", c->name, program,
                            cfg->cwd ? " or entering its cwd" : "");
    else
        code = cx_error_set(err, CX_EIO, "cannot start MCP server '%s' (%s): %s", c->name,
                            program, uv_strerror(rc));
    child_close_all(c);
    return code;
}

int mcp_child_start(uv_loop_t *loop, const mcp_server_config *cfg, const mcp_child_events *ev,
                    void *owner, void (*closed)(void *ctx), void *ctx, mcp_child **out,
                    cx_error *err)
{
    *out = NULL;
    mcp_child *c = calloc(1, sizeof *c);
    char **envp = environment_for(cfg);
    if (!c || !envp) {
        free(c);
        free(envp);
        closed(ctx);
        return cx_error_set(err, CX_ENOMEM, "out of memory starting MCP server '%s'", cfg->name);
    }
    c->ev = ev;
    c->owner = owner;
    c->closed = closed;
    c->ctx = ctx;
    snprintf(c->name, sizeof c->name, "%s", cfg->name);
    c->line_max = (size_t)cfg->max_result + MCP_LINE_SLACK;
    strbuf_init(&c->line);
    uv_pipe_init(loop, &c->in, 0);
    uv_pipe_init(loop, &c->out, 0);
    uv_pipe_init(loop, &c->err, 0);
    uv_timer_init(loop, &c->timer);
    c->in.data = c->out.data = c->err.data = c->timer.data = c->proc.data = c;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&c->in},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->out},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->err},
    };
    uv_process_options_t options = {
        .exit_cb = on_process_exit,
        .file = cfg->argv[0],
        .args = cfg->argv,
        .env = envp,
        .cwd = cfg->cwd,
        .flags = UV_PROCESS_DETACHED,
        .stdio_count = 3,
        .stdio = stdio,
    };
    int rc = uv_spawn(loop, &c->proc, &options);
    free(envp);
    c->open = CHILD_HANDLES;
    c->proc.data = c;
    if (rc != 0)
        return spawn_failed(c, cfg, rc, err);
    c->spawned = true;
    c->pid = c->proc.pid;
    c->err_window_ms = now_ms();
    if ((rc = uv_read_start((uv_stream_t *)&c->out, on_alloc_out, on_out_read)) != 0 ||
        (rc = uv_read_start((uv_stream_t *)&c->err, on_alloc_err, on_err_read)) != 0) {
        mcp_child_stop(c);
        return cx_error_set(err, CX_EIO, "cannot read from MCP server '%s': %s", cfg->name,
                            uv_strerror(rc));
    }
    *out = c;
    return 0;
}
