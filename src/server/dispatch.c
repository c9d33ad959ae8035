/* Cross-thread job queue into the event loop. See dispatch.h. */
#include "server/dispatch.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct job {
    dispatch_fn fn;
    void *arg;
    struct job *next;
} job;

struct dispatch {
    uv_async_t async;
    pthread_mutex_t lock;
    job *head, *tail;
    bool closed;
};

static job *take_all(dispatch *d)
{
    pthread_mutex_lock(&d->lock);
    job *list = d->head;
    d->head = d->tail = NULL;
    pthread_mutex_unlock(&d->lock);
    return list;
}

static void run_jobs(dispatch *d)
{
    for (job *j; (j = take_all(d));) {
        while (j) {
            job *next = j->next;
            j->fn(j->arg);
            free(j);
            j = next;
        }
    }
}

static void on_async(uv_async_t *handle)
{
    run_jobs(handle->data);
}

dispatch *dispatch_new(uv_loop_t *loop, cx_error *err)
{
    dispatch *d = calloc(1, sizeof *d);
    if (!d) {
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&d->lock, NULL);
    int rc = uv_async_init(loop, &d->async, on_async);
    if (rc < 0) {
        cx_error_set(err, CX_EINTERNAL, "cannot create the loop wake-up: %s", uv_strerror(rc));
        pthread_mutex_destroy(&d->lock);
        free(d);
        return NULL;
    }
    d->async.data = d;
    return d;
}

int dispatch_post(dispatch *d, dispatch_fn fn, void *arg)
{
    job *j = malloc(sizeof *j);
    if (!j)
        return CX_ENOMEM;
    j->fn = fn;
    j->arg = arg;
    j->next = NULL;
    pthread_mutex_lock(&d->lock);
    if (d->closed) {
        pthread_mutex_unlock(&d->lock);
        free(j);
        return CX_EUNAVAIL;
    }
    if (d->tail)
        d->tail->next = j;
    else
        d->head = j;
    d->tail = j;
    /* Under the lock, so a shut-down dispatcher is never woken after it
     * has been freed. */
    uv_async_send(&d->async);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static void on_closed(uv_handle_t *handle)
{
    dispatch *d = handle->data;
    pthread_mutex_destroy(&d->lock);
    free(d);
}

void dispatch_shutdown(dispatch *d)
{
    pthread_mutex_lock(&d->lock);
    d->closed = true;
    pthread_mutex_unlock(&d->lock);
    run_jobs(d);
}

void dispatch_free(dispatch *d)
{
    if (!d)
        return;
    dispatch_shutdown(d);
    uv_close((uv_handle_t *)&d->async, on_closed);
}
