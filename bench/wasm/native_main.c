/* Native harness: runs the program's run() `rounds` times (argv[1], default
 * 1) and prints the result and the median time of one run in ms. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int run(void);

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    if (rounds < 1 || rounds > 1000)
        rounds = 1;
    double times[1000];
    int result = 0;
    for (int i = 0; i < rounds; i++) {
        double start = now_ms();
        result = run();
        times[i] = now_ms() - start;
    }
    qsort(times, (size_t)rounds, sizeof times[0], compare);
    printf("%d %.3f\n", result, times[rounds / 2]);
    return 0;
}
