/* The LLM client: provider calls queued, retried and carried by libcurl's
 * multi interface on the libuv loop.
 *
 * Transport: one CURLM per client. curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION, one uv_poll each) and when it next needs time
 * (CURLMOPT_TIMERFUNCTION, one uv_timer); we hand events back with
 * curl_multi_socket_action and then collect finished transfers. Every
 * attempt is a fresh easy handle; connections and DNS answers are shared
 * through the multi handle, so retries and later calls reuse them.
 *
 * A call moves through QUEUED (waiting for one of the provider's
 * max_concurrency slots, FIFO) -> RUNNING (an attempt in flight) ->
 * BACKOFF (between attempts, slot given back, then first in line again) ->
 * DONE (result stored) -> DELIVERING (callback running) -> CLOSING. Each
 * call owns one uv_timer, used for whichever wait its state has: the
 * deadline while queued, the backoff, and a zero timeout to run the
 * callback on the next loop turn. User callbacks therefore only ever run
 * from that timer, never from inside curl or inside llm_chat, so a callback
 * may start, cancel or close anything.
 *
 * Fallback: when llm_chat starts a call it resolves the provider's
 * `fallback` lists (depth first, each provider once) into legs, and builds
 * each leg's body and headers in that leg's protocol and with that leg's
 * own model. When a leg fails after its retries for a reason that is the
 * provider's (unreachable, HTTP 5xx, 429, an attempt's own timeout), the
 * call moves to the next leg: it joins that provider's queue like a new
 * call, under the same overall deadline. A refusal of our request (4xx
 * other than 429), a malformed or empty answer, the caller's deadline and
 * shutdown end the call where it is: another provider would not fix them,
 * and a provider answering nonsense should show up as failing rather than
 * be hidden behind another.
 *
 * Embeddings (llm_embed) are calls like the others, with one leg (no
 * fallback), the protocol's embeddings path and body, a larger answer limit
 * and the protocol's embeddings parser; they share the provider's queue.
 *
 * Providers are looked up by name; a name's queue and counters survive a
 * reconfigure, while its settings are swapped: a call keeps a reference to
 * the settings it started with. Closing fails every live call with
 * "shutting-down" on the next loop turn, tears down curl, closes every
 * handle, and frees the client in the last close callback. */
#include "llm/llm.h"

#include <curl/curl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/curl_safety.h"
#include "core/log.h"
#include "core/util.h"
#include "llm/llm_internal.h"

#define LLM_MAX_MESSAGES 10000                   /* in one request */
#define LLM_MAX_REQUEST (32u * 1024 * 1024)      /* bytes of one request body */
#define RETRY_AFTER_TEXT_MAX 64                  /* bytes of the header value kept */
#define LAST_ERROR_MAX 560                      /* reason + detail */

/* One provider name's runtime: its queue, slots and counters. */
typedef struct provider {
    unsigned refs;          /* the client's list, and each call */
    llm_settings *settings; /* the current ones */
    unsigned in_flight;
    size_t queued;
    llm_call *queue_head, *queue_tail;
    uint64_t requests, errors, retries, fallbacks, prompt_tokens, completion_tokens;
    char last_error[LAST_ERROR_MAX];
} provider;

typedef enum call_state {
    CALL_QUEUED,
    CALL_RUNNING,
    CALL_BACKOFF,
    CALL_DONE,
    CALL_DELIVERING,
    CALL_CLOSING,
} call_state;

/* One provider a call may use: the first one, then its fallbacks. */
typedef struct call_leg {
    provider *prov;         /* a reference */
    llm_settings *settings; /* a reference, as when the call started */
    char *body;
    size_t body_len;
    struct curl_slist *headers;
} call_leg;

struct llm_call {
    llm_client *client;
    call_leg *legs;
    size_t leg_count, leg; /* leg: the one in use */
    provider *prov;         /* legs[leg].prov */
    llm_settings *settings; /* legs[leg].settings */
    unsigned leg_attempts;  /* attempts on this leg */
    llm_done_fn done;
    void *arg;
    call_state state;
    uv_timer_t timer;
    llm_call *prev, *next;             /* the client's live calls */
    llm_call *queue_prev, *queue_next; /* the provider's queue */
    bool holds_slot;
    char *agent;
    uint64_t start_ms, deadline_ms, attempt_start_ms;
    bool attempt_capped; /* this attempt's time limit is the deadline */
    CURL *easy;
    strbuf response;
    bool too_big;
    char retry_after[RETRY_AFTER_TEXT_MAX];
    char errbuf[CURL_ERROR_SIZE];
    llm_result result;
    llm_answer answer;
    char tried[LAST_ERROR_MAX]; /* "a: provider-error, b: timeout": the legs that failed */
    bool embed;                 /* an embeddings call (llm_embed) */
    size_t embed_count;         /* the texts it asked for */
    llm_embedding embedding;    /* its answer */
};

typedef struct llm_socket {
    uv_poll_t poll;
    curl_socket_t fd;
    llm_client *client;
    struct llm_socket *prev, *next;
} llm_socket;

struct llm_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* curl's timeouts */
    provider **providers;
    size_t provider_count;
    llm_call *calls;
    llm_socket *sockets;
    size_t open_handles; /* initialized uv handles whose close has not run */
    bool closing;
    uint64_t rng;
};

/* Why an attempt did not produce an answer, and whether to try again. */
typedef struct attempt_failure {
    int code;
    const char *reason;
    bool retry;
    bool fallback; /* the provider's fault: another one may answer */
    char detail[sizeof(((llm_result *)0)->detail)];
} attempt_failure;

static uint64_t now_ms(void) { return time_monotonic_ns() / 1000000u; }

