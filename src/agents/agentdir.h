/* The agents directory as a whole: which files are agent definitions, whether
 * each one can be read, and the rules that span files.
 *
 * agentdef.c judges one file's text; this part owns what needs the file
 * system or the other files: reading a definition within AGENTDEF_MAX_FILE
 * (an unreadable file is reported with its owner and mode, the user who
 * needs access and the command that grants it), listing the directory's *.md
 * files (no recursion, hidden files skipped, sorted by file name), and the checks
 * across files: an agent name used by two files is an error in both.
 * (A file not named <name>.md is a warning from agentdef_parse, which is
 * given each file's path.) `caxton agents validate-all` and the server's
 * registry share it, so the verdict offline is the one the server gives when
 * it loads the directory.
 *
 * No globals; safe on any thread. */
#ifndef CAXTON_AGENTS_AGENTDIR_H
#define CAXTON_AGENTS_AGENTDIR_H

#include <stdbool.h>
#include <stddef.h>

#include "agents/agentdef.h"
#include "core/error.h"

#define AGENTDIR_MAX_FILES 4096         /* definition files checked in one directory */
#define AGENTDIR_SERVICE_USER "caxton"  /* the user the packaged service runs as */

/* One definition file of the directory. */
typedef struct agentdir_file {
    char *path;          /* <dir>/<file_name> */
    char *file_name;     /* "invoice-checker.md" */
    agent_def *def;      /* the parsed definition when the file itself is valid, else NULL;
                          * kept when only a check across files failed */
    unsigned name_line;  /* 1-based place of the frontmatter's name value, 0 when not found */
    unsigned name_column;
    agentdef_diags diags;
} agentdir_file;

typedef struct agentdir_report {
    agentdir_file *files; /* sorted by file name */
    size_t count;
    size_t files_with_errors;
    size_t not_checked;   /* *.md files past AGENTDIR_MAX_FILES, left out */
} agentdir_report;

/* Reads a definition file (at most AGENTDEF_MAX_FILE bytes, a regular file)
 * into *text (NUL-terminated, free()) and *len. On failure adds one error to
 * diags saying why and how to fix it, and returns a negative CX_E* code. */
int agentdir_read(const char *path, char **text, size_t *len, agentdef_diags *diags);

/* Adds the check across files to files[0..count) whose def is set: a name
 * used by several files is an error in each, naming the others. */
void agentdir_check_names(agentdir_file *files, size_t count);

/* Reads, parses (with ctx) and checks every definition file of dir. Returns
 * 0 with *out filled (agentdir_report_free it), or a negative CX_E* code with
 * err when the directory itself cannot be listed (out is then empty). */
int agentdir_validate(const char *dir, const agentdef_context *ctx, agentdir_report *out,
                      cx_error *err);
void agentdir_report_free(agentdir_report *report);

#endif
