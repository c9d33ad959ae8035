/* `caxton serve`: start-up, the event loop, signals and shutdown.
 *
 * Start-up is strictly ordered so that each failure has one clear message
 * and nothing half-started is left behind: config (exit 2 on error), data
 * dir, the single-instance lock, logs, state.db, the first admin token, the
 * loop, then the API last, so that "ready" means ready. Shutdown runs the
 * same steps backwards after draining in-flight requests for at most
 * server.shutdown_timeout. */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#ifdef CAXTON_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "agents/agent_memory.h"
#include "agents/registry.h"
#include "api/auth.h"
#include "api/http.h"
#include "core/log.h"
#include "core/units.h"
#include "core/util.h"
#include "llm/llm.h"
#include "memory/embedder.h"
#include "memory/memops.h"
#include "memory/memstore.h"
#include "messaging/router.h"
#include "obs/metrics.h"
#include "tools/mcp.h"
#include "server/app.h"
#include "server/health.h"
#include "server/snapshot.h"

#define HEARTBEAT_MS 1000
#define RETENTION_FIRST_MS (60u * 1000u)        /* after start, once agents are loaded */
#define RETENTION_EVERY_MS (60u * 60u * 1000u)
#define DRAIN_POLL_MS 25

extern char **environ;

typedef struct server {
    app app;
    config_flags flags;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t heartbeat, drain, backup, retention;
    http_server *http;
    int lock_fd;
    uint64_t drain_deadline_ms; /* monotonic */
    bool finished;              /* finish_shutdown() has run */
    int exit_code;
} server;

static void notify_systemd(const char *state)
{
#ifdef CAXTON_HAVE_SYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

static void print_diag(const config_diag *diag)
{
    for (size_t i = 0; i < diag->error_count; i++)
        fprintf(stderr, "caxton: error: %s\n", diag->errors[i]);
}

static void log_warnings(const config_diag *diag)
{
    for (size_t i = 0; i < diag->warning_count; i++)
        log_warn("config", "%s", diag->warnings[i]);
}

/* ---- data dir and lock -------------------------------------------------- */

static int prepare_data_dir(const char *dir, cx_error *err)
{
    static const char *const subdirs[] = {"agents", "data", "backups", "wasm", "run", "tokens"};
    int rc = fs_mkdir_p(dir, 0700, err);
    if (rc < 0)
        return cx_error_wrap(err, "data dir");
    if (access(dir, W_OK | X_OK) != 0)
        return cx_error_set(err, CX_EIO,
                            "data dir %s is not writable by this user (uid %d): fix its owner "
                            "(chown caxton:caxton) or choose another with --data-dir",
                            dir, (int)getuid());
    for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
        char *path = path_join(dir, subdirs[i]);
        rc = path ? fs_mkdir_p(path, 0700, err) : cx_error_set(err, CX_ENOMEM, "out of memory");
        free(path);
        if (rc < 0)
            return cx_error_wrap(err, "data dir");
    }
    return 0;
}

static int take_lock(server *s, cx_error *err)
{
    char *path = path_join(s->app.data_dir, DATADIR_LOCK_FILE);
    if (!path)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        cx_error_set(err, CX_EIO, "cannot open lock file %s: %s", path, strerror(e));
        free(path);
        return CX_EIO;
    }
    /* A client probing the lock holds it shared for an instant: retry briefly. */
    int locked = -1;
    for (int attempt = 0; attempt < 20 && (locked = flock(fd, LOCK_EX | LOCK_NB)) < 0; attempt++)
        usleep(10000);
    if (locked < 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        cx_error_set(err, CX_EBUSY,
                     "another caxton server (pid %s) is using data dir %s (lock %s); stop it "
                     "with 'caxton service stop' or choose another --data-dir",
                     pid[0] ? pid : "unknown", s->app.data_dir, path);
        close(fd);
        free(path);
        return CX_EBUSY;
    }
    free(path);
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        close(fd);
        return cx_error_set(err, CX_EIO, "cannot write the lock file: %s", strerror(errno));
    }
    s->lock_fd = fd;
    return 0;
}

