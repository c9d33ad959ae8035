/* Small shared helpers: growable buffers, clocks, randomness, files, text.
 *
 * Nothing here keeps state between calls. File helpers name the path and the
 * system's reason in their errors, because their callers (config, data dir,
 * agent files) pass those messages straight to an operator. Text helpers are
 * bounded: edit distance runs in a band around the diagonal, so a "did you
 * mean" over long input costs O(n * max), not O(n * m). */
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A buffer never grows past this, so size arithmetic cannot overflow. */
#define STRBUF_MAX (SIZE_MAX / 4)

/* ---- strbuf ------------------------------------------------------------ */

/* What an empty buffer points at, so data is always a string; never written
 * (cap 0 means nothing is owned) and never freed. */
static char strbuf_empty[1];

void strbuf_init(strbuf *sb)
{
    sb->data = strbuf_empty;
    sb->len = 0;
    sb->cap = 0;
    sb->failed = false;
}

void strbuf_free(strbuf *sb)
{
    if (sb->cap)
        free(sb->data);
    strbuf_init(sb);
}

/* Makes room for `extra` more bytes plus the terminating NUL. */
static int strbuf_reserve(strbuf *sb, size_t extra)
{
    if (extra > STRBUF_MAX - sb->len - 1) {
        sb->failed = true;
        return CX_ENOMEM;
    }
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap)
        return 0;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need)
        cap *= 2;
    char *data = realloc(sb->cap ? sb->data : NULL, cap);
    if (!data) {
        sb->failed = true;
        return CX_ENOMEM;
    }
    sb->data = data;
    sb->cap = cap;
    return 0;
}

int strbuf_append(strbuf *sb, const void *data, size_t len)
{
    if (strbuf_reserve(sb, len) != 0)
        return CX_ENOMEM;
    if (len)
        memcpy(sb->data + sb->len, data, len);
    sb->len += len;
    sb->data[sb->len] = '\0';
    return 0;
}

int strbuf_appends(strbuf *sb, const char *s)
{
    return strbuf_append(sb, s, strlen(s));
}

int strbuf_appendf(strbuf *sb, const char *fmt, ...)
{
    va_list ap, copy;
    va_start(ap, fmt);
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    int rc = n < 0 ? CX_EINVAL : strbuf_reserve(sb, (size_t)n);
    if (rc == 0) {
        vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
        sb->len += (size_t)n;
    }
    va_end(ap);
    return rc;
}

char *strbuf_detach(strbuf *sb)
{
    char *data = sb->cap ? sb->data : str_dup("");
    strbuf_init(sb);
    return data;
}

/* ---- clocks ------------------------------------------------------------- */

uint64_t time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t time_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void time_format_rfc3339(uint64_t epoch_ms, char *buf, size_t size)
{
    if (size == 0)
        return;
    time_t secs = (time_t)(epoch_ms / 1000u);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(buf, size, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(epoch_ms % 1000u));
}

/* ---- randomness ---------------------------------------------------------- */

int random_bytes(void *buf, size_t len, cx_error *err)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom(p + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return cx_error_set(err, CX_EIO, "cannot read random bytes from the kernel: %s",
                                strerror(errno));
        }
        done += (size_t)n;
    }
    return 0;
}

void hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

/* ---- files --------------------------------------------------------------- */

static bool is_directory(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Creates one directory; an existing directory is fine. */
static int mkdir_one(const char *path, mode_t mode, cx_error *err)
{
    if (mkdir(path, mode) == 0)
        return 0;
    int saved = errno;
    /* EEXIST, but also EACCES/EROFS on a parent that already exists. */
    if (is_directory(path))
        return 0;
    if (saved == EEXIST)
        return cx_error_set(err, CX_EIO, "cannot create %s: it exists and is not a directory",
                            path);
    return cx_error_set(err, CX_EIO, "cannot create %s: %s", path, strerror(saved));
}

int fs_mkdir_p(const char *path, mode_t mode, cx_error *err)
{
    size_t len = path ? strlen(path) : 0;
    if (len == 0)
        return cx_error_set(err, CX_EINVAL, "cannot create a directory with an empty path");
    if (len >= PATH_MAX)
        return cx_error_set(err, CX_EINVAL,
                            "cannot create %.64s...: the path is longer than %d bytes", path,
                            PATH_MAX - 1);
    char buf[PATH_MAX];
    memcpy(buf, path, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '/' || buf[i - 1] == '/')
            continue;
        buf[i] = '\0';
        int rc = mkdir_one(buf, mode, err);
        buf[i] = '/';
        if (rc != 0)
            return rc;
    }
    return mkdir_one(buf, mode, err);
}

