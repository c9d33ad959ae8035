/* Prometheus metrics.
 *
 * Hot-path counters are plain atomics in fixed arrays indexed by small ids
 * (route, method, status class), so recording a request costs a few atomic
 * adds and no lock. Other parts add their own families by registering a
 * collector that appends text at scrape time. Labels are always bounded:
 * route templates, never raw URLs. */
#ifndef CAXTON_OBS_METRICS_H
#define CAXTON_OBS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define METRICS_MAX_ROUTES 64

/* Route templates ("/api/v1/tokens/{id}"); index = route id. The last one
 * should be the catch-all "unmatched". Strings must outlive the process. */
void metrics_init(const char *const *route_names, size_t route_count);

void metrics_http_observe(size_t route_id, const char *method, unsigned status,
                          uint64_t duration_ns);
/* A request from its first header to its completion. */
void metrics_http_request_started(void);
void metrics_http_request_finished(void);
int64_t metrics_http_requests_in_flight(void);
void metrics_http_connection_opened(void);
void metrics_http_connection_closed(void);
int64_t metrics_http_connections(void);
uint64_t metrics_http_requests_total(void);
void metrics_config_validation_failed(void);

/* A collector appends complete families (# HELP, # TYPE, samples). */
typedef void (*metrics_collector_fn)(strbuf *out, void *arg);
int metrics_register_collector(metrics_collector_fn fn, void *arg);

/* The whole exposition, text format 0.0.4. */
int metrics_render(strbuf *out);

/* Appends a label value escaped for the text format. */
void metrics_append_label_value(strbuf *out, const char *value);

#endif
