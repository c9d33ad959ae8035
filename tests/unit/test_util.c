/* Unit tests for core/util: buffers, clocks, randomness, files and text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

/* ---- helpers ----------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    chmod(path, 0700);
    return remove(path);
}

static int make_tmpdir(void **state)
{
    char *dir = strdup("/tmp/caxton-test-util-XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    *state = dir;
    return 0;
}

static int remove_tmpdir(void **state)
{
    char *dir = *state;
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    return 0;
}

static char *tmp_path(void **state, const char *name)
{
    char *p = path_join(*state, name);
    assert_non_null(p);
    return p;
}

static void write_plain(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* ---- strbuf ---------------------------------------------------------------- */

static void test_strbuf_appends_and_formats(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb);
    assert_int_equal(strbuf_appends(&sb, "hello"), 0);
    assert_int_equal(strbuf_append(&sb, ", world", 7), 0);
    assert_int_equal(strbuf_appendf(&sb, " %d%s", 42, "!"), 0);
    assert_string_equal(sb.data, "hello, world 42!");
    assert_int_equal(sb.len, strlen("hello, world 42!"));
    char *s = strbuf_detach(&sb);
    assert_string_equal(s, "hello, world 42!");
    assert_string_equal(sb.data, ""); /* left empty and usable */
    assert_int_equal(sb.len, 0);
    free(s);
}

static void test_strbuf_grows_past_many_appends(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(strbuf_appendf(&sb, "%04d", i % 10000), 0);
    assert_int_equal(sb.len, 40000);
    assert_int_equal(strlen(sb.data), 40000);
    assert_memory_equal(sb.data + 4 * 9999, "9999", 4);
    strbuf_free(&sb);
    assert_string_equal(sb.data, "");
}

static void test_strbuf_detach_empty_is_empty_string(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb);
    assert_non_null(sb.data);
    assert_string_equal(sb.data, ""); /* printable before any append */
    strbuf_free(&sb);
    char *s = strbuf_detach(&sb);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    strbuf_init(&sb);
    assert_int_equal(strbuf_append(&sb, "", 0), 0);
    assert_string_equal(sb.data, "");
    strbuf_free(&sb);
}

static void test_strbuf_keeps_binary_data(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb);
    assert_int_equal(strbuf_append(&sb, "a\0b", 3), 0);
    assert_int_equal(sb.len, 3);
    assert_memory_equal(sb.data, "a\0b", 4);
    strbuf_free(&sb);
}

/* ---- clocks and randomness --------------------------------------------------- */

