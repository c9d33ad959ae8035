/* Hands work from any thread to the event loop thread.
 *
 * HTTP threads must never wait on the core: they post a job here and suspend
 * their connection; the loop runs the job and resumes it. A mutex-guarded
 * FIFO plus one uv_async wake-up; uv_async coalesces, so the loop drains the
 * whole queue on each wake. */
#ifndef CAXTON_SERVER_DISPATCH_H
#define CAXTON_SERVER_DISPATCH_H

#include <uv.h>

#include "core/error.h"

typedef struct dispatch dispatch;
typedef void (*dispatch_fn)(void *arg);

dispatch *dispatch_new(uv_loop_t *loop, cx_error *err);
/* Thread-safe. CX_EUNAVAIL once the dispatcher is shut down. */
int dispatch_post(dispatch *d, dispatch_fn fn, void *arg);
/* On the loop thread: refuses new jobs and runs the queued ones. Posting
 * threads may still call dispatch_post (and be refused) until they stop. */
void dispatch_shutdown(dispatch *d);
/* On the loop thread, once no other thread can post any more: closes the
 * handle; the dispatcher is freed when the loop runs the close. */
void dispatch_free(dispatch *d);

#endif
