/* A mixed integer/float workload: a Mandelbrot set count plus integer
 * hashing of the escape times. */
#include "common.h"

EXPORT int run(void)
{
    u32 hash = 2166136261u;
    int inside = 0;
    for (int y = 0; y < 240; y++) {
        for (int x = 0; x < 320; x++) {
            double cr = -2.0 + x * (3.0 / 320), ci = -1.2 + y * (2.4 / 240);
            double zr = 0, zi = 0;
            int n = 0;
            while (n < 200 && zr * zr + zi * zi <= 4.0) {
                double t = zr * zr - zi * zi + cr;
                zi = 2 * zr * zi + ci;
                zr = t;
                n++;
            }
            inside += n == 200;
            hash = (hash ^ (u32)n) * 16777619u;
        }
    }
    return (int)(hash ^ (u32)inside);
}
