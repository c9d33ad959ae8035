/* Durations and sizes as operators write them, and relative changes.
 *
 * Grammar: NUMBER [UNIT], where NUMBER is digits with an optional decimal
 * part and UNIT is matched without regard to case. Spaces around the value
 * are ignored, spaces inside are not ("10 s" is refused, so a typo never
 * silently means something else). A decimal is accepted only when the result
 * is exact: "1.5s" is 1500 ms and "1.5KB" is 1536 bytes, but "0.5ms" and
 * "0.3B" are refused rather than rounded. Arithmetic is checked, so a huge
 * number is an error, never a wrapped-around small one. */
#include "core/units.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"

typedef struct unit {
    const char *name;
    uint64_t scale;
} unit;

static const unit duration_units[] = {
    {"ms", 1},        {"s", 1000},          {"m", 60 * 1000},
    {"min", 60 * 1000}, {"h", 3600 * 1000}, {"d", 24 * 3600 * 1000},
};

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define TIB (UINT64_C(1) << 40)

static const unit size_units[] = {
    {"b", 1},     {"k", KIB},   {"kb", KIB},  {"kib", KIB}, {"m", MIB},   {"mb", MIB}, {"mib", MIB},
    {"g", GIB},   {"gb", GIB},  {"gib", GIB}, {"t", TIB},   {"tb", TIB},  {"tib", TIB},
};

#define DURATION_EXPECTED "expected a number with ms, s, m, min, h or d (e.g. 500ms, 10s, 5min)"
#define SIZE_EXPECTED "expected a number with B, KB, MB, GB or TB (e.g. 512KB, 10MB, 1GB)"
/* More decimals than this can never be exact for our units. */
#define MAX_FRACTION_DIGITS 18

typedef enum number_status {
    NUMBER_OK,
    NUMBER_INVALID,
    NUMBER_NEGATIVE,
    NUMBER_OVERFLOW,
    NUMBER_NOT_WHOLE,
} number_status;

/* A decimal number as written: whole part, fraction digits as an integer. */
typedef struct decimal {
    uint64_t whole;
    uint64_t fraction;
    unsigned fraction_digits;
} decimal;

static void trim(const char **start, const char **end)
{
    while (*start < *end && isspace((unsigned char)**start))
        (*start)++;
    while (*end > *start && isspace((unsigned char)(*end)[-1]))
        (*end)--;
}

/* Reads digits [. digits] from *p; leaves *p on the first byte after them. */
static number_status parse_decimal(const char **p, const char *end, decimal *out)
{
    const char *s = *p;
    *out = (decimal){0, 0, 0};
    if (s < end && *s == '-')
        return NUMBER_NEGATIVE;
    if (s == end || !isdigit((unsigned char)*s))
        return NUMBER_INVALID;
    for (; s < end && isdigit((unsigned char)*s); s++)
        if (__builtin_mul_overflow(out->whole, 10, &out->whole) ||
            __builtin_add_overflow(out->whole, (uint64_t)(*s - '0'), &out->whole))
            return NUMBER_OVERFLOW;
    if (s < end && *s == '.') {
        s++;
        if (s == end || !isdigit((unsigned char)*s))
            return NUMBER_INVALID;
        const char *digits = s;
        while (s < end && isdigit((unsigned char)*s))
            s++;
        const char *last = s;
        while (last > digits && last[-1] == '0') /* 1.50 is 1.5 */
            last--;
        if (last - digits > MAX_FRACTION_DIGITS)
            return NUMBER_NOT_WHOLE;
        for (const char *d = digits; d < last; d++)
            out->fraction = out->fraction * 10 + (uint64_t)(*d - '0');
        out->fraction_digits = (unsigned)(last - digits);
    }
    *p = s;
    return NUMBER_OK;
}