static int write_run_file(server *s, const char *name, const char *text, cx_error *err)
{
    char *path = path_join(s->app.data_dir, name);
    if (!path)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    int rc = fs_write_atomic(path, text, strlen(text), 0600, err);
    free(path);
    return rc;
}

static void remove_run_file(server *s, const char *name)
{
    char *path = path_join(s->app.data_dir, name);
    if (path)
        unlink(path);
    free(path);
}

/* Whenever no active admin token exists (the first start, or every admin
 * token revoked), a new one is written to tokens/admin.token for whoever
 * can read the data dir. The file is written before the token is stored, so
 * a failure never leaves a token that nobody holds. */
static int ensure_admin_token(server *s, cx_error *err)
{
    int64_t active = 0, ever = 0;
    int rc = state_token_count_active(s->app.state, TOKEN_ROLE_ADMIN, &active, err);
    if (rc < 0 || active > 0 || (rc = state_token_count(s->app.state, &ever, err)) < 0)
        return rc;
    token_record t;
    char secret[TOKEN_SECRET_LEN + 1], line[TOKEN_SECRET_LEN + 2];
    char *path = path_join(s->app.data_dir, DATADIR_ADMIN_TOKEN);
    if (!path)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    rc = token_generate("admin", TOKEN_ROLE_ADMIN, &t, secret, err);
    if (rc == 0) {
        snprintf(line, sizeof line, "%s\n", secret);
        rc = fs_write_atomic(path, line, strlen(line), 0600, err);
        if (rc == 0 && (rc = state_token_insert(s->app.state, &t, err)) < 0)
            unlink(path);
    }
    memset(secret, 0, sizeof secret);
    memset(line, 0, sizeof line);
    if (rc == 0) {
        auth_upsert(&t);
        state_audit_append(s->app.state, "system", "token.create", t.id,
                           json_pack("{s:s, s:s}", "name", "admin", "role", "admin"), NULL);
        log_event(LOG_STREAM_AUDIT, LOG_INFO, "auth",
                  json_pack("{s:s, s:s, s:s, s:s, s:s}", "actor", "system", "action",
                            "token.create", "token_id", t.id, "token_name", "admin", "role",
                            "admin"),
                  "token %s created", t.id);
        if (ever == 0)
            log_info("auth", "first admin token %s written to %s", t.id, path);
        else
            log_warn("auth", "no active admin token was left: a new one (%s) was written to %s",
                     t.id, path);
    }
    free(path);
    return rc;
}

/* ---- loop callbacks ----------------------------------------------------- */

/* Deadlines and ages use the monotonic clock: a clock step must not fail
 * readiness or cut the drain short. */
static uint64_t monotonic_ms(void)
{
    return time_monotonic_ns() / 1000000u;
}

