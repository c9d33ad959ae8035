/* `caxton service start|stop|restart|status`: a background server for hosts
 * without systemd.
 *
 * The server holds an exclusive flock() on <data_dir>/run/caxton.lock (whose
 * content is its pid) for as long as it runs, so "is it running" is "is that
 * lock held": no stale-pid guessing. Probing takes a shared lock without
 * waiting and drops it at once. start runs our own binary (/proc/self/exe) as
 * `caxton serve` in a new session, with stdout and stderr on a pipe and
 * CAXTON_READY_FD naming a second pipe; the server writes "READY <url>" there
 * once it serves. Until then we keep what it prints, so a failed start shows
 * the server's own error and exits with its code. stop sends SIGTERM and
 * waits for the lock to be released (the kernel releases it when the process
 * is gone). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/units.h"
#include "core/util.h"
#include "server/server.h"

#define SERVICE_POLL_MS 100u
#define SERVICE_KILL_AFTER_MS 5000u  /* --emergency: SIGKILL this long after SIGTERM */
#define SERVICE_KILL_GRACE_MS 10000u /* how long to wait after SIGKILL at least */
#define SERVICE_CAPTURE_MAX (64 * 1024)
#define SERVICE_READY_LINE_MAX 1024

typedef struct service_ctx {
    const cli_invocation *inv;
    cx_config *cfg;     /* NULL when the config failed but --data-dir was given */
    const char *data_dir;
    char *lock_path;
    char *pid_path;
    json_t *report;     /* what --output json prints */
} service_ctx;

typedef struct service_state {
    bool running;
    pid_t pid; /* 0 when unknown */
} service_state;

/* Prints a line for people (not in JSON mode). */
__attribute__((format(printf, 2, 3))) static void say(const service_ctx *ctx, const char *fmt, ...)
{
    if (ctx->inv->output == CLI_OUTPUT_JSON)
        return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
}

static uint64_t now_ms(void)
{
    return time_monotonic_ns() / 1000000u;
}

/* ---- Context -------------------------------------------------------------------------------- */

static int service_open(const cli_invocation *inv, service_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->inv = inv;
    config_flags flags = {.log_dir = cli_flag_value(inv, "log-dir"),
                          .listen = cli_flag_value(inv, "listen")};
    config_diag diag = {0};
    cx_error err;
    cx_error_clear(&err);
    if (cli_config_load(inv, &flags, &ctx->cfg, &diag, &err) == 0) {
        ctx->data_dir = ctx->cfg->data_dir;
    } else {
        /* The data dir is all we need to find the lock; a given one is enough to go on
         * (a server we start reports the config errors itself). */
        ctx->cfg = NULL;
        ctx->data_dir = inv->data_dir ? inv->data_dir : env_lookup(inv->envp, "CAXTON_DATA_DIR");
        if (!ctx->data_dir || !ctx->data_dir[0]) {
            cli_print_config_errors(&diag, &err);
            config_diag_free(&diag);
            return CLI_EXIT_USAGE;
        }
    }
    config_diag_free(&diag);
    ctx->lock_path = path_join(ctx->data_dir, DATADIR_LOCK_FILE);
    ctx->pid_path = path_join(ctx->data_dir, DATADIR_PID_FILE);
    ctx->report = json_object();
    if (!ctx->lock_path || !ctx->pid_path || !ctx->report) {
        fprintf(stderr, "caxton: out of memory\n");
        return CLI_EXIT_PROBLEM;
    }
    return CLI_EXIT_OK;
}

static int service_close(service_ctx *ctx, int rc)
{
    if (ctx->report && ctx->inv->output == CLI_OUTPUT_JSON && rc != CLI_EXIT_USAGE)
        output_json(stdout, ctx->report);
    json_decref(ctx->report);
    config_free(ctx->cfg);
    free(ctx->lock_path);
    free(ctx->pid_path);
    return rc;
}

/* ---- Probing -------------------------------------------------------------------------------- */

static pid_t parse_pid(const char *text)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || (*end && *end != '\n') || v <= 1 || v > 0x3fffffff)
        return 0;
    return (pid_t)v;
}

static pid_t read_pid_fd(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return parse_pid(buf);
}

static pid_t read_pid_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return 0;
    pid_t pid = read_pid_fd(fd);
    close(fd);
    return pid;
}

