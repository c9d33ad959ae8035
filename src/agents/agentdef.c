/* Agent definition files: Markdown with a YAML frontmatter, read into an
 * agent_def and checked, every problem reported at its file:line:column.
 *
 * The parse is a fixed pipeline, one stage per step of the documented
 * validation order: the text itself (size, UTF-8, NUL bytes), the
 * frontmatter markers, tabs in the indentation, YAML syntax, then a walk of
 * the YAML document that types every known key (unknown ones are warnings
 * with a did-you-mean), then required fields, cross-references and template
 * variables in the body. A problem is collected with its stage and sorted at
 * the end, so the operator reads them in that order whatever order the walk
 * met them in; all of them are reported, not just the first.
 *
 * Tabs are found before libyaml runs because its message for them ("found
 * character that cannot start any token") does not say what to do. Likewise
 * deep bracket nesting and anchor floods are refused before libyaml sees them
 * (its scanner slows down with flow depth and its alias lookup is linear per
 * alias), and the free-form `parameters` mapping is converted under a node
 * budget and a depth bound, which stops alias bombs and alias loops.
 *
 * Every key of the format is one row in `fields`: its path, kind, where it is
 * stored and its range. libyaml marks count from the start of the
 * frontmatter, which begins on the line after the opening ---, so a mark's
 * line plus that line number is the line in the file. Columns count
 * characters, as libyaml and editors do. */
#include "agents/agentdef.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "agents/agentdef_internal.h"
#include "core/units.h"
#include "core/util.h"

#define MAX_NODES 10000      /* values converted in parameters, aliases counted each time */
#define MAX_DEPTH 32         /* nesting inside parameters */
#define MAX_FLOW_DEPTH 32    /* [ and { nesting, checked before libyaml */
#define MAX_ANCHORS 256      /* & and * in the frontmatter, checked before libyaml */
#define MAX_PENDING (4 * AGENTDEF_MAX_DIAGS) /* problems kept before sorting */
#define MAX_REQUIRES 64
#define MAX_VERSION 128      /* bytes of a version */
#define MAX_VARIABLE 128     /* bytes of a {{variable}} name */
#define MAX_SUGGEST 64       /* parameter names offered as did-you-mean */
#define MAX_MESSAGE 1024
/* The frontmatter starts on the line after the opening ---: libyaml's line 0. */
#define FRONTMATTER_LINE 2

#define MS_SECOND UINT64_C(1000)
#define MS_HOUR (3600 * MS_SECOND)
#define MS_DAY (24 * MS_HOUR)
#define KIB UINT64_C(1024)
#define GIB (KIB * KIB * KIB)
#define MAX_BUDGET_TOKENS UINT64_C(1000000000000)

#define COUNT(a) (sizeof(a) / sizeof *(a))

const char *const agentdef_builtin_tools[] = {"send_message", "reply", "memory_search",
                                              "memory_store", "memory_relate"};
const size_t agentdef_builtin_tool_count = COUNT(agentdef_builtin_tools);

/* The validation order; problems are sorted by it, then by position. */
enum stage { STAGE_FILE, STAGE_SYNTAX, STAGE_REQUIRED, STAGE_TYPES, STAGE_REFS, STAGE_TEMPLATES };

/* ---- the format ----------------------------------------------------------- */

typedef enum field_kind {
    K_SECTION, K_NAME, K_VERSION, K_TEXT, K_RUNTIME, K_SCOPE, K_POLICY, K_LIST, K_INT, K_UINT,
    K_REAL, K_BOOL, K_DURATION, K_SIZE, K_BUDGET, K_PARAMS,
} field_kind;

enum { FL_MULTILINE = 1, FL_NAME_LIKE = 2 };

typedef struct field_def {
    const char *path;
    field_kind kind;
    size_t offset;       /* in agent_def */
    size_t count_offset; /* K_LIST: the count */
    uint64_t min, max;   /* numbers, durations, sizes; K_TEXT: characters; K_LIST: entries */
    unsigned flags;
} field_def;

#define AT(def, f, type) ((type *)(void *)((char *)(def) + (f)->offset))
#define F(member) offsetof(agent_def, member)

static const field_def fields[] = {
    {"name", K_NAME, F(name), 0, 0, 0, 0},
    {"version", K_VERSION, F(version), 0, 0, 0, 0},
    {"description", K_TEXT, F(description), 0, 0, AGENTDEF_DESCRIPTION_MAX, FL_MULTILINE},
    {"runtime", K_RUNTIME, 0, 0, 0, 0, 0},
    {"capabilities", K_LIST, F(capabilities), F(capability_count), 1, AGENTDEF_MAX_CAPABILITIES, 0},
    {"requires", K_LIST, F(requires), F(require_count), 0, MAX_REQUIRES, 0},
    {"tools", K_LIST, F(tools), F(tool_count), 0, AGENTDEF_MAX_TOOLS, 0},
    {"llm", K_SECTION, 0, 0, 0, 0, 0},
    {"llm.provider", K_TEXT, F(llm_provider), 0, 1, 64, FL_NAME_LIKE},
    {"llm.model", K_TEXT, F(llm_model), 0, 1, 256, 0},
    {"llm.temperature", K_REAL, F(llm_temperature), 0, 0, 2, 0},
    {"llm.max_tokens", K_INT, F(llm_max_tokens), 0, 1, 1000000, 0},
    {"memory", K_SECTION, 0, 0, 0, 0, 0},
    {"memory.enabled", K_BOOL, F(memory_enabled), 0, 0, 0, 0},
    {"memory.scope", K_SCOPE, 0, 0, 0, 0, 0},
    {"memory.workspace", K_TEXT, F(memory_workspace), 0, 1, 64, FL_NAME_LIKE},
    {"memory.max_entries", K_INT, F(memory_max_entries), 0, 1, 10000000, 0},
    {"memory.retention", K_DURATION, F(memory_retention_ms), 0, 0, 3650 * MS_DAY, 0},
    {"memory.global_write", K_BOOL, F(memory_global_write), 0, 0, 0, 0},
    {"conversation", K_SECTION, 0, 0, 0, 0, 0},
    {"conversation.max_turns", K_INT, F(conversation_max_turns), 0, 1, 10000, 0},
    {"conversation.context_window", K_INT, F(conversation_context_window), 0, 256, 2000000, 0},
    {"conversation.timeout", K_DURATION, F(conversation_timeout_ms), 0, MS_SECOND, 30 * MS_DAY, 0},
    {"limits", K_SECTION, 0, 0, 0, 0, 0},
    {"limits.max_execution_time", K_DURATION, F(limits_max_execution_time_ms), 0, MS_SECOND,
     MS_HOUR, 0},
    {"limits.max_tool_calls", K_INT, F(limits_max_tool_calls), 0, 0, 1000, 0},
    {"limits.token_budget", K_BUDGET, F(limits_token_budget), 0, 1, MAX_BUDGET_TOKENS, 0},
    {"instances", K_INT, F(instances), 0, 1, AGENTDEF_MAX_INSTANCES, 0},
    {"parameters", K_PARAMS, F(parameters), 0, 0, 0, 0},
    {"module", K_TEXT, F(module), 0, 1, 4096, 0},
    {"policy", K_POLICY, 0, 0, 0, 0, 0},
    {"wasm_limits", K_SECTION, 0, 0, 0, 0, 0},
    {"wasm_limits.memory", K_SIZE, F(wasm_memory_bytes), 0, 64 * KIB, 4 * GIB, 0},
    {"wasm_limits.fuel", K_UINT, F(wasm_fuel), 0, 1, UINT64_C(1000000000000000), 0},
    {"wasm_limits.timeout", K_DURATION, F(wasm_timeout_ms), 0, 1, MS_HOUR, 0},
};

#define FIELD_COUNT COUNT(fields)
_Static_assert(FIELD_COUNT <= 64, "seen-field mask is 64 bits");

static const char *const runtimes[] = {"llm", "wasm"};
static const char *const scopes[] = {"agent", "workspace", "global"};
static const char *const policies[] = {"strict", "default", "relaxed"};
static const char *const template_names[] = {"name", "agent_name", "version", "description",
                                             "capabilities", "memory_context"};
static const struct {
    const char *name;
    uint64_t ms;
} budget_periods[] = {{"hour", MS_HOUR}, {"day", MS_DAY}, {"week", 7 * MS_DAY},
                      {"month", 30 * MS_DAY}};

#define NAME_RULE "names are 3 to 64 characters: lower-case letters, digits and '-', starting " \
                  "with a letter and not ending with '-'"

static int field_find(const char *path)
{
    for (size_t i = 0; i < FIELD_COUNT; i++)
        if (strcmp(fields[i].path, path) == 0)
            return (int)i;
    return -1;
}

/* ---- diagnostics ------------------------------------------------------------ */

/* items with room for element `count`, or NULL when out of memory (items
 * is then untouched). Arrays double from 8, so the count implies the
 * capacity and no separate field is kept. */
static void *array_reserve(void *items, size_t count, size_t size)
{
    if (count != 0 && (count < 8 || (count & (count - 1)) != 0))
        return items;
    return realloc(items, (count ? 2 * count : 8) * size);
}

static void diag_clear(agentdef_diag *d)
{
    free(d->field);
    free(d->message);
    free(d->hint);
}

static int diag_fill(agentdef_diag *d, agentdef_severity sev, unsigned line, unsigned column,
                     const char *field, const char *hint, const char *message)
{
    *d = (agentdef_diag){sev, line, column, str_dup(field ? field : ""), str_dup(message),
                         hint ? str_dup(hint) : NULL};
    if (d->field && d->message && (!hint || d->hint))
        return 0;
    diag_clear(d);
    return CX_ENOMEM;
}

/* Takes d; drops it (marking the list truncated) past the cap. */
static void diags_push(agentdef_diags *diags, agentdef_diag *d)
{
    if (diags->count >= AGENTDEF_MAX_DIAGS) {
        diags->truncated = true;
        diag_clear(d);
        return;
    }
    agentdef_diag *grown = array_reserve(diags->items, diags->count, sizeof *grown);
    if (!grown) {
        diags->truncated = true;
        diag_clear(d);
        return;
    }
    diags->items = grown;
    diags->items[diags->count++] = *d;
}

