/* One error convention for the whole server.
 *
 * Functions return 0 or a negative CX_E* code (or a pointer, NULL on error),
 * and fill a cx_error whose message is written for the operator: it says what
 * went wrong and, where we know, how to fix it. One table maps each code to
 * its stable API code and HTTP status, so the REST layer never invents its
 * own. */
#ifndef CAXTON_CORE_ERROR_H
#define CAXTON_CORE_ERROR_H

#include <stddef.h>

enum {
    CX_OK = 0,
    CX_EINVAL = -1,     /* invalid input (422 at the API) */
    CX_ENOMEM = -2,
    CX_EIO = -3,        /* file system or database I/O */
    CX_ENOTFOUND = -4,
    CX_EEXIST = -5,     /* conflict with existing state (409) */
    CX_EAUTH = -6,      /* no or bad credentials (401) */
    CX_EFORBIDDEN = -7, /* authenticated but not allowed (403) */
    CX_EBUSY = -8,      /* resource held by someone else (lock) */
    CX_ECONFIG = -9,    /* configuration error */
    CX_ETOOBIG = -10,   /* over a size limit (413) */
    CX_ETIMEOUT = -11,
    CX_EUNAVAIL = -12,  /* not ready / shutting down (503) */
    CX_EPARSE = -13,    /* malformed syntax (400) */
    CX_ELIMIT = -14,    /* rate or queue limit reached (429) */
    CX_EINTERNAL = -15, /* a bug or an unexpected library failure (500) */
    CX_ECONNECT = -16,  /* cannot reach a peer (the CLI's server, a provider) */
    CX_EMETHOD = -17,   /* method not allowed (405) */
};
#define CX_ERROR_CODE_MIN (-17)

#define CX_ERROR_MSG_MAX 768

typedef struct cx_error {
    int code;
    char msg[CX_ERROR_MSG_MAX];
} cx_error;

/* Sets err (which may be NULL) and returns code, so callers can write
 * `return cx_error_set(err, CX_EINVAL, "...")`. */
int cx_error_set(cx_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "context: " to an existing message. */
int cx_error_wrap(cx_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cx_error_clear(cx_error *err);

const char *cx_strerror(int code);        /* short human text: "not found" */
const char *cx_error_api_code(int code);  /* stable API code: "NOT_FOUND" */
int cx_error_http_status(int code);       /* 404 */

#endif
