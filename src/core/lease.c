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

/* ---- the voter's side ---- */

us_lease_grantee us_lease_grantee_new(void)
{
    return (us_lease_grantee){.granted_ms = -1, .holds_since_ms = -1};
}

us_lease_report us_lease_voter_report(const us_timing *t, us_lease_grantee *g, bool holds,
                                      uint64_t role_version, uint64_t version, int64_t now,
                                      int64_t started_ms)
{
    int64_t stale_after = us_lease_stale_after(t);
    us_lease_report r = {.age = -1, .v = version};
    if (!holds) {
        g->holds_since_ms = -1;
        g->revoke_unsaved = false;
    } else if (g->holds_since_ms < 0) {
        g->holds_since_ms = now;
    }
    if (g->revoked && version > g->revoked_version &&
        (!holds || role_version > g->revoked_version)) {
        /* Its roles were released, or given or renewed while a majority granted it, since: it
         * may earn a lease again; a role it keeps counts as newly known. */
        g->revoked = false;
        r.unrevoke = true;
        if (holds) /* a new revocation no sooner than US_LEASE_RENEW_HEARTBEATS from now */
            g->holds_since_ms = now;
    }
    if (now - started_ms < stale_after) /* granted before a restart? */
        return r;
    r.age = now - (g->granted_ms >= 0 ? g->granted_ms : started_ms);
    /* Revoke only a role we have known about for a few heartbeats: a voter that just caught up
     * (it was cut off itself, or its log lagged) must first give the holder's renewals the chance
     * to reach it. A healthy holder renews every heartbeat, so US_LEASE_RENEW_HEARTBEATS (the
     * chance a lifted revocation gives too) is enough; waiting stale_after instead delayed the
     * takeover by up to stale_after when the holder was cut off while this voter caught up. The
     * wait only spares false revocations: revoking is safe whenever the grant is stale. */
    if (r.age > stale_after && holds && !g->revoked &&
        now - g->holds_since_ms > US_LEASE_RENEW_HEARTBEATS * t->heartbeat_ms)
        r.revoke = true;
    r.stale = g->revoked && r.age > stale_after;
    return r;
}

int64_t us_lease_revoke_due(const us_timing *t, const us_lease_grantee *g, bool holds,
                            int64_t started_ms)
{
    if (!holds || g->revoked)
        return -1;
    int64_t stale_after = us_lease_stale_after(t);
    int64_t base = g->granted_ms >= 0 ? g->granted_ms : started_ms;
    /* The report's three conditions: past the restart window, the grant older than stale_after,
     * the role known for longer than US_LEASE_RENEW_HEARTBEATS heartbeats (a role first seen now
     * counts from now). */
    int64_t known = (int64_t)US_LEASE_RENEW_HEARTBEATS * t->heartbeat_ms;
    int64_t due = started_ms + stale_after;
    if (base + stale_after + 1 > due)
        due = base + stale_after + 1;
    if (g->holds_since_ms >= 0 && g->holds_since_ms + known + 1 > due)
        due = g->holds_since_ms + known + 1;
    return due;
}

void us_lease_revoke_saved(us_lease_grantee *g, us_lease_report *r, bool saved)
{
    if (!r->revoke)
        return;
    /* Announced (stale) only once durable: a voter that forgot a revocation it announced could
     * grant a holder the leader already counts as cut off. Until the write succeeds (it is tried
     * again with the next report) we grant this holder nothing and announce nothing. */
    g->revoked = saved;
    g->revoked_version = r->v;
    g->revoke_unsaved = !saved;
    r->stale = saved; /* a revocation is proposed only for a grant older than stale_after */
}

bool us_lease_may_grant(const us_lease_grantee *g, bool requested, bool lags, bool self_votes)
{
    return requested && !lags && !g->revoked && !g->revoke_unsaved && self_votes;
}

bool us_lease_grant(us_lease_grantee *g, bool requested, bool lags, bool self_votes, int64_t now)
{
    bool grant = us_lease_may_grant(g, requested, lags, self_votes);
    if (grant)
        g->granted_ms = now;
    return grant;
}

bool us_lease_lags(bool has_av, uint64_t av, uint64_t roles_v)
{
    return has_av && av < roles_v;
}