static uint64_t add_saturated(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* xorshift64*: jitter only needs to be spread, not secret. */
static double client_random(llm_client *c)
{
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return (double)((c->rng * UINT64_C(2685821657736338717)) >> 11) * 0x1.0p-53;
}

/* ---- Pure pieces ----------------------------------------------------------------------------- */

uint64_t llm_backoff_ms(unsigned attempt, double random)
{
    uint64_t ceiling = LLM_BACKOFF_MAX_MS;
    unsigned doublings = attempt > 0 ? attempt - 1 : 0;
    if (doublings < 32 && ((uint64_t)LLM_BACKOFF_BASE_MS << doublings) < ceiling)
        ceiling = (uint64_t)LLM_BACKOFF_BASE_MS << doublings;
    if (!(random > 0))
        return 0; /* also NaN */
    uint64_t ms = random < 1 ? (uint64_t)(random * (double)ceiling) : ceiling;
    return ms < ceiling ? ms : ceiling - 1;
}

int64_t llm_parse_retry_after(const char *value, int64_t now_epoch_s)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t len = strlen(value);
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t' ||
                       value[len - 1] == '\r' || value[len - 1] == '\n'))
        len--;
    if (len == 0 || len >= RETRY_AFTER_TEXT_MAX)
        return -1;
    const int64_t cap_s = LLM_RETRY_AFTER_MAX_MS / 1000;
    if (strspn(value, "0123456789") >= len) {
        int64_t seconds = 0;
        for (size_t i = 0; i < len && seconds <= cap_s; i++)
            seconds = seconds * 10 + (value[i] - '0');
        return seconds >= cap_s ? (int64_t)LLM_RETRY_AFTER_MAX_MS : seconds * 1000;
    }
    /* An HTTP date names a month and has a time of day; anything else
     * (a sign, a fraction, words) is not a Retry-After value. */
    char text[RETRY_AFTER_TEXT_MAX];
    memcpy(text, value, len);
    text[len] = '\0';
    if (!strchr(text, ':') || strspn(text, "+-0123456789.") > 0)
        return -1;
    time_t when = curl_getdate(text, NULL);
    if (when == (time_t)-1)
        return -1;
    int64_t wait_s = (int64_t)when - now_epoch_s;
    if (wait_s <= 0)
        return 0;
    return wait_s >= cap_s ? (int64_t)LLM_RETRY_AFTER_MAX_MS : wait_s * 1000;
}

/* ---- Providers and their queues -------------------------------------------------------------- */

static provider *provider_new(llm_settings *settings)
{
    provider *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->refs = 1;
    p->settings = settings;
    return p;
}

static void provider_unref(provider *p)
{
    if (!p || --p->refs > 0)
        return;
    llm_settings_release(p->settings);
    free(p);
}

static provider *client_find(const llm_client *c, const char *name)
{
    if (!name)
        return c->provider_count == 1 ? c->providers[0] : NULL;
    for (size_t i = 0; i < c->provider_count; i++)
        if (strcmp(c->providers[i]->settings->name, name) == 0)
            return c->providers[i];
    return NULL;
}

static void queue_push(provider *p, llm_call *call, bool front)
{
    call->queue_prev = call->queue_next = NULL;
    if (!p->queue_head) {
        p->queue_head = p->queue_tail = call;
    } else if (front) {
        call->queue_next = p->queue_head;
        p->queue_head->queue_prev = call;
        p->queue_head = call;
    } else {
        call->queue_prev = p->queue_tail;
        p->queue_tail->queue_next = call;
        p->queue_tail = call;
    }
    p->queued++;
}

static void queue_remove(provider *p, llm_call *call)
{
    if (call->queue_prev)
        call->queue_prev->queue_next = call->queue_next;
    else
        p->queue_head = call->queue_next;
    if (call->queue_next)
        call->queue_next->queue_prev = call->queue_prev;
    else
        p->queue_tail = call->queue_prev;
    call->queue_prev = call->queue_next = NULL;
    p->queued--;
}

static bool provider_has_slot(const provider *p)
{
    return p->in_flight < p->settings->max_concurrency;
}

/* ---- Finishing and delivering ---------------------------------------------------------------- */

static void call_log(const llm_call *call, log_level level, const char *detail, uint64_t wait_ms,
                     const char *next, const char *what)
{
    if (level < log_get_level())
        return;
    json_t *fields = json_pack("{s:s, s:s?, s:i, s:i, s:I}", "provider", call->settings->name,
                               "agent", call->agent, "attempt", (int)call->result.attempts,
                               "status", (int)call->result.http_status, "elapsed_ms",
                               (json_int_t)(now_ms() - call->start_ms));
    if (fields && detail && *detail)
        json_object_set_new(fields, "error", json_string(detail));
    if (fields && wait_ms)
        json_object_set_new(fields, "retry_in_ms", json_integer((json_int_t)wait_ms));
    if (fields && next)
        json_object_set_new(fields, "fallback", json_string(next));
    log_event(LOG_STREAM_SERVER, level, "llm", fields, "%s", what);
}

static void on_call_closed(uv_handle_t *handle);
static void on_deliver(uv_timer_t *timer);

static void client_maybe_free(llm_client *c)
{
    if (!c->closing || c->open_handles > 0)
        return;
    for (size_t i = 0; i < c->provider_count; i++)
        provider_unref(c->providers[i]);
    free(c->providers);
    free(c);
    curl_global_cleanup();
}

static void headers_free(struct curl_slist *list)
{
    for (struct curl_slist *h = list; h; h = h->next) {
        volatile char *p = h->data; /* one of them carries the key */
        while (*p)
            *p++ = '\0';
    }
    curl_slist_free_all(list);
}

/* Takes the call out of the client's list of live calls (if it is there). */
static void call_unlink(llm_call *call)
{
    llm_client *c = call->client;
    if (call->prev)
        call->prev->next = call->next;
    else if (c->calls == call)
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
}

/* Unlinks the call and closes its timer; memory goes in on_call_closed. */
static void call_destroy(llm_call *call)
{
    call_unlink(call);
    call->state = CALL_CLOSING;
    uv_timer_stop(&call->timer);
    uv_close((uv_handle_t *)&call->timer, on_call_closed);
}

static void call_legs_free(llm_call *call)
{
    for (size_t i = 0; i < call->leg_count; i++) {
        call_leg *leg = &call->legs[i];
        provider_unref(leg->prov);
        llm_settings_release(leg->settings);
        headers_free(leg->headers);
        free(leg->body);
    }
    free(call->legs);
}

static void on_call_closed(uv_handle_t *handle)
{
    llm_call *call = handle->data;
    llm_client *c = call->client;
    call_legs_free(call);
    strbuf_free(&call->response);
    free(call->agent);
    llm_answer_free(&call->answer);
    llm_embedding_free(&call->embedding);
    free(call);
    c->open_handles--;
    client_maybe_free(c);
}

/* Stores the outcome and runs the callback on the next loop turn. The call
 * holds no slot and no transfer here. */