void agentdef_diag_add(agentdef_diags *diags, agentdef_severity sev, unsigned line,
                       unsigned column, const char *field, const char *hint, const char *fmt, ...)
{
    char message[MAX_MESSAGE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (sev == AGENTDEF_ERROR)
        diags->errors++;
    else
        diags->warnings++;
    agentdef_diag d;
    if (diag_fill(&d, sev, line, column, field, hint, message) != 0)
        diags->truncated = true;
    else
        diags_push(diags, &d);
}

void agentdef_diags_free(agentdef_diags *diags)
{
    if (!diags)
        return;
    for (size_t i = 0; i < diags->count; i++)
        diag_clear(&diags->items[i]);
    free(diags->items);
    memset(diags, 0, sizeof *diags);
}

static const char *severity_name(agentdef_severity sev)
{
    return sev == AGENTDEF_ERROR ? "error" : "warning";
}

int agentdef_diags_format(const agentdef_diags *diags, const char *file, char **out)
{
    strbuf sb;
    strbuf_init(&sb);
    for (size_t i = 0; i < diags->count; i++) {
        const agentdef_diag *d = &diags->items[i];
        strbuf_appends(&sb, file ? file : "");
        if (d->line)
            strbuf_appendf(&sb, ":%u:%u", d->line, d->column);
        strbuf_appendf(&sb, ": %s: ", severity_name(d->severity));
        if (d->field && *d->field)
            strbuf_appendf(&sb, "%s: ", d->field);
        strbuf_appendf(&sb, "%s\n", d->message);
        if (d->hint)
            strbuf_appendf(&sb, "  hint: %s\n", d->hint);
    }
    if (diags->truncated)
        strbuf_appendf(&sb, "%s: more problems were found than the %d shown\n", file ? file : "",
                       AGENTDEF_MAX_DIAGS);
    if (sb.failed) {
        strbuf_free(&sb);
        *out = NULL;
        return CX_ENOMEM;
    }
    *out = strbuf_detach(&sb);
    return *out ? 0 : CX_ENOMEM;
}

json_t *agentdef_diags_json(const agentdef_diags *diags)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < diags->count; i++) {
        const agentdef_diag *d = &diags->items[i];
        json_t *o = json_pack("{s:s, s:I, s:I, s:s, s:s, s:o}", "severity",
                              severity_name(d->severity), "line", (json_int_t)d->line, "column",
                              (json_int_t)d->column, "field", d->field ? d->field : "", "message",
                              d->message, "hint", d->hint ? json_string(d->hint) : json_null());
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* ---- the parser ------------------------------------------------------------- */

typedef struct pending {
    agentdef_diag diag;
    enum stage stage;
    size_t seq;
} pending;

typedef struct parser {
    const char *file;
    char *text;                 /* a NUL-terminated copy of the file */
    size_t len;
    const agentdef_context *ctx;
    agentdef_diags *diags;
    agentdef_fixes *fixes;      /* NULL unless suggesting fixes */
    agent_def *def;
    yaml_document_t *doc;
    size_t fm_start, fm_end;    /* the frontmatter's bytes */
    size_t body_start;
    unsigned close_line;        /* the closing --- */
    size_t budget;              /* parameter values left to convert */
    uint64_t seen;              /* fields met, by index in `fields` */
    yaml_node_t *values[FIELD_COUNT];
    const char *misspelled[FIELD_COUNT]; /* an unknown root key that looks like this field */
    pending *items;
    size_t count;
    bool oom;
} parser;

/* A problem past the cap: counted, not kept. */
static void count_dropped(parser *p, agentdef_severity sev)
{
    if (sev == AGENTDEF_ERROR)
        p->diags->errors++;
    else
        p->diags->warnings++;
    p->diags->truncated = true;
}

static void vreport(parser *p, enum stage stage, agentdef_severity sev, unsigned line,
                    unsigned column, const char *field, const char *hint, const char *fmt,
                    va_list ap) __attribute__((format(printf, 8, 0)));

static void vreport(parser *p, enum stage stage, agentdef_severity sev, unsigned line,
                    unsigned column, const char *field, const char *hint, const char *fmt,
                    va_list ap)
{
    if (p->count >= MAX_PENDING) {
        count_dropped(p, sev);
        return;
    }
    if (sev == AGENTDEF_ERROR)
        p->diags->errors++;
    else
        p->diags->warnings++;
    pending *grown = array_reserve(p->items, p->count, sizeof *grown);
    if (!grown) {
        p->oom = true;
        return;
    }
    p->items = grown;
    char message[MAX_MESSAGE];
    vsnprintf(message, sizeof message, fmt, ap);
    pending *it = &p->items[p->count];
    if (diag_fill(&it->diag, sev, line, column, field, hint, message) != 0) {
        p->oom = true;
        return;
    }
    it->stage = stage;
    it->seq = p->count++;
}

static void report(parser *p, enum stage stage, agentdef_severity sev, unsigned line,
                   unsigned column, const char *field, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

static void report(parser *p, enum stage stage, agentdef_severity sev, unsigned line,
                   unsigned column, const char *field, const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(p, stage, sev, line, column, field, hint, fmt, ap);
    va_end(ap);
}

static void node_report(parser *p, enum stage stage, agentdef_severity sev, const yaml_node_t *n,
                        const char *field, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* A problem where node n starts; n NULL is "not about a place". */
static void node_report(parser *p, enum stage stage, agentdef_severity sev, const yaml_node_t *n,
                        const char *field, const char *hint, const char *fmt, ...)
{
    unsigned line = n ? (unsigned)n->start_mark.line + FRONTMATTER_LINE : 0;
    unsigned column = n ? (unsigned)n->start_mark.column + 1 : 0;
    va_list ap;
    va_start(ap, fmt);
    vreport(p, stage, sev, line, column, field, hint, fmt, ap);
    va_end(ap);
}

static int pending_compare(const void *a, const void *b)
{
    const pending *x = a, *y = b;
    if (x->stage != y->stage)
        return x->stage < y->stage ? -1 : 1;
    if (x->diag.line != y->diag.line)
        return x->diag.line < y->diag.line ? -1 : 1;
    if (x->diag.column != y->diag.column)
        return x->diag.column < y->diag.column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Moves the collected problems into diags in the validation order. */
static void report_finish(parser *p)
{
    if (p->oom)
        report(p, STAGE_FILE, AGENTDEF_ERROR, 0, 0, "", NULL,
               "out of memory while reading the definition");
    if (p->count)
        qsort(p->items, p->count, sizeof *p->items, pending_compare);
    for (size_t i = 0; i < p->count; i++)
        diags_push(p->diags, &p->items[i].diag);
    free(p->items);
    p->items = NULL;
    p->count = 0;
}

/* A replacement for the fix suggester, from node n's start to its end. */
static void record_edit(parser *p, const yaml_node_t *n, const char *text)
{
    agentdef_fixes *fx = p->fixes;
    if (!fx)
        return;
    char *copy = str_dup(text);
    agentdef_edit *grown = copy ? array_reserve(fx->edits, fx->edit_count, sizeof *grown) : NULL;
    if (!grown) {
        free(copy);
        fx->failed = true;
        return;
    }
    fx->edits = grown;
    fx->edits[fx->edit_count++] = (agentdef_edit){
        (unsigned)n->start_mark.line + FRONTMATTER_LINE, (unsigned)n->start_mark.column + 1,
        (unsigned)n->end_mark.line + FRONTMATTER_LINE, (unsigned)n->end_mark.column + 1, copy};
}

/* 1-based line and column (in characters) of byte offset `at`. */
static void offset_position(const char *text, size_t at, unsigned *line, unsigned *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *column = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            (*column)++;
        }
    }
}

/* ---- the text and the frontmatter markers ------------------------------------ */

/* Bytes of the first invalid UTF-8 sequence's offset, or len. Valid sequences
 * are prefix-free, so the first length that checks out is the one. */
static size_t utf8_invalid_at(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = 1;
        while (n <= 4 && (i + n > len || !text_is_utf8(s + i, n)))
            n++;
        if (n > 4)
            return i;
        i += n;
    }
    return len;
}

static bool check_text(parser *p)
{
    unsigned line, column;
    if (!text_is_utf8(p->text, p->len)) {
        size_t at = utf8_invalid_at(p->text, p->len);
        offset_position(p->text, at, &line, &column);
        report(p, STAGE_FILE, AGENTDEF_ERROR, line, column, "", "save the file as UTF-8 text",
               "the file is not valid UTF-8 (byte 0x%02x); agent definitions are text",
               (unsigned char)p->text[at]);
        return false;
    }
    const char *nul = memchr(p->text, '\0', p->len);
    if (nul) {
        offset_position(p->text, (size_t)(nul - p->text), &line, &column);
        report(p, STAGE_FILE, AGENTDEF_ERROR, line, column, "", "save the file as UTF-8 text",
               "the file contains a NUL byte; agent definitions are text");
        return false;
    }
    return true;
}

/* Is the line at `at` exactly "---" (trailing blanks allowed)? *next is the
 * start of the following line. */
static bool marker_at(const parser *p, size_t at, size_t *next)
{
    const char *s = p->text + at, *nl = memchr(s, '\n', p->len - at);
    const char *end = nl ? nl : p->text + p->len;
    *next = nl ? (size_t)(nl - p->text) + 1 : p->len;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    return end - s == 3 && memcmp(s, "---", 3) == 0;
}

static bool split_frontmatter(parser *p)
{
    size_t at = p->len >= 3 && memcmp(p->text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0, next;
    if (!marker_at(p, at, &next)) {
        report(p, STAGE_FILE, AGENTDEF_ERROR, 1, 1, "",
               "start the file with a line '---', then the settings (name:, version:, "
               "capabilities:, ...), then a line '---' and the prompt",
               "frontmatter missing: the file must start with a line '---'");
        return false;
    }
    p->fm_start = next;
    unsigned line = FRONTMATTER_LINE;
    for (at = next; at < p->len; line++) {
        if (marker_at(p, at, &next)) {
            p->fm_end = at;
            p->body_start = next;
            p->close_line = line;
            return true;
        }
        at = next;
    }
    unsigned column;
    offset_position(p->text, p->len, &line, &column);
    report(p, STAGE_FILE, AGENTDEF_ERROR, line, column, "",
           "add a line '---' after the frontmatter",
           "frontmatter not closed: no line '---' after the settings that start on line 2");
    if (p->fixes)
        p->fixes->close_frontmatter = true;
    return false;
}

/* Does the content (after indentation) end with a block scalar indicator:
 * `key: |`, `key: >-`, `- |2`? */
static bool opens_block_scalar(const char *s, const char *end)
{
    while (end > s && (end[-1] == ' ' || end[-1] == '\r'))
        end--;
    for (int i = 0; i < 2 && end > s && strchr("+-0123456789", end[-1]); i++)
        end--;
    return end > s && (end[-1] == '|' || end[-1] == '>') && (end - 1 == s || end[-2] == ' ');
}

static void record_tab_line(parser *p, unsigned line)
{
    agentdef_fixes *fx = p->fixes;
    if (!fx)
        return;
    unsigned *grown = array_reserve(fx->tab_lines, fx->tab_line_count, sizeof *grown);
    if (!grown) {
        fx->failed = true;
        return;
    }
    fx->tab_lines = grown;
    fx->tab_lines[fx->tab_line_count++] = line;
}

/* Tabs in the indentation of the frontmatter. Lines inside a block scalar
 * (`|` or `>`) indented deeper than its key are content, where tabs are
 * fine. */
static bool check_tabs(parser *p)
{
    bool found = false, in_block = false;
    size_t block_parent = 0;
    unsigned line = FRONTMATTER_LINE;
    for (size_t at = p->fm_start; at < p->fm_end; line++) {
        const char *s = p->text + at, *nl = memchr(s, '\n', p->fm_end - at);
        const char *end = nl ? nl : p->text + p->fm_end, *content = s;
        size_t spaces = 0;
        while (s + spaces < end && s[spaces] == ' ')
            spaces++;
        while (content < end && (*content == ' ' || *content == '\t'))
            content++;
        bool blank = content == end || *content == '\r';
        const char *tab = memchr(s, '\t', (size_t)(content - s));
        at = nl ? (size_t)(nl - p->text) + 1 : p->fm_end;
        if (in_block && (blank || spaces > block_parent))
            continue;
        in_block = false;
        if (!blank && tab) {
            report(p, STAGE_FILE, AGENTDEF_ERROR, line, (unsigned)(tab - s) + 1, "",
                   "YAML indentation must use spaces, not tabs",
                   "a tab is used for indentation");
            record_tab_line(p, line);
            found = true;
        } else if (!blank && opens_block_scalar(content, end)) {
            in_block = true;
            block_parent = spaces;
        }
    }
    return !found;
}

/* Can a quoted scalar, a comment, an anchor or an alias start after byte i? */
static bool yaml_token_boundary(const char *s, size_t i)
{
    return i == 0 || strchr(" \t\r\n[{,:", s[i - 1]) != NULL;
}

/* Block entries opened on one line: "- - - - x" (or "? ") nests that deep. */
static size_t line_nesting(const char *s, size_t len)
{
    size_t nested = 0;
    for (size_t j = 0; j + 1 < len && (s[j] == ' ' || ((s[j] == '-' || s[j] == '?') &&
                                                       s[j + 1] == ' ')); j++)
        nested += s[j] != ' ';
    return nested;
}

/* Refuses deep bracket nesting and anchor floods before libyaml runs. */
static bool check_hazards(parser *p)
{
    const char *s = p->text + p->fm_start;
    size_t len = p->fm_end - p->fm_start, depth = 0, anchors = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        const char *problem = NULL;
        if ((i == 0 || s[i - 1] == '\n') && line_nesting(s + i, len - i) > MAX_DEPTH) {
            problem = "lists are nested too deeply";
        } else if ((c == '"' || c == '\'') && yaml_token_boundary(s, i)) {
            for (i++; i < len && s[i] != c; i++)
                i += c == '"' && s[i] == '\\';
        } else if (c == '#' && yaml_token_boundary(s, i)) {
            while (i + 1 < len && s[i + 1] != '\n')
                i++;
        } else if ((c == '[' || c == '{') && ++depth > MAX_FLOW_DEPTH) {
            problem = "brackets are nested too deeply";
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        } else if ((c == '&' || c == '*') && yaml_token_boundary(s, i) &&
                   ++anchors > MAX_ANCHORS) {
            problem = "too many anchors and aliases (&name, *name)";
        }
        if (problem) {
            unsigned line, column;
            offset_position(p->text, p->fm_start + i, &line, &column);
            report(p, STAGE_SYNTAX, AGENTDEF_ERROR, line, column, "",
                   "an agent definition needs only a few levels and anchors; simplify the YAML",
                   "%s (the limits are %d levels and %d anchors)", problem, MAX_FLOW_DEPTH,
                   MAX_ANCHORS);
            return false;
        }
    }
    return true;
}

/* ---- YAML nodes --------------------------------------------------------------- */

static yaml_node_t *doc_node(const parser *p, int index)
{
    return yaml_document_get_node(p->doc, index);
}

static const char *node_str(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

/* `key:` with nothing after it, `~` or `null`. */
static bool node_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = node_str(n);
    return !*s || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

/* [-+]digits[.digits][e[-+]digits]: shown unquoted in messages. */
static bool number_like(const char *s)
{
    s += *s == '-' || *s == '+';
    size_t digits = strspn(s, "0123456789");
    if (!digits)
        return false;
    s += digits;
    if (*s == '.' && s[1] >= '0' && s[1] <= '9')
        s += 1 + strspn(s + 1, "0123456789");
    if ((*s == 'e' || *s == 'E')) {
        s += 1 + (s[1] == '-' || s[1] == '+');
        if (!strspn(s, "0123456789"))
            return false;
        s += strspn(s, "0123456789");
    }
    return *s == '\0';
}

/* What an operator wrote, for "got ...": the value or its shape. */
static const char *node_kind(const yaml_node_t *n, char *buf, size_t size)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (node_is_null(n))
        return "nothing";
    if (number_like(node_str(n)) && n->data.scalar.length < 40)
        snprintf(buf, size, "%s", node_str(n));
    else
        text_quote(node_str(n), buf, size);
    return buf;
}

static void format_choices(const char *const *choices, size_t n, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "one of");
    for (size_t i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s %s", i ? "," : "", choices[i]);
}

/* What a field accepts, as the words after "expected". */
static void field_expectation(const field_def *f, char *buf, size_t size)
{
    char lo[32], hi[32];
    switch (f->kind) {
    case K_SECTION:
    case K_PARAMS: snprintf(buf, size, "a mapping (key: value lines)"); break;
    case K_NAME: snprintf(buf, size, "an agent name such as invoice-checker"); break;
    case K_VERSION: snprintf(buf, size, "a version MAJOR.MINOR.PATCH such as 1.0.0"); break;
    case K_TEXT: snprintf(buf, size, "text of at most %llu characters",
                          (unsigned long long)f->max); break;
    case K_RUNTIME: format_choices(runtimes, COUNT(runtimes), buf, size); break;
    case K_SCOPE: format_choices(scopes, COUNT(scopes), buf, size); break;
    case K_POLICY: format_choices(policies, COUNT(policies), buf, size); break;
    case K_LIST: snprintf(buf, size, "a list of names such as [a-name, another]"); break;
    case K_INT:
    case K_UINT:
        snprintf(buf, size, "an integer from %llu to %llu", (unsigned long long)f->min,
                 (unsigned long long)f->max);
        break;
    case K_REAL:
        snprintf(buf, size, "a number from %llu to %llu", (unsigned long long)f->min,
                 (unsigned long long)f->max);
        break;
    case K_BOOL: snprintf(buf, size, "true or false"); break;
    case K_DURATION:
        units_format_duration(f->min, lo, sizeof lo);
        units_format_duration(f->max, hi, sizeof hi);
        snprintf(buf, size, "a duration from %s to %s (a number with ms, s, m, h or d, such as "
                 "90s, 30m or 7d)", lo, hi);
        break;
    case K_SIZE:
        units_format_size(f->min, lo, sizeof lo);
        units_format_size(f->max, hi, sizeof hi);
        snprintf(buf, size, "a size from %s to %s (a number with KB, MB or GB, such as 10MB)", lo,
                 hi);
        break;
    case K_BUDGET:
        snprintf(buf, size, "a token budget such as 200000/day (per hour, day, week or month)");
        break;
    }
}

static void type_error(parser *p, const yaml_node_t *n, const char *field, const char *hint,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void type_error(parser *p, const yaml_node_t *n, const char *field, const char *hint,
                       const char *fmt, ...)
{
    unsigned line = (unsigned)n->start_mark.line + FRONTMATTER_LINE, column = (unsigned)n->start_mark.column + 1;
    va_list ap;
    va_start(ap, fmt);
    vreport(p, STAGE_TYPES, AGENTDEF_ERROR, line, column, field, hint, fmt, ap);
    va_end(ap);
}

/* "expected <what f accepts>, got <what n is>", with a hint to match. */
static void reject(parser *p, const field_def *f, const yaml_node_t *n, const char *hint)
{
    char expected[160], got[100], use[200];
    field_expectation(f, expected, sizeof expected);
    snprintf(use, sizeof use, "use %s", expected);
    if (!hint)
        hint = node_is_null(n) ? "write a value after the colon, or remove the key to use the "
                                 "default" : use;
    type_error(p, n, f->path, hint, "expected %s, got %s", expected, node_kind(n, got, sizeof got));
}

/* The text of a scalar, or NULL after rejecting a list, a mapping, nothing,
 * or a NUL character inside. */
static const char *scalar_of(parser *p, const field_def *f, const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || node_is_null(n)) {
        reject(p, f, n, NULL);
        return NULL;
    }
    if (strlen(node_str(n)) != n->data.scalar.length) {
        type_error(p, n, f->path, "remove the \\0 escape", "the value contains a NUL character");
        return NULL;
    }
    return node_str(n);
}

static void store_string(parser *p, char **slot, const char *value)
{
    char *copy = str_dup(value);
    if (!copy) {
        p->oom = true;
        return;
    }
    free(*slot);
    *slot = copy;
}

/* ---- names and versions ----------------------------------------------------- */

static bool lower_or_digit(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool agentdef_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len < AGENTDEF_NAME_MIN || len > AGENTDEF_NAME_MAX || name[0] < 'a' || name[0] > 'z' ||
        name[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!lower_or_digit(name[i]) && name[i] != '-')
            return false;
    return true;
}

bool agentdef_capability_valid(const char *cap)
{
    size_t len = cap ? strlen(cap) : 0;
    if (len < 1 || len > 64 || cap[0] == '-' || cap[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!lower_or_digit(cap[i]) && (cap[i] != '-' || cap[i + 1] == '-'))
            return false;
    return true;
}

/* Why name breaks the rules, in words. */
static const char *name_problem(const char *name)
{
    size_t len = strlen(name);
    if (len < AGENTDEF_NAME_MIN)
        return "it is shorter than 3 characters";
    if (len > AGENTDEF_NAME_MAX)
        return "it is longer than 64 characters";
    for (size_t i = 0; i < len; i++)
        if (name[i] >= 'A' && name[i] <= 'Z')
            return "it has upper-case letters";
    if (name[0] < 'a' || name[0] > 'z')
        return "it must start with a lower-case letter";
    if (name[len - 1] == '-')
        return "it must not end with '-'";
    return "it may contain only lower-case letters, digits and '-'";
}

/* "My_Agent Name" -> "my-agent-name": lower case, runs of '_', ' ', '-', '.'
 * made one '-', none at the ends. False when that is not a valid name (or,
 * with capability, a valid capability). */
static bool kebab_normalize(const char *s, char *out, size_t size, bool capability)
{
    size_t o = 0;
    bool dash = false;
    for (; *s; s++) {
        char c = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;
        if (c == '_' || c == ' ' || c == '-' || c == '.') {
            dash = o > 0;
            continue;
        }
        if (!lower_or_digit(c) || o + 2 >= size)
            return false;
        if (dash)
            out[o++] = '-';
        dash = false;
        out[o++] = c;
    }
    out[o] = '\0';
    return capability ? agentdef_capability_valid(out) : agentdef_name_valid(out);
}

/* A dot-separated list of [0-9A-Za-z-]+ identifiers; numeric ones without
 * leading zeros when strict_numbers. */
static bool semver_identifiers(const char *s, size_t len, bool strict_numbers)
{
    size_t i = 0;
    while (true) {
        size_t start = i;
        bool numeric = true;
        for (; i < len && s[i] != '.'; i++) {
            char c = s[i];
            if (!lower_or_digit(c) && !(c >= 'A' && c <= 'Z') && c != '-')
                return false;
            numeric &= c >= '0' && c <= '9';
        }
        if (i == start || (strict_numbers && numeric && s[start] == '0' && i - start > 1))
            return false;
        if (i == len)
            return true;
        i++;
    }
}

static bool semver_valid(const char *v)
{
    size_t len = strlen(v);
    if (len > MAX_VERSION)
        return false;
    const char *s = v;
    for (int part = 0; part < 3; part++) {
        size_t digits = strspn(s, "0123456789");
        if (!digits || (digits > 1 && s[0] == '0'))
            return false;
        s += digits;
        if (part < 2 && *s++ != '.')
            return false;
    }
    const char *plus = strchr(s, '+');
    size_t pre_len = plus ? (size_t)(plus - s) : strlen(s);
    if (*s == '-' && !semver_identifiers(s + 1, pre_len - 1, true))
        return false;
    if (*s != '-' && *s != '+' && *s != '\0')
        return false;
    return !plus || semver_identifiers(plus + 1, strlen(plus + 1), false);
}

/* ---- typed values ------------------------------------------------------------ */

static void set_name(parser *p, const field_def *f, const yaml_node_t *n)
{
    const char *s = scalar_of(p, f, n);
    if (!s)
        return;
    if (!agentdef_name_valid(s)) {
        char fixed[AGENTDEF_NAME_MAX + 1], got[96], hint[256];
        bool can = kebab_normalize(s, fixed, sizeof fixed, false);
        if (can)
            snprintf(hint, sizeof hint, "did you mean `%s`? (%s)", fixed, NAME_RULE);
        text_quote(s, got, sizeof got);
        type_error(p, n, f->path, can ? hint : NAME_RULE, "%s is not a valid agent name: %s",
                   got, name_problem(s));
        if (can)
            record_edit(p, n, fixed);
        return;
    }
    store_string(p, AT(p->def, f, char *), s);
    p->def->name_line = (unsigned)n->start_mark.line + FRONTMATTER_LINE;
    p->def->name_column = (unsigned)n->start_mark.column + 1;
}

static void set_version(parser *p, const field_def *f, const yaml_node_t *n)
{
    const char *s = scalar_of(p, f, n);
    if (!s)
        return;
    if (semver_valid(s)) {
        store_string(p, AT(p->def, f, char *), s);
        return;
    }
    char got[96], hint[MAX_VERSION + 128], guess[MAX_VERSION + 8];
    const char *bare = (s[0] == 'v' || s[0] == 'V') ? s + 1 : s;
    size_t dots = 0;
    for (const char *c = bare; *c; c++)
        dots += *c == '.';
    snprintf(guess, sizeof guess, "%s%s", bare, dots == 0 ? ".0.0" : dots == 1 ? ".0" : "");
    if (strlen(bare) <= MAX_VERSION && semver_valid(guess))
        snprintf(hint, sizeof hint, "did you mean `%s`? (semantic versioning: MAJOR.MINOR.PATCH)",
                 guess);
    else
        snprintf(hint, sizeof hint, "use semantic versioning: MAJOR.MINOR.PATCH such as 1.0.0, "
                                    "optionally with -prerelease or +build");
    text_quote(s, got, sizeof got);
    type_error(p, n, f->path, hint, "%s is not a valid version", got);
}

/* Printable ASCII only: safe to echo inside a hint as written. */
static bool plain_ascii(const char *s)
{
    for (; *s; s++)
        if (*s < 0x21 || *s > 0x7E)
            return false;
    return true;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void set_text(parser *p, const field_def *f, const yaml_node_t *n)
{
    const char *s = scalar_of(p, f, n);
    if (!s)
        return;
    size_t chars = utf8_chars(s);
    if (chars < f->min || chars > f->max) {
        type_error(p, n, f->path, chars ? "shorten it; details belong in the body" : NULL,
                   "is %zu characters long; %llu to %llu are allowed", chars,
                   (unsigned long long)f->min, (unsigned long long)f->max);
        return;
    }
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        bool control = *c < 0x20 && !((f->flags & FL_MULTILINE) && (*c == '\n' || *c == '\t'));
        bool odd = (f->flags & FL_NAME_LIKE) && !lower_or_digit((char)*c) &&
                   !(*c >= 'A' && *c <= 'Z') && *c != '-' && *c != '_';
        if (control || odd) {
            char got[96];
            text_quote(s, got, sizeof got);
            type_error(p, n, f->path,
                       odd ? "use letters, digits, '-' and '_'" : "write it on one line",
                       "%s contains %s", got, odd ? "a character not allowed in a name" :
                                                    "a control character");
            return;
        }
    }
    store_string(p, AT(p->def, f, char *), s);
}

/* Index of the choice s, or -1 after reporting (with a did-you-mean). */
static int set_choice(parser *p, const field_def *f, const yaml_node_t *n,
                      const char *const *choices, size_t count)
{
    const char *s = scalar_of(p, f, n);
    if (!s)
        return -1;
    for (size_t i = 0; i < count; i++)
        if (strcmp(s, choices[i]) == 0)
            return (int)i;
    if (f->kind == K_SCOPE && strcmp(s, "agent-only") == 0)
        return AGENT_MEMORY_AGENT;
    const char *close = text_suggest(s, choices, count);
    char hint[96];
    snprintf(hint, sizeof hint, "did you mean `%s`?", close ? close : "");
    reject(p, f, n, close ? hint : NULL);
    return -1;
}

static bool parse_digits(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    s += *s == '+';
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9' || __builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
            return false;
    *out = v;
    return true;
}

/* An out-of-range value: the error, and the clamped value as an edit. */
static void reject_range(parser *p, const field_def *f, const yaml_node_t *n, bool above)
{
    char bound[32];
    uint64_t b = above ? f->max : f->min;
    if (f->kind == K_DURATION)
        units_format_duration(b, bound, sizeof bound);
    else if (f->kind == K_SIZE)
        units_format_size(b, bound, sizeof bound);
    else
        snprintf(bound, sizeof bound, "%llu", (unsigned long long)b);
    reject(p, f, n, NULL);
    record_edit(p, n, bound);
}

static void set_number(parser *p, const field_def *f, const yaml_node_t *n)
{
    const char *s = scalar_of(p, f, n);
    if (!s)
        return;
    uint64_t u = 0;
    bool whole = parse_digits(s, &u);
    if (f->kind == K_REAL) {
        char *end;
        errno = 0;
        double d = number_like(s) ? strtod(s, &end) : NAN;
        if (isnan(d) || errno == ERANGE)
            reject(p, f, n, NULL);
        else if (d < (double)f->min || d > (double)f->max)
            reject_range(p, f, n, d > (double)f->max);
        else
            *AT(p->def, f, double) = d;
        return;
    }
    if (!whole) {
        bool negative = number_like(s) && s[0] == '-';
        if (negative)
            reject_range(p, f, n, false);
        else if (number_like(s) && strchr(s, '.') == NULL && strpbrk(s, "eE") == NULL)
            reject_range(p, f, n, true); /* too many digits */
        else
            reject(p, f, n, NULL);
    } else if (u < f->min || u > f->max) {
        reject_range(p, f, n, u > f->max);
    } else if (f->kind == K_INT) {
        *AT(p->def, f, int64_t) = (int64_t)u;
    } else {
        *AT(p->def, f, uint64_t) = u;
    }
}

static void set_quantity(parser *p, const field_def *f, const yaml_node_t *n)
{
    const char *s = scalar_of(p, f, n);
    if (!s)
        return;
    uint64_t v;
    cx_error err;
    int rc = f->kind == K_DURATION ? units_parse_duration_ms(s, &v, &err)
                                   : units_parse_size(s, &v, &err);
    if (rc != 0)
        reject(p, f, n, NULL);
    else if (v < f->min || v > f->max)
        reject_range(p, f, n, v > f->max);
    else
        *AT(p->def, f, uint64_t) = v;
}

/* YAML 1.1 booleans: 1 for true/yes/on, 0 for false/no/off (any case), else -1. */
static int bool_word(const char *s)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < COUNT(yes); i++)
        if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0)
            return strcasecmp(s, yes[i]) == 0;
    return -1;
}