static void test_time_format_rfc3339(void **state)
{
    (void)state;
    char buf[32];
    time_format_rfc3339(UINT64_C(1795804120123), buf, sizeof buf);
    assert_string_equal(buf, "2026-11-27T18:28:40.123Z");
    time_format_rfc3339(0, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    time_format_rfc3339(UINT64_C(1795804120007), buf, sizeof buf);
    assert_string_equal(buf, "2026-11-27T18:28:40.007Z");
    char tiny[8];
    time_format_rfc3339(0, tiny, sizeof tiny);
    assert_int_equal(strlen(tiny), 7); /* truncated, still terminated */
}

static void test_clocks_move_forward(void **state)
{
    (void)state;
    uint64_t now = time_now_ms();
    assert_true(now > UINT64_C(1600000000000)); /* after 2020 */
    uint64_t a = time_monotonic_ns(), b = time_monotonic_ns();
    assert_true(b >= a);
}

static void test_random_bytes_fill_and_differ(void **state)
{
    (void)state;
    uint8_t a[32] = {0}, b[32] = {0}, zero[32] = {0};
    cx_error err;
    assert_int_equal(random_bytes(a, sizeof a, &err), 0);
    assert_int_equal(random_bytes(b, sizeof b, &err), 0);
    assert_memory_not_equal(a, b, sizeof a);
    assert_memory_not_equal(a, zero, sizeof a);
    assert_int_equal(random_bytes(a, 0, &err), 0);
    uint8_t big[100000];
    assert_int_equal(random_bytes(big, sizeof big, &err), 0);
}

static void test_hex_encode(void **state)
{
    (void)state;
    const uint8_t in[] = {0x00, 0x01, 0xab, 0xff};
    char out[9];
    hex_encode(in, sizeof in, out);
    assert_string_equal(out, "0001abff");
    hex_encode(in, 0, out);
    assert_string_equal(out, "");
}

/* ---- files ------------------------------------------------------------------ */

static void test_mkdir_p_creates_parents(void **state)
{
    char *deep = tmp_path(state, "a/b/c/d/");
    cx_error err;
    assert_int_equal(fs_mkdir_p(deep, 0700, &err), 0);
    struct stat st;
    assert_int_equal(stat(deep, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    /* An existing directory is fine. */
    assert_int_equal(fs_mkdir_p(deep, 0700, &err), 0);
    assert_int_equal(fs_mkdir_p(*state, 0700, &err), 0);
    free(deep);
}

static void test_mkdir_p_reports_the_path(void **state)
{
    char *file = tmp_path(state, "plain");
    write_plain(file, "x");
    char *below = tmp_path(state, "plain/sub/dir");
    cx_error err;
    assert_int_equal(fs_mkdir_p(file, 0700, &err), CX_EIO);
    assert_non_null(strstr(err.msg, file));
    assert_int_equal(fs_mkdir_p(below, 0700, &err), CX_EIO);
    char expected[PATH_MAX + 64];
    snprintf(expected, sizeof expected, "cannot create %s: it exists and is not a directory", file);
    assert_string_equal(err.msg, expected);
    assert_int_equal(fs_mkdir_p("", 0700, &err), CX_EINVAL);
    free(file);
    free(below);
}

static void test_mkdir_p_permission_denied(void **state)
{
    if (geteuid() == 0)
        skip(); /* root ignores directory permissions */
    char *locked = tmp_path(state, "locked");
    char *inside = tmp_path(state, "locked/x/y");
    cx_error err;
    assert_int_equal(mkdir(locked, 0500), 0);
    assert_int_equal(fs_mkdir_p(inside, 0700, &err), CX_EIO);
    char expected[PATH_MAX + 64];
    snprintf(expected, sizeof expected, "cannot create %s/x: Permission denied", locked);
    assert_string_equal(err.msg, expected);
    free(locked);
    free(inside);
}

static void test_write_atomic_writes_with_mode(void **state)
{
    char *path = tmp_path(state, "state.json");
    cx_error err;
    assert_int_equal(fs_write_atomic(path, "{\"v\":1}", 7, 0600, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(fs_read_file(path, 1024, &data, &len, &err), 0);
    assert_int_equal(len, 7);
    assert_string_equal(data, "{\"v\":1}");
    free(data);
    /* Replacing keeps readers seeing whole files, and leaves no temp file. */
    assert_int_equal(fs_write_atomic(path, "new", 3, 0640, &err), 0);
    assert_int_equal(fs_read_file(path, 1024, &data, &len, &err), 0);
    assert_string_equal(data, "new");
    free(data);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_false(fs_exists(tmp));
    free(path);
}

static void test_write_atomic_failure_leaves_nothing(void **state)
{
    char *path = tmp_path(state, "missing-dir/file");
    cx_error err;
    assert_int_equal(fs_write_atomic(path, "x", 1, 0600, &err), CX_EIO);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "No such file or directory"));
    /* The target is a directory: rename fails, the temp file is removed. */
    char *dir = tmp_path(state, "adir");
    assert_int_equal(mkdir(dir, 0700), 0);
    char *inner = tmp_path(state, "adir/f");
    write_plain(inner, "x");
    assert_int_equal(fs_write_atomic(dir, "x", 1, 0600, &err), CX_EIO);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    assert_false(fs_exists(tmp));
    free(path);
    free(dir);
    free(inner);
}

static void test_write_atomic_empty_file(void **state)
{
    char *path = tmp_path(state, "empty");
    cx_error err;
    assert_int_equal(fs_write_atomic(path, "", 0, 0600, &err), 0);
    char *data = NULL;
    size_t len = 99;
    assert_int_equal(fs_read_file(path, 10, &data, &len, &err), 0);
    assert_int_equal(len, 0);
    assert_string_equal(data, "");
    free(data);
    free(path);
}

static void test_read_file_errors(void **state)
{
    char *missing = tmp_path(state, "nope");
    char *data = NULL;
    size_t len;
    cx_error err;
    assert_int_equal(fs_read_file(missing, 100, &data, &len, &err), CX_ENOTFOUND);
    assert_null(data);
    char expected[PATH_MAX + 64];
    snprintf(expected, sizeof expected, "cannot read %s: No such file or directory", missing);
    assert_string_equal(err.msg, expected);

    assert_int_equal(fs_read_file(*state, 100, &data, &len, &err), CX_EIO);
    assert_non_null(strstr(err.msg, "Is a directory"));
    free(missing);
}

static void test_read_file_limit(void **state)
{
    char *path = tmp_path(state, "ten");
    write_plain(path, "0123456789");
    char *data = NULL;
    size_t len = 0;
    cx_error err;
    assert_int_equal(fs_read_file(path, 10, &data, &len, &err), 0); /* exactly the limit */
    assert_int_equal(len, 10);
    free(data);
    data = NULL;
    assert_int_equal(fs_read_file(path, 9, &data, &len, &err), CX_ETOOBIG);
    assert_null(data);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "9 bytes"));
    /* Files that report no size (procfs) are bounded while reading. */
    assert_int_equal(fs_read_file("/proc/self/status", 16, &data, &len, &err), CX_ETOOBIG);
    assert_int_equal(fs_read_file("/proc/self/status", 1 << 20, &data, &len, &err), 0);
    assert_true(len > 16);
    assert_int_equal(strlen(data), len);
    free(data);
    free(path);
}

static void test_read_file_unreadable(void **state)
{
    if (geteuid() == 0)
        skip();
    char *path = tmp_path(state, "secret");
    write_plain(path, "x");
    chmod(path, 0000);
    char *data = NULL;
    cx_error err;
    assert_int_equal(fs_read_file(path, 10, &data, NULL, &err), CX_EIO);
    assert_non_null(strstr(err.msg, "Permission denied"));
    free(path);
}

static void test_exists_and_path_join(void **state)
{
    assert_true(fs_exists(*state));
    assert_false(fs_exists("/definitely/not/here"));
    assert_false(fs_exists(NULL));
    char *p = path_join("/var/lib/caxton", "agents");
    assert_string_equal(p, "/var/lib/caxton/agents");
    free(p);
    p = path_join("/var/lib/caxton/", "/agents");
    assert_string_equal(p, "/var/lib/caxton/agents");
    free(p);
    p = path_join("/", "etc");
    assert_string_equal(p, "/etc");
    free(p);
    p = path_join("rel", "data/memory.db");
    assert_string_equal(p, "rel/data/memory.db");
    free(p);
    p = path_join("", "x");
    assert_string_equal(p, "x");
    free(p);
}

/* ---- text ------------------------------------------------------------------- */

static void test_str_helpers(void **state)
{
    (void)state;
    assert_null(str_dup(NULL));
    char *s = str_dup("abc");
    assert_string_equal(s, "abc");
    free(s);
    assert_true(str_has_prefix("CAXTON_API", "CAXTON_"));
    assert_true(str_has_prefix("x", ""));
    assert_false(str_has_prefix("CAX", "CAXTON_"));
}

/* Reference optimal-string-alignment distance, unbounded. */
static size_t reference_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t *d = calloc((la + 1) * (lb + 1), sizeof *d);
    assert_non_null(d);
#define D(i, j) d[(i) * (lb + 1) + (j)]
    for (size_t i = 0; i <= la; i++)
        D(i, 0) = i;
    for (size_t j = 0; j <= lb; j++)
        D(0, j) = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t v = D(i - 1, j - 1) + (a[i - 1] != b[j - 1]);
            if (D(i - 1, j) + 1 < v)
                v = D(i - 1, j) + 1;
            if (D(i, j - 1) + 1 < v)
                v = D(i, j - 1) + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                D(i - 2, j - 2) + 1 < v)
                v = D(i - 2, j - 2) + 1;
            D(i, j) = v;
        }
    size_t r = D(la, lb);