static int service_probe(const service_ctx *ctx, service_state *st, cx_error *err)
{
    memset(st, 0, sizeof *st);
    int fd = open(ctx->lock_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return 0;
        return cx_error_set(err, e == EACCES ? CX_EFORBIDDEN : CX_EIO, "cannot open %s: %s%s",
                            ctx->lock_path, strerror(e),
                            e == EACCES ? " (run as the user that runs caxton, or root)" : "");
    }
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        flock(fd, LOCK_UN);
        close(fd);
        return 0;
    }
    if (errno != EWOULDBLOCK) {
        int e = errno;
        close(fd);
        return cx_error_set(err, CX_EIO, "cannot check the lock %s: %s", ctx->lock_path,
                            strerror(e));
    }
    st->running = true;
    /* The server writes its pid right after taking the lock: give it a moment. */
    for (int attempt = 0; attempt < 20 && !st->pid; attempt++) {
        st->pid = read_pid_fd(fd);
        if (!st->pid)
            st->pid = read_pid_file(ctx->pid_path);
        if (!st->pid)
            cli_sleep_ms(25);
    }
    close(fd);
    return 0;
}

/* Probes and reports failures; returns an exit code. */
static int probe_or_report(const service_ctx *ctx, service_state *st)
{
    cx_error err;
    int rc = service_probe(ctx, st, &err);
    if (rc == 0)
        return CLI_EXIT_OK;
    fprintf(stderr, "caxton: %s\n", err.msg);
    return rc == CX_EFORBIDDEN ? CLI_EXIT_DENIED : CLI_EXIT_PROBLEM;
}

/* The URL of the running server as the client would find it; *local says
 * whether it was found on this host rather than named (client.local). */
static char *service_url(const service_ctx *ctx, bool *local)
{
    *local = ctx->inv->server == NULL;
    if (ctx->inv->server)
        return client_normalize_url(ctx->inv->server);
    char *path = path_join(ctx->data_dir, DATADIR_URL_FILE);
    char *url = client_read_trimmed(path, 4096);
    free(path);
    if (!url && ctx->cfg)
        url = client_url_from_listen(ctx->cfg->api_listen, ctx->cfg->api_tls_cert != NULL);
    return url;
}

/* A client for url; local as in client.local: only a local server gets the
 * admin token file. */
static int service_client(const service_ctx *ctx, const char *url, bool local, client *c)
{
    char *token = ctx->inv->token ? str_dup(ctx->inv->token)
                                  : local ? cli_local_token(ctx->data_dir) : NULL;
    cx_error err;
    int rc = ctx->inv->token && !token ? cx_error_set(&err, CX_ENOMEM, "out of memory")
                                       : client_init(c, url, token, ctx->inv->timeout_ms, &err);
    if (token) {
        memset(token, 0, strlen(token));
        free(token);
    }
    if (rc == 0)
        c->local = local;
    if (rc == 0 && cli_client_trust(ctx->inv, ctx->cfg, c) != CLI_EXIT_OK) {
        client_close(c);
        return CX_EINVAL;
    }
    return rc;
}

/* --verify-health: GET /health/deep on the server just started (or found). */
static int verify_health(service_ctx *ctx, const char *url, bool local)
{
    client c;
    if (!url || service_client(ctx, url, local, &c) != 0) {
        fprintf(stderr, "caxton: cannot verify health: the server's URL is unknown\n");
        return CLI_EXIT_PROBLEM;
    }
    client_response resp;
    cx_error err;
    int rc = client_request(&c, "GET", "/health/deep", NULL, &resp, &err);
    if (rc != 0) {
        rc = cli_report_request_failure(&c, rc, &err);
    } else if (!cli_is_status_document(&resp)) {
        rc = cli_report_http_error(&c, &resp);
        if (rc == CLI_EXIT_UNREACHABLE)
            rc = CLI_EXIT_PROBLEM;
    } else {
        if (ctx->inv->output == CLI_OUTPUT_JSON)
            json_object_set(ctx->report, "health", resp.json);
        else
            cli_print_deep(&resp);
        rc = cli_deep_exit_code(&resp);
    }
    client_response_free(&resp);
    client_close(&c);
    return rc;
}

/* ---- start ---------------------------------------------------------------------------------- */

/* Moves a descriptor above 2 so that dup2() onto stdin/stdout/stderr in the
 * child cannot clobber it (when the CLI itself ran with some of them closed). */
static int fd_above_stdio(int fd)
{
    if (fd > 2)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return moved;
}

