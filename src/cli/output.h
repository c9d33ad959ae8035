/* Printing for the command line: aligned tables for people, JSON for scripts.
 *
 * Text that comes from the server is sanitized before it reaches a terminal
 * (control characters become spaces), and columns are aligned by characters,
 * not bytes, so UTF-8 names line up. */
#ifndef CAXTON_CLI_OUTPUT_H
#define CAXTON_CLI_OUTPUT_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

#define OUTPUT_MAX_COLUMNS 8

typedef struct output_table output_table;

/* headers: `columns` strings, printed in upper case. */
output_table *output_table_new(size_t columns, const char *const *headers);
/* Adds a row of `columns` strings (NULL prints as "-"); the strings are copied. */
int output_table_row(output_table *t, ...);
int output_table_row_array(output_table *t, const char *const *cells);
size_t output_table_rows(const output_table *t);
/* Columns separated by two spaces; the last column is not padded. */
void output_table_print(const output_table *t, FILE *out);
void output_table_free(output_table *t);

/* Pretty JSON (2-space indent) and a newline. */
int output_json(FILE *out, const json_t *value);

/* A JSON value as a table cell: strings as they are, null as "-", numbers,
 * true/false, arrays and objects as compact JSON. free() the result. */
char *output_value_text(const json_t *value);
/* A string member of an object, or fallback when missing or not a string. */
const char *output_string(const json_t *object, const char *key, const char *fallback);

/* An integer member of an object (a real one is truncated), or 0. */
json_int_t output_int(const json_t *object, const char *key);
/* The items of an array as text (output_value_text) joined by ", "; "-" for
 * none or no array. free() the result; NULL when out of memory. */
char *output_join(const json_t *array);

/* "12s", "5m 3s", "2h 5m", "3d 4h". */
void output_format_uptime(double seconds, char *buf, size_t size);
/* Replaces control characters (ESC included) with spaces, in place. */
void output_sanitize(char *text);
/* Formats one line, sanitizes it (server text may hold anything) and prints
 * it with a newline. */
void output_line(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints multi-line text, each line after indent, with control characters
 * other than tabs replaced by spaces (a trailing newline adds no line). */
void output_text(FILE *out, const char *text, const char *indent);

#endif
