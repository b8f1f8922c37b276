/* test_lease.c — the lease arithmetic of lease.h: quorum time, the grant window, the numbers of
 * the default and fast profiles (docs/timing.md), the leader's view of a lease, and two safety
 * properties checked on random schedules with clocks running at different rates:
 *  - a node's own lease (t0 + L on its clock) ends, in real time, before the leader's record of
 *    it (granted_until on the leader's clock) expires;
 *  - a lease granted by a deposed leader ends before its successor stops calling leases it has
 *    no record of 'unknown'.
 * Each property is also run against a profile without drift allowance and margin, which must
 * fail: so the simulation can see a violation when there is one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "lease.h"

static us_timing profile(const char *name)
{
    us_timing t;
    memset(&t, 0, sizeof t);
    assert_int_equal(us_timing_profile(name, &t), 0);
    return t;
}

/* ---- us_lease_quorum_time ---- */

static void test_quorum_time_small(void **state)
{
    (void)state;
    int64_t one[] = {500};
    assert_int_equal(us_lease_quorum_time(one, 1), 500);
    int64_t one_never[] = {-1};
    assert_int_equal(us_lease_quorum_time(one_never, 1), -1);

    /* 3 voters: the second freshest, in any order. */
    int64_t three[][3] = {{1000, 900, 800}, {800, 900, 1000}, {900, 1000, 800},
                          {800, 1000, 900}, {1000, 800, 900}, {900, 800, 1000}};
    for (size_t i = 0; i < sizeof three / sizeof three[0]; i++)
        assert_int_equal(us_lease_quorum_time(three[i], 3), 900);
    int64_t three_never[] = {1000, -1, 800};
    assert_int_equal(us_lease_quorum_time(three_never, 3), 800);
    int64_t three_two_never[] = {-1, 1000, -1};
    assert_int_equal(us_lease_quorum_time(three_two_never, 3), -1);
    int64_t three_ties[] = {5, 1000, 1000};
    assert_int_equal(us_lease_quorum_time(three_ties, 3), 1000);

    /* 5 voters: the third freshest. */
    int64_t five[] = {970, 1000, 960, 980, 990};
    assert_int_equal(us_lease_quorum_time(five, 5), 980);
    int64_t five_never[] = {-1, 1000, 960, -1, 990};
    assert_int_equal(us_lease_quorum_time(five_never, 5), 960);
    int64_t five_three_never[] = {-1, 1000, -1, -1, 990};
    assert_int_equal(us_lease_quorum_time(five_three_never, 5), -1);

    /* Even counts need more than half: 2 of 2, 3 of 4. */
    int64_t two[] = {1000, 900};
    assert_int_equal(us_lease_quorum_time(two, 2), 900);
    int64_t four[] = {1, 4, 2, 3};
    assert_int_equal(us_lease_quorum_time(four, 4), 2);

    /* The input is left alone. */
    assert_int_equal(five[0], 970);
    assert_int_equal(five[4], 990);
}

static void test_quorum_time_bounds(void **state)
{
    (void)state;
    int64_t acks[US_MAX_NODES + 1];
    for (int i = 0; i <= US_MAX_NODES; i++)
        acks[i] = 100 + i;
    assert_int_equal(us_lease_quorum_time(acks, 0), -1);
    assert_int_equal(us_lease_quorum_time(acks, -3), -1);
    assert_int_equal(us_lease_quorum_time(acks, US_MAX_NODES + 1), -1);
    /* 16 voters: 9 must have acknowledged at q or later -> the 9th freshest = 100 + 7. */
    assert_int_equal(us_lease_quorum_time(acks, US_MAX_NODES), 107);
}

/* Deterministic PRNG (xorshift64*): failures reproduce. */
static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ULL;
}