#undef D
    free(d);
    return r;
}

static void test_edit_distance_known_values(void **state)
{
    (void)state;
    assert_int_equal(text_edit_distance("kitten", "sitting", 10), 3);
    assert_int_equal(text_edit_distance("listen", "lisen", 10), 1);
    assert_int_equal(text_edit_distance("listen", "lsiten", 10), 1); /* transposition */
    assert_int_equal(text_edit_distance("", "abc", 10), 3);
    assert_int_equal(text_edit_distance("abc", "", 10), 3);
    assert_int_equal(text_edit_distance("same", "same", 0), 0);
    assert_int_equal(text_edit_distance("kitten", "sitting", 2), 3); /* max + 1 */
    assert_int_equal(text_edit_distance("a", "abcdef", 2), 3);
    assert_int_equal(text_edit_distance("abc", "xyz", SIZE_MAX), 3);
}

static void test_edit_distance_matches_reference(void **state)
{
    (void)state;
    srand(7);
    for (int round = 0; round < 2000; round++) {
        char a[12], b[12];
        size_t la = (size_t)rand() % 11, lb = (size_t)rand() % 11;
        for (size_t i = 0; i < la; i++)
            a[i] = (char)('a' + rand() % 3);
        for (size_t i = 0; i < lb; i++)
            b[i] = (char)('a' + rand() % 3);
        a[la] = b[lb] = '\0';
        size_t want = reference_distance(a, b);
        for (size_t max = 0; max <= 11; max++) {
            size_t got = text_edit_distance(a, b, max);
            assert_int_equal(got, want <= max ? want : max + 1);
        }
    }
}

