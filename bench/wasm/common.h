/* Shared by the benchmark programs: a deterministic pseudo-random source and
 * the export macro. The programs use no libc, so the same source builds for
 * wasm32 (clang) and natively (gcc). */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#ifndef EXPORT
#define EXPORT __attribute__((visibility("default")))
#endif

typedef unsigned int u32;
typedef unsigned long long u64;

static u32 lcg_state = 12345u;

static inline u32 lcg_next(void)
{
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state;
}

#endif
