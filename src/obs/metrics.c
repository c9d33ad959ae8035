/* Metric storage and the text exposition. See metrics.h for the design. */
#include "obs/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *const method_names[] = {"GET", "HEAD", "POST", "PUT", "DELETE",
                                           "PATCH", "OPTIONS", "OTHER"};
#define METHOD_COUNT 8

/* Codes we answer with; anything else is counted under its class ("5xx"). */
static const unsigned status_codes[] = {200, 201, 202, 204, 304, 400, 401, 403, 404, 405,
                                        409, 413, 415, 422, 429, 500, 502, 503, 504};
#define STATUS_KNOWN (sizeof status_codes / sizeof status_codes[0])
#define STATUS_COUNT (STATUS_KNOWN + 5) /* + 1xx..5xx classes */

static const double duration_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define BUCKET_COUNT (sizeof duration_buckets / sizeof duration_buckets[0])

#define MAX_COLLECTORS 32

static struct {
    const char *const *routes;
    size_t route_count;
    uint64_t requests[METRICS_MAX_ROUTES][METHOD_COUNT][STATUS_COUNT];
    uint64_t duration_bucket[METRICS_MAX_ROUTES][BUCKET_COUNT]; /* non-cumulative */
    uint64_t duration_count[METRICS_MAX_ROUTES];
    uint64_t duration_sum_ns[METRICS_MAX_ROUTES];
    uint64_t requests_total;
    int64_t connections;
    int64_t in_flight;
    uint64_t config_failures;
    uint64_t start_ms;
    pthread_mutex_t collectors_lock;
    struct {
        metrics_collector_fn fn;
        void *arg;
    } collectors[MAX_COLLECTORS];
    size_t collector_count;
} metrics = {.collectors_lock = PTHREAD_MUTEX_INITIALIZER};

void metrics_init(const char *const *route_names, size_t route_count)
{
    metrics.routes = route_names;
    metrics.route_count = route_count < METRICS_MAX_ROUTES ? route_count : METRICS_MAX_ROUTES;
    metrics.start_ms = time_now_ms();
}

static size_t method_index(const char *method)
{
    for (size_t i = 0; i + 1 < METHOD_COUNT; i++)
        if (strcmp(method, method_names[i]) == 0)
            return i;
    return METHOD_COUNT - 1;
}

static size_t status_index(unsigned status)
{
    for (size_t i = 0; i < STATUS_KNOWN; i++)
        if (status_codes[i] == status)
            return i;
    unsigned cls = status / 100;
    return STATUS_KNOWN + (cls >= 1 && cls <= 5 ? cls - 1 : 4);
}

static void status_label(size_t index, char *buf, size_t size)
{
    if (index < STATUS_KNOWN)
        snprintf(buf, size, "%u", status_codes[index]);
    else
        snprintf(buf, size, "%zuxx", index - STATUS_KNOWN + 1);
}

#define ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

void metrics_http_observe(size_t route_id, const char *method, unsigned status,
                          uint64_t duration_ns)
{
    if (route_id >= metrics.route_count)
        return;
    ADD(&metrics.requests[route_id][method_index(method)][status_index(status)], 1);
    ADD(&metrics.requests_total, 1);
    double seconds = (double)duration_ns / 1e9;
    size_t b = 0;
    while (b < BUCKET_COUNT && seconds > duration_buckets[b])
        b++;
    if (b < BUCKET_COUNT)
        ADD(&metrics.duration_bucket[route_id][b], 1);
    ADD(&metrics.duration_count[route_id], 1);
    ADD(&metrics.duration_sum_ns[route_id], duration_ns);
}

void metrics_http_request_started(void) { ADD(&metrics.in_flight, 1); }
void metrics_http_request_finished(void) { ADD(&metrics.in_flight, -1); }
int64_t metrics_http_requests_in_flight(void) { return LOAD(&metrics.in_flight); }
void metrics_http_connection_opened(void) { ADD(&metrics.connections, 1); }
void metrics_http_connection_closed(void) { ADD(&metrics.connections, -1); }
int64_t metrics_http_connections(void) { return LOAD(&metrics.connections); }
uint64_t metrics_http_requests_total(void) { return LOAD(&metrics.requests_total); }
void metrics_config_validation_failed(void) { ADD(&metrics.config_failures, 1); }

int metrics_register_collector(metrics_collector_fn fn, void *arg)
{
    pthread_mutex_lock(&metrics.collectors_lock);
    int rc = CX_ELIMIT;
    if (metrics.collector_count < MAX_COLLECTORS) {
        metrics.collectors[metrics.collector_count].fn = fn;
        metrics.collectors[metrics.collector_count].arg = arg;
        metrics.collector_count++;
        rc = 0;
    }
    pthread_mutex_unlock(&metrics.collectors_lock);
    return rc;
}

void metrics_append_label_value(strbuf *out, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\')
            strbuf_appends(out, "\\\\");
        else if (*p == '"')
            strbuf_appends(out, "\\\"");
        else if (*p == '\n')
            strbuf_appends(out, "\\n");
        else
            strbuf_append(out, p, 1);
    }
}