static char **child_environment(const char *ready_var)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!str_has_prefix(environ[i], SERVER_READY_FD_ENV "="))
            env[k++] = environ[i];
    env[k++] = (char *)ready_var;
    env[k] = NULL;
    return env;
}

typedef struct start_wait {
    strbuf output;           /* what the server printed before it was ready */
    char line[SERVICE_READY_LINE_MAX];
    size_t line_len;
    char url[SERVICE_READY_LINE_MAX];
    bool ready;
    bool ready_closed;
    bool output_closed;
} start_wait;

static void read_output(int fd, start_wait *w)
{
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
        size_t room = SERVICE_CAPTURE_MAX - w->output.len;
        if (w->output.len < SERVICE_CAPTURE_MAX)
            strbuf_append(&w->output, buf, (size_t)n < room ? (size_t)n : room);
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        w->output_closed = true;
    }
}

static void read_ready(int fd, start_wait *w)
{
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        w->ready_closed = true;
        return;
    }
    for (ssize_t i = 0; i < n && !w->ready; i++) {
        if (buf[i] != '\n') {
            if (w->line_len + 1 < sizeof w->line)
                w->line[w->line_len++] = buf[i];
            continue;
        }
        w->line[w->line_len] = '\0';
        if (str_has_prefix(w->line, "READY ")) {
            snprintf(w->url, sizeof w->url, "%s", w->line + 6);
            w->ready = true;
        }
        w->line_len = 0;
    }
}

/* Waits for READY, the child's exit, or the deadline. */
static void wait_for_ready(int out_fd, int ready_fd, uint64_t deadline, start_wait *w)
{
    while (!w->ready && !(w->ready_closed && w->output_closed)) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return;
        struct pollfd fds[2];
        nfds_t n = 0;
        if (!w->output_closed)
            fds[n++] = (struct pollfd){.fd = out_fd, .events = POLLIN};
        if (!w->ready_closed)
            fds[n++] = (struct pollfd){.fd = ready_fd, .events = POLLIN};
        uint64_t wait = deadline - now;
        /* Once the ready pipe is closed the server is exiting: only drain its output. */
        int r = poll(fds, n, (int)(wait > 1000 ? 1000 : wait));
        if (r < 0 && errno != EINTR)
            return;
        for (nfds_t i = 0; r > 0 && i < n; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (fds[i].fd == out_fd)
                read_output(out_fd, w);
            else
                read_ready(ready_fd, w);
        }
    }
}

static void print_captured(const start_wait *w)
{
    if (w->output.len == 0)
        return;
    fwrite(w->output.data, 1, w->output.len, stderr);
    if (w->output.data[w->output.len - 1] != '\n')
        fputc('\n', stderr);
}

/* The child exited (or closed its ready pipe) before it was ready. */
static int report_early_exit(const service_ctx *ctx, pid_t pid, const start_wait *w,
                             uint64_t deadline)
{
    int status = 0;
    pid_t r = 0;
    for (;;) {
        r = waitpid(pid, &status, WNOHANG);
        if (r != 0 || now_ms() >= deadline)
            break;
        cli_sleep_ms(20);
    }
    print_captured(w);
    json_object_set_new(ctx->report, "started", json_false());
    if (r == pid && WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        fprintf(stderr, "caxton: the server failed to start (exit code %d)\n", code);
        json_object_set_new(ctx->report, "exit_code", json_integer(code));
        return code == 0 ? CLI_EXIT_PROBLEM : code;
    }
    if (r == pid && WIFSIGNALED(status)) {
        fprintf(stderr, "caxton: the server was killed by signal %d while starting\n",
                WTERMSIG(status));
        return CLI_EXIT_PROBLEM;
    }
    fprintf(stderr, "caxton: the server (pid %d) closed its ready pipe without saying READY\n",
            (int)pid);
    return CLI_EXIT_PROBLEM;
}

/* The path of our own executable. readlink() rather than executing
 * /proc/self/exe directly, so that tools which run us (valgrind) hand over
 * the program and not themselves; /proc/self/exe when the file is gone. */
static void own_executable(char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n > 0 && (size_t)n < size - 1) {
        buf[n] = '\0';
        if (access(buf, X_OK) == 0)
            return;
    }
    snprintf(buf, size, "/proc/self/exe");
}

