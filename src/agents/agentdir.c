/* The agents directory: reading definition files, listing them, and the
 * rules across files (see agentdir.h).
 *
 * Reading opens the file without blocking (a FIFO named *.md must not hang a
 * validation), checks that it is a regular file within AGENTDEF_MAX_FILE
 * before reading a byte, and turns a permission error into what an operator
 * needs: who owns the file, its mode, who is asking, which user the server
 * runs as and the command that grants it access. That user is the owner of
 * the file's directory (the server owns its data dir), or the packaged
 * service user when root owns the directory. */
#include "agents/agentdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/units.h"
#include "core/util.h"

#define USER_NAME_MAX 64
#define LOOKUP_BUF 4096
#define DUPLICATES_LISTED 5 /* other files named in one duplicate-name error */

/* ---- Who is who ----------------------------------------------------------------------------- */

static void user_name(uid_t uid, char *buf, size_t size)
{
    struct passwd pw, *found = NULL;
    char scratch[LOOKUP_BUF];
    if (getpwuid_r(uid, &pw, scratch, sizeof scratch, &found) == 0 && found)
        snprintf(buf, size, "%s", found->pw_name);
    else
        snprintf(buf, size, "%lu", (unsigned long)uid);
}

/* The primary group of a user, for chown USER:GROUP; the user's name when unknown. */
static void user_group(const char *user, char *buf, size_t size)
{
    struct passwd pw, *found = NULL;
    struct group gr, *gfound = NULL;
    char scratch[LOOKUP_BUF], gscratch[LOOKUP_BUF];
    if (getpwnam_r(user, &pw, scratch, sizeof scratch, &found) == 0 && found &&
        getgrgid_r(found->pw_gid, &gr, gscratch, sizeof gscratch, &gfound) == 0 && gfound)
        snprintf(buf, size, "%s", gfound->gr_name);
    else
        snprintf(buf, size, "%s", user);
}

/* The directory part of a path ("." for a bare name). NULL when out of memory. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return str_dup(".");
    if (slash == path)
        return str_dup("/");
    char *dir = str_dup(path);
    if (dir)
        dir[slash - path] = '\0';
    return dir;
}

/* The user the server runs as, judged from the directory it keeps agents in,
 * and how we know ("" for the packaged service user). */
static void server_user(const char *dir, char *buf, size_t size, char *why, size_t why_size)
{
    struct stat st;
    if (dir && stat(dir, &st) == 0 && st.st_uid != 0) {
        user_name(st.st_uid, buf, size);
        snprintf(why, why_size, " (the owner of %s)", dir);
    } else {
        snprintf(buf, size, "%s", AGENTDIR_SERVICE_USER);
        why[0] = '\0';
    }
}

/* ---- Reading one file ----------------------------------------------------------------------- */

/* EACCES on path: the file itself, or a directory on the way to it. */
static int permission_problem(const char *path, agentdef_diags *diags)
{
    char me[USER_NAME_MAX], owner[USER_NAME_MAX], server[USER_NAME_MAX], group[USER_NAME_MAX];
    char *dir = dir_of(path);
    if (!dir) {
        agentdef_diag_add(diags, AGENTDEF_ERROR, 0, 0, "", NULL,
                          "cannot read %s: permission denied", path);
        return CX_EIO;
    }
    char why[PATH_MAX + 32];
    user_name(geteuid(), me, sizeof me);
    server_user(dir, server, sizeof server, why, sizeof why);
    user_group(server, group, sizeof group);
    struct stat st;
    if (stat(path, &st) == 0) {
        user_name(st.st_uid, owner, sizeof owner);
        agentdef_diag_add(diags, AGENTDEF_ERROR, 0, 0, "", NULL,
                          "cannot read %s: permission denied (owner %s, mode %04o; you are %s); "
                          "the server runs as user %s%s and needs read access: chown %s:%s %s "
                          "&& chmod 644 %s",
                          path, owner, (unsigned)(st.st_mode & 07777), me, server, why, server,
                          group, path, path);
    } else if (stat(dir, &st) == 0) {
        user_name(st.st_uid, owner, sizeof owner);
        agentdef_diag_add(diags, AGENTDEF_ERROR, 0, 0, "", NULL,
                          "cannot read %s: permission denied on its directory %s (owner %s, "
                          "mode %04o; you are %s); the server runs as user %s%s and needs to "
                          "enter it: chown %s:%s %s && chmod 755 %s",
                          path, dir, owner, (unsigned)(st.st_mode & 07777), me, server, why,
                          server, group, dir, dir);
    } else {
        agentdef_diag_add(diags, AGENTDEF_ERROR, 0, 0, "", NULL,
                          "cannot read %s: permission denied on a directory above it (you are "
                          "%s); the server runs as user %s%s and needs to enter every "
                          "directory on the way (chmod 755)",
                          path, me, server, why);
    }
    free(dir);
    return CX_EIO;
}

