/* lease.c — see lease.h. */
#include "core/lease.h"

#include <stdlib.h>
#include <string.h>

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

int us_timing_profile(const char *name, us_timing *out)
{
    static const us_timing profiles[] = {
        {"default", 100, 1000, 600, 300, 2, 50, 300, 1000, 200},
        {"fast", 25, 300, 200, 100, 2, 25, 100, 300, 60},
    };
    for (size_t i = 0; i < sizeof profiles / sizeof profiles[0]; i++) {
        if (strcmp(name, profiles[i].name) == 0) {
            *out = profiles[i];
            return 0;
        }
    }
    return -1;
}