static void call_finish(llm_call *call, int code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void call_finish(llm_call *call, int code, const char *reason, const char *fmt, ...)
{
    llm_result *r = &call->result;
    r->code = code;
    r->reason = code ? reason : NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
    llm_redact(r->detail, call->settings->api_key);
    text_make_utf8(r->detail);
    provider *p = call->prov;
    bool shutdown = code && strcmp(reason, LLM_REASON_SHUTDOWN) == 0;
    if (code && !shutdown) {
        p->errors++;
        snprintf(p->last_error, sizeof p->last_error, "%s: %s", reason, r->detail);
        text_make_utf8(p->last_error);
    }
    if (code && call->tried[0]) {
        size_t used = strlen(r->detail);
        snprintf(r->detail + used, sizeof r->detail - used, " (after fallback from %s)",
                 call->tried);
        text_make_utf8(r->detail);
    }
    /* A shutdown is not the provider's failure: no count, no line per call. */
    if (code && !shutdown) {
        call_log(call, LOG_WARN, r->detail, 0, NULL, "LLM call failed");
    } else if (code == 0) {
        p->prompt_tokens = add_saturated(p->prompt_tokens, r->prompt_tokens);
        p->completion_tokens = add_saturated(p->completion_tokens, r->completion_tokens);
    }
    call->state = CALL_DONE;
    uv_timer_stop(&call->timer);
    uv_timer_start(&call->timer, on_deliver, 0, 0);
}

static void on_deliver(uv_timer_t *timer)
{
    llm_call *call = timer->data;
    call->state = CALL_DELIVERING;
    /* Out of the client's list, so a close from inside the callback leaves
     * it alone; the timer still counts as open, so the client outlives it. */
    call_unlink(call);
    llm_result *r = &call->result;
    r->text = call->answer.text;
    r->tool_calls = call->answer.tool_calls;
    r->tool_call_count = call->answer.tool_call_count;
    r->finish_reason = call->answer.finish_reason;
    r->model = call->answer.model;
    r->provider = call->settings->name;
    r->elapsed_ms = now_ms() - call->start_ms;
    r->embeddings = call->embedding.vectors;
    r->embedding_count = call->embedding.count;
    r->embedding_dim = call->embedding.dim;
    call->done(r, call->arg);
    call_destroy(call);
}

/* ---- Attempts -------------------------------------------------------------------------------- */

/* The largest answer the call takes: embeddings are longer than chat. */
static size_t response_max(const llm_call *call)
{
    return call->embed ? LLM_EMBED_MAX_RESPONSE : LLM_MAX_RESPONSE;
}

static size_t on_body(char *data, size_t size, size_t count, void *arg)
{
    llm_call *call = arg;
    size_t n = size * count;
    if (n > response_max(call) - call->response.len) {
        call->too_big = true;
        return 0; /* aborts the transfer */
    }
    return strbuf_append(&call->response, data, n) == 0 ? n : 0;
}

static size_t on_header(char *data, size_t size, size_t count, void *arg)
{
    llm_call *call = arg;
    size_t n = size * count;
    static const char name[] = "retry-after:";
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        call->retry_after[0] = '\0'; /* a new response (after a 100 Continue) */
    } else if (n > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        size_t len = n - (sizeof name - 1);
        if (len >= sizeof call->retry_after)
            len = sizeof call->retry_after - 1;
        memcpy(call->retry_after, data + sizeof name - 1, len);
        call->retry_after[len] = '\0';
    }
    return n;
}

static void slot_drop(llm_call *call)
{
    if (call->holds_slot) {
        call->holds_slot = false;
        call->prov->in_flight--;
    }
}

static void transfer_stop(llm_call *call)
{
    if (!call->easy)
        return;
    if (call->client->multi)
        curl_multi_remove_handle(call->client->multi, call->easy);
    curl_easy_cleanup(call->easy);
    call->easy = NULL;
}

static CURL *easy_new(llm_call *call, uint64_t timeout_ms)
{
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    const call_leg *leg = &call->legs[call->leg];
    const char *url = call->embed ? call->settings->embed_url : call->settings->url;
    bool ok = url && curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)call) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HTTPHEADER, leg->headers) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_POSTFIELDS, leg->body) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)leg->body_len) ==
                  CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)call) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)call) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)response_max(call)) ==
                  CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_USERAGENT, "caxton/" CAXTON_VERSION) == CURLE_OK &&
              curl_safety_apply(e);
    if (!ok) {
        curl_easy_cleanup(e);
        return NULL;
    }
    return e;
}

/* Starts one attempt; on failure the call is finished instead. */
static void call_start(llm_call *call)
{
    uint64_t now = now_ms(), timeout = call->settings->timeout_ms;
    call->attempt_capped = false;
    if (call->deadline_ms) {
        if (now >= call->deadline_ms) {
            call_finish(call, CX_ETIMEOUT, LLM_REASON_TIMEOUT,
                        "the deadline passed before %s could be tried%s", call->settings->name,
                        call->result.attempts ? " again" : "");
            return;
        }
        if (call->deadline_ms - now < timeout) {
            timeout = call->deadline_ms - now;
            call->attempt_capped = true;
        }
    }
    strbuf_free(&call->response);
    strbuf_init(&call->response);
    call->too_big = false;
    call->retry_after[0] = '\0';
    call->errbuf[0] = '\0';
    call->result.http_status = 0;
    call->holds_slot = true;
    call->prov->in_flight++;
    call->easy = easy_new(call, timeout);
    if (!call->easy || curl_multi_add_handle(call->client->multi, call->easy) != CURLM_OK) {
        if (call->easy)
            curl_easy_cleanup(call->easy);
        call->easy = NULL;
        slot_drop(call);
        call_finish(call, CX_ENOMEM, LLM_REASON_PROVIDER_ERROR,
                    "could not start a request to %s (out of memory)", call->settings->name);
        return;
    }
    call->state = CALL_RUNNING;
    call->result.attempts++;
    call->leg_attempts++;
    call->attempt_start_ms = now;
    call_log(call, LOG_DEBUG, NULL, 0, NULL, "LLM request sent");
}

/* Starts waiting calls while the provider has free slots. */
static void provider_pump(llm_client *c, provider *p)
{
    while (!c->closing && p->queue_head && provider_has_slot(p)) {
        llm_call *next = p->queue_head;
        queue_remove(p, next);
        uv_timer_stop(&next->timer);
        call_start(next);
    }
}