static void set_bool(parser *p, const field_def *f, const yaml_node_t *n)
{
    const char *s = scalar_of(p, f, n);
    int b = s ? bool_word(s) : -1;
    if (b >= 0)
        *AT(p->def, f, bool) = b;
    else if (s)
        reject(p, f, n, NULL);
}

/* "200000/day", "5000 / hour", or a bare count (per day). */
static bool parse_budget(const char *s, agent_budget *out)
{
    char digits[32];
    size_t n = strspn(s, "0123456789");
    if (n == 0 || n >= sizeof digits)
        return false;
    memcpy(digits, s, n);
    digits[n] = '\0';
    uint64_t tokens;
    if (!parse_digits(digits, &tokens))
        return false;
    s += n + strspn(s + n, " ");
    if (*s == '\0') {
        *out = (agent_budget){tokens, MS_DAY};
        return true;
    }
    if (*s++ != '/')
        return false;
    s += strspn(s, " ");
    for (size_t i = 0; i < COUNT(budget_periods); i++)
        if (strcasecmp(s, budget_periods[i].name) == 0) {
            *out = (agent_budget){tokens, budget_periods[i].ms};
            return true;
        }
    return false;
}

static void set_budget(parser *p, const field_def *f, const yaml_node_t *n)
{
    const char *s = scalar_of(p, f, n);
    agent_budget b;
    if (!s)
        return;
    if (!parse_budget(s, &b) || b.tokens < f->min || b.tokens > f->max)
        reject(p, f, n, NULL);
    else
        *AT(p->def, f, agent_budget) = b;
}

