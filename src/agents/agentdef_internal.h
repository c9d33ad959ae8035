/* Shared between the agent definition parser (agentdef.c) and the fix
 * suggester (agentdef_fix.c): the parser can record, next to its
 * diagnostics, the mechanical edits that would fix them. Not part of the
 * agents part's interface. */
#ifndef CAXTON_AGENTS_AGENTDEF_INTERNAL_H
#define CAXTON_AGENTS_AGENTDEF_INTERNAL_H

#include "agents/agentdef.h"

/* Replace the text from line:column up to end_line:end_column (1-based, in
 * characters, end exclusive) with `text`. */
typedef struct agentdef_edit {
    unsigned line, column, end_line, end_column;
    char *text;
} agentdef_edit;

/* At most one kind is filled per parse: a missing closing --- or tabs stop
 * the parse before the YAML is read, so edits come only from a later pass. */
typedef struct agentdef_fixes {
    bool close_frontmatter;  /* add the closing --- line */
    unsigned *tab_lines;     /* lines whose indentation has tabs */
    size_t tab_line_count;
    agentdef_edit *edits;
    size_t edit_count;
    bool failed;             /* out of memory while recording */
} agentdef_fixes;

/* agentdef_parse() that also fills fixes (zeroed by the caller). */
agent_def *agentdef_parse_fixing(const char *file, const char *text, size_t len,
                                 const agentdef_context *ctx, agentdef_diags *diags,
                                 agentdef_fixes *fixes);
void agentdef_fixes_free(agentdef_fixes *fixes);

#endif
