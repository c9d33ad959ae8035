/* Quicksort of 300,000 integers: compares, swaps, recursion. */
#include "common.h"

#define COUNT 300000
static int values[COUNT];

static void sort(int *v, int lo, int hi)
{
    while (lo < hi) {
        int pivot = v[lo + (hi - lo) / 2], i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                int t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (j - lo < hi - i) {
            sort(v, lo, j);
            lo = i;
        } else {
            sort(v, i, hi);
            hi = j;
        }
    }
}

EXPORT int run(void)
{
    for (int i = 0; i < COUNT; i++)
        values[i] = (int)(lcg_next() >> 1);
    sort(values, 0, COUNT - 1);
    u32 check = 0;
    for (int i = 0; i < COUNT; i += 97)
        check = check * 31u + (u32)values[i];
    for (int i = 1; i < COUNT; i++)
        if (values[i - 1] > values[i])
            return -1;
    return (int)check;
}
