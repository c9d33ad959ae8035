/* Small shared helpers: growable buffers, time, randomness, files, text.
 * Everything here is pure or touches only the file it is given. */
#ifndef CAXTON_CORE_UTIL_H
#define CAXTON_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"

/* Growable byte buffer; data is always a NUL-terminated string (a shared
 * empty one until the first append, so do not write through an empty one). */
typedef struct strbuf {
    char *data;
    size_t len;
    size_t cap;
    bool failed; /* an append ran out of memory; the content is incomplete */
} strbuf;

void strbuf_init(strbuf *sb);
void strbuf_free(strbuf *sb);
int strbuf_append(strbuf *sb, const void *data, size_t len);
int strbuf_appends(strbuf *sb, const char *s);
int strbuf_appendf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the buffer to the caller (free() it); sb is left empty. */
char *strbuf_detach(strbuf *sb);

/* Clocks. */
uint64_t time_now_ms(void);        /* wall clock, ms since the epoch */
uint64_t time_monotonic_ns(void);
/* RFC 3339 UTC with milliseconds: 2026-11-27T18:28:40.123Z (buf >= 32). */
void time_format_rfc3339(uint64_t epoch_ms, char *buf, size_t size);
/* A full RFC 3339 date-time (a zone is required, "Z" or "+02:00") into epoch
 * ms; false for anything else, or an instant at or before the epoch. */
bool time_parse_rfc3339(const char *text, uint64_t *out_ms);

/* Cryptographically random bytes (getrandom). */
int random_bytes(void *buf, size_t len, cx_error *err);
void hex_encode(const uint8_t *in, size_t len, char *out); /* out: 2*len+1 */

/* Files. */
int fs_mkdir_p(const char *path, mode_t mode, cx_error *err);
/* fsync()s the directory holding path, so a rename or a new entry in it is
 * durable. 0, or -1 with errno set. */
int fs_fsync_parent(const char *path);
/* Writes via a temp file + fsync + rename, so readers see old or new. */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode, cx_error *err);
/* Reads a whole file up to max bytes; *out is NUL-terminated (free()). */
int fs_read_file(const char *path, size_t max, char **out, size_t *len, cx_error *err);
bool fs_exists(const char *path);
/* write(2) until done, retrying on EINTR; 0 or -1 with errno set. */
int fs_write_all(int fd, const void *data, size_t len);
/* path joined with name into a new string (free()). */
char *path_join(const char *dir, const char *name);

/* Text. */
char *str_dup(const char *s);      /* NULL-safe strdup; aborts on OOM never: NULL */
bool str_has_prefix(const char *s, const char *prefix);
/* Edit distance, bounded: returns max+1 when the distance exceeds max. */
size_t text_edit_distance(const char *a, const char *b, size_t max);
/* The closest candidate within a distance that scales with length, or NULL. */
const char *text_suggest(const char *word, const char *const *candidates, size_t n);
/* True when s is valid UTF-8 of exactly len bytes. */
bool text_is_utf8(const char *s, size_t len);
/* Writes s into out (size >= 8) as a double-quoted, one-line string for an
 * operator message: quotes, backslashes, control characters and invalid
 * UTF-8 are escaped, and a long value is cut at a character boundary with
 * "..." before the closing quote. The result is always valid UTF-8. */
void text_quote(const char *s, char *out, size_t size);
/* Constant-time comparison of two equal-length byte strings. */
bool mem_equal_ct(const void *a, const void *b, size_t len);
/* Replaces every byte that is not part of valid UTF-8 with '?', in place. */
void text_make_utf8(char *s);
/* The value of NAME in envp (NULL-terminated "K=V" strings), or NULL. */
const char *env_lookup(char *const *envp, const char *name);

/* "host:port" or "[v6]:port". host gets the name without brackets. */
#define HOSTPORT_HOST_MAX 255
int hostport_split(const char *text, char *host, size_t host_size, unsigned *port, cx_error *err);
/* "0.0.0.0:P" -> "127.0.0.1:P", "[::]:P" -> "[::1]:P": how this host reaches a
 * wildcard listener; other addresses unchanged. */
void hostport_local(const char *listen, char *out, size_t size);

#endif