static void strings_free(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static void set_list(parser *p, const field_def *f, const yaml_node_t *n)
{
    if (node_is_null(n))
        return;
    if (n->type != YAML_SEQUENCE_NODE) {
        char hint[160];
        bool scalar = n->type == YAML_SCALAR_NODE && n->data.scalar.length < 64 &&
                      plain_ascii(node_str(n));
        snprintf(hint, sizeof hint, "write a list: %s: [%s]", f->path,
                 scalar ? node_str(n) : "a-name, another");
        reject(p, f, n, hint);
        return;
    }
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > f->max) {
        type_error(p, n, f->path, "keep the list short; split the agent if it does too much",
                   "has %zu entries; at most %llu are allowed", count,
                   (unsigned long long)f->max);
        return;
    }
    char **list = calloc(count ? count : 1, sizeof *list);
    if (!list) {
        p->oom = true;
        return;
    }
    size_t kept = 0;
    bool bad = false;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *item = doc_node(p, *it);
        char path[80];
        size_t position = (size_t)(it - n->data.sequence.items.start);
        snprintf(path, sizeof path, "%s[%zu]", f->path, position);
        if (!item)
            continue;
        if (item->type != YAML_SCALAR_NODE || node_is_null(item) ||
            strlen(node_str(item)) != item->data.scalar.length) {
            char got[100];
            type_error(p, item, path, NULL, "expected a name, got %s",
                       node_kind(item, got, sizeof got));
            bad = true;
        } else if (!(list[kept++] = str_dup(node_str(item)))) {
            p->oom = true;
        }
    }
    if (bad) { /* the entries would no longer match their positions */
        strings_free(list, kept);
        return;
    }
    char ***slot = AT(p->def, f, char **);
    size_t *count_slot = (size_t *)(void *)((char *)p->def + f->count_offset);
    strings_free(*slot, *count_slot);
    *slot = list;
    *count_slot = kept;
}