/* Builds `caxton serve` with the flags we were given. */
static void serve_argv(const service_ctx *ctx, const char **argv)
{
    size_t n = 0;
    argv[n++] = "caxton";
    argv[n++] = "serve";
    const char *names[] = {"--config", "--data-dir", "--log-dir", "--listen"};
    const char *values[] = {ctx->inv->config_path, ctx->inv->data_dir,
                            cli_flag_value(ctx->inv, "log-dir"),
                            cli_flag_value(ctx->inv, "listen")};
    for (size_t i = 0; i < 4; i++)
        if (values[i]) {
            argv[n++] = names[i];
            argv[n++] = values[i];
        }
    argv[n] = NULL;
}

static int spawn_and_wait(service_ctx *ctx, bool verify)
{
    int out_pipe[2], ready_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "caxton: cannot create a pipe: %s\n", strerror(errno));
        return CLI_EXIT_PROBLEM;
    }
    if (pipe2(ready_pipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "caxton: cannot create a pipe: %s\n", strerror(errno));
        close(out_pipe[0]);
        close(out_pipe[1]);
        return CLI_EXIT_PROBLEM;
    }
    for (int i = 0; i < 2; i++) {
        out_pipe[i] = fd_above_stdio(out_pipe[i]);
        ready_pipe[i] = fd_above_stdio(ready_pipe[i]);
    }
    char ready_var[64];
    snprintf(ready_var, sizeof ready_var, SERVER_READY_FD_ENV "=%d", ready_pipe[1]);
    const char *argv[12];
    char exe[4096];
    serve_argv(ctx, argv);
    own_executable(exe, sizeof exe);
    char **env = child_environment(ready_var);
    if (!env || out_pipe[0] < 0 || out_pipe[1] < 0 || ready_pipe[0] < 0 || ready_pipe[1] < 0) {
        fprintf(stderr, "caxton: cannot prepare the server process: %s\n", strerror(errno));
        free(env);
        for (int i = 0; i < 2; i++) {
            if (out_pipe[i] >= 0)
                close(out_pipe[i]);
            if (ready_pipe[i] >= 0)
                close(ready_pipe[i]);
        }
        return CLI_EXIT_PROBLEM;
    }

    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        setsid();
        int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd >= 0)
            dup2(null_fd, STDIN_FILENO);
        dup2(out_pipe[1], STDOUT_FILENO);
        dup2(out_pipe[1], STDERR_FILENO);
        /* The server keeps nothing of ours but the ready pipe: descriptors we
         * inherited without close-on-exec would otherwise stay open for its
         * whole life (and a caller waiting for EOF on one would hang). */
        int ready_fd = ready_pipe[1];
        if (ready_fd > 3)
            close_range(3, (unsigned)ready_fd - 1, 0);
        close_range((unsigned)ready_fd + 1, ~0u, 0);
        fcntl(ready_fd, F_SETFD, 0);
        execve(exe, (char *const *)argv, env);
        int e = errno;
        static const char msg[] = "caxton: cannot run 'caxton serve': ";
        (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)!write(STDERR_FILENO, strerror(e), strlen(strerror(e)));
        (void)!write(STDERR_FILENO, "\n", 1);
        _exit(SERVER_EXIT_RUNTIME);
    }
    int fork_errno = errno;
    free(env);
    close(out_pipe[1]);
    close(ready_pipe[1]);
    if (pid < 0) {
        close(out_pipe[0]);
        close(ready_pipe[0]);
        fprintf(stderr, "caxton: cannot start the server: %s\n", strerror(fork_errno));
        return CLI_EXIT_PROBLEM;
    }

    uint64_t deadline = now_ms() + ctx->inv->timeout_ms;
    start_wait w;
    memset(&w, 0, sizeof w);
    strbuf_init(&w.output);
    wait_for_ready(out_pipe[0], ready_pipe[0], deadline, &w);
    int rc;
    if (w.ready) {
        say(ctx, "caxton started (pid %d), listening on %s", (int)pid, w.url);
        json_object_set_new(ctx->report, "started", json_true());
        json_object_set_new(ctx->report, "pid", json_integer(pid));
        json_object_set_new(ctx->report, "url", json_string(w.url));
        /* The server we just started is this host's own, whatever --server said. */
        rc = verify ? verify_health(ctx, w.url, true) : CLI_EXIT_OK;
    } else if (w.ready_closed) {
        rc = report_early_exit(ctx, pid, &w, deadline + 2000);
    } else {
        char limit[32];
        units_format_duration(ctx->inv->timeout_ms, limit, sizeof limit);
        print_captured(&w);
        fprintf(stderr,
                "caxton: the server (pid %d) is not ready after %s; it is still starting (see "
                "its logs, or 'caxton service stop' to give up)\n",
                (int)pid, limit);
        json_object_set_new(ctx->report, "started", json_false());
        json_object_set_new(ctx->report, "pid", json_integer(pid));
        rc = CLI_EXIT_UNREACHABLE;
    }
    strbuf_free(&w.output);
    close(out_pipe[0]);
    close(ready_pipe[0]);
    return rc;
}

