/* A scripted embeddings server for the unit tests, on 127.0.0.1 in threads
 * of the test: POST /v1/embeddings answers in OpenAI's shape, POST /api/embed
 * in Ollama's. Each text's vector is made from its words (a word's hash picks
 * a dimension and a sign), so the same text always gets the same vector and
 * texts sharing words come out close. The test sets how it behaves (fail the
 * next N requests with a status, answer a fixed body, wait first, send the
 * OpenAI entries in reverse order) and reads what it saw (requests, texts,
 * the largest batch, the last path, body and Authorization header). One
 * connection per request; every wait is bounded. Include it in one test file
 * only (its functions are static). */
#ifndef CAXTON_TESTS_EMBED_SERVER_H
#define CAXTON_TESTS_EMBED_SERVER_H

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include "http_test_io.h"

#define ESRV_REQUEST_MAX (1024 * 1024)

typedef struct esrv {
    int fd;
    unsigned port;
    pthread_t acceptor;
    pthread_mutex_t lock;
    volatile bool stopping;
    int active_workers;
    /* behaviour, set by the test under lock (esrv_set) */
    size_t dim;               /* default 8 */
    int fail_next;            /* this many requests answer fail_status */
    int fail_status;
    bool down;                /* every request answers fail_status (503 if unset) */
    const char *body;         /* answer exactly this (200) */
    unsigned delay_ms;
    bool reverse;             /* OpenAI entries in reverse index order */
    /* what it saw */
    int requests, answered;
    size_t texts, max_batch;
    char last_path[64];
    char last_auth[160];
    char last_body[4096];
} esrv;

static uint64_t esrv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The vector of a text: every word adds +-1 to the dimension its hash picks. */
static void esrv_vector(const char *text, size_t dim, float *out)
{
    memset(out, 0, dim * sizeof *out);
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        while (*p && !isalnum(*p))
            p++;
        uint64_t h = 1469598103934665603ull;
        bool any = false;
        while (*p && isalnum(*p)) {
            h = (h ^ (uint64_t)tolower(*p)) * 1099511628211ull;
            p++;
            any = true;
        }
        if (any)
            out[h % dim] += (h >> 40) & 1 ? 1.0f : -1.0f;
    }
    out[0] += 0.01f; /* never the zero vector */
}

