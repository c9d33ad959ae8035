/* Recursive Fibonacci: calls and integer adds. */
#include "common.h"

static int fib(int n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

EXPORT int run(void)
{
    return fib(30);
}
