/* clock.c — see clock.h. */
#include "lib/clock.h"

#include <time.h>

int64_t us_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t us_now_ms(void)
{
    return us_now_ns() / 1000000;
}

int64_t us_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}