int fs_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Makes the rename durable: the directory entry itself must reach the disk. */
int fs_fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Writes data into a new file at tmp; returns 0 or -1 with errno set. */
static int write_temp_file(const char *tmp, const void *data, size_t len, mode_t mode)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -1;
    /* The caller's mode exactly, whatever the umask or a stale temp file had. */
    int rc = fchmod(fd, mode);
    if (rc == 0)
        rc = fs_write_all(fd, data, len);
    if (rc == 0)
        rc = fsync(fd);
    int saved = errno;
    if (close(fd) != 0 && rc == 0)
        return -1;
    errno = saved;
    return rc;
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, cx_error *err)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return cx_error_set(err, CX_EINVAL, "cannot write %.64s...: the path is too long", path);
    if (write_temp_file(tmp, data, len, mode) != 0 || rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        return cx_error_set(err, CX_EIO, "cannot write %s: %s", path, strerror(saved));
    }
    if (fs_fsync_parent(path) != 0)
        return cx_error_set(err, CX_EIO, "cannot sync the directory of %s: %s", path,
                            strerror(errno));
    return 0;
}

static int read_error(const char *path, int errnum, cx_error *err)
{
    int code = errnum == ENOENT || errnum == ENOTDIR ? CX_ENOTFOUND : CX_EIO;
    return cx_error_set(err, code, "cannot read %s: %s", path, strerror(errnum));
}

static int too_big_error(const char *path, size_t max, cx_error *err)
{
    return cx_error_set(err, CX_ETOOBIG, "cannot read %s: it is larger than the limit of %zu bytes",
                        path, max);
}

/* Reads fd to the end into a new buffer, refusing more than max bytes. */
static int read_fd(int fd, const char *path, size_t max, size_t hint, char **out, size_t *out_len,
                   cx_error *err)
{
    size_t cap = (hint && hint <= max ? hint : (max < 4096 ? max : 4096)) + 1;
    size_t len = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        return cx_error_set(err, CX_ENOMEM, "cannot read %s: out of memory", path);
    for (;;) {
        if (len == cap) {
            size_t grow = cap > max / 2 ? max + 1 : cap * 2;
            char *bigger = grow > cap ? realloc(buf, grow + 1) : NULL;
            if (!bigger) {
                free(buf);
                if (grow > cap)
                    return cx_error_set(err, CX_ENOMEM, "cannot read %s: out of memory", path);
                return too_big_error(path, max, err);
            }
            buf = bigger;
            cap = grow;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            free(buf);
            return read_error(path, saved, err);
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max) {
            free(buf);
            return too_big_error(path, max, err);
        }
    }
    buf[len] = '\0';
    *out = buf;
    if (out_len)
        *out_len = len;
    return 0;
}

int fs_read_file(const char *path, size_t max, char **out, size_t *len, cx_error *err)
{
    *out = NULL;
    if (len)
        *len = 0;
    if (max > STRBUF_MAX)
        max = STRBUF_MAX; /* keeps max + 1 and doubling from overflowing */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return read_error(path, errno, err);
    struct stat st;
    int rc;
    if (fstat(fd, &st) != 0)
        rc = read_error(path, errno, err);
    else if (S_ISDIR(st.st_mode))
        rc = read_error(path, EISDIR, err);
    else if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max)
        rc = too_big_error(path, max, err);
    else
        rc = read_fd(fd, path, max, S_ISREG(st.st_mode) ? (size_t)st.st_size : 0, out, len, err);
    close(fd);
    return rc;
}

bool fs_exists(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0;
}

char *path_join(const char *dir, const char *name)
{
    if (!dir || !*dir)
        return str_dup(name);
    if (!name)
        return NULL;
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    while (*name == '/')
        name++;
    size_t nlen = strlen(name);
    bool slash = !(dlen == 1 && dir[0] == '/');
    char *out = malloc(dlen + slash + nlen + 1);
    if (!out)
        return NULL;
    memcpy(out, dir, dlen);
    if (slash)
        out[dlen] = '/';
    memcpy(out + dlen + slash, name, nlen + 1);
    return out;
}

/* ---- text ---------------------------------------------------------------- */

char *str_dup(const char *s)
{
    if (!s)
        return NULL;
    size_t len = strlen(s) + 1;
    char *copy = malloc(len);
    if (copy)
        memcpy(copy, s, len);
    return copy;
}

bool str_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static size_t min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* One row of the banded optimal-string-alignment distance (Levenshtein plus
 * adjacent transpositions, the most common typo). Returns the row minimum. */