static void on_queue_deadline(uv_timer_t *timer)
{
    llm_call *call = timer->data;
    queue_remove(call->prov, call);
    call_finish(call, CX_ETIMEOUT, LLM_REASON_TIMEOUT,
                "waited %llu ms for one of the %u request slots of %s and passed the deadline",
                (unsigned long long)(now_ms() - call->start_ms), call->settings->max_concurrency,
                call->settings->name);
}

/* Runs the call now if a slot is free, else queues it (retries first). */
static void call_admit(llm_call *call, bool front)
{
    provider *p = call->prov;
    if (provider_has_slot(p) && (front || !p->queue_head)) {
        call_start(call);
        return;
    }
    queue_push(p, call, front);
    call->state = CALL_QUEUED;
    if (call->deadline_ms) {
        uint64_t now = now_ms();
        uint64_t wait = call->deadline_ms > now ? call->deadline_ms - now : 0;
        uv_timer_start(&call->timer, on_queue_deadline, wait, 0);
    }
}

static void on_backoff_done(uv_timer_t *timer)
{
    llm_call *call = timer->data;
    call_admit(call, true);
}

static const char *status_hint(long status)
{
    switch (status) {
    case 401:
    case 403: return " (check the provider's api_key)";
    case 404: return " (check base_url and the model name)";
    default: return "";
    }
}

/* What an HTTP status other than 2xx means. */
static void classify_status(const llm_call *call, long status, attempt_failure *f)
{
    char said[256];
    llm_error_text(call->response.data, call->response.len, call->settings->api_key, said,
                   sizeof said);
    /* 529: Anthropic's "overloaded" */
    f->retry = status == 429 || status == 500 || status == 502 || status == 503 ||
               status == 504 || status == 529;
    f->fallback = status == 429 || status >= 500;
    f->code = status == 429 ? CX_ELIMIT : CX_EUNAVAIL;
    f->reason = status == 429 ? LLM_REASON_RATE_LIMITED : LLM_REASON_PROVIDER_ERROR;
    snprintf(f->detail, sizeof f->detail, "HTTP %ld from %s%s%s%s", status, call->settings->name,
             *said ? ": " : "", said, status_hint(status));
}

static void classify_transport(const llm_call *call, CURLcode code, attempt_failure *f)
{
    const char *name = call->settings->name;
    const char *why = call->errbuf[0] ? call->errbuf : curl_easy_strerror(code);
    f->code = CX_ECONNECT;
    f->reason = LLM_REASON_UNREACHABLE;
    f->retry = false;
    switch (code) {
    case CURLE_FILESIZE_EXCEEDED:
        f->code = CX_ETOOBIG;
        f->reason = LLM_REASON_MALFORMED;
        snprintf(f->detail, sizeof f->detail, "response over %zu MB from %s",
                 response_max(call) >> 20, name);
        return;
    case CURLE_OPERATION_TIMEDOUT:
        f->code = CX_ETIMEOUT;
        f->reason = LLM_REASON_TIMEOUT;
        f->retry = f->fallback = !call->attempt_capped;
        if (call->attempt_capped)
            snprintf(f->detail, sizeof f->detail, "no answer from %s before the deadline", name);
        else
            snprintf(f->detail, sizeof f->detail, "no answer from %s within %llu ms", name,
                     (unsigned long long)call->settings->timeout_ms);
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        f->retry = true;
        break;
    case CURLE_OUT_OF_MEMORY:
        f->code = CX_ENOMEM;
        f->reason = LLM_REASON_PROVIDER_ERROR;
        break;
    default: break;
    }
    f->fallback = f->code == CX_ECONNECT; /* TLS and the like too: another host may work */
    snprintf(f->detail, sizeof f->detail, "cannot reach %s at %s: %s", name,
             call->settings->base_url, why);
}

static void call_succeed(llm_call *call)
{
    llm_result *r = &call->result;
    const char *reason = NULL;
    char detail[sizeof r->detail];
    const llm_protocol *proto = call->settings->protocol;
    int rc;
    if (call->embed) {
        rc = proto->embed_parse(call->response.data, call->response.len, call->embed_count,
                                &call->embedding, &reason, detail, sizeof detail);
        r->prompt_tokens = call->embedding.prompt_tokens;
    } else {
        rc = proto->parse(call->response.data, call->response.len, &call->answer, &reason,
                          detail, sizeof detail);
        r->prompt_tokens = call->answer.prompt_tokens;
        r->completion_tokens = call->answer.completion_tokens;
    }
    if (rc != 0)
        call_finish(call, rc, reason, "%s (HTTP %ld from %s)", detail, r->http_status,
                    call->settings->name);
    else
        call_finish(call, 0, NULL, "%s", "");
}

/* Moves the call to its next leg after this one failed for a reason of the
 * provider's; false when that is not the case or no leg is left. The next
 * provider gets it like a new call: through its queue, with its retries. */
static bool call_fall_back(llm_call *call, const attempt_failure *f, const char *detail)
{
    if (!f->fallback || call->leg + 1 >= call->leg_count || call->client->closing)
        return false;
    provider *p = call->prov;
    p->errors++;
    p->fallbacks++;
    snprintf(p->last_error, sizeof p->last_error, "%s: %s", f->reason, detail);
    llm_redact(p->last_error, call->settings->api_key);
    text_make_utf8(p->last_error);
    const call_leg *next = &call->legs[call->leg + 1];
    call_log(call, LOG_WARN, p->last_error, 0, next->settings->name,
             "LLM provider failed, trying its fallback");
    size_t used = strlen(call->tried);
    snprintf(call->tried + used, sizeof call->tried - used, "%s%s: %s", used ? ", " : "",
             call->settings->name, f->reason);
    call->leg++;
    call->prov = next->prov;
    call->settings = next->settings;
    call->leg_attempts = 0;
    call->prov->requests++;
    call_admit(call, false);
    return true;
}

/* This leg is done trying: fall back, or finish with the failure. */
static void call_give_up(llm_call *call, const attempt_failure *f)
{
    char tries[32] = "";
    if (call->leg_attempts > 1)
        snprintf(tries, sizeof tries, " (%u attempts)", call->leg_attempts);
    char detail[sizeof f->detail + sizeof tries];
    snprintf(detail, sizeof detail, "%s%s", f->detail, tries);
    if (!call_fall_back(call, f, detail))
        call_finish(call, f->code, f->reason, "%s", detail);
}

