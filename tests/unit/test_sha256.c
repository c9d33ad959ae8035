/* SHA-256 against the FIPS 180-4 / NIST example vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/sha256.h"
#include "core/util.h"

static void expect_digest(const void *data, size_t len, const char *hex)
{
    uint8_t digest[SHA256_DIGEST_SIZE];
    char out[2 * SHA256_DIGEST_SIZE + 1];
    sha256(data, len, digest);
    hex_encode(digest, sizeof digest, out);
    assert_string_equal(out, hex);
}

static void test_empty(void **state)
{
    (void)state;
    expect_digest("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_abc(void **state)
{
    (void)state;
    expect_digest("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_two_blocks(void **state)
{
    (void)state;
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect_digest(msg, strlen(msg),
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_million_a_incremental(void **state)
{
    (void)state;
    sha256_ctx ctx;
    uint8_t digest[SHA256_DIGEST_SIZE];
    char out[65];
    char chunk[1000];
    memset(chunk, 'a', sizeof chunk);
    sha256_init(&ctx);
    for (int i = 0; i < 1000; i++)
        sha256_update(&ctx, chunk, sizeof chunk);
    sha256_final(&ctx, digest);
    hex_encode(digest, sizeof digest, out);
    assert_string_equal(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_boundary_lengths(void **state)
{
    (void)state;
    /* 55, 56 and 64 bytes straddle the padding boundary. */
    char buf[64];
    memset(buf, 'x', sizeof buf);
    uint8_t a[32], b[32];
    for (size_t len = 54; len <= 64; len++) {
        sha256_ctx ctx;
        sha256(buf, len, a);
        sha256_init(&ctx);
        for (size_t i = 0; i < len; i++)
            sha256_update(&ctx, buf + i, 1);
        sha256_final(&ctx, b);
        assert_memory_equal(a, b, 32);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_abc),
        cmocka_unit_test(test_two_blocks),
        cmocka_unit_test(test_million_a_incremental),
        cmocka_unit_test(test_boundary_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