static void test_edit_distance_long_input_is_bounded(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    char *a = malloc(n + 1), *b = malloc(n + 1);
    assert_non_null(a);
    assert_non_null(b);
    memset(a, 'x', n);
    memset(b, 'x', n);
    a[n] = b[n] = '\0';
    b[n / 2] = 'y';
    assert_int_equal(text_edit_distance(a, b, 3), 1); /* fast: banded */
    free(a);
    free(b);
}

static void test_suggest(void **state)
{
    (void)state;
    const char *const keys[] = {"listen", "workers", "max_body", "public", NULL};
    assert_string_equal(text_suggest("lisen", keys, 5), "listen");
    assert_string_equal(text_suggest("worker", keys, 5), "workers");
    assert_string_equal(text_suggest("maxbody", keys, 5), "max_body");
    assert_null(text_suggest("banana", keys, 5));
    assert_null(text_suggest("x", keys, 5));
    assert_null(text_suggest("lisen", keys, 0));
    const char *const levels[] = {"debug", "info", "warn", "error"};
    assert_string_equal(text_suggest("eror", levels, 4), "error");
    assert_string_equal(text_suggest("info", levels, 4), "info");
}

static void test_utf8_validation(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"plain ascii", true},
        {"caf\xc3\xa9", true},                  /* é */
        {"\xe2\x82\xac", true},                 /* € */
        {"\xf0\x9f\x98\x80", true},             /* emoji */
        {"\xf4\x8f\xbf\xbf", true},             /* U+10FFFF */
        {"\xc0\x80", false},                    /* overlong NUL */
        {"\xc1\xbf", false},                    /* overlong */
        {"\xe0\x80\xaf", false},                /* overlong / */
        {"\xf0\x80\x80\xaf", false},            /* overlong */
        {"\xed\xa0\x80", false},                /* surrogate */
        {"\xed\xbf\xbf", false},                /* surrogate */
        {"\xf4\x90\x80\x80", false},            /* above U+10FFFF */
        {"\xf5\x80\x80\x80", false},
        {"\xc3", false},                        /* truncated */
        {"\xe2\x82", false},
        {"\x80", false},                        /* lone continuation */
        {"\xff", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_int_equal(text_is_utf8(cases[i].s, strlen(cases[i].s)), cases[i].ok);
    assert_true(text_is_utf8("a\0b", 3)); /* NUL is valid UTF-8 */
    assert_true(text_is_utf8("", 0));
}

static void test_quote_escapes_and_truncates(void **state)
{
    (void)state;
    char out[64];
    text_quote("many", out, sizeof out);
    assert_string_equal(out, "\"many\"");
    text_quote("a\"b\\c\nd\te\x01", out, sizeof out);
    assert_string_equal(out, "\"a\\\"b\\\\c\\nd\\te\\x01\"");
    text_quote("bad\xff", out, sizeof out);
    assert_string_equal(out, "\"bad\\xff\"");
    text_quote(NULL, out, sizeof out);
    assert_string_equal(out, "\"\"");

    char longer[200];
    memset(longer, 'z', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    char small[16];
    text_quote(longer, small, sizeof small);
    assert_string_equal(small, "\"zzzzzzzzzz...\"");
    /* Exactly fits: no ellipsis. */
    text_quote("zzzzzzzzzzzzz", small, sizeof small);
    assert_string_equal(small, "\"zzzzzzzzzzzzz\"");
    /* Never cuts a character in half. */
    text_quote("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", small, sizeof small);
    assert_true(text_is_utf8(small, strlen(small)));
    assert_non_null(strstr(small, "..."));
}

static void test_mem_equal_ct(void **state)
{
    (void)state;
    assert_true(mem_equal_ct("secret", "secret", 6));
    assert_false(mem_equal_ct("secret", "secreT", 6));
    assert_true(mem_equal_ct("a", "b", 0));
}

/* ---- strbuf.failed, fs_write_all ---------------------------------------------- */

static void test_strbuf_failed_marks_a_lost_append(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb);
    assert_false(sb.failed);
    assert_int_equal(strbuf_appends(&sb, "kept"), 0);
    assert_false(sb.failed);
    /* More than a buffer may ever hold: refused before the data is touched. */
    assert_int_equal(strbuf_append(&sb, "", SIZE_MAX / 2), CX_ENOMEM);
    assert_true(sb.failed);
    assert_string_equal(sb.data, "kept"); /* the content so far is intact */
    assert_int_equal(strbuf_appends(&sb, "!"), 0);
    assert_true(sb.failed); /* it stays set: the content is incomplete */
    strbuf_free(&sb);
    strbuf_init(&sb);
    assert_false(sb.failed);
    strbuf_free(&sb);
}

