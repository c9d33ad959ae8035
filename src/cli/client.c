/* The HTTP client of the command line, and how commands report its results.
 *
 * Transport: one libcurl easy handle per client, reset before each request
 * (connections are kept), bodies bounded by CLIENT_MAX_BODY, only http and
 * https, no redirects. Resolution: the server URL is --server >
 * CAXTON_SERVER > <data_dir>/run/api.url (written by the server, so it is
 * right even for port 0) > http(s)://<api.listen> with wildcard addresses
 * turned into loopback; the token is --token > CAXTON_TOKEN >
 * <data_dir>/tokens/admin.token when readable and the server was found
 * locally (data dir or api.listen, not --server/CAXTON_SERVER: the admin
 * token is never sent to a server someone named); the CA file for https is
 * --cacert > CAXTON_CACERT > the config's api.tls.cert when the server was
 * found locally and the file is readable. The config is loaded in client
 * mode (config_flags.client), and not at all for --server, so a config only
 * the server can use (secrets in ${VAR}, a file only it may read) does not
 * stop these commands. Reporting: one wording for an unreachable server
 * (exit 3), for a certificate that cannot be verified (exit 3, naming
 * --cacert), for HTTP errors ("error CODE: message", exit 1, 3 or 4) and for
 * config errors (exit 2), shared by every command. */
#include "cli/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/config.h"
#include "core/units.h"
#include "core/util.h"
#include "server/server.h"

static bool curl_initialized;

void client_global_cleanup(void)
{
    if (curl_initialized) {
        curl_global_cleanup();
        curl_initialized = false;
    }
}

/* ---- Addresses and files -------------------------------------------------------------------- */

char *client_normalize_url(const char *url)
{
    strbuf sb;
    strbuf_init(&sb);
    int rc = strstr(url, "://") ? strbuf_appends(&sb, url) : strbuf_appendf(&sb, "http://%s", url);
    if (rc != 0) {
        strbuf_free(&sb);
        return NULL;
    }
    size_t keep = (size_t)(strstr(sb.data, "://") - sb.data) + 3; /* never cut the scheme */
    while (sb.len > keep && sb.data[sb.len - 1] == '/')
        sb.data[--sb.len] = '\0';
    return strbuf_detach(&sb);
}

char *client_url_escape(const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    strbuf sb;
    strbuf_init(&sb);
    int rc = strbuf_appends(&sb, "");
    for (const unsigned char *p = (const unsigned char *)text; rc == 0 && *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p)) {
            rc = strbuf_append(&sb, p, 1);
        } else {
            char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            rc = strbuf_append(&sb, enc, 3);
        }
    }
    if (rc != 0) {
        strbuf_free(&sb);
        return NULL;
    }
    return strbuf_detach(&sb);
}

char *client_url_from_listen(const char *listen, bool tls)
{
    char host[HOSTPORT_HOST_MAX + 1], local[HOSTPORT_HOST_MAX + 16];
    unsigned port;
    cx_error err;
    if (!listen || hostport_split(listen, host, sizeof host, &port, &err) != 0 || port == 0)
        return NULL;
    hostport_local(listen, local, sizeof local);
    strbuf sb;
    strbuf_init(&sb);
    if (strbuf_appendf(&sb, "%s://%s", tls ? "https" : "http", local) != 0) {
        strbuf_free(&sb);
        return NULL;
    }
    return strbuf_detach(&sb);
}

char *client_read_trimmed(const char *path, size_t max)
{
    char *data = NULL;
    size_t len = 0;
    cx_error err;
    if (!path || fs_read_file(path, max, &data, &len, &err) != 0)
        return NULL;
    size_t start = 0;
    while (start < len && strchr(" \t\r\n", data[start]))
        start++;
    while (len > start && strchr(" \t\r\n", data[len - 1]))
        len--;
    if (len == start || memchr(data + start, '\0', len - start)) {
        free(data);
        return NULL;
    }
    memmove(data, data + start, len - start);
    data[len - start] = '\0';
    return data;
}

/* ---- Transport ------------------------------------------------------------------------------ */