static size_t edit_row(const char *a, const char *b, size_t i, size_t lb, size_t max,
                       const size_t *prev2, const size_t *prev, size_t *cur)
{
    size_t big = max + 1;
    size_t lo = i > max ? i - max : 1;
    size_t hi = i + max < lb ? i + max : lb;
    cur[lo - 1] = (lo == 1 && i <= max) ? i : big;
    size_t row_min = cur[lo - 1];
    for (size_t j = lo; j <= hi; j++) {
        size_t cost = a[i - 1] != b[j - 1];
        size_t v = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < v)
            v = prev2[j - 2] + 1;
        cur[j] = v > big ? big : v;
        if (cur[j] < row_min)
            row_min = cur[j];
    }
    return row_min;
}

size_t text_edit_distance(const char *a, const char *b, size_t max)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t longer = la > lb ? la : lb;
    if (max > longer)
        max = longer; /* the distance never exceeds the longer length */
    if ((la > lb ? la - lb : lb - la) > max)
        return max + 1;
    if (la == 0 || lb == 0)
        return longer;
    size_t *rows = malloc(3 * (lb + 1) * sizeof *rows);
    if (!rows)
        return max + 1;
    size_t *prev2 = rows, *prev = rows + lb + 1, *cur = rows + 2 * (lb + 1);
    for (size_t j = 0; j < 3 * (lb + 1); j++)
        rows[j] = max + 1;
    for (size_t j = 0; j <= lb && j <= max; j++)
        prev[j] = j;
    size_t prev_min = 0, result = max + 1;
    for (size_t i = 1; i <= la; i++) {
        size_t row_min = edit_row(a, b, i, lb, max, prev2, prev, cur);
        /* A transposition can skip a row, so two rows over max end it. */
        if (row_min > max && prev_min > max)
            goto done;
        prev_min = row_min;
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    result = prev[lb] > max ? max + 1 : prev[lb];
done:
    free(rows);
    return result;
}

const char *text_suggest(const char *word, const char *const *candidates, size_t n)
{
    size_t len = strlen(word);
    size_t limit = len / 3 > 1 ? len / 3 : 1;
    const char *best = NULL;
    size_t best_distance = limit + 1;
    for (size_t i = 0; i < n; i++) {
        if (!candidates[i])
            continue;
        size_t d = text_edit_distance(word, candidates[i], best_distance - 1);
        if (d < best_distance) {
            best = candidates[i];
            best_distance = d;
            if (d == 0)
                break;
        }
    }
    return best;
}

/* Length of the valid UTF-8 sequence at s (at most avail bytes), or 0. */
static size_t utf8_sequence_length(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        if (c == 0xED)
            hi = 0x9F; /* UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else
        return 0;
    if (avail < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

bool text_is_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_sequence_length(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

void text_make_utf8(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence_length(p + i, len - i);
        if (n == 0) {
            p[i] = '?';
            n = 1;
        }
        i += n;
    }
}

const char *env_lookup(char *const *envp, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i] + len + 1;
    return NULL;
}

int hostport_split(const char *text, char *host, size_t host_size, unsigned *port, cx_error *err)
{
    const char *start = text, *end, *colon;
    if (text[0] == '[') {
        start = text + 1;
        end = strchr(start, ']');
        colon = end ? end + 1 : NULL;
        if (!end || *colon != ':' || !memchr(start, ':', (size_t)(end - start)))
            goto bad;
    } else {
        colon = strrchr(text, ':');
        end = colon;
        if (!colon || memchr(text, ':', (size_t)(colon - text)))
            goto bad;
    }
    size_t host_len = (size_t)(end - start);
    if (host_len == 0 || host_len > HOSTPORT_HOST_MAX || host_len >= host_size)
        goto bad;
    const char *digits = colon + 1;
    size_t ndigits = strspn(digits, "0123456789");
    if (ndigits == 0 || ndigits > 5 || digits[ndigits] != '\0' || atol(digits) > 65535)
        goto bad;
    memcpy(host, start, host_len);
    host[host_len] = '\0';
    *port = (unsigned)atol(digits);
    return 0;
bad:
    return cx_error_set(err, CX_EINVAL,
                        "'%.300s' is not HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080; port "
                        "0 to 65535, host up to %d characters)", text, HOSTPORT_HOST_MAX);
}

void hostport_local(const char *listen, char *out, size_t size)
{
    if (str_has_prefix(listen, "0.0.0.0:"))
        snprintf(out, size, "127.0.0.1%s", listen + 7);
    else if (str_has_prefix(listen, "[::]:"))
        snprintf(out, size, "[::1]%s", listen + 4);
    else
        snprintf(out, size, "%s", listen);
}

/* The escaped form of one byte, or NULL when it is printed as is. */
static const char *quote_escape(unsigned char c, char tmp[8])
{
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    default: break;
    }
    if (c < 0x20 || c == 0x7f) {
        snprintf(tmp, 8, "\\x%02x", c);
        return tmp;
    }
    return NULL;
}