/* whole.fraction * scale, when it is a whole number that fits. */
static number_status decimal_scale(const decimal *d, uint64_t scale, uint64_t *out)
{
    unsigned __int128 pow10 = 1;
    for (unsigned i = 0; i < d->fraction_digits; i++)
        pow10 *= 10;
    unsigned __int128 frac = (unsigned __int128)d->fraction * scale;
    if (frac % pow10 != 0)
        return NUMBER_NOT_WHOLE;
    unsigned __int128 total = (unsigned __int128)d->whole * scale + frac / pow10;
    if (total > UINT64_MAX)
        return NUMBER_OVERFLOW;
    *out = (uint64_t)total;
    return NUMBER_OK;
}

static const unit *find_unit(const unit *units, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(units[i].name) == len && strncasecmp(units[i].name, name, len) == 0)
            return &units[i];
    return NULL;
}

/* Parses NUMBER [UNIT]; an absent unit means `bare`. */
static number_status parse_quantity(const char *text, const unit *units, size_t n, uint64_t bare,
                                    uint64_t *out)
{
    const char *s = text, *end = text + strlen(text);
    trim(&s, &end);
    decimal d;
    number_status st = parse_decimal(&s, end, &d);
    if (st != NUMBER_OK)
        return st;
    uint64_t scale = bare;
    if (s < end) {
        const unit *u = find_unit(units, n, s, (size_t)(end - s));
        if (!u)
            return NUMBER_INVALID;
        scale = u->scale;
    }
    return decimal_scale(&d, scale, out);
}

static int quantity_error(number_status st, const char *what, const char *text,
                          const char *expected, const char *smallest, cx_error *err)
{
    char quoted[96];
    text_quote(text, quoted, sizeof quoted);
    switch (st) {
    case NUMBER_NEGATIVE:
        return cx_error_set(err, CX_EINVAL, "invalid %s %s: it cannot be negative", what, quoted);
    case NUMBER_OVERFLOW:
        return cx_error_set(err, CX_EINVAL, "invalid %s %s: the number is too large", what, quoted);
    case NUMBER_NOT_WHOLE:
        return cx_error_set(err, CX_EINVAL, "invalid %s %s: not a whole number of %s", what, quoted,
                            smallest);
    default:
        return cx_error_set(err, CX_EINVAL, "invalid %s %s: %s", what, quoted, expected);
    }
}

int units_parse_duration_ms(const char *text, uint64_t *out_ms, cx_error *err)
{
    uint64_t v = 0;
    number_status st = parse_quantity(text ? text : "", duration_units,
                                      sizeof duration_units / sizeof *duration_units, 1000, &v);
    if (st != NUMBER_OK)
        return quantity_error(st, "duration", text ? text : "", DURATION_EXPECTED, "milliseconds",
                              err);
    *out_ms = v;
    return 0;
}

int units_parse_size(const char *text, uint64_t *out_bytes, cx_error *err)
{
    uint64_t v = 0;
    number_status st = parse_quantity(text ? text : "", size_units,
                                      sizeof size_units / sizeof *size_units, 1, &v);
    if (st != NUMBER_OK)
        return quantity_error(st, "size", text ? text : "", SIZE_EXPECTED, "bytes", err);
    *out_bytes = v;
    return 0;
}

/* Picks the largest unit that divides the value exactly. */
static void format_exact(uint64_t value, const unit *units, size_t n, const char *zero, char *buf,
                         size_t size)
{
    if (value == 0) {
        snprintf(buf, size, "%s", zero);
        return;
    }
    for (size_t i = n; i-- > 0;)
        if (value % units[i].scale == 0) {
            snprintf(buf, size, "%" PRIu64 "%s", value / units[i].scale, units[i].name);
            return;
        }
}

void units_format_duration(uint64_t ms, char *buf, size_t size)
{
    static const unit shortest[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 24 * 3600 * 1000},
    };
    format_exact(ms, shortest, sizeof shortest / sizeof *shortest, "0s", buf, size);
}

void units_format_size(uint64_t bytes, char *buf, size_t size)
{
    static const unit shortest[] = {{"B", 1}, {"KB", KIB}, {"MB", MIB}, {"GB", GIB}, {"TB", TIB}};
    format_exact(bytes, shortest, sizeof shortest / sizeof *shortest, "0B", buf, size);
}