/* ---- parameters: free-form YAML to JSON ----------------------------------------- */

static json_t *node_json(parser *p, const yaml_node_t *n, const char *path, int depth);

/* Plain scalars read as YAML 1.1 does: null, booleans, integers, reals;
 * quoted ones stay text. */
static json_t *scalar_json(parser *p, const yaml_node_t *n, const char *path)
{
    const char *s = node_str(n);
    if (strlen(s) != n->data.scalar.length) {
        type_error(p, n, path, "remove the \\0 escape", "the value contains a NUL character");
        return NULL;
    }
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (node_is_null(n))
            return json_null();
        if (bool_word(s) >= 0)
            return json_boolean(bool_word(s));
        if (number_like(s)) {
            char *end;
            errno = 0;
            bool integer = !strpbrk(s, ".eE");
            long long i = integer ? strtoll(s, &end, 10) : 0;
            if (integer && errno == 0)
                return json_integer(i);
            errno = 0;
            double d = strtod(s, &end);
            if (errno == 0 && isfinite(d))
                return json_real(d);
        }
    }
    return json_stringn(s, n->data.scalar.length);
}

static json_t *mapping_json(parser *p, const yaml_node_t *n, const char *path, int depth)
{
    json_t *obj = json_object();
    if (!obj) {
        p->oom = true;
        return NULL;
    }
    for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *key = doc_node(p, pair->key), *value = doc_node(p, pair->value);
        char child[256], got[100];
        if (!key || !value)
            continue;
        if (key->type != YAML_SCALAR_NODE || strlen(node_str(key)) != key->data.scalar.length) {
            type_error(p, key, path, NULL, "keys must be names, got %s",
                       node_kind(key, got, sizeof got));
            json_decref(obj);
            return NULL;
        }
        snprintf(child, sizeof child, "%s.%s", path, node_str(key));
        if (json_object_get(obj, node_str(key))) {
            type_error(p, key, child, "remove one of them", "the key is set twice");
            json_decref(obj);
            return NULL;
        }
        json_t *v = node_json(p, value, child, depth + 1);
        if (!v || json_object_set_new(obj, node_str(key), v) != 0) {
            p->oom |= v != NULL;
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* Depth and the number of values are bounded, which stops alias loops
 * (`&a [*a]`) and alias bombs (each use of an alias counts). */
static json_t *node_json(parser *p, const yaml_node_t *n, const char *path, int depth)
{
    if (depth > MAX_DEPTH) {
        type_error(p, n, path, "flatten the parameters", "nested more than %d levels deep",
                   MAX_DEPTH);
        return NULL;
    }
    if (p->budget == 0) {
        type_error(p, n, path, "parameters are for a few settings, not data",
                   "more than %d values (aliases count each time they are used)", MAX_NODES);
        return NULL;
    }
    p->budget--;
    if (n->type == YAML_MAPPING_NODE)
        return mapping_json(p, n, path, depth);
    if (n->type != YAML_SEQUENCE_NODE)
        return scalar_json(p, n, path);
    json_t *arr = json_array();
    if (!arr)
        p->oom = true;
    for (yaml_node_item_t *it = n->data.sequence.items.start;
         arr && it < n->data.sequence.items.top; it++) {
        char child[256];
        snprintf(child, sizeof child, "%s[%zu]", path, (size_t)(it - n->data.sequence.items.start));
        yaml_node_t *item = doc_node(p, *it);
        json_t *v = item ? node_json(p, item, child, depth + 1) : json_null();
        if (!v || json_array_append_new(arr, v) != 0) {
            p->oom |= v != NULL;
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

static void set_parameters(parser *p, const field_def *f, const yaml_node_t *n)
{
    if (node_is_null(n))
        return;
    if (n->type != YAML_MAPPING_NODE) {
        reject(p, f, n, "write one `key: value` per line under parameters:");
        return;
    }
    json_t *obj = node_json(p, n, f->path, 0);
    if (obj) {
        json_decref(p->def->parameters);
        p->def->parameters = obj;
    }
}

/* ---- the walk ------------------------------------------------------------------- */

static void walk_mapping(parser *p, const yaml_node_t *map, const char *prefix);

static void set_field(parser *p, const field_def *f, const yaml_node_t *n)
{
    int i;
    switch (f->kind) {
    case K_SECTION:
        if (n->type == YAML_MAPPING_NODE)
            walk_mapping(p, n, f->path);
        else if (!node_is_null(n))
            reject(p, f, n, NULL);
        break;
    case K_NAME: set_name(p, f, n); break;
    case K_VERSION: set_version(p, f, n); break;
    case K_TEXT: set_text(p, f, n); break;
    case K_RUNTIME:
        if ((i = set_choice(p, f, n, runtimes, COUNT(runtimes))) >= 0)
            p->def->runtime = i == 0 ? AGENT_RUNTIME_LLM : AGENT_RUNTIME_WASM;
        break;
    case K_SCOPE:
        if ((i = set_choice(p, f, n, scopes, COUNT(scopes))) >= 0)
            p->def->memory_scope = (agent_memory_scope)i;
        break;
    case K_POLICY:
        if ((i = set_choice(p, f, n, policies, COUNT(policies))) >= 0)
            store_string(p, &p->def->policy, policies[i]);
        break;
    case K_LIST: set_list(p, f, n); break;
    case K_INT:
    case K_UINT:
    case K_REAL: set_number(p, f, n); break;
    case K_BOOL: set_bool(p, f, n); break;
    case K_DURATION:
    case K_SIZE: set_quantity(p, f, n); break;
    case K_BUDGET: set_budget(p, f, n); break;
    case K_PARAMS: set_parameters(p, f, n); break;
    }
}

static bool mapping_has_key(const parser *p, const yaml_node_t *map, const char *name)
{
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top;
         pair++) {
        const yaml_node_t *key = doc_node(p, pair->key);
        if (key && key->type == YAML_SCALAR_NODE && strcmp(node_str(key), name) == 0)
            return true;
    }
    return false;
}

/* An unknown key: a warning with a did-you-mean among its siblings. A key
 * two edits from one is renamed by the fix suggester, unless the mapping
 * already has that key or is too big to be a real section (which also keeps
 * the sibling scan cheap). */
static void warn_unknown(parser *p, const yaml_node_t *map, const yaml_node_t *key,
                         const char *prefix, const char *path)
{
    const char *leaves[FIELD_COUNT];
    size_t n = 0, plen = strlen(prefix);
    for (size_t i = 0; i < FIELD_COUNT; i++) {
        const char *fp = fields[i].path;
        bool child = plen ? strncmp(fp, prefix, plen) == 0 && fp[plen] == '.' &&
                                !strchr(fp + plen + 1, '.')
                          : !strchr(fp, '.');
        if (child)
            leaves[n++] = fp + (plen ? plen + 1 : 0);
    }
    const char *name = node_str(key), *close = NULL;
    if (p->count < MAX_PENDING)
        close = text_suggest(name, leaves, n);
    char hint[128], shown[96];
    snprintf(hint, sizeof hint, "did you mean `%s`?", close ? close : "");
    text_quote(name, shown, sizeof shown);
    node_report(p, STAGE_TYPES, AGENTDEF_WARNING, key, path, close ? hint : NULL,
                "unknown key %s; it is ignored", shown);
    if (!close)
        return;
    if (!plen && plain_ascii(name))
        p->misspelled[field_find(close)] = name;
    size_t pairs = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    if (p->fixes && pairs <= 2 * FIELD_COUNT && text_edit_distance(name, close, 2) <= 2 &&
        !mapping_has_key(p, map, close))
        record_edit(p, key, close);
}

static void walk_mapping(parser *p, const yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *key = doc_node(p, pair->key), *value = doc_node(p, pair->value);
        char path[128], got[100];
        if (!key || !value)
            continue;
        if (key->type != YAML_SCALAR_NODE || strlen(node_str(key)) != key->data.scalar.length) {
            type_error(p, key, prefix, "write settings as key: value", "keys must be names, got %s",
                       node_kind(key, got, sizeof got));
            continue;
        }
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", node_str(key));
        int i = key->data.scalar.length < 64 ? field_find(path) : -1;
        if (i < 0) {
            warn_unknown(p, map, key, prefix, path);
        } else if (p->seen & (UINT64_C(1) << i)) {
            type_error(p, key, path, "remove one of them", "the key is set twice");
        } else {
            p->seen |= UINT64_C(1) << i;
            p->values[i] = value;
            set_field(p, &fields[i], value);
        }
    }
}

/* ---- required fields -------------------------------------------------------------- */

static bool field_seen(const parser *p, const char *path)
{
    return (p->seen >> field_find(path)) & 1;
}

static yaml_node_t *field_node(const parser *p, const char *path)
{
    return field_seen(p, path) ? p->values[field_find(path)] : NULL;
}

/* The file's name without directories and ".md", for hints; "" otherwise. */
static void file_stem(const char *file, char *out, size_t size)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    size_t len = strlen(base);
    if (len > 3 && strcmp(base + len - 3, ".md") == 0 && len - 3 < size) {
        memcpy(out, base, len - 3);
        out[len - 3] = '\0';
    } else {
        out[0] = '\0';
    }
}

static void check_required(parser *p)
{
    char stem[AGENTDEF_NAME_MAX + 8], example[96];
    file_stem(p->file, stem, sizeof stem);
    static const struct {
        const char *path;
        const char *example;
    } required[] = {{"name", NULL}, {"version", "1.0.0"}, {"capabilities", "[what-it-does]"}};
    for (size_t i = 0; i < COUNT(required); i++) {
        int f = field_find(required[i].path);
        if (field_seen(p, required[i].path))
            continue;
        char hint[192];
        const char *value = required[i].example;
        if (!value) {
            snprintf(example, sizeof example, "%s", agentdef_name_valid(stem) ? stem : "my-agent");
            value = example;
        }
        if (p->misspelled[f])
            snprintf(hint, sizeof hint, "rename `%.64s` to `%s`", p->misspelled[f],
                     required[i].path);
        else
            snprintf(hint, sizeof hint, "add a line `%s: %s` to the frontmatter", required[i].path,
                     value);
        report(p, STAGE_REQUIRED, AGENTDEF_ERROR, p->close_line, 1, required[i].path, hint,
               "required field `%s` is missing", required[i].path);
    }
    if (p->def->runtime == AGENT_RUNTIME_WASM && !field_seen(p, "module"))
        report(p, STAGE_REQUIRED, AGENTDEF_ERROR, p->close_line, 1, "module",
               "add a line `module: NAME.wasm` (relative to the agents directory)",
               "a wasm agent needs `module`, the WebAssembly file it runs");
}

/* ---- cross-references -------------------------------------------------------------- */

/* Item i of the sequence value of field path, for positions. */
static yaml_node_t *list_item(const parser *p, const char *path, size_t i)
{
    yaml_node_t *seq = field_node(p, path);
    if (!seq || seq->type != YAML_SEQUENCE_NODE)
        return NULL;
    yaml_node_item_t *items = seq->data.sequence.items.start;
    return i < (size_t)(seq->data.sequence.items.top - items) ? doc_node(p, items[i]) : NULL;
}

/* Each entry: a valid capability, listed once. Sequences hold at most 64
 * names, so comparing each with the earlier ones is cheap. */
static void check_capability_list(parser *p, const char *path, char **list, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *n = list_item(p, path, i);
        char field[80], fixed[72], hint[160], shown[96];
        snprintf(field, sizeof field, "%s[%zu]", path, i);
        text_quote(list[i], shown, sizeof shown);
        if (!agentdef_capability_valid(list[i])) {
            bool can = kebab_normalize(list[i], fixed, sizeof fixed, true);
            snprintf(hint, sizeof hint, "did you mean `%s`? (capabilities are kebab-case)", fixed);
            node_report(p, STAGE_REFS, AGENTDEF_ERROR, n, field,
                        can ? hint : "use kebab-case: lower-case letters and digits joined by '-', "
                                     "at most 64 characters",
                        "%s is not a valid capability name", shown);
            continue;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(list[i], list[j]) == 0) {
                node_report(p, STAGE_REFS, AGENTDEF_ERROR, n, field, "remove the repeated entry",
                            "%s is listed twice", shown);
                break;
            }
    }
    if (strcmp(path, "capabilities") == 0 && field_seen(p, path) && count == 0)
        node_report(p, STAGE_REFS, AGENTDEF_ERROR, field_node(p, path), path,
                    "list what the agent does, e.g. capabilities: [summarization]",
                    "an agent needs at least one capability");
}

static bool mcp_part_valid(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!lower_or_digit(s[i]) && !(s[i] >= 'A' && s[i] <= 'Z') && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        if (list[i] && strcmp(s, list[i]) == 0)
            return true;
    return false;
}

static void check_tool(parser *p, size_t i)
{
    const char *tool = p->def->tools[i];
    yaml_node_t *n = list_item(p, "tools", i);
    const agentdef_context *ctx = p->ctx;
    char field[32], shown[96], hint[160];
    snprintf(field, sizeof field, "tools[%zu]", i);
    text_quote(tool, shown, sizeof shown);
    const char *dot = strchr(tool, '.');
    if (in_list(tool, agentdef_builtin_tools, agentdef_builtin_tool_count)) {
        if (str_has_prefix(tool, "memory_") && !p->def->memory_enabled)
            node_report(p, STAGE_REFS, AGENTDEF_WARNING, n, field,
                        "add `memory: {enabled: true}` or remove the tool",
                        "%s needs memory, which is not enabled for this agent", shown);
    } else if (!dot) {
        const char *close = text_suggest(tool, agentdef_builtin_tools,
                                         agentdef_builtin_tool_count);
        snprintf(hint, sizeof hint, "did you mean `%s`?", close ? close : "");
        node_report(p, STAGE_REFS, AGENTDEF_ERROR, n, field,
                    close ? hint : "built-in tools are send_message, reply, memory_search, "
                                   "memory_store and memory_relate; MCP tools are server.tool",
                    "unknown built-in tool %s", shown);
    } else if (!mcp_part_valid(tool, (size_t)(dot - tool)) ||
               !mcp_part_valid(dot + 1, strlen(dot + 1))) {
        node_report(p, STAGE_REFS, AGENTDEF_ERROR, n, field,
                    "write MCP tools as server.tool, both parts letters, digits, '_' and '-'",
                    "%s is not a tool name", shown);
    } else if (!in_list(tool, ctx->tools, ctx->tool_count)) {
        const char *close = text_suggest(tool, ctx->tools, ctx->tools ? ctx->tool_count : 0);
        snprintf(hint, sizeof hint, "did you mean `%s`?", close ? close : "");
        agentdef_tool_server server =
            ctx->tool_server ? ctx->tool_server(tool, (size_t)(dot - tool), ctx->tool_server_arg)
                             : AGENTDEF_SERVER_READY;
        if (ctx->tools_checked && server == AGENTDEF_SERVER_NOT_READY)
            node_report(p, STAGE_REFS, AGENTDEF_WARNING, n, field,
                        "see `caxton tools status`; the agent may call it once the server is up",
                        "cannot check tool %s: its MCP server has not listed its tools (starting "
                        "or failing)", shown);
        else if (ctx->tools_checked && server == AGENTDEF_SERVER_UNKNOWN)
            node_report(p, STAGE_REFS, AGENTDEF_ERROR, n, field,
                        "add the server to tools.mcp_servers in the server config",
                        "unknown tool %s: no MCP server named \"%.*s\" is configured", shown,
                        (int)(dot - tool), tool);
        else if (ctx->tools_checked)
            node_report(p, STAGE_REFS, AGENTDEF_ERROR, n, field,
                        close ? hint : "check the server's MCP tools with `caxton tools status`",
                        "unknown tool %s: its MCP server does not provide it", shown);
        else
            node_report(p, STAGE_REFS, AGENTDEF_WARNING, n, field,
                        "it is checked when the server loads the agent",
                        "cannot check tool %s offline", shown);
    }
    for (size_t j = 0; j < i; j++)
        if (strcmp(tool, p->def->tools[j]) == 0) {
            node_report(p, STAGE_REFS, AGENTDEF_WARNING, n, field, "remove the repeated entry",
                        "%s is listed twice", shown);
            break;
        }
}

static void list_names(const char *const *names, size_t n, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", names[i]);
}

static void check_provider(parser *p)
{
    const agentdef_context *ctx = p->ctx;
    yaml_node_t *n = field_node(p, "llm.provider"), *llm = field_node(p, "llm");
    char names[256], hint[320], shown[96];
    list_names(ctx->providers, ctx->provider_count, names, sizeof names);
    if (ctx->provider_count == 0 || !ctx->providers) {
        node_report(p, STAGE_REFS, AGENTDEF_WARNING, n ? n : llm, "llm.provider",
                    "add one under llm.providers in the server configuration",
                    "no LLM providers are configured (llm.providers)");
    } else if (p->def->llm_provider) {
        if (in_list(p->def->llm_provider, ctx->providers, ctx->provider_count))
            return;
        const char *close = text_suggest(p->def->llm_provider, ctx->providers,
                                         ctx->provider_count);
        if (close)
            snprintf(hint, sizeof hint, "did you mean `%s`? (configured: %s)", close, names);
        else
            snprintf(hint, sizeof hint, "configured providers: %s", names);
        text_quote(p->def->llm_provider, shown, sizeof shown);
        node_report(p, STAGE_REFS, AGENTDEF_ERROR, n, "llm.provider", hint,
                    "unknown provider %s", shown);
    } else if (ctx->provider_count == 1) {
        store_string(p, &p->def->llm_provider, ctx->providers[0]);
    } else if (!field_seen(p, "llm.provider")) {
        snprintf(hint, sizeof hint, "add `provider: NAME` under llm:, one of: %s", names);
        node_report(p, STAGE_REFS, AGENTDEF_ERROR, llm, "llm.provider", hint,
                    "no provider chosen and %zu are configured", ctx->provider_count);
    }
}

static void check_module(parser *p)
{
    const agentdef_context *ctx = p->ctx;
    const char *module = p->def->module;
    if (!module || !ctx->agents_dir || !ctx->check_module)
        return;
    char *path = module[0] == '/' ? str_dup(module) : path_join(ctx->agents_dir, module);
    char msg[512] = "";
    if (!path) {
        p->oom = true;
        return;
    }
    if (ctx->check_module(path, msg, sizeof msg, ctx->check_module_arg) != 0)
        node_report(p, STAGE_REFS, AGENTDEF_ERROR, field_node(p, "module"), "module",
                    "check the path (relative to the agents directory) and the file",
                    "%s", msg[0] ? msg : "the module does not validate");
    free(path);
}

/* Settings that only one runtime uses, given to the other. */
static void warn_other_runtime(parser *p)
{
    static const char *const llm_only[] = {"llm"}, *const wasm_only[] = {"module", "policy",
                                                                        "wasm_limits"};
    bool wasm = p->def->runtime == AGENT_RUNTIME_WASM;
    const char *const *keys = wasm ? llm_only : wasm_only;
    size_t n = wasm ? COUNT(llm_only) : COUNT(wasm_only);
    for (size_t i = 0; i < n; i++)
        if (field_seen(p, keys[i]))
            node_report(p, STAGE_REFS, AGENTDEF_WARNING, field_node(p, keys[i]), keys[i],
                        wasm ? "remove it" : "set `runtime: wasm` to run a WebAssembly module",
                        "`%s` is ignored for %s agents", keys[i], wasm ? "wasm" : "llm");
}

static void check_refs(parser *p)
{
    agent_def *d = p->def;
    check_capability_list(p, "capabilities", d->capabilities, d->capability_count);
    check_capability_list(p, "requires", d->requires, d->require_count);
    for (size_t i = 0; i < d->tool_count; i++)
        check_tool(p, i);
    if (d->runtime == AGENT_RUNTIME_LLM)
        check_provider(p);
    else
        check_module(p);
    warn_other_runtime(p);
    char stem[AGENTDEF_NAME_MAX + 8];
    file_stem(p->file, stem, sizeof stem);
    if (d->name && stem[0] && strcmp(stem, d->name) != 0)
        node_report(p, STAGE_REFS, AGENTDEF_WARNING, field_node(p, "name"), "name",
                    "name the file after the agent: <name>.md",
                    "the file is %s.md but the agent is named %s", stem, d->name);
}

/* ---- template variables --------------------------------------------------------- */

static bool template_known(const json_t *params, const char *name)
{
    if (in_list(name, template_names, COUNT(template_names)))
        return true;
    return str_has_prefix(name, "parameters.") &&
           json_object_get(params, name + strlen("parameters.")) != NULL;
}

/* The problem with {{name}} at line:column, with a did-you-mean among the
 * known names or the parameters' keys. */
static void report_variable(parser *p, const char *name, unsigned line, unsigned column)
{
    if (p->count >= MAX_PENDING) { /* it would only be counted: skip the suggestion work */
        count_dropped(p, AGENTDEF_ERROR);
        return;
    }
    const char *keys[MAX_SUGGEST], *key, *close = NULL;
    json_t *value;
    size_t n = 0;
    json_object_foreach(p->def->parameters, key, value) {
        if (n == MAX_SUGGEST)
            break;
        keys[n++] = key;
    }
    char hint[2 * MAX_VARIABLE + 64], shown[MAX_VARIABLE + 8];
    bool param = str_has_prefix(name, "parameters.");
    const char *rest = param ? name + strlen("parameters.") : name;
    if (!param)
        close = text_suggest(name, template_names, COUNT(template_names));
    if (close) {
        snprintf(hint, sizeof hint, "did you mean `{{%s}}`?", close);
    } else {
        close = param ? text_suggest(rest, keys, n)
                      : (json_object_get(p->def->parameters, name) ? name : NULL);
        if (close && plain_ascii(close))
            snprintf(hint, sizeof hint, "did you mean `{{parameters.%s}}`?", close);
        else if (param && plain_ascii(rest))
            snprintf(hint, sizeof hint, "add `%s: VALUE` under parameters:", rest);
        else
            snprintf(hint, sizeof hint, "known variables: name, agent_name, version, "
                                        "description, capabilities, memory_context, "
                                        "parameters.KEY");
    }
    text_quote(name, shown, sizeof shown);
    report(p, STAGE_TEMPLATES, AGENTDEF_ERROR, line, column, "body", hint,
           param ? "template variable %s: no such key in parameters"
                 : "unknown template variable %s", shown);
}

/* Checks the text between {{ and }} (spaces around allowed). */
static void check_variable(parser *p, const char *s, const char *end, unsigned line,
                           unsigned column)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    char name[MAX_VARIABLE + 1];
    size_t len = (size_t)(end - s) < MAX_VARIABLE ? (size_t)(end - s) : MAX_VARIABLE;
    memcpy(name, s, len);
    name[len] = '\0';
    if (len == 0)
        report(p, STAGE_TEMPLATES, AGENTDEF_ERROR, line, column, "body",
               "write a variable name between the braces, e.g. {{name}}",
               "empty template variable {{}}");
    else if ((size_t)(end - s) > MAX_VARIABLE || !template_known(p->def->parameters, name))
        report_variable(p, name, line, column);
}

