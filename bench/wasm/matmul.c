/* Dense matrix multiply in double precision: float loads, mul, add. */
#include "common.h"

#define N 128
static double a[N * N], b[N * N], c[N * N];

EXPORT int run(void)
{
    for (int i = 0; i < N * N; i++) {
        a[i] = (double)(lcg_next() % 1000) / 100.0;
        b[i] = (double)(lcg_next() % 1000) / 100.0;
    }
    for (int round = 0; round < 4; round++)
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                double sum = 0;
                for (int k = 0; k < N; k++)
                    sum += a[i * N + k] * b[k * N + j];
                c[i * N + j] = sum;
            }
    double total = 0;
    for (int i = 0; i < N * N; i++)
        total += c[i];
    return (int)(total / 1000.0);
}