/* A plain count: digits only, up to INT64_MAX. */
static number_status parse_count(const char *s, const char *end, uint64_t *out)
{
    decimal d;
    const char *p = s;
    number_status st = parse_decimal(&p, end, &d);
    if (st != NUMBER_OK)
        return st;
    if (p != end || d.fraction_digits != 0)
        return NUMBER_INVALID;
    *out = d.whole;
    return NUMBER_OK;
}

static int change_error(const char *text, bool sizes, const char *why, cx_error *err)
{
    char quoted[96];
    text_quote(text, quoted, sizeof quoted);
    if (why)
        return cx_error_set(err, CX_EINVAL, "invalid change %s: %s", quoted, why);
    if (sizes)
        return cx_error_set(err, CX_EINVAL,
                            "invalid change %s: expected a size (512MB), a change (+512MB, -1GB) "
                            "or a percentage (+50%%, -25%%)", quoted);
    return cx_error_set(err, CX_EINVAL,
                        "invalid change %s: expected a number (3), a change (+1, -1) "
                        "or a percentage (+50%%, -25%%)", quoted);
}

/* The magnitude after an optional sign: a percentage, a size or a count. */
static int parse_magnitude(const char *s, const char *end, bool sizes, bool *percent,
                           uint64_t *out)
{
    *percent = end > s && end[-1] == '%';
    if (*percent)
        return parse_count(s, end - 1, out) == NUMBER_OK ? 0 : -1;
    if (!sizes)
        return parse_count(s, end, out) == NUMBER_OK ? 0 : -1;
    char buf[64];
    if ((size_t)(end - s) >= sizeof buf || s == end || !isdigit((unsigned char)*s))
        return -1;
    memcpy(buf, s, (size_t)(end - s));
    buf[end - s] = '\0';
    return units_parse_size(buf, out, NULL) == 0 ? 0 : -1;
}

int units_parse_change(const char *text, bool sizes, units_change *out, cx_error *err)
{
    const char *s = text ? text : "", *end = s + strlen(s);
    trim(&s, &end);
    int sign = 0;
    if (s < end && (*s == '+' || *s == '-'))
        sign = *s++ == '+' ? 1 : -1;
    bool percent = false;
    uint64_t magnitude = 0;
    if (parse_magnitude(s, end, sizes, &percent, &magnitude) != 0)
        return change_error(text ? text : "", sizes, NULL, err);
    if (percent && sign == 0)
        return change_error(text, sizes, "a percentage needs a sign: +50% or -50%", err);
    if (magnitude > INT64_MAX)
        return change_error(text, sizes, "the number is too large", err);
    if (percent && sign < 0 && magnitude > 100)
        return change_error(text, sizes, "cannot take away more than 100%", err);
    out->kind = percent ? UNITS_PERCENT : sign ? UNITS_DELTA : UNITS_ABSOLUTE;
    out->value = sign < 0 ? -(int64_t)magnitude : (int64_t)magnitude;
    return 0;
}

/* current + delta, clamped to [0, UINT64_MAX]. */
static uint64_t add_clamped(uint64_t current, bool negative, uint64_t magnitude)
{
    if (negative)
        return magnitude >= current ? 0 : current - magnitude;
    return magnitude > UINT64_MAX - current ? UINT64_MAX : current + magnitude;
}

uint64_t units_apply_change(uint64_t current, const units_change *change)
{
    bool negative = change->value < 0;
    uint64_t magnitude = negative ? (uint64_t)0 - (uint64_t)change->value : (uint64_t)change->value;
    switch (change->kind) {
    case UNITS_ABSOLUTE:
        return negative ? 0 : magnitude;
    case UNITS_DELTA:
        return add_clamped(current, negative, magnitude);
    case UNITS_PERCENT: {
        /* Rounded to nearest, so +50% of 1 instance is 2, not 1. */
        unsigned __int128 delta = ((unsigned __int128)current * magnitude + 50) / 100;
        return add_clamped(current, negative, delta > UINT64_MAX ? UINT64_MAX : (uint64_t)delta);
    }
    }
    return current;
}
