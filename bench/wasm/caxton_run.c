/* Runs a benchmark module's exported run() in Caxton's engine.
 *
 *   caxton_run MODULE.wasm [ROUNDS] [--fuel]
 *       prints "<result> <median ms of one run>"; with --fuel the store
 *       meters fuel (a budget no program reaches), to price metering.
 *   caxton_run MODULE.wasm --instantiate N
 *       prints the median time of one instantiation in microseconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "wasm/wasm.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *times, int n)
{
    qsort(times, (size_t)n, sizeof times[0], compare);
    return times[n / 2];
}

static int instantiate_bench(wasm_module *m, int rounds)
{
    double *times = calloc((size_t)rounds, sizeof *times);
    if (!times)
        return 1;
    for (int i = 0; i < rounds; i++) {
        wasm_store *s = wasm_store_new(NULL);
        wasm_trap trap;
        cx_error err;
        double start = now_ms();
        wasm_instance *inst = wasm_instantiate(s, m, NULL, 0, &trap, &err);
        times[i] = (now_ms() - start) * 1000.0;
        wasm_store_free(s);
        if (!inst) {
            fprintf(stderr, "instantiate: %s\n", err.msg);
            free(times);
            return 1;
        }
    }
    printf("%.2f\n", median(times, rounds));
    free(times);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: caxton_run MODULE.wasm [ROUNDS] [--fuel] | --instantiate N\n");
        return 2;
    }
    char *bytes;
    size_t len;
    cx_error err;
    if (fs_read_file(argv[1], 64u << 20, &bytes, &len, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    wasm_features features = wasm_features_2_0();
    wasm_module *m = wasm_module_new((const uint8_t *)bytes, len, &features, &err);
    free(bytes);
    if (!m) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int rounds = 1, rc = 0;
    bool fuel = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--fuel") == 0)
            fuel = true;
        else if (strcmp(argv[i], "--instantiate") == 0 && i + 1 < argc) {
            rc = instantiate_bench(m, atoi(argv[i + 1]));
            wasm_module_unref(m);
            return rc;
        } else
            rounds = atoi(argv[i]);
    }
    if (rounds < 1 || rounds > 1000)
        rounds = 1;
    double times[1000];
    uint32_t result = 0;
    for (int i = 0; i < rounds && rc == 0; i++) {
        wasm_store *s = wasm_store_new(NULL);
        wasm_trap trap;
        wasm_instance *inst = wasm_instantiate(s, m, NULL, 0, &trap, &err);
        wasm_extern run;
        if (!inst || !wasm_instance_export(inst, "run", &run) || run.kind != WASM_EXTERN_FUNC) {
            fprintf(stderr, "cannot instantiate or find run(): %s\n", inst ? "no export" : err.msg);
            rc = 1;
        } else {
            if (fuel)
                wasm_store_set_fuel(s, UINT64_MAX / 2);
            wasm_value out;
            double start = now_ms();
            if (wasm_call(s, run.of.func, NULL, 0, &out, 1, &trap) < 0) {
                fprintf(stderr, "trap: %s\n", trap.message);
                rc = 1;
            }
            times[i] = now_ms() - start;
            result = out.of.i32;
        }
        wasm_store_free(s);
    }
    if (rc == 0)
        printf("%d %.3f\n", (int)result, median(times, rounds));
    wasm_module_unref(m);
    return rc;
}
