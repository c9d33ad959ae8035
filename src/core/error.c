/* The error table: each CX_E* code with its text, API code and HTTP status. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *text;
    const char *api_code;
    int http_status;
} error_table[] = {
    [0] = {"success", "OK", 200},
    [-CX_EINVAL] = {"invalid input", "INVALID", 422},
    [-CX_ENOMEM] = {"out of memory", "INTERNAL", 500},
    [-CX_EIO] = {"input/output error", "IO_ERROR", 500},
    [-CX_ENOTFOUND] = {"not found", "NOT_FOUND", 404},
    [-CX_EEXIST] = {"conflict", "CONFLICT", 409},
    [-CX_EAUTH] = {"authentication required", "UNAUTHENTICATED", 401},
    [-CX_EFORBIDDEN] = {"permission denied", "FORBIDDEN", 403},
    [-CX_EBUSY] = {"resource busy", "BUSY", 409},
    [-CX_ECONFIG] = {"configuration error", "CONFIG_INVALID", 422},
    [-CX_ETOOBIG] = {"too large", "PAYLOAD_TOO_LARGE", 413},
    [-CX_ETIMEOUT] = {"timed out", "TIMEOUT", 504},
    [-CX_EUNAVAIL] = {"unavailable", "UNAVAILABLE", 503},
    [-CX_EPARSE] = {"malformed input", "BAD_REQUEST", 400},
    [-CX_ELIMIT] = {"limit reached", "RATE_LIMITED", 429},
    [-CX_EINTERNAL] = {"internal error", "INTERNAL", 500},
    [-CX_ECONNECT] = {"cannot connect", "UNREACHABLE", 502},
    [-CX_EMETHOD] = {"method not allowed", "METHOD_NOT_ALLOWED", 405},
};

static int error_index(int code)
{
    if (code > 0 || code < CX_ERROR_CODE_MIN)
        return -CX_EINTERNAL;
    return -code;
}

const char *cx_strerror(int code) { return error_table[error_index(code)].text; }
const char *cx_error_api_code(int code) { return error_table[error_index(code)].api_code; }
int cx_error_http_status(int code) { return error_table[error_index(code)].http_status; }

int cx_error_set(cx_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int cx_error_wrap(cx_error *err, const char *fmt, ...)
{
    if (!err)
        return CX_EINTERNAL;
    char prefix[CX_ERROR_MSG_MAX], old[CX_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t plen = strlen(prefix);
    if (plen > sizeof err->msg - 3)
        plen = sizeof err->msg - 3;
    memcpy(err->msg, prefix, plen);
    memcpy(err->msg + plen, ": ", 2);
    snprintf(err->msg + plen + 2, sizeof err->msg - plen - 2, "%.*s",
             (int)(sizeof err->msg - plen - 3), old);
    return err->code;
}

void cx_error_clear(cx_error *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}