/* Waits and tries again, or gives up when the wait would pass the deadline. */
static void call_retry(llm_call *call, const attempt_failure *f)
{
    llm_client *c = call->client;
    int64_t hinted = call->retry_after[0]
                         ? llm_parse_retry_after(call->retry_after, (int64_t)time(NULL))
                         : -1;
    uint64_t wait = hinted >= 0 ? (uint64_t)hinted
                                : llm_backoff_ms(call->leg_attempts, client_random(c));
    if (call->deadline_ms && now_ms() + wait >= call->deadline_ms) {
        attempt_failure late = *f;
        char note[96];
        snprintf(note, sizeof note, "; not retried: waiting %llu ms would pass the deadline",
                 (unsigned long long)wait);
        size_t used = strnlen(late.detail, sizeof late.detail - 1);
        snprintf(late.detail + used, sizeof late.detail - used, "%s", note);
        call_give_up(call, &late);
        return;
    }
    call->prov->retries++;
    call_log(call, LOG_WARN, f->detail, wait, NULL, "LLM request failed, retrying");
    call->state = CALL_BACKOFF;
    uv_timer_start(&call->timer, on_backoff_done, wait, 0);
}

static void call_attempt_done(llm_call *call, CURLcode code)
{
    llm_result *r = &call->result;
    provider *p = call->prov; /* the call holds a reference until its callback ran */
    long status = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    r->http_status = status;
    transfer_stop(call);
    slot_drop(call);
    call_log(call, LOG_DEBUG, NULL, 0, NULL, "LLM request finished");
    attempt_failure f = {0};
    if (code == CURLE_WRITE_ERROR && (call->too_big || call->response.failed)) {
        f.code = call->too_big ? CX_ETOOBIG : CX_ENOMEM;
        f.reason = call->too_big ? LLM_REASON_MALFORMED : LLM_REASON_PROVIDER_ERROR;
        if (call->too_big)
            snprintf(f.detail, sizeof f.detail, "response over %zu MB from %s",
                     response_max(call) >> 20, call->settings->name);
        else
            snprintf(f.detail, sizeof f.detail, "out of memory reading the answer from %s",
                     call->settings->name);
    } else if (code != CURLE_OK) {
        classify_transport(call, code, &f);
    } else if (status >= 200 && status < 300) {
        call_succeed(call);
    } else {
        classify_status(call, status, &f);
    }
    if (f.reason && f.retry && call->leg_attempts <= call->settings->retries)
        call_retry(call, &f);
    else if (f.reason)
        call_give_up(call, &f);
    provider_pump(call->client, p); /* the slot this attempt held */
}

/* ---- curl multi on the loop ------------------------------------------------------------------ */

/* Hands every finished transfer to its call. */
static void client_collect(llm_client *c)
{
    CURLMsg *msg;
    int left = 0;
    while (c->multi && (msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode code = msg->data.result;
        char *call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &call);
        if (call)
            call_attempt_done((llm_call *)call, code);
    }
}

static void client_drive(llm_client *c, curl_socket_t fd, int flags)
{
    if (!c->multi)
        return;
    int running = 0;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    client_collect(c);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    llm_socket *s = handle->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else
        flags = (events & UV_READABLE ? CURL_CSELECT_IN : 0) |
                (events & UV_WRITABLE ? CURL_CSELECT_OUT : 0);
    client_drive(s->client, s->fd, flags);
}

static void on_socket_closed(uv_handle_t *handle)
{
    llm_socket *s = handle->data;
    llm_client *c = s->client;
    free(s);
    c->open_handles--;
    client_maybe_free(c);
}

static void socket_close(llm_socket *s)
{
    llm_client *c = s->client;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->sockets = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, on_socket_closed);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *arg, void *socket_arg)
{
    (void)easy;
    llm_client *c = arg;
    llm_socket *s = socket_arg;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            socket_close(s); /* curl forgets socket_arg itself */
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->fd = fd;
        s->client = c;
        s->next = c->sockets;
        if (c->sockets)
            c->sockets->prev = s;
        c->sockets = s;
        c->open_handles++;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

static void on_curl_timeout(uv_timer_t *timer)
{
    client_drive(timer->data, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *arg)
{
    (void)multi;
    llm_client *c = arg;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- The client ------------------------------------------------------------------------------ */

static void on_client_timer_closed(uv_handle_t *handle)
{
    llm_client *c = handle->data;
    c->open_handles--;
    client_maybe_free(c);
}

static CURLM *multi_new(llm_client *c)
{
    CURLM *m = curl_multi_init();
    if (m && (curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
              curl_multi_setopt(m, CURLMOPT_SOCKETDATA, (void *)c) != CURLM_OK ||
              curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
              curl_multi_setopt(m, CURLMOPT_TIMERDATA, (void *)c) != CURLM_OK)) {
        curl_multi_cleanup(m);
        return NULL;
    }
    return m;
}

/* Providers for a settings list, reusing the runtime of names kept. On
 * failure nothing is changed and the settings are still the caller's. */
static provider **providers_for(const llm_client *c, llm_settings **settings, size_t n)
{
    provider **list = calloc(n ? n : 1, sizeof *list);
    if (!list)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (client_find(c, settings[i]->name))
            continue;
        if (!(list[i] = provider_new(NULL))) {
            for (size_t j = 0; j < i; j++)
                free(list[j]);
            free(list);
            return NULL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!list[i]) {
            list[i] = client_find(c, settings[i]->name);
            list[i]->refs++;
            llm_settings_release(list[i]->settings);
        }
        list[i]->settings = settings[i];
    }
    return list;
}

llm_client *llm_client_new(uv_loop_t *loop, const json_t *providers, cx_error *err)
{
    if (!loop) {
        cx_error_set(err, CX_EINVAL, "llm_client_new: no event loop");
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cx_error_set(err, CX_EINTERNAL, "cannot initialize libcurl");
        return NULL;
    }
    llm_settings **settings = NULL;
    size_t n = 0;
    llm_client *c = calloc(1, sizeof *c);
    if (!c)
        cx_error_set(err, CX_ENOMEM, "out of memory starting the LLM client");
    if (!c || llm_settings_build(providers, &settings, &n, err) != 0)
        goto fail;
    c->loop = loop;
    c->multi = multi_new(c);
    c->providers = c->multi ? providers_for(c, settings, n) : NULL;
    if (!c->providers) {
        cx_error_set(err, CX_ENOMEM, "out of memory starting the LLM client");
        goto fail;
    }
    free(settings); /* the providers own each element now */
    c->provider_count = n;
    if (random_bytes(&c->rng, sizeof c->rng, NULL) != 0 || c->rng == 0)
        c->rng = time_monotonic_ns() | 1;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 1;
    return c;
fail:
    llm_settings_release_all(settings, n);
    if (c && c->multi)
        curl_multi_cleanup(c->multi);
    free(c);
    curl_global_cleanup();
    return NULL;
}

int llm_client_reconfigure(llm_client *c, const json_t *providers, cx_error *err)
{
    if (c->closing)
        return cx_error_set(err, CX_EUNAVAIL, "the LLM client is shutting down");
    llm_settings **settings = NULL;
    size_t n = 0;
    int rc = llm_settings_build(providers, &settings, &n, err);
    if (rc != 0)
        return rc;
    provider **list = providers_for(c, settings, n);
    if (!list) {
        llm_settings_release_all(settings, n);
        return cx_error_set(err, CX_ENOMEM, "out of memory applying llm.providers");
    }
    free(settings);
    provider **old = c->providers;
    size_t old_count = c->provider_count;
    c->providers = list;
    c->provider_count = n;
    for (size_t i = 0; i < old_count; i++)
        provider_unref(old[i]);
    free(old);
    for (size_t i = 0; i < n; i++)
        provider_pump(c, list[i]); /* max_concurrency may have grown */
    return 0;
}

void llm_client_close(llm_client *c)
{
    if (!c || c->closing)
        return;
    c->closing = true; /* from here no queue is pumped and llm_chat refuses */
    for (llm_call *call = c->calls; call; call = call->next) {
        if (call->state == CALL_DONE)
            continue; /* it has its answer already */
        if (call->state == CALL_QUEUED)
            queue_remove(call->prov, call);
        transfer_stop(call);
        slot_drop(call);
        call_finish(call, CX_EUNAVAIL, LLM_REASON_SHUTDOWN,
                    "the server is shutting down; the call to %s was abandoned",
                    call->settings->name);
    }
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->sockets)
        socket_close(c->sockets);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_client_timer_closed);
}

