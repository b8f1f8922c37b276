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

/* Changed reports: at once to the leader (to voters while no leader is known) and to the holder of
 * a role whose proxy runs here, to the others after the gap; unchanged ones after the refresh only.
 */
static void test_reports_to_whom_and_when(void **state)
{
    (void)state;
    const int hb = 100;
    us_fanout_rep leader = {.peer_leads = true,
                            .leader_known = true,
                            .peer_votes = true,
                            .owed = true,
                            .since_ms = 0,
                            .heartbeat_ms = hb};
    us_fanout_rep voter = leader, nonvoter = leader;
    voter.peer_leads = false;
    nonvoter.peer_leads = nonvoter.peer_votes = false;
    assert_true(us_fanout_reports_urgent(&leader) && us_fanout_with_reports(&leader));
    assert_false(us_fanout_reports_urgent(&voter) || us_fanout_with_reports(&voter));
    assert_false(us_fanout_reports_urgent(&nonvoter) || us_fanout_with_reports(&nonvoter));
    voter.since_ms = nonvoter.since_ms = US_FANOUT_REP_GAP * hb - 1;
    assert_false(us_fanout_with_reports(&voter) || us_fanout_with_reports(&nonvoter));
    voter.since_ms = nonvoter.since_ms = US_FANOUT_REP_GAP * hb;
    assert_true(us_fanout_with_reports(&voter) && us_fanout_with_reports(&nonvoter));
    /* no leader known: every voter is urgent, a non-voter is not */
    voter.leader_known = nonvoter.leader_known = false;
    voter.since_ms = nonvoter.since_ms = 0;
    assert_true(us_fanout_reports_urgent(&voter) && us_fanout_with_reports(&voter));
    assert_false(us_fanout_with_reports(&nonvoter));
    /* the holder of a role whose proxy runs here: at once, leader or not */
    nonvoter.leader_known = true;
    nonvoter.peer_proxied = true;
    assert_true(us_fanout_reports_urgent(&nonvoter) && us_fanout_with_reports(&nonvoter));
    nonvoter.owed = false;
    assert_false(us_fanout_with_reports(&nonvoter));
    /* acknowledged: nothing, not even to the leader, until the refresh */
    leader.owed = false;
    leader.since_ms = US_FANOUT_REP_REFRESH * hb - 1;
    assert_false(us_fanout_with_reports(&leader));
    leader.since_ms = US_FANOUT_REP_REFRESH * hb;
    assert_true(us_fanout_with_reports(&leader));
}

/* A pong acknowledges the generation of the unbroken run of rounds that carried it, and nothing
 * for a ping that carried none or for an earlier run. */
static void test_report_runs(void **state)
{
    (void)state;
    us_rep_run r = {0};
    us_rep_run_sent(&r, 1, 0);
    assert_int_equal(us_rep_run_acked(&r, 1), 0);
    us_rep_run_sent(&r, 2, 5);
    us_rep_run_sent(&r, 3, 5);
    us_rep_run_sent(&r, 4, 5);
    assert_int_equal(us_rep_run_acked(&r, 1), 0);
    assert_int_equal(us_rep_run_acked(&r, 2), 5); /* a late answer to the first of the run */
    assert_int_equal(us_rep_run_acked(&r, 4), 5);
    assert_int_equal(us_rep_run_acked(&r, 5), 0); /* never sent */
    us_rep_run_sent(&r, 5, 0);                    /* a ping without reports breaks the run */
    assert_int_equal(us_rep_run_acked(&r, 5), 0);
    us_rep_run_sent(&r, 6, 5); /* the same generation again: a new run */
    assert_int_equal(us_rep_run_acked(&r, 4), 0);
    assert_int_equal(us_rep_run_acked(&r, 6), 5);
    us_rep_run_sent(&r, 9, 6); /* rounds 7, 8 went to other peers only: a new generation */
    assert_int_equal(us_rep_run_acked(&r, 6), 0);
    assert_int_equal(us_rep_run_acked(&r, 9), 6);
    us_rep_run_sent(&r, 12, 6); /* rounds 10, 11 not to this peer: still one run for it */
    assert_int_equal(us_rep_run_acked(&r, 9), 6);
    assert_int_equal(us_rep_run_acked(&r, 10), 6); /* not sent to it: no pong can name it */
    assert_int_equal(us_rep_run_acked(&r, 12), 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lease_path_every_heartbeat),
        cmocka_unit_test(test_slow_heartbeats_grow_with_peers),
        cmocka_unit_test(test_slow_due_once_per_period_and_spread),
        cmocka_unit_test(test_silence_bounds),
        cmocka_unit_test(test_reports_to_whom_and_when),
        cmocka_unit_test(test_report_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
