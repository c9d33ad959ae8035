/* The command line's HTTP client for the REST API (libcurl easy interface).
 *
 * One client per command: a base URL, an optional bearer token and a time
 * limit per request. A request returns 0 whenever the server answered, with
 * whatever status; only transport failures (refused, DNS, timeout, TLS) are
 * errors (CX_ECONNECT with a short reason), so callers decide what a status
 * means. Response bodies are bounded (CLIENT_MAX_BODY). An https server's
 * certificate is always verified, against the client's CA file when one is
 * set (client_set_cacert, CURLOPT_CAINFO), else the system's CAs; a failed
 * verification sets cert_unverified so the caller can say how to fix it. */
#ifndef CAXTON_CLI_CLIENT_H
#define CAXTON_CLI_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define CLIENT_MAX_BODY ((size_t)64 * 1024 * 1024)
#define CLIENT_MAX_TOKEN_FILE 4096

typedef struct client {
    char *url;           /* base URL without a trailing slash: "http://127.0.0.1:8080" */
    char *token;         /* bearer token, or NULL */
    char *cacert;        /* PEM file of trust anchors for https (CURLOPT_CAINFO), or NULL */
    uint64_t timeout_ms; /* per request, connecting included */
    bool local;          /* the URL was found on this host (run/api.url, api.listen), not
                          * given with --server/CAXTON_SERVER: only then are the admin
                          * token file and the config's certificate used */
    bool cert_unverified; /* the last request failed: the server's certificate could not
                           * be verified (untrusted, wrong name, expired, bad CA file) */
    void *curl;          /* CURL easy handle, reused between requests */
} client;

typedef struct client_response {
    long status;         /* HTTP status */
    char *body;          /* NUL-terminated */
    size_t body_len;
    json_t *json;        /* the body parsed as JSON, or NULL when it is not */
} client_response;

/* url is normalized (scheme added, trailing slashes dropped); token may be NULL. */
int client_init(client *c, const char *url, const char *token, uint64_t timeout_ms,
                cx_error *err);
void client_close(client *c);
/* Verifies servers against the certificates in a PEM file (a CA, or a
 * self-signed or leaf certificate: partial chains are accepted) instead of
 * the system's CA bundle; NULL goes back to the system's. */
int client_set_cacert(client *c, const char *path, cx_error *err);

/* method "GET", "POST", "DELETE", ...; path starts with "/" and may carry a
 * query; body (may be NULL) is sent as JSON. timeout_ms 0 uses the client's. */
int client_request_timeout(client *c, const char *method, const char *path, const json_t *body,
                           uint64_t timeout_ms, client_response *resp, cx_error *err);
int client_request(client *c, const char *method, const char *path, const json_t *body,
                   client_response *resp, cx_error *err);
void client_response_free(client_response *resp);

/* The error envelope's code and message, or NULL when the body has none. */
const char *client_error_code(const client_response *resp);
const char *client_error_message(const client_response *resp);

/* "0.0.0.0:8080" -> "http://127.0.0.1:8080", "[::]:8443" with tls ->
 * "https://[::1]:8443" (hostport_local). NULL on a malformed address or port
 * 0 (any free port: only the server knows which). free() the result. */
char *client_url_from_listen(const char *listen, bool tls);
/* Adds "http://" when no scheme is given and drops trailing slashes. */
char *client_normalize_url(const char *url);
/* Percent-encodes everything but unreserved characters (RFC 3986), for a
 * path segment or a query value. free() the result; NULL when out of memory. */
char *client_url_escape(const char *text);
/* A file's content with surrounding whitespace removed (token and URL files);
 * NULL when it is missing, unreadable, empty or larger than max. */
char *client_read_trimmed(const char *path, size_t max);

/* Releases libcurl's global state if a client used it (end of the process). */
void client_global_cleanup(void);

#endif
