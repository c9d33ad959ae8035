/* Helpers the memory benchmarks share (store_bench.c and recall.c are one
 * program, memory_bench): clocks, percentiles, a private temporary
 * directory, and the entry point of the recall subcommand. */
#ifndef CAXTON_BENCH_MEMORY_COMMON_H
#define CAXTON_BENCH_MEMORY_COMMON_H

#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#include "memory/memstore.h"

/* memory_bench recall [--set PATH] [--dir DIR] [--verbose] */
int recall_main(int argc, char **argv);

static inline double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* splitmix64: fast, and the same sequence on every machine. */
static inline uint64_t bench_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double bench_uniform(uint64_t *state)
{
    return (double)(bench_random(state) >> 11) / 9007199254740992.0;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank percentile of n samples (sorts them in place). */
static inline double bench_percentile(double *samples, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(samples, n, sizeof *samples, bench_cmp_double);
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    return samples[rank - 1];
}

/* Creates DIR/caxton-memory-bench.XXXXXX (DIR: the flag, else $TMPDIR, else
 * /tmp) and writes its path to out. */
static inline int bench_make_dir(const char *base, char *out, size_t size)
{
    if (!base || !*base)
        base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    int n = snprintf(out, size, "%s/caxton-memory-bench.XXXXXX", base);
    if (n < 0 || (size_t)n >= size || !mkdtemp(out)) {
        fprintf(stderr, "memory_bench: cannot create a temporary directory under %s\n", base);
        return -1;
    }
    return 0;
}

static inline int bench_remove_entry(const char *path, const struct stat *sb, int flag,
                                     struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Removes the directory bench_make_dir made, with everything in it. */
static inline void bench_remove_dir(const char *dir)
{
    if (dir && *dir)
        nftw(dir, bench_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* "ext4", "tmpfs"... for the report: fsync figures mean nothing on tmpfs. */
static inline const char *bench_fs_name(const char *path)
{
    struct statfs sf;
    if (statfs(path, &sf) != 0)
        return "unknown";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53ul: return "ext4";
    case 0x01021994ul: return "tmpfs";
    case 0x58465342ul: return "xfs";
    case 0x9123683Eul: return "btrfs";
    case 0x794c7630ul: return "overlayfs";
    case 0x2fc12fc1ul: return "zfs";
    case 0x6969ul: return "nfs";
    default: return "other";
    }
}

/* An agent of workspace "bench": what the memory_* tools run as. */
static inline mem_caller bench_caller(const char *workspace)
{
    mem_caller c = {.agent = "bench-agent", .enabled = true, .scope = MEM_SCOPE_WORKSPACE,
                    .workspace = workspace, .global_write = false, .max_entries = 0};
    return c;
}

#endif