static void on_heartbeat(uv_timer_t *timer)
{
    server *s = timer->data;
    __atomic_store_n(&s->app.loop_heartbeat_ms, monotonic_ms(), __ATOMIC_RELAXED);
    cx_error err;
    if (state_check(s->app.state, &err) < 0)
        health_set_state_db(APP_HEALTH_FAIL, err.msg);
    else
        health_set_state_db(APP_HEALTH_OK, "state.db answers");
    snapshot_take(&s->app);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish_shutdown(server *s)
{
    if (s->finished)
        return;
    s->finished = true;
    uv_timer_stop(&s->drain);
    close_handle((uv_handle_t *)&s->drain);
    close_handle((uv_handle_t *)&s->heartbeat);
    close_handle((uv_handle_t *)&s->backup);
    close_handle((uv_handle_t *)&s->retention);
    close_handle((uv_handle_t *)&s->sigterm);
    close_handle((uv_handle_t *)&s->sigint);
    close_handle((uv_handle_t *)&s->sighup);
    /* From here the process is on its way out: a late signal must not kill
     * it before it has closed its files and released the lock. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    /* Runs the jobs already queued (the quiesced router refuses new
     * messages with 503); requests arriving later are answered 503 by the
     * HTTP threads until http_stop() joins them. */
    dispatch_shutdown(s->app.dispatch);
    /* Messages still running are abandoned: their journal entries make the
     * next start deliver them again. Requests waiting for a reply get 503,
     * which resumes their connections. */
    registry_close(s->app.agents);
    s->app.agents = NULL;
    router_close(s->app.router);
    s->app.router = NULL;
    if (s->app.llm)
        llm_client_close(s->app.llm);
    s->app.llm = NULL;
    if (s->app.tools)
        mcp_hub_close(s->app.tools);
    s->app.tools = NULL;
    memstore_close(s->app.memory);
    s->app.memory = NULL;
    uv_stop(&s->loop); /* the dispatcher's async handle would keep it alive */
}

static int work_in_flight(server *s)
{
    router_stats rs = {0};
    if (s->app.router)
        router_get_stats(s->app.router, &rs);
    int http = http_in_flight(s->http) - (int)rs.waiting;
    return (http > 0 ? http : 0) + (s->app.agents ? (int)registry_busy(s->app.agents) : 0);
}

static void on_drain_tick(uv_timer_t *timer)
{
    server *s = timer->data;
    int in_flight = work_in_flight(s);
    if (in_flight == 0) {
        finish_shutdown(s);
    } else if (monotonic_ms() >= s->drain_deadline_ms) {
        log_warn("server", "%d requests or messages still in flight after "
                 "server.shutdown_timeout; closing them (journaled messages are delivered again "
                 "at the next start)", in_flight);
        finish_shutdown(s);
    }
}

static void begin_shutdown(server *s, const char *why)
{
    if (__atomic_exchange_n(&s->app.stopping, true, __ATOMIC_RELAXED)) {
        log_warn("server", "%s again: stopping now without waiting for requests", why);
        finish_shutdown(s);
        return;
    }
    notify_systemd("STOPPING=1");
    char timeout[32];
    units_format_duration(s->app.config->shutdown_timeout_ms, timeout, sizeof timeout);
    log_info("server", "%s: stopping (draining requests for up to %s)", why, timeout);
    http_quiesce(s->http);
    if (s->app.router)
        router_quiesce(s->app.router);
    if (s->app.agents)
        registry_quiesce(s->app.agents);
    s->drain_deadline_ms = monotonic_ms() + s->app.config->shutdown_timeout_ms;
    uv_timer_start(&s->drain, on_drain_tick, 0, DRAIN_POLL_MS);
}

static void on_stop_signal(uv_signal_t *handle, int signum)
{
    begin_shutdown(handle->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void reload_config(server *s)
{
    cx_config *fresh = NULL;
    config_diag diag = {0};
    cx_error err;
    if (config_load(&s->flags, environ, &fresh, &diag, &err) < 0) {
        metrics_config_validation_failed();
        for (size_t i = 0; i < diag.error_count; i++)
            log_error("config", "reload refused: %s", diag.errors[i]);
        log_error("config", "configuration not reloaded; the running configuration is kept");
        config_diag_free(&diag);
        return;
    }
    log_warnings(&diag);
    config_diag_free(&diag);
    const char **changed = config_restart_keys_changed(s->app.config, fresh);
    for (size_t i = 0; changed && changed[i]; i++)
        log_warn("config", "%s changed; it takes effect after a restart", changed[i]);
    free(changed);
    /* What the server reports must be what it runs with. */
    config_keep_restart_keys(fresh, s->app.config);
    log_level level;
    if (log_parse_level(fresh->logging_level, &level) == 0)
        log_set_level(level);
    if (http_reconfigure(s->http, fresh, &err) < 0)
        log_error("config", "%s", err.msg);
    if (s->app.llm && llm_client_reconfigure(s->app.llm, fresh->llm_providers, &err) < 0)
        log_error("config", "llm.providers not applied: %s", err.msg);
    if (s->app.tools && mcp_hub_reconfigure(s->app.tools, fresh->tools_mcp_servers, &err) < 0)
        log_error("config", "tools.mcp_servers not applied: %s", err.msg);
    config_free(s->app.config);
    s->app.config = fresh;
    if (s->app.agents)
        registry_config_changed(s->app.agents);
    log_info("config", "configuration reloaded from %s",
             fresh->file_path ? fresh->file_path : "defaults and environment");
    log_event(LOG_STREAM_AUDIT, LOG_INFO, "config",
              json_pack("{s:s, s:s, s:s?}", "actor", "SIGHUP", "action", "config.reload", "file",
                        fresh->file_path),
              "configuration reloaded");
    state_audit_append(s->app.state, "SIGHUP", "config.reload", fresh->file_path,
                       NULL, NULL);
}

static void on_sighup(uv_signal_t *handle, int signum)
{
    (void)signum;
    server *s = handle->data;
    notify_systemd("RELOADING=1");
    cx_error err;
    if (log_reopen(&err) < 0)
        fprintf(stderr, "caxton: %s\n", err.msg);
    else
        log_info("server", "SIGHUP: log files reopened");
    reload_config(s);
    notify_systemd("READY=1");
}

/* ---- start -------------------------------------------------------------- */

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* `caxton service start` waits on this fd for the READY line. */
static void report_ready_to_parent(server *s)
{
    const char *fd_text = getenv(SERVER_READY_FD_ENV);
    if (!fd_text)
        return;
    int fd = atoi(fd_text);
    if (fd <= 2)
        return;
    char line[200];
    int len = snprintf(line, sizeof line, "READY %s\n", s->app.url);
    if (write(fd, line, (size_t)len) < 0)
        log_warn("server", "cannot report readiness: %s", strerror(errno));
    close(fd);
    unsetenv(SERVER_READY_FD_ENV);
    /* Nobody reads our stderr once the starter has gone. */
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, STDERR_FILENO);
        dup2(devnull, STDOUT_FILENO);
        close(devnull);
    }
    log_set_stderr(false);
}

static int start_loop_handles(server *s, cx_error *err)
{
    int rc = uv_loop_init(&s->loop);
    if (rc < 0)
        return cx_error_set(err, CX_EINTERNAL, "event loop: %s", uv_strerror(rc));
    if (!(s->app.dispatch = dispatch_new(&s->loop, err)))
        return err->code;
    s->app.loop = &s->loop; /* from here on, stop() closes the loop's handles */
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sighup);
    uv_timer_init(&s->loop, &s->heartbeat);
    uv_timer_init(&s->loop, &s->drain);
    uv_timer_init(&s->loop, &s->backup);
    uv_timer_init(&s->loop, &s->retention);
    s->sigterm.data = s->sigint.data = s->sighup.data = s;
    s->heartbeat.data = s->drain.data = s->backup.data = s->retention.data = s;
    uv_signal_start(&s->sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_stop_signal, SIGINT);
    uv_signal_start(&s->sighup, on_sighup, SIGHUP);
    on_heartbeat(&s->heartbeat);
    uv_timer_start(&s->heartbeat, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
    return 0;
}

/* memory.backups.every: an online backup of the memory database, keeping
 * memory.backups.keep of them. It runs on a libuv worker thread with its own
 * read connection (WAL lets it read a consistent snapshot while the loop
 * goes on writing), so a large database does not hold the loop; stop()
 * lets a running one finish. */
typedef struct backup_job {
    uv_work_t req;
    char *db_path, *backups_dir;
    int64_t keep;
    json_t *result;
    cx_error err;
} backup_job;

static bool backup_running;

static void backup_work(uv_work_t *req)
{
    backup_job *j = req->data;
    memops_ctx ctx = {
        .db_path = j->db_path,
        .backups_dir = j->backups_dir,
        .keep = j->keep,
        .store = NULL, /* the file, through a connection of this thread */
        .actor = "scheduler",
    };
    memops_backup(&ctx, "scheduled", &j->result, &j->err);
}

static void backup_done(uv_work_t *req, int status)
{
    backup_job *j = req->data;
    if (status != 0 || !json_is_true(json_object_get(j->result, "ok")))
        log_error("memory", "scheduled memory backup failed: %s",
                  j->err.msg[0] ? j->err.msg
                                : json_string_value(json_array_get(
                                      json_object_get(j->result, "problems"), 0)) ?: "unknown");
    else
        log_info("memory", "scheduled memory backup written to %s",
                 json_string_value(json_object_get(j->result, "path")) ?: "?");
    json_decref(j->result);
    free(j->db_path);
    free(j->backups_dir);
    free(j);
    backup_running = false;
}

static void on_backup_timer(uv_timer_t *timer)
{
    server *s = timer->data;
    app *a = &s->app;
    if (backup_running || a->stopping || !a->memory || !memstore_available(a->memory))
        return;
    backup_job *j = calloc(1, sizeof *j);
    if (!j || !(j->db_path = str_dup(a->config->memory_path)) ||
        !(j->backups_dir = str_dup(a->config->memory_backups_dir))) {
        if (j)
            free(j->db_path);
        free(j);
        log_error("memory", "scheduled memory backup skipped: out of memory");
        return;
    }
    j->keep = a->config->memory_backups_keep;
    j->req.data = j;
    if (uv_queue_work(&s->loop, &j->req, backup_work, backup_done) != 0) {
        free(j->db_path);
        free(j->backups_dir);
        free(j);
        log_error("memory", "scheduled memory backup skipped: no worker thread");
        return;
    }
    backup_running = true;
}

/* The agents' memory.retention, applied every RETENTION_EVERY_MS (and by
 * caxton memory cleanup). */
static void on_retention_timer(uv_timer_t *timer)
{
    server *s = timer->data;
    app *a = &s->app;
    if (a->stopping || !a->memory || !memstore_available(a->memory))
        return;
    cx_error err = {0};
    json_t *done = agent_memory_retention(a->memory, a->agents, NULL, &err);
    if (!done)
        log_error("memory", "memory.retention not applied: %s", err.msg);
    json_decref(done);
}

static void warn_tls_expiry(int64_t expires_at)
{
    int64_t now = (int64_t)(time_now_ms() / 1000);
    if (expires_at <= 0)
        return;
    if (expires_at < now)
        log_error("tls", "the API certificate (api.tls.cert) expired %lld days ago; clients "
                  "will refuse it", (long long)((now - expires_at) / 86400));
    else if (expires_at < now + 14 * 86400)
        log_warn("tls", "the API certificate (api.tls.cert) expires in %lld days",
                 (long long)((expires_at - now) / 86400));
}

/* The router, the LLM providers and the agents, then the messages a crash
 * left unanswered. */
static int start_agents(server *s, cx_error *err)
{
    app *a = &s->app;
    json_t *errors = NULL;
    if (llm_providers_check(a->config->llm_providers, &errors) > 0) {
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e) {
            log_error("config", "%s", json_string_value(e));
        }
        int rc = cx_error_set(err, CX_ECONFIG, "llm.providers: %s",
                              json_string_value(json_array_get(errors, 0)));
        json_decref(errors);
        return rc;
    }
    json_decref(errors);
    errors = NULL;
    if (mcp_servers_check(a->config->tools_mcp_servers, &errors) > 0) {
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e) {
            log_error("config", "%s", json_string_value(e));
        }
        int rc = cx_error_set(err, CX_ECONFIG, "tools.mcp_servers: %s",
                              json_string_value(json_array_get(errors, 0)));
        json_decref(errors);
        return rc;
    }
    json_decref(errors);
    embedder_config ecfg = embedder_config_of(a->config);
    if (embedder_config_check(&ecfg, a->config->llm_providers, &errors) > 0) {
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e) {
            log_error("config", "%s", json_string_value(e));
        }
        int rc = cx_error_set(err, CX_ECONFIG, "%s",
                              json_string_value(json_array_get(errors, 0)));
        json_decref(errors);
        return rc;
    }
    json_decref(errors);
    if (!(a->tools = mcp_hub_new(a->loop, a->config->tools_mcp_servers, err)) ||
        !(a->llm = llm_client_new(a->loop, a->config->llm_providers, err)))
        return err->code ? err->code : CX_EINTERNAL;
    /* the memory's embedder calls the LLM providers; a damaged memory
     * database leaves memory unavailable, not the server down: the recovery
     * commands repair it while agents keep answering */
    embedder *emb = embedder_new(&ecfg, a->config->llm_providers, a->loop, a->llm, err);
    if (!emb)
        return err->code ? err->code : CX_EINTERNAL;
    memstore_options mopt = {
        .path = a->config->memory_path,
        .max_size = a->config->memory_max_size,
        .cache_size = a->config->memory_cache_size,
        .slow_query_ms = a->config->memory_slow_query_ms,
        .embedder = emb,
    };
    cx_error merr = {0};
    if (!(a->memory = memstore_open(&mopt, &merr)))
        return cx_error_set(err, merr.code ? merr.code : CX_ENOMEM, "%s", merr.msg);
    if (embedder_is_remote(emb))
        log_info("memory", "memory embeds with %s through provider %s", embedder_id(emb),
                 embedder_provider(emb));
    if (!(a->router = router_new(a, err)) || !(a->agents = registry_new(a, err)) ||
        router_recover(a->router, err) < 0 || snapshot_init() < 0)
        return err->code ? err->code : CX_EINTERNAL;
    snapshot_take(a);
    uv_timer_start(&s->retention, on_retention_timer, RETENTION_FIRST_MS, RETENTION_EVERY_MS);
    if (a->config->memory_backups_every_ms && a->config->memory_backups_keep > 0)
        uv_timer_start(&s->backup, on_backup_timer, a->config->memory_backups_every_ms,
                       a->config->memory_backups_every_ms);
    return 0;
}