/* Scans the body once. `close` and `newline` are the next "}}" and line
 * break at or after the cursor; both only move forward, so the scan stays
 * linear whatever the body holds. */
static void check_templates(parser *p)
{
    const char *s = p->text + p->body_start, *end = p->text + p->len, *skip = s;
    const char *close = memmem(s, (size_t)(end - s), "}}", 2);
    const char *newline = memchr(s, '\n', (size_t)(end - s));
    unsigned line = p->close_line + 1, column = 1;
    for (; s < end; s++) {
        if (*s == '\n') {
            line++;
            column = 1;
            continue;
        }
        if (s >= skip && s[0] == '{' && s + 1 < end && s[1] == '{') {
            if (close && close < s + 2)
                close = memmem(s + 2, (size_t)(end - s - 2), "}}", 2);
            if (newline && newline < s)
                newline = memchr(s, '\n', (size_t)(end - s));
            if (!close || (newline && newline < close)) {
                report(p, STAGE_TEMPLATES, AGENTDEF_WARNING, line, column, "body",
                       "close it with }}, or it is left in the prompt as written",
                       "`{{` is not closed on this line");
                skip = s + 2;
            } else {
                check_variable(p, s + 2, close, line, column);
                skip = close + 2;
            }
            if (!close)
                return; /* no "}}" anywhere after: every later {{ is unclosed too */
        }
        column += ((unsigned char)*s & 0xC0) != 0x80;
    }
}

