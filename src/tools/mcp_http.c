/* The Streamable HTTP transport of an MCP server: one session with a
 * server reached by URL, in the same role as the stdio child
 * (mcp_process.c), so the hub's JSON-RPC logic does not care which it has.
 *
 * Every message the hub sends is one HTTP POST to the server's URL
 * (Content-Type: application/json; Accept: application/json,
 * text/event-stream; the operator's `headers`; Mcp-Session-Id once the
 * server has given one on the answer to initialize; MCP-Protocol-Version
 * once initialize has agreed one). What comes back is cut into JSON-RPC
 * messages and reported like the child's lines: a JSON body is one message,
 * an SSE stream (text/event-stream) gives one per event, its `data:` lines
 * joined. 202 Accepted (the answer to notifications and responses) carries
 * nothing. A request's stream is dropped as soon as its response has come.
 *
 * The transfers are carried by a curl multi handle of this connection's
 * own, driven by the loop (a uv_poll per socket, a uv_timer for curl's
 * timeouts) as the LLM client drives its own. Messages are collected inside
 * curl's callbacks and handed to the owner only after
 * curl_multi_socket_action has returned, so the owner may send, abandon or
 * stop from its callbacks.
 *
 * Bounds: a JSON body, an SSE line and an SSE event's data are each at most
 * max_result + MCP_LINE_SLACK bytes; over that the transfer is stopped and
 * its request alone fails (tool-result-too-large). A request whose answer
 * ends without its response fails alone (tool-protocol-error). The whole
 * connection ends (`gone`) when the server cannot be reached, a request is
 * answered with an HTTP error (5xx: tool-server-unavailable, other codes:
 * tool-protocol-error), the session has expired (404 for a request that
 * carried the session id: the hub starts a new session), or the session id
 * is malformed. Errors answering notifications are only logged.
 *
 * The optional GET stream for messages the server starts on its own is not
 * opened: notifications such as tools/list_changed arrive only inside the
 * streams answering POSTs. The session is not ended with DELETE; the
 * server expires it. The header values (which may carry credentials) are
 * never logged and are wiped from memory when freed. */
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/curl_safety.h"
#include "core/log.h"
#include "core/util.h"
#include "tools/mcp.h"
#include "tools/mcp_internal.h"

#define SESSION_MAX 4096            /* bytes of an Mcp-Session-Id (signed tokens are long) */
#define VERSION_MAX 32              /* bytes of a protocol version */
#define ERROR_BODY_KEEP 160         /* bytes of an error body quoted */
#define CONNECT_TIMEOUT_MS 10000L
#define TRANSFER_SLACK_MS 5000u     /* a transfer's own limit is the server's timeout + this */
#define XFERS_MAX 1024              /* transfers in flight on one connection */
#define HOST_CONNECTIONS_MAX 32L    /* sockets to one server; more transfers wait for one */

typedef struct http_msg {
    struct http_msg *next;
    size_t len;
    char data[]; /* NUL-terminated at len */
} http_msg;

typedef enum body_kind { BODY_UNKNOWN, BODY_JSON, BODY_SSE, BODY_DISCARD } body_kind;

typedef struct http_xfer http_xfer;

struct http_xfer {
    mcp_http *conn;
    http_xfer *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    uint64_t id;           /* the request's JSON-RPC id; 0 for notifications and responses */
    bool first;            /* the connection's first request: initialize */
    bool had_session;      /* it carried the session id */
    bool dead;             /* finished or abandoned: freed once nothing runs */
    bool too_big, answered, session_bad, event_skip;
    body_kind kind;
    long status;
    uint64_t received;     /* bytes of a discarded body */
    strbuf data;           /* a JSON body, an SSE event's data, or an error body's start */
    strbuf line;           /* SSE: the line being read */
    unsigned data_lines;
    bool after_cr;
    http_msg *queue, **queue_tail;
    char errbuf[CURL_ERROR_SIZE];
};

typedef struct http_sock {
    mcp_http *conn;
    struct http_sock *prev, *next;
    uv_poll_t poll;
    curl_socket_t fd;
} http_sock;