size_t llm_client_providers(const llm_client *c, const char **names, size_t max)
{
    size_t n = 0;
    for (; c && n < c->provider_count && n < max; n++)
        names[n] = c->providers[n]->settings->name;
    return n;
}

bool llm_client_has_provider(const llm_client *c, const char *name)
{
    return c && name && client_find(c, name) != NULL;
}

/* ---- Calls ----------------------------------------------------------------------------------- */

/* Why no provider matched, with the configured names. */
static int provider_missing(const llm_client *c, const char *name, cx_error *err)
{
    const char *names[LLM_PROVIDERS_MAX];
    size_t n = llm_client_providers(c, names, LLM_PROVIDERS_MAX);
    if (n == 0)
        return cx_error_set(err, CX_ENOTFOUND, "no LLM provider is configured; add one under "
                            "llm.providers");
    char known[256] = "";
    for (size_t i = 0, used = 0; i < n && used < sizeof known; i++)
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                                 names[i]);
    if (!name)
        return cx_error_set(err, CX_ENOTFOUND, "no LLM provider named and %zu are configured "
                            "(%s); name one in the agent's llm.provider", n, known);
    char shown[96];
    text_quote(name, shown, sizeof shown);
    const char *near = text_is_utf8(name, strlen(name)) ? text_suggest(name, names, n) : NULL;
    return cx_error_set(err, CX_ENOTFOUND, "unknown LLM provider %s%s%s%s; llm.providers has: %s",
                        shown, near ? " (did you mean '" : "", near ? near : "",
                        near ? "'?)" : "", known);
}

static bool text_ok(const char *s) { return s && text_is_utf8(s, strlen(s)); }

static int tools_check(const llm_request *req, cx_error *err)
{
    if (req->tool_count == 0)
        return 0;
    if (!req->tools)
        return cx_error_set(err, CX_EINVAL, "tool_count is %zu but no tools are given",
                            req->tool_count);
    if (req->tool_count > LLM_MAX_TOOLS)
        return cx_error_set(err, CX_EINVAL, "a request offers at most %d tools, got %zu",
                            LLM_MAX_TOOLS, req->tool_count);
    for (size_t i = 0; i < req->tool_count; i++) {
        const llm_tool *t = &req->tools[i];
        if (!llm_tool_name_ok(t->name))
            return cx_error_set(err, CX_EINVAL, "tool %zu: a tool name is 1 to %d letters, "
                                "digits, '_' or '-'", i, LLM_TOOL_NAME_MAX);
        if (t->description && !text_ok(t->description))
            return cx_error_set(err, CX_EINVAL, "tool %s: the description is not valid UTF-8",
                                t->name);
        if (t->input_schema && !json_is_object(t->input_schema))
            return cx_error_set(err, CX_EINVAL, "tool %s: the input schema is not a JSON object",
                                t->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(req->tools[j].name, t->name) == 0)
                return cx_error_set(err, CX_EINVAL, "tool %s is offered twice", t->name);
    }
    return 0;
}

static int calls_check(size_t index, const llm_message *m, cx_error *err)
{
    if (m->tool_call_count == 0)
        return 0;
    if (m->role != LLM_ROLE_ASSISTANT || !m->tool_calls || m->tool_call_count > LLM_MAX_TOOL_CALLS)
        return cx_error_set(err, CX_EINVAL, "message %zu: only an assistant message has tool "
                            "calls, at most %d", index, LLM_MAX_TOOL_CALLS);
    for (size_t i = 0; i < m->tool_call_count; i++) {
        const llm_tool_call *c = &m->tool_calls[i];
        if (!c->id || !*c->id || !text_ok(c->id) || !c->name || !*c->name || !text_ok(c->name))
            return cx_error_set(err, CX_EINVAL, "message %zu, tool call %zu: needs an id and a "
                                "name in UTF-8", index, i);
        if ((c->arguments && !json_is_object(c->arguments)) ||
            (c->arguments_text && !text_ok(c->arguments_text)))
            return cx_error_set(err, CX_EINVAL, "message %zu, tool call %zu: the arguments are "
                                "not an object or not UTF-8", index, i);
    }
    return 0;
}