/* Everything up to a serving API; returns an exit code, 0 when serving. */
static int start(server *s, cx_error *err)
{
    config_diag diag = {0};
    if (config_load(&s->flags, environ, &s->app.config, &diag, err) < 0) {
        print_diag(&diag);
        if (diag.error_count > 0)
            cx_error_clear(err); /* printed in full already */
        config_diag_free(&diag);
        return SERVER_EXIT_CONFIG;
    }
    cx_config *cfg = s->app.config;
    int64_t tls_expiry = 0;
    if (http_check_tls(cfg, &tls_expiry, err) < 0) {
        config_diag_free(&diag);
        return SERVER_EXIT_CONFIG;
    }
    log_level level = LOG_INFO;
    log_parse_level(cfg->logging_level, &level);
    log_set_level(level);
    s->app.data_dir = str_dup(cfg->data_dir);
    s->app.log_dir = str_dup(cfg->log_dir);
    s->app.config_file = str_dup(cfg->file_path);
    s->app.pid = (int)getpid();
    s->app.started_ms = time_now_ms();

    if (prepare_data_dir(cfg->data_dir, err) < 0 || take_lock(s, err) < 0 ||
        log_open(cfg->log_dir, err) < 0) {
        config_diag_free(&diag);
        return SERVER_EXIT_RUNTIME;
    }
    log_warnings(&diag);
    config_diag_free(&diag);
    warn_tls_expiry(tls_expiry);
    log_info("server", "caxton %s starting (pid %d, data dir %s, config %s)", CAXTON_VERSION,
             s->app.pid, cfg->data_dir, cfg->file_path ? cfg->file_path : "none: defaults");

    char *db_path = path_join(cfg->data_dir, DATADIR_STATE_DB);
    s->app.state = db_path ? state_open(db_path, err) : NULL;
    free(db_path);
    if (!s->app.state || auth_load(s->app.state, err) < 0 || ensure_admin_token(s, err) < 0 ||
        start_loop_handles(s, err) < 0)
        return SERVER_EXIT_RUNTIME;
    if (start_agents(s, err) < 0)
        return err->code == CX_ECONFIG ? SERVER_EXIT_CONFIG : SERVER_EXIT_RUNTIME;
    if (!(s->http = http_start(&s->app, cfg, err)))
        return err->code == CX_ECONFIG ? SERVER_EXIT_CONFIG : SERVER_EXIT_RUNTIME;

    char pid[32], url[200];
    snprintf(pid, sizeof pid, "%d\n", s->app.pid);
    snprintf(url, sizeof url, "%s\n", s->app.url);
    if (write_run_file(s, DATADIR_PID_FILE, pid, err) < 0 ||
        write_run_file(s, DATADIR_URL_FILE, url, err) < 0)
        return SERVER_EXIT_RUNTIME;
    char *token_file = path_join(cfg->data_dir, DATADIR_ADMIN_TOKEN);
    log_info("server", "serving on %s (admin token: %s)", s->app.url,
             token_file && fs_exists(token_file) ? token_file : "created earlier");
    free(token_file);
    notify_systemd("READY=1");
    report_ready_to_parent(s);
    return SERVER_EXIT_OK;
}