static void esrv_reply(int fd, int status, const char *body)
{
    char head[256];
    snprintf(head, sizeof head, "HTTP/1.1 %d Scripted\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, strlen(body));
    http_test_send_all(fd, head, strlen(head));
    http_test_send_all(fd, body, strlen(body));
}

/* The answer for the texts, in the shape of the path. */
static char *esrv_answer(const json_t *input, size_t dim, bool ollama, bool reverse)
{
    size_t n = json_array_size(input);
    json_t *list = json_array();
    float *v = calloc(dim, sizeof *v);
    for (size_t k = 0; v && k < n; k++) {
        size_t i = reverse ? n - 1 - k : k;
        esrv_vector(json_string_value(json_array_get(input, i)), dim, v);
        json_t *vec = json_array();
        for (size_t d = 0; d < dim; d++)
            json_array_append_new(vec, json_real(v[d]));
        if (ollama)
            json_array_append_new(list, vec);
        else
            json_array_append_new(list, json_pack("{s:s, s:I, s:o}", "object", "embedding",
                                                  "index", (json_int_t)i, "embedding", vec));
    }
    free(v);
    json_t *doc = ollama ? json_pack("{s:s, s:o, s:I}", "model", "m", "embeddings", list,
                                     "prompt_eval_count", (json_int_t)n)
                         : json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data",
                                     list, "model", "m", "usage", "prompt_tokens",
                                     (json_int_t)n, "total_tokens", (json_int_t)n);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

static void esrv_note(esrv *s, const char *buf, const char *body, size_t texts)
{
    s->requests++;
    s->texts += texts;
    if (texts > s->max_batch)
        s->max_batch = texts;
    const char *sp = strchr(buf, ' ');
    const char *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
    if (sp && sp2)
        snprintf(s->last_path, sizeof s->last_path, "%.*s", (int)(sp2 - sp - 1), sp + 1);
    const char *auth = strcasestr(buf, "\r\nauthorization:");
    s->last_auth[0] = '\0';
    if (auth) {
        const char *eol = strstr(auth + 2, "\r\n");
        snprintf(s->last_auth, sizeof s->last_auth, "%.*s", eol ? (int)(eol - auth - 2) : 0,
                 auth + 2);
    }
    snprintf(s->last_body, sizeof s->last_body, "%s", body ? body : "");
}

static void *esrv_worker(void *arg)
{
    void **pair = arg;
    esrv *s = pair[0];
    int fd = (int)(intptr_t)pair[1];
    free(pair);
    char *buf = malloc(ESRV_REQUEST_MAX);
    size_t len = 0;
    char *body = NULL;
    if (buf && http_test_read_request(fd, buf, ESRV_REQUEST_MAX, &len, &body)) {
        json_t *req = body ? json_loads(body, 0, NULL) : NULL;
        const json_t *input = json_object_get(req, "input");
        bool ollama = strstr(buf, "POST /api/embed ") == buf;
        pthread_mutex_lock(&s->lock);
        esrv_note(s, buf, body, json_array_size(input));
        int status = s->down ? (s->fail_status ? s->fail_status : 503) : 0;
        if (!status && s->fail_next > 0) {
            s->fail_next--;
            status = s->fail_status ? s->fail_status : 503;
        }
        const char *fixed = s->body;
        unsigned delay = s->delay_ms;
        size_t dim = s->dim ? s->dim : 8;
        bool reverse = s->reverse;
        pthread_mutex_unlock(&s->lock);
        uint64_t until = esrv_now_ms() + delay;
        while (!s->stopping && esrv_now_ms() < until)
            usleep(2000);
        if (status)
            esrv_reply(fd, status, ollama ? "{\"error\":\"scripted failure\"}"
                                          : "{\"error\":{\"message\":\"scripted failure\"}}");
        else if (fixed)
            esrv_reply(fd, 200, fixed);
        else if (!json_is_array(input))
            esrv_reply(fd, 400, "{\"error\":{\"message\":\"input must be a list\"}}");
        else {
            char *answer = esrv_answer(input, dim, ollama, reverse);
            esrv_reply(fd, 200, answer ? answer : "{}");
            free(answer);
        }
        json_decref(req);
        pthread_mutex_lock(&s->lock);
        s->answered++;
        pthread_mutex_unlock(&s->lock);
    }
    free(buf);
    shutdown(fd, SHUT_WR);
    close(fd);
    pthread_mutex_lock(&s->lock);
    s->active_workers--;
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void *esrv_acceptor(void *arg)
{
    esrv *s = arg;
    while (!s->stopping) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            continue;
        void **pair = malloc(2 * sizeof *pair);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_mutex_lock(&s->lock);
        s->active_workers++;
        pthread_mutex_unlock(&s->lock);
        bool ok = pair != NULL;
        if (ok) {
            pair[0] = s;
            pair[1] = (void *)(intptr_t)fd;
            ok = pthread_create(&t, &attr, esrv_worker, pair) == 0;
        }
        pthread_attr_destroy(&attr);
        if (!ok) {
            free(pair);
            close(fd);
            pthread_mutex_lock(&s->lock);
            s->active_workers--;
            pthread_mutex_unlock(&s->lock);
        }
    }
    return NULL;
}

static bool esrv_start(esrv *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(s->fd, 128) != 0 || getsockname(s->fd, (struct sockaddr *)&addr, &alen) != 0)
        return false;
    s->port = ntohs(addr.sin_port);
    return pthread_create(&s->acceptor, NULL, esrv_acceptor, s) == 0;
}

static void esrv_stop(esrv *s)
{
    s->stopping = true;
    pthread_join(s->acceptor, NULL);
    for (int i = 0; i < 500; i++) { /* workers end within their 5 s read bound */
        pthread_mutex_lock(&s->lock);
        int active = s->active_workers;
        pthread_mutex_unlock(&s->lock);
        if (active == 0)
            break;
        usleep(10000);
    }
    close(s->fd);
    pthread_mutex_destroy(&s->lock);
}

static int esrv_count(esrv *s, const int *field)
{
    pthread_mutex_lock(&s->lock);
    int v = *field;
    pthread_mutex_unlock(&s->lock);
    return v;
}

#endif
