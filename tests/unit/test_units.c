/* Unit tests for core/units: durations, sizes and relative changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/units.h"

#define KIB UINT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define TIB (GIB * 1024)

static void test_durations_accepted(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t ms;
    } cases[] = {
        {"500ms", 500},    {"10s", 10000},        {"5m", 300000},       {"5min", 300000},
        {"1h", 3600000},   {"24h", 86400000},     {"7d", 604800000},    {"30", 30000},
        {"0", 0},          {"0ms", 0},            {"1.5s", 1500},       {"0.5m", 30000},
        {"1.50s", 1500},   {"2.000h", 7200000},   {" 10s ", 10000},     {"10S", 10000},
        {"5MIN", 300000},  {"007s", 7000},        {"0.001s", 1},        {"1.5", 1500},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint64_t ms = 12345;
        cx_error err = {0};
        assert_int_equal(units_parse_duration_ms(cases[i].text, &ms, &err), 0);
        assert_int_equal(ms, cases[i].ms);
    }
}

static void test_duration_error_lists_units(void **state)
{
    (void)state;
    uint64_t ms;
    cx_error err;
    assert_int_equal(units_parse_duration_ms("10x", &ms, &err), CX_EINVAL);
    assert_string_equal(err.msg, "invalid duration \"10x\": expected a number with ms, s, m, min, "
                                 "h or d (e.g. 500ms, 10s, 5min)");
}

static void test_durations_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "   ", "s", "10 s", "1 0s", "-5s", "+5s", "1e3s", "1.s", ".5s", "1..5s", "10ss",
        "10sec", "0x10", "1,5s", "5mins", "0.5ms", "0.0001s", "18446744073709551616",
        "99999999999999999999ms", "213503982335d", "1.0000000000000000001s", "10s\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t ms = 777;
        cx_error err = {0};
        int rc = units_parse_duration_ms(bad[i], &ms, &err);
        if (strcmp(bad[i], "10s\n") == 0) { /* surrounding whitespace is trimmed */
            assert_int_equal(rc, 0);
            continue;
        }
        assert_int_equal(rc, CX_EINVAL);
        assert_int_equal(ms, 777); /* untouched on error */
        assert_non_null(strstr(err.msg, "invalid duration"));
    }
}

static void test_duration_error_messages(void **state)
{
    (void)state;
    uint64_t ms;
    cx_error err;
    units_parse_duration_ms("-5s", &ms, &err);
    assert_string_equal(err.msg, "invalid duration \"-5s\": it cannot be negative");
    units_parse_duration_ms("0.5ms", &ms, &err);
    assert_string_equal(err.msg, "invalid duration \"0.5ms\": not a whole number of milliseconds");
    units_parse_duration_ms("99999999999999999999", &ms, &err);
    assert_non_null(strstr(err.msg, "too large"));
    assert_int_equal(units_parse_duration_ms(NULL, &ms, &err), CX_EINVAL);
    /* A hostile value is quoted on one line and cut short. */
    char longer[4096];
    memset(longer, '9', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    longer[100] = '\n';
    units_parse_duration_ms(longer, &ms, &err);
    assert_null(strchr(err.msg, '\n'));
    assert_true(strlen(err.msg) < 300);
}

static void test_duration_limits(void **state)
{
    (void)state;
    uint64_t ms;
    cx_error err;
    assert_int_equal(units_parse_duration_ms("18446744073709551615ms", &ms, &err), 0);
    assert_true(ms == UINT64_MAX);
    assert_int_equal(units_parse_duration_ms("18446744073709551616ms", &ms, &err), CX_EINVAL);
    assert_int_equal(units_parse_duration_ms("213503982334d", &ms, &err), 0);
    assert_int_equal(units_parse_duration_ms("213503982335d", &ms, &err), CX_EINVAL);
}

static void test_sizes_accepted(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t bytes;
    } cases[] = {
        {"512KB", 512 * KIB}, {"10MB", 10 * MIB}, {"1GB", GIB},       {"2TB", 2 * TIB},
        {"1500", 1500},       {"0", 0},           {"7B", 7},          {"1k", KIB},
        {"1K", KIB},          {"3M", 3 * MIB},    {"4g", 4 * GIB},    {"1KiB", KIB},
        {"2MiB", 2 * MIB},    {"1gib", GIB},      {"1mb", MIB},       {"1.5KB", 1536},
        {"0.5MB", MIB / 2},   {" 64MB ", 64 * MIB}, {"1t", TIB},      {"1TiB", TIB},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint64_t bytes = 1;
        cx_error err = {0};
        assert_int_equal(units_parse_size(cases[i].text, &bytes, &err), 0);
        assert_true(bytes == cases[i].bytes);
    }
}