/* ---- the pipeline --------------------------------------------------------------- */

static void report_yaml_error(parser *p, const yaml_parser_t *yp)
{
    if (yp->error == YAML_MEMORY_ERROR) {
        p->oom = true;
        return;
    }
    unsigned line, column;
    if (yp->error == YAML_READER_ERROR) {
        size_t at = p->fm_start + (yp->problem_offset < p->fm_end - p->fm_start
                                       ? yp->problem_offset : p->fm_end - p->fm_start);
        offset_position(p->text, at, &line, &column);
    } else {
        line = (unsigned)yp->problem_mark.line + FRONTMATTER_LINE;
        column = (unsigned)yp->problem_mark.column + 1;
    }
    const char *problem = yp->problem ? yp->problem : "unknown problem", *hint = NULL;
    if (strstr(problem, "mapping values are not allowed"))
        hint = "quote a value that contains ': ', and check the indentation";
    else if (strstr(problem, "did not find expected key") ||
             strstr(problem, "did not find expected '-'"))
        hint = "check that this line is indented like the lines around it";
    else if (strstr(problem, "could not find expected ':'"))
        hint = "each setting is written key: value";
    else if (strstr(problem, "found unexpected end of stream") ||
             strstr(problem, "did not find expected ','"))
        hint = "a quoted value or a bracket is not closed";
    else if (strstr(problem, "<document start>"))
        hint = "a line `...` ends the settings early; remove it";
    report(p, STAGE_SYNTAX, AGENTDEF_ERROR, line, column, "", hint, "YAML syntax error: %s%s%s%s",
           problem, yp->context ? " (" : "", yp->context ? yp->context : "",
           yp->context ? ")" : "");
}

static void validate_root(parser *p, yaml_node_t *root)
{
    if (root && root->type != YAML_MAPPING_NODE && !node_is_null(root)) {
        char got[100];
        node_report(p, STAGE_SYNTAX, AGENTDEF_ERROR, root, "",
                    "write one `key: value` setting per line, starting with name:",
                    "the frontmatter must be a mapping of settings, got %s",
                    node_kind(root, got, sizeof got));
        return;
    }
    if (root && root->type == YAML_MAPPING_NODE)
        walk_mapping(p, root, "");
    check_required(p);
    check_refs(p);
    if (p->def->runtime == AGENT_RUNTIME_LLM)
        check_templates(p);
}

/* A second document (after a `...` line) would be silently ignored. */
static void check_single_document(parser *p, yaml_parser_t *yp)
{
    yaml_document_t next;
    if (!yaml_parser_load(yp, &next)) {
        report_yaml_error(p, yp);
        return;
    }
    yaml_node_t *root = yaml_document_get_root_node(&next);
    if (root)
        node_report(p, STAGE_SYNTAX, AGENTDEF_ERROR, root, "", "remove the `...` line above it",
                    "the frontmatter holds a second YAML document");
    yaml_document_delete(&next);
}

static void parse_yaml(parser *p)
{
    yaml_parser_t yp;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&yp)) {
        p->oom = true;
        return;
    }
    yaml_parser_set_input_string(&yp, (const unsigned char *)p->text + p->fm_start,
                                 p->fm_end - p->fm_start);
    if (!yaml_parser_load(&yp, &doc)) {
        report_yaml_error(p, &yp);
        yaml_parser_delete(&yp);
        return;
    }
    p->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root)
        check_single_document(p, &yp);
    validate_root(p, root);
    p->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&yp);
}