struct mcp_http {
    const mcp_child_events *ev; /* NULL once stopped */
    void *owner;
    void (*closed)(void *ctx);
    void *ctx;
    mcp_server_config *cfg;     /* a reference */
    CURLM *multi;
    uv_timer_t timer;           /* curl's timeouts */
    unsigned open;              /* handles whose close callback has not run */
    http_xfer *xfers;
    size_t xfer_count;
    http_sock *socks;
    unsigned busy;              /* inside a pump: nothing is freed */
    bool stopping, reported, started_first;
    uint64_t limit;
    char session[SESSION_MAX + 1];
    char version[VERSION_MAX + 1];
};

static void http_log(const mcp_http *c, log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void http_log(const mcp_http *c, log_level level, const char *fmt, ...)
{
    if (level < log_get_level())
        return;
    char msg[CX_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    text_make_utf8(msg);
    log_event(LOG_STREAM_SERVER, level, "mcp", json_pack("{s:s}", "server", c->cfg->name), "%s",
              msg);
}

/* ---- Transfers: freeing ---------------------------------------------------------------------- */

static void wipe_headers(struct curl_slist *list)
{
    for (struct curl_slist *h = list; h; h = h->next) {
        volatile char *p = h->data; /* one of them may carry a credential */
        while (*p)
            *p++ = '\0';
    }
    curl_slist_free_all(list);
}

static void queue_free(http_xfer *x)
{
    while (x->queue) {
        http_msg *m = x->queue;
        x->queue = m->next;
        free(m);
    }
    x->queue_tail = &x->queue;
}

static void xfer_free(http_xfer *x)
{
    mcp_http *c = x->conn;
    if (x->prev)
        x->prev->next = x->next;
    else
        c->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    c->xfer_count--;
    if (x->easy) {
        if (c->multi)
            curl_multi_remove_handle(c->multi, x->easy);
        curl_easy_cleanup(x->easy);
    }
    wipe_headers(x->headers);
    free(x->body);
    strbuf_free(&x->data);
    strbuf_free(&x->line);
    queue_free(x);
    free(x);
}

/* Takes a transfer off the wire at once; its memory goes after the pump. */
static void xfer_kill(http_xfer *x)
{
    if (x->easy && x->conn->multi)
        curl_multi_remove_handle(x->conn->multi, x->easy);
    x->dead = true;
    queue_free(x);
}

/* ---- Closing --------------------------------------------------------------------------------- */

static void conn_maybe_free(mcp_http *c)
{
    if (c->open > 0)
        return;
    void (*closed)(void *) = c->closed;
    void *ctx = c->ctx;
    mcp_server_config_release(c->cfg);
    free(c);
    curl_global_cleanup();
    closed(ctx);
}

static void on_handle_closed(uv_handle_t *handle)
{
    mcp_http *c = handle->data;
    c->open--;
    conn_maybe_free(c);
}

static void on_sock_closed(uv_handle_t *handle)
{
    http_sock *s = handle->data;
    mcp_http *c = s->conn;
    free(s);
    c->open--;
    conn_maybe_free(c);
}

static void sock_close(http_sock *s)
{
    mcp_http *c = s->conn;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void conn_teardown(mcp_http *c)
{
    while (c->xfers)
        xfer_free(c->xfers);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->socks)
        sock_close(c->socks);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* After a pump: frees finished transfers, or everything once stopped. */
static void conn_settle(mcp_http *c)
{
    if (c->busy > 0)
        return;
    if (c->stopping) {
        c->stopping = false;
        conn_teardown(c);
        return;
    }
    http_xfer *next;
    for (http_xfer *x = c->xfers; x; x = next) {
        next = x->next;
        if (x->dead)
            xfer_free(x);
    }
}

/* ---- Reading answers (inside curl's callbacks) ----------------------------------------------- */

static int queue_push(http_xfer *x, const char *data, size_t len)
{
    http_msg *m = malloc(sizeof *m + len + 1);
    if (!m)
        return CX_ENOMEM;
    m->next = NULL;
    m->len = len;
    memcpy(m->data, data, len);
    m->data[len] = '\0';
    *x->queue_tail = m;
    x->queue_tail = &m->next;
    return 0;
}

static bool blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* Decides how to read the body from the status and the content type. */
static void xfer_classify(http_xfer *x)
{
    char *type = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &type);
    if (x->status < 200 || x->status >= 300 || x->status == 202 || x->status == 204)
        x->kind = BODY_DISCARD;
    else if (type && strncasecmp(type, "text/event-stream", 17) == 0)
        x->kind = BODY_SSE;
    else
        x->kind = BODY_JSON; /* anything else is read as JSON and judged by the hub */
}

/* One complete SSE event: its data is a message unless it is empty or
 * names an event type other than "message". */
static int sse_dispatch(http_xfer *x)
{
    int rc = 0;
    if (!x->event_skip && x->data_lines > 0 && !blank(x->data.data, x->data.len))
        rc = queue_push(x, x->data.data, x->data.len);
    x->data.len = 0;
    if (x->data.cap)
        x->data.data[0] = '\0';
    x->data_lines = 0;
    x->event_skip = false;
    return rc;
}

/* One SSE line (without its end); false when over a bound or out of memory. */
static bool sse_line(http_xfer *x)
{
    const char *s = x->line.data;
    size_t len = x->line.len;
    if (len == 0)
        return sse_dispatch(x) == 0;
    if (s[0] == ':')
        return true; /* a comment, such as a keep-alive */
    const char *colon = memchr(s, ':', len);
    size_t name_len = colon ? (size_t)(colon - s) : len;
    const char *value = colon ? colon + 1 : s + len;
    size_t value_len = (size_t)(s + len - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (name_len == 4 && memcmp(s, "data", 4) == 0) {
        size_t more = value_len + (x->data_lines > 0);
        if (more > x->conn->limit - x->data.len) {
            x->too_big = true;
            return false;
        }
        if ((x->data_lines > 0 && strbuf_append(&x->data, "\n", 1) != 0) ||
            strbuf_append(&x->data, value, value_len) != 0)
            return false;
        x->data_lines++;
    } else if (name_len == 5 && memcmp(s, "event", 5) == 0) {
        x->event_skip = !(value_len == 0 || (value_len == 7 && memcmp(value, "message", 7) == 0));
    }
    return true; /* id, retry and unknown fields do not matter here */
}

/* Feeds SSE bytes: lines end with CRLF, LF or CR. */
static bool sse_feed(http_xfer *x, const char *data, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (x->after_cr && data[i] == '\n') {
            x->after_cr = false;
            i++;
            continue;
        }
        x->after_cr = false;
        size_t j = i;
        while (j < n && data[j] != '\r' && data[j] != '\n')
            j++;
        if (j - i > x->conn->limit - x->line.len) {
            x->too_big = true;
            return false;
        }
        if (j > i && strbuf_append(&x->line, data + i, j - i) != 0)
            return false;
        if (j == n)
            return true;
        x->after_cr = data[j] == '\r';
        bool ok = sse_line(x);
        x->line.len = 0;
        if (x->line.cap)
            x->line.data[0] = '\0';
        if (!ok)
            return false;
        i = j + 1;
    }
    return true;
}

static size_t on_body(char *data, size_t size, size_t count, void *arg)
{
    http_xfer *x = arg;
    size_t n = size * count;
    uint64_t limit = x->conn->limit;
    if (x->kind == BODY_UNKNOWN)
        xfer_classify(x);
    if (x->kind == BODY_SSE)
        return sse_feed(x, data, n) ? n : 0;
    if (x->kind == BODY_DISCARD) {
        /* an error's body is only quoted: its size must not hide the status */
        x->received += n;
        if (x->data.len < ERROR_BODY_KEEP) {
            size_t keep = ERROR_BODY_KEEP - x->data.len;
            if (strbuf_append(&x->data, data, n < keep ? n : keep) != 0)
                return 0;
        }
        return n;
    }
    if (n > limit - x->data.len) {
        x->too_big = true;
        return 0; /* aborts the transfer */
    }
    return strbuf_append(&x->data, data, n) == 0 ? n : 0;
}

static bool session_char_ok(char ch) { return ch >= 0x21 && ch <= 0x7e; }

static size_t on_header(char *data, size_t size, size_t count, void *arg)
{
    http_xfer *x = arg;
    mcp_http *c = x->conn;
    size_t n = size * count;
    static const char name[] = "mcp-session-id:";
    if (n < sizeof name - 1 || strncasecmp(data, name, sizeof name - 1) != 0)
        return n;
    const char *v = data + sizeof name - 1;
    const char *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t len = (size_t)(end - v);
    bool ok = len > 0 && len <= SESSION_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = session_char_ok(v[i]);
    if (!ok)
        x->session_bad = true;
    else if (x->first && !c->session[0]) {
        memcpy(c->session, v, len);
        c->session[len] = '\0';
    }
    return n;
}

/* ---- Handing messages to the owner (outside curl) -------------------------------------------- */

/* Notes whether a message is the response to the transfer's request, and
 * the protocol version the answer to initialize agrees. */
static void xfer_note(http_xfer *x, const char *data, size_t len)
{
    if (!x->id || x->answered)
        return;
    json_t *msg = json_loadb(data, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
    const json_t *id = json_object_get(msg, "id");
    const json_t *result = json_object_get(msg, "result");
    bool same = (json_is_integer(id) && (uint64_t)json_integer_value(id) == x->id) ||
                (json_is_real(id) && json_real_value(id) == (double)x->id);
    if (same && !json_object_get(msg, "method") &&
        (result || json_is_object(json_object_get(msg, "error")))) {
        x->answered = true;
        const json_t *version = json_object_get(result, "protocolVersion");
        size_t vlen = json_string_length(version);
        if (x->first && json_is_string(version) && vlen > 0 && vlen <= VERSION_MAX) {
            bool ok = true;
            for (size_t i = 0; ok && i < vlen; i++)
                ok = session_char_ok(json_string_value(version)[i]);
            if (ok)
                memcpy(x->conn->version, json_string_value(version), vlen + 1);
        }
    }
    json_decref(msg);
}

/* Delivers the transfer's queued messages; false once the owner stopped us. */
static bool xfer_flush(http_xfer *x)
{
    mcp_http *c = x->conn;
    while (c->ev && !x->dead && x->queue) {
        http_msg *m = x->queue;
        x->queue = m->next;
        if (!x->queue)
            x->queue_tail = &x->queue;
        xfer_note(x, m->data, m->len);
        c->ev->line(c->owner, m->data, m->len);
        free(m);
    }
    if (c->ev && !x->dead && x->answered && x->kind == BODY_SSE)
        xfer_kill(x); /* its stream has nothing more for us */
    return c->ev != NULL;
}

static void conn_gone(mcp_http *c, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_gone(mcp_http *c, const char *reason, const char *fmt, ...)
{
    if (!c->ev || c->reported)
        return;
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    text_make_utf8(detail);
    c->reported = true;
    c->ev->gone(c->owner, reason, detail);
}

static void xfer_unanswered(http_xfer *x, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void xfer_unanswered(http_xfer *x, const char *reason, const char *fmt, ...)
{
    mcp_http *c = x->conn;
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    text_make_utf8(detail);
    if (x->id && c->ev)
        c->ev->unanswered(c->owner, x->id, reason, detail);
    else
        http_log(c, LOG_WARN, "MCP server '%s': %s", c->cfg->name, detail);
}

static const char *status_hint(long status)
{
    if (status >= 300 && status < 400)
        return " (redirects are not followed: set url to the final address)";
    if (status == 401 || status == 403)
        return " (check the credentials in the server's headers)";
    if (status == 404 || status == 405 || status == 406 || status == 415)
        return " (is url the server's MCP endpoint, such as http://host:port/mcp?)";
    return "";
}

/* A server may echo what it was sent (a 401 quoting the token): every
 * configured header value is starred out of a body before it is quoted. */
static void redact_secrets(const mcp_http *c, char *text)
{
    for (char *const *h = c->cfg->headers; h && *h; h++) {
        const char *value = strchr(*h, ':');
        if (!value)
            continue;
        value++;
        while (*value == ' ')
            value++;
        size_t len = strlen(value);
        if (len < 4)
            continue;
        for (char *hit = strstr(text, value); hit; hit = strstr(hit + len, value))
            memset(hit, '*', len);
        /* "Bearer sk-..." may be echoed as just the token */
        const char *space = strrchr(value, ' ');
        if (space && strlen(space + 1) >= 4) {
            size_t tlen = strlen(space + 1);
            for (char *hit = strstr(text, space + 1); hit; hit = strstr(hit + tlen, space + 1))
                memset(hit, '*', tlen);
        }
    }
}

/* An HTTP error answering a message. */
static void xfer_http_error(http_xfer *x)
{
    mcp_http *c = x->conn;
    char body[ERROR_BODY_KEEP + 48] = "";
    if (x->data.len > 0) {
        char kept[ERROR_BODY_KEEP + 1];
        snprintf(kept, sizeof kept, "%.*s", (int)x->data.len, x->data.data);
        redact_secrets(c, kept);
        char quoted[ERROR_BODY_KEEP + 32];
        text_quote(kept, quoted, sizeof quoted);
        snprintf(body, sizeof body, ": %s", quoted);
    }
    if (x->status == 404 && x->had_session && x->id) {
        conn_gone(c, MCP_REASON_SESSION_EXPIRED, "the server ended the session (HTTP 404); a new "
                  "one is started");
    } else if (!x->id) {
        http_log(c, LOG_WARN, "MCP server '%s' answered a notification with HTTP %ld%s%s",
                 c->cfg->name, x->status, status_hint(x->status), body);
    } else {
        conn_gone(c, x->status >= 500 ? MCP_REASON_NOT_CONNECTED : MCP_REASON_PROTOCOL,
                  "HTTP %ld from %s%s%s", x->status, c->cfg->url_shown, status_hint(x->status),
                  body);
    }
}

/* A transfer that timed out before it ever connected: the server is
 * unreachable, not slow. */
static bool never_connected(const http_xfer *x)
{
    curl_off_t connect_us = 0;
    return x->easy && curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connect_us) ==
                          CURLE_OK &&
           connect_us == 0;
}

/* A transfer curl has finished. */
static void xfer_done(http_xfer *x, CURLcode code)
{
    mcp_http *c = x->conn;
    if (x->kind == BODY_UNKNOWN && code == CURLE_OK)
        xfer_classify(x);
    if (code == CURLE_OK && x->kind == BODY_JSON && !blank(x->data.data, x->data.len) &&
        queue_push(x, x->data.data, x->data.len) != 0)
        code = CURLE_OUT_OF_MEMORY;
    if (code == CURLE_OK && x->kind == BODY_SSE && x->line.len > 0 && !sse_line(x))
        code = CURLE_OUT_OF_MEMORY;
    if (code == CURLE_OK && x->kind == BODY_SSE && sse_dispatch(x) != 0)
        code = CURLE_OUT_OF_MEMORY;
    if (!xfer_flush(x) || x->dead)
        return;
    x->dead = true;
    if (x->too_big) {
        xfer_unanswered(x, MCP_REASON_TOO_BIG, "the answer to request %llu is over %llu bytes "
                        "(max_result + 64 KB); the transfer was stopped",
                        (unsigned long long)x->id, (unsigned long long)c->limit);
    } else if (code == CURLE_OPERATION_TIMEDOUT && never_connected(x)) {
        conn_gone(c, MCP_REASON_NOT_CONNECTED, "cannot reach %s: %s", c->cfg->url_shown,
                  x->errbuf[0] ? x->errbuf : "the connection timed out");
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        xfer_unanswered(x, MCP_REASON_TIMEOUT, "no answer to request %llu within %llu ms",
                        (unsigned long long)x->id,
                        (unsigned long long)(c->cfg->timeout_ms + TRANSFER_SLACK_MS));
    } else if (code != CURLE_OK) {
        conn_gone(c, MCP_REASON_NOT_CONNECTED, "cannot reach %s: %s", c->cfg->url_shown,
                  x->errbuf[0] ? x->errbuf : curl_easy_strerror(code));
    } else if (x->session_bad) {
        conn_gone(c, MCP_REASON_PROTOCOL, "the server sent an Mcp-Session-Id that is not 1 to "
                  "%d visible ASCII characters", SESSION_MAX);
    } else if (x->status < 200 || x->status >= 300) {
        xfer_http_error(x);
    } else if (x->id && !x->answered) {
        xfer_unanswered(x, MCP_REASON_PROTOCOL, "the server's HTTP answer to request %llu (HTTP "
                        "%ld) ended without a JSON-RPC response to it", (unsigned long long)x->id,
                        x->status);
    }
}

/* ---- curl multi on the loop ------------------------------------------------------------------ */

static void conn_pump(mcp_http *c, curl_socket_t fd, int flags)
{
    if (!c->multi)
        return;
    int running = 0;
    c->busy++;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    for (http_xfer *x = c->xfers; x && c->ev; x = x->next)
        if (!x->dead)
            xfer_flush(x);
    CURLMsg *msg;
    int left = 0;
    while (c->ev && c->multi && (msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        char *priv = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        http_xfer *x = (http_xfer *)priv;
        if (x && !x->dead)
            xfer_done(x, msg->data.result);
    }
    c->busy--;
    conn_settle(c);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    http_sock *s = handle->data;
    int flags = status < 0 ? CURL_CSELECT_ERR
                           : (events & UV_READABLE ? CURL_CSELECT_IN : 0) |
                                 (events & UV_WRITABLE ? CURL_CSELECT_OUT : 0);
    conn_pump(s->conn, s->fd, flags);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *arg, void *socket_arg)
{
    (void)easy;
    mcp_http *c = arg;
    http_sock *s = socket_arg;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_close(s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        if (uv_poll_init_socket(c->timer.loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->fd = fd;
        s->conn = c;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        c->open++;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

static void on_curl_timeout(uv_timer_t *timer) { conn_pump(timer->data, CURL_SOCKET_TIMEOUT, 0); }

static int on_curl_timer(CURLM *multi, long timeout_ms, void *arg)
{
    (void)multi;
    mcp_http *c = arg;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* The server's sockets must not leak into the stdio servers Caxton spawns. */
/* ---- Sending --------------------------------------------------------------------------------- */

static struct curl_slist *header_add(struct curl_slist *list, const char *line, bool *ok)
{
    struct curl_slist *next = *ok ? curl_slist_append(list, line) : NULL;
    if (!next)
        *ok = false;
    return next ? next : list;
}

static struct curl_slist *request_headers(const mcp_http *c)
{
    struct curl_slist *list = NULL;
    bool ok = true;
    char line[SESSION_MAX + 64];
    list = header_add(list, "Content-Type: application/json", &ok);
    list = header_add(list, "Accept: application/json, text/event-stream", &ok);
    list = header_add(list, "Expect:", &ok); /* no 100-continue round trip */
    if (c->session[0]) {
        snprintf(line, sizeof line, "Mcp-Session-Id: %s", c->session);
        list = header_add(list, line, &ok);
    }
    if (c->version[0]) {
        snprintf(line, sizeof line, "MCP-Protocol-Version: %s", c->version);
        list = header_add(list, line, &ok);
    }
    for (size_t i = 0; c->cfg->headers && c->cfg->headers[i]; i++)
        list = header_add(list, c->cfg->headers[i], &ok);
    if (!ok) {
        wipe_headers(list);
        return NULL;
    }
    return list;
}

static CURL *easy_new(http_xfer *x, size_t len)
{
    const mcp_http *c = x->conn;
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    long timeout = (long)(c->cfg->timeout_ms + TRANSFER_SLACK_MS);
    bool ok = curl_easy_setopt(e, CURLOPT_URL, c->cfg->url) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)x) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)x) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)x) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "") == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_USERAGENT, "caxton/" CAXTON_VERSION) == CURLE_OK &&
              curl_safety_apply(e);
    if (!ok) {
        curl_easy_cleanup(e);
        return NULL;
    }
    return e;
}

int mcp_http_send(mcp_http *c, const char *data, size_t len, uint64_t request_id, cx_error *err)
{
    if (!c->ev || c->reported)
        return cx_error_set(err, CX_EUNAVAIL, "MCP server '%s' is not connected", c->cfg->name);
    if (c->xfer_count >= XFERS_MAX)
        return cx_error_set(err, CX_ELIMIT, "MCP server '%s' has %d requests in flight; no more "
                            "are sent until some are answered", c->cfg->name, XFERS_MAX);
    http_xfer *x = calloc(1, sizeof *x);
    if (!x)
        return cx_error_set(err, CX_ENOMEM, "out of memory sending to MCP server '%s'",
                            c->cfg->name);
    x->conn = c;
    x->id = request_id;
    x->first = request_id && !c->started_first;
    x->had_session = c->session[0] != '\0';
    x->queue_tail = &x->queue;
    strbuf_init(&x->data);
    strbuf_init(&x->line);
    x->next = c->xfers;
    if (c->xfers)
        c->xfers->prev = x;
    c->xfers = x;
    c->xfer_count++;
    x->body = malloc(len + 1);
    if (x->body) {
        memcpy(x->body, data, len);
        x->body[len] = '\0';
    }
    x->headers = x->body ? request_headers(c) : NULL;
    x->easy = x->headers ? easy_new(x, len) : NULL;
    if (!x->easy || curl_multi_add_handle(c->multi, x->easy) != CURLM_OK) {
        xfer_free(x);
        return cx_error_set(err, CX_ENOMEM, "cannot start an HTTP request to MCP server '%s' "
                            "(out of memory)", c->cfg->name);
    }
    if (x->first)
        c->started_first = true;
    return 0;
}

void mcp_http_abandon(mcp_http *c, uint64_t request_id)
{
    if (!c || !request_id)
        return;
    for (http_xfer *x = c->xfers; x; x = x->next)
        if (x->id == request_id && !x->dead) {
            xfer_kill(x);
            break;
        }
    conn_settle(c);
}

/* ---- Starting and stopping ------------------------------------------------------------------- */

int mcp_http_start(uv_loop_t *loop, mcp_server_config *cfg, const mcp_child_events *ev,
                   void *owner, void (*closed)(void *ctx), void *ctx, mcp_http **out,
                   cx_error *err)
{
    *out = NULL;
    mcp_http *c = calloc(1, sizeof *c);
    if (!c || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(c);
        closed(ctx);
        return cx_error_set(err, CX_ENOMEM, "cannot start the HTTP client for MCP server '%s'",
                            cfg->name);
    }
    c->ev = ev;
    c->owner = owner;
    c->closed = closed;
    c->ctx = ctx;
    c->cfg = cfg;
    cfg->refs++;
    c->limit = cfg->max_result + MCP_LINE_SLACK;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open = 1;
    c->multi = curl_multi_init();
    if (!c->multi ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, (void *)c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, (void *)c) != CURLM_OK ||
        /* parallel calls share a few connections; curl queues the rest */
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)HOST_CONNECTIONS_MAX) !=
            CURLM_OK) {
        c->ev = NULL;
        conn_teardown(c);
        return cx_error_set(err, CX_ENOMEM, "cannot start the HTTP client for MCP server '%s'",
                            cfg->name);
    }
    *out = c;
    return 0;
}

void mcp_http_stop(mcp_http *c)
{
    if (!c || !c->ev)
        return;
    c->ev = NULL;
    c->stopping = true;
    conn_settle(c);
}