static void test_sizes_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "MB", "10 MB", "-1MB", "10XB", "10PB", "1.5B", "0.1KB", "16777216TB",
        "18446744073709551616", "1e6", "10MBs", "1,024",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t bytes = 3;
        cx_error err = {0};
        assert_int_equal(units_parse_size(bad[i], &bytes, &err), CX_EINVAL);
        assert_int_equal(bytes, 3);
        assert_non_null(strstr(err.msg, "invalid size"));
    }
    uint64_t bytes;
    cx_error err;
    units_parse_size("10x", &bytes, &err);
    assert_string_equal(err.msg, "invalid size \"10x\": expected a number with B, KB, MB, GB or TB "
                                 "(e.g. 512KB, 10MB, 1GB)");
    units_parse_size("0.1KB", &bytes, &err);
    assert_string_equal(err.msg, "invalid size \"0.1KB\": not a whole number of bytes");
}

static void test_format_duration(void **state)
{
    (void)state;
    static const struct {
        uint64_t ms;
        const char *text;
    } cases[] = {
        {10000, "10s"},   {90000, "90s"},     {3600000, "1h"},   {0, "0s"},
        {1500, "1500ms"}, {86400000, "1d"},   {1800000, "30m"},  {604800000, "7d"},
        {1, "1ms"},       {90000000, "25h"},  {60000, "1m"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        units_format_duration(cases[i].ms, buf, sizeof buf);
        assert_string_equal(buf, cases[i].text);
    }
}

static void test_format_size(void **state)
{
    (void)state;
    static const struct {
        uint64_t bytes;
        const char *text;
    } cases[] = {
        {MIB, "1MB"},  {1500, "1500B"}, {0, "0B"},      {KIB, "1KB"},  {1536, "1536B"},
        {GIB, "1GB"},  {TIB, "1TB"},    {1024 * TIB, "1024TB"},       {64 * MIB, "64MB"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        units_format_size(cases[i].bytes, buf, sizeof buf);
        assert_string_equal(buf, cases[i].text);
    }
}

/* Whatever we print, we read back as the same value. */
static void test_format_parse_round_trip(void **state)
{
    (void)state;
    const uint64_t values[] = {0, 1, 999, 1000, 1001, 59999, 60000, 3599999, 3600000,
                               86400000, 86400001, UINT64_MAX / 2, UINT64_MAX};
    char buf[32];
    cx_error err;
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        uint64_t back;
        units_format_duration(values[i], buf, sizeof buf);
        assert_int_equal(units_parse_duration_ms(buf, &back, &err), 0);
        assert_true(back == values[i]);
        units_format_size(values[i], buf, sizeof buf);
        assert_int_equal(units_parse_size(buf, &back, &err), 0);
        assert_true(back == values[i]);
    }
}

static void test_change_parsing(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool sizes;
        int kind;
        int64_t value;
    } cases[] = {
        {"+1", false, UNITS_DELTA, 1},
        {"-1", false, UNITS_DELTA, -1},
        {"3", false, UNITS_ABSOLUTE, 3},
        {"0", false, UNITS_ABSOLUTE, 0},
        {"+512MB", true, UNITS_DELTA, 512 * 1024 * 1024},
        {"-1GB", true, UNITS_DELTA, -(int64_t)GIB},
        {"2GB", true, UNITS_ABSOLUTE, (int64_t)(2 * GIB)},
        {"+50%", false, UNITS_PERCENT, 50},
        {"-25%", false, UNITS_PERCENT, -25},
        {"+50%", true, UNITS_PERCENT, 50},
        {"-100%", false, UNITS_PERCENT, -100},
        {" +2 ", false, UNITS_DELTA, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        units_change c;
        cx_error err = {0};
        assert_int_equal(units_parse_change(cases[i].text, cases[i].sizes, &c, &err), 0);
        assert_int_equal(c.kind, cases[i].kind);
        assert_true(c.value == cases[i].value);
    }
}

static void test_change_refused(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool sizes;
    } bad[] = {
        {"", false},        {"+", false},      {"+-1", false},    {"++1", false},
        {"50%", false},     {"+x", false},     {"+1.5", false},   {"+512MB", false},
        {"-150%", false},   {"+ 1", false},    {"+%", false},     {"1 2", false},
        {"+9223372036854775808", false},       {"+1XB", true},    {"+ 1MB", true},
        {"+16777216TB", true},                 {"+50.5%", false},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        units_change c;
        cx_error err = {0};
        assert_int_equal(units_parse_change(bad[i].text, bad[i].sizes, &c, &err), CX_EINVAL);
        assert_non_null(strstr(err.msg, "invalid change"));
    }
    units_change c;
    cx_error err;
    units_parse_change("x", false, &c, &err);
    assert_string_equal(err.msg, "invalid change \"x\": expected a number (3), a change (+1, -1) "
                                 "or a percentage (+50%, -25%)");
    units_parse_change("50%", false, &c, &err);
    assert_non_null(strstr(err.msg, "needs a sign"));
}

