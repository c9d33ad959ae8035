/* Component health for /health/deep, /api/v1/status and the production check.
 *
 * Readable from any thread without waiting on the loop: the loop publishes
 * its heartbeat and the state database probe result every second, and the
 * HTTP thread reads them. So a wedged loop shows up as a failing component
 * instead of a hanging health check. Later parts register their own
 * components with health_register(). */
#ifndef CAXTON_SERVER_HEALTH_H
#define CAXTON_SERVER_HEALTH_H

#include <jansson.h>

#include "server/app.h"

typedef struct health_result {
    app_health status;
    char detail[256];
} health_result;

typedef void (*health_check_fn)(app *a, health_result *out, void *arg);

/* Adds a component; critical ones make the server unready when failing. */
int health_register(const char *name, bool critical, health_check_fn fn, void *arg);
void health_reset(void);

/* Loop thread: records the latest state database probe. */
void health_set_state_db(app_health status, const char *detail);

/* Fills components ([{name,status,critical,detail}]) and returns the overall
 * verdict: FAIL if a critical component fails, WARN if anything is not ok. */
app_health health_collect(app *a, json_t **components);
const char *health_status_name(app_health h);   /* ok | warn | fail */
const char *health_overall_name(app_health h);  /* ok | degraded | failing */

/* The production readiness checks of `caxton status --production-check`. */
json_t *health_production_checks(app *a, const cx_config *cfg, app_health overall);

#endif