static void family(strbuf *out, const char *name, const char *type, const char *help)
{
    strbuf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_http(strbuf *out)
{
    family(out, "caxton_http_requests_total", "counter", "HTTP requests answered, by route template.");
    for (size_t r = 0; r < metrics.route_count; r++)
        for (size_t m = 0; m < METHOD_COUNT; m++)
            for (size_t s = 0; s < STATUS_COUNT; s++) {
                uint64_t n = LOAD(&metrics.requests[r][m][s]);
                if (n == 0)
                    continue;
                char status[8];
                status_label(s, status, sizeof status);
                strbuf_appendf(out, "caxton_http_requests_total{method=\"%s\",route=\"",
                               method_names[m]);
                metrics_append_label_value(out, metrics.routes[r]);
                strbuf_appendf(out, "\",status=\"%s\"} %llu\n", status, (unsigned long long)n);
            }

    family(out, "caxton_http_request_duration_seconds", "histogram",
           "Time from request start to response, by route template.");
    for (size_t r = 0; r < metrics.route_count; r++) {
        uint64_t count = LOAD(&metrics.duration_count[r]);
        if (count == 0)
            continue;
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= BUCKET_COUNT; b++) {
            strbuf_appends(out, "caxton_http_request_duration_seconds_bucket{route=\"");
            metrics_append_label_value(out, metrics.routes[r]);
            if (b < BUCKET_COUNT) {
                cumulative += LOAD(&metrics.duration_bucket[r][b]);
                strbuf_appendf(out, "\",le=\"%g\"} %llu\n", duration_buckets[b],
                               (unsigned long long)cumulative);
            } else {
                strbuf_appendf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)count);
            }
        }
        strbuf_appends(out, "caxton_http_request_duration_seconds_sum{route=\"");
        metrics_append_label_value(out, metrics.routes[r]);
        strbuf_appendf(out, "\"} %.9f\n", (double)LOAD(&metrics.duration_sum_ns[r]) / 1e9);
        strbuf_appends(out, "caxton_http_request_duration_seconds_count{route=\"");
        metrics_append_label_value(out, metrics.routes[r]);
        strbuf_appendf(out, "\"} %llu\n", (unsigned long long)count);
    }

    family(out, "caxton_http_requests_in_flight", "gauge",
           "HTTP requests received and not yet completed (this scrape included).");
    strbuf_appendf(out, "caxton_http_requests_in_flight %lld\n",
                   (long long)LOAD(&metrics.in_flight));
    family(out, "caxton_http_connections", "gauge", "HTTP connections open now.");
    strbuf_appendf(out, "caxton_http_connections %lld\n", (long long)LOAD(&metrics.connections));
}

/* Process figures from /proc, in the names Prometheus client libraries use. */
static void render_process(strbuf *out)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        family(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
        strbuf_appendf(out, "process_cpu_seconds_total %.6f\n", cpu);
    }
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size_pages = 0, resident_pages = 0;
    if (f) {
        if (fscanf(f, "%llu %llu", &size_pages, &resident_pages) == 2) {
            family(out, "process_resident_memory_bytes", "gauge", "Resident memory size.");
            strbuf_appendf(out, "process_resident_memory_bytes %llu\n",
                           resident_pages * (unsigned long long)page);
            family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size.");
            strbuf_appendf(out, "process_virtual_memory_bytes %llu\n",
                           size_pages * (unsigned long long)page);
        }
        fclose(f);
    }
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        long fds = -1; /* the DIR's own descriptor */
        for (struct dirent *e; (e = readdir(dir));)
            if (e->d_name[0] != '.')
                fds++;
        closedir(dir);
        family(out, "process_open_fds", "gauge", "Open file descriptors.");
        strbuf_appendf(out, "process_open_fds %ld\n", fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        strbuf_appendf(out, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
    family(out, "process_start_time_seconds", "gauge", "Start time since the epoch.");
    strbuf_appendf(out, "process_start_time_seconds %.3f\n", (double)metrics.start_ms / 1000.0);
}

int metrics_render(strbuf *out)
{
    family(out, "caxton_up", "gauge", "1 while the server is serving.");
    strbuf_appends(out, "caxton_up 1\n");
    family(out, "caxton_build_info", "gauge", "Build information; the value is always 1.");
    strbuf_appends(out, "caxton_build_info{version=\"" CAXTON_VERSION "\"} 1\n");
    family(out, "caxton_uptime_seconds", "gauge", "Seconds since the server started.");
    strbuf_appendf(out, "caxton_uptime_seconds %.3f\n",
                   (double)(time_now_ms() - metrics.start_ms) / 1000.0);
    family(out, "caxton_config_validation_failures_total", "counter",
           "Configuration loads or reloads refused as invalid.");
    strbuf_appendf(out, "caxton_config_validation_failures_total %llu\n",
                   (unsigned long long)LOAD(&metrics.config_failures));
    render_http(out);
    render_process(out);

    pthread_mutex_lock(&metrics.collectors_lock);
    for (size_t i = 0; i < metrics.collector_count; i++)
        metrics.collectors[i].fn(out, metrics.collectors[i].arg);
    pthread_mutex_unlock(&metrics.collectors_lock);
    return out->failed ? CX_ENOMEM : 0;
}
