/* Component checks and production readiness checks. See health.h. */
#include "server/health.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "obs/metrics.h"
#include "server/server.h"

#define MAX_COMPONENTS 32
#define HEARTBEAT_WARN_MS 2000
#define HEARTBEAT_FAIL_MS 10000

static struct {
    pthread_mutex_t lock;
    struct {
        char name[48];
        bool critical;
        health_check_fn fn;
        void *arg;
    } components[MAX_COMPONENTS];
    size_t count;
    health_result state_db;
} health = {.lock = PTHREAD_MUTEX_INITIALIZER,
            .state_db = {APP_HEALTH_WARN, "not probed yet"}};

const char *health_status_name(app_health h)
{
    return h == APP_HEALTH_OK ? "ok" : h == APP_HEALTH_WARN ? "warn" : "fail";
}

const char *health_overall_name(app_health h)
{
    return h == APP_HEALTH_OK ? "ok" : h == APP_HEALTH_WARN ? "degraded" : "failing";
}

int health_register(const char *name, bool critical, health_check_fn fn, void *arg)
{
    pthread_mutex_lock(&health.lock);
    int rc = CX_ELIMIT;
    if (health.count < MAX_COMPONENTS) {
        snprintf(health.components[health.count].name, sizeof health.components[0].name, "%s",
                 name);
        health.components[health.count].critical = critical;
        health.components[health.count].fn = fn;
        health.components[health.count].arg = arg;
        health.count++;
        rc = 0;
    }
    pthread_mutex_unlock(&health.lock);
    return rc;
}

void health_reset(void)
{
    pthread_mutex_lock(&health.lock);
    health.count = 0;
    health.state_db.status = APP_HEALTH_WARN;
    snprintf(health.state_db.detail, sizeof health.state_db.detail, "not probed yet");
    pthread_mutex_unlock(&health.lock);
}

void health_set_state_db(app_health status, const char *detail)
{
    pthread_mutex_lock(&health.lock);
    health.state_db.status = status;
    snprintf(health.state_db.detail, sizeof health.state_db.detail, "%s", detail);
    pthread_mutex_unlock(&health.lock);
}

static void check_event_loop(app *a, health_result *out)
{
    uint64_t beat = __atomic_load_n(&a->loop_heartbeat_ms, __ATOMIC_RELAXED);
    uint64_t now = time_monotonic_ns() / 1000000u;
    uint64_t age = now > beat ? now - beat : 0;
    out->status = age < HEARTBEAT_WARN_MS   ? APP_HEALTH_OK
                  : age < HEARTBEAT_FAIL_MS ? APP_HEALTH_WARN
                                            : APP_HEALTH_FAIL;
    snprintf(out->detail, sizeof out->detail, "last heartbeat %llu ms ago",
             (unsigned long long)age);
}

static void check_dir(const char *dir, const char *what, health_result *out)
{
    struct statvfs vfs;
    if (access(dir, W_OK) != 0) {
        out->status = APP_HEALTH_FAIL;
        snprintf(out->detail, sizeof out->detail, "%s %s is not writable", what, dir);
        return;
    }
    if (statvfs(dir, &vfs) != 0 || vfs.f_blocks == 0) {
        out->status = APP_HEALTH_WARN;
        snprintf(out->detail, sizeof out->detail, "cannot read free space of %s", dir);
        return;
    }
    double free_ratio = (double)vfs.f_bavail / (double)vfs.f_blocks;
    unsigned long long free_mb =
        (unsigned long long)vfs.f_bavail * vfs.f_frsize / (1024 * 1024);
    out->status = free_mb < 64 || free_ratio < 0.01   ? APP_HEALTH_FAIL
                  : free_ratio < 0.10 ? APP_HEALTH_WARN
                                      : APP_HEALTH_OK;
    snprintf(out->detail, sizeof out->detail, "%s, %llu MB free (%.0f%%)", dir, free_mb,
             free_ratio * 100);
}

static void add_component(json_t *list, const char *name, bool critical,
                          const health_result *r, app_health *overall)
{
    json_array_append_new(list, json_pack("{s:s, s:s, s:b, s:s}", "name", name, "status",
                                          health_status_name(r->status), "critical", critical,
                                          "detail", r->detail));
    app_health effect = r->status;
    if (!critical && effect == APP_HEALTH_FAIL)
        effect = APP_HEALTH_WARN;
    if (effect > *overall)
        *overall = effect;
}

