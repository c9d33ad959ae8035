/* The HTTP server: request life cycle on libmicrohttpd. See http.h.
 *
 * A request goes through on_request() several times: first with headers
 * (route, auth and size checks happen here, before any body is read), then
 * once per body chunk, then once with no data (parse, then run or dispatch).
 * A dispatched request's connection is suspended until the loop resumes it
 * with the response filled in; the next call then queues it. */
#include "api/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/routes.h"
#include "core/log.h"
#include "core/units.h"
#include "core/util.h"
#include "obs/metrics.h"

#define LISTEN_BACKLOG 4096
#define CONNECTION_MEMORY (64 * 1024)
#define BODY_DISCARD_MAX (16 * 1024 * 1024) /* over api.max_body, before hanging up */

struct http_server {
    struct MHD_Daemon *daemon;
    app *app;
    int listen_fd;              /* ours until libmicrohttpd takes it */
    int64_t max_connections;
    bool quiesced;
    uint64_t max_body;          /* atomic */
    pthread_rwlock_t public_lock;
    char **public_paths;
    size_t public_count;
    char *tls_key, *tls_cert;   /* kept alive for libmicrohttpd */
    uint64_t id_prefix;
    uint64_t id_counter;        /* atomic */
};

typedef struct request_ctx {
    http_server *server;
    struct MHD_Connection *conn;
    const route *route;
    size_t metric_id;
    uint64_t start_ns;
    http_request req;
    http_response res;
    strbuf body;
    uint64_t body_received; /* bytes of body seen, kept or not */
    bool body_too_big;
    bool answered;   /* res is filled in */
    bool dispatched; /* waiting for the loop */
    bool deferred;   /* the handler answers later (http_defer) */
    char *path_copy;
} request_ctx;

/* ---- responses ---------------------------------------------------------- */

static void release_body(http_response *res)
{
    if (!res->body_static)
        free(res->body);
    res->body = NULL;
    res->body_static = false;
}

void http_reply_static(http_response *res, unsigned status, const char *content_type,
                       const char *body, size_t len)
{
    release_body(res);
    res->status = status;
    res->content_type = content_type;
    res->body = (char *)body;
    res->body_len = len;
    res->body_static = true;
}

void http_reply_owned(http_response *res, unsigned status, const char *content_type, char *body,
                      size_t len)
{
    release_body(res);
    res->status = status;
    res->content_type = content_type;
    res->body = body;
    res->body_len = len;
}

void http_reply_json(http_response *res, unsigned status, json_t *body)
{
    release_body(res);
    res->status = status;
    res->content_type = "application/json; charset=utf-8";
    res->body = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    res->body_len = res->body ? strlen(res->body) : 0;
    if (body && !res->body) {
        res->status = 500;
        res->body = str_dup("{\"error\":{\"code\":\"INTERNAL\",\"message\":\"out of memory\"}}");
        res->body_len = res->body ? strlen(res->body) : 0;
    }
    json_decref(body);
}

void http_reply_error(http_response *res, const http_request *req, unsigned status, int cx_code,
                      const char *api_code, json_t *details, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    /* Messages quote client input (paths, names), which need not be UTF-8,
     * and truncation can cut a character in two: JSON strings must be UTF-8. */
    text_make_utf8(message);
    status = status ? status : (unsigned)cx_error_http_status(cx_code);
    json_t *error = json_pack("{s:s, s:s, s:o, s:s}", "code",
                              api_code ? api_code : cx_error_api_code(cx_code), "message", message,
                              "details", details ? details : json_object(), "request_id",
                              req ? req->request_id : "");
    json_t *body = error ? json_pack("{s:o}", "error", error) : NULL;
    if (!body) {
        static const char fallback[] = "{\"error\":{\"code\":\"INTERNAL\","
                                       "\"message\":\"the error could not be encoded\"}}";
        http_reply_static(res, status, "application/json; charset=utf-8", fallback,
                          sizeof fallback - 1);
        return;
    }
    http_reply_json(res, status, body);
}

void http_reply_internal(http_response *res, const http_request *req, const cx_error *err)
{
    log_event(LOG_STREAM_SERVER, LOG_ERROR, "http",
              json_pack("{s:s, s:s, s:s}", "request_id", req->request_id, "method", req->method,
                        "path", req->path),
              "%s", err->msg);
    http_reply_error(res, req, 500, CX_EINTERNAL, NULL, NULL,
                     "internal error; the server log has the details under request id %s",
                     req->request_id);
}