static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a named pipe";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "a device";
    return "not a regular file";
}

int agentdir_read(const char *path, char **text, size_t *len, agentdef_diags *diags)
{
    *text = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0 && errno == EACCES)
        return permission_problem(path, diags);
    if (fd < 0) {
        int code = errno == ENOENT || errno == ENOTDIR ? CX_ENOTFOUND : CX_EIO;
        agentdef_diag_add(diags, AGENTDEF_ERROR, 0, 0, "",
                          code == CX_ENOTFOUND ? "check the path (agent definitions live in the "
                                                 "agents dir, agents.dir in the config)"
                                               : NULL,
                          "cannot read %s: %s", path, strerror(errno));
        return code;
    }
    struct stat st;
    int stat_errno = fstat(fd, &st) == 0 ? 0 : errno;
    close(fd);
    if (stat_errno) {
        agentdef_diag_add(diags, AGENTDEF_ERROR, 0, 0, "", NULL, "cannot read %s: %s", path,
                          strerror(stat_errno));
        return CX_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        agentdef_diag_add(diags, AGENTDEF_ERROR, 0, 0, "", NULL,
                          "cannot read %s: it is %s, not an agent definition file", path,
                          file_kind(st.st_mode));
        return CX_EINVAL;
    }
    if (st.st_size > AGENTDEF_MAX_FILE) {
        char limit[32];
        units_format_size(AGENTDEF_MAX_FILE, limit, sizeof limit);
        agentdef_diag_add(diags, AGENTDEF_ERROR, 0, 0, "",
                          "keep the definition small: move long reference text out of the "
                          "prompt (into memory or a tool)",
                          "%s is %llu bytes, over the %s limit for an agent definition; it was "
                          "not read",
                          path, (unsigned long long)st.st_size, limit);
        return CX_ETOOBIG;
    }
    cx_error err;
    int rc = fs_read_file(path, AGENTDEF_MAX_FILE, text, len, &err);
    if (rc != 0)
        agentdef_diag_add(diags, AGENTDEF_ERROR, 0, 0, "", NULL, "%s", err.msg);
    return rc;
}

/* Where the frontmatter's top-level `name:` value starts (1-based), or 0:0.
 * Only points the duplicate-name error at its place; the parser owns YAML. */
static void find_name(const char *text, size_t len, unsigned *line_out, unsigned *column_out)
{
    const char *p = text, *end = text + len;
    *line_out = *column_out = 0;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    bool inside = false;
    for (unsigned line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        bool marker = n == 3 && memcmp(p, "---", 3) == 0;
        if (marker == inside)
            return; /* the closing marker, or no frontmatter at all */
        inside = true;
        if (n >= 5 && memcmp(p, "name", 4) == 0) {
            size_t i = 4;
            while (i < n && p[i] == ' ')
                i++;
            if (i < n && p[i] == ':') {
                for (i++; i < n && p[i] == ' ';)
                    i++;
                *line_out = line;
                *column_out = (unsigned)i + 1;
                return;
            }
        }
        if (!nl)
            return;
        p = nl + 1;
    }
}

/* ---- Checks across files -------------------------------------------------------------------- */

void agentdir_check_names(agentdir_file *files, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (!files[i].def || !files[i].def->name)
            continue;
        const char *name = files[i].def->name;
        strbuf others;
        strbuf_init(&others);
        size_t found = 0;
        for (size_t j = 0; j < count; j++) {
            if (j == i || !files[j].def || !files[j].def->name ||
                strcmp(files[j].def->name, name) != 0)
                continue;
            if (found < DUPLICATES_LISTED)
                strbuf_appendf(&others, "%s%s", found ? ", " : "", files[j].file_name);
            found++;
        }
        if (found > DUPLICATES_LISTED)
            strbuf_appendf(&others, " and %zu more", found - DUPLICATES_LISTED);
        if (found)
            agentdef_diag_add(&files[i].diags, AGENTDEF_ERROR, files[i].name_line,
                              files[i].name_column, "name",
                              "rename one of them (and its file to <name>.md)",
                              "the name '%s' is also used by %s; agent names must be unique in "
                              "the agents dir",
                              name, others.failed ? "other files" : others.data);
        strbuf_free(&others);
    }
}