int client_init(client *c, const char *url, const char *token, uint64_t timeout_ms,
                cx_error *err)
{
    memset(c, 0, sizeof *c);
    if (!curl_initialized) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return cx_error_set(err, CX_EINTERNAL, "cannot initialize libcurl");
        curl_initialized = true;
    }
    c->url = client_normalize_url(url);
    c->token = token ? str_dup(token) : NULL;
    c->timeout_ms = timeout_ms ? timeout_ms : CLI_DEFAULT_TIMEOUT_MS;
    c->curl = curl_easy_init();
    if (!c->url || (token && !c->token) || !c->curl) {
        client_close(c);
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    }
    return 0;
}

int client_set_cacert(client *c, const char *path, cx_error *err)
{
    char *copy = NULL;
    if (path && !(copy = str_dup(path)))
        return cx_error_set(err, CX_ENOMEM, "out of memory");
    free(c->cacert);
    c->cacert = copy;
    return 0;
}

void client_close(client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->url);
    free(c->cacert);
    if (c->token) {
        memset(c->token, 0, strlen(c->token));
        free(c->token);
    }
    memset(c, 0, sizeof *c);
}

void client_response_free(client_response *resp)
{
    free(resp->body);
    json_decref(resp->json);
    memset(resp, 0, sizeof *resp);
}

typedef struct body_sink {
    strbuf buf;
    bool too_big;
    bool no_memory;
} body_sink;

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    body_sink *sink = user;
    size_t n = size * nmemb;
    if (sink->buf.len + n > CLIENT_MAX_BODY) {
        sink->too_big = true;
        return 0;
    }
    if (strbuf_append(&sink->buf, data, n) != 0) {
        sink->no_memory = true;
        return 0;
    }
    return n;
}

static void transport_reason(CURL *curl, CURLcode code, const char *errbuf, uint64_t timeout_ms,
                             char *out, size_t size)
{
    long os_errno = 0;
    curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
    char limit[32];
    switch (code) {
    case CURLE_COULDNT_CONNECT:
        if (os_errno) {
            snprintf(out, size, "%s", strerror((int)os_errno));
            return;
        }
        break;
    case CURLE_OPERATION_TIMEDOUT:
        units_format_duration(timeout_ms, limit, sizeof limit);
        snprintf(out, size, "no answer within %s", limit);
        return;
    default:
        break;
    }
    snprintf(out, size, "%s", errbuf[0] ? errbuf : curl_easy_strerror(code));
}

int client_request_timeout(client *c, const char *method, const char *path, const json_t *body,
                           uint64_t timeout_ms, client_response *resp, cx_error *err)
{
    memset(resp, 0, sizeof *resp);
    c->cert_unverified = false;
    if (!timeout_ms)
        timeout_ms = c->timeout_ms;
    CURL *curl = c->curl;
    char errbuf[CURL_ERROR_SIZE] = "";
    char *payload = NULL;
    strbuf url, auth;
    struct curl_slist *headers = NULL;
    body_sink sink = {0};
    int rc = 0;

    strbuf_init(&url);
    strbuf_init(&auth);
    strbuf_init(&sink.buf);
    if (strbuf_appendf(&url, "%s%s", c->url, path) != 0)
        goto oom;
    if (body && !(payload = json_dumps(body, JSON_COMPACT)))
        goto oom;
    if (c->token && strbuf_appendf(&auth, "Authorization: Bearer %s", c->token) != 0)
        goto oom;
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    headers = h;
    if (h && auth.len)
        h = curl_slist_append(headers, auth.data);
    if (h && payload)
        h = curl_slist_append(headers, "Content-Type: application/json; charset=utf-8");
    if (h)
        h = curl_slist_append(headers, "Expect:");
    if (!h)
        goto oom;

    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url.data);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    if (payload) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "caxton/" CAXTON_VERSION);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    /* A proxy would see the bearer token: never use one for this host's own
     * server, nor for loopback addresses. */
    curl_easy_setopt(curl, CURLOPT_NOPROXY, c->local ? "*" : "localhost,127.0.0.1,::1");
    /* Verification stays on (libcurl's default); a CA file replaces the system bundle. */
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->cacert)
        curl_easy_setopt(curl, CURLOPT_CAINFO, c->cacert);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);

    CURLcode code = curl_easy_perform(curl);
    if (sink.too_big) {
        rc = cx_error_set(err, CX_ETOOBIG, "the server's response is larger than %zu MB",
                          CLIENT_MAX_BODY / (1024 * 1024));
    } else if (sink.no_memory) {
        goto oom;
    } else if (code != CURLE_OK) {
        char reason[CURL_ERROR_SIZE + 64];
        transport_reason(curl, code, errbuf, timeout_ms, reason, sizeof reason);
        c->cert_unverified = code == CURLE_PEER_FAILED_VERIFICATION ||
                             code == CURLE_SSL_ISSUER_ERROR || code == CURLE_SSL_CACERT_BADFILE;
        rc = cx_error_set(err, CX_ECONNECT, "%s", reason);
    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
        resp->body_len = sink.buf.len;
        resp->body = strbuf_detach(&sink.buf);
        if (!resp->body)
            resp->body = str_dup("");
        if (!resp->body)
            goto oom;
        if (resp->body_len > 0)
            resp->json = json_loadb(resp->body, resp->body_len, 0, NULL);
    }
    goto done;