static int service_start(service_ctx *ctx)
{
    bool verify = cli_flag_set(ctx->inv, "verify-health");
    service_state st;
    int rc = probe_or_report(ctx, &st);
    if (rc != 0)
        return rc;
    if (st.running) {
        say(ctx, "caxton is already running (pid %d)", (int)st.pid);
        json_object_set_new(ctx->report, "already_running", json_true());
        json_object_set_new(ctx->report, "pid", st.pid ? json_integer(st.pid) : json_null());
        if (!verify)
            return CLI_EXIT_OK;
        bool local;
        char *url = service_url(ctx, &local);
        rc = verify_health(ctx, url, local);
        free(url);
        return rc;
    }
    return spawn_and_wait(ctx, verify);
}

/* ---- stop ----------------------------------------------------------------------------------- */

static void remove_stale_pid_file(service_ctx *ctx, pid_t expected)
{
    pid_t pid = read_pid_file(ctx->pid_path);
    bool exists = fs_exists(ctx->pid_path);
    if (!exists || (expected && pid && pid != expected))
        return;
    if (unlink(ctx->pid_path) == 0) {
        say(ctx, "removed the stale pid file %s", ctx->pid_path);
        json_object_set_new(ctx->report, "stale_pid_file_removed", json_true());
    } else {
        fprintf(stderr, "caxton: cannot remove the stale pid file %s: %s\n", ctx->pid_path,
                strerror(errno));
    }
}

static int service_stop(service_ctx *ctx)
{
    bool emergency = cli_flag_set(ctx->inv, "emergency");
    service_state st;
    int rc = probe_or_report(ctx, &st);
    if (rc != 0)
        return rc;
    if (!st.running) {
        say(ctx, "caxton is not running");
        json_object_set_new(ctx->report, "was_running", json_false());
        remove_stale_pid_file(ctx, 0);
        return CLI_EXIT_OK;
    }
    if (!st.pid) {
        fprintf(stderr, "caxton: caxton is running but its pid is unknown (%s is empty)\n",
                ctx->lock_path);
        return CLI_EXIT_PROBLEM;
    }
    json_object_set_new(ctx->report, "was_running", json_true());
    json_object_set_new(ctx->report, "pid", json_integer(st.pid));
    if (kill(st.pid, SIGTERM) != 0 && errno != ESRCH) {
        int e = errno;
        fprintf(stderr, "caxton: cannot signal pid %d: %s%s\n", (int)st.pid, strerror(e),
                e == EPERM ? " (run as the user that runs caxton, or root)" : "");
        return e == EPERM ? CLI_EXIT_DENIED : CLI_EXIT_PROBLEM;
    }
    uint64_t start = now_ms(), limit = ctx->inv->timeout_ms;
    if (emergency && limit < SERVICE_KILL_AFTER_MS + SERVICE_KILL_GRACE_MS)
        limit = SERVICE_KILL_AFTER_MS + SERVICE_KILL_GRACE_MS;
    bool killed = false;
    for (;;) {
        cli_sleep_ms(SERVICE_POLL_MS);
        service_state now;
        if ((rc = probe_or_report(ctx, &now)) != 0)
            return rc;
        if (!now.running)
            break;
        uint64_t elapsed = now_ms() - start;
        if (emergency && !killed && elapsed >= SERVICE_KILL_AFTER_MS) {
            if (kill(st.pid, SIGKILL) == 0 || errno == ESRCH) {
                killed = true;
                say(ctx, "caxton (pid %d) did not exit %us after SIGTERM; sent SIGKILL",
                    (int)st.pid, SERVICE_KILL_AFTER_MS / 1000);
                json_object_set_new(ctx->report, "killed", json_true());
            }
        }
        if (elapsed >= limit) {
            char text[32];
            units_format_duration(limit, text, sizeof text);
            if (killed)
                fprintf(stderr,
                        "caxton: the server (pid %d) did not exit within %s, even after SIGKILL\n",
                        (int)st.pid, text);
            else
                fprintf(stderr,
                        "caxton: the server (pid %d) did not stop within %s; run 'caxton service "
                        "stop --emergency' to kill it\n",
                        (int)st.pid, text);
            json_object_set_new(ctx->report, "stopped", json_false());
            return CLI_EXIT_PROBLEM;
        }
    }
    if (killed) {
        /* The server had no chance to remove its run files. */
        remove_stale_pid_file(ctx, st.pid);
        char *url_path = path_join(ctx->data_dir, DATADIR_URL_FILE);
        if (url_path)
            unlink(url_path);
        free(url_path);
    }
    say(ctx, "caxton stopped (pid %d)", (int)st.pid);
    json_object_set_new(ctx->report, "stopped", json_true());
    return CLI_EXIT_OK;
}