static void test_write_all_writes_everything(void **state)
{
    char *path = tmp_path(state, "out");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    static char big[256 * 1024];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(fs_write_all(fd, big, sizeof big), 0);
    assert_int_equal(fs_write_all(fd, "", 0), 0);
    close(fd);
    char *data = NULL;
    size_t len = 0;
    cx_error err;
    assert_int_equal(fs_read_file(path, sizeof big, &data, &len, &err), 0);
    assert_int_equal(len, sizeof big);
    assert_memory_equal(data, big, sizeof big);
    free(data);
    free(path);
}

static void test_write_all_reports_errno(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]); /* nobody reads: EPIPE (SIGPIPE ignored below) */
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    errno = 0;
    assert_int_equal(fs_write_all(fds[1], "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    signal(SIGPIPE, old);
    close(fds[1]);
    errno = 0;
    assert_int_equal(fs_write_all(-1, "x", 1), -1);
    assert_int_equal(errno, EBADF);
}

/* ---- text_make_utf8, env_lookup ------------------------------------------------- */

static void test_make_utf8(void **state)
{
    (void)state;
    char ascii[] = "plain text";
    text_make_utf8(ascii);
    assert_string_equal(ascii, "plain text");
    char good[] = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    text_make_utf8(good);
    assert_string_equal(good, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    char bad[] = "a\xff" "b\xc3" "c\xe2\x82" "d\xc0\xaf" "e\xed\xa0\x80" "f\xf4\x90\x80\x80";
    text_make_utf8(bad);
    assert_true(text_is_utf8(bad, strlen(bad)));
    /* Same length: each bad byte became one '?'; valid bytes were kept. */
    assert_string_equal(bad, "a?b?c??d??e???f????");
    char cut[] = "end\xe2\x82";
    text_make_utf8(cut);
    assert_string_equal(cut, "end??");
    char empty[] = "";
    text_make_utf8(empty);
    assert_string_equal(empty, "");
}

static void test_env_lookup(void **state)
{
    (void)state;
    char *envp[] = {"CAXTON_TOKEN=tok", "CAXTON_TOKEN_FILE=other", "EMPTY=", "EQ=a=b",
                    "NOEQUALS", NULL};
    assert_string_equal(env_lookup(envp, "CAXTON_TOKEN"), "tok");
    assert_string_equal(env_lookup(envp, "CAXTON_TOKEN_FILE"), "other");
    assert_string_equal(env_lookup(envp, "EMPTY"), "");
    assert_string_equal(env_lookup(envp, "EQ"), "a=b");
    assert_null(env_lookup(envp, "CAXTON"));      /* a prefix is not a name */
    assert_null(env_lookup(envp, "NOEQUALS"));
    assert_null(env_lookup(envp, "MISSING"));
    assert_null(env_lookup(NULL, "CAXTON_TOKEN"));
    char *none[] = {NULL};
    assert_null(env_lookup(none, "CAXTON_TOKEN"));
}

/* ---- hostport ------------------------------------------------------------------ */

static void expect_split(const char *text, const char *host, unsigned port)
{
    char got[HOSTPORT_HOST_MAX + 1];
    unsigned got_port = 12345;
    cx_error err;
    if (!host) {
        assert_int_equal(hostport_split(text, got, sizeof got, &got_port, &err), CX_EINVAL);
        assert_non_null(strstr(err.msg, "is not HOST:PORT"));
        assert_int_equal(got_port, 12345); /* untouched */
        return;
    }
    assert_int_equal(hostport_split(text, got, sizeof got, &got_port, &err), 0);
    assert_string_equal(got, host);
    assert_int_equal(got_port, port);
}

static void test_hostport_split(void **state)
{
    (void)state;
    expect_split("127.0.0.1:8080", "127.0.0.1", 8080);
    expect_split("0.0.0.0:0", "0.0.0.0", 0);
    expect_split("localhost:65535", "localhost", 65535);
    expect_split("[::1]:443", "::1", 443);
    expect_split("[::]:80", "::", 80);
    expect_split("[fe80::1%eth0]:9000", "fe80::1%eth0", 9000);
    expect_split("host:00080", "host", 80);
    static const char *const bad[] = {
        "127.0.0.1", ":8080", "::1:8080", "host:65536", "host:", "host:-1", "[::1]8080",
        "[]:80", "host:80x", "[::1]:", "8080", "host:123456", "[127.0.0.1]:80", "[::1:80",
        "", "host: 80", "host:+80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_split(bad[i], NULL, 0);

    /* The host may have up to HOSTPORT_HOST_MAX characters. */
    char text[HOSTPORT_HOST_MAX + 16], host[HOSTPORT_HOST_MAX + 1];
    memset(host, 'h', HOSTPORT_HOST_MAX);
    host[HOSTPORT_HOST_MAX] = '\0';
    snprintf(text, sizeof text, "%s:1", host);
    expect_split(text, host, 1);
    snprintf(text, sizeof text, "h%s:1", host);
    expect_split(text, NULL, 0);
    /* ... and never more than the caller's buffer holds. */
    char small[4];
    unsigned port;
    cx_error err;
    assert_int_equal(hostport_split("abcd:1", small, sizeof small, &port, &err), CX_EINVAL);
    assert_int_equal(hostport_split("abc:1", small, sizeof small, &port, &err), 0);
    assert_string_equal(small, "abc");
}

static void expect_local(const char *listen, const char *expected)
{
    char out[HOSTPORT_HOST_MAX + 16];
    hostport_local(listen, out, sizeof out);
    assert_string_equal(out, expected);
}

static void test_hostport_local(void **state)
{
    (void)state;
    expect_local("0.0.0.0:8080", "127.0.0.1:8080");
    expect_local("[::]:8443", "[::1]:8443");
    expect_local("127.0.0.1:80", "127.0.0.1:80");
    expect_local("[::1]:80", "[::1]:80");
    expect_local("10.1.2.3:9", "10.1.2.3:9");
    expect_local("example.com:443", "example.com:443");
    expect_local("0.0.0.0.example:1", "0.0.0.0.example:1"); /* only the wildcard itself */
    char tiny[8];
    hostport_local("0.0.0.0:8080", tiny, sizeof tiny); /* cut, never overrun */
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strbuf_appends_and_formats),
        cmocka_unit_test(test_strbuf_grows_past_many_appends),
        cmocka_unit_test(test_strbuf_detach_empty_is_empty_string),
        cmocka_unit_test(test_strbuf_keeps_binary_data),
        cmocka_unit_test(test_time_format_rfc3339),
        cmocka_unit_test(test_clocks_move_forward),
        cmocka_unit_test(test_random_bytes_fill_and_differ),
        cmocka_unit_test(test_hex_encode),
        cmocka_unit_test_setup_teardown(test_mkdir_p_creates_parents, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_mkdir_p_reports_the_path, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_mkdir_p_permission_denied, make_tmpdir,
                                        remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_write_atomic_writes_with_mode, make_tmpdir,
                                        remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_write_atomic_failure_leaves_nothing, make_tmpdir,
                                        remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_write_atomic_empty_file, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_read_file_errors, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_read_file_limit, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_read_file_unreadable, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_exists_and_path_join, make_tmpdir, remove_tmpdir),
        cmocka_unit_test(test_str_helpers),
        cmocka_unit_test(test_edit_distance_known_values),
        cmocka_unit_test(test_edit_distance_matches_reference),
        cmocka_unit_test(test_edit_distance_long_input_is_bounded),
        cmocka_unit_test(test_suggest),
        cmocka_unit_test(test_utf8_validation),
        cmocka_unit_test(test_quote_escapes_and_truncates),
        cmocka_unit_test(test_mem_equal_ct),
        cmocka_unit_test(test_strbuf_failed_marks_a_lost_append),
        cmocka_unit_test_setup_teardown(test_write_all_writes_everything, make_tmpdir,
                                        remove_tmpdir),
        cmocka_unit_test(test_write_all_reports_errno),
        cmocka_unit_test(test_make_utf8),
        cmocka_unit_test(test_env_lookup),
        cmocka_unit_test(test_hostport_split),
        cmocka_unit_test(test_hostport_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
