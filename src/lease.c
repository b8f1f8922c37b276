/* lease.c — see lease.h. */
#include "lease.h"

#include <stdlib.h>
#include <time.h>

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int64_t us_lease_majority_time(const int64_t *t, int n)
{
    if (n <= 0 || n > US_MAX_NODES)
        return -1;
    int64_t sorted[US_MAX_NODES];
    for (int i = 0; i < n; i++)
        sorted[i] = t[i];
    qsort(sorted, (size_t)n, sizeof sorted[0], cmp_desc);
    return sorted[n / 2]; /* the majority-th freshest */
}

int64_t us_lease_stale_after(const us_timing *t)
{
    return (int64_t)t->lease_ms * (100 + 2 * t->drift_pct) / 100 + t->margin_ms;
}

us_lease_state us_lease_judge(int voters, bool holder_votes, int stale, int fresh)
{
    int majority = voters / 2 + 1;
    if (stale >= majority)
        return US_LEASE_EXPIRED;
    if (fresh + (holder_votes ? 1 : 0) >= majority)
        return US_LEASE_VALID;
    return US_LEASE_UNKNOWN;
}

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
