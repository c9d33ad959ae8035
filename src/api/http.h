/* The HTTP API server on libmicrohttpd.
 *
 * libmicrohttpd runs its own worker threads (epoll, `api.workers` of them).
 * Each request is matched against the route table (routes.c), authenticated,
 * its body read within `api.max_body` and parsed as JSON, then its handler
 * runs either inline on the HTTP thread (pure handlers: /health, /metrics)
 * or on the event loop: the connection is suspended, the job posted, and the
 * loop resumes the connection when the response is ready. */
#ifndef CAXTON_API_HTTP_H
#define CAXTON_API_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/auth.h"
#include "core/error.h"
#include "server/app.h"

#define HTTP_MAX_PATH_PARAMS 4
#define HTTP_REQUEST_ID_MAX 64
#define HTTP_MAX_QUERY_ARGS 32

typedef struct http_request {
    app *app;
    const char *method;
    const char *path;
    const char *params[HTTP_MAX_PATH_PARAMS]; /* {name} parts of the route, in order */
    json_t *query;                            /* query arguments as strings */
    json_t *body;                             /* parsed JSON body or NULL */
    auth_identity who;                        /* role NONE on public routes */
    char request_id[HTTP_REQUEST_ID_MAX + 1];
} http_request;

typedef struct http_response {
    unsigned status;
    char *body; /* owned (unless body_static); NULL for an empty body */
    size_t body_len;
    bool body_static; /* body points at data that outlives the server */
    const char *content_type;
    const char *allow;  /* Allow header for 405 */
    unsigned retry_after; /* seconds; 0 = none */
} http_response;

/* Sets a body that lives forever (a constant). */
void http_reply_static(http_response *res, unsigned status, const char *content_type,
                       const char *body, size_t len);
/* Sets a body the response now owns (free()d after sending). */
void http_reply_owned(http_response *res, unsigned status, const char *content_type, char *body,
                      size_t len);
/* Sets a JSON body (stolen). */
void http_reply_json(http_response *res, unsigned status, json_t *body);
/* Sets the error envelope; the status comes from the CX_E* code unless
 * `status` is non-zero, the API code from the table unless `api_code` is
 * given. details (may be NULL) is stolen. */
void http_reply_error(http_response *res, const http_request *req, unsigned status,
                      int cx_code, const char *api_code, json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* 500 without internals for the client; err goes to the log with the
 * request id. */
void http_reply_internal(http_response *res, const http_request *req, const cx_error *err);
/* A query argument or NULL. */
const char *http_query(const http_request *req, const char *name);
/* A time in a query (since=, until=): RFC 3339 or epoch milliseconds. */
bool http_time_arg(const char *text, uint64_t *out_ms);
/* limit (default 50, 1..500) and cursor; 0 or CX_EINVAL (reply already set). */
int http_page_args(const http_request *req, http_response *res, size_t *limit,
                   const char **cursor);

/* An answer that comes later. A ROUTE_LOOP handler that cannot answer yet
 * (it waits for an agent's reply, or for a commit) calls http_defer() and
 * returns with the response unset; later, on the loop thread, it fills
 * http_pending_response() and calls http_pending_finish() exactly once. The
 * connection stays suspended in between, costing no thread. Whoever holds a
 * pending answer must finish it before the server stops (the router answers
 * its waiters 503 at shutdown). */
typedef struct http_pending http_pending;
http_pending *http_defer(http_request *req);
http_request *http_pending_request(http_pending *p);
http_response *http_pending_response(http_pending *p);
void http_pending_finish(http_pending *p);

typedef struct http_server http_server;

/* Checks api.tls before anything is started: both files are PEM, the key is
 * the certificate's. CX_ECONFIG with a message naming the file otherwise.
 * *expires_at (may be NULL) gets the certificate's expiry, epoch seconds. */
int http_check_tls(const cx_config *cfg, int64_t *expires_at, cx_error *err);
/* Binds api.listen and starts the worker threads. */
http_server *http_start(app *a, const cx_config *cfg, cx_error *err);
/* Applies reloadable settings (public paths, body limit). */
int http_reconfigure(http_server *s, const cx_config *cfg, cx_error *err);
/* Stops accepting new connections; in-flight requests go on. */
void http_quiesce(http_server *s);
/* Requests answered or waiting; 0 means drained. */
int http_in_flight(http_server *s);
void http_stop(http_server *s);

#endif