/* Shutdown order matters: the dispatcher is shut down first (queued jobs
 * run, suspended connections resume), then the HTTP threads are joined (no
 * one can post any more), and only then is the dispatcher freed. */
static void stop(server *s)
{
    if (s->app.loop)
        finish_shutdown(s);
    /* Let the answers just given to resumed connections go out (bounded).
     * The loop turns meanwhile: parts that finish a deferred answer on a
     * later turn (a tool connectivity test at shutdown) get to do it before
     * the HTTP server stops, which must find no connection suspended. */
    for (int i = 0; i < 200 && s->http && http_in_flight(s->http) > 0; i++) {
        if (s->app.loop)
            uv_run(&s->loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    http_stop(s->http);
    s->http = NULL;
    if (s->app.loop) {
        dispatch_free(s->app.dispatch);
        s->app.dispatch = NULL;
        /* The first run may return at once, consuming uv_stop's flag. */
        for (int i = 0; i < 3 && uv_run(&s->loop, UV_RUN_DEFAULT) != 0; i++)
            ;
        if (uv_loop_close(&s->loop) != 0)
            log_warn("server", "event loop closed with handles still open");
    }
    state_close(s->app.state);
    auth_free();
    health_reset();
    snapshot_reset();
    if (s->lock_fd >= 0) {
        remove_run_file(s, DATADIR_PID_FILE);
        remove_run_file(s, DATADIR_URL_FILE);
        close(s->lock_fd); /* releases the lock */
    }
    config_free(s->app.config);
    free(s->app.data_dir);
    free(s->app.log_dir);
    free(s->app.config_file);
}

int server_main(const config_flags *flags)
{
    server s = {.flags = *flags, .lock_fd = -1, .exit_code = SERVER_EXIT_OK};
    cx_error err = {0};
    umask(0077);
    signal(SIGPIPE, SIG_IGN);
    /* logrotate may send SIGHUP while we start: until the loop's handler is
     * installed, it must not kill us. */
    signal(SIGHUP, SIG_IGN);
    raise_fd_limit();
    log_set_stderr(true);

    int code = start(&s, &err);
    if (code != SERVER_EXIT_OK) {
        /* Config file errors were printed line by line already. */
        if (err.code != 0)
            log_error("server", "%s", err.msg);
        stop(&s);
        log_close();
        return code;
    }
    uv_run(&s.loop, UV_RUN_DEFAULT);
    log_info("server", "stopped");
    stop(&s);
    log_close();
    return s.exit_code;
}