static agent_def *def_new(void)
{
    agent_def *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    *d = (agent_def){
        .description = str_dup(""), .llm_temperature = 0.7, .memory_scope = AGENT_MEMORY_WORKSPACE,
        .memory_workspace = str_dup("default"), .memory_max_entries = 10000,
        .conversation_max_turns = 50, .conversation_context_window = 8000,
        .conversation_timeout_ms = 30 * 60 * MS_SECOND, .limits_max_execution_time_ms =
        60 * MS_SECOND, .limits_max_tool_calls = 10, .instances = 1, .parameters = json_object(),
    };
    if (!d->description || !d->memory_workspace || !d->parameters) {
        agentdef_free(d);
        return NULL;
    }
    return d;
}

static void finish_def(parser *p)
{
    agent_def *d = p->def;
    d->llm_temperature_set = field_seen(p, "llm.temperature");
    d->body_line = p->close_line + 1;
    d->body = strndup(p->text + p->body_start, p->len - p->body_start);
    d->frontmatter = strndup(p->text + p->fm_start, p->fm_end - p->fm_start);
    p->oom |= !d->body || !d->frontmatter;
}

agent_def *agentdef_parse_fixing(const char *file, const char *text, size_t len,
                                 const agentdef_context *ctx, agentdef_diags *diags,
                                 agentdef_fixes *fixes)
{
    static const agentdef_context offline = {0};
    memset(diags, 0, sizeof *diags);
    parser p = {.file = file ? file : "", .ctx = ctx ? ctx : &offline, .diags = diags,
                .fixes = fixes, .budget = MAX_NODES, .len = text ? len : 0};
    if (p.len > AGENTDEF_MAX_FILE) {
        report(&p, STAGE_FILE, AGENTDEF_ERROR, 0, 0, "",
               "keep the prompt shorter; put reference material in memory instead",
               "the file is %zu bytes; agent definitions are limited to %d bytes", p.len,
               AGENTDEF_MAX_FILE);
    } else if (!(p.text = malloc(p.len + 1)) || !(p.def = def_new())) {
        p.oom = true;
    } else {
        if (p.len)
            memcpy(p.text, text, p.len);
        p.text[p.len] = '\0';
        if (check_text(&p) && split_frontmatter(&p) && check_tabs(&p) && check_hazards(&p))
            parse_yaml(&p);
        finish_def(&p);
    }
    report_finish(&p);
    free(p.text);
    if (diags->errors == 0)
        return p.def;
    agentdef_free(p.def);
    return NULL;
}

agent_def *agentdef_parse(const char *file, const char *text, size_t len,
                          const agentdef_context *ctx, agentdef_diags *diags)
{
    return agentdef_parse_fixing(file, text, len, ctx, diags, NULL);
}

void agentdef_free(agent_def *def)
{
    if (!def)
        return;
    free(def->name);
    free(def->version);
    free(def->description);
    strings_free(def->capabilities, def->capability_count);
    strings_free(def->requires, def->require_count);
    strings_free(def->tools, def->tool_count);
    free(def->llm_provider);
    free(def->llm_model);
    free(def->memory_workspace);
    json_decref(def->parameters);
    free(def->module);
    free(def->policy);
    free(def->body);
    free(def->frontmatter);
    free(def);
}

/* ---- output ------------------------------------------------------------------ */

static json_t *strings_json(char *const *list, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, json_string(list[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    return arr;
}

/* "30m" (or null when 0 means "not set"), for the *_ms twin's text form. */
static json_t *duration_text(uint64_t ms, bool zero_is_null)
{
    char buf[32];
    if (ms == 0 && zero_is_null)
        return json_null();
    units_format_duration(ms, buf, sizeof buf);
    return json_string(buf);
}

static json_t *budget_json(const agent_budget *b)
{
    char buf[64];
    if (b->tokens == 0)
        return json_null();
    for (size_t i = 0; i < COUNT(budget_periods); i++)
        if (budget_periods[i].ms == b->period_ms) {
            snprintf(buf, sizeof buf, "%llu/%s", (unsigned long long)b->tokens,
                     budget_periods[i].name);
            return json_string(buf);
        }
    return json_null();
}

static json_t *size_text(uint64_t bytes)
{
    char buf[32];
    if (bytes == 0)
        return json_null();
    units_format_size(bytes, buf, sizeof buf);
    return json_string(buf);
}

json_t *agentdef_to_json(const agent_def *d)
{
    if (!d)
        return NULL;
    const agent_budget *b = &d->limits_token_budget;
    return json_pack(
        "{s:s?, s:s?, s:s?, s:s, s:o, s:o, s:o,"
        " s:{s:s?, s:s?, s:f, s:o}, s:{s:b, s:s, s:s?, s:I, s:b, s:o, s:I},"
        " s:{s:I, s:I, s:o, s:I}, s:{s:o, s:I, s:I, s:o, s:I, s:I}, s:I, s:O?,"
        " s:s?, s:s?, s:{s:o, s:I, s:o, s:o, s:I}, s:s?, s:I}",
        "name", d->name, "version", d->version, "description", d->description, "runtime",
        d->runtime == AGENT_RUNTIME_WASM ? "wasm" : "llm", "capabilities",
        strings_json(d->capabilities, d->capability_count), "requires",
        strings_json(d->requires, d->require_count), "tools", strings_json(d->tools, d->tool_count),
        "llm", "provider", d->llm_provider, "model", d->llm_model, "temperature",
        d->llm_temperature, "max_tokens",
        d->llm_max_tokens ? json_integer(d->llm_max_tokens) : json_null(),
        "memory", "enabled", d->memory_enabled, "scope", scopes[d->memory_scope], "workspace",
        d->memory_workspace, "max_entries", (json_int_t)d->memory_max_entries, "global_write",
        d->memory_global_write, "retention",
        duration_text(d->memory_retention_ms, true), "retention_ms",
        (json_int_t)d->memory_retention_ms,
        "conversation", "max_turns", (json_int_t)d->conversation_max_turns, "context_window",
        (json_int_t)d->conversation_context_window, "timeout",
        duration_text(d->conversation_timeout_ms, false), "timeout_ms",
        (json_int_t)d->conversation_timeout_ms,
        "limits", "max_execution_time", duration_text(d->limits_max_execution_time_ms, false),
        "max_execution_time_ms", (json_int_t)d->limits_max_execution_time_ms, "max_tool_calls",
        (json_int_t)d->limits_max_tool_calls, "token_budget", budget_json(b),
        "token_budget_tokens", (json_int_t)b->tokens, "token_budget_period_ms",
        (json_int_t)b->period_ms,
        "instances", (json_int_t)d->instances, "parameters", d->parameters, "module", d->module,
        "policy", d->policy,
        "wasm_limits", "memory", size_text(d->wasm_memory_bytes), "memory_bytes",
        (json_int_t)d->wasm_memory_bytes, "fuel",
        d->wasm_fuel ? json_integer((json_int_t)d->wasm_fuel) : json_null(), "timeout",
        duration_text(d->wasm_timeout_ms, true), "timeout_ms", (json_int_t)d->wasm_timeout_ms,
        "prompt", d->body, "body_line", (json_int_t)d->body_line);
}

/* The shortest text that reads back as d: 0.01, not 0.010000000000000000208. */
static void format_real(double d, char *buf, size_t size)
{
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(buf, size, "%.*g", precision, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

/* Appends the value of {{name}}; false when name is not a variable. */
static bool append_variable(strbuf *sb, const agent_def *d, const char *memory_context,
                            const char *name)
{
    char num[64];
    if (strcmp(name, "name") == 0 || strcmp(name, "agent_name") == 0)
        strbuf_appends(sb, d->name ? d->name : "");
    else if (strcmp(name, "version") == 0)
        strbuf_appends(sb, d->version ? d->version : "");
    else if (strcmp(name, "description") == 0)
        strbuf_appends(sb, d->description ? d->description : "");
    else if (strcmp(name, "memory_context") == 0)
        strbuf_appends(sb, memory_context ? memory_context : "");
    else if (strcmp(name, "capabilities") == 0)
        for (size_t i = 0; i < d->capability_count; i++)
            strbuf_appendf(sb, "%s%s", i ? ", " : "", d->capabilities[i]);
    else if (!str_has_prefix(name, "parameters."))
        return false;
    else {
        const json_t *v = json_object_get(d->parameters, name + strlen("parameters."));
        if (json_is_string(v)) {
            strbuf_append(sb, json_string_value(v), json_string_length(v));
        } else if (json_is_integer(v)) {
            strbuf_appendf(sb, "%lld", (long long)json_integer_value(v));
        } else if (json_is_real(v)) {
            format_real(json_real_value(v), num, sizeof num);
            strbuf_appends(sb, num);
        } else if (json_is_boolean(v)) {
            strbuf_appends(sb, json_is_true(v) ? "true" : "false");
        } else if (json_is_object(v) || json_is_array(v)) {
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!text)
                sb->failed = true;
            else
                strbuf_appends(sb, text);
            free(text);
        }
    }
    return true;
}

/* Same scan as check_templates: {{ name }} closed on its line; anything else
 * is left as written. */
char *agentdef_render_prompt(const agent_def *d, const char *memory_context)
{
    strbuf sb;
    strbuf_init(&sb);
    const char *s = d && d->body ? d->body : "", *end = s + strlen(s);
    const char *close = strstr(s, "}}"), *newline = strchr(s, '\n');
    while (s < end) {
        const char *open = strstr(s, "{{");
        if (!open) {
            strbuf_append(&sb, s, (size_t)(end - s));
            break;
        }
        strbuf_append(&sb, s, (size_t)(open - s));
        if (close && close < open + 2)
            close = strstr(open + 2, "}}");
        if (newline && newline < open)
            newline = memchr(open, '\n', (size_t)(end - open));
        if (!close || (newline && newline < close)) {
            strbuf_append(&sb, "{{", 2);
            s = open + 2;
            continue;
        }
        const char *a = open + 2, *b = close;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        char name[MAX_VARIABLE + 1];
        bool fits = (size_t)(b - a) <= MAX_VARIABLE;
        if (fits) {
            memcpy(name, a, (size_t)(b - a));
            name[b - a] = '\0';
        }
        if (!fits || !append_variable(&sb, d, memory_context, name))
            strbuf_append(&sb, open, (size_t)(close + 2 - open));
        s = close + 2;
    }
    if (sb.failed) {
        strbuf_free(&sb);
        return NULL;
    }
    return strbuf_detach(&sb);
}
