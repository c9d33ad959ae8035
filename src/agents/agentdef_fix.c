/* Fix suggestions for agent definitions (`caxton agents validate
 * --fix-suggestions`).
 *
 * The parser records, next to the problems it reports, the edits that would
 * fix the mechanical ones: tabs in the indentation, a key a couple of edits
 * away from a known one, a missing closing ---, a number out of range, a name
 * with upper case or underscores. This file applies them and parses again,
 * a few rounds (a missing --- or a tab hides everything after it, since the
 * YAML cannot be read until they are fixed), and hands back the corrected
 * text only when a round ends with no errors at all. Anything that needs a
 * human decision (a bad version, an unknown provider) leaves an error no
 * edit removes, so the answer is then NULL. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agentdef_internal.h"
#include "core/util.h"

#define FIX_ROUNDS 6 /* closing ---, tabs, edits, a check, and slack */

void agentdef_fixes_free(agentdef_fixes *fixes)
{
    for (size_t i = 0; i < fixes->edit_count; i++)
        free(fixes->edits[i].text);
    free(fixes->edits);
    free(fixes->tab_lines);
    memset(fixes, 0, sizeof *fixes);
}

/* Byte offset of line:column (1-based, column in characters). */
static size_t offset_of(const char *text, size_t len, unsigned line, unsigned column)
{
    size_t at = 0;
    for (unsigned l = 1; l < line && at < len; at++)
        if (text[at] == '\n')
            l++;
    for (unsigned c = 1; c < column && at < len && text[at] != '\n'; c++)
        do
            at++;
        while (at < len && ((unsigned char)text[at] & 0xC0) == 0x80);
    return at;
}

typedef struct span {
    size_t start, end;
    const char *text;
} span;

static int span_compare(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* The text with each edit applied; an edit overlapping an earlier one is
 * left out (the next round finds it again if it still applies). */
static char *apply_edits(const char *text, size_t len, const agentdef_edit *edits, size_t n)
{
    span *spans = calloc(n, sizeof *spans);
    if (!spans)
        return NULL;
    for (size_t i = 0; i < n; i++)
        spans[i] = (span){offset_of(text, len, edits[i].line, edits[i].column),
                          offset_of(text, len, edits[i].end_line, edits[i].end_column),
                          edits[i].text};
    qsort(spans, n, sizeof *spans, span_compare);
    strbuf sb;
    strbuf_init(&sb);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (spans[i].start < at || spans[i].end < spans[i].start)
            continue;
        strbuf_append(&sb, text + at, spans[i].start - at);
        strbuf_appends(&sb, spans[i].text);
        at = spans[i].end;
    }
    strbuf_append(&sb, text + at, len - at);
    free(spans);
    if (sb.failed) {
        strbuf_free(&sb);
        return NULL;
    }
    return strbuf_detach(&sb);
}

/* Each tab in the indentation of the given lines (ascending) becomes two
 * spaces. */
static char *replace_tabs(const char *text, size_t len, const unsigned *lines, size_t n)
{
    strbuf sb;
    strbuf_init(&sb);
    unsigned line = 1;
    size_t next = 0;
    bool indent = true;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        while (next < n && lines[next] < line)
            next++;
        bool fix = next < n && lines[next] == line && indent;
        if (c == '\t' && fix)
            strbuf_append(&sb, "  ", 2);
        else
            strbuf_append(&sb, &c, 1);
        indent = indent && (c == ' ' || c == '\t');
        if (c == '\n') {
            line++;
            indent = true;
        }
    }
    if (sb.failed) {
        strbuf_free(&sb);
        return NULL;
    }
    return strbuf_detach(&sb);
}

/* A frontmatter line: indented, a list item, a comment, or `key:`. */
static bool looks_like_yaml(const char *s, const char *end)
{
    if (*s == ' ' || *s == '\t' || *s == '#' || (*s == '-' && (s + 1 == end || s[1] == ' ')))
        return true;
    const char *k = s;
    while (k < end && (*k == '_' || *k == '-' || (*k >= 'a' && *k <= 'z') ||
                       (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9')))
        k++;
    return k > s && k < end && *k == ':' && (k + 1 == end || k[1] == ' ' || k[1] == '\r');
}

/* Adds the closing --- before the first blank line after the last line that
 * looks like settings (before the first prose line), or at the end. */
static char *close_frontmatter(const char *text, size_t len)
{
    const char *first = memchr(text, '\n', len);
    size_t at = first ? (size_t)(first - text) + 1 : len, insert = len;
    bool blank_seen = false;
    while (at < len) {
        const char *nl = memchr(text + at, '\n', len - at);
        const char *s = text + at, *end = nl ? nl : text + len;
        bool blank = true;
        for (const char *c = s; c < end; c++)
            blank = blank && (*c == ' ' || *c == '\t' || *c == '\r');
        if (blank && !blank_seen) {
            insert = at;
            blank_seen = true;
        } else if (!blank && !looks_like_yaml(s, end)) {
            insert = blank_seen ? insert : at;
            break;
        } else if (!blank) {
            blank_seen = false;
            insert = len;
        }
        at = nl ? (size_t)(nl - text) + 1 : len;
    }
    strbuf sb;
    strbuf_init(&sb);
    strbuf_append(&sb, text, insert);
    if (insert > 0 && text[insert - 1] != '\n')
        strbuf_append(&sb, "\n", 1);
    strbuf_append(&sb, "---\n", 4);
    strbuf_append(&sb, text + insert, len - insert);
    if (sb.failed) {
        strbuf_free(&sb);
        return NULL;
    }
    return strbuf_detach(&sb);
}

/* One round's corrected text, or NULL when the round found nothing to fix. */
static char *apply_fixes(const char *text, size_t len, const agentdef_fixes *fx)
{
    if (fx->failed)
        return NULL;
    if (fx->close_frontmatter)
        return close_frontmatter(text, len);
    if (fx->tab_line_count)
        return replace_tabs(text, len, fx->tab_lines, fx->tab_line_count);
    if (fx->edit_count)
        return apply_edits(text, len, fx->edits, fx->edit_count);
    return NULL;
}

char *agentdef_fix_suggestions(const char *file, const char *text, size_t len,
                               const agentdef_context *ctx, size_t *remaining_errors)
{
    if (remaining_errors)
        *remaining_errors = 0;
    if (!text || len > AGENTDEF_MAX_FILE || memchr(text, '\0', len))
        return NULL;
    char *current = strndup(text, len);
    bool changed = false;
    size_t errors = 0;
    for (int round = 0; current && round < FIX_ROUNDS; round++) {
        agentdef_diags diags;
        agentdef_fixes fx = {0};
        agentdef_free(agentdef_parse_fixing(file, current, strlen(current), ctx, &diags, &fx));
        errors = diags.errors;
        agentdef_diags_free(&diags);
        char *next = apply_fixes(current, strlen(current), &fx);
        agentdef_fixes_free(&fx);
        if (!next)
            break;
        free(current);
        current = next;
        changed = true;
        errors = SIZE_MAX; /* not parsed since this round's fixes */
    }
    if (current && changed && errors == SIZE_MAX) {
        agentdef_diags diags;
        agentdef_free(agentdef_parse(file, current, strlen(current), ctx, &diags));
        errors = diags.errors;
        agentdef_diags_free(&diags);
    }
    if (current && changed && (errors == 0 || remaining_errors)) {
        if (remaining_errors)
            *remaining_errors = errors;
        return current;
    }
    free(current);
    return NULL;
}
