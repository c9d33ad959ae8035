/* Tables and JSON for the command line's output (see output.h). */
#include "cli/output.h"
#include "cli/cli_internal.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

struct output_table {
    size_t columns;
    char **cells; /* rows * columns, row 0 holds the headers */
    size_t rows;  /* including the header row */
    size_t cap;
};

void output_sanitize(char *text)
{
    for (unsigned char *p = (unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = ' ';
}

void output_line(FILE *out, const char *fmt, ...)
{
    char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fputs("(out of memory)\n", out);
        return;
    }
    output_sanitize(line);
    fprintf(out, "%s\n", line);
    free(line);
}

void output_text(FILE *out, const char *text, const char *indent)
{
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, "\n");
        fputs(indent, out);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c == '\r' && i + 1 == n)
                break;
            fputc(c == '\t' || (c >= 0x20 && c != 0x7f) ? c : ' ', out);
        }
        fputc('\n', out);
        p += n;
        if (*p == '\n')
            p++;
    }
}

/* Characters, not bytes: UTF-8 continuation bytes do not count. */
static size_t display_width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

static char *cell_copy(const char *text)
{
    char *copy = str_dup(text ? text : "-");
    if (copy)
        output_sanitize(copy);
    return copy;
}

static int table_grow(output_table *t)
{
    if (t->rows < t->cap)
        return 0;
    size_t cap = t->cap ? t->cap * 2 : 8;
    char **cells = realloc(t->cells, cap * t->columns * sizeof *cells);
    if (!cells)
        return CX_ENOMEM;
    t->cells = cells;
    t->cap = cap;
    return 0;
}

int output_table_row_array(output_table *t, const char *const *cells)
{
    if (table_grow(t) != 0)
        return CX_ENOMEM;
    char **row = t->cells + t->rows * t->columns;
    for (size_t i = 0; i < t->columns; i++) {
        row[i] = cell_copy(cells[i]);
        if (!row[i]) {
            while (i-- > 0)
                free(row[i]);
            return CX_ENOMEM;
        }
    }
    t->rows++;
    return 0;
}

output_table *output_table_new(size_t columns, const char *const *headers)
{
    if (columns == 0 || columns > OUTPUT_MAX_COLUMNS)
        return NULL;
    output_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->columns = columns;
    const char *upper[OUTPUT_MAX_COLUMNS];
    char buf[OUTPUT_MAX_COLUMNS][64];
    for (size_t i = 0; i < columns; i++) {
        size_t j = 0;
        for (; headers[i][j] && j + 1 < sizeof buf[i]; j++)
            buf[i][j] = (char)(headers[i][j] >= 'a' && headers[i][j] <= 'z' ? headers[i][j] - 32
                                                                             : headers[i][j]);
        buf[i][j] = '\0';
        upper[i] = buf[i];
    }
    if (output_table_row_array(t, upper) != 0) {
        output_table_free(t);
        return NULL;
    }
    return t;
}

int output_table_row(output_table *t, ...)
{
    const char *cells[OUTPUT_MAX_COLUMNS];
    va_list ap;
    va_start(ap, t);
    for (size_t i = 0; i < t->columns; i++)
        cells[i] = va_arg(ap, const char *);
    va_end(ap);
    return output_table_row_array(t, cells);
}

size_t output_table_rows(const output_table *t)
{
    return t->rows - 1;
}

void output_table_print(const output_table *t, FILE *out)
{
    size_t width[OUTPUT_MAX_COLUMNS] = {0};
    for (size_t r = 0; r < t->rows; r++)
        for (size_t c = 0; c < t->columns; c++) {
            size_t w = display_width(t->cells[r * t->columns + c]);
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->rows; r++) {
        char *const *row = t->cells + r * t->columns;
        size_t last = t->columns; /* no padding after the last non-empty cell */
        while (last > 1 && row[last - 1][0] == '\0')
            last--;
        for (size_t c = 0; c < last; c++) {
            fputs(row[c], out);
            if (c + 1 < last)
                fprintf(out, "%*s", (int)(width[c] - display_width(row[c]) + 2), "");
        }
        fputc('\n', out);
    }
}

void output_table_free(output_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->rows * t->columns; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

int output_json(FILE *out, const json_t *value)
{
    if (json_dumpf(value, out, JSON_INDENT(2)) != 0)
        return CX_EIO;
    fputc('\n', out);
    return 0;
}

char *output_value_text(const json_t *value)
{
    char buf[64];
    switch (json_typeof(value)) {
    case JSON_STRING:
        return str_dup(json_string_value(value));
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        return str_dup(buf);
    case JSON_REAL:
        snprintf(buf, sizeof buf, "%g", json_real_value(value));
        return str_dup(buf);
    case JSON_TRUE:
        return str_dup("true");
    case JSON_FALSE:
        return str_dup("false");
    case JSON_NULL:
        return str_dup("-");
    default:
        return json_dumps(value, JSON_COMPACT);
    }
}

const char *output_string(const json_t *object, const char *key, const char *fallback)
{
    const json_t *v = json_object_get(object, key);
    return json_is_string(v) ? json_string_value(v) : fallback;
}

json_int_t output_int(const json_t *object, const char *key)
{
    const json_t *v = json_object_get(object, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v) && json_real_value(v) > -9e18 && json_real_value(v) < 9e18)
        return (json_int_t)json_real_value(v);
    return 0;
}

char *output_join(const json_t *array)
{
    strbuf sb;
    strbuf_init(&sb);
    size_t i;
    const json_t *item;
    json_array_foreach(array, i, item) {
        char *text = output_value_text(item);
        if (!text || strbuf_appendf(&sb, "%s%s", sb.len ? ", " : "", text) != 0) {
            free(text);
            strbuf_free(&sb);
            return NULL;
        }
        free(text);
    }
    if (sb.len == 0 && strbuf_appends(&sb, "-") != 0) {
        strbuf_free(&sb);
        return NULL;
    }
    return strbuf_detach(&sb);
}

void output_format_uptime(double seconds, char *buf, size_t size)
{
    if (!(seconds >= 0))
        seconds = 0;
    unsigned long long s = (unsigned long long)seconds;
    unsigned long long d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60, sec = s % 60;
    if (d)
        snprintf(buf, size, "%llud %lluh", d, h);
    else if (h)
        snprintf(buf, size, "%lluh %llum", h, m);
    else if (m)
        snprintf(buf, size, "%llum %llus", m, sec);
    else
        snprintf(buf, size, "%llus", sec);
}

void cli_emit(const cli_invocation *inv, json_t *doc, void (*print_table)(const json_t *doc))
{
    if (inv->output == CLI_OUTPUT_JSON)
        output_json(stdout, doc);
    else
        print_table(doc);
    json_decref(doc);
}
