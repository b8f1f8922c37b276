/* lease.c — see lease.h. */
#include "lease.h"

#include <stdlib.h>
#include <time.h>

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int64_t us_lease_quorum_time(const int64_t *ack_ms, int n_voters)
{
    if (n_voters <= 0 || n_voters > US_MAX_NODES)
        return -1;
    int64_t sorted[US_MAX_NODES];
    for (int i = 0; i < n_voters; i++)
        sorted[i] = ack_ms[i];
    qsort(sorted, (size_t)n_voters, sizeof sorted[0], cmp_desc);
    return sorted[n_voters / 2]; /* the majority-th freshest acknowledgement */
}

bool us_lease_may_grant(const us_timing *t, int64_t quorum_ms, int64_t now_ms)
{
    return quorum_ms >= 0 && now_ms - quorum_ms <= t->grant_window_ms;
}

static int64_t stretch(const us_timing *t, int64_t ms)
{
    return ms * (100 + t->drift_pct) / 100;
}

int64_t us_lease_granted_until(const us_timing *t, int64_t recv_ms)
{
    return recv_ms + stretch(t, t->lease_ms) + t->margin_ms;
}

int64_t us_lease_takeover_wait(const us_timing *t)
{
    return stretch(t, (int64_t)t->grant_window_ms + t->lease_ms) + t->margin_ms;
}

us_lease_state us_lease_state_of(const us_timing *t, int64_t granted_until_ms,
                                 int64_t leader_since_ms, int64_t now_ms)
{
    if (granted_until_ms > now_ms)
        return US_LEASE_VALID;
    if (now_ms < leader_since_ms + us_lease_takeover_wait(t))
        return US_LEASE_UNKNOWN;
    return US_LEASE_EXPIRED;
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