static void test_change_apply(void **state)
{
    (void)state;
    units_change c = {UNITS_DELTA, 2};
    assert_int_equal(units_apply_change(3, &c), 5);
    c = (units_change){UNITS_DELTA, -5};
    assert_int_equal(units_apply_change(3, &c), 0); /* clamped at 0 */
    c = (units_change){UNITS_ABSOLUTE, 7};
    assert_int_equal(units_apply_change(3, &c), 7);
    c = (units_change){UNITS_PERCENT, 50};
    assert_int_equal(units_apply_change(4, &c), 6);
    assert_int_equal(units_apply_change(1, &c), 2); /* rounded to nearest */
    c = (units_change){UNITS_PERCENT, -25};
    assert_int_equal(units_apply_change(8, &c), 6);
    c = (units_change){UNITS_PERCENT, -100};
    assert_int_equal(units_apply_change(8, &c), 0);
    c = (units_change){UNITS_DELTA, INT64_MAX};
    assert_true(units_apply_change(UINT64_MAX - 1, &c) == UINT64_MAX); /* saturates */
    c = (units_change){UNITS_PERCENT, 1000};
    assert_true(units_apply_change(UINT64_MAX / 2, &c) == UINT64_MAX);
    c = (units_change){UNITS_DELTA, INT64_MIN};
    assert_int_equal(units_apply_change(5, &c), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations_accepted),
        cmocka_unit_test(test_duration_error_lists_units),
        cmocka_unit_test(test_durations_refused),
        cmocka_unit_test(test_duration_error_messages),
        cmocka_unit_test(test_duration_limits),
        cmocka_unit_test(test_sizes_accepted),
        cmocka_unit_test(test_sizes_refused),
        cmocka_unit_test(test_format_duration),
        cmocka_unit_test(test_format_size),
        cmocka_unit_test(test_format_parse_round_trip),
        cmocka_unit_test(test_change_parsing),
        cmocka_unit_test(test_change_refused),
        cmocka_unit_test(test_change_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