app_health health_collect(app *a, json_t **components)
{
    json_t *list = json_array();
    app_health overall = APP_HEALTH_OK;
    health_result r;

    check_event_loop(a, &r);
    add_component(list, "event_loop", true, &r, &overall);
    pthread_mutex_lock(&health.lock);
    r = health.state_db;
    pthread_mutex_unlock(&health.lock);
    add_component(list, "state_db", true, &r, &overall);
    check_dir(a->data_dir, "data dir", &r);
    add_component(list, "data_dir", true, &r, &overall);
    check_dir(a->log_dir, "log dir", &r);
    add_component(list, "log_dir", false, &r, &overall);

    r.status = __atomic_load_n(&a->stopping, __ATOMIC_RELAXED) ? APP_HEALTH_FAIL : APP_HEALTH_OK;
    snprintf(r.detail, sizeof r.detail, "%s on %s, %lld connections open",
             r.status == APP_HEALTH_OK ? "serving" : "shutting down", a->url,
             (long long)metrics_http_connections());
    add_component(list, "api", true, &r, &overall);

    pthread_mutex_lock(&health.lock);
    for (size_t i = 0; i < health.count; i++) {
        memset(&r, 0, sizeof r);
        health.components[i].fn(a, &r, health.components[i].arg);
        add_component(list, health.components[i].name, health.components[i].critical, &r,
                      &overall);
    }
    pthread_mutex_unlock(&health.lock);
    *components = list;
    return overall;
}

static void add_check(json_t *checks, const char *name, app_health status, const char *detail,
                      const char *fix)
{
    json_t *c = json_pack("{s:s, s:s, s:s}", "name", name, "status", health_status_name(status),
                          "detail", detail);
    json_object_set_new(c, "fix", fix ? json_string(fix) : json_null());
    json_array_append_new(checks, c);
}

static bool listen_is_loopback(const char *listen)
{
    return str_has_prefix(listen, "127.") || str_has_prefix(listen, "[::1]") ||
           str_has_prefix(listen, "localhost:");
}

static void check_mode(json_t *checks, const char *name, const char *path, mode_t allowed,
                       const char *chmod_mode)
{
    struct stat st;
    char detail[512], fix[512];
    if (stat(path, &st) != 0) {
        snprintf(detail, sizeof detail, "%s does not exist", path);
        add_check(checks, name, APP_HEALTH_OK, detail, NULL);
        return;
    }
    mode_t extra = st.st_mode & 0777 & ~allowed;
    snprintf(detail, sizeof detail, "%s has mode %04o", path, (unsigned)(st.st_mode & 07777));
    snprintf(fix, sizeof fix, "chmod %s %s", chmod_mode, path);
    add_check(checks, name, extra ? APP_HEALTH_FAIL : APP_HEALTH_OK, detail, extra ? fix : NULL);
}

json_t *health_production_checks(app *a, const cx_config *cfg, app_health overall)
{
    json_t *checks = json_array();
    char detail[512];

    snprintf(detail, sizeof detail, "overall health is %s", health_overall_name(overall));
    add_check(checks, "components", overall, detail,
              overall == APP_HEALTH_OK ? NULL : "run 'caxton health-check --comprehensive'");

    bool loopback = listen_is_loopback(a->listen);
    snprintf(detail, sizeof detail, "API on %s%s", a->listen, a->tls ? " with TLS" : "");
    add_check(checks, "api_exposure", loopback || a->tls ? APP_HEALTH_OK : APP_HEALTH_FAIL, detail,
              loopback || a->tls ? NULL
                                 : "set api.tls (cert and key) or listen on 127.0.0.1 behind a "
                                   "TLS proxy");

    check_mode(checks, "data_dir_mode", a->data_dir, 0700, "700");
    char *token_file = path_join(a->data_dir, DATADIR_ADMIN_TOKEN);
    if (token_file)
        check_mode(checks, "admin_token_mode", token_file, 0600, "600");
    free(token_file);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        bool enough = rl.rlim_cur == RLIM_INFINITY ||
                      rl.rlim_cur >= (rlim_t)cfg->api_max_connections + 256;
        snprintf(detail, sizeof detail, "open file limit %llu for api.max_connections %lld",
                 (unsigned long long)rl.rlim_cur, (long long)cfg->api_max_connections);
        add_check(checks, "file_descriptors", enough ? APP_HEALTH_OK : APP_HEALTH_WARN, detail,
                  enough ? NULL
                         : "raise LimitNOFILE in the service unit, or lower api.max_connections");
    }

    log_level level = log_get_level();
    snprintf(detail, sizeof detail, "log level %s", log_level_name(level));
    add_check(checks, "log_level", level == LOG_DEBUG ? APP_HEALTH_WARN : APP_HEALTH_OK, detail,
              level == LOG_DEBUG ? "set logging.level: info (debug logs every request)" : NULL);
    return checks;
}