oom:
    rc = cx_error_set(err, CX_ENOMEM, "out of memory");
    client_response_free(resp);
done:
    /* The handle keeps pointers to these; drop them before they are freed. */
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    if (auth.data)
        memset(auth.data, 0, auth.len);
    strbuf_free(&auth);
    strbuf_free(&url);
    strbuf_free(&sink.buf);
    free(payload);
    return rc;
}

int client_request(client *c, const char *method, const char *path, const json_t *body,
                   client_response *resp, cx_error *err)
{
    return client_request_timeout(c, method, path, body, 0, resp, err);
}

static const json_t *error_object(const client_response *resp)
{
    const json_t *e = json_object_get(resp->json, "error");
    return json_is_object(e) ? e : NULL;
}

const char *client_error_code(const client_response *resp)
{
    return output_string(error_object(resp), "code", NULL);
}

const char *client_error_message(const client_response *resp)
{
    return output_string(error_object(resp), "message", NULL);
}

/* ---- Reporting ------------------------------------------------------------------------------ */

int cli_exit_for_http_status(long status)
{
    if (status >= 200 && status < 300)
        return CLI_EXIT_OK;
    if (status == 401 || status == 403)
        return CLI_EXIT_DENIED;
    if (status == 503 || status == 0)
        return CLI_EXIT_UNREACHABLE;
    return CLI_EXIT_PROBLEM;
}

void cli_print_config_errors(const config_diag *diag, const cx_error *err)
{
    if (diag && diag->error_count > 0) {
        for (size_t i = 0; i < diag->error_count; i++)
            fprintf(stderr, "caxton: %s\n", diag->errors[i]);
    } else {
        fprintf(stderr, "caxton: %s\n", err && err->msg[0] ? err->msg : "configuration error");
    }
}

int cli_report_request_failure(const client *c, int rc, const cx_error *err)
{
    if (rc == CX_ECONNECT && c->cert_unverified) {
        char trusted[1024] = "";
        if (c->cacert)
            snprintf(trusted, sizeof trusted, " (CA file %s)", c->cacert);
        fprintf(stderr,
                "caxton: the TLS certificate of the server at %s could not be verified: %s%s; "
                "pass the CA that signed it, or the server's own certificate, with --cacert "
                "FILE or CAXTON_CACERT\n",
                c->url, err->msg, trusted);
        return CLI_EXIT_UNREACHABLE;
    }
    if (rc == CX_ECONNECT) {
        fprintf(stderr,
                "caxton: cannot reach the server at %s: %s (is it running? 'caxton service "
                "start' or 'systemctl start caxton')\n",
                c->url, err->msg);
        return CLI_EXIT_UNREACHABLE;
    }
    fprintf(stderr, "caxton: %s\n", err->msg[0] ? err->msg : cx_strerror(rc));
    return CLI_EXIT_PROBLEM;
}