/* ---- The directory -------------------------------------------------------------------------- */

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_definition_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 3 && strcmp(name + n - 3, ".md") == 0;
}

static void free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/* The directory's definition file names, sorted. Directories are left out
 * (a file that is no regular file is reported when read). */
static int list_definitions(const char *dir, char ***names_out, size_t *count_out,
                            size_t *left_out, cx_error *err)
{
    *names_out = NULL;
    *count_out = 0;
    *left_out = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        int code = e == ENOENT || e == ENOTDIR ? CX_ENOTFOUND : CX_EIO;
        return cx_error_set(err, code, "cannot list the agents dir %s: %s%s", dir, strerror(e),
                            e == EACCES ? " (the user running this needs read and execute "
                                          "permission on it)"
                                        : "");
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    int rc = 0;
    struct dirent *entry;
    while (rc == 0 && (entry = readdir(d)) != NULL) {
        if (!is_definition_name(entry->d_name))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), entry->d_name, &st, 0) == 0 && S_ISDIR(st.st_mode))
            continue;
        if (count == AGENTDIR_MAX_FILES) {
            (*left_out)++;
            continue;
        }
        if (count == cap) {
            size_t grown = cap ? cap * 2 : 16;
            char **bigger = realloc(names, grown * sizeof *names);
            if (!bigger) {
                rc = CX_ENOMEM;
                break;
            }
            names = bigger;
            cap = grown;
        }
        if (!(names[count] = str_dup(entry->d_name)))
            rc = CX_ENOMEM;
        else
            count++;
    }
    closedir(d);
    if (rc != 0) {
        free_names(names, count);
        return cx_error_set(err, rc, "cannot list the agents dir %s: out of memory", dir);
    }
    if (count > 1)
        qsort(names, count, sizeof *names, compare_names);
    *names_out = names;
    *count_out = count;
    return 0;
}

static void check_file(agentdir_file *f, const agentdef_context *ctx)
{
    char *text = NULL;
    size_t len = 0;
    if (agentdir_read(f->path, &text, &len, &f->diags) != 0)
        return;
    find_name(text, len, &f->name_line, &f->name_column);
    f->def = agentdef_parse(f->path, text, len, ctx, &f->diags);
    free(text);
}

int agentdir_validate(const char *dir, const agentdef_context *ctx, agentdir_report *out,
                      cx_error *err)
{
    memset(out, 0, sizeof *out);
    char **names;
    size_t count, left;
    int rc = list_definitions(dir, &names, &count, &left, err);
    if (rc != 0)
        return rc;
    out->files = count ? calloc(count, sizeof *out->files) : NULL;
    if (count && !out->files) {
        free_names(names, count);
        return cx_error_set(err, CX_ENOMEM, "checking the agents dir %s: out of memory", dir);
    }
    out->count = count;
    out->not_checked = left;
    for (size_t i = 0; i < count; i++) {
        out->files[i].file_name = names[i];
        out->files[i].path = path_join(dir, names[i]);
        if (!out->files[i].path) {
            for (size_t j = i + 1; j < count; j++)
                free(names[j]);
            free(names);
            agentdir_report_free(out);
            return cx_error_set(err, CX_ENOMEM, "checking the agents dir %s: out of memory", dir);
        }
    }
    free(names);
    for (size_t i = 0; i < count; i++)
        check_file(&out->files[i], ctx);
    agentdir_check_names(out->files, count);
    for (size_t i = 0; i < count; i++)
        out->files_with_errors += out->files[i].diags.errors > 0;
    return 0;
}

void agentdir_report_free(agentdir_report *report)
{
    for (size_t i = 0; i < report->count; i++) {
        agentdir_file *f = &report->files[i];
        free(f->path);
        free(f->file_name);
        agentdef_free(f->def);
        agentdef_diags_free(&f->diags);
    }
    free(report->files);
    memset(report, 0, sizeof *report);
}
