/* Unit tests for the agents directory (agentdir.c): which files are
 * definitions (hidden files, other extensions and subdirectories are not),
 * names unique across files, the file-name warning, and files that cannot or
 * must not be read: unreadable, too big, a named pipe, not there, garbage. */
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agents/agentdir.h"
#include "core/util.h"

static const char *const providers[] = {"openai"};

static const agentdef_context test_context = {
    .providers = providers,
    .provider_count = 1,
};

static char *make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char pattern[512];
    snprintf(pattern, sizeof pattern, "%s/caxton-agentdir-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    char *dir = mkdtemp(pattern);
    assert_non_null(dir);
    return str_dup(dir);
}

static char *write_file(const char *dir, const char *name, const char *text, size_t len)
{
    char *path = path_join(dir, name);
    assert_non_null(path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void write_agent(const char *dir, const char *file, const char *name)
{
    char text[512];
    int n = snprintf(text, sizeof text,
                     "---\n"
                     "name: %s\n"
                     "version: 1.0.0\n"
                     "description: A test agent\n"
                     "capabilities: [testing]\n"
                     "llm:\n"
                     "  provider: openai\n"
                     "---\n"
                     "You test things.\n",
                     name);
    free(write_file(dir, file, text, (size_t)n));
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* Removes a test directory and everything in it. */
static void remove_tree(const char *dir)
{
    assert_int_equal(nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static const agentdir_file *find_file(const agentdir_report *r, const char *file_name)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->files[i].file_name, file_name) == 0)
            return &r->files[i];
    return NULL;
}

static const agentdef_diag *find_diag(const agentdir_file *f, agentdef_severity severity,
                                      const char *part)
{
    for (size_t i = 0; i < f->diags.count; i++)
        if (f->diags.items[i].severity == severity && strstr(f->diags.items[i].message, part))
            return &f->diags.items[i];
    return NULL;
}

static void test_directory_rules(void **state)
{
    (void)state;
    char *dir = make_dir();
    write_agent(dir, "alpha.md", "alpha");
    write_agent(dir, "beta.md", "alpha");      /* same name as alpha.md */
    write_agent(dir, "gamma.md", "other-one"); /* valid, misnamed file */
    write_agent(dir, "other-one.md", "unique-one");
    write_agent(dir, ".hidden.md", "alpha");   /* skipped: would be a third alpha */
    write_agent(dir, "notes.txt", "alpha");    /* skipped: not *.md */
    write_agent(dir, ".md", "alpha");          /* skipped: hidden, no name */
    char *sub = path_join(dir, "nested.md");
    assert_int_equal(mkdir(sub, 0755), 0);
    write_agent(sub, "inner.md", "alpha");     /* skipped: no recursion */

    agentdir_report report;
    cx_error err;
    assert_int_equal(agentdir_validate(dir, &test_context, &report, &err), 0);
    assert_int_equal(report.count, 4);
    assert_int_equal(report.not_checked, 0);
    assert_string_equal(report.files[0].file_name, "alpha.md"); /* sorted */
    assert_string_equal(report.files[1].file_name, "beta.md");
    assert_string_equal(report.files[2].file_name, "gamma.md");
    assert_string_equal(report.files[3].file_name, "other-one.md");
    assert_int_equal(report.files_with_errors, 2);

    const agentdir_file *alpha = find_file(&report, "alpha.md");
    const agentdir_file *beta = find_file(&report, "beta.md");
    assert_non_null(alpha->def); /* the file itself is fine; only the name clashes */
    assert_int_equal(alpha->diags.errors, 1);
    const agentdef_diag *d = find_diag(alpha, AGENTDEF_ERROR, "also used by beta.md");
    assert_non_null(d);
    assert_string_equal(d->field, "name");
    assert_int_equal(d->line, 2); /* where the name is */
    assert_int_equal(d->column, 7);
    assert_non_null(d->hint);
    assert_non_null(find_diag(beta, AGENTDEF_ERROR, "also used by alpha.md"));
    assert_int_equal(beta->diags.errors, 1);
    assert_non_null(find_diag(beta, AGENTDEF_WARNING, "alpha"));
    char *path = path_join(dir, "beta.md");
    assert_string_equal(beta->path, path);
    free(path);

    const agentdir_file *gamma = find_file(&report, "gamma.md");
    assert_int_equal(gamma->diags.errors, 0);
    assert_true(gamma->diags.warnings >= 1);
    assert_non_null(find_diag(gamma, AGENTDEF_WARNING, "other-one"));
    assert_non_null(gamma->def);

    /* "other-one" is the name in gamma.md and the file other-one.md holds
     * another name: a file name is no agent name, so no clash. */
    const agentdir_file *other = find_file(&report, "other-one.md");
    assert_int_equal(other->diags.errors, 0);
    agentdir_report_free(&report);
    assert_int_equal(report.count, 0);
    assert_null(report.files);

    free(sub);
    remove_tree(dir);
    free(dir);
}

static void test_many_duplicates_are_bounded(void **state)
{
    (void)state;
    char *dir = make_dir();
    for (int i = 1; i <= 9; i++) {
        char file[32];
        snprintf(file, sizeof file, "copy-%d.md", i);
        write_agent(dir, file, "same-name");
    }
    agentdir_report report;
    cx_error err;
    assert_int_equal(agentdir_validate(dir, &test_context, &report, &err), 0);
    assert_int_equal(report.count, 9);
    assert_int_equal(report.files_with_errors, 9);
    const agentdef_diag *d = find_diag(&report.files[0], AGENTDEF_ERROR, "also used by");
    assert_non_null(d);
    assert_non_null(strstr(d->message, "copy-2.md, copy-3.md, copy-4.md, copy-5.md, copy-6.md "
                                       "and 3 more"));
    assert_null(strstr(d->message, "copy-1.md")); /* not itself */
    agentdir_report_free(&report);
    remove_tree(dir);
    free(dir);
}

static void test_oversized_file_is_refused_unread(void **state)
{
    (void)state;
    char *dir = make_dir();
    size_t size = 10u * 1024 * 1024;
    char *big = malloc(size);
    assert_non_null(big);
    memset(big, 'a', size);
    memcpy(big, "---\nname: big\n", 14);
    free(write_file(dir, "big.md", big, size));
    free(big);
    write_agent(dir, "small.md", "small");

    agentdir_report report;
    cx_error err;
    assert_int_equal(agentdir_validate(dir, &test_context, &report, &err), 0);
    assert_int_equal(report.count, 2);
    const agentdir_file *f = find_file(&report, "big.md");
    assert_null(f->def);
    assert_int_equal(f->diags.count, 1);
    assert_int_equal(f->diags.errors, 1);
    assert_non_null(strstr(f->diags.items[0].message, "10485760 bytes, over the 1MB limit"));
    assert_non_null(strstr(f->diags.items[0].message, "not read"));
    assert_non_null(f->diags.items[0].hint);
    assert_int_equal(find_file(&report, "small.md")->diags.errors, 0);
    assert_int_equal(report.files_with_errors, 1);
    agentdir_report_free(&report);

    /* One byte over the limit is refused too; exactly at it is read. */
    char *path = path_join(dir, "edge.md");
    char *edge = calloc(1, AGENTDEF_MAX_FILE + 1);
    assert_non_null(edge);
    free(write_file(dir, "edge.md", edge, AGENTDEF_MAX_FILE + 1));
    agentdef_diags diags = {0};
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(agentdir_read(path, &text, &len, &diags), CX_ETOOBIG);
    assert_null(text);
    agentdef_diags_free(&diags);
    free(write_file(dir, "edge.md", edge, AGENTDEF_MAX_FILE));
    assert_int_equal(agentdir_read(path, &text, &len, &diags), 0);
    assert_int_equal(len, AGENTDEF_MAX_FILE);
    assert_int_equal(diags.count, 0);
    free(text);
    free(edge);
    free(path);
    remove_tree(dir);
    free(dir);
}

static void test_unreadable_file(void **state)
{
    (void)state;
    if (geteuid() == 0) {
        skip(); /* root reads every file: permissions cannot be tested */
        return;
    }
    char *dir = make_dir();
    write_agent(dir, "locked.md", "locked");
    write_agent(dir, "open.md", "open");
    char *path = path_join(dir, "locked.md");
    assert_int_equal(chmod(path, 0), 0);

    agentdir_report report;
    cx_error err;
    assert_int_equal(agentdir_validate(dir, &test_context, &report, &err), 0);
    assert_int_equal(report.count, 2);
    const agentdir_file *f = find_file(&report, "locked.md");
    assert_null(f->def);
    assert_int_equal(f->diags.errors, 1);
    const char *msg = f->diags.items[0].message;
    assert_non_null(strstr(msg, "permission denied (owner "));
    assert_non_null(strstr(msg, "mode 0000"));
    assert_non_null(strstr(msg, "you are "));
    assert_non_null(strstr(msg, "needs read access: chown "));
    assert_non_null(strstr(msg, "&& chmod 644 "));
    assert_non_null(strstr(msg, path));
    assert_int_equal(find_file(&report, "open.md")->diags.errors, 0);
    agentdir_report_free(&report);

    /* A directory that cannot be entered: the message says which and how. */
    char *sub = path_join(dir, "closed");
    assert_int_equal(mkdir(sub, 0755), 0);
    write_agent(sub, "inner.md", "inner");
    assert_int_equal(chmod(sub, 0), 0);
    char *inner = path_join(sub, "inner.md");
    agentdef_diags diags = {0};
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(agentdir_read(inner, &text, &len, &diags), CX_EIO);
    assert_int_equal(diags.count, 1);
    assert_non_null(strstr(diags.items[0].message, "permission denied on its directory"));
    assert_non_null(strstr(diags.items[0].message, "chmod 755"));
    agentdef_diags_free(&diags);
    assert_int_equal(agentdir_validate(sub, &test_context, &report, &err), CX_EIO);
    assert_non_null(strstr(err.msg, "cannot list the agents dir"));

    assert_int_equal(chmod(sub, 0755), 0);
    free(inner);
    free(sub);
    free(path);
    remove_tree(dir);
    free(dir);
}

static void test_odd_files(void **state)
{
    (void)state;
    char *dir = make_dir();
    /* A named pipe must not hang the scan. */
    char *fifo = path_join(dir, "pipe.md");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    /* Garbage and an empty file are parse errors, not crashes. */
    static const char garbage[] = "\x00\x01\xff\xfe---\n\tname: [\n";
    free(write_file(dir, "garbage.md", garbage, sizeof garbage - 1));
    free(write_file(dir, "empty.md", "", 0));
    /* A frontmatter that never closes after a name line. */
    static const char open_ended[] = "---\nname: half\nversion: 1.0.0\n";
    free(write_file(dir, "half.md", open_ended, sizeof open_ended - 1));

    agentdir_report report;
    cx_error err;
    assert_int_equal(agentdir_validate(dir, &test_context, &report, &err), 0);
    assert_int_equal(report.count, 4);
    assert_int_equal(report.files_with_errors, 4);
    const agentdir_file *pipe = find_file(&report, "pipe.md");
    assert_non_null(find_diag(pipe, AGENTDEF_ERROR, "named pipe"));
    for (size_t i = 0; i < report.count; i++)
        assert_null(report.files[i].def);
    agentdir_report_free(&report);

    /* A file that is not there, read alone. */
    char *missing = path_join(dir, "missing.md");
    agentdef_diags diags = {0};
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(agentdir_read(missing, &text, &len, &diags), CX_ENOTFOUND);
    assert_int_equal(diags.errors, 1);
    assert_non_null(strstr(diags.items[0].message, "cannot read"));
    assert_non_null(diags.items[0].hint);
    agentdef_diags_free(&diags);
    /* A directory, read alone. */
    assert_int_equal(agentdir_read(dir, &text, &len, &diags), CX_EINVAL);
    assert_non_null(strstr(diags.items[0].message, "a directory"));
    agentdef_diags_free(&diags);

    free(missing);
    free(fifo);
    remove_tree(dir);
    free(dir);
}

static void test_missing_and_empty_dir(void **state)
{
    (void)state;
    agentdir_report report;
    cx_error err;
    assert_int_equal(agentdir_validate("/nonexistent/caxton/agents", &test_context, &report, &err),
                     CX_ENOTFOUND);
    assert_non_null(strstr(err.msg, "cannot list the agents dir /nonexistent/caxton/agents"));
    assert_int_equal(report.count, 0);
    char *dir = make_dir();
    assert_int_equal(agentdir_validate(dir, &test_context, &report, &err), 0);
    assert_int_equal(report.count, 0);
    assert_int_equal(report.files_with_errors, 0);
    agentdir_report_free(&report);
    /* A file where the dir should be. */
    char *file = write_file(dir, "plain.md", "x", 1);
    assert_int_equal(agentdir_validate(file, &test_context, &report, &err), CX_ENOTFOUND);
    free(file);
    remove_tree(dir);
    free(dir);
}

/* agentdir_check_names on files the caller parsed (as the registry does). */
static void test_check_names_alone(void **state)
{
    (void)state;
    agent_def a = {.name = "twin"}, b = {.name = "twin"}, c = {.name = "single"};
    agentdir_file files[4] = {
        {.file_name = "one.md", .def = &a, .name_line = 3, .name_column = 7},
        {.file_name = "two.md", .def = &b},
        {.file_name = "three.md", .def = &c},
        {.file_name = "broken.md", .def = NULL},
    };
    agentdir_check_names(files, 4);
    assert_int_equal(files[0].diags.errors, 1);
    assert_int_equal(files[0].diags.items[0].line, 3);
    assert_int_equal(files[0].diags.items[0].column, 7);
    assert_non_null(strstr(files[0].diags.items[0].message, "'twin' is also used by two.md"));
    assert_int_equal(files[1].diags.errors, 1);
    assert_int_equal(files[1].diags.items[0].line, 0);
    assert_non_null(strstr(files[1].diags.items[0].message, "also used by one.md"));
    assert_int_equal(files[2].diags.count, 0);
    assert_int_equal(files[3].diags.count, 0);
    for (size_t i = 0; i < 4; i++)
        agentdef_diags_free(&files[i].diags);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_directory_rules),
        cmocka_unit_test(test_many_duplicates_are_bounded),
        cmocka_unit_test(test_oversized_file_is_refused_unread),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_odd_files),
        cmocka_unit_test(test_missing_and_empty_dir),
        cmocka_unit_test(test_check_names_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