static int message_check(size_t i, const llm_message *m, cx_error *err)
{
    if (m->role != LLM_ROLE_SYSTEM && m->role != LLM_ROLE_USER &&
        m->role != LLM_ROLE_ASSISTANT && m->role != LLM_ROLE_TOOL)
        return cx_error_set(err, CX_EINVAL, "message %zu has an unknown role", i);
    bool may_be_empty = m->role == LLM_ROLE_ASSISTANT && m->tool_call_count > 0;
    if ((!m->content && !may_be_empty) || (m->content && !text_ok(m->content)))
        return cx_error_set(err, CX_EINVAL, "message %zu has no text or invalid UTF-8", i);
    if (m->role == LLM_ROLE_TOOL &&
        (!m->tool_call_id || !*m->tool_call_id || !text_ok(m->tool_call_id) ||
         (m->tool_name && !text_ok(m->tool_name))))
        return cx_error_set(err, CX_EINVAL, "message %zu is a tool result without the id of "
                            "the call it answers", i);
    return calls_check(i, m, err);
}

static int request_check(const llm_client *c, const llm_request *req, const provider *p,
                         const char *model, cx_error *err)
{
    if (!p)
        return provider_missing(c, req->provider, err);
    if (!model)
        return cx_error_set(err, CX_EINVAL, "no model for provider '%s': set the agent's "
                            "llm.model or llm.providers.%s.model", p->settings->name,
                            p->settings->name);
    if (strlen(model) > 256 || !text_is_utf8(model, strlen(model)))
        return cx_error_set(err, CX_EINVAL, "the model name is longer than 256 bytes or not "
                            "valid UTF-8");
    if (req->message_count == 0 || req->message_count > LLM_MAX_MESSAGES || !req->messages)
        return cx_error_set(err, CX_EINVAL, "a request needs 1 to %d messages, got %zu",
                            LLM_MAX_MESSAGES, req->message_count);
    for (size_t i = 0; i < req->message_count; i++) {
        int rc = message_check(i, &req->messages[i], err);
        if (rc != 0)
            return rc;
    }
    if (req->temperature_set && !(req->temperature >= 0 && req->temperature <= 2))
        return cx_error_set(err, CX_EINVAL, "temperature must be from 0 to 2");
    if (req->max_tokens < 0)
        return cx_error_set(err, CX_EINVAL, "max_tokens must not be negative");
    return tools_check(req, err);
}

/* The request body in the leg's protocol, compact. */
static char *request_body(const llm_request *req, const llm_settings *s, const char *model,
                          size_t *len, cx_error *err)
{
    json_t *json = s->protocol->request_json(req, model);
    char *body = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    if (!body) {
        cx_error_set(err, CX_ENOMEM, "out of memory building the request for %s", s->name);
        return NULL;
    }
    *len = strlen(body);
    if (*len > LLM_MAX_REQUEST) {
        cx_error_set(err, CX_ETOOBIG, "the request is %zu bytes, over the %u MB limit", *len,
                     LLM_MAX_REQUEST / (1024 * 1024));
        free(body);
        return NULL;
    }
    return body;
}

static struct curl_slist *header_add(struct curl_slist *list, const char *line, bool *ok)
{
    struct curl_slist *next = *ok ? curl_slist_append(list, line) : NULL;
    *ok = next != NULL;
    return next ? next : list;
}

static struct curl_slist *request_headers(const llm_settings *s)
{
    struct curl_slist *list = NULL;
    bool ok = true;
    list = header_add(list, "Content-Type: application/json", &ok);
    list = header_add(list, "Accept: application/json", &ok);
    list = header_add(list, "Expect:", &ok);
    if (s->protocol->extra_header)
        list = header_add(list, s->protocol->extra_header, &ok);
    if (ok && s->api_key) {
        strbuf line;
        strbuf_init(&line);
        ok = strbuf_appendf(&line, "%s%s", s->protocol->key_header, s->api_key) == 0;
        list = header_add(list, line.data, &ok);
        memset(line.data, 0, line.len);
        strbuf_free(&line);
    }
    if (!ok) {
        headers_free(list);
        return NULL;
    }
    return list;
}

/* The first provider, then its fallbacks depth first, each provider once. */
static void chain_add(const llm_client *c, provider *p, provider **chain, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        if (chain[i] == p)
            return;
    if (*n >= LLM_PROVIDERS_MAX)
        return;
    chain[(*n)++] = p;
    for (size_t i = 0; i < p->settings->fallback_count; i++) {
        provider *next = client_find(c, p->settings->fallback[i]);
        if (next && next->settings->model)
            chain_add(c, next, chain, n);
    }
}

/* One leg per provider of the chain, each with its body and headers; the
 * first uses the request's model, the others their own. */
static int call_legs_build(llm_call *call, const llm_client *c, const llm_request *req,
                           provider *first, const char *model, cx_error *err)
{
    provider *chain[LLM_PROVIDERS_MAX];
    size_t n = 0;
    chain_add(c, first, chain, &n);
    call->legs = calloc(n, sizeof *call->legs);
    if (!call->legs)
        return cx_error_set(err, CX_ENOMEM, "out of memory starting an LLM call");
    for (size_t i = 0; i < n; i++) {
        call_leg *leg = &call->legs[i];
        leg->prov = chain[i];
        leg->prov->refs++;
        leg->settings = chain[i]->settings;
        leg->settings->refs++;
        call->leg_count++;
        leg->body = request_body(req, leg->settings, i == 0 ? model : leg->settings->model,
                                 &leg->body_len, err);
        if (!leg->body)
            return CX_ENOMEM; /* or too big: err says which */
        leg->headers = request_headers(leg->settings);
        if (!leg->headers)
            return cx_error_set(err, CX_ENOMEM, "out of memory starting an LLM call");
    }
    call->prov = call->legs[0].prov;
    call->settings = call->legs[0].settings;
    return 0;
}

/* Registers a built call with the client and queues it for its provider. */
static llm_call *call_register(llm_client *c, llm_call *call, provider *p, llm_done_fn done,
                              void *arg, uint64_t deadline_ms)
{
    call->client = c;
    call->done = done;
    call->arg = arg;
    call->start_ms = now_ms();
    call->deadline_ms = deadline_ms;
    strbuf_init(&call->response);
    uv_timer_init(c->loop, &call->timer);
    call->timer.data = call;
    c->open_handles++;
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    p->requests++;
    call_admit(call, false);
    return call;
}