/* Uniform in [0, 1). */
static double unif(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

static int64_t rnd_range(int64_t lo, int64_t hi) /* inclusive */
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

/* The definition: q is the largest time such that a majority acknowledged at q or later. */
static void test_quorum_time_random(void **state)
{
    (void)state;
    for (int iter = 0; iter < 20000; iter++) {
        int n = (int)rnd_range(1, US_MAX_NODES);
        int64_t acks[US_MAX_NODES];
        for (int i = 0; i < n; i++)
            acks[i] = rnd() % 4 == 0 ? -1 : rnd_range(0, 50);
        int64_t q = us_lease_quorum_time(acks, n);
        int majority = n / 2 + 1;
        int at_q = 0, after_q = 0, known = 0;
        for (int i = 0; i < n; i++) {
            at_q += acks[i] >= q && acks[i] >= 0;
            after_q += acks[i] > q;
            known += acks[i] >= 0;
        }
        if (known < majority) {
            assert_int_equal(q, -1);
            continue;
        }
        assert_true(q >= 0);
        assert_true(at_q >= majority);
        assert_true(after_q < majority);
    }
}

/* ---- us_lease_may_grant ---- */

static void test_may_grant_boundary(void **state)
{
    (void)state;
    const char *names[] = {"default", "fast"};
    for (int p = 0; p < 2; p++) {
        us_timing t = profile(names[p]);
        int64_t g = t.grant_window_ms;
        assert_true(us_lease_may_grant(&t, 5000, 5000));
        assert_true(us_lease_may_grant(&t, 5000, 5000 + g - 1));
        assert_true(us_lease_may_grant(&t, 5000, 5000 + g)); /* exactly G: still fresh */
        assert_false(us_lease_may_grant(&t, 5000, 5000 + g + 1));
        assert_false(us_lease_may_grant(&t, 5000, 5000 + 10 * g));
        assert_false(us_lease_may_grant(&t, -1, 0)); /* no quorum ever */
        assert_false(us_lease_may_grant(&t, -1, 5000));
        assert_true(us_lease_may_grant(&t, 0, g)); /* time 0 is a real time */
    }
    us_timing t = profile("default");
    assert_int_equal(t.grant_window_ms, 300);
    assert_true(us_lease_may_grant(&t, 700, 1000));
    assert_false(us_lease_may_grant(&t, 699, 1000));
}

/* ---- numbers of the profiles ---- */

static void test_profile_numbers(void **state)
{
    (void)state;
    /* docs/timing.md: L(1+rho)+m = 662 / 229 ms, W = (G+L)(1+rho)+m = 968 / 331 ms. */
    us_timing d = profile("default");
    assert_int_equal(d.lease_ms, 600);
    assert_int_equal(d.grant_window_ms, 300);
    assert_int_equal(d.drift_pct, 2);
    assert_int_equal(d.margin_ms, 50);
    assert_int_equal(us_lease_granted_until(&d, 0), 662);
    assert_int_equal(us_lease_granted_until(&d, 123456), 123456 + 662);
    assert_int_equal(us_lease_takeover_wait(&d), 968);

    us_timing f = profile("fast");
    assert_int_equal(f.lease_ms, 200);
    assert_int_equal(f.grant_window_ms, 100);
    assert_int_equal(f.drift_pct, 2);
    assert_int_equal(f.margin_ms, 25);
    assert_int_equal(us_lease_granted_until(&f, 0), 229);
    assert_int_equal(us_lease_granted_until(&f, 10000), 10229);
    assert_int_equal(us_lease_takeover_wait(&f), 331);

    /* The formula on other numbers. */
    us_timing t = d;
    t.lease_ms = 1000;
    t.grant_window_ms = 500;
    t.drift_pct = 5;
    t.margin_ms = 10;
    assert_int_equal(us_lease_granted_until(&t, 100), 100 + 1050 + 10);
    assert_int_equal(us_lease_takeover_wait(&t), 1575 + 10);
    t.drift_pct = 0;
    t.margin_ms = 0;
    assert_int_equal(us_lease_granted_until(&t, 100), 1100);
    assert_int_equal(us_lease_takeover_wait(&t), 1500);

    /* Only known profiles. */
    us_timing x;
    assert_int_equal(us_timing_profile("slow", &x), -1);
    assert_int_equal(us_timing_profile("", &x), -1);
}

/* ---- us_lease_state_of ---- */

static void test_state_of(void **state)
{
    (void)state;
    const char *names[] = {"default", "fast"};
    for (int p = 0; p < 2; p++) {
        us_timing t = profile(names[p]);
        int64_t w = us_lease_takeover_wait(&t);
        int64_t since = 10000;
        /* A recorded lease: valid while granted_until > now, whatever the wait. */
        int64_t gu = us_lease_granted_until(&t, since + 5000);
        assert_int_equal(us_lease_state_of(&t, gu, since, gu - 1), US_LEASE_VALID);
        assert_int_equal(us_lease_state_of(&t, gu, since, gu), US_LEASE_EXPIRED);
        assert_int_equal(us_lease_state_of(&t, gu, since, gu + 1), US_LEASE_EXPIRED);
        assert_int_equal(us_lease_state_of(&t, since + 1, since, since), US_LEASE_VALID);
        /* No record (-1): unknown during the wait after taking over, then expired. */
        assert_int_equal(us_lease_state_of(&t, -1, since, since), US_LEASE_UNKNOWN);
        assert_int_equal(us_lease_state_of(&t, -1, since, since + w - 1), US_LEASE_UNKNOWN);
        assert_int_equal(us_lease_state_of(&t, -1, since, since + w), US_LEASE_EXPIRED);
        assert_int_equal(us_lease_state_of(&t, -1, since, since + w + 10000), US_LEASE_EXPIRED);
        /* A record of this leader's that ran out while still inside the wait: a predecessor's
         * grant may be later than ours, so still unknown. */
        assert_int_equal(us_lease_state_of(&t, since + 10, since, since + 20), US_LEASE_UNKNOWN);
        assert_int_equal(us_lease_state_of(&t, since + 10, since, since + w), US_LEASE_EXPIRED);
        /* A record that outlives the wait stays valid past it. */
        gu = since + w + 100;
        assert_int_equal(us_lease_state_of(&t, gu, since, since + w + 50), US_LEASE_VALID);
        assert_int_equal(us_lease_state_of(&t, gu, since, gu), US_LEASE_EXPIRED);
    }
    us_timing d = profile("default");
    assert_int_equal(us_lease_state_of(&d, -1, 0, 967), US_LEASE_UNKNOWN);
    assert_int_equal(us_lease_state_of(&d, -1, 0, 968), US_LEASE_EXPIRED);
    us_timing f = profile("fast");
    assert_int_equal(us_lease_state_of(&f, -1, 0, 330), US_LEASE_UNKNOWN);
    assert_int_equal(us_lease_state_of(&f, -1, 0, 331), US_LEASE_EXPIRED);
}

/* ---- safety properties on simulated clocks ---- */

/* A clock: local = offset + rate * real, read in whole milliseconds (as us_now_ms does). */
typedef struct sim_clock {
    double offset, rate;
} sim_clock;

static int64_t clock_read(const sim_clock *c, double real)
{
    return (int64_t)floor(c->offset + c->rate * real);
}

/* Real time at which the clock shows `local` (first instant it reads >= local). */
static double clock_real(const sim_clock *c, int64_t local)
{
    return ((double)local - c->offset) / c->rate;
}

/* Rate in [1 - drift, 1 + drift]; a third each at the extremes, where the worst cases are. */
static sim_clock random_clock(double drift)
{
    sim_clock c;
    c.offset = unif() * 1e7;
    uint64_t r = rnd() % 3;
    c.rate = r == 0 ? 1 - drift : r == 1 ? 1 + drift : 1 - drift + 2 * drift * unif();
    return c;
}

/* Renewal sent at real T0 by a node, received by the leader after a random delay. Returns the
 * smallest slack (real ms by which the leader's record outlives the node's lease) seen; negative
 * if the node may act while the leader already counts its lease as expired. */
static double renewal_min_slack(const us_timing *t, double actual_drift, int iterations)
{
    double min_slack = INFINITY;
    for (int i = 0; i < iterations; i++) {
        sim_clock node = random_clock(actual_drift), leader = random_clock(actual_drift);
        double t0_real = 1e5 + unif() * 1e6;
        double delay = rnd() % 4 == 0 ? 0 : unif() * 3 * t->heartbeat_ms;
        int64_t t0 = clock_read(&node, t0_real);
        int64_t recv = clock_read(&leader, t0_real + delay);
        int64_t gu = us_lease_granted_until(t, recv);
        double node_end = clock_real(&node, t0 + t->lease_ms); /* node acts while local < t0+L */
        double leader_end = clock_real(&leader, gu);
        double slack = leader_end - node_end;
        if (slack < min_slack)
            min_slack = slack;
        /* The same through the leader's API, just before the node's lease ends: still valid. */
        if (slack >= 1 / leader.rate) {
            int64_t leader_now = clock_read(&leader, node_end);
            assert_int_equal(us_lease_state_of(t, gu, 0, leader_now), US_LEASE_VALID);
        }
    }
    return min_slack;
}

static void test_property_node_lease_within_record(void **state)
{
    (void)state;
    const char *names[] = {"default", "fast"};
    for (int p = 0; p < 2; p++) {
        us_timing t = profile(names[p]);
        double rho = t.drift_pct / 100.0;
        double slack = renewal_min_slack(&t, rho, 200000);
        /* Worst case: no delay, the node's clock slowest, the leader's fastest. */
        double worst = (double)us_lease_granted_until(&t, 0) / (1 + rho) - t.lease_ms / (1 - rho);
        print_message("  %s: smallest slack of the leader's record over the node's lease: %.1f "
                      "ms (worst case %.1f ms)\n",
                      names[p], slack, worst);
        assert_true(slack >= 0);
        assert_true(slack < worst + 1); /* the simulation reached the worst corner */
    }
    /* Control: without drift allowance and margin, 2 % drift breaks it (the simulation sees). */
    us_timing bare = profile("default");
    bare.drift_pct = 0;
    bare.margin_ms = 0;
    assert_true(renewal_min_slack(&bare, 0.02, 20000) < 0);
}

/* An old leader grants while its quorum acknowledged it within G; every acknowledgement of that
 * quorum precedes the new leader's election at real time E. The new leader takes over at S >= E
 * and, having no record, must call the node's lease 'unknown' until the lease surely ended.
 * Returns the smallest slack seen (real ms between the lease end and the end of 'unknown'). */
static double takeover_min_slack(const us_timing *t, double actual_drift, int iterations)
{
    double min_slack = INFINITY;
    for (int i = 0; i < iterations; i++) {
        sim_clock old = random_clock(actual_drift), node = random_clock(actual_drift),
                  successor = random_clock(actual_drift);
        double election = 1e5 + unif() * 1e6;
        /* The old leader's ping that the quorum acknowledged was sent before the election. */
        double q_real = election - (rnd() % 4 == 0 ? 0 : unif() * 2000);
        int64_t q = clock_read(&old, q_real);
        int64_t grant =
            q + (rnd() % 4 == 0 ? t->grant_window_ms : rnd_range(0, t->grant_window_ms));
        assert_true(us_lease_may_grant(t, q, grant));
        double grant_real = clock_real(&old, grant);
        /* The renewal it grants was sent before the grant. */
        double t0_real = grant_real - (rnd() % 4 == 0 ? 0 : unif() * 3 * t->heartbeat_ms);
        int64_t t0 = clock_read(&node, t0_real);
        double lease_end = clock_real(&node, t0 + t->lease_ms);

        double takeover = election + (rnd() % 2 == 0 ? 0 : unif() * 200);
        int64_t since = clock_read(&successor, takeover);
        double unknown_end = clock_real(&successor, since + us_lease_takeover_wait(t));
        double slack = unknown_end - lease_end;
        if (slack < min_slack)
            min_slack = slack;
        if (slack >= 1 / successor.rate) {
            int64_t now = clock_read(&successor, lease_end);
            assert_int_equal(us_lease_state_of(t, -1, since, now), US_LEASE_UNKNOWN);
        }
    }
    return min_slack;
}

static void test_property_takeover_wait_covers_old_grants(void **state)
{
    (void)state;
    const char *names[] = {"default", "fast"};
    for (int p = 0; p < 2; p++) {
        us_timing t = profile(names[p]);
        double rho = t.drift_pct / 100.0;
        double slack = takeover_min_slack(&t, rho, 200000);
        /* Worst case: the quorum acknowledged at the election, the old leader granted G later
         * by its slow clock to a renewal sent at that moment by a slow node, the successor took
         * over at the election and its clock is fast. */
        double worst = (double)us_lease_takeover_wait(&t) / (1 + rho) -
                       (double)(t.grant_window_ms + t.lease_ms) / (1 - rho);
        print_message("  %s: smallest slack of the takeover wait over an old lease: %.1f ms "
                      "(worst case %.1f ms)\n",
                      names[p], slack, worst);
        assert_true(slack >= 0);
        assert_true(slack < worst + 1);
    }
    us_timing bare = profile("fast");
    bare.drift_pct = 0;
    bare.margin_ms = 0;
    assert_true(takeover_min_slack(&bare, 0.02, 20000) < 0);
}

/* ---- clocks ---- */

static void test_now(void **state)
{
    (void)state;
    int64_t ns0 = us_now_ns(), ms = us_now_ms(), ns1 = us_now_ns();
    assert_true(ns0 > 0);
    assert_true(ns1 >= ns0);
    assert_true(ms >= ns0 / 1000000 && ms <= ns1 / 1000000);
    int64_t prev = us_now_ms();
    for (int i = 0; i < 1000; i++) {
        int64_t now = us_now_ms();
        assert_true(now >= prev);
        prev = now;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quorum_time_small),
        cmocka_unit_test(test_quorum_time_bounds),
        cmocka_unit_test(test_quorum_time_random),
        cmocka_unit_test(test_may_grant_boundary),
        cmocka_unit_test(test_profile_numbers),
        cmocka_unit_test(test_state_of),
        cmocka_unit_test(test_property_node_lease_within_record),
        cmocka_unit_test(test_property_takeover_wait_covers_old_grants),
        cmocka_unit_test(test_now),
    };
    return cmocka_run_group_tests_name("lease", tests, NULL, NULL);
}
