/* Durations and sizes as operators write them: 500ms, 10s, 5m, 5min, 1h, 7d;
 * 512KB, 10MB, 1GB (powers of 1024); relative changes +1, +512MB, +50%. */
#ifndef CAXTON_CORE_UNITS_H
#define CAXTON_CORE_UNITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* "10s" -> 10000. A bare number is seconds. Rejects negatives, overflow,
 * unknown units (the message lists the accepted ones). */
int units_parse_duration_ms(const char *text, uint64_t *out_ms, cx_error *err);
/* "10MB" -> 10485760. A bare number is bytes. */
int units_parse_size(const char *text, uint64_t *out_bytes, cx_error *err);
/* Shortest exact form: 10000 -> "10s", 90000 -> "90s", 3600000 -> "1h". */
void units_format_duration(uint64_t ms, char *buf, size_t size);
/* Shortest exact form: 1048576 -> "1MB", 1500 -> "1500B". */
void units_format_size(uint64_t bytes, char *buf, size_t size);

/* A relative or absolute change: "+1", "-1", "3", "+512MB", "+50%". */
typedef struct units_change {
    enum { UNITS_ABSOLUTE, UNITS_DELTA, UNITS_PERCENT } kind;
    int64_t value; /* count, bytes, or percent */
} units_change;

int units_parse_change(const char *text, bool sizes, units_change *out, cx_error *err);
/* Applies a change to a current value; clamps at 0. */
uint64_t units_apply_change(uint64_t current, const units_change *change);

#endif
