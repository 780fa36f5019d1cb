/* bench_clock.h — the monotonic clock every benchmark program times with,
 * in seconds. */
#ifndef TWIRL_BENCH_CLOCK_H
#define TWIRL_BENCH_CLOCK_H

#include <time.h>

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
