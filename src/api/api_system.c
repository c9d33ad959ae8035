/* System endpoints: health, metrics, status, the OpenAPI document and the
 * effective configuration. */
#include <stdlib.h>
#include <string.h>

#include "agents/registry.h"
#include "api/routes.h"
#include "messaging/router.h"
#include "obs/metrics.h"
#include "server/health.h"

extern const char openapi_json[];
extern const size_t openapi_json_len;

static const char json_content_type[] = "application/json; charset=utf-8";

void api_health(http_request *req, http_response *res)
{
    (void)req;
    static const char ok[] = "{\"status\":\"ok\"}";
    http_reply_static(res, 200, json_content_type, ok, sizeof ok - 1);
}

void api_health_deep(http_request *req, http_response *res)
{
    json_t *components;
    app_health overall = health_collect(req->app, &components);
    http_reply_json(res, overall == APP_HEALTH_FAIL ? 503 : 200,
                    json_pack("{s:s, s:o}", "status", health_overall_name(overall), "components",
                              components));
}

void api_metrics(http_request *req, http_response *res)
{
    strbuf out;
    strbuf_init(&out);
    if (metrics_render(&out) < 0) {
        strbuf_free(&out);
        http_reply_error(res, req, 500, CX_ENOMEM, NULL, NULL, "out of memory");
        return;
    }
    size_t len = out.len;
    http_reply_owned(res, 200, "text/plain; version=0.0.4; charset=utf-8", strbuf_detach(&out),
                     len);
}

void api_openapi(http_request *req, http_response *res)
{
    (void)req;
    http_reply_static(res, 200, json_content_type, openapi_json, openapi_json_len);
}

void api_status(http_request *req, http_response *res)
{
    app *a = req->app;
    json_t *components;
    app_health overall = health_collect(a, &components);
    char started[40];
    time_format_rfc3339(a->started_ms, started, sizeof started);
    int active, revoked;
    auth_counts(&active, &revoked);
    json_t *server = json_pack(
        "{s:s, s:i, s:s, s:f, s:s, s:s, s:b, s:s, s:s}", "version", CAXTON_VERSION, "pid", a->pid,
        "started_at", started, "uptime_seconds", (double)(time_now_ms() - a->started_ms) / 1000.0,
        "url", a->url, "listen", a->listen, "tls", a->tls, "data_dir", a->data_dir, "log_dir",
        a->log_dir);
    json_object_set_new(server, "config_file",
                        a->config_file ? json_string(a->config_file) : json_null());
    json_t *counts = json_pack(
        "{s:{s:i, s:i}, s:{s:I, s:I}}", "tokens", "active", active, "revoked", revoked, "http",
        "connections",
        (json_int_t)metrics_http_connections(), "requests_total",
        (json_int_t)metrics_http_requests_total());
    size_t states[AGENT_FAILED + 1];
    registry_state_counts(a->agents, states);
    json_object_set_new(counts, "agents",
                        json_pack("{s:I, s:I, s:I, s:I}", "total",
                                  (json_int_t)registry_count(a->agents), "active",
                                  (json_int_t)states[AGENT_ACTIVE], "suspended",
                                  (json_int_t)states[AGENT_SUSPENDED], "failed",
                                  (json_int_t)states[AGENT_FAILED]));
    router_stats rs = {0};
    if (a->router)
        router_get_stats(a->router, &rs);
    json_object_set_new(
        counts, "messages",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "accepted", (json_int_t)rs.accepted,
                  "replied", (json_int_t)rs.replied, "failed", (json_int_t)rs.failed,
                  "dead_lettered", (json_int_t)rs.dead_lettered, "journal_pending",
                  (json_int_t)rs.journal_pending, "waiting", (json_int_t)rs.waiting));
    json_t *body = json_pack("{s:s, s:o, s:o, s:o}", "status", health_overall_name(overall),
                             "server", server, "components", components, "counts", counts);
    json_object_set_new(body, "production_checks",
                        health_production_checks(a, a->config, overall));
    http_reply_json(res, 200, body);
}

void api_config_effective(http_request *req, http_response *res)
{
    app *a = req->app;
    json_t *body = json_object();
    json_object_set_new(body, "file", a->config->file_path ? json_string(a->config->file_path)
                                                           : json_null());
    json_object_set_new(body, "values", config_effective_json(a->config, true));
    http_reply_json(res, 200, body);
}