bool http_time_arg(const char *text, uint64_t *out_ms)
{
    if (time_parse_rfc3339(text, out_ms))
        return true;
    char *end;
    errno = 0;
    unsigned long long ms = strtoull(text, &end, 10);
    if (errno || *end || end == text || text[0] == '-')
        return false;
    *out_ms = ms;
    return true;
}

const char *http_query(const http_request *req, const char *name)
{
    return req->query ? json_string_value(json_object_get(req->query, name)) : NULL;
}

int http_page_args(const http_request *req, http_response *res, size_t *limit,
                   const char **cursor)
{
    *limit = 50;
    *cursor = http_query(req, "cursor");
    const char *text = http_query(req, "limit");
    if (text) {
        char *end;
        errno = 0;
        long v = strtol(text, &end, 10);
        if (errno || *end || end == text || v < 1 || v > 500) {
            http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                             json_pack("{s:s}", "parameter", "limit"),
                             "limit must be an integer from 1 to 500, got '%.40s'", text);
            return CX_EINVAL;
        }
        *limit = (size_t)v;
    }
    return 0;
}

static enum MHD_Result queue_response(request_ctx *ctx)
{
    http_response *res = &ctx->res;
    bool owned = res->body && !res->body_static;
    struct MHD_Response *r = MHD_create_response_from_buffer(
        res->body_len, res->body ? res->body : (char *)"",
        owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    res->body = NULL; /* libmicrohttpd frees an owned body now */
    res->body_static = false;
    if (res->content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
    MHD_add_response_header(r, "X-Request-Id", ctx->req.request_id);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (res->allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, res->allow);
    if (res->status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"caxton\"");
    if (res->retry_after) {
        char seconds[16];
        snprintf(seconds, sizeof seconds, "%u", res->retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
    }
    enum MHD_Result rc = MHD_queue_response(ctx->conn, res->status, r);
    MHD_destroy_response(r);
    return rc;
}

/* ---- request start ------------------------------------------------------ */

static bool request_id_valid(const char *id)
{
    size_t len = strlen(id);
    if (len == 0 || len > HTTP_REQUEST_ID_MAX)
        return false;
    for (const char *p = id; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

static void assign_request_id(request_ctx *ctx)
{
    const char *given = MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (given && request_id_valid(given)) {
        snprintf(ctx->req.request_id, sizeof ctx->req.request_id, "%s", given);
        return;
    }
    uint64_t n = __atomic_add_fetch(&ctx->server->id_counter, 1, __ATOMIC_RELAXED);
    snprintf(ctx->req.request_id, sizeof ctx->req.request_id, "%08llx%012llx",
             (unsigned long long)(ctx->server->id_prefix & 0xffffffffu),
             (unsigned long long)(n & 0xffffffffffffULL));
}

typedef struct query_collect {
    json_t *args;
    bool too_many;
} query_collect;

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    query_collect *q = cls;
    if (json_object_size(q->args) >= HTTP_MAX_QUERY_ARGS || strlen(key) > 64 ||
        (value && strlen(value) > 4096)) {
        q->too_many = true;
        return MHD_NO;
    }
    if (!text_is_utf8(key, strlen(key)) || (value && !text_is_utf8(value, strlen(value)))) {
        q->too_many = true;
        return MHD_NO;
    }
    json_object_set_new(q->args, key, json_string(value ? value : ""));
    return MHD_YES;
}

static bool path_is_public(http_server *s, const char *path)
{
    bool found = false;
    pthread_rwlock_rdlock(&s->public_lock);
    for (size_t i = 0; i < s->public_count && !found; i++)
        found = strcmp(s->public_paths[i], path) == 0;
    pthread_rwlock_unlock(&s->public_lock);
    return found;
}

typedef struct touch_job {
    app *app;
    char token_id[TOKEN_ID_LEN + 1];
} touch_job;

static void touch_token(void *arg)
{
    touch_job *job = arg;
    cx_error err;
    if (state_token_touch(job->app->state, job->token_id, time_now_ms(), &err) < 0)
        log_warn("auth", "%s", err.msg);
    free(job);
}

/* Records a token's use on the loop without waiting for it. */
static void schedule_touch(request_ctx *ctx)
{
    app *a = ctx->server->app;
    if (__atomic_load_n(&a->stopping, __ATOMIC_RELAXED))
        return;
    touch_job *job = malloc(sizeof *job);
    if (!job)
        return;
    job->app = a;
    memcpy(job->token_id, ctx->req.who.token_id, sizeof job->token_id);
    if (dispatch_post(a->dispatch, touch_token, job) < 0)
        free(job);
}

static const char *role_article(token_role role)
{
    return role == TOKEN_ROLE_ADMIN || role == TOKEN_ROLE_OPERATOR ? "an" : "a";
}

/* Route, auth and declared-size checks. Returns false when ctx->res is set. */
static bool check_request(request_ctx *ctx, const char *method, const char *url)
{
    http_server *s = ctx->server;
    http_request *req = &ctx->req;
    size_t url_len = strlen(url);
    ctx->path_copy = malloc(url_len + 1);
    if (!ctx->path_copy) {
        http_reply_error(&ctx->res, req, 500, CX_ENOMEM, NULL, NULL, "out of memory");
        return false;
    }
    bool not_allowed = false;
    static __thread char allow[128];
    ctx->route = routes_match(method, url, ctx->path_copy, req->params, &not_allowed, allow,
                              sizeof allow, &ctx->metric_id);
    if (!ctx->route) {
        if (not_allowed) {
            http_reply_error(&ctx->res, req, 405, CX_EMETHOD, NULL,
                             json_pack("{s:s}", "allow", allow), "%s is not allowed on %s; use %s",
                             method, url, allow);
            ctx->res.allow = allow;
        } else {
            http_reply_error(&ctx->res, req, 404, CX_ENOTFOUND, "ROUTE_NOT_FOUND", NULL,
                             "no such endpoint: %s %.200s (the API is described at "
                             "/api/v1/openapi.json)", method, url);
        }
        return false;
    }

    query_collect q = {.args = json_object()};
    MHD_get_connection_values(ctx->conn, MHD_GET_ARGUMENT_KIND, collect_query, &q);
    req->query = q.args;
    if (q.too_many) {
        http_reply_error(&ctx->res, req, 400, CX_EPARSE, "INVALID_PARAMETER", NULL,
                         "query string rejected: at most %d arguments, names up to 64 bytes, "
                         "values up to 4096 bytes, UTF-8 only", HTTP_MAX_QUERY_ARGS);
        return false;
    }

    const route *r = ctx->route;
    bool public = r->role == TOKEN_ROLE_NONE || (r->public_by_config && path_is_public(s, url));
    if (!public) {
        const char *header =
            MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        cx_error err;
        bool touch = false;
        if (auth_check(header, &req->who, &touch, &err) < 0) {
            http_reply_error(&ctx->res, req, 401, CX_EAUTH, NULL, NULL, "%s", err.msg);
            return false;
        }
        if (touch)
            schedule_touch(ctx);
        if (req->who.role < r->role) {
            http_reply_error(&ctx->res, req, 403, CX_EFORBIDDEN, NULL,
                             json_pack("{s:s, s:s}", "required_role", token_role_name(r->role),
                                       "token_role", token_role_name(req->who.role)),
                             "%s %s needs %s %s token; token '%s' has the %s role", method,
                             r->pattern, role_article(r->role), token_role_name(r->role),
                             req->who.name, token_role_name(req->who.role));
            return false;
        }
    }

    const char *length =
        MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t max_body = __atomic_load_n(&s->max_body, __ATOMIC_RELAXED);
    if (length && strtoull(length, NULL, 10) > max_body) {
        char limit[32];
        units_format_size(max_body, limit, sizeof limit);
        http_reply_error(&ctx->res, req, 413, CX_ETOOBIG, NULL,
                         json_pack("{s:I}", "max_body", (json_int_t)max_body),
                         "request body of %s bytes is over the limit of %s (api.max_body)",
                         length, limit);
        return false;
    }
    return true;
}

/* ---- request body and execution ---------------------------------------- */

static bool parse_body(request_ctx *ctx)
{
    http_request *req = &ctx->req;
    if (ctx->body_too_big) {
        char limit[32];
        uint64_t max_body = __atomic_load_n(&ctx->server->max_body, __ATOMIC_RELAXED);
        units_format_size(max_body, limit, sizeof limit);
        http_reply_error(&ctx->res, req, 413, CX_ETOOBIG, NULL,
                         json_pack("{s:I}", "max_body", (json_int_t)max_body),
                         "request body is over the limit of %s (api.max_body)", limit);
        return false;
    }
    if (!ctx->route->takes_body || ctx->body.len == 0)
        return true;
    if (!text_is_utf8(ctx->body.data, ctx->body.len)) {
        http_reply_error(&ctx->res, req, 400, CX_EPARSE, "INVALID_UTF8", NULL,
                         "request body is not valid UTF-8; send JSON encoded as UTF-8");
        return false;
    }
    json_error_t jerr;
    req->body = json_loadb(ctx->body.data, ctx->body.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                           &jerr);
    if (!req->body) {
        http_reply_error(&ctx->res, req, 400, CX_EPARSE, "INVALID_JSON",
                         json_pack("{s:i, s:i}", "line", jerr.line, "column", jerr.column),
                         "request body is not valid JSON: %s at line %d, column %d", jerr.text,
                         jerr.line, jerr.column);
        return false;
    }
    return true;
}

static void run_on_loop(void *arg)
{
    request_ctx *ctx = arg;
    ctx->route->handler(&ctx->req, &ctx->res);
    if (ctx->deferred)
        return;
    ctx->answered = true;
    MHD_resume_connection(ctx->conn);
}

/* The handle is the request's context, found from the request it holds. */
http_pending *http_defer(http_request *req)
{
    request_ctx *ctx = (request_ctx *)((char *)req - offsetof(request_ctx, req));
    ctx->deferred = true;
    return (http_pending *)ctx;
}

http_request *http_pending_request(http_pending *p)
{
    return &((request_ctx *)p)->req;
}

http_response *http_pending_response(http_pending *p)
{
    return &((request_ctx *)p)->res;
}

void http_pending_finish(http_pending *p)
{
    request_ctx *ctx = (request_ctx *)p;
    ctx->answered = true;
    MHD_resume_connection(ctx->conn);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    http_server *s = cls;
    request_ctx *ctx = *con_cls;
    if (!ctx) {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        *con_cls = ctx;
        metrics_http_request_started();
        ctx->server = s;
        ctx->conn = conn;
        ctx->start_ns = time_monotonic_ns();
        ctx->metric_id = routes_unmatched_id();
        ctx->req.app = s->app;
        ctx->req.method = method;
        ctx->req.path = url;
        strbuf_init(&ctx->body);
        assign_request_id(ctx);
        if (!check_request(ctx, method, url)) {
            ctx->answered = true;
            return queue_response(ctx);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        uint64_t max_body = __atomic_load_n(&s->max_body, __ATOMIC_RELAXED);
        size_t chunk = *upload_data_size;
        *upload_data_size = 0;
        ctx->body_received += chunk;
        if (ctx->body_received > max_body) {
            /* libmicrohttpd 0.9.75 cannot answer in the middle of a body, so
             * the rest is read and dropped, up to a bound; a client that sends
             * more than that is cut off without an answer. */
            ctx->body_too_big = true;
            return ctx->body_received - max_body > BODY_DISCARD_MAX ? MHD_NO : MHD_YES;
        }
        if (ctx->route->takes_body && strbuf_append(&ctx->body, upload_data, chunk) < 0)
            return MHD_NO;
        return MHD_YES;
    }
    if (ctx->answered)
        return queue_response(ctx);
    if (ctx->dispatched)
        return MHD_YES;
    if (!parse_body(ctx)) {
        ctx->answered = true;
        return queue_response(ctx);
    }
    if (ctx->route->mode == ROUTE_INLINE) {
        ctx->route->handler(&ctx->req, &ctx->res);
        ctx->answered = true;
        return queue_response(ctx);
    }
    if (__atomic_load_n(&s->app->stopping, __ATOMIC_RELAXED)) {
        http_reply_error(&ctx->res, &ctx->req, 503, CX_EUNAVAIL, "SHUTTING_DOWN", NULL,
                         "the server is shutting down; retry against the restarted server");
        ctx->res.retry_after = 5;
        ctx->answered = true;
        return queue_response(ctx);
    }
    ctx->dispatched = true;
    MHD_suspend_connection(conn);
    if (dispatch_post(s->app->dispatch, run_on_loop, ctx) < 0) {
        http_reply_error(&ctx->res, &ctx->req, 503, CX_EUNAVAIL, "SHUTTING_DOWN", NULL,
                         "the server is shutting down; retry against the restarted server");
        ctx->res.retry_after = 5;
        ctx->answered = true;
        MHD_resume_connection(conn);
    }
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)cls;
    request_ctx *ctx = *con_cls;
    if (!ctx)
        return;
    uint64_t elapsed = time_monotonic_ns() - ctx->start_ns;
    unsigned status = ctx->answered ? ctx->res.status : 499;
    metrics_http_observe(ctx->metric_id, ctx->req.method, status, elapsed);
    if (status >= 500 || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_event(LOG_STREAM_SERVER, status >= 500 ? LOG_WARN : LOG_DEBUG, "http",
                  json_pack("{s:s, s:s, s:i, s:i}", "request_id", ctx->req.request_id, "method",
                            ctx->req.method, "status", (int)status, "termination", (int)toe),
                  "request %s %s ended with %u", ctx->req.method,
                  ctx->route ? ctx->route->pattern : "(unmatched)", status);
    json_decref(ctx->req.query);
    json_decref(ctx->req.body);
    release_body(&ctx->res);
    strbuf_free(&ctx->body);
    free(ctx->path_copy);
    free(ctx);
    *con_cls = NULL;
    metrics_http_request_finished();
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    (void)conn;
    (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        metrics_http_connection_opened();
    else
        metrics_http_connection_closed();
}

/* Refuses connections over api.max_connections at once, so that a full
 * server closes them instead of leaving them unserved in the backlog. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    http_server *s = cls;
    return metrics_http_connections() < s->max_connections ? MHD_YES : MHD_NO;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decoding that leaves "%00" as it is: a decoded NUL would cut the
 * path short, so "/health%00.json" would be served as "/health". */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *text)
{
    (void)cls;
    (void)conn;
    char *out = text;
    for (const char *in = text; *in; in++) {
        int hi, lo;
        if (*in == '%' && (hi = hex_value(in[1])) >= 0 && (lo = hex_value(in[2])) >= 0 &&
            (hi | lo) != 0) {
            *out++ = (char)(hi * 16 + lo);
            in += 2;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
    return (size_t)(out - text);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
        msg[--len] = '\0';
    log_debug("http", "%s", msg);
}

/* ---- listening ---------------------------------------------------------- */

static int listen_socket(int fd)
{
    return listen(fd, LISTEN_BACKLOG);
}

static int bind_listen(const char *address, char *bound, size_t bound_size, cx_error *err)
{
    char host[HOSTPORT_HOST_MAX + 1], port[8];
    unsigned port_number;
    if (hostport_split(address, host, sizeof host, &port_number, err) < 0)
        return err->code = CX_ECONFIG, cx_error_wrap(err, "api.listen");
    snprintf(port, sizeof port, "%u", port_number);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *list = NULL;
    int gai = getaddrinfo(host, port, &hints, &list);
    if (gai != 0)
        return cx_error_set(err, CX_ECONFIG, "cannot resolve api.listen host '%s': %s", host,
                            gai_strerror(gai));
    int fd = -1, last_errno = 0;
    for (struct addrinfo *ai = list; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen_socket(fd) < 0) {
            last_errno = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(list);
    if (fd < 0) {
        if (last_errno == EADDRINUSE)
            return cx_error_set(err, CX_EIO,
                                "cannot listen on %s: address already in use (another process "
                                "holds the port; find it with 'ss -ltnp', or choose another "
                                "address with --listen)", address);
        return cx_error_set(err, CX_EIO, "cannot listen on %s: %s", address,
                            strerror(last_errno));
    }
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port_no = 0;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
        if (addr.ss_family == AF_INET6) {
            struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
            inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof ip);
            port_no = ntohs(a6->sin6_port);
            snprintf(bound, bound_size, "[%s]:%u", ip, port_no);
        } else {
            struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
            inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof ip);
            port_no = ntohs(a4->sin_port);
            snprintf(bound, bound_size, "%s:%u", ip, port_no);
        }
    }
    return fd;
}

/* ---- start and stop ----------------------------------------------------- */

static int set_public_paths(http_server *s, const cx_config *cfg, cx_error *err)
{
    char **paths = calloc(cfg->api_public_count + 1, sizeof *paths);
    if (!paths)
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    for (size_t i = 0; i < cfg->api_public_count; i++) {
        if (!(paths[i] = str_dup(cfg->api_public[i]))) {
            for (size_t j = 0; j < i; j++)
                free(paths[j]);
            free(paths);
            return cx_error_set(err, CX_ENOMEM, "out of memory");
        }
    }
    pthread_rwlock_wrlock(&s->public_lock);
    char **old = s->public_paths;
    size_t old_count = s->public_count;
    s->public_paths = paths;
    s->public_count = cfg->api_public_count;
    pthread_rwlock_unlock(&s->public_lock);
    for (size_t i = 0; i < old_count; i++)
        free(old[i]);
    free(old);
    return 0;
}

int http_reconfigure(http_server *s, const cx_config *cfg, cx_error *err)
{
    __atomic_store_n(&s->max_body, cfg->api_max_body, __ATOMIC_RELAXED);
    return set_public_paths(s, cfg, err);
}

static void free_server(http_server *s)
{
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    for (size_t i = 0; i < s->public_count; i++)
        free(s->public_paths[i]);
    free(s->public_paths);
    pthread_rwlock_destroy(&s->public_lock);
    free(s->tls_key);
    free(s->tls_cert);
    free(s);
}

static int tls_error(cx_error *err, const char *key, const char *path, const char *what, int rc)
{
    return cx_error_set(err, CX_ECONFIG, "%s %s %s (%s)", key, path, what, gnutls_strerror(rc));
}

/* The key matches the certificate when their public key ids agree. */
static int tls_check_pair(const gnutls_datum_t *cert_pem, const gnutls_datum_t *key_pem,
                          const cx_config *cfg, int64_t *expires_at, cx_error *err)
{
    gnutls_x509_crt_t crt = NULL;
    gnutls_x509_privkey_t key = NULL;
    unsigned char crt_id[64], key_id[64];
    size_t crt_id_len = sizeof crt_id, key_id_len = sizeof key_id;
    int rc = gnutls_x509_crt_init(&crt);
    if (rc == 0 && (rc = gnutls_x509_crt_import(crt, cert_pem, GNUTLS_X509_FMT_PEM)) < 0) {
        rc = tls_error(err, "api.tls.cert", cfg->api_tls_cert, "is not a PEM certificate", rc);
        goto out;
    }
    if (rc == 0 && (rc = gnutls_x509_privkey_init(&key)) == 0 &&
        (rc = gnutls_x509_privkey_import2(key, key_pem, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        rc = tls_error(err, "api.tls.key", cfg->api_tls_key,
                       "is not an unencrypted PEM private key", rc);
        goto out;
    }
    if (rc == 0 && (gnutls_x509_crt_get_key_id(crt, 0, crt_id, &crt_id_len) < 0 ||
                    gnutls_x509_privkey_get_key_id(key, 0, key_id, &key_id_len) < 0 ||
                    crt_id_len != key_id_len || memcmp(crt_id, key_id, crt_id_len) != 0)) {
        rc = cx_error_set(err, CX_ECONFIG,
                          "api.tls.key %s does not belong to the certificate in api.tls.cert %s",
                          cfg->api_tls_key, cfg->api_tls_cert);
        goto out;
    }
    if (rc < 0) {
        rc = cx_error_set(err, CX_EINTERNAL, "TLS check: %s", gnutls_strerror(rc));
        goto out;
    }
    if (expires_at)
        *expires_at = (int64_t)gnutls_x509_crt_get_expiration_time(crt);
out:
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (key)
        gnutls_x509_privkey_deinit(key);
    return rc;
}

int http_check_tls(const cx_config *cfg, int64_t *expires_at, cx_error *err)
{
    if (!cfg->api_tls_cert || !cfg->api_tls_key)
        return 0;
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    int rc = fs_read_file(cfg->api_tls_cert, 1024 * 1024, &cert, &cert_len, err);
    if (rc == 0)
        rc = fs_read_file(cfg->api_tls_key, 1024 * 1024, &key, &key_len, err);
    if (rc < 0) {
        err->code = rc = CX_ECONFIG;
        cx_error_wrap(err, "api.tls");
    } else {
        gnutls_datum_t cert_pem = {(unsigned char *)cert, (unsigned)cert_len};
        gnutls_datum_t key_pem = {(unsigned char *)key, (unsigned)key_len};
        rc = tls_check_pair(&cert_pem, &key_pem, cfg, expires_at, err);
    }
    free(cert);
    if (key) {
        memset(key, 0, key_len);
        free(key);
    }
    return rc;
}

static int load_tls(http_server *s, const cx_config *cfg, cx_error *err)
{
    if (!cfg->api_tls_cert)
        return 0;
    if (!MHD_is_feature_supported(MHD_FEATURE_TLS))
        return cx_error_set(err, CX_ECONFIG,
                            "api.tls is set but this libmicrohttpd has no TLS support");
    size_t len;
    int rc = fs_read_file(cfg->api_tls_cert, 1024 * 1024, &s->tls_cert, &len, err);
    if (rc == 0)
        rc = fs_read_file(cfg->api_tls_key, 1024 * 1024, &s->tls_key, &len, err);
    return rc < 0 ? cx_error_wrap(err, "api.tls") : 0;
}

http_server *http_start(app *a, const cx_config *cfg, cx_error *err)
{
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    s->app = a;
    s->listen_fd = -1;
    pthread_rwlock_init(&s->public_lock, NULL);
    random_bytes(&s->id_prefix, sizeof s->id_prefix, NULL);
    routes_init();
    size_t names;
    const char *const *labels = routes_metric_names(&names);
    metrics_init(labels, names);
    if (http_reconfigure(s, cfg, err) < 0 || load_tls(s, cfg, err) < 0) {
        free_server(s);
        return NULL;
    }
    s->listen_fd = bind_listen(cfg->api_listen, a->listen, sizeof a->listen, err);
    if (s->listen_fd < 0) {
        free_server(s);
        return NULL;
    }
    a->tls = s->tls_cert != NULL;
    char local[150];
    hostport_local(a->listen, local, sizeof local); /* how this host reaches it */
    snprintf(a->url, sizeof a->url, "%s://%s", a->tls ? "https" : "http", local);

    /* poll(), not epoll: with epoll, libmicrohttpd 0.9.75's MHD_quiesce_daemon
     * races its own worker threads to remove the listen socket from the epoll
     * set, and the loser aborts the process ("Failed to remove listen FD
     * from epoll set") at shutdown. With poll the quiesce is signalled to
     * the workers through their ITC instead. */
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (a->tls)
        flags |= MHD_USE_TLS;
    unsigned idle_s = (unsigned)((cfg->api_idle_timeout_ms + 999) / 1000);
    s->max_connections = cfg->api_max_connections;
    /* libmicrohttpd splits its own limit across threads and stops accepting
     * when one is full; ours (on_accept) is exact, so give it headroom. */
    unsigned mhd_limit = (unsigned)cfg->api_max_connections + 64 * (unsigned)cfg->api_workers;
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_OptionItem no_options[] = {{MHD_OPTION_END, 0, NULL}};
    s->daemon = MHD_start_daemon(
        flags, 0, on_accept, s, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->api_workers, MHD_OPTION_CONNECTION_LIMIT,
        mhd_limit, MHD_OPTION_CONNECTION_TIMEOUT, idle_s, MHD_OPTION_UNESCAPE_CALLBACK, unescape,
        s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, s, MHD_OPTION_ARRAY,
        a->tls ? tls_options : no_options, MHD_OPTION_END);
    if (!s->daemon) {
        cx_error_set(err, CX_EIO,
                     "cannot start the HTTP server on %s (see the debug log; with TLS, check "
                     "that api.tls cert and key are PEM files that belong together)",
                     a->listen);
        free_server(s);
        return NULL;
    }
    s->listen_fd = -1; /* libmicrohttpd closes it now */
    return s;
}

void http_quiesce(http_server *s)
{
    if (!s || !s->daemon || s->quiesced)
        return;
    s->quiesced = true;
    /* Closing the socket at once makes new clients fail fast instead of
     * waiting in the backlog of a server that will never accept them. */
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

int http_in_flight(http_server *s)
{
    return s ? (int)metrics_http_requests_in_flight() : 0;
}

void http_stop(http_server *s)
{
    if (!s)
        return;
    if (s->daemon)
        MHD_stop_daemon(s->daemon);
    free_server(s);
}
