/* Unit tests for the wasm decoder and validator: LEB128 edge cases and
 * small hand-written modules, valid, malformed (CX_EPARSE) and invalid
 * (CX_EINVAL). The spec test suite (tests/conformance) covers the rest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "wasm/module.h"

static wasm_features features_2_0(void)
{
    return (wasm_features){true, true, true, true, true, true};
}

static wasm_features features_1_0(void)
{
    return (wasm_features){.mutable_globals = true};
}

/* ---- LEB128 ---------------------------------------------------------------- */

static int read_u32(const uint8_t *bytes, size_t len, uint32_t *out, size_t *used)
{
    wasm_reader r = {bytes, 0, len};
    cx_error err = {0};
    int rc = wasm_read_u32(&r, out, &err);
    *used = r.pos;
    return rc;
}

static void test_leb_u32(void **state)
{
    (void)state;
    static const struct {
        uint8_t bytes[6];
        size_t len;
        int rc;
        uint32_t value;
    } cases[] = {
        {{0x00}, 1, 0, 0},
        {{0x7f}, 1, 0, 127},
        {{0x80, 0x01}, 2, 0, 128},
        {{0xe5, 0x8e, 0x26}, 3, 0, 624485},
        {{0x80, 0x80, 0x80, 0x80, 0x00}, 5, 0, 0},          /* padded zero: allowed */
        {{0xff, 0xff, 0xff, 0xff, 0x0f}, 5, 0, UINT32_MAX}, /* largest */
        {{0xff, 0xff, 0xff, 0xff, 0x1f}, 5, CX_EPARSE, 0},  /* unused bit set */
        {{0xff, 0xff, 0xff, 0xff, 0x4f}, 5, CX_EPARSE, 0},
        {{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 6, CX_EPARSE, 0}, /* too long */
        {{0x80}, 1, CX_EPARSE, 0},                               /* unexpected end */
        {{0}, 0, CX_EPARSE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint32_t v = 0;
        size_t used;
        assert_int_equal(read_u32(cases[i].bytes, cases[i].len, &v, &used), cases[i].rc);
        if (cases[i].rc == 0) {
            assert_int_equal(v, cases[i].value);
            assert_int_equal(used, cases[i].len);
        }
    }
}

static void test_leb_signed(void **state)
{
    (void)state;
    cx_error err = {0};
    int32_t v32;
    int64_t v64;
    {
        const uint8_t b[] = {0x7f}; /* -1 */
        wasm_reader r = {b, 0, sizeof b};
        assert_int_equal(wasm_read_s32(&r, &v32, &err), 0);
        assert_int_equal(v32, -1);
    }
    {
        const uint8_t b[] = {0x80, 0x80, 0x80, 0x80, 0x78}; /* INT32_MIN */
        wasm_reader r = {b, 0, sizeof b};
        assert_int_equal(wasm_read_s32(&r, &v32, &err), 0);
        assert_int_equal(v32, INT32_MIN);
    }
    {
        const uint8_t b[] = {0xff, 0xff, 0xff, 0xff, 0x07}; /* INT32_MAX */
        wasm_reader r = {b, 0, sizeof b};
        assert_int_equal(wasm_read_s32(&r, &v32, &err), 0);
        assert_int_equal(v32, INT32_MAX);
    }
    {
        /* Unused bits not a sign extension. */
        const uint8_t b[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
        wasm_reader r = {b, 0, sizeof b};
        assert_int_equal(wasm_read_s32(&r, &v32, &err), CX_EPARSE);
        assert_non_null(strstr(err.msg, "integer too large"));
    }
    {
        const uint8_t b[] = {0x80, 0x80, 0x80, 0x80, 0x70};
        wasm_reader r = {b, 0, sizeof b};
        assert_int_equal(wasm_read_s32(&r, &v32, &err), CX_EPARSE);
    }
    {
        const uint8_t b[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
        wasm_reader r = {b, 0, sizeof b};
        assert_int_equal(wasm_read_s64(&r, &v64, &err), 0);
        assert_int_equal(v64, -1);
    }
    {
        const uint8_t b[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7e};
        wasm_reader r = {b, 0, sizeof b};
        assert_int_equal(wasm_read_s64(&r, &v64, &err), CX_EPARSE);
    }
    {
        const uint8_t b[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
        wasm_reader r = {b, 0, sizeof b};
        assert_int_equal(wasm_read_s64(&r, &v64, &err), CX_EPARSE);
        assert_non_null(strstr(err.msg, "integer representation too long"));
    }
    {
        /* s33: the empty block type and a large type index. */
        const uint8_t b[] = {0x40, 0xff, 0xff, 0xff, 0xff, 0x0f};
        wasm_reader r = {b, 0, sizeof b};
        int64_t bt;
        assert_int_equal(wasm_read_s33(&r, &bt, &err), 0);
        assert_int_equal(bt, WASM_BLOCKTYPE_EMPTY);
        assert_int_equal(wasm_read_s33(&r, &bt, &err), 0);
        assert_int_equal(bt, INT64_C(0xffffffff));
    }
}

static void test_names_utf8(void **state)
{
    (void)state;
    cx_error err = {0};
    const char *s;
    uint32_t len;
    {
        const uint8_t b[] = {0x03, 'a', 0xc3, 0xa9};
        wasm_reader r = {b, 0, sizeof b};
        assert_int_equal(wasm_read_name(&r, &s, &len, &err), 0);
        assert_int_equal(len, 3);
    }
    static const uint8_t bad[][5] = {
        {0x02, 0xc0, 0x80},       /* overlong */
        {0x03, 0xed, 0xa0, 0x80}, /* surrogate */
        {0x01, 0xff},
        {0x04, 0xf4, 0x90, 0x80, 0x80}, /* above U+10FFFF */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        wasm_reader r = {bad[i], 0, (size_t)bad[i][0] + 1};
        assert_int_equal(wasm_read_name(&r, &s, &len, &err), CX_EPARSE);
        assert_non_null(strstr(err.msg, "malformed UTF-8 encoding"));
    }
    const uint8_t short_name[] = {0x05, 'a'};
    wasm_reader r = {short_name, 0, sizeof short_name};
    assert_int_equal(wasm_read_name(&r, &s, &len, &err), CX_EPARSE);
}

/* ---- modules ------------------------------------------------------------ */

#define HEADER 0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00

/* Decodes then validates; returns 0, CX_EPARSE or CX_EINVAL. */
static int check(const uint8_t *bytes, size_t len, const wasm_features *f, cx_error *err)
{
    wasm_module_def *def = wasm_decode(bytes, len, f, err);
    if (!def)
        return err->code;
    int rc = wasm_validate(def, err);
    wasm_module_def_free(def);
    return rc;
}

#define CHECK(f, rc, ...)                                                                     \
    do {                                                                                      \
        const uint8_t bytes_[] = {__VA_ARGS__};                                               \
        cx_error err_ = {0};                                                                  \
        wasm_features f_ = (f);                                                               \
        int got_ = check(bytes_, sizeof bytes_, &f_, &err_);                                  \
        if (got_ != (rc))                                                                     \
            print_error("line %d: got %d (%s), want %d\n", __LINE__, got_, err_.msg, (rc));   \
        assert_int_equal(got_, (rc));                                                         \
    } while (0)

static void test_module_valid(void **state)
{
    (void)state;
    CHECK(features_2_0(), 0, HEADER);
    /* (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add) */
    CHECK(features_2_0(), 0, HEADER,
          0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, /* type */
          0x03, 0x02, 0x01, 0x00,                               /* function */
          0x07, 0x07, 0x01, 0x03, 'a', 'd', 'd', 0x00, 0x00,    /* export */
          0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b);
    /* unreachable makes the stack polymorphic: (result i32) unreachable i32.add */
    CHECK(features_2_0(), 0, HEADER, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03, 0x02,
          0x01, 0x00, 0x0a, 0x06, 0x01, 0x04, 0x00, 0x00, 0x6a, 0x0b);
    /* a custom section before the type section, and a broken name section */
    CHECK(features_2_0(), 0, HEADER, 0x00, 0x03, 0x01, 'x', 0xff,
          0x00, 0x07, 0x04, 'n', 'a', 'm', 'e', 0x01, 0x7f);
}

static void test_module_malformed(void **state)
{
    (void)state;
    CHECK(features_2_0(), CX_EPARSE, 0x00, 0x61, 0x73);                       /* short magic */
    CHECK(features_2_0(), CX_EPARSE, 0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00);
    CHECK(features_2_0(), CX_EPARSE, HEADER, 0x0d, 0x00);                     /* section id */
    CHECK(features_1_0(), CX_EPARSE, HEADER, 0x0c, 0x01, 0x00);               /* data count in 1.0 */
    CHECK(features_2_0(), CX_EPARSE, HEADER, 0x01, 0x05, 0x00);               /* size mismatch */
    CHECK(features_2_0(), CX_EPARSE, HEADER, 0x01, 0x01, 0x00, 0x01, 0x01, 0x00); /* order */
    /* function section without code section */
    CHECK(features_2_0(), CX_EPARSE, HEADER, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
          0x01, 0x00);
    /* illegal opcode 0xff in a body */
    CHECK(features_2_0(), CX_EPARSE, HEADER, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
          0x01, 0x00, 0x0a, 0x05, 0x01, 0x03, 0x00, 0xff, 0x0b);
    /* body without its final end */
    CHECK(features_2_0(), CX_EPARSE, HEADER, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
          0x01, 0x00, 0x0a, 0x04, 0x01, 0x02, 0x00, 0x01);
    /* memory.size with a non-zero reserved byte */
    CHECK(features_2_0(), CX_EPARSE, HEADER, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
          0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x0a, 0x07, 0x01, 0x05, 0x00, 0x3f, 0x01,
          0x1a, 0x0b);
    /* sign extension in 1.0 */
    CHECK(features_1_0(), CX_EPARSE, HEADER, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03,
          0x02, 0x01, 0x00, 0x0a, 0x07, 0x01, 0x05, 0x00, 0x41, 0x00, 0xc0, 0x0b);
    /* too many locals */
    CHECK(features_2_0(), CX_EPARSE, HEADER, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
          0x01, 0x00, 0x0a, 0x0c, 0x01, 0x0a, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f, 0x01,
          0x7e, 0x0b);
    /* global mutability 2 */
    CHECK(features_2_0(), CX_EPARSE, HEADER, 0x06, 0x06, 0x01, 0x7f, 0x02, 0x41, 0x00, 0x0b);
    /* a vector count far beyond the section */
    CHECK(features_2_0(), CX_EPARSE, HEADER, 0x01, 0x05, 0xff, 0xff, 0xff, 0xff, 0x0f);
}

static void test_module_invalid(void **state)
{
    (void)state;
    /* (result i32) with an empty body */
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03,
          0x02, 0x01, 0x00, 0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b);
    /* i32.add of an i32 and an i64 */
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03,
          0x02, 0x01, 0x00, 0x0a, 0x09, 0x01, 0x07, 0x00, 0x41, 0x00, 0x42, 0x00, 0x6a, 0x0b);
    /* br 1 out of the function */
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
          0x01, 0x00, 0x0a, 0x06, 0x01, 0x04, 0x00, 0x0c, 0x01, 0x0b);
    /* local.get 0 without locals */
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
          0x01, 0x00, 0x0a, 0x07, 0x01, 0x05, 0x00, 0x20, 0x00, 0x1a, 0x0b);
    /* function of an unknown type */
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x03, 0x02, 0x01, 0x05, 0x0a, 0x04, 0x01, 0x02,
          0x00, 0x0b);
    /* memory of 65537 pages; two memories */
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x05, 0x05, 0x01, 0x00, 0x81, 0x80, 0x04);
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x05, 0x05, 0x02, 0x00, 0x01, 0x00, 0x01);
    /* table min > max */
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x04, 0x05, 0x01, 0x70, 0x01, 0x02, 0x01);
    /* duplicate export name */
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x09, 0x02,
          0x01, 'm', 0x02, 0x00, 0x01, 'm', 0x02, 0x00);
    /* global.set of an immutable global */
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
          0x01, 0x00, 0x06, 0x06, 0x01, 0x7f, 0x00, 0x41, 0x00, 0x0b, 0x0a, 0x08, 0x01, 0x06,
          0x00, 0x41, 0x00, 0x24, 0x00, 0x0b);
    /* load with alignment 2^3 for i32 */
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
          0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x0a, 0x0a, 0x01, 0x08, 0x00, 0x41, 0x00,
          0x28, 0x03, 0x00, 0x1a, 0x0b);
    /* ref.func of a function not declared anywhere */
    CHECK(features_2_0(), CX_EINVAL, HEADER, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
          0x01, 0x00, 0x0a, 0x07, 0x01, 0x05, 0x00, 0xd2, 0x00, 0x1a, 0x0b);
    /* multiple results without multi-value (1.0) */
    CHECK(features_1_0(), CX_EINVAL, HEADER, 0x01, 0x06, 0x01, 0x60, 0x00, 0x02, 0x7f, 0x7f);
}

/* Every truncation of a valid module must be refused, never crash. */
static void test_truncations_refused(void **state)
{
    (void)state;
    const uint8_t module[] = {HEADER,
                              0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f,
                              0x03, 0x02, 0x01, 0x00,
                              0x07, 0x07, 0x01, 0x03, 'a', 'd', 'd', 0x00, 0x00,
                              0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b};
    wasm_features f = features_2_0();
    for (size_t len = 0; len < sizeof module; len++) {
        cx_error err = {0};
        int rc = check(module, len, &f, &err);
        /* Only the header alone and header + type section are whole modules
         * (later prefixes have functions without code). */
        assert_int_equal(rc, len == 8 || len == 17 ? 0 : CX_EPARSE);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leb_u32),
        cmocka_unit_test(test_leb_signed),
        cmocka_unit_test(test_names_utf8),
        cmocka_unit_test(test_module_valid),
        cmocka_unit_test(test_module_malformed),
        cmocka_unit_test(test_module_invalid),
        cmocka_unit_test(test_truncations_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
