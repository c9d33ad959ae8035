/* What HTTP threads may know about loop-owned parts without waiting on the
 * loop: once a second (and after start-up) the loop renders the agent,
 * message and LLM metrics and the agents' health into this snapshot; the
 * /metrics collector and the /health/deep component read it under a mutex.
 * A scrape therefore sees figures at most a second old, and a wedged loop
 * cannot hang a scrape. */
#ifndef CAXTON_SERVER_SNAPSHOT_H
#define CAXTON_SERVER_SNAPSHOT_H

#include "server/app.h"

/* Registers the metrics collector and the `agents` health component. */
int snapshot_init(void);
/* Loop thread: takes a new snapshot. */
void snapshot_take(app *a);
void snapshot_reset(void);

#endif