llm_call *llm_chat(llm_client *c, const llm_request *req, llm_done_fn done, void *arg,
                   cx_error *err)
{
    if (!c || !req || !done) {
        cx_error_set(err, CX_EINVAL, "llm_chat: missing client, request or callback");
        return NULL;
    }
    if (c->closing) {
        cx_error_set(err, CX_EUNAVAIL, "the LLM client is shutting down");
        return NULL;
    }
    provider *p = client_find(c, req->provider);
    const char *model = req->model && *req->model ? req->model : p ? p->settings->model : NULL;
    if (request_check(c, req, p, model, err) != 0)
        return NULL;
    llm_call *call = calloc(1, sizeof *call);
    if (!call) {
        cx_error_set(err, CX_ENOMEM, "out of memory starting an LLM call");
        return NULL;
    }
    call->agent = req->agent ? str_dup(req->agent) : NULL;
    if (req->agent && !call->agent)
        cx_error_set(err, CX_ENOMEM, "out of memory starting an LLM call");
    if ((req->agent && !call->agent) || call_legs_build(call, c, req, p, model, err) != 0) {
        call_legs_free(call);
        free(call->agent);
        free(call);
        return NULL;
    }
    return call_register(c, call, p, done, arg, req->deadline_ms);
}

/* ---- Embeddings ------------------------------------------------------------------------------ */

static int embed_check(const llm_client *c, const llm_embed_request *req, const provider *p,
                       cx_error *err)
{
    if (!p)
        return provider_missing(c, req->provider, err);
    const llm_settings *s = p->settings;
    if (!s->protocol->embed_path || !s->embed_url)
        return cx_error_set(err, CX_EINVAL, "provider '%s' is of type %s, which has no "
                            "embeddings API; use an openai or ollama provider", s->name,
                            s->type);
    if (!req->model || !*req->model)
        return cx_error_set(err, CX_EINVAL, "no embedding model given for provider '%s'",
                            s->name);
    if (strlen(req->model) > 256 || !text_ok(req->model))
        return cx_error_set(err, CX_EINVAL, "the model name is longer than 256 bytes or not "
                            "valid UTF-8");
    if (!req->texts || req->count == 0 || req->count > LLM_EMBED_MAX_TEXTS)
        return cx_error_set(err, CX_EINVAL, "an embeddings request has 1 to %u texts, got %zu",
                            LLM_EMBED_MAX_TEXTS, req->count);
    for (size_t i = 0; i < req->count; i++)
        if (!req->texts[i] || !*req->texts[i] || !text_ok(req->texts[i]))
            return cx_error_set(err, CX_EINVAL, "text %zu to embed is empty or not valid UTF-8",
                                i);
    return 0;
}

/* The one leg of an embeddings call: no fallback. */
static int embed_leg_build(llm_call *call, provider *p, const llm_embed_request *req,
                           cx_error *err)
{
    call->legs = calloc(1, sizeof *call->legs);
    if (!call->legs)
        return cx_error_set(err, CX_ENOMEM, "out of memory starting an embeddings call");
    call_leg *leg = &call->legs[0];
    leg->prov = p;
    p->refs++;
    leg->settings = p->settings;
    leg->settings->refs++;
    call->leg_count = 1;
    json_t *json = p->settings->protocol->embed_request_json(req->texts, req->count, req->model);
    leg->body = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    if (!leg->body)
        return cx_error_set(err, CX_ENOMEM, "out of memory building the embeddings request");
    leg->body_len = strlen(leg->body);
    if (leg->body_len > LLM_MAX_REQUEST)
        return cx_error_set(err, CX_ETOOBIG, "the embeddings request is %zu bytes, over the "
                            "%u MB limit", leg->body_len, LLM_MAX_REQUEST / (1024 * 1024));
    leg->headers = request_headers(leg->settings);
    if (!leg->headers)
        return cx_error_set(err, CX_ENOMEM, "out of memory starting an embeddings call");
    call->prov = p;
    call->settings = p->settings;
    return 0;
}

llm_call *llm_embed(llm_client *c, const llm_embed_request *req, llm_done_fn done, void *arg,
                    cx_error *err)
{
    if (!c || !req || !done) {
        cx_error_set(err, CX_EINVAL, "llm_embed: missing client, request or callback");
        return NULL;
    }
    if (c->closing) {
        cx_error_set(err, CX_EUNAVAIL, "the LLM client is shutting down");
        return NULL;
    }
    provider *p = client_find(c, req->provider);
    if (embed_check(c, req, p, err) != 0)
        return NULL;
    llm_call *call = calloc(1, sizeof *call);
    if (!call) {
        cx_error_set(err, CX_ENOMEM, "out of memory starting an embeddings call");
        return NULL;
    }
    call->embed = true;
    call->embed_count = req->count;
    call->agent = req->agent ? str_dup(req->agent) : NULL;
    if (req->agent && !call->agent)
        cx_error_set(err, CX_ENOMEM, "out of memory starting an embeddings call");
    if ((req->agent && !call->agent) || embed_leg_build(call, p, req, err) != 0) {
        call_legs_free(call);
        free(call->agent);
        free(call);
        return NULL;
    }
    return call_register(c, call, p, done, arg, req->deadline_ms);
}

void llm_call_cancel(llm_call *call)
{
    if (!call || call->state == CALL_DELIVERING || call->state == CALL_CLOSING)
        return;
    bool had_slot = call->holds_slot;
    if (call->state == CALL_QUEUED)
        queue_remove(call->prov, call);
    transfer_stop(call);
    slot_drop(call);
    uv_timer_stop(&call->timer);
    call->state = CALL_CLOSING; /* before the pump, which must not see it */
    if (had_slot)
        provider_pump(call->client, call->prov);
    call_destroy(call);
}

/* ---- Statistics ------------------------------------------------------------------------------ */

static json_int_t stat_value(uint64_t v) { return v > INT64_MAX ? INT64_MAX : (json_int_t)v; }

json_t *llm_client_stats(const llm_client *c)
{
    json_t *out = json_object();
    for (size_t i = 0; out && c && i < c->provider_count; i++) {
        const provider *p = c->providers[i];
        const llm_settings *s = p->settings;
        json_t *one = json_pack(
            "{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}", "type", s->type,
            "base_url", s->base_url, "in_flight", (json_int_t)p->in_flight, "queued",
            stat_value(p->queued), "requests", stat_value(p->requests), "errors",
            stat_value(p->errors), "retries", stat_value(p->retries), "fallbacks",
            stat_value(p->fallbacks), "prompt_tokens", stat_value(p->prompt_tokens),
            "completion_tokens", stat_value(p->completion_tokens), "last_error",
            p->last_error[0] ? p->last_error : NULL);
        if (!one || json_object_set_new(out, s->name, one) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}
