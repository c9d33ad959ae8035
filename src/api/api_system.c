/* System endpoints: health, metrics, status, the OpenAPI document and the
 * effective configuration. */
#include <stdlib.h>
#include <string.h>

#include "api/routes.h"
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