/* The character at p[i] as it is printed: escaped, or its own UTF-8 bytes. */
static const char *quote_piece(const unsigned char *p, size_t len, size_t i, char tmp[8],
                               size_t *consumed, size_t *piece_len)
{
    size_t n = utf8_sequence_length(p + i, len - i);
    const char *piece = NULL;
    if (n == 0) {
        snprintf(tmp, 8, "\\x%02x", p[i]);
        piece = tmp;
        n = 1;
    } else if (n == 1) {
        piece = quote_escape(p[i], tmp);
    }
    *consumed = n;
    *piece_len = piece ? strlen(piece) : n;
    return piece ? piece : (const char *)p + i;
}

void text_quote(const char *s, char *out, size_t size)
{
    if (size < 8) {
        if (size)
            out[0] = '\0';
        return;
    }
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t len = strlen((const char *)p), total = 0, n, plen;
    char tmp[8];
    for (size_t i = 0; i < len; i += n) {
        quote_piece(p, len, i, tmp, &n, &plen);
        total += plen;
    }
    /* Whole value plus two quotes and the NUL, or cut to leave room for ..." */
    size_t limit = total + 3 <= size ? size - 2 : size - 5, o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len; i += n) {
        const char *piece = quote_piece(p, len, i, tmp, &n, &plen);
        if (o + plen > limit) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, piece, plen);
        o += plen;
    }
    out[o++] = '"';
    out[o] = '\0';
}

bool mem_equal_ct(const void *a, const void *b, size_t len)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char diff = 0;
    for (size_t i = 0; i < len; i++)
        diff |= x[i] ^ y[i];
    return diff == 0;
}

/* ---- RFC 3339 ---------------------------------------------------------- */

static bool rfc_digits(const char **p, int count, int *out)
{
    int v = 0;
    for (int i = 0; i < count; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += count;
    *out = v;
    return true;
}

static bool rfc_char(const char **p, char a, char b)
{
    if (**p != a && **p != b)
        return false;
    (*p)++;
    return true;
}

bool time_parse_rfc3339(const char *text, uint64_t *out_ms)
{
    const char *p = text;
    int year, mon, day, hour, min, sec, millis = 0, offset_min = 0;
    if (!rfc_digits(&p, 4, &year) || !rfc_char(&p, '-', '-') || !rfc_digits(&p, 2, &mon) ||
        !rfc_char(&p, '-', '-') || !rfc_digits(&p, 2, &day) || !rfc_char(&p, 'T', 't') ||
        !rfc_digits(&p, 2, &hour) || !rfc_char(&p, ':', ':') || !rfc_digits(&p, 2, &min) ||
        !rfc_char(&p, ':', ':') || !rfc_digits(&p, 2, &sec))
        return false;
    if (rfc_char(&p, '.', '.')) {
        int digits = 0;
        for (; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                millis = millis * 10 + (*p - '0');
        if (digits == 0)
            return false;
        for (; digits < 3; digits++)
            millis *= 10;
    }
    if (!rfc_char(&p, 'Z', 'z')) {
        int sign = *p == '-' ? -1 : 1, oh, om;
        if (!rfc_char(&p, '+', '-') || !rfc_digits(&p, 2, &oh) || !rfc_char(&p, ':', ':') ||
            !rfc_digits(&p, 2, &om) || oh > 23 || om > 59)
            return false;
        offset_min = sign * (oh * 60 + om);
    }
    if (*p != '\0' || mon < 1 || mon > 12 || day < 1 || hour > 23 || min > 59 || sec > 60)
        return false;
    struct tm tm = {.tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day,
                    .tm_hour = hour, .tm_min = min, .tm_sec = sec == 60 ? 59 : sec};
    time_t t = timegm(&tm);
    if (tm.tm_mday != day || tm.tm_mon != mon - 1) /* normalized: no such day in that month */
        return false;
    int64_t secs = (int64_t)t - (int64_t)offset_min * 60;
    if (secs < 0 || (secs == 0 && millis == 0)) /* 0 means "no deadline" */
        return false;
    *out_ms = (uint64_t)secs * 1000u + (uint64_t)millis;
    return true;
}