static void print_details(const json_t *details)
{
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)details, key, value) {
        char *text = output_value_text(value);
        char *name = str_dup(key);
        if (text && name) {
            output_sanitize(text);
            output_sanitize(name);
            fprintf(stderr, "  %s: %s\n", name, text);
        }
        free(text);
        free(name);
    }
}

int cli_report_http_error(const client *c, const client_response *resp)
{
    char code[64], message[1024];
    const char *api_code = client_error_code(resp);
    const char *api_message = client_error_message(resp);
    if (api_code)
        snprintf(code, sizeof code, "%s", api_code);
    else
        snprintf(code, sizeof code, "HTTP_%ld", resp->status);
    if (api_message) {
        snprintf(message, sizeof message, "%s", api_message);
    } else if (resp->body && resp->body[0] && !resp->json) {
        size_t line = strcspn(resp->body, "\r\n");
        snprintf(message, sizeof message, "%.*s", (int)(line < 300 ? line : 300), resp->body);
    } else {
        snprintf(message, sizeof message, "the server answered HTTP %ld", resp->status);
    }
    output_sanitize(code);
    output_sanitize(message);
    fprintf(stderr, "error %s: %s\n", code, message);
    const json_t *details = json_object_get(error_object(resp), "details");
    if (json_is_object(details))
        print_details(details);
    /* the memory system's refusals are the server saying something is wrong
     * (1), not a token refused (4) or a server down (3) */
    if (api_code && (strcmp(api_code, "SCOPE_PERMISSION_DENIED") == 0 ||
                     strcmp(api_code, "MEMORY_UNAVAILABLE") == 0 ||
                     strcmp(api_code, "MEMORY_LIMIT_EXCEEDED") == 0))
        return CLI_EXIT_PROBLEM;
    if (resp->status == 401 && !c->token && c->local)
        fprintf(stderr, "caxton: no token was sent; pass --token, set CAXTON_TOKEN, or run as a "
                        "user who can read <data_dir>/" DATADIR_ADMIN_TOKEN "\n");
    else if (resp->status == 401 && !c->token)
        fprintf(stderr, "caxton: no token was sent; pass --token or set CAXTON_TOKEN (the local "
                        "admin token is not sent to a server named by --server or "
                        "CAXTON_SERVER)\n");
    else if (resp->status == 403)
        fprintf(stderr, "caxton: this token's role does not allow it; use a token with a "
                        "higher role ('caxton token create --role ...')\n");
    return cli_exit_for_http_status(resp->status);
}

int cli_call(client *c, const char *method, const char *path, const json_t *body,
             client_response *resp)
{
    cx_error err;
    int rc = client_request(c, method, path, body, resp, &err);
    if (rc != 0)
        return cli_report_request_failure(c, rc, &err);
    if (resp->status < 200 || resp->status >= 300) {
        int exit_code = cli_report_http_error(c, resp);
        client_response_free(resp);
        return exit_code;
    }
    if (!resp->json) {
        fprintf(stderr, "caxton: the server at %s answered HTTP %ld without a JSON body\n", c->url,
                resp->status);
        client_response_free(resp);
        return CLI_EXIT_PROBLEM;
    }
    return CLI_EXIT_OK;
}