/* ---- status --------------------------------------------------------------------------------- */

static void print_api_summary(service_ctx *ctx)
{
    bool local;
    char *url = service_url(ctx, &local);
    char problem[1024] = "";
    client c;
    if (!url || service_client(ctx, url, local, &c) != 0) {
        snprintf(problem, sizeof problem, "the server's URL is unknown");
    } else {
        client_response resp;
        cx_error err;
        int rc = client_request(&c, "GET", "/api/v1/status", NULL, &resp, &err);
        if (rc != 0) {
            snprintf(problem, sizeof problem, "cannot reach %s: %s", c.url, err.msg);
        } else if (!cli_is_status_document(&resp)) {
            const char *code = client_error_code(&resp), *msg = client_error_message(&resp);
            snprintf(problem, sizeof problem, "%s answered HTTP %ld%s%s%s%s", c.url, resp.status,
                     code ? ", " : "", code ? code : "", msg ? ": " : "", msg ? msg : "");
        } else if (ctx->inv->output == CLI_OUTPUT_JSON) {
            json_object_set(ctx->report, "status", resp.json);
        } else {
            char line[256];
            cli_print_server_summary(resp.json);
            snprintf(line, sizeof line, "status: %s", output_string(resp.json, "status", "?"));
            output_sanitize(line);
            printf("%s\n", line);
        }
        client_response_free(&resp);
        client_close(&c);
    }
    free(url);
    if (problem[0]) {
        output_sanitize(problem);
        say(ctx, "api: %s", problem);
        json_object_set_new(ctx->report, "api_error", json_string(problem));
    }
}

static int service_status(service_ctx *ctx)
{
    service_state st;
    int rc = probe_or_report(ctx, &st);
    if (rc != 0)
        return rc;
    json_object_set_new(ctx->report, "running", json_boolean(st.running));
    if (!st.running) {
        say(ctx, "caxton is not running");
        if (fs_exists(ctx->pid_path))
            say(ctx, "(stale pid file %s; 'caxton service stop' removes it)", ctx->pid_path);
        return CLI_EXIT_UNREACHABLE;
    }
    if (st.pid)
        say(ctx, "caxton is running (pid %d)", (int)st.pid);
    else
        say(ctx, "caxton is running (pid unknown)");
    json_object_set_new(ctx->report, "pid", st.pid ? json_integer(st.pid) : json_null());
    print_api_summary(ctx);
    return CLI_EXIT_OK;
}

/* ---- Handlers ------------------------------------------------------------------------------- */

int cmd_service_start(const cli_invocation *inv)
{
    service_ctx ctx;
    int rc = service_open(inv, &ctx);
    return service_close(&ctx, rc ? rc : service_start(&ctx));
}

int cmd_service_stop(const cli_invocation *inv)
{
    service_ctx ctx;
    int rc = service_open(inv, &ctx);
    return service_close(&ctx, rc ? rc : service_stop(&ctx));
}

int cmd_service_restart(const cli_invocation *inv)
{
    service_ctx ctx;
    int rc = service_open(inv, &ctx);
    if (rc != 0)
        return service_close(&ctx, rc);
    /* Each half reports into its own object for --output json. */
    json_t *whole = ctx.report;
    ctx.report = json_object();
    json_object_set_new(whole, "stop", ctx.report);
    rc = service_stop(&ctx);
    if (rc == 0) {
        ctx.report = json_object();
        json_object_set_new(whole, "start", ctx.report);
        rc = service_start(&ctx);
    }
    ctx.report = whole;
    return service_close(&ctx, rc);
}

int cmd_service_status(const cli_invocation *inv)
{
    service_ctx ctx;
    int rc = service_open(inv, &ctx);
    return service_close(&ctx, rc ? rc : service_status(&ctx));
}