/* ---- the requester's side ---- */

us_lease_granter us_lease_granter_new(void)
{
    return (us_lease_granter){.t0 = -1};
}

void us_lease_granter_update(us_lease_granter *g, int64_t t0, uint64_t rv, uint64_t version)
{
    if (t0 <= g->t0)
        return;
    if (g->t0 >= 0 && g->v <= version) {
        g->has_c = true;
        g->t0c = g->t0;
        g->vc = g->v;
    }
    g->t0 = t0;
    g->v = rv;
}

int64_t us_lease_granter_t0(const us_lease_granter *g, uint64_t version)
{
    return g->v <= version ? g->t0 : g->has_c && g->vc <= version ? g->t0c : -1;
}

int64_t us_lease_until(const us_timing *t, const us_lease_granter *grants, int n, uint64_t version,
                       int64_t now, int64_t lease_until)
{
    int64_t t0[US_MAX_NODES];
    int m = 0;
    for (int i = 0; i < n && m < US_MAX_NODES; i++)
        t0[m++] = grants[i].self ? now : us_lease_granter_t0(&grants[i], version);
    int64_t q = us_lease_majority_time(t0, m);
    if (q < 0 || q + t->lease_ms <= lease_until)
        return lease_until;
    return q + t->lease_ms;
}

int us_lease_reask(const us_lease_granter *grants, int n, int64_t round_ms, bool *reask)
{
    int granted = 0, missing = 0;
    for (int i = 0; i < n; i++) {
        reask[i] = !grants[i].self && grants[i].t0 < round_ms;
        granted += !reask[i];
        missing += reask[i];
    }
    if (granted >= n / 2 + 1)
        for (int i = 0; i < n; i++)
            reask[i] = false;
    return granted >= n / 2 + 1 ? 0 : missing;
}

/* ---- the leader's side ---- */

/* Among the voters' reports on a holder: how many say stale under its current role, and how
 * many fresh ones (a grant at most `window` old, heard at most `window` ago). A stale report made
 * before the holder got its current role says nothing about it; a stale report stays true (the
 * voter revoked), a fresh one counts only while recent. */
static void count_reports(const us_lease_seen *seen, int n_seen, uint64_t role_version, int64_t now,
                          int64_t window, int *stale, int *fresh)
{
    *stale = *fresh = 0;
    for (int i = 0; i < n_seen; i++) {
        const us_lease_seen *r = &seen[i];
        if (r->rx_ms < 0)
            continue;
        *stale += r->stale && r->v >= role_version;
        *fresh += r->age >= 0 && r->age <= window && now - r->rx_ms <= window;
    }
}

us_lease_state us_lease_judge_holder(const us_timing *t, int voters, bool holder_votes,
                                     const us_lease_seen *seen, int n_seen, uint64_t role_version,
                                     int64_t now)
{
    int stale, fresh;
    count_reports(seen, n_seen, role_version, now, t->lease_ms, &stale, &fresh);
    return us_lease_judge(voters, holder_votes, stale, fresh);
}

bool us_lease_renewal_due(const us_timing *t, int voters, bool holder_votes,
                          const us_lease_seen *seen, int n_seen, uint64_t role_version,
                          int64_t heard_ms, int64_t now)
{
    int64_t recent = (int64_t)US_LEASE_RENEW_HEARTBEATS * t->heartbeat_ms;
    if (heard_ms < 0 || now - heard_ms > recent)
        return false;
    int stale, fresh;
    count_reports(seen, n_seen, role_version, now, recent, &stale, &fresh);
    return stale > 0 && fresh + (holder_votes ? 1 : 0) >= voters / 2 + 1;
}

int us_timing_profile(const char *name, us_timing *out)
{
    static const us_timing profiles[] = {
        {"default", 100, 1000, 600, 300, 2, 50, 300, 1000, 200},
        {"fast", 25, 300, 200, 100, 2, 12, 100, 300, 60},
    };
    for (size_t i = 0; i < sizeof profiles / sizeof profiles[0]; i++) {
        if (strcmp(name, profiles[i].name) == 0) {
            *out = profiles[i];
            return 0;
        }
    }
    return -1;
}