int cli_client_trust(const cli_invocation *inv, const cx_config *cfg, client *c)
{
    const char *source = "--cacert";
    const char *path = cli_flag_value(inv, "cacert");
    if (!path) {
        source = "CAXTON_CACERT";
        path = env_lookup(inv->envp, "CAXTON_CACERT");
        if (path && !path[0])
            path = NULL; /* empty counts as unset */
    }
    if (path && access(path, R_OK) != 0) {
        fprintf(stderr, "caxton: %s %s: cannot read it: %s\n", source, path, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    /* A server found locally is this host's own: its certificate (self-signed
     * or not) is a trust anchor the operator already has. */
    if (!path && c->local && cfg && cfg->api_tls_cert && str_has_prefix(c->url, "https://") &&
        access(cfg->api_tls_cert, R_OK) == 0)
        path = cfg->api_tls_cert;
    cx_error err;
    if (path && client_set_cacert(c, path, &err) != 0) {
        fprintf(stderr, "caxton: %s\n", err.msg);
        return CLI_EXIT_PROBLEM;
    }
    return CLI_EXIT_OK;
}

int cli_config_load(const cli_invocation *inv, config_flags *flags, cx_config **out,
                    config_diag *diag, cx_error *err)
{
    flags->config_path = inv->config_path;
    flags->data_dir = inv->data_dir;
    flags->client = true;
    int rc = config_load(flags, inv->envp, out, diag, err);
    if (rc == 0 && (*out)->file_unreadable)
        fprintf(stderr,
                "caxton: warning: cannot read the config file %s (%s); using the defaults, "
                "CAXTON_* environment and flags (run as a user who can read it, or pass "
                "--server URL)\n",
                (*out)->file_unreadable, strerror(EACCES));
    return rc;
}

char *cli_local_server_url(const cx_config *cfg)
{
    char *path = path_join(cfg->data_dir, DATADIR_URL_FILE);
    char *url = client_read_trimmed(path, 4096);
    free(path);
    if (!url)
        url = client_url_from_listen(cfg->api_listen, cfg->api_tls_cert != NULL);
    return url;
}

/* cli_local_server_url, saying why not when there is none. */
static char *local_server_url(const cx_config *cfg)
{
    char *url = cli_local_server_url(cfg);
    if (!url)
        /* Port 0 (any free port): only the server's URL file knows, and it is gone. */
        fprintf(stderr,
                "caxton: cannot work out the server's URL: %s/" DATADIR_URL_FILE
                " is missing or unreadable (is the server running?) and api.listen '%s' "
                "names no fixed port; pass --server URL or set CAXTON_SERVER\n",
                cfg->data_dir, cfg->api_listen ? cfg->api_listen : "");
    return url;
}

bool cli_server_holds_lock(const char *data_dir)
{
    char *path = path_join(data_dir, DATADIR_LOCK_FILE);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY) : -1;
    free(path);
    if (fd < 0)
        return false;
    bool held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    if (!held)
        flock(fd, LOCK_UN);
    close(fd);
    return held;
}

char *cli_local_token(const char *data_dir)
{
    char *path = data_dir ? path_join(data_dir, DATADIR_ADMIN_TOKEN) : NULL;
    char *token = client_read_trimmed(path, CLIENT_MAX_TOKEN_FILE);
    free(path);
    return token;
}

int cli_connect(const cli_invocation *inv, client *c)
{
    return cli_connect_with(inv, NULL, c);
}

int cli_connect_with(const cli_invocation *inv, const cx_config *loaded, client *c)
{
    cx_config *cfg = NULL;
    cx_error err;
    cx_error_clear(&err);
    memset(c, 0, sizeof *c);

    /* A named server needs nothing from this host's configuration. */
    char *url = NULL;
    if (inv->server) {
        url = str_dup(inv->server);
    } else if (loaded) {
        url = local_server_url(loaded);
        if (!url)
            return CLI_EXIT_UNREACHABLE;
    } else {
        config_flags flags = {0};
        config_diag diag = {0};
        if (cli_config_load(inv, &flags, &cfg, &diag, &err) != 0) {
            cli_print_config_errors(&diag, &err);
            config_diag_free(&diag);
            return CLI_EXIT_USAGE;
        }
        config_diag_free(&diag);
        url = local_server_url(cfg);
        if (!url) {
            config_free(cfg);
            return CLI_EXIT_UNREACHABLE;
        }
    }
    /* The admin token file goes only to the server that holds this data dir:
     * with no server running, whatever listens on api.listen could be anyone. */
    const cx_config *conf = inv->server ? NULL : cfg ? cfg : loaded; /* local only */
    char *token = inv->token                                    ? str_dup(inv->token)
                  : conf && cli_server_holds_lock(conf->data_dir) ? cli_local_token(conf->data_dir)
                                                                  : NULL;
    int rc = url && (token || !inv->token) ? client_init(c, url, token, inv->timeout_ms, &err)
                                           : cx_error_set(&err, CX_ENOMEM, "out of memory");
    free(url);
    if (token) {
        memset(token, 0, strlen(token));
        free(token);
    }
    if (rc != 0) {
        config_free(cfg);
        fprintf(stderr, "caxton: %s\n", err.msg);
        return CLI_EXIT_PROBLEM;
    }
    c->local = inv->server == NULL;
    int exit_code = cli_client_trust(inv, conf, c);
    config_free(cfg);
    if (exit_code != CLI_EXIT_OK)
        client_close(c);
    return exit_code;
}

/* One page's path: path, then limit and cursor in its query. NULL when out of memory. */
static char *page_path(const char *path, size_t limit, const char *cursor)
{
    strbuf sb;
    strbuf_init(&sb);
    char *escaped = cursor ? client_url_escape(cursor) : NULL;
    int rc = cursor && !escaped ? CX_ENOMEM
                                : strbuf_appendf(&sb, "%s%climit=%zu%s%s", path,
                                                 strchr(path, '?') ? '&' : '?', limit,
                                                 escaped ? "&cursor=" : "", escaped ? escaped : "");
    free(escaped);
    if (rc != 0) {
        strbuf_free(&sb);
        return NULL;
    }
    return strbuf_detach(&sb);
}

int cli_fetch_list(client *c, const char *path, size_t max, json_t **items, bool *more)
{
    *items = json_array();
    if (more)
        *more = false;
    char *cursor = NULL;
    int rc = *items ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
    for (int page = 0; rc == 0; page++) {
        size_t have = json_array_size(*items);
        if ((max && have >= max) || page == CLI_MAX_PAGES) {
            if (more)
                *more = cursor != NULL;
            break;
        }
        size_t want = max && max - have < CLI_PAGE_LIMIT ? max - have : CLI_PAGE_LIMIT;
        char *url = page_path(path, want, cursor);
        client_response resp;
        rc = url ? cli_call(c, "GET", url, NULL, &resp) : CLI_EXIT_PROBLEM;
        if (!url)
            fprintf(stderr, "caxton: out of memory\n");
        free(url);
        if (rc != 0)
            break;
        const json_t *got = json_object_get(resp.json, "items");
        if (!json_is_array(got)) {
            fprintf(stderr, "caxton: the server at %s answered %s without an items list\n",
                    c->url, path);
            client_response_free(&resp);
            rc = CLI_EXIT_PROBLEM;
            break;
        }
        size_t i;
        const json_t *item;
        json_array_foreach(got, i, item) {
            if (max && json_array_size(*items) >= max) {
                if (more)
                    *more = true;
                break;
            }
            json_array_append(*items, (json_t *)item);
        }
        const char *next = output_string(resp.json, "next_cursor", NULL);
        free(cursor);
        cursor = next && next[0] ? str_dup(next) : NULL;
        client_response_free(&resp);
        if (!cursor)
            break;
    }
    free(cursor);
    if (rc != 0) {
        json_decref(*items);
        *items = NULL;
    }
    return rc;
}

int cli_request_once(const cli_invocation *inv, const char *method, const char *path,
                     const json_t *body, client_response *resp)
{
    memset(resp, 0, sizeof *resp);
    client c;
    int rc = cli_connect(inv, &c);
    if (rc != 0)
        return rc;
    rc = cli_call(&c, method, path, body, resp);
    client_close(&c);
    return rc;
}

char *cli_api_path(const char *prefix, const char *segment, const char *suffix)
{
    char *escaped = client_url_escape(segment);
    strbuf sb;
    strbuf_init(&sb);
    if (!escaped || strbuf_appendf(&sb, "%s%s%s", prefix, escaped, suffix ? suffix : "") != 0) {
        free(escaped);
        strbuf_free(&sb);
        fprintf(stderr, "caxton: out of memory\n");
        return NULL;
    }
    free(escaped);
    return strbuf_detach(&sb);
}

int cli_query_add(strbuf *path, const char *key, const char *value)
{
    if (!value)
        return 0;
    char *escaped = client_url_escape(value);
    int rc = escaped ? strbuf_appendf(path, "%c%s=%s", strchr(path->data, '?') ? '&' : '?', key,
                                      escaped)
                     : CX_ENOMEM;
    free(escaped);
    return rc;
}
