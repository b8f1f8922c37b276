/* test_fanout.c — whom a node pings how often, and the silence bounds that follow (fanout.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/fanout.h"

static void test_lease_path_every_heartbeat(void **state)
{
    (void)state;
    /* Two non-voters, neither leading, both heard: the only slow pair. */
    us_fanout_pair slow = {0};
    assert_false(us_fanout_every_heartbeat(&slow));
    /* The leader at either end, a voter at the peer's end, or a peer not heard yet puts the
     * pair on the lease path. */
    us_fanout_pair p;
    p = (us_fanout_pair){.self_leads = true};
    assert_true(us_fanout_every_heartbeat(&p));
    p = (us_fanout_pair){.peer_votes = true};
    assert_true(us_fanout_every_heartbeat(&p));
    p = (us_fanout_pair){.peer_leads = true};
    assert_true(us_fanout_every_heartbeat(&p));
    p = (us_fanout_pair){.peer_unheard = true};
    assert_true(us_fanout_every_heartbeat(&p));
    /* A voter that does not lead pings a non-voter every heartbeat only while that one pings it
     * slowly (it has not learned that we vote); after that, the answers to its renewals (every
     * heartbeat) are all it needs from us. */
    p = (us_fanout_pair){.self_votes = true, .peer_slow = true};
    assert_true(us_fanout_every_heartbeat(&p));
    p = (us_fanout_pair){.self_votes = true};
    assert_false(us_fanout_every_heartbeat(&p));
    p = (us_fanout_pair){.self_votes = true, .self_leads = true};
    assert_true(us_fanout_every_heartbeat(&p));
    p = (us_fanout_pair){.self_votes = true, .peer_votes = true};
    assert_true(us_fanout_every_heartbeat(&p));
    p = (us_fanout_pair){.peer_slow = true}; /* between non-voters it says nothing */
    assert_false(us_fanout_every_heartbeat(&p));
}

static void test_slow_heartbeats_grow_with_peers(void **state)
{
    (void)state;
    assert_int_equal(us_fanout_slow_heartbeats(0), US_FANOUT_SLOW_MIN);
    assert_int_equal(us_fanout_slow_heartbeats(21), US_FANOUT_SLOW_MIN);
    assert_int_equal(us_fanout_slow_heartbeats(40), US_FANOUT_SLOW_MIN);
    assert_int_equal(us_fanout_slow_heartbeats(41), 11);
    assert_int_equal(us_fanout_slow_heartbeats(58), 15); /* 64 nodes, 5 voters, 1 self */
    for (int n = 0; n <= 64; n++) {
        int k = us_fanout_slow_heartbeats(n);
        /* Per heartbeat, at most US_FANOUT_SLOW_PER_HEARTBEAT slow pings on average. */
        assert_true(n <= k * US_FANOUT_SLOW_PER_HEARTBEAT);
    }
}

static void test_slow_due_once_per_period_and_spread(void **state)
{
    (void)state;
    const int k = 10;
    int per_tick[10] = {0};
    for (uint64_t id = 1; id <= 40; id++) {
        int due = 0;
        for (uint64_t tick = 100; tick < 100 + (uint64_t)k; tick++)
            if (us_fanout_slow_due(tick, id * 0x9e3779b97f4a7c15ULL, k)) {
                due++;
                per_tick[tick % k]++;
            }
        assert_int_equal(due, 1); /* exactly one heartbeat in every k */
    }
    /* 40 peers over 10 ticks: none of the ticks carries them all. */
    for (int i = 0; i < k; i++)
        assert_true(per_tick[i] < 40);
    assert_true(us_fanout_slow_due(7, 3, 1));
    assert_true(us_fanout_slow_due(7, 3, 0));
}

static void test_silence_bounds(void **state)
{
    (void)state;
    us_timing t;
    assert_int_equal(us_timing_profile("default", &t), 0);
    int64_t s, d;
    /* Every heartbeat (or unknown): the profile's own bounds. */
    us_fanout_silence(&t, 0, &s, &d);
    assert_int_equal(s, t.suspect_ms);
    assert_int_equal(d, t.dead_ms);
    us_fanout_silence(&t, t.heartbeat_ms, &s, &d);
    assert_int_equal(s, t.suspect_ms);
    assert_int_equal(d, t.dead_ms);
    /* A peer that pings every second: two more of its pings before suspect, three before dead. */
    us_fanout_silence(&t, 1000, &s, &d);
    assert_int_equal(s, 300 + 2 * 900);
    assert_int_equal(d, 1000 + 3 * 900);
    /* Always longer than the interval itself: one late ping is never "suspect". */
    for (int iv = 100; iv <= 2000; iv += 100) {
        us_fanout_silence(&t, iv, &s, &d);
        assert_true(s > iv && d > 2 * iv && d > s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lease_path_every_heartbeat),
        cmocka_unit_test(test_slow_heartbeats_grow_with_peers),
        cmocka_unit_test(test_slow_due_once_per_period_and_spread),
        cmocka_unit_test(test_silence_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
